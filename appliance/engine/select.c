/*
 * Selectors: a CA by name or by a unique prefix of its certificate's serial, a certificate
 * by its serial or a unique prefix. Humans type prefixes ("3FA2"); ambiguity is refused
 * with the candidates, never resolved by guessing.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/x509.h>

#include "appliance/engine/plan.h"
#include "hsm/algor.h"

static int hex_val(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

enum p11ca_err engine_hex_parse(const char *text, uint8_t *out, size_t cap, size_t *nibbles,
				struct p11ca_errmsg *em)
{
	size_t n = 0;
	memset(out, 0, cap);
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == ':' && n > 0 && n % 2 == 0 && p[1] != '\0' && p[1] != ':')
			continue;
		int v = hex_val((unsigned char)*p);
		if (v < 0)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "'%.64s' is not a serial in hex: use digits 0-9 and A-F, "
					  "colons between bytes",
					  text);
		if (n >= 2 * cap)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "'%.64s' has more than %zu hex digits", text, 2 * cap);
		out[n / 2] |= (uint8_t)(n % 2 == 0 ? v << 4 : v);
		n++;
	}
	if (n == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "an empty serial: give its hex digits");
	*nibbles = n;
	return P11CA_OK;
}

void engine_hex_format(const uint8_t *bytes, size_t len, char *out)
{
	static const char digits[] = "0123456789ABCDEF";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 0xf];
	}
	out[2 * len] = '\0';
}

void engine_ca_serial_hex(const X509 *cert, char out[ENGINE_CA_SERIAL_HEX])
{
	const ASN1_INTEGER *sn = cert != NULL ? X509_get0_serialNumber(cert) : NULL;
	size_t len = sn != NULL && sn->length > 0 ? (size_t)sn->length : 0;
	engine_hex_format(len > 0 ? sn->data : NULL, len > 32 ? 32 : len, out);
}

X509 *engine_ca_rec_x509(const struct store_ca *rec)
{
	const unsigned char *p = rec->cert_der;
	X509 *x = rec->cert_der_len != 0 ? d2i_X509(NULL, &p, (long)rec->cert_der_len) : NULL;
	if (x != NULL && p != rec->cert_der + rec->cert_der_len) {
		X509_free(x);
		x = NULL;
	}
	return x;
}

enum p11ca_err engine_serial_select(struct store_txn *txn, const char *text,
				    uint8_t serial[STORE_SERIAL_LEN], struct p11ca_errmsg *em)
{
	uint8_t prefix[STORE_SERIAL_LEN];
	size_t nibbles = 0, n = 0;
	uint8_t found[4][STORE_SERIAL_LEN];
	P11CA_GUARD(engine_hex_parse(text, prefix, sizeof(prefix), &nibbles, em));
	P11CA_GUARD(store_serial_find_prefix(txn, prefix, nibbles, found, 4, &n, em));
	/* A whole serial shorter than 20 bytes, as openssl prints it (an imported certificate's):
	 * stored left-padded with zeros. Also a candidate, so "01" stays ambiguous when it is
	 * both such a serial and a prefix. */
	if (nibbles % 2 == 0 && nibbles < 2 * STORE_SERIAL_LEN) {
		uint8_t padded[STORE_SERIAL_LEN] = {0};
		struct store_serial_info info;
		struct p11ca_errmsg ignored;
		memcpy(padded + STORE_SERIAL_LEN - nibbles / 2, prefix, nibbles / 2);
		bool seen = false;
		for (size_t i = 0; i < n && i < 4 && !seen; i++)
			seen = memcmp(found[i], padded, STORE_SERIAL_LEN) == 0;
		if (!seen && store_serial_get(txn, padded, &info, &ignored) == P11CA_OK) {
			if (n < 4)
				memcpy(found[n], padded, STORE_SERIAL_LEN);
			n++;
		}
	}
	if (n == 0)
		return p11ca_fail(em, P11CA_E_STORAGE_NOT_FOUND,
				  "no certificate has a serial starting with %.64s: check it with "
				  "p11ca cert list",
				  text);
	if (n > 1) {
		char a[41], b[41];
		engine_hex_format(found[0], STORE_SERIAL_LEN, a);
		engine_hex_format(found[1], STORE_SERIAL_LEN, b);
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "serial prefix %.64s is ambiguous (%s, %s%s): give more digits",
				  text, a, b, n > 2 ? ", …" : "");
	}
	memcpy(serial, found[0], STORE_SERIAL_LEN);
	return P11CA_OK;
}

void engine_ca_clear(struct engine_ca *ca)
{
	if (ca == NULL)
		return;
	X509_free(ca->cert);
	ca->cert = NULL;
}

enum p11ca_err engine_ca_parse_cached(struct engine_ca_cache *cache, struct engine_ca *ca,
				      struct p11ca_errmsg *em)
{
	X509_free(ca->cert);
	ca->cert = NULL;
	ca->key_type = HSM_KEY_UNSPECIFIED;
	ca->alg = HSM_SIG_UNSPECIFIED;
	ca->not_after = 0;
	if (ca->rec.cert_der_len == 0)
		return P11CA_OK; /* PENDING: no certificate yet */
	if (engine_ca_cache_get(cache, ca))
		return P11CA_OK;
	const unsigned char *p = ca->rec.cert_der;
	ca->cert = d2i_X509(NULL, &p, (long)ca->rec.cert_der_len);
	if (ca->cert == NULL || p != ca->rec.cert_der + ca->rec.cert_der_len) {
		X509_free(ca->cert);
		ca->cert = NULL;
		return p11ca_fail(em, P11CA_E_STORAGE_CORRUPT,
				  "the stored certificate of CA %s does not parse", ca->rec.name);
	}
	EVP_PKEY *pub = X509_get0_pubkey(ca->cert);
	if (pub == NULL || hsm_key_type_of_pkey(pub, &ca->key_type, em) != P11CA_OK)
		return p11ca_fail(em, P11CA_E_STORAGE_CORRUPT,
				  "the key type of CA %s is not one p11ca supports", ca->rec.name);
	ca->alg = hsm_sig_alg_default(ca->key_type);
	ca->not_after = engine_asn1_time(X509_get0_notAfter(ca->cert));
	engine_ca_cache_put(cache, ca);
	return P11CA_OK;
}

enum p11ca_err engine_ca_parse(struct engine_ca *ca, struct p11ca_errmsg *em)
{
	return engine_ca_parse_cached(NULL, ca, em);
}

enum p11ca_err engine_ca_load(struct engine_ca_cache *cache, struct store_txn *txn, uint32_t id,
			      struct engine_ca *out, struct p11ca_errmsg *em)
{
	P11CA_GUARD(store_ca_get(txn, id, &out->rec, em));
	return engine_ca_parse_cached(cache, out, em);
}

struct ca_prefix {
	uint8_t prefix[STORE_SERIAL_LEN];
	size_t nibbles;
	uint32_t ids[4];
	char names[2][STORE_CA_NAME_MAX + 1];
	size_t n;
};

static int ca_prefix_visit(void *arg, const struct store_ca *ca)
{
	struct ca_prefix *cp = arg;
	X509 *x = engine_ca_rec_x509(ca);
	if (x == NULL)
		return 0;
	uint8_t serial[STORE_SERIAL_LEN];
	const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
	bool match = false;
	if (sn != NULL && sn->length == STORE_SERIAL_LEN) {
		memcpy(serial, sn->data, STORE_SERIAL_LEN);
		match = memcmp(serial, cp->prefix, cp->nibbles / 2) == 0 &&
			(cp->nibbles % 2 == 0 ||
			 (serial[cp->nibbles / 2] & 0xf0) == (cp->prefix[cp->nibbles / 2] & 0xf0));
	}
	X509_free(x);
	if (match) {
		if (cp->n < 2)
			snprintf(cp->names[cp->n], sizeof(cp->names[0]), "%s", ca->name);
		if (cp->n < 4)
			cp->ids[cp->n] = ca->id;
		cp->n++;
	}
	return 0;
}

enum p11ca_err engine_ca_select(struct engine_ca_cache *cache, struct store_txn *txn,
				const char *sel, struct engine_ca *out, struct p11ca_errmsg *em)
{
	if (sel == NULL || sel[0] == '\0')
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "no CA given: name one (p11ca ca list shows them)");
	struct p11ca_errmsg ignored;
	p11ca_errmsg_clear(&ignored);
	enum p11ca_err err = store_ca_get_by_name(txn, sel, &out->rec, &ignored);
	if (err == P11CA_OK)
		return engine_ca_parse_cached(cache, out, em);
	if (err != P11CA_E_STORAGE_NOT_FOUND && err != P11CA_E_INVALID_ARG)
		return p11ca_fail(em, err, "%s", p11ca_errmsg_text(&ignored));

	struct ca_prefix cp = {0};
	p11ca_errmsg_clear(&ignored);
	if (engine_hex_parse(sel, cp.prefix, sizeof(cp.prefix), &cp.nibbles, &ignored) == P11CA_OK)
		P11CA_GUARD(store_ca_list(txn, ca_prefix_visit, &cp, em));
	if (cp.n == 0)
		return p11ca_fail(
			em, P11CA_E_STORAGE_NOT_FOUND,
			"no CA is named %.64s or has a serial starting with it: see p11ca "
			"ca list",
			sel);
	if (cp.n > 1)
		return p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"CA selector %.64s is ambiguous: it matches %s, %s%s; give a name "
			"or more digits",
			sel, cp.names[0], cp.names[1], cp.n > 2 ? " and more" : "");
	return engine_ca_load(cache, txn, cp.ids[0], out, em);
}

bool engine_ca_is_management(const struct engine *eng, const struct engine_ca *ca)
{
	return eng->cfg != NULL && strcmp(ca->rec.name, eng->cfg->management_ca) == 0;
}
