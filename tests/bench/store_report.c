/*
 * p11ca-bench-store's write-up: the Markdown section docs/BENCHMARKS.md keeps.
 */
#include "tests/bench/store_bench.h"

#include <lmdb.h>
#include <openssl/crypto.h>

#include "tests/bench/bench.h"

static const struct {
	const char *name, *what;
} ops[SB_OP_COUNT] = {
	[SB_LOOKUP_HIT] = {"serial lookup, existing",
			   "`store_serial_get` + `store_cert_get_by_serial` of a random stored "
			   "serial (what `cert view SERIAL` reads)"},
	[SB_LOOKUP_MISS] = {"serial lookup, unknown",
			    "`store_serial_get` of a random serial never issued"},
	[SB_PREFIX] = {"serial prefix (8 hex digits)",
		       "`store_serial_find_prefix`, 8 hex digits of a random stored serial"},
	[SB_PAGE_FIRST] = {"`cert list`: first page", "every CA, serial order, no cursor"},
	[SB_PAGE_DEEP] = {"`cert list`: deep page",
			  "every CA, from a cursor at a random depth of the whole listing"},
	[SB_PAGE_CA] = {"`cert list --ca`: deep page",
			"one CA (a quarter of the rows), from a cursor at a random depth"},
	[SB_PAGE_PROFILE] = {"`cert list --profile client`",
			     "20 % of the rows match; from a cursor at a random depth"},
	[SB_PAGE_EXPIRING] = {"`cert list --expiring-within 30`",
			      "unrevoked, now ≤ notAfter < now + 30 days, notAfter order "
			      "(the by_expiry index), first page"},
	[SB_PAGE_REVOKED] = {"`cert list --revoked`",
			     "the revoked index (1 % of the rows), first page"},
};

static void print_us(FILE *f, double s)
{
	fprintf(f, s < 100e-6 ? " %.1f µs |" : " %.0f µs |", s * 1e6);
}

/* 1000000 as "1,000,000". */
static void print_count(FILE *f, size_t n)
{
	if (n >= 1000) {
		print_count(f, n / 1000);
		fprintf(f, ",%03zu", n % 1000);
	} else {
		fprintf(f, "%zu", n);
	}
}

static void print_intro(const struct store_bench_report *r, FILE *f)
{
	fprintf(f, "## Storage at ");
	print_count(f, r->count);
	fprintf(f, " certificates\n\n");
	fprintf(f,
		"What `cert view` and `cert list` cost in storage/ once the database is large "
		"(the issue asks for 1,000,000 certificates; `--count` sets it). "
		"`p11ca-bench-store` fills a fresh LMDB through "
		"`store_cert_import` (the rows are one real P-256 leaf certificate of %zu bytes "
		"DER, made once with OpenSSL, with each row's random 20-byte serial written into "
		"it; storage checks structure and serial, not signatures), spread over %zu CAs, "
		"notAfter uniform from 30 days ago to two years ahead, profiles webserver 75 %% "
		"/ client 20 %% / ocsp 5 %%, %u ‰ revoked; %zu certificates per durable write "
		"transaction. Then it times each operation below, each in its own read "
		"transaction (begin and end included) as the engine runs them, one thread, page "
		"cache warm (the database was just written). Pages hold %d certificates, "
		"decoded and copied out as the engine gets them.\n\n",
		r->der_len, r->cas, r->revoked_permille, r->batch, 32);
	for (int i = 0; i < SB_OP_COUNT; i++)
		fprintf(f, "- **%s**: %s.\n", ops[i].name, ops[i].what);
	fputc('\n', f);
}

static void print_machine(const struct store_bench_report *r, FILE *f)
{
	char machine[256], date[64];
	bench_machine_describe(machine, sizeof(machine));
	bench_date_utc(date, sizeof(date));
	fprintf(f, "- Machine: %s; %s; %s.\n", machine, OpenSSL_version(OPENSSL_VERSION),
		MDB_VERSION_STRING);
	fprintf(f, "- Fill: ");
	print_count(f, r->count);
	fprintf(f,
		" certificates in %.1f s (%.0f/s, durable commits of %zu); database "
		"%.0f MiB used (%.0f bytes per certificate), page size %u.\n",
		r->fill_seconds, (double)r->count / r->fill_seconds, r->batch,
		(double)r->db_used / (1024.0 * 1024.0), (double)r->db_used / (double)r->count,
		r->page_size);
	fprintf(f, "- Run: %s, revision %s.\n", date,
		r->revision != NULL ? r->revision : "unknown");
	fprintf(f, "- Command: `%s`\n\n", r->command);
}

void store_bench_report_write(const struct store_bench_report *r, FILE *f)
{
	print_intro(r, f);
	print_machine(r, f);
	fprintf(f, "| operation | timed | p50 | p99 | max | found / returned per op |\n");
	fprintf(f, "|---|--:|--:|--:|--:|--:|\n");
	for (int i = 0; i < SB_OP_COUNT; i++) {
		const struct store_bench_result *x = &r->r[i];
		fprintf(f, "| %s | %zu |", ops[i].name, x->n);
		print_us(f, x->p50);
		print_us(f, x->p99);
		print_us(f, x->max);
		fprintf(f, " %.2f |\n", x->per_op);
	}
	double p99 = r->r[SB_LOOKUP_HIT].p99;
	fprintf(f, "\nTarget (the issue's): serial lookup p99 ≤ %.0f µs: %s (%.1f µs).\n",
		STORE_BENCH_LOOKUP_P99_TARGET * 1e6,
		p99 <= STORE_BENCH_LOOKUP_P99_TARGET ? "met" : "**missed**", p99 * 1e6);
}
