/*
 * Keys on a token: lookup (refusing ambiguity), generation (refusing reuse of a label or
 * id), and the per-session cache of object handles.
 */
#include "hsm/internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

CK_RV hsm_find_objects(struct hsm_token *tok, struct hsm_session *s, CK_OBJECT_CLASS cls,
		       const char *label, const uint8_t *id, size_t id_len,
		       CK_OBJECT_HANDLE *handles, CK_ULONG max, CK_ULONG *count)
{
	CK_FUNCTION_LIST *fn = tok->mod->fn;
	CK_ATTRIBUTE tmpl[3];
	CK_ULONG n = 0;
	if (cls != (CK_OBJECT_CLASS)-1)
		tmpl[n++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
	if (label != NULL)
		tmpl[n++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, strlen(label)};
	if (id != NULL && id_len > 0)
		tmpl[n++] = (CK_ATTRIBUTE){CKA_ID, (void *)id, id_len};

	*count = 0;
	CK_RV rv = fn->C_FindObjectsInit(s->handle, tmpl, n);
	if (rv != CKR_OK)
		return rv;
	rv = fn->C_FindObjects(s->handle, handles, max, count);
	CK_RV rv2 = fn->C_FindObjectsFinal(s->handle);
	return rv != CKR_OK ? rv : rv2;
}

/* Label and hex id of an object, for messages that must name candidates. */
static void object_describe(struct hsm_token *tok, struct hsm_session *s, CK_OBJECT_HANDLE h,
			    char *dst, size_t dst_size)
{
	char label[65] = "", idhex[41] = "";
	uint8_t id[20];
	CK_ATTRIBUTE a[2] = {{CKA_LABEL, label, sizeof(label) - 1}, {CKA_ID, id, sizeof(id)}};
	if (tok->mod->fn->C_GetAttributeValue(s->handle, h, a, 2) == CKR_OK) {
		label[a[0].ulValueLen < sizeof(label) ? a[0].ulValueLen : 0] = '\0';
		hsm_hex(id, a[1].ulValueLen <= sizeof(id) ? a[1].ulValueLen : 0, idhex,
			sizeof(idhex));
	}
	snprintf(dst, dst_size, "label '%s' id %s", label, idhex[0] ? idhex : "(none)");
}

CK_RV hsm_session_key_handle(struct hsm_token *tok, struct hsm_session *s,
			     const struct hsm_key *key, CK_OBJECT_HANDLE *out,
			     struct p11ca_errmsg *em)
{
	if (s->cache[key->slot_index].key_uid == key->uid) {
		*out = s->cache[key->slot_index].handle;
		return CKR_OK;
	}
	/* Label and id together: ids are not unique on every token (another tool may have
	 * given two keys the same one). */
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;
	CK_RV rv = hsm_find_objects(tok, s, CKO_PRIVATE_KEY, key->label[0] ? key->label : NULL,
				    key->id_len ? key->id : NULL, key->id_len, h, 2, &n);
	if (rv != CKR_OK)
		return rv;
	if (n != 1) {
		/* Gone (or duplicated) since it was found. Treated like a stale handle, so the
		 * runner escalates to re-initialisation (a vanished token directory looks
		 * exactly like this) and reports "not found" only if that does not help. */
		char idhex[129];
		hsm_hex(key->id, key->id_len, idhex, sizeof(idhex));
		(void)p11ca_fail(em, P11CA_E_HSM_KEY_NOT_FOUND,
				 "key '%s' (id %s) is no longer on token '%s' (%lu matches)",
				 key->label, idhex, tok->name, (unsigned long)n);
		return CKR_OBJECT_HANDLE_INVALID;
	}
	s->cache[key->slot_index].key_uid = key->uid;
	s->cache[key->slot_index].handle = h[0];
	*out = h[0];
	return CKR_OK;
}

/* ---- lookup ------------------------------------------------------------------------ */

struct find_args {
	const char *label;
	const uint8_t *id;
	size_t id_len;
	struct hsm_key *key; /* filled on success */
};

static CK_RV op_find(struct hsm_token *tok, struct hsm_session *s, void *varg,
		     struct p11ca_errmsg *em)
{
	struct find_args *a = varg;
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;
	CK_RV rv = hsm_find_objects(tok, s, CKO_PRIVATE_KEY, a->label, a->id, a->id_len, h, 2, &n);
	if (rv != CKR_OK)
		return rv;

	char want[160], idhex[129] = "";
	hsm_hex(a->id, a->id_len, idhex, sizeof(idhex));
	snprintf(want, sizeof(want), "%s%s%s%s%s", a->label ? "label '" : "",
		 a->label ? a->label : "", a->label ? "'" : "", a->id_len ? " id " : "", idhex);
	if (n == 0) {
		(void)p11ca_fail(em, P11CA_E_HSM_KEY_NOT_FOUND,
				 "no private key with %s on token '%s'; list keys with "
				 "`hsm keys` or pkcs11-tool --list-objects",
				 want, tok->name);
		return CKR_FUNCTION_FAILED;
	}
	if (n > 1) {
		char d0[128], d1[128];
		object_describe(tok, s, h[0], d0, sizeof(d0));
		object_describe(tok, s, h[1], d1, sizeof(d1));
		(void)p11ca_fail(em, P11CA_E_HSM_KEY_AMBIGUOUS,
				 "%s matches more than one private key on token '%s' (%s; %s); "
				 "name the key by its id",
				 want, tok->name, d0, d1);
		return CKR_FUNCTION_FAILED;
	}

	/* The key's own id and label, whichever we were given. */
	struct hsm_key *k = a->key;
	CK_ATTRIBUTE attrs[2] = {{CKA_LABEL, k->label, sizeof(k->label) - 1},
				 {CKA_ID, k->id, sizeof(k->id)}};
	rv = tok->mod->fn->C_GetAttributeValue(s->handle, h[0], attrs, 2);
	if (rv != CKR_OK)
		return rv;
	k->label[attrs[0].ulValueLen] = '\0';
	k->id_len = attrs[1].ulValueLen;

	/* Its public half: the public-key object with the same label and id; failing that,
	 * the same id (tools often label the halves differently). Never a guess between two:
	 * verifying with the wrong public key would withhold every signature. */
	const char *plabel = k->label[0] ? k->label : NULL;
	CK_OBJECT_HANDLE pub[2];
	rv = hsm_find_objects(tok, s, CKO_PUBLIC_KEY, plabel, k->id_len ? k->id : NULL, k->id_len,
			      pub, 2, &n);
	if (rv == CKR_OK && n == 0 && plabel != NULL && k->id_len > 0)
		rv = hsm_find_objects(tok, s, CKO_PUBLIC_KEY, NULL, k->id, k->id_len, pub, 2, &n);
	if (rv != CKR_OK)
		return rv;
	if (n > 1) {
		char d0[128], d1[128];
		object_describe(tok, s, pub[0], d0, sizeof(d0));
		object_describe(tok, s, pub[1], d1, sizeof(d1));
		(void)p11ca_fail(em, P11CA_E_HSM_KEY_AMBIGUOUS,
				 "private key %s on token '%s' has more than one public-key "
				 "object that could be its own (%s; %s); give the keys distinct "
				 "ids",
				 want, tok->name, d0, d1);
		return CKR_FUNCTION_FAILED;
	}
	if (n == 0) {
		(void)p11ca_fail(em, P11CA_E_HSM_KEY_NOT_FOUND,
				 "private key %s on token '%s' has no public-key object with the "
				 "same id; p11ca needs it to verify signatures (import the public "
				 "key with that id)",
				 want, tok->name);
		return CKR_FUNCTION_FAILED;
	}
	return hsm_pubkey_read(tok, s, pub[0], &k->pub, &k->type, em);
}

/* Give the key a slot in the token's table (and so in every session's handle cache). */
static enum p11ca_err key_register(struct hsm_token *tok, struct hsm_key *k,
				   struct p11ca_errmsg *em)
{
	enum p11ca_err err = P11CA_OK;
	pthread_mutex_lock(&tok->lock);
	unsigned i = 0;
	while (i < CONFIG_HSM_MAX_KEYS && tok->keys[i] != NULL)
		i++;
	if (i == CONFIG_HSM_MAX_KEYS) {
		err = p11ca_fail(em, P11CA_E_CONFIG,
				 "token '%s' already has %d keys in use; raise "
				 "CONFIG_HSM_MAX_KEYS",
				 tok->name, CONFIG_HSM_MAX_KEYS);
	} else {
		tok->keys[i] = k;
		k->slot_index = i;
		k->uid = ++tok->next_key_uid; /* never 0: 0 marks an empty cache entry */
	}
	pthread_mutex_unlock(&tok->lock);
	return err;
}

static enum p11ca_err key_new(struct hsm_token *tok, struct hsm_key **out, struct p11ca_errmsg *em)
{
	*out = calloc(1, sizeof(**out));
	if (*out == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	(*out)->tok = tok;
	return P11CA_OK;
}

/* Make a key, have `op` fill it in a pooled session (the op's args point *key at it),
 * register it with the token, and hand it out; on any failure nothing is left behind. */
static enum p11ca_err key_obtain(struct hsm_token *tok, const char *what, hsm_session_op op,
				 void *arg, struct hsm_key **key, struct hsm_key **out,
				 struct p11ca_errmsg *em)
{
	enum p11ca_err err = key_new(tok, key, em);
	if (err == P11CA_OK)
		err = hsm_token_run(tok, what, op, arg, em);
	if (err == P11CA_OK)
		err = key_register(tok, *key, em);
	if (err != P11CA_OK) {
		if (*key != NULL)
			EVP_PKEY_free((*key)->pub);
		free(*key);
		*key = NULL;
		return err;
	}
	*out = *key;
	return P11CA_OK;
}

enum p11ca_err hsm_key_find(struct hsm_token *tok, const char *label, const uint8_t *id,
			    size_t id_len, struct hsm_key **out, struct p11ca_errmsg *em)
{
	*out = NULL;
	if ((label == NULL || label[0] == '\0') && (id == NULL || id_len == 0))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "a key needs a label or an id");
	if (id_len > sizeof(((struct hsm_key *)0)->id))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "key id longer than 64 bytes");

	struct find_args a = {label && label[0] ? label : NULL, id_len ? id : NULL, id_len, NULL};
	return key_obtain(tok, "key lookup", op_find, &a, &a.key, out, em);
}

enum p11ca_err hsm_key_find_uri(struct hsm_token *tok, const char *text, struct hsm_key **out,
				struct p11ca_errmsg *em)
{
	*out = NULL;
	P11KitUri *uri = NULL;
	enum p11ca_err err = hsm_uri_parse(text, HSM_URI_OBJECT, &uri, em);
	if (err != P11CA_OK)
		return err;

	/* Token attributes in a key URI must describe this token, or the URI means another. */
	CK_TOKEN_INFO ti;
	pthread_rwlock_rdlock(&tok->mod->lock);
	CK_RV rv = tok->mod->fn->C_GetTokenInfo(atomic_load(&tok->slot), &ti);
	pthread_rwlock_unlock(&tok->mod->lock);
	if (rv == CKR_OK && !p11_kit_uri_match_token_info(uri, &ti)) {
		err = p11ca_fail(em, P11CA_E_URI, "key URI names another token than '%s'",
				 tok->name);
		goto out;
	}

	char label[65] = "";
	CK_ATTRIBUTE *l = p11_kit_uri_get_attribute(uri, CKA_LABEL);
	CK_ATTRIBUTE *i = p11_kit_uri_get_attribute(uri, CKA_ID);
	if (l != NULL) {
		if (l->ulValueLen >= sizeof(label)) {
			err = p11ca_fail(em, P11CA_E_URI, "key label longer than 64 bytes");
			goto out;
		}
		memcpy(label, l->pValue, l->ulValueLen);
	}
	err = hsm_key_find(tok, l ? label : NULL, i ? i->pValue : NULL, i ? i->ulValueLen : 0, out,
			   em);
out:
	p11_kit_uri_free(uri);
	return err;
}

/* ---- generation -------------------------------------------------------------------- */

struct gen_args {
	enum hsm_key_type type;
	const char *label;
	struct hsm_key *key;
};

static CK_RV op_generate(struct hsm_token *tok, struct hsm_session *s, void *varg,
			 struct p11ca_errmsg *em)
{
	struct gen_args *a = varg;
	CK_FUNCTION_LIST *fn = tok->mod->fn;
	struct hsm_key *k = a->key;

	/* Refuse to shadow anything: a second object with this label would make every later
	 * lookup by label ambiguous (and might be another CA's key). */
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;
	CK_RV rv = hsm_find_objects(tok, s, (CK_OBJECT_CLASS)-1, a->label, NULL, 0, h, 2, &n);
	if (rv != CKR_OK)
		return rv;
	if (n > 0) {
		char d[128];
		object_describe(tok, s, h[0], d, sizeof(d));
		(void)p11ca_fail(em, P11CA_E_HSM_KEY_EXISTS,
				 "token '%s' already has an object with label '%s' (%s); choose "
				 "another label — p11ca never overwrites or shadows a key",
				 tok->name, a->label, d);
		return CKR_FUNCTION_FAILED;
	}

	/* The id comes from the token's RNG (the HSM's entropy, not the host's). */
	k->id_len = 16;
	rv = fn->C_GenerateRandom(s->handle, k->id, k->id_len);
	if (rv != CKR_OK)
		return rv;
	rv = hsm_find_objects(tok, s, (CK_OBJECT_CLASS)-1, NULL, k->id, k->id_len, h, 1, &n);
	if (rv != CKR_OK)
		return rv;
	if (n > 0) {
		(void)p11ca_fail(em, P11CA_E_HSM_KEY_EXISTS,
				 "the random key id drawn on token '%s' is already in use; the "
				 "token's RNG may be faulty — check it before generating keys",
				 tok->name);
		return CKR_FUNCTION_FAILED;
	}

	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG bits = a->type == HSM_KEY_RSA2048   ? 2048
			: a->type == HSM_KEY_RSA3072 ? 3072
						     : 4096;
	CK_BYTE exponent[] = {0x01, 0x00, 0x01};
	size_t params_len = 0;
	const uint8_t *params = hsm_ec_params(a->type, &params_len);
	size_t label_len = strlen(a->label);

	CK_ATTRIBUTE pub[8], priv[10];
	CK_ULONG np = 0, nv = 0;
	pub[np++] = (CK_ATTRIBUTE){CKA_TOKEN, &yes, sizeof(yes)};
	pub[np++] = (CK_ATTRIBUTE){CKA_VERIFY, &yes, sizeof(yes)};
	pub[np++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)a->label, label_len};
	pub[np++] = (CK_ATTRIBUTE){CKA_ID, k->id, k->id_len};
	priv[nv++] = (CK_ATTRIBUTE){CKA_TOKEN, &yes, sizeof(yes)};
	priv[nv++] = (CK_ATTRIBUTE){CKA_PRIVATE, &yes, sizeof(yes)};
	priv[nv++] = (CK_ATTRIBUTE){CKA_SENSITIVE, &yes, sizeof(yes)};
	priv[nv++] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, &no, sizeof(no)};
	priv[nv++] = (CK_ATTRIBUTE){CKA_SIGN, &yes, sizeof(yes)};
	priv[nv++] = (CK_ATTRIBUTE){CKA_DECRYPT, &no, sizeof(no)};
	priv[nv++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)a->label, label_len};
	priv[nv++] = (CK_ATTRIBUTE){CKA_ID, k->id, k->id_len};

	CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
	if (params == NULL) {
		pub[np++] = (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof(bits)};
		pub[np++] = (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent)};
	} else {
		mech.mechanism = a->type == HSM_KEY_ED25519 ? CKM_EC_EDWARDS_KEY_PAIR_GEN
							    : CKM_EC_KEY_PAIR_GEN;
		pub[np++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)params, params_len};
	}

	CK_OBJECT_HANDLE hpub, hpriv;
	rv = fn->C_GenerateKeyPair(s->handle, &mech, pub, np, priv, nv, &hpub, &hpriv);
	if (rv != CKR_OK) {
		if (hsm_ckr_fault(rv) == HSM_FAULT_FATAL)
			(void)p11ca_fail(em, hsm_ckr_err(rv),
					 "token '%s' could not generate a %s key: %s", tok->name,
					 hsm_key_type_name(a->type), hsm_ckr_name(rv));
		return rv;
	}
	snprintf(k->label, sizeof(k->label), "%s", a->label);
	rv = hsm_pubkey_read(tok, s, hpub, &k->pub, &k->type, em);
	if (rv == CKR_OK && k->type != a->type) {
		(void)p11ca_fail(em, P11CA_E_HSM, "token '%s' generated a %s key when asked for %s",
				 tok->name, hsm_key_type_name(k->type), hsm_key_type_name(a->type));
		rv = CKR_FUNCTION_FAILED;
	}
	if (rv == CKR_OK)
		p11ca_logf(tok->ctx->log, LOG_NOTICE, "hsm: generated %s key '%s' on token '%s'",
			   hsm_key_type_name(a->type), a->label, tok->name);
	return rv;
}

static bool label_ok(const char *label)
{
	size_t n = label ? strlen(label) : 0;
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isprint((unsigned char)label[i]))
			return false;
	return true;
}

enum p11ca_err hsm_key_generate(struct hsm_token *tok, enum hsm_key_type type, const char *label,
				struct hsm_key **out, struct p11ca_errmsg *em)
{
	*out = NULL;
	if (hsm_key_type_name(type) == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "unknown key type %d", (int)type);
	if (!label_ok(label))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "key label must be 1 to 64 printable characters");

	struct gen_args a = {type, label, NULL};
	/* Generation is not idempotent, yet the runner may retry it after a session or device
	 * fault. That is safe because every attempt first checks the label: a key created
	 * by an attempt whose reply was lost makes the retry fail with "label exists" rather
	 * than make a second key. */
	return key_obtain(tok, "key generation", op_generate, &a, &a.key, out, em);
}

/* ---- accessors and release ------------------------------------------------------ */

void hsm_key_free(struct hsm_key **pkey)
{
	if (pkey == NULL || *pkey == NULL)
		return;
	struct hsm_key *k = *pkey;
	pthread_mutex_lock(&k->tok->lock);
	if (k->tok->keys[k->slot_index] == k)
		k->tok->keys[k->slot_index] = NULL;
	pthread_mutex_unlock(&k->tok->lock);
	EVP_PKEY_free(k->pub);
	free(k);
	*pkey = NULL;
}

enum hsm_key_type hsm_key_type_of(const struct hsm_key *key)
{
	return key->type;
}

const char *hsm_key_label(const struct hsm_key *key)
{
	return key->label;
}

const uint8_t *hsm_key_id(const struct hsm_key *key, size_t *len)
{
	*len = key->id_len;
	return key->id;
}

EVP_PKEY *hsm_key_public(const struct hsm_key *key)
{
	return key->pub;
}
