/*
 * Certificate handlers: cert_sign (validation, then issue.c), cert_revoke, and the reads.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/x509v3.h>

#include "appliance/config_internal.h"
#include "appliance/engine/plan.h"

enum p11ca_err engine_watchers_parse(const char (*addrs)[255], size_t n, struct store_watcher *out,
				     size_t *n_out, struct p11ca_errmsg *em)
{
	*n_out = 0;
	for (size_t i = 0; i < n; i++) {
		const char *addr = addrs[i];
		char text[8 + STORE_EMAIL_MAX + 1];
		GENERAL_NAME *gn = NULL;
		struct p11ca_errmsg ignored;
		size_t len = strnlen(addr, 255);
		char why[300] = "";
		/* x509_san_parse holds an address to what a certificate may carry: an addr-spec
		 * with a dot-atom local part and a checked domain; config_addr_spec_check also
		 * what the mail command gets as an argument (no leading '-'). */
		bool ok = len > 0 && len <= STORE_EMAIL_MAX &&
			  snprintf(text, sizeof(text), "email:%s", addr) < (int)sizeof(text) &&
			  x509_san_parse(text, &gn, &ignored) == P11CA_OK &&
			  config_addr_spec_check(addr, why, sizeof(why)) == P11CA_OK;
		GENERAL_NAME_free(gn);
		if (!ok)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "watcher '%.254s' is not an email address%s%s: give one "
					  "like user@example.com",
					  addr, why[0] != '\0' ? ": " : "", why);
		bool dup = false;
		for (size_t k = 0; k < *n_out && !dup; k++)
			dup = strcasecmp(out[k].email, addr) == 0;
		if (dup)
			continue;
		if (*n_out == STORE_WATCHERS_MAX)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "more than %d watchers: give fewer addresses",
					  STORE_WATCHERS_MAX);
		memset(&out[*n_out], 0, sizeof(out[0]));
		snprintf(out[*n_out].email, sizeof(out[0].email), "%s", addr);
		(*n_out)++;
	}
	return P11CA_OK;
}

enum p11ca_err engine_cert_issue(struct engine_call *c, const struct engine_ca *ca,
				 const struct engine_plan_request *req, struct engine_issue *is,
				 p11ca_v1_CertSummary *sum, uint8_t *der_out, size_t der_cap,
				 size_t *der_len, struct p11ca_errmsg *em)
{
	p11ca_v1_CaSettings *settings = OPENSSL_zalloc(sizeof(*settings));
	struct store_txn *txn = NULL;
	X509 *chain[ENGINE_CHAIN_MAX] = {NULL};
	size_t n_chain = 0;
	struct engine_plan *plan = NULL;
	enum p11ca_err err = P11CA_OK;

	if (settings == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	if (engine_ca_is_management(c->eng, ca) && c->role != RPC_ROLE_ADMIN)
		err = p11ca_fail(em, P11CA_E_PERMISSION,
				 "only an admin may issue from the management CA '%s': p11cad's "
				 "TLS trusts it (server and admin credentials); use another CA",
				 ca->rec.name);
	if (err == P11CA_OK)
		err = engine_ca_settings_get(&ca->rec, settings, em);
	if (err == P11CA_OK)
		err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_plan_chain_load(txn, ca->rec.id, chain, &n_chain, em);
	store_txn_abort(&txn);
	struct engine_plan_request as_caller = *req;
	as_caller.admin = c->role == RPC_ROLE_ADMIN;
	if (err == P11CA_OK)
		err = engine_plan_build(c->eng->cfg, ca, settings, chain, n_chain, &as_caller,
					engine_now(), &plan, em);
	if (err == P11CA_OK)
		err = engine_signing_ready(c->eng, em);
	if (err != P11CA_OK)
		goto out;
	is->ca_id = ca->rec.id;
	is->key_uri = ca->rec.key_uri;
	is->issuer_der = ca->rec.cert_der;
	is->issuer_der_len = ca->rec.cert_der_len;
	is->spec = &plan->spec;
	is->profile = plan->profile->name;
	is->actor = c->actor;
	err = engine_issue_run(c->eng, is, em);
	if (err != P11CA_OK)
		goto out;
	if (is->der_len > der_cap) {
		err = p11ca_fail(
			em, P11CA_E_PROTO_TOO_LARGE,
			"the certificate (%zu bytes) was issued but does not fit the reply: "
			"fetch it with p11ca cert export",
			is->der_len);
		goto out;
	}
	/* The TBS was built from spec and storage checked the DER against it: summarise from
	 * spec rather than parse the certificate back (~0.1 ms per issuance). */
	err = engine_cert_summary_issued(is->serial, &plan->spec, plan->profile->name, ca->rec.name,
					 sum, em);
	if (err != P11CA_OK)
		goto out;
	memcpy(der_out, is->der, is->der_len);
	*der_len = is->der_len;
out:
	engine_issue_clear(is);
	is->spec = NULL; /* it pointed into the plan */
	engine_plan_free(&plan);
	engine_plan_chain_free(chain, &n_chain);
	OPENSSL_free(settings);
	return err;
}

enum p11ca_err engine_op_cert_sign(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CertSignRequest *r = &req->op.cert_sign;
	p11ca_v1_CertSignResponse *out = &resp->result.cert_sign;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	struct store_txn *txn = NULL;
	struct store_watcher watchers[STORE_WATCHERS_MAX];
	size_t n_watchers = 0, der_len = 0;
	const char *sans[sizeof(r->sans) / sizeof(r->sans[0])];
	enum p11ca_err err;

	if (ca == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	err = engine_watchers_parse(r->watchers, r->watchers_count, watchers, &n_watchers, em);
	if (err == P11CA_OK)
		err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_select(&c->eng->ca_cache, txn, r->ca, ca, em);
	store_txn_abort(&txn);
	if (err != P11CA_OK)
		goto out;
	for (pb_size_t i = 0; i < r->sans_count; i++)
		sans[i] = r->sans[i];
	struct engine_plan_request pr = {
		.profile = r->profile,
		.subject = r->subject,
		.sans = sans,
		.n_sans = r->sans_count,
		.csr = r->csr.bytes,
		.csr_len = r->csr.size,
		.expires_days = r->expires_days,
		.alg = (enum hsm_sig_alg)r->signature_algorithm, /* same numbering */
		.ext = r->has_extensions ? &r->extensions : NULL,
		.no_cn_in_san = r->no_cn_in_san,
		.no_san_to_cn = r->no_san_to_cn,
	};
	struct engine_issue is = {.watchers = watchers, .n_watchers = n_watchers};
	err = engine_cert_issue(c, ca, &pr, &is, &out->cert, out->certificate_der.bytes,
				sizeof(out->certificate_der.bytes), &der_len, em);
	if (err != P11CA_OK)
		goto out;
	out->has_cert = true;
	out->certificate_der.size = (pb_size_t)der_len;
out:
	engine_ca_clear(ca);
	OPENSSL_free(ca);
	return err;
}

/* Load a certificate by selector in txn; orphans and intents give *state without a cert. */
static enum p11ca_err cert_find(struct store_txn *txn, const char *sel, struct store_cert *cert,
				struct store_serial_info *info, char ca_name[STORE_CA_NAME_MAX + 1],
				struct p11ca_errmsg *em)
{
	struct store_ca *ca = NULL;
	enum p11ca_err err;
	P11CA_GUARD(engine_serial_select(txn, sel, info->serial, em));
	P11CA_GUARD(store_serial_get(txn, info->serial, info, em));
	if ((ca = OPENSSL_zalloc(sizeof(*ca))) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	err = store_ca_get(txn, info->ca_id, ca, em);
	if (err == P11CA_OK)
		snprintf(ca_name, STORE_CA_NAME_MAX + 1, "%s", ca->name);
	OPENSSL_free(ca);
	if (err == P11CA_OK && info->state == STORE_SERIAL_ISSUED)
		err = store_cert_get(txn, info->ca_id, info->serial, cert, em);
	return err;
}

enum p11ca_err engine_op_cert_view(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	p11ca_v1_CertViewResponse *out = &resp->result.cert_view;
	struct store_cert *cert = OPENSSL_zalloc(sizeof(*cert));
	struct store_serial_info info = {0};
	struct store_txn *txn = NULL;
	char ca_name[STORE_CA_NAME_MAX + 1] = "";
	enum p11ca_err err;
	if (cert == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = cert_find(txn, req->op.cert_view.serial, cert, &info, ca_name, em);
	store_txn_abort(&txn);
	if (err != P11CA_OK)
		goto out;
	if (info.state == STORE_SERIAL_ISSUED) {
		err = engine_cert_summary(cert, ca_name, &out->cert, em);
		if (err != P11CA_OK)
			goto out;
		memcpy(out->certificate_der.bytes, cert->der, cert->der_len);
		out->certificate_der.size = (pb_size_t)cert->der_len;
		for (size_t i = 0; i < cert->n_watchers && i < STORE_WATCHERS_MAX; i++)
			snprintf(out->watchers[i], sizeof(out->watchers[0]), "%s",
				 cert->watchers[i].email);
		out->watchers_count =
			(pb_size_t)(cert->n_watchers < STORE_WATCHERS_MAX ? cert->n_watchers
									  : STORE_WATCHERS_MAX);
	} else if (info.state == STORE_SERIAL_ORPHAN) {
		memcpy(out->cert.serial.bytes, info.serial, STORE_SERIAL_LEN);
		out->cert.serial.size = STORE_SERIAL_LEN;
		snprintf(out->cert.ca, sizeof(out->cert.ca), "%s", ca_name);
		out->cert.status = p11ca_v1_CertStatus_CERT_STATUS_ORPHANED;
	} else {
		err = p11ca_fail(em, P11CA_E_STORAGE_NOT_FOUND,
				 "that certificate is still being issued: ask again in a moment");
		goto out;
	}
	out->has_cert = true;
out:
	OPENSSL_free(cert);
	return err;
}

enum p11ca_err engine_op_cert_export(struct engine_call *c, p11ca_v1_Request *req,
				     p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CertExportRequest *r = &req->op.cert_export;
	p11ca_v1_CertExportResponse *out = &resp->result.cert_export;
	struct store_cert *cert = OPENSSL_zalloc(sizeof(*cert));
	struct store_serial_info info = {0};
	struct store_txn *txn = NULL;
	char ca_name[STORE_CA_NAME_MAX + 1] = "";
	size_t len = 0;
	enum p11ca_err err = P11CA_OK;

	if (cert == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	if (r->format > p11ca_v1_Format_FORMAT_DER)
		err = p11ca_fail(em, P11CA_E_INVALID_ARG, "unknown format %d", (int)r->format);
	else if (r->bundle && r->format == p11ca_v1_Format_FORMAT_DER)
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "a bundle is PEM only: concatenated DER is not a file format");
	if (err == P11CA_OK)
		err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = cert_find(txn, r->serial, cert, &info, ca_name, em);
	if (err == P11CA_OK && info.state != STORE_SERIAL_ISSUED)
		err = p11ca_fail(em, P11CA_E_STORAGE_NOT_FOUND,
				 "serial %s has no certificate (orphaned or in progress)",
				 r->serial);
	if (err != P11CA_OK)
		goto out;
	if (r->format == p11ca_v1_Format_FORMAT_DER) {
		memcpy(out->data.bytes, cert->der, cert->der_len);
		len = cert->der_len;
	} else {
		err = x509_pem_append("CERTIFICATE", cert->der, cert->der_len, out->data.bytes,
				      sizeof(out->data.bytes), &len, em);
		if (err == P11CA_OK && r->bundle) {
			/* A root's own certificate is recorded under itself: no duplicate. */
			struct store_ca *ca = OPENSSL_zalloc(sizeof(*ca));
			err = ca == NULL ? P11CA_E_NOMEM : store_ca_get(txn, info.ca_id, ca, em);
			bool self = err == P11CA_OK && ca->cert_der_len == cert->der_len &&
				    memcmp(ca->cert_der, cert->der, cert->der_len) == 0;
			uint32_t from = self ? ca->parent_id : info.ca_id;
			OPENSSL_free(ca);
			out->certificate_count = 1;
			if (err == P11CA_OK)
				err = engine_chain_pem(txn, from, out->data.bytes,
						       sizeof(out->data.bytes), &len,
						       &out->certificate_count, em);
		}
		if (err != P11CA_OK)
			goto out;
	}
	out->data.size = (pb_size_t)len;
	if (out->certificate_count == 0)
		out->certificate_count = 1;
out:
	store_txn_abort(&txn);
	OPENSSL_free(cert);
	return err;
}
