/*
 * p11ca-bench-rpc's baseline: signatures per second on the CA keys p11cad made, with no
 * daemon in the way.
 *
 *   bare  N threads, each with its own session, calling the raw function list:
 *         C_SignInit + C_Sign (RSA: CKM_SHA256_RSA_PKCS over the message; P-256: SHA-256
 *         in software, then CKM_ECDSA). What the token can do, nothing else.
 *   pool  hsm_sign through a pool of N sessions, N threads: the bare work plus the
 *         verification the signer does before releasing a signature.
 *
 * SoftHSM2 keeps its token in files, so this process can log in and sign on the same
 * token while p11cad runs; the rounds then interleave RPC and bare back to back.
 */
#include "tests/bench/rpc_bench.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/*
 * The raw CK_FUNCTION_LIST must be the one hsm/ loaded and initialised (C_Initialize is
 * once per process per module), so this trusted in-tree benchmark reads it, and the
 * slot, from hsm/internal.h, as p11ca-bench-hsm does. Included last: pkcs11.h #defines
 * short common words.
 */
#include "hsm/internal.h"

#define BARE_MAX_KEYS 4

struct bare_key {
	char label[65];
	enum hsm_key_type type;
	struct hsm_key *pool; /* through the pool: its public key, and hsm_sign */
	CK_OBJECT_HANDLE h[RPC_BENCH_MAX_CLIENTS]; /* the same key in every bare session */
};

struct rpc_bare {
	struct p11ca_logger log;
	struct hsm_ctx *hsm;
	struct hsm_token *tok;
	CK_FUNCTION_LIST *fn;
	CK_SESSION_HANDLE sess[RPC_BENCH_MAX_CLIENTS];
	unsigned nsess;
	unsigned threads;
	bool generate;
	const atomic_bool *interrupted;
	struct bare_key keys[BARE_MAX_KEYS];
	size_t nkeys;
	uint8_t msg[RPC_BENCH_MSG_LEN];
};

struct bare_run {
	struct rpc_bare *b;
	struct bare_key *key;
	enum rpc_bench_phase phase;
	EVP_MD *sha256; /* P-256 pre-hash, fetched once as a tuned caller would */
	double seconds;
	pthread_barrier_t start;
};

struct bare_worker {
	struct bare_run *run;
	unsigned index;
	pthread_t thread;
	uint64_t done;
	double cpu;
	enum p11ca_err err;
	struct p11ca_errmsg em;
};

static enum p11ca_err bare_sign_once(struct bare_worker *w)
{
	struct bare_run *r = w->run;
	CK_FUNCTION_LIST *fn = r->b->fn;
	CK_SESSION_HANDLE s = r->b->sess[w->index];
	const uint8_t *in = r->b->msg;
	size_t in_len = sizeof(r->b->msg);
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len = 0;
	CK_MECHANISM mech = {CKM_SHA256_RSA_PKCS, NULL, 0};
	if (r->key->type == HSM_KEY_P256) {
		if (EVP_Digest(in, in_len, digest, &digest_len, r->sha256, NULL) != 1)
			return p11ca_fail(&w->em, P11CA_E_INTERNAL, "cannot compute SHA-256");
		in = digest;
		in_len = digest_len;
		mech.mechanism = CKM_ECDSA;
	}
	uint8_t sig[HSM_SIG_MAX];
	CK_ULONG sig_len = sizeof(sig);
	CK_RV rv = fn->C_SignInit(s, &mech, r->key->h[w->index]);
	if (rv == CKR_OK)
		rv = fn->C_Sign(s, (CK_BYTE_PTR)in, in_len, sig, &sig_len);
	if (rv != CKR_OK)
		return p11ca_fail(&w->em, P11CA_E_HSM, "bare C_SignInit/C_Sign with '%s': %s",
				  r->key->label, hsm_ckr_name(rv));
	return P11CA_OK;
}

static enum p11ca_err pool_sign_once(struct bare_worker *w)
{
	struct bare_run *r = w->run;
	uint8_t sig[HSM_SIG_MAX];
	size_t len;
	return hsm_sign(r->key->pool, hsm_sig_alg_default(r->key->type), r->b->msg,
			sizeof(r->b->msg), sig, sizeof(sig), &len, &w->em);
}

static void *bare_worker_main(void *arg)
{
	struct bare_worker *w = arg;
	struct bare_run *r = w->run;
	/* The clock starts for everyone at once: the calling thread waits here too. */
	pthread_barrier_wait(&r->start);
	double deadline = bench_now() + r->seconds;
	double cpu0 = bench_thread_cpu();
	do {
		w->err = r->phase == RPC_PHASE_POOL ? pool_sign_once(w) : bare_sign_once(w);
		if (w->err != P11CA_OK)
			break;
		w->done++;
	} while (bench_now() < deadline && !atomic_load(r->b->interrupted));
	w->cpu = bench_thread_cpu() - cpu0;
	return NULL;
}

/* ---- keys --------------------------------------------------------------------------- */

static CK_RV find_by_label(struct rpc_bare *b, CK_SESSION_HANDLE s, const char *label,
			   CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
			       {CKA_LABEL, (void *)label, strlen(label)}};
	CK_ULONG found = 0;
	CK_RV rv = b->fn->C_FindObjectsInit(s, tmpl, 2);
	if (rv != CKR_OK)
		return rv;
	rv = b->fn->C_FindObjects(s, out, 1, &found);
	CK_RV rv2 = b->fn->C_FindObjectsFinal(s);
	if (rv == CKR_OK && found != 1)
		rv = CKR_OBJECT_HANDLE_INVALID;
	return rv != CKR_OK ? rv : rv2;
}

/* The key labelled `label` through the pool and in every bare session, looked up once. */
static enum p11ca_err key_get(struct rpc_bare *b, enum hsm_key_type type, const char *label,
			      struct bare_key **out, struct p11ca_errmsg *em)
{
	for (size_t i = 0; i < b->nkeys; i++)
		if (strcmp(b->keys[i].label, label) == 0)
			return *out = &b->keys[i], P11CA_OK;
	if (b->nkeys == BARE_MAX_KEYS || strlen(label) >= sizeof(b->keys[0].label))
		return p11ca_fail(em, P11CA_E_INTERNAL, "too many keys or label too long");
	struct bare_key *k = &b->keys[b->nkeys];
	struct p11ca_errmsg find_em = {0};
	enum p11ca_err err = hsm_key_find(b->tok, label, NULL, 0, &k->pool, &find_em);
	if (err == P11CA_E_HSM_KEY_NOT_FOUND && b->generate)
		err = hsm_key_generate(b->tok, type, label, &k->pool, em);
	else if (err != P11CA_OK)
		err = p11ca_fail(em, err, "%s", p11ca_errmsg_text(&find_em));
	if (err != P11CA_OK)
		return err;
	enum hsm_key_type found = hsm_key_type_of(k->pool);
	if (found != type) {
		hsm_key_free(&k->pool);
		return p11ca_fail(em, P11CA_E_HSM_MECHANISM, "key '%s' is a %s key, not %s", label,
				  hsm_key_type_name(found), hsm_key_type_name(type));
	}
	for (unsigned i = 0; i < b->nsess; i++) {
		CK_RV rv = find_by_label(b, b->sess[i], label, &k->h[i]);
		if (rv != CKR_OK) {
			hsm_key_free(&k->pool);
			return p11ca_fail(em, P11CA_E_HSM_KEY_NOT_FOUND,
					  "cannot find key '%s' in a bare session: %s", label,
					  hsm_ckr_name(rv));
		}
	}
	snprintf(k->label, sizeof(k->label), "%s", label);
	k->type = type;
	b->nkeys++;
	*out = k;
	return P11CA_OK;
}

/* ---- public ------------------------------------------------------------------------- */

enum p11ca_err rpc_bare_run(struct rpc_bare *b, enum rpc_bench_phase phase, enum hsm_key_type type,
			    const char *label, double seconds, struct rpc_bench_sample *out,
			    struct p11ca_errmsg *em)
{
	if (phase != RPC_PHASE_BARE && phase != RPC_PHASE_POOL)
		return p11ca_fail(em, P11CA_E_INTERNAL, "rpc_bare_run: not a bare phase");
	if (type != HSM_KEY_RSA2048 && type != HSM_KEY_P256)
		return p11ca_fail(em, P11CA_E_INTERNAL, "rpc_bare_run: rsa2048 or p256 only");
	struct bare_run r = {.b = b, .phase = phase, .seconds = seconds};
	P11CA_GUARD(key_get(b, type, label, &r.key, em));
	if ((r.sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
		return p11ca_fail(em, P11CA_E_INTERNAL, "cannot fetch SHA-256");

	struct bare_worker w[RPC_BENCH_MAX_CLIENTS];
	memset(w, 0, sizeof(w));
	pthread_barrier_init(&r.start, NULL, b->threads + 1);
	for (unsigned i = 0; i < b->threads; i++) {
		w[i].run = &r;
		w[i].index = i;
		if (pthread_create(&w[i].thread, NULL, bare_worker_main, &w[i]) != 0) {
			/* Threads already started would wait at the barrier forever; with a
			 * handful of threads this means the machine is out of resources. */
			fprintf(stderr, "p11ca-bench-rpc: cannot start a thread\n");
			abort();
		}
	}
	pthread_barrier_wait(&r.start);
	double t0 = bench_now();
	uint64_t total = 0;
	double cpu = 0;
	enum p11ca_err err = P11CA_OK;
	for (unsigned i = 0; i < b->threads; i++) {
		pthread_join(w[i].thread, NULL);
		total += w[i].done;
		cpu += w[i].cpu;
		if (w[i].err != P11CA_OK && err == P11CA_OK)
			err = p11ca_fail(em, w[i].err, "%s", p11ca_errmsg_text(&w[i].em));
	}
	double elapsed = bench_now() - t0;
	pthread_barrier_destroy(&r.start);
	EVP_MD_free(r.sha256);
	*out = (struct rpc_bench_sample){
		.rate = elapsed > 0 ? (double)total / elapsed : 0,
		.cpu_op = total > 0 ? cpu / (double)total : 0,
	};
	return err;
}

enum p11ca_err rpc_bare_open(const char *module, const char *token, const struct p11ca_secret *pin,
			     unsigned threads, bool generate, const atomic_bool *interrupted,
			     struct rpc_bare **out, struct p11ca_errmsg *em)
{
	*out = NULL;
	if (threads < 1 || threads > RPC_BENCH_MAX_CLIENTS)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "1 to %d threads",
				  RPC_BENCH_MAX_CLIENTS);
	char uri[96];
	if (snprintf(uri, sizeof(uri), "pkcs11:token=%s", token) >= (int)sizeof(uri))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "token label too long");
	struct rpc_bare *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	b->threads = threads;
	b->generate = generate;
	b->interrupted = interrupted;
	for (size_t i = 0; i < sizeof(b->msg); i++)
		b->msg[i] = (uint8_t)(i * 131 + 7);
	/* hsm/ reports each key it generates at LOG_NOTICE: keep stdout for the results. */
	b->log.max_priority = LOG_WARNING;
	struct hsm_token_config cfg = {.module_path = module, .uri = uri, .pool_size = threads};
	enum p11ca_err err = hsm_ctx_new(&b->log, &b->hsm, em);
	if (err == P11CA_OK)
		err = hsm_token_open(b->hsm, &cfg, &b->tok, em);
	if (err == P11CA_OK)
		err = hsm_token_login(b->tok, pin, em);
	if (err != P11CA_OK)
		goto out;

	/* Sessions of our own on the slot hsm/ resolved; they share the application's login,
	 * checked here so a failure is not a confusing CKR_USER_NOT_LOGGED_IN later. */
	b->fn = b->tok->mod->fn;
	for (; b->nsess < threads; b->nsess++) {
		CK_SESSION_HANDLE *h = &b->sess[b->nsess];
		CK_SESSION_INFO si = {0};
		CK_RV rv = b->fn->C_OpenSession(b->tok->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
						NULL, NULL, h);
		if (rv != CKR_OK) {
			err = p11ca_fail(em, P11CA_E_HSM, "cannot open a bare session: %s",
					 hsm_ckr_name(rv));
			goto out;
		}
		rv = b->fn->C_GetSessionInfo(*h, &si);
		if (rv != CKR_OK || si.state != CKS_RW_USER_FUNCTIONS) {
			b->nsess++;
			err = p11ca_fail(em, P11CA_E_HSM,
					 "a bare session is not logged in (%s, state %lu)",
					 hsm_ckr_name(rv), (unsigned long)si.state);
			goto out;
		}
	}
out:
	if (err != P11CA_OK)
		rpc_bare_close(&b);
	*out = b;
	return err;
}

void rpc_bare_module_describe(struct rpc_bare *b, char *dst, size_t dst_size)
{
	CK_INFO info;
	char desc[33], manuf[33];
	snprintf(dst, dst_size, "unknown PKCS#11 module");
	if (b == NULL || b->fn == NULL || b->fn->C_GetInfo(&info) != CKR_OK)
		return;
	hsm_padded_to_cstr(info.libraryDescription, sizeof(info.libraryDescription), desc,
			   sizeof(desc));
	hsm_padded_to_cstr(info.manufacturerID, sizeof(info.manufacturerID), manuf, sizeof(manuf));
	snprintf(dst, dst_size, "%s (%s) %u.%u", desc, manuf, info.libraryVersion.major,
		 info.libraryVersion.minor);
}

void rpc_bare_close(struct rpc_bare **pb)
{
	if (pb == NULL || *pb == NULL)
		return;
	struct rpc_bare *b = *pb;
	for (unsigned i = 0; i < b->nsess; i++)
		(void)b->fn->C_CloseSession(b->sess[i]);
	for (size_t i = 0; i < b->nkeys; i++)
		hsm_key_free(&b->keys[i].pool);
	hsm_token_close(&b->tok);
	hsm_ctx_free(&b->hsm);
	free(b);
	*pb = NULL;
}
