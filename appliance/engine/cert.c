/*
 * Certificate handlers: cert_sign (validation, then issue.c), cert_revoke, and the reads.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/x509v3.h>

#include "appliance/engine/engine_internal.h"

/* What the request and the profile decided, before any serial is drawn. */
struct sign_plan {
	X509_REQ *csr;
	EVP_PKEY *pub;
	X509_NAME *subject;
	GENERAL_NAMES *sans;
	const struct p11cad_profile *profile;
	int64_t not_before, not_after;
};

static void sign_plan_clear(struct sign_plan *p)
{
	X509_REQ_free(p->csr);
	EVP_PKEY_free(p->pub);
	X509_NAME_free(p->subject);
	GENERAL_NAMES_free(p->sans);
	memset(p, 0, sizeof(*p));
}

static void time_text(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(out, 32, "%lld", (long long)t);
}

/* Only DNS names and IP addresses are taken from a CSR: its other extensions are ignored. */
static enum p11ca_err sans_from_csr(X509_REQ *csr, GENERAL_NAMES *sans, struct p11ca_errmsg *em)
{
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(csr);
	GENERAL_NAMES *req_sans = NULL;
	enum p11ca_err err = P11CA_OK;
	int i = exts != NULL ? X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1) : -1;
	if (i >= 0)
		req_sans = X509V3_EXT_d2i(sk_X509_EXTENSION_value(exts, i));
	for (int k = 0; req_sans != NULL && k < sk_GENERAL_NAME_num(req_sans); k++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(req_sans, k);
		if (gn->type != GEN_DNS && gn->type != GEN_IPADD)
			continue;
		GENERAL_NAME *dup = GENERAL_NAME_dup(gn);
		if (dup == NULL || sk_GENERAL_NAME_push(sans, dup) <= 0) {
			GENERAL_NAME_free(dup);
			err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory copying names");
			break;
		}
	}
	GENERAL_NAMES_free(req_sans);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return err;
}

static bool sans_have_dns(const GENERAL_NAMES *sans, const char *name)
{
	for (int k = 0; k < sk_GENERAL_NAME_num(sans); k++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, k);
		if (gn->type != GEN_DNS)
			continue;
		const ASN1_IA5STRING *s = gn->d.dNSName;
		if ((size_t)s->length == strlen(name) &&
		    strncasecmp((const char *)s->data, name, (size_t)s->length) == 0)
			return true;
	}
	return false;
}

/* A CN that is a hostname also goes into the SANs: clients match names only there. */
static enum p11ca_err cn_to_san(const X509_NAME *subject, GENERAL_NAMES *sans, bool *has_cn,
				struct p11ca_errmsg *em)
{
	int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	*has_cn = i >= 0;
	if (i < 0)
		return P11CA_OK;
	unsigned char *utf8 = NULL;
	int n = ASN1_STRING_to_UTF8(&utf8,
				    X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
	if (n <= 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "the subject's CN is not valid text");
	char text[300];
	GENERAL_NAME *gn = NULL;
	struct p11ca_errmsg ignored;
	enum p11ca_err err = P11CA_OK;
	if ((size_t)n < sizeof(text) - 4 && memchr(utf8, '\0', (size_t)n) == NULL &&
	    memchr(utf8, ':', (size_t)n) == NULL) {
		snprintf(text, sizeof(text), "DNS:%.*s", n, (const char *)utf8);
		if (x509_san_parse(text, &gn, &ignored) == P11CA_OK &&
		    !sans_have_dns(sans, text + 4)) {
			if (sk_GENERAL_NAME_push(sans, gn) <= 0)
				err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory adding the CN");
			else
				gn = NULL;
		}
	}
	GENERAL_NAME_free(gn);
	OPENSSL_free(utf8);
	return err;
}

static enum p11ca_err sign_validate(struct engine_call *c, const p11ca_v1_CertSignRequest *r,
				    const struct engine_ca *ca, struct sign_plan *p,
				    struct p11ca_errmsg *em)
{
	const struct p11cad_config *cfg = c->eng->cfg;
	const char *pname = r->profile[0] != '\0' ? r->profile : cfg->default_profile;
	p->profile = p11cad_config_profile(cfg, pname);
	if (p->profile == NULL)
		return p11ca_fail(em, P11CA_E_STORAGE_NOT_FOUND,
				  "no enabled profile '%.64s': see [profile] in the configuration",
				  pname);
	if (ca->rec.state != STORE_CA_ACTIVE || ca->cert == NULL)
		return p11ca_fail(em, P11CA_E_POLICY, "CA %s is not active: it cannot issue",
				  ca->rec.name);
	int64_t now = engine_now();
	int64_t ca_end = ca->not_after;
	if (ca_end <= now)
		return p11ca_fail(em, P11CA_E_POLICY, "CA %s has expired: it cannot issue",
				  ca->rec.name);

	P11CA_GUARD(x509_csr_load(r->csr.bytes, r->csr.size, NULL, &p->csr, &p->pub, em));
	if (r->subject[0] != '\0')
		P11CA_GUARD(x509_name_parse(r->subject, &p->subject, em));
	else if ((p->subject = X509_NAME_dup(X509_REQ_get_subject_name(p->csr))) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory copying the subject");

	if ((p->sans = sk_GENERAL_NAME_new_null()) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	for (pb_size_t i = 0; i < r->sans_count; i++) {
		GENERAL_NAME *gn = NULL;
		P11CA_GUARD(x509_san_parse(r->sans[i], &gn, em));
		if (sk_GENERAL_NAME_push(p->sans, gn) <= 0) {
			GENERAL_NAME_free(gn);
			return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		}
	}
	if (r->sans_count == 0)
		P11CA_GUARD(sans_from_csr(p->csr, p->sans, em));
	bool has_cn = false;
	P11CA_GUARD(cn_to_san(p->subject, p->sans, &has_cn, em));
	if (!has_cn && sk_GENERAL_NAME_num(p->sans) == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate would name nobody: give a subject with a CN or "
				  "at least one SAN");

	unsigned days = r->expires_days != 0		? r->expires_days
			: p->profile->expires_days != 0 ? p->profile->expires_days
							: cfg->cert_expires_days;
	if (days > 100 * 366)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%u days is not a validity", days);
	p->not_before = now - ENGINE_CLOCK_SKEW;
	p->not_after = now + (int64_t)days * ENGINE_DAY;
	if (p->not_after > ca_end) {
		char end[32], want[32];
		time_text(ca_end, end);
		time_text(p->not_after, want);
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate would expire %s, after CA %s (%s): ask for at "
				  "most %lld days",
				  want, ca->rec.name, end,
				  (long long)((ca_end - now) / ENGINE_DAY));
	}
	return P11CA_OK;
}

enum p11ca_err engine_op_cert_sign(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CertSignRequest *r = &req->op.cert_sign;
	p11ca_v1_CertSignResponse *out = &resp->result.cert_sign;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	struct store_txn *txn = NULL;
	struct sign_plan plan = {0};
	struct engine_issue is = {0};
	enum p11ca_err err;

	if (ca == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_select(&c->eng->ca_cache, txn, r->ca, ca, em);
	store_txn_abort(&txn);
	if (err == P11CA_OK && engine_ca_is_management(c->eng, ca) && c->role != RPC_ROLE_ADMIN)
		err = p11ca_fail(
			em, P11CA_E_PERMISSION,
			"only an admin may issue from the management CA '%s': p11cad's TLS "
			"trusts it (server and admin credentials); use another CA",
			ca->rec.name);
	if (err == P11CA_OK)
		err = sign_validate(c, r, ca, &plan, em);
	if (err == P11CA_OK)
		err = engine_signing_ready(c->eng, em);
	if (err != P11CA_OK)
		goto out;

	const struct p11cad_profile *pr = plan.profile;
	const char *eku[P11CAD_EKU_MAX];
	for (size_t i = 0; i < pr->n_eku; i++)
		eku[i] = pr->eku[i];
	struct x509_cert_spec spec = {
		.subject = plan.subject,
		.public_key = plan.pub,
		.spki = X509_REQ_get_X509_PUBKEY(plan.csr),
		.not_before = plan.not_before,
		.not_after = plan.not_after,
		.alg = ca->alg,
		.issuer = ca->cert,
		.path_length = -1,
		.key_usage = pr->key_usage,
		.key_usage_critical = pr->key_usage_critical,
		.eku = eku,
		.n_eku = pr->n_eku,
		.eku_critical = pr->eku_critical,
		.sans = plan.sans,
	};
	is = (struct engine_issue){
		.ca_id = ca->rec.id,
		.key_uri = ca->rec.key_uri,
		.issuer_der = ca->rec.cert_der,
		.issuer_der_len = ca->rec.cert_der_len,
		.spec = &spec,
		.profile = pr->name,
		.actor = c->actor,
	};
	err = engine_issue_run(c->eng, &is, em);
	if (err != P11CA_OK)
		goto out;
	/* The TBS was built from spec and storage checked the DER against it: summarise from
	 * spec rather than parse the certificate back (~0.1 ms per issuance). */
	err = engine_cert_summary_issued(is.serial, &spec, pr->name, ca->rec.name, &out->cert, em);
	if (err != P11CA_OK)
		goto out;
	out->has_cert = true;
	memcpy(out->certificate_der.bytes, is.der, is.der_len);
	out->certificate_der.size = (pb_size_t)is.der_len;
out:
	engine_issue_clear(&is);
	sign_plan_clear(&plan);
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
