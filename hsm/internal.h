/*
 * Internal to hsm/: the structures behind the opaque handles and the helpers the hsm/ sources
 * files share. Nothing outside hsm/ (except hsm's own tests) includes this file, so
 * PKCS#11 types never leak into the rest of p11ca.
 */
#ifndef P11CA_HSM_INTERNAL_H
#define P11CA_HSM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "common/kconfig.h"
#include "hsm/hsm.h"
#include "hsm/pin.h"

/* Last, as PITFALLS.md says: it #defines short common words. */
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

/* ---- ckr.c: the one place CK_RV is translated -------------------------------------- */

/* What a failed call means for the session pool. */
enum hsm_fault {
	HSM_FAULT_NONE,	   /* CKR_OK */
	HSM_FAULT_FATAL,   /* the request itself is wrong: report, no recovery */
	HSM_FAULT_SESSION, /* this session is gone: reopen it */
	HSM_FAULT_LOGIN,   /* the token forgot the login: log in again */
	HSM_FAULT_OBJECT,  /* a cached object handle is stale: find the key again */
	HSM_FAULT_DEVICE,  /* token or module lost: drop all sessions, re-initialise */
};

const char *hsm_ckr_name(CK_RV rv);
enum hsm_fault hsm_ckr_fault(CK_RV rv);
/* The p11ca code for a CK_RV that reaches a caller. */
enum p11ca_err hsm_ckr_err(CK_RV rv);

/* ---- module.c: loaded modules, shared by the tokens of one context ----------------- */

struct hsm_module {
	struct hsm_module *next;
	char *path;
	CK_FUNCTION_LIST *fn;
	unsigned refs;
	bool initialized;
	/* Bumped by every C_Finalize + C_Initialize: sessions and handles from an older
	 * generation are meaningless and are dropped by their tokens. */
	atomic_uint generation;
	/* Operations hold it shared; re-initialisation holds it exclusive, so C_Finalize never
	 * runs under another thread's call into the module. */
	pthread_rwlock_t lock;
	const struct p11ca_logger *log;
};

struct hsm_ctx {
	const struct p11ca_logger *log;
	pthread_mutex_t lock;
	struct hsm_module *modules;
};

P11CA_MUST_CHECK enum p11ca_err hsm_module_get(struct hsm_ctx *ctx, const char *path,
					       struct hsm_module **out, struct p11ca_errmsg *em);
void hsm_module_put(struct hsm_ctx *ctx, struct hsm_module *mod);
/* C_Finalize + C_Initialize, unless another thread did it since `seen_generation`.
 * Waits at most `timeout_ms` for in-flight calls to leave the module. */
P11CA_MUST_CHECK enum p11ca_err hsm_module_reinit(struct hsm_module *mod, unsigned seen_generation,
						  unsigned timeout_ms, struct p11ca_errmsg *em);

/* ---- uri.c: RFC 7512 through p11-kit ------------------------------------------------ */

enum hsm_uri_kind { HSM_URI_TOKEN, HSM_URI_OBJECT };

/* Parse and check a URI for its purpose: unknown attributes, pin-value together with
 * pin-source, object attributes in a token URI, or a non-private type= in an object URI
 * are refused. The caller frees *out with p11_kit_uri_free. */
P11CA_MUST_CHECK enum p11ca_err hsm_uri_parse(const char *text, enum hsm_uri_kind kind,
					      P11KitUri **out, struct p11ca_errmsg *em);
/* CK_UTF8CHAR[n] blank-padded → NUL-terminated C string with trailing blanks removed. */
void hsm_padded_to_cstr(const CK_UTF8CHAR *src, size_t n, char *dst, size_t dst_size);
/* bytes → lowercase hex, truncated to fit dst. */
void hsm_hex(const uint8_t *b, size_t n, char *dst, size_t dst_size);

/* ---- token.c: sessions, login, recovery ------------------------------------------- */

struct hsm_session {
	CK_SESSION_HANDLE handle;
	/* Written by the thread holding the session (busy) and read by status: atomic. */
	atomic_bool open;
	bool busy;	     /* under tok->lock */
	bool capped;	     /* under tok->lock: the token refused to open this many sessions */
	unsigned generation; /* module generation the handle belongs to */
	unsigned epoch;	     /* tok->drop_epoch when opened; older means "dropped" */
	/* Object handles of private keys, valid only in this session's generation;
	 * indexed by key slot, tagged with the key's uid so a reused slot is never confused. */
	struct {
		uint64_t key_uid;
		CK_OBJECT_HANDLE handle;
	} cache[CONFIG_HSM_MAX_KEYS];
};

struct hsm_token {
	struct hsm_ctx *ctx;
	struct hsm_module *mod;
	P11KitUri *uri;
	char *uri_text;	   /* for messages; never holds a pin-value (refused or stripped) */
	char name[48];	   /* the token label, for messages */
	atomic_ulong slot; /* a CK_SLOT_ID; written under login_lock, read anywhere */
	atomic_uint slot_generation; /* module generation `slot` was resolved in */
	atomic_uint drop_epoch;	     /* bumped to invalidate every session at once */
	unsigned busy_timeout_ms;

	pthread_mutex_t lock; /* pool, counters, last error, key table */
	pthread_cond_t freed;
	unsigned pool_size;
	struct hsm_session *sessions;

	pthread_mutex_t
		login_lock; /* serialises C_Login so one bad PIN costs one try, C_OpenSession, and
			       the close of a dropped session (hsm/token.c) */
	struct p11ca_secret *pin; /* under login_lock */
	/* Why the token refused the PIN (P11CA_OK: not refused); while set, nothing calls
	 * C_Login. Atomic, like pin_set, so status never waits for a hung login. */
	atomic_int pin_refusal;
	atomic_bool pin_set;
	/* Salted digest of the last PIN the token refused: the same PIN handed in again (100
	 * concurrent activations, a script retrying) is refused without a try. */
	uint8_t refused_salt[16];
	uint8_t refused_digest[32]; /* under login_lock */
	bool has_refused_digest;    /* under login_lock */
	atomic_bool logged_in;
	unsigned cap_generation; /* under lock: module generation the session caps belong to */

	struct hsm_key *keys[CONFIG_HSM_MAX_KEYS];
	uint64_t next_key_uid;

	uint64_t signatures, failures, recoveries, bad_signatures;
	enum p11ca_err last_error;
	char last_error_text[384];
};

struct hsm_key {
	struct hsm_token *tok;
	unsigned slot_index; /* in tok->keys and every session's cache */
	uint64_t uid;
	enum hsm_key_type type;
	char label[65];
	uint8_t id[64];
	size_t id_len;
	EVP_PKEY *pub;
};

/*
 * Run `op` in a pooled, logged-in session, recovering from session, login, object and
 * device faults as hsm_sign documents. `op` returns the CK_RV of its last PKCS#11 call;
 * it may record a more precise failure in em itself (then that text wins). `what`
 * names the operation in messages ("sign with key 'ca1'").
 */
typedef CK_RV (*hsm_session_op)(struct hsm_token *tok, struct hsm_session *s, void *arg,
				struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err hsm_token_run(struct hsm_token *tok, const char *what,
					      hsm_session_op op, void *arg,
					      struct p11ca_errmsg *em);

/* The cached handle of `key` in session s, found again when absent. A key that is no
 * longer on the token gives CKR_OBJECT_HANDLE_INVALID and P11CA_E_HSM_KEY_NOT_FOUND in em. */
CK_RV hsm_session_key_handle(struct hsm_token *tok, struct hsm_session *s,
			     const struct hsm_key *key, CK_OBJECT_HANDLE *out,
			     struct p11ca_errmsg *em);

/* Record a failure for status and return err unchanged. */
enum p11ca_err hsm_token_note_failure(struct hsm_token *tok, enum p11ca_err err,
				      const struct p11ca_errmsg *em);

/* ---- key.c / pubkey.c ----------------------------------------------------------- */

/* Find all objects of `cls` matching label and/or id in session s; at most `max` handles
 * are returned, *count receives how many matched (capped at max). */
CK_RV hsm_find_objects(struct hsm_token *tok, struct hsm_session *s, CK_OBJECT_CLASS cls,
		       const char *label, const uint8_t *id, size_t id_len,
		       CK_OBJECT_HANDLE *handles, CK_ULONG max, CK_ULONG *count);

/* Build the public key of a public-key object. Key types p11ca does not support give
 * P11CA_E_HSM_MECHANISM through em and CKR_KEY_TYPE_INCONSISTENT. */
CK_RV hsm_pubkey_read(struct hsm_token *tok, struct hsm_session *s, CK_OBJECT_HANDLE obj,
		      EVP_PKEY **pub, enum hsm_key_type *type, struct p11ca_errmsg *em);

/* DER OID of the EC curve for CKA_EC_PARAMS; NULL for non-EC types. */
const uint8_t *hsm_ec_params(enum hsm_key_type type, size_t *len);

#endif
