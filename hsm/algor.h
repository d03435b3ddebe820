/*
 * hsm/algor.h — signature algorithms as X.509 AlgorithmIdentifiers.
 *
 * The engine writes the AlgorithmIdentifier into every TBS it builds; the signer reads it
 * back to choose the mechanism and refuses one that does not fit the key. Both use this one
 * mapping, so the identifier signed over and the mechanism used can never disagree.
 */
#ifndef P11CA_HSM_ALGOR_H
#define P11CA_HSM_ALGOR_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/err.h"
#include "hsm/hsm.h"

/* Set `algor` to the identifier of `alg`: sha*WithRSAEncryption (NULL parameters),
 * RSASSA-PSS with explicit parameters (hash, MGF1 with the same hash, salt = hash length,
 * trailer 1), ecdsa-with-SHA* (absent parameters), Ed25519 (absent parameters).
 * Errors: P11CA_E_INVALID_ARG (HSM_SIG_UNSPECIFIED or unknown), P11CA_E_NOMEM. */
P11CA_MUST_CHECK enum p11ca_err hsm_algor_set(X509_ALGOR *algor, enum hsm_sig_alg alg,
					      struct p11ca_errmsg *em);

/* The algorithm an identifier names. Only the exact forms hsm_algor_set writes are
 * accepted (PSS with other parameters, absent-vs-NULL mix-ups, MD5/SHA-1 are refused).
 * Errors: P11CA_E_POLICY naming the identifier. */
P11CA_MUST_CHECK enum p11ca_err hsm_algor_get(const X509_ALGOR *algor, enum hsm_sig_alg *alg,
					      struct p11ca_errmsg *em);

/* The key type of a public key (RSA by modulus size 2048/3072/4096, EC by named curve,
 * Ed25519). Errors: P11CA_E_POLICY (any other key). */
P11CA_MUST_CHECK enum p11ca_err hsm_key_type_of_pkey(EVP_PKEY *pkey, enum hsm_key_type *type,
						     struct p11ca_errmsg *em);

#endif
