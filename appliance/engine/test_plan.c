/*
 * plan.c and ca_settings.c without an HSM: software CA certificates and CSRs, a
 * configuration built in memory. Covers the layering (profile < CA < request), the URL
 * gates and templates, names (profile subject, CN → SAN, first SAN → CN, the CSR's subject
 * as the last resort, never its extensions), and every refusal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "appliance/engine/plan.h"

#define NOW ((int64_t)1800000000)

static struct p11cad_config cfg;
static p11ca_v1_CaSettings settings;

static EVP_PKEY *key_new(const char *type)
{
	EVP_PKEY *k = strcmp(type, "ED25519") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
		      : strcmp(type, "RSA") == 0
			      ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024)
			      : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(k);
	return k;
}

static void add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(e);
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
}

/* A self-signed CA certificate valid until NOW + days, optionally name-constrained. */
static void ca_make(struct engine_ca *ca, const char *type, int days, const char *constraints)
{
	EVP_PKEY *k = key_new(type);
	X509 *x = X509_new();
	memset(ca, 0, sizeof(*ca));
	ASN1_INTEGER_set(X509_get_serialNumber(x), 0x1234);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
				   (const unsigned char *)"Plan CA", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(NOW - 86400));
	ASN1_TIME_set(X509_getm_notAfter(x), (time_t)(NOW + (int64_t)days * 86400));
	X509_set_version(x, 2);
	X509_set_pubkey(x, k);
	add_ext(x, NID_basic_constraints, "critical,CA:TRUE");
	add_ext(x, NID_key_usage, "critical,keyCertSign,cRLSign");
	add_ext(x, NID_subject_key_identifier, "hash");
	if (constraints != NULL)
		add_ext(x, NID_name_constraints, constraints);
	assert_true(X509_sign(x, k, strcmp(type, "ED25519") == 0 ? NULL : EVP_sha256()) > 0);
	EVP_PKEY_free(k);
	snprintf(ca->rec.name, sizeof(ca->rec.name), "planca");
	ca->rec.state = STORE_CA_ACTIVE;
	ca->cert = x;
	ca->key_type = strcmp(type, "ED25519") == 0 ? HSM_KEY_ED25519 : HSM_KEY_P256;
	ca->alg = hsm_sig_alg_default(ca->key_type);
	ca->not_after = NOW + (int64_t)days * 86400;
}

/* A CSR with `subject` (may be NULL) asking for SANs in its extensions (ignored). */
static size_t csr_make(const char *type, const char *cn, uint8_t *out, size_t cap)
{
	EVP_PKEY *k = key_new(type);
	X509_REQ *r = X509_REQ_new();
	if (cn != NULL)
		X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(r), "CN", MBSTRING_UTF8,
					   (const unsigned char *)cn, -1, -1, 0);
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name,
							 "DNS:from-csr.example.com"));
	X509_REQ_add_extensions(r, exts);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_set_pubkey(r, k);
	assert_true(X509_REQ_sign(r, k, EVP_sha256()) > 0);
	int n = i2d_X509_REQ(r, NULL);
	assert_true(n > 0 && (size_t)n <= cap);
	unsigned char *p = out;
	i2d_X509_REQ(r, &p);
	X509_REQ_free(r);
	EVP_PKEY_free(k);
	return (size_t)n;
}

static int setup(void **state)
{
	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.cert_expires_days = 365;
	cfg.max_sans = 4;
	snprintf(cfg.default_profile, sizeof(cfg.default_profile), "webserver");
	struct p11cad_profile *w = &cfg.profiles[cfg.n_profiles++];
	snprintf(w->name, sizeof(w->name), "webserver");
	w->enabled = true;
	w->key_usage = X509v3_KU_DIGITAL_SIGNATURE | X509v3_KU_KEY_ENCIPHERMENT;
	w->key_usage_critical = true;
	snprintf(w->eku[0], sizeof(w->eku[0]), "serverAuth");
	w->n_eku = 1;
	w->cn_in_san = w->add_crl_url = w->add_ocsp_url = w->add_issuer_url = true;
	snprintf(w->subject, sizeof(w->subject), "C=AT,O=Plan Org");
	snprintf(w->policies[0], sizeof(w->policies[0]), "2.23.140.1.2.1");
	w->n_policies = 1;
	struct p11cad_profile *o = &cfg.profiles[cfg.n_profiles++];
	snprintf(o->name, sizeof(o->name), "ocsp");
	o->enabled = true;
	o->key_usage = X509v3_KU_DIGITAL_SIGNATURE;
	snprintf(o->eku[0], sizeof(o->eku[0]), "OCSPSigning");
	o->n_eku = 1;
	o->ocsp_no_check = true;
	o->expires_days = 3;
	memset(&settings, 0, sizeof(settings));
	settings.enabled = true;
	return 0;
}

struct fx {
	struct engine_ca ca;
	uint8_t csr[4096];
	struct engine_plan_request req;
	struct engine_plan *plan;
	struct p11ca_errmsg em;
	const char *sans[8];
};

static void fx_init(struct fx *f, const char *ca_type, const char *constraints)
{
	memset(f, 0, sizeof(*f));
	setup(NULL);
	ca_make(&f->ca, ca_type, 1000, constraints);
	f->req.csr = f->csr;
	f->req.csr_len = csr_make("EC", "csr.example.com", f->csr, sizeof(f->csr));
	f->req.sans = f->sans;
}

static enum p11ca_err fx_build(struct fx *f)
{
	engine_plan_free(&f->plan);
	X509 *chain[1] = {f->ca.cert};
	p11ca_errmsg_clear(&f->em);
	return engine_plan_build(&cfg, &f->ca, &settings, chain, 1, &f->req, NOW, &f->plan, &f->em);
}

static void fx_done(struct fx *f)
{
	engine_plan_free(&f->plan);
	engine_ca_clear(&f->ca);
}

static void expect_refusal(struct fx *f, enum p11ca_err want, const char *words)
{
	enum p11ca_err err = fx_build(f);
	if (err != want)
		fail_msg("got %s (%s), want %s", p11ca_err_name(err), f->em.text,
			 p11ca_err_name(want));
	assert_null(f->plan);
	if (strstr(f->em.text, words) == NULL)
		fail_msg("'%s' does not say '%s'", f->em.text, words);
}

static void subject_is(const struct fx *f, const char *want)
{
	char text[512];
	assert_int_equal(x509_name_format(f->plan->subject, text, sizeof(text), NULL), P11CA_OK);
	assert_string_equal(text, want);
}

static void san_is(const struct fx *f, int i, int type, const char *value)
{
	assert_true(i < sk_GENERAL_NAME_num(f->plan->sans));
	const GENERAL_NAME *gn = sk_GENERAL_NAME_value(f->plan->sans, i);
	assert_int_equal(gn->type, type);
	if (type == GEN_DNS)
		assert_string_equal((const char *)gn->d.dNSName->data, value);
}

/* ---- layering ------------------------------------------------------------------------- */

static void test_profile_layer(void **state)
{
	(void)state;
	struct fx f;
	fx_init(&f, "EC", NULL);
	f.req.subject = "CN=www.example.com";
	assert_int_equal(fx_build(&f), P11CA_OK);
	const struct x509_cert_spec *s = &f.plan->spec;
	assert_int_equal(s->key_usage, X509v3_KU_DIGITAL_SIGNATURE | X509v3_KU_KEY_ENCIPHERMENT);
	assert_true(s->key_usage_critical);
	assert_int_equal(s->n_eku, 1);
	assert_string_equal(s->eku[0], "serverAuth");
	assert_int_equal(s->ext->n_policies, 1);
	assert_string_equal(s->ext->policies[0].oid, "2.23.140.1.2.1");
	assert_false(s->ext->ocsp_no_check);
	assert_int_equal(s->ext->n_crl_urls, 0);
	assert_int_equal(s->alg, HSM_SIG_ECDSA_SHA256);
	assert_int_equal(s->not_after, NOW + 365 * 86400);
	assert_int_equal(s->not_before, NOW - ENGINE_CLOCK_SKEW);
	assert_false(s->is_ca);
	assert_ptr_equal(s->issuer, f.ca.cert);
	/* Profile subject merged in canonical order; the CN went into the SANs. */
	subject_is(&f, "CN=www.example.com,O=Plan Org,C=AT");
	assert_int_equal(sk_GENERAL_NAME_num(f.plan->sans), 1);
	san_is(&f, 0, GEN_DNS, "www.example.com");
	fx_done(&f);
}

static void test_ca_and_request_layers(void **state)
{
	(void)state;
	struct fx f;
	fx_init(&f, "EC", NULL);
	f.req.subject = "CN=www.example.com";
	/* CA layer: EKU, policies, URLs with templates, OCSPNoCheck. */
	p11ca_v1_ExtensionSettings *ca = &settings.issued;
	settings.has_issued = true;
	ca->has_extended_key_usage = true;
	ca->extended_key_usage.names_count = 2;
	snprintf(ca->extended_key_usage.names[0], 40, "clientAuth");
	snprintf(ca->extended_key_usage.names[1], 40, "1.3.6.1.5.5.7.3.9");
	ca->has_crl_urls = true;
	ca->crl_urls.values_count = 1;
	snprintf(ca->crl_urls.values[0], 256, "http://crl.example.com/{ca_name}/{ca_serial}.crl");
	ca->has_ocsp_urls = true;
	ca->ocsp_urls.values_count = 1;
	snprintf(ca->ocsp_urls.values[0], 256, "http://ocsp.example.com/");
	ca->has_policies = true;
	ca->policies.policies_count = 1;
	snprintf(ca->policies.policies[0].oid, 64, "1.2.3.4");
	snprintf(ca->policies.policies[0].user_notice, 201, "a notice; with a semicolon");
	ca->has_ocsp_no_check = true;
	ca->ocsp_no_check = true;
	/* Request layer: keyUsage, no CRL URL at all (present and empty). */
	p11ca_v1_ExtensionSettings rq = {0};
	rq.has_key_usage = true;
	rq.key_usage.names_count = 1;
	snprintf(rq.key_usage.names[0], 40, "digitalSignature");
	rq.has_tls_feature_status_request = true;
	rq.tls_feature_status_request = true;
	f.req.ext = &rq;
	assert_int_equal(fx_build(&f), P11CA_OK);
	const struct x509_cert_spec *s = &f.plan->spec;
	assert_int_equal(s->key_usage, X509v3_KU_DIGITAL_SIGNATURE);
	assert_true(s->key_usage_critical); /* narrowed, still critical as the profile has it */
	assert_int_equal(s->n_eku, 2);
	assert_string_equal(s->eku[0], "clientAuth");
	assert_int_equal(s->ext->n_crl_urls, 1);
	assert_string_equal(s->ext->crl_urls[0], "http://crl.example.com/planca/1234.crl");
	assert_int_equal(s->ext->n_ocsp_urls, 1);
	assert_string_equal(s->ext->policies[0].oid, "1.2.3.4");
	assert_string_equal(s->ext->policies[0].user_notice, "a notice; with a semicolon");
	assert_true(s->ext->ocsp_no_check);
	assert_true(s->ext->tls_feature_status_request);

	/* A request that wants no CRL URL; another that empties keyUsage (an admin's only). */
	rq.has_crl_urls = true;
	rq.key_usage.names_count = 0;
	expect_refusal(&f, P11CA_E_PERMISSION, "empty keyUsage");
	f.req.admin = true;
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_int_equal(f.plan->spec.ext->n_crl_urls, 0);
	assert_int_equal(f.plan->spec.key_usage, 0);

	/* The profile gates the CA's URLs, never the request's. */
	cfg.profiles[0].add_crl_url = false;
	cfg.profiles[0].add_ocsp_url = false;
	rq.has_crl_urls = false;
	rq.has_ocsp_urls = true;
	rq.ocsp_urls.values_count = 1;
	snprintf(rq.ocsp_urls.values[0], 256, "https://ocsp.example.net/{ca_name}");
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_int_equal(f.plan->spec.ext->n_crl_urls, 0);
	assert_int_equal(f.plan->spec.ext->n_ocsp_urls, 1);
	assert_string_equal(f.plan->spec.ext->ocsp_urls[0], "https://ocsp.example.net/planca");

	/* The request layer overrides an optional bool the CA set. */
	rq.has_ocsp_no_check = true;
	rq.ocsp_no_check = false;
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_false(f.plan->spec.ext->ocsp_no_check);
	fx_done(&f);
}

static void test_ext_refusals(void **state)
{
	(void)state;
	struct fx f;
	fx_init(&f, "EC", NULL);
	f.req.subject = "CN=www.example.com";
	p11ca_v1_ExtensionSettings rq = {0};
	f.req.ext = &rq;
	rq.has_crl_urls = true;
	rq.crl_urls.values_count = 1;
	snprintf(rq.crl_urls.values[0], 256, "http://crl.example.com/{serial}.crl");
	expect_refusal(&f, P11CA_E_INVALID_ARG, "{ca_name}");
	assert_int_equal(engine_ext_check(&rq, &f.em), P11CA_E_INVALID_ARG);
	snprintf(rq.crl_urls.values[0], 256, "ftp://crl.example.com/x.crl");
	expect_refusal(&f, P11CA_E_INVALID_ARG, "ftp://");
	rq.has_crl_urls = false;
	rq.has_key_usage = true;
	rq.key_usage.names_count = 1;
	snprintf(rq.key_usage.names[0], 40, "signEverything");
	expect_refusal(&f, P11CA_E_INVALID_ARG, "signEverything");
	rq.has_key_usage = false;
	rq.has_extended_key_usage = true;
	rq.extended_key_usage.names_count = 1;
	snprintf(rq.extended_key_usage.names[0], 40, "nosuchPurpose");
	expect_refusal(&f, P11CA_E_INVALID_ARG, "nosuchPurpose");
	rq.has_extended_key_usage = false;
	rq.has_policies = true;
	rq.policies.policies_count = 1;
	snprintf(rq.policies.policies[0].oid, 64, "not.an.oid");
	expect_refusal(&f, P11CA_E_INVALID_ARG, "not.an.oid");
	rq.has_policies = false;
	rq.has_issuer_alt_names = true;
	rq.issuer_alt_names.values_count = 1;
	snprintf(rq.issuer_alt_names.values[0], 256, "DNS:bad..name");
	expect_refusal(&f, P11CA_E_INVALID_ARG, "bad..name");
	/* A good layer passes the check. */
	rq.issuer_alt_names.values_count = 0;
	assert_int_equal(engine_ext_check(&rq, &f.em), P11CA_OK);
	fx_done(&f);
}

/* The request layer of a caller who is not an admin only narrows the usages the profile
 * and the CA give (the review's exploit: an operator with profile webserver asking for
 * OCSPSigning, cRLSign, OCSPNoCheck, or no usage limit at all). */
static void test_request_narrows_only(void **state)
{
	(void)state;
	struct fx f;
	fx_init(&f, "EC", NULL);
	f.req.subject = "CN=www.example.com";
	p11ca_v1_ExtensionSettings rq = {0};
	f.req.ext = &rq;

	/* keyUsage: a part of the profile's is fine, more is not, none is not. */
	rq.has_key_usage = true;
	rq.key_usage.names_count = 1;
	snprintf(rq.key_usage.names[0], 40, "keyEncipherment");
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_int_equal(f.plan->spec.key_usage, X509v3_KU_KEY_ENCIPHERMENT);
	rq.key_usage.names_count = 2;
	snprintf(rq.key_usage.names[1], 40, "cRLSign");
	expect_refusal(&f, P11CA_E_PERMISSION, "keyUsage cRLSign is more than profile webserver");
	assert_non_null(strstr(f.em.text, "only an admin may widen"));
	assert_non_null(strstr(f.em.text, "define a profile"));
	rq.key_usage.names_count = 0;
	expect_refusal(&f, P11CA_E_PERMISSION, "empty keyUsage list");
	rq.has_key_usage = false;

	/* extendedKeyUsage: by OID, so a dotted serverAuth is the profile's own. */
	rq.has_extended_key_usage = true;
	rq.extended_key_usage.names_count = 1;
	snprintf(rq.extended_key_usage.names[0], 40, "1.3.6.1.5.5.7.3.1");
	assert_int_equal(fx_build(&f), P11CA_OK);
	static const char *const wide[] = {"OCSPSigning", "anyExtendedKeyUsage", "codeSigning",
					   "1.3.6.1.5.5.7.3.9"};
	for (size_t i = 0; i < 4; i++) {
		snprintf(rq.extended_key_usage.names[0], 40, "%s", wide[i]);
		expect_refusal(&f, P11CA_E_PERMISSION, wide[i]);
		assert_non_null(strstr(f.em.text, "only an admin may widen"));
	}
	rq.extended_key_usage.names_count = 0;
	expect_refusal(&f, P11CA_E_PERMISSION, "empty extendedKeyUsage list");
	rq.has_extended_key_usage = false;

	/* OCSPNoCheck: never added; taking it away narrows. */
	rq.has_ocsp_no_check = true;
	rq.ocsp_no_check = true;
	expect_refusal(&f, P11CA_E_PERMISSION, "OCSPNoCheck");
	f.req.profile = "ocsp";
	assert_int_equal(fx_build(&f), P11CA_OK);
	rq.ocsp_no_check = false;
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_false(f.plan->spec.ext->ocsp_no_check);
	f.req.profile = NULL;

	/* What the CA layer adds (admins set it) counts as given. */
	settings.has_issued = true;
	settings.issued.has_extended_key_usage = true;
	settings.issued.extended_key_usage.names_count = 2;
	snprintf(settings.issued.extended_key_usage.names[0], 40, "serverAuth");
	snprintf(settings.issued.extended_key_usage.names[1], 40, "clientAuth");
	rq.has_ocsp_no_check = false;
	rq.has_extended_key_usage = true;
	rq.extended_key_usage.names_count = 1;
	snprintf(rq.extended_key_usage.names[0], 40, "clientAuth");
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_int_equal(f.plan->spec.n_eku, 1);
	assert_string_equal(f.plan->spec.eku[0], "clientAuth");

	/* An admin may widen all of it. */
	f.req.admin = true;
	rq.extended_key_usage.names_count = 2;
	snprintf(rq.extended_key_usage.names[1], 40, "OCSPSigning");
	rq.has_key_usage = true;
	rq.key_usage.names_count = 1;
	snprintf(rq.key_usage.names[0], 40, "cRLSign");
	rq.has_ocsp_no_check = true;
	rq.ocsp_no_check = true;
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_int_equal(f.plan->spec.key_usage, X509v3_KU_CRL_SIGN);
	assert_int_equal(f.plan->spec.n_eku, 2);
	assert_true(f.plan->spec.ext->ocsp_no_check);

	/* Only key purposes are extendedKeyUsage names, even for an admin. */
	static const char *const not_kp[] = {"commonName", "sha256", "CN", "rsaEncryption"};
	for (size_t i = 0; i < 4; i++) {
		snprintf(rq.extended_key_usage.names[1], 40, "%s", not_kp[i]);
		expect_refusal(&f, P11CA_E_INVALID_ARG, "is not a key purpose");
	}
	memset(&settings.issued, 0, sizeof(settings.issued));
	settings.has_issued = false;
	fx_done(&f);
}

/* ca edit's audit record names the values a layer sets. */
static void test_ext_summary(void **state)
{
	(void)state;
	p11ca_v1_ExtensionSettings e = {0};
	char out[1025];
	engine_ext_summary(&e, out, sizeof(out));
	assert_string_equal(out, "");
	e.has_crl_urls = true;
	e.crl_urls.values_count = 2;
	snprintf(e.crl_urls.values[0], 256, "http://a.example/{ca_name}.crl");
	snprintf(e.crl_urls.values[1], 256, "ldap://b.example/x");
	e.has_ocsp_urls = true; /* present and empty: "no OCSP URL" */
	e.has_extended_key_usage = true;
	e.extended_key_usage.names_count = 1;
	e.extended_key_usage.critical = true;
	snprintf(e.extended_key_usage.names[0], 40, "OCSPSigning");
	e.has_ocsp_no_check = true;
	e.ocsp_no_check = true;
	engine_ext_summary(&e, out, sizeof(out));
	assert_string_equal(out, " crl_urls=[http://a.example/{ca_name}.crl ldap://b.example/x]"
				 " ocsp_urls=[] extended_key_usage=[OCSPSigning] critical"
				 " ocsp_no_check=true");
	/* Cut, never overrun. */
	char small[20];
	memset(small, 'x', sizeof(small));
	engine_ext_summary(&e, small, sizeof(small));
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

/* A certificate ends no later than any certificate of its chain, not only its issuer's. */
static void test_validity_within_chain(void **state)
{
	(void)state;
	struct fx f;
	struct engine_ca root;
	fx_init(&f, "EC", NULL);	/* the CA: 1000 days */
	ca_make(&root, "EC", 50, NULL); /* its issuer ends first */
	f.req.subject = "CN=www.example.com";
	X509 *chain[2] = {f.ca.cert, root.cert};
	assert_int_equal(engine_chain_end(chain, 2, INT64_MAX), root.not_after);
	assert_int_equal(engine_chain_end(chain, 2, NOW), NOW);
	assert_int_equal(engine_chain_end(chain, 0, NOW), NOW);

	f.req.expires_days = 100;
	enum p11ca_err err =
		engine_plan_build(&cfg, &f.ca, &settings, chain, 2, &f.req, NOW, &f.plan, &f.em);
	assert_int_equal(err, P11CA_E_INVALID_ARG);
	assert_non_null(strstr(f.em.text, "after the chain above CA planca"));
	assert_non_null(strstr(f.em.text, "ask for at most 50 days"));
	f.req.expires_days = 40;
	assert_int_equal(
		engine_plan_build(&cfg, &f.ca, &settings, chain, 2, &f.req, NOW, &f.plan, &f.em),
		P11CA_OK);
	assert_true(f.plan->spec.not_after <= root.not_after);
	/* With the CA alone, 100 days is fine. */
	f.req.expires_days = 100;
	assert_int_equal(fx_build(&f), P11CA_OK);
	engine_ca_clear(&root);
	fx_done(&f);
}

/* ---- names ---------------------------------------------------------------------------------- */

static void test_names(void **state)
{
	(void)state;
	struct fx f;
	fx_init(&f, "EC", NULL);
	/* No subject: profile subject + first SAN as CN; the CSR's SAN extension ignored. */
	f.sans[0] = "api.example.com";
	f.sans[1] = "IP:192.0.2.7";
	f.req.n_sans = 2;
	assert_int_equal(fx_build(&f), P11CA_OK);
	subject_is(&f, "CN=api.example.com,O=Plan Org,C=AT");
	assert_int_equal(sk_GENERAL_NAME_num(f.plan->sans), 2);
	san_is(&f, 0, GEN_DNS, "api.example.com");
	san_is(&f, 1, GEN_IPADD, NULL);
	/* no_san_to_cn: no CN then. */
	f.req.no_san_to_cn = true;
	assert_int_equal(fx_build(&f), P11CA_OK);
	subject_is(&f, "O=Plan Org,C=AT");
	f.req.no_san_to_cn = false;

	/* A given subject keeps its own attributes over the profile's; the CN is added to the
	 * SANs first, unless switched off. */
	f.req.subject = "/C=DE/CN=given.example.com";
	f.req.n_sans = 1;
	assert_int_equal(fx_build(&f), P11CA_OK);
	subject_is(&f, "CN=given.example.com,O=Plan Org,C=DE");
	assert_int_equal(sk_GENERAL_NAME_num(f.plan->sans), 2);
	san_is(&f, 0, GEN_DNS, "given.example.com");
	f.req.no_cn_in_san = true;
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_int_equal(sk_GENERAL_NAME_num(f.plan->sans), 1);
	f.req.no_cn_in_san = false;
	cfg.profiles[0].cn_in_san = false;
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_int_equal(sk_GENERAL_NAME_num(f.plan->sans), 1);
	/* A CN that is no host name stays out of the SANs. */
	cfg.profiles[0].cn_in_san = true;
	f.req.subject = "CN=Jane Doe";
	f.req.n_sans = 0;
	f.req.profile = "ocsp";
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_int_equal(sk_GENERAL_NAME_num(f.plan->sans), 0);
	assert_true(f.plan->spec.ext->ocsp_no_check);
	assert_int_equal(f.plan->spec.not_after, NOW + 3 * 86400);

	/* Nothing given and a profile without subject: the CSR's subject, never its SANs. */
	f.req.subject = NULL;
	assert_int_equal(fx_build(&f), P11CA_OK);
	subject_is(&f, "CN=csr.example.com");
	assert_int_equal(sk_GENERAL_NAME_num(f.plan->sans), 0);
	fx_done(&f);
}

static void test_name_refusals(void **state)
{
	(void)state;
	struct fx f;
	fx_init(&f, "EC", NULL);
	f.req.subject = "O=Nobody";
	cfg.profiles[0].subject[0] = '\0';
	expect_refusal(&f, P11CA_E_INVALID_ARG, "name nobody");
	f.req.subject = "CN=x,Q=bad";
	assert_int_equal(fx_build(&f), P11CA_E_INVALID_ARG);
	f.req.subject = "CN=www.example.com";
	const char *many[5] = {"a.example.com", "b.example.com", "c.example.com", "d.example.com",
			       "e.example.com"};
	memcpy(f.sans, many, sizeof(many));
	f.req.n_sans = 5;
	expect_refusal(&f, P11CA_E_INVALID_ARG, "max_sans");
	/* Four SANs plus the CN: over the maximum once the CN is added. */
	f.req.n_sans = 4;
	expect_refusal(&f, P11CA_E_INVALID_ARG, "CN added");
	f.req.n_sans = 1;
	f.sans[0] = "DNS:*.*.example.com";
	assert_int_equal(fx_build(&f), P11CA_E_INVALID_ARG);
	/* A CSR without subject, and nothing else naming anyone. */
	f.req.subject = NULL;
	f.req.n_sans = 0;
	f.req.csr_len = csr_make("EC", NULL, f.csr, sizeof(f.csr));
	expect_refusal(&f, P11CA_E_INVALID_ARG, "name nobody");
	fx_done(&f);
}

/* ---- CA, algorithm, validity, key ------------------------------------------------------------ */

static void test_ca_refusals(void **state)
{
	(void)state;
	struct fx f;
	fx_init(&f, "EC", NULL);
	f.req.subject = "CN=www.example.com";
	settings.enabled = false;
	expect_refusal(&f, P11CA_E_POLICY, "disabled");
	settings.enabled = true;
	f.ca.rec.state = STORE_CA_DISABLED;
	expect_refusal(&f, P11CA_E_POLICY, "disabled");
	f.ca.rec.state = STORE_CA_ACTIVE;
	f.req.profile = "nosuch";
	expect_refusal(&f, P11CA_E_STORAGE_NOT_FOUND, "nosuch");
	f.req.profile = NULL;
	/* The CA's default profile applies when the request names none. */
	snprintf(settings.default_profile, sizeof(settings.default_profile), "ocsp");
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_string_equal(f.plan->profile->name, "ocsp");
	settings.default_profile[0] = '\0';
	/* Outliving the CA: refused with the latest possible date. */
	f.req.expires_days = 2000;
	expect_refusal(&f, P11CA_E_INVALID_ARG, "latest possible date is");
	f.req.expires_days = 0;
	/* Expired CA. */
	f.ca.not_after = NOW - 1;
	expect_refusal(&f, P11CA_E_POLICY, "expired");
	fx_done(&f);
}

static void test_algorithms(void **state)
{
	(void)state;
	struct fx f;
	fx_init(&f, "EC", NULL);
	f.req.subject = "CN=www.example.com";
	settings.signature_algorithm = p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA384;
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_int_equal(f.plan->spec.alg, HSM_SIG_ECDSA_SHA384);
	f.req.alg = HSM_SIG_ECDSA_SHA512;
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_int_equal(f.plan->spec.alg, HSM_SIG_ECDSA_SHA512);
	f.req.alg = HSM_SIG_RSA_PSS_SHA256;
	expect_refusal(&f, P11CA_E_INVALID_ARG, "does not fit");
	f.req.alg = (enum hsm_sig_alg)42;
	expect_refusal(&f, P11CA_E_INVALID_ARG, "unknown");
	fx_done(&f);

	fx_init(&f, "ED25519", NULL);
	f.req.subject = "CN=www.example.com";
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_int_equal(f.plan->spec.alg, HSM_SIG_ED25519);
	f.req.alg = HSM_SIG_ECDSA_SHA256;
	expect_refusal(&f, P11CA_E_INVALID_ARG, "without a separate hash");
	fx_done(&f);
}

static void test_csr_policy(void **state)
{
	(void)state;
	struct fx f;
	fx_init(&f, "EC", NULL);
	f.req.subject = "CN=www.example.com";
	f.req.csr_len = csr_make("RSA", "weak.example.com", f.csr, sizeof(f.csr));
	expect_refusal(&f, P11CA_E_INVALID_ARG, "2048");
	f.req.csr_len = csr_make("EC", "ok.example.com", f.csr, sizeof(f.csr));
	cfg.csr_max_bytes = 256;
	expect_refusal(&f, P11CA_E_INVALID_ARG, "256");
	cfg.csr_max_bytes = 0;
	f.req.csr = NULL;
	expect_refusal(&f, P11CA_E_INVALID_ARG, "no certificate signing request");

	/* A key without a CSR (resign takes the stored certificate's) meets the same policy:
	 * a weak one from an import or from before the limits were raised is not reissued. */
	EVP_PKEY *weak = EVP_RSA_gen(1024), *good = EVP_EC_gen("P-256");
	X509_PUBKEY *weak_spki = NULL, *good_spki = NULL;
	assert_int_equal(X509_PUBKEY_set(&weak_spki, weak), 1);
	assert_int_equal(X509_PUBKEY_set(&good_spki, good), 1);
	f.req.public_key = weak;
	f.req.spki = weak_spki;
	expect_refusal(&f, P11CA_E_INVALID_ARG, "the certificate's RSA key has 1024 bits");
	f.req.public_key = good;
	f.req.spki = good_spki;
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_ptr_equal(f.plan->spec.public_key, good);
	X509_PUBKEY_free(weak_spki);
	X509_PUBKEY_free(good_spki);
	EVP_PKEY_free(weak);
	EVP_PKEY_free(good);
	fx_done(&f);
}

/* ---- nameConstraints ---------------------------------------------------------------------- */

static void test_constraints(void **state)
{
	(void)state;
	struct fx f;
	fx_init(&f, "EC", "critical,permitted;DNS:example.com,excluded;DNS:bad.example.com");
	f.req.subject = "CN=www.example.com";
	assert_int_equal(fx_build(&f), P11CA_OK);
	assert_null(f.plan->spec.serial); /* the stand-in serial is gone */
	f.req.subject = "CN=www.example.org";
	expect_refusal(&f, P11CA_E_POLICY, "www.example.org");
	f.req.subject = "CN=www.example.com";
	f.sans[0] = "x.bad.example.com";
	f.req.n_sans = 1;
	expect_refusal(&f, P11CA_E_POLICY, "x.bad.example.com");
	fx_done(&f);
}

/* ---- settings and watchers ------------------------------------------------------------------ */

static void test_settings_blob(void **state)
{
	(void)state;
	struct store_ca *rec = calloc(1, sizeof(*rec));
	p11ca_v1_CaSettings *in = calloc(1, sizeof(*in)), *out = calloc(1, sizeof(*out));
	struct p11ca_errmsg em = {0};
	assert_non_null(rec);
	snprintf(rec->name, sizeof(rec->name), "old");
	snprintf(rec->key_uri, sizeof(rec->key_uri), "pkcs11:object=k");
	rec->state = STORE_CA_ACTIVE;
	/* Empty (a CA from before settings): enabled as its state says. */
	assert_int_equal(engine_ca_settings_get(rec, out, &em), P11CA_OK);
	assert_true(out->enabled);
	assert_string_equal(out->key_uri, "pkcs11:object=k");
	rec->state = STORE_CA_DISABLED;
	assert_int_equal(engine_ca_settings_get(rec, out, &em), P11CA_OK);
	assert_false(out->enabled);

	in->enabled = true;
	snprintf(in->default_profile, sizeof(in->default_profile), "client");
	in->has_issued = true;
	in->issued.has_crl_urls = true;
	in->issued.crl_urls.values_count = 1;
	snprintf(in->issued.crl_urls.values[0], 256, "http://x/{ca_name}.crl");
	assert_int_equal(engine_ca_settings_set(rec, in, &em), P11CA_OK);
	assert_int_equal(engine_ca_settings_get(rec, out, &em), P11CA_OK);
	assert_true(out->enabled);
	assert_string_equal(out->default_profile, "client");
	assert_true(out->issued.has_crl_urls);
	assert_string_equal(out->issued.crl_urls.values[0], "http://x/{ca_name}.crl");

	rec->settings[0] ^= 0xff; /* a field tag that does not exist */
	rec->settings[1] = 0xff;
	assert_int_equal(engine_ca_settings_get(rec, out, &em), P11CA_E_STORAGE_CORRUPT);
	free(rec);
	free(in);
	free(out);
}

/* ---- what ca init, ca import and ca edit share ------------------------------------------- */

static void test_ca_helpers(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	struct engine_ca ca;
	ca_make(&ca, "EC", 10, NULL);

	/* The CA's algorithm: its setting when it fits the key, else the key's default. */
	assert_int_equal(engine_ca_sig_alg(&ca, &settings), HSM_SIG_ECDSA_SHA256);
	settings.signature_algorithm = p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA512;
	assert_int_equal(engine_ca_sig_alg(&ca, &settings), HSM_SIG_ECDSA_SHA512);
	settings.signature_algorithm =
		p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PSS_SHA384;
	assert_int_equal(engine_ca_sig_alg(&ca, &settings), HSM_SIG_ECDSA_SHA256);

	assert_int_equal(engine_ca_name_check("root-1.example_2", &em), P11CA_OK);
	assert_int_equal(engine_ca_name_check("", &em), P11CA_E_INVALID_ARG);
	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_ca_name_check("a b", &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "A-Z a-z 0-9"));

	p11ca_v1_CaSettings *st = calloc(1, sizeof(*st));
	p11ca_v1_ExtensionSettings *ext = calloc(1, sizeof(*ext));
	assert_non_null(st);
	assert_non_null(ext);
	assert_int_equal(engine_ca_profile_set(&cfg, "ocsp", st, &em), P11CA_OK);
	assert_string_equal(st->default_profile, "ocsp");
	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_ca_profile_set(&cfg, "nosuch", st, &em), P11CA_E_STORAGE_NOT_FOUND);
	assert_non_null(strstr(em.text, "p11ca profile list"));
	assert_string_equal(st->default_profile, "ocsp");
	ext->has_ocsp_urls = true;
	ext->ocsp_urls.values_count = 1;
	snprintf(ext->ocsp_urls.values[0], 256, "http://ocsp/{ca_serial}");
	assert_int_equal(engine_ca_issued_set(ext, st, &em), P11CA_OK);
	assert_true(st->has_issued);
	snprintf(ext->ocsp_urls.values[0], 256, "http://ocsp/{serial}");
	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_ca_issued_set(ext, st, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "{ca_serial}"));
	assert_string_equal(st->issued.ocsp_urls.values[0], "http://ocsp/{ca_serial}");

	char hex[ENGINE_CA_SERIAL_HEX];
	engine_ca_serial_hex(ca.cert, hex);
	assert_string_equal(hex, "1234");
	engine_ca_serial_hex(NULL, hex);
	assert_string_equal(hex, "");

	/* A record's certificate parses only when it is exactly one certificate. */
	struct store_ca *rec = calloc(1, sizeof(*rec));
	assert_non_null(rec);
	assert_null(engine_ca_rec_x509(rec));
	unsigned char *p = rec->cert_der;
	rec->cert_der_len = (size_t)i2d_X509(ca.cert, &p);
	X509 *x = engine_ca_rec_x509(rec);
	assert_non_null(x);
	assert_int_equal(X509_cmp(x, ca.cert), 0);
	X509_free(x);
	rec->cert_der_len++;
	assert_null(engine_ca_rec_x509(rec));

	assert_int_equal(engine_ca_rec_fill(rec, "fill", X509_get_subject_name(ca.cert),
					    "pkcs11:object=k", &em),
			 P11CA_OK);
	assert_int_equal(rec->state, STORE_CA_PENDING);
	assert_string_equal(rec->key_backend, "pkcs11");
	X509_NAME *big = X509_NAME_new();
	char ou[60];
	memset(ou, 'x', sizeof(ou) - 1);
	ou[sizeof(ou) - 1] = '\0';
	for (size_t i = 0; i * 60 < sizeof(rec->subject_der) + 60; i++)
		X509_NAME_add_entry_by_txt(big, "OU", MBSTRING_UTF8, (const unsigned char *)ou, -1,
					   -1, 0);
	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_ca_rec_fill(rec, "fill", big, "pkcs11:object=k", &em),
			 P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "shorter"));
	X509_NAME_free(big);
	free(rec);
	free(st);
	free(ext);
	engine_ca_clear(&ca);
}

/* A new CA's certificate has no key yet when its names are checked. */
static void test_constraints_without_key(void **state)
{
	(void)state;
	struct engine_ca parent;
	struct p11ca_errmsg em = {0};
	X509_NAME *subject = NULL;
	ca_make(&parent, "EC", 100, "critical,permitted;DNS:example.com");
	X509 *chain[1] = {parent.cert};
	struct x509_cert_spec spec = {
		.not_before = NOW,
		.not_after = NOW + 86400,
		.alg = HSM_SIG_ECDSA_SHA256,
		.issuer = parent.cert,
		.is_ca = true,
		.path_length = -1,
		.key_usage = X509v3_KU_KEY_CERT_SIGN | X509v3_KU_CRL_SIGN,
	};
	assert_int_equal(x509_name_parse("CN=ca.example.com", &subject, &em), P11CA_OK);
	spec.subject = subject;
	assert_int_equal(engine_constraints_check(&spec, chain, 1, &em), P11CA_OK);
	assert_null(spec.public_key); /* the throwaway key stays inside */
	assert_null(spec.serial);
	X509_NAME_free(subject);
	assert_int_equal(x509_name_parse("CN=ca.example.org", &subject, &em), P11CA_OK);
	spec.subject = subject;
	assert_int_equal(engine_constraints_check(&spec, chain, 1, &em), P11CA_E_POLICY);
	assert_non_null(strstr(em.text, "ca.example.org"));
	/* Nothing constrains a root's certificate. */
	assert_int_equal(engine_constraints_check(&spec, chain, 0, &em), P11CA_OK);
	X509_NAME_free(subject);
	engine_ca_clear(&parent);
}

static void test_watchers(void **state)
{
	(void)state;
	char addrs[4][255] = {"ops@example.com", "OPS@example.com", "dev@example.org", ""};
	struct store_watcher w[STORE_WATCHERS_MAX];
	size_t n = 0;
	struct p11ca_errmsg em = {0};
	assert_int_equal(engine_watchers_parse(addrs, 3, w, &n, &em), P11CA_OK);
	assert_int_equal(n, 2);
	assert_string_equal(w[1].email, "dev@example.org");
	snprintf(addrs[3], 255, "not an address");
	assert_int_equal(engine_watchers_parse(addrs, 4, w, &n, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "not an address"));
	/* A mail command would take it for an option (-X writes a log file anywhere). */
	snprintf(addrs[3], 255, "-X/var/www/html/s@evil.php");
	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_watchers_parse(addrs, 4, w, &n, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "starts with '-'"));
	char many[9][255];
	for (int i = 0; i < 9; i++)
		snprintf(many[i], 255, "w%d@example.com", i);
	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_watchers_parse(many, 9, w, &n, &em), P11CA_E_INVALID_ARG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_profile_layer, setup),
		cmocka_unit_test_setup(test_ca_and_request_layers, setup),
		cmocka_unit_test_setup(test_ext_refusals, setup),
		cmocka_unit_test_setup(test_request_narrows_only, setup),
		cmocka_unit_test_setup(test_validity_within_chain, setup),
		cmocka_unit_test(test_ext_summary),
		cmocka_unit_test_setup(test_names, setup),
		cmocka_unit_test_setup(test_name_refusals, setup),
		cmocka_unit_test_setup(test_ca_refusals, setup),
		cmocka_unit_test_setup(test_algorithms, setup),
		cmocka_unit_test_setup(test_csr_policy, setup),
		cmocka_unit_test_setup(test_constraints, setup),
		cmocka_unit_test_setup(test_settings_blob, setup),
		cmocka_unit_test_setup(test_watchers, setup),
		cmocka_unit_test_setup(test_ca_helpers, setup),
		cmocka_unit_test_setup(test_constraints_without_key, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
