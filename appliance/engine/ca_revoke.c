/* STUB (E2): ca revoke */
#include "appliance/engine/engine_internal.h"

enum p11ca_err engine_op_ca_revoke(struct engine_call *c, p11ca_v1_Request *req,
			     p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	(void)c;
	(void)req;
	(void)resp;
	return p11ca_fail(em, P11CA_E_INTERNAL, "ca_revoke: STUB, being written");
}

