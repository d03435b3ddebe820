/*
 * rpc/client.h — a blocking client of the public RPC, for the p11ca CLI, tests and benches.
 *
 * One connection: TCP, TLS 1.3 with a client certificate, ALPN p11ca/1, the server's
 * certificate checked against the given CA and host; then any number of calls, one at a
 * time (rpc_client_call), or several in flight (rpc_client_send / rpc_client_recv). Use one
 * client per thread.
 *
 * Writes go through OpenSSL's socket BIO, which does not suppress SIGPIPE: a program using
 * this client must ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)) or a server that hangs up
 * kills it instead of giving P11CA_E_IO.
 */
#ifndef P11CA_RPC_CLIENT_H
#define P11CA_RPC_CLIENT_H

#include "common/err.h"
#include "rpc/p11ca.pb.h"

struct rpc_client; /* opaque */

struct rpc_client_options {
	const char *server;		  /* "host:port" ("[v6]:port" for IPv6 literals) */
	const char *ca_file;		  /* what the server's certificate must chain to */
	const char *cert_file, *key_file; /* the client's credential */
	int timeout_ms;			  /* per connect / per call; 0: CONFIG_RPC_IO_TIMEOUT_MS */
};

/* Connect and handshake. Errors: P11CA_E_USAGE (bad server string), P11CA_E_CONFIG
 * (credential files), P11CA_E_IO (connect refused, handshake failed: the text says which
 * side refused what), P11CA_E_TIMEOUT. */
P11CA_MUST_CHECK enum p11ca_err rpc_client_connect(const struct rpc_client_options *opts,
						   struct rpc_client **out,
						   struct p11ca_errmsg *em);

/*
 * Send `req` (api_version and request_id are filled in) and wait for its response,
 * checking the echoed request_id and that a result is present exactly when the status is
 * OK. A non-OK status is not an error of this call: inspect resp->status.
 * Errors: P11CA_E_IO, P11CA_E_TIMEOUT, P11CA_E_PROTO* (the server broke protocol),
 * P11CA_E_USAGE (pipelined requests sent with rpc_client_send are still unanswered).
 */
P11CA_MUST_CHECK enum p11ca_err rpc_client_call(struct rpc_client *c, p11ca_v1_Request *req,
						p11ca_v1_Response *resp, struct p11ca_errmsg *em);

/* Requests one client may have sent and not yet received (rpc_client_send). */
#define RPC_CLIENT_MAX_PENDING 64

/*
 * Pipelining: send `req` (api_version and a fresh request_id are filled in; read the id
 * back from req->request_id) without waiting for its response. Fetch responses with
 * rpc_client_recv. Keep reading while sending: a server stops reading a connection that has
 * CONFIG_RPC_MAX_INFLIGHT_PER_CONNECTION requests unanswered (16 by default), and one whose
 * responses pile up unread may time out the connection.
 * Errors: P11CA_E_USAGE (RPC_CLIENT_MAX_PENDING requests already unanswered), P11CA_E_IO,
 * P11CA_E_TIMEOUT, P11CA_E_PROTO_TOO_LARGE (nothing was sent: the connection stays usable).
 */
P11CA_MUST_CHECK enum p11ca_err rpc_client_send(struct rpc_client *c, p11ca_v1_Request *req,
						struct p11ca_errmsg *em);

/*
 * Wait (up to the client's timeout) for the next response to any request sent with
 * rpc_client_send, in the order the server sends them, which need not be the order of the
 * requests: match them by resp->request_id. The envelope is checked as in rpc_client_call
 * against the request it answers.
 * Errors: P11CA_E_USAGE (no request is waiting for its response), P11CA_E_IO,
 * P11CA_E_TIMEOUT, P11CA_E_PROTO* (a response to no pending request, or a broken envelope).
 */
P11CA_MUST_CHECK enum p11ca_err rpc_client_recv(struct rpc_client *c, p11ca_v1_Response *resp,
						struct p11ca_errmsg *em);

/* Close (TLS close_notify, then the socket), free, set *c to NULL. NULL-safe. */
void rpc_client_close(struct rpc_client **c);

#endif
