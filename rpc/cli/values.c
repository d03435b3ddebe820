/*
 * Values a user types or reads: serials, revocation reasons, key types, formats, numbers,
 * times and status names. The proto's enums are the source of truth; names are the ones
 * docs/cli.md lists.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "hsm/hsm.h"
#include "rpc/cli/cli.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* hsm/ and the contract number key types and algorithms alike; the casts below rely on it. */
_Static_assert((int)HSM_KEY_ED25519 == (int)p11ca_v1_KeyType_KEY_TYPE_ED25519 &&
		       (int)HSM_KEY_P256 == (int)p11ca_v1_KeyType_KEY_TYPE_P256,
	       "hsm key types and p11ca.v1.KeyType differ");
_Static_assert((int)HSM_SIG_ED25519 ==
			       (int)p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ED25519 &&
		       (int)HSM_SIG_RSA_PSS_SHA256 ==
			       (int)p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PSS_SHA256,
	       "hsm signature algorithms and p11ca.v1.SignatureAlgorithm differ");

enum p11ca_err cli_serial_parse(const char *in, char out[41], struct p11ca_errmsg *em)
{
	size_t n = 0;

	if (in == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "no serial given");
	/* What `openssl x509 -noout -serial` prints can be pasted as is. */
	if (strncasecmp(in, "serial=", 7) == 0)
		in += 7;
	for (const char *p = in; *p != '\0'; p++) {
		if (*p == ':')
			continue;
		if (!isxdigit((unsigned char)*p))
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "serial '%.64s' has a character that is not a hex digit "
					  "or ':'",
					  in);
		if (n == 40)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "serial '%.80s' is longer than 20 bytes (40 hex digits)",
					  in);
		out[n++] = (char)toupper((unsigned char)*p);
	}
	out[n] = '\0';
	if (n == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "empty serial: give hex digits");
	return P11CA_OK;
}

void cli_serial_format(const uint8_t *bytes, size_t len, char *out, size_t out_size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	if (out_size == 0)
		return;
	for (size_t i = 0; i < len && o + 2 < out_size; i++) {
		out[o++] = hex[bytes[i] >> 4];
		out[o++] = hex[bytes[i] & 0xf];
	}
	out[o] = '\0';
}

static const struct {
	const char *name;
	p11ca_v1_RevocationReason reason;
} reasons[] = {
	{"unspecified", p11ca_v1_RevocationReason_REVOCATION_REASON_UNSPECIFIED},
	{"keyCompromise", p11ca_v1_RevocationReason_REVOCATION_REASON_KEY_COMPROMISE},
	{"cACompromise", p11ca_v1_RevocationReason_REVOCATION_REASON_CA_COMPROMISE},
	{"affiliationChanged", p11ca_v1_RevocationReason_REVOCATION_REASON_AFFILIATION_CHANGED},
	{"superseded", p11ca_v1_RevocationReason_REVOCATION_REASON_SUPERSEDED},
	{"cessationOfOperation",
	 p11ca_v1_RevocationReason_REVOCATION_REASON_CESSATION_OF_OPERATION},
	{"certificateHold", p11ca_v1_RevocationReason_REVOCATION_REASON_CERTIFICATE_HOLD},
	{"privilegeWithdrawn", p11ca_v1_RevocationReason_REVOCATION_REASON_PRIVILEGE_WITHDRAWN},
	{"aACompromise", p11ca_v1_RevocationReason_REVOCATION_REASON_AA_COMPROMISE},
};

/* Equal ignoring case, '_' and '-': django-ca spells reasons key_compromise, RFC 5280
 * keyCompromise, and people type key-compromise. */
static bool reason_matches(const char *in, const char *name)
{
	for (;;) {
		while (*in == '_' || *in == '-')
			in++;
		if (*in == '\0' || *name == '\0')
			return *in == *name;
		if (tolower((unsigned char)*in++) != tolower((unsigned char)*name++))
			return false;
	}
}

enum p11ca_err cli_reason_parse(const char *in, p11ca_v1_RevocationReason *out,
				struct p11ca_errmsg *em)
{
	for (size_t i = 0; in != NULL && i < COUNT(reasons); i++) {
		if (reason_matches(in, reasons[i].name)) {
			*out = reasons[i].reason;
			return P11CA_OK;
		}
	}
	return p11ca_fail(em, P11CA_E_INVALID_ARG,
			  "unknown revocation reason '%.64s'; use one of unspecified "
			  "keyCompromise cACompromise affiliationChanged superseded "
			  "cessationOfOperation certificateHold privilegeWithdrawn aACompromise "
			  "(any case; key_compromise works too)",
			  in ? in : "");
}

const char *cli_reason_name(p11ca_v1_RevocationReason r)
{
	for (size_t i = 0; i < COUNT(reasons); i++)
		if (reasons[i].reason == r)
			return reasons[i].name;
	if (r == p11ca_v1_RevocationReason_REVOCATION_REASON_REMOVE_FROM_CRL)
		return "removeFromCRL";
	return "unknown";
}

enum p11ca_err cli_key_type_parse(const char *in, p11ca_v1_KeyType *out, struct p11ca_errmsg *em)
{
	enum hsm_key_type t = HSM_KEY_UNSPECIFIED;
	P11CA_GUARD(hsm_key_type_parse(in, &t, em));
	*out = (p11ca_v1_KeyType)t;
	return P11CA_OK;
}

const char *cli_key_type_name(p11ca_v1_KeyType t)
{
	if (t == p11ca_v1_KeyType_KEY_TYPE_UNSPECIFIED)
		return "-";
	const char *n = hsm_key_type_name((enum hsm_key_type)t);
	return n != NULL ? n : "unknown";
}

enum p11ca_err cli_sig_alg_parse(const char *in, p11ca_v1_SignatureAlgorithm *out,
				 struct p11ca_errmsg *em)
{
	enum hsm_sig_alg a = HSM_SIG_UNSPECIFIED;
	char full[32];
	/* "rsa-sha256" is what people expect next to "rsa-pss-sha256": PKCS#1 v1.5. */
	if (in != NULL && strncasecmp(in, "rsa-sha", 7) == 0 && strlen(in) < 20) {
		snprintf(full, sizeof(full), "rsa-pkcs1-%s", in + 4);
		in = full;
	}
	P11CA_GUARD(hsm_sig_alg_parse(in, &a, em));
	*out = (p11ca_v1_SignatureAlgorithm)a;
	return P11CA_OK;
}

const char *cli_sig_alg_name(p11ca_v1_SignatureAlgorithm a)
{
	if (a == p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_UNSPECIFIED)
		return "-";
	const char *n = hsm_sig_alg_name((enum hsm_sig_alg)a);
	return n != NULL ? n : "unknown";
}

enum p11ca_err cli_format_parse(const char *in, p11ca_v1_Format *out, struct p11ca_errmsg *em)
{
	if (in != NULL && strcasecmp(in, "pem") == 0)
		*out = p11ca_v1_Format_FORMAT_PEM;
	else if (in != NULL && strcasecmp(in, "der") == 0)
		*out = p11ca_v1_Format_FORMAT_DER;
	else
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "unknown format '%.32s'; use pem or der",
				  in ? in : "");
	return P11CA_OK;
}

enum p11ca_err cli_uint_parse(const char *in, uint32_t max, uint32_t *out, struct p11ca_errmsg *em)
{
	char *end = NULL;

	if (in == NULL || !isdigit((unsigned char)in[0]))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "'%.32s' is not a number", in ? in : "");
	errno = 0;
	unsigned long long v = strtoull(in, &end, 10);
	if (*end != '\0')
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "'%.32s' is not a number", in);
	if (errno != 0 || v > max)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%.32s is over the limit of %u", in,
				  (unsigned)max);
	*out = (uint32_t)v;
	return P11CA_OK;
}

const char *cli_ca_status_name(p11ca_v1_CaStatus s)
{
	static const char *const names[] = {"unknown", "active", "expired", "revoked",
					    "key-unavailable"};
	return (unsigned)s < COUNT(names) ? names[s] : "unknown";
}

static const char *const cert_status_names[] = {"any", "valid", "expired", "revoked", "orphaned"};

const char *cli_cert_status_name(p11ca_v1_CertStatus s)
{
	if (s == p11ca_v1_CertStatus_CERT_STATUS_UNSPECIFIED ||
	    (unsigned)s >= COUNT(cert_status_names))
		return "unknown";
	return cert_status_names[s];
}

enum p11ca_err cli_cert_status_parse(const char *in, p11ca_v1_CertStatus *out,
				     struct p11ca_errmsg *em)
{
	for (size_t i = 0; in != NULL && i < COUNT(cert_status_names); i++) {
		if (strcasecmp(in, cert_status_names[i]) == 0) {
			*out = (p11ca_v1_CertStatus)i;
			return P11CA_OK;
		}
	}
	return p11ca_fail(em, P11CA_E_INVALID_ARG,
			  "unknown status '%.32s'; use valid, expired, revoked, orphaned or any",
			  in ? in : "");
}

const char *cli_token_state_name(p11ca_v1_TokenState s)
{
	static const char *const names[] = {"unknown",	     "ready",	   "needs-pin",
					    "pin-final-try", "pin-locked", "unavailable"};
	return (unsigned)s < COUNT(names) ? names[s] : "unknown";
}

void cli_time_format(int64_t t, char *out, size_t out_size)
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (out_size == 0)
		return;
	out[0] = '\0';
	if (t == 0 || gmtime_r(&tt, &tm) == NULL)
		return;
	if (strftime(out, out_size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		out[0] = '\0';
}

/* ---- algorithms by hash, times, addresses and names (issue 4) -------------------------- */

enum p11ca_err cli_hash_parse(const char *in, unsigned *bits, struct p11ca_errmsg *em)
{
	static const unsigned sizes[] = {256, 384, 512};
	if (in != NULL && strncasecmp(in, "sha", 3) == 0) {
		const char *p = in + 3 + (in[3] == '-');
		for (size_t i = 0; i < COUNT(sizes); i++) {
			char n[8];
			snprintf(n, sizeof(n), "%u", sizes[i]);
			if (strcmp(p, n) == 0) {
				*bits = sizes[i];
				return P11CA_OK;
			}
		}
	}
	return p11ca_fail(em, P11CA_E_INVALID_ARG, "'%.32s' is not SHA-256, SHA-384 or SHA-512",
			  in ? in : "");
}

enum p11ca_err cli_sig_alg_for_hash(unsigned bits, p11ca_v1_KeyType key,
				    p11ca_v1_SignatureAlgorithm like,
				    p11ca_v1_SignatureAlgorithm *out, struct p11ca_errmsg *em)
{
	/* Index by hash: 0 SHA-256, 1 SHA-384, 2 SHA-512; the enum groups them in threes. */
	int h = bits == 256 ? 0 : bits == 384 ? 1 : bits == 512 ? 2 : -1;
	bool pss = like >= p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PSS_SHA256 &&
		   like <= p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PSS_SHA512;

	if (h < 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "no SHA-%u: use 256, 384 or 512", bits);
	switch (key) {
	case p11ca_v1_KeyType_KEY_TYPE_RSA2048:
	case p11ca_v1_KeyType_KEY_TYPE_RSA3072:
	case p11ca_v1_KeyType_KEY_TYPE_RSA4096:
		*out = (p11ca_v1_SignatureAlgorithm)((pss ? p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PSS_SHA256
							  : p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256) +
						     h);
		return P11CA_OK;
	case p11ca_v1_KeyType_KEY_TYPE_P256:
	case p11ca_v1_KeyType_KEY_TYPE_P384:
	case p11ca_v1_KeyType_KEY_TYPE_P521:
		*out = (p11ca_v1_SignatureAlgorithm)(p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA256 +
						     h);
		return P11CA_OK;
	case p11ca_v1_KeyType_KEY_TYPE_ED25519:
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "an Ed25519 key signs without a separate hash; leave --algorithm "
				  "out or give ed25519");
	default:
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the signing key's type is unknown, so SHA-%u is ambiguous; name "
				  "the algorithm in full (e.g. rsa-pss-sha%u, ecdsa-sha%u)",
				  bits, bits, bits);
	}
}

/* Exactly `n` digits at *p, advancing it. */
static bool digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static bool time_fields(const char *in, int64_t *out)
{
	int y, mo, d, h = 0, mi = 0, s = 0, oh = 0, om = 0, sign = 0;
	const char *p = in;

	if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
	    !digits(&p, 2, &d))
		return false;
	if (*p != '\0') {
		if (*p != 'T' && *p != 't' && *p != ' ')
			return false;
		p++;
		if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
		    !digits(&p, 2, &s))
			return false;
		if (*p == '.') /* fractions of a second: CRLs keep whole seconds */
			for (p++; isdigit((unsigned char)*p); p++)
				;
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			sign = *p++ == '+' ? 1 : -1;
			if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om) || oh > 23 ||
			    om > 59)
				return false;
		} else {
			return false; /* a local time would depend on this machine's zone */
		}
		if (*p != '\0')
			return false;
	}
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 60)
		return false;
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d > mdays[mo - 1] + (mo == 2 && leap))
		return false;
	struct tm tm = {.tm_year = y - 1900,
			.tm_mon = mo - 1,
			.tm_mday = d,
			.tm_hour = h,
			.tm_min = mi,
			.tm_sec = s > 59 ? 59 : s};
	*out = (int64_t)timegm(&tm) - (int64_t)sign * (oh * 3600 + om * 60);
	return true;
}

enum p11ca_err cli_time_parse(const char *in, int64_t *out, struct p11ca_errmsg *em)
{
	uint32_t epoch = 0;
	if (in != NULL && in[0] == '@') {
		if (cli_uint_parse(in + 1, UINT32_MAX, &epoch, NULL) != P11CA_OK || epoch == 0)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "'%.40s' is not @SECONDS since 1970", in);
		*out = epoch;
		return P11CA_OK;
	}
	if (in == NULL || !time_fields(in, out) || *out <= 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "'%.40s' is not a time; give RFC 3339 with a zone, e.g. "
				  "2026-11-20T10:00:00Z or 2026-11-20T11:00:00+01:00, a date "
				  "(2026-11-20, midnight UTC) or @SECONDS since 1970",
				  in ? in : "");
	return P11CA_OK;
}

enum p11ca_err cli_email_check(const char *in, struct p11ca_errmsg *em)
{
	const char *at = in != NULL ? strchr(in, '@') : NULL;
	size_t n = in != NULL ? strlen(in) : 0;

	if (at == NULL || at == in || at[1] == '\0' || strchr(at + 1, '@') != NULL || n > 254)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "'%.64s' is not an email address (user@example.com, at most 254 "
				  "bytes)",
				  in ? in : "");
	for (const char *p = in; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '<' || *p == '>' ||
		    *p == ',' || *p == ';')
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "'%.64s' is not an email address: no spaces, brackets, "
					  "commas or control characters",
					  in);
	return P11CA_OK;
}

enum p11ca_err cli_oid_check(const char *in, struct p11ca_errmsg *em)
{
	size_t arcs = 0;
	const char *p = in;

	while (p != NULL && isdigit((unsigned char)*p)) {
		if (p[0] == '0' && isdigit((unsigned char)p[1]))
			break; /* no leading zeros in an arc */
		while (isdigit((unsigned char)*p))
			p++;
		arcs++;
		if (*p != '.' || !isdigit((unsigned char)p[1]))
			break; /* the end, or a dot no arc follows ("1..2", "1.2.") */
		p++;
	}
	if (p == NULL || *p != '\0' || arcs < 2 || in[0] > '2')
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "'%.64s' is not a dotted OID such as 2.23.140.1.2.1",
				  in ? in : "");
	return P11CA_OK;
}

static const char *const name_types[] = {"DNS",	    "IP",  "email",    "URI",
					 "dirname", "rid", "otherName"};

enum p11ca_err cli_general_name_check(const char *in, bool constraint, struct p11ca_errmsg *em)
{
	const char *colon = in != NULL ? strchr(in, ':') : NULL;
	struct in6_addr a6;

	if (in == NULL || in[0] == '\0')
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "empty name");
	if (colon == NULL || inet_pton(AF_INET6, in, &a6) == 1) {
		if (constraint) /* a bare name would be ambiguous in a constraint */
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "'%.64s' has no type: write DNS:, IP:, email:, URI: or "
					  "dirname: before it",
					  in);
		return P11CA_OK; /* the server tells an IP literal from a DNS name */
	}
	size_t n = (size_t)(colon - in);
	for (size_t i = 0; i < COUNT(name_types); i++) {
		if (strlen(name_types[i]) != n || strncasecmp(in, name_types[i], n) != 0)
			continue;
		if (colon[1] == '\0')
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "'%.64s' has no value after the type", in);
		/* RFC 5280 4.2.1.10 has no rid or otherName constraints we could check. */
		if (constraint && i >= 5)
			return p11ca_fail(
				em, P11CA_E_INVALID_ARG,
				"%s cannot be a name constraint; use DNS, IP, email, URI or "
				"dirname",
				name_types[i]);
		if (i == 6 && strstr(colon + 1, ";UTF8:") == NULL)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "'%.64s': write otherName as otherName:OID;UTF8:value",
					  in);
		return P11CA_OK;
	}
	return p11ca_fail(
		em, P11CA_E_INVALID_ARG,
		"unknown name type '%.*s'; use DNS:, IP:, email:, URI:, dirname:, rid: or "
		"otherName:",
		(int)(n < 32 ? n : 32), in);
}
