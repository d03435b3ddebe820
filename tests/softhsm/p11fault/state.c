/*
 * p11fault's fault state (see state.h): control-file reloads, rule decisions, the PIN
 * counter, session tracking, and the log.
 *
 * A call goes through
 *   1. refresh: re-read the control file if it changed (stat on every call), and carry out a
 *      `reboot` or `remove` it just loaded before anything else;
 *   2. wait: hang until the file changes or the window closes, then delay;
 *   3. decide: fail when the token is "removed" or a fail rule matches;
 * and ends with one log line.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/softhsm/p11fault/control.h"
#include "tests/softhsm/p11fault/state.h"
#include <p11-kit/pkcs11.h> /* last: it #defines short words such as `value` and `count` */

#define HANG_POLL_MS 10	 /* how often a hung call looks at the control file */
#define LOG_LINE_MAX 256 /* one log line; the longest possible is far shorter */

/* What identifies one version of the control file; a missing file is a version too. */
struct file_id {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim;
};

/* A session opened through the shim. `ticket` is nonzero while its C_OpenSession runs. */
struct tracked_session {
	unsigned long slot;
	unsigned long handle;
	unsigned long ticket;
};

/*
 * The state. A PKCS#11 module gets no context argument, so this is its one global. Every
 * field is guarded by mu, except the two env paths, written once under env_once.
 */
static struct state {
	pthread_mutex_t mu;
	void (*close_all)(void);
	bool initialized; /* the real C_Initialize succeeded and no C_Finalize since */

	const char *control_path; /* env P11FAULT_CONTROL, or NULL */
	const char *env_log_path; /* env P11FAULT_LOG, or NULL */

	struct file_id control_id;	 /* the version the rules came from */
	struct p11fault_control ctl;	 /* the rules; their counters run down */
	struct p11fault_control scratch; /* where the next version is parsed */
	struct timespec loaded_at;	 /* every ms= window starts here */
	unsigned long generation;	 /* +1 per load: a hung call waits for it to move */
	bool close_pending;		 /* a reboot/remove was loaded and not yet done */
	unsigned long pin_left;		 /* pin-tries: wrong PINs left */

	struct tracked_session *sessions;
	size_t n_sessions, cap_sessions;
	unsigned long last_ticket;

	int log_fd;
	char log_open_path[P11FAULT_PATH_MAX]; /* the path log_fd was opened for */
} st = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.log_fd = -1,
};

static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static void lock(void)
{
	pthread_mutex_lock(&st.mu);
}

static void unlock(void)
{
	pthread_mutex_unlock(&st.mu);
}

static struct timespec now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t;
}

static long long us_between(struct timespec a, struct timespec b)
{
	return (long long)(b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000;
}

static void sleep_ms(long ms)
{
	struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&t, &t) == -1 && errno == EINTR)
		;
}

/* ---- the log --------------------------------------------------------------------------- */

/* Open the log the control file names (or else P11FAULT_LOG), unless it is already open. */
static void log_reopen_locked(void)
{
	const char *path = st.ctl.log_path[0] ? st.ctl.log_path : st.env_log_path;

	if (!path)
		path = "";
	if (strcmp(path, st.log_open_path) == 0)
		return;
	if (st.log_fd >= 0)
		close(st.log_fd);
	st.log_fd = -1;
	snprintf(st.log_open_path, sizeof(st.log_open_path), "%s", path);
	if (!path[0])
		return;
	/* O_APPEND and one write() per line: lines from several threads and processes sharing
	 * the file never interleave. */
	st.log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (st.log_fd < 0)
		fprintf(stderr, "p11fault: cannot open log %s: %s\n", path, strerror(errno));
}

/* " fault=hang,fail", or "" */
static void format_faults(unsigned faults, char *buf, size_t size)
{
	size_t pos = 0;

	buf[0] = '\0';
	for (int cmd = 0; cmd < P11FAULT_CMD_COUNT && pos < size; cmd++) {
		if (faults & P11FAULT_FAULT(cmd))
			pos += (size_t)snprintf(
				buf + pos, size - pos, "%s%s",
				pos ? "," : " fault=", p11fault_cmd_name((enum p11fault_cmd)cmd));
	}
}

/* One line per call: names, handles, codes and times — never PINs or data. */
void p11fault_call_end(const struct p11fault_call *c, unsigned long rv)
{
	char line[LOG_LINE_MAX], session[24] = "-", rvbuf[24], faults[128];
	const char *rvname = p11fault_rv_name(rv);
	int n;

	if (c->has_session)
		snprintf(session, sizeof(session), "0x%lx", c->session);
	if (!rvname) {
		snprintf(rvbuf, sizeof(rvbuf), "0x%lx", rv);
		rvname = rvbuf;
	}
	format_faults(c->faults, faults, sizeof(faults));
	n = snprintf(line, sizeof(line), "pid=%ld tid=%ld fn=%s session=%s rv=%s us=%lld%s\n",
		     (long)getpid(), (long)gettid(), p11fault_fn_name(c->fn), session, rvname,
		     us_between(c->start, now()), faults);
	if (n <= 0 || (size_t)n >= sizeof(line))
		return;
	lock();
	if (st.log_fd >= 0 && write(st.log_fd, line, (size_t)n) != n) {
		fprintf(stderr, "p11fault: cannot write log %s: %s\n", st.log_open_path,
			strerror(errno));
		close(st.log_fd);
		st.log_fd = -1; /* say it once; the next control file version tries again */
		st.log_open_path[0] = '\0';
	}
	unlock();
}

/* ---- the control file ------------------------------------------------------------------ */

static void file_id_set(struct file_id *id, const struct stat *sb)
{
	*id = (struct file_id){
		.exists = true,
		.dev = sb->st_dev,
		.ino = sb->st_ino,
		.size = sb->st_size,
		.mtim = sb->st_mtim,
	};
}

static bool file_id_equal(const struct file_id *a, const struct file_id *b)
{
	if (!a->exists || !b->exists)
		return a->exists == b->exists;
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtim.tv_sec == b->mtim.tv_sec && a->mtim.tv_nsec == b->mtim.tv_nsec;
}

static ssize_t read_all(int fd, char *buf, size_t size)
{
	size_t got = 0;

	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Parse the control file into *ctl (empty on any error: the whole file or nothing), and
 * record its version from the open file, so the id matches what was read. */
static void control_read_locked(struct file_id *id, struct p11fault_control *ctl)
{
	char err[P11FAULT_LINE_MAX + 256], *text = NULL;
	struct stat sb;
	ssize_t n;
	int fd;

	p11fault_control_clear(ctl);
	id->exists = false;
	fd = open(st.control_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			fprintf(stderr, "p11fault: %s: %s; no faults\n", st.control_path,
				strerror(errno));
		return;
	}
	if (fstat(fd, &sb) != 0)
		goto out;
	file_id_set(id, &sb);
	if (sb.st_size > P11FAULT_CONTROL_MAX) {
		fprintf(stderr, "p11fault: %s: larger than %d bytes; ignoring the whole file\n",
			st.control_path, P11FAULT_CONTROL_MAX);
		goto out;
	}
	text = malloc((size_t)sb.st_size + 1);
	if (!text || (n = read_all(fd, text, (size_t)sb.st_size)) < 0) {
		fprintf(stderr, "p11fault: cannot read %s; no faults\n", st.control_path);
		goto out;
	}
	if (p11fault_control_parse(text, (size_t)n, st.control_path, ctl, err, sizeof(err)) != 0)
		fprintf(stderr, "p11fault: %s; ignoring the whole control file\n", err);
out:
	free(text);
	close(fd);
}

/* A new version replaces every rule and re-arms everything: counts, windows, pin-tries, and
 * the one-shot reboot/remove. */
static void control_install_locked(const struct p11fault_control *ctl)
{
	st.ctl = *ctl;
	st.loaded_at = now();
	st.generation++;
	st.pin_left = ctl->pin_tries;
	st.close_pending = ctl->reboot || ctl->remove;
	log_reopen_locked();
}

static void control_refresh_locked(void)
{
	struct file_id id = {.exists = false};
	struct stat sb;

	if (!st.control_path)
		return;
	if (stat(st.control_path, &sb) == 0)
		file_id_set(&id, &sb);
	if (file_id_equal(&id, &st.control_id))
		return;
	control_read_locked(&id, &st.scratch);
	st.control_id = id;
	control_install_locked(&st.scratch);
}

static const char *env_copy(const char *name)
{
	const char *v = getenv(name);

	return v && v[0] ? strdup(v) : NULL;
}

/* The environment is read once, at the first call into the module. */
static void env_read(void)
{
	st.control_path = env_copy("P11FAULT_CONTROL");
	st.env_log_path = env_copy("P11FAULT_LOG");
	lock();
	log_reopen_locked();
	unlock();
}

/* ---- rules -------------------------------------------------------------------------------- */

static bool window_open_locked(long ms)
{
	return ms == P11FAULT_UNLIMITED || us_between(st.loaded_at, now()) < ms * 1000LL;
}

/* The first rule of kind `cmd` that applies to function `fn` now, or NULL. */
static struct p11fault_rule *rule_find_locked(enum p11fault_cmd cmd, int fn)
{
	for (size_t i = 0; i < st.ctl.n_rules; i++) {
		struct p11fault_rule *r = &st.ctl.rules[i];

		if (r->cmd != cmd || r->remaining == 0)
			continue;
		if (r->fn == P11FAULT_FN_ANY ? fn == P11FAULT_FN_C_GetFunctionList : r->fn != fn)
			continue;
		if (cmd == P11FAULT_CMD_DELAY || window_open_locked(r->ms))
			return r;
	}
	return NULL;
}

static bool removed_locked(void)
{
	return st.ctl.remove && window_open_locked(st.ctl.remove_ms);
}

/* What a function returns while the token is removed; CKR_OK: it works without a token
 * (C_GetSlotList then hides the token: p11fault_token_hidden). */
static CK_RV removed_rv(int fn)
{
	switch (fn) {
	case P11FAULT_FN_C_Initialize:
	case P11FAULT_FN_C_Finalize:
	case P11FAULT_FN_C_GetInfo:
	case P11FAULT_FN_C_GetFunctionList:
	case P11FAULT_FN_C_GetSlotList:
		return CKR_OK;
	case P11FAULT_FN_C_GetTokenInfo:
		return CKR_TOKEN_NOT_PRESENT;
	default:
		return CKR_DEVICE_REMOVED;
	}
}

/* ---- the steps of every call -------------------------------------------------------------- */

void p11fault_state_set_closer(void (*close_all_real_sessions)(void))
{
	lock();
	st.close_all = close_all_real_sessions;
	unlock();
}

void p11fault_call_begin(struct p11fault_call *c, int fn, bool has_session, unsigned long session)
{
	pthread_once(&env_once, env_read);
	*c = (struct p11fault_call){.fn = fn, .has_session = has_session, .session = session};
	c->start = now();
}

/* Step 1. The reboot/remove is done outside the lock: it calls the real module. */
static void refresh(struct p11fault_call *c)
{
	void (*close_all)(void) = NULL;
	unsigned kind = 0;

	lock();
	control_refresh_locked();
	/* Before C_Initialize there are no sessions to close: the reboot is moot. */
	if (st.close_pending && st.initialized && st.close_all) {
		close_all = st.close_all;
		kind = P11FAULT_FAULT(st.ctl.remove ? P11FAULT_CMD_REMOVE : P11FAULT_CMD_REBOOT);
	}
	st.close_pending = false;
	unlock();
	if (close_all) {
		close_all();
		c->faults |= kind;
	}
}

/* Step 2a: hold the call until the control file changes or the rule's window closes. */
static void wait_hang(struct p11fault_call *c)
{
	const struct p11fault_rule *r;
	unsigned long generation = 0;
	long ms = 0;
	bool done;

	lock();
	r = rule_find_locked(P11FAULT_CMD_HANG, c->fn);
	if (r) {
		generation = st.generation;
		ms = r->ms;
	}
	unlock();
	if (!r)
		return;
	c->faults |= P11FAULT_FAULT(P11FAULT_CMD_HANG);
	do {
		sleep_ms(HANG_POLL_MS);
		refresh(c);
		lock();
		done = st.generation != generation || !window_open_locked(ms);
		unlock();
	} while (!done);
}

/* Step 2b. */
static void wait_delay(struct p11fault_call *c)
{
	const struct p11fault_rule *r;
	long ms = 0;

	lock();
	r = rule_find_locked(P11FAULT_CMD_DELAY, c->fn);
	if (r)
		ms = r->ms;
	unlock();
	if (!r)
		return;
	c->faults |= P11FAULT_FAULT(P11FAULT_CMD_DELAY);
	sleep_ms(ms);
}

/* Step 3. */
static bool decide_failure(struct p11fault_call *c, unsigned long *rv)
{
	struct p11fault_rule *r;
	bool fail = false;

	lock();
	if (removed_locked() && removed_rv(c->fn) != CKR_OK) {
		*rv = removed_rv(c->fn);
		c->faults |= P11FAULT_FAULT(P11FAULT_CMD_REMOVE);
		fail = true;
	} else if ((r = rule_find_locked(P11FAULT_CMD_FAIL, c->fn))) {
		*rv = r->rv;
		if (r->remaining > 0)
			r->remaining--;
		c->faults |= P11FAULT_FAULT(P11FAULT_CMD_FAIL);
		fail = true;
	}
	unlock();
	return fail;
}

bool p11fault_call_inject(struct p11fault_call *c, unsigned long *rv)
{
	refresh(c);
	wait_hang(c);
	wait_delay(c);
	return decide_failure(c, rv);
}

void p11fault_state_initialized(bool initialized)
{
	lock();
	st.initialized = initialized;
	unlock();
	if (!initialized)
		p11fault_all_sessions_closed();
}

bool p11fault_token_hidden(struct p11fault_call *c)
{
	bool hidden;

	lock();
	hidden = st.initialized && removed_locked();
	unlock();
	if (hidden)
		c->faults |= P11FAULT_FAULT(P11FAULT_CMD_REMOVE);
	return hidden;
}

bool p11fault_flip_take(struct p11fault_call *c)
{
	bool flip;

	lock();
	flip = st.ctl.flip_sign && st.ctl.flip_remaining != 0;
	if (flip && st.ctl.flip_remaining > 0)
		st.ctl.flip_remaining--;
	unlock();
	if (flip)
		c->faults |= P11FAULT_FAULT(P11FAULT_CMD_FLIP_SIGN);
	return flip;
}

/* ---- PIN emulation ----------------------------------------------------------------------- */

unsigned long p11fault_token_flags(struct p11fault_call *c)
{
	CK_FLAGS f = 0;

	lock();
	if (st.ctl.pin_flags) {
		f |= st.ctl.pin_flags;
		c->faults |= P11FAULT_FAULT(P11FAULT_CMD_PIN_FLAGS);
	}
	if (st.ctl.pin_tries && st.pin_left < st.ctl.pin_tries) {
		f |= CKF_USER_PIN_COUNT_LOW;
		c->faults |= P11FAULT_FAULT(P11FAULT_CMD_PIN_TRIES);
	}
	if (st.ctl.pin_tries && st.pin_left == 1)
		f |= CKF_USER_PIN_FINAL_TRY;
	if (st.ctl.pin_tries && st.pin_left == 0)
		f |= CKF_USER_PIN_LOCKED;
	unlock();
	return f;
}

bool p11fault_pin_refused(struct p11fault_call *c)
{
	unsigned fault = 0;

	lock();
	if (st.ctl.pin_flags & CKF_USER_PIN_LOCKED)
		fault = P11FAULT_FAULT(P11FAULT_CMD_PIN_FLAGS);
	else if (st.ctl.pin_tries && st.pin_left == 0)
		fault = P11FAULT_FAULT(P11FAULT_CMD_PIN_TRIES);
	unlock();
	c->faults |= fault;
	return fault != 0;
}

void p11fault_pin_result(struct p11fault_call *c, unsigned long rv)
{
	lock();
	if (st.ctl.pin_tries && rv == CKR_PIN_INCORRECT && st.pin_left > 0) {
		st.pin_left--;
		c->faults |= P11FAULT_FAULT(P11FAULT_CMD_PIN_TRIES);
	} else if (st.ctl.pin_tries && rv == CKR_OK) {
		st.pin_left = st.ctl.pin_tries;
	}
	unlock();
}

/* ---- session tracking ------------------------------------------------------------------ */

static size_t sessions_on_slot_locked(unsigned long slot)
{
	size_t n = 0;

	for (size_t i = 0; i < st.n_sessions; i++)
		n += st.sessions[i].slot == slot;
	return n;
}

static void session_drop_locked(size_t i)
{
	st.sessions[i] = st.sessions[--st.n_sessions];
}

bool p11fault_session_reserve(struct p11fault_call *c, unsigned long slot, unsigned long *ticket)
{
	bool room = true;

	*ticket = 0;
	lock();
	if (st.ctl.max_sessions && sessions_on_slot_locked(slot) >= st.ctl.max_sessions) {
		c->faults |= P11FAULT_FAULT(P11FAULT_CMD_MAX_SESSIONS);
		room = false;
		goto out;
	}
	if (st.n_sessions == st.cap_sessions) {
		size_t cap = st.cap_sessions ? 2 * st.cap_sessions : 16;
		struct tracked_session *s = realloc(st.sessions, cap * sizeof(*s));

		if (!s)
			goto out; /* no memory: the session goes uncounted, nothing fails */
		st.sessions = s;
		st.cap_sessions = cap;
	}
	if (++st.last_ticket == 0)
		++st.last_ticket;
	*ticket = st.last_ticket;
	st.sessions[st.n_sessions++] = (struct tracked_session){.slot = slot, .ticket = *ticket};
out:
	unlock();
	return room;
}

void p11fault_session_commit(unsigned long ticket, bool opened, unsigned long handle)
{
	lock();
	for (size_t i = 0; ticket && i < st.n_sessions; i++) {
		if (st.sessions[i].ticket != ticket)
			continue;
		if (opened) {
			st.sessions[i].handle = handle;
			st.sessions[i].ticket = 0;
		} else {
			session_drop_locked(i);
		}
		break;
	}
	unlock();
}

/* Forget open sessions (never reservations of opens still in flight) that match. */
static void sessions_forget(bool (*match)(const struct tracked_session *, unsigned long),
			    unsigned long key)
{
	lock();
	for (size_t i = st.n_sessions; i-- > 0;)
		if (!st.sessions[i].ticket && match(&st.sessions[i], key))
			session_drop_locked(i);
	unlock();
}

static bool match_handle(const struct tracked_session *s, unsigned long handle)
{
	return s->handle == handle;
}

static bool match_slot(const struct tracked_session *s, unsigned long slot)
{
	return s->slot == slot;
}

static bool match_any(const struct tracked_session *s, unsigned long unused)
{
	(void)s;
	(void)unused;
	return true;
}

void p11fault_session_closed(unsigned long handle)
{
	sessions_forget(match_handle, handle);
}

void p11fault_slot_closed(unsigned long slot)
{
	sessions_forget(match_slot, slot);
}

void p11fault_all_sessions_closed(void)
{
	sessions_forget(match_any, 0);
}
