/*
 * ExtensionSettings layered over a profile (plan.h): profile < CA < request, per field. The
 * profile gates whether the CA's URLs are used; URLs a request gives are always used. URL
 * templates are filled in for the issuing CA.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/objects.h>

#include "appliance/config_internal.h"
#include "appliance/engine/plan.h"

/* Fill in {ca_name} and {ca_serial}; any other brace is refused (a typo would otherwise
 * end up in every certificate). */
static enum p11ca_err url_expand(const char *what, const char *tmpl,
				 const struct engine_ext_issuer *issuer,
				 char out[ENGINE_EXT_URL_MAX], struct p11ca_errmsg *em)
{
	size_t n = 0;
	for (const char *p = tmpl; *p != '\0';) {
		const char *val = NULL;
		size_t skip = 1;
		if (strncmp(p, "{ca_name}", 9) == 0)
			val = issuer->name, skip = 9;
		else if (strncmp(p, "{ca_serial}", 11) == 0)
			val = issuer->serial, skip = 11;
		else if (*p == '{' || *p == '}')
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "%s URL '%.255s' has a brace that is not {ca_name} or "
					  "{ca_serial}",
					  what, tmpl);
		if (skip == 11 && val == NULL)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "%s URL '%.255s': a root's own certificate cannot name "
					  "{ca_serial}, which is drawn as it is signed",
					  what, tmpl);
		size_t len = val != NULL ? strlen(val) : 1;
		if (len >= ENGINE_EXT_URL_MAX - n)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "%s URL '%.255s' is over %d bytes once filled in", what,
					  tmpl, ENGINE_EXT_URL_MAX - 1);
		memcpy(out + n, val != NULL ? val : p, len);
		n += len;
		p += skip;
	}
	out[n] = '\0';
	return P11CA_OK;
}

static const char *const url_what[ENGINE_URL_KINDS] = {"CRL", "OCSP", "CA issuers"};

static enum p11ca_err urls_take(struct engine_ext *e, enum engine_url_kind kind,
				const p11ca_v1_StringList *list,
				const struct engine_ext_issuer *issuer, struct p11ca_errmsg *em)
{
	bool ldap = kind != ENGINE_URL_OCSP;
	size_t n = list->values_count;
	if (n > ENGINE_EXT_URLS_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "more than %d %s URLs",
				  ENGINE_EXT_URLS_MAX, url_what[kind]);
	for (size_t i = 0; i < n; i++) {
		P11CA_GUARD(
			url_expand(url_what[kind], list->values[i], issuer, e->urls[kind][i], em));
		P11CA_GUARD(x509_url_check(e->urls[kind][i], ldap, em));
		e->url_ptr[kind][i] = e->urls[kind][i];
	}
	if (kind == ENGINE_URL_CRL)
		e->spec.crl_urls = e->url_ptr[kind], e->spec.n_crl_urls = n;
	else if (kind == ENGINE_URL_OCSP)
		e->spec.ocsp_urls = e->url_ptr[kind], e->spec.n_ocsp_urls = n;
	else
		e->spec.issuer_urls = e->url_ptr[kind], e->spec.n_issuer_urls = n;
	return P11CA_OK;
}

/* The layer that decides a URL list: the request's always, the CA's when the profile adds
 * that kind (no profile: always). */
static const p11ca_v1_StringList *urls_pick(const p11ca_v1_ExtensionSettings *ca,
					    const p11ca_v1_ExtensionSettings *req,
					    const struct p11cad_profile *pr, enum engine_url_kind k)
{
	bool gate[ENGINE_URL_KINDS] = {pr == NULL || pr->add_crl_url,
				       pr == NULL || pr->add_ocsp_url,
				       pr == NULL || pr->add_issuer_url};
	const p11ca_v1_ExtensionSettings *layers[2] = {req, ca};
	for (int i = 0; i < 2; i++) {
		const p11ca_v1_ExtensionSettings *l = layers[i];
		if (l == NULL || (i == 1 && !gate[k]))
			continue;
		if (k == ENGINE_URL_CRL && l->has_crl_urls)
			return &l->crl_urls;
		if (k == ENGINE_URL_OCSP && l->has_ocsp_urls)
			return &l->ocsp_urls;
		if (k == ENGINE_URL_ISSUER && l->has_issuer_urls)
			return &l->issuer_urls;
	}
	return NULL;
}

/* A policy of the wire form, checked through the text form the configuration uses, so
 * both take exactly the same rules. */
static enum p11ca_err policy_from_wire(const p11ca_v1_Policy *p, struct x509_policy_text *out,
				       struct p11ca_errmsg *em)
{
	char text[64 + 2 * 262 + 210];
	int n = snprintf(text, sizeof(text), "%s", p->oid);
	for (pb_size_t i = 0; i < p->cps_uris_count && i < 2; i++)
		n += snprintf(text + n, sizeof(text) - (size_t)n, ";cps=%s", p->cps_uris[i]);
	if (p->cps_uris_count > 2)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate policy %.63s has more than 2 CPS URLs", p->oid);
	if (p->user_notice[0] != '\0')
		snprintf(text + n, sizeof(text) - (size_t)n, ";notice=%s", p->user_notice);
	return x509_policy_text_parse(text, out, em);
}

static enum p11ca_err policies_take(struct engine_ext *e, const struct p11cad_profile *pr,
				    const p11ca_v1_ExtensionSettings *ca,
				    const p11ca_v1_ExtensionSettings *req, struct p11ca_errmsg *em)
{
	const p11ca_v1_PolicyList *list = req != NULL && req->has_policies ? &req->policies
					  : ca != NULL && ca->has_policies ? &ca->policies
									   : NULL;
	size_t n = list != NULL ? list->policies_count : pr != NULL ? pr->n_policies : 0;
	if (n > ENGINE_EXT_POL_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "more than %d certificate policies",
				  ENGINE_EXT_POL_MAX);
	for (size_t i = 0; i < n; i++) {
		struct x509_policy_text *t = &e->pol_text[i];
		if (list != NULL)
			P11CA_GUARD(policy_from_wire(&list->policies[i], t, em));
		else
			P11CA_GUARD(x509_policy_text_parse(pr->policies[i], t, em));
		for (size_t j = 0; j < t->n_cps; j++)
			e->pol_cps[i][j] = t->cps[j];
		e->pol[i] = (struct x509_policy_spec){
			.oid = t->oid,
			.cps_uris = e->pol_cps[i],
			.n_cps_uris = t->n_cps,
			.user_notice = t->notice,
		};
	}
	e->spec.policies = e->pol;
	e->spec.n_policies = n;
	return P11CA_OK;
}

static enum p11ca_err usage_take(struct engine_ext *e, const p11ca_v1_UsageList *ku,
				 const p11ca_v1_UsageList *eku, struct p11ca_errmsg *em)
{
	if (ku != NULL) {
		char list[10 * 41] = "", bad[40] = "";
		size_t n = 0;
		for (pb_size_t i = 0; i < ku->names_count; i++) {
			if (strchr(ku->names[i], ',') != NULL || ku->names[i][0] == '\0')
				return p11ca_fail(em, P11CA_E_INVALID_ARG,
						  "keyUsage '%.39s' is not a usage name",
						  ku->names[i]);
			n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? "," : "",
					      ku->names[i]);
		}
		if (profile_key_usage_parse(list, &e->key_usage, bad, sizeof(bad)) != P11CA_OK)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "keyUsage '%s' is unknown: use digitalSignature, "
					  "keyEncipherment, keyAgreement, … as in the profiles",
					  bad);
		e->key_usage_critical = ku->critical;
	}
	if (eku != NULL) {
		e->n_eku = 0;
		for (pb_size_t i = 0; i < eku->names_count && i < ENGINE_EXT_EKU_MAX; i++) {
			const char *name = eku->names[i];
			ASN1_OBJECT *obj = OBJ_txt2obj(name, 0);
			bool known = obj != NULL && OBJ_obj2nid(obj) != NID_undef;
			bool dotted = obj != NULL && strspn(name, "0123456789.") == strlen(name);
			ASN1_OBJECT_free(obj);
			if (!known && !dotted)
				return p11ca_fail(
					em, P11CA_E_INVALID_ARG,
					"extendedKeyUsage '%.39s' is unknown: use serverAuth, "
					"clientAuth, … or a dotted OID",
					name);
			snprintf(e->eku[e->n_eku], sizeof(e->eku[0]), "%s", name);
			e->eku_ptr[e->n_eku] = e->eku[e->n_eku];
			e->n_eku++;
		}
		e->eku_critical = eku->critical;
	}
	return P11CA_OK;
}

static enum p11ca_err ian_take(struct engine_ext *e, const p11ca_v1_StringList *list,
			       struct p11ca_errmsg *em)
{
	if (list == NULL || list->values_count == 0)
		return P11CA_OK;
	if ((e->issuer_alt_names = sk_GENERAL_NAME_new_null()) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	for (pb_size_t i = 0; i < list->values_count; i++) {
		GENERAL_NAME *gn = NULL;
		P11CA_GUARD(x509_san_parse(list->values[i], &gn, em));
		if (sk_GENERAL_NAME_push(e->issuer_alt_names, gn) <= 0) {
			GENERAL_NAME_free(gn);
			return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		}
	}
	e->spec.issuer_alt_names = e->issuer_alt_names;
	return P11CA_OK;
}

/* The first layer from the top that sets an optional bool, else the profile's value. */
#define LAYER_BOOL(req, ca, field, dflt)                                                           \
	((req) != NULL && (req)->has_##field ? (req)->field                                        \
	 : (ca) != NULL && (ca)->has_##field ? (ca)->field                                         \
					     : (dflt))
#define LAYER_MSG(req, ca, field)                                                                  \
	((req) != NULL && (req)->has_##field ? &(req)->field                                       \
	 : (ca) != NULL && (ca)->has_##field ? &(ca)->field                                        \
					     : NULL)

enum p11ca_err engine_ext_resolve(const struct p11cad_profile *pr,
				  const p11ca_v1_ExtensionSettings *ca,
				  const p11ca_v1_ExtensionSettings *req,
				  const struct engine_ext_issuer *issuer, struct engine_ext *out,
				  struct p11ca_errmsg *em)
{
	memset(out, 0, sizeof(*out));
	x509_ext_spec_init(&out->spec);
	if (pr != NULL) {
		out->key_usage = pr->key_usage;
		out->key_usage_critical = pr->key_usage_critical;
		for (size_t i = 0; i < pr->n_eku && i < ENGINE_EXT_EKU_MAX; i++) {
			snprintf(out->eku[i], sizeof(out->eku[0]), "%s", pr->eku[i]);
			out->eku_ptr[i] = out->eku[i];
		}
		out->n_eku = pr->n_eku < ENGINE_EXT_EKU_MAX ? pr->n_eku : ENGINE_EXT_EKU_MAX;
		out->eku_critical = pr->eku_critical;
	}
	for (int k = 0; k < ENGINE_URL_KINDS; k++) {
		const p11ca_v1_StringList *l = urls_pick(ca, req, pr, (enum engine_url_kind)k);
		if (l != NULL)
			P11CA_GUARD(urls_take(out, (enum engine_url_kind)k, l, issuer, em));
	}
	P11CA_GUARD(policies_take(out, pr, ca, req, em));
	P11CA_GUARD(ian_take(out, LAYER_MSG(req, ca, issuer_alt_names), em));
	out->spec.ocsp_no_check =
		LAYER_BOOL(req, ca, ocsp_no_check, pr != NULL && pr->ocsp_no_check);
	out->spec.tls_feature_status_request = LAYER_BOOL(
		req, ca, tls_feature_status_request, pr != NULL && pr->tls_feature_status_request);
	return usage_take(out, LAYER_MSG(req, ca, key_usage),
			  LAYER_MSG(req, ca, extended_key_usage), em);
}

void engine_ext_clear(struct engine_ext *e)
{
	if (e == NULL)
		return;
	GENERAL_NAMES_free(e->issuer_alt_names);
	e->issuer_alt_names = NULL;
	e->spec.issuer_alt_names = NULL;
}

enum p11ca_err engine_ext_check(const p11ca_v1_ExtensionSettings *layer, struct p11ca_errmsg *em)
{
	struct engine_ext *e = OPENSSL_zalloc(sizeof(*e));
	/* Templates filled with the longest values they can take. */
	const struct engine_ext_issuer probe = {
		.name = "0123456789012345678901234567890123456789012345678901234567890123",
		.serial = "0123456789ABCDEF0123456789ABCDEF01234567",
	};
	if (e == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	enum p11ca_err err = engine_ext_resolve(NULL, layer, NULL, &probe, e, em);
	engine_ext_clear(e);
	OPENSSL_free(e);
	return err;
}
