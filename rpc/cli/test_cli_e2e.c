/*
 * The p11ca CLI end to end against a fake p11cad: a TLS server thread on 127.0.0.1 (the
 * real rpc/tls.c server context and rpc/frame.h framing) that answers canned Responses.
 * The CLI runs in-process through p11ca_main, so each test checks exit code, stdout and
 * stderr, and what the server received. The throwaway PKI is made here with OpenSSL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/kconfig.h"
#include "rpc/cli/cli.h"
#include "rpc/frame.h"
#include "rpc/test_pki.h"
#include "rpc/tls.h"

#define N(a) TEST_PKI_N(a)

static struct test_pki pki;
static char port_arg[32];
static uint8_t issued_der[4096];
static size_t issued_der_len;

/* What the fake server does, and what it saw. Written by tests before a run, read by the
 * server thread during it; p11ca_main returning (connection closed, every answer read)
 * orders the two. */
enum mode { MODE_NORMAL, MODE_WRONG_ID, MODE_HANG_UP, MODE_NOTIFY_FAILS };
static struct {
	enum mode mode;
	char last_serial[65];
	char last_pin[257];
	char last_sans[2][256];
	pb_size_t last_sans_count;
	p11ca_v1_RevocationReason last_reason;
	int calls;
} srv;

/* The last request of each run, whole: the new commands are checked field by field. */
static p11ca_v1_Request last_req;

static int listen_fd = -1;
static SSL_CTX *server_ctx;
static pthread_t server_tid;

static const char *path(const char *name, const char *ext)
{
	return test_pki_path(&pki, name, ext);
}

/* ---- the fake server ------------------------------------------------------------------- */

static bool ssl_read_frame(SSL *ssl, struct p11ca_buf **frame)
{
	struct rpc_frame_reader *r = NULL;
	uint8_t chunk[4096];
	bool ok = rpc_frame_reader_new(CONFIG_RPC_MAX_FRAME, &r, NULL) == P11CA_OK;
	*frame = NULL;
	while (ok && *frame == NULL) {
		size_t want = rpc_frame_reader_want(r), n = 0, used = 0;
		if (SSL_read_ex(ssl, chunk, want < sizeof(chunk) ? want : sizeof(chunk), &n) != 1)
			ok = false;
		else
			ok = rpc_frame_reader_feed(r, chunk, n, &used, frame, NULL) == P11CA_OK;
	}
	rpc_frame_reader_free(&r);
	return ok;
}

static void fill_ca(p11ca_v1_CaSummary *ca, const char *name, const char *parent, uint8_t serial)
{
	snprintf(ca->name, sizeof(ca->name), "%s", name);
	snprintf(ca->parent, sizeof(ca->parent), "%s", parent);
	snprintf(ca->subject, sizeof(ca->subject), "CN=%s", name);
	ca->serial.size = 2;
	ca->serial.bytes[0] = 0x00;
	ca->serial.bytes[1] = serial;
	ca->not_before = 1700000000;
	ca->not_after = 2000000000;
	ca->status = p11ca_v1_CaStatus_CA_STATUS_ACTIVE;
	ca->key_type = p11ca_v1_KeyType_KEY_TYPE_P256;
}

static void fill_cert(p11ca_v1_CertSummary *c)
{
	c->serial.size = 3;
	memcpy(c->serial.bytes, "\x0a\x1b\xff", 3);
	snprintf(c->ca, sizeof(c->ca), "issuing");
	snprintf(c->subject, sizeof(c->subject), "CN=www.example");
	c->not_before = 1700000000;
	c->not_after = 1710000000;
	c->status = p11ca_v1_CertStatus_CERT_STATUS_VALID;
	c->key_type = p11ca_v1_KeyType_KEY_TYPE_P256;
	snprintf(c->profile, sizeof(c->profile), "tls-server");
}

static void answer(const p11ca_v1_Request *q, p11ca_v1_Response *a)
{
	last_req = *q;
	a->request_id = srv.mode == MODE_WRONG_ID ? q->request_id + 1 : q->request_id;
	a->has_status = true;
	a->status.code = p11ca_v1_StatusCode_STATUS_CODE_OK;
	a->which_result = q->which_op;
	switch (q->which_op) {
	case p11ca_v1_Request_health_tag:
		a->result.health.api_version = 1;
		snprintf(a->result.health.server_version, 33, "fake-1.0");
		a->result.health.ready = true;
		a->result.health.ca_count = 2;
		break;
	case p11ca_v1_Request_hsm_activate_tag:
		memcpy(srv.last_pin, q->op.hsm_activate.pin.bytes, q->op.hsm_activate.pin.size);
		srv.last_pin[q->op.hsm_activate.pin.size] = '\0';
		a->result.hsm_activate.has_token = true;
		snprintf(a->result.hsm_activate.token.name, 33, "%s",
			 q->op.hsm_activate.token[0] ? q->op.hsm_activate.token : "only");
		a->result.hsm_activate.token.state = p11ca_v1_TokenState_TOKEN_STATE_READY;
		break;
	case p11ca_v1_Request_ca_list_tag: {
		/* Two pages, the child first: --tree must still put it under its parent. */
		p11ca_v1_CaListResponse *l = &a->result.ca_list;
		if (q->op.ca_list.page_token.size == 0) {
			fill_ca(&l->cas[0], "issuing", "root", 0x02);
			l->cas_count = 1;
			l->next_page_token.size = 2;
			memcpy(l->next_page_token.bytes, "p2", 2);
		} else {
			fill_ca(&l->cas[0], "root", "", 0x01);
			l->cas_count = 1;
		}
		break;
	}
	case p11ca_v1_Request_cert_sign_tag:
		memcpy(srv.last_sans, q->op.cert_sign.sans, sizeof(srv.last_sans));
		srv.last_sans_count = q->op.cert_sign.sans_count;
		a->result.cert_sign.has_cert = true;
		fill_cert(&a->result.cert_sign.cert);
		memcpy(a->result.cert_sign.certificate_der.bytes, issued_der, issued_der_len);
		a->result.cert_sign.certificate_der.size = (pb_size_t)issued_der_len;
		break;
	case p11ca_v1_Request_cert_view_tag:
		snprintf(srv.last_serial, sizeof(srv.last_serial), "%s", q->op.cert_view.serial);
		a->result.cert_view.has_cert = true;
		fill_cert(&a->result.cert_view.cert);
		break;
	case p11ca_v1_Request_ca_export_tag:
		/* DER asked: the certificate; PEM: not needed by the tests. */
		memcpy(a->result.ca_export.data.bytes, issued_der, issued_der_len);
		a->result.ca_export.data.size = (pb_size_t)issued_der_len;
		a->result.ca_export.certificate_count = 1;
		break;
	case p11ca_v1_Request_ca_init_tag:
		a->result.ca_init.has_ca = true;
		fill_ca(&a->result.ca_init.ca, q->op.ca_init.name, q->op.ca_init.parent, 0x03);
		break;
	case p11ca_v1_Request_ca_view_tag: {
		/* "rsa-pss" is an RSA CA that signs with PSS; anything else a P-384 one. */
		p11ca_v1_CaViewResponse *v = &a->result.ca_view;
		bool rsa = strcmp(q->op.ca_view.ca, "rsa-pss") == 0;
		v->has_ca = true;
		fill_ca(&v->ca, q->op.ca_view.ca, "root", 0x02);
		v->ca.enabled = true;
		v->ca.key_type =
			rsa ? p11ca_v1_KeyType_KEY_TYPE_RSA3072 : p11ca_v1_KeyType_KEY_TYPE_P384;
		v->has_settings = true;
		v->settings.enabled = true;
		v->settings.signature_algorithm =
			rsa ? p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PSS_SHA256
			    : p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA384;
		snprintf(v->settings.default_profile, 65, "server");
		snprintf(v->settings.key_uri, 512, "pkcs11:object=issuing;type=private");
		v->settings.permitted_names_count = 1;
		snprintf(v->settings.permitted_names[0], 256, "DNS:example.com");
		v->settings.has_issued = true;
		v->settings.issued.has_crl_urls = true;
		v->settings.issued.crl_urls.values_count = 1;
		snprintf(v->settings.issued.crl_urls.values[0], 256,
			 "http://crl.example/{ca_name}");
		v->settings.issued.has_ocsp_urls = true; /* present and empty: none */
		break;
	}
	case p11ca_v1_Request_ca_edit_tag:
		a->result.ca_edit.has_ca = true;
		fill_ca(&a->result.ca_edit.ca, q->op.ca_edit.ca, "root", 0x02);
		a->result.ca_edit.has_settings = true;
		a->result.ca_edit.settings.enabled =
			!q->op.ca_edit.has_enabled || q->op.ca_edit.enabled;
		a->result.ca_edit.settings.has_issued = q->op.ca_edit.has_issued;
		a->result.ca_edit.settings.issued = q->op.ca_edit.issued;
		break;
	case p11ca_v1_Request_ca_import_tag:
		a->result.ca_import.has_ca = true;
		fill_ca(&a->result.ca_import.ca, q->op.ca_import.name, "", 0x04);
		break;
	case p11ca_v1_Request_ca_revoke_tag:
		a->result.ca_revoke.has_ca = true;
		fill_ca(&a->result.ca_revoke.ca, q->op.ca_revoke.ca, "root", 0x02);
		a->result.ca_revoke.ca.status = p11ca_v1_CaStatus_CA_STATUS_REVOKED;
		a->result.ca_revoke.ca.has_revocation = true;
		a->result.ca_revoke.ca.revocation.revoked_at = 1700000500;
		a->result.ca_revoke.ca.revocation.reason = q->op.ca_revoke.reason;
		a->result.ca_revoke.ca.revocation.compromised_at = q->op.ca_revoke.compromised_at;
		break;
	case p11ca_v1_Request_cert_resign_tag:
		a->result.cert_resign.has_cert = true;
		fill_cert(&a->result.cert_resign.cert);
		memcpy(a->result.cert_resign.certificate_der.bytes, issued_der, issued_der_len);
		a->result.cert_resign.certificate_der.size = (pb_size_t)issued_der_len;
		break;
	case p11ca_v1_Request_cert_import_tag:
		a->result.cert_import.has_cert = true;
		fill_cert(&a->result.cert_import.cert);
		snprintf(a->result.cert_import.cert.profile, 65, "imported");
		break;
	case p11ca_v1_Request_cert_watchers_tag: {
		p11ca_v1_CertWatchersResponse *w = &a->result.cert_watchers;
		w->has_cert = true;
		fill_cert(&w->cert);
		snprintf(w->watchers[w->watchers_count++], 255, "kept@example.com");
		for (pb_size_t i = 0; i < q->op.cert_watchers.add_count; i++)
			memcpy(w->watchers[w->watchers_count++], q->op.cert_watchers.add[i], 255);
		break;
	}
	case p11ca_v1_Request_cert_list_tag: {
		/* Serials 01..05 in pages of 2 (or the limit asked for, if smaller); the page
		 * token is the next serial's number. */
		const p11ca_v1_CertListRequest *r = &q->op.cert_list;
		p11ca_v1_CertListResponse *l = &a->result.cert_list;
		unsigned next = r->page_token.size ? r->page_token.bytes[0]
				: r->after[0]	   ? (unsigned)strtoul(r->after, NULL, 16) + 1
						   : 1;
		unsigned page = r->limit != 0 && r->limit < 2 ? r->limit : 2;
		for (; l->certs_count < page && next <= 5; next++) {
			p11ca_v1_CertSummary *c = &l->certs[l->certs_count++];
			fill_cert(c);
			c->serial.size = 1;
			c->serial.bytes[0] = (uint8_t)next;
		}
		if (next <= 5) {
			l->next_page_token.size = 1;
			l->next_page_token.bytes[0] = (uint8_t)next;
		}
		break;
	}
	case p11ca_v1_Request_profile_list_tag: {
		p11ca_v1_ProfileListResponse *l = &a->result.profile_list;
		p11ca_v1_ProfileInfo *p = &l->profiles[l->profiles_count++];
		snprintf(p->name, 65, "webserver");
		p->enabled = p->is_default = p->cn_in_san = p->add_crl_url = true;
		p->has_key_usage = true;
		p->key_usage.critical = true;
		p->key_usage.names_count = 2;
		snprintf(p->key_usage.names[0], 40, "digitalSignature");
		snprintf(p->key_usage.names[1], 40, "keyAgreement");
		p->has_extended_key_usage = true;
		p->extended_key_usage.names_count = 1;
		snprintf(p->extended_key_usage.names[0], 40, "serverAuth");
		p = &l->profiles[l->profiles_count++];
		snprintf(p->name, 65, "ocsp");
		p->ocsp_no_check = true;
		break;
	}
	case p11ca_v1_Request_notify_expiring_tag:
		a->result.notify_expiring.certificates = 2;
		a->result.notify_expiring.messages_sent = 3;
		a->result.notify_expiring.messages_failed = srv.mode == MODE_NOTIFY_FAILS ? 1 : 0;
		break;
	case p11ca_v1_Request_cert_revoke_tag:
		snprintf(srv.last_serial, sizeof(srv.last_serial), "%s", q->op.cert_revoke.serial);
		srv.last_reason = q->op.cert_revoke.reason;
		a->which_result = 0;
		a->status.code = p11ca_v1_StatusCode_STATUS_CODE_PERMISSION_DENIED;
		snprintf(a->status.message, sizeof(a->status.message),
			 "role auditor may not call cert_revoke");
		break;
	default:
		a->which_result = 0;
		a->status.code = p11ca_v1_StatusCode_STATUS_CODE_UNIMPLEMENTED;
		break;
	}
}

static void serve(SSL *ssl)
{
	p11ca_v1_Request *q = calloc(1, sizeof(*q));
	p11ca_v1_Response *a = calloc(1, sizeof(*a));
	struct p11ca_buf *in = NULL, *out = NULL;
	assert_non_null(q);
	assert_non_null(a);
	while (ssl_read_frame(ssl, &in)) {
		srv.calls++;
		memset(q, 0, sizeof(*q));
		memset(a, 0, sizeof(*a));
		if (rpc_frame_request_decode(in, q, NULL) != P11CA_OK || q->api_version != 1)
			break;
		p11ca_buf_free(&in);
		if (srv.mode == MODE_HANG_UP)
			break;
		answer(q, a);
		if (rpc_frame_response_encode(a, &out, NULL) != P11CA_OK)
			break;
		size_t n = 0;
		if (SSL_write_ex(ssl, p11ca_buf_ptr(out), p11ca_buf_len(out), &n) != 1)
			break;
		p11ca_buf_free(&out);
	}
	p11ca_buf_free(&in);
	p11ca_buf_free(&out);
	explicit_bzero(q, sizeof(*q));
	free(q);
	free(a);
}

static void *server_thread(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(listen_fd, NULL, NULL);
		if (fd < 0)
			break; /* shutdown() by teardown */
		/* A safety net only: no test relies on it. */
		struct timeval tv = {.tv_sec = 10};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		SSL *ssl = SSL_new(server_ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) == 1 && rpc_tls_check_peer(ssl, NULL) == P11CA_OK)
			serve(ssl);
		ERR_clear_error();
		SSL_free(ssl);
		close(fd);
	}
	return NULL;
}

static int listen_on(int *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 8) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
		return -1;
	*port = ntohs(sa.sin_port);
	return fd;
}

static int setup(void **state)
{
	(void)state;
	if (test_pki_init(&pki, "p11ca-cli-e2e", 0x0a1b) != 0)
		return -1;
	setenv("HOME", pki.dir, 1); /* no client.ini of the person running the tests */
	unsetenv("XDG_CONFIG_HOME");
	X509 *certs[] = {
		test_pki_issue(&pki, "server", TEST_PKI_CA, &test_pki_server),
		test_pki_issue(&pki, "client", TEST_PKI_CA, &test_pki_client),
		test_pki_issue(&pki, "foreign", TEST_PKI_OTHER_CA, &test_pki_client),
	};
	/* What cert sign "issues": a real certificate, so openssl can read the output. */
	unsigned char *p = issued_der;
	int len = i2d_X509(certs[1], NULL);
	assert_true(len > 0 && (size_t)len <= sizeof(issued_der));
	assert_int_equal(i2d_X509(certs[1], &p), len);
	issued_der_len = (size_t)len;
	for (size_t i = 0; i < N(certs); i++)
		X509_free(certs[i]);
	test_pki_done(&pki);

	if (rpc_tls_server_ctx_new(path("ca", "crt"), path("server", "crt"), path("server", "key"),
				   &server_ctx, NULL) != P11CA_OK)
		return -1;
	int port = 0;
	listen_fd = listen_on(&port);
	if (listen_fd < 0)
		return -1;
	snprintf(port_arg, sizeof(port_arg), "127.0.0.1:%d", port);
	return pthread_create(&server_tid, NULL, server_thread, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	shutdown(listen_fd, SHUT_RDWR);
	pthread_join(server_tid, NULL);
	close(listen_fd);
	rpc_tls_ctx_free(&server_ctx);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pki.dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- running the CLI ------------------------------------------------------------------------ */

struct run {
	int rc;
	char *out, *err;
	size_t out_len, err_len;
};

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* p11ca --server <fake> --cert client --key client --cacert <cacert> ARGS... */
static struct run run_as(const char *server, const char *cert, const char *cacert,
			 const char *first, ...)
{
	char *argv[64];
	int argc = 0;
	argv[argc++] = (char *)"p11ca";
	argv[argc++] = (char *)"--server";
	argv[argc++] = (char *)server;
	argv[argc++] = (char *)"--cert";
	argv[argc++] = (char *)path(cert, "crt");
	argv[argc++] = (char *)"--key";
	argv[argc++] = (char *)path(cert, "key");
	argv[argc++] = (char *)"--cacert";
	argv[argc++] = (char *)path(cacert, "crt");
	va_list ap;
	va_start(ap, first);
	for (const char *s = first; s != NULL; s = va_arg(ap, const char *)) {
		assert_true(argc < 63);
		argv[argc++] = (char *)s;
	}
	va_end(ap);
	struct run r = {0};
	FILE *out = open_memstream(&r.out, &r.out_len);
	FILE *err = open_memstream(&r.err, &r.err_len);
	assert_non_null(out);
	assert_non_null(err);
	r.rc = p11ca_main(argc, argv, out, err);
	fclose(out);
	fclose(err);
	return r;
}

#define RUN(...) run_as(port_arg, "client", "ca", __VA_ARGS__, NULL)

static void expect_in(const char *hay, const char *needle)
{
	if (getenv("P11CA_TEST_VERBOSE") != NULL)
		fprintf(stderr, "%s", hay);
	if (strstr(hay, needle) == NULL)
		fail_msg("'%s' not found in:\n%s", needle, hay);
}

/* ---- tests ------------------------------------------------------------------------------------
 */

static void test_status(void **state)
{
	(void)state;
	srv.mode = MODE_NORMAL;
	struct run r = RUN("status");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "server version:      fake-1.0\n");
	expect_in(r.out, "ready:               yes\n");
	assert_string_equal(r.err, "");
	run_free(&r);
}

static void test_ca_list_tree_and_json(void **state)
{
	(void)state;
	srv.mode = MODE_NORMAL;
	struct run r = RUN("ca", "list", "--tree");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out,
			    "NAME       SERIAL  STATUS  KEY   NOT AFTER             SUBJECT\n"
			    "root       0001    active  p256  2033-05-18T03:33:20Z  CN=root\n"
			    "  issuing  0002    active  p256  2033-05-18T03:33:20Z  CN=issuing\n");
	run_free(&r);

	/* Without --tree: the server's order. */
	r = RUN("ca", "list");
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(r.out, "issuing"));
	assert_true(strstr(r.out, "issuing") < strstr(r.out, "root "));
	run_free(&r);

	/* --json after the verb works like before the noun. */
	r = RUN("ca", "list", "--json");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "{\n  \"cas\": [\n    {\n      \"name\": \"issuing\",\n"
			 "      \"serial\": \"0002\",\n");
	expect_in(r.out, "\"parent\": \"root\"");
	expect_in(r.out, "\"parent\": null");
	run_free(&r);
}

static void test_cert_sign_writes_pem_openssl_reads(void **state)
{
	(void)state;
	char csr[1024], out[1024], cmd[2400], line[256] = {0};
	snprintf(csr, sizeof(csr), "%s/req.csr", pki.dir);
	snprintf(out, sizeof(out), "%s/issued.pem", pki.dir);
	FILE *f = fopen(csr, "w");
	assert_non_null(f);
	fputs("-----BEGIN CERTIFICATE REQUEST-----\nnot checked by the fake\n"
	      "-----END CERTIFICATE REQUEST-----\n",
	      f);
	fclose(f);

	srv.mode = MODE_NORMAL;
	struct run r = RUN("cert", "sign", "--ca", "issuing", "--csr", csr, "--san", "www.example",
			   "--san=IP:192.0.2.7", "--out", out);
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "serial:              0A1BFF\n");
	assert_int_equal(srv.last_sans_count, 2);
	assert_string_equal(srv.last_sans[0], "www.example");
	assert_string_equal(srv.last_sans[1], "IP:192.0.2.7");
	run_free(&r);

	struct stat st;
	assert_int_equal(stat(out, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	/* The real tool reads what we wrote: the serial of the certificate the fake issued. */
	snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s' -noout -serial", out);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(line, sizeof(line), p));
	assert_int_equal(pclose(p), 0);
	assert_string_equal(line, "serial=0A1E\n");

	/* Without --out the PEM is the whole of stdout, ready for a redirect. */
	r = RUN("cert", "sign", "--ca", "issuing", "--csr", csr);
	assert_int_equal(r.rc, 0);
	assert_true(strncmp(r.out, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
	assert_non_null(strstr(r.out, "-----END CERTIFICATE-----\n"));
	run_free(&r);

	/* A CSR file that is not there: 66, before anything is sent. */
	int calls = srv.calls;
	r = RUN("cert", "sign", "--ca", "issuing", "--csr", "/nonexistent.csr");
	assert_int_equal(r.rc, 66);
	expect_in(r.err, "cannot read the CSR /nonexistent.csr");
	assert_int_equal(srv.calls, calls);
	run_free(&r);
}

static void test_serial_normalised_and_revoke_denied(void **state)
{
	(void)state;
	srv.mode = MODE_NORMAL;
	struct run r = RUN("cert", "view", "0a:1b:ff");
	assert_int_equal(r.rc, 0);
	assert_string_equal(srv.last_serial, "0A1BFF");
	expect_in(r.out, "profile:             tls-server\n");
	run_free(&r);

	r = RUN("cert", "revoke", "0a1bff", "--reason", "KEYCOMPROMISE");
	assert_int_equal(r.rc, 77);
	assert_int_equal(srv.last_reason,
			 p11ca_v1_RevocationReason_REVOCATION_REASON_KEY_COMPROMISE);
	assert_string_equal(r.out, "");
	assert_string_equal(r.err,
			    "p11ca: cannot revoke certificate 0A1BFF: role auditor may not "
			    "call cert_revoke — your certificate's role may not do this; ask "
			    "an administrator\n");
	run_free(&r);

	/* An operation the server does not know: 69 with the upgrade hint. */
	r = RUN("crl", "get", "--ca", "root");
	assert_int_equal(r.rc, 69);
	expect_in(r.err, "unimplemented — this server does not offer it");
	run_free(&r);
}

static void test_hsm_activate_pin_file(void **state)
{
	(void)state;
	char pin[1024];
	snprintf(pin, sizeof(pin), "%s/pin", pki.dir);
	FILE *f = fopen(pin, "w");
	assert_non_null(f);
	fputs("s3cret-1234\r\n", f);
	fclose(f);
	srv.mode = MODE_NORMAL;
	struct run r = RUN("hsm", "activate", "--token", "ca1", "--pin-file", pin);
	assert_int_equal(r.rc, 0);
	assert_string_equal(srv.last_pin, "s3cret-1234");
	assert_string_equal(r.out, "token ca1: ready\n");
	assert_null(strstr(r.err, "s3cret"));
	run_free(&r);

	/* A file of two lines is probably not a PIN file: refused before sending. */
	f = fopen(pin, "w");
	assert_non_null(f);
	fputs("1234\nother\n", f);
	fclose(f);
	memset(srv.last_pin, 0, sizeof(srv.last_pin));
	r = RUN("hsm", "activate", "--pin-file", pin);
	assert_int_equal(r.rc, 65);
	expect_in(r.err, "more than one line");
	assert_string_equal(srv.last_pin, "");
	run_free(&r);
}

static void test_export_der(void **state)
{
	(void)state;
	char out[1024];
	uint8_t got[4096];
	snprintf(out, sizeof(out), "%s/ca.der", pki.dir);
	srv.mode = MODE_NORMAL;
	struct run r = RUN("ca", "export", "root", "--format", "der", "--out", out);
	assert_int_equal(r.rc, 0);
	run_free(&r);
	FILE *f = fopen(out, "rb");
	assert_non_null(f);
	assert_int_equal(fread(got, 1, sizeof(got), f), issued_der_len);
	fclose(f);
	assert_memory_equal(got, issued_der, issued_der_len);

	r = RUN("--json", "ca", "export", "root", "--format", "der");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "\"format\": \"der\"");
	expect_in(r.out, "\"data_base64\": \"MII");
	run_free(&r);
}

static void test_protocol_violations(void **state)
{
	(void)state;
	srv.mode = MODE_WRONG_ID;
	struct run r = RUN("status");
	assert_int_equal(r.rc, 76);
	expect_in(r.err, "the server answered request 2, not 1");
	run_free(&r);

	srv.mode = MODE_HANG_UP;
	r = RUN("status");
	assert_int_equal(r.rc, 69);
	expect_in(r.err, "closed the connection");
	run_free(&r);
	srv.mode = MODE_NORMAL;
}

static void test_connection_failures(void **state)
{
	(void)state;
	/* Nothing listening: a port that was free a moment ago. */
	int port = 0, fd = listen_on(&port);
	char server[32];
	assert_true(fd >= 0);
	close(fd);
	snprintf(server, sizeof(server), "127.0.0.1:%d", port);
	struct run r = run_as(server, "client", "ca", "status", NULL);
	assert_int_equal(r.rc, 69);
	expect_in(r.err, "is p11cad running");
	run_free(&r);

	/* The wrong --cacert: the server's certificate is not trusted. */
	r = run_as(port_arg, "client", "other-ca", "status", NULL);
	assert_int_equal(r.rc, 69);
	expect_in(r.err, "not trusted");
	expect_in(r.err, "--cacert");
	run_free(&r);

	/* A client certificate the server refuses (another CA): seen on the first read. */
	r = run_as(port_arg, "foreign", "ca", "status", NULL);
	assert_int_equal(r.rc, 69);
	expect_in(r.err, "--cert");
	run_free(&r);

	/* A server that accepts TCP but never speaks TLS: a timeout, 75. */
	fd = listen_on(&port);
	assert_true(fd >= 0);
	snprintf(server, sizeof(server), "127.0.0.1:%d", port);
	r = run_as(server, "client", "ca", "--timeout", "1", "status", NULL);
	close(fd);
	assert_int_equal(r.rc, 75);
	expect_in(r.err, "timed out");
	run_free(&r);

	/* A malformed --server. */
	r = run_as("localhost", "client", "ca", "status", NULL);
	assert_int_equal(r.rc, 64);
	expect_in(r.err, "HOST:PORT");
	run_free(&r);
}

/* rpc/client.h directly: argument checks, address forms, and a connection that broke
 * staying broken. */
static void test_client_api(void **state)
{
	(void)state;
	struct rpc_client *c = (struct rpc_client *)&c;
	struct p11ca_errmsg em = {0};
	struct rpc_client_options o = {.server = port_arg,
				       .ca_file = path("ca", "crt"),
				       .cert_file = path("client", "crt"),
				       .key_file = path("client", "key")};
	static const char *const bad[] = {"",	      "host",	"host:",   "host:0", "host:65536",
					  "host:12x", "::1:80", "[::1]80", "[::1",   ":80"};
	for (size_t i = 0; i < N(bad); i++) {
		o.server = bad[i];
		p11ca_errmsg_clear(&em);
		assert_int_equal(rpc_client_connect(&o, &c, &em), P11CA_E_USAGE);
		assert_null(c);
	}
	assert_int_equal(rpc_client_connect(NULL, &c, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_client_connect(&o, NULL, NULL), P11CA_E_INVALID_ARG);
	o.server = port_arg;
	o.key_file = NULL;
	assert_int_equal(rpc_client_connect(&o, &c, NULL), P11CA_E_CONFIG);
	o.key_file = path("client", "key");

	/* An IPv6 literal in brackets parses; nothing listens there, so it is refused (or
	 * the host has no IPv6 loopback at all): either way an I/O error, not a usage one. */
	char v6[64];
	snprintf(v6, sizeof(v6), "[::1]:%s", strrchr(port_arg, ':') + 1);
	o.server = v6;
	assert_int_equal(rpc_client_connect(&o, &c, NULL), P11CA_E_IO);
	o.server = port_arg;

	p11ca_v1_Request *q = calloc(1, sizeof(*q));
	p11ca_v1_Response *a = calloc(1, sizeof(*a));
	assert_non_null(q);
	assert_non_null(a);
	assert_int_equal(rpc_client_call(NULL, q, a, NULL), P11CA_E_INVALID_ARG);
	srv.mode = MODE_WRONG_ID;
	assert_int_equal(rpc_client_connect(&o, &c, &em), P11CA_OK);
	q->which_op = p11ca_v1_Request_health_tag;
	assert_int_equal(rpc_client_call(c, q, a, NULL), P11CA_E_PROTO);
	p11ca_errmsg_clear(&em);
	assert_int_equal(rpc_client_call(c, q, a, &em), P11CA_E_IO);
	assert_non_null(strstr(em.text, "failed earlier"));
	rpc_client_close(&c);
	assert_null(c);
	rpc_client_close(&c); /* NULL-safe */
	rpc_client_close(NULL);
	srv.mode = MODE_NORMAL;

	/* A request nanopb refuses is not sent, and the connection stays usable. */
	assert_int_equal(rpc_client_connect(&o, &c, NULL), P11CA_OK);
	memset(q, 0, sizeof(*q));
	q->which_op = p11ca_v1_Request_cert_sign_tag;
	q->op.cert_sign.sans_count = 65; /* over max_count */
	assert_int_equal(rpc_client_call(c, q, a, NULL), P11CA_E_INVALID_ARG);
	memset(q, 0, sizeof(*q));
	q->which_op = p11ca_v1_Request_health_tag;
	assert_int_equal(rpc_client_call(c, q, a, NULL), P11CA_OK);
	assert_int_equal(a->status.code, p11ca_v1_StatusCode_STATUS_CODE_OK);
	assert_int_equal(a->which_result, p11ca_v1_Response_health_tag);
	rpc_client_close(&c);
	free(q);
	free(a);
}

/* ---- issue 4: the new commands and options, checked in the request the server got ---------- */

static const char *write_tmp(const char *name, const char *text)
{
	static char p[1024];
	snprintf(p, sizeof(p), "%s/%s", pki.dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return p;
}

static void test_cert_sign_extension_options(void **state)
{
	(void)state;
	char csr[1024];
	snprintf(csr, sizeof(csr), "%s", write_tmp("sign.csr", "CSR, not checked by the fake\n"));
	srv.mode = MODE_NORMAL;
	int calls = srv.calls;
	struct run r = RUN(
		"cert", "sign", "--ca", "issuing", "--csr", csr, "--subject", "/C=AT/CN=x", "--san",
		"DNS:a.example", "--san", "otherName:1.3.6.1.4.1.311.20.2.3;UTF8:u@example",
		"--watch", "a@example.com", "--watch", "b@example.com", "--cn-not-in-san",
		"--no-cn-from-san", "--crl-url", "http://crl.example/x.crl", "--no-ocsp-url",
		"--policy", "2.23.140.1.2.1;cps=https://ca.example/cps;notice=Hi; there",
		"--key-usage", "critical,digitalsignature", "--ext-key-usage",
		"serverAuth,1.3.6.1.5.5.7.3.2", "--must-staple", "--ocsp-no-check",
		"--issuer-alt-name", "URI:http://ca.example", "--algorithm", "SHA-384");
	assert_int_equal(r.rc, 0);
	run_free(&r);
	/* A bare hash cost one ca view to learn the CA's key (P-384 here): two calls. */
	assert_int_equal(srv.calls, calls + 2);
	assert_int_equal(last_req.which_op, p11ca_v1_Request_cert_sign_tag);
	const p11ca_v1_CertSignRequest *q = &last_req.op.cert_sign;
	assert_string_equal(q->subject, "/C=AT/CN=x");
	assert_int_equal(q->signature_algorithm,
			 p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA384);
	assert_int_equal(q->sans_count, 2);
	assert_string_equal(q->sans[1], "otherName:1.3.6.1.4.1.311.20.2.3;UTF8:u@example");
	assert_int_equal(q->watchers_count, 2);
	assert_string_equal(q->watchers[1], "b@example.com");
	assert_true(q->no_cn_in_san && q->no_san_to_cn);
	assert_true(q->has_extensions);
	const p11ca_v1_ExtensionSettings *e = &q->extensions;
	assert_true(e->has_crl_urls && e->crl_urls.values_count == 1);
	assert_string_equal(e->crl_urls.values[0], "http://crl.example/x.crl");
	assert_true(e->has_ocsp_urls && e->ocsp_urls.values_count == 0); /* none */
	assert_false(e->has_issuer_urls);				 /* inherit */
	assert_true(e->has_policies && e->policies.policies_count == 1);
	assert_string_equal(e->policies.policies[0].oid, "2.23.140.1.2.1");
	assert_string_equal(e->policies.policies[0].cps_uris[0], "https://ca.example/cps");
	assert_string_equal(e->policies.policies[0].user_notice, "Hi; there");
	assert_true(e->has_key_usage && e->key_usage.critical);
	assert_string_equal(e->key_usage.names[0], "digitalSignature"); /* canonical spelling */
	assert_true(e->has_extended_key_usage && !e->extended_key_usage.critical);
	assert_string_equal(e->extended_key_usage.names[1], "1.3.6.1.5.5.7.3.2");
	assert_true(e->has_tls_feature_status_request && e->tls_feature_status_request);
	assert_true(e->has_ocsp_no_check && e->ocsp_no_check);
	assert_true(e->has_issuer_alt_names);

	/* SHA-256 on an RSA CA that signs with PSS stays PSS. */
	r = RUN("cert", "sign", "--ca", "rsa-pss", "--csr", csr, "--algorithm", "sha256");
	assert_int_equal(r.rc, 0);
	run_free(&r);
	assert_int_equal(last_req.op.cert_sign.signature_algorithm,
			 p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PSS_SHA256);
	assert_false(last_req.op.cert_sign.has_extensions); /* no option: inherit everything */

	/* A full name needs no look-up. */
	calls = srv.calls;
	r = RUN("cert", "sign", "--ca", "issuing", "--csr", csr, "--algorithm", "rsa-sha512");
	assert_int_equal(r.rc, 0);
	run_free(&r);
	assert_int_equal(srv.calls, calls + 1);
	assert_int_equal(last_req.op.cert_sign.signature_algorithm,
			 p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PKCS1_SHA512);
}

static void test_ca_init_view_edit_import_revoke(void **state)
{
	(void)state;
	srv.mode = MODE_NORMAL;
	struct run r = RUN("ca", "init", "sub", "CN=Sub", "--parent", "rsa-pss", "--no-path-length",
			   "--algorithm", "SHA-512", "--issue-algorithm", "SHA-256",
			   "--permit-name", "DNS:example.com", "--exclude-name", "IP:10.0.0.0/8",
			   "--crl-url", "http://crl.example/{ca_name}.crl", "--ca-crl-url",
			   "http://crl.example/root.crl", "--require-explicit-policy", "0",
			   "--inhibit-any-policy", "1", "--default-profile", "server");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "name:                sub\n");
	run_free(&r);
	const p11ca_v1_CaInitRequest *i = &last_req.op.ca_init;
	assert_int_equal(last_req.which_op, p11ca_v1_Request_ca_init_tag);
	assert_false(i->has_path_length);
	/* Signed by the parent's RSA key, which signs with PSS; issues with its own P-256. */
	assert_int_equal(i->signature_algorithm,
			 p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_RSA_PSS_SHA512);
	assert_int_equal(i->issue_signature_algorithm,
			 p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA256);
	assert_int_equal(i->permitted_names_count, 1);
	assert_string_equal(i->excluded_names[0], "IP:10.0.0.0/8");
	assert_true(i->has_issued && i->issued.has_crl_urls);
	assert_string_equal(i->issued.crl_urls.values[0], "http://crl.example/{ca_name}.crl");
	assert_true(i->has_extensions && i->extensions.has_crl_urls);
	assert_string_equal(i->extensions.crl_urls.values[0], "http://crl.example/root.crl");
	assert_false(i->extensions.has_key_usage);
	assert_true(i->has_require_explicit_policy && i->require_explicit_policy == 0);
	assert_true(i->has_inhibit_any_policy && i->inhibit_any_policy == 1);
	assert_false(i->has_inhibit_policy_mapping);
	assert_string_equal(i->default_profile, "server");

	r = RUN("ca", "view", "issuing");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "issues with:         ecdsa-sha384\n");
	expect_in(r.out, "permitted names:     DNS:example.com\n");
	expect_in(r.out, "  CRL URLs:          http://crl.example/{ca_name}\n");
	expect_in(r.out, "  OCSP URLs:         (none)\n");
	expect_in(r.out, "  issuer URLs:       (inherited)\n");
	run_free(&r);
	r = RUN("--json", "ca", "view", "issuing");
	assert_int_equal(r.rc, 0);
	expect_in(r.out,
		  "\"settings\": {\n    \"enabled\": true,\n    \"default_profile\": \"server\",");
	expect_in(r.out, "\"crl_urls\": [\n        \"http://crl.example/{ca_name}\"\n      ],\n"
			 "      \"ocsp_urls\": [],\n      \"issuer_urls\": null,");
	run_free(&r);

	r = RUN("ca", "edit", "issuing", "--disable", "--no-default-profile", "--ocsp-url",
		"http://ocsp.example");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "enabled:             no (issues nothing)\n");
	run_free(&r);
	const p11ca_v1_CaEditRequest *e = &last_req.op.ca_edit;
	assert_true(e->has_enabled && !e->enabled);
	assert_true(e->has_default_profile);
	assert_string_equal(e->default_profile, "");
	assert_true(e->has_issued && e->issued.has_ocsp_urls && !e->issued.has_crl_urls);
	assert_int_equal(e->signature_algorithm,
			 p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_UNSPECIFIED);

	const char *cert = write_tmp("import-ca.pem", "-----BEGIN CERTIFICATE-----\nx\n");
	r = RUN("ca", "import", "legacy", cert, "--key-uri", "pkcs11:object=legacy;id=%01");
	assert_int_equal(r.rc, 0);
	run_free(&r);
	assert_string_equal(last_req.op.ca_import.key_uri, "pkcs11:object=legacy;id=%01");
	assert_int_equal(last_req.op.ca_import.certificate.size, 30);

	r = RUN("ca", "revoke", "issuing", "--reason", "ca_compromise", "--compromised",
		"2026-11-20T11:00:00+01:00");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "revoked:             2023-11-14T22:21:40Z (cACompromise)\n");
	expect_in(r.out, "compromised:         2026-11-20T10:00:00Z\n");
	run_free(&r);
	assert_int_equal(last_req.op.ca_revoke.compromised_at, 1795168800);
}

static void test_cert_list_filters_and_paging(void **state)
{
	(void)state;
	srv.mode = MODE_NORMAL;
	struct run r = RUN("cert", "list", "--limit", "3", "--ca", "issuing", "--revoked",
			   "--profile", "webserver");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "\n01 ");
	expect_in(r.out, "\n03 ");
	assert_null(strstr(r.out, "\n04 "));
	expect_in(r.err, "continue with --after 03");
	run_free(&r);
	const p11ca_v1_CertListRequest *q = &last_req.op.cert_list;
	assert_string_equal(q->ca, "issuing");
	assert_true(q->revoked && !q->expired);
	assert_string_equal(q->profile, "webserver");
	assert_int_equal(q->limit, 1); /* the third certificate was all that was still wanted */

	r = RUN("cert", "list", "--after", "03");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "\n04 ");
	expect_in(r.out, "\n05 ");
	assert_null(strstr(r.out, "\n03 "));
	assert_string_equal(r.err, "");
	run_free(&r);

	r = RUN("cert", "list", "--all", "--expiring-within", "30");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "\n05 ");
	run_free(&r);
	assert_int_equal(last_req.op.cert_list.expiring_within_days, 30);

	r = RUN("--json", "cert", "list", "--limit", "1");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "\"truncated\": true,\n  \"next_after\": \"01\"\n}\n");
	run_free(&r);
}

static void test_cert_resign_import_watchers(void **state)
{
	(void)state;
	char out[1024];
	snprintf(out, sizeof(out), "%s/resigned.pem", pki.dir);
	srv.mode = MODE_NORMAL;
	struct run r = RUN("cert", "resign", "0a:1b:ff", "--expires", "30", "--profile", "client",
			   "--out", out);
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "serial:              0A1BFF\n");
	run_free(&r);
	assert_string_equal(last_req.op.cert_resign.serial, "0A1BFF");
	assert_int_equal(last_req.op.cert_resign.expires_days, 30);
	assert_string_equal(last_req.op.cert_resign.profile, "client");

	/* A bare hash without --ca: the original's CA is looked up, then that CA's key. */
	int calls = srv.calls;
	r = RUN("cert", "resign", "0A1BFF", "--algorithm", "SHA-512", "--out", out);
	assert_int_equal(r.rc, 0);
	run_free(&r);
	assert_int_equal(srv.calls, calls + 3);
	assert_int_equal(last_req.op.cert_resign.signature_algorithm,
			 p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ECDSA_SHA512);

	const char *file = write_tmp("import.pem", "-----BEGIN CERTIFICATE-----\n");
	r = RUN("cert", "import", file, "--watch", "ops@example.com");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "profile:             imported\n");
	run_free(&r);
	assert_int_equal(last_req.op.cert_import.watchers_count, 1);
	assert_string_equal(last_req.op.cert_import.ca, "");

	r = RUN("cert", "watchers", "0A1BFF", "--add", "n@example.com", "--remove",
		"old@example.com");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "serial:              0A1BFF\n"
				   "watchers:            kept@example.com, n@example.com\n");
	run_free(&r);
	assert_string_equal(last_req.op.cert_watchers.remove[0], "old@example.com");

	r = RUN("--json", "cert", "view", "0A1BFF");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "\"watchers\": [],\n");
	run_free(&r);
}

static void test_profile_list_and_notify(void **state)
{
	(void)state;
	srv.mode = MODE_NORMAL;
	struct run r = RUN("profile", "list");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "webserver (default)\n");
	expect_in(r.out, "  keyUsage:          digitalSignature, keyAgreement (critical)\n");
	expect_in(r.out, "\nocsp (disabled)\n");
	expect_in(r.out, "  OCSPNoCheck:       yes\n");
	run_free(&r);
	r = RUN("--json", "profile", "list");
	assert_int_equal(r.rc, 0);
	expect_in(r.out, "\"key_usage\": {\n        \"names\": [\n          \"digitalSignature\",");
	expect_in(r.out, "\"key_usage\": null,");
	run_free(&r);

	r = RUN("notify", "expiring");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "certificates:        2\nmessages sent:       3\n"
				   "messages failed:     0\n");
	run_free(&r);
	srv.mode = MODE_NOTIFY_FAILS;
	r = RUN("--json", "notify", "expiring");
	assert_int_equal(r.rc, 75);
	expect_in(r.out, "\"messages_failed\": 1\n");
	expect_in(r.err, "retried on the next run");
	run_free(&r);
	srv.mode = MODE_NORMAL;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_ca_list_tree_and_json),
		cmocka_unit_test(test_cert_sign_writes_pem_openssl_reads),
		cmocka_unit_test(test_serial_normalised_and_revoke_denied),
		cmocka_unit_test(test_hsm_activate_pin_file),
		cmocka_unit_test(test_export_der),
		cmocka_unit_test(test_protocol_violations),
		cmocka_unit_test(test_connection_failures),
		cmocka_unit_test(test_client_api),
		cmocka_unit_test(test_cert_sign_extension_options),
		cmocka_unit_test(test_ca_init_view_edit_import_revoke),
		cmocka_unit_test(test_cert_list_filters_and_paging),
		cmocka_unit_test(test_cert_resign_import_watchers),
		cmocka_unit_test(test_profile_list_and_notify),
	};
	return cmocka_run_group_tests_name("cli_e2e", tests, setup, teardown);
}
