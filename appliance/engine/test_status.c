/* status.c: every p11ca_err maps to the public code a client can act on, with its text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "appliance/engine/engine_internal.h"

#define S(x) p11ca_v1_StatusCode_STATUS_CODE_##x

static void test_table(void **state)
{
	(void)state;
	static const struct {
		enum p11ca_err err;
		p11ca_v1_StatusCode code;
	} cases[] = {
		{P11CA_OK, S(OK)},
		{P11CA_E_INVALID_ARG, S(INVALID_ARGUMENT)},
		{P11CA_E_USAGE, S(INVALID_ARGUMENT)},
		{P11CA_E_PERMISSION, S(PERMISSION_DENIED)},
		{P11CA_E_POLICY, S(FAILED_PRECONDITION)},
		{P11CA_E_HSM_NO_PIN, S(FAILED_PRECONDITION)},
		{P11CA_E_HSM_PIN_LOCKED, S(FAILED_PRECONDITION)},
		{P11CA_E_HSM_BUSY, S(UNAVAILABLE)},
		{P11CA_E_HSM_KEY_EXISTS, S(ALREADY_EXISTS)},
		{P11CA_E_HSM_BAD_SIGNATURE, S(INTERNAL)},
		{P11CA_E_STORAGE_FULL, S(RESOURCE_EXHAUSTED)},
		{P11CA_E_STORAGE_IO, S(UNAVAILABLE)},
		{P11CA_E_STORAGE_NOT_FOUND, S(NOT_FOUND)},
		{P11CA_E_STORAGE_EXISTS, S(ALREADY_EXISTS)},
		{P11CA_E_STORAGE_CORRUPT, S(INTERNAL)},
		{P11CA_E_PROTO_TOO_LARGE, S(RESOURCE_EXHAUSTED)},
		{P11CA_E_TIMEOUT, S(DEADLINE_EXCEEDED)},
		{P11CA_E_IO, S(UNAVAILABLE)},
		{P11CA_E_NOMEM, S(RESOURCE_EXHAUSTED)},
		{P11CA_E_INTERNAL, S(INTERNAL)},
		{P11CA_E_CONFIG, S(FAILED_PRECONDITION)},
		{P11CA_E_HSM, S(UNAVAILABLE)},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (engine_status_code(cases[i].err) != cases[i].code)
			fail_msg("%s: got %d, want %d", p11ca_err_name(cases[i].err),
				 (int)engine_status_code(cases[i].err), (int)cases[i].code);
	}
}

/* Codes nobody listed still give a defined, non-OK answer. */
static void test_unknown_code(void **state)
{
	(void)state;
	assert_int_equal(engine_status_code((enum p11ca_err)12345), S(INTERNAL));
	assert_int_equal(engine_status_code((enum p11ca_err)(P11CA_E_STORAGE + 50)), S(INTERNAL));
	assert_int_equal(engine_status_code((enum p11ca_err)(P11CA_E_HSM + 60)), S(UNAVAILABLE));
}

static void test_fill(void **state)
{
	(void)state;
	p11ca_v1_Status st;
	struct p11ca_errmsg em = {0};
	(void)p11ca_fail(&em, P11CA_E_STORAGE_FULL, "the database is full: raise map_size_mb");
	engine_status_fill(&st, P11CA_E_STORAGE_FULL, &em);
	assert_int_equal(st.code, S(RESOURCE_EXHAUSTED));
	assert_string_equal(st.message, "the database is full: raise map_size_mb");

	/* No sentence recorded: the code's description, never an empty message. */
	engine_status_fill(&st, P11CA_E_HSM_BUSY, NULL);
	assert_int_equal(st.code, S(UNAVAILABLE));
	assert_string_equal(st.message, p11ca_strerror(P11CA_E_HSM_BUSY));

	engine_status_fill(&st, P11CA_OK, &em);
	assert_int_equal(st.code, S(OK));
	assert_string_equal(st.message, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_unknown_code),
		cmocka_unit_test(test_fill),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
