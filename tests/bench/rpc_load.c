/*
 * p11ca-bench-rpc's clients: the CA set-up and the cert_sign load, through rpc/client.h
 * exactly as any remote tool would use it. The path measured per certificate:
 * client → TLS → rpc process → engine (intent commit) → signer (check, C_Sign, verify) →
 * engine (certificate commit) → reply.
 */
#include "tests/bench/rpc_bench.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "rpc/client.h"

#define LOAD_SUBJECT_CN "bench.example.com"

_Static_assert(RPC_BENCH_MAX_DEPTH <= RPC_CLIENT_MAX_PENDING, "--depth beyond what a client holds");

enum p11ca_err rpc_load_csr(uint8_t **der, size_t *len, struct p11ca_errmsg *em)
{
	*der = NULL;
	enum p11ca_err err = P11CA_OK;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = NULL;
	if (key == NULL || req == NULL || X509_REQ_set_version(req, 0) != 1 ||
	    (name = X509_REQ_get_subject_name(req)) == NULL ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				       (const unsigned char *)LOAD_SUBJECT_CN, -1, -1, 0) != 1 ||
	    X509_REQ_set_pubkey(req, key) != 1 || X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
		err = p11ca_fail(em, P11CA_E_INTERNAL, "cannot make the benchmark's CSR (OpenSSL)");
		goto out;
	}
	int n = i2d_X509_REQ(req, der);
	if (n <= 0) {
		err = p11ca_fail(em, P11CA_E_INTERNAL, "cannot encode the benchmark's CSR");
		goto out;
	}
	*len = (size_t)n;
out:
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	return err;
}

/* A non-OK answer as text: the bench expected every request to succeed. */
static enum p11ca_err refused(const p11ca_v1_Response *resp, const char *what, const char *ca,
			      struct p11ca_errmsg *em)
{
	return p11ca_fail(em, P11CA_E_IO, "%s on CA '%s': p11cad answered status %d: %s", what, ca,
			  (int)resp->status.code,
			  resp->status.message[0] ? resp->status.message : "(no message)");
}

enum p11ca_err rpc_load_ca_init(struct rpc_client *c, const char *name, enum hsm_key_type type,
				struct p11ca_errmsg *em)
{
	p11ca_v1_Request *req = calloc(1, sizeof(*req));
	p11ca_v1_Response *resp = calloc(1, sizeof(*resp));
	enum p11ca_err err = P11CA_OK;
	if (req == NULL || resp == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	req->which_op = p11ca_v1_Request_ca_init_tag;
	p11ca_v1_CaInitRequest *ci = &req->op.ca_init;
	snprintf(ci->name, sizeof(ci->name), "%s", name);
	snprintf(ci->key_label, sizeof(ci->key_label), "%s", name);
	snprintf(ci->subject, sizeof(ci->subject), "CN=p11ca benchmark %s CA",
		 hsm_key_type_name(type));
	ci->key_type = type == HSM_KEY_RSA2048 ? p11ca_v1_KeyType_KEY_TYPE_RSA2048
					       : p11ca_v1_KeyType_KEY_TYPE_P256;
	err = rpc_client_call(c, req, resp, em);
	if (err == P11CA_OK && resp->status.code != p11ca_v1_StatusCode_STATUS_CODE_OK)
		err = refused(resp, "ca_init", name, em);
out:
	free(req);
	free(resp);
	return err;
}

/* ---- the load ---------------------------------------------------------------------- */

struct load_worker {
	const struct rpc_load *l;
	struct rpc_client *client;
	pthread_barrier_t *start;
	double seconds;
	p11ca_v1_Request *req;
	p11ca_v1_Response *resp;
	pthread_t thread;
	uint64_t done;
	double cpu;
	enum p11ca_err err;
	struct p11ca_errmsg em;
};

/* Wait for the next answer and check it is a certificate. */
static enum p11ca_err sign_recv(struct load_worker *w)
{
	enum p11ca_err err = rpc_client_recv(w->client, w->resp, &w->em);
	if (err != P11CA_OK)
		return err;
	if (w->resp->status.code != p11ca_v1_StatusCode_STATUS_CODE_OK)
		return refused(w->resp, "cert_sign", w->l->ca, &w->em);
	if (w->resp->which_result != p11ca_v1_Response_cert_sign_tag ||
	    w->resp->result.cert_sign.certificate_der.size == 0)
		return p11ca_fail(&w->em, P11CA_E_PROTO,
				  "cert_sign on CA '%s': OK without a certificate", w->l->ca);
	return P11CA_OK;
}

static void *load_worker_main(void *arg)
{
	struct load_worker *w = arg;
	/* The clock starts for everyone at once: the calling thread waits here too. */
	pthread_barrier_wait(w->start);
	double deadline = bench_now() + w->seconds;
	double cpu0 = bench_thread_cpu();
	unsigned in_flight = 0;
	/* Keep `depth` requests in flight until the deadline, then collect the rest (the
	 * caller's clock includes that drain, so every answer counted was paid for). */
	while (w->err == P11CA_OK && in_flight < w->l->depth) {
		w->err = rpc_client_send(w->client, w->req, &w->em);
		in_flight += w->err == P11CA_OK;
	}
	while (w->err == P11CA_OK && in_flight > 0) {
		w->err = sign_recv(w);
		in_flight--;
		if (w->err != P11CA_OK)
			break;
		w->done++;
		if (bench_now() < deadline && !atomic_load(w->l->interrupted)) {
			w->err = rpc_client_send(w->client, w->req, &w->em);
			in_flight += w->err == P11CA_OK;
		}
	}
	w->cpu = bench_thread_cpu() - cpu0;
	return NULL;
}

static enum p11ca_err workers_prepare(const struct rpc_load *l, struct load_worker *w,
				      struct p11ca_errmsg *em)
{
	for (unsigned i = 0; i < l->nclients; i++) {
		w[i].l = l;
		w[i].client = l->clients[i];
		w[i].req = calloc(1, sizeof(*w[i].req));
		w[i].resp = calloc(1, sizeof(*w[i].resp));
		if (w[i].req == NULL || w[i].resp == NULL)
			return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		if (l->csr_len > sizeof(w[i].req->op.cert_sign.csr.bytes))
			return p11ca_fail(em, P11CA_E_INTERNAL, "the CSR is too large");
		w[i].req->which_op = p11ca_v1_Request_cert_sign_tag;
		p11ca_v1_CertSignRequest *cs = &w[i].req->op.cert_sign;
		snprintf(cs->ca, sizeof(cs->ca), "%s", l->ca);
		memcpy(cs->csr.bytes, l->csr, l->csr_len);
		cs->csr.size = (pb_size_t)l->csr_len;
		snprintf(cs->profile, sizeof(cs->profile), "webserver");
		cs->sans_count = 1;
		snprintf(cs->sans[0], sizeof(cs->sans[0]), "DNS:" LOAD_SUBJECT_CN);
	}
	return P11CA_OK;
}

enum p11ca_err rpc_load_run(const struct rpc_load *l, double seconds, struct rpc_bench_sample *out,
			    struct p11ca_errmsg *em)
{
	if (l->nclients < 1 || l->nclients > RPC_BENCH_MAX_CLIENTS)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "1 to %d clients",
				  RPC_BENCH_MAX_CLIENTS);
	if (l->depth < 1 || l->depth > RPC_BENCH_MAX_DEPTH)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "1 to %d requests in flight",
				  RPC_BENCH_MAX_DEPTH);
	struct load_worker w[RPC_BENCH_MAX_CLIENTS];
	memset(w, 0, sizeof(w));
	pthread_barrier_t start;
	unsigned started = 0;
	uint64_t total = 0;
	double cpu = 0, t0 = 0, daemon0 = 0;
	enum p11ca_err err = workers_prepare(l, w, em);
	if (err != P11CA_OK)
		goto out;
	pthread_barrier_init(&start, NULL, l->nclients + 1);
	for (; started < l->nclients; started++) {
		w[started].start = &start;
		w[started].seconds = seconds;
		if (pthread_create(&w[started].thread, NULL, load_worker_main, &w[started]) != 0) {
			/* Threads already started would wait at the barrier forever; with a
			 * handful of threads this means the machine is out of resources. */
			fprintf(stderr, "p11ca-bench-rpc: cannot start a thread\n");
			abort();
		}
	}
	daemon0 = l->daemon != NULL ? rpc_daemon_cpu(l->daemon) : 0;
	pthread_barrier_wait(&start);
	t0 = bench_now();
	for (unsigned i = 0; i < started; i++) {
		pthread_join(w[i].thread, NULL);
		total += w[i].done;
		cpu += w[i].cpu;
		if (w[i].err != P11CA_OK && err == P11CA_OK)
			err = p11ca_fail(em, w[i].err, "%s", p11ca_errmsg_text(&w[i].em));
	}
	double elapsed = bench_now() - t0;
	double daemon = l->daemon != NULL ? rpc_daemon_cpu(l->daemon) - daemon0 : 0;
	pthread_barrier_destroy(&start);
	*out = (struct rpc_bench_sample){
		.rate = elapsed > 0 ? (double)total / elapsed : 0,
		.cpu_op = total > 0 ? cpu / (double)total : 0,
		.daemon_cpu = total > 0 ? daemon / (double)total : 0,
	};
out:
	for (unsigned i = 0; i < l->nclients; i++) {
		free(w[i].req);
		free(w[i].resp);
	}
	return err;
}
