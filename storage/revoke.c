/*
 * Revocation (certs record + revoked[ca ‖ serial] index) and the two range scans the
 * engine needs for CRLs and expiry: revoked by CA, and by_expiry by notAfter.
 *
 * The revocation is kept twice on purpose: in the certificate record, so one read
 * answers "what is the status of this certificate", and in `revoked`, so a CRL is built
 * by walking only the revoked certificates of one CA. Both are written by the same call
 * in the same transaction.
 */
#include "storage/store_internal.h"

#include <stdlib.h>
#include <string.h>

/* RFC 5280 CRLReason: 7 is unused, and removeFromCRL (8) belongs to delta CRLs only. */
static bool reason_valid(uint32_t reason)
{
	return reason <= 10 && reason != 7 && reason != 8;
}

enum p11ca_err store_cert_revoke(struct store_txn *txn, uint32_t ca_id,
				 const uint8_t serial[STORE_SERIAL_LEN],
				 const struct store_revocation *rev, struct p11ca_errmsg *em)
{
	if (serial == NULL || rev == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_cert_revoke: NULL argument");
	if (!reason_valid(rev->reason))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "revocation reason %u is not usable (RFC 5280 CRLReason 0-6, "
				  "9 or 10)",
				  rev->reason);
	P11CA_GUARD(store_txn_usable(txn, true, em));

	p11ca_storage_v1_CertRecord *rec = malloc(sizeof(*rec));
	if (rec == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "revoking a certificate");
	enum p11ca_err err = store_cert_rec_get(txn, ca_id, serial, rec, em);
	if (err == P11CA_OK && rec->has_revocation)
		err = p11ca_fail(em, P11CA_E_STORAGE_EXISTS, "certificate %s is already revoked",
				 store_serial_hex(serial).s);
	if (err == P11CA_OK) {
		rec->has_revocation = true;
		rec->revocation = (p11ca_storage_v1_RevokedRecord){
			.format = STORE_RECORD_FORMAT,
			.reason = rev->reason,
			.revoked_at = rev->revoked_at != 0 ? rev->revoked_at : store_now(),
			.invalidity_date = rev->invalidity_date,
		};
		uint8_t key[STORE_KEY_CA_SERIAL];
		store_key_ca_serial(key, ca_id, serial);
		err = store_rec_put(txn, STORE_DB_CERTS, key, sizeof(key),
				    p11ca_storage_v1_CertRecord_fields, rec, em);
		if (err == P11CA_OK)
			err = store_rec_put(txn, STORE_DB_REVOKED, key, sizeof(key),
					    p11ca_storage_v1_RevokedRecord_fields, &rec->revocation,
					    em);
	}
	free(rec);
	return err;
}

enum p11ca_err store_revoked_list(struct store_txn *txn, uint32_t ca_id,
				  int (*fn)(void *arg, const uint8_t serial[STORE_SERIAL_LEN],
					    const struct store_revocation *rev),
				  void *arg, struct p11ca_errmsg *em)
{
	if (fn == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_revoked_list: no callback");
	P11CA_GUARD(store_txn_usable(txn, false, em));

	static const uint8_t zero[STORE_SERIAL_LEN];
	uint8_t start[STORE_KEY_CA_SERIAL];
	store_key_ca_serial(start, ca_id, zero);
	MDB_val k = {.mv_size = sizeof(start), .mv_data = start}, v;
	MDB_cursor *cur = NULL;
	P11CA_GUARD(store_cursor_open(txn, STORE_DB_REVOKED, &cur, em));
	enum p11ca_err err;
	for (err = store_cursor_get(txn, cur, &k, &v, MDB_SET_RANGE, em); err == P11CA_OK;
	     err = store_cursor_get(txn, cur, &k, &v, MDB_NEXT, em)) {
		if (k.mv_size != STORE_KEY_CA_SERIAL) {
			err = store_rec_corrupt(STORE_DB_REVOKED, "key of the wrong size", em);
			break;
		}
		if (store_be32_get(k.mv_data) != ca_id)
			break;
		p11ca_storage_v1_RevokedRecord r;
		err = store_rec_decode(&v, STORE_DB_REVOKED, p11ca_storage_v1_RevokedRecord_fields,
				       &r, em);
		if (err == P11CA_OK)
			err = store_revocation_check(&r, STORE_DB_REVOKED, em);
		if (err != P11CA_OK)
			break;
		struct store_revocation rev = {r.reason, r.revoked_at, r.invalidity_date};
		if (fn(arg, (const uint8_t *)k.mv_data + STORE_KEY_CA, &rev) != 0)
			break;
	}
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		err = P11CA_OK;
	store_cursor_close(&cur);
	return err;
}

enum p11ca_err store_expiry_list(struct store_txn *txn, int64_t from, int64_t until,
				 int (*fn)(void *arg, int64_t not_after, uint32_t ca_id,
					   const uint8_t serial[STORE_SERIAL_LEN]),
				 void *arg, struct p11ca_errmsg *em)
{
	if (fn == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_expiry_list: no callback");
	P11CA_GUARD(store_txn_usable(txn, false, em));

	uint8_t start[STORE_KEY_EXPIRY] = {0};
	store_be64_put(start, (uint64_t)from ^ (UINT64_C(1) << 63)); /* as in cert.c */
	MDB_val k = {.mv_size = sizeof(start), .mv_data = start}, v;
	MDB_cursor *cur = NULL;
	P11CA_GUARD(store_cursor_open(txn, STORE_DB_BY_EXPIRY, &cur, em));
	enum p11ca_err err;
	for (err = store_cursor_get(txn, cur, &k, &v, MDB_SET_RANGE, em); err == P11CA_OK;
	     err = store_cursor_get(txn, cur, &k, &v, MDB_NEXT, em)) {
		if (k.mv_size != STORE_KEY_EXPIRY) {
			err = store_rec_corrupt(STORE_DB_BY_EXPIRY, "key of the wrong size", em);
			break;
		}
		const uint8_t *p = k.mv_data;
		int64_t not_after = (int64_t)(store_be64_get(p) ^ (UINT64_C(1) << 63));
		if (not_after >= until)
			break;
		if (fn(arg, not_after, store_be32_get(p + 8), p + 8 + STORE_KEY_CA) != 0)
			break;
	}
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		err = P11CA_OK;
	store_cursor_close(&cur);
	return err;
}
