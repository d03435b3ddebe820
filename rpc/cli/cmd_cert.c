/*
 * cert sign, resign, view, export, revoke: the commands that make or change one
 * certificate. Serials are normalised here (colons dropped, upper case, hex checked) and
 * sent as text; the server resolves unique prefixes. list, import and watchers are in
 * cmd_cert_records.c.
 */
#include <stdlib.h>
#include <string.h>

#include "rpc/cli/ext.h"

/* Normalise SERIAL into dst (a request's 65-byte serial field). */
int cli_take_serial(struct cli *cli, const char *in, char *dst, size_t dst_size)
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

/* --watch EMAIL (repeatable) into a watchers field of 8 addresses. */
int cli_watchers(struct cli *cli, const struct cli_args *a, const char *name, char (*dst)[255],
		 pb_size_t *count)
{
	struct p11ca_errmsg em = {0};
	char opt[32];
	int rc = cli_copy_list(cli, a, name, dst[0], sizeof(dst[0]), 8, count);
	snprintf(opt, sizeof(opt), "--%s", name);
	for (pb_size_t i = 0; rc == 0 && i < *count; i++)
		if (cli_email_check(dst[i], &em) != P11CA_OK)
			rc = cli_bad_value(cli, opt, &em);
	return rc;
}

static int sign_options(struct cli *cli, const struct cli_args *a, p11ca_v1_CertSignRequest *r)
{
	const struct cli_cmd *cmd = cli->cmd;
	struct p11ca_errmsg em = {0};
	const char *v;
	int rc = 0;

	if ((v = cli_arg(cmd, a, "profile")) != NULL)
		rc = cli_copy(cli, r->profile, sizeof(r->profile), v, "--profile");
	if (rc == 0 && (v = cli_arg(cmd, a, "subject")) != NULL)
		rc = cli_copy(cli, r->subject, sizeof(r->subject), v, "--subject");
	if (rc == 0)
		rc = cli_copy_list(cli, a, "san", r->sans[0], sizeof(r->sans[0]), 64,
				   &r->sans_count);
	for (pb_size_t i = 0; rc == 0 && i < r->sans_count; i++)
		if (cli_general_name_check(r->sans[i], false, &em) != P11CA_OK)
			rc = cli_bad_value(cli, "--san", &em);
	if (rc == 0 && (v = cli_arg(cmd, a, "expires")) != NULL) {
		uint32_t n = 0;
		if (cli_uint_parse(v, 36500, &n, &em) != P11CA_OK || n == 0)
			rc = cli_bad_value(cli, "--expires (1..36500 days)", &em);
		r->expires_days = n;
	}
	if (rc == 0)
		rc = cli_watchers(cli, a, "watch", r->watchers, &r->watchers_count);
	r->no_cn_in_san = cli_arg(cmd, a, "cn-not-in-san") != NULL;
	r->no_san_to_cn = cli_arg(cmd, a, "no-cn-from-san") != NULL;
	if (rc == 0)
		rc = cli_ext_parse(cli, a, "", true, &r->extensions, &r->has_extensions);
	/* An unknown algorithm name is refused now; a bare hash is resolved (with a look-up)
	 * only once everything else, the CSR file included, is known to be fine. */
	p11ca_v1_SignatureAlgorithm alg;
	unsigned bits;
	v = cli_arg(cmd, a, "algorithm");
	if (rc == 0 && v != NULL && cli_sig_alg_parse(v, &alg, NULL) != P11CA_OK &&
	    cli_hash_parse(v, &bits, NULL) != P11CA_OK)
		rc = cli_alg_option(cli, a, "algorithm", p11ca_v1_KeyType_KEY_TYPE_UNSPECIFIED,
				    NULL, &alg);
	return rc;
}

static int run_sign(struct cli *cli, const struct cli_args *a)
{
	const char *ca = cli_require(cli, a, "ca"), *csr = cli_require(cli, a, "csr");
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
	if (rc == 0)
		rc = sign_options(cli, a, r);
	if (rc == 0)
		rc = cli_read_file(cli, csr, sizeof(r->csr.bytes), &data, &len, "the CSR");
	if (rc == 0 && len == 0)
		rc = cli_error(cli, CLI_EX_DATAERR, "cannot use the CSR", "the file is empty",
			       "give a PKCS#10 request, PEM or DER");
	if (rc == 0)
		rc = cli_alg_option(cli, a, "algorithm", p11ca_v1_KeyType_KEY_TYPE_UNSPECIFIED, ca,
				    &r->signature_algorithm);
	if (rc != 0)
		goto out;
	memcpy(r->csr.bytes, data, len);
	r->csr.size = (pb_size_t)len;
	snprintf(what, sizeof(what), "cannot sign %.200s with CA %.64s", csr, ca);
	rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_CertSignResponse *res = &rr->resp.result.cert_sign;
	rc = print_issued(cli, &res->cert, res->certificate_der.bytes, res->certificate_der.size,
			  cli_arg(cli->cmd, a, "out"));
out:
	free(data);
	cli_rr_free(&rr);
	return rc;
}

/* The CA a certificate came from, for resolving a bare --algorithm hash. */
static int cert_ca(struct cli *cli, const char *serial, char *ca, size_t ca_size)
{
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_cert_view_tag);
	char what[128];
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	snprintf(rr->req.op.cert_view.serial, sizeof(rr->req.op.cert_view.serial), "%s", serial);
	snprintf(what, sizeof(what), "cannot look up certificate %.64s", serial);
	int rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc == 0)
		rc = cli_copy(cli, ca, ca_size, rr->resp.result.cert_view.cert.ca, "CA");
	cli_rr_free(&rr);
	return rc;
}

static int run_resign(struct cli *cli, const struct cli_args *a)
{
	struct p11ca_errmsg em = {0};
	const char *v;
	char what[160], ca[65] = "";
	p11ca_v1_SignatureAlgorithm alg;

	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_cert_resign_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	p11ca_v1_CertResignRequest *r = &rr->req.op.cert_resign;
	int rc = cli_take_serial(cli, a->pos[0], r->serial, sizeof(r->serial));
	if (rc == 0 && (v = cli_arg(cli->cmd, a, "ca")) != NULL)
		rc = cli_copy(cli, r->ca, sizeof(r->ca), v, "--ca");
	if (rc == 0 && (v = cli_arg(cli->cmd, a, "profile")) != NULL)
		rc = cli_copy(cli, r->profile, sizeof(r->profile), v, "--profile");
	if (rc == 0 && (v = cli_arg(cli->cmd, a, "expires")) != NULL) {
		uint32_t n = 0;
		if (cli_uint_parse(v, 36500, &n, &em) != P11CA_OK || n == 0)
			rc = cli_bad_value(cli, "--expires (1..36500 days)", &em);
		r->expires_days = n;
	}
	/* Only a bare hash needs to know the CA; a full name is sent as it is. */
	v = cli_arg(cli->cmd, a, "algorithm");
	if (rc == 0 && v != NULL && cli_sig_alg_parse(v, &alg, NULL) != P11CA_OK &&
	    r->ca[0] == '\0' && cli_hash_parse(v, &(unsigned){0}, NULL) == P11CA_OK)
		rc = cert_ca(cli, r->serial, ca, sizeof(ca));
	if (rc == 0)
		rc = cli_alg_option(cli, a, "algorithm", p11ca_v1_KeyType_KEY_TYPE_UNSPECIFIED,
				    r->ca[0] ? r->ca : ca, &r->signature_algorithm);
	snprintf(what, sizeof(what), "cannot re-sign certificate %.64s", r->serial);
	if (rc == 0)
		rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc == 0) {
		const p11ca_v1_CertResignResponse *res = &rr->resp.result.cert_resign;
		rc = print_issued(cli, &res->cert, res->certificate_der.bytes,
				  res->certificate_der.size, cli_arg(cli->cmd, a, "out"));
	}
	cli_rr_free(&rr);
	return rc;
}

static int run_view(struct cli *cli, const struct cli_args *a)
{
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_cert_view_tag);
	char what[128];
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	int rc = cli_take_serial(cli, a->pos[0], rr->req.op.cert_view.serial,
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
		cli_json_arr(&j, "watchers");
		for (pb_size_t i = 0; i < res->watchers_count; i++)
			cli_json_str(&j, NULL, res->watchers[i]);
		cli_json_arr_end(&j);
		cli_json_strn(&j, "certificate_pem", pem, pem_len);
		cli_json_end(&j);
		free(pem);
	} else {
		cli_text_cert(cli->out, &res->cert);
		cli_text_watchers(cli->out, res->watchers, res->watchers_count);
	}
out:
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
	int rc = cli_take_serial(cli, a->pos[0], r->serial, sizeof(r->serial));
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
	const char *when = cli_arg(cli->cmd, a, "compromised");
	char what[128];
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_cert_revoke_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	p11ca_v1_CertRevokeRequest *r = &rr->req.op.cert_revoke;
	int rc = cli_take_serial(cli, a->pos[0], r->serial, sizeof(r->serial));
	if (rc == 0 && reason != NULL && cli_reason_parse(reason, &r->reason, &em) != P11CA_OK)
		rc = cli_bad_value(cli, "--reason", &em);
	if (rc == 0 && when != NULL && cli_time_parse(when, &r->compromised_at, &em) != P11CA_OK)
		rc = cli_bad_value(cli, "--compromised", &em);
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
	 "certificate profile (default: the CA's default profile, else the server's; "
	 "p11ca profile list shows them)"},
	{"subject", "DN", false,
	 "RFC 4514 (CN=x,O=Org,C=AT) or OpenSSL form (/C=AT/O=Org/CN=x) (default: the "
	 "profile's subject with the first SAN as CN, else the CSR's subject)"},
	{"san", "NAME", true,
	 "subjectAltName: DNS:name, IP:addr, email:addr, URI:uri, dirname:RFC4514, rid:OID, "
	 "otherName:OID;UTF8:value; bare: an IP literal is IP, anything else DNS"},
	{"cn-not-in-san", NULL, false, "do not add the subject's CN to the SANs"},
	{"no-cn-from-san", NULL, false,
	 "do not make the first SAN the CN when the subject has none"},
	{"expires", "DAYS", false,
	 "validity in days (default: the profile's); past the CA's notAfter is refused"},
	{"algorithm", "ALG", false,
	 "signature algorithm: ecdsa-sha384, rsa-sha256, rsa-pss-sha512, ed25519, ... or "
	 "SHA-256/SHA-384/SHA-512 for the CA key's kind (default: the CA's)"},
	{"watch", "EMAIL", true, "tell this address before the certificate expires"},
	{"out", "FILE", false, "write the certificate (PEM) to FILE, atomically, mode 0644"},
	CLI_EXT_OPTS,
	{NULL, NULL, false, NULL},
};
static const struct cli_opt resign_opts[] = {
	{"ca", "CA", false, "issue from this CA instead of the original's"},
	{"profile", "NAME", false, "use this profile instead of the original's"},
	{"expires", "DAYS", false, "validity in days (default: the profile's)"},
	{"algorithm", "ALG", false, "signature algorithm, as in cert sign (default: the CA's)"},
	{"out", "FILE", false, "write the certificate (PEM) to FILE, atomically, mode 0644"},
	{NULL, NULL, false, NULL},
};
static const struct cli_opt revoke_opts[] = {
	{"reason", "REASON", false,
	 "RFC 5280 reason, any case (key_compromise style too): unspecified (default), "
	 "keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, "
	 "certificateHold, privilegeWithdrawn, aACompromise"},
	{"compromised", "TIME", false,
	 "when the key was (or may have been) compromised, the CRL's InvalidityDate: "
	 "2026-11-20T10:00:00Z, 2026-11-20T11:00:00+01:00, 2026-11-20 or @SECONDS"},
	{NULL, NULL, false, NULL},
};
static const struct cli_opt no_opts[] = {{NULL, NULL, false, NULL}};

#define SERIAL_HELP                                                                                \
	"SERIAL is hex, any case, with or without colons (as openssl x509 -serial prints it);\n"   \
	"a unique prefix is enough."

const struct cli_cmd cli_cmds_cert[] = {
	{"cert", "sign", run_sign, "--ca CA --csr FILE", 0, 0, "issue a certificate for a CSR",
	 "Sends the CSR to the CA named by --ca and prints the new certificate as PEM (to\n"
	 "standard output, or to --out FILE followed by a summary). Nothing is taken from the\n"
	 "CSR but its public key and, when no --subject and no SAN give one, its subject.\n"
	 "Extensions come from the profile, then the CA's settings, then the options here\n"
	 "(later wins per extension; --no-... removes one). A CN that is a DNS name or IP\n"
	 "is added to the SANs unless --cn-not-in-san; the first SAN becomes the CN when\n"
	 "there is none unless --no-cn-from-san. Needs the operator or admin role.",
	 "p11ca cert sign --ca issuing-1 --csr web.csr --san www.example.com "
	 "--san IP:192.0.2.7 --profile webserver --must-staple --watch ops@example.com "
	 "--out web.pem",
	 sign_opts},
	{"cert", "resign", run_resign, "SERIAL", 1, 1, "issue a certificate again, new serial",
	 "Issues a new certificate for the same public key, subject, SANs, profile and\n"
	 "watchers as certificate SERIAL, with a new serial and validity; the old one stays\n"
	 "valid (revoke it separately). Prints the new certificate as cert sign "
	 "does.\n" SERIAL_HELP,
	 "p11ca cert resign 3FA2C1 --expires 90 --out web-2.pem", resign_opts},
	{"cert", "view", run_view, "SERIAL", 1, 1, "show one certificate",
	 "Shows the certificate's summary: issuer CA, subject, validity, status (valid,\n"
	 "expired, revoked, orphaned), revocation, key type, profile and who is told before\n"
	 "it expires.\n" SERIAL_HELP,
	 "p11ca cert view 3F:A2:C1", no_opts},
	{"cert", "export", run_export, "SERIAL", 1, 1, "write a certificate (or chain)",
	 "Writes the certificate as PEM to standard output, or to --out FILE. --bundle appends\n"
	 "the issuing CAs up to the root. DER is never written to a terminal.\n" SERIAL_HELP,
	 "p11ca cert export 3FA2C1 --format der --out web.der", cli_export_opts},
	{"cert", "revoke", run_revoke, "SERIAL", 1, 1, "revoke a certificate",
	 "Records the revocation and publishes a new CRL listing it before answering. Prints the "
	 "certificate as recorded.\n"
	 "Needs the operator or admin role.\n" SERIAL_HELP,
	 "p11ca cert revoke 3FA2C1 --reason key_compromise --compromised 2026-11-20T10:00:00Z",
	 revoke_opts},
	{NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};
