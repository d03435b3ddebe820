/*
 * The half of `ca export` and `cert export` that does not depend on what is exported:
 * --format and --bundle into the request, and the answer out through --out, standard
 * output or the JSON object. The commands differ only in how they name their target.
 */
#include "rpc/cli/cli.h"

const struct cli_opt cli_export_opts[] = {
	{"format", "pem|der", false, "PEM (default) or DER; DER needs --out or a redirect"},
	{"bundle", NULL, false, "append the issuing CAs up to the root (PEM only)"},
	{"out", "FILE", false, "write to FILE (atomically, mode 0644) instead of standard output"},
	{NULL, NULL, false, NULL},
};

int cli_export_format(struct cli *cli, const struct cli_args *a, p11ca_v1_Format *format,
		      bool *bundle)
{
	struct p11ca_errmsg em = {0};
	const char *fmt = cli_arg(cli->cmd, a, "format");
	*format = p11ca_v1_Format_FORMAT_PEM;
	*bundle = cli_arg(cli->cmd, a, "bundle") != NULL;
	if (fmt != NULL && cli_format_parse(fmt, format, &em) != P11CA_OK)
		return cli_bad_value(cli, "--format", &em);
	/* The server refuses it too; saying so here saves a round trip and names the option. */
	if (*format == p11ca_v1_Format_FORMAT_DER && *bundle)
		return cli_error(cli, CLI_EX_USAGE, "--bundle works with PEM only",
				 "concatenated DER is not a file tools read",
				 "drop --bundle or use --format pem");
	return 0;
}

int cli_export_write(struct cli *cli, const struct cli_args *a, const uint8_t *data, size_t len,
		     uint32_t certificate_count, bool der)
{
	const char *out = cli_arg(cli->cmd, a, "out");
	int rc = 0;
	/* In JSON mode without --out the data belongs inside the object, not before it. */
	if (out != NULL || !cli->json)
		rc = cli_deliver(cli, data, len, der, out);
	if (rc == 0 && cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_str(&j, "format", der ? "der" : "pem");
		cli_json_uint(&j, "certificate_count", certificate_count);
		cli_json_str(&j, "out", out);
		if (out == NULL)
			cli_json_data(&j, data, len, der);
		cli_json_end(&j);
	}
	return rc;
}
