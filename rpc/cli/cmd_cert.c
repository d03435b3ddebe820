/*
 * cert sign, view, list, export, revoke. Serials are normalised here (colons dropped,
 * upper case, hex checked) and sent as text; the server resolves unique prefixes.
 */
#include <stdlib.h>
#include <string.h>

#include "rpc/cli/cli.h"

#define MAX_PAGES 65536

/* Normalise SERIAL into dst (a request's 65-byte serial field). */
static int take_serial(struct cli *cli, const char *in, char *dst, size_t dst_size)
{
	struct p11ca_errmsg em = {0};
	char norm[41];
	if (cli_serial_parse(in, norm, &em) != P11CA_OK)
		return cli_bad_value(cli, "SERIAL", &em);
	return cli_copy(cli, dst, dst_size, norm, "SERIAL");
}

/* The certificate as PEM: to --out (then a summary on stdout) or to stdout; in JSON mode
 * the PEM goes into the object unless --out took it. */
static int print_issued(struct cli *cli, const p11ca_v1_CertSummary *c, const uint8_t *der,
			size_t der_len, const char *out)
{
	size_t pem_len = 0;
	char *pem = der_len > 0 ? cli_der_to_pem("CERTIFICATE", der, der_len, &pem_len) : NULL;
	int rc = 0;

	if (der_len > 0 && pem == NULL)
		return cli_error(cli, CLI_EX_SOFTWARE, "cannot convert the certificate to PEM",
				 NULL, NULL);
	if (pem != NULL && (out != NULL || !cli->json))
		rc = cli_deliver(cli, (const uint8_t *)pem, pem_len, false, out);
	if (rc == 0 && cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_cert(&j, "cert", c);
		cli_json_str(&j, "out", out);
		if (out == NULL)
			cli_json_strn(&j, "certificate_pem", pem, pem_len);
		cli_json_end(&j);
	} else if (rc == 0 && out != NULL) {
		cli_text_cert(cli->out, c);
	}
	free(pem);
	return rc;
}

static int run_sign(struct cli *cli, const struct cli_args *a)
{
	const struct cli_cmd *cmd = cli->cmd;
	struct p11ca_errmsg em = {0};
	const char *ca = cli_require(cli, a, "ca"), *csr = cli_require(cli, a, "csr"), *v;
	uint8_t *data = NULL;
	size_t len = 0;
	struct cli_rr *rr = NULL;
	char what[320];
	int rc;

	if (ca == NULL || csr == NULL)
		return CLI_EX_USAGE;
	rr = cli_rr_new(cli, p11ca_v1_Request_cert_sign_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	p11ca_v1_CertSignRequest *r = &rr->req.op.cert_sign;
	rc = cli_copy(cli, r->ca, sizeof(r->ca), ca, "--ca");
	if (rc == 0 && (v = cli_arg(cmd, a, "profile")) != NULL)
		rc = cli_copy(cli, r->profile, sizeof(r->profile), v, "--profile");
	if (rc == 0 && (v = cli_arg(cmd, a, "subject")) != NULL)
		rc = cli_copy(cli, r->subject, sizeof(r->subject), v, "--subject");
	for (size_t i = 0; rc == 0 && i < a->n_rep; i++)
		rc = cli_copy(cli, r->sans[r->sans_count++], sizeof(r->sans[0]), a->rep[i],
			      "--san");
	if (rc == 0 && (v = cli_arg(cmd, a, "expires")) != NULL) {
		uint32_t n = 0;
		if (cli_uint_parse(v, 36500, &n, &em) != P11CA_OK || n == 0)
			rc = cli_bad_value(cli, "--expires (1..36500 days)", &em);
		r->expires_days = n;
	}
	if (rc == 0)
		rc = cli_read_file(cli, csr, sizeof(r->csr.bytes), &data, &len, "the CSR");
	if (rc != 0)
		goto out;
	if (len == 0) {
		rc = cli_error(cli, CLI_EX_DATAERR, "cannot use the CSR", "the file is empty",
			       "give a PKCS#10 request, PEM or DER");
		goto out;
	}
	memcpy(r->csr.bytes, data, len);
	r->csr.size = (pb_size_t)len;
	snprintf(what, sizeof(what), "cannot sign %.200s with CA %.64s", csr, ca);
	rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_CertSignResponse *res = &rr->resp.result.cert_sign;
	rc = print_issued(cli, &res->cert, res->certificate_der.bytes, res->certificate_der.size,
			  cli_arg(cmd, a, "out"));
out:
	free(data);
	cli_rr_free(&rr);
	return rc;
}

static int run_view(struct cli *cli, const struct cli_args *a)
{
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_cert_view_tag);
	char what[128];
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	int rc = take_serial(cli, a->pos[0], rr->req.op.cert_view.serial,
			     sizeof(rr->req.op.cert_view.serial));
	snprintf(what, sizeof(what), "cannot show certificate %.64s", a->pos[0]);
	if (rc == 0)
		rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_CertViewResponse *res = &rr->resp.result.cert_view;
	if (cli->json) {
		struct cli_json j;
		size_t pem_len = 0;
		char *pem = res->certificate_der.size > 0
				    ? cli_der_to_pem("CERTIFICATE", res->certificate_der.bytes,
						     res->certificate_der.size, &pem_len)
				    : NULL;
		cli_json_begin(&j, cli->out);
		cli_json_cert(&j, "cert", &res->cert);
		cli_json_strn(&j, "certificate_pem", pem, pem_len);
		cli_json_end(&j);
		free(pem);
	} else {
		cli_text_cert(cli->out, &res->cert);
	}
out:
	cli_rr_free(&rr);
	return rc;
}

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

static int run_list(struct cli *cli, const struct cli_args *a)
{
	struct p11ca_errmsg em = {0};
	const char *ca = cli_arg(cli->cmd, a, "ca"), *st = cli_arg(cli->cmd, a, "status");
	p11ca_v1_CertStatus status = p11ca_v1_CertStatus_CERT_STATUS_UNSPECIFIED;
	p11ca_v1_CertListRequest_page_token_t token = {0};
	p11ca_v1_CertSummary *all = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	if (st != NULL && cli_cert_status_parse(st, &status, &em) != P11CA_OK)
		return cli_bad_value(cli, "--status", &em);
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
		r->status = status;
		r->page_token = token;
		rc = cli_copy(cli, r->ca, sizeof(r->ca), ca ? ca : "", "--ca");
		if (rc == 0)
			rc = cli_call(cli, "cannot list certificates", &rr->req, &rr->resp);
		if (rc != 0)
			break;
		const p11ca_v1_CertListResponse *res = &rr->resp.result.cert_list;
		if (n + res->certs_count > cap) {
			size_t ncap = cap * 2 + res->certs_count;
			p11ca_v1_CertSummary *nv = realloc(all, ncap * sizeof(*nv));
			if (nv == NULL) {
				rc = cli_error(cli, CLI_EX_SOFTWARE, "out of memory", NULL, NULL);
				break;
			}
			all = nv;
			cap = ncap;
		}
		memcpy(all + n, res->certs, res->certs_count * sizeof(res->certs[0]));
		n += res->certs_count;
		if (res->next_page_token.size == 0)
			break;
		_Static_assert(sizeof(token) == sizeof(res->next_page_token), "page tokens differ");
		memcpy(&token, &res->next_page_token, sizeof(token));
	}
	if (rc == 0 && cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_arr(&j, "certs");
		for (size_t i = 0; i < n; i++)
			cli_json_cert(&j, NULL, &all[i]);
		cli_json_arr_end(&j);
		cli_json_end(&j);
	} else if (rc == 0) {
		rc = print_cert_table(cli, all, n);
	}
	free(all);
	cli_rr_free(&rr);
	return rc;
}

static int run_export(struct cli *cli, const struct cli_args *a)
{
	char what[128];
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_cert_export_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	p11ca_v1_CertExportRequest *r = &rr->req.op.cert_export;
	int rc = take_serial(cli, a->pos[0], r->serial, sizeof(r->serial));
	if (rc == 0)
		rc = cli_export_format(cli, a, &r->format, &r->bundle);
	snprintf(what, sizeof(what), "cannot export certificate %.64s", a->pos[0]);
	if (rc == 0)
		rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_CertExportResponse *res = &rr->resp.result.cert_export;
	rc = cli_export_write(cli, a, res->data.bytes, res->data.size, res->certificate_count,
			      r->format == p11ca_v1_Format_FORMAT_DER);
out:
	cli_rr_free(&rr);
	return rc;
}

static int run_revoke(struct cli *cli, const struct cli_args *a)
{
	struct p11ca_errmsg em = {0};
	const char *reason = cli_arg(cli->cmd, a, "reason");
	char what[128];
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_cert_revoke_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	p11ca_v1_CertRevokeRequest *r = &rr->req.op.cert_revoke;
	int rc = take_serial(cli, a->pos[0], r->serial, sizeof(r->serial));
	if (rc == 0 && reason != NULL && cli_reason_parse(reason, &r->reason, &em) != P11CA_OK)
		rc = cli_bad_value(cli, "--reason", &em);
	snprintf(what, sizeof(what), "cannot revoke certificate %.64s", r->serial);
	if (rc == 0)
		rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_CertRevokeResponse *res = &rr->resp.result.cert_revoke;
	if (cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_cert(&j, "cert", &res->cert);
		cli_json_end(&j);
	} else {
		cli_text_cert(cli->out, &res->cert);
	}
out:
	cli_rr_free(&rr);
	return rc;
}

static const struct cli_opt sign_opts[] = {
	{"ca", "CA", false, "the issuing CA: name or unique serial prefix (required)"},
	{"csr", "FILE", false, "the PKCS#10 request, PEM or DER (required)"},
	{"profile", "NAME", false,
	 "certificate profile (default: the server's [engine] default_profile)"},
	{"subject", "DN", false, "RFC 4514 subject (default: the CSR's)"},
	{"san", "NAME", true,
	 "subjectAltName: DNS:name, IP:addr, email:addr or URI:uri (bare: DNS)"},
	{"expires", "DAYS", false, "validity in days (default: the profile's)"},
	{"out", "FILE", false, "write the certificate (PEM) to FILE, atomically, mode 0644"},
	{NULL, NULL, false, NULL},
};
static const struct cli_opt list_opts[] = {
	{"ca", "CA", false, "only certificates issued by CA"},
	{"status", "STATUS", false, "only valid, expired, revoked or orphaned (default: any)"},
	{NULL, NULL, false, NULL},
};
static const struct cli_opt revoke_opts[] = {
	{"reason", "REASON", false,
	 "RFC 5280 reason, any case: unspecified (default), keyCompromise, cACompromise, "
	 "affiliationChanged, superseded, cessationOfOperation, certificateHold, "
	 "privilegeWithdrawn, aACompromise"},
	{NULL, NULL, false, NULL},
};
static const struct cli_opt no_opts[] = {{NULL, NULL, false, NULL}};

#define SERIAL_HELP                                                                                \
	"SERIAL is hex, any case, with or without colons (as openssl x509 -serial prints it);\n"   \
	"a unique prefix is enough."

const struct cli_cmd cli_cmds_cert[] = {
	{"cert", "sign", run_sign, "--ca CA --csr FILE", 0, 0, "issue a certificate for a CSR",
	 "Sends the CSR to the CA named by --ca and prints the new certificate as PEM (to\n"
	 "standard output, or to --out FILE followed by a summary). The CSR's own extensions\n"
	 "are ignored: the profile decides them. Needs the operator or admin role.",
	 "p11ca cert sign --ca issuing-1 --csr web.csr --san www.example.com "
	 "--san IP:192.0.2.7 --out web.pem",
	 sign_opts},
	{"cert", "view", run_view, "SERIAL", 1, 1, "show one certificate",
	 "Shows the certificate's summary: issuer CA, subject, validity, status (valid,\n"
	 "expired, revoked, orphaned), revocation, key type and profile.\n" SERIAL_HELP,
	 "p11ca cert view 3F:A2:C1", no_opts},
	{"cert", "list", run_list, "", 0, 0, "list issued certificates",
	 "One line per certificate, in serial order within each CA, all pages fetched.",
	 "p11ca cert list --ca issuing-1 --status revoked", list_opts},
	{"cert", "export", run_export, "SERIAL", 1, 1, "write a certificate (or chain)",
	 "Writes the certificate as PEM to standard output, or to --out FILE. --bundle appends\n"
	 "the issuing CAs up to the root. DER is never written to a terminal.\n" SERIAL_HELP,
	 "p11ca cert export 3FA2C1 --format der --out web.der", cli_export_opts},
	{"cert", "revoke", run_revoke, "SERIAL", 1, 1, "revoke a certificate",
	 "Records the revocation and publishes a new CRL listing it before answering. Prints the "
	 "certificate as recorded.\n"
	 "Needs the operator or admin role.\n" SERIAL_HELP,
	 "p11ca cert revoke 3FA2C1 --reason keyCompromise", revoke_opts},
	{NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};
