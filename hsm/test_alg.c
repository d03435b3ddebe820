/* Unit tests for hsm/ pieces that need no token: algorithm tables, CK_RV translation,
 * URI rules, and software verification (hsm_verify) against OpenSSL-made signatures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <openssl/rsa.h>

#include "hsm/internal.h"

static void test_key_type_names_roundtrip(void **state)
{
	(void)state;
	const char *names[] = {"rsa2048", "rsa3072", "rsa4096", "p256", "p384", "p521", "ed25519"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		enum hsm_key_type t = HSM_KEY_UNSPECIFIED;
		assert_int_equal(hsm_key_type_parse(names[i], &t, NULL), P11CA_OK);
		assert_string_equal(hsm_key_type_name(t), names[i]);
	}
	enum hsm_key_type t = HSM_KEY_UNSPECIFIED;
	assert_int_equal(hsm_key_type_parse("RSA2048", &t, NULL), P11CA_OK); /* any case */
	assert_int_equal(t, HSM_KEY_RSA2048);

	struct p11ca_errmsg em = {0};
	assert_int_equal(hsm_key_type_parse("rsa1024", &t, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "ed25519")); /* the message lists valid choices */
	assert_int_equal(hsm_key_type_parse(NULL, &t, NULL), P11CA_E_INVALID_ARG);
	assert_null(hsm_key_type_name(HSM_KEY_UNSPECIFIED));
	assert_null(hsm_key_type_name((enum hsm_key_type)99));
}

static void test_sig_alg_names_roundtrip(void **state)
{
	(void)state;
	for (int a = HSM_SIG_RSA_PKCS1_SHA256; a <= HSM_SIG_ED25519; a++) {
		const char *name = hsm_sig_alg_name((enum hsm_sig_alg)a);
		assert_non_null(name);
		enum hsm_sig_alg back = HSM_SIG_UNSPECIFIED;
		assert_int_equal(hsm_sig_alg_parse(name, &back, NULL), P11CA_OK);
		assert_int_equal(back, a);
	}
	enum hsm_sig_alg back;
	struct p11ca_errmsg em = {0};
	assert_int_equal(hsm_sig_alg_parse("ecdsa-sha1", &back, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "ecdsa-sha256"));
	assert_null(hsm_sig_alg_name(HSM_SIG_UNSPECIFIED));
}

static void test_fits_and_defaults(void **state)
{
	(void)state;
	assert_true(hsm_sig_alg_fits(HSM_SIG_RSA_PSS_SHA512, HSM_KEY_RSA3072));
	assert_true(hsm_sig_alg_fits(HSM_SIG_ECDSA_SHA512, HSM_KEY_P256)); /* any hash */
	assert_true(hsm_sig_alg_fits(HSM_SIG_ED25519, HSM_KEY_ED25519));
	assert_false(hsm_sig_alg_fits(HSM_SIG_ECDSA_SHA256, HSM_KEY_RSA2048));
	assert_false(hsm_sig_alg_fits(HSM_SIG_RSA_PKCS1_SHA256, HSM_KEY_P384));
	assert_false(hsm_sig_alg_fits(HSM_SIG_ECDSA_SHA256, HSM_KEY_ED25519)); /* no hash */
	assert_false(hsm_sig_alg_fits(HSM_SIG_ED25519, HSM_KEY_P256));
	assert_false(hsm_sig_alg_fits(HSM_SIG_UNSPECIFIED, HSM_KEY_P256));

	assert_int_equal(hsm_sig_alg_default(HSM_KEY_RSA4096), HSM_SIG_RSA_PKCS1_SHA256);
	assert_int_equal(hsm_sig_alg_default(HSM_KEY_P256), HSM_SIG_ECDSA_SHA256);
	assert_int_equal(hsm_sig_alg_default(HSM_KEY_P384), HSM_SIG_ECDSA_SHA384);
	assert_int_equal(hsm_sig_alg_default(HSM_KEY_P521), HSM_SIG_ECDSA_SHA512);
	assert_int_equal(hsm_sig_alg_default(HSM_KEY_ED25519), HSM_SIG_ED25519);
	assert_int_equal(hsm_sig_alg_default(HSM_KEY_UNSPECIFIED), HSM_SIG_UNSPECIFIED);
	for (int t = HSM_KEY_RSA2048; t <= HSM_KEY_ED25519; t++)
		assert_true(hsm_sig_alg_fits(hsm_sig_alg_default(t), t));
}

static void test_ec_params(void **state)
{
	(void)state;
	size_t len = 99;
	assert_null(hsm_ec_params(HSM_KEY_RSA2048, &len));
	assert_int_equal(len, 0);
	const uint8_t *p = hsm_ec_params(HSM_KEY_P256, &len);
	assert_int_equal(len, 10);
	assert_int_equal(p[0], 0x06); /* an OID */
	p = hsm_ec_params(HSM_KEY_ED25519, &len);
	const uint8_t ed[] = {0x06, 0x03, 0x2b, 0x65, 0x70}; /* 1.3.101.112 */
	assert_int_equal(len, sizeof(ed));
	assert_memory_equal(p, ed, sizeof(ed));
}

static void test_ckr_classification(void **state)
{
	(void)state;
	assert_string_equal(hsm_ckr_name(CKR_DEVICE_REMOVED), "CKR_DEVICE_REMOVED");
	assert_string_equal(hsm_ckr_name(0x7fff1234UL), "CKR_(unlisted)");
	/* The recovery classes the issue names. */
	assert_int_equal(hsm_ckr_fault(CKR_SESSION_HANDLE_INVALID), HSM_FAULT_SESSION);
	assert_int_equal(hsm_ckr_fault(CKR_SESSION_CLOSED), HSM_FAULT_SESSION);
	assert_int_equal(hsm_ckr_fault(CKR_USER_NOT_LOGGED_IN), HSM_FAULT_LOGIN);
	assert_int_equal(hsm_ckr_fault(CKR_OBJECT_HANDLE_INVALID), HSM_FAULT_OBJECT);
	assert_int_equal(hsm_ckr_fault(CKR_DEVICE_REMOVED), HSM_FAULT_DEVICE);
	assert_int_equal(hsm_ckr_fault(CKR_DEVICE_ERROR), HSM_FAULT_DEVICE);
	assert_int_equal(hsm_ckr_fault(CKR_TOKEN_NOT_PRESENT), HSM_FAULT_DEVICE);
	/* A PIN failure must never trigger a retry, nor an unknown code a teardown. */
	assert_int_equal(hsm_ckr_fault(CKR_PIN_INCORRECT), HSM_FAULT_FATAL);
	assert_int_equal(hsm_ckr_fault(CKR_PIN_LOCKED), HSM_FAULT_FATAL);
	assert_int_equal(hsm_ckr_fault(0x7fff1234UL), HSM_FAULT_FATAL);
	assert_int_equal(hsm_ckr_fault(CKR_OK), HSM_FAULT_NONE);

	assert_int_equal(hsm_ckr_err(CKR_PIN_INCORRECT), P11CA_E_HSM_PIN_INCORRECT);
	assert_int_equal(hsm_ckr_err(CKR_PIN_LOCKED), P11CA_E_HSM_PIN_LOCKED);
	assert_int_equal(hsm_ckr_err(CKR_MECHANISM_INVALID), P11CA_E_HSM_MECHANISM);
	assert_int_equal(hsm_ckr_err(CKR_DEVICE_REMOVED), P11CA_E_HSM_UNAVAILABLE);
	assert_int_equal(hsm_ckr_err(CKR_SESSION_COUNT), P11CA_E_HSM_BUSY);
	assert_int_equal(hsm_ckr_err(0x7fff1234UL), P11CA_E_HSM);
	/* Every HSM-side code lands in the HSM category or is a plain usage/internal one. */
	assert_int_equal(p11ca_err_category(hsm_ckr_err(CKR_DEVICE_ERROR)), P11CA_CAT_HSM);
}

static void expect_uri(const char *text, enum hsm_uri_kind kind, enum p11ca_err want,
		       const char *word)
{
	P11KitUri *uri = NULL;
	struct p11ca_errmsg em = {0};
	enum p11ca_err got = hsm_uri_parse(text, kind, &uri, &em);
	if (got != want)
		fail_msg("%s: got %s (%s), want %s", text, p11ca_err_name(got), em.text,
			 p11ca_err_name(want));
	if (want == P11CA_OK) {
		assert_non_null(uri);
		p11_kit_uri_free(uri);
	} else {
		assert_null(uri);
		if (word != NULL && strstr(em.text, word) == NULL)
			fail_msg("%s: message '%s' lacks '%s'", text, em.text, word);
		/* A URI may carry a PIN: it must never be echoed back. */
		assert_null(strstr(em.text, "s3cr3t"));
	}
}

static void test_uri_rules(void **state)
{
	(void)state;
	expect_uri("pkcs11:token=CA", HSM_URI_TOKEN, P11CA_OK, NULL);
	expect_uri("pkcs11:token=CA;serial=abc;slot-id=3", HSM_URI_TOKEN, P11CA_OK, NULL);
	expect_uri("pkcs11:token=CA?pin-source=file:/etc/p11ca/pin", HSM_URI_TOKEN, P11CA_OK, NULL);
	expect_uri("pkcs11:token=CA?module-path=/usr/lib/x.so", HSM_URI_TOKEN, P11CA_OK, NULL);
	expect_uri("pkcs11:token=CA?pin-value=s3cr3t&pin-source=/p", HSM_URI_TOKEN, P11CA_E_URI,
		   "pin-source");
	expect_uri("pkcs11:token=CA;object=key", HSM_URI_TOKEN, P11CA_E_URI, "object");
	expect_uri("pkcs11:token=CA;id=%01", HSM_URI_TOKEN, P11CA_E_URI, NULL);
	expect_uri("pkcs11:token=CA;bogus=1", HSM_URI_TOKEN, P11CA_E_URI, "attribute");
	expect_uri("https://example.com/", HSM_URI_TOKEN, P11CA_E_URI, "invalid");
	expect_uri("pkcs11:token=%zz?pin-value=s3cr3t", HSM_URI_TOKEN, P11CA_E_URI, NULL);
	expect_uri("", HSM_URI_TOKEN, P11CA_E_URI, "empty");
	expect_uri(NULL, HSM_URI_TOKEN, P11CA_E_URI, NULL);

	expect_uri("pkcs11:object=ca1", HSM_URI_OBJECT, P11CA_OK, NULL);
	expect_uri("pkcs11:id=%01%02;type=private", HSM_URI_OBJECT, P11CA_OK, NULL);
	expect_uri("pkcs11:token=CA;object=ca1;id=%01", HSM_URI_OBJECT, P11CA_OK, NULL);
	expect_uri("pkcs11:object=ca1;type=public", HSM_URI_OBJECT, P11CA_E_URI, "private");
	expect_uri("pkcs11:object=ca1;type=cert", HSM_URI_OBJECT, P11CA_E_URI, "private");
	expect_uri("pkcs11:token=CA", HSM_URI_OBJECT, P11CA_E_URI, "object=");
}

static void test_padded_and_hex(void **state)
{
	(void)state;
	char out[8];
	const CK_UTF8CHAR padded[6] = {'a', 'b', ' ', ' ', ' ', ' '};
	hsm_padded_to_cstr(padded, sizeof(padded), out, sizeof(out));
	assert_string_equal(out, "ab");
	const CK_UTF8CHAR long_label[12] = {'0', '1', '2', '3', '4', '5',
					    '6', '7', '8', '9', 'a', 'b'};
	hsm_padded_to_cstr(long_label, sizeof(long_label), out, sizeof(out));
	assert_string_equal(out, "0123456"); /* truncated, still terminated */

	char hex[7];
	const uint8_t b[] = {0x00, 0xab, 0xff, 0x10};
	hsm_hex(b, sizeof(b), hex, sizeof(hex));
	assert_string_equal(hex, "00abff"); /* truncated to whole bytes */
	hsm_hex(b, 0, hex, sizeof(hex));
	assert_string_equal(hex, "");
}

/* Sign in software with OpenSSL, then check hsm_verify accepts it and rejects every
 * variation: another message, a flipped bit, the wrong padding, the wrong key type. */
static EVP_PKEY *keygen(const char *type, const char *param)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pkey = NULL;
	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
	if (strcmp(type, "RSA") == 0)
		assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048), 1);
	else if (param != NULL)
		assert_int_equal(EVP_PKEY_CTX_set_group_name(ctx, param), 1);
	assert_int_equal(EVP_PKEY_generate(ctx, &pkey), 1);
	EVP_PKEY_CTX_free(ctx);
	return pkey;
}

static size_t sw_sign(EVP_PKEY *k, const char *md, bool pss, const uint8_t *msg, size_t n,
		      uint8_t *sig)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	size_t len = HSM_SIG_MAX;
	assert_int_equal(EVP_DigestSignInit_ex(ctx, &pctx, md, NULL, NULL, k, NULL), 1);
	if (pss) {
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 1);
	}
	assert_int_equal(EVP_DigestSign(ctx, sig, &len, msg, n), 1);
	EVP_MD_CTX_free(ctx);
	return len;
}

static void test_verify(void **state)
{
	(void)state;
	const uint8_t msg[] = "to be signed", other[] = "to be signeD";
	uint8_t sig[HSM_SIG_MAX];
	struct p11ca_errmsg em = {0};

	EVP_PKEY *rsa = keygen("RSA", NULL);
	size_t n = sw_sign(rsa, "SHA384", true, msg, sizeof(msg), sig);
	assert_int_equal(hsm_verify(rsa, HSM_SIG_RSA_PSS_SHA384, msg, sizeof(msg), sig, n, NULL),
			 P11CA_OK);
	assert_int_equal(hsm_verify(rsa, HSM_SIG_RSA_PKCS1_SHA384, msg, sizeof(msg), sig, n, &em),
			 P11CA_E_HSM_BAD_SIGNATURE);
	assert_int_equal(hsm_verify(rsa, HSM_SIG_RSA_PSS_SHA256, msg, sizeof(msg), sig, n, NULL),
			 P11CA_E_HSM_BAD_SIGNATURE);
	assert_int_equal(
		hsm_verify(rsa, HSM_SIG_RSA_PSS_SHA384, other, sizeof(other), sig, n, NULL),
		P11CA_E_HSM_BAD_SIGNATURE);
	n = sw_sign(rsa, "SHA256", false, msg, sizeof(msg), sig);
	assert_int_equal(hsm_verify(rsa, HSM_SIG_RSA_PKCS1_SHA256, msg, sizeof(msg), sig, n, NULL),
			 P11CA_OK);
	sig[n / 2] ^= 1;
	assert_int_equal(hsm_verify(rsa, HSM_SIG_RSA_PKCS1_SHA256, msg, sizeof(msg), sig, n, NULL),
			 P11CA_E_HSM_BAD_SIGNATURE);
	p11ca_errmsg_clear(&em);
	assert_int_equal(hsm_verify(rsa, HSM_SIG_ECDSA_SHA256, msg, sizeof(msg), sig, n, &em),
			 P11CA_E_HSM_MECHANISM);

	EVP_PKEY *ec = keygen("EC", "P-384");
	n = sw_sign(ec, "SHA512", false, msg, sizeof(msg), sig);
	assert_int_equal(hsm_verify(ec, HSM_SIG_ECDSA_SHA512, msg, sizeof(msg), sig, n, NULL),
			 P11CA_OK);
	assert_int_equal(hsm_verify(ec, HSM_SIG_ECDSA_SHA384, msg, sizeof(msg), sig, n, NULL),
			 P11CA_E_HSM_BAD_SIGNATURE);
	assert_int_equal(hsm_verify(ec, HSM_SIG_ED25519, msg, sizeof(msg), sig, n, NULL),
			 P11CA_E_HSM_MECHANISM);

	EVP_PKEY *ed = keygen("ED25519", NULL);
	n = sw_sign(ed, NULL, false, msg, sizeof(msg), sig);
	assert_int_equal(n, 64);
	assert_int_equal(hsm_verify(ed, HSM_SIG_ED25519, msg, sizeof(msg), sig, n, NULL), P11CA_OK);
	assert_int_equal(hsm_verify(ed, HSM_SIG_ED25519, other, sizeof(other), sig, n, NULL),
			 P11CA_E_HSM_BAD_SIGNATURE);
	assert_int_equal(hsm_verify(ed, HSM_SIG_ED25519, msg, sizeof(msg), sig, 63, NULL),
			 P11CA_E_HSM_BAD_SIGNATURE);
	assert_int_equal(hsm_verify(NULL, HSM_SIG_ED25519, msg, sizeof(msg), sig, n, NULL),
			 P11CA_E_HSM_MECHANISM);
	assert_int_equal(hsm_verify(ed, HSM_SIG_UNSPECIFIED, msg, sizeof(msg), sig, n, NULL),
			 P11CA_E_HSM_MECHANISM);

	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(ed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_type_names_roundtrip),
		cmocka_unit_test(test_sig_alg_names_roundtrip),
		cmocka_unit_test(test_fits_and_defaults),
		cmocka_unit_test(test_ec_params),
		cmocka_unit_test(test_ckr_classification),
		cmocka_unit_test(test_uri_rules),
		cmocka_unit_test(test_padded_and_hex),
		cmocka_unit_test(test_verify),
	};
	return cmocka_run_group_tests_name("hsm_alg", tests, NULL, NULL);
}
