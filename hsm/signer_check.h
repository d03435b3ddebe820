/*
 * hsm/signer_check.h — internal to the signer: what a TBS must be before the signer signs it.
 *
 * The signer is not a signing oracle. Before a CA key signs, the TBS it is handed is parsed
 * again here (the engine built it, but the engine is the process that parses network input)
 * and refused unless it is exactly what that CA key may sign. Pure OpenSSL, no PKCS#11: the
 * caller passes the HSM key's public half and type, so the checks are testable without a
 * token.
 */
#ifndef P11CA_HSM_SIGNER_CHECK_H
#define P11CA_HSM_SIGNER_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/err.h"
#include "hsm/hsm.h"
#include "hsm/signer.h"

/*
 * Check a DER TBS of `kind` (a TBSCertificate or TBSCertList; exactly one DER element, no
 * trailing bytes) against the CA key (`key_pub`, a key of `key_type`):
 *   - `issuer_cert` (DER, exactly one certificate) has `key_pub` as its public key, and the
 *     TBS's issuer equals its subject;
 *   - with no issuer_cert (NULL/0): only a certificate TBS that is self-issued (issuer ==
 *     subject) and certifies `key_pub` itself, i.e. the CA's own self-signed certificate;
 *   - the TBS's signature AlgorithmIdentifier is one hsm_algor_get accepts and it fits
 *     `key_type`; *alg receives it: the algorithm to sign with.
 * Errors: P11CA_E_POLICY (with the reason: unparsable TBS or issuer certificate, issuer
 * mismatch, wrong key, algorithm), P11CA_E_INVALID_ARG (NULL arguments, unknown kind),
 * P11CA_E_NOMEM.
 */
P11CA_MUST_CHECK enum p11ca_err signer_check_tbs(enum signer_tbs_kind kind, const uint8_t *tbs,
						 size_t tbs_len, const uint8_t *issuer_cert,
						 size_t issuer_cert_len, EVP_PKEY *key_pub,
						 enum hsm_key_type key_type, enum hsm_sig_alg *alg,
						 struct p11ca_errmsg *em);

#endif
