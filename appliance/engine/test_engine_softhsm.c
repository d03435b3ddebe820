/*
 * The engine end to end on a SoftHSM2 token: engine_run in a thread, signer_serve in
 * another, and a fake rpc process (a channel client) sending ToEngine calls. Covers CA
 * creation (root + intermediate), issuance from an OpenSSL CSR with chain verification,
 * selection by prefix, listing, revocation and the CRL, exports, and the refusals.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "appliance/config.h"
#include "appliance/control.pb.h"
#include "appliance/engine/engine.h"
#include "common/version.h"
#include "hsm/signer.h"
#include "rpc/channel.h"
#include "rpc/forward.pb.h"
#include "rpc/role.h"
#include "storage/store.h"
#include "tests/softhsm/fixture.h"

#define TOKEN "engine-test"
#define PIN   "4321"

#define S(x) p11ca_v1_StatusCode_STATUS_CODE_##x

static struct suite {
	struct softhsm_fixture fx;
	char dir[4200], pin_file[4300], conf_file[4300];
	struct p11cad_config cfg;
	char token_uri[128];
	struct signer_options sopts;
	int signer_fds[2], rpc_fds[2], stop_fds[2], control_fds[2];
	struct chan *control;
	pthread_mutex_t ev_lock;
	int events, last_state;
	bool engine_joined;
	pthread_t signer_thread, engine_thread;
	enum p11ca_err signer_err, engine_err;
	struct p11ca_errmsg signer_em, engine_em;
	struct chan *rpc;
	p11ca_forward_v1_ToEngine *in;
	p11ca_forward_v1_FromEngine *out;
	uint8_t root_der[16384], sub_der[16384];
	size_t root_len, sub_len;
} S;

static void *signer_main(void *arg)
{
	(void)arg;
	S.signer_err = signer_serve(S.signer_fds[0], &S.sopts, &S.signer_em);
	return NULL;
}

static void *engine_main(void *arg)
{
	(void)arg;
	struct engine_fds fds = {
		.control = S.control_fds[0],
		.rpc = S.rpc_fds[0],
		.signer = S.signer_fds[1],
		.stop = S.stop_fds[0],
	};
	S.engine_err = engine_run(&S.cfg, &fds, NULL, &S.engine_em);
	return NULL;
}

/* The parent's end: EngineEvent notifications. */
static enum p11ca_err control_event(void *arg, void *in, void *reply, struct p11ca_errmsg *em)
{
	(void)arg;
	(void)reply;
	(void)em;
	const p11ca_control_v1_ControlFromEngine *m = in;
	if (m->which_msg != p11ca_control_v1_ControlFromEngine_event_tag)
		return P11CA_E_PROTO;
	pthread_mutex_lock(&S.ev_lock);
	S.events++;
	S.last_state = (int)m->msg.event.state;
	pthread_mutex_unlock(&S.ev_lock);
	return P11CA_OK;
}

static int write_text(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int engine_start(void);

/* Runs after the token exists and before the engine starts (keys made outside p11ca). */
static int (*before_engine)(void);

static int suite_start(bool with_pin)
{
	struct p11ca_errmsg em = {0};
	memset(&S, 0, sizeof(S));
	if (softhsm_fixture_setup(&S.fx, TOKEN, "12345678", PIN) != 0)
		return -1;
	snprintf(S.dir, sizeof(S.dir), "%s/state", S.fx.dir);
	snprintf(S.pin_file, sizeof(S.pin_file), "%s/pin", S.fx.dir);
	snprintf(S.conf_file, sizeof(S.conf_file), "%s/p11cad.conf", S.fx.dir);
	if (mkdir(S.dir, 0700) != 0 || write_text(S.pin_file, PIN, 0600) != 0)
		return -1;
	struct p11cad_init_options io = {
		.module = softhsm_module_path(),
		.token = TOKEN,
		.pin_source = with_pin ? S.pin_file : NULL,
		.state_dir = S.dir,
	};
	if (p11cad_config_write(S.conf_file, &io, &em) != P11CA_OK ||
	    p11cad_config_load(S.conf_file, &S.cfg, &em) != P11CA_OK) {
		fprintf(stderr, "config: %s\n", em.text);
		return -1;
	}
	S.cfg.workers = 4;

	snprintf(S.token_uri, sizeof(S.token_uri), "pkcs11:token=%s", TOKEN);
	S.sopts.token.module_path = softhsm_module_path();
	S.sopts.token.uri = S.token_uri;
	S.sopts.pin_source = with_pin ? S.pin_file : NULL;
	pthread_mutex_init(&S.ev_lock, NULL);
	S.in = calloc(1, sizeof(*S.in));
	S.out = calloc(1, sizeof(*S.out));
	if (S.in == NULL || S.out == NULL)
		return -1;
	if (before_engine != NULL && before_engine() != 0)
		return -1;
	return engine_start();
}

/* Start the signer and engine threads and the fake parent and rpc ends (again after
 * engine_stop, on the same state directory). */
static int engine_start(void)
{
	struct p11ca_errmsg em = {0};
	S.engine_joined = false;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, S.signer_fds) != 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, S.rpc_fds) != 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, S.control_fds) != 0 ||
	    pipe2(S.stop_fds, O_CLOEXEC) != 0)
		return -1;
	struct chan_spec ctl = {
		.name = "test-parent→engine",
		.out_fields = p11ca_control_v1_ControlToEngine_fields,
		.out_size = sizeof(p11ca_control_v1_ControlToEngine),
		.in_fields = p11ca_control_v1_ControlFromEngine_fields,
		.in_size = sizeof(p11ca_control_v1_ControlFromEngine),
		.max_frame = p11ca_control_v1_ControlToEngine_size,
		.is_server = 0,
		.handler = control_event,
	};
	if (chan_open(S.control_fds[1], &ctl, &S.control, &em) != P11CA_OK)
		return -1;
	if (pthread_create(&S.signer_thread, NULL, signer_main, NULL) != 0 ||
	    pthread_create(&S.engine_thread, NULL, engine_main, NULL) != 0)
		return -1;
	struct chan_spec cs = {
		.name = "test-rpc→engine",
		.out_fields = p11ca_forward_v1_ToEngine_fields,
		.out_size = sizeof(p11ca_forward_v1_ToEngine),
		.in_fields = p11ca_forward_v1_FromEngine_fields,
		.in_size = sizeof(p11ca_forward_v1_FromEngine),
		.max_frame = p11ca_forward_v1_FromEngine_size,
		.is_server = 0,
	};
	if (chan_open(S.rpc_fds[1], &cs, &S.rpc, &em) != P11CA_OK) {
		fprintf(stderr, "chan_open: %s\n", em.text);
		return -1;
	}
	return 0;
}

static int suite_setup(void **state)
{
	(void)state;
	return suite_start(true);
}

static int pin_setup(void **state)
{
	(void)state;
	return suite_start(false);
}

static void engine_stop(void)
{
	char one = 1;
	if (S.engine_joined)
		return;
	if (write(S.stop_fds[1], &one, 1) != 1)
		abort();
	pthread_join(S.engine_thread, NULL);
	S.engine_joined = true;
	chan_close(&S.rpc);
	chan_close(&S.control);
	pthread_join(S.signer_thread, NULL);
	close(S.stop_fds[1]);
}

static int suite_teardown(void **state)
{
	(void)state;
	engine_stop();
	int rc = 0;
	if (S.engine_err != P11CA_OK) {
		fprintf(stderr, "engine_run: %s: %s\n", p11ca_err_name(S.engine_err),
			S.engine_em.text);
		rc = -1;
	}
	free(S.in);
	free(S.out);
	softhsm_fixture_teardown(&S.fx);
	return rc;
}

/* ---- calls ------------------------------------------------------------------------------ */

static p11ca_v1_Request *req_new(pb_size_t op)
{
	memset(S.in, 0, sizeof(*S.in));
	S.in->has_caller = true;
	memset(S.in->caller.fingerprint, 0xab, sizeof(S.in->caller.fingerprint));
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_ADMIN;
	snprintf(S.in->caller.peer, sizeof(S.in->caller.peer), "127.0.0.1:9");
	S.in->which_msg = p11ca_forward_v1_ToEngine_request_tag;
	S.in->msg.request.api_version = 1;
	S.in->msg.request.request_id = 77;
	S.in->msg.request.which_op = op;
	return &S.in->msg.request;
}

/* Send the request and check the status code; returns the response. */
static p11ca_v1_Response *call_expect(p11ca_v1_StatusCode want)
{
	struct p11ca_errmsg em = {0};
	memset(S.out, 0, sizeof(*S.out));
	assert_int_equal(chan_call(S.rpc, S.in, S.out, 60000, &em), P11CA_OK);
	assert_true(S.out->has_response);
	p11ca_v1_Response *r = &S.out->response;
	assert_true(r->has_status);
	if (r->status.code != want)
		fail_msg("status %d (%s), want %d", (int)r->status.code, r->status.message,
			 (int)want);
	assert_int_equal(r->request_id, 77);
	if (want == S(OK))
		assert_int_equal(r->which_result, S.in->msg.request.which_op);
	else
		assert_true(strlen(r->status.message) > 10);
	return r;
}

static X509 *der_cert(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	assert_non_null(x);
	return x;
}

static void ca_init(const char *name, const char *subject, const char *parent, uint32_t days,
		    uint8_t *der, size_t *len)
{
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_ca_init_tag);
	snprintf(rq->op.ca_init.name, sizeof(rq->op.ca_init.name), "%s", name);
	snprintf(rq->op.ca_init.subject, sizeof(rq->op.ca_init.subject), "%s", subject);
	snprintf(rq->op.ca_init.parent, sizeof(rq->op.ca_init.parent), "%s", parent);
	rq->op.ca_init.key_type = p11ca_v1_KeyType_KEY_TYPE_P256;
	rq->op.ca_init.expires_days = days;
	p11ca_v1_Response *r = call_expect(S(OK));
	const p11ca_v1_CaInitResponse *ci = &r->result.ca_init;
	assert_true(ci->has_ca);
	assert_string_equal(ci->ca.name, name);
	assert_int_equal(ci->ca.status, p11ca_v1_CaStatus_CA_STATUS_ACTIVE);
	assert_int_equal(ci->ca.key_type, p11ca_v1_KeyType_KEY_TYPE_P256);
	assert_int_equal(ci->ca.serial.size, 20);
	memcpy(der, ci->certificate_der.bytes, ci->certificate_der.size);
	*len = ci->certificate_der.size;
}

/* A P-256 CSR for `cn` asking for a DNS and an email SAN: neither may reach the
 * certificate (nothing is copied from a CSR's extensions). */
static size_t make_csr(const char *cn, bool with_san, uint8_t *out, size_t cap)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509_REQ *req = X509_REQ_new();
	assert_non_null(key);
	assert_non_null(req);
	X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
				   (const unsigned char *)cn, -1, -1, 0);
	if (with_san) {
		STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
		X509_EXTENSION *ext =
			X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name,
					    "DNS:csr-only.example.test,email:someone@example.test");
		assert_non_null(ext);
		sk_X509_EXTENSION_push(exts, ext);
		assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
		sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	}
	X509_REQ_set_pubkey(req, key);
	assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
	int n = i2d_X509_REQ(req, NULL);
	assert_true(n > 0 && (size_t)n <= cap);
	unsigned char *p = out;
	i2d_X509_REQ(req, &p);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	return (size_t)n;
}

static p11ca_v1_CertSignRequest *sign_req_san(const char *ca, const char *cn, bool with_san)
{
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_cert_sign_tag);
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_OPERATOR;
	p11ca_v1_CertSignRequest *cs = &rq->op.cert_sign;
	snprintf(cs->ca, sizeof(cs->ca), "%s", ca);
	cs->csr.size = (pb_size_t)make_csr(cn, with_san, cs->csr.bytes, sizeof(cs->csr.bytes));
	cs->expires_days = 10; /* sub lives 30 days */
	snprintf(cs->subject, sizeof(cs->subject), "CN=%s", cn);
	if (with_san) {
		snprintf(cs->sans[0], sizeof(cs->sans[0]), "alt.example.test");
		cs->sans_count = 1;
	}
	return cs;
}

static p11ca_v1_CertSignRequest *sign_req(const char *ca, const char *cn)
{
	return sign_req_san(ca, cn, true);
}

static void serial_hex(const uint8_t *s, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02X", s[i]);
}

/* ---- the flow --------------------------------------------------------------------------- */

static void test_health(void **state)
{
	(void)state;
	req_new(p11ca_v1_Request_health_tag);
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_AUDITOR;
	p11ca_v1_Response *r = call_expect(S(OK));
	assert_true(r->result.health.ready);
	assert_string_equal(r->result.health.server_version, "p11ca " P11CA_VERSION);
	assert_int_equal(r->result.health.ca_count, 0);

	req_new(p11ca_v1_Request_hsm_status_tag);
	r = call_expect(S(OK));
	assert_int_equal(r->result.hsm_status.tokens_count, 1);
	assert_int_equal(r->result.hsm_status.tokens[0].state,
			 p11ca_v1_TokenState_TOKEN_STATE_READY);
	assert_string_equal(r->result.hsm_status.tokens[0].label, TOKEN);
}

static void test_ca_hierarchy(void **state)
{
	(void)state;
	ca_init("root", "CN=Test Root,O=p11ca", "", 3650, S.root_der, &S.root_len);
	ca_init("sub", "CN=Test Sub,O=p11ca", "root", 30, S.sub_der, &S.sub_len);

	X509 *root = der_cert(S.root_der, S.root_len), *sub = der_cert(S.sub_der, S.sub_len);
	assert_int_equal(X509_verify(root, X509_get0_pubkey(root)), 1);
	assert_int_equal(X509_verify(sub, X509_get0_pubkey(root)), 1);
	assert_true(X509_check_ca(sub) > 0);
	X509_free(root);
	X509_free(sub);

	/* Duplicates, bad names, unknown parents and a non-admin are refused. */
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_ca_init_tag);
	snprintf(rq->op.ca_init.name, sizeof(rq->op.ca_init.name), "root");
	snprintf(rq->op.ca_init.subject, sizeof(rq->op.ca_init.subject), "CN=x");
	rq->op.ca_init.key_type = p11ca_v1_KeyType_KEY_TYPE_P256;
	call_expect(S(ALREADY_EXISTS));
	snprintf(rq->op.ca_init.name, sizeof(rq->op.ca_init.name), "bad name!");
	call_expect(S(INVALID_ARGUMENT));
	snprintf(rq->op.ca_init.name, sizeof(rq->op.ca_init.name), "orphan");
	snprintf(rq->op.ca_init.parent, sizeof(rq->op.ca_init.parent), "nosuch");
	call_expect(S(NOT_FOUND));
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_OPERATOR;
	call_expect(S(PERMISSION_DENIED));

	req_new(p11ca_v1_Request_ca_list_tag);
	p11ca_v1_Response *r = call_expect(S(OK));
	assert_int_equal(r->result.ca_list.cas_count, 2);
	assert_string_equal(r->result.ca_list.cas[1].parent, "root");
}

static void test_issue_revoke_crl(void **state)
{
	(void)state;
	p11ca_v1_CertSignRequest *cs = sign_req("sub", "www.example.test");
	p11ca_v1_Response *r = call_expect(S(OK));
	const p11ca_v1_CertSignResponse *sr = &r->result.cert_sign;
	assert_int_equal(sr->cert.status, p11ca_v1_CertStatus_CERT_STATUS_VALID);
	assert_string_equal(sr->cert.ca, "sub");
	assert_string_equal(sr->cert.subject, "CN=www.example.test");
	assert_int_equal(sr->cert.key_type, p11ca_v1_KeyType_KEY_TYPE_P256);
	(void)cs;

	/* The chain verifies with OpenSSL; the SANs are the CN and the request's, never the
	 * CSR's. */
	X509 *root = der_cert(S.root_der, S.root_len), *sub = der_cert(S.sub_der, S.sub_len);
	X509 *leaf = der_cert(sr->certificate_der.bytes, sr->certificate_der.size);
	X509_STORE *ts = X509_STORE_new();
	X509_STORE_add_cert(ts, root);
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	sk_X509_push(untrusted, sub);
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	assert_int_equal(X509_STORE_CTX_init(ctx, ts, leaf, untrusted), 1);
	if (X509_verify_cert(ctx) != 1)
		fail_msg("verify: %s",
			 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	X509_STORE_CTX_free(ctx);
	assert_int_equal(X509_check_host(leaf, "alt.example.test", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(leaf, "www.example.test", 0, 0, NULL), 1);
	assert_int_equal(X509_check_email(leaf, "someone@example.test", 0, 0), 0);
	assert_int_equal(X509_check_host(leaf, "csr-only.example.test", 0, 0, NULL), 0);

	/* View by a prefix of the serial. */
	char hex[41], prefix[12];
	serial_hex(sr->cert.serial.bytes, sr->cert.serial.size, hex);
	snprintf(prefix, sizeof(prefix), "%.10s", hex);
	/* cert_sign summarises from what built the TBS; cert_view parses the stored DER: the
	 * two must agree field for field. */
	const p11ca_v1_CertSummary issued = sr->cert;
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_cert_view_tag);
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_AUDITOR;
	snprintf(rq->op.cert_view.serial, sizeof(rq->op.cert_view.serial), "%s", prefix);
	r = call_expect(S(OK));
	const p11ca_v1_CertSummary *viewed = &r->result.cert_view.cert;
	assert_int_equal(viewed->serial.size, 20);
	assert_memory_equal(viewed->serial.bytes, issued.serial.bytes, 20);
	assert_string_equal(viewed->subject, issued.subject);
	assert_string_equal(viewed->ca, issued.ca);
	assert_string_equal(viewed->profile, issued.profile);
	assert_int_equal(viewed->not_before, issued.not_before);
	assert_int_equal(viewed->not_after, issued.not_after);
	assert_true(issued.not_before != 0 && issued.not_after > issued.not_before);
	assert_int_equal(viewed->key_type, issued.key_type);
	assert_int_equal(viewed->status, issued.status);
	assert_int_equal(viewed->has_revocation, issued.has_revocation);

	rq = req_new(p11ca_v1_Request_cert_list_tag);
	snprintf(rq->op.cert_list.ca, sizeof(rq->op.cert_list.ca), "sub");
	r = call_expect(S(OK));
	assert_int_equal(r->result.cert_list.certs_count, 1);
	assert_int_equal(r->result.cert_list.next_page_token.size, 0);

	/* Revoke: an auditor may not, an operator may, twice is refused. */
	rq = req_new(p11ca_v1_Request_cert_revoke_tag);
	snprintf(rq->op.cert_revoke.serial, sizeof(rq->op.cert_revoke.serial), "%s", hex);
	rq->op.cert_revoke.reason = p11ca_v1_RevocationReason_REVOCATION_REASON_KEY_COMPROMISE;
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_AUDITOR;
	call_expect(S(PERMISSION_DENIED));
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_OPERATOR;
	rq->op.cert_revoke.reason = p11ca_v1_RevocationReason_REVOCATION_REASON_REMOVE_FROM_CRL;
	call_expect(S(INVALID_ARGUMENT));
	rq->op.cert_revoke.reason = p11ca_v1_RevocationReason_REVOCATION_REASON_KEY_COMPROMISE;
	r = call_expect(S(OK));
	assert_int_equal(r->result.cert_revoke.cert.status,
			 p11ca_v1_CertStatus_CERT_STATUS_REVOKED);
	assert_true(r->result.cert_revoke.cert.has_revocation);
	call_expect(S(FAILED_PRECONDITION));

	/* The CRL lists the serial and verifies with the CA key. */
	rq = req_new(p11ca_v1_Request_crl_get_tag);
	snprintf(rq->op.crl_get.ca, sizeof(rq->op.crl_get.ca), "sub");
	rq->op.crl_get.format = p11ca_v1_Format_FORMAT_DER;
	r = call_expect(S(OK));
	assert_int_equal(r->result.crl_get.revoked_count, 1);
	const unsigned char *p = r->result.crl_get.crl.bytes;
	X509_CRL *crl = d2i_X509_CRL(NULL, &p, r->result.crl_get.crl.size);
	assert_non_null(crl);
	assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(sub)), 1);
	X509_REVOKED *rev = NULL;
	assert_int_equal(X509_CRL_get0_by_cert(crl, &rev, leaf), 1);
	assert_true(r->result.crl_get.next_update > r->result.crl_get.this_update);
	X509_CRL_free(crl);
	rq->op.crl_get.scope = p11ca_v1_CrlScope_CRL_SCOPE_DELTA;
	call_expect(S(UNIMPLEMENTED));

	sk_X509_free(untrusted);
	X509_STORE_free(ts);
	X509_free(leaf);
	X509_free(sub);
	X509_free(root);
}

static void test_refusals(void **state)
{
	(void)state;
	/* An auditor may not sign. */
	sign_req("sub", "a.example.test");
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_AUDITOR;
	call_expect(S(PERMISSION_DENIED));
	/* Nor may someone without a role, or with none forwarded. */
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_NONE;
	call_expect(S(PERMISSION_DENIED));
	S.in->has_caller = false;
	call_expect(S(PERMISSION_DENIED));

	/* A CSR that does not parse. */
	p11ca_v1_CertSignRequest *cs = sign_req("sub", "a.example.test");
	cs->csr.bytes[cs->csr.size / 2] ^= 0x55;
	call_expect(S(INVALID_ARGUMENT));

	/* An unknown CA, an unknown profile. */
	cs = sign_req("nosuch", "a.example.test");
	call_expect(S(NOT_FOUND));
	cs = sign_req("sub", "a.example.test");
	snprintf(cs->profile, sizeof(cs->profile), "nosuch");
	call_expect(S(NOT_FOUND));

	/* Past the CA's notAfter (sub lives 30 days): refused, naming the limit. */
	cs = sign_req("sub", "a.example.test");
	cs->expires_days = 60;
	p11ca_v1_Response *r = call_expect(S(INVALID_ARGUMENT));
	assert_non_null(strstr(r->status.message, "at most"));

	/* A subject naming nobody. */
	cs = sign_req_san("sub", "a.example.test", false);
	snprintf(cs->subject, sizeof(cs->subject), "O=Nobody");
	r = call_expect(S(INVALID_ARGUMENT));
	assert_non_null(strstr(r->status.message, "CN"));
	/* A SAN from the request is checked. */
	cs = sign_req("sub", "a.example.test");
	cs->sans_count = 1;
	snprintf(cs->sans[0], sizeof(cs->sans[0]), "DNS:bad..name");
	call_expect(S(INVALID_ARGUMENT));
	p11ca_v1_Request *rq;

	/* An operator may not revoke a CA's certificate (key lifecycle is an admin's). */
	X509 *sub = der_cert(S.sub_der, S.sub_len);
	char sub_serial[64];
	const ASN1_INTEGER *sn = X509_get0_serialNumber(sub);
	serial_hex(sn->data, (size_t)sn->length, sub_serial);
	X509_free(sub);
	rq = req_new(p11ca_v1_Request_cert_revoke_tag);
	snprintf(rq->op.cert_revoke.serial, sizeof(rq->op.cert_revoke.serial), "%s", sub_serial);
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_OPERATOR;
	r = call_expect(S(PERMISSION_DENIED));
	assert_non_null(strstr(r->status.message, "only an admin"));

	/* Wrong API version; an operation this build does not know. */
	req_new(p11ca_v1_Request_health_tag);
	S.in->msg.request.api_version = 2;
	call_expect(S(FAILED_PRECONDITION));
	req_new(99);
	call_expect(S(UNIMPLEMENTED));

	/* Exports: PEM bundle up the chain; DER bundles are refused. */
	rq = req_new(p11ca_v1_Request_ca_export_tag);
	snprintf(rq->op.ca_export.ca, sizeof(rq->op.ca_export.ca), "sub");
	rq->op.ca_export.bundle = true;
	r = call_expect(S(OK));
	assert_int_equal(r->result.ca_export.certificate_count, 2);
	rq->op.ca_export.format = p11ca_v1_Format_FORMAT_DER;
	call_expect(S(INVALID_ARGUMENT));
}

/* After the engine stopped (suite teardown has not run yet: check what it wrote while
 * running through a second, read-only look would need the env; this test runs last and
 * only checks the refusal notification path works without an answer). */
static void test_refusal_notification(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	memset(S.in, 0, sizeof(*S.in));
	S.in->has_caller = true;
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_NONE;
	S.in->which_msg = p11ca_forward_v1_ToEngine_refusal_tag;
	snprintf(S.in->msg.refusal.op, sizeof(S.in->msg.refusal.op), "ca_init");
	S.in->msg.refusal.code = p11ca_v1_StatusCode_STATUS_CODE_PERMISSION_DENIED;
	snprintf(S.in->msg.refusal.reason, sizeof(S.in->msg.refusal.reason), "no role");
	assert_int_equal(chan_notify(S.rpc, S.in, &em), P11CA_OK);
	/* The link still works afterwards. */
	req_new(p11ca_v1_Request_health_tag);
	call_expect(S(OK));
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void write_bytes(const char *path, const uint8_t *b, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, n, f), n);
	fclose(f);
}

/* The openssl CLI agrees: chain, then revocation through the published CRL. */
static void test_openssl_cli(void **state)
{
	(void)state;
	char chain[4400], leaf[4400], crl[4400];
	snprintf(chain, sizeof(chain), "%s/chain.pem", S.fx.dir);
	snprintf(leaf, sizeof(leaf), "%s/leaf.pem", S.fx.dir);
	snprintf(crl, sizeof(crl), "%s/crl.pem", S.fx.dir);

	sign_req("sub", "cli.example.test");
	p11ca_v1_Response *r = call_expect(S(OK));
	char hex[41];
	serial_hex(r->result.cert_sign.cert.serial.bytes, 20, hex);
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_cert_export_tag);
	snprintf(rq->op.cert_export.serial, sizeof(rq->op.cert_export.serial), "%s", hex);
	r = call_expect(S(OK));
	assert_int_equal(r->result.cert_export.certificate_count, 1);
	write_bytes(leaf, r->result.cert_export.data.bytes, r->result.cert_export.data.size);
	rq->op.cert_export.bundle = true;
	r = call_expect(S(OK));
	assert_int_equal(r->result.cert_export.certificate_count, 3);
	rq->op.cert_export.format = p11ca_v1_Format_FORMAT_DER;
	call_expect(S(INVALID_ARGUMENT));

	rq = req_new(p11ca_v1_Request_ca_export_tag);
	snprintf(rq->op.ca_export.ca, sizeof(rq->op.ca_export.ca), "sub");
	rq->op.ca_export.bundle = true;
	r = call_expect(S(OK));
	write_bytes(chain, r->result.ca_export.data.bytes, r->result.ca_export.data.size);
	assert_int_equal(
		sh("SSL_CERT_FILE=/dev/null openssl verify -CAfile %s %s >/dev/null", chain, leaf),
		0);

	rq = req_new(p11ca_v1_Request_cert_revoke_tag);
	snprintf(rq->op.cert_revoke.serial, sizeof(rq->op.cert_revoke.serial), "%s", hex);
	call_expect(S(OK));
	rq = req_new(p11ca_v1_Request_crl_get_tag);
	snprintf(rq->op.crl_get.ca, sizeof(rq->op.crl_get.ca), "sub");
	r = call_expect(S(OK));
	assert_int_equal(r->result.crl_get.revoked_count, 2);
	write_bytes(crl, r->result.crl_get.crl.bytes, r->result.crl_get.crl.size);
	assert_int_equal(sh("openssl crl -in %s -noout -text | grep -q %s", crl, hex), 0);
	/* -crl_check: the leaf is now refused as revoked (exit status 2). */
	assert_int_not_equal(sh("SSL_CERT_FILE=/dev/null openssl verify -crl_check -CAfile %s "
				"-CRLfile %s %s >/dev/null 2>&1",
				chain, crl, leaf),
			     0);
}

/* Paging over every CA (root: its own and sub's certificate; sub: two leaves). */
static void test_list_paging(void **state)
{
	(void)state;
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_cert_list_tag);
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_AUDITOR;
	rq->op.cert_list.limit = 3;
	p11ca_v1_Response *r = call_expect(S(OK));
	assert_int_equal(r->result.cert_list.certs_count, 3);
	assert_string_equal(r->result.cert_list.certs[0].ca, "root");
	assert_string_equal(r->result.cert_list.certs[2].ca, "sub");
	assert_int_not_equal(r->result.cert_list.next_page_token.size, 0);
	uint8_t token[64];
	pb_size_t token_len = r->result.cert_list.next_page_token.size;
	memcpy(token, r->result.cert_list.next_page_token.bytes, token_len);
	char first_sub[41];
	serial_hex(r->result.cert_list.certs[2].serial.bytes, 20, first_sub);

	rq = req_new(p11ca_v1_Request_cert_list_tag);
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_AUDITOR;
	rq->op.cert_list.limit = 3;
	memcpy(rq->op.cert_list.page_token.bytes, token, token_len);
	rq->op.cert_list.page_token.size = token_len;
	r = call_expect(S(OK));
	assert_int_equal(r->result.cert_list.certs_count, 1);
	assert_int_equal(r->result.cert_list.next_page_token.size, 0);
	char second[41];
	serial_hex(r->result.cert_list.certs[0].serial.bytes, 20, second);
	assert_string_not_equal(first_sub, second);

	/* A token from elsewhere is refused; status filters apply. */
	rq->op.cert_list.page_token.size = 5;
	call_expect(S(INVALID_ARGUMENT));
	rq = req_new(p11ca_v1_Request_cert_list_tag);
	snprintf(rq->op.cert_list.ca, sizeof(rq->op.cert_list.ca), "sub");
	rq->op.cert_list.status = p11ca_v1_CertStatus_CERT_STATUS_REVOKED;
	r = call_expect(S(OK));
	assert_int_equal(r->result.cert_list.certs_count, 2);
	rq->op.cert_list.status = p11ca_v1_CertStatus_CERT_STATUS_VALID;
	r = call_expect(S(OK));
	assert_int_equal(r->result.cert_list.certs_count, 0);

	rq = req_new(p11ca_v1_Request_ca_view_tag);
	snprintf(rq->op.ca_view.ca, sizeof(rq->op.ca_view.ca), "sub");
	r = call_expect(S(OK));
	assert_int_equal(r->result.ca_view.certificates_issued, 2);
	assert_int_equal(r->result.ca_view.certificates_revoked, 2);
	assert_true(r->result.ca_view.crl_next_update > 0);
	assert_string_equal(r->result.ca_view.ca.parent, "root");

	/* An empty, fresh CRL is served as stored, not signed again on every call. */
	rq = req_new(p11ca_v1_Request_crl_get_tag);
	snprintf(rq->op.crl_get.ca, sizeof(rq->op.crl_get.ca), "root");
	r = call_expect(S(OK));
	assert_int_equal(r->result.crl_get.revoked_count, 0);
	p11ca_v1_CrlGetResponse_crl_number_t number = r->result.crl_get.crl_number;
	assert_true(number.size > 0);
	r = call_expect(S(OK));
	assert_int_equal(r->result.crl_get.crl_number.size, number.size);
	assert_memory_equal(r->result.crl_get.crl_number.bytes, number.bytes, number.size);
	assert_true(r->result.ca_view.ca.has_path_length == false ||
		    r->result.ca_view.ca.path_length == 0);
}

/* Many issuances at once: every one commits (grouped) and gets its own serial. */
enum { CONC_THREADS = 8, CONC_EACH = 4 };

struct conc {
	pthread_t thread;
	p11ca_forward_v1_ToEngine in;
	p11ca_forward_v1_FromEngine out;
	uint8_t serials[CONC_EACH][20];
	int ok;
};

static void *conc_main(void *arg)
{
	struct conc *c = arg;
	for (int i = 0; i < CONC_EACH; i++) {
		struct p11ca_errmsg em = {0};
		memset(&c->out, 0, sizeof(c->out));
		if (chan_call(S.rpc, &c->in, &c->out, 60000, &em) != P11CA_OK ||
		    c->out.response.status.code != S(OK))
			continue;
		memcpy(c->serials[c->ok++], c->out.response.result.cert_sign.cert.serial.bytes, 20);
	}
	return NULL;
}

static void test_concurrent_issue(void **state)
{
	(void)state;
	struct conc *cs = calloc(CONC_THREADS, sizeof(*cs));
	assert_non_null(cs);
	sign_req("sub", "many.example.test");
	for (int t = 0; t < CONC_THREADS; t++) {
		cs[t].in = *S.in;
		assert_int_equal(pthread_create(&cs[t].thread, NULL, conc_main, &cs[t]), 0);
	}
	for (int t = 0; t < CONC_THREADS; t++)
		pthread_join(cs[t].thread, NULL);
	for (int t = 0; t < CONC_THREADS; t++) {
		assert_int_equal(cs[t].ok, CONC_EACH);
		for (int u = 0; u <= t; u++)
			for (int i = 0; i < CONC_EACH; i++)
				for (int j = 0; j < CONC_EACH; j++)
					if (u != t || i != j)
						assert_memory_not_equal(cs[t].serials[i],
									cs[u].serials[j], 20);
	}
	free(cs);
}

/* Bootstrap into S.fx.dir/{tls,admin,roles} (names relative to S.fx.dir); host is the
 * first server name. */
static void bootstrap_at(const char *tls, const char *admin, const char *roles, const char *host,
			 p11ca_control_v1_BootstrapResponse *out)
{
	p11ca_control_v1_ControlToEngine *m = calloc(1, sizeof(*m));
	p11ca_control_v1_ControlFromEngine *rep = calloc(1, sizeof(*rep));
	assert_non_null(m);
	assert_non_null(rep);
	m->which_msg = p11ca_control_v1_ControlToEngine_bootstrap_tag;
	p11ca_control_v1_BootstrapRequest *b = &m->msg.bootstrap;
	snprintf(b->ca_name, sizeof(b->ca_name), "p11ca-management");
	snprintf(b->ca_subject, sizeof(b->ca_subject), "CN=p11ca management,O=test");
	snprintf(b->key_type, sizeof(b->key_type), "p256");
	snprintf(b->key_label, sizeof(b->key_label), "p11ca-management");
	b->ca_expires_days = 3650;
	b->server_names_count = 2;
	snprintf(b->server_names[0], sizeof(b->server_names[0]), "%s", host);
	snprintf(b->server_names[1], sizeof(b->server_names[1]), "127.0.0.1");
	snprintf(b->tls_dir, sizeof(b->tls_dir), "%.900s/%s", S.fx.dir, tls);
	snprintf(b->admin_out, sizeof(b->admin_out), "%.900s/%s", S.fx.dir, admin);
	snprintf(b->roles_file, sizeof(b->roles_file), "%.900s/%s", S.fx.dir, roles);
	struct p11ca_errmsg em = {0};
	assert_int_equal(chan_call(S.control, m, rep, 60000, &em), P11CA_OK);
	assert_int_equal(rep->which_msg, p11ca_control_v1_ControlFromEngine_bootstrap_tag);
	*out = rep->msg.bootstrap;
	free(m);
	free(rep);
}

static void bootstrap_call(p11ca_control_v1_BootstrapResponse *out)
{
	bootstrap_at("tls", "admin", "roles", "localhost", out);
}

static void test_bootstrap(void **state)
{
	(void)state;
	p11ca_control_v1_BootstrapResponse b;
	bootstrap_call(&b);
	if (b.error != 0)
		fail_msg("bootstrap: %s", b.message);
	assert_true(b.ca_created);
	assert_true(b.server_cert_created);
	assert_true(b.admin_created);
	assert_int_equal(strlen(b.admin_fingerprint), 64);

	/* The management CA's certificates are what p11cad's TLS trusts: an operator may not
	 * get one (it could impersonate the server and collect PINs); an admin may. */
	sign_req("p11ca-management", "evil.example.test");
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_OPERATOR;
	p11ca_v1_Response *denied = call_expect(S(PERMISSION_DENIED));
	assert_non_null(strstr(denied->status.message, "management CA"));
	sign_req("p11ca-management", "tool.example.test");
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_ADMIN;
	p11ca_v1_Response *tool = call_expect(S(OK));
	uint8_t tool_serial[20];
	assert_int_equal(tool->result.cert_sign.cert.serial.size, sizeof(tool_serial));
	memcpy(tool_serial, tool->result.cert_sign.cert.serial.bytes, sizeof(tool_serial));

	/* A client whose certificate is valid works; once revoked, it is refused at once (no
	 * restart), whatever its role, and the refusal is audited. */
	req_new(p11ca_v1_Request_health_tag);
	S.in->caller.serial.size = sizeof(tool_serial);
	memcpy(S.in->caller.serial.bytes, tool_serial, sizeof(tool_serial));
	call_expect(S(OK));
	p11ca_v1_Request *rv = req_new(p11ca_v1_Request_cert_revoke_tag);
	char hex[41];
	serial_hex(tool_serial, sizeof(tool_serial), hex);
	snprintf(rv->op.cert_revoke.serial, sizeof(rv->op.cert_revoke.serial), "%s", hex);
	call_expect(S(OK));
	req_new(p11ca_v1_Request_health_tag);
	S.in->caller.serial.size = sizeof(tool_serial);
	memcpy(S.in->caller.serial.bytes, tool_serial, sizeof(tool_serial));
	p11ca_v1_Response *gone = call_expect(S(UNAUTHENTICATED));
	assert_non_null(strstr(gone->status.message, "revoked"));

	char path[4400];
	struct stat sb;
	snprintf(path, sizeof(path), "%s/tls/server.key", S.fx.dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	snprintf(path, sizeof(path), "%s/admin/admin.key", S.fx.dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(
		sh("cd %s/tls && SSL_CERT_FILE=/dev/null openssl verify -purpose sslserver "
		   "-CAfile ca.crt server.crt >/dev/null",
		   S.fx.dir),
		0);
	assert_int_equal(sh("openssl x509 -in %s/tls/server.crt -noout -ext subjectAltName | grep "
			    "-q 'IP Address:127.0.0.1'",
			    S.fx.dir),
			 0);
	assert_int_equal(sh("cd %s/admin && SSL_CERT_FILE=/dev/null openssl verify -purpose "
			    "sslclient -CAfile ca.crt admin.crt >/dev/null",
			    S.fx.dir),
			 0);
	assert_int_equal(sh("cd %s/admin && openssl x509 -in admin.crt -noout -fingerprint "
			    "-sha256 | tr -d : | grep -q %s",
			    S.fx.dir, b.admin_fingerprint),
			 0);

	/* The roles file line is what rpc/role.h reads: the fingerprint is an admin. */
	char text[1024] = "";
	snprintf(path, sizeof(path), "%s/roles", S.fx.dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	struct rpc_role_table *t = NULL;
	struct p11ca_errmsg em = {0};
	uint8_t fp[32];
	assert_int_equal(rpc_role_table_new(&t, &em), P11CA_OK);
	assert_int_equal(rpc_role_table_parse(t, text, n, "roles", &em), P11CA_OK);
	assert_int_equal(rpc_fingerprint_parse(b.admin_fingerprint, fp, &em), P11CA_OK);
	assert_int_equal(rpc_role_table_lookup(t, fp), RPC_ROLE_ADMIN);
	rpc_role_table_free(&t);

	/* Again: nothing is replaced, the same admin is reported. */
	char first[65];
	snprintf(first, sizeof(first), "%s", b.admin_fingerprint);
	bootstrap_call(&b);
	if (b.error != 0)
		fail_msg("bootstrap again: %s", b.message);
	assert_false(b.ca_created);
	assert_false(b.server_cert_created);
	assert_false(b.admin_created);
	assert_string_equal(b.admin_fingerprint, first);

	/* The management CA has path length 0: no CA may be made under it. */
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_ca_init_tag);
	snprintf(rq->op.ca_init.name, sizeof(rq->op.ca_init.name), "under-mgmt");
	snprintf(rq->op.ca_init.subject, sizeof(rq->op.ca_init.subject), "CN=Under");
	snprintf(rq->op.ca_init.parent, sizeof(rq->op.ca_init.parent), "p11ca-management");
	rq->op.ca_init.key_type = p11ca_v1_KeyType_KEY_TYPE_P256;
	p11ca_v1_Response *r = call_expect(S(FAILED_PRECONDITION));
	assert_non_null(strstr(r->status.message, "path length 0"));

	/* The parent heard the state changes; the last one is READY. */
	pthread_mutex_lock(&S.ev_lock);
	assert_true(S.events >= 2);
	assert_int_equal(S.last_state, p11ca_control_v1_EngineState_ENGINE_STATE_READY);
	pthread_mutex_unlock(&S.ev_lock);
}

static int audit_collect(void *arg, const struct store_audit_entry *e)
{
	char *seen = arg;
	size_t len = strlen(seen);
	snprintf(seen + len, 8192 - len, "%s;", e->event);
	return 0;
}

/* Stop the engine and read what it left: an intact audit chain with every kind of event. */
static void test_zz_stop_and_audit(void **state)
{
	(void)state;
	engine_stop();
	if (S.engine_err != P11CA_OK)
		fail_msg("engine_run: %s", S.engine_em.text);
	char path[4400], seen[8192] = "";
	snprintf(path, sizeof(path), "%s/db", S.dir);
	struct store_options so = {.path = path};
	struct store *st = NULL;
	struct store_txn *txn = NULL;
	struct p11ca_errmsg em = {0};
	uint64_t bad = 1;
	assert_int_equal(store_open(&so, &st, &em), P11CA_OK);
	assert_int_equal(store_txn_begin(st, STORE_TXN_READ, &txn, &em), P11CA_OK);
	assert_int_equal(store_audit_verify(txn, &bad, &em), P11CA_OK);
	assert_int_equal(bad, 0);
	assert_int_equal(store_audit_list(txn, 1, audit_collect, seen, &em), P11CA_OK);
	store_txn_abort(&txn);
	store_close(&st);
	const char *want[] = {"ca.pending;",  "ca.init;",    "cert.intent;", "cert.issue;",
			      "cert.revoke;", "crl.number;", "crl.issue;",   "rpc.denied;",
			      "rpc.failed;",  "rpc.refused;"};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (strstr(seen, want[i]) == NULL)
			fail_msg("no %s in the audit chain: %s", want[i], seen);
}

/* Without a PIN source the engine serves reads and refuses to sign until an admin
 * activates the token; activation makes it READY and tells the parent. */
static void test_needs_pin(void **state)
{
	(void)state;
	req_new(p11ca_v1_Request_health_tag);
	p11ca_v1_Response *r = call_expect(S(OK));
	assert_false(r->result.health.ready);
	req_new(p11ca_v1_Request_hsm_status_tag);
	r = call_expect(S(OK));
	assert_int_equal(r->result.hsm_status.tokens[0].state,
			 p11ca_v1_TokenState_TOKEN_STATE_NEEDS_PIN);
	req_new(p11ca_v1_Request_ca_list_tag);
	call_expect(S(OK));

	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_ca_init_tag);
	snprintf(rq->op.ca_init.name, sizeof(rq->op.ca_init.name), "early");
	snprintf(rq->op.ca_init.subject, sizeof(rq->op.ca_init.subject), "CN=Early");
	rq->op.ca_init.key_type = p11ca_v1_KeyType_KEY_TYPE_P256;
	r = call_expect(S(FAILED_PRECONDITION));
	assert_non_null(strstr(r->status.message, "p11ca hsm activate"));

	rq = req_new(p11ca_v1_Request_hsm_activate_tag);
	memcpy(rq->op.hsm_activate.pin.bytes, PIN, strlen(PIN));
	rq->op.hsm_activate.pin.size = (pb_size_t)strlen(PIN);
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_OPERATOR;
	call_expect(S(PERMISSION_DENIED));
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_ADMIN;
	snprintf(rq->op.hsm_activate.token, sizeof(rq->op.hsm_activate.token), "other");
	call_expect(S(NOT_FOUND));
	rq->op.hsm_activate.token[0] = '\0';
	memcpy(rq->op.hsm_activate.pin.bytes, "0000", 4);
	rq->op.hsm_activate.pin.size = 4;
	r = call_expect(S(FAILED_PRECONDITION));
	assert_null(strstr(r->status.message, "0000"));
	req_new(p11ca_v1_Request_health_tag);
	r = call_expect(S(OK));
	assert_false(r->result.health.ready);

	rq = req_new(p11ca_v1_Request_hsm_activate_tag);
	memcpy(rq->op.hsm_activate.pin.bytes, PIN, strlen(PIN));
	rq->op.hsm_activate.pin.size = (pb_size_t)strlen(PIN);
	r = call_expect(S(OK));
	assert_int_equal(r->result.hsm_activate.token.state, p11ca_v1_TokenState_TOKEN_STATE_READY);
	pthread_mutex_lock(&S.ev_lock);
	assert_int_equal(S.last_state, p11ca_control_v1_EngineState_ENGINE_STATE_READY);
	pthread_mutex_unlock(&S.ev_lock);

	ca_init("late", "CN=Late", "", 365, S.root_der, &S.root_len);
	req_new(p11ca_v1_Request_health_tag);
	r = call_expect(S(OK));
	assert_true(r->result.health.ready);
	assert_int_equal(r->result.health.ca_count, 1);
}

/* ---- repairs: validation before key generation, CRL races, interrupted init ------------- */

/* A CA validity past what X.509 can encode is refused before the HSM makes a key: no
 * PENDING record, no orphan key, so the same name and label work right after. */
static void test_ca_days_refused_before_key(void **state)
{
	(void)state;
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_ca_init_tag);
	snprintf(rq->op.ca_init.name, sizeof(rq->op.ca_init.name), "huge");
	snprintf(rq->op.ca_init.subject, sizeof(rq->op.ca_init.subject), "CN=Huge");
	rq->op.ca_init.key_type = p11ca_v1_KeyType_KEY_TYPE_P256;
	rq->op.ca_init.expires_days = 10000000;
	p11ca_v1_Response *r = call_expect(S(INVALID_ARGUMENT));
	assert_non_null(strstr(r->status.message, "days"));
	rq->op.ca_init.expires_days = 100 * 366 + 1;
	call_expect(S(INVALID_ARGUMENT));
	ca_init("huge", "CN=Huge", "", 100 * 366, S.root_der, &S.root_len);
}

static uint64_t crl_number_of(const p11ca_v1_CrlGetResponse *g)
{
	uint64_t n = 0;
	for (pb_size_t i = 0; i < g->crl_number.size; i++)
		n = n << 8 | g->crl_number.bytes[i];
	return n;
}

static uint64_t crl_get_number(const char *ca)
{
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_crl_get_tag);
	snprintf(rq->op.crl_get.ca, sizeof(rq->op.crl_get.ca), "%s", ca);
	rq->op.crl_get.format = p11ca_v1_Format_FORMAT_DER;
	return crl_number_of(&call_expect(S(OK))->result.crl_get);
}

/* With the engine stopped, store the CA's CRL again under a new number but past its
 * nextUpdate: what a daemon finds after a week without revocations. Returns that number. */
static uint64_t crl_make_stale(const char *ca_name)
{
	char path[4400];
	struct store_options so = {.path = path};
	struct store *st = NULL;
	struct store_txn *txn = NULL;
	struct store_ca *ca = calloc(1, sizeof(*ca));
	struct store_crl crl;
	struct p11ca_errmsg em = {0};
	uint64_t number = 0;
	assert_non_null(ca);
	snprintf(path, sizeof(path), "%s/db", S.dir);
	engine_stop();
	assert_int_equal(store_open(&so, &st, &em), P11CA_OK);
	assert_int_equal(store_txn_begin(st, STORE_TXN_WRITE, &txn, &em), P11CA_OK);
	assert_int_equal(store_ca_get_by_name(txn, ca_name, ca, &em), P11CA_OK);
	assert_int_equal(store_crl_get(txn, ca->id, STORE_CRL_SCOPE_FULL, &crl, &em), P11CA_OK);
	uint8_t *der = malloc(crl.der_len);
	assert_non_null(der);
	memcpy(der, crl.der, crl.der_len);
	int64_t now = (int64_t)time(NULL);
	assert_int_equal(store_crl_number_next(txn, ca->id, &number, &em), P11CA_OK);
	assert_int_equal(store_crl_put(txn, ca->id, STORE_CRL_SCOPE_FULL, number, now - 8 * 86400,
				       now - 86400, der, crl.der_len, &em),
			 P11CA_OK);
	assert_int_equal(store_audit_append(txn, "test.stale", "test", ca_name, "", NULL, &em),
			 P11CA_OK);
	assert_int_equal(store_txn_commit(&txn, &em), P11CA_OK);
	store_close(&st);
	free(der);
	free(ca);
	assert_int_equal(engine_start(), 0);
	return number;
}

enum { CRL_READERS = 8 };

struct crl_reader {
	pthread_t thread;
	p11ca_forward_v1_ToEngine in;
	p11ca_forward_v1_FromEngine out;
	bool ok;
	uint64_t number;
};

static void *crl_reader_main(void *arg)
{
	struct crl_reader *c = arg;
	struct p11ca_errmsg em = {0};
	c->ok = chan_call(S.rpc, &c->in, &c->out, 60000, &em) == P11CA_OK &&
		c->out.response.status.code == S(OK);
	if (c->ok)
		c->number = crl_number_of(&c->out.response.result.crl_get);
	return NULL;
}

/* Eight readers of one stale CRL make one new CRL: one number, one signature. */
static void test_crl_stale_readers(void **state)
{
	(void)state;
	ca_init("crl-race", "CN=CRL race", "", 365, S.root_der, &S.root_len);
	uint64_t first = crl_get_number("crl-race");
	uint64_t stale = crl_make_stale("crl-race");
	assert_true(stale > first);
	struct crl_reader *cs = calloc(CRL_READERS, sizeof(*cs));
	assert_non_null(cs);
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_crl_get_tag);
	snprintf(rq->op.crl_get.ca, sizeof(rq->op.crl_get.ca), "crl-race");
	rq->op.crl_get.format = p11ca_v1_Format_FORMAT_DER;
	for (int t = 0; t < CRL_READERS; t++) {
		cs[t].in = *S.in;
		assert_int_equal(pthread_create(&cs[t].thread, NULL, crl_reader_main, &cs[t]), 0);
	}
	for (int t = 0; t < CRL_READERS; t++)
		pthread_join(cs[t].thread, NULL);
	for (int t = 0; t < CRL_READERS; t++) {
		assert_true(cs[t].ok);
		assert_int_equal(cs[t].number, stale + 1);
	}
	free(cs);
	/* Fresh now: reading again makes nothing new. */
	assert_int_equal(crl_get_number("crl-race"), stale + 1);
}

static void text_file(const char *path, char *text, size_t cap)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(text, 1, cap - 1, f);
	text[n] = '\0';
	fclose(f);
}

static int count_of(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

static void expect_bootstrap_refused(const char *tls, const char *admin, const char *want)
{
	p11ca_control_v1_BootstrapResponse b;
	bootstrap_at(tls, admin, "roles", "localhost", &b);
	if (b.error == 0)
		fail_msg("bootstrap into %s, %s succeeded; want '%s'", tls, admin, want);
	if (strstr(b.message, want) == NULL)
		fail_msg("bootstrap: '%s', want '%s'", b.message, want);
}

/* Directories someone else could write into, or a symlink, never receive a key. */
static void test_bootstrap_unsafe_dirs(void **state)
{
	(void)state;
	char path[4400], link[4400];
	snprintf(path, sizeof(path), "%s/tls-g", S.fx.dir);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(chmod(path, 0770), 0);
	expect_bootstrap_refused("tls-g", "admin-g", "chmod go-w");
	snprintf(path, sizeof(path), "%s/tls-o", S.fx.dir);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(chown(path, 65534, 65534), 0);
	expect_bootstrap_refused("tls-o", "admin-o", "owned by uid 65534");
	snprintf(path, sizeof(path), "%s/tls-real", S.fx.dir);
	snprintf(link, sizeof(link), "%s/tls-link", S.fx.dir);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(symlink(path, link), 0);
	expect_bootstrap_refused("tls-link", "admin-l", "symbolic link");
	/* Nothing was written into any of them. */
	assert_int_equal(sh("test -z \"$(find %s/tls-g %s/tls-o %s/tls-real -mindepth 1)\"",
			    S.fx.dir, S.fx.dir, S.fx.dir),
			 0);
}

/* An init that stopped between its steps is finished by the next one, never doubled. */
static void test_bootstrap_repairs(void **state)
{
	(void)state;
	p11ca_control_v1_BootstrapResponse b;
	char path[4400], text[4096], fp[65];

	/* A host name becomes one commonName, verbatim (an IPv6 literal has `:`s). */
	bootstrap_at("tls", "admin", "roles", "2001:db8::1", &b);
	if (b.error != 0)
		fail_msg("bootstrap: %s", b.message);
	assert_true(b.server_cert_created && b.admin_created);
	snprintf(fp, sizeof(fp), "%s", b.admin_fingerprint);
	assert_int_equal(sh("openssl x509 -in %s/tls/server.crt -noout -subject -nameopt RFC2253 "
			    "| grep -qx 'subject=CN=2001:db8::1'",
			    S.fx.dir),
			 0);
	/* Only the final names: no temporary file is left behind. */
	assert_int_equal(sh("test \"$(ls -A %s/tls | tr '\\n' ' ')\" = 'ca.crt server.crt "
			    "server.key '",
			    S.fx.dir),
			 0);
	snprintf(path, sizeof(path), "%s/roles", S.fx.dir);
	text_file(path, text, sizeof(text));
	assert_int_equal(count_of(text, fp), 1);

	/* Died after admin.crt, before the roles line: the rerun adds it, once. */
	assert_int_equal(write_text(path, "# roles\n", 0600), 0);
	bootstrap_at("tls", "admin", "roles", "2001:db8::1", &b);
	if (b.error != 0)
		fail_msg("bootstrap again: %s", b.message);
	assert_false(b.admin_created);
	assert_string_equal(b.admin_fingerprint, fp);
	text_file(path, text, sizeof(text));
	assert_int_equal(count_of(text, fp), 1);
	assert_non_null(strstr(text, " admin"));
	bootstrap_at("tls", "admin", "roles", "2001:db8::1", &b);
	assert_int_equal(b.error, 0);
	text_file(path, text, sizeof(text));
	assert_int_equal(count_of(text, fp), 1);

	/* A stale server.key without server.crt: refused before a serial is burned. */
	snprintf(path, sizeof(path), "%s/tls/server.crt", S.fx.dir);
	assert_int_equal(unlink(path), 0);
	expect_bootstrap_refused("tls", "admin", "remove the stale server.key");
	snprintf(path, sizeof(path), "%s/tls/server.key", S.fx.dir);
	assert_int_equal(unlink(path), 0);
	bootstrap_at("tls", "admin", "roles", "2001:db8::1", &b);
	if (b.error != 0)
		fail_msg("bootstrap after removing the key: %s", b.message);
	assert_true(b.server_cert_created);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* The new key is the new certificate's. */
	assert_int_equal(sh("cd %s/tls && test \"$(openssl pkey -in server.key -pubout)\" = "
			    "\"$(openssl x509 -in server.crt -noout -pubkey)\"",
			    S.fx.dir),
			 0);
}

/* ---- issue 4: profiles, hierarchy, constraints, import, edit, resign --------------------- */

#define IMPORT_LABEL "outside-ca"

/* A key made outside p11ca, with pkcs11-tool, before the engine starts; and a second pair
 * under one label, so a URI naming that label is ambiguous. */
static int keys_outside(void)
{
	static const char *const cmds[] = {
		"--keypairgen --key-type rsa:2048 --label " IMPORT_LABEL " --id 4f01",
		"--keypairgen --key-type rsa:2048 --label twin --id 4f02",
		"--keypairgen --key-type rsa:2048 --label twin --id 4f03",
	};
	for (size_t i = 0; i < 3; i++)
		if (sh("pkcs11-tool --module %s --login --pin %s %s >/dev/null 2>&1",
		       softhsm_module_path(), PIN, cmds[i]) != 0)
			return -1;
	return 0;
}

static int import_setup(void **state)
{
	(void)state;
	before_engine = keys_outside;
	int rc = suite_start(true);
	before_engine = NULL;
	return rc;
}

static p11ca_v1_CaInitRequest *ca_init_req(const char *name, const char *subject,
					   const char *parent, uint32_t days)
{
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_ca_init_tag);
	p11ca_v1_CaInitRequest *ci = &rq->op.ca_init;
	snprintf(ci->name, sizeof(ci->name), "%s", name);
	snprintf(ci->subject, sizeof(ci->subject), "%s", subject);
	snprintf(ci->parent, sizeof(ci->parent), "%s", parent);
	ci->key_type = p11ca_v1_KeyType_KEY_TYPE_P256;
	ci->expires_days = days;
	return ci;
}

static void string_list(p11ca_v1_StringList *l, const char *value)
{
	snprintf(l->values[l->values_count++], sizeof(l->values[0]), "%s", value);
}

static bool has_url(X509 *x, int nid, const char *want)
{
	bool found = false;
	if (nid == NID_crl_distribution_points) {
		CRL_DIST_POINTS *dps = X509_get_ext_d2i(x, nid, NULL, NULL);
		for (int i = 0; i < sk_DIST_POINT_num(dps) && !found; i++) {
			DIST_POINT *dp = sk_DIST_POINT_value(dps, i);
			GENERAL_NAMES *names = dp->distpoint ? dp->distpoint->name.fullname : NULL;
			for (int k = 0; k < sk_GENERAL_NAME_num(names) && !found; k++) {
				GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, k);
				found = gn->type == GEN_URI &&
					strcmp((char *)gn->d.uniformResourceIdentifier->data,
					       want) == 0;
			}
		}
		CRL_DIST_POINTS_free(dps);
		return found;
	}
	AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(x, NID_info_access, NULL, NULL);
	for (int i = 0; i < sk_ACCESS_DESCRIPTION_num(aia) && !found; i++) {
		ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
		found = OBJ_obj2nid(ad->method) == nid && ad->location->type == GEN_URI &&
			strcmp((char *)ad->location->d.uniformResourceIdentifier->data, want) == 0;
	}
	AUTHORITY_INFO_ACCESS_free(aia);
	return found;
}

static char root4_serial[41];

/* Each built-in profile's keyUsage / extendedKeyUsage as django-ca has them, and the CA's
 * URLs (templates filled in), read back from the DER with OpenSSL. */
static void test_profiles_extensions(void **state)
{
	(void)state;
	p11ca_v1_CaInitRequest *ci = ca_init_req("r4", "CN=Root 4,O=p11ca", "", 3650);
	ci->has_path_length = true;
	ci->path_length = 1;
	ci->has_issued = true;
	ci->issued.has_crl_urls = true;
	string_list(&ci->issued.crl_urls, "http://crl.example.test/{ca_name}.crl");
	ci->issued.has_ocsp_urls = true;
	string_list(&ci->issued.ocsp_urls, "http://ocsp.example.test/{ca_serial}");
	ci->issued.has_issuer_urls = true;
	string_list(&ci->issued.issuer_urls, "http://ca.example.test/{ca_name}.der");
	ci->issue_signature_algorithm =
		p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA384;
	p11ca_v1_Response *r = call_expect(S(OK));
	assert_int_equal(r->result.ca_init.ca.signature_algorithm,
			 p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA384);
	assert_true(r->result.ca_init.ca.enabled);
	serial_hex(r->result.ca_init.ca.serial.bytes, r->result.ca_init.ca.serial.size,
		   root4_serial);
	X509 *root = der_cert(r->result.ca_init.certificate_der.bytes,
			      r->result.ca_init.certificate_der.size);
	assert_int_equal(X509_get_pathlen(root), 1);
	/* The CA's own certificate has none of the URLs it puts into what it issues. */
	assert_int_equal(X509_get_ext_by_NID(root, NID_crl_distribution_points, -1), -1);

	static const struct {
		const char *profile;
		uint32_t ku;
		uint32_t xku;
	} want[] = {
		{"client", KU_DIGITAL_SIGNATURE, XKU_SSL_CLIENT},
		{"server", KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT | KU_KEY_ENCIPHERMENT,
		 XKU_SSL_CLIENT | XKU_SSL_SERVER},
		{"webserver", KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT | KU_KEY_ENCIPHERMENT,
		 XKU_SSL_SERVER},
		{"enduser", KU_DATA_ENCIPHERMENT | KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT,
		 XKU_SSL_CLIENT | XKU_CODE_SIGN | XKU_SMIME},
		{"ocsp", KU_NON_REPUDIATION | KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT,
		 XKU_OCSP_SIGN},
	};
	char crl[128], ocsp[128];
	snprintf(crl, sizeof(crl), "http://crl.example.test/r4.crl");
	snprintf(ocsp, sizeof(ocsp), "http://ocsp.example.test/%s", root4_serial);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		p11ca_v1_CertSignRequest *cs = sign_req("r4", "p.example.test");
		snprintf(cs->profile, sizeof(cs->profile), "%s", want[i].profile);
		r = call_expect(S(OK));
		assert_string_equal(r->result.cert_sign.cert.profile, want[i].profile);
		X509 *x = der_cert(r->result.cert_sign.certificate_der.bytes,
				   r->result.cert_sign.certificate_der.size);
		assert_int_equal(X509_verify(x, X509_get0_pubkey(root)), 1);
		assert_int_equal(X509_get_key_usage(x), want[i].ku);
		assert_int_equal(X509_get_extended_key_usage(x), want[i].xku);
		int at = X509_get_ext_by_NID(x, NID_key_usage, -1);
		assert_true(X509_EXTENSION_get_critical(X509_get_ext(x, at)));
		assert_true(has_url(x, NID_crl_distribution_points, crl));
		/* A responder's own certificate carries OCSPNoCheck instead of an OCSP URL. */
		bool responder = strcmp(want[i].profile, "ocsp") == 0;
		assert_int_equal(has_url(x, NID_ad_OCSP, ocsp), !responder);
		assert_true(has_url(x, NID_ad_ca_issuers, "http://ca.example.test/r4.der"));
		bool nocheck = X509_get_ext_by_NID(x, NID_id_pkix_OCSP_noCheck, -1) >= 0;
		assert_int_equal(nocheck, responder);
		const X509_ALGOR *sig = X509_get0_tbs_sigalg(x);
		assert_int_equal(OBJ_obj2nid(sig->algorithm), NID_ecdsa_with_SHA384);
		X509_free(x);
	}

	/* The request layer: no CRL URL, must-staple, and its own EKU. An operator may only
	 * narrow the profile's usages (webserver has serverAuth only); an admin may widen. */
	p11ca_v1_CertSignRequest *cs = sign_req("r4", "q.example.test");
	cs->has_extensions = true;
	cs->extensions.has_crl_urls = true;
	cs->extensions.has_tls_feature_status_request = true;
	cs->extensions.tls_feature_status_request = true;
	cs->extensions.has_extended_key_usage = true;
	cs->extensions.extended_key_usage.names_count = 1;
	snprintf(cs->extensions.extended_key_usage.names[0], 40, "timeStamping");
	cs->extensions.extended_key_usage.critical = true;
	r = call_expect(S(PERMISSION_DENIED));
	assert_non_null(strstr(r->status.message, "only an admin may widen"));
	S.in->caller.role = p11ca_forward_v1_Role_ROLE_ADMIN;
	r = call_expect(S(OK));
	X509 *x = der_cert(r->result.cert_sign.certificate_der.bytes,
			   r->result.cert_sign.certificate_der.size);
	assert_int_equal(X509_get_ext_by_NID(x, NID_crl_distribution_points, -1), -1);
	assert_true(X509_get_ext_by_NID(x, NID_tlsfeature, -1) >= 0);
	assert_int_equal(X509_get_extended_key_usage(x), XKU_TIMESTAMP);
	X509_free(x);
	/* An Ed25519-style mistake on an EC CA: an RSA algorithm does not fit its key. */
	cs = sign_req("r4", "q.example.test");
	cs->signature_algorithm = p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PSS_SHA256;
	r = call_expect(S(INVALID_ARGUMENT));
	assert_non_null(strstr(r->status.message, "does not fit"));
	X509_free(root);
}

/* root (path length 1) → intermediate → leaf verifies with OpenSSL and GnuTLS; a fourth
 * level is refused; the intermediate ends with its root. */
static void test_three_levels(void **state)
{
	(void)state;
	char chain[4400], leaf[4400], root_pem[4400];
	snprintf(chain, sizeof(chain), "%s/chain4.pem", S.fx.dir);
	snprintf(leaf, sizeof(leaf), "%s/leaf4.pem", S.fx.dir);
	snprintf(root_pem, sizeof(root_pem), "%s/root4.pem", S.fx.dir);

	ca_init_req("i4", "CN=Intermediate 4,O=p11ca", "r4", 9000);
	p11ca_v1_Response *r = call_expect(S(OK));
	assert_true(r->result.ca_init.ca.has_path_length);
	assert_int_equal(r->result.ca_init.ca.path_length, 0);
	int64_t i4_end = r->result.ca_init.ca.not_after;
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_ca_view_tag);
	snprintf(rq->op.ca_view.ca, sizeof(rq->op.ca_view.ca), "r4");
	r = call_expect(S(OK));
	assert_int_equal(i4_end, r->result.ca_view.ca.not_after); /* clamped */
	assert_true(r->result.ca_view.has_settings);
	assert_string_equal(r->result.ca_view.settings.issued.crl_urls.values[0],
			    "http://crl.example.test/{ca_name}.crl");

	/* The fourth level. */
	ca_init_req("l4", "CN=Level 4", "i4", 30);
	r = call_expect(S(FAILED_PRECONDITION));
	assert_non_null(strstr(r->status.message, "path length 0"));
	/* A path length over what the parent allows. */
	p11ca_v1_CaInitRequest *ci = ca_init_req("i4b", "CN=Intermediate 4b", "r4", 30);
	ci->has_path_length = true;
	ci->path_length = 1;
	call_expect(S(INVALID_ARGUMENT));

	p11ca_v1_CertSignRequest *cs = sign_req("i4", "leaf4.example.test");
	cs->expires_days = 30;
	r = call_expect(S(OK));
	X509 *x = der_cert(r->result.cert_sign.certificate_der.bytes,
			   r->result.cert_sign.certificate_der.size);
	FILE *f = fopen(leaf, "w");
	assert_non_null(f);
	PEM_write_X509(f, x);
	fclose(f);
	X509_free(x);
	rq = req_new(p11ca_v1_Request_ca_export_tag);
	snprintf(rq->op.ca_export.ca, sizeof(rq->op.ca_export.ca), "i4");
	rq->op.ca_export.bundle = true;
	r = call_expect(S(OK));
	write_bytes(chain, r->result.ca_export.data.bytes, r->result.ca_export.data.size);
	rq = req_new(p11ca_v1_Request_ca_export_tag);
	snprintf(rq->op.ca_export.ca, sizeof(rq->op.ca_export.ca), "r4");
	r = call_expect(S(OK));
	write_bytes(root_pem, r->result.ca_export.data.bytes, r->result.ca_export.data.size);
	assert_int_equal(sh("SSL_CERT_FILE=/dev/null openssl verify -x509_strict -CAfile %s "
			    "-untrusted %s %s >/dev/null",
			    root_pem, chain, leaf),
			 0);
	assert_int_equal(sh("cat %s %s | certtool --verify-chain >/dev/null 2>&1", leaf, chain), 0);
}

/* A CA with nameConstraints refuses to sign names outside them, and what it would have
 * signed fails `openssl verify` (the refusal is not just ours). */
static void test_name_constraints(void **state)
{
	(void)state;
	p11ca_v1_CaInitRequest *ci = ca_init_req("nc4", "CN=Constrained 4", "r4", 100);
	ci->permitted_names_count = 1;
	snprintf(ci->permitted_names[0], sizeof(ci->permitted_names[0]), "DNS:example.test");
	ci->excluded_names_count = 1;
	snprintf(ci->excluded_names[0], sizeof(ci->excluded_names[0]), "DNS:bad.example.test");
	p11ca_v1_Response *r = call_expect(S(OK));
	X509 *nc = der_cert(r->result.ca_init.certificate_der.bytes,
			    r->result.ca_init.certificate_der.size);
	int at = X509_get_ext_by_NID(nc, NID_name_constraints, -1);
	assert_true(at >= 0);
	assert_true(X509_EXTENSION_get_critical(X509_get_ext(nc, at)));
	X509_free(nc);

	sign_req("nc4", "ok.example.test");
	call_expect(S(OK));
	p11ca_v1_CertSignRequest *cs = sign_req("nc4", "www.example.org");
	r = call_expect(S(FAILED_PRECONDITION));
	assert_non_null(strstr(r->status.message, "www.example.org"));
	cs = sign_req("nc4", "ok.example.test");
	snprintf(cs->sans[0], sizeof(cs->sans[0]), "x.bad.example.test");
	r = call_expect(S(FAILED_PRECONDITION));
	assert_non_null(strstr(r->status.message, "x.bad.example.test"));
	/* A bad subtree is refused before any key exists. */
	ci = ca_init_req("nc5", "CN=Constrained 5", "r4", 100);
	ci->permitted_names_count = 1;
	snprintf(ci->permitted_names[0], sizeof(ci->permitted_names[0]), "IP:10.0.0.1/8");
	call_expect(S(INVALID_ARGUMENT));

	/* What nc4 refused to sign, signed anyway in software with a copy of the constraints,
	 * fails openssl verify: the refusal matches what relying parties enforce. */
	char dir[4400];
	snprintf(dir, sizeof(dir), "%s/nc", S.fx.dir);
	assert_int_equal(
		sh("set -e; mkdir -p %s; cd %s; "
		   "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		   "-keyout ca.key -out ca.pem -subj /CN=NC -days 2 -addext "
		   "basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign "
		   "-addext 'nameConstraints=critical,permitted;DNS:example.test' 2>/dev/null; "
		   "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout l.key "
		   "-out l.csr -subj /CN=www.example.org 2>/dev/null; "
		   "openssl x509 -req -in l.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
		   "-extfile /dev/stdin -out l.pem 2>/dev/null <<EOT\n"
		   "subjectAltName=DNS:www.example.org\nEOT\n",
		   dir, dir),
		0);
	assert_int_not_equal(sh("cd %s && SSL_CERT_FILE=/dev/null openssl verify -CAfile ca.pem "
				"l.pem >/dev/null 2>&1",
				dir),
			     0);
}

/* A self-signed root made in software for the outside key: it is imported as a root whose
 * own issuer lives elsewhere. */
static size_t outside_ca_cert(uint8_t *out, size_t cap, const char *key_id, bool ca)
{
	char pub[4400];
	snprintf(pub, sizeof(pub), "%s/outside-%s.der", S.fx.dir, key_id);
	assert_int_equal(sh("pkcs11-tool --module %s --read-object --type pubkey --id %s -o %s "
			    ">/dev/null 2>&1",
			    softhsm_module_path(), key_id, pub),
			 0);
	FILE *f = fopen(pub, "rb");
	assert_non_null(f);
	EVP_PKEY *key = d2i_PUBKEY_fp(f, NULL);
	fclose(f);
	assert_non_null(key);
	EVP_PKEY *ext_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
				   (const unsigned char *)"Outside CA", -1, -1, 0);
	X509_NAME_add_entry_by_txt(X509_get_issuer_name(x), "CN", MBSTRING_UTF8,
				   (const unsigned char *)"Somewhere Else", -1, -1, 0);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 400L * 86400);
	X509_set_pubkey(x, key);
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
						ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	e = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	assert_true(X509_sign(x, ext_key, EVP_sha256()) > 0);
	int n = i2d_X509(x, NULL);
	assert_true(n > 0 && (size_t)n <= cap);
	unsigned char *p = out;
	i2d_X509(x, &p);
	X509_free(x);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ext_key);
	return (size_t)n;
}

static p11ca_v1_CaImportRequest *import_req(const char *name, const char *uri, const char *key_id,
					    bool ca)
{
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_ca_import_tag);
	p11ca_v1_CaImportRequest *im = &rq->op.ca_import;
	snprintf(im->name, sizeof(im->name), "%s", name);
	snprintf(im->key_uri, sizeof(im->key_uri), "%s", uri);
	im->certificate.size = (pb_size_t)outside_ca_cert(
		im->certificate.bytes, sizeof(im->certificate.bytes), key_id, ca);
	return im;
}

static void test_import(void **state)
{
	(void)state;
	/* Refusals first: a PIN in the URI, no key, an ambiguous label, a key that is not the
	 * certificate's, a certificate that is not a CA's. */
	import_req("out", "pkcs11:object=" IMPORT_LABEL ";pin-value=" PIN, "4f01", true);
	p11ca_v1_Response *r = call_expect(S(INVALID_ARGUMENT));
	assert_non_null(strstr(r->status.message, "PIN"));
	import_req("out", "pkcs11:object=nosuch", "4f01", true);
	call_expect(S(FAILED_PRECONDITION));
	import_req("out", "pkcs11:object=twin", "4f02", true);
	r = call_expect(S(FAILED_PRECONDITION));
	import_req("out", "pkcs11:object=twin;id=%4f%02", "4f01", true);
	r = call_expect(S(INVALID_ARGUMENT));
	assert_non_null(strstr(r->status.message, "differ"));
	import_req("out", "pkcs11:object=" IMPORT_LABEL, "4f01", false);
	r = call_expect(S(INVALID_ARGUMENT));
	assert_non_null(strstr(r->status.message, "CA"));

	p11ca_v1_CaImportRequest *im =
		import_req("out", "pkcs11:object=" IMPORT_LABEL, "4f01", true);
	snprintf(im->default_profile, sizeof(im->default_profile), "client");
	uint8_t ca_der[4096];
	size_t ca_len = im->certificate.size;
	memcpy(ca_der, im->certificate.bytes, ca_len);
	r = call_expect(S(OK));
	assert_int_equal(r->result.ca_import.ca.status, p11ca_v1_CaStatus_CA_STATUS_ACTIVE);
	assert_int_equal(r->result.ca_import.ca.key_type, p11ca_v1_KeyType_KEY_TYPE_RSA2048);
	assert_string_equal(r->result.ca_import.ca.parent, "");
	/* The same certificate twice is refused. */
	import_req("out2", "pkcs11:object=" IMPORT_LABEL, "4f01", true);
	call_expect(S(ALREADY_EXISTS));

	/* Issuance from it: the token key signs, the signer accepts the imported certificate
	 * as the issuer, and the leaf verifies against it (the CA's default profile). */
	p11ca_v1_CertSignRequest *cs = sign_req("out", "imp.example.test");
	cs->expires_days = 30;
	r = call_expect(S(OK));
	assert_string_equal(r->result.cert_sign.cert.profile, "client");
	X509 *leaf = der_cert(r->result.cert_sign.certificate_der.bytes,
			      r->result.cert_sign.certificate_der.size);
	X509 *ca = der_cert(ca_der, ca_len);
	assert_int_equal(X509_verify(leaf, X509_get0_pubkey(ca)), 1);
	assert_int_equal(X509_check_issued(ca, leaf), X509_V_OK);
	X509_free(leaf);
	X509_free(ca);
	/* Its first CRL exists (signed by the token key at import). */
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_crl_get_tag);
	snprintf(rq->op.crl_get.ca, sizeof(rq->op.crl_get.ca), "out");
	call_expect(S(OK));
}

/* ca edit: enabled, default profile, issued extensions, algorithm. */
static void test_edit(void **state)
{
	(void)state;
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_ca_edit_tag);
	p11ca_v1_CaEditRequest *ed = &rq->op.ca_edit;
	snprintf(ed->ca, sizeof(ed->ca), "i4");
	ed->has_enabled = true;
	ed->enabled = false;
	p11ca_v1_Response *r = call_expect(S(OK));
	assert_false(r->result.ca_edit.ca.enabled);
	assert_int_equal(r->result.ca_edit.ca.status, p11ca_v1_CaStatus_CA_STATUS_ACTIVE);
	sign_req("i4", "off.example.test");
	r = call_expect(S(FAILED_PRECONDITION));
	assert_non_null(strstr(r->status.message, "disabled"));

	rq = req_new(p11ca_v1_Request_ca_edit_tag);
	ed = &rq->op.ca_edit;
	snprintf(ed->ca, sizeof(ed->ca), "i4");
	ed->has_default_profile = true;
	snprintf(ed->default_profile, sizeof(ed->default_profile), "nosuch");
	call_expect(S(NOT_FOUND));
	ed->signature_algorithm = p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PKCS1_SHA256;
	snprintf(ed->default_profile, sizeof(ed->default_profile), "enduser");
	call_expect(S(INVALID_ARGUMENT));
	ed->signature_algorithm = p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA512;
	ed->has_enabled = true;
	ed->enabled = true;
	ed->has_issued = true;
	ed->issued.has_crl_urls = true;
	string_list(&ed->issued.crl_urls, "http://edited.example.test/{ca_name}.crl");
	r = call_expect(S(OK));
	assert_true(r->result.ca_edit.ca.enabled);
	assert_int_equal(r->result.ca_edit.ca.signature_algorithm,
			 p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA512);
	assert_string_equal(r->result.ca_edit.settings.default_profile, "enduser");
	/* Per field: the OCSP URL inherited from nothing stays unset, the CRL URL is new. */
	assert_false(r->result.ca_edit.settings.issued.has_ocsp_urls);

	p11ca_v1_CertSignRequest *cs = sign_req("i4", "on.example.test");
	cs->expires_days = 30;
	r = call_expect(S(OK));
	assert_string_equal(r->result.cert_sign.cert.profile, "enduser");
	X509 *x = der_cert(r->result.cert_sign.certificate_der.bytes,
			   r->result.cert_sign.certificate_der.size);
	assert_true(has_url(x, NID_crl_distribution_points, "http://edited.example.test/i4.crl"));
	assert_int_equal(OBJ_obj2nid(X509_get0_tbs_sigalg(x)->algorithm), NID_ecdsa_with_SHA512);
	X509_free(x);
	rq = req_new(p11ca_v1_Request_ca_edit_tag);
	snprintf(rq->op.ca_edit.ca, sizeof(rq->op.ca_edit.ca), "nosuch");
	call_expect(S(NOT_FOUND));
}

/* cert resign: same key, subject, SANs and watchers; new serial; the original stays. */
static void test_resign(void **state)
{
	(void)state;
	p11ca_v1_CertSignRequest *cs = sign_req("i4", "re.example.test");
	cs->expires_days = 20;
	cs->watchers_count = 2;
	snprintf(cs->watchers[0], sizeof(cs->watchers[0]), "ops@example.test");
	snprintf(cs->watchers[1], sizeof(cs->watchers[1]), "OPS@example.test");
	snprintf(cs->profile, sizeof(cs->profile), "server");
	p11ca_v1_Response *r = call_expect(S(OK));
	char old[41];
	serial_hex(r->result.cert_sign.cert.serial.bytes, 20, old);
	X509 *a = der_cert(r->result.cert_sign.certificate_der.bytes,
			   r->result.cert_sign.certificate_der.size);
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_cert_view_tag);
	snprintf(rq->op.cert_view.serial, sizeof(rq->op.cert_view.serial), "%s", old);
	r = call_expect(S(OK));
	assert_int_equal(r->result.cert_view.watchers_count, 1);
	assert_string_equal(r->result.cert_view.watchers[0], "ops@example.test");

	rq = req_new(p11ca_v1_Request_cert_resign_tag);
	snprintf(rq->op.cert_resign.serial, sizeof(rq->op.cert_resign.serial), "%.12s", old);
	rq->op.cert_resign.expires_days = 25;
	r = call_expect(S(OK));
	char new[41];
	serial_hex(r->result.cert_resign.cert.serial.bytes, 20, new);
	assert_string_not_equal(old, new);
	assert_string_equal(r->result.cert_resign.cert.profile, "server");
	X509 *b = der_cert(r->result.cert_resign.certificate_der.bytes,
			   r->result.cert_resign.certificate_der.size);
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(a), X509_get_subject_name(b)), 0);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(a), X509_get0_pubkey(b)), 1);
	GENERAL_NAMES *sa = X509_get_ext_d2i(a, NID_subject_alt_name, NULL, NULL);
	GENERAL_NAMES *sb = X509_get_ext_d2i(b, NID_subject_alt_name, NULL, NULL);
	assert_int_equal(sk_GENERAL_NAME_num(sa), sk_GENERAL_NAME_num(sb));
	for (int i = 0; i < sk_GENERAL_NAME_num(sa); i++)
		assert_int_equal(GENERAL_NAME_cmp(sk_GENERAL_NAME_value(sa, i),
						  sk_GENERAL_NAME_value(sb, i)),
				 0);
	assert_int_equal(X509_get_extended_key_usage(b), XKU_SSL_CLIENT | XKU_SSL_SERVER);
	GENERAL_NAMES_free(sa);
	GENERAL_NAMES_free(sb);
	X509_free(a);
	X509_free(b);
	rq = req_new(p11ca_v1_Request_cert_view_tag);
	snprintf(rq->op.cert_view.serial, sizeof(rq->op.cert_view.serial), "%s", new);
	r = call_expect(S(OK));
	assert_int_equal(r->result.cert_view.watchers_count, 1);
	/* The original stays valid. */
	snprintf(rq->op.cert_view.serial, sizeof(rq->op.cert_view.serial), "%s", old);
	rq = req_new(p11ca_v1_Request_cert_view_tag);
	snprintf(rq->op.cert_view.serial, sizeof(rq->op.cert_view.serial), "%s", old);
	r = call_expect(S(OK));
	assert_int_equal(r->result.cert_view.cert.status, p11ca_v1_CertStatus_CERT_STATUS_VALID);

	/* Refusals: no such serial, a CA certificate, a bad watcher at sign. */
	rq = req_new(p11ca_v1_Request_cert_resign_tag);
	snprintf(rq->op.cert_resign.serial, sizeof(rq->op.cert_resign.serial), "7F7F7F7F7F7F");
	call_expect(S(NOT_FOUND));
	rq = req_new(p11ca_v1_Request_cert_resign_tag);
	snprintf(rq->op.cert_resign.serial, sizeof(rq->op.cert_resign.serial), "%s", root4_serial);
	call_expect(S(INVALID_ARGUMENT));
	cs = sign_req("i4", "re.example.test");
	cs->watchers_count = 1;
	snprintf(cs->watchers[0], sizeof(cs->watchers[0]), "not an address");
	call_expect(S(INVALID_ARGUMENT));

	/* A certificate revoked for key compromise is not resigned (its key is burnt); one
	 * revoked as superseded is. */
	rq = req_new(p11ca_v1_Request_cert_revoke_tag);
	snprintf(rq->op.cert_revoke.serial, sizeof(rq->op.cert_revoke.serial), "%s", new);
	rq->op.cert_revoke.reason = p11ca_v1_RevocationReason_REVOCATION_REASON_KEY_COMPROMISE;
	call_expect(S(OK));
	rq = req_new(p11ca_v1_Request_cert_resign_tag);
	snprintf(rq->op.cert_resign.serial, sizeof(rq->op.cert_resign.serial), "%s", new);
	call_expect(S(FAILED_PRECONDITION));
	rq = req_new(p11ca_v1_Request_cert_revoke_tag);
	snprintf(rq->op.cert_revoke.serial, sizeof(rq->op.cert_revoke.serial), "%s", old);
	rq->op.cert_revoke.reason = p11ca_v1_RevocationReason_REVOCATION_REASON_SUPERSEDED;
	call_expect(S(OK));
	rq = req_new(p11ca_v1_Request_cert_resign_tag);
	snprintf(rq->op.cert_resign.serial, sizeof(rq->op.cert_resign.serial), "%s", old);
	call_expect(S(OK));
}

/* Call the request made ready (ca_export or crl_get, PEM) and write what it answers to
 * dir/name; return the path. */
static const char *pem_of(bool crl, const char *name, char *path, size_t cap)
{
	snprintf(path, cap, "%s/%s", S.fx.dir, name);
	p11ca_v1_Response *r = call_expect(S(OK));
	if (crl)
		write_bytes(path, r->result.crl_get.crl.bytes, r->result.crl_get.crl.size);
	else
		write_bytes(path, r->result.ca_export.data.bytes, r->result.ca_export.data.size);
	return path;
}

static const char *crl_pem(const char *ca, const char *name, char *path, size_t cap)
{
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_crl_get_tag);
	snprintf(rq->op.crl_get.ca, sizeof(rq->op.crl_get.ca), "%s", ca);
	return pem_of(true, name, path, cap);
}

/* `openssl x509|crl -text` of path names the algorithm (and, for PSS, the hash) in both
 * signature fields, and the signature verifies with ca_pem's key. */
static void openssl_alg_is(const char *kind, const char *path, const char *ca_pem, const char *alg,
			   const char *hash)
{
	assert_int_equal(sh("test $(openssl %s -in %s -noout -text | grep -c 'Signature "
			    "Algorithm: %s') -eq 2",
			    kind, path, alg),
			 0);
	if (hash != NULL)
		assert_int_equal(sh("test $(openssl %s -in %s -noout -text | grep -c 'Hash "
				    "Algorithm: %s') -eq 2",
				    kind, path, hash),
				 0);
	if (strcmp(kind, "crl") == 0)
		assert_int_equal(
			sh("openssl crl -in %s -CAfile %s -noout 2>&1 | grep -q 'verify OK'", path,
			   ca_pem),
			0);
	else
		assert_int_equal(
			sh("SSL_CERT_FILE=/dev/null openssl verify -CAfile %s %s >/dev/null",
			   ca_pem, path),
			0);
}

/* The algorithm a CA is made with signs its certificate, what it issues and its CRLs; an
 * edit changes what it signs from then on, CRLs included. */
static void test_signature_algorithms(void **state)
{
	(void)state;
	char ca[4400], leaf[4400], crl[4400];
	p11ca_v1_CaInitRequest *ci = ca_init_req("pss4", "CN=PSS Root 4", "", 365);
	ci->key_type = p11ca_v1_KeyType_KEY_TYPE_RSA2048;
	ci->signature_algorithm = p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA384;
	p11ca_v1_Response *r = call_expect(S(INVALID_ARGUMENT));
	assert_non_null(strstr(r->status.message, "does not fit the new CA's rsa2048 key"));
	ci = ca_init_req("pss4", "CN=PSS Root 4", "", 365);
	ci->key_type = p11ca_v1_KeyType_KEY_TYPE_RSA2048;
	ci->signature_algorithm = p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PSS_SHA384;
	r = call_expect(S(OK));
	assert_int_equal(r->result.ca_init.ca.signature_algorithm,
			 p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PSS_SHA384);
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_ca_export_tag);
	snprintf(rq->op.ca_export.ca, sizeof(rq->op.ca_export.ca), "pss4");
	pem_of(false, "pss4.pem", ca, sizeof(ca));
	openssl_alg_is("x509", ca, ca, "rsassaPss", "sha384");
	openssl_alg_is("crl", crl_pem("pss4", "pss4-1.crl", crl, sizeof(crl)), ca, "rsassaPss",
		       "sha384");

	sign_req("pss4", "pss.example.test");
	r = call_expect(S(OK));
	char hex[41];
	serial_hex(r->result.cert_sign.cert.serial.bytes, 20, hex);
	rq = req_new(p11ca_v1_Request_cert_export_tag);
	snprintf(rq->op.cert_export.serial, sizeof(rq->op.cert_export.serial), "%s", hex);
	snprintf(leaf, sizeof(leaf), "%s/pss-leaf.pem", S.fx.dir);
	r = call_expect(S(OK));
	write_bytes(leaf, r->result.cert_export.data.bytes, r->result.cert_export.data.size);
	openssl_alg_is("x509", leaf, ca, "rsassaPss", "sha384");

	/* From the edit on, the revocation's CRL is signed with the new algorithm. */
	rq = req_new(p11ca_v1_Request_ca_edit_tag);
	snprintf(rq->op.ca_edit.ca, sizeof(rq->op.ca_edit.ca), "pss4");
	rq->op.ca_edit.signature_algorithm =
		p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PKCS1_SHA512;
	call_expect(S(OK));
	rq = req_new(p11ca_v1_Request_cert_revoke_tag);
	snprintf(rq->op.cert_revoke.serial, sizeof(rq->op.cert_revoke.serial), "%s", hex);
	call_expect(S(OK));
	openssl_alg_is("crl", crl_pem("pss4", "pss4-2.crl", crl, sizeof(crl)), ca,
		       "sha512WithRSAEncryption", NULL);

	/* P-256 with ECDSA-SHA384 for what it signs (its own certificate: the default). */
	rq = req_new(p11ca_v1_Request_ca_export_tag);
	snprintf(rq->op.ca_export.ca, sizeof(rq->op.ca_export.ca), "r4");
	pem_of(false, "r4.pem", ca, sizeof(ca));
	openssl_alg_is("x509", ca, ca, "ecdsa-with-SHA256", NULL);
	openssl_alg_is("crl", crl_pem("r4", "r4.crl", crl, sizeof(crl)), ca, "ecdsa-with-SHA384",
		       NULL);
}

/* A revoked intermediate never issues again, whatever its settings say. */
static void test_revoked_ca_stays_off(void **state)
{
	(void)state;
	ca_init_req("rev4", "CN=Revoked 4", "pss4", 30);
	call_expect(S(OK));
	ca_init_req("rev4sub", "CN=Under Revoked 4", "rev4", 30);
	call_expect(S(OK));
	p11ca_v1_Request *rq = req_new(p11ca_v1_Request_ca_revoke_tag);
	snprintf(rq->op.ca_revoke.ca, sizeof(rq->op.ca_revoke.ca), "rev4");
	rq->op.ca_revoke.reason = p11ca_v1_RevocationReason_REVOCATION_REASON_CA_COMPROMISE;
	call_expect(S(OK));
	rq = req_new(p11ca_v1_Request_ca_edit_tag);
	snprintf(rq->op.ca_edit.ca, sizeof(rq->op.ca_edit.ca), "rev4");
	rq->op.ca_edit.has_enabled = true;
	rq->op.ca_edit.enabled = true;
	p11ca_v1_Response *r = call_expect(S(FAILED_PRECONDITION));
	assert_non_null(strstr(r->status.message, "revoked"));
	/* Below it, the CA that is still enabled refuses too: its chain is broken. */
	sign_req("rev4sub", "under.example.test");
	r = call_expect(S(FAILED_PRECONDITION));
	assert_non_null(strstr(r->status.message, "CA rev4's certificate is revoked"));
	ca_init_req("rev4new", "CN=Under Revoked 4 again", "rev4sub", 30);
	r = call_expect(S(FAILED_PRECONDITION));
	assert_non_null(strstr(r->status.message, "revoked"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health),
		cmocka_unit_test(test_ca_hierarchy),
		cmocka_unit_test(test_issue_revoke_crl),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_refusal_notification),
		cmocka_unit_test(test_openssl_cli),
		cmocka_unit_test(test_list_paging),
		cmocka_unit_test(test_concurrent_issue),
		cmocka_unit_test(test_bootstrap),
		cmocka_unit_test(test_zz_stop_and_audit),
	};
	const struct CMUnitTest pin_tests[] = {
		cmocka_unit_test(test_needs_pin),
	};
	const struct CMUnitTest repair_tests[] = {
		cmocka_unit_test(test_ca_days_refused_before_key),
		cmocka_unit_test(test_crl_stale_readers),
		cmocka_unit_test(test_bootstrap_unsafe_dirs),
		cmocka_unit_test(test_bootstrap_repairs),
	};
	const struct CMUnitTest manage_tests[] = {
		cmocka_unit_test(test_profiles_extensions),
		cmocka_unit_test(test_three_levels),
		cmocka_unit_test(test_name_constraints),
		cmocka_unit_test(test_import),
		cmocka_unit_test(test_edit),
		cmocka_unit_test(test_resign),
		cmocka_unit_test(test_signature_algorithms),
		cmocka_unit_test(test_revoked_ca_stays_off),
	};
	int failed = cmocka_run_group_tests_name("flow", tests, suite_setup, suite_teardown);
	failed += cmocka_run_group_tests_name("manage", manage_tests, import_setup, suite_teardown);
	failed += cmocka_run_group_tests_name("repairs", repair_tests, suite_setup, suite_teardown);
	failed += cmocka_run_group_tests_name("needs_pin", pin_tests, pin_setup, suite_teardown);
	return failed;
}
