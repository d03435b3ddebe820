/* Unit tests for appliance/x509/crl.c: v2 CRLs signed with software keys, checked with
 * X509_CRL_verify, `openssl crl -verify`, and a CRL-checking chain verification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "appliance/x509/test_util.h"

static const uint8_t ca_serial[] = {0x01};
static const uint8_t s1[] = {0x10, 0x01};
static const uint8_t s2[] = {0x10, 0x02};
static const uint8_t s3[] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static int64_t now(void)
{
	return (int64_t)time(NULL);
}

static X509 *make_ca(EVP_PKEY *key, enum hsm_sig_alg alg, uint8_t **der, size_t *der_len)
{
	X509_NAME *name = tu_name("/C=AT/O=p11ca test/CN=CRL Issuer");
	struct x509_cert_spec s = {
		.subject = name,
		.public_key = key,
		.serial = ca_serial,
		.serial_len = sizeof(ca_serial),
		.not_before = now() - 3600,
		.not_after = now() + 86400,
		.alg = alg,
		.is_ca = true,
		.path_length = -1,
		.key_usage = X509v3_KU_KEY_CERT_SIGN | X509v3_KU_CRL_SIGN,
		.key_usage_critical = true,
	};
	X509 *ca = tu_issue(&s, key, der, der_len);
	X509_NAME_free(name);
	return ca;
}

static const ASN1_INTEGER *entry_serial(X509_CRL *crl, int i)
{
	return X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(X509_CRL_get_REVOKED(crl), i));
}

static void expect_serial(X509_CRL *crl, int i, const uint8_t *want, size_t len)
{
	BIGNUM *a = ASN1_INTEGER_to_BN(entry_serial(crl, i), NULL);
	BIGNUM *b = BN_bin2bn(want, (int)len, NULL);
	assert_true(a != NULL && b != NULL);
	assert_int_equal(BN_cmp(a, b), 0);
	BN_free(a);
	BN_free(b);
}

static void crl_for(enum hsm_key_type type, enum hsm_sig_alg alg)
{
	EVP_PKEY *key = tu_key(type);
	uint8_t *ca_der = NULL, *crl_der = NULL;
	size_t ca_len = 0, crl_len = 0;
	X509 *ca = make_ca(key, alg, &ca_der, &ca_len);
	const int64_t t = now();
	const struct x509_crl_entry entries[] = {
		{s2, sizeof(s2), t - 100, 0, 0},
		{s1, sizeof(s1), t - 200, 1, t - 86400 * 3}, /* keyCompromise, with invalidity */
		{s3, sizeof(s3), t - 50, 4, 0},		     /* superseded */
	};
	struct x509_crl_spec spec = {
		.issuer = ca,
		.alg = alg,
		.number = 0x1234567890ULL,
		.this_update = t - 10,
		.next_update = t + 86400 * 7,
		.entries = entries,
		.n_entries = 3,
	};
	X509_CRL *crl = tu_issue_crl(&spec, key, &crl_der, &crl_len);

	assert_int_equal(X509_CRL_verify(crl, key), 1);
	assert_int_equal(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
	assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)), 0);

	ASN1_INTEGER *number = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
	uint64_t n = 0;
	assert_non_null(number);
	assert_int_equal(ASN1_INTEGER_get_uint64(&n, number), 1);
	assert_true(n == 0x1234567890ULL);
	ASN1_INTEGER_free(number);
	AUTHORITY_KEYID *aki = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, NULL, NULL);
	assert_non_null(aki);
	assert_int_equal(ASN1_OCTET_STRING_cmp(aki->keyid, X509_get0_subject_key_id(ca)), 0);
	AUTHORITY_KEYID_free(aki);

	/* Entries in the given order; reasonCode only when not 0; invalidityDate as given. */
	assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 3);
	expect_serial(crl, 0, s2, sizeof(s2));
	expect_serial(crl, 1, s1, sizeof(s1));
	expect_serial(crl, 2, s3, sizeof(s3));
	STACK_OF(X509_REVOKED) *revoked = X509_CRL_get_REVOKED(crl);
	assert_null(X509_REVOKED_get_ext_d2i(sk_X509_REVOKED_value(revoked, 0), NID_crl_reason,
					     NULL, NULL));
	assert_int_equal(X509_REVOKED_get_ext_count(sk_X509_REVOKED_value(revoked, 0)), 0);
	static const long reasons[] = {-1, 1, 4};
	for (int i = 1; i < 3; i++) {
		ASN1_ENUMERATED *r = X509_REVOKED_get_ext_d2i(sk_X509_REVOKED_value(revoked, i),
							      NID_crl_reason, NULL, NULL);
		assert_non_null(r);
		assert_int_equal(ASN1_ENUMERATED_get(r), reasons[i]);
		ASN1_ENUMERATED_free(r);
	}
	ASN1_GENERALIZEDTIME *inv = X509_REVOKED_get_ext_d2i(sk_X509_REVOKED_value(revoked, 1),
							     NID_invalidity_date, NULL, NULL);
	assert_non_null(inv);
	assert_int_equal(ASN1_STRING_type(inv), V_ASN1_GENERALIZEDTIME);
	assert_int_equal(ASN1_TIME_cmp_time_t(inv, (time_t)(t - 86400 * 3)), 0);
	ASN1_GENERALIZEDTIME_free(inv);
	assert_int_equal(
		ASN1_TIME_cmp_time_t(X509_CRL_get0_nextUpdate(crl), (time_t)(t + 86400 * 7)), 0);

	const char *dir = tu_tmpdir();
	char ca_pem[512], crl_pem[512], log[512];
	snprintf(ca_pem, sizeof(ca_pem), "%s", tu_path(dir, "ca.pem"));
	snprintf(crl_pem, sizeof(crl_pem), "%s", tu_path(dir, "crl.pem"));
	snprintf(log, sizeof(log), "%s", tu_path(dir, "crl.log"));
	tu_write_pem(ca_pem, "CERTIFICATE", ca_der, ca_len);
	tu_write_pem(crl_pem, "X509 CRL", crl_der, crl_len);
	const char *argv[] = {"openssl", "crl",	    "-in",    crl_pem, "-CAfile",
			      ca_pem,	 "-verify", "-noout", NULL};
	if (tu_run(argv, log) != 0 || !tu_file_has(log, "verify OK"))
		fail_msg("openssl crl -verify failed for %s (log %s)", hsm_sig_alg_name(alg), log);
	const char *argv_num[] = {"openssl", "crl", "-in", crl_pem, "-noout", "-crlnumber", NULL};
	assert_int_equal(tu_run(argv_num, log), 0);
	assert_true(tu_file_has(log, "crlNumber=0x1234567890"));

	X509_CRL_free(crl);
	X509_free(ca);
	OPENSSL_free(ca_der);
	OPENSSL_free(crl_der);
}

static void test_crl_every_alg(void **state)
{
	(void)state;
	crl_for(HSM_KEY_RSA2048, HSM_SIG_RSA_PKCS1_SHA256);
	crl_for(HSM_KEY_RSA2048, HSM_SIG_RSA_PKCS1_SHA512);
	crl_for(HSM_KEY_RSA2048, HSM_SIG_RSA_PSS_SHA256);
	crl_for(HSM_KEY_RSA2048, HSM_SIG_RSA_PSS_SHA384);
	crl_for(HSM_KEY_P256, HSM_SIG_ECDSA_SHA256);
	crl_for(HSM_KEY_P384, HSM_SIG_ECDSA_SHA384);
	crl_for(HSM_KEY_P521, HSM_SIG_ECDSA_SHA512);
	crl_for(HSM_KEY_ED25519, HSM_SIG_ED25519);
}

/* A chain verification with CRL checking sees a revoked leaf as revoked, and a CRL
 * without entries as a valid "nothing revoked". */
static void test_crl_revokes_leaf(void **state)
{
	(void)state;
	EVP_PKEY *ca_key = tu_key(HSM_KEY_P256);
	X509 *ca = make_ca(ca_key, HSM_SIG_ECDSA_SHA256, NULL, NULL);
	X509_NAME *leaf_name = tu_name("CN=revoked.example");
	struct x509_cert_spec ls = {
		.subject = leaf_name,
		.public_key = tu_key(HSM_KEY_ED25519),
		.serial = s1,
		.serial_len = sizeof(s1),
		.not_before = now() - 60,
		.not_after = now() + 3600,
		.alg = HSM_SIG_ECDSA_SHA256,
		.issuer = ca,
	};
	X509 *leaf = tu_issue(&ls, ca_key, NULL, NULL);

	for (int revoke = 0; revoke < 2; revoke++) {
		const struct x509_crl_entry entry = {s1, sizeof(s1), now() - 30, 1, 0};
		struct x509_crl_spec spec = {
			.issuer = ca,
			.alg = HSM_SIG_ECDSA_SHA256,
			.number = 1,
			.this_update = now() - 30,
			.next_update = now() + 3600,
			.entries = revoke ? &entry : NULL,
			.n_entries = revoke ? 1 : 0,
		};
		X509_CRL *crl = tu_issue_crl(&spec, ca_key, NULL, NULL);
		X509_STORE *store = X509_STORE_new();
		X509_STORE_CTX *ctx = X509_STORE_CTX_new();
		assert_true(store != NULL && ctx != NULL);
		assert_int_equal(X509_STORE_add_cert(store, ca), 1);
		assert_int_equal(X509_STORE_add_crl(store, crl), 1);
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
		assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
		int ok = X509_verify_cert(ctx);
		if (revoke) {
			assert_int_equal(ok, 0);
			assert_int_equal(X509_STORE_CTX_get_error(ctx), X509_V_ERR_CERT_REVOKED);
		} else if (ok != 1) {
			fail_msg("empty CRL: %s",
				 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		}
		X509_STORE_CTX_free(ctx);
		X509_STORE_free(store);
		X509_CRL_free(crl);
	}
	X509_free(leaf);
	X509_free(ca);
	X509_NAME_free(leaf_name);
}

static void expect_crl_refused(const struct x509_crl_spec *spec, const char *needle)
{
	X509_CRL *tbs = (X509_CRL *)1;
	uint8_t *der = (uint8_t *)1;
	size_t len = 1;
	struct p11ca_errmsg em = {0};
	assert_int_equal(x509_crl_tbs(spec, &tbs, &der, &len, &em), P11CA_E_INVALID_ARG);
	assert_null(tbs);
	assert_null(der);
	assert_int_equal(len, 0);
	if (strstr(em.text, needle) == NULL)
		fail_msg("message '%s' lacks '%s'", em.text, needle);
}

static void test_crl_refusals(void **state)
{
	(void)state;
	EVP_PKEY *key = tu_key(HSM_KEY_P256);
	X509 *ca = make_ca(key, HSM_SIG_ECDSA_SHA256, NULL, NULL);
	struct x509_crl_entry e = {s1, sizeof(s1), now(), 0, 0};
	const struct x509_crl_spec good = {
		.issuer = ca,
		.alg = HSM_SIG_ECDSA_SHA384,
		.number = 7,
		.this_update = now(),
		.next_update = now() + 60,
		.entries = &e,
		.n_entries = 1,
	};
	struct x509_crl_spec s;
	static const uint32_t bad_reasons[] = {7, 8, 11, 0xffffffffu};
	for (size_t i = 0; i < sizeof(bad_reasons) / sizeof(bad_reasons[0]); i++) {
		e.reason = bad_reasons[i];
		s = good;
		expect_crl_refused(&s, "reason code");
	}
	e.reason = 0;
	static const uint8_t zero[] = {0x00};
	e.serial = zero, e.serial_len = 1;
	s = good;
	expect_crl_refused(&s, "positive");
	e.serial = s1, e.serial_len = sizeof(s1);
	s = good, s.next_update = s.this_update;
	expect_crl_refused(&s, "later than thisUpdate");
	s = good, s.alg = HSM_SIG_ED25519;
	expect_crl_refused(&s, "cannot be used with the issuer's p256 key");
	s = good, s.issuer = NULL;
	expect_crl_refused(&s, "issuer");
	s = good, s.entries = NULL;
	expect_crl_refused(&s, "entries");
	expect_crl_refused(NULL, "spec");

	/* Finish: the signature checks and the BIT STRING kept whole. */
	X509_CRL *tbs = NULL;
	uint8_t *tbs_der = NULL, *der = NULL;
	size_t tbs_len = 0, der_len = 0;
	assert_int_equal(x509_crl_tbs(&good, &tbs, &tbs_der, &tbs_len, NULL), P11CA_OK);
	static const uint8_t sig[] = {0x30, 0x01, 0x00};
	assert_int_equal(x509_crl_finish(tbs, sig, 0, &der, &der_len, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(x509_crl_finish(NULL, sig, 3, &der, &der_len, NULL), P11CA_E_INVALID_ARG);
	assert_null(der);
	assert_int_equal(x509_crl_finish(tbs, sig, sizeof(sig), &der, &der_len, NULL), P11CA_OK);
	static const uint8_t tail[] = {0x03, 0x04, 0x00, 0x30, 0x01, 0x00};
	assert_memory_equal(der + der_len - sizeof(tail), tail, sizeof(tail));
	assert_memory_equal(der + (der[1] & 0x80 ? 2 + (der[1] & 0x7f) : 2), tbs_der, tbs_len);
	OPENSSL_free(der);
	OPENSSL_free(tbs_der);
	X509_CRL_free(tbs);
	X509_free(ca);
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
		cmocka_unit_test(test_crl_every_alg),
		cmocka_unit_test(test_crl_revokes_leaf),
		cmocka_unit_test(test_crl_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
