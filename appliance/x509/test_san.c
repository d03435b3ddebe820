/* Unit tests for issue 4's additions to appliance/x509/san.c (IDN, dirname, rid,
 * otherName), subtree.c (nameConstraints subtrees) and x509_name_check; the older SAN
 * kinds are in test_name.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "appliance/x509/test_util.h"

static GENERAL_NAME *san(const char *text, int type)
{
	GENERAL_NAME *gn = NULL;
	struct p11ca_errmsg em = {0};
	if (x509_san_parse(text, &gn, &em) != P11CA_OK)
		fail_msg("x509_san_parse(%s): %s", text, em.text);
	assert_int_equal(gn->type, type);
	return gn;
}

static void expect_ia5(const char *text, int type, const char *want)
{
	GENERAL_NAME *gn = san(text, type);
	const ASN1_STRING *s = GENERAL_NAME_get0_value(gn, NULL);
	assert_int_equal(ASN1_STRING_length(s), (int)strlen(want));
	assert_memory_equal(ASN1_STRING_get0_data(s), want, strlen(want));
	GENERAL_NAME_free(gn);
}

static void expect_refused(const char *text, const char *needle)
{
	GENERAL_NAME *gn = (GENERAL_NAME *)1;
	struct p11ca_errmsg em = {0};
	assert_int_equal(x509_san_parse(text, &gn, &em), P11CA_E_INVALID_ARG);
	assert_null(gn);
	if (strstr(em.text, needle) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", text, em.text, needle);
}

static void test_san_idn(void **state)
{
	(void)state;
	expect_ia5("DNS:b\xc3\xbc"
		   "cher.example",
		   GEN_DNS, "xn--bcher-kva.example");
	expect_ia5("b\xc3\xbc"
		   "cher.example",
		   GEN_DNS, "xn--bcher-kva.example"); /* auto-detected */
	expect_ia5("DNS:*.b\xc3\xbc"
		   "cher.example",
		   GEN_DNS, "*.xn--bcher-kva.example");
	expect_ia5("DNS:B\xc3\x9c"
		   "CHER.Example",
		   GEN_DNS, "xn--bcher-kva.example"); /* UTS #46 maps to lower case */
	/* Non-transitional: "ß" stays itself instead of becoming "ss". */
	expect_ia5("DNS:fa\xc3\x9f.de", GEN_DNS, "xn--fa-hia.de");
	expect_ia5("DNS:XN--BCHER-KVA.example", GEN_DNS, "xn--bcher-kva.example");
	expect_ia5("email:info@b\xc3\xbc"
		   "cher.example",
		   GEN_EMAIL, "info@xn--bcher-kva.example");

	expect_refused("DNS:xn--bcher-kvaxx.example", "A-label (xn--)");
	expect_refused("DNS:xn--zz-zzzzzz.com", "A-label (xn--)");
	expect_refused("DNS:xn--.example", "ends with '-'");
	expect_refused("DNS:\xf0\x9f\x92\xa9.example", "not a valid internationalised");
	expect_refused("DNS:b\xc3\xbc_cher.example", "character other than");
	expect_refused("DNS:\xc3\x28.example", "not valid UTF-8");
	expect_refused("email:j\xc3\xb6rg@example.com", "single dots");
}

/* A name whose last label is a number is parsed as an IPv4 address by browsers (WHATWG URL:
 * "1.2.3" and "0x7f.1" are 1.2.0.3 and 127.0.0.1), so as a dNSName it matches nothing a
 * client looks for, or something else than the operator meant: refused like "DNS:1.2.3.4". */
static void test_san_dns_like_ip(void **state)
{
	(void)state;
	expect_refused("DNS:1.2.3", "numeric");
	expect_refused("DNS:0x7f.1", "numeric");
	expect_refused("DNS:www.example.0x1f", "numeric");
	expect_refused("DNS:example.123", "numeric");
	expect_refused("DNS:\xef\xbc\x91\xef\xbc\x92\xef\xbc\x93", "numeric"); /* fullwidth 123 */
	expect_refused("email:a@example.123", "numeric");
	expect_refused("DNS:1.2.3.4", "IP:1.2.3.4");
	expect_ia5("DNS:123.example.com", GEN_DNS, "123.example.com");
	expect_ia5("DNS:example.x0", GEN_DNS, "example.x0");
	expect_ia5("DNS:example.0xg", GEN_DNS, "example.0xg");
	expect_ia5("DNS:localhost", GEN_DNS, "localhost");
}

static void test_san_dirname_rid_othername(void **state)
{
	(void)state;
	GENERAL_NAME *gn = san("dirName:CN=x,O=Org,C=AT", GEN_DIRNAME);
	X509_NAME *want = tu_name("/C=AT/O=Org/CN=x");
	assert_int_equal(X509_NAME_cmp(GENERAL_NAME_get0_value(gn, NULL), want), 0);
	X509_NAME_free(want);
	GENERAL_NAME_free(gn);

	gn = san("RID:1.2.3.4", GEN_RID);
	char oid[64];
	OBJ_obj2txt(oid, sizeof(oid), GENERAL_NAME_get0_value(gn, NULL), 1);
	assert_string_equal(oid, "1.2.3.4");
	GENERAL_NAME_free(gn);

	gn = san("otherName:1.3.6.1.4.1.311.20.2.3;UTF8:j\xc3\xb6rg@example.com", GEN_OTHERNAME);
	ASN1_OBJECT *type = NULL;
	ASN1_TYPE *value = NULL;
	assert_int_equal(GENERAL_NAME_get0_otherName(gn, &type, &value), 1);
	OBJ_obj2txt(oid, sizeof(oid), type, 1);
	assert_string_equal(oid, "1.3.6.1.4.1.311.20.2.3");
	assert_int_equal(ASN1_TYPE_get(value), V_ASN1_UTF8STRING);
	assert_string_equal((const char *)ASN1_STRING_get0_data(value->value.utf8string),
			    "j\xc3\xb6rg@example.com");
	GENERAL_NAME_free(gn);

	expect_refused("dirname:", "subject is empty");
	expect_refused("dirname:FOO=bar", "FOO");
	expect_refused("rid:1.2.x", "not a dotted-decimal OID");
	expect_refused("rid:", "not a dotted-decimal OID");
	expect_refused("rid:1", "not a dotted-decimal OID");
	expect_refused("otherName:1.2.3;IA5:x", "OID;UTF8:value");
	expect_refused("otherName:1.2.3", "OID;UTF8:value");
	expect_refused("otherName:upn;UTF8:x", "not a dotted-decimal OID");
	expect_refused("otherName:1.2.3;UTF8:", "the value is empty");
	expect_refused("otherName:1.2.3;UTF8:a\x01", "control character");
	expect_refused("bogus:1", "dirname:, rid: or otherName:");
}

/* Every SAN kind in one certificate, as `openssl x509 -text` shows it. */
static void test_san_openssl_reads_them(void **state)
{
	(void)state;
	static const char *const texts[] = {
		"DNS:b\xc3\xbc"
		"cher.example",
		"IP:2001:db8::1",
		"email:a@example.com",
		"URI:https://example.com/",
		"dirname:CN=x,O=Org,C=AT",
		"rid:1.2.3.4",
		"otherName:1.3.6.1.4.1.311.20.2.3;UTF8:upn@example.com",
	};
	GENERAL_NAMES *sans = sk_GENERAL_NAME_new_null();
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		GENERAL_NAME *gn = NULL;
		assert_int_equal(x509_san_parse(texts[i], &gn, NULL), P11CA_OK);
		assert_true(sk_GENERAL_NAME_push(sans, gn) > 0);
	}
	X509_NAME *name = tu_name("CN=san test");
	static const uint8_t serial[] = {0x01};
	struct x509_cert_spec s = {
		.subject = name,
		.public_key = tu_key(HSM_KEY_P256),
		.serial = serial,
		.serial_len = 1,
		.not_before = (int64_t)time(NULL),
		.not_after = (int64_t)time(NULL) + 3600,
		.alg = HSM_SIG_ECDSA_SHA256,
		.sans = sans,
	};
	uint8_t *der = NULL;
	size_t len = 0;
	X509 *x = tu_issue(&s, tu_key(HSM_KEY_P256), &der, &len);
	const char *dir = tu_tmpdir();
	char pem[512], log[512];
	snprintf(pem, sizeof(pem), "%s", tu_path(dir, "san.pem"));
	snprintf(log, sizeof(log), "%s", tu_path(dir, "san.log"));
	tu_write_pem(pem, "CERTIFICATE", der, len);
	const char *argv[] = {"openssl",	"x509", "-noout", "-ext",
			      "subjectAltName", "-in",	pem,	  NULL};
	assert_int_equal(tu_run(argv, log), 0);
	static const char *const want[] = {
		"DNS:xn--bcher-kva.example", "IP Address:2001:DB8:0:0:0:0:0:1",
		"email:a@example.com",	     "URI:https://example.com/",
		"DirName:/C=AT/O=Org/CN=x",  "Registered ID:1.2.3.4",
		"UPN::upn@example.com",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (!tu_file_has(log, want[i]))
			fail_msg("openssl does not show '%s' (see %s)", want[i], log);
	OPENSSL_free(der);
	X509_free(x);
	X509_NAME_free(name);
	GENERAL_NAMES_free(sans);
}

static GENERAL_SUBTREE *subtree(const char *text, int type)
{
	GENERAL_SUBTREE *t = NULL;
	struct p11ca_errmsg em = {0};
	if (x509_subtree_parse(text, &t, &em) != P11CA_OK)
		fail_msg("x509_subtree_parse(%s): %s", text, em.text);
	assert_int_equal(t->base->type, type);
	assert_true(t->minimum == NULL && t->maximum == NULL);
	return t;
}

static void expect_subtree(const char *text, int type, const void *want, size_t want_len)
{
	GENERAL_SUBTREE *t = subtree(text, type);
	const ASN1_STRING *s = GENERAL_NAME_get0_value(t->base, NULL);
	assert_int_equal(ASN1_STRING_length(s), (int)want_len);
	assert_memory_equal(ASN1_STRING_get0_data(s), want, want_len);
	GENERAL_SUBTREE_free(t);
}

static void expect_subtree_refused(const char *text, const char *needle)
{
	GENERAL_SUBTREE *t = (GENERAL_SUBTREE *)1;
	struct p11ca_errmsg em = {0};
	assert_int_equal(x509_subtree_parse(text, &t, &em), P11CA_E_INVALID_ARG);
	assert_null(t);
	if (strstr(em.text, needle) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", text, em.text, needle);
}

static void test_subtree_parse(void **state)
{
	(void)state;
	expect_subtree("DNS:Example.com", GEN_DNS, "example.com", 11);
	expect_subtree("dns:.example.com", GEN_DNS, ".example.com", 12);
	expect_subtree("DNS:.b\xc3\xbc"
		       "cher.example",
		       GEN_DNS, ".xn--bcher-kva.example", 22);
	expect_subtree("IP:10.0.0.0/8", GEN_IPADD, "\x0a\0\0\0\xff\0\0\0", 8);
	expect_subtree("IP:192.0.2.128/25", GEN_IPADD, "\xc0\x00\x02\x80\xff\xff\xff\x80", 8);
	expect_subtree("IP:0.0.0.0/0", GEN_IPADD, "\0\0\0\0\0\0\0\0", 8);
	expect_subtree("IP:2001:db8::/32", GEN_IPADD,
		       "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\0"
		       "\xff\xff\xff\xff\0\0\0\0\0\0\0\0\0\0\0\0",
		       32);
	expect_subtree("email:user@example.com", GEN_EMAIL, "user@example.com", 16);
	expect_subtree("email:example.com", GEN_EMAIL, "example.com", 11);
	expect_subtree("email:.example.com", GEN_EMAIL, ".example.com", 12);
	expect_subtree("URI:.example.com", GEN_URI, ".example.com", 12);
	GENERAL_SUBTREE *t = subtree("dirname:O=Example,C=AT", GEN_DIRNAME);
	X509_NAME *want = tu_name("/C=AT/O=Example");
	assert_int_equal(X509_NAME_cmp(t->base->d.directoryName, want), 0);
	X509_NAME_free(want);
	GENERAL_SUBTREE_free(t);

	expect_subtree_refused("", "empty");
	expect_subtree_refused(NULL, "empty");
	expect_subtree_refused("example.com", "no known type");
	expect_subtree_refused("rid:1.2.3", "no known type");
	expect_subtree_refused("DNS:*.example.com", "wildcard");
	expect_subtree_refused("DNS:", "empty");
	expect_subtree_refused("DNS:..example.com", "empty label");
	expect_subtree_refused("IP:10.0.0.1", "needs a prefix length");
	expect_subtree_refused("IP:10.0.0.1/8", "host bits set");
	expect_subtree_refused("IP:2001:db8::1/32", "host bits set");
	expect_subtree_refused("IP:10.0.0.0/33", "0 to 32");
	expect_subtree_refused("IP:::/129", "0 to 128");
	expect_subtree_refused("IP:10.0.0.0/08", "0 to 32");
	expect_subtree_refused("IP:10.0.0.0/", "0 to 32");
	expect_subtree_refused("IP:example.com/8", "not an IPv4 or IPv6");
	expect_subtree_refused("email:@example.com", "local@domain");
	expect_subtree_refused("URI:https://example.com/", "URI constraint");
	expect_subtree_refused("dirname:X=y", "X");
}

static void expect_name_check(X509_NAME *name, const char *needle)
{
	struct p11ca_errmsg em = {0};
	enum p11ca_err err = x509_name_check(name, &em);
	if (needle == NULL) {
		if (err != P11CA_OK)
			fail_msg("refused: %s", em.text);
	} else {
		if (err != P11CA_E_INVALID_ARG)
			fail_msg("accepted, expected a refusal with '%s'", needle);
		if (strstr(em.text, needle) == NULL)
			fail_msg("message '%s' lacks '%s'", em.text, needle);
	}
	X509_NAME_free(name);
}

static X509_NAME *raw_name(int nid, int type, const char *value, int len)
{
	X509_NAME *n = X509_NAME_new();
	assert_non_null(n);
	assert_int_equal(X509_NAME_add_entry_by_NID(n, NID_organizationName, V_ASN1_UTF8STRING,
						    (const unsigned char *)"Org", 3, -1, 0),
			 1);
	assert_int_equal(X509_NAME_add_entry_by_NID(n, nid, type, (const unsigned char *)value,
						    len < 0 ? (int)strlen(value) : len, -1, 0),
			 1);
	return n;
}

static void test_name_check(void **state)
{
	(void)state;
	expect_name_check(tu_name("CN=J\xc3\xb6rg,O=Org,C=AT,emailAddress=a@example.com"), NULL);
	expect_name_check(raw_name(NID_commonName, V_ASN1_PRINTABLESTRING, "plain", -1), NULL);
	expect_name_check(raw_name(NID_commonName, V_ASN1_BMPSTRING, "\0a\0b", 4), NULL);
	expect_name_check(raw_name(NID_commonName, V_ASN1_UTF8STRING, "a\0b", 3), "NUL");
	expect_name_check(raw_name(NID_commonName, V_ASN1_UTF8STRING, "a\x1b[0m", -1),
			  "control character");
	/* C1 controls (U+0080..U+009F) are control characters too: NEL, CSI. */
	expect_name_check(raw_name(NID_commonName, V_ASN1_UTF8STRING, "a\xc2\x85z", -1),
			  "control character");
	expect_name_check(raw_name(NID_commonName, V_ASN1_T61STRING,
				   "a\x9b"
				   "0m",
				   -1),
			  "control character");
	expect_name_check(raw_name(NID_commonName, V_ASN1_UTF8STRING, "\xc3\x28", -1),
			  "not valid in its string type");
	expect_name_check(raw_name(NID_commonName, V_ASN1_UTF8STRING, "", 0), "empty value");
	expect_name_check(raw_name(NID_commonName, V_ASN1_PRINTABLESTRING, "a@b", -1),
			  "PrintableString");
	expect_name_check(raw_name(NID_pkcs9_emailAddress, V_ASN1_IA5STRING, "\xc3\xa4@x", -1),
			  "non-ASCII");
	expect_name_check(raw_name(NID_countryName, V_ASN1_PRINTABLESTRING, "AUT", -1),
			  "two-letter");
	expect_name_check(raw_name(NID_countryName, V_ASN1_PRINTABLESTRING, "at", -1),
			  "two-letter");
	char cn65[66];
	memset(cn65, 'c', 65);
	cn65[65] = '\0';
	expect_name_check(raw_name(NID_commonName, V_ASN1_UTF8STRING, cn65, -1),
			  "65 characters long; at most 64");
	expect_name_check(raw_name(NID_commonName, V_ASN1_NUMERICSTRING, "1", -1),
			  "unsupported string type");
	X509_NAME *multi = tu_name("CN=a,O=Org");
	assert_int_equal(X509_NAME_add_entry_by_NID(multi, NID_title, V_ASN1_UTF8STRING,
						    (const unsigned char *)"t", 1, -1, -1),
			 1);
	expect_name_check(multi, "multi-valued RDN");
	assert_int_equal(x509_name_check(NULL, NULL), P11CA_E_INVALID_ARG);
}

static int teardown(void **state)
{
	(void)state;
	tu_keys_free();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_san_idn),
		cmocka_unit_test(test_san_dns_like_ip),
		cmocka_unit_test(test_san_dirname_rid_othername),
		cmocka_unit_test(test_san_openssl_reads_them),
		cmocka_unit_test(test_subtree_parse),
		cmocka_unit_test(test_name_check),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
