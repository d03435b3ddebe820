/*
 * rpc/cli/cli.h — the inside of the p11ca admin CLI: one context per run, the command
 * table, the argument parser, the configuration, value parsers and output helpers.
 * Nothing here is a library: these files are linked into p11ca and its tests only.
 *
 * Exit codes follow sysexits.h (docs/cli.md lists them): every handler returns the code
 * the process exits with, after printing one "p11ca: what failed: why — what to do" line
 * on the error stream.
 */
#ifndef P11CA_RPC_CLI_CLI_H
#define P11CA_RPC_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"
#include "rpc/client.h"

/* sysexits.h, spelled out so the table in docs/cli.md and the code read alike. */
enum cli_exit {
	CLI_EX_OK = 0,
	CLI_EX_USAGE = 64,
	CLI_EX_DATAERR = 65,
	CLI_EX_NOINPUT = 66,
	CLI_EX_UNAVAILABLE = 69,
	CLI_EX_SOFTWARE = 70,
	CLI_EX_IOERR = 74,
	CLI_EX_TEMPFAIL = 75,
	CLI_EX_PROTOCOL = 76,
	CLI_EX_NOPERM = 77,
	CLI_EX_CONFIG = 78,
};

/* ---- configuration: flags > environment > ~/.config/p11ca/client.ini ----------------- */

enum cli_conf_key { CLI_CONF_SERVER, CLI_CONF_CERT, CLI_CONF_KEY, CLI_CONF_CACERT, CLI_CONF_N };

struct cli_conf {
	char *value[CLI_CONF_N];	/* owned; NULL when no source set it */
	const char *origin[CLI_CONF_N]; /* "--server", "P11CA_SERVER", "client.ini", for errors */
	char file[4096];		/* the client.ini path looked at ("" when HOME is unset) */
};

/* Fill `conf` from client.ini (a missing file is fine), then the environment, then
 * flags[] (NULL entries are unset). Relative paths in client.ini are taken relative to
 * the file's directory. Errors: P11CA_E_CONFIG (unreadable or malformed file: "file:line:
 * what"), P11CA_E_NOMEM. conf is freed with cli_conf_free on every path. */
P11CA_MUST_CHECK enum p11ca_err
cli_conf_load(struct cli_conf *conf, const char *const flags[CLI_CONF_N], struct p11ca_errmsg *em);
void cli_conf_free(struct cli_conf *conf);
const char *cli_conf_name(enum cli_conf_key k); /* "server", "cert", ... */

/* ---- arguments ----------------------------------------------------------------------- */

#define CLI_MAX_OPTS   56
#define CLI_MAX_POS    4
#define CLI_MAX_REPEAT 128 /* every repeatable option of a command together */

struct cli_opt {
	const char *name; /* without the dashes */
	const char *arg;  /* metavariable ("FILE"); NULL for a flag */
	bool repeat;	  /* may be given several times; cli_arg_list collects them */
	const char *help;
};

struct cli_args {
	const char *val[CLI_MAX_OPTS]; /* last value (or "" for a flag that was given) */
	const char *rep[CLI_MAX_REPEAT];
	unsigned char rep_opt[CLI_MAX_REPEAT]; /* which option (index in cmd->opts) gave rep[i] */
	size_t n_rep;
	const char *pos[CLI_MAX_POS];
	size_t n_pos;
	bool help;
};

struct cli;
struct cli_cmd;

typedef int (*cli_handler)(struct cli *cli, const struct cli_args *a);

struct cli_cmd {
	const char *noun, *verb; /* verb NULL: a command of one word ("status") */
	cli_handler run;
	const char *synopsis; /* positional arguments, e.g. "NAME SUBJECT" */
	size_t n_pos_min, n_pos_max;
	const char *summary; /* one line */
	const char *help;    /* paragraphs: what it does, defaults, output */
	const char *example;
	const struct cli_opt *opts; /* NULL-name terminated */
};

/* The value of option `name` (a flag gives ""), or NULL when absent. */
const char *cli_arg(const struct cli_cmd *cmd, const struct cli_args *a, const char *name);

/* How many times repeatable option `name` was given; with out != NULL, the first `max`
 * values in command-line order are stored there. */
size_t cli_arg_list(const struct cli_cmd *cmd, const struct cli_args *a, const char *name,
		    const char **out, size_t max);

/*
 * Copy every value of repeatable option `name` into a proto repeated string field: dst is
 * the field's first element, elem_size its size, max_count its max_count. Sets *count.
 * Usage error (returned) when there are too many values or one is too long.
 */
int cli_copy_list(struct cli *cli, const struct cli_args *a, const char *name, char *dst,
		  size_t elem_size, size_t max_count, pb_size_t *count);

/* Usage error when options x and y were both given ("--x and --y exclude each other"). */
int cli_exclusive(struct cli *cli, const struct cli_args *a, const char *x, const char *y);

/* Parse argv (after noun and verb) against the command's options and the global ones
 * (which may appear anywhere and are stored in cli). Errors are printed; returns 0 or
 * CLI_EX_USAGE. --help sets a->help and stops. */
int cli_args_parse(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv,
		   struct cli_args *a);

/* Global options, accepted before the noun and after the verb alike. Returns 1 when
 * argv[*i] was one (consuming its value), 0 when it was not, -1 on a usage error. */
int cli_global_opt(struct cli *cli, int argc, char **argv, int *i);

/* The value of a required option, or NULL after printing a usage error (exit 64). */
const char *cli_require(struct cli *cli, const struct cli_args *a, const char *name);

void cli_usage_global(struct cli *cli, FILE *f);
void cli_usage_noun(struct cli *cli, FILE *f, const char *noun);
void cli_usage_cmd(struct cli *cli, FILE *f, const struct cli_cmd *cmd);

/* ---- the run context ---------------------------------------------------------------- */

struct cli {
	FILE *out, *err;
	bool json;
	int timeout_ms;
	const char *flags[CLI_CONF_N]; /* from the command line (borrowed from argv) */
	struct cli_conf conf;
	struct rpc_client *client; /* connected on first use */
	const struct cli_cmd *cmd; /* the command being run, for messages */
};

/* The commands, NULL-terminated tables per file; main.c joins them. */
extern const struct cli_cmd cli_cmds_hsm[];
extern const struct cli_cmd cli_cmds_ca[];
extern const struct cli_cmd cli_cmds_ca_edit[];
extern const struct cli_cmd cli_cmds_cert[];
extern const struct cli_cmd cli_cmds_cert_records[];
extern const struct cli_cmd cli_cmds_crl[];
extern const struct cli_cmd cli_cmds_profile[];
extern const struct cli_cmd cli_cmds_notify[];

/* Print "p11ca: <what>: <why>[ — <todo>]" on the error stream and return `code`. */
int cli_error(struct cli *cli, int code, const char *what, const char *why, const char *todo);
/* The usage error for a value that did not parse: "bad <opt>: <em's reason>". */
int cli_bad_value(struct cli *cli, const char *opt, const struct p11ca_errmsg *em);

/* Connect (once per run) and call. On a transport failure or a non-OK status, prints the
 * error for `what` ("cannot revoke certificate 0A1B") and returns the exit code; 0 when
 * resp holds a result. */
int cli_call(struct cli *cli, const char *what, p11ca_v1_Request *req, p11ca_v1_Response *resp);

/* A request and its response, together ~100 KiB: on the heap, wiped when freed (an
 * HsmActivateRequest holds a PIN). cli_rr_new prints the error itself. */
struct cli_rr {
	p11ca_v1_Request req;
	p11ca_v1_Response resp;
};
struct cli_rr *cli_rr_new(struct cli *cli, pb_size_t op_tag);
void cli_rr_free(struct cli_rr **rr);

/* The exit code for a server status code (docs/cli.md). */
int cli_status_exit(p11ca_v1_StatusCode code);
/* ... and for a local error code (connection, files). */
int cli_err_exit(enum p11ca_err err);

/*
 * The signature algorithm option `name` into *out (untouched when absent). Full names
 * ("ecdsa-sha384", "rsa-sha256" = PKCS#1 v1.5) need nothing else; django-ca's bare hash
 * ("SHA-384") is turned into the algorithm of the signing key: `key` when known, else the
 * key of CA `ca`, looked up with ca view (one RPC, after every other option was checked).
 * Returns 0 or the exit code after printing the error.
 */
int cli_alg_option(struct cli *cli, const struct cli_args *a, const char *name,
		   p11ca_v1_KeyType key, const char *ca, p11ca_v1_SignatureAlgorithm *out);

/* Copy an argument into a bounded proto string; prints a usage error when too long. */
int cli_copy(struct cli *cli, char *dst, size_t dst_size, const char *src, const char *what);

/* ---- shared by the cert commands (cmd_cert.c) ----------------------------------------- */

/* Normalise SERIAL into a request's serial field; usage error (returned) when bad. */
int cli_take_serial(struct cli *cli, const char *in, char *dst, size_t dst_size);
/* Repeatable email option `name` into a watchers field (8 x 255), each address checked. */
int cli_watchers(struct cli *cli, const struct cli_args *a, const char *name, char (*dst)[255],
		 pb_size_t *count);

/* ---- values (values.c) --------------------------------------------------------------- */

/* Normalise a serial as typed: optional "serial=" prefix, colons removed, upper case,
 * 1..40 hex digits. out must hold 41 bytes. P11CA_E_INVALID_ARG with the reason. */
P11CA_MUST_CHECK enum p11ca_err cli_serial_parse(const char *in, char out[41],
						 struct p11ca_errmsg *em);
/* Upper-case hex of every byte as received, no colons; out holds 2 * len + 1 bytes. */
void cli_serial_format(const uint8_t *bytes, size_t len, char *out, size_t out_size);

P11CA_MUST_CHECK enum p11ca_err cli_reason_parse(const char *in, p11ca_v1_RevocationReason *out,
						 struct p11ca_errmsg *em);
const char *cli_reason_name(p11ca_v1_RevocationReason r); /* RFC 5280 name or "unknown" */
P11CA_MUST_CHECK enum p11ca_err cli_key_type_parse(const char *in, p11ca_v1_KeyType *out,
						   struct p11ca_errmsg *em);
const char *cli_key_type_name(p11ca_v1_KeyType t); /* "p256"; "-" unset, "unknown" */
P11CA_MUST_CHECK enum p11ca_err cli_sig_alg_parse(const char *in, p11ca_v1_SignatureAlgorithm *out,
						  struct p11ca_errmsg *em);
const char *cli_sig_alg_name(p11ca_v1_SignatureAlgorithm a);
/* "pem" or "der" (any case). */
P11CA_MUST_CHECK enum p11ca_err cli_format_parse(const char *in, p11ca_v1_Format *out,
						 struct p11ca_errmsg *em);
/* A decimal in 0..max. */
P11CA_MUST_CHECK enum p11ca_err cli_uint_parse(const char *in, uint32_t max, uint32_t *out,
					       struct p11ca_errmsg *em);
const char *cli_ca_status_name(p11ca_v1_CaStatus s);
const char *cli_cert_status_name(p11ca_v1_CertStatus s);
P11CA_MUST_CHECK enum p11ca_err cli_cert_status_parse(const char *in, p11ca_v1_CertStatus *out,
						      struct p11ca_errmsg *em);
const char *cli_token_state_name(p11ca_v1_TokenState s);

/* django-ca's hash-only --algorithm ("SHA-256", "sha384", any case): 256, 384 or 512. */
P11CA_MUST_CHECK enum p11ca_err cli_hash_parse(const char *in, unsigned *bits,
					       struct p11ca_errmsg *em);
/* The algorithm a key signs a hash with: RSA PKCS#1 v1.5 (PSS when `like`, the CA's own,
 * is PSS), ECDSA for EC keys; refused for Ed25519 (no separate hash) and unknown keys. */
P11CA_MUST_CHECK enum p11ca_err cli_sig_alg_for_hash(unsigned bits, p11ca_v1_KeyType key,
						     p11ca_v1_SignatureAlgorithm like,
						     p11ca_v1_SignatureAlgorithm *out,
						     struct p11ca_errmsg *em);
/* RFC 3339 with a zone ("2026-11-20T10:00:00Z", "...+01:00", fractions ignored), a date
 * (midnight UTC) or "@SECONDS": seconds since 1970, > 0. */
P11CA_MUST_CHECK enum p11ca_err cli_time_parse(const char *in, int64_t *out,
					       struct p11ca_errmsg *em);
/* An addr-spec the server can store: one '@', both sides non-empty, no spaces or
 * controls, at most 254 bytes. The server checks it again. */
P11CA_MUST_CHECK enum p11ca_err cli_email_check(const char *in, struct p11ca_errmsg *em);
/* A dotted OID with at least two arcs, first arc 0..2, no leading zeros. */
P11CA_MUST_CHECK enum p11ca_err cli_oid_check(const char *in, struct p11ca_errmsg *em);
/* The type prefix of a SAN ("DNS:", "IP:", "email:", "URI:", "dirname:", "rid:",
 * "otherName:OID;UTF8:v", any case; bare names and IPv6 literals pass) or, with
 * constraint, of a name constraint (a type is required; no rid or otherName). Only the
 * shape: the server validates the value. */
P11CA_MUST_CHECK enum p11ca_err cli_general_name_check(const char *in, bool constraint,
						       struct p11ca_errmsg *em);

/* "2024-05-01T12:00:00Z"; "" for 0 (unset). out holds at least 32 bytes. */
void cli_time_format(int64_t t, char *out, size_t out_size);

/* ---- output (output.c) --------------------------------------------------------------- */

/* A streaming JSON writer: two-space indentation, keys in the order written. */
struct cli_json {
	FILE *f;
	int depth;
	bool first;
};

void cli_json_begin(struct cli_json *j, FILE *f);	/* opens the top-level object */
void cli_json_end(struct cli_json *j);			/* closes it, adds a newline */
void cli_json_obj(struct cli_json *j, const char *key); /* key NULL inside an array */
void cli_json_obj_end(struct cli_json *j);
void cli_json_arr(struct cli_json *j, const char *key);
void cli_json_arr_end(struct cli_json *j);
void cli_json_str(struct cli_json *j, const char *key, const char *v); /* NULL: null */
void cli_json_strn(struct cli_json *j, const char *key, const char *v, size_t len);
void cli_json_int(struct cli_json *j, const char *key, long long v);
void cli_json_uint(struct cli_json *j, const char *key, unsigned long long v);
void cli_json_bool(struct cli_json *j, const char *key, bool v);
void cli_json_time(struct cli_json *j, const char *key, int64_t t); /* 0: null */
void cli_json_hex(struct cli_json *j, const char *key, const uint8_t *b, size_t len);

void cli_json_ca(struct cli_json *j, const char *key, const p11ca_v1_CaSummary *ca);
void cli_json_cert(struct cli_json *j, const char *key, const p11ca_v1_CertSummary *c);
void cli_json_token(struct cli_json *j, const char *key, const p11ca_v1_TokenStatus *t);

/* "key:   value" lines for one summary, in text mode. */
void cli_text_ca(FILE *f, const p11ca_v1_CaSummary *ca);
void cli_text_cert(FILE *f, const p11ca_v1_CertSummary *c);
/* "watchers:  a@x, b@y" ("-" for none). */
void cli_text_watchers(FILE *f, const char (*w)[255], size_t n);

/* A table: rows of n_cols cells, aligned on the widest cell (the last column is not
 * padded). cells[r * n_cols + c]. */
void cli_table(FILE *f, const char *const *head, size_t n_cols, const char *const *cells,
	       size_t n_rows);

/*
 * Deliver exported bytes: to `out_path` atomically (temporary file, fsync, rename; mode
 * 0644), or else to the output stream — but never DER to a terminal. PEM-from-DER
 * conversion is the caller's. Returns 0 or the exit code after printing the error.
 */
int cli_deliver(struct cli *cli, const uint8_t *data, size_t len, bool binary,
		const char *out_path);

/* DER certificate → PEM text (malloc'd, NUL-terminated; *len without the NUL). NULL on
 * failure. The DER is wrapped, not parsed. */
char *cli_der_to_pem(const char *label, const uint8_t *der, size_t len, size_t *pem_len);

/* In a JSON object: the exported bytes as "data" (PEM text) or "data_base64" (DER). */
void cli_json_data(struct cli_json *j, const uint8_t *data, size_t len, bool der);

/* Read a whole file of at most max bytes (malloc'd). Returns 0 or the exit code after
 * printing the error. */
int cli_read_file(struct cli *cli, const char *path, size_t max, uint8_t **data, size_t *len,
		  const char *what);

/* ---- export (export.c) -------------------------------------------------------------- */

/* --format, --bundle and --out: the options of `ca export` and `cert export`. */
extern const struct cli_opt cli_export_opts[];

/* --format (PEM when absent) and --bundle into an export request's fields; refuses DER
 * with --bundle. Returns 0 or the exit code after printing the error. */
int cli_export_format(struct cli *cli, const struct cli_args *a, p11ca_v1_Format *format,
		      bool *bundle);

/* An export's answer: to --out (atomically) or standard output, never DER to a terminal;
 * with --json, {"format", "certificate_count", "out"} after it, plus the data itself when
 * there is no --out. Returns 0 or the exit code after printing the error. */
int cli_export_write(struct cli *cli, const struct cli_args *a, const uint8_t *data, size_t len,
		     uint32_t certificate_count, bool der);

/* ---- entry point ----------------------------------------------------------------------- */

/* The whole CLI, callable in-process: argv[0] is the program name. Returns the exit code. */
int p11ca_main(int argc, char **argv, FILE *out, FILE *err);

#endif
