/*
 * appliance/config_internal.h — what config.c, profile.c and config_write.c share: the
 * table of keys (which drives parsing, defaults and the commented file `p11cad init`
 * writes, so the three cannot drift apart) and the profile helpers.
 */
#ifndef P11CA_APPLIANCE_CONFIG_INTERNAL_H
#define P11CA_APPLIANCE_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stdio.h>

#include "appliance/config.h"

enum config_kind {
	CONFIG_PATH,	    /* string; relative to state_dir unless absolute */
	CONFIG_ABS_PATH,    /* string; must be absolute */
	CONFIG_NAME,	    /* [A-Za-z0-9._-], 1..64 */
	CONFIG_TOKEN_LABEL, /* 1..32 bytes (CKA_LABEL of a token) */
	CONFIG_PIN_SOURCE,  /* "", "credential:NAME", "file:/path", or a path */
	CONFIG_LISTEN,	    /* HOST:PORT, repeatable */
	CONFIG_LISTEN_OPT,  /* HOST:PORT or empty */
	CONFIG_UINT,	    /* decimal in [min, max] */
	CONFIG_SIZE,	    /* decimal in [min, max], stored as size_t */
	CONFIG_USER,	    /* an existing user other than root (getpwnam) */
	CONFIG_ODD_U64,	    /* an odd decimal in [min, max], stored as uint64_t */
	CONFIG_DAYS,	    /* [notify] days: comma list, distinct, 1..365, stored descending */
	CONFIG_COMMAND,	    /* "" or words split on blanks, the first an executable's path */
	CONFIG_EMAIL,	    /* an addr-spec (config_addr_spec_check) */
};

struct config_key {
	const char *section;
	const char *name;
	enum config_kind kind;
	size_t off; /* offsetof(struct p11cad_config, …) */
	size_t cap; /* strings: sizeof the field */
	unsigned long min, max;
	int required;
	const char *help; /* one or more lines, written as "# " comments by p11cad init */
};

extern const struct config_key config_keys[];
extern const size_t config_n_keys;

/* The sections in the order the written file has them (without [profile NAME]). */
extern const char *const config_sections[];

/* Every field at its documented default (the state_dir, module and token stay empty). */
void config_set_defaults(struct p11cad_config *cfg);

/* Whether `addr` is an addr-spec this appliance sends to or from: ASCII only, a dot-atom
 * local part of 1..64 octets, '@', a domain of LDH labels (1..63 octets each, at least two
 * labels), at most STORE_EMAIL_MAX (254) octets in all; so no blanks, control characters,
 * quotes, angle brackets or commas (nothing that could smuggle a second recipient or a
 * header). Error: P11CA_E_INVALID_ARG, the reason in why (a sentence naming the part). */
P11CA_MUST_CHECK enum p11ca_err config_addr_spec_check(const char *addr, char *why, size_t why_cap);

/* argv slots of the [notify] command: its words, the recipient, NULL. */
#define CONFIG_NOTIFY_ARGV_MAX 16

/* Split a [notify] command into argv[] (pointers into buf, which receives a copy of cmd;
 * buf_cap >= strlen(cmd) + 1); at most max - 1 words, argv[n] = NULL. Words are separated
 * by blanks (space, tab); there is no quoting. Returns the number of words, -1 when there
 * are too many or the copy does not fit. */
int config_command_split(const char *cmd, char *buf, size_t buf_cap, char **argv, size_t max);

/* Parse an open stream; `name` is the file name used in messages. Defaults first. */
P11CA_MUST_CHECK enum p11ca_err
config_parse_file(FILE *f, const char *name, struct p11cad_config *cfg, struct p11ca_errmsg *em);

/* ---- profile.c --------------------------------------------------------------------- */

/* The built-in profiles (django-ca's): client, server, webserver, enduser, ocsp. */
extern const struct p11cad_profile profile_builtins[];
extern const size_t profile_n_builtins;

/* Comma-separated keyUsage names → X509v3_KU_* bits ("" → 0). On error, *bad receives the
 * offending name (truncated to bad_cap). Error: P11CA_E_CONFIG. */
P11CA_MUST_CHECK enum p11ca_err profile_key_usage_parse(const char *list, uint32_t *out, char *bad,
							size_t bad_cap);

/* Whether `name` may be an extendedKeyUsage: a dotted OID, anyExtendedKeyUsage, or the
 * OpenSSL name of a key purpose (an id-kp OID: serverAuth, OCSPSigning, …); never another
 * object's name (commonName, sha256). */
bool profile_eku_name_ok(const char *name);

/* Comma-separated extendedKeyUsage names (profile_eku_name_ok) or dotted OIDs into p
 * (replacing its list). Error: P11CA_E_CONFIG with the reason in `why`. */
P11CA_MUST_CHECK enum p11ca_err profile_eku_parse(const char *list, struct p11cad_profile *p,
						  char *why, size_t why_cap);

/* The keyUsage bits as a comma list in the names above (for the written file). */
void profile_key_usage_format(uint32_t ku, char *out, size_t cap);

/* The keys of a [profile NAME] section, in the order p11cad init's file shows them. */
#define PROFILE_KEYS_MAX 16
extern const char *const profile_keys[];
extern const size_t profile_n_keys;

/* Whether key i may be given more than once in one section (policy). */
bool profile_key_repeatable(size_t i);

/* A profile called `name` (1..P11CAD_NAME_MAX bytes) at the documented defaults of a new
 * one: enabled, keyUsage critical (and empty), cn_in_san and the add_*_url keys true. */
void profile_init(struct p11cad_profile *p, const char *name);

/* Set key i (an index into profile_keys) of p from its text. subject is checked with
 * x509_name_parse, policy with x509_policy_text_parse (and appended). Error:
 * P11CA_E_CONFIG with the reason, a sentence without FILE:LINE, in why. */
P11CA_MUST_CHECK enum p11ca_err profile_key_set(struct p11cad_profile *p, size_t i, const char *v,
						char *why, size_t why_cap);

#endif
