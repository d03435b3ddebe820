/*
 * p11ca-bench-store: fill a fresh LMDB with --count certificates (default 1,000,000)
 * through store_cert_import (store_fill.c), then time what `cert view` and `cert list`
 * cost at that size: serial lookups (hits and misses), serial prefix lookups, and listing
 * pages of 32 (first, deep, one CA, profile-filtered, expiring, revoked). p50/p99 per
 * operation, each in its own read transaction as the engine runs them.
 */
#include "tests/bench/store_bench.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/bench/bench.h"

#define PAGE_LIMIT    32
#define DEEP_CURSORS  64
#define EXPIRING_DAYS 30

/* ---- measurements --------------------------------------------------------------------- */

static void result_set(struct store_bench *b, enum store_bench_op op, size_t n, size_t items)
{
	struct store_bench_result *r = &b->rep.r[op];
	r->n = n;
	r->per_op = n > 0 ? (double)items / (double)n : 0;
	r->max = 0;
	for (size_t i = 0; i < n; i++)
		if (b->samples[i] > r->max)
			r->max = b->samples[i];
	r->p50 = n > 0 ? bench_quantile(b->samples, n, 0.5) : 0;
	r->p99 = n > 0 ? bench_quantile(b->samples, n, 0.99) : 0;
}

static enum p11ca_err measure_lookups(struct store_bench *b, struct p11ca_errmsg *em)
{
	struct store_cert *cert = malloc(sizeof(*cert));
	struct store_serial_info info;
	struct store_txn *txn = NULL;
	enum p11ca_err err = cert == NULL ? P11CA_E_NOMEM : P11CA_OK;
	size_t found = 0;
	for (size_t i = 0; err == P11CA_OK && i < b->o.lookups; i++) {
		const uint8_t *s = b->serials[store_bench_rnd(b) % b->o.count];
		double t0 = bench_now();
		err = store_txn_begin(b->st, STORE_TXN_READ, &txn, em);
		if (err == P11CA_OK)
			err = store_serial_get(txn, s, &info, em);
		if (err == P11CA_OK)
			err = store_cert_get_by_serial(txn, s, cert, em);
		store_txn_abort(&txn);
		b->samples[i] = bench_now() - t0;
		found += err == P11CA_OK && cert->der_len == b->der_len;
	}
	if (err == P11CA_OK)
		result_set(b, SB_LOOKUP_HIT, b->o.lookups, found);

	/* Misses: the engine's answer to a serial nobody issued. */
	found = 0;
	for (size_t i = 0; err == P11CA_OK && i < b->o.lookups; i++) {
		uint8_t s[STORE_SERIAL_LEN];
		store_bench_serial_draw(b, s);
		struct p11ca_errmsg miss = {0};
		double t0 = bench_now();
		err = store_txn_begin(b->st, STORE_TXN_READ, &txn, em);
		enum p11ca_err got = err == P11CA_OK ? store_serial_get(txn, s, &info, &miss) : err;
		store_txn_abort(&txn);
		b->samples[i] = bench_now() - t0;
		found += got == P11CA_OK;
		if (got != P11CA_OK && got != P11CA_E_STORAGE_NOT_FOUND)
			err = p11ca_fail(em, got, "%s", p11ca_errmsg_text(&miss));
	}
	if (err == P11CA_OK)
		result_set(b, SB_LOOKUP_MISS, b->o.lookups, found);

	/* Prefixes of 8 hex digits: what an operator types, unique at this size. */
	found = 0;
	for (size_t i = 0; err == P11CA_OK && i < b->o.lookups; i++) {
		const uint8_t *s = b->serials[store_bench_rnd(b) % b->o.count];
		uint8_t out[2][STORE_SERIAL_LEN];
		size_t n = 0;
		double t0 = bench_now();
		err = store_txn_begin(b->st, STORE_TXN_READ, &txn, em);
		if (err == P11CA_OK)
			err = store_serial_find_prefix(txn, s, 8, out, 2, &n, em);
		store_txn_abort(&txn);
		b->samples[i] = bench_now() - t0;
		found += n;
	}
	if (err == P11CA_OK)
		result_set(b, SB_PREFIX, b->o.lookups, found);
	free(cert);
	return err;
}

static int page_count(void *arg, const struct store_cert *cert)
{
	(*(size_t *)arg) += cert->der_len > 0;
	return 0;
}

struct cursor {
	uint8_t c[STORE_CURSOR_MAX];
	size_t len;
};

/* Cursors spread over the whole listing of q, made by walking it once. */
static enum p11ca_err cursors_make(struct store_bench *b, const struct store_cert_query *q,
				   size_t total, struct cursor *out, size_t *n_out,
				   struct p11ca_errmsg *em)
{
	struct store_txn *txn = NULL;
	struct cursor cur = {0};
	size_t n = 0, got = 0, seen = 0;
	P11CA_GUARD(store_txn_begin(b->st, STORE_TXN_READ, &txn, em));
	enum p11ca_err err = P11CA_OK;
	size_t step = total / DEEP_CURSORS + 1;
	while (err == P11CA_OK && n < DEEP_CURSORS) {
		err = store_cert_query(txn, q, cur.c, cur.len, step, 0, page_count, &seen, cur.c,
				       &cur.len, &got, em);
		if (err != P11CA_OK || cur.len == 0)
			break;
		out[n++] = cur;
	}
	store_txn_abort(&txn);
	*n_out = n;
	return err;
}

static enum p11ca_err measure_page(struct store_bench *b, enum store_bench_op op,
				   const struct store_cert_query *q, const struct cursor *from,
				   size_t n_from, struct p11ca_errmsg *em)
{
	struct store_txn *txn = NULL;
	enum p11ca_err err = P11CA_OK;
	size_t items = 0;
	for (size_t i = 0; err == P11CA_OK && i < b->o.pages; i++) {
		const struct cursor *c = n_from > 0 ? &from[store_bench_rnd(b) % n_from] : NULL;
		uint8_t next[STORE_CURSOR_MAX];
		size_t next_len = 0, n = 0;
		double t0 = bench_now();
		err = store_txn_begin(b->st, STORE_TXN_READ, &txn, em);
		if (err == P11CA_OK)
			err = store_cert_query(txn, q, c != NULL ? c->c : NULL,
					       c != NULL ? c->len : 0, PAGE_LIMIT, 0, page_count,
					       &items, next, &next_len, &n, em);
		store_txn_abort(&txn);
		b->samples[i] = bench_now() - t0;
	}
	if (err == P11CA_OK)
		result_set(b, op, b->o.pages, items);
	return err;
}

static enum p11ca_err measure_pages(struct store_bench *b, struct p11ca_errmsg *em)
{
	struct cursor all[DEEP_CURSORS], one_ca[DEEP_CURSORS];
	size_t n_all = 0, n_ca = 0;
	const struct store_cert_query q_all = {0}, q_ca = {.ca_id = 2 <= b->o.cas ? 2 : 1};
	const struct store_cert_query q_profile = {.profile = "client"};
	const struct store_cert_query q_expiring = {
		.order = STORE_ORDER_EXPIRY,
		.unrevoked_only = true,
		.not_after_from = b->now,
		.not_after_until = b->now + EXPIRING_DAYS * STORE_BENCH_DAY,
	};
	const struct store_cert_query q_revoked = {.revoked_only = true};
	P11CA_GUARD(cursors_make(b, &q_all, b->o.count, all, &n_all, em));
	P11CA_GUARD(cursors_make(b, &q_ca, b->o.count / b->o.cas, one_ca, &n_ca, em));
	P11CA_GUARD(measure_page(b, SB_PAGE_FIRST, &q_all, NULL, 0, em));
	P11CA_GUARD(measure_page(b, SB_PAGE_DEEP, &q_all, all, n_all, em));
	P11CA_GUARD(measure_page(b, SB_PAGE_CA, &q_ca, one_ca, n_ca, em));
	/* Same index and CA scope as q_all: its cursors are valid here. */
	P11CA_GUARD(measure_page(b, SB_PAGE_PROFILE, &q_profile, all, n_all, em));
	P11CA_GUARD(measure_page(b, SB_PAGE_EXPIRING, &q_expiring, NULL, 0, em));
	return measure_page(b, SB_PAGE_REVOKED, &q_revoked, NULL, 0, em);
}

/* ---- options, setup, main -------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "usage: p11ca-bench-store [options]\n"
		   "Fill a fresh LMDB with certificates, then time serial lookups and `cert list`\n"
		   "pages (p50/p99).\n"
		   "  --count N        certificates to store (default 1000000)\n"
		   "  --lookups N      timed lookups of each kind (default 100000)\n"
		   "  --pages N        timed pages of each kind (default 2000)\n"
		   "  --batch N        certificates per write transaction (default 20000)\n"
		   "  --dir DIR        where the database goes (default: a new directory under "
		   "TMPDIR, removed at the end)\n"
		   "  --keep           keep the database and print where it is\n"
		   "  --markdown FILE  write the results into FILE's store section\n"
		   "  --quick          smoke run: --count 10000 --lookups 10000 --pages 200\n"
		   "  --seconds S, --slow  accepted for P11CA_BENCH_ARGS; ignored\n");
}

static bool size_arg(const char *name, const char *s, size_t min, size_t max, size_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || *s == '-' || v < min || v > max) {
		fprintf(stderr, "p11ca-bench-store: --%s: a number from %zu to %zu\n", name, min,
			max);
		return false;
	}
	*out = (size_t)v;
	return true;
}

static bool opts_parse(struct store_bench_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"count", required_argument, NULL, 'c'},
		{"lookups", required_argument, NULL, 'l'},
		{"pages", required_argument, NULL, 'p'},
		{"batch", required_argument, NULL, 'b'},
		{"dir", required_argument, NULL, 'd'},
		{"keep", no_argument, NULL, 'k'},
		{"markdown", required_argument, NULL, 'o'},
		{"quick", no_argument, NULL, 'q'},
		{"seconds", required_argument, NULL, 's'},
		{"slow", no_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	*o = (struct store_bench_opts){
		.count = 1000000, .lookups = 100000, .pages = 2000, .batch = 20000, .cas = 4};
	int ch;
	bool ok = true;
	while (ok && (ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			ok = size_arg("count", optarg, 1000, 20000000, &o->count);
			break;
		case 'l':
			ok = size_arg("lookups", optarg, 100, 10000000, &o->lookups);
			break;
		case 'p':
			ok = size_arg("pages", optarg, 10, 1000000, &o->pages);
			break;
		case 'b':
			ok = size_arg("batch", optarg, 1, 1000000, &o->batch);
			break;
		case 'd':
			o->dir = optarg;
			break;
		case 'k':
			o->keep = true;
			break;
		case 'o':
			o->markdown = optarg;
			break;
		case 'q':
			o->count = 10000;
			o->lookups = 10000;
			o->pages = 200;
			break;
		case 's':
		case 'S':
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return false;
		}
	}
	if (ok && optind != argc) {
		usage(stderr);
		return false;
	}
	return ok;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void command_format(struct store_bench *b, int argc, char **argv)
{
	size_t used = 0;
	for (int i = 0; i < argc && used < sizeof(b->command); i++) {
		int n = snprintf(b->command + used, sizeof(b->command) - used, "%s%s", i ? " " : "",
				 argv[i]);
		used += n > 0 ? (size_t)n : 0;
	}
}

static enum p11ca_err run(struct store_bench *b, struct p11ca_errmsg *em)
{
	/* About 1.1 KiB per certificate across the three databases it lands in (random
	 * keys leave B-tree pages part-full), with room to spare: address space only. */
	struct store_options so = {
		.path = b->dir,
		.map_size = (b->o.count * 4096 + ((size_t)256 << 20)),
		.soft_quota_percent = 100,
	};
	P11CA_GUARD(store_open(&so, &b->st, em));
	fprintf(stderr, "p11ca-bench-store: filling %s with %zu certificates\n", b->dir,
		b->o.count);
	P11CA_GUARD(store_bench_fill(b, em));
	fprintf(stderr, "  filled in %.1f s; measuring\n", b->rep.fill_seconds);
	P11CA_GUARD(measure_lookups(b, em));
	return measure_pages(b, em);
}

int main(int argc, char **argv)
{
	struct store_bench *b = calloc(1, sizeof(*b));
	struct p11ca_errmsg em = {0};
	int rc = 1;
	bool made_dir = false;
	if (b == NULL || !opts_parse(&b->o, argc, argv))
		goto out;
	command_format(b, argc, argv);
	if (b->o.markdown != NULL && bench_markdown_check(b->o.markdown, "store", &em) != P11CA_OK)
		goto fail;
	if (b->o.dir != NULL) {
		snprintf(b->dir, sizeof(b->dir), "%s", b->o.dir);
	} else {
		const char *tmp = getenv("TMPDIR");
		snprintf(b->dir, sizeof(b->dir), "%s/p11ca-bench-store.XXXXXX",
			 tmp != NULL ? tmp : "/tmp");
		if (mkdtemp(b->dir) == NULL) {
			fprintf(stderr, "p11ca-bench-store: cannot create %s: %s\n", b->dir,
				strerror(errno));
			goto out;
		}
		made_dir = true;
	}
	b->serials = calloc(b->o.count, STORE_SERIAL_LEN);
	size_t n_samples = b->o.lookups > b->o.pages ? b->o.lookups : b->o.pages;
	b->samples = calloc(n_samples, sizeof(double));
	if (b->serials == NULL || b->samples == NULL || !store_bench_template_make(b))
		goto out;
	b->rng = UINT64_C(0x9e3779b97f4a7c15);
	b->now = (int64_t)time(NULL);
	b->rep.count = b->o.count;
	b->rep.cas = b->o.cas;
	b->rep.batch = b->o.batch;
	b->rep.der_len = b->der_len;
	b->rep.revoked_permille = 10;
	b->rep.command = b->command;
	b->rep.revision = getenv("P11CA_BENCH_REVISION");
	if (run(b, &em) != P11CA_OK)
		goto fail;

	store_bench_report_write(&b->rep, stdout);
	if (b->o.markdown != NULL) {
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		if (f == NULL)
			goto out;
		store_bench_report_write(&b->rep, f);
		fclose(f);
		enum p11ca_err err = bench_markdown_update(b->o.markdown, "store", text, &em);
		free(text);
		if (err != P11CA_OK)
			goto fail;
	}
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "p11ca-bench-store: %s\n", p11ca_errmsg_text(&em));
out:
	if (b != NULL) {
		store_close(&b->st);
		if (made_dir && !b->o.keep)
			nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		else if (b->o.keep)
			fprintf(stderr, "p11ca-bench-store: database kept in %s\n", b->dir);
		free(b->serials);
		free(b->samples);
		free(b);
	}
	return rc;
}
