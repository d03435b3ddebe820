/*
 * Frames: a 4-byte big-endian length, then that many bytes of one nanopb-encoded message.
 *
 * The public RPC and the internal socketpairs share this framing and this code. The rules
 * it enforces, whoever the peer is:
 *   - a length over the limit is refused as soon as its 4 bytes are in, before anything
 *     is allocated for the body or a body byte is read;
 *   - a zero length is refused: no message of the contract encodes to nothing (a Request
 *     carries api_version, a Response its status);
 *   - an end of stream between frames is clean, inside one it is a truncation;
 *   - a body is decoded exactly: nanopb must consume every byte, and decoding never
 *     allocates (static fields only, bounded by rpc/p11ca.options).
 * A reader that refused a frame stays refused: the stream has lost its framing, so the
 * only safe thing left is to close the connection.
 *
 * Frame and body buffers are created with P11CA_BUF_WIPE: a Request may carry a PIN
 * (HsmActivateRequest), so no copy is left behind in freed memory. Callers wipe decoded
 * messages themselves (explicit_bzero) once done with them.
 */
#ifndef P11CA_RPC_FRAME_H
#define P11CA_RPC_FRAME_H

#include <stddef.h>

#include <pb.h>

#include "common/buf.h"
#include "common/err.h"
#include "rpc/p11ca.pb.h"

#define RPC_FRAME_HEADER_LEN 4

/* --- Incremental reading (non-blocking connections) ----------------------------------
 *
 * Feed whatever bytes arrived; a frame pops out when its last byte is in. A slow peer
 * only ever costs its own reader's state, so one event loop can serve many connections.
 */
struct rpc_frame_reader; /* opaque */

/* A reader accepting bodies of 1..max_len bytes (max_len at most 2^27 - 4, e.g.
 * CONFIG_RPC_MAX_FRAME). Errors: P11CA_E_INVALID_ARG, P11CA_E_NOMEM. */
P11CA_MUST_CHECK enum p11ca_err rpc_frame_reader_new(size_t max_len, struct rpc_frame_reader **out,
						     struct p11ca_errmsg *em);

/* Wipe and free a reader and any partial frame; set *r to NULL. NULL-safe. */
void rpc_frame_reader_free(struct rpc_frame_reader **r);

/* How many more bytes complete the current header or body (0 once the reader failed).
 * Reading no more than this from a stream never takes bytes of the next frame. */
size_t rpc_frame_reader_want(const struct rpc_frame_reader *r);

/*
 * Consume bytes from data[0..len), stopping at the end of a frame. *consumed says how many
 * were taken (the rest belong to the next frame: feed them again). When a frame is
 * complete, *frame receives its body (owned by the caller, free with p11ca_buf_free);
 * otherwise *frame is NULL.
 * Errors: P11CA_E_PROTO_TOO_LARGE (length over max_len; nothing was allocated),
 * P11CA_E_PROTO_DECODE (zero length), P11CA_E_PROTO (fed again after an error),
 * P11CA_E_NOMEM, P11CA_E_INVALID_ARG.
 */
P11CA_MUST_CHECK enum p11ca_err rpc_frame_reader_feed(struct rpc_frame_reader *r, const void *data,
						      size_t len, size_t *consumed,
						      struct p11ca_buf **frame,
						      struct p11ca_errmsg *em);

/* The peer closed the stream. P11CA_OK when that happened between frames,
 * P11CA_E_PROTO_TRUNCATED when part of a frame had arrived (or the reader had failed). */
P11CA_MUST_CHECK enum p11ca_err rpc_frame_reader_eof(const struct rpc_frame_reader *r,
						     struct p11ca_errmsg *em);

/* --- Blocking file descriptors (socketpairs, the CLI, tools) --------------------------- */

/*
 * Read one frame from fd. timeout_ms bounds the whole frame from the call on (a peer
 * trickling bytes gains nothing); 0 takes only what is already there, -1 waits forever.
 * Never reads past the frame's end.
 * On success *frame is the body, or NULL when the peer closed the stream cleanly before a
 * new frame began.
 * Errors: those of rpc_frame_reader_feed, P11CA_E_PROTO_TRUNCATED (closed mid-frame),
 * P11CA_E_TIMEOUT, P11CA_E_IO.
 */
P11CA_MUST_CHECK enum p11ca_err rpc_frame_read_fd(int fd, size_t max_len, int timeout_ms,
						  struct p11ca_buf **frame,
						  struct p11ca_errmsg *em);

/* Write the readable bytes of `frame` (a whole frame from rpc_frame_encode) to fd within
 * timeout_ms (-1: no limit), consuming them as they go. SIGPIPE is not raised on sockets.
 * Errors: P11CA_E_TIMEOUT, P11CA_E_IO (including a peer that went away),
 * P11CA_E_INVALID_ARG. */
P11CA_MUST_CHECK enum p11ca_err rpc_frame_write_fd(int fd, struct p11ca_buf *frame, int timeout_ms,
						   struct p11ca_errmsg *em);

/* --- Encoding and decoding ---------------------------------------------------------------- */

/*
 * Encode msg (of type `fields`) into a new buffer holding the whole frame, header
 * included; write it out by consuming it (p11ca_buf_ptr / _len / _consume).
 * Errors: P11CA_E_INVALID_ARG (nanopb refuses the struct: a string without its NUL within
 * max_size, a bytes or array count over its bound; or an empty encoding),
 * P11CA_E_PROTO_TOO_LARGE (over max_len), P11CA_E_NOMEM.
 */
P11CA_MUST_CHECK enum p11ca_err rpc_frame_encode(const pb_msgdesc_t *fields, const void *msg,
						 size_t max_len, struct p11ca_buf **frame,
						 struct p11ca_errmsg *em);

/*
 * Decode the readable bytes of `body` (not consumed) into msg, which is msg_size bytes of
 * type `fields`. Every byte must belong to the message. On failure msg is wiped.
 * Errors: P11CA_E_PROTO_DECODE (malformed, over a field's limit, trailing bytes, empty),
 * P11CA_E_INVALID_ARG.
 */
P11CA_MUST_CHECK enum p11ca_err rpc_frame_decode(const pb_msgdesc_t *fields, void *msg,
						 size_t msg_size, const struct p11ca_buf *body,
						 struct p11ca_errmsg *em);

/* The public envelopes, with CONFIG_RPC_MAX_FRAME as the limit. */
P11CA_MUST_CHECK enum p11ca_err rpc_frame_request_encode(const p11ca_v1_Request *req,
							 struct p11ca_buf **frame,
							 struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err rpc_frame_request_decode(const struct p11ca_buf *body,
							 p11ca_v1_Request *req,
							 struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err rpc_frame_response_encode(const p11ca_v1_Response *resp,
							  struct p11ca_buf **frame,
							  struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err rpc_frame_response_decode(const struct p11ca_buf *body,
							  p11ca_v1_Response *resp,
							  struct p11ca_errmsg *em);

#endif
