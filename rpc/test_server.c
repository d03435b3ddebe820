/*
 * Unit tests for rpc/server: rpc_server_run on a 127.0.0.1 listener, real TLS clients with
 * certificates made here (management CA, admin, operator, auditor, an unlisted client and
 * one from a foreign CA), and a fake engine on the other end of the engine socketpair: a
 * channel server that answers every forwarded request OK and records refusals.
 *
 * Every wait is a condition variable or a poll with a deadline; the log lines are captured
 * so each refusal is shown to happen for the reason expected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pb_encode.h>

#include "common/kconfig.h"
#include "rpc/channel.h"
#include "rpc/client.h"
#include "rpc/forward.pb.h"
#include "rpc/frame.h"
#include "rpc/op.h"
#include "rpc/server.h"
#include "rpc/test_pki.h"
#include "rpc/tls.h"

#define N(a) TEST_PKI_N(a)
/* Safety net for waits that succeed at once when the code is right. */
#define WAIT_MS 10000

/* ---- PKI ------------------------------------------------------------------------------ */

static struct test_pki pki;
static char roles_path[600];
static char fp_hex[4][RPC_FINGERPRINT_HEX_SIZE]; /* admin, operator, auditor, unlisted */
static SSL_CTX *ctx_admin, *ctx_operator, *ctx_auditor, *ctx_unlisted, *ctx_foreign, *ctx_nocert;

static const char *path(const char *name, const char *ext)
{
	return test_pki_path(&pki, name, ext);
}

static SSL_CTX *client_ctx(const char *name)
{
	SSL_CTX *ctx = NULL;
	struct p11ca_errmsg em = {0};
	if (rpc_tls_client_ctx_new(path("ca", "crt"), path(name, "crt"), path(name, "key"), &ctx,
				   &em) != P11CA_OK)
		fprintf(stderr, "client context %s: %s\n", name, p11ca_errmsg_text(&em));
	assert_non_null(ctx);
	return ctx;
}

static int group_setup(void **state)
{
	(void)state;
	if (test_pki_init(&pki, "p11ca-server", 1) != 0)
		return -1;
	/* The server blocks SIGPIPE on its threads; the test's clients need the same. */
	signal(SIGPIPE, SIG_IGN);

	X509 *certs[] = {
		test_pki_issue(&pki, "admin", TEST_PKI_CA, &test_pki_client),
		test_pki_issue(&pki, "operator", TEST_PKI_CA, &test_pki_client),
		test_pki_issue(&pki, "auditor", TEST_PKI_CA, &test_pki_client),
		test_pki_issue(&pki, "unlisted", TEST_PKI_CA, &test_pki_client),
		test_pki_issue(&pki, "foreign", TEST_PKI_OTHER_CA, &test_pki_client),
		test_pki_issue(&pki, "server", TEST_PKI_CA, &test_pki_server),
	};
	for (size_t i = 0; i < 4; i++) {
		unsigned char md[RPC_FINGERPRINT_LEN];
		unsigned md_len = 0;
		assert_int_equal(X509_digest(certs[i], EVP_sha256(), md, &md_len), 1);
		rpc_fingerprint_format(md, fp_hex[i]);
	}
	/* admin and auditor from the roles file; operator comes inline (see start()). */
	snprintf(roles_path, sizeof(roles_path), "%s/roles.conf", pki.dir);
	FILE *f = fopen(roles_path, "w");
	assert_non_null(f);
	fprintf(f, "# test roles\n%s admin\n%s auditor\n", fp_hex[0], fp_hex[2]);
	fclose(f);
	for (size_t i = 0; i < N(certs); i++)
		X509_free(certs[i]);
	test_pki_done(&pki);

	ctx_admin = client_ctx("admin");
	ctx_operator = client_ctx("operator");
	ctx_auditor = client_ctx("auditor");
	ctx_unlisted = client_ctx("unlisted");
	ctx_foreign = client_ctx("foreign");
	/* Built by hand: rpc_tls_client_ctx_new insists on a certificate. */
	ctx_nocert = SSL_CTX_new(TLS_client_method());
	assert_non_null(ctx_nocert);
	assert_int_equal(SSL_CTX_set_min_proto_version(ctx_nocert, TLS1_3_VERSION), 1);
	assert_int_equal(SSL_CTX_load_verify_locations(ctx_nocert, path("ca", "crt"), NULL), 1);
	SSL_CTX_set_verify(ctx_nocert, SSL_VERIFY_PEER, NULL);
	assert_int_equal(
		SSL_CTX_set_alpn_protos(ctx_nocert, (const unsigned char *)"\x07p11ca/1", 8), 0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	SSL_CTX *ctxs[] = {ctx_admin,	 ctx_operator, ctx_auditor,
			   ctx_unlisted, ctx_foreign,  ctx_nocert};
	for (size_t i = 0; i < N(ctxs); i++)
		SSL_CTX_free(ctxs[i]);
	static const char *names[] = {"ca",	 "other-ca", "admin",	"operator",
				      "auditor", "unlisted", "foreign", "server"};
	for (size_t i = 0; i < N(names); i++) {
		unlink(path(names[i], "crt"));
		unlink(path(names[i], "key"));
	}
	unlink(roles_path);
	rmdir(pki.dir);
	return 0;
}

/* ---- time and waiting ----------------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timespec abs_deadline(int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

/* ---- captured log --------------------------------------------------------------------- */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char lines[512][512];
	unsigned n;
} logs = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static void log_line(void *arg, int priority, const char *line)
{
	(void)arg;
	fprintf(stderr, "  log <%d> %s\n", priority, line);
	pthread_mutex_lock(&logs.mu);
	if (logs.n < N(logs.lines))
		snprintf(logs.lines[logs.n++], sizeof(logs.lines[0]), "%s", line);
	pthread_cond_broadcast(&logs.cv);
	pthread_mutex_unlock(&logs.mu);
}

static const struct p11ca_logger logger = {.fn = log_line, .max_priority = LOG_DEBUG};

/* Whether a captured line contains every one of the (NULL-terminated) strings. */
static bool log_has_locked(const char *const *want)
{
	for (unsigned i = 0; i < logs.n; i++) {
		bool all = true;
		for (size_t k = 0; want[k] != NULL && all; k++)
			all = strstr(logs.lines[i], want[k]) != NULL;
		if (all)
			return true;
	}
	return false;
}

#define wait_log(...) wait_log_((const char *const[]){__VA_ARGS__, NULL})
static bool wait_log_(const char *const *want)
{
	struct timespec dl = abs_deadline(WAIT_MS);
	bool found;
	pthread_mutex_lock(&logs.mu);
	while (!(found = log_has_locked(want)))
		if (pthread_cond_timedwait(&logs.cv, &logs.mu, &dl) != 0)
			break;
	if (!found)
		found = log_has_locked(want);
	pthread_mutex_unlock(&logs.mu);
	return found;
}

static bool log_contains(const char *s)
{
	pthread_mutex_lock(&logs.mu);
	bool found = log_has_locked((const char *const[]){s, NULL});
	pthread_mutex_unlock(&logs.mu);
	return found;
}

static void log_reset(void)
{
	pthread_mutex_lock(&logs.mu);
	logs.n = 0;
	pthread_mutex_unlock(&logs.mu);
}

/* ---- the fake engine ------------------------------------------------------------------ */

struct engine {
	struct chan *ch;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned requests, refusals;
	p11ca_forward_v1_Caller caller; /* of the last message */
	p11ca_forward_v1_Refusal refusal;
	char pin[64];	  /* of the last hsm_activate */
	bool gate_closed; /* ca_list waits while set */
	bool entered;	  /* a ca_list is waiting at the gate */
};

static enum p11ca_err engine_handler(void *arg, void *in, void *reply, struct p11ca_errmsg *em)
{
	struct engine *e = arg;
	p11ca_forward_v1_ToEngine *to = in;
	p11ca_forward_v1_FromEngine *from = reply;

	pthread_mutex_lock(&e->mu);
	e->caller = to->caller;
	if (from == NULL) {
		bool ok = to->which_msg == p11ca_forward_v1_ToEngine_refusal_tag;
		if (ok) {
			e->refusal = to->msg.refusal;
			e->refusals++;
		}
		pthread_cond_broadcast(&e->cv);
		pthread_mutex_unlock(&e->mu);
		return ok ? P11CA_OK : p11ca_fail(em, P11CA_E_PROTO, "notification not a refusal");
	}
	if (to->which_msg != p11ca_forward_v1_ToEngine_request_tag) {
		pthread_mutex_unlock(&e->mu);
		return p11ca_fail(em, P11CA_E_PROTO, "call without a request");
	}
	const p11ca_v1_Request *req = &to->msg.request;
	e->requests++;
	if (req->which_op == p11ca_v1_Request_hsm_activate_tag)
		snprintf(e->pin, sizeof(e->pin), "%.*s", (int)req->op.hsm_activate.pin.size,
			 (const char *)req->op.hsm_activate.pin.bytes);
	if (req->which_op == p11ca_v1_Request_ca_list_tag) {
		e->entered = true;
		pthread_cond_broadcast(&e->cv);
		while (e->gate_closed)
			pthread_cond_wait(&e->cv, &e->mu);
	}
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);

	from->has_response = true;
	from->response.request_id = req->request_id;
	from->response.has_status = true;
	from->response.status.code = p11ca_v1_StatusCode_STATUS_CODE_OK;
	/* Result numbers match op numbers; an all-zero result is a valid empty message. */
	from->response.which_result = req->which_op;
	if (req->which_op == p11ca_v1_Request_health_tag) {
		from->response.result.health.api_version = 1;
		from->response.result.health.ready = true;
	}
	return P11CA_OK;
}

/* Wait until *counter (under e->mu) reaches `n`. */
static bool engine_wait(struct engine *e, const unsigned *counter, unsigned n)
{
	struct timespec dl = abs_deadline(WAIT_MS);
	pthread_mutex_lock(&e->mu);
	while (*counter < n)
		if (pthread_cond_timedwait(&e->cv, &e->mu, &dl) != 0)
			break;
	bool ok = *counter >= n;
	pthread_mutex_unlock(&e->mu);
	return ok;
}

static unsigned engine_count(struct engine *e, const unsigned *counter)
{
	pthread_mutex_lock(&e->mu);
	unsigned n = *counter;
	pthread_mutex_unlock(&e->mu);
	return n;
}

/* ---- the server under test ------------------------------------------------------------ */

struct srv {
	int listen_fd, stop_pipe[2], engine_fds[2];
	unsigned port;
	struct rpc_server_options opts;
	const char *inline_roles[2];
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool finished;
	unsigned engine_workers; /* the fake engine's; 0: 4 */
	enum p11ca_err result;
	struct p11ca_errmsg em;
	struct engine eng;
};

static void *server_thread(void *arg)
{
	struct srv *s = arg;
	struct p11ca_errmsg em = {0};
	enum p11ca_err err = rpc_server_run(&s->opts, &em);
	pthread_mutex_lock(&s->mu);
	s->result = err;
	s->em = em;
	s->finished = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static int listener(unsigned *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* Options every test shares; the test adjusts them before start(). */
static struct srv *srv_new(void)
{
	struct srv *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	log_reset();
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_mutex_init(&s->eng.mu, NULL);
	pthread_cond_init(&s->eng.cv, NULL);
	s->listen_fd = listener(&s->port);
	assert_int_equal(pipe2(s->stop_pipe, O_CLOEXEC), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s->engine_fds), 0);
	s->inline_roles[0] = fp_hex[1];
	s->inline_roles[1] = "operator";
	s->opts = (struct rpc_server_options){
		.listen_fds = &s->listen_fd,
		.n_listen = 1,
		.engine_fd = s->engine_fds[0],
		.stop_fd = s->stop_pipe[0],
		.ca_file = path("ca", "crt"),
		.cert_file = path("server", "crt"),
		.key_file = path("server", "key"),
		.roles_file = roles_path,
		.inline_roles = s->inline_roles,
		.n_inline_roles = 1,
		.io_timeout_ms = 5000,
		.log = &logger,
	};
	return s;
}

/* Start the fake engine (unless the test plays the engine itself) and the server. */
static void srv_start(struct srv *s, bool fake_engine)
{
	if (fake_engine) {
		const struct chan_spec spec = {
			.name = "test engine",
			.out_fields = p11ca_forward_v1_FromEngine_fields,
			.out_size = sizeof(p11ca_forward_v1_FromEngine),
			.in_fields = p11ca_forward_v1_ToEngine_fields,
			.in_size = sizeof(p11ca_forward_v1_ToEngine),
			.max_frame = 65536,
			.is_server = 1,
			.workers = s->engine_workers ? s->engine_workers : 4,
			.handler = engine_handler,
			.arg = &s->eng,
			.log = &logger,
		};
		assert_int_equal(chan_open(s->engine_fds[1], &spec, &s->eng.ch, NULL), P11CA_OK);
	}
	assert_int_equal(pthread_create(&s->thread, NULL, server_thread, s), 0);
	assert_true(wait_log("rpc: serving on 1 socket"));
}

static bool srv_wait_finished(struct srv *s, int ms)
{
	struct timespec dl = abs_deadline(ms);
	pthread_mutex_lock(&s->mu);
	while (!s->finished)
		if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) != 0)
			break;
	bool done = s->finished;
	pthread_mutex_unlock(&s->mu);
	return done;
}

static void srv_signal_stop(struct srv *s)
{
	assert_int_equal(write(s->stop_pipe[1], "x", 1), 1);
}

/* Stop (if still running), check the result, free. */
static void srv_finish(struct srv **sp, enum p11ca_err expect)
{
	struct srv *s = *sp;
	srv_signal_stop(s);
	assert_true(srv_wait_finished(s, WAIT_MS));
	assert_int_equal(pthread_join(s->thread, NULL), 0);
	if (s->result != expect)
		fprintf(stderr, "rpc_server_run: %s\n", p11ca_errmsg_text(&s->em));
	assert_int_equal(s->result, expect);
	chan_close(&s->eng.ch);
	close(s->stop_pipe[0]);
	close(s->stop_pipe[1]);
	free(s);
	*sp = NULL;
}

/* ---- a client ------------------------------------------------------------------------- */

struct client {
	int fd;
	SSL *ssl;
	bool connected; /* SSL_connect succeeded (in TLS 1.3 not yet proof of acceptance) */
};

static struct client *client_open(struct srv *s, SSL_CTX *ctx)
{
	struct client *cl = calloc(1, sizeof(*cl));
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons((uint16_t)s->port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = WAIT_MS / 1000};
	assert_non_null(cl);
	cl->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(cl->fd >= 0);
	setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(cl->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(cl->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cl->ssl = SSL_new(ctx);
	assert_non_null(cl->ssl);
	SSL_set_fd(cl->ssl, cl->fd);
	assert_int_equal(rpc_tls_client_expect_host(cl->ssl, "127.0.0.1", NULL), P11CA_OK);
	cl->connected = SSL_connect(cl->ssl) == 1 && rpc_tls_check_peer(cl->ssl, NULL) == P11CA_OK;
	ERR_clear_error();
	return cl;
}

static void client_close(struct client **clp)
{
	struct client *cl = *clp;
	if (cl == NULL)
		return;
	SSL_free(cl->ssl);
	close(cl->fd);
	ERR_clear_error();
	free(cl);
	*clp = NULL;
}

static void client_send(struct client *cl, const void *data, size_t len)
{
	size_t w = 0;
	assert_int_equal(SSL_write_ex(cl->ssl, data, len, &w), 1);
	assert_int_equal(w, len);
}

static void client_send_request(struct client *cl, const p11ca_v1_Request *req)
{
	struct p11ca_buf *frame = NULL;
	assert_int_equal(rpc_frame_request_encode(req, &frame, NULL), P11CA_OK);
	client_send(cl, p11ca_buf_ptr(frame), p11ca_buf_len(frame));
	p11ca_buf_free(&frame);
}

/* Read one Response. P11CA_E_IO: the connection ended (or was refused) first. */
static enum p11ca_err client_read(struct client *cl, p11ca_v1_Response *resp)
{
	struct rpc_frame_reader *r = NULL;
	struct p11ca_buf *frame = NULL;
	uint8_t chunk[4096];
	enum p11ca_err err = rpc_frame_reader_new(CONFIG_RPC_MAX_FRAME, &r, NULL);
	while (err == P11CA_OK && frame == NULL) {
		size_t want = rpc_frame_reader_want(r), got = 0, used = 0;
		if (SSL_read_ex(cl->ssl, chunk, want < sizeof(chunk) ? want : sizeof(chunk),
				&got) != 1) {
			err = P11CA_E_IO;
			break;
		}
		err = rpc_frame_reader_feed(r, chunk, got, &used, &frame, NULL);
	}
	if (err == P11CA_OK)
		err = rpc_frame_response_decode(frame, resp, NULL);
	p11ca_buf_free(&frame);
	rpc_frame_reader_free(&r);
	ERR_clear_error();
	return err;
}

/* Whether the server ended the connection (or refused it) within WAIT_MS. */
static bool client_sees_close(struct client *cl)
{
	char c;
	size_t got = 0;
	if (SSL_read_ex(cl->ssl, &c, 1, &got) == 1)
		return false;
	int e = SSL_get_error(cl->ssl, 0);
	bool timed_out = e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK);
	ERR_clear_error();
	return !timed_out;
}

static p11ca_v1_Request health_request(uint64_t id)
{
	p11ca_v1_Request req = p11ca_v1_Request_init_zero;
	req.api_version = RPC_API_VERSION;
	req.request_id = id;
	req.which_op = p11ca_v1_Request_health_tag;
	return req;
}

static p11ca_v1_Response resp; /* 60 KiB: not on the stack */

/* ---- tests ---------------------------------------------------------------------------- */

/* Connect with ctx, send one request, read its response into `resp`. */
static enum p11ca_err call_once(struct srv *s, SSL_CTX *ctx, const p11ca_v1_Request *req)
{
	struct client *cl = client_open(s, ctx);
	assert_true(cl->connected);
	client_send_request(cl, req);
	enum p11ca_err err = client_read(cl, &resp);
	client_close(&cl);
	return err;
}

static void test_admin_health(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	srv_start(s, true);
	p11ca_v1_Request req = health_request(42);
	assert_int_equal(call_once(s, ctx_admin, &req), P11CA_OK);
	assert_int_equal(resp.request_id, 42);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_OK);
	assert_int_equal(resp.which_result, p11ca_v1_Response_health_tag);
	assert_true(resp.result.health.ready);
	/* The engine learnt who asked. */
	assert_int_equal(engine_count(&s->eng, &s->eng.requests), 1);
	assert_int_equal(s->eng.caller.role, p11ca_forward_v1_Role_ROLE_ADMIN);
	assert_memory_equal(s->eng.caller.peer, "127.0.0.1:", 10);
	char fp[RPC_FINGERPRINT_HEX_SIZE];
	rpc_fingerprint_format(s->eng.caller.fingerprint, fp);
	assert_string_equal(fp, fp_hex[0]);
	/* One line per request: peer, fingerprint prefix, role, op, status, duration. */
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "fp=%.16s ", fp_hex[0]);
	assert_true(wait_log("rpc: 127.0.0.1:", prefix, "role=admin op=health status=OK", " ms"));
	srv_finish(&s, P11CA_OK);
}

static void test_inline_role_forwarded(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	srv_start(s, true);
	p11ca_v1_Request req = health_request(7);
	req.which_op = p11ca_v1_Request_cert_sign_tag;
	snprintf(req.op.cert_sign.ca, sizeof(req.op.cert_sign.ca), "root");
	assert_int_equal(call_once(s, ctx_operator, &req), P11CA_OK);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_OK);
	assert_int_equal(resp.which_result, p11ca_v1_Response_cert_sign_tag);
	assert_int_equal(s->eng.caller.role, p11ca_forward_v1_Role_ROLE_OPERATOR);
	assert_int_equal(engine_count(&s->eng, &s->eng.refusals), 0);
	srv_finish(&s, P11CA_OK);
}

static void test_auditor_sign_denied_and_audited(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	srv_start(s, true);
	struct client *cl = client_open(s, ctx_auditor);
	assert_true(cl->connected);
	p11ca_v1_Request req = health_request(5);
	req.which_op = p11ca_v1_Request_cert_sign_tag;
	client_send_request(cl, &req);
	assert_int_equal(client_read(cl, &resp), P11CA_OK);
	assert_int_equal(resp.request_id, 5);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_PERMISSION_DENIED);
	assert_int_equal(resp.which_result, 0);
	assert_non_null(strstr(resp.status.message, "auditor"));
	assert_non_null(strstr(resp.status.message, "cert_sign"));
	/* The engine got the refusal for its audit chain, not the request. */
	assert_true(engine_wait(&s->eng, &s->eng.refusals, 1));
	assert_string_equal(s->eng.refusal.op, "cert_sign");
	assert_int_equal(s->eng.refusal.code, p11ca_v1_StatusCode_STATUS_CODE_PERMISSION_DENIED);
	assert_int_equal(s->eng.caller.role, p11ca_forward_v1_Role_ROLE_AUDITOR);
	assert_int_equal(engine_count(&s->eng, &s->eng.requests), 0);
	/* A denial does not end the connection: a permitted call still works. */
	req = health_request(6);
	client_send_request(cl, &req);
	assert_int_equal(client_read(cl, &resp), P11CA_OK);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_OK);
	assert_true(wait_log("role=auditor op=cert_sign status=PERMISSION_DENIED"));
	client_close(&cl);
	srv_finish(&s, P11CA_OK);
}

static void test_unlisted_client_may_do_nothing(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	srv_start(s, true);
	p11ca_v1_Request req = health_request(1);
	assert_int_equal(call_once(s, ctx_unlisted, &req), P11CA_OK);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_PERMISSION_DENIED);
	assert_non_null(strstr(resp.status.message, "none"));
	assert_true(engine_wait(&s->eng, &s->eng.refusals, 1));
	assert_int_equal(s->eng.caller.role, p11ca_forward_v1_Role_ROLE_NONE);
	assert_int_equal(engine_count(&s->eng, &s->eng.requests), 0);
	srv_finish(&s, P11CA_OK);
}

/* A client whose handshake the server refuses: its first read fails, the server logs it. */
static void expect_handshake_refused(SSL_CTX *ctx, const char *reason)
{
	struct srv *s = srv_new();
	srv_start(s, true);
	struct client *cl = client_open(s, ctx);
	/* In TLS 1.3 the refusal may only show on the client's first read. */
	if (cl->connected) {
		size_t w = 0;
		(void)SSL_write_ex(cl->ssl, "\0\0\0\1x", 5, &w);
		assert_int_equal(client_read(cl, &resp), P11CA_E_IO);
	}
	assert_true(wait_log("rpc: 127.0.0.1:", "TLS handshake failed", reason));
	assert_int_equal(engine_count(&s->eng, &s->eng.requests), 0);
	client_close(&cl);
	srv_finish(&s, P11CA_OK);
}

static void test_no_client_certificate_refused(void **state)
{
	(void)state;
	expect_handshake_refused(ctx_nocert, "certificate");
}

static void test_foreign_ca_refused(void **state)
{
	(void)state;
	expect_handshake_refused(ctx_foreign, "unable to get local issuer certificate");
}

/* Send raw bytes as admin on a fresh connection. */
static struct client *admin_raw(struct srv *s, const void *bytes, size_t len)
{
	struct client *cl = client_open(s, ctx_admin);
	assert_true(cl->connected);
	client_send(cl, bytes, len);
	return cl;
}

static void test_frame_over_limit(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	srv_start(s, true);
	struct client *good = client_open(s, ctx_admin);
	assert_true(good->connected);
	uint32_t len = CONFIG_RPC_MAX_FRAME + 1;
	uint8_t hdr[4] = {len >> 24, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff};
	struct client *bad = admin_raw(s, hdr, sizeof(hdr));
	assert_true(client_sees_close(bad));
	assert_true(engine_wait(&s->eng, &s->eng.refusals, 1));
	assert_int_equal(s->eng.refusal.code, p11ca_v1_StatusCode_STATUS_CODE_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(s->eng.refusal.reason, "limit"));
	assert_string_equal(s->eng.refusal.op, "");
	assert_true(wait_log("bad frame", fp_hex[0]));
	/* The other client, connected all along, is still served. */
	p11ca_v1_Request req = health_request(2);
	client_send_request(good, &req);
	assert_int_equal(client_read(good, &resp), P11CA_OK);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_OK);
	client_close(&bad);
	client_close(&good);
	srv_finish(&s, P11CA_OK);
}

static void test_truncated_frame(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	srv_start(s, true);
	uint8_t bytes[14] = {0, 0, 0, 100, 0x08, 0x01};
	struct client *cl = admin_raw(s, bytes, sizeof(bytes));
	(void)SSL_shutdown(cl->ssl);
	client_close(&cl);
	assert_true(engine_wait(&s->eng, &s->eng.refusals, 1));
	assert_int_equal(s->eng.refusal.code, p11ca_v1_StatusCode_STATUS_CODE_INVALID_ARGUMENT);
	assert_non_null(strstr(s->eng.refusal.reason, "middle of a frame"));
	assert_int_equal(engine_count(&s->eng, &s->eng.requests), 0);
	srv_finish(&s, P11CA_OK);
}

static void test_garbage_body(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	srv_start(s, true);
	uint8_t bytes[4 + 16] = {0, 0, 0, 16};
	memset(bytes + 4, 0xff, 16);
	struct client *cl = admin_raw(s, bytes, sizeof(bytes));
	/* The frame's boundaries are intact, so the client is told, then disconnected. */
	assert_int_equal(client_read(cl, &resp), P11CA_OK);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_INVALID_ARGUMENT);
	assert_int_equal(resp.request_id, 0);
	assert_true(client_sees_close(cl));
	assert_true(engine_wait(&s->eng, &s->eng.refusals, 1));
	assert_int_equal(s->eng.refusal.code, p11ca_v1_StatusCode_STATUS_CODE_INVALID_ARGUMENT);
	assert_non_null(strstr(s->eng.refusal.reason, "malformed"));
	assert_int_equal(engine_count(&s->eng, &s->eng.requests), 0);
	client_close(&cl);
	srv_finish(&s, P11CA_OK);
}

static void test_slow_loris_times_out(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	s->opts.io_timeout_ms = 300;
	srv_start(s, true);
	int64_t start = now_ms();
	struct client *slow = admin_raw(s, "\0\0", 2);
	/* Meanwhile another client is served. */
	struct client *cl = client_open(s, ctx_admin);
	assert_true(cl->connected);
	p11ca_v1_Request req = health_request(3);
	client_send_request(cl, &req);
	assert_int_equal(client_read(cl, &resp), P11CA_OK);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_OK);
	assert_true(client_sees_close(slow));
	assert_true(now_ms() - start >= 300);
	assert_true(engine_wait(&s->eng, &s->eng.refusals, 1));
	assert_int_equal(s->eng.refusal.code, p11ca_v1_StatusCode_STATUS_CODE_DEADLINE_EXCEEDED);
	assert_true(wait_log("did not complete a frame within 300 ms"));
	client_close(&slow);
	client_close(&cl);
	srv_finish(&s, P11CA_OK);
}

/* The deadline covers the whole frame: a byte every 100 ms does not keep it alive. */
static void test_trickle_times_out(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	s->opts.io_timeout_ms = 300;
	srv_start(s, true);
	uint8_t bytes[4 + 30] = {0, 0, 0, 30};
	struct client *cl = client_open(s, ctx_admin);
	assert_true(cl->connected);
	size_t sent = 0;
	bool closed = false;
	while (!closed && sent < sizeof(bytes)) {
		size_t w = 0;
		if (SSL_write_ex(cl->ssl, bytes + sent, 1, &w) != 1)
			break;
		sent++;
		/* Pacing, not synchronisation: wait 100 ms or until the server closes. */
		struct pollfd pfd = {.fd = cl->fd, .events = POLLIN};
		closed = poll(&pfd, 1, 100) == 1;
	}
	ERR_clear_error();
	assert_true(closed || client_sees_close(cl));
	/* 34 bytes at 100 ms each would need 3.4 s; the server gives the frame 0.3 s. */
	assert_true(sent < sizeof(bytes));
	assert_true(engine_wait(&s->eng, &s->eng.refusals, 1));
	assert_int_equal(s->eng.refusal.code, p11ca_v1_StatusCode_STATUS_CODE_DEADLINE_EXCEEDED);
	client_close(&cl);
	srv_finish(&s, P11CA_OK);
}

/* A client that says nothing after the handshake is closed without a refusal. */
static void test_idle_connection_closed(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	s->opts.io_timeout_ms = 300;
	srv_start(s, true);
	struct client *cl = client_open(s, ctx_admin);
	assert_true(cl->connected);
	assert_true(client_sees_close(cl));
	assert_true(wait_log("disconnected: idle timeout"));
	assert_int_equal(engine_count(&s->eng, &s->eng.refusals), 0);
	client_close(&cl);
	srv_finish(&s, P11CA_OK);
}

static void test_api_version_2_refused(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	srv_start(s, true);
	p11ca_v1_Request req = health_request(11);
	req.api_version = 2;
	assert_int_equal(call_once(s, ctx_admin, &req), P11CA_OK);
	assert_int_equal(resp.request_id, 11);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_FAILED_PRECONDITION);
	assert_non_null(strstr(resp.status.message, "api_version 2"));
	assert_int_equal(engine_count(&s->eng, &s->eng.requests), 0);
	/* Not forwarded, but audited. */
	assert_true(engine_wait(&s->eng, &s->eng.refusals, 1));
	srv_finish(&s, P11CA_OK);
}

static void test_unknown_op_unimplemented(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	srv_start(s, true);
	/* api_version 1, request_id 9, then field 99 (an op from a newer client), varint 1. */
	uint8_t body[64];
	p11ca_v1_Request req = health_request(9);
	req.which_op = 0;
	pb_ostream_t os = pb_ostream_from_buffer(body + 4, sizeof(body) - 4 - 3);
	assert_true(pb_encode(&os, p11ca_v1_Request_fields, &req));
	size_t len = os.bytes_written;
	memcpy(body + 4 + len, "\x98\x06\x01", 3);
	len += 3;
	body[0] = body[1] = body[2] = 0;
	body[3] = (uint8_t)len;
	struct client *cl = admin_raw(s, body, 4 + len);
	assert_int_equal(client_read(cl, &resp), P11CA_OK);
	assert_int_equal(resp.request_id, 9);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_UNIMPLEMENTED);
	assert_int_equal(engine_count(&s->eng, &s->eng.requests), 0);
	assert_true(engine_wait(&s->eng, &s->eng.refusals, 1));
	client_close(&cl);
	srv_finish(&s, P11CA_OK);
}

/* Requests sent back to back before reading are all answered (in any order: the one the
 * server answers itself may overtake the one in the engine). */
static void test_pipelined_requests(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	srv_start(s, true);
	struct p11ca_buf *a = NULL, *b = NULL;
	p11ca_v1_Request r1 = health_request(100), r2 = health_request(101);
	r2.api_version = 3;
	assert_int_equal(rpc_frame_request_encode(&r1, &a, NULL), P11CA_OK);
	assert_int_equal(rpc_frame_request_encode(&r2, &b, NULL), P11CA_OK);
	uint8_t both[256];
	size_t la = p11ca_buf_len(a), lb = p11ca_buf_len(b);
	assert_true(la + lb <= sizeof(both));
	memcpy(both, p11ca_buf_ptr(a), la);
	memcpy(both + la, p11ca_buf_ptr(b), lb);
	struct client *cl = admin_raw(s, both, la + lb);
	bool seen[2] = {false, false};
	for (int i = 0; i < 2; i++) {
		assert_int_equal(client_read(cl, &resp), P11CA_OK);
		assert_in_range(resp.request_id, 100, 101);
		assert_false(seen[resp.request_id - 100]);
		seen[resp.request_id - 100] = true;
		assert_int_equal(resp.status.code,
				 resp.request_id == 100
					 ? p11ca_v1_StatusCode_STATUS_CODE_OK
					 : p11ca_v1_StatusCode_STATUS_CODE_FAILED_PRECONDITION);
	}
	p11ca_buf_free(&a);
	p11ca_buf_free(&b);
	client_close(&cl);
	srv_finish(&s, P11CA_OK);
}

/* The PIN reaches the engine and never the log. */
static void test_pin_forwarded_not_logged(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	srv_start(s, true);
	p11ca_v1_Request req = health_request(12);
	req.which_op = p11ca_v1_Request_hsm_activate_tag;
	memcpy(req.op.hsm_activate.pin.bytes, "s3cr3t-PIN", 10);
	req.op.hsm_activate.pin.size = 10;
	assert_int_equal(call_once(s, ctx_admin, &req), P11CA_OK);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_OK);
	assert_string_equal(s->eng.pin, "s3cr3t-PIN");
	assert_true(wait_log("op=hsm_activate status=OK"));
	srv_finish(&s, P11CA_OK);
	assert_false(log_contains("s3cr3t"));
}

static void test_max_connections(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	s->opts.max_connections = 2;
	srv_start(s, true);
	struct client *a = client_open(s, ctx_admin), *b = client_open(s, ctx_admin);
	p11ca_v1_Request req = health_request(1);
	/* A call on each proves both hold a slot. */
	client_send_request(a, &req);
	assert_int_equal(client_read(a, &resp), P11CA_OK);
	client_send_request(b, &req);
	assert_int_equal(client_read(b, &resp), P11CA_OK);

	struct client *c = client_open(s, ctx_admin);
	assert_true(!c->connected || client_sees_close(c));
	assert_true(wait_log("refused: 2 connections already open"));
	client_close(&c);

	/* A slot frees once a client leaves; retry until the server has noticed. */
	client_close(&a);
	bool served = false;
	for (int64_t end = now_ms() + WAIT_MS; !served && now_ms() < end;) {
		struct client *d = client_open(s, ctx_admin);
		if (d->connected) {
			client_send_request(d, &req);
			served = client_read(d, &resp) == P11CA_OK;
		}
		client_close(&d);
		if (!served)
			assert_true(wait_log("disconnected: closed by the client"));
	}
	assert_true(served);
	client_close(&b);
	srv_finish(&s, P11CA_OK);
}

static void test_stop_finishes_request_in_flight(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	s->eng.gate_closed = true;
	srv_start(s, true);
	struct client *idle = client_open(s, ctx_admin);
	assert_true(idle->connected);
	struct client *busy = client_open(s, ctx_admin);
	assert_true(busy->connected);
	p11ca_v1_Request req = health_request(77);
	req.which_op = p11ca_v1_Request_ca_list_tag;
	client_send_request(busy, &req);
	pthread_mutex_lock(&s->eng.mu);
	struct timespec dl = abs_deadline(WAIT_MS);
	while (!s->eng.entered)
		if (pthread_cond_timedwait(&s->eng.cv, &s->eng.mu, &dl) != 0)
			break;
	bool entered = s->eng.entered;
	pthread_mutex_unlock(&s->eng.mu);
	assert_true(entered);

	srv_signal_stop(s);
	/* The idle connection is closed while the request is still in the engine... */
	assert_true(client_sees_close(idle));
	assert_false(srv_wait_finished(s, 0));
	/* ...and the request in flight is answered before the server returns. */
	pthread_mutex_lock(&s->eng.mu);
	s->eng.gate_closed = false;
	pthread_cond_broadcast(&s->eng.cv);
	pthread_mutex_unlock(&s->eng.mu);
	assert_int_equal(client_read(busy, &resp), P11CA_OK);
	assert_int_equal(resp.request_id, 77);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_OK);
	assert_true(client_sees_close(busy));
	assert_true(srv_wait_finished(s, WAIT_MS));
	assert_int_equal(s->result, P11CA_OK);
	/* The listener is closed. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons((uint16_t)s->port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_not_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	close(fd);
	client_close(&idle);
	client_close(&busy);
	srv_finish(&s, P11CA_OK);
}

/* The test is the engine: it takes one request and hangs up. */
static void test_engine_link_lost(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	srv_start(s, false);
	struct client *cl = client_open(s, ctx_admin);
	assert_true(cl->connected);
	p11ca_v1_Request req = health_request(8);
	client_send_request(cl, &req);
	struct p11ca_buf *frame = NULL;
	assert_int_equal(rpc_frame_read_fd(s->engine_fds[1], 65536, WAIT_MS, &frame, NULL),
			 P11CA_OK);
	assert_non_null(frame);
	static p11ca_forward_v1_ToEngine to;
	assert_int_equal(
		rpc_frame_decode(p11ca_forward_v1_ToEngine_fields, &to, sizeof(to), frame, NULL),
		P11CA_OK);
	assert_int_equal(to.which_msg, p11ca_forward_v1_ToEngine_request_tag);
	assert_int_equal(to.msg.request.which_op, p11ca_v1_Request_health_tag);
	p11ca_buf_free(&frame);
	close(s->engine_fds[1]);

	assert_int_equal(client_read(cl, &resp), P11CA_OK);
	assert_int_equal(resp.request_id, 8);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_UNAVAILABLE);
	assert_true(client_sees_close(cl));
	assert_true(srv_wait_finished(s, WAIT_MS));
	assert_non_null(strstr(s->em.text, "engine link lost"));
	client_close(&cl);
	srv_finish(&s, P11CA_E_IO);
}

/* ---- pipelining ------------------------------------------------------------------------- */

static void gate_open(struct srv *s)
{
	pthread_mutex_lock(&s->eng.mu);
	s->eng.gate_closed = false;
	pthread_cond_broadcast(&s->eng.cv);
	pthread_mutex_unlock(&s->eng.mu);
}

static p11ca_v1_Request list_request(uint64_t id)
{
	p11ca_v1_Request req = health_request(id);
	req.which_op = p11ca_v1_Request_ca_list_tag;
	return req;
}

/* Read n responses; each id in [base, base + n) exactly once, all OK. */
static void read_all_ok(struct client *cl, uint64_t base, unsigned n)
{
	bool seen[64] = {false};
	assert_true(n <= N(seen));
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(client_read(cl, &resp), P11CA_OK);
		assert_in_range(resp.request_id, base, base + n - 1);
		assert_false(seen[resp.request_id - base]);
		seen[resp.request_id - base] = true;
		assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_OK);
	}
}

/* A request held in the engine does not hold up the ones behind it on the same connection:
 * they are forwarded at once and answered first. */
static void test_pipelined_out_of_order(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	s->eng.gate_closed = true;
	srv_start(s, true);
	struct client *cl = client_open(s, ctx_admin);
	assert_true(cl->connected);
	p11ca_v1_Request slow = list_request(200), fast = health_request(201);
	client_send_request(cl, &slow);
	client_send_request(cl, &fast);
	assert_int_equal(client_read(cl, &resp), P11CA_OK);
	assert_int_equal(resp.request_id, 201);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_OK);
	assert_int_equal(resp.which_result, p11ca_v1_Response_health_tag);
	gate_open(s);
	assert_int_equal(client_read(cl, &resp), P11CA_OK);
	assert_int_equal(resp.request_id, 200);
	assert_int_equal(resp.which_result, p11ca_v1_Response_ca_list_tag);
	client_close(&cl);
	srv_finish(&s, P11CA_OK);
}

/* At the cap the server stops reading (the engine sees exactly the cap), and everything is
 * answered once the engine moves: back-pressure, not failure. */
static void test_inflight_cap_back_pressure(void **state)
{
	(void)state;
	const unsigned cap = CONFIG_RPC_MAX_INFLIGHT_PER_CONNECTION, extra = 4;
	struct srv *s = srv_new();
	s->engine_workers = cap + extra + 1; /* the engine could take them all */
	s->eng.gate_closed = true;
	srv_start(s, true);
	struct client *cl = client_open(s, ctx_admin);
	assert_true(cl->connected);
	for (unsigned i = 0; i < cap + extra; i++) {
		p11ca_v1_Request req = list_request(300 + i);
		client_send_request(cl, &req);
	}
	assert_true(engine_wait(&s->eng, &s->eng.requests, cap));
	/* Bounded check that no more arrive (a wrong server would forward them at once). */
	struct timespec dl = abs_deadline(300);
	pthread_mutex_lock(&s->eng.mu);
	while (s->eng.requests <= cap)
		if (pthread_cond_timedwait(&s->eng.cv, &s->eng.mu, &dl) != 0)
			break;
	assert_int_equal(s->eng.requests, cap);
	pthread_mutex_unlock(&s->eng.mu);
	gate_open(s);
	read_all_ok(cl, 300, cap + extra);
	assert_int_equal(engine_count(&s->eng, &s->eng.requests), cap + extra);
	client_close(&cl);
	srv_finish(&s, P11CA_OK);
}

/* The client breaks TLS with requests in the engine: the connection goes at once, the
 * engine's late answers are dropped by the channel (nothing touches the freed connection:
 * ASan), and the server goes on serving. */
static void test_client_gone_with_requests_in_flight(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	s->eng.gate_closed = true;
	srv_start(s, true);
	struct client *cl = client_open(s, ctx_admin);
	assert_true(cl->connected);
	for (unsigned i = 0; i < 3; i++) {
		p11ca_v1_Request req = list_request(400 + i);
		client_send_request(cl, &req);
	}
	assert_true(engine_wait(&s->eng, &s->eng.requests, 3));
	/* An application-data record that cannot decrypt: a fatal TLS error on the server. */
	static const uint8_t junk[] = {0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5};
	assert_int_equal(write(cl->fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	assert_true(wait_log("disconnected: connection lost"));
	client_close(&cl);
	gate_open(s);
	/* The answers reach either the connection's own clean-up (if it has not cancelled them
	 * yet) or the channel as late replies ("late reply to call … dropped"); which one is a
	 * race this test does not control. What must hold either way: nothing touches freed
	 * memory (ASan) and the server keeps serving. */
	p11ca_v1_Request req = health_request(9);
	assert_int_equal(call_once(s, ctx_admin, &req), P11CA_OK);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_OK);
	srv_finish(&s, P11CA_OK);
}

/* A stop with several requests in the engine answers all of them, then closes. */
static void test_stop_with_requests_in_flight(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	s->engine_workers = 8; /* all five enter the engine */
	s->eng.gate_closed = true;
	srv_start(s, true);
	struct client *cl = client_open(s, ctx_admin);
	assert_true(cl->connected);
	for (unsigned i = 0; i < 5; i++) {
		p11ca_v1_Request req = list_request(500 + i);
		client_send_request(cl, &req);
	}
	assert_true(engine_wait(&s->eng, &s->eng.requests, 5));
	srv_signal_stop(s);
	assert_true(wait_log("disconnected: server stopping"));
	assert_false(srv_wait_finished(s, 0));
	gate_open(s);
	read_all_ok(cl, 500, 5);
	assert_true(client_sees_close(cl));
	assert_true(srv_wait_finished(s, WAIT_MS));
	client_close(&cl);
	srv_finish(&s, P11CA_OK);
}

/* rpc/client.h's pipelined pair against this server: answers come back in the server's
 * order and are matched; misuse is refused. */
static void test_client_send_recv(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	s->eng.gate_closed = true;
	srv_start(s, true);
	char server[64];
	snprintf(server, sizeof(server), "127.0.0.1:%u", s->port);
	const struct rpc_client_options co = {.server = server,
					      .ca_file = path("ca", "crt"),
					      .cert_file = path("admin", "crt"),
					      .key_file = path("admin", "key"),
					      .timeout_ms = WAIT_MS};
	struct rpc_client *c = NULL;
	struct p11ca_errmsg em = {0};
	assert_int_equal(rpc_client_connect(&co, &c, &em), P11CA_OK);
	assert_int_equal(rpc_client_recv(c, &resp, &em), P11CA_E_USAGE);
	assert_non_null(strstr(em.text, "no request"));
	p11ca_v1_Request slow = list_request(0), fast = health_request(0);
	assert_int_equal(rpc_client_send(c, &slow, NULL), P11CA_OK);
	assert_int_equal(rpc_client_send(c, &fast, NULL), P11CA_OK);
	assert_true(fast.request_id != slow.request_id);
	p11ca_errmsg_clear(&em);
	assert_int_equal(rpc_client_call(c, &fast, &resp, &em), P11CA_E_USAGE);
	assert_int_equal(rpc_client_recv(c, &resp, NULL), P11CA_OK);
	assert_int_equal(resp.request_id, fast.request_id);
	assert_int_equal(resp.which_result, p11ca_v1_Response_health_tag);
	gate_open(s);
	assert_int_equal(rpc_client_recv(c, &resp, NULL), P11CA_OK);
	assert_int_equal(resp.request_id, slow.request_id);
	assert_int_equal(resp.which_result, p11ca_v1_Response_ca_list_tag);
	/* Back to one call at a time on the same connection. */
	assert_int_equal(rpc_client_call(c, &fast, &resp, NULL), P11CA_OK);
	assert_int_equal(rpc_client_send(NULL, &fast, NULL), P11CA_E_INVALID_ARG);
	rpc_client_close(&c);
	srv_finish(&s, P11CA_OK);
}

/* Configuration errors come back at once, and every descriptor handed over is closed. */
static void expect_config_error(struct srv *s, const char *text)
{
	struct p11ca_errmsg em = {0};
	assert_int_equal(rpc_server_run(&s->opts, &em), P11CA_E_CONFIG);
	assert_non_null(strstr(em.text, text));
	assert_int_equal(fcntl(s->listen_fd, F_GETFD), -1);
	assert_int_equal(fcntl(s->engine_fds[0], F_GETFD), -1);
	close(s->engine_fds[1]);
	close(s->stop_pipe[0]);
	close(s->stop_pipe[1]);
	free(s);
}

static void test_config_errors(void **state)
{
	(void)state;
	assert_int_equal(rpc_server_run(NULL, NULL), P11CA_E_INVALID_ARG);

	struct srv *s = srv_new();
	s->opts.cert_file = path("missing", "crt");
	expect_config_error(s, "missing.crt");

	s = srv_new();
	s->inline_roles[1] = "superuser";
	expect_config_error(s, "superuser");

	char bad[700];
	snprintf(bad, sizeof(bad), "%s/bad-roles.conf", pki.dir);
	FILE *f = fopen(bad, "w");
	assert_non_null(f);
	fprintf(f, "%s admin\nnot-a-fingerprint operator\n", fp_hex[3]);
	fclose(f);
	s = srv_new();
	s->opts.roles_file = bad;
	expect_config_error(s, "bad-roles.conf:2");
	unlink(bad);
}

/* No roles file is an empty file: only the inline entries grant anything. */
static void test_missing_roles_file(void **state)
{
	(void)state;
	struct srv *s = srv_new();
	char missing[700];
	snprintf(missing, sizeof(missing), "%s/no-such-roles.conf", pki.dir);
	s->opts.roles_file = missing;
	s->inline_roles[0] = fp_hex[0];
	s->inline_roles[1] = "admin";
	srv_start(s, true);
	p11ca_v1_Request req = health_request(1);
	assert_int_equal(call_once(s, ctx_admin, &req), P11CA_OK);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_OK);
	assert_int_equal(call_once(s, ctx_auditor, &req), P11CA_OK);
	assert_int_equal(resp.status.code, p11ca_v1_StatusCode_STATUS_CODE_PERMISSION_DENIED);
	srv_finish(&s, P11CA_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_admin_health),
		cmocka_unit_test(test_inline_role_forwarded),
		cmocka_unit_test(test_auditor_sign_denied_and_audited),
		cmocka_unit_test(test_unlisted_client_may_do_nothing),
		cmocka_unit_test(test_no_client_certificate_refused),
		cmocka_unit_test(test_foreign_ca_refused),
		cmocka_unit_test(test_frame_over_limit),
		cmocka_unit_test(test_truncated_frame),
		cmocka_unit_test(test_garbage_body),
		cmocka_unit_test(test_slow_loris_times_out),
		cmocka_unit_test(test_trickle_times_out),
		cmocka_unit_test(test_idle_connection_closed),
		cmocka_unit_test(test_api_version_2_refused),
		cmocka_unit_test(test_unknown_op_unimplemented),
		cmocka_unit_test(test_pipelined_requests),
		cmocka_unit_test(test_pipelined_out_of_order),
		cmocka_unit_test(test_inflight_cap_back_pressure),
		cmocka_unit_test(test_client_gone_with_requests_in_flight),
		cmocka_unit_test(test_stop_with_requests_in_flight),
		cmocka_unit_test(test_client_send_recv),
		cmocka_unit_test(test_pin_forwarded_not_logged),
		cmocka_unit_test(test_max_connections),
		cmocka_unit_test(test_stop_finishes_request_in_flight),
		cmocka_unit_test(test_engine_link_lost),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_missing_roles_file),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
