/*
 * p11ca-bench-store: storage/ at a million certificates — how the database is filled, what
 * is measured, and the write-up (store_report.c).
 */
#ifndef P11CA_STORE_BENCH_H
#define P11CA_STORE_BENCH_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "storage/store.h"

enum store_bench_op {
	SB_LOOKUP_HIT,	  /* store_serial_get + store_cert_get_by_serial, existing serial */
	SB_LOOKUP_MISS,	  /* store_serial_get of a serial never issued */
	SB_PREFIX,	  /* store_serial_find_prefix, 8 hex digits of an existing serial */
	SB_PAGE_FIRST,	  /* first page, every CA, serial order */
	SB_PAGE_DEEP,	  /* a page from a cursor at a random depth */
	SB_PAGE_CA,	  /* a page of one CA from a cursor at a random depth */
	SB_PAGE_PROFILE,  /* profile-filtered page from a random depth */
	SB_PAGE_EXPIRING, /* unrevoked, expiring within 30 days, notAfter order */
	SB_PAGE_REVOKED,  /* revoked only, serial order */
	SB_OP_COUNT,
};

struct store_bench_result {
	size_t n;	 /* operations timed */
	double p50, p99; /* seconds */
	double max;	 /* seconds */
	double per_op;	 /* certificates returned (pages) or found (lookups) per operation */
};

struct store_bench_report {
	const char *command, *revision;
	size_t count, cas, batch, der_len;
	double fill_seconds;
	size_t db_used, map_size;
	unsigned page_size;
	unsigned profile_client_pct, revoked_permille;
	struct store_bench_result r[SB_OP_COUNT];
};

#define STORE_BENCH_DAY 86400

struct store_bench_opts {
	size_t count, lookups, pages, batch, cas;
	const char *markdown, *dir;
	bool keep;
};

struct store_bench {
	struct store_bench_opts o;
	struct store *st;
	char dir[PATH_MAX];
	uint8_t der[2048];
	size_t der_len, serial_off;
	uint8_t (*serials)[STORE_SERIAL_LEN];
	uint64_t rng;
	int64_t now;
	double *samples;
	struct store_bench_report rep;
	char command[1024];
};

/* The next pseudo-random number (xorshift64*: reproducible rows). */
uint64_t store_bench_rnd(struct store_bench *b);
/* A serial of the form store_serial_alloc draws. */
void store_bench_serial_draw(struct store_bench *b, uint8_t s[STORE_SERIAL_LEN]);
/* Make b->der, the template certificate, and find its serial (b->serial_off). */
bool store_bench_template_make(struct store_bench *b);
/* The CAs, then --count certificates; fills in the report's fill figures. */
P11CA_MUST_CHECK enum p11ca_err store_bench_fill(struct store_bench *b, struct p11ca_errmsg *em);

/* The Markdown section (also what is printed): intro, machine, the table, the verdict. */
void store_bench_report_write(const struct store_bench_report *r, FILE *f);

/* The target: serial lookup p99 <= 50 µs. */
#define STORE_BENCH_LOOKUP_P99_TARGET 50e-6

#endif
