#include "common/secret.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SECRET_MAX_CAPACITY 65536

/* The header lives in the same locked mapping as the bytes, so nothing about the secret
 * (not even its length) sits in ordinary heap memory. */
struct p11ca_secret {
	size_t map_len;
	size_t capacity;
	size_t len;
	uint8_t bytes[];
};

enum p11ca_err p11ca_secret_new(size_t capacity, struct p11ca_secret **out, struct p11ca_errmsg *em)
{
	*out = NULL;
	if (capacity == 0 || capacity > SECRET_MAX_CAPACITY)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "secret capacity %zu is outside 1..%d bytes", capacity,
				  SECRET_MAX_CAPACITY);

	long page = sysconf(_SC_PAGESIZE);
	size_t need = sizeof(struct p11ca_secret) + capacity;
	size_t map_len = (need + (size_t)page - 1) / (size_t)page * (size_t)page;

	void *p = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return p11ca_fail(em, P11CA_E_NOMEM, "cannot map %zu bytes for a secret: %s",
				  map_len, strerror(errno));
	if (mlock(p, map_len) != 0) {
		int e = errno;
		munmap(p, map_len);
		return p11ca_fail(em, P11CA_E_NOMEM,
				  "cannot lock memory for a secret (%s); raise the memlock limit "
				  "(ulimit -l, or LimitMEMLOCK= in the systemd unit)",
				  strerror(e));
	}
	/* Best effort on kernels that lack them; the mlock above is the hard requirement. */
	(void)madvise(p, map_len, MADV_DONTDUMP);
	(void)madvise(p, map_len, MADV_WIPEONFORK);

	struct p11ca_secret *s = p;
	s->map_len = map_len;
	s->capacity = capacity;
	s->len = 0;
	*out = s;
	return P11CA_OK;
}

enum p11ca_err p11ca_secret_set(struct p11ca_secret *s, const void *data, size_t len,
				struct p11ca_errmsg *em)
{
	p11ca_secret_wipe(s);
	if (len > s->capacity)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "secret of %zu bytes exceeds its %zu-byte limit", len,
				  s->capacity);
	if (len > 0)
		memcpy(s->bytes, data, len);
	s->len = len;
	return P11CA_OK;
}

const uint8_t *p11ca_secret_data(const struct p11ca_secret *s)
{
	return s->bytes;
}

size_t p11ca_secret_len(const struct p11ca_secret *s)
{
	return s->len;
}

size_t p11ca_secret_capacity(const struct p11ca_secret *s)
{
	return s->capacity;
}

uint8_t *p11ca_secret_buffer(struct p11ca_secret *s)
{
	return s->bytes;
}

void p11ca_secret_set_len(struct p11ca_secret *s, size_t len)
{
	s->len = len <= s->capacity ? len : s->capacity;
}

void p11ca_secret_wipe(struct p11ca_secret *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s->bytes, s->capacity);
	s->len = 0;
}

void p11ca_secret_free(struct p11ca_secret **sp)
{
	if (sp == NULL || *sp == NULL)
		return;
	struct p11ca_secret *s = *sp;
	size_t map_len = s->map_len;
	explicit_bzero(s, map_len);
	munlock(s, map_len);
	munmap(s, map_len);
	*sp = NULL;
}
