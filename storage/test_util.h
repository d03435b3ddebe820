/* Fixtures shared by the storage/ unit tests (cmocka). */
#ifndef P11CA_STORAGE_TEST_UTIL_H
#define P11CA_STORAGE_TEST_UTIL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/store.h"

/* A fresh directory under $TMPDIR (mkdtemp); the test runner removes $TMPDIR. */
void tu_tmpdir(char dir[PATH_MAX], const char *name);

/* store_open that must succeed; map 0 and pct 0 take the Kconfig defaults. */
struct store *tu_open(const char *dir, size_t map_size, unsigned soft_quota_percent);

/* Begin a transaction / commit one; both must succeed. */
struct store_txn *tu_txn(struct store *st, enum store_txn_mode mode);
void tu_commit(struct store_txn **txn);

/* A CA named `name` (subject DER made up), inserted in txn; returns its id. */
uint32_t tu_ca_add(struct store_txn *txn, const char *name, uint32_t parent_id);

/* A structurally valid Certificate around a TBS carrying `serial` (enough for
 * store_cert_put's checks, not a real certificate). `pad` varies the TBS. Returns the
 * DER length; tbs_sha256 receives the TBS hash. */
size_t tu_cert_make(const uint8_t serial[STORE_SERIAL_LEN], size_t pad, uint8_t *der, size_t cap,
		    uint8_t tbs_sha256[STORE_SHA256_LEN]);

/* The same with a serialNumber INTEGER of serial_len content octets (import tests). */
size_t tu_cert_make_int(const uint8_t *serial, size_t serial_len, size_t pad, uint8_t *der,
			size_t cap, uint8_t tbs_sha256[STORE_SHA256_LEN]);

/* Draw a serial, record the intent, store the certificate and audit it, in txn. */
void tu_issue(struct store_txn *txn, uint32_t ca_id, int64_t not_after,
	      uint8_t serial[STORE_SERIAL_LEN]);
void tu_issue_profile(struct store_txn *txn, uint32_t ca_id, int64_t not_after, const char *profile,
		      uint8_t serial[STORE_SERIAL_LEN]);

/* Intent only (audited), for orphan tests. */
void tu_intent(struct store_txn *txn, uint32_t ca_id, uint8_t serial[STORE_SERIAL_LEN]);

/* Audit with a fixed event name; must succeed. */
void tu_audit(struct store_txn *txn, const char *what);

/* Raw LMDB access to a closed database, bypassing storage/: how tests corrupt records. */
void tu_raw_put(const char *dir, const char *db, const void *key, size_t klen, const void *val,
		size_t vlen);
/* Copies the value into buf (cap bytes); returns its length, or -1 when absent. */
long tu_raw_get(const char *dir, const char *db, const void *key, size_t klen, void *buf,
		size_t cap);
void tu_raw_del(const char *dir, const char *db, const void *key, size_t klen);

/* A logger that keeps every line, to check what was logged. */
struct tu_log {
	struct p11ca_logger logger;
	char text[8192];
	size_t len;
};
void tu_log_init(struct tu_log *log);

#endif
