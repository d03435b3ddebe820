/*
 * Parsed CA certificates, cached per engine. Every issuance needs the issuer's X509 (for
 * the issuer name and key identifier) and its key type; parsing the DER again costs
 * ~100-130 µs per request. An entry is served only while the record's DER is byte-for-byte
 * the DER it was parsed from, so a changed or replaced record can never be answered from a
 * stale parse: the record read in the caller's transaction stays the source of truth.
 *
 * Entries are shared between worker threads: a hit hands out its own reference
 * (X509_up_ref), so an entry may be replaced while a request still uses the old X509.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "appliance/engine/engine_internal.h"

void engine_ca_cache_init(struct engine_ca_cache *cache)
{
	memset(cache, 0, sizeof(*cache));
	pthread_mutex_init(&cache->lock, NULL);
}

static void slot_clear(struct engine_ca_cache_slot *s)
{
	X509_free(s->cert);
	OPENSSL_free(s->der);
	memset(s, 0, sizeof(*s));
}

void engine_ca_cache_destroy(struct engine_ca_cache *cache)
{
	if (cache == NULL)
		return;
	for (size_t i = 0; i < ENGINE_CA_CACHE_SLOTS; i++)
		slot_clear(&cache->slot[i]);
	pthread_mutex_destroy(&cache->lock);
}

static bool slot_matches(const struct engine_ca_cache_slot *s, const struct store_ca *rec)
{
	return s->cert != NULL && s->id == rec->id && s->der_len == rec->cert_der_len &&
	       memcmp(s->der, rec->cert_der, rec->cert_der_len) == 0;
}

bool engine_ca_cache_get(struct engine_ca_cache *cache, struct engine_ca *ca)
{
	bool hit = false;
	if (cache == NULL || ca->rec.cert_der_len == 0)
		return false;
	pthread_mutex_lock(&cache->lock);
	for (size_t i = 0; i < ENGINE_CA_CACHE_SLOTS && !hit; i++) {
		struct engine_ca_cache_slot *s = &cache->slot[i];
		if (!slot_matches(s, &ca->rec) || X509_up_ref(s->cert) != 1)
			continue;
		X509_free(ca->cert);
		ca->cert = s->cert;
		ca->key_type = s->key_type;
		ca->alg = s->alg;
		ca->not_after = s->not_after;
		s->used = ++cache->tick;
		hit = true;
	}
	if (hit)
		cache->hits++;
	else
		cache->misses++;
	pthread_mutex_unlock(&cache->lock);
	return hit;
}

void engine_ca_cache_put(struct engine_ca_cache *cache, const struct engine_ca *ca)
{
	if (cache == NULL || ca->cert == NULL || ca->rec.cert_der_len == 0)
		return;
	/* Copies made outside the lock; a failed copy only means no caching. */
	uint8_t *der = OPENSSL_memdup(ca->rec.cert_der, ca->rec.cert_der_len);
	if (der == NULL || X509_up_ref(ca->cert) != 1) {
		OPENSSL_free(der);
		return;
	}
	pthread_mutex_lock(&cache->lock);
	/* The CA's own slot if it has one (its record changed), else the least recently used. */
	struct engine_ca_cache_slot *victim = &cache->slot[0];
	for (size_t i = 0; i < ENGINE_CA_CACHE_SLOTS; i++) {
		struct engine_ca_cache_slot *s = &cache->slot[i];
		if (s->cert != NULL && s->id == ca->rec.id) {
			victim = s;
			break;
		}
		if (s->used < victim->used)
			victim = s;
	}
	slot_clear(victim);
	victim->id = ca->rec.id;
	victim->der = der;
	victim->der_len = ca->rec.cert_der_len;
	victim->cert = ca->cert;
	victim->key_type = ca->key_type;
	victim->alg = ca->alg;
	victim->not_after = ca->not_after;
	victim->used = ++cache->tick;
	pthread_mutex_unlock(&cache->lock);
}

void engine_ca_cache_counters(struct engine_ca_cache *cache, unsigned long *hits,
			      unsigned long *misses)
{
	pthread_mutex_lock(&cache->lock);
	if (hits != NULL)
		*hits = cache->hits;
	if (misses != NULL)
		*misses = cache->misses;
	pthread_mutex_unlock(&cache->lock);
}
