/*
 * Certificates issued elsewhere by a CA we hold (`p11ca cert import`). They never had an
 * intent: the serial goes straight to ISSUED, and the record says `imported`, so the
 * audit trail and listings can tell them from what this CA signed itself.
 *
 * The serial must still be unique across everything ever burned here, in any state: a
 * second certificate under one serial would make revocation ambiguous.
 */
#include "storage/store_internal.h"

#include <stdlib.h>
#include <string.h>

/* The DER INTEGER content c[0..n) is a positive serial of at most 20 octets (RFC 5280
 * §4.1.2.2) that, left-padded with zeros, equals `serial`. */
static enum p11ca_err import_serial_check(const uint8_t *c, size_t n,
					  const uint8_t serial[STORE_SERIAL_LEN], const char *name,
					  struct p11ca_errmsg *em)
{
	if (c[0] & 0x80)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate %s: its serial number is negative", name);
	if (n > 1 && c[0] == 0 && !(c[1] & 0x80))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate %s: its serial number is not in DER form", name);
	if (n > STORE_SERIAL_LEN)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate %s: its serial number has %zu octets, more than "
				  "the %d RFC 5280 allows",
				  name, n, STORE_SERIAL_LEN);
	if (n == 1 && c[0] == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate %s: its serial number is zero, not positive", name);
	uint8_t padded[STORE_SERIAL_LEN] = {0};
	memcpy(padded + STORE_SERIAL_LEN - n, c, n);
	if (memcmp(padded, serial, STORE_SERIAL_LEN) != 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate %s: its TBS carries another serial", name);
	return P11CA_OK;
}

/* Everything store_cert_import refuses before it writes. */
static enum p11ca_err import_check(struct store_txn *txn, uint32_t ca_id,
				   const uint8_t serial[STORE_SERIAL_LEN], const uint8_t *der,
				   size_t der_len, uint8_t tbs_sha256[STORE_SHA256_LEN],
				   struct p11ca_errmsg *em)
{
	struct store_serial_hex sn = store_serial_hex(serial);
	struct store_der_cert c;
	P11CA_GUARD(store_der_cert_parse(der, der_len, sn.s, &c, em));
	P11CA_GUARD(import_serial_check(c.serial, c.serial_len, serial, sn.s, em));
	P11CA_GUARD(store_sha256(c.tbs, c.tbs_len, tbs_sha256, em));

	MDB_val v;
	uint8_t ca_key[STORE_KEY_CA];
	store_be32_put(ca_key, ca_id);
	enum p11ca_err err = store_raw_get(txn, STORE_DB_CAS, ca_key, sizeof(ca_key), &v, em);
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		return p11ca_fail(em, err, "no CA with id %u", ca_id);
	P11CA_GUARD(err);
	err = store_raw_get(txn, STORE_DB_SERIALS, serial, STORE_SERIAL_LEN, &v, em);
	if (err == P11CA_OK)
		return p11ca_fail(em, P11CA_E_STORAGE_EXISTS,
				  "serial %s is already known here: a certificate with this "
				  "serial was issued, imported or reserved before",
				  sn.s);
	return err == P11CA_E_STORAGE_NOT_FOUND ? P11CA_OK : err;
}

enum p11ca_err store_cert_import(struct store_txn *txn, uint32_t ca_id,
				 const uint8_t serial[STORE_SERIAL_LEN], const uint8_t *der,
				 size_t der_len, int64_t not_after, const char *profile,
				 const char *requester, const struct store_watcher *watchers,
				 size_t n, struct p11ca_errmsg *em)
{
	if (serial == NULL || der == NULL || ca_id == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_cert_import: missing argument");
	if (der_len == 0 || der_len > STORE_CERT_DER_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate %s: %zu bytes of DER (1 to %d accepted)",
				  store_serial_hex(serial).s, der_len, STORE_CERT_DER_MAX);
	P11CA_GUARD(store_txn_usable(txn, true, em));

	p11ca_storage_v1_SerialRecord srec = {
		.format = STORE_RECORD_FORMAT,
		.state = p11ca_storage_v1_SerialState_SERIAL_STATE_ISSUED,
		.ca_id = ca_id,
		.created = store_now(),
	};
	p11ca_storage_v1_CertRecord *crec = calloc(1, sizeof(*crec));
	if (crec == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "importing a certificate");
	enum p11ca_err err =
		store_str_copy(crec->profile, sizeof(crec->profile), profile, "profile name", em);
	if (err == P11CA_OK)
		err = store_str_copy(srec.requester, sizeof(srec.requester), requester, "requester",
				     em);
	if (err == P11CA_OK)
		err = store_watchers_to_rec(watchers, n, crec, em);
	if (err == P11CA_OK)
		err = import_check(txn, ca_id, serial, der, der_len, srec.tbs_sha256, em);
	if (err == P11CA_OK)
		err = store_quota_check(txn, em);
	if (err == P11CA_OK) {
		crec->format = STORE_RECORD_FORMAT;
		crec->ca_id = ca_id;
		memcpy(crec->serial, serial, STORE_SERIAL_LEN);
		memcpy(crec->der.bytes, der, der_len);
		crec->der.size = (pb_size_t)der_len;
		crec->not_after = not_after;
		memcpy(crec->requester, srec.requester, sizeof(crec->requester));
		crec->issued_at = srec.created;
		crec->imported = true;
		err = store_cert_write(txn, &srec, crec, em);
	}
	free(crec);
	return err;
}
