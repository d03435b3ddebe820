/*
 * Stored records → the public summaries (CaSummary, CertSummary) and PEM chains.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/x509v3.h>

#include "appliance/engine/plan.h"
#include "hsm/algor.h"

int64_t engine_now(void)
{
	return (int64_t)time(NULL);
}

int64_t engine_asn1_time(const ASN1_TIME *t)
{
	struct tm tm;
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

p11ca_v1_CertStatus engine_cert_status(const struct store_cert *cert, int64_t now)
{
	if (cert->revoked)
		return p11ca_v1_CertStatus_CERT_STATUS_REVOKED;
	if (cert->not_after < now)
		return p11ca_v1_CertStatus_CERT_STATUS_EXPIRED;
	return p11ca_v1_CertStatus_CERT_STATUS_VALID;
}

/* The value of the URI's object= attribute, percent-decoded: the key's CKA_LABEL. */
static void uri_label(const char *uri, char *out, size_t cap)
{
	out[0] = '\0';
	const char *p = strstr(uri, "object=");
	if (p == NULL)
		return;
	p += strlen("object=");
	size_t n = 0;
	while (*p != '\0' && *p != ';' && *p != '?' && n + 1 < cap) {
		unsigned v;
		if (p[0] == '%' && sscanf(p + 1, "%2x", &v) == 1) {
			out[n++] = (char)v;
			p += 3;
		} else {
			out[n++] = *p++;
		}
	}
	out[n] = '\0';
}

static void serial_copy(const X509 *x, uint8_t *out, pb_size_t *len, size_t cap)
{
	const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
	*len = 0;
	if (sn != NULL && (size_t)sn->length <= cap) {
		memcpy(out, sn->data, (size_t)sn->length);
		*len = (pb_size_t)sn->length;
	}
}

enum p11ca_err engine_ca_summary(struct engine *eng, struct store_txn *txn,
				 const struct engine_ca *ca, p11ca_v1_CaSummary *out,
				 struct p11ca_errmsg *em)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", ca->rec.name);
	uri_label(ca->rec.key_uri, out->key_label, sizeof(out->key_label));
	snprintf(out->token, sizeof(out->token), "%s", eng != NULL ? eng->cfg->token : "");
	if (ca->rec.parent_id != 0) {
		struct store_ca parent;
		P11CA_GUARD(store_ca_get(txn, ca->rec.parent_id, &parent, em));
		snprintf(out->parent, sizeof(out->parent), "%s", parent.name);
	}
	if (ca->cert == NULL) {
		out->status = p11ca_v1_CaStatus_CA_STATUS_KEY_UNAVAILABLE; /* PENDING */
		return P11CA_OK;
	}
	serial_copy(ca->cert, out->serial.bytes, &out->serial.size, sizeof(out->serial.bytes));
	P11CA_GUARD(x509_name_format(X509_get_subject_name(ca->cert), out->subject,
				     sizeof(out->subject), em));
	out->not_before = engine_asn1_time(X509_get0_notBefore(ca->cert));
	out->not_after = engine_asn1_time(X509_get0_notAfter(ca->cert));
	out->key_type = (p11ca_v1_KeyType)ca->key_type;
	/* What the CA signs with unless told otherwise. */
	p11ca_v1_CaSettings *settings = OPENSSL_zalloc(sizeof(*settings));
	if (settings == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	enum p11ca_err err = engine_ca_settings_get(&ca->rec, settings, em);
	out->enabled = settings->enabled && ca->rec.state == STORE_CA_ACTIVE;
	out->signature_algorithm = (p11ca_v1_SignatureAlgorithm)engine_ca_sig_alg(ca, settings);
	OPENSSL_free(settings);
	if (err != P11CA_OK)
		return err;
	long pathlen = X509_get_pathlen(ca->cert);
	if (pathlen >= 0) {
		out->has_path_length = true;
		out->path_length = (uint32_t)pathlen;
	}
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca->cert);
	if (ski != NULL && (size_t)ski->length <= sizeof(out->subject_key_id.bytes)) {
		memcpy(out->subject_key_id.bytes, ski->data, (size_t)ski->length);
		out->subject_key_id.size = (pb_size_t)ski->length;
	}

	out->status = p11ca_v1_CaStatus_CA_STATUS_ACTIVE;
	/* A disabled CA is still an active one (it revokes and publishes CRLs): `enabled`
	 * says whether it issues. */
	if (ca->rec.state != STORE_CA_ACTIVE && ca->rec.state != STORE_CA_DISABLED)
		out->status = p11ca_v1_CaStatus_CA_STATUS_KEY_UNAVAILABLE;
	else if (out->not_after < engine_now())
		out->status = p11ca_v1_CaStatus_CA_STATUS_EXPIRED;
	/* A CA's certificate is recorded under its issuer (a root: itself). */
	if (out->serial.size == STORE_SERIAL_LEN) {
		struct store_cert *c = OPENSSL_zalloc(sizeof(*c));
		if (c == NULL)
			return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		uint32_t issuer = ca->rec.parent_id != 0 ? ca->rec.parent_id : ca->rec.id;
		struct p11ca_errmsg ignored;
		if (store_cert_get(txn, issuer, out->serial.bytes, c, &ignored) == P11CA_OK &&
		    c->revoked) {
			out->status = p11ca_v1_CaStatus_CA_STATUS_REVOKED;
			out->has_revocation = true;
			out->revocation.revoked_at = c->revocation.revoked_at;
			out->revocation.reason = (p11ca_v1_RevocationReason)c->revocation.reason;
			out->revocation.compromised_at = c->revocation.invalidity_date;
		}
		OPENSSL_free(c);
	}
	return P11CA_OK;
}

enum p11ca_err engine_ca_summary_read(struct engine *eng, const struct engine_ca *ca,
				      p11ca_v1_CaSummary *out, struct p11ca_errmsg *em)
{
	struct store_txn *txn = NULL;
	P11CA_GUARD(store_txn_begin(eng->st, STORE_TXN_READ, &txn, em));
	enum p11ca_err err = engine_ca_summary(eng, txn, ca, out, em);
	store_txn_abort(&txn);
	return err;
}

enum p11ca_err engine_cert_summary(const struct store_cert *cert, const char *ca_name,
				   p11ca_v1_CertSummary *out, struct p11ca_errmsg *em)
{
	enum p11ca_err err = P11CA_OK;
	memset(out, 0, sizeof(*out));
	memcpy(out->serial.bytes, cert->serial, STORE_SERIAL_LEN);
	out->serial.size = STORE_SERIAL_LEN;
	snprintf(out->ca, sizeof(out->ca), "%s", ca_name);
	snprintf(out->profile, sizeof(out->profile), "%s", cert->profile);
	out->not_after = cert->not_after;
	out->status = engine_cert_status(cert, engine_now());
	if (cert->revoked) {
		out->has_revocation = true;
		out->revocation.revoked_at = cert->revocation.revoked_at;
		out->revocation.reason = (p11ca_v1_RevocationReason)cert->revocation.reason;
		out->revocation.compromised_at = cert->revocation.invalidity_date;
	}
	const unsigned char *p = cert->der;
	X509 *x = d2i_X509(NULL, &p, (long)cert->der_len);
	if (x == NULL)
		return p11ca_fail(
			em, P11CA_E_STORAGE_CORRUPT,
			"a stored certificate does not parse: run the audit verification");
	err = x509_name_format(X509_get_subject_name(x), out->subject, sizeof(out->subject), em);
	if (err != P11CA_OK)
		goto out;
	out->not_before = engine_asn1_time(X509_get0_notBefore(x));
	enum hsm_key_type kt = HSM_KEY_UNSPECIFIED;
	struct p11ca_errmsg ignored;
	EVP_PKEY *pub = X509_get0_pubkey(x);
	if (pub != NULL && hsm_key_type_of_pkey(pub, &kt, &ignored) == P11CA_OK)
		out->key_type = (p11ca_v1_KeyType)kt;
out:
	X509_free(x);
	return err;
}

enum p11ca_err engine_cert_summary_issued(const uint8_t serial[STORE_SERIAL_LEN],
					  const struct x509_cert_spec *spec, const char *profile,
					  const char *ca_name, p11ca_v1_CertSummary *out,
					  struct p11ca_errmsg *em)
{
	memset(out, 0, sizeof(*out));
	memcpy(out->serial.bytes, serial, STORE_SERIAL_LEN);
	out->serial.size = STORE_SERIAL_LEN;
	snprintf(out->ca, sizeof(out->ca), "%s", ca_name);
	snprintf(out->profile, sizeof(out->profile), "%s", profile);
	out->not_before = spec->not_before;
	out->not_after = spec->not_after;
	/* Just stored, so not revoked; expiry as engine_cert_status decides it. */
	out->status = spec->not_after < engine_now() ? p11ca_v1_CertStatus_CERT_STATUS_EXPIRED
						     : p11ca_v1_CertStatus_CERT_STATUS_VALID;
	enum hsm_key_type kt = HSM_KEY_UNSPECIFIED;
	struct p11ca_errmsg ignored;
	if (hsm_key_type_of_pkey(spec->public_key, &kt, &ignored) == P11CA_OK)
		out->key_type = (p11ca_v1_KeyType)kt;
	return x509_name_format(spec->subject, out->subject, sizeof(out->subject), em);
}

enum p11ca_err engine_chain_pem(struct store_txn *txn, uint32_t ca_id, uint8_t *out, size_t cap,
				size_t *len, uint32_t *count, struct p11ca_errmsg *em)
{
	enum p11ca_err err = P11CA_OK;
	struct store_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	if (ca == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	for (int depth = 0; ca_id != 0; depth++) {
		if (depth == ENGINE_CHAIN_MAX) {
			err = p11ca_fail(em, P11CA_E_STORAGE_CORRUPT,
					 "the CA records form a loop: run the audit verification");
			break;
		}
		err = store_ca_get(txn, ca_id, ca, em);
		if (err == P11CA_OK && ca->cert_der_len == 0)
			err = p11ca_fail(
				em, P11CA_E_POLICY,
				"CA %s has no certificate yet (its creation did not finish)",
				ca->name);
		if (err == P11CA_OK)
			err = x509_pem_append("CERTIFICATE", ca->cert_der, ca->cert_der_len, out,
					      cap, len, em);
		if (err != P11CA_OK)
			break;
		(*count)++;
		ca_id = ca->parent_id;
	}
	OPENSSL_free(ca);
	return err;
}
