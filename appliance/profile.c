/* Certificate profiles: the built-in set and the keyUsage / extendedKeyUsage names the
 * configuration accepts. The engine turns a profile into extensions; a CSR never does. */
#include "appliance/config_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "appliance/x509/x509.h"

static const struct {
	const char *name;
	uint32_t bit;
} ku_names[] = {
	{"digitalSignature", X509v3_KU_DIGITAL_SIGNATURE},
	{"nonRepudiation", X509v3_KU_NON_REPUDIATION},
	/* X.509 (2008) renamed nonRepudiation; both spellings mean the same bit. */
	{"contentCommitment", X509v3_KU_NON_REPUDIATION},
	{"keyEncipherment", X509v3_KU_KEY_ENCIPHERMENT},
	{"dataEncipherment", X509v3_KU_DATA_ENCIPHERMENT},
	{"keyAgreement", X509v3_KU_KEY_AGREEMENT},
	{"keyCertSign", X509v3_KU_KEY_CERT_SIGN},
	{"cRLSign", X509v3_KU_CRL_SIGN},
	{"encipherOnly", X509v3_KU_ENCIPHER_ONLY},
	{"decipherOnly", X509v3_KU_DECIPHER_ONLY},
};

#define KU_DS X509v3_KU_DIGITAL_SIGNATURE
#define KU_NR X509v3_KU_NON_REPUDIATION
#define KU_KE X509v3_KU_KEY_ENCIPHERMENT
#define KU_DE X509v3_KU_DATA_ENCIPHERMENT
#define KU_KA X509v3_KU_KEY_AGREEMENT

/* The same five profiles, with the same extensions, as django-ca ships: operators moving
 * from it (or reading its documentation) find what they expect. keyUsage is critical,
 * extendedKeyUsage is not; the CN goes into the SANs and the CA's URLs are added, except
 * that an OCSP responder's certificate carries OCSPNoCheck and so no OCSP URL (a client
 * must not ask a responder about the responder's own certificate). */
#define BUILTIN_COMMON                                                                             \
	.enabled = true, .key_usage_critical = true, .cn_in_san = true, .add_crl_url = true,       \
	.add_issuer_url = true

const struct p11cad_profile profile_builtins[] = {
	{.name = "client",
	 BUILTIN_COMMON,
	 .description = "A certificate for a client.",
	 .key_usage = KU_DS,
	 .eku = {"clientAuth"},
	 .n_eku = 1,
	 .add_ocsp_url = true},
	{.name = "server",
	 BUILTIN_COMMON,
	 .description = "A certificate for a server, allows client and server authentication.",
	 .key_usage = KU_DS | KU_KA | KU_KE,
	 .eku = {"clientAuth", "serverAuth"},
	 .n_eku = 2,
	 .add_ocsp_url = true},
	{.name = "webserver",
	 BUILTIN_COMMON,
	 .description = "A certificate for a webserver.",
	 .key_usage = KU_DS | KU_KA | KU_KE,
	 .eku = {"serverAuth"},
	 .n_eku = 1,
	 .add_ocsp_url = true},
	{.name = "enduser",
	 BUILTIN_COMMON,
	 .description = "A certificate for an enduser, allows client authentication, code and "
			"email signing.",
	 .key_usage = KU_DE | KU_DS | KU_KE,
	 .eku = {"clientAuth", "codeSigning", "emailProtection"},
	 .n_eku = 3,
	 .add_ocsp_url = true},
	{.name = "ocsp",
	 BUILTIN_COMMON,
	 .description = "A certificate for an OCSP responder.",
	 .key_usage = KU_NR | KU_DS | KU_KE,
	 .eku = {"OCSPSigning"},
	 .n_eku = 1,
	 .add_ocsp_url = false,
	 .ocsp_no_check = true},
};
const size_t profile_n_builtins = sizeof(profile_builtins) / sizeof(profile_builtins[0]);

/* Next comma-separated item of *p, blanks trimmed, into item[cap]; 0 at the end, -1 when
 * an item is too long or empty between commas. */
static int next_item(const char **p, char *item, size_t cap)
{
	const char *s = *p;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0')
		return 0;
	const char *end = strchr(s, ',');
	if (end == NULL)
		end = s + strlen(s);
	const char *last = end;
	while (last > s && (last[-1] == ' ' || last[-1] == '\t'))
		last--;
	size_t n = (size_t)(last - s);
	*p = *end == ',' ? end + 1 : end;
	if (n == 0 || n >= cap) {
		snprintf(item, cap, "%.*s", (int)(n < cap ? n : cap - 1), s);
		return -1;
	}
	memcpy(item, s, n);
	item[n] = '\0';
	if (*end == ',' && **p == '\0')
		return -1; /* trailing comma: an item is missing */
	return 1;
}

enum p11ca_err profile_key_usage_parse(const char *list, uint32_t *out, char *bad, size_t bad_cap)
{
	uint32_t ku = 0;
	char item[40];
	int r;
	while ((r = next_item(&list, item, sizeof(item))) != 0) {
		size_t i = 0;
		while (r > 0 && i < sizeof(ku_names) / sizeof(ku_names[0]) &&
		       strcasecmp(item, ku_names[i].name) != 0)
			i++;
		if (r < 0 || i == sizeof(ku_names) / sizeof(ku_names[0])) {
			snprintf(bad, bad_cap, "%s", item);
			return P11CA_E_CONFIG;
		}
		ku |= ku_names[i].bit;
	}
	*out = ku;
	return P11CA_OK;
}

static bool is_dotted_oid(const char *s)
{
	for (const char *p = s; *p != '\0'; p++)
		if (!isdigit((unsigned char)*p) && *p != '.')
			return false;
	return true;
}

bool profile_eku_name_ok(const char *name)
{
	/* id-kp (RFC 5280 4.2.1.12): the arc extended key purposes live under. */
	static const char kp_arc[] = "1.3.6.1.5.5.7.3.";
	char oid[80];
	if (name[0] == '\0')
		return false;
	if (is_dotted_oid(name)) {
		ASN1_OBJECT *obj = OBJ_txt2obj(name, 1);
		ASN1_OBJECT_free(obj);
		return obj != NULL;
	}
	/* A name must be a key purpose: OpenSSL knows many objects (commonName, sha256)
	 * that would make a meaningless, or misleading, extendedKeyUsage. */
	int nid = OBJ_sn2nid(name);
	if (nid == NID_undef)
		nid = OBJ_ln2nid(name);
	if (nid == NID_undef)
		return false;
	if (nid == NID_anyExtendedKeyUsage)
		return true;
	ASN1_OBJECT *obj = OBJ_nid2obj(nid);
	return obj != NULL && OBJ_obj2txt(oid, sizeof(oid), obj, 1) > 0 &&
	       strncmp(oid, kp_arc, sizeof(kp_arc) - 1) == 0;
}

enum p11ca_err profile_eku_parse(const char *list, struct p11cad_profile *p, char *why,
				 size_t why_cap)
{
	char eku[P11CAD_EKU_MAX][40] = {{0}};
	size_t n = 0;
	char item[sizeof(eku[0])];
	int r;
	while ((r = next_item(&list, item, sizeof(item))) != 0) {
		if (r < 0) {
			snprintf(why, why_cap, "'%s' is empty or longer than %zu characters", item,
				 sizeof(item) - 1);
			return P11CA_E_CONFIG;
		}
		if (n == P11CAD_EKU_MAX) {
			snprintf(why, why_cap, "more than %d purposes", P11CAD_EKU_MAX);
			return P11CA_E_CONFIG;
		}
		/* OpenSSL's short names ("serverAuth") or an OID in dotted form; the engine
		 * resolves them with the same OBJ_txt2obj, so what loads here also builds. */
		if (!profile_eku_name_ok(item)) {
			snprintf(why, why_cap,
				 "'%s' is neither a key purpose name (serverAuth, clientAuth, "
				 "codeSigning, emailProtection, timeStamping, OCSPSigning, "
				 "anyExtendedKeyUsage) nor a dotted OID",
				 item);
			return P11CA_E_CONFIG;
		}
		for (size_t i = 0; i < n; i++) {
			if (strcmp(eku[i], item) == 0) {
				snprintf(why, why_cap, "'%s' is listed twice", item);
				return P11CA_E_CONFIG;
			}
		}
		memcpy(eku[n++], item, sizeof(item));
	}
	memcpy(p->eku, eku, sizeof(eku));
	p->n_eku = n;
	return P11CA_OK;
}

void profile_key_usage_format(uint32_t ku, char *out, size_t cap)
{
	size_t len = 0;
	out[0] = '\0';
	uint32_t done = 0;
	for (size_t i = 0; i < sizeof(ku_names) / sizeof(ku_names[0]); i++) {
		if ((ku & ku_names[i].bit) == 0 || (done & ku_names[i].bit) != 0)
			continue;
		done |= ku_names[i].bit;
		int n = snprintf(out + len, cap - len, "%s%s", len ? ", " : "", ku_names[i].name);
		if (n < 0 || (size_t)n >= cap - len)
			return;
		len += (size_t)n;
	}
}

/* ---- [profile NAME] keys ----------------------------------------------------------- */

enum profile_key_id {
	PK_DESCRIPTION,
	PK_KEY_USAGE,
	PK_KEY_USAGE_CRITICAL,
	PK_EKU,
	PK_EKU_CRITICAL,
	PK_EXPIRES_DAYS,
	PK_SUBJECT,
	PK_CN_IN_SAN,
	PK_ADD_CRL_URL,
	PK_ADD_OCSP_URL,
	PK_ADD_ISSUER_URL,
	PK_POLICY,
	PK_OCSP_NO_CHECK,
	PK_TLS_FEATURE,
	PK_ENABLED,
	PK_COUNT
};

const char *const profile_keys[] = {
	[PK_DESCRIPTION] = "description",
	[PK_KEY_USAGE] = "key_usage",
	[PK_KEY_USAGE_CRITICAL] = "key_usage_critical",
	[PK_EKU] = "extended_key_usage",
	[PK_EKU_CRITICAL] = "extended_key_usage_critical",
	[PK_EXPIRES_DAYS] = "expires_days",
	[PK_SUBJECT] = "subject",
	[PK_CN_IN_SAN] = "cn_in_san",
	[PK_ADD_CRL_URL] = "add_crl_url",
	[PK_ADD_OCSP_URL] = "add_ocsp_url",
	[PK_ADD_ISSUER_URL] = "add_issuer_url",
	[PK_POLICY] = "policy",
	[PK_OCSP_NO_CHECK] = "ocsp_no_check",
	[PK_TLS_FEATURE] = "tls_feature_status_request",
	[PK_ENABLED] = "enabled",
};
const size_t profile_n_keys = PK_COUNT;
_Static_assert(PK_COUNT <= PROFILE_KEYS_MAX, "raise PROFILE_KEYS_MAX");

bool profile_key_repeatable(size_t i)
{
	return i == PK_POLICY;
}

void profile_init(struct p11cad_profile *p, const char *name)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	/* What a profile without these keys means (p11cad(8)): keyUsage critical, the CN in
	 * the SANs, the issuing CA's URLs added. */
	p->enabled = true;
	p->key_usage_critical = true;
	p->cn_in_san = true;
	p->add_crl_url = p->add_ocsp_url = p->add_issuer_url = true;
}

static bool text_bool(const char *v, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0 || strcasecmp(v, no[i]) == 0) {
			*out = strcasecmp(v, yes[i]) == 0;
			return true;
		}
	}
	return false;
}

/* Shown in listings and written back into files: printable text only. */
static bool text_printable(const char *v)
{
	for (const unsigned char *c = (const unsigned char *)v; *c != '\0'; c++)
		if (*c < 0x20 || *c == 0x7f)
			return false;
	return true;
}

static enum p11ca_err set_text(char *field, size_t cap, const char *key, const char *v, char *why,
			       size_t why_cap)
{
	if (strlen(v) >= cap) {
		snprintf(why, why_cap, "%s is longer than %zu bytes", key, cap - 1);
		return P11CA_E_CONFIG;
	}
	snprintf(field, cap, "%s", v);
	return P11CA_OK;
}

static bool *bool_field(struct p11cad_profile *p, size_t i)
{
	switch (i) {
	case PK_KEY_USAGE_CRITICAL:
		return &p->key_usage_critical;
	case PK_EKU_CRITICAL:
		return &p->eku_critical;
	case PK_CN_IN_SAN:
		return &p->cn_in_san;
	case PK_ADD_CRL_URL:
		return &p->add_crl_url;
	case PK_ADD_OCSP_URL:
		return &p->add_ocsp_url;
	case PK_ADD_ISSUER_URL:
		return &p->add_issuer_url;
	case PK_OCSP_NO_CHECK:
		return &p->ocsp_no_check;
	case PK_TLS_FEATURE:
		return &p->tls_feature_status_request;
	case PK_ENABLED:
		return &p->enabled;
	default:
		return NULL;
	}
}

/* The messages of x509_name_parse and x509_policy_text_parse are whole sentences; the
 * configuration loader prefixes FILE:LINE. */
static enum p11ca_err set_subject(struct p11cad_profile *p, const char *v, char *why,
				  size_t why_cap)
{
	if (v[0] == '\0') {
		p->subject[0] = '\0';
		return P11CA_OK;
	}
	X509_NAME *name = NULL;
	struct p11ca_errmsg em;
	p11ca_errmsg_clear(&em);
	if (x509_name_parse(v, &name, &em) != P11CA_OK) {
		snprintf(why, why_cap, "subject: %s", p11ca_errmsg_text(&em));
		return P11CA_E_CONFIG;
	}
	X509_NAME_free(name);
	return set_text(p->subject, sizeof(p->subject), "subject", v, why, why_cap);
}

static enum p11ca_err add_policy(struct p11cad_profile *p, const char *v, char *why, size_t why_cap)
{
	struct x509_policy_text t;
	struct p11ca_errmsg em;
	p11ca_errmsg_clear(&em);
	if (p->n_policies == P11CAD_POLICIES_MAX) {
		snprintf(why, why_cap, "more than %d policy lines", P11CAD_POLICIES_MAX);
		return P11CA_E_CONFIG;
	}
	if (x509_policy_text_parse(v, &t, &em) != P11CA_OK) {
		snprintf(why, why_cap, "policy: %s (write OID[;cps=URI][;notice=TEXT])",
			 p11ca_errmsg_text(&em));
		return P11CA_E_CONFIG;
	}
	for (size_t i = 0; i < p->n_policies; i++) {
		if (strncmp(p->policies[i], t.oid, strlen(t.oid)) == 0 &&
		    (p->policies[i][strlen(t.oid)] == '\0' ||
		     p->policies[i][strlen(t.oid)] == ';')) {
			snprintf(why, why_cap, "policy %s is given twice", t.oid);
			return P11CA_E_CONFIG;
		}
	}
	P11CA_GUARD(set_text(p->policies[p->n_policies], sizeof(p->policies[0]), "policy", v, why,
			     why_cap));
	p->n_policies++;
	return P11CA_OK;
}

enum p11ca_err profile_key_set(struct p11cad_profile *p, size_t i, const char *v, char *why,
			       size_t why_cap)
{
	char bad[64];
	bool *b = bool_field(p, i);
	if (b != NULL) {
		if (!text_bool(v, b)) {
			snprintf(why, why_cap, "%s must be true or false, not '%.60s'",
				 profile_keys[i], v);
			return P11CA_E_CONFIG;
		}
		return P11CA_OK;
	}
	switch (i) {
	case PK_DESCRIPTION:
		if (!text_printable(v)) {
			snprintf(why, why_cap, "description has control characters");
			return P11CA_E_CONFIG;
		}
		return set_text(p->description, sizeof(p->description), "description", v, why,
				why_cap);
	case PK_KEY_USAGE:
		if (profile_key_usage_parse(v, &p->key_usage, bad, sizeof(bad)) != P11CA_OK) {
			snprintf(why, why_cap,
				 "unknown key usage '%s'; use digitalSignature, nonRepudiation, "
				 "keyEncipherment, dataEncipherment, keyAgreement, keyCertSign, "
				 "cRLSign, encipherOnly, decipherOnly",
				 bad);
			return P11CA_E_CONFIG;
		}
		return P11CA_OK;
	case PK_EKU: {
		char inner[200];
		if (profile_eku_parse(v, p, inner, sizeof(inner)) != P11CA_OK) {
			snprintf(why, why_cap, "extended_key_usage: %s", inner);
			return P11CA_E_CONFIG;
		}
		return P11CA_OK;
	}
	case PK_EXPIRES_DAYS: {
		unsigned long n = 0;
		const char *c = v;
		for (; *c >= '0' && *c <= '9' && n <= 36500; c++)
			n = n * 10 + (unsigned long)(*c - '0');
		if (*v == '\0' || *c != '\0' || n > 36500) {
			snprintf(why, why_cap,
				 "expires_days must be a whole number from 0 to 36500, not '%.60s'",
				 v);
			return P11CA_E_CONFIG;
		}
		p->expires_days = (unsigned)n;
		return P11CA_OK;
	}
	case PK_SUBJECT:
		return set_subject(p, v, why, why_cap);
	case PK_POLICY:
		return add_policy(p, v, why, why_cap);
	default:
		snprintf(why, why_cap, "internal: profile key %zu has no parser", i);
		return P11CA_E_CONFIG;
	}
}
