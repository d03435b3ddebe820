#include "rpc/client.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/kconfig.h"
#include "rpc/frame.h"
#include "rpc/op.h"
#include "rpc/tls.h"

/* "[" + 45-character IPv6 literal + "]:65535", or a DNS name (253) plus the port. */
#define SERVER_MAX 300

struct rpc_client {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	int timeout_ms;
	uint64_t next_id;
	/* Sent with rpc_client_send and not yet answered: the id and the operation. */
	struct {
		uint64_t id;
		pb_size_t op;
	} pending[RPC_CLIENT_MAX_PENDING];
	unsigned n_pending;
	/* After a transport or protocol error the stream's framing is lost: refuse to go on. */
	bool broken;
	char server[SERVER_MAX + 1];
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for `events` on fd until the deadline. */
P11CA_MUST_CHECK static enum p11ca_err wait_fd(const struct rpc_client *c, short events,
					       int64_t deadline, const char *what,
					       struct p11ca_errmsg *em)
{
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return p11ca_fail(em, P11CA_E_TIMEOUT,
					  "%s %s timed out after %d ms — is the server overloaded "
					  "or the address wrong? check --server",
					  what, c->server, c->timeout_ms);
		struct pollfd pfd = {.fd = c->fd, .events = events};
		int rc = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (rc > 0)
			return P11CA_OK;
		if (rc < 0 && errno != EINTR)
			return p11ca_fail(em, P11CA_E_IO, "poll: %s", strerror(errno));
	}
}

/* Split "host:port" or "[v6]:port" into its parts. */
P11CA_MUST_CHECK static enum p11ca_err split_server(const char *server, char *host, size_t host_len,
						    char *port, size_t port_len,
						    struct p11ca_errmsg *em)
{
	const char *h = server, *colon;
	size_t hl;

	if (server == NULL || server[0] == '\0')
		return p11ca_fail(em, P11CA_E_USAGE,
				  "no server given: use --server HOST:PORT or P11CA_SERVER");
	if (strlen(server) > SERVER_MAX)
		return p11ca_fail(em, P11CA_E_USAGE, "server address is too long");
	if (server[0] == '[') {
		const char *end = strchr(server, ']');
		if (end == NULL || end[1] != ':')
			return p11ca_fail(em, P11CA_E_USAGE,
					  "bad server '%s': write an IPv6 address as [ADDR]:PORT",
					  server);
		h = server + 1;
		hl = (size_t)(end - h);
		colon = end + 1;
	} else {
		colon = strrchr(server, ':');
		if (colon == NULL || memchr(server, ':', (size_t)(colon - server)) != NULL)
			return p11ca_fail(em, P11CA_E_USAGE,
					  "bad server '%s': expected HOST:PORT ([ADDR]:PORT for "
					  "IPv6)",
					  server);
		hl = (size_t)(colon - server);
	}
	const char *p = colon + 1;
	char *endp = NULL;
	errno = 0;
	unsigned long pn = strtoul(p, &endp, 10);
	if (hl == 0 || hl >= host_len || *p < '0' || *p > '9' || *endp != '\0' || errno != 0 ||
	    pn == 0 || pn > 65535)
		return p11ca_fail(em, P11CA_E_USAGE,
				  "bad server '%s': expected HOST:PORT with a port in 1..65535",
				  server);
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, port_len, "%lu", pn);
	return P11CA_OK;
}

/* One non-blocking connect attempt, finished within the deadline. Returns 0 or an errno. */
static int try_connect(struct rpc_client *c, const struct addrinfo *ai, int64_t deadline)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			ai->ai_protocol);
	if (fd < 0)
		return errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		return e;
	}
	c->fd = fd;
	if (wait_fd(c, POLLOUT, deadline, "connecting to", NULL) != P11CA_OK) {
		c->fd = -1;
		close(fd);
		return ETIMEDOUT;
	}
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
		soerr = errno;
	if (soerr != 0) {
		c->fd = -1;
		close(fd);
	}
	return soerr;
}

P11CA_MUST_CHECK static enum p11ca_err tcp_connect(struct rpc_client *c, const char *host,
						   const char *port, int64_t deadline,
						   struct p11ca_errmsg *em)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int last = 0;

	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot resolve '%s': %s — check --server", host,
				  gai_strerror(rc));
	for (const struct addrinfo *ai = res; ai != NULL && c->fd < 0; ai = ai->ai_next)
		last = try_connect(c, ai, deadline);
	freeaddrinfo(res);
	if (c->fd >= 0)
		return P11CA_OK;
	if (last == ETIMEDOUT)
		return p11ca_fail(em, P11CA_E_TIMEOUT,
				  "connecting to %s timed out after %d ms — check --server and "
				  "that no firewall drops the connection",
				  c->server, c->timeout_ms);
	if (last == ECONNREFUSED)
		return p11ca_fail(em, P11CA_E_IO,
				  "connection to %s refused — is p11cad running? check --server",
				  c->server);
	return p11ca_fail(em, P11CA_E_IO, "cannot connect to %s: %s — check --server", c->server,
			  strerror(last));
}

/*
 * Explain a failed handshake or read in terms of what the user can fix. Called with
 * OpenSSL's error queue as the failure left it; drains it.
 */
static enum p11ca_err tls_explain(struct rpc_client *c, int ssl_err, const char *what,
				  struct p11ca_errmsg *em)
{
	unsigned long e = ERR_peek_last_error();
	int reason = e != 0 ? ERR_GET_REASON(e) : 0;
	long vr = SSL_get_verify_result(c->ssl);
	char detail[256] = "connection closed";
	enum p11ca_err err;

	if (e != 0)
		ERR_error_string_n(e, detail, sizeof(detail));
	if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
		err = p11ca_fail(em, P11CA_E_IO,
				 "%s %s: the server's certificate does not name that host (%s) — "
				 "use the name or address its certificate holds in --server",
				 what, c->server, X509_verify_cert_error_string(vr));
	else if (vr != X509_V_OK)
		err = p11ca_fail(em, P11CA_E_IO,
				 "%s %s: the server's certificate is not trusted (%s) — check "
				 "--cacert: it must be the management CA that issued p11cad's "
				 "certificate",
				 what, c->server, X509_verify_cert_error_string(vr));
	else if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
		 reason == SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL)
		err = p11ca_fail(em, P11CA_E_IO,
				 "%s %s: the server does not speak %s — check --server (is that "
				 "p11cad's RPC port?)",
				 what, c->server, RPC_TLS_ALPN);
	else if (ERR_GET_LIB(e) == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET)
		/* An alert from the server after our certificate went out: in TLS 1.3 that is
		 * how a refused client certificate shows up. */
		err = p11ca_fail(em, P11CA_E_IO,
				 "%s %s: the server refused the connection (%s) — it did not "
				 "accept the client certificate: check --cert/--key (issued by the "
				 "management CA, with the clientAuth usage)",
				 what, c->server, detail);
	else if (ssl_err == SSL_ERROR_SYSCALL || ssl_err == SSL_ERROR_ZERO_RETURN || e == 0 ||
		 (ERR_GET_LIB(e) == ERR_LIB_SSL && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING))
		err = p11ca_fail(em, P11CA_E_IO,
				 "%s %s: the server closed the connection — is that p11cad's RPC "
				 "port? if so, the server may have refused the client certificate: "
				 "check --cert/--key",
				 what, c->server);
	else
		err = p11ca_fail(em, P11CA_E_IO, "%s %s: TLS failed: %s", what, c->server, detail);
	ERR_clear_error();
	return err;
}

/* Run one SSL operation to completion (or the deadline). *n gets its positive result. */
enum ssl_op { OP_CONNECT, OP_READ, OP_WRITE };

P11CA_MUST_CHECK static enum p11ca_err ssl_run(struct rpc_client *c, enum ssl_op op, void *buf,
					       size_t len, size_t *n, int64_t deadline,
					       struct p11ca_errmsg *em)
{
	static const char *const what[] = {"TLS handshake with", "reading from", "writing to"};
	for (;;) {
		size_t done = 0;
		int rc;
		ERR_clear_error();
		if (op == OP_CONNECT)
			rc = SSL_connect(c->ssl);
		else if (op == OP_READ)
			rc = SSL_read_ex(c->ssl, buf, len, &done);
		else
			rc = SSL_write_ex(c->ssl, buf, len, &done);
		if (rc == 1) {
			if (n != NULL)
				*n = done;
			return P11CA_OK;
		}
		int se = SSL_get_error(c->ssl, rc);
		if (se == SSL_ERROR_WANT_READ || se == SSL_ERROR_WANT_WRITE) {
			P11CA_GUARD(wait_fd(c, se == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
					    deadline, what[op], em));
			continue;
		}
		if (op == OP_READ && se == SSL_ERROR_ZERO_RETURN) {
			*n = 0; /* close_notify: the caller decides whether that was clean */
			return P11CA_OK;
		}
		return tls_explain(c, se, what[op], em);
	}
}

enum p11ca_err rpc_client_connect(const struct rpc_client_options *opts, struct rpc_client **out,
				  struct p11ca_errmsg *em)
{
	struct rpc_client *c = NULL;
	char host[SERVER_MAX + 1], port[8];
	enum p11ca_err err;

	if (out == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_client_connect: no output");
	*out = NULL;
	if (opts == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_client_connect: no options");
	P11CA_GUARD(split_server(opts->server, host, sizeof(host), port, sizeof(port), em));
	if (opts->ca_file == NULL || opts->cert_file == NULL || opts->key_file == NULL)
		return p11ca_fail(em, P11CA_E_CONFIG,
				  "a CA file, a client certificate and its key are all needed: "
				  "give --cacert, --cert and --key");
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	c->fd = -1;
	c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : CONFIG_RPC_IO_TIMEOUT_MS;
	snprintf(c->server, sizeof(c->server), "%s", opts->server);

	err = rpc_tls_client_ctx_new(opts->ca_file, opts->cert_file, opts->key_file, &c->ctx, em);
	if (err != P11CA_OK)
		goto out;
	int64_t deadline = now_ms() + c->timeout_ms;
	err = tcp_connect(c, host, port, deadline, em);
	if (err != P11CA_OK)
		goto out;
	c->ssl = SSL_new(c->ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "cannot set up a TLS connection");
		goto out;
	}
	err = rpc_tls_client_expect_host(c->ssl, host, em);
	if (err != P11CA_OK)
		goto out;
	/* The handshake gets the same deadline as the connect, as the server gives it. */
	err = ssl_run(c, OP_CONNECT, NULL, 0, NULL, deadline, em);
	if (err != P11CA_OK)
		goto out;
	if (rpc_tls_check_peer(c->ssl, em) != P11CA_OK) {
		err = p11ca_fail(em, P11CA_E_IO, "the TLS connection to %s is not acceptable",
				 c->server);
		goto out;
	}
	*out = c;
	c = NULL;
out:
	ERR_clear_error();
	rpc_client_close(&c);
	return err;
}

/* Read one whole frame within the deadline. A clean close before a frame is an error
 * here: a client always waits for an answer. */
P11CA_MUST_CHECK static enum p11ca_err read_frame(struct rpc_client *c, int64_t deadline,
						  struct p11ca_buf **frame, struct p11ca_errmsg *em)
{
	struct rpc_frame_reader *r = NULL;
	uint8_t chunk[4096];
	enum p11ca_err err;

	err = rpc_frame_reader_new(CONFIG_RPC_MAX_FRAME, &r, em);
	while (err == P11CA_OK && *frame == NULL) {
		size_t want = rpc_frame_reader_want(r), n = 0, used = 0;
		err = ssl_run(c, OP_READ, chunk, want < sizeof(chunk) ? want : sizeof(chunk), &n,
			      deadline, em);
		if (err != P11CA_OK)
			break;
		if (n == 0) {
			err = rpc_frame_reader_eof(r, em);
			if (err == P11CA_OK)
				err = p11ca_fail(em, P11CA_E_IO,
						 "%s closed the connection without answering — "
						 "the server log says why",
						 c->server);
			break;
		}
		err = rpc_frame_reader_feed(r, chunk, n, &used, frame, em);
	}
	explicit_bzero(chunk, sizeof(chunk));
	rpc_frame_reader_free(&r);
	return err;
}

/* The envelope rules of docs/rpc.md, checked on every answer. */
P11CA_MUST_CHECK static enum p11ca_err
check_response(const p11ca_v1_Request *req, const p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	if (resp->request_id != req->request_id)
		return p11ca_fail(em, P11CA_E_PROTO, "the server answered request %llu, not %llu",
				  (unsigned long long)resp->request_id,
				  (unsigned long long)req->request_id);
	if (!resp->has_status || resp->status.code == p11ca_v1_StatusCode_STATUS_CODE_UNSPECIFIED)
		return p11ca_fail(em, P11CA_E_PROTO, "the server's answer has no status");
	bool ok = resp->status.code == p11ca_v1_StatusCode_STATUS_CODE_OK;
	if (ok && resp->which_result != req->which_op)
		return p11ca_fail(em, P11CA_E_PROTO,
				  "the server answered OK with result %u for operation %u",
				  (unsigned)resp->which_result, (unsigned)req->which_op);
	if (!ok && resp->which_result != 0)
		return p11ca_fail(em, P11CA_E_PROTO,
				  "the server sent a result with a failure status");
	return P11CA_OK;
}

/* Encode and write one request with a fresh id. Errors: those of rpc_client_send; after a
 * failed write the connection is marked broken. */
P11CA_MUST_CHECK static enum p11ca_err send_request(struct rpc_client *c, p11ca_v1_Request *req,
						    int64_t deadline, struct p11ca_errmsg *em)
{
	struct p11ca_buf *frame = NULL;
	enum p11ca_err err;

	if (c->broken)
		return p11ca_fail(em, P11CA_E_IO,
				  "the connection to %s failed earlier; connect again", c->server);
	req->api_version = RPC_API_VERSION;
	req->request_id = ++c->next_id;
	err = rpc_frame_request_encode(req, &frame, em);
	if (err != P11CA_OK)
		return err; /* nothing was sent: the connection is still usable */
	while (err == P11CA_OK && p11ca_buf_len(frame) > 0) {
		size_t n = 0;
		err = ssl_run(c, OP_WRITE, (void *)p11ca_buf_ptr(frame), p11ca_buf_len(frame), &n,
			      deadline, em);
		if (err == P11CA_OK)
			err = p11ca_buf_consume(frame, n);
	}
	p11ca_buf_free(&frame);
	if (err != P11CA_OK)
		c->broken = true;
	return err;
}

enum p11ca_err rpc_client_send(struct rpc_client *c, p11ca_v1_Request *req, struct p11ca_errmsg *em)
{
	if (c == NULL || req == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_client_send: bad arguments");
	if (c->n_pending >= RPC_CLIENT_MAX_PENDING)
		return p11ca_fail(em, P11CA_E_USAGE,
				  "%u requests to %s are unanswered; receive some first",
				  c->n_pending, c->server);
	P11CA_GUARD(send_request(c, req, now_ms() + c->timeout_ms, em));
	c->pending[c->n_pending].id = req->request_id;
	c->pending[c->n_pending].op = req->which_op;
	c->n_pending++;
	return P11CA_OK;
}

enum p11ca_err rpc_client_recv(struct rpc_client *c, p11ca_v1_Response *resp,
			       struct p11ca_errmsg *em)
{
	struct p11ca_buf *frame = NULL;
	p11ca_v1_Request key = p11ca_v1_Request_init_zero;
	enum p11ca_err err;
	unsigned i;

	if (c == NULL || resp == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_client_recv: bad arguments");
	if (c->n_pending == 0)
		return p11ca_fail(em, P11CA_E_USAGE, "no request to %s is waiting for its response",
				  c->server);
	if (c->broken)
		return p11ca_fail(em, P11CA_E_IO,
				  "the connection to %s failed earlier; connect again", c->server);
	err = read_frame(c, now_ms() + c->timeout_ms, &frame, em);
	if (err == P11CA_OK)
		err = rpc_frame_response_decode(frame, resp, em);
	p11ca_buf_free(&frame);
	for (i = 0; err == P11CA_OK && i < c->n_pending; i++)
		if (c->pending[i].id == resp->request_id)
			break;
	if (err == P11CA_OK && i == c->n_pending)
		err = p11ca_fail(em, P11CA_E_PROTO,
				 "the server answered request %llu, which is not waiting",
				 (unsigned long long)resp->request_id);
	if (err == P11CA_OK) {
		key.request_id = c->pending[i].id;
		key.which_op = c->pending[i].op;
		err = check_response(&key, resp, em);
		c->pending[i] = c->pending[--c->n_pending];
	}
	if (err != P11CA_OK)
		c->broken = true;
	return err;
}

enum p11ca_err rpc_client_call(struct rpc_client *c, p11ca_v1_Request *req, p11ca_v1_Response *resp,
			       struct p11ca_errmsg *em)
{
	struct p11ca_buf *frame = NULL;
	enum p11ca_err err;

	if (c == NULL || req == NULL || resp == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_client_call: bad arguments");
	if (c->n_pending > 0)
		return p11ca_fail(em, P11CA_E_USAGE,
				  "rpc_client_call with %u pipelined requests unanswered; receive "
				  "them first",
				  c->n_pending);
	int64_t deadline = now_ms() + c->timeout_ms;

	err = send_request(c, req, deadline, em);
	if (err != P11CA_OK)
		return err;
	if (err == P11CA_OK)
		err = read_frame(c, deadline, &frame, em);
	if (err == P11CA_OK)
		err = rpc_frame_response_decode(frame, resp, em);
	if (err == P11CA_OK)
		err = check_response(req, resp, em);
	p11ca_buf_free(&frame);
	if (err != P11CA_OK)
		c->broken = true;
	return err;
}

void rpc_client_close(struct rpc_client **cp)
{
	if (cp == NULL || *cp == NULL)
		return;
	struct rpc_client *c = *cp;
	if (c->ssl != NULL) {
		/* One non-blocking close_notify; never wait for the server's. */
		if (SSL_is_init_finished(c->ssl) && !c->broken)
			(void)SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	ERR_clear_error();
	if (c->fd >= 0)
		close(c->fd);
	rpc_tls_ctx_free(&c->ctx);
	explicit_bzero(c, sizeof(*c));
	free(c);
	*cp = NULL;
}
