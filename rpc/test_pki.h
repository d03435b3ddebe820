/*
 * A throwaway PKI for the TLS tests in rpc/ and rpc/cli/ (test_tls, test_server,
 * test_cli_e2e): fresh P-256 keys and certificates made with OpenSSL's API, written as PEM
 * into a temporary directory. Test-only: linked through each test's _SRCS, never into a
 * library. Failures abort the test (cmocka asserts), so callers need not check results.
 */
#ifndef P11CA_RPC_TEST_PKI_H
#define P11CA_RPC_TEST_PKI_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* One extension in `openssl x509 -extfile` text form, e.g. {"keyUsage", "critical,..."}. */
struct test_pki_ext {
	const char *name, *value;
};

#define TEST_PKI_N(a) (sizeof(a) / sizeof((a)[0]))

/* The extensions of one kind of certificate. */
struct test_pki_profile {
	const struct test_pki_ext *exts;
	size_t n_exts;
};
#define TEST_PKI_PROFILE(array)                                                                    \
	{                                                                                          \
		.exts = (array), .n_exts = TEST_PKI_N(array)                                       \
	}

/* The kinds every test needs: a CA, a TLS server for localhost / 127.0.0.1, a TLS client. */
extern const struct test_pki_profile test_pki_ca, test_pki_server, test_pki_client;

/* test_pki_path reuses its buffers after this many calls: enough for one
 * call that takes the CA, certificate and key paths of two parties. */
#define TEST_PKI_PATHS 16

/* Which of the two roots test_pki_init makes signs a certificate. */
enum test_pki_root {
	TEST_PKI_CA,	   /* "ca": the root the servers and clients under test trust */
	TEST_PKI_OTHER_CA, /* "other-ca": a foreign root nobody trusts */
	TEST_PKI_N_ROOTS,
};

struct test_pki {
	char dir[512];
	long next_serial;
	char paths[TEST_PKI_PATHS][1024];
	unsigned next_path;
	X509 *roots[TEST_PKI_N_ROOTS]; /* held until test_pki_done */
	EVP_PKEY *root_keys[TEST_PKI_N_ROOTS];
};

/* Create "$TMPDIR/<prefix>.XXXXXX" (or under /tmp) as pki->dir and in it the self-signed
 * roots ca.crt/.key and other-ca.crt/.key, with serials first_serial and first_serial + 1;
 * later certificates count on from there. Returns 0, or -1 when the directory cannot be
 * made (the shape a cmocka setup function returns). */
int test_pki_init(struct test_pki *pki, const char *prefix, long first_serial);

/* "<dir>/<name>.<ext>", valid for the next TEST_PKI_PATHS - 1 calls. */
const char *test_pki_path(struct test_pki *pki, const char *name, const char *ext);

/* A certificate with CN=name for a fresh P-256 key, valid from a minute ago for an hour,
 * signed by `root`, with the extensions of `profile`; writes <name>.crt and <name>.key
 * into pki->dir. Returns the certificate; the caller frees it. */
X509 *test_pki_issue(struct test_pki *pki, const char *name, enum test_pki_root root,
		     const struct test_pki_profile *profile);

/* Free the roots held in memory; the files and the directory stay for the test to use
 * and remove. NULL-safe, and safe to call twice. */
void test_pki_done(struct test_pki *pki);

#endif
