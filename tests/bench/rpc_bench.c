/*
 * p11ca-bench-rpc: durable certificates per second through p11cad over RPC, next to the
 * rate at which the same CA key signs when called directly, in the same run.
 *
 * A throw-away SoftHSM2 token; `p11cad init` on it; p11cad started and awaited through
 * sd_notify; two root CAs made over RPC (RSA-2048 and P-256, each key labelled with the
 * CA's name); one P-256 CSR made in process and reused. Then, for each CA key, three
 * phases with N threads (--clients, default 2):
 *   rpc   N clients, each with its own TLS connection, calling cert_sign in a loop; every
 *         OK reply is a certificate p11cad committed before answering (its contract)
 *   bare  N sessions of this process on the same token and key: C_SignInit + C_Sign
 *   pool  hsm_sign through a pool of N: bare plus the verification the signer adds
 * SoftHSM2 lets this process sign on the token while p11cad runs, so the phases run back
 * to back within each short round (the order reversed every other round) and a burst of
 * load from elsewhere hits them alike; rates are medians over the rounds, and RPC/bare is
 * the median of per-round ratios. Finally p11cad gets SIGTERM and must exit 0.
 */
#include "tests/bench/rpc_bench.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "rpc/client.h"

#define BENCH_SECONDS	    6.0 /* per phase and key; `make bench` takes about a minute */
#define BENCH_ROUND	    0.5 /* seconds per round unless --rounds says otherwise */
#define BENCH_TOKEN	    "p11ca-bench-rpc"
#define BENCH_PIN	    "1234"
#define BENCH_MODULE	    "/usr/lib/softhsm/libsofthsm2.so"
#define BENCH_CA_TIMEOUT_MS 120000 /* ca_init generates a key on the token */

/* Set by SIGINT/SIGTERM so a run stopped by hand still stops p11cad and removes its
 * files. The one global: a signal handler has no other way to reach the run. */
static atomic_bool bench_interrupted;

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&bench_interrupted, true);
}

/* The CA keys measured; each CA's key carries the CA's name as its CKA_LABEL. */
static const struct bench_key {
	enum hsm_key_type type;
	const char *ca;
	double target;
} bench_keys[] = {
	{HSM_KEY_RSA2048, "bench-rsa2048", RPC_BENCH_TARGET_RSA},
	{HSM_KEY_P256, "bench-p256", 0},
};
#define NKEYS (sizeof(bench_keys) / sizeof(bench_keys[0]))

struct bench_opts {
	const char *markdown;
	const char *p11cad;
	const char *revision;
	double seconds;
	unsigned rounds;
	unsigned clients;
	unsigned depth;
	bool keep, bare_only, verbose;
};

struct bench {
	struct bench_opts opt;
	char command[1024];
	char p11cad[PATH_MAX];
	char dir[PATH_MAX];
	struct bench_softhsm *softhsm;
	struct rpc_daemon *daemon;
	struct rpc_client *clients[RPC_BENCH_MAX_CLIENTS];
	struct rpc_bare *bare;
	uint8_t *csr;
	size_t csr_len;
	struct rpc_bench_result results[NKEYS];
	size_t nresults;
	struct bench_cpu_mark start, end;
	double daemon_cpu;
};

/* ---- options -------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: p11ca-bench-rpc [options]\n"
		"Durable certificates/s through p11cad over RPC (RSA-2048 and P-256 CA keys),\n"
		"next to the bare C_Sign rate of the same key, measured in the same run.\n"
		"  --seconds S       measuring time of each phase, per key (default %g)\n"
		"  --rounds N        rounds that time is cut into; medians reported (default:\n"
		"                    rounds of %g s, max %d)\n"
		"  --clients N       concurrent RPC clients, and bare threads (default 2, max %d)\n"
		"  --depth N         requests each RPC client keeps in flight (default %d, max "
		"%d)\n"
		"  --markdown FILE   write the results into FILE's rpc section\n"
		"  --p11cad PATH     the daemon (default: p11cad beside this program)\n"
		"  --keep            keep the daemon's directory (config, state, logs) and print "
		"it\n"
		"  --bare-only       debug: no daemon; generate the keys here, measure bare and "
		"pool\n"
		"  --quick           smoke run: --seconds 0.5\n"
		"  --slow            accepted for P11CA_BENCH_ARGS; no slow cases here\n"
		"  --verbose         every round's rates on stderr\n"
		"environment: TMPDIR; P11CA_BENCH_REVISION, the source revision printed with the\n"
		"results (scripts/bench.sh sets it)\n",
		BENCH_SECONDS, BENCH_ROUND, RPC_BENCH_MAX_ROUNDS, RPC_BENCH_MAX_CLIENTS,
		RPC_BENCH_DEPTH, RPC_BENCH_MAX_DEPTH);
}

static bool opts_parse(struct bench *b, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"seconds", required_argument, NULL, 's'},
		{"rounds", required_argument, NULL, 'r'},
		{"clients", required_argument, NULL, 'c'},
		{"depth", required_argument, NULL, 'd'},
		{"markdown", required_argument, NULL, 'o'},
		{"p11cad", required_argument, NULL, 'p'},
		{"keep", no_argument, NULL, 'k'},
		{"bare-only", no_argument, NULL, 'B'},
		{"verbose", no_argument, NULL, 'V'},
		{"quick", no_argument, NULL, 'q'},
		{"slow", no_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct bench_opts *o = &b->opt;
	o->seconds = BENCH_SECONDS;
	o->clients = 2;
	o->depth = RPC_BENCH_DEPTH;
	o->revision = getenv("P11CA_BENCH_REVISION");
	char *end;
	int ch;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			o->seconds = strtod(optarg, &end);
			if (*end != '\0' || !(o->seconds >= 0.05 && o->seconds <= 600))
				return fprintf(stderr, "--seconds: 0.05 to 600\n"), false;
			break;
		case 'r':
			o->rounds = (unsigned)strtoul(optarg, &end, 10);
			if (*end != '\0' || o->rounds < 1 || o->rounds > RPC_BENCH_MAX_ROUNDS)
				return fprintf(stderr, "--rounds: 1 to %d\n", RPC_BENCH_MAX_ROUNDS),
				       false;
			break;
		case 'c':
			o->clients = (unsigned)strtoul(optarg, &end, 10);
			if (*end != '\0' || o->clients < 1 || o->clients > RPC_BENCH_MAX_CLIENTS)
				return fprintf(stderr, "--clients: 1 to %d\n",
					       RPC_BENCH_MAX_CLIENTS),
				       false;
			break;
		case 'd':
			o->depth = (unsigned)strtoul(optarg, &end, 10);
			if (*end != '\0' || o->depth < 1 || o->depth > RPC_BENCH_MAX_DEPTH)
				return fprintf(stderr, "--depth: 1 to %d\n", RPC_BENCH_MAX_DEPTH),
				       false;
			break;
		case 'o':
			o->markdown = optarg;
			break;
		case 'p':
			o->p11cad = optarg;
			break;
		case 'k':
			o->keep = true;
			break;
		case 'B':
			o->bare_only = true;
			break;
		case 'V':
			o->verbose = true;
			break;
		case 'q':
			o->seconds = 0.5;
			break;
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
	if (optind != argc) {
		usage(stderr);
		return false;
	}
	if (o->rounds == 0) {
		double n = o->seconds / BENCH_ROUND + 0.5;
		o->rounds = n < 1		       ? 1
			    : n > RPC_BENCH_MAX_ROUNDS ? RPC_BENCH_MAX_ROUNDS
						       : (unsigned)n;
	}
	if (o->seconds / o->rounds < 0.05)
		return fprintf(stderr, "--seconds / --rounds: a round must last 0.05 s or more\n"),
		       false;
	return true;
}

static void command_format(struct bench *b, int argc, char **argv)
{
	size_t used = 0;
	for (int i = 0; i < argc && used < sizeof(b->command); i++) {
		bool quote = strpbrk(argv[i], " \t'\"$`") != NULL;
		used += (size_t)snprintf(b->command + used, sizeof(b->command) - used,
					 quote ? "%s'%s'" : "%s%s", i ? " " : "", argv[i]);
	}
}

/* The daemon of the same build: dirname(/proc/self/exe)/p11cad. */
static enum p11ca_err p11cad_locate(struct bench *b, struct p11ca_errmsg *em)
{
	char self[PATH_MAX];
	if (b->opt.p11cad != NULL) {
		snprintf(b->p11cad, sizeof(b->p11cad), "%s", b->opt.p11cad);
		goto check;
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot read /proc/self/exe: %s; pass --p11cad",
				  strerror(errno));
	self[n] = '\0';
	snprintf(b->p11cad, sizeof(b->p11cad), "%.*s/p11cad", PATH_MAX - 8, dirname(self));
check:
	if (access(b->p11cad, X_OK) != 0)
		return p11ca_fail(em, P11CA_E_CONFIG,
				  "%s: %s; build p11cad with make, or pass --p11cad PATH",
				  b->p11cad, strerror(errno));
	return P11CA_OK;
}

/* ---- set-up and tear-down ------------------------------------------------------------ */

static enum p11ca_err pin_file_write(const char *path, struct p11ca_errmsg *em)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot create %s: %s", path, strerror(errno));
	ssize_t n = write(fd, BENCH_PIN "\n", sizeof(BENCH_PIN));
	int e = errno;
	if (close(fd) != 0 || n != (ssize_t)sizeof(BENCH_PIN))
		return p11ca_fail(em, P11CA_E_IO, "cannot write %s: %s", path, strerror(e));
	return P11CA_OK;
}

/* p11cad up, both CAs made, one connection per client thread. */
static enum p11ca_err daemon_setup(struct bench *b, struct p11ca_errmsg *em)
{
	char pin_file[PATH_MAX + 16];
	snprintf(pin_file, sizeof(pin_file), "%s/user.pin", b->dir);
	P11CA_GUARD(pin_file_write(pin_file, em));
	struct rpc_daemon_config cfg = {.p11cad = b->p11cad,
					.dir = b->dir,
					.module = BENCH_MODULE,
					.token = BENCH_TOKEN,
					.pin_file = pin_file};
	fprintf(stderr, "p11ca-bench-rpc: p11cad init and start in %s\n", b->dir);
	P11CA_GUARD(rpc_daemon_start(&cfg, &b->daemon, em));

	struct rpc_client_options co = {.server = rpc_daemon_server(b->daemon),
					.ca_file = rpc_daemon_ca_cert(b->daemon),
					.cert_file = rpc_daemon_admin_cert(b->daemon),
					.key_file = rpc_daemon_admin_key(b->daemon),
					.timeout_ms = BENCH_CA_TIMEOUT_MS};
	struct rpc_client *admin = NULL;
	enum p11ca_err err = rpc_client_connect(&co, &admin, em);
	for (size_t k = 0; k < NKEYS && err == P11CA_OK; k++)
		err = rpc_load_ca_init(admin, bench_keys[k].ca, bench_keys[k].type, em);
	rpc_client_close(&admin);
	co.timeout_ms = 0;
	for (unsigned i = 0; i < b->opt.clients && err == P11CA_OK; i++)
		err = rpc_client_connect(&co, &b->clients[i], em);
	return err;
}

static enum p11ca_err bench_setup(struct bench *b, struct p11ca_errmsg *em)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(b->dir, sizeof(b->dir), "%s/p11ca-bench-rpc.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	if (mkdtemp(b->dir) == NULL) {
		int e = errno;
		b->dir[0] = '\0';
		return p11ca_fail(em, P11CA_E_IO, "cannot create a temporary directory: %s",
				  strerror(e));
	}
	P11CA_GUARD(bench_softhsm_create(BENCH_TOKEN, "12345678", BENCH_PIN, &b->softhsm, em));
	P11CA_GUARD(rpc_load_csr(&b->csr, &b->csr_len, em));
	if (!b->opt.bare_only)
		P11CA_GUARD(daemon_setup(b, em));

	/* Loaded after p11cad made the keys, so this process's module sees them from the
	 * start. */
	struct p11ca_secret *pin = NULL;
	enum p11ca_err err = p11ca_secret_new(sizeof(BENCH_PIN), &pin, em);
	if (err == P11CA_OK)
		err = p11ca_secret_set(pin, BENCH_PIN, strlen(BENCH_PIN), em);
	if (err == P11CA_OK)
		err = rpc_bare_open(BENCH_MODULE, BENCH_TOKEN, pin, b->opt.clients,
				    b->opt.bare_only, &bench_interrupted, &b->bare, em);
	p11ca_secret_free(&pin);
	return err;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

static void bench_teardown(struct bench *b)
{
	for (unsigned i = 0; i < RPC_BENCH_MAX_CLIENTS; i++)
		rpc_client_close(&b->clients[i]);
	rpc_daemon_kill(&b->daemon); /* failure paths only: a good run stopped it already */
	rpc_bare_close(&b->bare);
	bench_softhsm_destroy(&b->softhsm);
	OPENSSL_free(b->csr);
	if (b->dir[0] != '\0' && b->opt.keep)
		fprintf(stderr, "p11ca-bench-rpc: kept %s (the token itself is removed)\n", b->dir);
	else if (b->dir[0] != '\0' && nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		fprintf(stderr, "p11ca-bench-rpc: cannot remove %s: %s\n", b->dir, strerror(errno));
}

/* ---- measurement ------------------------------------------------------------------- */

static enum p11ca_err phase_run(struct bench *b, const struct bench_key *k, enum rpc_bench_phase p,
				double seconds, struct rpc_bench_sample *out,
				struct p11ca_errmsg *em)
{
	if (p != RPC_PHASE_RPC)
		return rpc_bare_run(b->bare, p, k->type, k->ca, seconds, out, em);
	struct rpc_load load = {.clients = b->clients,
				.nclients = b->opt.clients,
				.depth = b->opt.depth,
				.ca = k->ca,
				.csr = b->csr,
				.csr_len = b->csr_len,
				.daemon = b->daemon,
				.interrupted = &bench_interrupted};
	return rpc_load_run(&load, seconds, out, em);
}

static enum p11ca_err key_run(struct bench *b, const struct bench_key *k, struct p11ca_errmsg *em)
{
	static const char *const names[RPC_NPHASES] = {"rpc", "bare", "pool"};
	struct rpc_bench_result *res = &b->results[b->nresults];
	*res = (struct rpc_bench_result){.type = k->type, .ca = k->ca, .target = k->target};
	enum rpc_bench_phase first = b->opt.bare_only ? RPC_PHASE_BARE : RPC_PHASE_RPC;
	enum p11ca_err err = P11CA_OK;

	/* Warm-up: connections, sessions and key handles in use, caches and clocks settled,
	 * the database's first pages written. */
	struct rpc_bench_sample discard;
	double warm = b->opt.seconds / 8;
	warm = warm < 0.1 ? 0.1 : warm > 0.5 ? 0.5 : warm;
	for (unsigned p = first; p < RPC_NPHASES && err == P11CA_OK; p++)
		err = phase_run(b, k, p, warm, &discard, em);

	fprintf(stderr, "p11ca-bench-rpc: %s\n", k->ca);
	double seconds = b->opt.seconds / b->opt.rounds;
	for (unsigned round = 0; round < b->opt.rounds && err == P11CA_OK; round++) {
		for (unsigned i = first; i < RPC_NPHASES && err == P11CA_OK; i++) {
			/* Odd rounds run backwards: no phase always runs first or after. */
			unsigned p = round % 2 ? RPC_NPHASES - 1 - (i - first) : i;
			err = phase_run(b, k, p, seconds, &res->s[p][round], em);
			if (err == P11CA_OK && atomic_load(&bench_interrupted))
				err = p11ca_fail(em, P11CA_E_USAGE, "interrupted; nothing written");
		}
		for (unsigned p = first; b->opt.verbose && p < RPC_NPHASES; p++)
			fprintf(stderr,
				"%s\tround %u\t%s\t%.1f/s\t%.1f µs CPU/op\t%.1f µs p11cad\n", k->ca,
				round, names[p], res->s[p][round].rate,
				1e6 * res->s[p][round].cpu_op, 1e6 * res->s[p][round].daemon_cpu);
	}
	if (err == P11CA_OK)
		b->nresults++;
	return err;
}

static enum p11ca_err bench_run(struct bench *b, struct p11ca_errmsg *em)
{
	enum p11ca_err err = bench_setup(b, em);
	if (err != P11CA_OK)
		return err;
	bench_cpu_mark(&b->start);
	double daemon0 = b->daemon != NULL ? rpc_daemon_cpu(b->daemon) : 0;
	for (size_t k = 0; k < NKEYS && err == P11CA_OK; k++)
		err = key_run(b, &bench_keys[k], em);
	bench_cpu_mark(&b->end);
	b->daemon_cpu = b->daemon != NULL ? rpc_daemon_cpu(b->daemon) - daemon0 : 0;
	if (err != P11CA_OK || b->daemon == NULL)
		return err;
	for (unsigned i = 0; i < RPC_BENCH_MAX_CLIENTS; i++)
		rpc_client_close(&b->clients[i]);
	return rpc_daemon_stop(&b->daemon, em);
}

/* ---- main --------------------------------------------------------------------------- */

static enum p11ca_err report(struct bench *b, struct p11ca_errmsg *em)
{
	char *section = NULL;
	size_t section_len = 0;
	FILE *f = open_memstream(&section, &section_len);
	if (f == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	char module[96];
	rpc_bare_module_describe(b->bare, module, sizeof(module));
	struct rpc_bench_report r = {
		.command = b->command,
		.revision = b->opt.revision,
		.module = module,
		.rpc = !b->opt.bare_only,
		.clients = b->opt.clients,
		.depth = b->opt.depth,
		.seconds = b->opt.seconds,
		.rounds = b->opt.rounds,
		.start = b->start,
		.end = b->end,
		.daemon_cpu = b->daemon_cpu,
		.results = b->results,
		.count = b->nresults,
	};
	rpc_bench_report_write(&r, f);
	enum p11ca_err err = P11CA_OK;
	if (fclose(f) != 0) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	fputs(section, stdout);
	fflush(stdout);
	/* --bare-only is a debugging aid: its results never replace the real ones. */
	if (b->opt.markdown != NULL && !b->opt.bare_only)
		err = bench_markdown_update(b->opt.markdown, "rpc", section, em);
out:
	free(section);
	return err;
}

int main(int argc, char **argv)
{
	struct bench *b = calloc(1, sizeof(*b));
	if (b == NULL) {
		fprintf(stderr, "p11ca-bench-rpc: out of memory\n");
		return 1;
	}
	command_format(b, argc, argv);
	if (!opts_parse(b, argc, argv)) {
		free(b);
		return 2;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A client whose server went away must fail its call, not kill the benchmark. */
	signal(SIGPIPE, SIG_IGN);

	struct p11ca_errmsg em = {0};
	enum p11ca_err err = P11CA_OK;
	if (b->opt.markdown != NULL)
		err = bench_markdown_check(b->opt.markdown, "rpc", &em);
	if (err == P11CA_OK && !b->opt.bare_only)
		err = p11cad_locate(b, &em);
	if (err == P11CA_OK)
		err = bench_run(b, &em);
	if (err == P11CA_OK)
		err = report(b, &em);
	bench_teardown(b);
	free(b);
	if (err != P11CA_OK) {
		fprintf(stderr, "p11ca-bench-rpc: %s\n", p11ca_errmsg_text(&em));
		return 1;
	}
	return 0;
}
