/*
 * appliance/config.h — p11cad's run-time configuration (one INI file, read with libinih).
 *
 * The parent loads and validates the file before it starts anything; each child loads the
 * same file again after exec (nothing but file descriptors crosses the exec). Unknown
 * sections or keys, bad values and missing required keys stop start-up with
 * "FILE:LINE: what is wrong" (P11CA_E_CONFIG). docs/appliance.md lists every key (man page:
 * docs/p11cad.8); the file `p11cad init` writes carries the same text as comments.
 *
 * Relative paths are relative to state_dir. Sections:
 *   [daemon]   state_dir
 *   [rpc]      listen (repeatable, HOST:PORT), tls_cert, tls_key, client_ca, roles_file,
 *              max_connections, io_timeout_ms, user
 *   [http]     listen (the CRL/OCSP responder's; accepted, served from a later release)
 *   [storage]  path, map_size_mb
 *   [hsm]      module, token (label), pin_source (file path, "credential:NAME", or empty:
 *              wait for `hsm activate`), pool_size, busy_timeout_ms
 *   [engine]   workers, ca_expires_days, cert_expires_days, default_profile,
 *              management_ca, csr_max_bytes, max_sans, rsa_min_bits, rsa_min_exponent
 *   [profile NAME]  key_usage (comma list: digitalSignature, keyEncipherment, …),
 *              key_usage_critical, extended_key_usage (serverAuth, clientAuth, …),
 *              extended_key_usage_critical, expires_days, enabled, description,
 *              subject, cn_in_san, add_crl_url, add_ocsp_url, add_issuer_url,
 *              policy (repeatable: "OID[;cps=URI][;notice=TEXT]"), ocsp_no_check,
 *              tls_feature_status_request
 *   [notify]   days (comma list, default "14, 7, 3, 1"), command (sendmail-compatible
 *              argv, split on blanks, no shell; empty: notifications off), from,
 *              interval_minutes (the schedule; 0: only `notify expiring`)
 *   [roles]    FINGERPRINT = admin|operator|auditor   (also: roles_file, one per line)
 */
#ifndef P11CA_APPLIANCE_CONFIG_H
#define P11CA_APPLIANCE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define P11CAD_PATH_MAX	    1024
#define P11CAD_LISTEN_MAX   4
#define P11CAD_ADDR_MAX	    128 /* "host:port" */
#define P11CAD_NAME_MAX	    64
#define P11CAD_PROFILES_MAX 16
#define P11CAD_EKU_MAX	    8
#define P11CAD_ROLES_MAX    64
#define P11CAD_USER_MAX	    32 /* useradd's limit */
#define P11CAD_POLICIES_MAX 4
#define P11CAD_NOTIFY_DAYS_MAX 8

struct p11cad_profile {
	char name[P11CAD_NAME_MAX + 1];
	bool enabled;
	uint32_t key_usage; /* X509v3_KU_* bits (openssl/x509v3.h); 0: no keyUsage */
	bool key_usage_critical;
	char eku[P11CAD_EKU_MAX][40]; /* OpenSSL short names or dotted OIDs */
	size_t n_eku;
	bool eku_critical;
	unsigned expires_days; /* 0: [engine] cert_expires_days */
	char description[129];
	char subject[257]; /* default subject (x509_name_parse syntax, checked at load); "" */
	bool cn_in_san;	   /* default true */
	bool add_crl_url, add_ocsp_url, add_issuer_url; /* default true: the CA's URLs */
	/* certificatePolicies, x509_policy_text_parse syntax (checked at load). */
	char policies[P11CAD_POLICIES_MAX][256];
	size_t n_policies;
	bool ocsp_no_check;		/* default false (true for the built-in ocsp) */
	bool tls_feature_status_request; /* default false */
};

struct p11cad_role_entry {
	char fingerprint[65]; /* as written; rpc_role_table_add_entry parses it */
	char role[16];
	unsigned line; /* for errors */
};

struct p11cad_config {
	char path[P11CAD_PATH_MAX]; /* the file this came from */

	/* [daemon] */
	char state_dir[P11CAD_PATH_MAX]; /* required; absolute */

	/* [rpc] */
	char rpc_listen[P11CAD_LISTEN_MAX][P11CAD_ADDR_MAX];
	size_t n_rpc_listen;		    /* >= 1 */
	char tls_cert[P11CAD_PATH_MAX];	    /* default tls/server.crt */
	char tls_key[P11CAD_PATH_MAX];	    /* default tls/server.key */
	char client_ca[P11CAD_PATH_MAX];    /* default tls/ca.crt (the management CA) */
	char roles_file[P11CAD_PATH_MAX];   /* default roles */
	unsigned max_connections;	    /* default CONFIG_RPC_MAX_CONNECTIONS */
	unsigned io_timeout_ms;		    /* default CONFIG_RPC_IO_TIMEOUT_MS */
	char rpc_user[P11CAD_USER_MAX + 1]; /* default "nobody"; an existing user, not root */

	/* [http] */
	char http_listen[P11CAD_ADDR_MAX]; /* may be empty */

	/* [storage] */
	char db_path[P11CAD_PATH_MAX]; /* default db */
	size_t map_size_mb;	       /* default CONFIG_STORE_MAP_SIZE_MB */

	/* [hsm] */
	char module[P11CAD_PATH_MAX];	  /* required; absolute */
	char token[33];			  /* required: token label */
	char pin_source[P11CAD_PATH_MAX]; /* empty: wait for `hsm activate` */
	unsigned pool_size;		  /* 0: Kconfig default */
	unsigned busy_timeout_ms;	  /* 0: Kconfig default */

	/* [engine] */
	unsigned workers;	    /* default 16: requests in flight in the engine */
	unsigned ca_expires_days;   /* default 3650 */
	unsigned cert_expires_days; /* default 365 */
	char default_profile[P11CAD_NAME_MAX + 1]; /* default "webserver" */
	char management_ca[P11CAD_NAME_MAX + 1];   /* default "p11ca-management" */
	size_t csr_max_bytes;			   /* default 16384; 256..16384 */
	unsigned max_sans;			   /* default 64; 1..64 */
	unsigned rsa_min_bits;			   /* default 2048; >= 2048 */
	uint64_t rsa_min_exponent;		   /* default 65537; odd, >= 3 */

	/* [notify] */
	unsigned notify_days[P11CAD_NOTIFY_DAYS_MAX]; /* distinct, descending; default 14,7,3,1 */
	size_t n_notify_days;
	char notify_command[P11CAD_PATH_MAX]; /* empty: off; first word an absolute path */
	char notify_from[255];		      /* default "p11ca@" + hostname */
	unsigned notify_interval_minutes;     /* default 60 */

	/* [profile NAME]: the built-in profiles (client, server, webserver, enduser, ocsp)
	 * first, then configured ones; a configured profile with a built-in name replaces it. */
	struct p11cad_profile profiles[P11CAD_PROFILES_MAX];
	size_t n_profiles;

	/* [roles] */
	struct p11cad_role_entry roles[P11CAD_ROLES_MAX];
	size_t n_roles;
};

/* Load and validate `path` into *cfg (zeroed first). Errors: P11CA_E_CONFIG with
 * "PATH:LINE: what is wrong" (or "PATH: …" for a missing required key / unreadable file).
 * Looks [rpc] user up with getpwnam (the user database must be readable: call it before any
 * chroot). */
P11CA_MUST_CHECK enum p11ca_err p11cad_config_load(const char *path, struct p11cad_config *cfg,
						   struct p11ca_errmsg *em);

/* The profile called `name`, or NULL (also for a disabled one). */
const struct p11cad_profile *p11cad_config_profile(const struct p11cad_config *cfg,
						   const char *name);

/* `rel` resolved against state_dir into out[P11CAD_PATH_MAX] (absolute paths unchanged). */
P11CA_MUST_CHECK enum p11ca_err p11cad_config_path(const struct p11cad_config *cfg, const char *rel,
						   char *out, struct p11ca_errmsg *em);

struct p11cad_init_options {
	const char *module, *token, *pin_source, *state_dir, *listen, *http;
};

/* Write a complete, commented configuration to `path` (mode 0640, O_EXCL: an existing file
 * is never touched — P11CA_E_STORAGE_EXISTS). NULL options take the documented defaults.
 * Errors: P11CA_E_CONFIG (an option that would not load), P11CA_E_IO. */
P11CA_MUST_CHECK enum p11ca_err p11cad_config_write(const char *path,
						    const struct p11cad_init_options *opts,
						    struct p11ca_errmsg *em);

#endif
