/*
 * hsm/ under injected faults: SoftHSM2 wrapped by libp11fault.so (docs/p11fault.md). Each
 * test gets its own token directory and its own p11fault log, so what the test asserts about
 * PKCS#11 calls ("exactly one new C_Login", "one C_Sign with that rv") is read from the log
 * of the calls hsm/ really made.
 *
 * The shim reads P11FAULT_CONTROL and P11FAULT_LOG once per process, so the control file is
 * one per suite; every version of it names the current test's log with a `log` line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/kconfig.h"
#include "hsm/hsm.h"
#include "tests/softhsm/fixture.h"
#include "tests/softhsm/hsm/helpers.h"
#include "hsm/internal.h"	   /* white box: drop_epoch and login_lock */
#include "tests/softhsm/hsm/raw.h" /* last: pkcs11.h */

#define TOKEN  "fault"
#define MSG    "p11ca fault test message"
#define MSGP   ((const uint8_t *)MSG)
#define MSGLEN (sizeof(MSG) - 1)

#define CROWD_MAX 128

static char control_path[4096];

/* ---- per-test state ------------------------------------------------------------------- */

struct ft {
	struct softhsm_fixture fx;
	char log_path[4200];
	struct t_log log;
	struct hsm_ctx *ctx;
	struct hsm_token *tok; /* the token under test, through the shim */
	struct hsm_key *key;   /* a P-256 key on it, "k1" */
	struct hsm_token *more_toks[4];
	struct hsm_key *more_keys[8];
};

/* Replace the control file: the test's log plus `rules`. */
static void ctl(struct ft *ft, const char *rules)
{
	char text[8192];
	int n = snprintf(text, sizeof(text), "log %s\n%s\n", ft->log_path, rules);

	assert_true(n > 0 && (size_t)n < sizeof(text));
	fprintf(stderr, "control: %s\n", rules[0] ? rules : "(no faults)");
	assert_int_equal(p11fault_control_write(control_path, text), 0);
}

/*
 * Replace the control file with rules that include `reboot`, and make the reboot happen
 * now: the shim carries it out in the first PKCS#11 call after the change, in that call's
 * thread and without stopping calls already under way. Triggered by a call of our own
 * (C_GetInfo through the same module instance), the reboot is over before any thread
 * under test makes a call — so what the test counts afterwards is hsm/'s doing alone.
 */
static void ctl_reboot_now(struct ft *ft, const char *rules)
{
	CK_FUNCTION_LIST *fn = t_raw_module(p11fault_module_path());
	CK_INFO info;

	ctl(ft, rules);
	assert_non_null(fn);
	assert_int_equal(fn->C_GetInfo(&info), CKR_OK);
}

/* Lines of this test's p11fault log that contain every given substring. */
#define LOGN(ft, ...) log_count((ft), __VA_ARGS__, (const char *)NULL)
static long log_count(struct ft *ft, ...) __attribute__((sentinel));
static long log_count(struct ft *ft, ...)
{
	const char *s[8];
	size_t n = 0;
	va_list ap;

	va_start(ap, ft);
	while (n < 8 && (s[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	assert_true(n < 8);
	s[n] = NULL;
	for (size_t i = n + 1; i < 8; i++)
		s[i] = NULL;
	long c = p11fault_log_count(ft->log_path, s[0], s[1], s[2], s[3], s[4], s[5], s[6],
				    (const char *)NULL);
	assert_true(c >= 0);
	return c;
}

/* Function names end with a blank in the log: "fn=C_Sign " is not "fn=C_SignInit". */
#define FN_LOGIN   "fn=C_Login "
#define FN_SIGN	   "fn=C_Sign "
#define FN_OPEN	   "fn=C_OpenSession "
#define RV_OK	   "rv=CKR_OK "
#define RV_PIN_BAD "rv=CKR_PIN_INCORRECT "

static int t_setup(void **state)
{
	struct ft *ft = calloc(1, sizeof(*ft));
	struct p11ca_errmsg em = {0};

	if (ft == NULL || softhsm_fixture_setup(&ft->fx, TOKEN, T_SO_PIN, T_PIN) != 0)
		return -1;
	snprintf(ft->log_path, sizeof(ft->log_path), "%s/p11fault.log", ft->fx.dir);
	/* A fresh log and no faults before the module is loaded. */
	char text[4400];
	snprintf(text, sizeof(text), "log %s\n", ft->log_path);
	if (p11fault_control_write(control_path, text) != 0)
		return -1;
	t_log_init(&ft->log);
	if (hsm_ctx_new(&ft->log.logger, &ft->ctx, &em) != P11CA_OK) {
		fprintf(stderr, "hsm_ctx_new: %s\n", em.text);
		return -1;
	}
	*state = ft;
	return 0;
}

static int t_teardown(void **state)
{
	struct ft *ft = *state;
	int rc = 0;
	char text[4400];

	/* Lift every fault first (a hang would keep a thread in the module). */
	snprintf(text, sizeof(text), "log %s\n", ft->log_path);
	(void)p11fault_control_write(control_path, text);
	hsm_key_free(&ft->key);
	for (size_t i = 0; i < sizeof(ft->more_keys) / sizeof(ft->more_keys[0]); i++)
		hsm_key_free(&ft->more_keys[i]);
	hsm_token_close(&ft->tok);
	for (size_t i = 0; i < sizeof(ft->more_toks) / sizeof(ft->more_toks[0]); i++)
		hsm_token_close(&ft->more_toks[i]);
	hsm_ctx_free(&ft->ctx);
	if (ft->log.text != NULL && t_has_pin(ft->log.text)) {
		fprintf(stderr, "a PIN appeared in the hsm log:\n%s\n", ft->log.text);
		rc = -1;
	}
	/* The shim logs no PINs either (and proves hsm/ passed none where it logs). */
	if (p11fault_log_count(ft->log_path, T_PIN, NULL) > 0 ||
	    p11fault_log_count(ft->log_path, T_WRONG_PIN, NULL) > 0)
		rc = -1;
	t_log_free(&ft->log);
	softhsm_fixture_teardown(&ft->fx);
	free(ft);
	return rc;
}

static void print_err(const char *what, enum p11ca_err got, enum p11ca_err want,
		      const struct p11ca_errmsg *em)
{
	fprintf(stderr, "%s: got %s, want %s; message: %s\n", what, p11ca_err_name(got),
		p11ca_err_name(want), em ? em->text : "(none)");
}

#define expect_err(call, want, em)                                                                 \
	do {                                                                                       \
		enum p11ca_err got_ = (call);                                                      \
		if (got_ != (want))                                                                \
			print_err(#call, got_, (want), (em));                                      \
		assert_string_equal(p11ca_err_name(got_), p11ca_err_name(want));                   \
		assert_false(t_has_pin((em)->text));                                               \
	} while (0)

#define assert_contains(text, needle)                                                              \
	do {                                                                                       \
		if (strstr((text), (needle)) == NULL)                                              \
			fprintf(stderr, "'%s' not in: %s\n", (needle), (text));                    \
		assert_non_null(strstr((text), (needle)));                                         \
	} while (0)

static enum p11ca_err login_pin(struct hsm_token *tok, const char *pin, struct p11ca_errmsg *em)
{
	struct p11ca_secret *s = t_secret(pin);
	enum p11ca_err err;

	assert_non_null(s);
	err = hsm_token_login(tok, s, em);
	p11ca_secret_free(&s);
	return err;
}

static enum p11ca_err open_shim(struct ft *ft, unsigned pool, unsigned busy_ms,
				struct hsm_token **out, struct p11ca_errmsg *em)
{
	struct hsm_token_config cfg = {.module_path = p11fault_module_path(),
				       .uri = "pkcs11:token=" TOKEN,
				       .pool_size = pool,
				       .busy_timeout_ms = busy_ms};
	return hsm_token_open(ft->ctx, &cfg, out, em);
}

/* Open the token through the shim; with `ready`, log in and make the P-256 key "k1". */
static void ft_open(struct ft *ft, unsigned pool, unsigned busy_ms, bool ready)
{
	struct p11ca_errmsg em = {0};

	expect_err(open_shim(ft, pool, busy_ms, &ft->tok, &em), P11CA_OK, &em);
	if (!ready)
		return;
	expect_err(login_pin(ft->tok, T_PIN, &em), P11CA_OK, &em);
	expect_err(hsm_key_generate(ft->tok, HSM_KEY_P256, "k1", &ft->key, &em), P11CA_OK, &em);
}

static struct hsm_key *more_key(struct ft *ft, enum hsm_key_type type, const char *label)
{
	struct p11ca_errmsg em = {0};

	for (size_t i = 0; i < sizeof(ft->more_keys) / sizeof(ft->more_keys[0]); i++) {
		if (ft->more_keys[i] == NULL) {
			expect_err(hsm_key_generate(ft->tok, type, label, &ft->more_keys[i], &em),
				   P11CA_OK, &em);
			return ft->more_keys[i];
		}
	}
	fail_msg("too many keys");
	return NULL;
}

static struct hsm_status status_of(struct hsm_token *tok)
{
	struct hsm_status st;
	struct p11ca_errmsg em = {0};

	expect_err(hsm_token_status(tok, &st, &em), P11CA_OK, &em);
	assert_false(t_has_pin(st.last_error_text));
	return st;
}

/* Sign MSG; a signature that comes back must verify outside hsm/. *ms: how long it took. */
static enum p11ca_err sign(struct hsm_key *key, enum hsm_sig_alg alg, struct p11ca_errmsg *em,
			   double *ms)
{
	uint8_t sig[HSM_SIG_MAX];
	size_t len = 0;
	double t0 = t_now_ms();
	enum p11ca_err err = hsm_sign(key, alg, MSGP, MSGLEN, sig, sizeof(sig), &len, em);

	if (ms != NULL)
		*ms = t_now_ms() - t0;
	if (err == P11CA_OK && t_verify(hsm_key_public(key), alg, MSGP, MSGLEN, sig, len) != 1)
		return P11CA_E_INTERNAL; /* a signature that does not verify came out */
	if (err != P11CA_OK && len != 0)
		return P11CA_E_INTERNAL; /* a failure that still claims a signature */
	return err;
}

static void sign_ok(struct hsm_key *key)
{
	struct p11ca_errmsg em = {0};
	expect_err(sign(key, HSM_SIG_ECDSA_SHA256, &em, NULL), P11CA_OK, &em);
}

/* ---- a crowd of threads that start together ---------------------------------------- */

enum crowd_op { OP_SIGN, OP_LOGIN_WRONG, OP_FIND_K1 };

struct crowd {
	struct ft *ft;
	struct hsm_token *tok;
	struct hsm_key *key;
	pthread_barrier_t start;
	enum crowd_op op[CROWD_MAX];
	unsigned repeat; /* signs per thread for OP_SIGN */
	enum p11ca_err err[CROWD_MAX];
	char text[CROWD_MAX][384];
	unsigned ok[CROWD_MAX];
};

struct crowd_arg {
	struct crowd *c;
	unsigned i;
};

static void *crowd_thread(void *varg)
{
	struct crowd_arg *a = varg;
	struct crowd *c = a->c;
	unsigned i = a->i;
	struct p11ca_errmsg em = {0};
	struct hsm_key *found = NULL;

	pthread_barrier_wait(&c->start);
	switch (c->op[i]) {
	case OP_SIGN:
		for (unsigned r = 0; r < (c->repeat ? c->repeat : 1); r++) {
			p11ca_errmsg_clear(&em);
			c->err[i] = sign(c->key, HSM_SIG_ECDSA_SHA256, &em, NULL);
			if (c->err[i] != P11CA_OK)
				break;
			c->ok[i]++;
		}
		break;
	case OP_LOGIN_WRONG:
		c->err[i] = login_pin(c->tok, T_WRONG_PIN, &em);
		break;
	case OP_FIND_K1:
		c->err[i] = hsm_key_find(c->tok, "k1", NULL, 0, &found, &em);
		hsm_key_free(&found);
		break;
	}
	snprintf(c->text[i], sizeof(c->text[i]), "%s", em.text);
	return NULL;
}

static void crowd_run(struct crowd *c, unsigned n)
{
	pthread_t th[CROWD_MAX];
	struct crowd_arg args[CROWD_MAX];

	assert_true(n <= CROWD_MAX);
	pthread_barrier_init(&c->start, NULL, n);
	for (unsigned i = 0; i < n; i++) {
		args[i] = (struct crowd_arg){c, i};
		assert_int_equal(pthread_create(&th[i], NULL, crowd_thread, &args[i]), 0);
	}
	for (unsigned i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&c->start);
}

/* How many of the crowd got `err`; prints the others. */
static unsigned crowd_count(const struct crowd *c, unsigned n, enum p11ca_err err)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++) {
		if (c->err[i] == err)
			k++;
		else
			fprintf(stderr, "thread %u: %s %s\n", i, p11ca_err_name(c->err[i]),
				c->text[i]);
		assert_false(t_has_pin(c->text[i]));
	}
	return k;
}

/* ---- device removed ---------------------------------------------------------------------- */

#define REMOVE_MS 3000
#define BUSY_MS	  2000

struct remover {
	struct hsm_key *key;
	double until;  /* keep signing until then */
	double max_ms; /* the slowest call */
	unsigned calls, unavailable, other;
	char other_text[512];
};

static void *remove_worker(void *varg)
{
	struct remover *r = varg;

	while (t_now_ms() < r->until) {
		struct p11ca_errmsg em = {0};
		double ms = 0;
		enum p11ca_err err = sign(r->key, HSM_SIG_ECDSA_SHA256, &em, &ms);

		r->calls++;
		if (ms > r->max_ms)
			r->max_ms = ms;
		if (t_has_pin(em.text))
			r->other += 1000; /* a PIN in a message: fails the test */
		if (err == P11CA_E_HSM_UNAVAILABLE) {
			r->unavailable++;
		} else if (r->other++ == 0) {
			snprintf(r->other_text, sizeof(r->other_text), "%s: %s",
				 p11ca_err_name(err), em.text);
		}
		t_pause_ms(20);
	}
	return NULL;
}

static void test_device_removed(void **state)
{
	struct ft *ft = *state;
	struct p11ca_errmsg em = {0};

	ft_open(ft, 2, BUSY_MS, true);
	sign_ok(ft->key);
	long logins = LOGN(ft, FN_LOGIN, RV_OK), opens = LOGN(ft, "fn=C_Initialize ");
	struct hsm_status st0 = status_of(ft->tok);

	ctl(ft, "remove ms="
		"3000");
	double t0 = t_now_ms();

	/* During the window: every call fails fast, from several threads at once. */
	struct remover r[3];
	pthread_t th[3];
	for (int i = 0; i < 3; i++) {
		r[i] = (struct remover){.key = ft->key, .until = t0 + REMOVE_MS - 500};
		assert_int_equal(pthread_create(&th[i], NULL, remove_worker, &r[i]), 0);
	}
	unsigned main_calls = 0;
	while (t_now_ms() < t0 + REMOVE_MS - 500) {
		double ms = 0;
		p11ca_errmsg_clear(&em);
		expect_err(sign(ft->key, HSM_SIG_ECDSA_SHA256, &em, &ms), P11CA_E_HSM_UNAVAILABLE,
			   &em);
		assert_true(ms < BUSY_MS / 2);
		/* What failed and what to do. */
		assert_contains(em.text, TOKEN);
		assert_contains(em.text, "unavailable");
		assert_contains(em.text, "check the HSM");
		main_calls++;
		t_pause_ms(50);
	}
	struct hsm_status st = status_of(ft->tok);
	assert_false(st.token_present);
	assert_int_equal(st.last_error, P11CA_E_HSM_UNAVAILABLE);
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		fprintf(stderr, "worker %d: %u calls, %u unavailable, slowest %.0f ms %s\n", i,
			r[i].calls, r[i].unavailable, r[i].max_ms, r[i].other_text);
		assert_int_equal(r[i].other, 0);
		assert_true(r[i].calls >= 3);
		assert_true(r[i].max_ms < BUSY_MS / 2);
	}
	assert_true(main_calls >= 5);
	assert_true(t_now_ms() < t0 + REMOVE_MS); /* all of the above ran inside the window */

	/* After the window: signing comes back by itself. No call of the test reopens the
	 * token or gives the PIN again; a call that starts after the window succeeds. */
	double first_ok = 0;
	while (t_now_ms() < t0 + REMOVE_MS + 5000) {
		double started = t_now_ms();
		p11ca_errmsg_clear(&em);
		enum p11ca_err err = sign(ft->key, HSM_SIG_ECDSA_SHA256, &em, NULL);
		if (err == P11CA_OK) {
			first_ok = started;
			break;
		}
		expect_err(err, P11CA_E_HSM_UNAVAILABLE, &em);
		assert_true(started < t0 + REMOVE_MS + 100);
		t_pause_ms(50);
	}
	fprintf(stderr, "first success %.0f ms after the removal began\n", first_ok - t0);
	assert_true(first_ok >= t0 + REMOVE_MS - 50);
	for (int i = 0; i < 5; i++)
		sign_ok(ft->key);

	/* One re-login with the kept PIN; the module was re-initialised along the way. */
	assert_int_equal(LOGN(ft, FN_LOGIN, RV_OK) - logins, 1);
	assert_true(LOGN(ft, "fn=C_Initialize ") > opens);
	st = status_of(ft->tok);
	assert_true(st.token_present);
	assert_true(st.logged_in);
	assert_true(st.recoveries > st0.recoveries);
	assert_int_equal(st.signatures - st0.signatures, 5 + 1);
}

/* ---- reboot, logout, not logged in --------------------------------------------------- */

static void test_reboot_relogs_in_once(void **state)
{
	struct ft *ft = *state;
	struct crowd c = {.ft = ft};

	ft_open(ft, 2, 5000, true);
	/* Both sessions of the pool in use before the reboot. */
	c.key = ft->key;
	c.repeat = 10;
	crowd_run(&c, 4);
	assert_int_equal(crowd_count(&c, 4, P11CA_OK), 4);
	struct hsm_status st0 = status_of(ft->tok);
	long logins = LOGN(ft, FN_LOGIN), logins_ok = LOGN(ft, FN_LOGIN, RV_OK);

	ctl_reboot_now(ft, "reboot");
	memset(c.err, 0, sizeof(c.err));
	crowd_run(&c, 4);
	assert_int_equal(crowd_count(&c, 4, P11CA_OK), 4);

	/* Exactly one successful C_Login; a racing second attempt may only have been told
	 * "already logged in". */
	assert_int_equal(LOGN(ft, FN_LOGIN, RV_OK) - logins_ok, 1);
	assert_int_equal(LOGN(ft, FN_LOGIN) - logins - 1,
			 LOGN(ft, FN_LOGIN, "rv=CKR_USER_ALREADY_LOGGED_IN "));
	assert_int_equal(LOGN(ft, "fault=reboot"), 1);
	struct hsm_status st = status_of(ft->tok);
	assert_true(st.logged_in);
	assert_int_equal(st.failures, st0.failures);
	assert_true(st.recoveries > st0.recoveries);
	assert_int_equal(st.signatures - st0.signatures, 40);
}

/* A reboot kills every session of a full pool at once. The next signature must not spend
 * its recovery steps discovering the dead sessions one by one. */
static void test_reboot_with_full_pool(void **state)
{
	struct ft *ft = *state;
	struct crowd c = {.ft = ft};

	ft_open(ft, 8, 10000, true);
	/* Fill the pool: 16 signers that each hold a session a while. */
	ctl(ft, "delay C_Sign 30");
	c.key = ft->key;
	c.repeat = 3;
	crowd_run(&c, 16);
	assert_int_equal(crowd_count(&c, 16, P11CA_OK), 16);
	assert_int_equal(status_of(ft->tok).sessions_open, 8);

	ctl_reboot_now(ft, "reboot");
	struct p11ca_errmsg em = {0};
	expect_err(sign(ft->key, HSM_SIG_ECDSA_SHA256, &em, NULL), P11CA_OK, &em);
	sign_ok(ft->key);
	assert_true(status_of(ft->tok).logged_in);
}

/* A token reboot under load: every session of a full pool dies at once and the token hands
 * out the same handle numbers again. Nothing may fail, and no thread may use (or close) a
 * session another thread has just opened under an old handle's number — SoftHSM2 crashes
 * (SIGSEGV in C_Sign) when one thread closes the session another is signing in. */
static void test_reboot_under_load(void **state)
{
	struct ft *ft = *state;
	unsigned failed = 0;

	ft_open(ft, 8, 10000, true);
	for (int round = 0; round < 10; round++) {
		struct crowd c = {.ft = ft, .key = ft->key, .repeat = 5};

		crowd_run(&c, 16); /* opens the whole pool */
		failed += 16 - crowd_count(&c, 16, P11CA_OK);
		ctl_reboot_now(ft, "reboot");
		memset(c.err, 0, sizeof(c.err));
		crowd_run(&c, 16);
		unsigned ok = crowd_count(&c, 16, P11CA_OK);
		fprintf(stderr, "round %d: %u of 16 threads signed through the reboot\n", round,
			ok);
		failed += 16 - ok;
	}
	assert_int_equal(failed, 0);
	assert_int_equal(LOGN(ft, "fault=reboot"), 10);
}

static void test_not_logged_in_relogs_in(void **state)
{
	struct ft *ft = *state;

	ft_open(ft, 2, 5000, true);
	sign_ok(ft->key);
	long logins = LOGN(ft, FN_LOGIN);
	struct hsm_status st0 = status_of(ft->tok);

	ctl(ft, "fail C_Sign CKR_USER_NOT_LOGGED_IN count=1");
	sign_ok(ft->key);
	assert_int_equal(LOGN(ft, FN_SIGN, "rv=CKR_USER_NOT_LOGGED_IN "), 1);
	assert_int_equal(LOGN(ft, FN_LOGIN) - logins, 1);
	sign_ok(ft->key);
	assert_int_equal(LOGN(ft, FN_LOGIN) - logins, 1);
	struct hsm_status st = status_of(ft->tok);
	assert_int_equal(st.recoveries - st0.recoveries, 1);
	assert_int_equal(st.failures, st0.failures);
}

static void test_real_logout_recovers(void **state)
{
	struct ft *ft = *state;
	CK_FUNCTION_LIST *fn;
	CK_SESSION_HANDLE s;

	ft_open(ft, 2, 5000, true);
	sign_ok(ft->key);
	long logins = LOGN(ft, FN_LOGIN, RV_OK);

	/* Another part of the process logs the application out, through the same module. */
	fn = t_raw_module(p11fault_module_path());
	assert_non_null(fn);
	assert_int_equal(t_raw_session(fn, TOKEN, &s), 0);
	assert_int_equal(fn->C_Logout(s), CKR_OK);
	assert_int_equal(fn->C_CloseSession(s), CKR_OK);
	assert_int_equal(LOGN(ft, "fn=C_Logout ", RV_OK), 1);

	sign_ok(ft->key);
	fprintf(stderr,
		"after C_Logout the token said: %ld x CKR_OBJECT_HANDLE_INVALID, %ld x "
		"CKR_USER_NOT_LOGGED_IN\n",
		LOGN(ft, "rv=CKR_OBJECT_HANDLE_INVALID "), LOGN(ft, "rv=CKR_USER_NOT_LOGGED_IN "));
	assert_int_equal(LOGN(ft, FN_LOGIN, RV_OK) - logins, 1);
	sign_ok(ft->key);
	assert_int_equal(LOGN(ft, FN_LOGIN, RV_OK) - logins, 1);
	assert_true(status_of(ft->tok).recoveries >= 1);
}

/* Runs without fault rules: SoftHSM2 itself loses the token when its directory goes. */
static void test_token_directory_moved(void **state)
{
	struct ft *ft = *state;
	char away[4200];
	struct p11ca_errmsg em = {0};

	ft_open(ft, 2, BUSY_MS, true);
	sign_ok(ft->key);
	long inits = LOGN(ft, "fn=C_Initialize ", RV_OK);

	snprintf(away, sizeof(away), "%s.away", ft->fx.tokendir);
	assert_int_equal(rename(ft->fx.tokendir, away), 0);
	for (int i = 0; i < 3; i++) {
		double ms = 0;
		p11ca_errmsg_clear(&em);
		enum p11ca_err err = sign(ft->key, HSM_SIG_ECDSA_SHA256, &em, &ms);
		fprintf(stderr, "while moved: %s in %.0f ms: %s\n", p11ca_err_name(err), ms,
			em.text);
		assert_true(err == P11CA_E_HSM_UNAVAILABLE || err == P11CA_E_HSM_KEY_NOT_FOUND);
		assert_false(t_has_pin(em.text));
		assert_true(ms < BUSY_MS);
		/* It names the token (or the key) and says where to look. */
		assert_true(strstr(em.text, TOKEN) != NULL || strstr(em.text, "k1") != NULL);
		assert_true(strstr(em.text, "check") != NULL || strstr(em.text, "list") != NULL);
	}
	struct hsm_status st = status_of(ft->tok);
	fprintf(stderr, "status while moved: present %d, logged in %d, keys %ld\n",
		st.token_present, st.logged_in, st.key_count);
	assert_true(st.last_error == P11CA_E_HSM_UNAVAILABLE ||
		    st.last_error == P11CA_E_HSM_KEY_NOT_FOUND);

	assert_int_equal(rename(away, ft->fx.tokendir), 0);
	/* Back: the next call recovers (C_Finalize + C_Initialize, login, find) by itself. */
	sign_ok(ft->key);
	sign_ok(ft->key);
	assert_true(LOGN(ft, "fn=C_Initialize ", RV_OK) > inits);
	assert_true(LOGN(ft, "fn=C_Finalize ") >= 1);
	st = status_of(ft->tok);
	assert_true(st.token_present);
	assert_true(st.logged_in);
	assert_int_equal(st.key_count, 1);
}

/* ---- the PIN under pressure ----------------------------------------------------------- */

/* The security officer changes the user PIN on the token behind p11ca's back (here through
 * a raw session of the same process): the PIN p11ca holds is wrong from now on, which shows
 * at its next login. */
static void change_pin_out_of_band(const char *old_pin, const char *new_pin)
{
	CK_FUNCTION_LIST *fn = t_raw_module(p11fault_module_path());
	CK_SESSION_HANDLE s;

	assert_non_null(fn);
	assert_int_equal(t_raw_session(fn, TOKEN, &s), 0);
	CK_RV rv = fn->C_SetPIN(s, (CK_UTF8CHAR_PTR)old_pin, strlen(old_pin),
				(CK_UTF8CHAR_PTR)new_pin, strlen(new_pin));
	fn->C_CloseSession(s);
	assert_int_equal(rv, CKR_OK);
}

/* A wrong PIN reaches the token at most once, then every operation fails fast with the same
 * error and no C_Login, until the right PIN is given. */
static void test_wrong_pin_fails_fast_then_recovers(void **state)
{
	struct ft *ft = *state;
	struct p11ca_errmsg em = {0};

	ft_open(ft, 2, 5000, true);
	sign_ok(ft->key);
	change_pin_out_of_band(T_PIN, T_PIN_B);

	ctl_reboot_now(ft, "reboot"); /* the token forgets the login: the held PIN is used */
	p11ca_errmsg_clear(&em);
	expect_err(sign(ft->key, HSM_SIG_ECDSA_SHA256, &em, NULL), P11CA_E_HSM_PIN_INCORRECT, &em);
	assert_contains(em.text, "PIN");
	assert_int_equal(LOGN(ft, FN_LOGIN, RV_PIN_BAD), 1);
	long logins = LOGN(ft, FN_LOGIN);
	for (int i = 0; i < 20; i++) {
		double ms = 0;
		p11ca_errmsg_clear(&em);
		expect_err(sign(ft->key, HSM_SIG_ECDSA_SHA256, &em, &ms), P11CA_E_HSM_PIN_INCORRECT,
			   &em);
		assert_true(ms < 200);
	}
	assert_int_equal(LOGN(ft, FN_LOGIN), logins);
	struct hsm_status st = status_of(ft->tok);
	assert_true(st.pin_refused);
	assert_false(st.logged_in);
	assert_int_equal(st.last_error, P11CA_E_HSM_PIN_INCORRECT);

	/* The old PIN again is refused without a try; the new one works. */
	p11ca_errmsg_clear(&em);
	expect_err(login_pin(ft->tok, T_PIN, &em), P11CA_E_HSM_PIN_INCORRECT, &em);
	assert_int_equal(LOGN(ft, FN_LOGIN), logins);
	p11ca_errmsg_clear(&em);
	expect_err(login_pin(ft->tok, T_PIN_B, &em), P11CA_OK, &em);
	sign_ok(ft->key);
	assert_int_equal(LOGN(ft, FN_LOGIN, RV_OK), 2); /* the first login, and this one */
	assert_int_equal(LOGN(ft, FN_LOGIN, RV_PIN_BAD), 1);
}

/* hsm_token_login with a wrong PIN on a token that is logged in must not report success for
 * a PIN nobody checked: the operator would be told the activation worked, and the next
 * token reboot would then spend a PIN try and stop signing. */
static void test_wrong_pin_while_logged_in_is_not_accepted(void **state)
{
	struct ft *ft = *state;
	struct p11ca_errmsg em = {0};

	ft_open(ft, 2, 5000, true);
	long logins = LOGN(ft, FN_LOGIN);
	enum p11ca_err err = login_pin(ft->tok, T_WRONG_PIN, &em);
	long tried = LOGN(ft, FN_LOGIN) - logins;
	fprintf(stderr, "wrong PIN while logged in: %s (%ld C_Login) %s\n", p11ca_err_name(err),
		tried, em.text);
	/* Either the token checked it, or hsm_token_login did not claim success. */
	assert_true(err != P11CA_OK || tried > 0);
	assert_false(err == P11CA_OK && status_of(ft->tok).pin_refused);
	if (tried == 0) {
		/* Not checked, so not used: the PIN that works stays in force, and the next
		 * reboot costs no PIN try. */
		long ok = LOGN(ft, FN_LOGIN, RV_OK);
		ctl_reboot_now(ft, "reboot");
		sign_ok(ft->key);
		assert_int_equal(LOGN(ft, FN_LOGIN, RV_OK) - ok, 1);
		assert_int_equal(LOGN(ft, FN_LOGIN, RV_PIN_BAD), 0);
	}
}

/* 100 signers discover at once that the token forgot its login, and the held PIN is wrong. */
static void test_wrong_pin_100_signers(void **state)
{
	struct ft *ft = *state;
	struct crowd c = {.ft = ft};
	struct p11ca_errmsg em = {0};

	ft_open(ft, 2, 20000, true);
	change_pin_out_of_band(T_PIN, T_PIN_B);
	ctl_reboot_now(ft, "reboot");
	long logins = LOGN(ft, FN_LOGIN);

	c.key = ft->key;
	crowd_run(&c, 100);
	assert_int_equal(crowd_count(&c, 100, P11CA_E_HSM_PIN_INCORRECT), 100);
	for (unsigned i = 0; i < 100; i++)
		assert_contains(c.text[i], "PIN");
	fprintf(stderr, "C_Login calls by the crowd: %ld\n", LOGN(ft, FN_LOGIN) - logins);
	assert_true(LOGN(ft, FN_LOGIN) - logins <= 1);
	assert_int_equal(LOGN(ft, FN_LOGIN, RV_PIN_BAD), 1);

	p11ca_errmsg_clear(&em);
	expect_err(login_pin(ft->tok, T_PIN_B, &em), P11CA_OK, &em);
	sign_ok(ft->key);
}

/* The first login, with a wrong PIN, is slow; 99 lookups pile up behind it. */
static void test_wrong_pin_first_login_in_flight(void **state)
{
	struct ft *ft = *state;
	struct crowd c = {.ft = ft};

	ft_open(ft, 2, 20000, false);
	ctl(ft, "delay C_Login 300");
	c.tok = ft->tok;
	c.op[0] = OP_LOGIN_WRONG;
	for (unsigned i = 1; i < 100; i++)
		c.op[i] = OP_FIND_K1;
	crowd_run(&c, 100);

	assert_int_equal(c.err[0], P11CA_E_HSM_PIN_INCORRECT);
	unsigned incorrect = 0, no_pin = 0;
	for (unsigned i = 1; i < 100; i++) {
		incorrect += c.err[i] == P11CA_E_HSM_PIN_INCORRECT;
		no_pin += c.err[i] == P11CA_E_HSM_NO_PIN;
		assert_false(t_has_pin(c.text[i]));
	}
	fprintf(stderr, "lookups: %u PIN incorrect, %u no PIN\n", incorrect, no_pin);
	assert_int_equal(incorrect + no_pin, 99);
	assert_int_equal(LOGN(ft, FN_LOGIN), 1);
	assert_int_equal(LOGN(ft, FN_LOGIN, RV_PIN_BAD), 1);
}

/* 100 activations with the same wrong PIN at once: the token must see it at most once. */
static void test_wrong_pin_100_concurrent_logins(void **state)
{
	struct ft *ft = *state;
	struct crowd c = {.ft = ft};
	struct p11ca_errmsg em = {0};

	ft_open(ft, 2, 60000, false);
	/* A real HSM takes a while to check a PIN. */
	ctl(ft, "delay C_Login 10");
	c.tok = ft->tok;
	for (unsigned i = 0; i < 100; i++)
		c.op[i] = OP_LOGIN_WRONG;
	crowd_run(&c, 100);
	assert_int_equal(crowd_count(&c, 100, P11CA_E_HSM_PIN_INCORRECT), 100);
	fprintf(stderr, "C_Login with the wrong PIN: %ld\n", LOGN(ft, FN_LOGIN, RV_PIN_BAD));
	assert_true(LOGN(ft, FN_LOGIN, RV_PIN_BAD) <= 1);

	expect_err(login_pin(ft->tok, T_PIN, &em), P11CA_OK, &em);
}

/* The same storm against a token that counts PIN tries: whatever else happens, it is never
 * locked, because p11ca stops at CKF_USER_PIN_FINAL_TRY. */
static void test_wrong_pin_storm_never_locks(void **state)
{
	struct ft *ft = *state;
	struct crowd c = {.ft = ft};

	ft_open(ft, 4, 60000, false);
	ctl(ft, "pin-tries 3\ndelay C_Login 10");
	c.tok = ft->tok;
	for (unsigned i = 0; i < 100; i++)
		c.op[i] = i % 2 ? OP_LOGIN_WRONG : OP_FIND_K1;
	crowd_run(&c, 100);
	for (unsigned i = 0; i < 100; i++) {
		assert_true(c.err[i] == P11CA_E_HSM_PIN_INCORRECT ||
			    c.err[i] == P11CA_E_HSM_PIN_FINAL_TRY ||
			    c.err[i] == P11CA_E_HSM_NO_PIN);
		assert_false(t_has_pin(c.text[i]));
	}
	fprintf(stderr, "C_Login with the wrong PIN: %ld\n", LOGN(ft, FN_LOGIN, RV_PIN_BAD));
	assert_true(LOGN(ft, FN_LOGIN, RV_PIN_BAD) <= 2);
	assert_int_equal(LOGN(ft, FN_LOGIN, "rv=CKR_PIN_LOCKED "), 0);
	struct hsm_status st = status_of(ft->tok);
	assert_false(st.pin_locked);
}

static void test_pin_final_try_refused(void **state)
{
	struct ft *ft = *state;
	struct p11ca_errmsg em = {0};
	struct hsm_key *key = NULL;

	ft_open(ft, 2, 5000, false);
	ctl(ft, "pin-tries 2");
	expect_err(login_pin(ft->tok, T_WRONG_PIN, &em), P11CA_E_HSM_PIN_INCORRECT, &em);
	assert_int_equal(LOGN(ft, FN_LOGIN), 1);
	struct hsm_status st = status_of(ft->tok);
	assert_true(st.pin_final_try);
	assert_true(st.pin_count_low);
	assert_false(st.pin_locked);

	/* One try left: not even the right PIN is risked. */
	p11ca_errmsg_clear(&em);
	expect_err(login_pin(ft->tok, T_PIN, &em), P11CA_E_HSM_PIN_FINAL_TRY, &em);
	assert_contains(em.text, "PIN");
	assert_contains(em.text, TOKEN);
	p11ca_errmsg_clear(&em);
	expect_err(hsm_key_find(ft->tok, "k1", NULL, 0, &key, &em), P11CA_E_HSM_PIN_FINAL_TRY, &em);
	assert_int_equal(LOGN(ft, FN_LOGIN), 1);
	assert_int_equal(status_of(ft->tok).last_error, P11CA_E_HSM_PIN_FINAL_TRY);
	/* Nor by 100 callers at once. */
	struct crowd c = {.ft = ft, .tok = ft->tok};
	for (unsigned i = 0; i < 100; i++)
		c.op[i] = OP_FIND_K1;
	crowd_run(&c, 100);
	assert_int_equal(crowd_count(&c, 100, P11CA_E_HSM_PIN_FINAL_TRY), 100);
	assert_int_equal(LOGN(ft, FN_LOGIN), 1);

	/* Counter reset out of band: the PIN works. */
	ctl(ft, "");
	p11ca_errmsg_clear(&em);
	expect_err(login_pin(ft->tok, T_PIN, &em), P11CA_OK, &em);
	assert_int_equal(LOGN(ft, FN_LOGIN, RV_OK), 1);
}

static void test_pin_locked_refused(void **state)
{
	struct ft *ft = *state;
	struct p11ca_errmsg em = {0};

	ft_open(ft, 2, 5000, false);
	ctl(ft, "pin-flags locked");
	expect_err(login_pin(ft->tok, T_PIN, &em), P11CA_E_HSM_PIN_LOCKED, &em);
	assert_contains(em.text, "locked");
	assert_int_equal(LOGN(ft, FN_LOGIN), 0);
	assert_true(status_of(ft->tok).pin_locked);

	/* count_low alone is only reported. */
	ctl(ft, "pin-flags count_low");
	p11ca_errmsg_clear(&em);
	expect_err(login_pin(ft->tok, T_PIN, &em), P11CA_OK, &em);
	assert_true(status_of(ft->tok).pin_count_low);
	expect_err(hsm_key_generate(ft->tok, HSM_KEY_P256, "k1", &ft->key, &em), P11CA_OK, &em);

	/* Locked while running: after a reboot the re-login is refused without a C_Login... */
	ctl_reboot_now(ft, "reboot\npin-flags locked");
	long logins = LOGN(ft, FN_LOGIN);
	p11ca_errmsg_clear(&em);
	expect_err(sign(ft->key, HSM_SIG_ECDSA_SHA256, &em, NULL), P11CA_E_HSM_PIN_LOCKED, &em);
	assert_int_equal(LOGN(ft, FN_LOGIN), logins);
	/* ...and once the token is unlocked, the held PIN logs in again. */
	ctl(ft, "");
	sign_ok(ft->key);
	assert_int_equal(LOGN(ft, FN_LOGIN) - logins, 1);

	/* A token that answers C_Login itself with CKR_PIN_LOCKED. */
	ctl_reboot_now(ft, "reboot\nfail C_Login CKR_PIN_LOCKED count=1");
	p11ca_errmsg_clear(&em);
	expect_err(sign(ft->key, HSM_SIG_ECDSA_SHA256, &em, NULL), P11CA_E_HSM_PIN_LOCKED, &em);
	logins = LOGN(ft, FN_LOGIN);
	p11ca_errmsg_clear(&em);
	enum p11ca_err again = sign(ft->key, HSM_SIG_ECDSA_SHA256, &em, NULL);
	fprintf(stderr, "after CKR_PIN_LOCKED: %s %s\n", p11ca_err_name(again), em.text);
	assert_int_equal(LOGN(ft, FN_LOGIN), logins);
	/* Still "locked", not "incorrect": re-entering the PIN cannot help, the security
	 * officer must unlock the token. */
	assert_string_equal(p11ca_err_name(again), p11ca_err_name(P11CA_E_HSM_PIN_LOCKED));
	assert_true(status_of(ft->tok).last_error == P11CA_E_HSM_PIN_LOCKED);
}

/* ---- bad signatures are never returned ---------------------------------------------------- */

static void test_flipped_signature_withheld(void **state)
{
	struct ft *ft = *state;
	const struct {
		enum hsm_key_type type;
		enum hsm_sig_alg alg;
	} cases[] = {
		{HSM_KEY_P256, HSM_SIG_ECDSA_SHA256},
		{HSM_KEY_ED25519, HSM_SIG_ED25519},
		{HSM_KEY_RSA2048, HSM_SIG_RSA_PKCS1_SHA256},
		{HSM_KEY_RSA2048, HSM_SIG_RSA_PSS_SHA256},
	};

	ft_open(ft, 2, 5000, true);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char label[32];
		snprintf(label, sizeof(label), "flip-%zu", i);
		struct hsm_key *key = more_key(ft, cases[i].type, label);
		struct hsm_status st0 = status_of(ft->tok);
		uint8_t sig[HSM_SIG_MAX];
		size_t len = 777;
		struct p11ca_errmsg em = {0};

		ctl(ft, "flip-sign count=1");
		memset(sig, 0xAA, sizeof(sig));
		expect_err(hsm_sign(key, cases[i].alg, MSGP, MSGLEN, sig, sizeof(sig), &len, &em),
			   P11CA_E_HSM_BAD_SIGNATURE, &em);
		assert_int_equal(len, 0);
		for (size_t b = 0; b < sizeof(sig); b++)
			assert_int_equal(sig[b], 0);
		assert_contains(em.text, "withheld");
		assert_contains(em.text, label);
		assert_int_equal(LOGN(ft, "fault=flip-sign"), (long)i + 1);

		struct hsm_status st = status_of(ft->tok);
		assert_int_equal(st.bad_signatures - st0.bad_signatures, 1);
		assert_int_equal(st.bad_signatures, i + 1);
		assert_int_equal(st.signatures, st0.signatures);
		assert_int_equal(st.last_error, P11CA_E_HSM_BAD_SIGNATURE);

		/* The count ran out: the next signature is good and returned. */
		p11ca_errmsg_clear(&em);
		expect_err(sign(key, cases[i].alg, &em, NULL), P11CA_OK, &em);
		assert_int_equal(status_of(ft->tok).signatures, st0.signatures + 1);
	}
}

/* ---- the session pool --------------------------------------------------------------------- */

static void test_session_cap_shrinks_pool(void **state)
{
	struct ft *ft = *state;
	struct crowd c = {.ft = ft};

	ft_open(ft, 4, 10000, true);
	struct hsm_status st0 = status_of(ft->tok);
	/* Each signature holds its session a while, so the others need more sessions than the
	 * token grants. */
	ctl(ft, "max-sessions 1\ndelay C_Sign 20");
	c.key = ft->key;
	c.repeat = 10;
	crowd_run(&c, 4);
	assert_int_equal(crowd_count(&c, 4, P11CA_OK), 4);
	struct hsm_status st = status_of(ft->tok);
	assert_int_equal(st.signatures - st0.signatures, 40);
	assert_int_equal(st.failures, st0.failures);
	assert_true(st.sessions_open <= 1);
	assert_true(LOGN(ft, FN_OPEN, "rv=CKR_SESSION_COUNT ") >= 1);
}

/* The cap hit while the pool has no open session: several threads open at the same time, one
 * wins, the others are told CKR_SESSION_COUNT — which is a smaller pool, not a failure. */
static void test_session_cap_from_cold(void **state)
{
	struct ft *ft = *state;
	struct p11ca_errmsg em = {0};
	unsigned failed = 0;

	ft_open(ft, 2, 10000, true);
	for (int round = 0; round < 20; round++) {
		struct hsm_token *tok = NULL;
		struct hsm_key *key = NULL;
		struct crowd c = {.ft = ft};

		/* A second handle on the token: a pool of 16 with one session open. */
		p11ca_errmsg_clear(&em);
		expect_err(open_shim(ft, 16, 10000, &tok, &em), P11CA_OK, &em);
		ft->more_toks[0] = tok;
		expect_err(login_pin(tok, T_PIN, &em), P11CA_OK, &em);
		expect_err(hsm_key_find(tok, "k1", NULL, 0, &key, &em), P11CA_OK, &em);
		ft->more_keys[0] = key;

		/* The reboot closes it; 16 threads then open at once (the delay lines them
		 * up) against a cap of one. The one that meets the dead handle drops every
		 * session, including the winner's fresh one: that must be closed, not left
		 * open, or it holds the only place and every thread fails (a race once seen
		 * in CI, 2 rounds of 20). */
		ctl_reboot_now(ft, "reboot\nmax-sessions 1\ndelay C_OpenSession 50");
		c.key = key;
		c.repeat = 3;
		crowd_run(&c, 16);
		unsigned ok = crowd_count(&c, 16, P11CA_OK);
		fprintf(stderr, "round %d: %u of 16 threads signed everything\n", round, ok);
		failed += 16 - ok;
		ctl(ft, "");
		hsm_key_free(&ft->more_keys[0]);
		hsm_token_close(&ft->more_toks[0]);
	}
	assert_int_equal(failed, 0);
}

/* pool_size 1, its one session hung in C_Sign: the next caller gets "busy" after the wait. */
struct hung {
	struct hsm_key *key;
	enum p11ca_err err;
};

static void *hung_signer(void *varg)
{
	struct hung *h = varg;
	struct p11ca_errmsg em = {0};

	h->err = sign(h->key, HSM_SIG_ECDSA_SHA256, &em, NULL);
	return NULL;
}

static void test_busy_wait_is_bounded(void **state)
{
	struct ft *ft = *state;
	struct p11ca_errmsg em = {0};
	struct hung h = {.err = P11CA_E_INTERNAL};
	pthread_t th;
	const unsigned busy = 300;

	ft_open(ft, 1, busy, true);
	h.key = ft->key;
	ctl(ft, "hang C_Sign");
	assert_int_equal(pthread_create(&th, NULL, hung_signer, &h), 0);
	/* Wait (bounded) until the signer holds the only session. */
	double deadline = t_now_ms() + 5000;
	while (status_of(ft->tok).sessions_busy != 1 && t_now_ms() < deadline)
		t_pause_ms(5);
	assert_int_equal(status_of(ft->tok).sessions_busy, 1);

	double ms = 0;
	expect_err(sign(ft->key, HSM_SIG_ECDSA_SHA256, &em, &ms), P11CA_E_HSM_BUSY, &em);
	fprintf(stderr, "busy after %.0f ms: %s\n", ms, em.text);
	assert_true(ms >= busy - 5);
	assert_true(ms < busy + 1500);
	assert_contains(em.text, "busy");
	assert_contains(em.text, "300 ms");
	assert_contains(em.text, "pool size");
	/* Other operations wait just as long, no longer. */
	struct hsm_key *key = NULL;
	double t0 = t_now_ms();
	p11ca_errmsg_clear(&em);
	expect_err(hsm_key_find(ft->tok, "k1", NULL, 0, &key, &em), P11CA_E_HSM_BUSY, &em);
	assert_true(t_now_ms() - t0 < busy + 1500);
	struct hsm_status st = status_of(ft->tok);
	assert_int_equal(st.sessions_busy, 1);
	assert_int_equal(st.last_error, P11CA_E_HSM_BUSY);

	/* Lift the hang: the held signature completes and verifies. */
	ctl(ft, "");
	pthread_join(th, NULL);
	assert_int_equal(h.err, P11CA_OK);
	sign_ok(ft->key);
}

/* Wait (bounded) until `want` pool slots are taken. Read directly: hsm_token_status may need
 * a session, and with it the login lock a test holds. */
static void wait_busy_slots(struct hsm_token *tok, unsigned want)
{
	double deadline = t_now_ms() + 5000;
	unsigned n;

	do {
		n = 0;
		pthread_mutex_lock(&tok->lock);
		for (unsigned i = 0; i < tok->pool_size; i++)
			n += tok->sessions[i].busy;
		pthread_mutex_unlock(&tok->lock);
		if (n != want)
			t_pause_ms(2);
	} while (n != want && t_now_ms() < deadline);
	assert_int_equal(n, want);
}

/* The race behind test_session_cap_from_cold, made deterministic: a session that is alive
 * but dropped (another thread saw a session fault) is taken again while another slot is
 * about to open a session. The dropped handle must be closed, or it keeps the token's only
 * place and neither thread ever gets a session. */
static void test_dropped_live_session_closed_while_another_opens(void **state)
{
	struct ft *ft = *state;
	struct hung x = {.err = P11CA_E_INTERNAL}, opener = x, w = x;
	pthread_t tx, topener, tw;

	ft_open(ft, 2, 10000, true);
	x.key = opener.key = w.key = ft->key;
	long closes = LOGN(ft, "fn=C_CloseSession ", RV_OK);
	/* The open session holds the only place; x keeps it busy in C_Sign. */
	ctl(ft, "max-sessions 1\nhang C_Sign");
	assert_int_equal(pthread_create(&tx, NULL, hung_signer, &x), 0);
	wait_busy_slots(ft->tok, 1);
	/* A login in progress: the opener takes the closed slot and stops at the login lock,
	 * about to open a session. */
	pthread_mutex_lock(&ft->tok->login_lock);
	assert_int_equal(pthread_create(&topener, NULL, hung_signer, &opener), 0);
	wait_busy_slots(ft->tok, 2);
	/* What a session fault seen by another thread does: x's session is dropped, alive. */
	atomic_fetch_add(&ft->tok->drop_epoch, 1);
	/* w waits for a slot, and gets x's dropped session once x is done. */
	assert_int_equal(pthread_create(&tw, NULL, hung_signer, &w), 0);
	ctl(ft, "max-sessions 1");
	pthread_join(tx, NULL);
	assert_int_equal(x.err, P11CA_OK);
	wait_busy_slots(ft->tok, 2);
	pthread_mutex_unlock(&ft->tok->login_lock);
	pthread_join(topener, NULL);
	pthread_join(tw, NULL);

	assert_int_equal(opener.err, P11CA_OK);
	assert_int_equal(w.err, P11CA_OK);
	/* The dropped session was closed: its place went to the reopened one. */
	assert_int_equal(LOGN(ft, "fn=C_CloseSession ", RV_OK), closes + 1);
	assert_true(status_of(ft->tok).sessions_open <= 1);
}

static void test_no_session_at_all_is_busy(void **state)
{
	struct ft *ft = *state;
	struct p11ca_errmsg em = {0};

	ft_open(ft, 2, 2000, false);
	ctl(ft, "fail C_OpenSession CKR_SESSION_COUNT");
	double t0 = t_now_ms();
	expect_err(login_pin(ft->tok, T_PIN, &em), P11CA_E_HSM_BUSY, &em);
	fprintf(stderr, "no session: %s\n", em.text);
	assert_true(t_now_ms() - t0 < 1000); /* the token said no: nothing to wait for */
	assert_true(LOGN(ft, FN_OPEN) <= 2); /* no storm of attempts */
	assert_int_equal(LOGN(ft, FN_LOGIN), 0);
	assert_contains(em.text, TOKEN);
	assert_contains(em.text, "session");
	/* ...and it says what to do about it. */
	assert_true(strstr(em.text, "close") != NULL || strstr(em.text, "pool") != NULL);

	ctl(ft, "");
	p11ca_errmsg_clear(&em);
	expect_err(login_pin(ft->tok, T_PIN, &em), P11CA_OK, &em);
}

/* A hung C_Login (an HSM that stopped answering) must not take the status call, or callers
 * waiting for that login, down with it: they get an answer within the busy wait. */
struct bg_call {
	struct hsm_token *tok;
	int what; /* 0: login, 1: status, 2: key lookup */
	enum p11ca_err err;
	double ms;
	volatile int done;
};

static void *bg_thread(void *varg)
{
	struct bg_call *b = varg;
	struct p11ca_errmsg em = {0};
	struct hsm_status st;
	struct hsm_key *key = NULL;
	double t0 = t_now_ms();

	if (b->what == 0)
		b->err = login_pin(b->tok, T_PIN, &em);
	else if (b->what == 1)
		b->err = hsm_token_status(b->tok, &st, &em);
	else
		b->err = hsm_key_find(b->tok, "k1", NULL, 0, &key, &em);
	hsm_key_free(&key);
	b->ms = t_now_ms() - t0;
	__atomic_store_n(&b->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static bool bg_wait(struct bg_call *b, double deadline)
{
	while (!__atomic_load_n(&b->done, __ATOMIC_ACQUIRE) && t_now_ms() < deadline)
		t_pause_ms(10);
	return __atomic_load_n(&b->done, __ATOMIC_ACQUIRE);
}

static void test_hung_login_blocks_nobody_else(void **state)
{
	struct ft *ft = *state;
	const unsigned busy = 300;
	struct bg_call login = {.what = 0}, status = {.what = 1}, find = {.what = 2};
	pthread_t tl, ts, tf;

	ft_open(ft, 2, busy, false);
	login.tok = status.tok = find.tok = ft->tok;
	long token_infos = LOGN(ft, "fn=C_GetTokenInfo ");
	ctl(ft, "hang C_Login");
	assert_int_equal(pthread_create(&tl, NULL, bg_thread, &login), 0);
	/* The login reads the token flags (C_GetTokenInfo, logged when it returns) with the
	 * login lock held, then calls C_Login, which hangs. Nothing here may block on hsm/
	 * before the hang is lifted: every call under test runs in its own thread. */
	double deadline = t_now_ms() + 5000;
	while (LOGN(ft, "fn=C_GetTokenInfo ") == token_infos && t_now_ms() < deadline)
		t_pause_ms(5);
	bool in_login = LOGN(ft, "fn=C_GetTokenInfo ") > token_infos;
	if (!in_login) {
		ctl(ft, "");
		pthread_join(tl, NULL);
		fail_msg("the login never reached C_Login");
	}

	assert_int_equal(pthread_create(&ts, NULL, bg_thread, &status), 0);
	assert_int_equal(pthread_create(&tf, NULL, bg_thread, &find), 0);
	bool status_done = bg_wait(&status, t_now_ms() + busy + 2000);
	bool find_done = bg_wait(&find, t_now_ms() + busy + 2000);
	fprintf(stderr, "during a hung C_Login: status %s, lookup %s\n",
		status_done ? "answered" : "blocked", find_done ? "answered" : "blocked");

	/* Release everything before asserting, so a failure leaves no thread behind. */
	ctl(ft, "");
	pthread_join(tl, NULL);
	pthread_join(ts, NULL);
	pthread_join(tf, NULL);
	assert_int_equal(login.err, P11CA_OK);
	assert_true(status_done);
	assert_int_equal(status.err, P11CA_OK);
	assert_true(find_done);
	assert_int_equal(find.err, P11CA_E_HSM_BUSY);
}

/* CKR_OPERATION_ACTIVE means the session is alive and busy with something else: p11ca may
 * start afresh in a new session, but must not leave the old one open on the token. */
static void test_operation_active_leaks_no_session(void **state)
{
	struct ft *ft = *state;

	ft_open(ft, 2, 5000, true);
	sign_ok(ft->key);
	for (int i = 0; i < 5; i++) {
		ctl(ft, "fail C_SignInit CKR_OPERATION_ACTIVE count=1");
		sign_ok(ft->key);
	}
	assert_int_equal(LOGN(ft, "fn=C_SignInit ", "rv=CKR_OPERATION_ACTIVE "), 5);
	long opened = LOGN(ft, FN_OPEN, RV_OK);
	long closed = LOGN(ft, "fn=C_CloseSession ", RV_OK);
	fprintf(stderr, "sessions opened %ld, closed %ld\n", opened, closed);
	assert_true(opened - closed <= 2);
}

/* ---- transient and fatal module errors ----------------------------------------------------- */

static void test_transient_faults_recovered(void **state)
{
	struct ft *ft = *state;
	static const char *const codes[] = {
		"CKR_DEVICE_ERROR",	     "CKR_SESSION_HANDLE_INVALID", "CKR_SESSION_CLOSED",
		"CKR_OBJECT_HANDLE_INVALID", "CKR_KEY_HANDLE_INVALID",	   "CKR_DEVICE_REMOVED",
		"CKR_TOKEN_NOT_PRESENT",     "CKR_USER_NOT_LOGGED_IN",
	};

	ft_open(ft, 2, 5000, true);
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		char rules[128], rv[64];
		struct hsm_status st0 = status_of(ft->tok);

		snprintf(rules, sizeof(rules), "fail C_Sign %s count=1", codes[i]);
		snprintf(rv, sizeof(rv), "rv=%s ", codes[i]);
		ctl(ft, rules);
		long sign_calls = LOGN(ft, FN_SIGN);
		sign_ok(ft->key);
		assert_int_equal(LOGN(ft, FN_SIGN, rv), 1);
		assert_int_equal(LOGN(ft, FN_SIGN) - sign_calls, 2); /* the fault and the retry */
		struct hsm_status st = status_of(ft->tok);
		assert_int_equal(st.failures, st0.failures);
		assert_true(st.recoveries > st0.recoveries);
		assert_true(st.recoveries - st0.recoveries <= 2);
	}

	/* Key generation is retried too, and makes exactly one key pair. */
	ctl(ft, "fail C_GenerateKeyPair CKR_DEVICE_ERROR count=1");
	struct hsm_key *k = more_key(ft, HSM_KEY_P256, "made-after-retry");
	assert_non_null(k);
	CK_FUNCTION_LIST *fn = t_raw_module(p11fault_module_path());
	CK_SESSION_HANDLE s;
	assert_int_equal(t_raw_session(fn, TOKEN, &s), 0);
	long n = t_raw_count(fn, s, (CK_OBJECT_CLASS)-1, "made-after-retry");
	fn->C_CloseSession(s);
	assert_int_equal(n, 2);
	struct p11ca_errmsg em = {0};
	expect_err(sign(k, HSM_SIG_ECDSA_SHA256, &em, NULL), P11CA_OK, &em);
}

static void test_persistent_device_error_fails_fast(void **state)
{
	struct ft *ft = *state;
	struct p11ca_errmsg em = {0};

	ft_open(ft, 2, BUSY_MS, true);
	ctl(ft, "fail C_Sign CKR_DEVICE_ERROR");
	long sign_calls = LOGN(ft, FN_SIGN);
	double ms = 0;
	expect_err(sign(ft->key, HSM_SIG_ECDSA_SHA256, &em, &ms), P11CA_E_HSM_UNAVAILABLE, &em);
	fprintf(stderr, "persistent CKR_DEVICE_ERROR: %.0f ms, %ld C_Sign: %s\n", ms,
		LOGN(ft, FN_SIGN) - sign_calls, em.text);
	assert_true(ms < BUSY_MS);
	assert_true(LOGN(ft, FN_SIGN) - sign_calls <= CONFIG_HSM_RECOVERY_ATTEMPTS);
	assert_contains(em.text, "CKR_DEVICE_ERROR");
	assert_contains(em.text, "check the HSM");
	ctl(ft, "");
	sign_ok(ft->key);
}

static void test_general_error_reported_once(void **state)
{
	struct ft *ft = *state;
	struct p11ca_errmsg em = {0};

	ft_open(ft, 2, 5000, true);
	struct hsm_status st0 = status_of(ft->tok);
	ctl(ft, "fail C_Sign CKR_GENERAL_ERROR count=1");
	long sign_calls = LOGN(ft, FN_SIGN);
	expect_err(sign(ft->key, HSM_SIG_ECDSA_SHA256, &em, NULL), P11CA_E_HSM, &em);
	/* Not a recoverable code: reported, one C_Sign, no retry storm. */
	assert_int_equal(LOGN(ft, FN_SIGN) - sign_calls, 1);
	assert_int_equal(LOGN(ft, FN_SIGN, "rv=CKR_GENERAL_ERROR "), 1);
	struct hsm_status st = status_of(ft->tok);
	assert_int_equal(st.recoveries, st0.recoveries);
	assert_int_equal(st.failures - st0.failures, 1);
	assert_int_equal(st.last_error, P11CA_E_HSM);
	sign_ok(ft->key);

	/* The message says what failed. */
	fprintf(stderr, "CKR_GENERAL_ERROR reported as: '%s' (status: '%s')\n", em.text,
		st.last_error_text);
	assert_contains(em.text, "CKR_GENERAL_ERROR");
	assert_contains(em.text, TOKEN);
	assert_contains(st.last_error_text, "CKR_GENERAL_ERROR");
}

static void test_mismatch_never_reaches_token(void **state)
{
	struct ft *ft = *state;
	struct p11ca_errmsg em = {0};
	uint8_t sig[HSM_SIG_MAX];
	size_t len = 1;

	ft_open(ft, 2, 5000, true);
	sign_ok(ft->key);
	long lines = LOGN(ft, "fn=");
	const enum hsm_sig_alg wrong[] = {HSM_SIG_ED25519, HSM_SIG_RSA_PKCS1_SHA256,
					  HSM_SIG_RSA_PSS_SHA512, HSM_SIG_UNSPECIFIED};
	for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		p11ca_errmsg_clear(&em);
		expect_err(hsm_sign(ft->key, wrong[i], MSGP, MSGLEN, sig, sizeof(sig), &len, &em),
			   P11CA_E_HSM_MECHANISM, &em);
		assert_int_equal(len, 0);
	}
	/* Not one PKCS#11 call: no C_SignInit, no C_Sign, nothing. */
	assert_int_equal(LOGN(ft, "fn="), lines);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	/* The shim reads these once per process. */
	snprintf(control_path, sizeof(control_path), "%s/p11fault.control",
		 tmp && tmp[0] ? tmp : "/tmp");
	if (p11fault_control_write(control_path, "") != 0)
		return 1;
	setenv("P11FAULT_CONTROL", control_path, 1);
	setenv("P11FAULT_MODULE", softhsm_module_path(), 1);
	if (access(p11fault_module_path(), R_OK) != 0) {
		fprintf(stderr, "%s: %s (build it first: make)\n", p11fault_module_path(),
			strerror(errno));
		return 1;
	}

	/* A hang in hsm/ must fail the suite, not stall CI: the whole suite takes well under a
	 * minute (a few under ASan). */
	alarm(600);
	/* HSM_FAULTS_TEST_FILTER=test_session_cap* runs matching tests (a glob), for loops. */
	if (getenv("HSM_FAULTS_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("HSM_FAULTS_TEST_FILTER"));

#define T(f) cmocka_unit_test_setup_teardown(f, t_setup, t_teardown)
	const struct CMUnitTest tests[] = {
		T(test_device_removed),
		T(test_reboot_relogs_in_once),
		T(test_reboot_with_full_pool),
		T(test_not_logged_in_relogs_in),
		T(test_real_logout_recovers),
		T(test_token_directory_moved),
		T(test_wrong_pin_fails_fast_then_recovers),
		T(test_wrong_pin_while_logged_in_is_not_accepted),
		T(test_wrong_pin_100_signers),
		T(test_wrong_pin_first_login_in_flight),
		T(test_wrong_pin_100_concurrent_logins),
		T(test_wrong_pin_storm_never_locks),
		T(test_pin_final_try_refused),
		T(test_pin_locked_refused),
		T(test_flipped_signature_withheld),
		T(test_session_cap_shrinks_pool),
		T(test_session_cap_from_cold),
		T(test_dropped_live_session_closed_while_another_opens),
		T(test_busy_wait_is_bounded),
		T(test_no_session_at_all_is_busy),
		T(test_hung_login_blocks_nobody_else),
		T(test_operation_active_leaks_no_session),
		T(test_transient_faults_recovered),
		T(test_persistent_device_error_fails_fast),
		T(test_general_error_reported_once),
		T(test_mismatch_never_reaches_token),
		/* Last: while hsm/ reuses stale session handles, it can crash the process. */
		T(test_reboot_under_load),
	};
#undef T
	return cmocka_run_group_tests_name("hsm through libp11fault", tests, NULL, NULL);
}
