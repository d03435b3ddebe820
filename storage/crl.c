/*
 * CRLs: crls[ca u32 BE ‖ scope u32 BE] = varint length ‖ CrlHeader ‖ CRL DER, and the
 * per-CA CRL number counter kept in the CA record.
 *
 * A CRL can be megabytes, far beyond what a static nanopb field should hold; so the DER
 * follows a length-delimited header, and readers (the responder) get a pointer into the
 * map to send as is.
 */
#include "storage/store_internal.h"

#include <pb_decode.h>
#include <pb_encode.h>
#include <stdlib.h>
#include <string.h>

#include "common/kconfig.h"

#define CRL_MAX_SIZE ((size_t)CONFIG_STORE_CRL_MAX_KB * 1024)

static void crl_key(uint8_t key[STORE_KEY_CRL], uint32_t ca_id, uint32_t scope)
{
	store_be32_put(key, ca_id);
	store_be32_put(key + STORE_KEY_CA, scope);
}

enum p11ca_err store_crl_number_next(struct store_txn *txn, uint32_t ca_id, uint64_t *number,
				     struct p11ca_errmsg *em)
{
	if (number == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_crl_number_next: no output");
	P11CA_GUARD(store_txn_usable(txn, true, em));
	p11ca_storage_v1_CaRecord *rec = malloc(sizeof(*rec));
	if (rec == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "allocating a CRL number");
	enum p11ca_err err = store_ca_rec_get(txn, ca_id, rec, em);
	if (err == P11CA_OK && rec->crl_number == UINT64_MAX)
		err = p11ca_fail(em, P11CA_E_STORAGE_FULL, "CA %u has used every CRL number",
				 ca_id);
	if (err == P11CA_OK) {
		rec->crl_number++;
		err = store_ca_rec_put(txn, rec, em);
	}
	if (err == P11CA_OK)
		*number = rec->crl_number;
	free(rec);
	return err;
}

/* Decode a stored value into its header and the DER that follows it. */
static enum p11ca_err crl_decode(const MDB_val *v, struct store_crl *out, struct p11ca_errmsg *em)
{
	p11ca_storage_v1_CrlHeader hdr = p11ca_storage_v1_CrlHeader_init_zero;
	pb_istream_t is = pb_istream_from_buffer(v->mv_data, v->mv_size);
	if (!pb_decode_ex(&is, p11ca_storage_v1_CrlHeader_fields, &hdr, PB_DECODE_DELIMITED))
		return store_rec_corrupt(STORE_DB_CRLS, "CRL header does not decode", em);
	P11CA_GUARD(store_rec_format(hdr.format, STORE_DB_CRLS, em));
	if (hdr.der_size != is.bytes_left || hdr.der_size == 0)
		return store_rec_corrupt(STORE_DB_CRLS, "CRL size differs from its header", em);
	out->number = hdr.number;
	out->this_update = hdr.this_update;
	out->next_update = hdr.next_update;
	out->der = (const uint8_t *)v->mv_data + (v->mv_size - is.bytes_left);
	out->der_len = is.bytes_left;
	return P11CA_OK;
}

static enum p11ca_err crl_check_args(uint64_t number, int64_t this_update, int64_t next_update,
				     const uint8_t *der, size_t der_len, struct p11ca_errmsg *em)
{
	uint8_t tag;
	const uint8_t *body;
	size_t body_len, total;
	if (der == NULL || der_len == 0 || der_len > CRL_MAX_SIZE)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "CRL %llu: %zu bytes (1 to %zu accepted; raise "
				  "CONFIG_STORE_CRL_MAX_KB for larger CRLs)",
				  (unsigned long long)number, der_len, CRL_MAX_SIZE);
	if (!store_der_tlv(der, der_len, &tag, &body, &body_len, &total) || tag != 0x30 ||
	    total != der_len)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "CRL %llu: not one DER SEQUENCE",
				  (unsigned long long)number);
	if (next_update != 0 && next_update < this_update)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "CRL %llu: nextUpdate before thisUpdate",
				  (unsigned long long)number);
	return P11CA_OK;
}

static enum p11ca_err crl_write(struct store_txn *txn, const uint8_t key[STORE_KEY_CRL],
				const p11ca_storage_v1_CrlHeader *hdr, const uint8_t *der,
				size_t der_len, struct p11ca_errmsg *em)
{
	pb_ostream_t sizing = PB_OSTREAM_SIZING;
	if (!pb_encode_ex(&sizing, p11ca_storage_v1_CrlHeader_fields, hdr, PB_ENCODE_DELIMITED))
		return p11ca_fail(em, P11CA_E_INTERNAL, "CRL header does not encode");
	size_t hsize = sizing.bytes_written;
	void *dst = NULL;
	P11CA_GUARD(store_raw_reserve(txn, STORE_DB_CRLS, key, STORE_KEY_CRL, hsize + der_len, &dst,
				      em));
	pb_ostream_t os = pb_ostream_from_buffer(dst, hsize);
	if (!pb_encode_ex(&os, p11ca_storage_v1_CrlHeader_fields, hdr, PB_ENCODE_DELIMITED) ||
	    os.bytes_written != hsize) {
		txn->dead = P11CA_E_INTERNAL; /* reserved bytes left as garbage */
		return p11ca_fail(em, P11CA_E_INTERNAL, "encoding a CRL header failed");
	}
	memcpy((uint8_t *)dst + hsize, der, der_len); /* bounded: reserved hsize + der_len */
	return P11CA_OK;
}

enum p11ca_err store_crl_put(struct store_txn *txn, uint32_t ca_id, uint32_t scope, uint64_t number,
			     int64_t this_update, int64_t next_update, const uint8_t *der,
			     size_t der_len, struct p11ca_errmsg *em)
{
	P11CA_GUARD(crl_check_args(number, this_update, next_update, der, der_len, em));
	P11CA_GUARD(store_txn_usable(txn, true, em));

	p11ca_storage_v1_CaRecord *ca = malloc(sizeof(*ca));
	if (ca == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "storing a CRL");
	enum p11ca_err err = store_ca_rec_get(txn, ca_id, ca, em);
	uint64_t allocated = err == P11CA_OK ? ca->crl_number : 0;
	free(ca);
	P11CA_GUARD(err);
	if (number == 0 || number > allocated)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "CRL number %llu of CA %u was not allocated (last allocated: "
				  "%llu): use store_crl_number_next",
				  (unsigned long long)number, ca_id, (unsigned long long)allocated);

	uint8_t key[STORE_KEY_CRL];
	crl_key(key, ca_id, scope);
	MDB_val v;
	err = store_raw_get(txn, STORE_DB_CRLS, key, sizeof(key), &v, em);
	if (err == P11CA_OK) {
		struct store_crl old;
		P11CA_GUARD(crl_decode(&v, &old, em));
		if (number <= old.number)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "CRL number %llu of CA %u scope %u is not above the "
					  "stored %llu",
					  (unsigned long long)number, ca_id, scope,
					  (unsigned long long)old.number);
	} else if (err != P11CA_E_STORAGE_NOT_FOUND) {
		return err;
	}

	p11ca_storage_v1_CrlHeader hdr = {
		.format = STORE_RECORD_FORMAT,
		.number = number,
		.this_update = this_update,
		.next_update = next_update,
		.der_size = (uint32_t)der_len,
	};
	return crl_write(txn, key, &hdr, der, der_len, em);
}

enum p11ca_err store_crl_get(struct store_txn *txn, uint32_t ca_id, uint32_t scope,
			     struct store_crl *out, struct p11ca_errmsg *em)
{
	if (out == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_crl_get: no output");
	P11CA_GUARD(store_txn_usable(txn, false, em));
	uint8_t key[STORE_KEY_CRL];
	crl_key(key, ca_id, scope);
	MDB_val v;
	enum p11ca_err err = store_raw_get(txn, STORE_DB_CRLS, key, sizeof(key), &v, em);
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		return p11ca_fail(em, err, "CA %u has no CRL for scope %u yet", ca_id, scope);
	P11CA_GUARD(err);
	return crl_decode(&v, out, em);
}
