/* STUB (E1): ca import / edit */
#include "appliance/engine/engine_internal.h"

enum p11ca_err engine_op_ca_import(struct engine_call *c, p11ca_v1_Request *req,
			     p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	(void)c;
	(void)req;
	(void)resp;
	return p11ca_fail(em, P11CA_E_INTERNAL, "ca_import: STUB, being written");
}

enum p11ca_err engine_op_ca_edit(struct engine_call *c, p11ca_v1_Request *req,
			     p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	(void)c;
	(void)req;
	(void)resp;
	return p11ca_fail(em, P11CA_E_INTERNAL, "ca_edit: STUB, being written");
}
