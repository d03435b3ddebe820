/*
 * ca import (adopt a CA whose key already lives on the token) and ca edit (what a CA does
 * from now on; its certificate never changes).
 *
 * An import is recorded PENDING, gets its first CRL signed by the token key (which proves
 * the key signs and the signer accepts the certificate as its issuer), then becomes ACTIVE:
 * as with ca init, never a half-made ACTIVE CA.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "appliance/engine/plan.h"
#include "hsm/algor.h"
#include "hsm/signer.h"

/* ---- ca import ---------------------------------------------------------------------------- */

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
	if (x == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate is not one X.509 certificate in DER or PEM");
	*out = x;
	return P11CA_OK;
}

/* basicConstraints CA:TRUE and keyUsage with keyCertSign; a subject that checks; in date. */
static enum p11ca_err import_cert_check(X509 *x, enum hsm_key_type *type, struct p11ca_errmsg *em)
{
	if ((X509_get_extension_flags(x) & EXFLAG_CA) == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate is not a CA certificate (basicConstraints "
				  "CA:TRUE is missing)");
	if ((X509_get_extension_flags(x) & EXFLAG_KUSAGE) == 0 ||
	    (X509_get_key_usage(x) & KU_KEY_CERT_SIGN) == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate's keyUsage lacks keyCertSign: it may not sign "
				  "certificates");
	P11CA_GUARD(x509_name_check(X509_get_subject_name(x), em));
	if (engine_asn1_time(X509_get0_notAfter(x)) <= engine_now())
		return p11ca_fail(em, P11CA_E_POLICY, "the certificate has expired");
	EVP_PKEY *pub = X509_get0_pubkey(x);
	if (pub == NULL || hsm_key_type_of_pkey(pub, type, em) != P11CA_OK)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate's key is of a type p11ca does not support");
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
 * its signature. The same certificate held already is refused. */
static int import_scan_visit(void *arg, const struct store_ca *ca)
{
	struct import_scan *s = arg;
	if (ca->cert_der_len == 0)
		return 0;
	const unsigned char *p = ca->cert_der;
	X509 *x = d2i_X509(NULL, &p, (long)ca->cert_der_len);
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

struct import_job {
	struct store_ca *rec; /* id written back */
	const char *actor;
	bool activate;
	const uint8_t *serial; /* the certificate's, padded to STORE_SERIAL_LEN; NULL: none */
	char details[STORE_AUDIT_DETAILS_MAX + 1];
	struct store_ca *scratch;
};

static enum p11ca_err import_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct import_job *j = arg;
	if (j->activate) {
		P11CA_GUARD(store_ca_get(txn, j->rec->id, j->scratch, em));
		j->scratch->state = STORE_CA_ACTIVE;
		P11CA_GUARD(store_ca_put(txn, j->scratch, em));
		return store_audit_append(txn, "ca.import", j->actor, j->rec->name, j->details,
					  NULL, em);
	}
	j->rec->id = 0; /* a re-run inserts again */
	P11CA_GUARD(store_ca_put(txn, j->rec, em));
	/* Its certificate is listed (and revocable) under its issuer when that is held here,
	 * or under itself when self-signed, as for a CA made here. A serial already known
	 * (issued here before) is simply not recorded twice. */
	uint32_t under = j->rec->parent_id != 0 ? j->rec->parent_id : j->rec->id;
	if (j->serial != NULL) {
		struct p11ca_errmsg ignored;
		const unsigned char *p = j->rec->cert_der;
		X509 *x = d2i_X509(NULL, &p, (long)j->rec->cert_der_len);
		int64_t not_after = x != NULL ? engine_asn1_time(X509_get0_notAfter(x)) : 0;
		X509_free(x);
		enum p11ca_err e = store_cert_import(txn, under, j->serial, j->rec->cert_der,
						     j->rec->cert_der_len, not_after, "ca",
						     j->actor, NULL, 0, &ignored);
		if (e != P11CA_OK && e != P11CA_E_STORAGE_EXISTS && e != P11CA_E_INVALID_ARG)
			return p11ca_fail(em, e, "%s", p11ca_errmsg_text(&ignored));
	}
	return store_audit_append(txn, "ca.pending", j->actor, j->rec->name, j->rec->key_uri, NULL,
				  em);
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
	enum p11ca_err err = P11CA_OK;
	if (st == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	st->enabled = true;
	st->signature_algorithm = (p11ca_v1_SignatureAlgorithm)alg;
	snprintf(st->key_uri, sizeof(st->key_uri), "%s", r->key_uri);
	if (r->default_profile[0] != '\0' &&
	    p11cad_config_profile(eng->cfg, r->default_profile) == NULL)
		err = p11ca_fail(em, P11CA_E_STORAGE_NOT_FOUND,
				 "no enabled profile '%.64s' for the CA's default: see p11ca "
				 "profile list",
				 r->default_profile);
	snprintf(st->default_profile, sizeof(st->default_profile), "%s", r->default_profile);
	if (err == P11CA_OK && r->has_issued) {
		err = engine_ext_check(&r->issued, em);
		st->has_issued = true;
		st->issued = r->issued;
	}
	if (err == P11CA_OK)
		err = engine_ca_settings_set(rec, st, em);
	OPENSSL_free(st);
	return err;
}

static enum p11ca_err import_record(struct engine_call *c, const p11ca_v1_CaImportRequest *r,
				    X509 *x, struct engine_ca *ca, struct p11ca_errmsg *em)
{
	struct engine *eng = c->eng;
	struct store_ca *rec = &ca->rec;
	struct store_txn *txn = NULL;
	struct import_scan scan = {.cert = x};
	enum hsm_key_type type = HSM_KEY_UNSPECIFIED, token_type = HSM_KEY_UNSPECIFIED;
	enum hsm_sig_alg alg = HSM_SIG_UNSPECIFIED;
	EVP_PKEY *token_pub = NULL;
	uint8_t serial[STORE_SERIAL_LEN] = {0};
	bool has_serial = false;

	P11CA_GUARD(import_cert_check(x, &type, em));
	P11CA_GUARD(import_alg(r, x, type, &alg, em));
	P11CA_GUARD(engine_signing_ready(eng, em));
	P11CA_GUARD(signer_public_key(eng->signer, r->key_uri, &token_pub, &token_type, em));
	bool same = pkey_same(token_pub, X509_get0_pubkey(x));
	EVP_PKEY_free(token_pub);
	if (!same)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the key at %.200s is not the certificate's: their public keys "
				  "differ",
				  r->key_uri);
	P11CA_GUARD(store_txn_begin(eng->st, STORE_TXN_READ, &txn, em));
	enum p11ca_err err = store_ca_list(txn, import_scan_visit, &scan, em);
	store_txn_abort(&txn);
	if (err != P11CA_OK)
		return err;
	if (scan.duplicate)
		return p11ca_fail(em, P11CA_E_STORAGE_EXISTS,
				  "this certificate's key is CA %s's already", scan.dup_name);

	snprintf(rec->name, sizeof(rec->name), "%s", r->name);
	unsigned char *sp = rec->subject_der;
	int slen = i2d_X509_NAME(X509_get_subject_name(x), NULL);
	int clen = i2d_X509(x, NULL);
	if (slen <= 0 || (size_t)slen > sizeof(rec->subject_der) || clen <= 0 ||
	    (size_t)clen > sizeof(rec->cert_der))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate or its subject is too large to store");
	rec->subject_der_len = (size_t)i2d_X509_NAME(X509_get_subject_name(x), &sp);
	unsigned char *cp = rec->cert_der;
	rec->cert_der_len = (size_t)i2d_X509(x, &cp);
	snprintf(rec->key_backend, sizeof(rec->key_backend), "pkcs11");
	snprintf(rec->key_uri, sizeof(rec->key_uri), "%s", r->key_uri);
	rec->parent_id = scan.parent_id;
	rec->state = STORE_CA_PENDING;
	P11CA_GUARD(import_settings(eng, r, alg, rec, em));

	const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
	if (sn->type == V_ASN1_INTEGER && sn->length > 0 && sn->length <= STORE_SERIAL_LEN) {
		memcpy(serial + STORE_SERIAL_LEN - sn->length, sn->data, (size_t)sn->length);
		has_serial = true;
	}
	struct import_job job = {
		.rec = rec,
		.actor = c->actor,
		.serial = has_serial ? serial : NULL,
		.scratch = OPENSSL_zalloc(sizeof(struct store_ca)),
	};
	if (job.scratch == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	snprintf(job.details, sizeof(job.details), "%s %.600s, parent %s", hsm_key_type_name(type),
		 r->key_uri,
		 scan.parent_id != 0			? "held here"
		 : X509_check_issued(x, x) == X509_V_OK ? "(self-signed root)"
							: "(issuer elsewhere)");
	err = commit_run(eng->commit, import_job_fn, &job, em);
	if (err == P11CA_OK)
		err = engine_ca_parse(ca, em);
	if (err == P11CA_OK)
		err = engine_crl_generate(eng, ca, c->actor, em);
	if (err == P11CA_OK) {
		job.activate = true;
		err = commit_run(eng->commit, import_job_fn, &job, em);
	}
	if (err == P11CA_OK)
		rec->state = STORE_CA_ACTIVE;
	else if (rec->id != 0)
		p11ca_logf(eng->log, LOG_ERR, "engine: imported CA %s stays PENDING: %s", r->name,
			   p11ca_errmsg_text(em));
	OPENSSL_free(job.scratch);
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
	enum p11ca_err err = P11CA_OK;

	if (ca == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	if (!engine_ca_name_valid(r->name))
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "CA name '%.64s' is not allowed: 1-64 of A-Z a-z 0-9 . _ -",
				 r->name);
	if (err == P11CA_OK)
		err = import_uri_check(r->key_uri, em);
	if (err == P11CA_OK)
		err = cert_load(r->certificate.bytes, r->certificate.size, &x, em);
	if (err == P11CA_OK)
		err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK) {
		struct p11ca_errmsg ignored;
		if (store_ca_get_by_name(txn, r->name, &ca->rec, &ignored) == P11CA_OK)
			err = p11ca_fail(em, P11CA_E_STORAGE_EXISTS,
					 "a CA named %s exists already: pick another name",
					 r->name);
		memset(&ca->rec, 0, sizeof(ca->rec));
	}
	store_txn_abort(&txn);
	if (err == P11CA_OK)
		err = import_record(c, r, x, ca, em);
	if (err == P11CA_OK)
		err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_summary(c->eng, txn, ca, &out->ca, em);
	store_txn_abort(&txn);
	out->has_ca = err == P11CA_OK;
	X509_free(x);
	engine_ca_clear(ca);
	OPENSSL_free(ca);
	return err;
}

/* ---- ca edit ------------------------------------------------------------------------------ */

/* ExtensionSettings fields the edit sets replace the CA's; the others stay. */
static void issued_merge(p11ca_v1_ExtensionSettings *to, const p11ca_v1_ExtensionSettings *from)
{
#define TAKE(f)                                                                                    \
	if (from->has_##f) {                                                                       \
		to->has_##f = true;                                                                \
		to->f = from->f;                                                                   \
	}
	TAKE(crl_urls)
	TAKE(ocsp_urls)
	TAKE(issuer_urls)
	TAKE(policies)
	TAKE(issuer_alt_names)
	TAKE(ocsp_no_check)
	TAKE(tls_feature_status_request)
	TAKE(key_usage)
	TAKE(extended_key_usage)
#undef TAKE
}

struct edit_job {
	uint32_t id;
	const p11ca_v1_CaSettings *settings;
	bool set_state;
	enum store_ca_state state;
	const char *actor, *details;
	struct store_ca *scratch; /* output: the record as stored */
};

static enum p11ca_err edit_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct edit_job *j = arg;
	/* Re-read: the CRL number may have moved since the CA was selected. */
	P11CA_GUARD(store_ca_get(txn, j->id, j->scratch, em));
	if (j->set_state)
		j->scratch->state = j->state;
	P11CA_GUARD(engine_ca_settings_set(j->scratch, j->settings, em));
	P11CA_GUARD(store_ca_put(txn, j->scratch, em));
	return store_audit_append(txn, "ca.edit", j->actor, j->scratch->name, j->details, NULL, em);
}

static enum p11ca_err edit_apply(struct engine *eng, const p11ca_v1_CaEditRequest *r,
				 const struct engine_ca *ca, p11ca_v1_CaSettings *st, char *details,
				 size_t cap, struct p11ca_errmsg *em)
{
	size_t n = 0;
	details[0] = '\0';
	if (r->has_enabled) {
		st->enabled = r->enabled;
		n += (size_t)snprintf(details + n, cap - n, "%s ",
				      r->enabled ? "enabled" : "disabled");
	}
	if (r->has_default_profile) {
		if (r->default_profile[0] != '\0' &&
		    p11cad_config_profile(eng->cfg, r->default_profile) == NULL)
			return p11ca_fail(em, P11CA_E_STORAGE_NOT_FOUND,
					  "no enabled profile '%.64s': see p11ca profile list",
					  r->default_profile);
		snprintf(st->default_profile, sizeof(st->default_profile), "%s",
			 r->default_profile);
		n += (size_t)snprintf(details + n, cap - n, "profile=%s ",
				      r->default_profile[0] ? r->default_profile : "(server's)");
	}
	if (r->signature_algorithm != p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_UNSPECIFIED) {
		char whose[STORE_CA_NAME_MAX + 16];
		snprintf(whose, sizeof(whose), "CA %s's", ca->rec.name);
		P11CA_GUARD(engine_alg_for_key((enum hsm_sig_alg)r->signature_algorithm,
					       ca->key_type, whose, em));
		st->signature_algorithm = r->signature_algorithm;
		n += (size_t)snprintf(details + n, cap - n, "algorithm=%s ",
				      hsm_sig_alg_name((enum hsm_sig_alg)r->signature_algorithm));
	}
	if (r->has_issued) {
		issued_merge(&st->issued, &r->issued);
		st->has_issued = true;
		P11CA_GUARD(engine_ext_check(&st->issued, em));
		snprintf(details + n, cap - n, "issued extensions");
	}
	return P11CA_OK;
}

enum p11ca_err engine_op_ca_edit(struct engine_call *c, p11ca_v1_Request *req,
				 p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CaEditRequest *r = &req->op.ca_edit;
	p11ca_v1_CaEditResponse *out = &resp->result.ca_edit;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	p11ca_v1_CaSettings *st = OPENSSL_zalloc(sizeof(*st));
	struct store_ca *scratch = OPENSSL_zalloc(sizeof(*scratch));
	struct store_txn *txn = NULL;
	char details[256];
	enum p11ca_err err = P11CA_OK;

	if (ca == NULL || st == NULL || scratch == NULL)
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	if (err == P11CA_OK)
		err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_select(&c->eng->ca_cache, txn, r->ca, ca, em);
	store_txn_abort(&txn);
	if (err == P11CA_OK && ca->rec.state != STORE_CA_ACTIVE &&
	    ca->rec.state != STORE_CA_DISABLED)
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "CA %s has no certificate yet (its creation did not finish): "
				 "nothing to edit",
				 ca->rec.name);
	if (err == P11CA_OK)
		err = engine_ca_settings_get(&ca->rec, st, em);
	if (err == P11CA_OK)
		err = edit_apply(c->eng, r, ca, st, details, sizeof(details), em);
	if (err != P11CA_OK)
		goto out;
	struct edit_job job = {
		.id = ca->rec.id,
		.settings = st,
		.set_state = r->has_enabled,
		.state = r->enabled ? STORE_CA_ACTIVE : STORE_CA_DISABLED,
		.actor = c->actor,
		.details = details,
		.scratch = scratch,
	};
	err = commit_run(c->eng->commit, edit_job_fn, &job, em);
	if (err != P11CA_OK)
		goto out;
	memcpy(&ca->rec, scratch, sizeof(*scratch));
	err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_summary(c->eng, txn, ca, &out->ca, em);
	store_txn_abort(&txn);
	if (err == P11CA_OK) {
		out->has_ca = true;
		out->has_settings = true;
		out->settings = *st;
	}
out:
	if (ca != NULL)
		engine_ca_clear(ca);
	OPENSSL_free(ca);
	OPENSSL_free(st);
	OPENSSL_free(scratch);
	return err;
}
