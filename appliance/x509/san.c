/*
 * subjectAltName entries from text: "DNS:name", "IP:address", "email:addr", "URI:uri",
 * "dirname:DN", "rid:OID", "otherName:OID;UTF8:value", or a bare IP literal or DNS name.
 *
 * DNS names are held to the preferred name syntax (RFC 1034 3.5 / RFC 5280 4.2.1.6): LDH
 * labels of 1..63, at most 253 characters, no trailing dot, and a wildcard only as the whole
 * leftmost label of a name with at least two more labels. A dNSName holding an IP address
 * is refused, as the CA/Browser Forum requires. Names are lowercased (DNS is
 * case-insensitive) so the same name is always encoded the same way. Internationalised
 * names become A-labels (RFC 5280 7.2 requires them in certificates), and A-labels given
 * directly must survive the round trip through their U-label, so a certificate never
 * carries an "xn--" label that no browser can display or match.
 */
#include "appliance/x509/x509_internal.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include <idn2.h>

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
	/* WHATWG URL parsing takes a host whose last label is a number (decimal, or 0x hex)
	 * for an IPv4 address ("1.2.3", "0x7f.1"), so browsers never match it as a name. */
	const char *last = strrchr(name, '.') != NULL ? strrchr(name, '.') + 1 : name;
	size_t hex = (last[0] == '0' && (last[1] | 0x20) == 'x') ? 2 : 0;
	if (strspn(last + hex, hex ? "0123456789abcdefABCDEF" : "0123456789") == strlen(last + hex))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s '%s' ends in a numeric label, which clients read as an IPv4 "
				  "address; give addresses as IP:",
				  what, name);
	if (wildcard && labels < 3)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s '%s': a wildcard needs at least two labels after it "
				  "(*.example.com)",
				  what, name);
	for (size_t i = 0; i <= len; i++)
		out[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
	return P11CA_OK;
}

/* UTS #46 non-transitional mapping (so "faß" stays "faß"), NFC first; IDNA2008 rules. */
#define IDN_FLAGS (IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT)

static bool has_alabel(const char *lower)
{
	return strncmp(lower, "xn--", 4) == 0 || strstr(lower, ".xn--") != NULL;
}

enum p11ca_err x509_dns_name(const char *name, bool wildcard_ok, const char *what,
			     char out[X509_DNS_NAME_BUF], struct p11ca_errmsg *em)
{
	size_t len = strnlen(name, SAN_TEXT_MAX + 1);
	bool ascii = true;
	for (size_t i = 0; i < len; i++)
		ascii = ascii && (unsigned char)name[i] < 0x80;
	if (ascii) {
		P11CA_GUARD(dns_check(name, wildcard_ok, what, out, em));
		if (!has_alabel(out))
			return P11CA_OK;
	} else if (len > SAN_TEXT_MAX || x509_utf8_chars((const unsigned char *)name, len) < 0) {
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s '%.80s' is not valid UTF-8 or holds a control character",
				  what, name);
	}
	/* The wildcard is ours to check, not IDNA's. */
	const char *src = ascii ? out : name;
	const char *star = strncmp(src, "*.", 2) == 0 ? "*." : "";
	char *alabels = NULL;
	int rc = idn2_to_ascii_8z(src + strlen(star), &alabels, IDN_FLAGS);
	enum p11ca_err err = P11CA_OK;
	if (rc != IDN2_OK)
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 ascii ? "%s '%.80s' has an A-label (xn--) that is not a valid "
					 "IDNA2008 label (%s); give the name in Unicode or fix it"
				       : "%s '%.80s' is not a valid internationalised domain name "
					 "(%s)",
				 what, name, idn2_strerror(rc));
	else if (ascii && strcmp(alabels, out + strlen(star)) != 0)
		/* Lowercased input that re-encodes differently did not come from a U-label. */
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "%s '%.80s' has an A-label (xn--) that is not the encoding of its "
				 "own U-label (%s); give the name in Unicode",
				 what, name, alabels);
	else if (!ascii) {
		char joined[SAN_TEXT_MAX + 3];
		snprintf(joined, sizeof(joined), "%s%s", star, alabels);
		err = dns_check(joined, wildcard_ok, what, out, em);
	}
	idn2_free(alabels);
	return err;
}

/* dot-atom local part (RFC 5322 3.2.3) @ a DNS name, written to out (A-labels). */
enum p11ca_err x509_email_name(const char *addr, char *out, size_t cap, struct p11ca_errmsg *em)
{
	const char *at = strrchr(addr, '@');
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
	char domain[X509_DNS_NAME_BUF];
	P11CA_GUARD(x509_dns_name(at + 1, false, "the domain of an email SAN", domain, em));
	if ((size_t)snprintf(out, cap, "%.*s@%s", (int)local, addr, domain) >= cap)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "email SAN '%.80s' is too long", addr);
	return P11CA_OK;
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

enum p11ca_err x509_gn_ia5(int type, const char *value, GENERAL_NAME **out, struct p11ca_errmsg *em)
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

enum p11ca_err x509_gn_ip(const uint8_t *addr, size_t len, GENERAL_NAME **out,
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

/* "OID;UTF8:value": the only otherName value type anyone asks a CA for. */
static enum p11ca_err gn_othername(const char *text, GENERAL_NAME **out, struct p11ca_errmsg *em)
{
	char oid[64];
	size_t n = strcspn(text, ";");
	if (n >= sizeof(oid) || text[n] != ';' || strncasecmp(text + n + 1, "UTF8:", 5) != 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "otherName '%.80s' is not of the form OID;UTF8:value", text);
	memcpy(oid, text, n);
	oid[n] = '\0';
	const char *value = text + n + 6;
	size_t vlen = strlen(value);
	if (!x509_oid_text_ok(oid))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "otherName '%.80s': '%s' is not a dotted-decimal OID", text, oid);
	if (vlen == 0 || x509_utf8_chars((const unsigned char *)value, vlen) < 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "otherName '%.80s': the value is empty, not valid UTF-8 or holds "
				  "a control character",
				  text);
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
	ASN1_TYPE *type = ASN1_TYPE_new();
	ASN1_UTF8STRING *s = ASN1_UTF8STRING_new();
	if (gn == NULL || obj == NULL || type == NULL || s == NULL ||
	    ASN1_STRING_set(s, value, (int)vlen) != 1) {
		GENERAL_NAME_free(gn);
		ASN1_OBJECT_free(obj);
		ASN1_TYPE_free(type);
		ASN1_UTF8STRING_free(s);
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory building an otherName");
	}
	ASN1_TYPE_set(type, V_ASN1_UTF8STRING, s);
	if (GENERAL_NAME_set0_othername(gn, obj, type) != 1) {
		GENERAL_NAME_free(gn);
		ASN1_OBJECT_free(obj);
		ASN1_TYPE_free(type);
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory building an otherName");
	}
	*out = gn;
	return P11CA_OK;
}

static enum p11ca_err gn_rid(const char *text, GENERAL_NAME **out, struct p11ca_errmsg *em)
{
	if (!x509_oid_text_ok(text))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "rid '%.80s' is not a dotted-decimal OID such as 1.2.3.4", text);
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_OBJECT *obj = OBJ_txt2obj(text, 1);
	if (gn == NULL || obj == NULL) {
		GENERAL_NAME_free(gn);
		ASN1_OBJECT_free(obj);
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a registeredID");
	}
	GENERAL_NAME_set0_value(gn, GEN_RID, obj);
	*out = gn;
	return P11CA_OK;
}

enum p11ca_err x509_gn_dirname(const char *text, GENERAL_NAME **out, struct p11ca_errmsg *em)
{
	X509_NAME *name = NULL;
	P11CA_GUARD(x509_name_parse(text, &name, em));
	GENERAL_NAME *gn = GENERAL_NAME_new();
	if (gn == NULL) {
		X509_NAME_free(name);
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a directoryName");
	}
	GENERAL_NAME_set0_value(gn, GEN_DIRNAME, name);
	*out = gn;
	return P11CA_OK;
}

static bool prefix_is(const char *text, size_t plen, const char *type)
{
	return plen == strlen(type) && strncasecmp(text, type, plen) == 0;
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

	if (colon != NULL && prefix_is(text, plen, "IP")) {
		size_t n = ip_parse(rest, addr);
		if (n == 0)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "'%.80s' is not an IPv4 or IPv6 address", rest);
		return x509_gn_ip(addr, n, out, em);
	}
	if (colon != NULL && prefix_is(text, plen, "DNS")) {
		P11CA_GUARD(x509_dns_name(rest, true, "DNS name", value, em));
		return x509_gn_ia5(GEN_DNS, value, out, em);
	}
	if (colon != NULL && prefix_is(text, plen, "email")) {
		P11CA_GUARD(x509_email_name(rest, value, sizeof(value), em));
		return x509_gn_ia5(GEN_EMAIL, value, out, em);
	}
	if (colon != NULL && prefix_is(text, plen, "URI")) {
		P11CA_GUARD(uri_check(rest, em));
		return x509_gn_ia5(GEN_URI, rest, out, em);
	}
	if (colon != NULL && prefix_is(text, plen, "dirname"))
		return x509_gn_dirname(rest, out, em);
	if (colon != NULL && prefix_is(text, plen, "rid"))
		return gn_rid(rest, out, em);
	if (colon != NULL && prefix_is(text, plen, "otherName"))
		return gn_othername(rest, out, em);

	size_t n = ip_parse(text, addr);
	if (n > 0)
		return x509_gn_ip(addr, n, out, em);
	if (colon != NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "subjectAltName '%.80s': unknown type '%.*s'; use DNS:, IP:, "
				  "email:, URI:, dirname:, rid: or otherName:",
				  text, (int)(plen < 16 ? plen : 16), text);
	P11CA_GUARD(x509_dns_name(text, true, "DNS name", value, em));
	return x509_gn_ia5(GEN_DNS, value, out, em);
}
