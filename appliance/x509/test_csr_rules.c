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

/* A CSR for `key` whose SubjectPublicKeyInfo is replaced by algorithm `nid` with parameter
 * (ptype, pval) and the key bits `bits` (NULL: the key's own), with version `version`, signed
 * by `key` with SHA-256 so only the replaced part is wrong. */
static uint8_t *csr_spki(EVP_PKEY *key, int nid, int ptype, void *pval, const uint8_t *bits,
			 size_t bits_len, long version, size_t *len)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = tu_name("CN=spki.example");
	assert_non_null(req);
	assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
	assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
	assert_int_equal(X509_REQ_set_version(req, version), 1);
	if (nid != NID_undef) {
		const unsigned char *own = NULL;
		int own_len = 0;
		X509_PUBKEY *pub = X509_REQ_get_X509_PUBKEY(req);
		assert_int_equal(X509_PUBKEY_get0_param(NULL, &own, &own_len, NULL, pub), 1);
		if (bits == NULL) {
			bits = own;
			bits_len = (size_t)own_len;
		}
		unsigned char *copy = OPENSSL_memdup(bits, bits_len);
		assert_non_null(copy);
		assert_int_equal(X509_PUBKEY_set0_param(pub, OBJ_nid2obj(nid), ptype, pval, copy,
							(int)bits_len),
				 1);
	}
	assert_true(X509_REQ_sign(req, key, EVP_PKEY_is_a(key, "ED25519") ? NULL : EVP_sha256()) >
		    0);
	uint8_t *der = NULL;
	int n = i2d_X509_REQ(req, &der);
	assert_true(n > 0);
	*len = (size_t)n;
	X509_REQ_free(req);
	X509_NAME_free(name);
	return der;
}

/* The SubjectPublicKeyInfo goes into the certificate as received, so what RFC 3279, 5480 and
 * 8410 say about its encoding is checked here: relying parties such as Go's crypto/x509
 * refuse certificates whose RSA key lacks the NULL parameters or whose EC point is
 * compressed. And PKCS#10 knows only version 1 (0). */
static void test_spki_encoding_rules(void **state)
{
	(void)state;
	size_t len = 0;
	EVP_PKEY *rsa = tu_key(HSM_KEY_RSA2048);
	uint8_t *der = csr_spki(rsa, NID_undef, 0, NULL, NULL, 0, 0, &len);
	expect_accepted(der, len, NULL);
	OPENSSL_free(der);
	der = csr_spki(rsa, NID_rsaEncryption, V_ASN1_NULL, NULL, NULL, 0, 0, &len);
	expect_accepted(der, len, NULL);
	OPENSSL_free(der);

	der = csr_spki(rsa, NID_undef, 0, NULL, NULL, 0, 1, &len);
	expect_refused(der, len, NULL, "version 2");
	OPENSSL_free(der);

	der = csr_spki(rsa, NID_rsaEncryption, V_ASN1_UNDEF, NULL, NULL, 0, 0, &len);
	expect_refused(der, len, NULL, "RSA key's algorithm parameters are not NULL");
	OPENSSL_free(der);

	/* RSAPublicKey with the modulus's leading 00 dropped (negative), and with a long-form
	 * length where DER has the short one. */
	X509_PUBKEY *pub = X509_PUBKEY_new();
	assert_int_equal(X509_PUBKEY_set(&pub, rsa), 1);
	const unsigned char *bits = NULL;
	int bits_len = 0;
	assert_int_equal(X509_PUBKEY_get0_param(NULL, &bits, &bits_len, NULL, pub), 1);
	/* 30 82 01 0a | 02 82 01 01 00 <256 bytes n> | 02 03 01 00 01 */
	assert_int_equal(bits_len, 270);
	assert_memory_equal(bits, "\x30\x82\x01\x0a\x02\x82\x01\x01\x00", 9);
	uint8_t neg[269];
	memcpy(neg, "\x30\x82\x01\x09\x02\x82\x01\x00", 8);
	memcpy(neg + 8, bits + 9, 261);
	der = csr_spki(rsa, NID_rsaEncryption, V_ASN1_NULL, NULL, neg, sizeof(neg), 0, &len);
	expect_refused(der, len, NULL, "not a valid RSAPublicKey");
	OPENSSL_free(der);
	uint8_t longform[273];
	memcpy(longform, "\x30\x82\x01\x0d", 4);
	memcpy(longform + 4, bits + 4, 261);
	memcpy(longform + 265, "\x02\x83\x00\x00\x03\x01\x00\x01", 8);
	der = csr_spki(rsa, NID_rsaEncryption, V_ASN1_NULL, NULL, longform, sizeof(longform), 0,
		       &len);
	expect_refused(der, len, NULL, "not a valid RSAPublicKey");
	OPENSSL_free(der);
	X509_PUBKEY_free(pub);

	EVP_PKEY *ec = tu_keygen("EC", "P-256", 0, 0);
	assert_int_equal(EVP_PKEY_set_utf8_string_param(ec, "point-format", "compressed"), 1);
	der = csr_spki(ec, NID_undef, 0, NULL, NULL, 0, 0, &len);
	expect_refused(der, len, NULL, "compressed");
	OPENSSL_free(der);
	EVP_PKEY_free(ec);

	EVP_PKEY *ed = tu_key(HSM_KEY_ED25519);
	der = csr_spki(ed, NID_ED25519, V_ASN1_NULL, NULL, NULL, 0, 0, &len);
	expect_refused(der, len, NULL, "Ed25519");
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
		cmocka_unit_test(test_rsa_rules),	    cmocka_unit_test(test_ec_rules),
		cmocka_unit_test(test_spki_encoding_rules), cmocka_unit_test(test_digest_rules),
		cmocka_unit_test(test_signature_and_size),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
