/*
 * ExtensionSettings layered over a profile (plan.h): profile < CA < request, per field. The
 * profile gates whether the CA's URLs are used; URLs a request gives are always used. URL
 * templates are filled in for the issuing CA. The request layer of a caller who is not an
 * admin may only narrow the usages (keyUsage, extendedKeyUsage, OCSPNoCheck) below it.
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
			if (strlen(name) >= sizeof(e->eku[0]) || !profile_eku_name_ok(name))
				return p11ca_fail(
					em, P11CA_E_INVALID_ARG,
					"extendedKeyUsage '%.39s' is not a key purpose: use "
					"serverAuth, clientAuth, codeSigning, emailProtection, "
					"timeStamping, OCSPSigning, anyExtendedKeyUsage or a "
					"dotted "
					"OID",
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

/* What the profile and CA layers decided, for the request layer to stay within. */
struct usage_base {
	uint32_t key_usage;
	bool key_usage_critical;
	char eku[ENGINE_EXT_EKU_MAX][40];
	size_t n_eku;
	bool eku_critical;
	bool ocsp_no_check;
};

static ASN1_OBJECT *eku_obj(const char *name)
{
	return OBJ_txt2obj(name, strspn(name, "0123456789.") == strlen(name) ? 1 : 0);
}

/* Whether EKU `name` is among base's (anyExtendedKeyUsage there admits every one). */
static bool eku_within(const struct usage_base *b, const char *name)
{
	ASN1_OBJECT *want = eku_obj(name);
	bool in = false;
	for (size_t i = 0; i < b->n_eku && !in && want != NULL; i++) {
		ASN1_OBJECT *have = eku_obj(b->eku[i]);
		in = have != NULL &&
		     (OBJ_cmp(have, want) == 0 || OBJ_obj2nid(have) == NID_anyExtendedKeyUsage);
		ASN1_OBJECT_free(have);
	}
	ASN1_OBJECT_free(want);
	return in;
}

#define WIDEN_HINT                                                                                 \
	"only an admin may widen what the profile and the CA give; ask one, or define a "          \
	"profile that has it"

/*
 * A caller who is not an admin may only narrow keyUsage, extendedKeyUsage and OCSPNoCheck:
 * otherwise an operator allowed a client profile could get OCSPSigning (and sign OCSP
 * answers for the CA), cRLSign, or a certificate with no usage limit at all. Criticality
 * may be added, never taken away.
 */
static enum p11ca_err usage_narrow(struct engine_ext *e, const struct usage_base *b,
				   const p11ca_v1_ExtensionSettings *req, const char *pname,
				   struct p11ca_errmsg *em)
{
	if (req->has_key_usage) {
		uint32_t extra = b->key_usage != 0 ? e->key_usage & ~b->key_usage : 0;
		char names[200];
		if (req->key_usage.names_count == 0 && b->key_usage != 0)
			return p11ca_fail(em, P11CA_E_PERMISSION,
					  "an empty keyUsage list would drop keyUsage (profile %s "
					  "gives one): " WIDEN_HINT,
					  pname);
		if (extra != 0) {
			profile_key_usage_format(extra, names, sizeof(names));
			return p11ca_fail(em, P11CA_E_PERMISSION,
					  "keyUsage %s is more than profile %s and the CA give: "
					  "ask for a part of theirs; " WIDEN_HINT,
					  names, pname);
		}
		e->key_usage_critical = e->key_usage_critical || b->key_usage_critical;
	}
	if (req->has_extended_key_usage) {
		if (req->extended_key_usage.names_count == 0 && b->n_eku != 0)
			return p11ca_fail(em, P11CA_E_PERMISSION,
					  "an empty extendedKeyUsage list would drop "
					  "extendedKeyUsage (profile %s gives one): " WIDEN_HINT,
					  pname);
		for (size_t i = 0; i < e->n_eku && b->n_eku != 0; i++)
			if (!eku_within(b, e->eku[i]))
				return p11ca_fail(
					em, P11CA_E_PERMISSION,
					"extendedKeyUsage %.39s is not one profile %s and "
					"the CA give: ask for a part of theirs; " WIDEN_HINT,
					e->eku[i], pname);
		e->eku_critical = e->eku_critical || b->eku_critical;
	}
	if (req->has_ocsp_no_check && req->ocsp_no_check && !b->ocsp_no_check)
		return p11ca_fail(em, P11CA_E_PERMISSION,
				  "OCSPNoCheck is for OCSP responders and profile %s does not give "
				  "it: " WIDEN_HINT,
				  pname);
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
				  const p11ca_v1_ExtensionSettings *req, bool req_may_widen,
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
	/* The CA layer (set by admins only) first; what it and the profile give is the
	 * bound the request layer is held to. */
	P11CA_GUARD(usage_take(
		out, ca != NULL && ca->has_key_usage ? &ca->key_usage : NULL,
		ca != NULL && ca->has_extended_key_usage ? &ca->extended_key_usage : NULL, em));
	if (req == NULL)
		return P11CA_OK;
	struct usage_base base = {
		.key_usage = out->key_usage,
		.key_usage_critical = out->key_usage_critical,
		.n_eku = out->n_eku,
		.eku_critical = out->eku_critical,
		.ocsp_no_check = ca != NULL && ca->has_ocsp_no_check ? ca->ocsp_no_check
				 : pr != NULL			     ? pr->ocsp_no_check
								     : false,
	};
	memcpy(base.eku, out->eku, sizeof(base.eku));
	P11CA_GUARD(usage_take(out, req->has_key_usage ? &req->key_usage : NULL,
			       req->has_extended_key_usage ? &req->extended_key_usage : NULL, em));
	if (req_may_widen)
		return P11CA_OK;
	return usage_narrow(out, &base, req, pr != NULL ? pr->name : "(none)", em);
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
	enum p11ca_err err = engine_ext_resolve(NULL, layer, NULL, true, &probe, e, em);
	engine_ext_clear(e);
	OPENSSL_free(e);
	return err;
}

/* Append the strings (up to a NULL) to out[cap] at *n; cut at cap, still terminated. */
static void sum_put(char *out, size_t cap, size_t *n, const char *const *parts)
{
	for (; *parts != NULL; parts++) {
		size_t len = strlen(*parts);
		if (*n + 1 >= cap)
			return;
		if (len > cap - 1 - *n)
			len = cap - 1 - *n;
		memcpy(out + *n, *parts, len);
		*n += len;
		out[*n] = '\0';
	}
}

#define SUM(...) sum_put(out, cap, &n, (const char *const[]){__VA_ARGS__, NULL})

static void sum_list(char *out, size_t cap, size_t *np, const char *key, const char (*v)[256],
		     size_t cnt)
{
	size_t n = *np;
	SUM(" ", key, "=[");
	for (size_t i = 0; i < cnt; i++)
		SUM(i ? " " : "", v[i]);
	SUM("]");
	*np = n;
}

static void sum_names(char *out, size_t cap, size_t *np, const char *key,
		      const p11ca_v1_UsageList *l)
{
	size_t n = *np;
	SUM(" ", key, "=[");
	for (size_t i = 0; i < l->names_count; i++)
		SUM(i ? " " : "", l->names[i]);
	SUM("]", l->critical ? " critical" : "");
	*np = n;
}

void engine_ext_summary(const p11ca_v1_ExtensionSettings *e, char *out, size_t cap)
{
	size_t n = 0;
	out[0] = '\0';
	if (e->has_crl_urls)
		sum_list(out, cap, &n, "crl_urls", e->crl_urls.values, e->crl_urls.values_count);
	if (e->has_ocsp_urls)
		sum_list(out, cap, &n, "ocsp_urls", e->ocsp_urls.values, e->ocsp_urls.values_count);
	if (e->has_issuer_urls)
		sum_list(out, cap, &n, "issuer_urls", e->issuer_urls.values,
			 e->issuer_urls.values_count);
	if (e->has_issuer_alt_names)
		sum_list(out, cap, &n, "issuer_alt_names", e->issuer_alt_names.values,
			 e->issuer_alt_names.values_count);
	if (e->has_policies) {
		SUM(" policies=[");
		for (size_t i = 0; i < e->policies.policies_count; i++)
			SUM(i ? " " : "", e->policies.policies[i].oid);
		SUM("]");
	}
	if (e->has_key_usage)
		sum_names(out, cap, &n, "key_usage", &e->key_usage);
	if (e->has_extended_key_usage)
		sum_names(out, cap, &n, "extended_key_usage", &e->extended_key_usage);
	if (e->has_ocsp_no_check)
		SUM(" ocsp_no_check=", e->ocsp_no_check ? "true" : "false");
	if (e->has_tls_feature_status_request)
		SUM(" tls_feature_status_request=",
		    e->tls_feature_status_request ? "true" : "false");
}
#undef SUM
