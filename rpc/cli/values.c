/*
 * Values a user types or reads: serials, revocation reasons, key types, formats, numbers,
 * times and status names. The proto's enums are the source of truth; names are the ones
 * docs/cli.md lists.
 */
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

enum p11ca_err cli_reason_parse(const char *in, p11ca_v1_RevocationReason *out,
				struct p11ca_errmsg *em)
{
	for (size_t i = 0; in != NULL && i < COUNT(reasons); i++) {
		if (strcasecmp(in, reasons[i].name) == 0) {
			*out = reasons[i].reason;
			return P11CA_OK;
		}
	}
	return p11ca_fail(em, P11CA_E_INVALID_ARG,
			  "unknown revocation reason '%.64s'; use one of unspecified "
			  "keyCompromise cACompromise affiliationChanged superseded "
			  "cessationOfOperation certificateHold privilegeWithdrawn aACompromise",
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
