/*
 * Unit tests for rpc/tls: real handshakes between a server thread and a client over a
 * socketpair, with a throwaway PKI made here with OpenSSL's API in $TMPDIR. Each refusal
 * the contract promises is shown to happen, and for certificate refusals the reason is
 * checked too, so a test cannot pass because of some unrelated failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "rpc/test_pki.h"
#include "rpc/tls.h"

static const struct test_pki_ext server_eku_exts[] = {
	{"basicConstraints", "CA:FALSE"},
	{"extendedKeyUsage", "serverAuth"},
};
static const struct test_pki_ext no_eku_exts[] = {
	{"basicConstraints", "CA:FALSE"},
	{"keyUsage", "critical,digitalSignature"},
};
static const struct test_pki_ext ca_client_exts[] = {
	{"basicConstraints", "critical,CA:TRUE"},
	{"keyUsage", "critical,keyCertSign,digitalSignature"},
	{"extendedKeyUsage", "clientAuth"},
};
static const struct test_pki_profile server_eku = TEST_PKI_PROFILE(server_eku_exts);
static const struct test_pki_profile no_eku = TEST_PKI_PROFILE(no_eku_exts);
static const struct test_pki_profile ca_client = TEST_PKI_PROFILE(ca_client_exts);
#define N(a) TEST_PKI_N(a)

static struct test_pki pki;
static struct rpc_role_table *roles;
static SSL_CTX *server_ctx;

static const char *path(const char *name, const char *ext)
{
	return test_pki_path(&pki, name, ext);
}

static int setup(void **state)
{
	(void)state;
	if (test_pki_init(&pki, "p11ca-tls", 1) != 0)
		return -1;

	X509 *certs[] = {
		test_pki_issue(&pki, "server", TEST_PKI_CA, &test_pki_server),
		test_pki_issue(&pki, "client", TEST_PKI_CA, &test_pki_client),
		test_pki_issue(&pki, "unlisted", TEST_PKI_CA, &test_pki_client),
		test_pki_issue(&pki, "foreign", TEST_PKI_OTHER_CA, &test_pki_client),
		test_pki_issue(&pki, "server-eku", TEST_PKI_CA, &server_eku),
		test_pki_issue(&pki, "no-eku", TEST_PKI_CA, &no_eku),
		test_pki_issue(&pki, "ca-client", TEST_PKI_CA, &ca_client),
	};

	/* The role table, in its text form, built from the client certificate's digest as
	 * `openssl x509 -fingerprint -sha256` would print it (with colons). */
	unsigned char md[32];
	unsigned int md_len = 0;
	assert_int_equal(X509_digest(certs[1], EVP_sha256(), md, &md_len), 1);
	char line[256];
	size_t off = 0;
	for (size_t i = 0; i < md_len; i++)
		off += (size_t)snprintf(line + off, sizeof(line) - off, "%02x%s", md[i],
					i + 1 < md_len ? ":" : "");
	snprintf(line + off, sizeof(line) - off, "  Operator  # the test client\n");
	assert_int_equal(rpc_role_table_new(&roles, NULL), P11CA_OK);
	assert_int_equal(rpc_role_table_parse(roles, line, strlen(line), "test", NULL), P11CA_OK);

	for (size_t i = 0; i < N(certs); i++)
		X509_free(certs[i]);
	test_pki_done(&pki);

	struct p11ca_errmsg em = {0};
	if (rpc_tls_server_ctx_new(path("ca", "crt"), path("server", "crt"), path("server", "key"),
				   &server_ctx, &em) != P11CA_OK) {
		fprintf(stderr, "server context: %s\n", p11ca_errmsg_text(&em));
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rpc_tls_ctx_free(&server_ctx);
	rpc_role_table_free(&roles);
	static const char *names[] = {"ca",	 "other-ca",   "server", "client",   "unlisted",
				      "foreign", "server-eku", "no-eku", "ca-client"};
	for (size_t i = 0; i < N(names); i++) {
		unlink(path(names[i], "crt"));
		unlink(path(names[i], "key"));
	}
	rmdir(pki.dir);
	return 0;
}

struct hs {
	SSL_CTX *client_ctx;
	const char *host;
	int fds[2];
	/* results */
	bool accepted;	/* SSL_accept succeeded: the handshake itself was not refused */
	bool server_ok; /* ...and rpc_tls_peer_role accepted the peer */
	bool client_ok;
	long server_verify;
	enum rpc_role role;
	struct p11ca_errmsg server_em, client_em;
};

static void *server_thread(void *arg)
{
	struct hs *h = arg;
	SSL *ssl = SSL_new(server_ctx);
	SSL_set_fd(ssl, h->fds[0]);
	h->accepted = SSL_accept(ssl) == 1;
	if (h->accepted &&
	    rpc_tls_peer_role(ssl, roles, &h->role, NULL, &h->server_em) == P11CA_OK) {
		h->server_ok = true;
		(void)SSL_write(ssl, "k", 1);
	}
	h->server_verify = SSL_get_verify_result(ssl);
	ERR_clear_error();
	SSL_free(ssl);
	close(h->fds[0]);
	return NULL;
}

/* One connection attempt. The server writes one byte after accepting; the client counts
 * as connected only once it has read it, since in TLS 1.3 a refused client certificate
 * shows up on the client's first read, not in SSL_connect. */
static void handshake(struct hs *h)
{
	pthread_t t;
	char c = 0;
	/* A safety net only: no test waits on it when the code under test is right. */
	struct timeval tv = {.tv_sec = 10};

	h->role = RPC_ROLE_NONE;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, h->fds), 0);
	for (int i = 0; i < 2; i++) {
		setsockopt(h->fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(h->fds[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	assert_int_equal(pthread_create(&t, NULL, server_thread, h), 0);
	SSL *ssl = SSL_new(h->client_ctx);
	assert_non_null(ssl);
	SSL_set_fd(ssl, h->fds[1]);
	if (h->host != NULL)
		assert_int_equal(rpc_tls_client_expect_host(ssl, h->host, NULL), P11CA_OK);
	if (SSL_connect(ssl) == 1 && rpc_tls_check_peer(ssl, &h->client_em) == P11CA_OK &&
	    SSL_read(ssl, &c, 1) == 1 && c == 'k')
		h->client_ok = true;
	ERR_clear_error();
	SSL_free(ssl);
	close(h->fds[1]);
	assert_int_equal(pthread_join(t, NULL), 0);
}

static SSL_CTX *client_ctx(const char *name)
{
	SSL_CTX *ctx = NULL;
	struct p11ca_errmsg em = {0};
	enum p11ca_err err = rpc_tls_client_ctx_new(path("ca", "crt"), path(name, "crt"),
						    path(name, "key"), &ctx, &em);
	if (err != P11CA_OK)
		fail_msg("client context: %s", p11ca_errmsg_text(&em));
	return ctx;
}

static void test_good_client_gets_its_role(void **state)
{
	(void)state;
	struct hs h = {.client_ctx = client_ctx("client"), .host = "localhost"};
	handshake(&h);
	assert_true(h.server_ok);
	assert_true(h.client_ok);
	assert_int_equal(h.role, RPC_ROLE_OPERATOR);
	rpc_tls_ctx_free(&h.client_ctx);

	/* The same by IP address: the server certificate's iPAddress SAN. */
	struct hs ip = {.client_ctx = client_ctx("client"), .host = "127.0.0.1"};
	handshake(&ip);
	assert_true(ip.server_ok && ip.client_ok);
	rpc_tls_ctx_free(&ip.client_ctx);
}

static void test_unlisted_client_has_no_role(void **state)
{
	(void)state;
	struct hs h = {.client_ctx = client_ctx("unlisted"), .host = "localhost"};
	handshake(&h);
	assert_true(h.server_ok);		 /* authenticated... */
	assert_int_equal(h.role, RPC_ROLE_NONE); /* ...but allowed nothing */
	rpc_tls_ctx_free(&h.client_ctx);
}

static void test_no_client_certificate_refused(void **state)
{
	(void)state;
	/* Built by hand: rpc_tls_client_ctx_new insists on a certificate. */
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION), 1);
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, path("ca", "crt"), NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	assert_int_equal(SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x07p11ca/1", 8), 0);
	struct hs h = {.client_ctx = ctx, .host = "localhost"};
	handshake(&h);
	assert_false(h.accepted);
	assert_false(h.server_ok);
	assert_false(h.client_ok);
	SSL_CTX_free(ctx);
}

/* A certificate refused by the server, and the verification error it must be refused
 * with. */
static void expect_refused_cert(const char *name, long verify_error)
{
	struct hs h = {.client_ctx = client_ctx(name), .host = "localhost"};
	handshake(&h);
	assert_false(h.accepted);
	assert_false(h.server_ok);
	assert_false(h.client_ok);
	assert_int_equal(h.server_verify, verify_error);
	rpc_tls_ctx_free(&h.client_ctx);
}

static void test_foreign_ca_refused(void **state)
{
	(void)state;
	expect_refused_cert("foreign", X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
}

static void test_missing_client_auth_eku_refused(void **state)
{
	(void)state;
	expect_refused_cert("server-eku", X509_V_ERR_INVALID_PURPOSE);
	/* No EKU extension at all: OpenSSL's purpose check alone would let this through. */
	expect_refused_cert("no-eku", X509_V_ERR_INVALID_PURPOSE);
	/* A CA certificate is never a client, whatever EKU it carries. */
	expect_refused_cert("ca-client", X509_V_ERR_INVALID_PURPOSE);
}

static void test_tls12_client_refused(void **state)
{
	(void)state;
	SSL_CTX *ctx = client_ctx("client");
	assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION), 1);
	assert_int_equal(SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION), 1);
	struct hs h = {.client_ctx = ctx, .host = "localhost"};
	handshake(&h);
	assert_false(h.accepted);
	assert_false(h.server_ok);
	assert_false(h.client_ok);
	SSL_CTX_free(ctx);
}

static void test_wrong_or_missing_alpn_refused(void **state)
{
	(void)state;
	SSL_CTX *ctx = client_ctx("client");
	assert_int_equal(SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x08http/1.1", 9), 0);
	struct hs h = {.client_ctx = ctx, .host = "localhost"};
	handshake(&h);
	assert_false(h.accepted);
	assert_false(h.client_ok);
	SSL_CTX_free(ctx);

	/* A neighbour version is another protocol, not a close match. */
	ctx = client_ctx("client");
	assert_int_equal(SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x07p11ca/2", 8), 0);
	struct hs v2 = {.client_ctx = ctx, .host = "localhost"};
	handshake(&v2);
	assert_false(v2.accepted);
	SSL_CTX_free(ctx);

	ctx = client_ctx("client");
	assert_int_equal(SSL_CTX_set_alpn_protos(ctx, NULL, 0), 0); /* no ALPN extension */
	struct hs none = {.client_ctx = ctx, .host = "localhost"};
	handshake(&none);
	assert_false(none.accepted);
	assert_false(none.client_ok);
	SSL_CTX_free(ctx);
}

static void test_client_checks_server_name(void **state)
{
	(void)state;
	struct hs h = {.client_ctx = client_ctx("client"), .host = "ca.example"};
	handshake(&h);
	assert_false(h.client_ok);
	assert_false(h.server_ok);
	rpc_tls_ctx_free(&h.client_ctx);

	/* Forgetting rpc_tls_client_expect_host is caught after the handshake. */
	struct hs anon = {.client_ctx = client_ctx("client"), .host = NULL};
	handshake(&anon);
	assert_false(anon.client_ok);
	assert_int_equal(anon.client_em.code, P11CA_E_PERMISSION);
	assert_non_null(strstr(anon.client_em.text, "expect_host"));
	rpc_tls_ctx_free(&anon.client_ctx);
}

static void test_context_errors(void **state)
{
	(void)state;
	SSL_CTX *ctx = (SSL_CTX *)&ctx;
	struct p11ca_errmsg em = {0};
	assert_int_equal(rpc_tls_server_ctx_new(NULL, path("server", "crt"), path("server", "key"),
						&ctx, &em),
			 P11CA_E_INVALID_ARG);
	assert_null(ctx);
	p11ca_errmsg_clear(&em);
	assert_int_equal(rpc_tls_server_ctx_new(path("missing", "crt"), path("server", "crt"),
						path("server", "key"), &ctx, &em),
			 P11CA_E_CONFIG);
	assert_non_null(strstr(em.text, "missing.crt"));
	p11ca_errmsg_clear(&em);
	/* A key that is not the certificate's (OpenSSL notices while loading it). */
	assert_int_equal(rpc_tls_client_ctx_new(path("ca", "crt"), path("client", "crt"),
						path("unlisted", "key"), &ctx, &em),
			 P11CA_E_CONFIG);
	assert_non_null(strstr(em.text, "unlisted.key"));
	assert_non_null(strstr(em.text, "mismatch"));
	assert_int_equal(
		rpc_tls_client_ctx_new(path("ca", "crt"), path("client", "crt"), NULL, &ctx, NULL),
		P11CA_E_INVALID_ARG);
	assert_null(ctx);
	rpc_tls_ctx_free(&ctx); /* NULL-safe */
	rpc_tls_ctx_free(NULL);
}

static void test_peer_functions_refuse_misuse(void **state)
{
	(void)state;
	uint8_t fp[RPC_FINGERPRINT_LEN];
	enum rpc_role role = RPC_ROLE_ADMIN;
	assert_int_equal(rpc_tls_check_peer(NULL, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_tls_peer_fingerprint(NULL, fp, NULL), P11CA_E_PERMISSION);
	assert_int_equal(rpc_tls_peer_role(NULL, roles, NULL, fp, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_tls_peer_role(NULL, roles, &role, fp, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(role, RPC_ROLE_NONE);

	/* Before any handshake a connection has no peer and no protocol version yet. */
	SSL *ssl = SSL_new(server_ctx);
	assert_non_null(ssl);
	assert_int_equal(rpc_tls_check_peer(ssl, NULL), P11CA_E_PERMISSION);
	assert_int_equal(rpc_tls_peer_fingerprint(ssl, fp, NULL), P11CA_E_PERMISSION);
	assert_int_equal(rpc_tls_client_expect_host(ssl, "", NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_tls_client_expect_host(NULL, "localhost", NULL), P11CA_E_INVALID_ARG);
	SSL_free(ssl);
}

int main(void)
{
	/* The server writes after a client may already have gone away. */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_client_gets_its_role),
		cmocka_unit_test(test_unlisted_client_has_no_role),
		cmocka_unit_test(test_no_client_certificate_refused),
		cmocka_unit_test(test_foreign_ca_refused),
		cmocka_unit_test(test_missing_client_auth_eku_refused),
		cmocka_unit_test(test_tls12_client_refused),
		cmocka_unit_test(test_wrong_or_missing_alpn_refused),
		cmocka_unit_test(test_client_checks_server_name),
		cmocka_unit_test(test_context_errors),
		cmocka_unit_test(test_peer_functions_refuse_misuse),
	};
	return cmocka_run_group_tests_name("tls", tests, setup, teardown);
}
