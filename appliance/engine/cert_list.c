/*
 * cert_list (paging over one CA or all of them) and cert_revoke (record, then a new CRL).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "appliance/engine/engine_internal.h"

/* Page tokens: CA id (u32 BE) ‖ last serial. Opaque to clients; checked on the way in. */
#define TOKEN_LEN (4 + STORE_SERIAL_LEN)

struct list_page {
	p11ca_v1_CertListResponse *out;
	p11ca_v1_CertStatus filter;
	size_t limit;
	int64_t now;
	const char *ca_name;
	uint32_t ca_id;
	bool more;
	enum p11ca_err err;
	struct p11ca_errmsg *em;
};

static int list_visit(void *arg, const struct store_cert *cert)
{
	struct list_page *lp = arg;
	if (lp->filter != p11ca_v1_CertStatus_CERT_STATUS_UNSPECIFIED &&
	    engine_cert_status(cert, lp->now) != lp->filter)
		return 0;
	if (lp->out->certs_count == lp->limit) {
		lp->more = true;
		return 1;
	}
	lp->err = engine_cert_summary(cert, lp->ca_name, &lp->out->certs[lp->out->certs_count],
				      lp->em);
	if (lp->err != P11CA_OK)
		return 1;
	lp->out->certs_count++;
	return 0;
}

struct ca_ids {
	uint32_t ids[256];
	size_t n;
};

static int ca_ids_visit(void *arg, const struct store_ca *ca)
{
	struct ca_ids *ids = arg;
	if (ids->n == sizeof(ids->ids) / sizeof(ids->ids[0]))
		return 1;
	ids->ids[ids->n++] = ca->id;
	return 0;
}

enum p11ca_err engine_op_cert_list(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CertListRequest *r = &req->op.cert_list;
	p11ca_v1_CertListResponse *out = &resp->result.cert_list;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	struct ca_ids *ids = OPENSSL_zalloc(sizeof(*ids));
	struct store_txn *txn = NULL;
	uint32_t after_ca = 0;
	const uint8_t *after = NULL;
	enum p11ca_err err = P11CA_OK;

	if (ca == NULL || ids == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	if (r->status > p11ca_v1_CertStatus_CERT_STATUS_ORPHANED) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG, "unknown status filter %d",
				 (int)r->status);
		goto out;
	}
	if (r->status == p11ca_v1_CertStatus_CERT_STATUS_ORPHANED) {
		c->code_override = p11ca_v1_StatusCode_STATUS_CODE_UNIMPLEMENTED;
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "listing orphaned serials is not served by this release");
		goto out;
	}
	if (r->page_token.size != 0) {
		if (r->page_token.size != TOKEN_LEN) {
			err = p11ca_fail(em, P11CA_E_INVALID_ARG,
					 "the page token is not one this server made: start over "
					 "without it");
			goto out;
		}
		const uint8_t *t = r->page_token.bytes;
		after_ca = (uint32_t)t[0] << 24 | (uint32_t)t[1] << 16 | (uint32_t)t[2] << 8 | t[3];
		after = t + 4;
	}
	err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err != P11CA_OK)
		goto out;
	if (r->ca[0] != '\0') {
		err = engine_ca_select(&c->eng->ca_cache, txn, r->ca, ca, em);
		if (err == P11CA_OK && after != NULL && after_ca != ca->rec.id)
			err = p11ca_fail(em, P11CA_E_INVALID_ARG,
					 "the page token belongs to another listing: start over");
		ids->ids[0] = ca->rec.id;
		ids->n = 1;
	} else {
		err = store_ca_list(txn, ca_ids_visit, ids, em);
	}
	if (err != P11CA_OK)
		goto out;

	struct list_page lp = {
		.out = out,
		.filter = r->status,
		.limit = r->limit == 0 || r->limit > ENGINE_PAGE_MAX ? ENGINE_PAGE_MAX : r->limit,
		.now = engine_now(),
		.em = em,
	};
	for (size_t i = 0; i < ids->n && !lp.more && err == P11CA_OK; i++) {
		if (after != NULL && ids->ids[i] < after_ca)
			continue;
		struct store_ca *rec = &ca->rec;
		err = store_ca_get(txn, ids->ids[i], rec, em);
		if (err != P11CA_OK)
			break;
		lp.ca_name = rec->name;
		lp.ca_id = rec->id;
		const uint8_t *from = after != NULL && ids->ids[i] == after_ca ? after : NULL;
		err = store_cert_list(txn, rec->id, from, 0, list_visit, &lp, NULL, em);
		if (err == P11CA_OK)
			err = lp.err;
		if (lp.more || err != P11CA_OK)
			break;
	}
	if (err == P11CA_OK && lp.more && out->certs_count > 0) {
		uint8_t *t = out->next_page_token.bytes;
		const p11ca_v1_CertSummary *last = &out->certs[out->certs_count - 1];
		/* The last summary's CA is the one being walked, unless the page just filled
		 * at the end of a CA; its serial alone is unique, so look the CA up by name. */
		struct store_ca *rec = &ca->rec;
		err = store_ca_get_by_name(txn, last->ca, rec, em);
		if (err == P11CA_OK) {
			t[0] = (uint8_t)(rec->id >> 24);
			t[1] = (uint8_t)(rec->id >> 16);
			t[2] = (uint8_t)(rec->id >> 8);
			t[3] = (uint8_t)rec->id;
			memcpy(t + 4, last->serial.bytes, STORE_SERIAL_LEN);
			out->next_page_token.size = TOKEN_LEN;
		}
	}
out:
	store_txn_abort(&txn);
	if (ca != NULL)
		engine_ca_clear(ca);
	OPENSSL_free(ca);
	OPENSSL_free(ids);
	return err;
}

struct revoke_job {
	uint32_t ca_id;
	const uint8_t *serial;
	struct store_revocation rev;
	const char *actor;
};

static enum p11ca_err revoke_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	const struct revoke_job *j = arg;
	char hex[2 * STORE_SERIAL_LEN + 1], details[32];
	enum p11ca_err err = store_cert_revoke(txn, j->ca_id, j->serial, &j->rev, em);
	engine_hex_format(j->serial, STORE_SERIAL_LEN, hex);
	if (err == P11CA_E_STORAGE_EXISTS)
		return p11ca_fail(em, P11CA_E_POLICY, "certificate %s is already revoked", hex);
	P11CA_GUARD(err);
	snprintf(details, sizeof(details), "reason %u", j->rev.reason);
	return store_audit_append(txn, "cert.revoke", j->actor, hex, details, NULL, em);
}

static bool reason_valid(p11ca_v1_RevocationReason r)
{
	return (r >= p11ca_v1_RevocationReason_REVOCATION_REASON_UNSPECIFIED &&
		r <= p11ca_v1_RevocationReason_REVOCATION_REASON_CERTIFICATE_HOLD) ||
	       r == p11ca_v1_RevocationReason_REVOCATION_REASON_PRIVILEGE_WITHDRAWN ||
	       r == p11ca_v1_RevocationReason_REVOCATION_REASON_AA_COMPROMISE;
}

enum p11ca_err engine_op_cert_revoke(struct engine_call *c, p11ca_v1_Request *req,
				     p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CertRevokeRequest *r = &req->op.cert_revoke;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	struct store_cert *cert = OPENSSL_zalloc(sizeof(*cert));
	struct store_serial_info info = {0};
	struct store_txn *txn = NULL;
	enum p11ca_err err = P11CA_OK;

	if (ca == NULL || cert == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	if (r->reason == p11ca_v1_RevocationReason_REVOCATION_REASON_REMOVE_FROM_CRL ||
	    !reason_valid(r->reason)) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "revocation reason %d cannot be used on a full CRL: pick another",
				 (int)r->reason);
		goto out;
	}
	err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_serial_select(txn, r->serial, info.serial, em);
	if (err == P11CA_OK)
		err = store_serial_get(txn, info.serial, &info, em);
	if (err == P11CA_OK && info.state != STORE_SERIAL_ISSUED)
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "serial %s has no certificate to revoke (orphaned or in progress)",
				 r->serial);
	if (err == P11CA_OK)
		err = engine_ca_load(&c->eng->ca_cache, txn, info.ca_id, ca, em);
	if (err == P11CA_OK)
		err = store_cert_get(txn, info.ca_id, info.serial, cert, em);
	store_txn_abort(&txn);
	/* A CA's certificate, or anything the management CA issued (the appliance's own TLS
	 * credentials), is key lifecycle: admins only. */
	if (err == P11CA_OK && c->role != RPC_ROLE_ADMIN &&
	    (engine_ca_is_management(c->eng, ca) || strcmp(cert->profile, "ca") == 0))
		err = p11ca_fail(em, P11CA_E_PERMISSION, "only an admin may revoke %s",
				 strcmp(cert->profile, "ca") == 0
					 ? "a CA's certificate"
					 : "a certificate of the management CA");
	if (err != P11CA_OK)
		goto out;

	struct revoke_job job = {
		.ca_id = info.ca_id,
		.serial = info.serial,
		.rev = {.reason = (uint32_t)r->reason, .revoked_at = engine_now()},
		.actor = c->actor,
	};
	err = commit_run(c->eng->commit, revoke_job_fn, &job, em);
	if (err != P11CA_OK)
		goto out;

	struct p11ca_errmsg crl_em;
	p11ca_errmsg_clear(&crl_em);
	enum p11ca_err crl_err = engine_crl_generate(c->eng, ca, c->actor, &crl_em);
	if (crl_err != P11CA_OK) {
		/* The revocation is committed; only its publication failed. */
		err = p11ca_fail(em, crl_err,
				 "the certificate is revoked, but CA %s's CRL was not published "
				 "(%s): fix that, then run p11ca crl get %s",
				 ca->rec.name, p11ca_errmsg_text(&crl_em), ca->rec.name);
		goto out;
	}
	err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = store_cert_get(txn, info.ca_id, info.serial, cert, em);
	store_txn_abort(&txn);
	if (err == P11CA_OK)
		err = engine_cert_summary(cert, ca->rec.name, &resp->result.cert_revoke.cert, em);
	if (err == P11CA_OK)
		resp->result.cert_revoke.has_cert = true;
out:
	if (ca != NULL)
		engine_ca_clear(ca);
	OPENSSL_free(ca);
	OPENSSL_free(cert);
	return err;
}
