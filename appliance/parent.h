/*
 * appliance/parent.h — p11cad's parent process (internal to appliance/: p11cad.c, init.c).
 *
 * The parent owns no secrets and parses no network input: it reads the configuration,
 * binds the listeners, creates the links (socketpairs) and execs the children
 * (appliance/child.h for who gets which fd), restarts them (appliance/supervise.h), and
 * learns the appliance's state from the engine's EngineEvent notifications on the control
 * link, which it turns into sd_notify READY=1 / STATUS= lines.
 */
#ifndef P11CA_APPLIANCE_PARENT_H
#define P11CA_APPLIANCE_PARENT_H

#include <pthread.h>
#include <stdbool.h>

#include "appliance/config.h"
#include "appliance/supervise.h"
#include "common/err.h"
#include "common/log.h"
#include "rpc/channel.h"

#define PARENT_GRACE_MS 10000 /* per stop step: rpc finishes in-flight requests */

struct parent {
	const struct p11cad_config *cfg;
	const char *config_path; /* as the children get it (absolute) */
	const int *listen_fds;	 /* bound by the parent, kept across restarts */
	size_t n_listen;
	bool init; /* signer + engine only, engine with --init */
	const struct p11ca_logger *log;

	/* One generation's parent-side state. */
	int control_fd;
	struct chan *control;
	char *argv[3][8];

	/* The engine's last reported state (guarded by lock; changes signal `changed`). */
	pthread_mutex_t lock;
	pthread_cond_t changed;
	int state; /* p11ca_control_v1_EngineState */
	char text[257];
	unsigned events;
	bool ready_notified;
	int event_fd; /* eventfd written on every event (init waits on it); -1: none */
};

void parent_init(struct parent *p);
void parent_destroy(struct parent *p);

/* The sup_ops callbacks for this parent (arg = p). */
enum p11ca_err parent_prepare(void *arg, struct sup_child *c, size_t *n, struct p11ca_errmsg *em);
enum p11ca_err parent_started(void *arg, struct sup_child *c, size_t n, struct p11ca_errmsg *em);
void parent_stopping(void *arg);
void parent_stopped(void *arg);
int parent_crashed(void *arg, const char *name, int status, unsigned delay_ms);

/* Run mode: supervise signer, engine and rpc until stop_fd is readable. */
P11CA_MUST_CHECK enum p11ca_err parent_run(struct parent *p, int stop_fd, struct p11ca_errmsg *em);

#endif
