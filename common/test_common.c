/* Unit tests for common/: the error space, error messages and locked secrets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/err.h"
#include "common/kconfig.h"
#include "common/secret.h"

static void test_strerror_and_names(void **state)
{
	(void)state;
	assert_string_equal(p11ca_strerror(P11CA_E_HSM_BUSY), "HSM busy");
	assert_string_equal(p11ca_err_name(P11CA_E_HSM_PIN_LOCKED), "P11CA_E_HSM_PIN_LOCKED");
	assert_string_equal(p11ca_strerror((enum p11ca_err)12345), "unknown error");
	assert_string_equal(p11ca_err_name((enum p11ca_err)12345), "P11CA_E_UNKNOWN");
}

static void test_categories(void **state)
{
	(void)state;
	assert_int_equal(p11ca_err_category(P11CA_OK), P11CA_CAT_OK);
	assert_int_equal(p11ca_err_category(P11CA_E_URI), P11CA_CAT_USAGE);
	assert_int_equal(p11ca_err_category(P11CA_E_PIN_SOURCE), P11CA_CAT_CONFIG);
	assert_int_equal(p11ca_err_category(P11CA_E_HSM_KEY_EXISTS), P11CA_CAT_HSM);
	assert_int_equal(p11ca_err_category(P11CA_E_STORAGE_FULL), P11CA_CAT_STORAGE);
	assert_int_equal(p11ca_err_category(P11CA_E_PROTO_TRUNCATED), P11CA_CAT_PROTO);
	assert_int_equal(p11ca_err_category(P11CA_E_TIMEOUT), P11CA_CAT_IO);
	assert_int_equal(p11ca_err_category(P11CA_E_NOMEM), P11CA_CAT_INTERNAL);
	assert_int_equal(p11ca_err_category((enum p11ca_err)7), P11CA_CAT_INTERNAL);
}

static void test_sysexits(void **state)
{
	(void)state;
	assert_int_equal(p11ca_err_sysexit(P11CA_OK), 0);
	assert_int_equal(p11ca_err_sysexit(P11CA_E_INVALID_ARG), 64);
	assert_int_equal(p11ca_err_sysexit(P11CA_E_HSM_KEY_NOT_FOUND), 65);
	assert_int_equal(p11ca_err_sysexit(P11CA_E_HSM_UNAVAILABLE), 69);
	assert_int_equal(p11ca_err_sysexit(P11CA_E_NOMEM), 70);
	assert_int_equal(p11ca_err_sysexit(P11CA_E_STORAGE_IO), 74);
	assert_int_equal(p11ca_err_sysexit(P11CA_E_HSM_BUSY), 75);
	assert_int_equal(p11ca_err_sysexit(P11CA_E_HSM_PIN_INCORRECT), 77);
	assert_int_equal(p11ca_err_sysexit(P11CA_E_PERMISSION), 77);
	assert_int_equal(p11ca_err_sysexit(P11CA_E_PIN_SOURCE), 78);
	assert_int_equal(p11ca_err_sysexit(P11CA_E_HSM_TOKEN_NOT_FOUND), 78);
	assert_int_equal(p11ca_err_sysexit((enum p11ca_err)12345), 70);
}

static void test_fail_first_message_sticks(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	assert_int_equal(p11ca_fail(&em, P11CA_E_HSM_BUSY, "all %u sessions busy", 4u),
			 P11CA_E_HSM_BUSY);
	assert_string_equal(p11ca_errmsg_text(&em), "all 4 sessions busy");
	/* An outer layer's vaguer context must not overwrite the precise cause. */
	assert_int_equal(p11ca_fail(&em, P11CA_E_HSM, "signing failed"), P11CA_E_HSM);
	assert_string_equal(p11ca_errmsg_text(&em), "all 4 sessions busy");
	assert_int_equal(em.code, P11CA_E_HSM_BUSY);

	p11ca_errmsg_clear(&em);
	assert_int_equal(em.code, P11CA_OK);
	assert_string_equal(p11ca_errmsg_text(&em), "success");
	/* NULL em is allowed: the code still comes back. */
	assert_int_equal(p11ca_fail(NULL, P11CA_E_IO, "x"), P11CA_E_IO);
	assert_string_equal(p11ca_errmsg_text(NULL), "unknown error");
}

static void test_fail_truncates_long_text(void **state)
{
	(void)state;
	struct p11ca_errmsg em = {0};
	char big[1000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	(void)p11ca_fail(&em, P11CA_E_INVALID_ARG, "%s", big);
	assert_int_equal(strlen(em.text), sizeof(em.text) - 1);
}

static enum p11ca_err guard_helper(enum p11ca_err first, int *reached)
{
	P11CA_GUARD(first);
	*reached = 1;
	return P11CA_OK;
}

static void test_guard_returns_early(void **state)
{
	(void)state;
	int reached = 0;
	assert_int_equal(guard_helper(P11CA_E_IO, &reached), P11CA_E_IO);
	assert_int_equal(reached, 0);
	assert_int_equal(guard_helper(P11CA_OK, &reached), P11CA_OK);
	assert_int_equal(reached, 1);
}

static void test_secret_roundtrip_and_wipe(void **state)
{
	(void)state;
	struct p11ca_secret *s = NULL;
	struct p11ca_errmsg em = {0};
	assert_int_equal(p11ca_secret_new(64, &s, &em), P11CA_OK);
	assert_non_null(s);
	assert_int_equal(p11ca_secret_capacity(s), 64);
	assert_int_equal(p11ca_secret_set(s, "1234", 4, &em), P11CA_OK);
	assert_int_equal(p11ca_secret_len(s), 4);
	assert_memory_equal(p11ca_secret_data(s), "1234", 4);

	const uint8_t *bytes = p11ca_secret_data(s);
	p11ca_secret_wipe(s);
	assert_int_equal(p11ca_secret_len(s), 0);
	for (size_t i = 0; i < 64; i++)
		assert_int_equal(bytes[i], 0);

	p11ca_secret_free(&s);
	assert_null(s);
	p11ca_secret_free(&s); /* NULL-safe */
	p11ca_secret_free(NULL);
}

static void test_secret_refuses_oversize(void **state)
{
	(void)state;
	struct p11ca_secret *s = NULL;
	struct p11ca_errmsg em = {0};
	assert_int_equal(p11ca_secret_new(0, &s, &em), P11CA_E_INVALID_ARG);
	assert_null(s);
	assert_int_equal(p11ca_secret_new(65537, &s, NULL), P11CA_E_INVALID_ARG);

	assert_int_equal(p11ca_secret_new(4, &s, &em), P11CA_OK);
	assert_int_equal(p11ca_secret_set(s, "ab", 2, &em), P11CA_OK);
	p11ca_errmsg_clear(&em);
	/* Too long: refused and left empty, never silently truncated. */
	assert_int_equal(p11ca_secret_set(s, "abcdef", 6, &em), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_secret_len(s), 0);
	assert_non_null(strstr(em.text, "6-byte") == NULL ? strstr(em.text, "6 bytes") : em.text);
	p11ca_secret_set_len(s, 100); /* clamped to capacity */
	assert_int_equal(p11ca_secret_len(s), 4);
	p11ca_secret_free(&s);
}

static void test_is_enabled(void **state)
{
	(void)state;
	/* CONFIG_P11FAULT is =y in configs/defconfig; an undefined symbol is 0. */
	assert_int_equal(IS_ENABLED(CONFIG_P11FAULT), 1);
	assert_int_equal(IS_ENABLED(CONFIG_P11CA_NO_SUCH_SYMBOL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strerror_and_names),
		cmocka_unit_test(test_categories),
		cmocka_unit_test(test_sysexits),
		cmocka_unit_test(test_fail_first_message_sticks),
		cmocka_unit_test(test_fail_truncates_long_text),
		cmocka_unit_test(test_guard_returns_early),
		cmocka_unit_test(test_secret_roundtrip_and_wipe),
		cmocka_unit_test(test_secret_refuses_oversize),
		cmocka_unit_test(test_is_enabled),
	};
	return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
