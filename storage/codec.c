/*
 * Records in and out of LMDB (nanopb with static bounds), keys, and small helpers.
 *
 * Stored bytes are treated as untrusted: a record that does not decode, or decodes into
 * something that does not fit its key, is reported as P11CA_E_STORAGE_CORRUPT and never
 * used. Encoding happens in place (MDB_RESERVE), so a record is not copied twice.
 */
#include "storage/store_internal.h"

#include <pb_decode.h>
#include <pb_encode.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The public bounds in store.h and the nanopb bounds in records.options must agree. */
#define FIELD_SIZE(type, field) sizeof(((type *)0)->field)
_Static_assert(FIELD_SIZE(p11ca_storage_v1_CaRecord, name) == STORE_CA_NAME_MAX + 1, "name");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_CaRecord, subject_der.bytes) == STORE_SUBJECT_DER_MAX,
	       "subject_der");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_CaRecord, cert_der.bytes) == STORE_CERT_DER_MAX,
	       "cert_der");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_CaRecord, key_backend) == STORE_KEY_BACKEND_MAX + 1,
	       "key_backend");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_CaRecord, key_uri) == STORE_KEY_URI_MAX + 1, "key_uri");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_CaRecord, settings.bytes) == STORE_CA_SETTINGS_MAX,
	       "settings");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_CertRecord, serial) == STORE_SERIAL_LEN, "serial");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_CertRecord, watchers) /
			       sizeof(p11ca_storage_v1_Watcher) ==
		       STORE_WATCHERS_MAX,
	       "watchers");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_Watcher, email) == STORE_EMAIL_MAX + 1, "email");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_CertRecord, der.bytes) == STORE_CERT_DER_MAX, "der");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_CertRecord, profile) == STORE_PROFILE_MAX + 1,
	       "profile");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_CertRecord, requester) == STORE_REQUESTER_MAX + 1,
	       "requester");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_SerialRecord, requester) == STORE_REQUESTER_MAX + 1,
	       "serial requester");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_SerialRecord, tbs_sha256) == STORE_SHA256_LEN,
	       "tbs_sha256");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_AuditRecord, event) == STORE_AUDIT_EVENT_MAX + 1,
	       "event");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_AuditRecord, actor) == STORE_AUDIT_ACTOR_MAX + 1,
	       "actor");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_AuditRecord, subject) == STORE_AUDIT_SUBJECT_MAX + 1,
	       "subject");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_AuditRecord, details) == STORE_AUDIT_DETAILS_MAX + 1,
	       "details");
_Static_assert(FIELD_SIZE(p11ca_storage_v1_AuditEntry, body.bytes) >=
		       p11ca_storage_v1_AuditRecord_size,
	       "AuditEntry.body must hold the largest AuditRecord");

enum p11ca_err store_rec_put(struct store_txn *txn, enum store_db db, const void *key, size_t klen,
			     const pb_msgdesc_t *fields, const void *msg, struct p11ca_errmsg *em)
{
	size_t size = 0;
	if (!pb_get_encoded_size(&size, fields, msg))
		return p11ca_fail(em, P11CA_E_INTERNAL, "%s: a record does not encode",
				  store_db_names[db]);
	void *dst = NULL;
	P11CA_GUARD(store_raw_reserve(txn, db, key, klen, size, &dst, em));
	pb_ostream_t os = pb_ostream_from_buffer(dst, size);
	if (!pb_encode(&os, fields, msg) || os.bytes_written != size) {
		/* The reserved bytes are garbage now: this transaction must never commit. */
		txn->dead = P11CA_E_INTERNAL;
		return p11ca_fail(em, P11CA_E_INTERNAL, "%s: encoding a record failed: %s",
				  store_db_names[db], PB_GET_ERROR(&os));
	}
	return P11CA_OK;
}

enum p11ca_err store_rec_decode(const MDB_val *val, enum store_db db, const pb_msgdesc_t *fields,
				void *msg, struct p11ca_errmsg *em)
{
	pb_istream_t is = pb_istream_from_buffer(val->mv_data, val->mv_size);
	if (!pb_decode(&is, fields, msg))
		return p11ca_fail(em, P11CA_E_STORAGE_CORRUPT,
				  "a record in '%s' does not decode (%s): restore the database "
				  "from a backup",
				  store_db_names[db], PB_GET_ERROR(&is));
	return P11CA_OK;
}

enum p11ca_err store_rec_get(struct store_txn *txn, enum store_db db, const void *key, size_t klen,
			     const pb_msgdesc_t *fields, void *msg, struct p11ca_errmsg *em)
{
	MDB_val val;
	P11CA_GUARD(store_raw_get(txn, db, key, klen, &val, em));
	return store_rec_decode(&val, db, fields, msg, em);
}

enum p11ca_err store_rec_format(uint32_t format, enum store_db db, struct p11ca_errmsg *em)
{
	if (format == STORE_RECORD_FORMAT)
		return P11CA_OK;
	if (format > STORE_RECORD_FORMAT)
		return p11ca_fail(em, P11CA_E_STORAGE_VERSION,
				  "a record in '%s' has format %u, newer than this p11ca's %u: "
				  "run the newer p11ca",
				  store_db_names[db], format, STORE_RECORD_FORMAT);
	return store_rec_corrupt(db, "record without a format", em);
}

enum p11ca_err store_rec_corrupt(enum store_db db, const char *why, struct p11ca_errmsg *em)
{
	return p11ca_fail(em, P11CA_E_STORAGE_CORRUPT,
			  "a record in '%s' is inconsistent (%s): restore the database from a "
			  "backup",
			  store_db_names[db], why);
}

enum p11ca_err store_str_copy(char *dst, size_t dst_size, const char *src, const char *what,
			      struct p11ca_errmsg *em)
{
	if (src == NULL)
		src = "";
	size_t len = strnlen(src, dst_size);
	if (len >= dst_size)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%s is longer than %zu bytes", what,
				  dst_size - 1);
	memcpy(dst, src, len + 1);
	return P11CA_OK;
}

void store_be32_put(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

void store_be64_put(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

uint32_t store_be32_get(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v = v << 8 | p[i];
	return v;
}

uint64_t store_be64_get(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

void store_key_ca_serial(uint8_t key[STORE_KEY_CA_SERIAL], uint32_t ca_id,
			 const uint8_t serial[STORE_SERIAL_LEN])
{
	store_be32_put(key, ca_id);
	memcpy(key + STORE_KEY_CA, serial, STORE_SERIAL_LEN);
}

struct store_serial_hex store_serial_hex(const uint8_t serial[STORE_SERIAL_LEN])
{
	static const char digits[] = "0123456789ABCDEF";
	struct store_serial_hex h;
	for (size_t i = 0; i < STORE_SERIAL_LEN; i++) {
		h.s[2 * i] = digits[serial[i] >> 4];
		h.s[2 * i + 1] = digits[serial[i] & 15];
	}
	h.s[2 * STORE_SERIAL_LEN] = '\0';
	return h;
}

int64_t store_now(void)
{
	return (int64_t)time(NULL);
}
