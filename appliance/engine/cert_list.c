/*
 * cert_list: filtered, paged listings (`p11ca cert list`), and cert_revoke (record, then a
 * new CRL).
 *
 * A page walks one index and stops after `limit` matches or LIST_SCAN_MAX examined
 * entries, so a page costs the same at a million certificates as at ten: a rare filter
 * gives short (even empty) pages with a next_page_token rather than one unbounded scan.
 *
 * Page tokens are opaque to clients (docs/rpc.md) and checked on the way in. One tag byte
 * says which walk made them:
 *   'Q' ‖ store cursor      store_cert_query (every filter, serial or expiry order);
 *   'S' ‖ CA id ‖ serial    serial order from a position (a listing started with `after`,
 *                           which names a serial, not a cursor storage can resume);
 *   'O' ‖ serial            orphaned serials (status ORPHANED).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "appliance/engine/engine_internal.h"

#define LIST_SCAN_MAX 4096 /* index entries examined per page at most */
#define TOKEN_QUERY   'Q'
#define TOKEN_SERIAL  'S'
#define TOKEN_ORPHAN  'O'
#define NAME_CACHE    8

struct list_filter {
	struct store_cert_query q; /* what storage filters (serial walks apply it here) */
	bool valid_only;	   /* status VALID: unrevoked and not expired */
	int64_t now;
};

struct list_page {
	struct engine *eng;
	struct store_txn *txn;
	const struct list_filter *f;
	p11ca_v1_CertListResponse *out;
	size_t limit;
	size_t budget; /* serial walks: entries left to examine */
	bool full;
	uint32_t last_ca; /* serial walks: the last entry examined */
	uint8_t last_serial[STORE_SERIAL_LEN];
	struct {
		uint32_t id;
		char name[STORE_CA_NAME_MAX + 1];
	} names[NAME_CACHE];
	size_t n_names;
	enum p11ca_err err;
	struct p11ca_errmsg *em;
};

/* A page mentions few CAs: keep their names instead of reading each record per row. */
static const char *ca_name(struct list_page *lp, uint32_t id)
{
	for (size_t i = 0; i < lp->n_names; i++)
		if (lp->names[i].id == id)
			return lp->names[i].name;
	struct store_ca *rec = OPENSSL_zalloc(sizeof(*rec));
	if (rec == NULL) {
		lp->err = p11ca_fail(lp->em, P11CA_E_NOMEM, "out of memory");
		return NULL;
	}
	size_t slot = lp->n_names < NAME_CACHE ? lp->n_names++ : NAME_CACHE - 1;
	lp->err = store_ca_get(lp->txn, id, rec, lp->em);
	lp->names[slot].id = id;
	snprintf(lp->names[slot].name, sizeof(lp->names[slot].name), "%s", rec->name);
	OPENSSL_free(rec);
	return lp->err == P11CA_OK ? lp->names[slot].name : NULL;
}

static bool filter_match(const struct list_filter *f, const struct store_cert *c)
{
	const struct store_cert_query *q = &f->q;
	if ((q->ca_id != 0 && c->ca_id != q->ca_id) || (q->revoked_only && !c->revoked) ||
	    (q->unrevoked_only && c->revoked) || c->not_after < q->not_after_from ||
	    (q->not_after_until != 0 && c->not_after >= q->not_after_until))
		return false;
	if (f->valid_only && engine_cert_status(c, f->now) != p11ca_v1_CertStatus_CERT_STATUS_VALID)
		return false;
	return q->profile == NULL || q->profile[0] == '\0' || strcmp(q->profile, c->profile) == 0;
}

static int page_add(struct list_page *lp, const struct store_cert *cert)
{
	const char *name = ca_name(lp, cert->ca_id);
	if (name == NULL)
		return 1;
	p11ca_v1_CertSummary *s = &lp->out->certs[lp->out->certs_count];
	lp->err = engine_cert_summary(cert, name, s, lp->em);
	if (lp->err != P11CA_OK)
		return 1;
	lp->out->certs_count++;
	lp->full = lp->out->certs_count == lp->limit;
	return lp->full ? 1 : 0;
}

static int query_visit(void *arg, const struct store_cert *cert)
{
	struct list_page *lp = arg;
	if (!filter_match(lp->f, cert))
		return 0; /* status VALID at `now`: storage already bounded notAfter */
	return page_add(lp, cert);
}

static int serial_visit(void *arg, const struct store_cert *cert)
{
	struct list_page *lp = arg;
	lp->last_ca = cert->ca_id;
	memcpy(lp->last_serial, cert->serial, STORE_SERIAL_LEN);
	lp->budget--;
	if (filter_match(lp->f, cert) && page_add(lp, cert) != 0)
		return 1;
	return lp->budget == 0 ? 1 : 0;
}

static void token_put(p11ca_v1_CertListResponse *out, uint8_t tag, uint32_t ca_id,
		      const uint8_t *body, size_t len)
{
	uint8_t *t = out->next_page_token.bytes;
	size_t n = 0;
	t[n++] = tag;
	if (tag == TOKEN_SERIAL) {
		t[n++] = (uint8_t)(ca_id >> 24);
		t[n++] = (uint8_t)(ca_id >> 16);
		t[n++] = (uint8_t)(ca_id >> 8);
		t[n++] = (uint8_t)ca_id;
	}
	memcpy(t + n, body, len);
	out->next_page_token.size = (pb_size_t)(n + len);
}

_Static_assert(1 + STORE_CURSOR_MAX <=
		       sizeof(((p11ca_v1_CertListResponse *)0)->next_page_token.bytes),
	       "a page token holds a store cursor");

static enum p11ca_err walk_query(struct list_page *lp, const uint8_t *cursor, size_t cursor_len)
{
	uint8_t next[STORE_CURSOR_MAX];
	size_t next_len = 0;
	P11CA_GUARD(store_cert_query(lp->txn, &lp->f->q, cursor, cursor_len, lp->limit,
				     LIST_SCAN_MAX, query_visit, lp, next, &next_len, NULL,
				     lp->em));
	P11CA_GUARD(lp->err);
	if (next_len > 0)
		token_put(lp->out, TOKEN_QUERY, 0, next, next_len);
	return P11CA_OK;
}

struct ca_ids {
	uint32_t from;
	uint32_t ids[256];
	size_t n;
	bool truncated;
};

static int ca_ids_visit(void *arg, const struct store_ca *ca)
{
	struct ca_ids *ids = arg;
	if (ca->id < ids->from)
		return 0;
	if (ids->n == sizeof(ids->ids) / sizeof(ids->ids[0])) {
		ids->truncated = true;
		return 1;
	}
	ids->ids[ids->n++] = ca->id;
	return 0;
}

/* Serial order from (ca_id, after): the rest of that CA, then the CAs after it (unless
 * the listing is for one CA). */
static enum p11ca_err walk_serial(struct list_page *lp, uint32_t ca_id, const uint8_t *after)
{
	struct ca_ids *ids = OPENSSL_zalloc(sizeof(*ids));
	if (ids == NULL)
		return p11ca_fail(lp->em, P11CA_E_NOMEM, "out of memory");
	enum p11ca_err err = P11CA_OK;
	ids->from = ca_id;
	if (lp->f->q.ca_id != 0) {
		ids->ids[ids->n++] = lp->f->q.ca_id;
	} else {
		err = store_ca_list(lp->txn, ca_ids_visit, ids, lp->em);
	}
	lp->budget = LIST_SCAN_MAX;
	lp->last_ca = 0;
	for (size_t i = 0; err == P11CA_OK && i < ids->n; i++) {
		const uint8_t *from = ids->ids[i] == ca_id ? after : NULL;
		err = store_cert_list(lp->txn, ids->ids[i], from, lp->budget, serial_visit, lp,
				      NULL, lp->em);
		if (err == P11CA_OK)
			err = lp->err;
		if (err != P11CA_OK || lp->full || lp->budget == 0) {
			if (err == P11CA_OK && lp->last_ca != 0)
				token_put(lp->out, TOKEN_SERIAL, lp->last_ca, lp->last_serial,
					  STORE_SERIAL_LEN);
			break;
		}
	}
	if (err == P11CA_OK && ids->truncated && lp->out->next_page_token.size == 0)
		err = p11ca_fail(lp->em, P11CA_E_INTERNAL,
				 "more than 256 CAs: list them one CA at a time (--ca)");
	OPENSSL_free(ids);
	return err;
}

struct orphan_page {
	struct list_page *lp;
	const uint8_t *after;
	uint32_t ca_id;
	uint8_t last[STORE_SERIAL_LEN];
};

static int orphan_visit(void *arg, const struct store_serial_info *info)
{
	struct orphan_page *op = arg;
	struct list_page *lp = op->lp;
	if ((op->after != NULL && memcmp(info->serial, op->after, STORE_SERIAL_LEN) <= 0) ||
	    (op->ca_id != 0 && info->ca_id != op->ca_id))
		return 0;
	if (lp->full) {
		token_put(lp->out, TOKEN_ORPHAN, 0, op->last, STORE_SERIAL_LEN);
		return 1; /* one more exists: the page gets a token */
	}
	const char *name = ca_name(lp, info->ca_id);
	if (name == NULL)
		return 1;
	p11ca_v1_CertSummary *s = &lp->out->certs[lp->out->certs_count++];
	memset(s, 0, sizeof(*s));
	memcpy(s->serial.bytes, info->serial, STORE_SERIAL_LEN);
	s->serial.size = STORE_SERIAL_LEN;
	snprintf(s->ca, sizeof(s->ca), "%s", name);
	s->status = p11ca_v1_CertStatus_CERT_STATUS_ORPHANED;
	memcpy(op->last, info->serial, STORE_SERIAL_LEN);
	lp->full = lp->out->certs_count == lp->limit;
	return 0;
}

/* Orphans are rare (a crash or a failed signature each): their list is walked whole. */
static enum p11ca_err walk_orphans(struct list_page *lp, const uint8_t *after)
{
	struct orphan_page op = {.lp = lp, .after = after, .ca_id = lp->f->q.ca_id};
	P11CA_GUARD(store_orphans_list(lp->txn, orphan_visit, &op, lp->em));
	return lp->err;
}

/* The request's filters as one storage query; contradictions are refused, not answered
 * with an empty list that looks like "none". */
static enum p11ca_err filter_build(const p11ca_v1_CertListRequest *r, struct list_filter *f,
				   struct p11ca_errmsg *em)
{
	p11ca_v1_CertStatus st = r->status;
	if (st > p11ca_v1_CertStatus_CERT_STATUS_ORPHANED)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "unknown status filter %d", (int)st);
	if ((r->revoked && st != p11ca_v1_CertStatus_CERT_STATUS_UNSPECIFIED &&
	     st != p11ca_v1_CertStatus_CERT_STATUS_REVOKED) ||
	    (r->expired && st != p11ca_v1_CertStatus_CERT_STATUS_UNSPECIFIED &&
	     st != p11ca_v1_CertStatus_CERT_STATUS_EXPIRED) ||
	    (r->revoked && r->expired))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the filters contradict each other (revoked, expired and the "
				  "status each pick one status): give one of them");
	if (r->revoked)
		st = p11ca_v1_CertStatus_CERT_STATUS_REVOKED;
	if (r->expired)
		st = p11ca_v1_CertStatus_CERT_STATUS_EXPIRED;
	if (r->expiring_within_days != 0 && (st == p11ca_v1_CertStatus_CERT_STATUS_EXPIRED ||
					     st == p11ca_v1_CertStatus_CERT_STATUS_ORPHANED))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "expiring within days lists unexpired certificates: it cannot "
				  "be combined with expired or orphaned");
	if (r->expiring_within_days > 36500)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "expiring within %u days: give at most 36500 days",
				  r->expiring_within_days);
	if (st == p11ca_v1_CertStatus_CERT_STATUS_ORPHANED && r->profile[0] != '\0')
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "orphaned serials have no certificate and so no profile: "
				  "leave out the profile filter");
	f->now = engine_now();
	struct store_cert_query *q = &f->q;
	q->profile = r->profile;
	q->not_after_from = INT64_MIN;
	switch (st) {
	case p11ca_v1_CertStatus_CERT_STATUS_REVOKED:
		q->revoked_only = true;
		break;
	case p11ca_v1_CertStatus_CERT_STATUS_EXPIRED:
		/* engine_cert_status: expired means not revoked and notAfter < now. */
		q->unrevoked_only = true;
		q->order = STORE_ORDER_EXPIRY;
		q->not_after_until = f->now;
		break;
	case p11ca_v1_CertStatus_CERT_STATUS_VALID:
		q->unrevoked_only = true;
		q->not_after_from = f->now;
		f->valid_only = true;
		break;
	default:
		break;
	}
	if (r->expiring_within_days != 0) {
		q->order = STORE_ORDER_EXPIRY;
		q->not_after_from = f->now;
		q->not_after_until = f->now + (int64_t)r->expiring_within_days * ENGINE_DAY;
	}
	return P11CA_OK;
}

enum p11ca_err engine_op_cert_list(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CertListRequest *r = &req->op.cert_list;
	p11ca_v1_CertListResponse *out = &resp->result.cert_list;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	struct list_page *lp = OPENSSL_zalloc(sizeof(*lp));
	struct list_filter f = {0};
	struct store_txn *txn = NULL;
	const uint8_t *tok = r->page_token.bytes;
	size_t tok_len = r->page_token.size;
	uint8_t after[STORE_SERIAL_LEN];
	enum p11ca_err err = P11CA_OK;

	if (ca == NULL || lp == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	err = filter_build(r, &f, em);
	if (err != P11CA_OK)
		goto out;
	bool orphans = r->status == p11ca_v1_CertStatus_CERT_STATUS_ORPHANED;
	if (r->after[0] != '\0' && (tok_len != 0 || f.q.order != STORE_ORDER_SERIAL || orphans)) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "after lists in serial order from a serial: it cannot be combined "
				 "with a page token, expired, expiring or orphaned");
		goto out;
	}
	/* The token must be one this listing's kind makes; storage checks its own part. */
	uint8_t want = orphans ? TOKEN_ORPHAN : TOKEN_QUERY;
	if (tok_len != 0 &&
	    !(tok[0] == want && (want != TOKEN_ORPHAN || tok_len == 1 + STORE_SERIAL_LEN)) &&
	    !(tok[0] == TOKEN_SERIAL && !orphans && f.q.order == STORE_ORDER_SERIAL &&
	      tok_len == 5 + STORE_SERIAL_LEN)) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "the page token does not belong to this listing: start over "
				 "without it, or keep the filters of the first page");
		goto out;
	}
	err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK && r->ca[0] != '\0') {
		err = engine_ca_select(&c->eng->ca_cache, txn, r->ca, ca, em);
		f.q.ca_id = ca->rec.id;
	}
	if (err != P11CA_OK)
		goto out;

	*lp = (struct list_page){
		.eng = c->eng,
		.txn = txn,
		.f = &f,
		.out = out,
		.limit = r->limit == 0 || r->limit > ENGINE_PAGE_MAX ? ENGINE_PAGE_MAX : r->limit,
		.em = em,
	};
	if (orphans) {
		err = walk_orphans(lp, tok_len != 0 ? tok + 1 : NULL);
	} else if (tok_len != 0 && tok[0] == TOKEN_SERIAL) {
		uint32_t from_ca = (uint32_t)tok[1] << 24 | (uint32_t)tok[2] << 16 |
				   (uint32_t)tok[3] << 8 | tok[4];
		if (from_ca == 0 || (f.q.ca_id != 0 && from_ca != f.q.ca_id))
			err = p11ca_fail(em, P11CA_E_INVALID_ARG,
					 "the page token belongs to another listing: start over");
		else
			err = walk_serial(lp, from_ca, tok + 5);
	} else if (r->after[0] != '\0') {
		size_t nibbles = 0;
		struct store_serial_info info;
		err = engine_hex_parse(r->after, after, sizeof(after), &nibbles, em);
		if (err == P11CA_OK && nibbles != 2 * STORE_SERIAL_LEN)
			err = p11ca_fail(em, P11CA_E_INVALID_ARG,
					 "after needs a whole serial (%d hex digits), not a prefix",
					 2 * STORE_SERIAL_LEN);
		/* Without a CA filter the serial's own CA says where the position is. */
		if (err == P11CA_OK && f.q.ca_id == 0)
			err = store_serial_get(txn, after, &info, em);
		if (err == P11CA_OK)
			err = walk_serial(lp, f.q.ca_id != 0 ? f.q.ca_id : info.ca_id, after);
	} else {
		err = walk_query(lp, tok_len != 0 ? tok + 1 : NULL, tok_len != 0 ? tok_len - 1 : 0);
	}
out:
	store_txn_abort(&txn);
	if (ca != NULL)
		engine_ca_clear(ca);
	OPENSSL_free(ca);
	OPENSSL_free(lp);
	return err;
}

/* ---- cert_revoke --------------------------------------------------------------------- */

struct revoke_job {
	uint32_t ca_id;
	const uint8_t *serial;
	struct store_revocation rev;
	const char *actor;
};

static enum p11ca_err revoke_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	const struct revoke_job *j = arg;
	char hex[2 * STORE_SERIAL_LEN + 1], details[80];
	enum p11ca_err err = store_cert_revoke(txn, j->ca_id, j->serial, &j->rev, em);
	engine_hex_format(j->serial, STORE_SERIAL_LEN, hex);
	if (err == P11CA_E_STORAGE_EXISTS)
		return p11ca_fail(em, P11CA_E_POLICY, "certificate %s is already revoked", hex);
	P11CA_GUARD(err);
	if (j->rev.invalidity_date != 0)
		snprintf(details, sizeof(details), "reason %u, compromised at %lld", j->rev.reason,
			 (long long)j->rev.invalidity_date);
	else
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

/* RFC 5280 5.3.2: the InvalidityDate says when the key was (or may have been)
 * compromised. A time in the future, or before the certificate existed, is a typo. */
static enum p11ca_err compromised_check(const struct store_cert *cert, int64_t at, int64_t now,
					struct p11ca_errmsg *em)
{
	if (at == 0)
		return P11CA_OK;
	if (at > now)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the compromise time %lld is in the future (now is %lld): give "
				  "when the key was compromised, or leave it out",
				  (long long)at, (long long)now);
	const unsigned char *p = cert->der;
	X509 *x = d2i_X509(NULL, &p, (long)cert->der_len);
	if (x == NULL)
		return p11ca_fail(
			em, P11CA_E_STORAGE_CORRUPT,
			"a stored certificate does not parse: run the audit verification");
	int64_t not_before = engine_asn1_time(X509_get0_notBefore(x));
	X509_free(x);
	if (at < not_before)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the compromise time %lld is before the certificate's notBefore "
				  "(%lld): its key cannot have been compromised under it earlier",
				  (long long)at, (long long)not_before);
	return P11CA_OK;
}

/* Whether a stored certificate is a CA's (basicConstraints cA; one that does not parse
 * counts as one: refusing an operator is the safe side). */
static bool der_is_ca(const struct store_cert *cert)
{
	const unsigned char *p = cert->der;
	X509 *x = d2i_X509(NULL, &p, (long)cert->der_len);
	bool ca = x == NULL || (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
	X509_free(x);
	return ca;
}

enum p11ca_err engine_op_cert_revoke(struct engine_call *c, p11ca_v1_Request *req,
				     p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CertRevokeRequest *r = &req->op.cert_revoke;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	struct store_cert *cert = OPENSSL_zalloc(sizeof(*cert));
	struct store_serial_info info = {0};
	struct store_txn *txn = NULL;
	int64_t now = engine_now();
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
	if (r->compromised_at < 0) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "the compromise time must be seconds since 1970, not %lld",
				 (long long)r->compromised_at);
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
	 * credentials), is key lifecycle: admins only. What the certificate says decides, not
	 * the profile recorded with it: an imported intermediate is recorded as "imported". */
	bool is_ca = err == P11CA_OK && (strcmp(cert->profile, "ca") == 0 || der_is_ca(cert));
	if (err == P11CA_OK && c->role != RPC_ROLE_ADMIN &&
	    (engine_ca_is_management(c->eng, ca) || is_ca))
		err = p11ca_fail(em, P11CA_E_PERMISSION,
				 "only an admin may revoke %s: ask one (p11ca cert revoke with "
				 "admin credentials)",
				 is_ca ? "a CA's certificate"
				       : "a certificate of the management CA");
	if (err == P11CA_OK)
		err = compromised_check(cert, r->compromised_at, now, em);
	if (err != P11CA_OK)
		goto out;

	struct revoke_job job = {
		.ca_id = info.ca_id,
		.serial = info.serial,
		.rev = {.reason = (uint32_t)r->reason,
			.revoked_at = now,
			.invalidity_date = r->compromised_at},
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
	p11ca_v1_CertSummary *s = &resp->result.cert_revoke.cert;
	if (err == P11CA_OK)
		err = engine_cert_summary(cert, ca->rec.name, s, em);
	if (err == P11CA_OK)
		resp->result.cert_revoke.has_cert = true;
out:
	if (ca != NULL)
		engine_ca_clear(ca);
	OPENSSL_free(ca);
	OPENSSL_free(cert);
	return err;
}
