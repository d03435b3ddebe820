/*
 * Filtered, cursor-paged certificate listings (`p11ca cert list`).
 *
 * A page walks one index from a position and stops after `limit` matches or `scan_max`
 * examined entries, so a page costs the same at a million certificates as at ten: deep
 * pages seek by key instead of counting, and a rare filter gives short pages rather
 * than one unbounded scan. The position handed back is the last index key examined; the
 * next page seeks strictly past it, so what is inserted behind it is never returned and
 * what is inserted ahead of it is.
 *
 * The cursor is opaque to callers but comes back from the network: it is parsed as
 * untrusted bytes (exact length, known index, the query's CA, a check value over the
 * rest), and anything else is INVALID_ARG. A well-formed cursor only names a position in
 * an index the caller may list anyway, so nothing is gained by forging one.
 */
#include "storage/store_internal.h"

#include <stdlib.h>
#include <string.h>

/* magic ‖ index ‖ ca_id u32 BE ‖ index key ‖ first 4 bytes of SHA-256 of what precedes */
#define CURSOR_MAGIC 0xc1
#define CURSOR_HDR   6
#define CURSOR_CHECK 4
_Static_assert(CURSOR_HDR + STORE_KEY_EXPIRY + CURSOR_CHECK <= STORE_CURSOR_MAX,
	       "STORE_CURSOR_MAX holds the longest cursor");

enum query_index {
	QI_CERTS = 1,
	QI_REVOKED = 2,
	QI_EXPIRY = 3,
};

struct query {
	const struct store_cert_query *q;
	enum query_index index;
	enum store_db db;
	size_t klen;
	uint8_t start[STORE_KEY_EXPIRY]; /* the first key of the range */
};

static void query_plan(const struct store_cert_query *q, struct query *p)
{
	static const uint8_t zero[STORE_SERIAL_LEN];
	p->q = q;
	memset(p->start, 0, sizeof(p->start));
	if (q->order == STORE_ORDER_EXPIRY) {
		p->index = QI_EXPIRY;
		p->db = STORE_DB_BY_EXPIRY;
		p->klen = STORE_KEY_EXPIRY;
		store_expiry_key(p->start, q->not_after_from, 0, zero);
		return;
	}
	p->index = q->revoked_only ? QI_REVOKED : QI_CERTS;
	p->db = q->revoked_only ? STORE_DB_REVOKED : STORE_DB_CERTS;
	p->klen = STORE_KEY_CA_SERIAL;
	store_key_ca_serial(p->start, q->ca_id, zero);
}

static int64_t expiry_key_time(const uint8_t *key)
{
	return (int64_t)(store_be64_get(key) ^ (UINT64_C(1) << 63));
}

/* Whether `key` is still inside the range the query walks (false: the listing is done). */
static bool query_in_range(const struct query *p, const uint8_t *key)
{
	if (p->index == QI_EXPIRY)
		return p->q->not_after_until == 0 || expiry_key_time(key) < p->q->not_after_until;
	return p->q->ca_id == 0 || store_be32_get(key) == p->q->ca_id;
}

/* The filters the key alone decides; the rest need the record. */
static bool query_key_match(const struct query *p, const uint8_t *key)
{
	if (p->index != QI_EXPIRY)
		return true;
	if (expiry_key_time(key) < p->q->not_after_from)
		return false;
	return p->q->ca_id == 0 || store_be32_get(key + 8) == p->q->ca_id;
}

static bool query_rec_match(const struct store_cert_query *q, const p11ca_storage_v1_CertRecord *r)
{
	if (q->revoked_only && !r->has_revocation)
		return false;
	if (q->unrevoked_only && r->has_revocation)
		return false;
	if (r->not_after < q->not_after_from)
		return false;
	if (q->not_after_until != 0 && r->not_after >= q->not_after_until)
		return false;
	return q->profile == NULL || q->profile[0] == '\0' || strcmp(q->profile, r->profile) == 0;
}

static enum p11ca_err cursor_check_value(const uint8_t *c, size_t len, uint8_t out[CURSOR_CHECK],
					 struct p11ca_errmsg *em)
{
	uint8_t md[STORE_SHA256_LEN];
	P11CA_GUARD(store_sha256(c, len, md, em));
	memcpy(out, md, CURSOR_CHECK);
	return P11CA_OK;
}

static enum p11ca_err cursor_write(const struct query *p, const uint8_t *key,
				   uint8_t out[STORE_CURSOR_MAX], size_t *out_len,
				   struct p11ca_errmsg *em)
{
	out[0] = CURSOR_MAGIC;
	out[1] = (uint8_t)p->index;
	store_be32_put(out + 2, p->q->ca_id);
	memcpy(out + CURSOR_HDR, key, p->klen);
	P11CA_GUARD(cursor_check_value(out, CURSOR_HDR + p->klen, out + CURSOR_HDR + p->klen, em));
	*out_len = CURSOR_HDR + p->klen + CURSOR_CHECK;
	return P11CA_OK;
}

/* The index key inside a cursor an earlier page of this same query wrote. */
static enum p11ca_err cursor_read(const struct query *p, const uint8_t *c, size_t len,
				  const uint8_t **key, struct p11ca_errmsg *em)
{
	static const char bad[] = "the listing position (cursor) does not belong to this query: "
				  "start again without one, or pass the one the previous page "
				  "returned with the same filters";
	uint8_t check[CURSOR_CHECK];
	if (c == NULL || len != CURSOR_HDR + p->klen + CURSOR_CHECK || c[0] != CURSOR_MAGIC ||
	    c[1] != (uint8_t)p->index || store_be32_get(c + 2) != p->q->ca_id)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%s", bad);
	P11CA_GUARD(cursor_check_value(c, CURSOR_HDR + p->klen, check, em));
	if (memcmp(check, c + CURSOR_HDR + p->klen, CURSOR_CHECK) != 0 ||
	    !query_in_range(p, c + CURSOR_HDR))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%s", bad);
	*key = c + CURSOR_HDR;
	return P11CA_OK;
}

/* The certificate record behind an index entry: in the value for `certs`, else looked
 * up; an index entry without its certificate means the database is inconsistent. */
static enum p11ca_err query_rec(struct store_txn *txn, const struct query *p, const uint8_t *key,
				const MDB_val *val, p11ca_storage_v1_CertRecord *rec,
				struct p11ca_errmsg *em)
{
	const uint8_t *cs = p->index == QI_EXPIRY ? key + 8 : key;
	uint32_t ca_id = store_be32_get(cs);
	const uint8_t *serial = cs + STORE_KEY_CA;
	enum p11ca_err err;
	if (p->index == QI_CERTS) {
		err = store_rec_decode(val, STORE_DB_CERTS, p11ca_storage_v1_CertRecord_fields, rec,
				       em);
	} else {
		err = store_rec_get(txn, STORE_DB_CERTS, cs, STORE_KEY_CA_SERIAL,
				    p11ca_storage_v1_CertRecord_fields, rec, em);
		if (err == P11CA_E_STORAGE_NOT_FOUND)
			return store_rec_corrupt(p->db, "index entry without its certificate", em);
	}
	P11CA_GUARD(err);
	return store_cert_rec_check(rec, ca_id, serial, em);
}

struct page {
	size_t limit, scan_max;
	int (*fn)(void *arg, const struct store_cert *cert);
	void *arg;
	size_t matches;
	bool done; /* the range is exhausted */
	uint8_t last[STORE_KEY_EXPIRY];
	struct {
		p11ca_storage_v1_CertRecord rec;
		struct store_cert cert;
	} w;
};

/* Walk from the cursor's position (or the range's start) until the page is full. */
static enum p11ca_err page_walk(struct store_txn *txn, const struct query *p, MDB_cursor *cur,
				const uint8_t *from, struct page *pg, struct p11ca_errmsg *em)
{
	uint8_t seek[STORE_KEY_EXPIRY];
	memcpy(seek, from != NULL ? from : p->start, p->klen);
	MDB_val k = {.mv_size = p->klen, .mv_data = seek}, v;
	size_t examined = 0;
	bool stop = false;
	enum p11ca_err err = store_cursor_get(txn, cur, &k, &v, MDB_SET_RANGE, em);
	/* Strictly past the position: its own entry was already counted. */
	if (err == P11CA_OK && from != NULL && k.mv_size == p->klen &&
	    memcmp(k.mv_data, from, p->klen) == 0)
		err = store_cursor_get(txn, cur, &k, &v, MDB_NEXT, em);
	for (; err == P11CA_OK; err = store_cursor_get(txn, cur, &k, &v, MDB_NEXT, em)) {
		if (k.mv_size != p->klen)
			return store_rec_corrupt(p->db, "key of the wrong size", em);
		if (!query_in_range(p, k.mv_data))
			break;
		if (stop) /* peeked one past a full page: there is more */
			return P11CA_OK;
		memcpy(pg->last, k.mv_data, p->klen);
		examined++;
		if (query_key_match(p, k.mv_data)) {
			P11CA_GUARD(query_rec(txn, p, k.mv_data, &v, &pg->w.rec, em));
			if (query_rec_match(p->q, &pg->w.rec)) {
				store_cert_from_rec(&pg->w.rec, &pg->w.cert);
				pg->matches++;
				stop = pg->fn(pg->arg, &pg->w.cert) != 0;
			}
		}
		stop = stop || pg->matches == pg->limit ||
		       (pg->scan_max != 0 && examined >= pg->scan_max);
	}
	if (err != P11CA_OK && err != P11CA_E_STORAGE_NOT_FOUND)
		return err;
	pg->done = true;
	return P11CA_OK;
}

enum p11ca_err store_cert_query(struct store_txn *txn, const struct store_cert_query *q,
				const uint8_t *cursor, size_t cursor_len, size_t limit,
				size_t scan_max,
				int (*fn)(void *arg, const struct store_cert *cert), void *arg,
				uint8_t cursor_out[STORE_CURSOR_MAX], size_t *cursor_out_len,
				size_t *n, struct p11ca_errmsg *em)
{
	if (n != NULL)
		*n = 0;
	if (q == NULL || fn == NULL || cursor_out == NULL || cursor_out_len == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_cert_query: NULL argument");
	*cursor_out_len = 0;
	if (limit == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "a listing page holds at least one "
				  "certificate: give a limit of 1 or more");
	if (q->order != STORE_ORDER_SERIAL && q->order != STORE_ORDER_EXPIRY)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "unknown listing order %d",
				  (int)q->order);
	P11CA_GUARD(store_txn_usable(txn, false, em));

	struct query p;
	query_plan(q, &p);
	const uint8_t *from = NULL;
	if (cursor_len > 0)
		P11CA_GUARD(cursor_read(&p, cursor, cursor_len, &from, em));

	MDB_cursor *cur = NULL;
	struct page *pg = calloc(1, sizeof(*pg));
	enum p11ca_err err = P11CA_OK;
	if (pg == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "listing certificates");
		goto out;
	}
	*pg = (struct page){.limit = limit, .scan_max = scan_max, .fn = fn, .arg = arg};
	err = store_cursor_open(txn, p.db, &cur, em);
	if (err == P11CA_OK)
		err = page_walk(txn, &p, cur, from, pg, em);
	if (err == P11CA_OK && !pg->done)
		err = cursor_write(&p, pg->last, cursor_out, cursor_out_len, em);
	if (n != NULL)
		*n = pg->matches;
out:
	store_cursor_close(&cur);
	free(pg);
	return err;
}
