/*
 * Helpers for appliance/x509/'s tests: software keys, a software stand-in for the signer,
 * issuing through the public API, and running the openssl CLI. Failures abort the test
 * (cmocka asserts), so callers need not check results.
 */
#ifndef P11CA_APPLIANCE_X509_TEST_UTIL_H
#define P11CA_APPLIANCE_X509_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "appliance/x509/x509.h"

/* A key of `type`, generated once per process and cached (borrowed: do not free). */
EVP_PKEY *tu_key(enum hsm_key_type type);
/* A second, different key of `type`, cached the same way. */
EVP_PKEY *tu_key2(enum hsm_key_type type);
/* A fresh key by OpenSSL name ("EC", "P-256" / "RSA", NULL with bits), owned by the caller. */
EVP_PKEY *tu_keygen(const char *alg, const char *curve, unsigned rsa_bits, unsigned rsa_e);
void tu_keys_free(void);

/* What the signer does: RSA PKCS#1 or PSS (salt = digest length, MGF1 with the same hash)
 * with the hash, ECDSA as DER, Ed25519 raw. `sig` holds HSM_SIG_MAX bytes. */
void tu_sign(EVP_PKEY *key, enum hsm_sig_alg alg, const uint8_t *msg, size_t len, uint8_t *sig,
	     size_t *sig_len);

/* x509_cert_tbs + tu_sign with `issuer_key` + x509_cert_finish; returns the parsed
 * certificate and, if der is not NULL, its DER (OPENSSL_free). */
X509 *tu_issue(const struct x509_cert_spec *spec, EVP_PKEY *issuer_key, uint8_t **der,
	       size_t *der_len);
/* The same for a CRL. */
X509_CRL *tu_issue_crl(const struct x509_crl_spec *spec, EVP_PKEY *issuer_key, uint8_t **der,
		       size_t *der_len);

X509_NAME *tu_name(const char *text);

/* A fresh directory under $TMPDIR (or /tmp); the path is static until the next call. */
const char *tu_tmpdir(void);
/* dir/name, in a static buffer that the next call reuses. */
const char *tu_path(const char *dir, const char *name);
void tu_write(const char *path, const void *data, size_t len);
void tu_write_pem(const char *path, const char *label, const uint8_t *der, size_t len);

/* Run argv (NULL-terminated) with stdout and stderr to `log` (NULL: inherited); returns
 * its exit status, or -1 when it did not exit normally. */
int tu_run(const char *const *argv, const char *log);
/* Whether the file at `path` contains `needle`. */
int tu_file_has(const char *path, const char *needle);

#endif
