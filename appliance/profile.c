/* Certificate profiles: the built-in set and the keyUsage / extendedKeyUsage names the
 * configuration accepts. The engine turns a profile into extensions; a CSR never does. */
#include "appliance/config_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/objects.h>
#include <openssl/x509v3.h>

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
 * from it (or reading its documentation) find what they expect. */
const struct p11cad_profile profile_builtins[] = {
	{.name = "client",
	 .enabled = true,
	 .key_usage = KU_DS,
	 .key_usage_critical = true,
	 .eku = {"clientAuth"},
	 .n_eku = 1},
	{.name = "server",
	 .enabled = true,
	 .key_usage = KU_DS | KU_KA | KU_KE,
	 .key_usage_critical = true,
	 .eku = {"clientAuth", "serverAuth"},
	 .n_eku = 2},
	{.name = "webserver",
	 .enabled = true,
	 .key_usage = KU_DS | KU_KA | KU_KE,
	 .key_usage_critical = true,
	 .eku = {"serverAuth"},
	 .n_eku = 1},
	{.name = "enduser",
	 .enabled = true,
	 .key_usage = KU_DE | KU_DS | KU_KE,
	 .key_usage_critical = true,
	 .eku = {"clientAuth", "codeSigning", "emailProtection"},
	 .n_eku = 3},
	{.name = "ocsp",
	 .enabled = true,
	 .key_usage = KU_NR | KU_DS | KU_KE,
	 .key_usage_critical = true,
	 .eku = {"OCSPSigning"},
	 .n_eku = 1},
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
		ASN1_OBJECT *obj = NULL;
		if (is_dotted_oid(item))
			obj = OBJ_txt2obj(item, 1);
		else if (OBJ_sn2nid(item) != NID_undef)
			obj = OBJ_txt2obj(item, 0);
		if (obj == NULL) {
			snprintf(why, why_cap,
				 "'%s' is neither an OpenSSL short name (serverAuth, clientAuth, "
				 "codeSigning, emailProtection, timeStamping, OCSPSigning) nor a "
				 "dotted OID",
				 item);
			return P11CA_E_CONFIG;
		}
		ASN1_OBJECT_free(obj);
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
