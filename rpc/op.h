/*
 * The operation table: one declaration per Request.op member of the v1 contract, with the
 * roles allowed to call it and whether it is audited. It is the single place where
 * authorisation is decided (STYLE.md rule 14); the dispatcher adds handlers beside it.
 *
 * The rpc process checks rpc_op_permits() before forwarding anything. A refusal is
 * answered STATUS_CODE_PERMISSION_DENIED and is always audited, whatever `audited` says:
 * that flag is about successful and failed *permitted* calls.
 */
#ifndef P11CA_RPC_OP_H
#define P11CA_RPC_OP_H

#include <stdbool.h>
#include <stddef.h>

#include <pb.h>

#include "rpc/role.h"

/* The only value of Request.api_version this server speaks. */
#define RPC_API_VERSION 1

#define RPC_ROLE_BIT(role) (1u << (unsigned)(role))

struct rpc_op {
	pb_size_t tag;	  /* p11ca_v1_Request_<name>_tag; the Response result has the same */
	const char *name; /* the oneof member's name in the .proto, for logs and audit */
	unsigned roles;	  /* RPC_ROLE_BIT() of every role allowed; admin is always listed */
	bool audited;	  /* changes state: every attempt lands in the audit chain */
};

/* The entry for a Request.op tag; NULL for 0 (no op) or a tag this build does not know,
 * which the dispatcher answers with STATUS_CODE_UNIMPLEMENTED. */
const struct rpc_op *rpc_op_find(pb_size_t tag);

/* Whether `role` may call `op`. False for a NULL op and for RPC_ROLE_NONE. */
bool rpc_op_permits(const struct rpc_op *op, enum rpc_role role);

/* The table itself, for tests and documentation generators: entries 0..rpc_op_count()-1. */
size_t rpc_op_count(void);
const struct rpc_op *rpc_op_at(size_t i);

#endif
