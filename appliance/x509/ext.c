/*
 * The extensions of struct x509_ext_spec: where a certificate's status and policy live
 * (CRL distribution points, authority information access, certificatePolicies,
 * issuerAltName, OCSP no-check, TLS feature) and what a CA may issue (nameConstraints,
 * policyConstraints, inhibitAnyPolicy).
 *
 * Everything is checked before anything is added, so a refused spec never leaves a half-
 * built certificate behind, and the CA-only extensions are refused for end entities:
 * RFC 5280 defines them only in CA certificates, and a relying party meeting one in a leaf
 * may reject it. Criticality follows RFC 5280 and RFC 7633 and is not configurable.
 */
#include "appliance/x509/x509_internal.h"

#include <string.h>

/* Bounds that keep a certificate's size sane; far above any real profile. */
#define EXT_URLS_MAX	 8
#define EXT_POLICIES_MAX 16
#define EXT_CPS_MAX	 4
#define EXT_SKIP_MAX	 64 /* policyConstraints / inhibitAnyPolicy SkipCerts */
#define EXT_SUBTREES_MAX 64 /* per list */

/* RFC 7633: TLS feature status_request (TLS extension 5). */
#define TLS_FEATURE_STATUS_REQUEST 5

static enum p11ca_err urls_check(const char *what, const char *const *urls, size_t n,
				 bool allow_ldap, struct p11ca_errmsg *em)
{
	if (n > EXT_URLS_MAX || (n > 0 && urls == NULL))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%zu %s URLs; give at most %d", n, what,
				  EXT_URLS_MAX);
	for (size_t i = 0; i < n; i++)
		P11CA_GUARD(x509_url_check(urls[i], allow_ldap, em));
	return P11CA_OK;
}

static enum p11ca_err policies_check(const struct x509_ext_spec *ext, struct p11ca_errmsg *em)
{
	if (ext->n_policies > EXT_POLICIES_MAX || (ext->n_policies > 0 && ext->policies == NULL))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%zu certificate policies; give at most %d", ext->n_policies,
				  EXT_POLICIES_MAX);
	for (size_t i = 0; i < ext->n_policies; i++) {
		const struct x509_policy_spec *p = &ext->policies[i];
		if (p->oid == NULL || !x509_oid_text_ok(p->oid))
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "certificate policy '%.64s' is not a dotted-decimal OID",
					  p->oid != NULL ? p->oid : "(none)");
		/* RFC 5280 4.2.1.4: a policy OID appears at most once. */
		for (size_t j = 0; j < i; j++)
			if (strcmp(ext->policies[j].oid, p->oid) == 0)
				return p11ca_fail(em, P11CA_E_INVALID_ARG,
						  "certificate policy %s is given twice", p->oid);
		if (p->n_cps_uris > EXT_CPS_MAX || (p->n_cps_uris > 0 && p->cps_uris == NULL))
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "certificate policy %s has %zu CPS URLs; at most %d",
					  p->oid, p->n_cps_uris, EXT_CPS_MAX);
		for (size_t j = 0; j < p->n_cps_uris; j++)
			P11CA_GUARD(x509_url_check(p->cps_uris[j], false, em));
		if (p->user_notice != NULL)
			P11CA_GUARD(x509_notice_check(p->user_notice, em));
	}
	return P11CA_OK;
}

static bool subtrees_present(const STACK_OF(GENERAL_SUBTREE) * s)
{
	return s != NULL && sk_GENERAL_SUBTREE_num(s) > 0;
}

/* RFC 5280 4.2.1.10: minimum 0 (absent), maximum absent; and a base OpenSSL's matcher (and so
 * x509_check_name_constraints) understands, so no subtree is silently never matched. */
static enum p11ca_err subtrees_check(const char *what, const STACK_OF(GENERAL_SUBTREE) * s,
				     struct p11ca_errmsg *em)
{
	if (sk_GENERAL_SUBTREE_num(s) > EXT_SUBTREES_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%d %s subtrees; give at most %d",
				  sk_GENERAL_SUBTREE_num(s), what, EXT_SUBTREES_MAX);
	for (int i = 0; i < sk_GENERAL_SUBTREE_num(s); i++) {
		const GENERAL_SUBTREE *st = sk_GENERAL_SUBTREE_value(s, i);
		int type = -1;
		const void *v = st != NULL && st->base != NULL
					? GENERAL_NAME_get0_value(st->base, &type)
					: NULL;
		if (v == NULL)
			return p11ca_fail(em, P11CA_E_INVALID_ARG, "%s subtree %d is empty", what,
					  i + 1);
		/* An explicit minimum, even 0, would be encoded: DER omits the DEFAULT. */
		if (st->minimum != NULL || st->maximum != NULL)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "%s subtree %d: RFC 5280 allows only minimum 0 and no "
					  "maximum",
					  what, i + 1);
		if (type == GEN_IPADD && ASN1_STRING_length(v) != 8 && ASN1_STRING_length(v) != 32)
			return p11ca_fail(
				em, P11CA_E_INVALID_ARG,
				"%s subtree %d: an IP subtree is an address and mask (8 or "
				"32 bytes), not %d bytes",
				what, i + 1, ASN1_STRING_length(v));
		if (type != GEN_DNS && type != GEN_IPADD && type != GEN_EMAIL && type != GEN_URI &&
		    type != GEN_DIRNAME)
			return p11ca_fail(
				em, P11CA_E_INVALID_ARG,
				"%s subtree %d has a name of type %d; give DNS, IP, email, "
				"URI or dirname",
				what, i + 1, type);
	}
	return P11CA_OK;
}

enum p11ca_err x509_ext_spec_check(const struct x509_ext_spec *ext, bool is_ca,
				   struct p11ca_errmsg *em)
{
	if (ext == NULL)
		return P11CA_OK;
	P11CA_GUARD(urls_check("CRL distribution point", ext->crl_urls, ext->n_crl_urls, true, em));
	P11CA_GUARD(urls_check("OCSP", ext->ocsp_urls, ext->n_ocsp_urls, false, em));
	P11CA_GUARD(urls_check("CA issuers", ext->issuer_urls, ext->n_issuer_urls, true, em));
	P11CA_GUARD(policies_check(ext, em));
	bool constrained = subtrees_present(ext->permitted) || subtrees_present(ext->excluded);
	bool policy_constrained = ext->require_explicit_policy >= 0 ||
				  ext->inhibit_policy_mapping >= 0 || ext->inhibit_any_policy >= 0;
	if (!is_ca && (constrained || policy_constrained))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s is for CA certificates only; remove it from the end-entity "
				  "certificate's settings",
				  constrained ? "nameConstraints"
					      : "policyConstraints/inhibitAnyPolicy");
	P11CA_GUARD(subtrees_check("permitted", ext->permitted, em));
	P11CA_GUARD(subtrees_check("excluded", ext->excluded, em));
	if (ext->require_explicit_policy > EXT_SKIP_MAX ||
	    ext->inhibit_policy_mapping > EXT_SKIP_MAX || ext->inhibit_any_policy > EXT_SKIP_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "policyConstraints and inhibitAnyPolicy skip at most %d "
				  "certificates",
				  EXT_SKIP_MAX);
	return P11CA_OK;
}

/* An extension whose value is given as DER. */
static enum p11ca_err add_raw(X509 *x, int nid, const uint8_t *der, size_t len, bool critical,
			      struct p11ca_errmsg *em)
{
	ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
	X509_EXTENSION *e = NULL;
	enum p11ca_err err = P11CA_OK;
	if (os == NULL || ASN1_OCTET_STRING_set(os, der, (int)len) != 1 ||
	    (e = X509_EXTENSION_create_by_NID(NULL, nid, critical ? 1 : 0, os)) == NULL ||
	    X509_add_ext(x, e, -1) != 1)
		err = p11ca_fail(em, P11CA_E_NOMEM, "cannot add the %s extension", OBJ_nid2ln(nid));
	X509_EXTENSION_free(e);
	ASN1_OCTET_STRING_free(os);
	return err;
}

/* A uniformResourceIdentifier GeneralName pushed onto `names`. */
static bool push_uri(GENERAL_NAMES *names, const char *url)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *s = ASN1_IA5STRING_new();
	if (gn == NULL || s == NULL || ASN1_STRING_set(s, url, (int)strlen(url)) != 1) {
		GENERAL_NAME_free(gn);
		ASN1_IA5STRING_free(s);
		return false;
	}
	GENERAL_NAME_set0_value(gn, GEN_URI, s);
	if (sk_GENERAL_NAME_push(names, gn) <= 0) {
		GENERAL_NAME_free(gn);
		return false;
	}
	return true;
}

/* One DistributionPoint whose fullName lists every URL: they are alternatives for the same
 * CRL (RFC 5280 4.2.1.13), not separate partitions. */
static enum p11ca_err add_crldp(X509 *x, const struct x509_ext_spec *ext, struct p11ca_errmsg *em)
{
	CRL_DIST_POINTS *dps = sk_DIST_POINT_new_null();
	DIST_POINT *dp = DIST_POINT_new();
	DIST_POINT_NAME *name = DIST_POINT_NAME_new();
	GENERAL_NAMES *full = sk_GENERAL_NAME_new_null();
	bool ok = dps != NULL && dp != NULL && name != NULL && full != NULL;
	for (size_t i = 0; ok && i < ext->n_crl_urls; i++)
		ok = push_uri(full, ext->crl_urls[i]);
	if (ok) {
		name->type = 0;
		name->name.fullname = full;
		full = NULL;
		dp->distpoint = name;
		name = NULL;
		ok = sk_DIST_POINT_push(dps, dp) > 0;
		if (ok)
			dp = NULL;
	}
	enum p11ca_err err =
		ok ? x509_add_ext(x, NID_crl_distribution_points, dps, false, em)
		   : p11ca_fail(em, P11CA_E_NOMEM, "out of memory for cRLDistributionPoints");
	GENERAL_NAMES_free(full);
	DIST_POINT_NAME_free(name);
	DIST_POINT_free(dp);
	sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
	return err;
}

static bool push_access(AUTHORITY_INFO_ACCESS *aia, int method, const char *url)
{
	ACCESS_DESCRIPTION *ad = ACCESS_DESCRIPTION_new();
	ASN1_IA5STRING *s = ASN1_IA5STRING_new();
	if (ad == NULL || ad->location == NULL || s == NULL ||
	    ASN1_STRING_set(s, url, (int)strlen(url)) != 1) {
		ACCESS_DESCRIPTION_free(ad);
		ASN1_IA5STRING_free(s);
		return false;
	}
	ASN1_OBJECT_free(ad->method);
	ad->method = OBJ_nid2obj(method);
	GENERAL_NAME_set0_value(ad->location, GEN_URI, s);
	if (sk_ACCESS_DESCRIPTION_push(aia, ad) <= 0) {
		ACCESS_DESCRIPTION_free(ad);
		return false;
	}
	return true;
}

/* OCSP first: clients that look at the first entry only should find the responder. */
static enum p11ca_err add_aia(X509 *x, const struct x509_ext_spec *ext, struct p11ca_errmsg *em)
{
	AUTHORITY_INFO_ACCESS *aia = sk_ACCESS_DESCRIPTION_new_null();
	bool ok = aia != NULL;
	for (size_t i = 0; ok && i < ext->n_ocsp_urls; i++)
		ok = push_access(aia, NID_ad_OCSP, ext->ocsp_urls[i]);
	for (size_t i = 0; ok && i < ext->n_issuer_urls; i++)
		ok = push_access(aia, NID_ad_ca_issuers, ext->issuer_urls[i]);
	enum p11ca_err err =
		ok ? x509_add_ext(x, NID_info_access, aia, false, em)
		   : p11ca_fail(em, P11CA_E_NOMEM, "out of memory for authorityInfoAccess");
	AUTHORITY_INFO_ACCESS_free(aia);
	return err;
}

static POLICYQUALINFO *qualifier_cps(const char *url)
{
	POLICYQUALINFO *q = POLICYQUALINFO_new();
	if (q == NULL)
		return NULL;
	/* The qualifier id first: POLICYQUALINFO_free picks the union member by it. */
	q->pqualid = OBJ_nid2obj(NID_id_qt_cps);
	if ((q->d.cpsuri = ASN1_IA5STRING_new()) == NULL ||
	    ASN1_STRING_set(q->d.cpsuri, url, (int)strlen(url)) != 1) {
		POLICYQUALINFO_free(q);
		return NULL;
	}
	return q;
}

/* explicitText as UTF8String (RFC 5280 4.2.1.4 "SHOULD"), without a noticeRef. */
static POLICYQUALINFO *qualifier_notice(const char *text)
{
	POLICYQUALINFO *q = POLICYQUALINFO_new();
	if (q == NULL)
		return NULL;
	q->pqualid = OBJ_nid2obj(NID_id_qt_unotice);
	if ((q->d.usernotice = USERNOTICE_new()) == NULL ||
	    (q->d.usernotice->exptext = ASN1_UTF8STRING_new()) == NULL ||
	    ASN1_STRING_set(q->d.usernotice->exptext, text, (int)strlen(text)) != 1) {
		POLICYQUALINFO_free(q);
		return NULL;
	}
	return q;
}

static bool push_qualifier(POLICYINFO *pi, POLICYQUALINFO *q)
{
	if (q == NULL)
		return false;
	if ((pi->qualifiers == NULL && (pi->qualifiers = sk_POLICYQUALINFO_new_null()) == NULL) ||
	    sk_POLICYQUALINFO_push(pi->qualifiers, q) <= 0) {
		POLICYQUALINFO_free(q);
		return false;
	}
	return true;
}

static bool push_policy(CERTIFICATEPOLICIES *cp, const struct x509_policy_spec *p)
{
	POLICYINFO *pi = POLICYINFO_new();
	bool ok = pi != NULL;
	if (ok) {
		ASN1_OBJECT_free(pi->policyid);
		ok = (pi->policyid = OBJ_txt2obj(p->oid, 1)) != NULL;
	}
	for (size_t i = 0; ok && i < p->n_cps_uris; i++)
		ok = push_qualifier(pi, qualifier_cps(p->cps_uris[i]));
	if (ok && p->user_notice != NULL && p->user_notice[0] != '\0')
		ok = push_qualifier(pi, qualifier_notice(p->user_notice));
	if (ok && sk_POLICYINFO_push(cp, pi) > 0)
		return true;
	POLICYINFO_free(pi);
	return false;
}

static enum p11ca_err add_policies(X509 *x, const struct x509_ext_spec *ext,
				   struct p11ca_errmsg *em)
{
	CERTIFICATEPOLICIES *cp = sk_POLICYINFO_new_null();
	bool ok = cp != NULL;
	for (size_t i = 0; ok && i < ext->n_policies; i++)
		ok = push_policy(cp, &ext->policies[i]);
	enum p11ca_err err =
		ok ? x509_add_ext(x, NID_certificate_policies, cp, false, em)
		   : p11ca_fail(em, P11CA_E_NOMEM, "out of memory for certificatePolicies");
	sk_POLICYINFO_pop_free(cp, POLICYINFO_free);
	return err;
}

/* The SEQUENCE's stacks are borrowed, not copied: nc lives on the stack and is never freed. */
static enum p11ca_err add_name_constraints(X509 *x, const struct x509_ext_spec *ext,
					   struct p11ca_errmsg *em)
{
	NAME_CONSTRAINTS nc = {
		.permittedSubtrees = subtrees_present(ext->permitted)
					     ? (STACK_OF(GENERAL_SUBTREE) *)ext->permitted
					     : NULL,
		.excludedSubtrees = subtrees_present(ext->excluded)
					    ? (STACK_OF(GENERAL_SUBTREE) *)ext->excluded
					    : NULL,
	};
	/* RFC 5280 4.2.1.10: conforming CAs MUST mark it critical. */
	return x509_add_ext(x, NID_name_constraints, &nc, true, em);
}

static enum p11ca_err add_policy_constraints(X509 *x, const struct x509_ext_spec *ext,
					     struct p11ca_errmsg *em)
{
	POLICY_CONSTRAINTS *pc = POLICY_CONSTRAINTS_new();
	bool ok = pc != NULL;
	if (ok && ext->require_explicit_policy >= 0)
		ok = (pc->requireExplicitPolicy = ASN1_INTEGER_new()) != NULL &&
		     ASN1_INTEGER_set(pc->requireExplicitPolicy, ext->require_explicit_policy) == 1;
	if (ok && ext->inhibit_policy_mapping >= 0)
		ok = (pc->inhibitPolicyMapping = ASN1_INTEGER_new()) != NULL &&
		     ASN1_INTEGER_set(pc->inhibitPolicyMapping, ext->inhibit_policy_mapping) == 1;
	/* RFC 5280 4.2.1.11: conforming CAs MUST mark it critical. */
	enum p11ca_err err =
		ok ? x509_add_ext(x, NID_policy_constraints, pc, true, em)
		   : p11ca_fail(em, P11CA_E_NOMEM, "out of memory for policyConstraints");
	POLICY_CONSTRAINTS_free(pc);
	return err;
}

static enum p11ca_err add_inhibit_any(X509 *x, int skip, struct p11ca_errmsg *em)
{
	ASN1_INTEGER *n = ASN1_INTEGER_new();
	/* RFC 5280 4.2.1.14: conforming CAs MUST mark it critical. */
	enum p11ca_err err =
		n != NULL && ASN1_INTEGER_set(n, skip) == 1
			? x509_add_ext(x, NID_inhibit_any_policy, n, true, em)
			: p11ca_fail(em, P11CA_E_NOMEM, "out of memory for inhibitAnyPolicy");
	ASN1_INTEGER_free(n);
	return err;
}

enum p11ca_err x509_ext_spec_add(X509 *x, const struct x509_ext_spec *ext, struct p11ca_errmsg *em)
{
	static const uint8_t der_null[] = {0x05, 0x00};
	static const uint8_t der_tls_feature[] = {0x30, 0x03, 0x02, 0x01,
						  TLS_FEATURE_STATUS_REQUEST};
	if (ext == NULL)
		return P11CA_OK;
	if (ext->n_crl_urls > 0)
		P11CA_GUARD(add_crldp(x, ext, em));
	if (ext->n_ocsp_urls > 0 || ext->n_issuer_urls > 0)
		P11CA_GUARD(add_aia(x, ext, em));
	if (ext->n_policies > 0)
		P11CA_GUARD(add_policies(x, ext, em));
	if (ext->issuer_alt_names != NULL && sk_GENERAL_NAME_num(ext->issuer_alt_names) > 0)
		P11CA_GUARD(x509_add_ext(x, NID_issuer_alt_name, (void *)ext->issuer_alt_names,
					 false, em));
	if (ext->ocsp_no_check)
		P11CA_GUARD(add_raw(x, NID_id_pkix_OCSP_noCheck, der_null, sizeof(der_null), false,
				    em));
	/* RFC 7633 4.2.2: not critical, so clients without support still accept it. */
	if (ext->tls_feature_status_request)
		P11CA_GUARD(add_raw(x, NID_tlsfeature, der_tls_feature, sizeof(der_tls_feature),
				    false, em));
	if (subtrees_present(ext->permitted) || subtrees_present(ext->excluded))
		P11CA_GUARD(add_name_constraints(x, ext, em));
	if (ext->require_explicit_policy >= 0 || ext->inhibit_policy_mapping >= 0)
		P11CA_GUARD(add_policy_constraints(x, ext, em));
	if (ext->inhibit_any_policy >= 0)
		P11CA_GUARD(add_inhibit_any(x, ext->inhibit_any_policy, em));
	return P11CA_OK;
}

void x509_ext_spec_init(struct x509_ext_spec *ext)
{
	memset(ext, 0, sizeof(*ext));
	ext->require_explicit_policy = -1;
	ext->inhibit_policy_mapping = -1;
	ext->inhibit_any_policy = -1;
}
