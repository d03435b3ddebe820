#include "appliance/supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Between fork and exec only async-signal-safe calls: the parent has threads (the control
 * link's), and one of them may hold a lock the child would otherwise wait on forever. */
static __attribute__((noreturn)) void child_exec(const struct sup_child *c, pid_t parent)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Die with the parent, and close the race where it died before this line. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
		_exit(1);
	int tmp[SUP_MAX_FDS];
	int above = SUP_FIRST_FD + (int)c->n_fds;
	/* Move every fd out of the target range first, so dup2 never clobbers one not yet
	 * moved (fds[1] may be 3 already). */
	for (size_t i = 0; i < c->n_fds; i++) {
		tmp[i] = fcntl(c->fds[i], F_DUPFD, above);
		if (tmp[i] < 0)
			_exit(126);
	}
	for (size_t i = 0; i < c->n_fds; i++)
		if (dup2(tmp[i], SUP_FIRST_FD + (int)i) < 0)
			_exit(126);
	if (syscall(SYS_close_range, (unsigned)above, ~0U, 0) != 0)
		_exit(126);
	execv(c->path != NULL ? c->path : c->argv[0], c->argv);
	_exit(127);
}

enum p11ca_err sup_spawn(struct sup_child *c, struct p11ca_errmsg *em)
{
	if (c == NULL || c->argv == NULL || c->argv[0] == NULL || c->n_fds > SUP_MAX_FDS)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "sup_spawn: bad child");
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return p11ca_fail(em, P11CA_E_INTERNAL, "cannot start the %s process: fork: %s",
				  c->name, strerror(errno));
	if (pid == 0)
		child_exec(c, parent);

	for (size_t i = 0; i < c->n_fds; i++) {
		if ((c->keep_mask & (1u << i)) == 0 && c->fds[i] >= 0) {
			close(c->fds[i]);
			c->fds[i] = -1;
		}
	}
	c->pid = pid;
	/* A pid cannot be reused before we reap it, so the pidfd names this child. */
	c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (c->pidfd < 0) {
		int e = errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		c->pid = 0;
		return p11ca_fail(em, P11CA_E_INTERNAL, "pidfd_open for the %s process: %s",
				  c->name, strerror(e));
	}
	return P11CA_OK;
}

int sup_wait(struct sup_child *c, int timeout_ms, int *status)
{
	if (c->pid <= 0)
		return 0;
	struct pollfd pfd = {.fd = c->pidfd, .events = POLLIN};
	int r;
	do
		r = poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return 0;
	int st = 0;
	while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR)
		;
	close(c->pidfd);
	c->pidfd = -1;
	c->pid = 0;
	if (status != NULL)
		*status = st;
	return 1;
}

void sup_status_text(int status, char *out, size_t cap)
{
	if (status < 0)
		snprintf(out, cap, "could not be started");
	else if (WIFEXITED(status))
		snprintf(out, cap, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, cap, "was killed by signal %d (%s)%s", WTERMSIG(status),
			 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(out, cap, "ended with wait status 0x%x", (unsigned)status);
}

void sup_stop_all(struct sup_child *c, size_t n, unsigned grace_ms, const struct p11ca_logger *log)
{
	char text[96];
	for (size_t k = n; k-- > 0;) {
		struct sup_child *ch = &c[k];
		if (ch->pid <= 0)
			continue;
		int st = 0;
		if (ch->term_on_stop)
			kill(ch->pid, SIGTERM);
		int exited = sup_wait(ch, (int)grace_ms, &st);
		if (!exited) {
			if (!ch->term_on_stop)
				kill(ch->pid, SIGTERM);
			exited = sup_wait(ch, (int)grace_ms, &st);
		}
		if (!exited) {
			p11ca_logf(log, LOG_WARNING, "%s did not stop in time; killing it",
				   ch->name);
			kill(ch->pid, SIGKILL);
			(void)sup_wait(ch, -1, &st);
		}
		sup_status_text(st, text, sizeof(text));
		p11ca_logf(log, LOG_INFO, "%s stopped (%s)", ch->name, text);
	}
}

unsigned sup_backoff_next(struct sup_backoff *b, uint64_t uptime_ms)
{
	if (b->next_ms == 0 || uptime_ms >= b->reset_after_ms)
		b->next_ms = b->min_ms;
	unsigned d = b->next_ms;
	b->next_ms = d > b->max_ms / 2 ? b->max_ms : d * 2;
	return d;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Block until stop_fd is readable or a child exits: -1 stop, else the child's index. */
static int watch(const struct sup_config *cfg, struct sup_child *c, size_t n, int *status)
{
	for (;;) {
		struct pollfd pfd[1 + SUP_MAX_CHILDREN];
		pfd[0] = (struct pollfd){.fd = cfg->stop_fd, .events = POLLIN};
		for (size_t i = 0; i < n; i++)
			pfd[1 + i] = (struct pollfd){.fd = c[i].pidfd, .events = POLLIN};
		if (poll(pfd, 1 + n, -1) < 0) {
			if (errno == EINTR)
				continue;
			/* Anything else (ENOMEM, EINVAL) would repeat at once: stop cleanly
			 * rather than spin. */
			p11ca_logf(cfg->log, LOG_ERR, "supervisor: poll failed (%s); stopping",
				   strerror(errno));
			return -1;
		}
		if (pfd[0].revents != 0)
			return -1;
		for (size_t i = 0; i < n; i++)
			if (pfd[1 + i].revents != 0 && sup_wait(&c[i], 0, status) == 1)
				return (int)i;
	}
}

/* Sleep delay_ms unless a stop comes first: 1 when it did. */
static int stop_within(int stop_fd, unsigned delay_ms)
{
	uint64_t end = now_ms() + delay_ms;
	for (;;) {
		uint64_t now = now_ms();
		if (now >= end)
			return 0;
		struct pollfd pfd = {.fd = stop_fd, .events = POLLIN};
		int r = poll(&pfd, 1, (int)(end - now));
		if (r > 0 || (r < 0 && errno != EINTR))
			return 1; /* a stop, or a poll that cannot wait: do not spin */
	}
}

enum p11ca_err sup_run(const struct sup_config *cfg, const struct sup_ops *ops,
		       struct p11ca_errmsg *em)
{
	struct sup_backoff backoff = cfg->backoff;
	char text[96];
	for (;;) {
		struct sup_child c[SUP_MAX_CHILDREN];
		memset(c, 0, sizeof(c));
		for (size_t i = 0; i < SUP_MAX_CHILDREN; i++)
			c[i].pidfd = -1;
		size_t n = 0;
		P11CA_GUARD(ops->prepare(ops->arg, c, &n, em));

		const char *dead = NULL;
		int status = -1;
		for (size_t i = 0; i < n && dead == NULL; i++) {
			struct p11ca_errmsg sem = {0};
			if (sup_spawn(&c[i], &sem) != P11CA_OK) {
				p11ca_logf(cfg->log, LOG_ERR, "%s", p11ca_errmsg_text(&sem));
				dead = c[i].name;
			}
		}
		/* fds of children that never started are still ours. */
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < c[i].n_fds; j++)
				if (c[i].pid == 0 && (c[i].keep_mask & (1u << j)) == 0 &&
				    c[i].fds[j] >= 0)
					close(c[i].fds[j]);
		if (dead == NULL && ops->started != NULL) {
			struct p11ca_errmsg sem = {0};
			if (ops->started(ops->arg, c, n, &sem) != P11CA_OK) {
				p11ca_logf(cfg->log, LOG_ERR, "%s", p11ca_errmsg_text(&sem));
				dead = "parent";
			}
		}
		uint64_t t0 = now_ms();
		int stop = 0;
		if (dead == NULL) {
			int i = watch(cfg, c, n, &status);
			if (i < 0) {
				stop = 1;
				if (ops->stopping != NULL)
					ops->stopping(ops->arg);
			} else {
				dead = c[i].name;
				sup_status_text(status, text, sizeof(text));
				p11ca_logf(cfg->log, LOG_ERR, "the %s process %s", dead, text);
			}
		}
		sup_stop_all(c, n, cfg->grace_ms, cfg->log);
		if (ops->stopped != NULL)
			ops->stopped(ops->arg);
		if (stop)
			return P11CA_OK;

		unsigned delay = sup_backoff_next(&backoff, now_ms() - t0);
		if (ops->crashed != NULL && !ops->crashed(ops->arg, dead, status, delay))
			return p11ca_fail(em, P11CA_E_IO, "the %s process stopped unexpectedly",
					  dead);
		p11ca_logf(cfg->log, LOG_NOTICE, "restarting all processes in %u ms", delay);
		if (stop_within(cfg->stop_fd, delay)) {
			if (ops->stopping != NULL)
				ops->stopping(ops->arg);
			return P11CA_OK;
		}
	}
}
