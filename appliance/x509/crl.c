/*
 * CRLs: build a v2 TBSCertList and put the signer's signature together with it.
 *
 * OpenSSL 3.0 has no setter for a CRL's inner signature AlgorithmIdentifier (there is no
 * X509_CRL_get0_tbs_sigalg), and X509_CRL_sign wants the private key. So the CRL object
 * starts from a minimal template decoded from DER that already carries hsm/algor.h's
 * identifier in both places; the public setters fill in the rest, and i2d_re_X509_CRL_tbs
 * re-encodes it (the setters do not all invalidate the cached encoding).
 */
#include "appliance/x509/x509_internal.h"

#include <string.h>

#include "hsm/algor.h"

/* TLV of `body` with `tag` into *p; returns the bytes written (buf NULL: just count). */
static size_t put_tlv(uint8_t *p, int tag, bool constructed, const uint8_t *body, size_t len)
{
	int total = ASN1_object_size(constructed ? 1 : 0, (int)len, tag);
	if (p != NULL) {
		unsigned char *q = p;
		ASN1_put_object(&q, constructed ? 1 : 0, (int)len, tag, V_ASN1_UNIVERSAL);
		memcpy(q, body, len);
	}
	return (size_t)total;
}

/* SEQUENCE { SEQUENCE { INTEGER 1, alg, Name {}, UTCTime 1970 }, alg, BIT STRING {} } */
static enum p11ca_err crl_template(enum hsm_sig_alg alg, X509_CRL **out, struct p11ca_errmsg *em)
{
	static const uint8_t version_name_time[] = {0x30, 0x00, 0x17, 0x0d, '7', '0', '0', '1', '0',
						    '1',  '0',	'0',  '0',  '0', '0', '0', 'Z'};
	static const uint8_t version[] = {0x02, 0x01, 0x01};
	static const uint8_t empty_bits[] = {0x03, 0x01, 0x00};
	uint8_t alg_der[96], tbs[256], crl[512];
	unsigned char *p = alg_der;
	X509_ALGOR *a = X509_ALGOR_new();
	enum p11ca_err err = a != NULL ? hsm_algor_set(a, alg, em) : P11CA_E_NOMEM;
	int alg_len = err == P11CA_OK ? i2d_X509_ALGOR(a, NULL) : -1;
	if (alg_len > 0 && (size_t)alg_len <= sizeof(alg_der))
		alg_len = i2d_X509_ALGOR(a, &p);
	X509_ALGOR_free(a);
	if (err != P11CA_OK || alg_len <= 0 || (size_t)alg_len > sizeof(alg_der))
		return p11ca_fail(em, err != P11CA_OK ? err : P11CA_E_INTERNAL,
				  "cannot encode the CRL signature algorithm");

	uint8_t body[256];
	size_t n = 0;
	memcpy(body, version, sizeof(version));
	n += sizeof(version);
	memcpy(body + n, alg_der, (size_t)alg_len);
	n += (size_t)alg_len;
	memcpy(body + n, version_name_time, sizeof(version_name_time));
	n += sizeof(version_name_time);
	size_t tbs_len = put_tlv(tbs, V_ASN1_SEQUENCE, true, body, n);

	n = 0;
	memcpy(body, tbs, tbs_len);
	n += tbs_len;
	memcpy(body + n, alg_der, (size_t)alg_len);
	n += (size_t)alg_len;
	memcpy(body + n, empty_bits, sizeof(empty_bits));
	n += sizeof(empty_bits);
	size_t crl_len = put_tlv(crl, V_ASN1_SEQUENCE, true, body, n);

	const unsigned char *q = crl;
	*out = d2i_X509_CRL(NULL, &q, (long)crl_len);
	if (*out == NULL)
		return p11ca_fail(em, P11CA_E_INTERNAL, "cannot decode the CRL template");
	return P11CA_OK;
}

/* RFC 5280 5.3.1: 1..6, 9, 10; 7 is unassigned and 8 (removeFromCRL) is for delta CRLs. */
static bool reason_ok(uint32_t r)
{
	return (r >= 1 && r <= 6) || r == 9 || r == 10;
}

static enum p11ca_err entry_add(X509_CRL *crl, const struct x509_crl_entry *e, size_t idx,
				struct p11ca_errmsg *em)
{
	if (e->reason != 0 && !reason_ok(e->reason))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "CRL entry %zu: reason code %u is not allowed in a CRL; use 1-6, "
				  "9 or 10 (or 0 for none)",
				  idx, e->reason);
	ASN1_INTEGER *serial = NULL;
	ASN1_TIME *when = NULL;
	ASN1_GENERALIZEDTIME *invalid = NULL;
	ASN1_ENUMERATED *reason = NULL;
	X509_REVOKED *rev = NULL;
	enum p11ca_err err = x509_serial_to_asn1(e->serial, e->serial_len, &serial, em);
	if (err == P11CA_OK)
		err = x509_time(e->revoked_at, "revocationDate", &when, em);
	if (err != P11CA_OK)
		goto out;
	err = P11CA_E_NOMEM;
	rev = X509_REVOKED_new();
	if (rev == NULL || X509_REVOKED_set_serialNumber(rev, serial) != 1 ||
	    X509_REVOKED_set_revocationDate(rev, when) != 1)
		goto out;
	if (e->reason != 0 &&
	    ((reason = ASN1_ENUMERATED_new()) == NULL ||
	     ASN1_ENUMERATED_set(reason, (long)e->reason) != 1 ||
	     X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, reason, 0, X509V3_ADD_APPEND) != 1))
		goto out;
	/* invalidityDate is always GeneralizedTime (RFC 5280 5.3.2). */
	if (e->invalidity_date != 0 &&
	    ((invalid = ASN1_GENERALIZEDTIME_adj(NULL, (time_t)e->invalidity_date, 0, 0)) == NULL ||
	     X509_REVOKED_add1_ext_i2d(rev, NID_invalidity_date, invalid, 0, X509V3_ADD_APPEND) !=
		     1))
		goto out;
	if (X509_CRL_add0_revoked(crl, rev) != 1)
		goto out;
	rev = NULL;
	err = P11CA_OK;
out:
	if (err == P11CA_E_NOMEM)
		(void)p11ca_fail(em, err, "cannot encode CRL entry %zu", idx);
	X509_REVOKED_free(rev);
	ASN1_INTEGER_free(serial);
	ASN1_TIME_free(when);
	ASN1_GENERALIZEDTIME_free(invalid);
	ASN1_ENUMERATED_free(reason);
	return err;
}

static enum p11ca_err crl_fill(X509_CRL *crl, const struct x509_crl_spec *spec,
			       struct p11ca_errmsg *em)
{
	ASN1_TIME *this_update = NULL, *next_update = NULL;
	AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
	ASN1_INTEGER *number = ASN1_INTEGER_new();
	enum p11ca_err err = P11CA_OK;
	if (aki == NULL || number == NULL || ASN1_INTEGER_set_uint64(number, spec->number) != 1) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a CRL");
		goto out;
	}
	err = x509_time(spec->this_update, "thisUpdate", &this_update, em);
	if (err == P11CA_OK)
		err = x509_time(spec->next_update, "nextUpdate", &next_update, em);
	if (err == P11CA_OK)
		err = x509_issuer_key_id(spec->issuer, &aki->keyid, em);
	if (err != P11CA_OK)
		goto out;
	if (X509_CRL_set_issuer_name(crl, X509_get_subject_name(spec->issuer)) != 1 ||
	    X509_CRL_set1_lastUpdate(crl, this_update) != 1 ||
	    X509_CRL_set1_nextUpdate(crl, next_update) != 1) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a CRL");
		goto out;
	}
	for (size_t i = 0; i < spec->n_entries && err == P11CA_OK; i++)
		err = entry_add(crl, &spec->entries[i], i, em);
	if (err != P11CA_OK)
		goto out;
	if (X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, aki, 0, X509V3_ADD_APPEND) !=
		    1 ||
	    X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, X509V3_ADD_APPEND) != 1)
		err = p11ca_fail(em, P11CA_E_NOMEM, "cannot add the CRL extensions");
out:
	ASN1_TIME_free(this_update);
	ASN1_TIME_free(next_update);
	AUTHORITY_KEYID_free(aki);
	ASN1_INTEGER_free(number);
	return err;
}

enum p11ca_err x509_crl_tbs(const struct x509_crl_spec *spec, X509_CRL **tbs, uint8_t **tbs_der,
			    size_t *tbs_der_len, struct p11ca_errmsg *em)
{
	*tbs = NULL;
	*tbs_der = NULL;
	*tbs_der_len = 0;
	if (spec == NULL || spec->issuer == NULL || (spec->n_entries > 0 && spec->entries == NULL))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "CRL spec without issuer or entries");
	if (spec->next_update <= spec->this_update)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "CRL nextUpdate (%lld) must be later than thisUpdate (%lld)",
				  (long long)spec->next_update, (long long)spec->this_update);
	if (X509_NAME_entry_count(X509_get_subject_name(spec->issuer)) == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the CRL issuer certificate has an empty subject name");
	P11CA_GUARD(x509_alg_fits_key(spec->alg, X509_get0_pubkey(spec->issuer), em));

	X509_CRL *crl = NULL;
	unsigned char *der = NULL;
	enum p11ca_err err = crl_template(spec->alg, &crl, em);
	if (err == P11CA_OK)
		err = crl_fill(crl, spec, em);
	if (err != P11CA_OK)
		goto out;
	int len = i2d_re_X509_CRL_tbs(crl, &der);
	if (len <= 0) {
		err = p11ca_fail(em, P11CA_E_INTERNAL, "cannot encode the TBSCertList");
		goto out;
	}
	*tbs = crl;
	crl = NULL;
	*tbs_der = der;
	*tbs_der_len = (size_t)len;
out:
	X509_CRL_free(crl);
	return err;
}

enum p11ca_err x509_crl_finish(X509_CRL *tbs, const uint8_t *sig, size_t sig_len, uint8_t **der,
			       size_t *der_len, struct p11ca_errmsg *em)
{
	*der = NULL;
	*der_len = 0;
	if (tbs == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "x509_crl_finish: no TBS");
	/* The outer identifier equals the inner one: both come from the template. */
	const X509_ALGOR *alg = NULL;
	X509_CRL_get0_signature(tbs, NULL, &alg);
	unsigned char *tbs_der = NULL;
	int len = i2d_re_X509_CRL_tbs(tbs, &tbs_der);
	if (len <= 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "cannot encode the TBSCertList");
	enum p11ca_err err =
		x509_assemble(tbs_der, (size_t)len, alg, sig, sig_len, der, der_len, em);
	OPENSSL_free(tbs_der);
	return err;
}
