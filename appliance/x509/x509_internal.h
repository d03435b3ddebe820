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

/* Code points in a UTF-8 string, or -1 when it is not valid UTF-8 (overlong forms,
 * surrogates, > U+10FFFF) or holds a control character (name.c). */
long x509_utf8_chars(const unsigned char *s, size_t len);

/* Whether `text` is a dotted-decimal OID with a single DER encoding (at least two arcs,
 * first 0..2, second < 40 under 0 and 1, no leading zeros), at most 63 characters. */
bool x509_oid_text_ok(const char *text);

/* A userNotice explicitText: at most 200 bytes of valid UTF-8 without control characters.
 * Errors: P11CA_E_INVALID_ARG. */
P11CA_MUST_CHECK enum p11ca_err x509_notice_check(const char *notice, struct p11ca_errmsg *em);

/* A DNS name checked as x509_san_parse does (IDN → A-labels, A-labels round-tripped, LDH,
 * lengths, wildcard only when wildcard_ok), lowercased into out. `what` names it in
 * messages. Errors: P11CA_E_INVALID_ARG. */
#define X509_DNS_NAME_BUF 254
P11CA_MUST_CHECK enum p11ca_err x509_dns_name(const char *name, bool wildcard_ok, const char *what,
					      char out[X509_DNS_NAME_BUF], struct p11ca_errmsg *em);

/* An email address: dot-atom ASCII local part @ x509_dns_name domain, written to out with
 * the domain in A-labels. Errors: P11CA_E_INVALID_ARG. */
P11CA_MUST_CHECK enum p11ca_err x509_email_name(const char *addr, char *out, size_t cap,
						struct p11ca_errmsg *em);

/* GeneralNames of one kind: an IA5String (GEN_DNS, GEN_EMAIL, GEN_URI) as given, an
 * iPAddress of `len` bytes (4, 16, or 8/32 for an address with its mask), a directoryName
 * parsed by x509_name_parse. Errors: P11CA_E_NOMEM (and x509_name_parse's). */
P11CA_MUST_CHECK enum p11ca_err x509_gn_ia5(int type, const char *value, GENERAL_NAME **out,
					    struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err x509_gn_ip(const uint8_t *addr, size_t len, GENERAL_NAME **out,
					   struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err x509_gn_dirname(const char *text, GENERAL_NAME **out,
						struct p11ca_errmsg *em);

/* Encode `value` with the extension's registered item and append it as extension `nid`.
 * Errors: P11CA_E_NOMEM. */
P11CA_MUST_CHECK enum p11ca_err x509_add_ext(X509 *x, int nid, void *value, bool critical,
					     struct p11ca_errmsg *em);

/* x509_cert_tbs's checks of spec->ext (NULL passes): URLs, policies, bounds, and CA-only
 * extensions when !is_ca. Errors: P11CA_E_INVALID_ARG. */
P11CA_MUST_CHECK enum p11ca_err x509_ext_spec_check(const struct x509_ext_spec *ext, bool is_ca,
						    struct p11ca_errmsg *em);

/* Append the extensions of a checked spec (NULL: none) in struct x509_ext_spec's order.
 * Errors: P11CA_E_NOMEM. */
P11CA_MUST_CHECK enum p11ca_err x509_ext_spec_add(X509 *x, const struct x509_ext_spec *ext,
						  struct p11ca_errmsg *em);

#endif
