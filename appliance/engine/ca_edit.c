/*
 * ca edit: what a CA does from now on — enabled, default profile, signature algorithm, the
 * extensions of what it issues. Its certificate never changes.
 */
#include <stdio.h>
#include <string.h>

#include "appliance/engine/plan.h"

/* ExtensionSettings fields the edit sets replace the CA's; the others stay. */
static void issued_merge(p11ca_v1_ExtensionSettings *to, const p11ca_v1_ExtensionSettings *from)
{
#define TAKE(f)                                                                                    \
	if (from->has_##f) {                                                                       \
		to->has_##f = true;                                                                \
		to->f = from->f;                                                                   \
	}
	TAKE(crl_urls)
	TAKE(ocsp_urls)
	TAKE(issuer_urls)
	TAKE(policies)
	TAKE(issuer_alt_names)
	TAKE(ocsp_no_check)
	TAKE(tls_feature_status_request)
	TAKE(key_usage)
	TAKE(extended_key_usage)
#undef TAKE
}

struct edit_job {
	uint32_t id;
	const p11ca_v1_CaSettings *settings;
	bool set_state;
	enum store_ca_state state;
	const char *actor, *details;
	struct store_ca *scratch; /* output: the record as stored */
};

static enum p11ca_err edit_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct edit_job *j = arg;
	/* Re-read: the CRL number may have moved since the CA was selected. */
	P11CA_GUARD(store_ca_get(txn, j->id, j->scratch, em));
	if (j->set_state)
		j->scratch->state = j->state;
	P11CA_GUARD(engine_ca_settings_set(j->scratch, j->settings, em));
	P11CA_GUARD(store_ca_put(txn, j->scratch, em));
	return store_audit_append(txn, "ca.edit", j->actor, j->scratch->name, j->details, NULL, em);
}

static enum p11ca_err edit_apply(struct engine *eng, const p11ca_v1_CaEditRequest *r,
				 const struct engine_ca *ca, p11ca_v1_CaSettings *st, char *details,
				 size_t cap, struct p11ca_errmsg *em)
{
	size_t n = 0;
	details[0] = '\0';
	if (r->has_enabled) {
		st->enabled = r->enabled;
		n += (size_t)snprintf(details + n, cap - n, "%s ",
				      r->enabled ? "enabled" : "disabled");
	}
	if (r->has_default_profile) {
		P11CA_GUARD(engine_ca_profile_set(eng->cfg, r->default_profile, st, em));
		n += (size_t)snprintf(details + n, cap - n, "profile=%s ",
				      r->default_profile[0] ? r->default_profile : "(server's)");
	}
	if (r->signature_algorithm != p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_UNSPECIFIED) {
		char whose[STORE_CA_NAME_MAX + 16];
		snprintf(whose, sizeof(whose), "CA %s's", ca->rec.name);
		P11CA_GUARD(engine_alg_for_key((enum hsm_sig_alg)r->signature_algorithm,
					       ca->key_type, whose, em));
		st->signature_algorithm = r->signature_algorithm;
		n += (size_t)snprintf(details + n, cap - n, "algorithm=%s ",
				      hsm_sig_alg_name((enum hsm_sig_alg)r->signature_algorithm));
	}
	if (r->has_issued) {
		issued_merge(&st->issued, &r->issued);
		st->has_issued = true;
		P11CA_GUARD(engine_ext_check(&st->issued, em));
		/* The values, not only that they changed: the audit chain is where a
		 * reviewer finds who put which URL or usage into every later certificate. */
		n += (size_t)snprintf(details + n, cap - n, "issued:");
		if (n < cap)
			engine_ext_summary(&r->issued, details + n, cap - n);
		n = strlen(details);
	}
	if (n == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "nothing to change for CA %s: give --enable or --disable, a "
				  "default profile, a signature algorithm or extensions",
				  ca->rec.name);
	return P11CA_OK;
}

enum p11ca_err engine_op_ca_edit(struct engine_call *c, p11ca_v1_Request *req,
				 p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CaEditRequest *r = &req->op.ca_edit;
	p11ca_v1_CaEditResponse *out = &resp->result.ca_edit;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	p11ca_v1_CaSettings *st = OPENSSL_zalloc(sizeof(*st));
	struct store_ca *scratch = OPENSSL_zalloc(sizeof(*scratch));
	struct store_txn *txn = NULL;
	char details[STORE_AUDIT_DETAILS_MAX + 1];
	enum p11ca_err err = P11CA_OK;

	if (ca == NULL || st == NULL || scratch == NULL)
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	if (err == P11CA_OK)
		err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_select(&c->eng->ca_cache, txn, r->ca, ca, em);
	if (err == P11CA_OK && (ca->cert == NULL || (ca->rec.state != STORE_CA_ACTIVE &&
						     ca->rec.state != STORE_CA_DISABLED)))
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "CA %s has no certificate yet (its creation did not finish): "
				 "nothing to edit",
				 ca->rec.name);
	bool revoked = false;
	if (err == P11CA_OK && r->has_enabled && r->enabled)
		err = engine_ca_revoked(txn, &ca->rec, ca->cert, &revoked, em);
	store_txn_abort(&txn);
	if (err == P11CA_OK && revoked)
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "CA %s's certificate is revoked: it stays disabled for good; make "
				 "a new CA",
				 ca->rec.name);
	if (err == P11CA_OK)
		err = engine_ca_settings_get(&ca->rec, st, em);
	if (err == P11CA_OK)
		err = edit_apply(c->eng, r, ca, st, details, sizeof(details), em);
	if (err != P11CA_OK)
		goto out;
	struct edit_job job = {
		.id = ca->rec.id,
		.settings = st,
		.set_state = r->has_enabled,
		.state = r->enabled ? STORE_CA_ACTIVE : STORE_CA_DISABLED,
		.actor = c->actor,
		.details = details,
		.scratch = scratch,
	};
	err = commit_run(c->eng->commit, edit_job_fn, &job, em);
	if (err != P11CA_OK)
		goto out;
	memcpy(&ca->rec, scratch, sizeof(*scratch));
	err = engine_ca_summary_read(c->eng, ca, &out->ca, em);
	if (err == P11CA_OK) {
		out->has_ca = true;
		out->has_settings = true;
		out->settings = *st;
	}
out:
	engine_ca_clear(ca);
	OPENSSL_free(ca);
	OPENSSL_free(st);
	OPENSSL_free(scratch);
	return err;
}
