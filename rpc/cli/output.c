/*
 * What the CLI prints: JSON (a small streaming writer; the shapes are documented in
 * docs/cli.md and are stable), aligned text, and exported files written atomically.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/buffer.h>
#include <openssl/pem.h>

#include "rpc/cli/cli.h"

/* ---- JSON ------------------------------------------------------------------------------ */

static void json_indent(struct cli_json *j)
{
	fputc('\n', j->f);
	for (int i = 0; i < j->depth; i++)
		fputs("  ", j->f);
}

static void json_raw_str(FILE *f, const char *s, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", f);
		else if (ch == '\t')
			fputs("\\t", f);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f); /* UTF-8 passes through; the server refuses invalid UTF-8 */
	}
	fputc('"', f);
}

/* Separator, indentation and "key": before a value. */
static void json_key(struct cli_json *j, const char *key)
{
	if (!j->first)
		fputc(',', j->f);
	j->first = false;
	json_indent(j);
	if (key != NULL) {
		json_raw_str(j->f, key, strlen(key));
		fputs(": ", j->f);
	}
}

static void json_open(struct cli_json *j, const char *key, char c)
{
	json_key(j, key);
	fputc(c, j->f);
	j->depth++;
	j->first = true;
}

static void json_close(struct cli_json *j, char c)
{
	bool empty = j->first;
	j->depth--;
	if (!empty)
		json_indent(j);
	fputc(c, j->f);
	j->first = false;
}

void cli_json_begin(struct cli_json *j, FILE *f)
{
	j->f = f;
	j->depth = 1;
	j->first = true;
	fputc('{', f);
}

void cli_json_end(struct cli_json *j)
{
	json_close(j, '}');
	fputc('\n', j->f);
}

void cli_json_obj(struct cli_json *j, const char *key)
{
	json_open(j, key, '{');
}

void cli_json_obj_end(struct cli_json *j)
{
	json_close(j, '}');
}

void cli_json_arr(struct cli_json *j, const char *key)
{
	json_open(j, key, '[');
}

void cli_json_arr_end(struct cli_json *j)
{
	json_close(j, ']');
}

void cli_json_strn(struct cli_json *j, const char *key, const char *v, size_t len)
{
	json_key(j, key);
	if (v == NULL)
		fputs("null", j->f);
	else
		json_raw_str(j->f, v, len);
}

void cli_json_str(struct cli_json *j, const char *key, const char *v)
{
	cli_json_strn(j, key, v, v != NULL ? strlen(v) : 0);
}

void cli_json_int(struct cli_json *j, const char *key, long long v)
{
	json_key(j, key);
	fprintf(j->f, "%lld", v);
}

void cli_json_uint(struct cli_json *j, const char *key, unsigned long long v)
{
	json_key(j, key);
	fprintf(j->f, "%llu", v);
}

void cli_json_bool(struct cli_json *j, const char *key, bool v)
{
	json_key(j, key);
	fputs(v ? "true" : "false", j->f);
}

void cli_json_time(struct cli_json *j, const char *key, int64_t t)
{
	char buf[32];
	cli_time_format(t, buf, sizeof(buf));
	cli_json_str(j, key, buf[0] != '\0' ? buf : NULL);
}

void cli_json_hex(struct cli_json *j, const char *key, const uint8_t *b, size_t len)
{
	char buf[2 * 32 + 1];
	cli_serial_format(b, len, buf, sizeof(buf));
	cli_json_str(j, key, buf);
}

void cli_json_data(struct cli_json *j, const uint8_t *data, size_t len, bool der)
{
	if (!der) {
		cli_json_strn(j, "data", (const char *)data, len);
		return;
	}
	/* 4 output bytes per 3 input bytes, plus the NUL EVP_EncodeBlock adds. */
	char *b64 = len <= INT_MAX / 2 ? malloc((len + 2) / 3 * 4 + 1) : NULL;
	if (b64 == NULL) {
		cli_json_str(j, "data_base64", NULL);
		return;
	}
	int n = EVP_EncodeBlock((unsigned char *)b64, data, (int)len);
	cli_json_strn(j, "data_base64", b64, n > 0 ? (size_t)n : 0);
	free(b64);
}

static void json_revocation(struct cli_json *j, bool has, const p11ca_v1_RevocationInfo *r)
{
	if (!has) {
		cli_json_str(j, "revocation", NULL);
		return;
	}
	cli_json_obj(j, "revocation");
	cli_json_time(j, "revoked_at", r->revoked_at);
	cli_json_str(j, "reason", cli_reason_name(r->reason));
	cli_json_time(j, "compromised_at", r->compromised_at);
	cli_json_obj_end(j);
}

void cli_json_ca(struct cli_json *j, const char *key, const p11ca_v1_CaSummary *ca)
{
	cli_json_obj(j, key);
	cli_json_str(j, "name", ca->name);
	cli_json_hex(j, "serial", ca->serial.bytes, ca->serial.size);
	cli_json_str(j, "subject", ca->subject);
	cli_json_str(j, "parent", ca->parent[0] != '\0' ? ca->parent : NULL);
	cli_json_time(j, "not_before", ca->not_before);
	cli_json_time(j, "not_after", ca->not_after);
	cli_json_str(j, "status", cli_ca_status_name(ca->status));
	cli_json_bool(j, "enabled", ca->enabled);
	json_revocation(j, ca->has_revocation, &ca->revocation);
	cli_json_str(j, "key_type", cli_key_type_name(ca->key_type));
	cli_json_str(j, "signature_algorithm", cli_sig_alg_name(ca->signature_algorithm));
	cli_json_str(j, "key_label", ca->key_label);
	cli_json_str(j, "token", ca->token);
	if (ca->has_path_length)
		cli_json_uint(j, "path_length", ca->path_length);
	else
		cli_json_str(j, "path_length", NULL);
	cli_json_hex(j, "subject_key_id", ca->subject_key_id.bytes, ca->subject_key_id.size);
	cli_json_obj_end(j);
}

void cli_json_cert(struct cli_json *j, const char *key, const p11ca_v1_CertSummary *c)
{
	cli_json_obj(j, key);
	cli_json_hex(j, "serial", c->serial.bytes, c->serial.size);
	cli_json_str(j, "ca", c->ca);
	cli_json_str(j, "subject", c->subject);
	cli_json_time(j, "not_before", c->not_before);
	cli_json_time(j, "not_after", c->not_after);
	cli_json_str(j, "status", cli_cert_status_name(c->status));
	json_revocation(j, c->has_revocation, &c->revocation);
	cli_json_str(j, "key_type", cli_key_type_name(c->key_type));
	cli_json_str(j, "profile", c->profile);
	cli_json_obj_end(j);
}

void cli_json_token(struct cli_json *j, const char *key, const p11ca_v1_TokenStatus *t)
{
	cli_json_obj(j, key);
	cli_json_str(j, "name", t->name);
	cli_json_str(j, "label", t->label);
	cli_json_str(j, "manufacturer", t->manufacturer);
	cli_json_str(j, "model", t->model);
	cli_json_str(j, "serial_number", t->serial_number);
	cli_json_str(j, "state", cli_token_state_name(t->state));
	cli_json_uint(j, "sessions_open", t->sessions_open);
	cli_json_uint(j, "sessions_busy", t->sessions_busy);
	cli_json_obj_end(j);
}

/* ---- text -------------------------------------------------------------------------------- */

static void text_line(FILE *f, const char *key, const char *v)
{
	fprintf(f, "%-20s %s\n", key, v != NULL && v[0] != '\0' ? v : "-");
}

static void text_time(FILE *f, const char *key, int64_t t)
{
	char buf[32];
	cli_time_format(t, buf, sizeof(buf));
	text_line(f, key, buf);
}

static void text_revocation(FILE *f, bool has, const p11ca_v1_RevocationInfo *r)
{
	char buf[32], line[96];
	if (!has)
		return;
	cli_time_format(r->revoked_at, buf, sizeof(buf));
	snprintf(line, sizeof(line), "%s (%s)", buf, cli_reason_name(r->reason));
	text_line(f, "revoked:", line);
	if (r->compromised_at != 0) {
		cli_time_format(r->compromised_at, buf, sizeof(buf));
		text_line(f, "compromised:", buf);
	}
}

void cli_text_ca(FILE *f, const p11ca_v1_CaSummary *ca)
{
	char hex[65], num[16];
	text_line(f, "name:", ca->name);
	cli_serial_format(ca->serial.bytes, ca->serial.size, hex, sizeof(hex));
	text_line(f, "serial:", hex);
	text_line(f, "subject:", ca->subject);
	text_line(f, "parent:", ca->parent[0] != '\0' ? ca->parent : "(root)");
	text_time(f, "not before:", ca->not_before);
	text_time(f, "not after:", ca->not_after);
	text_line(f, "status:", cli_ca_status_name(ca->status));
	text_line(f, "issuing:", ca->enabled ? "enabled" : "disabled");
	text_revocation(f, ca->has_revocation, &ca->revocation);
	text_line(f, "key type:", cli_key_type_name(ca->key_type));
	text_line(f, "signature algorithm:", cli_sig_alg_name(ca->signature_algorithm));
	text_line(f, "key label:", ca->key_label);
	text_line(f, "token:", ca->token);
	snprintf(num, sizeof(num), "%u", (unsigned)ca->path_length);
	text_line(f, "path length:", ca->has_path_length ? num : "(no limit)");
	cli_serial_format(ca->subject_key_id.bytes, ca->subject_key_id.size, hex, sizeof(hex));
	text_line(f, "subject key id:", hex);
}

void cli_text_cert(FILE *f, const p11ca_v1_CertSummary *c)
{
	char hex[41];
	cli_serial_format(c->serial.bytes, c->serial.size, hex, sizeof(hex));
	text_line(f, "serial:", hex);
	text_line(f, "ca:", c->ca);
	text_line(f, "subject:", c->subject);
	text_time(f, "not before:", c->not_before);
	text_time(f, "not after:", c->not_after);
	text_line(f, "status:", cli_cert_status_name(c->status));
	text_revocation(f, c->has_revocation, &c->revocation);
	text_line(f, "key type:", cli_key_type_name(c->key_type));
	text_line(f, "profile:", c->profile);
}

void cli_text_watchers(FILE *f, const char (*w)[255], size_t n)
{
	fprintf(f, "%-20s", "watchers:");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%s", i ? ", " : " ", w[i]);
	fputs(n == 0 ? " -\n" : "\n", f);
}

void cli_table(FILE *f, const char *const *head, size_t n_cols, const char *const *cells,
	       size_t n_rows)
{
	size_t width[16] = {0};
	if (n_cols > 16)
		n_cols = 16;
	for (size_t c = 0; c < n_cols; c++) {
		width[c] = strlen(head[c]);
		for (size_t r = 0; r < n_rows; r++) {
			size_t l = strlen(cells[r * n_cols + c]);
			if (l > width[c])
				width[c] = l;
		}
	}
	for (size_t r = 0; r <= n_rows; r++) {
		const char *const *row = r == 0 ? head : cells + (r - 1) * n_cols;
		for (size_t c = 0; c < n_cols; c++) {
			if (c + 1 == n_cols)
				fprintf(f, "%s\n", row[c]);
			else
				fprintf(f, "%-*s  ", (int)width[c], row[c]);
		}
	}
}

/* ---- files ----------------------------------------------------------------------------- */

char *cli_der_to_pem(const char *label, const uint8_t *der, size_t len, size_t *pem_len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *mem = NULL;
	char *pem = NULL;

	if (bio == NULL || len > INT_MAX || PEM_write_bio(bio, label, "", der, (long)len) <= 0)
		goto out;
	BIO_get_mem_ptr(bio, &mem);
	pem = malloc(mem->length + 1);
	if (pem == NULL)
		goto out;
	memcpy(pem, mem->data, mem->length);
	pem[mem->length] = '\0';
	*pem_len = mem->length;
out:
	BIO_free(bio);
	return pem;
}

static bool write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		len -= (size_t)w;
	}
	return true;
}

/* Temporary file beside the target, then rename: a reader never sees half a file, and a
 * failure leaves the old file in place. */
static int write_atomic(struct cli *cli, const char *path, const uint8_t *data, size_t len)
{
	char tmp[PATH_MAX];
	int fd = -1, rc = CLI_EX_IOERR;
	const char *step = "cannot create a temporary file beside it";

	if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp))
		return cli_error(cli, CLI_EX_USAGE, "cannot write the output", "path too long",
				 "choose a shorter --out path");
	fd = mkstemp(tmp);
	if (fd < 0)
		goto out;
	step = "cannot write";
	if (fchmod(fd, 0644) != 0 || !write_all(fd, data, len) || fsync(fd) != 0)
		goto out;
	step = "cannot close";
	int cfd = fd;
	fd = -1;
	if (close(cfd) != 0)
		goto out;
	step = "cannot rename the temporary file onto it";
	if (rename(tmp, path) != 0)
		goto out;
	tmp[0] = '\0';
	rc = 0;
out:
	if (rc != 0) {
		int e = errno;
		char what[PATH_MAX + 32];
		snprintf(what, sizeof(what), "cannot write %s", path);
		cli_error(cli, rc, what, step, strerror(e));
	}
	if (fd >= 0)
		close(fd);
	if (tmp[0] != '\0' && rc != 0)
		unlink(tmp);
	return rc;
}

int cli_deliver(struct cli *cli, const uint8_t *data, size_t len, bool binary, const char *out_path)
{
	if (out_path != NULL)
		return write_atomic(cli, out_path, data, len);
	if (binary && isatty(fileno(cli->out)))
		return cli_error(cli, CLI_EX_USAGE, "refusing to write DER to a terminal",
				 "it is binary",
				 "use --out FILE, redirect the output, or --format pem");
	if (len > 0 && fwrite(data, 1, len, cli->out) != len)
		return cli_error(cli, CLI_EX_IOERR, "cannot write the output", strerror(errno),
				 NULL);
	return 0;
}

int cli_read_file(struct cli *cli, const char *path, size_t max, uint8_t **data, size_t *len,
		  const char *what)
{
	char ctx[PATH_MAX + 64];
	uint8_t *buf = NULL;
	size_t n = 0;
	int rc = CLI_EX_NOINPUT;
	FILE *f = fopen(path, "rb");

	snprintf(ctx, sizeof(ctx), "cannot read %s %s", what, path);
	if (f == NULL)
		return cli_error(cli, CLI_EX_NOINPUT, ctx, strerror(errno), "check the path");
	buf = malloc(max + 1);
	if (buf == NULL) {
		rc = cli_error(cli, CLI_EX_SOFTWARE, ctx, "out of memory", NULL);
		goto out;
	}
	n = fread(buf, 1, max + 1, f);
	if (ferror(f)) {
		rc = cli_error(cli, CLI_EX_NOINPUT, ctx, strerror(errno), NULL);
		goto out;
	}
	if (n > max) {
		char why[64];
		snprintf(why, sizeof(why), "larger than %zu bytes", max);
		rc = cli_error(cli, CLI_EX_DATAERR, ctx, why, "is it the right file?");
		goto out;
	}
	*data = buf;
	*len = n;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	fclose(f);
	return rc;
}
