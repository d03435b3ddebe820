/*
 * rpc/client.h — a blocking client of the public RPC, for the p11ca CLI, tests and benches.
 *
 * One connection: TCP, TLS 1.3 with a client certificate, ALPN p11ca/1, the server's
 * certificate checked against the given CA and host; then any number of calls, one at a
 * time (use one client per thread).
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
	const char *server;  /* "host:port" ("[v6]:port" for IPv6 literals) */
	const char *ca_file; /* what the server's certificate must chain to */
	const char *cert_file, *key_file; /* the client's credential */
	int timeout_ms;	     /* per connect / per call; 0: CONFIG_RPC_IO_TIMEOUT_MS */
};

/* Connect and handshake. Errors: P11CA_E_USAGE (bad server string), P11CA_E_CONFIG
 * (credential files), P11CA_E_IO (connect refused, handshake failed: the text says which
 * side refused what), P11CA_E_TIMEOUT. */
P11CA_MUST_CHECK enum p11ca_err rpc_client_connect(const struct rpc_client_options *opts,
						   struct rpc_client **out, struct p11ca_errmsg *em);

/*
 * Send `req` (api_version and request_id are filled in) and wait for its response,
 * checking the echoed request_id and that a result is present exactly when the status is
 * OK. A non-OK status is not an error of this call: inspect resp->status.
 * Errors: P11CA_E_IO, P11CA_E_TIMEOUT, P11CA_E_PROTO* (the server broke protocol).
 */
P11CA_MUST_CHECK enum p11ca_err rpc_client_call(struct rpc_client *c, p11ca_v1_Request *req,
						p11ca_v1_Response *resp, struct p11ca_errmsg *em);

/* Close (TLS close_notify, then the socket), free, set *c to NULL. NULL-safe. */
void rpc_client_close(struct rpc_client **c);

#endif
