/*
 * subjectAltName entries from text: "DNS:name", "IP:address", "email:addr", "URI:uri", or a
 * bare IP literal or DNS name.
 *
 * DNS names are held to the preferred name syntax (RFC 1034 3.5 / RFC 5280 4.2.1.6): LDH
 * labels of 1..63, at most 253 characters, no trailing dot, and a wildcard only as the whole
 * leftmost label of a name with at least two more labels. A dNSName holding an IP address
 * is refused, as the CA/Browser Forum requires. Names are lowercased (DNS is
 * case-insensitive) so the same name is always encoded the same way. Non-ASCII names are
 * refused: converting them to A-labels is issue 4's.
 */
#include "appliance/x509/x509_internal.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#define SAN_TEXT_MAX	2048
#define DNS_NAME_MAX	253
#define DNS_LABEL_MAX	63
#define EMAIL_LOCAL_MAX 64

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Check (and lowercase, in `out`) a DNS name; `what` names it in messages. */
static enum p11ca_err dns_check(const char *name, bool wildcard_ok, const char *what, char *out,
				struct p11ca_errmsg *em)
{
	size_t len = strlen(name);
	if (len == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%s is empty", what);
	if (len > DNS_NAME_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s '%.40s...' is %zu characters long; DNS allows at most %d",
				  what, name, len, DNS_NAME_MAX);
	unsigned char probe[sizeof(struct in_addr)];
	if (inet_pton(AF_INET, name, probe) == 1)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s '%s' is an IP address; give it as IP:%s", what, name, name);

	size_t labels = 0;
	bool wildcard = false;
	for (size_t start = 0; start <= len; labels++) {
		const char *end = strchr(name + start, '.');
		size_t llen = (end != NULL ? (size_t)(end - name) : len) - start;
		const char *label = name + start;
		if (llen == 0)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "%s '%s' has an empty label (two dots in a row, or a "
					  "leading or trailing dot)",
					  what, name);
		if (llen > DNS_LABEL_MAX)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "%s '%.80s' has a label of %zu characters; at most %d",
					  what, name, llen, DNS_LABEL_MAX);
		if (llen == 1 && label[0] == '*') {
			if (!wildcard_ok || labels > 0)
				return p11ca_fail(em, P11CA_E_INVALID_ARG,
						  "%s '%s': a wildcard '*' is only allowed as the "
						  "whole leftmost label of a DNS name",
						  what, name);
			wildcard = true;
		} else {
			for (size_t i = 0; i < llen; i++) {
				char c = label[i];
				if (!is_alnum(c) && c != '-')
					return p11ca_fail(
						em, P11CA_E_INVALID_ARG,
						(unsigned char)c >= 0x80
							? "%s '%.80s' is not ASCII; give it in "
							  "A-label "
							  "(xn--) form"
							: "%s '%.80s' holds a character other than "
							  "letters, digits, '-' and '.'",
						what, name);
			}
			if (label[0] == '-' || label[llen - 1] == '-')
				return p11ca_fail(em, P11CA_E_INVALID_ARG,
						  "%s '%.80s' has a label that starts or ends with "
						  "'-'",
						  what, name);
		}
		start += llen + 1;
	}
	if (wildcard && labels < 3)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s '%s': a wildcard needs at least two labels after it "
				  "(*.example.com)",
				  what, name);
	for (size_t i = 0; i <= len; i++)
		out[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
	return P11CA_OK;
}

/* dot-atom local part (RFC 5322 3.2.3) @ a DNS name. */
static enum p11ca_err email_check(char *addr, struct p11ca_errmsg *em)
{
	char *at = strrchr(addr, '@');
	if (at == NULL || at == addr)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "email SAN '%.80s' is not of the form local@domain", addr);
	size_t local = (size_t)(at - addr);
	if (local > EMAIL_LOCAL_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "email SAN '%.80s': the part before '@' exceeds %d characters",
				  addr, EMAIL_LOCAL_MAX);
	for (size_t i = 0; i < local; i++) {
		char c = addr[i];
		bool dot_ok = c == '.' && i > 0 && i + 1 < local && addr[i + 1] != '.';
		if (!is_alnum(c) && !dot_ok && strchr("!#$%&'*+-/=?^_`{|}~", c) == NULL)
			return p11ca_fail(
				em, P11CA_E_INVALID_ARG,
				"email SAN '%.80s': the part before '@' may hold letters, "
				"digits, single dots and !#$%%&'*+-/=?^_`{|}~ only",
				addr);
	}
	return dns_check(at + 1, false, "the domain of an email SAN", at + 1, em);
}

/* An absolute URI: scheme ":" rest, printable ASCII without spaces (RFC 3986 3.1). */
static enum p11ca_err uri_check(const char *uri, struct p11ca_errmsg *em)
{
	size_t i = 0;
	while (is_alnum(uri[i]) || (i > 0 && strchr("+-.", uri[i]) != NULL && uri[i] != '\0'))
		i++;
	if (i == 0 || uri[i] != ':' || !((uri[0] | 0x20) >= 'a' && (uri[0] | 0x20) <= 'z') ||
	    uri[i + 1] == '\0')
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "URI SAN '%.80s' is not an absolute URI (scheme:rest)", uri);
	for (; uri[i] != '\0'; i++)
		if ((unsigned char)uri[i] <= 0x20 || (unsigned char)uri[i] >= 0x7f)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "URI SAN '%.80s' holds a space, control or non-ASCII "
					  "character; percent-encode it",
					  uri);
	return P11CA_OK;
}

static enum p11ca_err gn_string(int type, const char *value, GENERAL_NAME **out,
				struct p11ca_errmsg *em)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *s = ASN1_IA5STRING_new();
	if (gn == NULL || s == NULL || ASN1_STRING_set(s, value, (int)strlen(value)) != 1) {
		GENERAL_NAME_free(gn);
		ASN1_IA5STRING_free(s);
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a subjectAltName");
	}
	GENERAL_NAME_set0_value(gn, type, s);
	*out = gn;
	return P11CA_OK;
}

static enum p11ca_err gn_ip(const uint8_t *addr, size_t len, GENERAL_NAME **out,
			    struct p11ca_errmsg *em)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_OCTET_STRING *s = ASN1_OCTET_STRING_new();
	if (gn == NULL || s == NULL || ASN1_OCTET_STRING_set(s, addr, (int)len) != 1) {
		GENERAL_NAME_free(gn);
		ASN1_OCTET_STRING_free(s);
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a subjectAltName");
	}
	GENERAL_NAME_set0_value(gn, GEN_IPADD, s);
	*out = gn;
	return P11CA_OK;
}

/* 4 or 16 bytes into addr; 0 when `text` is no IP literal. */
static size_t ip_parse(const char *text, uint8_t addr[16])
{
	if (inet_pton(AF_INET, text, addr) == 1)
		return 4;
	if (inet_pton(AF_INET6, text, addr) == 1)
		return 16;
	return 0;
}

enum p11ca_err x509_san_parse(const char *text, GENERAL_NAME **out, struct p11ca_errmsg *em)
{
	*out = NULL;
	if (text == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "no subjectAltName given");
	size_t len = strnlen(text, SAN_TEXT_MAX + 1);
	if (len > SAN_TEXT_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "subjectAltName longer than %d characters", SAN_TEXT_MAX);

	char value[SAN_TEXT_MAX + 1];
	uint8_t addr[16];
	const char *colon = strchr(text, ':');
	size_t plen = colon != NULL ? (size_t)(colon - text) : 0;
	const char *rest = colon != NULL ? colon + 1 : text;

	if (colon != NULL && plen == 2 && strncasecmp(text, "IP", 2) == 0) {
		size_t n = ip_parse(rest, addr);
		if (n == 0)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "'%.80s' is not an IPv4 or IPv6 address", rest);
		return gn_ip(addr, n, out, em);
	}
	if (colon != NULL && plen == 3 && strncasecmp(text, "DNS", 3) == 0) {
		P11CA_GUARD(dns_check(rest, true, "DNS name", value, em));
		return gn_string(GEN_DNS, value, out, em);
	}
	if (colon != NULL && plen == 5 && strncasecmp(text, "email", 5) == 0) {
		memcpy(value, rest, strlen(rest) + 1);
		P11CA_GUARD(email_check(value, em));
		return gn_string(GEN_EMAIL, value, out, em);
	}
	if (colon != NULL && plen == 3 && strncasecmp(text, "URI", 3) == 0) {
		P11CA_GUARD(uri_check(rest, em));
		return gn_string(GEN_URI, rest, out, em);
	}

	size_t n = ip_parse(text, addr);
	if (n > 0)
		return gn_ip(addr, n, out, em);
	if (colon != NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "subjectAltName '%.80s': unknown type '%.*s'; use DNS:, IP:, "
				  "email: or URI:",
				  text, (int)(plen < 16 ? plen : 16), text);
	P11CA_GUARD(dns_check(text, true, "DNS name", value, em));
	return gn_string(GEN_DNS, value, out, em);
}
