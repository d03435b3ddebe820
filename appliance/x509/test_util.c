/* Test helpers for appliance/x509/ (see test_util.h). */
#include "appliance/x509/test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

static EVP_PKEY *keys[2][HSM_KEY_ED25519 + 1];

EVP_PKEY *tu_keygen(const char *alg, const char *curve, unsigned rsa_bits, unsigned rsa_e)
{
	EVP_PKEY *key = NULL;
	if (strcmp(alg, "RSA") == 0) {
		EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
		BIGNUM *e = BN_new();
		assert_true(ctx != NULL && e != NULL && BN_set_word(e, rsa_e) == 1);
		assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)rsa_bits), 1);
		assert_int_equal(EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, e), 1);
		assert_int_equal(EVP_PKEY_generate(ctx, &key), 1);
		BN_free(e);
		EVP_PKEY_CTX_free(ctx);
	} else if (curve != NULL) {
		key = EVP_PKEY_Q_keygen(NULL, NULL, alg, curve);
	} else {
		key = EVP_PKEY_Q_keygen(NULL, NULL, alg);
	}
	assert_non_null(key);
	return key;
}

static EVP_PKEY *key_cached(enum hsm_key_type type, EVP_PKEY **slot)
{
	if (*slot != NULL)
		return *slot;
	switch (type) {
	case HSM_KEY_RSA2048:
		*slot = tu_keygen("RSA", NULL, 2048, 65537);
		break;
	case HSM_KEY_RSA3072:
		*slot = tu_keygen("RSA", NULL, 3072, 65537);
		break;
	case HSM_KEY_RSA4096:
		*slot = tu_keygen("RSA", NULL, 4096, 65537);
		break;
	case HSM_KEY_P256:
		*slot = tu_keygen("EC", "P-256", 0, 0);
		break;
	case HSM_KEY_P384:
		*slot = tu_keygen("EC", "P-384", 0, 0);
		break;
	case HSM_KEY_P521:
		*slot = tu_keygen("EC", "P-521", 0, 0);
		break;
	default:
		*slot = tu_keygen("ED25519", NULL, 0, 0);
		break;
	}
	return *slot;
}

EVP_PKEY *tu_key(enum hsm_key_type type)
{
	assert_true(type > HSM_KEY_UNSPECIFIED && type <= HSM_KEY_ED25519);
	return key_cached(type, &keys[0][type]);
}

EVP_PKEY *tu_key2(enum hsm_key_type type)
{
	assert_true(type > HSM_KEY_UNSPECIFIED && type <= HSM_KEY_ED25519);
	return key_cached(type, &keys[1][type]);
}

void tu_keys_free(void)
{
	for (size_t i = 0; i <= HSM_KEY_ED25519; i++) {
		EVP_PKEY_free(keys[0][i]);
		EVP_PKEY_free(keys[1][i]);
		keys[0][i] = keys[1][i] = NULL;
	}
}

static const char *alg_md(enum hsm_sig_alg alg)
{
	switch (alg) {
	case HSM_SIG_RSA_PKCS1_SHA256:
	case HSM_SIG_RSA_PSS_SHA256:
	case HSM_SIG_ECDSA_SHA256:
		return "SHA256";
	case HSM_SIG_RSA_PKCS1_SHA384:
	case HSM_SIG_RSA_PSS_SHA384:
	case HSM_SIG_ECDSA_SHA384:
		return "SHA384";
	case HSM_SIG_RSA_PKCS1_SHA512:
	case HSM_SIG_RSA_PSS_SHA512:
	case HSM_SIG_ECDSA_SHA512:
		return "SHA512";
	default:
		return NULL;
	}
}

void tu_sign(EVP_PKEY *key, enum hsm_sig_alg alg, const uint8_t *msg, size_t len, uint8_t *sig,
	     size_t *sig_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	const char *md = alg_md(alg);
	assert_non_null(ctx);
	assert_int_equal(EVP_DigestSignInit_ex(ctx, &pctx, md, NULL, NULL, key, NULL), 1);
	if (alg == HSM_SIG_RSA_PSS_SHA256 || alg == HSM_SIG_RSA_PSS_SHA384 ||
	    alg == HSM_SIG_RSA_PSS_SHA512) {
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, md, NULL), 1);
	}
	size_t cap = HSM_SIG_MAX;
	assert_int_equal(EVP_DigestSign(ctx, sig, &cap, msg, len), 1);
	*sig_len = cap;
	EVP_MD_CTX_free(ctx);
}

X509 *tu_issue(const struct x509_cert_spec *spec, EVP_PKEY *issuer_key, uint8_t **der_out,
	       size_t *der_len_out)
{
	X509 *tbs = NULL;
	uint8_t *tbs_der = NULL, *der = NULL, sig[HSM_SIG_MAX];
	size_t tbs_len = 0, der_len = 0, sig_len = 0;
	struct p11ca_errmsg em = {0};
	if (x509_cert_tbs(spec, &tbs, &tbs_der, &tbs_len, &em) != P11CA_OK)
		fail_msg("x509_cert_tbs: %s", em.text);
	tu_sign(issuer_key, spec->alg, tbs_der, tbs_len, sig, &sig_len);
	if (x509_cert_finish(tbs, sig, sig_len, &der, &der_len, &em) != P11CA_OK)
		fail_msg("x509_cert_finish: %s", em.text);
	const unsigned char *p = der;
	X509 *cert = d2i_X509(NULL, &p, (long)der_len);
	assert_non_null(cert);
	assert_ptr_equal(p, der + der_len);
	X509_free(tbs);
	OPENSSL_free(tbs_der);
	if (der_out != NULL) {
		*der_out = der;
		*der_len_out = der_len;
	} else {
		OPENSSL_free(der);
	}
	return cert;
}

X509_CRL *tu_issue_crl(const struct x509_crl_spec *spec, EVP_PKEY *issuer_key, uint8_t **der_out,
		       size_t *der_len_out)
{
	X509_CRL *tbs = NULL;
	uint8_t *tbs_der = NULL, *der = NULL, sig[HSM_SIG_MAX];
	size_t tbs_len = 0, der_len = 0, sig_len = 0;
	struct p11ca_errmsg em = {0};
	if (x509_crl_tbs(spec, &tbs, &tbs_der, &tbs_len, &em) != P11CA_OK)
		fail_msg("x509_crl_tbs: %s", em.text);
	tu_sign(issuer_key, spec->alg, tbs_der, tbs_len, sig, &sig_len);
	if (x509_crl_finish(tbs, sig, sig_len, &der, &der_len, &em) != P11CA_OK)
		fail_msg("x509_crl_finish: %s", em.text);
	const unsigned char *p = der;
	X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)der_len);
	assert_non_null(crl);
	assert_ptr_equal(p, der + der_len);
	X509_CRL_free(tbs);
	OPENSSL_free(tbs_der);
	if (der_out != NULL) {
		*der_out = der;
		*der_len_out = der_len;
	} else {
		OPENSSL_free(der);
	}
	return crl;
}

X509_NAME *tu_name(const char *text)
{
	X509_NAME *name = NULL;
	struct p11ca_errmsg em = {0};
	if (x509_name_parse(text, &name, &em) != P11CA_OK)
		fail_msg("x509_name_parse(%s): %s", text, em.text);
	return name;
}

const char *tu_tmpdir(void)
{
	static char dir[256];
	const char *base = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/x509-XXXXXX", base != NULL ? base : "/tmp");
	assert_non_null(mkdtemp(dir));
	return dir;
}

const char *tu_path(const char *dir, const char *name)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

void tu_write(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

void tu_write_pem(const char *path, const char *label, const uint8_t *der, size_t len)
{
	uint8_t pem[16384];
	size_t pem_len = 0;
	struct p11ca_errmsg em = {0};
	if (x509_pem_append(label, der, len, pem, sizeof(pem), &pem_len, &em) != P11CA_OK)
		fail_msg("x509_pem_append: %s", em.text);
	tu_write(path, pem, pem_len);
}

int tu_run(const char *const *argv, const char *log)
{
	int fd = -1;
	if (log != NULL) {
		fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		assert_true(fd >= 0);
	}
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (fd >= 0 && (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0))
			_exit(126);
		/* The CLI would otherwise read the system trust store (PITFALLS.md). */
		setenv("SSL_CERT_FILE", "/dev/null", 1);
		setenv("SSL_CERT_DIR", "/nonexistent", 1);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (fd >= 0)
		close(fd);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0)
		assert_int_equal(errno, EINTR);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int tu_file_has(const char *path, const char *needle)
{
	char buf[65536];
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}
