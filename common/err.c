#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* One table drives both names and descriptions, so they cannot drift apart. */
static const struct {
	enum p11ca_err code;
	const char *name;
	const char *text;
} err_table[] = {
#define E(code, text)                                                                              \
	{                                                                                          \
		code, #code, text                                                                  \
	}
	E(P11CA_OK, "success"),
	E(P11CA_E_USAGE, "invalid usage"),
	E(P11CA_E_INVALID_ARG, "invalid argument"),
	E(P11CA_E_URI, "invalid PKCS#11 URI"),
	E(P11CA_E_CONFIG, "configuration error"),
	E(P11CA_E_PIN_SOURCE, "PIN source unusable"),
	E(P11CA_E_POLICY, "refused by policy"),
	E(P11CA_E_PERMISSION, "permission denied"),
	E(P11CA_E_HSM, "HSM error"),
	E(P11CA_E_HSM_MODULE, "PKCS#11 module cannot be loaded or initialised"),
	E(P11CA_E_HSM_TOKEN_NOT_FOUND, "HSM token not found"),
	E(P11CA_E_HSM_TOKEN_AMBIGUOUS, "more than one HSM token matches"),
	E(P11CA_E_HSM_UNAVAILABLE, "HSM unavailable"),
	E(P11CA_E_HSM_BUSY, "HSM busy"),
	E(P11CA_E_HSM_NO_PIN, "HSM token not activated (no PIN)"),
	E(P11CA_E_HSM_PIN_INCORRECT, "HSM PIN incorrect"),
	E(P11CA_E_HSM_PIN_FINAL_TRY, "HSM PIN on its final try"),
	E(P11CA_E_HSM_PIN_LOCKED, "HSM PIN locked"),
	E(P11CA_E_HSM_KEY_NOT_FOUND, "HSM key not found"),
	E(P11CA_E_HSM_KEY_AMBIGUOUS, "HSM key lookup is ambiguous"),
	E(P11CA_E_HSM_KEY_EXISTS, "HSM key label or id already in use"),
	E(P11CA_E_HSM_MECHANISM, "HSM mechanism unsupported or mismatched"),
	E(P11CA_E_HSM_BAD_SIGNATURE, "HSM produced an invalid signature"),
	E(P11CA_E_STORAGE, "storage error"),
	E(P11CA_E_STORAGE_FULL, "storage full"),
	E(P11CA_E_STORAGE_IO, "storage I/O error"),
	E(P11CA_E_STORAGE_CORRUPT, "storage corrupt"),
	E(P11CA_E_STORAGE_NOT_FOUND, "not found"),
	E(P11CA_E_STORAGE_EXISTS, "already exists"),
	E(P11CA_E_STORAGE_VERSION, "storage schema version mismatch"),
	E(P11CA_E_PROTO, "protocol error"),
	E(P11CA_E_PROTO_TOO_LARGE, "message too large"),
	E(P11CA_E_PROTO_TRUNCATED, "message truncated"),
	E(P11CA_E_PROTO_DECODE, "malformed message"),
	E(P11CA_E_IO, "I/O error"),
	E(P11CA_E_TIMEOUT, "timed out"),
	E(P11CA_E_INTERNAL, "internal error"),
	E(P11CA_E_NOMEM, "out of memory"),
#undef E
};

static int err_index(enum p11ca_err err)
{
	for (size_t i = 0; i < sizeof(err_table) / sizeof(err_table[0]); i++)
		if (err_table[i].code == err)
			return (int)i;
	return -1;
}

const char *p11ca_strerror(enum p11ca_err err)
{
	int i = err_index(err);
	return i < 0 ? "unknown error" : err_table[i].text;
}

const char *p11ca_err_name(enum p11ca_err err)
{
	int i = err_index(err);
	return i < 0 ? "P11CA_E_UNKNOWN" : err_table[i].name;
}

enum p11ca_err_category p11ca_err_category(enum p11ca_err err)
{
	switch ((int)err / 100) {
	case 0:
		return err == P11CA_OK ? P11CA_CAT_OK : P11CA_CAT_INTERNAL;
	case 1:
		return P11CA_CAT_USAGE;
	case 2:
		return P11CA_CAT_CONFIG;
	case 3:
		return P11CA_CAT_POLICY;
	case 4:
		return P11CA_CAT_HSM;
	case 5:
		return P11CA_CAT_STORAGE;
	case 6:
		return P11CA_CAT_PROTO;
	case 7:
		return P11CA_CAT_IO;
	default:
		return P11CA_CAT_INTERNAL;
	}
}

int p11ca_err_sysexit(enum p11ca_err err)
{
	switch (err) {
	case P11CA_OK:
		return 0;
	case P11CA_E_HSM_BUSY:
	case P11CA_E_TIMEOUT:
		return 75; /* EX_TEMPFAIL: try again later */
	case P11CA_E_HSM_NO_PIN:
	case P11CA_E_HSM_PIN_INCORRECT:
	case P11CA_E_HSM_PIN_FINAL_TRY:
	case P11CA_E_HSM_PIN_LOCKED:
		return 77; /* EX_NOPERM */
	case P11CA_E_HSM_MODULE:
	case P11CA_E_HSM_TOKEN_NOT_FOUND:
	case P11CA_E_HSM_TOKEN_AMBIGUOUS:
		return 78; /* EX_CONFIG: the configuration names something that is not there */
	case P11CA_E_HSM_UNAVAILABLE:
		return 69; /* EX_UNAVAILABLE */
	default:
		break;
	}
	switch (p11ca_err_category(err)) {
	case P11CA_CAT_USAGE:
		return 64;
	case P11CA_CAT_CONFIG:
		return 78;
	case P11CA_CAT_POLICY:
		return 77;
	case P11CA_CAT_HSM:
	case P11CA_CAT_PROTO:
		return 65; /* EX_DATAERR: the key, algorithm or message is wrong */
	case P11CA_CAT_STORAGE:
		return err == P11CA_E_STORAGE_NOT_FOUND || err == P11CA_E_STORAGE_EXISTS ? 65 : 74;
	case P11CA_CAT_IO:
		return 74;
	default:
		return 70; /* EX_SOFTWARE */
	}
}

enum p11ca_err p11ca_fail(struct p11ca_errmsg *em, enum p11ca_err code, const char *fmt, ...)
{
	if (em == NULL || em->text[0] != '\0')
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(em->text, sizeof(em->text), fmt, ap);
	va_end(ap);
	em->code = code;
	return code;
}

void p11ca_errmsg_clear(struct p11ca_errmsg *em)
{
	if (em == NULL)
		return;
	em->code = P11CA_OK;
	em->text[0] = '\0';
}

const char *p11ca_errmsg_text(const struct p11ca_errmsg *em)
{
	if (em == NULL)
		return "unknown error";
	return em->text[0] != '\0' ? em->text : p11ca_strerror(em->code);
}
