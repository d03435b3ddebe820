/* Unit tests for common/buf: it cannot be over-filled or over-read, whatever the length,
 * and every function refuses its misuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/buf.h"

static void test_new_refuses_bad_sizes(void **state)
{
	(void)state;
	struct p11ca_buf *b = (struct p11ca_buf *)&b; /* must be reset to NULL on failure */
	assert_int_equal(p11ca_buf_new(0, 0, &b), P11CA_E_INVALID_ARG);
	assert_null(b);
	assert_int_equal(p11ca_buf_new(P11CA_BUF_SIZE_MAX + 1, 0, &b), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_new(SIZE_MAX, 0, &b), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_new(16, 0x80, &b), P11CA_E_INVALID_ARG); /* unknown flag */
	assert_int_equal(p11ca_buf_new(16, 0, NULL), P11CA_E_INVALID_ARG);
	assert_null(b);

	assert_int_equal(p11ca_buf_new(P11CA_BUF_SIZE_MAX, 0, &b), P11CA_OK);
	/* Nothing allocated yet: the cap is a promise, not a reservation. */
	assert_null(p11ca_buf_ptr(b));
	assert_int_equal(p11ca_buf_max(b), P11CA_BUF_SIZE_MAX);
	p11ca_buf_free(&b);
	assert_null(b);
	p11ca_buf_free(&b); /* NULL-safe */
	p11ca_buf_free(NULL);
}

static void test_integers_are_big_endian(void **state)
{
	(void)state;
	struct p11ca_buf *b = NULL;
	assert_int_equal(p11ca_buf_new(64, 0, &b), P11CA_OK);
	assert_int_equal(p11ca_buf_put_u8(b, 0x01), P11CA_OK);
	assert_int_equal(p11ca_buf_put_u16(b, 0x0203), P11CA_OK);
	assert_int_equal(p11ca_buf_put_u32(b, 0x04050607), P11CA_OK);
	assert_int_equal(p11ca_buf_put_u64(b, 0x08090a0b0c0d0e0fULL), P11CA_OK);
	assert_int_equal(p11ca_buf_put(b, "\x10\x11", 2), P11CA_OK);
	assert_int_equal(p11ca_buf_len(b), 17);
	assert_int_equal(p11ca_buf_avail(b), 64 - 17);
	const uint8_t want[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
	assert_memory_equal(p11ca_buf_ptr(b), want, sizeof(want));

	uint8_t u8 = 0;
	uint16_t u16 = 0;
	uint32_t u32 = 0;
	uint64_t u64 = 0;
	uint8_t tail[2];
	assert_int_equal(p11ca_buf_get_u8(b, &u8), P11CA_OK);
	assert_int_equal(p11ca_buf_get_u16(b, &u16), P11CA_OK);
	assert_int_equal(p11ca_buf_get_u32(b, &u32), P11CA_OK);
	assert_int_equal(p11ca_buf_get_u64(b, &u64), P11CA_OK);
	assert_int_equal(p11ca_buf_get_bytes(b, tail, 2), P11CA_OK);
	assert_int_equal(u8, 0x01);
	assert_int_equal(u16, 0x0203);
	assert_int_equal(u32, 0x04050607);
	assert_true(u64 == 0x08090a0b0c0d0e0fULL);
	assert_memory_equal(tail, "\x10\x11", 2);
	assert_int_equal(p11ca_buf_len(b), 0);

	/* All bits set survive both ways. */
	assert_int_equal(p11ca_buf_put_u64(b, UINT64_MAX), P11CA_OK);
	assert_int_equal(p11ca_buf_get_u64(b, &u64), P11CA_OK);
	assert_true(u64 == UINT64_MAX);
	p11ca_buf_free(&b);
}

static void test_cannot_overfill(void **state)
{
	(void)state;
	struct p11ca_buf *b = NULL;
	uint8_t *p = (uint8_t *)"sentinel";
	assert_int_equal(p11ca_buf_new(10, 0, &b), P11CA_OK);
	assert_int_equal(p11ca_buf_put_u64(b, 1), P11CA_OK);
	/* 2 bytes left: every wider write fails and writes nothing. */
	assert_int_equal(p11ca_buf_put_u32(b, 2), P11CA_E_PROTO_TOO_LARGE);
	assert_int_equal(p11ca_buf_put_u64(b, 2), P11CA_E_PROTO_TOO_LARGE);
	assert_int_equal(p11ca_buf_put(b, "abc", 3), P11CA_E_PROTO_TOO_LARGE);
	assert_int_equal(p11ca_buf_reserve(b, 3, &p), P11CA_E_PROTO_TOO_LARGE);
	assert_string_equal((const char *)p, "sentinel"); /* output untouched on failure */
	assert_int_equal(p11ca_buf_len(b), 8);

	/* Lengths chosen to wrap `pos + len` if anyone ever wrote the check that way. */
	static const size_t huge[] = {SIZE_MAX,		SIZE_MAX - 1,	    SIZE_MAX - 7,
				      SIZE_MAX / 2 + 1, P11CA_BUF_SIZE_MAX, 3};
	for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
		assert_int_equal(p11ca_buf_put(b, "x", huge[i]), P11CA_E_PROTO_TOO_LARGE);
		assert_int_equal(p11ca_buf_reserve(b, huge[i], &p), P11CA_E_PROTO_TOO_LARGE);
	}
	assert_int_equal(p11ca_buf_len(b), 8);
	assert_int_equal(p11ca_buf_avail(b), 2);

	/* Exactly full is fine; one more byte is not. */
	assert_int_equal(p11ca_buf_put_u16(b, 0xabcd), P11CA_OK);
	assert_int_equal(p11ca_buf_avail(b), 0);
	assert_int_equal(p11ca_buf_put_u8(b, 0), P11CA_E_PROTO_TOO_LARGE);
	assert_int_equal(p11ca_buf_put(b, NULL, 0), P11CA_OK); /* an empty write always fits */

	/* Reading does not make room; reset does. */
	assert_int_equal(p11ca_buf_consume(b, 10), P11CA_OK);
	assert_int_equal(p11ca_buf_put_u8(b, 0), P11CA_E_PROTO_TOO_LARGE);
	assert_int_equal(p11ca_buf_reset(b), P11CA_OK);
	assert_int_equal(p11ca_buf_avail(b), 10);
	p11ca_buf_free(&b);
}

static void test_cannot_overread(void **state)
{
	(void)state;
	struct p11ca_buf *b = NULL;
	assert_int_equal(p11ca_buf_new(16, 0, &b), P11CA_OK);
	assert_int_equal(p11ca_buf_put(b, "\xaa\xbb\xcc", 3), P11CA_OK);

	uint16_t u16 = 7;
	uint32_t u32 = 7;
	uint64_t u64 = 7;
	uint8_t u8 = 7, dst[4] = {7, 7, 7, 7};
	assert_int_equal(p11ca_buf_get_u32(b, &u32), P11CA_E_PROTO_TRUNCATED);
	assert_int_equal(p11ca_buf_get_u64(b, &u64), P11CA_E_PROTO_TRUNCATED);
	assert_int_equal(p11ca_buf_get_bytes(b, dst, 4), P11CA_E_PROTO_TRUNCATED);
	assert_int_equal(u32, 7);
	assert_true(u64 == 7);
	assert_memory_equal(dst, "\x07\x07\x07\x07", 4);
	static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 2, SIZE_MAX / 2 + 1, 4};
	for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
		assert_int_equal(p11ca_buf_need(b, huge[i]), P11CA_E_PROTO_TRUNCATED);
		assert_int_equal(p11ca_buf_consume(b, huge[i]), P11CA_E_PROTO_TRUNCATED);
		assert_int_equal(p11ca_buf_get_bytes(b, dst, huge[i]), P11CA_E_PROTO_TRUNCATED);
	}
	/* Nothing was consumed by any failure. */
	assert_int_equal(p11ca_buf_len(b), 3);
	assert_int_equal(p11ca_buf_need(b, 3), P11CA_OK);
	assert_int_equal(p11ca_buf_get_u16(b, &u16), P11CA_OK);
	assert_int_equal(u16, 0xaabb);
	assert_int_equal(p11ca_buf_get_u16(b, &u16), P11CA_E_PROTO_TRUNCATED);
	assert_int_equal(p11ca_buf_get_u8(b, &u8), P11CA_OK);
	assert_int_equal(u8, 0xcc);
	assert_int_equal(p11ca_buf_get_u8(b, &u8), P11CA_E_PROTO_TRUNCATED);
	assert_int_equal(p11ca_buf_consume(b, 1), P11CA_E_PROTO_TRUNCATED);
	assert_int_equal(p11ca_buf_consume(b, 0), P11CA_OK);

	/* Rewind reads everything again. */
	assert_int_equal(p11ca_buf_rewind(b), P11CA_OK);
	assert_int_equal(p11ca_buf_len(b), 3);
	p11ca_buf_free(&b);
}

static void test_grows_up_to_max(void **state)
{
	(void)state;
	struct p11ca_buf *b = NULL;
	const size_t max = 70001; /* not a power of two: the last growth step is clamped */
	assert_int_equal(p11ca_buf_new(max, P11CA_BUF_WIPE, &b), P11CA_OK);
	for (size_t i = 0; i < max; i++)
		assert_int_equal(p11ca_buf_put_u8(b, (uint8_t)i), P11CA_OK);
	assert_int_equal(p11ca_buf_put_u8(b, 0), P11CA_E_PROTO_TOO_LARGE);
	assert_int_equal(p11ca_buf_len(b), max);
	const uint8_t *p = p11ca_buf_ptr(b);
	for (size_t i = 0; i < max; i++)
		assert_int_equal(p[i], (uint8_t)i);

	/* Reset keeps the storage and wipes it. */
	assert_int_equal(p11ca_buf_reset(b), P11CA_OK);
	for (size_t i = 0; i < max; i++)
		assert_int_equal(p[i], 0);
	assert_int_equal(p11ca_buf_len(b), 0);
	p11ca_buf_free(&b);
}

static void test_reserve_writes_in_place(void **state)
{
	(void)state;
	struct p11ca_buf *b = NULL;
	uint8_t *p = NULL;
	assert_int_equal(p11ca_buf_new(32, 0, &b), P11CA_OK);
	assert_int_equal(p11ca_buf_put_u32(b, 5), P11CA_OK);
	assert_int_equal(p11ca_buf_reserve(b, 5, &p), P11CA_OK);
	assert_non_null(p);
	assert_memory_equal(p, "\0\0\0\0\0", 5); /* zeroed, never stale heap */
	memcpy(p, "hello", 5);
	assert_int_equal(p11ca_buf_len(b), 9);
	uint32_t n = 0;
	char s[6] = {0};
	assert_int_equal(p11ca_buf_get_u32(b, &n), P11CA_OK);
	assert_int_equal(p11ca_buf_get_bytes(b, s, n), P11CA_OK);
	assert_string_equal(s, "hello");
	assert_int_equal(p11ca_buf_reserve(b, 0, &p), P11CA_OK);
	assert_int_equal(p11ca_buf_reserve(b, 1, NULL), P11CA_E_INVALID_ARG);
	p11ca_buf_free(&b);
}

static void test_const_view_is_read_only(void **state)
{
	(void)state;
	static const uint8_t data[] = {0, 0, 0, 2, 'h', 'i'};
	struct p11ca_buf *b = NULL;
	uint8_t *p = NULL;
	assert_int_equal(p11ca_buf_from_const(data, sizeof(data), &b), P11CA_OK);
	assert_int_equal(p11ca_buf_len(b), sizeof(data));
	assert_int_equal(p11ca_buf_avail(b), 0);
	assert_ptr_equal(p11ca_buf_ptr(b), data);
	assert_int_equal(p11ca_buf_put_u8(b, 1), P11CA_E_USAGE);
	assert_int_equal(p11ca_buf_put(b, "x", 1), P11CA_E_USAGE);
	assert_int_equal(p11ca_buf_reserve(b, 1, &p), P11CA_E_USAGE);
	assert_int_equal(p11ca_buf_reset(b), P11CA_E_USAGE);
	uint32_t n = 0;
	assert_int_equal(p11ca_buf_get_u32(b, &n), P11CA_OK);
	assert_int_equal(n, 2);
	assert_int_equal(p11ca_buf_consume(b, n), P11CA_OK);
	assert_int_equal(p11ca_buf_len(b), 0);
	assert_int_equal(p11ca_buf_rewind(b), P11CA_OK);
	assert_int_equal(p11ca_buf_len(b), sizeof(data));
	p11ca_buf_free(&b); /* must not free the borrowed bytes */
	assert_int_equal(data[4], 'h');

	assert_int_equal(p11ca_buf_from_const(NULL, 0, &b), P11CA_OK);
	assert_int_equal(p11ca_buf_len(b), 0);
	assert_null(p11ca_buf_ptr(b));
	assert_int_equal(p11ca_buf_need(b, 1), P11CA_E_PROTO_TRUNCATED);
	p11ca_buf_free(&b);

	assert_int_equal(p11ca_buf_from_const(NULL, 1, &b), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_from_const(data, SIZE_MAX, &b), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_from_const(data, P11CA_BUF_SIZE_MAX + 1, &b),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_from_const(data, 1, NULL), P11CA_E_INVALID_ARG);
	assert_null(b);
}

static void test_wrap_uses_caller_memory(void **state)
{
	(void)state;
	uint8_t mem[8];
	memset(mem, 0xee, sizeof(mem));
	struct p11ca_buf *b = NULL;
	assert_int_equal(p11ca_buf_wrap(mem, sizeof(mem), P11CA_BUF_WIPE, &b), P11CA_OK);
	assert_int_equal(p11ca_buf_put_u32(b, 0x01020304), P11CA_OK);
	assert_memory_equal(mem, "\x01\x02\x03\x04", 4);
	assert_int_equal(p11ca_buf_put_u32(b, 0), P11CA_OK);
	assert_int_equal(p11ca_buf_put_u8(b, 0), P11CA_E_PROTO_TOO_LARGE); /* never reallocates */
	memcpy(mem, "secret!!", 8);
	p11ca_buf_free(&b);
	for (size_t i = 0; i < sizeof(mem); i++)
		assert_int_equal(mem[i], 0); /* wiped on free */

	assert_int_equal(p11ca_buf_wrap(NULL, 8, 0, &b), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_wrap(mem, 0, 0, &b), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_wrap(mem, sizeof(mem), 0x40, &b), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_wrap(mem, sizeof(mem), 0, NULL), P11CA_E_INVALID_ARG);
	assert_null(b);
}

static void test_null_arguments(void **state)
{
	(void)state;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	uint8_t *p;
	assert_int_equal(p11ca_buf_reset(NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_rewind(NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_len(NULL), 0);
	assert_int_equal(p11ca_buf_avail(NULL), 0);
	assert_int_equal(p11ca_buf_max(NULL), 0);
	assert_null(p11ca_buf_ptr(NULL));
	assert_int_equal(p11ca_buf_need(NULL, 0), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_consume(NULL, 0), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_get_u8(NULL, &u8), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_get_u16(NULL, &u16), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_get_u32(NULL, &u32), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_get_u64(NULL, &u64), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_get_bytes(NULL, &u8, 1), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_put_u8(NULL, 0), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_put_u16(NULL, 0), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_put_u32(NULL, 0), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_put_u64(NULL, 0), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_put(NULL, "x", 1), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_reserve(NULL, 1, &p), P11CA_E_INVALID_ARG);

	/* A valid buffer with NULL outputs or sources. */
	struct p11ca_buf *b = NULL;
	assert_int_equal(p11ca_buf_new(16, 0, &b), P11CA_OK);
	assert_int_equal(p11ca_buf_put_u64(b, 0), P11CA_OK);
	assert_int_equal(p11ca_buf_get_u8(b, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_get_u16(b, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_get_u32(b, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_get_u64(b, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_get_bytes(b, NULL, 1), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_put(b, NULL, 1), P11CA_E_INVALID_ARG);
	assert_int_equal(p11ca_buf_len(b), 8); /* nothing consumed or added */
	p11ca_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_refuses_bad_sizes),
		cmocka_unit_test(test_integers_are_big_endian),
		cmocka_unit_test(test_cannot_overfill),
		cmocka_unit_test(test_cannot_overread),
		cmocka_unit_test(test_grows_up_to_max),
		cmocka_unit_test(test_reserve_writes_in_place),
		cmocka_unit_test(test_const_view_is_read_only),
		cmocka_unit_test(test_wrap_uses_caller_memory),
		cmocka_unit_test(test_null_arguments),
	};
	return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
