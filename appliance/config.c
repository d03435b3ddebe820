/*
 * appliance/config.c — loading p11cad's INI file (libinih) into struct p11cad_config.
 *
 * libinih 55 (Debian 12) does not pass line numbers to the handler and truncates section
 * names at 50 bytes, so the line reader below counts lines and tracks the current section
 * itself; the handler always runs for the line the reader returned last (multi-line values
 * are turned off). Every message is "FILE:LINE: what is wrong"; the first one sticks.
 */
#include "appliance/config.h"

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "appliance/config_internal.h"
#include "appliance/listen.h"
#include "common/kconfig.h"
#include "rpc/role.h"

#define KEY(sec, nm, kind, field, mn, mx, req, hlp)                                                \
	{                                                                                          \
		sec, nm, kind, offsetof(struct p11cad_config, field),                              \
			sizeof(((struct p11cad_config *)0)->field), mn, mx, req, hlp               \
	}

const char *const config_sections[] = {"daemon", "rpc",	   "http",  "storage", "hsm",
				       "engine", "notify", "roles", NULL};

const struct config_key config_keys[] = {
	KEY("daemon", "state_dir", CONFIG_ABS_PATH, state_dir, 0, 0, 1,
	    "Directory for the database, the TLS files and the roles file; p11cad init\n"
	    "creates it (mode 0700). Relative paths below are relative to it."),
	KEY("rpc", "listen", CONFIG_LISTEN, rpc_listen, 0, 0, 0,
	    "Address of the admin RPC (TLS 1.3 with client certificates): an IP address\n"
	    "and port, [ADDR]:PORT for IPv6. Repeat the key to listen on several (at most 4)."),
	KEY("rpc", "tls_cert", CONFIG_PATH, tls_cert, 0, 0, 0,
	    "The server's TLS certificate chain (written by p11cad init)."),
	KEY("rpc", "tls_key", CONFIG_PATH, tls_key, 0, 0, 0,
	    "Its private key, mode 0600. It is a software key: the network-facing rpc\n"
	    "process must read it, and it never touches the HSM."),
	KEY("rpc", "client_ca", CONFIG_PATH, client_ca, 0, 0, 0,
	    "Client certificates must chain to this CA: the management CA (p11cad init)."),
	KEY("rpc", "roles_file", CONFIG_PATH, roles_file, 0, 0, 0,
	    "Roles of client certificates, one 'FINGERPRINT ROLE' per line (SHA-256 of the\n"
	    "DER certificate; admin, operator or auditor). p11cad init appends the first\n"
	    "admin. Read when the rpc process starts: restart p11cad to apply changes."),
	KEY("rpc", "max_connections", CONFIG_UINT, max_connections, 1, 4096, 0,
	    "Concurrent client connections; more are closed at once."),
	KEY("rpc", "io_timeout_ms", CONFIG_UINT, io_timeout_ms, 100, 600000, 0,
	    "Time allowed for the TLS handshake and for each whole request or reply frame."),
	KEY("rpc", "user", CONFIG_USER, rpc_user, 0, 0, 0,
	    "The network-facing rpc process switches to this user (not root) and chroots\n"
	    "into the empty directory state_dir/empty once its TLS files are read. Needs\n"
	    "p11cad to start as root, or with CAP_SYS_CHROOT, CAP_SETUID and CAP_SETGID;\n"
	    "otherwise it only sets no-new-privileges and says so in the log."),
	KEY("http", "listen", CONFIG_LISTEN_OPT, http_listen, 0, 0, 0,
	    "Address of the CRL/OCSP responder (HOST:PORT), empty for none. Accepted and\n"
	    "checked now; the responder is served from a later release."),
	KEY("storage", "path", CONFIG_PATH, db_path, 0, 0, 0,
	    "LMDB environment directory (only the engine process opens it)."),
	KEY("storage", "map_size_mb", CONFIG_SIZE, map_size_mb, 1, 1048576, 0,
	    "Largest size the database may grow to, MiB (address space, not disk)."),
	KEY("hsm", "module", CONFIG_ABS_PATH, module, 0, 0, 1,
	    "Absolute path of the PKCS#11 module; only the signer process loads it."),
	KEY("hsm", "token", CONFIG_TOKEN_LABEL, token, 0, 0, 1,
	    "Label of the token that holds the CA keys (1..32 bytes)."),
	KEY("hsm", "pin_source", CONFIG_PIN_SOURCE, pin_source, 0, 0, 0,
	    "Where the signer reads the user PIN at start: a file (mode 0600, owned by\n"
	    "the daemon's user; relative to state_dir unless absolute), file:/PATH, or\n"
	    "credential:NAME (a systemd credential, LoadCredential=NAME:/path). Empty: the\n"
	    "daemon waits until an admin runs `p11ca hsm activate`; that PIN lives only in\n"
	    "the signer's memory and is lost whenever the processes restart."),
	KEY("hsm", "pool_size", CONFIG_UINT, pool_size, 0, CONFIG_HSM_POOL_MAX_SESSIONS, 0,
	    "PKCS#11 sessions, one signature in flight each; 0: the build default."),
	KEY("hsm", "busy_timeout_ms", CONFIG_UINT, busy_timeout_ms, 0, 600000, 0,
	    "How long a request waits for a free session before 'HSM busy'; 0: build default."),
	KEY("engine", "workers", CONFIG_UINT, workers, 1, 1024, 0,
	    "Requests the engine works on at once (issuance is pipelined to the signer)."),
	KEY("engine", "ca_expires_days", CONFIG_UINT, ca_expires_days, 1, 36500, 0,
	    "Default validity of a new CA certificate, days."),
	KEY("engine", "cert_expires_days", CONFIG_UINT, cert_expires_days, 1, 36500, 0,
	    "Default validity of an issued certificate when its profile sets none, days."),
	KEY("engine", "default_profile", CONFIG_NAME, default_profile, 0, 0, 0,
	    "Profile used when a request names none; must be an enabled profile."),
	KEY("engine", "management_ca", CONFIG_NAME, management_ca, 0, 0, 0,
	    "Name of the CA that issues the TLS certificates of this appliance and its\n"
	    "admins (created by p11cad init, key in the HSM)."),
	KEY("engine", "csr_max_bytes", CONFIG_SIZE, csr_max_bytes, 256, 16384, 0,
	    "Largest certificate signing request accepted, bytes (DER or PEM)."),
	KEY("engine", "max_sans", CONFIG_UINT, max_sans, 1, 64, 0,
	    "Most subjectAltNames one certificate may carry (the CN's included)."),
	KEY("engine", "rsa_min_bits", CONFIG_UINT, rsa_min_bits, 2048, 16384, 0,
	    "Smallest RSA modulus accepted in a CSR, bits (never below 2048)."),
	KEY("engine", "rsa_min_exponent", CONFIG_ODD_U64, rsa_min_exponent, 3, 4294967297UL, 0,
	    "Smallest RSA public exponent accepted in a CSR: an odd number from 3 to\n"
	    "4294967297. Lower it only for old keys you cannot replace."),
	KEY("notify", "days", CONFIG_DAYS, notify_days, 1, 365, 0,
	    "Days before expiry at which each watcher of a certificate is told, once per\n"
	    "threshold: a comma list of up to 8 distinct numbers from 1 to 365."),
	KEY("notify", "command", CONFIG_COMMAND, notify_command, 0, 0, 0,
	    "A sendmail-compatible command: split on blanks (no shell, no quoting), the\n"
	    "first word an executable's absolute path. The engine runs it once per\n"
	    "message with the recipient appended as the last argument and the RFC 5322\n"
	    "message on standard input; exit status 0 means sent, anything else is\n"
	    "retried on the next run. Empty: no notifications.\n"
	    "Example: /usr/sbin/sendmail -i --"),
	KEY("notify", "from", CONFIG_EMAIL, notify_from, 0, 0, 0,
	    "Sender address of the notifications (an addr-spec, local@domain).\n"
	    "Default: p11ca@ followed by this host's name."),
	KEY("notify", "interval_minutes", CONFIG_UINT, notify_interval_minutes, 0, 10080, 0,
	    "How often the engine looks for certificates to notify about, minutes; 0:\n"
	    "only when asked (p11ca notify expiring)."),
};
const size_t config_n_keys = sizeof(config_keys) / sizeof(config_keys[0]);

enum section_kind { SEC_NONE, SEC_TABLE, SEC_ROLES, SEC_PROFILE, SEC_BAD };

struct parse {
	FILE *f;
	const char *name;
	struct p11cad_config *cfg;
	struct p11ca_errmsg em;
	int failed;
	unsigned line;
	enum section_kind kind;
	const char *section; /* one of config_sections */
	size_t profile;
	unsigned seen[sizeof(config_keys) / sizeof(config_keys[0])];
	unsigned profile_seen[P11CAD_PROFILES_MAX][PROFILE_KEYS_MAX];
	int listen_given;
};

__attribute__((format(printf, 2, 3))) static int perr(struct parse *p, const char *fmt, ...)
{
	if (p->failed)
		return 0;
	char msg[320];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->failed = 1;
	(void)p11ca_fail(&p->em, P11CA_E_CONFIG, "%s:%u: %s", p->name, p->line, msg);
	return 0;
}

/* "p11ca@" + this host's name, or p11ca@localhost when the name is no domain name. */
static void default_from(char *out, size_t cap)
{
	char host[256] = "";
	char why[128];
	if (gethostname(host, sizeof(host) - 1) != 0)
		host[0] = '\0';
	snprintf(out, cap, "p11ca@%s", host);
	if (config_addr_spec_check(out, why, sizeof(why)) != P11CA_OK) {
		snprintf(out, cap, "p11ca@%s.localdomain", host);
		if (config_addr_spec_check(out, why, sizeof(why)) != P11CA_OK)
			snprintf(out, cap, "p11ca@localhost.localdomain");
	}
}

void config_set_defaults(struct p11cad_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->rpc_listen[0], sizeof(cfg->rpc_listen[0]), "127.0.0.1:7443");
	cfg->n_rpc_listen = 1;
	snprintf(cfg->tls_cert, sizeof(cfg->tls_cert), "tls/server.crt");
	snprintf(cfg->tls_key, sizeof(cfg->tls_key), "tls/server.key");
	snprintf(cfg->client_ca, sizeof(cfg->client_ca), "tls/ca.crt");
	snprintf(cfg->roles_file, sizeof(cfg->roles_file), "roles");
	cfg->max_connections = CONFIG_RPC_MAX_CONNECTIONS;
	cfg->io_timeout_ms = CONFIG_RPC_IO_TIMEOUT_MS;
	snprintf(cfg->rpc_user, sizeof(cfg->rpc_user), "nobody");
	snprintf(cfg->db_path, sizeof(cfg->db_path), "db");
	cfg->map_size_mb = CONFIG_STORE_MAP_SIZE_MB;
	cfg->workers = 16;
	cfg->ca_expires_days = 3650;
	cfg->cert_expires_days = 365;
	snprintf(cfg->default_profile, sizeof(cfg->default_profile), "webserver");
	snprintf(cfg->management_ca, sizeof(cfg->management_ca), "p11ca-management");
	cfg->csr_max_bytes = 16384;
	cfg->max_sans = 64;
	cfg->rsa_min_bits = 2048;
	cfg->rsa_min_exponent = 65537;
	static const unsigned days[] = {14, 7, 3, 1}; /* django-ca's CA_NOTIFICATION_DAYS */
	memcpy(cfg->notify_days, days, sizeof(days));
	cfg->n_notify_days = sizeof(days) / sizeof(days[0]);
	default_from(cfg->notify_from, sizeof(cfg->notify_from));
	cfg->notify_interval_minutes = 60;
	memcpy(cfg->profiles, profile_builtins, profile_n_builtins * sizeof(profile_builtins[0]));
	cfg->n_profiles = profile_n_builtins;
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > P11CAD_NAME_MAX)
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
			return false;
	return true;
}

static bool parse_ulong(const char *v, unsigned long *out)
{
	unsigned long n = 0;
	if (*v == '\0')
		return false;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9' || n > 100000000UL)
			return false;
		n = n * 10 + (unsigned long)(*v - '0');
	}
	*out = n;
	return true;
}

/* NULL when `name` is a user the rpc process may become, else why not. Only at load: the
 * rpc process resolves the user again before its chroot (the database may change). */
static const char *user_problem(const char *name)
{
	errno = 0;
	const struct passwd *pw = getpwnam(name);
	if (pw == NULL)
		return errno != 0 && errno != ENOENT && errno != ESRCH ? strerror(errno)
								       : "no such user";
	if (pw->pw_uid == 0 || pw->pw_gid == 0)
		return "it is root (uid or gid 0), which would undo the sandbox";
	return NULL;
}

static int set_string(struct parse *p, const struct config_key *k, const char *v)
{
	char *field = (char *)p->cfg + k->off;
	if (strlen(v) >= k->cap)
		return perr(p, "%s is longer than %zu characters", k->name, k->cap - 1);
	snprintf(field, k->cap, "%s", v);
	return 1;
}

/* ---- [notify] values ------------------------------------------------------------------ */

static bool is_atext(unsigned char c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

enum p11ca_err config_addr_spec_check(const char *addr, char *why, size_t why_cap)
{
	const char *at = strrchr(addr, '@');
	size_t len = strlen(addr);
	if (len == 0 || len > 254) {
		snprintf(why, why_cap, "an email address must have 1 to 254 characters");
		return P11CA_E_INVALID_ARG;
	}
	if (at == NULL || at == addr || at[1] == '\0') {
		snprintf(why, why_cap, "'%.80s' is not of the form local@domain", addr);
		return P11CA_E_INVALID_ARG;
	}
	/* The notifier hands the address to a sendmail-like command as an argument: one
	 * starting with '-' could be read as an option (-X file writes a log anywhere). */
	if (addr[0] == '-') {
		snprintf(why, why_cap,
			 "'%.80s' starts with '-': an address may not (a mail command would "
			 "take it for an option)",
			 addr);
		return P11CA_E_INVALID_ARG;
	}
	/* Local part: a dot-atom (RFC 5322 3.4.1) without quoting. */
	size_t local = (size_t)(at - addr);
	bool dot_ok = false;
	for (size_t i = 0; i < local; i++) {
		unsigned char c = (unsigned char)addr[i];
		if (c == '.' && dot_ok && i + 1 < local) {
			dot_ok = false;
			continue;
		}
		if (!is_atext(c)) {
			snprintf(
				why, why_cap,
				"'%.80s': the part before '@' may hold only ASCII letters, digits, "
				"single dots and !#$%%&'*+-/=?^_`{|}~ (no blanks, quotes, commas "
				"or angle brackets)",
				addr);
			return P11CA_E_INVALID_ARG;
		}
		dot_ok = true;
	}
	if (local > 64) {
		snprintf(why, why_cap, "'%.80s': the part before '@' is longer than 64 characters",
			 addr);
		return P11CA_E_INVALID_ARG;
	}
	/* Domain: LDH labels, at least two (a bare host name is no mail domain). */
	size_t labels = 0, label_len = 0;
	for (const char *c = at + 1;; c++) {
		if (*c == '.' || *c == '\0') {
			if (label_len == 0 || label_len > 63 || c[-1] == '-')
				break;
			labels++;
			label_len = 0;
			if (*c == '\0')
				return labels >= 2 ? P11CA_OK
						   : (snprintf(why, why_cap,
							       "'%.80s': the domain needs "
							       "at least two labels",
							       addr),
						      P11CA_E_INVALID_ARG);
			continue;
		}
		if (!isalnum((unsigned char)*c) && !(*c == '-' && label_len > 0))
			break;
		label_len++;
	}
	snprintf(why, why_cap,
		 "'%.80s': the domain must be ASCII letters, digits and '-' in dot-separated "
		 "labels of 1 to 63 characters",
		 addr);
	return P11CA_E_INVALID_ARG;
}

int config_command_split(const char *cmd, char *buf, size_t buf_cap, char **argv, size_t max)
{
	size_t n = 0;
	if (strlen(cmd) >= buf_cap || max == 0)
		return -1;
	memcpy(buf, cmd, strlen(cmd) + 1);
	for (char *s = buf; *s != '\0';) {
		while (*s == ' ' || *s == '\t')
			*s++ = '\0';
		if (*s == '\0')
			break;
		if (n + 1 >= max)
			return -1;
		argv[n++] = s;
		while (*s != '\0' && *s != ' ' && *s != '\t')
			s++;
	}
	argv[n] = NULL;
	return (int)n;
}

static int set_command(struct parse *p, const struct config_key *k, const char *v)
{
	char buf[P11CAD_PATH_MAX];
	char *argv[CONFIG_NOTIFY_ARGV_MAX];
	struct stat sb;
	if (v[0] == '\0')
		return set_string(p, k, v);
	/* Two slots stay free for the "--" and the recipient the notifier appends. */
	int n = config_command_split(v, buf, sizeof(buf), argv, CONFIG_NOTIFY_ARGV_MAX - 2);
	if (n < 0)
		return perr(p, "command is longer than %d characters or has more than %d words",
			    P11CAD_PATH_MAX - 1, CONFIG_NOTIFY_ARGV_MAX - 3);
	if (argv[0][0] != '/')
		return perr(p,
			    "command must start with the absolute path of a program (there is no "
			    "shell and no PATH search), not '%s'",
			    argv[0]);
	if (stat(argv[0], &sb) != 0 || !S_ISREG(sb.st_mode) || access(argv[0], X_OK) != 0)
		return perr(p, "command: %s is not an executable file", argv[0]);
	return set_string(p, k, v);
}

static int set_days(struct parse *p, const struct config_key *k, const char *v)
{
	unsigned days[P11CAD_NOTIFY_DAYS_MAX];
	size_t n = 0;
	for (const char *c = v;;) {
		while (*c == ' ' || *c == '\t')
			c++;
		unsigned long d = 0;
		const char *start = c;
		while (*c >= '0' && *c <= '9' && d <= k->max)
			d = d * 10 + (unsigned long)(*c++ - '0');
		while (*c == ' ' || *c == '\t')
			c++;
		if (c == start || (*c != ',' && *c != '\0') || d < k->min || d > k->max)
			return perr(p,
				    "days must be a comma list of whole numbers from %lu to %lu, "
				    "not '%s'",
				    k->min, k->max, v);
		if (n == P11CAD_NOTIFY_DAYS_MAX)
			return perr(p, "days lists more than %d thresholds",
				    P11CAD_NOTIFY_DAYS_MAX);
		for (size_t i = 0; i < n; i++)
			if (days[i] == d)
				return perr(p, "days lists %lu twice", d);
		/* Insert in descending order: the notifier walks thresholds largest first. */
		size_t at = n++;
		while (at > 0 && days[at - 1] < d) {
			days[at] = days[at - 1];
			at--;
		}
		days[at] = (unsigned)d;
		if (*c == '\0')
			break;
		c++;
	}
	memcpy(p->cfg->notify_days, days, n * sizeof(days[0]));
	p->cfg->n_notify_days = n;
	return 1;
}

/* ---- sections (seen by the reader, so empty sections count too) -------------------- */

static void section_begin(struct parse *p, const char *text, size_t len)
{
	char sec[80];
	while (len > 0 && isspace((unsigned char)text[len - 1]))
		len--;
	while (len > 0 && isspace((unsigned char)*text))
		text++, len--;
	if (len >= sizeof(sec)) {
		p->kind = SEC_BAD;
		(void)perr(p, "section name [%.40s…] is too long", text);
		return;
	}
	memcpy(sec, text, len);
	sec[len] = '\0';

	if (strncmp(sec, "profile", 7) == 0 && isspace((unsigned char)sec[7])) {
		const char *name = sec + 8;
		while (isspace((unsigned char)*name))
			name++;
		if (!valid_name(name)) {
			p->kind = SEC_BAD;
			(void)perr(
				p,
				"profile name '%s' is not valid: use 1..%d letters, digits, '.', "
				"'_' or '-'",
				name, P11CAD_NAME_MAX);
			return;
		}
		struct p11cad_config *cfg = p->cfg;
		size_t i = 0;
		while (i < cfg->n_profiles && strcmp(cfg->profiles[i].name, name) != 0)
			i++;
		if (i == cfg->n_profiles) {
			if (cfg->n_profiles == P11CAD_PROFILES_MAX) {
				p->kind = SEC_BAD;
				(void)perr(p, "more than %d profiles", P11CAD_PROFILES_MAX);
				return;
			}
			profile_init(&cfg->profiles[cfg->n_profiles++], name);
		}
		p->kind = SEC_PROFILE;
		p->profile = i;
		return;
	}
	for (size_t i = 0; config_sections[i] != NULL; i++) {
		if (strcmp(sec, config_sections[i]) == 0) {
			p->kind = strcmp(sec, "roles") == 0 ? SEC_ROLES : SEC_TABLE;
			p->section = config_sections[i];
			return;
		}
	}
	p->kind = SEC_BAD;
	(void)perr(p,
		   "unknown section [%s]; sections are [daemon] [rpc] [http] [storage] [hsm] "
		   "[engine] [notify] [roles] and [profile NAME]",
		   sec);
}

/* libinih's line reader: counts lines and notes section headers before libinih sees them. */
static char *read_line(char *str, int num, void *stream)
{
	struct parse *p = stream;
	if (p->failed && p->line > 0)
		return NULL; /* the first error sticks; stop reading */
	if (fgets(str, num, p->f) == NULL)
		return NULL;
	p->line++;
	size_t n = strlen(str);
	if (n + 1 == (size_t)num && str[n - 1] != '\n' && !feof(p->f)) {
		(void)perr(p, "line longer than %d characters", num - 2);
		return NULL;
	}
	const char *s = str;
	while (isspace((unsigned char)*s))
		s++;
	if (*s == '[') {
		const char *end = strchr(s, ']');
		if (end == NULL)
			(void)perr(p, "section header without ']'");
		else
			section_begin(p, s + 1, (size_t)(end - s - 1));
	}
	return str;
}

/* ---- keys ---------------------------------------------------------------------------- */

static int set_table_key(struct parse *p, const struct config_key *k, const char *v)
{
	struct p11cad_config *cfg = p->cfg;
	struct p11cad_listen_addr addr;
	unsigned long n;
	switch (k->kind) {
	case CONFIG_ABS_PATH:
		if (v[0] != '/')
			return perr(p, "%s must be an absolute path, not '%s'", k->name, v);
		return set_string(p, k, v);
	case CONFIG_PATH:
		if (v[0] == '\0')
			return perr(p, "%s is empty", k->name);
		return set_string(p, k, v);
	case CONFIG_NAME:
		if (!valid_name(v))
			return perr(p,
				    "%s '%s' is not a valid name: use 1..%d letters, digits, "
				    "'.', '_' or '-'",
				    k->name, v, P11CAD_NAME_MAX);
		return set_string(p, k, v);
	case CONFIG_TOKEN_LABEL:
		if (v[0] == '\0' || strlen(v) > 32)
			return perr(p, "token label '%s' must be 1..32 bytes", v);
		return set_string(p, k, v);
	case CONFIG_PIN_SOURCE:
		if (strncmp(v, "credential:", 11) == 0 &&
		    (v[11] == '\0' || strchr(v + 11, '/') != NULL))
			return perr(p,
				    "pin_source '%s': write credential:NAME with a credential "
				    "name (no '/')",
				    v);
		if (strncmp(v, "file:", 5) == 0 && v[5] != '/')
			return perr(p, "pin_source '%s': file: needs an absolute path", v);
		return set_string(p, k, v);
	case CONFIG_LISTEN_OPT:
		if (v[0] == '\0')
			return set_string(p, k, v);
		/* fall through */
	case CONFIG_LISTEN: {
		struct p11ca_errmsg lem = {0};
		if (p11cad_listen_parse(v, &addr, &lem) != P11CA_OK)
			return perr(p, "%s", lem.text);
		if (addr.port == 0)
			return perr(p, "listen address '%s': port 0 is not a fixed port", v);
		if (k->kind == CONFIG_LISTEN_OPT)
			return set_string(p, k, v);
		if (!p->listen_given)
			cfg->n_rpc_listen = 0; /* the first listen replaces the default */
		p->listen_given = 1;
		for (size_t i = 0; i < cfg->n_rpc_listen; i++)
			if (strcmp(cfg->rpc_listen[i], v) == 0)
				return perr(p, "listen address '%s' is given twice", v);
		if (cfg->n_rpc_listen == P11CAD_LISTEN_MAX)
			return perr(p, "more than %d listen addresses", P11CAD_LISTEN_MAX);
		if (strlen(v) >= P11CAD_ADDR_MAX)
			return perr(p, "listen address is too long");
		snprintf(cfg->rpc_listen[cfg->n_rpc_listen++], P11CAD_ADDR_MAX, "%s", v);
		return 1;
	}
	case CONFIG_USER: {
		const char *why;
		if (strlen(v) > P11CAD_USER_MAX || !valid_name(v))
			return perr(
				p,
				"%s '%s' is not a user name: use 1..%d letters, digits, '.', '_' "
				"or '-'",
				k->name, v, P11CAD_USER_MAX);
		why = user_problem(v);
		if (why != NULL)
			return perr(p,
				    "%s '%s' cannot run the rpc process: %s (create one with "
				    "useradd --system, or use nobody)",
				    k->name, v, why);
		return set_string(p, k, v);
	}
	case CONFIG_ODD_U64: {
		unsigned long long e = 0;
		const char *c = v;
		for (; *c >= '0' && *c <= '9' && e <= k->max; c++)
			e = e * 10 + (unsigned long long)(*c - '0');
		if (*v == '\0' || *c != '\0' || e < k->min || e > k->max || e % 2 == 0)
			return perr(p, "%s must be an odd whole number from %lu to %lu, not '%s'",
				    k->name, k->min, k->max, v);
		*(uint64_t *)((char *)cfg + k->off) = (uint64_t)e;
		return 1;
	}
	case CONFIG_DAYS:
		return set_days(p, k, v);
	case CONFIG_COMMAND:
		return set_command(p, k, v);
	case CONFIG_EMAIL: {
		char why[300];
		if (config_addr_spec_check(v, why, sizeof(why)) != P11CA_OK)
			return perr(p, "%s: %s", k->name, why);
		return set_string(p, k, v);
	}
	case CONFIG_UINT:
	case CONFIG_SIZE:
		if (!parse_ulong(v, &n) || n < k->min || n > k->max)
			return perr(p, "%s must be a whole number from %lu to %lu, not '%s'",
				    k->name, k->min, k->max, v);
		if (k->kind == CONFIG_UINT)
			*(unsigned *)((char *)cfg + k->off) = (unsigned)n;
		else
			*(size_t *)((char *)cfg + k->off) = (size_t)n;
		return 1;
	}
	return perr(p, "internal: key %s has no kind", k->name);
}

static int on_profile_key(struct parse *p, const char *key, const char *v)
{
	struct p11cad_profile *pr = &p->cfg->profiles[p->profile];
	size_t i = 0;
	while (i < profile_n_keys && strcmp(key, profile_keys[i]) != 0)
		i++;
	if (i == profile_n_keys)
		return perr(p,
			    "unknown key '%s' in [profile %s]; profile keys are description, "
			    "key_usage, key_usage_critical, extended_key_usage, "
			    "extended_key_usage_critical, expires_days, subject, cn_in_san, "
			    "add_crl_url, add_ocsp_url, add_issuer_url, policy, ocsp_no_check, "
			    "tls_feature_status_request, enabled",
			    key, pr->name);
	unsigned *seen = &p->profile_seen[p->profile][i];
	if (*seen != 0 && !profile_key_repeatable(i))
		return perr(p, "'%s' is already set in [profile %s] at line %u", key, pr->name,
			    *seen);
	if (*seen == 0 && profile_key_repeatable(i))
		pr->n_policies = 0; /* the first line replaces a built-in profile's list */
	*seen = p->line;
	char why[300];
	if (profile_key_set(pr, i, v, why, sizeof(why)) != P11CA_OK)
		return perr(p, "%s", why);
	return 1;
}

static int on_role(struct parse *p, const char *fp_text, const char *role_text)
{
	struct p11cad_config *cfg = p->cfg;
	uint8_t fp[RPC_FINGERPRINT_LEN];
	enum rpc_role role;
	struct p11ca_errmsg lem = {0};
	if (rpc_fingerprint_parse(fp_text, fp, &lem) != P11CA_OK)
		return perr(p,
			    "'%s' is not a certificate fingerprint: write the 64 hex digits of "
			    "its SHA-256 without colons (':' separates key and value here)",
			    fp_text);
	if (rpc_role_parse(role_text, &role, &lem) != P11CA_OK)
		return perr(p, "unknown role '%s'; use admin, operator or auditor", role_text);
	char hex[RPC_FINGERPRINT_HEX_SIZE];
	rpc_fingerprint_format(fp, hex);
	for (size_t i = 0; i < cfg->n_roles; i++)
		if (strcmp(cfg->roles[i].fingerprint, hex) == 0)
			return perr(p, "fingerprint %s already has a role at line %u", hex,
				    cfg->roles[i].line);
	if (cfg->n_roles == P11CAD_ROLES_MAX)
		return perr(p, "more than %d roles in [roles]; use roles_file", P11CAD_ROLES_MAX);
	struct p11cad_role_entry *r = &cfg->roles[cfg->n_roles++];
	snprintf(r->fingerprint, sizeof(r->fingerprint), "%s", hex);
	snprintf(r->role, sizeof(r->role), "%s", rpc_role_name(role));
	r->line = p->line;
	return 1;
}

static int on_key(void *user, const char *section, const char *key, const char *v)
{
	(void)section; /* possibly truncated by libinih: the reader tracks it */
	struct parse *p = user;
	if (p->failed)
		return 1;
	switch (p->kind) {
	case SEC_NONE:
		return perr(p, "key '%s' comes before any [section]", key);
	case SEC_BAD:
		return 1; /* the header's error is already recorded */
	case SEC_ROLES:
		return on_role(p, key, v);
	case SEC_PROFILE:
		return on_profile_key(p, key, v);
	case SEC_TABLE:
		break;
	}
	for (size_t i = 0; i < config_n_keys; i++) {
		const struct config_key *k = &config_keys[i];
		if (strcmp(k->section, p->section) != 0 || strcmp(k->name, key) != 0)
			continue;
		if (p->seen[i] != 0 && k->kind != CONFIG_LISTEN)
			return perr(p, "'%s' is already set in [%s] at line %u", key, p->section,
				    p->seen[i]);
		p->seen[i] = p->line;
		return set_table_key(p, k, v);
	}
	return perr(p, "unknown key '%s' in [%s]", key, p->section);
}

/* ---- after the last line ------------------------------------------------------------ */

static enum p11ca_err check_complete(struct parse *p, struct p11ca_errmsg *em)
{
	for (size_t i = 0; i < config_n_keys; i++) {
		const struct config_key *k = &config_keys[i];
		if (k->required && p->seen[i] == 0)
			return p11ca_fail(em, P11CA_E_CONFIG, "%s: [%s] %s is required (%s)",
					  p->name, k->section, k->name,
					  strcmp(k->name, "state_dir") == 0 ? "e.g. /var/lib/p11ca"
					  : strcmp(k->name, "module") == 0
						  ? "e.g. /usr/lib/softhsm/libsofthsm2.so"
						  : "the token label");
	}
	const struct p11cad_config *cfg = p->cfg;
	const char *why = user_problem(cfg->rpc_user); /* the default is checked here */
	if (why != NULL)
		return p11ca_fail(em, P11CA_E_CONFIG,
				  "%s: [rpc] user '%s' cannot run the rpc process: %s; set [rpc] "
				  "user to an unprivileged user",
				  p->name, cfg->rpc_user, why);
	if (p11cad_config_profile(cfg, cfg->default_profile) == NULL) {
		size_t i = 0;
		while (i < config_n_keys && strcmp(config_keys[i].name, "default_profile") != 0)
			i++;
		if (i < config_n_keys && p->seen[i] != 0)
			return p11ca_fail(em, P11CA_E_CONFIG,
					  "%s:%u: default_profile '%s' is not an enabled profile",
					  p->name, p->seen[i], cfg->default_profile);
		return p11ca_fail(em, P11CA_E_CONFIG,
				  "%s: default_profile '%s' is disabled; set [engine] "
				  "default_profile to an enabled profile",
				  p->name, cfg->default_profile);
	}
	return P11CA_OK;
}

enum p11ca_err config_parse_file(FILE *f, const char *name, struct p11cad_config *cfg,
				 struct p11ca_errmsg *em)
{
	struct parse *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory reading %s", name);
	config_set_defaults(cfg);
	p->f = f;
	p->name = name;
	p->cfg = cfg;

	/* Process-wide libinih settings; configs are loaded before any thread starts. Values
	 * may hold paths up to P11CAD_PATH_MAX; an indented line is not a continuation; both
	 * comment characters also start a comment after a blank. */
	ini_max_line = 4096;
	ini_allow_multiline = false;
	ini_inline_comment_prefixes = (char *)";#";

	enum p11ca_err err = P11CA_OK;
	int r = ini_parse_stream(read_line, p, on_key, p);
	if (p->failed) {
		err = p11ca_fail(em, P11CA_E_CONFIG, "%s", p->em.text);
		goto out;
	}
	if (r != 0) {
		p->line = r > 0 ? (unsigned)r : p->line;
		(void)perr(p, "not a 'key = value' line, a [section] header or a comment");
		err = p11ca_fail(em, P11CA_E_CONFIG, "%s", p->em.text);
		goto out;
	}
	if (ferror(f)) {
		err = p11ca_fail(em, P11CA_E_IO, "%s: read error", name);
		goto out;
	}
	err = check_complete(p, em);
out:
	free(p);
	return err;
}

enum p11ca_err p11cad_config_load(const char *path, struct p11cad_config *cfg,
				  struct p11ca_errmsg *em)
{
	if (path == NULL || cfg == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "p11cad_config_load: NULL argument");
	memset(cfg, 0, sizeof(*cfg));
	if (strlen(path) >= sizeof(cfg->path))
		return p11ca_fail(em, P11CA_E_CONFIG, "configuration path is too long");
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return p11ca_fail(em, P11CA_E_CONFIG, "%s: cannot read the configuration: %s%s",
				  path, strerror(errno),
				  errno == ENOENT ? " (p11cad init writes one)" : "");
	enum p11ca_err err = config_parse_file(f, path, cfg, em);
	fclose(f);
	if (err != P11CA_OK) {
		memset(cfg, 0, sizeof(*cfg));
		return err;
	}
	snprintf(cfg->path, sizeof(cfg->path), "%s", path);
	return P11CA_OK;
}

const struct p11cad_profile *p11cad_config_profile(const struct p11cad_config *cfg,
						   const char *name)
{
	if (cfg == NULL || name == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->n_profiles; i++)
		if (strcmp(cfg->profiles[i].name, name) == 0)
			return cfg->profiles[i].enabled ? &cfg->profiles[i] : NULL;
	return NULL;
}

enum p11ca_err p11cad_config_path(const struct p11cad_config *cfg, const char *rel, char *out,
				  struct p11ca_errmsg *em)
{
	if (cfg == NULL || rel == NULL || out == NULL || rel[0] == '\0')
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "p11cad_config_path: empty path");
	int n = rel[0] == '/' ? snprintf(out, P11CAD_PATH_MAX, "%s", rel)
			      : snprintf(out, P11CAD_PATH_MAX, "%s/%s", cfg->state_dir, rel);
	if (n < 0 || n >= P11CAD_PATH_MAX) {
		out[0] = '\0';
		return p11ca_fail(em, P11CA_E_CONFIG,
				  "path '%.40s…' under %s is longer than %d bytes", rel,
				  cfg->state_dir, P11CAD_PATH_MAX - 1);
	}
	return P11CA_OK;
}
