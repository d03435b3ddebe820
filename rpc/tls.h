/*
 * TLS for the public RPC (OpenSSL 3): the server and client contexts and the checks made
 * once a handshake is done.
 *
 * Both sides: TLS 1.3 only; ALPN "p11ca/1" required; trust only the CA file given (the
 * management CA), never the system store; no session tickets or session cache, so every
 * connection runs a full handshake and re-verifies the client certificate against the
 * current CA file and role table (admin connections are few; resumption would let a
 * removed client keep its access for a ticket's lifetime).
 *
 * Server: a client certificate is required; it must chain to the CA file, carry the
 * clientAuth extended key usage explicitly (a certificate without an EKU extension is
 * refused, although OpenSSL's own purpose check would accept it) and must not be a CA.
 * A ClientHello without ALPN, or without p11ca/1 in it, is refused during the handshake
 * with a no_application_protocol alert.
 *
 * Client: verifies the server certificate against the CA file and the expected host name
 * or IP address (rpc_tls_client_expect_host, mandatory), presents its own certificate.
 *
 * In TLS 1.3 a client learns that the server refused its certificate only on its first
 * read, not from SSL_connect. Callers must therefore always run rpc_tls_check_peer after
 * the handshake and treat a failed first read as a refusal.
 */
#ifndef P11CA_RPC_TLS_H
#define P11CA_RPC_TLS_H

#include <stdint.h>

#include <openssl/ssl.h>

#include "common/err.h"
#include "rpc/role.h"

#define RPC_TLS_ALPN "p11ca/1"

/*
 * A server context. ca_file: PEM CA certificate(s) client certificates must chain to;
 * cert_file: PEM server certificate, then any intermediates; key_file: its PEM key.
 * Errors: P11CA_E_CONFIG (a file missing or unusable, key not matching the certificate),
 * P11CA_E_NOMEM, P11CA_E_INVALID_ARG. Free with rpc_tls_ctx_free.
 */
P11CA_MUST_CHECK enum p11ca_err rpc_tls_server_ctx_new(const char *ca_file, const char *cert_file,
						       const char *key_file, SSL_CTX **out,
						       struct p11ca_errmsg *em);

/* A client context: ca_file is what the server must chain to; cert_file/key_file the
 * client's credential (both required). Errors as rpc_tls_server_ctx_new. */
P11CA_MUST_CHECK enum p11ca_err rpc_tls_client_ctx_new(const char *ca_file, const char *cert_file,
						       const char *key_file, SSL_CTX **out,
						       struct p11ca_errmsg *em);

/* SSL_CTX_free and set *ctx to NULL. NULL-safe. */
void rpc_tls_ctx_free(SSL_CTX **ctx);

/* Before SSL_connect: the server's certificate must match `host`, an IP address literal
 * (v4 or v6, no brackets) or a DNS name (also sent as SNI). Wildcards match one whole
 * label only. Errors: P11CA_E_INVALID_ARG (empty or unusable name), P11CA_E_NOMEM. */
P11CA_MUST_CHECK enum p11ca_err rpc_tls_client_expect_host(SSL *ssl, const char *host,
							   struct p11ca_errmsg *em);

/* After a successful handshake, on either side: TLS 1.3, a verified peer certificate,
 * ALPN p11ca/1, and (client side) a host name or address was checked. Defence in depth
 * over the context settings. Error: P11CA_E_PERMISSION, naming what was wrong. */
P11CA_MUST_CHECK enum p11ca_err rpc_tls_check_peer(SSL *ssl, struct p11ca_errmsg *em);

/* SHA-256 of the DER encoding of the peer's certificate.
 * Errors: P11CA_E_PERMISSION (no peer certificate), P11CA_E_INTERNAL. */
P11CA_MUST_CHECK enum p11ca_err rpc_tls_peer_fingerprint(SSL *ssl, uint8_t fp[RPC_FINGERPRINT_LEN],
							 struct p11ca_errmsg *em);

/* Server side, after the handshake: rpc_tls_check_peer, then the fingerprint's role in
 * `roles` (RPC_ROLE_NONE when absent, which is not an error here: the operation table
 * refuses everything to it, and the refusal is audited with the fingerprint). fp may be
 * NULL. Errors: as rpc_tls_check_peer and rpc_tls_peer_fingerprint. */
P11CA_MUST_CHECK enum p11ca_err rpc_tls_peer_role(SSL *ssl, const struct rpc_role_table *roles,
						  enum rpc_role *role,
						  uint8_t fp[RPC_FINGERPRINT_LEN],
						  struct p11ca_errmsg *em);

/* The serial number of the verified peer certificate, unsigned big-endian, into
 * serial[0..*len) (at most 20 bytes, RFC 5280). Errors: P11CA_E_PROTO (no peer certificate,
 * or a serial that is negative or longer than 20 octets). */
P11CA_MUST_CHECK enum p11ca_err rpc_tls_peer_serial(SSL *ssl, uint8_t serial[20], size_t *len,
						    struct p11ca_errmsg *em);

#endif
