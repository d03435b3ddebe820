/*
 * Expiry watchers, kept inside the certificate record: a certificate has at most a few, and
 * the notifier reads them together with the notAfter it already walks by_expiry for, so a
 * separate index would only be something else to keep consistent.
 */
#include "storage/store_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static enum p11ca_err watcher_check(const struct store_watcher *w, size_t i,
				    struct p11ca_errmsg *em)
{
	size_t len = strnlen(w->email, sizeof(w->email));
	if (len == 0 || len == sizeof(w->email))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "watcher %zu: an e-mail address has 1 to %d bytes", i + 1,
				  STORE_EMAIL_MAX);
	/* The notifier hands the address to a mail command as an argument: one starting
	 * with '-' could be taken for an option. */
	if (w->email[0] == '-')
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "watcher %zu: the e-mail address starts with '-': give one like "
				  "user@example.com",
				  i + 1);
	/* The notifier puts the address into a mail header: a line break there would let
	 * it add headers of its own. */
	for (size_t j = 0; j < len; j++) {
		unsigned char c = (unsigned char)w->email[j];
		if (c < 0x20 || c == 0x7f)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "watcher %zu: the e-mail address contains a control "
					  "character",
					  i + 1);
	}
	return P11CA_OK;
}

enum p11ca_err store_watchers_to_rec(const struct store_watcher *w, size_t n,
				     p11ca_storage_v1_CertRecord *rec, struct p11ca_errmsg *em)
{
	if (n > STORE_WATCHERS_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%zu watchers: a certificate has at most %d", n,
				  STORE_WATCHERS_MAX);
	if (n > 0 && w == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "watchers: NULL list");
	for (size_t i = 0; i < n; i++) {
		P11CA_GUARD(watcher_check(&w[i], i, em));
		for (size_t j = 0; j < i; j++)
			if (strcasecmp(w[i].email, w[j].email) == 0)
				return p11ca_fail(em, P11CA_E_INVALID_ARG,
						  "watcher %s is listed twice", w[i].email);
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(rec->watchers[i].email, w[i].email, sizeof(rec->watchers[i].email));
		rec->watchers[i].notified_days = w[i].notified_days;
	}
	rec->watchers_count = (pb_size_t)n;
	return P11CA_OK;
}

enum p11ca_err store_cert_watchers_set(struct store_txn *txn, uint32_t ca_id,
				       const uint8_t serial[STORE_SERIAL_LEN],
				       const struct store_watcher *watchers, size_t n,
				       struct p11ca_errmsg *em)
{
	if (serial == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_cert_watchers_set: no serial");
	P11CA_GUARD(store_txn_usable(txn, true, em));

	p11ca_storage_v1_CertRecord *rec = malloc(sizeof(*rec));
	if (rec == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "setting watchers");
	uint8_t key[STORE_KEY_CA_SERIAL];
	store_key_ca_serial(key, ca_id, serial);
	/* Check the list before reading, so a refusal never depends on what is stored. */
	enum p11ca_err err = store_watchers_to_rec(watchers, n, rec, em);
	if (err == P11CA_OK)
		err = store_cert_rec_get(txn, ca_id, serial, rec, em);
	if (err == P11CA_OK)
		err = store_watchers_to_rec(watchers, n, rec, em);
	if (err == P11CA_OK)
		err = store_rec_put(txn, STORE_DB_CERTS, key, sizeof(key),
				    p11ca_storage_v1_CertRecord_fields, rec, em);
	free(rec);
	return err;
}
