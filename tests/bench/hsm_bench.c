/*
 * p11ca-bench-hsm: signatures per second through hsm/ (the session pool) against a bare
 * PKCS#11 loop that does the same work on the same key in the same run.
 *
 * For every key type a key is generated on a throw-away SoftHSM2 token; each of its
 * signature algorithms is then measured in six phases:
 *   pool 1×1     hsm_sign through a token opened with pool_size 1, one thread
 *   bare 1       one thread with its own session calling the function list directly:
 *                software digest (ECDSA), C_SignInit + C_Sign, r‖s → DER (ECDSA), and the
 *                same verification hsm_sign does (hsm_verify, which is pure software)
 *   no verify 1  the bare loop without the verification
 * and the same three with two sessions and two threads. The bare loop is what hsm_sign
 * would cost with no pool, no locks and no recovery: pool ÷ bare is the pool's overhead.
 *
 * Each phase's measuring time is cut into short rounds; within a round every phase runs
 * once, pool and bare back to back (the order reversed every other round), so a burst of
 * load from another process hits both alike. Rates are medians over the rounds and each
 * ratio is the median (with its interquartile range) of the per-round ratios, which a
 * few disturbed rounds cannot move.
 */
#include "tests/bench/hsm_bench.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include "common/secret.h"
/*
 * The bare loop needs the raw CK_FUNCTION_LIST, and C_Initialize may be called only once
 * per process per module, so it must share the module hsm/ already loaded and
 * initialised. This benchmark is trusted in-tree code, so it reads the loaded module's
 * function list (tok->mod->fn) and slot (tok->slot) from hsm/internal.h. It opens its own
 * sessions on that slot — login state belongs to the application, so they are logged in
 * once hsm_token_login has run — and finds the private key by its CKA_ID (hsm_key_id).
 * Included last: it pulls in p11-kit's pkcs11.h, which #defines short common words.
 */
#include "hsm/internal.h"

#define BENCH_MAX_THREADS 2
/* Defaults: 0.25 s rounds, 24 per phase. On the 2-core VM this was written on, one round's
 * rate moves by ±15 % from the VM alone, and 3 s in 12 rounds left pool/bare medians
 * spread over 0.92–1.08 across repeated runs; 6 s in 24 rounds brings that to about
 * 0.96–1.04 and keeps `make bench` near 4 minutes. */
#define BENCH_SECONDS	  6.0
#define BENCH_ROUNDS	  24
#define BENCH_TOKEN_LABEL "p11ca-bench"

/* Set by SIGINT/SIGTERM so a run stopped by hand still closes its sessions and removes its
 * token directory. The one global: a signal handler has no other way to reach the run. */
static atomic_bool bench_interrupted;

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&bench_interrupted, true);
}

/* Which runs a case belongs to. */
#define SET_DEFAULT 1u
#define SET_QUICK   2u /* --quick: the smoke test; two key types, RSA and ECDSA paths */
#define SET_SLOW    4u /* --slow: key types whose generation or signing takes long */

static const CK_RSA_PKCS_PSS_PARAMS pss_sha256 = {CKM_SHA256, CKG_MGF1_SHA256, 32};

/* What the bare loop must do for an algorithm — the same as hsm/sign.c, written out again
 * so the baseline does not share the code it is compared with. */
static const struct bench_case {
	enum hsm_key_type type;
	enum hsm_sig_alg alg;
	unsigned sets;
	CK_MECHANISM_TYPE mech;
	const char *prehash;		   /* ECDSA: digest in software, sign the digest */
	const CK_RSA_PKCS_PSS_PARAMS *pss; /* RSA-PSS: the mechanism's parameters */
} cases[] = {
	{HSM_KEY_RSA2048, HSM_SIG_RSA_PKCS1_SHA256, SET_DEFAULT | SET_QUICK, CKM_SHA256_RSA_PKCS},
	{HSM_KEY_RSA2048, HSM_SIG_RSA_PSS_SHA256, SET_DEFAULT, CKM_SHA256_RSA_PKCS_PSS, NULL,
	 &pss_sha256},
	{HSM_KEY_RSA3072, HSM_SIG_RSA_PKCS1_SHA256, SET_DEFAULT, CKM_SHA256_RSA_PKCS},
	{HSM_KEY_RSA4096, HSM_SIG_RSA_PKCS1_SHA256, SET_SLOW, CKM_SHA256_RSA_PKCS},
	{HSM_KEY_P256, HSM_SIG_ECDSA_SHA256, SET_DEFAULT | SET_QUICK, CKM_ECDSA, "SHA256"},
	{HSM_KEY_P384, HSM_SIG_ECDSA_SHA384, SET_DEFAULT, CKM_ECDSA, "SHA384"},
	{HSM_KEY_P521, HSM_SIG_ECDSA_SHA512, SET_SLOW, CKM_ECDSA, "SHA512"},
	{HSM_KEY_ED25519, HSM_SIG_ED25519, SET_DEFAULT, CKM_EDDSA},
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

enum phase_kind { PHASE_POOL, PHASE_BARE, PHASE_BARE_NO_VERIFY };
static const char *const phase_names[] = {"pool", "bare", "no-verify"};

/* Indexed by enum bench_phase. */
static const struct phase {
	enum phase_kind kind;
	unsigned threads;
} phases[BENCH_NPHASES] = {
	[BENCH_POOL1] = {PHASE_POOL, 1},
	[BENCH_BARE1] = {PHASE_BARE, 1},
	[BENCH_NOVER1] = {PHASE_BARE_NO_VERIFY, 1},
	[BENCH_POOL2] = {PHASE_POOL, 2},
	[BENCH_BARE2] = {PHASE_BARE, 2},
	[BENCH_NOVER2] = {PHASE_BARE_NO_VERIFY, 2},
};

struct bench_opts {
	const char *module;
	const char *markdown;
	const char *revision;
	double seconds;
	unsigned rounds;
	bool quick;
	bool verbose;
	bool slow;
	bool only[HSM_KEY_ED25519 + 1]; /* --keys; all false = no filter */
	bool filtered;
};

/* A key on the token, seen through both pools and every bare session. */
struct bench_key {
	struct hsm_key *pool1, *pool2;
	CK_OBJECT_HANDLE bare[BENCH_MAX_THREADS];
};

struct bench {
	struct bench_opts opt;
	char command[1024];
	struct bench_softhsm *softhsm;
	struct p11ca_logger log;
	struct hsm_ctx *hsm;
	struct hsm_token *tok1, *tok2; /* pool_size 1 and 2, the same token */
	CK_FUNCTION_LIST *fn;
	CK_SESSION_HANDLE bare[BENCH_MAX_THREADS];
	unsigned bare_open;
	struct bench_key keys[HSM_KEY_ED25519 + 1];
	uint8_t msg[BENCH_MSG_LEN];
	struct bench_hsm_result results[NCASES];
	size_t nresults;
	struct bench_cpu_mark start, end; /* what else the machine was doing meanwhile */
};

/* One phase: what its threads share. */
struct phase_run {
	struct bench *b;
	const struct bench_case *c;
	struct bench_key *key;
	struct hsm_key *pool_key; /* through the pool with as many sessions as threads */
	/* The pre-hash digest (NULL: none), fetched once as a tuned caller would. hsm_sign
	 * looks it up by name on every call; that difference counts against the pool. */
	EVP_MD *md;
	enum phase_kind kind;
	unsigned threads;
	double seconds;
	pthread_barrier_t start;
};

struct worker {
	struct phase_run *run;
	unsigned index;
	pthread_t thread;
	uint64_t signatures;
	double cpu; /* this thread's CPU time in the measured loop */
	enum p11ca_err err;
	struct p11ca_errmsg em;
};

/* ---- one signature, both ways ------------------------------------------------------ */

static enum p11ca_err pool_sign_once(struct worker *w, uint8_t *sig, size_t cap)
{
	struct phase_run *r = w->run;
	size_t len;
	return hsm_sign(r->pool_key, r->c->alg, r->b->msg, sizeof(r->b->msg), sig, cap, &len,
			&w->em);
}

/* PKCS#11 ECDSA gives r‖s; X.509 wants a DER Ecdsa-Sig-Value. */
static enum p11ca_err ecdsa_to_der(const uint8_t *raw, size_t raw_len, uint8_t *out, size_t cap,
				   size_t *out_len, struct p11ca_errmsg *em)
{
	if (raw_len == 0 || raw_len % 2 != 0)
		return p11ca_fail(em, P11CA_E_HSM_BAD_SIGNATURE, "%zu-byte ECDSA signature",
				  raw_len);
	enum p11ca_err err = P11CA_E_NOMEM;
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(raw, (int)(raw_len / 2), NULL);
	BIGNUM *s = BN_bin2bn(raw + raw_len / 2, (int)(raw_len / 2), NULL);
	if (sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		goto out;
	}
	int len = i2d_ECDSA_SIG(sig, NULL);
	if (len <= 0 || (size_t)len > cap) {
		err = p11ca_fail(em, P11CA_E_INTERNAL, "ECDSA signature does not fit");
		goto out;
	}
	*out_len = (size_t)i2d_ECDSA_SIG(sig, &out);
	err = P11CA_OK;
out:
	ECDSA_SIG_free(sig);
	return err == P11CA_E_NOMEM ? p11ca_fail(em, err, "out of memory in ECDSA encoding") : err;
}

static enum p11ca_err bare_sign_once(struct worker *w, uint8_t *sig, size_t cap)
{
	struct phase_run *r = w->run;
	const struct bench_case *c = r->c;
	CK_FUNCTION_LIST *fn = r->b->fn;
	CK_SESSION_HANDLE session = r->b->bare[w->index];
	const uint8_t *in = r->b->msg;
	size_t in_len = sizeof(r->b->msg);
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len = 0;
	if (r->md != NULL) {
		if (EVP_Digest(in, in_len, digest, &digest_len, r->md, NULL) != 1)
			return p11ca_fail(&w->em, P11CA_E_INTERNAL, "cannot compute %s",
					  c->prehash);
		in = digest;
		in_len = digest_len;
	}

	CK_RSA_PKCS_PSS_PARAMS pss = c->pss ? *c->pss : (CK_RSA_PKCS_PSS_PARAMS){0};
	CK_MECHANISM mech = {c->mech, c->pss ? &pss : NULL, c->pss ? sizeof(pss) : 0};
	uint8_t raw[HSM_SIG_MAX];
	CK_ULONG raw_len = sizeof(raw);
	CK_RV rv = fn->C_SignInit(session, &mech, r->key->bare[w->index]);
	if (rv == CKR_OK)
		rv = fn->C_Sign(session, (CK_BYTE_PTR)in, in_len, raw, &raw_len);
	if (rv != CKR_OK)
		return p11ca_fail(&w->em, P11CA_E_HSM, "bare C_SignInit/C_Sign failed: %s",
				  hsm_ckr_name(rv));

	size_t sig_len = raw_len;
	if (c->prehash != NULL) {
		enum p11ca_err err = ecdsa_to_der(raw, raw_len, sig, cap, &sig_len, &w->em);
		if (err != P11CA_OK)
			return err;
	} else {
		memcpy(sig, raw, raw_len);
	}
	if (r->kind == PHASE_BARE_NO_VERIFY)
		return P11CA_OK;
	return hsm_verify(hsm_key_public(r->pool_key), c->alg, r->b->msg, sizeof(r->b->msg), sig,
			  sig_len, &w->em);
}

/* ---- phases -------------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct phase_run *r = w->run;
	uint8_t sig[HSM_SIG_MAX];
	/* The clock starts for everyone at once: the main thread waits here too. */
	pthread_barrier_wait(&r->start);
	double deadline = bench_now() + r->seconds;
	double cpu0 = bench_thread_cpu();
	do {
		w->err = r->kind == PHASE_POOL ? pool_sign_once(w, sig, sizeof(sig))
					       : bare_sign_once(w, sig, sizeof(sig));
		if (w->err != P11CA_OK)
			break;
		w->signatures++;
	} while (bench_now() < deadline && !atomic_load(&bench_interrupted));
	w->cpu = bench_thread_cpu() - cpu0;
	return NULL;
}

/*
 * Run one phase for r->seconds. The main thread is the barrier's last member, so the
 * clock starts when every worker is ready.
 */
static enum p11ca_err phase_run(struct phase_run *r, struct bench_phase_result *out,
				struct p11ca_errmsg *em)
{
	struct worker w[BENCH_MAX_THREADS];
	memset(w, 0, sizeof(w));
	r->pool_key = r->threads == 1 ? r->key->pool1 : r->key->pool2;
	pthread_barrier_init(&r->start, NULL, r->threads + 1);
	for (unsigned i = 0; i < r->threads; i++) {
		w[i].run = r;
		w[i].index = i;
		if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0) {
			/* The threads already started would wait at the barrier forever, and
			 * with two threads at most this means the machine is out of
			 * resources: nothing sensible is left to measure. */
			fprintf(stderr, "p11ca-bench-hsm: cannot start a thread\n");
			abort();
		}
	}
	pthread_barrier_wait(&r->start);
	double t0 = bench_now();
	uint64_t total = 0;
	double cpu = 0;
	enum p11ca_err err = P11CA_OK;
	for (unsigned i = 0; i < r->threads; i++) {
		pthread_join(w[i].thread, NULL);
		total += w[i].signatures;
		cpu += w[i].cpu;
		if (w[i].err != P11CA_OK && err == P11CA_OK)
			err = p11ca_fail(em, w[i].err, "%s", p11ca_errmsg_text(&w[i].em));
	}
	double elapsed = bench_now() - t0;
	pthread_barrier_destroy(&r->start);
	out->rate = elapsed > 0 ? (double)total / elapsed : 0;
	out->cpu_sig = total > 0 ? cpu / (double)total : 0;
	return err;
}

/* ---- keys and sessions ----------------------------------------------------------------- */

static CK_RV bare_find_key(struct bench *b, CK_SESSION_HANDLE session, const uint8_t *id,
			   size_t id_len, CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, (void *)id, id_len}};
	CK_ULONG found = 0;
	CK_RV rv = b->fn->C_FindObjectsInit(session, tmpl, 2);
	if (rv != CKR_OK)
		return rv;
	rv = b->fn->C_FindObjects(session, out, 1, &found);
	CK_RV rv2 = b->fn->C_FindObjectsFinal(session);
	if (rv == CKR_OK && found != 1)
		rv = CKR_OBJECT_HANDLE_INVALID;
	return rv != CKR_OK ? rv : rv2;
}

/* Generate the key of this type once (through the 1-session pool), then find the same
 * token object through the 2-session pool and in every bare session. */
static enum p11ca_err bench_key_get(struct bench *b, enum hsm_key_type type, struct bench_key **out,
				    struct p11ca_errmsg *em)
{
	struct bench_key *k = &b->keys[type];
	*out = k;
	if (k->pool1 != NULL)
		return P11CA_OK;
	char label[32];
	snprintf(label, sizeof(label), "bench-%s", hsm_key_type_name(type));
	P11CA_GUARD(hsm_key_generate(b->tok1, type, label, &k->pool1, em));
	size_t id_len;
	const uint8_t *id = hsm_key_id(k->pool1, &id_len);
	P11CA_GUARD(hsm_key_find(b->tok2, NULL, id, id_len, &k->pool2, em));
	for (unsigned i = 0; i < BENCH_MAX_THREADS; i++) {
		CK_RV rv = bare_find_key(b, b->bare[i], id, id_len, &k->bare[i]);
		if (rv != CKR_OK)
			return p11ca_fail(em, P11CA_E_HSM,
					  "cannot find key '%s' in a bare session: %s", label,
					  hsm_ckr_name(rv));
	}
	return P11CA_OK;
}

/* Open the bare loop's sessions on the slot hsm/ resolved. They share the application's
 * login, which hsm_token_login established; checked here so a failure is not a
 * confusing CKR_USER_NOT_LOGGED_IN from the first C_Sign. */
static enum p11ca_err bare_open(struct bench *b, struct p11ca_errmsg *em)
{
	b->fn = b->tok1->mod->fn;
	for (; b->bare_open < BENCH_MAX_THREADS; b->bare_open++) {
		CK_SESSION_HANDLE *h = &b->bare[b->bare_open];
		CK_SESSION_INFO si = {0};
		CK_RV rv = b->fn->C_OpenSession(b->tok1->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
						NULL, NULL, h);
		if (rv != CKR_OK)
			return p11ca_fail(em, P11CA_E_HSM, "cannot open a bare session: %s",
					  hsm_ckr_name(rv));
		rv = b->fn->C_GetSessionInfo(*h, &si);
		if (rv != CKR_OK || si.state != CKS_RW_USER_FUNCTIONS) {
			b->bare_open++;
			return p11ca_fail(em, P11CA_E_HSM,
					  "a bare session is not logged in (%s, state %lu)",
					  hsm_ckr_name(rv), (unsigned long)si.state);
		}
	}
	return P11CA_OK;
}

/* ---- measurement ------------------------------------------------------------------- */

static enum p11ca_err case_run(struct bench *b, size_t ci, struct p11ca_errmsg *em)
{
	const struct bench_case *c = &cases[ci];
	struct phase_run r = {.b = b, .c = c};
	enum p11ca_err err = bench_key_get(b, c->type, &r.key, em);
	if (err != P11CA_OK)
		return err;
	if (c->prehash != NULL && (r.md = EVP_MD_fetch(NULL, c->prehash, NULL)) == NULL)
		return p11ca_fail(em, P11CA_E_INTERNAL, "cannot fetch %s", c->prehash);

	struct bench_hsm_result *res = &b->results[b->nresults];
	res->type = c->type;
	res->alg = c->alg;

	/* Warm-up: every session opened, every handle cached, caches and clocks settled. */
	struct bench_phase_result discard;
	double warm = b->opt.seconds / 8;
	r.seconds = warm < 0.05 ? 0.05 : warm > 0.5 ? 0.5 : warm;
	for (size_t p = 0; p < BENCH_NPHASES && err == P11CA_OK; p++) {
		r.kind = phases[p].kind;
		r.threads = phases[p].threads;
		err = phase_run(&r, &discard, em);
	}

	fprintf(stderr, "p11ca-bench-hsm: %s %s\n", hsm_key_type_name(c->type),
		hsm_sig_alg_name(c->alg));
	r.seconds = b->opt.seconds / b->opt.rounds;
	for (unsigned round = 0; round < b->opt.rounds && err == P11CA_OK; round++) {
		for (size_t i = 0; i < BENCH_NPHASES && err == P11CA_OK; i++) {
			/* Odd rounds run backwards: no phase always runs first or after. */
			size_t p = round % 2 ? BENCH_NPHASES - 1 - i : i;
			r.kind = phases[p].kind;
			r.threads = phases[p].threads;
			err = phase_run(&r, &res->res[p][round], em);
			if (err == P11CA_OK && atomic_load(&bench_interrupted))
				err = p11ca_fail(em, P11CA_E_USAGE, "interrupted; nothing written");
		}
		for (size_t p = 0; b->opt.verbose && p < BENCH_NPHASES; p++)
			fprintf(stderr, "%s\t%s\tround %u\t%s %u\t%.1f/s\t%.1f µs CPU/sig\n",
				hsm_key_type_name(c->type), hsm_sig_alg_name(c->alg), round,
				phase_names[phases[p].kind], phases[p].threads,
				res->res[p][round].rate, 1e6 * res->res[p][round].cpu_sig);
	}
	EVP_MD_free(r.md);
	if (err == P11CA_OK)
		b->nresults++;
	return err;
}

/* ---- set-up and main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: p11ca-bench-hsm [options]\n"
		"  --module PATH     PKCS#11 module (default /usr/lib/softhsm/libsofthsm2.so;\n"
		"                    must be SoftHSM2: the token is made with softhsm2-util)\n"
		"  --seconds S       measuring time of each phase, per algorithm (default 6)\n"
		"  --rounds N        rounds the time is cut into; medians reported (default 24,\n"
		"                    max %d)\n"
		"  --keys LIST       only these key types, e.g. p256,ed25519\n"
		"  --slow            add rsa4096 and p521 (slow to generate and sign)\n"
		"  --quick           smoke run: 0.2 s phases, 1 round, rsa2048 and p256\n"
		"  --markdown FILE   write the results into FILE's PKCS#11 core section\n"
		"  --verbose         every round's rates on stderr\n"
		"environment: P11CA_BENCH_REVISION, the source revision printed with the results\n"
		"(scripts/bench.sh sets it)\n",
		BENCH_MAX_ROUNDS);
}

static bool opts_parse(struct bench *b, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"module", required_argument, NULL, 'm'},
		{"seconds", required_argument, NULL, 's'},
		{"rounds", required_argument, NULL, 'r'},
		{"keys", required_argument, NULL, 'k'},
		{"slow", no_argument, NULL, 'S'},
		{"quick", no_argument, NULL, 'q'},
		{"verbose", no_argument, NULL, 'V'},
		{"markdown", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct bench_opts *o = &b->opt;
	o->module = "/usr/lib/softhsm/libsofthsm2.so";
	o->revision = getenv("P11CA_BENCH_REVISION");
	char *end;
	int ch;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'm':
			o->module = optarg;
			break;
		case 's':
			o->seconds = strtod(optarg, &end);
			if (*end != '\0' || !(o->seconds >= 0.01 && o->seconds <= 600))
				return fprintf(stderr, "--seconds: 0.01 to 600\n"), false;
			break;
		case 'r':
			o->rounds = (unsigned)strtoul(optarg, &end, 10);
			if (*end != '\0' || o->rounds < 1 || o->rounds > BENCH_MAX_ROUNDS)
				return fprintf(stderr, "--rounds: 1 to %d\n", BENCH_MAX_ROUNDS),
				       false;
			break;
		case 'k':
			for (char *tok = strtok(optarg, ","); tok; tok = strtok(NULL, ",")) {
				enum hsm_key_type t;
				struct p11ca_errmsg em = {0};
				if (hsm_key_type_parse(tok, &t, &em) != P11CA_OK)
					return fprintf(stderr, "--keys: %s\n", em.text), false;
				o->only[t] = o->filtered = true;
			}
			break;
		case 'S':
			o->slow = true;
			break;
		case 'q':
			o->quick = true;
			break;
		case 'V':
			o->verbose = true;
			break;
		case 'o':
			o->markdown = optarg;
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
	if (o->seconds == 0)
		o->seconds = o->quick ? 0.2 : BENCH_SECONDS;
	if (o->rounds == 0)
		o->rounds = o->quick ? 1 : BENCH_ROUNDS;
	if (o->seconds / o->rounds < 0.01) {
		fprintf(stderr, "--seconds / --rounds: a round must last at least 0.01 s\n");
		return false;
	}
	return true;
}

static bool case_selected(const struct bench_opts *o, const struct bench_case *c)
{
	if (o->filtered)
		return o->only[c->type];
	if (o->quick)
		return (c->sets & SET_QUICK) != 0;
	return (c->sets & SET_DEFAULT) != 0 || (o->slow && (c->sets & SET_SLOW) != 0);
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

static enum p11ca_err bench_setup(struct bench *b, struct p11ca_errmsg *em)
{
	if (access(b->opt.module, R_OK) != 0)
		return p11ca_fail(em, P11CA_E_CONFIG,
				  "PKCS#11 module %s not found; install SoftHSM2 (apt-get install "
				  "softhsm2, or scripts/bootstrap.sh) or pass --module",
				  b->opt.module);
	static const char pin[] = "1234";
	P11CA_GUARD(bench_softhsm_create(BENCH_TOKEN_LABEL, "12345678", pin, &b->softhsm, em));
	/* hsm/ reports each key it generates at LOG_NOTICE: keep stdout and stderr for the
	 * results. */
	b->log.max_priority = LOG_WARNING;
	P11CA_GUARD(hsm_ctx_new(&b->log, &b->hsm, em));

	struct hsm_token_config cfg = {.module_path = b->opt.module,
				       .uri = "pkcs11:token=" BENCH_TOKEN_LABEL};
	cfg.pool_size = 1;
	P11CA_GUARD(hsm_token_open(b->hsm, &cfg, &b->tok1, em));
	cfg.pool_size = 2;
	P11CA_GUARD(hsm_token_open(b->hsm, &cfg, &b->tok2, em));

	struct p11ca_secret *secret = NULL;
	enum p11ca_err err = p11ca_secret_new(sizeof(pin), &secret, em);
	if (err == P11CA_OK)
		err = p11ca_secret_set(secret, pin, strlen(pin), em);
	if (err == P11CA_OK)
		err = hsm_token_login(b->tok1, secret, em);
	if (err == P11CA_OK)
		err = hsm_token_login(b->tok2, secret, em);
	p11ca_secret_free(&secret);
	if (err != P11CA_OK)
		return err;
	return bare_open(b, em);
}

/* "Implementation of PKCS11 (SoftHSM) 2.6", from the module itself. */
static void module_describe(struct bench *b, char *dst, size_t dst_size)
{
	CK_INFO info;
	char desc[33], manuf[33];
	snprintf(dst, dst_size, "unknown PKCS#11 module");
	if (b->fn->C_GetInfo(&info) != CKR_OK)
		return;
	hsm_padded_to_cstr(info.libraryDescription, sizeof(info.libraryDescription), desc,
			   sizeof(desc));
	hsm_padded_to_cstr(info.manufacturerID, sizeof(info.manufacturerID), manuf, sizeof(manuf));
	snprintf(dst, dst_size, "%s (%s) %u.%u", desc, manuf, info.libraryVersion.major,
		 info.libraryVersion.minor);
}

static void bench_teardown(struct bench *b)
{
	for (unsigned i = 0; i < b->bare_open; i++)
		(void)b->fn->C_CloseSession(b->bare[i]);
	for (size_t t = 0; t < sizeof(b->keys) / sizeof(b->keys[0]); t++) {
		hsm_key_free(&b->keys[t].pool1);
		hsm_key_free(&b->keys[t].pool2);
	}
	hsm_token_close(&b->tok1);
	hsm_token_close(&b->tok2);
	hsm_ctx_free(&b->hsm);
	bench_softhsm_destroy(&b->softhsm);
}

int main(int argc, char **argv)
{
	struct bench *b = calloc(1, sizeof(*b));
	if (b == NULL) {
		fprintf(stderr, "p11ca-bench-hsm: out of memory\n");
		return 1;
	}
	command_format(b, argc, argv); /* first: option parsing cuts --keys apart */
	if (!opts_parse(b, argc, argv)) {
		free(b);
		return 2;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	for (size_t i = 0; i < sizeof(b->msg); i++)
		b->msg[i] = (uint8_t)(i * 131 + 7);

	struct p11ca_errmsg em = {0};
	char *section = NULL;
	size_t section_len = 0;
	FILE *f = NULL;
	enum p11ca_err err = P11CA_OK;
	if (b->opt.markdown != NULL)
		err = bench_markdown_check(b->opt.markdown, "hsm", &em);
	if (err == P11CA_OK)
		err = bench_setup(b, &em);
	bench_cpu_mark(&b->start);
	for (size_t ci = 0; ci < NCASES && err == P11CA_OK; ci++)
		if (case_selected(&b->opt, &cases[ci]))
			err = case_run(b, ci, &em);
	bench_cpu_mark(&b->end);
	if (err != P11CA_OK)
		goto out;

	f = open_memstream(&section, &section_len);
	if (f == NULL) {
		err = p11ca_fail(&em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	char module[96];
	module_describe(b, module, sizeof(module));
	struct bench_hsm_report report = {
		.command = b->command,
		.module = module,
		.revision = b->opt.revision,
		.seconds = b->opt.seconds,
		.rounds = b->opt.rounds,
		.start = b->start,
		.end = b->end,
		.results = b->results,
		.count = b->nresults,
	};
	bench_hsm_report_write(&report, f);
	if (fclose(f) != 0) {
		err = p11ca_fail(&em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	fputs(section, stdout);
	fflush(stdout);
	if (b->opt.markdown != NULL)
		err = bench_markdown_update(b->opt.markdown, "hsm", section, &em);
out:
	free(section);
	bench_teardown(b);
	free(b);
	if (err != P11CA_OK) {
		fprintf(stderr, "p11ca-bench-hsm: %s\n", p11ca_errmsg_text(&em));
		return 1;
	}
	return 0;
}
