/*
 * PIN sources. Every PIN lands straight in locked memory (common/secret.h) and is wiped on
 * every path; nothing here logs or formats a PIN.
 */
#ifndef P11CA_HSM_PIN_H
#define P11CA_HSM_PIN_H

#include "common/err.h"
#include "common/secret.h"

/*
 * Read a PIN file. The file must be a regular file (a symlink is refused), owned by the
 * effective user or root, with no group or other permission bits; one trailing "\n" or
 * "\r\n" is removed; an empty PIN or one longer than CONFIG_HSM_PIN_MAX_LEN is refused.
 * Errors: P11CA_E_PIN_SOURCE (the text names the file and the fix, e.g. "chmod 600"),
 * P11CA_E_NOMEM.
 */
P11CA_MUST_CHECK enum p11ca_err hsm_pin_from_file(const char *path, struct p11ca_secret **out,
						  struct p11ca_errmsg *em);

/* Read a PIN from an open descriptor until EOF (a pipe from a key-ceremony tool, say).
 * Same trimming and limits as a file; the descriptor is not closed. */
P11CA_MUST_CHECK enum p11ca_err hsm_pin_from_fd(int fd, struct p11ca_secret **out,
						struct p11ca_errmsg *em);

/*
 * Resolve an RFC 7512 pin-source: "file:/abs/path", "/abs/path", or
 * "credential:NAME" (a systemd credential: $CREDENTIALS_DIRECTORY/NAME).
 * Errors: P11CA_E_PIN_SOURCE, P11CA_E_NOMEM.
 */
P11CA_MUST_CHECK enum p11ca_err
hsm_pin_from_source(const char *pin_source, struct p11ca_secret **out, struct p11ca_errmsg *em);

#endif
