/*
 * rpc/channel.h — typed call/reply channels between p11cad's processes.
 *
 * Every internal link (rpc → engine, engine → signer, parent → engine) is a socketpair
 * carrying the public RPC's framing (4-byte big-endian length, then one nanopb message;
 * rpc/frame.h) with static bounds and exact-length decoding. Each link declares two message
 * types, one per direction, whose field 1 is a `uint64 call_id`:
 *   - a *call* has call_id != 0 and gets exactly one reply with the same id;
 *   - a *notification* has call_id 0 and gets none.
 *
 * One end of a link is the *server* (the more trusted process: engine for rpc, signer for
 * the engine, engine for the parent): it receives calls and notifications and answers the
 * calls from a pool of worker threads. The other end is the *client*: it makes calls from
 * any number of threads (many may be in flight; replies are matched by id, so the server
 * may answer out of order) and receives notifications, run on its reader thread.
 *
 * Anything the protocol does not allow is fatal for the link: bytes that do not decode, a
 * frame over the limit, a reply whose id nobody waits for on the client, a handler that
 * rejects a message. The channel then stops, every waiting call fails with P11CA_E_IO, and
 * chan_wait() returns the error, so the owning process can log it and exit (the parent
 * restarts it). A more trusted process never tries to make sense of a peer that broke
 * protocol.
 *
 * Both message types must have `uint64 call_id = 1` as their first field (nanopb lays the
 * struct out in field order, so it is the first member); chan_open checks.
 *
 * Thread-safety: chan_call(), chan_call_async(), chan_call_cancel() and chan_notify() may be
 * called from any thread at once.
 */
#ifndef P11CA_RPC_CHANNEL_H
#define P11CA_RPC_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pb.h>

#include "common/err.h"
#include "common/log.h"

struct chan; /* opaque */

/*
 * Handles one incoming message; `arg` is chan_spec.arg.
 *   - On the server, for a call: `in` is the decoded call and `reply` a zeroed message of
 *     the outgoing type; fill it (the channel sets its call_id and sends it). Return
 *     P11CA_OK even when the *operation* failed: such failures belong inside the reply.
 *   - For a notification (either side) `reply` is NULL.
 * Returning an error means the peer broke protocol (a message it may not send): the channel
 * stops (see above). Handlers run on worker threads (server) or the reader thread (client
 * notifications) and must be thread-safe. `in` is wiped after the handler returns.
 */
typedef enum p11ca_err (*chan_handler_fn)(void *arg, void *in, void *reply,
					  struct p11ca_errmsg *em);

struct chan_spec {
	const char *name; /* "engine→signer": names the link in logs and errors */
	/* What this end sends and what it receives. */
	const pb_msgdesc_t *out_fields;
	size_t out_size; /* sizeof the generated struct */
	const pb_msgdesc_t *in_fields;
	size_t in_size;
	size_t max_frame;	 /* largest encoded message either way, bytes */
	int is_server;		 /* 1: incoming id != 0 are calls; 0: they are replies */
	unsigned workers;	 /* server: threads answering calls (>= 1); client: ignored */
	chan_handler_fn handler; /* may be NULL on a client that accepts no notifications */
	void *arg;		 /* for handler */
	const struct p11ca_logger *log; /* NULL: stderr */
};

/*
 * Take ownership of `fd` (a connected SOCK_STREAM socketpair end; closed by chan_close) and
 * start the reader thread (and, on a server, the workers). The spec is copied.
 * Errors: P11CA_E_INVALID_ARG (bad spec), P11CA_E_NOMEM, P11CA_E_INTERNAL (threads).
 * On failure fd is closed too.
 */
P11CA_MUST_CHECK enum p11ca_err chan_open(int fd, const struct chan_spec *spec, struct chan **out,
					  struct p11ca_errmsg *em);

/*
 * Client only: send `call` (its call_id is overwritten with a fresh one) and wait up to
 * timeout_ms (< 0: forever) for the reply, decoded into `reply` (this end's in type,
 * zeroed first).
 * Errors: P11CA_E_TIMEOUT (the reply, should it come later, is dropped), P11CA_E_IO (the
 * link stopped or the peer went away), P11CA_E_PROTO_TOO_LARGE (the call does not encode
 * within max_frame), P11CA_E_INVALID_ARG (called on a server).
 */
P11CA_MUST_CHECK enum p11ca_err chan_call(struct chan *ch, void *call, void *reply, int timeout_ms,
					  struct p11ca_errmsg *em);

/*
 * Runs once per chan_call_async that returned P11CA_OK and was not cancelled: err is
 * P11CA_OK and `reply` (the caller's buffer) holds the decoded reply, or err is P11CA_E_IO
 * (the link stopped; `reply` is zeroed). It runs on the channel's reader thread *with the
 * channel's lock held*, so that chan_call_cancel() can promise it is not running: it must
 * be short (queue and wake) and must not call into this channel.
 */
typedef void (*chan_done_fn)(void *arg, uint64_t call_id, enum p11ca_err err, void *reply);

/*
 * Client only: send `call` (its call_id is overwritten; the new id is stored in *call_id)
 * and return without waiting. `call` is encoded before the return, so the caller may wipe
 * it at once. `reply` (this end's in type) must stay valid until done_fn ran or
 * chan_call_cancel() returned true. There is no timeout here: a caller that stops waiting
 * cancels.
 * P11CA_OK: done_fn runs exactly once, or never after a successful chan_call_cancel().
 * Errors (done_fn never runs): P11CA_E_IO (link down), P11CA_E_PROTO_TOO_LARGE,
 * P11CA_E_NOMEM, P11CA_E_INVALID_ARG (missing argument, called on a server).
 */
P11CA_MUST_CHECK enum p11ca_err chan_call_async(struct chan *ch, void *call, void *reply,
						chan_done_fn done_fn, void *arg, uint64_t *call_id,
						struct p11ca_errmsg *em);

/*
 * Forget the asynchronous call `call_id`: true when it was still waiting (done_fn will
 * never run; a late reply is dropped), false when done_fn already ran (or the id is
 * unknown). Either way done_fn is not running for it once this returns, so its reply buffer
 * and argument may be freed. Must not be called from done_fn.
 */
bool chan_call_cancel(struct chan *ch, uint64_t call_id);

/* Either side: send `msg` with call_id 0. Errors: P11CA_E_IO, P11CA_E_PROTO_TOO_LARGE. */
P11CA_MUST_CHECK enum p11ca_err chan_notify(struct chan *ch, void *msg, struct p11ca_errmsg *em);

/*
 * Block until the link stops: P11CA_OK when the peer closed it between messages (or
 * chan_shutdown was called), else the protocol or I/O error that stopped it (with the text
 * in *em).
 */
P11CA_MUST_CHECK enum p11ca_err chan_wait(struct chan *ch, struct p11ca_errmsg *em);

/* Stop the link from this side: no new calls are accepted; on a server, calls already
 * received are finished and answered first. Returns at once; chan_wait() returns when done.
 */
void chan_shutdown(struct chan *ch);

/* Shut down, join every thread, fail pending calls with P11CA_E_IO, close the fd, free,
 * and set *ch to NULL. NULL-safe. Must not be called from a handler. */
void chan_close(struct chan **ch);

/* Calls received (server) or made (client) so far, and currently in flight. */
void chan_counters(const struct chan *ch, uint64_t *total, unsigned *in_flight);

#endif
