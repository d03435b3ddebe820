/*
 * The CA cache (ca_cache.c) through engine_ca_parse_cached: hits share one parse, a record
 * whose id or DER differs is never answered from the cache, eviction keeps handed-out
 * references valid, and concurrent workers agree.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "appliance/engine/engine_internal.h"

/* A self-signed P-256 certificate named CN=name, valid for `days`, as CA record `id`. */
static struct engine_ca *ca_new(uint32_t id, const char *name, long days)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	assert_non_null(key);
	assert_non_null(x);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)name, -1, -1, 0);
	X509_set_issuer_name(x, n);
	ASN1_INTEGER_set(X509_get_serialNumber(x), id);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), days * 86400);
	X509_set_pubkey(x, key);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);

	struct engine_ca *ca = calloc(1, sizeof(*ca));
	assert_non_null(ca);
	ca->rec.id = id;
	snprintf(ca->rec.name, sizeof(ca->rec.name), "%s", name);
	unsigned char *p = ca->rec.cert_der;
	ca->rec.cert_der_len = (size_t)i2d_X509(x, &p);
	ca->rec.state = STORE_CA_ACTIVE;
	X509_free(x);
	EVP_PKEY_free(key);
	return ca;
}

static struct engine_ca *ca_copy(const struct engine_ca *from)
{
	struct engine_ca *ca = calloc(1, sizeof(*ca));
	assert_non_null(ca);
	ca->rec = from->rec;
	return ca;
}

static void ca_free(struct engine_ca **ca)
{
	engine_ca_clear(*ca);
	free(*ca);
	*ca = NULL;
}

static void cn_is(const struct engine_ca *ca, const char *want)
{
	char text[256];
	struct p11ca_errmsg em = {0};
	assert_non_null(ca->cert);
	assert_int_equal(x509_name_format(X509_get_subject_name(ca->cert), text, sizeof(text), &em),
			 P11CA_OK);
	assert_non_null(strstr(text, want));
}

static void counters_are(struct engine_ca_cache *cache, unsigned long hits, unsigned long misses)
{
	unsigned long h = 0, m = 0;
	engine_ca_cache_counters(cache, &h, &m);
	assert_int_equal(h, hits);
	assert_int_equal(m, misses);
}

static void test_hit_shares_the_parse(void **state)
{
	(void)state;
	struct engine_ca_cache cache;
	struct p11ca_errmsg em = {0};
	engine_ca_cache_init(&cache);
	struct engine_ca *a = ca_new(1, "root", 30), *b = ca_copy(a);

	assert_int_equal(engine_ca_parse_cached(&cache, a, &em), P11CA_OK);
	counters_are(&cache, 0, 1);
	assert_int_equal(engine_ca_parse_cached(&cache, b, &em), P11CA_OK);
	counters_are(&cache, 1, 1);
	assert_ptr_equal(a->cert, b->cert);
	assert_int_equal(b->key_type, HSM_KEY_P256);
	assert_int_equal(b->alg, HSM_SIG_ECDSA_SHA256);
	assert_true(b->not_after > engine_now() + 29 * 86400);
	assert_int_equal(a->not_after, b->not_after);

	/* Each holder owns a reference: freeing one (and the cache) leaves the other valid. */
	ca_free(&a);
	engine_ca_cache_destroy(&cache);
	cn_is(b, "root");
	ca_free(&b);
}

static void test_changed_record_is_not_served(void **state)
{
	(void)state;
	struct engine_ca_cache cache;
	struct p11ca_errmsg em = {0};
	engine_ca_cache_init(&cache);
	struct engine_ca *old = ca_new(1, "old", 30), *renewed = ca_new(1, "renewed", 60);
	struct engine_ca *other_id = ca_copy(old), *corrupt = ca_copy(old);

	assert_int_equal(engine_ca_parse_cached(&cache, old, &em), P11CA_OK);
	/* Same id, other certificate: parsed afresh and replaces the entry. */
	assert_int_equal(engine_ca_parse_cached(&cache, renewed, &em), P11CA_OK);
	counters_are(&cache, 0, 2);
	cn_is(renewed, "renewed");
	assert_ptr_not_equal(old->cert, renewed->cert);
	/* Same DER, other id: not the cached CA. */
	other_id->rec.id = 2;
	assert_int_equal(engine_ca_parse_cached(&cache, other_id, &em), P11CA_OK);
	counters_are(&cache, 0, 3);
	/* A damaged record is refused even though a parse of the same id is cached. */
	corrupt->rec.id = 2;
	corrupt->rec.cert_der[corrupt->rec.cert_der_len / 2] ^= 0xff;
	corrupt->rec.cert_der_len -= 1;
	p11ca_errmsg_clear(&em);
	assert_int_equal(engine_ca_parse_cached(&cache, corrupt, &em), P11CA_E_STORAGE_CORRUPT);
	assert_null(corrupt->cert);
	assert_non_null(strstr(em.text, "does not parse"));

	ca_free(&old);
	ca_free(&renewed);
	ca_free(&other_id);
	ca_free(&corrupt);
	engine_ca_cache_destroy(&cache);
}

static void test_eviction_keeps_references(void **state)
{
	(void)state;
	struct engine_ca_cache cache;
	struct p11ca_errmsg em = {0};
	struct engine_ca *cas[ENGINE_CA_CACHE_SLOTS + 2];
	size_t n = sizeof(cas) / sizeof(cas[0]);
	engine_ca_cache_init(&cache);
	for (size_t i = 0; i < n; i++) {
		char name[16];
		snprintf(name, sizeof(name), "ca%zu", i);
		cas[i] = ca_new((uint32_t)i + 1, name, 30);
		assert_int_equal(engine_ca_parse_cached(&cache, cas[i], &em), P11CA_OK);
	}
	counters_are(&cache, 0, n);
	/* The two least recently used went; the others are still served. */
	struct engine_ca *again = ca_copy(cas[n - 1]), *first = ca_copy(cas[0]);
	assert_int_equal(engine_ca_parse_cached(&cache, again, &em), P11CA_OK);
	counters_are(&cache, 1, n);
	assert_ptr_equal(again->cert, cas[n - 1]->cert);
	assert_int_equal(engine_ca_parse_cached(&cache, first, &em), P11CA_OK);
	counters_are(&cache, 1, n + 1);
	cn_is(cas[0], "ca0");
	cn_is(first, "ca0");
	for (size_t i = 0; i < n; i++)
		ca_free(&cas[i]);
	ca_free(&again);
	ca_free(&first);
	engine_ca_cache_destroy(&cache);
}

static void test_no_cache_and_pending(void **state)
{
	(void)state;
	struct engine_ca_cache cache;
	struct p11ca_errmsg em = {0};
	engine_ca_cache_init(&cache);
	struct engine_ca *a = ca_new(1, "root", 30), *pending = ca_copy(a);

	assert_false(engine_ca_cache_get(NULL, a));
	assert_int_equal(engine_ca_parse_cached(NULL, a, &em), P11CA_OK);
	cn_is(a, "root");
	engine_ca_cache_put(NULL, a); /* no effect, no crash */
	/* Nothing was cached through a NULL cache. */
	assert_false(engine_ca_cache_get(&cache, a));

	pending->rec.cert_der_len = 0;
	assert_int_equal(engine_ca_parse_cached(&cache, pending, &em), P11CA_OK);
	assert_null(pending->cert);
	assert_int_equal(pending->key_type, HSM_KEY_UNSPECIFIED);
	assert_int_equal(pending->not_after, 0);
	ca_free(&a);
	ca_free(&pending);
	engine_ca_cache_destroy(&cache);
	engine_ca_cache_destroy(NULL);
}

struct worker {
	struct engine_ca_cache *cache;
	const struct engine_ca *src[2];
	int failures;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 200; i++) {
		const struct engine_ca *src = w->src[i % 2];
		struct engine_ca *ca = ca_copy(src);
		struct p11ca_errmsg em = {0};
		if (engine_ca_parse_cached(w->cache, ca, &em) != P11CA_OK ||
		    X509_cmp(ca->cert, src->cert) != 0)
			w->failures++;
		ca_free(&ca);
	}
	return NULL;
}

static void test_concurrent_workers(void **state)
{
	(void)state;
	struct engine_ca_cache cache;
	struct p11ca_errmsg em = {0};
	engine_ca_cache_init(&cache);
	/* Two CAs parsed without the cache: the reference each worker compares against. */
	struct engine_ca *a = ca_new(1, "a", 30), *b = ca_new(2, "b", 30);
	assert_int_equal(engine_ca_parse(a, &em), P11CA_OK);
	assert_int_equal(engine_ca_parse(b, &em), P11CA_OK);
	struct worker w[4];
	pthread_t t[4];
	for (size_t i = 0; i < 4; i++) {
		w[i] = (struct worker){.cache = &cache, .src = {a, b}};
		assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	}
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
	unsigned long hits = 0, misses = 0;
	engine_ca_cache_counters(&cache, &hits, &misses);
	assert_int_equal(hits + misses, 800);
	assert_true(misses >= 2);
	ca_free(&a);
	ca_free(&b);
	engine_ca_cache_destroy(&cache);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit_shares_the_parse),
		cmocka_unit_test(test_changed_record_is_not_served),
		cmocka_unit_test(test_eviction_keeps_references),
		cmocka_unit_test(test_no_cache_and_pending),
		cmocka_unit_test(test_concurrent_workers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
