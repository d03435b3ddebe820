/*
 * hsm/ — p11ca's PKCS#11 core. Every private-key operation of every CA goes through here.
 *
 * Runs only in the signer process. Nothing in this header exposes PKCS#11 types: callers
 * see tokens, keys, algorithms and p11ca error codes, never CK_RV or object handles.
 *
 * Objects and lifetimes
 *   struct hsm_ctx    one per process; owns the loaded PKCS#11 modules. Create it after
 *                     any fork (never use PKCS#11 across fork), destroy it last.
 *   struct hsm_token  one configured token: slot lookup by RFC 7512 URI, a session pool,
 *                     login state, the PIN (in locked memory), fault recovery.
 *   struct hsm_key    a private key on a token, with its public key cached for
 *                     verification. Valid until hsm_key_free; must be freed before its token.
 *
 * Threads: every function on a token or key may be called from many threads at once;
 * each signing call holds one pooled session. hsm_ctx/token creation and destruction are
 * not concurrent with other calls on the same objects.
 *
 * Errors: every function returns a p11ca error code and, when `em` is not NULL, a sentence
 * that says what failed and what to do. PINs never appear in messages or logs.
 */
#ifndef P11CA_HSM_H
#define P11CA_HSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/err.h"
#include "common/log.h"
#include "common/secret.h"

struct hsm_ctx;	  /* opaque */
struct hsm_token; /* opaque */
struct hsm_key;	  /* opaque */

/* ---- key types and signature algorithms ------------------------------------------ */

enum hsm_key_type {
	HSM_KEY_UNSPECIFIED = 0,
	HSM_KEY_RSA2048,
	HSM_KEY_RSA3072,
	HSM_KEY_RSA4096,
	HSM_KEY_P256,
	HSM_KEY_P384,
	HSM_KEY_P521,
	HSM_KEY_ED25519,
};

enum hsm_sig_alg {
	HSM_SIG_UNSPECIFIED = 0,
	HSM_SIG_RSA_PKCS1_SHA256,
	HSM_SIG_RSA_PKCS1_SHA384,
	HSM_SIG_RSA_PKCS1_SHA512,
	HSM_SIG_RSA_PSS_SHA256, /* MGF1 with the same hash, salt length = hash length */
	HSM_SIG_RSA_PSS_SHA384,
	HSM_SIG_RSA_PSS_SHA512,
	HSM_SIG_ECDSA_SHA256,
	HSM_SIG_ECDSA_SHA384,
	HSM_SIG_ECDSA_SHA512,
	HSM_SIG_ED25519, /* pure Ed25519: the whole message, no pre-hash */
};

/* Names as the CLI and config use them: "rsa2048" … "p521", "ed25519"; NULL if invalid. */
const char *hsm_key_type_name(enum hsm_key_type type);
P11CA_MUST_CHECK enum p11ca_err hsm_key_type_parse(const char *name, enum hsm_key_type *out,
						   struct p11ca_errmsg *em);

/* Names: "rsa-pkcs1-sha256", "rsa-pss-sha384", "ecdsa-sha512", "ed25519"; NULL if invalid. */
const char *hsm_sig_alg_name(enum hsm_sig_alg alg);
P11CA_MUST_CHECK enum p11ca_err hsm_sig_alg_parse(const char *name, enum hsm_sig_alg *out,
						  struct p11ca_errmsg *em);

/* The algorithm a CA with this key signs with unless told otherwise: RSA → PKCS#1 v1.5
 * SHA-256, P-256 → ECDSA SHA-256, P-384 → SHA-384, P-521 → SHA-512, Ed25519 → Ed25519. */
enum hsm_sig_alg hsm_sig_alg_default(enum hsm_key_type type);

/* Whether `alg` can be used with a key of `type` (ECDSA with any hash on any curve). */
bool hsm_sig_alg_fits(enum hsm_sig_alg alg, enum hsm_key_type type);

/* Largest signature any supported key produces (RSA-4096: 512 bytes; DER ECDSA P-521: 139). */
#define HSM_SIG_MAX 512

/* ---- context and tokens ------------------------------------------------------------ */

/* `log` is borrowed and must outlive the context; NULL logs to stderr.
 * Errors: P11CA_E_NOMEM. */
P11CA_MUST_CHECK enum p11ca_err hsm_ctx_new(const struct p11ca_logger *log, struct hsm_ctx **out,
					    struct p11ca_errmsg *em);

/* Finalizes and unloads every module. All tokens must have been closed. NULL-safe. */
void hsm_ctx_free(struct hsm_ctx **ctx);

struct hsm_token_config {
	/* Absolute path of the PKCS#11 module. NULL: take `module-path` from the URI. */
	const char *module_path;
	/* RFC 7512 URI naming exactly one token: any of token=, serial=, slot-id=,
	 * manufacturer=, model=; optionally pin-source= (a file path or file: URI) or
	 * pin-value= (discouraged: the PIN then sits in a config file). Both together are
	 * refused. Object attributes (object=, id=, type=) are refused here. */
	const char *uri;
	/* Sessions in the pool (1..CONFIG_HSM_POOL_MAX_SESSIONS); 0 = the Kconfig default. */
	unsigned pool_size;
	/* How long a caller waits for a free session before P11CA_E_HSM_BUSY; 0 = default. */
	unsigned busy_timeout_ms;
};

/*
 * Load the module (once per path per context), initialise it with CKF_OS_LOCKING_OK,
 * and find the one token the URI names. Opens no session and does not log in.
 * Errors: P11CA_E_URI, P11CA_E_CONFIG (bad pool size, relative module path),
 * P11CA_E_HSM_MODULE, P11CA_E_HSM_TOKEN_NOT_FOUND (the text lists the tokens present),
 * P11CA_E_HSM_TOKEN_AMBIGUOUS (the text names the candidates), P11CA_E_NOMEM.
 */
P11CA_MUST_CHECK enum p11ca_err hsm_token_open(struct hsm_ctx *ctx,
					       const struct hsm_token_config *cfg,
					       struct hsm_token **out, struct p11ca_errmsg *em);

/* Close every session, wipe the PIN, free the token. All its keys must be freed. NULL-safe. */
void hsm_token_close(struct hsm_token **tok);

/*
 * Give the token its user PIN and log in. `pin` is copied into the token's own locked
 * memory (the caller still owns and wipes its copy); NULL takes the PIN from the URI's
 * pin-source (or pin-value). The PIN is kept so the token can log in again by itself
 * after a token reboot or module re-initialisation.
 *
 * Before C_Login the token's flags are read: a locked PIN or one on its final try is
 * refused without trying. A PIN the token rejected is wiped and never tried again: every
 * later operation fails fast with P11CA_E_HSM_PIN_INCORRECT until a new PIN is given.
 *
 * Errors: P11CA_E_PIN_SOURCE, P11CA_E_HSM_NO_PIN (no PIN given and no pin-source),
 * P11CA_E_HSM_PIN_INCORRECT, P11CA_E_HSM_PIN_FINAL_TRY, P11CA_E_HSM_PIN_LOCKED,
 * P11CA_E_HSM_UNAVAILABLE, P11CA_E_HSM.
 */
P11CA_MUST_CHECK enum p11ca_err
hsm_token_login(struct hsm_token *tok, const struct p11ca_secret *pin, struct p11ca_errmsg *em);

struct hsm_status {
	bool token_present;
	bool logged_in;
	bool pin_set;	  /* a PIN is held (it may still be wrong) */
	bool pin_refused; /* the held PIN was rejected and will not be retried */
	bool pin_count_low;
	bool pin_final_try;
	bool pin_locked;
	char label[33]; /* token label, NUL-terminated, trailing blanks removed */
	char serial[17];
	char manufacturer[33];
	char model[17];
	unsigned pool_size;
	unsigned sessions_open;
	unsigned sessions_busy;
	long key_count; /* private keys visible on the token; -1 when it could not be counted */
	uint64_t signatures;	 /* signatures returned to callers */
	uint64_t failures;	 /* operations that returned an error */
	uint64_t recoveries;	 /* recovery steps taken (reopen, re-login, re-initialise) */
	uint64_t bad_signatures; /* signatures withheld because they did not verify */
	enum p11ca_err last_error;
	char last_error_text[384];
};

/* Fill *st. Never fails because the token is absent or not logged in: that is what it
 * reports (token_present = false, key_count = -1). Errors: P11CA_E_INVALID_ARG only. */
P11CA_MUST_CHECK enum p11ca_err hsm_token_status(struct hsm_token *tok, struct hsm_status *st,
						 struct p11ca_errmsg *em);

/* ---- keys -------------------------------------------------------------------------- */

/*
 * Generate a key pair on the token: private key sensitive, non-extractable, private,
 * sign-only; public key with the same label and a random 16-byte CKA_ID drawn from the
 * token's RNG. `label` is 1..64 printable characters.
 * Errors: P11CA_E_INVALID_ARG, P11CA_E_HSM_KEY_EXISTS (an object already has that label,
 * or the drawn id), P11CA_E_HSM_MECHANISM (token cannot make this key type), plus the
 * session and login errors of hsm_token_login.
 */
P11CA_MUST_CHECK enum p11ca_err hsm_key_generate(struct hsm_token *tok, enum hsm_key_type type,
						 const char *label, struct hsm_key **out,
						 struct p11ca_errmsg *em);

/*
 * Find a private key by label and/or id (at least one; id may be NULL with id_len 0),
 * and its public key (a public-key object with the same id, or label when no id).
 * Errors: P11CA_E_INVALID_ARG, P11CA_E_HSM_KEY_NOT_FOUND, P11CA_E_HSM_KEY_AMBIGUOUS
 * (the text names every match by label and id), P11CA_E_HSM_MECHANISM (a key type p11ca
 * does not support), plus session and login errors.
 */
P11CA_MUST_CHECK enum p11ca_err hsm_key_find(struct hsm_token *tok, const char *label,
					     const uint8_t *id, size_t id_len, struct hsm_key **out,
					     struct p11ca_errmsg *em);

/* The same, with an RFC 7512 object URI ("pkcs11:object=ca1;id=%01%02"): object= and id=
 * are used, type= must be absent or "private"; token attributes must match this token. */
P11CA_MUST_CHECK enum p11ca_err hsm_key_find_uri(struct hsm_token *tok, const char *uri,
						 struct hsm_key **out, struct p11ca_errmsg *em);

/* NULL-safe; sets *key to NULL. The key object on the token is untouched. */
void hsm_key_free(struct hsm_key **key);

enum hsm_key_type hsm_key_type_of(const struct hsm_key *key);
const char *hsm_key_label(const struct hsm_key *key);
/* The CKA_ID; *len receives its length. Borrowed, valid while the key lives. */
const uint8_t *hsm_key_id(const struct hsm_key *key, size_t *len);
/* The public key, borrowed (valid while the key lives; EVP_PKEY_up_ref to keep it). */
EVP_PKEY *hsm_key_public(const struct hsm_key *key);

/* ---- signing ----------------------------------------------------------------------- */

/*
 * Sign `msg` with `key` in a pooled session and verify the result with the public key
 * before returning it. The signature is in X.509's encoding: RSA as is, ECDSA as a DER
 * Ecdsa-Sig-Value, Ed25519 as 64 raw bytes. RSA hashing happens on the token
 * (CKM_SHA*_RSA_PKCS[_PSS]); ECDSA hashes in software and signs with CKM_ECDSA; Ed25519
 * signs the whole message with CKM_EDDSA.
 *
 * Session loss, logout, stale handles, device removal and module faults are recovered
 * (reopen, re-login, re-find, then C_Finalize + C_Initialize) within
 * CONFIG_HSM_RECOVERY_ATTEMPTS steps; when they do not clear, the call fails at once with
 * P11CA_E_HSM_UNAVAILABLE rather than waiting.
 *
 * Errors: P11CA_E_INVALID_ARG (sig_cap too small: need HSM_SIG_MAX), P11CA_E_HSM_MECHANISM
 * (alg does not fit the key, or the token lacks it), P11CA_E_HSM_BUSY,
 * P11CA_E_HSM_BAD_SIGNATURE (withheld; counted in status), P11CA_E_HSM_UNAVAILABLE, the
 * login errors, P11CA_E_HSM.
 */
P11CA_MUST_CHECK enum p11ca_err hsm_sign(struct hsm_key *key, enum hsm_sig_alg alg,
					 const uint8_t *msg, size_t msg_len, uint8_t *sig,
					 size_t sig_cap, size_t *sig_len, struct p11ca_errmsg *em);

/* Verify a signature as hsm_sign produced it, in software, with the key's public key.
 * Exposed for tests and for the signer's pre-release check. Returns P11CA_OK when valid,
 * P11CA_E_HSM_BAD_SIGNATURE when not, P11CA_E_HSM_MECHANISM when alg does not fit. */
P11CA_MUST_CHECK enum p11ca_err hsm_verify(EVP_PKEY *pub, enum hsm_sig_alg alg, const uint8_t *msg,
					   size_t msg_len, const uint8_t *sig, size_t sig_len,
					   struct p11ca_errmsg *em);

#endif
