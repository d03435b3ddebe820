/*
 * The one bounded buffer for bytes that come from, or go to, outside the process.
 *
 * Modelled on OpenSSH's sshbuf and s2n's stuffer: an opaque handle with a hard size cap
 * fixed at creation, a read cursor and a write cursor, big-endian integer accessors and
 * checked arithmetic everywhere. Every check compares a length with what remains
 * (`len > max - wpos`), never `pos + len > end`, so no length — SIZE_MAX included — can
 * wrap around a bound.
 *
 *     0 <= rpos <= wpos <= max        readable: wpos - rpos    writable: max - wpos
 *
 * The cap counts every byte written since creation or the last reset: reading does not
 * make room. A buffer is one of
 *   - owned (p11ca_buf_new): storage allocated on first write and grown up to max;
 *   - borrowed read-only (p11ca_buf_from_const): reads the caller's bytes, refuses writes;
 *   - borrowed writable (p11ca_buf_wrap): writes into the caller's array, never reallocates.
 * A borrowed buffer never frees the memory it borrows; that memory must outlive it.
 *
 * P11CA_BUF_WIPE: the bytes are wiped (explicit_bzero) on reset, on free, and before any
 * reallocation moves them, so a secret never lingers in freed heap memory.
 *
 * Errors (every function returning enum p11ca_err):
 *   P11CA_E_INVALID_ARG      NULL buffer or pointer, a size of 0 or over P11CA_BUF_SIZE_MAX
 *   P11CA_E_PROTO_TRUNCATED  a read of more bytes than remain (nothing is consumed)
 *   P11CA_E_PROTO_TOO_LARGE  a write past the cap (nothing is written)
 *   P11CA_E_USAGE            a write to a read-only buffer
 *   P11CA_E_NOMEM            growing an owned buffer failed
 *   P11CA_E_INTERNAL         the handle's invariants are broken (memory corruption)
 * A failed call leaves the buffer and every output argument unchanged.
 *
 * Not thread-safe: one buffer, one thread at a time.
 */
#ifndef P11CA_COMMON_BUF_H
#define P11CA_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* The largest cap a buffer may have: 128 MiB. Far above any message p11ca exchanges, far
 * below SIZE_MAX, so a length that passed the cap can be doubled without overflow. */
#define P11CA_BUF_SIZE_MAX ((size_t)1 << 27)

/* Flags for p11ca_buf_new and p11ca_buf_wrap. */
#define P11CA_BUF_WIPE 0x1u

struct p11ca_buf; /* opaque */

/* An empty owned buffer that accepts up to `max` bytes (1..P11CA_BUF_SIZE_MAX). Nothing is
 * allocated for the contents until the first write. */
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_new(size_t max, unsigned flags, struct p11ca_buf **out);

/* A read-only view of data[0..len) (len may be 0; data may be NULL only then). */
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_from_const(const void *data, size_t len,
						     struct p11ca_buf **out);

/* An empty buffer writing into mem[0..cap) (cap 1..P11CA_BUF_SIZE_MAX); with
 * P11CA_BUF_WIPE, mem[0..cap) is wiped on reset and free. */
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_wrap(void *mem, size_t cap, unsigned flags,
					       struct p11ca_buf **out);

/* Wipe (if asked), release owned storage, free the handle and set *b to NULL. NULL-safe. */
void p11ca_buf_free(struct p11ca_buf **b);

/* Empty a writable buffer (wiping it if asked) so the full cap is available again; keeps
 * owned storage. P11CA_E_USAGE on a read-only buffer (use p11ca_buf_rewind). */
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_reset(struct p11ca_buf *b);

/* Move the read cursor back to the first byte written, to read everything again. */
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_rewind(struct p11ca_buf *b);

/* Bytes left to read, bytes that may still be written, and the cap. 0 for NULL. */
size_t p11ca_buf_len(const struct p11ca_buf *b);
size_t p11ca_buf_avail(const struct p11ca_buf *b);
size_t p11ca_buf_max(const struct p11ca_buf *b);

/* The next byte to read, for handing the readable bytes to a decoder in place. Valid
 * until the next write, reset or free; NULL when nothing has been written. */
const uint8_t *p11ca_buf_ptr(const struct p11ca_buf *b);

/* P11CA_OK when at least `len` bytes remain to be read, else P11CA_E_PROTO_TRUNCATED. */
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_need(const struct p11ca_buf *b, size_t len);

/* Skip `len` readable bytes. */
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_consume(struct p11ca_buf *b, size_t len);

/* Read big-endian integers and raw bytes, advancing the read cursor. */
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_get_u8(struct p11ca_buf *b, uint8_t *v);
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_get_u16(struct p11ca_buf *b, uint16_t *v);
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_get_u32(struct p11ca_buf *b, uint32_t *v);
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_get_u64(struct p11ca_buf *b, uint64_t *v);
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_get_bytes(struct p11ca_buf *b, void *dst, size_t len);

/* Append big-endian integers and raw bytes. */
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_put_u8(struct p11ca_buf *b, uint8_t v);
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_put_u16(struct p11ca_buf *b, uint16_t v);
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_put_u32(struct p11ca_buf *b, uint32_t v);
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_put_u64(struct p11ca_buf *b, uint64_t v);
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_put(struct p11ca_buf *b, const void *src, size_t len);

/* Append `len` zero bytes and return a pointer to them in *dst, for a producer that writes
 * in place (an encoder, read(2)). *dst is valid until the next write, reset or free, and
 * only for `len` bytes. len may be 0 (then *dst may be NULL). */
P11CA_MUST_CHECK enum p11ca_err p11ca_buf_reserve(struct p11ca_buf *b, size_t len, uint8_t **dst);

#endif
