#include "rpc/op.h"

#include "rpc/p11ca.pb.h"

#define READ  (RPC_ROLE_BIT(RPC_ROLE_AUDITOR) | RPC_ROLE_BIT(RPC_ROLE_OPERATOR) | ADMIN)
#define ISSUE (RPC_ROLE_BIT(RPC_ROLE_OPERATOR) | ADMIN)
#define ADMIN RPC_ROLE_BIT(RPC_ROLE_ADMIN)

/* Reads are open to every role; issuing and revoking to operators; anything that creates
 * keys or CAs or touches the HSM's login state to admins only. One line per operation, left
 * unformatted, so the table reads as the policy it is. */
// clang-format off
static const struct rpc_op op_table[] = {
#define OP(name, roles, audited) {p11ca_v1_Request_##name##_tag, #name, roles, audited}
	OP(health,       READ,  false),
	OP(hsm_status,   READ,  false),
	OP(hsm_activate, ADMIN, true),
	OP(ca_init,      ADMIN, true),
	OP(ca_list,      READ,  false),
	OP(ca_view,      READ,  false),
	OP(ca_export,    READ,  false),
	OP(ca_import,    ADMIN, true),
	OP(ca_edit,      ADMIN, true),
	OP(ca_revoke,    ADMIN, true),
	OP(cert_sign,    ISSUE, true),
	OP(cert_view,    READ,  false),
	OP(cert_list,    READ,  false),
	OP(cert_export,  READ,  false),
	OP(cert_revoke,  ISSUE, true),
	OP(cert_resign,  ISSUE, true),
	OP(cert_import,  ISSUE, true),
	OP(cert_watchers, ISSUE, true),
	OP(crl_get,      READ,  false),
	OP(profile_list, READ,  false),
	OP(notify_expiring, ISSUE, true),
#undef OP
};
// clang-format on

const struct rpc_op *rpc_op_find(pb_size_t tag)
{
	for (size_t i = 0; i < sizeof(op_table) / sizeof(op_table[0]); i++)
		if (op_table[i].tag == tag)
			return &op_table[i];
	return NULL;
}

bool rpc_op_permits(const struct rpc_op *op, enum rpc_role role)
{
	if (op == NULL || role == RPC_ROLE_NONE)
		return false;
	if (role != RPC_ROLE_AUDITOR && role != RPC_ROLE_OPERATOR && role != RPC_ROLE_ADMIN)
		return false;
	return (op->roles & RPC_ROLE_BIT(role)) != 0;
}

size_t rpc_op_count(void)
{
	return sizeof(op_table) / sizeof(op_table[0]);
}

const struct rpc_op *rpc_op_at(size_t i)
{
	return i < rpc_op_count() ? &op_table[i] : NULL;
}
