/*
 * Files that `p11cad init` writes, made safe against a hostile file system: output
 * directories are opened once, checked (ours, not group/other-writable) and every file is
 * made relative to that descriptor, so a directory swapped or planted by someone else
 * between the check and the write cannot receive a private key. Private keys appear under
 * their name only complete (unnamed or randomly named, fsynced, then linked); public
 * certificates are replaced atomically; the roles file is only appended to.
 */
#include "appliance/engine/outdir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "appliance/engine/engine_internal.h"

#define ROLES_MAX (1024 * 1024) /* a roles file is a few lines; refuse to slurp anything big */

static enum p11ca_err write_all(int fd, const void *data, size_t len, const char *dir,
				const char *name, struct p11ca_errmsg *em)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return p11ca_fail(em, P11CA_E_IO, "cannot write %s%s%s: %s", dir,
					  name[0] != '\0' ? "/" : "", name, strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	return P11CA_OK;
}

static enum p11ca_err dir_sync(const struct outdir *d, struct p11ca_errmsg *em)
{
	if (fsync(d->fd) != 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot sync directory %s: %s", d->path,
				  strerror(errno));
	return P11CA_OK;
}

/* mkdir (an existing one is fine), then open it without following a symlink and refuse a
 * directory another user owns or may write into: they could swap our files. */
enum p11ca_err outdir_open(const char *path, const char *what, struct outdir *d,
			   struct p11ca_errmsg *em)
{
	struct stat sb;
	d->fd = -1;
	d->path = path;
	if (path[0] == '\0')
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "no directory given for %s", what);
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return p11ca_fail(em, P11CA_E_IO, "cannot create %s directory %s: %s", what, path,
				  strerror(errno));
	d->fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (d->fd < 0)
		return p11ca_fail(em, P11CA_E_IO,
				  "cannot open %s directory %s: %s (it must be a real directory, "
				  "not a symbolic link)",
				  what, path, strerror(errno));
	if (fstat(d->fd, &sb) != 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot stat %s: %s", path, strerror(errno));
	if (sb.st_uid != geteuid())
		return p11ca_fail(em, P11CA_E_PERMISSION,
				  "%s directory %s is owned by uid %u, not by p11cad (uid %u): "
				  "chown it to uid %u or choose another directory",
				  what, path, (unsigned)sb.st_uid, (unsigned)geteuid(),
				  (unsigned)geteuid());
	if ((sb.st_mode & 022) != 0)
		return p11ca_fail(em, P11CA_E_PERMISSION,
				  "%s directory %s is writable by group or others (mode %03o): "
				  "run chmod go-w %s, or choose another directory",
				  what, path, (unsigned)(sb.st_mode & 0777), path);
	return P11CA_OK;
}

void outdir_close(struct outdir *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
}

bool outdir_has(const struct outdir *d, const char *name)
{
	struct stat sb;
	return fstatat(d->fd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Fills a new file; must not close fd. */
typedef enum p11ca_err (*fill_fn)(int fd, const void *arg, const struct outdir *d, const char *name,
				  struct p11ca_errmsg *em);

/* A random visible name beside the target, for when O_TMPFILE is not supported. */
static enum p11ca_err temp_name(const char *name, char tmp[96], struct p11ca_errmsg *em)
{
	uint8_t rnd[12];
	char hex[2 * sizeof(rnd) + 1];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return p11ca_fail(em, P11CA_E_INTERNAL, "no random bytes for a temporary name");
	engine_hex_format(rnd, sizeof(rnd), hex);
	snprintf(tmp, 96, ".%.40s.%s", name, hex);
	return P11CA_OK;
}

/*
 * Write a new file `name` in d: filled and fsynced under no name (O_TMPFILE) or a random
 * one, then linked in place — link fails on an existing name, so nothing is replaced and a
 * crash never leaves a truncated file under `name` — and the directory is fsynced.
 * replace: rename over an existing file instead (certificates, which are public).
 */
static enum p11ca_err file_write_at(const struct outdir *d, const char *name, mode_t mode,
				    bool replace, fill_fn fill, const void *arg,
				    struct p11ca_errmsg *em)
{
	char tmp[96] = "", proc[64];
	enum p11ca_err err = P11CA_OK;
	int fd = -1;
	if (!replace)
		fd = openat(d->fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
	if (fd < 0) {
		err = temp_name(name, tmp, em);
		if (err != P11CA_OK)
			return err;
		fd = openat(d->fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return p11ca_fail(em, P11CA_E_IO, "cannot create a file in %s: %s", d->path,
					  strerror(errno));
	}
	if (fchmod(fd, mode) != 0)
		err = p11ca_fail(em, P11CA_E_IO, "cannot chmod %s/%s: %s", d->path, name,
				 strerror(errno));
	if (err == P11CA_OK)
		err = fill(fd, arg, d, name, em);
	if (err == P11CA_OK && fsync(fd) != 0)
		err = p11ca_fail(em, P11CA_E_IO, "cannot sync %s/%s: %s", d->path, name,
				 strerror(errno));
	if (err != P11CA_OK)
		goto out;
	int rc;
	if (tmp[0] == '\0') {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		rc = linkat(AT_FDCWD, proc, d->fd, name, AT_SYMLINK_FOLLOW);
		if (rc != 0 && errno == ENOENT) /* no /proc: needs CAP_DAC_READ_SEARCH */
			rc = linkat(fd, "", d->fd, name, AT_EMPTY_PATH);
	} else if (replace) {
		rc = renameat(d->fd, tmp, d->fd, name);
	} else {
		rc = linkat(d->fd, tmp, d->fd, name, 0);
	}
	if (rc != 0 && errno == EEXIST)
		err = p11ca_fail(em, P11CA_E_IO,
				 "%s/%s exists already (left by an interrupted init?): move it "
				 "away and run init again",
				 d->path, name);
	else if (rc != 0)
		err = p11ca_fail(em, P11CA_E_IO, "cannot create %s/%s: %s", d->path, name,
				 strerror(errno));
	if (err == P11CA_OK)
		err = dir_sync(d, em);
out:
	close(fd);
	if (tmp[0] != '\0')
		unlinkat(d->fd, tmp, 0); /* ENOENT after a rename */
	return err;
}

struct bytes {
	const void *data;
	size_t len;
};

static enum p11ca_err fill_bytes(int fd, const void *arg, const struct outdir *d, const char *name,
				 struct p11ca_errmsg *em)
{
	const struct bytes *b = arg;
	return write_all(fd, b->data, b->len, d->path, name, em);
}

/* PEM PKCS#8 straight into the file: no memory BIO grows and frees copies of the key. */
static enum p11ca_err fill_key(int fd, const void *arg, const struct outdir *d, const char *name,
			       struct p11ca_errmsg *em)
{
	BIO *bio = BIO_new_fd(fd, BIO_NOCLOSE);
	int ok = bio != NULL &&
		 PEM_write_bio_PrivateKey(bio, (EVP_PKEY *)arg, NULL, NULL, 0, NULL, NULL) == 1 &&
		 BIO_flush(bio) == 1;
	BIO_free(bio);
	if (!ok)
		return p11ca_fail(em, P11CA_E_IO, "cannot write the private key %s/%s: %s", d->path,
				  name, strerror(errno));
	return P11CA_OK;
}

enum p11ca_err outdir_key_write(const struct outdir *d, const char *name, EVP_PKEY *key,
				struct p11ca_errmsg *em)
{
	return file_write_at(d, name, 0600, false, fill_key, key, em);
}

enum p11ca_err outdir_public_write(const struct outdir *d, const char *name, const void *data,
				   size_t len, struct p11ca_errmsg *em)
{
	struct bytes b = {data, len};
	return file_write_at(d, name, 0644, true, fill_bytes, &b, em);
}

/* Whether a roles line names fp_hex (colons allowed, any case), whatever its role. */
static bool roles_has(const char *text, size_t len, const char *fp_hex)
{
	size_t i = 0;
	while (i < len) {
		size_t end = i;
		while (end < len && text[end] != '\n')
			end++;
		size_t k = 0, j = i;
		while (j < end && (text[j] == ' ' || text[j] == '\t'))
			j++;
		for (; j < end && text[j] != ' ' && text[j] != '\t' && text[j] != '#'; j++) {
			if (text[j] == ':')
				continue;
			if (fp_hex[k] == '\0' || strncasecmp(&text[j], &fp_hex[k], 1) != 0)
				break;
			k++;
		}
		bool token_end = j == end || text[j] == ' ' || text[j] == '\t' || text[j] == '#';
		if (fp_hex[k] == '\0' && token_end)
			return true;
		i = end + 1;
	}
	return false;
}

/* Make fp_hex an admin in the roles file unless a line names it already: an init that
 * stopped after writing admin.crt gets its role on the next run, and only once. */
enum p11ca_err outdir_roles_ensure(const char *path, const char *fp_hex, struct p11ca_errmsg *em)
{
	char line[256], date[32];
	char *text = NULL;
	struct stat sb;
	enum p11ca_err err = P11CA_OK;
	int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return p11ca_fail(em, P11CA_E_IO, "cannot open roles file %s: %s", path,
				  strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > ROLES_MAX) {
		err = p11ca_fail(em, P11CA_E_IO,
				 "roles file %s is not a regular file under %d bytes: fix it", path,
				 ROLES_MAX);
		goto out;
	}
	size_t len = (size_t)sb.st_size;
	if ((text = malloc(len + 1)) == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	if (pread(fd, text, len, 0) != (ssize_t)len) {
		err = p11ca_fail(em, P11CA_E_IO, "cannot read roles file %s: %s", path,
				 strerror(errno));
		goto out;
	}
	if (roles_has(text, len, fp_hex))
		goto out;
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d", &tm);
	int n = snprintf(line, sizeof(line), "%s%s admin   # added by p11cad init %s\n",
			 len > 0 && text[len - 1] != '\n' ? "\n" : "", fp_hex, date);
	err = write_all(fd, line, (size_t)n, path, "", em);
	if (err == P11CA_OK && fsync(fd) != 0)
		err = p11ca_fail(em, P11CA_E_IO, "cannot sync roles file %s: %s", path,
				 strerror(errno));
out:
	free(text);
	close(fd);
	return err;
}
