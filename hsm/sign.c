/*
 * Signing. The token does the private-key operation (and the hash, for RSA); every
 * signature is verified in software with the key's public half before it is released:
 * a faulty RSA-CRT signature would leak the key, and a flipped bit would ship a broken
 * certificate.
 */
#include "hsm/internal.h"

#include <string.h>

#include <openssl/ecdsa.h>
#include <openssl/rsa.h>

struct mech_spec {
	enum hsm_sig_alg alg;
	CK_MECHANISM_TYPE mech;
	const char *md; /* digest name for OpenSSL; NULL for Ed25519 */
	bool prehash;	/* hash in software and sign the digest (ECDSA) */
	bool pss;	/* RSA-PSS: MGF1 with the same hash, salt = hash length */
	CK_MECHANISM_TYPE pss_hash;
	CK_RSA_PKCS_MGF_TYPE pss_mgf;
	CK_ULONG pss_salt;
};

static const struct mech_spec mechs[] = {
	{HSM_SIG_RSA_PKCS1_SHA256, CKM_SHA256_RSA_PKCS, "SHA256", false, false, 0, 0, 0},
	{HSM_SIG_RSA_PKCS1_SHA384, CKM_SHA384_RSA_PKCS, "SHA384", false, false, 0, 0, 0},
	{HSM_SIG_RSA_PKCS1_SHA512, CKM_SHA512_RSA_PKCS, "SHA512", false, false, 0, 0, 0},
	{HSM_SIG_RSA_PSS_SHA256, CKM_SHA256_RSA_PKCS_PSS, "SHA256", false, true, CKM_SHA256,
	 CKG_MGF1_SHA256, 32},
	{HSM_SIG_RSA_PSS_SHA384, CKM_SHA384_RSA_PKCS_PSS, "SHA384", false, true, CKM_SHA384,
	 CKG_MGF1_SHA384, 48},
	{HSM_SIG_RSA_PSS_SHA512, CKM_SHA512_RSA_PKCS_PSS, "SHA512", false, true, CKM_SHA512,
	 CKG_MGF1_SHA512, 64},
	{HSM_SIG_ECDSA_SHA256, CKM_ECDSA, "SHA256", true, false, 0, 0, 0},
	{HSM_SIG_ECDSA_SHA384, CKM_ECDSA, "SHA384", true, false, 0, 0, 0},
	{HSM_SIG_ECDSA_SHA512, CKM_ECDSA, "SHA512", true, false, 0, 0, 0},
	{HSM_SIG_ED25519, CKM_EDDSA, NULL, false, false, 0, 0, 0},
};

static const struct mech_spec *mech_find(enum hsm_sig_alg alg)
{
	for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
		if (mechs[i].alg == alg)
			return &mechs[i];
	return NULL;
}

struct sign_args {
	const struct hsm_key *key;
	const struct mech_spec *spec;
	const uint8_t *in;
	size_t in_len;
	uint8_t raw[HSM_SIG_MAX];
	CK_ULONG raw_len;
};

static CK_RV op_sign(struct hsm_token *tok, struct hsm_session *s, void *varg,
		     struct p11ca_errmsg *em)
{
	struct sign_args *a = varg;
	CK_OBJECT_HANDLE h;
	CK_RV rv = hsm_session_key_handle(tok, s, a->key, &h, em);
	if (rv != CKR_OK)
		return rv;

	CK_RSA_PKCS_PSS_PARAMS pss = {a->spec->pss_hash, a->spec->pss_mgf, a->spec->pss_salt};
	CK_MECHANISM mech = {a->spec->mech, a->spec->pss ? &pss : NULL,
			     a->spec->pss ? sizeof(pss) : 0};
	rv = tok->mod->fn->C_SignInit(s->handle, &mech, h);
	if (rv != CKR_OK)
		return rv;
	a->raw_len = sizeof(a->raw);
	return tok->mod->fn->C_Sign(s->handle, (CK_BYTE_PTR)a->in, a->in_len, a->raw, &a->raw_len);
}

/* PKCS#11 ECDSA gives r‖s, each half the length of the curve order; X.509 wants DER. */
static enum p11ca_err ecdsa_raw_to_der(const uint8_t *raw, size_t raw_len, uint8_t *out, size_t cap,
				       size_t *out_len, struct p11ca_errmsg *em)
{
	if (raw_len == 0 || raw_len % 2 != 0 || raw_len > 2 * 66)
		return p11ca_fail(em, P11CA_E_HSM_BAD_SIGNATURE,
				  "token returned a %zu-byte ECDSA signature, not r||s", raw_len);
	size_t half = raw_len / 2;
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(raw, (int)half, NULL);
	BIGNUM *s = BN_bin2bn(raw + half, (int)half, NULL);
	enum p11ca_err err = P11CA_E_NOMEM;
	if (sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		goto out;
	}
	int len = i2d_ECDSA_SIG(sig, NULL);
	if (len <= 0 || (size_t)len > cap) {
		err = p11ca_fail(em, P11CA_E_INTERNAL, "ECDSA signature does not fit its buffer");
		goto out;
	}
	unsigned char *p = out;
	*out_len = (size_t)i2d_ECDSA_SIG(sig, &p);
	err = P11CA_OK;
out:
	ECDSA_SIG_free(sig);
	if (err == P11CA_E_NOMEM)
		(void)p11ca_fail(em, err, "out of memory encoding an ECDSA signature");
	return err;
}

static bool pub_fits(EVP_PKEY *pub, enum hsm_sig_alg alg)
{
	switch (alg) {
	case HSM_SIG_ED25519:
		return EVP_PKEY_is_a(pub, "ED25519");
	case HSM_SIG_ECDSA_SHA256:
	case HSM_SIG_ECDSA_SHA384:
	case HSM_SIG_ECDSA_SHA512:
		return EVP_PKEY_is_a(pub, "EC");
	default:
		return EVP_PKEY_is_a(pub, "RSA");
	}
}

enum p11ca_err hsm_verify(EVP_PKEY *pub, enum hsm_sig_alg alg, const uint8_t *msg, size_t msg_len,
			  const uint8_t *sig, size_t sig_len, struct p11ca_errmsg *em)
{
	const struct mech_spec *spec = mech_find(alg);
	if (spec == NULL || pub == NULL || !pub_fits(pub, alg))
		return p11ca_fail(em, P11CA_E_HSM_MECHANISM,
				  "signature algorithm %s does not fit this public key",
				  hsm_sig_alg_name(alg) ? hsm_sig_alg_name(alg) : "(unknown)");

	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	int ok = ctx != NULL &&
		 EVP_DigestVerifyInit_ex(ctx, &pctx, spec->md, NULL, NULL, pub, NULL) == 1;
	if (ok && spec->pss)
		ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
		     EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, spec->md, NULL) == 1;
	if (ok)
		ok = EVP_DigestVerify(ctx, sig, sig_len, msg, msg_len) == 1;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return p11ca_fail(em, P11CA_E_HSM_BAD_SIGNATURE, "%s signature does not verify",
				  hsm_sig_alg_name(alg));
	return P11CA_OK;
}

enum p11ca_err hsm_sign(struct hsm_key *key, enum hsm_sig_alg alg, const uint8_t *msg,
			size_t msg_len, uint8_t *sig, size_t sig_cap, size_t *sig_len,
			struct p11ca_errmsg *em)
{
	*sig_len = 0;
	if (key == NULL || (msg == NULL && msg_len > 0) || sig == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "hsm_sign: NULL argument");
	if (sig_cap < HSM_SIG_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "signature buffer of %zu bytes; HSM_SIG_MAX (%d) needed", sig_cap,
				  HSM_SIG_MAX);
	struct hsm_token *tok = key->tok;
	const struct mech_spec *spec = mech_find(alg);
	if (spec == NULL || !hsm_sig_alg_fits(alg, key->type))
		return hsm_token_note_failure(
			tok,
			p11ca_fail(em, P11CA_E_HSM_MECHANISM,
				   "signature algorithm %s cannot be used with %s key '%s'",
				   hsm_sig_alg_name(alg) ? hsm_sig_alg_name(alg) : "(unknown)",
				   hsm_key_type_name(key->type), key->label),
			em);

	struct sign_args a = {.key = key, .spec = spec, .in = msg, .in_len = msg_len};
	uint8_t digest[EVP_MAX_MD_SIZE];
	if (spec->prehash) {
		unsigned int dlen = 0;
		if (EVP_Digest(msg, msg_len, digest, &dlen, EVP_get_digestbyname(spec->md), NULL) !=
		    1)
			return p11ca_fail(em, P11CA_E_INTERNAL, "cannot compute %s", spec->md);
		a.in = digest;
		a.in_len = dlen;
	}

	enum p11ca_err err = hsm_token_run(tok, "signing", op_sign, &a, em);
	if (err != P11CA_OK)
		return err;

	if (spec->prehash) {
		err = ecdsa_raw_to_der(a.raw, a.raw_len, sig, sig_cap, sig_len, em);
	} else {
		memcpy(sig, a.raw, a.raw_len);
		*sig_len = a.raw_len;
	}
	if (err == P11CA_OK)
		err = hsm_verify(key->pub, alg, msg, msg_len, sig, *sig_len, NULL);
	if (err != P11CA_OK) {
		explicit_bzero(sig, sig_cap);
		*sig_len = 0;
		pthread_mutex_lock(&tok->lock);
		tok->bad_signatures++;
		pthread_mutex_unlock(&tok->lock);
		p11ca_logf(tok->ctx->log, LOG_ERR,
			   "hsm: token '%s' returned a %s signature with key '%s' that does not "
			   "verify; withheld",
			   tok->name, hsm_sig_alg_name(alg), key->label);
		return hsm_token_note_failure(
			tok,
			p11ca_fail(em, P11CA_E_HSM_BAD_SIGNATURE,
				   "token '%s' produced a signature with key '%s' that does not "
				   "verify; it was withheld. This points to an HSM fault: check "
				   "the device before signing more",
				   tok->name, key->label),
			em);
	}
	explicit_bzero(a.raw, sizeof(a.raw));
	pthread_mutex_lock(&tok->lock);
	tok->signatures++;
	pthread_mutex_unlock(&tok->lock);
	return P11CA_OK;
}
