/*
 * The engine's dispatcher: one table {Request tag, handler} beside rpc/op.h's permission
 * table. Every call is re-authorised here (the rpc process authenticates; the engine does
 * not take its word for authorisation), every attempt at an audited operation lands in the
 * audit chain, and every failure becomes a public Status through status.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "appliance/engine/engine_internal.h"
#include "common/secret.h"
#include "hsm/signer.h"
#include "rpc/role.h"

static enum p11ca_err op_health(struct engine_call *c, p11ca_v1_Request *req,
				p11ca_v1_Response *resp, struct p11ca_errmsg *em);
static enum p11ca_err op_hsm_status(struct engine_call *c, p11ca_v1_Request *req,
				    p11ca_v1_Response *resp, struct p11ca_errmsg *em);
static enum p11ca_err op_hsm_activate(struct engine_call *c, p11ca_v1_Request *req,
				      p11ca_v1_Response *resp, struct p11ca_errmsg *em);

struct engine_op {
	pb_size_t tag;
	engine_op_fn fn;
};

// clang-format off
static const struct engine_op ops[] = {
#define OP(name, fn) {p11ca_v1_Request_##name##_tag, fn}
	OP(health,       op_health),
	OP(hsm_status,   op_hsm_status),
	OP(hsm_activate, op_hsm_activate),
	OP(ca_init,      engine_op_ca_init),
	OP(ca_list,      engine_op_ca_list),
	OP(ca_view,      engine_op_ca_view),
	OP(ca_export,    engine_op_ca_export),
	OP(ca_import,    engine_op_ca_import),
	OP(ca_edit,      engine_op_ca_edit),
	OP(ca_revoke,    engine_op_ca_revoke),
	OP(cert_sign,    engine_op_cert_sign),
	OP(cert_view,    engine_op_cert_view),
	OP(cert_list,    engine_op_cert_list),
	OP(cert_export,  engine_op_cert_export),
	OP(cert_revoke,  engine_op_cert_revoke),
	OP(cert_resign,  engine_op_cert_resign),
	OP(cert_import,  engine_op_cert_import),
	OP(cert_watchers, engine_op_cert_watchers),
	OP(crl_get,      engine_op_crl_get),
	OP(profile_list, engine_op_profile_list),
	OP(notify_expiring, engine_op_notify_expiring),
#undef OP
};
// clang-format on

static const struct engine_op *op_find(pb_size_t tag)
{
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (ops[i].tag == tag)
			return &ops[i];
	return NULL;
}

struct audit_job {
	const char *event, *actor, *subject, *details;
};

static enum p11ca_err audit_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	const struct audit_job *j = arg;
	return store_audit_append(txn, j->event, j->actor, j->subject, j->details, NULL, em);
}

enum p11ca_err engine_audit(struct engine *eng, const char *event, const char *actor,
			    const char *subject, const char *details, struct p11ca_errmsg *em)
{
	struct audit_job j = {event, actor, subject, details};
	return commit_run(eng->commit, audit_job_fn, &j, em);
}

static enum rpc_role role_of(p11ca_forward_v1_Role r)
{
	switch (r) {
	case p11ca_forward_v1_Role_ROLE_AUDITOR:
		return RPC_ROLE_AUDITOR;
	case p11ca_forward_v1_Role_ROLE_OPERATOR:
		return RPC_ROLE_OPERATOR;
	case p11ca_forward_v1_Role_ROLE_ADMIN:
		return RPC_ROLE_ADMIN;
	default:
		return RPC_ROLE_NONE;
	}
}

static void call_init(struct engine_call *c, struct engine *eng,
		      const p11ca_forward_v1_ToEngine *in)
{
	memset(c, 0, sizeof(*c));
	c->eng = eng;
	c->role = in->has_caller ? role_of(in->caller.role) : RPC_ROLE_NONE;
	if (in->has_caller) {
		engine_hex_format(in->caller.fingerprint, sizeof(in->caller.fingerprint), c->actor);
		snprintf(c->peer, sizeof(c->peer), "%s", in->caller.peer);
	} else {
		snprintf(c->actor, sizeof(c->actor), "unknown");
	}
}

static void refusal_audit(struct engine *eng, const struct engine_call *c,
			  const p11ca_forward_v1_Refusal *r)
{
	char details[STORE_AUDIT_DETAILS_MAX + 1];
	struct p11ca_errmsg em;
	snprintf(details, sizeof(details), "%s (role %s, peer %s, told %d)", r->reason,
		 rpc_role_name(c->role), c->peer, (int)r->code);
	if (engine_audit(eng, "rpc.refused", c->actor, r->op[0] != '\0' ? r->op : "-", details,
			 &em) != P11CA_OK)
		p11ca_logf(eng->log, LOG_ERR, "engine: cannot audit a refusal: %s",
			   p11ca_errmsg_text(&em));
}

/* The failure of a permitted audited call (or a denied one) in its own record. */
static void failure_audit(struct engine *eng, const struct engine_call *c, const char *op_name,
			  const char *event, const p11ca_v1_Status *st)
{
	char details[STORE_AUDIT_DETAILS_MAX + 1];
	struct p11ca_errmsg em;
	snprintf(details, sizeof(details), "status %d: %s", (int)st->code, st->message);
	if (engine_audit(eng, event, c->actor, op_name, details, &em) != P11CA_OK)
		p11ca_logf(eng->log, LOG_ERR, "engine: cannot audit a failed %s: %s", op_name,
			   p11ca_errmsg_text(&em));
}

/* Whether the caller's client certificate is one the management CA has revoked. The TLS
 * layer only knows the chain; the revocation lives here, so it takes effect with the next
 * request, without a restart. A lookup failure is not a revocation (the certificate may
 * predate the database, e.g. restored from a backup): the role table still applies. */
static bool caller_revoked(struct engine *eng, const p11ca_forward_v1_ToEngine *in,
			   struct p11ca_errmsg *em)
{
	struct store_txn *txn = NULL;
	struct store_ca *ca = NULL;
	struct store_cert *cert = NULL;
	bool revoked = false;
	char hex[2 * STORE_SERIAL_LEN + 1];

	if (!in->has_caller || in->caller.serial.size != STORE_SERIAL_LEN || eng->cfg == NULL)
		return false;
	ca = malloc(sizeof(*ca));
	cert = malloc(sizeof(*cert));
	if (ca != NULL && cert != NULL &&
	    store_txn_begin(eng->st, STORE_TXN_READ, &txn, NULL) == P11CA_OK &&
	    store_ca_get_by_name(txn, eng->cfg->management_ca, ca, NULL) == P11CA_OK &&
	    store_cert_get(txn, ca->id, in->caller.serial.bytes, cert, NULL) == P11CA_OK)
		revoked = cert->revoked;
	store_txn_abort(&txn);
	if (revoked) {
		engine_hex_format(in->caller.serial.bytes, STORE_SERIAL_LEN, hex);
		p11ca_fail(em, P11CA_E_PERMISSION,
			   "the client certificate %s was revoked; ask an admin for a new one",
			   hex);
	}
	free(ca);
	free(cert);
	return revoked;
}

void engine_dispatch(struct engine *eng, p11ca_forward_v1_ToEngine *in,
		     p11ca_forward_v1_FromEngine *out)
{
	struct engine_call c;
	struct p11ca_errmsg em;
	enum p11ca_err err = P11CA_OK;
	call_init(&c, eng, in);
	p11ca_errmsg_clear(&em);

	if (out == NULL) {
		if (in->which_msg == p11ca_forward_v1_ToEngine_refusal_tag)
			refusal_audit(eng, &c, &in->msg.refusal);
		return;
	}
	p11ca_v1_Request *req = &in->msg.request;
	p11ca_v1_Response *resp = &out->response;
	out->has_response = true;
	resp->has_status = true;
	if (in->which_msg != p11ca_forward_v1_ToEngine_request_tag) {
		engine_status_fill(&resp->status, P11CA_E_INVALID_ARG, NULL);
		return;
	}
	resp->request_id = req->request_id;
	c.op = rpc_op_find(req->which_op);
	const struct engine_op *op = op_find(req->which_op);
	const char *name = c.op != NULL ? c.op->name : "-";

	if (c.op == NULL || op == NULL) {
		resp->status.code = p11ca_v1_StatusCode_STATUS_CODE_UNIMPLEMENTED;
		snprintf(resp->status.message, sizeof(resp->status.message),
			 "operation %u is not served by this server (%s): upgrade it",
			 (unsigned)req->which_op, ENGINE_SERVER_VERSION);
		return;
	}
	if (req->api_version != RPC_API_VERSION) {
		err = p11ca_fail(&em, P11CA_E_POLICY,
				 "API version %u is not served: this server speaks version %d",
				 req->api_version, RPC_API_VERSION);
	} else if (caller_revoked(eng, in, &em)) {
		err = P11CA_E_PERMISSION;
		engine_status_fill(&resp->status, err, &em);
		resp->status.code = p11ca_v1_StatusCode_STATUS_CODE_UNAUTHENTICATED;
		failure_audit(eng, &c, name, "rpc.denied", &resp->status);
		goto wipe;
	} else if (!rpc_op_permits(c.op, c.role)) {
		err = p11ca_fail(&em, P11CA_E_PERMISSION,
				 "role %s may not call %s: ask an admin for a role that may",
				 rpc_role_name(c.role), name);
		engine_status_fill(&resp->status, err, &em);
		failure_audit(eng, &c, name, "rpc.denied", &resp->status);
		goto wipe;
	} else {
		err = op->fn(&c, req, resp, &em);
	}
	engine_status_fill(&resp->status, err, &em);
	if (err != P11CA_OK && c.code_override != 0)
		resp->status.code = c.code_override;
	if (err != P11CA_OK) {
		resp->which_result = 0;
		memset(&resp->result, 0, sizeof(resp->result));
		if (c.op->audited && !c.failure_audited)
			failure_audit(eng, &c, name, "rpc.failed", &resp->status);
	} else {
		resp->which_result = req->which_op; /* the Response uses the same numbers */
	}
wipe:
	/* The PIN of an hsm_activate is gone before the reply is sent. */
	if (req->which_op == p11ca_v1_Request_hsm_activate_tag)
		explicit_bzero(&req->op.hsm_activate, sizeof(req->op.hsm_activate));
}

/* ---- appliance and HSM ------------------------------------------------------------------ */

static int count_ca(void *arg, const struct store_ca *ca)
{
	(void)ca;
	(*(uint32_t *)arg)++;
	return 0;
}

static enum p11ca_err op_health(struct engine_call *c, p11ca_v1_Request *req,
				p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	(void)req;
	p11ca_v1_HealthResponse *out = &resp->result.health;
	struct store_txn *txn = NULL;
	out->api_version = RPC_API_VERSION;
	snprintf(out->server_version, sizeof(out->server_version), "%s", ENGINE_SERVER_VERSION);
	out->server_time = engine_now();
	out->uptime_seconds = out->server_time - c->eng->started;
	out->ready = engine_state_get(c->eng) == p11ca_control_v1_EngineState_ENGINE_STATE_READY;
	enum p11ca_err err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = store_ca_list(txn, count_ca, &out->ca_count, em);
	store_txn_abort(&txn);
	return err;
}

static void token_status_fill(const struct engine *eng, const struct signer_status *st,
			      p11ca_v1_TokenStatus *out)
{
	snprintf(out->name, sizeof(out->name), "%s", eng->cfg->token);
	snprintf(out->label, sizeof(out->label), "%s", st->label);
	snprintf(out->manufacturer, sizeof(out->manufacturer), "%s", st->manufacturer);
	snprintf(out->model, sizeof(out->model), "%s", st->model);
	snprintf(out->serial_number, sizeof(out->serial_number), "%s", st->serial_number);
	out->state = (p11ca_v1_TokenState)st->state; /* same numbering */
	out->sessions_open = st->sessions_open;
	out->sessions_busy = st->sessions_busy;
}

static enum p11ca_err op_hsm_status(struct engine_call *c, p11ca_v1_Request *req,
				    p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	(void)req;
	struct signer_status st;
	memset(&st, 0, sizeof(st));
	P11CA_GUARD(signer_status_get(c->eng->signer, &st, em));
	token_status_fill(c->eng, &st, &resp->result.hsm_status.tokens[0]);
	resp->result.hsm_status.tokens_count = 1;
	return P11CA_OK;
}

static enum p11ca_err op_hsm_activate(struct engine_call *c, p11ca_v1_Request *req,
				      p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	p11ca_v1_HsmActivateRequest *r = &req->op.hsm_activate;
	struct p11ca_secret *pin = NULL;
	struct signer_status st;
	enum p11ca_err err;
	memset(&st, 0, sizeof(st));
	if (r->token[0] != '\0' && strcmp(r->token, c->eng->cfg->token) != 0) {
		err = p11ca_fail(em, P11CA_E_STORAGE_NOT_FOUND,
				 "no token '%.32s' is configured: this appliance has '%s'",
				 r->token, c->eng->cfg->token);
		goto out;
	}
	if (r->pin.size == 0) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "an empty PIN: give the token's user PIN");
		goto out;
	}
	err = p11ca_secret_new(sizeof(r->pin.bytes), &pin, em);
	if (err == P11CA_OK)
		err = p11ca_secret_set(pin, r->pin.bytes, r->pin.size, em);
	explicit_bzero(r, sizeof(*r));
	if (err == P11CA_OK)
		err = signer_activate(c->eng->signer, pin, &st, em);
	if (err != P11CA_OK)
		goto out;
	token_status_fill(c->eng, &st, &resp->result.hsm_activate.token);
	resp->result.hsm_activate.has_token = true;
	if (st.state == SIGNER_TOKEN_READY)
		engine_state_set(c->eng, p11ca_control_v1_EngineState_ENGINE_STATE_READY,
				 "token activated: serving");
	/* Audit without the PIN: who activated which token, and the outcome. */
	struct p11ca_errmsg audit_em;
	p11ca_errmsg_clear(&audit_em);
	err = engine_audit(c->eng, "hsm.activate", c->actor, c->eng->cfg->token,
			   st.state == SIGNER_TOKEN_READY ? "logged in" : "not logged in",
			   &audit_em);
	if (err != P11CA_OK)
		/* The login happened whatever the audit says: tell the admin both facts. */
		err = p11ca_fail(em, err,
				 "token %s is activated (%s), but the audit record of it could not "
				 "be written: %s",
				 c->eng->cfg->token,
				 st.state == SIGNER_TOKEN_READY ? "logged in" : "not logged in",
				 p11ca_errmsg_text(&audit_em));
out:
	explicit_bzero(r, sizeof(*r));
	p11ca_secret_free(&pin);
	return err;
}
