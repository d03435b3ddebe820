/*
 * The issuer certificate's verdict for the signer's TBS checks (hsm/signer_check.c), and the
 * cache that keeps it: the same few issuer-certificate bytes arrive with every certificate to
 * sign, so they are parsed and compared with the HSM key once per (bytes, key).
 */
#include "hsm/signer_issuer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* A name for a message, RFC 2253, truncated to fit. */
void signer_name_str(const X509_NAME *name, char *dst, size_t size)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int n = 0;

	dst[0] = '\0';
	if (bio == NULL)
		return;
	if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0)
		n = BIO_read(bio, dst, (int)size - 1);
	dst[n > 0 ? n : 0] = '\0';
	BIO_free(bio);
}

/*
 * The issuer-certificate cache. An entry is the issuer certificate's exact DER bytes (compared
 * in full, not by a hash) together with the HSM key it was checked against, the parsed
 * certificate and whether its public key is that key. The key is held by pointer with a
 * reference taken, so while the entry lives no other key can appear at that address; the
 * signer keeps one EVP_PKEY per key URI for the life of the process. Only certificates that
 * parsed are kept: a refusal for bad bytes is recomputed each time.
 */
#define ISSUER_CACHE	 8
#define ISSUER_CACHE_DER (64 * 1024) /* larger issuer certificates are checked, not kept */

struct issuer_entry {
	EVP_PKEY *key; /* NULL: the slot is free */
	uint8_t *der;
	size_t der_len;
	X509 *cert;
	bool key_ok;
	const char *problem; /* why the certificate cannot be a signing CA's; NULL: none */
	uint64_t used;
};

static struct {
	pthread_mutex_t lock;
	struct issuer_entry e[ISSUER_CACHE];
	uint64_t clock;
} issuers = {.lock = PTHREAD_MUTEX_INITIALIZER};

void signer_issuer_verdict(X509 *ca, bool key_ok, const char *problem, const X509_NAME *name,
			   struct issuer_verdict *v)
{
	v->name_ok = X509_NAME_cmp(name, X509_get_subject_name(ca)) == 0;
	v->key_ok = key_ok;
	v->problem = problem;
	v->key_usage = X509_get_key_usage(ca);
	v->subject[0] = '\0';
	if (!v->name_ok)
		signer_name_str(X509_get_subject_name(ca), v->subject, sizeof(v->subject));
}

static struct issuer_entry *issuer_find(const uint8_t *der, size_t der_len, EVP_PKEY *key)
{
	for (size_t i = 0; i < ISSUER_CACHE; i++) {
		struct issuer_entry *e = &issuers.e[i];
		if (e->key == key && e->der_len == der_len && memcmp(e->der, der, der_len) == 0)
			return e;
	}
	return NULL;
}

/* The verdict for a cached issuer certificate; false when it is not cached. The comparison
 * runs under the lock, so the shared X509 is only read while no entry can be replaced. */
bool signer_issuer_cached(const uint8_t *der, size_t der_len, EVP_PKEY *key, const X509_NAME *name,
			  struct issuer_verdict *v)
{
	pthread_mutex_lock(&issuers.lock);
	struct issuer_entry *e = issuer_find(der, der_len, key);
	if (e != NULL) {
		e->used = ++issuers.clock;
		signer_issuer_verdict(e->cert, e->key_ok, e->problem, name, v);
	}
	pthread_mutex_unlock(&issuers.lock);
	return e != NULL;
}

static void issuer_entry_clear(struct issuer_entry *e)
{
	EVP_PKEY_free(e->key);
	X509_free(e->cert);
	free(e->der);
	memset(e, 0, sizeof(*e));
}

/* Keep a checked issuer certificate, replacing the least recently used entry. Takes *ca
 * (sets it to NULL) when it is kept. Failing to cache only costs the next call a parse. */
void signer_issuer_keep(const uint8_t *der, size_t der_len, EVP_PKEY *key, X509 **ca, bool key_ok,
			const char *problem)
{
	uint8_t *copy = NULL;

	if (der_len > ISSUER_CACHE_DER || (copy = malloc(der_len)) == NULL)
		return;
	memcpy(copy, der, der_len);
	pthread_mutex_lock(&issuers.lock);
	struct issuer_entry *slot = issuer_find(der, der_len, key);
	if (slot != NULL) { /* another thread kept it first */
		free(copy);
		goto out;
	}
	slot = &issuers.e[0];
	for (size_t i = 1; i < ISSUER_CACHE && slot->key != NULL; i++)
		if (issuers.e[i].key == NULL || issuers.e[i].used < slot->used)
			slot = &issuers.e[i];
	if (EVP_PKEY_up_ref(key) != 1) {
		free(copy);
		goto out;
	}
	issuer_entry_clear(slot);
	*slot = (struct issuer_entry){.key = key,
				      .der = copy,
				      .der_len = der_len,
				      .cert = *ca,
				      .key_ok = key_ok,
				      .problem = problem,
				      .used = ++issuers.clock};
	*ca = NULL;
out:
	pthread_mutex_unlock(&issuers.lock);
}
