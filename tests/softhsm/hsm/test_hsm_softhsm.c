/*
 * hsm/ against a real SoftHSM2 (no fault shim): every key type and signature algorithm,
 * signatures checked by OpenSSL outside hsm_verify and cross-checked with pkcs11-tool and
 * libp11's engine on the same keys, key attributes, lookup and generation refusals, URI and
 * module errors, the PIN paths, status, two tokens at once, and concurrent signing.
 *
 * One SoftHSM2 token directory for the whole suite (a module instance sees one directory
 * per C_Initialize); each test has its own hsm_ctx, so every test starts with the module
 * freshly initialised and no token logged in. The keys are generated once, in the group
 * setup, and found again by id in each test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>

#include "hsm/hsm.h"
#include "tests/softhsm/fixture.h"
#include "tests/softhsm/hsm/helpers.h"
#include "tests/softhsm/hsm/raw.h" /* last: pkcs11.h */

#define TOK_MAIN  "p11ca-main"	/* RSA and EC keys (libp11 can enumerate it) */
#define TOK_ED	  "p11ca-ed"	/* the Ed25519 key, apart: it breaks libp11's enumeration */
#define TOK_LOGIN "p11ca-login" /* PIN paths; nothing else logs in to it */
#define TOK_B	  "p11ca-b"	/* a second token with its own PIN */

#define MSG    "p11ca test message: to be signed by every key"
#define MSGP   ((const uint8_t *)MSG)
#define MSGLEN (sizeof(MSG) - 1)

/* ---- the suite: one token directory, keys made once ------------------------------------- */

enum { K_RSA2048, K_RSA3072, K_RSA4096, K_P256, K_P384, K_P521, K_ED25519, K_COUNT };

static const struct key_spec {
	enum hsm_key_type type;
	const char *label;
	const char *token;
	int bits;	   /* RSA modulus / EC field size */
	const char *group; /* EC curve name, NULL otherwise */
} key_specs[K_COUNT] = {
	[K_RSA2048] = {HSM_KEY_RSA2048, "ca-rsa2048", TOK_MAIN, 2048, NULL},
	[K_RSA3072] = {HSM_KEY_RSA3072, "ca-rsa3072", TOK_MAIN, 3072, NULL},
	[K_RSA4096] = {HSM_KEY_RSA4096, "ca-rsa4096", TOK_MAIN, 4096, NULL},
	[K_P256] = {HSM_KEY_P256, "ca-p256", TOK_MAIN, 256, "prime256v1"},
	[K_P384] = {HSM_KEY_P384, "ca-p384", TOK_MAIN, 384, "secp384r1"},
	[K_P521] = {HSM_KEY_P521, "ca-p521", TOK_MAIN, 521, "secp521r1"},
	[K_ED25519] = {HSM_KEY_ED25519, "ca-ed25519", TOK_ED, 253, NULL},
};

static const enum hsm_sig_alg all_algs[] = {
	HSM_SIG_RSA_PKCS1_SHA256, HSM_SIG_RSA_PKCS1_SHA384, HSM_SIG_RSA_PKCS1_SHA512,
	HSM_SIG_RSA_PSS_SHA256,	  HSM_SIG_RSA_PSS_SHA384,   HSM_SIG_RSA_PSS_SHA512,
	HSM_SIG_ECDSA_SHA256,	  HSM_SIG_ECDSA_SHA384,	    HSM_SIG_ECDSA_SHA512,
	HSM_SIG_ED25519,
};
#define N_ALGS (sizeof(all_algs) / sizeof(all_algs[0]))

static struct suite {
	struct softhsm_fixture fx;
	struct {
		uint8_t id[64];
		size_t id_len;
		char hex[129];
	} keys[K_COUNT];
} S;

/* ---- per-test state: everything a failed assertion would leave behind ------------------ */

struct tctx {
	struct t_log log;
	struct hsm_ctx *ctx;
	struct hsm_token *toks[8];
	struct hsm_key *keys[32];
};

static int t_setup(void **state)
{
	struct tctx *tc = calloc(1, sizeof(*tc));
	struct p11ca_errmsg em = {0};

	if (tc == NULL)
		return -1;
	t_log_init(&tc->log);
	if (hsm_ctx_new(&tc->log.logger, &tc->ctx, &em) != P11CA_OK) {
		fprintf(stderr, "hsm_ctx_new: %s\n", em.text);
		return -1;
	}
	*state = tc;
	return 0;
}

static int t_teardown(void **state)
{
	struct tctx *tc = *state;
	int rc = 0;

	for (size_t i = 0; i < sizeof(tc->keys) / sizeof(tc->keys[0]); i++)
		hsm_key_free(&tc->keys[i]);
	for (size_t i = 0; i < sizeof(tc->toks) / sizeof(tc->toks[0]); i++)
		hsm_token_close(&tc->toks[i]);
	hsm_ctx_free(&tc->ctx);
	/* No PIN, right or wrong, may ever reach a log line. */
	if (tc->log.text != NULL && t_has_pin(tc->log.text)) {
		fprintf(stderr, "a PIN appeared in the hsm log:\n%s\n", tc->log.text);
		rc = -1;
	}
	t_log_free(&tc->log);
	free(tc);
	return rc;
}

static void print_err(const char *what, enum p11ca_err got, enum p11ca_err want,
		      const struct p11ca_errmsg *em)
{
	fprintf(stderr, "%s: got %s, want %s; message: %s\n", what, p11ca_err_name(got),
		p11ca_err_name(want), em ? em->text : "(none)");
}

/* The call returned `want`; the message (if any) never holds a PIN. */
#define expect_err(call, want, em)                                                                 \
	do {                                                                                       \
		enum p11ca_err got_ = (call);                                                      \
		if (got_ != (want))                                                                \
			print_err(#call, got_, (want), (em));                                      \
		assert_string_equal(p11ca_err_name(got_), p11ca_err_name(want));                   \
		assert_false(t_has_pin((em)->text));                                               \
	} while (0)

#define assert_contains(text, needle)                                                              \
	do {                                                                                       \
		if (strstr((text), (needle)) == NULL)                                              \
			fprintf(stderr, "'%s' not in: %s\n", (needle), (text));                    \
		assert_non_null(strstr((text), (needle)));                                         \
	} while (0)

/* Keep a token/key for the teardown; returns it. */
static struct hsm_token *keep_tok(struct tctx *tc, struct hsm_token *tok)
{
	for (size_t i = 0; i < sizeof(tc->toks) / sizeof(tc->toks[0]); i++) {
		if (tc->toks[i] == NULL) {
			tc->toks[i] = tok;
			return tok;
		}
	}
	fail_msg("too many tokens in one test");
	return NULL;
}

static struct hsm_key *keep_key(struct tctx *tc, struct hsm_key *key)
{
	for (size_t i = 0; i < sizeof(tc->keys) / sizeof(tc->keys[0]); i++) {
		if (tc->keys[i] == NULL) {
			tc->keys[i] = key;
			return key;
		}
	}
	fail_msg("too many keys in one test");
	return NULL;
}

/* Close a kept token (its keys first) so later steps can reopen it. */
static void close_tok(struct tctx *tc, struct hsm_token *tok)
{
	for (size_t i = 0; i < sizeof(tc->toks) / sizeof(tc->toks[0]); i++)
		if (tc->toks[i] == tok)
			hsm_token_close(&tc->toks[i]);
}

static void free_key(struct tctx *tc, struct hsm_key *key)
{
	for (size_t i = 0; i < sizeof(tc->keys) / sizeof(tc->keys[0]); i++)
		if (tc->keys[i] == key)
			hsm_key_free(&tc->keys[i]);
}

static enum p11ca_err open_uri(struct tctx *tc, const char *module, const char *uri, unsigned pool,
			       unsigned busy_ms, struct hsm_token **out, struct p11ca_errmsg *em)
{
	struct hsm_token_config cfg = {
		.module_path = module, .uri = uri, .pool_size = pool, .busy_timeout_ms = busy_ms};
	enum p11ca_err err = hsm_token_open(tc->ctx, &cfg, out, em);

	if (err == P11CA_OK)
		keep_tok(tc, *out);
	else
		assert_null(*out);
	return err;
}

static struct hsm_token *open_tok(struct tctx *tc, const char *label, unsigned pool)
{
	char uri[128];
	struct hsm_token *tok = NULL;
	struct p11ca_errmsg em = {0};

	snprintf(uri, sizeof(uri), "pkcs11:token=%s", label);
	expect_err(open_uri(tc, softhsm_module_path(), uri, pool, 0, &tok, &em), P11CA_OK, &em);
	return tok;
}

static enum p11ca_err login_pin(struct hsm_token *tok, const char *pin, struct p11ca_errmsg *em)
{
	struct p11ca_secret *s = t_secret(pin);
	enum p11ca_err err;

	assert_non_null(s);
	err = hsm_token_login(tok, s, em);
	p11ca_secret_free(&s);
	return err;
}

static struct hsm_token *open_login(struct tctx *tc, const char *label, const char *pin,
				    unsigned pool)
{
	struct hsm_token *tok = open_tok(tc, label, pool);
	struct p11ca_errmsg em = {0};

	expect_err(login_pin(tok, pin, &em), P11CA_OK, &em);
	return tok;
}

/* One of the suite's keys, found again by its id. */
static struct hsm_key *suite_key(struct tctx *tc, struct hsm_token *tok, int k)
{
	struct hsm_key *key = NULL;
	struct p11ca_errmsg em = {0};

	expect_err(hsm_key_find(tok, NULL, S.keys[k].id, S.keys[k].id_len, &key, &em), P11CA_OK,
		   &em);
	return keep_key(tc, key);
}

static struct hsm_status status_of(struct hsm_token *tok)
{
	struct hsm_status st;
	struct p11ca_errmsg em = {0};

	expect_err(hsm_token_status(tok, &st, &em), P11CA_OK, &em);
	assert_false(t_has_pin(st.last_error_text));
	return st;
}

/* Sign and check the signature outside hsm/; returns its length. */
static size_t sign_checked(struct hsm_key *key, enum hsm_sig_alg alg, const void *msg, size_t len,
			   uint8_t sig[HSM_SIG_MAX])
{
	size_t sig_len = 0;
	struct p11ca_errmsg em = {0};

	expect_err(hsm_sign(key, alg, msg, len, sig, HSM_SIG_MAX, &sig_len, &em), P11CA_OK, &em);
	assert_int_equal(t_verify(hsm_key_public(key), alg, msg, len, sig, sig_len), 1);
	return sig_len;
}

static void path_in(char *dst, size_t size, const char *name)
{
	int n = snprintf(dst, size, "%s/%s", S.fx.dir, name);
	assert_true(n > 0 && (size_t)n < size);
}

/* ---- group setup: tokens and keys ------------------------------------------------------ */

static int gen_keys(struct hsm_ctx *ctx, const char *token, const char *pin)
{
	char uri[128];
	struct hsm_token *tok = NULL;
	struct hsm_token_config cfg = {.module_path = softhsm_module_path(), .uri = uri};
	struct p11ca_errmsg em = {0};
	struct p11ca_secret *s = t_secret(pin);
	int rc = -1;

	snprintf(uri, sizeof(uri), "pkcs11:token=%s", token);
	if (s == NULL || hsm_token_open(ctx, &cfg, &tok, &em) != P11CA_OK ||
	    hsm_token_login(tok, s, &em) != P11CA_OK)
		goto out;
	for (int k = 0; k < K_COUNT; k++) {
		struct hsm_key *key = NULL;
		double t0 = t_now_ms();
		const uint8_t *id;

		if (strcmp(key_specs[k].token, token) != 0)
			continue;
		if (hsm_key_generate(tok, key_specs[k].type, key_specs[k].label, &key, &em) !=
		    P11CA_OK)
			goto out;
		id = hsm_key_id(key, &S.keys[k].id_len);
		memcpy(S.keys[k].id, id, S.keys[k].id_len);
		t_hex(id, S.keys[k].id_len, S.keys[k].hex);
		fprintf(stderr, "generated %s '%s' id %s in %.0f ms\n",
			hsm_key_type_name(key_specs[k].type), key_specs[k].label, S.keys[k].hex,
			t_now_ms() - t0);
		hsm_key_free(&key);
	}
	rc = 0;
out:
	if (rc != 0)
		fprintf(stderr, "group setup on %s: %s\n", token, p11ca_errmsg_text(&em));
	p11ca_secret_free(&s);
	hsm_token_close(&tok);
	return rc;
}

static int group_setup(void **state)
{
	struct hsm_ctx *ctx = NULL;
	struct p11ca_errmsg em = {0};
	int rc = -1;

	(void)state;
	/* Each test's hsm_ctx_free unloads the module. Keep it mapped until exit, so that
	 * LeakSanitizer can still name it: tests/lsan.supp suppresses SoftHSM2's own leak
	 * (Ed25519 signing) by module name, which an unloaded module no longer has. */
	if (dlopen(softhsm_module_path(), RTLD_NOW | RTLD_NODELETE) == NULL) {
		fprintf(stderr, "dlopen %s: %s\n", softhsm_module_path(), dlerror());
		return -1;
	}
	if (softhsm_fixture_setup(&S.fx, TOK_MAIN, T_SO_PIN, T_PIN) != 0 ||
	    softhsm_fixture_add_token(&S.fx, TOK_ED, T_SO_PIN, T_PIN) != 0 ||
	    softhsm_fixture_add_token(&S.fx, TOK_LOGIN, T_SO_PIN, T_PIN) != 0 ||
	    softhsm_fixture_add_token(&S.fx, TOK_B, T_SO_PIN, T_PIN_B) != 0)
		return -1;
	if (hsm_ctx_new(NULL, &ctx, &em) != P11CA_OK)
		goto out;
	if (gen_keys(ctx, TOK_MAIN, T_PIN) != 0 || gen_keys(ctx, TOK_ED, T_PIN) != 0)
		goto out;
	rc = 0;
out:
	hsm_ctx_free(&ctx);
	return rc;
}

static int group_teardown(void **state)
{
	(void)state;
	softhsm_fixture_teardown(&S.fx);
	return 0;
}

/* ---- keys: types, sizes, attributes -------------------------------------------------------- */

/* pkcs11-tool's view of a token's private keys (its own login, its own process). */
static void list_private_keys(const char *token, const char *out)
{
	char *argv[] = {"pkcs11-tool",	 "--module",	(char *)softhsm_module_path(),
			"--token-label", (char *)token, "--login",
			"--pin",	 T_PIN,		"--list-objects",
			"--type",	 "privkey",	NULL};
	assert_int_equal(t_run(argv, NULL, out), 0);
}

/* The block of `listing` that describes the object labelled `label`, in buf. */
static const char *object_block(const char *listing, const char *label, char *buf, size_t size)
{
	char want[128];
	const char *at;

	snprintf(want, sizeof(want), "label:      %s\n", label);
	at = strstr(listing, want);
	if (at == NULL)
		return NULL;
	const char *end = strstr(at + 1, "Object;");
	size_t n = end ? (size_t)(end - at) : strlen(at);
	if (n >= size)
		n = size - 1;
	memcpy(buf, at, n);
	buf[n] = '\0';
	return buf;
}

static void test_generated_keys(void **state)
{
	struct tctx *tc = *state;
	struct hsm_token *main_tok = open_login(tc, TOK_MAIN, T_PIN, 1);
	struct hsm_token *ed_tok = open_login(tc, TOK_ED, T_PIN, 1);
	CK_FUNCTION_LIST *fn = t_raw_module(softhsm_module_path());
	char listing_path[4096], listing[16384], block[2048];
	size_t listing_len = 0;

	assert_non_null(fn);
	path_in(listing_path, sizeof(listing_path), "privkeys-main.txt");
	list_private_keys(TOK_MAIN, listing_path);
	assert_int_equal(
		t_read_file(listing_path, (uint8_t *)listing, sizeof(listing) - 1, &listing_len),
		0);
	listing[listing_len] = '\0';

	for (int k = 0; k < K_COUNT; k++) {
		const struct key_spec *ks = &key_specs[k];
		struct hsm_token *tok = strcmp(ks->token, TOK_MAIN) == 0 ? main_tok : ed_tok;
		struct hsm_key *key = suite_key(tc, tok, k);
		EVP_PKEY *pub = hsm_key_public(key);
		size_t id_len = 0;
		const uint8_t *id = hsm_key_id(key, &id_len);

		fprintf(stderr, "checking %s\n", ks->label);
		/* What hsm/ reports about the key. */
		assert_int_equal(hsm_key_type_of(key), ks->type);
		assert_string_equal(hsm_key_label(key), ks->label);
		assert_int_equal(id_len, 16);
		assert_memory_equal(id, S.keys[k].id, 16);
		assert_non_null(pub);
		if (ks->type == HSM_KEY_ED25519) {
			assert_true(EVP_PKEY_is_a(pub, "ED25519"));
		} else if (ks->group == NULL) {
			assert_true(EVP_PKEY_is_a(pub, "RSA"));
			assert_int_equal(EVP_PKEY_get_bits(pub), ks->bits);
		} else {
			char group[64] = "";
			size_t glen = 0;
			assert_true(EVP_PKEY_is_a(pub, "EC"));
			assert_int_equal(EVP_PKEY_get_group_name(pub, group, sizeof(group), &glen),
					 1);
			assert_string_equal(group, ks->group);
		}
		/* Ids come from the token's RNG: no two keys share one. */
		for (int j = 0; j < k; j++)
			assert_memory_not_equal(S.keys[j].id, S.keys[k].id, 16);

		/* What the token says, through a raw session of our own. */
		CK_SESSION_HANDLE s;
		struct t_priv_attrs a;
		assert_int_equal(t_raw_session(fn, ks->token, &s), 0);
		int rc = t_raw_priv_attrs(fn, s, S.keys[k].id, S.keys[k].id_len, &a);
		fn->C_CloseSession(s);
		assert_int_equal(rc, 0);
		assert_true(a.sensitive);
		assert_false(a.extractable);
		assert_true(a.private_);
		assert_true(a.always_sensitive);
		assert_true(a.never_extractable);
		assert_true(a.token);
		assert_true(a.sign);
		assert_false(a.decrypt);
		assert_int_equal(a.id_len, 16);
		assert_memory_equal(a.id, S.keys[k].id, 16);
		assert_string_equal(a.label, ks->label);

		/* And what pkcs11-tool, another process, lists. */
		if (tok == main_tok) {
			char want_id[160];
			assert_non_null(object_block(listing, ks->label, block, sizeof(block)));
			snprintf(want_id, sizeof(want_id), "ID:         %s\n", S.keys[k].hex);
			assert_contains(block, want_id);
			assert_contains(block, "Access:     sensitive, always sensitive, never "
					       "extractable");
		}
	}
}

/* ---- signing: every algorithm, checked outside hsm_verify --------------------------------- */

static bool alg_is_randomised(enum hsm_sig_alg alg)
{
	return t_alg_is_pss(alg) || alg == HSM_SIG_ECDSA_SHA256 || alg == HSM_SIG_ECDSA_SHA384 ||
	       alg == HSM_SIG_ECDSA_SHA512;
}

static void test_sign_every_algorithm(void **state)
{
	struct tctx *tc = *state;
	struct hsm_token *main_tok = open_login(tc, TOK_MAIN, T_PIN, 2);
	struct hsm_token *ed_tok = open_login(tc, TOK_ED, T_PIN, 2);
	static uint8_t big[65536];
	const struct {
		const void *p;
		size_t n;
	} msgs[] = {{MSGP, MSGLEN}, {"", 0}, {big, sizeof(big)}};
	uint64_t signed_main = 0, signed_ed = 0, refused_main = 0, refused_ed = 0;
	struct hsm_status st0 = status_of(main_tok), st0_ed = status_of(ed_tok);

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + 3);

	for (int k = 0; k < K_COUNT; k++) {
		const struct key_spec *ks = &key_specs[k];
		bool on_main = strcmp(ks->token, TOK_MAIN) == 0;
		struct hsm_key *key = suite_key(tc, on_main ? main_tok : ed_tok, k);
		EVP_PKEY *pub = hsm_key_public(key);

		for (size_t a = 0; a < N_ALGS; a++) {
			enum hsm_sig_alg alg = all_algs[a];
			uint8_t sig[HSM_SIG_MAX], sig2[HSM_SIG_MAX];
			size_t len, len2 = 0;
			struct p11ca_errmsg em = {0};

			if (!hsm_sig_alg_fits(alg, ks->type)) {
				memset(sig, 0xAA, sizeof(sig));
				len = 99;
				expect_err(hsm_sign(key, alg, MSGP, MSGLEN, sig, sizeof(sig), &len,
						    &em),
					   P11CA_E_HSM_MECHANISM, &em);
				assert_int_equal(len, 0);
				assert_contains(em.text, ks->label);
				*(on_main ? &refused_main : &refused_ed) += 1;
				continue;
			}
			fprintf(stderr, "%s with %s\n", ks->label, hsm_sig_alg_name(alg));
			for (size_t m = 0; m < sizeof(msgs) / sizeof(msgs[0]); m++) {
				/* The big message only where the hashing is not ours to test. */
				if (m == 2 && ks->group != NULL)
					continue;
				len = sign_checked(key, alg, msgs[m].p, msgs[m].n, sig);
				*(on_main ? &signed_main : &signed_ed) += 1;
				assert_int_equal(
					hsm_verify(pub, alg, msgs[m].p, msgs[m].n, sig, len, &em),
					P11CA_OK);
			}
			len = sign_checked(key, alg, MSGP, MSGLEN, sig);
			*(on_main ? &signed_main : &signed_ed) += 1;

			/* The encodings X.509 expects. */
			if (ks->type == HSM_KEY_ED25519)
				assert_int_equal(len, 64);
			else if (ks->group == NULL)
				assert_int_equal(len, (size_t)ks->bits / 8);
			else
				assert_int_equal(sig[0],
						 0x30); /* DER SEQUENCE (canonical: t_verify) */

			/* The check can fail: another message, or one flipped bit, does not verify.
			 */
			assert_int_equal(t_verify(pub, alg, (const uint8_t *)"another message", 15,
						  sig, len),
					 0);
			sig[len / 2] ^= 0x10;
			assert_int_equal(t_verify(pub, alg, MSGP, MSGLEN, sig, len), 0);
			expect_err(hsm_verify(pub, alg, MSGP, MSGLEN, sig, len, &em),
				   P11CA_E_HSM_BAD_SIGNATURE, &em);
			sig[len / 2] ^= 0x10;

			/* PSS and ECDSA are randomised, PKCS#1 v1.5 and Ed25519 deterministic. */
			len2 = sign_checked(key, alg, MSGP, MSGLEN, sig2);
			*(on_main ? &signed_main : &signed_ed) += 1;
			if (alg_is_randomised(alg))
				assert_false(len == len2 && memcmp(sig, sig2, len) == 0);
			else
				assert_memory_equal(sig, sig2, len);
		}
	}

	struct hsm_status st1 = status_of(main_tok), st1_ed = status_of(ed_tok);
	assert_int_equal(st1.signatures - st0.signatures, signed_main);
	assert_int_equal(st1_ed.signatures - st0_ed.signatures, signed_ed);
	assert_int_equal(st1.failures - st0.failures, refused_main);
	assert_int_equal(st1_ed.failures - st0_ed.failures, refused_ed);
	assert_int_equal(st1.bad_signatures, 0);
	fprintf(stderr, "%lu signatures on %s, %lu on %s\n", (unsigned long)signed_main, TOK_MAIN,
		(unsigned long)signed_ed, TOK_ED);
}

/* ---- openssl(1): the same signatures, verified by another program ------------------------ */

static void openssl_verify(struct hsm_key *key, enum hsm_sig_alg alg, const char *tag,
			   bool expect_ok)
{
	char pem[4096], msgp[4096], sigp[4096], mdopt[16];
	uint8_t sig[HSM_SIG_MAX];
	size_t len = sign_checked(key, alg, MSGP, MSGLEN, sig);
	const char *md = t_alg_md(alg);

	path_in(pem, sizeof(pem), "cli-pub.pem");
	path_in(msgp, sizeof(msgp), "cli-msg.bin");
	path_in(sigp, sizeof(sigp), "cli-sig.bin");
	assert_int_equal(t_write_pubkey_pem(hsm_key_public(key), pem), 0);
	assert_int_equal(t_write_file(sigp, sig, len, 0600), 0);
	/* A wrong message must make openssl fail: the check can fail. */
	if (expect_ok)
		assert_int_equal(t_write_file(msgp, MSGP, MSGLEN, 0600), 0);
	else
		assert_int_equal(t_write_file(msgp, "tampered", 8, 0600), 0);

	int rc;
	fprintf(stderr, "openssl verifies %s (%s)%s\n", tag, hsm_sig_alg_name(alg),
		expect_ok ? "" : ", tampered message");
	if (alg == HSM_SIG_ED25519) {
		char *argv[] = {"openssl", "pkeyutl", "-verify", "-pubin",   "-inkey", pem,
				"-rawin",  "-in",     msgp,	 "-sigfile", sigp,     NULL};
		rc = t_run(argv, NULL, NULL);
	} else if (t_alg_is_pss(alg)) {
		char salt[32], mgf[32];
		snprintf(mdopt, sizeof(mdopt), "-%s", md);
		snprintf(salt, sizeof(salt), "rsa_pss_saltlen:%d",
			 EVP_MD_get_size(EVP_get_digestbyname(md)));
		snprintf(mgf, sizeof(mgf), "rsa_mgf1_md:%s", md);
		char *argv[] = {
			"openssl", "dgst",	 mdopt,	    "-sigopt", "rsa_padding_mode:pss",
			"-sigopt", salt,	 "-sigopt", mgf,       "-verify",
			pem,	   "-signature", sigp,	    msgp,      NULL};
		rc = t_run(argv, NULL, NULL);
	} else {
		snprintf(mdopt, sizeof(mdopt), "-%s", md);
		char *argv[] = {"openssl",    "dgst", mdopt, "-verify", pem,
				"-signature", sigp,   msgp,  NULL};
		rc = t_run(argv, NULL, NULL);
	}
	if (expect_ok)
		assert_int_equal(rc, 0);
	else
		assert_int_not_equal(rc, 0);
}

static void test_openssl_cli_verifies(void **state)
{
	struct tctx *tc = *state;
	struct hsm_token *main_tok = open_login(tc, TOK_MAIN, T_PIN, 1);
	struct hsm_token *ed_tok = open_login(tc, TOK_ED, T_PIN, 1);
	struct hsm_key *rsa = suite_key(tc, main_tok, K_RSA2048);
	struct hsm_key *p256 = suite_key(tc, main_tok, K_P256);
	struct hsm_key *p384 = suite_key(tc, main_tok, K_P384);
	struct hsm_key *ed = suite_key(tc, ed_tok, K_ED25519);

	openssl_verify(rsa, HSM_SIG_RSA_PKCS1_SHA256, "rsa2048", true);
	openssl_verify(rsa, HSM_SIG_RSA_PKCS1_SHA256, "rsa2048", false);
	openssl_verify(rsa, HSM_SIG_RSA_PSS_SHA256, "rsa2048", true);
	openssl_verify(rsa, HSM_SIG_RSA_PSS_SHA512, "rsa2048", true);
	openssl_verify(rsa, HSM_SIG_RSA_PSS_SHA256, "rsa2048", false);
	openssl_verify(p256, HSM_SIG_ECDSA_SHA256, "p256", true);
	openssl_verify(p256, HSM_SIG_ECDSA_SHA256, "p256", false);
	openssl_verify(p384, HSM_SIG_ECDSA_SHA384, "p384", true);
	openssl_verify(ed, HSM_SIG_ED25519, "ed25519", true);
	openssl_verify(ed, HSM_SIG_ED25519, "ed25519", false);
}

/* ---- pkcs11-tool and libp11: other PKCS#11 clients sign with the same keys ---------------- */

static bool file_contains(const char *path, const char *needle)
{
	char buf[8192];
	size_t len = 0;

	assert_int_equal(t_read_file(path, (uint8_t *)buf, sizeof(buf) - 1, &len), 0);
	buf[len] = '\0';
	fprintf(stderr, "%s: %s", path, buf);
	return strstr(buf, needle) != NULL;
}

/* The public key pkcs11-tool reads from the token for this id must be hsm/'s. */
static void pubkey_matches_token(struct hsm_key *key, const char *token, const char *hexid)
{
	char out[4096];
	char *argv[] = {"pkcs11-tool",
			"--module",
			(char *)softhsm_module_path(),
			"--token-label",
			(char *)token,
			"--read-object",
			"--type",
			"pubkey",
			"--id",
			(char *)hexid,
			"-o",
			out,
			NULL};

	path_in(out, sizeof(out), "token-pub.bin");
	assert_int_equal(t_run(argv, NULL, NULL), 0);
	EVP_PKEY *theirs = t_read_pubkey(out);
	assert_non_null(theirs);
	assert_int_equal(EVP_PKEY_eq(theirs, hsm_key_public(key)), 1);
	EVP_PKEY_free(theirs);
}

/* pkcs11-tool signs `in` with the key of that id; the result lands in `sigp`. */
static void tool_sign(const char *token, const char *hexid, const char *mech, const char *in,
		      const char *sigp, char *const extra[])
{
	char *argv[32] = {"pkcs11-tool",
			  "--module",
			  (char *)softhsm_module_path(),
			  "--token-label",
			  (char *)token,
			  "--login",
			  "--pin",
			  T_PIN,
			  "--sign",
			  "--id",
			  (char *)hexid,
			  "-m",
			  (char *)mech,
			  "-i",
			  (char *)in,
			  "-o",
			  (char *)sigp};
	size_t n = 17;

	for (size_t i = 0; extra != NULL && extra[i] != NULL; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	assert_int_equal(t_run(argv, NULL, NULL), 0);
}

static void check_file_sig(struct hsm_key *key, enum hsm_sig_alg alg, const char *sigp)
{
	uint8_t sig[HSM_SIG_MAX];
	size_t len = 0;

	assert_int_equal(t_read_file(sigp, sig, sizeof(sig), &len), 0);
	assert_int_equal(t_verify(hsm_key_public(key), alg, MSGP, MSGLEN, sig, len), 1);
	assert_int_equal(t_verify(hsm_key_public(key), alg, (const uint8_t *)"other", 5, sig, len),
			 0);
	struct p11ca_errmsg em = {0};
	expect_err(hsm_verify(hsm_key_public(key), alg, MSGP, MSGLEN, sig, len, &em), P11CA_OK,
		   &em);
}

static void test_pkcs11_tool_crosscheck(void **state)
{
	struct tctx *tc = *state;
	struct hsm_token *main_tok = open_login(tc, TOK_MAIN, T_PIN, 1);
	struct hsm_token *ed_tok = open_login(tc, TOK_ED, T_PIN, 1);
	struct hsm_key *rsa = suite_key(tc, main_tok, K_RSA2048);
	struct hsm_key *rsa3 = suite_key(tc, main_tok, K_RSA3072);
	struct hsm_key *p256 = suite_key(tc, main_tok, K_P256);
	struct hsm_key *ed = suite_key(tc, ed_tok, K_ED25519);
	char msgp[4096], dgp[4096], sigp[4096];
	uint8_t digest[32];
	unsigned dlen = 0;

	path_in(msgp, sizeof(msgp), "tool-msg.bin");
	path_in(dgp, sizeof(dgp), "tool-digest.bin");
	path_in(sigp, sizeof(sigp), "tool-sig.bin");
	assert_int_equal(t_write_file(msgp, MSGP, MSGLEN, 0600), 0);
	assert_int_equal(EVP_Digest(MSGP, MSGLEN, digest, &dlen, EVP_sha256(), NULL), 1);
	assert_int_equal(t_write_file(dgp, digest, dlen, 0600), 0);

	/* The public keys hsm/ built are the token's. */
	pubkey_matches_token(rsa, TOK_MAIN, S.keys[K_RSA2048].hex);
	pubkey_matches_token(p256, TOK_MAIN, S.keys[K_P256].hex);
	pubkey_matches_token(ed, TOK_ED, S.keys[K_ED25519].hex);

	/* Signatures pkcs11-tool makes with the same keys verify with hsm/'s public keys. */
	tool_sign(TOK_MAIN, S.keys[K_RSA2048].hex, "SHA256-RSA-PKCS", msgp, sigp, NULL);
	check_file_sig(rsa, HSM_SIG_RSA_PKCS1_SHA256, sigp);
	char *pss384[] = {"--mgf", "MGF1-SHA384", "--salt-len", "48", NULL};
	tool_sign(TOK_MAIN, S.keys[K_RSA3072].hex, "SHA384-RSA-PKCS-PSS", msgp, sigp, pss384);
	check_file_sig(rsa3, HSM_SIG_RSA_PSS_SHA384, sigp);
	char *der[] = {"--signature-format", "openssl", NULL};
	tool_sign(TOK_MAIN, S.keys[K_P256].hex, "ECDSA", dgp, sigp, der);
	check_file_sig(p256, HSM_SIG_ECDSA_SHA256, sigp);
	tool_sign(TOK_ED, S.keys[K_ED25519].hex, "EDDSA", msgp, sigp, NULL);
	check_file_sig(ed, HSM_SIG_ED25519, sigp);

	/* And the token itself accepts hsm/'s signature (C_Verify in pkcs11-tool). */
	uint8_t sig[HSM_SIG_MAX];
	size_t len = sign_checked(rsa, HSM_SIG_RSA_PKCS1_SHA256, MSGP, MSGLEN, sig);
	assert_int_equal(t_write_file(sigp, sig, len, 0600), 0);
	char *verify[] = {"pkcs11-tool",
			  "--module",
			  (char *)softhsm_module_path(),
			  "--token-label",
			  TOK_MAIN,
			  "--login",
			  "--pin",
			  T_PIN,
			  "--verify",
			  "--id",
			  S.keys[K_RSA2048].hex,
			  "-m",
			  "SHA256-RSA-PKCS",
			  "-i",
			  msgp,
			  "--signature-file",
			  sigp,
			  NULL};
	/* pkcs11-tool --verify exits 0 either way: its verdict is on stdout. */
	char verdict[4096];
	path_in(verdict, sizeof(verdict), "tool-verdict.txt");
	assert_int_equal(t_run(verify, NULL, verdict), 0);
	assert_true(file_contains(verdict, "Signature is valid"));
	sig[len - 1] ^= 0x01;
	assert_int_equal(t_write_file(sigp, sig, len, 0600), 0);
	assert_int_equal(t_run(verify, NULL, verdict), 0);
	assert_false(file_contains(verdict, "Signature is valid"));
	assert_true(file_contains(verdict, "Invalid signature"));
}

static void engine_sign(const char *label, const char *md, const char *msgp, const char *sigp)
{
	char uri[256], module_env[4200], mdopt[16];
	snprintf(uri, sizeof(uri), "pkcs11:token=%s;object=%s;type=private;pin-value=%s", TOK_MAIN,
		 label, T_PIN);
	snprintf(module_env, sizeof(module_env), "PKCS11_MODULE_PATH=%s", softhsm_module_path());
	snprintf(mdopt, sizeof(mdopt), "-%s", md);
	char *env[] = {module_env, NULL};
	char *argv[] = {"openssl", "dgst", mdopt,  "-engine",	 "pkcs11",     "-keyform", "engine",
			"-sign",   uri,	   "-out", (char *)sigp, (char *)msgp, NULL};
	assert_int_equal(t_run(argv, env, NULL), 0);
}

static void test_libp11_engine_crosscheck(void **state)
{
	struct tctx *tc = *state;
	struct hsm_token *main_tok = open_login(tc, TOK_MAIN, T_PIN, 1);
	struct hsm_key *rsa = suite_key(tc, main_tok, K_RSA2048);
	struct hsm_key *p256 = suite_key(tc, main_tok, K_P256);
	struct hsm_key *p384 = suite_key(tc, main_tok, K_P384);
	char msgp[4096], sigp[4096];

	path_in(msgp, sizeof(msgp), "engine-msg.bin");
	path_in(sigp, sizeof(sigp), "engine-sig.bin");
	assert_int_equal(t_write_file(msgp, MSGP, MSGLEN, 0600), 0);

	engine_sign(key_specs[K_RSA2048].label, "sha256", msgp, sigp);
	check_file_sig(rsa, HSM_SIG_RSA_PKCS1_SHA256, sigp);
	engine_sign(key_specs[K_RSA2048].label, "sha512", msgp, sigp);
	check_file_sig(rsa, HSM_SIG_RSA_PKCS1_SHA512, sigp);
	engine_sign(key_specs[K_P256].label, "sha256", msgp, sigp);
	check_file_sig(p256, HSM_SIG_ECDSA_SHA256, sigp);
	engine_sign(key_specs[K_P384].label, "sha384", msgp, sigp);
	check_file_sig(p384, HSM_SIG_ECDSA_SHA384, sigp);
}

/* ---- generation refusals --------------------------------------------------------------------- */

static long count_objects(const char *token, const char *label)
{
	CK_FUNCTION_LIST *fn = t_raw_module(softhsm_module_path());
	CK_SESSION_HANDLE s;
	long n;

	assert_non_null(fn);
	assert_int_equal(t_raw_session(fn, token, &s), 0);
	n = t_raw_count(fn, s, (CK_OBJECT_CLASS)-1, label);
	fn->C_CloseSession(s);
	assert_true(n >= 0);
	return n;
}

static void test_generate_refusals(void **state)
{
	struct tctx *tc = *state;
	struct hsm_token *tok = open_login(tc, TOK_MAIN, T_PIN, 1);
	struct hsm_key *key = NULL;
	struct p11ca_errmsg em = {0};
	char datap[4096], long_label[70];

	/* An object of another class (a data object made by pkcs11-tool) counts too: p11ca
	 * never shadows anything. */
	path_in(datap, sizeof(datap), "data-object.bin");
	assert_int_equal(t_write_file(datap, "data", 4, 0600), 0);
	char *argv[] = {"pkcs11-tool",	 "--module",  (char *)softhsm_module_path(),
			"--token-label", TOK_MAIN,    "--login",
			"--pin",	 T_PIN,	      "--write-object",
			datap,		 "--type",    "data",
			"--label",	 "some-data", NULL};
	assert_int_equal(t_run(argv, NULL, NULL), 0);

	long before = count_objects(TOK_MAIN, NULL);
	assert_true(before >= 2 * 6 + 1);

	expect_err(hsm_key_generate(tok, HSM_KEY_P256, key_specs[K_RSA2048].label, &key, &em),
		   P11CA_E_HSM_KEY_EXISTS, &em);
	assert_null(key);
	assert_contains(em.text, key_specs[K_RSA2048].label);
	assert_contains(em.text, S.keys[K_RSA2048].hex); /* names the object that is in the way */

	p11ca_errmsg_clear(&em);
	expect_err(hsm_key_generate(tok, HSM_KEY_ED25519, "some-data", &key, &em),
		   P11CA_E_HSM_KEY_EXISTS, &em);
	assert_null(key);
	assert_contains(em.text, "some-data");

	/* Malformed requests never reach the token. */
	memset(long_label, 'x', 65);
	long_label[65] = '\0';
	const char *bad_labels[] = {"", long_label, "tab\there", "new\nline"};
	for (size_t i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++) {
		p11ca_errmsg_clear(&em);
		expect_err(hsm_key_generate(tok, HSM_KEY_P256, bad_labels[i], &key, &em),
			   P11CA_E_INVALID_ARG, &em);
		assert_null(key);
	}
	p11ca_errmsg_clear(&em);
	expect_err(hsm_key_generate(tok, HSM_KEY_UNSPECIFIED, "fine-label", &key, &em),
		   P11CA_E_INVALID_ARG, &em);
	expect_err(hsm_key_generate(tok, (enum hsm_key_type)99, "fine-label", &key, &em),
		   P11CA_E_INVALID_ARG, &em);
	assert_null(key);

	assert_int_equal(count_objects(TOK_MAIN, NULL), before);
	assert_int_equal(count_objects(TOK_MAIN, key_specs[K_RSA2048].label), 2);
	assert_int_equal(count_objects(TOK_MAIN, "fine-label"), 0);

	/* 64 characters is the longest label, and it works end to end. */
	long_label[64] = '\0';
	p11ca_errmsg_clear(&em);
	expect_err(hsm_key_generate(tok, HSM_KEY_P256, long_label, &key, &em), P11CA_OK, &em);
	keep_key(tc, key);
	assert_string_equal(hsm_key_label(key), long_label);
	struct hsm_key *again = NULL;
	expect_err(hsm_key_find(tok, long_label, NULL, 0, &again, &em), P11CA_OK, &em);
	keep_key(tc, again);
	uint8_t sig[HSM_SIG_MAX];
	sign_checked(again, HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig);
	assert_int_equal(count_objects(TOK_MAIN, NULL), before + 2);
}

/* ---- lookup: ambiguity, ids, URIs ---------------------------------------------------------- */

/* A P-256 key pair made by pkcs11-tool, outside p11ca. */
static void tool_keypair(const char *label, const char *hexid)
{
	char *argv[] = {"pkcs11-tool",
			"--module",
			(char *)softhsm_module_path(),
			"--token-label",
			TOK_MAIN,
			"--login",
			"--pin",
			T_PIN,
			"--keypairgen",
			"--key-type",
			"EC:prime256v1",
			"--label",
			(char *)label,
			"--id",
			(char *)hexid,
			NULL};
	assert_int_equal(t_run(argv, NULL, NULL), 0);
}

static struct hsm_key *find_uri_ok(struct tctx *tc, struct hsm_token *tok, const char *uri)
{
	struct hsm_key *key = NULL;
	struct p11ca_errmsg em = {0};

	expect_err(hsm_key_find_uri(tok, uri, &key, &em), P11CA_OK, &em);
	return keep_key(tc, key);
}

static void find_uri_fails(struct hsm_token *tok, const char *uri, enum p11ca_err want)
{
	struct hsm_key *key = (struct hsm_key *)&key; /* must be reset to NULL */
	struct p11ca_errmsg em = {0};

	fprintf(stderr, "find_uri %s\n", uri);
	expect_err(hsm_key_find_uri(tok, uri, &key, &em), want, &em);
	assert_null(key);
}

static void test_lookup_ambiguity_ids_and_uris(void **state)
{
	struct tctx *tc = *state;
	struct hsm_token *tok = open_login(tc, TOK_MAIN, T_PIN, 1);
	struct hsm_key *key = NULL;
	struct p11ca_errmsg em = {0};
	const uint8_t id1[] = {0x01}, id2[] = {0x02};
	uint8_t sig[HSM_SIG_MAX];

	tool_keypair("dup", "01");
	tool_keypair("dup", "02");

	/* By label: two private keys match; the error names both ids. */
	expect_err(hsm_key_find(tok, "dup", NULL, 0, &key, &em), P11CA_E_HSM_KEY_AMBIGUOUS, &em);
	assert_null(key);
	assert_contains(em.text, "id 01");
	assert_contains(em.text, "id 02");
	assert_contains(em.text, "dup");

	/* By id: exactly one, with its label, public key and a working signature. */
	struct hsm_key *k1 = NULL, *k2 = NULL;
	p11ca_errmsg_clear(&em);
	expect_err(hsm_key_find(tok, NULL, id1, 1, &k1, &em), P11CA_OK, &em);
	keep_key(tc, k1);
	expect_err(hsm_key_find(tok, "dup", id2, 1, &k2, &em), P11CA_OK, &em);
	keep_key(tc, k2);
	size_t id_len = 0;
	assert_string_equal(hsm_key_label(k1), "dup");
	assert_memory_equal(hsm_key_id(k1, &id_len), id1, 1);
	assert_int_equal(id_len, 1);
	assert_int_equal(hsm_key_type_of(k1), HSM_KEY_P256);
	assert_int_equal(EVP_PKEY_eq(hsm_key_public(k1), hsm_key_public(k2)), 0);
	pubkey_matches_token(k1, TOK_MAIN, "01");
	pubkey_matches_token(k2, TOK_MAIN, "02");
	size_t len = sign_checked(k1, HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig);
	assert_int_equal(t_verify(hsm_key_public(k2), HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig, len),
			 0);

	/* RFC 7512 object URIs. */
	struct hsm_key *u1 = find_uri_ok(tc, tok, "pkcs11:object=dup;id=%01");
	assert_memory_equal(hsm_key_id(u1, &id_len), id1, 1);
	struct hsm_key *u2 = find_uri_ok(tc, tok,
					 "pkcs11:token=" TOK_MAIN ";object=dup;id=%02;"
					 "type=private");
	assert_memory_equal(hsm_key_id(u2, &id_len), id2, 1);
	struct hsm_key *u3 = find_uri_ok(tc, tok, "pkcs11:id=%01");
	assert_true(EVP_PKEY_eq(hsm_key_public(u3), hsm_key_public(k1)) == 1);
	char uri[256];
	snprintf(uri, sizeof(uri), "pkcs11:object=%s", key_specs[K_P384].label);
	assert_int_equal(hsm_key_type_of(find_uri_ok(tc, tok, uri)), HSM_KEY_P384);

	find_uri_fails(tok, "pkcs11:object=dup", P11CA_E_HSM_KEY_AMBIGUOUS);
	find_uri_fails(tok, "pkcs11:token=" TOK_ED ";object=dup;id=%01", P11CA_E_URI);
	find_uri_fails(tok, "pkcs11:token=no-such-token;id=%01", P11CA_E_URI);
	find_uri_fails(tok, "pkcs11:object=dup;id=%01;type=public", P11CA_E_URI);
	find_uri_fails(tok, "pkcs11:object=dup;id=%01;type=cert", P11CA_E_URI);
	find_uri_fails(tok, "pkcs11:type=private", P11CA_E_URI);
	find_uri_fails(tok, "not-a-uri", P11CA_E_URI);
	find_uri_fails(tok, "pkcs11:object=dup;id=%01;colour=blue", P11CA_E_URI);
	find_uri_fails(tok, "pkcs11:object=no-such-key", P11CA_E_HSM_KEY_NOT_FOUND);
	find_uri_fails(tok, "pkcs11:object=dup;id=%03", P11CA_E_HSM_KEY_NOT_FOUND);

	/* Plain lookups that cannot succeed. */
	p11ca_errmsg_clear(&em);
	expect_err(hsm_key_find(tok, "no-such-key", NULL, 0, &key, &em), P11CA_E_HSM_KEY_NOT_FOUND,
		   &em);
	assert_null(key);
	assert_contains(em.text, "no-such-key");
	assert_contains(em.text, TOK_MAIN);
	expect_err(hsm_key_find(tok, NULL, NULL, 0, &key, &em), P11CA_E_INVALID_ARG, &em);
	expect_err(hsm_key_find(tok, "", id1, 0, &key, &em), P11CA_E_INVALID_ARG, &em);
	uint8_t long_id[65] = {0};
	expect_err(hsm_key_find(tok, NULL, long_id, sizeof(long_id), &key, &em),
		   P11CA_E_INVALID_ARG, &em);
	assert_null(key);

	/* And generation refuses the ambiguous label too. */
	p11ca_errmsg_clear(&em);
	expect_err(hsm_key_generate(tok, HSM_KEY_P256, "dup", &key, &em), P11CA_E_HSM_KEY_EXISTS,
		   &em);
	assert_null(key);
}

/*
 * Two key pairs made outside p11ca share one CKA_ID under different labels. A lookup by
 * that id must be refused as ambiguous. A lookup by the (unique) label may either refuse
 * too, or succeed — but then it must have the right public key and must sign.
 */
static void test_shared_id_different_labels(void **state)
{
	struct tctx *tc = *state;
	struct hsm_token *tok = open_login(tc, TOK_MAIN, T_PIN, 1);
	struct hsm_key *key = NULL;
	struct p11ca_errmsg em = {0};
	const uint8_t id5[] = {0x05};
	char out[4096];

	tool_keypair("twin-a", "05");
	tool_keypair("twin-b", "05");

	expect_err(hsm_key_find(tok, NULL, id5, 1, &key, &em), P11CA_E_HSM_KEY_AMBIGUOUS, &em);
	assert_contains(em.text, "twin-a");
	assert_contains(em.text, "twin-b");

	/* twin-a's public key, as the token has it (by label: pkcs11-tool reads the first
	 * match, and there is one object labelled twin-a per class). */
	path_in(out, sizeof(out), "twin-a-pub.bin");
	char *argv[] = {"pkcs11-tool",
			"--module",
			(char *)softhsm_module_path(),
			"--token-label",
			TOK_MAIN,
			"--read-object",
			"--type",
			"pubkey",
			"--label",
			"twin-a",
			"-o",
			out,
			NULL};
	assert_int_equal(t_run(argv, NULL, NULL), 0);
	EVP_PKEY *twin_a = t_read_pubkey(out);
	assert_non_null(twin_a);

	p11ca_errmsg_clear(&em);
	enum p11ca_err err = hsm_key_find(tok, "twin-a", NULL, 0, &key, &em);
	fprintf(stderr, "find twin-a: %s %s\n", p11ca_err_name(err), em.text);
	if (err == P11CA_E_HSM_KEY_AMBIGUOUS) {
		EVP_PKEY_free(twin_a);
		return; /* refusing is a correct answer */
	}
	assert_int_equal(err, P11CA_OK);
	keep_key(tc, key);
	int same = EVP_PKEY_eq(hsm_key_public(key), twin_a);
	EVP_PKEY_free(twin_a);
	assert_int_equal(same, 1); /* not twin-b's public key */

	uint8_t sig[HSM_SIG_MAX];
	size_t len = 0;
	struct hsm_status st0 = status_of(tok);
	p11ca_errmsg_clear(&em);
	expect_err(hsm_sign(key, HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig, sizeof(sig), &len, &em),
		   P11CA_OK, &em);
	/* ...and a healthy token is not re-initialised on the way. */
	assert_int_equal(status_of(tok).recoveries, st0.recoveries);
}

/* A key p11ca cannot represent (made outside it, with a 70-character label) is either usable
 * or refused with a message that says what is wrong with which key — never "success". */
static void test_foreign_key_with_long_label(void **state)
{
	struct tctx *tc = *state;
	struct hsm_token *tok = open_login(tc, TOK_MAIN, T_PIN, 1);
	struct hsm_key *key = NULL;
	struct p11ca_errmsg em = {0};
	const uint8_t id[] = {0x0a};
	char label[71];

	memset(label, 'L', 70);
	label[70] = '\0';
	tool_keypair(label, "0a");
	enum p11ca_err err = hsm_key_find(tok, NULL, id, sizeof(id), &key, &em);
	fprintf(stderr, "key with a 70-character label: %s '%s'\n", p11ca_err_name(err), em.text);
	if (err == P11CA_OK) {
		uint8_t sig[HSM_SIG_MAX];
		keep_key(tc, key);
		sign_checked(key, HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig);
		return;
	}
	assert_null(key);
	assert_string_not_equal(em.text, p11ca_strerror(P11CA_OK));
	assert_contains(em.text, TOK_MAIN);
}

/* ---- algorithm / key mismatch ------------------------------------------------------------ */

static void test_mechanism_mismatch(void **state)
{
	struct tctx *tc = *state;
	struct hsm_token *main_tok = open_login(tc, TOK_MAIN, T_PIN, 1);
	struct hsm_token *ed_tok = open_login(tc, TOK_ED, T_PIN, 1);
	struct hsm_key *rsa = suite_key(tc, main_tok, K_RSA2048);
	struct hsm_key *p256 = suite_key(tc, main_tok, K_P256);
	struct hsm_key *ed = suite_key(tc, ed_tok, K_ED25519);
	const struct {
		struct hsm_key *key;
		enum hsm_sig_alg alg;
	} cases[] = {
		{rsa, HSM_SIG_ECDSA_SHA256},	  {rsa, HSM_SIG_ED25519},
		{p256, HSM_SIG_RSA_PKCS1_SHA256}, {p256, HSM_SIG_RSA_PSS_SHA384},
		{p256, HSM_SIG_ED25519},	  {ed, HSM_SIG_ECDSA_SHA256},
		{ed, HSM_SIG_RSA_PSS_SHA256},	  {ed, HSM_SIG_UNSPECIFIED},
		{rsa, (enum hsm_sig_alg)77},
	};
	uint8_t sig[HSM_SIG_MAX];
	size_t len;
	struct p11ca_errmsg em;
	struct hsm_status m0 = status_of(main_tok), e0 = status_of(ed_tok);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p11ca_errmsg_clear(&em);
		len = 12345;
		expect_err(hsm_sign(cases[i].key, cases[i].alg, MSGP, MSGLEN, sig, sizeof(sig),
				    &len, &em),
			   P11CA_E_HSM_MECHANISM, &em);
		assert_int_equal(len, 0);
		assert_contains(em.text, hsm_key_label(cases[i].key));
		/* hsm_verify refuses the same pairs. */
		p11ca_errmsg_clear(&em);
		expect_err(hsm_verify(hsm_key_public(cases[i].key), cases[i].alg, MSGP, MSGLEN, sig,
				      64, &em),
			   P11CA_E_HSM_MECHANISM, &em);
	}
	struct hsm_status m1 = status_of(main_tok), e1 = status_of(ed_tok);
	assert_int_equal(m1.signatures, m0.signatures);
	assert_int_equal(m1.failures - m0.failures, 6);
	assert_int_equal(e1.failures - e0.failures, 3);
	assert_int_equal(m1.last_error, P11CA_E_HSM_MECHANISM);

	/* Arguments hsm_sign refuses before looking at the key. */
	p11ca_errmsg_clear(&em);
	expect_err(
		hsm_sign(p256, HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig, HSM_SIG_MAX - 1, &len, &em),
		P11CA_E_INVALID_ARG, &em);
	assert_int_equal(len, 0);
	expect_err(hsm_sign(p256, HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, NULL, HSM_SIG_MAX, &len, &em),
		   P11CA_E_INVALID_ARG, &em);
	expect_err(hsm_sign(p256, HSM_SIG_ECDSA_SHA256, NULL, 5, sig, HSM_SIG_MAX, &len, &em),
		   P11CA_E_INVALID_ARG, &em);
	/* An empty message is a message (NULL with length 0). */
	p11ca_errmsg_clear(&em);
	expect_err(hsm_sign(p256, HSM_SIG_ECDSA_SHA256, NULL, 0, sig, HSM_SIG_MAX, &len, &em),
		   P11CA_OK, &em);
	assert_int_equal(t_verify(hsm_key_public(p256), HSM_SIG_ECDSA_SHA256, (const uint8_t *)"",
				  0, sig, len),
			 1);
}

/* ---- opening tokens: URI and module errors --------------------------------------------- */

static void open_fails(struct tctx *tc, const char *module, const char *uri, unsigned pool,
		       enum p11ca_err want, struct p11ca_errmsg *em)
{
	struct hsm_token *tok = NULL;

	p11ca_errmsg_clear(em);
	fprintf(stderr, "open %s %s\n", module ? module : "(null)", uri ? uri : "(null)");
	expect_err(open_uri(tc, module, uri, pool, 0, &tok, em), want, em);
	assert_null(tok);
	assert_true(em->text[0] != '\0');
}

static void test_token_open_errors(void **state)
{
	struct tctx *tc = *state;
	const char *mod = softhsm_module_path();
	struct p11ca_errmsg em = {0};
	char path[4096];

	/* No such token: the message lists the tokens that are there. */
	open_fails(tc, mod, "pkcs11:token=no-such-token", 0, P11CA_E_HSM_TOKEN_NOT_FOUND, &em);
	assert_contains(em.text, "no-such-token");
	assert_contains(em.text, TOK_MAIN);
	assert_contains(em.text, TOK_ED);
	/* ...even when the URI carried a PIN, which never shows. */
	open_fails(tc, mod, "pkcs11:token=no-such-token;pin-value=" T_PIN, 0,
		   P11CA_E_HSM_TOKEN_NOT_FOUND, &em);

	/* A loose URI matching several tokens names them and is refused. */
	open_fails(tc, mod, "pkcs11:model=SoftHSM%20v2", 0, P11CA_E_HSM_TOKEN_AMBIGUOUS, &em);
	assert_contains(em.text, TOK_MAIN);
	assert_contains(em.text, "serial");
	open_fails(tc, mod, "pkcs11:", 0, P11CA_E_HSM_TOKEN_AMBIGUOUS, &em);

	/* URIs refused before anything is loaded. */
	open_fails(tc, mod, "pkcs11:token=" TOK_MAIN ";pin-value=" T_PIN ";pin-source=/x", 0,
		   P11CA_E_URI, &em);
	assert_contains(em.text, "pin-source");
	open_fails(tc, mod, "pkcs11:token=" TOK_MAIN "?pin-source=/x&pin-value=" T_PIN, 0,
		   P11CA_E_URI, &em);
	assert_contains(em.text, "pin-source");
	open_fails(tc, mod, "pkcs11:token=" TOK_MAIN ";object=ca-p256", 0, P11CA_E_URI, &em);
	open_fails(tc, mod, "pkcs11:token=" TOK_MAIN ";id=%01", 0, P11CA_E_URI, &em);
	open_fails(tc, mod, "pkcs11:token=" TOK_MAIN ";colour=blue", 0, P11CA_E_URI, &em);
	open_fails(tc, mod, "https://example.com/", 0, P11CA_E_URI, &em);
	open_fails(tc, mod, "", 0, P11CA_E_URI, &em);
	open_fails(tc, mod, "pkcs11:token=" TOK_MAIN, 100000, P11CA_E_CONFIG, &em);

	/* Module paths. */
	open_fails(tc, "libsofthsm2.so", "pkcs11:token=" TOK_MAIN, 0, P11CA_E_CONFIG, &em);
	assert_contains(em.text, "absolute");
	open_fails(tc, "/nonexistent/libnothing.so", "pkcs11:token=" TOK_MAIN, 0,
		   P11CA_E_HSM_MODULE, &em);
	assert_contains(em.text, "/nonexistent/libnothing.so");
	open_fails(tc, S.fx.conf, "pkcs11:token=" TOK_MAIN, 0, P11CA_E_HSM_MODULE, &em);
	open_fails(tc, NULL, "pkcs11:token=" TOK_MAIN, 0, P11CA_E_CONFIG, &em);

	/* The module path may come from the URI; serial= picks one token. */
	struct hsm_token *tok = NULL;
	snprintf(path, sizeof(path), "pkcs11:token=%s?module-path=%s", TOK_MAIN, mod);
	p11ca_errmsg_clear(&em);
	expect_err(open_uri(tc, NULL, path, 0, 0, &tok, &em), P11CA_OK, &em);
	struct hsm_status st = status_of(tok);
	assert_string_equal(st.label, TOK_MAIN);
	assert_true(st.serial[0] != '\0');
	snprintf(path, sizeof(path), "pkcs11:serial=%s", st.serial);
	struct hsm_token *by_serial = NULL;
	expect_err(open_uri(tc, mod, path, 0, 0, &by_serial, &em), P11CA_OK, &em);
	assert_string_equal(status_of(by_serial).label, TOK_MAIN);
	snprintf(path, sizeof(path), "pkcs11:model=SoftHSM%%20v2;serial=%s", st.serial);
	struct hsm_token *by_both = NULL;
	expect_err(open_uri(tc, mod, path, 0, 0, &by_both, &em), P11CA_OK, &em);
}

/* ---- PIN paths ------------------------------------------------------------------------ */

static void test_login_paths(void **state)
{
	struct tctx *tc = *state;
	struct hsm_token *tok = open_tok(tc, TOK_LOGIN, 2);
	struct hsm_key *key = NULL;
	struct p11ca_errmsg em = {0};

	/* Before any PIN: present, not logged in, nothing counted. */
	struct hsm_status st = status_of(tok);
	assert_true(st.token_present);
	assert_false(st.logged_in);
	assert_false(st.pin_set);
	assert_false(st.pin_refused);
	assert_int_equal(st.key_count, -1);
	assert_string_equal(st.label, TOK_LOGIN);
	assert_string_equal(st.manufacturer, "SoftHSM project");
	assert_string_equal(st.model, "SoftHSM v2");
	assert_int_equal(st.pool_size, 2);
	assert_int_equal(st.sessions_busy, 0);

	/* Operations without a PIN say so. */
	expect_err(hsm_key_generate(tok, HSM_KEY_P256, "login-key", &key, &em), P11CA_E_HSM_NO_PIN,
		   &em);
	assert_contains(em.text, "PIN");
	p11ca_errmsg_clear(&em);
	expect_err(hsm_key_find(tok, "login-key", NULL, 0, &key, &em), P11CA_E_HSM_NO_PIN, &em);
	p11ca_errmsg_clear(&em);
	expect_err(hsm_token_login(tok, NULL, &em), P11CA_E_HSM_NO_PIN, &em);
	assert_null(key);

	/* A wrong PIN: refused, remembered as refused, and then never tried again. */
	p11ca_errmsg_clear(&em);
	expect_err(login_pin(tok, T_WRONG_PIN, &em), P11CA_E_HSM_PIN_INCORRECT, &em);
	assert_contains(em.text, "PIN");
	assert_contains(em.text, TOK_LOGIN);
	st = status_of(tok);
	assert_false(st.logged_in);
	assert_false(st.pin_set);
	assert_true(st.pin_refused);
	assert_int_equal(st.last_error, P11CA_E_HSM_PIN_INCORRECT);
	assert_true(st.last_error_text[0] != '\0');
	for (int i = 0; i < 5; i++) {
		double t0 = t_now_ms();
		p11ca_errmsg_clear(&em);
		expect_err(hsm_key_find(tok, "login-key", NULL, 0, &key, &em),
			   P11CA_E_HSM_PIN_INCORRECT, &em);
		assert_true(t_now_ms() - t0 < 500);
	}

	/* The right PIN recovers. */
	p11ca_errmsg_clear(&em);
	expect_err(login_pin(tok, T_PIN, &em), P11CA_OK, &em);
	st = status_of(tok);
	assert_true(st.logged_in);
	assert_true(st.pin_set);
	assert_false(st.pin_refused);
	assert_int_equal(st.key_count, 0);
	expect_err(hsm_key_generate(tok, HSM_KEY_P256, "login-key", &key, &em), P11CA_OK, &em);
	keep_key(tc, key);
	assert_int_equal(status_of(tok).key_count, 1);
	free_key(tc, key);
	/* Closing the last session logs the application out of the token (PKCS#11). */
	close_tok(tc, tok);

	/* pin-source files. */
	char pin0600[4096], pin0644[4096], wrong0600[4096], link[4096], uri[4096 + 128];
	path_in(pin0600, sizeof(pin0600), "pin-0600");
	path_in(pin0644, sizeof(pin0644), "pin-0644");
	path_in(wrong0600, sizeof(wrong0600), "pin-wrong");
	path_in(link, sizeof(link), "pin-link");
	assert_int_equal(t_write_file(pin0600, T_PIN "\n", strlen(T_PIN) + 1, 0600), 0);
	assert_int_equal(t_write_file(pin0644, T_PIN "\n", strlen(T_PIN) + 1, 0644), 0);
	assert_int_equal(t_write_file(wrong0600, T_WRONG_PIN, strlen(T_WRONG_PIN), 0600), 0);
	unlink(link);
	assert_int_equal(symlink(pin0600, link), 0);

	const struct {
		const char *attr, *value, *suffix;
		enum p11ca_err want;
		const char *needle;
	} cases[] = {
		{"pin-source=file:", wrong0600, "", P11CA_E_HSM_PIN_INCORRECT, "PIN"},
		{"pin-source=file:", pin0644, "", P11CA_E_PIN_SOURCE, "chmod"},
		{"pin-source=", link, "", P11CA_E_PIN_SOURCE, "symbolic link"},
		{"pin-source=file:", pin0600, ".missing", P11CA_E_PIN_SOURCE, "pin-0600.missing"},
		{"pin-source=file:", pin0600, "", P11CA_OK, NULL},
		{"pin-source=", pin0600, "", P11CA_OK, NULL},
		{"pin-value=", T_PIN, "", P11CA_OK, NULL},
		/* RFC 7512 puts them in the query part. */
		{"?pin-source=file:", pin0600, "", P11CA_OK, NULL},
		{"?pin-source=file:", pin0644, "", P11CA_E_PIN_SOURCE, "chmod"},
		{"?pin-value=", T_PIN, "", P11CA_OK, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(uri, sizeof(uri), "pkcs11:token=%s%s%s%s%s", TOK_LOGIN,
			 cases[i].attr[0] == '?' ? "" : ";", cases[i].attr, cases[i].value,
			 cases[i].suffix);
		fprintf(stderr, "login through %s%s\n", cases[i].attr,
			t_has_pin(cases[i].value) ? "(pin)" : cases[i].value);
		struct hsm_token *t = NULL;
		p11ca_errmsg_clear(&em);
		expect_err(open_uri(tc, softhsm_module_path(), uri, 1, 0, &t, &em), P11CA_OK, &em);
		expect_err(hsm_token_login(t, NULL, &em), cases[i].want, &em);
		if (cases[i].needle != NULL)
			assert_contains(em.text, cases[i].needle);
		if (cases[i].want == P11CA_OK) {
			p11ca_errmsg_clear(&em);
			expect_err(hsm_key_find(t, "login-key", NULL, 0, &key, &em), P11CA_OK, &em);
			keep_key(tc, key);
			uint8_t sig[HSM_SIG_MAX];
			sign_checked(key, HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig);
			free_key(tc, key);
		} else {
			assert_false(status_of(t).logged_in);
		}
		close_tok(tc, t);
	}
}

/* ---- status ------------------------------------------------------------------------------ */

static void test_status_counters(void **state)
{
	struct tctx *tc = *state;
	struct hsm_token *tok = open_tok(tc, TOK_MAIN, 3);
	struct p11ca_errmsg em = {0};

	struct hsm_status st = status_of(tok);
	assert_true(st.token_present);
	assert_false(st.logged_in);
	assert_int_equal(st.key_count, -1);
	assert_int_equal(st.pool_size, 3);
	assert_int_equal(st.sessions_open, 0);
	assert_int_equal(st.signatures, 0);
	assert_int_equal(st.failures, 0);
	assert_int_equal(st.recoveries, 0);
	assert_int_equal(st.last_error, P11CA_OK);

	expect_err(login_pin(tok, T_PIN, &em), P11CA_OK, &em);
	struct hsm_key *key = suite_key(tc, tok, K_P256);
	st = status_of(tok);
	assert_true(st.logged_in);
	assert_true(st.pin_set);
	assert_true(st.sessions_open >= 1 && st.sessions_open <= 3);
	assert_int_equal(st.sessions_busy, 0);

	/* key_count is the number of private keys, as the token reports them. */
	CK_FUNCTION_LIST *fn = t_raw_module(softhsm_module_path());
	CK_SESSION_HANDLE s;
	assert_int_equal(t_raw_session(fn, TOK_MAIN, &s), 0);
	long privs = t_raw_count(fn, s, CKO_PRIVATE_KEY, NULL);
	fn->C_CloseSession(s);
	assert_true(privs >= 6);
	assert_int_equal(st.key_count, privs);

	uint8_t sig[HSM_SIG_MAX];
	for (int i = 0; i < 5; i++)
		sign_checked(key, HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig);
	st = status_of(tok);
	assert_int_equal(st.signatures, 5);
	assert_int_equal(st.failures, 0);

	size_t len;
	p11ca_errmsg_clear(&em);
	expect_err(hsm_sign(key, HSM_SIG_ED25519, MSGP, 3, sig, sizeof(sig), &len, &em),
		   P11CA_E_HSM_MECHANISM, &em);
	st = status_of(tok);
	assert_int_equal(st.signatures, 5);
	assert_int_equal(st.failures, 1);
	assert_int_equal(st.last_error, P11CA_E_HSM_MECHANISM);
	assert_string_equal(st.last_error_text, em.text);
	assert_int_equal(st.bad_signatures, 0);
	assert_int_equal(st.recoveries, 0);
}

/* ---- two tokens at once ----------------------------------------------------------------- */

static void test_two_tokens(void **state)
{
	struct tctx *tc = *state;
	struct hsm_token *a = open_login(tc, TOK_MAIN, T_PIN, 2);
	struct hsm_token *b = open_tok(tc, TOK_B, 2);
	struct hsm_key *ka = suite_key(tc, a, K_P256), *kb = NULL, *key = NULL;
	struct p11ca_errmsg em = {0};
	uint8_t sig[HSM_SIG_MAX];

	/* A's login is A's: B has none, and A's PIN is not B's. */
	assert_false(status_of(b).logged_in);
	expect_err(hsm_key_generate(b, HSM_KEY_P256, "ca-p256", &key, &em), P11CA_E_HSM_NO_PIN,
		   &em);
	p11ca_errmsg_clear(&em);
	expect_err(login_pin(b, T_PIN, &em), P11CA_E_HSM_PIN_INCORRECT, &em);
	assert_true(status_of(a).logged_in);
	sign_checked(ka, HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig);
	p11ca_errmsg_clear(&em);
	expect_err(login_pin(b, T_PIN_B, &em), P11CA_OK, &em);

	/* Keys are per token: A's key is not on B; the same label may exist on both. */
	p11ca_errmsg_clear(&em);
	expect_err(hsm_key_find(b, key_specs[K_P256].label, NULL, 0, &key, &em),
		   P11CA_E_HSM_KEY_NOT_FOUND, &em);
	assert_contains(em.text, TOK_B);
	expect_err(hsm_key_find(b, NULL, S.keys[K_P256].id, S.keys[K_P256].id_len, &key, &em),
		   P11CA_E_HSM_KEY_NOT_FOUND, &em);
	p11ca_errmsg_clear(&em);
	expect_err(hsm_key_generate(b, HSM_KEY_P256, key_specs[K_P256].label, &kb, &em), P11CA_OK,
		   &em);
	keep_key(tc, kb);
	assert_int_equal(EVP_PKEY_eq(hsm_key_public(ka), hsm_key_public(kb)), 0);

	struct hsm_status a0 = status_of(a), b0 = status_of(b);
	size_t la = sign_checked(ka, HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig);
	assert_int_equal(t_verify(hsm_key_public(kb), HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig, la),
			 0);
	size_t lb = sign_checked(kb, HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig);
	assert_int_equal(t_verify(hsm_key_public(ka), HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig, lb),
			 0);
	sign_checked(kb, HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig);
	struct hsm_status a1 = status_of(a), b1 = status_of(b);
	assert_int_equal(a1.signatures - a0.signatures, 1);
	assert_int_equal(b1.signatures - b0.signatures, 2);
	assert_int_equal(b1.key_count, 1);
	assert_string_equal(a1.label, TOK_MAIN);
	assert_string_equal(b1.label, TOK_B);
	assert_string_not_equal(a1.serial, b1.serial);

	/* Closing B leaves A working. */
	free_key(tc, kb);
	close_tok(tc, b);
	sign_checked(ka, HSM_SIG_ECDSA_SHA256, MSGP, MSGLEN, sig);
}

/* ---- concurrency ------------------------------------------------------------------------- */

#define C_THREADS 8
#define C_PER	  40

struct worker {
	pthread_t thread;
	pthread_barrier_t *start;
	struct hsm_key *keys[3];
	enum hsm_sig_alg algs[3];
	unsigned ok, bad;
	char first_error[384];
};

static void *sign_worker(void *arg)
{
	struct worker *w = arg;
	char msg[64];

	pthread_barrier_wait(w->start);
	for (unsigned i = 0; i < C_PER; i++) {
		unsigned k = i % 3;
		uint8_t sig[HSM_SIG_MAX];
		size_t len = 0;
		struct p11ca_errmsg em = {0};
		int n = snprintf(msg, sizeof(msg), "message %u from %p", i, (void *)w);

		if (hsm_sign(w->keys[k], w->algs[k], (const uint8_t *)msg, (size_t)n, sig,
			     sizeof(sig), &len, &em) == P11CA_OK &&
		    t_verify(hsm_key_public(w->keys[k]), w->algs[k], (const uint8_t *)msg,
			     (size_t)n, sig, len) == 1) {
			w->ok++;
		} else {
			if (w->bad++ == 0)
				snprintf(w->first_error, sizeof(w->first_error), "%s", em.text);
		}
	}
	return NULL;
}

static void test_concurrent_signing(void **state)
{
	struct tctx *tc = *state;
	struct hsm_token *main_tok = open_login(tc, TOK_MAIN, T_PIN, 2);
	struct hsm_token *ed_tok = open_login(tc, TOK_ED, T_PIN, 2);
	struct hsm_key *p256 = suite_key(tc, main_tok, K_P256);
	struct hsm_key *rsa = suite_key(tc, main_tok, K_RSA2048);
	struct hsm_key *ed = suite_key(tc, ed_tok, K_ED25519);
	struct worker w[C_THREADS];
	pthread_barrier_t start;

	struct hsm_status m0 = status_of(main_tok), e0 = status_of(ed_tok);
	pthread_barrier_init(&start, NULL, C_THREADS);
	for (int i = 0; i < C_THREADS; i++) {
		w[i] = (struct worker){
			.start = &start,
			.keys = {p256, rsa, ed},
			.algs = {HSM_SIG_ECDSA_SHA256, HSM_SIG_RSA_PSS_SHA256, HSM_SIG_ED25519}};
		assert_int_equal(pthread_create(&w[i].thread, NULL, sign_worker, &w[i]), 0);
	}
	unsigned ok = 0, bad = 0;
	for (int i = 0; i < C_THREADS; i++) {
		pthread_join(w[i].thread, NULL);
		ok += w[i].ok;
		bad += w[i].bad;
		if (w[i].bad)
			fprintf(stderr, "worker %d: %u failed, first: %s\n", i, w[i].bad,
				w[i].first_error);
	}
	pthread_barrier_destroy(&start);
	assert_int_equal(bad, 0);
	assert_int_equal(ok, C_THREADS * C_PER);

	/* Each signature counted once, on its own token; the pool stayed within its size. */
	struct hsm_status m1 = status_of(main_tok), e1 = status_of(ed_tok);
	unsigned per_key = C_PER / 3, rest = C_PER % 3;
	unsigned on_ed = C_THREADS * (per_key + (rest > 2 ? 1 : 0));
	assert_int_equal(e1.signatures - e0.signatures, on_ed);
	assert_int_equal(m1.signatures - m0.signatures, C_THREADS * C_PER - on_ed);
	assert_int_equal(m1.failures, m0.failures);
	assert_int_equal(e1.failures, e0.failures);
	assert_true(m1.sessions_open <= 2);
	assert_true(e1.sessions_open <= 2);
	assert_int_equal(m1.sessions_busy, 0);
	assert_int_equal(e1.sessions_busy, 0);
	assert_int_equal(m1.recoveries, 0);
}

int main(void)
{
	/* A hang in hsm/ must fail the suite, not stall CI. */
	alarm(600);

#define T(f) cmocka_unit_test_setup_teardown(f, t_setup, t_teardown)
	const struct CMUnitTest tests[] = {
		T(test_generated_keys),
		T(test_sign_every_algorithm),
		T(test_openssl_cli_verifies),
		T(test_pkcs11_tool_crosscheck),
		T(test_libp11_engine_crosscheck),
		T(test_generate_refusals),
		T(test_lookup_ambiguity_ids_and_uris),
		T(test_mechanism_mismatch),
		T(test_token_open_errors),
		T(test_login_paths),
		T(test_status_counters),
		T(test_two_tokens),
		T(test_concurrent_signing),
		T(test_shared_id_different_labels),
		T(test_foreign_key_with_long_label),
	};
#undef T
	return cmocka_run_group_tests_name("hsm on SoftHSM2", tests, group_setup, group_teardown);
}
