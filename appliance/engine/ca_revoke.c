/*
 * ca_revoke: revoke an intermediate CA. Its certificate is a certificate its parent issued,
 * so it is revoked like one (the record under the parent, then the parent's CRL); in the
 * same transaction the CA stops issuing (state DISABLED, CaSettings.enabled false), so
 * nothing is signed between the revocation and its publication. Its CaSummary then reads
 * REVOKED (summary.c looks the certificate up under the parent).
 *
 * Roots are refused (nothing above them publishes a CRL: take them out of the trust
 * stores); so is the management CA (p11cad's own TLS hangs on it: replace it with
 * p11cad init on a new state directory instead).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "appliance/engine/engine_internal.h"

struct ca_revoke_job {
	uint32_t ca_id, parent_id;
	uint8_t serial[STORE_SERIAL_LEN];
	const uint8_t *der; /* the CA's certificate, recorded under the parent when missing */
	size_t der_len;
	int64_t not_after;
	struct store_revocation rev;
	const char *actor;
	const char *name, *parent_name;
	/* scratch, ~45 KiB together: heap-allocated with the job */
	struct store_ca rec;
	struct store_cert cert;
	p11ca_v1_CaSettings settings;
};

static enum p11ca_err ca_revoke_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct ca_revoke_job *j = arg;
	char hex[2 * STORE_SERIAL_LEN + 1], details[256];
	engine_hex_format(j->serial, STORE_SERIAL_LEN, hex);

	/* A CA adopted with ca import may have no record under its parent yet. */
	struct p11ca_errmsg get_em;
	p11ca_errmsg_clear(&get_em);
	enum p11ca_err err = store_cert_get(txn, j->parent_id, j->serial, &j->cert, &get_em);
	if (err != P11CA_OK && err != P11CA_E_STORAGE_NOT_FOUND)
		return p11ca_fail(em, err, "%s", p11ca_errmsg_text(&get_em));
	if (err == P11CA_E_STORAGE_NOT_FOUND)
		err = store_cert_import(txn, j->parent_id, j->serial, j->der, j->der_len,
					j->not_after, "ca", j->actor, NULL, 0, em);
	P11CA_GUARD(err);
	err = store_cert_revoke(txn, j->parent_id, j->serial, &j->rev, em);
	if (err == P11CA_E_STORAGE_EXISTS)
		return p11ca_fail(em, P11CA_E_POLICY, "CA %s is already revoked", j->name);
	P11CA_GUARD(err);

	P11CA_GUARD(store_ca_get(txn, j->ca_id, &j->rec, em));
	P11CA_GUARD(engine_ca_settings_get(&j->rec, &j->settings, em));
	j->settings.enabled = false;
	P11CA_GUARD(engine_ca_settings_set(&j->rec, &j->settings, em));
	j->rec.state = STORE_CA_DISABLED;
	P11CA_GUARD(store_ca_put(txn, &j->rec, em));

	int n = snprintf(details, sizeof(details), "reason %u, serial %s under %s", j->rev.reason,
			 hex, j->parent_name);
	if (j->rev.invalidity_date != 0 && n > 0 && (size_t)n < sizeof(details))
		snprintf(details + n, sizeof(details) - (size_t)n, ", compromised at %lld",
			 (long long)j->rev.invalidity_date);
	return store_audit_append(txn, "ca.revoke", j->actor, j->name, details, NULL, em);
}

static bool reason_valid(p11ca_v1_RevocationReason r)
{
	return (r >= p11ca_v1_RevocationReason_REVOCATION_REASON_UNSPECIFIED &&
		r <= p11ca_v1_RevocationReason_REVOCATION_REASON_CERTIFICATE_HOLD) ||
	       r == p11ca_v1_RevocationReason_REVOCATION_REASON_PRIVILEGE_WITHDRAWN ||
	       r == p11ca_v1_RevocationReason_REVOCATION_REASON_AA_COMPROMISE;
}

/* What makes this CA revocable here, and the job's inputs; ca and parent are loaded. */
static enum p11ca_err ca_revoke_plan(struct engine_call *c, const p11ca_v1_CaRevokeRequest *r,
				     const struct engine_ca *ca, const struct engine_ca *parent,
				     struct ca_revoke_job *j, struct p11ca_errmsg *em)
{
	const ASN1_INTEGER *sn = X509_get0_serialNumber(ca->cert);
	if (sn == NULL || sn->type != V_ASN1_INTEGER || sn->length < 1 ||
	    sn->length > STORE_SERIAL_LEN)
		return p11ca_fail(em, P11CA_E_POLICY,
				  "CA %s's certificate has a serial that cannot be recorded (not a "
				  "positive number of at most 20 octets)",
				  ca->rec.name);
	memset(j->serial, 0, sizeof(j->serial));
	memcpy(j->serial + STORE_SERIAL_LEN - sn->length, sn->data, (size_t)sn->length);
	int64_t now = engine_now();
	int64_t not_before = engine_asn1_time(X509_get0_notBefore(ca->cert));
	if (r->compromised_at > now)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the compromise time %lld is in the future (now is %lld): give "
				  "when the key was compromised, or leave it out",
				  (long long)r->compromised_at, (long long)now);
	if (r->compromised_at != 0 && r->compromised_at < not_before)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the compromise time %lld is before CA %s's notBefore (%lld)",
				  (long long)r->compromised_at, ca->rec.name,
				  (long long)not_before);
	j->ca_id = ca->rec.id;
	j->parent_id = parent->rec.id;
	j->der = ca->rec.cert_der;
	j->der_len = ca->rec.cert_der_len;
	j->not_after = ca->not_after;
	j->rev = (struct store_revocation){.reason = (uint32_t)r->reason,
					   .revoked_at = now,
					   .invalidity_date = r->compromised_at};
	j->actor = c->actor;
	j->name = ca->rec.name;
	j->parent_name = parent->rec.name;
	return P11CA_OK;
}

enum p11ca_err engine_op_ca_revoke(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CaRevokeRequest *r = &req->op.ca_revoke;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	struct engine_ca *parent = OPENSSL_zalloc(sizeof(*parent));
	struct ca_revoke_job *job = OPENSSL_zalloc(sizeof(*job));
	struct store_txn *txn = NULL;
	enum p11ca_err err = P11CA_OK;

	if (ca == NULL || parent == NULL || job == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	if (r->reason == p11ca_v1_RevocationReason_REVOCATION_REASON_REMOVE_FROM_CRL ||
	    !reason_valid(r->reason) || r->compromised_at < 0) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 r->compromised_at < 0 ? "the compromise time must be seconds "
							 "since 1970"
						       : "this revocation reason cannot be used on "
							 "a full CRL: pick another");
		goto out;
	}
	err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_select(&c->eng->ca_cache, txn, r->ca, ca, em);
	if (err == P11CA_OK && engine_ca_is_management(c->eng, ca))
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "%s is the management CA: p11cad's own TLS depends on it, so it "
				 "is not revoked here",
				 ca->rec.name);
	else if (err == P11CA_OK && ca->rec.parent_id == 0)
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "%s is a root CA: no CA above it publishes a CRL; remove it from "
				 "the trust stores that hold it instead",
				 ca->rec.name);
	else if (err == P11CA_OK && ca->cert == NULL)
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "CA %s has no certificate yet (its creation did not finish)",
				 ca->rec.name);
	if (err == P11CA_OK)
		err = engine_ca_load(&c->eng->ca_cache, txn, ca->rec.parent_id, parent, em);
	store_txn_abort(&txn);
	if (err == P11CA_OK)
		err = ca_revoke_plan(c, r, ca, parent, job, em);
	if (err == P11CA_OK)
		err = commit_run(c->eng->commit, ca_revoke_job_fn, job, em);
	if (err != P11CA_OK)
		goto out;

	struct p11ca_errmsg crl_em;
	p11ca_errmsg_clear(&crl_em);
	enum p11ca_err crl_err = engine_crl_generate(c->eng, parent, c->actor, &crl_em);
	if (crl_err != P11CA_OK) {
		err = p11ca_fail(em, crl_err,
				 "CA %s is revoked and no longer issues, but %s's CRL was not "
				 "published (%s): fix that, then run p11ca crl get %s",
				 ca->rec.name, parent->rec.name, p11ca_errmsg_text(&crl_em),
				 parent->rec.name);
		goto out;
	}
	uint32_t id = ca->rec.id;
	engine_ca_clear(ca);
	err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_load(&c->eng->ca_cache, txn, id, ca, em);
	p11ca_v1_CaSummary *s = &resp->result.ca_revoke.ca;
	if (err == P11CA_OK)
		err = engine_ca_summary(c->eng, txn, ca, s, em);
	store_txn_abort(&txn);
	if (err == P11CA_OK)
		resp->result.ca_revoke.has_ca = true;
out:
	engine_ca_clear(ca);
	engine_ca_clear(parent);
	OPENSSL_free(ca);
	OPENSSL_free(parent);
	OPENSSL_free(job);
	return err;
}
