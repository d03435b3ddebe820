/*
 * rpc/server_conn.h — private to rpc/server.c, rpc/server_conn.c and rpc/server_inflight.c:
 * the listener's state, one client connection, and the requests it has in the engine. Not a
 * public interface.
 */
#ifndef P11CA_RPC_SERVER_CONN_H
#define P11CA_RPC_SERVER_CONN_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "common/err.h"
#include "common/log.h"
#include "rpc/channel.h"
#include "rpc/forward.pb.h"
#include "rpc/frame.h"
#include "rpc/role.h"

/* "[v6 address]:port" and room to spare; fits forward.proto's Caller.peer (64). */
#define RPC_PEER_SIZE 64

/* The engine link carries ToEngine one way and FromEngine the other. */
#define RPC_FORWARD_MAX_FRAME                                                                      \
	(p11ca_forward_v1_ToEngine_size > p11ca_forward_v1_FromEngine_size                         \
		 ? p11ca_forward_v1_ToEngine_size                                                  \
		 : p11ca_forward_v1_FromEngine_size)

/* How long a forwarded request may take in the engine, in multiples of the I/O timeout:
 * 300 s with the default, enough for key generation on a slow HSM. */
#define RPC_ENGINE_TIMEOUT_FACTOR 10

struct rpc_server_slot {
	pthread_t thread;
	bool used;	  /* accept loop only: a thread was started and not yet joined */
	atomic_bool done; /* set by the connection thread as its last act */
};

struct rpc_server {
	const struct p11ca_logger *log;
	SSL_CTX *tls;
	struct rpc_role_table *roles;
	struct chan *engine;
	unsigned max_conns, io_timeout_ms;
	struct rpc_server_slot *slots; /* max_conns of them */
	struct pollfd *pfd;	       /* listeners, stop_fd, wake_fd */
	int wake_fd;		       /* eventfd: readable for good once the server stops */
	atomic_bool stopping;
	atomic_bool link_down;	     /* the engine link broke on its own */
	struct p11ca_errmsg link_em; /* why; written before link_down is set */
	pthread_t watcher;	     /* waits in chan_wait */
	bool watching;		     /* the watcher was started */
};

struct rpc_conn;
struct rpc_op;

/* One request forwarded to the engine and not yet answered. `done`, `err` and the reply's
 * contents pass from the channel's reader thread to the connection's under rpc_conn.mu. */
struct rpc_inflight {
	struct rpc_conn *conn;
	bool used;
	bool done;	     /* the engine's answer (or the link's failure) arrived */
	enum p11ca_err err;  /* P11CA_OK or P11CA_E_IO */
	uint64_t call_id;    /* the channel's */
	uint64_t request_id; /* the client's */
	const struct rpc_op *op;
	int64_t start_ms, deadline_ms;
	p11ca_forward_v1_FromEngine *reply; /* allocated at first use, kept */
};

/* One client connection; heap-allocated because the envelopes are large (~96 KiB).
 * One thread owns it and its SSL object: it reads frames, forwards permitted requests
 * asynchronously, and writes each response when its completion arrives. */
struct rpc_conn {
	struct rpc_server *srv;
	struct rpc_server_slot *slot;
	int fd;
	SSL *ssl;
	bool tls_broken; /* a fatal TLS error: no close_notify may follow */
	char peer[RPC_PEER_SIZE];
	uint8_t fp[RPC_FINGERPRINT_LEN];
	uint8_t serial[20]; /* the client certificate's serial, for the engine's revocation check */
	size_t serial_len;
	char fp_hex[RPC_FINGERPRINT_HEX_SIZE];
	enum rpc_role role;
	struct rpc_frame_reader *reader;
	uint8_t chunk[4096];
	/* The decoded request lives in to.msg.request: it is forwarded in place. */
	p11ca_forward_v1_ToEngine to;
	p11ca_forward_v1_FromEngine from; /* answers made here (refusals, failures) */

	/* Pipelining. The channel's reader thread only touches `mu`, the slots' done/err
	 * and reply, and wake_fd (all under mu). */
	pthread_mutex_t mu;
	int wake_fd;		       /* eventfd: a completion arrived */
	struct rpc_inflight *inflight; /* max_inflight slots */
	unsigned max_inflight, n_inflight;
	bool reading;	     /* still reading requests from the client */
	short want;	     /* what the last SSL_read waits for: POLLIN or POLLOUT */
	int64_t idle_since;  /* last frame read or last response written with none in flight */
	int64_t frame_start; /* first byte of the frame being read */
};

/* "address:port" of the socket's peer, or "unknown peer". */
void rpc_conn_peer_name(int fd, char out[RPC_PEER_SIZE]);

/* A connection for accepted socket fd (taken over only on success). Error: P11CA_E_NOMEM. */
P11CA_MUST_CHECK enum p11ca_err rpc_conn_new(struct rpc_server *s, int fd, const char *peer,
					     struct rpc_conn **out);

/* Close the socket, wipe, free, set *c to NULL. NULL-safe. */
void rpc_conn_free(struct rpc_conn **c);

/* The connection thread: serves until the peer leaves, breaks protocol, times out or the
 * server stops; then frees the connection and marks its slot done. */
void *rpc_conn_main(void *arg);

/* ---- between rpc/server_conn.c and rpc/server_inflight.c ---------------------------------- */

/* CLOCK_MONOTONIC in milliseconds. */
int64_t rpc_now_ms(void);

/* Put the connection's identity into to->caller. */
void rpc_conn_fill_caller(const struct rpc_conn *c, p11ca_forward_v1_ToEngine *to);

/* Replace c->from with a response carrying `code` and the formatted message. */
__attribute__((format(printf, 4, 5))) void rpc_conn_answer(struct rpc_conn *c, uint64_t request_id,
							   p11ca_v1_StatusCode code,
							   const char *fmt, ...);

/* Encode `resp`, write it, log the request's line. False: the connection is lost. */
bool rpc_conn_respond(struct rpc_conn *c, const p11ca_v1_Response *resp, const struct rpc_op *op,
		      int64_t start);

/* rpc/server_inflight.c. Set up c's mutex, eventfd and max_inflight slots; called once from
 * rpc_conn_new, and rpc_inflight_free is safe after a failure. Error: P11CA_E_NOMEM. */
P11CA_MUST_CHECK enum p11ca_err rpc_inflight_init(struct rpc_conn *c);

/* Cancel every call still in the engine; afterwards no completion touches c. */
void rpc_inflight_abandon(struct rpc_conn *c);

/* Close the eventfd, wipe and free the reply buffers and slots, destroy the mutex. */
void rpc_inflight_free(struct rpc_conn *c);

/* Forward the permitted request in c->to (wiped here) without waiting; an immediate failure
 * is answered at once. False: the connection is lost. */
bool rpc_conn_forward(struct rpc_conn *c, const struct rpc_op *op, uint64_t request_id,
		      int64_t start);

/* Answer every completed request and time out those past their deadline. False: the
 * connection is lost. */
bool rpc_conn_flush(struct rpc_conn *c);

/* The earlier of `deadline` and the deadline of any request in flight. */
int64_t rpc_inflight_deadline(const struct rpc_conn *c, int64_t deadline);

#endif
