/*
 * ca import, ca edit, ca revoke: adopting a CA whose key is already on the token, changing
 * what a CA does from now on, and revoking an intermediate. Each checks its options
 * completely before the first RPC.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rpc/cli/ext.h"

static void print_ca_result(struct cli *cli, const p11ca_v1_CaSummary *ca,
			    const p11ca_v1_CaSettings *settings)
{
	if (cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_ca(&j, "ca", ca);
		if (settings != NULL)
			cli_json_settings(&j, "settings", settings);
		cli_json_end(&j);
		return;
	}
	cli_text_ca(cli->out, ca);
	if (settings != NULL)
		cli_text_settings(cli->out, settings);
}

/* RFC 7512 URIs only, and never one that carries a PIN: it would be sent and logged. */
static int key_uri_check(struct cli *cli, const char *uri)
{
	if (strncasecmp(uri, "pkcs11:", 7) != 0)
		return cli_error(cli, CLI_EX_USAGE, "bad --key-uri", "it must start with pkcs11:",
				 "e.g. 'pkcs11:object=root-key;id=%01'");
	if (strcasestr(uri, "pin-value") != NULL || strcasestr(uri, "pin-source") != NULL)
		return cli_error(cli, CLI_EX_USAGE, "bad --key-uri",
				 "it holds a PIN (pin-value or pin-source)",
				 "remove it: p11cad logs in with its own PIN");
	if (strcasestr(uri, "object=") == NULL && strcasestr(uri, "id=") == NULL)
		return cli_error(cli, CLI_EX_USAGE, "bad --key-uri",
				 "it names no key (object= or id=)",
				 "p11ca hsm keys or pkcs11-tool --list-objects shows them");
	return 0;
}

static int run_import(struct cli *cli, const struct cli_args *a)
{
	const char *uri = cli_require(cli, a, "key-uri"), *v;
	uint8_t *data = NULL;
	size_t len = 0;
	char what[160];

	if (uri == NULL)
		return CLI_EX_USAGE;
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_ca_import_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	p11ca_v1_CaImportRequest *r = &rr->req.op.ca_import;
	int rc = cli_copy(cli, r->name, sizeof(r->name), a->pos[0], "NAME");
	if (rc == 0)
		rc = key_uri_check(cli, uri);
	if (rc == 0)
		rc = cli_copy(cli, r->key_uri, sizeof(r->key_uri), uri, "--key-uri");
	if (rc == 0 && (v = cli_arg(cli->cmd, a, "default-profile")) != NULL)
		rc = cli_copy(cli, r->default_profile, sizeof(r->default_profile), v,
			      "--default-profile");
	if (rc == 0)
		rc = cli_ext_parse(cli, a, "", true, &r->issued, &r->has_issued);
	/* The key type is in the certificate, which only the server parses. */
	if (rc == 0)
		rc = cli_alg_option(cli, a, "algorithm", p11ca_v1_KeyType_KEY_TYPE_UNSPECIFIED,
				    NULL, &r->signature_algorithm);
	if (rc == 0)
		rc = cli_read_file(cli, a->pos[1], sizeof(r->certificate.bytes), &data, &len,
				   "the CA certificate");
	if (rc == 0 && len == 0)
		rc = cli_error(cli, CLI_EX_DATAERR, "cannot use the CA certificate",
			       "the file is empty", "give one certificate, PEM or DER");
	if (rc != 0)
		goto out;
	memcpy(r->certificate.bytes, data, len);
	r->certificate.size = (pb_size_t)len;
	snprintf(what, sizeof(what), "cannot import CA %.64s", r->name);
	rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc == 0)
		print_ca_result(cli, &rr->resp.result.ca_import.ca, NULL);
out:
	free(data);
	cli_rr_free(&rr);
	return rc;
}

static int run_edit(struct cli *cli, const struct cli_args *a)
{
	const char *v;
	char what[160];
	bool enable = cli_arg(cli->cmd, a, "enable") != NULL;
	bool disable = cli_arg(cli->cmd, a, "disable") != NULL;

	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_ca_edit_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	p11ca_v1_CaEditRequest *r = &rr->req.op.ca_edit;
	int rc = cli_copy(cli, r->ca, sizeof(r->ca), a->pos[0], "CA");
	if (rc == 0)
		rc = cli_exclusive(cli, a, "enable", "disable");
	r->has_enabled = enable || disable;
	r->enabled = enable;
	if (rc == 0)
		rc = cli_exclusive(cli, a, "default-profile", "no-default-profile");
	if (rc == 0 && (v = cli_arg(cli->cmd, a, "default-profile")) != NULL)
		rc = cli_copy(cli, r->default_profile, sizeof(r->default_profile), v,
			      "--default-profile");
	r->has_default_profile = cli_arg(cli->cmd, a, "default-profile") != NULL ||
				 cli_arg(cli->cmd, a, "no-default-profile") != NULL;
	if (rc == 0)
		rc = cli_ext_parse(cli, a, "", true, &r->issued, &r->has_issued);
	if (rc == 0 && !r->has_enabled && !r->has_default_profile && !r->has_issued &&
	    cli_arg(cli->cmd, a, "algorithm") == NULL)
		rc = cli_error(cli, CLI_EX_USAGE, "nothing to change", "give at least one option",
			       "see p11ca ca edit --help");
	if (rc == 0)
		rc = cli_alg_option(cli, a, "algorithm", p11ca_v1_KeyType_KEY_TYPE_UNSPECIFIED,
				    r->ca, &r->signature_algorithm);
	snprintf(what, sizeof(what), "cannot change CA %.64s", a->pos[0]);
	if (rc == 0)
		rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc == 0) {
		const p11ca_v1_CaEditResponse *res = &rr->resp.result.ca_edit;
		print_ca_result(cli, &res->ca, res->has_settings ? &res->settings : NULL);
	}
	cli_rr_free(&rr);
	return rc;
}

static int run_revoke(struct cli *cli, const struct cli_args *a)
{
	struct p11ca_errmsg em = {0};
	const char *reason = cli_arg(cli->cmd, a, "reason");
	const char *when = cli_arg(cli->cmd, a, "compromised");
	char what[160];

	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_ca_revoke_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	p11ca_v1_CaRevokeRequest *r = &rr->req.op.ca_revoke;
	int rc = cli_copy(cli, r->ca, sizeof(r->ca), a->pos[0], "CA");
	if (rc == 0 && reason != NULL && cli_reason_parse(reason, &r->reason, &em) != P11CA_OK)
		rc = cli_bad_value(cli, "--reason", &em);
	if (rc == 0 && when != NULL && cli_time_parse(when, &r->compromised_at, &em) != P11CA_OK)
		rc = cli_bad_value(cli, "--compromised", &em);
	snprintf(what, sizeof(what), "cannot revoke CA %.64s", a->pos[0]);
	if (rc == 0)
		rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc == 0)
		print_ca_result(cli, &rr->resp.result.ca_revoke.ca, NULL);
	cli_rr_free(&rr);
	return rc;
}

static const struct cli_opt import_opts[] = {
	{"key-uri", "URI", false,
	 "the CA's private key on the configured token: pkcs11:object=LABEL and/or id=%HEX "
	 "(required; never a PIN)"},
	{"default-profile", "NAME", false,
	 "profile for cert sign without --profile (default: the server's)"},
	{"algorithm", "ALG", false,
	 "what the CA issues with: rsa-sha256, rsa-pss-sha384, ecdsa-sha256, ed25519, ... "
	 "(default: what its certificate is signed with, if the key can make it)"},
	CLI_EXT_OPTS,
	{NULL, NULL, false, NULL},
};

static const struct cli_opt edit_opts[] = {
	{"enable", NULL, false, "let the CA issue again"},
	{"disable", NULL, false,
	 "stop new issuance (revocation, CRLs and reads continue; nothing is revoked)"},
	{"default-profile", "NAME", false, "profile for cert sign without --profile"},
	{"no-default-profile", NULL, false, "use the server's default profile again"},
	{"algorithm", "ALG", false,
	 "what the CA issues with from now on: a full name (ecdsa-sha384) or SHA-256/384/512 "
	 "for the CA key's kind"},
	CLI_EXT_OPTS,
	{NULL, NULL, false, NULL},
};

static const struct cli_opt revoke_opts[] = {
	{"reason", "REASON", false,
	 "RFC 5280 reason (any case, key_compromise style too): unspecified (default), "
	 "keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, "
	 "certificateHold, privilegeWithdrawn, aACompromise"},
	{"compromised", "TIME", false,
	 "when the key was (or may have been) compromised, for the CRL's InvalidityDate: "
	 "2026-11-20T10:00:00Z, 2026-11-20T11:00:00+01:00, 2026-11-20 or @SECONDS"},
	{NULL, NULL, false, NULL},
};

const struct cli_cmd cli_cmds_ca_edit[] = {
	{"ca", "import", run_import, "NAME CERTFILE", 2, 2,
	 "adopt a CA whose key is already on the HSM token",
	 "Records CERTFILE (one CA certificate, PEM or DER) as CA NAME, signing with the\n"
	 "private key --key-uri names on the configured token; the key must be the\n"
	 "certificate's, and a URI matching several keys is refused. A certificate issued by\n"
	 "a CA held here becomes its child; otherwise it is a root here. The extension\n"
	 "options set what the CA adds to what it issues, as in ca init. Needs the admin role.",
	 "p11ca ca import legacy-root root.pem --key-uri 'pkcs11:object=legacy-root;id=%01' "
	 "--crl-url http://crl.example.com/legacy.crl",
	 import_opts},
	{"ca", "edit", run_edit, "CA", 1, 1, "change what a CA does from now on",
	 "Changes a CA's settings; its certificate never changes. Options left out keep their\n"
	 "value. Each extension option replaces that one extension for certificates issued\n"
	 "from now on (--crl-url twice gives two URLs); --no-... gives \"none\" even when the\n"
	 "profile has some. Prints the CA and its settings. Needs the admin role.",
	 "p11ca ca edit issuing-1 --ocsp-url http://ocsp.example.com --no-issuer-url "
	 "--default-profile server",
	 edit_opts},
	{"ca", "revoke", run_revoke, "CA", 1, 1, "revoke an intermediate CA",
	 "Revokes the CA's certificate: it appears on its parent's CRLs and the CA stops\n"
	 "issuing. A root cannot be revoked (take it out of trust stores). Certificates the\n"
	 "CA issued are not revoked by this. Needs the admin role.",
	 "p11ca ca revoke issuing-1 --reason keyCompromise --compromised 2026-11-20T10:00:00Z",
	 revoke_opts},
	{NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};
