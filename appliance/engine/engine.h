/*
 * appliance/engine/engine.h — the engine process: the single LMDB writer and the CA logic.
 *
 * The engine serves the rpc process's forwarded requests (rpc/forward.proto), asks the
 * signer for every signature (hsm/signer.h — never hsm/hsm.h), builds every TBS with
 * appliance/x509/x509.h, and reports its state to the parent (appliance/control.proto).
 *
 * Issuance order (docs/appliance.md): validate → build TBS → write the intent (serial, CA,
 * TBS hash, requester) and its audit record in one committed transaction → signer → write
 * the certificate and its audit record in one committed transaction → reply. Write
 * transactions of concurrent requests are grouped into one commit (appliance/engine/
 * commit.h); each reply waits for the commit holding its record.
 */
#ifndef P11CA_APPLIANCE_ENGINE_H
#define P11CA_APPLIANCE_ENGINE_H

#include "appliance/config.h"
#include "common/err.h"
#include "common/log.h"

struct engine_fds {
	int control; /* parent link (engine is the server); -1: none (tests) */
	int rpc;     /* rpc process link (engine is the server); -1: none (init) */
	int signer;  /* signer link (engine is the client); required */
	int stop;    /* becomes readable (SIGTERM's self-pipe) when the engine must stop */
};

/*
 * Open the store (marking intents left by a crash as orphans, audited), wait for the
 * signer, report the state to the parent, and serve until `stop` is readable or a link
 * breaks. On stop: stop taking requests, finish (or cleanly fail) those in flight, commit,
 * close the store, return P11CA_OK. Every fd is taken over and closed.
 * Errors: storage errors at open (fatal), P11CA_E_PROTO* / P11CA_E_IO when a peer broke
 * protocol (the process should exit non-zero so the parent restarts it).
 */
P11CA_MUST_CHECK enum p11ca_err engine_run(const struct p11cad_config *cfg,
					   const struct engine_fds *fds,
					   const struct p11ca_logger *log, struct p11ca_errmsg *em);

#endif
