/*
 * storage/ tests for what issue 4 added to the records: imported certificates, expiry
 * watchers, per-CA settings, and records written before those fields existed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/store.h"
#include "storage/test_util.h"

struct fixture {
	char dir[PATH_MAX];
	struct store *st;
	uint32_t ca;
	struct store_cert cert;
	uint8_t der[2048];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	tu_tmpdir(f->dir, "import");
	f->st = tu_open(f->dir, 0, 0);
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	f->ca = tu_ca_add(txn, "root", 0);
	tu_audit(txn, "ca");
	tu_commit(&txn);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_close(&f->st);
	free(f);
	return 0;
}

static void pad_serial(const uint8_t *c, size_t n, uint8_t serial[STORE_SERIAL_LEN])
{
	memset(serial, 0, STORE_SERIAL_LEN);
	memcpy(serial + STORE_SERIAL_LEN - n, c, n);
}

static struct store_watcher watcher(const char *email, uint32_t days)
{
	struct store_watcher w = {.notified_days = days};
	snprintf(w.email, sizeof(w.email), "%s", email);
	return w;
}

static void test_import_records(void **state)
{
	struct fixture *f = *state;
	static const uint8_t c8[] = {0x00, 0x9a, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06};
	uint8_t serial[STORE_SERIAL_LEN], sha[STORE_SHA256_LEN];
	struct store_watcher w[2] = {watcher("a@example.org", 0), watcher("b@example.org", 7)};
	struct p11ca_errmsg em = {0};
	pad_serial(c8, sizeof(c8), serial);
	size_t len = tu_cert_make_int(c8, sizeof(c8), 30, f->der, sizeof(f->der), sha);

	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	if (store_cert_import(txn, f->ca, serial, f->der, len, 1234, "server", "ops", w, 2, &em) !=
	    P11CA_OK)
		fail_msg("import: %s", p11ca_errmsg_text(&em));
	tu_audit(txn, "import");
	tu_commit(&txn);

	txn = tu_txn(f->st, STORE_TXN_READ);
	assert_int_equal(store_cert_get_by_serial(txn, serial, &f->cert, NULL), P11CA_OK);
	assert_true(f->cert.imported);
	assert_int_equal(f->cert.ca_id, f->ca);
	assert_int_equal(f->cert.der_len, len);
	assert_memory_equal(f->cert.der, f->der, len);
	assert_int_equal(f->cert.not_after, 1234);
	assert_string_equal(f->cert.profile, "server");
	assert_string_equal(f->cert.requester, "ops");
	assert_int_equal(f->cert.n_watchers, 2);
	assert_string_equal(f->cert.watchers[1].email, "b@example.org");
	assert_int_equal(f->cert.watchers[1].notified_days, 7);
	struct store_serial_info info;
	assert_int_equal(store_serial_get(txn, serial, &info, NULL), P11CA_OK);
	assert_int_equal(info.state, STORE_SERIAL_ISSUED);
	assert_int_equal(info.ca_id, f->ca);
	assert_memory_equal(info.tbs_sha256, sha, sizeof(sha));
	/* Found by prefix like any other serial ("0000…009A…"). */
	size_t n = 0;
	uint8_t found[2][STORE_SERIAL_LEN];
	assert_int_equal(store_serial_find_prefix(txn, serial, 26, found, 2, &n, NULL), P11CA_OK);
	assert_int_equal(n, 1);
	store_txn_abort(&txn);

	/* Revocable like an issued one; intent-based issuance is unaffected. */
	txn = tu_txn(f->st, STORE_TXN_WRITE);
	struct store_revocation rev = {.reason = 4};
	assert_int_equal(store_cert_revoke(txn, f->ca, serial, &rev, NULL), P11CA_OK);
	uint8_t issued[STORE_SERIAL_LEN];
	tu_issue(txn, f->ca, 99, issued);
	assert_int_equal(store_cert_get(txn, f->ca, issued, &f->cert, NULL), P11CA_OK);
	assert_false(f->cert.imported);
	assert_int_equal(f->cert.n_watchers, 0);
	tu_commit(&txn);
}

static void test_import_full_length_serial(void **state)
{
	struct fixture *f = *state;
	uint8_t serial[STORE_SERIAL_LEN], sha[STORE_SHA256_LEN], c21[21];
	memset(serial, 0x11, sizeof(serial));
	serial[0] = 0x7f;
	size_t len = tu_cert_make(serial, 4, f->der, sizeof(f->der), sha);
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	assert_int_equal(
		store_cert_import(txn, f->ca, serial, f->der, len, 5, NULL, NULL, NULL, 0, NULL),
		P11CA_OK);
	/* 21 content octets (a 0x00 before a high bit): over RFC 5280's 20. */
	c21[0] = 0;
	memset(c21 + 1, 0x80, 20);
	len = tu_cert_make_int(c21, sizeof(c21), 4, f->der, sizeof(f->der), sha);
	struct p11ca_errmsg em = {0};
	assert_int_equal(
		store_cert_import(txn, f->ca, c21 + 1, f->der, len, 5, NULL, NULL, NULL, 0, &em),
		P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "20"));
	tu_audit(txn, "import");
	tu_commit(&txn);
}

static enum p11ca_err import_int(struct fixture *f, struct store_txn *txn, const uint8_t *c,
				 size_t n, const uint8_t serial[STORE_SERIAL_LEN],
				 struct p11ca_errmsg *em)
{
	uint8_t sha[STORE_SHA256_LEN];
	size_t len = tu_cert_make_int(c, n, 4, f->der, sizeof(f->der), sha);
	return store_cert_import(txn, f->ca, serial, f->der, len, 5, "p", "r", NULL, 0, em);
}

static void test_import_refusals(void **state)
{
	struct fixture *f = *state;
	uint8_t serial[STORE_SERIAL_LEN], sha[STORE_SHA256_LEN], intent[STORE_SERIAL_LEN];
	uint8_t orphan[STORE_SERIAL_LEN], issued[STORE_SERIAL_LEN];
	static const uint8_t ok[] = {0x12, 0x34};
	struct p11ca_errmsg em = {0};
	pad_serial(ok, sizeof(ok), serial);

	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	tu_issue(txn, f->ca, 10, issued);
	tu_intent(txn, f->ca, orphan);
	assert_int_equal(store_intent_abandon(txn, orphan, NULL), P11CA_OK);
	tu_intent(txn, f->ca, intent);
	tu_commit(&txn);

	txn = tu_txn(f->st, STORE_TXN_WRITE);
	/* Serial: not the padded one, negative, not minimal, zero. */
	static const uint8_t other[] = {0x12, 0x35}, neg[] = {0x92}, nonmin[] = {0x00, 0x12},
			     zero[] = {0x00};
	assert_int_equal(import_int(f, txn, other, 2, serial, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "another serial"));
	uint8_t s2[STORE_SERIAL_LEN];
	pad_serial(neg, 1, s2);
	assert_int_equal(import_int(f, txn, neg, 1, s2, NULL), P11CA_E_INVALID_ARG);
	pad_serial(nonmin, 2, s2);
	assert_int_equal(import_int(f, txn, nonmin, 2, s2, NULL), P11CA_E_INVALID_ARG);
	pad_serial(zero, 1, s2);
	assert_int_equal(import_int(f, txn, zero, 1, s2, NULL), P11CA_E_INVALID_ARG);
	/* Same value, but the TBS is not one DER certificate. */
	size_t len = tu_cert_make_int(ok, 2, 4, f->der, sizeof(f->der), sha);
	assert_int_equal(store_cert_import(txn, f->ca, serial, f->der, len - 1, 5, NULL, NULL, NULL,
					   0, NULL),
			 P11CA_E_INVALID_ARG);
	f->der[len] = 0;
	assert_int_equal(store_cert_import(txn, f->ca, serial, f->der, len + 1, 5, NULL, NULL, NULL,
					   0, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(
		store_cert_import(txn, f->ca, serial, f->der, 0, 5, NULL, NULL, NULL, 0, NULL),
		P11CA_E_INVALID_ARG);
	assert_int_equal(store_cert_import(txn, f->ca, serial, f->der, STORE_CERT_DER_MAX + 1, 5,
					   NULL, NULL, NULL, 0, NULL),
			 P11CA_E_INVALID_ARG);
	/* No such CA; CA 0; NULLs. */
	assert_int_equal(
		store_cert_import(txn, 42, serial, f->der, len, 5, NULL, NULL, NULL, 0, NULL),
		P11CA_E_STORAGE_NOT_FOUND);
	assert_int_equal(
		store_cert_import(txn, 0, serial, f->der, len, 5, NULL, NULL, NULL, 0, NULL),
		P11CA_E_INVALID_ARG);
	assert_int_equal(
		store_cert_import(txn, f->ca, NULL, f->der, len, 5, NULL, NULL, NULL, 0, NULL),
		P11CA_E_INVALID_ARG);
	/* Watchers and strings as everywhere else. */
	struct store_watcher dup[2] = {watcher("x@y", 0), watcher("X@Y", 0)};
	assert_int_equal(
		store_cert_import(txn, f->ca, serial, f->der, len, 5, NULL, NULL, dup, 2, NULL),
		P11CA_E_INVALID_ARG);
	char longp[STORE_PROFILE_MAX + 2];
	memset(longp, 'p', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(
		store_cert_import(txn, f->ca, serial, f->der, len, 5, longp, NULL, NULL, 0, NULL),
		P11CA_E_INVALID_ARG);
	/* A serial known in any state: issued, intent, orphan. */
	const uint8_t *known[] = {issued, intent, orphan};
	for (int i = 0; i < 3; i++) {
		p11ca_errmsg_clear(&em);
		assert_int_equal(import_int(f, txn, known[i], STORE_SERIAL_LEN, known[i], &em),
				 P11CA_E_STORAGE_EXISTS);
		assert_non_null(strstr(em.text, "already known"));
	}
	/* Nothing was written by any refusal: the transaction commits without an audit. */
	tu_commit(&txn);

	/* Importing twice. */
	txn = tu_txn(f->st, STORE_TXN_WRITE);
	assert_int_equal(import_int(f, txn, ok, 2, serial, NULL), P11CA_OK);
	assert_int_equal(import_int(f, txn, ok, 2, serial, NULL), P11CA_E_STORAGE_EXISTS);
	tu_audit(txn, "import");
	tu_commit(&txn);
	/* An imported serial is never drawn into an intent either. */
	txn = tu_txn(f->st, STORE_TXN_WRITE);
	assert_int_equal(store_intent_put(txn, serial, f->ca, sha, NULL, NULL),
			 P11CA_E_INVALID_ARG); /* not of store_serial_alloc's form */
	store_txn_abort(&txn);
	txn = tu_txn(f->st, STORE_TXN_READ);
	assert_int_equal(import_int(f, txn, ok, 2, serial, NULL), P11CA_E_INVALID_ARG);
	store_txn_abort(&txn);
}

static void test_watchers_set(void **state)
{
	struct fixture *f = *state;
	uint8_t serial[STORE_SERIAL_LEN], unknown[STORE_SERIAL_LEN] = {0x01};
	struct store_watcher w[STORE_WATCHERS_MAX + 1];
	struct p11ca_errmsg em = {0};
	for (int i = 0; i <= STORE_WATCHERS_MAX; i++) {
		char e[32];
		snprintf(e, sizeof(e), "w%d@example.org", i);
		w[i] = watcher(e, (uint32_t)i);
	}
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	tu_issue(txn, f->ca, 10, serial);
	assert_int_equal(store_cert_watchers_set(txn, f->ca, serial, w, STORE_WATCHERS_MAX, &em),
			 P11CA_OK);
	tu_audit(txn, "watch");
	tu_commit(&txn);

	txn = tu_txn(f->st, STORE_TXN_READ);
	assert_int_equal(store_cert_get(txn, f->ca, serial, &f->cert, NULL), P11CA_OK);
	assert_int_equal(f->cert.n_watchers, STORE_WATCHERS_MAX);
	for (int i = 0; i < STORE_WATCHERS_MAX; i++) {
		assert_string_equal(f->cert.watchers[i].email, w[i].email);
		assert_int_equal(f->cert.watchers[i].notified_days, i);
	}
	assert_int_equal(store_cert_watchers_set(txn, f->ca, serial, w, 1, NULL),
			 P11CA_E_INVALID_ARG); /* read transaction */
	store_txn_abort(&txn);

	txn = tu_txn(f->st, STORE_TXN_WRITE);
	/* Refusals: too many, duplicates ignoring case, empty, too long, control chars. */
	assert_int_equal(
		store_cert_watchers_set(txn, f->ca, serial, w, STORE_WATCHERS_MAX + 1, &em),
		P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "at most"));
	struct store_watcher bad[2] = {watcher("Same@Example.org", 0),
				       watcher("same@example.ORG", 0)};
	assert_int_equal(store_cert_watchers_set(txn, f->ca, serial, bad, 2, NULL),
			 P11CA_E_INVALID_ARG);
	bad[0] = watcher("", 0);
	assert_int_equal(store_cert_watchers_set(txn, f->ca, serial, bad, 1, NULL),
			 P11CA_E_INVALID_ARG);
	memset(bad[0].email, 'a', sizeof(bad[0].email)); /* no terminator */
	assert_int_equal(store_cert_watchers_set(txn, f->ca, serial, bad, 1, NULL),
			 P11CA_E_INVALID_ARG);
	bad[0] = watcher("a@b\r\nBcc: c@d", 0);
	assert_int_equal(store_cert_watchers_set(txn, f->ca, serial, bad, 1, NULL),
			 P11CA_E_INVALID_ARG);
	bad[0] = watcher("-X/var/www/html/s@evil.php", 0); /* an option to sendmail */
	p11ca_errmsg_clear(&em);
	assert_int_equal(store_cert_watchers_set(txn, f->ca, serial, bad, 1, &em),
			 P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "starts with '-'"));
	assert_int_equal(store_cert_watchers_set(txn, f->ca, serial, NULL, 1, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(store_cert_watchers_set(txn, f->ca, NULL, w, 1, NULL),
			 P11CA_E_INVALID_ARG);
	p11ca_errmsg_clear(&em);
	assert_int_equal(store_cert_watchers_set(txn, f->ca, unknown, w, 1, &em),
			 P11CA_E_STORAGE_NOT_FOUND);
	assert_int_equal(store_cert_watchers_set(txn, f->ca + 1, serial, w, 1, NULL),
			 P11CA_E_STORAGE_NOT_FOUND);
	tu_commit(&txn); /* the refusals changed nothing */

	txn = tu_txn(f->st, STORE_TXN_WRITE);
	assert_int_equal(store_cert_get(txn, f->ca, serial, &f->cert, NULL), P11CA_OK);
	assert_int_equal(f->cert.n_watchers, STORE_WATCHERS_MAX);
	/* Clearing them; the rest of the record stays. */
	assert_int_equal(store_cert_watchers_set(txn, f->ca, serial, NULL, 0, NULL), P11CA_OK);
	assert_int_equal(store_cert_get(txn, f->ca, serial, &f->cert, NULL), P11CA_OK);
	assert_int_equal(f->cert.n_watchers, 0);
	assert_int_equal(f->cert.not_after, 10);
	assert_string_equal(f->cert.profile, "server");
	tu_audit(txn, "unwatch");
	tu_commit(&txn);
}

static void test_ca_settings(void **state)
{
	struct fixture *f = *state;
	struct store_ca *ca = calloc(1, sizeof(*ca));
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	assert_int_equal(store_ca_get(txn, f->ca, ca, NULL), P11CA_OK);
	assert_int_equal(ca->settings_len, 0);
	for (size_t i = 0; i < STORE_CA_SETTINGS_MAX; i++)
		ca->settings[i] = (uint8_t)(i * 7);
	ca->settings_len = STORE_CA_SETTINGS_MAX;
	assert_int_equal(store_ca_put(txn, ca, NULL), P11CA_OK);
	tu_audit(txn, "settings");
	tu_commit(&txn);

	struct store_ca *back = calloc(1, sizeof(*back));
	txn = tu_txn(f->st, STORE_TXN_WRITE);
	assert_int_equal(store_ca_get(txn, f->ca, back, NULL), P11CA_OK);
	assert_int_equal(back->settings_len, STORE_CA_SETTINGS_MAX);
	assert_memory_equal(back->settings, ca->settings, STORE_CA_SETTINGS_MAX);
	assert_int_equal(store_ca_get_by_name(txn, "root", back, NULL), P11CA_OK);
	assert_int_equal(back->settings_len, STORE_CA_SETTINGS_MAX);
	/* Over the bound: refused, not truncated. */
	ca->settings_len = STORE_CA_SETTINGS_MAX + 1;
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_ca_put(txn, ca, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "settings"));
	/* Shrinking works and is what is read back. */
	ca->settings_len = 3;
	assert_int_equal(store_ca_put(txn, ca, NULL), P11CA_OK);
	assert_int_equal(store_ca_get(txn, f->ca, back, NULL), P11CA_OK);
	assert_int_equal(back->settings_len, 3);
	tu_audit(txn, "settings");
	tu_commit(&txn);
	free(ca);
	free(back);
}

/* ---- records from before issue 4, encoded field by field as the old binary did ----- */

struct pbw {
	uint8_t b[4096];
	size_t n;
};

static void pb_varint(struct pbw *w, uint64_t v)
{
	do {
		w->b[w->n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v != 0);
}

static void pb_uint(struct pbw *w, unsigned field, uint64_t v)
{
	pb_varint(w, field << 3);
	pb_varint(w, v);
}

static void pb_bytes(struct pbw *w, unsigned field, const void *p, size_t len)
{
	pb_varint(w, field << 3 | 2);
	pb_varint(w, len);
	memcpy(w->b + w->n, p, len);
	w->n += len;
}

static void test_old_records_read(void **state)
{
	struct fixture *f = *state;
	uint8_t serial[STORE_SERIAL_LEN], key[4 + STORE_SERIAL_LEN], sha[STORE_SHA256_LEN];
	memset(serial, 0x22, sizeof(serial));
	size_t der_len = tu_cert_make(serial, 8, f->der, sizeof(f->der), sha);
	store_close(&f->st);

	/* CertRecord fields 1-8 (no revocation, watchers or imported). */
	struct pbw *w = calloc(1, sizeof(*w));
	pb_uint(w, 1, 1);
	pb_uint(w, 2, f->ca);
	pb_bytes(w, 3, serial, sizeof(serial));
	pb_bytes(w, 4, f->der, der_len);
	pb_uint(w, 5, 777);
	pb_bytes(w, 6, "client", 6);
	pb_bytes(w, 7, "old", 3);
	pb_uint(w, 8, 555);
	key[0] = key[1] = key[2] = 0;
	key[3] = (uint8_t)f->ca;
	memcpy(key + 4, serial, sizeof(serial));
	tu_raw_put(f->dir, "certs", key, sizeof(key), w->b, w->n);

	/* CaRecord fields 1-11 (no settings). */
	memset(w, 0, sizeof(*w));
	pb_uint(w, 1, 1);
	pb_uint(w, 2, f->ca);
	pb_bytes(w, 3, "legacy", 6);
	pb_bytes(w, 4, "0\x03\x31\x01\x00", 5);
	pb_bytes(w, 6, "pkcs11", 6);
	pb_bytes(w, 7, "pkcs11:object=legacy", 20);
	pb_uint(w, 9, STORE_CA_ACTIVE);
	pb_uint(w, 10, 100);
	pb_uint(w, 11, 3);
	tu_raw_put(f->dir, "cas", key, 4, w->b, w->n);
	free(w);

	f->st = tu_open(f->dir, 0, 0);
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_READ);
	assert_int_equal(store_cert_get(txn, f->ca, serial, &f->cert, NULL), P11CA_OK);
	assert_int_equal(f->cert.not_after, 777);
	assert_string_equal(f->cert.profile, "client");
	assert_int_equal(f->cert.n_watchers, 0);
	assert_false(f->cert.imported);
	assert_false(f->cert.revoked);
	struct store_ca *ca = calloc(1, sizeof(*ca));
	assert_int_equal(store_ca_get(txn, f->ca, ca, NULL), P11CA_OK);
	assert_string_equal(ca->name, "legacy");
	assert_int_equal(ca->crl_number, 3);
	assert_int_equal(ca->settings_len, 0);
	store_txn_abort(&txn);
	free(ca);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_import_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_import_full_length_serial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_import_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watchers_set, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca_settings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_records_read, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
