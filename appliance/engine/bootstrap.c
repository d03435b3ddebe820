/*
 * `p11cad init` through the engine: the management CA (key in the HSM), the rpc server's
 * TLS certificate and the first admin credential (keys made in software: the rpc process
 * and the admin's tool must read them). Every step is skipped when its result exists, so
 * running init twice destroys nothing, and a rerun finishes what an interrupted one left.
 *
 * The output directories are opened once, checked (ours, not group/other-writable) and
 * every file is made relative to that descriptor, so a directory swapped or planted by
 * someone else between the check and the write cannot receive a private key.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "appliance/engine/engine_internal.h"

#define TLS_DAYS  825 /* the CA/Browser Forum's old ceiling: long enough for an appliance */
#define PEM_MAX	  (64 * 1024)
#define ROLES_MAX (1024 * 1024) /* a roles file is a few lines; refuse to slurp anything big */
#define ACTOR	  "p11cad-init"

/* An output directory, opened and checked once. */
struct out_dir {
	int fd;
	const char *path; /* for messages */
};

static enum p11ca_err write_all(int fd, const void *data, size_t len, const char *dir,
				const char *name, struct p11ca_errmsg *em)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return p11ca_fail(em, P11CA_E_IO, "cannot write %s%s%s: %s", dir,
					  name[0] != '\0' ? "/" : "", name, strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	return P11CA_OK;
}

static enum p11ca_err dir_sync(const struct out_dir *d, struct p11ca_errmsg *em)
{
	if (fsync(d->fd) != 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot sync directory %s: %s", d->path,
				  strerror(errno));
	return P11CA_OK;
}

/* mkdir (an existing one is fine), then open it without following a symlink and refuse a
 * directory another user owns or may write into: they could swap our files. */
static enum p11ca_err dir_open(const char *path, const char *what, struct out_dir *d,
			       struct p11ca_errmsg *em)
{
	struct stat sb;
	d->fd = -1;
	d->path = path;
	if (path[0] == '\0')
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "no directory given for %s", what);
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return p11ca_fail(em, P11CA_E_IO, "cannot create %s directory %s: %s", what, path,
				  strerror(errno));
	d->fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (d->fd < 0)
		return p11ca_fail(em, P11CA_E_IO,
				  "cannot open %s directory %s: %s (it must be a real directory, "
				  "not a symbolic link)",
				  what, path, strerror(errno));
	if (fstat(d->fd, &sb) != 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot stat %s: %s", path, strerror(errno));
	if (sb.st_uid != geteuid())
		return p11ca_fail(em, P11CA_E_PERMISSION,
				  "%s directory %s is owned by uid %u, not by p11cad (uid %u): "
				  "chown it to uid %u or choose another directory",
				  what, path, (unsigned)sb.st_uid, (unsigned)geteuid(),
				  (unsigned)geteuid());
	if ((sb.st_mode & 022) != 0)
		return p11ca_fail(em, P11CA_E_PERMISSION,
				  "%s directory %s is writable by group or others (mode %03o): "
				  "run chmod go-w %s, or choose another directory",
				  what, path, (unsigned)(sb.st_mode & 0777), path);
	return P11CA_OK;
}

static void dir_close(struct out_dir *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
}

static bool dir_has(const struct out_dir *d, const char *name)
{
	struct stat sb;
	return fstatat(d->fd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Fills a new file; must not close fd. */
typedef enum p11ca_err (*fill_fn)(int fd, const void *arg, const struct out_dir *d,
				  const char *name, struct p11ca_errmsg *em);

/* A random visible name beside the target, for when O_TMPFILE is not supported. */
static enum p11ca_err temp_name(const char *name, char tmp[96], struct p11ca_errmsg *em)
{
	uint8_t rnd[12];
	char hex[2 * sizeof(rnd) + 1];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return p11ca_fail(em, P11CA_E_INTERNAL, "no random bytes for a temporary name");
	engine_hex_format(rnd, sizeof(rnd), hex);
	snprintf(tmp, 96, ".%.40s.%s", name, hex);
	return P11CA_OK;
}

/*
 * Write a new file `name` in d: filled and fsynced under no name (O_TMPFILE) or a random
 * one, then linked in place — link fails on an existing name, so nothing is replaced and a
 * crash never leaves a truncated file under `name` — and the directory is fsynced.
 * replace: rename over an existing file instead (certificates, which are public).
 */
static enum p11ca_err file_write_at(const struct out_dir *d, const char *name, mode_t mode,
				    bool replace, fill_fn fill, const void *arg,
				    struct p11ca_errmsg *em)
{
	char tmp[96] = "", proc[64];
	enum p11ca_err err = P11CA_OK;
	int fd = -1;
	if (!replace)
		fd = openat(d->fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
	if (fd < 0) {
		err = temp_name(name, tmp, em);
		if (err != P11CA_OK)
			return err;
		fd = openat(d->fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return p11ca_fail(em, P11CA_E_IO, "cannot create a file in %s: %s", d->path,
					  strerror(errno));
	}
	if (fchmod(fd, mode) != 0)
		err = p11ca_fail(em, P11CA_E_IO, "cannot chmod %s/%s: %s", d->path, name,
				 strerror(errno));
	if (err == P11CA_OK)
		err = fill(fd, arg, d, name, em);
	if (err == P11CA_OK && fsync(fd) != 0)
		err = p11ca_fail(em, P11CA_E_IO, "cannot sync %s/%s: %s", d->path, name,
				 strerror(errno));
	if (err != P11CA_OK)
		goto out;
	int rc;
	if (tmp[0] == '\0') {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		rc = linkat(AT_FDCWD, proc, d->fd, name, AT_SYMLINK_FOLLOW);
		if (rc != 0 && errno == ENOENT) /* no /proc: needs CAP_DAC_READ_SEARCH */
			rc = linkat(fd, "", d->fd, name, AT_EMPTY_PATH);
	} else if (replace) {
		rc = renameat(d->fd, tmp, d->fd, name);
	} else {
		rc = linkat(d->fd, tmp, d->fd, name, 0);
	}
	if (rc != 0 && errno == EEXIST)
		err = p11ca_fail(em, P11CA_E_IO,
				 "%s/%s exists already (left by an interrupted init?): move it "
				 "away and run init again",
				 d->path, name);
	else if (rc != 0)
		err = p11ca_fail(em, P11CA_E_IO, "cannot create %s/%s: %s", d->path, name,
				 strerror(errno));
	if (err == P11CA_OK)
		err = dir_sync(d, em);
out:
	close(fd);
	if (tmp[0] != '\0')
		unlinkat(d->fd, tmp, 0); /* ENOENT after a rename */
	return err;
}

struct bytes {
	const void *data;
	size_t len;
};

static enum p11ca_err fill_bytes(int fd, const void *arg, const struct out_dir *d, const char *name,
				 struct p11ca_errmsg *em)
{
	const struct bytes *b = arg;
	return write_all(fd, b->data, b->len, d->path, name, em);
}

/* PEM PKCS#8 straight into the file: no memory BIO grows and frees copies of the key. */
static enum p11ca_err fill_key(int fd, const void *arg, const struct out_dir *d, const char *name,
			       struct p11ca_errmsg *em)
{
	BIO *bio = BIO_new_fd(fd, BIO_NOCLOSE);
	int ok = bio != NULL &&
		 PEM_write_bio_PrivateKey(bio, (EVP_PKEY *)arg, NULL, NULL, 0, NULL, NULL) == 1 &&
		 BIO_flush(bio) == 1;
	BIO_free(bio);
	if (!ok)
		return p11ca_fail(em, P11CA_E_IO, "cannot write the private key %s/%s: %s", d->path,
				  name, strerror(errno));
	return P11CA_OK;
}

struct leaf {
	const char *cn; /* one commonName RDN, whatever its characters */
	const char *const *names;
	size_t n_names;
	const char *eku, *profile;
	const char *stem; /* STEM.key, STEM.crt */
};

/* The subject is built, never parsed: a host name with `,`, `+` or `=` stays one value. */
static enum p11ca_err leaf_subject(const char *cn, X509_NAME **out, struct p11ca_errmsg *em)
{
	*out = X509_NAME_new();
	if (*out == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	if (X509_NAME_add_entry_by_NID(*out, NID_commonName, MBSTRING_UTF8,
				       (const unsigned char *)cn, -1, -1, 0) != 1)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "'%.80s' cannot be a commonName (1 to 64 characters)", cn);
	return P11CA_OK;
}

/* Issue a software-key leaf from the management CA and write key, cert and ca.crt. */
static enum p11ca_err leaf_make(struct engine *eng, const struct engine_ca *ca,
				const struct leaf *lf, const struct out_dir *d, uint8_t fp[32],
				struct p11ca_errmsg *em)
{
	EVP_PKEY *key = NULL;
	X509_NAME *subject = NULL;
	GENERAL_NAMES *sans = sk_GENERAL_NAME_new_null();
	struct engine_issue is = {0};
	uint8_t *pem = OPENSSL_malloc(PEM_MAX);
	size_t pem_len = 0;
	char key_name[64], crt_name[64];
	enum p11ca_err err = P11CA_OK;

	snprintf(key_name, sizeof(key_name), "%s.key", lf->stem);
	snprintf(crt_name, sizeof(crt_name), "%s.crt", lf->stem);
	/* Checked before a serial is burned: the key is created, never replaced. */
	if (dir_has(d, key_name)) {
		err = p11ca_fail(em, P11CA_E_IO,
				 "%s/%s exists without %s (left by an interrupted init?): "
				 "restore %s, or remove the stale %s, then run init again",
				 d->path, key_name, crt_name, crt_name, key_name);
		goto out;
	}
	if (sans == NULL || pem == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < lf->n_names && err == P11CA_OK; i++) {
		GENERAL_NAME *gn = NULL;
		err = x509_san_parse(lf->names[i], &gn, em);
		if (err == P11CA_OK && sk_GENERAL_NAME_push(sans, gn) <= 0) {
			GENERAL_NAME_free(gn);
			err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		}
	}
	if (err == P11CA_OK)
		err = leaf_subject(lf->cn, &subject, em);
	if (err == P11CA_OK && (key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL)
		err = p11ca_fail(em, P11CA_E_INTERNAL, "cannot generate a P-256 key");
	if (err != P11CA_OK)
		goto out;
	int64_t now = engine_now();
	int64_t end = engine_asn1_time(X509_get0_notAfter(ca->cert));
	int64_t not_after = now + (int64_t)TLS_DAYS * ENGINE_DAY;
	const char *eku[] = {lf->eku};
	struct x509_cert_spec spec = {
		.subject = subject,
		.public_key = key,
		.not_before = now - ENGINE_CLOCK_SKEW,
		.not_after = not_after < end ? not_after : end,
		.alg = ca->alg,
		.issuer = ca->cert,
		.path_length = -1,
		.key_usage = X509v3_KU_DIGITAL_SIGNATURE,
		.key_usage_critical = true,
		.eku = eku,
		.n_eku = 1,
		.sans = sans,
	};
	is = (struct engine_issue){
		.ca_id = ca->rec.id,
		.key_uri = ca->rec.key_uri,
		.issuer_der = ca->rec.cert_der,
		.issuer_der_len = ca->rec.cert_der_len,
		.spec = &spec,
		.profile = lf->profile,
		.actor = ACTOR,
	};
	err = engine_issue_run(eng, &is, em);
	if (err != P11CA_OK)
		goto out;
	SHA256(is.der, is.der_len, fp);
	/* Key first: a certificate on disk always has its key beside it. */
	err = file_write_at(d, key_name, 0600, false, fill_key, key, em);
	if (err == P11CA_OK)
		err = x509_pem_append("CERTIFICATE", is.der, is.der_len, pem, PEM_MAX, &pem_len,
				      em);
	struct bytes b = {pem, pem_len};
	if (err == P11CA_OK)
		err = file_write_at(d, crt_name, 0644, true, fill_bytes, &b, em);
	pem_len = 0;
	if (err == P11CA_OK)
		err = x509_pem_append("CERTIFICATE", ca->rec.cert_der, ca->rec.cert_der_len, pem,
				      PEM_MAX, &pem_len, em);
	b = (struct bytes){pem, pem_len};
	if (err == P11CA_OK)
		err = file_write_at(d, "ca.crt", 0644, true, fill_bytes, &b, em);
out:
	engine_issue_clear(&is);
	EVP_PKEY_free(key);
	X509_NAME_free(subject);
	GENERAL_NAMES_free(sans);
	OPENSSL_free(pem);
	return err;
}

/* Fingerprint of the admin.crt an earlier init wrote. */
static enum p11ca_err cert_file_fingerprint(const struct out_dir *d, const char *name,
					    uint8_t fp[32], struct p11ca_errmsg *em)
{
	int fd = openat(d->fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	BIO *bio = fd >= 0 ? BIO_new_fd(fd, BIO_CLOSE) : NULL;
	X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	unsigned char *der = NULL;
	int len = x != NULL ? i2d_X509(x, &der) : -1;
	enum p11ca_err err = P11CA_OK;
	if (len > 0)
		SHA256(der, (size_t)len, fp);
	else
		err = p11ca_fail(em, P11CA_E_IO,
				 "%s/%s is not a readable PEM certificate: restore it, or move it "
				 "and the key beside it away to make a new admin credential",
				 d->path, name);
	OPENSSL_free(der);
	X509_free(x);
	if (bio != NULL)
		BIO_free(bio);
	else if (fd >= 0)
		close(fd);
	return err;
}

/* Whether a roles line names fp_hex (colons allowed, any case), whatever its role. */
static bool roles_has(const char *text, size_t len, const char *fp_hex)
{
	size_t i = 0;
	while (i < len) {
		size_t end = i;
		while (end < len && text[end] != '\n')
			end++;
		size_t k = 0, j = i;
		while (j < end && (text[j] == ' ' || text[j] == '\t'))
			j++;
		for (; j < end && text[j] != ' ' && text[j] != '\t' && text[j] != '#'; j++) {
			if (text[j] == ':')
				continue;
			if (fp_hex[k] == '\0' || strncasecmp(&text[j], &fp_hex[k], 1) != 0)
				break;
			k++;
		}
		bool token_end = j == end || text[j] == ' ' || text[j] == '\t' || text[j] == '#';
		if (fp_hex[k] == '\0' && token_end)
			return true;
		i = end + 1;
	}
	return false;
}

/* Make fp_hex an admin in the roles file unless a line names it already: an init that
 * stopped after writing admin.crt gets its role on the next run, and only once. */
static enum p11ca_err roles_ensure(const char *path, const char *fp_hex, struct p11ca_errmsg *em)
{
	char line[256], date[32];
	char *text = NULL;
	struct stat sb;
	enum p11ca_err err = P11CA_OK;
	int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot open roles file %s: %s", path,
				  strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > ROLES_MAX) {
		err = p11ca_fail(em, P11CA_E_IO,
				 "roles file %s is not a regular file under %d bytes: fix it", path,
				 ROLES_MAX);
		goto out;
	}
	size_t len = (size_t)sb.st_size;
	if ((text = malloc(len + 1)) == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	if (pread(fd, text, len, 0) != (ssize_t)len) {
		err = p11ca_fail(em, P11CA_E_IO, "cannot read roles file %s: %s", path,
				 strerror(errno));
		goto out;
	}
	if (roles_has(text, len, fp_hex))
		goto out;
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d", &tm);
	int n = snprintf(line, sizeof(line), "%s%s admin   # added by p11cad init %s\n",
			 len > 0 && text[len - 1] != '\n' ? "\n" : "", fp_hex, date);
	err = write_all(fd, line, (size_t)n, path, "", em);
	if (err == P11CA_OK && fsync(fd) != 0)
		err = p11ca_fail(em, P11CA_E_IO, "cannot sync roles file %s: %s", path,
				 strerror(errno));
out:
	free(text);
	close(fd);
	return err;
}

static enum p11ca_err management_ca(struct engine *eng,
				    const p11ca_control_v1_BootstrapRequest *req,
				    p11ca_control_v1_BootstrapResponse *resp, struct engine_ca *ca,
				    struct p11ca_errmsg *em)
{
	struct store_txn *txn = NULL;
	struct p11ca_errmsg ignored;
	P11CA_GUARD(store_txn_begin(eng->st, STORE_TXN_READ, &txn, em));
	enum p11ca_err err = store_ca_get_by_name(txn, req->ca_name, &ca->rec, &ignored);
	if (err == P11CA_OK)
		err = engine_ca_parse(ca, em);
	store_txn_abort(&txn);
	if (err == P11CA_OK && (ca->rec.state != STORE_CA_ACTIVE || ca->cert == NULL))
		return p11ca_fail(em, P11CA_E_POLICY,
				  "management CA %s exists but is not active (an interrupted "
				  "init?): see p11ca ca view",
				  req->ca_name);
	if (err == P11CA_E_STORAGE_NOT_FOUND) {
		struct engine_ca_init in = {
			.name = req->ca_name,
			.subject = req->ca_subject,
			.key_label = req->key_label,
			.actor = ACTOR,
			.expires_days = req->ca_expires_days,
			.has_path_length = true,
			.path_length = 0, /* it certifies servers and clients only */
		};
		P11CA_GUARD(hsm_key_type_parse(req->key_type, &in.key_type, em));
		P11CA_GUARD(engine_ca_create(eng, &in, ca, em));
		resp->ca_created = true;
	} else if (err != P11CA_OK) {
		return p11ca_fail(em, err, "%s", p11ca_errmsg_text(&ignored));
	}
	return P11CA_OK;
}

static enum p11ca_err bootstrap_run(struct engine *eng,
				    const p11ca_control_v1_BootstrapRequest *req,
				    p11ca_control_v1_BootstrapResponse *resp, struct engine_ca *ca,
				    struct p11ca_errmsg *em)
{
	struct out_dir tls = {.fd = -1}, admin = {.fd = -1};
	uint8_t fp[32];
	const char *names[16];
	size_t n = 0;
	enum p11ca_err err = management_ca(eng, req, resp, ca, em);
	if (err == P11CA_OK)
		err = dir_open(req->tls_dir, "TLS", &tls, em);
	if (err == P11CA_OK && !dir_has(&tls, "server.crt")) {
		for (; n < req->server_names_count && n < 16; n++)
			names[n] = req->server_names[n];
		/* A commonName holds at most 64 characters; the SANs carry every name. */
		const char *cn = n > 0 && strlen(names[0]) <= 64 ? names[0] : "p11cad";
		struct leaf lf = {cn, names, n, "serverAuth", "bootstrap-server", "server"};
		err = leaf_make(eng, ca, &lf, &tls, fp, em);
		resp->server_cert_created = err == P11CA_OK;
	}
	if (err == P11CA_OK)
		err = dir_open(req->admin_out, "admin credential", &admin, em);
	if (err == P11CA_OK && !dir_has(&admin, "admin.crt")) {
		struct leaf lf = {"admin", NULL, 0, "clientAuth", "bootstrap-admin", "admin"};
		err = leaf_make(eng, ca, &lf, &admin, fp, em);
		resp->admin_created = err == P11CA_OK;
	} else if (err == P11CA_OK) {
		err = cert_file_fingerprint(&admin, "admin.crt", fp, em);
	}
	if (err == P11CA_OK) {
		engine_hex_format(fp, sizeof(fp), resp->admin_fingerprint);
		err = roles_ensure(req->roles_file, resp->admin_fingerprint, em);
	}
	dir_close(&tls);
	dir_close(&admin);
	return err;
}

void engine_bootstrap(struct engine *eng, const p11ca_control_v1_BootstrapRequest *req,
		      p11ca_control_v1_BootstrapResponse *resp)
{
	struct p11ca_errmsg em;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	p11ca_errmsg_clear(&em);
	enum p11ca_err err = ca == NULL ? p11ca_fail(&em, P11CA_E_NOMEM, "out of memory")
					: bootstrap_run(eng, req, resp, ca, &em);
	resp->error = (uint32_t)err;
	snprintf(resp->message, sizeof(resp->message), "%s",
		 err == P11CA_OK ? "bootstrap done" : p11ca_errmsg_text(&em));
	if (err != P11CA_OK)
		p11ca_logf(eng->log, LOG_ERR, "engine: bootstrap failed: %s",
			   p11ca_errmsg_text(&em));
	engine_ca_clear(ca);
	OPENSSL_free(ca);
}
