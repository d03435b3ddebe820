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

#include "rpc/cli/cli.h"

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
	char *argv[32] = {(char *)"p11ca"};
	int argc = 1;
	va_list ap;
	va_start(ap, first);
	for (const char *s = first; s != NULL; s = va_arg(ap, const char *)) {
		assert_true(argc < 31);
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
			       p11ca_v1_RevocationReason_REVOCATION_REASON_KEY_COMPROMISE},
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
				 "        \"reason\": \"keyCompromise\"\n"
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
	};
	return cmocka_run_group_tests_name("cli", tests, setup, teardown);
}
