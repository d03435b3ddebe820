/*
 * Shared by the parts of p11ca-bench-rpc: options and the run (rpc_bench.c), the daemon
 * it drives (rpc_daemon.c), the RPC clients (rpc_load.c), the bare PKCS#11 baseline
 * (rpc_bare.c) and the write-up (rpc_report.c).
 */
#ifndef P11CA_BENCH_RPC_BENCH_H
#define P11CA_BENCH_RPC_BENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "tests/bench/bench.h"
#include "hsm/hsm.h"

#define RPC_BENCH_MSG_LEN     1024 /* the bare loop signs about a TBSCertificate */
#define RPC_BENCH_MAX_ROUNDS  64
#define RPC_BENCH_MAX_CLIENTS 16
#define RPC_BENCH_MAX_DEPTH   64   /* requests in flight per client: RPC_CLIENT_MAX_PENDING */
#define RPC_BENCH_DEPTH	      8	   /* default: half the server's per-connection cap (16) */
#define RPC_BENCH_TARGET_RSA  0.80 /* issue: RPC certs/s >= 0.80 x the bare 2-session rate */

/* The phases of one key, in the order they run in even rounds. */
enum rpc_bench_phase {
	RPC_PHASE_RPC,	/* cert_sign over RPC, N clients, each with its own connection */
	RPC_PHASE_BARE, /* C_SignInit + C_Sign on the same key, N threads and sessions */
	RPC_PHASE_POOL, /* hsm_sign (pool of N, verifies each signature), N threads */
	RPC_NPHASES
};

struct rpc_bench_sample {
	double rate;	   /* operations per second, wall clock */
	double cpu_op;	   /* CPU seconds the bench's own threads spent per operation */
	double daemon_cpu; /* RPC only: CPU seconds all of p11cad's processes spent per cert */
};

/* One key: every phase in every round. */
struct rpc_bench_result {
	enum hsm_key_type type;
	const char *ca; /* the CA's name, which is also its key's CKA_LABEL */
	double target;	/* RPC/bare the issue asks for; 0: none */
	struct rpc_bench_sample s[RPC_NPHASES][RPC_BENCH_MAX_ROUNDS];
};

/* Everything the write-up needs; all borrowed. */
struct rpc_bench_report {
	const char *command;  /* argv, quoted where needed */
	const char *revision; /* NULL when unknown */
	const char *module;   /* the PKCS#11 module's own description and version */
	bool rpc;	      /* false under --bare-only: no RPC column */
	unsigned clients;
	unsigned depth; /* requests each client keeps in flight */
	double seconds; /* measuring time per phase and key */
	unsigned rounds;
	struct bench_cpu_mark start, end;
	double daemon_cpu; /* p11cad's CPU seconds between start and end */
	const struct rpc_bench_result *results;
	size_t count;
};

/* The "Issuance over RPC" section of docs/BENCHMARKS.md (no markers). */
void rpc_bench_report_write(const struct rpc_bench_report *r, FILE *f);

/* ---- rpc_daemon.c: one p11cad, bootstrapped and run for the benchmark ---------------- */

struct rpc_daemon; /* opaque */

struct rpc_daemon_config {
	const char *p11cad;   /* the program */
	const char *dir;      /* an empty directory for config, state, credentials and logs */
	const char *module;   /* PKCS#11 module */
	const char *token;    /* token label (SOFTHSM2_CONF already points at it) */
	const char *pin_file; /* the user PIN, mode 0600 */
};

/*
 * `p11cad init` on a free 127.0.0.1 port, then `p11cad --config` in its own session with
 * NOTIFY_SOCKET; returns once it sent READY=1. Their output goes to DIR/init.log and
 * DIR/p11cad.log; on failure the last lines are copied to stderr.
 * Errors: P11CA_E_CONFIG (cannot run p11cad, init failed), P11CA_E_IO (exited before
 * READY=1, sockets), P11CA_E_TIMEOUT (not ready within 120 s), P11CA_E_NOMEM.
 */
P11CA_MUST_CHECK enum p11ca_err rpc_daemon_start(const struct rpc_daemon_config *cfg,
						 struct rpc_daemon **out, struct p11ca_errmsg *em);

/* "127.0.0.1:PORT", and the admin credential `p11cad init` wrote. Borrowed. */
const char *rpc_daemon_server(const struct rpc_daemon *d);
const char *rpc_daemon_admin_cert(const struct rpc_daemon *d);
const char *rpc_daemon_admin_key(const struct rpc_daemon *d);
const char *rpc_daemon_ca_cert(const struct rpc_daemon *d);

/* CPU seconds (user + system) the live processes of p11cad's session have used so far. */
double rpc_daemon_cpu(const struct rpc_daemon *d);

/*
 * SIGTERM, wait up to 60 s, and check that p11cad exited 0 and left no process of its
 * session behind (stragglers are killed). Frees *d either way and sets it to NULL.
 * Errors: P11CA_E_IO (non-zero exit, signal, stragglers), P11CA_E_TIMEOUT (then killed).
 */
P11CA_MUST_CHECK enum p11ca_err rpc_daemon_stop(struct rpc_daemon **d, struct p11ca_errmsg *em);

/* Kill p11cad's whole session with SIGKILL (its log's last lines to stderr first), reap
 * it and free: for failure paths.
 * NULL-safe; sets *d to NULL. */
void rpc_daemon_kill(struct rpc_daemon **d);

/* ---- rpc_load.c: the RPC side ------------------------------------------------------ */

struct rpc_client;

/* One PKCS#10 request (P-256 key, CN=bench.example.com), DER, made in process; the
 * caller frees *der with OPENSSL_free. Errors: P11CA_E_INTERNAL (OpenSSL failed). */
P11CA_MUST_CHECK enum p11ca_err rpc_load_csr(uint8_t **der, size_t *len, struct p11ca_errmsg *em);

/* ca_init a root CA `name` whose key, labelled `name` too, is of `type` (rsa2048 or p256).
 * Errors: those of rpc_client_call; P11CA_E_IO when p11cad answers anything but OK (its
 * status and message in the text). */
P11CA_MUST_CHECK enum p11ca_err rpc_load_ca_init(struct rpc_client *c, const char *name,
						 enum hsm_key_type type, struct p11ca_errmsg *em);

/* What an RPC phase needs; all borrowed. */
struct rpc_load {
	struct rpc_client **clients; /* one connection per thread */
	unsigned nclients;
	unsigned depth; /* requests each client keeps in flight (pipelined) */
	const char *ca;
	const uint8_t *csr;
	size_t csr_len;
	const struct rpc_daemon *daemon; /* for its CPU time */
	const atomic_bool *interrupted;
};

/* cert_sign in a loop on every client for `seconds`, each keeping up to `depth` requests
 * in flight; every OK reply counts (p11cad answers only after the certificate is
 * committed). Errors: those of rpc_client_call;
 * P11CA_E_IO on the first non-OK status (with the server's message). */
P11CA_MUST_CHECK enum p11ca_err rpc_load_run(const struct rpc_load *l, double seconds,
					     struct rpc_bench_sample *out, struct p11ca_errmsg *em);

/* ---- rpc_bare.c: the same keys, signed on directly --------------------------------- */

struct rpc_bare; /* opaque */

/*
 * Load `module`, find the token labelled `token`, log in with `pin`, and open `threads`
 * bare sessions of its own beside a pool of as many (for hsm_sign). With `generate`,
 * missing keys are generated (--bare-only, where no daemon made them). A measurement stops
 * early once *interrupted is set. Call after bench_softhsm_create. Errors: those of hsm_token_open
 * and hsm_token_login, P11CA_E_HSM (a session that cannot be opened or is not logged in).
 */
P11CA_MUST_CHECK enum p11ca_err rpc_bare_open(const char *module, const char *token,
					      const struct p11ca_secret *pin, unsigned threads,
					      bool generate, const atomic_bool *interrupted,
					      struct rpc_bare **out, struct p11ca_errmsg *em);

/* Measure one phase (RPC_PHASE_BARE or RPC_PHASE_POOL) on the private key labelled
 * `label` for `seconds`. Errors: P11CA_E_HSM_KEY_NOT_FOUND, a failed signature. */
P11CA_MUST_CHECK enum p11ca_err rpc_bare_run(struct rpc_bare *b, enum rpc_bench_phase phase,
					     enum hsm_key_type type, const char *label,
					     double seconds, struct rpc_bench_sample *out,
					     struct p11ca_errmsg *em);

/* "Implementation of PKCS11 (SoftHSM) 2.6", from the module itself. */
void rpc_bare_module_describe(struct rpc_bare *b, char *dst, size_t dst_size);

/* Close sessions and token, free. NULL-safe; sets *b to NULL. */
void rpc_bare_close(struct rpc_bare **b);

#endif
