/*
 * Command-line parsing and help. Hand-written rather than getopt_long: p11ca_main runs
 * many times in one test process, and getopt's hidden state and its own error messages
 * would get in the way. Options are "--name VALUE" or "--name=VALUE"; "--" ends them.
 */
#include <stdarg.h>
#include <string.h>

#include "rpc/cli/cli.h"

static const struct cli_opt global_opts[] = {
	{"server", "HOST:PORT", false,
	 "p11cad's RPC address ([ADDR]:PORT for IPv6); env P11CA_SERVER"},
	{"cert", "FILE", false, "your client certificate (PEM); env P11CA_CERT"},
	{"key", "FILE", false, "its private key (unencrypted PEM); env P11CA_KEY"},
	{"cacert", "FILE", false,
	 "the management CA that issued p11cad's certificate (PEM); env P11CA_CACERT"},
	{"timeout", "SECONDS", false, "give up on a connect or a call after this long (30)"},
	{"json", NULL, false, "print one JSON object instead of text (shapes: docs/cli.md)"},
	{NULL, NULL, false, NULL},
};

/* All commands, in help order. */
static const struct cli_cmd *const tables[] = {
	cli_cmds_hsm,	       cli_cmds_ca,  cli_cmds_ca_edit, cli_cmds_cert,
	cli_cmds_cert_records, cli_cmds_crl, cli_cmds_profile, cli_cmds_notify};

__attribute__((format(printf, 2, 3))) static int usage_error(struct cli *cli, const char *fmt, ...)
{
	char what[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	fprintf(cli->err, "p11ca: %s\n", what);
	if (cli->cmd != NULL && cli->cmd->verb != NULL)
		fprintf(cli->err, "Try 'p11ca %s %s --help'.\n", cli->cmd->noun, cli->cmd->verb);
	else if (cli->cmd != NULL)
		fprintf(cli->err, "Try 'p11ca %s --help'.\n", cli->cmd->noun);
	else
		fprintf(cli->err, "Try 'p11ca --help'.\n");
	return CLI_EX_USAGE;
}

/* Match "--name" or "--name=value" against opts; *value points after '=' or is NULL. */
static const struct cli_opt *match(const struct cli_opt *opts, const char *argv_i,
				   const char **value)
{
	const char *s = argv_i + 2;
	const char *eq = strchr(s, '=');
	size_t n = eq != NULL ? (size_t)(eq - s) : strlen(s);
	for (const struct cli_opt *o = opts; o != NULL && o->name != NULL; o++) {
		if (strlen(o->name) == n && strncmp(o->name, s, n) == 0) {
			*value = eq != NULL ? eq + 1 : NULL;
			return o;
		}
	}
	return NULL;
}

/* The value of an option at argv[*i]: after '=' or the next argument. NULL: missing. */
static const char *take_value(const struct cli_opt *o, const char *inline_v, int argc, char **argv,
			      int *i)
{
	if (o->arg == NULL)
		return inline_v == NULL ? "" : NULL; /* a flag takes no value */
	if (inline_v != NULL)
		return inline_v;
	if (*i + 1 >= argc)
		return NULL;
	return argv[++*i];
}

int cli_global_opt(struct cli *cli, int argc, char **argv, int *i)
{
	const char *inl = NULL;
	if (strncmp(argv[*i], "--", 2) != 0)
		return 0;
	const struct cli_opt *o = match(global_opts, argv[*i], &inl);
	if (o == NULL)
		return 0;
	const char *opt = argv[*i];
	const char *v = take_value(o, inl, argc, argv, i);
	if (v == NULL) {
		usage_error(cli, "option %s %s", opt,
			    o->arg != NULL ? "needs a value" : "takes no value");
		return -1;
	}
	if (strcmp(o->name, "json") == 0) {
		cli->json = true;
	} else if (strcmp(o->name, "timeout") == 0) {
		uint32_t s = 0;
		if (cli_uint_parse(v, 3600, &s, NULL) != P11CA_OK || s == 0) {
			usage_error(cli, "--timeout needs 1..3600 seconds, not '%s'", v);
			return -1;
		}
		cli->timeout_ms = (int)s * 1000;
	} else {
		for (int k = 0; k < CLI_CONF_N; k++)
			if (strcmp(o->name, cli_conf_name((enum cli_conf_key)k)) == 0)
				cli->flags[k] = v;
	}
	return 1;
}

const char *cli_arg(const struct cli_cmd *cmd, const struct cli_args *a, const char *name)
{
	for (size_t k = 0; cmd->opts != NULL && cmd->opts[k].name != NULL; k++)
		if (strcmp(cmd->opts[k].name, name) == 0)
			return a->val[k];
	return NULL;
}

size_t cli_arg_list(const struct cli_cmd *cmd, const struct cli_args *a, const char *name,
		    const char **out, size_t max)
{
	size_t k = 0, n = 0;
	while (cmd->opts != NULL && cmd->opts[k].name != NULL &&
	       strcmp(cmd->opts[k].name, name) != 0)
		k++;
	if (cmd->opts == NULL || cmd->opts[k].name == NULL)
		return 0;
	for (size_t i = 0; i < a->n_rep; i++) {
		if (a->rep_opt[i] != k)
			continue;
		if (out != NULL && n < max)
			out[n] = a->rep[i];
		n++;
	}
	return n;
}

int cli_copy_list(struct cli *cli, const struct cli_args *a, const char *name, char *dst,
		  size_t elem_size, size_t max_count, pb_size_t *count)
{
	const char *v[CLI_MAX_REPEAT];
	size_t n = cli_arg_list(cli->cmd, a, name, v, CLI_MAX_REPEAT);
	char what[64];

	*count = 0;
	if (n > max_count)
		return usage_error(cli, "too many --%s options: %zu, the limit is %zu", name, n,
				   max_count);
	snprintf(what, sizeof(what), "--%s", name);
	for (size_t i = 0; i < n; i++) {
		int rc = cli_copy(cli, dst + i * elem_size, elem_size, v[i], what);
		if (rc != 0)
			return rc;
		*count = (pb_size_t)(i + 1);
	}
	return 0;
}

int cli_exclusive(struct cli *cli, const struct cli_args *a, const char *x, const char *y)
{
	if (cli_arg(cli->cmd, a, x) != NULL && cli_arg(cli->cmd, a, y) != NULL)
		return usage_error(cli, "--%s and --%s exclude each other; give one", x, y);
	return 0;
}

const char *cli_require(struct cli *cli, const struct cli_args *a, const char *name)
{
	const char *v = cli_arg(cli->cmd, a, name);
	if (v == NULL)
		usage_error(cli, "missing the required option --%s", name);
	return v;
}

int cli_args_parse(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv,
		   struct cli_args *a)
{
	bool opts_done = false;

	memset(a, 0, sizeof(*a));
	size_t n_opts = 0;
	while (cmd->opts != NULL && cmd->opts[n_opts].name != NULL)
		n_opts++;
	/* A table longer than val[] is a programming error that test_cli catches. */
	if (n_opts > CLI_MAX_OPTS)
		return usage_error(cli, "internal: %s %s has too many options", cmd->noun,
				   cmd->verb ? cmd->verb : "");
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i];
		if (!opts_done && strcmp(s, "--") == 0) {
			opts_done = true;
			continue;
		}
		if (!opts_done && (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0)) {
			a->help = true;
			return 0;
		}
		if (!opts_done && s[0] == '-' && s[1] != '\0') {
			const char *inl = NULL;
			const struct cli_opt *o = s[1] == '-' ? match(cmd->opts, s, &inl) : NULL;
			if (o == NULL) {
				int g = s[1] == '-' ? cli_global_opt(cli, argc, argv, &i) : 0;
				if (g < 0)
					return CLI_EX_USAGE;
				if (g == 0)
					return usage_error(cli, "unknown option '%s'", s);
				continue;
			}
			const char *v = take_value(o, inl, argc, argv, &i);
			if (v == NULL)
				return usage_error(cli, "option %s %s", s,
						   o->arg != NULL ? "needs a value"
								  : "takes no value");
			if (o->repeat) {
				if (a->n_rep == CLI_MAX_REPEAT)
					return usage_error(cli, "too many %s options", s);
				a->rep_opt[a->n_rep] = (unsigned char)(o - cmd->opts);
				a->rep[a->n_rep++] = v;
			}
			a->val[o - cmd->opts] = v;
			continue;
		}
		if (a->n_pos == cmd->n_pos_max || a->n_pos == CLI_MAX_POS)
			return usage_error(cli, "unexpected argument '%s'", s);
		a->pos[a->n_pos++] = s;
	}
	if (a->n_pos < cmd->n_pos_min)
		return usage_error(cli, "missing argument(s): %s", cmd->synopsis);
	return 0;
}

/* ---- help ------------------------------------------------------------------------------ */

/* Help text wrapped at word boundaries to fit 100 columns, continued under column 28. */
static void print_wrapped(FILE *f, const char *text, const char *tail)
{
	enum { INDENT = 27, WIDTH = 100 };
	char buf[1024];
	size_t col = INDENT;
	char *save = NULL;
	snprintf(buf, sizeof(buf), "%s%s", text, tail);
	for (char *w = strtok_r(buf, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save)) {
		size_t n = strlen(w);
		if (col > INDENT && col + 1 + n > WIDTH) {
			fprintf(f, "\n%*s", INDENT, "");
			col = INDENT;
		}
		fprintf(f, "%s%s", col > INDENT ? " " : "", w);
		col += n + (col > INDENT ? 1 : 0);
	}
	fputc('\n', f);
}

static void print_opts(FILE *f, const struct cli_opt *opts)
{
	for (const struct cli_opt *o = opts; o != NULL && o->name != NULL; o++) {
		char left[80];
		snprintf(left, sizeof(left), "--%s%s%s", o->name, o->arg ? " " : "",
			 o->arg ? o->arg : "");
		/* Long option names get their help on the next line, still aligned. */
		if (strlen(left) > 24)
			fprintf(f, "  %s\n  %-24s ", left, "");
		else
			fprintf(f, "  %-24s ", left);
		print_wrapped(f, o->help, o->repeat ? " (repeatable)" : "");
	}
}

static void cmd_line(FILE *f, const struct cli_cmd *c)
{
	char left[64];
	snprintf(left, sizeof(left), "%s%s%s", c->noun, c->verb ? " " : "", c->verb ? c->verb : "");
	fprintf(f, "  %-16s %s\n", left, c->summary);
}

void cli_usage_global(struct cli *cli, FILE *f)
{
	(void)cli;
	fputs("Usage: p11ca [GLOBAL OPTIONS] <noun> <verb> [ARGS] [OPTIONS]\n"
	      "\n"
	      "Administer a p11ca certificate authority: talk to p11cad over mutual TLS.\n"
	      "\n"
	      "Commands:\n",
	      f);
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const struct cli_cmd *c = tables[t]; c->noun != NULL; c++)
			cmd_line(f, c);
	fputs("\nGlobal options (also accepted after the command):\n", f);
	print_opts(f, global_opts);
	fputs("  --help                   help for p11ca, a noun (p11ca ca --help) or a command\n"
	      "\n"
	      "Defaults come from ~/.config/p11ca/client.ini (server=, cert=, key=, cacert=),\n"
	      "overridden by P11CA_SERVER, P11CA_CERT, P11CA_KEY, P11CA_CACERT, overridden by\n"
	      "the options above.\n"
	      "\n"
	      "Example:\n"
	      "  p11ca --server ca.example:7443 ca list --tree\n"
	      "\n"
	      "Exit status: 0 done, 64 usage, 65 bad data or not found, 66 input file missing,\n"
	      "69 server unreachable or refused, 70 internal, 74 I/O, 75 try again later,\n"
	      "76 protocol error, 77 permission denied, 78 configuration (see p11ca(1)).\n",
	      f);
}

void cli_usage_noun(struct cli *cli, FILE *f, const char *noun)
{
	(void)cli;
	fprintf(f, "Usage: p11ca %s <verb> [ARGS] [OPTIONS]\n\nVerbs:\n", noun);
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const struct cli_cmd *c = tables[t]; c->noun != NULL; c++)
			if (strcmp(c->noun, noun) == 0)
				cmd_line(f, c);
	fprintf(f, "\n'p11ca %s <verb> --help' explains one verb and its options.\n", noun);
}

void cli_usage_cmd(struct cli *cli, FILE *f, const struct cli_cmd *c)
{
	(void)cli;
	fprintf(f, "Usage: p11ca %s%s%s%s%s [OPTIONS]\n\n%s\n\n%s\n", c->noun, c->verb ? " " : "",
		c->verb ? c->verb : "", c->synopsis[0] ? " " : "", c->synopsis, c->summary,
		c->help);
	if (c->opts != NULL && c->opts[0].name != NULL) {
		fputs("\nOptions:\n", f);
		print_opts(f, c->opts);
	}
	fputs("\nGlobal options: --server, --cert, --key, --cacert, --timeout, --json "
	      "(p11ca --help).\n",
	      f);
	fprintf(f, "\nExample:\n  %s\n", c->example);
}
