#include "rpc/role.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct role_entry {
	uint8_t fp[RPC_FINGERPRINT_LEN];
	enum rpc_role role;
};

struct rpc_role_table {
	struct role_entry *v;
	size_t n;
	size_t cap;
};

static const struct {
	enum rpc_role role;
	const char *name;
} role_names[] = {
	{RPC_ROLE_NONE, "none"},
	{RPC_ROLE_AUDITOR, "auditor"},
	{RPC_ROLE_OPERATOR, "operator"},
	{RPC_ROLE_ADMIN, "admin"},
};

const char *rpc_role_name(enum rpc_role role)
{
	for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
		if (role_names[i].role == role)
			return role_names[i].name;
	return "none";
}

enum p11ca_err rpc_role_parse(const char *name, enum rpc_role *out, struct p11ca_errmsg *em)
{
	if (name == NULL || out == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_role_parse: bad arguments");
	for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++) {
		if (role_names[i].role != RPC_ROLE_NONE &&
		    strcasecmp(name, role_names[i].name) == 0) {
			*out = role_names[i].role;
			return P11CA_OK;
		}
	}
	return p11ca_fail(em, P11CA_E_CONFIG,
			  "unknown role '%.32s': use admin, operator or auditor", name);
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

enum p11ca_err rpc_fingerprint_parse(const char *text, uint8_t fp[RPC_FINGERPRINT_LEN],
				     struct p11ca_errmsg *em)
{
	uint8_t tmp[RPC_FINGERPRINT_LEN] = {0};
	size_t nibbles = 0;
	bool after_colon = false;

	if (text == NULL || fp == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_fingerprint_parse: bad arguments");
	for (const char *p = text; *p != '\0'; p++) {
		/* A colon may only separate two whole bytes. */
		if (*p == ':') {
			if (nibbles == 0 || nibbles % 2 != 0 || after_colon)
				goto bad;
			after_colon = true;
			continue;
		}
		int v = hex_value(*p);
		if (v < 0 || nibbles == 2 * RPC_FINGERPRINT_LEN)
			goto bad;
		tmp[nibbles / 2] = (uint8_t)(tmp[nibbles / 2] << 4 | v);
		nibbles++;
		after_colon = false;
	}
	if (nibbles != 2 * RPC_FINGERPRINT_LEN || after_colon)
		goto bad;
	memcpy(fp, tmp, sizeof(tmp));
	return P11CA_OK;
bad:
	return p11ca_fail(em, P11CA_E_CONFIG,
			  "'%.100s' is not a SHA-256 fingerprint (64 hex digits, colons optional)",
			  text);
}

void rpc_fingerprint_format(const uint8_t fp[RPC_FINGERPRINT_LEN],
			    char out[RPC_FINGERPRINT_HEX_SIZE])
{
	static const char digits[] = "0123456789ABCDEF";
	for (size_t i = 0; i < RPC_FINGERPRINT_LEN; i++) {
		out[2 * i] = digits[fp[i] >> 4];
		out[2 * i + 1] = digits[fp[i] & 0xf];
	}
	out[2 * RPC_FINGERPRINT_LEN] = '\0';
}

enum p11ca_err rpc_role_table_new(struct rpc_role_table **out, struct p11ca_errmsg *em)
{
	*out = calloc(1, sizeof(**out));
	if (*out == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory for the role table");
	return P11CA_OK;
}

void rpc_role_table_free(struct rpc_role_table **t)
{
	if (t == NULL || *t == NULL)
		return;
	free((*t)->v);
	free(*t);
	*t = NULL;
}

static const struct role_entry *table_find(const struct rpc_role_table *t,
					   const uint8_t fp[RPC_FINGERPRINT_LEN])
{
	for (size_t i = 0; i < t->n; i++)
		if (memcmp(t->v[i].fp, fp, RPC_FINGERPRINT_LEN) == 0)
			return &t->v[i];
	return NULL;
}

enum p11ca_err rpc_role_table_add(struct rpc_role_table *t, const uint8_t fp[RPC_FINGERPRINT_LEN],
				  enum rpc_role role, struct p11ca_errmsg *em)
{
	char hex[RPC_FINGERPRINT_HEX_SIZE];

	if (t == NULL || fp == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_role_table_add: bad arguments");
	if (role != RPC_ROLE_AUDITOR && role != RPC_ROLE_OPERATOR && role != RPC_ROLE_ADMIN)
		return p11ca_fail(em, P11CA_E_CONFIG, "role %d grants nothing; remove the entry",
				  (int)role);
	rpc_fingerprint_format(fp, hex);
	/* A second line for the same certificate is ambiguous whatever roles it names. */
	if (table_find(t, fp) != NULL)
		return p11ca_fail(em, P11CA_E_CONFIG, "certificate %s is listed twice", hex);
	if (t->n == RPC_ROLE_TABLE_MAX)
		return p11ca_fail(em, P11CA_E_CONFIG, "more than %d role entries",
				  RPC_ROLE_TABLE_MAX);
	if (t->n == t->cap) {
		size_t ncap = t->cap == 0 ? 16 : 2 * t->cap;
		if (ncap > RPC_ROLE_TABLE_MAX)
			ncap = RPC_ROLE_TABLE_MAX;
		struct role_entry *nv = reallocarray(t->v, ncap, sizeof(*nv));
		if (nv == NULL)
			return p11ca_fail(em, P11CA_E_NOMEM, "out of memory for the role table");
		t->v = nv;
		t->cap = ncap;
	}
	memcpy(t->v[t->n].fp, fp, RPC_FINGERPRINT_LEN);
	t->v[t->n].role = role;
	t->n++;
	return P11CA_OK;
}

enum p11ca_err rpc_role_table_add_entry(struct rpc_role_table *t, const char *fingerprint,
					const char *role, struct p11ca_errmsg *em)
{
	uint8_t fp[RPC_FINGERPRINT_LEN];
	enum rpc_role r;
	P11CA_GUARD(rpc_fingerprint_parse(fingerprint, fp, em));
	P11CA_GUARD(rpc_role_parse(role, &r, em));
	return rpc_role_table_add(t, fp, r, em);
}

enum token { TOKEN_NONE, TOKEN_OK, TOKEN_TOO_LONG };

/* Copy the next blank-separated token of line[*pos..len) into out (NUL-terminated). */
static enum token next_token(const char *line, size_t len, size_t *pos, char *out, size_t out_size)
{
	size_t i = *pos, n = 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
		i++;
	if (i == len)
		return TOKEN_NONE;
	while (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') {
		if (n + 1 == out_size)
			return TOKEN_TOO_LONG;
		out[n++] = line[i++];
	}
	out[n] = '\0';
	*pos = i;
	return TOKEN_OK;
}

P11CA_MUST_CHECK static enum p11ca_err parse_line(struct rpc_role_table *t, const char *line,
						  size_t len, struct p11ca_errmsg *em)
{
	char fp[128], role[32], extra[2];
	size_t pos = 0;

	const char *hash = memchr(line, '#', len);
	if (hash != NULL)
		len = (size_t)(hash - line);
	enum token a = next_token(line, len, &pos, fp, sizeof(fp));
	if (a == TOKEN_NONE)
		return P11CA_OK; /* blank or comment */
	enum token b = a == TOKEN_OK ? next_token(line, len, &pos, role, sizeof(role)) : a;
	if (b != TOKEN_OK || next_token(line, len, &pos, extra, sizeof(extra)) != TOKEN_NONE)
		return p11ca_fail(em, P11CA_E_CONFIG, "expected '<sha256 fingerprint> <role>'");
	return rpc_role_table_add_entry(t, fp, role, em);
}

enum p11ca_err rpc_role_table_parse(struct rpc_role_table *t, const char *text, size_t len,
				    const char *source, struct p11ca_errmsg *em)
{
	if (t == NULL || (text == NULL && len != 0))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "rpc_role_table_parse: bad arguments");
	size_t before = t->n;
	unsigned lineno = 0;
	size_t start = 0;
	while (start < len) {
		const char *nl = memchr(text + start, '\n', len - start);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;
		struct p11ca_errmsg line_em = {0};
		lineno++;
		enum p11ca_err err = parse_line(t, text + start, end - start, &line_em);
		if (err != P11CA_OK) {
			t->n = before; /* all or nothing */
			return p11ca_fail(em, err, "%s:%u: %s", source != NULL ? source : "roles",
					  lineno, p11ca_errmsg_text(&line_em));
		}
		start = end + 1;
	}
	return P11CA_OK;
}

enum rpc_role rpc_role_table_lookup(const struct rpc_role_table *t,
				    const uint8_t fp[RPC_FINGERPRINT_LEN])
{
	if (t == NULL || fp == NULL)
		return RPC_ROLE_NONE;
	const struct role_entry *e = table_find(t, fp);
	return e != NULL ? e->role : RPC_ROLE_NONE;
}

size_t rpc_role_table_count(const struct rpc_role_table *t)
{
	return t == NULL ? 0 : t->n;
}
