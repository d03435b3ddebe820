#include "appliance/listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LISTEN_BACKLOG 128

static enum p11ca_err parse_port(const char *text, const char *p, unsigned *port,
				 struct p11ca_errmsg *em)
{
	unsigned long v = 0;
	if (*p == '\0')
		return p11ca_fail(em, P11CA_E_CONFIG, "listen address '%s' has no port after ':'",
				  text);
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9' || v > 65535)
			return p11ca_fail(em, P11CA_E_CONFIG,
					  "listen address '%s': the port must be a number 0..65535",
					  text);
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v > 65535)
		return p11ca_fail(em, P11CA_E_CONFIG,
				  "listen address '%s': the port must be a number 0..65535", text);
	*port = (unsigned)v;
	return P11CA_OK;
}

enum p11ca_err p11cad_listen_parse(const char *text, struct p11cad_listen_addr *out,
				   struct p11ca_errmsg *em)
{
	if (text == NULL || out == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "p11cad_listen_parse: NULL argument");

	struct p11cad_listen_addr a;
	memset(&a, 0, sizeof(a));
	char host[INET6_ADDRSTRLEN];
	const char *port;
	bool v6 = text[0] == '[';
	if (v6) {
		const char *end = strchr(text, ']');
		if (end == NULL || end[1] != ':')
			return p11ca_fail(
				em, P11CA_E_CONFIG,
				"listen address '%s': write an IPv6 address as [ADDR]:PORT", text);
		size_t n = (size_t)(end - text - 1);
		if (n == 0 || n >= sizeof(host))
			return p11ca_fail(em, P11CA_E_CONFIG,
					  "listen address '%s' is not an IPv6 address", text);
		memcpy(host, text + 1, n);
		host[n] = '\0';
		port = end + 2;
	} else {
		const char *colon = strrchr(text, ':');
		if (colon == NULL)
			return p11ca_fail(em, P11CA_E_CONFIG,
					  "listen address '%s' has no port; write HOST:PORT, e.g. "
					  "127.0.0.1:7443 or [::1]:7443",
					  text);
		size_t n = (size_t)(colon - text);
		if (n == 0 || n >= sizeof(host) || memchr(text, ':', n) != NULL)
			return p11ca_fail(
				em, P11CA_E_CONFIG,
				"listen address '%s': write HOST:PORT with an IPv4 address "
				"or [IPv6]:PORT",
				text);
		memcpy(host, text, n);
		host[n] = '\0';
		port = colon + 1;
	}
	P11CA_GUARD(parse_port(text, port, &a.port, em));

	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a.ss;
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return p11ca_fail(em, P11CA_E_CONFIG,
					  "listen address '%s': '%s' is not an IPv6 address", text,
					  host);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)a.port);
		a.len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&a.ss;
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return p11ca_fail(
				em, P11CA_E_CONFIG,
				"listen address '%s': '%s' is not an IPv4 address (listeners "
				"bind IP addresses, not names: use e.g. 127.0.0.1 or [::1])",
				text, host);
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)a.port);
		a.len = sizeof(*s4);
	}
	memcpy(a.host, host, sizeof(a.host));
	*out = a;
	return P11CA_OK;
}

enum p11ca_err p11cad_listen_bind(const struct p11cad_listen_addr *addr, int *fd,
				  struct p11ca_errmsg *em)
{
	if (addr == NULL || fd == NULL || addr->len == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "p11cad_listen_bind: no address");
	int family = addr->ss.ss_family;
	int s = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return p11ca_fail(em, P11CA_E_IO, "socket for %s: %s", addr->host, strerror(errno));

	enum p11ca_err err = P11CA_OK;
	int one = 1;
	/* A restarted daemon must be able to bind while old connections sit in TIME_WAIT. */
	if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (family == AF_INET6 &&
	     setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)) {
		err = p11ca_fail(em, P11CA_E_IO, "setsockopt on %s: %s", addr->host,
				 strerror(errno));
		goto out;
	}
	if (bind(s, (const struct sockaddr *)&addr->ss, addr->len) != 0) {
		int e = errno;
		err = p11ca_fail(em, e == EACCES ? P11CA_E_PERMISSION : P11CA_E_IO,
				 "cannot listen on %s%s%s:%u: %s%s", family == AF_INET6 ? "[" : "",
				 addr->host, family == AF_INET6 ? "]" : "", addr->port, strerror(e),
				 e == EADDRINUSE ? " (is another p11cad running?)"
				 : e == EACCES	 ? " (ports below 1024 need CAP_NET_BIND_SERVICE)"
				 : e == EADDRNOTAVAIL ? " (no interface has that address)"
						      : "");
		goto out;
	}
	if (listen(s, LISTEN_BACKLOG) != 0) {
		err = p11ca_fail(em, P11CA_E_IO, "listen on %s:%u: %s", addr->host, addr->port,
				 strerror(errno));
		goto out;
	}
	*fd = s;
	s = -1;
out:
	if (s >= 0)
		close(s);
	return err;
}

enum p11ca_err p11cad_listen_port(int fd, unsigned *port, struct p11ca_errmsg *em)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return p11ca_fail(em, P11CA_E_IO, "getsockname: %s", strerror(errno));
	if (ss.ss_family == AF_INET6)
		*port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	else if (ss.ss_family == AF_INET)
		*port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	else
		return p11ca_fail(em, P11CA_E_IO, "fd %d is not an IP socket", fd);
	return P11CA_OK;
}
