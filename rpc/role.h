/*
 * Roles: what a client may do, decided by the SHA-256 fingerprint of the DER encoding of
 * its TLS client certificate.
 *
 * A certificate that chains to the management CA only proves the client is *somebody* the
 * appliance once enrolled; the role table says who. A fingerprint pins one certificate:
 * re-enrolling a client means adding its new fingerprint, and removing a line revokes its
 * access at the next connection (no session resumption, see rpc/tls.h).
 *
 * The text form, one entry per line (the daemon's config loader passes the same two
 * fields from its INI file to rpc_role_table_add_entry):
 *
 *     # comments and blank lines are ignored
 *     3F:A2:...:9C  admin
 *     3fa2...9c     operator      # 64 hex digits, any case, colons optional
 *
 * The fingerprint is what `openssl x509 -noout -fingerprint -sha256 -in client.crt` prints
 * after the '='. Roles: admin, operator, auditor (any case). A fingerprint may appear once.
 */
#ifndef P11CA_RPC_ROLE_H
#define P11CA_RPC_ROLE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Ordered by privilege, but never compared with < or >: permissions come from the
 * operation table (rpc/op.h), one explicit bit per role. */
enum rpc_role {
	RPC_ROLE_NONE,	   /* authenticated but not in the table: may do nothing */
	RPC_ROLE_AUDITOR,  /* read, audit log */
	RPC_ROLE_OPERATOR, /* sign, revoke, read */
	RPC_ROLE_ADMIN,	   /* everything: CA and key lifecycle, HSM activation */
};

#define RPC_FINGERPRINT_LEN 32
/* Uppercase hex, no colons, NUL-terminated: the form used in logs and audit records. */
#define RPC_FINGERPRINT_HEX_SIZE (2 * RPC_FINGERPRINT_LEN + 1)
/* Entries one table holds; an appliance has a handful of administrators and tools. */
#define RPC_ROLE_TABLE_MAX 1024

struct rpc_role_table; /* opaque */

/* "admin", "operator", "auditor", or "none"; never NULL. */
const char *rpc_role_name(enum rpc_role role);

/* Parse a role name (case-insensitive; "none" is not accepted: it grants nothing, so a
 * line giving it is a mistake). Error: P11CA_E_CONFIG. */
P11CA_MUST_CHECK enum p11ca_err rpc_role_parse(const char *name, enum rpc_role *out,
					       struct p11ca_errmsg *em);

/* Parse 64 hex digits, any case, with or without a colon between each byte.
 * Error: P11CA_E_CONFIG. */
P11CA_MUST_CHECK enum p11ca_err
rpc_fingerprint_parse(const char *text, uint8_t fp[RPC_FINGERPRINT_LEN], struct p11ca_errmsg *em);

void rpc_fingerprint_format(const uint8_t fp[RPC_FINGERPRINT_LEN],
			    char out[RPC_FINGERPRINT_HEX_SIZE]);

/* An empty table. Error: P11CA_E_NOMEM. */
P11CA_MUST_CHECK enum p11ca_err rpc_role_table_new(struct rpc_role_table **out,
						   struct p11ca_errmsg *em);

/* Free the table and set *t to NULL. NULL-safe. */
void rpc_role_table_free(struct rpc_role_table **t);

/* Add one entry. Errors: P11CA_E_CONFIG (RPC_ROLE_NONE or an unknown role, a fingerprint
 * already present, more than RPC_ROLE_TABLE_MAX entries), P11CA_E_INVALID_ARG. */
P11CA_MUST_CHECK enum p11ca_err rpc_role_table_add(struct rpc_role_table *t,
						   const uint8_t fp[RPC_FINGERPRINT_LEN],
						   enum rpc_role role, struct p11ca_errmsg *em);

/* Add one entry from its text fields. Errors: as rpc_role_table_add, plus P11CA_E_CONFIG
 * for a malformed fingerprint or role. */
P11CA_MUST_CHECK enum p11ca_err rpc_role_table_add_entry(struct rpc_role_table *t,
							 const char *fingerprint, const char *role,
							 struct p11ca_errmsg *em);

/* Add every entry of text[0..len) in the line format above; `source` names it in errors
 * ("roles.conf:12: ..."). All or nothing: on error the table is unchanged.
 * Errors: as rpc_role_table_add_entry. */
P11CA_MUST_CHECK enum p11ca_err rpc_role_table_parse(struct rpc_role_table *t, const char *text,
						     size_t len, const char *source,
						     struct p11ca_errmsg *em);

/* The role of a fingerprint; RPC_ROLE_NONE when absent (or t is NULL). Thread-safe on a
 * table no longer being modified. */
enum rpc_role rpc_role_table_lookup(const struct rpc_role_table *t,
				    const uint8_t fp[RPC_FINGERPRINT_LEN]);

size_t rpc_role_table_count(const struct rpc_role_table *t);

#endif
