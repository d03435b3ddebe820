/* Helpers for the hsm/ SoftHSM2 suites; see helpers.h and raw.h. */
#include "tests/softhsm/hsm/helpers.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ecdsa.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "tests/softhsm/hsm/raw.h" /* last: pkcs11.h */

/* ---- log capture ---------------------------------------------------------------------- */

static void t_log_line(void *arg, int priority, const char *line)
{
	struct t_log *lg = arg;
	size_t n = strlen(line);

	(void)priority;
	pthread_mutex_lock(&lg->mu);
	if (lg->len + n + 2 > lg->cap) {
		size_t cap = (lg->cap ? lg->cap * 2 : 4096) + n + 2;
		char *t = realloc(lg->text, cap);

		if (t == NULL) {
			pthread_mutex_unlock(&lg->mu);
			abort(); /* a test cannot prove anything about lines it lost */
		}
		lg->text = t;
		lg->cap = cap;
	}
	memcpy(lg->text + lg->len, line, n);
	lg->len += n;
	lg->text[lg->len++] = '\n';
	lg->text[lg->len] = '\0';
	pthread_mutex_unlock(&lg->mu);
	/* Keep the lines in the suite's log too: they explain failures. */
	fprintf(stderr, "  [hsm log] %s\n", line);
}

void t_log_init(struct t_log *lg)
{
	memset(lg, 0, sizeof(*lg));
	pthread_mutex_init(&lg->mu, NULL);
	lg->logger.fn = t_log_line;
	lg->logger.arg = lg;
	lg->logger.max_priority = LOG_DEBUG;
}

void t_log_free(struct t_log *lg)
{
	free(lg->text);
	pthread_mutex_destroy(&lg->mu);
	memset(lg, 0, sizeof(*lg));
}

bool t_log_contains(struct t_log *lg, const char *needle)
{
	pthread_mutex_lock(&lg->mu);
	bool found = lg->text != NULL && strstr(lg->text, needle) != NULL;
	pthread_mutex_unlock(&lg->mu);
	return found;
}

bool t_has_pin(const char *text)
{
	static const char *const pins[] = {T_SO_PIN, T_PIN, T_PIN_B, T_WRONG_PIN};

	for (size_t i = 0; i < sizeof(pins) / sizeof(pins[0]); i++)
		if (strstr(text, pins[i]) != NULL)
			return true;
	return false;
}

/* ---- secrets and time ------------------------------------------------------------------ */

struct p11ca_secret *t_secret(const char *pin)
{
	struct p11ca_secret *s = NULL;
	struct p11ca_errmsg em = {0};

	if (p11ca_secret_new(strlen(pin) + 1, &s, &em) != P11CA_OK ||
	    p11ca_secret_set(s, pin, strlen(pin), &em) != P11CA_OK) {
		fprintf(stderr, "t_secret: %s\n", p11ca_errmsg_text(&em));
		p11ca_secret_free(&s);
		return NULL;
	}
	return s;
}

double t_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

void t_pause_ms(unsigned ms)
{
	struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&t, &t) == -1 && errno == EINTR)
		;
}

/* ---- signatures ----------------------------------------------------------------------- */

const char *t_alg_md(enum hsm_sig_alg alg)
{
	switch (alg) {
	case HSM_SIG_RSA_PKCS1_SHA256:
	case HSM_SIG_RSA_PSS_SHA256:
	case HSM_SIG_ECDSA_SHA256:
		return "sha256";
	case HSM_SIG_RSA_PKCS1_SHA384:
	case HSM_SIG_RSA_PSS_SHA384:
	case HSM_SIG_ECDSA_SHA384:
		return "sha384";
	case HSM_SIG_RSA_PKCS1_SHA512:
	case HSM_SIG_RSA_PSS_SHA512:
	case HSM_SIG_ECDSA_SHA512:
		return "sha512";
	default:
		return NULL;
	}
}

bool t_alg_is_pss(enum hsm_sig_alg alg)
{
	return alg == HSM_SIG_RSA_PSS_SHA256 || alg == HSM_SIG_RSA_PSS_SHA384 ||
	       alg == HSM_SIG_RSA_PSS_SHA512;
}

static bool alg_is_ecdsa(enum hsm_sig_alg alg)
{
	return alg == HSM_SIG_ECDSA_SHA256 || alg == HSM_SIG_ECDSA_SHA384 ||
	       alg == HSM_SIG_ECDSA_SHA512;
}

/* ECDSA signatures must be canonical DER: decoding and re-encoding gives the same bytes. */
static bool ecdsa_der_canonical(const uint8_t *sig, size_t sig_len)
{
	const unsigned char *p = sig;
	ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)sig_len);
	unsigned char *again = NULL;
	bool ok = false;

	if (s != NULL && p == sig + sig_len) {
		int n = i2d_ECDSA_SIG(s, &again);
		ok = n > 0 && (size_t)n == sig_len && memcmp(again, sig, sig_len) == 0;
	}
	OPENSSL_free(again);
	ECDSA_SIG_free(s);
	return ok;
}

int t_verify(EVP_PKEY *pub, enum hsm_sig_alg alg, const uint8_t *msg, size_t msg_len,
	     const uint8_t *sig, size_t sig_len)
{
	if (pub == NULL)
		return -1;
	if (alg == HSM_SIG_ED25519) {
		if (!EVP_PKEY_is_a(pub, "ED25519") || sig_len != 64)
			return 0;
		EVP_MD_CTX *mctx = EVP_MD_CTX_new();
		int rc = mctx != NULL && EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, pub) == 1 &&
			 EVP_DigestVerify(mctx, sig, sig_len, msg, msg_len) == 1;
		EVP_MD_CTX_free(mctx);
		return rc;
	}

	const char *mdname = t_alg_md(alg);
	const EVP_MD *md = mdname ? EVP_get_digestbyname(mdname) : NULL;
	if (md == NULL)
		return -1;
	if (alg_is_ecdsa(alg) && (!EVP_PKEY_is_a(pub, "EC") || !ecdsa_der_canonical(sig, sig_len)))
		return 0;
	if (!alg_is_ecdsa(alg) && !EVP_PKEY_is_a(pub, "RSA"))
		return 0;

	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	if (EVP_Digest(msg, msg_len, digest, &dlen, md, NULL) != 1)
		return -1;

	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
	int rc = -1;
	if (ctx == NULL || EVP_PKEY_verify_init(ctx) != 1)
		goto out;
	if (!alg_is_ecdsa(alg)) {
		if (EVP_PKEY_CTX_set_signature_md(ctx, md) != 1)
			goto out;
		if (t_alg_is_pss(alg)) {
			if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) != 1 ||
			    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) != 1 ||
			    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)dlen) != 1)
				goto out;
		} else if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1) {
			goto out;
		}
	}
	rc = EVP_PKEY_verify(ctx, sig, sig_len, digest, dlen) == 1;
out:
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

/* ---- files and subprocesses ------------------------------------------------------------ */

int t_write_file(const char *path, const void *data, size_t len, unsigned mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	const uint8_t *p = data;

	if (fd < 0) {
		fprintf(stderr, "cannot create %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
			close(fd);
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	/* open() applies the umask; the tests need the exact mode. */
	if (fchmod(fd, mode) != 0 || close(fd) != 0) {
		fprintf(stderr, "cannot finish %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

int t_read_file(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t got = 0;

	*len = 0;
	if (fd < 0) {
		fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (got == cap) {
			uint8_t extra;
			ssize_t n = read(fd, &extra, 1);
			close(fd);
			if (n != 0) {
				fprintf(stderr, "%s: larger than %zu bytes\n", path, cap);
				return -1;
			}
			break;
		}
		ssize_t n = read(fd, buf + got, cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "cannot read %s: %s\n", path, strerror(errno));
			close(fd);
			return -1;
		}
		if (n == 0) {
			close(fd);
			break;
		}
		got += (size_t)n;
	}
	*len = got;
	return 0;
}

int t_write_pubkey_pem(EVP_PKEY *pub, const char *path)
{
	FILE *f = fopen(path, "we");
	int ok;

	if (f == NULL)
		return -1;
	ok = PEM_write_PUBKEY(f, pub) == 1;
	return fclose(f) == 0 && ok ? 0 : -1;
}

EVP_PKEY *t_read_pubkey(const char *path)
{
	uint8_t buf[8192];
	size_t len = 0;
	EVP_PKEY *pk = NULL;

	if (t_read_file(path, buf, sizeof(buf), &len) != 0)
		return NULL;
	if (len > 10 && memcmp(buf, "-----BEGIN", 10) == 0) {
		BIO *b = BIO_new_mem_buf(buf, (int)len);
		pk = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
		BIO_free(b);
	} else {
		const unsigned char *p = buf;
		pk = d2i_PUBKEY(NULL, &p, (long)len);
	}
	if (pk == NULL)
		fprintf(stderr, "%s: not a public key\n", path);
	return pk;
}

int t_run(char *const argv[], char *const env[], const char *out_path)
{
	extern char **environ;
	size_t n_env = 0, n_add = 0;
	char **envp;
	int status, out_fd;
	pid_t pid;

	/* Everything the child needs is prepared here: between fork and exec a threaded
	 * process may only make async-signal-safe calls. */
	while (environ[n_env] != NULL)
		n_env++;
	while (env != NULL && env[n_add] != NULL)
		n_add++;
	envp = calloc(n_env + n_add + 1, sizeof(*envp));
	if (envp == NULL)
		return -1;
	for (size_t i = 0; i < n_add; i++)
		envp[i] = env[i];
	for (size_t i = 0; i < n_env; i++)
		envp[n_add + i] = environ[i]; /* first match wins: the additions override */
	out_fd = open(out_path ? out_path : "/dev/null",
		      (out_path ? O_WRONLY | O_CREAT | O_TRUNC : O_WRONLY) | O_CLOEXEC, 0600);
	if (out_fd < 0) {
		fprintf(stderr, "t_run: cannot open %s: %s\n", out_path ? out_path : "/dev/null",
			strerror(errno));
		free(envp);
		return -1;
	}

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "fork: %s\n", strerror(errno));
		close(out_fd);
		free(envp);
		return -1;
	}
	if (pid == 0) {
		static const char msg[] = "t_run: exec failed\n";
		if (dup2(out_fd, STDOUT_FILENO) < 0)
			_exit(126);
		execvpe(argv[0], argv, envp);
		(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
		_exit(127);
	}
	close(out_fd);
	free(envp);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (!WIFEXITED(status)) {
		fprintf(stderr, "%s: killed (status 0x%x)\n", argv[0], status);
		return -1;
	}
	if (WEXITSTATUS(status) != 0) {
		fprintf(stderr, "%s exited with %d:", argv[0], WEXITSTATUS(status));
		/* The command line, PINs masked. */
		for (size_t i = 1; argv[i] != NULL; i++)
			fprintf(stderr, " %s",
				strcmp(argv[i - 1], "--pin") == 0 || strstr(argv[i], "pin-value")
					? "(pin masked)"
					: argv[i]);
		fputc('\n', stderr);
	}
	return WEXITSTATUS(status);
}

void t_hex(const uint8_t *b, size_t n, char *dst)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		dst[2 * i] = digits[b[i] >> 4];
		dst[2 * i + 1] = digits[b[i] & 15];
	}
	dst[2 * n] = '\0';
}

/* ---- raw PKCS#11 ------------------------------------------------------------------------- */

CK_FUNCTION_LIST *t_raw_module(const char *path)
{
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
	CK_C_GetFunctionList get;
	CK_FUNCTION_LIST *fn = NULL;

	if (dl == NULL) {
		fprintf(stderr, "t_raw_module: %s is not loaded: %s\n", path, dlerror());
		return NULL;
	}
	get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
	if (get == NULL || get(&fn) != CKR_OK)
		fn = NULL;
	/* Drop our reference only: hsm/ holds its own, so the module stays loaded. */
	dlclose(dl);
	return fn;
}

int t_raw_slot(CK_FUNCTION_LIST *fn, const char *label, CK_SLOT_ID *slot)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64;

	if (fn->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		return -1;
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		char l[33];
		size_t len = sizeof(ti.label);

		if (fn->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		memcpy(l, ti.label, sizeof(ti.label));
		while (len > 0 && l[len - 1] == ' ')
			len--;
		l[len] = '\0';
		if (strcmp(l, label) == 0) {
			*slot = slots[i];
			return 0;
		}
	}
	fprintf(stderr, "t_raw_slot: no token '%s'\n", label);
	return -1;
}

int t_raw_session(CK_FUNCTION_LIST *fn, const char *label, CK_SESSION_HANDLE *out)
{
	CK_SLOT_ID slot;
	CK_RV rv;

	if (t_raw_slot(fn, label, &slot) != 0)
		return -1;
	rv = fn->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, out);
	if (rv != CKR_OK) {
		fprintf(stderr, "t_raw_session: C_OpenSession: 0x%lx\n", rv);
		return -1;
	}
	return 0;
}

long t_raw_count(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label)
{
	CK_ATTRIBUTE tmpl[2];
	CK_ULONG nt = 0, n = 0;
	CK_OBJECT_HANDLE h[256];

	if (cls != (CK_OBJECT_CLASS)-1)
		tmpl[nt++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
	if (label != NULL)
		tmpl[nt++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, strlen(label)};
	if (fn->C_FindObjectsInit(s, tmpl, nt) != CKR_OK)
		return -1;
	CK_RV rv = fn->C_FindObjects(s, h, 256, &n);
	fn->C_FindObjectsFinal(s);
	return rv == CKR_OK ? (long)n : -1;
}

int t_raw_priv_attrs(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, const uint8_t *id, size_t id_len,
		     struct t_priv_attrs *out)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, (void *)id, id_len}};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;
	CK_BBOOL b[8];

	memset(out, 0, sizeof(*out));
	if (fn->C_FindObjectsInit(s, tmpl, 2) != CKR_OK)
		return -1;
	CK_RV rv = fn->C_FindObjects(s, h, 2, &n);
	fn->C_FindObjectsFinal(s);
	if (rv != CKR_OK || n != 1) {
		fprintf(stderr, "t_raw_priv_attrs: %lu private keys match\n", (unsigned long)n);
		return -1;
	}
	CK_ATTRIBUTE a[10] = {
		{CKA_SENSITIVE, &b[0], 1},
		{CKA_EXTRACTABLE, &b[1], 1},
		{CKA_PRIVATE, &b[2], 1},
		{CKA_ALWAYS_SENSITIVE, &b[3], 1},
		{CKA_NEVER_EXTRACTABLE, &b[4], 1},
		{CKA_SIGN, &b[5], 1},
		{CKA_DECRYPT, &b[6], 1},
		{CKA_TOKEN, &b[7], 1},
		{CKA_ID, out->id, sizeof(out->id)},
		{CKA_LABEL, out->label, sizeof(out->label) - 1},
	};
	rv = fn->C_GetAttributeValue(s, h[0], a, 10);
	if (rv != CKR_OK) {
		fprintf(stderr, "t_raw_priv_attrs: C_GetAttributeValue: 0x%lx\n", rv);
		return -1;
	}
	out->sensitive = b[0];
	out->extractable = b[1];
	out->private_ = b[2];
	out->always_sensitive = b[3];
	out->never_extractable = b[4];
	out->sign = b[5];
	out->decrypt = b[6];
	out->token = b[7];
	out->id_len = a[8].ulValueLen;
	out->label[a[9].ulValueLen] = '\0';
	return 0;
}
