/* Unit tests for appliance/config: loading, every kind of error with its file:line, defaults,
 * profiles, roles, and the file p11cad init writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/x509v3.h>

#include "appliance/config.h"
#include "appliance/config_internal.h"
#include "common/kconfig.h"

#define FP  "3FA2C1D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9C"
#define FP2 "0000000000000000000000000000000000000000000000000000000000000001"

#define REQUIRED                                                                                   \
	"[daemon]\nstate_dir = /var/lib/p11ca\n"                                                   \
	"[hsm]\nmodule = /usr/lib/softhsm/libsofthsm2.so\ntoken = ca\n"

static char dir[256];
static char file[300];
static struct p11cad_config cfg;

static int setup(void **state)
{
	(void)state;
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/test_config.XXXXXX", tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/p11cad.conf", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void put(const char *text)
{
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static enum p11ca_err load(const char *text, struct p11ca_errmsg *em)
{
	put(text);
	p11ca_errmsg_clear(em);
	return p11cad_config_load(file, &cfg, em);
}

/* The message must be exactly "FILE:LINE: " followed by text containing `what`. */
static void expect_error(const char *text, unsigned line, const char *what)
{
	struct p11ca_errmsg em = {0};
	assert_int_equal(load(text, &em), P11CA_E_CONFIG);
	char prefix[400];
	if (line > 0)
		snprintf(prefix, sizeof(prefix), "%s:%u: ", file, line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", file);
	if (strncmp(em.text, prefix, strlen(prefix)) != 0 || strstr(em.text, what) == NULL)
		fail_msg("got \"%s\", want prefix \"%s\" and \"%s\"", em.text, prefix, what);
	assert_int_equal(cfg.n_profiles, 0); /* a failed load leaves nothing half-set */
}

static void test_full_file(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	assert_int_equal(load("; comment\n"
			      "# another\n"
			      "[daemon]\n"
			      "state_dir = /srv/ca\n"
			      "[rpc]\n"
			      "listen = 0.0.0.0:9443\n"
			      "listen = [::1]:9443\n"
			      "tls_cert = /etc/p11ca/cert.pem\n"
			      "tls_key = k.pem ; inline comment\n"
			      "client_ca = ca.pem\n"
			      "roles_file = roles.txt\n"
			      "max_connections = 10\n"
			      "io_timeout_ms = 1000\n"
			      "[http]\n"
			      "listen = 127.0.0.1:8080\n"
			      "[storage]\n"
			      "path = /srv/db\n"
			      "map_size_mb = 64\n"
			      "[hsm]\n"
			      "module = /usr/lib/softhsm/libsofthsm2.so\n"
			      "token = CA token\n"
			      "pin_source = credential:p11ca-pin\n"
			      "pool_size = 4\n"
			      "busy_timeout_ms = 250\n"
			      "[engine]\n"
			      "workers = 8\n"
			      "ca_expires_days = 7300\n"
			      "cert_expires_days = 90\n"
			      "default_profile = server\n"
			      "management_ca = mgmt\n"
			      "[roles]\n" FP " = Admin\n" FP2 " = auditor\n",
			      &em),
			 P11CA_OK);
	assert_string_equal(cfg.path, file);
	assert_string_equal(cfg.state_dir, "/srv/ca");
	assert_int_equal(cfg.n_rpc_listen, 2);
	assert_string_equal(cfg.rpc_listen[0], "0.0.0.0:9443");
	assert_string_equal(cfg.rpc_listen[1], "[::1]:9443");
	assert_string_equal(cfg.tls_cert, "/etc/p11ca/cert.pem");
	assert_string_equal(cfg.tls_key, "k.pem");
	assert_string_equal(cfg.client_ca, "ca.pem");
	assert_string_equal(cfg.roles_file, "roles.txt");
	assert_int_equal(cfg.max_connections, 10);
	assert_int_equal(cfg.io_timeout_ms, 1000);
	assert_string_equal(cfg.http_listen, "127.0.0.1:8080");
	assert_string_equal(cfg.db_path, "/srv/db");
	assert_int_equal(cfg.map_size_mb, 64);
	assert_string_equal(cfg.module, "/usr/lib/softhsm/libsofthsm2.so");
	assert_string_equal(cfg.token, "CA token");
	assert_string_equal(cfg.pin_source, "credential:p11ca-pin");
	assert_int_equal(cfg.pool_size, 4);
	assert_int_equal(cfg.busy_timeout_ms, 250);
	assert_int_equal(cfg.workers, 8);
	assert_int_equal(cfg.ca_expires_days, 7300);
	assert_int_equal(cfg.cert_expires_days, 90);
	assert_string_equal(cfg.default_profile, "server");
	assert_string_equal(cfg.management_ca, "mgmt");
	assert_int_equal(cfg.n_roles, 2);
	assert_string_equal(cfg.roles[0].fingerprint, FP);
	assert_string_equal(cfg.roles[0].role, "admin");
	assert_int_equal(cfg.roles[0].line, 32);
	assert_string_equal(cfg.roles[1].role, "auditor");
}

static void test_defaults(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	assert_int_equal(load(REQUIRED "[rpc]\n[roles]\n", &em), P11CA_OK); /* empty sections */
	assert_int_equal(cfg.n_rpc_listen, 1);
	assert_string_equal(cfg.rpc_listen[0], "127.0.0.1:7443");
	assert_string_equal(cfg.tls_cert, "tls/server.crt");
	assert_string_equal(cfg.tls_key, "tls/server.key");
	assert_string_equal(cfg.client_ca, "tls/ca.crt");
	assert_string_equal(cfg.roles_file, "roles");
	assert_int_equal(cfg.max_connections, CONFIG_RPC_MAX_CONNECTIONS);
	assert_int_equal(cfg.io_timeout_ms, CONFIG_RPC_IO_TIMEOUT_MS);
	assert_string_equal(cfg.rpc_user, "nobody");
	assert_string_equal(cfg.http_listen, "");
	assert_string_equal(cfg.db_path, "db");
	assert_int_equal(cfg.map_size_mb, CONFIG_STORE_MAP_SIZE_MB);
	assert_string_equal(cfg.pin_source, "");
	assert_int_equal(cfg.pool_size, 0);
	assert_int_equal(cfg.busy_timeout_ms, 0);
	assert_int_equal(cfg.workers, 16);
	assert_int_equal(cfg.ca_expires_days, 3650);
	assert_int_equal(cfg.cert_expires_days, 365);
	assert_string_equal(cfg.default_profile, "webserver");
	assert_string_equal(cfg.management_ca, "p11ca-management");
	assert_int_equal(cfg.n_profiles, 5);
	assert_int_equal(cfg.n_roles, 0);
	assert_int_equal(cfg.csr_max_bytes, 16384);
	assert_int_equal(cfg.max_sans, 64);
	assert_int_equal(cfg.rsa_min_bits, 2048);
	assert_int_equal(cfg.rsa_min_exponent, 65537);
	assert_int_equal(cfg.n_notify_days, 4);
	assert_int_equal(cfg.notify_days[0], 14);
	assert_int_equal(cfg.notify_days[1], 7);
	assert_int_equal(cfg.notify_days[2], 3);
	assert_int_equal(cfg.notify_days[3], 1);
	assert_string_equal(cfg.notify_command, "");
	assert_int_equal(strncmp(cfg.notify_from, "p11ca@", 6), 0);
	char why[200];
	assert_int_equal(config_addr_spec_check(cfg.notify_from, why, sizeof(why)), P11CA_OK);
	assert_int_equal(cfg.notify_interval_minutes, 60);
}

static void test_engine_limits(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	assert_int_equal(load(REQUIRED "[engine]\ncsr_max_bytes = 4096\nmax_sans = 8\n"
				       "rsa_min_bits = 3072\nrsa_min_exponent = 3\n",
			      &em),
			 P11CA_OK);
	assert_int_equal(cfg.csr_max_bytes, 4096);
	assert_int_equal(cfg.max_sans, 8);
	assert_int_equal(cfg.rsa_min_bits, 3072);
	assert_int_equal(cfg.rsa_min_exponent, 3);
	assert_int_equal(load(REQUIRED "[engine]\nrsa_min_exponent = 4294967297\n", &em), P11CA_OK);
	assert_true(cfg.rsa_min_exponent == 4294967297ULL);

	expect_error(REQUIRED "[engine]\ncsr_max_bytes = 255\n", 7,
		     "csr_max_bytes must be a whole number from 256 to 16384");
	expect_error(REQUIRED "[engine]\ncsr_max_bytes = 16385\n", 7, "from 256 to 16384");
	expect_error(REQUIRED "[engine]\nmax_sans = 0\n", 7, "max_sans must be a whole number");
	expect_error(REQUIRED "[engine]\nmax_sans = 65\n", 7, "from 1 to 64");
	expect_error(REQUIRED "[engine]\nrsa_min_bits = 1024\n", 7, "from 2048 to 16384");
	expect_error(REQUIRED "[engine]\nrsa_min_exponent = 65536\n", 7,
		     "rsa_min_exponent must be an odd whole number from 3 to 4294967297");
	expect_error(REQUIRED "[engine]\nrsa_min_exponent = 1\n", 7, "odd whole number");
	expect_error(REQUIRED "[engine]\nrsa_min_exponent = 4294967299\n", 7, "odd whole number");
	expect_error(REQUIRED "[engine]\nrsa_min_exponent = 99999999999999999999999\n", 7,
		     "odd whole number");
	expect_error(REQUIRED "[engine]\nrsa_min_exponent = 0x10001\n", 7, "odd whole number");
}

static void test_notify(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	assert_int_equal(load(REQUIRED "[notify]\ndays = 1, 30,7\ncommand = /bin/sh -c  true\n"
				       "from = ca-admin+notify@mail.example.org\n"
				       "interval_minutes = 0\n",
			      &em),
			 P11CA_OK);
	assert_int_equal(cfg.n_notify_days, 3); /* stored descending */
	assert_int_equal(cfg.notify_days[0], 30);
	assert_int_equal(cfg.notify_days[1], 7);
	assert_int_equal(cfg.notify_days[2], 1);
	assert_string_equal(cfg.notify_command, "/bin/sh -c  true");
	assert_string_equal(cfg.notify_from, "ca-admin+notify@mail.example.org");
	assert_int_equal(cfg.notify_interval_minutes, 0);

	expect_error(REQUIRED "[notify]\ndays = 14, 7, 14\n", 7, "days lists 14 twice");
	expect_error(REQUIRED "[notify]\ndays = 0\n", 7,
		     "days must be a comma list of whole numbers from 1 to 365");
	expect_error(REQUIRED "[notify]\ndays = 366\n", 7, "from 1 to 365");
	expect_error(REQUIRED "[notify]\ndays = 7,\n", 7, "comma list");
	expect_error(REQUIRED "[notify]\ndays =\n", 7, "comma list");
	expect_error(REQUIRED "[notify]\ndays = 7 3\n", 7, "comma list");
	expect_error(REQUIRED "[notify]\ndays = 9,8,7,6,5,4,3,2,1\n", 7, "more than 8 thresholds");
	expect_error(REQUIRED "[notify]\ncommand = sendmail -t\n", 7,
		     "command must start with the absolute path of a program");
	expect_error(REQUIRED "[notify]\ncommand = /nonexistent/sendmail\n", 7,
		     "/nonexistent/sendmail is not an executable file");
	expect_error(REQUIRED "[notify]\ncommand = /etc\n", 7, "/etc is not an executable file");
	/* 13 words at most: the notifier appends "--" and the recipient. */
	expect_error(REQUIRED "[notify]\ncommand = /bin/true 1 2 3 4 5 6 7 8 9 10 11 12 13\n", 7,
		     "more than 13 words");
	expect_error(REQUIRED "[notify]\nfrom = nobody\n", 7, "from: 'nobody' is not of the form");
	expect_error(REQUIRED "[notify]\nfrom = a@b@c.example\n", 7, "before '@'");
	expect_error(REQUIRED "[notify]\ninterval_minutes = 10081\n", 7, "from 0 to 10080");
	expect_error(REQUIRED "[notify]\nbogus = 1\n", 7, "unknown key 'bogus' in [notify]");
}

static void test_addr_spec(void **state)
{
	(void)state;
	static const char *const good[] = {
		"a@example.org",       "first.last@sub.example.org", "x+tag@example.co",
		"o'brien@example.org", "a@xn--mnchen-3ya.de",
	};
	static const struct {
		const char *addr, *why;
	} bad[] = {
		{"", "1 to 254"},
		{"a", "not of the form"},
		{"@example.org", "not of the form"},
		{"a@", "not of the form"},
		{"a b@example.org", "before '@'"},
		{"<a@example.org>", "before '@'"},
		{"a,b@example.org", "before '@'"},
		{"\"a\"@example.org", "before '@'"},
		{".a@example.org", "before '@'"},
		{"a.@example.org", "before '@'"},
		{"a..b@example.org", "before '@'"},
		{"a\n@example.org", "before '@'"},
		{"m\xc3\xbcller@example.org", "before '@'"},
		{"a@localhost", "at least two labels"},
		{"a@example..org", "the domain"},
		{"a@-x.org", "the domain"},
		{"a@x-.org", "the domain"},
		{"a@ex ample.org", "the domain"},
		{"a@example.org>", "the domain"},
		{"a@example.org,b@example.org", "before '@'"},
		{"a@[127.0.0.1]", "the domain"},
		/* A mail command would take these for options (-X writes a log file). */
		{"-X/var/www/html/s@evil.php", "starts with '-'"},
		{"-oQ/tmp@example.org", "starts with '-'"},
	};
	char why[300];
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (config_addr_spec_check(good[i], why, sizeof(why)) != P11CA_OK)
			fail_msg("%s refused: %s", good[i], why);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		if (config_addr_spec_check(bad[i].addr, why, sizeof(why)) != P11CA_E_INVALID_ARG ||
		    strstr(why, bad[i].why) == NULL)
			fail_msg("'%s': got \"%s\", want \"%s\"", bad[i].addr, why, bad[i].why);
	}
	char local[80], longdom[300];
	memset(local, 'l', 65);
	snprintf(local + 65, sizeof(local) - 65, "@example.org");
	assert_int_equal(config_addr_spec_check(local, why, sizeof(why)), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(why, "longer than 64"));
	memset(longdom, 'd', 260);
	memcpy(longdom, "a@", 2);
	snprintf(longdom + 251, sizeof(longdom) - 251, ".org"); /* 255 octets */
	assert_int_equal(config_addr_spec_check(longdom, why, sizeof(why)), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(why, "254"));

	char buf[64], *argv[5];
	assert_int_equal(config_command_split(" /a  b\tc ", buf, sizeof(buf), argv, 5), 3);
	assert_string_equal(argv[0], "/a");
	assert_string_equal(argv[2], "c");
	assert_null(argv[3]);
	assert_int_equal(config_command_split("/a b c d e", buf, sizeof(buf), argv, 5), -1);
	assert_int_equal(config_command_split("/a", buf, 2, argv, 5), -1);
	assert_int_equal(config_command_split("", buf, sizeof(buf), argv, 5), 0);
}

static void test_errors(void **state)
{
	(void)state;
	expect_error(REQUIRED "[rpc]\nmax_connections = 5\nbogus = 1\n", 8,
		     "unknown key 'bogus' in [rpc]");
	expect_error(REQUIRED "[nosuch]\n", 6, "unknown section [nosuch]");
	expect_error("x = 1\n" REQUIRED, 1, "key 'x' comes before any [section]");
	expect_error(REQUIRED "[rpc]\nmax_connections = 0\n", 7,
		     "max_connections must be a whole number from 1 to 4096, not '0'");
	expect_error(REQUIRED "[rpc]\nmax_connections = 12abc\n", 7, "not '12abc'");
	expect_error(REQUIRED "[rpc]\nmax_connections = -1\n", 7, "not '-1'");
	expect_error(REQUIRED "[storage]\nmap_size_mb = 99999999999999999999\n", 7,
		     "map_size_mb must be a whole number");
	expect_error("[daemon]\nstate_dir = /s\n[hsm]\nmodule = lib.so\ntoken = t\n", 4,
		     "module must be an absolute path, not 'lib.so'");
	expect_error("[daemon]\nstate_dir = var\n", 2, "state_dir must be an absolute path");
	expect_error(REQUIRED "[rpc]\nlisten = localhost:7443\n", 7, "not an IPv4 address");
	expect_error(REQUIRED "[rpc]\nlisten = 127.0.0.1\n", 7, "has no port");
	expect_error(REQUIRED "[rpc]\nlisten = 127.0.0.1:0\n", 7, "port 0");
	expect_error(REQUIRED "[rpc]\nlisten = 127.0.0.1:70000\n", 7, "0..65535");
	expect_error(REQUIRED "[rpc]\nlisten = [::1]:1\nlisten = [::1]:1\n", 8, "given twice");
	expect_error(REQUIRED "[rpc]\nlisten = [::1]:1\nlisten = [::1]:2\nlisten = [::1]:3\n"
			      "listen = [::1]:4\nlisten = [::1]:5\n",
		     11, "more than 4 listen addresses");
	expect_error(REQUIRED "[http]\nlisten = nonsense\n", 7, "has no port");
	expect_error(REQUIRED "[rpc]\nmax_connections = 5\nmax_connections = 6\n", 8,
		     "'max_connections' is already set in [rpc] at line 7");
	expect_error(REQUIRED "[hsm]\ntoken = again\n", 7,
		     "'token' is already set in [hsm] at "
		     "line 5");
	expect_error(REQUIRED "[engine]\ndefault_profile = a/b\n", 7, "is not a valid name");
	expect_error(REQUIRED "[engine]\ndefault_profile = nosuch\n", 7,
		     "default_profile 'nosuch' is not an enabled profile");
	expect_error(REQUIRED "[profile webserver]\nenabled = false\n", 0,
		     "default_profile 'webserver' is disabled");
	expect_error("[daemon]\nstate_dir = /s\n[hsm]\ntoken = t\n", 0, "[hsm] module is required");
	expect_error("[hsm]\nmodule = /m.so\ntoken = t\n", 0, "[daemon] state_dir is required");
	expect_error("[daemon]\nstate_dir = /s\n[hsm]\nmodule = /m.so\n", 0,
		     "[hsm] token is required");
}

static void test_errors_values(void **state)
{
	(void)state;
	expect_error(REQUIRED "[profile web]\nkey_usage = digitalSignature, signEverything\n", 7,
		     "unknown key usage 'signEverything'");
	expect_error(REQUIRED "[profile web]\nkey_usage = digitalSignature,\n", 7,
		     "unknown key usage");
	expect_error(REQUIRED "[profile web]\nextended_key_usage = serverAuth, fooAuth\n", 7,
		     "'fooAuth' is neither a key purpose name");
	expect_error(REQUIRED "[profile web]\nextended_key_usage = 1.2..x\n", 7,
		     "neither a key purpose name");
	/* Objects OpenSSL knows that are no key purpose. */
	expect_error(REQUIRED "[profile web]\nextended_key_usage = commonName\n", 7,
		     "'commonName' is neither a key purpose name");
	expect_error(REQUIRED "[profile web]\nextended_key_usage = serverAuth, sha256\n", 7,
		     "'sha256' is neither a key purpose name");
	expect_error(REQUIRED "[profile web]\nextended_key_usage = serverAuth, serverAuth\n", 7,
		     "listed twice");
	expect_error(REQUIRED "[profile web]\nenabled = maybe\n", 7,
		     "enabled must be true or false, not 'maybe'");
	expect_error(REQUIRED "[profile web]\nexpires_days = 40000\n", 7, "expires_days");
	expect_error(REQUIRED "[profile web]\ncolor = blue\n", 7,
		     "unknown key 'color' in [profile web]");
	expect_error(REQUIRED "[profile web]\nenabled = true\nenabled = false\n", 8,
		     "'enabled' is already set in [profile web] at line 7");
	expect_error(REQUIRED "[profile bad/name]\n", 6, "profile name 'bad/name' is not valid");
	expect_error(REQUIRED "[roles]\n" FP " = root\n", 7, "unknown role 'root'");
	expect_error(REQUIRED "[roles]\nABCD = admin\n", 7,
		     "'ABCD' is not a certificate "
		     "fingerprint");
	expect_error(REQUIRED "[roles]\n" FP " = admin\n" FP " = auditor\n", 8,
		     "already has a role at line 7");
	expect_error(REQUIRED "[hsm]\npin_source = credential:\n", 7, "credential:NAME");
	expect_error(REQUIRED "[hsm]\npin_source = file:relative\n", 7, "absolute path");
}

/* [rpc] user: the rpc process becomes it, so it must exist and must not be root; both are
 * refused at load (also by --check-config), not when the rpc process starts. */
static void test_rpc_user(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	struct passwd *pw = getpwnam("daemon"); /* Debian's base-passwd: uid 1 */
	assert_non_null(pw);
	assert_int_equal(load(REQUIRED "[rpc]\nuser = daemon\n", &em), P11CA_OK);
	assert_string_equal(cfg.rpc_user, "daemon");

	expect_error(REQUIRED "[rpc]\nuser = p11ca-no-such-user\n", 7,
		     "user 'p11ca-no-such-user' cannot run the rpc process: no such user");
	expect_error(REQUIRED "[rpc]\nuser = root\n", 7, "it is root");
	expect_error(REQUIRED "[rpc]\nuser = a/b\n", 7, "user 'a/b' is not a user name");
	expect_error(REQUIRED "[rpc]\nuser = \n", 7, "user '' is not a user name");
	expect_error(REQUIRED "[rpc]\nuser = abcdefghijklmnopqrstuvwxyzabcdefg\n", 7,
		     "is not a user name"); /* 33 characters */
	expect_error(REQUIRED "[rpc]\nuser = nobody\nuser = daemon\n", 8,
		     "'user' is already set in [rpc] at line 7");
}

static void test_errors_syntax(void **state)
{
	(void)state;
	expect_error(REQUIRED "[rpc\n", 6, "section header without ']'");
	expect_error(REQUIRED "[rpc]\njust some words\n", 7, "not a 'key = value' line");
	expect_error("[daemon]\nstate_dir = /s\n[hsm]\nmodule = /m.so\n"
		     "token = 0123456789012345678901234567890123\n",
		     5, "token label '0123456789012345678901234567890123' must be 1..32 bytes");

	char *big = malloc(6000);
	assert_non_null(big);
	int n = snprintf(big, 6000, "%s[rpc]\ntls_cert = ", REQUIRED);
	memset(big + n, 'a', 5000);
	strcpy(big + n + 5000, "\n");
	expect_error(big, 7, "line longer than");
	memset(big + n, 'a', 1100);
	strcpy(big + n + 1100, "\n");
	expect_error(big, 7, "tls_cert is longer than 1023 characters");
	free(big);

	struct p11ca_errmsg em = {0};
	snprintf(file, sizeof(file), "%s/missing.conf", dir);
	assert_int_equal(p11cad_config_load(file, &cfg, &em), P11CA_E_CONFIG);
	assert_non_null(strstr(em.text, "missing.conf: cannot read the configuration"));
	assert_non_null(strstr(em.text, "p11cad init"));
	snprintf(file, sizeof(file), "%s/p11cad.conf", dir);
	assert_int_equal(p11cad_config_load(NULL, &cfg, NULL), P11CA_E_INVALID_ARG);
}

static void test_profiles(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	assert_int_equal(load(REQUIRED "[profile webserver]\nexpires_days = 90\n"
				       "[profile ocsp]\nenabled = no\n"
				       "[profile signer]\n"
				       "key_usage = digitalSignature, contentCommitment\n"
				       "key_usage_critical = false\n"
				       "extended_key_usage = codeSigning, 1.3.6.1.4.1.311.10.3.13\n"
				       "extended_key_usage_critical = true\n"
				       "[profile empty]\n",
			      &em),
			 P11CA_OK);
	assert_int_equal(cfg.n_profiles, 7);

	const struct p11cad_profile *p = p11cad_config_profile(&cfg, "client");
	assert_non_null(p);
	assert_int_equal(p->key_usage, X509v3_KU_DIGITAL_SIGNATURE);
	assert_true(p->key_usage_critical);
	assert_int_equal(p->n_eku, 1);
	assert_string_equal(p->eku[0], "clientAuth");
	assert_false(p->eku_critical);

	p = p11cad_config_profile(&cfg, "server");
	assert_int_equal(p->key_usage, X509v3_KU_DIGITAL_SIGNATURE | X509v3_KU_KEY_AGREEMENT |
					       X509v3_KU_KEY_ENCIPHERMENT);
	assert_int_equal(p->n_eku, 2);
	assert_string_equal(p->eku[0], "clientAuth");
	assert_string_equal(p->eku[1], "serverAuth");

	p = p11cad_config_profile(&cfg, "webserver"); /* built-in values, expires changed */
	assert_int_equal(p->expires_days, 90);
	assert_int_equal(p->n_eku, 1);
	assert_string_equal(p->eku[0], "serverAuth");

	p = p11cad_config_profile(&cfg, "enduser");
	assert_int_equal(p->key_usage, X509v3_KU_DATA_ENCIPHERMENT | X509v3_KU_DIGITAL_SIGNATURE |
					       X509v3_KU_KEY_ENCIPHERMENT);
	assert_int_equal(p->n_eku, 3);
	assert_string_equal(p->eku[2], "emailProtection");

	assert_null(p11cad_config_profile(&cfg, "ocsp")); /* disabled */
	assert_null(p11cad_config_profile(&cfg, "nosuch"));
	assert_null(p11cad_config_profile(NULL, "client"));

	p = p11cad_config_profile(&cfg, "signer");
	assert_non_null(p);
	assert_int_equal(p->key_usage, X509v3_KU_DIGITAL_SIGNATURE | X509v3_KU_NON_REPUDIATION);
	assert_false(p->key_usage_critical);
	assert_int_equal(p->n_eku, 2);
	assert_string_equal(p->eku[1], "1.3.6.1.4.1.311.10.3.13");
	assert_true(p->eku_critical);

	p = p11cad_config_profile(&cfg, "empty");
	assert_non_null(p);
	assert_int_equal(p->key_usage, 0);
	assert_true(p->key_usage_critical);
	assert_int_equal(p->n_eku, 0);

	/* A new profile's defaults for the keys it does not set. */
	assert_true(p->cn_in_san && p->add_crl_url && p->add_ocsp_url && p->add_issuer_url);
	assert_false(p->ocsp_no_check || p->tls_feature_status_request);
	assert_string_equal(p->description, "");
	assert_string_equal(p->subject, "");
	assert_int_equal(p->n_policies, 0);

	/* The built-in ocsp profile as django-ca has it. */
	assert_int_equal(load(REQUIRED, &em), P11CA_OK);
	p = p11cad_config_profile(&cfg, "ocsp");
	assert_int_equal(p->key_usage, X509v3_KU_NON_REPUDIATION | X509v3_KU_DIGITAL_SIGNATURE |
					       X509v3_KU_KEY_ENCIPHERMENT);
	assert_string_equal(p->eku[0], "OCSPSigning");
	assert_true(p->ocsp_no_check);
	assert_false(p->add_ocsp_url);
	assert_string_equal(p->description, "A certificate for an OCSP responder.");
	/* Every built-in: keyUsage critical, EKU not, CN in SAN, no must-staple. */
	for (size_t i = 0; i < cfg.n_profiles; i++) {
		p = &cfg.profiles[i];
		assert_true(p->enabled);
		assert_true(p->key_usage_critical);
		assert_false(p->eku_critical);
		assert_true(p->cn_in_san && p->add_crl_url && p->add_issuer_url);
		assert_false(p->tls_feature_status_request);
		assert_int_not_equal(p->description[0], '\0');
		assert_int_equal(p->ocsp_no_check, strcmp(p->name, "ocsp") == 0);
		assert_int_equal(p->add_ocsp_url, strcmp(p->name, "ocsp") != 0);
	}
}

static void test_profile_extension_keys(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	assert_int_equal(load(REQUIRED "[profile web2]\n"
				       "description = Web servers, must-staple\n"
				       "key_usage = digitalSignature\n"
				       "subject = /C=AT/O=Example Org\n"
				       "cn_in_san = false\n"
				       "add_crl_url = no\n"
				       "add_ocsp_url = off\n"
				       "add_issuer_url = 0\n"
				       "policy = 2.23.140.1.2.1\n"
				       "policy = 1.3.6.1.4.1.99999.1;cps=https://ca.example.org/cps"
				       ";notice=Only for tests\n"
				       "ocsp_no_check = true\n"
				       "tls_feature_status_request = yes\n"
				       "[profile webserver]\n"
				       "policy = 2.23.140.1.2.2\n",
			      &em),
			 P11CA_OK);
	const struct p11cad_profile *p = p11cad_config_profile(&cfg, "web2");
	assert_non_null(p);
	assert_string_equal(p->description, "Web servers, must-staple");
	assert_string_equal(p->subject, "/C=AT/O=Example Org");
	assert_false(p->cn_in_san || p->add_crl_url || p->add_ocsp_url || p->add_issuer_url);
	assert_int_equal(p->n_policies, 2);
	assert_string_equal(p->policies[0], "2.23.140.1.2.1");
	assert_string_equal(p->policies[1], "1.3.6.1.4.1.99999.1;cps=https://ca.example.org/cps"
					    ";notice=Only for tests");
	assert_true(p->ocsp_no_check);
	assert_true(p->tls_feature_status_request);
	p = p11cad_config_profile(&cfg, "webserver");
	assert_int_equal(p->n_policies, 1);
	assert_string_equal(p->policies[0], "2.23.140.1.2.2");
	assert_true(p->cn_in_san); /* untouched keys keep the built-in values */

	expect_error(REQUIRED "[profile x]\nsubject = /XX=nope\n", 7, "subject: ");
	expect_error(REQUIRED "[profile x]\nsubject = /C=Austria\n", 7, "subject: ");
	expect_error(REQUIRED "[profile x]\npolicy = not-an-oid\n", 7, "policy: ");
	expect_error(REQUIRED "[profile x]\npolicy = 1.2.3\npolicy = 1.2.3;cps=https://a.example\n",
		     8, "policy 1.2.3 is given twice");
	expect_error(REQUIRED "[profile x]\npolicy = 1.2.1\npolicy = 1.2.2\npolicy = 1.2.3\n"
			      "policy = 1.2.4\npolicy = 1.2.5\n",
		     11, "more than 4 policy lines");
	expect_error(REQUIRED "[profile x]\ndescription = a\tb\n", 7,
		     "description has control characters");
	expect_error(REQUIRED "[profile x]\ncn_in_san = sometimes\n", 7,
		     "cn_in_san must be true or false, not 'sometimes'");
	expect_error(REQUIRED "[profile x]\ntls_feature_status_request = 2\n", 7,
		     "tls_feature_status_request must be true or false");
	expect_error(REQUIRED "[profile x]\nsubject = /O=a\nsubject = /O=b\n", 8,
		     "'subject' is already set in [profile x] at line 7");
	char big[600];
	snprintf(big, sizeof(big), "%s[profile x]\ndescription = %0200d\n", REQUIRED, 0);
	expect_error(big, 7, "description is longer than 128 bytes");
}

static void test_roles(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	assert_int_equal(load(REQUIRED
			      "[roles]\n"
			      "3fa2c1d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9c"
			      " = OPERATOR\n",
			      &em),
			 P11CA_OK);
	assert_int_equal(cfg.n_roles, 1);
	assert_string_equal(cfg.roles[0].fingerprint, FP); /* normalised */
	assert_string_equal(cfg.roles[0].role, "operator");
	assert_int_equal(cfg.roles[0].line, 7);
}

static void test_path(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	char out[P11CAD_PATH_MAX];
	assert_int_equal(load(REQUIRED, &em), P11CA_OK);
	assert_int_equal(p11cad_config_path(&cfg, "tls/server.crt", out, &em), P11CA_OK);
	assert_string_equal(out, "/var/lib/p11ca/tls/server.crt");
	assert_int_equal(p11cad_config_path(&cfg, "/etc/x", out, &em), P11CA_OK);
	assert_string_equal(out, "/etc/x");
	assert_int_equal(p11cad_config_path(&cfg, "", out, NULL), P11CA_E_INVALID_ARG);
	char longrel[P11CAD_PATH_MAX];
	memset(longrel, 'x', sizeof(longrel) - 10);
	longrel[sizeof(longrel) - 10] = '\0';
	assert_int_equal(p11cad_config_path(&cfg, longrel, out, &em), P11CA_E_CONFIG);
	assert_non_null(strstr(em.text, "longer than"));
}

static void test_write_round_trip(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	char path[400];
	snprintf(path, sizeof(path), "%s/written.conf", dir);
	struct p11cad_init_options o = {
		.module = "/opt/hsm/lib.so",
		.token = "prod token",
		.pin_source = "/etc/p11ca/pin",
		.state_dir = "/srv/p11ca",
		.listen = "[::]:9000",
		.http = "0.0.0.0:8080",
	};
	assert_int_equal(p11cad_config_write(path, &o, &em), P11CA_OK);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);

	assert_int_equal(p11cad_config_load(path, &cfg, &em), P11CA_OK);
	assert_string_equal(cfg.module, "/opt/hsm/lib.so");
	assert_string_equal(cfg.token, "prod token");
	assert_string_equal(cfg.pin_source, "/etc/p11ca/pin");
	assert_string_equal(cfg.state_dir, "/srv/p11ca");
	assert_int_equal(cfg.n_rpc_listen, 1);
	assert_string_equal(cfg.rpc_listen[0], "[::]:9000");
	assert_string_equal(cfg.http_listen, "0.0.0.0:8080");
	/* Everything else at its default, built-in profiles untouched. */
	assert_string_equal(cfg.tls_cert, "tls/server.crt");
	assert_int_equal(cfg.workers, 16);
	assert_int_equal(cfg.n_profiles, 5);

	/* Every key is in the file, uncommented. */
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char text[32768];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	static const char *keys[] = {
		"\nstate_dir = ",
		"\nlisten = [::]:9000",
		"\ntls_cert = ",
		"\ntls_key = ",
		"\nclient_ca = ",
		"\nroles_file = ",
		"\nmax_connections = ",
		"\nio_timeout_ms = ",
		"\nuser = nobody",
		"\nlisten = 0.0.0.0:8080",
		"\npath = db",
		"\nmap_size_mb = ",
		"\nmodule = ",
		"\ntoken = ",
		"\npin_source = ",
		"\npool_size = 0",
		"\nbusy_timeout_ms = 0",
		"\nworkers = 16",
		"\nca_expires_days = 3650",
		"\ncert_expires_days = 365",
		"\ndefault_profile = webserver",
		"\nmanagement_ca = p11ca-management",
		"\ncsr_max_bytes = 16384",
		"\nmax_sans = 64",
		"\nrsa_min_bits = 2048",
		"\nrsa_min_exponent = 65537",
		"\n[notify]\n",
		"\ndays = 14, 7, 3, 1",
		"\ncommand = \n",
		"\n# from = p11ca@",
		"\ninterval_minutes = 60",
		"# ocsp_no_check = true\n# tls_feature_status_request = false\n# enabled = true\n",
		"# description = A certificate for a webserver.\n",
		"\n[roles]\n",
		"# [profile ocsp]\n",
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strstr(text, keys[i]) == NULL)
			fail_msg("written file lacks \"%s\"", keys[i]);

	/* Defaults for everything. */
	snprintf(path, sizeof(path), "%s/defaults.conf", dir);
	assert_int_equal(p11cad_config_write(path, NULL, &em), P11CA_OK);
	assert_int_equal(p11cad_config_load(path, &cfg, &em), P11CA_OK);
	assert_string_equal(cfg.state_dir, "/var/lib/p11ca");
	assert_string_equal(cfg.module, "/usr/lib/softhsm/libsofthsm2.so");
	assert_string_equal(cfg.token, "p11ca");
	assert_string_equal(cfg.pin_source, "");
	assert_string_equal(cfg.rpc_listen[0], "127.0.0.1:7443");
}

static void test_write_never_overwrites(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	put("precious\n");
	assert_int_equal(p11cad_config_write(file, NULL, &em), P11CA_E_STORAGE_EXISTS);
	assert_non_null(strstr(em.text, "left as it is"));
	FILE *f = fopen(file, "r");
	char buf[32] = {0};
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "precious\n");

	/* Options that would not load back are refused before a file exists. */
	char path[400];
	snprintf(path, sizeof(path), "%s/bad.conf", dir);
	struct p11cad_init_options o = {.pin_source = "/etc/pin ;x"};
	p11ca_errmsg_clear(&em);
	assert_int_equal(p11cad_config_write(path, &o, &em), P11CA_E_CONFIG);
	assert_non_null(strstr(em.text, "INI file"));
	o = (struct p11cad_init_options){.module = "relative.so"};
	p11ca_errmsg_clear(&em);
	assert_int_equal(p11cad_config_write(path, &o, &em), P11CA_E_CONFIG);
	assert_non_null(strstr(em.text, "absolute path"));
	o = (struct p11cad_init_options){.listen = "localhost:1"};
	assert_int_equal(p11cad_config_write(path, &o, NULL), P11CA_E_CONFIG);
	o = (struct p11cad_init_options){.token = "line\nbreak"};
	assert_int_equal(p11cad_config_write(path, &o, NULL), P11CA_E_CONFIG);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(p11cad_config_write(NULL, NULL, NULL), P11CA_E_INVALID_ARG);
	snprintf(path, sizeof(path), "%s/no/such/dir.conf", dir);
	assert_int_equal(p11cad_config_write(path, NULL, NULL), P11CA_E_IO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_engine_limits),
		cmocka_unit_test(test_notify),
		cmocka_unit_test(test_addr_spec),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_errors_values),
		cmocka_unit_test(test_errors_syntax),
		cmocka_unit_test(test_rpc_user),
		cmocka_unit_test(test_profiles),
		cmocka_unit_test(test_profile_extension_keys),
		cmocka_unit_test(test_roles),
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_write_round_trip),
		cmocka_unit_test(test_write_never_overwrites),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
