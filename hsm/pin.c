#include "hsm/pin.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/kconfig.h"

/* Read until EOF into locked memory. Room for the limit plus "\r\n" plus one byte, so an
 * over-long PIN is refused rather than silently truncated. */
static enum p11ca_err pin_read_all(int fd, const char *what, struct p11ca_secret **out,
				   struct p11ca_errmsg *em)
{
	struct p11ca_secret *s = NULL;
	enum p11ca_err err = p11ca_secret_new(CONFIG_HSM_PIN_MAX_LEN + 3, &s, em);
	if (err != P11CA_OK)
		return err;

	uint8_t *buf = p11ca_secret_buffer(s);
	size_t cap = p11ca_secret_capacity(s), len = 0;
	for (;;) {
		if (len == cap)
			break; /* too long: refused below */
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = p11ca_fail(em, P11CA_E_PIN_SOURCE, "cannot read PIN from %s: %s",
					 what, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	/* Editors and `echo` add a newline; tokens do not expect one. */
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len == 0) {
		err = p11ca_fail(em, P11CA_E_PIN_SOURCE, "PIN from %s is empty", what);
		goto out;
	}
	if (len > CONFIG_HSM_PIN_MAX_LEN) {
		err = p11ca_fail(em, P11CA_E_PIN_SOURCE,
				 "PIN from %s is longer than %d bytes; check that it holds only "
				 "the PIN",
				 what, CONFIG_HSM_PIN_MAX_LEN);
		goto out;
	}
	p11ca_secret_set_len(s, len);
	*out = s;
	s = NULL;
	err = P11CA_OK;
out:
	p11ca_secret_free(&s);
	return err;
}

enum p11ca_err hsm_pin_from_file(const char *path, struct p11ca_secret **out,
				 struct p11ca_errmsg *em)
{
	*out = NULL;
	if (path == NULL || path[0] != '/')
		return p11ca_fail(em, P11CA_E_PIN_SOURCE, "PIN file '%s' is not an absolute path",
				  path ? path : "(null)");

	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0) {
		if (errno == ELOOP)
			return p11ca_fail(em, P11CA_E_PIN_SOURCE,
					  "PIN file %s is a symbolic link; point the "
					  "configuration at the file itself",
					  path);
		return p11ca_fail(em, P11CA_E_PIN_SOURCE, "cannot open PIN file %s: %s", path,
				  strerror(errno));
	}

	enum p11ca_err err;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		err = p11ca_fail(em, P11CA_E_PIN_SOURCE, "cannot stat PIN file %s: %s", path,
				 strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		err = p11ca_fail(em, P11CA_E_PIN_SOURCE, "PIN file %s is not a regular file", path);
		goto out;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		err = p11ca_fail(em, P11CA_E_PIN_SOURCE,
				 "PIN file %s is owned by uid %u, not by this process (uid %u) "
				 "or root; chown it",
				 path, (unsigned)st.st_uid, (unsigned)geteuid());
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		err = p11ca_fail(em, P11CA_E_PIN_SOURCE,
				 "PIN file %s is accessible to group or others (mode %04o); "
				 "run: chmod 600 %s",
				 path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	err = pin_read_all(fd, path, out, em);
out:
	close(fd);
	return err;
}

enum p11ca_err hsm_pin_from_fd(int fd, struct p11ca_secret **out, struct p11ca_errmsg *em)
{
	*out = NULL;
	if (fd < 0)
		return p11ca_fail(em, P11CA_E_PIN_SOURCE, "invalid PIN descriptor %d", fd);
	char what[32];
	snprintf(what, sizeof(what), "descriptor %d", fd);
	return pin_read_all(fd, what, out, em);
}

enum p11ca_err hsm_pin_from_source(const char *src, struct p11ca_secret **out,
				   struct p11ca_errmsg *em)
{
	*out = NULL;
	if (src == NULL || src[0] == '\0')
		return p11ca_fail(em, P11CA_E_PIN_SOURCE, "empty pin-source");
	if (strncmp(src, "file:", 5) == 0)
		return hsm_pin_from_file(src + 5, out, em);
	if (src[0] == '/')
		return hsm_pin_from_file(src, out, em);
	if (strncmp(src, "credential:", 11) == 0) {
		const char *name = src + 11;
		const char *dir = getenv("CREDENTIALS_DIRECTORY");
		if (name[0] == '\0' || strchr(name, '/') != NULL)
			return p11ca_fail(em, P11CA_E_PIN_SOURCE,
					  "pin-source '%s': a credential name has no '/'", src);
		if (dir == NULL || dir[0] != '/')
			return p11ca_fail(em, P11CA_E_PIN_SOURCE,
					  "pin-source '%s' needs a systemd credential, but "
					  "CREDENTIALS_DIRECTORY is not set; add "
					  "LoadCredential=%s:/path/to/pin to the unit",
					  src, name);
		char path[PATH_MAX];
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
			return p11ca_fail(em, P11CA_E_PIN_SOURCE, "credential path too long");
		return hsm_pin_from_file(path, out, em);
	}
	return p11ca_fail(em, P11CA_E_PIN_SOURCE,
			  "pin-source '%s' is not supported; use file:/path, an absolute path, "
			  "or credential:NAME",
			  src);
}
