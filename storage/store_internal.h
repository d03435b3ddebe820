/*
 * storage/ internals shared by its .c files (and its tests). Not a public header: the
 * engine and the responder include storage/store.h only.
 */
#ifndef P11CA_STORAGE_STORE_INTERNAL_H
#define P11CA_STORAGE_STORE_INTERNAL_H

#include <limits.h>
#include <lmdb.h>
#include <pb.h>

#include "storage/records.pb.h"
#include "storage/store.h"

/* Every record type's current encoding version (field 1 of every message). */
#define STORE_RECORD_FORMAT 1

/* Named databases; the order is the order of store_db_names. */
enum store_db {
	STORE_DB_META,
	STORE_DB_CAS,
	STORE_DB_CERTS,
	STORE_DB_SERIALS,
	STORE_DB_INTENTS,
	STORE_DB_BY_EXPIRY,
	STORE_DB_REVOKED,
	STORE_DB_CRLS,
	STORE_DB_AUDIT,
	STORE_DB_COUNT,
};

extern const char *const store_db_names[STORE_DB_COUNT];

/* Key widths (bytes). */
#define STORE_KEY_CA	    4
#define STORE_KEY_CA_SERIAL (STORE_KEY_CA + STORE_SERIAL_LEN)
#define STORE_KEY_EXPIRY    (8 + STORE_KEY_CA_SERIAL)
#define STORE_KEY_CRL	    (STORE_KEY_CA + 4)
#define STORE_KEY_SEQ	    8

#define STORE_META_SCHEMA     "schema"
#define STORE_META_AUDIT_HEAD "audit_head"

struct store {
	MDB_env *env;
	MDB_dbi dbi[STORE_DB_COUNT];
	bool read_only;
	size_t soft_quota_percent;
	uint32_t page_size;
	uint32_t schema_version;
	const struct p11ca_logger *logger;
	char path[PATH_MAX];
};

struct store_txn {
	struct store *st;
	MDB_txn *mtxn;
	bool write;
	/* The first FULL/IO/… failure: LMDB requires such a transaction to be aborted, so
	 * every later call returns this and commit aborts. */
	enum p11ca_err dead;
	/* Records changed since the last audit append; commit refuses a non-zero count. */
	unsigned long unaudited;
};

/* ---- mdb.c: LMDB calls and their translation (the only place that knows them) ------ */

/* Translate an LMDB/errno code into the project's error space, with a message naming
 * `what` (e.g. "reading certs"). Codes after which LMDB needs the transaction aborted
 * mark txn (may be NULL) dead. MDB_SUCCESS gives P11CA_OK. */
P11CA_MUST_CHECK enum p11ca_err store_mdb_err(struct store_txn *txn, int rc, const char *what,
					      struct p11ca_errmsg *em);

/* The errno a failed mdb_txn_commit really means: LMDB says EIO for every short write,
 * so a full disk or a file size limit is recognised here (ENOSPC, EFBIG). */
int store_commit_errno(const struct store *st, int rc);

/* Check a transaction handle is usable (and writable when `write`). */
P11CA_MUST_CHECK enum p11ca_err store_txn_usable(struct store_txn *txn, bool write,
						 struct p11ca_errmsg *em);

P11CA_MUST_CHECK enum p11ca_err store_raw_get(struct store_txn *txn, enum store_db db,
					      const void *key, size_t klen, MDB_val *val,
					      struct p11ca_errmsg *em);
/* Puts and deletes count as changes that must be audited before commit. */
P11CA_MUST_CHECK enum p11ca_err store_raw_put(struct store_txn *txn, enum store_db db,
					      const void *key, size_t klen, const void *val,
					      size_t vlen, struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err store_raw_reserve(struct store_txn *txn, enum store_db db,
						  const void *key, size_t klen, size_t vlen,
						  void **val, struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err store_raw_del(struct store_txn *txn, enum store_db db,
					      const void *key, size_t klen,
					      struct p11ca_errmsg *em);

/* Cursors: `op` is an MDB_cursor_op; MDB_NOTFOUND gives P11CA_E_STORAGE_NOT_FOUND. A
 * cursor must be closed before its transaction ends (read transactions need it). */
P11CA_MUST_CHECK enum p11ca_err store_cursor_open(struct store_txn *txn, enum store_db db,
						  MDB_cursor **cur, struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err store_cursor_get(struct store_txn *txn, MDB_cursor *cur,
						 MDB_val *key, MDB_val *val, int op,
						 struct p11ca_errmsg *em);
void store_cursor_close(MDB_cursor **cur);

/* P11CA_E_STORAGE_FULL once the used pages pass the soft quota (issuance only). */
P11CA_MUST_CHECK enum p11ca_err store_quota_check(struct store_txn *txn, struct p11ca_errmsg *em);

/* Used at open, before struct store is complete. */
P11CA_MUST_CHECK enum p11ca_err store_txn_begin_internal(struct store *st, bool write,
							 struct store_txn **out,
							 struct p11ca_errmsg *em);

/* ---- schema.c ---------------------------------------------------------------------- */

/* Open every named database and bring the schema to `schema->version` (write) or check
 * it equals it (read_only). Sets st->dbi and st->schema_version. */
P11CA_MUST_CHECK enum p11ca_err
store_schema_open(struct store *st, const struct store_schema *schema, struct p11ca_errmsg *em);

/* ---- codec.c: records, keys, small helpers ----------------------------------------- */

/* Encode msg and store it under key (written in place in the map). */
P11CA_MUST_CHECK enum p11ca_err store_rec_put(struct store_txn *txn, enum store_db db,
					      const void *key, size_t klen,
					      const pb_msgdesc_t *fields, const void *msg,
					      struct p11ca_errmsg *em);
/* Decode a stored value; P11CA_E_STORAGE_CORRUPT when it does not decode. */
P11CA_MUST_CHECK enum p11ca_err store_rec_decode(const MDB_val *val, enum store_db db,
						 const pb_msgdesc_t *fields, void *msg,
						 struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err store_rec_get(struct store_txn *txn, enum store_db db,
					      const void *key, size_t klen,
					      const pb_msgdesc_t *fields, void *msg,
					      struct p11ca_errmsg *em);
/* A record's `format` must be STORE_RECORD_FORMAT: CORRUPT when 0 (missing), VERSION
 * when newer. */
P11CA_MUST_CHECK enum p11ca_err store_rec_format(uint32_t format, enum store_db db,
						 struct p11ca_errmsg *em);
/* CORRUPT naming the database; for records that decode but do not fit their key. */
P11CA_MUST_CHECK enum p11ca_err store_rec_corrupt(enum store_db db, const char *why,
						  struct p11ca_errmsg *em);

/* Copy a NUL-terminated string (NULL: "") into dst of dst_size bytes; INVALID_ARG naming
 * `what` when it does not fit (never truncated). */
P11CA_MUST_CHECK enum p11ca_err store_str_copy(char *dst, size_t dst_size, const char *src,
					       const char *what, struct p11ca_errmsg *em);

void store_be32_put(uint8_t *p, uint32_t v);
void store_be64_put(uint8_t *p, uint64_t v);
uint32_t store_be32_get(const uint8_t *p);
uint64_t store_be64_get(const uint8_t *p);
void store_key_ca_serial(uint8_t key[STORE_KEY_CA_SERIAL], uint32_t ca_id,
			 const uint8_t serial[STORE_SERIAL_LEN]);

/* Uppercase hex without colons, as `openssl x509 -serial` prints it. */
struct store_serial_hex {
	char s[2 * STORE_SERIAL_LEN + 1];
};
struct store_serial_hex store_serial_hex(const uint8_t serial[STORE_SERIAL_LEN]);

int64_t store_now(void);

/* ---- ca.c -------------------------------------------------------------------------- */

/* Read (NOT_FOUND with a message when absent) and check, or write, a raw CA record. */
P11CA_MUST_CHECK enum p11ca_err store_ca_rec_get(struct store_txn *txn, uint32_t id,
						 p11ca_storage_v1_CaRecord *rec,
						 struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err store_ca_rec_put(struct store_txn *txn,
						 const p11ca_storage_v1_CaRecord *rec,
						 struct p11ca_errmsg *em);

/* ---- serial.c ---------------------------------------------------------------------- */

/* store_serial_alloc with an injectable byte source (tests force collisions). */
P11CA_MUST_CHECK enum p11ca_err
store_serial_alloc_from(struct store_txn *txn, int (*rng)(void *arg, uint8_t *buf, size_t len),
			void *rng_arg, uint8_t serial[STORE_SERIAL_LEN], struct p11ca_errmsg *em);

/* Read and check a serial record (NOT_FOUND with a message when absent). */
P11CA_MUST_CHECK enum p11ca_err store_serial_rec_get(struct store_txn *txn,
						     const uint8_t serial[STORE_SERIAL_LEN],
						     p11ca_storage_v1_SerialRecord *rec,
						     struct p11ca_errmsg *em);

/* A serial of the form store_serial_alloc draws: first byte 0x01..0x7f. */
bool store_serial_valid(const uint8_t serial[STORE_SERIAL_LEN]);

/* ---- cert.c ------------------------------------------------------------------------ */

/* Read and check a certificate record (NOT_FOUND with a message when absent). */
P11CA_MUST_CHECK enum p11ca_err store_cert_rec_get(struct store_txn *txn, uint32_t ca_id,
						   const uint8_t serial[STORE_SERIAL_LEN],
						   p11ca_storage_v1_CertRecord *rec,
						   struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err store_revocation_check(const p11ca_storage_v1_RevokedRecord *r,
						       enum store_db db, struct p11ca_errmsg *em);

/* Check a decoded record against its key (format, ids, revocation, watchers). */
P11CA_MUST_CHECK enum p11ca_err store_cert_rec_check(const p11ca_storage_v1_CertRecord *r,
						     uint32_t ca_id,
						     const uint8_t serial[STORE_SERIAL_LEN],
						     struct p11ca_errmsg *em);
/* r has passed store_cert_rec_check. */
void store_cert_from_rec(const p11ca_storage_v1_CertRecord *r, struct store_cert *out);
void store_expiry_key(uint8_t key[STORE_KEY_EXPIRY], int64_t not_after, uint32_t ca_id,
		      const uint8_t serial[STORE_SERIAL_LEN]);
/* Write crec into certs and by_expiry, and srec (state ISSUED) into serials; drop the
 * intent if there is one. Every check has passed. */
P11CA_MUST_CHECK enum p11ca_err store_cert_write(struct store_txn *txn,
						 p11ca_storage_v1_SerialRecord *srec,
						 const p11ca_storage_v1_CertRecord *crec,
						 struct p11ca_errmsg *em);

/* DER helper: one TLV at the start of p[0..len) with a definite length in DER form. */
bool store_der_tlv(const uint8_t *p, size_t len, uint8_t *tag, const uint8_t **content,
		   size_t *content_len, size_t *total);

/* The parts of a Certificate storage checks; pointers into the caller's DER. */
struct store_der_cert {
	const uint8_t *tbs; /* the whole TBSCertificate TLV */
	size_t tbs_len;
	const uint8_t *serial; /* the serialNumber INTEGER's content octets (1 or more) */
	size_t serial_len;
};
/* der is exactly one SEQUENCE holding a TBS SEQUENCE with a serial INTEGER; `name` names
 * the certificate in the INVALID_ARG message. */
P11CA_MUST_CHECK enum p11ca_err store_der_cert_parse(const uint8_t *der, size_t der_len,
						     const char *name, struct store_der_cert *out,
						     struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err store_sha256(const uint8_t *p, size_t len,
					     uint8_t md[STORE_SHA256_LEN], struct p11ca_errmsg *em);

/* ---- watchers.c -------------------------------------------------------------------- */

/* Check watchers (count, addresses, duplicates) and copy them into rec. */
P11CA_MUST_CHECK enum p11ca_err store_watchers_to_rec(const struct store_watcher *w, size_t n,
						      p11ca_storage_v1_CertRecord *rec,
						      struct p11ca_errmsg *em);

#endif
