/*
 * cert_watchers: who is told before a certificate expires. Addresses are checked as
 * addr-specs (config_addr_spec_check: nothing that could add a recipient or a header to
 * the notification) and compared ignoring case. The new list is computed inside the write
 * transaction from the stored one, so a notification pass recording notified_days at the
 * same time is never undone; a watcher that stays keeps what was already sent to it.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "appliance/config_internal.h"
#include "appliance/engine/engine_internal.h"

struct watchers_job {
	const p11ca_v1_CertWatchersRequest *r;
	uint32_t ca_id;
	uint8_t serial[STORE_SERIAL_LEN];
	const char *actor;
	struct store_cert cert; /* out: as stored after the change */
};

static bool listed(const struct store_watcher *w, size_t n, const char *email)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(w[i].email, email) == 0)
			return true;
	return false;
}

static bool in_request(const char list[][255], pb_size_t n, const char *email)
{
	for (pb_size_t i = 0; i < n; i++)
		if (strcasecmp(list[i], email) == 0)
			return true;
	return false;
}

/* "add a@x, b@y; remove c@z" into out, as much as fits (audit details are bounded). */
static void details_format(const p11ca_v1_CertWatchersRequest *r, char *out, size_t cap)
{
	size_t len = 0;
	out[0] = '\0';
	for (int pass = 0; pass < 2; pass++) {
		pb_size_t n = pass == 0 ? r->add_count : r->remove_count;
		for (pb_size_t i = 0; i < n; i++) {
			const char *e = pass == 0 ? r->add[i] : r->remove[i];
			const char *sep = i > 0	    ? ", "
					  : len > 0 ? "; remove "
					  : pass    ? "remove "
						    : "add ";
			int k = snprintf(out + len, cap - len, "%s%s", sep, e);
			if (k < 0 || (size_t)k >= cap - len) {
				out[len] = '\0';
				return;
			}
			len += (size_t)k;
		}
	}
}

static enum p11ca_err watchers_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct watchers_job *j = arg;
	const p11ca_v1_CertWatchersRequest *r = j->r;
	struct store_watcher w[STORE_WATCHERS_MAX];
	size_t n = 0;
	char hex[2 * STORE_SERIAL_LEN + 1], details[STORE_AUDIT_DETAILS_MAX + 1];

	P11CA_GUARD(store_cert_get(txn, j->ca_id, j->serial, &j->cert, em));
	for (size_t i = 0; i < j->cert.n_watchers; i++)
		if (!in_request(r->remove, r->remove_count, j->cert.watchers[i].email))
			w[n++] = j->cert.watchers[i];
	for (pb_size_t i = 0; i < r->add_count; i++) {
		if (listed(w, n, r->add[i]))
			continue;
		if (n == STORE_WATCHERS_MAX)
			return p11ca_fail(
				em, P11CA_E_INVALID_ARG,
				"a certificate has at most %d watchers: remove some first",
				STORE_WATCHERS_MAX);
		memset(&w[n], 0, sizeof(w[n]));
		snprintf(w[n].email, sizeof(w[n].email), "%s", r->add[i]);
		n++;
	}
	P11CA_GUARD(store_cert_watchers_set(txn, j->ca_id, j->serial, w, n, em));
	memcpy(j->cert.watchers, w, n * sizeof(w[0]));
	j->cert.n_watchers = n;
	engine_hex_format(j->serial, STORE_SERIAL_LEN, hex);
	details_format(r, details, sizeof(details));
	return store_audit_append(txn, "cert.watchers", j->actor, hex, details, NULL, em);
}

enum p11ca_err engine_op_cert_watchers(struct engine_call *c, p11ca_v1_Request *req,
				       p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CertWatchersRequest *r = &req->op.cert_watchers;
	p11ca_v1_CertWatchersResponse *out = &resp->result.cert_watchers;
	struct watchers_job *job = OPENSSL_zalloc(sizeof(*job));
	struct store_serial_info info;
	struct store_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	struct store_txn *txn = NULL;
	char why[300];
	enum p11ca_err err = P11CA_OK;

	if (job == NULL || ca == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	for (pb_size_t i = 0; i < r->add_count && err == P11CA_OK; i++)
		if (config_addr_spec_check(r->add[i], why, sizeof(why)) != P11CA_OK)
			err = p11ca_fail(em, P11CA_E_INVALID_ARG, "cannot add a watcher: %s", why);
	for (pb_size_t i = 0; i < r->add_count && err == P11CA_OK; i++)
		if (in_request(r->remove, r->remove_count, r->add[i]))
			err = p11ca_fail(em, P11CA_E_INVALID_ARG,
					 "%s is both added and removed: give it once", r->add[i]);
	if (err == P11CA_OK)
		err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_serial_select(txn, r->serial, job->serial, em);
	if (err == P11CA_OK)
		err = store_serial_get(txn, job->serial, &info, em);
	if (err == P11CA_OK && info.state != STORE_SERIAL_ISSUED)
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "serial %s has no certificate to watch (orphaned or in progress)",
				 r->serial);
	if (err == P11CA_OK)
		err = store_ca_get(txn, info.ca_id, ca, em);
	store_txn_abort(&txn);
	if (err != P11CA_OK)
		goto out;

	job->r = r;
	job->ca_id = info.ca_id;
	job->actor = c->actor;
	err = commit_run(c->eng->commit, watchers_job_fn, job, em);
	if (err == P11CA_OK)
		err = engine_cert_summary(&job->cert, ca->name, &out->cert, em);
	if (err != P11CA_OK)
		goto out;
	out->has_cert = true;
	for (size_t i = 0; i < job->cert.n_watchers; i++)
		snprintf(out->watchers[out->watchers_count++], sizeof(out->watchers[0]), "%s",
			 job->cert.watchers[i].email);
out:
	OPENSSL_free(job);
	OPENSSL_free(ca);
	return err;
}
