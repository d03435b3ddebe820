/*
 * tests/bench/ — what every p11ca benchmark shares: a throw-away SoftHSM2 token, the clock,
 * medians, a description of the machine, and the marker-delimited sections of
 * docs/BENCHMARKS.md.
 *
 * Benchmarks are tools, not tests: they run only under `make bench` (scripts/bench.sh) and
 * never assert on timings. Each owns one section of docs/BENCHMARKS.md, delimited by
 * `<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->`; everything outside its own
 * markers (the hand-written intro, other benchmarks' sections) is kept byte for byte.
 */
#ifndef P11CA_BENCH_H
#define P11CA_BENCH_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

struct bench_softhsm; /* opaque */

/*
 * Create a SoftHSM2 configuration and token directory under $TMPDIR (or /tmp), point
 * SOFTHSM2_CONF at it, and initialise one token with `label`, `so_pin` and user `pin`
 * through softhsm2-util. Call it before any PKCS#11 module is loaded (the module reads
 * SOFTHSM2_CONF in C_Initialize) and before starting threads (it calls setenv).
 * Errors: P11CA_E_CONFIG (softhsm2-util missing or failing: the text says to install
 * softhsm2), P11CA_E_IO, P11CA_E_NOMEM.
 */
P11CA_MUST_CHECK enum p11ca_err bench_softhsm_create(const char *label, const char *so_pin,
						     const char *pin, struct bench_softhsm **out,
						     struct p11ca_errmsg *em);

/* Remove the token directory and configuration. Call after the module was finalised
 * (hsm_ctx_free). NULL-safe; sets *sh to NULL. */
void bench_softhsm_destroy(struct bench_softhsm **sh);

/* Monotonic time in seconds. */
double bench_now(void);

/* CPU time the calling thread has used, in seconds. */
double bench_thread_cpu(void);

/* A point in time, for telling how busy the rest of the machine was between two. */
struct bench_cpu_mark {
	double wall; /* bench_now() */
	double self; /* CPU seconds this process has used (all threads) */
	double busy; /* CPU seconds all CPUs were busy or stolen (/proc/stat) */
	bool valid;
};
void bench_cpu_mark(struct bench_cpu_mark *m);

/* The share (0..1) of all CPUs that other processes, the kernel or the hypervisor
 * (steal) took between two marks; -1 when unknown (no /proc/stat). */
double bench_cpu_others(const struct bench_cpu_mark *a, const struct bench_cpu_mark *b);

/* The q-quantile (0..1, linear interpolation; 0.5 = median) of v[0..n), n >= 1; v is
 * reordered. */
double bench_quantile(double *v, size_t n, double q);

/* "2 × Intel(R) Xeon(R) Processor": online CPUs and the model from /proc/cpuinfo. */
void bench_machine_describe(char *dst, size_t dst_size);

/* The current UTC time as "2025-01-31 12:34 UTC". */
void bench_date_utc(char *dst, size_t dst_size);

/*
 * Replace the text between this benchmark's markers in the Markdown file `path` with
 * `section` (which should end with a newline). A missing file is created with the shared
 * intro at the top; a file without the markers gets them appended at its end. The file is
 * replaced atomically (temporary file + rename), so an interrupted run leaves the old one.
 * Errors: P11CA_E_IO (unreadable/unwritable file), P11CA_E_CONFIG (only one of the two
 * markers present, or a marker twice: the file was edited by hand and needs fixing),
 * P11CA_E_NOMEM.
 */
P11CA_MUST_CHECK enum p11ca_err bench_markdown_update(const char *path, const char *name,
						      const char *section, struct p11ca_errmsg *em);

/* The checks bench_markdown_update would fail on, without writing: call it before a long
 * run so a broken file or an unwritable directory is reported at once. Same errors. */
P11CA_MUST_CHECK enum p11ca_err bench_markdown_check(const char *path, const char *name,
						     struct p11ca_errmsg *em);

#endif
