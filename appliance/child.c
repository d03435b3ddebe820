#include "appliance/child.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

/* ---- the rpc process's sandbox ------------------------------------------------------ */

#define EMPTY_DIR    "empty" /* under state_dir */
#define SANDBOX_CAPS ((1u << CAP_SYS_CHROOT) | (1u << CAP_SETUID) | (1u << CAP_SETGID))

struct rpc_sandbox {
	const struct p11cad_config *cfg;
	const struct p11ca_logger *log;
};

/* The effective capability set's low word (every capability used here is below 32), read
 * with the raw system call: libcap is not worth a dependency for one word. */
static int caps_effective(uint32_t *eff, uint32_t *perm)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) != 0)
		return -1;
	*eff = d[0].effective | d[1].effective;
	*perm = d[0].permitted | d[1].permitted;
	return 0;
}

/* A non-root user keeps its capabilities across setresuid (only a change away from uid 0
 * clears them): clear them all explicitly. */
static int caps_clear(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	memset(d, 0, sizeof(d));
	return (int)syscall(SYS_capset, &h, d);
}

/* Open `path` as the chroot: created 0555 if missing, then it must be a real directory (no
 * symlink), owned by root or by this process's user, writable by nobody and empty — a
 * directory the rpc user could write to, or that holds anything, would give it back what
 * the chroot takes. Checked on the open descriptor, which the chroot then uses. */
static enum p11ca_err empty_dir_open(const char *path, int *out, struct p11ca_errmsg *em)
{
	enum p11ca_err err = P11CA_OK;
	DIR *d = NULL;
	struct stat st;
	int fd = -1;

	if (mkdir(path, 0555) == 0) {
		if (chmod(path, 0555) != 0) /* the umask may have taken more */
			return p11ca_fail(em, P11CA_E_IO, "rpc sandbox: chmod %s: %s", path,
					  strerror(errno));
	} else if (errno != EEXIST) {
		return p11ca_fail(em, P11CA_E_IO,
				  "rpc sandbox: cannot create the empty directory %s: %s (does "
				  "state_dir exist? p11cad init creates it)",
				  path, strerror(errno));
	}
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		err = p11ca_fail(em, P11CA_E_IO, "rpc sandbox: cannot open %s: %s", path,
				 strerror(errno));
		goto out;
	}
	if ((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & 0222) != 0) {
		err = p11ca_fail(em, P11CA_E_CONFIG,
				 "rpc sandbox: %s must be owned by root and writable by nobody "
				 "(it is uid %u, mode %04o): chown root: %s && chmod 0555 %s",
				 path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), path,
				 path);
		goto out;
	}
	int dup_fd = dup(fd); /* fdopendir takes its descriptor; keep fd for fchdir */
	d = dup_fd < 0 ? NULL : fdopendir(dup_fd);
	if (d == NULL) {
		if (dup_fd >= 0)
			close(dup_fd);
		err = p11ca_fail(em, P11CA_E_IO, "rpc sandbox: cannot list %s: %s", path,
				 strerror(errno));
		goto out;
	}
	for (const struct dirent *e; (e = readdir(d)) != NULL;) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			err = p11ca_fail(
				em, P11CA_E_CONFIG,
				"rpc sandbox: %s must be empty but holds '%s': remove what "
				"is in it",
				path, e->d_name);
			goto out;
		}
	}
	*out = fd;
	fd = -1;
out:
	if (d != NULL)
		closedir(d);
	if (fd >= 0)
		close(fd);
	return err;
}

/* Chroot into the empty directory and become uid:gid for good. */
static enum p11ca_err drop(const struct rpc_sandbox *sb, uid_t uid, gid_t gid, const char *dir,
			   struct p11ca_errmsg *em)
{
	int fd = -1;
	uid_t r, e, s;
	gid_t rg, eg, sg;
	uint32_t eff = 0, perm = 0;

	P11CA_GUARD(empty_dir_open(dir, &fd, em));
	int rc = fchdir(fd);
	close(fd);
	if (rc != 0 || chroot(".") != 0 || chdir("/") != 0)
		return p11ca_fail(em, P11CA_E_PERMISSION, "rpc sandbox: chroot %s: %s", dir,
				  strerror(errno));
	if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
	    setresuid(uid, uid, uid) != 0 || caps_clear() != 0)
		return p11ca_fail(em, P11CA_E_PERMISSION, "rpc sandbox: cannot become %s: %s",
				  sb->cfg->rpc_user, strerror(errno));
	/* Prove it cannot come back. */
	if (setuid(0) == 0 || setgid(0) == 0 || getresuid(&r, &e, &s) != 0 ||
	    getresgid(&rg, &eg, &sg) != 0 || r != uid || e != uid || s != uid || rg != gid ||
	    eg != gid || sg != gid || caps_effective(&eff, &perm) != 0 || eff != 0 || perm != 0)
		return p11ca_fail(em, P11CA_E_PERMISSION,
				  "rpc sandbox: the switch to %s did not hold (it could regain "
				  "root); refusing to serve",
				  sb->cfg->rpc_user);
	/* A change of user resets dumpable to fs.suid_dumpable, which may be 2. */
	if (p11cad_harden() != 0)
		return p11ca_fail(em, P11CA_E_INTERNAL,
				  "rpc sandbox: cannot disable core dumps: %s", strerror(errno));
	return P11CA_OK;
}

/* The rpc_server_options.sandbox hook: the rpc process has read its files, listens on
 * descriptors it was given and talks to the engine over one: it needs no filesystem and no
 * user of its own. */
static enum p11ca_err rpc_sandbox(void *arg, struct p11ca_errmsg *em)
{
	const struct rpc_sandbox *sb = arg;
	char dir[P11CAD_PATH_MAX];
	uint32_t eff = 0, perm = 0;

	/* The user database is outside the chroot: resolve first. */
	errno = 0;
	const struct passwd *found = getpwnam(sb->cfg->rpc_user);
	if (found == NULL || found->pw_uid == 0 || found->pw_gid == 0)
		return p11ca_fail(em, P11CA_E_CONFIG,
				  "rpc sandbox: [rpc] user '%s' %s; set it to an unprivileged user",
				  sb->cfg->rpc_user, found == NULL ? "does not exist" : "is root");
	uid_t uid = found->pw_uid;
	gid_t gid = found->pw_gid;
	if (caps_effective(&eff, &perm) != 0)
		return p11ca_fail(em, P11CA_E_INTERNAL, "rpc sandbox: capget: %s", strerror(errno));
	bool able = (eff & SANDBOX_CAPS) == SANDBOX_CAPS;
	if (able) {
		P11CA_GUARD(p11cad_config_path(sb->cfg, EMPTY_DIR, dir, em));
		P11CA_GUARD(drop(sb, uid, gid, dir, em));
	} else if (geteuid() == 0) {
		/* Root that cannot drop would serve the network as root with the whole disk. */
		return p11ca_fail(em, P11CA_E_PERMISSION,
				  "rpc sandbox: running as root without CAP_SYS_CHROOT, CAP_SETUID "
				  "and CAP_SETGID, so the rpc process cannot drop root; allow them "
				  "(systemd: CapabilityBoundingSet=) or run p11cad as a non-root "
				  "user");
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return p11ca_fail(em, P11CA_E_INTERNAL, "rpc sandbox: PR_SET_NO_NEW_PRIVS: %s",
				  strerror(errno));
	if (able)
		p11ca_logf(sb->log, LOG_INFO, "rpc: sandboxed: chroot %s, uid %u (%s)", dir,
			   (unsigned)uid, sb->cfg->rpc_user);
	else
		p11ca_logf(sb->log, LOG_NOTICE,
			   "rpc: not sandboxed: running as uid %u without CAP_SYS_CHROOT, "
			   "CAP_SETUID and CAP_SETGID, so the rpc process keeps this user and sees "
			   "the whole filesystem (only no-new-privileges is set); run p11cad as "
			   "root or give it those capabilities to chroot it and run it as %s",
			   (unsigned)geteuid(), sb->cfg->rpc_user);
	return P11CA_OK;
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
	struct rpc_sandbox sb = {.cfg = cfg, .log = log};
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
		.sandbox = rpc_sandbox,
		.sandbox_arg = &sb,
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
