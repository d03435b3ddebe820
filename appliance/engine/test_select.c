/*
 * Selectors: hex parsing, store_serial_find_prefix (storage/lookup.c), certificate serials
 * and CAs by name or unique serial prefix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "appliance/engine/engine_internal.h"
#include "storage/test_util.h"

struct fx {
	char dir[PATH_MAX];
	struct store *st;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	tu_tmpdir(f->dir, "select");
	f->st = tu_open(f->dir, 0, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	store_close(&f->st);
	free(f);
	return 0;
}

static void serial_from(uint8_t s[STORE_SERIAL_LEN], const char *hex)
{
	size_t n = 0;
	struct p11ca_errmsg em = {0};
	assert_int_equal(engine_hex_parse(hex, s, STORE_SERIAL_LEN, &n, &em), P11CA_OK);
	assert_int_equal(n, 40);
}

/* Intents with chosen serials (any state counts for lookup). */
static void add_serials(struct store *st, const char *const *hex, size_t n, uint32_t *ca_id)
{
	struct store_txn *txn = tu_txn(st, STORE_TXN_WRITE);
	uint32_t id = tu_ca_add(txn, "ca", 0);
	uint8_t hash[STORE_SHA256_LEN] = {0};
	struct p11ca_errmsg em = {0};
	for (size_t i = 0; i < n; i++) {
		uint8_t s[STORE_SERIAL_LEN];
		serial_from(s, hex[i]);
		assert_int_equal(store_intent_put(txn, s, id, hash, "t", &em), P11CA_OK);
	}
	tu_audit(txn, "serials");
	tu_commit(&txn);
	if (ca_id != NULL)
		*ca_id = id;
}

static const char *const serials[] = {
	"1122334455667788990011223344556677889900",
	"1123000000000000000000000000000000000000",
	"12FF000000000000000000000000000000000000",
	"7F00000000000000000000000000000000000001",
};

static void test_hex_parse(void **state)
{
	(void)state;
	uint8_t b[4];
	size_t n = 0;
	struct p11ca_errmsg em = {0};
	assert_int_equal(engine_hex_parse("1a:2B:3c", b, sizeof(b), &n, &em), P11CA_OK);
	assert_int_equal(n, 6);
	assert_int_equal(b[0], 0x1a);
	assert_int_equal(b[2], 0x3c);
	assert_int_equal(engine_hex_parse("abc", b, sizeof(b), &n, &em), P11CA_OK);
	assert_int_equal(n, 3);
	assert_int_equal(b[1], 0xc0);
	/* Refused: empty, non-hex, too long, misplaced colons. */
	assert_int_equal(engine_hex_parse("", b, sizeof(b), &n, &em), P11CA_E_INVALID_ARG);
	assert_int_equal(engine_hex_parse("12g4", b, sizeof(b), &n, &em), P11CA_E_INVALID_ARG);
	assert_int_equal(engine_hex_parse("112233445", b, sizeof(b), &n, &em), P11CA_E_INVALID_ARG);
	assert_int_equal(engine_hex_parse(":12", b, sizeof(b), &n, &em), P11CA_E_INVALID_ARG);
	assert_int_equal(engine_hex_parse("1:2", b, sizeof(b), &n, &em), P11CA_E_INVALID_ARG);
	assert_int_equal(engine_hex_parse("12::34", b, sizeof(b), &n, &em), P11CA_E_INVALID_ARG);

	char out[9];
	const uint8_t in[] = {0x01, 0xab, 0xcd, 0xef};
	engine_hex_format(in, sizeof(in), out);
	assert_string_equal(out, "01ABCDEF");
}

static size_t find(struct store *st, const char *hex, uint8_t out[4][STORE_SERIAL_LEN])
{
	uint8_t p[STORE_SERIAL_LEN];
	size_t nib = 0, n = 99;
	struct p11ca_errmsg em = {0};
	assert_int_equal(engine_hex_parse(hex, p, sizeof(p), &nib, &em), P11CA_OK);
	struct store_txn *txn = tu_txn(st, STORE_TXN_READ);
	assert_int_equal(store_serial_find_prefix(txn, p, nib, out, 4, &n, &em), P11CA_OK);
	store_txn_abort(&txn);
	return n;
}

static void test_find_prefix(void **state)
{
	struct fx *f = *state;
	uint8_t out[4][STORE_SERIAL_LEN];
	add_serials(f->st, serials, 4, NULL);
	assert_int_equal(find(f->st, "1", out), 3);
	assert_int_equal(find(f->st, "11", out), 2);
	assert_int_equal(find(f->st, "112", out), 2);
	assert_int_equal(find(f->st, "1122", out), 1);
	assert_int_equal(out[0][1], 0x22);
	assert_int_equal(find(f->st, "12f", out), 1);
	assert_int_equal(find(f->st, "13", out), 0);
	assert_int_equal(find(f->st, "7F", out), 1);
	assert_int_equal(find(f->st, serials[3], out), 1);
	assert_int_equal(find(f->st, "8", out), 0);

	/* Counting stops at cap + 1: enough to call it ambiguous. */
	uint8_t p[STORE_SERIAL_LEN] = {0x10};
	size_t n = 0;
	struct p11ca_errmsg em = {0};
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_READ);
	assert_int_equal(store_serial_find_prefix(txn, p, 1, out, 1, &n, &em), P11CA_OK);
	assert_int_equal(n, 2);
	assert_int_equal(store_serial_find_prefix(txn, p, 1, NULL, 0, &n, &em), P11CA_OK);
	assert_int_equal(n, 1);
	/* Refused: no digits, too many, NULL. */
	assert_int_equal(store_serial_find_prefix(txn, p, 0, out, 4, &n, &em), P11CA_E_INVALID_ARG);
	assert_int_equal(store_serial_find_prefix(txn, p, 41, out, 4, &n, &em),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(store_serial_find_prefix(txn, NULL, 2, out, 4, &n, &em),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(store_serial_find_prefix(txn, p, 2, NULL, 4, &n, &em),
			 P11CA_E_INVALID_ARG);
	store_txn_abort(&txn);
}

static void test_serial_select(void **state)
{
	struct fx *f = *state;
	add_serials(f->st, serials, 4, NULL);
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_READ);
	uint8_t s[STORE_SERIAL_LEN];
	struct p11ca_errmsg em = {0};
	assert_int_equal(engine_serial_select(txn, "11:22", s, &em), P11CA_OK);
	assert_int_equal(s[19], 0x00);
	assert_int_equal(s[18], 0x99);
	assert_int_equal(engine_serial_select(txn, "7f", s, &em), P11CA_OK);
	assert_int_equal(s[19], 0x01);

	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_serial_select(txn, "11", s, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "ambiguous"));
	assert_non_null(strstr(em.text, "1123000000"));
	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_serial_select(txn, "55", s, &em), P11CA_E_STORAGE_NOT_FOUND);
	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_serial_select(txn, "xyz", s, &em), P11CA_E_INVALID_ARG);
	store_txn_abort(&txn);
}

/* A self-signed P-256 certificate with the given serial, stored as CA `name`. */
static void add_ca_cert(struct store *st, const char *name, const char *serial_hex)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	assert_non_null(key);
	assert_non_null(x);
	uint8_t s[STORE_SERIAL_LEN];
	serial_from(s, serial_hex);
	BIGNUM *bn = BN_bin2bn(s, sizeof(s), NULL);
	assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)));
	BN_free(bn);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)name, -1, -1, 0);
	X509_set_issuer_name(x, n);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);

	struct store_ca *ca = calloc(1, sizeof(*ca));
	assert_non_null(ca);
	snprintf(ca->name, sizeof(ca->name), "%s", name);
	unsigned char *p = ca->subject_der;
	ca->subject_der_len = (size_t)i2d_X509_NAME(n, &p);
	p = ca->cert_der;
	ca->cert_der_len = (size_t)i2d_X509(x, &p);
	snprintf(ca->key_backend, sizeof(ca->key_backend), "pkcs11");
	snprintf(ca->key_uri, sizeof(ca->key_uri), "pkcs11:object=%s", name);
	ca->state = STORE_CA_ACTIVE;
	struct store_txn *txn = tu_txn(st, STORE_TXN_WRITE);
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_ca_put(txn, ca, &em), P11CA_OK);
	tu_audit(txn, name);
	tu_commit(&txn);
	free(ca);
	X509_free(x);
	EVP_PKEY_free(key);
}

static void test_ca_select(void **state)
{
	struct fx *f = *state;
	add_ca_cert(f->st, "root", "3A00000000000000000000000000000000000001");
	add_ca_cert(f->st, "sub", "3A01000000000000000000000000000000000002");
	add_ca_cert(f->st, "3A01", "4000000000000000000000000000000000000003");
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_READ);
	struct engine_ca *ca = calloc(1, sizeof(*ca));
	struct p11ca_errmsg em = {0};
	assert_non_null(ca);

	assert_int_equal(engine_ca_select(NULL, txn, "root", ca, &em), P11CA_OK);
	assert_string_equal(ca->rec.name, "root");
	assert_non_null(ca->cert);
	assert_int_equal(ca->key_type, HSM_KEY_P256);
	assert_int_equal(ca->alg, HSM_SIG_ECDSA_SHA256);
	engine_ca_clear(ca);
	/* A name wins over a prefix that would match another CA. */
	assert_int_equal(engine_ca_select(NULL, txn, "3A01", ca, &em), P11CA_OK);
	assert_string_equal(ca->rec.name, "3A01");
	engine_ca_clear(ca);
	assert_int_equal(engine_ca_select(NULL, txn, "3a:00", ca, &em), P11CA_OK);
	assert_string_equal(ca->rec.name, "root");
	engine_ca_clear(ca);
	assert_int_equal(engine_ca_select(NULL, txn, "40", ca, &em), P11CA_OK);
	assert_string_equal(ca->rec.name, "3A01");
	engine_ca_clear(ca);

	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_ca_select(NULL, txn, "3A", ca, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "root"));
	assert_non_null(strstr(em.text, "sub"));
	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_ca_select(NULL, txn, "nosuch", ca, &em), P11CA_E_STORAGE_NOT_FOUND);
	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_ca_select(NULL, txn, "", ca, &em), P11CA_E_INVALID_ARG);
	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_ca_select(NULL, txn, "5", ca, &em), P11CA_E_STORAGE_NOT_FOUND);
	engine_ca_clear(ca);
	free(ca);
	store_txn_abort(&txn);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hex_parse),
		cmocka_unit_test_setup_teardown(test_find_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_serial_select, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca_select, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
