/*
 * Text that ends up in extensions other than names: URLs for CRL distribution points and
 * authority information access, OIDs, and certificatePolicies entries as the configuration
 * and the CLI write them.
 *
 * These checks run where an operator's text is accepted (config, `ca edit`) and again in
 * x509_cert_tbs, so a bad URL is refused once with a clear sentence and can never be
 * signed into a certificate that relying parties then fail to fetch from.
 */
#include "appliance/x509/x509_internal.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#define URL_MAX	   255
#define OID_MAX	   63
#define NOTICE_MAX 200

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* The host of a URL: a bracketed IPv6 literal, or LDH labels and dots (IPv4 included). */
static bool host_ok(const char *host, size_t len)
{
	if (len == 0)
		return false;
	if (host[0] == '[') {
		char v6[INET6_ADDRSTRLEN + 1];
		unsigned char bin[16];
		if (len < 3 || host[len - 1] != ']' || len - 2 >= sizeof(v6))
			return false;
		memcpy(v6, host + 1, len - 2);
		v6[len - 2] = '\0';
		return inet_pton(AF_INET6, v6, bin) == 1;
	}
	/* Labels of 1..63 LDH characters, none starting or ending with '-'. */
	for (size_t start = 0, i = 0; i <= len; i++) {
		if (i < len && host[i] != '.') {
			char c = host[i];
			if (!is_digit(c) && !((c | 0x20) >= 'a' && (c | 0x20) <= 'z') && c != '-')
				return false;
			continue;
		}
		if (i == start || i - start > 63 || host[start] == '-' || host[i - 1] == '-')
			return false;
		start = i + 1;
	}
	return true;
}

enum p11ca_err x509_url_check(const char *url, bool allow_ldap, struct p11ca_errmsg *em)
{
	if (url == NULL || url[0] == '\0')
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "a URL is empty; give http://host/path");
	size_t len = strnlen(url, URL_MAX + 1);
	if (len > URL_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "URL '%.60s...' is longer than %d bytes; use a shorter one", url,
				  URL_MAX);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "URL '%.80s' holds a space, control or non-ASCII "
					  "character; percent-encode it",
					  url);
	size_t skip = 0;
	if (strncasecmp(url, "http://", 7) == 0)
		skip = 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		skip = 8;
	else if (allow_ldap && strncasecmp(url, "ldap://", 7) == 0)
		skip = 7;
	if (skip == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "URL '%.80s' must start with http:// or https://%s", url,
				  allow_ldap ? " (or ldap://)" : "");
	const char *auth = url + skip;
	size_t alen = strcspn(auth, "/?#");
	if (memchr(auth, '@', alen) != NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "URL '%.80s' carries user information ('@'); give the host only",
				  url);
	/* The port follows the last ':' unless that colon is inside an IPv6 literal. */
	const char *colon = NULL;
	for (size_t i = 0; i < alen; i++)
		if (auth[i] == ':')
			colon = auth + i;
	if (colon != NULL && auth[0] == '[' && memchr(colon, ']', alen - (size_t)(colon - auth)))
		colon = NULL;
	size_t hlen = colon != NULL ? (size_t)(colon - auth) : alen;
	if (!host_ok(auth, hlen))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "URL '%.80s' has no valid host (a DNS name, an IPv4 address or "
				  "[IPv6])",
				  url);
	if (colon != NULL) {
		size_t plen = alen - hlen - 1;
		unsigned long port = 0;
		for (size_t i = 0; i < plen && port <= 65535; i++)
			port = is_digit(colon[1 + i]) ? port * 10 + (unsigned)(colon[1 + i] - '0')
						      : 65536;
		if (plen == 0 || port == 0 || port > 65535)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "URL '%.80s' has an invalid port; use 1 to 65535", url);
	}
	return P11CA_OK;
}

bool x509_oid_text_ok(const char *text)
{
	size_t len = strnlen(text, OID_MAX + 1), arcs = 0;
	if (len == 0 || len > OID_MAX)
		return false;
	for (size_t i = 0; i <= len; arcs++) {
		size_t n = 0;
		while (is_digit(text[i + n]))
			n++;
		/* No empty arcs, no leading zeros (DER has one encoding per OID). */
		if (n == 0 || (n > 1 && text[i] == '0') ||
		    (text[i + n] != '.' && text[i + n] != '\0'))
			return false;
		if (arcs == 0 && (n > 1 || text[i] > '2'))
			return false;
		if (arcs == 1 && text[0] != '2' && (n > 2 || (n == 2 && text[i] > '3')))
			return false;
		i += n + 1;
	}
	if (arcs < 2)
		return false;
	ASN1_OBJECT *obj = OBJ_txt2obj(text, 1);
	ASN1_OBJECT_free(obj);
	return obj != NULL;
}

enum p11ca_err x509_notice_check(const char *notice, struct p11ca_errmsg *em)
{
	size_t len = strnlen(notice, NOTICE_MAX + 1);
	if (len > NOTICE_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "policy notice '%.40s...' is longer than %d bytes (RFC 5280 "
				  "explicitText); shorten it",
				  notice, NOTICE_MAX);
	if (x509_utf8_chars((const unsigned char *)notice, len) < 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "policy notice '%.40s' is not valid UTF-8 or holds a control "
				  "character",
				  notice);
	return P11CA_OK;
}

enum p11ca_err x509_policy_text_parse(const char *text, struct x509_policy_text *out,
				      struct p11ca_errmsg *em)
{
	if (out == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "x509_policy_text_parse: no output");
	memset(out, 0, sizeof(*out));
	if (text == NULL || text[0] == '\0')
		return p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"a certificate policy is empty; give OID[;cps=URL][;notice=TEXT]");
	size_t oid_len = strcspn(text, ";");
	if (oid_len > OID_MAX) {
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate policy '%.40s...': the OID is longer than %d "
				  "characters",
				  text, OID_MAX);
	}
	memcpy(out->oid, text, oid_len);
	out->oid[oid_len] = '\0';
	if (!x509_oid_text_ok(out->oid))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate policy '%.80s': '%s' is not a dotted-decimal OID "
				  "such as 2.23.140.1.2.1",
				  text, out->oid);
	const char *p = text + oid_len;
	while (*p == ';') {
		p++;
		if (strncasecmp(p, "notice=", 7) == 0) {
			/* Last by definition: the notice keeps any ';' it holds. */
			if (p[7] == '\0')
				return p11ca_fail(em, P11CA_E_INVALID_ARG,
						  "certificate policy %s: the notice is empty",
						  out->oid);
			P11CA_GUARD(x509_notice_check(p + 7, em));
			memcpy(out->notice, p + 7, strlen(p + 7) + 1);
			return P11CA_OK;
		}
		if (strncasecmp(p, "cps=", 4) != 0)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "certificate policy %s: '%.40s' is neither cps=URL nor "
					  "notice=TEXT",
					  out->oid, p);
		if (out->n_cps == 2)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "certificate policy %s has more than two cps= URLs",
					  out->oid);
		p += 4;
		size_t n = strcspn(p, ";");
		if (n >= sizeof(out->cps[0]))
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "certificate policy %s: the cps URL is longer than %d "
					  "bytes",
					  out->oid, URL_MAX);
		char *cps = out->cps[out->n_cps];
		memcpy(cps, p, n);
		cps[n] = '\0';
		P11CA_GUARD(x509_url_check(cps, false, em));
		out->n_cps++;
		p += n;
	}
	return P11CA_OK;
}
