/*
 * The requests one client connection has in the CA engine: the in-flight slots, the
 * asynchronous engine call, the completion the channel's reader thread posts (slot marked
 * under rpc_conn.mu, eventfd written), per-request deadlines, and cancelling every call when
 * the connection closes. The connection thread (rpc/server_conn.c) owns everything here
 * except what the completion touches: `mu`, the slots' done/err and reply, and wake_fd.
 */
#include "rpc/server_conn.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/kconfig.h"
#include "rpc/op.h"

enum p11ca_err rpc_inflight_init(struct rpc_conn *c)
{
	unsigned max = CONFIG_RPC_MAX_INFLIGHT_PER_CONNECTION;

	pthread_mutex_init(&c->mu, NULL);
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->inflight = calloc(max, sizeof(*c->inflight));
	if (c->wake_fd < 0 || c->inflight == NULL)
		return P11CA_E_NOMEM;
	c->max_inflight = max;
	for (unsigned i = 0; i < max; i++)
		c->inflight[i].conn = c;
	return P11CA_OK;
}

/* Take back every request still in the engine. Once chan_call_cancel returned for a call,
 * its completion is not running, and taking `mu` once more waits out the unlock at the end
 * of one that had just finished: nothing on the reader thread touches the connection after
 * this. */
void rpc_inflight_abandon(struct rpc_conn *c)
{
	for (unsigned i = 0; c->inflight != NULL && i < c->max_inflight; i++) {
		struct rpc_inflight *f = &c->inflight[i];
		if (f->used)
			(void)chan_call_cancel(c->srv->engine, f->call_id);
		f->used = false;
	}
	c->n_inflight = 0;
	pthread_mutex_lock(&c->mu);
	pthread_mutex_unlock(&c->mu);
}

void rpc_inflight_free(struct rpc_conn *c)
{
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	for (unsigned i = 0; c->inflight != NULL && i < c->max_inflight; i++) {
		if (c->inflight[i].reply != NULL)
			OPENSSL_cleanse(c->inflight[i].reply, sizeof(*c->inflight[i].reply));
		free(c->inflight[i].reply);
	}
	free(c->inflight);
	pthread_mutex_destroy(&c->mu);
}

/* ---- requests in the engine ------------------------------------------------------------- */

/* chan_done_fn, on the channel's reader thread with the channel's lock held: mark and wake,
 * nothing else. The eventfd is written under `mu` so that nothing here touches the
 * connection after the unlock (see rpc_inflight_abandon). */
static void conn_engine_done(void *arg, uint64_t call_id, enum p11ca_err err, void *reply)
{
	struct rpc_inflight *f = arg;
	struct rpc_conn *c = f->conn;
	uint64_t one = 1;

	(void)call_id;
	(void)reply; /* f->reply */
	pthread_mutex_lock(&c->mu);
	f->err = err;
	f->done = true;
	while (write(c->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_mutex_unlock(&c->mu);
}

/* What the client is told when the engine gave no usable answer. */
static void engine_failed(struct rpc_conn *c, const struct rpc_op *op, uint64_t request_id,
			  enum p11ca_err err, const struct p11ca_errmsg *em)
{
	int timeout_s = (int)(c->srv->io_timeout_ms * RPC_ENGINE_TIMEOUT_FACTOR / 1000);

	p11ca_logf(c->srv->log, LOG_ERR, "rpc: %s fp=%.16s op=%s: engine call failed: %s", c->peer,
		   c->fp_hex, op->name, p11ca_errmsg_text(em));
	if (err == P11CA_E_TIMEOUT)
		rpc_conn_answer(
			c, request_id, p11ca_v1_StatusCode_STATUS_CODE_DEADLINE_EXCEEDED,
			"the CA engine did not answer %s within %d s; it may still complete: check "
			"before retrying",
			op->name, timeout_s);
	else if (err == P11CA_E_IO)
		rpc_conn_answer(
			c, request_id, p11ca_v1_StatusCode_STATUS_CODE_UNAVAILABLE,
			"the CA engine is not reachable; retry once p11cad has restarted it");
	else
		rpc_conn_answer(c, request_id, p11ca_v1_StatusCode_STATUS_CODE_INTERNAL,
				"forwarding %s to the CA engine failed; the server log says more",
				op->name);
}

/* Send the permitted request in c->to to the engine without waiting. False: the connection
 * is lost (an immediate failure could not be written). */
bool rpc_conn_forward(struct rpc_conn *c, const struct rpc_op *op, uint64_t request_id,
		      int64_t start)
{
	struct p11ca_errmsg em = {0};
	struct rpc_inflight *f = NULL;
	enum p11ca_err err = P11CA_OK;

	for (unsigned i = 0; i < c->max_inflight && f == NULL; i++)
		if (!c->inflight[i].used)
			f = &c->inflight[i];
	/* The reader stops at the cap, so a slot is free; a reply buffer may not be. */
	if (f == NULL)
		err = p11ca_fail(&em, P11CA_E_INTERNAL, "no free request slot");
	else if (f->reply == NULL && (f->reply = calloc(1, sizeof(*f->reply))) == NULL)
		err = p11ca_fail(&em, P11CA_E_NOMEM, "out of memory for the engine's answer");
	if (err == P11CA_OK) {
		f->request_id = request_id;
		f->op = op;
		f->start_ms = start;
		f->deadline_ms = start + (int64_t)c->srv->io_timeout_ms * RPC_ENGINE_TIMEOUT_FACTOR;
		f->done = false;
		f->err = P11CA_OK;
		rpc_conn_fill_caller(c, &c->to);
		c->to.which_msg = p11ca_forward_v1_ToEngine_request_tag;
		err = chan_call_async(c->srv->engine, &c->to, f->reply, conn_engine_done, f,
				      &f->call_id, &em);
	}
	/* Encoded (or refused) by now: the request may hold a PIN (hsm_activate). */
	OPENSSL_cleanse(&c->to, sizeof(c->to));
	if (err == P11CA_OK) {
		f->used = true;
		c->n_inflight++;
		return true;
	}
	engine_failed(c, op, request_id, err, &em);
	return rpc_conn_respond(c, &c->from.response, op, start);
}

/* Answer a request whose completion arrived. False: the connection is lost. */
static bool conn_complete(struct rpc_conn *c, struct rpc_inflight *f)
{
	struct p11ca_errmsg em = {0};
	p11ca_forward_v1_FromEngine *from = f->reply;
	const p11ca_v1_Response *resp = &from->response;
	enum p11ca_err err = f->err;
	bool ok;

	if (err == P11CA_OK &&
	    (!from->has_response || !from->response.has_status ||
	     from->response.status.code == p11ca_v1_StatusCode_STATUS_CODE_UNSPECIFIED))
		err = p11ca_fail(&em, P11CA_E_PROTO, "the engine's answer has no status");
	else if (err != P11CA_OK)
		p11ca_fail(&em, err, "the engine link stopped");
	if (err == P11CA_OK) {
		from->response.request_id = f->request_id;
	} else {
		engine_failed(c, f->op, f->request_id, err, &em);
		resp = &c->from.response;
	}
	ok = rpc_conn_respond(c, resp, f->op, f->start_ms);
	f->used = false;
	f->done = false;
	if (--c->n_inflight == 0)
		c->idle_since = rpc_now_ms();
	return ok;
}

/* Answer every request whose completion arrived, and time out those past their deadline.
 * False: the connection is lost. */
bool rpc_conn_flush(struct rpc_conn *c)
{
	uint64_t n;

	while (read(c->wake_fd, &n, sizeof(n)) < 0 && errno == EINTR)
		;
	for (unsigned i = 0; i < c->max_inflight; i++) {
		struct rpc_inflight *f = &c->inflight[i];
		if (!f->used)
			continue;
		pthread_mutex_lock(&c->mu);
		bool done = f->done;
		pthread_mutex_unlock(&c->mu);
		if (!done && rpc_now_ms() >= f->deadline_ms &&
		    chan_call_cancel(c->srv->engine, f->call_id)) {
			/* A late answer is dropped by the channel. */
			f->err = P11CA_E_TIMEOUT;
			done = true;
		} else if (!done) {
			continue;
		}
		if (f->err == P11CA_E_TIMEOUT) {
			struct p11ca_errmsg em = {0};
			p11ca_fail(&em, P11CA_E_TIMEOUT, "no answer within %u ms",
				   c->srv->io_timeout_ms * RPC_ENGINE_TIMEOUT_FACTOR);
			engine_failed(c, f->op, f->request_id, P11CA_E_TIMEOUT, &em);
			f->used = false;
			if (--c->n_inflight == 0)
				c->idle_since = rpc_now_ms();
			if (!rpc_conn_respond(c, &c->from.response, f->op, f->start_ms))
				return false;
			continue;
		}
		if (!conn_complete(c, f))
			return false;
	}
	return true;
}

int64_t rpc_inflight_deadline(const struct rpc_conn *c, int64_t deadline)
{
	for (unsigned i = 0; i < c->max_inflight; i++)
		if (c->inflight[i].used && c->inflight[i].deadline_ms < deadline)
			deadline = c->inflight[i].deadline_ms;
	return deadline;
}
