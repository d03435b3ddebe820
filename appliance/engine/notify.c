/*
 * Expiry notifications: every watcher of every unrevoked certificate that reached one of
 * the [notify] days thresholds gets one message for the smallest threshold reached, once.
 *
 * A pass walks the by_expiry index over [now, now + largest threshold) a page at a time.
 * No transaction is held while the command runs: a page's due messages are collected in a
 * read transaction, sent, and what was sent is recorded (notified_days, with an audit
 * record "cert.notify") in a commit job that re-reads the certificate, so watcher changes
 * made meanwhile are kept. A failed send records nothing and is retried by the next pass;
 * a send whose record fails to commit is sent again (at least once, never silently lost).
 *
 * The command is the operator's sendmail-compatible program, started with fork + execve
 * (no shell): its words from the configuration, then "--" (unless the configuration already
 * ends with it) and the recipient as the last argument, so an address can never be read as
 * an option; the RFC 5322 message on standard input, standard output and error to the log
 * (with the recipient masked: addresses appear in the audit chain only), killed after
 * NOTIFY_TIMEOUT_MS. Exit status 0 means sent. The command inherits no descriptor but its
 * three standard ones: the engine's signer, control and rpc links and the database stay
 * out of its reach.
 *
 * A pass stops starting messages once it has run NOTIFY_PASS_MS (what is left goes out on
 * the next pass), and a second pass while one runs is refused rather than queued, so
 * `notify expiring` never ties up a worker for long.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "appliance/config_internal.h"
#include "appliance/engine/engine_internal.h"

#define NOTIFY_TIMEOUT_MS 30000
#define NOTIFY_PAGE	  16
#define NOTIFY_OUTPUT_MAX 2048
#define NOTIFY_MSG_MAX	  8192
#define NOTIFY_PASS_MS	  60000
#define NOTIFY_B64_CHUNK  45 /* bytes of text per RFC 2047 encoded word: 60 in base64 */

/* One pass at a time, whether from the schedule or `notify expiring`: two overlapping
 * passes would both see a threshold as unsent and send it twice. */
static pthread_mutex_t notify_lock = PTHREAD_MUTEX_INITIALIZER;

uint32_t engine_notify_due(const unsigned *days, size_t n_days, int64_t not_after, int64_t now,
			   uint32_t notified_days)
{
	uint32_t due = 0;
	if (not_after <= now) /* expired: nothing left to warn about */
		return 0;
	for (size_t i = 0; i < n_days; i++) {
		if (days[i] == 0 || not_after - now > (int64_t)days[i] * ENGINE_DAY)
			continue;
		if ((notified_days == 0 || days[i] < notified_days) && (due == 0 || days[i] < due))
			due = days[i];
	}
	return due;
}

struct notify_item {
	uint32_t ca_id;
	uint8_t serial[STORE_SERIAL_LEN];
	int64_t not_after;
	char cn[256];
	char subject[1024];
	char ca_name[STORE_CA_NAME_MAX + 1];
	struct store_watcher w[STORE_WATCHERS_MAX];
	uint32_t due[STORE_WATCHERS_MAX];
	bool sent[STORE_WATCHERS_MAX];
	size_t n_w;
};

struct notify_pass {
	struct engine *eng;
	struct store_txn *txn;
	int64_t now;
	struct notify_item items[NOTIFY_PAGE];
	size_t n_items;
	enum p11ca_err err;
	struct p11ca_errmsg *em;
};

/* The CN (or, without one, the RFC 4514 subject) with control characters replaced. */
static void names_take(const struct store_cert *cert, struct notify_item *it)
{
	const unsigned char *p = cert->der;
	X509 *x = d2i_X509(NULL, &p, (long)cert->der_len);
	struct p11ca_errmsg ignored;
	it->cn[0] = it->subject[0] = '\0';
	if (x == NULL)
		return;
	const X509_NAME *name = X509_get_subject_name(x);
	if (x509_name_format(name, it->subject, sizeof(it->subject), &ignored) != P11CA_OK)
		it->subject[0] = '\0';
	int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	unsigned char *utf8 = NULL;
	int n = i >= 0 ? ASN1_STRING_to_UTF8(&utf8,
					     X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)))
		       : -1;
	if (n > 0)
		snprintf(it->cn, sizeof(it->cn), "%.*s", n, (const char *)utf8);
	else
		snprintf(it->cn, sizeof(it->cn), "%.200s", it->subject);
	OPENSSL_free(utf8);
	X509_free(x);
	for (char *c = it->cn; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
}

static int collect_visit(void *arg, const struct store_cert *cert)
{
	struct notify_pass *np = arg;
	const struct p11cad_config *cfg = np->eng->cfg;
	struct notify_item *it = &np->items[np->n_items];
	bool any = false;
	for (size_t i = 0; i < cert->n_watchers; i++) {
		it->due[i] =
			engine_notify_due(cfg->notify_days, cfg->n_notify_days, cert->not_after,
					  np->now, cert->watchers[i].notified_days);
		it->sent[i] = false;
		any = any || it->due[i] != 0;
	}
	if (!any)
		return 0;
	struct store_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	if (ca == NULL) {
		np->err = p11ca_fail(np->em, P11CA_E_NOMEM, "out of memory");
		return 1;
	}
	np->err = store_ca_get(np->txn, cert->ca_id, ca, np->em);
	snprintf(it->ca_name, sizeof(it->ca_name), "%s", ca->name);
	OPENSSL_free(ca);
	if (np->err != P11CA_OK)
		return 1;
	it->ca_id = cert->ca_id;
	memcpy(it->serial, cert->serial, STORE_SERIAL_LEN);
	it->not_after = cert->not_after;
	memcpy(it->w, cert->watchers, cert->n_watchers * sizeof(cert->watchers[0]));
	it->n_w = cert->n_watchers;
	names_take(cert, it);
	np->n_items++;
	return np->n_items == NOTIFY_PAGE ? 1 : 0;
}

/* ---- the message ------------------------------------------------------------------------ */

static void date_rfc5322(int64_t t, char *out, size_t cap)
{
	static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const mo[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	snprintf(out, cap, "%s, %02d %s %04d %02d:%02d:%02d +0000", wd[tm.tm_wday], tm.tm_mday,
		 mo[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void date_plain(int64_t t, char *out, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	snprintf(out, cap, "%04d-%02d-%02d %02d:%02d:%02d UTC", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* A header value: ASCII as is, anything else as one RFC 2047 encoded word per chunk of at
 * most NOTIFY_B64_CHUNK bytes. A chunk never ends inside a UTF-8 character: each encoded
 * word must decode to whole characters (RFC 2047 section 5). */
void engine_notify_header(const char *text, char *out, size_t cap)
{
	bool ascii = true;
	for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++)
		ascii = ascii && *c < 0x80;
	if (ascii) {
		snprintf(out, cap, "%s", text);
		return;
	}
	const unsigned char *u = (const unsigned char *)text;
	size_t len = 0, n = strlen(text);
	out[0] = '\0';
	for (size_t off = 0, chunk; off < n; off += chunk) {
		unsigned char b64[4 * ((NOTIFY_B64_CHUNK + 2) / 3) + 1];
		chunk = n - off < NOTIFY_B64_CHUNK ? n - off : NOTIFY_B64_CHUNK;
		/* Back up to a character's first byte (never below one byte: invalid UTF-8,
		 * a run of continuation bytes, is still split somewhere). */
		while (off + chunk < n && chunk > 1 && (u[off + chunk] & 0xc0) == 0x80)
			chunk--;
		if (off + chunk < n && (u[off + chunk] & 0xc0) == 0x80)
			chunk = n - off < NOTIFY_B64_CHUNK ? n - off : NOTIFY_B64_CHUNK;
		EVP_EncodeBlock(b64, u + off, (int)chunk);
		int k = snprintf(out + len, cap - len, "%s=?UTF-8?B?%s?=", off ? "\r\n " : "", b64);
		if (k < 0 || (size_t)k >= cap - len) {
			out[len] = '\0';
			return;
		}
		len += (size_t)k;
	}
}

static int message_build(const struct p11cad_config *cfg, const struct notify_item *it,
			 const char *rcpt, int64_t now, char *out, size_t cap)
{
	char date[64], until[64], hex[2 * STORE_SERIAL_LEN + 1], subj[600], line[400];
	int64_t left = it->not_after - now;
	long days = (long)((left + ENGINE_DAY - 1) / ENGINE_DAY);
	date_rfc5322(now, date, sizeof(date));
	date_plain(it->not_after, until, sizeof(until));
	engine_hex_format(it->serial, STORE_SERIAL_LEN, hex);
	snprintf(line, sizeof(line), "Certificate %s expires in %ld day%s", it->cn, days,
		 days == 1 ? "" : "s");
	engine_notify_header(line, subj, sizeof(subj));
	return snprintf(
		out, cap,
		"From: %s\r\n"
		"To: %s\r\n"
		"Subject: %s\r\n"
		"Date: %s\r\n"
		"Auto-Submitted: auto-generated\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: 8bit\r\n"
		"\r\n"
		"The certificate below expires in %ld day%s, on %s.\r\n"
		"\r\n"
		"  Serial:    %s\r\n"
		"  Subject:   %s\r\n"
		"  CA:        %s\r\n"
		"  Not after: %s\r\n"
		"\r\n"
		"To renew it with the same key, subject, names and profile:\r\n"
		"\r\n"
		"  p11ca cert resign %s\r\n"
		"\r\n"
		"or have a new one issued from a fresh CSR (p11ca cert sign), then install\r\n"
		"it where the old one is used.\r\n"
		"\r\n"
		"You get this message because you watch this certificate; to stop:\r\n"
		"  p11ca cert watchers %s --remove %s\r\n",
		cfg->notify_from, rcpt, subj, date, days, days == 1 ? "" : "s", until, hex,
		it->subject, it->ca_name, until, hex, hex, rcpt);
}

/* ---- running the command ------------------------------------------------------------------ */

/* Log what the command wrote, one line each, with the recipient masked. */
static void output_log(struct engine *eng, char *buf, size_t len, const char *rcpt)
{
	buf[len] = '\0';
	size_t rl = strlen(rcpt);
	for (char *p = buf; rl > 0 && (p = strcasestr(p, rcpt)) != NULL; p += rl)
		memset(p, '*', rl);
	for (char *save = NULL, *l = strtok_r(buf, "\r\n", &save); l != NULL;
	     l = strtok_r(NULL, "\r\n", &save))
		p11ca_logf(eng->log, LOG_INFO, "notify: command: %.300s", l);
}

static void child_exec(char **argv, int in_fd, int out_fd)
{
	/* Between fork and execve only async-signal-safe calls: the engine has threads. */
	static char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
	sigset_t none;
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	sigaction(SIGPIPE, &dfl, NULL);
	if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
		_exit(126);
	/* Nothing else crosses into the command: not every descriptor of the engine is
	 * close-on-exec (the links supervise.c put in place, LMDB's files), and the signer
	 * link alone would let the command sign with every CA key. */
	if (syscall(SYS_close_range, 3U, ~0U, 0) != 0)
		_exit(126);
	execve(argv[0], argv, envp);
	_exit(127);
}

/* Feed the message, drain the output, wait for the exit, all within the deadline. */
static int child_talk(int pid, int pidfd, int in_fd, int out_fd, const char *msg, size_t len,
		      char *outbuf, size_t *out_len, bool *timed_out)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	size_t sent = 0;
	bool out_open = true, exited = false;
	int status = -1;
	while (out_open || !exited) {
		struct timespec t;
		clock_gettime(CLOCK_MONOTONIC, &t);
		long spent = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (spent >= NOTIFY_TIMEOUT_MS) {
			*timed_out = true;
			kill(pid, SIGKILL);
			break;
		}
		struct pollfd pf[3] = {{.fd = out_open ? out_fd : -1, .events = POLLIN},
				       {.fd = exited ? -1 : pidfd, .events = POLLIN},
				       {.fd = in_fd >= 0 ? in_fd : -1, .events = POLLOUT}};
		if (poll(pf, 3, (int)(NOTIFY_TIMEOUT_MS - spent)) < 0 && errno != EINTR) {
			kill(pid, SIGKILL); /* else the wait below could block for ever */
			break;
		}
		if (pf[2].revents != 0) {
			ssize_t n = write(in_fd, msg + sent, len - sent);
			if (n > 0)
				sent += (size_t)n;
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				sent = len; /* the command stopped reading: its status says why */
			if (sent == len) {
				close(in_fd);
				in_fd = -1;
			}
		}
		if (pf[0].revents != 0) {
			char tmp[512];
			ssize_t n = read(out_fd, tmp, sizeof(tmp));
			if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
				out_open = false;
			for (ssize_t i = 0; i < n && *out_len < NOTIFY_OUTPUT_MAX; i++)
				outbuf[(*out_len)++] = tmp[i];
		}
		if (pf[1].revents != 0)
			exited = true;
	}
	if (in_fd >= 0)
		close(in_fd);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

static enum p11ca_err notify_exec(struct engine *eng, const char *rcpt, const char *msg, size_t len,
				  const char *serial_hex, struct p11ca_errmsg *em)
{
	char buf[P11CAD_PATH_MAX];
	char *argv[CONFIG_NOTIFY_ARGV_MAX];
	char rcpt_copy[STORE_EMAIL_MAX + 1];
	int in[2] = {-1, -1}, out[2] = {-1, -1}, pidfd = -1;
	static char dashes[] = "--";
	/* Two slots stay free: "--" and the recipient (config.c keeps the same room). */
	int n = config_command_split(eng->cfg->notify_command, buf, sizeof(buf), argv,
				     CONFIG_NOTIFY_ARGV_MAX - 2);
	if (n <= 0)
		return p11ca_fail(em, P11CA_E_CONFIG, "[notify] command is empty or too long");
	/* The addresses are checked to start with no '-', and "--" ends the options anyway:
	 * a recipient is never an option of the command. */
	if (strcmp(argv[n - 1], "--") != 0)
		argv[n++] = dashes;
	snprintf(rcpt_copy, sizeof(rcpt_copy), "%s", rcpt);
	argv[n] = rcpt_copy;
	argv[n + 1] = NULL;
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
		enum p11ca_err e = p11ca_fail(em, P11CA_E_IO, "notify: cannot create a pipe: %s",
					      strerror(errno));
		for (int i = 0; i < 2; i++) {
			if (in[i] >= 0)
				close(in[i]);
			if (out[i] >= 0)
				close(out[i]);
		}
		return e;
	}
	pid_t pid = fork();
	if (pid == 0)
		child_exec(argv, in[0], out[1]);
	close(in[0]);
	close(out[1]);
	if (pid > 0)
		pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pid < 0 || pidfd < 0) {
		enum p11ca_err e = p11ca_fail(em, P11CA_E_IO, "notify: cannot start %s: %s",
					      argv[0], strerror(errno));
		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
		close(in[1]);
		close(out[0]);
		return e;
	}
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	char output[NOTIFY_OUTPUT_MAX + 1];
	size_t out_len = 0;
	bool timed_out = false;
	int status = child_talk(pid, pidfd, in[1], out[0], msg, len, output, &out_len, &timed_out);
	close(pidfd);
	close(out[0]);
	output_log(eng, output, out_len, rcpt);
	if (timed_out)
		return p11ca_fail(em, P11CA_E_TIMEOUT,
				  "notify: %s did not finish within %d s for certificate %s: "
				  "killed; retried on the next run",
				  argv[0], NOTIFY_TIMEOUT_MS / 1000, serial_hex);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return p11ca_fail(em, P11CA_E_IO,
				  "notify: %s failed (%s %d) for certificate %s; retried on the "
				  "next run",
				  argv[0], WIFEXITED(status) ? "exit status" : "signal",
				  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
				  serial_hex);
	return P11CA_OK;
}

/* ---- recording ------------------------------------------------------------------------------ */

struct record_job {
	const struct notify_item *it;
	const char *actor;
	struct store_cert cert;
};

static enum p11ca_err record_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct record_job *j = arg;
	const struct notify_item *it = j->it;
	char hex[2 * STORE_SERIAL_LEN + 1], details[STORE_AUDIT_DETAILS_MAX + 1];
	size_t len = 0;
	P11CA_GUARD(store_cert_get(txn, it->ca_id, it->serial, &j->cert, em));
	details[0] = '\0';
	for (size_t i = 0; i < it->n_w; i++) {
		if (!it->sent[i])
			continue;
		for (size_t k = 0; k < j->cert.n_watchers; k++) {
			struct store_watcher *w = &j->cert.watchers[k];
			if (strcasecmp(w->email, it->w[i].email) != 0)
				continue;
			if (w->notified_days == 0 || it->due[i] < w->notified_days)
				w->notified_days = it->due[i];
		}
		int n = snprintf(details + len, sizeof(details) - len, "%s%u days to %s",
				 len ? ", " : "", it->due[i], it->w[i].email);
		if (n > 0 && (size_t)n < sizeof(details) - len)
			len += (size_t)n;
	}
	P11CA_GUARD(store_cert_watchers_set(txn, it->ca_id, it->serial, j->cert.watchers,
					    j->cert.n_watchers, em));
	engine_hex_format(it->serial, STORE_SERIAL_LEN, hex);
	return store_audit_append(txn, "cert.notify", j->actor, hex, details, NULL, em);
}

/* Send what one certificate has due, then record what went out. */
static enum p11ca_err item_send(struct engine *eng, struct notify_item *it, int64_t now,
				p11ca_v1_NotifyExpiringResponse *out, struct record_job *job,
				char *msg, struct p11ca_errmsg *em)
{
	char hex[2 * STORE_SERIAL_LEN + 1];
	bool any = false;
	engine_hex_format(it->serial, STORE_SERIAL_LEN, hex);
	for (size_t i = 0; i < it->n_w; i++) {
		if (it->due[i] == 0)
			continue;
		int len = message_build(eng->cfg, it, it->w[i].email, now, msg, NOTIFY_MSG_MAX);
		struct p11ca_errmsg sem;
		p11ca_errmsg_clear(&sem);
		enum p11ca_err err =
			len > 0 && len < NOTIFY_MSG_MAX
				? notify_exec(eng, it->w[i].email, msg, (size_t)len, hex, &sem)
				: p11ca_fail(&sem, P11CA_E_INTERNAL, "notify: message too long");
		if (err != P11CA_OK) {
			out->messages_failed++;
			p11ca_logf(eng->log, LOG_WARNING, "%s", p11ca_errmsg_text(&sem));
			continue;
		}
		it->sent[i] = true;
		out->messages_sent++;
		any = true;
	}
	if (!any)
		return P11CA_OK;
	out->certificates++;
	job->it = it;
	return commit_run(eng->commit, record_job_fn, job, em);
}

struct run_record {
	const char *actor;
	const p11ca_v1_NotifyExpiringResponse *out;
	bool cut_short;
};

static enum p11ca_err run_record_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	const struct run_record *r = arg;
	char details[160];
	snprintf(details, sizeof(details), "%u messages sent for %u certificates, %u failed%s",
		 r->out->messages_sent, r->out->certificates, r->out->messages_failed,
		 r->cut_short ? "; stopped after the time limit, the rest go on the next pass"
			      : "");
	return store_audit_append(txn, "notify.run", r->actor, "", details, NULL, em);
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long)(t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

enum p11ca_err engine_notify_run(struct engine *eng, int64_t now, const char *actor,
				 p11ca_v1_NotifyExpiringResponse *out, struct p11ca_errmsg *em)
{
	const struct p11cad_config *cfg = eng->cfg;
	memset(out, 0, sizeof(*out));
	if (cfg->notify_command[0] == '\0' || cfg->n_notify_days == 0)
		return P11CA_OK;
	/* Refused, not queued: a caller waiting here would hold a worker for as long as the
	 * running pass takes, and the running pass sends what a second one would. */
	if (pthread_mutex_trylock(&notify_lock) != 0)
		return p11ca_fail(em, P11CA_E_POLICY,
				  "a notification pass is running; try again when it ends");
	struct notify_pass *np = OPENSSL_zalloc(sizeof(*np));
	struct record_job *job = OPENSSL_zalloc(sizeof(*job));
	char *msg = OPENSSL_malloc(NOTIFY_MSG_MAX);
	uint8_t cursor[STORE_CURSOR_MAX];
	size_t cursor_len = 0;
	enum p11ca_err err = P11CA_OK;
	struct timespec t0;
	bool cut_short = false;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (np == NULL || job == NULL || msg == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	job->actor = actor != NULL ? actor : "engine";
	/* days[] is descending: the first is the widest window. */
	struct store_cert_query q = {
		.order = STORE_ORDER_EXPIRY,
		.unrevoked_only = true,
		.not_after_from = now + 1,
		.not_after_until = now + (int64_t)cfg->notify_days[0] * ENGINE_DAY + 1,
	};
	do {
		np->eng = eng;
		np->now = now;
		np->n_items = 0;
		np->err = P11CA_OK;
		np->em = em;
		err = store_txn_begin(eng->st, STORE_TXN_READ, &np->txn, em);
		if (err == P11CA_OK)
			err = store_cert_query(np->txn, &q, cursor, cursor_len, NOTIFY_PAGE, 0,
					       collect_visit, np, cursor, &cursor_len, NULL, em);
		store_txn_abort(&np->txn);
		if (err == P11CA_OK)
			err = np->err;
		/* Past the pass's budget no new certificate is started: what is left is
		 * still due, and the next pass sends it. */
		for (size_t i = 0; err == P11CA_OK && i < np->n_items && !cut_short; i++) {
			cut_short = ms_since(&t0) >= NOTIFY_PASS_MS;
			if (!cut_short)
				err = item_send(eng, &np->items[i], now, out, job, msg, em);
		}
	} while (err == P11CA_OK && cursor_len != 0 && !cut_short);
	if (err == P11CA_OK && (out->messages_sent != 0 || out->messages_failed != 0 || cut_short))
		p11ca_logf(eng->log,
			   out->messages_failed != 0 || cut_short ? LOG_WARNING : LOG_INFO,
			   "notify: %u messages sent for %u certificates, %u failed (retried "
			   "on the next run)%s",
			   out->messages_sent, out->certificates, out->messages_failed,
			   cut_short ? "; the pass reached its time limit, the rest go on the "
				       "next run"
				     : "");
	if (err == P11CA_OK && actor != NULL) {
		struct run_record rr = {.actor = actor, .out = out, .cut_short = cut_short};
		err = commit_run(eng->commit, run_record_fn, &rr, em);
	}
out:
	pthread_mutex_unlock(&notify_lock);
	OPENSSL_free(np);
	OPENSSL_free(job);
	OPENSSL_free(msg);
	return err;
}

enum p11ca_err engine_op_notify_expiring(struct engine_call *c, p11ca_v1_Request *req,
					 p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	(void)req;
	if (c->eng->cfg->notify_command[0] == '\0') {
		c->code_override = p11ca_v1_StatusCode_STATUS_CODE_FAILED_PRECONDITION;
		return p11ca_fail(em, P11CA_E_POLICY,
				  "no notification command is configured: set [notify] command "
				  "in the configuration (e.g. /usr/sbin/sendmail -i --) and "
				  "restart p11cad");
	}
	enum p11ca_err err = engine_notify_run(c->eng, engine_now(), c->actor,
					       &resp->result.notify_expiring, em);
	if (err == P11CA_E_POLICY)
		c->code_override = p11ca_v1_StatusCode_STATUS_CODE_FAILED_PRECONDITION;
	return err;
}
