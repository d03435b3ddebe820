/*
 * hsm/signer_issuer.h — private to hsm/signer_check.c and hsm/signer_issuer.c: the issuer
 * certificate's verdict and the process-wide cache of it (hsm/signer_issuer.c). Thread-safe.
 */
#ifndef P11CA_HSM_SIGNER_ISSUER_H
#define P11CA_HSM_SIGNER_ISSUER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* What check_issuer decides on: the TBS's issuer against the CA's subject, and the key. */
struct issuer_verdict {
	bool name_ok, key_ok;
	const char *problem; /* static text, see issuer_problem */
	uint32_t key_usage;  /* X509_get_key_usage: UINT32_MAX when unrestricted */
	char subject[160];   /* the CA's subject when !name_ok, for the message */
};

/* A name for a message, RFC 2253, truncated to fit `size` (at least 1). */
void signer_name_str(const X509_NAME *name, char *dst, size_t size);

/* Fill *v for issuer certificate `ca` against the TBS's issuer `name`. */
void signer_issuer_verdict(X509 *ca, bool key_ok, const char *problem, const X509_NAME *name,
			   struct issuer_verdict *v);

/* *v for the issuer certificate `der` checked against `key` before; false: not cached. */
bool signer_issuer_cached(const uint8_t *der, size_t der_len, EVP_PKEY *key, const X509_NAME *name,
			  struct issuer_verdict *v);

/* Keep a parsed issuer certificate and its check; takes *ca (sets it NULL) when kept. */
void signer_issuer_keep(const uint8_t *der, size_t der_len, EVP_PKEY *key, X509 **ca, bool key_ok,
			const char *problem);

#endif
