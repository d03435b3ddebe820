/*
 * The signer process's service against a real SoftHSM2 token, end to end over its channel:
 * signer_serve runs in a thread on one end of a socketpair, the engine's stubs on the other.
 *
 * Covered: key generation, public keys, a self-signed root, an intermediate and a leaf, CRLs
 * (every result assembled and verified by OpenSSL, in process and with openssl(1)); every
 * policy refusal, each proven to sign nothing (the token's signature counter); activation
 * (no PIN, wrong PIN, right PIN); protocol violations fatal for the link; clean close;
 * concurrent signing.
 *
 * One token directory for the suite; keys are generated once in the group setup through
 * the signer itself. Each test starts its own signer (its own module initialisation).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <pb_encode.h>

#include "hsm/signer.h"
#include "hsm/signer.pb.h"
#include "hsm/signer_check.h"
#include "tests/softhsm/fixture.h"
#include "tests/softhsm/hsm/helpers.h"
#include "tests/softhsm/signer/tbs.h"

#define TOK_MAIN "p11ca-signer"
#define TOK_ACT	 "p11ca-activate" /* nobody logs in at start: activation paths */

enum { K_RSA, K_EC, K_OTHER, K_ACT, K_COUNT };

static const struct {
	const char *label;
	enum hsm_key_type type;
	const char *token;
} key_specs[K_COUNT] = {
	[K_RSA] = {"root-rsa", HSM_KEY_RSA2048, TOK_MAIN},
	[K_EC] = {"root-p256", HSM_KEY_P256, TOK_MAIN},
	[K_OTHER] = {"other-p256", HSM_KEY_P256, TOK_MAIN},
	[K_ACT] = {"act-p256", HSM_KEY_P256, TOK_ACT},
};

static struct suite {
	struct softhsm_fixture fx;
	char pin_file[4200];
	struct {
		char uri[SIGNER_URI_MAX];
		EVP_PKEY *pub;
	} keys[K_COUNT];
} S;

/* ---- a signer in a thread, the client on the other end ---------------------------------- */

struct rig {
	struct t_log log;
	char token_uri[128];
	struct signer_options opts;
	int fds[2];
	pthread_t thread;
	bool running;
	atomic_bool done; /* signer_serve returned */
	enum p11ca_err serve_err;
	struct p11ca_errmsg serve_em;
	struct chan *ch;
};

static void *serve_main(void *arg)
{
	struct rig *r = arg;

	r->serve_err = signer_serve(r->fds[0], &r->opts, &r->serve_em);
	atomic_store(&r->done, true);
	return NULL;
}

/* Poll for the signer's readiness line (logged once its channel is open), or its end. */
static int rig_wait_serving(struct rig *r)
{
	for (int i = 0; i < 2000; i++) {
		if (t_log_contains(&r->log, "signer serving token"))
			return 0;
		if (atomic_load(&r->done))
			return -1;
		t_pause_ms(5);
	}
	fprintf(stderr, "the signer did not start serving within 10 s\n");
	return -1;
}

/* Start a signer on `token`; with `client`, open the engine's end too; with `ready`, return
 * once it serves. 0 or -1. */
static int rig_start_ex(struct rig *r, const char *token, const char *pin_source, unsigned pool,
			bool client, bool ready)
{
	struct p11ca_errmsg em = {0};

	snprintf(r->token_uri, sizeof(r->token_uri), "pkcs11:token=%s", token);
	r->opts.token.module_path = softhsm_module_path();
	r->opts.token.uri = r->token_uri;
	r->opts.token.pool_size = pool;
	r->opts.pin_source = pin_source;
	r->opts.log = &r->log.logger;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r->fds) != 0) {
		perror("socketpair");
		return -1;
	}
	if (pthread_create(&r->thread, NULL, serve_main, r) != 0) {
		close(r->fds[0]);
		close(r->fds[1]);
		r->fds[1] = -1;
		return -1;
	}
	r->running = true;
	if (ready && rig_wait_serving(r) != 0)
		return -1;
	if (!client)
		return 0;
	int fd = r->fds[1];
	r->fds[1] = -1;
	if (signer_client_open(fd, &r->log.logger, &r->ch, &em) != P11CA_OK) {
		fprintf(stderr, "signer_client_open: %s\n", em.text);
		return -1;
	}
	return 0;
}

static int rig_start(struct rig *r, const char *token, const char *pin_source, unsigned pool,
		     bool client)
{
	return rig_start_ex(r, token, pin_source, pool, client, true);
}

/* Close the engine's end and wait for the signer; its result. */
static enum p11ca_err rig_join(struct rig *r)
{
	if (r->running) {
		chan_close(&r->ch);
		if (r->fds[1] >= 0)
			close(r->fds[1]);
		r->fds[1] = -1;
		pthread_join(r->thread, NULL);
		r->running = false;
		if (r->serve_err != P11CA_OK)
			fprintf(stderr, "signer_serve: %s: %s\n", p11ca_err_name(r->serve_err),
				r->serve_em.text);
	}
	return r->serve_err;
}

static int t_setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return -1;
	t_log_init(&r->log);
	r->fds[0] = r->fds[1] = -1;
	*state = r;
	return 0;
}

static int t_teardown(void **state)
{
	struct rig *r = *state;
	int rc = 0;

	/* Every test that did not end the link on purpose ends it here: a clean close. */
	if (r->running && rig_join(r) != P11CA_OK)
		rc = -1;
	if (r->log.text != NULL && t_has_pin(r->log.text)) {
		fprintf(stderr, "a PIN appeared in the signer log:\n%s\n", r->log.text);
		rc = -1;
	}
	t_log_free(&r->log);
	free(r);
	return rc;
}

/* ---- assertions ------------------------------------------------------------------------- */

#define expect_err(call, want, em)                                                                 \
	do {                                                                                       \
		enum p11ca_err got_ = (call);                                                      \
		if (got_ != (want))                                                                \
			fprintf(stderr, "%s: got %s, want %s: %s\n", #call, p11ca_err_name(got_),  \
				p11ca_err_name(want), (em)->text);                                 \
		assert_string_equal(p11ca_err_name(got_), p11ca_err_name(want));                   \
		assert_false(t_has_pin((em)->text));                                               \
	} while (0)

#define assert_contains(text, needle)                                                              \
	do {                                                                                       \
		if (strstr((text), (needle)) == NULL)                                              \
			fprintf(stderr, "'%s' not in: %s\n", (needle), (text));                    \
		assert_non_null(strstr((text), (needle)));                                         \
	} while (0)

static struct signer_status status_of(struct rig *r)
{
	struct signer_status st;
	struct p11ca_errmsg em = {0};

	expect_err(signer_status_get(r->ch, &st, &em), P11CA_OK, &em);
	return st;
}

struct signed_der {
	uint8_t *der; /* OPENSSL_free */
	size_t len;
};

/* Sign `tbs` through the signer and assemble it. */
static struct signed_der sign_assemble(struct rig *r, int k, enum signer_tbs_kind kind,
				       const uint8_t *tbs, size_t tbs_len, enum hsm_sig_alg alg,
				       const struct signed_der *issuer)
{
	uint8_t sig[HSM_SIG_MAX];
	size_t sig_len = 0;
	struct p11ca_errmsg em = {0};
	struct signed_der out = {0};

	expect_err(signer_sign(r->ch, S.keys[k].uri, kind, tbs, tbs_len,
			       issuer ? issuer->der : NULL, issuer ? issuer->len : 0, sig,
			       sizeof(sig), &sig_len, &em),
		   P11CA_OK, &em);
	assert_int_equal(t_verify(S.keys[k].pub, alg, tbs, tbs_len, sig, sig_len), 1);
	assert_int_equal(t_assemble(tbs, tbs_len, alg, sig, sig_len, &out.der, &out.len), 0);
	return out;
}

/* A certificate "CN=subject" by "CN=issuer" for `pub`, signed by suite key k. */
static struct signed_der make_cert(struct rig *r, int k, const char *subject, const char *issuer,
				   EVP_PKEY *pub, enum hsm_sig_alg alg,
				   const struct signed_der *issuer_cert)
{
	X509 *x = t_cert_new(subject, issuer, pub, 1000 + k, true);
	uint8_t *tbs = NULL;
	size_t tbs_len = 0;

	assert_non_null(x);
	assert_int_equal(t_cert_tbs(x, alg, &tbs, &tbs_len), 0);
	struct signed_der out =
		sign_assemble(r, k, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, alg, issuer_cert);
	OPENSSL_free(tbs);
	X509_free(x);

	/* OpenSSL's own view: it parses and the issuer's key verifies it. */
	const unsigned char *p = out.der;
	X509 *cert = d2i_X509(NULL, &p, (long)out.len);
	assert_non_null(cert);
	assert_int_equal(X509_verify(cert, S.keys[k].pub), 1);
	X509_free(cert);
	return out;
}

static void free_der(struct signed_der *d)
{
	OPENSSL_free(d->der);
	d->der = NULL;
}

/* A TBS the tests sign or have refused: the self-signed root of suite key k. */
static void root_tbs(int k, enum hsm_sig_alg alg, uint8_t **tbs, size_t *len)
{
	X509 *x = t_cert_new("Signer Root", "Signer Root", S.keys[k].pub, 1, true);

	assert_non_null(x);
	assert_int_equal(t_cert_tbs(x, alg, tbs, len), 0);
	X509_free(x);
}

static void path_in(char *dst, size_t size, const char *name)
{
	int n = snprintf(dst, size, "%s/%s", S.fx.dir, name);
	assert_true(n > 0 && (size_t)n < size);
}

static char *const openssl_env[] = {"SSL_CERT_FILE=/dev/null", NULL};

/* openssl(1) must accept `argv`; the argv must be able to fail (the tests check a refusal
 * with the same command shape). */
static int run_openssl(char *const argv[])
{
	return t_run(argv, openssl_env, NULL);
}

/* ---- group setup: tokens and keys, generated through the signer ------------------------- */

static int gen_keys(const char *token)
{
	struct rig r = {0};
	struct p11ca_errmsg em = {0};
	int rc = -1;

	t_log_init(&r.log);
	r.fds[0] = r.fds[1] = -1;
	if (rig_start(&r, token, S.pin_file, 1, true) != 0)
		goto out;
	for (int k = 0; k < K_COUNT; k++) {
		if (strcmp(key_specs[k].token, token) != 0)
			continue;
		if (signer_key_generate(r.ch, key_specs[k].type, key_specs[k].label, S.keys[k].uri,
					&S.keys[k].pub, &em) != P11CA_OK) {
			fprintf(stderr, "generating %s: %s\n", key_specs[k].label, em.text);
			goto out;
		}
	}
	rc = 0;
out:
	if (rig_join(&r) != P11CA_OK)
		rc = -1;
	t_log_free(&r.log);
	return rc;
}

static int group_setup(void **state)
{
	(void)state;
	/* Each signer's hsm_ctx_free unloads the module; keep it mapped so LeakSanitizer can
	 * still name it (tests/lsan.supp suppresses by module name). */
	if (dlopen(softhsm_module_path(), RTLD_NOW | RTLD_NODELETE) == NULL)
		return -1;
	if (softhsm_fixture_setup(&S.fx, TOK_MAIN, T_SO_PIN, T_PIN) != 0 ||
	    softhsm_fixture_add_token(&S.fx, TOK_ACT, T_SO_PIN, T_PIN) != 0)
		return -1;
	snprintf(S.pin_file, sizeof(S.pin_file), "%s/user.pin", S.fx.dir);
	if (t_write_file(S.pin_file, T_PIN, strlen(T_PIN), 0600) != 0)
		return -1;
	return gen_keys(TOK_MAIN) == 0 && gen_keys(TOK_ACT) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	for (int k = 0; k < K_COUNT; k++)
		EVP_PKEY_free(S.keys[k].pub);
	softhsm_fixture_teardown(&S.fx);
	return 0;
}

/* ---- key generation, public keys, a root ------------------------------------------------ */

static void test_keygen_root(void **state)
{
	struct rig *r = *state;
	struct p11ca_errmsg em = {0};
	char uri[SIGNER_URI_MAX], pem[4300];
	EVP_PKEY *pub = NULL, *again = NULL;
	enum hsm_key_type type = HSM_KEY_UNSPECIFIED;

	assert_int_equal(rig_start(r, TOK_MAIN, S.pin_file, 2, true), 0);
	assert_int_equal(status_of(r).state, SIGNER_TOKEN_READY);
	assert_string_equal(status_of(r).label, TOK_MAIN);

	expect_err(signer_key_generate(r->ch, HSM_KEY_P256, "keygen-p256", uri, &pub, &em),
		   P11CA_OK, &em);
	assert_contains(uri, "object=keygen-p256");
	assert_contains(uri, "id=%");
	assert_contains(uri, "type=private");
	assert_true(EVP_PKEY_is_a(pub, "EC"));
	assert_true(t_log_contains(&r->log, "generated p256 key 'keygen-p256'"));

	/* The public key found again by the returned URI is the generated one. */
	expect_err(signer_public_key(r->ch, uri, &again, &type, &em), P11CA_OK, &em);
	assert_int_equal(EVP_PKEY_eq(pub, again), 1);
	assert_int_equal(type, HSM_KEY_P256);
	EVP_PKEY_free(again);
	again = NULL;

	/* The root: self-signed, built by OpenSSL, signed through the signer. */
	X509 *x = t_cert_new("Keygen Root", "Keygen Root", pub, 7, true);
	uint8_t *tbs = NULL, sig[HSM_SIG_MAX], *der = NULL;
	size_t tbs_len = 0, sig_len = 0, der_len = 0;
	assert_int_equal(t_cert_tbs(x, HSM_SIG_ECDSA_SHA256, &tbs, &tbs_len), 0);
	expect_err(signer_sign(r->ch, uri, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, NULL, 0, sig,
			       sizeof(sig), &sig_len, &em),
		   P11CA_OK, &em);
	assert_int_equal(
		t_assemble(tbs, tbs_len, HSM_SIG_ECDSA_SHA256, sig, sig_len, &der, &der_len), 0);
	const unsigned char *p = der;
	X509 *root = d2i_X509(NULL, &p, (long)der_len);
	assert_non_null(root);
	assert_int_equal(X509_verify(root, pub), 1);
	assert_true(t_log_contains(&r->log, "signed certificate with key 'keygen-p256'"));

	path_in(pem, sizeof(pem), "keygen-root.pem");
	assert_int_equal(t_write_pem(pem, "CERTIFICATE", der, der_len), 0);
	char *verify[] = {"openssl", "verify", "-CAfile", pem, pem, NULL};
	assert_int_equal(run_openssl(verify), 0);

	/* Refusals of the other calls. */
	expect_err(signer_key_generate(r->ch, HSM_KEY_P256, "keygen-p256", uri, &again, &em),
		   P11CA_E_HSM_KEY_EXISTS, &em);
	p11ca_errmsg_clear(&em);
	expect_err(signer_key_generate(r->ch, HSM_KEY_UNSPECIFIED, "x", uri, &again, &em),
		   P11CA_E_INVALID_ARG, &em);
	p11ca_errmsg_clear(&em);
	expect_err(signer_key_generate(r->ch, HSM_KEY_P256, "", uri, &again, &em),
		   P11CA_E_INVALID_ARG, &em);
	p11ca_errmsg_clear(&em);
	expect_err(signer_public_key(r->ch, "pkcs11:object=no-such-key", &again, &type, &em),
		   P11CA_E_HSM_KEY_NOT_FOUND, &em);
	p11ca_errmsg_clear(&em);
	expect_err(signer_public_key(r->ch, "pkcs11:bogus=1", &again, &type, &em), P11CA_E_URI,
		   &em);
	assert_null(again);

	X509_free(root);
	OPENSSL_free(der);
	OPENSSL_free(tbs);
	X509_free(x);
	EVP_PKEY_free(pub);
}

/* ---- a chain and CRLs ------------------------------------------------------------------ */

static void test_chain_and_crls(void **state)
{
	struct rig *r = *state;
	char root_pem[4300], inter_pem[4300], leaf_pem[4300], crl_pem[4300], crl2_pem[4300];
	EVP_PKEY *leaf_key = EVP_EC_gen("P-256");

	assert_non_null(leaf_key);
	assert_int_equal(rig_start(r, TOK_MAIN, S.pin_file, 2, true), 0);
	uint64_t before = status_of(r).signatures;

	struct signed_der root = make_cert(r, K_RSA, "Signer Root RSA", "Signer Root RSA",
					   S.keys[K_RSA].pub, HSM_SIG_RSA_PKCS1_SHA256, NULL);
	/* RSA-PSS for the intermediate: the parameters travel through the TBS as well. */
	struct signed_der inter = make_cert(r, K_RSA, "Signer Intermediate", "Signer Root RSA",
					    S.keys[K_EC].pub, HSM_SIG_RSA_PSS_SHA256, &root);
	struct signed_der leaf = make_cert(r, K_EC, "leaf.example", "Signer Intermediate", leaf_key,
					   HSM_SIG_ECDSA_SHA256, &inter);

	/* A CRL from each CA. */
	const unsigned char *p = root.der;
	X509 *root_x = d2i_X509(NULL, &p, (long)root.len);
	p = inter.der;
	X509 *inter_x = d2i_X509(NULL, &p, (long)inter.len);
	assert_non_null(root_x);
	assert_non_null(inter_x);
	uint8_t *tbs = NULL;
	size_t tbs_len = 0;
	assert_int_equal(
		t_crl_tbs(X509_get_subject_name(root_x), HSM_SIG_RSA_PKCS1_SHA256, &tbs, &tbs_len),
		0);
	struct signed_der crl = sign_assemble(r, K_RSA, SIGNER_TBS_CRL, tbs, tbs_len,
					      HSM_SIG_RSA_PKCS1_SHA256, &root);
	OPENSSL_free(tbs);
	assert_int_equal(
		t_crl_tbs(X509_get_subject_name(inter_x), HSM_SIG_ECDSA_SHA384, &tbs, &tbs_len), 0);
	struct signed_der crl2 =
		sign_assemble(r, K_EC, SIGNER_TBS_CRL, tbs, tbs_len, HSM_SIG_ECDSA_SHA384, &inter);
	OPENSSL_free(tbs);
	p = crl.der;
	X509_CRL *crl_x = d2i_X509_CRL(NULL, &p, (long)crl.len);
	assert_non_null(crl_x);
	assert_int_equal(X509_CRL_verify(crl_x, S.keys[K_RSA].pub), 1);
	X509_CRL_free(crl_x);
	assert_int_equal(status_of(r).signatures - before, 5);

	/* openssl(1) agrees: the chain verifies and so do the CRLs. */
	path_in(root_pem, sizeof(root_pem), "root.pem");
	path_in(inter_pem, sizeof(inter_pem), "inter.pem");
	path_in(leaf_pem, sizeof(leaf_pem), "leaf.pem");
	path_in(crl_pem, sizeof(crl_pem), "root.crl.pem");
	path_in(crl2_pem, sizeof(crl2_pem), "inter.crl.pem");
	assert_int_equal(t_write_pem(root_pem, "CERTIFICATE", root.der, root.len), 0);
	assert_int_equal(t_write_pem(inter_pem, "CERTIFICATE", inter.der, inter.len), 0);
	assert_int_equal(t_write_pem(leaf_pem, "CERTIFICATE", leaf.der, leaf.len), 0);
	assert_int_equal(t_write_pem(crl_pem, "X509 CRL", crl.der, crl.len), 0);
	assert_int_equal(t_write_pem(crl2_pem, "X509 CRL", crl2.der, crl2.len), 0);
	char *v_inter[] = {"openssl", "verify", "-CAfile", root_pem, inter_pem, NULL};
	char *v_leaf[] = {"openssl",	"verify",  "-CAfile", root_pem,
			  "-untrusted", inter_pem, leaf_pem,  NULL};
	char *v_crl[] = {"openssl", "crl", "-in", crl_pem, "-CAfile", root_pem, "-noout", NULL};
	char *v_crl2[] = {"openssl", "crl", "-in", crl2_pem, "-CAfile", inter_pem, "-noout", NULL};
	char *v_wrong[] = {"openssl", "crl", "-in", crl2_pem, "-CAfile", root_pem, "-noout", NULL};
	assert_int_equal(run_openssl(v_inter), 0);
	assert_int_equal(run_openssl(v_leaf), 0);
	assert_int_equal(run_openssl(v_crl), 0);
	assert_int_equal(run_openssl(v_crl2), 0);
	assert_int_not_equal(run_openssl(v_wrong), 0); /* the check can fail */
	assert_true(t_log_contains(&r->log, "signed CRL with key 'root-p256'"));

	X509_free(root_x);
	X509_free(inter_x);
	free_der(&root);
	free_der(&inter);
	free_der(&leaf);
	free_der(&crl);
	free_der(&crl2);
	EVP_PKEY_free(leaf_key);
}

/* ---- refusals: each a policy error, and nothing signed ------------------------------------ */

static void refused(struct rig *r, int k, enum signer_tbs_kind kind, const uint8_t *tbs,
		    size_t tbs_len, const struct signed_der *issuer, const char *needle)
{
	uint8_t sig[HSM_SIG_MAX];
	size_t sig_len = 0;
	struct p11ca_errmsg em = {0};
	struct signer_status before = status_of(r);

	expect_err(signer_sign(r->ch, S.keys[k].uri, kind, tbs, tbs_len,
			       issuer ? issuer->der : NULL, issuer ? issuer->len : 0, sig,
			       sizeof(sig), &sig_len, &em),
		   P11CA_E_POLICY, &em);
	assert_contains(em.text, needle);
	assert_int_equal(sig_len, 0);
	assert_int_equal(status_of(r).signatures, before.signatures);
}

/* A TBS for the RSA key's self-signed root whose AlgorithmIdentifier OpenSSL writes by
 * signing once with a software key: `md` with PKCS#1 v1.5, or PSS with `pss_salt` >= 0.
 * Valid X.509 identifiers, but not among the exact encodings the signer accepts. */
static void soft_alg_tbs(const EVP_MD *digest, int pss_salt, uint8_t **tbs, size_t *len)
{
	X509 *x = t_cert_new("Signer Root", "Signer Root", S.keys[K_RSA].pub, 1, true);
	EVP_PKEY *soft = EVP_RSA_gen(2048);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	unsigned char *p = NULL;

	assert_non_null(x);
	assert_non_null(soft);
	assert_non_null(md);
	assert_int_equal(EVP_DigestSignInit(md, &pctx, digest, NULL, soft), 1);
	if (pss_salt >= 0) {
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, pss_salt), 1);
	}
	assert_true(X509_sign_ctx(x, md) > 0);
	int n = i2d_re_X509_tbs(x, &p);
	assert_true(n > 0);
	*tbs = p;
	*len = (size_t)n;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(soft);
	X509_free(x);
}

static void test_refusals(void **state)
{
	struct rig *r = *state;
	EVP_PKEY *soft = EVP_EC_gen("P-256");
	uint8_t *tbs = NULL;
	size_t tbs_len = 0;

	assert_non_null(soft);
	assert_int_equal(rig_start(r, TOK_MAIN, S.pin_file, 2, true), 0);
	struct signed_der root = make_cert(r, K_RSA, "Signer Root RSA", "Signer Root RSA",
					   S.keys[K_RSA].pub, HSM_SIG_RSA_PKCS1_SHA256, NULL);
	/* Another key's legitimate root that claims the same name. */
	struct signed_der impostor = make_cert(r, K_OTHER, "Signer Root RSA", "Signer Root RSA",
					       S.keys[K_OTHER].pub, HSM_SIG_ECDSA_SHA256, NULL);

	/* The issuer is not the CA's subject. */
	X509 *x = t_cert_new("Sub", "Someone Else", soft, 2, false);
	assert_int_equal(t_cert_tbs(x, HSM_SIG_RSA_PKCS1_SHA256, &tbs, &tbs_len), 0);
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, &root, "is not the CA's subject");
	X509_free(x);
	OPENSSL_free(tbs);

	/* The issuer certificate carries another key than the one asked to sign. */
	x = t_cert_new("Sub", "Signer Root RSA", soft, 3, false);
	assert_int_equal(t_cert_tbs(x, HSM_SIG_RSA_PKCS1_SHA256, &tbs, &tbs_len), 0);
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, &impostor,
		"issuer certificate's public key");
	/* ... and the same TBS sent as a CRL, or as a CRL without an issuer. */
	refused(r, K_RSA, SIGNER_TBS_CRL, tbs, tbs_len, &root, "not one DER TBSCertList");
	/* The kind is not a kind. */
	refused(r, K_RSA, (enum signer_tbs_kind)0, tbs, tbs_len, &root,
		"neither certificate nor CRL");
	refused(r, K_RSA, (enum signer_tbs_kind)7, tbs, tbs_len, &root,
		"neither certificate nor CRL");
	/* An issuer certificate that is not one. */
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, &(struct signed_der){tbs, tbs_len},
		"issuer certificate does not parse");
	/* Trailing and missing bytes. */
	uint8_t *longer = malloc(tbs_len + 1);
	assert_non_null(longer);
	memcpy(longer, tbs, tbs_len);
	longer[tbs_len] = 0;
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, longer, tbs_len + 1, &root, "not one DER");
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, tbs, tbs_len - 1, &root, "not one DER");
	free(longer);
	X509_free(x);
	OPENSSL_free(tbs);

	/* A made-up "issuer certificate": the CA's name and the HSM key's public key, but
	 * signed by someone else. Knowing a CA's public key must not be enough. */
	X509 *forged = t_cert_new("Signer Root RSA", "Signer Root RSA", S.keys[K_RSA].pub, 9, true);
	assert_true(X509_sign(forged, soft, EVP_sha256()) > 0);
	struct signed_der fake = {NULL, 0};
	int fake_len = i2d_X509(forged, &fake.der);
	assert_true(fake_len > 0);
	fake.len = (size_t)fake_len;
	x = t_cert_new("Sub", "Signer Root RSA", soft, 10, false);
	assert_int_equal(t_cert_tbs(x, HSM_SIG_RSA_PKCS1_SHA256, &tbs, &tbs_len), 0);
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, &fake, "not signed by the HSM key");
	X509_free(x);
	OPENSSL_free(tbs);
	OPENSSL_free(fake.der);
	X509_free(forged);
	/* An issuer certificate for the HSM key that is no CA certificate. */
	forged = t_cert_new("Signer Leaf", "Signer Root RSA", S.keys[K_RSA].pub, 11, false);
	assert_true(X509_sign(forged, soft, EVP_sha256()) > 0);
	fake = (struct signed_der){NULL, 0};
	fake_len = i2d_X509(forged, &fake.der);
	assert_true(fake_len > 0);
	fake.len = (size_t)fake_len;
	x = t_cert_new("Sub", "Signer Leaf", soft, 12, false);
	assert_int_equal(t_cert_tbs(x, HSM_SIG_RSA_PKCS1_SHA256, &tbs, &tbs_len), 0);
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, &fake, "not a CA certificate");
	X509_free(x);
	OPENSSL_free(tbs);
	OPENSSL_free(fake.der);
	X509_free(forged);

	/* A self-signed TBS for a key that is not the HSM key. */
	x = t_cert_new("Signer Root", "Signer Root", soft, 4, true);
	assert_int_equal(t_cert_tbs(x, HSM_SIG_RSA_PKCS1_SHA256, &tbs, &tbs_len), 0);
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, NULL, "carries another public key");
	X509_free(x);
	OPENSSL_free(tbs);

	/* Self-signed but not self-issued, with no issuer certificate. */
	x = t_cert_new("Signer Root", "Other Root", S.keys[K_RSA].pub, 5, true);
	assert_int_equal(t_cert_tbs(x, HSM_SIG_RSA_PKCS1_SHA256, &tbs, &tbs_len), 0);
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, NULL, "not self-issued");
	X509_free(x);
	OPENSSL_free(tbs);

	/* Algorithms that do not fit the key. */
	root_tbs(K_RSA, HSM_SIG_ECDSA_SHA256, &tbs, &tbs_len);
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, NULL, "cannot produce");
	OPENSSL_free(tbs);
	root_tbs(K_EC, HSM_SIG_RSA_PSS_SHA256, &tbs, &tbs_len);
	refused(r, K_EC, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, NULL, "cannot produce");
	OPENSSL_free(tbs);
	root_tbs(K_EC, HSM_SIG_ED25519, &tbs, &tbs_len);
	refused(r, K_EC, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, NULL, "cannot produce");
	OPENSSL_free(tbs);
	soft_alg_tbs(EVP_sha256(), 20, &tbs, &tbs_len); /* PSS, salt 20 instead of 32 */
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, NULL, "rsassaPss");
	OPENSSL_free(tbs);
	soft_alg_tbs(EVP_sha384(), 32, &tbs, &tbs_len); /* PSS, SHA-384 with a SHA-256 salt */
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, NULL, "rsassaPss");
	OPENSSL_free(tbs);
	soft_alg_tbs(EVP_sha1(), -1, &tbs, &tbs_len);
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, NULL, "AlgorithmIdentifier");
	OPENSSL_free(tbs);

	/* A CRL needs its CA's certificate. */
	{
		X509_NAME *n = X509_NAME_new();
		assert_int_equal(X509_NAME_add_entry_by_txt(
					 n, "CN", MBSTRING_ASC,
					 (const unsigned char *)"Signer Root RSA", -1, -1, 0),
				 1);
		assert_int_equal(t_crl_tbs(n, HSM_SIG_RSA_PKCS1_SHA256, &tbs, &tbs_len), 0);
		X509_NAME_free(n);
	}
	refused(r, K_RSA, SIGNER_TBS_CRL, tbs, tbs_len, NULL, "needs the issuing CA's certificate");
	refused(r, K_RSA, SIGNER_TBS_CRL, tbs, tbs_len, &impostor,
		"issuer certificate's public key");
	/* The same CRL is fine with the right CA: the refusals above were about the inputs. */
	struct signed_der crl = sign_assemble(r, K_RSA, SIGNER_TBS_CRL, tbs, tbs_len,
					      HSM_SIG_RSA_PKCS1_SHA256, &root);
	free_der(&crl);
	OPENSSL_free(tbs);

	/* Garbage. */
	static const uint8_t junk[] = "this is not a TBSCertificate";
	static const uint8_t indefinite[] = {0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00};
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, junk, sizeof(junk), &root, "not one DER");
	refused(r, K_RSA, SIGNER_TBS_CRL, junk, sizeof(junk), &root, "not one DER");
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, indefinite, sizeof(indefinite), &root,
		"not one DER");
	refused(r, K_RSA, SIGNER_TBS_CERTIFICATE, junk, 0, &root, "not one DER");

	assert_true(t_log_contains(&r->log, "did not sign certificate with key 'root-rsa'"));
	free_der(&root);
	free_der(&impostor);
	EVP_PKEY_free(soft);
}

/* The checks on their own (no token): argument errors the channel never produces. */
static void test_check_arguments(void **state)
{
	enum hsm_sig_alg alg = HSM_SIG_ED25519;
	struct p11ca_errmsg em = {0};
	static const uint8_t tbs[] = {0x30, 0x00};

	(void)state;
	expect_err(signer_check_tbs(SIGNER_TBS_CERTIFICATE, NULL, 0, NULL, 0, S.keys[K_EC].pub,
				    HSM_KEY_P256, &alg, &em),
		   P11CA_E_INVALID_ARG, &em);
	p11ca_errmsg_clear(&em);
	expect_err(signer_check_tbs(SIGNER_TBS_CERTIFICATE, tbs, sizeof(tbs), NULL, 3,
				    S.keys[K_EC].pub, HSM_KEY_P256, &alg, &em),
		   P11CA_E_INVALID_ARG, &em);
	p11ca_errmsg_clear(&em);
	expect_err(signer_check_tbs(SIGNER_TBS_CERTIFICATE, tbs, sizeof(tbs), NULL, 0,
				    S.keys[K_EC].pub, HSM_KEY_P256, &alg, &em),
		   P11CA_E_POLICY, &em);
	assert_int_equal(alg, HSM_SIG_ED25519); /* untouched on refusal before parsing */

	uint8_t *root = NULL;
	size_t root_len = 0;
	root_tbs(K_EC, HSM_SIG_ECDSA_SHA384, &root, &root_len);
	p11ca_errmsg_clear(&em);
	expect_err(signer_check_tbs(SIGNER_TBS_CERTIFICATE, root, root_len, NULL, 0,
				    S.keys[K_EC].pub, HSM_KEY_P256, &alg, &em),
		   P11CA_OK, &em);
	assert_int_equal(alg, HSM_SIG_ECDSA_SHA384);
	/* The same TBS against another key of the same type. */
	expect_err(signer_check_tbs(SIGNER_TBS_CERTIFICATE, root, root_len, NULL, 0,
				    S.keys[K_OTHER].pub, HSM_KEY_P256, &alg, &em),
		   P11CA_E_POLICY, &em);
	assert_int_equal(alg, HSM_SIG_UNSPECIFIED);
	OPENSSL_free(root);
}

/* ---- activation ------------------------------------------------------------------------ */

static void test_activate(void **state)
{
	struct rig *r = *state;
	struct p11ca_errmsg em = {0};
	struct signer_status st;
	uint8_t *tbs = NULL, sig[HSM_SIG_MAX];
	size_t tbs_len = 0, sig_len = 0;
	EVP_PKEY *pub = NULL;
	struct p11ca_secret *wrong = t_secret(T_WRONG_PIN), *right = t_secret(T_PIN);
	struct p11ca_secret *empty = t_secret("");

	assert_non_null(wrong);
	assert_non_null(right);
	assert_non_null(empty);
	assert_int_equal(rig_start(r, TOK_ACT, NULL, 2, true), 0);
	assert_int_equal(status_of(r).state, SIGNER_TOKEN_NEEDS_PIN);

	root_tbs(K_ACT, HSM_SIG_ECDSA_SHA256, &tbs, &tbs_len);
	expect_err(signer_sign(r->ch, S.keys[K_ACT].uri, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, NULL,
			       0, sig, sizeof(sig), &sig_len, &em),
		   P11CA_E_HSM_NO_PIN, &em);
	p11ca_errmsg_clear(&em);
	expect_err(signer_public_key(r->ch, S.keys[K_ACT].uri, &pub, NULL, &em), P11CA_E_HSM_NO_PIN,
		   &em);

	p11ca_errmsg_clear(&em);
	expect_err(signer_activate(r->ch, empty, &st, &em), P11CA_E_INVALID_ARG, &em);
	p11ca_errmsg_clear(&em);
	expect_err(signer_activate(r->ch, wrong, &st, &em), P11CA_E_HSM_PIN_INCORRECT, &em);
	assert_int_equal(status_of(r).state, SIGNER_TOKEN_NEEDS_PIN);
	p11ca_errmsg_clear(&em);
	expect_err(signer_sign(r->ch, S.keys[K_ACT].uri, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, NULL,
			       0, sig, sizeof(sig), &sig_len, &em),
		   P11CA_E_HSM_PIN_INCORRECT, &em);

	p11ca_errmsg_clear(&em);
	memset(&st, 0, sizeof(st));
	expect_err(signer_activate(r->ch, right, &st, &em), P11CA_OK, &em);
	assert_int_equal(st.state, SIGNER_TOKEN_READY);
	assert_string_equal(st.label, TOK_ACT);
	uint64_t before = st.signatures;
	expect_err(signer_sign(r->ch, S.keys[K_ACT].uri, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, NULL,
			       0, sig, sizeof(sig), &sig_len, &em),
		   P11CA_OK, &em);
	assert_int_equal(
		t_verify(S.keys[K_ACT].pub, HSM_SIG_ECDSA_SHA256, tbs, tbs_len, sig, sig_len), 1);
	assert_int_equal(status_of(r).signatures, before + 1);
	assert_true(t_log_contains(&r->log, "token activated"));

	OPENSSL_free(tbs);
	p11ca_secret_free(&wrong);
	p11ca_secret_free(&right);
	p11ca_secret_free(&empty);
}

/* A PIN source that does not work leaves the signer up, waiting for an activation. */
static void test_bad_pin_source(void **state)
{
	struct rig *r = *state;
	char path[4300];

	path_in(path, sizeof(path), "no-such.pin");
	assert_int_equal(rig_start(r, TOK_ACT, path, 1, true), 0);
	assert_int_equal(status_of(r).state, SIGNER_TOKEN_NEEDS_PIN);
	assert_true(t_log_contains(&r->log, "token login at start failed"));
}

/* Configuration the signer cannot serve with is fatal, and the channel end is closed. */
static void test_serve_bad_token(void **state)
{
	struct rig *r = *state;
	struct p11ca_errmsg em = {0};
	struct signer_status st;

	assert_int_equal(rig_start_ex(r, "no-such-token", NULL, 1, true, false), 0);
	/* The signer closes its end: the call fails as a lost link, it does not hang. */
	expect_err(signer_status_get(r->ch, &st, &em), P11CA_E_IO, &em);
	assert_int_equal(rig_join(r), P11CA_E_HSM_TOKEN_NOT_FOUND);
}

/* ---- protocol ---------------------------------------------------------------------------- */

static void send_frame(int fd, const uint8_t *body, size_t len)
{
	uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			  (uint8_t)len};

	assert_int_equal(write(fd, hdr, 4), 4);
	assert_int_equal(write(fd, body, len), (ssize_t)len);
}

static void send_call(int fd, const p11ca_signer_v1_SignerCall *call)
{
	static uint8_t buf[p11ca_signer_v1_SignerCall_size];
	pb_ostream_t os = pb_ostream_from_buffer(buf, sizeof(buf));

	assert_true(pb_encode(&os, p11ca_signer_v1_SignerCall_fields, call));
	send_frame(fd, buf, os.bytes_written);
}

static void test_protocol_not_a_call(void **state)
{
	struct rig *r = *state;
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff};

	assert_int_equal(rig_start(r, TOK_MAIN, S.pin_file, 1, false), 0);
	send_frame(r->fds[1], junk, sizeof(junk));
	enum p11ca_err err = rig_join(r);
	assert_int_equal(p11ca_err_category(err), P11CA_CAT_PROTO);
}

static void test_protocol_no_op(void **state)
{
	struct rig *r = *state;
	p11ca_signer_v1_SignerCall call = {.call_id = 7};

	assert_int_equal(rig_start(r, TOK_MAIN, S.pin_file, 1, false), 0);
	send_call(r->fds[1], &call);
	assert_int_equal(rig_join(r), P11CA_E_PROTO);
	assert_contains(r->serve_em.text, "no known op");
}

static void test_protocol_notification(void **state)
{
	struct rig *r = *state;
	p11ca_signer_v1_SignerCall call = {.call_id = 0,
					   .which_op = p11ca_signer_v1_SignerCall_status_tag};

	assert_int_equal(rig_start(r, TOK_MAIN, S.pin_file, 1, false), 0);
	send_call(r->fds[1], &call);
	assert_int_equal(rig_join(r), P11CA_E_PROTO);
	assert_contains(r->serve_em.text, "notification");
}

static void test_peer_close(void **state)
{
	struct rig *r = *state;

	assert_int_equal(rig_start(r, TOK_MAIN, S.pin_file, 1, true), 0);
	assert_int_equal(status_of(r).state, SIGNER_TOKEN_READY);
	assert_int_equal(rig_join(r), P11CA_OK);
}

/* The engine may call as soon as its end is open, before the signer's channel is: the call
 * waits in the socket and is answered. */
static void test_call_before_ready(void **state)
{
	struct rig *r = *state;

	assert_int_equal(rig_start_ex(r, TOK_MAIN, S.pin_file, 1, true, false), 0);
	assert_int_equal(status_of(r).state, SIGNER_TOKEN_READY);
}

/* The stubs refuse what cannot be sent, without a call. */
static void test_stub_arguments(void **state)
{
	struct rig *r = *state;
	struct p11ca_errmsg em = {0};
	static uint8_t big[64 * 1024];
	uint8_t sig[HSM_SIG_MAX];
	size_t sig_len = 0;
	char uri[SIGNER_URI_MAX], label[80];
	EVP_PKEY *pub = NULL;

	assert_int_equal(rig_start(r, TOK_MAIN, S.pin_file, 1, true), 0);
	expect_err(signer_sign(r->ch, S.keys[K_EC].uri, SIGNER_TBS_CRL, big, sizeof(big), NULL, 0,
			       sig, sizeof(sig), &sig_len, &em),
		   P11CA_E_PROTO_TOO_LARGE, &em);
	p11ca_errmsg_clear(&em);
	expect_err(signer_sign(r->ch, "", SIGNER_TBS_CRL, big, 10, NULL, 0, sig, sizeof(sig),
			       &sig_len, &em),
		   P11CA_E_INVALID_ARG, &em);
	p11ca_errmsg_clear(&em);
	expect_err(signer_sign(NULL, S.keys[K_EC].uri, SIGNER_TBS_CRL, big, 10, NULL, 0, sig,
			       sizeof(sig), &sig_len, &em),
		   P11CA_E_INVALID_ARG, &em);
	memset(label, 'a', sizeof(label) - 1);
	label[sizeof(label) - 1] = '\0';
	p11ca_errmsg_clear(&em);
	expect_err(signer_key_generate(r->ch, HSM_KEY_P256, label, uri, &pub, &em),
		   P11CA_E_INVALID_ARG, &em);
	p11ca_errmsg_clear(&em);
	expect_err(signer_status_get(r->ch, NULL, &em), P11CA_E_INVALID_ARG, &em);
	p11ca_errmsg_clear(&em);
	expect_err(signer_activate(r->ch, NULL, NULL, &em), P11CA_E_INVALID_ARG, &em);

	/* A signature buffer too small for the answer. */
	uint8_t *tbs = NULL, small[8];
	size_t tbs_len = 0;
	root_tbs(K_EC, HSM_SIG_ECDSA_SHA256, &tbs, &tbs_len);
	p11ca_errmsg_clear(&em);
	expect_err(signer_sign(r->ch, S.keys[K_EC].uri, SIGNER_TBS_CERTIFICATE, tbs, tbs_len, NULL,
			       0, small, sizeof(small), &sig_len, &em),
		   P11CA_E_INVALID_ARG, &em);
	OPENSSL_free(tbs);
}

/* ---- concurrency ------------------------------------------------------------------------- */

#define N_THREADS 2
#define N_SIGNS	  50

struct worker {
	struct rig *r;
	pthread_barrier_t *start;
	int id;
	int verified;
};

static void *sign_worker(void *arg)
{
	struct worker *w = arg;

	pthread_barrier_wait(w->start);
	for (int i = 0; i < N_SIGNS; i++) {
		X509 *x = t_cert_new("Signer Root", "Signer Root", S.keys[K_EC].pub,
				     10000 + w->id * 1000 + i, true);
		uint8_t *tbs = NULL, sig[HSM_SIG_MAX];
		size_t tbs_len = 0, sig_len = 0;
		struct p11ca_errmsg em = {0};

		if (x != NULL && t_cert_tbs(x, HSM_SIG_ECDSA_SHA256, &tbs, &tbs_len) == 0 &&
		    signer_sign(w->r->ch, S.keys[K_EC].uri, SIGNER_TBS_CERTIFICATE, tbs, tbs_len,
				NULL, 0, sig, sizeof(sig), &sig_len, &em) == P11CA_OK &&
		    t_verify(S.keys[K_EC].pub, HSM_SIG_ECDSA_SHA256, tbs, tbs_len, sig, sig_len) ==
			    1)
			w->verified++;
		else
			fprintf(stderr, "worker %d sign %d: %s\n", w->id, i, em.text);
		OPENSSL_free(tbs);
		X509_free(x);
	}
	return NULL;
}

static void test_concurrent_signing(void **state)
{
	struct rig *r = *state;
	pthread_t th[N_THREADS];
	struct worker w[N_THREADS];
	pthread_barrier_t start;

	assert_int_equal(rig_start(r, TOK_MAIN, S.pin_file, 4, true), 0);
	uint64_t before = status_of(r).signatures;
	assert_int_equal(pthread_barrier_init(&start, NULL, N_THREADS), 0);
	for (int i = 0; i < N_THREADS; i++) {
		w[i] = (struct worker){.r = r, .start = &start, .id = i};
		assert_int_equal(pthread_create(&th[i], NULL, sign_worker, &w[i]), 0);
	}
	for (int i = 0; i < N_THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start);
	for (int i = 0; i < N_THREADS; i++)
		assert_int_equal(w[i].verified, N_SIGNS);
	assert_int_equal(status_of(r).signatures - before, N_THREADS * N_SIGNS);
}

int main(void)
{
	/* A hang in the signer or the channel must fail the suite, not stall CI. */
	alarm(600);
	/* SIGNER_TEST_FILTER=test_activate runs one test (a glob), for debugging. */
	if (getenv("SIGNER_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("SIGNER_TEST_FILTER"));

#define T(f) cmocka_unit_test_setup_teardown(f, t_setup, t_teardown)
	const struct CMUnitTest tests[] = {
		T(test_keygen_root),	 T(test_chain_and_crls),
		T(test_refusals),	 T(test_check_arguments),
		T(test_activate),	 T(test_bad_pin_source),
		T(test_serve_bad_token), T(test_protocol_not_a_call),
		T(test_protocol_no_op),	 T(test_protocol_notification),
		T(test_peer_close),	 T(test_call_before_ready),
		T(test_stub_arguments),	 T(test_concurrent_signing),
	};
#undef T
	return cmocka_run_group_tests_name("signer on SoftHSM2", tests, group_setup,
					   group_teardown);
}
