/*
 * Serials and the intent log.
 *
 * serials[serial] -> SerialRecord holds every serial ever burned (INTENT, ISSUED or
 * ORPHAN), which makes uniqueness global across CAs and permanent. intents[serial] -> ""
 * indexes the serials that have no certificate (INTENT and ORPHAN), so the scan at start
 * costs the number of in-flight issuances, not the size of the database.
 */
#include "storage/store_internal.h"

#include <openssl/rand.h>
#include <string.h>

/* Each draw collides with probability n / 2^158: reaching this many means the RNG is
 * broken, and issuing must stop rather than loop. */
#define SERIAL_MAX_DRAWS 16

bool store_serial_valid(const uint8_t serial[STORE_SERIAL_LEN])
{
	return serial[0] != 0 && serial[0] < 0x80;
}

static int serial_rand(void *arg, uint8_t *buf, size_t len)
{
	(void)arg;
	return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

enum p11ca_err store_serial_alloc_from(struct store_txn *txn,
				       int (*rng)(void *arg, uint8_t *buf, size_t len),
				       void *rng_arg, uint8_t serial[STORE_SERIAL_LEN],
				       struct p11ca_errmsg *em)
{
	if (serial == NULL || rng == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_serial_alloc: no output");
	P11CA_GUARD(store_txn_usable(txn, true, em));
	for (int i = 0; i < SERIAL_MAX_DRAWS; i++) {
		uint8_t s[STORE_SERIAL_LEN];
		if (rng(rng_arg, s, sizeof(s)) != 0)
			return p11ca_fail(em, P11CA_E_INTERNAL,
					  "the random generator failed to give a serial");
		/* Top bit clear: positive and < 2^159. A zero first byte is redrawn rather
		 * than forced to 1, so the DER INTEGER is always 20 bytes and the other 158
		 * bits stay uniform. */
		s[0] &= 0x7f;
		if (s[0] == 0)
			continue;
		MDB_val v;
		enum p11ca_err err = store_raw_get(txn, STORE_DB_SERIALS, s, sizeof(s), &v, em);
		if (err == P11CA_E_STORAGE_NOT_FOUND) {
			memcpy(serial, s, sizeof(s));
			return P11CA_OK;
		}
		P11CA_GUARD(err);
		p11ca_logf(txn->st->logger, LOG_WARNING, "storage: serial %s drawn twice",
			   store_serial_hex(s).s);
	}
	return p11ca_fail(em, P11CA_E_INTERNAL,
			  "no fresh serial after %d draws: the random generator is broken",
			  SERIAL_MAX_DRAWS);
}

enum p11ca_err store_serial_alloc(struct store_txn *txn, uint8_t serial[STORE_SERIAL_LEN],
				  struct p11ca_errmsg *em)
{
	return store_serial_alloc_from(txn, serial_rand, NULL, serial, em);
}

static enum p11ca_err serial_rec_get(struct store_txn *txn, const uint8_t serial[STORE_SERIAL_LEN],
				     p11ca_storage_v1_SerialRecord *rec, struct p11ca_errmsg *em)
{
	enum p11ca_err err = store_rec_get(txn, STORE_DB_SERIALS, serial, STORE_SERIAL_LEN,
					   p11ca_storage_v1_SerialRecord_fields, rec, em);
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		return p11ca_fail(em, err, "no certificate or intent has serial %s",
				  store_serial_hex(serial).s);
	P11CA_GUARD(err);
	P11CA_GUARD(store_rec_format(rec->format, STORE_DB_SERIALS, em));
	if (rec->state < p11ca_storage_v1_SerialState_SERIAL_STATE_INTENT ||
	    rec->state > p11ca_storage_v1_SerialState_SERIAL_STATE_ORPHAN || rec->ca_id == 0)
		return store_rec_corrupt(STORE_DB_SERIALS, "invalid state or CA", em);
	return P11CA_OK;
}

static void serial_info_from_rec(const uint8_t serial[STORE_SERIAL_LEN],
				 const p11ca_storage_v1_SerialRecord *rec,
				 struct store_serial_info *out)
{
	memcpy(out->serial, serial, STORE_SERIAL_LEN);
	out->state = (enum store_serial_state)rec->state;
	out->ca_id = rec->ca_id;
	memcpy(out->tbs_sha256, rec->tbs_sha256, sizeof(out->tbs_sha256));
	memcpy(out->requester, rec->requester, sizeof(out->requester));
	out->created = rec->created;
	out->updated = rec->updated;
}

enum p11ca_err store_serial_rec_get(struct store_txn *txn, const uint8_t serial[STORE_SERIAL_LEN],
				    p11ca_storage_v1_SerialRecord *rec, struct p11ca_errmsg *em)
{
	return serial_rec_get(txn, serial, rec, em);
}

enum p11ca_err store_serial_get(struct store_txn *txn, const uint8_t serial[STORE_SERIAL_LEN],
				struct store_serial_info *out, struct p11ca_errmsg *em)
{
	if (serial == NULL || out == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_serial_get: NULL argument");
	P11CA_GUARD(store_txn_usable(txn, false, em));
	p11ca_storage_v1_SerialRecord rec;
	P11CA_GUARD(serial_rec_get(txn, serial, &rec, em));
	serial_info_from_rec(serial, &rec, out);
	return P11CA_OK;
}

enum p11ca_err store_intent_put(struct store_txn *txn, const uint8_t serial[STORE_SERIAL_LEN],
				uint32_t ca_id, const uint8_t tbs_sha256[STORE_SHA256_LEN],
				const char *requester, struct p11ca_errmsg *em)
{
	if (serial == NULL || tbs_sha256 == NULL || ca_id == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_intent_put: missing argument");
	if (!store_serial_valid(serial))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "serial %s is not of the form store_serial_alloc draws",
				  store_serial_hex(serial).s);
	p11ca_storage_v1_SerialRecord rec = {
		.format = STORE_RECORD_FORMAT,
		.state = p11ca_storage_v1_SerialState_SERIAL_STATE_INTENT,
		.ca_id = ca_id,
		.created = store_now(),
	};
	rec.updated = rec.created;
	memcpy(rec.tbs_sha256, tbs_sha256, sizeof(rec.tbs_sha256));
	P11CA_GUARD(
		store_str_copy(rec.requester, sizeof(rec.requester), requester, "requester", em));
	P11CA_GUARD(store_txn_usable(txn, true, em));
	P11CA_GUARD(store_quota_check(txn, em));

	MDB_val v;
	enum p11ca_err err = store_raw_get(txn, STORE_DB_SERIALS, serial, STORE_SERIAL_LEN, &v, em);
	if (err == P11CA_OK)
		return p11ca_fail(em, P11CA_E_STORAGE_EXISTS,
				  "serial %s was already used: draw another",
				  store_serial_hex(serial).s);
	if (err != P11CA_E_STORAGE_NOT_FOUND)
		return err;
	uint8_t ca_key[STORE_KEY_CA];
	store_be32_put(ca_key, ca_id);
	err = store_raw_get(txn, STORE_DB_CAS, ca_key, sizeof(ca_key), &v, em);
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		return p11ca_fail(em, err, "no CA with id %u", ca_id);
	P11CA_GUARD(err);

	P11CA_GUARD(store_rec_put(txn, STORE_DB_SERIALS, serial, STORE_SERIAL_LEN,
				  p11ca_storage_v1_SerialRecord_fields, &rec, em));
	return store_raw_put(txn, STORE_DB_INTENTS, serial, STORE_SERIAL_LEN, "", 0, em);
}

/* Walk the intents index; visit gets each serial's record and returns non-zero to stop. */
static enum p11ca_err intents_walk(struct store_txn *txn,
				   enum p11ca_err (*visit)(void *arg, struct store_txn *txn,
							   const uint8_t *serial,
							   p11ca_storage_v1_SerialRecord *rec,
							   bool *stop, struct p11ca_errmsg *em),
				   void *arg, struct p11ca_errmsg *em)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	bool stop = false;
	P11CA_GUARD(store_cursor_open(txn, STORE_DB_INTENTS, &cur, em));
	enum p11ca_err err;
	for (err = store_cursor_get(txn, cur, &k, &v, MDB_FIRST, em); err == P11CA_OK;
	     err = store_cursor_get(txn, cur, &k, &v, MDB_NEXT, em)) {
		p11ca_storage_v1_SerialRecord rec;
		if (k.mv_size != STORE_SERIAL_LEN)
			err = store_rec_corrupt(STORE_DB_INTENTS, "key of the wrong size", em);
		if (err == P11CA_OK)
			err = serial_rec_get(txn, k.mv_data, &rec, em);
		if (err == P11CA_OK)
			err = visit(arg, txn, k.mv_data, &rec, &stop, em);
		if (err != P11CA_OK || stop)
			break;
	}
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		err = P11CA_OK;
	store_cursor_close(&cur);
	return err;
}

static enum p11ca_err orphan_mark_visit(void *arg, struct store_txn *txn, const uint8_t *serial,
					p11ca_storage_v1_SerialRecord *rec, bool *stop,
					struct p11ca_errmsg *em)
{
	(void)stop;
	if (rec->state != p11ca_storage_v1_SerialState_SERIAL_STATE_INTENT)
		return P11CA_OK;
	rec->state = p11ca_storage_v1_SerialState_SERIAL_STATE_ORPHAN;
	rec->updated = store_now();
	P11CA_GUARD(store_rec_put(txn, STORE_DB_SERIALS, serial, STORE_SERIAL_LEN,
				  p11ca_storage_v1_SerialRecord_fields, rec, em));
	p11ca_logf(txn->st->logger, LOG_WARNING,
		   "storage: serial %s of CA %u is an orphan (intent without certificate)",
		   store_serial_hex(serial).s, rec->ca_id);
	(*(size_t *)arg)++;
	return P11CA_OK;
}

enum p11ca_err store_intent_abandon(struct store_txn *txn, const uint8_t serial[STORE_SERIAL_LEN],
				    struct p11ca_errmsg *em)
{
	p11ca_storage_v1_SerialRecord rec;
	size_t n = 0;
	bool stop = false;

	if (serial == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_intent_abandon: no serial");
	P11CA_GUARD(store_txn_usable(txn, true, em));
	P11CA_GUARD(serial_rec_get(txn, serial, &rec, em));
	if (rec.state != p11ca_storage_v1_SerialState_SERIAL_STATE_INTENT)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "serial %s is not an intent: only an intent can be abandoned",
				  store_serial_hex(serial).s);
	return orphan_mark_visit(&n, txn, serial, &rec, &stop, em);
}

enum p11ca_err store_orphans_mark(struct store_txn *txn, size_t *count, struct p11ca_errmsg *em)
{
	size_t n = 0;
	P11CA_GUARD(store_txn_usable(txn, true, em));
	P11CA_GUARD(intents_walk(txn, orphan_mark_visit, &n, em));
	if (count != NULL)
		*count = n;
	return P11CA_OK;
}

struct orphan_list {
	int (*fn)(void *arg, const struct store_serial_info *info);
	void *arg;
};

static enum p11ca_err orphan_list_visit(void *arg, struct store_txn *txn, const uint8_t *serial,
					p11ca_storage_v1_SerialRecord *rec, bool *stop,
					struct p11ca_errmsg *em)
{
	(void)txn;
	(void)em;
	struct orphan_list *l = arg;
	if (rec->state != p11ca_storage_v1_SerialState_SERIAL_STATE_ORPHAN)
		return P11CA_OK;
	struct store_serial_info info;
	serial_info_from_rec(serial, rec, &info);
	*stop = l->fn(l->arg, &info) != 0;
	return P11CA_OK;
}

enum p11ca_err store_orphans_list(struct store_txn *txn,
				  int (*fn)(void *arg, const struct store_serial_info *info),
				  void *arg, struct p11ca_errmsg *em)
{
	if (fn == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_orphans_list: no callback");
	P11CA_GUARD(store_txn_usable(txn, false, em));
	struct orphan_list l = {fn, arg};
	return intents_walk(txn, orphan_list_visit, &l, em);
}
