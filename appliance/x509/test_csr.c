/* Unit tests for appliance/x509/csr.c: good requests of every key type, and each refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "appliance/x509/test_util.h"

/* A CSR for `key` signed with `md` (NULL for Ed25519), as DER (OPENSSL_free). */
static uint8_t *csr_der(EVP_PKEY *key, const EVP_MD *md, size_t *len)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = tu_name("CN=csr.example,O=Org,C=AT");
	assert_non_null(req);
	assert_int_equal(X509_REQ_set_version(req, X509_REQ_VERSION_1), 1);
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

/* The same CSR as PEM text, with `before` and `after` around it (static buffer). */
static const char *csr_pem(const uint8_t *der, size_t len, const char *before, const char *after)
{
	static char buf[16384];
	uint8_t pem[16000];
	size_t pem_len = 0;
	assert_int_equal(
		x509_pem_append("CERTIFICATE REQUEST", der, len, pem, sizeof(pem), &pem_len, NULL),
		P11CA_OK);
	snprintf(buf, sizeof(buf), "%s%.*s%s", before, (int)pem_len, (const char *)pem, after);
	return buf;
}

static void expect_accepted(const uint8_t *data, size_t len, EVP_PKEY *key)
{
	X509_REQ *req = NULL;
	EVP_PKEY *got = NULL;
	struct p11ca_errmsg em = {0};
	if (x509_csr_load(data, len, NULL, &req, &got, &em) != P11CA_OK)
		fail_msg("x509_csr_load: %s", em.text);
	assert_non_null(req);
	assert_int_equal(EVP_PKEY_eq(got, key), 1);
	char subject[256];
	assert_int_equal(
		x509_name_format(X509_REQ_get_subject_name(req), subject, sizeof(subject), NULL),
		P11CA_OK);
	assert_string_equal(subject, "CN=csr.example,O=Org,C=AT");
	EVP_PKEY_free(got);
	X509_REQ_free(req);
}

static void expect_refused(const uint8_t *data, size_t len, const char *needle)
{
	X509_REQ *req = (X509_REQ *)1;
	EVP_PKEY *key = (EVP_PKEY *)1;
	struct p11ca_errmsg em = {0};
	assert_int_equal(x509_csr_load(data, len, NULL, &req, &key, &em), P11CA_E_INVALID_ARG);
	assert_null(req);
	assert_null(key);
	if (strstr(em.text, needle) == NULL)
		fail_msg("message '%s' lacks '%s'", em.text, needle);
}

static void test_csr_good_every_key_type(void **state)
{
	(void)state;
	static const struct {
		enum hsm_key_type type;
		const char *md;
	} cases[] = {
		{HSM_KEY_RSA2048, "SHA256"}, {HSM_KEY_RSA3072, "SHA384"}, {HSM_KEY_P256, "SHA256"},
		{HSM_KEY_P384, "SHA384"},    {HSM_KEY_P521, "SHA512"},	  {HSM_KEY_ED25519, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		EVP_PKEY *key = tu_key(cases[i].type);
		size_t len = 0;
		uint8_t *der =
			csr_der(key, cases[i].md ? EVP_get_digestbyname(cases[i].md) : NULL, &len);
		expect_accepted(der, len, key);
		const char *pem = csr_pem(der, len, "", "");
		expect_accepted((const uint8_t *)pem, strlen(pem), key);
		/* Whitespace around the block is fine. */
		pem = csr_pem(der, len, "\n  \r\n", "\n\n");
		expect_accepted((const uint8_t *)pem, strlen(pem), key);
		OPENSSL_free(der);
	}
}

/* A CSR signed with RSASSA-PSS (SHA-256) is as good as PKCS#1. */
static void test_csr_good_pss(void **state)
{
	(void)state;
	EVP_PKEY *key = tu_key(HSM_KEY_RSA2048);
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = tu_name("CN=csr.example,O=Org,C=AT");
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	assert_true(req != NULL && ctx != NULL);
	assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
	assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
	assert_int_equal(EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, key), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
	assert_true(X509_REQ_sign_ctx(req, ctx) > 0);
	uint8_t *der = NULL;
	int n = i2d_X509_REQ(req, &der);
	assert_true(n > 0);
	expect_accepted(der, (size_t)n, key);
	OPENSSL_free(der);
	EVP_MD_CTX_free(ctx);
	X509_REQ_free(req);
	X509_NAME_free(name);
}

static void test_csr_bad_signature(void **state)
{
	(void)state;
	EVP_PKEY *key = tu_key(HSM_KEY_P256);
	size_t len = 0;
	uint8_t *der = csr_der(key, EVP_sha256(), &len);
	/* The last byte belongs to the signature's s value. */
	der[len - 1] ^= 0x01;
	expect_refused(der, len, "signature does not verify");
	OPENSSL_free(der);

	/* A CSR whose key is not the one that signed it. */
	X509_REQ *req = X509_REQ_new();
	assert_non_null(req);
	assert_int_equal(X509_REQ_set_pubkey(req, tu_key2(HSM_KEY_P256)), 1);
	assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
	der = NULL;
	int n = i2d_X509_REQ(req, &der);
	assert_true(n > 0);
	expect_refused(der, (size_t)n, "signature does not verify");
	OPENSSL_free(der);
	X509_REQ_free(req);
}

static void test_csr_weak_digest(void **state)
{
	(void)state;
	EVP_PKEY *rsa = tu_key(HSM_KEY_RSA2048);
	size_t len = 0;
	uint8_t *der = csr_der(rsa, EVP_sha1(), &len);
	expect_refused(der, len, "sha1WithRSAEncryption");
	OPENSSL_free(der);
	der = csr_der(rsa, EVP_md5(), &len);
	expect_refused(der, len, "weak");
	OPENSSL_free(der);
	der = csr_der(tu_key(HSM_KEY_P256), EVP_sha1(), &len);
	expect_refused(der, len, "weak");
	OPENSSL_free(der);
}

static void test_csr_weak_keys(void **state)
{
	(void)state;
	size_t len = 0;
	EVP_PKEY *rsa1024 = tu_keygen("RSA", NULL, 1024, 65537);
	uint8_t *der = csr_der(rsa1024, EVP_sha256(), &len);
	expect_refused(der, len, "1024 bits");
	OPENSSL_free(der);
	EVP_PKEY_free(rsa1024);

	EVP_PKEY *e3 = tu_keygen("RSA", NULL, 2048, 3);
	der = csr_der(e3, EVP_sha256(), &len);
	expect_refused(der, len, "exponent");
	OPENSSL_free(der);
	EVP_PKEY_free(e3);

	EVP_PKEY *k1 = tu_keygen("EC", "secp256k1", 0, 0);
	der = csr_der(k1, EVP_sha256(), &len);
	expect_refused(der, len, "secp256k1");
	OPENSSL_free(der);
	EVP_PKEY_free(k1);

	EVP_PKEY *ed448 = tu_keygen("ED448", NULL, 0, 0);
	der = csr_der(ed448, NULL, &len);
	expect_refused(der, len, "ED448");
	OPENSSL_free(der);
	EVP_PKEY_free(ed448);

	/* P-256 written with explicit curve parameters. */
	EVP_PKEY *explicit = tu_keygen("EC", "P-256", 0, 0);
	assert_int_equal(EVP_PKEY_set_utf8_string_param(explicit, OSSL_PKEY_PARAM_EC_ENCODING,
							OSSL_PKEY_EC_ENCODING_EXPLICIT),
			 1);
	der = csr_der(explicit, EVP_sha256(), &len);
	expect_refused(der, len, "explicit");
	OPENSSL_free(der);
	EVP_PKEY_free(explicit);
}

static void test_csr_garbage(void **state)
{
	(void)state;
	static const uint8_t garbage[] = "this is not a certificate request";
	expect_refused(garbage, sizeof(garbage) - 1, "not a PKCS#10");
	static const uint8_t seq[] = {0x30, 0x03, 0x02, 0x01, 0x00};
	expect_refused(seq, sizeof(seq), "not a PKCS#10");
	expect_refused(garbage, 0, "empty");
	assert_int_equal(
		x509_csr_load(NULL, 10, NULL, &(X509_REQ *){NULL}, &(EVP_PKEY *){NULL}, NULL),
		P11CA_E_INVALID_ARG);
	static uint8_t huge[70000];
	expect_refused(huge, sizeof(huge), "at most");

	/* A request cut short is none. */
	EVP_PKEY *key = tu_key(HSM_KEY_P256);
	size_t len = 0;
	uint8_t *der = csr_der(key, EVP_sha256(), &len);
	expect_refused(der, len - 1, "not a PKCS#10");

	/* Trailing bytes after the DER. */
	uint8_t *longer = OPENSSL_malloc(len + 2);
	assert_non_null(longer);
	memcpy(longer, der, len);
	longer[len] = 0x00;
	longer[len + 1] = 0x00;
	expect_refused(longer, len + 2, "extra bytes");

	/* BER: the outer length in a longer form than needed. DER needs 0x82 here. */
	assert_int_equal(der[1], 0x81);
	uint8_t *ber = OPENSSL_malloc(len + 1);
	assert_non_null(ber);
	ber[0] = 0x30;
	ber[1] = 0x82;
	ber[2] = 0x00;
	memcpy(ber + 3, der + 2, len - 2);
	expect_refused(ber, len + 1, "not DER");

	/* BER inside the request info (its own length one byte longer than needed): the
	 * check must re-encode, not compare OpenSSL's cached copy of the bytes received. */
	assert_int_equal(der[3], 0x30);
	assert_true(der[2] < 0xff);
	size_t hdr = der[4] < 0x80 ? 2 : 3; /* 30 LL or 30 81 LL */
	ber[0] = 0x30;
	ber[1] = 0x81;
	ber[2] = (uint8_t)(der[2] + 1);
	ber[3] = 0x30;
	ber[4] = (uint8_t)(hdr == 2 ? 0x81 : 0x82);
	ber[5] = hdr == 2 ? der[4] : 0x00;
	if (hdr == 3)
		ber[6] = der[5];
	memcpy(ber + 3 + hdr + 1, der + 3 + hdr, len - 3 - hdr);
	expect_refused(ber, len + 1, "not DER");
	OPENSSL_free(ber);
	OPENSSL_free(longer);

	/* PEM with junk around it, with headers, with another label, with broken base64. */
	const char *pem = csr_pem(der, len, "junk\n", "");
	expect_refused((const uint8_t *)pem, strlen(pem), "before or after");
	pem = csr_pem(der, len, "", "trailing junk\n");
	expect_refused((const uint8_t *)pem, strlen(pem), "before or after");
	pem = csr_pem(der, len, "", csr_pem(der, len, "", ""));
	expect_refused((const uint8_t *)pem, strlen(pem), "before or after");
	/* A byte >= 0x80 (or a control character) after the END marker: OpenSSL drops it with
	 * the line's trailing space (found by mutating CSRs). */
	char glued[8192];
	snprintf(glued, sizeof(glued), "%s", csr_pem(der, len, "", ""));
	assert_int_equal(glued[strlen(glued) - 1], '\n');
	snprintf(glued + strlen(glued) - 1, 32, "\xd2");
	expect_refused((const uint8_t *)glued, strlen(glued), "before or after");
	uint8_t crl_label[4096];
	size_t crl_len = 0;
	assert_int_equal(
		x509_pem_append("X509 CRL", der, len, crl_label, sizeof(crl_label), &crl_len, NULL),
		P11CA_OK);
	expect_refused(crl_label, crl_len, "not a CERTIFICATE REQUEST");
	char other[8192];
	snprintf(other, sizeof(other), "%s", csr_pem(der, len, "", ""));
	other[40] = '!';
	expect_refused((const uint8_t *)other, strlen(other), "does not decode");
	OPENSSL_free(der);

	/* DER that happens to hold a PEM marker (here in the subject) is still DER. */
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = tu_name("CN=-----BEGIN x,O=Org,C=AT");
	assert_non_null(req);
	assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
	assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
	assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
	der = NULL;
	int n = i2d_X509_REQ(req, &der);
	assert_true(n > 0);
	X509_REQ *got = NULL;
	EVP_PKEY *got_key = NULL;
	struct p11ca_errmsg em = {0};
	if (x509_csr_load(der, (size_t)n, NULL, &got, &got_key, &em) != P11CA_OK)
		fail_msg("x509_csr_load: %s", em.text);
	X509_REQ_free(got);
	EVP_PKEY_free(got_key);
	OPENSSL_free(der);
	X509_NAME_free(name);
	X509_REQ_free(req);
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
		cmocka_unit_test(test_csr_good_every_key_type),
		cmocka_unit_test(test_csr_good_pss),
		cmocka_unit_test(test_csr_bad_signature),
		cmocka_unit_test(test_csr_weak_digest),
		cmocka_unit_test(test_csr_weak_keys),
		cmocka_unit_test(test_csr_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
