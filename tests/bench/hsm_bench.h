/*
 * Shared by p11ca-bench-hsm's measurement (hsm_bench.c) and its report (hsm_report.c):
 * what one run measured, and how it is written up.
 */
#ifndef P11CA_BENCH_HSM_BENCH_H
#define P11CA_BENCH_HSM_BENCH_H

#include <stdio.h>

#include "tests/bench/bench.h"
#include "hsm/hsm.h"

#define BENCH_MSG_LEN	 1024 /* about a TBSCertificate */
#define BENCH_MAX_ROUNDS 64
#define BENCH_TARGET	 0.95 /* issue 2: pool >= 0.95 x the like-for-like bare loop */

/* The six phases of every algorithm, in the order they run in even rounds. */
enum bench_phase {
	BENCH_POOL1,  /* hsm_sign, pool_size 1, one thread */
	BENCH_BARE1,  /* the bare loop with verification, one thread */
	BENCH_NOVER1, /* the bare loop without verification, one thread */
	BENCH_POOL2,  /* hsm_sign, pool_size 2, two threads */
	BENCH_BARE2,
	BENCH_NOVER2,
	BENCH_NPHASES
};

struct bench_phase_result {
	double rate;	/* signatures per second, wall clock */
	double cpu_sig; /* CPU seconds its threads spent per signature */
};

/* One algorithm on one key type: every phase in every round. */
struct bench_hsm_result {
	enum hsm_key_type type;
	enum hsm_sig_alg alg;
	struct bench_phase_result res[BENCH_NPHASES][BENCH_MAX_ROUNDS];
};

/* Everything the write-up needs; all borrowed. */
struct bench_hsm_report {
	const char *command;  /* argv, quoted where needed */
	const char *module;   /* the PKCS#11 module's own description and version */
	const char *revision; /* NULL when unknown */
	double seconds;	      /* measuring time per phase */
	unsigned rounds;      /* 1..BENCH_MAX_ROUNDS */
	struct bench_cpu_mark start, end;
	const struct bench_hsm_result *results;
	size_t count;
};

/* The "PKCS#11 core" section of docs/BENCHMARKS.md (no markers): what was measured, the
 * machine, a rates table and a ratios table. */
void bench_hsm_report_write(const struct bench_hsm_report *r, FILE *f);

#endif
