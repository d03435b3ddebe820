/*
 * p11ca-bench-hsm's write-up: the medians, ratios and verdicts of one run as the Markdown
 * section docs/BENCHMARKS.md keeps. Every figure derived from the rounds is a median (or
 * a quartile) over rounds, and every comparison pairs phases of the same round.
 */
#include "tests/bench/hsm_bench.h"

#include <stdbool.h>

#include <openssl/crypto.h>

static double rate_median(const struct bench_hsm_report *r, const struct bench_hsm_result *c,
			  size_t p)
{
	double v[BENCH_MAX_ROUNDS];
	for (unsigned i = 0; i < r->rounds; i++)
		v[i] = c->res[p][i].rate;
	return bench_quantile(v, r->rounds, 0.5);
}

/* Quantile q over the rounds of a/b, both from the same round. */
static double ratio_quantile(const struct bench_hsm_report *r, const struct bench_hsm_result *c,
			     size_t pa, size_t pb, double q)
{
	double v[BENCH_MAX_ROUNDS];
	for (unsigned i = 0; i < r->rounds; i++) {
		double x = c->res[pa][i].rate, y = c->res[pb][i].rate;
		v[i] = y > 0 ? x / y : 0;
	}
	return bench_quantile(v, r->rounds, q);
}

/* The pool's extra CPU time per signature over the bare loop's, median of the per-round
 * differences: unlike rates, CPU time hardly moves when other processes take the CPUs. */
static void print_cpu_overhead(FILE *f, const struct bench_hsm_report *r,
			       const struct bench_hsm_result *c, size_t pool, size_t bare)
{
	double d[BENCH_MAX_ROUNDS], base[BENCH_MAX_ROUNDS];
	for (unsigned i = 0; i < r->rounds; i++) {
		d[i] = c->res[pool][i].cpu_sig - c->res[bare][i].cpu_sig;
		base[i] = c->res[bare][i].cpu_sig;
	}
	double diff = bench_quantile(d, r->rounds, 0.5);
	double ref = bench_quantile(base, r->rounds, 0.5);
	fprintf(f, " %+.1f µs (%+.1f %%) |", diff * 1e6, ref > 0 ? 100 * diff / ref : 0);
}

/* "0.987 (0.962–1.004)": the median ratio and its interquartile range. */
static void print_ratio(FILE *f, const struct bench_hsm_report *r, const struct bench_hsm_result *c,
			size_t pa, size_t pb)
{
	fprintf(f, " %.3f", ratio_quantile(r, c, pa, pb, 0.5));
	if (r->rounds >= 4)
		fprintf(f, " (%.2f–%.2f)", ratio_quantile(r, c, pa, pb, 0.25),
			ratio_quantile(r, c, pa, pb, 0.75));
	fprintf(f, " |");
}

/*
 * Whether the pool reached BENCH_TARGET × bare with 1 and 2 sessions. A median below the
 * target while a quarter of the rounds or more had the pool at least as fast as bare
 * (upper quartile >= 1) is reported as unresolved: this machine's noise, not a
 * measured overhead, then decides the reading (compare the CPU/sig column).
 */
static const char *verdict(const struct bench_hsm_report *r, const struct bench_hsm_result *c)
{
	static const size_t pool[] = {BENCH_POOL1, BENCH_POOL2},
			    bare[] = {BENCH_BARE1, BENCH_BARE2};
	bool missed = false, unresolved = false;
	for (size_t i = 0; i < 2; i++) {
		if (ratio_quantile(r, c, pool[i], bare[i], 0.5) >= BENCH_TARGET)
			continue;
		if (r->rounds >= 4 && ratio_quantile(r, c, pool[i], bare[i], 0.75) >= 1)
			unresolved = true;
		else
			missed = true;
	}
	return missed ? "**missed**" : unresolved ? "within noise" : "met";
}

static void print_rate(FILE *f, double rate)
{
	fprintf(f, rate < 100 ? " %.1f |" : " %.0f |", rate);
}

void bench_hsm_report_write(const struct bench_hsm_report *r, FILE *f)
{
	char machine[192], date[64];
	bench_machine_describe(machine, sizeof(machine));
	bench_date_utc(date, sizeof(date));

	fprintf(f, "## PKCS#11 core (hsm/)\n\n");
	fprintf(f,
		"Signatures per second over a %d-byte message (about a TBSCertificate), one "
		"key per type generated on a fresh SoftHSM2 token.\n\n",
		BENCH_MSG_LEN);
	fprintf(f,
		"- **pool N×N**: `hsm_sign` through a token opened with `pool_size` N, called "
		"by N threads.\n"
		"- **bare N**: N threads, each with its own session on the same token and key, "
		"doing hsm_sign's work with the raw function list: software digest (ECDSA), "
		"`C_SignInit` + `C_Sign`, r‖s → DER (ECDSA), and the same verification "
		"(`hsm_verify`). The like-for-like baseline.\n"
		"- **no verify N**: the bare loop without the verification.\n"
		"- **pool/bare**: the median over rounds of pool ÷ bare measured back to back in "
		"the same round, with the interquartile range of those ratios in brackets. "
		"Target: ≥ %.2f; *within noise* means the median missed it while in a quarter "
		"of the rounds or more the pool was at least as fast as bare.\n"
		"- **pool CPU/sig**: the pool's extra CPU time per signature over the bare "
		"loop's (all threads' CPU time ÷ signatures; median of per-round differences, "
		"and as a share of the bare loop's). Time spent waiting for a CPU does not "
		"count in it, so other processes disturb it less than they disturb rates.\n"
		"- **verify cost**: 1 − bare ÷ no-verify (median over rounds), the share of "
		"throughput spent verifying each signature before it is released.\n"
		"- Rates are medians over the rounds. Each phase measures for the time given "
		"below, cut into rounds; in every round each phase runs once, pool and bare "
		"back to back.\n\n",
		BENCH_TARGET);
	fprintf(f, "- Machine: %s; %s; %s.\n", machine, OpenSSL_version(OPENSSL_VERSION),
		r->module);
	double others = bench_cpu_others(&r->start, &r->end);
	if (others >= 0)
		fprintf(f,
			"- Other processes (and the hypervisor) took %.0f %% of the CPUs during "
			"the "
			"run.\n",
			100 * others);
	fprintf(f, "- Run: %s%s%s; %.3g s per phase in %u round%s of %.3g s.\n", date,
		r->revision ? ", revision " : "", r->revision ? r->revision : "", r->seconds,
		r->rounds, r->rounds == 1 ? "" : "s", r->seconds / r->rounds);
	fprintf(f, "- Command: `%s`\n\n", r->command);

	fprintf(f, "| key | algorithm | pool 1×1 | bare 1 | no verify 1 | pool 2×2 | bare 2 "
		   "| no verify 2 |\n");
	fprintf(f, "|---|---|--:|--:|--:|--:|--:|--:|\n");
	for (const struct bench_hsm_result *c = r->results; c < r->results + r->count; c++) {
		fprintf(f, "| %s | %s |", hsm_key_type_name(c->type), hsm_sig_alg_name(c->alg));
		for (size_t p = 0; p < BENCH_NPHASES; p++)
			print_rate(f, rate_median(r, c, p));
		fputc('\n', f);
	}

	fprintf(f,
		"\n| key | algorithm | pool/bare 1 | pool/bare 2 | pool CPU/sig 1 | pool "
		"CPU/sig 2 | verify cost 1 | verify cost 2 | pool ≥ %.2f × bare |\n",
		BENCH_TARGET);
	fprintf(f, "|---|---|--:|--:|--:|--:|--:|--:|---|\n");
	for (const struct bench_hsm_result *c = r->results; c < r->results + r->count; c++) {
		fprintf(f, "| %s | %s |", hsm_key_type_name(c->type), hsm_sig_alg_name(c->alg));
		print_ratio(f, r, c, BENCH_POOL1, BENCH_BARE1);
		print_ratio(f, r, c, BENCH_POOL2, BENCH_BARE2);
		print_cpu_overhead(f, r, c, BENCH_POOL1, BENCH_BARE1);
		print_cpu_overhead(f, r, c, BENCH_POOL2, BENCH_BARE2);
		fprintf(f, " %.1f %% | %.1f %% | %s |\n",
			100 * (1 - ratio_quantile(r, c, BENCH_BARE1, BENCH_NOVER1, 0.5)),
			100 * (1 - ratio_quantile(r, c, BENCH_BARE2, BENCH_NOVER2, 0.5)),
			verdict(r, c));
	}
}
