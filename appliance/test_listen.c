/* Unit tests for appliance/listen: address forms, and binding real sockets on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>
#include <unistd.h>

#include "appliance/listen.h"

static void test_parse_good(void **state)
{
	(void)state;
	struct p11cad_listen_addr a;
	struct p11ca_errmsg em = {0};
	assert_int_equal(p11cad_listen_parse("127.0.0.1:7443", &a, &em), P11CA_OK);
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_string_equal(a.host, "127.0.0.1");
	assert_int_equal(a.port, 7443);
	assert_int_equal(ntohs(((struct sockaddr_in *)&a.ss)->sin_port), 7443);
	assert_int_equal(p11cad_listen_parse("[::1]:0", &a, &em), P11CA_OK);
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_string_equal(a.host, "::1");
	assert_int_equal(a.port, 0);
	assert_int_equal(p11cad_listen_parse("[::]:65535", &a, &em), P11CA_OK);
	assert_int_equal(a.port, 65535);
	assert_int_equal(p11cad_listen_parse("0.0.0.0:1", &a, &em), P11CA_OK);
}

static void test_parse_bad(void **state)
{
	(void)state;
	static const char *bad[] = {
		"",
		"127.0.0.1",
		"127.0.0.1:",
		":7443",
		"localhost:7443",
		"::1:7443",
		"[::1]7443",
		"[::1]",
		"[]:1",
		"[127.0.0.1]:1",
		"1.2.3.4:-1",
		"1.2.3.4:65536",
		"1.2.3.4:99999999999",
		"1.2.3.4: 1",
		"1.2.3.4:1x",
		"256.1.1.1:1",
		"[fe80::1%eth0]:1",
	};
	struct p11cad_listen_addr a;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct p11ca_errmsg em = {0};
		if (p11cad_listen_parse(bad[i], &a, &em) != P11CA_E_CONFIG)
			fail_msg("'%s' was accepted", bad[i]);
		assert_non_null(strstr(em.text, "listen address"));
	}
	assert_int_equal(p11cad_listen_parse(NULL, &a, NULL), P11CA_E_INVALID_ARG);
}

static void bind_and_connect(const char *text)
{
	struct p11cad_listen_addr a;
	struct p11ca_errmsg em = {0};
	int fd = -1;
	unsigned port = 0;
	assert_int_equal(p11cad_listen_parse(text, &a, &em), P11CA_OK);
	assert_int_equal(p11cad_listen_bind(&a, &fd, &em), P11CA_OK);
	assert_int_equal(p11cad_listen_port(fd, &port, &em), P11CA_OK);
	assert_true(port > 0);

	/* It really listens: a client connects, and the socket is close-on-exec. */
	struct p11cad_listen_addr to = a;
	if (to.ss.ss_family == AF_INET)
		((struct sockaddr_in *)&to.ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)&to.ss)->sin6_port = htons((uint16_t)port);
	int c = socket(to.ss.ss_family, SOCK_STREAM, 0);
	assert_true(c >= 0);
	assert_int_equal(connect(c, (struct sockaddr *)&to.ss, to.len), 0);
	close(c);

	/* The same port a second time is refused with a message naming it. */
	to.port = port;
	int fd2 = -1;
	p11ca_errmsg_clear(&em);
	assert_int_equal(p11cad_listen_bind(&to, &fd2, &em), P11CA_E_IO);
	assert_int_equal(fd2, -1);
	assert_non_null(strstr(em.text, "already in use"));
	close(fd);
}

static void test_bind(void **state)
{
	(void)state;
	bind_and_connect("127.0.0.1:0");
	bind_and_connect("[::1]:0");

	struct p11cad_listen_addr a;
	int fd = -1;
	struct p11ca_errmsg em = {0};
	assert_int_equal(p11cad_listen_parse("192.0.2.1:0", &a, &em), P11CA_OK); /* TEST-NET */
	assert_int_equal(p11cad_listen_bind(&a, &fd, &em), P11CA_E_IO);
	assert_non_null(strstr(em.text, "192.0.2.1"));
	assert_int_equal(p11cad_listen_bind(NULL, &fd, NULL), P11CA_E_INVALID_ARG);
	unsigned port;
	assert_int_equal(p11cad_listen_port(-1, &port, NULL), P11CA_E_IO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_bind),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
