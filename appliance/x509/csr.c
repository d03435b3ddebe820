/*
 * CSR intake: decode a PKCS#10 request strictly and check it before anything else reads it.
 *
 * A CSR comes from a client, so it is untrusted input: PEM must be exactly one
 * "CERTIFICATE REQUEST" block with nothing but whitespace around it, DER must be canonical
 * (it re-encodes to the same bytes) with nothing after it. Then the signature algorithm,
 * the key, and finally the proof-of-possession signature are checked. Nothing from the CSR
 * but its key and subject is ever used (extensions come from profiles).
 */
#include "appliance/x509/x509_internal.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "hsm/algor.h"

/* Far above any real CSR (an RSA-16384 request with many names is ~10 KiB). */
#define CSR_MAX	     65536
#define RSA_BITS_MIN 2048
#define RSA_BITS_MAX 16384

static bool only_space(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
			return false;
	return true;
}

/* PEM → DER (OPENSSL_free'd by the caller). */
static enum p11ca_err pem_to_der(const uint8_t *data, size_t len, unsigned char **der,
				 long *der_len, struct p11ca_errmsg *em)
{
	char *name = NULL, *header = NULL;
	enum p11ca_err err = P11CA_OK;
	BIO *bio = BIO_new_mem_buf(data, (int)len);
	if (bio == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory reading a CSR");
	if (PEM_read_bio(bio, &name, &header, der, der_len) != 1) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "the request is PEM but its base64 does not decode; send the "
				 "CSR file unchanged");
		goto out;
	}
	/* PEM_read_bio skips text before BEGIN; refuse it, and anything after END. */
	const char *begin = memmem(data, len, "-----BEGIN ", 11);
	const uint8_t *rest = NULL;
	long rest_len = BIO_get_mem_data(bio, (char **)&rest);
	if (strcmp(name, "CERTIFICATE REQUEST") != 0 &&
	    strcmp(name, "NEW CERTIFICATE REQUEST") != 0)
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "the PEM block is a '%.40s', not a CERTIFICATE REQUEST", name);
	else if (header[0] != '\0')
		err = p11ca_fail(em, P11CA_E_INVALID_ARG, "the CSR's PEM block has headers");
	else if (begin == NULL || !only_space(data, (size_t)((const uint8_t *)begin - data)) ||
		 rest_len < 0 || !only_space(rest, (size_t)rest_len))
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "the CSR has text before or after its PEM block; send exactly one "
				 "CERTIFICATE REQUEST");
	if (err != P11CA_OK) {
		OPENSSL_free(*der);
		*der = NULL;
	}
out:
	OPENSSL_free(name);
	OPENSSL_free(header);
	BIO_free(bio);
	return err;
}

static enum p11ca_err der_decode(const unsigned char *der, long der_len, X509_REQ **out,
				 struct p11ca_errmsg *em)
{
	const unsigned char *p = der;
	X509_REQ *req = d2i_X509_REQ(NULL, &p, der_len);
	if (req == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the request is not a PKCS#10 certificate request (DER or PEM)");
	unsigned char *again = NULL;
	int again_len = 0;
	enum p11ca_err err = P11CA_OK;
	if (p != der + der_len)
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "the CSR is followed by %ld extra bytes; send only the request",
				 (long)(der + der_len - p));
	/* i2d_X509_REQ alone would hand back the cached bytes as received: re-encode the
	 * request info first, so BER inside it is caught too. */
	else if (i2d_re_X509_REQ_tbs(req, NULL) <= 0 ||
		 (again_len = i2d_X509_REQ(req, &again)) != der_len ||
		 memcmp(again, der, (size_t)der_len) != 0)
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "the CSR is not DER-encoded (BER or a non-canonical encoding)");
	OPENSSL_free(again);
	if (err != P11CA_OK)
		X509_REQ_free(req);
	else
		*out = req;
	return err;
}

static bool strong_md(int nid)
{
	return nid == NID_sha256 || nid == NID_sha384 || nid == NID_sha512 || nid == NID_sha3_256 ||
	       nid == NID_sha3_384 || nid == NID_sha3_512;
}

/* RSASSA-PSS: the hash and MGF1 hash must both be strong; absent means SHA-1. */
static bool pss_params_ok(const X509_ALGOR *alg)
{
	int ptype = 0;
	const void *pval = NULL;
	X509_ALGOR_get0(NULL, &ptype, &pval, alg);
	if (ptype != V_ASN1_SEQUENCE)
		return false;
	RSA_PSS_PARAMS *pss = ASN1_item_unpack(pval, ASN1_ITEM_rptr(RSA_PSS_PARAMS));
	bool ok = false;
	if (pss != NULL && pss->hashAlgorithm != NULL && pss->maskGenAlgorithm != NULL &&
	    OBJ_obj2nid(pss->maskGenAlgorithm->algorithm) == NID_mgf1) {
		X509_ALGOR *mgf_md = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(X509_ALGOR),
							       pss->maskGenAlgorithm->parameter);
		ok = mgf_md != NULL && strong_md(OBJ_obj2nid(pss->hashAlgorithm->algorithm)) &&
		     strong_md(OBJ_obj2nid(mgf_md->algorithm));
		X509_ALGOR_free(mgf_md);
	}
	RSA_PSS_PARAMS_free(pss);
	return ok;
}

static enum p11ca_err sigalg_check(const X509_REQ *req, struct p11ca_errmsg *em)
{
	const X509_ALGOR *alg = NULL;
	X509_REQ_get0_signature(req, NULL, &alg);
	const ASN1_OBJECT *obj = NULL;
	X509_ALGOR_get0(&obj, NULL, NULL, alg);
	int nid = OBJ_obj2nid(obj), md = NID_undef, pk = NID_undef;
	if (nid == NID_rsassaPss) {
		if (pss_params_ok(alg))
			return P11CA_OK;
	} else if (nid == NID_ED25519 ||
		   (OBJ_find_sigid_algs(nid, &md, &pk) == 1 && strong_md(md))) {
		return P11CA_OK;
	}
	return p11ca_fail(em, P11CA_E_INVALID_ARG,
			  "the CSR is signed with %s, a weak or unsupported digest; sign it with "
			  "SHA-256 or stronger",
			  nid != NID_undef ? OBJ_nid2ln(nid) : "an unknown algorithm");
}

static enum p11ca_err rsa_check(EVP_PKEY *key, struct p11ca_errmsg *em)
{
	int bits = EVP_PKEY_get_bits(key);
	if (bits < RSA_BITS_MIN || bits > RSA_BITS_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the CSR's RSA key has %d bits; use %d to %d bits", bits,
				  RSA_BITS_MIN, RSA_BITS_MAX);
	BIGNUM *e = NULL;
	if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e) != 1)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "the CSR's RSA key has no exponent");
	bool ok = BN_is_odd(e) && BN_num_bits(e) >= 17 && BN_num_bits(e) <= 256;
	BN_free(e);
	if (!ok)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the CSR's RSA public exponent is weak or invalid; use 65537");
	return P11CA_OK;
}

static enum p11ca_err ec_check(EVP_PKEY *key, struct p11ca_errmsg *em)
{
	char enc[32] = "";
	enum hsm_key_type type;
	/* hsm_key_type_of_pkey knows the curves; explicit parameters are refused even when
	 * they describe a named curve, since a verifier may not recognise them. */
	if (hsm_key_type_of_pkey(key, &type, em) != P11CA_OK)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "unsupported curve");
	if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_EC_ENCODING, enc, sizeof(enc),
					   NULL) != 1 ||
	    strcmp(enc, OSSL_PKEY_EC_ENCODING_GROUP) != 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the CSR's EC key uses explicit curve parameters; use a named "
				  "curve");
	/* The quick check (on the curve, not infinity, coordinates in range) skips only the
	 * point-times-order multiplication, which is implied here: P-256/384/521 have cofactor 1,
	 * so every point on the curve has the group's order. That multiplication cost as much
	 * as verifying the CSR's signature. */
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	int ok = ctx != NULL ? EVP_PKEY_public_check_quick(ctx) : -1;
	EVP_PKEY_CTX_free(ctx);
	if (ok != 1)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "the CSR's EC public key is invalid");
	return P11CA_OK;
}

static enum p11ca_err key_check(EVP_PKEY *key, struct p11ca_errmsg *em)
{
	if (key == NULL)
		return p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"the CSR's public key cannot be decoded (unknown type or invalid)");
	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_RSA:
		return rsa_check(key, em);
	case EVP_PKEY_EC:
		return ec_check(key, em);
	case EVP_PKEY_ED25519:
		return P11CA_OK;
	default:
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the CSR's %s key is not supported; use RSA, EC (P-256, P-384, "
				  "P-521) or Ed25519",
				  EVP_PKEY_get0_type_name(key) ? EVP_PKEY_get0_type_name(key)
							       : "public");
	}
}

enum p11ca_err x509_csr_load(const uint8_t *data, size_t len, const struct x509_csr_policy *policy,
			     X509_REQ **csr, EVP_PKEY **key, struct p11ca_errmsg *em)
{
	(void)policy; /* TODO(x509 helper): apply the policy */
	*csr = NULL;
	*key = NULL;
	if (data == NULL || len == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "the certificate request is empty");
	if (len > CSR_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate request is %zu bytes; at most %d are accepted",
				  len, CSR_MAX);

	enum p11ca_err err = P11CA_OK;
	unsigned char *pem_der = NULL;
	long der_len = (long)len;
	const unsigned char *der = data;
	X509_REQ *req = NULL;
	/* Anything with a BEGIN line is PEM, so junk around it gets its own message. */
	if (memmem(data, len, "-----BEGIN ", 11) != NULL) {
		err = pem_to_der(data, len, &pem_der, &der_len, em);
		der = pem_der;
	}
	if (err == P11CA_OK)
		err = der_decode(der, der_len, &req, em);
	if (err == P11CA_OK)
		err = sigalg_check(req, em);
	EVP_PKEY *pub = req != NULL ? X509_REQ_get0_pubkey(req) : NULL;
	if (err == P11CA_OK)
		err = key_check(pub, em);
	if (err == P11CA_OK && X509_REQ_verify(req, pub) != 1)
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "the CSR's signature does not verify with its own key (corrupted, "
				 "or not signed by the key holder)");
	if (err == P11CA_OK && EVP_PKEY_up_ref(pub) != 1)
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory keeping the CSR's key");
	if (err != P11CA_OK)
		goto out;
	*csr = req;
	*key = pub;
	req = NULL;
out:
	X509_REQ_free(req);
	OPENSSL_free(pem_der);
	return err;
}
