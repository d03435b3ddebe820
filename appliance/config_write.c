/*
 * appliance/config_write.c — the commented configuration `p11cad init` writes.
 *
 * The text comes from the same key table the loader uses (config.c), so every key appears
 * with its real default and its explanation. Before anything reaches the disk the text is
 * parsed back with the loader and compared with what was asked for: a value that would
 * not survive (an inline comment character, a bad address) fails here, not at start-up.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "appliance/config.h"
#include "appliance/config_internal.h"

#define DEFAULT_STATE_DIR "/var/lib/p11ca"
#define DEFAULT_MODULE	  "/usr/lib/softhsm/libsofthsm2.so"
#define DEFAULT_TOKEN	  "p11ca"

static void put_comment(FILE *f, const char *text)
{
	while (*text != '\0') {
		const char *nl = strchr(text, '\n');
		size_t n = nl ? (size_t)(nl - text) : strlen(text);
		fprintf(f, "# %.*s\n", (int)n, text);
		text += n + (nl ? 1 : 0);
	}
}

static void put_key(FILE *f, const struct config_key *k, const struct p11cad_config *cfg)
{
	const char *field = (const char *)cfg + k->off;
	put_comment(f, k->help);
	switch (k->kind) {
	case CONFIG_LISTEN:
		for (size_t i = 0; i < cfg->n_rpc_listen; i++)
			fprintf(f, "%s = %s\n", k->name, cfg->rpc_listen[i]);
		break;
	case CONFIG_UINT:
		fprintf(f, "%s = %u\n", k->name, *(const unsigned *)field);
		break;
	case CONFIG_SIZE:
		fprintf(f, "%s = %zu\n", k->name, *(const size_t *)field);
		break;
	case CONFIG_ODD_U64:
		fprintf(f, "%s = %llu\n", k->name, (unsigned long long)*(const uint64_t *)field);
		break;
	case CONFIG_DAYS:
		fprintf(f, "%s = ", k->name);
		for (size_t i = 0; i < cfg->n_notify_days; i++)
			fprintf(f, "%s%u", i ? ", " : "", cfg->notify_days[i]);
		fputc('\n', f);
		break;
	case CONFIG_EMAIL:
		/* Commented out: the default follows the host's name where the file goes. */
		fprintf(f, "# %s = %s\n", k->name, field);
		break;
	default:
		fprintf(f, "%s = %s\n", k->name, field);
		break;
	}
	fputc('\n', f);
}

static const char *yes_no(bool b)
{
	return b ? "true" : "false";
}

static void put_profiles(FILE *f)
{
	put_comment(f, "Certificate profiles. These are built in (the same as django-ca's);\n"
		       "a [profile NAME] section with a built-in name starts from the values\n"
		       "shown and changes the keys it sets, any other name defines a new\n"
		       "profile (enabled, keyUsage critical, cn_in_san and add_*_url true\n"
		       "unless set). key_usage: digitalSignature, nonRepudiation,\n"
		       "keyEncipherment, dataEncipherment, keyAgreement, keyCertSign, cRLSign,\n"
		       "encipherOnly, decipherOnly. extended_key_usage: OpenSSL short names\n"
		       "(serverAuth, clientAuth, codeSigning, emailProtection, timeStamping,\n"
		       "OCSPSigning) or dotted OIDs. expires_days 0: [engine] cert_expires_days.\n"
		       "subject: the default subject (/C=AT/O=Org or O=Org,C=AT); a request's\n"
		       "subject overrides it attribute by attribute. cn_in_san: put the CN into\n"
		       "the subjectAltNames. add_crl_url, add_ocsp_url, add_issuer_url: add the\n"
		       "issuing CA's CRL, OCSP and CA-issuer URLs. policy (repeatable, at most\n"
		       "4): a certificatePolicies entry OID[;cps=URI][;notice=TEXT].\n"
		       "ocsp_no_check: OCSPNoCheck (for OCSP responders).\n"
		       "tls_feature_status_request: OCSP must-staple. enabled = false hides a\n"
		       "profile. Extensions come from the profile, the CA and the request, never\n"
		       "from the CSR.");
	for (size_t i = 0; i < profile_n_builtins; i++) {
		const struct p11cad_profile *p = &profile_builtins[i];
		char ku[256];
		profile_key_usage_format(p->key_usage, ku, sizeof(ku));
		fprintf(f, "#\n# [profile %s]\n# description = %s\n", p->name, p->description);
		fprintf(f, "# key_usage = %s\n# key_usage_critical = %s\n", ku,
			yes_no(p->key_usage_critical));
		fputs("# extended_key_usage = ", f);
		for (size_t j = 0; j < p->n_eku; j++)
			fprintf(f, "%s%s", j ? ", " : "", p->eku[j]);
		fprintf(f, "\n# extended_key_usage_critical = %s\n# expires_days = %u\n",
			yes_no(p->eku_critical), p->expires_days);
		fprintf(f, "# subject = %s\n# cn_in_san = %s\n", p->subject, yes_no(p->cn_in_san));
		fprintf(f, "# add_crl_url = %s\n# add_ocsp_url = %s\n# add_issuer_url = %s\n",
			yes_no(p->add_crl_url), yes_no(p->add_ocsp_url), yes_no(p->add_issuer_url));
		for (size_t j = 0; j < p->n_policies; j++)
			fprintf(f, "# policy = %s\n", p->policies[j]);
		fprintf(f, "# ocsp_no_check = %s\n# tls_feature_status_request = %s\n",
			yes_no(p->ocsp_no_check), yes_no(p->tls_feature_status_request));
		fputs("# enabled = true\n", f);
	}
}

static enum p11ca_err render(const struct p11cad_config *cfg, char **text, size_t *len,
			     struct p11ca_errmsg *em)
{
	FILE *f = open_memstream(text, len);
	if (f == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory writing the configuration");
	put_comment(f, "p11cad configuration (written by `p11cad init`). Every key is shown\n"
		       "with its default; see p11cad(8) and docs/appliance.md. Comments start\n"
		       "with '#' or ';' (after a blank, also at the end of a line).");
	fputc('\n', f);
	for (size_t s = 0; config_sections[s] != NULL; s++) {
		fprintf(f, "[%s]\n", config_sections[s]);
		for (size_t i = 0; i < config_n_keys; i++)
			if (strcmp(config_keys[i].section, config_sections[s]) == 0)
				put_key(f, &config_keys[i], cfg);
	}
	put_comment(f, "FINGERPRINT = admin|operator|auditor: roles besides those in\n"
		       "roles_file (64 hex digits of the certificate's SHA-256, no colons).");
	fputc('\n', f);
	put_profiles(f);
	if (fclose(f) != 0)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory writing the configuration");
	return P11CA_OK;
}

static enum p11ca_err set_opt(char *field, size_t cap, const char *value, const char *what,
			      struct p11ca_errmsg *em)
{
	if (value == NULL)
		return P11CA_OK;
	if (strlen(value) >= cap || strpbrk(value, "\r\n") != NULL)
		return p11ca_fail(em, P11CA_E_CONFIG,
				  "%s '%s' cannot be written to the "
				  "configuration (too long or has a line break)",
				  what, value);
	snprintf(field, cap, "%s", value);
	return P11CA_OK;
}

static enum p11ca_err wanted_config(const struct p11cad_init_options *o, struct p11cad_config *c,
				    struct p11ca_errmsg *em)
{
	config_set_defaults(c);
	snprintf(c->state_dir, sizeof(c->state_dir), DEFAULT_STATE_DIR);
	snprintf(c->module, sizeof(c->module), DEFAULT_MODULE);
	snprintf(c->token, sizeof(c->token), DEFAULT_TOKEN);
	if (o == NULL)
		return P11CA_OK;
	P11CA_GUARD(set_opt(c->state_dir, sizeof(c->state_dir), o->state_dir, "state dir", em));
	P11CA_GUARD(set_opt(c->module, sizeof(c->module), o->module, "module", em));
	P11CA_GUARD(set_opt(c->token, sizeof(c->token), o->token, "token label", em));
	P11CA_GUARD(set_opt(c->pin_source, sizeof(c->pin_source), o->pin_source, "pin source", em));
	P11CA_GUARD(set_opt(c->http_listen, sizeof(c->http_listen), o->http, "http address", em));
	if (o->listen != NULL) {
		P11CA_GUARD(set_opt(c->rpc_listen[0], sizeof(c->rpc_listen[0]), o->listen,
				    "listen address", em));
		c->n_rpc_listen = 1;
	}
	return P11CA_OK;
}

/* The text must load and give back exactly what was asked for. */
static enum p11ca_err verify(const char *path, const char *text, size_t len,
			     const struct p11cad_config *want, struct p11ca_errmsg *em)
{
	struct p11cad_config *got = calloc(1, sizeof(*got));
	FILE *f = fmemopen((void *)text, len, "r");
	enum p11ca_err err = P11CA_OK;
	if (got == NULL || f == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory checking the configuration");
		goto out;
	}
	err = config_parse_file(f, path, got, em);
	if (err != P11CA_OK)
		goto out;
	if (strcmp(got->state_dir, want->state_dir) != 0 ||
	    strcmp(got->module, want->module) != 0 || strcmp(got->token, want->token) != 0 ||
	    strcmp(got->pin_source, want->pin_source) != 0 ||
	    strcmp(got->http_listen, want->http_listen) != 0 ||
	    strcmp(got->rpc_listen[0], want->rpc_listen[0]) != 0)
		err = p11ca_fail(
			em, P11CA_E_CONFIG,
			"%s: an option does not survive in an INI file (a ';' or '#' after "
			"a blank starts a comment; leading and trailing blanks are lost)",
			path);
out:
	if (f != NULL)
		fclose(f);
	free(got);
	return err;
}

enum p11ca_err p11cad_config_write(const char *path, const struct p11cad_init_options *opts,
				   struct p11ca_errmsg *em)
{
	if (path == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "p11cad_config_write: no path");
	struct p11cad_config *want = calloc(1, sizeof(*want));
	char *text = NULL;
	size_t len = 0;
	int fd = -1;
	enum p11ca_err err = P11CA_OK;
	if (want == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory writing the configuration");
		goto out;
	}
	err = wanted_config(opts, want, em);
	if (err != P11CA_OK)
		goto out;
	err = render(want, &text, &len, em);
	if (err != P11CA_OK)
		goto out;
	err = verify(path, text, len, want, em);
	if (err != P11CA_OK)
		goto out;

	/* O_EXCL: an operator's file is never replaced, not even by an identical one. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0) {
		err = errno == EEXIST ? p11ca_fail(em, P11CA_E_STORAGE_EXISTS,
						   "%s exists already; it was left as it is", path)
				      : p11ca_fail(em, P11CA_E_IO, "cannot create %s: %s", path,
						   strerror(errno));
		goto out;
	}
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, text + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	if (done < len || fsync(fd) != 0) {
		err = p11ca_fail(em, P11CA_E_IO, "writing %s: %s", path, strerror(errno));
		unlink(path); /* ours: created above with O_EXCL */
	}
out:
	if (fd >= 0)
		close(fd);
	free(text);
	free(want);
	return err;
}
