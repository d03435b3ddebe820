/*
 * Unit tests for the p11ca CLI without a server: value parsing, argument parsing and help,
 * configuration precedence, JSON and table output, and file delivery.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rpc/cli/ext.h"

static char dir[512];

/* ---- running the CLI in-process -------------------------------------------------------- */

struct run {
	int rc;
	char *out, *err;
	size_t out_len, err_len;
};

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* Run p11ca with a NULL-terminated list of arguments (argv[0] is added). */
static struct run run_cli(const char *first, ...)
{
	char *argv[48] = {(char *)"p11ca"};
	int argc = 1;
	va_list ap;
	va_start(ap, first);
	for (const char *s = first; s != NULL; s = va_arg(ap, const char *)) {
		assert_true(argc < 47);
		argv[argc++] = (char *)s;
	}
	va_end(ap);
	struct run r = {0};
	FILE *out = open_memstream(&r.out, &r.out_len);
	FILE *err = open_memstream(&r.err, &r.err_len);
	assert_non_null(out);
	assert_non_null(err);
	r.rc = p11ca_main(argc, argv, out, err);
	fclose(out);
	fclose(err);
	return r;
}

/* ---- values ------------------------------------------------------------------------------ */

static void test_serial_parse(void **state)
{
	(void)state;
	char s[41];
	struct p11ca_errmsg em = {0};
	assert_int_equal(cli_serial_parse("0a:1b:ff", s, NULL), P11CA_OK);
	assert_string_equal(s, "0A1BFF");
	assert_int_equal(cli_serial_parse("serial=00fEdc", s, NULL), P11CA_OK);
	assert_string_equal(s, "00FEDC"); /* leading zeros kept: the server matches text */
	assert_int_equal(cli_serial_parse("abc", s, NULL), P11CA_OK); /* a prefix, odd length */
	assert_string_equal(s, "ABC");
	assert_int_equal(cli_serial_parse("0123456789012345678901234567890123456789", s, NULL),
			 P11CA_OK);

	assert_int_equal(cli_serial_parse("01234567890123456789012345678901234567890", s, &em),
			 P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "20 bytes"));
	p11ca_errmsg_clear(&em);
	assert_int_equal(cli_serial_parse("0x1F", s, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "not a hex digit"));
	assert_int_equal(cli_serial_parse("", s, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_serial_parse(":::", s, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_serial_parse("1F 2A", s, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_serial_parse(NULL, s, NULL), P11CA_E_INVALID_ARG);
}

static void test_serial_format(void **state)
{
	(void)state;
	char s[41];
	const uint8_t b[] = {0x00, 0x0a, 0xff, 0x10};
	cli_serial_format(b, sizeof(b), s, sizeof(s));
	assert_string_equal(s, "000AFF10"); /* every byte, leading zero included */
	cli_serial_format(b, 0, s, sizeof(s));
	assert_string_equal(s, "");
	char small[5];
	cli_serial_format(b, sizeof(b), small, sizeof(small)); /* never overflows */
	assert_string_equal(small, "000A");
}

static void test_reason_parse(void **state)
{
	(void)state;
	p11ca_v1_RevocationReason r = 0;
	struct p11ca_errmsg em = {0};
	assert_int_equal(cli_reason_parse("KEYCOMPROMISE", &r, NULL), P11CA_OK);
	assert_int_equal(r, p11ca_v1_RevocationReason_REVOCATION_REASON_KEY_COMPROMISE);
	assert_int_equal(cli_reason_parse("aacompromise", &r, NULL), P11CA_OK);
	assert_int_equal(r, p11ca_v1_RevocationReason_REVOCATION_REASON_AA_COMPROMISE);
	assert_int_equal(cli_reason_parse("unspecified", &r, NULL), P11CA_OK);
	assert_int_equal(r, p11ca_v1_RevocationReason_REVOCATION_REASON_UNSPECIFIED);
	assert_string_equal(
		cli_reason_name(p11ca_v1_RevocationReason_REVOCATION_REASON_CA_COMPROMISE),
		"cACompromise");
	/* removeFromCRL is for delta CRLs only, never a reason to revoke. */
	assert_int_equal(cli_reason_parse("removeFromCRL", &r, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "keyCompromise"));
	assert_int_equal(cli_reason_parse("", &r, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_reason_parse(NULL, &r, NULL), P11CA_E_INVALID_ARG);
}

static void test_key_type_and_other_values(void **state)
{
	(void)state;
	p11ca_v1_KeyType k = 0;
	p11ca_v1_Format f = 0;
	p11ca_v1_CertStatus st = 0;
	uint32_t n = 0;
	assert_int_equal(cli_key_type_parse("P384", &k, NULL), P11CA_OK);
	assert_int_equal(k, p11ca_v1_KeyType_KEY_TYPE_P384);
	assert_int_equal(cli_key_type_parse("rsa1024", &k, NULL), P11CA_E_INVALID_ARG);
	assert_string_equal(cli_key_type_name(p11ca_v1_KeyType_KEY_TYPE_ED25519), "ed25519");
	assert_string_equal(cli_key_type_name((p11ca_v1_KeyType)99), "unknown");
	assert_int_equal(cli_format_parse("DER", &f, NULL), P11CA_OK);
	assert_int_equal(f, p11ca_v1_Format_FORMAT_DER);
	assert_int_equal(cli_format_parse("p12", &f, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_cert_status_parse("Revoked", &st, NULL), P11CA_OK);
	assert_int_equal(st, p11ca_v1_CertStatus_CERT_STATUS_REVOKED);
	assert_int_equal(cli_cert_status_parse("gone", &st, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_uint_parse("365", 36500, &n, NULL), P11CA_OK);
	assert_int_equal(n, 365);
	assert_int_equal(cli_uint_parse("-1", 36500, &n, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_uint_parse("12d", 36500, &n, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_uint_parse("36501", 36500, &n, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_uint_parse("99999999999999999999999", 36500, &n, NULL),
			 P11CA_E_INVALID_ARG);
	char t[32];
	cli_time_format(1700000000, t, sizeof(t));
	assert_string_equal(t, "2023-11-14T22:13:20Z");
	cli_time_format(0, t, sizeof(t));
	assert_string_equal(t, "");
}

/* ---- arguments and help ----------------------------------------------------------------- */

static void expect_usage(struct run r, const char *needle)
{
	assert_int_equal(r.rc, 64);
	if (strstr(r.err, needle) == NULL)
		fail_msg("stderr lacks '%s':\n%s", needle, r.err);
	assert_string_equal(r.out, "");
	run_free(&r);
}

static void test_usage_errors(void **state)
{
	(void)state;
	expect_usage(run_cli("ca", "list", "--bogus", NULL), "unknown option '--bogus'");
	expect_usage(run_cli("--bogus", "ca", "list", NULL), "unknown option '--bogus'");
	expect_usage(run_cli("ca", "view", NULL), "missing argument(s): CA");
	expect_usage(run_cli("ca", "view", "a", "b", NULL), "unexpected argument 'b'");
	expect_usage(run_cli("cert", "sign", "--ca", "x", NULL),
		     "missing the required option --csr");
	expect_usage(run_cli("crl", "get", NULL), "--ca");
	expect_usage(run_cli("cert", "revoke", "0A", "--reason", "bogus", NULL),
		     "unknown revocation reason 'bogus'");
	expect_usage(run_cli("cert", "view", "0x12", NULL), "not a hex digit");
	expect_usage(run_cli("ca", "init", "n", "CN=x", "--key-type", "dsa", NULL),
		     "unknown key type 'dsa'");
	expect_usage(run_cli("ca", "export", "x", "--format", "der", "--bundle", NULL), "PEM only");
	expect_usage(run_cli("ca", "list", "--timeout", "0", NULL), "--timeout");
	expect_usage(run_cli("ca", "list", "--server", NULL), "option --server needs a value");
	expect_usage(run_cli("ca", "list", "--tree=yes", NULL), "takes no value");
	expect_usage(run_cli("frob", NULL), "unknown command 'frob'");
	expect_usage(run_cli("ca", "frob", NULL), "unknown command 'ca frob'");
	/* A bare noun shows its verbs, on stderr, as a usage error. */
	struct run r = run_cli("cert", NULL);
	assert_int_equal(r.rc, 64);
	assert_non_null(strstr(r.err, "cert revoke"));
	run_free(&r);
	r = run_cli(NULL);
	assert_int_equal(r.rc, 64);
	assert_non_null(strstr(r.err, "Usage: p11ca"));
	run_free(&r);
}

static void expect_help(struct run r, const char *needle)
{
	assert_int_equal(r.rc, 0);
	if (strstr(r.out, needle) == NULL)
		fail_msg("stdout lacks '%s':\n%s", needle, r.out);
	assert_string_equal(r.err, "");
	run_free(&r);
}

static void test_help_at_every_level(void **state)
{
	(void)state;
	expect_help(run_cli("--help", NULL), "Exit status:");
	expect_help(run_cli("help", NULL), "crl get");
	expect_help(run_cli("ca", "--help", NULL), "ca init");
	expect_help(run_cli("cert", "revoke", "--help", NULL), "keyCompromise");
	expect_help(run_cli("cert", "sign", "-h", NULL), "(repeatable)");
	expect_help(run_cli("ca", "view", "--help", NULL), "Example:\n  p11ca ca view");
	expect_help(run_cli("status", "--help", NULL), "ready");
	/* Every command has help with an example and mentions every option it accepts. */
	static const char *const cmds[][2] = {
		{"hsm", "status"}, {"hsm", "activate"}, {"ca", "init"},
		{"ca", "list"},	   {"ca", "export"},	{"cert", "view"},
		{"cert", "list"},  {"cert", "export"},	{"crl", "get"},
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		expect_help(run_cli(cmds[i][0], cmds[i][1], "--help", NULL), "Example:");
}

/* ---- configuration ------------------------------------------------------------------------ */

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void set_home(const char *ini)
{
	char path[1024];
	setenv("HOME", dir, 1);
	unsetenv("XDG_CONFIG_HOME");
	snprintf(path, sizeof(path), "%s/.config", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/.config/p11ca", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/.config/p11ca/client.ini", dir);
	if (ini != NULL)
		write_file(path, ini);
	else
		unlink(path);
}

static void test_config_precedence(void **state)
{
	(void)state;
	struct cli_conf c = {0};
	struct p11ca_errmsg em = {0};
	char expect[1024];

	set_home("; comment\nserver = file.example:1\ncert = c.pem\nkey = /abs/k.pem\n"
		 "cacert = ca.pem\n");
	setenv("P11CA_CERT", "/env/c.pem", 1);
	setenv("P11CA_SERVER", "env.example:2", 1);
	unsetenv("P11CA_KEY");
	unsetenv("P11CA_CACERT");
	const char *flags[CLI_CONF_N] = {[CLI_CONF_SERVER] = "flag.example:3"};
	assert_int_equal(cli_conf_load(&c, flags, &em), P11CA_OK);
	assert_string_equal(c.value[CLI_CONF_SERVER], "flag.example:3"); /* flag > env > file */
	assert_string_equal(c.origin[CLI_CONF_SERVER], "--server");
	assert_string_equal(c.value[CLI_CONF_CERT], "/env/c.pem"); /* env > file */
	assert_string_equal(c.origin[CLI_CONF_CERT], "P11CA_CERT");
	assert_string_equal(c.value[CLI_CONF_KEY], "/abs/k.pem"); /* file only */
	/* A relative path in the file is relative to the file, not to the current directory. */
	snprintf(expect, sizeof(expect), "%s/.config/p11ca/ca.pem", dir);
	assert_string_equal(c.value[CLI_CONF_CACERT], expect);
	cli_conf_free(&c);

	/* No file, no environment: nothing set, not an error. */
	unsetenv("P11CA_CERT");
	unsetenv("P11CA_SERVER");
	set_home(NULL);
	assert_int_equal(cli_conf_load(&c, NULL, &em), P11CA_OK);
	for (int k = 0; k < CLI_CONF_N; k++)
		assert_null(c.value[k]);
	cli_conf_free(&c);

	/* An empty environment variable does not override the file. */
	set_home("server = file.example:1\n");
	setenv("P11CA_SERVER", "", 1);
	assert_int_equal(cli_conf_load(&c, NULL, &em), P11CA_OK);
	assert_string_equal(c.value[CLI_CONF_SERVER], "file.example:1");
	cli_conf_free(&c);
	unsetenv("P11CA_SERVER");
}

static void test_config_errors(void **state)
{
	(void)state;
	struct cli_conf c = {0};
	struct p11ca_errmsg em = {0};

	set_home("server = a:1\nsevrer = b:2\n");
	assert_int_equal(cli_conf_load(&c, NULL, &em), P11CA_E_CONFIG);
	assert_non_null(strstr(em.text, "client.ini:2: unknown setting 'sevrer'"));
	cli_conf_free(&c);

	p11ca_errmsg_clear(&em);
	set_home("[client]\nserver = a:1\n");
	assert_int_equal(cli_conf_load(&c, NULL, &em), P11CA_E_CONFIG);
	assert_non_null(strstr(em.text, "section [client]"));
	cli_conf_free(&c);

	/* Through the CLI: a broken file is a configuration error (78), said so. */
	struct run r = run_cli("ca", "list", NULL);
	assert_int_equal(r.rc, 78);
	assert_non_null(strstr(r.err, "cannot read the configuration"));
	run_free(&r);

	/* Nothing configured at all: which setting is missing and the three ways to set it. */
	set_home(NULL);
	r = run_cli("status", NULL);
	assert_int_equal(r.rc, 78);
	assert_non_null(strstr(r.err, "no server configured"));
	assert_non_null(strstr(r.err, "P11CA_SERVER"));
	run_free(&r);

	/* A credential file that does not exist: 78, naming the file. */
	r = run_cli("--server", "127.0.0.1:9", "--cert", "/nonexistent/c.pem", "--key",
		    "/nonexistent/k.pem", "--cacert", "/nonexistent/ca.pem", "status", NULL);
	assert_int_equal(r.rc, 78);
	assert_non_null(strstr(r.err, "/nonexistent/ca.pem"));
	run_free(&r);
}

/* ---- output ---------------------------------------------------------------------------------- */

/* The text lands in *buf when f is closed. */
static FILE *capture_begin(char **buf, size_t *len)
{
	*buf = NULL;
	FILE *f = open_memstream(buf, len);
	assert_non_null(f);
	return f;
}

static void test_json_ca_summary(void **state)
{
	(void)state;
	p11ca_v1_CaSummary ca = {
		.name = "issuing \"1\"",
		.serial = {3, {0x00, 0x1f, 0xa0}},
		.subject = "CN=Issuing\\, One,O=Example",
		.parent = "root",
		.not_before = 1700000000,
		.not_after = 1800000000,
		.status = p11ca_v1_CaStatus_CA_STATUS_ACTIVE,
		.enabled = true,
		.key_type = p11ca_v1_KeyType_KEY_TYPE_P384,
		.signature_algorithm = p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA384,
		.key_label = "issuing-1",
		.token = "ca-token",
		.has_path_length = true,
		.path_length = 0,
		.subject_key_id = {2, {0xab, 0xcd}},
	};
	size_t len;
	char *buf;
	FILE *f = capture_begin(&buf, &len);
	struct cli_json j;
	cli_json_begin(&j, f);
	cli_json_ca(&j, "ca", &ca);
	cli_json_arr(&j, "empty");
	cli_json_arr_end(&j);
	cli_json_end(&j);
	fclose(f);
	assert_string_equal(buf, "{\n"
				 "  \"ca\": {\n"
				 "    \"name\": \"issuing \\\"1\\\"\",\n"
				 "    \"serial\": \"001FA0\",\n"
				 "    \"subject\": \"CN=Issuing\\\\, One,O=Example\",\n"
				 "    \"parent\": \"root\",\n"
				 "    \"not_before\": \"2023-11-14T22:13:20Z\",\n"
				 "    \"not_after\": \"2027-01-15T08:00:00Z\",\n"
				 "    \"status\": \"active\",\n"
				 "    \"enabled\": true,\n"
				 "    \"revocation\": null,\n"
				 "    \"key_type\": \"p384\",\n"
				 "    \"signature_algorithm\": \"ecdsa-sha384\",\n"
				 "    \"key_label\": \"issuing-1\",\n"
				 "    \"token\": \"ca-token\",\n"
				 "    \"path_length\": 0,\n"
				 "    \"subject_key_id\": \"ABCD\"\n"
				 "  },\n"
				 "  \"empty\": []\n"
				 "}\n");
	free(buf);
}

static void test_json_cert_summary(void **state)
{
	(void)state;
	p11ca_v1_CertSummary c = {
		.serial = {2, {0x0a, 0x01}},
		.ca = "issuing-1",
		.subject = "CN=www\x01.example",
		.not_before = 1700000000,
		.not_after = 0,
		.status = p11ca_v1_CertStatus_CERT_STATUS_REVOKED,
		.has_revocation = true,
		.revocation = {1700000100,
			       p11ca_v1_RevocationReason_REVOCATION_REASON_KEY_COMPROMISE,
			       1700000040},
		.key_type = p11ca_v1_KeyType_KEY_TYPE_RSA2048,
		.profile = "tls-server",
	};
	size_t len;
	char *buf;
	FILE *f = capture_begin(&buf, &len);
	struct cli_json j;
	cli_json_begin(&j, f);
	cli_json_arr(&j, "certs");
	cli_json_cert(&j, NULL, &c);
	cli_json_arr_end(&j);
	cli_json_end(&j);
	fclose(f);
	assert_string_equal(buf, "{\n"
				 "  \"certs\": [\n"
				 "    {\n"
				 "      \"serial\": \"0A01\",\n"
				 "      \"ca\": \"issuing-1\",\n"
				 "      \"subject\": \"CN=www\\u0001.example\",\n"
				 "      \"not_before\": \"2023-11-14T22:13:20Z\",\n"
				 "      \"not_after\": null,\n"
				 "      \"status\": \"revoked\",\n"
				 "      \"revocation\": {\n"
				 "        \"revoked_at\": \"2023-11-14T22:15:00Z\",\n"
				 "        \"reason\": \"keyCompromise\",\n"
				 "        \"compromised_at\": \"2023-11-14T22:14:00Z\"\n"
				 "      },\n"
				 "      \"key_type\": \"rsa2048\",\n"
				 "      \"profile\": \"tls-server\"\n"
				 "    }\n"
				 "  ]\n"
				 "}\n");
	free(buf);
}

static void test_table_aligns_columns(void **state)
{
	(void)state;
	static const char *const head[] = {"NAME", "SERIAL", "SUBJECT"};
	static const char *const cells[] = {"root",	   "01",     "CN=Root",
					    "  issuing-1", "0A1B2C", "CN=Issuing"};
	size_t len;
	char *buf;
	FILE *f = capture_begin(&buf, &len);
	cli_table(f, head, 3, cells, 2);
	fclose(f);
	assert_string_equal(buf, "NAME         SERIAL  SUBJECT\n"
				 "root         01      CN=Root\n"
				 "  issuing-1  0A1B2C  CN=Issuing\n");
	free(buf);
}

static void test_deliver(void **state)
{
	(void)state;
	char path[1024], got[64] = {0};
	struct stat st;
	struct cli cli = {.out = stdout, .err = stderr};
	size_t err_len;
	char *err_buf;
	FILE *err = capture_begin(&err_buf, &err_len);
	cli.err = err;

	snprintf(path, sizeof(path), "%s/out.pem", dir);
	write_file(path, "old");
	assert_int_equal(cli_deliver(&cli, (const uint8_t *)"new\n", 4, false, path), 0);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	assert_int_equal(fread(got, 1, sizeof(got) - 1, f), 4);
	fclose(f);
	assert_string_equal(got, "new\n");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	unlink(path);

	/* A directory that does not exist: I/O error, named. */
	snprintf(path, sizeof(path), "%s/missing/out.pem", dir);
	assert_int_equal(cli_deliver(&cli, (const uint8_t *)"x", 1, false, path), 74);

	/* DER to a terminal is refused; PEM to one is fine. */
	int mfd, sfd;
	assert_int_equal(openpty(&mfd, &sfd, NULL, NULL, NULL), 0);
	FILE *tty = fdopen(sfd, "w");
	assert_non_null(tty);
	cli.out = tty;
	assert_int_equal(cli_deliver(&cli, (const uint8_t *)"\x30\x03", 2, true, NULL), 64);
	assert_int_equal(cli_deliver(&cli, (const uint8_t *)"PEM\n", 4, false, NULL), 0);
	fclose(tty);
	close(mfd);
	fclose(err);
	assert_non_null(strstr(err_buf, "cannot write"));
	assert_non_null(strstr(err_buf, "refusing to write DER to a terminal"));
	free(err_buf);
}

static void test_der_to_pem(void **state)
{
	(void)state;
	size_t len = 0;
	char *pem = cli_der_to_pem("CERTIFICATE", (const uint8_t *)"\x30\x00", 2, &len);
	assert_non_null(pem);
	assert_string_equal(pem, "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n");
	assert_int_equal(len, strlen(pem));
	free(pem);
}

/* ---- issue 4: value parsers -------------------------------------------------------------- */

static void test_time_and_reason_parse(void **state)
{
	(void)state;
	int64_t t = 0;
	struct p11ca_errmsg em = {0};
	p11ca_v1_RevocationReason r = 0;
	assert_int_equal(cli_time_parse("2026-11-20T10:00:00Z", &t, NULL), P11CA_OK);
	assert_int_equal(t, 1795168800);
	assert_int_equal(cli_time_parse("2026-11-20t11:00:00.250+01:00", &t, NULL), P11CA_OK);
	assert_int_equal(t, 1795168800);
	assert_int_equal(cli_time_parse("2026-11-20 05:30:00-04:30", &t, NULL), P11CA_OK);
	assert_int_equal(t, 1795168800);
	assert_int_equal(cli_time_parse("2026-11-20", &t, NULL), P11CA_OK);
	assert_int_equal(t, 1795132800);
	assert_int_equal(cli_time_parse("@1795168800", &t, NULL), P11CA_OK);
	assert_int_equal(t, 1795168800);
	assert_int_equal(cli_time_parse("2024-02-29T00:00:00Z", &t, NULL), P11CA_OK);
	static const char *const bad[] = {
		"2026-11-20T10:00:00",	/* no zone: local time is ambiguous */
		"2025-02-29T00:00:00Z", /* not a leap year */
		"2026-13-01",
		"2026-11-20T24:00:00Z",
		"2026-11-20T10:00Z",
		"1969-12-31",
		"@0",
		"@12x",
		"@",
		"yesterday",
		"2026-11-20T10:00:00Z trailing",
		"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (cli_time_parse(bad[i], &t, NULL) != P11CA_E_INVALID_ARG)
			fail_msg("'%s' parsed", bad[i]);
	assert_int_equal(cli_time_parse(NULL, &t, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "RFC 3339"));

	/* django-ca's snake_case and a dashed spelling name the same reasons. */
	assert_int_equal(cli_reason_parse("key_compromise", &r, NULL), P11CA_OK);
	assert_int_equal(r, p11ca_v1_RevocationReason_REVOCATION_REASON_KEY_COMPROMISE);
	assert_int_equal(cli_reason_parse("privilege-withdrawn", &r, NULL), P11CA_OK);
	assert_int_equal(r, p11ca_v1_RevocationReason_REVOCATION_REASON_PRIVILEGE_WITHDRAWN);
	assert_int_equal(cli_reason_parse("certificate_hold", &r, NULL), P11CA_OK);
	assert_int_equal(cli_reason_parse("remove_from_crl", &r, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_reason_parse("key__compromise_x", &r, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_reason_parse("_", &r, NULL), P11CA_E_INVALID_ARG);
}

static void test_algorithm_names(void **state)
{
	(void)state;
	p11ca_v1_SignatureAlgorithm a = 0;
	unsigned bits = 0;
	struct p11ca_errmsg em = {0};
	assert_int_equal(cli_sig_alg_parse("RSA-SHA384", &a, NULL), P11CA_OK);
	assert_int_equal(a, p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PKCS1_SHA384);
	assert_int_equal(cli_sig_alg_parse("rsa-pss-sha512", &a, NULL), P11CA_OK);
	assert_int_equal(cli_sig_alg_parse("rsa-sha1", &a, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_hash_parse("SHA-256", &bits, NULL), P11CA_OK);
	assert_int_equal(bits, 256);
	assert_int_equal(cli_hash_parse("sha512", &bits, NULL), P11CA_OK);
	assert_int_equal(bits, 512);
	assert_int_equal(cli_hash_parse("SHA-1", &bits, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_hash_parse("sha-3840", &bits, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_hash_parse("md5", &bits, NULL), P11CA_E_INVALID_ARG);

	const p11ca_v1_SignatureAlgorithm none =
		p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_UNSPECIFIED;
	assert_int_equal(
		cli_sig_alg_for_hash(384, p11ca_v1_KeyType_KEY_TYPE_RSA2048, none, &a, NULL),
		P11CA_OK);
	assert_int_equal(a, p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PKCS1_SHA384);
	assert_int_equal(
		cli_sig_alg_for_hash(512, p11ca_v1_KeyType_KEY_TYPE_RSA4096,
				     p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PSS_SHA256,
				     &a, NULL),
		P11CA_OK);
	assert_int_equal(a, p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PSS_SHA512);
	assert_int_equal(cli_sig_alg_for_hash(256, p11ca_v1_KeyType_KEY_TYPE_P521, none, &a, NULL),
			 P11CA_OK);
	assert_int_equal(a, p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA256);
	assert_int_equal(
		cli_sig_alg_for_hash(256, p11ca_v1_KeyType_KEY_TYPE_ED25519, none, &a, &em),
		P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "without a separate hash"));
	assert_int_equal(
		cli_sig_alg_for_hash(256, p11ca_v1_KeyType_KEY_TYPE_UNSPECIFIED, none, &a, NULL),
		P11CA_E_INVALID_ARG);
	assert_int_equal(cli_sig_alg_for_hash(1, p11ca_v1_KeyType_KEY_TYPE_P256, none, &a, NULL),
			 P11CA_E_INVALID_ARG);
}

static void test_names_emails_oids(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	static const char *const sans[] = {
		"www.example", "DNS:www.example",	 "dns:x",	    "IP:192.0.2.1",
		"2001:db8::1", "email:a@example.com",	 "URI:https://x/y", "dirname:CN=x,O=y",
		"rid:1.2.3",   "otherName:1.2.3;UTF8:v", "192.0.2.7",	    "bücher.example",
	};
	for (size_t i = 0; i < sizeof(sans) / sizeof(sans[0]); i++)
		if (cli_general_name_check(sans[i], false, NULL) != P11CA_OK)
			fail_msg("SAN '%s' refused", sans[i]);
	assert_int_equal(cli_general_name_check("foo:bar", false, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "unknown name type 'foo'"));
	assert_int_equal(cli_general_name_check("DNS:", false, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_general_name_check("", false, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_general_name_check("otherName:1.2.3:v", false, NULL),
			 P11CA_E_INVALID_ARG);
	/* Constraints need a type and cannot be rid or otherName. */
	assert_int_equal(cli_general_name_check("IP:10.0.0.0/8", true, NULL), P11CA_OK);
	assert_int_equal(cli_general_name_check("example.com", true, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_general_name_check("rid:1.2.3", true, NULL), P11CA_E_INVALID_ARG);

	assert_int_equal(cli_email_check("ops@example.com", NULL), P11CA_OK);
	static const char *const bad_mail[] = {"ops",	 "@example.com",    "ops@",
					       "a@b@c",	 "a b@example.com", "<a@example.com>",
					       "a@x,b@y"};
	for (size_t i = 0; i < sizeof(bad_mail) / sizeof(bad_mail[0]); i++)
		if (cli_email_check(bad_mail[i], NULL) != P11CA_E_INVALID_ARG)
			fail_msg("email '%s' accepted", bad_mail[i]);
	assert_int_equal(cli_email_check(NULL, NULL), P11CA_E_INVALID_ARG);

	assert_int_equal(cli_oid_check("2.23.140.1.2.1", NULL), P11CA_OK);
	assert_int_equal(cli_oid_check("1.3.6.1.4.1.311.20.2.3", NULL), P11CA_OK);
	static const char *const bad_oid[] = {"1",    "3.1", "1..2", "1.2.",
					      "1.02", "a.b", "",     "1.2x"};
	for (size_t i = 0; i < sizeof(bad_oid) / sizeof(bad_oid[0]); i++)
		if (cli_oid_check(bad_oid[i], NULL) != P11CA_E_INVALID_ARG)
			fail_msg("OID '%s' accepted", bad_oid[i]);
}

static void test_policy_and_usage_parse(void **state)
{
	(void)state;
	p11ca_v1_Policy p;
	p11ca_v1_UsageList u;
	struct p11ca_errmsg em = {0};
	assert_int_equal(cli_policy_parse("2.5.29.32.0", &p, NULL), P11CA_OK);
	assert_int_equal(p.cps_uris_count, 0);
	assert_string_equal(p.user_notice, "");
	assert_int_equal(cli_policy_parse("1.2.3;cps=http://a;CPS=http://b;notice=x;y=z", &p, NULL),
			 P11CA_OK);
	assert_int_equal(p.cps_uris_count, 2);
	assert_string_equal(p.cps_uris[1], "http://b");
	assert_string_equal(p.user_notice, "x;y=z");
	assert_int_equal(cli_policy_parse("1.2.3;cps=a;cps=b;cps=c", &p, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "at most 2"));
	assert_int_equal(cli_policy_parse("1.2.3;url=x", &p, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_policy_parse(";cps=x", &p, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_policy_parse("anyPolicy", &p, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_policy_parse("1.2.3;cps=", &p, NULL), P11CA_E_INVALID_ARG);
	char notice[220];
	memset(notice, 'n', sizeof(notice));
	memcpy(notice, "1.2;notice=", 11);
	notice[sizeof(notice) - 1] = '\0'; /* 208 bytes of notice: over 200 */
	assert_int_equal(cli_policy_parse(notice, &p, NULL), P11CA_E_INVALID_ARG);

	assert_int_equal(cli_usage_parse("digitalSignature, KEYENCIPHERMENT", true, &u, NULL),
			 P11CA_OK);
	assert_true(u.critical); /* keyUsage: critical unless said otherwise */
	assert_string_equal(u.names[1], "keyEncipherment");
	assert_int_equal(cli_usage_parse("noncritical,cRLSign", true, &u, NULL), P11CA_OK);
	assert_false(u.critical);
	assert_int_equal(cli_usage_parse("serverAuth,1.3.6.1.5.5.7.3.9", false, &u, NULL),
			 P11CA_OK);
	assert_false(u.critical);
	assert_int_equal(cli_usage_parse("critical,ocspsigning", false, &u, NULL), P11CA_OK);
	assert_true(u.critical);
	assert_string_equal(u.names[0], "OCSPSigning");
	assert_int_equal(cli_usage_parse("signEverything", true, &u, &em), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_usage_parse("serverAuth", true, &u, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_usage_parse("cRLSign,crlsign", true, &u, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_usage_parse("critical", true, &u, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(cli_usage_parse(",", false, &u, NULL), P11CA_E_INVALID_ARG);
}

/* Every one of these is refused before any connection: no server is configured, so
 * reaching the network would exit 78, not 64. */
static void test_new_options_refused_before_rpc(void **state)
{
	(void)state;
	const char *csr = "/nonexistent.csr";
#define SIGN "cert", "sign", "--ca", "x", "--csr", csr
	expect_usage(run_cli(SIGN, "--san", "foo:bar", NULL), "unknown name type 'foo'");
	expect_usage(run_cli(SIGN, "--crl-url", "http://a", "--no-crl-url", NULL),
		     "--crl-url and --no-crl-url exclude each other");
	expect_usage(run_cli(SIGN, "--ocsp-url", "ftp://a", NULL), "not an http://");
	expect_usage(run_cli(SIGN, "--issuer-url", "http://a b", NULL), "space");
	expect_usage(run_cli(SIGN, "--policy", "1.2.3;bogus=1", NULL), "use cps=URI");
	expect_usage(run_cli(SIGN, "--policy", "1.2", "--policy", "1.3", "--policy", "1.4",
			     "--policy", "1.5", "--policy", "1.6", NULL),
		     "too many certificate policies");
	expect_usage(run_cli(SIGN, "--key-usage", "digitalSignature,signEverything", NULL),
		     "unknown keyUsage 'signEverything'");
	expect_usage(run_cli(SIGN, "--ext-key-usage", "webAuth", NULL), "unknown extendedKeyUsage");
	expect_usage(run_cli(SIGN, "--tls-feature", "status_request_v2", NULL),
		     "the only TLS feature is status_request");
	expect_usage(run_cli(SIGN, "--must-staple", "--no-tls-feature", NULL), "contradicts");
	expect_usage(run_cli(SIGN, "--ocsp-no-check", "--no-ocsp-no-check", NULL), "exclude");
	expect_usage(run_cli(SIGN, "--watch", "ops", NULL), "not an email address");
	expect_usage(run_cli(SIGN, "--watch", "a@x", "--watch", "b@x", "--watch", "c@x", "--watch",
			     "d@x", "--watch", "e@x", "--watch", "f@x", "--watch", "g@x", "--watch",
			     "h@x", "--watch", "i@x", NULL),
		     "too many --watch options: 9, the limit is 8");
	expect_usage(run_cli(SIGN, "--algorithm", "md5", NULL), "unknown algorithm 'md5'");
	expect_usage(run_cli(SIGN, "--cn-not-in-san=yes", NULL), "takes no value");
#undef SIGN
	expect_usage(run_cli("cert", "revoke", "0A", "--compromised", "yesterday", NULL),
		     "bad --compromised");
	expect_usage(run_cli("cert", "revoke", "0A", "--reason", "remove_from_crl", NULL),
		     "unknown revocation reason");
	expect_usage(run_cli("cert", "list", "--after", "03", "--expired", NULL),
		     "--after works in serial order only");
	expect_usage(run_cli("cert", "list", "--limit", "0", NULL), "--limit");
	expect_usage(run_cli("cert", "list", "--limit", "5", "--all", NULL), "exclude each other");
	expect_usage(run_cli("cert", "list", "--expired", "--expiring-within", "3", NULL),
		     "exclude each other");
	expect_usage(run_cli("cert", "list", "--after", "xyz", NULL), "not a hex digit");
	expect_usage(run_cli("cert", "resign", "0A", "--expires", "0", NULL), "--expires");
	expect_usage(run_cli("cert", "watchers", "0A", "--add", "a@x", "--remove", "A@x", NULL),
		     "--add and --remove name the same address");
	expect_usage(run_cli("cert", "watchers", "0A", "--add", "nobody", NULL),
		     "not an email address");
	expect_usage(run_cli("cert", "import", NULL), "missing argument(s): FILE");
	expect_usage(run_cli("ca", "init", "n", "CN=x", "--permit-name", "example.com", NULL),
		     "has no type");
	expect_usage(run_cli("ca", "init", "n", "CN=x", "--exclude-name", "rid:1.2.3", NULL),
		     "rid cannot be a name constraint");
	expect_usage(
		run_cli("ca", "init", "n", "CN=x", "--path-length", "1", "--no-path-length", NULL),
		"exclude each other");
	expect_usage(run_cli("ca", "init", "n", "CN=x", "--inhibit-any-policy", "256", NULL),
		     "--inhibit-any-policy");
	/* A root's key type is known here: Ed25519 with a hash is refused without a call. */
	expect_usage(run_cli("ca", "init", "n", "CN=x", "--key-type", "ed25519", "--algorithm",
			     "SHA-256", NULL),
		     "without a separate hash");
	expect_usage(run_cli("ca", "init", "n", "CN=x", "--algorithm", "ecdsa-sha256", "--sig-alg",
			     "ecdsa-sha256", NULL),
		     "exclude each other");
	expect_usage(run_cli("ca", "edit", "x", NULL), "nothing to change");
	expect_usage(run_cli("ca", "edit", "x", "--enable", "--disable", NULL),
		     "exclude each other");
	expect_usage(
		run_cli("ca", "edit", "x", "--default-profile", "a", "--no-default-profile", NULL),
		"exclude each other");
	expect_usage(run_cli("ca", "import", "n", "c.pem", NULL),
		     "missing the required option --key-uri");
	expect_usage(run_cli("ca", "import", "n", "c.pem", "--key-uri",
			     "pkcs11:object=x;pin-value=1234", NULL),
		     "it holds a PIN");
	expect_usage(run_cli("ca", "import", "n", "c.pem", "--key-uri", "object=x", NULL),
		     "must start with pkcs11:");
	expect_usage(run_cli("ca", "import", "n", "c.pem", "--key-uri", "pkcs11:token=t", NULL),
		     "names no key");
	expect_usage(run_cli("ca", "revoke", "x", "--compromised", "2026-11-20T10:00", NULL),
		     "bad --compromised");
	expect_usage(run_cli("profile", "list", "x", NULL), "unexpected argument 'x'");
	expect_usage(run_cli("notify", "expiring", "--now", NULL), "unknown option '--now'");
}

/* Every command: help with an example, every option listed, and no table larger than
 * what the parser can hold. */
static void test_every_command_has_help(void **state)
{
	(void)state;
	static const struct cli_cmd *const tables[] = {
		cli_cmds_hsm,	       cli_cmds_ca,  cli_cmds_ca_edit, cli_cmds_cert,
		cli_cmds_cert_records, cli_cmds_crl, cli_cmds_profile, cli_cmds_notify};
	size_t commands = 0;
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
		for (const struct cli_cmd *c = tables[t]; c->noun != NULL; c++) {
			size_t n = 0;
			struct run r = c->verb ? run_cli(c->noun, c->verb, "--help", NULL)
					       : run_cli(c->noun, "--help", NULL);
			assert_int_equal(r.rc, 0);
			assert_non_null(strstr(r.out, "Example:\n  p11ca "));
			for (const struct cli_opt *o = c->opts; o && o->name; o++, n++) {
				char flag[64];
				snprintf(flag, sizeof(flag), "  --%s", o->name);
				if (strstr(r.out, flag) == NULL)
					fail_msg("%s %s --help lacks %s", c->noun, c->verb, flag);
			}
			assert_true(n <= CLI_MAX_OPTS);
			run_free(&r);
			commands++;
		}
	}
	assert_true(commands >= 20);
	expect_help(run_cli("--help", NULL), "notify expiring");
	expect_help(run_cli("ca", "init", "--help", NULL), "go into this CA's OWN certificate");
	expect_help(run_cli("cert", "sign", "--help", NULL), "otherName:OID;UTF8:value");
}

static int setup(void **state)
{
	(void)state;
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/p11ca-cli.XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL)
		return -1;
	setenv("HOME", dir, 1);
	unsetenv("XDG_CONFIG_HOME");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_serial_parse),
		cmocka_unit_test(test_serial_format),
		cmocka_unit_test(test_reason_parse),
		cmocka_unit_test(test_key_type_and_other_values),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_help_at_every_level),
		cmocka_unit_test(test_config_precedence),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_json_ca_summary),
		cmocka_unit_test(test_json_cert_summary),
		cmocka_unit_test(test_table_aligns_columns),
		cmocka_unit_test(test_deliver),
		cmocka_unit_test(test_der_to_pem),
		cmocka_unit_test(test_time_and_reason_parse),
		cmocka_unit_test(test_algorithm_names),
		cmocka_unit_test(test_names_emails_oids),
		cmocka_unit_test(test_policy_and_usage_parse),
		cmocka_unit_test(test_new_options_refused_before_rpc),
		cmocka_unit_test(test_every_command_has_help),
	};
	return cmocka_run_group_tests_name("cli", tests, setup, teardown);
}
