/*
 * Key types and signature algorithms: their names, which fit together, and how each is
 * done in PKCS#11. One table per concept, so adding an algorithm is one line.
 */
#include "hsm/internal.h"

#include <string.h>
#include <strings.h>

static const struct {
	enum hsm_key_type type;
	const char *name;
} key_types[] = {
	{HSM_KEY_RSA2048, "rsa2048"}, {HSM_KEY_RSA3072, "rsa3072"}, {HSM_KEY_RSA4096, "rsa4096"},
	{HSM_KEY_P256, "p256"},	      {HSM_KEY_P384, "p384"},	    {HSM_KEY_P521, "p521"},
	{HSM_KEY_ED25519, "ed25519"},
};

static const struct {
	enum hsm_sig_alg alg;
	const char *name;
} sig_algs[] = {
	{HSM_SIG_RSA_PKCS1_SHA256, "rsa-pkcs1-sha256"},
	{HSM_SIG_RSA_PKCS1_SHA384, "rsa-pkcs1-sha384"},
	{HSM_SIG_RSA_PKCS1_SHA512, "rsa-pkcs1-sha512"},
	{HSM_SIG_RSA_PSS_SHA256, "rsa-pss-sha256"},
	{HSM_SIG_RSA_PSS_SHA384, "rsa-pss-sha384"},
	{HSM_SIG_RSA_PSS_SHA512, "rsa-pss-sha512"},
	{HSM_SIG_ECDSA_SHA256, "ecdsa-sha256"},
	{HSM_SIG_ECDSA_SHA384, "ecdsa-sha384"},
	{HSM_SIG_ECDSA_SHA512, "ecdsa-sha512"},
	{HSM_SIG_ED25519, "ed25519"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *hsm_key_type_name(enum hsm_key_type type)
{
	for (size_t i = 0; i < COUNT(key_types); i++)
		if (key_types[i].type == type)
			return key_types[i].name;
	return NULL;
}

enum p11ca_err hsm_key_type_parse(const char *name, enum hsm_key_type *out, struct p11ca_errmsg *em)
{
	for (size_t i = 0; name != NULL && i < COUNT(key_types); i++) {
		if (strcasecmp(key_types[i].name, name) == 0) {
			*out = key_types[i].type;
			return P11CA_OK;
		}
	}
	return p11ca_fail(em, P11CA_E_INVALID_ARG,
			  "unknown key type '%s'; use one of rsa2048 rsa3072 rsa4096 p256 p384 "
			  "p521 ed25519",
			  name ? name : "");
}

const char *hsm_sig_alg_name(enum hsm_sig_alg alg)
{
	for (size_t i = 0; i < COUNT(sig_algs); i++)
		if (sig_algs[i].alg == alg)
			return sig_algs[i].name;
	return NULL;
}

enum p11ca_err hsm_sig_alg_parse(const char *name, enum hsm_sig_alg *out, struct p11ca_errmsg *em)
{
	for (size_t i = 0; name != NULL && i < COUNT(sig_algs); i++) {
		if (strcasecmp(sig_algs[i].name, name) == 0) {
			*out = sig_algs[i].alg;
			return P11CA_OK;
		}
	}
	return p11ca_fail(em, P11CA_E_INVALID_ARG,
			  "unknown signature algorithm '%s'; use rsa-pkcs1-sha256/384/512, "
			  "rsa-pss-sha256/384/512, ecdsa-sha256/384/512 or ed25519",
			  name ? name : "");
}

static bool key_is_rsa(enum hsm_key_type t)
{
	return t == HSM_KEY_RSA2048 || t == HSM_KEY_RSA3072 || t == HSM_KEY_RSA4096;
}

static bool key_is_ec(enum hsm_key_type t)
{
	return t == HSM_KEY_P256 || t == HSM_KEY_P384 || t == HSM_KEY_P521;
}

enum hsm_sig_alg hsm_sig_alg_default(enum hsm_key_type type)
{
	switch (type) {
	case HSM_KEY_RSA2048:
	case HSM_KEY_RSA3072:
	case HSM_KEY_RSA4096:
		return HSM_SIG_RSA_PKCS1_SHA256;
	case HSM_KEY_P256:
		return HSM_SIG_ECDSA_SHA256;
	case HSM_KEY_P384:
		return HSM_SIG_ECDSA_SHA384;
	case HSM_KEY_P521:
		return HSM_SIG_ECDSA_SHA512;
	case HSM_KEY_ED25519:
		return HSM_SIG_ED25519;
	default:
		return HSM_SIG_UNSPECIFIED;
	}
}

bool hsm_sig_alg_fits(enum hsm_sig_alg alg, enum hsm_key_type type)
{
	switch (alg) {
	case HSM_SIG_RSA_PKCS1_SHA256:
	case HSM_SIG_RSA_PKCS1_SHA384:
	case HSM_SIG_RSA_PKCS1_SHA512:
	case HSM_SIG_RSA_PSS_SHA256:
	case HSM_SIG_RSA_PSS_SHA384:
	case HSM_SIG_RSA_PSS_SHA512:
		return key_is_rsa(type);
	case HSM_SIG_ECDSA_SHA256:
	case HSM_SIG_ECDSA_SHA384:
	case HSM_SIG_ECDSA_SHA512:
		return key_is_ec(type);
	case HSM_SIG_ED25519:
		return type == HSM_KEY_ED25519;
	default:
		return false;
	}
}

/* DER encodings of the curve OIDs for CKA_EC_PARAMS. Ed25519 uses id-Ed25519
 * (1.3.101.112), which SoftHSM2 and current HSMs accept for CKM_EC_EDWARDS_KEY_PAIR_GEN. */
static const uint8_t oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const uint8_t oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const uint8_t oid_p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
static const uint8_t oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};

const uint8_t *hsm_ec_params(enum hsm_key_type type, size_t *len)
{
	switch (type) {
	case HSM_KEY_P256:
		*len = sizeof(oid_p256);
		return oid_p256;
	case HSM_KEY_P384:
		*len = sizeof(oid_p384);
		return oid_p384;
	case HSM_KEY_P521:
		*len = sizeof(oid_p521);
		return oid_p521;
	case HSM_KEY_ED25519:
		*len = sizeof(oid_ed25519);
		return oid_ed25519;
	default:
		*len = 0;
		return NULL;
	}
}
