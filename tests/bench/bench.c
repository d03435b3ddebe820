/*
 * Helpers shared by the benchmarks; see bench.h.
 */
#include "tests/bench/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct bench_softhsm {
	char dir[PATH_MAX];
	char conf[PATH_MAX];
};

/* ---- SoftHSM2 token ------------------------------------------------------------------ */

static enum p11ca_err softhsm_write_conf(const struct bench_softhsm *sh, struct p11ca_errmsg *em)
{
	FILE *f = fopen(sh->conf, "w");
	if (f == NULL)
		return p11ca_fail(em, P11CA_E_IO, "cannot create %s: %s", sh->conf,
				  strerror(errno));
	/* The file backend is SoftHSM's default and what the tests use; log.level ERROR
	 * keeps its per-operation chatter out of the measurements. */
	fprintf(f,
		"directories.tokendir = %s/tokens\n"
		"objectstore.backend = file\n"
		"log.level = ERROR\n"
		"slots.removable = false\n",
		sh->dir);
	if (fclose(f) != 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot write %s: %s", sh->conf, strerror(errno));
	return P11CA_OK;
}

/* softhsm2-util --init-token, its chatter on stdout discarded, its errors on our stderr. */
static enum p11ca_err softhsm_init_token(const char *label, const char *so_pin, const char *pin,
					 struct p11ca_errmsg *em)
{
	char *argv[] = {"softhsm2-util", "--init-token", "--free", "--label",	(char *)label,
			"--so-pin",	 (char *)so_pin, "--pin",  (char *)pin, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int rc = posix_spawnp(&pid, "softhsm2-util", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return p11ca_fail(
			em, P11CA_E_CONFIG,
			"cannot run softhsm2-util (%s); the benchmarks need SoftHSM2: "
			"install it with scripts/bootstrap.sh or apt-get install softhsm2",
			strerror(rc));
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return p11ca_fail(em, P11CA_E_IO, "waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return p11ca_fail(em, P11CA_E_CONFIG,
				  "softhsm2-util --init-token failed (status %d); see its message "
				  "above",
				  status);
	return P11CA_OK;
}

enum p11ca_err bench_softhsm_create(const char *label, const char *so_pin, const char *pin,
				    struct bench_softhsm **out, struct p11ca_errmsg *em)
{
	*out = NULL;
	enum p11ca_err err;
	struct bench_softhsm *sh = calloc(1, sizeof(*sh));
	if (sh == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");

	const char *tmp = getenv("TMPDIR");
	int n = snprintf(sh->dir, sizeof(sh->dir), "%s/p11ca-bench.XXXXXX",
			 tmp && tmp[0] ? tmp : "/tmp");
	if (n < 0 || (size_t)n >= sizeof(sh->dir) || mkdtemp(sh->dir) == NULL) {
		err = p11ca_fail(em, P11CA_E_IO, "cannot create a temporary directory in %s: %s",
				 tmp && tmp[0] ? tmp : "/tmp", strerror(errno));
		sh->dir[0] = '\0';
		goto out;
	}
	char tokens[PATH_MAX + 8];
	snprintf(tokens, sizeof(tokens), "%s/tokens", sh->dir);
	snprintf(sh->conf, sizeof(sh->conf), "%.*s/softhsm2.conf", PATH_MAX - 20, sh->dir);
	if (mkdir(tokens, 0700) != 0) {
		err = p11ca_fail(em, P11CA_E_IO, "cannot create %s: %s", tokens, strerror(errno));
		goto out;
	}
	err = softhsm_write_conf(sh, em);
	if (err != P11CA_OK)
		goto out;
	if (setenv("SOFTHSM2_CONF", sh->conf, 1) != 0) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "cannot set SOFTHSM2_CONF");
		goto out;
	}
	err = softhsm_init_token(label, so_pin, pin, em);
out:
	if (err != P11CA_OK)
		bench_softhsm_destroy(&sh);
	*out = sh;
	return err;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

void bench_softhsm_destroy(struct bench_softhsm **psh)
{
	if (psh == NULL || *psh == NULL)
		return;
	struct bench_softhsm *sh = *psh;
	if (sh->dir[0] != '\0' && nftw(sh->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		fprintf(stderr, "p11ca-bench: cannot remove %s: %s\n", sh->dir, strerror(errno));
	unsetenv("SOFTHSM2_CONF");
	free(sh);
	*psh = NULL;
}

/* ---- time and statistics ------------------------------------------------------------ */

double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double bench_thread_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void bench_cpu_mark(struct bench_cpu_mark *m)
{
	memset(m, 0, sizeof(*m));
	m->wall = bench_now();
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	m->self = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
	/* cpu  user nice system idle iowait irq softirq steal ... (in clock ticks) */
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "r");
	if (f == NULL)
		return;
	m->valid = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
			  &v[3], &v[4], &v[5], &v[6], &v[7]) == 8;
	fclose(f);
	m->busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

double bench_cpu_others(const struct bench_cpu_mark *a, const struct bench_cpu_mark *b)
{
	double capacity = (b->wall - a->wall) * (double)sysconf(_SC_NPROCESSORS_ONLN);
	if (!a->valid || !b->valid || capacity <= 0)
		return -1;
	double others = ((b->busy - a->busy) - (b->self - a->self)) / capacity;
	return others < 0 ? 0 : others > 1 ? 1 : others;
}

static int double_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double bench_quantile(double *v, size_t n, double q)
{
	qsort(v, n, sizeof(*v), double_cmp);
	double pos = q * (double)(n - 1);
	size_t i = (size_t)pos;
	return i + 1 < n ? v[i] + (pos - (double)i) * (v[i + 1] - v[i]) : v[n - 1];
}

/* ---- machine description ------------------------------------------------------------ */

void bench_machine_describe(char *dst, size_t dst_size)
{
	char model[128] = "unknown CPU";
	char line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		char *colon = strchr(line, ':');
		if (strncmp(line, "model name", 10) != 0 || colon == NULL)
			continue;
		snprintf(model, sizeof(model), "%s", colon + 1 + (colon[1] == ' '));
		model[strcspn(model, "\n")] = '\0';
		break;
	}
	if (f != NULL)
		fclose(f);
	snprintf(dst, dst_size, "%ld × %s", sysconf(_SC_NPROCESSORS_ONLN), model);
}

void bench_date_utc(char *dst, size_t dst_size)
{
	time_t now = time(NULL);
	struct tm tm;
	if (gmtime_r(&now, &tm) == NULL || strftime(dst, dst_size, "%Y-%m-%d %H:%M UTC", &tm) == 0)
		snprintf(dst, dst_size, "(unknown date)");
}

/* ---- docs/BENCHMARKS.md ------------------------------------------------------------- */

/* The whole file, NUL-terminated; a missing file reads as NULL with P11CA_OK. */
static enum p11ca_err file_slurp(const char *path, char **out, struct p11ca_errmsg *em)
{
	*out = NULL;
	FILE *f = fopen(path, "r");
	if (f == NULL && errno == ENOENT)
		return P11CA_OK;
	if (f == NULL)
		return p11ca_fail(em, P11CA_E_IO, "cannot read %s: %s", path, strerror(errno));
	enum p11ca_err err = P11CA_OK;
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	while (buf != NULL) {
		len += fread(buf + len, 1, cap - len - 1, f);
		if (len < cap - 1)
			break;
		char *bigger = realloc(buf, cap * 2);
		if (bigger == NULL)
			free(buf);
		buf = bigger;
		cap *= 2;
	}
	if (buf == NULL)
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory reading %s", path);
	else if (ferror(f))
		err = p11ca_fail(em, P11CA_E_IO, "cannot read %s", path);
	fclose(f);
	if (err != P11CA_OK) {
		free(buf);
		return err;
	}
	buf[len] = '\0';
	*out = buf;
	return P11CA_OK;
}

/* Write `text` to path through a temporary file in the same directory and rename(2). */
static enum p11ca_err file_replace(const char *path, const char *text, struct p11ca_errmsg *em)
{
	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= sizeof(tmp))
		return p11ca_fail(em, P11CA_E_IO, "path too long: %s", path);
	int fd = mkstemp(tmp);
	if (fd < 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot create a file beside %s: %s", path,
				  strerror(errno));
	FILE *f = fdopen(fd, "w");
	bool ok = f != NULL && fchmod(fd, 0644) == 0 && fputs(text, f) >= 0;
	if (f != NULL)
		ok = fclose(f) == 0 && ok;
	else
		close(fd);
	if (!ok || rename(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		return p11ca_fail(em, P11CA_E_IO, "cannot write %s: %s", path, strerror(e));
	}
	return P11CA_OK;
}

/* The top of a new docs/BENCHMARKS.md; once the file exists it is edited by hand. */
static const char markdown_intro[] =
	"# Benchmarks\n"
	"\n"
	"Measured by `make bench`: scripts/bench.sh runs every `build/bin/p11ca-bench-*`\n"
	"(extra options for all of them in `P11CA_BENCH_ARGS`, e.g. `--slow`). Each section\n"
	"between `<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->` is rewritten by its\n"
	"benchmark on every run; text outside the markers, like this intro, is kept as\n"
	"written. Benchmarks are not tests and assert nothing about speed. The numbers come\n"
	"from one machine, often shared: compare ratios measured in the same run, not\n"
	"absolute rates across runs or machines.\n";

struct markers {
	char begin[96], end[96];
	char *text;	   /* the whole file; NULL when there is none yet */
	const char *b, *e; /* the markers in text, both or neither */
};

/* Read `path` and find the markers of section `name`, refusing a broken pair. */
static enum p11ca_err markers_find(const char *path, const char *name, struct markers *m,
				   struct p11ca_errmsg *em)
{
	snprintf(m->begin, sizeof(m->begin), "<!-- bench:%s:begin -->", name);
	snprintf(m->end, sizeof(m->end), "<!-- bench:%s:end -->", name);
	P11CA_GUARD(file_slurp(path, &m->text, em));
	m->b = m->text ? strstr(m->text, m->begin) : NULL;
	m->e = m->text ? strstr(m->text, m->end) : NULL;
	if ((m->b == NULL) != (m->e == NULL) || (m->b != NULL && m->e < m->b) ||
	    (m->b != NULL && strstr(m->b + 1, m->begin) != NULL) ||
	    (m->e != NULL && strstr(m->e + 1, m->end) != NULL)) {
		free(m->text);
		m->text = NULL;
		return p11ca_fail(em, P11CA_E_CONFIG,
				  "%s has a broken '%s' section (a marker missing, repeated or out "
				  "of order); fix or delete the markers by hand and run again",
				  path, name);
	}
	return P11CA_OK;
}

enum p11ca_err bench_markdown_check(const char *path, const char *name, struct p11ca_errmsg *em)
{
	struct markers m;
	P11CA_GUARD(markers_find(path, name, &m, em));
	free(m.text);
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else
		slash[slash == dir] = '\0'; /* "/x" keeps "/" */
	if (access(dir, W_OK) != 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot write in %s (for %s): %s", dir, path,
				  strerror(errno));
	return P11CA_OK;
}

enum p11ca_err bench_markdown_update(const char *path, const char *name, const char *section,
				     struct p11ca_errmsg *em)
{
	struct markers m;
	char *text = NULL;
	size_t text_len = 0;
	P11CA_GUARD(markers_find(path, name, &m, em));
	enum p11ca_err err = P11CA_E_NOMEM;
	FILE *w = open_memstream(&text, &text_len);
	if (w == NULL)
		goto out;
	if (m.text == NULL) {
		fprintf(w, "%s\n", markdown_intro);
	} else if (m.b != NULL) {
		fwrite(m.text, 1, (size_t)(m.b - m.text), w);
	} else {
		size_t n = strlen(m.text);
		fprintf(w, "%s%s\n", m.text, n > 0 && m.text[n - 1] != '\n' ? "\n" : "");
	}
	fprintf(w, "%s\n%s%s", m.begin, section, m.end);
	fputs(m.e != NULL ? m.e + strlen(m.end) : "\n", w);
	if (fclose(w) != 0)
		goto out;
	err = file_replace(path, text, em);
out:
	free(text);
	free(m.text);
	return err == P11CA_E_NOMEM ? p11ca_fail(em, err, "out of memory updating %s", path) : err;
}
