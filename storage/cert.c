/*
 * Certificates: certs[ca u32 BE ‖ serial] -> CertRecord, with by_expiry[notAfter ‖ ca ‖
 * serial] -> "" written in the same transaction.
 *
 * store_cert_put checks the DER against the intent (serial and TBS hash) with a few
 * bounded DER reads instead of d2i_X509: parsing a whole certificate costs ~100 µs, and
 * the check only needs the outer SEQUENCE, the TBS and its serial.
 */
#include "storage/store_internal.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

bool store_der_tlv(const uint8_t *p, size_t len, uint8_t *tag, const uint8_t **content,
		   size_t *content_len, size_t *total)
{
	if (len < 2 || (p[0] & 0x1f) == 0x1f) /* no high-tag-number form in certificates */
		return false;
	size_t hdr = 2, n = p[1];
	if (n & 0x80) {
		size_t nb = n & 0x7f;
		if (nb == 0 || nb > 4 || len - 2 < nb || p[2] == 0)
			return false; /* indefinite, huge, or not minimal */
		n = 0;
		for (size_t i = 0; i < nb; i++)
			n = n << 8 | p[2 + i];
		if (n < 0x80)
			return false; /* DER uses the short form below 128 */
		hdr += nb;
	}
	if (n > len - hdr)
		return false;
	*tag = p[0];
	*content = p + hdr;
	*content_len = n;
	*total = hdr + n;
	return true;
}

enum p11ca_err store_der_cert_parse(const uint8_t *der, size_t der_len, const char *name,
				    struct store_der_cert *out, struct p11ca_errmsg *em)
{
	uint8_t tag;
	const uint8_t *body, *tbs_body, *p;
	size_t body_len, tbs_body_len, n, total;
	if (!store_der_tlv(der, der_len, &tag, &body, &body_len, &total) || tag != 0x30 ||
	    total != der_len ||
	    !store_der_tlv(body, body_len, &tag, &tbs_body, &tbs_body_len, &out->tbs_len) ||
	    tag != 0x30)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate %s: not one DER Certificate", name);
	out->tbs = body;
	/* TBSCertificate: [0] EXPLICIT version (optional), then serialNumber INTEGER. */
	if (!store_der_tlv(tbs_body, tbs_body_len, &tag, &p, &n, &total))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "certificate %s: empty TBS", name);
	const uint8_t *rest = tbs_body;
	size_t rest_len = tbs_body_len;
	if (tag == 0xa0) {
		rest += total;
		rest_len -= total;
	}
	if (!store_der_tlv(rest, rest_len, &tag, &out->serial, &out->serial_len, &total) ||
	    tag != 0x02 || out->serial_len == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate %s: its TBS has no serial number", name);
	return P11CA_OK;
}

/* The DER is exactly one Certificate whose TBS carries `serial` and hashes to `tbs_sha256`. */
static enum p11ca_err cert_der_check(const uint8_t *der, size_t der_len,
				     const uint8_t serial[STORE_SERIAL_LEN],
				     const uint8_t tbs_sha256[STORE_SHA256_LEN],
				     struct p11ca_errmsg *em)
{
	struct store_serial_hex sn = store_serial_hex(serial);
	struct store_der_cert c;
	P11CA_GUARD(store_der_cert_parse(der, der_len, sn.s, &c, em));
	if (c.serial_len != STORE_SERIAL_LEN || memcmp(c.serial, serial, STORE_SERIAL_LEN) != 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate %s: its TBS carries another serial", sn.s);

	uint8_t md[STORE_SHA256_LEN];
	P11CA_GUARD(store_sha256(c.tbs, c.tbs_len, md, em));
	if (memcmp(md, tbs_sha256, STORE_SHA256_LEN) != 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate %s: its TBS is not the one recorded in the intent",
				  sn.s);
	return P11CA_OK;
}

enum p11ca_err store_sha256(const uint8_t *p, size_t len, uint8_t md[STORE_SHA256_LEN],
			    struct p11ca_errmsg *em)
{
	uint8_t buf[EVP_MAX_MD_SIZE];
	unsigned md_len = 0;
	if (EVP_Digest(p, len, buf, &md_len, EVP_sha256(), NULL) != 1 || md_len != STORE_SHA256_LEN)
		return p11ca_fail(em, P11CA_E_INTERNAL, "SHA-256 failed");
	memcpy(md, buf, STORE_SHA256_LEN);
	return P11CA_OK;
}

enum p11ca_err store_revocation_check(const p11ca_storage_v1_RevokedRecord *r, enum store_db db,
				      struct p11ca_errmsg *em)
{
	P11CA_GUARD(store_rec_format(r->format, db, em));
	if (r->reason > 10 || r->reason == 7 || r->reason == 8)
		return store_rec_corrupt(db, "invalid revocation reason", em);
	return P11CA_OK;
}

enum p11ca_err store_cert_rec_check(const p11ca_storage_v1_CertRecord *r, uint32_t ca_id,
				    const uint8_t serial[STORE_SERIAL_LEN], struct p11ca_errmsg *em)
{
	P11CA_GUARD(store_rec_format(r->format, STORE_DB_CERTS, em));
	if (r->ca_id != ca_id || memcmp(r->serial, serial, STORE_SERIAL_LEN) != 0 ||
	    r->der.size == 0)
		return store_rec_corrupt(STORE_DB_CERTS, "certificate record does not fit its key",
					 em);
	if (r->has_revocation)
		P11CA_GUARD(store_revocation_check(&r->revocation, STORE_DB_CERTS, em));
	for (pb_size_t i = 0; i < r->watchers_count; i++)
		if (r->watchers[i].email[0] == '\0')
			return store_rec_corrupt(STORE_DB_CERTS, "watcher without an address", em);
	return P11CA_OK;
}

void store_cert_from_rec(const p11ca_storage_v1_CertRecord *r, struct store_cert *out)
{
	out->ca_id = r->ca_id;
	memcpy(out->serial, r->serial, STORE_SERIAL_LEN);
	memcpy(out->der, r->der.bytes, r->der.size);
	out->der_len = r->der.size;
	out->not_after = r->not_after;
	memcpy(out->profile, r->profile, sizeof(out->profile));
	memcpy(out->requester, r->requester, sizeof(out->requester));
	out->issued_at = r->issued_at;
	out->revoked = r->has_revocation;
	out->revocation = (struct store_revocation){0};
	if (r->has_revocation) {
		out->revocation.reason = r->revocation.reason;
		out->revocation.revoked_at = r->revocation.revoked_at;
		out->revocation.invalidity_date = r->revocation.invalidity_date;
	}
	out->n_watchers = r->watchers_count;
	for (pb_size_t i = 0; i < r->watchers_count; i++) {
		memcpy(out->watchers[i].email, r->watchers[i].email,
		       sizeof(out->watchers[i].email));
		out->watchers[i].notified_days = r->watchers[i].notified_days;
	}
	out->imported = r->imported;
}

enum p11ca_err store_cert_rec_get(struct store_txn *txn, uint32_t ca_id,
				  const uint8_t serial[STORE_SERIAL_LEN],
				  p11ca_storage_v1_CertRecord *rec, struct p11ca_errmsg *em)
{
	uint8_t key[STORE_KEY_CA_SERIAL];
	store_key_ca_serial(key, ca_id, serial);
	enum p11ca_err err = store_rec_get(txn, STORE_DB_CERTS, key, sizeof(key),
					   p11ca_storage_v1_CertRecord_fields, rec, em);
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		return p11ca_fail(em, err, "CA %u has no certificate with serial %s", ca_id,
				  store_serial_hex(serial).s);
	P11CA_GUARD(err);
	return store_cert_rec_check(rec, ca_id, serial, em);
}

void store_expiry_key(uint8_t key[STORE_KEY_EXPIRY], int64_t not_after, uint32_t ca_id,
		      const uint8_t serial[STORE_SERIAL_LEN])
{
	/* Flipping the sign bit makes signed times sort correctly as unsigned bytes. */
	store_be64_put(key, (uint64_t)not_after ^ (UINT64_C(1) << 63));
	store_key_ca_serial(key + 8, ca_id, serial);
}

enum p11ca_err store_cert_write(struct store_txn *txn, p11ca_storage_v1_SerialRecord *srec,
				const p11ca_storage_v1_CertRecord *crec, struct p11ca_errmsg *em)
{
	uint8_t key[STORE_KEY_CA_SERIAL], xkey[STORE_KEY_EXPIRY];
	store_key_ca_serial(key, crec->ca_id, crec->serial);
	store_expiry_key(xkey, crec->not_after, crec->ca_id, crec->serial);
	P11CA_GUARD(store_rec_put(txn, STORE_DB_CERTS, key, sizeof(key),
				  p11ca_storage_v1_CertRecord_fields, crec, em));
	P11CA_GUARD(store_raw_put(txn, STORE_DB_BY_EXPIRY, xkey, sizeof(xkey), "", 0, em));
	srec->state = p11ca_storage_v1_SerialState_SERIAL_STATE_ISSUED;
	srec->updated = crec->issued_at;
	P11CA_GUARD(store_rec_put(txn, STORE_DB_SERIALS, crec->serial, STORE_SERIAL_LEN,
				  p11ca_storage_v1_SerialRecord_fields, srec, em));
	enum p11ca_err err =
		store_raw_del(txn, STORE_DB_INTENTS, crec->serial, STORE_SERIAL_LEN, em);
	return err == P11CA_E_STORAGE_NOT_FOUND ? P11CA_OK : err;
}

enum p11ca_err store_cert_put(struct store_txn *txn, uint32_t ca_id,
			      const uint8_t serial[STORE_SERIAL_LEN], const uint8_t *der,
			      size_t der_len, int64_t not_after, const char *profile,
			      struct p11ca_errmsg *em)
{
	if (serial == NULL || der == NULL || ca_id == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_cert_put: missing argument");
	if (der_len == 0 || der_len > STORE_CERT_DER_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate %s: %zu bytes of DER (1 to %d accepted)",
				  store_serial_hex(serial).s, der_len, STORE_CERT_DER_MAX);
	P11CA_GUARD(store_txn_usable(txn, true, em));

	p11ca_storage_v1_SerialRecord srec;
	P11CA_GUARD(store_serial_rec_get(txn, serial, &srec, em));
	struct store_serial_hex sn = store_serial_hex(serial);
	if (srec.state == p11ca_storage_v1_SerialState_SERIAL_STATE_ISSUED)
		return p11ca_fail(em, P11CA_E_STORAGE_EXISTS, "certificate %s is already stored",
				  sn.s);
	if (srec.state == p11ca_storage_v1_SerialState_SERIAL_STATE_ORPHAN)
		return p11ca_fail(em, P11CA_E_POLICY,
				  "serial %s is an orphan: it was given up at a restart and is "
				  "never issued",
				  sn.s);
	if (srec.ca_id != ca_id)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "serial %s was reserved for CA %u, not CA %u", sn.s, srec.ca_id,
				  ca_id);
	P11CA_GUARD(cert_der_check(der, der_len, serial, srec.tbs_sha256, em));

	p11ca_storage_v1_CertRecord *crec = calloc(1, sizeof(*crec));
	if (crec == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "storing certificate %s", sn.s);
	enum p11ca_err err =
		store_str_copy(crec->profile, sizeof(crec->profile), profile, "profile name", em);
	if (err == P11CA_OK) {
		crec->format = STORE_RECORD_FORMAT;
		crec->ca_id = ca_id;
		memcpy(crec->serial, serial, STORE_SERIAL_LEN);
		memcpy(crec->der.bytes, der, der_len);
		crec->der.size = (pb_size_t)der_len;
		crec->not_after = not_after;
		memcpy(crec->requester, srec.requester, sizeof(crec->requester));
		crec->issued_at = store_now();
		err = store_cert_write(txn, &srec, crec, em);
	}
	free(crec);
	return err;
}

enum p11ca_err store_cert_get(struct store_txn *txn, uint32_t ca_id,
			      const uint8_t serial[STORE_SERIAL_LEN], struct store_cert *out,
			      struct p11ca_errmsg *em)
{
	if (serial == NULL || out == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_cert_get: NULL argument");
	P11CA_GUARD(store_txn_usable(txn, false, em));
	p11ca_storage_v1_CertRecord *rec = malloc(sizeof(*rec));
	if (rec == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "reading a certificate");
	enum p11ca_err err = store_cert_rec_get(txn, ca_id, serial, rec, em);
	if (err == P11CA_OK)
		store_cert_from_rec(rec, out);
	free(rec);
	return err;
}

enum p11ca_err store_cert_get_by_serial(struct store_txn *txn,
					const uint8_t serial[STORE_SERIAL_LEN],
					struct store_cert *out, struct p11ca_errmsg *em)
{
	if (serial == NULL || out == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "store_cert_get_by_serial: NULL argument");
	P11CA_GUARD(store_txn_usable(txn, false, em));
	p11ca_storage_v1_SerialRecord srec;
	P11CA_GUARD(store_serial_rec_get(txn, serial, &srec, em));
	if (srec.state != p11ca_storage_v1_SerialState_SERIAL_STATE_ISSUED)
		return p11ca_fail(em, P11CA_E_STORAGE_NOT_FOUND,
				  "serial %s has no certificate (it is %s)",
				  store_serial_hex(serial).s,
				  srec.state == p11ca_storage_v1_SerialState_SERIAL_STATE_ORPHAN
					  ? "an orphan"
					  : "an intent in flight");
	return store_cert_get(txn, srec.ca_id, serial, out, em);
}

enum p11ca_err store_cert_list(struct store_txn *txn, uint32_t ca_id, const uint8_t *after,
			       size_t limit, int (*fn)(void *arg, const struct store_cert *cert),
			       void *arg, size_t *n, struct p11ca_errmsg *em)
{
	if (fn == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_cert_list: no callback");
	if (n != NULL)
		*n = 0;
	P11CA_GUARD(store_txn_usable(txn, false, em));

	static const uint8_t zero[STORE_SERIAL_LEN];
	uint8_t start[STORE_KEY_CA_SERIAL];
	store_key_ca_serial(start, ca_id, after != NULL ? after : zero);
	MDB_cursor *cur = NULL;
	struct {
		p11ca_storage_v1_CertRecord rec;
		struct store_cert cert;
	} *w = NULL;
	size_t count = 0;
	MDB_val k = {.mv_size = sizeof(start), .mv_data = start}, v;
	enum p11ca_err err = store_cursor_open(txn, STORE_DB_CERTS, &cur, em);
	if (err != P11CA_OK)
		goto out;
	w = malloc(sizeof(*w));
	if (w == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "listing certificates");
		goto out;
	}
	/* Seek by key, not by position: what was inserted meanwhile cannot shift the page. */
	err = store_cursor_get(txn, cur, &k, &v, MDB_SET_RANGE, em);
	if (err == P11CA_OK && after != NULL && k.mv_size == sizeof(start) &&
	    memcmp(k.mv_data, start, sizeof(start)) == 0)
		err = store_cursor_get(txn, cur, &k, &v, MDB_NEXT, em);
	for (; err == P11CA_OK && (limit == 0 || count < limit);
	     err = store_cursor_get(txn, cur, &k, &v, MDB_NEXT, em)) {
		if (k.mv_size != STORE_KEY_CA_SERIAL) {
			err = store_rec_corrupt(STORE_DB_CERTS, "key of the wrong size", em);
			goto out;
		}
		if (store_be32_get(k.mv_data) != ca_id)
			break; /* past this CA's range */
		const uint8_t *serial = (const uint8_t *)k.mv_data + STORE_KEY_CA;
		err = store_rec_decode(&v, STORE_DB_CERTS, p11ca_storage_v1_CertRecord_fields,
				       &w->rec, em);
		if (err == P11CA_OK)
			err = store_cert_rec_check(&w->rec, ca_id, serial, em);
		if (err != P11CA_OK)
			goto out;
		store_cert_from_rec(&w->rec, &w->cert);
		count++;
		if (fn(arg, &w->cert) != 0)
			break;
	}
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		err = P11CA_OK;
out:
	if (n != NULL)
		*n = count;
	free(w);
	store_cursor_close(&cur);
	return err;
}
