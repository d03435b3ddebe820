/*
 * hsm/signer.h — the signer process's service and the engine's stubs for it.
 *
 * The signer is the only process of p11cad that loads a PKCS#11 module. It answers the
 * closed set of calls in hsm/signer.proto over a channel (rpc/channel.h) and nothing else.
 * signer_serve() is the process's whole job; the stubs below are what the engine calls,
 * each mirroring one handler (OpenSSH's mm_answer_sign / mm_sshkey_sign pattern).
 */
#ifndef P11CA_HSM_SIGNER_H
#define P11CA_HSM_SIGNER_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/err.h"
#include "common/log.h"
#include "common/secret.h"
#include "hsm/hsm.h"
#include "rpc/channel.h"

/* Largest DER SubjectPublicKeyInfo (signer.options) and key URI (+ NUL). */
#define SIGNER_SPKI_MAX 1024
#define SIGNER_URI_MAX	1025

struct signer_options {
	struct hsm_token_config token; /* module, token URI, pool size, busy timeout */
	/* PIN source (a file path or "credential:NAME"); NULL: wait for signer_activate. */
	const char *pin_source;
	/* Worker threads answering calls; 0: the token's pool size (one per session). */
	unsigned workers;
	const struct p11ca_logger *log; /* NULL: stderr */
};

/*
 * Run the signer on `fd` (an engine channel end; taken over and closed): load the module,
 * open the token, log in from the pin source when there is one (a failed login is reported
 * in status, not fatal: the token then waits for an activation), and answer calls until the
 * engine closes the link (P11CA_OK) or breaks protocol (the error; the process should exit
 * non-zero). Before serving, the process makes itself non-dumpable and disables core files
 * (the PIN is in its memory).
 * Errors: those of hsm_ctx_new / hsm_token_open (configuration the parent validated, so
 * fatal), the channel's.
 */
P11CA_MUST_CHECK enum p11ca_err signer_serve(int fd, const struct signer_options *opts,
					     struct p11ca_errmsg *em);

/* ---- the engine's side --------------------------------------------------------------- */

/* Open the client end of the engine → signer link on `fd` (taken over). */
P11CA_MUST_CHECK enum p11ca_err signer_client_open(int fd, const struct p11ca_logger *log,
						   struct chan **out, struct p11ca_errmsg *em);

enum signer_tbs_kind {
	SIGNER_TBS_CERTIFICATE = 1,
	SIGNER_TBS_CRL = 2,
};

/*
 * Have the CA key `key_uri` sign a DER TBS of `kind`. `issuer_cert` is the CA's DER
 * certificate (NULL/0 only when the TBS is a self-signed certificate). The signer checks
 * the TBS (see hsm/signer.proto) and returns the signature in X.509's encoding; the caller
 * assembles the certificate or CRL with the TBS's own signature AlgorithmIdentifier.
 * Errors: P11CA_E_POLICY (issuer does not match the CA, key does not match the issuer
 * certificate, algorithm does not fit the key, TBS does not parse), the HSM errors of
 * hsm_sign, P11CA_E_IO / P11CA_E_TIMEOUT (signer gone or stuck).
 */
P11CA_MUST_CHECK enum p11ca_err signer_sign(struct chan *ch, const char *key_uri,
					    enum signer_tbs_kind kind, const uint8_t *tbs,
					    size_t tbs_len, const uint8_t *issuer_cert,
					    size_t issuer_cert_len, uint8_t *sig, size_t sig_cap,
					    size_t *sig_len, struct p11ca_errmsg *em);

/*
 * Generate a CA key pair on the token. Only the engine calls this, and only to serve an
 * admin's CA init (or the bootstrap). `uri` receives the key's object URI (SIGNER_URI_MAX),
 * `*pub` its public key (caller frees with EVP_PKEY_free).
 * Errors: as hsm_key_generate, plus the channel's.
 */
P11CA_MUST_CHECK enum p11ca_err signer_key_generate(struct chan *ch, enum hsm_key_type type,
						    const char *label, char uri[SIGNER_URI_MAX],
						    EVP_PKEY **pub, struct p11ca_errmsg *em);

/* The public key and type of an existing key. Errors: as hsm_key_find_uri. */
P11CA_MUST_CHECK enum p11ca_err signer_public_key(struct chan *ch, const char *key_uri,
						  EVP_PKEY **pub, enum hsm_key_type *type,
						  struct p11ca_errmsg *em);

enum signer_token_state {
	SIGNER_TOKEN_READY = 1,
	SIGNER_TOKEN_NEEDS_PIN = 2,
	SIGNER_TOKEN_PIN_FINAL_TRY = 3,
	SIGNER_TOKEN_PIN_LOCKED = 4,
	SIGNER_TOKEN_UNAVAILABLE = 5,
};

struct signer_status {
	char label[33], manufacturer[33], model[17], serial_number[17];
	enum signer_token_state state;
	unsigned sessions_open, sessions_busy;
	uint64_t signatures, failures;
};

P11CA_MUST_CHECK enum p11ca_err signer_status_get(struct chan *ch, struct signer_status *st,
						  struct p11ca_errmsg *em);

/* Hand the token a PIN and log in; *st receives the state afterwards (may be NULL). The
 * PIN is copied into the call and wiped from it after sending.
 * Errors: the login errors of hsm_token_login, plus the channel's. */
P11CA_MUST_CHECK enum p11ca_err signer_activate(struct chan *ch, const struct p11ca_secret *pin,
						struct signer_status *st, struct p11ca_errmsg *em);

#endif
