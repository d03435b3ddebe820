/*
 * engine_run: the engine process's main. Opens the store (orphans first), starts the
 * committer, links to the signer, the parent and the rpc process, reports its state, and
 * serves until told to stop or a link breaks.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "appliance/engine/engine.h"
#include "appliance/engine/engine_internal.h"
#include "hsm/signer.h"

#define STATUS_POLL_MS 5000 /* how often a not-ready engine asks the signer again */
#define START_POLL_MS  200

/* ---- state ------------------------------------------------------------------------------ */

void engine_state_set(struct engine *eng, p11ca_control_v1_EngineState state, const char *text)
{
	pthread_mutex_lock(&eng->lock);
	bool changed = eng->state != state || strcmp(eng->state_text, text) != 0;
	eng->state = state;
	snprintf(eng->state_text, sizeof(eng->state_text), "%s", text);
	pthread_mutex_unlock(&eng->lock);
	if (!changed)
		return;
	p11ca_logf(eng->log, LOG_NOTICE, "engine: %s", text);
	if (eng->control == NULL)
		return;
	p11ca_control_v1_ControlFromEngine ev = {
		.which_msg = p11ca_control_v1_ControlFromEngine_event_tag,
	};
	ev.msg.event.state = state;
	snprintf(ev.msg.event.text, sizeof(ev.msg.event.text), "%s", text);
	struct p11ca_errmsg em;
	if (chan_notify(eng->control, &ev, &em) != P11CA_OK)
		p11ca_logf(eng->log, LOG_WARNING, "engine: cannot tell the parent: %s",
			   p11ca_errmsg_text(&em));
}

p11ca_control_v1_EngineState engine_state_get(struct engine *eng)
{
	pthread_mutex_lock(&eng->lock);
	p11ca_control_v1_EngineState s = eng->state;
	pthread_mutex_unlock(&eng->lock);
	return s;
}

void engine_state_note_signer_error(struct engine *eng, enum p11ca_err err)
{
	switch (err) {
	case P11CA_E_HSM_NO_PIN:
	case P11CA_E_HSM_PIN_INCORRECT:
	case P11CA_E_HSM_PIN_FINAL_TRY:
	case P11CA_E_HSM_PIN_LOCKED:
		engine_state_set(eng, p11ca_control_v1_EngineState_ENGINE_STATE_NEEDS_PIN,
				 "the token lost its login: run p11ca hsm activate");
		break;
	case P11CA_E_HSM_UNAVAILABLE:
		engine_state_set(eng, p11ca_control_v1_EngineState_ENGINE_STATE_DEGRADED,
				 "the HSM token is unavailable: serving reads only");
		break;
	default:
		break;
	}
}

enum p11ca_err engine_signing_ready(struct engine *eng, struct p11ca_errmsg *em)
{
	switch (engine_state_get(eng)) {
	case p11ca_control_v1_EngineState_ENGINE_STATE_READY:
		return P11CA_OK;
	case p11ca_control_v1_EngineState_ENGINE_STATE_NEEDS_PIN:
		return p11ca_fail(em, P11CA_E_HSM_NO_PIN,
				  "the HSM token is not logged in: activate the token: p11ca hsm "
				  "activate");
	default:
		return p11ca_fail(
			em, P11CA_E_HSM_UNAVAILABLE,
			"the HSM token is unavailable: check p11ca hsm status, retry later");
	}
}

/* Ask the signer and map its token state to ours. Errors: the link's. */
static enum p11ca_err state_refresh(struct engine *eng, struct p11ca_errmsg *em)
{
	struct signer_status st;
	memset(&st, 0, sizeof(st));
	P11CA_GUARD(signer_status_get(eng->signer, &st, em));
	switch (st.state) {
	case SIGNER_TOKEN_READY:
		engine_state_set(eng, p11ca_control_v1_EngineState_ENGINE_STATE_READY,
				 "database open, token logged in: serving");
		break;
	case SIGNER_TOKEN_NEEDS_PIN:
		engine_state_set(eng, p11ca_control_v1_EngineState_ENGINE_STATE_NEEDS_PIN,
				 "waiting for the token PIN: run p11ca hsm activate");
		break;
	case SIGNER_TOKEN_PIN_FINAL_TRY:
	case SIGNER_TOKEN_PIN_LOCKED:
		engine_state_set(eng, p11ca_control_v1_EngineState_ENGINE_STATE_NEEDS_PIN,
				 "the token PIN is locked or on its final try: unlock it, then "
				 "p11ca hsm activate");
		break;
	default:
		engine_state_set(eng, p11ca_control_v1_EngineState_ENGINE_STATE_DEGRADED,
				 "the HSM token is unavailable: serving reads only");
		break;
	}
	return P11CA_OK;
}

/* ---- links ------------------------------------------------------------------------------- */

static enum p11ca_err rpc_handler(void *arg, void *in, void *reply, struct p11ca_errmsg *em)
{
	p11ca_forward_v1_ToEngine *msg = in;
	bool is_call = reply != NULL;
	if (is_call != (msg->which_msg == p11ca_forward_v1_ToEngine_request_tag))
		return p11ca_fail(em, P11CA_E_PROTO,
				  "the rpc process sent a request as a notification or a refusal "
				  "as a call");
	engine_dispatch(arg, msg, reply);
	return P11CA_OK;
}

static enum p11ca_err control_handler(void *arg, void *in, void *reply, struct p11ca_errmsg *em)
{
	p11ca_control_v1_ControlToEngine *msg = in;
	p11ca_control_v1_ControlFromEngine *out = reply;
	if (out == NULL || msg->which_msg != p11ca_control_v1_ControlToEngine_bootstrap_tag)
		return p11ca_fail(em, P11CA_E_PROTO,
				  "the parent sent a message the engine "
				  "does not take");
	out->which_msg = p11ca_control_v1_ControlFromEngine_bootstrap_tag;
	engine_bootstrap(arg, &msg->msg.bootstrap, &out->msg.bootstrap);
	return P11CA_OK;
}

/* One thread per link waits for it to stop and wakes the main loop through a pipe. */
struct watch {
	struct chan *ch;
	const char *name;
	int wake_fd;
	pthread_t thread;
	bool running;
	bool fatal_on_close; /* the signer: nothing can be signed without it */
	bool done;	     /* chan_wait returned (set before the wake-up byte) */
	bool handled;
	enum p11ca_err err;
	struct p11ca_errmsg em;
};

static void *watch_main(void *arg)
{
	struct watch *w = arg;
	p11ca_errmsg_clear(&w->em);
	w->err = chan_wait(w->ch, &w->em);
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
	char one = 1;
	while (write(w->wake_fd, &one, 1) < 0 && errno == EINTR)
		;
	return NULL;
}

static enum p11ca_err watch_start(struct watch *w, struct chan *ch, const char *name, int wake_fd,
				  struct p11ca_errmsg *em)
{
	w->ch = ch;
	w->name = name;
	w->wake_fd = wake_fd;
	w->err = P11CA_OK;
	if (ch == NULL)
		return P11CA_OK;
	if (pthread_create(&w->thread, NULL, watch_main, w) != 0)
		return p11ca_fail(em, P11CA_E_INTERNAL, "cannot start a thread for the %s link",
				  name);
	w->running = true;
	return P11CA_OK;
}

static void watch_stop(struct watch *w)
{
	if (w->ch != NULL)
		chan_shutdown(w->ch);
	if (w->running)
		pthread_join(w->thread, NULL);
	w->running = false;
}

/*
 * A link that stopped: broken protocol or a lost signer ends the engine (the parent then
 * restarts every process). A peer that closed its end cleanly is the parent stopping the
 * set in order (rpc first): keep serving the other links until told to stop.
 */
static enum p11ca_err links_check(struct watch *const *ws, size_t n, const struct p11ca_logger *log,
				  struct p11ca_errmsg *em)
{
	for (size_t i = 0; i < n; i++) {
		struct watch *w = ws[i];
		if (!w->running || w->handled || !__atomic_load_n(&w->done, __ATOMIC_ACQUIRE))
			continue;
		w->handled = true;
		if (w->err != P11CA_OK)
			return p11ca_fail(em, w->err, "the %s link failed: %s", w->name,
					  p11ca_errmsg_text(&w->em));
		if (w->fatal_on_close)
			return p11ca_fail(
				em, P11CA_E_IO,
				"the %s closed its link: the engine cannot sign without it",
				w->name);
		p11ca_logf(log, LOG_INFO, "engine: the %s closed its link", w->name);
	}
	return P11CA_OK;
}

/* ---- the notification schedule ---------------------------------------------------------- */

/* A thread of its own: a pass runs the operator's command and may take minutes, which
 * must not hold up the main loop (stop requests, link checks). */
struct notify_timer {
	struct engine *eng;
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	bool stop;
};

static void *notify_main(void *arg)
{
	struct notify_timer *t = arg;
	const int64_t interval = (int64_t)t->eng->cfg->notify_interval_minutes * 60;
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec < next.tv_sec) {
			pthread_cond_timedwait(&t->cond, &t->lock, &next);
			continue;
		}
		next.tv_sec = now.tv_sec + interval;
		pthread_mutex_unlock(&t->lock);
		p11ca_v1_NotifyExpiringResponse out;
		struct p11ca_errmsg em;
		p11ca_errmsg_clear(&em);
		if (engine_notify_run(t->eng, engine_now(), NULL, &out, &em) != P11CA_OK)
			p11ca_logf(t->eng->log, LOG_WARNING, "engine: expiry notifications: %s",
				   p11ca_errmsg_text(&em));
		pthread_mutex_lock(&t->lock);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* Start the schedule when [notify] has a command and an interval; a failure to start it
 * is logged, not fatal (`notify expiring` still works). */
static void notify_start(struct notify_timer *t, struct engine *eng)
{
	pthread_condattr_t ca;
	t->eng = eng;
	pthread_mutex_init(&t->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (eng->cfg->notify_command[0] == '\0' || eng->cfg->notify_interval_minutes == 0)
		return;
	if (pthread_create(&t->thread, NULL, notify_main, t) != 0) {
		p11ca_logf(eng->log, LOG_WARNING,
			   "engine: cannot start the notification schedule; only `p11ca notify "
			   "expiring` sends notifications");
		return;
	}
	t->running = true;
}

static void notify_stop(struct notify_timer *t)
{
	if (t->eng == NULL)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
	if (t->running)
		pthread_join(t->thread, NULL);
	t->running = false;
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	t->eng = NULL;
}

static const size_t rpc_frame_max =
	p11ca_forward_v1_FromEngine_size > p11ca_forward_v1_ToEngine_size
		? p11ca_forward_v1_FromEngine_size
		: p11ca_forward_v1_ToEngine_size;

static enum p11ca_err store_start(struct engine *eng, struct p11ca_errmsg *em)
{
	char path[P11CAD_PATH_MAX];
	struct store_txn *txn = NULL;
	size_t orphans = 0;
	P11CA_GUARD(p11cad_config_path(eng->cfg, eng->cfg->db_path, path, em));
	struct store_options so = {
		.path = path,
		.map_size = eng->cfg->map_size_mb * 1024 * 1024,
		.logger = eng->log,
	};
	P11CA_GUARD(store_open(&so, &eng->st, em));
	/* Intents left by a crash become orphans before any new intent is written. */
	P11CA_GUARD(store_txn_begin(eng->st, STORE_TXN_WRITE, &txn, em));
	enum p11ca_err err = store_orphans_mark(txn, &orphans, em);
	if (err == P11CA_OK && orphans > 0) {
		char details[64];
		snprintf(details, sizeof(details), "%zu intents without certificate", orphans);
		err = store_audit_append(txn, "engine.orphans", "engine", NULL, details, NULL, em);
	}
	if (err != P11CA_OK) {
		store_txn_abort(&txn);
		return err;
	}
	return store_txn_commit(&txn, em);
}

/* The links supervise.c put in place are not close-on-exec (they had to cross one exec):
 * mark them, so no program the engine starts (the notification command) inherits them. */
static void cloexec_set(int fd)
{
	int flags = fd >= 0 ? fcntl(fd, F_GETFD) : -1;
	if (flags >= 0)
		fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

enum p11ca_err engine_run(const struct p11cad_config *cfg, const struct engine_fds *fds,
			  const struct p11ca_logger *log, struct p11ca_errmsg *em)
{
	struct engine eng = {.cfg = cfg, .log = log, .started = engine_now()};
	struct chan *rpc = NULL;
	struct watch w_signer = {0}, w_control = {0}, w_rpc = {0};
	struct notify_timer notify = {0};
	int wake[2] = {-1, -1};
	enum p11ca_err err;
	int control_fd = fds->control, rpc_fd = fds->rpc, signer_fd = fds->signer;

	cloexec_set(control_fd);
	cloexec_set(rpc_fd);
	cloexec_set(signer_fd);

	pthread_mutex_init(&eng.lock, NULL);
	for (size_t i = 0; i < ENGINE_CRL_LOCKS; i++)
		pthread_mutex_init(&eng.crl_locks[i], NULL);
	engine_ca_cache_init(&eng.ca_cache);
	eng.state = p11ca_control_v1_EngineState_ENGINE_STATE_STARTING;
	snprintf(eng.state_text, sizeof(eng.state_text), "starting");

	if (pipe2(wake, O_CLOEXEC) != 0) {
		err = p11ca_fail(em, P11CA_E_IO, "cannot create a pipe: %s", strerror(errno));
		goto out;
	}
	err = signer_client_open(signer_fd, log, &eng.signer, em);
	signer_fd = -1;
	if (err != P11CA_OK)
		goto out;
	if (control_fd >= 0) {
		struct chan_spec cs = {
			.name = "parent→engine",
			.out_fields = p11ca_control_v1_ControlFromEngine_fields,
			.out_size = sizeof(p11ca_control_v1_ControlFromEngine),
			.in_fields = p11ca_control_v1_ControlToEngine_fields,
			.in_size = sizeof(p11ca_control_v1_ControlToEngine),
			.max_frame = p11ca_control_v1_ControlToEngine_size,
			.is_server = 1,
			.workers = 1,
			.handler = control_handler,
			.arg = &eng,
			.log = log,
		};
		err = chan_open(control_fd, &cs, &eng.control, em);
		control_fd = -1;
		if (err != P11CA_OK)
			goto out;
	}
	engine_state_set(&eng, p11ca_control_v1_EngineState_ENGINE_STATE_STARTING,
			 "opening the database");
	err = store_start(&eng, em);
	if (err == P11CA_OK)
		err = commit_start(eng.st, log, &eng.commit, em);
	if (err == P11CA_OK)
		engine_state_set(&eng, p11ca_control_v1_EngineState_ENGINE_STATE_STARTING,
				 "waiting for the signer");
	if (err != P11CA_OK)
		goto out;
	/* The signer may still be opening its token: ask until it answers. */
	for (;;) {
		struct p11ca_errmsg sem;
		p11ca_errmsg_clear(&sem);
		enum p11ca_err serr = state_refresh(&eng, &sem);
		if (serr == P11CA_OK)
			break;
		if (serr != P11CA_E_TIMEOUT) {
			err = p11ca_fail(em, serr, "%s", p11ca_errmsg_text(&sem));
			goto out;
		}
		struct pollfd pf = {.fd = fds->stop, .events = POLLIN};
		if (poll(&pf, 1, START_POLL_MS) > 0)
			goto out;
	}
	if (rpc_fd >= 0) {
		struct chan_spec rs = {
			.name = "rpc→engine",
			.out_fields = p11ca_forward_v1_FromEngine_fields,
			.out_size = sizeof(p11ca_forward_v1_FromEngine),
			.in_fields = p11ca_forward_v1_ToEngine_fields,
			.in_size = sizeof(p11ca_forward_v1_ToEngine),
			.max_frame = rpc_frame_max,
			.is_server = 1,
			.workers = cfg->workers != 0 ? cfg->workers : 16,
			.handler = rpc_handler,
			.arg = &eng,
			.log = log,
		};
		err = chan_open(rpc_fd, &rs, &rpc, em);
		rpc_fd = -1;
		if (err != P11CA_OK)
			goto out;
	}
	w_signer.fatal_on_close = true;
	notify_start(&notify, &eng);
	err = watch_start(&w_signer, eng.signer, "signer", wake[1], em);
	if (err == P11CA_OK)
		err = watch_start(&w_control, eng.control, "parent", wake[1], em);
	if (err == P11CA_OK)
		err = watch_start(&w_rpc, rpc, "rpc", wake[1], em);
	if (err != P11CA_OK)
		goto out;

	for (;;) {
		struct pollfd pf[2] = {{.fd = fds->stop, .events = POLLIN},
				       {.fd = wake[0], .events = POLLIN}};
		int n = poll(pf, 2, STATUS_POLL_MS);
		if (n < 0 && errno != EINTR) {
			err = p11ca_fail(em, P11CA_E_IO, "poll failed: %s", strerror(errno));
			break;
		}
		if (n > 0 && pf[0].revents != 0)
			break; /* asked to stop */
		if (n > 0 && pf[1].revents != 0) {
			char buf[8];
			if (read(wake[0], buf, sizeof(buf)) < 0 && errno != EINTR) {
				err = p11ca_fail(em, P11CA_E_IO, "reading the wake-up pipe: %s",
						 strerror(errno));
				break;
			}
			struct watch *ws[] = {&w_signer, &w_control, &w_rpc};
			err = links_check(ws, 3, log, em);
			if (err != P11CA_OK)
				break;
		}
		if (n == 0 &&
		    engine_state_get(&eng) != p11ca_control_v1_EngineState_ENGINE_STATE_READY) {
			struct p11ca_errmsg sem;
			if (state_refresh(&eng, &sem) != P11CA_OK)
				p11ca_logf(log, LOG_WARNING, "engine: signer status: %s",
					   p11ca_errmsg_text(&sem));
		}
	}
out:
	/* Finish the calls in flight (they need the committer and the signer), then stop. */
	watch_stop(&w_rpc);
	chan_close(&rpc);
	notify_stop(&notify); /* a pass in progress finishes its current command first */
	watch_stop(&w_control);
	chan_close(&eng.control);
	commit_stop(&eng.commit);
	watch_stop(&w_signer);
	chan_close(&eng.signer);
	store_close(&eng.st);
	if (control_fd >= 0)
		close(control_fd);
	if (rpc_fd >= 0)
		close(rpc_fd);
	if (signer_fd >= 0)
		close(signer_fd);
	if (wake[0] >= 0)
		close(wake[0]);
	if (wake[1] >= 0)
		close(wake[1]);
	if (fds->stop >= 0)
		close(fds->stop);
	engine_ca_cache_destroy(&eng.ca_cache);
	for (size_t i = 0; i < ENGINE_CRL_LOCKS; i++)
		pthread_mutex_destroy(&eng.crl_locks[i]);
	pthread_mutex_destroy(&eng.lock);
	return err;
}
