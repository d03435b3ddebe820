/*
 * profile_list: the profiles of the configuration ([profile NAME] over the built-in
 * ones), disabled ones included, so an operator sees what `cert sign --profile` takes.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/x509.h>

#include "appliance/config_internal.h"
#include "appliance/engine/engine_internal.h"

static void usage_fill(p11ca_v1_UsageList *u, bool critical)
{
	u->critical = critical;
}

/* keyUsage bits → their configuration names, one per entry. */
static void key_usage_fill(p11ca_v1_UsageList *u, uint32_t ku, bool critical)
{
	char list[256];
	profile_key_usage_format(ku, list, sizeof(list));
	usage_fill(u, critical);
	for (char *save = NULL, *t = strtok_r(list, ", ", &save);
	     t != NULL && u->names_count < sizeof(u->names) / sizeof(u->names[0]);
	     t = strtok_r(NULL, ", ", &save))
		snprintf(u->names[u->names_count++], sizeof(u->names[0]), "%s", t);
}

/* The default subject as RFC 4514 (as every other subject in replies); the configured
 * text when it does not fit. */
static void subject_fill(char *out, size_t cap, const char *text)
{
	X509_NAME *name = NULL;
	struct p11ca_errmsg em;
	p11ca_errmsg_clear(&em);
	out[0] = '\0';
	if (text[0] == '\0')
		return;
	if (x509_name_parse(text, &name, &em) != P11CA_OK ||
	    x509_name_format(name, out, cap, &em) != P11CA_OK)
		snprintf(out, cap, "%s", text);
	X509_NAME_free(name);
}

enum p11ca_err engine_op_profile_list(struct engine_call *c, p11ca_v1_Request *req,
				      p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	(void)req;
	(void)em;
	const struct p11cad_config *cfg = c->eng->cfg;
	p11ca_v1_ProfileListResponse *out = &resp->result.profile_list;
	const size_t max = sizeof(out->profiles) / sizeof(out->profiles[0]);
	for (size_t i = 0; i < cfg->n_profiles && i < max; i++) {
		const struct p11cad_profile *p = &cfg->profiles[i];
		p11ca_v1_ProfileInfo *o = &out->profiles[out->profiles_count++];
		memset(o, 0, sizeof(*o));
		snprintf(o->name, sizeof(o->name), "%s", p->name);
		snprintf(o->description, sizeof(o->description), "%s", p->description);
		o->enabled = p->enabled;
		o->is_default = strcmp(p->name, cfg->default_profile) == 0;
		o->has_key_usage = true;
		key_usage_fill(&o->key_usage, p->key_usage, p->key_usage_critical);
		o->has_extended_key_usage = true;
		usage_fill(&o->extended_key_usage, p->eku_critical);
		for (size_t k = 0;
		     k < p->n_eku && k < sizeof(o->extended_key_usage.names) /
						     sizeof(o->extended_key_usage.names[0]);
		     k++)
			snprintf(o->extended_key_usage.names[o->extended_key_usage.names_count++],
				 sizeof(o->extended_key_usage.names[0]), "%s", p->eku[k]);
		subject_fill(o->subject, sizeof(o->subject), p->subject);
		o->expires_days = p->expires_days;
		o->cn_in_san = p->cn_in_san;
		o->add_crl_url = p->add_crl_url;
		o->add_ocsp_url = p->add_ocsp_url;
		o->add_issuer_url = p->add_issuer_url;
		for (size_t k = 0; k < p->n_policies; k++)
			snprintf(o->policies[o->policies_count++], sizeof(o->policies[0]), "%s",
				 p->policies[k]);
		o->ocsp_no_check = p->ocsp_no_check;
		o->tls_feature_status_request = p->tls_feature_status_request;
	}
	return P11CA_OK;
}
