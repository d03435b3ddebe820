/*
 * The names of a planned certificate (plan.h): the subject from the request, the profile's
 * default attributes and, as the last resort, the CSR; the SANs from the request only
 * (never the CSR's extensions), with the CN added first when it is a DNS name or an IP
 * address, and the first SAN as CN when there is none.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "appliance/engine/plan.h"

#define PLAN_CN_MAX 64 /* RFC 5280 ub-common-name */
#define SANS_MAX    64 /* when [engine] max_sans is 0; also CertSignRequest.sans max_count */

static const int canonical_nids[] = {
	NID_countryName,      NID_stateOrProvinceName,	  NID_localityName,
	NID_organizationName, NID_organizationalUnitName, NID_commonName};
#define N_CANONICAL (sizeof(canonical_nids) / sizeof(canonical_nids[0]))

static bool nid_canonical(int nid)
{
	for (size_t i = 0; i < N_CANONICAL; i++)
		if (canonical_nids[i] == nid)
			return true;
	return false;
}

static enum p11ca_err name_copy_nid(X509_NAME *to, const X509_NAME *from, int nid, bool *any,
				    struct p11ca_errmsg *em)
{
	*any = false;
	for (int i = -1; from != NULL && (i = X509_NAME_get_index_by_NID(from, nid, i)) >= 0;) {
		if (X509_NAME_add_entry(to, X509_NAME_get_entry(from, i), -1, 0) != 1)
			return p11ca_fail(em, P11CA_E_NOMEM, "out of memory building the subject");
		*any = true;
	}
	return P11CA_OK;
}

/* `top` with the attributes of `low` it lacks, in x509_name_parse's canonical order (C, ST,
 * L, O, OU, CN, then the rest as given, top's first). Either may be NULL. */
static enum p11ca_err name_merge(const X509_NAME *top, const X509_NAME *low, X509_NAME **out,
				 struct p11ca_errmsg *em)
{
	X509_NAME *n = X509_NAME_new();
	bool any;
	enum p11ca_err err = P11CA_OK;
	if (n == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	for (size_t i = 0; err == P11CA_OK && i < N_CANONICAL; i++) {
		err = name_copy_nid(n, top, canonical_nids[i], &any, em);
		if (err == P11CA_OK && !any)
			err = name_copy_nid(n, low, canonical_nids[i], &any, em);
	}
	const X509_NAME *layers[2] = {top, low};
	for (int l = 0; l < 2; l++) {
		for (int i = 0;
		     err == P11CA_OK && layers[l] != NULL && i < X509_NAME_entry_count(layers[l]);
		     i++) {
			X509_NAME_ENTRY *e = X509_NAME_get_entry(layers[l], i);
			int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
			if (nid_canonical(nid) || (l == 1 && top != NULL &&
						   X509_NAME_get_index_by_NID(top, nid, -1) >= 0))
				continue;
			if (X509_NAME_add_entry(n, e, -1, 0) != 1)
				err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		}
	}
	if (err != P11CA_OK) {
		X509_NAME_free(n);
		return err;
	}
	*out = n;
	return P11CA_OK;
}

/* The text a SAN offers as a CN (DNS, email and URI values, IP addresses), or "". */
static void san_as_cn(const GENERAL_NAME *gn, char out[PLAN_CN_MAX + 1])
{
	out[0] = '\0';
	if (gn->type == GEN_DNS || gn->type == GEN_EMAIL || gn->type == GEN_URI) {
		const ASN1_IA5STRING *s = gn->d.ia5;
		if (s->length > 0 && s->length <= PLAN_CN_MAX &&
		    memchr(s->data, '\0', (size_t)s->length) == NULL)
			snprintf(out, PLAN_CN_MAX + 1, "%.*s", s->length, (const char *)s->data);
	} else if (gn->type == GEN_IPADD) {
		const ASN1_OCTET_STRING *ip = gn->d.iPAddress;
		char buf[INET6_ADDRSTRLEN];
		if ((ip->length == 4 || ip->length == 16) &&
		    inet_ntop(ip->length == 4 ? AF_INET : AF_INET6, ip->data, buf, sizeof(buf)))
			snprintf(out, PLAN_CN_MAX + 1, "%s", buf);
	}
}

static bool gn_present(const GENERAL_NAMES *sans, const GENERAL_NAME *gn)
{
	for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++)
		if (GENERAL_NAME_cmp(sk_GENERAL_NAME_value(sans, i), (GENERAL_NAME *)gn) == 0)
			return true;
	return false;
}

/* A CN that is an IP address or a DNS name also goes first into the SANs: clients match
 * names only there (RFC 6125). Any other CN stays in the subject only. */
static enum p11ca_err cn_into_sans(const X509_NAME *subject, GENERAL_NAMES *sans,
				   struct p11ca_errmsg *em)
{
	int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	if (i < 0)
		return P11CA_OK;
	unsigned char *utf8 = NULL;
	int n = ASN1_STRING_to_UTF8(&utf8,
				    X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
	if (n <= 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the subject's CN is not valid text: give another subject");
	GENERAL_NAME *gn = NULL;
	enum p11ca_err err = P11CA_OK;
	if (n < 250 && memchr(utf8, '\0', (size_t)n) == NULL) {
		static const char *const kinds[] = {"IP", "DNS"};
		char text[260];
		struct p11ca_errmsg ignored;
		for (size_t k = 0; k < 2 && gn == NULL; k++) {
			snprintf(text, sizeof(text), "%s:%.*s", kinds[k], n, (const char *)utf8);
			if (x509_san_parse(text, &gn, &ignored) != P11CA_OK)
				gn = NULL;
		}
	}
	if (gn != NULL && !gn_present(sans, gn)) {
		if (sk_GENERAL_NAME_insert(sans, gn, 0) <= 0)
			err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory adding the CN");
		else
			gn = NULL;
	}
	GENERAL_NAME_free(gn);
	OPENSSL_free(utf8);
	return err;
}

static enum p11ca_err sans_build(const struct engine_plan_request *r, GENERAL_NAMES **out,
				 struct p11ca_errmsg *em)
{
	if (r->san_names != NULL) {
		*out = sk_GENERAL_NAME_deep_copy(r->san_names, GENERAL_NAME_dup, GENERAL_NAME_free);
		return *out != NULL ? P11CA_OK
				    : p11ca_fail(em, P11CA_E_NOMEM, "out of memory copying names");
	}
	if ((*out = sk_GENERAL_NAME_new_null()) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	for (size_t i = 0; i < r->n_sans; i++) {
		GENERAL_NAME *gn = NULL;
		P11CA_GUARD(x509_san_parse(r->sans[i], &gn, em));
		if (gn_present(*out, gn)) {
			GENERAL_NAME_free(gn); /* a name twice is the same name */
			continue;
		}
		if (sk_GENERAL_NAME_push(*out, gn) <= 0) {
			GENERAL_NAME_free(gn);
			return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		}
	}
	return P11CA_OK;
}

/* Subject: the given one (text or name) with the profile's attributes it lacks; without a
 * CN, the first SAN as CN; empty after all that, the CSR's. */
static enum p11ca_err subject_build(const struct engine_plan_request *r,
				    const struct p11cad_profile *pr, struct engine_plan *p,
				    struct p11ca_errmsg *em)
{
	X509_NAME *given = NULL, *dflt = NULL, *cn = NULL, *merged = NULL;
	enum p11ca_err err = P11CA_OK;
	if (r->subject_name != NULL) {
		if ((given = X509_NAME_dup(r->subject_name)) == NULL)
			err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		else
			err = x509_name_check(given, em);
	} else if (r->subject != NULL && r->subject[0] != '\0') {
		err = x509_name_parse(r->subject, &given, em);
	}
	if (err == P11CA_OK && pr->subject[0] != '\0')
		err = x509_name_parse(pr->subject, &dflt, em);
	if (err == P11CA_OK)
		err = name_merge(given, dflt, &p->subject, em);
	if (err != P11CA_OK)
		goto out;
	char text[PLAN_CN_MAX + 1] = "";
	if (!r->no_san_to_cn && X509_NAME_get_index_by_NID(p->subject, NID_commonName, -1) < 0 &&
	    sk_GENERAL_NAME_num(p->sans) > 0)
		san_as_cn(sk_GENERAL_NAME_value(p->sans, 0), text);
	if (text[0] != '\0') {
		if ((cn = X509_NAME_new()) == NULL ||
		    X509_NAME_add_entry_by_NID(cn, NID_commonName, MBSTRING_UTF8,
					       (const unsigned char *)text, -1, -1, 0) != 1) {
			err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
			goto out;
		}
		err = name_merge(p->subject, cn, &merged, em);
		if (err != P11CA_OK)
			goto out;
		X509_NAME_free(p->subject);
		p->subject = merged;
	}
	if (X509_NAME_entry_count(p->subject) == 0 && given == NULL && p->csr != NULL) {
		const X509_NAME *csr_subject = X509_REQ_get_subject_name(p->csr);
		err = x509_name_check(csr_subject, em);
		if (err != P11CA_OK)
			goto out;
		X509_NAME_free(p->subject);
		if ((p->subject = X509_NAME_dup(csr_subject)) == NULL)
			err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	}
out:
	X509_NAME_free(given);
	X509_NAME_free(dflt);
	X509_NAME_free(cn);
	return err;
}

enum p11ca_err engine_plan_names(const struct p11cad_config *cfg,
				 const struct engine_plan_request *r, struct engine_plan *p,
				 struct p11ca_errmsg *em)
{
	size_t max = cfg->max_sans != 0 ? cfg->max_sans : SANS_MAX;
	if (r->n_sans > max)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%zu SANs requested; this server allows at most %zu ([engine] "
				  "max_sans)",
				  r->n_sans, max);
	P11CA_GUARD(sans_build(r, &p->sans, em));
	P11CA_GUARD(subject_build(r, p->profile, p, em));
	if (p->profile->cn_in_san && !r->no_cn_in_san)
		P11CA_GUARD(cn_into_sans(p->subject, p->sans, em));
	if ((size_t)sk_GENERAL_NAME_num(p->sans) > max)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "with the CN added the certificate would have %d SANs, over this "
				  "server's %zu: give fewer names",
				  sk_GENERAL_NAME_num(p->sans), max);
	if (X509_NAME_get_index_by_NID(p->subject, NID_commonName, -1) < 0 &&
	    sk_GENERAL_NAME_num(p->sans) == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate would name nobody: give a subject with a CN or "
				  "at least one SAN");
	return P11CA_OK;
}
