/*
 * profile list and notify expiring: server-wide read-outs and actions that belong to no
 * CA or certificate.
 */
#include <string.h>

#include "rpc/cli/ext.h"

static void json_profile(struct cli_json *j, const p11ca_v1_ProfileInfo *p)
{
	cli_json_obj(j, NULL);
	cli_json_str(j, "name", p->name);
	cli_json_str(j, "description", p->description);
	cli_json_bool(j, "enabled", p->enabled);
	cli_json_bool(j, "default", p->is_default);
	cli_json_usage(j, "key_usage", p->has_key_usage, &p->key_usage);
	cli_json_usage(j, "extended_key_usage", p->has_extended_key_usage, &p->extended_key_usage);
	cli_json_str(j, "subject", p->subject[0] ? p->subject : NULL);
	if (p->expires_days != 0)
		cli_json_uint(j, "expires_days", p->expires_days);
	else
		cli_json_str(j, "expires_days", NULL);
	cli_json_bool(j, "cn_in_san", p->cn_in_san);
	cli_json_bool(j, "add_crl_url", p->add_crl_url);
	cli_json_bool(j, "add_ocsp_url", p->add_ocsp_url);
	cli_json_bool(j, "add_issuer_url", p->add_issuer_url);
	cli_json_arr(j, "policies");
	for (pb_size_t i = 0; i < p->policies_count; i++)
		cli_json_str(j, NULL, p->policies[i]);
	cli_json_arr_end(j);
	cli_json_bool(j, "ocsp_no_check", p->ocsp_no_check);
	cli_json_bool(j, "tls_feature_status_request", p->tls_feature_status_request);
	cli_json_obj_end(j);
}

static void text_profile(FILE *f, const p11ca_v1_ProfileInfo *p)
{
	char buf[600], days[16];
	fprintf(f, "%s%s%s\n", p->name, p->is_default ? " (default)" : "",
		p->enabled ? "" : " (disabled)");
	if (p->description[0] != '\0')
		fprintf(f, "  %-18s %s\n", "description:", p->description);
	cli_usage_text(p->has_key_usage, &p->key_usage, buf, sizeof(buf));
	fprintf(f, "  %-18s %s\n", "keyUsage:", buf);
	cli_usage_text(p->has_extended_key_usage, &p->extended_key_usage, buf, sizeof(buf));
	fprintf(f, "  %-18s %s\n", "extKeyUsage:", buf);
	fprintf(f, "  %-18s %s\n", "subject:", p->subject[0] ? p->subject : "-");
	snprintf(days, sizeof(days), "%u", (unsigned)p->expires_days);
	fprintf(f, "  %-18s %s\n",
		"expires (days):", p->expires_days ? days : "(the server's default)");
	fprintf(f, "  %-18s %s\n", "CN in SANs:", p->cn_in_san ? "yes" : "no");
	fprintf(f, "  %-18s CRL %s, OCSP %s, issuer %s\n",
		"CA URLs added:", p->add_crl_url ? "yes" : "no", p->add_ocsp_url ? "yes" : "no",
		p->add_issuer_url ? "yes" : "no");
	for (pb_size_t i = 0; i < p->policies_count; i++)
		fprintf(f, "  %-18s %s\n", i == 0 ? "policies:" : "", p->policies[i]);
	if (p->ocsp_no_check)
		fprintf(f, "  %-18s yes\n", "OCSPNoCheck:");
	if (p->tls_feature_status_request)
		fprintf(f, "  %-18s yes\n", "must-staple:");
}

static int run_profile_list(struct cli *cli, const struct cli_args *a)
{
	(void)a;
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_profile_list_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	int rc = cli_call(cli, "cannot list the profiles", &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_ProfileListResponse *res = &rr->resp.result.profile_list;
	if (cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_arr(&j, "profiles");
		for (pb_size_t i = 0; i < res->profiles_count; i++)
			json_profile(&j, &res->profiles[i]);
		cli_json_arr_end(&j);
		cli_json_end(&j);
		goto out;
	}
	for (pb_size_t i = 0; i < res->profiles_count; i++) {
		if (i > 0)
			fputc('\n', cli->out);
		text_profile(cli->out, &res->profiles[i]);
	}
out:
	cli_rr_free(&rr);
	return rc;
}

static int run_notify(struct cli *cli, const struct cli_args *a)
{
	(void)a;
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_notify_expiring_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	int rc = cli_call(cli, "cannot run the expiry notifications", &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_NotifyExpiringResponse *res = &rr->resp.result.notify_expiring;
	if (cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_uint(&j, "certificates", res->certificates);
		cli_json_uint(&j, "messages_sent", res->messages_sent);
		cli_json_uint(&j, "messages_failed", res->messages_failed);
		cli_json_end(&j);
	} else {
		fprintf(cli->out, "%-20s %u\n%-20s %u\n%-20s %u\n",
			"certificates:", (unsigned)res->certificates,
			"messages sent:", (unsigned)res->messages_sent,
			"messages failed:", (unsigned)res->messages_failed);
	}
	/* Failed messages are retried by the daemon; still, the run did not do everything. */
	if (res->messages_failed > 0)
		rc = cli_error(cli, CLI_EX_TEMPFAIL, "some notifications were not sent",
			       "the server's mail command failed",
			       "see the p11cad log; they are retried on the next run");
out:
	cli_rr_free(&rr);
	return rc;
}

static const struct cli_opt no_opts[] = {{NULL, NULL, false, NULL}};

const struct cli_cmd cli_cmds_profile[] = {
	{"profile", "list", run_profile_list, "", 0, 0, "show the certificate profiles",
	 "Every profile the server has, in its configured order, disabled ones included:\n"
	 "keyUsage and extendedKeyUsage with criticality, default subject and validity,\n"
	 "whether the CN goes into the SANs, which of the CA's URLs are added, policies,\n"
	 "OCSPNoCheck and must-staple. The default one (cert sign without --profile, unless\n"
	 "the CA has its own default) is marked.",
	 "p11ca profile list --json", no_opts},
	{NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};

const struct cli_cmd cli_cmds_notify[] = {
	{"notify", "expiring", run_notify, "", 0, 0, "send expiry notifications now",
	 "Runs what p11cad also runs on its schedule: every watcher of every unrevoked\n"
	 "certificate that reached one of the [notify] thresholds (days before expiry) gets\n"
	 "one message for the smallest threshold reached, once. Prints how many certificates\n"
	 "and messages; exits 75 when the mail command failed for some (retried next run).\n"
	 "Needs the operator or admin role.",
	 "p11ca notify expiring", no_opts},
	{NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};
