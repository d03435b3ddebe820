/*
 * Group commit (see commit.h). Jobs live on their submitters' stacks; the committer links
 * them into a queue, so submitting never allocates.
 */
#include "appliance/engine/commit.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct commit_job {
	commit_fn fn;
	void *arg;
	struct p11ca_errmsg em;
	enum p11ca_err err;
	bool failed; /* fn failed: left out of the re-run */
	bool done;
	struct commit_job *next;
};

struct commit {
	struct store *st;
	const struct p11ca_logger *log;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t queued; /* the committer waits for jobs */
	pthread_cond_t done;   /* submitters wait for their job */
	struct commit_job *head, *tail;
	bool stopping;
	unsigned long batches, jobs;
};

/* Run every job of the batch not yet failed in one transaction. Returns true when a job
 * failed (the transaction was aborted and the batch must run again without it). */
static bool batch_try(struct commit *c, struct commit_job *batch, enum p11ca_err *commit_err,
		      struct p11ca_errmsg *commit_em)
{
	struct store_txn *txn = NULL;
	enum p11ca_err err = store_txn_begin(c->st, STORE_TXN_WRITE, &txn, commit_em);
	if (err != P11CA_OK) {
		*commit_err = err;
		return false;
	}
	for (struct commit_job *j = batch; j != NULL; j = j->next) {
		if (j->failed)
			continue;
		p11ca_errmsg_clear(&j->em);
		j->err = j->fn(txn, j->arg, &j->em);
		if (j->err != P11CA_OK) {
			j->failed = true;
			store_txn_abort(&txn);
			return true;
		}
	}
	*commit_err = store_txn_commit(&txn, commit_em);
	return false;
}

static void batch_run(struct commit *c, struct commit_job *batch)
{
	enum p11ca_err commit_err = P11CA_OK;
	struct p11ca_errmsg commit_em;
	p11ca_errmsg_clear(&commit_em);
	while (batch_try(c, batch, &commit_err, &commit_em))
		p11ca_errmsg_clear(&commit_em);
	if (commit_err != P11CA_OK)
		p11ca_logf(c->log, LOG_ERR, "engine: group commit failed: %s",
			   p11ca_errmsg_text(&commit_em));

	pthread_mutex_lock(&c->lock);
	c->batches++;
	for (struct commit_job *j = batch; j != NULL;) {
		struct commit_job *next = j->next; /* j may vanish once done is seen */
		c->jobs++;
		if (!j->failed && commit_err != P11CA_OK) {
			j->err = commit_err;
			j->em = commit_em;
			j->em.code = commit_err;
		}
		j->done = true;
		j = next;
	}
	pthread_cond_broadcast(&c->done);
	pthread_mutex_unlock(&c->lock);
}

static void *committer(void *arg)
{
	struct commit *c = arg;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (c->head == NULL && !c->stopping)
			pthread_cond_wait(&c->queued, &c->lock);
		if (c->head == NULL)
			break;
		struct commit_job *batch = c->head;
		c->head = c->tail = NULL;
		pthread_mutex_unlock(&c->lock);
		batch_run(c, batch);
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

enum p11ca_err commit_start(struct store *st, const struct p11ca_logger *log, struct commit **out,
			    struct p11ca_errmsg *em)
{
	if (st == NULL || out == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "commit_start: NULL argument");
	struct commit *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory starting the committer");
	c->st = st;
	c->log = log;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->queued, NULL);
	pthread_cond_init(&c->done, NULL);
	if (pthread_create(&c->thread, NULL, committer, c) != 0) {
		pthread_cond_destroy(&c->done);
		pthread_cond_destroy(&c->queued);
		pthread_mutex_destroy(&c->lock);
		free(c);
		return p11ca_fail(em, P11CA_E_INTERNAL, "cannot start the committer thread");
	}
	*out = c;
	return P11CA_OK;
}

enum p11ca_err commit_run(struct commit *c, commit_fn fn, void *arg, struct p11ca_errmsg *em)
{
	if (c == NULL || fn == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "commit_run: NULL argument");
	struct commit_job job = {.fn = fn, .arg = arg};
	pthread_mutex_lock(&c->lock);
	if (c->stopping) {
		pthread_mutex_unlock(&c->lock);
		return p11ca_fail(em, P11CA_E_IO, "the engine is stopping: retry after restart");
	}
	if (c->tail != NULL)
		c->tail->next = &job;
	else
		c->head = &job;
	c->tail = &job;
	pthread_cond_signal(&c->queued);
	while (!job.done)
		pthread_cond_wait(&c->done, &c->lock);
	pthread_mutex_unlock(&c->lock);
	if (job.err != P11CA_OK)
		return p11ca_fail(em, job.err, "%s", p11ca_errmsg_text(&job.em));
	return P11CA_OK;
}

void commit_counters(struct commit *c, unsigned long *batches, unsigned long *jobs,
		     unsigned long *queued)
{
	pthread_mutex_lock(&c->lock);
	if (queued != NULL) {
		*queued = 0;
		for (const struct commit_job *j = c->head; j != NULL; j = j->next)
			(*queued)++;
	}
	if (batches != NULL)
		*batches = c->batches;
	if (jobs != NULL)
		*jobs = c->jobs;
	pthread_mutex_unlock(&c->lock);
}

void commit_stop(struct commit **cp)
{
	if (cp == NULL || *cp == NULL)
		return;
	struct commit *c = *cp;
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_signal(&c->queued);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	pthread_cond_destroy(&c->done);
	pthread_cond_destroy(&c->queued);
	pthread_mutex_destroy(&c->lock);
	free(c);
	*cp = NULL;
}
