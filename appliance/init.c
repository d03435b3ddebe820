#include "appliance/init.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliance/control.pb.h"
#include "appliance/listen.h"
#include "appliance/parent.h"

#define INIT_BOOTSTRAP_TIMEOUT_MS 300000 /* RSA key generation on a slow HSM */

struct init_ctx {
	struct parent p;
	struct sup_child c[SUP_MAX_CHILDREN];
	size_t n;
	int stop_fd;
	char config_abs[PATH_MAX];
};

static enum p11ca_err ensure_config(const struct p11cad_init_args *a, FILE *out,
				    struct p11ca_errmsg *em)
{
	struct p11ca_errmsg wem = {0};
	enum p11ca_err err = p11cad_config_write(a->config_path, &a->opts, &wem);
	if (err == P11CA_OK) {
		fprintf(out, "configuration  %s: written (every key with its default)\n",
			a->config_path);
		return P11CA_OK;
	}
	if (err != P11CA_E_STORAGE_EXISTS)
		return p11ca_fail(em, err, "%s", p11ca_errmsg_text(&wem));
	const struct p11cad_init_options *o = &a->opts;
	bool given = o->module || o->token || o->pin_source || o->state_dir || o->listen || o->http;
	fprintf(out, "configuration  %s: kept%s\n", a->config_path,
		given ? " (it exists: the --module/--token/... options were not applied)" : "");
	return P11CA_OK;
}

static enum p11ca_err ensure_state_dir(const char *dir, FILE *out, struct p11ca_errmsg *em)
{
	if (mkdir(dir, 0700) == 0) {
		fprintf(out, "state dir      %s: created (0700)\n", dir);
		return P11CA_OK;
	}
	struct stat st;
	if (errno != EEXIST || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return p11ca_fail(em, P11CA_E_IO, "cannot create the state directory %s: %s", dir,
				  errno == EEXIST ? "not a directory" : strerror(errno));
	fprintf(out, "state dir      %s: kept\n", dir);
	return P11CA_OK;
}

static void add_name(p11ca_control_v1_BootstrapRequest *r, const char *name)
{
	if (name[0] == '\0' || strlen(name) >= sizeof(r->server_names[0]))
		return;
	for (pb_size_t i = 0; i < r->server_names_count; i++)
		if (strcmp(r->server_names[i], name) == 0)
			return;
	if (r->server_names_count < sizeof(r->server_names) / sizeof(r->server_names[0]))
		memcpy(r->server_names[r->server_names_count++], name, strlen(name) + 1);
}

static enum p11ca_err copy_field(char *dst, size_t cap, const char *src, const char *what,
				 struct p11ca_errmsg *em)
{
	if (strlen(src) >= cap)
		return p11ca_fail(em, P11CA_E_CONFIG, "%s is too long for the bootstrap: %s", what,
				  src);
	memcpy(dst, src, strlen(src) + 1);
	return P11CA_OK;
}

static enum p11ca_err build_request(const struct p11cad_config *cfg, const char *admin_out,
				    p11ca_control_v1_BootstrapRequest *r,
				    const struct p11ca_logger *log, struct p11ca_errmsg *em)
{
	char host[256] = "", path[P11CAD_PATH_MAX], subject[400];
	if (gethostname(host, sizeof(host) - 1) != 0)
		host[0] = '\0';
	snprintf(subject, sizeof(subject), "CN=p11ca management CA%s%s%s", host[0] ? " (" : "",
		 host, host[0] ? ")" : "");
	P11CA_GUARD(copy_field(r->ca_name, sizeof(r->ca_name), cfg->management_ca, "CA", em));
	P11CA_GUARD(copy_field(r->ca_subject, sizeof(r->ca_subject), subject, "subject", em));
	P11CA_GUARD(copy_field(r->key_type, sizeof(r->key_type), "p256", "key type", em));
	P11CA_GUARD(
		copy_field(r->key_label, sizeof(r->key_label), cfg->management_ca, "label", em));
	r->ca_expires_days = cfg->ca_expires_days;

	for (size_t i = 0; i < cfg->n_rpc_listen; i++) {
		struct p11cad_listen_addr a;
		if (p11cad_listen_parse(cfg->rpc_listen[i], &a, NULL) != P11CA_OK)
			continue;
		/* A wildcard is no name a client can connect to. */
		if (strcmp(a.host, "0.0.0.0") != 0 && strcmp(a.host, "::") != 0)
			add_name(r, a.host);
	}
	add_name(r, "localhost");
	add_name(r, host);

	P11CA_GUARD(p11cad_config_path(cfg, cfg->tls_cert, path, em));
	char tls_dir[P11CAD_PATH_MAX];
	memcpy(tls_dir, path, sizeof(tls_dir));
	P11CA_GUARD(copy_field(r->tls_dir, sizeof(r->tls_dir), dirname(tls_dir), "tls dir", em));
	/* The engine writes tls_dir/{server.crt,server.key,ca.crt}: say so when the config
	 * points the rpc process elsewhere. */
	const char *want[][2] = {{cfg->tls_cert, "server.crt"},
				 {cfg->tls_key, "server.key"},
				 {cfg->client_ca, "ca.crt"}};
	for (size_t i = 0; i < 3; i++) {
		char got[P11CAD_PATH_MAX], exp[P11CAD_PATH_MAX + 16];
		P11CA_GUARD(p11cad_config_path(cfg, want[i][0], got, em));
		snprintf(exp, sizeof(exp), "%s/%s", r->tls_dir, want[i][1]);
		if (strcmp(got, exp) != 0)
			p11ca_logf(log, LOG_WARNING,
				   "init writes %s, but the configuration names %s: copy the file "
				   "there or use the default paths",
				   exp, got);
	}
	if (admin_out != NULL)
		P11CA_GUARD(
			copy_field(r->admin_out, sizeof(r->admin_out), admin_out, "admin dir", em));
	else
		P11CA_GUARD(p11cad_config_path(cfg, "admin", r->admin_out, em));
	P11CA_GUARD(p11cad_config_path(cfg, cfg->roles_file, path, em));
	return copy_field(r->roles_file, sizeof(r->roles_file), path, "roles file", em);
}

/* Wait until the engine reports a state other than STARTING; a child's death, a stop
 * signal or the timeout end the wait with an error. */
static enum p11ca_err wait_engine(struct init_ctx *x, unsigned timeout_ms, int *state,
				  struct p11ca_errmsg *em)
{
	for (;;) {
		pthread_mutex_lock(&x->p.lock);
		*state = x->p.state;
		char text[sizeof(x->p.text)];
		memcpy(text, x->p.text, sizeof(text));
		pthread_mutex_unlock(&x->p.lock);
		if (*state != p11ca_control_v1_EngineState_ENGINE_STATE_UNSPECIFIED &&
		    *state != p11ca_control_v1_EngineState_ENGINE_STATE_STARTING)
			return P11CA_OK;

		struct pollfd pfd[4] = {
			{.fd = x->p.event_fd, .events = POLLIN},
			{.fd = x->stop_fd, .events = POLLIN},
			{.fd = x->c[0].pidfd, .events = POLLIN},
			{.fd = x->c[1].pidfd, .events = POLLIN},
		};
		int r = poll(pfd, 4, (int)timeout_ms);
		if (r == 0)
			return p11ca_fail(em, P11CA_E_TIMEOUT,
					  "the engine did not get ready within %u s%s%s",
					  timeout_ms / 1000, text[0] ? ": " : "", text);
		if (r < 0)
			continue;
		if (pfd[1].revents != 0)
			return p11ca_fail(em, P11CA_E_IO, "interrupted");
		for (int i = 0; i < 2; i++) {
			int st;
			if (pfd[2 + i].revents != 0 && sup_wait(&x->c[i], 0, &st) == 1) {
				char t[96];
				sup_status_text(st, t, sizeof(t));
				return p11ca_fail(em, P11CA_E_IO,
						  "the %s process %s before the engine was ready "
						  "(its error is logged above)",
						  x->c[i].name, t);
			}
		}
		uint64_t v;
		if (pfd[0].revents != 0 && read(x->p.event_fd, &v, sizeof(v)) < 0)
			continue;
	}
}

static enum p11ca_err bootstrap(struct init_ctx *x, const struct p11cad_init_args *a, FILE *out,
				struct p11ca_errmsg *em)
{
	int state;
	P11CA_GUARD(wait_engine(x, a->timeout_ms ? a->timeout_ms : 120000, &state, em));
	if (state == p11ca_control_v1_EngineState_ENGINE_STATE_NEEDS_PIN)
		return p11ca_fail(em, P11CA_E_HSM_NO_PIN,
				  "init needs a pin source: the token '%s' needs its PIN to create "
				  "the management CA key; set [hsm] pin_source in %s (a file, mode "
				  "0600) and run init again",
				  x->p.cfg->token, a->config_path);
	if (state != p11ca_control_v1_EngineState_ENGINE_STATE_READY)
		return p11ca_fail(em, P11CA_E_HSM_UNAVAILABLE, "the engine is not ready: %s",
				  x->p.text);

	p11ca_control_v1_ControlToEngine call = p11ca_control_v1_ControlToEngine_init_zero;
	p11ca_control_v1_ControlFromEngine reply = p11ca_control_v1_ControlFromEngine_init_zero;
	call.which_msg = p11ca_control_v1_ControlToEngine_bootstrap_tag;
	P11CA_GUARD(build_request(x->p.cfg, a->admin_out, &call.msg.bootstrap, x->p.log, em));
	P11CA_GUARD(chan_call(x->p.control, &call, &reply, INIT_BOOTSTRAP_TIMEOUT_MS, em));
	if (reply.which_msg != p11ca_control_v1_ControlFromEngine_bootstrap_tag)
		return p11ca_fail(em, P11CA_E_PROTO,
				  "the engine answered the bootstrap with "
				  "another message");
	const p11ca_control_v1_BootstrapResponse *r = &reply.msg.bootstrap;
	if (r->error != 0)
		return p11ca_fail(em, (enum p11ca_err)r->error, "bootstrap failed: %s", r->message);
	const p11ca_control_v1_BootstrapRequest *q = &call.msg.bootstrap;
	fprintf(out, "management CA  '%s' (key '%s' on token '%s'): %s\n", q->ca_name, q->key_label,
		x->p.cfg->token, r->ca_created ? "created" : "kept");
	fprintf(out, "server TLS     %s/server.crt: %s\n", q->tls_dir,
		r->server_cert_created ? "created" : "kept");
	fprintf(out, "admin          %s/admin.crt: %s\n", q->admin_out,
		r->admin_created ? "created" : "kept");
	fprintf(out, "admin SHA-256  %s\n", r->admin_fingerprint);
	fprintf(out, "roles          %s%s\n", q->roles_file,
		r->admin_created ? ": admin appended" : "");
	fprintf(out, "server names   ");
	for (pb_size_t i = 0; i < q->server_names_count; i++)
		fprintf(out, "%s%s", i ? ", " : "", q->server_names[i]);
	fprintf(out,
		"\nnext: start p11cad (systemctl start p11cad) and connect with %s/admin.crt, "
		"admin.key and ca.crt\n",
		q->admin_out);
	return P11CA_OK;
}

static int stop_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
		return -1;
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int p11cad_init_main(const struct p11cad_init_args *a, const struct p11ca_logger *log, FILE *out)
{
	struct p11ca_errmsg em = {0};
	struct p11cad_config *cfg = calloc(1, sizeof(*cfg));
	struct init_ctx *x = calloc(1, sizeof(*x));
	enum p11ca_err err = P11CA_OK;
	if (cfg == NULL || x == NULL) {
		free(cfg);
		free(x);
		p11ca_logf(log, LOG_ERR, "out of memory");
		return 71;
	}
	parent_init(&x->p);
	x->stop_fd = -1;
	for (size_t i = 0; i < SUP_MAX_CHILDREN; i++)
		x->c[i].pidfd = -1;

	err = ensure_config(a, out, &em);
	if (err == P11CA_OK)
		err = p11cad_config_load(a->config_path, cfg, &em);
	if (err == P11CA_OK)
		err = ensure_state_dir(cfg->state_dir, out, &em);
	if (err != P11CA_OK)
		goto out;
	if (realpath(a->config_path, x->config_abs) == NULL) {
		err = p11ca_fail(&em, P11CA_E_IO, "%s: %s", a->config_path, strerror(errno));
		goto out;
	}
	x->stop_fd = stop_signals();
	x->p.event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (x->stop_fd < 0 || x->p.event_fd < 0) {
		err = p11ca_fail(&em, P11CA_E_INTERNAL, "signalfd/eventfd: %s", strerror(errno));
		goto out;
	}
	x->p.cfg = cfg;
	x->p.config_path = x->config_abs;
	x->p.init = true;
	x->p.log = log;

	err = parent_prepare(&x->p, x->c, &x->n, &em);
	for (size_t i = 0; err == P11CA_OK && i < x->n; i++)
		err = sup_spawn(&x->c[i], &em);
	if (err == P11CA_OK)
		err = parent_started(&x->p, x->c, x->n, &em);
	if (err == P11CA_OK)
		err = bootstrap(x, a, out, &em);
out:
	/* Children that never started still hold our copies of their fds. */
	for (size_t i = 0; i < x->n; i++)
		for (size_t j = 0; j < x->c[i].n_fds; j++)
			if (x->c[i].pid == 0 && x->c[i].fds[j] >= 0)
				close(x->c[i].fds[j]);
	sup_stop_all(x->c, x->n, PARENT_GRACE_MS, log);
	parent_destroy(&x->p);
	if (x->p.event_fd >= 0)
		close(x->p.event_fd);
	if (x->stop_fd >= 0)
		close(x->stop_fd);
	free(x);
	free(cfg);
	if (err != P11CA_OK) {
		p11ca_logf(log, LOG_ERR, "init failed: %s", p11ca_errmsg_text(&em));
		return p11ca_err_sysexit(err);
	}
	return 0;
}
