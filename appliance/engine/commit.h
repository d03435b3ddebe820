/*
 * appliance/engine/commit.h — group commit: one thread owns every write transaction.
 *
 * LMDB allows one writer, and a durable commit costs an fsync (~3,000/s here, less on real
 * disks). Workers therefore never open write transactions themselves: they submit a job
 * and block until the transaction holding it has committed (or failed). The committer
 * takes every queued job, runs them in one transaction and commits once, so concurrent
 * issuances share one fsync and each reply still follows its own durable commit.
 *
 * Isolation between jobs of one batch: when a job fails, the transaction is aborted and the
 * batch re-run without it, so one bad request never spoils the others. A job may therefore
 * run more than once; each run must start from its inputs and overwrite (not append to)
 * its outputs, and must not keep anything that points into the map after it returns.
 * A failed commit (disk full, EIO, map full) fails every job of the batch with that error.
 */
#ifndef P11CA_APPLIANCE_ENGINE_COMMIT_H
#define P11CA_APPLIANCE_ENGINE_COMMIT_H

#include "common/err.h"
#include "common/log.h"
#include "storage/store.h"

struct commit; /* opaque */

/* One unit of work inside a write transaction. It must append its own audit record after
 * its changes (storage refuses to commit unaudited changes). Runs on the committer thread:
 * it must not begin transactions of its own or block on anything but the store. */
typedef enum p11ca_err (*commit_fn)(struct store_txn *txn, void *arg, struct p11ca_errmsg *em);

/* Start the committer thread on `st` (borrowed; must outlive the committer).
 * Errors: P11CA_E_NOMEM, P11CA_E_INTERNAL (thread creation). */
P11CA_MUST_CHECK enum p11ca_err commit_start(struct store *st, const struct p11ca_logger *log,
					     struct commit **out, struct p11ca_errmsg *em);

/*
 * Run fn(txn, arg) in the next group transaction and wait until that transaction committed.
 * Returns P11CA_OK only once the job's changes are durable. Errors: whatever fn returned
 * (its transaction did not include the job's changes), the commit's error
 * (P11CA_E_STORAGE_FULL, P11CA_E_STORAGE_IO, …: nothing of the batch was written), or
 * P11CA_E_IO when the committer is stopping. Thread-safe.
 */
P11CA_MUST_CHECK enum p11ca_err commit_run(struct commit *c, commit_fn fn, void *arg,
					   struct p11ca_errmsg *em);

/* Batches committed and jobs finished so far, and jobs queued for the next batch (for
 * tests and status lines). Any pointer may be NULL. */
void commit_counters(struct commit *c, unsigned long *batches, unsigned long *jobs,
		     unsigned long *queued);

/* Finish every job already queued, refuse new ones, join the thread, free, set *c to NULL.
 * NULL-safe. */
void commit_stop(struct commit **c);

#endif
