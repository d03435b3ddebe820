/*
 * The LMDB environment (open, close, reader check, usage, backup), transactions, and the
 * soft quota. LMDB codes are translated by storage/mdb.c.
 */
#include "storage/store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/kconfig.h"

/* LMDB refuses to start in much less; keeping a floor gives a clear message instead. */
#define STORE_MIN_MAP_SIZE (64u * 1024u)

/* Flags that give up durability or robustness (see store_open in store.h). The API cannot
 * set them; this guards against a future change that would. */
#define STORE_UNSAFE_FLAGS (MDB_NOSYNC | MDB_NOMETASYNC | MDB_MAPASYNC | MDB_WRITEMAP)

/* ---- quota ------------------------------------------------------------------------ */

static void usage_fill(struct store *st, struct store_usage *u)
{
	MDB_envinfo info;
	mdb_env_info(st->env, &info);
	u->map_size = info.me_mapsize;
	u->page_size = st->page_size;
	/* The high-water mark of the committed state: pages freed since are reused, but the
	 * map cannot shrink, so this is what decides when MDB_MAP_FULL comes. */
	u->used = (info.me_last_pgno + 1) * (size_t)st->page_size;
	u->soft_quota = info.me_mapsize / 100 * st->soft_quota_percent;
	u->schema_version = st->schema_version;
}

enum p11ca_err store_quota_check(struct store_txn *txn, struct p11ca_errmsg *em)
{
	struct store_usage u;
	usage_fill(txn->st, &u);
	if (txn->st->soft_quota_percent >= 100 || u.used <= u.soft_quota)
		return P11CA_OK;
	return p11ca_fail(
		em, P11CA_E_STORAGE_FULL,
		"database %s is past its soft quota (%zu KiB used of a %zu KiB map, "
		"quota %zu%%): new issuance is refused; raise [storage] map_size_mb in the "
		"configuration and restart p11cad (revocation, CRLs and audit still work)",
		txn->st->path, u.used / 1024, u.map_size / 1024, txn->st->soft_quota_percent);
}

enum p11ca_err store_usage_get(struct store *st, struct store_usage *out, struct p11ca_errmsg *em)
{
	if (st == NULL || out == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_usage_get: NULL argument");
	usage_fill(st, out);
	return P11CA_OK;
}

/* ---- transactions ------------------------------------------------------------------ */

enum p11ca_err store_txn_begin_internal(struct store *st, bool write, struct store_txn **out,
					struct p11ca_errmsg *em)
{
	struct store_txn *txn = calloc(1, sizeof(*txn));
	if (txn == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "allocating a transaction");
	txn->st = st;
	txn->write = write;
	int rc = mdb_txn_begin(st->env, NULL, write ? 0 : MDB_RDONLY, &txn->mtxn);
	if (rc != MDB_SUCCESS) {
		free(txn);
		return store_mdb_err(NULL, rc, "beginning a transaction", em);
	}
	*out = txn;
	return P11CA_OK;
}

enum p11ca_err store_txn_begin(struct store *st, enum store_txn_mode mode, struct store_txn **out,
			       struct p11ca_errmsg *em)
{
	if (out != NULL)
		*out = NULL;
	if (st == NULL || out == NULL || (mode != STORE_TXN_READ && mode != STORE_TXN_WRITE))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_txn_begin: bad argument");
	if (mode == STORE_TXN_WRITE && st->read_only)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "database %s was opened read-only: no write transaction",
				  st->path);
	return store_txn_begin_internal(st, mode == STORE_TXN_WRITE, out, em);
}

enum p11ca_err store_txn_commit(struct store_txn **ptxn, struct p11ca_errmsg *em)
{
	if (ptxn == NULL || *ptxn == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_txn_commit: no transaction");
	struct store_txn *txn = *ptxn;
	*ptxn = NULL;
	enum p11ca_err err = P11CA_OK;

	if (txn->dead != P11CA_OK) {
		err = p11ca_fail(em, txn->dead,
				 "transaction aborted after an earlier failure: nothing committed");
		mdb_txn_abort(txn->mtxn);
	} else if (txn->unaudited != 0) {
		err = p11ca_fail(em, P11CA_E_INTERNAL,
				 "write transaction changed %lu record(s) with no audit record "
				 "after them: aborted, nothing committed",
				 txn->unaudited);
		mdb_txn_abort(txn->mtxn);
	} else {
		int rc = mdb_txn_commit(txn->mtxn);
		err = store_mdb_err(NULL, store_commit_errno(txn->st, rc),
				    "committing a transaction", em);
	}
	free(txn);
	return err;
}

void store_txn_abort(struct store_txn **ptxn)
{
	if (ptxn == NULL || *ptxn == NULL)
		return;
	if ((*ptxn)->mtxn != NULL)
		mdb_txn_abort((*ptxn)->mtxn);
	free(*ptxn);
	*ptxn = NULL;
}

/* ---- environment ------------------------------------------------------------------- */

enum p11ca_err store_readers_check(struct store *st, int *cleared, struct p11ca_errmsg *em)
{
	if (st == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_readers_check: no store");
	int dead = 0;
	P11CA_GUARD(store_mdb_err(NULL, mdb_reader_check(st->env, &dead), "checking readers", em));
	if (dead > 0)
		p11ca_logf(st->logger, LOG_NOTICE,
			   "storage %s: cleared %d stale reader slot(s) left by dead processes",
			   st->path, dead);
	if (cleared != NULL)
		*cleared = dead;
	return P11CA_OK;
}

/* LMDB opens data.mdb (and, without MDB_WRITEMAP, a second descriptor of it) without
 * close-on-exec: a program the process starts would inherit write access to the whole
 * database. Mark every descriptor open on a file of the environment. */
static void env_cloexec(const struct store *st)
{
	char link[PATH_MAX], target[PATH_MAX], dir[PATH_MAX];
	if (realpath(st->path, dir) == NULL) /* /proc shows resolved paths */
		snprintf(dir, sizeof(dir), "%s", st->path);
	size_t plen = strlen(dir);
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	mdb_filehandle_t fd;
	if (mdb_env_get_fd(st->env, &fd) == MDB_SUCCESS)
		fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0 || (size_t)n <= plen || strncmp(target, dir, plen) != 0 ||
		    target[plen] != '/')
			continue;
		target[n] = '\0';
		int f = atoi(de->d_name);
		int flags = fcntl(f, F_GETFD);
		if (flags >= 0)
			fcntl(f, F_SETFD, flags | FD_CLOEXEC);
	}
	closedir(d);
}

static enum p11ca_err env_open(struct store *st, const struct store_options *opts, size_t map_size,
			       struct p11ca_errmsg *em)
{
	P11CA_GUARD(store_mdb_err(NULL, mdb_env_create(&st->env), "creating the environment", em));
	P11CA_GUARD(store_mdb_err(NULL, mdb_env_set_maxdbs(st->env, STORE_DB_COUNT + 4),
				  "configuring databases", em));
	P11CA_GUARD(store_mdb_err(NULL, mdb_env_set_mapsize(st->env, map_size),
				  "setting the map size", em));
	P11CA_GUARD(store_mdb_err(NULL, mdb_env_set_maxreaders(st->env, CONFIG_STORE_MAX_READERS),
				  "setting the reader slots", em));
	int rc = mdb_env_open(st->env, st->path, opts->read_only ? MDB_RDONLY : 0, 0600);
	if (rc != MDB_SUCCESS)
		return store_mdb_err(NULL, rc, st->path, em);
	env_cloexec(st);

	unsigned flags = 0;
	P11CA_GUARD(store_mdb_err(NULL, mdb_env_get_flags(st->env, &flags), "reading flags", em));
	if (flags & STORE_UNSAFE_FLAGS)
		return p11ca_fail(em, P11CA_E_INTERNAL, "%s: unsafe LMDB flags 0x%x", st->path,
				  flags & STORE_UNSAFE_FLAGS);
	MDB_stat ms;
	P11CA_GUARD(store_mdb_err(NULL, mdb_env_stat(st->env, &ms), "reading the page size", em));
	st->page_size = ms.ms_psize;
	return P11CA_OK;
}

enum p11ca_err store_open(const struct store_options *opts, struct store **out,
			  struct p11ca_errmsg *em)
{
	if (out != NULL)
		*out = NULL;
	if (opts == NULL || opts->path == NULL || opts->path[0] == '\0' || out == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_open: no path");

	size_t map_size = opts->map_size ? opts->map_size : (size_t)CONFIG_STORE_MAP_SIZE_MB << 20;
	size_t os_page = (size_t)sysconf(_SC_PAGESIZE);
	if (map_size < STORE_MIN_MAP_SIZE || map_size > SIZE_MAX - os_page)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "map size %zu bytes is below %u bytes",
				  map_size, STORE_MIN_MAP_SIZE);
	map_size = (map_size + os_page - 1) / os_page * os_page;
	unsigned pct = opts->soft_quota_percent ? opts->soft_quota_percent
						: CONFIG_STORE_SOFT_QUOTA_PERCENT;
	if (pct > 100)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "soft quota %u%% is over 100%%", pct);
	if (strlen(opts->path) >= sizeof(((struct store *)0)->path))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "database path too long");
	if (!opts->read_only && mkdir(opts->path, 0700) != 0 && errno != EEXIST)
		return store_mdb_err(NULL, errno, opts->path, em);

	struct store *st = calloc(1, sizeof(*st));
	if (st == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "allocating the store");
	strcpy(st->path, opts->path); /* length checked above */
	st->read_only = opts->read_only;
	st->soft_quota_percent = pct;
	st->logger = opts->logger;

	enum p11ca_err err = env_open(st, opts, map_size, em);
	if (err == P11CA_OK)
		err = store_readers_check(st, NULL, em);
	if (err == P11CA_OK)
		err = store_schema_open(st, opts->schema, em);
	if (err != P11CA_OK) {
		store_close(&st);
		return err;
	}

	struct store_usage u;
	usage_fill(st, &u);
	p11ca_logf(st->logger, LOG_INFO,
		   "storage %s: open%s, schema %u, %zu KiB used of a %zu KiB map", st->path,
		   st->read_only ? " read-only" : "", st->schema_version, u.used / 1024,
		   u.map_size / 1024);
	*out = st;
	return P11CA_OK;
}

void store_close(struct store **pst)
{
	if (pst == NULL || *pst == NULL)
		return;
	if ((*pst)->env != NULL)
		mdb_env_close((*pst)->env);
	free(*pst);
	*pst = NULL;
}

enum p11ca_err store_backup(struct store *st, const char *path, struct p11ca_errmsg *em)
{
	if (st == NULL || path == NULL || path[0] == '\0')
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "store_backup: no target directory");
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return store_mdb_err(NULL, errno, path, em);
	/* Compaction walks the B-trees in a read transaction, so writers carry on and the
	 * copy holds only live pages (it is also a defragmented restore image). */
	int rc = mdb_env_copy2(st->env, path, MDB_CP_COMPACT);
	if (rc != MDB_SUCCESS)
		return store_mdb_err(NULL, rc, path, em);
	p11ca_logf(st->logger, LOG_INFO, "storage %s: backed up to %s", st->path, path);
	return P11CA_OK;
}
