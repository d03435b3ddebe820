/*
 * One p11cad for p11ca-bench-rpc: bootstrapped with `p11cad init`, started the way
 * systemd's Type=notify starts it (readiness is its sd_notify READY=1, never a sleep), its
 * processes' CPU time read from /proc, and stopped with SIGTERM — or killed, whole
 * session at once, on every failure path.
 */
#include "tests/bench/rpc_bench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define DAEMON_INIT_TIMEOUT_S  300 /* init generates the management CA's key */
#define DAEMON_READY_TIMEOUT_S 120
#define DAEMON_STOP_TIMEOUT_S  60
#define DAEMON_LOG_TAIL	       40

struct rpc_daemon {
	pid_t pid;
	int pidfd; /* readable once p11cad exited; -1 when reaped */
	char server[32];
	char dir[PATH_MAX];
	char log[PATH_MAX + 16];
	char admin_cert[PATH_MAX + 32], admin_key[PATH_MAX + 32], ca_cert[PATH_MAX + 32];
};

/* ---- processes ---------------------------------------------------------------------- */

/* The last lines of a log, to stderr, so a failure explains itself. */
static void log_tail(const char *path, const char *prefix)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return;
	char *lines[DAEMON_LOG_TAIL] = {0};
	size_t n = 0;
	char buf[512];
	while (fgets(buf, sizeof(buf), f) != NULL) {
		free(lines[n % DAEMON_LOG_TAIL]);
		lines[n % DAEMON_LOG_TAIL] = strdup(buf);
		n++;
	}
	fclose(f);
	size_t first = n > DAEMON_LOG_TAIL ? n - DAEMON_LOG_TAIL : 0;
	for (size_t i = first; i < n; i++)
		if (lines[i % DAEMON_LOG_TAIL] != NULL)
			fprintf(stderr, "  %s| %s", prefix, lines[i % DAEMON_LOG_TAIL]);
	for (size_t i = 0; i < DAEMON_LOG_TAIL; i++)
		free(lines[i]);
}

/* environ without NOTIFY_SOCKET, plus `extra` when not NULL. The strings are borrowed. */
static char **env_with(const char *extra)
{
	size_t n = 0;
	while (environ[n] != NULL)
		n++;
	char **env = calloc(n + 2, sizeof(*env));
	if (env == NULL)
		return NULL;
	size_t j = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "NOTIFY_SOCKET=", 14) != 0)
			env[j++] = environ[i];
	if (extra != NULL)
		env[j++] = (char *)extra;
	return env;
}

/* Start argv[0] in a session of its own (so one kill reaches every process it forks),
 * stdin from /dev/null, stdout and stderr appended to `log`. */
static enum p11ca_err spawn(char *const argv[], const char *notify_env, const char *log, pid_t *pid,
			    int *pidfd, struct p11ca_errmsg *em)
{
	char **env = env_with(notify_env);
	if (env == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log, O_WRONLY | O_CREAT | O_APPEND,
					 0600);
	posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
	int rc = posix_spawn(pid, argv[0], &fa, &attr, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free(env);
	if (rc != 0)
		return p11ca_fail(em, P11CA_E_CONFIG, "cannot run %s: %s", argv[0], strerror(rc));
	*pidfd = pidfd_open(*pid, 0);
	if (*pidfd < 0) {
		int e = errno;
		kill(-*pid, SIGKILL);
		while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
			;
		return p11ca_fail(em, P11CA_E_IO, "pidfd_open: %s (Linux 5.3 or later needed)",
				  strerror(e));
	}
	return P11CA_OK;
}

/* Reap a process whose pidfd is readable; its exit status in the form lib.sh prints
 * (the code, or -N for signal N). */
static int reap(pid_t pid)
{
	int status = 0;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return INT_MIN;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

/* Wait until pidfd (and optionally fd) is readable, at most `seconds`. Returns a bit set:
 * 1 the process exited, 2 fd is readable; 0 on timeout. */
static int wait_fds(int pidfd, int fd, double seconds)
{
	double deadline = bench_now() + seconds;
	for (;;) {
		double left = deadline - bench_now();
		if (left <= 0)
			return 0;
		struct pollfd p[2] = {{.fd = pidfd, .events = POLLIN},
				      {.fd = fd, .events = POLLIN}};
		int rc = poll(p, fd >= 0 ? 2 : 1, (int)(left * 1000) + 1);
		if (rc < 0 && errno != EINTR)
			return 1; /* cannot wait: treat as exited, the caller reaps */
		if (rc > 0)
			return ((p[0].revents & POLLIN) ? 1 : 0) |
			       (fd >= 0 && p[1].revents ? 2 : 0);
	}
}

/* Calls fn(pid, arg) for every live process of session `sid` but its leader. */
static void session_each(pid_t sid, void (*fn)(pid_t pid, const char *stat, void *arg), void *arg)
{
	DIR *d = opendir("/proc");
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end != '\0' || pid <= 0)
			continue;
		char path[64], buf[1024];
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		/* "pid (comm) state ppid pgrp session ...": comm may hold anything but ')'. */
		char *rest = strrchr(buf, ')');
		char state;
		int ppid, pgrp, session;
		if (rest == NULL ||
		    sscanf(rest + 1, " %c %d %d %d", &state, &ppid, &pgrp, &session) != 4)
			continue;
		if (session == sid && pid != sid && state != 'Z')
			fn((pid_t)pid, rest + 1, arg);
	}
	closedir(d);
}

static void add_cpu(pid_t pid, const char *stat, void *arg)
{
	(void)pid;
	/* After "(comm)": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	 * cmajflt utime stime — utime and stime are the 12th and 13th fields. */
	unsigned long utime, stime;
	if (sscanf(stat, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) ==
	    2)
		*(double *)arg += (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void count_one(pid_t pid, const char *stat, void *arg)
{
	(void)pid, (void)stat;
	++*(unsigned *)arg;
}

static void kill_one(pid_t pid, const char *stat, void *arg)
{
	(void)stat, (void)arg;
	kill(pid, SIGKILL);
}

double rpc_daemon_cpu(const struct rpc_daemon *d)
{
	double cpu = 0;
	char path[64], buf[1024];
	/* The leader first (session_each skips it), then everything it forked. */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)d->pid);
	FILE *f = fopen(path, "r");
	if (f != NULL) {
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		char *rest = strrchr(buf, ')');
		if (rest != NULL)
			add_cpu(d->pid, rest + 1, &cpu);
	}
	session_each(d->pid, add_cpu, &cpu);
	return cpu;
}

/* ---- start and stop ---------------------------------------------------------------- */

static enum p11ca_err free_port(unsigned *port, struct p11ca_errmsg *em)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return p11ca_fail(em, P11CA_E_IO, "cannot find a free port on 127.0.0.1: %s",
				  strerror(e));
	}
	close(fd);
	*port = ntohs(sa.sin_port);
	return P11CA_OK;
}

static enum p11ca_err daemon_init(const struct rpc_daemon_config *cfg, struct rpc_daemon *d,
				  struct p11ca_errmsg *em)
{
	char conf[PATH_MAX + 16], state[PATH_MAX + 16], admin[PATH_MAX + 16], log[PATH_MAX + 16];
	snprintf(conf, sizeof(conf), "%s/p11cad.conf", cfg->dir);
	snprintf(state, sizeof(state), "%s/state", cfg->dir);
	snprintf(admin, sizeof(admin), "%s/admin", cfg->dir);
	snprintf(log, sizeof(log), "%s/init.log", cfg->dir);
	char *argv[] = {(char *)cfg->p11cad,
			"init",
			"--config",
			conf,
			"--module",
			(char *)cfg->module,
			"--token",
			(char *)cfg->token,
			"--pin-source",
			(char *)cfg->pin_file,
			"--state-dir",
			state,
			"--listen",
			d->server,
			"--admin-out",
			admin,
			NULL};
	pid_t pid;
	int pidfd;
	P11CA_GUARD(spawn(argv, NULL, log, &pid, &pidfd, em));
	int ready = wait_fds(pidfd, -1, DAEMON_INIT_TIMEOUT_S);
	if (ready == 0)
		kill(-pid, SIGKILL);
	int status = reap(pid);
	close(pidfd);
	if (ready == 0 || status != 0) {
		log_tail(log, "p11cad init");
		return p11ca_fail(em, P11CA_E_CONFIG,
				  ready == 0 ? "p11cad init did not finish within %d s (log above)"
					     : "p11cad init failed with status %d (log above)",
				  ready == 0 ? DAEMON_INIT_TIMEOUT_S : status);
	}
	snprintf(d->admin_cert, sizeof(d->admin_cert), "%s/admin.crt", admin);
	snprintf(d->admin_key, sizeof(d->admin_key), "%s/admin.key", admin);
	snprintf(d->ca_cert, sizeof(d->ca_cert), "%s/ca.crt", admin);
	return P11CA_OK;
}

/* Read sd_notify datagrams until READY=1; the last STATUS= is kept for messages. */
static enum p11ca_err await_ready(struct rpc_daemon *d, int sock, struct p11ca_errmsg *em)
{
	char status[256] = "none";
	double deadline = bench_now() + DAEMON_READY_TIMEOUT_S;
	for (;;) {
		int ready = wait_fds(d->pidfd, sock, deadline - bench_now());
		if (ready & 2) {
			char msg[4096];
			ssize_t n = recv(sock, msg, sizeof(msg) - 1, MSG_DONTWAIT);
			if (n <= 0)
				continue;
			msg[n] = '\0';
			for (char *save, *l = strtok_r(msg, "\n", &save); l != NULL;
			     l = strtok_r(NULL, "\n", &save)) {
				if (strcmp(l, "READY=1") == 0)
					return P11CA_OK;
				if (strncmp(l, "STATUS=", 7) == 0)
					snprintf(status, sizeof(status), "%s", l + 7);
			}
			continue;
		}
		/* The caller kills it, which prints the log. */
		if (ready == 0)
			return p11ca_fail(
				em, P11CA_E_TIMEOUT,
				"p11cad sent no READY=1 within %d s (last status: %s; log "
				"above)",
				DAEMON_READY_TIMEOUT_S, status);
		return p11ca_fail(em, P11CA_E_IO,
				  "p11cad exited before it was ready (last status: %s; log above)",
				  status);
	}
}

enum p11ca_err rpc_daemon_start(const struct rpc_daemon_config *cfg, struct rpc_daemon **out,
				struct p11ca_errmsg *em)
{
	*out = NULL;
	int sock = -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char notify_env[sizeof(sa.sun_path) + 16];
	struct rpc_daemon *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	d->pidfd = -1;
	unsigned port = 0;
	snprintf(d->dir, sizeof(d->dir), "%s", cfg->dir);
	snprintf(d->log, sizeof(d->log), "%s/p11cad.log", cfg->dir);
	enum p11ca_err err = free_port(&port, em);
	if (err != P11CA_OK)
		goto out;
	snprintf(d->server, sizeof(d->server), "127.0.0.1:%u", port);
	err = daemon_init(cfg, d, em);
	if (err != P11CA_OK)
		goto out;

	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", cfg->dir) >=
	    sizeof(sa.sun_path)) {
		err = p11ca_fail(em, P11CA_E_IO, "%s: path too long for a socket; set TMPDIR",
				 cfg->dir);
		goto out;
	}
	sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || bind(sock, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		err = p11ca_fail(em, P11CA_E_IO, "cannot bind %s: %s", sa.sun_path,
				 strerror(errno));
		goto out;
	}
	snprintf(notify_env, sizeof(notify_env), "NOTIFY_SOCKET=%s", sa.sun_path);
	char conf[PATH_MAX + 16];
	snprintf(conf, sizeof(conf), "%s/p11cad.conf", cfg->dir);
	char *argv[] = {(char *)cfg->p11cad, "--config", conf, NULL};
	err = spawn(argv, notify_env, d->log, &d->pid, &d->pidfd, em);
	if (err == P11CA_OK)
		err = await_ready(d, sock, em);
out:
	if (sock >= 0) {
		close(sock);
		unlink(sa.sun_path);
	}
	if (err != P11CA_OK)
		rpc_daemon_kill(&d);
	*out = d;
	return err;
}

const char *rpc_daemon_server(const struct rpc_daemon *d)
{
	return d->server;
}
const char *rpc_daemon_admin_cert(const struct rpc_daemon *d)
{
	return d->admin_cert;
}
const char *rpc_daemon_admin_key(const struct rpc_daemon *d)
{
	return d->admin_key;
}
const char *rpc_daemon_ca_cert(const struct rpc_daemon *d)
{
	return d->ca_cert;
}

enum p11ca_err rpc_daemon_stop(struct rpc_daemon **pd, struct p11ca_errmsg *em)
{
	struct rpc_daemon *d = *pd;
	enum p11ca_err err = P11CA_OK;
	kill(d->pid, SIGTERM);
	if (wait_fds(d->pidfd, -1, DAEMON_STOP_TIMEOUT_S) == 0) {
		err = p11ca_fail(em, P11CA_E_TIMEOUT,
				 "p11cad did not exit within %d s of SIGTERM; killed (log above)",
				 DAEMON_STOP_TIMEOUT_S);
		goto out;
	}
	/* Exited but not reaped: its pid, and so its session id, cannot be reused yet. */
	unsigned left = 0;
	session_each(d->pid, count_one, &left);
	int status = reap(d->pid);
	close(d->pidfd);
	d->pidfd = -1;
	if (left > 0) {
		session_each(d->pid, kill_one, NULL);
		err = p11ca_fail(em, P11CA_E_IO,
				 "%u process(es) of p11cad survived it after SIGTERM; killed",
				 left);
	} else if (status != 0) {
		log_tail(d->log, "p11cad");
		err = p11ca_fail(em, P11CA_E_IO,
				 "p11cad exited with status %d after SIGTERM, "
				 "not 0 (log above)",
				 status);
	}
out:
	rpc_daemon_kill(pd);
	return err;
}

void rpc_daemon_kill(struct rpc_daemon **pd)
{
	if (pd == NULL || *pd == NULL)
		return;
	struct rpc_daemon *d = *pd;
	if (d->pidfd >= 0) {
		/* Still running means something failed: its log says what it saw. */
		log_tail(d->log, "p11cad");
		/* The leader is not reaped yet, so the session id still names only it and its
		 * descendants. */
		kill(-d->pid, SIGKILL);
		session_each(d->pid, kill_one, NULL);
		(void)reap(d->pid);
		close(d->pidfd);
	}
	free(d);
	*pd = NULL;
}
