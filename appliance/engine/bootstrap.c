/*
 * `p11cad init` through the engine: the management CA (key in the HSM), the rpc server's
 * TLS certificate and the first admin credential (keys made in software: the rpc process
 * and the admin's tool must read them). Every step is skipped when its result exists, so
 * running init twice destroys nothing, and a rerun finishes what an interrupted one left.
 * The files are written through appliance/engine/outdir.c (checked directories, atomic
 * writes, the roles file).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "appliance/engine/engine_internal.h"
#include "appliance/engine/outdir.h"

#define TLS_DAYS 825 /* the CA/Browser Forum's old ceiling: long enough for an appliance */
#define PEM_MAX	 (64 * 1024)
#define ACTOR	 "p11cad-init"

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
				const struct leaf *lf, const struct outdir *d, uint8_t fp[32],
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
	if (outdir_has(d, key_name)) {
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
	err = outdir_key_write(d, key_name, key, em);
	if (err == P11CA_OK)
		err = x509_pem_append("CERTIFICATE", is.der, is.der_len, pem, PEM_MAX, &pem_len,
				      em);
	if (err == P11CA_OK)
		err = outdir_public_write(d, crt_name, pem, pem_len, em);
	pem_len = 0;
	if (err == P11CA_OK)
		err = x509_pem_append("CERTIFICATE", ca->rec.cert_der, ca->rec.cert_der_len, pem,
				      PEM_MAX, &pem_len, em);
	if (err == P11CA_OK)
		err = outdir_public_write(d, "ca.crt", pem, pem_len, em);
out:
	engine_issue_clear(&is);
	EVP_PKEY_free(key);
	X509_NAME_free(subject);
	GENERAL_NAMES_free(sans);
	OPENSSL_free(pem);
	return err;
}

/* Fingerprint of the admin.crt an earlier init wrote. */
static enum p11ca_err cert_file_fingerprint(const struct outdir *d, const char *name,
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
	struct outdir tls = {.fd = -1}, admin = {.fd = -1};
	uint8_t fp[32];
	const char *names[16];
	size_t n = 0;
	enum p11ca_err err = management_ca(eng, req, resp, ca, em);
	if (err == P11CA_OK)
		err = outdir_open(req->tls_dir, "TLS", &tls, em);
	if (err == P11CA_OK && !outdir_has(&tls, "server.crt")) {
		for (; n < req->server_names_count && n < 16; n++)
			names[n] = req->server_names[n];
		/* A commonName holds at most 64 characters; the SANs carry every name. */
		const char *cn = n > 0 && strlen(names[0]) <= 64 ? names[0] : "p11cad";
		struct leaf lf = {cn, names, n, "serverAuth", "bootstrap-server", "server"};
		err = leaf_make(eng, ca, &lf, &tls, fp, em);
		resp->server_cert_created = err == P11CA_OK;
	}
	if (err == P11CA_OK)
		err = outdir_open(req->admin_out, "admin credential", &admin, em);
	if (err == P11CA_OK && !outdir_has(&admin, "admin.crt")) {
		struct leaf lf = {"admin", NULL, 0, "clientAuth", "bootstrap-admin", "admin"};
		err = leaf_make(eng, ca, &lf, &admin, fp, em);
		resp->admin_created = err == P11CA_OK;
	} else if (err == P11CA_OK) {
		err = cert_file_fingerprint(&admin, "admin.crt", fp, em);
	}
	if (err == P11CA_OK) {
		engine_hex_format(fp, sizeof(fp), resp->admin_fingerprint);
		err = outdir_roles_ensure(req->roles_file, resp->admin_fingerprint, em);
	}
	outdir_close(&tls);
	outdir_close(&admin);
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
