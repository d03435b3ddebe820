/*
 * CAs: cas[id u32 BE] -> CaRecord. Ids are assigned here (last id + 1) and never reused,
 * since CAs are never deleted, only disabled or retired. Names are unique; a deployment
 * has tens of CAs, so a name lookup walks the table instead of keeping an index that
 * could drift from it.
 */
#include "storage/store_internal.h"

#include <stdlib.h>
#include <string.h>

static bool ca_state_valid(uint32_t state)
{
	return state >= STORE_CA_PENDING && state <= STORE_CA_RETIRED;
}

static enum p11ca_err ca_rec_check(const p11ca_storage_v1_CaRecord *r, uint32_t key_id,
				   struct p11ca_errmsg *em)
{
	P11CA_GUARD(store_rec_format(r->format, STORE_DB_CAS, em));
	if (r->id != key_id || r->name[0] == '\0' || !ca_state_valid(r->state) ||
	    r->subject_der.size == 0)
		return store_rec_corrupt(STORE_DB_CAS, "CA record does not fit its key", em);
	return P11CA_OK;
}

/* r has passed ca_rec_check. */
static void ca_from_rec(const p11ca_storage_v1_CaRecord *r, struct store_ca *out)
{
	out->id = r->id;
	memcpy(out->name, r->name, sizeof(out->name));
	memcpy(out->subject_der, r->subject_der.bytes, r->subject_der.size);
	out->subject_der_len = r->subject_der.size;
	memcpy(out->cert_der, r->cert_der.bytes, r->cert_der.size);
	out->cert_der_len = r->cert_der.size;
	memcpy(out->key_backend, r->key_backend, sizeof(out->key_backend));
	memcpy(out->key_uri, r->key_uri, sizeof(out->key_uri));
	out->parent_id = r->parent_id;
	out->state = (enum store_ca_state)r->state;
	out->created = r->created;
	out->crl_number = r->crl_number;
	memcpy(out->settings, r->settings.bytes, r->settings.size);
	out->settings_len = r->settings.size;
}

enum p11ca_err store_ca_rec_get(struct store_txn *txn, uint32_t id, p11ca_storage_v1_CaRecord *rec,
				struct p11ca_errmsg *em)
{
	uint8_t key[STORE_KEY_CA];
	store_be32_put(key, id);
	enum p11ca_err err = store_rec_get(txn, STORE_DB_CAS, key, sizeof(key),
					   p11ca_storage_v1_CaRecord_fields, rec, em);
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		return p11ca_fail(em, err, "no CA with id %u", id);
	P11CA_GUARD(err);
	return ca_rec_check(rec, id, em);
}

enum p11ca_err store_ca_rec_put(struct store_txn *txn, const p11ca_storage_v1_CaRecord *rec,
				struct p11ca_errmsg *em)
{
	uint8_t key[STORE_KEY_CA];
	store_be32_put(key, rec->id);
	return store_rec_put(txn, STORE_DB_CAS, key, sizeof(key), p11ca_storage_v1_CaRecord_fields,
			     rec, em);
}

/* Walk cas in id order, decoding each record; visit returns non-zero to stop. */
static enum p11ca_err ca_walk(struct store_txn *txn,
			      int (*visit)(void *arg, const struct store_ca *ca), void *arg,
			      struct p11ca_errmsg *em)
{
	MDB_cursor *cur = NULL;
	struct {
		p11ca_storage_v1_CaRecord rec;
		struct store_ca ca;
	} *w = NULL;
	enum p11ca_err err = store_cursor_open(txn, STORE_DB_CAS, &cur, em);
	if (err != P11CA_OK)
		goto out;
	w = malloc(sizeof(*w));
	if (w == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "walking CAs");
		goto out;
	}
	MDB_val k, v;
	for (err = store_cursor_get(txn, cur, &k, &v, MDB_FIRST, em); err == P11CA_OK;
	     err = store_cursor_get(txn, cur, &k, &v, MDB_NEXT, em)) {
		if (k.mv_size != STORE_KEY_CA) {
			err = store_rec_corrupt(STORE_DB_CAS, "key of the wrong size", em);
			goto out;
		}
		err = store_rec_decode(&v, STORE_DB_CAS, p11ca_storage_v1_CaRecord_fields, &w->rec,
				       em);
		if (err == P11CA_OK)
			err = ca_rec_check(&w->rec, store_be32_get(k.mv_data), em);
		if (err != P11CA_OK)
			goto out;
		ca_from_rec(&w->rec, &w->ca);
		if (visit(arg, &w->ca) != 0)
			break;
	}
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		err = P11CA_OK; /* the end of the table */
out:
	free(w);
	store_cursor_close(&cur);
	return err;
}

struct name_search {
	const char *name;
	uint32_t except_id; /* 0: none */
	struct store_ca *out;
	bool found;
};

static int name_visit(void *arg, const struct store_ca *ca)
{
	struct name_search *s = arg;
	if (ca->id == s->except_id || strcmp(ca->name, s->name) != 0)
		return 0;
	if (s->out != NULL)
		memcpy(s->out, ca, sizeof(*ca));
	s->found = true;
	return 1;
}

static enum p11ca_err ca_validate(const struct store_ca *ca, struct p11ca_errmsg *em)
{
	if (ca->name[0] == '\0' || strnlen(ca->name, sizeof(ca->name)) == sizeof(ca->name))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "CA name empty or over %d bytes",
				  STORE_CA_NAME_MAX);
	if (ca->subject_der_len == 0 || ca->subject_der_len > sizeof(ca->subject_der))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "CA '%s': subject DER missing or over %d bytes", ca->name,
				  STORE_SUBJECT_DER_MAX);
	if (ca->cert_der_len > sizeof(ca->cert_der))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "CA '%s': certificate over %d bytes",
				  ca->name, STORE_CERT_DER_MAX);
	if (strnlen(ca->key_backend, sizeof(ca->key_backend)) == sizeof(ca->key_backend) ||
	    strnlen(ca->key_uri, sizeof(ca->key_uri)) == sizeof(ca->key_uri))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "CA '%s': key backend or key URI not terminated", ca->name);
	if (!ca_state_valid(ca->state))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "CA '%s': invalid state %d", ca->name,
				  (int)ca->state);
	if (ca->settings_len > sizeof(ca->settings))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "CA '%s': settings over %d bytes",
				  ca->name, STORE_CA_SETTINGS_MAX);
	return P11CA_OK;
}

/* Fill rec from ca (already validated), keeping what the caller may not set. */
static void ca_to_rec(const struct store_ca *ca, uint32_t id, int64_t created, uint64_t crl_number,
		      p11ca_storage_v1_CaRecord *rec)
{
	memset(rec, 0, sizeof(*rec));
	rec->format = STORE_RECORD_FORMAT;
	rec->id = id;
	memcpy(rec->name, ca->name, sizeof(rec->name));
	memcpy(rec->subject_der.bytes, ca->subject_der, ca->subject_der_len);
	rec->subject_der.size = (pb_size_t)ca->subject_der_len;
	memcpy(rec->cert_der.bytes, ca->cert_der, ca->cert_der_len);
	rec->cert_der.size = (pb_size_t)ca->cert_der_len;
	memcpy(rec->key_backend, ca->key_backend, sizeof(rec->key_backend));
	memcpy(rec->key_uri, ca->key_uri, sizeof(rec->key_uri));
	rec->parent_id = ca->parent_id;
	rec->state = (p11ca_storage_v1_CaState)ca->state;
	rec->created = created;
	rec->crl_number = crl_number;
	memcpy(rec->settings.bytes, ca->settings, ca->settings_len);
	rec->settings.size = (pb_size_t)ca->settings_len;
}

static enum p11ca_err ca_next_id(struct store_txn *txn, uint32_t *id, struct p11ca_errmsg *em)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	P11CA_GUARD(store_cursor_open(txn, STORE_DB_CAS, &cur, em));
	enum p11ca_err err = store_cursor_get(txn, cur, &k, &v, MDB_LAST, em);
	*id = 1;
	if (err == P11CA_OK && k.mv_size != STORE_KEY_CA)
		err = store_rec_corrupt(STORE_DB_CAS, "key of the wrong size", em);
	else if (err == P11CA_OK && store_be32_get(k.mv_data) == UINT32_MAX)
		err = p11ca_fail(em, P11CA_E_STORAGE_FULL, "no CA id left");
	else if (err == P11CA_OK)
		*id = store_be32_get(k.mv_data) + 1;
	else if (err == P11CA_E_STORAGE_NOT_FOUND)
		err = P11CA_OK; /* first CA */
	store_cursor_close(&cur);
	return err;
}

enum p11ca_err store_ca_put(struct store_txn *txn, struct store_ca *ca, struct p11ca_errmsg *em)
{
	if (ca == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_ca_put: no CA");
	P11CA_GUARD(store_txn_usable(txn, true, em));
	P11CA_GUARD(ca_validate(ca, em));

	p11ca_storage_v1_CaRecord *rec = malloc(sizeof(*rec));
	if (rec == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "storing CA '%s'", ca->name);
	uint32_t id = ca->id;
	int64_t created = store_now();
	uint64_t crl_number = 0;
	struct name_search s = {.name = ca->name, .except_id = ca->id};
	enum p11ca_err err = P11CA_OK;

	if (id == 0) {
		err = store_quota_check(txn, em);
		if (err == P11CA_OK)
			err = ca_next_id(txn, &id, em);
	} else {
		err = store_ca_rec_get(txn, id, rec, em);
		if (err == P11CA_OK) {
			created = rec->created;
			crl_number = rec->crl_number; /* only store_crl_number_next moves it */
		}
	}
	if (err == P11CA_OK)
		err = ca_walk(txn, name_visit, &s, em);
	if (err == P11CA_OK && s.found)
		err = p11ca_fail(em, P11CA_E_STORAGE_EXISTS, "a CA named '%s' already exists",
				 ca->name);
	if (err == P11CA_OK && ca->parent_id != 0 && ca->parent_id == id)
		err = p11ca_fail(em, P11CA_E_INVALID_ARG, "CA '%s' cannot be its own parent",
				 ca->name);
	if (err == P11CA_OK && ca->parent_id != 0) {
		err = store_ca_rec_get(txn, ca->parent_id, rec, em);
		if (err == P11CA_E_STORAGE_NOT_FOUND)
			err = p11ca_fail(em, err, "CA '%s': parent CA %u does not exist", ca->name,
					 ca->parent_id);
	}
	if (err == P11CA_OK) {
		ca_to_rec(ca, id, created, crl_number, rec);
		err = store_ca_rec_put(txn, rec, em);
	}
	if (err == P11CA_OK) {
		ca->id = id;
		ca->created = created;
		ca->crl_number = crl_number;
	}
	free(rec);
	return err;
}

enum p11ca_err store_ca_get(struct store_txn *txn, uint32_t id, struct store_ca *out,
			    struct p11ca_errmsg *em)
{
	if (out == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_ca_get: no output");
	P11CA_GUARD(store_txn_usable(txn, false, em));
	p11ca_storage_v1_CaRecord *rec = malloc(sizeof(*rec));
	if (rec == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "reading CA %u", id);
	enum p11ca_err err = store_ca_rec_get(txn, id, rec, em);
	if (err == P11CA_OK)
		ca_from_rec(rec, out);
	free(rec);
	return err;
}

enum p11ca_err store_ca_get_by_name(struct store_txn *txn, const char *name, struct store_ca *out,
				    struct p11ca_errmsg *em)
{
	if (name == NULL || out == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_ca_get_by_name: NULL argument");
	P11CA_GUARD(store_txn_usable(txn, false, em));
	struct name_search s = {.name = name, .out = out};
	P11CA_GUARD(ca_walk(txn, name_visit, &s, em));
	if (!s.found)
		return p11ca_fail(em, P11CA_E_STORAGE_NOT_FOUND, "no CA named '%s'", name);
	return P11CA_OK;
}

enum p11ca_err store_ca_list(struct store_txn *txn, int (*fn)(void *arg, const struct store_ca *ca),
			     void *arg, struct p11ca_errmsg *em)
{
	if (fn == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_ca_list: no callback");
	P11CA_GUARD(store_txn_usable(txn, false, em));
	return ca_walk(txn, fn, arg, em);
}
