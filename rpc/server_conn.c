/*
 * One client connection of the rpc process, on its own thread: TLS handshake, then frames
 * until the peer leaves, breaks protocol, goes quiet or the server stops.
 *
 * The thread alone uses the SSL object. It polls the socket, its eventfd and the server's
 * stop event; reads whole frames as they come; checks each request in the order
 * rpc/server.h gives (decode, api_version, operation, role); forwards permitted ones with
 * chan_call_async without waiting, and writes each response when its completion arrives
 * (the channel's reader thread marks the slot and writes the eventfd). At
 * CONFIG_RPC_MAX_INFLIGHT_PER_CONNECTION requests in flight it stops reading: the client
 * feels back-pressure. Every wait is bounded: a whole frame within io_timeout_ms, the idle
 * timeout while nothing is in flight, and a deadline per request in the engine. The decoded
 * request (which may carry a PIN) is wiped once encoded for the engine. The requests in the
 * engine (slots, completions, deadlines, cancel on close) live in rpc/server_inflight.c.
 */
#include "rpc/server_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "common/kconfig.h"
#include "rpc/op.h"
#include "rpc/tls.h"

/* What a wait or an OpenSSL call on the socket came to. */
enum io { IO_AGAIN, IO_EOF, IO_TIMEOUT, IO_STOP, IO_ERROR };

int64_t rpc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *status_name(p11ca_v1_StatusCode code)
{
#define S(name) [p11ca_v1_StatusCode_STATUS_CODE_##name] = #name
	static const char *const names[] = {
		S(UNSPECIFIED),		S(OK),
		S(INVALID_ARGUMENT),	S(NOT_FOUND),
		S(ALREADY_EXISTS),	S(PERMISSION_DENIED),
		S(UNAUTHENTICATED),	S(RESOURCE_EXHAUSTED),
		S(FAILED_PRECONDITION), S(UNAVAILABLE),
		S(DEADLINE_EXCEEDED),	S(INTERNAL),
		S(UNIMPLEMENTED),	S(ABORTED),
	};
#undef S
	_Static_assert(sizeof(names) / sizeof(names[0]) == _p11ca_v1_StatusCode_ARRAYSIZE,
		       "a status code has no name here");
	unsigned i = (unsigned)code;
	return i < sizeof(names) / sizeof(names[0]) ? names[i] : "?";
}

static p11ca_forward_v1_Role forward_role(enum rpc_role role)
{
	switch (role) {
	case RPC_ROLE_AUDITOR:
		return p11ca_forward_v1_Role_ROLE_AUDITOR;
	case RPC_ROLE_OPERATOR:
		return p11ca_forward_v1_Role_ROLE_OPERATOR;
	case RPC_ROLE_ADMIN:
		return p11ca_forward_v1_Role_ROLE_ADMIN;
	default:
		return p11ca_forward_v1_Role_ROLE_NONE;
	}
}

void rpc_conn_peer_name(int fd, char out[RPC_PEER_SIZE])
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char addr[INET6_ADDRSTRLEN] = "";

	snprintf(out, RPC_PEER_SIZE, "unknown peer");
	if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
		if (inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr)) != NULL)
			snprintf(out, RPC_PEER_SIZE, "%s:%u", addr, ntohs(sin->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
		if (inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof(addr)) != NULL)
			snprintf(out, RPC_PEER_SIZE, "[%s]:%u", addr, ntohs(sin6->sin6_port));
	} else if (ss.ss_family == AF_UNIX) {
		snprintf(out, RPC_PEER_SIZE, "local");
	}
}

enum p11ca_err rpc_conn_new(struct rpc_server *s, int fd, const char *peer, struct rpc_conn **out)
{
	struct rpc_conn *c = calloc(1, sizeof(*c));
	int one = 1;

	*out = NULL;
	if (c == NULL)
		return P11CA_E_NOMEM;
	c->srv = s;
	c->fd = -1;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	bool inflight_ok = rpc_inflight_init(c) == P11CA_OK;
	c->ssl = SSL_new(s->tls);
	if (!inflight_ok || c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1 ||
	    rpc_frame_reader_new(CONFIG_RPC_MAX_FRAME, &c->reader, NULL) != P11CA_OK) {
		ERR_clear_error();
		rpc_conn_free(&c);
		return P11CA_E_NOMEM;
	}
	/* A peer that vanishes without close_notify reads as an end of stream; whether that
	 * is clean or a truncation is for the frame reader to say (frames are self-delimiting,
	 * so a truncation attack gains nothing). */
	SSL_set_options(c->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* An hsm_activate record holds a PIN: OpenSSL must not keep the plaintext around. */
	SSL_set_options(c->ssl, SSL_OP_CLEANSE_PLAINTEXT);
	/* Requests and responses are single small frames: do not wait to coalesce them. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	*out = c;
	return P11CA_OK;
}

void rpc_conn_free(struct rpc_conn **cp)
{
	struct rpc_conn *c = cp != NULL ? *cp : NULL;

	if (c == NULL)
		return;
	rpc_inflight_abandon(c);
	if (c->ssl != NULL) {
		/* One non-blocking attempt at close_notify; the peer may already be gone. */
		if (!c->tls_broken && SSL_is_init_finished(c->ssl))
			(void)SSL_shutdown(c->ssl);
		ERR_clear_error();
		SSL_free(c->ssl);
	}
	if (c->fd >= 0)
		close(c->fd);
	rpc_inflight_free(c);
	rpc_frame_reader_free(&c->reader);
	OPENSSL_cleanse(c, sizeof(*c));
	free(c);
	*cp = NULL;
}

/* Wait for the socket, or (when `stoppable`) for the server to stop, until the deadline. */
static enum io conn_wait(struct rpc_conn *c, short events, int64_t deadline, bool stoppable)
{
	struct pollfd pfd[2] = {
		{.fd = c->fd, .events = events},
		{.fd = c->srv->wake_fd, .events = POLLIN},
	};
	for (;;) {
		int64_t left = deadline - rpc_now_ms();
		if (left <= 0)
			return IO_TIMEOUT;
		int rc = poll(pfd, stoppable ? 2 : 1, left > INT_MAX ? INT_MAX : (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return IO_ERROR;
		if (rc == 0)
			return IO_TIMEOUT;
		if (stoppable && pfd[1].revents != 0)
			return IO_STOP;
		return IO_AGAIN; /* ready, or an error the next OpenSSL call reports */
	}
}

/* An OpenSSL call on the non-blocking socket returned rc: wait if it wants I/O. */
static enum io ssl_retry(struct rpc_conn *c, int rc, int64_t deadline, bool stoppable)
{
	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		return conn_wait(c, POLLIN, deadline, stoppable);
	case SSL_ERROR_WANT_WRITE:
		return conn_wait(c, POLLOUT, deadline, stoppable);
	case SSL_ERROR_ZERO_RETURN:
		return IO_EOF;
	default:
		c->tls_broken = true;
		return IO_ERROR;
	}
}

/* Why a handshake failed, for the log: the certificate check, or OpenSSL's last error. */
static void handshake_reason(struct rpc_conn *c, enum io r, char *out, size_t size)
{
	long verify = SSL_get_verify_result(c->ssl);
	unsigned long e = ERR_peek_last_error();

	if (r == IO_TIMEOUT)
		snprintf(out, size, "not completed within %u ms", c->srv->io_timeout_ms);
	else if (r == IO_STOP)
		snprintf(out, size, "server stopping");
	else if (verify != X509_V_OK)
		snprintf(out, size, "client certificate refused: %s",
			 X509_verify_cert_error_string(verify));
	else if (e != 0)
		ERR_error_string_n(e, out, size);
	else
		snprintf(out, size, "connection closed by the peer");
	ERR_clear_error();
}

static bool conn_handshake(struct rpc_conn *c)
{
	int64_t deadline = rpc_now_ms() + c->srv->io_timeout_ms;
	struct p11ca_errmsg em = {0};

	for (;;) {
		ERR_clear_error();
		int rc = SSL_accept(c->ssl);
		if (rc == 1)
			break;
		enum io r = ssl_retry(c, rc, deadline, true);
		if (r == IO_AGAIN)
			continue;
		char why[256];
		handshake_reason(c, r, why, sizeof(why));
		p11ca_logf(c->srv->log, r == IO_STOP ? LOG_INFO : LOG_WARNING,
			   "rpc: %s TLS handshake failed: %s", c->peer, why);
		return false;
	}
	if (rpc_tls_peer_role(c->ssl, c->srv->roles, &c->role, c->fp, &em) != P11CA_OK) {
		p11ca_logf(c->srv->log, LOG_WARNING, "rpc: %s refused: %s", c->peer,
			   p11ca_errmsg_text(&em));
		return false;
	}
	if (rpc_tls_peer_serial(c->ssl, c->serial, &c->serial_len, &em) != P11CA_OK) {
		p11ca_logf(c->srv->log, LOG_WARNING, "rpc: %s refused: %s", c->peer,
			   p11ca_errmsg_text(&em));
		return false;
	}
	rpc_fingerprint_format(c->fp, c->fp_hex);
	p11ca_logf(c->srv->log, LOG_DEBUG, "rpc: %s connected fp=%s role=%s", c->peer, c->fp_hex,
		   rpc_role_name(c->role));
	return true;
}

P11CA_MUST_CHECK static enum p11ca_err conn_write(struct rpc_conn *c, struct p11ca_buf *frame,
						  struct p11ca_errmsg *em)
{
	int64_t deadline = rpc_now_ms() + c->srv->io_timeout_ms;

	while (p11ca_buf_len(frame) > 0) {
		size_t w = 0;
		ERR_clear_error();
		if (SSL_write_ex(c->ssl, p11ca_buf_ptr(frame), p11ca_buf_len(frame), &w) == 1) {
			P11CA_GUARD(p11ca_buf_consume(frame, w));
			continue;
		}
		/* Not stoppable: a request that was read is answered even while stopping. */
		enum io r = ssl_retry(c, 0, deadline, false);
		if (r == IO_AGAIN)
			continue;
		ERR_clear_error();
		return p11ca_fail(em, r == IO_TIMEOUT ? P11CA_E_TIMEOUT : P11CA_E_IO,
				  "cannot send the response: %s",
				  r == IO_TIMEOUT ? "the client does not read" : "connection lost");
	}
	return P11CA_OK;
}

void rpc_conn_fill_caller(const struct rpc_conn *c, p11ca_forward_v1_ToEngine *to)
{
	to->has_caller = true;
	_Static_assert(sizeof(to->caller.fingerprint) == RPC_FINGERPRINT_LEN, "fingerprint size");
	memcpy(to->caller.fingerprint, c->fp, RPC_FINGERPRINT_LEN);
	to->caller.role = forward_role(c->role);
	snprintf(to->caller.peer, sizeof(to->caller.peer), "%s", c->peer);
	_Static_assert(sizeof(to->caller.serial.bytes) == sizeof(c->serial), "serial size");
	memcpy(to->caller.serial.bytes, c->serial, c->serial_len);
	to->caller.serial.size = (pb_size_t)c->serial_len;
}

/* Tell the engine, for the audit chain, what was refused. Wipes c->to first: it may still
 * hold the request. */
static void notify_refusal(struct rpc_conn *c, const char *op, p11ca_v1_StatusCode code,
			   const char *reason)
{
	struct p11ca_errmsg em = {0};
	p11ca_forward_v1_Refusal *r = &c->to.msg.refusal;

	OPENSSL_cleanse(&c->to, sizeof(c->to));
	rpc_conn_fill_caller(c, &c->to);
	c->to.which_msg = p11ca_forward_v1_ToEngine_refusal_tag;
	snprintf(r->op, sizeof(r->op), "%s", op);
	r->code = code;
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
	if (chan_notify(c->srv->engine, &c->to, &em) != P11CA_OK)
		p11ca_logf(c->srv->log, LOG_ERR,
			   "rpc: %s fp=%s: a refusal (%s) could not reach the audit log: %s",
			   c->peer, c->fp_hex, status_name(code), p11ca_errmsg_text(&em));
	OPENSSL_cleanse(&c->to, sizeof(c->to));
}

/* A frame that broke the framing rules: log, audit, and (the caller) close. */
static void refuse_frame(struct rpc_conn *c, enum p11ca_err err, const struct p11ca_errmsg *em)
{
	p11ca_v1_StatusCode code =
		err == P11CA_E_PROTO_TOO_LARGE ? p11ca_v1_StatusCode_STATUS_CODE_RESOURCE_EXHAUSTED
		: err == P11CA_E_TIMEOUT       ? p11ca_v1_StatusCode_STATUS_CODE_DEADLINE_EXCEEDED
					       : p11ca_v1_StatusCode_STATUS_CODE_INVALID_ARGUMENT;
	p11ca_logf(c->srv->log, LOG_WARNING, "rpc: %s fp=%s role=%s: bad frame, closing: %s",
		   c->peer, c->fp_hex, rpc_role_name(c->role), p11ca_errmsg_text(em));
	notify_refusal(c, "", code, p11ca_errmsg_text(em));
}

void rpc_conn_answer(struct rpc_conn *c, uint64_t request_id, p11ca_v1_StatusCode code,
		     const char *fmt, ...)
{
	p11ca_v1_Response *resp = &c->from.response;
	va_list ap;

	memset(&c->from, 0, sizeof(c->from));
	resp->request_id = request_id;
	resp->has_status = true;
	resp->status.code = code;
	va_start(ap, fmt);
	vsnprintf(resp->status.message, sizeof(resp->status.message), fmt, ap);
	va_end(ap);
}

/* Encode `resp`, write it, log the request's line. False: the connection is lost. */
bool rpc_conn_respond(struct rpc_conn *c, const p11ca_v1_Response *resp, const struct rpc_op *op,
		      int64_t start)
{
	struct p11ca_errmsg em = {0};
	struct p11ca_buf *out = NULL;
	enum p11ca_err err = rpc_frame_response_encode(resp, &out, &em);

	if (err != P11CA_OK) {
		/* Only an engine answer can fail here (a result over a limit): say so instead. */
		p11ca_logf(c->srv->log, LOG_ERR, "rpc: %s fp=%.16s: cannot encode the answer: %s",
			   c->peer, c->fp_hex, p11ca_errmsg_text(&em));
		rpc_conn_answer(c, resp->request_id, p11ca_v1_StatusCode_STATUS_CODE_INTERNAL,
				"the server could not encode its answer; the server log says more");
		resp = &c->from.response;
		p11ca_errmsg_clear(&em);
		err = rpc_frame_response_encode(resp, &out, &em);
	}
	if (err == P11CA_OK)
		err = conn_write(c, out, &em);
	p11ca_buf_free(&out);
	p11ca_logf(c->srv->log, LOG_INFO, "rpc: %s fp=%.16s role=%s op=%s status=%s %" PRId64 " ms",
		   c->peer, c->fp_hex, rpc_role_name(c->role), op != NULL ? op->name : "-",
		   status_name(resp->status.code), rpc_now_ms() - start);
	if (err != P11CA_OK) {
		p11ca_logf(c->srv->log, LOG_WARNING, "rpc: %s fp=%.16s: %s; closing", c->peer,
			   c->fp_hex, p11ca_errmsg_text(&em));
		c->tls_broken = c->tls_broken || err == P11CA_E_IO;
		return false;
	}
	return true;
}

/* ---- requests from the client ------------------------------------------------------------ */

/* Check one request frame (consumed): answer it here, or forward it. False: close now. */
static bool conn_serve(struct rpc_conn *c, struct p11ca_buf **frame)
{
	int64_t start = rpc_now_ms();
	struct p11ca_errmsg em = {0};
	p11ca_v1_Request *req = &c->to.msg.request;
	const struct rpc_op *op = NULL;

	OPENSSL_cleanse(&c->to, sizeof(c->to));
	enum p11ca_err err = rpc_frame_request_decode(*frame, req, &em);
	p11ca_buf_free(frame);
	OPENSSL_cleanse(c->chunk, sizeof(c->chunk));
	if (err != P11CA_OK) {
		/* The frame's boundaries are known, so the client can still be told why; then
		 * nothing more is read (requests in flight are still answered). */
		rpc_conn_answer(
			c, 0, p11ca_v1_StatusCode_STATUS_CODE_INVALID_ARGUMENT,
			"the request is not a valid p11ca.v1.Request (%s); closing the connection",
			p11ca_errmsg_text(&em));
		refuse_frame(c, err, &em);
		c->reading = false;
		goto reply;
	}
	uint64_t id = req->request_id;
	op = rpc_op_find(req->which_op);
	/* Every refusal decided here reaches the audit chain, not only the role ones. */
	if (req->api_version != RPC_API_VERSION) {
		rpc_conn_answer(c, id, p11ca_v1_StatusCode_STATUS_CODE_FAILED_PRECONDITION,
				"api_version %" PRIu32 " is not served here; this server speaks %d",
				req->api_version, RPC_API_VERSION);
		notify_refusal(c, op != NULL ? op->name : "",
			       p11ca_v1_StatusCode_STATUS_CODE_FAILED_PRECONDITION,
			       c->from.response.status.message);
	} else if (op == NULL) {
		rpc_conn_answer(
			c, id, p11ca_v1_StatusCode_STATUS_CODE_UNIMPLEMENTED,
			"the request names no operation this server implements; upgrade the "
			"server or use an older client");
		notify_refusal(c, "", p11ca_v1_StatusCode_STATUS_CODE_UNIMPLEMENTED,
			       c->from.response.status.message);
	} else if (!rpc_op_permits(op, c->role)) {
		rpc_conn_answer(c, id, p11ca_v1_StatusCode_STATUS_CODE_PERMISSION_DENIED,
				"role %s may not call %s; ask an administrator for a role that may",
				rpc_role_name(c->role), op->name);
		notify_refusal(c, op->name, p11ca_v1_StatusCode_STATUS_CODE_PERMISSION_DENIED,
			       c->from.response.status.message);
	} else {
		return rpc_conn_forward(c, op, id, start);
	}
reply:
	/* The request may hold a PIN (hsm_activate): gone before anything else happens. */
	OPENSSL_cleanse(&c->to, sizeof(c->to));
	return rpc_conn_respond(c, &c->from.response, op, start);
}

static void conn_stop_reading(struct rpc_conn *c, const char *why)
{
	c->reading = false;
	p11ca_logf(c->srv->log, LOG_INFO, "rpc: %s fp=%.16s disconnected: %s", c->peer, c->fp_hex,
		   why);
}

/* The reader's end: a clean close between frames, or a truncation inside one. */
static void conn_read_ended(struct rpc_conn *c, bool lost)
{
	struct p11ca_errmsg em = {0};

	if (rpc_frame_reader_eof(c->reader, &em) != P11CA_OK) {
		refuse_frame(c, em.code, &em);
		c->reading = false;
		return;
	}
	conn_stop_reading(c, lost ? "connection lost" : "closed by the client");
}

/*
 * Read and serve whole frames until OpenSSL has no more bytes, the cap of requests in
 * flight is reached, or reading ends. Bytes are read at most up to the end of the current
 * frame, so everything read belongs to it. False: close now.
 */
static bool conn_read(struct rpc_conn *c)
{
	while (c->reading && c->n_inflight < c->max_inflight) {
		size_t want = rpc_frame_reader_want(c->reader), got = 0, used = 0;
		struct p11ca_buf *frame = NULL;
		struct p11ca_errmsg em = {0};
		bool was_empty = rpc_frame_reader_eof(c->reader, NULL) == P11CA_OK;

		if (want > sizeof(c->chunk))
			want = sizeof(c->chunk);
		ERR_clear_error();
		int rc = SSL_read_ex(c->ssl, c->chunk, want, &got);
		if (rc != 1) {
			switch (SSL_get_error(c->ssl, rc)) {
			case SSL_ERROR_WANT_READ:
				c->want = POLLIN;
				return true;
			case SSL_ERROR_WANT_WRITE:
				c->want = POLLOUT;
				return true;
			case SSL_ERROR_ZERO_RETURN:
				conn_read_ended(c, false);
				return true;
			default:
				/* A vanished peer, or a fatal TLS error: no close_notify may
				 * follow; requests in flight are abandoned (no one to tell). */
				c->tls_broken = true;
				ERR_clear_error();
				conn_read_ended(c, true);
				return false;
			}
		}
		if (was_empty)
			c->frame_start = rpc_now_ms();
		enum p11ca_err err =
			rpc_frame_reader_feed(c->reader, c->chunk, got, &used, &frame, &em);
		if (err != P11CA_OK) {
			refuse_frame(c, err, &em);
			c->reading = false;
			return true;
		}
		if (frame != NULL) {
			c->idle_since = rpc_now_ms();
			if (!conn_serve(c, &frame))
				return false;
		}
	}
	return true;
}

/* ---- the connection's loop ----------------------------------------------------------------- */

/* The deadline the reader is under: a whole frame within io_timeout_ms, and (with nothing
 * in flight) the idle timeout. INT64_MAX: none. */
static int64_t read_deadline(const struct rpc_conn *c, bool *partial)
{
	*partial = rpc_frame_reader_eof(c->reader, NULL) != P11CA_OK;
	if (!c->reading)
		return INT64_MAX;
	if (*partial)
		return c->frame_start + c->srv->io_timeout_ms;
	if (c->n_inflight == 0)
		return c->idle_since + c->srv->io_timeout_ms;
	return INT64_MAX;
}

/* Wait for the socket (when reading below the cap), a completion, a stop or a deadline.
 * False: poll failed. */
static bool conn_poll(struct rpc_conn *c)
{
	bool partial;
	int64_t deadline = read_deadline(c, &partial);
	bool socket = c->reading && c->n_inflight < c->max_inflight;
	struct pollfd pfd[3] = {
		{.fd = c->wake_fd, .events = POLLIN},
		/* Unpolled while not wanted: a hung-up socket would wake poll for ever. */
		{.fd = socket ? c->fd : -1, .events = c->want},
		{.fd = c->reading ? c->srv->wake_fd : -1, .events = POLLIN},
	};
	deadline = rpc_inflight_deadline(c, deadline);

	int64_t left = deadline == INT64_MAX ? -1 : deadline - rpc_now_ms();
	int rc = left < 0 && deadline != INT64_MAX
			 ? 0
			 : poll(pfd, 3, left > INT_MAX ? INT_MAX : (int)left);
	if (rc < 0 && errno != EINTR)
		return false;
	if (pfd[2].revents != 0 || (c->reading && atomic_load(&c->srv->stopping)))
		conn_stop_reading(c, "server stopping");
	if (c->reading && rpc_now_ms() >= read_deadline(c, &partial)) {
		if (partial) {
			struct p11ca_errmsg em = {0};
			p11ca_fail(&em, P11CA_E_TIMEOUT,
				   "the client did not complete a frame within %u ms",
				   c->srv->io_timeout_ms);
			refuse_frame(c, P11CA_E_TIMEOUT, &em);
			c->reading = false;
		} else {
			conn_stop_reading(c, "idle timeout");
		}
	}
	return true;
}

/* Serve until the client leaves, breaks protocol, goes quiet or the server stops; requests
 * already forwarded are answered first (unless the connection is lost). */
static void conn_run(struct rpc_conn *c)
{
	c->reading = true;
	c->want = POLLIN;
	c->idle_since = rpc_now_ms();
	for (;;) {
		if (!rpc_conn_flush(c))
			return;
		if (!c->reading && c->n_inflight == 0)
			return;
		/* OpenSSL may hold bytes already taken from the socket: read before polling. */
		if (c->reading && atomic_load(&c->srv->stopping))
			conn_stop_reading(c, "server stopping");
		if (!conn_read(c))
			return;
		if (!rpc_conn_flush(c))
			return;
		if (!c->reading && c->n_inflight == 0)
			return;
		if (!conn_poll(c))
			return;
	}
}

void *rpc_conn_main(void *arg)
{
	struct rpc_conn *c = arg;
	struct rpc_server_slot *slot = c->slot;
	sigset_t set;

	/* OpenSSL writes with plain send(): a client that vanished must be EPIPE on this
	 * thread, not a SIGPIPE that kills the process. */
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if (conn_handshake(c))
		conn_run(c);
	rpc_conn_free(&c);
	ERR_clear_error();
	atomic_store(&slot->done, true);
	return NULL;
}
