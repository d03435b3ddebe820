/* Unit tests for the CSR hygiene rules of appliance/x509/csr.c, each with a real bad CSR
 * made by OpenSSL (some patched byte by byte, as the live tests do), the order in which the
 * rules are applied, and struct x509_csr_policy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "appliance/x509/test_util.h"

/* A CSR for `key` signed with `md` (NULL for Ed25519), as DER (OPENSSL_free). */
static uint8_t *csr_der(EVP_PKEY *key, const EVP_MD *md, size_t *len)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = tu_name("CN=rules.example");
	assert_non_null(req);
	assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
	assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
	assert_true(X509_REQ_sign(req, key, md) > 0);
	uint8_t *der = NULL;
	int n = i2d_X509_REQ(req, &der);
	assert_true(n > 0);
	*len = (size_t)n;
	X509_REQ_free(req);
	X509_NAME_free(name);
	return der;
}

static uint8_t *csr_of(const char *alg, const char *curve, unsigned bits, unsigned e,
		       const EVP_MD *md, size_t *len)
{
	EVP_PKEY *key = tu_keygen(alg, curve, bits, e);
	uint8_t *der = csr_der(key, md, len);
	EVP_PKEY_free(key);
	return der;
}

static enum p11ca_err load(const uint8_t *der, size_t len, const struct x509_csr_policy *policy,
			   struct p11ca_errmsg *em)
{
	X509_REQ *req = (X509_REQ *)1;
	EVP_PKEY *key = (EVP_PKEY *)1;
	enum p11ca_err err = x509_csr_load(der, len, policy, &req, &key, em);
	if (err != P11CA_OK) {
		assert_null(req);
		assert_null(key);
	}
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	return err;
}

static void expect_refused(const uint8_t *der, size_t len, const struct x509_csr_policy *policy,
			   const char *needle)
{
	struct p11ca_errmsg em = {0};
	assert_int_equal(load(der, len, policy, &em), P11CA_E_INVALID_ARG);
	if (strstr(em.text, needle) == NULL)
		fail_msg("message '%s' lacks '%s'", em.text, needle);
}

static void expect_accepted(const uint8_t *der, size_t len, const struct x509_csr_policy *policy)
{
	struct p11ca_errmsg em = {0};
	if (load(der, len, policy, &em) != P11CA_OK)
		fail_msg("refused: %s", em.text);
}

/* Offset of `pat` in der (it must occur exactly once). */
static size_t find(const uint8_t *der, size_t len, const uint8_t *pat, size_t plen)
{
	const uint8_t *at = memmem(der, len, pat, plen);
	assert_non_null(at);
	assert_null(memmem(at + 1, len - (size_t)(at - der) - 1, pat, plen));
	return (size_t)(at - der);
}

static void test_rsa_rules(void **state)
{
	(void)state;
	size_t len = 0;
	uint8_t *der = csr_of("RSA", NULL, 1024, 65537, EVP_sha256(), &len);
	expect_refused(der, len, NULL, "has 1024 bits; this CA accepts 2048 to");
	OPENSSL_free(der);

	der = csr_of("RSA", NULL, 2052, 65537, EVP_sha256(), &len);
	expect_refused(der, len, NULL, "2052 bits, not a multiple of 8");
	OPENSSL_free(der);

	der = csr_of("RSA", NULL, 2048, 3, EVP_sha256(), &len);
	expect_refused(der, len, NULL, "exponent 3 is too small");
	/* A CA configured for small exponents takes it; never below 3. */
	struct x509_csr_policy small_e = {.min_rsa_exponent = 3};
	expect_accepted(der, len, &small_e);
	struct x509_csr_policy below = {.min_rsa_exponent = 1};
	expect_accepted(der, len, &below);
	OPENSSL_free(der);

	/* A CA that wants 3072 bits refuses 2048; one that asks for 1024 still gets 2048. */
	der = csr_of("RSA", NULL, 2048, 65537, EVP_sha256(), &len);
	struct x509_csr_policy strict = {.min_rsa_bits = 3072, .min_rsa_exponent = 65539};
	expect_refused(der, len, &strict, "has 2048 bits; this CA accepts 3072 to");
	struct x509_csr_policy e_only = {.min_rsa_exponent = 65539};
	expect_refused(der, len, &e_only, "exponent 65537 is too small");
	struct x509_csr_policy lax = {.min_rsa_bits = 1024};
	expect_accepted(der, len, &lax);

	/* Exponent 65537 patched to 65538: even. The signature no longer verifies either, but
	 * the key is what gets named. */
	static const uint8_t e65537[] = {0x02, 0x03, 0x01, 0x00, 0x01};
	size_t at = find(der, len, e65537, sizeof(e65537));
	der[at + 4] = 0x02;
	expect_refused(der, len, NULL, "exponent is even");
	OPENSSL_free(der);

	der = csr_of("RSA", NULL, 1024, 65537, EVP_sha256(), &len);
	struct x509_csr_policy lowered = {.min_rsa_bits = 1024};
	expect_refused(der, len, &lowered, "has 1024 bits; this CA accepts 2048 to");
	OPENSSL_free(der);
}

static void test_ec_rules(void **state)
{
	(void)state;
	size_t len = 0;
	uint8_t *der = csr_of("EC", "secp256k1", 0, 0, EVP_sha256(), &len);
	expect_refused(der, len, NULL, "on secp256k1; this CA accepts P-256, P-384 and P-521");
	OPENSSL_free(der);

	/* The last byte of the point's y coordinate changed: no longer on P-256. */
	der = csr_of("EC", "P-256", 0, 0, EVP_sha256(), &len);
	static const uint8_t point_hdr[] = {0x03, 0x42, 0x00, 0x04};
	size_t at = find(der, len, point_hdr, sizeof(point_hdr));
	der[at + sizeof(point_hdr) + 63] ^= 0x01;
	expect_refused(der, len, NULL, "not a valid point on P-256");
	OPENSSL_free(der);

	der = csr_of("ED25519", NULL, 0, 0, NULL, &len);
	expect_accepted(der, len, NULL);
	OPENSSL_free(der);
	der = csr_of("EC", "P-521", 0, 0, EVP_sha512(), &len);
	expect_accepted(der, len, NULL);
	OPENSSL_free(der);
}

static void test_digest_rules(void **state)
{
	(void)state;
	size_t len = 0;
	uint8_t *der = csr_der(tu_key(HSM_KEY_RSA2048), EVP_sha1(), &len);
	expect_refused(der, len, NULL, "signed with sha1WithRSAEncryption, a weak");
	OPENSSL_free(der);
	der = csr_der(tu_key(HSM_KEY_RSA2048), EVP_md5(), &len);
	expect_refused(der, len, NULL, "signed with md5WithRSAEncryption, a weak");
	OPENSSL_free(der);
	der = csr_der(tu_key(HSM_KEY_P256), EVP_sha1(), &len);
	expect_refused(der, len, NULL, "signed with ecdsa-with-SHA1, a weak");
	OPENSSL_free(der);
	/* A weak key is named before a weak digest. */
	der = csr_of("RSA", NULL, 1024, 65537, EVP_sha1(), &len);
	expect_refused(der, len, NULL, "1024 bits");
	OPENSSL_free(der);
}

static void test_signature_and_size(void **state)
{
	(void)state;
	size_t len = 0;
	uint8_t *der = csr_der(tu_key(HSM_KEY_RSA2048), EVP_sha256(), &len);
	expect_accepted(der, len, NULL);
	der[len - 1] ^= 0x80;
	expect_refused(der, len, NULL, "signature does not verify");
	der[len - 1] ^= 0x80;

	struct x509_csr_policy tiny = {.max_bytes = 256};
	expect_refused(der, len, &tiny, "this CA accepts at most 256 (csr_max_bytes)");
	struct x509_csr_policy exact = {.max_bytes = len};
	expect_accepted(der, len, &exact);

	/* The default limit is 16384 bytes; a configured one cannot pass 65536. */
	uint8_t *big = OPENSSL_zalloc(70000);
	assert_non_null(big);
	memcpy(big, der, len);
	expect_refused(big, 16385, NULL, "at most 16384");
	struct x509_csr_policy huge = {.max_bytes = 1000000};
	expect_refused(big, 65537, &huge, "at most 65536");
	expect_refused(big, len + 1, &huge, "1 extra bytes");
	OPENSSL_free(big);
	OPENSSL_free(der);
}

static int teardown(void **state)
{
	(void)state;
	tu_keys_free();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rsa_rules),
		cmocka_unit_test(test_ec_rules),
		cmocka_unit_test(test_digest_rules),
		cmocka_unit_test(test_signature_and_size),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
