/*
 * The engine's record-keeping handlers on a real store, without a signer: expiry
 * notifications (the threshold rule, and whole passes through a fake sendmail with an
 * injected clock), cert list filters and paging, watchers, cert import, profile_list and
 * the refusals of cert revoke and ca revoke that come before any signature.
 *
 * Certificates are real (EC P-256, signed in software by the test's CA key) and recorded
 * with store_cert_import, which is what a cert import of them would store.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "appliance/config_internal.h"
#include "appliance/engine/engine_internal.h"
#include "storage/test_util.h"

#define DAY ENGINE_DAY
#define T0  ((int64_t)2000000000) /* the injected "now" of the notification tests */

struct fx {
	char dir[PATH_MAX];
	char mail[PATH_MAX + 16], fail[PATH_MAX + 16];
	struct p11cad_config cfg;
	struct tu_log log;
	struct engine eng;
	EVP_PKEY *ca_key, *other_key;
	X509 *ca_cert;
	uint32_t ca_id, ca2_id;
};

static EVP_PKEY *key_new(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	assert_non_null(k);
	return k;
}

/* A certificate for `cn`, serial first byte `tag` (the rest random), signed by key. */
static X509 *cert_make(X509 *issuer, EVP_PKEY *key, const char *cn, int64_t not_before,
		       int64_t not_after, uint8_t serial[STORE_SERIAL_LEN])
{
	X509 *x = X509_new();
	EVP_PKEY *subject_key = key_new();
	assert_non_null(x);
	assert_int_equal(RAND_bytes(serial, STORE_SERIAL_LEN), 1);
	serial[0] = (uint8_t)(0x01 + serial[0] % 0x7f);
	BIGNUM *bn = BN_bin2bn(serial, STORE_SERIAL_LEN, NULL);
	ASN1_INTEGER *sn = BN_to_ASN1_INTEGER(bn, NULL);
	X509_set_serialNumber(x, sn);
	ASN1_INTEGER_free(sn);
	BN_free(bn);
	X509_set_version(x, 2);
	X509_NAME *name = X509_NAME_new();
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name);
	X509_NAME_free(name);
	ASN1_TIME_set(X509_getm_notBefore(x), (time_t)not_before);
	ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after);
	X509_set_pubkey(x, issuer != NULL ? subject_key : key);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	EVP_PKEY_free(subject_key);
	return x;
}

static size_t der_of(X509 *x, uint8_t *out)
{
	unsigned char *p = out;
	int n = i2d_X509(x, &p);
	assert_true(n > 0 && n <= STORE_CERT_DER_MAX);
	return (size_t)n;
}

static uint32_t ca_add(struct fx *f, const char *name, X509 *cert, uint32_t parent)
{
	struct store_ca *ca = calloc(1, sizeof(*ca));
	assert_non_null(ca);
	snprintf(ca->name, sizeof(ca->name), "%s", name);
	unsigned char *p = ca->subject_der;
	ca->subject_der_len = (size_t)i2d_X509_NAME(X509_get_subject_name(cert), &p);
	ca->cert_der_len = der_of(cert, ca->cert_der);
	snprintf(ca->key_backend, sizeof(ca->key_backend), "pkcs11");
	snprintf(ca->key_uri, sizeof(ca->key_uri), "pkcs11:object=%s", name);
	ca->state = STORE_CA_ACTIVE;
	ca->parent_id = parent;
	struct store_txn *txn = tu_txn(f->eng.st, STORE_TXN_WRITE);
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_ca_put(txn, ca, &em), P11CA_OK);
	tu_audit(txn, "ca");
	tu_commit(&txn);
	uint32_t id = ca->id;
	free(ca);
	return id;
}

/* A certificate of CA ca_id recorded with its watchers; serial out. */
static void cert_add(struct fx *f, uint32_t ca_id, const char *cn, int64_t not_after,
		     const char *profile, const char *const *watchers, size_t n_watchers,
		     uint8_t serial[STORE_SERIAL_LEN])
{
	X509 *x = cert_make(f->ca_cert, f->ca_key, cn, not_after - 30 * DAY, not_after, serial);
	uint8_t *der = malloc(STORE_CERT_DER_MAX);
	struct store_watcher w[STORE_WATCHERS_MAX] = {0};
	for (size_t i = 0; i < n_watchers; i++)
		snprintf(w[i].email, sizeof(w[i].email), "%s", watchers[i]);
	size_t len = der_of(x, der);
	struct store_txn *txn = tu_txn(f->eng.st, STORE_TXN_WRITE);
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_cert_import(txn, ca_id, serial, der, len, not_after, profile, "test",
					   w, n_watchers, &em),
			 P11CA_OK);
	tu_audit(txn, "cert");
	tu_commit(&txn);
	free(der);
	X509_free(x);
}

static void revoke_cert(struct fx *f, uint32_t ca_id, const uint8_t serial[STORE_SERIAL_LEN])
{
	struct store_revocation rev = {.reason = 1, .revoked_at = T0, .invalidity_date = T0 - DAY};
	struct store_txn *txn = tu_txn(f->eng.st, STORE_TXN_WRITE);
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_cert_revoke(txn, ca_id, serial, &rev, &em), P11CA_OK);
	tu_audit(txn, "revoke");
	tu_commit(&txn);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	tu_tmpdir(f->dir, "notify");
	config_set_defaults(&f->cfg);
	snprintf(f->cfg.state_dir, sizeof(f->cfg.state_dir), "%.900s", f->dir);
	snprintf(f->cfg.notify_from, sizeof(f->cfg.notify_from), "ca@example.org");
	snprintf(f->mail, sizeof(f->mail), "%s/mail.log", f->dir);
	snprintf(f->fail, sizeof(f->fail), "%s/fail", f->dir);
	/* The fake sendmail: records the recipient (its last argument) and the message; fails
	 * while the file `fail` exists. */
	char script[PATH_MAX + 32];
	snprintf(script, sizeof(script), "%s/sendmail", f->dir);
	FILE *s = fopen(script, "w");
	assert_non_null(s);
	fprintf(s,
		"#!/bin/sh\n"
		"for last; do :; done\n"
		"if [ -e '%s' ]; then echo \"cannot deliver to $last\" >&2; exit 75; fi\n"
		"{ echo \"RCPT $last\"; cat; echo '.'; } >> '%s'\n",
		f->fail, f->mail);
	assert_int_equal(fclose(s), 0);
	assert_int_equal(chmod(script, 0700), 0);
	snprintf(f->cfg.notify_command, sizeof(f->cfg.notify_command), "%.900s -i --", script);

	tu_log_init(&f->log);
	f->eng.cfg = &f->cfg;
	f->eng.log = &f->log.logger;
	f->eng.st = tu_open(f->dir, 0, 100);
	struct p11ca_errmsg em = {0};
	assert_int_equal(commit_start(f->eng.st, NULL, &f->eng.commit, &em), P11CA_OK);
	pthread_mutex_init(&f->eng.lock, NULL);
	engine_ca_cache_init(&f->eng.ca_cache);

	uint8_t serial[STORE_SERIAL_LEN];
	f->ca_key = key_new();
	f->other_key = key_new();
	f->ca_cert = cert_make(NULL, f->ca_key, "Test CA", T0 - 400 * DAY, T0 + 4000 * DAY, serial);
	f->ca_id = ca_add(f, "test-ca", f->ca_cert, 0);
	X509 *ca2 = cert_make(f->ca_cert, f->ca_key, "Test CA 2", T0 - 400 * DAY, T0 + 3000 * DAY,
			      serial);
	f->ca2_id = ca_add(f, "test-ca2", ca2, f->ca_id);
	X509_free(ca2);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	commit_stop(&f->eng.commit);
	store_close(&f->eng.st);
	engine_ca_cache_destroy(&f->eng.ca_cache);
	pthread_mutex_destroy(&f->eng.lock);
	EVP_PKEY_free(f->ca_key);
	EVP_PKEY_free(f->other_key);
	X509_free(f->ca_cert);
	free(f);
	return 0;
}

/* ---- engine_notify_due ------------------------------------------------------------------- */

static void test_notify_due(void **state)
{
	(void)state;
	static const unsigned d[] = {14, 7, 3, 1};
	static const struct {
		int64_t left; /* not_after - now */
		uint32_t notified, want;
	} rows[] = {
		{30 * DAY, 0, 0},     /* nothing reached */
		{14 * DAY + 1, 0, 0}, /* one second short of 14 days */
		{14 * DAY, 0, 14},    /* exactly 14 days: reached */
		{13 * DAY, 0, 14},    /* still 14 until 7 is reached */
		{13 * DAY, 14, 0},    /* 14 already sent */
		{7 * DAY, 14, 7},     /* next threshold */
		{6 * DAY, 0, 7},      /* smallest reached, not every one missed */
		{2 * DAY, 0, 3},      /* ... even when several were skipped */
		{2 * DAY, 7, 3},      /* 7 sent, 3 reached */
		{2 * DAY, 3, 0},      /* 3 sent, 1 not reached */
		{DAY, 3, 1},	      /* 1 reached */
		{1, 3, 1},	      /* one second left */
		{1, 1, 0},	      /* everything sent */
		{0, 0, 0},	      /* expired: nothing */
		{-5 * DAY, 0, 0},     /* long expired */
		{10 * DAY, 1, 0},     /* a smaller threshold was sent (days changed): no 7 */
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		uint32_t got = engine_notify_due(d, 4, T0 + rows[i].left, T0, rows[i].notified);
		if (got != rows[i].want)
			fail_msg("row %zu: left %lld, notified %u: got %u, want %u", i,
				 (long long)rows[i].left, rows[i].notified, got, rows[i].want);
	}
	static const unsigned one[] = {30};
	assert_int_equal(engine_notify_due(one, 1, T0 + DAY, T0, 0), 30);
	assert_int_equal(engine_notify_due(one, 0, T0 + DAY, T0, 0), 0); /* no thresholds */
}

/* ---- whole passes ---------------------------------------------------------------------------- */

static char *slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf = calloc(1, 1 << 20);
	assert_non_null(buf);
	if (fp != NULL) {
		size_t n = fread(buf, 1, (1 << 20) - 1, fp);
		buf[n] = '\0';
		fclose(fp);
	}
	return buf;
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

static void touch(const char *path, bool on)
{
	if (on) {
		FILE *fp = fopen(path, "w");
		assert_non_null(fp);
		fclose(fp);
	} else {
		assert_int_equal(remove(path), 0);
	}
}

static void test_notify_run_days(void **state)
{
	struct fx *f = *state;
	static const char *const two[] = {"alice@example.org", "Bob@Example.NET"};
	static const char *const three[] = {"carol@example.org"};
	uint8_t s1[STORE_SERIAL_LEN], s2[STORE_SERIAL_LEN], s3[STORE_SERIAL_LEN];
	uint8_t s4[STORE_SERIAL_LEN];
	const int64_t exp = T0 + 20 * DAY;
	cert_add(f, f->ca_id, "www.example.org", exp, "webserver", two, 2, s1);
	cert_add(f, f->ca2_id, "revoked.example.org", exp, "webserver", three, 1, s2);
	revoke_cert(f, f->ca2_id, s2);
	cert_add(f, f->ca_id, "nobody.example.org", exp, "webserver", NULL, 0, s3);
	cert_add(f, f->ca_id, "later.example.org", exp + 300 * DAY, "client", three, 1, s4);

	p11ca_v1_NotifyExpiringResponse out;
	struct p11ca_errmsg em = {0};
	unsigned sent = 0, failed = 0;
	/* Day by day from 20 days before expiry to 2 days after it. The command fails on the
	 * day the 7-day threshold is reached: that message goes out the next day instead. */
	for (int64_t now = T0; now <= exp + 2 * DAY; now += DAY) {
		bool fail_today = now == exp - 7 * DAY;
		if (fail_today)
			touch(f->fail, true);
		assert_int_equal(engine_notify_run(&f->eng, now, NULL, &out, &em), P11CA_OK);
		if (fail_today) {
			touch(f->fail, false);
			assert_int_equal(out.messages_failed, 2);
			assert_int_equal(out.messages_sent, 0);
			assert_int_equal(out.certificates, 0);
		}
		sent += out.messages_sent;
		failed += out.messages_failed;
	}
	assert_int_equal(sent, 8); /* 4 thresholds × 2 watchers */
	assert_int_equal(failed, 2);

	char *mail = slurp(f->mail);
	assert_int_equal(count(mail, "RCPT alice@example.org\n"), 4);
	assert_int_equal(count(mail, "RCPT Bob@Example.NET\n"), 4);
	assert_int_equal(count(mail, "carol@"), 0); /* revoked, or not yet due */
	assert_int_equal(count(mail, "nobody.example.org"), 0);
	/* One message per threshold; 7 went out a day late, saying so. */
	assert_int_equal(count(mail, "Subject: Certificate www.example.org expires in 14 days\r\n"),
			 2);
	assert_int_equal(count(mail, "Subject: Certificate www.example.org expires in 6 days\r\n"),
			 2);
	assert_int_equal(count(mail, "Subject: Certificate www.example.org expires in 3 days\r\n"),
			 2);
	assert_int_equal(count(mail, "Subject: Certificate www.example.org expires in 1 day\r\n"),
			 2);
	assert_int_equal(count(mail, "From: ca@example.org\r\n"), 8);
	assert_int_equal(count(mail, "To: alice@example.org\r\n"), 4);
	assert_int_equal(count(mail, "Date: "), 8);
	char hex[2 * STORE_SERIAL_LEN + 1], line[128];
	engine_hex_format(s1, STORE_SERIAL_LEN, hex);
	snprintf(line, sizeof(line), "p11ca cert resign %s\r\n", hex);
	assert_int_equal(count(mail, line), 8);
	assert_int_equal(count(mail, "  CA:        test-ca\r\n"), 8);
	free(mail);

	/* What was sent is recorded per watcher; the log never names a recipient. */
	struct store_cert *c = calloc(1, sizeof(*c));
	struct store_txn *txn = tu_txn(f->eng.st, STORE_TXN_READ);
	assert_int_equal(store_cert_get(txn, f->ca_id, s1, c, &em), P11CA_OK);
	store_txn_abort(&txn);
	assert_int_equal(c->n_watchers, 2);
	assert_int_equal(c->watchers[0].notified_days, 1);
	assert_int_equal(c->watchers[1].notified_days, 1);
	free(c);
	assert_null(strstr(f->log.text, "alice"));
	assert_null(strstr(f->log.text, "Bob@"));
	assert_non_null(strstr(f->log.text, "exit status 75"));		/* the failure is logged */
	assert_non_null(strstr(f->log.text, "cannot deliver to ****")); /* masked output */
}

static void test_notify_off(void **state)
{
	struct fx *f = *state;
	static const char *const one[] = {"alice@example.org"};
	uint8_t s[STORE_SERIAL_LEN];
	cert_add(f, f->ca_id, "a.example.org", T0 + DAY, "webserver", one, 1, s);
	p11ca_v1_NotifyExpiringResponse out;
	struct p11ca_errmsg em = {0};

	/* A command that is not there: counted as failed, nothing recorded. */
	snprintf(f->cfg.notify_command, sizeof(f->cfg.notify_command), "%.900s/missing", f->dir);
	assert_int_equal(engine_notify_run(&f->eng, T0, NULL, &out, &em), P11CA_OK);
	assert_int_equal(out.messages_failed, 1);
	assert_non_null(strstr(f->log.text, "exit status 127"));

	/* No command: a pass does nothing, and `notify expiring` says what to configure. */
	f->cfg.notify_command[0] = '\0';
	assert_int_equal(engine_notify_run(&f->eng, T0, NULL, &out, &em), P11CA_OK);
	assert_int_equal(out.messages_sent + out.messages_failed, 0);
	p11ca_v1_Request *req = calloc(1, sizeof(*req));
	p11ca_v1_Response *resp = calloc(1, sizeof(*resp));
	struct engine_call call = {.eng = &f->eng, .role = RPC_ROLE_ADMIN, .actor = "tester"};
	assert_int_equal(engine_op_notify_expiring(&call, req, resp, &em), P11CA_E_POLICY);
	assert_int_equal(call.code_override, p11ca_v1_StatusCode_STATUS_CODE_FAILED_PRECONDITION);
	assert_non_null(strstr(em.text, "[notify] command"));
	free(req);
	free(resp);
}

/* Writes a fake mail command: `body` runs after the line that records its arguments. */
static void command_write(struct fx *f, const char *name, const char *body)
{
	char script[PATH_MAX + 32];
	snprintf(script, sizeof(script), "%s/%s", f->dir, name);
	FILE *s = fopen(script, "w");
	assert_non_null(s);
	fprintf(s, "#!/bin/sh\nprintf '%%s|' \"$@\" >> '%s/args.log'; echo >> '%s/args.log'\n%s\n",
		f->dir, f->dir, body);
	assert_int_equal(fclose(s), 0);
	assert_int_equal(chmod(script, 0700), 0);
	snprintf(f->cfg.notify_command, sizeof(f->cfg.notify_command), "%.900s %s", script, "-i");
}

static void test_notify_command_fds_and_args(void **state)
{
	struct fx *f = *state;
	static const char *const one[] = {"alice@example.org"};
	uint8_t s[STORE_SERIAL_LEN];
	char path[PATH_MAX + 32], body[3 * PATH_MAX];
	cert_add(f, f->ca_id, "a.example.org", T0 + DAY, "webserver", one, 1, s);
	/* What the engine has open without close-on-exec, as in production: the links
	 * supervise.c dup2s to 3, 4 and 5, and a file. */
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	snprintf(path, sizeof(path), "%s/canary", f->dir);
	int canary = open(path, O_RDWR | O_CREAT, 0600);
	assert_true(canary > 2);
	/* The command lists the shell's descriptors (/proc/$$: not ls's own), with what
	 * each points to. */
	snprintf(body, sizeof(body), "ls -l /proc/$$/fd >> '%s/fds.log'\ncat > /dev/null", f->dir);
	command_write(f, "lister", body);

	p11ca_v1_NotifyExpiringResponse out;
	struct p11ca_errmsg em = {0};
	assert_int_equal(engine_notify_run(&f->eng, T0, NULL, &out, &em), P11CA_OK);
	assert_int_equal(out.messages_sent, 1);
	close(sv[0]);
	close(sv[1]);
	close(canary);

	snprintf(path, sizeof(path), "%s/fds.log", f->dir);
	char *fds = slurp(path);
	/* Every descriptor above 2 is one the shell made itself (its script, saved copies of
	 * its standard ones), none is the engine's: no socket, no database, no canary. */
	char script[PATH_MAX + 32], std[3][128] = {"", "", ""};
	snprintf(script, sizeof(script), "%s/lister", f->dir);
	int seen = 0, n_fd = 0, fd_num[64];
	const char *fd_target[64];
	for (char *save = NULL, *l = strtok_r(fds, "\n", &save); l != NULL && n_fd < 64;
	     l = strtok_r(NULL, "\n", &save)) {
		char *arrow = strstr(l, " -> ");
		if (arrow == NULL)
			continue; /* "total 0" */
		*arrow = '\0';
		char *num = strrchr(l, ' ');
		assert_non_null(num);
		fd_num[n_fd] = atoi(num + 1);
		fd_target[n_fd] = arrow + 4;
		if (fd_num[n_fd] <= 2) {
			seen |= 1 << fd_num[n_fd];
			snprintf(std[fd_num[n_fd]], sizeof(std[0]), "%s", arrow + 4);
		}
		n_fd++;
	}
	for (int i = 0; i < n_fd; i++) {
		const char *t = fd_target[i];
		if (fd_num[i] > 2 && strcmp(t, script) != 0 && strcmp(t, "/dev/null") != 0 &&
		    strcmp(t, std[0]) != 0 && strcmp(t, std[2]) != 0)
			fail_msg("the command inherited fd %d (%s)", fd_num[i], t);
	}
	assert_int_equal(seen, 7); /* the listing worked: 0, 1 and 2 are there */
	free(fds);

	/* The recipient comes after "--", so it is never an option. */
	snprintf(path, sizeof(path), "%s/args.log", f->dir);
	char *args = slurp(path);
	assert_string_equal(args, "-i|--|alice@example.org|\n");
	free(args);
	/* A command that already ends with "--" gets no second one (sendmail would take
	 * it for an address). */
	touch(path, false);
	assert_int_equal(strlen(f->cfg.notify_command) + 4 < sizeof(f->cfg.notify_command), 1);
	strcat(f->cfg.notify_command, " --");
	struct store_cert *c = calloc(1, sizeof(*c));
	struct store_txn *txn = tu_txn(f->eng.st, STORE_TXN_WRITE);
	struct store_watcher w = {0};
	snprintf(w.email, sizeof(w.email), "bob@example.org");
	assert_int_equal(store_cert_watchers_set(txn, f->ca_id, s, &w, 1, &em), P11CA_OK);
	tu_audit(txn, "watchers");
	tu_commit(&txn);
	free(c);
	assert_int_equal(engine_notify_run(&f->eng, T0, NULL, &out, &em), P11CA_OK);
	assert_int_equal(out.messages_sent, 1);
	args = slurp(path);
	assert_string_equal(args, "-i|--|bob@example.org|\n");
	free(args);
}

/* ---- one pass at a time, and its record -------------------------------------------------- */

struct bg_pass {
	struct fx *f;
	p11ca_v1_NotifyExpiringResponse out;
	struct p11ca_errmsg em;
	enum p11ca_err err;
};

static void *bg_pass_main(void *arg)
{
	struct bg_pass *b = arg;
	b->err = engine_notify_run(&b->f->eng, T0, "A1B2", &b->out, &b->em);
	return NULL;
}

struct audit_find {
	const char *event;
	struct store_audit_entry last;
	int n;
};

static int audit_find_fn(void *arg, const struct store_audit_entry *e)
{
	struct audit_find *a = arg;
	if (strcmp(e->event, a->event) == 0) {
		a->last = *e;
		a->n++;
	}
	return 0;
}

static struct audit_find audit_find(struct fx *f, const char *event)
{
	struct audit_find a = {.event = event};
	struct p11ca_errmsg em = {0};
	struct store_txn *txn = tu_txn(f->eng.st, STORE_TXN_READ);
	assert_int_equal(store_audit_list(txn, 1, audit_find_fn, &a, &em), P11CA_OK);
	store_txn_abort(&txn);
	return a;
}

static void test_notify_one_pass_at_a_time(void **state)
{
	struct fx *f = *state;
	static const char *const one[] = {"alice@example.org"};
	uint8_t s[STORE_SERIAL_LEN];
	char started[PATH_MAX + 16], go[PATH_MAX + 16], body[3 * PATH_MAX];
	cert_add(f, f->ca_id, "a.example.org", T0 + DAY, "webserver", one, 1, s);
	/* The command says it started through one FIFO and waits on another: the pass is
	 * held in the middle without any sleep. */
	snprintf(started, sizeof(started), "%s/started", f->dir);
	snprintf(go, sizeof(go), "%s/go", f->dir);
	assert_int_equal(mkfifo(started, 0600), 0);
	assert_int_equal(mkfifo(go, 0600), 0);
	snprintf(body, sizeof(body), "echo started > '%s'\nread x < '%s'\ncat > /dev/null", started,
		 go);
	command_write(f, "held", body);

	struct bg_pass *b = calloc(1, sizeof(*b));
	b->f = f;
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, bg_pass_main, b), 0);
	FILE *st = fopen(started, "r"); /* opens once the command does */
	assert_non_null(st);
	char line[32];
	assert_non_null(fgets(line, sizeof(line), st));
	fclose(st);

	/* A second pass is refused at once, saying why, rather than waiting. */
	p11ca_v1_NotifyExpiringResponse out;
	struct p11ca_errmsg em = {0};
	assert_int_equal(engine_notify_run(&f->eng, T0, NULL, &out, &em), P11CA_E_POLICY);
	assert_non_null(strstr(em.text, "a notification pass is running; try again"));
	p11ca_v1_Request *req = calloc(1, sizeof(*req));
	p11ca_v1_Response *resp = calloc(1, sizeof(*resp));
	struct engine_call call = {.eng = &f->eng, .role = RPC_ROLE_OPERATOR, .actor = "C3D4"};
	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_op_notify_expiring(&call, req, resp, &em), P11CA_E_POLICY);
	assert_int_equal(call.code_override, p11ca_v1_StatusCode_STATUS_CODE_FAILED_PRECONDITION);

	FILE *g = fopen(go, "w");
	assert_non_null(g);
	fputs("go\n", g);
	fclose(g);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(b->err, P11CA_OK);
	assert_int_equal(b->out.messages_sent, 1);

	/* The on-demand pass is recorded with its caller, as is the message it sent. */
	struct audit_find a = audit_find(f, "notify.run");
	assert_int_equal(a.n, 1);
	assert_string_equal(a.last.actor, "A1B2");
	assert_non_null(strstr(a.last.details, "1 messages sent for 1 certificates, 0 failed"));
	a = audit_find(f, "cert.notify");
	assert_int_equal(a.n, 1);
	assert_string_equal(a.last.actor, "A1B2");

	/* A pass with nothing due still leaves its record; the schedule's leaves none. */
	p11ca_errmsg_clear(&em);
	call.code_override = 0;
	assert_int_equal(engine_op_notify_expiring(&call, req, resp, &em), P11CA_OK);
	a = audit_find(f, "notify.run");
	assert_int_equal(a.n, 2);
	assert_string_equal(a.last.actor, "C3D4");
	assert_non_null(strstr(a.last.details, "0 messages sent"));
	assert_int_equal(engine_notify_run(&f->eng, T0, NULL, &out, &em), P11CA_OK);
	assert_int_equal(audit_find(f, "notify.run").n, 2);
	free(req);
	free(resp);
	free(b);
}

/* ---- the Subject header ------------------------------------------------------------------ */

/* Whether s[0..n) is whole UTF-8 characters. */
static bool utf8_whole(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t k = s[i] < 0x80		   ? 1
			   : (s[i] & 0xe0) == 0xc0 ? 2
			   : (s[i] & 0xf0) == 0xe0 ? 3
			   : (s[i] & 0xf8) == 0xf0 ? 4
						   : 0;
		if (k == 0 || i + k > n)
			return false;
		for (size_t j = 1; j < k; j++)
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
		i += k;
	}
	return true;
}

static void test_notify_header(void **state)
{
	(void)state;
	char out[2048], in[600];
	engine_notify_header("plain ASCII", out, sizeof(out));
	assert_string_equal(out, "plain ASCII");
	/* Two-, three- and four-byte characters at every offset against the 45-byte chunks. */
	static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x94\x92"};
	for (size_t c = 0; c < 3; c++) {
		for (size_t shift = 0; shift < 4; shift++) {
			size_t n = (size_t)snprintf(in, sizeof(in), "Certificate %.*s", (int)shift,
						    "xxx");
			for (int i = 0; i < 40; i++)
				n += (size_t)snprintf(in + n, sizeof(in) - n, "%s", chars[c]);
			engine_notify_header(in, out, sizeof(out));
			/* Each encoded word decodes to whole characters; all of them to the
			 * input. */
			char joined[600] = "";
			size_t jl = 0;
			for (char *p = out; (p = strstr(p, "=?UTF-8?B?")) != NULL;) {
				p += 10;
				char *end = strstr(p, "?=");
				assert_non_null(end);
				unsigned char dec[128];
				int len = EVP_DecodeBlock(dec, (const unsigned char *)p,
							  (int)(end - p));
				assert_true(len > 0);
				/* EVP_DecodeBlock counts the padding as zero bytes. */
				len -= (end[-1] == '=') + (end[-1] == '=' && end[-2] == '=');
				if (!utf8_whole(dec, (size_t)len))
					fail_msg("char %zu shift %zu: an encoded word splits a "
						 "character: %s",
						 c, shift, out);
				memcpy(joined + jl, dec, (size_t)len);
				jl += (size_t)len;
				p = end + 2;
			}
			joined[jl] = '\0';
			assert_string_equal(joined, in);
		}
	}
}

/* ---- cert list --------------------------------------------------------------------------- */

struct call_fx {
	struct engine_call call;
	p11ca_v1_Request *req;
	p11ca_v1_Response *resp;
	struct p11ca_errmsg em;
};

static struct call_fx *call_new(struct fx *f)
{
	struct call_fx *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->call = (struct engine_call){.eng = &f->eng, .role = RPC_ROLE_ADMIN, .actor = "tester"};
	c->req = calloc(1, sizeof(*c->req));
	c->resp = calloc(1, sizeof(*c->resp));
	assert_non_null(c->req);
	assert_non_null(c->resp);
	return c;
}

static void call_reset(struct call_fx *c)
{
	memset(c->resp, 0, sizeof(*c->resp));
	p11ca_errmsg_clear(&c->em);
}

static void call_free(struct call_fx *c)
{
	free(c->req);
	free(c->resp);
	free(c);
}

/* All pages of a listing; returns how many certificates, checking serial order within a
 * CA when `ordered`. */
static size_t list_all(struct call_fx *c, p11ca_v1_CertListRequest *r, size_t *pages)
{
	size_t total = 0;
	*pages = 0;
	r->page_token.size = 0;
	do {
		call_reset(c);
		c->req->op.cert_list = *r;
		enum p11ca_err err = engine_op_cert_list(&c->call, c->req, c->resp, &c->em);
		if (err != P11CA_OK)
			fail_msg("cert list: %s", c->em.text);
		const p11ca_v1_CertListResponse *o = &c->resp->result.cert_list;
		total += o->certs_count;
		(*pages)++;
		memcpy(r->page_token.bytes, o->next_page_token.bytes, o->next_page_token.size);
		r->page_token.size = o->next_page_token.size;
		r->after[0] = '\0';
	} while (r->page_token.size != 0 && *pages < 100);
	return total;
}

static void test_cert_list(void **state)
{
	struct fx *f = *state;
	uint8_t s[48][STORE_SERIAL_LEN];
	int64_t now = engine_now();
	for (int i = 0; i < 40; i++)
		cert_add(f, i % 2 ? f->ca2_id : f->ca_id, "host.example.org",
			 now + (int64_t)i * DAY + DAY / 2, i % 4 == 0 ? "client" : "webserver",
			 NULL, 0, s[i]);
	for (int i = 40; i < 44; i++) /* expired */
		cert_add(f, f->ca_id, "old.example.org", now - (int64_t)(i - 39) * DAY, "webserver",
			 NULL, 0, s[i]);
	revoke_cert(f, f->ca2_id, s[1]);
	revoke_cert(f, f->ca2_id, s[3]);
	revoke_cert(f, f->ca_id, s[40]); /* expired and revoked: counts as revoked */

	struct call_fx *c = call_new(f);
	p11ca_v1_CertListRequest r = {0};
	size_t pages;
	assert_int_equal(list_all(c, &r, &pages), 44);
	assert_int_equal(pages, 2); /* 32 + 12 */

	r = (p11ca_v1_CertListRequest){.limit = 5};
	assert_int_equal(list_all(c, &r, &pages), 44);
	assert_int_equal(pages, 9);

	r = (p11ca_v1_CertListRequest){0};
	snprintf(r.ca, sizeof(r.ca), "test-ca2");
	assert_int_equal(list_all(c, &r, &pages), 20);

	r = (p11ca_v1_CertListRequest){.revoked = true};
	assert_int_equal(list_all(c, &r, &pages), 3);
	/* The compromise time comes back with the revocation. */
	r = (p11ca_v1_CertListRequest){.revoked = true, .limit = 1};
	snprintf(r.ca, sizeof(r.ca), "test-ca2");
	call_reset(c);
	c->req->op.cert_list = r;
	assert_int_equal(engine_op_cert_list(&c->call, c->req, c->resp, &c->em), P11CA_OK);
	assert_int_equal(c->resp->result.cert_list.certs_count, 1);
	assert_int_equal(c->resp->result.cert_list.certs[0].revocation.compromised_at, T0 - DAY);
	assert_int_equal(c->resp->result.cert_list.certs[0].status,
			 p11ca_v1_CertStatus_CERT_STATUS_REVOKED);

	r = (p11ca_v1_CertListRequest){.expired = true};
	assert_int_equal(list_all(c, &r, &pages), 3);
	r = (p11ca_v1_CertListRequest){.status = p11ca_v1_CertStatus_CERT_STATUS_VALID};
	assert_int_equal(list_all(c, &r, &pages), 38);
	r = (p11ca_v1_CertListRequest){.expiring_within_days = 10};
	assert_int_equal(list_all(c, &r, &pages), 10); /* 0.5 .. 9.5 days */
	r = (p11ca_v1_CertListRequest){.expiring_within_days = 10,
				       .status = p11ca_v1_CertStatus_CERT_STATUS_VALID};
	assert_int_equal(list_all(c, &r, &pages), 8); /* s[1], s[3] revoked */
	r = (p11ca_v1_CertListRequest){0};
	snprintf(r.profile, sizeof(r.profile), "client");
	assert_int_equal(list_all(c, &r, &pages), 10);
	snprintf(r.ca, sizeof(r.ca), "test-ca2");
	assert_int_equal(list_all(c, &r, &pages), 0); /* odd i: never client */

	/* after: everything behind a serial of test-ca, then all of test-ca2. */
	r = (p11ca_v1_CertListRequest){0};
	snprintf(r.ca, sizeof(r.ca), "test-ca");
	call_reset(c);
	c->req->op.cert_list = r;
	assert_int_equal(engine_op_cert_list(&c->call, c->req, c->resp, &c->em), P11CA_OK);
	const p11ca_v1_CertSummary *third = &c->resp->result.cert_list.certs[2];
	char hex[2 * STORE_SERIAL_LEN + 1];
	engine_hex_format(third->serial.bytes, STORE_SERIAL_LEN, hex);
	r = (p11ca_v1_CertListRequest){.limit = 4};
	snprintf(r.after, sizeof(r.after), "%s", hex);
	assert_int_equal(list_all(c, &r, &pages), 24 - 3 + 20);
	snprintf(r.ca, sizeof(r.ca), "test-ca");
	snprintf(r.after, sizeof(r.after), "%s", hex);
	assert_int_equal(list_all(c, &r, &pages), 24 - 3);

	/* Refusals. */
	static const struct {
		p11ca_v1_CertListRequest r;
		const char *why;
	} bad[] = {
		{{.revoked = true, .expired = true}, "contradict"},
		{{.revoked = true, .status = p11ca_v1_CertStatus_CERT_STATUS_VALID}, "contradict"},
		{{.expired = true, .expiring_within_days = 3}, "cannot be combined"},
		{{.status = (p11ca_v1_CertStatus)99}, "unknown status"},
		{{.expiring_within_days = 40000}, "at most 36500"},
		{{.page_token = {3, {'Q', 1, 2}}}, "does not belong"},
		{{.page_token = {3, {'X', 1, 2}}}, "does not belong"},
		{{.after = "12"}, "whole serial"},
		{{.after = "zz"}, ""},
		{{.after = "0102", .expired = true}, "cannot be combined"},
		{{.status = p11ca_v1_CertStatus_CERT_STATUS_ORPHANED, .profile = "client"},
		 "no profile"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		call_reset(c);
		c->req->op.cert_list = bad[i].r;
		if (engine_op_cert_list(&c->call, c->req, c->resp, &c->em) != P11CA_E_INVALID_ARG ||
		    strstr(c->em.text, bad[i].why) == NULL)
			fail_msg("bad[%zu]: got \"%s\", want \"%s\"", i, c->em.text, bad[i].why);
	}
	call_reset(c);
	c->req->op.cert_list = (p11ca_v1_CertListRequest){.ca = "nosuch"};
	assert_int_equal(engine_op_cert_list(&c->call, c->req, c->resp, &c->em),
			 P11CA_E_STORAGE_NOT_FOUND);
	call_free(c);
}

static void test_cert_list_orphans(void **state)
{
	struct fx *f = *state;
	uint8_t s[STORE_SERIAL_LEN];
	struct store_txn *txn = tu_txn(f->eng.st, STORE_TXN_WRITE);
	for (int i = 0; i < 3; i++)
		tu_intent(txn, i == 2 ? f->ca2_id : f->ca_id, s);
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_orphans_mark(txn, NULL, &em), P11CA_OK);
	tu_audit(txn, "orphans");
	tu_commit(&txn);

	struct call_fx *c = call_new(f);
	p11ca_v1_CertListRequest r = {.status = p11ca_v1_CertStatus_CERT_STATUS_ORPHANED,
				      .limit = 2};
	size_t pages;
	assert_int_equal(list_all(c, &r, &pages), 3);
	assert_int_equal(pages, 2);
	snprintf(r.ca, sizeof(r.ca), "test-ca2");
	assert_int_equal(list_all(c, &r, &pages), 1);
	assert_int_equal(c->resp->result.cert_list.certs[0].status,
			 p11ca_v1_CertStatus_CERT_STATUS_ORPHANED);
	assert_string_equal(c->resp->result.cert_list.certs[0].ca, "test-ca2");
	call_free(c);
}

/* ---- watchers ------------------------------------------------------------------------------ */

static void watchers_call(struct call_fx *c, const char *serial, const char *add,
			  const char *remove_, enum p11ca_err want)
{
	call_reset(c);
	p11ca_v1_CertWatchersRequest *r = &c->req->op.cert_watchers;
	memset(r, 0, sizeof(*r));
	snprintf(r->serial, sizeof(r->serial), "%s", serial);
	for (const char *p = add; p != NULL && *p != '\0';) {
		const char *e = strchr(p, ' ');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		snprintf(r->add[r->add_count++], sizeof(r->add[0]), "%.*s", (int)n, p);
		p += n + (e ? 1 : 0);
	}
	if (remove_ != NULL)
		snprintf(r->remove[r->remove_count++], sizeof(r->remove[0]), "%s", remove_);
	enum p11ca_err err = engine_op_cert_watchers(&c->call, c->req, c->resp, &c->em);
	if (err != want)
		fail_msg("watchers: got %d (%s), want %d", err, c->em.text, want);
}

static void test_watchers(void **state)
{
	struct fx *f = *state;
	static const char *const one[] = {"alice@example.org"};
	uint8_t s[STORE_SERIAL_LEN];
	char hex[2 * STORE_SERIAL_LEN + 1];
	cert_add(f, f->ca_id, "w.example.org", T0 + 5 * DAY, "webserver", one, 1, s);
	engine_hex_format(s, STORE_SERIAL_LEN, hex);
	/* alice was told about 7 days already: that survives other changes. */
	struct store_watcher w = {.notified_days = 7};
	snprintf(w.email, sizeof(w.email), "alice@example.org");
	struct store_txn *txn = tu_txn(f->eng.st, STORE_TXN_WRITE);
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_cert_watchers_set(txn, f->ca_id, s, &w, 1, &em), P11CA_OK);
	tu_audit(txn, "w");
	tu_commit(&txn);

	struct call_fx *c = call_new(f);
	watchers_call(c, hex, "bob@example.org ALICE@example.org BOB@example.org", NULL, P11CA_OK);
	p11ca_v1_CertWatchersResponse *o = &c->resp->result.cert_watchers;
	assert_int_equal(o->watchers_count, 2);
	assert_string_equal(o->watchers[0], "alice@example.org");
	assert_string_equal(o->watchers[1], "bob@example.org");
	assert_true(o->has_cert);
	assert_string_equal(o->cert.ca, "test-ca");

	watchers_call(c, hex, NULL, "Alice@Example.org", P11CA_OK);
	assert_int_equal(o->watchers_count, 1);
	assert_string_equal(o->watchers[0], "bob@example.org");
	watchers_call(c, hex, NULL, "nobody@example.org", P11CA_OK); /* absent: no error */
	assert_int_equal(o->watchers_count, 1);

	watchers_call(c, hex, "carol@example.org", NULL, P11CA_OK);
	txn = tu_txn(f->eng.st, STORE_TXN_READ);
	struct store_cert *cert = calloc(1, sizeof(*cert));
	assert_int_equal(store_cert_get(txn, f->ca_id, s, cert, &em), P11CA_OK);
	store_txn_abort(&txn);
	assert_int_equal(cert->n_watchers, 2);
	assert_int_equal(cert->watchers[0].notified_days, 0);
	free(cert);

	/* Refusals. */
	watchers_call(c, hex, "not-an-address", NULL, P11CA_E_INVALID_ARG);
	assert_non_null(strstr(c->em.text, "cannot add a watcher"));
	watchers_call(c, hex, "a@example.org,b@example.org", NULL, P11CA_E_INVALID_ARG);
	watchers_call(c, hex, "<a@example.org>", NULL, P11CA_E_INVALID_ARG);
	watchers_call(c, hex, "x@example.org", "x@example.org", P11CA_E_INVALID_ARG);
	assert_non_null(strstr(c->em.text, "both added and removed"));
	watchers_call(c, hex,
		      "a1@example.org a2@example.org a3@example.org a4@example.org "
		      "a5@example.org a6@example.org a7@example.org",
		      NULL, P11CA_E_INVALID_ARG);
	assert_non_null(strstr(c->em.text, "at most 8 watchers"));
	watchers_call(c, "00", "a@example.org", NULL, P11CA_E_STORAGE_NOT_FOUND);
	call_free(c);
}

/* ---- cert import ------------------------------------------------------------------------- */

static enum p11ca_err import_call(struct call_fx *c, const uint8_t *data, size_t len,
				  const char *ca, const char *watcher)
{
	call_reset(c);
	p11ca_v1_CertImportRequest *r = &c->req->op.cert_import;
	memset(r, 0, sizeof(*r));
	memcpy(r->certificate.bytes, data, len);
	r->certificate.size = (pb_size_t)len;
	snprintf(r->ca, sizeof(r->ca), "%s", ca);
	if (watcher != NULL)
		snprintf(r->watchers[r->watchers_count++], sizeof(r->watchers[0]), "%s", watcher);
	return engine_op_cert_import(&c->call, c->req, c->resp, &c->em);
}

static void test_cert_import(void **state)
{
	struct fx *f = *state;
	struct call_fx *c = call_new(f);
	uint8_t serial[STORE_SERIAL_LEN], *der = malloc(STORE_CERT_DER_MAX);
	X509 *x =
		cert_make(f->ca_cert, f->ca_key, "imported.example.org", T0, T0 + 90 * DAY, serial);
	size_t len = der_of(x, der);

	/* Found by issuer name and signature, watchers kept, profile "imported". */
	assert_int_equal(import_call(c, der, len, "", "ops@example.org"), P11CA_OK);
	p11ca_v1_CertSummary *s = &c->resp->result.cert_import.cert;
	assert_string_equal(s->ca, "test-ca");
	assert_string_equal(s->profile, "imported");
	assert_string_equal(s->subject, "CN=imported.example.org");
	assert_memory_equal(s->serial.bytes, serial, STORE_SERIAL_LEN);
	struct store_cert *cert = calloc(1, sizeof(*cert));
	struct store_txn *txn = tu_txn(f->eng.st, STORE_TXN_READ);
	assert_int_equal(store_cert_get(txn, f->ca_id, serial, cert, &c->em), P11CA_OK);
	store_txn_abort(&txn);
	assert_true(cert->imported);
	assert_int_equal(cert->n_watchers, 1);
	assert_int_equal(cert->not_after, T0 + 90 * DAY);
	free(cert);

	/* The same again: a known serial. */
	assert_int_equal(import_call(c, der, len, "", NULL), P11CA_E_POLICY);
	assert_non_null(strstr(c->em.text, "already known"));

	/* PEM, with the CA named. */
	X509 *y = cert_make(f->ca_cert, f->ca_key, "pem.example.org", T0, T0 + DAY, serial);
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, y);
	char *pem;
	long pem_len = BIO_get_mem_data(b, &pem);
	assert_int_equal(import_call(c, (uint8_t *)pem, (size_t)pem_len, "test-ca", NULL),
			 P11CA_OK);
	/* Two certificates in one file. */
	PEM_write_bio_X509(b, x);
	pem_len = BIO_get_mem_data(b, &pem);
	assert_int_equal(import_call(c, (uint8_t *)pem, (size_t)pem_len, "", NULL),
			 P11CA_E_INVALID_ARG);
	assert_non_null(strstr(c->em.text, "more than one certificate"));
	BIO_free(b);
	X509_free(y);

	/* Same issuer name, another key: not signed by any CA here. */
	y = cert_make(f->ca_cert, f->other_key, "forged.example.org", T0, T0 + DAY, serial);
	len = der_of(y, der);
	assert_int_equal(import_call(c, der, len, "", NULL), P11CA_E_POLICY);
	assert_non_null(strstr(c->em.text, "no CA held here signed this certificate"));
	/* Named CA that did not sign it (test-ca2 has another subject). */
	X509_free(y);
	y = cert_make(f->ca_cert, f->ca_key, "other.example.org", T0, T0 + DAY, serial);
	len = der_of(y, der);
	assert_int_equal(import_call(c, der, len, "test-ca2", NULL), P11CA_E_POLICY);
	assert_non_null(strstr(c->em.text, "CA test-ca2 did not sign"));
	/* Trailing bytes, garbage, bad watcher. */
	der[len] = 0;
	assert_int_equal(import_call(c, der, len + 1, "", NULL), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(c->em.text, "trailing"));
	assert_int_equal(import_call(c, (const uint8_t *)"hello", 5, "", NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(import_call(c, der, len, "", "no address"), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(c->em.text, "watcher"));
	X509_free(y);
	X509_free(x);
	free(der);
	call_free(c);
}

/* ---- profiles, revocation refusals ----------------------------------------------------- */

static void test_profile_list(void **state)
{
	struct fx *f = *state;
	struct call_fx *c = call_new(f);
	snprintf(f->cfg.profiles[0].subject, sizeof(f->cfg.profiles[0].subject), "/C=AT/O=Org");
	f->cfg.profiles[1].enabled = false;
	assert_int_equal(engine_op_profile_list(&c->call, c->req, c->resp, &c->em), P11CA_OK);
	const p11ca_v1_ProfileListResponse *o = &c->resp->result.profile_list;
	assert_int_equal(o->profiles_count, 5);
	assert_string_equal(o->profiles[0].name, "client");
	assert_string_equal(o->profiles[0].subject, "O=Org,C=AT");
	assert_false(o->profiles[1].enabled);
	assert_true(o->profiles[2].is_default); /* webserver */
	assert_int_equal(o->profiles[2].key_usage.names_count, 3);
	assert_true(o->profiles[2].key_usage.critical);
	assert_false(o->profiles[2].extended_key_usage.critical);
	assert_string_equal(o->profiles[2].extended_key_usage.names[0], "serverAuth");
	assert_true(o->profiles[4].ocsp_no_check);
	assert_false(o->profiles[4].add_ocsp_url);
	assert_string_equal(o->profiles[4].description, "A certificate for an OCSP responder.");
	call_free(c);
}

static void test_revoke_refusals(void **state)
{
	struct fx *f = *state;
	struct call_fx *c = call_new(f);
	uint8_t s[STORE_SERIAL_LEN];
	char hex[2 * STORE_SERIAL_LEN + 1];
	int64_t now = engine_now();
	X509 *x = cert_make(f->ca_cert, f->ca_key, "r.example.org", now - 10 * DAY, now + 10 * DAY,
			    s);
	X509_free(x);
	cert_add(f, f->ca_id, "r.example.org", now + 10 * DAY, "webserver", NULL, 0, s);
	engine_hex_format(s, STORE_SERIAL_LEN, hex);

	p11ca_v1_CertRevokeRequest *r = &c->req->op.cert_revoke;
	snprintf(r->serial, sizeof(r->serial), "%s", hex);
	r->compromised_at = now + 3600;
	assert_int_equal(engine_op_cert_revoke(&c->call, c->req, c->resp, &c->em),
			 P11CA_E_INVALID_ARG);
	assert_non_null(strstr(c->em.text, "in the future"));
	call_reset(c);
	r->compromised_at = now - 100 * DAY; /* cert_add: notBefore = notAfter - 30 days */
	assert_int_equal(engine_op_cert_revoke(&c->call, c->req, c->resp, &c->em),
			 P11CA_E_INVALID_ARG);
	assert_non_null(strstr(c->em.text, "before the certificate's notBefore"));
	call_reset(c);
	r->compromised_at = 0;
	r->reason = p11ca_v1_RevocationReason_REVOCATION_REASON_REMOVE_FROM_CRL;
	assert_int_equal(engine_op_cert_revoke(&c->call, c->req, c->resp, &c->em),
			 P11CA_E_INVALID_ARG);
	call_reset(c);
	r->reason = (p11ca_v1_RevocationReason)7;
	assert_int_equal(engine_op_cert_revoke(&c->call, c->req, c->resp, &c->em),
			 P11CA_E_INVALID_ARG);

	/* An imported intermediate is recorded with profile "imported": the certificate's
	 * basicConstraints, not that name, makes its revocation an admin's. */
	uint8_t si[STORE_SERIAL_LEN];
	X509 *inter =
		cert_make(f->ca_cert, f->ca_key, "Imported Sub CA", now - DAY, now + 90 * DAY, si);
	X509_EXTENSION *bc =
		X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
	assert_non_null(bc);
	assert_int_equal(X509_add_ext(inter, bc, -1), 1);
	X509_EXTENSION_free(bc);
	assert_true(X509_sign(inter, f->ca_key, EVP_sha256()) > 0);
	uint8_t *der = malloc(STORE_CERT_DER_MAX);
	size_t der_len = der_of(inter, der);
	struct store_txn *txn = tu_txn(f->eng.st, STORE_TXN_WRITE);
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_cert_import(txn, f->ca_id, si, der, der_len, now + 90 * DAY,
					   "imported", "test", NULL, 0, &em),
			 P11CA_OK);
	tu_audit(txn, "cert");
	tu_commit(&txn);
	free(der);
	X509_free(inter);
	engine_hex_format(si, STORE_SERIAL_LEN, hex);
	snprintf(r->serial, sizeof(r->serial), "%s", hex);
	r->reason = 0;
	c->call.role = RPC_ROLE_OPERATOR;
	call_reset(c);
	assert_int_equal(engine_op_cert_revoke(&c->call, c->req, c->resp, &c->em),
			 P11CA_E_PERMISSION);
	assert_non_null(strstr(c->em.text, "only an admin may revoke a CA's certificate"));
	c->call.role = RPC_ROLE_ADMIN;

	/* ca revoke: roots and the management CA are refused before anything changes. */
	p11ca_v1_CaRevokeRequest *cr = &c->req->op.ca_revoke;
	memset(cr, 0, sizeof(*cr));
	snprintf(cr->ca, sizeof(cr->ca), "test-ca");
	call_reset(c);
	assert_int_equal(engine_op_ca_revoke(&c->call, c->req, c->resp, &c->em), P11CA_E_POLICY);
	assert_non_null(strstr(c->em.text, "is a root CA"));
	snprintf(f->cfg.management_ca, sizeof(f->cfg.management_ca), "test-ca2");
	snprintf(cr->ca, sizeof(cr->ca), "test-ca2");
	call_reset(c);
	assert_int_equal(engine_op_ca_revoke(&c->call, c->req, c->resp, &c->em), P11CA_E_POLICY);
	assert_non_null(strstr(c->em.text, "management CA"));
	snprintf(f->cfg.management_ca, sizeof(f->cfg.management_ca), "p11ca-management");
	cr->reason = p11ca_v1_RevocationReason_REVOCATION_REASON_REMOVE_FROM_CRL;
	call_reset(c);
	assert_int_equal(engine_op_ca_revoke(&c->call, c->req, c->resp, &c->em),
			 P11CA_E_INVALID_ARG);
	cr->reason = 0;
	cr->compromised_at = now + DAY;
	call_reset(c);
	assert_int_equal(engine_op_ca_revoke(&c->call, c->req, c->resp, &c->em),
			 P11CA_E_INVALID_ARG);
	assert_non_null(strstr(c->em.text, "in the future"));
	call_free(c);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as p11cad: a command that stops reading is an error */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_notify_due),
		cmocka_unit_test_setup_teardown(test_notify_run_days, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_command_fds_and_args, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_one_pass_at_a_time, setup, teardown),
		cmocka_unit_test(test_notify_header),
		cmocka_unit_test_setup_teardown(test_cert_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cert_list_orphans, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watchers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cert_import, setup, teardown),
		cmocka_unit_test_setup_teardown(test_profile_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_revoke_refusals, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
