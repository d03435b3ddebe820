/* Fixtures shared by the storage/ unit tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <lmdb.h>
#include <openssl/evp.h>

#include "storage/test_util.h"

void tu_tmpdir(char dir[PATH_MAX], const char *name)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, PATH_MAX, "%s/%s.XXXXXX", tmp != NULL ? tmp : "/tmp", name);
	assert_non_null(mkdtemp(dir));
}

struct store *tu_open(const char *dir, size_t map_size, unsigned soft_quota_percent)
{
	struct store_options o = {
		.path = dir,
		.map_size = map_size,
		.soft_quota_percent = soft_quota_percent,
	};
	struct store *st = NULL;
	struct p11ca_errmsg em = {0};
	enum p11ca_err err = store_open(&o, &st, &em);
	if (err != P11CA_OK)
		fail_msg("store_open(%s): %s", dir, p11ca_errmsg_text(&em));
	return st;
}

struct store_txn *tu_txn(struct store *st, enum store_txn_mode mode)
{
	struct store_txn *txn = NULL;
	assert_int_equal(store_txn_begin(st, mode, &txn, NULL), P11CA_OK);
	return txn;
}

void tu_commit(struct store_txn **txn)
{
	struct p11ca_errmsg em = {0};
	if (store_txn_commit(txn, &em) != P11CA_OK)
		fail_msg("commit: %s", p11ca_errmsg_text(&em));
	assert_null(*txn);
}

void tu_audit(struct store_txn *txn, const char *what)
{
	struct p11ca_errmsg em = {0};
	if (store_audit_append(txn, "test", "tester", what, NULL, NULL, &em) != P11CA_OK)
		fail_msg("audit: %s", p11ca_errmsg_text(&em));
}

uint32_t tu_ca_add(struct store_txn *txn, const char *name, uint32_t parent_id)
{
	struct store_ca *ca = calloc(1, sizeof(*ca));
	assert_non_null(ca);
	snprintf(ca->name, sizeof(ca->name), "%s", name);
	int n = snprintf((char *)ca->subject_der, sizeof(ca->subject_der), "0\x10 CN=%s", name);
	ca->subject_der_len = (size_t)n;
	snprintf(ca->key_backend, sizeof(ca->key_backend), "pkcs11");
	snprintf(ca->key_uri, sizeof(ca->key_uri), "pkcs11:token=t;object=%s", name);
	ca->parent_id = parent_id;
	ca->state = STORE_CA_ACTIVE;
	struct p11ca_errmsg em = {0};
	if (store_ca_put(txn, ca, &em) != P11CA_OK)
		fail_msg("store_ca_put: %s", p11ca_errmsg_text(&em));
	uint32_t id = ca->id;
	assert_true(id != 0);
	free(ca);
	return id;
}

/* DER header for a TLV of `len` content bytes; returns the header size. */
static size_t der_hdr(uint8_t *p, uint8_t tag, size_t len)
{
	p[0] = tag;
	if (len < 0x80) {
		p[1] = (uint8_t)len;
		return 2;
	}
	if (len < 0x100) {
		p[1] = 0x81;
		p[2] = (uint8_t)len;
		return 3;
	}
	p[1] = 0x82;
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
	return 4;
}

size_t tu_cert_make(const uint8_t serial[STORE_SERIAL_LEN], size_t pad, uint8_t *der, size_t cap,
		    uint8_t tbs_sha256[STORE_SHA256_LEN])
{
	return tu_cert_make_int(serial, STORE_SERIAL_LEN, pad, der, cap, tbs_sha256);
}

size_t tu_cert_make_int(const uint8_t *serial, size_t serial_len, size_t pad, uint8_t *der,
			size_t cap, uint8_t tbs_sha256[STORE_SHA256_LEN])
{
	uint8_t tbs_body[600];
	size_t n = 0;
	assert_true(pad <= 500);
	memcpy(tbs_body, "\xa0\x03\x02\x01\x02", 5); /* [0] version v3 */
	n = 5;
	assert_true(serial_len <= 40);
	n += der_hdr(tbs_body + n, 0x02, serial_len);
	memcpy(tbs_body + n, serial, serial_len);
	n += serial_len;
	n += der_hdr(tbs_body + n, 0x04, pad);
	memset(tbs_body + n, 0x5a, pad);
	n += pad;

	uint8_t tbs[700];
	size_t tbs_len = der_hdr(tbs, 0x30, n);
	memcpy(tbs + tbs_len, tbs_body, n);
	tbs_len += n;
	unsigned md_len = 0;
	assert_int_equal(EVP_Digest(tbs, tbs_len, tbs_sha256, &md_len, EVP_sha256(), NULL), 1);

	static const uint8_t tail[] = {0x30, 0x03, 0x06, 0x01, 0x00, 0x03, 0x01, 0x00};
	size_t body = tbs_len + sizeof(tail);
	assert_true(body + 4 <= cap);
	size_t len = der_hdr(der, 0x30, body);
	memcpy(der + len, tbs, tbs_len);
	len += tbs_len;
	memcpy(der + len, tail, sizeof(tail));
	return len + sizeof(tail);
}

void tu_intent(struct store_txn *txn, uint32_t ca_id, uint8_t serial[STORE_SERIAL_LEN])
{
	uint8_t der[1024], tbs_sha256[STORE_SHA256_LEN];
	struct p11ca_errmsg em = {0};
	assert_int_equal(store_serial_alloc(txn, serial, &em), P11CA_OK);
	(void)tu_cert_make(serial, 16, der, sizeof(der), tbs_sha256);
	if (store_intent_put(txn, serial, ca_id, tbs_sha256, "tester", &em) != P11CA_OK)
		fail_msg("store_intent_put: %s", p11ca_errmsg_text(&em));
	tu_audit(txn, "intent");
}

void tu_issue(struct store_txn *txn, uint32_t ca_id, int64_t not_after,
	      uint8_t serial[STORE_SERIAL_LEN])
{
	tu_issue_profile(txn, ca_id, not_after, "server", serial);
}

void tu_issue_profile(struct store_txn *txn, uint32_t ca_id, int64_t not_after, const char *profile,
		      uint8_t serial[STORE_SERIAL_LEN])
{
	uint8_t der[1024], tbs_sha256[STORE_SHA256_LEN];
	struct p11ca_errmsg em = {0};
	tu_intent(txn, ca_id, serial);
	size_t len = tu_cert_make(serial, 16, der, sizeof(der), tbs_sha256);
	if (store_cert_put(txn, ca_id, serial, der, len, not_after, profile, &em) != P11CA_OK)
		fail_msg("store_cert_put: %s", p11ca_errmsg_text(&em));
	tu_audit(txn, "issue");
}

/* ---- raw LMDB ------------------------------------------------------------------------ */

struct raw {
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
};

static void raw_open(struct raw *r, const char *dir, const char *db, bool write)
{
	assert_int_equal(mdb_env_create(&r->env), 0);
	assert_int_equal(mdb_env_set_maxdbs(r->env, 16), 0);
	assert_int_equal(mdb_env_open(r->env, dir, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(r->env, NULL, write ? 0 : MDB_RDONLY, &r->txn), 0);
	assert_int_equal(mdb_dbi_open(r->txn, db, 0, &r->dbi), 0);
}

static void raw_close(struct raw *r)
{
	assert_int_equal(mdb_txn_commit(r->txn), 0);
	mdb_env_close(r->env);
}

void tu_raw_put(const char *dir, const char *db, const void *key, size_t klen, const void *val,
		size_t vlen)
{
	struct raw r;
	raw_open(&r, dir, db, true);
	MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
	assert_int_equal(mdb_put(r.txn, r.dbi, &k, &v, 0), 0);
	raw_close(&r);
}

long tu_raw_get(const char *dir, const char *db, const void *key, size_t klen, void *buf,
		size_t cap)
{
	struct raw r;
	raw_open(&r, dir, db, false);
	MDB_val k = {klen, (void *)key}, v;
	long len = -1;
	if (mdb_get(r.txn, r.dbi, &k, &v) == 0) {
		assert_true(v.mv_size <= cap);
		memcpy(buf, v.mv_data, v.mv_size);
		len = (long)v.mv_size;
	}
	raw_close(&r);
	return len;
}

void tu_raw_del(const char *dir, const char *db, const void *key, size_t klen)
{
	struct raw r;
	raw_open(&r, dir, db, true);
	MDB_val k = {klen, (void *)key};
	assert_int_equal(mdb_del(r.txn, r.dbi, &k, NULL), 0);
	raw_close(&r);
}

static void log_keep(void *arg, int priority, const char *line)
{
	(void)priority;
	struct tu_log *log = arg;
	int n = snprintf(log->text + log->len, sizeof(log->text) - log->len, "%s\n", line);
	if (n > 0 && (size_t)n < sizeof(log->text) - log->len)
		log->len += (size_t)n;
}

void tu_log_init(struct tu_log *log)
{
	memset(log, 0, sizeof(*log));
	log->logger.fn = log_keep;
	log->logger.arg = log;
	log->logger.max_priority = LOG_DEBUG;
}
