/*
 * ca import: adopt a CA whose key already lives on the token. Its certificate must be a CA
 * certificate whose public key is that of the key the URI names (the signer refuses a URI
 * matching no key or several).
 *
 * An import is recorded PENDING, gets its first CRL signed by the token key (which proves
 * the key signs and the signer accepts the certificate as its issuer), then becomes ACTIVE:
 * as with ca init, never a half-made ACTIVE CA.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "appliance/engine/plan.h"
#include "hsm/algor.h"
#include "hsm/signer.h"

/* A key URI as CaImportRequest.key_uri allows it: pkcs11:, object= or id=, never a PIN. */
static enum p11ca_err import_uri_check(const char *uri, struct p11ca_errmsg *em)
{
	if (strncasecmp(uri, "pkcs11:", 7) != 0)
		return p11ca_fail(em, P11CA_E_URI,
				  "the key URI must be an RFC 7512 pkcs11: URI naming the key "
				  "(object=LABEL and/or id=%%XX…)");
	if (strcasestr(uri, "pin-value") != NULL || strcasestr(uri, "pin-source") != NULL)
		return p11ca_fail(
			em, P11CA_E_URI,
			"the key URI carries a PIN: remove pin-value/pin-source (the token "
			"is logged in already; PINs are never stored)");
	if (strstr(uri, "object=") == NULL && strstr(uri, "id=") == NULL)
		return p11ca_fail(em, P11CA_E_URI,
				  "the key URI names no key: give object=LABEL and/or id=%%XX…");
	return P11CA_OK;
}

/* Exactly one certificate, DER or PEM. */
static enum p11ca_err cert_load(const uint8_t *data, size_t len, X509 **out,
				struct p11ca_errmsg *em)
{
	const unsigned char *p = data;
	X509 *x = NULL;
	if (len > 0 && data[0] == 0x30) {
		x = d2i_X509(NULL, &p, (long)len);
		if (x != NULL && p != data + len) {
			X509_free(x);
			x = NULL;
		}
	} else if (len > 0) {
		BIO *b = BIO_new_mem_buf(data, (int)len);
		x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
		X509 *more = x != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
		if (more != NULL) {
			X509_free(more);
			X509_free(x);
			x = NULL;
		}
		BIO_free(b);
	}
	ERR_clear_error(); /* the reads that found nothing (more) left their reasons */
	if (x == NULL)
		return p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"the certificate is not one X.509 certificate in DER or PEM: give "
			"the CA's own certificate alone, without its chain");
	*out = x;
	return P11CA_OK;
}

/* basicConstraints CA:TRUE and keyUsage with keyCertSign; a subject that checks; in date. */
static enum p11ca_err import_cert_check(X509 *x, enum hsm_key_type *type, struct p11ca_errmsg *em)
{
	if ((X509_get_extension_flags(x) & EXFLAG_CA) == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate is not a CA certificate (basicConstraints "
				  "CA:TRUE is missing): record an end-entity certificate with "
				  "p11ca cert import");
	if ((X509_get_extension_flags(x) & EXFLAG_KUSAGE) == 0 ||
	    (X509_get_key_usage(x) & KU_KEY_CERT_SIGN) == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate's keyUsage lacks keyCertSign: it may not sign "
				  "certificates, so it cannot be a CA here");
	P11CA_GUARD(x509_name_check(X509_get_subject_name(x), em));
	if (engine_asn1_time(X509_get0_notAfter(x)) <= engine_now())
		return p11ca_fail(em, P11CA_E_POLICY,
				  "the certificate has expired: import a current certificate for "
				  "the key");
	EVP_PKEY *pub = X509_get0_pubkey(x);
	struct p11ca_errmsg ignored;
	if (pub == NULL || hsm_key_type_of_pkey(pub, type, &ignored) != P11CA_OK)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate's key is of a type p11ca does not support: "
				  "RSA 2048-4096, P-256, P-384, P-521 or Ed25519 are");
	return P11CA_OK;
}

static bool pkey_same(EVP_PKEY *a, EVP_PKEY *b)
{
	unsigned char *da = NULL, *db = NULL;
	int la = i2d_PUBKEY(a, &da), lb = i2d_PUBKEY(b, &db);
	bool same = la > 0 && la == lb && memcmp(da, db, (size_t)la) == 0;
	OPENSSL_free(da);
	OPENSSL_free(db);
	return same;
}

struct import_scan {
	X509 *cert;
	uint32_t parent_id;
	bool duplicate;
	char dup_name[STORE_CA_NAME_MAX + 1];
};

/* The parent: a held CA whose subject is the certificate's issuer and whose key verifies
 * its signature. The same certificate or key held already is refused. */
static int import_scan_visit(void *arg, const struct store_ca *ca)
{
	struct import_scan *s = arg;
	X509 *x = engine_ca_rec_x509(ca);
	if (x == NULL)
		return 0;
	/* Two CAs on one key would sign each other's certificates and CRLs. */
	if (X509_cmp(x, s->cert) == 0 ||
	    pkey_same(X509_get0_pubkey(x), X509_get0_pubkey(s->cert))) {
		s->duplicate = true;
		snprintf(s->dup_name, sizeof(s->dup_name), "%s", ca->name);
	} else if (s->parent_id == 0 &&
		   X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(s->cert)) == 0 &&
		   X509_verify(s->cert, X509_get0_pubkey(x)) == 1) {
		s->parent_id = ca->id;
	}
	X509_free(x);
	return s->duplicate ? 1 : 0;
}

struct pending_job {
	struct store_ca *rec; /* id written back */
	const char *actor;
	const uint8_t *serial; /* the certificate's, padded to STORE_SERIAL_LEN; NULL: none */
	int64_t not_after;
};

static enum p11ca_err pending_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct pending_job *j = arg;
	struct store_ca *rec = j->rec;
	rec->id = 0; /* a re-run inserts again */
	P11CA_GUARD(store_ca_put(txn, rec, em));
	/* Its certificate is listed (and revocable) under its issuer when that is held here,
	 * or under itself when self-signed, as for a CA made here. A serial already known
	 * (issued here before) is not recorded twice, nor one storage cannot hold (over 20
	 * octets): the CA works without it. */
	if (j->serial != NULL) {
		struct p11ca_errmsg ignored;
		enum p11ca_err e =
			store_cert_import(txn, rec->parent_id != 0 ? rec->parent_id : rec->id,
					  j->serial, rec->cert_der, rec->cert_der_len, j->not_after,
					  "ca", j->actor, NULL, 0, &ignored);
		if (e != P11CA_OK && e != P11CA_E_STORAGE_EXISTS && e != P11CA_E_INVALID_ARG)
			return p11ca_fail(em, e, "%s", p11ca_errmsg_text(&ignored));
	}
	return store_audit_append(txn, "ca.pending", j->actor, rec->name, rec->key_uri, NULL, em);
}

/* CaImportRequest's algorithm: as given, else the certificate's own if the key can make it,
 * else the key type's default. */
static enum p11ca_err import_alg(const p11ca_v1_CaImportRequest *r, X509 *x, enum hsm_key_type type,
				 enum hsm_sig_alg *out, struct p11ca_errmsg *em)
{
	enum hsm_sig_alg alg = (enum hsm_sig_alg)r->signature_algorithm;
	P11CA_GUARD(engine_alg_for_key(alg, type, "the imported CA's", em));
	if (alg == HSM_SIG_UNSPECIFIED) {
		struct p11ca_errmsg ignored;
		if (hsm_algor_get(X509_get0_tbs_sigalg(x), &alg, &ignored) != P11CA_OK ||
		    !hsm_sig_alg_fits(alg, type))
			alg = hsm_sig_alg_default(type);
	}
	*out = alg;
	return P11CA_OK;
}

static enum p11ca_err import_settings(struct engine *eng, const p11ca_v1_CaImportRequest *r,
				      enum hsm_sig_alg alg, struct store_ca *rec,
				      struct p11ca_errmsg *em)
{
	p11ca_v1_CaSettings *st = OPENSSL_zalloc(sizeof(*st));
	if (st == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	st->enabled = true;
	st->signature_algorithm = (p11ca_v1_SignatureAlgorithm)alg;
	snprintf(st->key_uri, sizeof(st->key_uri), "%s", r->key_uri);
	enum p11ca_err err = engine_ca_profile_set(eng->cfg, r->default_profile, st, em);
	if (err == P11CA_OK && r->has_issued)
		err = engine_ca_issued_set(&r->issued, st, em);
	if (err == P11CA_OK)
		err = engine_ca_settings_set(rec, st, em);
	OPENSSL_free(st);
	return err;
}

/* The token's key is the certificate's, and neither is a held CA's. */
static enum p11ca_err import_key_check(struct engine *eng, const char *uri, X509 *x,
				       struct import_scan *scan, struct p11ca_errmsg *em)
{
	struct store_txn *txn = NULL;
	EVP_PKEY *token_pub = NULL;
	enum hsm_key_type token_type = HSM_KEY_UNSPECIFIED;
	P11CA_GUARD(engine_signing_ready(eng, em));
	P11CA_GUARD(signer_public_key(eng->signer, uri, &token_pub, &token_type, em));
	bool same = pkey_same(token_pub, X509_get0_pubkey(x));
	EVP_PKEY_free(token_pub);
	if (!same)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the key at %.200s is not the certificate's (their public keys "
				  "differ): give the URI of the key the certificate was made for",
				  uri);
	P11CA_GUARD(store_txn_begin(eng->st, STORE_TXN_READ, &txn, em));
	enum p11ca_err err = store_ca_list(txn, import_scan_visit, scan, em);
	store_txn_abort(&txn);
	if (err == P11CA_OK && scan->duplicate)
		err = p11ca_fail(em, P11CA_E_STORAGE_EXISTS,
				 "this certificate's key is CA %s's already: use that CA",
				 scan->dup_name);
	return err;
}

static enum p11ca_err import_record(struct engine_call *c, const p11ca_v1_CaImportRequest *r,
				    X509 *x, struct engine_ca *ca, struct p11ca_errmsg *em)
{
	struct engine *eng = c->eng;
	struct store_ca *rec = &ca->rec;
	struct import_scan scan = {.cert = x};
	enum hsm_key_type type = HSM_KEY_UNSPECIFIED;
	enum hsm_sig_alg alg = HSM_SIG_UNSPECIFIED;
	uint8_t serial[STORE_SERIAL_LEN] = {0};
	char details[STORE_AUDIT_DETAILS_MAX + 1];

	P11CA_GUARD(import_cert_check(x, &type, em));
	P11CA_GUARD(import_alg(r, x, type, &alg, em));
	P11CA_GUARD(import_key_check(eng, r->key_uri, x, &scan, em));

	P11CA_GUARD(engine_ca_rec_fill(rec, r->name, X509_get_subject_name(x), r->key_uri, em));
	int clen = i2d_X509(x, NULL);
	if (clen <= 0 || (size_t)clen > sizeof(rec->cert_der))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate is over %zu bytes: p11ca cannot hold it",
				  sizeof(rec->cert_der));
	unsigned char *cp = rec->cert_der;
	rec->cert_der_len = (size_t)i2d_X509(x, &cp);
	rec->parent_id = scan.parent_id;
	P11CA_GUARD(import_settings(eng, r, alg, rec, em));

	const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
	bool has_serial =
		sn->type == V_ASN1_INTEGER && sn->length > 0 && sn->length <= STORE_SERIAL_LEN;
	if (has_serial)
		memcpy(serial + STORE_SERIAL_LEN - sn->length, sn->data, (size_t)sn->length);
	struct pending_job job = {
		.rec = rec,
		.actor = c->actor,
		.serial = has_serial ? serial : NULL,
		.not_after = engine_asn1_time(X509_get0_notAfter(x)),
	};
	snprintf(details, sizeof(details), "%s %.600s, parent %s", hsm_key_type_name(type),
		 r->key_uri,
		 scan.parent_id != 0			? "held here"
		 : X509_check_issued(x, x) == X509_V_OK ? "(self-signed root)"
							: "(issuer elsewhere)");
	enum p11ca_err err = commit_run(eng->commit, pending_job_fn, &job, em);
	if (err == P11CA_OK)
		err = engine_ca_parse(ca, em);
	if (err == P11CA_OK)
		err = engine_ca_activate(eng, ca, "ca.import", c->actor, details, em);
	if (err != P11CA_OK && rec->id != 0)
		p11ca_logf(eng->log, LOG_ERR, "engine: imported CA %s stays PENDING: %s", r->name,
			   p11ca_errmsg_text(em));
	return err;
}

enum p11ca_err engine_op_ca_import(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CaImportRequest *r = &req->op.ca_import;
	p11ca_v1_CaImportResponse *out = &resp->result.ca_import;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	struct store_txn *txn = NULL;
	X509 *x = NULL;

	if (ca == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	enum p11ca_err err = engine_ca_name_check(r->name, em);
	if (err == P11CA_OK)
		err = import_uri_check(r->key_uri, em);
	if (err == P11CA_OK)
		err = cert_load(r->certificate.bytes, r->certificate.size, &x, em);
	if (err == P11CA_OK)
		err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_name_unused(txn, r->name, em);
	store_txn_abort(&txn);
	if (err == P11CA_OK)
		err = import_record(c, r, x, ca, em);
	if (err == P11CA_OK)
		err = engine_ca_summary_read(c->eng, ca, &out->ca, em);
	out->has_ca = err == P11CA_OK;
	X509_free(x);
	engine_ca_clear(ca);
	OPENSSL_free(ca);
	return err;
}
