/*
 * Refuse to help mis-issue: a certificate whose names lie outside its issuers'
 * nameConstraints would fail in every verifier that honours them, and issuing it anyway
 * would be the CA's failure. The matching is OpenSSL's own (NAME_CONSTRAINTS_check and
 * NAME_CONSTRAINTS_check_CN), so what this accepts `openssl verify` accepts too. Common names
 * OpenSSL passes over but a client may still read as its host (IP literals, wildcards,
 * U-labels) are checked on top, so this is stricter than `openssl verify`, never laxer.
 *
 * OpenSSL says only that some name failed, so on failure each name is checked again on a
 * scratch certificate holding just that name, to tell the operator which one it was.
 */
#include "appliance/x509/x509_internal.h"

#include <arpa/inet.h>
#include <string.h>

/* `cert` with only `subject` (NULL: an empty one) and, if gn is set, a SAN of just gn, with
 * its extensions cached as NAME_CONSTRAINTS_check expects. A copy of the real certificate
 * rather than a blank one: caching fails on a certificate that cannot be encoded. */
static X509 *scratch(X509 *cert, const X509_NAME *subject, const GENERAL_NAME *gn)
{
	X509 *x = X509_dup(cert);
	X509_NAME *empty = subject == NULL ? X509_NAME_new() : NULL;
	GENERAL_NAMES *sans = NULL;
	GENERAL_NAME *copy = NULL;
	bool ok = x != NULL && (subject != NULL || empty != NULL) &&
		  X509_set_subject_name(x, subject != NULL ? subject : empty) == 1;
	for (int at; ok && (at = X509_get_ext_by_NID(x, NID_subject_alt_name, -1)) >= 0;)
		X509_EXTENSION_free(X509_delete_ext(x, at));
	if (ok && gn != NULL) {
		ok = (sans = sk_GENERAL_NAME_new_null()) != NULL &&
		     (copy = GENERAL_NAME_dup(gn)) != NULL && sk_GENERAL_NAME_push(sans, copy) > 0;
		if (ok)
			copy = NULL;
		ok = ok && X509_add1_ext_i2d(x, NID_subject_alt_name, sans, 0, 0) == 1;
	}
	ok = ok && X509_check_purpose(x, -1, 0) == 1;
	GENERAL_NAME_free(copy);
	GENERAL_NAMES_free(sans);
	X509_NAME_free(empty);
	if (!ok) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* The GeneralName a client reading `cn` as its host would take it for, when OpenSSL's
 * NAME_CONSTRAINTS_check_CN passes over it: an IP literal (an IPv4 one OpenSSL checks only as
 * a DNS name, an IPv6 one not at all), a wildcard or internationalised name (checked in
 * A-labels). NULL for anything else; single labels are left alone as OpenSSL does ("jsmith"
 * names a person, not a host). */
static GENERAL_NAME *cn_host(const char *cn, size_t len)
{
	char text[X509_DNS_NAME_BUF + 1], dns[X509_DNS_NAME_BUF];
	uint8_t ip[16];
	GENERAL_NAME *gn = NULL;
	if (len > 0 && cn[len - 1] == '.')
		len--; /* as OpenSSL does */
	if (len == 0 || len >= sizeof(text) || memchr(cn, '\0', len) != NULL)
		return NULL;
	memcpy(text, cn, len);
	text[len] = '\0';
	bool ascii = true;
	for (size_t i = 0; i < len; i++)
		ascii = ascii && (unsigned char)text[i] < 0x80;
	if (inet_pton(AF_INET, text, ip) == 1 || inet_pton(AF_INET6, text, ip) == 1) {
		if (x509_gn_ip(ip, strchr(text, ':') != NULL ? 16 : 4, &gn, NULL) != P11CA_OK)
			return NULL;
	} else if ((!ascii || strncmp(text, "*.", 2) == 0) && strchr(text, '.') != NULL &&
		   x509_dns_name(text, true, "CN", dns, NULL) == P11CA_OK) {
		if (x509_gn_ia5(GEN_DNS, dns, &gn, NULL) != P11CA_OK)
			return NULL;
	}
	return gn;
}

/* NAME_CONSTRAINTS_check_CN, plus the CNs it passes over (cn_host). */
static int check_cn(X509 *cert, NAME_CONSTRAINTS *nc)
{
	int rv = NAME_CONSTRAINTS_check_CN(cert, nc);
	const X509_NAME *nm = X509_get_subject_name(cert);
	for (int i = -1; rv == X509_V_OK;) {
		if ((i = X509_NAME_get_index_by_NID(nm, NID_commonName, i)) < 0)
			break;
		unsigned char *utf8 = NULL;
		int len = ASN1_STRING_to_UTF8(&utf8,
					      X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i)));
		GENERAL_NAME *gn = len > 0 ? cn_host((const char *)utf8, (size_t)len) : NULL;
		if (gn != NULL) {
			/* nc_match is not public: the name goes through a scratch SAN. */
			X509 *x = scratch(cert, NULL, gn);
			rv = x != NULL ? NAME_CONSTRAINTS_check(x, nc) : X509_V_ERR_OUT_OF_MEM;
			X509_free(x);
		}
		GENERAL_NAME_free(gn);
		OPENSSL_free(utf8);
	}
	return rv;
}

/* One name in the form x509_san_parse reads, for messages. */
static void gn_text(const GENERAL_NAME *gn, char *out, size_t cap)
{
	const ASN1_STRING *s = NULL;
	const char *kind = "name";
	int type = -1;
	const void *v = GENERAL_NAME_get0_value(gn, &type);
	switch (type) {
	case GEN_DNS:
		kind = "DNS", s = v;
		break;
	case GEN_EMAIL:
		kind = "email", s = v;
		break;
	case GEN_URI:
		kind = "URI", s = v;
		break;
	case GEN_IPADD: {
		char ip[INET6_ADDRSTRLEN] = "?";
		int len = ASN1_STRING_length(v);
		if (len == 4 || len == 16)
			inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(v), ip,
				  sizeof(ip));
		snprintf(out, cap, "IP:%s", ip);
		return;
	}
	case GEN_DIRNAME: {
		char dn[256] = "?";
		if (x509_name_format(v, dn, sizeof(dn), NULL) != P11CA_OK)
			snprintf(dn, sizeof(dn), "(too long)");
		snprintf(out, cap, "dirname:%s", dn);
		return;
	}
	default:
		break;
	}
	if (s != NULL)
		snprintf(out, cap, "%s:%.*s", kind,
			 ASN1_STRING_length(s) > 200 ? 200 : ASN1_STRING_length(s),
			 (const char *)ASN1_STRING_get0_data(s));
	else
		snprintf(out, cap, "a name of type %d", type);
}

/* Which name of `cert` breaks `nc`, written into `what` (first found). */
static void find_offender(X509 *cert, NAME_CONSTRAINTS *nc, char *what, size_t cap)
{
	snprintf(what, cap, "one of its names");
	const X509_NAME *subject = X509_get_subject_name(cert);
	X509 *x = scratch(cert, subject, NULL);
	if (x != NULL &&
	    (NAME_CONSTRAINTS_check(x, nc) != X509_V_OK || check_cn(x, nc) != X509_V_OK)) {
		char dn[256] = "?";
		if (x509_name_format(subject, dn, sizeof(dn), NULL) != P11CA_OK)
			snprintf(dn, sizeof(dn), "(too long)");
		snprintf(what, cap, "the subject '%s'", dn);
		X509_free(x);
		return;
	}
	X509_free(x);
	GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
		x = scratch(cert, NULL, gn);
		int rv = x != NULL ? NAME_CONSTRAINTS_check(x, nc) : X509_V_OK;
		X509_free(x);
		if (rv != X509_V_OK) {
			char name[300];
			gn_text(gn, name, sizeof(name));
			snprintf(what, cap, "the subjectAltName %s", name);
			break;
		}
	}
	GENERAL_NAMES_free(sans);
}

static enum p11ca_err check_one(X509 *cert, X509 *ca, struct p11ca_errmsg *em)
{
	int crit = -1;
	NAME_CONSTRAINTS *nc = X509_get_ext_d2i(ca, NID_name_constraints, &crit, NULL);
	if (nc == NULL && crit == -1)
		return P11CA_OK;
	char ca_dn[256] = "?";
	if (x509_name_format(X509_get_subject_name(ca), ca_dn, sizeof(ca_dn), NULL) != P11CA_OK)
		snprintf(ca_dn, sizeof(ca_dn), "(too long)");
	if (nc == NULL)
		return p11ca_fail(em, P11CA_E_POLICY,
				  "the nameConstraints of CA '%s' cannot be decoded (or appear "
				  "twice); nothing can be issued under it",
				  ca_dn);
	/* Always the CN too (OpenSSL's verifier skips it when there is a DNS SAN): clients
	 * that still read the CN must not find a name the CA may not vouch for. */
	int rv = NAME_CONSTRAINTS_check(cert, nc);
	if (rv == X509_V_OK)
		rv = check_cn(cert, nc);
	enum p11ca_err err = P11CA_OK;
	if (rv != X509_V_OK) {
		char what[400];
		find_offender(cert, nc, what, sizeof(what));
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "%s is outside the name constraints of CA '%s' (%s); the CA may "
				 "not issue it: ask for names within its permitted subtrees",
				 what, ca_dn, X509_verify_cert_error_string(rv));
	}
	NAME_CONSTRAINTS_free(nc);
	return err;
}

enum p11ca_err x509_check_name_constraints(X509 *cert, X509 *const *chain, size_t n,
					   struct p11ca_errmsg *em)
{
	if (cert == NULL || (n > 0 && chain == NULL))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "x509_check_name_constraints: no certificate or chain");
	/* NAME_CONSTRAINTS_check reads the SANs OpenSSL caches with the other extensions. */
	if (X509_check_purpose(cert, -1, 0) != 1)
		return p11ca_fail(em, P11CA_E_POLICY,
				  "the certificate's extensions cannot be decoded, so its names "
				  "cannot be checked against the CA's name constraints");
	for (size_t i = 0; i < n; i++) {
		if (chain[i] == NULL)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "x509_check_name_constraints: chain[%zu] is NULL", i);
		P11CA_GUARD(check_one(cert, chain[i], em));
	}
	return P11CA_OK;
}
