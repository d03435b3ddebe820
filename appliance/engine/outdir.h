/*
 * appliance/engine/outdir.h — private to appliance/engine/: the files `p11cad init` writes
 * (appliance/engine/outdir.c). Every path is relative to a directory opened and checked
 * once, so a directory swapped in after the check cannot receive a private key.
 */
#ifndef P11CA_APPLIANCE_ENGINE_OUTDIR_H
#define P11CA_APPLIANCE_ENGINE_OUTDIR_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#include "common/err.h"

/* An output directory, opened and checked once. */
struct outdir {
	int fd;
	const char *path; /* for messages */
};

/* mkdir `path` (an existing one is fine) and open it into *d without following a symlink;
 * `what` names it in messages. Refuses a directory another user owns or group/others may
 * write (P11CA_E_PERMISSION); P11CA_E_INVALID_ARG for an empty path, P11CA_E_IO otherwise.
 * Call outdir_close whatever it returns. */
P11CA_MUST_CHECK enum p11ca_err outdir_open(const char *path, const char *what, struct outdir *d,
					    struct p11ca_errmsg *em);

/* Close d's descriptor; safe twice and after a failed outdir_open. */
void outdir_close(struct outdir *d);

/* Whether `name` exists in d (a dangling symlink counts). */
bool outdir_has(const struct outdir *d, const char *name);

/* Write `key` as PEM PKCS#8 to a new file `name` (mode 0600): it appears only complete and
 * fsynced, and never replaces an existing file (P11CA_E_IO says to move it away). */
P11CA_MUST_CHECK enum p11ca_err outdir_key_write(const struct outdir *d, const char *name,
						 EVP_PKEY *key, struct p11ca_errmsg *em);

/* Write public bytes (a certificate) to `name` (mode 0644), atomically replacing any file
 * there. Error: P11CA_E_IO, P11CA_E_INTERNAL (no random bytes for a temporary name). */
P11CA_MUST_CHECK enum p11ca_err outdir_public_write(const struct outdir *d, const char *name,
						    const void *data, size_t len,
						    struct p11ca_errmsg *em);

/* Append "FP_HEX admin" to the roles file at `path` (created 0600) unless a line names
 * fp_hex already, whatever its role. Error: P11CA_E_IO, P11CA_E_NOMEM. */
P11CA_MUST_CHECK enum p11ca_err outdir_roles_ensure(const char *path, const char *fp_hex,
						    struct p11ca_errmsg *em);

#endif
