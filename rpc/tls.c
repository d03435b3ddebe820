#include "rpc/tls.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

/* Leaf, the management CA and room for one or two intermediates above it. */
#define TLS_VERIFY_DEPTH 4

/* ALPN wire format: a length byte, then the name. */
static const unsigned char alpn_wire[] = "\x07" RPC_TLS_ALPN;
#define ALPN_WIRE_LEN (sizeof(alpn_wire) - 1)
_Static_assert(sizeof(RPC_TLS_ALPN) - 1 == 7, "alpn_wire's length byte is wrong");

/* Record `what` with OpenSSL's most specific error, and drain its error queue so the
 * next caller on this thread starts clean. */
__attribute__((format(printf, 3, 4))) static enum p11ca_err
tls_fail(struct p11ca_errmsg *em, enum p11ca_err code, const char *fmt, ...)
{
	char what[256], detail[256] = "no further detail";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	unsigned long e = ERR_peek_last_error();
	if (e != 0)
		ERR_error_string_n(e, detail, sizeof(detail));
	ERR_clear_error();
	return p11ca_fail(em, code, "%s: %s", what, detail);
}

/* An encrypted key file must fail to load, not make OpenSSL prompt on a terminal. */
static int no_password_cb(char *buf, int size, int rwflag, void *arg)
{
	(void)buf, (void)size, (void)rwflag, (void)arg;
	return 0;
}

P11CA_MUST_CHECK static enum p11ca_err ctx_new(const SSL_METHOD *method, const char *ca_file,
					       const char *cert_file, const char *key_file,
					       SSL_CTX **out, struct p11ca_errmsg *em)
{
	SSL_CTX *ctx = NULL;
	enum p11ca_err err = P11CA_OK;

	*out = NULL;
	if (ca_file == NULL || cert_file == NULL || key_file == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "TLS needs a CA file, a certificate and a key");
	ctx = SSL_CTX_new(method);
	if (ctx == NULL)
		return tls_fail(em, P11CA_E_NOMEM, "cannot create a TLS context");
	SSL_CTX_set_default_passwd_cb(ctx, no_password_cb);
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
		err = tls_fail(em, P11CA_E_INTERNAL, "cannot restrict TLS to version 1.3");
		goto out;
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	/* Only the management CA: never SSL_CTX_set_default_verify_paths. */
	if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
		err = tls_fail(em, P11CA_E_CONFIG, "cannot load CA certificates from %s", ca_file);
		goto out;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		err = tls_fail(em, P11CA_E_CONFIG, "cannot load certificate %s", cert_file);
		goto out;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		err = tls_fail(em, P11CA_E_CONFIG, "cannot load private key %s (unencrypted PEM)",
			       key_file);
		goto out;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		err = tls_fail(em, P11CA_E_CONFIG, "key %s does not match certificate %s", key_file,
			       cert_file);
		goto out;
	}
	SSL_CTX_set_verify_depth(ctx, TLS_VERIFY_DEPTH);
	*out = ctx;
	ctx = NULL;
out:
	SSL_CTX_free(ctx);
	return err;
}

/* OpenSSL's SSL-client purpose check only rejects an EKU extension that lacks clientAuth;
 * a leaf with no EKU at all would pass. The contract wants clientAuth stated, and a CA
 * certificate is never a client. */
static int server_verify_cb(int ok, X509_STORE_CTX *xs)
{
	if (!ok || X509_STORE_CTX_get_error_depth(xs) != 0)
		return ok;
	X509 *leaf = X509_STORE_CTX_get_current_cert(xs);
	if (leaf == NULL || !(X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE) ||
	    !(X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT) || X509_check_ca(leaf) != 0) {
		X509_STORE_CTX_set_error(xs, X509_V_ERR_INVALID_PURPOSE);
		return 0;
	}
	return 1;
}

/* A ClientHello without ALPN never reaches the ALPN callback, so refuse it here. */
static int server_hello_cb(SSL *ssl, int *alert, void *arg)
{
	const unsigned char *ext = NULL;
	size_t ext_len = 0;
	(void)arg;
	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
				      &ext_len) != 1) {
		*alert = SSL_AD_NO_APPLICATION_PROTOCOL;
		return SSL_CLIENT_HELLO_ERROR;
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

static int server_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *out_len,
			  const unsigned char *in, unsigned int in_len, void *arg)
{
	unsigned char *sel = NULL;
	(void)ssl, (void)arg;
	if (SSL_select_next_proto(&sel, out_len, alpn_wire, ALPN_WIRE_LEN, in, in_len) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

enum p11ca_err rpc_tls_server_ctx_new(const char *ca_file, const char *cert_file,
				      const char *key_file, SSL_CTX **out, struct p11ca_errmsg *em)
{
	SSL_CTX *ctx = NULL;
	STACK_OF(X509_NAME) *names = NULL;
	enum p11ca_err err;

	*out = NULL;
	err = ctx_new(TLS_server_method(), ca_file, cert_file, key_file, &ctx, em);
	if (err != P11CA_OK)
		goto out;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			   server_verify_cb);
	if (SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
		err = tls_fail(em, P11CA_E_INTERNAL, "cannot require the clientAuth purpose");
		goto out;
	}
	/* Tell clients which CA to pick a certificate from (certificate_authorities). */
	names = SSL_load_client_CA_file(ca_file);
	if (names == NULL) {
		err = tls_fail(em, P11CA_E_CONFIG, "no CA certificate names in %s", ca_file);
		goto out;
	}
	SSL_CTX_set_client_CA_list(ctx, names);
	if (SSL_CTX_set_num_tickets(ctx, 0) != 1) {
		err = tls_fail(em, P11CA_E_INTERNAL, "cannot disable session tickets");
		goto out;
	}
	SSL_CTX_set_client_hello_cb(ctx, server_hello_cb, NULL);
	SSL_CTX_set_alpn_select_cb(ctx, server_alpn_cb, NULL);
	*out = ctx;
	ctx = NULL;
out:
	SSL_CTX_free(ctx);
	return err;
}

enum p11ca_err rpc_tls_client_ctx_new(const char *ca_file, const char *cert_file,
				      const char *key_file, SSL_CTX **out, struct p11ca_errmsg *em)
{
	SSL_CTX *ctx = NULL;
	enum p11ca_err err;

	*out = NULL;
	err = ctx_new(TLS_client_method(), ca_file, cert_file, key_file, &ctx, em);
	if (err != P11CA_OK)
		goto out;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER) != 1) {
		err = tls_fail(em, P11CA_E_INTERNAL, "cannot require the serverAuth purpose");
		goto out;
	}
	/* Unlike the rest of the API, 0 means success here. */
	if (SSL_CTX_set_alpn_protos(ctx, alpn_wire, ALPN_WIRE_LEN) != 0) {
		err = tls_fail(em, P11CA_E_NOMEM, "cannot set ALPN");
		goto out;
	}
	*out = ctx;
	ctx = NULL;
out:
	SSL_CTX_free(ctx);
	return err;
}

void rpc_tls_ctx_free(SSL_CTX **ctx)
{
	if (ctx == NULL)
		return;
	SSL_CTX_free(*ctx);
	*ctx = NULL;
}

enum p11ca_err rpc_tls_client_expect_host(SSL *ssl, const char *host, struct p11ca_errmsg *em)
{
	if (ssl == NULL || host == NULL || host[0] == '\0')
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "no server name to verify");
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
	X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	/* An address literal must match an iPAddress SAN, never a DNS name. */
	if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) == 1)
		return P11CA_OK;
	ERR_clear_error();
	if (SSL_set1_host(ssl, host) != 1)
		return tls_fail(em, P11CA_E_INVALID_ARG, "cannot verify server name '%.64s'", host);
	if (SSL_set_tlsext_host_name(ssl, host) != 1)
		return tls_fail(em, P11CA_E_INVALID_ARG, "cannot send server name '%.64s'", host);
	return P11CA_OK;
}

enum p11ca_err rpc_tls_check_peer(SSL *ssl, struct p11ca_errmsg *em)
{
	const unsigned char *alpn = NULL;
	unsigned int alpn_len = 0;

	if (ssl == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_tls_check_peer: no connection");
	if (SSL_version(ssl) != TLS1_3_VERSION)
		return p11ca_fail(em, P11CA_E_PERMISSION, "the peer did not negotiate TLS 1.3");
	if (SSL_get0_peer_certificate(ssl) == NULL)
		return p11ca_fail(em, P11CA_E_PERMISSION, "the peer presented no certificate");
	long vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK)
		return p11ca_fail(em, P11CA_E_PERMISSION, "the peer's certificate is refused: %s",
				  X509_verify_cert_error_string(vr));
	SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
	if (alpn_len != ALPN_WIRE_LEN - 1 || memcmp(alpn, alpn_wire + 1, alpn_len) != 0)
		return p11ca_fail(em, P11CA_E_PERMISSION, "the peer did not agree on ALPN %s",
				  RPC_TLS_ALPN);
	if (!SSL_is_server(ssl)) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
		char *ip = X509_VERIFY_PARAM_get1_ip_asc(vp);
		bool named = ip != NULL || X509_VERIFY_PARAM_get0_host(vp, 0) != NULL;
		OPENSSL_free(ip);
		if (!named)
			return p11ca_fail(em, P11CA_E_PERMISSION,
					  "the server's name was not checked: call "
					  "rpc_tls_client_expect_host before connecting");
	}
	return P11CA_OK;
}

enum p11ca_err rpc_tls_peer_fingerprint(SSL *ssl, uint8_t fp[RPC_FINGERPRINT_LEN],
					struct p11ca_errmsg *em)
{
	unsigned int len = 0;
	unsigned char md[EVP_MAX_MD_SIZE];

	X509 *peer = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
	if (peer == NULL || fp == NULL)
		return p11ca_fail(em, P11CA_E_PERMISSION, "the peer presented no certificate");
	if (X509_digest(peer, EVP_sha256(), md, &len) != 1 || len != RPC_FINGERPRINT_LEN)
		return tls_fail(em, P11CA_E_INTERNAL, "cannot hash the peer's certificate");
	memcpy(fp, md, RPC_FINGERPRINT_LEN);
	return P11CA_OK;
}

enum p11ca_err rpc_tls_peer_role(SSL *ssl, const struct rpc_role_table *roles, enum rpc_role *role,
				 uint8_t fp[RPC_FINGERPRINT_LEN], struct p11ca_errmsg *em)
{
	uint8_t local[RPC_FINGERPRINT_LEN];

	if (role == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_tls_peer_role: no output");
	*role = RPC_ROLE_NONE;
	P11CA_GUARD(rpc_tls_check_peer(ssl, em));
	P11CA_GUARD(rpc_tls_peer_fingerprint(ssl, local, em));
	*role = rpc_role_table_lookup(roles, local);
	if (fp != NULL)
		memcpy(fp, local, sizeof(local));
	return P11CA_OK;
}

enum p11ca_err rpc_tls_peer_serial(SSL *ssl, uint8_t serial[20], size_t *len,
				   struct p11ca_errmsg *em)
{
	X509 *peer = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
	BIGNUM *bn = NULL;
	enum p11ca_err err = P11CA_OK;

	*len = 0;
	if (peer == NULL)
		return p11ca_fail(em, P11CA_E_PROTO, "the peer sent no certificate");
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(peer), NULL);
	if (bn == NULL || BN_is_negative(bn) || BN_num_bytes(bn) > 20)
		err = p11ca_fail(em, P11CA_E_PROTO,
				 "the client certificate's serial is negative or over 20 octets");
	else
		*len = (size_t)BN_bn2bin(bn, serial);
	BN_free(bn);
	return err;
}
