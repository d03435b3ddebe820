/*
 * Public keys read from the token into OpenSSL, so every signature can be verified in
 * software before it leaves hsm/.
 */
#include "hsm/internal.h"

#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>

/* Largest attribute we read: an RSA-4096 modulus is 512 bytes, a DER-wrapped P-521 point
 * 136. Anything bigger is not a key p11ca supports. */
#define ATTR_MAX 1024

struct attr_buf {
	uint8_t bytes[ATTR_MAX];
	CK_ULONG len;
};

static CK_RV attr_get(struct hsm_token *tok, struct hsm_session *s, CK_OBJECT_HANDLE obj,
		      CK_ATTRIBUTE_TYPE type, struct attr_buf *out)
{
	CK_ATTRIBUTE a = {type, out->bytes, sizeof(out->bytes)};
	CK_RV rv = tok->mod->fn->C_GetAttributeValue(s->handle, obj, &a, 1);
	out->len = rv == CKR_OK ? a.ulValueLen : 0;
	return rv;
}

static CK_RV key_type_unsupported(struct p11ca_errmsg *em, const char *what)
{
	(void)p11ca_fail(em, P11CA_E_HSM_MECHANISM,
			 "key is %s, which p11ca does not support; use rsa2048/3072/4096, "
			 "p256/p384/p521 or ed25519",
			 what);
	return CKR_KEY_TYPE_INCONSISTENT;
}

static CK_RV pub_rsa(struct hsm_token *tok, struct hsm_session *s, CK_OBJECT_HANDLE obj,
		     EVP_PKEY **pub, enum hsm_key_type *type, struct p11ca_errmsg *em)
{
	struct attr_buf n, e;
	CK_RV rv = attr_get(tok, s, obj, CKA_MODULUS, &n);
	if (rv == CKR_OK)
		rv = attr_get(tok, s, obj, CKA_PUBLIC_EXPONENT, &e);
	if (rv != CKR_OK)
		return rv;

	switch (n.len * 8) {
	case 2048:
		*type = HSM_KEY_RSA2048;
		break;
	case 3072:
		*type = HSM_KEY_RSA3072;
		break;
	case 4096:
		*type = HSM_KEY_RSA4096;
		break;
	default: {
		char what[48];
		snprintf(what, sizeof(what), "RSA with a %lu-bit modulus",
			 (unsigned long)n.len * 8);
		return key_type_unsupported(em, what);
	}
	}

	BIGNUM *bn_n = BN_bin2bn(n.bytes, (int)n.len, NULL);
	BIGNUM *bn_e = BN_bin2bn(e.bytes, (int)e.len, NULL);
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	rv = CKR_HOST_MEMORY;
	if (bn_n && bn_e && bld && pctx &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) &&
	    (params = OSSL_PARAM_BLD_to_param(bld)) != NULL && EVP_PKEY_fromdata_init(pctx) == 1 &&
	    EVP_PKEY_fromdata(pctx, pub, EVP_PKEY_PUBLIC_KEY, params) == 1)
		rv = CKR_OK;
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(pctx);
	BN_free(bn_n);
	BN_free(bn_e);
	return rv;
}

/* CKA_EC_POINT is a DER OCTET STRING per the standard; some modules return the raw point.
 * Decide by length, not by trying to parse: a raw point starting 0x04 can look like a
 * DER header. `raw_len` is the curve's point size (65/97/133 uncompressed, 32 Ed25519). */
static bool ec_point_unwrap(const struct attr_buf *in, size_t raw_len, const uint8_t **pt)
{
	if (in->len == raw_len) {
		*pt = in->bytes;
		return true;
	}
	const unsigned char *p = in->bytes;
	ASN1_OCTET_STRING *os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)in->len);
	bool ok =
		os != NULL && p == in->bytes + in->len && (size_t)ASN1_STRING_length(os) == raw_len;
	ASN1_OCTET_STRING_free(os);
	if (ok)
		*pt = in->bytes + (in->len - raw_len); /* DER content is the encoding's tail */
	return ok;
}

static CK_RV pub_ec(struct hsm_token *tok, struct hsm_session *s, CK_OBJECT_HANDLE obj,
		    bool edwards, EVP_PKEY **pub, enum hsm_key_type *type, struct p11ca_errmsg *em)
{
	struct attr_buf params, point;
	CK_RV rv = attr_get(tok, s, obj, CKA_EC_PARAMS, &params);
	if (rv == CKR_OK)
		rv = attr_get(tok, s, obj, CKA_EC_POINT, &point);
	if (rv != CKR_OK)
		return rv;

	static const enum hsm_key_type candidates[] = {HSM_KEY_P256, HSM_KEY_P384, HSM_KEY_P521,
						       HSM_KEY_ED25519};
	static const uint8_t edwards25519_name[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
						    'd',  's',	'2', '5', '5', '1', '9'};
	*type = HSM_KEY_UNSPECIFIED;
	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
		size_t len;
		const uint8_t *oid = hsm_ec_params(candidates[i], &len);
		if (len == params.len && memcmp(oid, params.bytes, len) == 0)
			*type = candidates[i];
	}
	/* PKCS#11 3.0 also allows the curve name as a PrintableString for Edwards keys. */
	if (params.len == sizeof(edwards25519_name) &&
	    memcmp(params.bytes, edwards25519_name, sizeof(edwards25519_name)) == 0)
		*type = HSM_KEY_ED25519;
	if (*type == HSM_KEY_UNSPECIFIED || edwards != (*type == HSM_KEY_ED25519))
		return key_type_unsupported(em, edwards ? "an Edwards key on an unsupported curve"
							: "EC on an unsupported curve");

	const size_t raw_len = *type == HSM_KEY_P256   ? 65
			       : *type == HSM_KEY_P384 ? 97
			       : *type == HSM_KEY_P521 ? 133
						       : 32;
	const uint8_t *pt;
	size_t pt_len = raw_len;
	if (!ec_point_unwrap(&point, raw_len, &pt)) {
		(void)p11ca_fail(em, P11CA_E_HSM, "public key has a malformed CKA_EC_POINT");
		return CKR_ATTRIBUTE_VALUE_INVALID;
	}

	if (edwards) {
		*pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pt, pt_len);
		return *pub ? CKR_OK : CKR_ATTRIBUTE_VALUE_INVALID;
	}
	const char *group = *type == HSM_KEY_P256   ? "prime256v1"
			    : *type == HSM_KEY_P384 ? "secp384r1"
						    : "secp521r1";
	OSSL_PARAM p[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
		OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, pt_len),
		OSSL_PARAM_construct_end(),
	};
	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	rv = CKR_ATTRIBUTE_VALUE_INVALID;
	if (pctx != NULL && EVP_PKEY_fromdata_init(pctx) == 1 &&
	    EVP_PKEY_fromdata(pctx, pub, EVP_PKEY_PUBLIC_KEY, p) == 1)
		rv = CKR_OK;
	EVP_PKEY_CTX_free(pctx);
	return rv;
}

CK_RV hsm_pubkey_read(struct hsm_token *tok, struct hsm_session *s, CK_OBJECT_HANDLE obj,
		      EVP_PKEY **pub, enum hsm_key_type *type, struct p11ca_errmsg *em)
{
	*pub = NULL;
	CK_KEY_TYPE kt;
	CK_ATTRIBUTE a = {CKA_KEY_TYPE, &kt, sizeof(kt)};
	CK_RV rv = tok->mod->fn->C_GetAttributeValue(s->handle, obj, &a, 1);
	if (rv != CKR_OK)
		return rv;
	switch (kt) {
	case CKK_RSA:
		return pub_rsa(tok, s, obj, pub, type, em);
	case CKK_EC:
		return pub_ec(tok, s, obj, false, pub, type, em);
	case CKK_EC_EDWARDS:
		return pub_ec(tok, s, obj, true, pub, type, em);
	default: {
		char what[40];
		snprintf(what, sizeof(what), "of PKCS#11 key type 0x%lx", (unsigned long)kt);
		return key_type_unsupported(em, what);
	}
	}
}
