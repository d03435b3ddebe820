#include "common/buf.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define BUF_OWNED      0x100u /* d was allocated here and is freed here */
#define BUF_READONLY   0x200u /* borrowed const bytes: writes are refused */
#define BUF_USER_FLAGS P11CA_BUF_WIPE

/* The first allocation of an owned buffer; it then doubles up to max. */
#define BUF_INITIAL_ALLOC 256

struct p11ca_buf {
	uint8_t *d;
	size_t cap;  /* bytes usable at d: allocated (owned) or borrowed */
	size_t max;  /* hard cap on wpos */
	size_t rpos; /* next byte to read */
	size_t wpos; /* next byte to write */
	unsigned flags;
};

/* The invariants every function relies on; a violation means memory corruption, so it is
 * reported rather than worked around (sshbuf_check_sanity does the same). */
P11CA_MUST_CHECK static enum p11ca_err buf_check(const struct p11ca_buf *b)
{
	if (b == NULL)
		return P11CA_E_INVALID_ARG;
	if (b->max == 0 || b->max > P11CA_BUF_SIZE_MAX || b->cap > b->max || b->wpos > b->cap ||
	    b->rpos > b->wpos || (b->d == NULL && b->cap != 0))
		return P11CA_E_INTERNAL;
	return P11CA_OK;
}

P11CA_MUST_CHECK static enum p11ca_err buf_alloc(size_t max, unsigned flags, struct p11ca_buf **out)
{
	if (out == NULL)
		return P11CA_E_INVALID_ARG;
	*out = NULL;
	if (max == 0 || max > P11CA_BUF_SIZE_MAX || (flags & ~BUF_USER_FLAGS) != 0)
		return P11CA_E_INVALID_ARG;
	struct p11ca_buf *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return P11CA_E_NOMEM;
	b->max = max;
	b->flags = flags;
	*out = b;
	return P11CA_OK;
}

enum p11ca_err p11ca_buf_new(size_t max, unsigned flags, struct p11ca_buf **out)
{
	P11CA_GUARD(buf_alloc(max, flags, out));
	(*out)->flags |= BUF_OWNED;
	return P11CA_OK;
}

enum p11ca_err p11ca_buf_from_const(const void *data, size_t len, struct p11ca_buf **out)
{
	if (out != NULL)
		*out = NULL;
	if (data == NULL && len != 0)
		return P11CA_E_INVALID_ARG;
	/* An empty view still needs a non-zero max to satisfy the invariants. */
	P11CA_GUARD(buf_alloc(len == 0 ? 1 : len, 0, out));
	struct p11ca_buf *b = *out;
	b->flags |= BUF_READONLY;
	/* Casting const away is safe: BUF_READONLY refuses every write. */
	b->d = len == 0 ? NULL : (uint8_t *)(uintptr_t)data;
	b->cap = len;
	b->wpos = len;
	return P11CA_OK;
}

enum p11ca_err p11ca_buf_wrap(void *mem, size_t cap, unsigned flags, struct p11ca_buf **out)
{
	if (out != NULL)
		*out = NULL;
	if (mem == NULL)
		return P11CA_E_INVALID_ARG;
	P11CA_GUARD(buf_alloc(cap, flags, out));
	(*out)->d = mem;
	(*out)->cap = cap;
	return P11CA_OK;
}

void p11ca_buf_free(struct p11ca_buf **bp)
{
	if (bp == NULL || *bp == NULL)
		return;
	struct p11ca_buf *b = *bp;
	if ((b->flags & P11CA_BUF_WIPE) && b->d != NULL)
		explicit_bzero(b->d, b->cap);
	if (b->flags & BUF_OWNED)
		free(b->d);
	explicit_bzero(b, sizeof(*b));
	free(b);
	*bp = NULL;
}

enum p11ca_err p11ca_buf_reset(struct p11ca_buf *b)
{
	P11CA_GUARD(buf_check(b));
	if (b->flags & BUF_READONLY)
		return P11CA_E_USAGE;
	if ((b->flags & P11CA_BUF_WIPE) && b->d != NULL)
		explicit_bzero(b->d, b->cap);
	b->rpos = 0;
	b->wpos = 0;
	return P11CA_OK;
}

enum p11ca_err p11ca_buf_rewind(struct p11ca_buf *b)
{
	P11CA_GUARD(buf_check(b));
	b->rpos = 0;
	return P11CA_OK;
}

size_t p11ca_buf_len(const struct p11ca_buf *b)
{
	return buf_check(b) == P11CA_OK ? b->wpos - b->rpos : 0;
}

size_t p11ca_buf_avail(const struct p11ca_buf *b)
{
	if (buf_check(b) != P11CA_OK || (b->flags & BUF_READONLY))
		return 0;
	return b->max - b->wpos;
}

size_t p11ca_buf_max(const struct p11ca_buf *b)
{
	return buf_check(b) == P11CA_OK ? b->max : 0;
}

const uint8_t *p11ca_buf_ptr(const struct p11ca_buf *b)
{
	if (buf_check(b) != P11CA_OK || b->d == NULL)
		return NULL;
	return b->d + b->rpos;
}

enum p11ca_err p11ca_buf_need(const struct p11ca_buf *b, size_t len)
{
	P11CA_GUARD(buf_check(b));
	return len > b->wpos - b->rpos ? P11CA_E_PROTO_TRUNCATED : P11CA_OK;
}

enum p11ca_err p11ca_buf_consume(struct p11ca_buf *b, size_t len)
{
	P11CA_GUARD(p11ca_buf_need(b, len));
	b->rpos += len;
	return P11CA_OK;
}

enum p11ca_err p11ca_buf_get_bytes(struct p11ca_buf *b, void *dst, size_t len)
{
	if (dst == NULL && len != 0)
		return P11CA_E_INVALID_ARG;
	P11CA_GUARD(p11ca_buf_need(b, len));
	if (len != 0)
		memcpy(dst, b->d + b->rpos, len);
	b->rpos += len;
	return P11CA_OK;
}

/* Read n (1..8) bytes as a big-endian integer. */
P11CA_MUST_CHECK static enum p11ca_err buf_get_be(struct p11ca_buf *b, size_t n, uint64_t *v)
{
	P11CA_GUARD(p11ca_buf_need(b, n));
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++)
		x = (x << 8) | b->d[b->rpos + i];
	b->rpos += n;
	*v = x;
	return P11CA_OK;
}

enum p11ca_err p11ca_buf_get_u8(struct p11ca_buf *b, uint8_t *v)
{
	uint64_t x;
	if (v == NULL)
		return P11CA_E_INVALID_ARG;
	P11CA_GUARD(buf_get_be(b, 1, &x));
	*v = (uint8_t)x;
	return P11CA_OK;
}

enum p11ca_err p11ca_buf_get_u16(struct p11ca_buf *b, uint16_t *v)
{
	uint64_t x;
	if (v == NULL)
		return P11CA_E_INVALID_ARG;
	P11CA_GUARD(buf_get_be(b, 2, &x));
	*v = (uint16_t)x;
	return P11CA_OK;
}

enum p11ca_err p11ca_buf_get_u32(struct p11ca_buf *b, uint32_t *v)
{
	uint64_t x;
	if (v == NULL)
		return P11CA_E_INVALID_ARG;
	P11CA_GUARD(buf_get_be(b, 4, &x));
	*v = (uint32_t)x;
	return P11CA_OK;
}

enum p11ca_err p11ca_buf_get_u64(struct p11ca_buf *b, uint64_t *v)
{
	if (v == NULL)
		return P11CA_E_INVALID_ARG;
	return buf_get_be(b, 8, v);
}

/* Make room for `len` more bytes at wpos, growing owned storage when needed. */
P11CA_MUST_CHECK static enum p11ca_err buf_room(struct p11ca_buf *b, size_t len)
{
	P11CA_GUARD(buf_check(b));
	if (b->flags & BUF_READONLY)
		return P11CA_E_USAGE;
	if (len > b->max - b->wpos)
		return P11CA_E_PROTO_TOO_LARGE;
	size_t need = b->wpos + len; /* <= max: cannot wrap */
	if (need <= b->cap)
		return P11CA_OK;
	if (!(b->flags & BUF_OWNED))
		return P11CA_E_INTERNAL; /* a wrapped buffer has cap == max */

	/* max <= 2^27, so doubling cannot overflow. */
	size_t ncap = b->cap == 0 ? BUF_INITIAL_ALLOC : b->cap;
	while (ncap < need)
		ncap *= 2;
	if (ncap > b->max)
		ncap = b->max;

	uint8_t *nd;
	if (b->flags & P11CA_BUF_WIPE) {
		/* realloc could leave a copy of the old bytes in freed memory. */
		nd = malloc(ncap);
		if (nd == NULL)
			return P11CA_E_NOMEM;
		if (b->d != NULL) {
			memcpy(nd, b->d, b->wpos);
			explicit_bzero(b->d, b->cap);
			free(b->d);
		}
	} else {
		nd = realloc(b->d, ncap);
		if (nd == NULL)
			return P11CA_E_NOMEM;
	}
	b->d = nd;
	b->cap = ncap;
	return P11CA_OK;
}

enum p11ca_err p11ca_buf_reserve(struct p11ca_buf *b, size_t len, uint8_t **dst)
{
	if (dst == NULL)
		return P11CA_E_INVALID_ARG;
	P11CA_GUARD(buf_room(b, len));
	uint8_t *p = b->d == NULL ? NULL : b->d + b->wpos;
	if (len != 0)
		memset(p, 0, len);
	b->wpos += len;
	*dst = p;
	return P11CA_OK;
}

enum p11ca_err p11ca_buf_put(struct p11ca_buf *b, const void *src, size_t len)
{
	if (src == NULL && len != 0)
		return P11CA_E_INVALID_ARG;
	P11CA_GUARD(buf_room(b, len));
	if (len != 0)
		memcpy(b->d + b->wpos, src, len);
	b->wpos += len;
	return P11CA_OK;
}

/* Append the low n (1..8) bytes of v, most significant first. */
P11CA_MUST_CHECK static enum p11ca_err buf_put_be(struct p11ca_buf *b, size_t n, uint64_t v)
{
	P11CA_GUARD(buf_room(b, n));
	for (size_t i = 0; i < n; i++)
		b->d[b->wpos + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	b->wpos += n;
	return P11CA_OK;
}

enum p11ca_err p11ca_buf_put_u8(struct p11ca_buf *b, uint8_t v)
{
	return buf_put_be(b, 1, v);
}

enum p11ca_err p11ca_buf_put_u16(struct p11ca_buf *b, uint16_t v)
{
	return buf_put_be(b, 2, v);
}

enum p11ca_err p11ca_buf_put_u32(struct p11ca_buf *b, uint32_t v)
{
	return buf_put_be(b, 4, v);
}

enum p11ca_err p11ca_buf_put_u64(struct p11ca_buf *b, uint64_t v)
{
	return buf_put_be(b, 8, v);
}
