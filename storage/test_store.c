/*
 * storage/ environment tests: open/close, schema versions and migrations, transactions
 * and the audit rule at commit, map full, soft quota, disk full, stale readers, backup,
 * and a kill -9 durability run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pb_encode.h>

#include "common/kconfig.h"
#include "storage/records.pb.h"
#include "storage/test_util.h"

/* In a forked child: die with the test process, so a failed assertion in the parent
 * never leaves a child behind (holding a database, or writing in a loop). */
static void child_die_with_parent(pid_t parent)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(99);
}

static uint64_t audit_seq(struct store *st)
{
	struct store_txn *txn = tu_txn(st, STORE_TXN_READ);
	uint64_t seq = 0;
	uint8_t hash[STORE_SHA256_LEN];
	assert_int_equal(store_audit_head(txn, &seq, hash, NULL), P11CA_OK);
	store_txn_abort(&txn);
	return seq;
}

static void test_open_creates_and_reopens(void **state)
{
	(void)state;
	char dir[PATH_MAX];
	tu_tmpdir(dir, "open");
	struct store *st = tu_open(dir, 0, 0);
	struct store_usage u;
	assert_int_equal(store_usage_get(st, &u, NULL), P11CA_OK);
	assert_int_equal(u.schema_version, STORE_SCHEMA_VERSION);
	assert_int_equal(u.map_size, (size_t)CONFIG_STORE_MAP_SIZE_MB << 20);
	assert_true(u.used > 0 && u.used < u.soft_quota);
	assert_int_equal(audit_seq(st), 1); /* "storage.create" */
	store_close(&st);
	assert_null(st);
	store_close(&st); /* NULL-safe */
	store_close(NULL);

	st = tu_open(dir, 0, 0);
	assert_int_equal(audit_seq(st), 1); /* nothing new at a plain reopen */
	assert_int_equal(store_usage_get(NULL, &u, NULL), P11CA_E_INVALID_ARG);
	store_close(&st);
}

/* A program the process starts must not inherit the database: every descriptor open on
 * a file of the environment is close-on-exec. */
static void test_open_fds_cloexec(void **state)
{
	(void)state;
	char dir[PATH_MAX], real[PATH_MAX], link[PATH_MAX + 32], target[PATH_MAX];
	tu_tmpdir(dir, "cloexec");
	struct store *st = tu_open(dir, 0, 0);
	assert_non_null(realpath(dir, real));
	size_t n_db = 0;
	for (int fd = 0; fd < 1024; fd++) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (strncmp(target, real, strlen(real)) != 0)
			continue;
		n_db++;
		if ((fcntl(fd, F_GETFD) & FD_CLOEXEC) == 0)
			fail_msg("fd %d (%s) is not close-on-exec", fd, target);
	}
	assert_true(n_db >= 2); /* data.mdb and lock.mdb at least */
	store_close(&st);
}

static void test_open_refuses_bad_options(void **state)
{
	(void)state;
	char dir[PATH_MAX], file[PATH_MAX + 8];
	struct store *st = NULL;
	struct p11ca_errmsg em = {0};
	tu_tmpdir(dir, "badopt");
	assert_int_equal(store_open(NULL, &st, &em), P11CA_E_INVALID_ARG);
	struct store_options o = {.path = NULL};
	assert_int_equal(store_open(&o, &st, NULL), P11CA_E_INVALID_ARG);
	o.path = dir;
	assert_int_equal(store_open(&o, NULL, NULL), P11CA_E_INVALID_ARG);
	o.map_size = 4096;
	assert_int_equal(store_open(&o, &st, NULL), P11CA_E_INVALID_ARG);
	o.map_size = 0;
	o.soft_quota_percent = 101;
	assert_int_equal(store_open(&o, &st, NULL), P11CA_E_INVALID_ARG);
	assert_null(st);

	/* A file where the directory should be. */
	snprintf(file, sizeof(file), "%s/file", dir);
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	o = (struct store_options){.path = file};
	p11ca_errmsg_clear(&em);
	assert_int_equal(store_open(&o, &st, &em), P11CA_E_STORAGE_IO);
	assert_non_null(strstr(em.text, file));

	/* Read-only needs an existing, initialised database. */
	snprintf(file, sizeof(file), "%s/none", dir);
	o = (struct store_options){.path = file, .read_only = true};
	assert_int_equal(store_open(&o, &st, NULL), P11CA_E_STORAGE_IO);
	assert_null(st);
}

static void meta_version_set(const char *dir, uint32_t version)
{
	p11ca_storage_v1_Meta meta = {.format = 1, .schema_version = version, .created = 1};
	uint8_t buf[p11ca_storage_v1_Meta_size];
	pb_ostream_t os = pb_ostream_from_buffer(buf, sizeof(buf));
	assert_true(pb_encode(&os, p11ca_storage_v1_Meta_fields, &meta));
	tu_raw_put(dir, "meta", "schema", 6, buf, os.bytes_written);
}

static void test_newer_schema_refused(void **state)
{
	(void)state;
	char dir[PATH_MAX];
	tu_tmpdir(dir, "newer");
	struct store *st = tu_open(dir, 0, 0);
	store_close(&st);
	meta_version_set(dir, STORE_SCHEMA_VERSION + 1);

	struct store_options o = {.path = dir};
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_open(&o, &st, &em), P11CA_E_STORAGE_VERSION);
	assert_null(st);
	assert_non_null(strstr(em.text, "newer"));
	o.read_only = true;
	assert_int_equal(store_open(&o, &st, NULL), P11CA_E_STORAGE_VERSION);
}

static int migrations_run;

static enum p11ca_err migrate_add_ca(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	(void)em;
	migrations_run++;
	(void)tu_ca_add(txn, arg, 0);
	return P11CA_OK;
}

static enum p11ca_err migrate_fail(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	(void)txn;
	(void)arg;
	migrations_run++;
	return p11ca_fail(em, P11CA_E_STORAGE_CORRUPT, "step refuses");
}

static void test_migration_runs_once(void **state)
{
	(void)state;
	char dir[PATH_MAX];
	tu_tmpdir(dir, "migrate");
	struct store *st = tu_open(dir, 0, 0);
	store_close(&st);

	static const struct store_migration steps[] = {{1, "add a CA", migrate_add_ca}};
	struct store_schema v2 = {.version = 2, .steps = steps, .n_steps = 1, .arg = "migrated"};
	struct store_options o = {.path = dir, .schema = &v2};
	migrations_run = 0;
	assert_int_equal(store_open(&o, &st, NULL), P11CA_OK);
	assert_int_equal(migrations_run, 1);
	struct store_usage u;
	assert_int_equal(store_usage_get(st, &u, NULL), P11CA_OK);
	assert_int_equal(u.schema_version, 2);
	assert_int_equal(audit_seq(st), 2); /* create, migrate */
	store_close(&st);

	assert_int_equal(store_open(&o, &st, NULL), P11CA_OK);
	assert_int_equal(migrations_run, 1); /* not again */
	struct store_txn *txn = tu_txn(st, STORE_TXN_READ);
	struct store_ca *ca = malloc(sizeof(*ca));
	assert_int_equal(store_ca_get_by_name(txn, "migrated", ca, NULL), P11CA_OK);
	free(ca);
	uint64_t bad = 99;
	assert_int_equal(store_audit_verify(txn, &bad, NULL), P11CA_OK);
	store_txn_abort(&txn);
	store_close(&st);

	/* This binary's schema (1) is now older than the database. */
	assert_int_equal(store_open(&(struct store_options){.path = dir}, &st, NULL),
			 P11CA_E_STORAGE_VERSION);
}

static void test_migration_failure_rolls_back(void **state)
{
	(void)state;
	char dir[PATH_MAX];
	tu_tmpdir(dir, "migfail");
	struct store *st = tu_open(dir, 0, 0);
	store_close(&st);

	/* A gap in the steps is refused before any step runs. */
	static const struct store_migration gap[] = {{1, "add a CA", migrate_add_ca}};
	struct store_schema v3 = {.version = 3, .steps = gap, .n_steps = 1, .arg = "x"};
	struct store_options o = {.path = dir, .schema = &v3};
	struct p11ca_errmsg em = {0};
	migrations_run = 0;
	assert_int_equal(store_open(&o, &st, &em), P11CA_E_STORAGE_VERSION);
	assert_int_equal(migrations_run, 0);
	assert_non_null(strstr(em.text, "2 to 3"));

	/* Step 1->2 works, 2->3 fails: nothing of step 1 stays. */
	static const struct store_migration steps[] = {{1, "add a CA", migrate_add_ca},
						       {2, "fails", migrate_fail}};
	v3.steps = steps;
	v3.n_steps = 2;
	p11ca_errmsg_clear(&em);
	assert_int_equal(store_open(&o, &st, &em), P11CA_E_STORAGE_VERSION);
	assert_int_equal(migrations_run, 2);
	assert_non_null(strstr(em.text, "step refuses")); /* the precise cause sticks */

	st = tu_open(dir, 0, 0); /* still schema 1 */
	struct store_txn *txn = tu_txn(st, STORE_TXN_READ);
	struct store_ca *ca = malloc(sizeof(*ca));
	assert_int_equal(store_ca_get_by_name(txn, "x", ca, NULL), P11CA_E_STORAGE_NOT_FOUND);
	free(ca);
	store_txn_abort(&txn);
	store_close(&st);
}

static void test_read_only(void **state)
{
	(void)state;
	char dir[PATH_MAX];
	tu_tmpdir(dir, "ro");
	struct store *st = tu_open(dir, 0, 0);
	struct store_txn *txn = tu_txn(st, STORE_TXN_WRITE);
	uint32_t id = tu_ca_add(txn, "root", 0);
	tu_audit(txn, "ca");
	tu_commit(&txn);
	store_close(&st);

	struct store_options o = {.path = dir, .read_only = true};
	assert_int_equal(store_open(&o, &st, NULL), P11CA_OK);
	txn = tu_txn(st, STORE_TXN_READ);
	struct store_ca *ca = malloc(sizeof(*ca));
	assert_int_equal(store_ca_get(txn, id, ca, NULL), P11CA_OK);
	assert_string_equal(ca->name, "root");
	free(ca);
	store_txn_abort(&txn);
	assert_int_equal(store_txn_begin(st, STORE_TXN_WRITE, &txn, NULL), P11CA_E_INVALID_ARG);
	assert_null(txn);
	store_close(&st);

	/* A read-only process never migrates. */
	static const struct store_migration steps[] = {{1, "noop", migrate_fail}};
	struct store_schema v2 = {.version = 2, .steps = steps, .n_steps = 1};
	o.schema = &v2;
	assert_int_equal(store_open(&o, &st, NULL), P11CA_E_STORAGE_VERSION);
}

static void test_txn_rules(void **state)
{
	(void)state;
	char dir[PATH_MAX];
	tu_tmpdir(dir, "txn");
	struct store *st = tu_open(dir, 0, 0);
	struct store_txn *txn = NULL;
	struct p11ca_errmsg em = {0};

	assert_int_equal(store_txn_begin(NULL, STORE_TXN_READ, &txn, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(store_txn_begin(st, (enum store_txn_mode)7, &txn, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(store_txn_commit(NULL, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(store_txn_commit(&txn, NULL), P11CA_E_INVALID_ARG);
	store_txn_abort(&txn);
	store_txn_abort(NULL);

	/* Writes on a read transaction are refused. */
	txn = tu_txn(st, STORE_TXN_READ);
	assert_int_equal(store_audit_append(txn, "x", NULL, NULL, NULL, NULL, NULL),
			 P11CA_E_INVALID_ARG);
	store_txn_abort(&txn);

	/* A change without an audit record after it is never committed. */
	txn = tu_txn(st, STORE_TXN_WRITE);
	(void)tu_ca_add(txn, "unaudited", 0);
	assert_int_equal(store_txn_commit(&txn, &em), P11CA_E_INTERNAL);
	assert_null(txn);
	assert_non_null(strstr(em.text, "audit"));
	txn = tu_txn(st, STORE_TXN_WRITE);
	tu_audit(txn, "first");
	(void)tu_ca_add(txn, "unaudited", 0); /* change after the last audit record */
	assert_int_equal(store_txn_commit(&txn, NULL), P11CA_E_INTERNAL);
	txn = tu_txn(st, STORE_TXN_READ);
	struct store_ca *ca = malloc(sizeof(*ca));
	assert_int_equal(store_ca_get_by_name(txn, "unaudited", ca, NULL),
			 P11CA_E_STORAGE_NOT_FOUND);
	free(ca);
	store_txn_abort(&txn);
	assert_int_equal(audit_seq(st), 1);
	store_close(&st);
}

static void test_map_full_aborts_txn(void **state)
{
	(void)state;
	char dir[PATH_MAX], details[1001];
	tu_tmpdir(dir, "mapfull");
	struct store *st = tu_open(dir, 256 * 1024, 100);
	struct store_txn *txn = tu_txn(st, STORE_TXN_WRITE);
	uint32_t id = tu_ca_add(txn, "root", 0);
	tu_audit(txn, "ca");
	tu_commit(&txn);

	memset(details, 'd', sizeof(details) - 1);
	details[sizeof(details) - 1] = '\0';
	struct p11ca_errmsg em = {0};
	enum p11ca_err err = P11CA_OK;
	txn = tu_txn(st, STORE_TXN_WRITE);
	for (int i = 0; i < 10000 && err == P11CA_OK; i++)
		err = store_audit_append(txn, "fill", "t", "s", details, NULL, &em);
	assert_int_equal(err, P11CA_E_STORAGE_FULL);
	assert_non_null(strstr(em.text, "map_size"));
	/* The transaction is dead: every later call says so, and commit aborts it. */
	assert_int_equal(store_audit_append(txn, "more", NULL, NULL, NULL, NULL, NULL),
			 P11CA_E_STORAGE_FULL);
	uint8_t serial[STORE_SERIAL_LEN];
	assert_int_equal(store_serial_alloc(txn, serial, NULL), P11CA_E_STORAGE_FULL);
	assert_int_equal(store_txn_commit(&txn, NULL), P11CA_E_STORAGE_FULL);
	assert_null(txn);

	/* Earlier data intact, chain intact, and small writes work again. */
	txn = tu_txn(st, STORE_TXN_READ);
	struct store_ca *ca = malloc(sizeof(*ca));
	assert_int_equal(store_ca_get(txn, id, ca, NULL), P11CA_OK);
	free(ca);
	uint64_t bad = 1;
	assert_int_equal(store_audit_verify(txn, &bad, NULL), P11CA_OK);
	assert_int_equal(bad, 0);
	store_txn_abort(&txn);
	assert_int_equal(audit_seq(st), 2);
	txn = tu_txn(st, STORE_TXN_WRITE);
	tu_audit(txn, "after");
	tu_commit(&txn);
	store_close(&st);
}

static void test_soft_quota(void **state)
{
	(void)state;
	char dir[PATH_MAX], details[1001];
	tu_tmpdir(dir, "quota");
	struct store *st = tu_open(dir, 1024 * 1024, 50);
	uint8_t issued[STORE_SERIAL_LEN], pending[STORE_SERIAL_LEN], serial[STORE_SERIAL_LEN];
	uint8_t der[1024], tbs_sha256[STORE_SHA256_LEN];
	struct store_txn *txn = tu_txn(st, STORE_TXN_WRITE);
	uint32_t id = tu_ca_add(txn, "root", 0);
	tu_issue(txn, id, 2000000000, issued);
	tu_intent(txn, id, pending); /* in flight when the quota is reached */
	tu_commit(&txn);

	/* Audit records are never refused by the soft quota: fill with them. */
	memset(details, 'd', sizeof(details) - 1);
	details[sizeof(details) - 1] = '\0';
	struct store_usage u;
	assert_int_equal(store_usage_get(st, &u, NULL), P11CA_OK);
	for (int i = 0; i < 200 && u.used <= u.soft_quota; i++) {
		txn = tu_txn(st, STORE_TXN_WRITE);
		for (int j = 0; j < 10; j++)
			assert_int_equal(
				store_audit_append(txn, "fill", "t", "s", details, NULL, NULL),
				P11CA_OK);
		tu_commit(&txn);
		assert_int_equal(store_usage_get(st, &u, NULL), P11CA_OK);
	}
	assert_true(u.used > u.soft_quota);
	assert_true(u.used < u.map_size);

	struct p11ca_errmsg em = {0};
	txn = tu_txn(st, STORE_TXN_WRITE);
	assert_int_equal(store_serial_alloc(txn, serial, NULL), P11CA_OK);
	assert_int_equal(store_intent_put(txn, serial, id, tbs_sha256, "t", &em),
			 P11CA_E_STORAGE_FULL);
	assert_non_null(strstr(em.text, "map_size"));
	assert_non_null(strstr(em.text, "soft quota"));
	struct store_ca *ca = calloc(1, sizeof(*ca));
	strcpy(ca->name, "new");
	ca->subject_der_len = 1;
	ca->state = STORE_CA_ACTIVE;
	assert_int_equal(store_ca_put(txn, ca, NULL), P11CA_E_STORAGE_FULL);
	free(ca);
	/* An import is issuance too. */
	static const uint8_t short_serial[] = {0x42};
	uint8_t padded[STORE_SERIAL_LEN] = {0};
	padded[STORE_SERIAL_LEN - 1] = 0x42;
	size_t ilen = tu_cert_make_int(short_serial, 1, 4, der, sizeof(der), tbs_sha256);
	assert_int_equal(
		store_cert_import(txn, id, padded, der, ilen, 5, NULL, NULL, NULL, 0, NULL),
		P11CA_E_STORAGE_FULL);

	/* What was accepted earlier completes; revocation and audit still fit. */
	size_t len = tu_cert_make(pending, 16, der, sizeof(der), tbs_sha256);
	assert_int_equal(store_cert_put(txn, id, pending, der, len, 2000000000, "p", NULL),
			 P11CA_OK);
	struct store_revocation rev = {.reason = 1};
	assert_int_equal(store_cert_revoke(txn, id, issued, &rev, NULL), P11CA_OK);
	tu_audit(txn, "revoke");
	tu_commit(&txn);

	txn = tu_txn(st, STORE_TXN_READ);
	struct store_cert *cert = malloc(sizeof(*cert));
	assert_int_equal(store_cert_get(txn, id, issued, cert, NULL), P11CA_OK);
	assert_true(cert->revoked);
	free(cert);
	store_txn_abort(&txn);
	store_close(&st);
}

/* Disk full on commit, simulated with RLIMIT_FSIZE in a child (EFBIG on write). */
static void test_disk_full_on_commit(void **state)
{
	(void)state;
	char dir[PATH_MAX];
	tu_tmpdir(dir, "diskfull");
	struct store *st = tu_open(dir, 0, 0);
	struct store_txn *txn = tu_txn(st, STORE_TXN_WRITE);
	uint32_t id = tu_ca_add(txn, "root", 0);
	tu_audit(txn, "ca");
	tu_commit(&txn);
	store_close(&st);

	pid_t parent = getpid(), pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		child_die_with_parent(parent);
		char details[1001], file[PATH_MAX + 16];
		memset(details, 'd', sizeof(details) - 1);
		details[sizeof(details) - 1] = '\0';
		signal(SIGXFSZ, SIG_IGN);
		struct store_options o = {.path = dir};
		if (store_open(&o, &st, NULL) != P11CA_OK)
			_exit(10);
		struct stat sb;
		snprintf(file, sizeof(file), "%s/data.mdb", dir);
		if (stat(file, &sb) != 0)
			_exit(11);
		struct rlimit rl;
		getrlimit(RLIMIT_FSIZE, &rl);
		rl.rlim_cur = (rlim_t)sb.st_size + 16 * 1024;
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
			_exit(12);
		struct p11ca_errmsg em = {0};
		enum p11ca_err err = P11CA_OK;
		for (int i = 0; i < 100 && err == P11CA_OK; i++) {
			if (store_txn_begin(st, STORE_TXN_WRITE, &txn, NULL) != P11CA_OK)
				_exit(13);
			for (int j = 0; j < 20; j++)
				if (store_audit_append(txn, "fill", "t", "s", details, NULL,
						       NULL) != P11CA_OK)
					_exit(14);
			err = store_txn_commit(&txn, &em);
		}
		if (err != P11CA_E_STORAGE_FULL || strstr(em.text, "readable") == NULL) {
			fprintf(stderr, "child: %s: %s\n", p11ca_err_name(err), em.text);
			_exit(15);
		}
		/* Still readable, chain intact. */
		struct store_ca *ca = malloc(sizeof(*ca));
		uint64_t bad = 0;
		if (store_txn_begin(st, STORE_TXN_READ, &txn, NULL) != P11CA_OK ||
		    store_ca_get(txn, id, ca, NULL) != P11CA_OK ||
		    store_audit_verify(txn, &bad, NULL) != P11CA_OK)
			_exit(16);
		free(ca);
		store_txn_abort(&txn);
		store_close(&st);
		_exit(0);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	st = tu_open(dir, 0, 0);
	txn = tu_txn(st, STORE_TXN_READ);
	uint64_t bad = 1;
	assert_int_equal(store_audit_verify(txn, &bad, NULL), P11CA_OK);
	store_txn_abort(&txn);
	store_close(&st);
}

/* Fork a child that opens its own environment (nothing of LMDB crosses the fork), holds
 * it (and a read transaction when `reader`), reports on a pipe, and waits to be killed. */
static pid_t child_holding(const char *dir, bool reader)
{
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t parent = getpid(), pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		child_die_with_parent(parent);
		struct store_options o = {.path = dir, .read_only = true};
		struct store *st = NULL;
		struct store_txn *txn = NULL;
		close(ready[0]);
		if (store_open(&o, &st, NULL) != P11CA_OK)
			_exit(1);
		if (reader && store_txn_begin(st, STORE_TXN_READ, &txn, NULL) != P11CA_OK)
			_exit(2);
		if (write(ready[1], "r", 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	close(ready[1]);
	char c = 0;
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	return pid;
}

static void child_kill(pid_t pid)
{
	int status = 0;
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
}

/*
 * A responder killed in the middle of a read transaction leaves its reader slot behind,
 * pinning old pages. LMDB resets the reader table itself when the first process opens
 * the environment, so the case that matters is a stale slot while another process (the
 * engine, here `holder`) keeps the environment open.
 */
static void test_reader_check_clears_stale_reader(void **state)
{
	(void)state;
	char dir[PATH_MAX];
	tu_tmpdir(dir, "readers");
	struct store *st = tu_open(dir, 0, 0);
	store_close(&st);

	/* Every fork happens while this process has no environment open. */
	pid_t holder = child_holding(dir, false);
	pid_t stale = child_holding(dir, true);
	/* Started before the kill: its own store_open would clear the slot otherwise. */
	pid_t live_reader = child_holding(dir, true);
	child_kill(stale);
	struct tu_log log;
	tu_log_init(&log);
	struct store_options o = {.path = dir, .logger = &log.logger};
	assert_int_equal(store_open(&o, &st, NULL), P11CA_OK);
	assert_non_null(strstr(log.text, "cleared 1 stale reader slot"));
	int cleared = -1;
	assert_int_equal(store_readers_check(st, &cleared, NULL), P11CA_OK);
	assert_int_equal(cleared, 0); /* the live reader keeps its slot */

	/* While running: the engine calls it when the supervisor reaps a responder. */
	child_kill(live_reader);
	assert_int_equal(store_readers_check(st, &cleared, NULL), P11CA_OK);
	assert_int_equal(cleared, 1);
	assert_int_equal(store_readers_check(NULL, &cleared, NULL), P11CA_E_INVALID_ARG);
	store_close(&st);
	child_kill(holder);
}

static void test_backup(void **state)
{
	(void)state;
	char dir[PATH_MAX], copy[PATH_MAX + 8];
	uint8_t serial[STORE_SERIAL_LEN];
	tu_tmpdir(dir, "backup");
	snprintf(copy, sizeof(copy), "%s/copy", dir);
	struct store *st = tu_open(dir, 0, 0);
	struct store_txn *txn = tu_txn(st, STORE_TXN_WRITE);
	uint32_t id = tu_ca_add(txn, "root", 0);
	tu_issue(txn, id, 2000000000, serial);
	tu_commit(&txn);
	assert_int_equal(store_backup(st, copy, NULL), P11CA_OK);
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_backup(st, copy, &em), P11CA_E_STORAGE_EXISTS);
	assert_int_equal(store_backup(st, NULL, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(store_backup(NULL, copy, NULL), P11CA_E_INVALID_ARG);
	store_close(&st);

	struct store_options o = {.path = copy, .read_only = true};
	assert_int_equal(store_open(&o, &st, NULL), P11CA_OK);
	txn = tu_txn(st, STORE_TXN_READ);
	struct store_cert *cert = malloc(sizeof(*cert));
	assert_int_equal(store_cert_get_by_serial(txn, serial, cert, NULL), P11CA_OK);
	free(cert);
	uint64_t bad = 1;
	assert_int_equal(store_audit_verify(txn, &bad, NULL), P11CA_OK);
	store_txn_abort(&txn);
	store_close(&st);
}

static int count_cert(void *arg, const struct store_cert *cert)
{
	(void)cert;
	(*(size_t *)arg)++;
	return 0;
}

/* A child issues in a loop (intent commit, then certificate commit) and reports each
 * committed certificate on a pipe; it is killed with SIGKILL at an arbitrary point. */
static void test_kill9_durability(void **state)
{
	(void)state;
	char dir[PATH_MAX];
	tu_tmpdir(dir, "kill9");
	struct store *st = tu_open(dir, 0, 0);
	struct store_txn *txn = tu_txn(st, STORE_TXN_WRITE);
	uint32_t id = tu_ca_add(txn, "root", 0);
	tu_audit(txn, "ca");
	tu_commit(&txn);
	store_close(&st);

	int pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	pid_t parent = getpid(), pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		child_die_with_parent(parent);
		close(pipefd[0]);
		if (store_open(&(struct store_options){.path = dir}, &st, NULL) != P11CA_OK)
			_exit(1);
		for (uint32_t n = 1;; n++) {
			uint8_t serial[STORE_SERIAL_LEN], der[1024], md[STORE_SHA256_LEN];
			if (store_txn_begin(st, STORE_TXN_WRITE, &txn, NULL) != P11CA_OK ||
			    store_serial_alloc(txn, serial, NULL) != P11CA_OK)
				_exit(2);
			size_t len = tu_cert_make(serial, 16, der, sizeof(der), md);
			if (store_intent_put(txn, serial, id, md, "k", NULL) != P11CA_OK ||
			    store_audit_append(txn, "intent", "k", NULL, NULL, NULL, NULL) !=
				    P11CA_OK ||
			    store_txn_commit(&txn, NULL) != P11CA_OK)
				_exit(3);
			if (store_txn_begin(st, STORE_TXN_WRITE, &txn, NULL) != P11CA_OK ||
			    store_cert_put(txn, id, serial, der, len, 1, "p", NULL) != P11CA_OK ||
			    store_audit_append(txn, "issue", "k", NULL, NULL, NULL, NULL) !=
				    P11CA_OK ||
			    store_txn_commit(&txn, NULL) != P11CA_OK)
				_exit(4);
			if (write(pipefd[1], &n, sizeof(n)) != sizeof(n))
				_exit(5);
		}
	}
	close(pipefd[1]);
	uint32_t n = 0, last = 0;
	while (last < 40 && read(pipefd[0], &n, sizeof(n)) == sizeof(n))
		last = n;
	assert_int_equal(kill(pid, SIGKILL), 0);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	while (read(pipefd[0], &n, sizeof(n)) == sizeof(n)) /* what it reported before dying */
		last = n;
	close(pipefd[0]);
	assert_true(last >= 40);

	st = tu_open(dir, 0, 0);
	txn = tu_txn(st, STORE_TXN_WRITE);
	size_t certs = 0, orphans = 0;
	assert_int_equal(store_cert_list(txn, id, NULL, 0, count_cert, &certs, NULL, NULL),
			 P11CA_OK);
	/* Every reported certificate is there; at most one more committed unreported. */
	assert_true(certs >= last && certs <= last + 1);
	assert_int_equal(store_orphans_mark(txn, &orphans, NULL), P11CA_OK);
	assert_true(orphans <= 1);
	tu_audit(txn, "orphans");
	uint64_t bad = 1;
	assert_int_equal(store_audit_verify(txn, &bad, NULL), P11CA_OK);
	tu_commit(&txn);
	store_close(&st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_creates_and_reopens),
		cmocka_unit_test(test_open_fds_cloexec),
		cmocka_unit_test(test_open_refuses_bad_options),
		cmocka_unit_test(test_newer_schema_refused),
		cmocka_unit_test(test_migration_runs_once),
		cmocka_unit_test(test_migration_failure_rolls_back),
		cmocka_unit_test(test_read_only),
		cmocka_unit_test(test_txn_rules),
		cmocka_unit_test(test_map_full_aborts_txn),
		cmocka_unit_test(test_soft_quota),
		cmocka_unit_test(test_disk_full_on_commit),
		cmocka_unit_test(test_reader_check_clears_stale_reader),
		cmocka_unit_test(test_backup),
		cmocka_unit_test(test_kill9_durability),
	};
	return cmocka_run_group_tests_name("storage_store", tests, NULL, NULL);
}
