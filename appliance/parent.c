#include "appliance/parent.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "appliance/child.h"
#include "appliance/control.pb.h"

#define CONTROL_MAX_FRAME                                                                          \
	(p11ca_control_v1_ControlToEngine_size > p11ca_control_v1_ControlFromEngine_size           \
		 ? p11ca_control_v1_ControlToEngine_size                                           \
		 : p11ca_control_v1_ControlFromEngine_size)

static const char *state_name(int state)
{
	switch (state) {
	case p11ca_control_v1_EngineState_ENGINE_STATE_STARTING:
		return "starting";
	case p11ca_control_v1_EngineState_ENGINE_STATE_NEEDS_PIN:
		return "waiting for the HSM PIN";
	case p11ca_control_v1_EngineState_ENGINE_STATE_READY:
		return "ready";
	case p11ca_control_v1_EngineState_ENGINE_STATE_DEGRADED:
		return "degraded";
	default:
		return "unknown";
	}
}

void parent_init(struct parent *p)
{
	memset(p, 0, sizeof(*p));
	p->control_fd = -1;
	p->event_fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->changed, NULL);
}

void parent_destroy(struct parent *p)
{
	parent_stopped(p);
	pthread_cond_destroy(&p->changed);
	pthread_mutex_destroy(&p->lock);
}

/* The engine's notifications, on the control link's reader thread. Anything but an event
 * is a protocol violation: the link stops, and the engine is restarted. */
static enum p11ca_err on_control(void *arg, void *in, void *reply, struct p11ca_errmsg *em)
{
	struct parent *p = arg;
	const p11ca_control_v1_ControlFromEngine *m = in;
	if (reply != NULL || m->which_msg != p11ca_control_v1_ControlFromEngine_event_tag)
		return p11ca_fail(em, P11CA_E_PROTO,
				  "the engine sent a message the parent does "
				  "not accept");
	const p11ca_control_v1_EngineEvent *ev = &m->msg.event;

	pthread_mutex_lock(&p->lock);
	bool changed = (int)ev->state != p->state || strcmp(ev->text, p->text) != 0;
	p->state = (int)ev->state;
	memcpy(p->text, ev->text,
	       sizeof(p->text) < sizeof(ev->text) ? sizeof(p->text) : sizeof(ev->text));
	p->text[sizeof(p->text) - 1] = '\0';
	p->events++;
	bool first_ready = ev->state == p11ca_control_v1_EngineState_ENGINE_STATE_READY &&
			   !p->ready_notified && !p->init;
	if (first_ready)
		p->ready_notified = true;
	pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
	if (p->event_fd >= 0) {
		uint64_t one = 1;
		ssize_t w = write(p->event_fd, &one, sizeof(one));
		(void)w; /* a full counter still reads as readable */
	}

	if (changed)
		p11ca_logf(p->log,
			   ev->state == p11ca_control_v1_EngineState_ENGINE_STATE_DEGRADED
				   ? LOG_WARNING
				   : LOG_NOTICE,
			   "engine: %s%s%s", state_name((int)ev->state), ev->text[0] ? ": " : "",
			   ev->text);
	if (!p->init) {
		sd_notifyf(0, "STATUS=%s%s%s", state_name((int)ev->state), ev->text[0] ? ": " : "",
			   ev->text);
		/* READY=1 once: systemd's start job ends here, and a PIN wait does not count as
		 * started (TimeoutStartSec=infinity in the unit). */
		if (first_ready)
			sd_notify(0, "READY=1");
	}
	return P11CA_OK;
}

static void set_argv(char **argv, const char *role, const char *config_path, bool init)
{
	size_t i = 0;
	argv[i++] = (char *)"p11cad";
	argv[i++] = (char *)"--child";
	argv[i++] = (char *)role;
	argv[i++] = (char *)"--config";
	argv[i++] = (char *)config_path;
	if (init)
		argv[i++] = (char *)"--init";
	argv[i] = NULL;
}

enum p11ca_err parent_prepare(void *arg, struct sup_child *c, size_t *n, struct p11ca_errmsg *em)
{
	struct parent *p = arg;
	int es[2] = {-1, -1}, ec[2] = {-1, -1}, er[2] = {-1, -1};
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, es) != 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ec) != 0 ||
	    (!p->init && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, er) != 0)) {
		int e = errno;
		int all[] = {es[0], es[1], ec[0], ec[1], er[0], er[1]};
		for (size_t i = 0; i < 6; i++)
			if (all[i] >= 0)
				close(all[i]);
		return p11ca_fail(em, P11CA_E_INTERNAL, "socketpair: %s", strerror(e));
	}
	pthread_mutex_lock(&p->lock);
	p->state = p11ca_control_v1_EngineState_ENGINE_STATE_UNSPECIFIED;
	p->text[0] = '\0';
	pthread_mutex_unlock(&p->lock);

	static const char *const names[] = {"signer", "engine", "rpc"};
	*n = p->init ? 2 : 3;
	for (size_t i = 0; i < *n; i++) {
		set_argv(p->argv[i], names[i], p->config_path, p->init && i == 1);
		c[i] = (struct sup_child){.name = names[i],
					  .path = "/proc/self/exe",
					  .argv = p->argv[i],
					  .pidfd = -1};
	}
	c[0].fds[0] = es[0]; /* CHILD_SIGNER_FD_ENGINE */
	c[0].n_fds = 1;
	c[1].fds[0] = es[1]; /* CHILD_ENGINE_FD_SIGNER */
	c[1].fds[1] = ec[0]; /* CHILD_ENGINE_FD_CONTROL */
	c[1].n_fds = 2;
	c[1].term_on_stop = 1;
	if (!p->init) {
		c[1].fds[2] = er[0]; /* CHILD_ENGINE_FD_RPC */
		c[1].n_fds = 3;
		c[2].fds[0] = er[1]; /* CHILD_RPC_FD_ENGINE */
		for (size_t i = 0; i < p->n_listen; i++) {
			c[2].fds[1 + i] = p->listen_fds[i]; /* CHILD_RPC_FD_LISTEN + i */
			c[2].keep_mask |= 1u << (1 + i);    /* the same sockets every time */
		}
		c[2].n_fds = 1 + p->n_listen;
		c[2].term_on_stop = 1;
	}
	p->control_fd = ec[1];
	return P11CA_OK;
}

enum p11ca_err parent_started(void *arg, struct sup_child *c, size_t n, struct p11ca_errmsg *em)
{
	(void)c;
	(void)n;
	struct parent *p = arg;
	struct chan_spec spec = {
		.name = "parent→engine",
		.out_fields = p11ca_control_v1_ControlToEngine_fields,
		.out_size = sizeof(p11ca_control_v1_ControlToEngine),
		.in_fields = p11ca_control_v1_ControlFromEngine_fields,
		.in_size = sizeof(p11ca_control_v1_ControlFromEngine),
		.max_frame = CONTROL_MAX_FRAME,
		.is_server = 0,
		.handler = on_control,
		.arg = p,
		.log = p->log,
	};
	int fd = p->control_fd;
	p->control_fd = -1; /* chan_open takes it, also on failure */
	return chan_open(fd, &spec, &p->control, em);
}

void parent_stopping(void *arg)
{
	struct parent *p = arg;
	p11ca_logf(p->log, LOG_NOTICE, "stopping: rpc first, then the engine, then the signer");
	if (!p->init)
		sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void parent_stopped(void *arg)
{
	struct parent *p = arg;
	chan_close(&p->control);
	if (p->control_fd >= 0) {
		close(p->control_fd);
		p->control_fd = -1;
	}
}

int parent_crashed(void *arg, const char *name, int status, unsigned delay_ms)
{
	struct parent *p = arg;
	char text[96];
	sup_status_text(status, text, sizeof(text));
	if (!p->init)
		sd_notifyf(0, "STATUS=restarting in %u ms: the %s process %s", delay_ms, name,
			   text);
	return !p->init;
}

enum p11ca_err parent_run(struct parent *p, int stop_fd, struct p11ca_errmsg *em)
{
	struct sup_config cfg = {
		.backoff = {.min_ms = 1000, .max_ms = 30000, .reset_after_ms = 60000},
		.grace_ms = PARENT_GRACE_MS,
		.stop_fd = stop_fd,
		.log = p->log,
	};
	struct sup_ops ops = {
		.arg = p,
		.prepare = parent_prepare,
		.started = parent_started,
		.stopping = parent_stopping,
		.stopped = parent_stopped,
		.crashed = parent_crashed,
	};
	sd_notify(0, "STATUS=starting");
	return sup_run(&cfg, &ops, em);
}
