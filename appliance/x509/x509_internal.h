/*
 * appliance/x509/ internals: helpers the certificate, CRL and PEM code share. Nothing outside
 * appliance/x509/ (except its tests) includes this file.
 */
#ifndef P11CA_APPLIANCE_X509_INTERNAL_H
#define P11CA_APPLIANCE_X509_INTERNAL_H

#include "appliance/x509/x509.h"

/* Upper bound of a whole subject text accepted by x509_name_parse. */
#define X509_NAME_TEXT_MAX 4096
/* At most this many RDNs in a parsed subject. */
#define X509_NAME_RDN_MAX 32

/* An INTEGER from an unsigned big-endian serial: positive and at most 20 content octets
 * (RFC 5280 4.1.2.2). Leading zero bytes are allowed and ignored.
 * Errors: P11CA_E_INVALID_ARG, P11CA_E_NOMEM. */
P11CA_MUST_CHECK enum p11ca_err x509_serial_to_asn1(const uint8_t *serial, size_t len,
						    ASN1_INTEGER **out, struct p11ca_errmsg *em);

/* A Time for `t` seconds since the epoch: UTCTime for 1950..2049, GeneralizedTime
 * otherwise (RFC 5280 4.1.2.5). Errors: P11CA_E_INVALID_ARG (out of range), P11CA_E_NOMEM. */
P11CA_MUST_CHECK enum p11ca_err x509_time(int64_t t, const char *what, ASN1_TIME **out,
					  struct p11ca_errmsg *em);

/* The keyIdentifier an issued object's authorityKeyIdentifier carries: the issuer's
 * subjectKeyIdentifier, or the SHA-1 of its key bits when it has none (RFC 5280 4.2.1.2
 * method 1, which is also how x509_cert_tbs computes SKIs). */
P11CA_MUST_CHECK enum p11ca_err x509_issuer_key_id(const X509 *issuer, ASN1_OCTET_STRING **out,
						   struct p11ca_errmsg *em);

/* P11CA_OK when `alg` can sign with `issuer_key`; P11CA_E_INVALID_ARG naming both if not. */
P11CA_MUST_CHECK enum p11ca_err x509_alg_fits_key(enum hsm_sig_alg alg, EVP_PKEY *issuer_key,
						  struct p11ca_errmsg *em);

/* SEQUENCE { tbs, algorithm, BIT STRING sig } as DER, with the BIT STRING's unused-bits
 * count fixed at 0 so OpenSSL never trims trailing zero bits of the signature.
 * `alg` must be one of hsm/algor.h's forms. Errors: P11CA_E_INVALID_ARG, P11CA_E_NOMEM. */
P11CA_MUST_CHECK enum p11ca_err x509_assemble(const uint8_t *tbs, size_t tbs_len,
					      const X509_ALGOR *alg, const uint8_t *sig,
					      size_t sig_len, uint8_t **der, size_t *der_len,
					      struct p11ca_errmsg *em);

#endif
