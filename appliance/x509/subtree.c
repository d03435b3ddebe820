/*
 * nameConstraints subtrees from text, in the forms OpenSSL's NAME_CONSTRAINTS_check matches
 * (RFC 5280 4.2.1.10): a leading '.' means "names under it only", a bare domain means the
 * domain and everything under it (DNS) or that host exactly (email, URI). IP ranges are an
 * address and a mask; host bits must be zero, since a base with host bits set is almost
 * always a typo for a different network than the one the operator meant.
 */
#include "appliance/x509/x509_internal.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SUBTREE_TEXT_MAX 1024

/* "addr/prefix" → address followed by its mask (8 or 32 bytes). */
static enum p11ca_err ip_range(const char *text, uint8_t out[32], size_t *out_len,
			       struct p11ca_errmsg *em)
{
	char addr_text[64];
	const char *slash = strchr(text, '/');
	size_t alen = slash != NULL ? (size_t)(slash - text) : 0;
	if (slash == NULL || alen >= sizeof(addr_text))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "IP constraint '%.80s' needs a prefix length, such as "
				  "IP:192.0.2.0/24 (or /32 for one address)",
				  text);
	memcpy(addr_text, text, alen);
	addr_text[alen] = '\0';
	size_t n = 0;
	if (inet_pton(AF_INET, addr_text, out) == 1)
		n = 4;
	else if (inet_pton(AF_INET6, addr_text, out) == 1)
		n = 16;
	else
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "IP constraint '%.80s': '%s' is not an IPv4 or IPv6 address",
				  text, addr_text);
	const char *p = slash + 1;
	unsigned long bits = 0;
	size_t digits = strspn(p, "0123456789");
	if (digits == 0 || digits > 3 || p[digits] != '\0' || (digits > 1 && p[0] == '0') ||
	    (bits = strtoul(p, NULL, 10)) > n * 8)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "IP constraint '%.80s': the prefix length must be 0 to %zu", text,
				  n * 8);
	uint8_t *mask = out + n;
	for (size_t i = 0; i < n; i++) {
		size_t left = bits > i * 8 ? bits - i * 8 : 0;
		mask[i] = left >= 8 ? 0xff : (uint8_t)(0xff00u >> left);
		if ((out[i] & (uint8_t)~mask[i]) != 0)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "IP constraint '%.80s' has host bits set after the first "
					  "%lu bits; give the network address",
					  text, bits);
	}
	*out_len = 2 * n;
	return P11CA_OK;
}

/* A domain with an optional leading '.', in A-labels, into out ("." + name). */
static enum p11ca_err domain(const char *text, const char *what, char *out, size_t cap,
			     struct p11ca_errmsg *em)
{
	bool under = text[0] == '.';
	char name[X509_DNS_NAME_BUF];
	P11CA_GUARD(x509_dns_name(text + (under ? 1 : 0), false, what, name, em));
	if ((size_t)snprintf(out, cap, "%s%s", under ? "." : "", name) >= cap)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%s '%.80s' is too long", what, text);
	return P11CA_OK;
}

static enum p11ca_err subtree_name(const char *text, GENERAL_NAME **gn, struct p11ca_errmsg *em)
{
	char value[SUBTREE_TEXT_MAX + 2];
	uint8_t ip[32];
	size_t ip_len = 0;
	const char *colon = strchr(text, ':');
	size_t plen = colon != NULL ? (size_t)(colon - text) : 0;
	const char *rest = colon != NULL ? colon + 1 : "";
	if (plen == 3 && strncasecmp(text, "DNS", 3) == 0) {
		P11CA_GUARD(domain(rest, "DNS constraint", value, sizeof(value), em));
		return x509_gn_ia5(GEN_DNS, value, gn, em);
	}
	if (plen == 2 && strncasecmp(text, "IP", 2) == 0) {
		P11CA_GUARD(ip_range(rest, ip, &ip_len, em));
		return x509_gn_ip(ip, ip_len, gn, em);
	}
	if (plen == 5 && strncasecmp(text, "email", 5) == 0) {
		if (strchr(rest, '@') != NULL)
			P11CA_GUARD(x509_email_name(rest, value, sizeof(value), em));
		else
			P11CA_GUARD(domain(rest, "email constraint", value, sizeof(value), em));
		return x509_gn_ia5(GEN_EMAIL, value, gn, em);
	}
	if (plen == 3 && strncasecmp(text, "URI", 3) == 0) {
		/* OpenSSL compares the URI's host only; a scheme or path here never matches. */
		P11CA_GUARD(domain(rest, "URI constraint (a host, such as .example.com)", value,
				   sizeof(value), em));
		return x509_gn_ia5(GEN_URI, value, gn, em);
	}
	if (plen == 7 && strncasecmp(text, "dirname", 7) == 0)
		return x509_gn_dirname(rest, gn, em);
	return p11ca_fail(em, P11CA_E_INVALID_ARG,
			  "name constraint '%.80s' has no known type; use DNS:, IP:, email:, URI: "
			  "or dirname:",
			  text);
}

enum p11ca_err x509_subtree_parse(const char *text, GENERAL_SUBTREE **out, struct p11ca_errmsg *em)
{
	*out = NULL;
	if (text == NULL || text[0] == '\0')
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "a name constraint is empty; give TYPE:value such as "
				  "DNS:example.com");
	if (strnlen(text, SUBTREE_TEXT_MAX + 1) > SUBTREE_TEXT_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "name constraint '%.40s...' is longer than %d characters", text,
				  SUBTREE_TEXT_MAX);
	GENERAL_NAME *gn = NULL;
	P11CA_GUARD(subtree_name(text, &gn, em));
	GENERAL_SUBTREE *st = GENERAL_SUBTREE_new();
	if (st == NULL) {
		GENERAL_NAME_free(gn);
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a name constraint");
	}
	/* minimum 0 (the DER default, so absent) and no maximum: RFC 5280 4.2.1.10. */
	GENERAL_NAME_free(st->base);
	st->base = gn;
	*out = st;
	return P11CA_OK;
}
