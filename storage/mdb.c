/*
 * The only file that calls LMDB's data functions and knows LMDB and errno codes: every
 * code is translated here, once, into p11ca's error space (store_mdb_err), and every
 * get, put, delete and cursor step of storage/ goes through the helpers below.
 */
#include "storage/store_internal.h"

#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

struct mdb_err_map {
	int rc;
	enum p11ca_err code;
	bool fatal; /* LMDB requires the transaction to be aborted */
	const char *hint;
};

/* Tables over switch-ladders: one row per foreign code we know how to explain. */
static const struct mdb_err_map mdb_err_table[] = {
	{MDB_NOTFOUND, P11CA_E_STORAGE_NOT_FOUND, false, "no such record"},
	{MDB_KEYEXIST, P11CA_E_STORAGE_EXISTS, false, "a record with that key already exists"},
	{MDB_MAP_FULL, P11CA_E_STORAGE_FULL, true,
	 "the database map is full and the transaction was aborted: raise [storage] "
	 "map_size_mb in the configuration and restart"},
	{MDB_TXN_FULL, P11CA_E_STORAGE_FULL, true,
	 "the transaction holds too many dirty pages: commit smaller batches"},
	{MDB_CURSOR_FULL, P11CA_E_STORAGE_FULL, true, "cursor stack too deep"},
	{MDB_READERS_FULL, P11CA_E_STORAGE, true,
	 "no free reader slot: raise CONFIG_STORE_MAX_READERS or end idle readers"},
	{MDB_MAP_RESIZED, P11CA_E_STORAGE, true,
	 "another process grew the map: restart this process"},
	{MDB_CORRUPTED, P11CA_E_STORAGE_CORRUPT, true, "restore the database from a backup"},
	{MDB_PAGE_NOTFOUND, P11CA_E_STORAGE_CORRUPT, true, "restore the database from a backup"},
	{MDB_INVALID, P11CA_E_STORAGE_CORRUPT, true,
	 "the file is not an LMDB database: check the configured path"},
	{MDB_INCOMPATIBLE, P11CA_E_STORAGE_CORRUPT, true,
	 "a database has unexpected flags: check the configured path"},
	{MDB_VERSION_MISMATCH, P11CA_E_STORAGE_VERSION, true,
	 "the file was written by another LMDB version: use that version's mdb_dump to move it"},
	{MDB_PANIC, P11CA_E_STORAGE_IO, true, "LMDB hit a fatal error: restart the process"},
	{MDB_BAD_TXN, P11CA_E_INTERNAL, true, "transaction used after a failure"},
	{MDB_BAD_RSLOT, P11CA_E_INTERNAL, true, "reader slot misuse"},
	{MDB_BAD_VALSIZE, P11CA_E_INTERNAL, true, "key or value size unsupported"},
	{MDB_BAD_DBI, P11CA_E_INTERNAL, true, "database handle unusable"},
	{MDB_TLS_FULL, P11CA_E_INTERNAL, true, "thread-local storage exhausted"},
	{EIO, P11CA_E_STORAGE_IO, true,
	 "nothing was committed and the database stays readable: check the disk (dmesg)"},
	{ENOSPC, P11CA_E_STORAGE_FULL, true,
	 "the disk is full: nothing was committed and the database stays readable; free space"},
	{EFBIG, P11CA_E_STORAGE_FULL, true,
	 "file size limit reached: nothing was committed and the database stays readable"},
	{EDQUOT, P11CA_E_STORAGE_FULL, true,
	 "disk quota exceeded: nothing was committed and the database stays readable"},
	{EEXIST, P11CA_E_STORAGE_EXISTS, false, "the target already exists"},
	{ENOMEM, P11CA_E_NOMEM, true, "out of memory or address space"},
	{EACCES, P11CA_E_STORAGE_IO, true, "permission denied: check owner and mode"},
	{EPERM, P11CA_E_STORAGE_IO, true, "permission denied: check owner and mode"},
	{EROFS, P11CA_E_STORAGE_IO, true, "read-only file system"},
	{ENOENT, P11CA_E_STORAGE_IO, true, "no such file or directory"},
	{ENOTDIR, P11CA_E_STORAGE_IO, true, "not a directory"},
	{EINVAL, P11CA_E_INTERNAL, true, "invalid argument to LMDB"},
};

enum p11ca_err store_mdb_err(struct store_txn *txn, int rc, const char *what,
			     struct p11ca_errmsg *em)
{
	if (rc == MDB_SUCCESS)
		return P11CA_OK;

	enum p11ca_err code = P11CA_E_STORAGE;
	bool fatal = true;
	const char *hint = "see the LMDB documentation";
	for (size_t i = 0; i < sizeof(mdb_err_table) / sizeof(mdb_err_table[0]); i++) {
		if (mdb_err_table[i].rc == rc) {
			code = mdb_err_table[i].code;
			fatal = mdb_err_table[i].fatal;
			hint = mdb_err_table[i].hint;
			break;
		}
	}
	if (fatal && txn != NULL && txn->write && txn->dead == P11CA_OK)
		txn->dead = code;
	return p11ca_fail(em, code, "%s: %s (%s)", what, hint, mdb_strerror(rc));
}

enum p11ca_err store_txn_usable(struct store_txn *txn, bool write, struct p11ca_errmsg *em)
{
	if (txn == NULL || txn->mtxn == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "no transaction");
	if (txn->dead != P11CA_OK)
		return p11ca_fail(em, txn->dead,
				  "this transaction failed earlier (%s) and must be aborted",
				  p11ca_strerror(txn->dead));
	if (write && !txn->write)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "a write operation was called on a read transaction");
	return P11CA_OK;
}

/* ---- raw access: every mdb_* data call goes through here ---------------------------- */

enum p11ca_err store_raw_get(struct store_txn *txn, enum store_db db, const void *key, size_t klen,
			     MDB_val *val, struct p11ca_errmsg *em)
{
	P11CA_GUARD(store_txn_usable(txn, false, em));
	MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
	int rc = mdb_get(txn->mtxn, txn->st->dbi[db], &k, val);
	if (rc == MDB_NOTFOUND)
		return P11CA_E_STORAGE_NOT_FOUND; /* the caller knows what was missing */
	return store_mdb_err(txn, rc, store_db_names[db], em);
}

static enum p11ca_err raw_put(struct store_txn *txn, enum store_db db, const void *key, size_t klen,
			      MDB_val *v, unsigned flags, struct p11ca_errmsg *em)
{
	P11CA_GUARD(store_txn_usable(txn, true, em));
	MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
	int rc = mdb_put(txn->mtxn, txn->st->dbi[db], &k, v, flags);
	if (rc != MDB_SUCCESS)
		return store_mdb_err(txn, rc, store_db_names[db], em);
	txn->unaudited++;
	return P11CA_OK;
}

enum p11ca_err store_raw_put(struct store_txn *txn, enum store_db db, const void *key, size_t klen,
			     const void *val, size_t vlen, struct p11ca_errmsg *em)
{
	MDB_val v = {.mv_size = vlen, .mv_data = (void *)val};
	return raw_put(txn, db, key, klen, &v, 0, em);
}

enum p11ca_err store_raw_reserve(struct store_txn *txn, enum store_db db, const void *key,
				 size_t klen, size_t vlen, void **val, struct p11ca_errmsg *em)
{
	MDB_val v = {.mv_size = vlen, .mv_data = NULL};
	P11CA_GUARD(raw_put(txn, db, key, klen, &v, MDB_RESERVE, em));
	*val = v.mv_data;
	return P11CA_OK;
}

enum p11ca_err store_raw_del(struct store_txn *txn, enum store_db db, const void *key, size_t klen,
			     struct p11ca_errmsg *em)
{
	P11CA_GUARD(store_txn_usable(txn, true, em));
	MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
	int rc = mdb_del(txn->mtxn, txn->st->dbi[db], &k, NULL);
	if (rc == MDB_NOTFOUND)
		return P11CA_E_STORAGE_NOT_FOUND;
	if (rc != MDB_SUCCESS)
		return store_mdb_err(txn, rc, store_db_names[db], em);
	txn->unaudited++;
	return P11CA_OK;
}

enum p11ca_err store_cursor_open(struct store_txn *txn, enum store_db db, MDB_cursor **cur,
				 struct p11ca_errmsg *em)
{
	*cur = NULL;
	P11CA_GUARD(store_txn_usable(txn, false, em));
	return store_mdb_err(txn, mdb_cursor_open(txn->mtxn, txn->st->dbi[db], cur),
			     store_db_names[db], em);
}

enum p11ca_err store_cursor_get(struct store_txn *txn, MDB_cursor *cur, MDB_val *key, MDB_val *val,
				int op, struct p11ca_errmsg *em)
{
	int rc = mdb_cursor_get(cur, key, val, (MDB_cursor_op)op);
	if (rc == MDB_NOTFOUND)
		return P11CA_E_STORAGE_NOT_FOUND; /* end of the range: not worth a message */
	return store_mdb_err(txn, rc, "walking a cursor", em);
}

void store_cursor_close(MDB_cursor **cur)
{
	if (cur == NULL || *cur == NULL)
		return;
	mdb_cursor_close(*cur);
	*cur = NULL;
}

/* ---- commit errors ---------------------------------------------------------------- */

/* Below this much free space, a failed write is blamed on a full disk. */
#define STORE_DISK_LOW (16u * 1024u * 1024u)

/*
 * LMDB reports a short write as EIO (measured: a full disk gives EIO, not ENOSPC), and a
 * short write is what a full disk or a file size limit produce. Look for those before
 * blaming the medium, so the operator is told to free space rather than to replace a
 * disk.
 */
int store_commit_errno(const struct store *st, int rc)
{
	if (rc != EIO)
		return rc;
	struct statvfs vfs;
	if (statvfs(st->path, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < STORE_DISK_LOW)
		return ENOSPC;
	char file[PATH_MAX + 16];
	struct stat sb;
	struct rlimit rl;
	snprintf(file, sizeof(file), "%s/data.mdb", st->path);
	if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    stat(file, &sb) == 0 && (uint64_t)sb.st_size + 2u * st->page_size >= rl.rlim_cur)
		return EFBIG;
	return EIO;
}
