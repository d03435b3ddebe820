/*
 * Group commit (commit.h) on a real store: jobs of concurrent workers share a transaction,
 * a failing job does not spoil its batch, a failed commit fails the whole batch, and a full
 * map is a clean storage error.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "appliance/engine/commit.h"
#include "storage/test_util.h"

struct fx {
	char dir[PATH_MAX];
	struct store *st;
	struct commit *c;
};

static int setup_map(void **state, size_t map)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	tu_tmpdir(f->dir, "commit");
	f->st = tu_open(f->dir, map, 100);
	struct p11ca_errmsg em = {0};
	assert_int_equal(commit_start(f->st, NULL, &f->c, &em), P11CA_OK);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_map(state, 0);
}

static int setup_tiny(void **state)
{
	return setup_map(state, 256 * 1024);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	commit_stop(&f->c);
	commit_stop(&f->c); /* NULL-safe */
	store_close(&f->st);
	free(f);
	return 0;
}

/* ---- jobs ---------------------------------------------------------------------------- */

struct audit_arg {
	char what[32];
	int runs;
};

static enum p11ca_err audit_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct audit_arg *a = arg;
	a->runs++;
	return store_audit_append(txn, "test", "tester", a->what, NULL, NULL, em);
}

static enum p11ca_err bad_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	(void)txn;
	(void)arg;
	return p11ca_fail(em, P11CA_E_INVALID_ARG, "this job is bad");
}

/* Changes without an audit record: storage refuses the commit (a failed commit). */
static enum p11ca_err unaudited_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	(void)arg;
	(void)em;
	tu_ca_add(txn, "unaudited", 0);
	return P11CA_OK;
}

/* Blocks the committer until released, so the test can queue a batch behind it. */
struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool entered, open;
};

static enum p11ca_err gate_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct gate *g = arg;
	pthread_mutex_lock(&g->lock);
	g->entered = true;
	pthread_cond_broadcast(&g->cond);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
	return store_audit_append(txn, "test", "tester", "gate", NULL, NULL, em);
}

struct submit {
	struct commit *c;
	commit_fn fn;
	void *arg;
	enum p11ca_err err;
	pthread_t thread;
};

static void *submit_main(void *arg)
{
	struct submit *s = arg;
	struct p11ca_errmsg em = {0};
	s->err = commit_run(s->c, s->fn, s->arg, &em);
	return NULL;
}

static void submit_start(struct submit *s, struct commit *c, commit_fn fn, void *arg)
{
	s->c = c;
	s->fn = fn;
	s->arg = arg;
	assert_int_equal(pthread_create(&s->thread, NULL, submit_main, s), 0);
}

static struct gate gate_new(void)
{
	struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};
	return g;
}

static void gate_wait_entered(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	while (!g->entered)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->open = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/* Spin (yielding) until n jobs are queued behind the gate: a condition, not a sleep. */
static void wait_queued(struct commit *c, unsigned long n)
{
	unsigned long q = 0;
	for (;;) {
		commit_counters(c, NULL, NULL, &q);
		if (q >= n)
			return;
		sched_yield();
	}
}

static int count_audit(void *arg, const struct store_audit_entry *e)
{
	if (strcmp(e->event, "test") == 0)
		(*(int *)arg)++;
	return 0;
}

static int audit_count(struct store *st)
{
	int n = 0;
	struct store_txn *txn = tu_txn(st, STORE_TXN_READ);
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_audit_list(txn, 1, count_audit, &n, &em), P11CA_OK);
	store_txn_abort(&txn);
	return n;
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_one_job(void **state)
{
	struct fx *f = *state;
	struct audit_arg a = {"one"};
	struct p11ca_errmsg em = {0};
	assert_int_equal(commit_run(f->c, audit_fn, &a, &em), P11CA_OK);
	assert_int_equal(a.runs, 1);
	assert_int_equal(audit_count(f->st), 1);
}

static void test_bad_args(void **state)
{
	struct fx *f = *state;
	struct p11ca_errmsg em = {0};
	struct commit *c = NULL;
	assert_int_equal(commit_start(NULL, NULL, &c, &em), P11CA_E_INVALID_ARG);
	assert_null(c);
	assert_int_equal(commit_run(NULL, audit_fn, NULL, &em), P11CA_E_INVALID_ARG);
	assert_int_equal(commit_run(f->c, NULL, NULL, &em), P11CA_E_INVALID_ARG);
}

/* Jobs queued while the committer is busy commit together, in one batch. */
static void test_grouping(void **state)
{
	struct fx *f = *state;
	enum { N = 8 };
	struct gate g = gate_new();
	struct submit gs = {0}, s[N];
	struct audit_arg a[N];
	memset(s, 0, sizeof(s));
	submit_start(&gs, f->c, gate_fn, &g);
	gate_wait_entered(&g);
	for (int i = 0; i < N; i++) {
		a[i] = (struct audit_arg){.runs = 0};
		snprintf(a[i].what, sizeof(a[i].what), "job %d", i);
		submit_start(&s[i], f->c, audit_fn, &a[i]);
	}
	wait_queued(f->c, N);
	unsigned long batches0 = 0;
	commit_counters(f->c, &batches0, NULL, NULL);
	gate_open(&g);
	pthread_join(gs.thread, NULL);
	assert_int_equal(gs.err, P11CA_OK);
	for (int i = 0; i < N; i++) {
		pthread_join(s[i].thread, NULL);
		assert_int_equal(s[i].err, P11CA_OK);
		assert_int_equal(a[i].runs, 1);
	}
	unsigned long batches = 0, jobs = 0;
	commit_counters(f->c, &batches, &jobs, NULL);
	assert_int_equal(batches, 2); /* the gate's, then all N together */
	assert_int_equal(jobs, N + 1);
	assert_int_equal(audit_count(f->st), N + 1);
}

/* One bad job in a batch: the others commit, the bad one gets its own error. */
static void test_bad_job_isolated(void **state)
{
	struct fx *f = *state;
	struct gate g = gate_new();
	struct submit gs = {0}, s1 = {0}, bad = {0}, s2 = {0};
	struct audit_arg a1 = {"good 1"}, a2 = {"good 2"};
	submit_start(&gs, f->c, gate_fn, &g);
	gate_wait_entered(&g);
	submit_start(&s1, f->c, audit_fn, &a1);
	wait_queued(f->c, 1);
	submit_start(&bad, f->c, bad_fn, NULL);
	wait_queued(f->c, 2);
	submit_start(&s2, f->c, audit_fn, &a2);
	wait_queued(f->c, 3);
	gate_open(&g);
	pthread_join(gs.thread, NULL);
	pthread_join(s1.thread, NULL);
	pthread_join(bad.thread, NULL);
	pthread_join(s2.thread, NULL);
	assert_int_equal(s1.err, P11CA_OK);
	assert_int_equal(s2.err, P11CA_OK);
	assert_int_equal(bad.err, P11CA_E_INVALID_ARG);
	assert_int_equal(a1.runs, 2); /* ran, was rolled back with the bad one, ran again */
	assert_int_equal(a2.runs, 1);
	assert_int_equal(audit_count(f->st), 3);
}

/* A commit that fails fails every job of its batch, and nothing of it is written. */
static void test_commit_failure_fails_batch(void **state)
{
	struct fx *f = *state;
	struct gate g = gate_new();
	struct submit gs = {0}, s1 = {0}, u = {0};
	struct audit_arg a1 = {"lost"};
	submit_start(&gs, f->c, gate_fn, &g);
	gate_wait_entered(&g);
	submit_start(&s1, f->c, audit_fn, &a1);
	wait_queued(f->c, 1);
	submit_start(&u, f->c, unaudited_fn, NULL);
	wait_queued(f->c, 2);
	gate_open(&g);
	pthread_join(gs.thread, NULL);
	pthread_join(s1.thread, NULL);
	pthread_join(u.thread, NULL);
	assert_int_equal(gs.err, P11CA_OK);
	assert_int_equal(s1.err, P11CA_E_INTERNAL);
	assert_int_equal(u.err, P11CA_E_INTERNAL);
	assert_int_equal(audit_count(f->st), 1); /* the gate's only */

	/* The committer goes on serving. */
	struct audit_arg a2 = {"after"};
	struct p11ca_errmsg em = {0};
	assert_int_equal(commit_run(f->c, audit_fn, &a2, &em), P11CA_OK);
	assert_int_equal(audit_count(f->st), 2);
}

static enum p11ca_err big_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	(void)arg;
	char details[STORE_AUDIT_DETAILS_MAX + 1];
	memset(details, 'x', sizeof(details) - 1);
	details[sizeof(details) - 1] = '\0';
	for (int i = 0; i < 16; i++)
		P11CA_GUARD(store_audit_append(txn, "test", "tester", "big", details, NULL, em));
	return P11CA_OK;
}

/* A full map is a storage error for the request, never a crash; reads still work. */
static void test_map_full(void **state)
{
	struct fx *f = *state;
	struct p11ca_errmsg em = {0};
	enum p11ca_err err = P11CA_OK;
	int i;
	for (i = 0; i < 1000 && err == P11CA_OK; i++) {
		p11ca_errmsg_clear(&em);
		err = commit_run(f->c, big_fn, NULL, &em);
	}
	assert_int_equal(err, P11CA_E_STORAGE_FULL);
	assert_true(i > 1);
	assert_true(strlen(em.text) > 0);
	assert_true(audit_count(f->st) > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_one_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
		cmocka_unit_test_setup_teardown(test_grouping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_job_isolated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_failure_fails_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_full, setup_tiny, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
