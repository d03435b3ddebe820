/*
 * Certificates: build a v3 TBSCertificate from a spec, and put the signer's signature
 * together with it.
 *
 * Extensions come only from the spec (the engine's profiles), never from a CSR. The TBS is
 * encoded with i2d_re_X509_tbs, and the final certificate is assembled by hand
 * (x509_assemble) instead of through X509_set/i2d_X509, so the bytes the signer signed are
 * exactly the bytes that go out.
 */
#include "appliance/x509/x509_internal.h"

#include <string.h>

#include "hsm/algor.h"

#define EKU_MAX 32

/* X509v3_KU_* values by their bit number in the KeyUsage BIT STRING (RFC 5280 4.2.1.3). */
static const uint32_t ku_bits[] = {
	X509v3_KU_DIGITAL_SIGNATURE, X509v3_KU_NON_REPUDIATION, X509v3_KU_KEY_ENCIPHERMENT,
	X509v3_KU_DATA_ENCIPHERMENT, X509v3_KU_KEY_AGREEMENT,	X509v3_KU_KEY_CERT_SIGN,
	X509v3_KU_CRL_SIGN,	     X509v3_KU_ENCIPHER_ONLY,	X509v3_KU_DECIPHER_ONLY,
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static enum p11ca_err spec_check(const struct x509_cert_spec *spec, struct p11ca_errmsg *em)
{
	if (spec == NULL || spec->subject == NULL || spec->public_key == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "certificate spec without a subject name or public key");
	bool no_subject = X509_NAME_entry_count(spec->subject) == 0;
	bool no_sans = spec->sans == NULL || sk_GENERAL_NAME_num(spec->sans) <= 0;
	if (no_subject && no_sans)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "a certificate needs a subject or a subjectAltName; give either");
	if (no_subject && spec->issuer == NULL)
		return p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"a self-signed certificate needs a subject (it is also the issuer)");
	if (spec->not_after <= spec->not_before)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "notAfter (%lld) must be later than notBefore (%lld)",
				  (long long)spec->not_after, (long long)spec->not_before);
	uint32_t known = 0;
	for (size_t i = 0; i < COUNT(ku_bits); i++)
		known |= ku_bits[i];
	if ((spec->key_usage & ~known) != 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "keyUsage 0x%x has bits that are no X509v3_KU_* value",
				  spec->key_usage);
	/* RFC 5280 4.2.1.9: keyCertSign only with cA TRUE. */
	if ((spec->key_usage & X509v3_KU_KEY_CERT_SIGN) != 0 && !spec->is_ca)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "keyUsage keyCertSign requires a CA certificate (is_ca)");
	if (spec->n_eku > EKU_MAX || (spec->n_eku > 0 && spec->eku == NULL))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%zu extendedKeyUsage entries; give 0 to %d", spec->n_eku,
				  EKU_MAX);
	return x509_ext_spec_check(spec->ext, spec->is_ca, em);
}

enum p11ca_err x509_add_ext(X509 *x, int nid, void *value, bool critical, struct p11ca_errmsg *em)
{
	if (X509_add1_ext_i2d(x, nid, value, critical ? 1 : 0, X509V3_ADD_APPEND) != 1)
		return p11ca_fail(em, P11CA_E_NOMEM, "cannot add the %s extension",
				  OBJ_nid2ln(nid));
	return P11CA_OK;
}

static enum p11ca_err add_basic_constraints(X509 *x, const struct x509_cert_spec *spec,
					    struct p11ca_errmsg *em)
{
	BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
	enum p11ca_err err = P11CA_OK;
	if (bc == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory for basicConstraints");
	bc->ca = spec->is_ca ? 0xff : 0;
	if (spec->is_ca && spec->path_length >= 0) {
		bc->pathlen = ASN1_INTEGER_new();
		if (bc->pathlen == NULL || ASN1_INTEGER_set(bc->pathlen, spec->path_length) != 1)
			err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory for pathLenConstraint");
	}
	if (err == P11CA_OK)
		err = x509_add_ext(x, NID_basic_constraints, bc, true, em);
	BASIC_CONSTRAINTS_free(bc);
	return err;
}

static enum p11ca_err add_key_usage(X509 *x, const struct x509_cert_spec *spec,
				    struct p11ca_errmsg *em)
{
	ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
	enum p11ca_err err = P11CA_OK;
	if (ku == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory for keyUsage");
	/* Named bits: DER drops trailing zero bits, which i2d does for us here. */
	for (size_t i = 0; i < COUNT(ku_bits) && err == P11CA_OK; i++)
		if ((spec->key_usage & ku_bits[i]) != 0 &&
		    ASN1_BIT_STRING_set_bit(ku, (int)i, 1) != 1)
			err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory for keyUsage");
	if (err == P11CA_OK)
		err = x509_add_ext(x, NID_key_usage, ku, spec->key_usage_critical, em);
	ASN1_BIT_STRING_free(ku);
	return err;
}

static enum p11ca_err add_eku(X509 *x, const struct x509_cert_spec *spec, struct p11ca_errmsg *em)
{
	EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
	enum p11ca_err err = P11CA_OK;
	if (eku == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory for extendedKeyUsage");
	for (size_t i = 0; i < spec->n_eku && err == P11CA_OK; i++) {
		const char *name = spec->eku[i] != NULL ? spec->eku[i] : "(null)";
		ASN1_OBJECT *obj = OBJ_txt2obj(name, 0);
		if (obj == NULL)
			err = p11ca_fail(em, P11CA_E_INVALID_ARG,
					 "extendedKeyUsage '%.64s' is neither a known name nor a "
					 "dotted OID",
					 name);
		else if (sk_ASN1_OBJECT_push(eku, obj) <= 0) {
			ASN1_OBJECT_free(obj);
			err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory for extendedKeyUsage");
		}
	}
	if (err == P11CA_OK)
		err = x509_add_ext(x, NID_ext_key_usage, eku, spec->eku_critical, em);
	sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
	return err;
}

/* subjectKeyIdentifier: SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 method 1). */
static enum p11ca_err add_ski(X509 *x, struct p11ca_errmsg *em)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
	enum p11ca_err err = P11CA_OK;
	if (ski == NULL || X509_pubkey_digest(x, EVP_sha1(), md, &md_len) != 1 ||
	    ASN1_OCTET_STRING_set(ski, md, (int)md_len) != 1)
		err = p11ca_fail(em, P11CA_E_NOMEM, "cannot compute the subjectKeyIdentifier");
	else
		err = x509_add_ext(x, NID_subject_key_identifier, ski, false, em);
	ASN1_OCTET_STRING_free(ski);
	return err;
}

/* keyIdentifier of the issuer's SKI; for a self-signed certificate, its own (never asked of
 * `x` through X509_get0_subject_key_id, which would cache the half-built object's
 * extensions and fingerprint inside it). */
static enum p11ca_err add_aki(X509 *x, const X509 *issuer, struct p11ca_errmsg *em)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
	if (aki == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory for authorityKeyIdentifier");
	enum p11ca_err err = P11CA_OK;
	if (issuer != NULL) {
		err = x509_issuer_key_id(issuer, &aki->keyid, em);
	} else if ((aki->keyid = ASN1_OCTET_STRING_new()) == NULL ||
		   X509_pubkey_digest(x, EVP_sha1(), md, &md_len) != 1 ||
		   ASN1_OCTET_STRING_set(aki->keyid, md, (int)md_len) != 1) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "cannot compute the authorityKeyIdentifier");
	}
	if (err == P11CA_OK)
		err = x509_add_ext(x, NID_authority_key_identifier, aki, false, em);
	AUTHORITY_KEYID_free(aki);
	return err;
}

static enum p11ca_err add_extensions(X509 *x, const struct x509_cert_spec *spec,
				     struct p11ca_errmsg *em)
{
	P11CA_GUARD(add_basic_constraints(x, spec, em));
	if (spec->key_usage != 0)
		P11CA_GUARD(add_key_usage(x, spec, em));
	if (spec->n_eku > 0)
		P11CA_GUARD(add_eku(x, spec, em));
	if (spec->sans != NULL && sk_GENERAL_NAME_num(spec->sans) > 0)
		/* RFC 5280 4.2.1.6: critical when the subject is empty. */
		P11CA_GUARD(x509_add_ext(x, NID_subject_alt_name, (void *)spec->sans,
					 X509_NAME_entry_count(spec->subject) == 0, em));
	P11CA_GUARD(add_ski(x, em));
	P11CA_GUARD(add_aki(x, spec->issuer, em));
	return x509_ext_spec_add(x, spec->ext, em);
}

/* The subject key: spec->spki copied as received (algorithm, parameters, key bits), which
 * skips X509_set_pubkey's provider encode of the EVP_PKEY and decode back; the copy must
 * re-encode to exactly the received SubjectPublicKeyInfo (unused bits included). */
static enum p11ca_err set_pubkey(X509 *x, const struct x509_cert_spec *spec,
				 struct p11ca_errmsg *em)
{
	if (spec->spki == NULL)
		return X509_set_pubkey(x, spec->public_key) == 1
			       ? P11CA_OK
			       : p11ca_fail(em, P11CA_E_NOMEM,
					    "out of memory building a certificate");
	X509_PUBKEY *dst = X509_get_X509_PUBKEY(x);
	const unsigned char *bits = NULL;
	int bits_len = 0;
	X509_ALGOR *src_alg = NULL, *dst_alg = NULL;
	ASN1_OBJECT *obj = NULL;
	unsigned char *copy = NULL, *src_der = NULL, *dst_der = NULL;
	enum p11ca_err err = P11CA_OK;
	if (dst == NULL ||
	    X509_PUBKEY_get0_param(NULL, &bits, &bits_len, &src_alg, spec->spki) != 1 ||
	    bits == NULL || bits_len <= 0 || src_alg == NULL) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG, "the subject public key is empty");
		goto out;
	}
	const ASN1_OBJECT *src_obj = NULL;
	X509_ALGOR_get0(&src_obj, NULL, NULL, src_alg);
	if ((copy = OPENSSL_memdup(bits, (size_t)bits_len)) == NULL ||
	    (obj = OBJ_dup(src_obj)) == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a certificate");
		goto out;
	}
	if (X509_PUBKEY_set0_param(dst, obj, V_ASN1_UNDEF, NULL, copy, bits_len) != 1) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a certificate");
		goto out;
	}
	obj = NULL;
	copy = NULL;
	int src_len = 0, dst_len = 0;
	if (X509_PUBKEY_get0_param(NULL, NULL, NULL, &dst_alg, dst) != 1 || dst_alg == NULL ||
	    X509_ALGOR_copy(dst_alg, src_alg) != 1 ||
	    (src_len = i2d_X509_PUBKEY(spec->spki, &src_der)) <= 0 ||
	    (dst_len = i2d_X509_PUBKEY(dst, &dst_der)) <= 0)
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a certificate");
	else if (src_len != dst_len || memcmp(src_der, dst_der, (size_t)src_len) != 0)
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "the subject public key cannot be copied as received (its BIT "
				 "STRING has unused bits); send a DER SubjectPublicKeyInfo");
out:
	ASN1_OBJECT_free(obj);
	OPENSSL_free(copy);
	OPENSSL_free(src_der);
	OPENSSL_free(dst_der);
	return err;
}

static enum p11ca_err set_fields(X509 *x, const struct x509_cert_spec *spec,
				 struct p11ca_errmsg *em)
{
	ASN1_INTEGER *serial = NULL;
	ASN1_TIME *nb = NULL, *na = NULL;
	const X509_NAME *issuer_name =
		spec->issuer != NULL ? X509_get_subject_name(spec->issuer) : spec->subject;
	enum p11ca_err err = x509_serial_to_asn1(spec->serial, spec->serial_len, &serial, em);
	if (err == P11CA_OK)
		err = x509_time(spec->not_before, "notBefore", &nb, em);
	if (err == P11CA_OK)
		err = x509_time(spec->not_after, "notAfter", &na, em);
	if (err != P11CA_OK)
		goto out;
	if (X509_NAME_entry_count(issuer_name) == 0) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "the issuer certificate has an empty subject name");
		goto out;
	}
	if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_serialNumber(x, serial) != 1 ||
	    X509_set1_notBefore(x, nb) != 1 || X509_set1_notAfter(x, na) != 1 ||
	    X509_set_subject_name(x, spec->subject) != 1 ||
	    X509_set_issuer_name(x, issuer_name) != 1)
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a certificate");
	else
		err = set_pubkey(x, spec, em);
out:
	ASN1_INTEGER_free(serial);
	ASN1_TIME_free(nb);
	ASN1_TIME_free(na);
	return err;
}

enum p11ca_err x509_cert_tbs(const struct x509_cert_spec *spec, X509 **tbs, uint8_t **tbs_der,
			     size_t *tbs_der_len, struct p11ca_errmsg *em)
{
	*tbs = NULL;
	*tbs_der = NULL;
	*tbs_der_len = 0;
	P11CA_GUARD(spec_check(spec, em));
	/* The issuer's key must be able to make the signature the TBS announces. */
	EVP_PKEY *issuer_key =
		spec->issuer != NULL ? X509_get0_pubkey(spec->issuer) : spec->public_key;
	P11CA_GUARD(x509_alg_fits_key(spec->alg, issuer_key, em));

	enum p11ca_err err = P11CA_OK;
	unsigned char *der = NULL;
	X509 *x = X509_new();
	if (x == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a certificate");
		goto out;
	}
	err = set_fields(x, spec, em);
	if (err == P11CA_OK)
		err = add_extensions(x, spec, em);
	if (err != P11CA_OK)
		goto out;
	/* Both the TBS's signature field and the outer one; X509_get0_tbs_sigalg and
	 * X509_get0_signature hand out const pointers in 3.0, but these are the fields. */
	const X509_ALGOR *outer = NULL;
	X509_get0_signature(NULL, &outer, x);
	err = hsm_algor_set((X509_ALGOR *)X509_get0_tbs_sigalg(x), spec->alg, em);
	if (err == P11CA_OK)
		err = hsm_algor_set((X509_ALGOR *)outer, spec->alg, em);
	if (err != P11CA_OK)
		goto out;
	int len = i2d_re_X509_tbs(x, &der);
	if (len <= 0) {
		err = p11ca_fail(em, P11CA_E_INTERNAL, "cannot encode the TBSCertificate");
		goto out;
	}
	*tbs = x;
	x = NULL;
	*tbs_der = der;
	*tbs_der_len = (size_t)len;
out:
	X509_free(x);
	return err;
}

enum p11ca_err x509_cert_finish(X509 *tbs, const uint8_t *sig, size_t sig_len, uint8_t **der,
				size_t *der_len, struct p11ca_errmsg *em)
{
	*der = NULL;
	*der_len = 0;
	if (tbs == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "x509_cert_finish: no TBS");
	unsigned char *tbs_der = NULL;
	/* Re-encoded rather than taken from the cache: the TBS that goes out is always the
	 * structure as it is now (the same DER x509_cert_tbs returned, DER being unique). */
	int len = i2d_re_X509_tbs(tbs, &tbs_der);
	if (len <= 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "cannot encode the TBSCertificate");
	enum p11ca_err err = x509_assemble(tbs_der, (size_t)len, X509_get0_tbs_sigalg(tbs), sig,
					   sig_len, der, der_len, em);
	OPENSSL_free(tbs_der);
	return err;
}
