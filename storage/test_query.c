/*
 * storage/ listing tests: store_cert_query against a brute-force model of the same data
 * (every filter, both orders, CA scoping, short pages from scan_max), paging stability
 * with inserts between pages, and cursors that were not made by the same query.
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

#define MODEL_MAX 400

struct model_cert {
	uint32_t ca_id;
	uint8_t serial[STORE_SERIAL_LEN];
	int64_t not_after;
	const char *profile;
	bool revoked;
};

struct fixture {
	char dir[PATH_MAX];
	struct store *st;
	uint32_t ca[3];
	struct model_cert m[MODEL_MAX];
	size_t n;
};

/* A listing as seen by the caller. */
struct seen {
	size_t n;
	struct model_cert c[MODEL_MAX];
	int stop_at; /* fn returns 1 on this (1-based) call of the page; 0: never */
	int calls;
};

static const char *const profiles[] = {"server", "client", "ocsp"};

static void model_issue(struct fixture *f, struct store_txn *txn, uint32_t ca, int64_t not_after,
			const char *profile)
{
	assert_true(f->n < MODEL_MAX);
	struct model_cert *c = &f->m[f->n++];
	c->ca_id = ca;
	c->not_after = not_after;
	c->profile = profile;
	tu_issue_profile(txn, ca, not_after, profile, c->serial);
}

/* 3 CAs, 150 certificates: few distinct notAfter values (so the expiry order has ties
 * broken by CA and serial), three profiles, every fifth revoked. */
static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	tu_tmpdir(f->dir, "query");
	f->st = tu_open(f->dir, 0, 0);
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_WRITE);
	f->ca[0] = tu_ca_add(txn, "a", 0);
	f->ca[1] = tu_ca_add(txn, "b", 0);
	f->ca[2] = tu_ca_add(txn, "c", f->ca[0]);
	for (int i = 0; i < 150; i++)
		model_issue(f, txn, f->ca[i % 3], 1000 + 100 * (i % 7), profiles[(i / 2) % 3]);
	for (size_t i = 0; i < f->n; i += 5) {
		struct store_revocation rev = {.reason = 1};
		assert_int_equal(store_cert_revoke(txn, f->m[i].ca_id, f->m[i].serial, &rev, NULL),
				 P11CA_OK);
		f->m[i].revoked = true;
	}
	tu_audit(txn, "setup");
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

static bool model_match(const struct store_cert_query *q, const struct model_cert *c)
{
	if (q->ca_id != 0 && c->ca_id != q->ca_id)
		return false;
	if ((q->revoked_only && !c->revoked) || (q->unrevoked_only && c->revoked))
		return false;
	if (c->not_after < q->not_after_from)
		return false;
	if (q->not_after_until != 0 && c->not_after >= q->not_after_until)
		return false;
	return q->profile == NULL || q->profile[0] == '\0' || strcmp(q->profile, c->profile) == 0;
}

static enum store_cert_order model_order; /* for qsort's comparator only */

static int model_cmp(const void *pa, const void *pb)
{
	const struct model_cert *a = pa, *b = pb;
	if (model_order == STORE_ORDER_EXPIRY && a->not_after != b->not_after)
		return a->not_after < b->not_after ? -1 : 1;
	if (a->ca_id != b->ca_id)
		return a->ca_id < b->ca_id ? -1 : 1;
	return memcmp(a->serial, b->serial, STORE_SERIAL_LEN);
}

static void model_list(const struct fixture *f, const struct store_cert_query *q, struct seen *out)
{
	out->n = 0;
	for (size_t i = 0; i < f->n; i++)
		if (model_match(q, &f->m[i]))
			out->c[out->n++] = f->m[i];
	model_order = q->order;
	qsort(out->c, out->n, sizeof(out->c[0]), model_cmp);
}

static int seen_add(void *arg, const struct store_cert *cert)
{
	struct seen *s = arg;
	assert_true(s->n < MODEL_MAX);
	struct model_cert *c = &s->c[s->n++];
	c->ca_id = cert->ca_id;
	memcpy(c->serial, cert->serial, STORE_SERIAL_LEN);
	c->not_after = cert->not_after;
	c->revoked = cert->revoked;
	c->profile = NULL;
	assert_true(cert->der_len > 0);
	return ++s->calls == s->stop_at;
}

struct walk_stats {
	size_t pages, short_pages;
};

/* Page through a whole listing; every page obeys limit, and the pages join up. */
static void walk(struct store *st, const struct store_cert_query *q, size_t limit, size_t scan_max,
		 struct seen *out, struct walk_stats *ws)
{
	uint8_t cur[STORE_CURSOR_MAX], next[STORE_CURSOR_MAX];
	size_t cur_len = 0, next_len = 0, n = 0;
	struct p11ca_errmsg em = {0};
	*ws = (struct walk_stats){0};
	out->n = 0;
	struct store_txn *txn = tu_txn(st, STORE_TXN_READ);
	do {
		size_t before = out->n;
		if (store_cert_query(txn, q, cur, cur_len, limit, scan_max, seen_add, out, next,
				     &next_len, &n, &em) != P11CA_OK)
			fail_msg("store_cert_query: %s", p11ca_errmsg_text(&em));
		assert_int_equal(n, out->n - before);
		assert_true(n <= limit);
		assert_true(next_len <= STORE_CURSOR_MAX);
		ws->pages++;
		if (n < limit && next_len != 0)
			ws->short_pages++;
		memcpy(cur, next, next_len);
		cur_len = next_len;
		assert_true(ws->pages < 10000);
	} while (cur_len != 0);
	store_txn_abort(&txn);
}

static void assert_same(const struct seen *want, const struct seen *got)
{
	assert_int_equal(got->n, want->n);
	for (size_t i = 0; i < want->n; i++) {
		assert_int_equal(got->c[i].ca_id, want->c[i].ca_id);
		assert_memory_equal(got->c[i].serial, want->c[i].serial, STORE_SERIAL_LEN);
		assert_int_equal(got->c[i].not_after, want->c[i].not_after);
		assert_int_equal(got->c[i].revoked, want->c[i].revoked);
	}
}

static void test_query_matches_model(void **state)
{
	struct fixture *f = *state;
	struct seen *want = calloc(1, sizeof(*want)), *got = calloc(1, sizeof(*got));
	struct walk_stats ws;
	const struct store_cert_query qs[] = {
		{0},
		{.ca_id = f->ca[1]},
		{.ca_id = f->ca[2], .order = STORE_ORDER_EXPIRY},
		{.revoked_only = true},
		{.revoked_only = true, .ca_id = f->ca[0]},
		{.unrevoked_only = true, .ca_id = f->ca[0]},
		{.revoked_only = true, .unrevoked_only = true},
		{.profile = "client"},
		{.profile = "ocsp", .ca_id = f->ca[1], .unrevoked_only = true},
		{.profile = "nosuch"},
		{.not_after_from = 1200, .not_after_until = 1500},
		{.not_after_from = 1200, .not_after_until = 1500, .order = STORE_ORDER_EXPIRY},
		{.not_after_until = 1300, .order = STORE_ORDER_EXPIRY, .revoked_only = true},
		{.not_after_from = 1400, .order = STORE_ORDER_EXPIRY, .profile = "server"},
		{.not_after_from = 1500, .not_after_until = 1500, .order = STORE_ORDER_EXPIRY},
		{.order = STORE_ORDER_EXPIRY, .ca_id = f->ca[0], .unrevoked_only = true},
		{.ca_id = 99},
	};
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		model_list(f, &qs[i], want);
		walk(f->st, &qs[i], 7, 0, got, &ws);
		assert_same(want, got);
		/* Only the last page may be short when nothing bounds the scan. */
		assert_int_equal(ws.short_pages, 0);
		walk(f->st, &qs[i], 1000, 0, got, &ws);
		assert_same(want, got);
		assert_int_equal(ws.pages, 1);
		walk(f->st, &qs[i], 1, 0, got, &ws);
		assert_same(want, got);
		/* A bounded scan gives short pages that still complete the listing. */
		walk(f->st, &qs[i], 4, 5, got, &ws);
		assert_same(want, got);
		walk(f->st, &qs[i], 4, 2, got, &ws);
		assert_same(want, got);
		if (want->n > 4) /* at most 2 matches per page: every page but the last is short */
			assert_true(ws.short_pages >= (want->n - 1) / 2);
	}
	free(want);
	free(got);
}

/* A last page that is exactly full says the listing is done: no empty extra page. */
static void test_query_exact_end(void **state)
{
	struct fixture *f = *state;
	struct seen *got = calloc(1, sizeof(*got));
	struct store_cert_query q = {.ca_id = f->ca[0]};
	struct walk_stats ws;
	walk(f->st, &q, 50, 0, got, &ws);
	assert_int_equal(got->n, 50);
	assert_int_equal(ws.pages, 1);
	walk(f->st, &q, 25, 0, got, &ws);
	assert_int_equal(ws.pages, 2);
	free(got);
}

/* fn returning non-zero stops at that certificate, which counts as returned. */
static void test_query_callback_stops(void **state)
{
	struct fixture *f = *state;
	struct seen *got = calloc(1, sizeof(*got)), *want = calloc(1, sizeof(*want));
	struct store_cert_query q = {.order = STORE_ORDER_EXPIRY};
	uint8_t cur[STORE_CURSOR_MAX];
	size_t cur_len = 0, n = 0;
	model_list(f, &q, want);
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_READ);
	got->stop_at = 3;
	assert_int_equal(
		store_cert_query(txn, &q, NULL, 0, 10, 0, seen_add, got, cur, &cur_len, &n, NULL),
		P11CA_OK);
	assert_int_equal(n, 3);
	assert_true(cur_len > 0);
	got->stop_at = 0;
	assert_int_equal(store_cert_query(txn, &q, cur, cur_len, 1000, 0, seen_add, got, cur,
					  &cur_len, &n, NULL),
			 P11CA_OK);
	assert_int_equal(cur_len, 0);
	store_txn_abort(&txn);
	assert_same(want, got);
	free(got);
	free(want);
}

static bool seen_has(const struct seen *s, const uint8_t serial[STORE_SERIAL_LEN])
{
	for (size_t i = 0; i < s->n; i++)
		if (memcmp(s->c[i].serial, serial, STORE_SERIAL_LEN) == 0)
			return true;
	return false;
}

/* Inserts between pages: behind the cursor never returned, ahead always, nothing that
 * existed skipped or repeated. In expiry order "behind" is decided by notAfter. */
static void test_query_stable_with_inserts(void **state)
{
	struct fixture *f = *state;
	struct seen *got = calloc(1, sizeof(*got)), *before = calloc(1, sizeof(*before));
	struct store_cert_query q = {.order = STORE_ORDER_EXPIRY, .ca_id = f->ca[1]};
	uint8_t cur[STORE_CURSOR_MAX], behind[STORE_SERIAL_LEN], ahead[STORE_SERIAL_LEN];
	uint8_t other[STORE_SERIAL_LEN];
	size_t cur_len = 0, n = 0;
	model_list(f, &q, before);

	struct store_txn *txn = tu_txn(f->st, STORE_TXN_READ);
	assert_int_equal(
		store_cert_query(txn, &q, NULL, 0, 20, 0, seen_add, got, cur, &cur_len, &n, NULL),
		P11CA_OK);
	assert_int_equal(n, 20);
	store_txn_abort(&txn);
	assert_true(got->c[19].not_after < 1600); /* the page ended before the last value */

	txn = tu_txn(f->st, STORE_TXN_WRITE);
	tu_issue(txn, f->ca[1], 999, behind); /* before every listed notAfter */
	tu_issue(txn, f->ca[1], 5000, ahead); /* after all of them */
	tu_issue(txn, f->ca[0], 5000, other); /* another CA's */
	for (int i = 0; i < 40; i++)	      /* lands on both sides in serial order */
		model_issue(f, txn, f->ca[1], 1000 + 100 * (i % 7), "server");
	tu_commit(&txn);

	txn = tu_txn(f->st, STORE_TXN_READ);
	while (cur_len != 0)
		assert_int_equal(store_cert_query(txn, &q, cur, cur_len, 20, 0, seen_add, got, cur,
						  &cur_len, &n, NULL),
				 P11CA_OK);
	store_txn_abort(&txn);
	assert_false(seen_has(got, behind));
	assert_true(seen_has(got, ahead));
	assert_false(seen_has(got, other));
	for (size_t i = 0; i < before->n; i++)
		assert_true(seen_has(got, before->c[i].serial));
	model_order = STORE_ORDER_EXPIRY;
	for (size_t i = 1; i < got->n; i++) /* strictly increasing: no repeats */
		assert_true(model_cmp(&got->c[i - 1], &got->c[i]) < 0);

	/* Serial order: page, insert many, finish; nothing repeated or skipped. */
	struct store_cert_query qs = {.ca_id = f->ca[1]};
	model_list(f, &qs, before);
	got->n = 0;
	txn = tu_txn(f->st, STORE_TXN_READ);
	assert_int_equal(
		store_cert_query(txn, &qs, NULL, 0, 30, 0, seen_add, got, cur, &cur_len, &n, NULL),
		P11CA_OK);
	store_txn_abort(&txn);
	txn = tu_txn(f->st, STORE_TXN_WRITE);
	for (int i = 0; i < 60; i++)
		model_issue(f, txn, f->ca[1 + i % 2], 3000, "client");
	tu_commit(&txn);
	txn = tu_txn(f->st, STORE_TXN_READ);
	while (cur_len != 0)
		assert_int_equal(store_cert_query(txn, &qs, cur, cur_len, 30, 0, seen_add, got, cur,
						  &cur_len, &n, NULL),
				 P11CA_OK);
	store_txn_abort(&txn);
	model_order = STORE_ORDER_SERIAL;
	for (size_t i = 1; i < got->n; i++)
		assert_true(model_cmp(&got->c[i - 1], &got->c[i]) < 0);
	for (size_t i = 0; i < before->n; i++)
		assert_true(seen_has(got, before->c[i].serial));
	for (size_t i = 0; i < got->n; i++)
		assert_int_equal(got->c[i].ca_id, f->ca[1]);
	/* Those ahead of the cursor were returned. */
	const uint8_t *last_first_page = got->c[29].serial;
	for (size_t i = 0; i < f->n; i++)
		if (f->m[i].ca_id == f->ca[1] &&
		    memcmp(f->m[i].serial, last_first_page, STORE_SERIAL_LEN) > 0)
			assert_true(seen_has(got, f->m[i].serial));
	free(got);
	free(before);
}

static enum p11ca_err query_with(struct store_txn *txn, const struct store_cert_query *q,
				 const uint8_t *cursor, size_t len, struct p11ca_errmsg *em)
{
	struct seen *s = calloc(1, sizeof(*s));
	uint8_t out[STORE_CURSOR_MAX];
	size_t out_len = 99, n = 99;
	enum p11ca_err err =
		store_cert_query(txn, q, cursor, len, 5, 0, seen_add, s, out, &out_len, &n, em);
	if (err != P11CA_OK) {
		assert_int_equal(s->n, 0); /* a refused query calls nothing back */
		assert_int_equal(out_len, 0);
		assert_int_equal(n, 0);
	}
	free(s);
	return err;
}

static void test_query_cursor_misuse(void **state)
{
	struct fixture *f = *state;
	struct seen *s = calloc(1, sizeof(*s));
	struct store_cert_query q = {.ca_id = f->ca[0]};
	uint8_t cur[STORE_CURSOR_MAX], bad[STORE_CURSOR_MAX + 8];
	size_t len = 0, n = 0;
	struct p11ca_errmsg em = {0};
	struct store_txn *txn = tu_txn(f->st, STORE_TXN_READ);
	assert_int_equal(store_cert_query(txn, &q, NULL, 0, 5, 0, seen_add, s, cur, &len, &n, NULL),
			 P11CA_OK);
	assert_true(len > 0);
	assert_int_equal(query_with(txn, &q, cur, len, NULL), P11CA_OK);

	/* Another CA, order or index than the one that made it. */
	struct store_cert_query other = q;
	other.ca_id = f->ca[1];
	assert_int_equal(query_with(txn, &other, cur, len, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "start again"));
	other = q;
	other.ca_id = 0;
	assert_int_equal(query_with(txn, &other, cur, len, NULL), P11CA_E_INVALID_ARG);
	other = q;
	other.order = STORE_ORDER_EXPIRY;
	assert_int_equal(query_with(txn, &other, cur, len, NULL), P11CA_E_INVALID_ARG);
	other = q;
	other.revoked_only = true;
	assert_int_equal(query_with(txn, &other, cur, len, NULL), P11CA_E_INVALID_ARG);
	/* Filters that keep the index may change between pages. */
	other = q;
	other.profile = "client";
	assert_int_equal(query_with(txn, &other, cur, len, NULL), P11CA_OK);

	/* Truncated, extended, every byte flipped, garbage, NULL. */
	assert_int_equal(query_with(txn, &q, cur, len - 1, NULL), P11CA_E_INVALID_ARG);
	memcpy(bad, cur, len);
	bad[len] = 0;
	assert_int_equal(query_with(txn, &q, bad, len + 1, NULL), P11CA_E_INVALID_ARG);
	for (size_t i = 0; i < len; i++) {
		memcpy(bad, cur, len);
		bad[i] ^= 0x01;
		assert_int_equal(query_with(txn, &q, bad, len, NULL), P11CA_E_INVALID_ARG);
	}
	for (unsigned seed = 1; seed < 200; seed++) {
		for (size_t i = 0; i < sizeof(bad); i++)
			bad[i] = (uint8_t)(seed * 131 + i * 7919 + (i * seed) % 251);
		assert_int_equal(query_with(txn, &q, bad, 1 + seed % sizeof(bad), NULL),
				 P11CA_E_INVALID_ARG);
	}
	assert_int_equal(query_with(txn, &q, NULL, 5, NULL), P11CA_E_INVALID_ARG);

	/* Arguments. */
	assert_int_equal(store_cert_query(txn, &q, NULL, 0, 0, 0, seen_add, s, cur, &len, &n, &em),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(
		store_cert_query(txn, NULL, NULL, 0, 5, 0, seen_add, s, cur, &len, &n, NULL),
		P11CA_E_INVALID_ARG);
	assert_int_equal(store_cert_query(txn, &q, NULL, 0, 5, 0, NULL, s, cur, &len, &n, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(
		store_cert_query(txn, &q, NULL, 0, 5, 0, seen_add, s, NULL, &len, &n, NULL),
		P11CA_E_INVALID_ARG);
	assert_int_equal(store_cert_query(txn, &q, NULL, 0, 5, 0, seen_add, s, cur, NULL, &n, NULL),
			 P11CA_E_INVALID_ARG);
	other = q;
	other.order = (enum store_cert_order)7;
	assert_int_equal(query_with(txn, &other, NULL, 0, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(
		store_cert_query(NULL, &q, NULL, 0, 5, 0, seen_add, s, cur, &len, &n, NULL),
		P11CA_E_INVALID_ARG);
	store_txn_abort(&txn);
	free(s);
}

static void test_query_empty(void **state)
{
	(void)state;
	char dir[PATH_MAX];
	tu_tmpdir(dir, "empty");
	struct store *st = tu_open(dir, 0, 0);
	struct seen *s = calloc(1, sizeof(*s));
	uint8_t cur[STORE_CURSOR_MAX];
	size_t len = 7, n = 7;
	struct store_txn *txn = tu_txn(st, STORE_TXN_READ);
	const struct store_cert_query qs[] = {
		{0}, {.order = STORE_ORDER_EXPIRY}, {.revoked_only = true}, {.ca_id = 1}};
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(store_cert_query(txn, &qs[i], NULL, 0, 5, 0, seen_add, s, cur,
						  &len, &n, NULL),
				 P11CA_OK);
		assert_int_equal(len, 0);
		assert_int_equal(n, 0);
	}
	store_txn_abort(&txn);
	store_close(&st);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_query_matches_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_exact_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_callback_stops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_stable_with_inserts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_cursor_misuse, setup, teardown),
		cmocka_unit_test(test_query_empty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
