/*
 * cert list, cert import, cert watchers: the commands about what the CA keeps on record
 * rather than about issuing. cert list pages through the server's cursor (page tokens)
 * up to --limit certificates; a million-certificate CA is never listed whole by accident.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rpc/cli/ext.h"

#define MAX_PAGES     65536
#define DEFAULT_LIMIT 1000
#define LIMIT_MAX     1000000

static int print_cert_table(struct cli *cli, const p11ca_v1_CertSummary *v, size_t n)
{
	static const char *const head[] = {"SERIAL",	"CA",	   "STATUS",
					   "NOT AFTER", "PROFILE", "SUBJECT"};
	const char **cells = calloc(n * 6 + 1, sizeof(*cells));
	char(*text)[2][48] = calloc(n + 1, sizeof(*text));
	int rc = 0;
	if (cells == NULL || text == NULL) {
		rc = cli_error(cli, CLI_EX_SOFTWARE, "out of memory", NULL, NULL);
		goto out;
	}
	for (size_t r = 0; r < n; r++) {
		cli_serial_format(v[r].serial.bytes, v[r].serial.size, text[r][0], 48);
		cli_time_format(v[r].not_after, text[r][1], 48);
		const char *row[6] = {text[r][0], v[r].ca,	cli_cert_status_name(v[r].status),
				      text[r][1], v[r].profile, v[r].subject};
		memcpy(&cells[r * 6], row, sizeof(row));
	}
	cli_table(cli->out, head, 6, cells, n);
out:
	free(cells);
	free(text);
	return rc;
}

/* Every filter into the first request; returns 0 or the usage exit code. */
static int list_filters(struct cli *cli, const struct cli_args *a, p11ca_v1_CertListRequest *r,
			uint32_t *limit)
{
	const struct cli_cmd *cmd = cli->cmd;
	struct p11ca_errmsg em = {0};
	const char *v;
	char serial[41];
	int rc = 0;

	*limit = DEFAULT_LIMIT;
	if ((v = cli_arg(cmd, a, "ca")) != NULL)
		rc = cli_copy(cli, r->ca, sizeof(r->ca), v, "--ca");
	if (rc == 0 && (v = cli_arg(cmd, a, "status")) != NULL &&
	    cli_cert_status_parse(v, &r->status, &em) != P11CA_OK)
		rc = cli_bad_value(cli, "--status", &em);
	r->revoked = cli_arg(cmd, a, "revoked") != NULL;
	r->expired = cli_arg(cmd, a, "expired") != NULL;
	if (rc == 0 && (v = cli_arg(cmd, a, "expiring-within")) != NULL &&
	    (cli_uint_parse(v, 36500, &r->expiring_within_days, &em) != P11CA_OK ||
	     r->expiring_within_days == 0))
		rc = cli_bad_value(cli, "--expiring-within (1..36500 days)", &em);
	if (rc == 0)
		rc = cli_exclusive(cli, a, "expired", "expiring-within");
	if (rc == 0 && (v = cli_arg(cmd, a, "profile")) != NULL)
		rc = cli_copy(cli, r->profile, sizeof(r->profile), v, "--profile");
	if (rc == 0 && (v = cli_arg(cmd, a, "after")) != NULL) {
		if (cli_serial_parse(v, serial, &em) != P11CA_OK)
			rc = cli_bad_value(cli, "--after", &em);
		else
			rc = cli_copy(cli, r->after, sizeof(r->after), serial, "--after");
	}
	if (rc == 0 && r->after[0] != '\0' && (r->expired || r->expiring_within_days > 0))
		rc = cli_error(cli, CLI_EX_USAGE, "--after works in serial order only",
			       "--expired and --expiring-within list by notAfter",
			       "drop --after, or page with --limit and --all");
	if (rc == 0)
		rc = cli_exclusive(cli, a, "limit", "all");
	if (rc == 0 && (v = cli_arg(cmd, a, "limit")) != NULL &&
	    (cli_uint_parse(v, LIMIT_MAX, limit, &em) != P11CA_OK || *limit == 0))
		rc = cli_bad_value(cli, "--limit (1..1000000)", &em);
	if (cli_arg(cmd, a, "all") != NULL)
		*limit = UINT32_MAX;
	return rc;
}

static int run_list(struct cli *cli, const struct cli_args *a)
{
	p11ca_v1_CertListRequest first = {0};
	p11ca_v1_CertListRequest_page_token_t token = {0};
	p11ca_v1_CertSummary *all = NULL;
	size_t n = 0, cap = 0;
	uint32_t limit = 0;
	bool more = false;

	int rc = list_filters(cli, a, &first, &limit);
	if (rc != 0)
		return rc;
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_cert_list_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	for (int page = 0; rc == 0; page++) {
		if (page == MAX_PAGES) {
			rc = cli_error(cli, CLI_EX_PROTOCOL, "cannot list certificates",
				       "the server keeps sending more pages", NULL);
			break;
		}
		memset(&rr->req, 0, sizeof(rr->req));
		rr->req.which_op = p11ca_v1_Request_cert_list_tag;
		p11ca_v1_CertListRequest *r = &rr->req.op.cert_list;
		*r = first;
		r->page_token = token;
		if (page > 0)
			r->after[0] = '\0';	  /* the token carries the position from here on */
		r->limit = (uint32_t)(limit - n); /* more than a page: a full page */
		rc = cli_call(cli, "cannot list certificates", &rr->req, &rr->resp);
		if (rc != 0)
			break;
		const p11ca_v1_CertListResponse *res = &rr->resp.result.cert_list;
		size_t take = res->certs_count;
		if (take > limit - n)
			take = limit - n; /* a server that ignored the limit */
		if (n + take > cap) {
			size_t ncap = cap * 2 + take;
			p11ca_v1_CertSummary *nv = realloc(all, ncap * sizeof(*nv));
			if (nv == NULL) {
				rc = cli_error(cli, CLI_EX_SOFTWARE, "out of memory", NULL, NULL);
				break;
			}
			all = nv;
			cap = ncap;
		}
		if (take > 0) /* an empty page is allowed and leaves `all` NULL */
			memcpy(all + n, res->certs, take * sizeof(res->certs[0]));
		n += take;
		more = res->next_page_token.size != 0 || take < res->certs_count;
		if (!more || n == limit)
			break;
		_Static_assert(sizeof(token) == sizeof(res->next_page_token), "page tokens differ");
		memcpy(&token, &res->next_page_token, sizeof(token));
	}
	char next[41] = "";
	bool serial_order = !first.expired && first.expiring_within_days == 0;
	if (rc == 0 && more && n > 0 && serial_order)
		cli_serial_format(all[n - 1].serial.bytes, all[n - 1].serial.size, next,
				  sizeof(next));
	if (rc == 0 && cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_arr(&j, "certs");
		for (size_t i = 0; i < n; i++)
			cli_json_cert(&j, NULL, &all[i]);
		cli_json_arr_end(&j);
		cli_json_bool(&j, "truncated", more);
		cli_json_str(&j, "next_after", next[0] ? next : NULL);
		cli_json_end(&j);
	} else if (rc == 0) {
		rc = print_cert_table(cli, all, n);
	}
	/* Said on stderr so that the table on stdout stays machine-readable. */
	if (rc == 0 && more && !cli->json)
		fprintf(cli->err,
			next[0] ? "p11ca: more certificates follow; continue with --after %s, or "
				  "use --all\n"
				: "p11ca: more certificates follow%s; use a larger --limit or "
				  "--all\n",
			next);
	free(all);
	cli_rr_free(&rr);
	return rc;
}

static int run_import(struct cli *cli, const struct cli_args *a)
{
	const char *ca = cli_arg(cli->cmd, a, "ca");
	uint8_t *data = NULL;
	size_t len = 0;
	char what[320];

	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_cert_import_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	p11ca_v1_CertImportRequest *r = &rr->req.op.cert_import;
	int rc = ca != NULL ? cli_copy(cli, r->ca, sizeof(r->ca), ca, "--ca") : 0;
	if (rc == 0)
		rc = cli_watchers(cli, a, "watch", r->watchers, &r->watchers_count);
	if (rc == 0)
		rc = cli_read_file(cli, a->pos[0], sizeof(r->certificate.bytes), &data, &len,
				   "the certificate");
	if (rc == 0 && len == 0)
		rc = cli_error(cli, CLI_EX_DATAERR, "cannot use the certificate",
			       "the file is empty", "give one certificate, PEM or DER");
	if (rc != 0)
		goto out;
	memcpy(r->certificate.bytes, data, len);
	r->certificate.size = (pb_size_t)len;
	snprintf(what, sizeof(what), "cannot import %.200s", a->pos[0]);
	rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_CertImportResponse *res = &rr->resp.result.cert_import;
	if (cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_cert(&j, "cert", &res->cert);
		cli_json_end(&j);
	} else {
		cli_text_cert(cli->out, &res->cert);
	}
out:
	free(data);
	cli_rr_free(&rr);
	return rc;
}

static int run_watchers(struct cli *cli, const struct cli_args *a)
{
	char what[128];
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_cert_watchers_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	p11ca_v1_CertWatchersRequest *r = &rr->req.op.cert_watchers;
	int rc = cli_take_serial(cli, a->pos[0], r->serial, sizeof(r->serial));
	if (rc == 0)
		rc = cli_watchers(cli, a, "add", r->add, &r->add_count);
	if (rc == 0)
		rc = cli_watchers(cli, a, "remove", r->remove, &r->remove_count);
	for (pb_size_t i = 0; rc == 0 && i < r->add_count; i++)
		for (pb_size_t k = 0; k < r->remove_count; k++)
			if (strcasecmp(r->add[i], r->remove[k]) == 0)
				rc = cli_error(cli, CLI_EX_USAGE,
					       "--add and --remove name the same address",
					       r->add[i], "give it once");
	snprintf(what, sizeof(what), "cannot change the watchers of %.64s", r->serial);
	if (rc == 0)
		rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_CertWatchersResponse *res = &rr->resp.result.cert_watchers;
	if (cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_cert(&j, "cert", &res->cert);
		cli_json_arr(&j, "watchers");
		for (pb_size_t i = 0; i < res->watchers_count; i++)
			cli_json_str(&j, NULL, res->watchers[i]);
		cli_json_arr_end(&j);
		cli_json_end(&j);
	} else {
		char hex[41];
		cli_serial_format(res->cert.serial.bytes, res->cert.serial.size, hex, sizeof(hex));
		fprintf(cli->out, "%-20s %s\n", "serial:", hex);
		cli_text_watchers(cli->out, res->watchers, res->watchers_count);
	}
out:
	cli_rr_free(&rr);
	return rc;
}

static const struct cli_opt list_opts[] = {
	{"ca", "CA", false, "only certificates issued by CA"},
	{"status", "STATUS", false, "only valid, expired, revoked or orphaned (default: any)"},
	{"revoked", NULL, false, "only revoked certificates"},
	{"expired", NULL, false, "only certificates past notAfter (listed by notAfter)"},
	{"expiring-within", "DAYS", false,
	 "only unexpired certificates that expire within DAYS (listed by notAfter)"},
	{"profile", "NAME", false, "only certificates issued with this profile"},
	{"limit", "N", false, "at most N certificates (default 1000)"},
	{"after", "SERIAL", false,
	 "start after this serial (serial order; what the last listing said to continue with)"},
	{"all", NULL, false, "every matching certificate, however many pages"},
	{NULL, NULL, false, NULL},
};
static const struct cli_opt import_opts[] = {
	{"ca", "CA", false, "the CA that issued it (default: found by issuer and signature)"},
	{"watch", "EMAIL", true, "tell this address before the certificate expires"},
	{NULL, NULL, false, NULL},
};
static const struct cli_opt watchers_opts[] = {
	{"add", "EMAIL", true, "tell this address before the certificate expires"},
	{"remove", "EMAIL", true, "stop telling this address"},
	{NULL, NULL, false, NULL},
};

const struct cli_cmd cli_cmds_cert_records[] = {
	{"cert", "list", run_list, "", 0, 0, "list issued certificates",
	 "One line per certificate: in serial order within each CA (CAs in creation order),\n"
	 "or by notAfter with --expired or --expiring-within. Filters combine. At most\n"
	 "--limit certificates (1000 unless given); when more follow, a note on standard\n"
	 "error says how to continue (--after SERIAL), and --json says \"truncated\": true\n"
	 "and \"next_after\". --all lists everything.",
	 "p11ca cert list --ca issuing-1 --expiring-within 30 --profile webserver", list_opts},
	{"cert", "import", run_import, "FILE", 1, 1, "record a certificate issued elsewhere",
	 "Records FILE (one certificate, PEM or DER) that another system issued with the key\n"
	 "of a CA held here: its signature must verify with that CA's certificate and its\n"
	 "serial must be new. It is then listed, exported, revocable and on CRLs like any\n"
	 "other, with profile \"imported\". Needs the operator or admin role.",
	 "p11ca cert import old-web.pem --ca issuing-1 --watch ops@example.com", import_opts},
	{"cert", "watchers", run_watchers, "SERIAL", 1, 1, "who is told before it expires",
	 "Adds and removes the email addresses told before certificate SERIAL expires (at\n"
	 "the server's [notify] days, 14, 7, 3 and 1 by default), then prints the list as\n"
	 "recorded. Adding a present address or removing an absent one is no error; with\n"
	 "neither option the list is just shown. SERIAL as in cert view. Needs the operator\n"
	 "or admin role.",
	 "p11ca cert watchers 3FA2C1 --add ops@example.com --remove old@example.com",
	 watchers_opts},
	{NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};
