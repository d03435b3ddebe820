/*
 * crl get: the latest full CRL a CA published, as the server holds it.
 */
#include <string.h>

#include "rpc/cli/cli.h"

static int run_get(struct cli *cli, const struct cli_args *a)
{
	struct p11ca_errmsg em = {0};
	const char *ca = cli_require(cli, a, "ca"), *fmt = cli_arg(cli->cmd, a, "format");
	const char *out = cli_arg(cli->cmd, a, "out");
	char what[128], num[41], t1[32], t2[32];

	if (ca == NULL)
		return CLI_EX_USAGE;
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_crl_get_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	p11ca_v1_CrlGetRequest *r = &rr->req.op.crl_get;
	r->format = p11ca_v1_Format_FORMAT_PEM;
	r->scope = p11ca_v1_CrlScope_CRL_SCOPE_FULL;
	int rc = cli_copy(cli, r->ca, sizeof(r->ca), ca, "--ca");
	if (rc == 0 && fmt != NULL && cli_format_parse(fmt, &r->format, &em) != P11CA_OK)
		rc = cli_error(cli, CLI_EX_USAGE, "bad --format", p11ca_errmsg_text(&em), NULL);
	snprintf(what, sizeof(what), "cannot get the CRL of CA %.64s", ca);
	if (rc == 0)
		rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_CrlGetResponse *res = &rr->resp.result.crl_get;
	bool der = r->format == p11ca_v1_Format_FORMAT_DER;
	if (out != NULL || !cli->json)
		rc = cli_deliver(cli, res->crl.bytes, res->crl.size, der, out);
	if (rc != 0)
		goto out;
	cli_serial_format(res->crl_number.bytes, res->crl_number.size, num, sizeof(num));
	if (cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_str(&j, "ca", ca);
		cli_json_time(&j, "this_update", res->this_update);
		cli_json_time(&j, "next_update", res->next_update);
		cli_json_str(&j, "crl_number", num);
		cli_json_uint(&j, "revoked_count", res->revoked_count);
		cli_json_str(&j, "format", der ? "der" : "pem");
		cli_json_str(&j, "out", out);
		if (out == NULL)
			cli_json_data(&j, res->crl.bytes, res->crl.size, der);
		cli_json_end(&j);
	} else if (out != NULL) {
		cli_time_format(res->this_update, t1, sizeof(t1));
		cli_time_format(res->next_update, t2, sizeof(t2));
		fprintf(cli->out, "%-20s %s\n%-20s %s\n%-20s %s\n%-20s %s\n%-20s %u\n%-20s %s\n",
			"ca:", ca, "crl number:", num, "this update:", t1, "next update:", t2,
			"revoked:", (unsigned)res->revoked_count, "written to:", out);
	}
out:
	cli_rr_free(&rr);
	return rc;
}

static const struct cli_opt get_opts[] = {
	{"ca", "CA", false, "the CA: name or unique serial prefix (required)"},
	{"format", "der|pem", false, "PEM (default) or DER; DER needs --out or a redirect"},
	{"out", "FILE", false, "write to FILE (atomically, mode 0644) and print a summary"},
	{NULL, NULL, false, NULL},
};

const struct cli_cmd cli_cmds_crl[] = {
	{"crl", "get", run_get, "--ca CA", 0, 0, "fetch a CA's latest CRL",
	 "Fetches the latest full CRL the CA published. Without --out the CRL itself goes to\n"
	 "standard output; with --out, a summary (number, this/next update, revoked count).\n"
	 "A CRL over 60 KiB is refused (exit 75): fetch it from the HTTP responder instead.",
	 "p11ca crl get --ca issuing-1 --format der --out issuing-1.crl", get_opts},
	{NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};
