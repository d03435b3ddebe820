/*
 * The rpc process's listener: setup, the accept loop, the connection slots and the stop
 * sequence. One connection's life (handshake, frames, checks, forwarding) is in
 * rpc/server_conn.c.
 */
#include "rpc/server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/kconfig.h"
#include "rpc/forward.pb.h"
#include "rpc/server_conn.h"
#include "rpc/tls.h"

/* A roles file holds at most RPC_ROLE_TABLE_MAX lines of ~100 bytes; anything much larger
 * is not a roles file. */
#define ROLES_FILE_MAX (1u << 20)
/* After accept() fails for lack of descriptors or memory, wait this long before trying
 * again instead of spinning on a listener that stays readable. */
#define ACCEPT_BACKOFF_MS 100

P11CA_MUST_CHECK static enum p11ca_err read_roles_file(struct rpc_role_table *t, const char *path,
						       struct p11ca_errmsg *em)
{
	char *text = NULL;
	enum p11ca_err err = P11CA_OK;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0 && errno == ENOENT)
		return P11CA_OK; /* no file: only the inline entries */
	if (fd < 0)
		return p11ca_fail(em, P11CA_E_CONFIG, "cannot open roles file %s: %s", path,
				  strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > ROLES_FILE_MAX) {
		err = p11ca_fail(em, P11CA_E_CONFIG,
				 "roles file %s is not a regular file under %u bytes", path,
				 ROLES_FILE_MAX);
		goto out;
	}
	text = malloc((size_t)st.st_size + 1);
	if (text == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory reading %s", path);
		goto out;
	}
	size_t len = 0;
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, text + len, (size_t)st.st_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = p11ca_fail(em, P11CA_E_CONFIG, "cannot read roles file %s: %s", path,
					 n < 0 ? strerror(errno) : "file shrank while read");
			goto out;
		}
		len += (size_t)n;
	}
	err = rpc_role_table_parse(t, text, len, path, em);
out:
	free(text);
	close(fd);
	return err;
}

P11CA_MUST_CHECK static enum p11ca_err
load_roles(const struct rpc_server_options *o, struct rpc_role_table **out, struct p11ca_errmsg *em)
{
	struct rpc_role_table *t = NULL;
	enum p11ca_err err = rpc_role_table_new(&t, em);

	if (err == P11CA_OK && o->roles_file != NULL)
		err = read_roles_file(t, o->roles_file, em);
	for (size_t i = 0; err == P11CA_OK && i < o->n_inline_roles; i++)
		err = rpc_role_table_add_entry(t, o->inline_roles[2 * i],
					       o->inline_roles[2 * i + 1], em);
	if (err != P11CA_OK) {
		rpc_role_table_free(&t);
		return err;
	}
	*out = t;
	return P11CA_OK;
}

static void server_wake(struct rpc_server *s)
{
	uint64_t one = 1;
	/* The counter only ever grows and nobody reads it, so it stays readable for good. */
	while (write(s->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* Runs chan_wait: its return while the server is not stopping means the engine is gone. */
static void *engine_watch(void *arg)
{
	struct rpc_server *s = arg;
	struct p11ca_errmsg em = {0};
	enum p11ca_err err = chan_wait(s->engine, &em);

	if (!atomic_load(&s->stopping)) {
		s->link_em = em;
		if (err == P11CA_OK)
			p11ca_fail(&s->link_em, P11CA_E_IO, "the engine closed the link");
		atomic_store(&s->link_down, true);
	}
	server_wake(s);
	return NULL;
}

/* Join the threads of connections that have ended, freeing their slots. */
static void reap(struct rpc_server *s)
{
	for (unsigned i = 0; i < s->max_conns; i++) {
		struct rpc_server_slot *sl = &s->slots[i];
		if (sl->used && atomic_load(&sl->done)) {
			pthread_join(sl->thread, NULL);
			sl->used = false;
		}
	}
}

/* Hand an accepted socket to a free slot's thread, or close it at once. */
static void dispatch(struct rpc_server *s, int fd)
{
	struct rpc_server_slot *sl = NULL;
	struct rpc_conn *c = NULL;
	char peer[RPC_PEER_SIZE];

	rpc_conn_peer_name(fd, peer);
	reap(s);
	for (unsigned i = 0; i < s->max_conns && sl == NULL; i++)
		if (!s->slots[i].used)
			sl = &s->slots[i];
	if (sl == NULL) {
		p11ca_logf(s->log, LOG_WARNING,
			   "rpc: %s refused: %u connections already open (max_connections)", peer,
			   s->max_conns);
		goto out;
	}
	if (rpc_conn_new(s, fd, peer, &c) != P11CA_OK) {
		p11ca_logf(s->log, LOG_ERR, "rpc: %s refused: out of memory for a connection",
			   peer);
		goto out;
	}
	fd = -1; /* the connection owns it now */
	atomic_store(&sl->done, false);
	c->slot = sl;
	int rc = pthread_create(&sl->thread, NULL, rpc_conn_main, c);
	if (rc != 0) {
		p11ca_logf(s->log, LOG_ERR, "rpc: %s refused: cannot start a thread: %s", peer,
			   strerror(rc));
		rpc_conn_free(&c);
		goto out;
	}
	sl->used = true;
out:
	if (fd >= 0)
		close(fd);
}

/* Accept until stop_fd or the wake event fires (P11CA_OK), or poll fails (P11CA_E_IO). */
P11CA_MUST_CHECK static enum p11ca_err
accept_loop(struct rpc_server *s, const struct rpc_server_options *o, struct p11ca_errmsg *em)
{
	struct pollfd *pfd = s->pfd;
	size_t n = o->n_listen;
	int backoff = -1;

	pfd[n] = (struct pollfd){.fd = o->stop_fd, .events = POLLIN};
	pfd[n + 1] = (struct pollfd){.fd = s->wake_fd, .events = POLLIN};
	for (;;) {
		/* While backing off, listen only for the stop events. */
		int rc = backoff < 0 ? poll(pfd, n + 2, -1) : poll(pfd + n, 2, backoff);
		backoff = -1;
		if (rc < 0 && errno != EINTR)
			return p11ca_fail(em, P11CA_E_IO, "rpc: poll on the listeners: %s",
					  strerror(errno));
		if (rc <= 0)
			continue;
		if (pfd[n].revents != 0 || pfd[n + 1].revents != 0)
			return P11CA_OK;
		for (size_t i = 0; i < n; i++) {
			if (pfd[i].revents == 0)
				continue;
			if (pfd[i].revents & POLLNVAL) {
				/* Not a socket any more: stop polling it rather than spin. */
				p11ca_logf(s->log, LOG_ERR, "rpc: listening socket %d is invalid",
					   pfd[i].fd);
				pfd[i].fd = -1;
				continue;
			}
			int fd = accept4(pfd[i].fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (fd >= 0) {
				dispatch(s, fd);
			} else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
				   errno == ENOMEM) {
				p11ca_logf(s->log, LOG_ERR, "rpc: accept: %s", strerror(errno));
				backoff = ACCEPT_BACKOFF_MS;
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
				   errno != ECONNABORTED) {
				p11ca_logf(s->log, LOG_WARNING, "rpc: accept: %s", strerror(errno));
			}
		}
	}
}

P11CA_MUST_CHECK static enum p11ca_err open_engine(struct rpc_server *s, int fd,
						   struct p11ca_errmsg *em)
{
	const struct chan_spec spec = {
		.name = "rpc→engine",
		.out_fields = p11ca_forward_v1_ToEngine_fields,
		.out_size = sizeof(p11ca_forward_v1_ToEngine),
		.in_fields = p11ca_forward_v1_FromEngine_fields,
		.in_size = sizeof(p11ca_forward_v1_FromEngine),
		.max_frame = RPC_FORWARD_MAX_FRAME,
		.is_server = 0,
		.log = s->log,
	};
	return chan_open(fd, &spec, &s->engine, em);
}

static void server_free(struct rpc_server **sp)
{
	struct rpc_server *s = *sp;

	if (s == NULL)
		return;
	atomic_store(&s->stopping, true);
	if (s->engine != NULL)
		chan_shutdown(s->engine);
	if (s->watching)
		pthread_join(s->watcher, NULL);
	chan_close(&s->engine);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	rpc_tls_ctx_free(&s->tls);
	rpc_role_table_free(&s->roles);
	free(s->slots);
	free(s->pfd);
	free(s);
	*sp = NULL;
}

/* Everything but the listeners' ownership: those stay with rpc_server_run. The engine fd is
 * taken over (closed on failure too). */
P11CA_MUST_CHECK static enum p11ca_err server_new(const struct rpc_server_options *o,
						  struct rpc_server **out, struct p11ca_errmsg *em)
{
	struct rpc_server *s = calloc(1, sizeof(*s));
	int engine_fd = o->engine_fd;
	enum p11ca_err err = P11CA_OK;

	if (s == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory starting the rpc server");
		goto out;
	}
	s->wake_fd = -1;
	s->log = o->log;
	s->max_conns = o->max_connections ? o->max_connections : CONFIG_RPC_MAX_CONNECTIONS;
	s->io_timeout_ms = o->io_timeout_ms ? o->io_timeout_ms : CONFIG_RPC_IO_TIMEOUT_MS;
	s->slots = calloc(s->max_conns, sizeof(*s->slots));
	s->pfd = calloc(o->n_listen + 2, sizeof(*s->pfd));
	if (s->slots == NULL || s->pfd == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory for %u connection slots",
				 s->max_conns);
		goto out;
	}
	for (size_t i = 0; i < o->n_listen; i++) {
		s->pfd[i] = (struct pollfd){.fd = o->listen_fds[i], .events = POLLIN};
		int fl = fcntl(o->listen_fds[i], F_GETFL);
		if (fl < 0 || fcntl(o->listen_fds[i], F_SETFL, fl | O_NONBLOCK) < 0) {
			err = p11ca_fail(em, P11CA_E_IO, "listening socket %d: %s",
					 o->listen_fds[i], strerror(errno));
			goto out;
		}
	}
	err = rpc_tls_server_ctx_new(o->ca_file, o->cert_file, o->key_file, &s->tls, em);
	if (err == P11CA_OK)
		err = load_roles(o, &s->roles, em);
	if (err != P11CA_OK)
		goto out;
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->wake_fd < 0) {
		err = p11ca_fail(em, P11CA_E_INTERNAL, "eventfd: %s", strerror(errno));
		goto out;
	}
	/* Every file is read by now, and no thread runs yet: the engine link starts the first
	 * (no-new-privs is per thread, so threads started later inherit it). glibc loads the
	 * time zone (/etc/localtime) the first time gmtime_r runs, which is in OpenSSL's
	 * certificate time check during the first handshake: load it now. */
	tzset();
	if (o->sandbox != NULL) {
		err = o->sandbox(o->sandbox_arg, em);
		if (err != P11CA_OK)
			goto out;
	}
	err = open_engine(s, engine_fd, em);
	engine_fd = -1; /* chan_open closed it on failure */
	if (err != P11CA_OK)
		goto out;
	int rc = pthread_create(&s->watcher, NULL, engine_watch, s);
	if (rc != 0) {
		err = p11ca_fail(em, P11CA_E_INTERNAL, "cannot start a thread: %s", strerror(rc));
		goto out;
	}
	s->watching = true;
	*out = s;
	s = NULL;
out:
	if (engine_fd >= 0)
		close(engine_fd);
	server_free(&s);
	return err;
}

enum p11ca_err rpc_server_run(const struct rpc_server_options *o, struct p11ca_errmsg *em)
{
	struct p11ca_errmsg own_em = {0};
	struct rpc_server *s = NULL;
	enum p11ca_err err;

	if (em == NULL)
		em = &own_em; /* the reason is logged, so keep it even if the caller does not */
	if (o == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_server_run: no options");
	if ((o->n_listen > 0 && o->listen_fds == NULL) ||
	    (o->n_inline_roles > 0 && o->inline_roles == NULL)) {
		/* Still taken over: close what can be closed. */
		if (o->engine_fd >= 0)
			close(o->engine_fd);
		for (size_t i = 0; o->listen_fds != NULL && i < o->n_listen; i++)
			close(o->listen_fds[i]);
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_server_run: bad options");
	}
	err = server_new(o, &s, em);
	if (err != P11CA_OK)
		goto out;
	p11ca_logf(s->log, LOG_INFO,
		   "rpc: serving on %zu socket(s), %zu role entries, at most %u connections, %u ms "
		   "I/O timeout",
		   o->n_listen, rpc_role_table_count(s->roles), s->max_conns, s->io_timeout_ms);

	err = accept_loop(s, o, em);

	/* Stop: idle connections see the wake event and close; a request already read is
	 * answered first (its engine call included). */
	atomic_store(&s->stopping, true);
	server_wake(s);
	for (unsigned i = 0; i < s->max_conns; i++)
		if (s->slots[i].used)
			pthread_join(s->slots[i].thread, NULL);
	if (err == P11CA_OK && atomic_load(&s->link_down))
		err = p11ca_fail(em, P11CA_E_IO,
				 "rpc: engine link lost (%s); stopping so the parent can restart "
				 "the rpc process",
				 p11ca_errmsg_text(&s->link_em));
	if (err != P11CA_OK)
		p11ca_logf(s->log, LOG_ERR, "%s", p11ca_errmsg_text(em));
	else
		p11ca_logf(s->log, LOG_INFO, "rpc: stopped");
out:
	server_free(&s);
	for (size_t i = 0; i < o->n_listen; i++)
		close(o->listen_fds[i]);
	return err;
}
