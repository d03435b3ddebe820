/*
 * The signer process (hsm/signer.h): the only code in p11cad that loads a PKCS#11 module.
 *
 * It answers the closed set of calls of hsm/signer.proto, one table entry per op, and
 * treats anything else as the engine breaking protocol (fatal for the link, so the process
 * exits and the parent restarts it). Every TBS is checked (hsm/signer_check.c) before a CA
 * key signs it, and hsm_sign verifies every signature before it leaves.
 */
#include "hsm/signer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/kconfig.h"
#include "hsm/pin.h"
#include "hsm/signer.pb.h"
#include "hsm/signer_check.h"

/* Last: it #defines short common words (PITFALLS.md). */
#include <p11-kit/uri.h>

typedef p11ca_signer_v1_SignerCall signer_call_t;
typedef p11ca_signer_v1_SignerReply signer_reply_t;

/* Keys found once stay cached for the life of the process (the token caches their object
 * handles per session); half the token's key table, so lookups past it still work. */
#define SIGNER_KEY_CACHE (CONFIG_HSM_MAX_KEYS / 2)

struct signer {
	const struct p11ca_logger *log;
	struct hsm_ctx *hsm;
	struct hsm_token *tok;
	pthread_mutex_t keys_lock;
	struct {
		char *uri;
		struct hsm_key *key;
	} keys[SIGNER_KEY_CACHE];
	size_t n_keys;
};

/* A key for one call: borrowed from the cache, or owned when the cache is full. */
struct key_ref {
	struct hsm_key *key;
	struct hsm_key *owned;
};

static void key_ref_put(struct key_ref *ref)
{
	hsm_key_free(&ref->owned);
	ref->key = NULL;
}

/* Keep `*key` under `uri` when there is room (the cache takes it and *key becomes NULL). */
static void key_cache_add(struct signer *s, const char *uri, struct hsm_key **key)
{
	if (s->n_keys >= SIGNER_KEY_CACHE)
		return;
	char *copy = strdup(uri);
	if (copy == NULL)
		return;
	s->keys[s->n_keys].uri = copy;
	s->keys[s->n_keys].key = *key;
	s->n_keys++;
	*key = NULL;
}

/* The key `uri` names. The lock is held across the lookup, so concurrent first calls for one
 * key find it once; after that every call is a string compare. */
static enum p11ca_err key_get(struct signer *s, const char *uri, struct key_ref *ref,
			      struct p11ca_errmsg *em)
{
	struct hsm_key *key = NULL;
	enum p11ca_err err = P11CA_OK;

	ref->key = ref->owned = NULL;
	pthread_mutex_lock(&s->keys_lock);
	for (size_t i = 0; i < s->n_keys; i++) {
		if (strcmp(s->keys[i].uri, uri) == 0) {
			ref->key = s->keys[i].key;
			goto out;
		}
	}
	err = hsm_key_find_uri(s->tok, uri, &key, em);
	if (err != P11CA_OK)
		goto out;
	ref->key = key;
	key_cache_add(s, uri, &key);
	ref->owned = key; /* NULL when the cache took it */
out:
	pthread_mutex_unlock(&s->keys_lock);
	return err;
}

static void keys_free(struct signer *s)
{
	for (size_t i = 0; i < s->n_keys; i++) {
		hsm_key_free(&s->keys[i].key);
		free(s->keys[i].uri);
	}
	s->n_keys = 0;
}

/* The first bytes of SHA-256(tbs) in hex: names a TBS in the log (the engine's intent record
 * holds the full hash) without logging the request. */
static void tbs_hash_prefix(const uint8_t *tbs, size_t len, char out[17])
{
	static const char digits[] = "0123456789abcdef";
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned md_len = 0;

	strcpy(out, "?");
	if (EVP_Digest(tbs, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len < 8)
		return;
	for (size_t i = 0; i < 8; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 15];
	}
	out[16] = '\0';
}

static enum p11ca_err spki_der(EVP_PKEY *pub, uint8_t *dst, size_t cap, pb_size_t *len,
			       struct p11ca_errmsg *em)
{
	int n = i2d_PUBKEY(pub, NULL);
	if (n <= 0 || (size_t)n > cap)
		return p11ca_fail(em, P11CA_E_INTERNAL, "cannot encode the public key (%d bytes)",
				  n);
	unsigned char *p = dst;
	if (i2d_PUBKEY(pub, &p) != n)
		return p11ca_fail(em, P11CA_E_INTERNAL, "cannot encode the public key");
	*len = (pb_size_t)n;
	return P11CA_OK;
}

/* "pkcs11:object=LABEL;id=%..;type=private": what hsm_key_find_uri takes back. */
static enum p11ca_err key_uri(struct hsm_key *key, char *dst, size_t cap, struct p11ca_errmsg *em)
{
	P11KitUri *uri = p11_kit_uri_new();
	const char *label = hsm_key_label(key);
	size_t id_len = 0;
	const uint8_t *id = hsm_key_id(key, &id_len);
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE attrs[] = {
		{CKA_LABEL, (void *)label, strlen(label)},
		{CKA_ID, (void *)id, id_len},
		{CKA_CLASS, &cls, sizeof(cls)},
	};
	char *text = NULL;
	enum p11ca_err err = P11CA_OK;

	if (uri == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a key URI");
	for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++)
		if (p11_kit_uri_set_attribute(uri, &attrs[i]) != P11_KIT_URI_OK)
			err = p11ca_fail(em, P11CA_E_INTERNAL, "cannot build the key URI");
	if (err == P11CA_OK && p11_kit_uri_format(uri, P11_KIT_URI_FOR_OBJECT, &text) != 0)
		err = p11ca_fail(em, P11CA_E_INTERNAL, "cannot format the key URI");
	if (err == P11CA_OK && strlen(text) >= cap)
		err = p11ca_fail(em, P11CA_E_INTERNAL, "the key URI is longer than %zu bytes",
				 cap - 1);
	if (err == P11CA_OK)
		snprintf(dst, cap, "%s", text);
	free(text);
	p11_kit_uri_free(uri);
	return err;
}

/* ---- handlers: one per SignerCall op ------------------------------------------------ */

static enum p11ca_err do_sign(struct signer *s, const signer_call_t *call, signer_reply_t *reply,
			      struct p11ca_errmsg *em)
{
	const p11ca_signer_v1_SignRequest *rq = &call->op.sign;
	p11ca_signer_v1_SignResponse *rs = &reply->result.sign;
	enum signer_tbs_kind kind = (enum signer_tbs_kind)rq->kind;
	const char *kind_name = kind == SIGNER_TBS_CRL ? "CRL" : "certificate";
	struct key_ref ref = {0};
	enum hsm_sig_alg alg = HSM_SIG_UNSPECIFIED;
	size_t sig_len = 0;
	char hash[17];
	enum p11ca_err err;

	tbs_hash_prefix(rq->tbs.bytes, rq->tbs.size, hash);
	if (rq->kind != p11ca_signer_v1_TbsKind_TBS_KIND_CERTIFICATE &&
	    rq->kind != p11ca_signer_v1_TbsKind_TBS_KIND_CRL) {
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "refused to sign: TBS kind %d is neither certificate nor CRL",
				 (int)rq->kind);
		goto out;
	}
	err = key_get(s, rq->key_uri, &ref, em);
	if (err == P11CA_OK)
		err = signer_check_tbs(kind, rq->tbs.bytes, rq->tbs.size, rq->issuer_cert.bytes,
				       rq->issuer_cert.size, hsm_key_public(ref.key),
				       hsm_key_type_of(ref.key), &alg, em);
	if (err == P11CA_OK)
		err = hsm_sign(ref.key, alg, rq->tbs.bytes, rq->tbs.size, rs->signature.bytes,
			       sizeof(rs->signature.bytes), &sig_len, em);
	if (err != P11CA_OK)
		goto out;
	rs->signature.size = (pb_size_t)sig_len;
	reply->which_result = p11ca_signer_v1_SignerReply_sign_tag;
	p11ca_logf(s->log, LOG_INFO, "signed %s with key '%s' (%s), TBS sha256 %s...", kind_name,
		   hsm_key_label(ref.key), hsm_sig_alg_name(alg), hash);
out:
	if (err != P11CA_OK)
		p11ca_logf(s->log, err == P11CA_E_POLICY ? LOG_WARNING : LOG_ERR,
			   "did not sign %s with key '%s', TBS sha256 %s...: %s", kind_name,
			   ref.key ? hsm_key_label(ref.key) : "?", hash, p11ca_errmsg_text(em));
	key_ref_put(&ref);
	return err;
}

static enum p11ca_err do_key_generate(struct signer *s, const signer_call_t *call,
				      signer_reply_t *reply, struct p11ca_errmsg *em)
{
	const p11ca_signer_v1_KeyGenerateRequest *rq = &call->op.key_generate;
	p11ca_signer_v1_KeyGenerateResponse *rs = &reply->result.key_generate;
	enum hsm_key_type type = HSM_KEY_UNSPECIFIED;
	struct hsm_key *key = NULL;
	enum p11ca_err err;

	err = hsm_key_type_parse(rq->key_type, &type, em);
	if (err == P11CA_OK)
		err = hsm_key_generate(s->tok, type, rq->label, &key, em);
	if (err == P11CA_OK)
		err = key_uri(key, rs->uri, sizeof(rs->uri), em);
	if (err == P11CA_OK)
		err = spki_der(hsm_key_public(key), rs->public_key.bytes,
			       sizeof(rs->public_key.bytes), &rs->public_key.size, em);
	if (err != P11CA_OK) {
		p11ca_logf(s->log, LOG_ERR, "did not generate a %s key '%s': %s", rq->key_type,
			   rq->label, p11ca_errmsg_text(em));
		goto out;
	}
	reply->which_result = p11ca_signer_v1_SignerReply_key_generate_tag;
	p11ca_logf(s->log, LOG_INFO, "generated %s key '%s' as %s", hsm_key_type_name(type),
		   rq->label, rs->uri);
	pthread_mutex_lock(&s->keys_lock);
	key_cache_add(s, rs->uri, &key);
	pthread_mutex_unlock(&s->keys_lock);
out:
	hsm_key_free(&key);
	return err;
}

static enum p11ca_err do_public_key(struct signer *s, const signer_call_t *call,
				    signer_reply_t *reply, struct p11ca_errmsg *em)
{
	p11ca_signer_v1_PublicKeyResponse *rs = &reply->result.public_key;
	struct key_ref ref = {0};
	enum p11ca_err err = key_get(s, call->op.public_key.key_uri, &ref, em);

	if (err == P11CA_OK)
		err = spki_der(hsm_key_public(ref.key), rs->public_key.bytes,
			       sizeof(rs->public_key.bytes), &rs->public_key.size, em);
	if (err == P11CA_OK) {
		snprintf(rs->key_type, sizeof(rs->key_type), "%s",
			 hsm_key_type_name(hsm_key_type_of(ref.key)));
		snprintf(rs->label, sizeof(rs->label), "%s", hsm_key_label(ref.key));
		reply->which_result = p11ca_signer_v1_SignerReply_public_key_tag;
	}
	key_ref_put(&ref);
	return err;
}

static enum p11ca_err fill_status(struct signer *s, signer_reply_t *reply, struct p11ca_errmsg *em)
{
	p11ca_signer_v1_StatusResponse *rs = &reply->result.status;
	struct hsm_status st;

	P11CA_GUARD(hsm_token_status(s->tok, &st, em));
	snprintf(rs->label, sizeof(rs->label), "%s", st.label);
	snprintf(rs->manufacturer, sizeof(rs->manufacturer), "%s", st.manufacturer);
	snprintf(rs->model, sizeof(rs->model), "%s", st.model);
	snprintf(rs->serial_number, sizeof(rs->serial_number), "%s", st.serial);
	if (st.logged_in)
		rs->state = p11ca_signer_v1_TokenState_TOKEN_STATE_READY;
	else if (st.pin_locked)
		rs->state = p11ca_signer_v1_TokenState_TOKEN_STATE_PIN_LOCKED;
	else if (st.pin_final_try)
		rs->state = p11ca_signer_v1_TokenState_TOKEN_STATE_PIN_FINAL_TRY;
	else if (!st.token_present)
		rs->state = p11ca_signer_v1_TokenState_TOKEN_STATE_UNAVAILABLE;
	else
		rs->state = p11ca_signer_v1_TokenState_TOKEN_STATE_NEEDS_PIN;
	rs->sessions_open = st.sessions_open;
	rs->sessions_busy = st.sessions_busy;
	rs->signatures = st.signatures;
	rs->failures = st.failures;
	reply->which_result = p11ca_signer_v1_SignerReply_status_tag;
	return P11CA_OK;
}

static enum p11ca_err do_status(struct signer *s, const signer_call_t *call, signer_reply_t *reply,
				struct p11ca_errmsg *em)
{
	(void)call;
	return fill_status(s, reply, em);
}

static enum p11ca_err do_activate(struct signer *s, const signer_call_t *call,
				  signer_reply_t *reply, struct p11ca_errmsg *em)
{
	const p11ca_signer_v1_ActivateRequest_pin_t *pin = &call->op.activate.pin;
	struct p11ca_secret *secret = NULL;
	enum p11ca_err err;

	if (pin->size == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "activation with an empty PIN refused");
	err = p11ca_secret_new(sizeof(pin->bytes), &secret, em);
	if (err == P11CA_OK)
		err = p11ca_secret_set(secret, pin->bytes, pin->size, em);
	if (err == P11CA_OK)
		err = hsm_token_login(s->tok, secret, em);
	p11ca_secret_free(&secret);
	if (err != P11CA_OK) {
		p11ca_logf(s->log, LOG_WARNING, "token activation failed: %s",
			   p11ca_errmsg_text(em));
		return err;
	}
	p11ca_logf(s->log, LOG_NOTICE, "token activated");
	return fill_status(s, reply, em);
}

typedef enum p11ca_err (*signer_op_fn)(struct signer *s, const signer_call_t *call,
				       signer_reply_t *reply, struct p11ca_errmsg *em);

/* The closed set of calls. An op not listed here is a protocol violation. */
static const struct signer_op {
	pb_size_t tag;
	const char *name;
	signer_op_fn fn;
} signer_ops[] = {
	{p11ca_signer_v1_SignerCall_sign_tag, "sign", do_sign},
	{p11ca_signer_v1_SignerCall_key_generate_tag, "key_generate", do_key_generate},
	{p11ca_signer_v1_SignerCall_public_key_tag, "public_key", do_public_key},
	{p11ca_signer_v1_SignerCall_status_tag, "status", do_status},
	{p11ca_signer_v1_SignerCall_activate_tag, "activate", do_activate},
};

static enum p11ca_err signer_dispatch(void *arg, void *in, void *out, struct p11ca_errmsg *em)
{
	struct signer *s = arg;
	const signer_call_t *call = in;
	signer_reply_t *reply = out;
	const struct signer_op *op = NULL;

	if (reply == NULL)
		return p11ca_fail(em, P11CA_E_PROTO,
				  "the engine sent the signer a notification; it takes only calls");
	for (size_t i = 0; i < sizeof(signer_ops) / sizeof(signer_ops[0]); i++)
		if (signer_ops[i].tag == call->which_op)
			op = &signer_ops[i];
	if (op == NULL)
		return p11ca_fail(em, P11CA_E_PROTO,
				  "the engine sent the signer a call with no known op (%u)",
				  (unsigned)call->which_op);

	struct p11ca_errmsg op_em = {0};
	enum p11ca_err err = op->fn(s, call, reply, &op_em);
	if (err != P11CA_OK) {
		/* Failures travel in the reply; a half-filled result must not. */
		memset(&reply->result, 0, sizeof(reply->result));
		reply->which_result = 0;
		reply->error = (uint32_t)err;
		snprintf(reply->message, sizeof(reply->message), "%s", p11ca_errmsg_text(&op_em));
	}
	return P11CA_OK;
}

/* ---- the process ----------------------------------------------------------------------- */

/* The PIN will be in this process's memory: no core file, no ptrace by the same user. */
static enum p11ca_err harden(struct p11ca_errmsg *em)
{
	struct rlimit none = {0, 0};

	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return p11ca_fail(em, P11CA_E_INTERNAL, "cannot make the signer non-dumpable: %m");
	if (setrlimit(RLIMIT_CORE, &none) != 0)
		return p11ca_fail(em, P11CA_E_INTERNAL, "cannot disable core files: %m");
	return P11CA_OK;
}

/* Whether the token URI carries its own PIN (pin-source= or pin-value=). */
static bool uri_has_pin(const char *text)
{
	P11KitUri *uri = p11_kit_uri_new();
	bool has = false;

	if (uri != NULL && text != NULL &&
	    p11_kit_uri_parse(text, P11_KIT_URI_FOR_ANY, uri) == P11_KIT_URI_OK)
		has = p11_kit_uri_get_pin_source(uri) != NULL ||
		      p11_kit_uri_get_pin_value(uri) != NULL;
	if (uri != NULL)
		p11_kit_uri_free(uri);
	return has;
}

/* A failed login at start is not fatal: status reports it and an admin can activate. */
static void login_at_start(struct signer *s, const struct signer_options *opts)
{
	struct p11ca_secret *pin = NULL;
	struct p11ca_errmsg em = {0};
	enum p11ca_err err = P11CA_OK;

	if (opts->pin_source != NULL)
		err = hsm_pin_from_source(opts->pin_source, &pin, &em);
	else if (!uri_has_pin(opts->token.uri))
		return;
	if (err == P11CA_OK)
		err = hsm_token_login(s->tok, pin, &em);
	p11ca_secret_free(&pin);
	if (err != P11CA_OK)
		p11ca_logf(s->log, LOG_WARNING,
			   "token login at start failed, waiting for an "
			   "activation: %s",
			   p11ca_errmsg_text(&em));
	else
		p11ca_logf(s->log, LOG_NOTICE, "token logged in from its PIN source");
}

enum p11ca_err signer_serve(int fd, const struct signer_options *opts, struct p11ca_errmsg *em)
{
	struct signer *s = NULL;
	struct chan *ch = NULL;
	struct hsm_status st;
	enum p11ca_err err;

	if (opts == NULL || fd < 0) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG, "signer_serve: no options or channel");
		goto out;
	}
	err = harden(em);
	if (err != P11CA_OK)
		goto out;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory starting the signer");
		goto out;
	}
	s->log = opts->log;
	pthread_mutex_init(&s->keys_lock, NULL);
	err = hsm_ctx_new(opts->log, &s->hsm, em);
	if (err == P11CA_OK)
		err = hsm_token_open(s->hsm, &opts->token, &s->tok, em);
	if (err == P11CA_OK)
		err = hsm_token_status(s->tok, &st, em);
	if (err != P11CA_OK)
		goto out;
	login_at_start(s, opts);

	struct chan_spec spec = {
		.name = "engine→signer",
		.out_fields = p11ca_signer_v1_SignerReply_fields,
		.out_size = sizeof(signer_reply_t),
		.in_fields = p11ca_signer_v1_SignerCall_fields,
		.in_size = sizeof(signer_call_t),
		.max_frame = p11ca_signer_v1_SignerCall_size > p11ca_signer_v1_SignerReply_size
				     ? p11ca_signer_v1_SignerCall_size
				     : p11ca_signer_v1_SignerReply_size,
		.is_server = 1,
		.workers = opts->workers > 0 ? opts->workers : st.pool_size,
		.handler = signer_dispatch,
		.arg = s,
		.log = opts->log,
	};
	err = chan_open(fd, &spec, &ch, em);
	fd = -1; /* chan_open closes it on failure */
	if (err != P11CA_OK)
		goto out;
	p11ca_logf(s->log, LOG_INFO, "signer serving token '%s' with %u workers", st.label,
		   spec.workers);
	err = chan_wait(ch, em);
out:
	chan_close(&ch);
	if (fd >= 0)
		close(fd);
	if (s != NULL) {
		keys_free(s);
		hsm_token_close(&s->tok);
		hsm_ctx_free(&s->hsm);
		pthread_mutex_destroy(&s->keys_lock);
		free(s);
	}
	return err;
}
