/* Unit tests for appliance/x509/constraints.c: names inside and outside a CA's
 * nameConstraints (DNS, IP ranges, email, directory names; permitted and excluded), the
 * message naming the offending name and CA, and agreement with `openssl verify` on the
 * very certificates we refuse to issue (signed here with a software key). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "appliance/x509/test_util.h"

static const uint8_t serial_root[] = {0x01}, serial_int[] = {0x02}, serial_leaf[] = {0x03};

static STACK_OF(GENERAL_SUBTREE) * subtrees(const char *const *texts)
{
	STACK_OF(GENERAL_SUBTREE) *st = sk_GENERAL_SUBTREE_new_null();
	assert_non_null(st);
	for (size_t i = 0; texts[i] != NULL; i++) {
		GENERAL_SUBTREE *t = NULL;
		assert_int_equal(x509_subtree_parse(texts[i], &t, NULL), P11CA_OK);
		assert_true(sk_GENERAL_SUBTREE_push(st, t) > 0);
	}
	return st;
}

static struct x509_cert_spec base_spec(X509_NAME *subject, EVP_PKEY *key, const X509 *issuer,
				       const uint8_t *serial)
{
	struct x509_cert_spec s = {
		.subject = subject,
		.public_key = key,
		.serial = serial,
		.serial_len = 1,
		.not_before = (int64_t)time(NULL) - 60,
		.not_after = (int64_t)time(NULL) + 86400,
		.alg = HSM_SIG_ECDSA_SHA256,
		.issuer = issuer,
		.path_length = -1,
		.key_usage = X509v3_KU_DIGITAL_SIGNATURE,
		.key_usage_critical = true,
	};
	return s;
}

/* The constrained root, its DER and PEM path. */
struct pki {
	X509 *root, *inter;
	char dir[256], root_pem[512], int_pem[512];
};

/* A root constrained to `permitted` and `excluded` (NULL-terminated) and an unconstrained
 * intermediate under it. */
static void pki_make_with(struct pki *p, const char *const *permitted, const char *const *excluded)
{
	STACK_OF(GENERAL_SUBTREE) *perm = subtrees(permitted), *excl = subtrees(excluded);
	struct x509_ext_spec ext;
	x509_ext_spec_init(&ext);
	ext.permitted = perm;
	ext.excluded = excl;
	X509_NAME *root_name = tu_name("CN=Constrained Root,O=Example,C=AT");
	X509_NAME *int_name = tu_name("CN=Unconstrained Intermediate,O=Example,C=AT");
	struct x509_cert_spec rs = base_spec(root_name, tu_key(HSM_KEY_P256), NULL, serial_root);
	rs.is_ca = true;
	rs.key_usage = X509v3_KU_KEY_CERT_SIGN | X509v3_KU_CRL_SIGN;
	rs.ext = &ext;
	uint8_t *der = NULL;
	size_t len = 0;
	p->root = tu_issue(&rs, tu_key(HSM_KEY_P256), &der, &len);
	snprintf(p->dir, sizeof(p->dir), "%s", tu_tmpdir());
	snprintf(p->root_pem, sizeof(p->root_pem), "%s", tu_path(p->dir, "root.pem"));
	tu_write_pem(p->root_pem, "CERTIFICATE", der, len);
	OPENSSL_free(der);

	struct x509_cert_spec is = base_spec(int_name, tu_key2(HSM_KEY_P256), p->root, serial_int);
	is.is_ca = true;
	is.key_usage = X509v3_KU_KEY_CERT_SIGN | X509v3_KU_CRL_SIGN;
	p->inter = tu_issue(&is, tu_key(HSM_KEY_P256), &der, &len);
	snprintf(p->int_pem, sizeof(p->int_pem), "%s", tu_path(p->dir, "int.pem"));
	tu_write_pem(p->int_pem, "CERTIFICATE", der, len);
	OPENSSL_free(der);
	X509_NAME_free(root_name);
	X509_NAME_free(int_name);
	sk_GENERAL_SUBTREE_pop_free(perm, GENERAL_SUBTREE_free);
	sk_GENERAL_SUBTREE_pop_free(excl, GENERAL_SUBTREE_free);
}

static void pki_make(struct pki *p)
{
	static const char *const permitted[] = {"DNS:example.com",	  "IP:10.0.0.0/8",
						"IP:2001:db8::/32",	  "email:.example.com",
						"dirname:O=Example,C=AT", NULL};
	static const char *const excluded[] = {"DNS:secret.example.com", "IP:10.66.0.0/16", NULL};
	pki_make_with(p, permitted, excluded);
}

static void pki_free(struct pki *p)
{
	X509_free(p->root);
	X509_free(p->inter);
}

/* A leaf under the intermediate with `subject` and SANs (NULL-terminated), checked by us
 * against {intermediate, root} and by `openssl verify`. needle NULL: both must accept;
 * otherwise we refuse with a message holding needle, and openssl (when openssl_err is set)
 * fails with that error. */
static void expect(struct pki *p, const char *subject, const char *const *sans, const char *needle,
		   const char *openssl_err)
{
	X509_NAME *name = tu_name(subject);
	GENERAL_NAMES *gns = sk_GENERAL_NAME_new_null();
	for (size_t i = 0; sans[i] != NULL; i++) {
		GENERAL_NAME *gn = NULL;
		assert_int_equal(x509_san_parse(sans[i], &gn, NULL), P11CA_OK);
		assert_true(sk_GENERAL_NAME_push(gns, gn) > 0);
	}
	struct x509_cert_spec ls = base_spec(name, tu_key(HSM_KEY_P384), p->inter, serial_leaf);
	ls.sans = gns;
	uint8_t *der = NULL;
	size_t len = 0;
	X509 *leaf = tu_issue(&ls, tu_key2(HSM_KEY_P256), &der, &len);
	X509 *chain[] = {p->inter, p->root};
	struct p11ca_errmsg em = {0};
	enum p11ca_err err = x509_check_name_constraints(leaf, chain, 2, &em);
	if (needle == NULL && err != P11CA_OK)
		fail_msg("%s refused: %s", subject, em.text);
	if (needle != NULL) {
		if (err != P11CA_E_POLICY)
			fail_msg("%s: accepted, expected '%s'", subject, needle);
		if (strstr(em.text, needle) == NULL)
			fail_msg("message '%s' lacks '%s'", em.text, needle);
	}

	char leaf_pem[512], log[512];
	snprintf(leaf_pem, sizeof(leaf_pem), "%s", tu_path(p->dir, "leaf.pem"));
	snprintf(log, sizeof(log), "%s", tu_path(p->dir, "verify.log"));
	tu_write_pem(leaf_pem, "CERTIFICATE", der, len);
	const char *argv[] = {"openssl",    "verify",	"-CAfile", p->root_pem,
			      "-untrusted", p->int_pem, leaf_pem,  NULL};
	int rc = tu_run(argv, log);
	if (needle == NULL && (rc != 0 || !tu_file_has(log, "leaf.pem: OK")))
		fail_msg("openssl verify refuses what we accept (%s); see %s", subject, log);
	if (openssl_err != NULL && (rc == 0 || !tu_file_has(log, openssl_err)))
		fail_msg("openssl verify does not report '%s' (%s); see %s", openssl_err, subject,
			 log);
	OPENSSL_free(der);
	X509_free(leaf);
	GENERAL_NAMES_free(gns);
	X509_NAME_free(name);
}

static void test_inside(void **state)
{
	(void)state;
	struct pki p;
	pki_make(&p);
	static const char *const sans[] = {"DNS:www.example.com",
					   "DNS:example.com",
					   "DNS:*.example.com",
					   "IP:10.1.2.3",
					   "IP:2001:db8::1",
					   "email:a@mail.example.com",
					   "URI:https://anything.example.org/",
					   NULL};
	expect(&p, "CN=www.example.com,O=Example,C=AT", sans, NULL, NULL);
	static const char *const none[] = {NULL};
	expect(&p, "CN=example.com,OU=Web,O=Example,C=AT", none, NULL, NULL);
	pki_free(&p);
}

static void test_permitted_violations(void **state)
{
	(void)state;
	struct pki p;
	pki_make(&p);
	static const char *const evil[] = {"DNS:www.example.com", "DNS:www.evil.com", NULL};
	expect(&p, "CN=www.example.com,O=Example,C=AT", evil,
	       "the subjectAltName DNS:www.evil.com is outside the name constraints of CA "
	       "'CN=Constrained Root,O=Example,C=AT' (permitted subtree violation)",
	       "permitted subtree violation");
	static const char *const suffix[] = {"DNS:notexample.com", NULL};
	expect(&p, "CN=x,O=Example,C=AT", suffix, "DNS:notexample.com",
	       "permitted subtree violation");
	static const char *const ip[] = {"IP:192.168.1.1", NULL};
	expect(&p, "CN=x,O=Example,C=AT", ip, "IP:192.168.1.1", "permitted subtree violation");
	static const char *const ip6[] = {"IP:2001:db9::1", NULL};
	expect(&p, "CN=x,O=Example,C=AT", ip6, "IP:2001:db9::1", "permitted subtree violation");
	static const char *const mail[] = {"email:a@example.org", NULL};
	expect(&p, "CN=x,O=Example,C=AT", mail, "email:a@example.org",
	       "permitted subtree violation");
	static const char *const ok[] = {"DNS:www.example.com", NULL};
	expect(&p, "CN=www.example.com,O=Other,C=AT", ok,
	       "the subject 'CN=www.example.com,O=Other,C=AT' is outside",
	       "permitted subtree violation");
	/* The CN alone: refused even with an acceptable DNS SAN (openssl then skips the CN,
	 * so it is no witness here; older clients do read it). */
	expect(&p, "CN=www.evil.com,O=Example,C=AT", ok, "the subject 'CN=www.evil.com", NULL);
	static const char *const none[] = {NULL};
	expect(&p, "CN=www.evil.com,O=Example,C=AT", none, "the subject 'CN=www.evil.com",
	       "permitted subtree violation");
	pki_free(&p);
}

static void test_excluded_violations(void **state)
{
	(void)state;
	struct pki p;
	pki_make(&p);
	static const char *const dns[] = {"DNS:db.secret.example.com", NULL};
	expect(&p, "CN=x,O=Example,C=AT", dns,
	       "DNS:db.secret.example.com is outside the name constraints of CA "
	       "'CN=Constrained Root,O=Example,C=AT' (excluded subtree violation)",
	       "excluded subtree violation");
	static const char *const ip[] = {"IP:10.66.3.4", NULL};
	expect(&p, "CN=x,O=Example,C=AT", ip, "IP:10.66.3.4", "excluded subtree violation");
	pki_free(&p);
}

/* Common names OpenSSL's NAME_CONSTRAINTS_check_CN passes over (an IPv6 literal, a wildcard,
 * a U-label) are still names a client reading the CN takes as the host: they are checked
 * too (openssl verify skips them, so it is no witness for the refusals). */
static void test_cn_forms_openssl_skips(void **state)
{
	(void)state;
	struct pki p;
	pki_make(&p);
	static const char *const ip6[] = {"IP:2001:db8::1", NULL};
	expect(&p, "CN=2001:db9::1,O=Example,C=AT", ip6, "the subject 'CN=2001:db9::1", NULL);
	expect(&p, "CN=2001:db8::1,O=Example,C=AT", ip6, NULL, NULL);
	static const char *const wild[] = {"DNS:*.example.com", NULL};
	expect(&p, "CN=*.evil.com,O=Example,C=AT", wild, "the subject 'CN=*.evil.com", NULL);
	expect(&p, "CN=*.secret.example.com,O=Example,C=AT", wild, "the subject", NULL);
	expect(&p, "CN=*.example.com,O=Example,C=AT", wild, NULL, NULL);
	static const char *const idn[] = {"DNS:bücher.example.com", NULL};
	expect(&p, "CN=bücher.evil.com,O=Example,C=AT", idn, "the subject", NULL);
	expect(&p, "CN=bücher.evil.com.,O=Example,C=AT", idn, "the subject", NULL);
	expect(&p, "CN=BÜCHER.example.com,O=Example,C=AT", idn, NULL, NULL);
	/* Not host names: a person's name, a single label (as OpenSSL: "jsmith"). */
	static const char *const www[] = {"DNS:www.example.com", NULL};
	expect(&p, "CN=Jörg Müller,O=Example,C=AT", www, NULL, NULL);
	expect(&p, "CN=jsmith,O=Example,C=AT", www, NULL, NULL);
	pki_free(&p);

	/* Under IP constraints alone OpenSSL checks an IPv4 CN against nothing. */
	static const char *const permitted[] = {"IP:10.0.0.0/8", NULL};
	static const char *const excluded[] = {"IP:10.66.0.0/16", NULL};
	pki_make_with(&p, permitted, excluded);
	static const char *const ip4[] = {"IP:10.1.2.3", NULL};
	expect(&p, "CN=192.168.1.1", ip4, "the subject 'CN=192.168.1.1'", NULL);
	expect(&p, "CN=10.66.1.1", ip4, "the subject 'CN=10.66.1.1'", NULL);
	expect(&p, "CN=10.1.2.3", ip4, NULL, NULL);
	pki_free(&p);
}

static void test_no_constraints_and_args(void **state)
{
	(void)state;
	struct pki p;
	pki_make(&p);
	/* The intermediate has none: anything passes with it alone. */
	X509 *chain[] = {p.inter};
	struct p11ca_errmsg em = {0};
	assert_int_equal(x509_check_name_constraints(p.root, chain, 1, &em), P11CA_OK);
	assert_int_equal(x509_check_name_constraints(p.inter, NULL, 0, &em), P11CA_OK);
	assert_int_equal(x509_check_name_constraints(NULL, chain, 1, &em), P11CA_E_INVALID_ARG);
	assert_int_equal(x509_check_name_constraints(p.inter, NULL, 1, NULL), P11CA_E_INVALID_ARG);
	X509 *holes[] = {NULL};
	assert_int_equal(x509_check_name_constraints(p.inter, holes, 1, NULL), P11CA_E_INVALID_ARG);
	pki_free(&p);
}

/* The engine checks before it signs: on the TBS from x509_cert_tbs, not a parsed
 * certificate. */
static void test_on_unsigned_tbs(void **state)
{
	(void)state;
	struct pki p;
	pki_make(&p);
	X509_NAME *name = tu_name("CN=www.example.com,O=Example,C=AT");
	GENERAL_NAMES *gns = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gn = NULL;
	assert_int_equal(x509_san_parse("DNS:www.evil.com", &gn, NULL), P11CA_OK);
	assert_true(sk_GENERAL_NAME_push(gns, gn) > 0);
	struct x509_cert_spec ls = base_spec(name, tu_key(HSM_KEY_P384), p.root, serial_leaf);
	ls.sans = gns;
	X509 *tbs = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	assert_int_equal(x509_cert_tbs(&ls, &tbs, &der, &len, NULL), P11CA_OK);
	X509 *chain[] = {p.root};
	struct p11ca_errmsg em = {0};
	assert_int_equal(x509_check_name_constraints(tbs, chain, 1, &em), P11CA_E_POLICY);
	assert_non_null(strstr(em.text, "the subjectAltName DNS:www.evil.com is outside"));
	/* Checking caches extensions in the TBS; what it encodes to must not change. */
	unsigned char *re = NULL;
	int re_len = i2d_re_X509_tbs(tbs, &re);
	assert_int_equal(re_len, (int)len);
	assert_memory_equal(re, der, len);
	OPENSSL_free(re);
	OPENSSL_free(der);
	X509_free(tbs);
	GENERAL_NAMES_free(gns);
	X509_NAME_free(name);
	pki_free(&p);
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
		cmocka_unit_test(test_inside),
		cmocka_unit_test(test_permitted_violations),
		cmocka_unit_test(test_excluded_violations),
		cmocka_unit_test(test_cn_forms_openssl_skips),
		cmocka_unit_test(test_no_constraints_and_args),
		cmocka_unit_test(test_on_unsigned_tbs),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
