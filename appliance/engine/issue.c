/*
 * The issuance sequence every certificate follows (ARCHITECTURE.md "Issuance, step by
 * step"): serial + TBS + intent + audit in one committed job; then the signer; then the
 * certificate + audit in a second job. The serial is burned from the first commit on, so a
 * signer failure leaves an intent that becomes an orphan at the next start.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "appliance/engine/engine_internal.h"
#include "hsm/signer.h"

struct intent_job {
	struct engine_issue *is;
	X509 *tbs; /* outputs: rebuilt on every run */
	uint8_t *tbs_der;
	size_t tbs_len;
};

static void intent_job_reset(struct intent_job *j)
{
	X509_free(j->tbs);
	j->tbs = NULL;
	OPENSSL_free(j->tbs_der);
	j->tbs_der = NULL;
	j->tbs_len = 0;
}

/* Runs on the committer; may run again if another job of its batch fails. */
static enum p11ca_err intent_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct intent_job *j = arg;
	struct engine_issue *is = j->is;
	uint8_t hash[STORE_SHA256_LEN];
	char hex[2 * STORE_SERIAL_LEN + 1];

	intent_job_reset(j);
	P11CA_GUARD(store_serial_alloc(txn, is->serial, em));
	is->spec->serial = is->serial;
	is->spec->serial_len = STORE_SERIAL_LEN;
	P11CA_GUARD(x509_cert_tbs(is->spec, &j->tbs, &j->tbs_der, &j->tbs_len, em));
	SHA256(j->tbs_der, j->tbs_len, hash);
	P11CA_GUARD(store_intent_put(txn, is->serial, is->ca_id, hash, is->actor, em));
	engine_hex_format(is->serial, STORE_SERIAL_LEN, hex);
	return store_audit_append(txn, "cert.intent", is->actor, hex, is->profile, NULL, em);
}

static enum p11ca_err cert_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct engine_issue *is = arg;
	char hex[2 * STORE_SERIAL_LEN + 1];
	P11CA_GUARD(store_cert_put(txn, is->ca_id, is->serial, is->der, is->der_len, is->not_after,
				   is->profile, em));
	engine_hex_format(is->serial, STORE_SERIAL_LEN, hex);
	return store_audit_append(txn, "cert.issue", is->actor, hex, is->profile, NULL, em);
}

struct failed_job {
	const struct engine_issue *is;
	const char *why;
};

static enum p11ca_err failed_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	const struct failed_job *f = arg;
	char hex[2 * STORE_SERIAL_LEN + 1];
	engine_hex_format(f->is->serial, STORE_SERIAL_LEN, hex);
	return store_audit_append(txn, "cert.sign_failed", f->is->actor, hex, f->why, NULL, em);
}

void engine_issue_clear(struct engine_issue *is)
{
	if (is == NULL)
		return;
	OPENSSL_free(is->der);
	is->der = NULL;
	is->der_len = 0;
}

enum p11ca_err engine_issue_run(struct engine *eng, struct engine_issue *is,
				struct p11ca_errmsg *em)
{
	struct intent_job job = {.is = is};
	uint8_t sig[HSM_SIG_MAX];
	size_t sig_len = 0;
	char hex[2 * STORE_SERIAL_LEN + 1];
	enum p11ca_err err;

	is->not_after = is->spec->not_after;
	err = commit_run(eng->commit, intent_job_fn, &job, em);
	if (err != P11CA_OK)
		goto out;
	engine_hex_format(is->serial, STORE_SERIAL_LEN, hex);

	struct p11ca_errmsg sign_em;
	p11ca_errmsg_clear(&sign_em);
	err = signer_sign(eng->signer, is->key_uri, SIGNER_TBS_CERTIFICATE, job.tbs_der,
			  job.tbs_len, is->issuer_der, is->issuer_der_len, sig, sizeof(sig),
			  &sig_len, &sign_em);
	if (err == P11CA_OK)
		err = x509_cert_finish(job.tbs, sig, sig_len, &is->der, &is->der_len, &sign_em);
	if (err == P11CA_OK && is->der_len > STORE_CERT_DER_MAX)
		err = p11ca_fail(&sign_em, P11CA_E_PROTO_TOO_LARGE,
				 "the certificate would be %zu bytes, over the %d-byte limit: "
				 "request fewer or shorter names",
				 is->der_len, STORE_CERT_DER_MAX);
	if (err != P11CA_OK) {
		engine_state_note_signer_error(eng, err);
		struct failed_job f = {is, p11ca_errmsg_text(&sign_em)};
		struct p11ca_errmsg audit_em;
		if (commit_run(eng->commit, failed_job_fn, &f, &audit_em) != P11CA_OK)
			p11ca_logf(eng->log, LOG_ERR, "engine: cannot audit failed serial %s: %s",
				   hex, p11ca_errmsg_text(&audit_em));
		p11ca_logf(eng->log, LOG_WARNING, "engine: serial %s not issued: %s", hex,
			   p11ca_errmsg_text(&sign_em));
		err = p11ca_fail(em, err, "%s", p11ca_errmsg_text(&sign_em));
		engine_issue_clear(is);
		goto out;
	}
	err = commit_run(eng->commit, cert_job_fn, is, em);
	if (err != P11CA_OK)
		engine_issue_clear(is);
out:
	intent_job_reset(&job);
	OPENSSL_cleanse(sig, sizeof(sig));
	return err;
}
