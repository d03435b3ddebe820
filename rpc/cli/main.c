/*
 * p11ca_main: global options, dispatch to <noun> <verb>, the connection (made once, on
 * the first call) and the mapping of every failure to a message and an exit code.
 */
#include <stdlib.h>
#include <string.h>

#include "rpc/cli/cli.h"

static const struct cli_cmd *const tables[] = {
	cli_cmds_hsm,	       cli_cmds_ca,  cli_cmds_ca_edit, cli_cmds_cert,
	cli_cmds_cert_records, cli_cmds_crl, cli_cmds_profile, cli_cmds_notify};
#define N_TABLES (sizeof(tables) / sizeof(tables[0]))

/* Bytes from the server reach a terminal: no escape sequences or line breaks. */
static void put_clean(FILE *f, const char *s)
{
	for (; *s != '\0'; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

int cli_error(struct cli *cli, int code, const char *what, const char *why, const char *todo)
{
	fputs("p11ca: ", cli->err);
	put_clean(cli->err, what);
	if (why != NULL && why[0] != '\0') {
		fputs(": ", cli->err);
		put_clean(cli->err, why);
	}
	if (todo != NULL && todo[0] != '\0') {
		fputs(" — ", cli->err);
		put_clean(cli->err, todo);
	}
	fputc('\n', cli->err);
	return code;
}

int cli_bad_value(struct cli *cli, const char *opt, const struct p11ca_errmsg *em)
{
	char what[64];
	snprintf(what, sizeof(what), "bad %s", opt);
	return cli_error(cli, CLI_EX_USAGE, what, p11ca_errmsg_text(em), NULL);
}

static const struct {
	const char *name;
	int exit;
	const char *todo;
} statuses[] = {
	[p11ca_v1_StatusCode_STATUS_CODE_UNSPECIFIED] = {"no status", CLI_EX_PROTOCOL,
							 "the server broke the protocol"},
	[p11ca_v1_StatusCode_STATUS_CODE_OK] = {"ok", CLI_EX_OK, NULL},
	[p11ca_v1_StatusCode_STATUS_CODE_INVALID_ARGUMENT] = {"invalid argument", CLI_EX_DATAERR,
							      "fix the arguments (see --help)"},
	[p11ca_v1_StatusCode_STATUS_CODE_NOT_FOUND] = {"not found", CLI_EX_DATAERR,
						       "check the name or serial (p11ca ca list, "
						       "p11ca cert list)"},
	[p11ca_v1_StatusCode_STATUS_CODE_ALREADY_EXISTS] = {"already exists", CLI_EX_DATAERR,
							    "choose another name or key label"},
	[p11ca_v1_StatusCode_STATUS_CODE_PERMISSION_DENIED] = {"permission denied", CLI_EX_NOPERM,
							       "your certificate's role may not do "
							       "this; ask an administrator"},
	[p11ca_v1_StatusCode_STATUS_CODE_UNAUTHENTICATED] = {"unauthenticated", CLI_EX_NOPERM,
							     "check --cert and --key"},
	[p11ca_v1_StatusCode_STATUS_CODE_RESOURCE_EXHAUSTED] = {"resource exhausted",
								CLI_EX_TEMPFAIL,
								"a server limit was reached; free "
								"space or ask for less"},
	[p11ca_v1_StatusCode_STATUS_CODE_FAILED_PRECONDITION] =
		{"failed precondition", CLI_EX_UNAVAILABLE,
		 "the message says what must change first (a CA's state, a limit, the "
		 "token: p11ca hsm status)"},
	[p11ca_v1_StatusCode_STATUS_CODE_UNAVAILABLE] = {"unavailable", CLI_EX_TEMPFAIL,
							 "retry later; p11ca hsm status shows the "
							 "tokens"},
	[p11ca_v1_StatusCode_STATUS_CODE_DEADLINE_EXCEEDED] = {"deadline exceeded", CLI_EX_TEMPFAIL,
							       "retry later"},
	[p11ca_v1_StatusCode_STATUS_CODE_INTERNAL] = {"internal error", CLI_EX_SOFTWARE,
						      "the p11cad log says more"},
	[p11ca_v1_StatusCode_STATUS_CODE_UNIMPLEMENTED] = {"unimplemented", CLI_EX_UNAVAILABLE,
							   "this server does not offer it; upgrade "
							   "p11cad"},
	[p11ca_v1_StatusCode_STATUS_CODE_ABORTED] = {"aborted", CLI_EX_TEMPFAIL,
						     "a concurrent change got in the way; retry"},
};

int cli_status_exit(p11ca_v1_StatusCode code)
{
	if ((unsigned)code >= sizeof(statuses) / sizeof(statuses[0]))
		return CLI_EX_SOFTWARE; /* a code newer than this client */
	return statuses[code].exit;
}

int cli_err_exit(enum p11ca_err err)
{
	switch (p11ca_err_category(err)) {
	case P11CA_CAT_OK:
		return CLI_EX_OK;
	case P11CA_CAT_USAGE:
		return CLI_EX_USAGE;
	case P11CA_CAT_CONFIG:
		return CLI_EX_CONFIG;
	case P11CA_CAT_POLICY:
		return CLI_EX_NOPERM;
	case P11CA_CAT_PROTO:
		return CLI_EX_PROTOCOL;
	case P11CA_CAT_IO:
		/* Connecting and talking to the server is all the I/O that gets here. */
		return err == P11CA_E_TIMEOUT ? CLI_EX_TEMPFAIL : CLI_EX_UNAVAILABLE;
	default:
		return CLI_EX_SOFTWARE;
	}
}

int cli_copy(struct cli *cli, char *dst, size_t dst_size, const char *src, const char *what)
{
	size_t n = strlen(src);
	if (n >= dst_size) {
		char why[64];
		snprintf(why, sizeof(why), "%zu bytes; the limit is %zu", n, dst_size - 1);
		char w[96];
		snprintf(w, sizeof(w), "%s is too long", what);
		return cli_error(cli, CLI_EX_USAGE, w, why, NULL);
	}
	memcpy(dst, src, n + 1);
	return 0;
}

struct cli_rr *cli_rr_new(struct cli *cli, pb_size_t op_tag)
{
	struct cli_rr *rr = calloc(1, sizeof(*rr));
	if (rr == NULL) {
		cli_error(cli, CLI_EX_SOFTWARE, "out of memory", NULL, NULL);
		return NULL;
	}
	rr->req.which_op = op_tag;
	return rr;
}

void cli_rr_free(struct cli_rr **rr)
{
	if (rr == NULL || *rr == NULL)
		return;
	explicit_bzero(*rr, sizeof(**rr));
	free(*rr);
	*rr = NULL;
}

static int connect_once(struct cli *cli)
{
	struct p11ca_errmsg em = {0};
	const struct cli_conf *c = &cli->conf;
	char what[400];

	if (cli_conf_load(&cli->conf, cli->flags, &em) != P11CA_OK)
		return cli_error(cli, cli_err_exit(em.code), "cannot read the configuration",
				 p11ca_errmsg_text(&em), "fix or remove the file");
	for (int k = 0; k < CLI_CONF_N; k++) {
		if (c->value[k] != NULL)
			continue;
		const char *n = cli_conf_name((enum cli_conf_key)k);
		char todo[4400];
		snprintf(todo, sizeof(todo), "give --%s, set P11CA_%s, or put %s= in %s", n,
			 k == CLI_CONF_SERVER ? "SERVER"
			 : k == CLI_CONF_CERT ? "CERT"
			 : k == CLI_CONF_KEY  ? "KEY"
					      : "CACERT",
			 n, c->file[0] ? c->file : "~/.config/p11ca/client.ini");
		snprintf(what, sizeof(what), "no %s configured", n);
		return cli_error(cli, CLI_EX_CONFIG, what, NULL, todo);
	}
	struct rpc_client_options o = {
		.server = c->value[CLI_CONF_SERVER],
		.ca_file = c->value[CLI_CONF_CACERT],
		.cert_file = c->value[CLI_CONF_CERT],
		.key_file = c->value[CLI_CONF_KEY],
		.timeout_ms = cli->timeout_ms,
	};
	enum p11ca_err err = rpc_client_connect(&o, &cli->client, &em);
	if (err != P11CA_OK) {
		/* The client's sentences name the server already. */
		return cli_error(cli, cli_err_exit(err), "cannot connect", p11ca_errmsg_text(&em),
				 err == P11CA_E_CONFIG ? "check --cert, --key and --cacert (PEM "
							 "files, the key unencrypted)"
						       : NULL);
	}
	return 0;
}

int cli_call(struct cli *cli, const char *what, p11ca_v1_Request *req, p11ca_v1_Response *resp)
{
	struct p11ca_errmsg em = {0};

	if (cli->client == NULL) {
		int rc = connect_once(cli);
		if (rc != 0)
			return rc;
	}
	memset(resp, 0, sizeof(*resp));
	enum p11ca_err err = rpc_client_call(cli->client, req, resp, &em);
	if (err != P11CA_OK)
		return cli_error(cli, cli_err_exit(err), what, p11ca_errmsg_text(&em), NULL);
	p11ca_v1_StatusCode code = resp->status.code;
	if (code == p11ca_v1_StatusCode_STATUS_CODE_OK)
		return 0;
	bool known = (unsigned)code < sizeof(statuses) / sizeof(statuses[0]);
	return cli_error(cli, cli_status_exit(code), what,
			 resp->status.message[0] != '\0' ? resp->status.message
			 : known			 ? statuses[code].name
							 : "unknown status",
			 known ? statuses[code].todo : "upgrade p11ca");
}

static const struct cli_cmd *find(const char *noun, const char *verb)
{
	for (size_t t = 0; t < N_TABLES; t++)
		for (const struct cli_cmd *c = tables[t]; c->noun != NULL; c++)
			if (strcmp(c->noun, noun) == 0 &&
			    (c->verb == NULL || (verb != NULL && strcmp(c->verb, verb) == 0)))
				return c;
	return NULL;
}

static bool noun_exists(const char *noun)
{
	for (size_t t = 0; t < N_TABLES; t++)
		for (const struct cli_cmd *c = tables[t]; c->noun != NULL; c++)
			if (strcmp(c->noun, noun) == 0)
				return true;
	return false;
}

static bool is_help(const char *s)
{
	return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0 || strcmp(s, "help") == 0;
}

static int dispatch(struct cli *cli, int argc, char **argv)
{
	struct cli_args a;
	int i = 1;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (is_help(argv[i])) {
			cli_usage_global(cli, cli->out);
			return 0;
		}
		int g = cli_global_opt(cli, argc, argv, &i);
		if (g < 0)
			return CLI_EX_USAGE;
		if (g == 0) {
			fprintf(cli->err, "p11ca: unknown option '%s'\nTry 'p11ca --help'.\n",
				argv[i]);
			return CLI_EX_USAGE;
		}
	}
	if (i == argc) {
		cli_usage_global(cli, cli->err);
		return CLI_EX_USAGE;
	}
	const char *noun = argv[i++];
	if (strcmp(noun, "help") == 0) {
		cli_usage_global(cli, cli->out);
		return 0;
	}
	if (!noun_exists(noun)) {
		fprintf(cli->err, "p11ca: unknown command '%s'\nTry 'p11ca --help'.\n", noun);
		return CLI_EX_USAGE;
	}
	const struct cli_cmd *cmd = find(noun, NULL);
	if (cmd == NULL) {
		if (i == argc || is_help(argv[i])) {
			cli_usage_noun(cli, i == argc ? cli->err : cli->out, noun);
			return i == argc ? CLI_EX_USAGE : 0;
		}
		cmd = find(noun, argv[i]);
		if (cmd == NULL) {
			fprintf(cli->err,
				"p11ca: unknown command '%s %s'\nTry 'p11ca %s --help'.\n", noun,
				argv[i], noun);
			return CLI_EX_USAGE;
		}
		i++;
	}
	cli->cmd = cmd;
	int rc = cli_args_parse(cli, cmd, argc - i, argv + i, &a);
	if (rc != 0)
		return rc;
	if (a.help) {
		cli_usage_cmd(cli, cli->out, cmd);
		return 0;
	}
	return cmd->run(cli, &a);
}

int p11ca_main(int argc, char **argv, FILE *out, FILE *err)
{
	struct cli cli = {.out = out, .err = err};
	int rc = dispatch(&cli, argc, argv);
	rpc_client_close(&cli.client);
	cli_conf_free(&cli.conf);
	if (fflush(out) != 0 && rc == 0)
		rc = cli_error(&cli, CLI_EX_IOERR, "cannot write the output", "flush failed", NULL);
	return rc;
}
