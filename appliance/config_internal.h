/*
 * appliance/config_internal.h — what config.c, profile.c and config_write.c share: the
 * table of keys (which drives parsing, defaults and the commented file `p11cad init`
 * writes, so the three cannot drift apart) and the profile helpers.
 */
#ifndef P11CA_APPLIANCE_CONFIG_INTERNAL_H
#define P11CA_APPLIANCE_CONFIG_INTERNAL_H

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

/* Comma-separated extendedKeyUsage names (OpenSSL short names) or dotted OIDs into p
 * (replacing its list). Error: P11CA_E_CONFIG with the reason in `why`. */
P11CA_MUST_CHECK enum p11ca_err profile_eku_parse(const char *list, struct p11cad_profile *p,
						  char *why, size_t why_cap);

/* The keyUsage bits as a comma list in the names above (for the written file). */
void profile_key_usage_format(uint32_t ku, char *out, size_t cap);

#endif
