/*
 * Serial prefix lookup for the engine's selectors ("p11ca cert view 3FA2"): a cursor range
 * on `serials`, which holds every serial ever burned in key (= numeric = hex) order.
 */
#include "storage/store_internal.h"

#include <string.h>

/* Whether the first `nibbles` hex digits of serial equal those of prefix. */
static bool prefix_match(const uint8_t *serial, const uint8_t *prefix, size_t nibbles)
{
	size_t whole = nibbles / 2;
	if (memcmp(serial, prefix, whole) != 0)
		return false;
	if (nibbles % 2 == 0)
		return true;
	return (serial[whole] & 0xf0) == (prefix[whole] & 0xf0);
}

enum p11ca_err store_serial_find_prefix(struct store_txn *txn, const uint8_t *prefix_bytes,
					size_t nibbles, uint8_t (*out)[STORE_SERIAL_LEN],
					size_t cap, size_t *n, struct p11ca_errmsg *em)
{
	if (prefix_bytes == NULL || n == NULL || (out == NULL && cap > 0))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "store_serial_find_prefix: NULL argument");
	if (nibbles == 0 || nibbles > 2 * STORE_SERIAL_LEN)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "a serial prefix has 1 to %d hex digits, not %zu",
				  2 * STORE_SERIAL_LEN, nibbles);
	P11CA_GUARD(store_txn_usable(txn, false, em));

	/* The smallest key with the prefix: its digits, then zeros. */
	uint8_t low[STORE_SERIAL_LEN] = {0};
	memcpy(low, prefix_bytes, (nibbles + 1) / 2);
	if (nibbles % 2 != 0)
		low[nibbles / 2] &= 0xf0;

	MDB_cursor *cur = NULL;
	P11CA_GUARD(store_cursor_open(txn, STORE_DB_SERIALS, &cur, em));
	MDB_val k = {.mv_size = sizeof(low), .mv_data = low}, v;
	size_t found = 0;
	enum p11ca_err err;
	for (err = store_cursor_get(txn, cur, &k, &v, MDB_SET_RANGE, em); err == P11CA_OK;
	     err = store_cursor_get(txn, cur, &k, &v, MDB_NEXT, em)) {
		if (k.mv_size != STORE_SERIAL_LEN) {
			err = store_rec_corrupt(STORE_DB_SERIALS, "key of the wrong size", em);
			break;
		}
		if (!prefix_match(k.mv_data, low, nibbles))
			break;
		if (found < cap)
			memcpy(out[found], k.mv_data, STORE_SERIAL_LEN);
		/* One more than the caller can hold is enough to call the prefix ambiguous. */
		if (++found > cap)
			break;
	}
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		err = P11CA_OK;
	store_cursor_close(&cur);
	if (err == P11CA_OK)
		*n = found;
	return err;
}
