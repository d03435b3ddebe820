/*
 * cert_import: record a certificate another system issued with the key of a CA held here
 * (a migration from django-ca, a certificate signed during an outage with the same key).
 * Only what such a CA provably signed is taken: the signature must verify with the CA's
 * certificate (X509_verify), its issuer must be the CA's subject, its subject must pass
 * the same checks as a CSR's, and its serial must be new. It is then listed, exported,
 * revoked and put on CRLs like any other, with profile "imported".
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "appliance/config_internal.h"
#include "appliance/engine/engine_internal.h"

/* One certificate, DER or PEM, nothing after it. */
static enum p11ca_err cert_parse(const uint8_t *data, size_t len, X509 **out,
				 struct p11ca_errmsg *em)
{
	static const char pem_tag[] = "-----BEGIN CERTIFICATE-----";
	X509 *x = NULL;
	if (len >= sizeof(pem_tag) - 1 && memcmp(data, pem_tag, sizeof(pem_tag) - 1) == 0) {
		BIO *b = BIO_new_mem_buf(data, (int)len);
		if (b == NULL)
			return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		x = PEM_read_bio_X509(b, NULL, NULL, NULL);
		X509 *more = x != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
		BIO_free(b);
		if (more != NULL) {
			X509_free(more);
			X509_free(x);
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "the file holds more than one certificate: import them "
					  "one at a time");
		}
	} else {
		const unsigned char *p = data;
		x = d2i_X509(NULL, &p, (long)len);
		if (x != NULL && p != data + len) {
			X509_free(x);
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "the certificate has %zu bytes of trailing data",
					  (size_t)(data + len - p));
		}
	}
	if (x == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "not an X.509 certificate (DER or PEM 'BEGIN CERTIFICATE')");
	*out = x;
	return P11CA_OK;
}

/* Whether `ca` (loaded, with a certificate) issued x: issuer name, then signature. */
static bool ca_signed(const struct engine_ca *ca, X509 *x)
{
	if (ca->cert == NULL ||
	    X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ca->cert)) != 0)
		return false;
	EVP_PKEY *pub = X509_get0_pubkey(ca->cert);
	return pub != NULL && X509_verify(x, pub) == 1;
}

struct issuer_search {
	const uint8_t *issuer_der;
	size_t issuer_der_len;
	uint32_t ids[16];
	size_t n;
};

static int issuer_visit(void *arg, const struct store_ca *ca)
{
	struct issuer_search *s = arg;
	if (ca->cert_der_len != 0 && ca->subject_der_len == s->issuer_der_len &&
	    memcmp(ca->subject_der, s->issuer_der, s->issuer_der_len) == 0 &&
	    s->n < sizeof(s->ids) / sizeof(s->ids[0]))
		s->ids[s->n++] = ca->id;
	return 0;
}

/* The CA that signed x: the named one, or any held CA whose subject is x's issuer and
 * whose key verifies the signature (two CAs may share a subject after a key rollover). */
static enum p11ca_err issuer_find(struct engine *eng, struct store_txn *txn, const char *sel,
				  X509 *x, struct engine_ca *ca, struct p11ca_errmsg *em)
{
	if (sel[0] != '\0') {
		P11CA_GUARD(engine_ca_select(&eng->ca_cache, txn, sel, ca, em));
		if (!ca_signed(ca, x))
			return p11ca_fail(em, P11CA_E_POLICY,
					  "CA %s did not sign this certificate (its issuer name or "
					  "signature does not match the CA's certificate)",
					  ca->rec.name);
		return P11CA_OK;
	}
	struct issuer_search s = {0};
	unsigned char *der = NULL;
	int len = i2d_X509_NAME(X509_get_issuer_name(x), &der);
	if (len <= 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate's issuer is unreadable");
	s.issuer_der = der;
	s.issuer_der_len = (size_t)len;
	enum p11ca_err err = store_ca_list(txn, issuer_visit, &s, em);
	OPENSSL_free(der);
	for (size_t i = 0; err == P11CA_OK && i < s.n; i++) {
		engine_ca_clear(ca);
		err = engine_ca_load(&eng->ca_cache, txn, s.ids[i], ca, em);
		if (err == P11CA_OK && ca_signed(ca, x))
			return P11CA_OK;
	}
	P11CA_GUARD(err);
	char issuer[256] = "";
	struct p11ca_errmsg ignored;
	if (x509_name_format(X509_get_issuer_name(x), issuer, sizeof(issuer), &ignored) != P11CA_OK)
		snprintf(issuer, sizeof(issuer), "(not printable)");
	return p11ca_fail(em, P11CA_E_POLICY,
			  "no CA held here signed this certificate (issuer %s): only certificates "
			  "of CAs whose keys are in this appliance can be imported",
			  issuer);
}

/* Validated, deduplicated (ignoring case) watchers of an import. */
static enum p11ca_err watchers_take(const p11ca_v1_CertImportRequest *r, struct store_watcher *w,
				    size_t *n, struct p11ca_errmsg *em)
{
	char why[300];
	*n = 0;
	for (pb_size_t i = 0; i < r->watchers_count; i++) {
		if (config_addr_spec_check(r->watchers[i], why, sizeof(why)) != P11CA_OK)
			return p11ca_fail(em, P11CA_E_INVALID_ARG, "watcher: %s", why);
		bool dup = false;
		for (size_t k = 0; k < *n; k++)
			dup = dup || strcasecmp(w[k].email, r->watchers[i]) == 0;
		if (dup)
			continue;
		if (*n == STORE_WATCHERS_MAX)
			return p11ca_fail(em, P11CA_E_INVALID_ARG, "at most %d watchers",
					  STORE_WATCHERS_MAX);
		memset(&w[*n], 0, sizeof(w[*n]));
		snprintf(w[*n].email, sizeof(w[*n].email), "%s", r->watchers[i]);
		(*n)++;
	}
	return P11CA_OK;
}

struct import_job {
	uint32_t ca_id;
	uint8_t serial[STORE_SERIAL_LEN];
	const uint8_t *der;
	size_t der_len;
	int64_t not_after;
	const char *actor, *ca_name;
	const struct store_watcher *watchers;
	size_t n_watchers;
};

static enum p11ca_err import_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	const struct import_job *j = arg;
	char hex[2 * STORE_SERIAL_LEN + 1], details[128];
	engine_hex_format(j->serial, STORE_SERIAL_LEN, hex);
	enum p11ca_err err =
		store_cert_import(txn, j->ca_id, j->serial, j->der, j->der_len, j->not_after,
				  "imported", j->actor, j->watchers, j->n_watchers, em);
	if (err == P11CA_E_STORAGE_EXISTS)
		return p11ca_fail(em, P11CA_E_POLICY,
				  "serial %s is already known here: the certificate was issued or "
				  "imported before",
				  hex);
	P11CA_GUARD(err);
	snprintf(details, sizeof(details), "ca %s, %zu watchers", j->ca_name, j->n_watchers);
	return store_audit_append(txn, "cert.import", j->actor, hex, details, NULL, em);
}

static enum p11ca_err serial_take(X509 *x, uint8_t serial[STORE_SERIAL_LEN],
				  struct p11ca_errmsg *em)
{
	const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
	if (sn == NULL || sn->type != V_ASN1_INTEGER || sn->length < 1 ||
	    sn->length > STORE_SERIAL_LEN || (sn->length == 1 && sn->data[0] == 0))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate's serial is not a positive number of at most "
				  "20 octets (RFC 5280 4.1.2.2)");
	memset(serial, 0, STORE_SERIAL_LEN);
	memcpy(serial + STORE_SERIAL_LEN - sn->length, sn->data, (size_t)sn->length);
	return P11CA_OK;
}

enum p11ca_err engine_op_cert_import(struct engine_call *c, p11ca_v1_Request *req,
				     p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CertImportRequest *r = &req->op.cert_import;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	struct store_cert *cert = OPENSSL_zalloc(sizeof(*cert));
	struct store_watcher w[STORE_WATCHERS_MAX];
	struct import_job job = {0};
	struct store_serial_info info;
	struct store_txn *txn = NULL;
	X509 *x = NULL;
	unsigned char *der = NULL;
	enum p11ca_err err = P11CA_OK;

	if (ca == NULL || cert == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	err = watchers_take(r, w, &job.n_watchers, em);
	if (err == P11CA_OK)
		err = cert_parse(r->certificate.bytes, r->certificate.size, &x, em);
	if (err == P11CA_OK)
		err = serial_take(x, job.serial, em);
	if (err == P11CA_OK)
		err = x509_name_check(X509_get_subject_name(x), em);
	if (err != P11CA_OK)
		goto out;
	int der_len = i2d_X509(x, &der); /* DER as received for DER input; PEM decoded */
	if (der_len <= 0 || (size_t)der_len > STORE_CERT_DER_MAX) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG, "the certificate is larger than %d bytes",
				 STORE_CERT_DER_MAX);
		goto out;
	}
	err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = issuer_find(c->eng, txn, r->ca, x, ca, em);
	if (err == P11CA_OK) {
		struct p11ca_errmsg ignored;
		if (store_serial_get(txn, job.serial, &info, &ignored) == P11CA_OK) {
			char hex[2 * STORE_SERIAL_LEN + 1];
			engine_hex_format(job.serial, STORE_SERIAL_LEN, hex);
			err = p11ca_fail(em, P11CA_E_POLICY,
					 "serial %s is already known here: the certificate was "
					 "issued or imported before",
					 hex);
		}
	}
	store_txn_abort(&txn);
	if (err != P11CA_OK)
		goto out;

	job.ca_id = ca->rec.id;
	job.der = der;
	job.der_len = (size_t)der_len;
	job.not_after = engine_asn1_time(X509_get0_notAfter(x));
	job.actor = c->actor;
	job.ca_name = ca->rec.name;
	job.watchers = w;
	err = commit_run(c->eng->commit, import_job_fn, &job, em);
	if (err == P11CA_OK)
		err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = store_cert_get(txn, job.ca_id, job.serial, cert, em);
	store_txn_abort(&txn);
	if (err == P11CA_OK)
		err = engine_cert_summary(cert, ca->rec.name, &resp->result.cert_import.cert, em);
	if (err == P11CA_OK)
		resp->result.cert_import.has_cert = true;
out:
	X509_free(x);
	OPENSSL_free(der);
	engine_ca_clear(ca);
	OPENSSL_free(ca);
	OPENSSL_free(cert);
	return err;
}
