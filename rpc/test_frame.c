/*
 * Unit tests for rpc/frame: every operation of the contract survives an encode/decode
 * round trip with every field at its limit; a frame's length is judged before its body;
 * truncation, empty frames, garbage and trailing bytes are refused; one-byte-at-a-time
 * delivery works; one byte over any limit fails cleanly on both sides.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pb_common.h>

#include "common/kconfig.h"
#include "rpc/frame.h"

/* Bytes currently allocated on the heap, from whichever allocator is in charge. */
#if defined(__SANITIZE_ADDRESS__)
size_t __sanitizer_get_current_allocated_bytes(void);
#define heap_in_use() __sanitizer_get_current_allocated_bytes()
#else
#define heap_in_use() mallinfo2().uordblks
#endif

/* --- A filler driven by the generated descriptors ----------------------------------------
 * Sets every field to a non-default value at its limit: strings and bytes full, repeated
 * fields at max_count, has_ flags set. Adding a field to the .proto extends the tests. */
static void fill_fields(const pb_msgdesc_t *desc, void *msg, pb_size_t oneof_tag, unsigned seed);

static void fill_value(const pb_field_iter_t *it, void *p, unsigned seed)
{
	switch (PB_LTYPE(it->type)) {
	case PB_LTYPE_BOOL:
		*(bool *)p = true;
		break;
	case PB_LTYPE_VARINT: /* int64, or an enum (every enum has a value 1) */
		if (it->data_size == sizeof(int64_t))
			*(int64_t *)p = -1234567890123LL - (int64_t)seed;
		else
			*(int32_t *)p = 1;
		break;
	case PB_LTYPE_UVARINT:
		/* 32-bit: a uint32 or an enum without negative values (nanopb's UENUM). Both
		 * get 1, a member of every enum: nanopb's *_size bounds assume valid enums. */
		if (it->data_size == sizeof(uint64_t))
			*(uint64_t *)p = UINT64_MAX - seed;
		else
			*(uint32_t *)p = 1;
		break;
	case PB_LTYPE_STRING:
		memset(p, 'a' + (int)(seed % 26), it->data_size - 1);
		((char *)p)[it->data_size - 1] = '\0';
		break;
	case PB_LTYPE_BYTES: {
		pb_bytes_array_t *b = p;
		size_t cap = it->data_size - offsetof(pb_bytes_array_t, bytes);
		b->size = (pb_size_t)cap;
		for (size_t i = 0; i < cap; i++)
			b->bytes[i] = (uint8_t)(i * 7 + seed);
		break;
	}
	case PB_LTYPE_SUBMESSAGE:
		fill_fields(it->submsg_desc, p, 0, seed + 1);
		break;
	default:
		fail_msg("field %u: type %#x is new to the test filler", (unsigned)it->tag,
			 (unsigned)it->type);
	}
}

static void fill_fields(const pb_msgdesc_t *desc, void *msg, pb_size_t oneof_tag, unsigned seed)
{
	pb_field_iter_t it;
	if (!pb_field_iter_begin(&it, desc, msg))
		return; /* an empty message */
	do {
		pb_size_t n = 1;
		if (PB_HTYPE(it.type) == PB_HTYPE_ONEOF) {
			if (it.tag != oneof_tag)
				continue;
			*(pb_size_t *)it.pSize = it.tag;
		} else if (PB_HTYPE(it.type) == PB_HTYPE_OPTIONAL && it.pSize != NULL) {
			*(bool *)it.pSize = true;
		} else if (PB_HTYPE(it.type) == PB_HTYPE_REPEATED) {
			n = it.array_size;
			*(pb_size_t *)it.pSize = n;
		}
		for (pb_size_t i = 0; i < n; i++)
			fill_value(&it, (char *)it.pData + (size_t)i * it.data_size, seed + i);
	} while (pb_field_iter_next(&it));
}

/* The tags of the oneof members of a message (Request.op, Response.result). */
static size_t oneof_tags(const pb_msgdesc_t *desc, void *scratch, pb_size_t *tags, size_t max)
{
	pb_field_iter_t it;
	size_t n = 0;
	assert_true(pb_field_iter_begin(&it, desc, scratch));
	do {
		if (PB_HTYPE(it.type) == PB_HTYPE_ONEOF && n < max)
			tags[n++] = it.tag;
	} while (pb_field_iter_next(&it));
	return n;
}

/* Split an encoded frame into its length and a body view; check they agree. */
static struct p11ca_buf *frame_body(struct p11ca_buf *frame)
{
	uint32_t len = 0;
	struct p11ca_buf *body = NULL;
	assert_int_equal(p11ca_buf_get_u32(frame, &len), P11CA_OK);
	assert_int_equal(len, p11ca_buf_len(frame));
	assert_int_equal(p11ca_buf_from_const(p11ca_buf_ptr(frame), len, &body), P11CA_OK);
	return body;
}

/* Encode, decode into a fresh struct, and demand the same struct and the same bytes. */
static void roundtrip(const pb_msgdesc_t *desc, const void *msg, void *out, size_t size,
		      size_t max_encoded)
{
	struct p11ca_buf *frame = NULL, *again = NULL;
	struct p11ca_errmsg em = {0};
	if (rpc_frame_encode(desc, msg, CONFIG_RPC_MAX_FRAME, &frame, &em) != P11CA_OK)
		fail_msg("encode: %s", p11ca_errmsg_text(&em));
	assert_true(p11ca_buf_len(frame) - RPC_FRAME_HEADER_LEN <= max_encoded);
	struct p11ca_buf *body = frame_body(frame);
	memset(out, 0, size);
	if (rpc_frame_decode(desc, out, size, body, &em) != P11CA_OK)
		fail_msg("decode: %s", p11ca_errmsg_text(&em));
	assert_memory_equal(out, msg, size);
	assert_int_equal(rpc_frame_encode(desc, out, CONFIG_RPC_MAX_FRAME, &again, NULL), P11CA_OK);
	assert_int_equal(p11ca_buf_consume(again, RPC_FRAME_HEADER_LEN), P11CA_OK);
	assert_int_equal(p11ca_buf_len(again), p11ca_buf_len(body));
	assert_memory_equal(p11ca_buf_ptr(again), p11ca_buf_ptr(body), p11ca_buf_len(body));
	p11ca_buf_free(&body);
	p11ca_buf_free(&again);
	p11ca_buf_free(&frame);
}

/* Requests and Responses are large (up to ~60 KiB): keep them off the stack. */
static p11ca_v1_Request *req_a, *req_b;
static p11ca_v1_Response *resp_a, *resp_b;

static int setup(void **state)
{
	(void)state;
	req_a = calloc(1, sizeof(*req_a));
	req_b = calloc(1, sizeof(*req_b));
	resp_a = calloc(1, sizeof(*resp_a));
	resp_b = calloc(1, sizeof(*resp_b));
	return req_a && req_b && resp_a && resp_b ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	free(req_a);
	free(req_b);
	free(resp_a);
	free(resp_b);
	return 0;
}

static void test_every_request_roundtrips(void **state)
{
	(void)state;
	pb_size_t tags[64];
	size_t n = oneof_tags(p11ca_v1_Request_fields, req_a, tags, 64);
	assert_int_equal(n, 21);
	for (size_t i = 0; i < n; i++) {
		/* At every limit at once... */
		memset(req_a, 0, sizeof(*req_a));
		fill_fields(p11ca_v1_Request_fields, req_a, tags[i], (unsigned)i);
		assert_int_equal(req_a->which_op, tags[i]);
		roundtrip(p11ca_v1_Request_fields, req_a, req_b, sizeof(*req_b),
			  p11ca_v1_Request_size);
		/* ...and as small as it gets. */
		memset(req_a, 0, sizeof(*req_a));
		req_a->api_version = 1;
		req_a->which_op = tags[i];
		roundtrip(p11ca_v1_Request_fields, req_a, req_b, sizeof(*req_b),
			  p11ca_v1_Request_size);
	}
}

static void test_every_response_roundtrips(void **state)
{
	(void)state;
	pb_size_t tags[64];
	size_t n = oneof_tags(p11ca_v1_Response_fields, resp_a, tags, 64);
	assert_int_equal(n, 21);
	for (size_t i = 0; i < n; i++) {
		memset(resp_a, 0, sizeof(*resp_a));
		fill_fields(p11ca_v1_Response_fields, resp_a, tags[i], (unsigned)i);
		assert_true(resp_a->has_status);
		roundtrip(p11ca_v1_Response_fields, resp_a, resp_b, sizeof(*resp_b),
			  p11ca_v1_Response_size);
		memset(resp_a, 0, sizeof(*resp_a));
		resp_a->has_status = true;
		resp_a->status.code = p11ca_v1_StatusCode_STATUS_CODE_OK;
		resp_a->which_result = tags[i];
		roundtrip(p11ca_v1_Response_fields, resp_a, resp_b, sizeof(*resp_b),
			  p11ca_v1_Response_size);
	}
	/* A Response with nothing set (no status) would encode to nothing: refused. */
	struct p11ca_buf *none = NULL;
	memset(resp_b, 0, sizeof(*resp_b));
	assert_int_equal(rpc_frame_response_encode(resp_b, &none, NULL), P11CA_E_INVALID_ARG);
	assert_null(none);
	assert_int_equal(rpc_frame_response_decode(NULL, resp_b, NULL), P11CA_E_INVALID_ARG);

	/* The typed wrappers agree with the generic functions. */
	struct p11ca_buf *frame = NULL;
	assert_int_equal(rpc_frame_response_encode(resp_a, &frame, NULL), P11CA_OK);
	struct p11ca_buf *body = frame_body(frame);
	assert_int_equal(rpc_frame_response_decode(body, resp_b, NULL), P11CA_OK);
	assert_int_equal(resp_b->which_result, resp_a->which_result);
	p11ca_buf_free(&body);
	p11ca_buf_free(&frame);
}

/* A sample request frame for the stream tests. */
static struct p11ca_buf *sample_frame(uint64_t id)
{
	struct p11ca_buf *frame = NULL;
	memset(req_a, 0, sizeof(*req_a));
	req_a->api_version = 1;
	req_a->request_id = id;
	req_a->which_op = p11ca_v1_Request_cert_view_tag;
	strcpy(req_a->op.cert_view.serial, "7F:00:AB");
	assert_int_equal(rpc_frame_request_encode(req_a, &frame, NULL), P11CA_OK);
	return frame;
}

static void test_length_judged_before_body(void **state)
{
	(void)state;
	struct rpc_frame_reader *r = NULL;
	struct p11ca_buf *frame = NULL;
	struct p11ca_errmsg em = {0};
	size_t used = 0;
	/* A header one over the limit, followed by body bytes the reader must not touch. */
	uint8_t stream[4 + 64] = {0x00, 0x00, 0x04, 0x01};
	memset(stream + 4, 'x', 64);

	assert_int_equal(rpc_frame_reader_new(1024, &r, NULL), P11CA_OK);
	size_t before = heap_in_use();
	assert_int_equal(rpc_frame_reader_feed(r, stream, sizeof(stream), &used, &frame, &em),
			 P11CA_E_PROTO_TOO_LARGE);
	assert_int_equal(heap_in_use(), before); /* nothing allocated or kept for the body */
	assert_int_equal(used, 4);		 /* refused on the header alone */
	assert_null(frame);
	assert_non_null(strstr(em.text, "1025"));
	/* The stream has lost its framing: the reader stays refused. */
	assert_int_equal(rpc_frame_reader_want(r), 0);
	assert_int_equal(rpc_frame_reader_feed(r, stream + 4, 4, &used, &frame, NULL),
			 P11CA_E_PROTO);
	assert_int_equal(used, 0);
	assert_int_equal(rpc_frame_reader_eof(r, NULL), P11CA_E_PROTO_TRUNCATED);
	rpc_frame_reader_free(&r);

	/* What stray clients send first: an HTTP request line and a TLS ClientHello. */
	static const char *const strays[] = {"GET / HTTP/1.1\r\n", "\x16\x03\x01\x02\x00"};
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(rpc_frame_reader_new(CONFIG_RPC_MAX_FRAME, &r, NULL), P11CA_OK);
		assert_int_equal(
			rpc_frame_reader_feed(r, strays[i], strlen(strays[i]), &used, &frame, NULL),
			P11CA_E_PROTO_TOO_LARGE);
		rpc_frame_reader_free(&r);
	}
	/* A valid but large announcement costs memory only as its bytes arrive: a peer that
	 * claims 1 MiB and sends 4 bytes holds a few hundred bytes, not a megabyte. */
	assert_int_equal(rpc_frame_reader_new(1 << 20, &r, NULL), P11CA_OK);
	before = heap_in_use();
	assert_int_equal(
		rpc_frame_reader_feed(r, "\0\x10\0\0\x08\x01\x10\x02", 8, &used, &frame, NULL),
		P11CA_OK);
	assert_null(frame);
	assert_int_equal(rpc_frame_reader_want(r), (1 << 20) - 4);
	assert_true(heap_in_use() - before < 4096);
	rpc_frame_reader_free(&r);

	/* Exactly at the limit is a frame. */
	uint8_t at_limit[4 + 8] = {0, 0, 0, 8, 0x08, 0x01, 0x10, 0x02, 0x10, 0x03, 0x10, 0x04};
	assert_int_equal(rpc_frame_reader_new(8, &r, NULL), P11CA_OK);
	assert_int_equal(rpc_frame_reader_feed(r, at_limit, sizeof(at_limit), &used, &frame, NULL),
			 P11CA_OK);
	assert_non_null(frame);
	assert_int_equal(p11ca_buf_len(frame), 8);
	p11ca_buf_free(&frame);
	rpc_frame_reader_free(&r);

	assert_int_equal(rpc_frame_reader_new(0, &r, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_frame_reader_new(P11CA_BUF_SIZE_MAX, &r, NULL), P11CA_E_INVALID_ARG);
	assert_null(r);
}

static void test_truncated_and_empty_frames(void **state)
{
	(void)state;
	struct rpc_frame_reader *r = NULL;
	struct p11ca_buf *frame = NULL;
	size_t used = 0;
	struct p11ca_buf *full = sample_frame(1);
	const uint8_t *bytes = p11ca_buf_ptr(full);
	size_t len = p11ca_buf_len(full);

	/* The stream ends: before anything (clean), inside the header, inside the body. */
	size_t cuts[] = {0, 2, len - 1};
	for (size_t i = 0; i < 3; i++) {
		struct p11ca_errmsg em = {0};
		assert_int_equal(rpc_frame_reader_new(CONFIG_RPC_MAX_FRAME, &r, NULL), P11CA_OK);
		assert_int_equal(rpc_frame_reader_feed(r, bytes, cuts[i], &used, &frame, NULL),
				 P11CA_OK);
		assert_null(frame);
		assert_int_equal(rpc_frame_reader_eof(r, &em),
				 cuts[i] == 0 ? P11CA_OK : P11CA_E_PROTO_TRUNCATED);
		rpc_frame_reader_free(&r);
	}

	/* A zero length: no message of the contract is empty. */
	assert_int_equal(rpc_frame_reader_new(CONFIG_RPC_MAX_FRAME, &r, NULL), P11CA_OK);
	assert_int_equal(rpc_frame_reader_feed(r, "\0\0\0\0\x08\x01", 6, &used, &frame, NULL),
			 P11CA_E_PROTO_DECODE);
	assert_int_equal(used, 4);
	rpc_frame_reader_free(&r);
	rpc_frame_reader_free(&r); /* NULL-safe */
	rpc_frame_reader_free(NULL);

	assert_int_equal(rpc_frame_reader_feed(NULL, bytes, 1, &used, &frame, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_frame_reader_eof(NULL, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_frame_reader_want(NULL), 0);
	p11ca_buf_free(&full);
}

static void test_one_byte_at_a_time(void **state)
{
	(void)state;
	struct rpc_frame_reader *r = NULL;
	struct p11ca_buf *stream = NULL, *f1 = sample_frame(41), *f2 = sample_frame(42);
	assert_int_equal(p11ca_buf_new(1 << 16, 0, &stream), P11CA_OK);
	assert_int_equal(p11ca_buf_put(stream, p11ca_buf_ptr(f1), p11ca_buf_len(f1)), P11CA_OK);
	assert_int_equal(p11ca_buf_put(stream, p11ca_buf_ptr(f2), p11ca_buf_len(f2)), P11CA_OK);
	const uint8_t *s = p11ca_buf_ptr(stream);
	size_t total = p11ca_buf_len(stream), ends[2], got = 0;
	uint64_t ids[2];

	assert_int_equal(rpc_frame_reader_new(CONFIG_RPC_MAX_FRAME, &r, NULL), P11CA_OK);
	assert_int_equal(rpc_frame_reader_want(r), RPC_FRAME_HEADER_LEN);
	for (size_t i = 0; i < total; i++) {
		struct p11ca_buf *frame = NULL;
		size_t used = 0;
		assert_int_equal(rpc_frame_reader_feed(r, s + i, 1, &used, &frame, NULL), P11CA_OK);
		assert_int_equal(used, 1);
		if (frame == NULL)
			continue;
		assert_true(got < 2);
		assert_int_equal(rpc_frame_request_decode(frame, req_b, NULL), P11CA_OK);
		ids[got] = req_b->request_id;
		ends[got++] = i + 1;
		p11ca_buf_free(&frame);
	}
	assert_int_equal(got, 2);
	assert_int_equal(ends[0], p11ca_buf_len(f1));
	assert_int_equal(ends[1], total);
	assert_true(ids[0] == 41 && ids[1] == 42);
	assert_int_equal(rpc_frame_reader_eof(r, NULL), P11CA_OK);

	/* Both frames in one call: the reader stops at the first frame's end. */
	struct p11ca_buf *frame = NULL;
	size_t used = 0;
	assert_int_equal(rpc_frame_reader_feed(r, s, total, &used, &frame, NULL), P11CA_OK);
	assert_int_equal(used, p11ca_buf_len(f1));
	p11ca_buf_free(&frame);
	assert_int_equal(rpc_frame_reader_feed(r, s + used, total - used, &used, &frame, NULL),
			 P11CA_OK);
	assert_non_null(frame);
	p11ca_buf_free(&frame);
	rpc_frame_reader_free(&r);
	p11ca_buf_free(&stream);
	p11ca_buf_free(&f1);
	p11ca_buf_free(&f2);
}

static void decode_bytes(const void *data, size_t len, enum p11ca_err want, const char *why)
{
	struct p11ca_buf *body = NULL;
	struct p11ca_errmsg em = {0};
	assert_int_equal(p11ca_buf_from_const(data, len, &body), P11CA_OK);
	memset(req_b, 0xaa, sizeof(*req_b));
	assert_int_equal(rpc_frame_request_decode(body, req_b, &em), want);
	if (want != P11CA_OK) {
		/* A failed decode leaves nothing behind (it could be half a PIN). */
		static const uint8_t zero[256];
		assert_memory_equal(req_b, zero, sizeof(zero));
		assert_non_null(strstr(em.text, why));
	}
	p11ca_buf_free(&body);
}

/* A NUL inside a string would make C see a shorter value than the one checked and sent:
 * "evil.test\0.example.test" must not read as "evil.test". Nested (cert_sign = 30, sans =
 * 5, repeated) and top-level-oneof strings are both walked. */
static void test_nul_inside_strings(void **state)
{
	(void)state;
	/* api_version 1; cert_sign { sans: "ok.test", "a\0b" } */
	static const uint8_t nul_in_san[] = {0x08, 0x01, 0xf2, 0x01, 0x0e, 0x2a, 0x07, 'o', 'k',
					     '.',  't',	 'e',  's',  't',  0x2a, 0x03, 'a', 0,
					     'b'};
	decode_bytes(nul_in_san, sizeof(nul_in_san), P11CA_E_PROTO_DECODE, "NUL byte");
	/* cert_sign { ca: "x\0y" } */
	static const uint8_t nul_in_ca[] = {0x08, 0x01, 0xf2, 0x01, 0x05, 0x0a, 0x03, 'x', 0, 'y'};
	decode_bytes(nul_in_ca, sizeof(nul_in_ca), P11CA_E_PROTO_DECODE, "NUL byte");
	/* The same shapes without the NUL decode, even into a buffer full of old bytes. */
	static const uint8_t fine[] = {0x08, 0x01, 0xf2, 0x01, 0x0d, 0x2a, 0x07, 'o', 'k', '.',
				       't',  'e',  's',	 't',  0x2a, 0x02, 'a',	 'b'};
	decode_bytes(fine, sizeof(fine), P11CA_OK, NULL);
	assert_int_equal(req_b->op.cert_sign.sans_count, 2);
	assert_string_equal(req_b->op.cert_sign.sans[1], "ab");
}

static void test_garbage_and_trailing_bytes(void **state)
{
	(void)state;
	static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
					  0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	decode_bytes(garbage, sizeof(garbage), P11CA_E_PROTO_DECODE, "malformed");
	decode_bytes("\x0a\x10short", 7, P11CA_E_PROTO_DECODE, "malformed"); /* len past end */
	decode_bytes("", 0, P11CA_E_PROTO_DECODE, "empty");

	struct p11ca_buf *frame = sample_frame(7);
	struct p11ca_buf *body = frame_body(frame);
	size_t len = p11ca_buf_len(body);
	uint8_t buf[512];
	assert_true(len + 3 <= sizeof(buf));
	memcpy(buf, p11ca_buf_ptr(body), len);
	decode_bytes(buf, len, P11CA_OK, NULL);
	/* Trailing bytes inside the frame: a zero tag, a lone varint prefix, a bad wire type. */
	static const uint8_t tails[][3] = {{0x00, 0, 0}, {0x80, 0, 0}, {0x0f, 0x01, 0}};
	static const size_t tail_len[] = {1, 1, 2};
	for (size_t i = 0; i < 3; i++) {
		memcpy(buf + len, tails[i], tail_len[i]);
		decode_bytes(buf, len + tail_len[i], P11CA_E_PROTO_DECODE, "malformed");
	}
	/* Cut one byte short: the serial's length now runs past the end. */
	decode_bytes(buf, len - 1, P11CA_E_PROTO_DECODE, "malformed");
	p11ca_buf_free(&body);
	p11ca_buf_free(&frame);

	assert_int_equal(rpc_frame_decode(NULL, req_b, sizeof(*req_b), body, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_frame_request_decode(NULL, req_b, NULL), P11CA_E_INVALID_ARG);
}

/* Protobuf wire helpers, to build what a non-nanopb peer could send. */
static void put_varint(struct p11ca_buf *b, uint64_t v)
{
	for (; v >= 0x80; v >>= 7)
		assert_int_equal(p11ca_buf_put_u8(b, (uint8_t)(v | 0x80)), P11CA_OK);
	assert_int_equal(p11ca_buf_put_u8(b, (uint8_t)v), P11CA_OK);
}

static void put_len_field(struct p11ca_buf *b, unsigned field, const void *data, size_t len)
{
	put_varint(b, field << 3 | 2);
	put_varint(b, len);
	assert_int_equal(p11ca_buf_put(b, data, len), P11CA_OK);
}

/* Request{api_version 1, <op_field> {<repeat> x field <inner> = n bytes of 'a'}}. */
static void decode_field_of_size(unsigned op_field, unsigned inner, size_t n, size_t repeat,
				 enum p11ca_err want)
{
	static uint8_t value[20000];
	struct p11ca_buf *sub = NULL, *msg = NULL;
	memset(value, 'a', sizeof(value));
	assert_true(n <= sizeof(value));
	assert_int_equal(p11ca_buf_new(1 << 20, 0, &sub), P11CA_OK);
	assert_int_equal(p11ca_buf_new(1 << 20, 0, &msg), P11CA_OK);
	for (size_t i = 0; i < repeat; i++)
		put_len_field(sub, inner, value, n);
	put_varint(msg, 1 << 3 | 0);
	put_varint(msg, 1);
	put_len_field(msg, op_field, p11ca_buf_ptr(sub), p11ca_buf_len(sub));
	decode_bytes(p11ca_buf_ptr(msg), p11ca_buf_len(msg), want, "overflow");
	p11ca_buf_free(&sub);
	p11ca_buf_free(&msg);
}

static void test_limits_exact_and_one_over(void **state)
{
	(void)state;
	const size_t serial = sizeof(req_a->op.cert_view.serial) - 1; /* 64 characters */
	const size_t csr = sizeof(req_a->op.cert_sign.csr.bytes);
	const size_t sans = sizeof(req_a->op.cert_sign.sans) / sizeof(req_a->op.cert_sign.sans[0]);
	assert_int_equal(serial, 64);
	assert_int_equal(csr, 16384);
	assert_int_equal(sans, 64);

	/* Decoding what another implementation might send. */
	decode_field_of_size(p11ca_v1_Request_cert_view_tag, 1, serial, 1, P11CA_OK);
	decode_field_of_size(p11ca_v1_Request_cert_view_tag, 1, serial + 1, 1,
			     P11CA_E_PROTO_DECODE);
	decode_field_of_size(p11ca_v1_Request_cert_sign_tag, 2, csr, 1, P11CA_OK);
	decode_field_of_size(p11ca_v1_Request_cert_sign_tag, 2, csr + 1, 1, P11CA_E_PROTO_DECODE);
	decode_field_of_size(p11ca_v1_Request_cert_sign_tag, 5, 255, sans, P11CA_OK);
	decode_field_of_size(p11ca_v1_Request_cert_sign_tag, 5, 256, 1, P11CA_E_PROTO_DECODE);
	decode_field_of_size(p11ca_v1_Request_cert_sign_tag, 5, 1, sans + 1, P11CA_E_PROTO_DECODE);

	/* Encoding a struct that breaks a limit fails; it never reads past the field. */
	struct p11ca_buf *frame = NULL;
	struct p11ca_errmsg em = {0};
	memset(req_a, 0, sizeof(*req_a));
	req_a->api_version = 1;
	req_a->which_op = p11ca_v1_Request_cert_sign_tag;
	memset(req_a->op.cert_sign.profile, 'p', sizeof(req_a->op.cert_sign.profile) - 1);
	assert_int_equal(rpc_frame_request_encode(req_a, &frame, NULL), P11CA_OK); /* exact */
	p11ca_buf_free(&frame);
	req_a->op.cert_sign.profile[sizeof(req_a->op.cert_sign.profile) - 1] = 'p'; /* no NUL */
	assert_int_equal(rpc_frame_request_encode(req_a, &frame, &em), P11CA_E_INVALID_ARG);
	assert_non_null(strstr(em.text, "string"));
	assert_null(frame);
	req_a->op.cert_sign.profile[0] = '\0';
	req_a->op.cert_sign.csr.size = (pb_size_t)(csr + 1);
	assert_int_equal(rpc_frame_request_encode(req_a, &frame, NULL), P11CA_E_INVALID_ARG);
	req_a->op.cert_sign.csr.size = 0;
	req_a->op.cert_sign.sans_count = (pb_size_t)(sans + 1);
	assert_int_equal(rpc_frame_request_encode(req_a, &frame, NULL), P11CA_E_INVALID_ARG);
	req_a->op.cert_sign.sans_count = 0;

	/* Over the frame limit given, and nothing to send at all. */
	assert_int_equal(rpc_frame_encode(p11ca_v1_Request_fields, req_a, 3, &frame, &em),
			 P11CA_E_PROTO_TOO_LARGE);
	memset(req_a, 0, sizeof(*req_a));
	assert_int_equal(rpc_frame_request_encode(req_a, &frame, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_frame_encode(NULL, req_a, 100, &frame, NULL), P11CA_E_INVALID_ARG);
	assert_null(frame);
}

static void test_fd_reading_and_writing(void **state)
{
	(void)state;
	int sv[2];
	struct p11ca_buf *frame = NULL;
	struct p11ca_errmsg em = {0};
	struct p11ca_buf *f1 = sample_frame(1), *f2 = sample_frame(2);
	size_t f2_len = p11ca_buf_len(f2);

	/* Two frames then a clean close; the reader never takes bytes of the next frame. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(rpc_frame_write_fd(sv[1], f1, 1000, NULL), P11CA_OK);
	assert_int_equal(p11ca_buf_len(f1), 0); /* consumed as written */
	assert_int_equal(rpc_frame_write_fd(sv[1], f2, 1000, NULL), P11CA_OK);
	close(sv[1]);
	/* Timeout 0: what is already there is enough. */
	assert_int_equal(rpc_frame_read_fd(sv[0], CONFIG_RPC_MAX_FRAME, 0, &frame, NULL), P11CA_OK);
	assert_non_null(frame);
	p11ca_buf_free(&frame);
	uint8_t rest[256];
	assert_int_equal(read(sv[0], rest, sizeof(rest)), (ssize_t)f2_len);
	assert_int_equal(rpc_frame_read_fd(sv[0], CONFIG_RPC_MAX_FRAME, 1000, &frame, NULL),
			 P11CA_OK);
	assert_null(frame); /* clean end of stream */
	close(sv[0]);

	/* Closed in the middle of a frame. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[1], "\0\0\0\x10\x08", 5), 5);
	close(sv[1]);
	assert_int_equal(rpc_frame_read_fd(sv[0], CONFIG_RPC_MAX_FRAME, 1000, &frame, &em),
			 P11CA_E_PROTO_TRUNCATED);
	close(sv[0]);

	/* A peer that stalls mid-frame runs into the whole-frame deadline; one that announces
	 * too much is refused at once, without waiting for a body that never comes. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[1], "\0\0\0\x10\x08", 5), 5);
	assert_int_equal(rpc_frame_read_fd(sv[0], CONFIG_RPC_MAX_FRAME, 50, &frame, NULL),
			 P11CA_E_TIMEOUT);
	assert_int_equal(rpc_frame_read_fd(sv[0], CONFIG_RPC_MAX_FRAME, 0, &frame, NULL),
			 P11CA_E_TIMEOUT);
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[1], "\x7f\0\0\0", 4), 4);
	assert_int_equal(rpc_frame_read_fd(sv[0], CONFIG_RPC_MAX_FRAME, -1, &frame, NULL),
			 P11CA_E_PROTO_TOO_LARGE);
	close(sv[0]);

	/* Writing to a peer that left is an error, not a SIGPIPE that kills the process. */
	struct p11ca_buf *f3 = sample_frame(3);
	assert_int_equal(rpc_frame_write_fd(sv[1], f3, 1000, &em), P11CA_E_IO);
	close(sv[1]);
	assert_int_equal(rpc_frame_write_fd(-1, f3, -1, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_frame_write_fd(1, NULL, -1, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_frame_read_fd(-1, CONFIG_RPC_MAX_FRAME, -1, &frame, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_frame_read_fd(0, 0, 1000, &frame, NULL), P11CA_E_INVALID_ARG);
	p11ca_buf_free(&f1);
	p11ca_buf_free(&f2);
	p11ca_buf_free(&f3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_request_roundtrips),
		cmocka_unit_test(test_every_response_roundtrips),
		cmocka_unit_test(test_length_judged_before_body),
		cmocka_unit_test(test_truncated_and_empty_frames),
		cmocka_unit_test(test_one_byte_at_a_time),
		cmocka_unit_test(test_nul_inside_strings),
		cmocka_unit_test(test_garbage_and_trailing_bytes),
		cmocka_unit_test(test_limits_exact_and_one_over),
		cmocka_unit_test(test_fd_reading_and_writing),
	};
	return cmocka_run_group_tests_name("frame", tests, setup, teardown);
}
