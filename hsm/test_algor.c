/* Unit tests for hsm/algor.c: the exact AlgorithmIdentifier forms and key type detection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>

#include "hsm/algor.h"

/* An AlgorithmIdentifier from DER; the test owns it. */
static X509_ALGOR *algor_from(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509_ALGOR *a = d2i_X509_ALGOR(NULL, &p, (long)len);
	assert_non_null(a);
	return a;
}

static size_t algor_der(const X509_ALGOR *a, uint8_t *out, size_t cap)
{
	unsigned char *der = NULL;
	int len = i2d_X509_ALGOR(a, &der);
	assert_true(len > 0 && (size_t)len <= cap);
	memcpy(out, der, (size_t)len);
	OPENSSL_free(der);
	return (size_t)len;
}

static void expect_refused(const uint8_t *der, size_t len, const char *needle)
{
	X509_ALGOR *a = algor_from(der, len);
	struct p11ca_errmsg em = {0};
	enum hsm_sig_alg alg = HSM_SIG_UNSPECIFIED;
	assert_int_equal(hsm_algor_get(a, &alg, &em), P11CA_E_POLICY);
	assert_int_equal(alg, HSM_SIG_UNSPECIFIED);
	if (strstr(em.text, needle) == NULL)
		fail_msg("message '%s' lacks '%s'", em.text, needle);
	X509_ALGOR_free(a);
}

static void test_roundtrip_every_alg(void **state)
{
	(void)state;
	for (int i = HSM_SIG_RSA_PKCS1_SHA256; i <= HSM_SIG_ED25519; i++) {
		X509_ALGOR *a = X509_ALGOR_new();
		assert_non_null(a);
		assert_int_equal(hsm_algor_set(a, (enum hsm_sig_alg)i, NULL), P11CA_OK);
		enum hsm_sig_alg back = HSM_SIG_UNSPECIFIED;
		assert_int_equal(hsm_algor_get(a, &back, NULL), P11CA_OK);
		assert_int_equal(back, i);
		/* Setting over an existing identifier replaces it. */
		assert_int_equal(hsm_algor_set(a, HSM_SIG_ED25519, NULL), P11CA_OK);
		assert_int_equal(hsm_algor_get(a, &back, NULL), P11CA_OK);
		assert_int_equal(back, HSM_SIG_ED25519);
		X509_ALGOR_free(a);
	}
}

/* The forms OpenSSL writes itself for PKCS#1, ECDSA and Ed25519 are the same bytes. */
static void test_matches_openssl(void **state)
{
	(void)state;
	static const struct {
		int nid;
		int ptype;
		enum hsm_sig_alg alg;
	} cases[] = {
		{NID_sha256WithRSAEncryption, V_ASN1_NULL, HSM_SIG_RSA_PKCS1_SHA256},
		{NID_sha512WithRSAEncryption, V_ASN1_NULL, HSM_SIG_RSA_PKCS1_SHA512},
		{NID_ecdsa_with_SHA384, V_ASN1_UNDEF, HSM_SIG_ECDSA_SHA384},
		{NID_ED25519, V_ASN1_UNDEF, HSM_SIG_ED25519},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		X509_ALGOR *a = X509_ALGOR_new();
		assert_non_null(a);
		assert_int_equal(
			X509_ALGOR_set0(a, OBJ_nid2obj(cases[i].nid), cases[i].ptype, NULL), 1);
		enum hsm_sig_alg back = HSM_SIG_UNSPECIFIED;
		assert_int_equal(hsm_algor_get(a, &back, NULL), P11CA_OK);
		assert_int_equal(back, cases[i].alg);
		X509_ALGOR_free(a);
	}
}

static void test_set_refuses_unknown(void **state)
{
	(void)state;
	X509_ALGOR *a = X509_ALGOR_new();
	assert_non_null(a);
	struct p11ca_errmsg em = {0};
	assert_int_equal(hsm_algor_set(a, HSM_SIG_UNSPECIFIED, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "hsm_sig_alg"));
	assert_int_equal(hsm_algor_set(a, (enum hsm_sig_alg)99, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(hsm_algor_set(NULL, HSM_SIG_ED25519, NULL), P11CA_E_INVALID_ARG);
	X509_ALGOR_free(a);
}

static void test_get_refuses_weak_digests(void **state)
{
	(void)state;
	static const uint8_t md5rsa[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
					 0xf7, 0x0d, 0x01, 0x01, 0x04, 0x05, 0x00};
	static const uint8_t sha1rsa[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
					  0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00};
	static const uint8_t ecdsa_sha1[] = {0x30, 0x09, 0x06, 0x07, 0x2a, 0x86,
					     0x48, 0xce, 0x3d, 0x04, 0x01};
	expect_refused(md5rsa, sizeof(md5rsa), "weak");
	expect_refused(sha1rsa, sizeof(sha1rsa), "sha1WithRSAEncryption");
	expect_refused(ecdsa_sha1, sizeof(ecdsa_sha1), "weak");
}

static void test_get_refuses_param_variants(void **state)
{
	(void)state;
	uint8_t der[128];
	X509_ALGOR *a = X509_ALGOR_new();
	assert_non_null(a);

	/* PKCS#1 with absent parameters: the identifier must carry NULL. */
	assert_int_equal(hsm_algor_set(a, HSM_SIG_RSA_PKCS1_SHA256, NULL), P11CA_OK);
	size_t n = algor_der(a, der, sizeof(der));
	der[1] -= 2;
	expect_refused(der, n - 2, "NULL parameters");

	/* ECDSA with NULL parameters: RFC 5758 says absent. */
	static const uint8_t ecdsa_null[] = {0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48,
					     0xce, 0x3d, 0x04, 0x03, 0x02, 0x05, 0x00};
	expect_refused(ecdsa_null, sizeof(ecdsa_null), "absent parameters");
	static const uint8_t ed_null[] = {0x30, 0x07, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x05, 0x00};
	expect_refused(ed_null, sizeof(ed_null), "absent parameters");

	/* PSS: salt 20 instead of 32 (last byte of the DER is the salt). */
	assert_int_equal(hsm_algor_set(a, HSM_SIG_RSA_PSS_SHA256, NULL), P11CA_OK);
	n = algor_der(a, der, sizeof(der));
	assert_int_equal(der[n - 1], 0x20);
	der[n - 1] = 0x14;
	expect_refused(der, n, "salt");

	/* PSS: MGF1 with SHA-512 while the hash is SHA-256. The MGF1 hash OID's last byte
	 * sits right before its NULL, just before the [2] salt field. */
	n = algor_der(a, der, sizeof(der));
	assert_int_equal(der[n - 8], 0x01);
	der[n - 8] = 0x03;
	expect_refused(der, n, "MGF1");

	/* PSS as OpenSSL writes it by default: SHA-2 identifiers with absent parameters. */
	RSA_PSS_PARAMS *pss = RSA_PSS_PARAMS_new();
	assert_non_null(pss);
	pss->hashAlgorithm = X509_ALGOR_new();
	assert_non_null(pss->hashAlgorithm);
	X509_ALGOR_set_md(pss->hashAlgorithm, EVP_sha256());
	ASN1_STRING *params = ASN1_item_pack(pss, ASN1_ITEM_rptr(RSA_PSS_PARAMS), NULL);
	assert_non_null(params);
	RSA_PSS_PARAMS_free(pss);
	assert_int_equal(X509_ALGOR_set0(a, OBJ_nid2obj(NID_rsassaPss), V_ASN1_SEQUENCE, params),
			 1);
	enum hsm_sig_alg alg = HSM_SIG_UNSPECIFIED;
	assert_int_equal(hsm_algor_get(a, &alg, NULL), P11CA_E_POLICY);

	X509_ALGOR_free(a);
}

static void test_get_refuses_unknown_oid(void **state)
{
	(void)state;
	static const uint8_t unknown[] = {0x30, 0x05, 0x06, 0x03, 0x2a, 0x03, 0x04}; /* 1.2.3.4 */
	expect_refused(unknown, sizeof(unknown), "1.2.3.4");
	/* An Ed448 identifier is well-formed but not ours. */
	static const uint8_t ed448[] = {0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x71};
	expect_refused(ed448, sizeof(ed448), "1.3.101.113");

	enum hsm_sig_alg alg;
	assert_int_equal(hsm_algor_get(NULL, &alg, NULL), P11CA_E_POLICY);
}

/* An RSA public key with a random modulus of exactly `bits` bits: detection looks only at
 * the size, and generating real 4096-bit keys would make the test slow. */
static EVP_PKEY *rsa_pub(int bits)
{
	uint8_t n[512];
	size_t len = (size_t)bits / 8;
	assert_true(len <= sizeof(n));
	assert_int_equal(RAND_bytes(n, (int)len), 1);
	n[0] |= 0x80;
	n[len - 1] |= 1;
	BIGNUM *bn = BN_bin2bn(n, (int)len, NULL);
	BIGNUM *e = BN_new();
	assert_true(bn != NULL && e != NULL && BN_set_word(e, 65537) == 1);
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	assert_non_null(bld);
	assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn), 1);
	assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e), 1);
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY *pkey = NULL;
	assert_true(params != NULL && ctx != NULL);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(e);
	return pkey;
}

static void expect_type(EVP_PKEY *pkey, enum p11ca_err want, enum hsm_key_type type,
			const char *needle)
{
	assert_non_null(pkey);
	struct p11ca_errmsg em = {0};
	enum hsm_key_type got = HSM_KEY_UNSPECIFIED;
	assert_int_equal(hsm_key_type_of_pkey(pkey, &got, &em), want);
	assert_int_equal(got, type);
	if (needle != NULL && strstr(em.text, needle) == NULL)
		fail_msg("message '%s' lacks '%s'", em.text, needle);
	EVP_PKEY_free(pkey);
}

static void test_key_types(void **state)
{
	(void)state;
	expect_type(rsa_pub(2048), P11CA_OK, HSM_KEY_RSA2048, NULL);
	expect_type(rsa_pub(3072), P11CA_OK, HSM_KEY_RSA3072, NULL);
	expect_type(rsa_pub(4096), P11CA_OK, HSM_KEY_RSA4096, NULL);
	expect_type(rsa_pub(1024), P11CA_E_POLICY, HSM_KEY_UNSPECIFIED, "1024 bits");
	expect_type(rsa_pub(2056), P11CA_E_POLICY, HSM_KEY_UNSPECIFIED, "2056 bits");

	expect_type(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), P11CA_OK, HSM_KEY_P256, NULL);
	expect_type(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"), P11CA_OK, HSM_KEY_P384, NULL);
	expect_type(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521"), P11CA_OK, HSM_KEY_P521, NULL);
	expect_type(EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), P11CA_OK, HSM_KEY_ED25519, NULL);

	expect_type(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1"), P11CA_E_POLICY,
		    HSM_KEY_UNSPECIFIED, "secp256k1");
	expect_type(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-224"), P11CA_E_POLICY,
		    HSM_KEY_UNSPECIFIED, "not supported");
	expect_type(EVP_PKEY_Q_keygen(NULL, NULL, "X25519"), P11CA_E_POLICY, HSM_KEY_UNSPECIFIED,
		    "X25519");
	expect_type(EVP_PKEY_Q_keygen(NULL, NULL, "ED448"), P11CA_E_POLICY, HSM_KEY_UNSPECIFIED,
		    "ED448");

	enum hsm_key_type t;
	assert_int_equal(hsm_key_type_of_pkey(NULL, &t, NULL), P11CA_E_POLICY);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_every_alg),
		cmocka_unit_test(test_matches_openssl),
		cmocka_unit_test(test_set_refuses_unknown),
		cmocka_unit_test(test_get_refuses_weak_digests),
		cmocka_unit_test(test_get_refuses_param_variants),
		cmocka_unit_test(test_get_refuses_unknown_oid),
		cmocka_unit_test(test_key_types),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
