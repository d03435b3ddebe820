/*
 * rpc/cli/ext.h — the extension options shared by cert sign, ca init, ca import and ca edit
 * (p11ca.v1.ExtensionSettings), and how CA settings and profiles are shown.
 *
 * Naming: an option without a prefix sets what goes into the certificates a CA issues
 * (django-ca's --crl-url, --ocsp-url, --issuer-url); in cert sign that is the certificate
 * being signed. In ca init the same options with "ca-" (--ca-crl-url, ...) set the new
 * CA's own certificate, as django-ca's --ca-* options did. "--no-X" gives "none", even
 * when a lower layer (profile, CA) has some; leaving both out inherits.
 */
#ifndef P11CA_RPC_CLI_EXT_H
#define P11CA_RPC_CLI_EXT_H

#include "rpc/cli/cli.h"

/* The options of the issued layer: URLs, policies, issuerAltName, OCSPNoCheck, TLS
 * feature, keyUsage and extendedKeyUsage, each with its --no- form. */
#define CLI_EXT_OPTS                                                                               \
	{"crl-url", "URL", true,                                                                   \
	 "cRLDistributionPoints URL; {ca_name} and {ca_serial} are filled in by the server"},      \
		{"no-crl-url", NULL, false, "no CRL distribution point at all"},                   \
		{"ocsp-url", "URL", true, "authorityInfoAccess OCSP responder URL"},               \
		{"no-ocsp-url", NULL, false, "no OCSP responder URL at all"},                      \
		{"issuer-url", "URL", true,                                                        \
		 "authorityInfoAccess caIssuers URL (where the "                                   \
		 "issuer's certificate is)"},                                                      \
		{"no-issuer-url", NULL, false, "no caIssuers URL at all"},                         \
		{"policy", "POLICY", true,                                                         \
		 "certificatePolicies entry: OID[;cps=URI][;cps=URI][;notice=TEXT], e.g. "         \
		 "'2.23.140.1.2.1;cps=https://ca.example/cps' (notice last: it may hold ';')"},    \
		{"no-policy", NULL, false, "no certificatePolicies extension"},                    \
		{"issuer-alt-name", "NAME", true, "issuerAltName, written like --san"},            \
		{"no-issuer-alt-name", NULL, false, "no issuerAltName extension"},                 \
		{"ocsp-no-check", NULL, false,                                                     \
		 "add id-pkix-ocsp-nocheck (for OCSP responder certificates)"},                    \
		{"no-ocsp-no-check", NULL, false, "leave OCSPNoCheck out"},                        \
		{"tls-feature", "FEATURE", false,                                                  \
		 "TLS feature extension; the only feature is status_request (OCSP must-staple)"},  \
		{"must-staple", NULL, false, "the same as --tls-feature status_request"},          \
		{"no-tls-feature", NULL, false, "leave the TLS feature extension out"},            \
		{"key-usage", "LIST", false,                                                       \
		 "keyUsage bits, comma-separated (digitalSignature, nonRepudiation, "              \
		 "keyEncipherment, dataEncipherment, keyAgreement, keyCertSign, cRLSign, "         \
		 "encipherOnly, decipherOnly); critical unless the list has 'noncritical'"},       \
		{"no-key-usage", NULL, false, "leave keyUsage out"},                               \
		{"ext-key-usage", "LIST", false,                                                   \
		 "extendedKeyUsage, comma-separated: serverAuth, clientAuth, codeSigning, "        \
		 "emailProtection, timeStamping, OCSPSigning or dotted OIDs; non-critical "        \
		 "unless the list has 'critical'"},                                                \
	{                                                                                          \
		"no-ext-key-usage", NULL, false, "leave extendedKeyUsage out"                      \
	}

/* ca init only: the new CA certificate's own URLs, policies and issuerAltName. */
#define CLI_CA_EXT_OPTS                                                                            \
	{"ca-crl-url", "URL", true, "the new CA certificate's own CRL URL (from its parent)"},     \
		{"no-ca-crl-url", NULL, false, "no CRL URL in the CA certificate"},                \
		{"ca-ocsp-url", "URL", true, "the CA certificate's own OCSP URL"},                 \
		{"no-ca-ocsp-url", NULL, false, "no OCSP URL in the CA certificate"},              \
		{"ca-issuer-url", "URL", true, "the CA certificate's own caIssuers URL"},          \
		{"no-ca-issuer-url", NULL, false, "no caIssuers URL in the CA certificate"},       \
		{"ca-policy", "POLICY", true,                                                      \
		 "certificatePolicies of the CA certificate, as --policy"},                        \
		{"no-ca-policy", NULL, false, "no certificatePolicies in the CA certificate"},     \
		{"ca-issuer-alt-name", "NAME", true, "issuerAltName of the CA certificate"},       \
	{                                                                                          \
		"no-ca-issuer-alt-name", NULL, false, "no issuerAltName in the CA certificate"     \
	}

/*
 * Read the extension options named with `prefix` ("" or "ca-") into ext. `usages` says
 * whether the command offers the keyUsage, EKU, OCSPNoCheck and TLS feature options
 * (false: they are not in its table). *any tells whether any was given (the caller then
 * sets has_...). Returns 0 or CLI_EX_USAGE after printing which option is wrong.
 */
int cli_ext_parse(struct cli *cli, const struct cli_args *a, const char *prefix, bool usages,
		  p11ca_v1_ExtensionSettings *ext, bool *any);

/* "OID[;cps=URI]...[;notice=TEXT]" into a Policy. */
P11CA_MUST_CHECK enum p11ca_err cli_policy_parse(const char *in, p11ca_v1_Policy *out,
						 struct p11ca_errmsg *em);
/* A comma-separated keyUsage (key_usage) or extendedKeyUsage list, with an optional
 * "critical" or "noncritical" item; names are checked and sent in canonical spelling. */
P11CA_MUST_CHECK enum p11ca_err cli_usage_parse(const char *in, bool key_usage,
						p11ca_v1_UsageList *out, struct p11ca_errmsg *em);

/* Output: an ExtensionSettings layer and a CA's settings, as JSON or "key: value" text.
 * Only what the layer sets is shown; "none" marks a list present and empty. */
void cli_json_ext(struct cli_json *j, const char *key, const p11ca_v1_ExtensionSettings *e);
void cli_json_settings(struct cli_json *j, const char *key, const p11ca_v1_CaSettings *s);
void cli_text_settings(FILE *f, const p11ca_v1_CaSettings *s);
void cli_json_usage(struct cli_json *j, const char *key, bool has, const p11ca_v1_UsageList *u);
/* "digitalSignature, keyEncipherment (critical)"; "-" when absent. */
void cli_usage_text(bool has, const p11ca_v1_UsageList *u, char *out, size_t out_size);

#endif
