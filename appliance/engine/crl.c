/*
 * CRLs: built here with OpenSSL, signed by the signer, stored for crl_get and the HTTP
 * responder. Generated at CA creation (empty), after every revocation, and on crl_get when
 * none is stored, the stored one is past its nextUpdate or misses a revocation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "appliance/engine/engine_internal.h"
#include "hsm/signer.h"

struct crl_entries {
	struct x509_crl_entry *v;
	uint8_t (*serials)[STORE_SERIAL_LEN];
	size_t n, cap;
	enum p11ca_err err;
};

static void crl_entries_free(struct crl_entries *e)
{
	free(e->v);
	free(e->serials);
	memset(e, 0, sizeof(*e));
}

static int crl_entry_add(void *arg, const uint8_t serial[STORE_SERIAL_LEN],
			 const struct store_revocation *rev)
{
	struct crl_entries *e = arg;
	if (e->n == e->cap) {
		size_t cap = e->cap == 0 ? 64 : 2 * e->cap;
		struct x509_crl_entry *v = reallocarray(e->v, cap, sizeof(*v));
		if (v != NULL)
			e->v = v;
		uint8_t(*s)[STORE_SERIAL_LEN] = reallocarray(e->serials, cap, sizeof(*s));
		if (s != NULL)
			e->serials = s;
		if (v == NULL || s == NULL) {
			e->err = P11CA_E_NOMEM;
			return 1;
		}
		e->cap = cap;
	}
	memcpy(e->serials[e->n], serial, STORE_SERIAL_LEN);
	e->v[e->n] = (struct x509_crl_entry){
		.serial_len = STORE_SERIAL_LEN,
		.revoked_at = rev->revoked_at,
		.reason = rev->reason,
		.invalidity_date = rev->invalidity_date,
	};
	e->n++;
	return 0;
}

struct number_job {
	uint32_t ca_id;
	const char *ca_name, *actor;
	struct crl_entries entries; /* outputs, rebuilt per run */
	uint64_t number;
};

/* The revoked list and the number come from one transaction, so a CRL never carries a
 * number older than a revocation it misses. */
static enum p11ca_err number_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct number_job *j = arg;
	char details[64];
	crl_entries_free(&j->entries);
	P11CA_GUARD(store_revoked_list(txn, j->ca_id, crl_entry_add, &j->entries, em));
	if (j->entries.err != P11CA_OK)
		return p11ca_fail(em, j->entries.err, "out of memory listing revocations");
	P11CA_GUARD(store_crl_number_next(txn, j->ca_id, &j->number, em));
	snprintf(details, sizeof(details), "number %llu, %zu entries",
		 (unsigned long long)j->number, j->entries.n);
	return store_audit_append(txn, "crl.number", j->actor, j->ca_name, details, NULL, em);
}

struct put_job {
	const struct number_job *nj;
	int64_t this_update, next_update;
	const uint8_t *der;
	size_t der_len;
};

static enum p11ca_err put_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	const struct put_job *p = arg;
	char details[64];
	P11CA_GUARD(store_crl_put(txn, p->nj->ca_id, STORE_CRL_SCOPE_FULL, p->nj->number,
				  p->this_update, p->next_update, p->der, p->der_len, em));
	snprintf(details, sizeof(details), "number %llu", (unsigned long long)p->nj->number);
	return store_audit_append(txn, "crl.issue", p->nj->actor, p->nj->ca_name, details, NULL,
				  em);
}

/* The CA's stripe: CRLs of one CA are made one at a time, so their numbers reach the store in
 * order; other CAs (other stripes) go on while one waits for the signer. */
static pthread_mutex_t *crl_lock(struct engine *eng, uint32_t ca_id)
{
	return &eng->crl_locks[ca_id % ENGINE_CRL_LOCKS];
}

/* engine_crl_generate with the CA's CRL lock held. */
static enum p11ca_err crl_generate_locked(struct engine *eng, const struct engine_ca *ca,
					  const char *actor, struct p11ca_errmsg *em)
{
	struct number_job nj = {.ca_id = ca->rec.id, .ca_name = ca->rec.name, .actor = actor};
	X509_CRL *tbs = NULL;
	uint8_t *tbs_der = NULL, *der = NULL;
	size_t tbs_len = 0, der_len = 0, sig_len = 0;
	uint8_t sig[HSM_SIG_MAX];
	p11ca_v1_CaSettings *settings = NULL;
	enum p11ca_err err;

	if (ca->cert == NULL)
		return p11ca_fail(em, P11CA_E_POLICY, "CA %s has no certificate: no CRL",
				  ca->rec.name);
	P11CA_GUARD(engine_signing_ready(eng, em));
	/* Signed as the CA signs certificates (its settings), decided before a number is
	 * drawn. */
	if ((settings = OPENSSL_malloc(sizeof(*settings))) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	err = engine_ca_settings_get(&ca->rec, settings, em);
	enum hsm_sig_alg alg = engine_ca_sig_alg(ca, settings);
	OPENSSL_free(settings);
	if (err == P11CA_OK)
		err = commit_run(eng->commit, number_job_fn, &nj, em);
	if (err != P11CA_OK)
		goto out;
	for (size_t i = 0; i < nj.entries.n; i++)
		nj.entries.v[i].serial = nj.entries.serials[i];
	int64_t now = engine_now();
	struct x509_crl_spec spec = {
		.issuer = ca->cert,
		.alg = alg,
		.number = nj.number,
		.this_update = now,
		.next_update = now + ENGINE_CRL_VALIDITY,
		.entries = nj.entries.v,
		.n_entries = nj.entries.n,
	};
	err = x509_crl_tbs(&spec, &tbs, &tbs_der, &tbs_len, em);
	if (err == P11CA_OK)
		err = signer_sign(eng->signer, ca->rec.key_uri, SIGNER_TBS_CRL, tbs_der, tbs_len,
				  ca->rec.cert_der, ca->rec.cert_der_len, sig, sizeof(sig),
				  &sig_len, em);
	if (err != P11CA_OK)
		engine_state_note_signer_error(eng, err);
	if (err == P11CA_OK)
		err = x509_crl_finish(tbs, sig, sig_len, &der, &der_len, em);
	if (err != P11CA_OK)
		goto out;
	struct put_job pj = {&nj, spec.this_update, spec.next_update, der, der_len};
	err = commit_run(eng->commit, put_job_fn, &pj, em);
out:
	if (err != P11CA_OK)
		p11ca_logf(eng->log, LOG_ERR, "engine: CRL of CA %s not published: %s",
			   ca->rec.name, p11ca_errmsg_text(em));
	X509_CRL_free(tbs);
	OPENSSL_free(tbs_der);
	OPENSSL_free(der);
	crl_entries_free(&nj.entries);
	return err;
}

enum p11ca_err engine_crl_generate(struct engine *eng, const struct engine_ca *ca,
				   const char *actor, struct p11ca_errmsg *em)
{
	pthread_mutex_t *lock = crl_lock(eng, ca->rec.id);
	pthread_mutex_lock(lock);
	enum p11ca_err err = crl_generate_locked(eng, ca, actor, em);
	pthread_mutex_unlock(lock);
	return err;
}

static int count_visit(void *arg, const uint8_t serial[STORE_SERIAL_LEN],
		       const struct store_revocation *rev)
{
	(void)serial;
	(void)rev;
	(*(size_t *)arg)++;
	return 0;
}

/* Copy the stored CRL out of the map. *fresh: present, in date and with every revocation. */
static enum p11ca_err crl_read(struct engine *eng, const struct engine_ca *ca, uint8_t **der,
			       size_t *der_len, struct store_crl *hdr, size_t *entries, bool *fresh,
			       struct p11ca_errmsg *em)
{
	struct store_txn *txn = NULL;
	size_t revoked = 0;
	*fresh = false;
	P11CA_GUARD(store_txn_begin(eng->st, STORE_TXN_READ, &txn, em));
	enum p11ca_err err = store_crl_get(txn, ca->rec.id, STORE_CRL_SCOPE_FULL, hdr, em);
	if (err == P11CA_E_STORAGE_NOT_FOUND) {
		p11ca_errmsg_clear(em);
		err = P11CA_OK;
		goto out;
	}
	if (err == P11CA_OK)
		err = store_revoked_list(txn, ca->rec.id, count_visit, &revoked, em);
	if (err != P11CA_OK)
		goto out;
	*der = OPENSSL_memdup(hdr->der, hdr->der_len);
	if (*der == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory reading a CRL");
		goto out;
	}
	*der_len = hdr->der_len;
	hdr->der = NULL;
	const unsigned char *p = *der;
	X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)*der_len);
	/* An empty CRL has no revokedCertificates at all: OpenSSL counts that as -1. */
	int count = crl != NULL ? sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)) : 0;
	*entries = count > 0 ? (size_t)count : 0;
	X509_CRL_free(crl);
	*fresh = hdr->next_update > engine_now() && *entries == revoked;
out:
	store_txn_abort(&txn);
	return err;
}

/* Regenerate a stale CRL unless another reader did while this one waited for the lock:
 * N readers of one stale CRL make one new CRL, not N numbers and N signatures. */
static enum p11ca_err crl_refresh(struct engine *eng, const struct engine_ca *ca, const char *actor,
				  struct p11ca_errmsg *em)
{
	uint8_t *der = NULL;
	size_t der_len = 0, entries = 0;
	struct store_crl hdr = {0};
	bool fresh = false;
	pthread_mutex_t *lock = crl_lock(eng, ca->rec.id);
	pthread_mutex_lock(lock);
	enum p11ca_err err = crl_read(eng, ca, &der, &der_len, &hdr, &entries, &fresh, em);
	if (err == P11CA_OK && !fresh)
		err = crl_generate_locked(eng, ca, actor, em);
	pthread_mutex_unlock(lock);
	OPENSSL_free(der);
	return err;
}

enum p11ca_err engine_op_crl_get(struct engine_call *c, p11ca_v1_Request *req,
				 p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CrlGetRequest *r = &req->op.crl_get;
	p11ca_v1_CrlGetResponse *out = &resp->result.crl_get;
	struct engine_ca ca = {0};
	struct store_txn *txn = NULL;
	uint8_t *der = NULL;
	size_t der_len = 0, entries = 0;
	struct store_crl hdr = {0};
	bool fresh = false;
	enum p11ca_err err;

	if (r->scope == p11ca_v1_CrlScope_CRL_SCOPE_DELTA) {
		c->code_override = p11ca_v1_StatusCode_STATUS_CODE_UNIMPLEMENTED;
		return p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"delta CRLs are not served by this release: ask for the full CRL");
	}
	if (r->scope > p11ca_v1_CrlScope_CRL_SCOPE_DELTA || r->format > p11ca_v1_Format_FORMAT_DER)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "unknown CRL scope or format");
	err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_select(&c->eng->ca_cache, txn, r->ca, &ca, em);
	store_txn_abort(&txn);
	if (err != P11CA_OK)
		goto out;
	err = crl_read(c->eng, &ca, &der, &der_len, &hdr, &entries, &fresh, em);
	if (err == P11CA_OK && !fresh) {
		struct p11ca_errmsg gen_em;
		p11ca_errmsg_clear(&gen_em);
		enum p11ca_err gen = crl_refresh(c->eng, &ca, c->actor, &gen_em);
		/* Without the signer a stale CRL still beats none; no CRL at all is an error. */
		if (gen == P11CA_OK) {
			OPENSSL_free(der);
			der = NULL;
			err = crl_read(c->eng, &ca, &der, &der_len, &hdr, &entries, &fresh, em);
		} else if (der == NULL) {
			err = p11ca_fail(em, gen, "%s", p11ca_errmsg_text(&gen_em));
		}
	}
	if (err == P11CA_OK && der == NULL)
		err = p11ca_fail(em, P11CA_E_INTERNAL, "no CRL was stored for CA %s", ca.rec.name);
	if (err != P11CA_OK)
		goto out;

	size_t len = 0;
	if (r->format == p11ca_v1_Format_FORMAT_DER) {
		if (der_len > sizeof(out->crl.bytes)) {
			err = p11ca_fail(em, P11CA_E_PROTO_TOO_LARGE,
					 "the CRL (%zu bytes) is over the RPC limit: fetch it from "
					 "the HTTP responder",
					 der_len);
			goto out;
		}
		memcpy(out->crl.bytes, der, der_len);
		len = der_len;
	} else {
		err = x509_pem_append("X509 CRL", der, der_len, out->crl.bytes,
				      sizeof(out->crl.bytes), &len, em);
		if (err != P11CA_OK)
			goto out;
	}
	out->crl.size = (pb_size_t)len;
	out->this_update = hdr.this_update;
	out->next_update = hdr.next_update;
	uint8_t num[8];
	size_t skip = 0;
	for (int i = 0; i < 8; i++)
		num[i] = (uint8_t)(hdr.number >> (56 - 8 * i));
	while (skip < 7 && num[skip] == 0)
		skip++;
	memcpy(out->crl_number.bytes, num + skip, 8 - skip);
	out->crl_number.size = (pb_size_t)(8 - skip);
	out->revoked_count = (uint32_t)entries;
out:
	OPENSSL_free(der);
	engine_ca_clear(&ca);
	return err;
}
