/* Unit tests for appliance/supervise with ordinary programs as children: back-off, restart
 * of the whole set after a crash, stop order, fd passing, and escalation to SIGKILL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "appliance/supervise.h"

static void test_backoff(void **state)
{
	(void)state;
	struct sup_backoff b = {.min_ms = 1000, .max_ms = 30000, .reset_after_ms = 60000};
	static const unsigned want[] = {1000, 2000, 4000, 8000, 16000, 30000, 30000};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_int_equal(sup_backoff_next(&b, 10), want[i]);
	assert_int_equal(sup_backoff_next(&b, 60000), 1000); /* ran long enough: reset */
	assert_int_equal(sup_backoff_next(&b, 59999), 2000);
}

static void test_status_text(void **state)
{
	(void)state;
	char t[96];
	sup_status_text(3 << 8, t, sizeof(t));
	assert_string_equal(t, "exited with status 3");
	sup_status_text(9, t, sizeof(t));
	assert_string_equal(t, "was killed by signal 9 (Killed)");
	sup_status_text(-1, t, sizeof(t));
	assert_string_equal(t, "could not be started");
}

/* ---- restart of the whole set ----------------------------------------------------------- */

struct crashes {
	int prepared, stopped, crashes, give_up_after, stop_fd_w;
	char name[4][16];
	int status[4];
	unsigned delay[4];
	char *const *argv_a, *const *argv_b;
};

static char *const sleeper[] = {"/bin/sh", "-c", "exec sleep 100", NULL};
static char *const exit3[] = {"/bin/sh", "-c", "exit 3", NULL};
static char *const missing[] = {"/nonexistent/program", NULL};

static enum p11ca_err prep_two(void *arg, struct sup_child *c, size_t *n, struct p11ca_errmsg *em)
{
	(void)em;
	struct crashes *t = arg;
	t->prepared++;
	c[0] = (struct sup_child){.name = "a", .argv = t->argv_a, .term_on_stop = 1, .pidfd = -1};
	c[1] = (struct sup_child){.name = "b", .argv = t->argv_b, .term_on_stop = 1, .pidfd = -1};
	*n = 2;
	return P11CA_OK;
}

static void count_stopped(void *arg)
{
	((struct crashes *)arg)->stopped++;
}

static int on_crash(void *arg, const char *name, int status, unsigned delay_ms)
{
	struct crashes *t = arg;
	int i = t->crashes++;
	snprintf(t->name[i], sizeof(t->name[i]), "%s", name);
	t->status[i] = status;
	t->delay[i] = delay_ms;
	if (t->crashes == t->give_up_after) {
		if (t->stop_fd_w >= 0) /* stop during the back-off instead of giving up */
			return write(t->stop_fd_w, "x", 1) == 1;
		return 0;
	}
	return 1;
}

static void test_restart_whole_set(void **state)
{
	(void)state;
	int stop[2];
	assert_int_equal(pipe(stop), 0);
	struct crashes t = {
		.give_up_after = 3, .stop_fd_w = -1, .argv_a = sleeper, .argv_b = exit3};
	struct sup_config cfg = {
		.backoff = {.min_ms = 1, .max_ms = 4, .reset_after_ms = 60000},
		.grace_ms = 2000,
		.stop_fd = stop[0],
	};
	struct sup_ops ops = {
		.arg = &t, .prepare = prep_two, .stopped = count_stopped, .crashed = on_crash};
	struct p11ca_errmsg em = {0};
	assert_int_equal(sup_run(&cfg, &ops, &em), P11CA_E_IO);
	assert_non_null(strstr(em.text, "the b process stopped unexpectedly"));
	assert_int_equal(t.prepared, 3); /* fresh set each time */
	assert_int_equal(t.stopped, 3);	 /* "a" was stopped with its crashed sibling */
	for (int i = 0; i < 3; i++) {
		assert_string_equal(t.name[i], "b");
		assert_true(WIFEXITED(t.status[i]));
		assert_int_equal(WEXITSTATUS(t.status[i]), 3);
	}
	assert_int_equal(t.delay[0], 1);
	assert_int_equal(t.delay[1], 2);
	assert_int_equal(t.delay[2], 4);
	close(stop[0]);
	close(stop[1]);
}

static void test_missing_program_and_stop_in_backoff(void **state)
{
	(void)state;
	int stop[2];
	assert_int_equal(pipe(stop), 0);
	struct crashes t = {
		.give_up_after = 1, .stop_fd_w = stop[1], .argv_a = missing, .argv_b = sleeper};
	struct sup_config cfg = {
		/* A long back-off: the stop must cut it short. */
		.backoff = {.min_ms = 600000, .max_ms = 600000, .reset_after_ms = 600000},
		.grace_ms = 2000,
		.stop_fd = stop[0],
	};
	struct sup_ops ops = {
		.arg = &t, .prepare = prep_two, .stopped = count_stopped, .crashed = on_crash};
	assert_int_equal(sup_run(&cfg, &ops, NULL), P11CA_OK);
	assert_int_equal(t.crashes, 1);
	assert_string_equal(t.name[0], "a");
	assert_int_equal(WEXITSTATUS(t.status[0]), 127); /* execv failed */
	assert_int_equal(t.delay[0], 600000);
	close(stop[0]);
	close(stop[1]);

	struct sup_child bad = {.name = "x", .argv = NULL};
	assert_int_equal(sup_spawn(&bad, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(sup_spawn(NULL, NULL), P11CA_E_INVALID_ARG);
}

/* ---- stop order and fd passing ----------------------------------------------------------- */

/* Each child reports on fd 3 which fds it has, then (on SIGTERM) its name. */
#define CHILD(name)                                                                                \
	"trap 'echo " name " >&3; kill $! 2>/dev/null; exit 0' TERM; "                             \
	"echo up-" name "$([ -e /proc/$$/fd/200 ] && echo -LEAK) >&3; sleep 100 3>&- & wait"

static char *const signer_argv[] = {"/bin/sh", "-c", CHILD("signer"), NULL};
static char *const engine_argv[] = {"/bin/sh", "-c", CHILD("engine"), NULL};
static char *const rpc_argv[] = {"/bin/sh", "-c", CHILD("rpc"), NULL};

struct order {
	int report_w, report_r, stop_w, extra;
	int stopping;
};

static enum p11ca_err prep_three(void *arg, struct sup_child *c, size_t *n, struct p11ca_errmsg *em)
{
	(void)em;
	struct order *o = arg;
	char *const *argv[] = {signer_argv, engine_argv, rpc_argv};
	const char *names[] = {"signer", "engine", "rpc"};
	for (int i = 0; i < 3; i++) {
		c[i] = (struct sup_child){.name = names[i], .argv = argv[i], .pidfd = -1};
		c[i].fds[0] = o->report_w;
		c[i].n_fds = 1;
		c[i].keep_mask = 1;	    /* shared by all three: the test closes it */
		c[i].term_on_stop = i != 0; /* the signer waits for its link to close */
	}
	/* An fd the parent hands to nobody must not leak into the children. */
	int fd = open("/dev/null", O_RDONLY); /* not close-on-exec on purpose */
	o->extra = fcntl(fd, F_DUPFD, 200);
	close(fd);
	assert_int_equal(o->extra, 200);
	*n = 3;
	return P11CA_OK;
}

static enum p11ca_err all_up(void *arg, struct sup_child *c, size_t n, struct p11ca_errmsg *em)
{
	(void)c;
	(void)n;
	(void)em;
	struct order *o = arg;
	/* Wait for the three "up" lines (data, not time), then ask for a stop. */
	char buf[512];
	size_t got = 0;
	int lines = 0;
	while (lines < 3 && got < sizeof(buf) - 1) {
		ssize_t r = read(o->report_r, buf + got, 1);
		assert_int_equal(r, 1);
		lines += buf[got++] == '\n';
	}
	buf[got] = '\0';
	/* Each wrote on its fd 3, and none inherited fd 200. */
	assert_non_null(strstr(buf, "up-signer\n"));
	assert_non_null(strstr(buf, "up-engine\n"));
	assert_non_null(strstr(buf, "up-rpc\n"));
	assert_null(strstr(buf, "LEAK"));
	assert_int_equal(write(o->stop_w, "x", 1), 1);
	return P11CA_OK;
}

static void on_stopping(void *arg)
{
	((struct order *)arg)->stopping++;
}

static void closed_extra(void *arg)
{
	struct order *o = arg;
	close(o->extra);
}

static void test_stop_order(void **state)
{
	(void)state;
	int report[2], stop[2];
	assert_int_equal(pipe(report), 0);
	assert_int_equal(pipe(stop), 0);
	struct order o = {.report_w = report[1], .report_r = report[0], .stop_w = stop[1]};
	struct sup_config cfg = {
		.backoff = {.min_ms = 1, .max_ms = 1, .reset_after_ms = 1},
		/* Long enough for a loaded machine to run each shell's trap: a SIGKILLed
		 * child would not report its name. */
		.grace_ms = 1000,
		.stop_fd = stop[0],
	};
	struct sup_ops ops = {.arg = &o,
			      .prepare = prep_three,
			      .started = all_up,
			      .stopping = on_stopping,
			      .stopped = closed_extra};
	assert_int_equal(sup_run(&cfg, &ops, NULL), P11CA_OK);
	assert_int_equal(o.stopping, 1);
	close(report[1]);
	char buf[128] = {0};
	size_t got = 0;
	ssize_t r;
	while ((r = read(report[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)r;
	/* rpc first, then the engine, then the signer (SIGTERM only after the grace time). */
	assert_string_equal(buf, "rpc\nengine\nsigner\n");
	close(report[0]);
	close(stop[0]);
	close(stop[1]);
}

static void test_stop_escalates_to_kill(void **state)
{
	(void)state;
	static char *const stubborn[] = {"/bin/sh", "-c",
					 "trap '' TERM; echo up >&3; "
					 "while :; do read x <&3; done",
					 NULL};
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct sup_child c = {.name = "stubborn",
			      .argv = stubborn,
			      .term_on_stop = 1,
			      .n_fds = 1,
			      .fds = {p[1]},
			      .pidfd = -1};
	assert_int_equal(sup_spawn(&c, NULL), P11CA_OK);
	assert_int_equal(c.fds[0], -1); /* the parent's copy was closed */
	char b[3];
	assert_int_equal(read(p[0], b, 3), 3); /* "up\n": its trap is in place */
	sup_stop_all(&c, 1, 50, NULL);
	assert_int_equal(c.pid, 0);
	assert_int_equal(c.pidfd, -1);
	int st;
	assert_int_equal(sup_wait(&c, 0, &st), 0); /* not running any more */
	close(p[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_status_text),
		cmocka_unit_test(test_restart_whole_set),
		cmocka_unit_test(test_missing_program_and_stop_in_backoff),
		cmocka_unit_test(test_stop_order),
		cmocka_unit_test(test_stop_escalates_to_kill),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
