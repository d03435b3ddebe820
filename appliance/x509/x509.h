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
 * Parse one subjectAltName (also used for issuerAltName):
 *   "DNS:name"  LDH labels of 1..63 octets, total <= 253, a wildcard only as the whole
 *               leftmost label followed by at least two labels; lowercased. A name with
 *               non-ASCII characters is converted to A-labels (IDNA2008 with UTS #46
 *               mapping, libidn2); an A-label that does not decode to a valid U-label is
 *               refused. "DNS:" with an IP literal, or a name whose last label is
 *               numeric (browsers read "1.2.3" or "example.123" as IPv4), is refused.
 *   "IP:addr"   IPv4 or IPv6 address.
 *   "email:a@d" dot-atom ASCII local part @ a DNS name (IDN domains as A-labels).
 *   "URI:uri"   a scheme, printable ASCII, no spaces.
 *   "dirname:N" a distinguished name as x509_name_parse takes it.
 *   "rid:OID"   a registered ID, dotted decimal.
 *   "otherName:OID;UTF8:value"  an otherName with a UTF8String value (the only type taken).
 * Prefixes are case-insensitive. Without a prefix, an IP literal is an IP and anything else
 * a DNS name. Control characters (C0 and C1) and NUL bytes are refused everywhere.
 * Errors: P11CA_E_INVALID_ARG naming the value and what is wrong.
 */
P11CA_MUST_CHECK enum p11ca_err x509_san_parse(const char *text, GENERAL_NAME **out,
					       struct p11ca_errmsg *em);

/*
 * Parse one nameConstraints subtree "TYPE:value" (minimum 0, no maximum):
 *   "DNS:example.com"   the domain and every name under it; "DNS:.example.com" names under
 *                       it only (IDN converted as in x509_san_parse; no wildcards);
 *   "IP:10.0.0.0/8", "IP:2001:db8::/32"  an address and a contiguous prefix length (host
 *                       bits must be zero);
 *   "email:user@example.com" (one mailbox), "email:example.com" (that host),
 *   "email:.example.com" (hosts under it);
 *   "URI:example.com" (that host), "URI:.example.com" (hosts under it);
 *   "dirname:O=Example,C=AT" (names under that DN).
 * Errors: P11CA_E_INVALID_ARG naming the value and what is wrong.
 */
P11CA_MUST_CHECK enum p11ca_err x509_subtree_parse(const char *text, GENERAL_SUBTREE **out,
						   struct p11ca_errmsg *em);

/*
 * Refuse to help mis-issue: every name of `cert` (its subject DN, its email attributes,
 * every SAN, and the subject's CN whenever it looks like a host: a DNS name, a wildcard or
 * IDN name, an IPv4 or IPv6 address — checked even when SANs are present, which is
 * stricter than `openssl verify`) must lie within the nameConstraints of each certificate
 * in chain[0..n) (the issuer first, then its issuers; those without nameConstraints impose
 * nothing). Uses OpenSSL's own NAME_CONSTRAINTS_check and NAME_CONSTRAINTS_check_CN, plus
 * the CN forms OpenSSL skips, so what passes here passes `openssl verify`.
 * Errors: P11CA_E_POLICY naming the first name outside and the CA certificate whose
 * constraints it violates (by subject); P11CA_E_NOMEM.
 */
P11CA_MUST_CHECK enum p11ca_err x509_check_name_constraints(X509 *cert, X509 *const *chain,
							    size_t n, struct p11ca_errmsg *em);

/* Check a name that did not come through x509_name_parse (a CSR's subject, an imported
 * certificate's): the same rules on every value (valid UTF-8 or the string type's
 * character set, no NUL or control characters, RFC 5280 upper bounds, C two letters).
 * Errors: P11CA_E_INVALID_ARG naming the attribute. */
P11CA_MUST_CHECK enum p11ca_err x509_name_check(const X509_NAME *name, struct p11ca_errmsg *em);

/* A URL for CRL distribution points or authority information access: scheme http or https
 * (ldap too when allow_ldap), a host of LDH labels (1..63, no leading or trailing '-') or
 * an IP literal, printable ASCII without spaces, at most 255 bytes.
 * Errors: P11CA_E_INVALID_ARG naming the URL. */
P11CA_MUST_CHECK enum p11ca_err x509_url_check(const char *url, bool allow_ldap,
					       struct p11ca_errmsg *em);

/* One certificatePolicies entry in its text form "OID[;cps=URI]...[;notice=TEXT]" (at most
 * two cps, one notice of at most 200 bytes UTF-8; the notice is last and may hold ';'),
 * as the configuration and the CLI write it. */
struct x509_policy_text {
	char oid[64];
	char cps[2][256];
	size_t n_cps;
	char notice[201]; /* "" none */
};
P11CA_MUST_CHECK enum p11ca_err
x509_policy_text_parse(const char *text, struct x509_policy_text *out, struct p11ca_errmsg *em);

/* ---- CSR intake ------------------------------------------------------------------------ */

/* What a CSR must meet beyond the fixed rules; zero fields take the defaults. */
struct x509_csr_policy {
	size_t max_bytes;	   /* 0: 16384 */
	unsigned min_rsa_bits;	   /* 0: 2048 (never lower than 2048) */
	uint64_t min_rsa_exponent; /* 0: 65537 (never lower than 3) */
};

/*
 * Decode a PKCS#10 request (DER or PEM) and check it before anything else looks at it,
 * each rule with its own sentence, in this order (so a bad key is named even when its
 * signature cannot verify): larger than policy->max_bytes; not exactly one CSR (trailing
 * data, PEM markers with stray bytes) or a version other than 1; a key type other than RSA,
 * EC and Ed25519; an RSA key under min_rsa_bits, with a modulus not a multiple of 8 bits,
 * an even exponent or one under min_rsa_exponent, without NULL parameters or not in DER;
 * an EC key on a curve other than P-256/P-384/P-521, with a compressed point or one not on
 * the curve; an Ed25519 key with parameters; signed with MD5 or SHA-1; the
 * proof-of-possession signature does not verify. *key receives the subject public key (the
 * certificate carries its SubjectPublicKeyInfo byte for byte, hence the encoding rules).
 * The subject is not checked here (x509_name_check).
 * policy may be NULL (all defaults). Errors: P11CA_E_INVALID_ARG.
 */
P11CA_MUST_CHECK enum p11ca_err x509_csr_load(const uint8_t *data, size_t len,
					      const struct x509_csr_policy *policy, X509_REQ **csr,
					      EVP_PKEY **key, struct p11ca_errmsg *em);

/*
 * The key rules of x509_csr_load alone (type, RSA size, exponent and encoding, EC curve and
 * point, Ed25519 parameters), for a key that arrives without a CSR: the one in a stored
 * certificate being resigned, which may predate the policy or have been imported. `whose`
 * starts each message ("the certificate's"). policy may be NULL (defaults).
 * Errors: P11CA_E_INVALID_ARG.
 */
P11CA_MUST_CHECK enum p11ca_err x509_spki_check(const X509_PUBKEY *spki,
						const struct x509_csr_policy *policy,
						const char *whose, struct p11ca_errmsg *em);

/* ---- certificates ---------------------------------------------------------------------- */

/* One certificatePolicies entry as x509_cert_tbs writes it. */
struct x509_policy_spec {
	const char *oid; /* dotted; "2.5.29.32.0" is anyPolicy */
	const char *const *cps_uris;
	size_t n_cps_uris;
	const char *user_notice; /* NULL or "": none */
};

/* The extensions beyond the fixed set; every field empty/false/negative means "absent". */
struct x509_ext_spec {
	const char *const *crl_urls;  /* cRLDistributionPoints: one DistributionPoint with */
	size_t n_crl_urls;	      /* every URL as a fullName URI */
	const char *const *ocsp_urls; /* authorityInfoAccess, id-ad-ocsp first, then */
	size_t n_ocsp_urls;	      /* id-ad-caIssuers */
	const char *const *issuer_urls;
	size_t n_issuer_urls;
	const struct x509_policy_spec *policies; /* certificatePolicies, non-critical */
	size_t n_policies;
	const GENERAL_NAMES *issuer_alt_names; /* issuerAltName, non-critical */
	bool ocsp_no_check;		       /* id-pkix-ocsp-nocheck, NULL value */
	bool tls_feature_status_request;       /* TLS feature { status_request (5) } */
	/* CA certificates only (refused in an end-entity spec): */
	/* nameConstraints, critical; at most 64 subtrees a list, each as x509_subtree_parse
	 * makes them (minimum absent, no maximum, IP with its mask) */
	const STACK_OF(GENERAL_SUBTREE) * permitted;
	const STACK_OF(GENERAL_SUBTREE) * excluded;
	int require_explicit_policy; /* policyConstraints (critical) when either is >= 0 */
	int inhibit_policy_mapping;
	int inhibit_any_policy; /* inhibitAnyPolicy (critical) when >= 0 */
};

/* Fill *ext with "nothing": the three integers -1, everything else zero. */
void x509_ext_spec_init(struct x509_ext_spec *ext);

struct x509_cert_spec {
	const X509_NAME *subject;
	EVP_PKEY *public_key; /* the subject's */
	/* NULL, or public_key as the CSR sent it (X509_REQ_get_X509_PUBKEY): then copied as
	 * received into the TBS instead of re-encoding public_key through OpenSSL 3.0's
	 * encoder and decoder, which cost a third of the engine's time per certificate. */
	const X509_PUBKEY *spki;
	const uint8_t *serial; /* unsigned big-endian, positive, 1..20 bytes */
	size_t serial_len;
	int64_t not_before, not_after; /* epoch seconds; UTCTime/GeneralizedTime per RFC 5280 */
	enum hsm_sig_alg alg;	       /* the issuer key's algorithm */
	const X509 *issuer;	       /* NULL: self-signed (issuer = subject; AKI = own SKI) */
	bool is_ca;		       /* basicConstraints critical CA:TRUE, else CA:FALSE */
	int path_length;	       /* CA only; < 0: no pathLenConstraint */
	uint32_t key_usage;	       /* X509v3_KU_* bits; 0: no keyUsage extension */
	bool key_usage_critical;
	const char *const *eku; /* OpenSSL short names or dotted OIDs; n_eku may be 0 */
	size_t n_eku;
	bool eku_critical;
	const GENERAL_NAMES *sans;	 /* NULL or empty: no subjectAltName */
	const struct x509_ext_spec *ext; /* NULL: none of its extensions */
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
 * SANs, a serial of 0 or over 20 DER octets, URLs x509_url_check refuses, a policy OID
 * that is not dotted decimal, CA-only extensions (nameConstraints, policyConstraints,
 * inhibitAnyPolicy) in an end-entity spec. An issuer without SKI gets the SHA-1 of its
 * key bits as AKI. With spec->ext, its extensions follow the fixed ones in the order of
 * struct x509_ext_spec.
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
	uint32_t reason;	 /* RFC 5280 CRLReason; 0 (unspecified): no reasonCode extension */
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
