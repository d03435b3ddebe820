/*
 * p11ca_err → public StatusCode: one table, so every handler answers the same failure the
 * same way. Codes not listed fall back on their category.
 */
#include <stdio.h>

#include "appliance/engine/engine_internal.h"

#define S(x) p11ca_v1_StatusCode_STATUS_CODE_##x

static const struct {
	enum p11ca_err err;
	p11ca_v1_StatusCode code;
} status_table[] = {
	{P11CA_OK, S(OK)},
	{P11CA_E_INVALID_ARG, S(INVALID_ARGUMENT)},
	{P11CA_E_URI, S(INVALID_ARGUMENT)},
	{P11CA_E_PIN_SOURCE, S(FAILED_PRECONDITION)},
	{P11CA_E_PERMISSION, S(PERMISSION_DENIED)},
	{P11CA_E_HSM_MODULE, S(UNAVAILABLE)},
	{P11CA_E_HSM_TOKEN_NOT_FOUND, S(UNAVAILABLE)},
	{P11CA_E_HSM_TOKEN_AMBIGUOUS, S(FAILED_PRECONDITION)},
	{P11CA_E_HSM_UNAVAILABLE, S(UNAVAILABLE)},
	{P11CA_E_HSM_BUSY, S(UNAVAILABLE)},
	/* The token state forbids it until an admin acts (hsm activate, a new PIN). */
	{P11CA_E_HSM_NO_PIN, S(FAILED_PRECONDITION)},
	{P11CA_E_HSM_PIN_INCORRECT, S(FAILED_PRECONDITION)},
	{P11CA_E_HSM_PIN_FINAL_TRY, S(FAILED_PRECONDITION)},
	{P11CA_E_HSM_PIN_LOCKED, S(FAILED_PRECONDITION)},
	{P11CA_E_HSM_KEY_NOT_FOUND, S(FAILED_PRECONDITION)},
	{P11CA_E_HSM_KEY_AMBIGUOUS, S(FAILED_PRECONDITION)},
	{P11CA_E_HSM_KEY_EXISTS, S(ALREADY_EXISTS)},
	{P11CA_E_HSM_MECHANISM, S(INVALID_ARGUMENT)},
	{P11CA_E_HSM_BAD_SIGNATURE, S(INTERNAL)},
	{P11CA_E_STORAGE_FULL, S(RESOURCE_EXHAUSTED)},
	{P11CA_E_STORAGE_IO, S(UNAVAILABLE)},
	{P11CA_E_STORAGE_CORRUPT, S(INTERNAL)},
	{P11CA_E_STORAGE_NOT_FOUND, S(NOT_FOUND)},
	{P11CA_E_STORAGE_EXISTS, S(ALREADY_EXISTS)},
	{P11CA_E_STORAGE_VERSION, S(INTERNAL)},
	{P11CA_E_PROTO_TOO_LARGE, S(RESOURCE_EXHAUSTED)},
	{P11CA_E_IO, S(UNAVAILABLE)},
	{P11CA_E_TIMEOUT, S(DEADLINE_EXCEEDED)},
	{P11CA_E_NOMEM, S(RESOURCE_EXHAUSTED)},
};

static const p11ca_v1_StatusCode category_code[] = {
	[P11CA_CAT_OK] = S(OK),
	[P11CA_CAT_USAGE] = S(INVALID_ARGUMENT),
	[P11CA_CAT_CONFIG] = S(FAILED_PRECONDITION),
	[P11CA_CAT_POLICY] = S(FAILED_PRECONDITION),
	[P11CA_CAT_HSM] = S(UNAVAILABLE),
	[P11CA_CAT_STORAGE] = S(INTERNAL),
	[P11CA_CAT_PROTO] = S(INTERNAL),
	[P11CA_CAT_IO] = S(UNAVAILABLE),
	[P11CA_CAT_INTERNAL] = S(INTERNAL),
};

p11ca_v1_StatusCode engine_status_code(enum p11ca_err err)
{
	for (size_t i = 0; i < sizeof(status_table) / sizeof(status_table[0]); i++)
		if (status_table[i].err == err)
			return status_table[i].code;
	enum p11ca_err_category cat = p11ca_err_category(err);
	if ((size_t)cat < sizeof(category_code) / sizeof(category_code[0]) &&
	    category_code[cat] != S(UNSPECIFIED))
		return category_code[cat];
	return S(INTERNAL);
}

void engine_status_fill(p11ca_v1_Status *st, enum p11ca_err err, const struct p11ca_errmsg *em)
{
	st->code = engine_status_code(err);
	const char *text = err == P11CA_OK ? "" : p11ca_strerror(err);
	if (err != P11CA_OK && em != NULL && em->text[0] != '\0')
		text = em->text;
	snprintf(st->message, sizeof(st->message), "%s", text);
}
