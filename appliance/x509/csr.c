/*
 * CSR intake: decode a PKCS#10 request strictly and check it before anything else reads it.
 *
 * A CSR comes from a client, so it is untrusted input: PEM must be exactly one
 * "CERTIFICATE REQUEST" block with nothing but whitespace around it, DER must be canonical
 * (it re-encodes to the same bytes) with nothing after it. Then the key, the signature
 * algorithm, and finally the proof-of-possession signature are checked. Nothing from the CSR
 * but its key and subject is ever used (extensions come from profiles).
 */
#include "appliance/x509/x509_internal.h"

#include <string.h>

#include <openssl/pem.h>
#include <openssl/rsa.h>

/* The default limit is far above any real CSR (an RSA-16384 request with many names is
 * ~10 KiB); the hard one keeps a configured limit within what the RPC can carry. */
#define CSR_DEFAULT_MAX 16384
#define CSR_MAX		65536
#define RSA_BITS_MIN	2048
#define RSA_BITS_MAX	16384

static bool only_space(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
			return false;
	return true;
}

/* Whether data[0..len) ends in `marker` followed by nothing but space. */
static bool ends_with_marker(const uint8_t *data, size_t len, const char *marker)
{
	while (len > 0 && only_space(data + len - 1, 1))
		len--;
	size_t m = strlen(marker);
	return len >= m && memcmp(data + len - m, marker, m) == 0;
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
	/* PEM_read_bio skips text before BEGIN; refuse it, and anything after END, including
	 * what PEM_read_bio itself drops from the END line (bytes >= 0x80 and control
	 * characters right after the marker). */
	const char *begin = memmem(data, len, "-----BEGIN ", 11);
	const uint8_t *rest = NULL;
	long rest_len = BIO_get_mem_data(bio, (char **)&rest);
	char begin_marker[80], end_marker[80];
	snprintf(begin_marker, sizeof(begin_marker), "-----BEGIN %.40s-----", name);
	snprintf(end_marker, sizeof(end_marker), "-----END %.40s-----", name);
	if (strcmp(name, "CERTIFICATE REQUEST") != 0 &&
	    strcmp(name, "NEW CERTIFICATE REQUEST") != 0)
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "the PEM block is a '%.40s', not a CERTIFICATE REQUEST", name);
	else if (header[0] != '\0')
		err = p11ca_fail(em, P11CA_E_INVALID_ARG, "the CSR's PEM block has headers");
	else if (begin == NULL || !only_space(data, (size_t)((const uint8_t *)begin - data)) ||
		 strncmp(begin, begin_marker, strlen(begin_marker)) != 0 || rest_len < 0 ||
		 (size_t)rest_len > len || !only_space(rest, (size_t)rest_len) ||
		 !ends_with_marker(data, len - (size_t)rest_len, end_marker))
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
	/* The only version PKCS#10 (RFC 2986) defines; anything else is no request it knows. */
	if (err == P11CA_OK && X509_REQ_get_version(req) != X509_REQ_VERSION_1)
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "the CSR claims version %ld, but PKCS#10 has only version 1; "
				 "create the request with a standard tool",
				 X509_REQ_get_version(req) + 1);
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

/* Both INTEGERs of an RSAPublicKey, parsed here rather than through OpenSSL's key decoder:
 * the message must name what is wrong with a key the decoder may refuse without saying. The
 * key bits go into the certificate as received, and the outer DER check does not look inside
 * the BIT STRING: so the RSAPublicKey must re-encode to itself, and both numbers be
 * positive. */
static enum p11ca_err rsa_numbers(const unsigned char *bits, int len, BIGNUM **n, BIGNUM **e,
				  const char *whose, struct p11ca_errmsg *em)
{
	const unsigned char *p = bits;
	STACK_OF(ASN1_TYPE) *seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, len);
	unsigned char *again = NULL;
	int again_len = seq != NULL ? i2d_ASN1_SEQUENCE_ANY(seq, &again) : -1;
	enum p11ca_err err = P11CA_OK;
	if (seq == NULL || p != bits + len || sk_ASN1_TYPE_num(seq) != 2 ||
	    ASN1_TYPE_get(sk_ASN1_TYPE_value(seq, 0)) != V_ASN1_INTEGER ||
	    ASN1_TYPE_get(sk_ASN1_TYPE_value(seq, 1)) != V_ASN1_INTEGER || again_len != len ||
	    memcmp(again, bits, (size_t)len) != 0)
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "%s RSA public key is not a valid RSAPublicKey (two positive "
				 "INTEGERs); create the key and the request again",
				 whose);
	else if ((*n = ASN1_INTEGER_to_BN(sk_ASN1_TYPE_value(seq, 0)->value.integer, NULL)) ==
			 NULL ||
		 (*e = ASN1_INTEGER_to_BN(sk_ASN1_TYPE_value(seq, 1)->value.integer, NULL)) == NULL)
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory reading an RSA key");
	else if (BN_is_negative(*n) || BN_is_negative(*e))
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "%s RSA public key is not a valid RSAPublicKey (two positive "
				 "INTEGERs); create the key and the request again",
				 whose);
	OPENSSL_free(again);
	sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
	return err;
}

static enum p11ca_err rsa_check(const unsigned char *bits, int len,
				const struct x509_csr_policy *policy, const char *whose,
				struct p11ca_errmsg *em)
{
	BIGNUM *n = NULL, *e = NULL, *min_e = NULL;
	enum p11ca_err err = rsa_numbers(bits, len, &n, &e, whose, em);
	if (err != P11CA_OK)
		goto out;
	unsigned min_bits =
		policy->min_rsa_bits > RSA_BITS_MIN ? policy->min_rsa_bits : RSA_BITS_MIN;
	uint64_t min_exp = policy->min_rsa_exponent == 0  ? 65537
			   : policy->min_rsa_exponent < 3 ? 3
							  : policy->min_rsa_exponent;
	int n_bits = BN_num_bits(n);
	if ((min_e = BN_new()) == NULL || BN_set_word(min_e, min_exp) != 1) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory reading an RSA key");
	} else if (n_bits < (int)min_bits || n_bits > RSA_BITS_MAX) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "%s RSA key has %d bits; this CA accepts %u to %d bits "
				 "(create a 3072-bit key)",
				 whose, n_bits, min_bits, RSA_BITS_MAX);
	} else if (n_bits % 8 != 0 || !BN_is_odd(n)) {
		/* Real key generators make moduli of whole bytes; anything else was made by
		 * hand or damaged, and some HSMs and TLS stacks refuse such keys. */
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 n_bits % 8 != 0 ? "%s RSA modulus has %d bits, not a multiple "
						   "of 8; create the key with a standard tool"
						 : "%s RSA modulus (%d bits) is even, so it is no "
						   "RSA modulus; create the key again",
				 whose, n_bits);
	} else if (!BN_is_odd(e)) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "%s RSA public exponent is even, which no RSA key can have; "
				 "create the key again (exponent 65537)",
				 whose);
	} else if (BN_cmp(e, min_e) < 0 || BN_num_bits(e) > 256) {
		char *dec = BN_bn2dec(e);
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "%s RSA public exponent %s is %s; this CA accepts odd "
				 "exponents from %llu to 2^256 (use 65537)",
				 whose, dec != NULL && strlen(dec) <= 20 ? dec : "(huge)",
				 BN_cmp(e, min_e) < 0 ? "too small" : "too large",
				 (unsigned long long)min_exp);
		OPENSSL_free(dec);
	}
out:
	BN_free(n);
	BN_free(e);
	BN_free(min_e);
	return err;
}

static enum p11ca_err ec_check(const X509_ALGOR *alg, const unsigned char *bits, EVP_PKEY *key,
			       const char *whose, struct p11ca_errmsg *em)
{
	int ptype = V_ASN1_UNDEF;
	const void *pval = NULL;
	X509_ALGOR_get0(NULL, &ptype, &pval, alg);
	/* Explicit parameters are refused even when they describe a named curve, since a
	 * verifier may not recognise them. */
	if (ptype == V_ASN1_SEQUENCE)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s EC key uses explicit curve parameters; use a named "
				  "curve (P-256, P-384 or P-521)",
				  whose);
	int curve = ptype == V_ASN1_OBJECT ? OBJ_obj2nid(pval) : NID_undef;
	if (curve != NID_X9_62_prime256v1 && curve != NID_secp384r1 && curve != NID_secp521r1) {
		char name[80] = "an unnamed curve";
		if (ptype == V_ASN1_OBJECT)
			OBJ_obj2txt(name, sizeof(name), pval, 0);
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s EC key is on %s; this CA accepts P-256, P-384 and "
				  "P-521 only",
				  whose, name);
	}
	/* RFC 5480 obliges CAs to support only the uncompressed form, and the point goes into
	 * the certificate as received: clients such as Go's crypto/x509 refuse compressed ones. */
	if (bits[0] != 0x04)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s EC public key is not an uncompressed point (first "
				  "octet 0x%02x, perhaps compressed); create the request with the "
				  "key in uncompressed form",
				  whose, bits[0]);
	/* OpenSSL's decoder leaves the key out when the point is not on the curve. The quick
	 * check (on the curve, not infinity, coordinates in range) skips only the point-times-
	 * order multiplication, which is implied here: P-256/384/521 have cofactor 1, so every
	 * point on the curve has the group's order. That multiplication cost as much as
	 * verifying the CSR's signature. */
	EVP_PKEY_CTX *ctx = key != NULL ? EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL) : NULL;
	int ok = ctx != NULL ? EVP_PKEY_public_check_quick(ctx) : -1;
	EVP_PKEY_CTX_free(ctx);
	if (ok != 1)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s EC public key is not a valid point on %s; create the "
				  "key and the request again",
				  whose,
				  curve == NID_X9_62_prime256v1 ? "P-256"
				  : curve == NID_secp384r1	? "P-384"
								: "P-521");
	return P11CA_OK;
}

/* The subject key's rules, from the SubjectPublicKeyInfo as received; `whose` starts each
 * message ("the CSR's"). key: the decoded key, NULL when OpenSSL could not decode it. */
static enum p11ca_err key_check(const X509_PUBKEY *spki, EVP_PKEY *key,
				const struct x509_csr_policy *policy, const char *whose,
				struct p11ca_errmsg *em)
{
	ASN1_OBJECT *obj = NULL;
	const unsigned char *bits = NULL;
	int bits_len = 0;
	X509_ALGOR *alg = NULL;
	if (spki == NULL || X509_PUBKEY_get0_param(&obj, &bits, &bits_len, &alg, spki) != 1 ||
	    bits == NULL || bits_len <= 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%s public key is missing", whose);
	int nid = OBJ_obj2nid(obj), ptype = V_ASN1_UNDEF;
	X509_ALGOR_get0(NULL, &ptype, NULL, alg);
	enum p11ca_err err = P11CA_OK;
	switch (nid) {
	case NID_rsaEncryption:
		/* RFC 3279 2.3.1: NULL; Go's crypto/x509 refuses certificates without it. */
		if (ptype != V_ASN1_NULL)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "%s RSA key's algorithm parameters are not NULL "
					  "(RFC 3279); create the request with a standard tool",
					  whose);
		err = rsa_check(bits, bits_len, policy, whose, em);
		break;
	case NID_X9_62_id_ecPublicKey:
		return ec_check(alg, bits, key, whose, em);
	case NID_ED25519:
		/* RFC 8410 3: the parameters MUST be absent. */
		if (ptype != V_ASN1_UNDEF)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "%s Ed25519 key has algorithm parameters, which RFC "
					  "8410 forbids; create the request with a standard tool",
					  whose);
		break;
	default: {
		char name[80] = "unknown";
		OBJ_obj2txt(name, sizeof(name), obj, 0);
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s %s key is not supported; use RSA (rsaEncryption), EC "
				  "(P-256, P-384, P-521) or Ed25519",
				  whose, name);
	}
	}
	if (err == P11CA_OK && key == NULL)
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "%s %s public key cannot be decoded; create the key and the "
				 "request again",
				 whose, OBJ_nid2sn(nid));
	return err;
}

enum p11ca_err x509_csr_load(const uint8_t *data, size_t len, const struct x509_csr_policy *policy,
			     X509_REQ **csr, EVP_PKEY **key, struct p11ca_errmsg *em)
{
	static const struct x509_csr_policy defaults = {0};
	if (policy == NULL)
		policy = &defaults;
	*csr = NULL;
	*key = NULL;
	size_t max = policy->max_bytes == 0	   ? CSR_DEFAULT_MAX
		     : policy->max_bytes > CSR_MAX ? CSR_MAX
						   : policy->max_bytes;
	if (data == NULL || len == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "the certificate request is empty");
	if (len > max)
		return p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"the certificate request is %zu bytes; this CA accepts at most %zu "
			"(csr_max_bytes); send a request with fewer names or a smaller key",
			len, max);

	enum p11ca_err err = P11CA_OK;
	unsigned char *pem_der = NULL;
	long der_len = (long)len;
	const unsigned char *der = data;
	X509_REQ *req = NULL;
	/* Anything with a BEGIN line is PEM, so junk around it gets its own message; but DER
	 * (a SEQUENCE, 0x30) may hold the marker in a name. */
	if (data[0] != 0x30 && memmem(data, len, "-----BEGIN ", 11) != NULL) {
		err = pem_to_der(data, len, &pem_der, &der_len, em);
		der = pem_der;
	}
	if (err == P11CA_OK)
		err = der_decode(der, der_len, &req, em);
	/* Key before digest before signature: a request with a bad key is refused for its
	 * key even when its signature is broken too (the live tests patch real CSRs). */
	if (err == P11CA_OK)
		err = key_check(X509_REQ_get_X509_PUBKEY(req), X509_REQ_get0_pubkey(req), policy,
				"the CSR's", em);
	if (err == P11CA_OK)
		err = sigalg_check(req, em);
	EVP_PKEY *pub = req != NULL ? X509_REQ_get0_pubkey(req) : NULL;
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

enum p11ca_err x509_spki_check(const X509_PUBKEY *spki, const struct x509_csr_policy *policy,
			       const char *whose, struct p11ca_errmsg *em)
{
	static const struct x509_csr_policy defaults = {0};
	return key_check(spki, spki != NULL ? X509_PUBKEY_get0(spki) : NULL,
			 policy != NULL ? policy : &defaults, whose, em);
}
