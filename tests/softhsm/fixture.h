/*
 * SoftHSM2 test fixture: a private token directory and configuration per test process, and
 * helpers for driving libp11fault.so (docs/p11fault.md). Test-only code; no cmocka in the
 * API, so any test harness can use it.
 *
 * Every function that can fail prints what failed to stderr and returns -1 (or NULL): a test
 * asserts on the result and the log tells why.
 */
#ifndef P11CA_TESTS_SOFTHSM_FIXTURE_H
#define P11CA_TESTS_SOFTHSM_FIXTURE_H

struct softhsm_fixture {
	char dir[4096];	     /* the fixture's private directory (under $TMPDIR) */
	char conf[4096];     /* dir/softhsm2.conf, also in env SOFTHSM2_CONF */
	char tokendir[4096]; /* dir/tokens */
};

/*
 * Create a private directory under $TMPDIR (or /tmp), write softhsm2.conf there
 * (directories.tokendir, objectstore.backend = file, log.level = ERROR), setenv SOFTHSM2_CONF
 * to it, and initialise one token with `softhsm2-util --init-token --free`. Slot ids are
 * random: find the token by label. 0 on success; -1 (with a message, and nothing left behind)
 * on failure. Must be called before the SoftHSM module is initialised in this process.
 */
int softhsm_fixture_setup(struct softhsm_fixture *fx, const char *label, const char *so_pin,
			  const char *user_pin);

/* Initialise one more token in the fixture's token directory. 0 or -1. A module that is
 * already initialised sees it only after C_Finalize + C_Initialize. */
int softhsm_fixture_add_token(struct softhsm_fixture *fx, const char *label, const char *so_pin,
			      const char *user_pin);

/* Remove the fixture's directory and unset SOFTHSM2_CONF. Safe on a zeroed or torn-down
 * fixture. */
void softhsm_fixture_teardown(struct softhsm_fixture *fx);

/* The SoftHSM2 module: env P11CA_SOFTHSM_MODULE, or /usr/lib/softhsm/libsofthsm2.so. */
const char *softhsm_module_path(void);

/* The absolute path of $OUT/lib/libp11fault.so (OUT from the environment, default "build",
 * relative to the current directory). A static buffer, valid until the next call. */
const char *p11fault_module_path(void);

/*
 * Replace the p11fault control file at `path` with `text`, atomically (a temporary file in
 * the same directory, then rename), so the module never reads half a file. The new file's
 * mtime is made later than the old one's, so the change is seen even when both writes fall
 * in the same clock tick. 0 or -1.
 */
int p11fault_control_write(const char *path, const char *text);

/* The number of lines in a p11fault log that contain every one of the given substrings
 * (a NULL-terminated list; no substrings counts every line). -1 if the log cannot be read. */
long p11fault_log_count(const char *log_path, ...) __attribute__((sentinel));

#endif
