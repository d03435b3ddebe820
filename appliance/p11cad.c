/*
 * p11cad — the p11ca appliance daemon.
 *
 *   p11cad [--config FILE]                 run in the foreground (systemd: Type=notify)
 *   p11cad --check-config [--config FILE]  validate and exit (0, or 78 with FILE:LINE)
 *   p11cad init [--config FILE] [options]  first-time setup (docs/appliance.md)
 *   p11cad --child ROLE --config FILE      internal: how the parent starts its children
 *
 * Exit statuses follow sysexits.h: 64 usage, 69 unavailable, 70 internal, 74 I/O,
 * 77 permission (also a missing PIN), 78 configuration.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/version.h"
#include "appliance/child.h"
#include "appliance/config.h"
#include "appliance/init.h"
#include "appliance/listen.h"
#include "appliance/parent.h"

#define DEFAULT_CONFIG "/etc/p11ca/p11cad.conf"
#define P11CAD_VERSION P11CA_VERSION

static void usage(FILE *f)
{
	fprintf(f, "usage: p11cad [--config FILE]            run the daemon in the foreground\n"
		   "       p11cad --check-config [--config FILE]\n"
		   "       p11cad init [--config FILE] [--module PATH] [--token LABEL]\n"
		   "                   [--pin-source FILE] [--state-dir DIR] [--listen HOST:PORT]\n"
		   "                   [--http HOST:PORT] [--admin-out DIR]\n"
		   "       p11cad --help | --version\n"
		   "The configuration defaults to " DEFAULT_CONFIG ". See p11cad(8).\n");
}

/* Files the configuration names that must exist before the daemon can serve. */
static int check_files(const struct p11cad_config *cfg, struct p11ca_errmsg *em)
{
	if (access(cfg->module, R_OK) != 0) {
		(void)p11ca_fail(em, P11CA_E_CONFIG, "%s: [hsm] module %s: %s", cfg->path,
				 cfg->module, strerror(errno));
		return 78;
	}
	const char *need[] = {cfg->tls_cert, cfg->tls_key, cfg->client_ca};
	for (size_t i = 0; i < 3; i++) {
		char path[P11CAD_PATH_MAX];
		if (p11cad_config_path(cfg, need[i], path, em) != P11CA_OK)
			return 78;
		if (access(path, R_OK) != 0) {
			(void)p11ca_fail(em, P11CA_E_CONFIG, "%s: %s: %s%s", cfg->path, path,
					 strerror(errno),
					 errno == ENOENT ? " (run p11cad init first)" : "");
			return 78;
		}
	}
	const char *pin = cfg->pin_source;
	if (pin[0] != '\0' && strncmp(pin, "credential:", 11) != 0) {
		char path[P11CAD_PATH_MAX];
		if (p11cad_config_path(cfg, strncmp(pin, "file:", 5) == 0 ? pin + 5 : pin, path,
				       em) != P11CA_OK)
			return 78;
		if (access(path, R_OK) != 0) {
			(void)p11ca_fail(em, P11CA_E_CONFIG, "%s: [hsm] pin_source %s: %s",
					 cfg->path, path, strerror(errno));
			return 78;
		}
	}
	return 0;
}

static int run(const char *config_path, bool check_only, const struct p11ca_logger *log)
{
	struct p11ca_errmsg em = {0};
	struct p11cad_config *cfg = calloc(1, sizeof(*cfg));
	struct parent p;
	int listen_fds[P11CAD_LISTEN_MAX];
	size_t n_listen = 0;
	int stop_fd = -1, rc = 0;
	char config_abs[PATH_MAX];
	parent_init(&p);
	if (cfg == NULL) {
		rc = 71;
		(void)p11ca_fail(&em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	enum p11ca_err err = p11cad_config_load(config_path, cfg, &em);
	if (err != P11CA_OK) {
		rc = p11ca_err_sysexit(err);
		goto out;
	}
	rc = check_files(cfg, &em);
	if (rc != 0 || check_only)
		goto out;
	if (realpath(config_path, config_abs) == NULL) {
		rc = 74;
		(void)p11ca_fail(&em, P11CA_E_IO, "%s: %s", config_path, strerror(errno));
		goto out;
	}

	/* Signals become a descriptor; blocked before any thread exists so every thread
	 * inherits the mask (the children unblock them after fork). */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	stop_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (stop_fd < 0) {
		rc = 71;
		(void)p11ca_fail(&em, P11CA_E_INTERNAL, "signalfd: %s", strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < cfg->n_rpc_listen; i++) {
		struct p11cad_listen_addr a;
		err = p11cad_listen_parse(cfg->rpc_listen[i], &a, &em);
		if (err == P11CA_OK)
			err = p11cad_listen_bind(&a, &listen_fds[n_listen], &em);
		if (err != P11CA_OK) {
			rc = p11ca_err_sysexit(err);
			goto out;
		}
		n_listen++;
		p11ca_logf(log, LOG_INFO, "listening on %s", cfg->rpc_listen[i]);
	}
	p.cfg = cfg;
	p.config_path = config_abs;
	p.listen_fds = listen_fds;
	p.n_listen = n_listen;
	p.log = log;
	err = parent_run(&p, stop_fd, &em);
	rc = p11ca_err_sysexit(err);
	if (err == P11CA_OK)
		p11ca_logf(log, LOG_NOTICE, "stopped");
out:
	if (rc != 0)
		p11ca_logf(log, LOG_ERR, "%s", p11ca_errmsg_text(&em));
	else if (check_only)
		printf("%s: configuration OK\n", config_path);
	parent_destroy(&p);
	for (size_t i = 0; i < n_listen; i++)
		close(listen_fds[i]);
	if (stop_fd >= 0)
		close(stop_fd);
	free(cfg);
	return rc;
}

enum {
	OPT_CONFIG = 'c',
	OPT_HELP = 'h',
	OPT_VERSION = 'V',
	OPT_CHECK = 256,
	OPT_CHILD,
	OPT_INIT_ENGINE,
	OPT_MODULE,
	OPT_TOKEN,
	OPT_PIN,
	OPT_STATE,
	OPT_LISTEN,
	OPT_HTTP,
	OPT_ADMIN
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, OPT_CONFIG},
		{"check-config", no_argument, NULL, OPT_CHECK},
		{"help", no_argument, NULL, OPT_HELP},
		{"version", no_argument, NULL, OPT_VERSION},
		{"child", required_argument, NULL, OPT_CHILD},
		{"init", no_argument, NULL, OPT_INIT_ENGINE},
		{"module", required_argument, NULL, OPT_MODULE},
		{"token", required_argument, NULL, OPT_TOKEN},
		{"pin-source", required_argument, NULL, OPT_PIN},
		{"state-dir", required_argument, NULL, OPT_STATE},
		{"listen", required_argument, NULL, OPT_LISTEN},
		{"http", required_argument, NULL, OPT_HTTP},
		{"admin-out", required_argument, NULL, OPT_ADMIN},
		{NULL, 0, NULL, 0},
	};
	const char *config = DEFAULT_CONFIG, *child = NULL;
	bool check = false, init_engine = false, init_opts = false;
	struct p11cad_init_args ia = {0};
	int c;
	while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (c) {
		case OPT_CONFIG:
			config = optarg;
			break;
		case OPT_CHECK:
			check = true;
			break;
		case OPT_HELP:
			usage(stdout);
			return 0;
		case OPT_VERSION:
			printf("p11cad " P11CAD_VERSION "\n");
			return 0;
		case OPT_CHILD:
			child = optarg;
			break;
		case OPT_INIT_ENGINE:
			init_engine = true;
			break;
		case OPT_MODULE:
			ia.opts.module = optarg;
			init_opts = true;
			break;
		case OPT_TOKEN:
			ia.opts.token = optarg;
			init_opts = true;
			break;
		case OPT_PIN:
			ia.opts.pin_source = optarg;
			init_opts = true;
			break;
		case OPT_STATE:
			ia.opts.state_dir = optarg;
			init_opts = true;
			break;
		case OPT_LISTEN:
			ia.opts.listen = optarg;
			init_opts = true;
			break;
		case OPT_HTTP:
			ia.opts.http = optarg;
			init_opts = true;
			break;
		case OPT_ADMIN:
			ia.admin_out = optarg;
			init_opts = true;
			break;
		default:
			usage(stderr);
			return 64;
		}
	}
	bool init = optind < argc && strcmp(argv[optind], "init") == 0;
	if (init)
		optind++;
	if (optind != argc) {
		fprintf(stderr, "p11cad: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 64;
	}
	if ((init_opts && !init) || (init && (check || child != NULL))) {
		fprintf(stderr, "p11cad: these options go together only with init\n");
		usage(stderr);
		return 64;
	}
	if (child != NULL)
		return p11cad_child_main(child, config, init_engine);

	/* Every p11cad process is non-dumpable: the parent holds no secret, but a core of it
	 * would still show paths and state an attacker could use. A dead peer must not kill
	 * a writer (EPIPE instead); SIGHUP does not reload: restart to apply changes. */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	if (p11cad_harden() != 0) {
		fprintf(stderr, "p11cad: cannot disable core dumps: %s\n", strerror(errno));
		return 71;
	}
	struct p11cad_log log;
	p11cad_log_init(&log, init ? "init" : "parent", LOG_INFO);
	if (init) {
		ia.config_path = config;
		return p11cad_init_main(&ia, &log.logger, stdout);
	}
	return run(config, check, &log.logger);
}
