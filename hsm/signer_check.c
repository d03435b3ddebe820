/*
 * The signer's TBS checks (hsm/signer_check.h).
 *
 * OpenSSL exports no accessors for a bare TBSCertificate or TBSCertList (X509_CINF and
 * X509_CRL_INFO are opaque), so the TBS is wrapped into SEQUENCE { tbs, algorithm,
 * BIT STRING '' } and parsed as a whole certificate or CRL; the normal accessors then read
 * it. The wrapper's algorithm is the TBS's own signature AlgorithmIdentifier, found by
 * walking the DER: X509_CRL has no accessor for the inner one in OpenSSL 3.0, while the
 * outer one is X509_CRL_get0_signature.
 *
 * Certificates are the hot path (one check per issued certificate), so two costs of that
 * approach are avoided there, both dominated by OpenSSL 3.0's public-key decoding:
 *   - a TBSCertificate is parsed with a template that is X509_CINF's field for field, but
 *     keeps the SubjectPublicKeyInfo as its two raw fields instead of decoding the key
 *     (d2i_X509 ignores a key that does not decode, so both accept the same DER);
 *   - the issuer certificate, the same few bytes on every call, is parsed and compared with
 *     the HSM key once, and the verdict kept in a small cache (hsm/signer_issuer.c).
 */
#include "hsm/signer_check.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/asn1t.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/buf.h"
#include "hsm/algor.h"
#include "hsm/signer_issuer.h"

/* Far above what the signer protocol carries (44 KiB), far below what ASN.1 lengths and
 * OpenSSL's `long` can hold, so no length arithmetic below can overflow. */
#define TBS_MAX ((size_t)1 << 20)

/* One DER element: its whole encoding [start, start + len) and its content. */
struct der_elem {
	const uint8_t *start;
	size_t len;
	const uint8_t *content;
	size_t content_len;
	int tag, cls;
	bool constructed;
};

/* Read the element at *p (of *left bytes) and step past it. Indefinite lengths are BER,
 * not DER, and are refused. 0 on success, -1 on anything malformed. */
static int der_next(const uint8_t **p, size_t *left, struct der_elem *e)
{
	const unsigned char *q = *p;
	long len = 0;
	int tag = 0, cls = 0;

	if (*left == 0 || *left > TBS_MAX)
		return -1;
	int rc = ASN1_get_object(&q, &len, &tag, &cls, (long)*left);
	if ((rc & 0x80) != 0 || rc == 0x21 || len < 0)
		return -1;
	size_t hdr = (size_t)(q - *p);
	if (hdr > *left || (size_t)len > *left - hdr)
		return -1;
	e->start = *p;
	e->len = hdr + (size_t)len;
	e->content = q;
	e->content_len = (size_t)len;
	e->tag = tag;
	e->cls = cls;
	e->constructed = (rc & V_ASN1_CONSTRUCTED) != 0;
	*p += e->len;
	*left -= e->len;
	return 0;
}

static bool is_universal(const struct der_elem *e, int tag, bool constructed)
{
	return e->cls == V_ASN1_UNIVERSAL && e->tag == tag && e->constructed == constructed;
}

/*
 * Find the signature AlgorithmIdentifier inside a TBS that is exactly one DER SEQUENCE:
 *   TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, ... }
 *   TBSCertList    ::= SEQUENCE { version INTEGER OPTIONAL, signature, ... }
 * This walk and OpenSSL's templates agree on which element is `signature`: the full parse
 * that follows refuses any TBS where they could not.
 */
static int tbs_sigalg(enum signer_tbs_kind kind, const uint8_t *tbs, size_t tbs_len,
		      struct der_elem *alg)
{
	const uint8_t *p = tbs;
	size_t left = tbs_len;
	struct der_elem seq, e;

	if (der_next(&p, &left, &seq) != 0 || left != 0 ||
	    !is_universal(&seq, V_ASN1_SEQUENCE, true))
		return -1;
	p = seq.content;
	left = seq.content_len;
	if (der_next(&p, &left, &e) != 0)
		return -1;
	if (kind == SIGNER_TBS_CERTIFICATE) {
		if (e.cls == V_ASN1_CONTEXT_SPECIFIC && e.tag == 0 && der_next(&p, &left, &e) != 0)
			return -1;
		/* e is the serial number */
		if (!is_universal(&e, V_ASN1_INTEGER, false) || der_next(&p, &left, &e) != 0)
			return -1;
	} else if (is_universal(&e, V_ASN1_INTEGER, false) && der_next(&p, &left, &e) != 0) {
		return -1;
	}
	if (!is_universal(&e, V_ASN1_SEQUENCE, true))
		return -1;
	*alg = e;
	return 0;
}

/* SEQUENCE { tbs, alg, BIT STRING '' } in *out, which the caller frees. */
static enum p11ca_err wrap_tbs(const uint8_t *tbs, size_t tbs_len, const struct der_elem *alg,
			       struct p11ca_buf **out, struct p11ca_errmsg *em)
{
	static const uint8_t empty_bits[] = {V_ASN1_BIT_STRING, 1, 0};
	size_t content = tbs_len + alg->len + sizeof(empty_bits);
	int total = ASN1_object_size(1, (int)content, V_ASN1_SEQUENCE);
	struct p11ca_buf *b = NULL;
	uint8_t *hdr = NULL;
	enum p11ca_err err;

	if (total <= 0 || (size_t)total <= content)
		return p11ca_fail(em, P11CA_E_INTERNAL, "cannot size the TBS wrapper");
	err = p11ca_buf_new((size_t)total, 0, &b);
	if (err == P11CA_OK)
		err = p11ca_buf_reserve(b, (size_t)total - content, &hdr);
	if (err == P11CA_OK) {
		ASN1_put_object(&hdr, 1, (int)content, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
		err = p11ca_buf_put(b, tbs, tbs_len);
	}
	if (err == P11CA_OK)
		err = p11ca_buf_put(b, alg->start, alg->len);
	if (err == P11CA_OK)
		err = p11ca_buf_put(b, empty_bits, sizeof(empty_bits));
	if (err != P11CA_OK) {
		p11ca_buf_free(&b);
		return p11ca_fail(em, err, "cannot wrap the TBS for parsing");
	}
	*out = b;
	return P11CA_OK;
}

/* SubjectPublicKeyInfo as X509_PUBKEY parses it, minus the decoding of the key. */
typedef struct {
	X509_ALGOR *algor;
	ASN1_BIT_STRING *public_key;
} TBS_SPKI;

ASN1_SEQUENCE(TBS_SPKI) =
	{
		ASN1_SIMPLE(TBS_SPKI, algor, X509_ALGOR),
		ASN1_SIMPLE(TBS_SPKI, public_key, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(TBS_SPKI)

	/* TBSCertificate: OpenSSL 3.0's X509_CINF template with TBS_SPKI for X509_PUBKEY. */
	typedef struct {
	ASN1_INTEGER *version;
	ASN1_INTEGER *serial;
	X509_ALGOR *signature;
	X509_NAME *issuer;
	X509_VAL *validity;
	X509_NAME *subject;
	TBS_SPKI *key;
	ASN1_BIT_STRING *issuer_uid;
	ASN1_BIT_STRING *subject_uid;
	STACK_OF(X509_EXTENSION) * extensions;
} TBS_CERT;

ASN1_SEQUENCE(TBS_CERT) =
	{
		ASN1_EXP_OPT(TBS_CERT, version, ASN1_INTEGER, 0),
		ASN1_SIMPLE(TBS_CERT, serial, ASN1_INTEGER),
		ASN1_SIMPLE(TBS_CERT, signature, X509_ALGOR),
		ASN1_SIMPLE(TBS_CERT, issuer, X509_NAME),
		ASN1_SIMPLE(TBS_CERT, validity, X509_VAL),
		ASN1_SIMPLE(TBS_CERT, subject, X509_NAME),
		ASN1_SIMPLE(TBS_CERT, key, TBS_SPKI),
		ASN1_IMP_OPT(TBS_CERT, issuer_uid, ASN1_BIT_STRING, 1),
		ASN1_IMP_OPT(TBS_CERT, subject_uid, ASN1_BIT_STRING, 2),
		ASN1_EXP_SEQUENCE_OF_OPT(TBS_CERT, extensions, X509_EXTENSION, 3),
} static_ASN1_SEQUENCE_END(TBS_CERT)

	/* Exactly one TBSCertificate in [tbs, tbs + len), NULL otherwise. Beyond the template, the
	 * fields must fit the version (RFC 5280 4.1.2.8, 4.1.2.9), which newer OpenSSL releases
	 * enforce in d2i_X509 too: refusing here is never wrong for a TBS the engine built. */
	static TBS_CERT
	* tbs_cert_parse(const uint8_t *tbs, size_t len)
{
	const unsigned char *p = tbs;
	TBS_CERT *c = (TBS_CERT *)ASN1_item_d2i(NULL, &p, (long)len, ASN1_ITEM_rptr(TBS_CERT));
	long version = 0;

	if (c == NULL)
		return NULL;
	if (c->version != NULL)
		version = ASN1_INTEGER_get(c->version);
	if (p != tbs + len || version < 0 || version > 2 ||
	    ((c->issuer_uid != NULL || c->subject_uid != NULL) && version < 1) ||
	    (c->extensions != NULL && version < 2)) {
		ASN1_item_free((ASN1_VALUE *)c, ASN1_ITEM_rptr(TBS_CERT));
		return NULL;
	}
	return c;
}

static void tbs_cert_free(TBS_CERT **c)
{
	ASN1_item_free((ASN1_VALUE *)*c, ASN1_ITEM_rptr(TBS_CERT));
	*c = NULL;
}

static const char *ossl_reason(void)
{
	const char *r = ERR_reason_error_string(ERR_peek_last_error());
	return r != NULL ? r : "malformed DER";
}

/* The issuer `name` of the TBS must be the subject of the CA's certificate, whose key must
 * be the HSM key: otherwise this key would sign in another CA's name. */
/* Whether a certificate whose key is the HSM key may act as the issuing CA: it must be a
 * CA certificate, and a self-issued one (a root) must carry a valid signature by that very
 * key, so a made-up "issuer certificate" with another CA's name is not enough. An
 * intermediate's signature is by its parent, whose key the signer cannot tell apart from
 * any other on the token: the engine's records vouch for it. NULL when it may. */
static const char *issuer_problem(X509 *ca, EVP_PKEY *key_pub)
{
	if (X509_check_ca(ca) < 1)
		return "the issuer certificate is not a CA certificate (basicConstraints cA)";
	if (X509_NAME_cmp(X509_get_subject_name(ca), X509_get_issuer_name(ca)) == 0 &&
	    X509_verify(ca, key_pub) != 1)
		return "the self-issued issuer certificate is not signed by the HSM key";
	return NULL;
}

static enum p11ca_err check_issuer(enum signer_tbs_kind kind, const X509_NAME *name,
				   const uint8_t *der, size_t der_len, EVP_PKEY *key_pub,
				   struct p11ca_errmsg *em)
{
	const unsigned char *p = der;
	X509 *ca = NULL;
	struct issuer_verdict v;
	char got[160];
	enum p11ca_err err = P11CA_OK;

	if (der_len <= TBS_MAX && signer_issuer_cached(der, der_len, key_pub, name, &v))
		goto verdict;
	if (der_len > TBS_MAX || (ca = d2i_X509(NULL, &p, (long)der_len)) == NULL ||
	    p != der + der_len) {
		err = p11ca_fail(
			em, P11CA_E_POLICY,
			"refused to sign: the issuer certificate does not parse as one DER "
			"certificate (%s)",
			ca == NULL ? ossl_reason() : "trailing bytes");
		goto out;
	}
	EVP_PKEY *ca_pub = X509_get0_pubkey(ca);
	bool key_ok = ca_pub != NULL && EVP_PKEY_eq(ca_pub, key_pub) == 1;
	const char *problem = key_ok ? issuer_problem(ca, key_pub) : NULL;
	signer_issuer_verdict(ca, key_ok, problem, name, &v);
	signer_issuer_keep(der, der_len, key_pub, &ca, key_ok, problem);
verdict:
	if (!v.name_ok) {
		signer_name_str(name, got, sizeof(got));
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "refused to sign: the TBS's issuer '%s' is not the CA's subject "
				 "'%s'",
				 got, v.subject);
		goto out;
	}
	if (!v.key_ok) {
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "refused to sign: the issuer certificate's public key is not the "
				 "public key of the HSM key asked to sign; check the CA's key URI");
		goto out;
	}
	if (v.problem != NULL) {
		err = p11ca_fail(em, P11CA_E_POLICY, "refused to sign: %s", v.problem);
		goto out;
	}
	uint32_t need = kind == SIGNER_TBS_CRL ? KU_CRL_SIGN : KU_KEY_CERT_SIGN;
	if ((v.key_usage & need) == 0) {
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "refused to sign: the issuer certificate's keyUsage lacks %s",
				 kind == SIGNER_TBS_CRL ? "cRLSign" : "keyCertSign");
		goto out;
	}
out:
	X509_free(ca);
	return err;
}

/* A TBS with no issuer certificate is only acceptable as the CA's own root: self-issued,
 * certifying the very key that signs it. Rare (a CA's creation), so the key is decoded. */
static enum p11ca_err check_self_signed(const TBS_CERT *c, EVP_PKEY *key_pub,
					struct p11ca_errmsg *em)
{
	char issuer[160], subject[160];
	unsigned char *spki = NULL;
	EVP_PKEY *pub = NULL;
	enum p11ca_err err = P11CA_OK;

	if (X509_NAME_cmp(c->issuer, c->subject) != 0) {
		signer_name_str(c->issuer, issuer, sizeof(issuer));
		signer_name_str(c->subject, subject, sizeof(subject));
		return p11ca_fail(em, P11CA_E_POLICY,
				  "refused to sign: no issuer certificate was given, but the TBS "
				  "is not self-issued (issuer '%s', subject '%s')",
				  issuer, subject);
	}
	int n = ASN1_item_i2d((ASN1_VALUE *)c->key, &spki, ASN1_ITEM_rptr(TBS_SPKI));
	const unsigned char *p = spki;
	if (n > 0)
		pub = d2i_PUBKEY(NULL, &p, n);
	if (pub == NULL || EVP_PKEY_eq(pub, key_pub) != 1)
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "refused to sign: a self-signed certificate must certify the "
				 "HSM key that signs it, and this TBS carries another public key");
	EVP_PKEY_free(pub);
	OPENSSL_free(spki);
	return err;
}

static enum p11ca_err check_alg(const X509_ALGOR *algor, enum hsm_key_type key_type,
				enum hsm_sig_alg *alg, struct p11ca_errmsg *em)
{
	enum hsm_sig_alg a = HSM_SIG_UNSPECIFIED;
	enum p11ca_err err = hsm_algor_get(algor, &a, em);

	if (err != P11CA_OK)
		return err;
	if (!hsm_sig_alg_fits(a, key_type))
		return p11ca_fail(em, P11CA_E_POLICY,
				  "refused to sign: the TBS asks for %s, which a %s key cannot "
				  "produce; build the TBS with the CA's signature algorithm",
				  hsm_sig_alg_name(a), hsm_key_type_name(key_type));
	*alg = a;
	return P11CA_OK;
}

enum p11ca_err signer_check_tbs(enum signer_tbs_kind kind, const uint8_t *tbs, size_t tbs_len,
				const uint8_t *issuer_cert, size_t issuer_cert_len,
				EVP_PKEY *key_pub, enum hsm_key_type key_type,
				enum hsm_sig_alg *alg, struct p11ca_errmsg *em)
{
	const char *what = kind == SIGNER_TBS_CRL ? "TBSCertList" : "TBSCertificate";
	struct p11ca_buf *wrapped = NULL;
	struct der_elem algid;
	TBS_CERT *cert = NULL;
	X509_CRL *crl = NULL;
	enum p11ca_err err = P11CA_OK;

	if (tbs == NULL || key_pub == NULL || alg == NULL ||
	    (issuer_cert == NULL && issuer_cert_len != 0))
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "signer_check_tbs: NULL argument");
	if (kind != SIGNER_TBS_CERTIFICATE && kind != SIGNER_TBS_CRL)
		return p11ca_fail(em, P11CA_E_POLICY,
				  "refused to sign: the TBS kind is neither certificate nor CRL");
	if (tbs_len > TBS_MAX || tbs_sigalg(kind, tbs, tbs_len, &algid) != 0)
		return p11ca_fail(em, P11CA_E_POLICY, "refused to sign: the TBS is not one DER %s",
				  what);

	const X509_ALGOR *sigalg = NULL;
	const X509_NAME *issuer = NULL;
	bool whole = false; /* parsed with nothing left over */
	if (kind == SIGNER_TBS_CERTIFICATE) {
		cert = tbs_cert_parse(tbs, tbs_len);
		if (cert != NULL) {
			issuer = cert->issuer;
			sigalg = cert->signature;
			whole = true;
		}
	} else {
		err = wrap_tbs(tbs, tbs_len, &algid, &wrapped, em);
		if (err != P11CA_OK)
			goto out;
		const unsigned char *p = p11ca_buf_ptr(wrapped);
		crl = d2i_X509_CRL(NULL, &p, (long)p11ca_buf_len(wrapped));
		if (crl != NULL) {
			issuer = X509_CRL_get_issuer(crl);
			X509_CRL_get0_signature(crl, NULL, &sigalg);
			whole = p == p11ca_buf_ptr(wrapped) + p11ca_buf_len(wrapped);
		}
	}
	if (issuer == NULL || sigalg == NULL || !whole) {
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "refused to sign: the TBS is not a valid %s (%s)", what,
				 ossl_reason());
		goto out;
	}

	err = check_alg(sigalg, key_type, alg, em);
	if (err != P11CA_OK)
		goto out;
	if (issuer_cert_len > 0)
		err = check_issuer(kind, issuer, issuer_cert, issuer_cert_len, key_pub, em);
	else if (kind == SIGNER_TBS_CERTIFICATE)
		err = check_self_signed(cert, key_pub, em);
	else
		err = p11ca_fail(em, P11CA_E_POLICY,
				 "refused to sign: a CRL needs the issuing CA's certificate");
out:
	if (err != P11CA_OK)
		*alg = HSM_SIG_UNSPECIFIED;
	ERR_clear_error();
	tbs_cert_free(&cert);
	X509_CRL_free(crl);
	p11ca_buf_free(&wrapped);
	return err;
}
