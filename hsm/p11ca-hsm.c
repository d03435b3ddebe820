/*
 * p11ca-hsm — the operator's tool for p11ca's PKCS#11 layer: check a token, create CA keys
 * for a key ceremony, print public keys, and test-sign. It uses exactly the code the signer
 * process uses (hsm/hsm.h), so what works here works in p11cad.
 *
 * Data (PEM, signatures) goes to stdout or the named file; diagnostics to stderr. Exit
 * codes follow sysexits.h (p11ca_err_sysexit).
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "common/err.h"
#include "hsm/hsm.h"
#include "hsm/pin.h"

#define DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define SIGN_INPUT_MAX (1024 * 1024) /* a TBS is a few KiB; refuse anything absurd */

static const char usage_text[] =
	"Usage: p11ca-hsm [OPTIONS] COMMAND [ARGS]\n"
	"\n"
	"Check a PKCS#11 token, create CA keys on it, and test-sign with them, through\n"
	"the same code p11cad's signer uses.\n"
	"\n"
	"Options:\n"
	"  --module PATH      PKCS#11 module (default: module-path= in the URI, else\n"
	"                     " DEFAULT_MODULE ")\n"
	"  --token URI        the token, as an RFC 7512 URI: pkcs11:token=LABEL[;serial=S]\n"
	"                     (default: $P11CA_HSM_TOKEN)\n"
	"  --pin-source SRC   user PIN from file:/path, /path or credential:NAME; the file\n"
	"                     must be mode 0600 (default: pin-source= in the URI)\n"
	"  --pin-fd N         read the user PIN from descriptor N (e.g. --pin-fd 3 3<pinfile)\n"
	"  --pool N           sessions to open (default 2)\n"
	"  -v, --verbose      also log logins and key generation (to stderr)\n"
	"  -h, --help         this text\n"
	"\n"
	"Commands:\n"
	"  status                   token, login and session state, key count\n"
	"  keygen TYPE LABEL        generate a key pair on the token; TYPE is one of\n"
	"                           rsa2048 rsa3072 rsa4096 p256 p384 p521 ed25519.\n"
	"                           Prints the public key (PEM) on stdout, the id on stderr.\n"
	"                           An existing label is refused: keys are never replaced.\n"
	"  pubkey KEY               print KEY's public key (PEM)\n"
	"  sign KEY ALG IN OUT      sign file IN, write the signature to OUT (RSA raw, ECDSA\n"
	"                           DER, Ed25519 64 bytes); ALG is rsa-pkcs1-sha256|384|512,\n"
	"                           rsa-pss-sha256|384|512, ecdsa-sha256|384|512, ed25519 or\n"
	"                           'default' (the key type's usual algorithm). The signature\n"
	"                           is verified before it is written.\n"
	"\n"
	"KEY is a label or an object URI (pkcs11:object=ca-root or pkcs11:id=%01%02...).\n"
	"\n"
	"Exit status: 0 done, 64 usage, 65 bad key/algorithm/input, 69 HSM unavailable,\n"
	"75 HSM busy, 77 PIN refused or missing, 78 configuration (module, token, PIN file).\n"
	"\n"
	"Example (SoftHSM2; scripts/softhsm-token.sh creates a token and its PIN file):\n"
	"  p11ca-hsm --token 'pkcs11:token=ca' --pin-source file:/etc/p11ca/pin \\\n"
	"            keygen p384 root-2026 > root.pub.pem\n";

struct opts {
	struct p11ca_logger log;
	const char *module;
	const char *token;
	const char *pin_source;
	int pin_fd;
	unsigned pool;
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "p11ca-hsm: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nTry 'p11ca-hsm --help'.\n");
	va_end(ap);
	return 64;
}

static int report(enum p11ca_err err, const struct p11ca_errmsg *em)
{
	fprintf(stderr, "p11ca-hsm: %s\n", p11ca_errmsg_text(em));
	return p11ca_err_sysexit(err);
}

static int print_pubkey(EVP_PKEY *pub, FILE *out)
{
	if (PEM_write_PUBKEY(out, pub) != 1 || fflush(out) != 0) {
		fprintf(stderr, "p11ca-hsm: cannot write the public key: %s\n", strerror(errno));
		return 74;
	}
	return 0;
}

static enum p11ca_err key_lookup(struct hsm_token *tok, const char *key, struct hsm_key **out,
				 struct p11ca_errmsg *em)
{
	if (strncmp(key, "pkcs11:", 7) == 0)
		return hsm_key_find_uri(tok, key, out, em);
	return hsm_key_find(tok, key, NULL, 0, out, em);
}

static int read_file(const char *path, uint8_t **data, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "p11ca-hsm: cannot open %s: %s\n", path, strerror(errno));
		return 66; /* EX_NOINPUT */
	}
	*data = malloc(SIGN_INPUT_MAX + 1);
	*len = *data ? fread(*data, 1, SIGN_INPUT_MAX + 1, f) : 0;
	int bad = ferror(f) || *data == NULL;
	fclose(f);
	if (bad || *len > SIGN_INPUT_MAX) {
		fprintf(stderr, "p11ca-hsm: %s: %s\n", path,
			bad ? "read error" : "larger than 1 MiB; refusing to sign it");
		free(*data);
		*data = NULL;
		return bad ? 74 : 65;
	}
	return 0;
}

static int cmd_status(struct hsm_token *tok)
{
	struct hsm_status st;
	struct p11ca_errmsg em = {0};
	enum p11ca_err err = hsm_token_status(tok, &st, &em);
	if (err != P11CA_OK)
		return report(err, &em);
	printf("token:          %s\n", st.token_present ? st.label : "(not present)");
	if (st.token_present)
		printf("serial:         %s\nmanufacturer:   %s\nmodel:          %s\n", st.serial,
		       st.manufacturer, st.model);
	printf("logged in:      %s\n", st.logged_in ? "yes" : "no");
	printf("PIN:            %s%s%s%s\n",
	       st.pin_refused ? "refused (will not be retried)"
	       : st.pin_set   ? "held"
			      : "none",
	       st.pin_count_low ? ", token reports failed attempts" : "",
	       st.pin_final_try ? ", FINAL TRY" : "", st.pin_locked ? ", LOCKED" : "");
	printf("sessions:       %u open, %u busy, pool of %u\n", st.sessions_open, st.sessions_busy,
	       st.pool_size);
	if (st.key_count >= 0)
		printf("private keys:   %ld\n", st.key_count);
	else
		printf("private keys:   (unknown: not logged in)\n");
	printf("signatures:     %llu (failures %llu, recoveries %llu, withheld %llu)\n",
	       (unsigned long long)st.signatures, (unsigned long long)st.failures,
	       (unsigned long long)st.recoveries, (unsigned long long)st.bad_signatures);
	if (st.last_error != P11CA_OK)
		printf("last error:     %s\n", st.last_error_text);
	return st.token_present ? 0 : 69;
}

static int cmd_keygen(struct hsm_token *tok, const char *type_name, const char *label)
{
	struct p11ca_errmsg em = {0};
	enum hsm_key_type type;
	enum p11ca_err err = hsm_key_type_parse(type_name, &type, &em);
	if (err != P11CA_OK)
		return report(err, &em);
	struct hsm_key *key = NULL;
	err = hsm_key_generate(tok, type, label, &key, &em);
	if (err != P11CA_OK)
		return report(err, &em);
	size_t id_len;
	const uint8_t *id = hsm_key_id(key, &id_len);
	fprintf(stderr, "p11ca-hsm: generated %s key '%s', URI pkcs11:object=%s;id=", type_name,
		label, label);
	for (size_t i = 0; i < id_len; i++)
		fprintf(stderr, "%%%02x", id[i]);
	fprintf(stderr, "\n");
	int rc = print_pubkey(hsm_key_public(key), stdout);
	hsm_key_free(&key);
	return rc;
}

static int cmd_pubkey(struct hsm_token *tok, const char *name)
{
	struct p11ca_errmsg em = {0};
	struct hsm_key *key = NULL;
	enum p11ca_err err = key_lookup(tok, name, &key, &em);
	if (err != P11CA_OK)
		return report(err, &em);
	int rc = print_pubkey(hsm_key_public(key), stdout);
	hsm_key_free(&key);
	return rc;
}

static int cmd_sign(struct hsm_token *tok, const char *name, const char *alg_name, const char *in,
		    const char *out)
{
	struct p11ca_errmsg em = {0};
	struct hsm_key *key = NULL;
	uint8_t *msg = NULL;
	size_t msg_len = 0;
	int rc = 0;

	enum p11ca_err err = key_lookup(tok, name, &key, &em);
	if (err != P11CA_OK)
		return report(err, &em);
	enum hsm_sig_alg alg = hsm_sig_alg_default(hsm_key_type_of(key));
	if (strcmp(alg_name, "default") != 0 &&
	    (err = hsm_sig_alg_parse(alg_name, &alg, &em)) != P11CA_OK) {
		rc = report(err, &em);
		goto out;
	}
	if ((rc = read_file(in, &msg, &msg_len)) != 0)
		goto out;

	uint8_t sig[HSM_SIG_MAX];
	size_t sig_len = 0;
	err = hsm_sign(key, alg, msg, msg_len, sig, sizeof(sig), &sig_len, &em);
	if (err != P11CA_OK) {
		rc = report(err, &em);
		goto out;
	}
	FILE *f = fopen(out, "wb");
	if (f == NULL || fwrite(sig, 1, sig_len, f) != sig_len || fclose(f) != 0) {
		fprintf(stderr, "p11ca-hsm: cannot write %s: %s\n", out, strerror(errno));
		rc = 73; /* EX_CANTCREAT */
		goto out;
	}
	fprintf(stderr, "p11ca-hsm: signed %zu bytes with '%s' (%s), signature verified\n", msg_len,
		hsm_key_label(key), hsm_sig_alg_name(alg));
out:
	free(msg);
	hsm_key_free(&key);
	return rc;
}

/* Commands that touch keys need a login; status must work without one. */
static int run(const struct opts *o, int argc, char **argv)
{
	struct p11ca_errmsg em = {0};
	struct hsm_ctx *ctx = NULL;
	struct hsm_token *tok = NULL;
	struct p11ca_secret *pin = NULL;
	const char *cmd = argv[0];
	int rc;

	struct hsm_token_config cfg = {
		.module_path = o->module, .uri = o->token, .pool_size = o->pool};
	enum p11ca_err err = hsm_ctx_new(&o->log, &ctx, &em);
	if (err == P11CA_OK)
		err = hsm_token_open(ctx, &cfg, &tok, &em);
	if (err == P11CA_OK && o->pin_source != NULL)
		err = hsm_pin_from_source(o->pin_source, &pin, &em);
	else if (err == P11CA_OK && o->pin_fd >= 0)
		err = hsm_pin_from_fd(o->pin_fd, &pin, &em);
	if (err == P11CA_OK) {
		struct p11ca_errmsg login_em = {0};
		enum p11ca_err lerr = hsm_token_login(tok, pin, &login_em);
		/* status reports a failed login instead of failing; the rest need it. */
		if (lerr != P11CA_OK && strcmp(cmd, "status") != 0) {
			err = lerr;
			em = login_em;
		}
	}
	p11ca_secret_free(&pin);
	if (err != P11CA_OK) {
		rc = report(err, &em);
		goto out;
	}

	if (strcmp(cmd, "status") == 0 && argc == 1)
		rc = cmd_status(tok);
	else if (strcmp(cmd, "keygen") == 0 && argc == 3)
		rc = cmd_keygen(tok, argv[1], argv[2]);
	else if (strcmp(cmd, "pubkey") == 0 && argc == 2)
		rc = cmd_pubkey(tok, argv[1]);
	else if (strcmp(cmd, "sign") == 0 && argc == 5)
		rc = cmd_sign(tok, argv[1], argv[2], argv[3], argv[4]);
	else
		rc = usage_error("wrong arguments for '%s'", cmd);
out:
	hsm_token_close(&tok);
	hsm_ctx_free(&ctx);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"module", required_argument, NULL, 'm'},
		{"token", required_argument, NULL, 't'},
		{"pin-source", required_argument, NULL, 's'},
		{"pin-fd", required_argument, NULL, 'f'},
		{"pool", required_argument, NULL, 'p'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct opts o = {.token = getenv("P11CA_HSM_TOKEN"), .pin_fd = -1};
	o.log.max_priority = LOG_WARNING; /* recoveries and refusals; not routine logins */
	int c;
	char *end;
	while ((c = getopt_long(argc, argv, "+hv", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			o.module = optarg;
			break;
		case 't':
			o.token = optarg;
			break;
		case 's':
			o.pin_source = optarg;
			break;
		case 'f':
			errno = 0;
			o.pin_fd = (int)strtol(optarg, &end, 10);
			if (errno || *end || o.pin_fd < 0)
				return usage_error("--pin-fd needs a descriptor number, not '%s'",
						   optarg);
			break;
		case 'p':
			errno = 0;
			o.pool = (unsigned)strtoul(optarg, &end, 10);
			if (errno || *end || o.pool == 0)
				return usage_error("--pool needs a positive number, not '%s'",
						   optarg);
			break;
		case 'v':
			o.log.max_priority = LOG_DEBUG;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			return usage_error("%s", "unknown option");
		}
	}
	if (optind >= argc)
		return usage_error("%s", "no command given (status, keygen, pubkey, sign)");
	if (o.token == NULL)
		return usage_error("%s", "no token: pass --token pkcs11:token=LABEL or set "
					 "P11CA_HSM_TOKEN");
	if (o.pin_source != NULL && o.pin_fd >= 0)
		return usage_error("%s", "give --pin-source or --pin-fd, not both");
	if (o.module == NULL && strstr(o.token, "module-path=") == NULL)
		o.module = DEFAULT_MODULE;
	return run(&o, argc - optind, argv + optind);
}
