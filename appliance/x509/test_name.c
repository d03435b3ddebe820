/* Unit tests for appliance/x509/name.c and san.c: subject syntaxes, canonical order,
 * escaping, refusals, and subjectAltName parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "appliance/x509/test_util.h"
#include "appliance/x509/x509_internal.h"

static void expect_format(const X509_NAME *name, const char *want)
{
	char text[1024];
	struct p11ca_errmsg em = {0};
	if (x509_name_format(name, text, sizeof(text), &em) != P11CA_OK)
		fail_msg("x509_name_format: %s", em.text);
	assert_string_equal(text, want);
}

/* Parse `in` and expect it formats as `want` (RFC 4514). */
static void expect_name(const char *in, const char *want)
{
	X509_NAME *name = tu_name(in);
	expect_format(name, want);
	X509_NAME_free(name);
}

static void expect_name_refused(const char *in, const char *needle)
{
	X509_NAME *name = (X509_NAME *)1;
	struct p11ca_errmsg em = {0};
	assert_int_equal(x509_name_parse(in, &name, &em), P11CA_E_INVALID_ARG);
	assert_null(name);
	if (strstr(em.text, needle) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", in, em.text, needle);
}

static void test_name_both_syntaxes(void **state)
{
	(void)state;
	expect_name("CN=x,O=Org,C=AT", "CN=x,O=Org,C=AT");
	expect_name("/C=AT/O=Org/CN=x", "CN=x,O=Org,C=AT");
	/* Spaces around types, '=' and separators are not part of values. */
	expect_name("CN = x , O = Org, C = AT", "CN=x,O=Org,C=AT");
	expect_name("/C=AT/ST=Wien/L=Wien/O=Org/OU=a/OU=b/CN=host",
		    "CN=host,OU=b,OU=a,O=Org,L=Wien,ST=Wien,C=AT");
}

static void test_name_canonical_order(void **state)
{
	(void)state;
	/* Given in any order, stored as C, ST, L, O, OU, CN, then the rest as given. */
	expect_name("/CN=x/C=AT/O=Org", "CN=x,O=Org,C=AT");
	expect_name("C=AT,CN=x,OU=u,O=o,L=l,ST=s", "CN=x,OU=u,O=o,L=l,ST=s,C=AT");
	expect_name("/emailAddress=a@b.example/CN=x/serialNumber=42/C=AT",
		    "serialNumber=42,emailAddress=a@b.example,CN=x,C=AT");

	X509_NAME *name = tu_name("CN=x,O=Org,C=AT");
	assert_int_equal(X509_NAME_entry_count(name), 3);
	const X509_NAME_ENTRY *first = X509_NAME_get_entry(name, 0);
	assert_int_equal(OBJ_obj2nid(X509_NAME_ENTRY_get_object(first)), NID_countryName);
	assert_int_equal(ASN1_STRING_type(X509_NAME_ENTRY_get_data(first)), V_ASN1_PRINTABLESTRING);
	const X509_NAME_ENTRY *cn = X509_NAME_get_entry(name, 2);
	assert_int_equal(ASN1_STRING_type(X509_NAME_ENTRY_get_data(cn)), V_ASN1_UTF8STRING);
	X509_NAME_free(name);
}

static void test_name_case_insensitive_types(void **state)
{
	(void)state;
	expect_name("cn=x,o=Org,c=at", "CN=x,O=Org,C=AT");
	expect_name("/COUNTRYNAME=AT/commonname=x", "CN=x,C=AT");
	expect_name("/EmailAddress=a@b.example/dc=example/Dc=com",
		    "DC=com,DC=example,emailAddress=a@b.example");
}

static void test_name_escaping(void **state)
{
	(void)state;
	/* RFC 4514 specials, escaped on the way in and out. */
	expect_name("CN=Doe\\, John,O=A\\+B,C=AT", "CN=Doe\\, John,O=A\\+B,C=AT");
	expect_name("CN=\\#hash\\ ,C=AT", "CN=\\#hash\\ ,C=AT");
	expect_name("CN=a\\3Cb\\3e,C=AT", "CN=a\\<b\\>,C=AT");
	expect_name("CN=back\\\\slash,C=AT", "CN=back\\\\slash,C=AT");
	/* UTF-8 as hex pairs or raw; formatted raw. */
	expect_name("CN=J\\C3\\BCrgen,C=AT", "CN=J\xc3\xbcrgen,C=AT");
	expect_name("/C=AT/CN=J\xc3\xbcrgen", "CN=J\xc3\xbcrgen,C=AT");
	/* OpenSSL syntax: '\' takes the next character, so '/' and '+' can be values. */
	expect_name("/C=AT/O=a\\/b\\+c/CN=x", "CN=x,O=a/b\\+c,C=AT");
	/* An escaped separator ending the text is part of the value, not a trailing one. */
	expect_name("O=b,CN=a\\,", "CN=a\\,,O=b");
	expect_name("/O=b/CN=a\\/", "CN=a/,O=b");
	/* '=' inside a value needs no escape. */
	expect_name("CN=a=b,C=AT", "CN=a=b,C=AT");

	/* Round trip: what format writes, parse reads back to the same DER. */
	X509_NAME *a = tu_name("/C=AT/O=\\, \\\"q\\\" ;<>/CN= lead\\/trail#");
	char text[512];
	assert_int_equal(x509_name_format(a, text, sizeof(text), NULL), P11CA_OK);
	X509_NAME *b = tu_name(text);
	assert_int_equal(X509_NAME_cmp(a, b), 0);
	X509_NAME_free(a);
	X509_NAME_free(b);
}

static void test_name_refusals(void **state)
{
	(void)state;
	expect_name_refused("CN=x,XX=y", "'XX' is unknown");
	expect_name_refused("/C=AT/foo=bar", "'foo' is unknown");
	expect_name_refused("CN=,C=AT", "CN has an empty value");
	expect_name_refused("/C=AT/CN=", "CN has an empty value");
	expect_name_refused("/C=AT/O=  /CN=x", "O has an empty value");
	expect_name_refused("CN=x,C=AUT", "two-letter");
	expect_name_refused("CN=x,C=A1", "two-letter");
	expect_name_refused("CN=x,C=A", "two-letter");
	expect_name_refused("CN=a\\00b", "NUL");
	expect_name_refused("CN=a\\01b", "control");
	expect_name_refused("CN=a\xc2\x85z", "control");	 /* U+0085 NEL, a C1 control */
	expect_name_refused("CN=\xc3(", "UTF-8");		 /* broken sequence */
	expect_name_refused("CN=\xc0\xaf", "UTF-8");		 /* overlong '/' */
	expect_name_refused("CN=\xed\xa0\x80", "UTF-8");	 /* surrogate */
	expect_name_refused("serialNumber=a_b", "serialNumber"); /* '_' is not Printable */
	expect_name_refused("E=J\xc3\xbcrgen@x.example", "ASCII");
	expect_name_refused("", "empty");
	expect_name_refused("/", "empty");
	expect_name_refused("CN=x,", "empty component");
	expect_name_refused("CN=x,,C=AT", "empty component");
	expect_name_refused("CN", "no '='");
	expect_name_refused("CN=a+O=b", "multi-valued");
	expect_name_refused("/CN=a+O=b", "multi-valued");
	expect_name_refused("CN=#04024869", "hex-encoded");
	expect_name_refused("CN=a\"b", "escaped");
	expect_name_refused("CN=a;b", "escaped");
	expect_name_refused("CN=a\\qb", "bad escape");

	/* RFC 5280 upper bounds count characters, not bytes. */
	char cn[128] = "CN=";
	memset(cn + 3, 'a', 64);
	X509_NAME *ok = tu_name(cn);
	X509_NAME_free(ok);
	cn[3 + 64] = 'a';
	expect_name_refused(cn, "65 characters");
	char utf[256] = "CN=";
	for (int i = 0; i < 64; i++)
		strcat(utf, "\xc3\xbc"); /* 64 characters, 128 bytes */
	ok = tu_name(utf);
	X509_NAME_free(ok);

	char many[1024] = "";
	for (int i = 0; i < X509_NAME_RDN_MAX + 1; i++)
		strcat(many, "/OU=x");
	expect_name_refused(many, "more than");

	X509_NAME *name = NULL;
	assert_int_equal(x509_name_parse(NULL, &name, NULL), P11CA_E_INVALID_ARG);
	char huge[5000];
	memset(huge, 'a', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	expect_name_refused(huge, "longer than");
}

static void test_name_format_limits(void **state)
{
	(void)state;
	X509_NAME *name = tu_name("CN=example,C=AT");
	char small[8];
	struct p11ca_errmsg em = {0};
	assert_int_equal(x509_name_format(name, small, sizeof(small), &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "does not fit"));
	char exact[sizeof("CN=example,C=AT")];
	assert_int_equal(x509_name_format(name, exact, sizeof(exact), NULL), P11CA_OK);
	assert_int_equal(x509_name_format(NULL, exact, sizeof(exact), NULL), P11CA_E_INVALID_ARG);
	X509_NAME_free(name);

	X509_NAME *empty = X509_NAME_new();
	assert_non_null(empty);
	expect_format(empty, "");
	X509_NAME_free(empty);
}

/* ---- subjectAltName ----------------------------------------------------------------- */

static GENERAL_NAME *san(const char *text, int want_type)
{
	GENERAL_NAME *gn = NULL;
	struct p11ca_errmsg em = {0};
	if (x509_san_parse(text, &gn, &em) != P11CA_OK)
		fail_msg("x509_san_parse(%s): %s", text, em.text);
	int type = -1;
	GENERAL_NAME_get0_value(gn, &type);
	assert_int_equal(type, want_type);
	return gn;
}

static void expect_san_string(const char *text, int type, const char *want)
{
	GENERAL_NAME *gn = san(text, type);
	const ASN1_IA5STRING *s = GENERAL_NAME_get0_value(gn, NULL);
	assert_int_equal(ASN1_STRING_length(s), (int)strlen(want));
	assert_memory_equal(ASN1_STRING_get0_data(s), want, strlen(want));
	GENERAL_NAME_free(gn);
}

static void expect_san_ip(const char *text, int af)
{
	uint8_t want[16];
	const char *lit = strncasecmp(text, "IP:", 3) == 0 ? text + 3 : text;
	assert_int_equal(inet_pton(af, lit, want), 1);
	GENERAL_NAME *gn = san(text, GEN_IPADD);
	const ASN1_OCTET_STRING *s = GENERAL_NAME_get0_value(gn, NULL);
	size_t n = af == AF_INET ? 4 : 16;
	assert_int_equal(ASN1_STRING_length(s), (int)n);
	assert_memory_equal(ASN1_STRING_get0_data(s), want, n);
	GENERAL_NAME_free(gn);
}

static void expect_san_refused(const char *text, const char *needle)
{
	GENERAL_NAME *gn = (GENERAL_NAME *)1;
	struct p11ca_errmsg em = {0};
	assert_int_equal(x509_san_parse(text, &gn, &em), P11CA_E_INVALID_ARG);
	assert_null(gn);
	if (strstr(em.text, needle) == NULL)
		fail_msg("'%.60s': message '%s' lacks '%s'", text, em.text, needle);
}

static void test_san_kinds(void **state)
{
	(void)state;
	expect_san_string("DNS:www.example.com", GEN_DNS, "www.example.com");
	expect_san_string("dns:WWW.Example.COM", GEN_DNS, "www.example.com"); /* lowercased */
	expect_san_string("DNS:*.example.com", GEN_DNS, "*.example.com");
	expect_san_string("DNS:xn--mnchen-3ya.example", GEN_DNS, "xn--mnchen-3ya.example");
	expect_san_string("DNS:m\xc3\xbcnchen.example", GEN_DNS, "xn--mnchen-3ya.example");
	expect_san_string("localhost", GEN_DNS, "localhost");
	expect_san_string("a-b.c1", GEN_DNS, "a-b.c1");
	expect_san_ip("IP:192.0.2.1", AF_INET);
	expect_san_ip("IP:2001:db8::1", AF_INET6);
	expect_san_ip("ip:::1", AF_INET6);
	expect_san_string("email:first.last+tag@example.com", GEN_EMAIL,
			  "first.last+tag@example.com");
	expect_san_string("URI:https://example.com/path?q=1", GEN_URI,
			  "https://example.com/path?q=1");
	expect_san_string("URI:urn:uuid:123e4567-e89b-12d3-a456-426614174000", GEN_URI,
			  "urn:uuid:123e4567-e89b-12d3-a456-426614174000");
}

static void test_san_autodetect(void **state)
{
	(void)state;
	expect_san_ip("198.51.100.7", AF_INET);
	expect_san_ip("fe80::1", AF_INET6);
	expect_san_string("host.example", GEN_DNS, "host.example");
	expect_san_string("*.example.org", GEN_DNS, "*.example.org");
}

static void test_san_refusals(void **state)
{
	(void)state;
	char label64[128] = "DNS:", name254[300] = "DNS:", ok253[300] = "DNS:";
	memset(label64 + 4, 'a', 64);
	strcat(label64, ".example");
	expect_san_refused(label64, "label of 64");
	for (int i = 0; i < 63; i++)
		strcat(name254, "abc."); /* 252 characters */
	strcat(ok253, name254 + 4);
	strcat(ok253, "a"); /* 253 */
	GENERAL_NAME *gn = san(ok253, GEN_DNS);
	GENERAL_NAME_free(gn);
	strcat(name254, "ab"); /* 254 */
	expect_san_refused(name254, "at most 253");

	expect_san_refused("DNS:", "empty");
	expect_san_refused("DNS:a..b", "empty label");
	expect_san_refused("DNS:.example.com", "empty label");
	expect_san_refused("DNS:example.com.", "empty label");
	expect_san_refused("DNS:a.*.b", "wildcard");
	expect_san_refused("DNS:*", "wildcard");
	expect_san_refused("*", "wildcard");
	expect_san_refused("DNS:*.com", "two labels");
	expect_san_refused("DNS:f*o.example", "character");
	expect_san_refused("DNS:**.example.com", "character");
	expect_san_refused("DNS:under_score.example", "character");
	expect_san_refused("DNS:sp ace.example", "character");
	expect_san_refused("DNS:tab\t.example", "character");
	expect_san_refused("DNS:-lead.example", "'-'");
	expect_san_refused("DNS:trail-.example", "'-'");
	/* Converted since issue 4 (test_san.c); a symbol is no IDNA2008 label. */
	expect_san_refused("DNS:\xf0\x9f\x92\xa9.example", "not a valid internationalised");
	expect_san_refused("DNS:192.0.2.1", "IP:192.0.2.1");
	expect_san_refused("IP:300.1.1.1", "not an IPv4 or IPv6");
	expect_san_refused("IP:fe80::1%eth0", "not an IPv4 or IPv6");
	expect_san_refused("IP:", "not an IPv4 or IPv6");
	expect_san_refused("email:nobody", "local@domain");
	expect_san_refused("email:@example.com", "local@domain");
	expect_san_refused("email:a..b@example.com", "single dots");
	expect_san_refused("email:a b@example.com", "single dots");
	expect_san_refused("email:a@b@example.com", "single dots");
	expect_san_refused("email:a@*.example.com", "wildcard");
	expect_san_refused("email:a@", "empty");
	expect_san_refused("URI:no-scheme", "absolute URI");
	expect_san_refused("URI:1http://x", "absolute URI");
	expect_san_refused("URI:https://exa mple.com", "percent-encode");
	expect_san_refused("URI:https://x/\x01", "percent-encode");
	expect_san_refused("URI:https:", "absolute URI");
	expect_san_refused("foo:bar", "unknown type 'foo'");
	expect_san_refused("", "empty");

	char huge[3000];
	memset(huge, 'a', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	expect_san_refused(huge, "longer than");
	assert_int_equal(x509_san_parse(NULL, &gn, NULL), P11CA_E_INVALID_ARG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_both_syntaxes),
		cmocka_unit_test(test_name_canonical_order),
		cmocka_unit_test(test_name_case_insensitive_types),
		cmocka_unit_test(test_name_escaping),
		cmocka_unit_test(test_name_refusals),
		cmocka_unit_test(test_name_format_limits),
		cmocka_unit_test(test_san_kinds),
		cmocka_unit_test(test_san_autodetect),
		cmocka_unit_test(test_san_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
