/*
 * Pieces certificates and CRLs share: serials, times, key identifiers, and putting a TBS,
 * its AlgorithmIdentifier and the signer's signature together.
 */
#include "appliance/x509/x509_internal.h"

#include <string.h>

#include "hsm/algor.h"

/* RFC 5280 4.1.2.2: at most 20 content octets. */
#define SERIAL_OCTETS_MAX 20

enum p11ca_err x509_serial_to_asn1(const uint8_t *serial, size_t len, ASN1_INTEGER **out,
				   struct p11ca_errmsg *em)
{
	*out = NULL;
	if (serial == NULL || len == 0 || len > 64)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "serial number of %zu bytes; give 1 to %d bytes", len,
				  SERIAL_OCTETS_MAX);
	BIGNUM *bn = BN_bin2bn(serial, (int)len, NULL);
	if (bn == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory converting a serial number");
	enum p11ca_err err = P11CA_OK;
	/* DER adds a leading zero octet when the top bit is set. */
	int octets = BN_num_bits(bn) / 8 + 1;
	if (BN_is_zero(bn))
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "serial number is zero; RFC 5280 requires a positive serial");
	else if (octets > SERIAL_OCTETS_MAX)
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "serial number needs %d DER octets; RFC 5280 allows at most %d "
				 "(keep it below 2^159)",
				 octets, SERIAL_OCTETS_MAX);
	else if ((*out = BN_to_ASN1_INTEGER(bn, NULL)) == NULL)
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory converting a serial number");
	BN_free(bn);
	return err;
}

enum p11ca_err x509_time(int64_t t, const char *what, ASN1_TIME **out, struct p11ca_errmsg *em)
{
	*out = NULL;
	/* 0000-01-01 .. 9999-12-31T23:59:59Z: what GeneralizedTime can hold. */
	if (t < -62167219200LL || t > 253402300799LL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%s (%lld) is outside years 0..9999",
				  what, (long long)t);
	/* ASN1_TIME_adj picks UTCTime for 1950..2049 and GeneralizedTime otherwise. */
	*out = ASN1_TIME_adj(NULL, (time_t)t, 0, 0);
	if (*out == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "cannot encode %s", what);
	return P11CA_OK;
}

enum p11ca_err x509_issuer_key_id(const X509 *issuer, ASN1_OCTET_STRING **out,
				  struct p11ca_errmsg *em)
{
	/* X509_get0_subject_key_id caches extensions in the object, hence not const. */
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id((X509 *)issuer);
	*out = ski != NULL ? ASN1_OCTET_STRING_dup(ski) : NULL;
	if (ski == NULL) {
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int md_len = 0;
		if (X509_pubkey_digest(issuer, EVP_sha1(), md, &md_len) != 1)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "the issuer certificate has no usable public key");
		*out = ASN1_OCTET_STRING_new();
		if (*out != NULL && ASN1_OCTET_STRING_set(*out, md, (int)md_len) != 1) {
			ASN1_OCTET_STRING_free(*out);
			*out = NULL;
		}
	}
	if (*out == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory copying a key identifier");
	return P11CA_OK;
}

enum p11ca_err x509_alg_fits_key(enum hsm_sig_alg alg, EVP_PKEY *issuer_key,
				 struct p11ca_errmsg *em)
{
	enum hsm_key_type type = HSM_KEY_UNSPECIFIED;
	if (hsm_key_type_of_pkey(issuer_key, &type, em) != P11CA_OK)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "the issuer key cannot sign");
	if (!hsm_sig_alg_fits(alg, type))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "signature algorithm %s cannot be used with the issuer's %s key",
				  hsm_sig_alg_name(alg) ? hsm_sig_alg_name(alg) : "(unknown)",
				  hsm_key_type_name(type));
	return P11CA_OK;
}

enum p11ca_err x509_assemble(const uint8_t *tbs, size_t tbs_len, const X509_ALGOR *alg,
			     const uint8_t *sig, size_t sig_len, uint8_t **der, size_t *der_len,
			     struct p11ca_errmsg *em)
{
	*der = NULL;
	*der_len = 0;
	enum hsm_sig_alg which = HSM_SIG_UNSPECIFIED;
	if (sig == NULL || sig_len == 0 || sig_len > HSM_SIG_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "signature of %zu bytes; expected 1 to %d bytes", sig_len,
				  HSM_SIG_MAX);
	if (hsm_algor_get(alg, &which, em) != P11CA_OK)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the TBS names a signature algorithm "
				  "p11ca does not sign with");

	enum p11ca_err err = P11CA_OK;
	unsigned char *alg_der = NULL, *bits_der = NULL;
	ASN1_BIT_STRING *bits = ASN1_BIT_STRING_new();
	if (bits == NULL || ASN1_BIT_STRING_set(bits, (unsigned char *)sig, (int)sig_len) != 1) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory encoding a signature");
		goto out;
	}
	/* A signature is an octet string in a BIT STRING: 0 unused bits, always. Without
	 * this flag i2d trims trailing zero bits and 1 signature in 256 breaks. */
	bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
	bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;

	int alg_len = i2d_X509_ALGOR(alg, &alg_der);
	int bits_len = i2d_ASN1_BIT_STRING(bits, &bits_der);
	if (alg_len <= 0 || bits_len <= 0 || tbs_len > INT32_MAX / 2) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "cannot encode a signed object");
		goto out;
	}
	int body = (int)tbs_len + alg_len + bits_len;
	int total = ASN1_object_size(1, body, V_ASN1_SEQUENCE);
	uint8_t *buf = total > 0 ? OPENSSL_malloc((size_t)total) : NULL;
	if (buf == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory assembling a signed object");
		goto out;
	}
	unsigned char *p = buf;
	ASN1_put_object(&p, 1, body, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	memcpy(p, tbs, tbs_len);
	p += tbs_len;
	memcpy(p, alg_der, (size_t)alg_len);
	p += alg_len;
	memcpy(p, bits_der, (size_t)bits_len);
	*der = buf;
	*der_len = (size_t)total;
out:
	OPENSSL_free(alg_der);
	OPENSSL_free(bits_der);
	ASN1_BIT_STRING_free(bits);
	return err;
}
