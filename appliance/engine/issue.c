/*
 * The issuance sequence every certificate follows (ARCHITECTURE.md "Issuance, step by
 * step"): serial + TBS, then intent + audit in one committed job; then the signer; then the
 * certificate + audit in a second job. The serial is burned from the first commit on: a
 * signer failure turns the intent into an orphan at once (a crash does so at the next
 * start).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "appliance/engine/engine_internal.h"
#include "hsm/signer.h"

/* Each draw collides with probability n / 2^158: reaching this many means the RNG is
 * broken, and issuing must stop rather than loop (storage's store_serial_alloc rule). */
#define SERIAL_DRAWS_MAX 16

/* The TBS is built before the job, on the worker: X509 assembly inside the write transaction
 * would serialise every issuance on the committer thread. */
struct intent_job {
	struct engine_issue *is;
	uint8_t tbs_hash[STORE_SHA256_LEN];
	bool taken; /* output: the serial was already used; nothing was written */
};

struct tbs {
	X509 *x;
	uint8_t *der;
	size_t len;
};

static void tbs_reset(struct tbs *t)
{
	X509_free(t->x);
	t->x = NULL;
	OPENSSL_free(t->der);
	t->der = NULL;
	t->len = 0;
}

/* 20 random bytes, first byte 0x01..0x7f: positive, < 2^159, DER length always 20 — the
 * form store_intent_put accepts. A zero first byte is redrawn rather than forced to 1, so
 * the other 158 bits stay uniform. Uniqueness is the intent job's to check. */
static enum p11ca_err serial_draw(uint8_t serial[STORE_SERIAL_LEN], struct p11ca_errmsg *em)
{
	for (int i = 0; i < SERIAL_DRAWS_MAX; i++) {
		if (RAND_bytes(serial, STORE_SERIAL_LEN) != 1)
			return p11ca_fail(em, P11CA_E_INTERNAL,
					  "the random generator failed to give a serial");
		serial[0] &= 0x7f;
		if (serial[0] != 0)
			return P11CA_OK;
	}
	return p11ca_fail(em, P11CA_E_INTERNAL,
			  "the random generator gave %d zero serial prefixes: it is broken",
			  SERIAL_DRAWS_MAX);
}

/* Runs on the committer; may run again if another job of its batch fails. */
static enum p11ca_err intent_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct intent_job *j = arg;
	struct engine_issue *is = j->is;
	struct store_serial_info info;
	struct p11ca_errmsg get_em;
	char hex[2 * STORE_SERIAL_LEN + 1];

	j->taken = false;
	p11ca_errmsg_clear(&get_em);
	enum p11ca_err err = store_serial_get(txn, is->serial, &info, &get_em);
	if (err == P11CA_OK) {
		/* Succeed without writing, so the rest of the batch commits; the caller redraws. */
		j->taken = true;
		return P11CA_OK;
	}
	if (err != P11CA_E_STORAGE_NOT_FOUND)
		return p11ca_fail(em, err, "%s", p11ca_errmsg_text(&get_em));
	P11CA_GUARD(store_intent_put(txn, is->serial, is->ca_id, j->tbs_hash, is->actor, em));
	engine_hex_format(is->serial, STORE_SERIAL_LEN, hex);
	return store_audit_append(txn, "cert.intent", is->actor, hex, is->profile, NULL, em);
}

/* Draw a serial, build the TBS over it and commit the intent; redraw on a used serial. */
static enum p11ca_err intent_commit(struct engine *eng, struct engine_issue *is, struct tbs *t,
				    struct p11ca_errmsg *em)
{
	struct intent_job job = {.is = is};
	char hex[2 * STORE_SERIAL_LEN + 1];

	for (int draw = 0; draw < SERIAL_DRAWS_MAX; draw++) {
		tbs_reset(t);
		P11CA_GUARD(serial_draw(is->serial, em));
		is->spec->serial = is->serial;
		is->spec->serial_len = STORE_SERIAL_LEN;
		P11CA_GUARD(x509_cert_tbs(is->spec, &t->x, &t->der, &t->len, em));
		SHA256(t->der, t->len, job.tbs_hash);
		P11CA_GUARD(commit_run(eng->commit, intent_job_fn, &job, em));
		if (!job.taken)
			return P11CA_OK;
		engine_hex_format(is->serial, STORE_SERIAL_LEN, hex);
		p11ca_logf(eng->log, LOG_WARNING, "engine: serial %s drawn twice", hex);
	}
	tbs_reset(t);
	return p11ca_fail(em, P11CA_E_INTERNAL,
			  "no fresh serial after %d draws: the random generator is broken",
			  SERIAL_DRAWS_MAX);
}

/* The certificate and what is kept beside it (watchers, audit) land in one commit. */
static enum p11ca_err cert_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	const struct engine_issue *is = arg;
	char hex[2 * STORE_SERIAL_LEN + 1];
	P11CA_GUARD(store_cert_put(txn, is->ca_id, is->serial, is->der, is->der_len, is->not_after,
				   is->profile, em));
	if (is->n_watchers > 0)
		P11CA_GUARD(store_cert_watchers_set(txn, is->ca_id, is->serial, is->watchers,
						    is->n_watchers, em));
	engine_hex_format(is->serial, STORE_SERIAL_LEN, hex);
	return store_audit_append(
		txn, is->audit_event != NULL ? is->audit_event : "cert.issue", is->actor, hex,
		is->audit_details != NULL ? is->audit_details : is->profile, NULL, em);
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
	/* The serial is burned: an orphan from now on, not an intent "still in progress". A
	 * signature the signer may still deliver late is dropped by the channel. */
	P11CA_GUARD(store_intent_abandon(txn, f->is->serial, em));
	return store_audit_append(txn, "cert.sign_failed", f->is->actor, hex, f->why, NULL, em);
}

/* The certificate carries exactly the TBS bytes that were hashed into the intent and
 * signed: Certificate ::= SEQUENCE { tbs, ... } with tbs right after the outer header. */
static bool cert_holds_tbs(const uint8_t *der, size_t der_len, const uint8_t *tbs, size_t tbs_len)
{
	size_t hdr;

	if (der_len < 2 || der[0] != 0x30)
		return false;
	hdr = der[1] < 0x80 ? 2 : 2 + (size_t)(der[1] & 0x7f);
	return der_len > hdr && der_len - hdr >= tbs_len && memcmp(der + hdr, tbs, tbs_len) == 0;
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
	struct tbs tbs = {0};
	uint8_t sig[HSM_SIG_MAX];
	size_t sig_len = 0;
	char hex[2 * STORE_SERIAL_LEN + 1];
	enum p11ca_err err;

	is->not_after = is->spec->not_after;
	err = intent_commit(eng, is, &tbs, em);
	if (err != P11CA_OK)
		goto out;
	engine_hex_format(is->serial, STORE_SERIAL_LEN, hex);

	struct p11ca_errmsg sign_em;
	p11ca_errmsg_clear(&sign_em);
	err = signer_sign(eng->signer, is->key_uri, SIGNER_TBS_CERTIFICATE, tbs.der, tbs.len,
			  is->issuer_der, is->issuer_der_len, sig, sizeof(sig), &sig_len, &sign_em);
	if (err == P11CA_OK)
		err = x509_cert_finish(tbs.x, sig, sig_len, &is->der, &is->der_len, &sign_em);
	if (err == P11CA_OK && !cert_holds_tbs(is->der, is->der_len, tbs.der, tbs.len))
		err = p11ca_fail(
			&sign_em, P11CA_E_INTERNAL,
			"the assembled certificate does not carry the TBS that was signed; "
			"nothing was issued (report this as a bug)");
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
	tbs_reset(&tbs);
	OPENSSL_cleanse(sig, sizeof(sig));
	return err;
}
