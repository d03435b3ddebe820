/*
 * Helpers shared by the hsm/ SoftHSM2 suites (test_hsm_softhsm.c, test_hsm_faults.c): a
 * log sink that keeps every line (to prove PINs never reach a log), a signature check that
 * does not go through hsm_verify, subprocesses for the outside tools (pkcs11-tool,
 * openssl), and raw PKCS#11 access to the module instance hsm/ has loaded.
 *
 * No cmocka here: functions return -1 (or false) and print why to stderr, the tests assert.
 */
#ifndef P11CA_TESTS_SOFTHSM_HSM_HELPERS_H
#define P11CA_TESTS_SOFTHSM_HSM_HELPERS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "hsm/hsm.h"

/* Distinctive values, so a test can prove that none of them ever shows up in a message or a
 * log line. */
#define T_SO_PIN    "s0-PIN-so-9922"
#define T_PIN	    "s3cr3t-PIN-4711"
#define T_PIN_B	    "b-s3cr3t-PIN-5150"
#define T_WRONG_PIN "wr0ng-PIN-0815"

/* ---- log capture ---------------------------------------------------------------------- */

struct t_log {
	struct p11ca_logger logger; /* hand &logger to hsm_ctx_new */
	pthread_mutex_t mu;
	char *text; /* every line, '\n'-separated */
	size_t len, cap;
};

void t_log_init(struct t_log *lg);
void t_log_free(struct t_log *lg);
/* Whether any captured line contains `needle`. */
bool t_log_contains(struct t_log *lg, const char *needle);

/* Whether `text` contains any of the PINs above. */
bool t_has_pin(const char *text);

/* ---- secrets and time ------------------------------------------------------------------ */

/* A locked secret holding `pin`; NULL on failure. Free with p11ca_secret_free. */
struct p11ca_secret *t_secret(const char *pin);

/* CLOCK_MONOTONIC in milliseconds. */
double t_now_ms(void);
/* Pause `ms` between polls of a condition (never as synchronisation by itself). */
void t_pause_ms(unsigned ms);

/* ---- signatures ----------------------------------------------------------------------- */

/*
 * Verify `sig` over `msg` with `pub`, without hsm_verify: the digest is computed here and
 * checked with EVP_PKEY_verify (RSA: PKCS#1 v1.5 or PSS with MGF1 of the same hash and an
 * explicit salt of the hash length; ECDSA: a DER signature, which must also be canonical
 * DER; Ed25519: one-shot EVP_DigestVerify over the message). 1 valid, 0 invalid, -1 error.
 */
int t_verify(EVP_PKEY *pub, enum hsm_sig_alg alg, const uint8_t *msg, size_t msg_len,
	     const uint8_t *sig, size_t sig_len);

/* The digest name of an algorithm ("sha256"), NULL for Ed25519. */
const char *t_alg_md(enum hsm_sig_alg alg);
bool t_alg_is_pss(enum hsm_sig_alg alg);

/* ---- files and subprocesses ------------------------------------------------------------ */

int t_write_file(const char *path, const void *data, size_t len, unsigned mode);
/* Read at most cap bytes; -1 on error or when the file is larger. */
int t_read_file(const char *path, uint8_t *buf, size_t cap, size_t *len);
int t_write_pubkey_pem(EVP_PKEY *pub, const char *path);
/* A public key from a file in DER (SubjectPublicKeyInfo) or PEM; NULL on failure. */
EVP_PKEY *t_read_pubkey(const char *path);

/* Run argv (PATH lookup) with stdout to `out_path` (NULL: discarded) and stderr inherited;
 * env additions as "NAME=value" strings in `env` (NULL-terminated, may be NULL). Returns the
 * exit status, or -1 when it did not exit normally. Never goes through a shell. */
int t_run(char *const argv[], char *const env[], const char *out_path);

/* bytes → lowercase hex (dst must hold 2n+1). */
void t_hex(const uint8_t *b, size_t n, char *dst);

#endif
