/*
 * SoftHSM2 test fixture (see fixture.h). softhsm2-util runs through fork + execvp with an
 * argument vector, so labels and PINs never pass through a shell.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/softhsm/fixture.h"

#define DEFAULT_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"

static int complain(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print what failed; returns -1 so that `return complain(...)` reads as a failure. */
static int complain(const char *fmt, ...)
{
	va_list ap;

	fputs("softhsm fixture: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

/* snprintf that treats truncation as the error it is. */
static int path_join(char *buf, size_t size, const char *a, const char *b)
{
	int n = snprintf(buf, size, "%s/%s", a, b);

	if (n < 0 || (size_t)n >= size)
		return complain("path too long: %s/%s", a, b);
	return 0;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	if (!f)
		return complain("cannot create %s: %s", path, strerror(errno));
	fputs(text, f);
	if (fclose(f) != 0)
		return complain("cannot write %s: %s", path, strerror(errno));
	return 0;
}

/* Run argv[0] (looked up in PATH) with stdout discarded; 0 when it exits with status 0. */
static int run(char *const argv[])
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return complain("fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0)
			dup2(null, STDOUT_FILENO);
		execvp(argv[0], argv);
		fprintf(stderr, "softhsm fixture: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return complain("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return complain("%s %s failed (status 0x%x)", argv[0], argv[1] ? argv[1] : "",
				status);
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	if (remove(path) != 0)
		fprintf(stderr, "softhsm fixture: cannot remove %s: %s\n", path, strerror(errno));
	return 0;
}

int softhsm_fixture_setup(struct softhsm_fixture *fx, const char *label, const char *so_pin,
			  const char *user_pin)
{
	const char *tmp = getenv("TMPDIR");
	char conf_text[4096 + 128];
	int n;

	memset(fx, 0, sizeof(*fx));
	if (!tmp || !tmp[0])
		tmp = "/tmp";
	if (path_join(fx->dir, sizeof(fx->dir), tmp, "softhsm.XXXXXX") != 0)
		return -1;
	if (!mkdtemp(fx->dir)) {
		complain("mkdtemp %s: %s", fx->dir, strerror(errno));
		fx->dir[0] = '\0';
		return -1;
	}
	if (path_join(fx->conf, sizeof(fx->conf), fx->dir, "softhsm2.conf") != 0 ||
	    path_join(fx->tokendir, sizeof(fx->tokendir), fx->dir, "tokens") != 0)
		goto fail;
	if (mkdir(fx->tokendir, 0700) != 0) {
		complain("mkdir %s: %s", fx->tokendir, strerror(errno));
		goto fail;
	}
	n = snprintf(conf_text, sizeof(conf_text),
		     "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
		     fx->tokendir);
	if (n < 0 || (size_t)n >= sizeof(conf_text) || write_file(fx->conf, conf_text) != 0)
		goto fail;
	if (setenv("SOFTHSM2_CONF", fx->conf, 1) != 0) {
		complain("setenv SOFTHSM2_CONF: %s", strerror(errno));
		goto fail;
	}
	if (softhsm_fixture_add_token(fx, label, so_pin, user_pin) != 0)
		goto fail;
	return 0;
fail:
	softhsm_fixture_teardown(fx);
	return -1;
}

int softhsm_fixture_add_token(struct softhsm_fixture *fx, const char *label, const char *so_pin,
			      const char *user_pin)
{
	char *argv[] = {"softhsm2-util", "--init-token", "--free", "--label",	     (char *)label,
			"--so-pin",	 (char *)so_pin, "--pin",  (char *)user_pin, NULL};

	if (!fx->conf[0])
		return complain("add_token before setup");
	/* softhsm2-util finds the token directory through SOFTHSM2_CONF. */
	if (setenv("SOFTHSM2_CONF", fx->conf, 1) != 0)
		return complain("setenv SOFTHSM2_CONF: %s", strerror(errno));
	if (run(argv) != 0)
		return complain("cannot initialise token '%s' in %s", label, fx->tokendir);
	return 0;
}

void softhsm_fixture_teardown(struct softhsm_fixture *fx)
{
	if (fx->dir[0])
		nftw(fx->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	unsetenv("SOFTHSM2_CONF");
	memset(fx, 0, sizeof(*fx));
}

const char *softhsm_module_path(void)
{
	const char *p = getenv("P11CA_SOFTHSM_MODULE");

	return p && p[0] ? p : DEFAULT_SOFTHSM_MODULE;
}

const char *p11fault_module_path(void)
{
	static char path[4096];
	const char *out = getenv("OUT");
	char cwd[4096];
	int n;

	if (!out || !out[0])
		out = "build";
	if (out[0] == '/') {
		n = snprintf(path, sizeof(path), "%s/lib/libp11fault.so", out);
	} else {
		if (!getcwd(cwd, sizeof(cwd)))
			return NULL;
		n = snprintf(path, sizeof(path), "%s/%s/lib/libp11fault.so", cwd, out);
	}
	if (n < 0 || (size_t)n >= sizeof(path))
		return NULL;
	return path;
}

static int timespec_after(struct timespec a, struct timespec b)
{
	return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec);
}

/* An mtime later than the current file's: the clock, or the old mtime plus 1 ms when the
 * clock has not moved on (coarse file-system timestamps, or two writes in one tick). */
static struct timespec next_mtime(const char *path)
{
	struct timespec t;
	struct stat old;

	clock_gettime(CLOCK_REALTIME, &t);
	if (stat(path, &old) == 0 && !timespec_after(t, old.st_mtim)) {
		t = old.st_mtim;
		t.tv_nsec += 1000000;
		if (t.tv_nsec >= 1000000000) {
			t.tv_sec++;
			t.tv_nsec -= 1000000000;
		}
	}
	return t;
}

int p11fault_control_write(const char *path, const char *text)
{
	static unsigned long seq;
	size_t len = strlen(text), done = 0;
	struct timespec times[2];
	char tmp[4096 + 64];
	int fd, n;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%lu", path, (long)gettid(),
		     __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return complain("control path too long: %s", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return complain("cannot create %s: %s", tmp, strerror(errno));
	while (done < len) {
		ssize_t w = write(fd, text + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto fail;
		done += (size_t)w;
	}
	times[0] = times[1] = next_mtime(path);
	if (futimens(fd, times) != 0)
		goto fail;
	n = close(fd);
	fd = -1;
	if (n != 0 || rename(tmp, path) != 0)
		goto fail;
	return 0;
fail:
	complain("cannot write %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return -1;
}

/* Does `line` contain every substring of `ap`? */
static int line_matches(const char *line, va_list ap)
{
	const char *s;

	while ((s = va_arg(ap, const char *)))
		if (!strstr(line, s))
			return 0;
	return 1;
}

long p11fault_log_count(const char *log_path, ...)
{
	FILE *f = fopen(log_path, "re");
	char *line = NULL;
	size_t cap = 0;
	long count = 0;
	va_list ap;

	if (!f) {
		complain("cannot read %s: %s", log_path, strerror(errno));
		return -1;
	}
	while (getline(&line, &cap, f) >= 0) {
		va_start(ap, log_path);
		count += line_matches(line, ap);
		va_end(ap);
	}
	free(line);
	fclose(f);
	return count;
}
