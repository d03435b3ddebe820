/*
 * The throwaway PKI shared by the rpc/ TLS tests; see test_pki.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "rpc/test_pki.h"

static const struct test_pki_ext ca_exts[] = {
	{"basicConstraints", "critical,CA:TRUE"},
	{"keyUsage", "critical,keyCertSign,cRLSign"},
	{"subjectKeyIdentifier", "hash"},
};
static const struct test_pki_ext server_exts[] = {
	{"basicConstraints", "CA:FALSE"},
	{"keyUsage", "critical,digitalSignature"},
	{"extendedKeyUsage", "serverAuth"},
	{"subjectAltName", "DNS:localhost,IP:127.0.0.1"},
};
static const struct test_pki_ext client_exts[] = {
	{"basicConstraints", "CA:FALSE"},
	{"keyUsage", "critical,digitalSignature"},
	{"extendedKeyUsage", "clientAuth"},
};

const struct test_pki_profile test_pki_ca = TEST_PKI_PROFILE(ca_exts);
const struct test_pki_profile test_pki_server = TEST_PKI_PROFILE(server_exts);
const struct test_pki_profile test_pki_client = TEST_PKI_PROFILE(client_exts);

_Static_assert(sizeof(((struct test_pki *)0)->dir) < sizeof(((struct test_pki *)0)->paths[0]),
	       "a path buffer holds the directory name");

const char *test_pki_path(struct test_pki *pki, const char *name, const char *ext)
{
	char *p = pki->paths[pki->next_path++ % TEST_PKI_PATHS];
	/* Copied apart from the snprintf: both live in *pki, which -Wrestrict cannot tell
	 * apart. dir is shorter than a path buffer, so the copy always fits. */
	size_t len = strlen(pki->dir);
	memcpy(p, pki->dir, len);
	snprintf(p + len, sizeof(pki->paths[0]) - len, "/%s.%s", name, ext);
	return p;
}

static void write_pem(struct test_pki *pki, const char *name, X509 *x, EVP_PKEY *key)
{
	FILE *f = fopen(test_pki_path(pki, name, "crt"), "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	fclose(f);
	f = fopen(test_pki_path(pki, name, "key"), "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
}

/* Self-signed when issuer and issuer_key are NULL; the key goes to *key_out when key_out
 * is not NULL, else it is freed. */
static X509 *make_cert(struct test_pki *pki, const char *name, X509 *issuer, EVP_PKEY *issuer_key,
		       const struct test_pki_profile *profile, EVP_PKEY **key_out)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	assert_non_null(key);
	assert_non_null(x);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), pki->next_serial++), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -60));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
	X509_NAME *subj = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC,
						    (const unsigned char *)name, -1, -1, 0),
			 1);
	assert_int_equal(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subj), 1);
	assert_int_equal(X509_set_pubkey(x, key), 1);
	/* Issuer as context, so that an authorityKeyIdentifier extension finds its key. */
	X509V3_CTX v3;
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	for (size_t i = 0; i < profile->n_exts; i++) {
		const struct test_pki_ext *ext = &profile->exts[i];
		X509_EXTENSION *e = X509V3_EXT_nconf(NULL, &v3, ext->name, ext->value);
		assert_non_null(e);
		assert_int_equal(X509_add_ext(x, e, -1), 1);
		X509_EXTENSION_free(e);
	}
	assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
	write_pem(pki, name, x, key);
	if (key_out != NULL)
		*key_out = key;
	else
		EVP_PKEY_free(key);
	return x;
}

int test_pki_init(struct test_pki *pki, const char *prefix, long first_serial)
{
	static const char *const root_names[TEST_PKI_N_ROOTS] = {"ca", "other-ca"};
	const char *tmp = getenv("TMPDIR");
	pki->next_serial = first_serial;
	pki->next_path = 0;
	snprintf(pki->dir, sizeof(pki->dir), "%s/%s.XXXXXX", tmp ? tmp : "/tmp", prefix);
	if (mkdtemp(pki->dir) == NULL)
		return -1;
	for (size_t i = 0; i < TEST_PKI_N_ROOTS; i++)
		pki->roots[i] =
			make_cert(pki, root_names[i], NULL, NULL, &test_pki_ca, &pki->root_keys[i]);
	return 0;
}

X509 *test_pki_issue(struct test_pki *pki, const char *name, enum test_pki_root root,
		     const struct test_pki_profile *profile)
{
	assert_in_range(root, 0, TEST_PKI_N_ROOTS - 1);
	assert_non_null(pki->roots[root]);
	return make_cert(pki, name, pki->roots[root], pki->root_keys[root], profile, NULL);
}

void test_pki_done(struct test_pki *pki)
{
	if (pki == NULL)
		return;
	for (size_t i = 0; i < TEST_PKI_N_ROOTS; i++) {
		X509_free(pki->roots[i]);
		pki->roots[i] = NULL;
		EVP_PKEY_free(pki->root_keys[i]);
		pki->root_keys[i] = NULL;
	}
}
