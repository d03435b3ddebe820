#include "rpc/frame.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <pb_common.h>
#include <pb_decode.h>
#include <pb_encode.h>

#include "common/kconfig.h"

/* Every message the v1 contract can produce must fit one frame, or a valid request or
 * result would be unsendable. Raising a limit in p11ca.options without raising
 * RPC_MAX_FRAME breaks the build here, not a client in the field. */
_Static_assert(p11ca_v1_Request_size <= CONFIG_RPC_MAX_FRAME,
	       "p11ca.v1.Request can exceed CONFIG_RPC_MAX_FRAME");
_Static_assert(p11ca_v1_Response_size <= CONFIG_RPC_MAX_FRAME,
	       "p11ca.v1.Response can exceed CONFIG_RPC_MAX_FRAME");

/* The header is a u32, and header + body must fit one p11ca_buf. */
#define FRAME_MAX_LIMIT (P11CA_BUF_SIZE_MAX - RPC_FRAME_HEADER_LEN)
_Static_assert(CONFIG_RPC_MAX_FRAME <= FRAME_MAX_LIMIT, "CONFIG_RPC_MAX_FRAME too large");

struct rpc_frame_reader {
	size_t max_len;
	uint8_t hdr_mem[RPC_FRAME_HEADER_LEN];
	struct p11ca_buf *hdr;	/* wraps hdr_mem; full once the length is known */
	struct p11ca_buf *body; /* NULL until the header is complete */
	bool failed;
};

enum p11ca_err rpc_frame_reader_new(size_t max_len, struct rpc_frame_reader **out,
				    struct p11ca_errmsg *em)
{
	struct rpc_frame_reader *r = NULL;
	enum p11ca_err err;

	*out = NULL;
	if (max_len == 0 || max_len > FRAME_MAX_LIMIT)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "frame limit %zu is outside 1..%zu",
				  max_len, (size_t)FRAME_MAX_LIMIT);
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory for a frame reader");
		goto out;
	}
	r->max_len = max_len;
	err = p11ca_buf_wrap(r->hdr_mem, sizeof(r->hdr_mem), P11CA_BUF_WIPE, &r->hdr);
	if (err != P11CA_OK)
		goto out;
	*out = r;
	r = NULL;
out:
	rpc_frame_reader_free(&r);
	return err;
}

void rpc_frame_reader_free(struct rpc_frame_reader **rp)
{
	if (rp == NULL || *rp == NULL)
		return;
	p11ca_buf_free(&(*rp)->body);
	p11ca_buf_free(&(*rp)->hdr);
	explicit_bzero(*rp, sizeof(**rp));
	free(*rp);
	*rp = NULL;
}

size_t rpc_frame_reader_want(const struct rpc_frame_reader *r)
{
	if (r == NULL || r->failed)
		return 0;
	return r->body == NULL ? p11ca_buf_avail(r->hdr) : p11ca_buf_avail(r->body);
}

/* The 4-byte header is complete: check the length, then (and only then) allocate. */
P11CA_MUST_CHECK static enum p11ca_err reader_start_body(struct rpc_frame_reader *r,
							 struct p11ca_errmsg *em)
{
	uint32_t len = 0;
	P11CA_GUARD(p11ca_buf_get_u32(r->hdr, &len));
	if (len == 0)
		return p11ca_fail(em, P11CA_E_PROTO_DECODE, "received an empty frame");
	if (len > r->max_len)
		return p11ca_fail(em, P11CA_E_PROTO_TOO_LARGE,
				  "received a frame of %" PRIu32 " bytes; the limit is %zu", len,
				  r->max_len);
	if (p11ca_buf_new(len, P11CA_BUF_WIPE, &r->body) != P11CA_OK)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory for a %" PRIu32 "-byte frame",
				  len);
	return P11CA_OK;
}

enum p11ca_err rpc_frame_reader_feed(struct rpc_frame_reader *r, const void *data, size_t len,
				     size_t *consumed, struct p11ca_buf **frame,
				     struct p11ca_errmsg *em)
{
	const uint8_t *p = data;
	size_t used = 0;
	enum p11ca_err err = P11CA_OK;

	if (r == NULL || consumed == NULL || frame == NULL || (data == NULL && len != 0))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_frame_reader_feed: bad arguments");
	*consumed = 0;
	*frame = NULL;
	if (r->failed)
		return p11ca_fail(em, P11CA_E_PROTO, "the stream already sent a bad frame");

	while (used < len && *frame == NULL) {
		struct p11ca_buf *dst = r->body == NULL ? r->hdr : r->body;
		size_t n = p11ca_buf_avail(dst);
		if (n > len - used)
			n = len - used;
		err = p11ca_buf_put(dst, p + used, n);
		if (err != P11CA_OK)
			goto out;
		used += n;
		if (p11ca_buf_avail(dst) != 0)
			continue;
		if (r->body == NULL) {
			err = reader_start_body(r, em);
			if (err != P11CA_OK)
				goto out;
		} else {
			*frame = r->body;
			r->body = NULL;
			err = p11ca_buf_reset(r->hdr);
			if (err != P11CA_OK)
				goto out;
		}
	}
out:
	*consumed = used;
	if (err != P11CA_OK) {
		r->failed = true;
		p11ca_buf_free(&r->body);
		p11ca_buf_free(frame);
	}
	return err;
}

enum p11ca_err rpc_frame_reader_eof(const struct rpc_frame_reader *r, struct p11ca_errmsg *em)
{
	if (r == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_frame_reader_eof: no reader");
	if (r->failed || r->body != NULL || p11ca_buf_len(r->hdr) != 0)
		return p11ca_fail(em, P11CA_E_PROTO_TRUNCATED,
				  "the peer closed the connection in the middle of a frame");
	return P11CA_OK;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for `events` or the deadline (-1: none) passes. A deadline already
 * reached still gets one zero-timeout poll, so a timeout of 0 means "only if ready now". */
P11CA_MUST_CHECK static enum p11ca_err fd_wait(int fd, short events, int64_t deadline,
					       struct p11ca_errmsg *em)
{
	for (;;) {
		int wait = -1;
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();
			wait = left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
		}
		struct pollfd pfd = {.fd = fd, .events = events};
		int rc = poll(&pfd, 1, wait);
		if (rc > 0)
			return P11CA_OK; /* readable, writable, or an error the next call reports */
		if (rc < 0 && errno != EINTR)
			return p11ca_fail(em, P11CA_E_IO, "poll: %s", strerror(errno));
		if (rc == 0 && wait == 0)
			return p11ca_fail(em, P11CA_E_TIMEOUT,
					  "the peer did not complete a frame in time");
	}
}

enum p11ca_err rpc_frame_read_fd(int fd, size_t max_len, int timeout_ms, struct p11ca_buf **frame,
				 struct p11ca_errmsg *em)
{
	struct rpc_frame_reader *r = NULL;
	uint8_t chunk[4096];
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	enum p11ca_err err;

	*frame = NULL;
	/* poll() ignores a negative fd: without this check it would wait out the deadline. */
	if (fd < 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_frame_read_fd: bad descriptor");
	err = rpc_frame_reader_new(max_len, &r, em);
	while (err == P11CA_OK && *frame == NULL) {
		err = fd_wait(fd, POLLIN, deadline, em);
		if (err != P11CA_OK)
			break;
		size_t want = rpc_frame_reader_want(r);
		ssize_t n = read(fd, chunk, want < sizeof(chunk) ? want : sizeof(chunk));
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (n < 0) {
			err = p11ca_fail(em, P11CA_E_IO, "read: %s", strerror(errno));
		} else if (n == 0) {
			err = rpc_frame_reader_eof(r, em);
			break; /* clean end: *frame stays NULL */
		} else {
			size_t used = 0;
			err = rpc_frame_reader_feed(r, chunk, (size_t)n, &used, frame, em);
		}
	}
	explicit_bzero(chunk, sizeof(chunk));
	rpc_frame_reader_free(&r);
	return err;
}

/* send() with MSG_NOSIGNAL on sockets, so a vanished peer is an error, not a SIGPIPE. */
static ssize_t fd_write(int fd, const void *p, size_t n)
{
	ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
	if (w < 0 && errno == ENOTSOCK)
		w = write(fd, p, n);
	return w;
}

enum p11ca_err rpc_frame_write_fd(int fd, struct p11ca_buf *frame, int timeout_ms,
				  struct p11ca_errmsg *em)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;

	if (fd < 0 || frame == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_frame_write_fd: bad arguments");
	while (p11ca_buf_len(frame) > 0) {
		P11CA_GUARD(fd_wait(fd, POLLOUT, deadline, em));
		ssize_t w = fd_write(fd, p11ca_buf_ptr(frame), p11ca_buf_len(frame));
		if (w < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (w < 0)
			return p11ca_fail(em, P11CA_E_IO, "write: %s", strerror(errno));
		P11CA_GUARD(p11ca_buf_consume(frame, (size_t)w));
	}
	return P11CA_OK;
}

enum p11ca_err rpc_frame_encode(const pb_msgdesc_t *fields, const void *msg, size_t max_len,
				struct p11ca_buf **frame, struct p11ca_errmsg *em)
{
	struct p11ca_buf *b = NULL;
	pb_ostream_t sizing = PB_OSTREAM_SIZING;
	uint8_t *p = NULL;
	enum p11ca_err err;

	*frame = NULL;
	if (fields == NULL || msg == NULL || max_len > FRAME_MAX_LIMIT)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_frame_encode: bad arguments");
	/* Sizing runs every check the real encoding does, so a bad struct fails here. */
	if (!pb_encode(&sizing, fields, msg))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "cannot encode message: %s",
				  PB_GET_ERROR(&sizing));
	size_t len = sizing.bytes_written;
	if (len == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "refusing to send an empty message");
	if (len > max_len)
		return p11ca_fail(em, P11CA_E_PROTO_TOO_LARGE,
				  "message of %zu bytes exceeds the %zu-byte frame limit", len,
				  max_len);

	err = p11ca_buf_new(RPC_FRAME_HEADER_LEN + len, P11CA_BUF_WIPE, &b);
	if (err == P11CA_OK)
		err = p11ca_buf_put_u32(b, (uint32_t)len);
	if (err == P11CA_OK)
		err = p11ca_buf_reserve(b, len, &p);
	if (err != P11CA_OK) {
		err = p11ca_fail(em, err, "cannot allocate a %zu-byte frame", len);
		goto out;
	}
	pb_ostream_t os = pb_ostream_from_buffer(p, len);
	if (!pb_encode(&os, fields, msg) || os.bytes_written != len) {
		err = p11ca_fail(em, P11CA_E_INTERNAL, "encoding changed size: %s",
				 PB_GET_ERROR(&os));
		goto out;
	}
	*frame = b;
	b = NULL;
out:
	p11ca_buf_free(&b);
	return err;
}


/* Whether a decoded string field held a NUL inside its value. pb_dec_string copies the
 * received bytes and terminates them, so "evil.test\0.example.test" reads as "evil.test" to
 * C: a name check would pass on one value and the certificate carry another. The message
 * was zeroed before decoding, so any non-zero byte after the first NUL came from the wire. */
static bool string_has_inner_nul(const char *s, size_t cap)
{
	size_t k = strnlen(s, cap);
	for (size_t i = k + 1; i < cap; i++)
		if (s[i] != '\0')
			return true;
	return false;
}

/* Walk every present field of a decoded message (submessages recursively) and refuse a
 * string with an embedded NUL, naming the field's tag path. */
static enum p11ca_err strings_check(const pb_msgdesc_t *fields, const void *msg, int depth,
				    struct p11ca_errmsg *em)
{
	pb_field_iter_t it;
	if (depth > 16)
		return p11ca_fail(em, P11CA_E_PROTO_DECODE, "message nested too deeply");
	if (!pb_field_iter_begin_const(&it, fields, msg))
		return P11CA_OK; /* no fields */
	do {
		pb_type_t t = it.type;
		size_t count = 1;
		if (PB_ATYPE(t) != PB_ATYPE_STATIC)
			continue;
		if (PB_HTYPE(t) == PB_HTYPE_ONEOF) {
			if (*(const pb_size_t *)it.pSize != it.tag)
				continue; /* another member of the union is active */
		} else if (PB_HTYPE(t) == PB_HTYPE_REPEATED) {
			count = *(const pb_size_t *)it.pSize;
		} else if (PB_HTYPE(t) == PB_HTYPE_OPTIONAL && it.pSize != NULL) {
			if (!*(const bool *)it.pSize)
				continue;
		}
		for (size_t i = 0; i < count; i++) {
			const char *item = (const char *)it.pData + i * it.data_size;
			if (PB_LTYPE(t) == PB_LTYPE_STRING &&
			    string_has_inner_nul(item, it.data_size))
				return p11ca_fail(em, P11CA_E_PROTO_DECODE,
						  "field %u holds a NUL byte inside a string: "
						  "text fields must not contain NUL",
						  (unsigned)it.tag);
			if (PB_LTYPE_IS_SUBMSG(t) && it.submsg_desc != NULL)
				P11CA_GUARD(strings_check(it.submsg_desc, item, depth + 1, em));
		}
	} while (pb_field_iter_next(&it));
	return P11CA_OK;
}

enum p11ca_err rpc_frame_decode(const pb_msgdesc_t *fields, void *msg, size_t msg_size,
				const struct p11ca_buf *body, struct p11ca_errmsg *em)
{
	if (fields == NULL || msg == NULL || msg_size == 0 || body == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_frame_decode: bad arguments");
	size_t len = p11ca_buf_len(body);
	if (len == 0) {
		explicit_bzero(msg, msg_size);
		return p11ca_fail(em, P11CA_E_PROTO_DECODE, "received an empty message");
	}
	pb_istream_t is = pb_istream_from_buffer(p11ca_buf_ptr(body), len);
	explicit_bzero(msg, msg_size); /* strings_check relies on it; see there */
	if (!pb_decode(&is, fields, msg)) {
		explicit_bzero(msg, msg_size); /* a partial decode may hold part of a PIN */
		return p11ca_fail(em, P11CA_E_PROTO_DECODE, "malformed message: %s",
				  PB_GET_ERROR(&is));
	}
	/* pb_decode reads to the end of the stream; this states the exact-length rule rather
	 * than trusting that behaviour. */
	if (is.bytes_left != 0) {
		explicit_bzero(msg, msg_size);
		return p11ca_fail(em, P11CA_E_PROTO_DECODE, "%zu trailing bytes after the message",
				  is.bytes_left);
	}
	enum p11ca_err err = strings_check(fields, msg, 0, em);
	if (err != P11CA_OK)
		explicit_bzero(msg, msg_size);
	return err;
}

enum p11ca_err rpc_frame_request_encode(const p11ca_v1_Request *req, struct p11ca_buf **frame,
					struct p11ca_errmsg *em)
{
	return rpc_frame_encode(p11ca_v1_Request_fields, req, CONFIG_RPC_MAX_FRAME, frame, em);
}

enum p11ca_err rpc_frame_request_decode(const struct p11ca_buf *body, p11ca_v1_Request *req,
					struct p11ca_errmsg *em)
{
	return rpc_frame_decode(p11ca_v1_Request_fields, req, sizeof(*req), body, em);
}

enum p11ca_err rpc_frame_response_encode(const p11ca_v1_Response *resp, struct p11ca_buf **frame,
					 struct p11ca_errmsg *em)
{
	return rpc_frame_encode(p11ca_v1_Response_fields, resp, CONFIG_RPC_MAX_FRAME, frame, em);
}

enum p11ca_err rpc_frame_response_decode(const struct p11ca_buf *body, p11ca_v1_Response *resp,
					 struct p11ca_errmsg *em)
{
	return rpc_frame_decode(p11ca_v1_Response_fields, resp, sizeof(*resp), body, em);
}
