/*
 * p11ca-bench-rpc's write-up: the medians, ratios and CPU shares of one run as the
 * Markdown section docs/BENCHMARKS.md keeps. Every rate is a median over rounds and every
 * ratio pairs phases of the same round.
 */
#include "tests/bench/rpc_bench.h"

#include <unistd.h>

#include <openssl/crypto.h>

enum sample_field { F_RATE, F_CPU, F_DAEMON };

static double field(const struct rpc_bench_sample *s, enum sample_field f)
{
	return f == F_RATE ? s->rate : f == F_CPU ? s->cpu_op : s->daemon_cpu;
}

static double median(const struct rpc_bench_report *r, const struct rpc_bench_result *c,
		     enum rpc_bench_phase p, enum sample_field f)
{
	double v[RPC_BENCH_MAX_ROUNDS];
	for (unsigned i = 0; i < r->rounds; i++)
		v[i] = field(&c->s[p][i], f);
	return bench_quantile(v, r->rounds, 0.5);
}

/* Quantile q over the rounds of RPC ÷ bare, both from the same round. */
static double ratio_quantile(const struct rpc_bench_report *r, const struct rpc_bench_result *c,
			     double q)
{
	double v[RPC_BENCH_MAX_ROUNDS];
	for (unsigned i = 0; i < r->rounds; i++) {
		double x = c->s[RPC_PHASE_RPC][i].rate, y = c->s[RPC_PHASE_BARE][i].rate;
		v[i] = y > 0 ? x / y : 0;
	}
	return bench_quantile(v, r->rounds, q);
}

static void print_rate(FILE *f, double rate)
{
	fprintf(f, rate < 100 ? " %.1f |" : " %.0f |", rate);
}

static void print_us(FILE *f, double seconds)
{
	fprintf(f, " %.0f µs |", seconds * 1e6);
}

static void print_intro(const struct rpc_bench_report *r, FILE *f)
{
	unsigned n = r->clients;
	fprintf(f, "## Issuance over RPC (p11cad)\n\n");
	fprintf(f,
		"Durable certificates per second issued by p11cad over its public RPC, next to "
		"how fast the same CA key signs when called directly, measured in the same run on "
		"one fresh SoftHSM2 token. The CAs are roots made with `ca_init` (RSA-2048 and "
		"P-256 keys generated on the token by p11cad); every request reuses one P-256 CSR "
		"made in process, profile `webserver`, one DNS name.\n\n");
	fprintf(f,
		"- **RPC certs/s (%u clients)**: %u clients, each with up to %u requests in "
		"flight: "
		"%u threads of the benchmark, each with its own TLS 1.3 connection (the admin "
		"credential `p11cad init` wrote), call `cert_sign` in a loop, pipelined (a new "
		"request as soon as a response arrives). Path of each certificate: client → TLS → "
		"rpc process → engine "
		"(intent commit) → signer (check, `C_Sign`, verify) → engine (certificate "
		"commit) → reply. Only OK replies count; p11cad sends one only after the "
		"certificate is committed to its database, so each is durable. Any other "
		"answer stops the benchmark.\n",
		n, n, r->depth, n);
	fprintf(f,
		"- **bare C_Sign %u**: %u threads of the benchmark, each with its own logged-in "
		"session on the same token, sign with the CA's own key (found by its label) "
		"through the raw function list: `C_SignInit` + `C_Sign` over a %d-byte message "
		"(about a TBSCertificate; RSA: `CKM_SHA256_RSA_PKCS`, P-256: SHA-256 in "
		"software, then `CKM_ECDSA`). What the token can do with nothing around it.\n",
		n, n, RPC_BENCH_MSG_LEN);
	fprintf(f,
		"- **hsm_sign %u×%u**: `hsm_sign` through a pool of %u sessions: the bare work "
		"plus the verification the signer does before it releases a signature.\n",
		n, n, n);
	fprintf(f,
		"- **RPC/bare**: the median over rounds of RPC ÷ bare measured in the same round, "
		"with the interquartile range of those ratios in brackets. Target (the issue's): "
		"RSA-2048 ≥ %.2f.\n",
		RPC_BENCH_TARGET_RSA);
	fprintf(f, "- **Order**: p11cad runs throughout; SoftHSM2 keeps the token in files, so the "
		   "benchmark signs on it beside the daemon (idle then). Each round runs rpc, bare "
		   "and pool back to back, reversed every other round, after a warm-up of each. "
		   "p11cad is then stopped with SIGTERM and must exit 0.\n");
	fprintf(f,
		"- **CPU/cert**: user + system time per certificate of all p11cad's processes "
		"(from /proc), and of the benchmark's client threads (TLS, protobuf); "
		"**CPUs busy** = (p11cad + client) CPU/cert × certs/s, against this machine's "
		"%ld CPUs, which clients and daemon share.\n\n",
		sysconf(_SC_NPROCESSORS_ONLN));
}

static void print_machine(const struct rpc_bench_report *r, FILE *f)
{
	char machine[192], date[64];
	bench_machine_describe(machine, sizeof(machine));
	bench_date_utc(date, sizeof(date));
	fprintf(f, "- Machine: %s; %s; %s.\n", machine, OpenSSL_version(OPENSSL_VERSION),
		r->module);
	/* bench_cpu_others counts p11cad as "other"; its share is known, so take it out. */
	double others = bench_cpu_others(&r->start, &r->end);
	double wall = r->end.wall - r->start.wall;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	double daemon = wall > 0 && cpus > 0 ? r->daemon_cpu / (wall * (double)cpus) : 0;
	if (others >= 0)
		fprintf(f,
			"- Other processes (and the hypervisor) took %.0f %% of the CPUs during "
			"the run; p11cad's own %.0f %% is not counted in that.\n",
			100 * (others - daemon > 0 ? others - daemon : 0), 100 * daemon);
	fprintf(f, "- Run: %s%s%s; %.3g s per phase and key in %u round%s of %.3g s.\n", date,
		r->revision ? ", revision " : "", r->revision ? r->revision : "", r->seconds,
		r->rounds, r->rounds == 1 ? "" : "s", r->seconds / r->rounds);
	fprintf(f, "- Command: `%s`\n\n", r->command);
}

/* "met", "**missed**", or "—" when the issue sets no target for this key. */
static const char *verdict(const struct rpc_bench_report *r, const struct rpc_bench_result *c)
{
	if (c->target <= 0 || !r->rpc)
		return "—";
	return ratio_quantile(r, c, 0.5) >= c->target ? "met" : "**missed**";
}

void rpc_bench_report_write(const struct rpc_bench_report *r, FILE *f)
{
	unsigned n = r->clients;
	print_intro(r, f);
	print_machine(r, f);

	fprintf(f,
		"| key | RPC certs/s (%u clients) | bare C_Sign %u sessions | hsm_sign %u×%u | "
		"RPC/bare | target |\n",
		n, n, n, n);
	fprintf(f, "|---|--:|--:|--:|--:|---|\n");
	for (const struct rpc_bench_result *c = r->results; c < r->results + r->count; c++) {
		fprintf(f, "| %s |", hsm_key_type_name(c->type));
		if (r->rpc)
			print_rate(f, median(r, c, RPC_PHASE_RPC, F_RATE));
		else
			fprintf(f, " — |");
		print_rate(f, median(r, c, RPC_PHASE_BARE, F_RATE));
		print_rate(f, median(r, c, RPC_PHASE_POOL, F_RATE));
		if (r->rpc) {
			fprintf(f, " %.3f", ratio_quantile(r, c, 0.5));
			if (r->rounds >= 4)
				fprintf(f, " (%.2f–%.2f)", ratio_quantile(r, c, 0.25),
					ratio_quantile(r, c, 0.75));
			fprintf(f, " |");
		} else {
			fprintf(f, " — |");
		}
		if (c->target > 0)
			fprintf(f, " ≥ %.2f: %s |\n", c->target, verdict(r, c));
		else
			fprintf(f, " — |\n");
	}
	if (!r->rpc)
		return;

	fprintf(f, "\n| key | p11cad CPU/cert | client CPU/cert | CPUs busy (RPC) | bare CPU/sig "
		   "| hsm_sign CPU/sig |\n");
	fprintf(f, "|---|--:|--:|--:|--:|--:|\n");
	for (const struct rpc_bench_result *c = r->results; c < r->results + r->count; c++) {
		double daemon = median(r, c, RPC_PHASE_RPC, F_DAEMON);
		double client = median(r, c, RPC_PHASE_RPC, F_CPU);
		fprintf(f, "| %s |", hsm_key_type_name(c->type));
		print_us(f, daemon);
		print_us(f, client);
		fprintf(f, " %.2f |", (daemon + client) * median(r, c, RPC_PHASE_RPC, F_RATE));
		print_us(f, median(r, c, RPC_PHASE_BARE, F_CPU));
		print_us(f, median(r, c, RPC_PHASE_POOL, F_CPU));
		fputc('\n', f);
	}
}
