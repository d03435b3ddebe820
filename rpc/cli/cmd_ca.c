/*
 * ca init, ca list [--tree], ca view, ca export. A CA is named by its name or a unique
 * prefix of its certificate's serial; the server resolves which, so selectors pass through.
 */
#include <stdlib.h>
#include <string.h>

#include "rpc/cli/ext.h"

/* Follow next_page_token to the end; guards against a server that never stops. */
#define MAX_PAGES 4096

static const struct cli_opt init_opts[] = {
	{"parent", "CA", false,
	 "issue the new CA's certificate from CA (name or serial prefix); "
	 "default: a self-signed root"},
	{"key-type", "TYPE", false,
	 "rsa2048, rsa3072, rsa4096, p256, p384, p521 or ed25519 (default p256)"},
	{"key-label", "LABEL", false, "the key's PKCS#11 label (default: derived from NAME)"},
	{"path-length", "N", false,
	 "pathLenConstraint: how many CAs may follow below this one (default: none for a root; the "
	 "parent's minus one below a parent that has one)"},
	{"no-path-length", NULL, false,
	 "no pathLenConstraint (the default for a root; refused below a parent that has one)"},
	{"expires", "DAYS", false,
	 "validity in days (default: the server's; clamped to the parent's notAfter)"},
	{"algorithm", "ALG", false,
	 "what signs the CA certificate: rsa-sha256 (PKCS#1 v1.5), rsa-pss-sha384, "
	 "ecdsa-sha512, ed25519, ... or just SHA-256/SHA-384/SHA-512 for the signing key's kind "
	 "(default: the parent's, or the key type's for a root)"},
	{"sig-alg", "ALG", false, "the older name of --algorithm"},
	{"issue-algorithm", "ALG", false,
	 "what the new CA signs certificates with by default (default: --algorithm for a root, "
	 "else the key type's)"},
	{"default-profile", "NAME", false,
	 "profile for cert sign without --profile (default: the server's)"},
	{"permit-name", "NAME", true,
	 "nameConstraints permittedSubtree: DNS:example.com, DNS:.example.com (subdomains "
	 "only), IP:10.0.0.0/8, email:example.com, URI:.example.com, dirname:O=Example,C=AT"},
	{"exclude-name", "NAME", true, "nameConstraints excludedSubtree, written as --permit-name"},
	{"require-explicit-policy", "N", false,
	 "policyConstraints requireExplicitPolicy: certificates after N more must have a policy"},
	{"inhibit-policy-mapping", "N", false, "policyConstraints inhibitPolicyMapping"},
	{"inhibit-any-policy", "N", false,
	 "inhibitAnyPolicy: anyPolicy stops counting after N more certificates"},
	CLI_EXT_OPTS,
	CLI_CA_EXT_OPTS,
	{NULL, NULL, false, NULL},
};

/* An optional uint32 field from option `name` (0..255: path lengths and skip counts). */
static int opt_small(struct cli *cli, const struct cli_args *a, const char *name, bool *has,
		     uint32_t *v)
{
	struct p11ca_errmsg em = {0};
	const char *s = cli_arg(cli->cmd, a, name);
	char opt[48];
	if (s == NULL)
		return 0;
	snprintf(opt, sizeof(opt), "--%s", name);
	if (cli_uint_parse(s, 255, v, &em) != P11CA_OK)
		return cli_bad_value(cli, opt, &em);
	*has = true;
	return 0;
}

/* Name constraints: each needs a type, and no rid or otherName (RFC 5280 4.2.1.10). */
static int constraints(struct cli *cli, const struct cli_args *a, const char *name, char *dst,
		       size_t elem, size_t max, pb_size_t *count)
{
	struct p11ca_errmsg em = {0};
	char opt[48];
	int rc = cli_copy_list(cli, a, name, dst, elem, max, count);
	snprintf(opt, sizeof(opt), "--%s", name);
	for (pb_size_t i = 0; rc == 0 && i < *count; i++)
		if (cli_general_name_check(dst + i * elem, true, &em) != P11CA_OK)
			rc = cli_bad_value(cli, opt, &em);
	return rc;
}

static void print_ca_pem_json(struct cli_json *j, const uint8_t *der, size_t len)
{
	size_t pem_len = 0;
	char *pem = len > 0 ? cli_der_to_pem("CERTIFICATE", der, len, &pem_len) : NULL;
	cli_json_strn(j, "certificate_pem", pem, pem_len);
	free(pem);
}

static int run_init(struct cli *cli, const struct cli_args *a)
{
	const struct cli_cmd *cmd = cli->cmd;
	struct p11ca_errmsg em = {0};
	const char *v;
	uint32_t n = 0;
	bool any = false;
	int rc;

	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_ca_init_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	p11ca_v1_CaInitRequest *r = &rr->req.op.ca_init;
	r->key_type = p11ca_v1_KeyType_KEY_TYPE_P256;
	rc = cli_copy(cli, r->name, sizeof(r->name), a->pos[0], "NAME");
	if (rc == 0)
		rc = cli_copy(cli, r->subject, sizeof(r->subject), a->pos[1], "SUBJECT");
	if (rc == 0 && (v = cli_arg(cmd, a, "parent")) != NULL)
		rc = cli_copy(cli, r->parent, sizeof(r->parent), v, "--parent");
	if (rc == 0 && (v = cli_arg(cmd, a, "key-label")) != NULL)
		rc = cli_copy(cli, r->key_label, sizeof(r->key_label), v, "--key-label");
	if (rc == 0 && (v = cli_arg(cmd, a, "key-type")) != NULL &&
	    cli_key_type_parse(v, &r->key_type, &em) != P11CA_OK)
		rc = cli_bad_value(cli, "--key-type", &em);
	if (rc == 0)
		rc = cli_exclusive(cli, a, "path-length", "no-path-length");
	if (rc == 0)
		rc = opt_small(cli, a, "path-length", &r->has_path_length, &r->path_length);
	if (rc == 0 && (v = cli_arg(cmd, a, "expires")) != NULL) {
		if (cli_uint_parse(v, 36500, &n, &em) != P11CA_OK || n == 0)
			rc = cli_bad_value(cli, "--expires (1..36500 days)", &em);
		r->expires_days = n;
	}
	if (rc == 0 && (v = cli_arg(cmd, a, "default-profile")) != NULL)
		rc = cli_copy(cli, r->default_profile, sizeof(r->default_profile), v,
			      "--default-profile");
	if (rc == 0)
		rc = constraints(cli, a, "permit-name", r->permitted_names[0],
				 sizeof(r->permitted_names[0]), 8, &r->permitted_names_count);
	if (rc == 0)
		rc = constraints(cli, a, "exclude-name", r->excluded_names[0],
				 sizeof(r->excluded_names[0]), 8, &r->excluded_names_count);
	if (rc == 0)
		rc = opt_small(cli, a, "require-explicit-policy", &r->has_require_explicit_policy,
			       &r->require_explicit_policy);
	if (rc == 0)
		rc = opt_small(cli, a, "inhibit-policy-mapping", &r->has_inhibit_policy_mapping,
			       &r->inhibit_policy_mapping);
	if (rc == 0)
		rc = opt_small(cli, a, "inhibit-any-policy", &r->has_inhibit_any_policy,
			       &r->inhibit_any_policy);
	if (rc == 0)
		rc = cli_ext_parse(cli, a, "", true, &r->issued, &r->has_issued);
	if (rc == 0)
		rc = cli_ext_parse(cli, a, "ca-", false, &r->extensions, &any);
	r->has_extensions = any;
	if (rc == 0)
		rc = cli_exclusive(cli, a, "algorithm", "sig-alg");
	/* The CA certificate is signed by the parent's key, or by its own for a root. */
	const char *alg_opt = cli_arg(cmd, a, "sig-alg") != NULL ? "sig-alg" : "algorithm";
	if (rc == 0 && r->parent[0] != '\0')
		rc = cli_alg_option(cli, a, alg_opt, p11ca_v1_KeyType_KEY_TYPE_UNSPECIFIED,
				    r->parent, &r->signature_algorithm);
	else if (rc == 0)
		rc = cli_alg_option(cli, a, alg_opt, r->key_type, NULL, &r->signature_algorithm);
	if (rc == 0)
		rc = cli_alg_option(cli, a, "issue-algorithm", r->key_type, NULL,
				    &r->issue_signature_algorithm);
	char what[128];
	snprintf(what, sizeof(what), "cannot create CA %.64s", r->name);
	if (rc == 0)
		rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_CaInitResponse *res = &rr->resp.result.ca_init;
	if (cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_ca(&j, "ca", &res->ca);
		print_ca_pem_json(&j, res->certificate_der.bytes, res->certificate_der.size);
		cli_json_end(&j);
	} else {
		cli_text_ca(cli->out, &res->ca);
	}
out:
	cli_rr_free(&rr);
	return rc;
}

int cli_alg_option(struct cli *cli, const struct cli_args *a, const char *name,
		   p11ca_v1_KeyType key, const char *ca, p11ca_v1_SignatureAlgorithm *out)
{
	struct p11ca_errmsg em = {0};
	const char *v = cli_arg(cli->cmd, a, name);
	p11ca_v1_SignatureAlgorithm like =
		p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_UNSPECIFIED;
	unsigned bits = 0;
	char opt[48];
	int rc = 0;

	snprintf(opt, sizeof(opt), "--%s", name);
	if (v == NULL || cli_sig_alg_parse(v, out, NULL) == P11CA_OK)
		return 0;
	if (cli_hash_parse(v, &bits, NULL) != P11CA_OK) {
		(void)p11ca_fail(&em, P11CA_E_INVALID_ARG,
				 "unknown algorithm '%.40s'; use rsa-sha256/384/512 (PKCS#1 v1.5), "
				 "rsa-pss-sha256/384/512, ecdsa-sha256/384/512, ed25519, or "
				 "SHA-256/SHA-384/SHA-512 to keep the key's kind",
				 v);
		return cli_bad_value(cli, opt, &em);
	}
	/* A bare hash needs the signing key's kind: ask the server about the CA holding it. */
	if (key == p11ca_v1_KeyType_KEY_TYPE_UNSPECIFIED && ca != NULL) {
		struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_ca_view_tag);
		char what[160];
		if (rr == NULL)
			return CLI_EX_SOFTWARE;
		rc = cli_copy(cli, rr->req.op.ca_view.ca, sizeof(rr->req.op.ca_view.ca), ca, "CA");
		snprintf(what, sizeof(what), "cannot look up CA %.64s for %s %.16s", ca, opt, v);
		if (rc == 0)
			rc = cli_call(cli, what, &rr->req, &rr->resp);
		if (rc == 0) {
			const p11ca_v1_CaViewResponse *res = &rr->resp.result.ca_view;
			key = res->ca.key_type;
			like = res->settings.signature_algorithm ? res->settings.signature_algorithm
								 : res->ca.signature_algorithm;
		}
		cli_rr_free(&rr);
		if (rc != 0)
			return rc;
	}
	if (cli_sig_alg_for_hash(bits, key, like, out, &em) != P11CA_OK)
		return cli_bad_value(cli, opt, &em);
	return 0;
}

struct ca_vec {
	p11ca_v1_CaSummary *v;
	size_t n, cap;
};

static int ca_list_all(struct cli *cli, struct ca_vec *cas)
{
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_ca_list_tag);
	p11ca_v1_CaListRequest_page_token_t token = {0};
	int rc = 0;

	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	for (int page = 0; rc == 0; page++) {
		if (page == MAX_PAGES) {
			rc = cli_error(cli, CLI_EX_PROTOCOL, "cannot list CAs",
				       "the server keeps sending more pages", NULL);
			break;
		}
		memset(&rr->req, 0, sizeof(rr->req));
		rr->req.which_op = p11ca_v1_Request_ca_list_tag;
		rr->req.op.ca_list.page_token = token;
		rc = cli_call(cli, "cannot list CAs", &rr->req, &rr->resp);
		if (rc != 0)
			break;
		const p11ca_v1_CaListResponse *res = &rr->resp.result.ca_list;
		if (cas->n + res->cas_count > cas->cap) {
			size_t cap = cas->cap * 2 + res->cas_count;
			p11ca_v1_CaSummary *nv = realloc(cas->v, cap * sizeof(*nv));
			if (nv == NULL) {
				rc = cli_error(cli, CLI_EX_SOFTWARE, "out of memory", NULL, NULL);
				break;
			}
			cas->v = nv;
			cas->cap = cap;
		}
		memcpy(cas->v + cas->n, res->cas, res->cas_count * sizeof(res->cas[0]));
		cas->n += res->cas_count;
		if (res->next_page_token.size == 0)
			break;
		_Static_assert(sizeof(token) == sizeof(res->next_page_token), "page tokens differ");
		memcpy(&token, &res->next_page_token, sizeof(token));
	}
	cli_rr_free(&rr);
	return rc;
}

static size_t find_ca(const struct ca_vec *cas, const char *name)
{
	for (size_t i = 0; i < cas->n; i++)
		if (strcmp(cas->v[i].name, name) == 0)
			return i;
	return SIZE_MAX;
}

/* Depth-first order: each CA after its parent, children in the server's order. A CA
 * whose parent is not in the list is shown as a root. depth < n stops a cycle. */
static void tree_order(const struct ca_vec *cas, size_t i, size_t depth, size_t *order,
		       size_t *depths, size_t *k, bool *seen)
{
	if (seen[i] || depth > cas->n)
		return;
	seen[i] = true;
	order[*k] = i;
	depths[(*k)++] = depth;
	for (size_t c = 0; c < cas->n; c++)
		if (strcmp(cas->v[c].parent, cas->v[i].name) == 0 && c != i)
			tree_order(cas, c, depth + 1, order, depths, k, seen);
}

static int print_ca_table(struct cli *cli, const struct ca_vec *cas, bool tree)
{
	static const char *const head[] = {"NAME", "SERIAL",	"STATUS",
					   "KEY",  "NOT AFTER", "SUBJECT"};
	enum { COLS = 6, CELL = 96 };
	size_t n = cas->n, k = 0;
	size_t *order = calloc(n + 1, sizeof(*order)), *depths = calloc(n + 1, sizeof(*depths));
	bool *seen = calloc(n + 1, sizeof(*seen));
	const char **cells = calloc(n * COLS + 1, sizeof(*cells));
	char(*text)[3][CELL] = calloc(n + 1, sizeof(*text));
	int rc = 0;

	if (order == NULL || depths == NULL || seen == NULL || cells == NULL || text == NULL) {
		rc = cli_error(cli, CLI_EX_SOFTWARE, "out of memory", NULL, NULL);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (!tree) {
			order[k++] = i;
			continue;
		}
		const char *p = cas->v[i].parent;
		if (p[0] == '\0' || find_ca(cas, p) == SIZE_MAX)
			tree_order(cas, i, 0, order, depths, &k, seen);
	}
	for (size_t i = 0; tree && i < n; i++) /* leftovers of a cycle */
		if (!seen[i])
			tree_order(cas, i, 0, order, depths, &k, seen);
	for (size_t r = 0; r < k; r++) {
		const p11ca_v1_CaSummary *ca = &cas->v[order[r]];
		size_t indent = depths[r] * 2 < CELL - 70 ? depths[r] * 2 : CELL - 70;
		snprintf(text[r][0], CELL, "%*s%s", (int)indent, "", ca->name);
		cli_serial_format(ca->serial.bytes, ca->serial.size, text[r][1], CELL);
		cli_time_format(ca->not_after, text[r][2], CELL);
		const char *row[COLS] = {text[r][0],
					 text[r][1],
					 cli_ca_status_name(ca->status),
					 cli_key_type_name(ca->key_type),
					 text[r][2],
					 ca->subject};
		memcpy(&cells[r * COLS], row, sizeof(row));
	}
	cli_table(cli->out, head, COLS, cells, k);
out:
	free(order);
	free(depths);
	free(seen);
	free(cells);
	free(text);
	return rc;
}

static int run_list(struct cli *cli, const struct cli_args *a)
{
	struct ca_vec cas = {0};
	int rc = ca_list_all(cli, &cas);
	if (rc != 0)
		goto out;
	if (cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_arr(&j, "cas");
		for (size_t i = 0; i < cas.n; i++)
			cli_json_ca(&j, NULL, &cas.v[i]);
		cli_json_arr_end(&j);
		cli_json_end(&j);
	} else {
		rc = print_ca_table(cli, &cas, cli_arg(cli->cmd, a, "tree") != NULL);
	}
out:
	free(cas.v);
	return rc;
}

static int run_view(struct cli *cli, const struct cli_args *a)
{
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_ca_view_tag);
	char what[128], t[32];
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	int rc = cli_copy(cli, rr->req.op.ca_view.ca, sizeof(rr->req.op.ca_view.ca), a->pos[0],
			  "CA");
	snprintf(what, sizeof(what), "cannot show CA %.64s", a->pos[0]);
	if (rc == 0)
		rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_CaViewResponse *res = &rr->resp.result.ca_view;
	if (cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_ca(&j, "ca", &res->ca);
		cli_json_uint(&j, "certificates_issued", res->certificates_issued);
		cli_json_uint(&j, "certificates_revoked", res->certificates_revoked);
		cli_json_time(&j, "crl_next_update", res->crl_next_update);
		if (res->has_settings)
			cli_json_settings(&j, "settings", &res->settings);
		else
			cli_json_str(&j, "settings", NULL);
		print_ca_pem_json(&j, res->certificate_der.bytes, res->certificate_der.size);
		cli_json_end(&j);
		goto out;
	}
	cli_text_ca(cli->out, &res->ca);
	cli_time_format(res->crl_next_update, t, sizeof(t));
	fprintf(cli->out, "%-20s %llu\n%-20s %llu\n%-20s %s\n",
		"issued:", (unsigned long long)res->certificates_issued,
		"revoked:", (unsigned long long)res->certificates_revoked,
		"CRL next update:", t[0] ? t : "(no CRL yet)");
	if (res->has_settings)
		cli_text_settings(cli->out, &res->settings);
out:
	cli_rr_free(&rr);
	return rc;
}

static int run_export(struct cli *cli, const struct cli_args *a)
{
	char what[128];
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_ca_export_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	p11ca_v1_CaExportRequest *r = &rr->req.op.ca_export;
	int rc = cli_copy(cli, r->ca, sizeof(r->ca), a->pos[0], "CA");
	if (rc == 0)
		rc = cli_export_format(cli, a, &r->format, &r->bundle);
	snprintf(what, sizeof(what), "cannot export CA %.64s", a->pos[0]);
	if (rc == 0)
		rc = cli_call(cli, what, &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_CaExportResponse *res = &rr->resp.result.ca_export;
	rc = cli_export_write(cli, a, res->data.bytes, res->data.size, res->certificate_count,
			      r->format == p11ca_v1_Format_FORMAT_DER);
out:
	cli_rr_free(&rr);
	return rc;
}

static const struct cli_opt list_opts[] = {
	{"tree", NULL, false, "indent each CA under the CA that issued it"},
	{NULL, NULL, false, NULL},
};
static const struct cli_opt no_opts[] = {{NULL, NULL, false, NULL}};

const struct cli_cmd cli_cmds_ca[] = {
	{"ca", "init", run_init, "NAME SUBJECT", 2, 2,
	 "create a CA: a key on the HSM and its certificate",
	 "Generates the CA's key on the HSM token and issues its certificate: self-signed\n"
	 "(a root) unless --parent names the issuing CA. NAME is the CA's unique name\n"
	 "(letters, digits, '-', '_', '.'); SUBJECT is RFC 4514 (CN=x,O=Org,C=AT) or OpenSSL\n"
	 "form (/C=AT/O=Org/CN=x). The key type defaults to p256. Needs the admin role.\n"
	 "\n"
	 "Two kinds of extension options (as django-ca):\n"
	 "  --crl-url, --ocsp-url, --issuer-url, --policy, --issuer-alt-name, --key-usage, ...\n"
	 "      go into every certificate this CA will ISSUE (change them later: ca edit);\n"
	 "  --ca-crl-url, --ca-ocsp-url, --ca-issuer-url, --ca-policy, --ca-issuer-alt-name\n"
	 "      go into this CA's OWN certificate (over its parent's settings).\n"
	 "URLs may use {ca_name} and {ca_serial}. --permit-name/--exclude-name and the policy\n"
	 "counts (--require-explicit-policy, --inhibit-policy-mapping, --inhibit-any-policy)\n"
	 "are put into the CA certificate itself; the CA then refuses to sign names outside\n"
	 "its constraints. Prints the new CA's summary.",
	 "p11ca ca init issuing-1 'CN=Example Issuing CA 1,O=Example' --parent root "
	 "--key-type p384 --path-length 0 --permit-name DNS:example.com "
	 "--crl-url 'http://crl.example.com/{ca_name}.crl' --algorithm SHA-384",
	 init_opts},
	{"ca", "list", run_list, "", 0, 0, "list the CAs",
	 "One line per CA: name, certificate serial, status, key type, notAfter, subject.\n"
	 "--tree orders the list as the hierarchy, each CA indented under its issuer.\n"
	 "--json gives {\"cas\": [...]} in the server's order whatever --tree says; each\n"
	 "entry's \"parent\" names its issuer.",
	 "p11ca ca list --tree", list_opts},
	{"ca", "view", run_view, "CA", 1, 1, "show one CA in detail",
	 "CA is a name or a unique prefix of the CA certificate's serial (hex, colons\n"
	 "optional). Shows the CA's summary, how many certificates it issued and revoked,\n"
	 "when its next CRL is due, and its settings: enabled, default profile, the\n"
	 "algorithm it issues with, its key's URI, its name constraints and the extensions\n"
	 "it adds to what it issues (\"(inherited)\": the profile decides). --json adds the\n"
	 "certificate as PEM.",
	 "p11ca ca view root", no_opts},
	{"ca", "export", run_export, "CA", 1, 1, "write a CA's certificate (or chain)",
	 "Writes the CA certificate as PEM to standard output, or to --out FILE. --bundle\n"
	 "appends the issuers up to the root (CA first). DER is never written to a\n"
	 "terminal. With --json and no --out, the data is in the JSON object.",
	 "p11ca ca export issuing-1 --bundle --out chain.pem", cli_export_opts},
	{NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};
