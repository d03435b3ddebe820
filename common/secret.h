/*
 * Secrets (PINs, passwords) in locked memory.
 *
 * A p11ca_secret lives in its own anonymous mapping that is mlock()ed (never swapped),
 * excluded from core dumps (MADV_DONTDUMP) and not inherited by children
 * (MADV_WIPEONFORK), and is wiped before it is unmapped. Failure to lock is an error,
 * not a warning: hardening is not optional.
 *
 * Secrets are never formatted into log lines or error messages.
 */
#ifndef P11CA_COMMON_SECRET_H
#define P11CA_COMMON_SECRET_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct p11ca_secret; /* opaque */

/* Allocate an empty secret able to hold `capacity` bytes (1..65536).
 * Errors: P11CA_E_INVALID_ARG (capacity), P11CA_E_NOMEM (mmap or mlock failed; the text
 * says to raise RLIMIT_MEMLOCK / LimitMEMLOCK=). */
P11CA_MUST_CHECK enum p11ca_err p11ca_secret_new(size_t capacity, struct p11ca_secret **out,
						 struct p11ca_errmsg *em);

/* Replace the contents with a copy of data[0..len). P11CA_E_INVALID_ARG when len exceeds
 * the capacity (the secret is then left empty, not truncated). */
P11CA_MUST_CHECK enum p11ca_err p11ca_secret_set(struct p11ca_secret *s, const void *data,
						 size_t len, struct p11ca_errmsg *em);

/* Borrowed view of the bytes, valid until the next set/free. Not NUL-terminated. */
const uint8_t *p11ca_secret_data(const struct p11ca_secret *s);
size_t p11ca_secret_len(const struct p11ca_secret *s);
size_t p11ca_secret_capacity(const struct p11ca_secret *s);

/* Writable view for filling in place (e.g. read(2) straight into locked memory); call
 * p11ca_secret_set_len afterwards. */
uint8_t *p11ca_secret_buffer(struct p11ca_secret *s);
void p11ca_secret_set_len(struct p11ca_secret *s, size_t len);

/* Wipe the contents, keep the allocation. */
void p11ca_secret_wipe(struct p11ca_secret *s);

/* Wipe, unlock, unmap, and set *s to NULL. NULL-safe. */
void p11ca_secret_free(struct p11ca_secret **s);

#endif
