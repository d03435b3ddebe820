/*
 * The audit chain: audit[seq u64 BE] -> AuditEntry { body, hash } with
 *     hash = SHA-256(previous hash ‖ seq as u64 BE ‖ body)
 * over the exact stored bytes of body (an encoded AuditRecord that also repeats seq and
 * the previous hash), and meta["audit_head"] = { last seq, last hash } so that losing
 * the tail is detected too.
 *
 * The chain makes edits evident, not impossible: whoever can write the file can rebuild
 * it. Publishing the head elsewhere (store_audit_head) anchors it.
 */
#include "storage/store_internal.h"

#include <openssl/evp.h>
#include <pb_decode.h>
#include <pb_encode.h>
#include <string.h>

static enum p11ca_err audit_hash(const uint8_t prev[STORE_SHA256_LEN], uint64_t seq,
				 const uint8_t *body, size_t body_len,
				 uint8_t out[STORE_SHA256_LEN], struct p11ca_errmsg *em)
{
	uint8_t seq_be[8];
	store_be64_put(seq_be, seq);
	unsigned len = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
		  EVP_DigestUpdate(ctx, prev, STORE_SHA256_LEN) == 1 &&
		  EVP_DigestUpdate(ctx, seq_be, sizeof(seq_be)) == 1 &&
		  EVP_DigestUpdate(ctx, body, body_len) == 1 &&
		  EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == STORE_SHA256_LEN;
	EVP_MD_CTX_free(ctx);
	return ok ? P11CA_OK
		  : p11ca_fail(em, P11CA_E_INTERNAL, "SHA-256 of an audit record failed");
}

static enum p11ca_err head_get(struct store_txn *txn, p11ca_storage_v1_AuditHead *head,
			       struct p11ca_errmsg *em)
{
	enum p11ca_err err = store_rec_get(txn, STORE_DB_META, STORE_META_AUDIT_HEAD,
					   strlen(STORE_META_AUDIT_HEAD),
					   p11ca_storage_v1_AuditHead_fields, head, em);
	if (err == P11CA_E_STORAGE_NOT_FOUND) {
		*head = (p11ca_storage_v1_AuditHead)p11ca_storage_v1_AuditHead_init_zero;
		return P11CA_OK; /* an empty chain */
	}
	P11CA_GUARD(err);
	return store_rec_format(head->format, STORE_DB_META, em);
}

enum p11ca_err store_audit_append(struct store_txn *txn, const char *event, const char *actor,
				  const char *subject, const char *details, uint64_t *seq,
				  struct p11ca_errmsg *em)
{
	if (event == NULL || event[0] == '\0')
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "an audit record needs an event name");
	p11ca_storage_v1_AuditRecord rec = {.format = STORE_RECORD_FORMAT, .time = store_now()};
	P11CA_GUARD(store_str_copy(rec.event, sizeof(rec.event), event, "audit event", em));
	P11CA_GUARD(store_str_copy(rec.actor, sizeof(rec.actor), actor, "audit actor", em));
	P11CA_GUARD(store_str_copy(rec.subject, sizeof(rec.subject), subject, "audit subject", em));
	P11CA_GUARD(store_str_copy(rec.details, sizeof(rec.details), details, "audit details", em));
	P11CA_GUARD(store_txn_usable(txn, true, em));

	p11ca_storage_v1_AuditHead head;
	P11CA_GUARD(head_get(txn, &head, em));
	rec.seq = head.seq + 1;
	memcpy(rec.prev_hash, head.hash, STORE_SHA256_LEN);

	p11ca_storage_v1_AuditEntry entry = {.format = STORE_RECORD_FORMAT};
	pb_ostream_t os = pb_ostream_from_buffer(entry.body.bytes, sizeof(entry.body.bytes));
	if (!pb_encode(&os, p11ca_storage_v1_AuditRecord_fields, &rec))
		return p11ca_fail(em, P11CA_E_INTERNAL, "encoding an audit record failed: %s",
				  PB_GET_ERROR(&os));
	entry.body.size = (pb_size_t)os.bytes_written;
	P11CA_GUARD(
		audit_hash(head.hash, rec.seq, entry.body.bytes, entry.body.size, entry.hash, em));

	uint8_t key[STORE_KEY_SEQ];
	store_be64_put(key, rec.seq);
	MDB_val v;
	enum p11ca_err err = store_raw_get(txn, STORE_DB_AUDIT, key, sizeof(key), &v, em);
	if (err == P11CA_OK) /* never overwrite evidence */
		return store_rec_corrupt(STORE_DB_AUDIT, "a record already follows the head", em);
	if (err != P11CA_E_STORAGE_NOT_FOUND)
		return err;
	P11CA_GUARD(store_rec_put(txn, STORE_DB_AUDIT, key, sizeof(key),
				  p11ca_storage_v1_AuditEntry_fields, &entry, em));
	head.format = STORE_RECORD_FORMAT;
	head.seq = rec.seq;
	memcpy(head.hash, entry.hash, STORE_SHA256_LEN);
	P11CA_GUARD(store_rec_put(txn, STORE_DB_META, STORE_META_AUDIT_HEAD,
				  strlen(STORE_META_AUDIT_HEAD), p11ca_storage_v1_AuditHead_fields,
				  &head, em));
	txn->unaudited = 0; /* everything changed so far is now described */
	if (seq != NULL)
		*seq = rec.seq;
	return P11CA_OK;
}

enum p11ca_err store_audit_head(struct store_txn *txn, uint64_t *seq,
				uint8_t hash[STORE_SHA256_LEN], struct p11ca_errmsg *em)
{
	if (seq == NULL || hash == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_audit_head: NULL argument");
	P11CA_GUARD(store_txn_usable(txn, false, em));
	p11ca_storage_v1_AuditHead head;
	P11CA_GUARD(head_get(txn, &head, em));
	*seq = head.seq;
	memcpy(hash, head.hash, STORE_SHA256_LEN);
	return P11CA_OK;
}

/* Decode one stored entry without judging the chain (store_audit_verify does that). */
static enum p11ca_err entry_decode(const MDB_val *v, p11ca_storage_v1_AuditEntry *entry,
				   p11ca_storage_v1_AuditRecord *rec, struct p11ca_errmsg *em)
{
	P11CA_GUARD(
		store_rec_decode(v, STORE_DB_AUDIT, p11ca_storage_v1_AuditEntry_fields, entry, em));
	P11CA_GUARD(store_rec_format(entry->format, STORE_DB_AUDIT, em));
	pb_istream_t is = pb_istream_from_buffer(entry->body.bytes, entry->body.size);
	if (!pb_decode(&is, p11ca_storage_v1_AuditRecord_fields, rec))
		return store_rec_corrupt(STORE_DB_AUDIT, "audit body does not decode", em);
	return store_rec_format(rec->format, STORE_DB_AUDIT, em);
}

enum p11ca_err store_audit_list(struct store_txn *txn, uint64_t from,
				int (*fn)(void *arg, const struct store_audit_entry *entry),
				void *arg, struct p11ca_errmsg *em)
{
	if (fn == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_audit_list: no callback");
	P11CA_GUARD(store_txn_usable(txn, false, em));
	uint8_t start[STORE_KEY_SEQ];
	store_be64_put(start, from);
	MDB_val k = {.mv_size = sizeof(start), .mv_data = start}, v;
	MDB_cursor *cur = NULL;
	P11CA_GUARD(store_cursor_open(txn, STORE_DB_AUDIT, &cur, em));
	enum p11ca_err err;
	for (err = store_cursor_get(txn, cur, &k, &v, MDB_SET_RANGE, em); err == P11CA_OK;
	     err = store_cursor_get(txn, cur, &k, &v, MDB_NEXT, em)) {
		p11ca_storage_v1_AuditEntry entry;
		p11ca_storage_v1_AuditRecord rec;
		struct store_audit_entry out;
		if (k.mv_size != STORE_KEY_SEQ)
			err = store_rec_corrupt(STORE_DB_AUDIT, "key of the wrong size", em);
		if (err == P11CA_OK)
			err = entry_decode(&v, &entry, &rec, em);
		if (err != P11CA_OK)
			break;
		out.seq = store_be64_get(k.mv_data);
		out.time = rec.time;
		memcpy(out.event, rec.event, sizeof(out.event));
		memcpy(out.actor, rec.actor, sizeof(out.actor));
		memcpy(out.subject, rec.subject, sizeof(out.subject));
		memcpy(out.details, rec.details, sizeof(out.details));
		memcpy(out.prev_hash, rec.prev_hash, STORE_SHA256_LEN);
		memcpy(out.hash, entry.hash, STORE_SHA256_LEN);
		if (fn(arg, &out) != 0)
			break;
	}
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		err = P11CA_OK;
	store_cursor_close(&cur);
	return err;
}

/* Check the record stored under `seq`, following `prev`; NULL when it fits, else why. */
static const char *link_check(const MDB_val *k, const MDB_val *v, uint64_t seq,
			      const uint8_t prev[STORE_SHA256_LEN], uint8_t hash[STORE_SHA256_LEN])
{
	p11ca_storage_v1_AuditEntry entry;
	p11ca_storage_v1_AuditRecord rec;
	uint8_t md[STORE_SHA256_LEN];
	if (k->mv_size != STORE_KEY_SEQ || store_be64_get(k->mv_data) != seq)
		return "missing (deleted, or the chain has a gap)";
	if (entry_decode(v, &entry, &rec, NULL) != P11CA_OK)
		return "does not decode";
	if (audit_hash(prev, seq, entry.body.bytes, entry.body.size, md, NULL) != P11CA_OK ||
	    memcmp(md, entry.hash, STORE_SHA256_LEN) != 0)
		return "hash mismatch (edited, or moved from another position)";
	if (rec.seq != seq || memcmp(rec.prev_hash, prev, STORE_SHA256_LEN) != 0)
		return "sequence or previous hash inside the record do not match";
	memcpy(hash, md, STORE_SHA256_LEN);
	return NULL;
}

enum p11ca_err store_audit_verify(struct store_txn *txn, uint64_t *first_bad_seq,
				  struct p11ca_errmsg *em)
{
	if (first_bad_seq == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_audit_verify: no output");
	*first_bad_seq = 0;
	P11CA_GUARD(store_txn_usable(txn, false, em));
	p11ca_storage_v1_AuditHead head;
	P11CA_GUARD(head_get(txn, &head, em));

	uint8_t prev[STORE_SHA256_LEN] = {0};
	uint64_t seq = 1;
	const char *why = NULL;
	MDB_val k, v;
	MDB_cursor *cur = NULL;
	P11CA_GUARD(store_cursor_open(txn, STORE_DB_AUDIT, &cur, em));
	enum p11ca_err err;
	for (err = store_cursor_get(txn, cur, &k, &v, MDB_FIRST, em); err == P11CA_OK;
	     err = store_cursor_get(txn, cur, &k, &v, MDB_NEXT, em), seq++) {
		why = link_check(&k, &v, seq, prev, prev);
		if (why != NULL)
			break;
	}
	store_cursor_close(&cur);
	if (err != P11CA_OK && err != P11CA_E_STORAGE_NOT_FOUND)
		return err;

	uint64_t last = seq - 1; /* the last record that passed, when why == NULL */
	if (why == NULL && head.seq > last) {
		seq = last + 1;
		why = "missing (the tail of the chain was removed)";
	} else if (why == NULL && head.seq < last) {
		seq = head.seq + 1;
		why = "beyond the recorded head";
	} else if (why == NULL && memcmp(head.hash, prev, STORE_SHA256_LEN) != 0) {
		seq = last;
		why = "differs from the recorded head";
	}
	if (why == NULL)
		return P11CA_OK;
	*first_bad_seq = seq;
	return p11ca_fail(em, P11CA_E_STORAGE_CORRUPT,
			  "audit chain broken at record %llu: %s; keep this database as "
			  "evidence and compare it with a backup",
			  (unsigned long long)seq, why);
}
