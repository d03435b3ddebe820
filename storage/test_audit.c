/*
 * storage/ audit chain tests: append, list, head, and verification catching edited,
 * deleted, reordered and truncated records written behind storage/'s back with mdb_put.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/store_internal.h"
#include "storage/test_util.h"

#define RECORDS 6 /* seq 1 is "storage.create", 2..6 appended by the fixture */

struct fixture {
	char dir[PATH_MAX];
	struct store *st;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	tu_tmpdir(f->dir, "audit");
	f->st = tu_open(f->dir, 0, 0);
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	for (int i = 2; i <= RECORDS; i++) {
		char details[32];
		uint64_t seq = 0;
		snprintf(details, sizeof(details), "record %d", i);
		assert_int_equal(store_audit_append(txn, "cert.issue", "operator:ab12", "CN=x",
						    details, &seq, NULL),
				 P11CA_OK);
		assert_int_equal(seq, (uint64_t)i);
	}
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

static enum p11ca_err verify(struct fixture *f, uint64_t *bad, struct p11ca_errmsg *em)
{
	if (f->st == NULL)
		f->st = tu_open(f->dir, 0, 0);
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_READ);
	enum p11ca_err err = store_audit_verify(txn, bad, em);
	store_txn_abort(&txn);
	return err;
}

static void seq_key(uint8_t key[8], uint64_t seq)
{
	store_be64_put(key, seq);
}

struct listed {
	uint64_t seqs[16];
	int n;
	uint8_t prev[STORE_SHA256_LEN];
};

static int list_add(void *arg, const struct store_audit_entry *e)
{
	struct listed *l = arg;
	if (l->n > 0)
		assert_memory_equal(e->prev_hash, l->prev, STORE_SHA256_LEN); /* linked */
	memcpy(l->prev, e->hash, STORE_SHA256_LEN);
	l->seqs[l->n++] = e->seq;
	if (e->seq >= 2) {
		assert_string_equal(e->event, "cert.issue");
		assert_string_equal(e->actor, "operator:ab12");
		assert_string_equal(e->subject, "CN=x");
		assert_true(e->time > 0);
	}
	return 0;
}

static void test_append_list_verify(void **state)
{
	struct fixture *f = *state;
	uint64_t bad = 99;
	assert_int_equal(verify(f, &bad, NULL), P11CA_OK);
	assert_int_equal(bad, 0);

	struct store_txn *txn = tu_txn(f->st, STORE_TXN_READ);
	struct listed l = {0};
	assert_int_equal(store_audit_list(txn, 1, list_add, &l, NULL), P11CA_OK);
	assert_int_equal(l.n, RECORDS);
	uint64_t seq = 0;
	uint8_t hash[STORE_SHA256_LEN];
	assert_int_equal(store_audit_head(txn, &seq, hash, NULL), P11CA_OK);
	assert_int_equal(seq, RECORDS);
	assert_memory_equal(hash, l.prev, STORE_SHA256_LEN);
	l = (struct listed){0};
	assert_int_equal(store_audit_list(txn, 4, list_add, &l, NULL), P11CA_OK);
	assert_int_equal(l.n, 3);
	assert_int_equal(l.seqs[0], 4);
	assert_int_equal(store_audit_list(txn, 1, NULL, NULL, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(store_audit_head(txn, NULL, hash, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(store_audit_verify(txn, NULL, NULL), P11CA_E_INVALID_ARG);
	store_txn_abort(&txn);
}

static void test_append_refusals(void **state)
{
	struct fixture *f = *state;
	char big[STORE_AUDIT_DETAILS_MAX + 2];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	assert_int_equal(store_audit_append(txn, NULL, "a", "s", "d", NULL, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(store_audit_append(txn, "", "a", "s", "d", NULL, NULL),
			 P11CA_E_INVALID_ARG);
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_audit_append(txn, "e", "a", "s", big, NULL, &em),
			 P11CA_E_INVALID_ARG); /* refused, never truncated */
	assert_non_null(strstr(em.text, "details"));
	big[STORE_AUDIT_DETAILS_MAX] = '\0'; /* exactly the maximum fits */
	assert_int_equal(store_audit_append(txn, "e", NULL, NULL, big, NULL, NULL), P11CA_OK);
	assert_int_equal(store_audit_append(NULL, "e", NULL, NULL, NULL, NULL, NULL),
			 P11CA_E_INVALID_ARG);
	tu_commit(&txn);
	uint64_t bad = 0;
	assert_int_equal(verify(f, &bad, NULL), P11CA_OK);

	/* A record already sitting past the head is never overwritten. */
	store_close(&f->st);
	uint8_t key[8];
	seq_key(key, RECORDS + 2);
	tu_raw_put(f->dir, "audit", key, 8, "\x08\x01", 2);
	f->st = tu_open(f->dir, 0, 0);
	txn = tu_txn(f->st, STORE_TXN_WRITE);
	assert_int_equal(store_audit_append(txn, "e", NULL, NULL, NULL, NULL, NULL),
			 P11CA_E_STORAGE_CORRUPT);
	store_txn_abort(&txn);
	assert_int_equal(verify(f, &bad, NULL), P11CA_E_STORAGE_CORRUPT);
	assert_int_equal(bad, RECORDS + 2);
}

/* Flip one byte inside record 3's details: still decodes, no longer hashes. */
static void test_verify_catches_edit(void **state)
{
	struct fixture *f = *state;
	uint8_t key[8], val[4096];
	store_close(&f->st);
	seq_key(key, 3);
	long len = tu_raw_get(f->dir, "audit", key, 8, val, sizeof(val));
	assert_true(len > 0);
	uint8_t *p = memmem(val, (size_t)len, "record 3", 8);
	assert_non_null(p);
	p[7] = '9';
	tu_raw_put(f->dir, "audit", key, 8, val, (size_t)len);

	uint64_t bad = 0;
	struct p11ca_errmsg em = {0};
	assert_int_equal(verify(f, &bad, &em), P11CA_E_STORAGE_CORRUPT);
	assert_int_equal(bad, 3);
	assert_non_null(strstr(em.text, "record 3"));
	assert_non_null(strstr(em.text, "hash mismatch"));
}

static void test_verify_catches_garbage(void **state)
{
	struct fixture *f = *state;
	uint8_t key[8];
	store_close(&f->st);
	seq_key(key, 2);
	tu_raw_put(f->dir, "audit", key, 8, "\xff\xff\xff", 3);
	uint64_t bad = 0;
	assert_int_equal(verify(f, &bad, NULL), P11CA_E_STORAGE_CORRUPT);
	assert_int_equal(bad, 2);
	/* Listing reports the broken record instead of crashing on it. */
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_READ);
	struct listed l = {0};
	assert_int_equal(store_audit_list(txn, 1, list_add, &l, NULL), P11CA_E_STORAGE_CORRUPT);
	store_txn_abort(&txn);
}

static void test_verify_catches_deletion(void **state)
{
	struct fixture *f = *state;
	uint8_t key[8];
	store_close(&f->st);
	seq_key(key, 4);
	tu_raw_del(f->dir, "audit", key, 8);
	uint64_t bad = 0;
	struct p11ca_errmsg em = {0};
	assert_int_equal(verify(f, &bad, &em), P11CA_E_STORAGE_CORRUPT);
	assert_int_equal(bad, 4);
	assert_non_null(strstr(em.text, "missing"));
}

static void test_verify_catches_first_deleted(void **state)
{
	struct fixture *f = *state;
	uint8_t key[8];
	store_close(&f->st);
	seq_key(key, 1);
	tu_raw_del(f->dir, "audit", key, 8);
	uint64_t bad = 0;
	assert_int_equal(verify(f, &bad, NULL), P11CA_E_STORAGE_CORRUPT);
	assert_int_equal(bad, 1);
}

static void test_verify_catches_truncated_tail(void **state)
{
	struct fixture *f = *state;
	uint8_t key[8];
	store_close(&f->st);
	seq_key(key, RECORDS);
	tu_raw_del(f->dir, "audit", key, 8);
	uint64_t bad = 0;
	struct p11ca_errmsg em = {0};
	assert_int_equal(verify(f, &bad, &em), P11CA_E_STORAGE_CORRUPT);
	assert_int_equal(bad, RECORDS);
	assert_non_null(strstr(em.text, "tail"));
}

/* Swap the values of records 2 and 3: each is intact, but in the wrong place. */
static void test_verify_catches_swap(void **state)
{
	struct fixture *f = *state;
	uint8_t k2[8], k3[8], v2[4096], v3[4096];
	store_close(&f->st);
	seq_key(k2, 2);
	seq_key(k3, 3);
	long l2 = tu_raw_get(f->dir, "audit", k2, 8, v2, sizeof(v2));
	long l3 = tu_raw_get(f->dir, "audit", k3, 8, v3, sizeof(v3));
	assert_true(l2 > 0 && l3 > 0);
	tu_raw_put(f->dir, "audit", k2, 8, v3, (size_t)l3);
	tu_raw_put(f->dir, "audit", k3, 8, v2, (size_t)l2);
	uint64_t bad = 0;
	assert_int_equal(verify(f, &bad, NULL), P11CA_E_STORAGE_CORRUPT);
	assert_int_equal(bad, 2);
}

/* The head moved back: records after it are flagged. */
static void test_verify_catches_stale_head(void **state)
{
	struct fixture *f = *state;
	uint8_t val[256];
	store_close(&f->st);
	long len = tu_raw_get(f->dir, "meta", "audit_head", 10, val, sizeof(val));
	assert_true(len > 0);
	/* AuditHead: format (08 01), seq (10 06) — make it 5. */
	assert_int_equal(val[2], 0x10);
	assert_int_equal(val[3], RECORDS);
	val[3] = RECORDS - 1;
	tu_raw_put(f->dir, "meta", "audit_head", 10, val, (size_t)len);
	uint64_t bad = 0;
	assert_int_equal(verify(f, &bad, NULL), P11CA_E_STORAGE_CORRUPT);
	assert_int_equal(bad, RECORDS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_append_list_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_catches_edit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_catches_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_catches_deletion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_catches_first_deleted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_catches_truncated_tail, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_verify_catches_swap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_catches_stale_head, setup, teardown),
	};
	return cmocka_run_group_tests_name("storage_audit", tests, NULL, NULL);
}
