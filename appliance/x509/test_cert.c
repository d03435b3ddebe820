/* Unit tests for appliance/x509/cert.c, assemble.c and pem.c: every key type and signature
 * algorithm through root → intermediate → leaf, checked with X509_verify, an X509_STORE and
 * `openssl verify`; the extensions; the signature BIT STRING; and the refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

#include <openssl/pem.h>

#include "appliance/x509/test_util.h"

static const uint8_t serial1[] = {0x01};
static const uint8_t serial2[] = {0x7f, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde};
static const uint8_t serial3[] = {0x55, 0x44, 0x33, 0x22, 0x11, 0x00, 0xff, 0xee,
				  0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88, 0x77, 0x66};

static int64_t now(void)
{
	return (int64_t)time(NULL);
}

/* A CA spec: basicConstraints CA, keyCertSign + cRLSign. */
static struct x509_cert_spec ca_spec(const X509_NAME *subject, EVP_PKEY *key, const X509 *issuer,
				     enum hsm_sig_alg alg, int path_length)
{
	struct x509_cert_spec s = {
		.subject = subject,
		.public_key = key,
		.serial = serial1,
		.serial_len = sizeof(serial1),
		.not_before = now() - 3600,
		.not_after = now() + 86400 * 365,
		.alg = alg,
		.issuer = issuer,
		.is_ca = true,
		.path_length = path_length,
		.key_usage =
			X509v3_KU_KEY_CERT_SIGN | X509v3_KU_CRL_SIGN | X509v3_KU_DIGITAL_SIGNATURE,
		.key_usage_critical = true,
	};
	return s;
}

static GENERAL_NAMES *sans_of(const char *const *texts, size_t n)
{
	GENERAL_NAMES *sans = sk_GENERAL_NAME_new_null();
	assert_non_null(sans);
	for (size_t i = 0; i < n; i++) {
		GENERAL_NAME *gn = NULL;
		assert_int_equal(x509_san_parse(texts[i], &gn, NULL), P11CA_OK);
		assert_true(sk_GENERAL_NAME_push(sans, gn) > 0);
	}
	return sans;
}

static void expect_store_verifies(X509 *root, X509 *inter, X509 *leaf)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	assert_true(store != NULL && ctx != NULL && untrusted != NULL);
	assert_int_equal(X509_STORE_add_cert(store, root), 1);
	assert_true(sk_X509_push(untrusted, inter) > 0);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, untrusted), 1);
	X509_VERIFY_PARAM_set_purpose(X509_STORE_CTX_get0_param(ctx), X509_PURPOSE_SSL_SERVER);
	if (X509_verify_cert(ctx) != 1)
		fail_msg("chain does not verify: %s",
			 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	sk_X509_free(untrusted);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
}

/* root (key `root_type`, signs with `alg`) → intermediate (same key type, `alg`) → leaf
 * (P-256 key, serverAuth, SANs), verified in-process and with `openssl verify`. */
static void chain_for(enum hsm_key_type root_type, enum hsm_sig_alg alg)
{
	EVP_PKEY *root_key = tu_key(root_type);
	EVP_PKEY *int_key = tu_key2(root_type);
	EVP_PKEY *leaf_key = tu_key(HSM_KEY_P256);
	X509_NAME *root_name = tu_name("/C=AT/O=p11ca test/CN=Root");
	X509_NAME *int_name = tu_name("/C=AT/O=p11ca test/CN=Intermediate");
	X509_NAME *leaf_name = tu_name("CN=leaf.example.com");
	static const char *const san_texts[] = {"DNS:leaf.example.com", "IP:192.0.2.10",
						"IP:2001:db8::10"};
	GENERAL_NAMES *sans = sans_of(san_texts, 3);
	static const char *const eku[] = {"serverAuth", "1.3.6.1.5.5.7.3.2"};

	struct x509_cert_spec rs = ca_spec(root_name, root_key, NULL, alg, -1);
	uint8_t *root_der = NULL, *int_der = NULL, *leaf_der = NULL;
	size_t root_len = 0, int_len = 0, leaf_len = 0;
	X509 *root = tu_issue(&rs, root_key, &root_der, &root_len);
	struct x509_cert_spec is = ca_spec(int_name, int_key, root, alg, 0);
	is.serial = serial2;
	is.serial_len = sizeof(serial2);
	X509 *inter = tu_issue(&is, root_key, &int_der, &int_len);
	struct x509_cert_spec ls = {
		.subject = leaf_name,
		.public_key = leaf_key,
		.serial = serial3,
		.serial_len = sizeof(serial3),
		.not_before = now() - 60,
		.not_after = now() + 86400,
		.alg = alg,
		.issuer = inter,
		.key_usage = X509v3_KU_DIGITAL_SIGNATURE,
		.key_usage_critical = true,
		.eku = eku,
		.n_eku = 2,
		.sans = sans,
	};
	X509 *leaf = tu_issue(&ls, int_key, &leaf_der, &leaf_len);

	assert_int_equal(X509_verify(root, root_key), 1);
	assert_int_equal(X509_verify(inter, root_key), 1);
	assert_int_equal(X509_verify(leaf, int_key), 1);
	assert_int_equal(X509_check_issued(inter, leaf), X509_V_OK);
	expect_store_verifies(root, inter, leaf);

	/* The identifier OpenSSL reads back is the one the signer will be asked for. */
	const X509_ALGOR *outer = NULL;
	X509_get0_signature(NULL, &outer, leaf);
	assert_int_equal(X509_ALGOR_cmp(outer, X509_get0_tbs_sigalg(leaf)), 0);

	const char *dir = tu_tmpdir();
	char root_pem[512], int_pem[512], leaf_pem[512], log[512];
	snprintf(root_pem, sizeof(root_pem), "%s", tu_path(dir, "root.pem"));
	snprintf(int_pem, sizeof(int_pem), "%s", tu_path(dir, "int.pem"));
	snprintf(leaf_pem, sizeof(leaf_pem), "%s", tu_path(dir, "leaf.pem"));
	snprintf(log, sizeof(log), "%s", tu_path(dir, "verify.log"));
	tu_write_pem(root_pem, "CERTIFICATE", root_der, root_len);
	tu_write_pem(int_pem, "CERTIFICATE", int_der, int_len);
	tu_write_pem(leaf_pem, "CERTIFICATE", leaf_der, leaf_len);
	const char *argv[] = {"openssl", "verify",   "-CAfile",	  root_pem, "-untrusted",
			      int_pem,	 "-purpose", "sslserver", leaf_pem, NULL};
	if (tu_run(argv, log) != 0 || !tu_file_has(log, "leaf.pem: OK"))
		fail_msg("openssl verify failed for %s with %s (log %s)",
			 hsm_key_type_name(root_type), hsm_sig_alg_name(alg), log);
	/* The control: without the intermediate the same command must fail. */
	const char *argv_bad[] = {"openssl", "verify", "-CAfile", root_pem, leaf_pem, NULL};
	assert_int_not_equal(tu_run(argv_bad, log), 0);

	X509_free(root);
	X509_free(inter);
	X509_free(leaf);
	OPENSSL_free(root_der);
	OPENSSL_free(int_der);
	OPENSSL_free(leaf_der);
	GENERAL_NAMES_free(sans);
	X509_NAME_free(root_name);
	X509_NAME_free(int_name);
	X509_NAME_free(leaf_name);
}

static void test_chain_rsa(void **state)
{
	(void)state;
	for (int a = HSM_SIG_RSA_PKCS1_SHA256; a <= HSM_SIG_RSA_PSS_SHA512; a++)
		chain_for(HSM_KEY_RSA2048, (enum hsm_sig_alg)a);
	chain_for(HSM_KEY_RSA3072, HSM_SIG_RSA_PKCS1_SHA384);
	chain_for(HSM_KEY_RSA3072, HSM_SIG_RSA_PSS_SHA256);
}

static void test_chain_ecdsa(void **state)
{
	(void)state;
	chain_for(HSM_KEY_P256, HSM_SIG_ECDSA_SHA256);
	chain_for(HSM_KEY_P384, HSM_SIG_ECDSA_SHA384);
	chain_for(HSM_KEY_P521, HSM_SIG_ECDSA_SHA512);
	chain_for(HSM_KEY_P256, HSM_SIG_ECDSA_SHA512); /* any hash on any curve */
	chain_for(HSM_KEY_P521, HSM_SIG_ECDSA_SHA256);
}

static void test_chain_ed25519(void **state)
{
	(void)state;
	chain_for(HSM_KEY_ED25519, HSM_SIG_ED25519);
}

static void test_extensions(void **state)
{
	(void)state;
	EVP_PKEY *ca_key = tu_key(HSM_KEY_P256);
	X509_NAME *ca_name = tu_name("CN=CA,C=AT");
	struct x509_cert_spec rs = ca_spec(ca_name, ca_key, NULL, HSM_SIG_ECDSA_SHA256, 2);
	X509 *ca = tu_issue(&rs, ca_key, NULL, NULL);

	assert_int_equal(X509_get_version(ca), X509_VERSION_3);
	assert_int_equal(X509_check_ca(ca), 1);
	assert_int_equal(X509_get_pathlen(ca), 2);
	assert_int_equal(X509_get_key_usage(ca), X509v3_KU_KEY_CERT_SIGN | X509v3_KU_CRL_SIGN |
							 X509v3_KU_DIGITAL_SIGNATURE);
	int crit = -1;
	BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(ca, NID_basic_constraints, &crit, NULL);
	assert_non_null(bc);
	assert_int_equal(crit, 1);
	BASIC_CONSTRAINTS_free(bc);
	/* Self-signed: AKI = own SKI = SHA-1 of the key bits; issuer = subject. */
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca);
	const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(ca);
	assert_true(ski != NULL && aki != NULL);
	assert_int_equal(ASN1_OCTET_STRING_cmp(ski, aki), 0);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	assert_int_equal(X509_pubkey_digest(ca, EVP_sha1(), md, &md_len), 1);
	assert_int_equal(ASN1_STRING_length(ski), (int)md_len);
	assert_memory_equal(ASN1_STRING_get0_data(ski), md, md_len);
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(ca), X509_get_subject_name(ca)), 0);
	assert_null(X509_get_ext_d2i(ca, NID_ext_key_usage, NULL, NULL));
	assert_null(X509_get_ext_d2i(ca, NID_subject_alt_name, NULL, NULL));

	/* A leaf with an empty subject: SAN critical; CA:FALSE; EKU not critical; no KU. */
	EVP_PKEY *leaf_key = tu_key(HSM_KEY_ED25519);
	X509_NAME *empty = X509_NAME_new();
	static const char *const san_texts[] = {"email:a@example.com", "URI:https://example.com/"};
	GENERAL_NAMES *sans = sans_of(san_texts, 2);
	static const char *const eku[] = {"emailProtection"};
	struct x509_cert_spec ls = {
		.subject = empty,
		.public_key = leaf_key,
		.serial = serial2,
		.serial_len = sizeof(serial2),
		.not_before = now(),
		.not_after = now() + 60,
		.alg = HSM_SIG_ECDSA_SHA256,
		.issuer = ca,
		.path_length = 5, /* ignored: not a CA */
		.eku = eku,
		.n_eku = 1,
		.sans = sans,
	};
	X509 *leaf = tu_issue(&ls, ca_key, NULL, NULL);
	assert_int_equal(X509_check_ca(leaf), 0);
	assert_int_equal(X509_get_pathlen(leaf), -1);
	GENERAL_NAMES *got = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
	assert_non_null(got);
	assert_int_equal(crit, 1);
	assert_int_equal(sk_GENERAL_NAME_num(got), 2);
	GENERAL_NAMES_free(got);
	EXTENDED_KEY_USAGE *e = X509_get_ext_d2i(leaf, NID_ext_key_usage, &crit, NULL);
	assert_non_null(e);
	assert_int_equal(crit, 0);
	assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(e, 0)), NID_email_protect);
	EXTENDED_KEY_USAGE_free(e);
	assert_null(X509_get_ext_d2i(leaf, NID_key_usage, NULL, NULL));
	assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(leaf), ski), 0);
	assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(leaf)), 0);
	assert_int_equal(X509_verify(leaf, ca_key), 1);

	/* Serial: as given, leading zero bytes dropped. */
	static const uint8_t padded[] = {0x00, 0x00, 0x80, 0x01};
	ls.serial = padded;
	ls.serial_len = sizeof(padded);
	X509 *leaf2 = tu_issue(&ls, ca_key, NULL, NULL);
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf2), NULL);
	assert_non_null(bn);
	assert_int_equal(BN_get_word(bn), 0x8001);
	BN_free(bn);

	X509_free(leaf2);
	X509_free(leaf);
	X509_free(ca);
	GENERAL_NAMES_free(sans);
	X509_NAME_free(empty);
	X509_NAME_free(ca_name);
}

/* RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
static void test_validity_encoding(void **state)
{
	(void)state;
	EVP_PKEY *key = tu_key(HSM_KEY_P256);
	X509_NAME *name = tu_name("CN=dates");
	struct x509_cert_spec s = ca_spec(name, key, NULL, HSM_SIG_ECDSA_SHA256, -1);
	s.not_before = 2524607999LL; /* 2049-12-31T23:59:59Z */
	s.not_after = 2524608000LL;  /* 2050-01-01T00:00:00Z */
	X509 *x = tu_issue(&s, key, NULL, NULL);
	assert_int_equal(ASN1_STRING_type(X509_get0_notBefore(x)), V_ASN1_UTCTIME);
	assert_int_equal(ASN1_STRING_type(X509_get0_notAfter(x)), V_ASN1_GENERALIZEDTIME);
	assert_string_equal((const char *)ASN1_STRING_get0_data(X509_get0_notBefore(x)),
			    "491231235959Z");
	assert_string_equal((const char *)ASN1_STRING_get0_data(X509_get0_notAfter(x)),
			    "20500101000000Z");
	X509_free(x);
	X509_NAME_free(name);
}

/* The signature BIT STRING keeps trailing zero bits: a made-up signature ending in 0x00
 * stays byte for byte, with 0 unused bits. */
static void test_signature_bits_not_trimmed(void **state)
{
	(void)state;
	EVP_PKEY *key = tu_key(HSM_KEY_P256);
	X509_NAME *name = tu_name("CN=bits");
	struct x509_cert_spec s = ca_spec(name, key, NULL, HSM_SIG_ECDSA_SHA256, -1);
	X509 *tbs = NULL;
	uint8_t *tbs_der = NULL, *der = NULL;
	size_t tbs_len = 0, der_len = 0;
	assert_int_equal(x509_cert_tbs(&s, &tbs, &tbs_der, &tbs_len, NULL), P11CA_OK);
	static const uint8_t sig[] = {0x30, 0x80, 0x00, 0x00};
	assert_int_equal(x509_cert_finish(tbs, sig, sizeof(sig), &der, &der_len, NULL), P11CA_OK);
	static const uint8_t tail[] = {0x03, 0x05, 0x00, 0x30, 0x80, 0x00, 0x00};
	assert_memory_equal(der + der_len - sizeof(tail), tail, sizeof(tail));
	/* The TBS inside is exactly the DER the signer was given. */
	assert_memory_equal(der + (der[1] & 0x80 ? 2 + (der[1] & 0x7f) : 2), tbs_der, tbs_len);
	OPENSSL_free(der);
	OPENSSL_free(tbs_der);
	X509_free(tbs);
	X509_NAME_free(name);
}

/* Real signatures that end in a zero byte (1 in 256) must still verify. ECDSA signatures
 * are randomised, so one TBS signed again and again gives fresh signatures. */
static void test_signature_trailing_zero_verifies(void **state)
{
	(void)state;
	EVP_PKEY *key = tu_key(HSM_KEY_P256);
	X509_NAME *name = tu_name("CN=zero");
	struct x509_cert_spec s = ca_spec(name, key, NULL, HSM_SIG_ECDSA_SHA256, -1);
	X509 *tbs = NULL;
	uint8_t *tbs_der = NULL;
	size_t tbs_len = 0;
	assert_int_equal(x509_cert_tbs(&s, &tbs, &tbs_der, &tbs_len, NULL), P11CA_OK);
	int found = 0;
	for (int i = 0; i < 20000 && found < 3; i++) {
		uint8_t *der = NULL, sig[HSM_SIG_MAX];
		size_t der_len = 0, sig_len = 0;
		tu_sign(key, s.alg, tbs_der, tbs_len, sig, &sig_len);
		if (sig[sig_len - 1] != 0)
			continue;
		found++;
		assert_int_equal(x509_cert_finish(tbs, sig, sig_len, &der, &der_len, NULL),
				 P11CA_OK);
		const unsigned char *p = der;
		X509 *x = d2i_X509(NULL, &p, (long)der_len);
		assert_non_null(x);
		const ASN1_BIT_STRING *bits = NULL;
		X509_get0_signature(&bits, NULL, x);
		assert_int_equal(ASN1_STRING_length(bits), (int)sig_len);
		assert_int_equal(X509_verify(x, key), 1);
		X509_free(x);
		OPENSSL_free(der);
	}
	assert_int_equal(found, 3);
	OPENSSL_free(tbs_der);
	X509_free(tbs);
	X509_NAME_free(name);
}

static void expect_tbs_refused(const struct x509_cert_spec *s, const char *needle)
{
	X509 *tbs = (X509 *)1;
	uint8_t *der = (uint8_t *)1;
	size_t len = 1;
	struct p11ca_errmsg em = {0};
	assert_int_equal(x509_cert_tbs(s, &tbs, &der, &len, &em), P11CA_E_INVALID_ARG);
	assert_null(tbs);
	assert_null(der);
	assert_int_equal(len, 0);
	if (strstr(em.text, needle) == NULL)
		fail_msg("message '%s' lacks '%s'", em.text, needle);
}

static void test_tbs_refusals(void **state)
{
	(void)state;
	EVP_PKEY *key = tu_key(HSM_KEY_P256);
	X509_NAME *name = tu_name("CN=refused");
	X509_NAME *empty = X509_NAME_new();
	struct x509_cert_spec good = ca_spec(name, key, NULL, HSM_SIG_ECDSA_SHA256, -1);
	struct x509_cert_spec s;

	s = good, s.alg = HSM_SIG_RSA_PKCS1_SHA256;
	expect_tbs_refused(&s, "cannot be used with the issuer's p256 key");
	s = good, s.alg = HSM_SIG_UNSPECIFIED;
	expect_tbs_refused(&s, "cannot be used");
	s = good, s.not_after = s.not_before;
	expect_tbs_refused(&s, "later than notBefore");
	static const uint8_t zero[] = {0x00, 0x00};
	s = good, s.serial = zero, s.serial_len = sizeof(zero);
	expect_tbs_refused(&s, "positive");
	static const uint8_t big20[20] = {0x80};
	s = good, s.serial = big20, s.serial_len = sizeof(big20);
	expect_tbs_refused(&s, "at most 20");
	static const uint8_t ok20[21] = {0x00, 0x7f};
	s = good, s.serial = ok20, s.serial_len = sizeof(ok20);
	X509 *x = tu_issue(&s, key, NULL, NULL);
	X509_free(x);
	s = good, s.serial_len = 0;
	expect_tbs_refused(&s, "serial number of 0 bytes");
	s = good, s.is_ca = false;
	expect_tbs_refused(&s, "keyCertSign requires a CA");
	s = good, s.key_usage = 0x10000;
	expect_tbs_refused(&s, "no X509v3_KU_");
	static const char *const bad_eku[] = {"serverAuth", "no such purpose"};
	s = good, s.eku = bad_eku, s.n_eku = 2;
	expect_tbs_refused(&s, "'no such purpose'");
	s = good, s.eku = NULL, s.n_eku = 1;
	expect_tbs_refused(&s, "extendedKeyUsage");
	s = good, s.subject = empty;
	expect_tbs_refused(&s, "subject or a subjectAltName");
	s = good, s.public_key = NULL;
	expect_tbs_refused(&s, "public key");
	s = good, s.not_after = 253402300800LL; /* year 10000 */
	expect_tbs_refused(&s, "years 0..9999");
	expect_tbs_refused(NULL, "spec");

	X509_NAME_free(empty);
	X509_NAME_free(name);
}

/* spec->spki (the CSR's key as received) gives the very TBS that re-encoding public_key
 * gives, for every key type. */
static void test_spki_copied(void **state)
{
	(void)state;
	const enum hsm_key_type types[] = {HSM_KEY_RSA2048, HSM_KEY_P256, HSM_KEY_ED25519};
	X509_NAME *name = tu_name("CN=spki");
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		EVP_PKEY *key = tu_key(types[i]);
		X509_PUBKEY *spki = NULL;
		assert_int_equal(X509_PUBKEY_set(&spki, key), 1);
		struct x509_cert_spec s =
			ca_spec(name, key, NULL, hsm_sig_alg_default(types[i]), -1);
		X509 *a = NULL, *b = NULL;
		uint8_t *da = NULL, *db = NULL;
		size_t la = 0, lb = 0;
		assert_int_equal(x509_cert_tbs(&s, &a, &da, &la, NULL), P11CA_OK);
		s.spki = spki;
		assert_int_equal(x509_cert_tbs(&s, &b, &db, &lb, NULL), P11CA_OK);
		assert_int_equal(la, lb);
		assert_memory_equal(da, db, la);
		X509_free(a);
		X509_free(b);
		OPENSSL_free(da);
		OPENSSL_free(db);
		X509_PUBKEY_free(spki);
	}
	X509_NAME_free(name);
}

/* A subjectPublicKey BIT STRING with unused bits cannot be copied as received: refused
 * rather than silently changed. */
static void test_spki_unused_bits_refused(void **state)
{
	(void)state;
	EVP_PKEY *key = tu_key(HSM_KEY_ED25519);
	/* SEQUENCE { SEQUENCE { id-Ed25519 }, BIT STRING { unused, 32 octets } }: say 1 unused
	 * bit, with the last bit clear as DER wants. */
	uint8_t der[44];
	unsigned char *w = der;
	assert_int_equal(i2d_PUBKEY(key, NULL), (int)sizeof(der));
	assert_int_equal(i2d_PUBKEY(key, &w), (int)sizeof(der));
	assert_int_equal(der[11], 0);
	der[11] = 1;
	der[sizeof(der) - 1] &= 0xfe;
	const unsigned char *p = der;
	X509_PUBKEY *spki = d2i_X509_PUBKEY(NULL, &p, sizeof(der));
	assert_non_null(spki);
	X509_NAME *name = tu_name("CN=bits");
	struct x509_cert_spec s = ca_spec(name, key, NULL, HSM_SIG_ED25519, -1);
	s.spki = spki;
	expect_tbs_refused(&s, "unused bits");
	X509_NAME_free(name);
	X509_PUBKEY_free(spki);
}

static void test_finish_refusals(void **state)
{
	(void)state;
	EVP_PKEY *key = tu_key(HSM_KEY_P256);
	X509_NAME *name = tu_name("CN=finish");
	struct x509_cert_spec s = ca_spec(name, key, NULL, HSM_SIG_ECDSA_SHA256, -1);
	X509 *tbs = NULL;
	uint8_t *tbs_der = NULL, *der = NULL, sig[HSM_SIG_MAX + 1] = {1};
	size_t tbs_len = 0, der_len = 0;
	assert_int_equal(x509_cert_tbs(&s, &tbs, &tbs_der, &tbs_len, NULL), P11CA_OK);
	struct p11ca_errmsg em = {0};
	assert_int_equal(x509_cert_finish(tbs, sig, 0, &der, &der_len, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "signature of 0 bytes"));
	assert_int_equal(x509_cert_finish(tbs, NULL, 64, &der, &der_len, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(x509_cert_finish(tbs, sig, sizeof(sig), &der, &der_len, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(x509_cert_finish(NULL, sig, 64, &der, &der_len, NULL),
			 P11CA_E_INVALID_ARG);
	assert_null(der);
	/* A TBS whose identifier was swapped for one p11ca does not sign with. */
	p11ca_errmsg_clear(&em);
	X509_ALGOR_set0((X509_ALGOR *)X509_get0_tbs_sigalg(tbs), OBJ_nid2obj(NID_ecdsa_with_SHA1),
			V_ASN1_UNDEF, NULL);
	assert_int_equal(x509_cert_finish(tbs, sig, 64, &der, &der_len, &em), P11CA_E_INVALID_ARG);
	assert_null(der);
	assert_non_null(strstr(em.text, "ecdsa-with-SHA1"));
	OPENSSL_free(tbs_der);
	X509_free(tbs);
	X509_NAME_free(name);
}

static void test_pem_append(void **state)
{
	(void)state;
	EVP_PKEY *key = tu_key(HSM_KEY_P256);
	X509_NAME *name = tu_name("CN=pem");
	struct x509_cert_spec s = ca_spec(name, key, NULL, HSM_SIG_ECDSA_SHA256, -1);
	uint8_t *der = NULL;
	size_t der_len = 0;
	X509 *x = tu_issue(&s, key, &der, &der_len);

	uint8_t buf[4096];
	size_t len = 0;
	assert_int_equal(x509_pem_append("CERTIFICATE", der, der_len, buf, sizeof(buf), &len, NULL),
			 P11CA_OK);
	size_t one = len;
	assert_int_equal(x509_pem_append("CERTIFICATE", der, der_len, buf, sizeof(buf), &len, NULL),
			 P11CA_OK);
	assert_int_equal(len, 2 * one);
	assert_memory_equal(buf, "-----BEGIN CERTIFICATE-----\n", 28);
	BIO *bio = BIO_new_mem_buf(buf, (int)len);
	for (int i = 0; i < 2; i++) {
		X509 *back = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		assert_non_null(back);
		assert_int_equal(X509_cmp(back, x), 0);
		X509_free(back);
	}
	BIO_free(bio);

	/* Does not fit: nothing written, *len unchanged. */
	struct p11ca_errmsg em = {0};
	size_t small = 10;
	assert_int_equal(x509_pem_append("CERTIFICATE", der, der_len, buf, one + 9, &small, &em),
			 P11CA_E_PROTO_TOO_LARGE);
	assert_int_equal(small, 10);
	assert_non_null(strstr(em.text, "does not fit"));
	size_t l = 0;
	assert_int_equal(x509_pem_append("CERTIFICATE", der, der_len, buf, one, &l, NULL),
			 P11CA_OK);
	/* Bad DER, bad labels, bad buffer. */
	l = 0;
	assert_int_equal(
		x509_pem_append("CERTIFICATE", der, der_len - 1, buf, sizeof(buf), &l, NULL),
		P11CA_E_INVALID_ARG);
	static const uint8_t garbage[] = {0x04, 0x02, 0x00, 0x00};
	assert_int_equal(
		x509_pem_append("X509 CRL", garbage, sizeof(garbage), buf, sizeof(buf), &l, NULL),
		P11CA_E_INVALID_ARG);
	assert_int_equal(x509_pem_append("certificate", der, der_len, buf, sizeof(buf), &l, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(x509_pem_append("A-----B\n", der, der_len, buf, sizeof(buf), &l, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(x509_pem_append("", der, der_len, buf, sizeof(buf), &l, NULL),
			 P11CA_E_INVALID_ARG);
	l = sizeof(buf) + 1;
	assert_int_equal(x509_pem_append("CERTIFICATE", der, der_len, buf, sizeof(buf), &l, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(l, sizeof(buf) + 1);

	X509_free(x);
	OPENSSL_free(der);
	X509_NAME_free(name);
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
		cmocka_unit_test(test_chain_rsa),
		cmocka_unit_test(test_chain_ecdsa),
		cmocka_unit_test(test_chain_ed25519),
		cmocka_unit_test(test_extensions),
		cmocka_unit_test(test_validity_encoding),
		cmocka_unit_test(test_signature_bits_not_trimmed),
		cmocka_unit_test(test_signature_trailing_zero_verifies),
		cmocka_unit_test(test_tbs_refusals),
		cmocka_unit_test(test_spki_copied),
		cmocka_unit_test(test_spki_unused_bits_refused),
		cmocka_unit_test(test_finish_refusals),
		cmocka_unit_test(test_pem_append),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
