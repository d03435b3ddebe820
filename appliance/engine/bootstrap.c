/*
 * `p11cad init` through the engine: the management CA (key in the HSM), the rpc server's
 * TLS certificate and the first admin credential (keys made in software: the rpc process
 * and the admin's tool must read them). Every step is skipped when its result exists, so
 * running init twice destroys nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "appliance/engine/engine_internal.h"

#define TLS_DAYS 825 /* the CA/Browser Forum's old ceiling: long enough for an appliance */
#define PEM_MAX	 (64 * 1024)
#define ACTOR	 "p11cad-init"

static enum p11ca_err write_all(int fd, const void *data, size_t len, const char *path,
				struct p11ca_errmsg *em)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return p11ca_fail(em, P11CA_E_IO, "cannot write %s: %s", path,
					  strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) != 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot sync %s: %s", path, strerror(errno));
	return P11CA_OK;
}

/* Temp file, fsync, rename: a reader sees the old file or the whole new one. */
static enum p11ca_err file_replace(const char *path, const void *data, size_t len, mode_t mode,
				   struct p11ca_errmsg *em)
{
	char tmp[P11CAD_PATH_MAX + 16];
	if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp))
		return p11ca_fail(em, P11CA_E_IO, "path too long: %s", path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot create a file beside %s: %s", path,
				  strerror(errno));
	enum p11ca_err err = P11CA_OK;
	if (fchmod(fd, mode) != 0)
		err = p11ca_fail(em, P11CA_E_IO, "cannot chmod %s: %s", tmp, strerror(errno));
	if (err == P11CA_OK)
		err = write_all(fd, data, len, tmp, em);
	close(fd);
	if (err == P11CA_OK && rename(tmp, path) != 0)
		err = p11ca_fail(em, P11CA_E_IO, "cannot rename %s to %s: %s", tmp, path,
				 strerror(errno));
	if (err != P11CA_OK)
		unlink(tmp);
	return err;
}

/* A private key file is created, never replaced: O_EXCL, 0600, PEM PKCS#8. */
static enum p11ca_err key_write(const char *path, EVP_PKEY *key, struct p11ca_errmsg *em)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem = NULL;
	enum p11ca_err err = P11CA_OK;
	if (bio == NULL || PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1) {
		BIO_free(bio);
		return p11ca_fail(em, P11CA_E_INTERNAL, "cannot encode a private key");
	}
	long len = BIO_get_mem_data(bio, &pem);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		err = p11ca_fail(em, P11CA_E_IO,
				 "cannot create %s: %s (a key left by an interrupted init: "
				 "remove it and run init again)",
				 path, strerror(errno));
	else
		err = write_all(fd, pem, (size_t)len, path, em);
	if (fd >= 0)
		close(fd);
	OPENSSL_cleanse(pem, (size_t)len);
	BIO_free(bio);
	return err;
}

static enum p11ca_err dir_path(const char *dir, const char *name, char out[P11CAD_PATH_MAX],
			       struct p11ca_errmsg *em)
{
	if (dir[0] == '\0')
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "no directory given for %s", name);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return p11ca_fail(em, P11CA_E_IO, "cannot create %s: %s", dir, strerror(errno));
	if (snprintf(out, P11CAD_PATH_MAX, "%s/%s", dir, name) >= P11CAD_PATH_MAX)
		return p11ca_fail(em, P11CA_E_IO, "path too long: %s/%s", dir, name);
	return P11CA_OK;
}

struct leaf {
	const char *subject;
	const char *const *names;
	size_t n_names;
	const char *eku, *profile;
};

/* Issue a software-key leaf from the management CA and write key, cert and ca.crt. */
static enum p11ca_err leaf_make(struct engine *eng, const struct engine_ca *ca,
				const struct leaf *lf, const char *dir, const char *stem,
				uint8_t fp[32], struct p11ca_errmsg *em)
{
	EVP_PKEY *key = NULL;
	X509_NAME *subject = NULL;
	GENERAL_NAMES *sans = sk_GENERAL_NAME_new_null();
	struct engine_issue is = {0};
	uint8_t *pem = OPENSSL_malloc(PEM_MAX);
	size_t pem_len = 0;
	char path[P11CAD_PATH_MAX], name[64];
	enum p11ca_err err = P11CA_OK;

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
		err = x509_name_parse(lf->subject, &subject, em);
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
	snprintf(name, sizeof(name), "%s.key", stem);
	err = dir_path(dir, name, path, em);
	if (err == P11CA_OK)
		err = key_write(path, key, em);
	if (err == P11CA_OK)
		err = x509_pem_append("CERTIFICATE", is.der, is.der_len, pem, PEM_MAX, &pem_len,
				      em);
	snprintf(name, sizeof(name), "%s.crt", stem);
	if (err == P11CA_OK)
		err = dir_path(dir, name, path, em);
	if (err == P11CA_OK)
		err = file_replace(path, pem, pem_len, 0644, em);
	pem_len = 0;
	if (err == P11CA_OK)
		err = x509_pem_append("CERTIFICATE", ca->rec.cert_der, ca->rec.cert_der_len, pem,
				      PEM_MAX, &pem_len, em);
	if (err == P11CA_OK)
		err = dir_path(dir, "ca.crt", path, em);
	if (err == P11CA_OK)
		err = file_replace(path, pem, pem_len, 0644, em);
out:
	engine_issue_clear(&is);
	EVP_PKEY_free(key);
	X509_NAME_free(subject);
	GENERAL_NAMES_free(sans);
	OPENSSL_free(pem);
	return err;
}

static bool file_exists(const char *dir, const char *name)
{
	char path[P11CAD_PATH_MAX];
	struct stat sb;
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return false;
	return stat(path, &sb) == 0;
}

/* Fingerprint of an existing PEM certificate (the admin.crt an earlier init wrote). */
static bool cert_file_fingerprint(const char *dir, const char *name, uint8_t fp[32])
{
	char path[P11CAD_PATH_MAX];
	bool ok = false;
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return false;
	FILE *f = fopen(path, "re");
	X509 *x = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	unsigned char *der = NULL;
	int len = x != NULL ? i2d_X509(x, &der) : -1;
	if (len > 0) {
		SHA256(der, (size_t)len, fp);
		ok = true;
	}
	OPENSSL_free(der);
	X509_free(x);
	if (f != NULL)
		fclose(f);
	return ok;
}

static enum p11ca_err roles_append(const char *path, const char *fp_hex, struct p11ca_errmsg *em)
{
	char line[256], date[32];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d", &tm);
	int n = snprintf(line, sizeof(line), "%s admin   # added by p11cad init %s\n", fp_hex,
			 date);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot open roles file %s: %s", path,
				  strerror(errno));
	enum p11ca_err err = write_all(fd, line, (size_t)n, path, em);
	close(fd);
	return err;
}

static enum p11ca_err bootstrap_run(struct engine *eng,
				    const p11ca_control_v1_BootstrapRequest *req,
				    p11ca_control_v1_BootstrapResponse *resp, struct engine_ca *ca,
				    struct p11ca_errmsg *em)
{
	struct store_txn *txn = NULL;
	struct p11ca_errmsg ignored;
	uint8_t fp[32];
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

	if (!file_exists(req->tls_dir, "server.crt")) {
		const char *names[16];
		size_t n = 0;
		for (; n < req->server_names_count && n < 16; n++)
			names[n] = req->server_names[n];
		char subject[300];
		snprintf(subject, sizeof(subject), "CN=%s", n > 0 ? names[0] : "p11cad");
		struct leaf lf = {subject, names, n, "serverAuth", "bootstrap-server"};
		P11CA_GUARD(leaf_make(eng, ca, &lf, req->tls_dir, "server", fp, em));
		resp->server_cert_created = true;
	}

	if (!file_exists(req->admin_out, "admin.crt")) {
		struct leaf lf = {"CN=admin", NULL, 0, "clientAuth", "bootstrap-admin"};
		P11CA_GUARD(leaf_make(eng, ca, &lf, req->admin_out, "admin", fp, em));
		engine_hex_format(fp, sizeof(fp), resp->admin_fingerprint);
		P11CA_GUARD(roles_append(req->roles_file, resp->admin_fingerprint, em));
		resp->admin_created = true;
	} else if (cert_file_fingerprint(req->admin_out, "admin.crt", fp)) {
		engine_hex_format(fp, sizeof(fp), resp->admin_fingerprint);
	}
	return P11CA_OK;
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
