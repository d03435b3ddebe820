/*
 * appliance/listen.h — the "HOST:PORT" listener addresses of p11cad's config, and binding
 * them in the parent.
 *
 * The parent binds every listener before it starts a child, so a port that is taken or
 * needs privileges fails start-up at once with the address in the message, and the rpc
 * process never needs to bind (or to be allowed to). The sockets survive restarts of the
 * children: the parent keeps them and hands the same ones to each new rpc process.
 *
 * Addresses are IP literals only: "127.0.0.1:7443", "0.0.0.0:7443", "[::1]:7443",
 * "[::]:7443". A listener binds an address, not a name, and resolving names at start-up
 * would make the set of open ports depend on DNS.
 */
#ifndef P11CA_APPLIANCE_LISTEN_H
#define P11CA_APPLIANCE_LISTEN_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "common/err.h"

struct p11cad_listen_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char host[INET6_ADDRSTRLEN]; /* the literal, without brackets */
	unsigned port;		     /* 0..65535 (0: any free port; tests) */
};

/* Parse "HOST:PORT" into *out. Errors: P11CA_E_CONFIG (text says what is wrong and shows
 * the accepted forms), P11CA_E_INVALID_ARG (NULL). */
P11CA_MUST_CHECK enum p11ca_err
p11cad_listen_parse(const char *text, struct p11cad_listen_addr *out, struct p11ca_errmsg *em);

/* A listening TCP socket (close-on-exec, SO_REUSEADDR, IPv6 sockets IPV6_V6ONLY) bound to
 * `addr`, in *fd. Errors: P11CA_E_IO (bind/listen failed: the text names the address and
 * the errno, e.g. "address already in use"), P11CA_E_PERMISSION (a privileged port). */
P11CA_MUST_CHECK enum p11ca_err p11cad_listen_bind(const struct p11cad_listen_addr *addr, int *fd,
						   struct p11ca_errmsg *em);

/* The port a bound socket got (for port 0). Errors: P11CA_E_IO. */
P11CA_MUST_CHECK enum p11ca_err p11cad_listen_port(int fd, unsigned *port, struct p11ca_errmsg *em);

#endif
