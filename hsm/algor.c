/*
 * Signature algorithms as X.509 AlgorithmIdentifiers, and key types of public keys.
 *
 * Each algorithm has exactly one accepted encoding: the DER the CA/Browser Forum Baseline
 * Requirements (7.1.3.2) list byte for byte. hsm_algor_set writes those bytes and
 * hsm_algor_get compares against them, so an identifier that merely means the same thing
 * (PSS with another salt or MGF hash, NULL where parameters must be absent, a missing NULL
 * where it must be present) is refused rather than interpreted. That is what lets the
 * signer trust that the mechanism it picks is the one the TBS names.
 */
#include "hsm/algor.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/objects.h>

/* SEQUENCE { OID sha*WithRSAEncryption, NULL } */
#define RSA_PKCS1(last)                                                                            \
	0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, last, 0x05, 0x00

/* SEQUENCE { OID rsassaPss, SEQUENCE { [0] hash (NULL params), [1] MGF1(hash), [2] salt } };
 * the trailer field is the DER default (1) and therefore absent. */
#define SHA2_ALGOR(n)                                                                              \
	0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, n, 0x05, 0x00
#define RSA_PSS(n, salt)                                                                           \
	0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34,  \
		0xa0, 0x0f, SHA2_ALGOR(n), 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48,   \
		0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, SHA2_ALGOR(n), 0xa2, 0x03, 0x02, 0x01, salt

/* SEQUENCE { OID ecdsa-with-SHA* } — parameters absent (RFC 5758 3.2) */
#define ECDSA(last) 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, last

static const uint8_t der_pkcs1_sha256[] = {RSA_PKCS1(0x0b)};
static const uint8_t der_pkcs1_sha384[] = {RSA_PKCS1(0x0c)};
static const uint8_t der_pkcs1_sha512[] = {RSA_PKCS1(0x0d)};
static const uint8_t der_pss_sha256[] = {RSA_PSS(0x01, 0x20)};
static const uint8_t der_pss_sha384[] = {RSA_PSS(0x02, 0x30)};
static const uint8_t der_pss_sha512[] = {RSA_PSS(0x03, 0x40)};
static const uint8_t der_ecdsa_sha256[] = {ECDSA(0x02)};
static const uint8_t der_ecdsa_sha384[] = {ECDSA(0x03)};
static const uint8_t der_ecdsa_sha512[] = {ECDSA(0x04)};
/* SEQUENCE { OID id-Ed25519 } — parameters absent (RFC 8410 3) */
static const uint8_t der_ed25519[] = {0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70};

#define ENTRY(alg, der)                                                                            \
	{                                                                                          \
		alg, der, sizeof(der)                                                              \
	}
static const struct {
	enum hsm_sig_alg alg;
	const uint8_t *der;
	size_t len;
} algors[] = {
	ENTRY(HSM_SIG_RSA_PKCS1_SHA256, der_pkcs1_sha256),
	ENTRY(HSM_SIG_RSA_PKCS1_SHA384, der_pkcs1_sha384),
	ENTRY(HSM_SIG_RSA_PKCS1_SHA512, der_pkcs1_sha512),
	ENTRY(HSM_SIG_RSA_PSS_SHA256, der_pss_sha256),
	ENTRY(HSM_SIG_RSA_PSS_SHA384, der_pss_sha384),
	ENTRY(HSM_SIG_RSA_PSS_SHA512, der_pss_sha512),
	ENTRY(HSM_SIG_ECDSA_SHA256, der_ecdsa_sha256),
	ENTRY(HSM_SIG_ECDSA_SHA384, der_ecdsa_sha384),
	ENTRY(HSM_SIG_ECDSA_SHA512, der_ecdsa_sha512),
	ENTRY(HSM_SIG_ED25519, der_ed25519),
};
#undef ENTRY

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

enum p11ca_err hsm_algor_set(X509_ALGOR *algor, enum hsm_sig_alg alg, struct p11ca_errmsg *em)
{
	size_t i = 0;
	while (i < COUNT(algors) && algors[i].alg != alg)
		i++;
	if (algor == NULL || i == COUNT(algors))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "no AlgorithmIdentifier for signature algorithm %d; use one of "
				  "hsm/hsm.h's enum hsm_sig_alg",
				  (int)alg);

	/* Decoding the table's bytes (rather than assembling OpenSSL structures) makes the
	 * written identifier exactly the one hsm_algor_get accepts. */
	const unsigned char *p = algors[i].der;
	X509_ALGOR *tmp = d2i_X509_ALGOR(NULL, &p, (long)algors[i].len);
	int ok = tmp != NULL && X509_ALGOR_copy(algor, tmp) == 1;
	X509_ALGOR_free(tmp);
	if (!ok)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory setting the %s identifier",
				  hsm_sig_alg_name(alg));
	return P11CA_OK;
}

enum p11ca_err hsm_algor_get(const X509_ALGOR *algor, enum hsm_sig_alg *alg,
			     struct p11ca_errmsg *em)
{
	unsigned char *der = NULL;
	int len = algor != NULL ? i2d_X509_ALGOR(algor, &der) : -1;
	for (size_t i = 0; len > 0 && i < COUNT(algors); i++) {
		if ((size_t)len == algors[i].len &&
		    memcmp(der, algors[i].der, algors[i].len) == 0) {
			OPENSSL_free(der);
			*alg = algors[i].alg;
			return P11CA_OK;
		}
	}
	OPENSSL_free(der);

	char oid[80] = "(none)";
	const ASN1_OBJECT *obj = NULL;
	if (algor != NULL) {
		X509_ALGOR_get0(&obj, NULL, NULL, algor);
		if (obj != NULL && OBJ_obj2txt(oid, sizeof(oid), obj, 1) <= 0)
			strcpy(oid, "(unreadable)");
	}
	int nid = obj != NULL ? OBJ_obj2nid(obj) : NID_undef;
	const char *why = "is not one p11ca signs with";
	switch (nid) {
	case NID_md5WithRSAEncryption:
	case NID_sha1WithRSAEncryption:
	case NID_ecdsa_with_SHA1:
	case NID_sha224WithRSAEncryption:
	case NID_ecdsa_with_SHA224:
		why = "uses a weak or unsupported digest";
		break;
	case NID_rsassaPss:
		why = "has parameters other than MGF1 with the same SHA-2 hash and salt = hash "
		      "length";
		break;
	case NID_sha256WithRSAEncryption:
	case NID_sha384WithRSAEncryption:
	case NID_sha512WithRSAEncryption:
		why = "must have NULL parameters";
		break;
	case NID_ecdsa_with_SHA256:
	case NID_ecdsa_with_SHA384:
	case NID_ecdsa_with_SHA512:
	case NID_ED25519:
		why = "must have absent parameters";
		break;
	default:
		break;
	}
	return p11ca_fail(em, P11CA_E_POLICY,
			  "signature AlgorithmIdentifier %s (%s) %s; accepted: RSA PKCS#1 v1.5 or "
			  "PSS with SHA-256/384/512, ECDSA with SHA-256/384/512, Ed25519",
			  nid != NID_undef ? OBJ_nid2ln(nid) : "unknown", oid, why);
}

static enum p11ca_err rsa_type(EVP_PKEY *pkey, enum hsm_key_type *type, struct p11ca_errmsg *em)
{
	int bits = EVP_PKEY_get_bits(pkey);
	switch (bits) {
	case 2048:
		*type = HSM_KEY_RSA2048;
		return P11CA_OK;
	case 3072:
		*type = HSM_KEY_RSA3072;
		return P11CA_OK;
	case 4096:
		*type = HSM_KEY_RSA4096;
		return P11CA_OK;
	default:
		return p11ca_fail(
			em, P11CA_E_POLICY,
			"RSA key of %d bits is not supported; use 2048, 3072 or 4096 bits", bits);
	}
}

static enum p11ca_err ec_type(EVP_PKEY *pkey, enum hsm_key_type *type, struct p11ca_errmsg *em)
{
	char name[64] = "";
	size_t name_len = 0;
	if (EVP_PKEY_get_group_name(pkey, name, sizeof(name), &name_len) != 1)
		return p11ca_fail(em, P11CA_E_POLICY,
				  "EC key without a named curve (explicit parameters?) is not "
				  "supported; use P-256, P-384 or P-521");
	switch (OBJ_txt2nid(name)) {
	case NID_X9_62_prime256v1:
		*type = HSM_KEY_P256;
		return P11CA_OK;
	case NID_secp384r1:
		*type = HSM_KEY_P384;
		return P11CA_OK;
	case NID_secp521r1:
		*type = HSM_KEY_P521;
		return P11CA_OK;
	default:
		return p11ca_fail(em, P11CA_E_POLICY,
				  "EC curve %s is not supported; use P-256, P-384 or P-521", name);
	}
}

enum p11ca_err hsm_key_type_of_pkey(EVP_PKEY *pkey, enum hsm_key_type *type,
				    struct p11ca_errmsg *em)
{
	if (pkey == NULL)
		return p11ca_fail(em, P11CA_E_POLICY, "no public key given");
	/* By base id, not EVP_PKEY_is_a: an rsassaPss-restricted key (EVP_PKEY_RSA_PSS) is
	 * refused, since its parameters would constrain what the CA may sign with it. */
	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		return rsa_type(pkey, type, em);
	case EVP_PKEY_EC:
		return ec_type(pkey, type, em);
	case EVP_PKEY_ED25519:
		*type = HSM_KEY_ED25519;
		return P11CA_OK;
	default:
		break;
	}
	const char *name = EVP_PKEY_get0_type_name(pkey);
	return p11ca_fail(em, P11CA_E_POLICY,
			  "%s keys are not supported; use RSA (2048/3072/4096), EC (P-256/P-384/"
			  "P-521) or Ed25519",
			  name != NULL ? name : "this type of");
}
