/*
 * The engine's stubs for the signer's calls (hsm/signer.h). Each builds one SignerCall,
 * waits for its SignerReply on the channel and turns the reply back into a p11ca error and
 * its sentence, so the engine sees the signer's failures as if it had called hsm/ itself.
 * The engine links this file but never the PKCS#11 core: it only talks to the channel.
 */
#include "hsm/signer.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "hsm/signer.pb.h"

/* How long a call may take before the signer counts as stuck. A signature waits at most
 * the pool's busy timeout plus recovery; generating an RSA-4096 key on a slow HSM takes
 * far longer. */
#define SIGNER_CALL_TIMEOUT_MS	 60000
#define SIGNER_KEYGEN_TIMEOUT_MS 600000

typedef p11ca_signer_v1_SignerCall signer_call_t;
typedef p11ca_signer_v1_SignerReply signer_reply_t;

/* One call and its reply: a SignerCall is ~62 KiB, too big for a worker's stack. */
struct exchange {
	signer_call_t call;
	signer_reply_t reply;
};

static void exchange_free(struct exchange **x)
{
	if (*x == NULL)
		return;
	/* An activation carried a PIN. */
	explicit_bzero(*x, sizeof(**x));
	free(*x);
	*x = NULL;
}

static enum p11ca_err exchange_new(pb_size_t op, struct exchange **out, struct p11ca_errmsg *em)
{
	*out = calloc(1, sizeof(**out));
	if (*out == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory for a signer call");
	(*out)->call.which_op = op;
	return P11CA_OK;
}

/* Send the call; an answer without the expected result is the signer breaking protocol. */
static enum p11ca_err exchange_run(struct chan *ch, struct exchange *x, pb_size_t want,
				   int timeout_ms, struct p11ca_errmsg *em)
{
	if (ch == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "no signer channel");
	P11CA_GUARD(chan_call(ch, &x->call, &x->reply, timeout_ms, em));
	if (x->reply.error != 0) {
		enum p11ca_err code = (enum p11ca_err)x->reply.error;
		/* A code this build does not know is the signer misbehaving, not a result. */
		if (strcmp(p11ca_err_name(code), "P11CA_E_UNKNOWN") == 0)
			code = P11CA_E_PROTO;
		return p11ca_fail(em, code, "%s", x->reply.message);
	}
	if (x->reply.which_result != want)
		return p11ca_fail(em, P11CA_E_PROTO,
				  "the signer answered a call with the wrong result (%u, want %u)",
				  (unsigned)x->reply.which_result, (unsigned)want);
	return P11CA_OK;
}

static enum p11ca_err copy_str(char *dst, size_t cap, const char *src, const char *what,
			       struct p11ca_errmsg *em)
{
	size_t n = src != NULL ? strlen(src) : 0;
	if (n == 0 || n >= cap)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "%s must be 1..%zu bytes", what,
				  cap - 1);
	memcpy(dst, src, n + 1);
	return P11CA_OK;
}

/* A DER SubjectPublicKeyInfo from the signer, exactly one. */
static enum p11ca_err parse_spki(const uint8_t *der, size_t len, EVP_PKEY **pub,
				 struct p11ca_errmsg *em)
{
	const unsigned char *p = der;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);

	if (k == NULL || p != der + len) {
		EVP_PKEY_free(k);
		return p11ca_fail(em, P11CA_E_PROTO,
				  "the signer sent a public key that does "
				  "not parse");
	}
	*pub = k;
	return P11CA_OK;
}

enum p11ca_err signer_client_open(int fd, const struct p11ca_logger *log, struct chan **out,
				  struct p11ca_errmsg *em)
{
	struct chan_spec spec = {
		.name = "engine→signer",
		.out_fields = p11ca_signer_v1_SignerCall_fields,
		.out_size = sizeof(signer_call_t),
		.in_fields = p11ca_signer_v1_SignerReply_fields,
		.in_size = sizeof(signer_reply_t),
		.max_frame = p11ca_signer_v1_SignerCall_size > p11ca_signer_v1_SignerReply_size
				     ? p11ca_signer_v1_SignerCall_size
				     : p11ca_signer_v1_SignerReply_size,
		.is_server = 0,
		.log = log,
	};
	return chan_open(fd, &spec, out, em);
}

enum p11ca_err signer_sign(struct chan *ch, const char *key_uri, enum signer_tbs_kind kind,
			   const uint8_t *tbs, size_t tbs_len, const uint8_t *issuer_cert,
			   size_t issuer_cert_len, uint8_t *sig, size_t sig_cap, size_t *sig_len,
			   struct p11ca_errmsg *em)
{
	struct exchange *x = NULL;
	p11ca_signer_v1_SignRequest *rq;
	enum p11ca_err err;

	if (tbs == NULL || sig == NULL || sig_len == NULL ||
	    (issuer_cert == NULL && issuer_cert_len != 0))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "signer_sign: NULL argument");
	P11CA_GUARD(exchange_new(p11ca_signer_v1_SignerCall_sign_tag, &x, em));
	rq = &x->call.op.sign;
	err = copy_str(rq->key_uri, sizeof(rq->key_uri), key_uri, "key URI", em);
	if (err != P11CA_OK)
		goto out;
	if (tbs_len > sizeof(rq->tbs.bytes) || issuer_cert_len > sizeof(rq->issuer_cert.bytes)) {
		err = p11ca_fail(em, P11CA_E_PROTO_TOO_LARGE,
				 "TBS of %zu bytes or issuer certificate of %zu bytes is over the "
				 "signer's limit (%zu, %zu)",
				 tbs_len, issuer_cert_len, sizeof(rq->tbs.bytes),
				 sizeof(rq->issuer_cert.bytes));
		goto out;
	}
	/* The kind travels as given: the signer, not the stub, refuses an unknown one. */
	rq->kind = (p11ca_signer_v1_TbsKind)kind;
	memcpy(rq->tbs.bytes, tbs, tbs_len);
	rq->tbs.size = (pb_size_t)tbs_len;
	if (issuer_cert_len > 0)
		memcpy(rq->issuer_cert.bytes, issuer_cert, issuer_cert_len);
	rq->issuer_cert.size = (pb_size_t)issuer_cert_len;

	err = exchange_run(ch, x, p11ca_signer_v1_SignerReply_sign_tag, SIGNER_CALL_TIMEOUT_MS, em);
	if (err != P11CA_OK)
		goto out;
	const p11ca_signer_v1_SignResponse_signature_t *s = &x->reply.result.sign.signature;
	if (s->size == 0 || s->size > sig_cap) {
		err = p11ca_fail(em, s->size == 0 ? P11CA_E_PROTO : P11CA_E_INVALID_ARG,
				 "signature of %u bytes does not fit the caller's %zu",
				 (unsigned)s->size, sig_cap);
		goto out;
	}
	memcpy(sig, s->bytes, s->size);
	*sig_len = s->size;
out:
	exchange_free(&x);
	return err;
}

enum p11ca_err signer_key_generate(struct chan *ch, enum hsm_key_type type, const char *label,
				   char uri[SIGNER_URI_MAX], EVP_PKEY **pub,
				   struct p11ca_errmsg *em)
{
	struct exchange *x = NULL;
	const char *type_name = hsm_key_type_name(type);
	enum p11ca_err err;

	if (uri == NULL || pub == NULL || type_name == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "signer_key_generate: bad argument");
	P11CA_GUARD(exchange_new(p11ca_signer_v1_SignerCall_key_generate_tag, &x, em));
	p11ca_signer_v1_KeyGenerateRequest *rq = &x->call.op.key_generate;
	err = copy_str(rq->label, sizeof(rq->label), label, "key label", em);
	if (err == P11CA_OK)
		err = copy_str(rq->key_type, sizeof(rq->key_type), type_name, "key type", em);
	if (err == P11CA_OK)
		err = exchange_run(ch, x, p11ca_signer_v1_SignerReply_key_generate_tag,
				   SIGNER_KEYGEN_TIMEOUT_MS, em);
	if (err != P11CA_OK)
		goto out;
	const p11ca_signer_v1_KeyGenerateResponse *rs = &x->reply.result.key_generate;
	err = parse_spki(rs->public_key.bytes, rs->public_key.size, pub, em);
	if (err == P11CA_OK)
		memcpy(uri, rs->uri, sizeof(rs->uri)); /* NUL-terminated by nanopb */
out:
	exchange_free(&x);
	return err;
}

enum p11ca_err signer_public_key(struct chan *ch, const char *key_uri, EVP_PKEY **pub,
				 enum hsm_key_type *type, struct p11ca_errmsg *em)
{
	struct exchange *x = NULL;
	EVP_PKEY *k = NULL;
	enum p11ca_err err;

	if (pub == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "signer_public_key: NULL argument");
	P11CA_GUARD(exchange_new(p11ca_signer_v1_SignerCall_public_key_tag, &x, em));
	p11ca_signer_v1_PublicKeyRequest *rq = &x->call.op.public_key;
	err = copy_str(rq->key_uri, sizeof(rq->key_uri), key_uri, "key URI", em);
	if (err == P11CA_OK)
		err = exchange_run(ch, x, p11ca_signer_v1_SignerReply_public_key_tag,
				   SIGNER_CALL_TIMEOUT_MS, em);
	if (err != P11CA_OK)
		goto out;
	const p11ca_signer_v1_PublicKeyResponse *rs = &x->reply.result.public_key;
	err = parse_spki(rs->public_key.bytes, rs->public_key.size, &k, em);
	if (err == P11CA_OK && type != NULL)
		err = hsm_key_type_parse(rs->key_type, type, em);
	if (err == P11CA_OK) {
		*pub = k;
		k = NULL;
	}
out:
	EVP_PKEY_free(k);
	exchange_free(&x);
	return err;
}

static void status_copy(const p11ca_signer_v1_StatusResponse *rs, struct signer_status *st)
{
	memset(st, 0, sizeof(*st));
	/* Same capacities as signer.options; nanopb NUL-terminates. */
	_Static_assert(sizeof(st->label) == sizeof(rs->label), "label size");
	_Static_assert(sizeof(st->manufacturer) == sizeof(rs->manufacturer), "size");
	_Static_assert(sizeof(st->model) == sizeof(rs->model), "model size");
	_Static_assert(sizeof(st->serial_number) == sizeof(rs->serial_number), "serial size");
	memcpy(st->label, rs->label, sizeof(st->label));
	memcpy(st->manufacturer, rs->manufacturer, sizeof(st->manufacturer));
	memcpy(st->model, rs->model, sizeof(st->model));
	memcpy(st->serial_number, rs->serial_number, sizeof(st->serial_number));
	st->state = (enum signer_token_state)rs->state;
	st->sessions_open = rs->sessions_open;
	st->sessions_busy = rs->sessions_busy;
	st->signatures = rs->signatures;
	st->failures = rs->failures;
}

enum p11ca_err signer_status_get(struct chan *ch, struct signer_status *st, struct p11ca_errmsg *em)
{
	struct exchange *x = NULL;
	enum p11ca_err err;

	if (st == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "signer_status_get: NULL argument");
	P11CA_GUARD(exchange_new(p11ca_signer_v1_SignerCall_status_tag, &x, em));
	err = exchange_run(ch, x, p11ca_signer_v1_SignerReply_status_tag, SIGNER_CALL_TIMEOUT_MS,
			   em);
	if (err == P11CA_OK)
		status_copy(&x->reply.result.status, st);
	exchange_free(&x);
	return err;
}

enum p11ca_err signer_activate(struct chan *ch, const struct p11ca_secret *pin,
			       struct signer_status *st, struct p11ca_errmsg *em)
{
	struct exchange *x = NULL;
	enum p11ca_err err;

	if (pin == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "signer_activate: no PIN");
	P11CA_GUARD(exchange_new(p11ca_signer_v1_SignerCall_activate_tag, &x, em));
	p11ca_signer_v1_ActivateRequest_pin_t *p = &x->call.op.activate.pin;
	size_t len = p11ca_secret_len(pin);
	if (len == 0 || len > sizeof(p->bytes)) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG, "a PIN must be 1..%zu bytes",
				 sizeof(p->bytes));
		goto out;
	}
	memcpy(p->bytes, p11ca_secret_data(pin), len);
	p->size = (pb_size_t)len;
	err = exchange_run(ch, x, p11ca_signer_v1_SignerReply_status_tag, SIGNER_CALL_TIMEOUT_MS,
			   em);
	if (err == P11CA_OK && st != NULL)
		status_copy(&x->reply.result.status, st);
out:
	exchange_free(&x); /* wipes the PIN copy */
	return err;
}
