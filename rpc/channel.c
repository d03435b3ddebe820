/*
 * rpc/channel.c — typed call/reply links between p11cad's processes (rpc/channel.h).
 *
 * One reader thread per link decodes every incoming frame. On a client it hands replies to
 * the waiting caller (matched by call id) and runs notifications; on a server it queues
 * calls for a fixed pool of workers, which run the handler and write the reply. Writes are
 * serialised by one mutex, so a frame is never interleaved with another.
 *
 * Stopping: any protocol or I/O failure records the first error and shuts the socket down,
 * which wakes the reader; the reader then fails every waiting call and lets the workers
 * drain the queue. chan_shutdown() on a server only stops reading, so calls already
 * received are still answered.
 */
#include "rpc/channel.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <pb_common.h>

#include "common/buf.h"
#include "rpc/frame.h"

/* A reply or notification that cannot be written within this long means the peer stopped
 * reading: the link is broken, not slow. */
#define CHAN_WRITE_TIMEOUT_MS 30000
/* Calls a server holds beyond those being worked on before the reader stops reading (the
 * peer then feels back-pressure instead of the server buffering without bound). */
#define CHAN_QUEUE_PER_WORKER 4

/* A call waiting for its reply: on the caller's stack (chan_call, woken through cv), or on
 * the heap with a completion function (chan_call_async, freed by whoever unlinks it). */
struct chan_waiter {
	uint64_t id;
	void *reply;
	bool done;
	enum p11ca_err err;
	pthread_cond_t cv;
	chan_done_fn done_fn; /* set: asynchronous */
	void *done_arg;
	struct chan_waiter *next;
};

struct chan_work {
	void *in;
	bool notification;
	struct chan_work *next;
};

struct chan {
	struct chan_spec spec;
	int fd;

	pthread_mutex_t mu; /* everything below except the write lock */
	pthread_mutex_t write_mu;
	pthread_cond_t state_cv; /* reader done, workers idle, queue space */

	pthread_t reader;
	bool reader_started;
	pthread_t *workers;
	unsigned n_workers;

	bool stopping;	  /* chan_shutdown was called */
	bool reader_done; /* the reader thread has finished */
	enum p11ca_err stop_err;
	struct p11ca_errmsg stop_em;

	/* client */
	uint64_t next_id;
	struct chan_waiter *waiters;

	/* server */
	struct chan_work *q_head, *q_tail;
	size_t q_len;
	unsigned busy;

	uint64_t total;
	unsigned in_flight;
};

static void msg_free(void **msg, size_t size)
{
	if (*msg == NULL)
		return;
	explicit_bzero(*msg, size);
	free(*msg);
	*msg = NULL;
}

static uint64_t msg_id(const void *msg)
{
	uint64_t id;

	memcpy(&id, msg, sizeof(id));
	return id;
}

static void msg_set_id(void *msg, uint64_t id)
{
	memcpy(msg, &id, sizeof(id));
}

/* Record the first failure and break the socket so the reader wakes up. */
static void chan_fail(struct chan *ch, enum p11ca_err err, const struct p11ca_errmsg *em)
{
	pthread_mutex_lock(&ch->mu);
	if (ch->stop_err == P11CA_OK && err != P11CA_OK) {
		ch->stop_err = err;
		if (em != NULL)
			ch->stop_em = *em;
		ch->stop_em.code = err;
		p11ca_logf(ch->spec.log, LOG_ERR, "%s: link stopped: %s", ch->spec.name,
			   p11ca_errmsg_text(&ch->stop_em));
	}
	pthread_mutex_unlock(&ch->mu);
	shutdown(ch->fd, SHUT_RDWR);
}

static enum p11ca_err chan_send(struct chan *ch, void *msg, struct p11ca_errmsg *em)
{
	struct p11ca_buf *frame = NULL;
	enum p11ca_err err;

	err = rpc_frame_encode(ch->spec.out_fields, msg, ch->spec.max_frame, &frame, em);
	if (err != P11CA_OK)
		return err;
	pthread_mutex_lock(&ch->write_mu);
	err = rpc_frame_write_fd(ch->fd, frame, CHAN_WRITE_TIMEOUT_MS, em);
	pthread_mutex_unlock(&ch->write_mu);
	p11ca_buf_free(&frame);
	if (err != P11CA_OK)
		chan_fail(ch, err, em);
	return err;
}

/* ---- client: replies --------------------------------------------------------------------- */

static void waiter_unlink(struct chan *ch, struct chan_waiter *w)
{
	struct chan_waiter **p;

	for (p = &ch->waiters; *p != NULL; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			return;
		}
	}
}

/* Complete an asynchronous call (ch->mu held): unlink, run its done_fn, free it. */
static void async_complete(struct chan *ch, struct chan_waiter *w, enum p11ca_err err)
{
	waiter_unlink(ch, w);
	ch->in_flight--;
	if (err != P11CA_OK)
		memset(w->reply, 0, ch->spec.in_size);
	/* Still under the lock, so that chan_call_cancel() can promise it is not running. */
	w->done_fn(w->done_arg, w->id, err, w->reply);
	free(w);
}

static enum p11ca_err deliver_reply(struct chan *ch, void *in, struct p11ca_errmsg *em)
{
	uint64_t id = msg_id(in);
	struct chan_waiter *w;
	bool issued, delivered;

	pthread_mutex_lock(&ch->mu);
	for (w = ch->waiters; w != NULL && w->id != id; w = w->next)
		;
	issued = id <= ch->next_id;
	delivered = w != NULL;
	if (w != NULL) {
		memcpy(w->reply, in, ch->spec.in_size);
		if (w->done_fn != NULL) {
			async_complete(ch, w, P11CA_OK);
		} else {
			w->done = true;
			w->err = P11CA_OK;
			pthread_cond_signal(&w->cv);
		}
	}
	pthread_mutex_unlock(&ch->mu);
	if (delivered)
		return P11CA_OK;
	if (issued) {
		/* Its caller gave up (timeout or cancel); the answer is no longer wanted. */
		p11ca_logf(ch->spec.log, LOG_WARNING, "%s: late reply to call %llu dropped",
			   ch->spec.name, (unsigned long long)id);
		return P11CA_OK;
	}
	return p11ca_fail(em, P11CA_E_PROTO_DECODE, "%s: reply to call %llu, which was never made",
			  ch->spec.name, (unsigned long long)id);
}

/* ---- server: the work queue ----------------------------------------------------------------- */

static void enqueue(struct chan *ch, void *in, bool notification)
{
	struct chan_work *w = calloc(1, sizeof(*w));

	pthread_mutex_lock(&ch->mu);
	/* Sized from the spec, not n_workers: the reader may run before every worker started. */
	while (ch->q_len >= (size_t)ch->spec.workers * CHAN_QUEUE_PER_WORKER &&
	       ch->stop_err == P11CA_OK)
		pthread_cond_wait(&ch->state_cv, &ch->mu);
	if (w == NULL) {
		pthread_mutex_unlock(&ch->mu);
		msg_free(&in, ch->spec.in_size);
		chan_fail(ch, P11CA_E_NOMEM, NULL);
		return;
	}
	w->in = in;
	w->notification = notification;
	if (ch->q_tail != NULL)
		ch->q_tail->next = w;
	else
		ch->q_head = w;
	ch->q_tail = w;
	ch->q_len++;
	if (!notification) {
		ch->total++;
		ch->in_flight++;
	}
	pthread_cond_broadcast(&ch->state_cv);
	pthread_mutex_unlock(&ch->mu);
}

static void *worker_main(void *arg)
{
	struct chan *ch = arg;

	for (;;) {
		struct chan_work *w;
		struct p11ca_errmsg em = {0};
		void *reply = NULL;
		enum p11ca_err err = P11CA_OK;

		pthread_mutex_lock(&ch->mu);
		while (ch->q_head == NULL && !ch->reader_done)
			pthread_cond_wait(&ch->state_cv, &ch->mu);
		w = ch->q_head;
		if (w == NULL) {
			pthread_mutex_unlock(&ch->mu);
			return NULL;
		}
		ch->q_head = w->next;
		if (ch->q_head == NULL)
			ch->q_tail = NULL;
		ch->q_len--;
		ch->busy++;
		pthread_cond_broadcast(&ch->state_cv);
		pthread_mutex_unlock(&ch->mu);

		if (!w->notification) {
			reply = calloc(1, ch->spec.out_size);
			if (reply == NULL)
				err = p11ca_fail(&em, P11CA_E_NOMEM,
						 "%s: out of memory for a reply", ch->spec.name);
		}
		if (err == P11CA_OK)
			err = ch->spec.handler(ch->spec.arg, w->in, reply, &em);
		if (err == P11CA_OK && reply != NULL) {
			msg_set_id(reply, msg_id(w->in));
			err = chan_send(ch, reply, &em);
		} else if (err != P11CA_OK) {
			chan_fail(ch, err, &em);
		}
		msg_free(&w->in, ch->spec.in_size);
		msg_free(&reply, ch->spec.out_size);

		pthread_mutex_lock(&ch->mu);
		ch->busy--;
		if (!w->notification)
			ch->in_flight--;
		pthread_cond_broadcast(&ch->state_cv);
		pthread_mutex_unlock(&ch->mu);
		free(w);
	}
}

/* ---- the reader --------------------------------------------------------------------------- */

static enum p11ca_err read_one(struct chan *ch, bool *eof, struct p11ca_errmsg *em)
{
	struct p11ca_buf *frame = NULL;
	struct p11ca_errmsg why = {0};
	void *in = NULL;
	enum p11ca_err err;
	uint64_t id;

	*eof = false;
	err = rpc_frame_read_fd(ch->fd, ch->spec.max_frame, -1, &frame, em);
	if (err != P11CA_OK)
		goto out;
	if (frame == NULL) {
		*eof = true;
		goto out;
	}
	in = calloc(1, ch->spec.in_size);
	if (in == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "%s: out of memory for a message",
				 ch->spec.name);
		goto out;
	}
	err = rpc_frame_decode(ch->spec.in_fields, in, ch->spec.in_size, frame, &why);
	if (err != P11CA_OK) {
		p11ca_fail(em, err,
			   "%s: the peer sent bytes that are not the expected message (%s)",
			   ch->spec.name, p11ca_errmsg_text(&why));
		goto out;
	}
	id = msg_id(in);
	if (ch->spec.is_server) {
		enqueue(ch, in, id == 0);
		in = NULL;
	} else if (id != 0) {
		err = deliver_reply(ch, in, em);
	} else if (ch->spec.handler == NULL) {
		err = p11ca_fail(em, P11CA_E_PROTO_DECODE, "%s: unexpected notification",
				 ch->spec.name);
	} else {
		err = ch->spec.handler(ch->spec.arg, in, NULL, em);
	}
out:
	msg_free(&in, ch->spec.in_size);
	p11ca_buf_free(&frame);
	return err;
}

static void *reader_main(void *arg)
{
	struct chan *ch = arg;
	struct chan_waiter *w, *next;

	for (;;) {
		struct p11ca_errmsg em = {0};
		bool eof;
		enum p11ca_err err = read_one(ch, &eof, &em);

		if (err != P11CA_OK) {
			bool ours;

			pthread_mutex_lock(&ch->mu);
			ours = ch->stopping || ch->stop_err != P11CA_OK;
			pthread_mutex_unlock(&ch->mu);
			/* After our own shutdown a read error is the shutdown, not the peer. */
			if (!ours)
				chan_fail(ch, err, &em);
			break;
		}
		if (eof)
			break;
	}
	pthread_mutex_lock(&ch->mu);
	ch->reader_done = true;
	for (w = ch->waiters; w != NULL; w = next) {
		next = w->next;
		if (w->done_fn != NULL) {
			async_complete(ch, w, P11CA_E_IO);
			continue;
		}
		w->done = true;
		w->err = P11CA_E_IO;
		pthread_cond_signal(&w->cv);
	}
	pthread_cond_broadcast(&ch->state_cv);
	pthread_mutex_unlock(&ch->mu);
	return NULL;
}

/* ---- setup ---------------------------------------------------------------------------------- */

/* Field 1 must be the uint64 call id at offset 0 of the struct. */
static bool has_call_id(const pb_msgdesc_t *fields, size_t size)
{
	pb_field_iter_t it;
	void *probe = calloc(1, size);
	bool ok;

	if (probe == NULL)
		return false;
	ok = pb_field_iter_begin(&it, fields, probe) && it.tag == 1 &&
	     PB_LTYPE(it.type) == PB_LTYPE_UVARINT && it.pData == probe &&
	     it.data_size == sizeof(uint64_t);
	free(probe);
	return ok;
}

static enum p11ca_err spec_check(const struct chan_spec *s, struct p11ca_errmsg *em)
{
	const char *name = s->name != NULL ? s->name : "channel";

	if (s->out_fields == NULL || s->in_fields == NULL || s->out_size < sizeof(uint64_t) ||
	    s->in_size < sizeof(uint64_t) || s->max_frame == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%s: incomplete channel spec", name);
	if (!has_call_id(s->out_fields, s->out_size) || !has_call_id(s->in_fields, s->in_size))
		return p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"%s: both messages need `uint64 call_id = 1` as their first field", name);
	if (s->is_server && (s->handler == NULL || s->workers == 0))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s: a server needs a handler and at least one worker", name);
	return P11CA_OK;
}

static void chan_destroy(struct chan *ch)
{
	pthread_mutex_destroy(&ch->mu);
	pthread_mutex_destroy(&ch->write_mu);
	pthread_cond_destroy(&ch->state_cv);
	free(ch->workers);
	free(ch);
}

enum p11ca_err chan_open(int fd, const struct chan_spec *spec, struct chan **out,
			 struct p11ca_errmsg *em)
{
	struct chan *ch = NULL;
	enum p11ca_err err;
	unsigned i;

	*out = NULL;
	err = spec_check(spec, em);
	if (err != P11CA_OK) {
		close(fd);
		return err;
	}
	ch = calloc(1, sizeof(*ch));
	if (ch == NULL ||
	    (spec->is_server && (ch->workers = calloc(spec->workers, sizeof(pthread_t))) == NULL)) {
		free(ch);
		close(fd);
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory for a channel");
	}
	ch->spec = *spec;
	if (ch->spec.name == NULL)
		ch->spec.name = "channel";
	ch->fd = fd;
	pthread_mutex_init(&ch->mu, NULL);
	pthread_mutex_init(&ch->write_mu, NULL);
	pthread_cond_init(&ch->state_cv, NULL);

	if (pthread_create(&ch->reader, NULL, reader_main, ch) != 0) {
		close(fd);
		chan_destroy(ch);
		return p11ca_fail(em, P11CA_E_INTERNAL, "%s: cannot start the reader thread",
				  spec->name);
	}
	ch->reader_started = true;
	for (i = 0; spec->is_server && i < spec->workers; i++) {
		if (pthread_create(&ch->workers[i], NULL, worker_main, ch) != 0)
			break;
		ch->n_workers++;
	}
	if (spec->is_server && ch->n_workers != spec->workers) {
		chan_close(&ch);
		return p11ca_fail(em, P11CA_E_INTERNAL, "%s: cannot start %u worker threads",
				  spec->name, spec->workers);
	}
	*out = ch;
	return P11CA_OK;
}

/* ---- calls ---------------------------------------------------------------------------------- */

static void deadline_after(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static enum p11ca_err link_down(struct chan *ch, struct p11ca_errmsg *em)
{
	if (ch->stop_err != P11CA_OK)
		return p11ca_fail(em, P11CA_E_IO, "%s is down: %s", ch->spec.name,
				  p11ca_errmsg_text(&ch->stop_em));
	return p11ca_fail(em, P11CA_E_IO, "%s is down: the peer closed it", ch->spec.name);
}

enum p11ca_err chan_call(struct chan *ch, void *call, void *reply, int timeout_ms,
			 struct p11ca_errmsg *em)
{
	struct chan_waiter w = {0};
	pthread_condattr_t attr;
	struct timespec deadline;
	enum p11ca_err err;

	if (ch == NULL || call == NULL || reply == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "chan_call: missing argument");
	if (ch->spec.is_server)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%s: a server end cannot make calls",
				  ch->spec.name);
	memset(reply, 0, ch->spec.in_size);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&w.cv, &attr);
	pthread_condattr_destroy(&attr);
	w.reply = reply;

	pthread_mutex_lock(&ch->mu);
	if (ch->reader_done || ch->stopping || ch->stop_err != P11CA_OK) {
		err = link_down(ch, em);
		pthread_mutex_unlock(&ch->mu);
		goto out;
	}
	w.id = ++ch->next_id;
	w.next = ch->waiters;
	ch->waiters = &w;
	ch->total++;
	ch->in_flight++;
	pthread_mutex_unlock(&ch->mu);

	msg_set_id(call, w.id);
	err = chan_send(ch, call, em);

	pthread_mutex_lock(&ch->mu);
	if (timeout_ms >= 0)
		deadline_after(&deadline, timeout_ms);
	while (err == P11CA_OK && !w.done) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&w.cv, &ch->mu);
		} else if (pthread_cond_timedwait(&w.cv, &ch->mu, &deadline) == ETIMEDOUT &&
			   !w.done) {
			err = p11ca_fail(em, P11CA_E_TIMEOUT, "%s: no reply within %d ms",
					 ch->spec.name, timeout_ms);
		}
	}
	if (err == P11CA_OK && w.err != P11CA_OK)
		err = link_down(ch, em);
	waiter_unlink(ch, &w);
	ch->in_flight--;
	pthread_mutex_unlock(&ch->mu);
out:
	pthread_cond_destroy(&w.cv);
	if (err != P11CA_OK)
		memset(reply, 0, ch->spec.in_size);
	return err;
}

enum p11ca_err chan_call_async(struct chan *ch, void *call, void *reply, chan_done_fn done_fn,
			       void *arg, uint64_t *call_id, struct p11ca_errmsg *em)
{
	struct chan_waiter *w;
	enum p11ca_err err;
	uint64_t id;

	if (ch == NULL || call == NULL || reply == NULL || done_fn == NULL || call_id == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "chan_call_async: missing argument");
	if (ch->spec.is_server)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%s: a server end cannot make calls",
				  ch->spec.name);
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "%s: out of memory for a call", ch->spec.name);
	memset(reply, 0, ch->spec.in_size);
	w->reply = reply;
	w->done_fn = done_fn;
	w->done_arg = arg;

	pthread_mutex_lock(&ch->mu);
	if (ch->reader_done || ch->stopping || ch->stop_err != P11CA_OK) {
		err = link_down(ch, em);
		pthread_mutex_unlock(&ch->mu);
		free(w);
		return err;
	}
	id = w->id = ++ch->next_id;
	w->next = ch->waiters;
	ch->waiters = w;
	ch->total++;
	ch->in_flight++;
	pthread_mutex_unlock(&ch->mu);
	*call_id = id;

	msg_set_id(call, id);
	err = chan_send(ch, call, em);
	/* A failed send either left the call registered (take it back: report the error
	 * here) or already stopped the link, whose reader then completed it with P11CA_E_IO
	 * (done_fn ran: this call must not report a second outcome). */
	if (err != P11CA_OK && chan_call_cancel(ch, id))
		return err;
	return P11CA_OK;
}

bool chan_call_cancel(struct chan *ch, uint64_t call_id)
{
	struct chan_waiter *w;
	bool found;

	if (ch == NULL || call_id == 0)
		return false;
	pthread_mutex_lock(&ch->mu);
	for (w = ch->waiters; w != NULL && !(w->id == call_id && w->done_fn != NULL); w = w->next)
		;
	found = w != NULL;
	if (found) {
		waiter_unlink(ch, w);
		ch->in_flight--;
	}
	pthread_mutex_unlock(&ch->mu);
	free(w);
	return found;
}

enum p11ca_err chan_notify(struct chan *ch, void *msg, struct p11ca_errmsg *em)
{
	bool down;

	if (ch == NULL || msg == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "chan_notify: missing argument");
	pthread_mutex_lock(&ch->mu);
	down = ch->reader_done || ch->stop_err != P11CA_OK;
	if (down)
		link_down(ch, em);
	pthread_mutex_unlock(&ch->mu);
	if (down)
		return P11CA_E_IO;
	msg_set_id(msg, 0);
	return chan_send(ch, msg, em);
}

/* ---- stopping ---------------------------------------------------------------------------------
 */

enum p11ca_err chan_wait(struct chan *ch, struct p11ca_errmsg *em)
{
	enum p11ca_err err;

	pthread_mutex_lock(&ch->mu);
	while (!ch->reader_done || ch->q_head != NULL || ch->busy > 0)
		pthread_cond_wait(&ch->state_cv, &ch->mu);
	err = ch->stop_err;
	if (err != P11CA_OK && em != NULL)
		*em = ch->stop_em;
	pthread_mutex_unlock(&ch->mu);
	return err;
}

void chan_shutdown(struct chan *ch)
{
	if (ch == NULL)
		return;
	pthread_mutex_lock(&ch->mu);
	ch->stopping = true;
	pthread_cond_broadcast(&ch->state_cv);
	pthread_mutex_unlock(&ch->mu);
	/* A server stops reading but still answers what it has; a client has nothing left to
	 * wait for. */
	shutdown(ch->fd, ch->spec.is_server ? SHUT_RD : SHUT_RDWR);
}

void chan_close(struct chan **chp)
{
	struct chan *ch;
	unsigned i;

	if (chp == NULL || *chp == NULL)
		return;
	ch = *chp;
	*chp = NULL;
	chan_shutdown(ch);
	if (ch->reader_started)
		pthread_join(ch->reader, NULL);
	for (i = 0; i < ch->n_workers; i++)
		pthread_join(ch->workers[i], NULL);
	while (ch->q_head != NULL) {
		struct chan_work *w = ch->q_head;

		ch->q_head = w->next;
		msg_free(&w->in, ch->spec.in_size);
		free(w);
	}
	shutdown(ch->fd, SHUT_RDWR);
	close(ch->fd);
	chan_destroy(ch);
}

void chan_counters(const struct chan *ch, uint64_t *total, unsigned *in_flight)
{
	struct chan *m = (struct chan *)ch; /* the lock is not part of the observable state */

	pthread_mutex_lock(&m->mu);
	if (total != NULL)
		*total = ch->total;
	if (in_flight != NULL)
		*in_flight = ch->in_flight;
	pthread_mutex_unlock(&m->mu);
}
