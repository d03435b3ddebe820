/*
 * storage/ — p11ca's metadata database on LMDB.
 *
 * One engine process owns the database and is its only writer; the responder opens it
 * read-only. Records are nanopb messages (storage/records.proto) under fixed-width
 * big-endian keys, so cursors walk them in numeric order. docs/storage.md describes the
 * layout, the durability rules, the soft quota, migrations and backups.
 *
 * Handles. `struct store` (an open environment) may be shared by the threads of one
 * process, never across fork(): open it after fork, in the process that uses it.
 * `struct store_txn` belongs to the thread that began it, and a thread holds at most one
 * transaction at a time (LMDB keeps read slots in thread-local storage).
 *
 * Transactions. Every operation takes an explicit transaction so the engine can group
 * several operations — several concurrent issuances — into one durable commit. A write
 * transaction that changed records must also append at least one audit record after its
 * last change, or store_txn_commit() refuses it: the audit record always lands in the
 * same transaction as the change it describes.
 *
 * Errors. Functions return P11CA_OK or a storage code and, when `em` is not NULL, a
 * sentence saying what failed and what to do. LMDB and errno codes never escape: they
 * are translated in storage/mdb.c. Unless a function says otherwise:
 *   P11CA_E_INVALID_ARG  NULL where a value is needed, a field over its STORE_*_MAX,
 *                        a write operation on a read transaction;
 *   P11CA_E_STORAGE_FULL map full or disk full;
 *   P11CA_E_STORAGE_IO   the medium failed;
 *   P11CA_E_STORAGE_CORRUPT a stored record that does not decode or does not fit its key.
 * When LMDB itself fails inside a write transaction (map full, I/O, …) the transaction
 * is dead: LMDB has discarded its changes, every later call on it returns the same
 * code, and store_txn_commit() aborts it and returns that code. Refusals decided here
 * (invalid argument, exists, not found, policy, soft quota, a corrupt record) leave the
 * transaction usable and unchanged by the call.
 *
 * Returned memory. Output structs are filled by copy and owned by the caller, except
 * where a pointer is documented as pointing into the map: such memory is read-only and
 * valid until the transaction ends.
 */
#ifndef P11CA_STORAGE_STORE_H
#define P11CA_STORAGE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/log.h"

/* The schema this binary writes. Databases of an older schema are migrated at open. */
#define STORE_SCHEMA_VERSION 1

/* Fixed sizes (bytes) and bounds. String maxima exclude the terminating NUL. A DER
 * certificate of 16 KiB holds a 16384-bit RSA key with room for extensions; real ones
 * are 1-3 KiB. */
#define STORE_SERIAL_LEN	20
#define STORE_SHA256_LEN	32
#define STORE_CA_NAME_MAX	64
#define STORE_SUBJECT_DER_MAX	2048
#define STORE_CERT_DER_MAX	16384
#define STORE_KEY_BACKEND_MAX	32
#define STORE_KEY_URI_MAX	1024
#define STORE_PROFILE_MAX	64
#define STORE_REQUESTER_MAX	256
#define STORE_AUDIT_EVENT_MAX	64
#define STORE_AUDIT_ACTOR_MAX	256
#define STORE_AUDIT_SUBJECT_MAX 256
#define STORE_AUDIT_DETAILS_MAX 1024
/* Opaque per-CA settings the engine keeps (an encoded p11ca.v1.CaSettings). */
#define STORE_CA_SETTINGS_MAX	24576
#define STORE_WATCHERS_MAX	8
#define STORE_EMAIL_MAX		254 /* RFC 5321 path minus the brackets */
/* An opaque store_cert_query position: index tag + the longest index key. */
#define STORE_CURSOR_MAX	48

struct store;
struct store_txn;

/* ---- environment ----------------------------------------------------------------- */

/* One schema step: from_version -> from_version + 1, run inside the open's write
 * transaction (all steps and the new version commit together, or none do). */
struct store_migration {
	uint32_t from_version;
	const char *what; /* one line for the log and the audit record */
	enum p11ca_err (*apply)(struct store_txn *txn, void *arg, struct p11ca_errmsg *em);
};

struct store_schema {
	uint32_t version;
	const struct store_migration *steps; /* one per version below `version` still supported */
	size_t n_steps;
	void *arg; /* passed to every step */
};

struct store_options {
	const char *path;		   /* directory; created (0700) when missing */
	size_t map_size;		   /* bytes, >= 64 KiB; 0: CONFIG_STORE_MAP_SIZE_MB MiB */
	unsigned soft_quota_percent;	   /* 1..100; 0: CONFIG_STORE_SOFT_QUOTA_PERCENT */
	bool read_only;			   /* the responder: no write transactions, no migration */
	const struct p11ca_logger *logger; /* NULL: stderr */
	const struct store_schema *schema; /* NULL: this binary's (tests inject others) */
};

/*
 * Open (creating when new) the database in opts->path. LMDB runs with its default flags:
 * every commit is synced before it returns, so a reply sent after a commit is never
 * lost. There is deliberately no way to pass MDB_NOSYNC, MDB_NOMETASYNC, MDB_MAPASYNC
 * (they trade committed certificates for speed; group commit gives the speed instead)
 * or MDB_WRITEMAP (a full disk then kills the process with SIGBUS instead of failing a
 * commit). Stale reader slots left by dead processes are cleared and logged. A fresh
 * database gets the current schema and a first audit record; an older one is migrated.
 *
 * On success *out owns the environment; release it with store_close().
 * Errors: P11CA_E_STORAGE_VERSION (database newer than this binary, missing migration
 * step, failed migration, or a read-only open of an old or uninitialised database),
 * P11CA_E_STORAGE_IO (directory or files unusable), P11CA_E_STORAGE_CORRUPT.
 */
P11CA_MUST_CHECK enum p11ca_err store_open(const struct store_options *opts, struct store **out,
					   struct p11ca_errmsg *em);

/* Close the environment and set *st to NULL. NULL-safe. Every transaction must have
 * ended. */
void store_close(struct store **st);

/* Clear reader slots of dead processes (also done at open). A dead reader's slot pins
 * old pages, so the map fills up; LMDB resets the table itself only when no process has
 * the database open, so call this when the supervisor reaps a responder while the
 * engine runs. *cleared (may be NULL) receives the count. */
P11CA_MUST_CHECK enum p11ca_err store_readers_check(struct store *st, int *cleared,
						    struct p11ca_errmsg *em);

struct store_usage {
	size_t map_size;   /* bytes */
	size_t used;	   /* bytes up to the highest page ever used (a high-water mark) */
	size_t soft_quota; /* bytes; issuance is refused above it */
	uint32_t page_size;
	uint32_t schema_version;
};

P11CA_MUST_CHECK enum p11ca_err store_usage_get(struct store *st, struct store_usage *out,
						struct p11ca_errmsg *em);

/* Hot, consistent, compacted copy (MDB_CP_COMPACT) into directory `path` (created when
 * missing; it must not hold a database). Runs beside writers. Restore by pointing the
 * configuration at the copy; store_audit_verify() on it is the verification pass.
 * Takes its own read transaction: the calling thread must not hold one. */
P11CA_MUST_CHECK enum p11ca_err store_backup(struct store *st, const char *path,
					     struct p11ca_errmsg *em);

/* ---- transactions ------------------------------------------------------------------ */

enum store_txn_mode {
	STORE_TXN_READ,
	STORE_TXN_WRITE, /* one at a time per environment: a second waits for the first */
};

/* Begin a transaction. *out is owned by the caller until store_txn_commit() or
 * store_txn_abort(). Errors: P11CA_E_INVALID_ARG (write on a read-only store),
 * P11CA_E_STORAGE (no reader slot free: raise CONFIG_STORE_MAX_READERS). */
P11CA_MUST_CHECK enum p11ca_err store_txn_begin(struct store *st, enum store_txn_mode mode,
						struct store_txn **out, struct p11ca_errmsg *em);

/* Commit and free *txn (always: *txn is NULL afterwards, whatever the result). Returns
 * only after the data is on stable storage. A failed commit leaves the database as it
 * was before the transaction, and readable.
 * Errors: the error that killed the transaction earlier; P11CA_E_INTERNAL (changes
 * without an audit record after them: a bug in the caller, nothing was written);
 * P11CA_E_STORAGE_FULL (disk full), P11CA_E_STORAGE_IO (EIO on write or fsync). */
P11CA_MUST_CHECK enum p11ca_err store_txn_commit(struct store_txn **txn, struct p11ca_errmsg *em);

/* Abandon (write) or end (read) the transaction and set *txn to NULL. NULL-safe. */
void store_txn_abort(struct store_txn **txn);

/* ---- CAs: cas[id] ------------------------------------------------------------------ */

enum store_ca_state {
	STORE_CA_PENDING = 1, /* key exists, certificate not stored yet */
	STORE_CA_ACTIVE = 2,
	STORE_CA_DISABLED = 3, /* no new issuance */
	STORE_CA_RETIRED = 4,
};

struct store_ca {
	uint32_t id; /* 1, 2, … assigned by store_ca_put, never reused */
	char name[STORE_CA_NAME_MAX + 1];
	uint8_t subject_der[STORE_SUBJECT_DER_MAX];
	size_t subject_der_len;
	uint8_t cert_der[STORE_CERT_DER_MAX];
	size_t cert_der_len; /* 0 while PENDING */
	char key_backend[STORE_KEY_BACKEND_MAX + 1];
	char key_uri[STORE_KEY_URI_MAX + 1]; /* opaque here: a PKCS#11 URI or label */
	uint32_t parent_id;		     /* 0 for a root CA */
	enum store_ca_state state;
	int64_t created;     /* set by store_ca_put on insertion */
	uint64_t crl_number; /* read-only here: see store_crl_number_next() */
	/* Opaque to storage: the engine's encoded settings; may be empty. Written by
	 * store_ca_put like every other field. */
	uint8_t settings[STORE_CA_SETTINGS_MAX];
	size_t settings_len;
};

/*
 * Insert (ca->id == 0: a new id is assigned and written back, with ca->created) or
 * replace (ca->id != 0) a CA. Names are unique and non-empty; subject_der is required.
 * A new CA counts as issuance for the soft quota. Write transaction.
 * Errors: P11CA_E_STORAGE_EXISTS (name taken), P11CA_E_STORAGE_NOT_FOUND (no CA with
 * ca->id, or parent_id names no CA), P11CA_E_STORAGE_FULL (also: soft quota reached).
 */
P11CA_MUST_CHECK enum p11ca_err store_ca_put(struct store_txn *txn, struct store_ca *ca,
					     struct p11ca_errmsg *em);

/* Read a CA by id or by exact name into *out. Errors: P11CA_E_STORAGE_NOT_FOUND. */
P11CA_MUST_CHECK enum p11ca_err store_ca_get(struct store_txn *txn, uint32_t id,
					     struct store_ca *out, struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err store_ca_get_by_name(struct store_txn *txn, const char *name,
						     struct store_ca *out, struct p11ca_errmsg *em);

/* Call fn for every CA in id order. `ca` is valid during the call only. fn returns 0 to
 * go on, non-zero to stop (store_ca_list then returns P11CA_OK). */
P11CA_MUST_CHECK enum p11ca_err store_ca_list(struct store_txn *txn,
					      int (*fn)(void *arg, const struct store_ca *ca),
					      void *arg, struct p11ca_errmsg *em);

/* ---- serials and the intent log: serials[serial] ---------------------------------- */

enum store_serial_state {
	STORE_SERIAL_INTENT = 1, /* burned; certificate not stored yet */
	STORE_SERIAL_ISSUED = 2,
	STORE_SERIAL_ORPHAN = 3, /* intent without certificate at a restart: never reused */
};

struct store_serial_info {
	uint8_t serial[STORE_SERIAL_LEN];
	enum store_serial_state state;
	uint32_t ca_id;
	uint8_t tbs_sha256[STORE_SHA256_LEN];
	char requester[STORE_REQUESTER_MAX + 1];
	int64_t created, updated;
};

/*
 * Draw a fresh serial: 20 bytes from RAND_bytes, first byte in 0x01..0x7f (positive,
 * < 2^159, DER length always 20), close to 159 random bits, not in `serials`. It is only reserved
 * by store_intent_put() in the same write transaction. Write transaction (the single
 * writer makes the uniqueness check final). Errors: P11CA_E_INTERNAL (RNG failure or
 * repeated collisions: the RNG is broken).
 */
P11CA_MUST_CHECK enum p11ca_err store_serial_alloc(struct store_txn *txn,
						   uint8_t serial[STORE_SERIAL_LEN],
						   struct p11ca_errmsg *em);

/* Read the state of a serial. Errors: P11CA_E_STORAGE_NOT_FOUND. */
P11CA_MUST_CHECK enum p11ca_err store_serial_get(struct store_txn *txn,
						 const uint8_t serial[STORE_SERIAL_LEN],
						 struct store_serial_info *out,
						 struct p11ca_errmsg *em);

/*
 * Record the intent to issue `serial` for CA ca_id over a TBSCertificate whose SHA-256 is
 * tbs_sha256, before asking for the signature. From the commit on, the serial is burned.
 * requester (may be NULL) says who asked. Counts as issuance for the soft quota.
 * Errors: P11CA_E_INVALID_ARG (serial not of store_serial_alloc's form),
 * P11CA_E_STORAGE_EXISTS (serial already used, whatever its state),
 * P11CA_E_STORAGE_NOT_FOUND (no such CA), P11CA_E_STORAGE_FULL (also: soft quota).
 */
P11CA_MUST_CHECK enum p11ca_err store_intent_put(struct store_txn *txn,
						 const uint8_t serial[STORE_SERIAL_LEN],
						 uint32_t ca_id,
						 const uint8_t tbs_sha256[STORE_SHA256_LEN],
						 const char *requester, struct p11ca_errmsg *em);

/* At start, before any new intent: turn every INTENT into ORPHAN. *count (may be NULL)
 * receives how many; audit them in the same transaction. Write transaction. */
P11CA_MUST_CHECK enum p11ca_err store_orphans_mark(struct store_txn *txn, size_t *count,
						   struct p11ca_errmsg *em);

/* An issuance that will never complete (the signer failed or timed out): turn this one
 * INTENT into ORPHAN now rather than at the next start, so the serial is reported as what
 * it is. Audit it in the same transaction. Errors: P11CA_E_STORAGE_NOT_FOUND,
 * P11CA_E_INVALID_ARG (not an intent), storage errors. Write transaction. */
P11CA_MUST_CHECK enum p11ca_err store_intent_abandon(struct store_txn *txn,
						     const uint8_t serial[STORE_SERIAL_LEN],
						     struct p11ca_errmsg *em);

/* Call fn for every ORPHAN serial, in serial order; fn as in store_ca_list. */
P11CA_MUST_CHECK enum p11ca_err store_orphans_list(struct store_txn *txn,
						   int (*fn)(void *arg,
							     const struct store_serial_info *info),
						   void *arg, struct p11ca_errmsg *em);

/* ---- certificates: certs[ca ‖ serial], by_expiry, revoked ------------------------- */

struct store_revocation {
	uint32_t reason;	 /* RFC 5280 CRLReason: 0-6, 9, 10 */
	int64_t revoked_at;	 /* seconds since the epoch */
	int64_t invalidity_date; /* 0: none */
};

struct store_watcher {
	char email[STORE_EMAIL_MAX + 1]; /* non-empty; compared case-insensitively */
	/* The smallest notification threshold (days before expiry) already sent to this
	 * watcher for this certificate; 0: none sent yet. */
	uint32_t notified_days;
};

struct store_cert {
	uint32_t ca_id;
	uint8_t serial[STORE_SERIAL_LEN];
	uint8_t der[STORE_CERT_DER_MAX];
	size_t der_len;
	int64_t not_after;
	char profile[STORE_PROFILE_MAX + 1];
	char requester[STORE_REQUESTER_MAX + 1]; /* copied from the intent */
	int64_t issued_at;
	bool revoked;
	struct store_revocation revocation; /* meaningful when revoked */
	struct store_watcher watchers[STORE_WATCHERS_MAX];
	size_t n_watchers;
	bool imported; /* recorded with store_cert_import, not issued here */
};

/*
 * Store the signed certificate for an INTENT serial of CA ca_id and mark the intent
 * ISSUED. The DER must be one Certificate whose TBSCertificate carries `serial` and hashes
 * to the intent's tbs_sha256: storage refuses to record anything but what was intended.
 * Not subject to the soft quota (the issuance was accepted at store_intent_put).
 * Errors: P11CA_E_STORAGE_NOT_FOUND (no intent for serial), P11CA_E_STORAGE_EXISTS
 * (already issued), P11CA_E_POLICY (the serial is an orphan), P11CA_E_INVALID_ARG (other
 * CA than the intent's, DER malformed, serial or TBS hash mismatch, over 16 KiB).
 */
P11CA_MUST_CHECK enum p11ca_err store_cert_put(struct store_txn *txn, uint32_t ca_id,
					       const uint8_t serial[STORE_SERIAL_LEN],
					       const uint8_t *der, size_t der_len,
					       int64_t not_after, const char *profile,
					       struct p11ca_errmsg *em);

/* Read a certificate by CA and serial, or by serial alone. Errors:
 * P11CA_E_STORAGE_NOT_FOUND (also for a serial that is an intent or an orphan: see
 * store_serial_get). */
P11CA_MUST_CHECK enum p11ca_err store_cert_get(struct store_txn *txn, uint32_t ca_id,
					       const uint8_t serial[STORE_SERIAL_LEN],
					       struct store_cert *out, struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err store_cert_get_by_serial(struct store_txn *txn,
							 const uint8_t serial[STORE_SERIAL_LEN],
							 struct store_cert *out,
							 struct p11ca_errmsg *em);

/*
 * Page through the certificates of CA ca_id in serial order: those with a serial
 * strictly greater than `after` (NULL: from the start), at most `limit` (0: no limit).
 * Paging is stable: insertions never repeat or skip a certificate already behind the
 * cursor; pass the last serial seen as the next `after`. fn as in store_ca_list; `cert`
 * is valid during the call only. *n (may be NULL) receives how many were passed to fn.
 */
P11CA_MUST_CHECK enum p11ca_err store_cert_list(struct store_txn *txn, uint32_t ca_id,
						const uint8_t *after, size_t limit,
						int (*fn)(void *arg, const struct store_cert *cert),
						void *arg, size_t *n, struct p11ca_errmsg *em);

/*
 * Revoke: set the certificate's revocation and add it to the `revoked` index.
 * Errors: P11CA_E_STORAGE_NOT_FOUND, P11CA_E_STORAGE_EXISTS (already revoked),
 * P11CA_E_INVALID_ARG (reason not a CRLReason usable on a full CRL).
 */
P11CA_MUST_CHECK enum p11ca_err store_cert_revoke(struct store_txn *txn, uint32_t ca_id,
						  const uint8_t serial[STORE_SERIAL_LEN],
						  const struct store_revocation *rev,
						  struct p11ca_errmsg *em);

/* Stream the revoked certificates of a CA in serial order (for CRLs). fn as in
 * store_ca_list; its arguments are valid during the call only. */
P11CA_MUST_CHECK enum p11ca_err store_revoked_list(struct store_txn *txn, uint32_t ca_id,
						   int (*fn)(void *arg,
							     const uint8_t serial[STORE_SERIAL_LEN],
							     const struct store_revocation *rev),
						   void *arg, struct p11ca_errmsg *em);

/*
 * Replace the watchers of a stored certificate (n <= STORE_WATCHERS_MAX; each email
 * non-empty, at most STORE_EMAIL_MAX bytes, no two equal ignoring case). notified_days is
 * stored as given. Errors: P11CA_E_STORAGE_NOT_FOUND, P11CA_E_INVALID_ARG.
 */
P11CA_MUST_CHECK enum p11ca_err store_cert_watchers_set(struct store_txn *txn, uint32_t ca_id,
							const uint8_t serial[STORE_SERIAL_LEN],
							const struct store_watcher *watchers,
							size_t n, struct p11ca_errmsg *em);

/*
 * Record a certificate issued elsewhere by CA ca_id: its serial (the DER's, left-padded
 * with zeros to STORE_SERIAL_LEN; positive, at most 20 octets) becomes ISSUED directly,
 * with no intent, and the certificate is stored with imported = true and the given
 * watchers (n may be 0). Counts as issuance for the soft quota. The caller has verified
 * that the CA signed it.
 * Errors: P11CA_E_STORAGE_EXISTS (the serial is known in any state),
 * P11CA_E_STORAGE_NOT_FOUND (no such CA), P11CA_E_INVALID_ARG (DER malformed, serial
 * mismatch, over 16 KiB), P11CA_E_STORAGE_FULL.
 */
P11CA_MUST_CHECK enum p11ca_err store_cert_import(struct store_txn *txn, uint32_t ca_id,
						  const uint8_t serial[STORE_SERIAL_LEN],
						  const uint8_t *der, size_t der_len,
						  int64_t not_after, const char *profile,
						  const char *requester,
						  const struct store_watcher *watchers, size_t n,
						  struct p11ca_errmsg *em);

enum store_cert_order {
	STORE_ORDER_SERIAL = 0, /* CA id, then serial (certs or revoked index) */
	STORE_ORDER_EXPIRY = 1, /* notAfter, then CA id, then serial (by_expiry index) */
};

/* A filtered listing. Every set filter must hold (AND). */
struct store_cert_query {
	uint32_t ca_id; /* 0: every CA */
	enum store_cert_order order;
	bool revoked_only;
	bool unrevoked_only;
	/* not_after_from <= notAfter < not_after_until; until 0: no upper bound. With
	 * STORE_ORDER_EXPIRY the index range is walked directly. */
	int64_t not_after_from, not_after_until;
	const char *profile; /* NULL or "": any */
};

/*
 * One page of a filtered listing, in q->order. cursor (cursor_len 0: from the start) is
 * what an earlier call wrote to cursor_out. Stops after `limit` matches (1..) or after
 * examining `scan_max` index entries (0: no bound), whichever comes first, and writes
 * the position to resume from into cursor_out[STORE_CURSOR_MAX] (*cursor_out_len = 0
 * when the index is exhausted). Uses the index that fits: revoked_only with
 * STORE_ORDER_SERIAL walks `revoked`, STORE_ORDER_EXPIRY walks `by_expiry`, else `certs`
 * (from the CA's first key when ca_id is set). Stable: certificates inserted behind the
 * cursor are never returned, ones ahead are. A cursor is tied to q->order and q->ca_id:
 * another combination is P11CA_E_INVALID_ARG. fn as in store_ca_list (cert valid during
 * the call only; returning non-zero stops at that certificate, which counts as returned).
 * *n (may be NULL) receives the number of matches passed to fn.
 * Errors: P11CA_E_INVALID_ARG (limit 0, a cursor this query did not make).
 */
P11CA_MUST_CHECK enum p11ca_err
store_cert_query(struct store_txn *txn, const struct store_cert_query *q, const uint8_t *cursor,
		 size_t cursor_len, size_t limit, size_t scan_max,
		 int (*fn)(void *arg, const struct store_cert *cert), void *arg,
		 uint8_t cursor_out[STORE_CURSOR_MAX], size_t *cursor_out_len, size_t *n,
		 struct p11ca_errmsg *em);

/* Certificates with from <= notAfter < until, in notAfter order (all CAs). fn as in
 * store_ca_list. */
P11CA_MUST_CHECK enum p11ca_err
store_expiry_list(struct store_txn *txn, int64_t from, int64_t until,
		  int (*fn)(void *arg, int64_t not_after, uint32_t ca_id,
			    const uint8_t serial[STORE_SERIAL_LEN]),
		  void *arg, struct p11ca_errmsg *em);

/* ---- CRLs: crls[ca ‖ scope] -------------------------------------------------------- */

#define STORE_CRL_SCOPE_FULL 0u /* the CA's complete CRL; others are the engine's to define */

struct store_crl {
	uint64_t number;
	int64_t this_update, next_update;
	const uint8_t *der; /* points into the map: valid until the transaction ends */
	size_t der_len;
};

/*
 * Allocate the next CRL number of a CA: strictly increasing, shared by every scope (RFC
 * 5280 §5.2.3: complete and delta CRLs share one sequence). Commit it (and its audit
 * record) before signing; the number is burned even if the CRL is never stored.
 * Errors: P11CA_E_STORAGE_NOT_FOUND (no such CA).
 */
P11CA_MUST_CHECK enum p11ca_err store_crl_number_next(struct store_txn *txn, uint32_t ca_id,
						      uint64_t *number, struct p11ca_errmsg *em);

/* Store the latest CRL of (ca, scope), replacing the previous one.
 * Errors: P11CA_E_STORAGE_NOT_FOUND (no such CA), P11CA_E_INVALID_ARG (number not
 * allocated by store_crl_number_next, not above the stored CRL's, DER not one SEQUENCE,
 * or over CONFIG_STORE_CRL_MAX_KB). */
P11CA_MUST_CHECK enum p11ca_err store_crl_put(struct store_txn *txn, uint32_t ca_id, uint32_t scope,
					      uint64_t number, int64_t this_update,
					      int64_t next_update, const uint8_t *der,
					      size_t der_len, struct p11ca_errmsg *em);

/* Read the latest CRL of (ca, scope); out->der points into the map. Errors:
 * P11CA_E_STORAGE_NOT_FOUND. */
P11CA_MUST_CHECK enum p11ca_err store_crl_get(struct store_txn *txn, uint32_t ca_id, uint32_t scope,
					      struct store_crl *out, struct p11ca_errmsg *em);

/* ---- audit chain: audit[seq] --------------------------------------------------------- */

struct store_audit_entry {
	uint64_t seq; /* 1, 2, … without gaps */
	int64_t time;
	char event[STORE_AUDIT_EVENT_MAX + 1];
	char actor[STORE_AUDIT_ACTOR_MAX + 1];
	char subject[STORE_AUDIT_SUBJECT_MAX + 1];
	char details[STORE_AUDIT_DETAILS_MAX + 1];
	uint8_t prev_hash[STORE_SHA256_LEN];
	uint8_t hash[STORE_SHA256_LEN];
};

/*
 * Append an audit record describing the changes made so far in this write transaction:
 * hash = SHA-256(previous hash ‖ seq as u64 BE ‖ encoded record). event is a short
 * non-empty name ("cert.issue"); actor, subject and details may be NULL (empty). Strings
 * longer than their STORE_AUDIT_*_MAX are refused, not truncated: an audit record says
 * exactly what happened. *seq (may be NULL) receives the record's sequence number.
 * Not subject to the soft quota.
 */
P11CA_MUST_CHECK enum p11ca_err store_audit_append(struct store_txn *txn, const char *event,
						   const char *actor, const char *subject,
						   const char *details, uint64_t *seq,
						   struct p11ca_errmsg *em);

/* The last record's sequence number and hash (0 and zeros when empty): publish it
 * elsewhere (logs, another system) to anchor the chain. */
P11CA_MUST_CHECK enum p11ca_err store_audit_head(struct store_txn *txn, uint64_t *seq,
						 uint8_t hash[STORE_SHA256_LEN],
						 struct p11ca_errmsg *em);

/* Call fn for each record with seq >= from, in order; fn as in store_ca_list. */
P11CA_MUST_CHECK enum p11ca_err store_audit_list(struct store_txn *txn, uint64_t from,
						 int (*fn)(void *arg,
							   const struct store_audit_entry *entry),
						 void *arg, struct p11ca_errmsg *em);

/*
 * Walk the whole chain and check every link: sequence numbers 1..head without gaps,
 * each hash recomputed over the stored bytes, each record's prev_hash and seq, and the
 * head record. On success *first_bad_seq is 0. Errors: P11CA_E_STORAGE_CORRUPT with
 * *first_bad_seq set to the first sequence number that is missing, edited or out of
 * place (edits, deletions, reordering and truncation of the tail are all caught).
 */
P11CA_MUST_CHECK enum p11ca_err store_audit_verify(struct store_txn *txn, uint64_t *first_bad_seq,
						   struct p11ca_errmsg *em);

/* ---- engine additions (appliance/engine): serial prefix lookup, storage/lookup.c ---- */

/*
 * Find the serials (any state: issued, intent or orphan) whose hex form starts with the
 * first `nibbles` (1..40) hex digits of prefix_bytes, most significant nibble first (an odd
 * last digit is the high nibble of its byte; the low nibble is ignored). At most `cap`
 * matches are copied to out[] in serial order (out may be NULL when cap is 0); *n receives
 * how many matched, counted up to cap + 1 only, which is enough to tell a unique prefix
 * from an ambiguous one. Read or write transaction.
 * Errors: P11CA_E_INVALID_ARG (NULL, nibbles out of range), the cursor's storage errors.
 */
P11CA_MUST_CHECK enum p11ca_err
store_serial_find_prefix(struct store_txn *txn, const uint8_t *prefix_bytes, size_t nibbles,
			 uint8_t (*out)[STORE_SERIAL_LEN], size_t cap, size_t *n,
			 struct p11ca_errmsg *em);

#endif
