/* Unit tests for appliance/x509/ext.c and policy.c: every extension of struct x509_ext_spec
 * read back by OpenSSL (X509_get_ext_d2i, `openssl x509 -text`), criticality, the CA-only
 * rule, and the refusals of URLs, OIDs and policy text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "appliance/x509/test_util.h"
#include "appliance/x509/x509_internal.h"

static const uint8_t serial[] = {0x42};

static struct x509_cert_spec leaf_spec(const X509_NAME *subject, const X509 *issuer,
				       const struct x509_ext_spec *ext)
{
	struct x509_cert_spec s = {
		.subject = subject,
		.public_key = tu_key(HSM_KEY_P256),
		.serial = serial,
		.serial_len = sizeof(serial),
		.not_before = (int64_t)time(NULL) - 60,
		.not_after = (int64_t)time(NULL) + 86400,
		.alg = HSM_SIG_ECDSA_SHA256,
		.issuer = issuer,
		.key_usage = X509v3_KU_DIGITAL_SIGNATURE,
		.key_usage_critical = true,
		.ext = ext,
	};
	return s;
}

static X509 *root_ca(void)
{
	X509_NAME *name = tu_name("CN=Ext Root,O=p11ca test,C=AT");
	struct x509_cert_spec s = leaf_spec(name, NULL, NULL);
	s.public_key = tu_key2(HSM_KEY_P256);
	s.is_ca = true;
	s.path_length = -1;
	s.key_usage = X509v3_KU_KEY_CERT_SIGN | X509v3_KU_CRL_SIGN;
	X509 *root = tu_issue(&s, tu_key2(HSM_KEY_P256), NULL, NULL);
	X509_NAME_free(name);
	return root;
}

/* Whether extension `nid` is present exactly once, and its criticality. */
static int ext_critical(X509 *x, int nid)
{
	int at = X509_get_ext_by_NID(x, nid, -1);
	if (at < 0)
		fail_msg("extension %s missing", OBJ_nid2ln(nid));
	assert_int_equal(X509_get_ext_by_NID(x, nid, at), -1);
	return X509_EXTENSION_get_critical(X509_get_ext(x, at));
}

static const ASN1_OCTET_STRING *ext_data(X509 *x, int nid)
{
	int at = X509_get_ext_by_NID(x, nid, -1);
	assert_true(at >= 0);
	return X509_EXTENSION_get_data(X509_get_ext(x, at));
}

static void expect_uri(const GENERAL_NAME *gn, const char *url)
{
	assert_int_equal(gn->type, GEN_URI);
	assert_int_equal(ASN1_STRING_length(gn->d.uniformResourceIdentifier), (int)strlen(url));
	assert_memory_equal(ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier), url,
			    strlen(url));
}

/* `openssl x509 -text` of `der` into dir/text.log; the path is returned (static). */
static const char *openssl_text(const uint8_t *der, size_t len)
{
	static char log[512], pem[512];
	const char *dir = tu_tmpdir();
	snprintf(pem, sizeof(pem), "%s", tu_path(dir, "cert.pem"));
	snprintf(log, sizeof(log), "%s", tu_path(dir, "text.log"));
	tu_write_pem(pem, "CERTIFICATE", der, len);
	const char *argv[] = {"openssl", "x509", "-noout", "-text", "-in", pem, NULL};
	assert_int_equal(tu_run(argv, log), 0);
	return log;
}

static void test_ext_end_entity(void **state)
{
	(void)state;
	X509 *root = root_ca();
	X509_NAME *name = tu_name("CN=www.example.com");
	static const char *const crl[] = {
		"http://crl.example.com/ca.crl",
		"ldap://ldap.example.com/cn=ca?certificateRevocationList"};
	static const char *const ocsp[] = {"http://ocsp.example.com"};
	static const char *const issuers[] = {"http://ca.example.com/ca.der"};
	static const char *const cps[] = {"https://example.com/cps"};
	const struct x509_policy_spec policies[] = {
		{.oid = "2.23.140.1.2.1"},
		{.oid = "1.3.6.1.4.1.99999.1",
		 .cps_uris = cps,
		 .n_cps_uris = 1,
		 .user_notice = "Grüße; see the CPS"},
	};
	GENERAL_NAMES *ian = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gn = NULL;
	assert_int_equal(x509_san_parse("URI:https://ca.example.com", &gn, NULL), P11CA_OK);
	assert_true(sk_GENERAL_NAME_push(ian, gn) > 0);

	struct x509_ext_spec ext;
	x509_ext_spec_init(&ext);
	ext.crl_urls = crl;
	ext.n_crl_urls = 2;
	ext.ocsp_urls = ocsp;
	ext.n_ocsp_urls = 1;
	ext.issuer_urls = issuers;
	ext.n_issuer_urls = 1;
	ext.policies = policies;
	ext.n_policies = 2;
	ext.issuer_alt_names = ian;
	ext.ocsp_no_check = true;
	ext.tls_feature_status_request = true;
	struct x509_cert_spec s = leaf_spec(name, root, &ext);
	uint8_t *der = NULL;
	size_t len = 0;
	X509 *leaf = tu_issue(&s, tu_key2(HSM_KEY_P256), &der, &len);

	/* CRLDP: one DistributionPoint, fullName with both URLs, no reasons or issuer. */
	assert_int_equal(ext_critical(leaf, NID_crl_distribution_points), 0);
	CRL_DIST_POINTS *dps = X509_get_ext_d2i(leaf, NID_crl_distribution_points, NULL, NULL);
	assert_non_null(dps);
	assert_int_equal(sk_DIST_POINT_num(dps), 1);
	DIST_POINT *dp = sk_DIST_POINT_value(dps, 0);
	assert_true(dp->reasons == NULL && dp->CRLissuer == NULL);
	assert_int_equal(dp->distpoint->type, 0);
	assert_int_equal(sk_GENERAL_NAME_num(dp->distpoint->name.fullname), 2);
	expect_uri(sk_GENERAL_NAME_value(dp->distpoint->name.fullname, 0), crl[0]);
	expect_uri(sk_GENERAL_NAME_value(dp->distpoint->name.fullname, 1), crl[1]);
	CRL_DIST_POINTS_free(dps);

	/* AIA: OCSP first, then caIssuers. */
	assert_int_equal(ext_critical(leaf, NID_info_access), 0);
	AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(leaf, NID_info_access, NULL, NULL);
	assert_non_null(aia);
	assert_int_equal(sk_ACCESS_DESCRIPTION_num(aia), 2);
	ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, 0);
	assert_int_equal(OBJ_obj2nid(ad->method), NID_ad_OCSP);
	expect_uri(ad->location, ocsp[0]);
	ad = sk_ACCESS_DESCRIPTION_value(aia, 1);
	assert_int_equal(OBJ_obj2nid(ad->method), NID_ad_ca_issuers);
	expect_uri(ad->location, issuers[0]);
	AUTHORITY_INFO_ACCESS_free(aia);

	/* certificatePolicies: the first bare, the second with CPS then a UTF8String notice. */
	assert_int_equal(ext_critical(leaf, NID_certificate_policies), 0);
	CERTIFICATEPOLICIES *cp = X509_get_ext_d2i(leaf, NID_certificate_policies, NULL, NULL);
	assert_non_null(cp);
	assert_int_equal(sk_POLICYINFO_num(cp), 2);
	char oid[80];
	OBJ_obj2txt(oid, sizeof(oid), sk_POLICYINFO_value(cp, 0)->policyid, 1);
	assert_string_equal(oid, "2.23.140.1.2.1");
	assert_null(sk_POLICYINFO_value(cp, 0)->qualifiers);
	POLICYINFO *pi = sk_POLICYINFO_value(cp, 1);
	assert_int_equal(sk_POLICYQUALINFO_num(pi->qualifiers), 2);
	POLICYQUALINFO *q = sk_POLICYQUALINFO_value(pi->qualifiers, 0);
	assert_int_equal(OBJ_obj2nid(q->pqualid), NID_id_qt_cps);
	assert_string_equal((const char *)ASN1_STRING_get0_data(q->d.cpsuri), cps[0]);
	q = sk_POLICYQUALINFO_value(pi->qualifiers, 1);
	assert_int_equal(OBJ_obj2nid(q->pqualid), NID_id_qt_unotice);
	assert_null(q->d.usernotice->noticeref);
	assert_int_equal(ASN1_STRING_type(q->d.usernotice->exptext), V_ASN1_UTF8STRING);
	assert_string_equal((const char *)ASN1_STRING_get0_data(q->d.usernotice->exptext),
			    "Grüße; see the CPS");
	CERTIFICATEPOLICIES_free(cp);

	assert_int_equal(ext_critical(leaf, NID_issuer_alt_name), 0);
	GENERAL_NAMES *got_ian = X509_get_ext_d2i(leaf, NID_issuer_alt_name, NULL, NULL);
	assert_int_equal(sk_GENERAL_NAME_num(got_ian), 1);
	expect_uri(sk_GENERAL_NAME_value(got_ian, 0), "https://ca.example.com");
	GENERAL_NAMES_free(got_ian);

	/* OCSPNoCheck is a NULL; TLS feature is SEQUENCE { INTEGER 5 }. */
	assert_int_equal(ext_critical(leaf, NID_id_pkix_OCSP_noCheck), 0);
	const ASN1_OCTET_STRING *v = ext_data(leaf, NID_id_pkix_OCSP_noCheck);
	assert_int_equal(ASN1_STRING_length(v), 2);
	assert_memory_equal(ASN1_STRING_get0_data(v), "\x05\x00", 2);
	assert_int_equal(ext_critical(leaf, NID_tlsfeature), 0);
	v = ext_data(leaf, NID_tlsfeature);
	assert_int_equal(ASN1_STRING_length(v), 5);
	assert_memory_equal(ASN1_STRING_get0_data(v), "\x30\x03\x02\x01\x05", 5);
	TLS_FEATURE *tlsf = X509_get_ext_d2i(leaf, NID_tlsfeature, NULL, NULL);
	assert_int_equal(sk_ASN1_INTEGER_num(tlsf), 1);
	assert_int_equal(ASN1_INTEGER_get(sk_ASN1_INTEGER_value(tlsf, 0)), 5);
	TLS_FEATURE_free(tlsf);

	/* None of the CA-only ones; extensions in struct order after the fixed ones. */
	assert_int_equal(X509_get_ext_by_NID(leaf, NID_name_constraints, -1), -1);
	assert_int_equal(X509_get_ext_by_NID(leaf, NID_policy_constraints, -1), -1);
	assert_int_equal(X509_get_ext_by_NID(leaf, NID_inhibit_any_policy, -1), -1);
	assert_true(X509_get_ext_by_NID(leaf, NID_authority_key_identifier, -1) <
		    X509_get_ext_by_NID(leaf, NID_crl_distribution_points, -1));
	assert_true(X509_get_ext_by_NID(leaf, NID_crl_distribution_points, -1) <
		    X509_get_ext_by_NID(leaf, NID_tlsfeature, -1));

	/* And the way an operator would see it. */
	const char *log = openssl_text(der, len);
	assert_true(tu_file_has(log, "TLS Feature:"));
	assert_true(tu_file_has(log, "status_request"));
	assert_true(tu_file_has(log, "Policy: 2.23.140.1.2.1"));
	assert_true(tu_file_has(log, "CPS: https://example.com/cps"));
	assert_true(tu_file_has(log, "Explicit Text: Grüße; see the CPS"));
	assert_true(tu_file_has(log, "OCSP - URI:http://ocsp.example.com"));
	assert_true(tu_file_has(log, "CA Issuers - URI:http://ca.example.com/ca.der"));
	assert_true(tu_file_has(log, "OCSP No Check"));

	OPENSSL_free(der);
	X509_free(leaf);
	GENERAL_NAMES_free(ian);
	X509_NAME_free(name);
	X509_free(root);
}

static STACK_OF(GENERAL_SUBTREE) * subtrees(const char *const *texts, size_t n)
{
	STACK_OF(GENERAL_SUBTREE) *st = sk_GENERAL_SUBTREE_new_null();
	assert_non_null(st);
	for (size_t i = 0; i < n; i++) {
		GENERAL_SUBTREE *t = NULL;
		struct p11ca_errmsg em = {0};
		if (x509_subtree_parse(texts[i], &t, &em) != P11CA_OK)
			fail_msg("x509_subtree_parse(%s): %s", texts[i], em.text);
		assert_true(sk_GENERAL_SUBTREE_push(st, t) > 0);
	}
	return st;
}

static void test_ext_ca_only(void **state)
{
	(void)state;
	X509 *root = root_ca();
	X509_NAME *name = tu_name("CN=Constrained,O=p11ca test,C=AT");
	static const char *const ok[] = {"DNS:example.com", "IP:10.0.0.0/8"};
	static const char *const bad[] = {"DNS:evil.example.com"};
	STACK_OF(GENERAL_SUBTREE) *permitted = subtrees(ok, 2);
	STACK_OF(GENERAL_SUBTREE) *excluded = subtrees(bad, 1);
	struct x509_ext_spec ext;
	x509_ext_spec_init(&ext);
	ext.permitted = permitted;
	ext.excluded = excluded;
	ext.require_explicit_policy = 0;
	ext.inhibit_any_policy = 1;
	struct x509_cert_spec s = leaf_spec(name, root, &ext);
	s.is_ca = true;
	s.path_length = 0;
	s.key_usage = X509v3_KU_KEY_CERT_SIGN | X509v3_KU_CRL_SIGN;
	uint8_t *der = NULL;
	size_t len = 0;
	X509 *ca = tu_issue(&s, tu_key2(HSM_KEY_P256), &der, &len);

	assert_int_equal(ext_critical(ca, NID_name_constraints), 1);
	NAME_CONSTRAINTS *nc = X509_get_ext_d2i(ca, NID_name_constraints, NULL, NULL);
	assert_non_null(nc);
	assert_int_equal(sk_GENERAL_SUBTREE_num(nc->permittedSubtrees), 2);
	assert_int_equal(sk_GENERAL_SUBTREE_num(nc->excludedSubtrees), 1);
	GENERAL_SUBTREE *t = sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, 1);
	assert_int_equal(t->base->type, GEN_IPADD);
	assert_memory_equal(ASN1_STRING_get0_data(t->base->d.iPAddress), "\x0a\0\0\0\xff\0\0\0", 8);
	assert_true(t->minimum == NULL && t->maximum == NULL);
	NAME_CONSTRAINTS_free(nc);

	assert_int_equal(ext_critical(ca, NID_policy_constraints), 1);
	POLICY_CONSTRAINTS *pc = X509_get_ext_d2i(ca, NID_policy_constraints, NULL, NULL);
	assert_non_null(pc);
	assert_int_equal(ASN1_INTEGER_get(pc->requireExplicitPolicy), 0);
	assert_null(pc->inhibitPolicyMapping);
	POLICY_CONSTRAINTS_free(pc);
	assert_int_equal(ext_critical(ca, NID_inhibit_any_policy), 1);
	ASN1_INTEGER *skip = X509_get_ext_d2i(ca, NID_inhibit_any_policy, NULL, NULL);
	assert_int_equal(ASN1_INTEGER_get(skip), 1);
	ASN1_INTEGER_free(skip);
	const char *log = openssl_text(der, len);
	assert_true(tu_file_has(log, "X509v3 Name Constraints: critical"));
	assert_true(tu_file_has(log, "IP:10.0.0.0/255.0.0.0"));
	assert_true(tu_file_has(log, "X509v3 Inhibit Any Policy: critical"));

	/* The same spec for an end entity is refused, one extension at a time. */
	X509_NAME *leaf_name = tu_name("CN=www.example.com");
	for (int i = 0; i < 3; i++) {
		struct x509_ext_spec e;
		x509_ext_spec_init(&e);
		if (i == 0)
			e.permitted = permitted;
		else if (i == 1)
			e.inhibit_policy_mapping = 0;
		else
			e.inhibit_any_policy = 0;
		struct x509_cert_spec ls = leaf_spec(leaf_name, ca, &e);
		X509 *tbs = (X509 *)1;
		uint8_t *tbs_der = (uint8_t *)1;
		size_t tbs_len = 1;
		struct p11ca_errmsg em = {0};
		assert_int_equal(x509_cert_tbs(&ls, &tbs, &tbs_der, &tbs_len, &em),
				 P11CA_E_INVALID_ARG);
		assert_true(tbs == NULL && tbs_der == NULL && tbs_len == 0);
		assert_non_null(strstr(em.text, "for CA certificates only"));
	}
	X509_NAME_free(leaf_name);
	OPENSSL_free(der);
	X509_free(ca);
	sk_GENERAL_SUBTREE_pop_free(permitted, GENERAL_SUBTREE_free);
	sk_GENERAL_SUBTREE_pop_free(excluded, GENERAL_SUBTREE_free);
	X509_NAME_free(name);
	X509_free(root);
}

static void expect_spec_refused(const struct x509_ext_spec *ext, const char *needle)
{
	X509_NAME *name = tu_name("CN=www.example.com");
	struct x509_cert_spec s = leaf_spec(name, NULL, ext);
	s.public_key = tu_key2(HSM_KEY_P256);
	X509 *tbs = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	struct p11ca_errmsg em = {0};
	assert_int_equal(x509_cert_tbs(&s, &tbs, &der, &len, &em), P11CA_E_INVALID_ARG);
	assert_true(tbs == NULL && der == NULL);
	if (strstr(em.text, needle) == NULL)
		fail_msg("message '%s' lacks '%s'", em.text, needle);
	X509_NAME_free(name);
}

static void test_ext_refusals(void **state)
{
	(void)state;
	struct x509_ext_spec ext;
	static const char *const ftp[] = {"ftp://crl.example.com/ca.crl"};
	static const char *const ldap[] = {"ldap://ldap.example.com/x"};
	static const char *const many[9] = {
		"http://a.example", "http://a.example", "http://a.example",
		"http://a.example", "http://a.example", "http://a.example",
		"http://a.example", "http://a.example", "http://a.example"};
	x509_ext_spec_init(&ext);
	ext.crl_urls = ftp;
	ext.n_crl_urls = 1;
	expect_spec_refused(&ext, "must start with http:// or https:// (or ldap://)");
	x509_ext_spec_init(&ext);
	ext.ocsp_urls = ldap; /* OCSP is HTTP only */
	ext.n_ocsp_urls = 1;
	expect_spec_refused(&ext, "must start with http:// or https://");
	x509_ext_spec_init(&ext);
	ext.issuer_urls = many;
	ext.n_issuer_urls = 9;
	expect_spec_refused(&ext, "at most 8");

	struct x509_policy_spec pol[2] = {{.oid = "1.2.3"}, {.oid = "1.2.3"}};
	x509_ext_spec_init(&ext);
	ext.policies = pol;
	ext.n_policies = 2;
	expect_spec_refused(&ext, "given twice");
	pol[0].oid = "1.2.03";
	ext.n_policies = 1;
	expect_spec_refused(&ext, "not a dotted-decimal OID");
	pol[0].oid = "serverAuth";
	expect_spec_refused(&ext, "not a dotted-decimal OID");
	char notice[202];
	memset(notice, 'n', 201);
	notice[201] = '\0';
	pol[0].oid = "1.2.3";
	pol[0].user_notice = notice;
	expect_spec_refused(&ext, "longer than 200 bytes");
	pol[0].user_notice = "bell\a";
	expect_spec_refused(&ext, "control character");
	pol[0].user_notice = NULL;
	pol[0].cps_uris = ldap;
	pol[0].n_cps_uris = 1;
	expect_spec_refused(&ext, "must start with http");

	x509_ext_spec_init(&ext);
	ext.inhibit_any_policy = 65;
	expect_spec_refused(&ext, "for CA certificates only");
}

/* Subtrees built elsewhere than x509_subtree_parse (decoded from storage, say) are held to
 * what RFC 5280 4.2.1.10 allows CAs to write: minimum 0, no maximum, and a base of a type
 * and form verifiers can match. */
static void expect_subtree_refused(GENERAL_SUBTREE *st, const char *needle)
{
	STACK_OF(GENERAL_SUBTREE) *sk = sk_GENERAL_SUBTREE_new_null();
	assert_non_null(sk);
	assert_true(sk_GENERAL_SUBTREE_push(sk, st) > 0);
	struct x509_ext_spec ext;
	x509_ext_spec_init(&ext);
	ext.excluded = sk;
	X509_NAME *name = tu_name("CN=Sub CA");
	struct x509_cert_spec s = leaf_spec(name, NULL, &ext);
	s.public_key = tu_key2(HSM_KEY_P256);
	s.is_ca = true;
	s.path_length = -1;
	s.key_usage = X509v3_KU_KEY_CERT_SIGN;
	X509 *tbs = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	struct p11ca_errmsg em = {0};
	enum p11ca_err err = x509_cert_tbs(&s, &tbs, &der, &len, &em);
	if (needle == NULL) {
		if (err != P11CA_OK)
			fail_msg("refused: %s", em.text);
	} else {
		assert_int_equal(err, P11CA_E_INVALID_ARG);
		if (strstr(em.text, needle) == NULL)
			fail_msg("message '%s' lacks '%s'", em.text, needle);
	}
	OPENSSL_free(der);
	X509_free(tbs);
	X509_NAME_free(name);
	sk_GENERAL_SUBTREE_pop_free(sk, GENERAL_SUBTREE_free);
}

static GENERAL_SUBTREE *subtree(const char *text)
{
	GENERAL_SUBTREE *st = NULL;
	assert_int_equal(x509_subtree_parse(text, &st, NULL), P11CA_OK);
	return st;
}

static void test_ext_subtree_shape(void **state)
{
	(void)state;
	expect_subtree_refused(subtree("DNS:example.com"), NULL);
	GENERAL_SUBTREE *st = subtree("DNS:example.com");
	assert_non_null(st->maximum = ASN1_INTEGER_new());
	assert_int_equal(ASN1_INTEGER_set(st->maximum, 3), 1);
	expect_subtree_refused(st, "minimum 0 and no maximum");
	st = subtree("DNS:example.com");
	assert_non_null(st->minimum = ASN1_INTEGER_new());
	assert_int_equal(ASN1_INTEGER_set(st->minimum, 1), 1);
	expect_subtree_refused(st, "minimum 0 and no maximum");
	st = subtree("DNS:example.com");
	assert_non_null(st->minimum = ASN1_INTEGER_new());
	assert_int_equal(ASN1_INTEGER_set(st->minimum, 0), 1);
	expect_subtree_refused(st, "minimum 0 and no maximum"); /* DER omits a DEFAULT */

	/* An iPAddress base without its mask, and a type OpenSSL cannot match. */
	st = GENERAL_SUBTREE_new();
	assert_non_null(st);
	GENERAL_NAME_free(st->base);
	static const uint8_t ip4[] = {10, 0, 0, 0};
	assert_int_equal(x509_gn_ip(ip4, sizeof(ip4), &st->base, NULL), P11CA_OK);
	expect_subtree_refused(st, "address and mask");
	st = GENERAL_SUBTREE_new();
	assert_non_null(st);
	GENERAL_NAME_free(st->base);
	assert_int_equal(x509_san_parse("rid:1.2.3.4", &st->base, NULL), P11CA_OK);
	expect_subtree_refused(st, "DNS, IP, email, URI or dirname");
}

static void expect_url(const char *url, bool ldap, const char *needle)
{
	struct p11ca_errmsg em = {0};
	enum p11ca_err err = x509_url_check(url, ldap, &em);
	if (needle == NULL) {
		if (err != P11CA_OK)
			fail_msg("'%s' refused: %s", url, em.text);
		return;
	}
	assert_int_equal(err, P11CA_E_INVALID_ARG);
	if (strstr(em.text, needle) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", url, em.text, needle);
}

static void test_url_check(void **state)
{
	(void)state;
	expect_url("http://crl.example.com/ca.crl", false, NULL);
	expect_url("HTTPS://crl.example.com:8443/a/b?c=d", false, NULL);
	expect_url("http://192.0.2.1/ca.crl", false, NULL);
	expect_url("http://[2001:db8::1]:80/ca.crl", false, NULL);
	expect_url("http://ca.example.com", false, NULL);
	expect_url("ldap://ldap.example.com/cn=CA,o=Org?cRL", true, NULL);
	expect_url("ldap://ldap.example.com/", false, "must start with http");
	expect_url("ftp://example.com/", true, "must start with http");
	expect_url("http:/example.com", false, "must start with http");
	expect_url("", false, "empty");
	expect_url(NULL, false, "empty");
	expect_url("http:///ca.crl", false, "no valid host");
	expect_url("http://exa_mple.com/", false, "no valid host");
	expect_url("http://example..com/", false, "no valid host");
	expect_url("http://[::1/", false, "no valid host");
	/* Each label of the host LDH: no '-' at either end. */
	expect_url("http://crl.-example.com/", false, "no valid host");
	expect_url("http://crl-.example.com/", false, "no valid host");
	expect_url("http://crl.example.com-/", false, "no valid host");
	expect_url("http://crl.example.com./", false, "no valid host");
	expect_url("http://a-b.example.com/", false, NULL);
	expect_url("http://user:pw@example.com/", false, "user information");
	expect_url("http://example.com:0/", false, "invalid port");
	expect_url("http://example.com:65536/", false, "invalid port");
	expect_url("http://example.com:/", false, "invalid port");
	expect_url("http://example.com/a b", false, "space");
	expect_url("http://exämple.com/", false, "non-ASCII");
	char long_url[300];
	memset(long_url, 'a', sizeof(long_url) - 1);
	memcpy(long_url, "http://", 7);
	long_url[sizeof(long_url) - 1] = '\0';
	expect_url(long_url, false, "longer than 255");
}

static void test_policy_text_parse(void **state)
{
	(void)state;
	struct x509_policy_text p;
	struct p11ca_errmsg em = {0};
	assert_int_equal(x509_policy_text_parse("2.23.140.1.2.1", &p, &em), P11CA_OK);
	assert_string_equal(p.oid, "2.23.140.1.2.1");
	assert_int_equal(p.n_cps, 0);
	assert_string_equal(p.notice, "");
	assert_int_equal(x509_policy_text_parse("1.3.6.1.4.1.1;cps=http://a.example/cps;CPS="
						"https://b.example/cps;notice=Read it; all of it",
						&p, &em),
			 P11CA_OK);
	assert_string_equal(p.oid, "1.3.6.1.4.1.1");
	assert_int_equal(p.n_cps, 2);
	assert_string_equal(p.cps[0], "http://a.example/cps");
	assert_string_equal(p.cps[1], "https://b.example/cps");
	assert_string_equal(p.notice, "Read it; all of it");

	static const struct {
		const char *text, *needle;
	} bad[] = {
		{"", "empty"},
		{"1", "not a dotted-decimal OID"},
		{"3.1", "not a dotted-decimal OID"},
		{"1.40", "not a dotted-decimal OID"},
		{"1..2", "not a dotted-decimal OID"},
		{"1.2.", "not a dotted-decimal OID"},
		{"1.2;", "neither cps=URL nor notice=TEXT"},
		{"1.2;foo=bar", "neither cps=URL nor notice=TEXT"},
		{"1.2;cps=ftp://a.example", "must start with http"},
		{"1.2;cps=http://a.example;cps=http://b.example;cps=http://c.example",
		 "more than two"},
		{"1.2;notice=", "notice is empty"},
		{"1.2;notice=tab\there", "control character"},
		{"1.2;notice=\xc3\x28", "not valid UTF-8"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p11ca_errmsg_clear(&em);
		assert_int_equal(x509_policy_text_parse(bad[i].text, &p, &em), P11CA_E_INVALID_ARG);
		if (strstr(em.text, bad[i].needle) == NULL)
			fail_msg("'%s': message '%s' lacks '%s'", bad[i].text, em.text,
				 bad[i].needle);
	}
	assert_int_equal(x509_policy_text_parse(NULL, &p, NULL), P11CA_E_INVALID_ARG);
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
		cmocka_unit_test(test_ext_end_entity), cmocka_unit_test(test_ext_ca_only),
		cmocka_unit_test(test_ext_refusals),   cmocka_unit_test(test_ext_subtree_shape),
		cmocka_unit_test(test_url_check),      cmocka_unit_test(test_policy_text_parse),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
