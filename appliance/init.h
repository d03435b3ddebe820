/*
 * appliance/init.h — `p11cad init`: a configuration (when there is none), the state
 * directory, and — through the engine, with the signer and engine started exactly as the
 * daemon starts them — the management CA, the rpc server's TLS certificate and the first
 * admin credential. Every step keeps what exists: running it twice destroys nothing.
 */
#ifndef P11CA_APPLIANCE_INIT_H
#define P11CA_APPLIANCE_INIT_H

#include <stdio.h>

#include "appliance/config.h"
#include "common/log.h"

struct p11cad_init_args {
	const char *config_path;
	struct p11cad_init_options opts; /* used only when the config is written */
	const char *admin_out;		 /* NULL: STATE_DIR/admin */
	unsigned timeout_ms;		 /* for the engine to get ready; 0: 120 s */
};

/* Run init; what was created or kept goes to `out`, errors to the log. Returns the exit
 * status (sysexits.h). */
int p11cad_init_main(const struct p11cad_init_args *args, const struct p11ca_logger *log,
		     FILE *out);

#endif
