/*
 * Test-only X.509 plumbing for the signer suite: TBS structures built with plain OpenSSL
 * (as the engine will build them) and a minimal assembler SEQUENCE { tbs, alg, signature }
 * so the signer's output can be checked as real certificates and CRLs. The project's
 * assembler (appliance/x509) is not used on purpose: these tests must not depend on it.
 *
 * Functions return -1 / NULL and print why on failure; the tests assert.
 */
#ifndef P11CA_TESTS_SOFTHSM_SIGNER_TBS_H
#define P11CA_TESTS_SOFTHSM_SIGNER_TBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "hsm/hsm.h"

/* A certificate to be: version 3, `serial`, names "CN=<cn>", 1 day of validity, `pub`, and
 * basicConstraints cA when `ca`. No signature algorithm yet (t_cert_tbs sets it). */
X509 *t_cert_new(const char *subject_cn, const char *issuer_cn, EVP_PKEY *pub, long serial,
		 bool ca);

/* Write `alg` (hsm_algor_set) into the TBS signature field and return the DER TBS in
 * *der (free with OPENSSL_free). 0 or -1. */
int t_cert_tbs(X509 *x, enum hsm_sig_alg alg, uint8_t **der, size_t *len);

/* The DER TBSCertList of a v2 CRL by `issuer` revoking serial 1234, for `alg`, which must
 * be RSA PKCS#1 or ECDSA: OpenSSL 3.0 has no setter for a CRL's inner AlgorithmIdentifier,
 * so it is written by signing once with a throwaway software key of that family. */
int t_crl_tbs(const X509_NAME *issuer, enum hsm_sig_alg alg, uint8_t **der, size_t *len);

/* SEQUENCE { tbs, AlgorithmIdentifier(alg), BIT STRING sig } in *der (OPENSSL_free). */
int t_assemble(const uint8_t *tbs, size_t tbs_len, enum hsm_sig_alg alg, const uint8_t *sig,
	       size_t sig_len, uint8_t **der, size_t *len);

/* Write DER as PEM of type "CERTIFICATE" or "X509 CRL" to `path`. 0 or -1. */
int t_write_pem(const char *path, const char *type, const uint8_t *der, size_t len);

#endif
