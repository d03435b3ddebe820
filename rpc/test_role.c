/* Unit tests for rpc/role (fingerprints, the role table and its text form) and rpc/op (the
 * operation table, checked against the contract's own descriptor). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <pb_common.h>

#include "rpc/op.h"
#include "rpc/p11ca.pb.h"
#include "rpc/role.h"

#define FP_HEX "3FA2C1D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9C"
#define FP_COLONS                                                                                  \
	"3f:a2:c1:d4:e5:f6:07:18:29:3a:4b:5c:6d:7e:8f:90:a1:b2:c3:d4:e5:f6:07:18:29:3a:4b:5c:"     \
	"6d:7e:8f:9c"

static void test_role_names(void **state)
{
	(void)state;
	enum rpc_role r = RPC_ROLE_NONE;
	struct p11ca_errmsg em = {0};
	assert_int_equal(rpc_role_parse("ADMIN", &r, NULL), P11CA_OK);
	assert_int_equal(r, RPC_ROLE_ADMIN);
	assert_int_equal(rpc_role_parse("operator", &r, NULL), P11CA_OK);
	assert_int_equal(r, RPC_ROLE_OPERATOR);
	assert_int_equal(rpc_role_parse("Auditor", &r, NULL), P11CA_OK);
	assert_int_equal(r, RPC_ROLE_AUDITOR);
	assert_int_equal(rpc_role_parse("root", &r, &em), P11CA_E_CONFIG);
	assert_non_null(strstr(em.text, "'root'"));
	assert_int_equal(rpc_role_parse("none", &r, NULL), P11CA_E_CONFIG); /* grants nothing */
	assert_int_equal(rpc_role_parse("", &r, NULL), P11CA_E_CONFIG);
	assert_int_equal(rpc_role_parse(NULL, &r, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(r, RPC_ROLE_AUDITOR); /* untouched by failures */

	assert_string_equal(rpc_role_name(RPC_ROLE_ADMIN), "admin");
	assert_string_equal(rpc_role_name(RPC_ROLE_NONE), "none");
	assert_string_equal(rpc_role_name((enum rpc_role)42), "none");
}

static void test_fingerprint_forms(void **state)
{
	(void)state;
	uint8_t a[RPC_FINGERPRINT_LEN], b[RPC_FINGERPRINT_LEN];
	char hex[RPC_FINGERPRINT_HEX_SIZE];
	assert_int_equal(rpc_fingerprint_parse(FP_HEX, a, NULL), P11CA_OK);
	assert_int_equal(rpc_fingerprint_parse(FP_COLONS, b, NULL), P11CA_OK);
	assert_memory_equal(a, b, sizeof(a));
	assert_int_equal(a[0], 0x3f);
	assert_int_equal(a[31], 0x9c);
	rpc_fingerprint_format(a, hex);
	assert_string_equal(hex, FP_HEX);

	static const char *bad[] = {
		"",	       /* empty */
		FP_HEX "0",    /* 65 digits */
		FP_HEX + 1,    /* 63 digits */
		":" FP_COLONS, /* leading colon */
		FP_COLONS ":", /* trailing colon */
		/* doubled colon */
		"3f::a2:c1:d4:e5:f6:07:18:29:3a:4b:5c:6d:7e:8f:90:a1:b2:c3:d4:e5:f6:07:18:29:3a:4b:"
		"5c:6d:7e:8f:9c",
		/* colon inside a byte */
		"3:FA2C1D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9C",
		/* not hex */
		"3GA2C1D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9C",
		"sha256:" FP_HEX, /* no prefixes */
		" " FP_HEX,	  /* no blanks */
	};
	memset(b, 0xaa, sizeof(b));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct p11ca_errmsg em = {0};
		assert_int_equal(rpc_fingerprint_parse(bad[i], b, &em), P11CA_E_CONFIG);
		assert_non_null(strstr(em.text, "fingerprint"));
	}
	assert_int_equal(b[0], 0xaa); /* untouched by failures */
	assert_int_equal(rpc_fingerprint_parse(NULL, b, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_fingerprint_parse(FP_HEX, NULL, NULL), P11CA_E_INVALID_ARG);
}

static void test_table_add_and_lookup(void **state)
{
	(void)state;
	struct rpc_role_table *t = NULL;
	struct p11ca_errmsg em = {0};
	uint8_t fp[RPC_FINGERPRINT_LEN] = {1}, other[RPC_FINGERPRINT_LEN] = {2};
	assert_int_equal(rpc_role_table_new(&t, NULL), P11CA_OK);
	assert_int_equal(rpc_role_table_lookup(t, fp), RPC_ROLE_NONE);
	assert_int_equal(rpc_role_table_add(t, fp, RPC_ROLE_AUDITOR, NULL), P11CA_OK);
	assert_int_equal(rpc_role_table_lookup(t, fp), RPC_ROLE_AUDITOR);
	assert_int_equal(rpc_role_table_lookup(t, other), RPC_ROLE_NONE);

	/* A second entry for one certificate is refused, even with another role. */
	assert_int_equal(rpc_role_table_add(t, fp, RPC_ROLE_ADMIN, &em), P11CA_E_CONFIG);
	assert_non_null(strstr(em.text, "listed twice"));
	assert_int_equal(rpc_role_table_lookup(t, fp), RPC_ROLE_AUDITOR);
	assert_int_equal(rpc_role_table_add(t, other, RPC_ROLE_NONE, NULL), P11CA_E_CONFIG);
	assert_int_equal(rpc_role_table_add(t, other, (enum rpc_role)42, NULL), P11CA_E_CONFIG);
	assert_int_equal(rpc_role_table_add(NULL, other, RPC_ROLE_ADMIN, NULL),
			 P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_role_table_add(t, NULL, RPC_ROLE_ADMIN, NULL), P11CA_E_INVALID_ARG);
	assert_int_equal(rpc_role_table_count(t), 1);

	assert_int_equal(rpc_role_table_add_entry(t, FP_COLONS, "admin", NULL), P11CA_OK);
	assert_int_equal(rpc_role_table_add_entry(t, FP_HEX, "operator", NULL), P11CA_E_CONFIG);
	assert_int_equal(rpc_role_table_add_entry(t, "zz", "operator", NULL), P11CA_E_CONFIG);
	assert_int_equal(rpc_role_table_add_entry(t, FP_HEX, "boss", NULL), P11CA_E_CONFIG);
	assert_int_equal(rpc_role_table_count(t), 2);

	assert_int_equal(rpc_role_table_lookup(NULL, fp), RPC_ROLE_NONE);
	assert_int_equal(rpc_role_table_lookup(t, NULL), RPC_ROLE_NONE);
	assert_int_equal(rpc_role_table_count(NULL), 0);
	rpc_role_table_free(&t);
	assert_null(t);
	rpc_role_table_free(&t);
	rpc_role_table_free(NULL);
}

static void test_table_is_bounded(void **state)
{
	(void)state;
	struct rpc_role_table *t = NULL;
	struct p11ca_errmsg em = {0};
	uint8_t fp[RPC_FINGERPRINT_LEN] = {0};
	assert_int_equal(rpc_role_table_new(&t, NULL), P11CA_OK);
	for (unsigned i = 0; i < RPC_ROLE_TABLE_MAX; i++) {
		fp[0] = (uint8_t)i;
		fp[1] = (uint8_t)(i >> 8);
		assert_int_equal(rpc_role_table_add(t, fp, RPC_ROLE_AUDITOR, NULL), P11CA_OK);
	}
	fp[2] = 1;
	assert_int_equal(rpc_role_table_add(t, fp, RPC_ROLE_AUDITOR, &em), P11CA_E_CONFIG);
	assert_non_null(strstr(em.text, "more than"));
	assert_int_equal(rpc_role_table_count(t), RPC_ROLE_TABLE_MAX);
	rpc_role_table_free(&t);
}

static void test_table_text_form(void **state)
{
	(void)state;
	struct rpc_role_table *t = NULL;
	assert_int_equal(rpc_role_table_new(&t, NULL), P11CA_OK);
	const char good[] =
		"# roles for the test appliance\n"
		"\n"
		"   " FP_COLONS "\tadmin   # the first admin\r\n"
		"0000000000000000000000000000000000000000000000000000000000000001 auditor\n"
		"   # indented comment";
	assert_int_equal(rpc_role_table_parse(t, good, strlen(good), "roles.conf", NULL), P11CA_OK);
	assert_int_equal(rpc_role_table_count(t), 2);
	uint8_t fp[RPC_FINGERPRINT_LEN];
	assert_int_equal(rpc_fingerprint_parse(FP_HEX, fp, NULL), P11CA_OK);
	assert_int_equal(rpc_role_table_lookup(t, fp), RPC_ROLE_ADMIN);
	rpc_role_table_free(&t);

	/* Each malformed file is refused whole, with its line number. */
	static const struct {
		const char *text, *where, *what;
	} bad[] = {
		{"# ok\n" FP_HEX "\n", "r:2:", "expected"},	     /* no role */
		{FP_HEX " admin extra\n", "r:1:", "expected"},	     /* one field too many */
		{"\n\n" FP_HEX " wizard\n", "r:3:", "unknown role"}, /* unknown role */
		{FP_HEX " admin\n" FP_COLONS " operator\n", "r:2:", "listed twice"}, /* duplicate */
		{"abc admin\n", "r:1:", "fingerprint"},				     /* short */
		{FP_HEX FP_HEX FP_HEX " admin\n", "r:1:", "expected"}, /* over-long token */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct p11ca_errmsg em = {0};
		assert_int_equal(rpc_role_table_new(&t, NULL), P11CA_OK);
		assert_int_equal(rpc_role_table_add(t, (uint8_t[RPC_FINGERPRINT_LEN]){9},
						    RPC_ROLE_OPERATOR, NULL),
				 P11CA_OK);
		assert_int_equal(
			rpc_role_table_parse(t, bad[i].text, strlen(bad[i].text), "r", &em),
			P11CA_E_CONFIG);
		assert_non_null(strstr(em.text, bad[i].where));
		assert_non_null(strstr(em.text, bad[i].what));
		assert_int_equal(rpc_role_table_count(t), 1); /* all or nothing */
		rpc_role_table_free(&t);
	}
	assert_int_equal(rpc_role_table_parse(NULL, "", 0, "r", NULL), P11CA_E_INVALID_ARG);
}

/* Every member of Request.op has exactly one table entry, and Response.result has the
 * same numbers: adding an operation to the .proto without deciding who may call it
 * fails here. */
static void test_op_table_covers_the_contract(void **state)
{
	(void)state;
	p11ca_v1_Request req = p11ca_v1_Request_init_zero;
	p11ca_v1_Response resp = p11ca_v1_Response_init_zero;
	pb_field_iter_t it;
	size_t ops = 0, results = 0;

	assert_true(pb_field_iter_begin(&it, p11ca_v1_Request_fields, &req));
	do {
		if (PB_HTYPE(it.type) != PB_HTYPE_ONEOF)
			continue;
		ops++;
		const struct rpc_op *op = rpc_op_find(it.tag);
		if (op == NULL)
			fail_msg("Request.op tag %u has no entry in rpc/op.c", (unsigned)it.tag);
	} while (pb_field_iter_next(&it));
	assert_int_equal(ops, rpc_op_count());

	assert_true(pb_field_iter_begin(&it, p11ca_v1_Response_fields, &resp));
	do {
		if (PB_HTYPE(it.type) != PB_HTYPE_ONEOF)
			continue;
		results++;
		assert_non_null(rpc_op_find(it.tag));
	} while (pb_field_iter_next(&it));
	assert_int_equal(results, rpc_op_count());

	for (size_t i = 0; i < rpc_op_count(); i++)
		for (size_t j = i + 1; j < rpc_op_count(); j++)
			assert_string_not_equal(rpc_op_at(i)->name, rpc_op_at(j)->name);
	assert_null(rpc_op_at(rpc_op_count()));
	assert_null(rpc_op_find(0));
	assert_null(rpc_op_find(999));
}

static void test_op_permissions(void **state)
{
	(void)state;
	for (size_t i = 0; i < rpc_op_count(); i++) {
		const struct rpc_op *op = rpc_op_at(i);
		assert_true(rpc_op_permits(op, RPC_ROLE_ADMIN)); /* admin can do everything */
		assert_false(rpc_op_permits(op, RPC_ROLE_NONE));
		assert_false(rpc_op_permits(op, (enum rpc_role)31));
		/* Auditors only read: nothing that changes state (the audited operations). */
		if (op->audited)
			assert_false(rpc_op_permits(op, RPC_ROLE_AUDITOR));
	}
	const struct rpc_op *sign = rpc_op_find(p11ca_v1_Request_cert_sign_tag);
	const struct rpc_op *revoke = rpc_op_find(p11ca_v1_Request_cert_revoke_tag);
	const struct rpc_op *init = rpc_op_find(p11ca_v1_Request_ca_init_tag);
	const struct rpc_op *activate = rpc_op_find(p11ca_v1_Request_hsm_activate_tag);
	const struct rpc_op *list = rpc_op_find(p11ca_v1_Request_cert_list_tag);
	assert_string_equal(sign->name, "cert_sign");
	assert_true(rpc_op_permits(sign, RPC_ROLE_OPERATOR));
	assert_true(rpc_op_permits(revoke, RPC_ROLE_OPERATOR));
	assert_false(rpc_op_permits(sign, RPC_ROLE_AUDITOR));
	assert_false(rpc_op_permits(init, RPC_ROLE_OPERATOR));
	assert_false(rpc_op_permits(activate, RPC_ROLE_OPERATOR));
	assert_true(rpc_op_permits(list, RPC_ROLE_AUDITOR));
	assert_true(sign->audited && revoke->audited && init->audited && activate->audited);
	assert_false(list->audited);
	assert_false(rpc_op_permits(NULL, RPC_ROLE_ADMIN));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_role_names),
		cmocka_unit_test(test_fingerprint_forms),
		cmocka_unit_test(test_table_add_and_lookup),
		cmocka_unit_test(test_table_is_bounded),
		cmocka_unit_test(test_table_text_form),
		cmocka_unit_test(test_op_table_covers_the_contract),
		cmocka_unit_test(test_op_permissions),
	};
	return cmocka_run_group_tests_name("role", tests, NULL, NULL);
}
