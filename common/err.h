/*
 * p11ca's single error space.
 *
 * Every module returns an enum p11ca_err. Foreign codes (PKCS#11 CK_RV, LMDB, errno,
 * OpenSSL) are translated once, at the module boundary that calls the foreign API, and
 * never escape it. Codes are grouped by category in blocks of 100 so callers can branch
 * on the category (p11ca_err_category) without knowing every code.
 *
 * A code says *what kind* of failure; a struct p11ca_errmsg carries the sentence a user
 * sees: what failed and what to do about it. Functions that can fail take an optional
 * `struct p11ca_errmsg *em` (NULL means "the caller only wants the code").
 */
#ifndef P11CA_COMMON_ERR_H
#define P11CA_COMMON_ERR_H

#include <stddef.h>

/* Every function returning enum p11ca_err is declared with this: ignoring a failure is a
 * compile error under -Werror. */
#define P11CA_MUST_CHECK __attribute__((warn_unused_result))

enum p11ca_err {
	P11CA_OK = 0,

	/* usage: the caller asked for something malformed or impossible */
	P11CA_E_USAGE = 100,
	P11CA_E_INVALID_ARG,
	P11CA_E_URI, /* a PKCS#11 URI that does not parse or is not usable as given */

	/* configuration: the operator must change a file or setting */
	P11CA_E_CONFIG = 200,
	P11CA_E_PIN_SOURCE, /* PIN file missing, unreadable, unsafe mode, too long */

	/* policy: refused on purpose */
	P11CA_E_POLICY = 300,
	P11CA_E_PERMISSION,

	/* HSM: PKCS#11 module and token */
	P11CA_E_HSM = 400,	     /* a PKCS#11 failure with no better code */
	P11CA_E_HSM_MODULE,	     /* module cannot be loaded or initialised */
	P11CA_E_HSM_TOKEN_NOT_FOUND, /* no token matches the configured URI */
	P11CA_E_HSM_TOKEN_AMBIGUOUS, /* several tokens match the configured URI */
	P11CA_E_HSM_UNAVAILABLE,     /* device removed / token absent; recovery failed */
	P11CA_E_HSM_BUSY,	     /* no free session within the configured wait */
	P11CA_E_HSM_NO_PIN,	     /* no PIN supplied yet: activate the token */
	P11CA_E_HSM_PIN_INCORRECT,   /* the token refused the PIN; it will not be retried */
	P11CA_E_HSM_PIN_FINAL_TRY,   /* one more wrong PIN locks the token: refused to try */
	P11CA_E_HSM_PIN_LOCKED,	     /* the token's user PIN is locked */
	P11CA_E_HSM_KEY_NOT_FOUND,
	P11CA_E_HSM_KEY_AMBIGUOUS, /* a lookup matched more than one key */
	P11CA_E_HSM_KEY_EXISTS,	   /* generation refused: label or id already in use */
	P11CA_E_HSM_MECHANISM,	   /* token lacks the mechanism, or algorithm/key mismatch */
	P11CA_E_HSM_BAD_SIGNATURE, /* the token's signature did not verify: withheld */

	/* storage: the metadata database */
	P11CA_E_STORAGE = 500,
	P11CA_E_STORAGE_FULL,	   /* map full, disk full, or soft quota reached */
	P11CA_E_STORAGE_IO,	   /* EIO or another failure of the medium */
	P11CA_E_STORAGE_CORRUPT,   /* a record that does not decode or a broken chain */
	P11CA_E_STORAGE_NOT_FOUND, /* no such record */
	P11CA_E_STORAGE_EXISTS,	   /* a record with that key already exists */
	P11CA_E_STORAGE_VERSION,   /* schema newer than this binary, or migration failed */

	/* protocol: bytes from a peer */
	P11CA_E_PROTO = 600,
	P11CA_E_PROTO_TOO_LARGE, /* a frame or field over its limit */
	P11CA_E_PROTO_TRUNCATED, /* the peer stopped in the middle of a frame */
	P11CA_E_PROTO_DECODE,	 /* bytes that are not the expected message */

	/* I/O: files, sockets, processes */
	P11CA_E_IO = 700,
	P11CA_E_TIMEOUT,

	/* internal: a bug or resource exhaustion in p11ca itself */
	P11CA_E_INTERNAL = 900,
	P11CA_E_NOMEM,
};

enum p11ca_err_category {
	P11CA_CAT_OK,
	P11CA_CAT_USAGE,
	P11CA_CAT_CONFIG,
	P11CA_CAT_POLICY,
	P11CA_CAT_HSM,
	P11CA_CAT_STORAGE,
	P11CA_CAT_PROTO,
	P11CA_CAT_IO,
	P11CA_CAT_INTERNAL,
};

/* A short, static, never-NULL description of a code ("HSM busy"). Unknown codes give
 * "unknown error". */
const char *p11ca_strerror(enum p11ca_err err);

/* The stable identifier of a code ("P11CA_E_HSM_BUSY"), for logs, JSON and tests. */
const char *p11ca_err_name(enum p11ca_err err);

enum p11ca_err_category p11ca_err_category(enum p11ca_err err);

/* The sysexits.h code a command-line tool exits with for `err` (0 for P11CA_OK):
 * 64 usage, 65 bad input data, 69 unavailable, 70 internal, 74 I/O, 75 temporary failure
 * (busy, timeout), 77 permission denied (PINs, roles, policy), 78 configuration. */
int p11ca_err_sysexit(enum p11ca_err err);

/* What a user reads: the failing code plus one sentence that says what failed and what to
 * do. The text never holds secrets: callers format labels, ids and paths, never PINs. */
struct p11ca_errmsg {
	enum p11ca_err code;
	char text[384];
};

/*
 * Record a failure in *em (if em is not NULL) and return `code`, so a call site reads
 *     return p11ca_fail(em, P11CA_E_HSM_BUSY, "all %u sessions busy for %u ms", n, ms);
 * The first failure recorded sticks: a later p11ca_fail on the same em (an outer layer
 * adding less precise context) keeps the original text but returns its own code.
 * Use p11ca_errmsg_clear() before reusing an em for an unrelated operation.
 */
enum p11ca_err p11ca_fail(struct p11ca_errmsg *em, enum p11ca_err code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

void p11ca_errmsg_clear(struct p11ca_errmsg *em);

/* The message for display: em->text when set, otherwise p11ca_strerror(em->code). */
const char *p11ca_errmsg_text(const struct p11ca_errmsg *em);

/* Early return on failure; never used where cleanup is owed (use `goto out` there). */
#define P11CA_GUARD(expr)                                                                          \
	do {                                                                                       \
		enum p11ca_err guard_err_ = (expr);                                                \
		if (guard_err_ != P11CA_OK)                                                        \
			return guard_err_;                                                         \
	} while (0)

#endif
