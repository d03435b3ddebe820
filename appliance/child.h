/*
 * appliance/child.h — p11cad's three child processes, and the log sink every p11cad
 * process writes through.
 *
 * The parent execs its own binary (/proc/self/exe) as
 *     p11cad --child signer|engine|rpc --config FILE [--init]
 * with these descriptors (everything else above 2 is closed):
 *
 *     signer   3  engine link (the signer is the server)
 *     engine   3  signer link (client)  4  parent control link (server)
 *              5  rpc link (server; absent with --init)
 *     rpc      3  engine link (client)  4, 5, …  the listening sockets, one per [rpc] listen
 *
 * Each child loads the configuration itself (nothing but descriptors crosses exec), makes
 * itself non-dumpable with core files off, and turns SIGTERM/SIGINT into a readable
 * descriptor (the `stop` fd of the engine and rpc). The signer has no stop fd: it exits
 * when the engine's link closes, or at SIGTERM.
 *
 * The rpc child sandboxes itself once its files are read (rpc_server_options.sandbox):
 * chroot into state_dir/empty, [rpc] user, no groups, no capabilities, no-new-privileges;
 * with too little privilege for that, only no-new-privileges and a notice
 * (docs/appliance.md, "Privileges"). The engine and the signer keep the daemon's user.
 */
#ifndef P11CA_APPLIANCE_CHILD_H
#define P11CA_APPLIANCE_CHILD_H

#include <stdbool.h>

#include "common/log.h"

#define CHILD_SIGNER_FD_ENGINE	3
#define CHILD_ENGINE_FD_SIGNER	3
#define CHILD_ENGINE_FD_CONTROL 4
#define CHILD_ENGINE_FD_RPC	5
#define CHILD_RPC_FD_ENGINE	3
#define CHILD_RPC_FD_LISTEN	4

/* One line per event: "p11cad[engine]: warning: …" on a terminal, or "<4>p11cad[engine]: …"
 * when stderr is the journal (JOURNAL_STREAM set), which then keeps the priority. */
struct p11cad_log {
	struct p11ca_logger logger; /* pass &log.logger */
	char tag[16];
	bool journal;
};
void p11cad_log_init(struct p11cad_log *log, const char *tag, int max_priority);

/* Run child `role` ("signer", "engine", "rpc") and return the process's exit status
 * (sysexits.h). `init`: the engine runs for `p11cad init` (no rpc link). */
int p11cad_child_main(const char *role, const char *config_path, bool init);

/* Make this process non-dumpable and turn core files off (the signer holds PINs; every
 * process holds something worth protecting). 0, or -1 with errno. */
int p11cad_harden(void);

#endif
