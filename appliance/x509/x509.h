/*
 * appliance/x509/x509.h — X.509 assembly in the engine: names, CSR intake, TBS building, and
 * putting a signer's signature together with its TBS.
 *
 * Everything here is plain OpenSSL 3 and has no private key: the engine builds a TBS,
 * the signer (hsm/signer.h) signs its DER, and x509_*_finish assembles the result. The TBS's
 * signature AlgorithmIdentifier comes from hsm/algor.h, so the signer reads back exactly
 * what was written. Unit-tested with software keys (appliance/x509/test_*.c).
 *
 * Ownership: every out-pointer is the caller's (X509_free, X509_CRL_free, X509_NAME_free,
 * GENERAL_NAMES_free, EVP_PKEY_free, OPENSSL_free for DER buffers). On failure nothing is
 * returned and nothing leaks.
 */
#ifndef P11CA_APPLIANCE_X509_H
#define P11CA_APPLIANCE_X509_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/err.h"
#include "hsm/hsm.h"

/* ---- names --------------------------------------------------------------------------- */

/*
 * Parse a subject in RFC 4514 form ("CN=x,O=Org,C=AT", escapes and quoting as the RFC
 * says) or OpenSSL form ("/C=AT/O=Org/CN=x"). Attribute names are case-insensitive (C, ST,
 * L, O, OU, CN, emailAddress, serialNumber, DC, …). The result is in canonical order
 * (C, ST, L, O, OU, CN, then the rest as given). Values are UTF8String (C: PrintableString).
 * Details: text starting with '/' is OpenSSL form, where '\' takes the next character
 * literally; otherwise RFC 4514, with \X escapes of specials and \XX hex pairs. Unescaped
 * spaces around types and values are dropped. Multi-valued RDNs ('+') and "#hex" values
 * are refused. C is uppercased; serialNumber is PrintableString, emailAddress and DC are
 * IA5String. "The rest as given" means in X.509 order (RFC 4514 text is read backwards).
 * Errors: P11CA_E_INVALID_ARG naming the offending attribute (unknown, empty, bad C, too
 * long per RFC 5280's upper bounds, NUL bytes, control characters, invalid UTF-8, empty
 * subject).
 */
P11CA_MUST_CHECK enum p11ca_err x509_name_parse(const char *text, X509_NAME **out,
						struct p11ca_errmsg *em);

/* RFC 4514 text (most significant RDN last, as the RFC writes it: "CN=x,O=Org,C=AT").
 * Errors: P11CA_E_INVALID_ARG when it does not fit `cap` (including the NUL). */
P11CA_MUST_CHECK enum p11ca_err x509_name_format(const X509_NAME *name, char *out, size_t cap,
						 struct p11ca_errmsg *em);

/*
 * Parse one subjectAltName: "DNS:name", "IP:address" (v4 or v6), "email:addr", "URI:uri";
 * without a prefix, an IP literal is an IP and anything else a DNS name. DNS names are
 * checked (LDH labels of 1..63, total <= 253, a wildcard only as the whole leftmost
 * label, followed by at least two labels) and lowercased; "DNS:" with an IPv4 literal is
 * refused. email is a dot-atom local part @ a DNS name; URI needs a scheme and printable
 * ASCII. Converting a non-ASCII name to A-labels is issue 4's (refused for now).
 * Errors: P11CA_E_INVALID_ARG naming the value and what is wrong.
 */
P11CA_MUST_CHECK enum p11ca_err x509_san_parse(const char *text, GENERAL_NAME **out,
					       struct p11ca_errmsg *em);

/* ---- CSR intake ------------------------------------------------------------------------ */

/*
 * Decode a PKCS#10 request (DER or PEM) of at most `len` bytes and check it before anything
 * else looks at it: the proof-of-possession signature verifies; it is not signed with MD5
 * or SHA-1; its key is RSA >= 2048 bits with exponent >= 65537 and odd, EC on P-256/P-384/
 * P-521 with a valid point, or Ed25519. *key receives the subject public key (up-ref'd).
 * Errors: P11CA_E_INVALID_ARG, each with its own sentence (not a CSR, bad signature, weak
 * digest, weak key, unsupported curve, …).
 */
P11CA_MUST_CHECK enum p11ca_err x509_csr_load(const uint8_t *data, size_t len, X509_REQ **csr,
					      EVP_PKEY **key, struct p11ca_errmsg *em);

/* ---- certificates ---------------------------------------------------------------------- */

struct x509_cert_spec {
	const X509_NAME *subject;
	EVP_PKEY *public_key;	  /* the subject's */
	/* NULL, or public_key as the CSR sent it (X509_REQ_get_X509_PUBKEY): then copied as
	 * received into the TBS instead of re-encoding public_key through OpenSSL 3.0's
	 * encoder and decoder, which cost a third of the engine's time per certificate. */
	const X509_PUBKEY *spki;
	const uint8_t *serial;	  /* unsigned big-endian, positive, 1..20 bytes */
	size_t serial_len;
	int64_t not_before, not_after; /* seconds since the epoch; UTCTime/GeneralizedTime by RFC 5280 */
	enum hsm_sig_alg alg;	  /* the issuer key's algorithm */
	const X509 *issuer;	  /* NULL: self-signed (issuer = subject; AKI = own SKI) */
	bool is_ca;		  /* basicConstraints critical CA:TRUE, else CA:FALSE */
	int path_length;	  /* CA only; < 0: no pathLenConstraint */
	uint32_t key_usage;	  /* X509v3_KU_* bits; 0: no keyUsage extension */
	bool key_usage_critical;
	const char *const *eku; /* OpenSSL short names or dotted OIDs; n_eku may be 0 */
	size_t n_eku;
	bool eku_critical;
	const GENERAL_NAMES *sans; /* NULL or empty: no subjectAltName */
};

/*
 * Build a v3 TBSCertificate: serial, validity, names, public key, the signature
 * AlgorithmIdentifier of spec->alg (in the TBS and the outer field), and the extensions
 * basicConstraints, keyUsage, extendedKeyUsage, subjectAltName (critical when the subject
 * is empty), subjectKeyIdentifier (SHA-1 of the key bits) and authorityKeyIdentifier
 * (keyIdentifier of the issuer's SKI). *tbs_der is i2d_re_X509_tbs of *tbs.
 * basicConstraints is always present and critical. Refused as inconsistent: spec->alg that
 * the issuer's key (the subject's own when self-signed) cannot make, keyCertSign without
 * is_ca, unknown KU bits or EKU names, notAfter <= notBefore, an empty subject without
 * SANs, a serial of 0 or over 20 DER octets. An issuer without SKI gets the SHA-1 of its
 * key bits as AKI.
 * Errors: P11CA_E_INVALID_ARG (inconsistent spec), P11CA_E_NOMEM, P11CA_E_INTERNAL.
 */
P11CA_MUST_CHECK enum p11ca_err x509_cert_tbs(const struct x509_cert_spec *spec, X509 **tbs,
					      uint8_t **tbs_der, size_t *tbs_der_len,
					      struct p11ca_errmsg *em);

/* Assemble Certificate ::= SEQUENCE { tbs, algorithm, BIT STRING sig } as DER (the bit
 * string with 0 unused bits, never trimmed). `tbs` is not modified (its cached encoding is
 * refreshed). *der is OPENSSL_free'd by the caller.
 * Errors: P11CA_E_INVALID_ARG (sig_len 0 or > HSM_SIG_MAX, a TBS whose algorithm is none of
 * hsm/algor.h's), P11CA_E_NOMEM, P11CA_E_INTERNAL. */
P11CA_MUST_CHECK enum p11ca_err x509_cert_finish(X509 *tbs, const uint8_t *sig, size_t sig_len,
						 uint8_t **der, size_t *der_len,
						 struct p11ca_errmsg *em);

/* ---- CRLs -------------------------------------------------------------------------------- */

struct x509_crl_entry {
	const uint8_t *serial; /* unsigned big-endian */
	size_t serial_len;
	int64_t revoked_at;
	uint32_t reason; /* RFC 5280 CRLReason; 0 (unspecified): no reasonCode extension */
	int64_t invalidity_date; /* 0: none */
};

struct x509_crl_spec {
	const X509 *issuer;
	enum hsm_sig_alg alg;
	uint64_t number; /* cRLNumber */
	int64_t this_update, next_update;
	const struct x509_crl_entry *entries;
	size_t n_entries;
};

/* Build a v2 TBSCertList with the cRLNumber and authorityKeyIdentifier extensions and the
 * entries in the given order. Reason codes 7 (unassigned), 8 (removeFromCRL: delta CRLs
 * only) and > 10 are refused; invalidityDate is GeneralizedTime. Errors: as x509_cert_tbs. */
P11CA_MUST_CHECK enum p11ca_err x509_crl_tbs(const struct x509_crl_spec *spec, X509_CRL **tbs,
					     uint8_t **tbs_der, size_t *tbs_der_len,
					     struct p11ca_errmsg *em);

/* As x509_cert_finish, for CertificateList. */
P11CA_MUST_CHECK enum p11ca_err x509_crl_finish(X509_CRL *tbs, const uint8_t *sig, size_t sig_len,
						uint8_t **der, size_t *der_len,
						struct p11ca_errmsg *em);

/* ---- small helpers the engine and the CLI share ---------------------------------------- */

/* PEM text of a DER certificate ("-----BEGIN CERTIFICATE-----…") or CRL appended to a
 * growing buffer of capacity cap; *len is updated. No NUL is added. `label` is 1..40
 * capital letters, digits, spaces or '-'; the DER must be one SEQUENCE spanning der_len.
 * Errors: P11CA_E_INVALID_ARG (bad DER or label), P11CA_E_PROTO_TOO_LARGE when it does not
 * fit (nothing written, *len unchanged). */
P11CA_MUST_CHECK enum p11ca_err x509_pem_append(const char *label, const uint8_t *der,
						size_t der_len, uint8_t *out, size_t cap,
						size_t *len, struct p11ca_errmsg *em);

#endif
