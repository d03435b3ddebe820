/*
 * rpc/server.h — the rpc process: TLS 1.3 listener for remote admin tools.
 *
 * Accepts connections on the sockets the parent bound, completes the mutual-TLS handshake
 * (rpc/tls.h), maps the client certificate to a role (rpc/role.h), reads frames with a
 * deadline per frame (rpc/frame.h), checks each operation against the table (rpc/op.h) and
 * forwards the request to the engine (rpc/forward.proto over rpc/channel.h). It never sees
 * the database or the HSM. Refusals (no role for the operation, over-long or truncated
 * frames, bytes that do not decode, unsupported api_version) are answered where a frame can
 * still be answered, logged, and sent to the engine as a Refusal for the audit chain.
 * One connection is served by one thread, which owns its TLS object; requests a client
 * pipelines on it are forwarded concurrently, up to CONFIG_RPC_MAX_INFLIGHT_PER_CONNECTION,
 * and answered as they complete (possibly out of order: match by request_id). Connections
 * beyond max_connections are closed at once; a slow or silent peer times out, so no client
 * can stall another.
 */
#ifndef P11CA_RPC_SERVER_H
#define P11CA_RPC_SERVER_H

#include <stddef.h>

#include "common/err.h"
#include "common/log.h"

struct rpc_server_options {
	const int *listen_fds; /* bound, listening TCP sockets (taken over and closed) */
	size_t n_listen;
	int engine_fd;	       /* engine link (taken over); this end is the client */
	int stop_fd;	       /* readable when the process must stop (SIGTERM self-pipe) */
	const char *ca_file;   /* management CA: client certificates must chain to it */
	const char *cert_file; /* the server's certificate and key */
	const char *key_file;
	/* Roles: the roles file (rpc_role_table_parse format; may be NULL or missing) plus
	 * inline entries (fingerprint, role) pairs from the config. */
	const char *roles_file;
	const char *const *inline_roles; /* fingerprint, role, fingerprint, role, … */
	size_t n_inline_roles;		 /* number of pairs */
	unsigned max_connections;	 /* 0: CONFIG_RPC_MAX_CONNECTIONS */
	unsigned io_timeout_ms;		 /* 0: CONFIG_RPC_IO_TIMEOUT_MS */
	const struct p11ca_logger *log;
	/* Called once, after every file the server reads (TLS files, roles file, OpenSSL's
	 * configuration) is loaded and before any thread starts or any connection is accepted:
	 * the point where the process can give up its filesystem and its user (chroot,
	 * setresuid, PR_SET_NO_NEW_PRIVS, all per-process or applied to the only thread).
	 * NULL: none. An error stops rpc_server_run with that error. */
	enum p11ca_err (*sandbox)(void *arg, struct p11ca_errmsg *em);
	void *sandbox_arg;
};

/*
 * Serve until stop_fd is readable (then: stop accepting, let each connection finish the
 * request it is in, close, return P11CA_OK) or the engine link breaks (P11CA_E_IO).
 * The role table is re-read on SIGHUP-free terms: at start only (restart to reload).
 * Nothing after the sandbox hook opens a file.
 * Errors: P11CA_E_CONFIG (TLS files, roles), P11CA_E_IO, or the sandbox hook's error.
 */
P11CA_MUST_CHECK enum p11ca_err rpc_server_run(const struct rpc_server_options *opts,
					       struct p11ca_errmsg *em);

#endif
