/* Unit tests for hsm/pin.c: every PIN source, its trimming, limits and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/kconfig.h"
#include "hsm/pin.h"

struct fx {
	char dir[PATH_MAX];
	char path[PATH_MAX + 8];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(f->dir, sizeof(f->dir), "%s/pin.XXXXXX", tmp);
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/pin", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void expect_pin(struct p11ca_secret *s, const char *want)
{
	assert_non_null(s);
	assert_int_equal(p11ca_secret_len(s), strlen(want));
	assert_memory_equal(p11ca_secret_data(s), want, strlen(want));
}

static void test_file_trims_one_newline(void **state)
{
	struct fx *f = *state;
	struct p11ca_secret *s = NULL;
	struct p11ca_errmsg em = {0};
	write_file(f->path, "1234\n", 5, 0600);
	assert_int_equal(hsm_pin_from_file(f->path, &s, &em), P11CA_OK);
	expect_pin(s, "1234");
	p11ca_secret_free(&s);

	write_file(f->path, "12 34\r\n", 7, 0400);
	assert_int_equal(hsm_pin_from_file(f->path, &s, &em), P11CA_OK);
	expect_pin(s, "12 34");
	p11ca_secret_free(&s);

	/* Only one newline is trimmed: a PIN may legitimately end in whitespace. */
	write_file(f->path, "ab\n\n", 4, 0600);
	assert_int_equal(hsm_pin_from_file(f->path, &s, &em), P11CA_OK);
	expect_pin(s, "ab\n");
	p11ca_secret_free(&s);
}

static void test_file_refuses_open_modes(void **state)
{
	struct fx *f = *state;
	struct p11ca_secret *s = NULL;
	const mode_t bad[] = {0640, 0604, 0660, 0644, 0601};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct p11ca_errmsg em = {0};
		write_file(f->path, "1234", 4, bad[i]);
		assert_int_equal(hsm_pin_from_file(f->path, &s, &em), P11CA_E_PIN_SOURCE);
		assert_null(s);
		assert_non_null(strstr(em.text, "chmod 600"));
		assert_null(strstr(em.text, "1234")); /* never the PIN itself */
	}
}

static void test_file_refuses_symlink_dir_missing_relative(void **state)
{
	struct fx *f = *state;
	struct p11ca_secret *s = NULL;
	struct p11ca_errmsg em = {0};
	char link[PATH_MAX + 8];
	write_file(f->path, "1234", 4, 0600);
	snprintf(link, sizeof(link), "%s/link", f->dir);
	assert_int_equal(symlink(f->path, link), 0);
	assert_int_equal(hsm_pin_from_file(link, &s, &em), P11CA_E_PIN_SOURCE);
	assert_non_null(strstr(em.text, "symbolic link"));

	p11ca_errmsg_clear(&em);
	assert_int_equal(hsm_pin_from_file(f->dir, &s, &em), P11CA_E_PIN_SOURCE);

	p11ca_errmsg_clear(&em);
	char missing[PATH_MAX + 8];
	snprintf(missing, sizeof(missing), "%s/nope", f->dir);
	assert_int_equal(hsm_pin_from_file(missing, &s, &em), P11CA_E_PIN_SOURCE);
	assert_non_null(strstr(em.text, missing));

	p11ca_errmsg_clear(&em);
	assert_int_equal(hsm_pin_from_file("relative/pin", &s, &em), P11CA_E_PIN_SOURCE);
	assert_non_null(strstr(em.text, "absolute"));
	assert_int_equal(hsm_pin_from_file(NULL, &s, NULL), P11CA_E_PIN_SOURCE);
	assert_null(s);
}

static void test_file_refuses_foreign_owner(void **state)
{
	struct fx *f = *state;
	struct p11ca_secret *s = NULL;
	struct p11ca_errmsg em = {0};
	write_file(f->path, "1234", 4, 0600);
	if (geteuid() != 0)
		skip(); /* only root can give a file away */
	assert_int_equal(chown(f->path, 12345, 12345), 0);
	assert_int_equal(hsm_pin_from_file(f->path, &s, &em), P11CA_E_PIN_SOURCE);
	assert_non_null(strstr(em.text, "uid 12345"));
	assert_null(s);
}

static void test_empty_and_too_long(void **state)
{
	struct fx *f = *state;
	struct p11ca_secret *s = NULL;
	struct p11ca_errmsg em = {0};
	write_file(f->path, "\n", 1, 0600);
	assert_int_equal(hsm_pin_from_file(f->path, &s, &em), P11CA_E_PIN_SOURCE);
	assert_non_null(strstr(em.text, "empty"));

	size_t n = CONFIG_HSM_PIN_MAX_LEN;
	char *big = malloc(n + 2);
	memset(big, 'x', n + 1);
	/* Exactly the limit is fine, even with a newline after it ... */
	big[n] = '\n';
	write_file(f->path, big, n + 1, 0600);
	assert_int_equal(hsm_pin_from_file(f->path, &s, &em), P11CA_OK);
	assert_int_equal(p11ca_secret_len(s), n);
	p11ca_secret_free(&s);
	/* ... one byte over is refused, not truncated. */
	memset(big, 'x', n + 2);
	write_file(f->path, big, n + 2, 0600);
	p11ca_errmsg_clear(&em);
	assert_int_equal(hsm_pin_from_file(f->path, &s, &em), P11CA_E_PIN_SOURCE);
	assert_non_null(strstr(em.text, "longer than"));
	assert_null(s);
	free(big);
}

static void test_fd(void **state)
{
	(void)state;
	int p[2];
	struct p11ca_secret *s = NULL;
	struct p11ca_errmsg em = {0};
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "pipe-pin\n", 9), 9);
	close(p[1]);
	assert_int_equal(hsm_pin_from_fd(p[0], &s, &em), P11CA_OK);
	expect_pin(s, "pipe-pin");
	p11ca_secret_free(&s);
	close(p[0]);

	assert_int_equal(hsm_pin_from_fd(-1, &s, &em), P11CA_E_PIN_SOURCE);
	/* A closed descriptor is a read error, reported, not a crash. */
	assert_int_equal(hsm_pin_from_fd(p[0], &s, NULL), P11CA_E_PIN_SOURCE);
	assert_null(s);
}

static void test_source_forms(void **state)
{
	struct fx *f = *state;
	struct p11ca_secret *s = NULL;
	struct p11ca_errmsg em = {0};
	char src[PATH_MAX + 16];
	write_file(f->path, "9876", 4, 0600);

	snprintf(src, sizeof(src), "file:%s", f->path);
	assert_int_equal(hsm_pin_from_source(src, &s, &em), P11CA_OK);
	expect_pin(s, "9876");
	p11ca_secret_free(&s);

	assert_int_equal(hsm_pin_from_source(f->path, &s, &em), P11CA_OK);
	expect_pin(s, "9876");
	p11ca_secret_free(&s);

	/* systemd credentials: $CREDENTIALS_DIRECTORY/NAME */
	setenv("CREDENTIALS_DIRECTORY", f->dir, 1);
	assert_int_equal(hsm_pin_from_source("credential:pin", &s, &em), P11CA_OK);
	expect_pin(s, "9876");
	p11ca_secret_free(&s);
	assert_int_equal(hsm_pin_from_source("credential:../pin", &s, &em), P11CA_E_PIN_SOURCE);
	unsetenv("CREDENTIALS_DIRECTORY");
	p11ca_errmsg_clear(&em);
	assert_int_equal(hsm_pin_from_source("credential:pin", &s, &em), P11CA_E_PIN_SOURCE);
	assert_non_null(strstr(em.text, "LoadCredential"));

	assert_int_equal(hsm_pin_from_source("http://example/pin", &s, NULL), P11CA_E_PIN_SOURCE);
	assert_int_equal(hsm_pin_from_source("", &s, NULL), P11CA_E_PIN_SOURCE);
	assert_int_equal(hsm_pin_from_source(NULL, &s, NULL), P11CA_E_PIN_SOURCE);
	assert_null(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_file_trims_one_newline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_refuses_open_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_refuses_symlink_dir_missing_relative,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_refuses_foreign_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_and_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_forms, setup, teardown),
	};
	return cmocka_run_group_tests_name("hsm_pin", tests, NULL, NULL);
}
