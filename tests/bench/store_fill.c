/*
 * p11ca-bench-store's database: --count rows through store_cert_import, in durable write
 * transactions of --batch, each with its audit record as the engine would write it.
 *
 * The rows are one real P-256 leaf certificate made once with OpenSSL, with each row's
 * serial written over the template's: storage checks the DER structure and the serial,
 * not the signature, so this is what it stores for real certificates of that size.
 */
#include "tests/bench/store_bench.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tests/bench/bench.h"

/* xorshift64*: reproducible rows, and cheap next to what is measured. */
uint64_t store_bench_rnd(struct store_bench *b)
{
	b->rng ^= b->rng >> 12;
	b->rng ^= b->rng << 25;
	b->rng ^= b->rng >> 27;
	return b->rng * UINT64_C(2685821657736338717);
}

/* The form store_serial_alloc draws: 20 bytes, first byte 0x01..0x7f. */
void store_bench_serial_draw(struct store_bench *b, uint8_t s[STORE_SERIAL_LEN])
{
	for (size_t i = 0; i < STORE_SERIAL_LEN; i += 8) {
		uint64_t v = store_bench_rnd(b);
		size_t n = STORE_SERIAL_LEN - i < 8 ? STORE_SERIAL_LEN - i : 8;
		memcpy(s + i, &v, n);
	}
	s[0] = (uint8_t)(1 + s[0] % 0x7f);
}

/* ---- the template certificate ---------------------------------------------------------- */

bool store_bench_template_make(struct store_bench *b)
{
	static const uint8_t marker[STORE_SERIAL_LEN] = {0x5e, 0xc1, 0xa1, 0x5e, 0xc1, 0xa1, 0x5e,
							 0xc1, 0xa1, 0x5e, 0xc1, 0xa1, 0x5e, 0xc1,
							 0xa1, 0x5e, 0xc1, 0xa1, 0x5e, 0xc1};
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	BIGNUM *bn = BN_bin2bn(marker, sizeof(marker), NULL);
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX ctx;
	bool ok = false;
	uint8_t *der = NULL;
	static const char *const exts[][2] = {
		{"basicConstraints", "critical,CA:FALSE"},
		{"keyUsage", "critical,digitalSignature,keyEncipherment"},
		{"extendedKeyUsage", "serverAuth"},
		{"subjectAltName", "DNS:bench-leaf.example.org,DNS:www.bench-leaf.example.org"},
		{"subjectKeyIdentifier", "hash"},
		{"authorityInfoAccess", "OCSP;URI:http://ocsp.example.org/"},
		{"crlDistributionPoints", "URI:http://crl.example.org/ca.crl"},
	};
	if (key == NULL || x == NULL || bn == NULL || name == NULL || !X509_set_version(x, 2) ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					(const unsigned char *)"bench-leaf.example.org", -1, -1,
					0) ||
	    !X509_set_subject_name(x, name) || !X509_set_issuer_name(x, name) ||
	    X509_gmtime_adj(X509_getm_notBefore(x), 0) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 90L * STORE_BENCH_DAY) == NULL ||
	    !X509_set_pubkey(x, key))
		goto out;
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		X509_EXTENSION *e = X509V3_EXT_conf(NULL, &ctx, exts[i][0], exts[i][1]);
		bool added = e != NULL && X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
		if (!added)
			goto out;
	}
	if (X509_sign(x, key, EVP_sha256()) <= 0)
		goto out;
	int len = i2d_X509(x, &der);
	if (len <= 0 || (size_t)len > sizeof(b->der))
		goto out;
	uint8_t *at = memmem(der, (size_t)len, marker, sizeof(marker));
	if (at == NULL)
		goto out;
	memcpy(b->der, der, (size_t)len);
	b->der_len = (size_t)len;
	b->serial_off = (size_t)(at - der);
	ok = true;
out:
	if (!ok)
		fprintf(stderr, "p11ca-bench-store: cannot make the template certificate "
				"(OpenSSL)\n");
	OPENSSL_free(der);
	X509_NAME_free(name);
	BN_free(bn);
	X509_free(x);
	EVP_PKEY_free(key);
	return ok;
}

/* ---- fill -------------------------------------------------------------------------------- */

static const char *profile_draw(struct store_bench *b)
{
	unsigned v = (unsigned)(store_bench_rnd(b) % 100);
	return v < 75 ? "webserver" : v < 95 ? "client" : "ocsp";
}

static enum p11ca_err fill_cas(struct store_bench *b, struct p11ca_errmsg *em)
{
	struct store_txn *txn = NULL;
	struct store_ca *ca = calloc(1, sizeof(*ca));
	enum p11ca_err err = ca == NULL ? P11CA_E_NOMEM : P11CA_OK;
	if (err == P11CA_OK)
		err = store_txn_begin(b->st, STORE_TXN_WRITE, &txn, em);
	for (size_t i = 0; err == P11CA_OK && i < b->o.cas; i++) {
		memset(ca, 0, sizeof(*ca));
		snprintf(ca->name, sizeof(ca->name), "bench-%zu", i + 1);
		ca->subject_der_len = (size_t)snprintf(
			(char *)ca->subject_der, sizeof(ca->subject_der), "0\x0b CN=ca%zu", i);
		snprintf(ca->key_backend, sizeof(ca->key_backend), "pkcs11");
		snprintf(ca->key_uri, sizeof(ca->key_uri), "pkcs11:object=bench-%zu", i + 1);
		ca->state = STORE_CA_ACTIVE;
		err = store_ca_put(txn, ca, em);
	}
	if (err == P11CA_OK)
		err = store_audit_append(txn, "bench.ca", "bench", NULL, NULL, NULL, em);
	if (err == P11CA_OK)
		err = store_txn_commit(&txn, em);
	store_txn_abort(&txn);
	free(ca);
	return err;
}

/* One write transaction of rows [from, to): imports, 1 % of them revoked, one audit. */
static enum p11ca_err fill_batch(struct store_bench *b, size_t from, size_t to,
				 struct p11ca_errmsg *em)
{
	struct store_txn *txn = NULL;
	P11CA_GUARD(store_txn_begin(b->st, STORE_TXN_WRITE, &txn, em));
	enum p11ca_err err = P11CA_OK;
	for (size_t i = from; err == P11CA_OK && i < to; i++) {
		uint8_t *s = b->serials[i];
		uint32_t ca_id = (uint32_t)(1 + i % b->o.cas);
		/* Some already expired, the rest spread over two years. */
		int64_t not_after = b->now - 30 * STORE_BENCH_DAY +
				    (int64_t)(store_bench_rnd(b) % (760 * STORE_BENCH_DAY));
		const char *profile = profile_draw(b);
		do {
			store_bench_serial_draw(b, s);
			memcpy(b->der + b->serial_off, s, STORE_SERIAL_LEN);
			err = store_cert_import(txn, ca_id, s, b->der, b->der_len, not_after,
						profile, "bench", NULL, 0, em);
		} while (err == P11CA_E_STORAGE_EXISTS);
		if (err == P11CA_OK && store_bench_rnd(b) % 1000 < b->rep.revoked_permille) {
			struct store_revocation rev = {.reason = 4, .revoked_at = b->now};
			err = store_cert_revoke(txn, ca_id, s, &rev, em);
		}
	}
	if (err == P11CA_OK)
		err = store_audit_append(txn, "bench.fill", "bench", NULL, NULL, NULL, em);
	if (err == P11CA_OK)
		err = store_txn_commit(&txn, em);
	store_txn_abort(&txn);
	return err;
}

enum p11ca_err store_bench_fill(struct store_bench *b, struct p11ca_errmsg *em)
{
	double t0 = bench_now();
	P11CA_GUARD(fill_cas(b, em));
	for (size_t i = 0; i < b->o.count; i += b->o.batch) {
		size_t to = i + b->o.batch < b->o.count ? i + b->o.batch : b->o.count;
		P11CA_GUARD(fill_batch(b, i, to, em));
		if (b->o.count >= 100000 && (to / b->o.batch) % 10 == 0)
			fprintf(stderr, "  %zu certificates, %.0f s\n", to, bench_now() - t0);
	}
	b->rep.fill_seconds = bench_now() - t0;
	struct store_usage u;
	P11CA_GUARD(store_usage_get(b->st, &u, em));
	b->rep.db_used = u.used;
	b->rep.map_size = u.map_size;
	b->rep.page_size = u.page_size;
	return P11CA_OK;
}
