/*
 * storage/ record tests: CAs, serials and intents, orphans, certificates and paging,
 * revocation, expiry scans, CRLs, and corrupt records.
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

struct fixture {
	char dir[PATH_MAX];
	struct store *st;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	tu_tmpdir(f->dir, "records");
	f->st = tu_open(f->dir, 0, 0);
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

static int collect_names(void *arg, const struct store_ca *ca)
{
	char *names = arg;
	strcat(names, ca->name);
	strcat(names, ",");
	return 0;
}

static int stop_at_first(void *arg, const struct store_ca *ca)
{
	(void)ca;
	(*(int *)arg)++;
	return 1;
}

static void test_ca_put_get_list(void **state)
{
	struct fixture *f = *state;
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	struct store_ca *ca = calloc(1, sizeof(*ca));
	struct p11ca_errmsg em = {0};
	uint32_t root = tu_ca_add(txn, "root", 0);
	uint32_t sub = tu_ca_add(txn, "sub", root);
	assert_int_equal(root, 1);
	assert_int_equal(sub, 2);

	assert_int_equal(store_ca_get(txn, sub, ca, NULL), P11CA_OK);
	assert_string_equal(ca->name, "sub");
	assert_int_equal(ca->parent_id, root);
	assert_string_equal(ca->key_uri, "pkcs11:token=t;object=sub");
	assert_true(ca->created > 0);
	int64_t created = ca->created;

	/* Update: certificate stored, state changed; created and the CRL counter stay. */
	memset(ca->cert_der, 0x30, 100);
	ca->cert_der_len = 100;
	ca->state = STORE_CA_DISABLED;
	ca->created = 5;
	ca->crl_number = 77;
	assert_int_equal(store_ca_put(txn, ca, NULL), P11CA_OK);
	memset(ca, 0, sizeof(*ca));
	assert_int_equal(store_ca_get_by_name(txn, "sub", ca, NULL), P11CA_OK);
	assert_int_equal(ca->id, sub);
	assert_int_equal(ca->cert_der_len, 100);
	assert_int_equal(ca->state, STORE_CA_DISABLED);
	assert_int_equal(ca->created, created);
	assert_int_equal(ca->crl_number, 0);

	/* Refusals. */
	ca->id = 0;
	assert_int_equal(store_ca_put(txn, ca, &em), P11CA_E_STORAGE_EXISTS); /* name taken */
	assert_non_null(strstr(em.text, "sub"));
	strcpy(ca->name, "other");
	ca->parent_id = 99;
	assert_int_equal(store_ca_put(txn, ca, NULL), P11CA_E_STORAGE_NOT_FOUND);
	ca->parent_id = 0;
	ca->id = 42;
	assert_int_equal(store_ca_put(txn, ca, NULL), P11CA_E_STORAGE_NOT_FOUND);
	ca->id = sub;
	ca->parent_id = sub;
	assert_int_equal(store_ca_put(txn, ca, NULL), P11CA_E_INVALID_ARG);
	ca->parent_id = 0;
	ca->id = 0;
	ca->name[0] = '\0';
	assert_int_equal(store_ca_put(txn, ca, NULL), P11CA_E_INVALID_ARG);
	strcpy(ca->name, "x");
	ca->subject_der_len = 0;
	assert_int_equal(store_ca_put(txn, ca, NULL), P11CA_E_INVALID_ARG);
	ca->subject_der_len = 3;
	ca->state = (enum store_ca_state)9;
	assert_int_equal(store_ca_put(txn, ca, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(store_ca_put(txn, NULL, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(store_ca_get(txn, 99, ca, NULL), P11CA_E_STORAGE_NOT_FOUND);
	assert_int_equal(store_ca_get(txn, 1, NULL, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(store_ca_get_by_name(txn, "none", ca, NULL), P11CA_E_STORAGE_NOT_FOUND);
	assert_int_equal(store_ca_get_by_name(txn, NULL, ca, NULL), P11CA_E_INVALID_ARG);

	char names[256] = "";
	assert_int_equal(store_ca_list(txn, collect_names, names, NULL), P11CA_OK);
	assert_string_equal(names, "root,sub,");
	int calls = 0;
	assert_int_equal(store_ca_list(txn, stop_at_first, &calls, NULL), P11CA_OK);
	assert_int_equal(calls, 1);
	assert_int_equal(store_ca_list(txn, NULL, NULL, NULL), P11CA_E_INVALID_ARG);
	tu_audit(txn, "cas");
	tu_commit(&txn);

	/* Writes need a write transaction. */
	txn = tu_txn(f->st, STORE_TXN_READ);
	ca->id = 0;
	strcpy(ca->name, "ro");
	ca->state = STORE_CA_ACTIVE;
	assert_int_equal(store_ca_put(txn, ca, NULL), P11CA_E_INVALID_ARG);
	store_txn_abort(&txn);
	free(ca);
}

static int zero_rng_calls;

/* First a zero first byte, then a serial already used, then a fresh one. */
static int scripted_rng(void *arg, uint8_t *buf, size_t len)
{
	const uint8_t *used = arg;
	zero_rng_calls++;
	if (zero_rng_calls == 1)
		memset(buf, 0x00, len); /* also 0x80 would be masked to 0: redrawn */
	else if (zero_rng_calls == 2)
		memcpy(buf, used, len);
	else
		memset(buf, 0xff, len); /* masked to 7f ff … */
	return 0;
}

static int repeat_rng(void *arg, uint8_t *buf, size_t len)
{
	memcpy(buf, arg, len);
	return 0;
}

static int failing_rng(void *arg, uint8_t *buf, size_t len)
{
	(void)arg;
	(void)buf;
	(void)len;
	return -1;
}

static int cmp_serial(const void *a, const void *b)
{
	return memcmp(a, b, STORE_SERIAL_LEN);
}

static void test_serial_properties(void **state)
{
	struct fixture *f = *state;
	enum { N = 4000 };
	uint8_t(*s)[STORE_SERIAL_LEN] = calloc(N, STORE_SERIAL_LEN);
	uint8_t varies[STORE_SERIAL_LEN] = {0};
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	for (int i = 0; i < N; i++) {
		assert_int_equal(store_serial_alloc(txn, s[i], NULL), P11CA_OK);
		assert_true(s[i][0] >= 0x01 && s[i][0] <= 0x7f); /* positive, < 2^159, 20 bytes */
		for (int j = 0; j < STORE_SERIAL_LEN; j++)
			varies[j] |= s[i][j] ^ s[0][j];
	}
	int bits = 0;
	for (int j = 0; j < STORE_SERIAL_LEN; j++)
		bits += __builtin_popcount(varies[j]);
	assert_true(bits >= 64);
	assert_int_equal(bits, 159); /* every bit but the sign bit moves over 4000 draws */
	qsort(s, N, STORE_SERIAL_LEN, cmp_serial);
	for (int i = 1; i < N; i++)
		assert_true(memcmp(s[i - 1], s[i], STORE_SERIAL_LEN) != 0);
	free(s);

	assert_int_equal(store_serial_alloc(txn, NULL, NULL), P11CA_E_INVALID_ARG);
	store_txn_abort(&txn);
	uint8_t serial[STORE_SERIAL_LEN];
	txn = tu_txn(f->st, STORE_TXN_READ);
	assert_int_equal(store_serial_alloc(txn, serial, NULL), P11CA_E_INVALID_ARG);
	store_txn_abort(&txn);
}

static void test_serial_redraws(void **state)
{
	struct fixture *f = *state;
	uint8_t used[STORE_SERIAL_LEN], serial[STORE_SERIAL_LEN], expect[STORE_SERIAL_LEN];
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	uint32_t ca = tu_ca_add(txn, "root", 0);
	tu_intent(txn, ca, used);

	zero_rng_calls = 0;
	assert_int_equal(store_serial_alloc_from(txn, scripted_rng, used, serial, NULL), P11CA_OK);
	assert_int_equal(zero_rng_calls, 3);
	memset(expect, 0xff, sizeof(expect));
	expect[0] = 0x7f;
	assert_memory_equal(serial, expect, sizeof(expect));

	struct p11ca_errmsg em = {0};
	assert_int_equal(store_serial_alloc_from(txn, repeat_rng, used, serial, &em),
			 P11CA_E_INTERNAL);
	assert_non_null(strstr(em.text, "random generator is broken"));
	assert_int_equal(store_serial_alloc_from(txn, failing_rng, NULL, serial, NULL),
			 P11CA_E_INTERNAL);
	tu_audit(txn, "x");
	tu_commit(&txn);
}

static void test_intent_then_cert(void **state)
{
	struct fixture *f = *state;
	uint8_t serial[STORE_SERIAL_LEN], der[1024], md[STORE_SHA256_LEN], bad_md[32] = {0};
	struct store_serial_info info;
	/* calloc: the two are compared whole, unused tails included. */
	struct store_cert *cert = calloc(1, sizeof(*cert)), *by_serial = calloc(1, sizeof(*cert));
	struct p11ca_errmsg em = {0};
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	uint32_t ca = tu_ca_add(txn, "root", 0), other = tu_ca_add(txn, "other", 0);
	assert_int_equal(store_serial_alloc(txn, serial, NULL), P11CA_OK);
	size_t len = tu_cert_make(serial, 40, der, sizeof(der), md);

	assert_int_equal(store_cert_put(txn, ca, serial, der, len, 10, "p", NULL),
			 P11CA_E_STORAGE_NOT_FOUND); /* no intent yet */
	assert_int_equal(store_intent_put(txn, serial, 77, md, "r", NULL),
			 P11CA_E_STORAGE_NOT_FOUND); /* no such CA */
	char long_name[STORE_REQUESTER_MAX + 2];
	memset(long_name, 'r', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_int_equal(store_intent_put(txn, serial, ca, md, long_name, NULL),
			 P11CA_E_INVALID_ARG);
	uint8_t odd[STORE_SERIAL_LEN] = {0x80};
	assert_int_equal(store_intent_put(txn, odd, ca, md, "r", NULL), P11CA_E_INVALID_ARG);
	odd[0] = 0;
	assert_int_equal(store_intent_put(txn, odd, ca, md, "r", NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(store_intent_put(txn, serial, ca, NULL, "r", NULL), P11CA_E_INVALID_ARG);

	assert_int_equal(store_intent_put(txn, serial, ca, md, "alice", NULL), P11CA_OK);
	assert_int_equal(store_intent_put(txn, serial, other, md, "alice", NULL),
			 P11CA_E_STORAGE_EXISTS);
	assert_int_equal(store_serial_get(txn, serial, &info, NULL), P11CA_OK);
	assert_int_equal(info.state, STORE_SERIAL_INTENT);
	assert_int_equal(info.ca_id, ca);
	assert_memory_equal(info.tbs_sha256, md, sizeof(md));
	assert_int_equal(store_cert_get_by_serial(txn, serial, cert, &em),
			 P11CA_E_STORAGE_NOT_FOUND);
	assert_non_null(strstr(em.text, "in flight"));

	/* The certificate must be the one intended. */
	assert_int_equal(store_cert_put(txn, other, serial, der, len, 10, "p", NULL),
			 P11CA_E_INVALID_ARG);
	uint8_t wrong[STORE_SERIAL_LEN], der2[1024];
	memcpy(wrong, serial, sizeof(wrong));
	wrong[19] ^= 1;
	size_t len2 = tu_cert_make(wrong, 40, der2, sizeof(der2), bad_md);
	assert_int_equal(store_cert_put(txn, ca, serial, der2, len2, 10, "p", NULL),
			 P11CA_E_INVALID_ARG); /* another serial inside */
	len2 = tu_cert_make(serial, 41, der2, sizeof(der2), bad_md);
	p11ca_errmsg_clear(&em);
	assert_int_equal(store_cert_put(txn, ca, serial, der2, len2, 10, "p", &em),
			 P11CA_E_INVALID_ARG); /* another TBS */
	assert_non_null(strstr(em.text, "intent"));
	memcpy(der2, der, len);
	der2[len] = 0;
	assert_int_equal(store_cert_put(txn, ca, serial, der2, len + 1, 10, "p", NULL),
			 P11CA_E_INVALID_ARG); /* trailing byte */
	assert_int_equal(store_cert_put(txn, ca, serial, der, len - 1, 10, "p", NULL),
			 P11CA_E_INVALID_ARG); /* truncated */
	assert_int_equal(store_cert_put(txn, ca, serial, der, 0, 10, "p", NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(
		store_cert_put(txn, ca, serial, der, STORE_CERT_DER_MAX + 1, 10, "p", NULL),
		P11CA_E_INVALID_ARG);

	assert_int_equal(store_cert_put(txn, ca, serial, der, len, 1700000000, "server", NULL),
			 P11CA_OK);
	assert_int_equal(store_cert_put(txn, ca, serial, der, len, 1700000000, "server", NULL),
			 P11CA_E_STORAGE_EXISTS);
	tu_audit(txn, "issue");
	tu_commit(&txn);

	txn = tu_txn(f->st, STORE_TXN_READ);
	assert_int_equal(store_serial_get(txn, serial, &info, NULL), P11CA_OK);
	assert_int_equal(info.state, STORE_SERIAL_ISSUED);
	assert_string_equal(info.requester, "alice");
	assert_int_equal(store_cert_get(txn, ca, serial, cert, NULL), P11CA_OK);
	assert_int_equal(store_cert_get_by_serial(txn, serial, by_serial, NULL), P11CA_OK);
	assert_int_equal(cert->der_len, len);
	assert_memory_equal(cert->der, der, len);
	assert_int_equal(cert->not_after, 1700000000);
	assert_string_equal(cert->profile, "server");
	assert_string_equal(cert->requester, "alice");
	assert_false(cert->revoked);
	assert_memory_equal(cert, by_serial, sizeof(*cert));
	assert_int_equal(store_cert_get(txn, other, serial, cert, NULL), P11CA_E_STORAGE_NOT_FOUND);
	assert_int_equal(store_cert_get(txn, ca, serial, NULL, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(store_cert_get_by_serial(txn, wrong, cert, NULL),
			 P11CA_E_STORAGE_NOT_FOUND);
	assert_int_equal(store_serial_get(txn, wrong, &info, NULL), P11CA_E_STORAGE_NOT_FOUND);
	assert_int_equal(store_serial_get(txn, NULL, &info, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(store_cert_put(txn, ca, serial, der, len, 1, "p", NULL),
			 P11CA_E_INVALID_ARG); /* read transaction */
	store_txn_abort(&txn);
	free(cert);
	free(by_serial);
}

static int collect_orphans(void *arg, const struct store_serial_info *info)
{
	assert_int_equal(info->state, STORE_SERIAL_ORPHAN);
	(*(int *)arg)++;
	return 0;
}

static void test_orphans(void **state)
{
	struct fixture *f = *state;
	uint8_t s[3][STORE_SERIAL_LEN], issued[STORE_SERIAL_LEN], der[1024], md[32];
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	uint32_t ca = tu_ca_add(txn, "root", 0);
	for (int i = 0; i < 3; i++)
		tu_intent(txn, ca, s[i]);
	tu_issue(txn, ca, 10, issued);
	tu_commit(&txn);

	/* Restart: the three intents without certificate become orphans. */
	txn = tu_txn(f->st, STORE_TXN_WRITE);
	size_t count = 0;
	assert_int_equal(store_orphans_mark(txn, &count, NULL), P11CA_OK);
	assert_int_equal(count, 3);
	tu_audit(txn, "orphans");
	tu_commit(&txn);

	txn = tu_txn(f->st, STORE_TXN_WRITE);
	assert_int_equal(store_orphans_mark(txn, &count, NULL), P11CA_OK);
	assert_int_equal(count, 0); /* nothing changed: commit needs no audit */
	struct store_serial_info info;
	assert_int_equal(store_serial_get(txn, s[1], &info, NULL), P11CA_OK);
	assert_int_equal(info.state, STORE_SERIAL_ORPHAN);
	assert_int_equal(store_serial_get(txn, issued, &info, NULL), P11CA_OK);
	assert_int_equal(info.state, STORE_SERIAL_ISSUED);
	int n = 0;
	assert_int_equal(store_orphans_list(txn, collect_orphans, &n, NULL), P11CA_OK);
	assert_int_equal(n, 3);
	assert_int_equal(store_orphans_list(txn, NULL, NULL, NULL), P11CA_E_INVALID_ARG);

	/* Never reused, never issued. */
	size_t len = tu_cert_make(s[0], 16, der, sizeof(der), md);
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_cert_put(txn, ca, s[0], der, len, 10, "p", &em), P11CA_E_POLICY);
	assert_non_null(strstr(em.text, "orphan"));
	assert_int_equal(store_intent_put(txn, s[0], ca, md, "r", NULL), P11CA_E_STORAGE_EXISTS);
	struct store_cert *cert = malloc(sizeof(*cert));
	assert_int_equal(store_cert_get_by_serial(txn, s[0], cert, NULL),
			 P11CA_E_STORAGE_NOT_FOUND);
	free(cert);
	tu_commit(&txn);

	txn = tu_txn(f->st, STORE_TXN_READ);
	assert_int_equal(store_orphans_mark(txn, &count, NULL), P11CA_E_INVALID_ARG);
	store_txn_abort(&txn);

	/* A failed issuance abandons its intent at once: an orphan without a restart. */
	uint8_t failed[STORE_SERIAL_LEN], unknown[STORE_SERIAL_LEN];
	txn = tu_txn(f->st, STORE_TXN_WRITE);
	tu_intent(txn, ca, failed);
	assert_int_equal(store_intent_abandon(txn, failed, NULL), P11CA_OK);
	tu_audit(txn, "abandon");
	assert_int_equal(store_serial_get(txn, failed, &info, NULL), P11CA_OK);
	assert_int_equal(info.state, STORE_SERIAL_ORPHAN);
	/* Only an intent: not an orphan again, not an issued serial, not an unknown one. */
	assert_int_equal(store_intent_abandon(txn, failed, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(store_intent_abandon(txn, issued, NULL), P11CA_E_INVALID_ARG);
	memset(unknown, 0x11, sizeof(unknown));
	assert_int_equal(store_intent_abandon(txn, unknown, NULL), P11CA_E_STORAGE_NOT_FOUND);
	assert_int_equal(store_intent_abandon(txn, NULL, NULL), P11CA_E_INVALID_ARG);
	tu_commit(&txn);
	txn = tu_txn(f->st, STORE_TXN_WRITE);
	assert_int_equal(store_orphans_mark(txn, &count, NULL), P11CA_OK);
	assert_int_equal(count, 0); /* already an orphan: nothing left for the restart */
	tu_commit(&txn);
}

struct page {
	uint8_t serials[200][STORE_SERIAL_LEN];
	size_t n;
};

static int page_add(void *arg, const struct store_cert *cert)
{
	struct page *p = arg;
	assert_true(p->n < 200);
	memcpy(p->serials[p->n++], cert->serial, STORE_SERIAL_LEN);
	return 0;
}

static bool page_has(const struct page *p, const uint8_t *serial)
{
	for (size_t i = 0; i < p->n; i++)
		if (memcmp(p->serials[i], serial, STORE_SERIAL_LEN) == 0)
			return true;
	return false;
}

static void test_cert_paging_stable(void **state)
{
	struct fixture *f = *state;
	struct page *before = calloc(1, sizeof(*before)), *seen = calloc(1, sizeof(*seen));
	uint8_t serial[STORE_SERIAL_LEN], other_serial[STORE_SERIAL_LEN];
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	uint32_t ca = tu_ca_add(txn, "root", 0), other = tu_ca_add(txn, "other", 0);
	for (int i = 0; i < 50; i++) {
		tu_issue(txn, ca, 10, serial);
		memcpy(before->serials[before->n++], serial, STORE_SERIAL_LEN);
	}
	tu_issue(txn, other, 10, other_serial); /* another CA's: never listed */
	tu_commit(&txn);

	size_t n = 0;
	txn = tu_txn(f->st, STORE_TXN_READ);
	assert_int_equal(store_cert_list(txn, ca, NULL, 20, page_add, seen, &n, NULL), P11CA_OK);
	assert_int_equal(n, 20);
	store_txn_abort(&txn);

	/* New certificates land before and after the cursor between pages. */
	txn = tu_txn(f->st, STORE_TXN_WRITE);
	for (int i = 0; i < 30; i++)
		tu_issue(txn, ca, 10, serial);
	tu_commit(&txn);

	txn = tu_txn(f->st, STORE_TXN_READ);
	uint8_t after[STORE_SERIAL_LEN];
	do {
		memcpy(after, seen->serials[seen->n - 1], STORE_SERIAL_LEN);
		assert_int_equal(store_cert_list(txn, ca, after, 20, page_add, seen, &n, NULL),
				 P11CA_OK);
	} while (n == 20);
	assert_int_equal(store_cert_list(txn, ca, NULL, 0, NULL, NULL, NULL, NULL),
			 P11CA_E_INVALID_ARG);
	store_txn_abort(&txn);

	for (size_t i = 1; i < seen->n; i++) /* strictly increasing: no repeats */
		assert_true(memcmp(seen->serials[i - 1], seen->serials[i], STORE_SERIAL_LEN) < 0);
	for (size_t i = 0; i < before->n; i++) /* nothing that existed was skipped */
		assert_true(page_has(seen, before->serials[i]));
	assert_false(page_has(seen, other_serial));
	assert_true(seen->n >= 50 && seen->n <= 80);
	free(before);
	free(seen);
}

struct revoked_seen {
	int n;
	uint32_t reasons[8];
	uint8_t last[STORE_SERIAL_LEN];
};

static int revoked_add(void *arg, const uint8_t serial[STORE_SERIAL_LEN],
		       const struct store_revocation *rev)
{
	struct revoked_seen *r = arg;
	if (r->n > 0)
		assert_true(memcmp(r->last, serial, STORE_SERIAL_LEN) < 0);
	memcpy(r->last, serial, STORE_SERIAL_LEN);
	r->reasons[r->n++] = rev->reason;
	assert_true(rev->revoked_at > 0);
	return 0;
}

static void test_revoke(void **state)
{
	struct fixture *f = *state;
	uint8_t s[5][STORE_SERIAL_LEN], t[STORE_SERIAL_LEN];
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	uint32_t ca = tu_ca_add(txn, "root", 0), other = tu_ca_add(txn, "other", 0);
	for (int i = 0; i < 5; i++)
		tu_issue(txn, ca, 10, s[i]);
	tu_issue(txn, other, 10, t);
	struct store_revocation rev = {.reason = 1, .invalidity_date = 1234};
	assert_int_equal(store_cert_revoke(txn, ca, s[1], &rev, NULL), P11CA_OK);
	rev = (struct store_revocation){.reason = 4, .revoked_at = 99};
	assert_int_equal(store_cert_revoke(txn, ca, s[3], &rev, NULL), P11CA_OK);
	assert_int_equal(store_cert_revoke(txn, other, t, &rev, NULL), P11CA_OK);
	assert_int_equal(store_cert_revoke(txn, ca, s[3], &rev, NULL), P11CA_E_STORAGE_EXISTS);
	assert_int_equal(store_cert_revoke(txn, other, s[0], &rev, NULL),
			 P11CA_E_STORAGE_NOT_FOUND);
	rev.reason = 7;
	assert_int_equal(store_cert_revoke(txn, ca, s[0], &rev, NULL), P11CA_E_INVALID_ARG);
	rev.reason = 8; /* removeFromCRL: delta CRLs only */
	assert_int_equal(store_cert_revoke(txn, ca, s[0], &rev, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(store_cert_revoke(txn, ca, s[0], NULL, NULL), P11CA_E_INVALID_ARG);
	tu_audit(txn, "revoke");
	tu_commit(&txn);

	txn = tu_txn(f->st, STORE_TXN_READ);
	struct revoked_seen r = {0};
	assert_int_equal(store_revoked_list(txn, ca, revoked_add, &r, NULL), P11CA_OK);
	assert_int_equal(r.n, 2);
	struct store_cert *cert = malloc(sizeof(*cert));
	assert_int_equal(store_cert_get(txn, ca, s[3], cert, NULL), P11CA_OK);
	assert_true(cert->revoked);
	assert_int_equal(cert->revocation.reason, 4);
	assert_int_equal(cert->revocation.revoked_at, 99);
	assert_int_equal(store_cert_get(txn, ca, s[1], cert, NULL), P11CA_OK);
	assert_int_equal(cert->revocation.invalidity_date, 1234);
	assert_true(cert->revocation.revoked_at > 1600000000); /* 0 meant now */
	free(cert);
	r = (struct revoked_seen){0};
	assert_int_equal(store_revoked_list(txn, other, revoked_add, &r, NULL), P11CA_OK);
	assert_int_equal(r.n, 1);
	r = (struct revoked_seen){0};
	assert_int_equal(store_revoked_list(txn, 99, revoked_add, &r, NULL), P11CA_OK);
	assert_int_equal(r.n, 0);
	assert_int_equal(store_revoked_list(txn, ca, NULL, NULL, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(store_cert_revoke(txn, ca, s[0], &rev, NULL), P11CA_E_INVALID_ARG);
	store_txn_abort(&txn);
}

static int expiry_add(void *arg, int64_t not_after, uint32_t ca_id,
		      const uint8_t serial[STORE_SERIAL_LEN])
{
	(void)ca_id;
	(void)serial;
	int64_t *v = arg;
	v[++v[0]] = not_after;
	return 0;
}

static void test_expiry_scan(void **state)
{
	struct fixture *f = *state;
	static const int64_t times[] = {300, -5, 100, 200, 100, 4102444800};
	uint8_t serial[STORE_SERIAL_LEN];
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	uint32_t ca = tu_ca_add(txn, "root", 0), other = tu_ca_add(txn, "other", 0);
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++)
		tu_issue(txn, i % 2 ? ca : other, times[i], serial);
	tu_commit(&txn);

	txn = tu_txn(f->st, STORE_TXN_READ);
	int64_t got[16] = {0};
	assert_int_equal(store_expiry_list(txn, 100, 300, expiry_add, got, NULL), P11CA_OK);
	assert_int_equal(got[0], 3);
	assert_int_equal(got[1], 100);
	assert_int_equal(got[2], 100);
	assert_int_equal(got[3], 200);
	memset(got, 0, sizeof(got));
	assert_int_equal(store_expiry_list(txn, INT64_MIN, INT64_MAX, expiry_add, got, NULL),
			 P11CA_OK);
	assert_int_equal(got[0], 6);
	assert_int_equal(got[1], -5); /* signed order */
	assert_int_equal(got[6], 4102444800);
	assert_int_equal(store_expiry_list(txn, 0, 1, NULL, NULL, NULL), P11CA_E_INVALID_ARG);
	store_txn_abort(&txn);
}

static void test_crl(void **state)
{
	struct fixture *f = *state;
	uint8_t der[300];
	der[0] = 0x30;
	der[1] = 0x82;
	der[2] = 0x01;
	der[3] = 0x28; /* 296 content bytes */
	memset(der + 4, 0xab, sizeof(der) - 4);
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	uint32_t ca = tu_ca_add(txn, "root", 0);
	uint64_t n1 = 0, n2 = 0;
	assert_int_equal(store_crl_number_next(txn, ca, &n1, NULL), P11CA_OK);
	assert_int_equal(store_crl_number_next(txn, ca, &n2, NULL), P11CA_OK);
	assert_int_equal(n1, 1);
	assert_int_equal(n2, 2);
	assert_int_equal(store_crl_number_next(txn, 99, &n1, NULL), P11CA_E_STORAGE_NOT_FOUND);
	assert_int_equal(store_crl_number_next(txn, ca, NULL, NULL), P11CA_E_INVALID_ARG);

	assert_int_equal(
		store_crl_put(txn, ca, STORE_CRL_SCOPE_FULL, 2, 1000, 2000, der, sizeof(der), NULL),
		P11CA_OK);
	struct p11ca_errmsg em = {0};
	assert_int_equal(
		store_crl_put(txn, ca, STORE_CRL_SCOPE_FULL, 1, 1000, 2000, der, sizeof(der), &em),
		P11CA_E_INVALID_ARG); /* not above the stored one */
	assert_non_null(strstr(em.text, "not above"));
	assert_int_equal(store_crl_put(txn, ca, 1, 3, 1000, 2000, der, sizeof(der), NULL),
			 P11CA_E_INVALID_ARG); /* never allocated */
	assert_int_equal(store_crl_put(txn, ca, 1, 0, 1000, 2000, der, sizeof(der), NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(store_crl_put(txn, ca, 1, 1, 1000, 2000, der, sizeof(der) - 1, NULL),
			 P11CA_E_INVALID_ARG); /* not one SEQUENCE */
	assert_int_equal(store_crl_put(txn, ca, 1, 1, 3000, 2000, der, sizeof(der), NULL),
			 P11CA_E_INVALID_ARG); /* nextUpdate first */
	assert_int_equal(store_crl_put(txn, 99, 1, 1, 1000, 2000, der, sizeof(der), NULL),
			 P11CA_E_STORAGE_NOT_FOUND);
	assert_int_equal(store_crl_put(txn, ca, 1, 1, 1000, 2000, NULL, 10, NULL),
			 P11CA_E_INVALID_ARG);
	/* A scope of its own, sharing the number sequence. */
	assert_int_equal(store_crl_put(txn, ca, 1, 1, 1000, 2000, der, sizeof(der), NULL),
			 P11CA_OK);
	tu_audit(txn, "crl");
	tu_commit(&txn);

	txn = tu_txn(f->st, STORE_TXN_READ);
	struct store_crl crl;
	assert_int_equal(store_crl_get(txn, ca, STORE_CRL_SCOPE_FULL, &crl, NULL), P11CA_OK);
	assert_int_equal(crl.number, 2);
	assert_int_equal(crl.this_update, 1000);
	assert_int_equal(crl.next_update, 2000);
	assert_int_equal(crl.der_len, sizeof(der));
	assert_memory_equal(crl.der, der, sizeof(der));
	assert_int_equal(store_crl_get(txn, ca, 7, &crl, NULL), P11CA_E_STORAGE_NOT_FOUND);
	assert_int_equal(store_crl_get(txn, ca, 0, NULL, NULL), P11CA_E_INVALID_ARG);
	struct store_ca *c = malloc(sizeof(*c));
	assert_int_equal(store_ca_get(txn, ca, c, NULL), P11CA_OK);
	assert_int_equal(c->crl_number, 2);
	free(c);
	store_txn_abort(&txn);
}

static int count_ignore(void *arg, const struct store_cert *cert)
{
	(void)arg;
	(void)cert;
	return 0;
}

/* Stored bytes are untrusted: garbage, empty values and records under the wrong key are
 * reported as corrupt, never used and never a crash. */
static void test_corrupt_records(void **state)
{
	struct fixture *f = *state;
	uint8_t s1[STORE_SERIAL_LEN], s2[STORE_SERIAL_LEN], key[24], val[20000];
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	uint32_t ca = tu_ca_add(txn, "root", 0);
	tu_issue(txn, ca, 10, s1);
	tu_issue(txn, ca, 10, s2);
	tu_commit(&txn);
	store_close(&f->st);

	/* certs[s1] := garbage; certs[s2] := s1's valid record (wrong key). */
	store_key_ca_serial(key, ca, s1);
	long len = tu_raw_get(f->dir, "certs", key, 24, val, sizeof(val));
	assert_true(len > 0);
	store_key_ca_serial(key, ca, s2);
	tu_raw_put(f->dir, "certs", key, 24, val, (size_t)len);
	store_key_ca_serial(key, ca, s1);
	tu_raw_put(f->dir, "certs", key, 24, "\xff\xff\xff\xff\x0f", 5);
	uint8_t cakey[4] = {0, 0, 0, (uint8_t)ca};
	tu_raw_put(f->dir, "cas", cakey, 4, "", 0); /* decodes to all-zero: no format */
	tu_raw_put(f->dir, "serials", s2, STORE_SERIAL_LEN, "\x08\x63\x10\x09", 4); /* format 99 */
	tu_raw_put(f->dir, "crls", "\0\0\0\1\0\0\0\0", 8, "\x05\x08\x01", 3); /* short header */

	f->st = tu_open(f->dir, 0, 0);
	txn = tu_txn(f->st, STORE_TXN_READ);
	struct store_cert *cert = malloc(sizeof(*cert));
	struct store_ca *c = malloc(sizeof(*c));
	struct store_serial_info info;
	struct store_crl crl;
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_cert_get(txn, ca, s1, cert, &em), P11CA_E_STORAGE_CORRUPT);
	assert_non_null(strstr(em.text, "certs"));
	assert_int_equal(store_cert_get(txn, ca, s2, cert, NULL), P11CA_E_STORAGE_CORRUPT);
	size_t n = 0;
	assert_int_equal(store_cert_list(txn, ca, NULL, 0, count_ignore, NULL, &n, NULL),
			 P11CA_E_STORAGE_CORRUPT);
	assert_int_equal(store_ca_get(txn, ca, c, NULL), P11CA_E_STORAGE_CORRUPT);
	assert_int_equal(store_ca_get_by_name(txn, "root", c, NULL), P11CA_E_STORAGE_CORRUPT);
	assert_int_equal(store_serial_get(txn, s2, &info, NULL), P11CA_E_STORAGE_VERSION);
	assert_int_equal(store_cert_get_by_serial(txn, s2, cert, NULL), P11CA_E_STORAGE_VERSION);
	assert_int_equal(store_crl_get(txn, 1, 0, &crl, NULL), P11CA_E_STORAGE_CORRUPT);
	store_txn_abort(&txn);
	free(cert);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ca_put_get_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_serial_properties, setup, teardown),
		cmocka_unit_test_setup_teardown(test_serial_redraws, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intent_then_cert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_orphans, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cert_paging_stable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expiry_scan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crl, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_records, setup, teardown),
	};
	return cmocka_run_group_tests_name("storage_records", tests, NULL, NULL);
}
