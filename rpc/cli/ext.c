/*
 * Extension options in (ExtensionSettings from the command line) and CA settings out. The
 * server checks every value again; here the shapes are checked so that a typo is a usage
 * error naming the option, before anything is sent.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "rpc/cli/ext.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const ku_names[] = {
	"digitalSignature", "nonRepudiation", "contentCommitment", "keyEncipherment",
	"dataEncipherment", "keyAgreement",   "keyCertSign",	   "cRLSign",
	"encipherOnly",	    "decipherOnly",
};

static const char *const eku_names[] = {"serverAuth",	   "clientAuth",   "codeSigning",
					"emailProtection", "timeStamping", "OCSPSigning"};

enum p11ca_err cli_policy_parse(const char *in, p11ca_v1_Policy *out, struct p11ca_errmsg *em)
{
	const char *p = in != NULL ? strchr(in, ';') : NULL;
	size_t n = in == NULL ? 0 : p != NULL ? (size_t)(p - in) : strlen(in);

	memset(out, 0, sizeof(*out));
	if (in == NULL || n == 0 || n >= sizeof(out->oid))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "'%.64s': a policy starts with its OID, e.g. 2.23.140.1.2.1",
				  in ? in : "");
	memcpy(out->oid, in, n);
	P11CA_GUARD(cli_oid_check(out->oid, em));
	while (p != NULL) {
		p++;
		if (strncasecmp(p, "notice=", 7) == 0) {
			/* The rest of the argument, semicolons included: notices are prose. */
			size_t len = strlen(p + 7);
			if (len == 0 || len >= sizeof(out->user_notice))
				return p11ca_fail(em, P11CA_E_INVALID_ARG,
						  "a policy notice is 1..200 bytes, not %zu", len);
			memcpy(out->user_notice, p + 7, len + 1);
			break;
		}
		if (strncasecmp(p, "cps=", 4) != 0)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "'%.64s' in a policy: use cps=URI or notice=TEXT", p);
		const char *end = strchr(p, ';');
		size_t len = end != NULL ? (size_t)(end - p - 4) : strlen(p + 4);
		if (out->cps_uris_count == COUNT(out->cps_uris))
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "at most %zu cps= URIs per policy", COUNT(out->cps_uris));
		if (len == 0 || len >= sizeof(out->cps_uris[0]))
			return p11ca_fail(em, P11CA_E_INVALID_ARG, "a CPS URI is 1..255 bytes");
		char *dst = out->cps_uris[out->cps_uris_count++];
		memcpy(dst, p + 4, len);
		dst[len] = '\0';
		p = end;
	}
	return P11CA_OK;
}

static const char *canonical(const char *item, size_t n, const char *const *names, size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (strlen(names[i]) == n && strncasecmp(names[i], item, n) == 0)
			return names[i];
	return NULL;
}

enum p11ca_err cli_usage_parse(const char *in, bool key_usage, p11ca_v1_UsageList *out,
			       struct p11ca_errmsg *em)
{
	const char *what = key_usage ? "keyUsage" : "extendedKeyUsage";

	memset(out, 0, sizeof(*out));
	out->critical = key_usage; /* RFC 5280 4.2.1.3: keyUsage SHOULD be critical */
	for (const char *p = in; p != NULL && *p != '\0';) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t n = strcspn(p, ", ");
		if (n == 0)
			break;
		char item[64];
		snprintf(item, sizeof(item), "%.*s", (int)(n < 63 ? n : 63), p);
		const char *name = key_usage ? canonical(p, n, ku_names, COUNT(ku_names))
					     : canonical(p, n, eku_names, COUNT(eku_names));
		p += n;
		if (strcasecmp(item, "critical") == 0) {
			out->critical = true;
			continue;
		}
		if (strcasecmp(item, "noncritical") == 0 || strcasecmp(item, "non-critical") == 0) {
			out->critical = false;
			continue;
		}
		if (name == NULL && !key_usage && cli_oid_check(item, NULL) == P11CA_OK)
			name = item;
		if (name == NULL)
			return p11ca_fail(
				em, P11CA_E_INVALID_ARG,
				key_usage ? "unknown keyUsage '%s'; use digitalSignature, "
					    "nonRepudiation, keyEncipherment, "
					    "dataEncipherment, keyAgreement, keyCertSign, "
					    "cRLSign, encipherOnly or decipherOnly"
					  : "unknown extendedKeyUsage '%s'; use serverAuth, "
					    "clientAuth, codeSigning, emailProtection, "
					    "timeStamping, OCSPSigning or a dotted OID",
				item);
		for (pb_size_t i = 0; i < out->names_count; i++)
			if (strcmp(out->names[i], name) == 0)
				return p11ca_fail(em, P11CA_E_INVALID_ARG, "%s names %s twice",
						  what, name);
		if (out->names_count == COUNT(out->names) || strlen(name) >= sizeof(out->names[0]))
			return p11ca_fail(em, P11CA_E_INVALID_ARG, "%s: too many or too long names",
					  what);
		memcpy(out->names[out->names_count++], name, strlen(name) + 1); /* length checked */
	}
	if (out->names_count == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "an empty %s list; use --no-%s to leave the extension out", what,
				  key_usage ? "key-usage" : "ext-key-usage");
	return P11CA_OK;
}

static enum p11ca_err url_check(const char *v, struct p11ca_errmsg *em)
{
	if (strncasecmp(v, "http://", 7) != 0 && strncasecmp(v, "https://", 8) != 0 &&
	    strncasecmp(v, "ldap://", 7) != 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "'%.64s' is not an http://, https:// or ldap:// URL", v);
	for (const char *p = v; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return p11ca_fail(
				em, P11CA_E_INVALID_ARG,
				"'%.64s' has a space or control character; percent-encode "
				"it",
				v);
	return P11CA_OK;
}

/* One StringList option pair: --PREFIXname (repeatable) and --no-PREFIXname. */
static int string_list(struct cli *cli, const struct cli_args *a, const char *prefix,
		       const char *name, bool names, p11ca_v1_StringList *l, bool *has, bool *any)
{
	struct p11ca_errmsg em = {0};
	char on[48], off[48];
	snprintf(on, sizeof(on), "%s%s", prefix, name);
	snprintf(off, sizeof(off), "no-%s%s", prefix, name);
	size_t n = cli_arg_list(cli->cmd, a, on, NULL, 0);
	bool none = cli_arg(cli->cmd, a, off) != NULL;

	if (n == 0 && !none)
		return 0;
	int rc = cli_exclusive(cli, a, on, off);
	if (rc == 0)
		rc = cli_copy_list(cli, a, on, l->values[0], sizeof(l->values[0]), COUNT(l->values),
				   &l->values_count);
	for (pb_size_t i = 0; rc == 0 && i < l->values_count; i++) {
		enum p11ca_err err = names ? cli_general_name_check(l->values[i], false, &em)
					   : url_check(l->values[i], &em);
		if (err != P11CA_OK) {
			char opt[56];
			snprintf(opt, sizeof(opt), "--%s", on);
			rc = cli_bad_value(cli, opt, &em);
		}
	}
	*has = true;
	*any = true;
	return rc;
}

static int policies(struct cli *cli, const struct cli_args *a, const char *prefix,
		    p11ca_v1_PolicyList *l, bool *has, bool *any)
{
	struct p11ca_errmsg em = {0};
	const char *v[COUNT(l->policies) + 1];
	char on[48], off[48];
	snprintf(on, sizeof(on), "%spolicy", prefix);
	snprintf(off, sizeof(off), "no-%spolicy", prefix);
	size_t n = cli_arg_list(cli->cmd, a, on, v, COUNT(v));
	bool none = cli_arg(cli->cmd, a, off) != NULL;

	if (n == 0 && !none)
		return 0;
	*has = *any = true;
	char opt[56];
	snprintf(opt, sizeof(opt), "--%s", on);
	int rc = cli_exclusive(cli, a, on, off);
	if (rc == 0 && n > COUNT(l->policies)) {
		char why[64];
		snprintf(why, sizeof(why), "%zu given; at most %zu", n, COUNT(l->policies));
		return cli_error(cli, CLI_EX_USAGE, "too many certificate policies", why, NULL);
	}
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (cli_policy_parse(v[i], &l->policies[i], &em) != P11CA_OK)
			return cli_bad_value(cli, opt, &em);
		l->policies_count = (pb_size_t)(i + 1);
	}
	return rc;
}

static int usage(struct cli *cli, const struct cli_args *a, bool key_usage, p11ca_v1_UsageList *u,
		 bool *has, bool *any)
{
	struct p11ca_errmsg em = {0};
	const char *on = key_usage ? "key-usage" : "ext-key-usage";
	const char *off = key_usage ? "no-key-usage" : "no-ext-key-usage";
	const char *v = cli_arg(cli->cmd, a, on);
	bool none = cli_arg(cli->cmd, a, off) != NULL;

	if (v == NULL && !none)
		return 0;
	*has = *any = true;
	int rc = cli_exclusive(cli, a, on, off);
	if (rc == 0 && v != NULL && cli_usage_parse(v, key_usage, u, &em) != P11CA_OK)
		rc = cli_bad_value(cli, key_usage ? "--key-usage" : "--ext-key-usage", &em);
	return rc; /* --no-...: present with no names, which leaves the extension out */
}

int cli_ext_parse(struct cli *cli, const struct cli_args *a, const char *prefix, bool usages,
		  p11ca_v1_ExtensionSettings *e, bool *any)
{
	int rc = string_list(cli, a, prefix, "crl-url", false, &e->crl_urls, &e->has_crl_urls, any);
	if (rc == 0)
		rc = string_list(cli, a, prefix, "ocsp-url", false, &e->ocsp_urls,
				 &e->has_ocsp_urls, any);
	if (rc == 0)
		rc = string_list(cli, a, prefix, "issuer-url", false, &e->issuer_urls,
				 &e->has_issuer_urls, any);
	if (rc == 0)
		rc = string_list(cli, a, prefix, "issuer-alt-name", true, &e->issuer_alt_names,
				 &e->has_issuer_alt_names, any);
	if (rc == 0)
		rc = policies(cli, a, prefix, &e->policies, &e->has_policies, any);
	if (rc != 0 || !usages)
		return rc;
	rc = usage(cli, a, true, &e->key_usage, &e->has_key_usage, any);
	if (rc == 0)
		rc = usage(cli, a, false, &e->extended_key_usage, &e->has_extended_key_usage, any);
	if (rc == 0)
		rc = cli_exclusive(cli, a, "ocsp-no-check", "no-ocsp-no-check");
	if (rc == 0 && (cli_arg(cli->cmd, a, "ocsp-no-check") != NULL ||
			cli_arg(cli->cmd, a, "no-ocsp-no-check") != NULL)) {
		e->has_ocsp_no_check = *any = true;
		e->ocsp_no_check = cli_arg(cli->cmd, a, "ocsp-no-check") != NULL;
	}
	const char *feature = cli_arg(cli->cmd, a, "tls-feature");
	bool staple = cli_arg(cli->cmd, a, "must-staple") != NULL;
	bool none = cli_arg(cli->cmd, a, "no-tls-feature") != NULL;
	if (rc == 0 && feature != NULL && strcasecmp(feature, "status_request") != 0 &&
	    strcasecmp(feature, "OCSPMustStaple") != 0)
		rc = cli_error(cli, CLI_EX_USAGE, "bad --tls-feature",
			       "the only TLS feature is status_request (OCSP must-staple)", NULL);
	if (rc == 0 && none && (feature != NULL || staple))
		rc = cli_error(cli, CLI_EX_USAGE,
			       "--no-tls-feature contradicts --tls-feature "
			       "and --must-staple",
			       NULL, "give one");
	if (rc == 0 && (feature != NULL || staple || none)) {
		e->has_tls_feature_status_request = *any = true;
		e->tls_feature_status_request = !none;
	}
	return rc;
}

/* ---- output ------------------------------------------------------------------------------ */

static void json_list(struct cli_json *j, const char *key, bool has, const p11ca_v1_StringList *l)
{
	if (!has) {
		cli_json_str(j, key, NULL);
		return;
	}
	cli_json_arr(j, key);
	for (pb_size_t i = 0; i < l->values_count; i++)
		cli_json_str(j, NULL, l->values[i]);
	cli_json_arr_end(j);
}

void cli_json_usage(struct cli_json *j, const char *key, bool has, const p11ca_v1_UsageList *u)
{
	if (!has) {
		cli_json_str(j, key, NULL);
		return;
	}
	cli_json_obj(j, key);
	cli_json_arr(j, "names");
	for (pb_size_t i = 0; i < u->names_count; i++)
		cli_json_str(j, NULL, u->names[i]);
	cli_json_arr_end(j);
	cli_json_bool(j, "critical", u->critical);
	cli_json_obj_end(j);
}

static void json_opt_bool(struct cli_json *j, const char *key, bool has, bool v)
{
	if (has)
		cli_json_bool(j, key, v);
	else
		cli_json_str(j, key, NULL);
}

void cli_json_ext(struct cli_json *j, const char *key, const p11ca_v1_ExtensionSettings *e)
{
	cli_json_obj(j, key);
	json_list(j, "crl_urls", e->has_crl_urls, &e->crl_urls);
	json_list(j, "ocsp_urls", e->has_ocsp_urls, &e->ocsp_urls);
	json_list(j, "issuer_urls", e->has_issuer_urls, &e->issuer_urls);
	if (e->has_policies) {
		cli_json_arr(j, "policies");
		for (pb_size_t i = 0; i < e->policies.policies_count; i++) {
			const p11ca_v1_Policy *p = &e->policies.policies[i];
			cli_json_obj(j, NULL);
			cli_json_str(j, "oid", p->oid);
			cli_json_arr(j, "cps_uris");
			for (pb_size_t k = 0; k < p->cps_uris_count; k++)
				cli_json_str(j, NULL, p->cps_uris[k]);
			cli_json_arr_end(j);
			cli_json_str(j, "user_notice", p->user_notice[0] ? p->user_notice : NULL);
			cli_json_obj_end(j);
		}
		cli_json_arr_end(j);
	} else {
		cli_json_str(j, "policies", NULL);
	}
	json_list(j, "issuer_alt_names", e->has_issuer_alt_names, &e->issuer_alt_names);
	json_opt_bool(j, "ocsp_no_check", e->has_ocsp_no_check, e->ocsp_no_check);
	json_opt_bool(j, "tls_feature_status_request", e->has_tls_feature_status_request,
		      e->tls_feature_status_request);
	cli_json_usage(j, "key_usage", e->has_key_usage, &e->key_usage);
	cli_json_usage(j, "extended_key_usage", e->has_extended_key_usage, &e->extended_key_usage);
	cli_json_obj_end(j);
}

void cli_json_settings(struct cli_json *j, const char *key, const p11ca_v1_CaSettings *s)
{
	static const p11ca_v1_ExtensionSettings none = {0};
	cli_json_obj(j, key);
	cli_json_bool(j, "enabled", s->enabled);
	cli_json_str(j, "default_profile", s->default_profile[0] ? s->default_profile : NULL);
	cli_json_str(j, "signature_algorithm", cli_sig_alg_name(s->signature_algorithm));
	cli_json_str(j, "key_uri", s->key_uri[0] ? s->key_uri : NULL);
	cli_json_arr(j, "permitted_names");
	for (pb_size_t i = 0; i < s->permitted_names_count; i++)
		cli_json_str(j, NULL, s->permitted_names[i]);
	cli_json_arr_end(j);
	cli_json_arr(j, "excluded_names");
	for (pb_size_t i = 0; i < s->excluded_names_count; i++)
		cli_json_str(j, NULL, s->excluded_names[i]);
	cli_json_arr_end(j);
	cli_json_ext(j, "issued", s->has_issued ? &s->issued : &none);
	cli_json_obj_end(j);
}

/* Join up to `n` strings of a fixed-size array with ", ". */
static void join(char *out, size_t out_size, const char *first, size_t stride, size_t n)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < n && o < out_size; i++) {
		int w = snprintf(out + o, out_size - o, "%s%s", i ? ", " : "", first + i * stride);
		if (w < 0)
			break;
		o += (size_t)w;
	}
}

void cli_usage_text(bool has, const p11ca_v1_UsageList *u, char *out, size_t out_size)
{
	char names[512];
	if (!has) {
		snprintf(out, out_size, "-");
		return;
	}
	join(names, sizeof(names), u->names[0], sizeof(u->names[0]), u->names_count);
	if (u->names_count == 0)
		snprintf(out, out_size, "(none)");
	else
		snprintf(out, out_size, "%s%s", names, u->critical ? " (critical)" : "");
}

static void text_list(FILE *f, const char *key, bool has, const p11ca_v1_StringList *l)
{
	char buf[2200];
	join(buf, sizeof(buf), l->values[0], sizeof(l->values[0]), l->values_count);
	fprintf(f, "%-20s %s\n", key, !has ? "(inherited)" : l->values_count ? buf : "(none)");
}

void cli_text_settings(FILE *f, const p11ca_v1_CaSettings *s)
{
	const p11ca_v1_ExtensionSettings *e = &s->issued;
	bool h = s->has_issued;
	char buf[2200];

	fprintf(f, "%-20s %s\n", "enabled:", s->enabled ? "yes" : "no (issues nothing)");
	fprintf(f, "%-20s %s\n",
		"default profile:", s->default_profile[0] ? s->default_profile : "(the server's)");
	fprintf(f, "%-20s %s\n", "issues with:", cli_sig_alg_name(s->signature_algorithm));
	fprintf(f, "%-20s %s\n", "key URI:", s->key_uri[0] ? s->key_uri : "-");
	join(buf, sizeof(buf), s->permitted_names[0], sizeof(s->permitted_names[0]),
	     s->permitted_names_count);
	fprintf(f, "%-20s %s\n", "permitted names:", buf[0] ? buf : "-");
	join(buf, sizeof(buf), s->excluded_names[0], sizeof(s->excluded_names[0]),
	     s->excluded_names_count);
	fprintf(f, "%-20s %s\n", "excluded names:", buf[0] ? buf : "-");
	fputs("For issued certificates (empty: the profile decides):\n", f);
	text_list(f, "  CRL URLs:", h && e->has_crl_urls, &e->crl_urls);
	text_list(f, "  OCSP URLs:", h && e->has_ocsp_urls, &e->ocsp_urls);
	text_list(f, "  issuer URLs:", h && e->has_issuer_urls, &e->issuer_urls);
	text_list(f, "  issuerAltName:", h && e->has_issuer_alt_names, &e->issuer_alt_names);
	if (h && e->has_policies) {
		fprintf(f, "%-20s %s\n", "  policies:", e->policies.policies_count ? "" : "(none)");
		for (pb_size_t i = 0; i < e->policies.policies_count; i++) {
			const p11ca_v1_Policy *p = &e->policies.policies[i];
			join(buf, sizeof(buf), p->cps_uris[0], sizeof(p->cps_uris[0]),
			     p->cps_uris_count);
			fprintf(f, "    %s%s%s%s%s\n", p->oid, buf[0] ? " cps=" : "", buf,
				p->user_notice[0] ? " notice=" : "", p->user_notice);
		}
	} else {
		fprintf(f, "%-20s %s\n", "  policies:", "(inherited)");
	}
	cli_usage_text(h && e->has_key_usage, &e->key_usage, buf, sizeof(buf));
	fprintf(f, "%-20s %s\n", "  keyUsage:", strcmp(buf, "-") ? buf : "(inherited)");
	cli_usage_text(h && e->has_extended_key_usage, &e->extended_key_usage, buf, sizeof(buf));
	fprintf(f, "%-20s %s\n", "  extKeyUsage:", strcmp(buf, "-") ? buf : "(inherited)");
	fprintf(f, "%-20s %s\n", "  OCSPNoCheck:",
		!(h && e->has_ocsp_no_check) ? "(inherited)"
		: e->ocsp_no_check	     ? "yes"
					     : "no");
	fprintf(f, "%-20s %s\n", "  must-staple:",
		!(h && e->has_tls_feature_status_request) ? "(inherited)"
		: e->tls_feature_status_request		  ? "yes"
							  : "no");
}
