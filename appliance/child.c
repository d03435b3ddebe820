#include "appliance/child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "appliance/config.h"
#include "appliance/engine/engine.h"
#include "hsm/signer.h"
#include "rpc/server.h"

static const char *level_name(int priority)
{
	if (priority <= LOG_ERR)
		return "error";
	return priority == LOG_WARNING	? "warning"
	       : priority == LOG_NOTICE ? "notice"
	       : priority == LOG_INFO	? "info"
					: "debug";
}

/* One write(2) per line, so lines of concurrent threads and processes never interleave. */
static void log_line(void *arg, int priority, const char *line)
{
	const struct p11cad_log *log = arg;
	char buf[1200];
	int n = log->journal ? snprintf(buf, sizeof(buf), "<%d>p11cad[%s]: %s\n", priority,
					log->tag, line)
			     : snprintf(buf, sizeof(buf), "p11cad[%s]: %s: %s\n", log->tag,
					level_name(priority), line);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf)) {
		n = sizeof(buf) - 1;
		buf[n - 1] = '\n';
	}
	ssize_t r = write(STDERR_FILENO, buf, (size_t)n);
	(void)r;
}

void p11cad_log_init(struct p11cad_log *log, const char *tag, int max_priority)
{
	memset(log, 0, sizeof(*log));
	snprintf(log->tag, sizeof(log->tag), "%s", tag);
	log->journal = getenv("JOURNAL_STREAM") != NULL;
	log->logger.fn = log_line;
	log->logger.arg = log;
	log->logger.max_priority = max_priority;
}

int p11cad_harden(void)
{
	struct rlimit none = {0, 0};
	if (prctl(PR_SET_DUMPABLE, 0) != 0 || setrlimit(RLIMIT_CORE, &none) != 0)
		return -1;
	return 0;
}

/* SIGTERM/SIGINT as a readable descriptor; the signals stay blocked in every thread. */
static int stop_fd_open(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
		return -1;
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

/* "pkcs11:token=LABEL" with the label percent-encoded (RFC 7512: anything but unreserved). */
static enum p11ca_err token_uri(const char *label, char *out, size_t cap, struct p11ca_errmsg *em)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = (size_t)snprintf(out, cap, "pkcs11:token=");
	for (const unsigned char *s = (const unsigned char *)label; *s != '\0'; s++) {
		if (n + 4 > cap)
			return p11ca_fail(em, P11CA_E_CONFIG, "token label too long");
		if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || strchr("-._~", *s) != NULL) {
			out[n++] = (char)*s;
		} else {
			out[n++] = '%';
			out[n++] = hex[*s >> 4];
			out[n++] = hex[*s & 15];
		}
	}
	out[n] = '\0';
	return P11CA_OK;
}

static enum p11ca_err run_signer(const struct p11cad_config *cfg, const struct p11ca_logger *log,
				 struct p11ca_errmsg *em)
{
	char uri[128], pin_path[P11CAD_PATH_MAX];
	P11CA_GUARD(token_uri(cfg->token, uri, sizeof(uri), em));
	const char *pin = NULL;
	if (cfg->pin_source[0] != '\0') {
		pin = cfg->pin_source;
		if (strncmp(pin, "credential:", 11) != 0 && strncmp(pin, "file:", 5) != 0) {
			P11CA_GUARD(p11cad_config_path(cfg, cfg->pin_source, pin_path, em));
			pin = pin_path;
		}
	}
	struct signer_options o = {
		.token = {.module_path = cfg->module,
			  .uri = uri,
			  .pool_size = cfg->pool_size,
			  .busy_timeout_ms = cfg->busy_timeout_ms},
		.pin_source = pin,
		.log = log,
	};
	return signer_serve(CHILD_SIGNER_FD_ENGINE, &o, em);
}

static enum p11ca_err run_engine(const struct p11cad_config *cfg, bool init,
				 const struct p11ca_logger *log, struct p11ca_errmsg *em)
{
	struct engine_fds fds = {
		.control = CHILD_ENGINE_FD_CONTROL,
		.rpc = init ? -1 : CHILD_ENGINE_FD_RPC,
		.signer = CHILD_ENGINE_FD_SIGNER,
		.stop = stop_fd_open(),
	};
	if (fds.stop < 0)
		return p11ca_fail(em, P11CA_E_INTERNAL, "signalfd: %s", strerror(errno));
	return engine_run(cfg, &fds, log, em);
}

static enum p11ca_err run_rpc(const struct p11cad_config *cfg, const struct p11ca_logger *log,
			      struct p11ca_errmsg *em)
{
	int listen_fds[P11CAD_LISTEN_MAX];
	for (size_t i = 0; i < cfg->n_rpc_listen; i++) {
		listen_fds[i] = CHILD_RPC_FD_LISTEN + (int)i;
		if (!fd_open(listen_fds[i]))
			return p11ca_fail(em, P11CA_E_USAGE,
					  "the rpc process lacks its listening socket %d: start "
					  "p11cad, not p11cad --child",
					  listen_fds[i]);
	}
	char ca[P11CAD_PATH_MAX], cert[P11CAD_PATH_MAX], key[P11CAD_PATH_MAX],
		roles[P11CAD_PATH_MAX];
	P11CA_GUARD(p11cad_config_path(cfg, cfg->client_ca, ca, em));
	P11CA_GUARD(p11cad_config_path(cfg, cfg->tls_cert, cert, em));
	P11CA_GUARD(p11cad_config_path(cfg, cfg->tls_key, key, em));
	P11CA_GUARD(p11cad_config_path(cfg, cfg->roles_file, roles, em));
	const char *inline_roles[2 * P11CAD_ROLES_MAX];
	for (size_t i = 0; i < cfg->n_roles; i++) {
		inline_roles[2 * i] = cfg->roles[i].fingerprint;
		inline_roles[2 * i + 1] = cfg->roles[i].role;
	}
	struct rpc_server_options o = {
		.listen_fds = listen_fds,
		.n_listen = cfg->n_rpc_listen,
		.engine_fd = CHILD_RPC_FD_ENGINE,
		.stop_fd = stop_fd_open(),
		.ca_file = ca,
		.cert_file = cert,
		.key_file = key,
		.roles_file = roles,
		.inline_roles = inline_roles,
		.n_inline_roles = cfg->n_roles,
		.max_connections = cfg->max_connections,
		.io_timeout_ms = cfg->io_timeout_ms,
		.log = log,
	};
	if (o.stop_fd < 0)
		return p11ca_fail(em, P11CA_E_INTERNAL, "signalfd: %s", strerror(errno));
	return rpc_server_run(&o, em);
}

int p11cad_child_main(const char *role, const char *config_path, bool init)
{
	struct p11cad_log log;
	p11cad_log_init(&log, role, LOG_INFO);
	struct p11ca_errmsg em = {0};
	enum p11ca_err err = P11CA_OK;
	struct p11cad_config *cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL) {
		err = p11ca_fail(&em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	if (p11cad_harden() != 0) {
		err = p11ca_fail(&em, P11CA_E_INTERNAL, "cannot disable core dumps: %s",
				 strerror(errno));
		goto out;
	}
	err = p11cad_config_load(config_path, cfg, &em);
	if (err != P11CA_OK)
		goto out;
	if (strcmp(role, "signer") == 0)
		err = run_signer(cfg, &log.logger, &em);
	else if (strcmp(role, "engine") == 0)
		err = run_engine(cfg, init, &log.logger, &em);
	else if (strcmp(role, "rpc") == 0)
		err = run_rpc(cfg, &log.logger, &em);
	else
		err = p11ca_fail(&em, P11CA_E_USAGE, "unknown child '%s'", role);
out:
	if (err != P11CA_OK)
		p11ca_logf(&log.logger, LOG_ERR, "%s", p11ca_errmsg_text(&em));
	else
		p11ca_logf(&log.logger, LOG_INFO, "stopped");
	free(cfg);
	return p11ca_err_sysexit(err);
}
