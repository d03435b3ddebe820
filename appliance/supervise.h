/*
 * appliance/supervise.h — starting, watching, stopping and restarting p11cad's children.
 *
 * Generic over what the children are, so the same code runs p11cad's three processes and
 * a test's `/bin/sh -c 'exit 3'`. Children are fork+exec'd (a fresh address space: no
 * PKCS#11 or LMDB state ever crosses a fork), watched through pidfds, and die with the
 * parent (PR_SET_PDEATHSIG). When one exits while the set is running, the others are
 * stopped too and the whole set is started again with fresh links, after a back-off: a
 * link cannot be re-joined safely by a new peer, so a partial restart would be wrong.
 */
#ifndef P11CA_APPLIANCE_SUPERVISE_H
#define P11CA_APPLIANCE_SUPERVISE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "common/log.h"

#define SUP_MAX_CHILDREN 4
#define SUP_MAX_FDS	 8 /* passed fds: 3, 4, … in the child */
#define SUP_FIRST_FD	 3

struct sup_child {
	const char *name; /* "signer": names the child in logs */
	const char *path; /* program to execv; NULL: argv[0] */
	char *const *argv;
	/* fds[i] becomes SUP_FIRST_FD + i in the child; every other fd above 2 is closed.
	 * After the fork the parent closes its copy unless bit i of keep_mask is set. */
	int fds[SUP_MAX_FDS];
	size_t n_fds;
	uint32_t keep_mask;
	/* At stop: 1 = SIGTERM at once; 0 = give it grace_ms to exit by itself (the signer
	 * exits when the engine's link closes), then SIGTERM. */
	int term_on_stop;
	/* Set by sup_spawn; 0 / -1 when not running. */
	pid_t pid;
	int pidfd;
};

/* Start `c`. Errors: P11CA_E_INVALID_ARG, P11CA_E_INTERNAL (fork, pidfd). A program that
 * cannot be executed shows up as an exit status of 127. */
P11CA_MUST_CHECK enum p11ca_err sup_spawn(struct sup_child *c, struct p11ca_errmsg *em);

/* Wait up to timeout_ms (< 0: forever) for `c` to exit; 1 and *status (waitpid's) when it
 * did (c->pid is then 0), 0 on timeout or when it is not running. */
int sup_wait(struct sup_child *c, int timeout_ms, int *status);

/* Stop the running children of c[0..n) in reverse order (the last started first), each
 * per its term_on_stop (then SIGTERM after grace_ms), and SIGKILL after another grace_ms. */
void sup_stop_all(struct sup_child *c, size_t n, unsigned grace_ms, const struct p11ca_logger *log);

/* "exited with status 3" / "was killed by signal 9 (Killed)". */
void sup_status_text(int status, char *out, size_t cap);

/* Restart delays: min_ms, doubled after each crash up to max_ms; a set that ran for
 * reset_after_ms before crashing starts again from min_ms. */
struct sup_backoff {
	unsigned min_ms, max_ms, reset_after_ms;
	unsigned next_ms; /* 0: not started */
};
unsigned sup_backoff_next(struct sup_backoff *b, uint64_t uptime_ms);

struct sup_ops {
	void *arg;
	/* Fill children[0..*n) for a new generation (fresh links) in start order. */
	enum p11ca_err (*prepare)(void *arg, struct sup_child *children, size_t *n,
				  struct p11ca_errmsg *em);
	/* Optional. Every child is running: the parent's own ends (the control link). An
	 * error is handled like a crash. */
	enum p11ca_err (*started)(void *arg, struct sup_child *children, size_t n,
				  struct p11ca_errmsg *em);
	/* Optional. A stop was asked for (before the children are stopped). */
	void (*stopping)(void *arg);
	/* Optional. Every child is gone: release what prepare/started made. */
	void (*stopped)(void *arg);
	/* Optional. `name` died with `status` (-1: it never started); return 1 to restart
	 * after delay_ms, 0 to give up (sup_run then returns P11CA_E_IO). */
	int (*crashed)(void *arg, const char *name, int status, unsigned delay_ms);
};

struct sup_config {
	struct sup_backoff backoff;
	unsigned grace_ms; /* per stop step */
	int stop_fd;	   /* readable: stop everything and return */
	const struct p11ca_logger *log;
};

/*
 * Run the set until stop_fd becomes readable (then stop it and return P11CA_OK), restarting
 * it whenever a child exits. Errors: prepare's (fatal), P11CA_E_IO (crashed said stop).
 */
P11CA_MUST_CHECK enum p11ca_err sup_run(const struct sup_config *cfg, const struct sup_ops *ops,
					struct p11ca_errmsg *em);

#endif
