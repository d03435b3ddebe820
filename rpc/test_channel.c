/*
 * Unit tests for rpc/channel: concurrent calls are matched to their replies even when the
 * server answers out of order; notifications flow both ways; timeouts drop late replies
 * without breaking the link; anything outside the protocol (garbage, a reply nobody asked
 * for, a handler that rejects a message) stops the link and fails waiting calls; a server
 * that shuts down still answers what it received. The messages are rpc/forward.proto's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"
#include "rpc/channel.h"
#include "rpc/forward.pb.h"
#include "rpc/frame.h"

#define MAX_FRAME 70000

/* A handler's behaviour, set per test. */
struct server_state {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool hold;	  /* block calls until released */
	uint64_t hold_id; /* block only the call with this request id (0: none) */
	unsigned held;	  /* calls currently blocked */
	unsigned notes;	  /* notifications seen */
	bool reject;	  /* treat every call as a protocol violation */
};

static enum p11ca_err server_handler(void *arg, void *in, void *reply, struct p11ca_errmsg *em)
{
	struct server_state *s = arg;
	p11ca_forward_v1_ToEngine *call = in;
	p11ca_forward_v1_FromEngine *out = reply;

	pthread_mutex_lock(&s->mu);
	if (reply == NULL) {
		s->notes++;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		return P11CA_OK;
	}
	if (s->reject) {
		pthread_mutex_unlock(&s->mu);
		return p11ca_fail(em, P11CA_E_PROTO_DECODE, "test: message not allowed");
	}
	s->held++;
	pthread_cond_broadcast(&s->cv);
	while (s->hold || (s->hold_id != 0 && call->msg.request.request_id == s->hold_id))
		pthread_cond_wait(&s->cv, &s->mu);
	s->held--;
	pthread_mutex_unlock(&s->mu);
	/* Echo the request id so the caller can tell its own answer. */
	out->has_response = true;
	out->response.request_id = call->msg.request.request_id;
	out->response.has_status = true;
	out->response.status.code = p11ca_v1_StatusCode_STATUS_CODE_OK;
	return P11CA_OK;
}

struct client_state {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned notes;
};

static enum p11ca_err client_handler(void *arg, void *in, void *reply, struct p11ca_errmsg *em)
{
	struct client_state *c = arg;

	(void)in;
	(void)em;
	assert_null(reply);
	pthread_mutex_lock(&c->mu);
	c->notes++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return P11CA_OK;
}

struct fixture {
	int fds[2];
	struct server_state srv;
	struct client_state cli;
	struct chan *server, *client;
};

static struct chan_spec server_spec(struct fixture *f)
{
	return (struct chan_spec){
		.name = "test server",
		.out_fields = p11ca_forward_v1_FromEngine_fields,
		.out_size = sizeof(p11ca_forward_v1_FromEngine),
		.in_fields = p11ca_forward_v1_ToEngine_fields,
		.in_size = sizeof(p11ca_forward_v1_ToEngine),
		.max_frame = MAX_FRAME,
		.is_server = 1,
		.workers = 4,
		.handler = server_handler,
		.arg = &f->srv,
	};
}

static struct chan_spec client_spec(struct fixture *f)
{
	return (struct chan_spec){
		.name = "test client",
		.out_fields = p11ca_forward_v1_ToEngine_fields,
		.out_size = sizeof(p11ca_forward_v1_ToEngine),
		.in_fields = p11ca_forward_v1_FromEngine_fields,
		.in_size = sizeof(p11ca_forward_v1_FromEngine),
		.max_frame = MAX_FRAME,
		.handler = client_handler,
		.arg = &f->cli,
	};
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct chan_spec ss, cs;

	assert_non_null(f);
	pthread_mutex_init(&f->srv.mu, NULL);
	pthread_cond_init(&f->srv.cv, NULL);
	pthread_mutex_init(&f->cli.mu, NULL);
	pthread_cond_init(&f->cli.cv, NULL);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->fds), 0);
	ss = server_spec(f);
	cs = client_spec(f);
	assert_int_equal(chan_open(f->fds[0], &ss, &f->server, NULL), P11CA_OK);
	assert_int_equal(chan_open(f->fds[1], &cs, &f->client, NULL), P11CA_OK);
	*state = f;
	return 0;
}

static void release(struct fixture *f)
{
	pthread_mutex_lock(&f->srv.mu);
	f->srv.hold = false;
	f->srv.hold_id = 0;
	pthread_cond_broadcast(&f->srv.cv);
	pthread_mutex_unlock(&f->srv.mu);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	release(f);
	chan_close(&f->client);
	chan_close(&f->server);
	free(f);
	return 0;
}

static enum p11ca_err call_health(struct chan *ch, uint64_t request_id, int timeout_ms,
				  p11ca_forward_v1_FromEngine *reply, struct p11ca_errmsg *em)
{
	p11ca_forward_v1_ToEngine call = p11ca_forward_v1_ToEngine_init_zero;

	call.which_msg = p11ca_forward_v1_ToEngine_request_tag;
	call.msg.request.api_version = 1;
	call.msg.request.request_id = request_id;
	call.msg.request.which_op = p11ca_v1_Request_health_tag;
	return chan_call(ch, &call, reply, timeout_ms, em);
}

static void wait_held(struct fixture *f, unsigned n)
{
	pthread_mutex_lock(&f->srv.mu);
	while (f->srv.held < n)
		pthread_cond_wait(&f->srv.cv, &f->srv.mu);
	pthread_mutex_unlock(&f->srv.mu);
}

/* ---- matching ----------------------------------------------------------------------------- */

struct caller {
	struct chan *ch;
	unsigned base, n, wrong;
};

static void *caller_main(void *arg)
{
	struct caller *c = arg;
	p11ca_forward_v1_FromEngine *reply = malloc(sizeof(*reply));
	unsigned i;

	for (i = 0; i < c->n; i++) {
		if (call_health(c->ch, c->base + i, 10000, reply, NULL) != P11CA_OK ||
		    reply->response.request_id != c->base + i)
			c->wrong++;
	}
	free(reply);
	return NULL;
}

static void test_concurrent_calls_get_their_own_replies(void **state)
{
	struct fixture *f = *state;
	struct caller callers[6];
	pthread_t t[6];
	uint64_t total;
	unsigned i, in_flight;

	for (i = 0; i < 6; i++) {
		callers[i] = (struct caller){.ch = f->client, .base = 1000 * (i + 1), .n = 200};
		assert_int_equal(pthread_create(&t[i], NULL, caller_main, &callers[i]), 0);
	}
	for (i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(callers[i].wrong, 0);
	}
	chan_counters(f->client, &total, &in_flight);
	assert_int_equal(total, 1200);
	assert_int_equal(in_flight, 0);
	chan_counters(f->server, &total, NULL);
	assert_int_equal(total, 1200);
}

static void test_out_of_order_replies(void **state)
{
	struct fixture *f = *state;
	struct caller first = {.ch = f->client, .base = 7, .n = 1};
	p11ca_forward_v1_FromEngine reply;
	pthread_t t;

	/* The first call is held in a worker; a second one overtakes it. */
	f->srv.hold_id = 7;
	assert_int_equal(pthread_create(&t, NULL, caller_main, &first), 0);
	wait_held(f, 1);
	assert_int_equal(call_health(f->client, 8, 10000, &reply, NULL), P11CA_OK);
	assert_int_equal(reply.response.request_id, 8);
	pthread_mutex_lock(&f->srv.mu);
	assert_int_equal(f->srv.held, 1); /* call 7 is still unanswered */
	pthread_mutex_unlock(&f->srv.mu);
	release(f);
	pthread_join(t, NULL);
	assert_int_equal(first.wrong, 0);
}

/* ---- asynchronous calls ------------------------------------------------------------------- */

struct async_rec {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned n;
	uint64_t ids[8];
	enum p11ca_err errs[8];
	uint64_t request_ids[8];
};

static struct async_rec rec = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static void rec_reset(void)
{
	pthread_mutex_lock(&rec.mu);
	rec.n = 0;
	pthread_mutex_unlock(&rec.mu);
}

static void async_done(void *arg, uint64_t call_id, enum p11ca_err err, void *reply)
{
	p11ca_forward_v1_FromEngine *r = reply;

	(void)arg;
	pthread_mutex_lock(&rec.mu);
	if (rec.n < 8) {
		rec.ids[rec.n] = call_id;
		rec.errs[rec.n] = err;
		rec.request_ids[rec.n] = r->response.request_id;
		rec.n++;
	}
	pthread_cond_broadcast(&rec.cv);
	pthread_mutex_unlock(&rec.mu);
}

static void rec_wait(unsigned n)
{
	pthread_mutex_lock(&rec.mu);
	while (rec.n < n)
		pthread_cond_wait(&rec.cv, &rec.mu);
	pthread_mutex_unlock(&rec.mu);
}

static enum p11ca_err async_health(struct chan *ch, uint64_t request_id,
				   p11ca_forward_v1_FromEngine *reply, uint64_t *call_id,
				   struct p11ca_errmsg *em)
{
	p11ca_forward_v1_ToEngine call = p11ca_forward_v1_ToEngine_init_zero;

	call.which_msg = p11ca_forward_v1_ToEngine_request_tag;
	call.msg.request.api_version = 1;
	call.msg.request.request_id = request_id;
	call.msg.request.which_op = p11ca_v1_Request_health_tag;
	return chan_call_async(ch, &call, reply, async_done, NULL, call_id, em);
}

/* Completions run once each, with the reply in the caller's buffer, in the server's order. */
static void test_async_calls_complete_out_of_order(void **state)
{
	struct fixture *f = *state;
	p11ca_forward_v1_FromEngine *replies = calloc(2, sizeof(*replies));
	uint64_t id1 = 0, id2 = 0;
	unsigned in_flight;

	assert_non_null(replies);
	rec_reset();
	f->srv.hold_id = 31;
	assert_int_equal(async_health(f->client, 31, &replies[0], &id1, NULL), P11CA_OK);
	assert_int_equal(async_health(f->client, 32, &replies[1], &id2, NULL), P11CA_OK);
	assert_true(id1 != 0 && id2 != 0 && id1 != id2);
	rec_wait(1);
	assert_int_equal(rec.ids[0], id2);
	assert_int_equal(rec.errs[0], P11CA_OK);
	assert_int_equal(rec.request_ids[0], 32);
	assert_int_equal(replies[1].response.request_id, 32);
	chan_counters(f->client, NULL, &in_flight);
	assert_int_equal(in_flight, 1);
	release(f);
	rec_wait(2);
	assert_int_equal(rec.ids[1], id1);
	assert_int_equal(replies[0].response.request_id, 31);
	/* A finished call cannot be cancelled. */
	assert_false(chan_call_cancel(f->client, id1));
	chan_counters(f->client, NULL, &in_flight);
	assert_int_equal(in_flight, 0);
	free(replies);
}

/* A cancelled call never completes; its late reply is dropped and the link goes on. */
static void test_async_cancel(void **state)
{
	struct fixture *f = *state;
	p11ca_forward_v1_FromEngine *reply = calloc(1, sizeof(*reply));
	p11ca_forward_v1_FromEngine sync_reply;
	uint64_t id = 0;

	assert_non_null(reply);
	rec_reset();
	f->srv.hold = true;
	assert_int_equal(async_health(f->client, 41, reply, &id, NULL), P11CA_OK);
	wait_held(f, 1);
	assert_true(chan_call_cancel(f->client, id));
	assert_false(chan_call_cancel(f->client, id));
	free(reply); /* nothing may write here any more (ASan) */
	release(f);
	/* The sync call's reply comes after the dropped one on the same stream. */
	assert_int_equal(call_health(f->client, 42, 10000, &sync_reply, NULL), P11CA_OK);
	assert_int_equal(sync_reply.response.request_id, 42);
	pthread_mutex_lock(&rec.mu);
	assert_int_equal(rec.n, 0);
	pthread_mutex_unlock(&rec.mu);
}

/* A link that stops completes every waiting call with P11CA_E_IO; later calls are refused
 * at once and never complete. */
static void test_async_link_down(void **state)
{
	struct fixture *f = *state;
	p11ca_forward_v1_FromEngine *replies = calloc(3, sizeof(*replies));
	struct p11ca_errmsg em = {0};
	uint64_t id = 0;

	assert_non_null(replies);
	rec_reset();
	f->srv.hold = true;
	assert_int_equal(async_health(f->client, 51, &replies[0], &id, NULL), P11CA_OK);
	assert_int_equal(async_health(f->client, 52, &replies[1], &id, NULL), P11CA_OK);
	wait_held(f, 1);
	shutdown(f->fds[0], SHUT_RDWR); /* the server's end goes away */
	rec_wait(2);
	assert_int_equal(rec.errs[0], P11CA_E_IO);
	assert_int_equal(rec.errs[1], P11CA_E_IO);
	assert_int_equal(replies[0].response.request_id, 0); /* zeroed */
	assert_int_equal(async_health(f->client, 53, &replies[2], &id, &em), P11CA_E_IO);
	assert_non_null(strstr(em.text, "is down"));
	release(f);
	free(replies);
	pthread_mutex_lock(&rec.mu);
	assert_int_equal(rec.n, 2);
	pthread_mutex_unlock(&rec.mu);
}

static void test_async_bad_arguments(void **state)
{
	struct fixture *f = *state;
	p11ca_forward_v1_ToEngine call = p11ca_forward_v1_ToEngine_init_zero;
	p11ca_forward_v1_FromEngine reply;
	p11ca_forward_v1_ToEngine sreply;
	uint64_t id = 0;

	assert_int_equal(chan_call_async(f->client, &call, &reply, NULL, NULL, &id, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(chan_call_async(f->server, &call, &sreply, async_done, NULL, &id, NULL),
			 P11CA_E_INVALID_ARG);
	assert_false(chan_call_cancel(f->client, 0));
	assert_false(chan_call_cancel(f->client, 12345));
	assert_false(chan_call_cancel(NULL, 1));
}

/* ---- notifications --------------------------------------------------------------------------- */

static void test_notifications_both_ways(void **state)
{
	struct fixture *f = *state;
	p11ca_forward_v1_ToEngine note = p11ca_forward_v1_ToEngine_init_zero;
	p11ca_forward_v1_FromEngine event = p11ca_forward_v1_FromEngine_init_zero;

	note.which_msg = p11ca_forward_v1_ToEngine_refusal_tag;
	strcpy(note.msg.refusal.reason, "test");
	assert_int_equal(chan_notify(f->client, &note, NULL), P11CA_OK);
	event.has_response = true;
	assert_int_equal(chan_notify(f->server, &event, NULL), P11CA_OK);

	pthread_mutex_lock(&f->srv.mu);
	while (f->srv.notes < 1)
		pthread_cond_wait(&f->srv.cv, &f->srv.mu);
	pthread_mutex_unlock(&f->srv.mu);
	pthread_mutex_lock(&f->cli.mu);
	while (f->cli.notes < 1)
		pthread_cond_wait(&f->cli.cv, &f->cli.mu);
	pthread_mutex_unlock(&f->cli.mu);
}

/* ---- timeouts ------------------------------------------------------------------------------- */

static void test_timeout_drops_late_reply_and_link_survives(void **state)
{
	struct fixture *f = *state;
	p11ca_forward_v1_FromEngine reply;
	struct p11ca_errmsg em = {0};

	f->srv.hold = true;
	assert_int_equal(call_health(f->client, 1, 50, &reply, &em), P11CA_E_TIMEOUT);
	assert_non_null(strstr(em.text, "no reply within 50 ms"));
	wait_held(f, 1);
	release(f); /* the late reply arrives and is dropped */
	assert_int_equal(call_health(f->client, 2, 10000, &reply, NULL), P11CA_OK);
	assert_int_equal(reply.response.request_id, 2);
}

/* ---- protocol violations --------------------------------------------------------------------- */

static void test_garbage_stops_the_server(void **state)
{
	struct fixture *f = *state;
	const uint8_t junk[] = {0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff};
	struct p11ca_errmsg em = {0};
	int raw[2];
	struct chan_spec ss = server_spec(f);
	struct chan *srv = NULL;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, raw), 0);
	assert_int_equal(chan_open(raw[0], &ss, &srv, NULL), P11CA_OK);
	assert_int_equal(write(raw[1], junk, sizeof(junk)), (ssize_t)sizeof(junk));
	assert_int_equal(chan_wait(srv, &em), P11CA_E_PROTO_DECODE);
	assert_non_null(strstr(em.text, "not the expected message"));
	chan_close(&srv);
	close(raw[1]);
}

static void test_rejected_message_fails_waiting_calls(void **state)
{
	struct fixture *f = *state;
	p11ca_forward_v1_FromEngine reply;
	struct p11ca_errmsg em = {0};

	f->srv.reject = true;
	assert_int_equal(call_health(f->client, 1, 10000, &reply, &em), P11CA_E_IO);
	assert_non_null(strstr(em.text, "test client is down"));
	assert_int_equal(chan_wait(f->server, &em), P11CA_E_PROTO_DECODE);
	assert_non_null(strstr(em.text, "message not allowed"));
	/* Once down, a link refuses new calls at once. */
	assert_int_equal(call_health(f->client, 2, 10000, &reply, NULL), P11CA_E_IO);
}

static void test_reply_nobody_asked_for_stops_the_client(void **state)
{
	struct fixture *f = *state;
	int raw[2];
	struct chan_spec cs = client_spec(f);
	struct chan *cli = NULL;
	p11ca_forward_v1_FromEngine bogus = p11ca_forward_v1_FromEngine_init_zero;
	struct p11ca_buf *frame = NULL;
	struct p11ca_errmsg em = {0};

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, raw), 0);
	assert_int_equal(chan_open(raw[0], &cs, &cli, NULL), P11CA_OK);
	bogus.call_id = 99;
	bogus.has_response = true;
	assert_int_equal(rpc_frame_encode(p11ca_forward_v1_FromEngine_fields, &bogus, MAX_FRAME,
					  &frame, NULL),
			 P11CA_OK);
	assert_int_equal(rpc_frame_write_fd(raw[1], frame, 1000, NULL), P11CA_OK);
	p11ca_buf_free(&frame);
	assert_int_equal(chan_wait(cli, &em), P11CA_E_PROTO_DECODE);
	assert_non_null(strstr(em.text, "never made"));
	chan_close(&cli);
	close(raw[1]);
}

/* ---- stopping -------------------------------------------------------------------------------- */

static void test_peer_close_is_a_clean_stop(void **state)
{
	struct fixture *f = *state;
	struct p11ca_errmsg em = {0};

	chan_close(&f->client);
	assert_int_equal(chan_wait(f->server, &em), P11CA_OK);
}

static void test_server_shutdown_answers_received_calls(void **state)
{
	struct fixture *f = *state;
	struct caller c = {.ch = f->client, .base = 42, .n = 1};
	pthread_t t;

	f->srv.hold = true;
	assert_int_equal(pthread_create(&t, NULL, caller_main, &c), 0);
	wait_held(f, 1);
	chan_shutdown(f->server);
	release(f);
	pthread_join(t, NULL);
	assert_int_equal(c.wrong, 0);
	assert_int_equal(chan_wait(f->server, NULL), P11CA_OK);
}

static void test_spec_is_checked(void **state)
{
	struct fixture *f = *state;
	struct chan_spec bad = client_spec(f);
	struct chan *ch = NULL;
	struct p11ca_errmsg em = {0};
	int raw[2];

	(void)state;
	/* p11ca.v1.Request's field 1 is a uint32 api_version, not a call id. */
	bad.out_fields = p11ca_v1_Request_fields;
	bad.out_size = sizeof(p11ca_v1_Request);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, raw), 0);
	assert_int_equal(chan_open(raw[0], &bad, &ch, &em), P11CA_E_INVALID_ARG);
	assert_null(ch);
	assert_non_null(strstr(em.text, "call_id"));
	/* The fd was taken over and closed: the peer sees end of stream. */
	char b;
	assert_int_equal(read(raw[1], &b, 1), 0);
	close(raw[1]);

	bad = server_spec(f);
	bad.workers = 0;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, raw), 0);
	assert_int_equal(chan_open(raw[0], &bad, &ch, NULL), P11CA_E_INVALID_ARG);
	close(raw[1]);

	/* A server cannot call. */
	p11ca_forward_v1_FromEngine reply;
	assert_int_equal(call_health(f->server, 1, 10, &reply, NULL), P11CA_E_INVALID_ARG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_concurrent_calls_get_their_own_replies, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_out_of_order_replies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_calls_complete_out_of_order, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_async_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_link_down, setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_bad_arguments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notifications_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_drops_late_reply_and_link_survives,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_stops_the_server, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rejected_message_fails_waiting_calls, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reply_nobody_asked_for_stops_the_client, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_peer_close_is_a_clean_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_shutdown_answers_received_calls, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_spec_is_checked, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
