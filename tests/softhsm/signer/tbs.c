/* Test-only TBS builders and assembler for the signer suite; see tbs.h. */
#include "tests/softhsm/signer/tbs.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "hsm/algor.h"

static X509_NAME *cn_name(const char *cn)
{
	X509_NAME *n = X509_NAME_new();

	if (n != NULL && X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
						    (const unsigned char *)cn, -1, -1, 0) != 1) {
		X509_NAME_free(n);
		n = NULL;
	}
	return n;
}

X509 *t_cert_new(const char *subject_cn, const char *issuer_cn, EVP_PKEY *pub, long serial, bool ca)
{
	X509 *x = X509_new();
	X509_NAME *subject = cn_name(subject_cn), *issuer = cn_name(issuer_cn);
	X509_EXTENSION *bc = NULL;
	int ok = x != NULL && subject != NULL && issuer != NULL && X509_set_version(x, 2) == 1 &&
		 ASN1_INTEGER_set(X509_get_serialNumber(x), serial) == 1 &&
		 X509_set_subject_name(x, subject) == 1 && X509_set_issuer_name(x, issuer) == 1 &&
		 X509_gmtime_adj(X509_getm_notBefore(x), -60) != NULL &&
		 X509_gmtime_adj(X509_getm_notAfter(x), 86400) != NULL &&
		 X509_set_pubkey(x, pub) == 1;

	if (ok && ca) {
		bc = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
		ok = bc != NULL && X509_add_ext(x, bc, -1) == 1;
	}
	X509_EXTENSION_free(bc);
	X509_NAME_free(subject);
	X509_NAME_free(issuer);
	if (!ok) {
		fprintf(stderr, "t_cert_new: cannot build the certificate\n");
		X509_free(x);
		return NULL;
	}
	return x;
}

int t_cert_tbs(X509 *x, enum hsm_sig_alg alg, uint8_t **der, size_t *len)
{
	struct p11ca_errmsg em = {0};
	/* const in OpenSSL 3.0, yet the only way into the TBS's own field (PITFALLS.md). */
	X509_ALGOR *sigalg = (X509_ALGOR *)X509_get0_tbs_sigalg(x);
	unsigned char *p = NULL;
	int n;

	if (hsm_algor_set(sigalg, alg, &em) != P11CA_OK) {
		fprintf(stderr, "t_cert_tbs: %s\n", em.text);
		return -1;
	}
	n = i2d_re_X509_tbs(x, &p);
	if (n <= 0) {
		fprintf(stderr, "t_cert_tbs: i2d_re_X509_tbs failed\n");
		return -1;
	}
	*der = p;
	*len = (size_t)n;
	return 0;
}

int t_crl_tbs(const X509_NAME *issuer, enum hsm_sig_alg alg, uint8_t **der, size_t *len)
{
	bool rsa = alg == HSM_SIG_RSA_PKCS1_SHA256 || alg == HSM_SIG_RSA_PKCS1_SHA384 ||
		   alg == HSM_SIG_RSA_PKCS1_SHA512;
	bool ec = alg == HSM_SIG_ECDSA_SHA256 || alg == HSM_SIG_ECDSA_SHA384 ||
		  alg == HSM_SIG_ECDSA_SHA512;
	const EVP_MD *md =
		alg == HSM_SIG_RSA_PKCS1_SHA256 || alg == HSM_SIG_ECDSA_SHA256	 ? EVP_sha256()
		: alg == HSM_SIG_RSA_PKCS1_SHA384 || alg == HSM_SIG_ECDSA_SHA384 ? EVP_sha384()
										 : EVP_sha512();
	EVP_PKEY *throwaway = rsa ? EVP_RSA_gen(1024) : ec ? EVP_EC_gen("P-256") : NULL;
	X509_CRL *crl = X509_CRL_new();
	X509_REVOKED *rev = X509_REVOKED_new();
	ASN1_TIME *now = ASN1_TIME_adj(NULL, time(NULL), 0, 0);
	ASN1_TIME *next = ASN1_TIME_adj(NULL, time(NULL), 7, 0);
	ASN1_INTEGER *serial = ASN1_INTEGER_new();
	unsigned char *p = NULL;
	int n = -1;
	int ok = throwaway != NULL && crl != NULL && rev != NULL && now != NULL && next != NULL &&
		 serial != NULL && ASN1_INTEGER_set(serial, 1234) == 1 &&
		 X509_CRL_set_version(crl, 1) == 1 && X509_CRL_set_issuer_name(crl, issuer) == 1 &&
		 X509_CRL_set1_lastUpdate(crl, now) == 1 &&
		 X509_CRL_set1_nextUpdate(crl, next) == 1 &&
		 X509_REVOKED_set_serialNumber(rev, serial) == 1 &&
		 X509_REVOKED_set_revocationDate(rev, now) == 1 && X509_CRL_add0_revoked(crl, rev);

	if (ok)
		rev = NULL; /* the CRL has it */
	if (ok && X509_CRL_sort(crl) == 1 && X509_CRL_sign(crl, throwaway, md) > 0)
		n = i2d_re_X509_CRL_tbs(crl, &p);
	if (n > 0) {
		*der = p;
		*len = (size_t)n;
	} else {
		fprintf(stderr, "t_crl_tbs: cannot build a CRL for %s\n", hsm_sig_alg_name(alg));
	}
	ASN1_INTEGER_free(serial);
	ASN1_TIME_free(now);
	ASN1_TIME_free(next);
	X509_REVOKED_free(rev);
	X509_CRL_free(crl);
	EVP_PKEY_free(throwaway);
	return n > 0 ? 0 : -1;
}

int t_assemble(const uint8_t *tbs, size_t tbs_len, enum hsm_sig_alg alg, const uint8_t *sig,
	       size_t sig_len, uint8_t **der, size_t *len)
{
	struct p11ca_errmsg em = {0};
	X509_ALGOR *algor = X509_ALGOR_new();
	unsigned char *alg_der = NULL;
	int alg_len = -1;
	int rc = -1;

	if (algor != NULL && hsm_algor_set(algor, alg, &em) == P11CA_OK)
		alg_len = i2d_X509_ALGOR(algor, &alg_der);
	if (alg_len > 0) {
		/* BIT STRING: one byte of unused bits (0), then the signature. */
		int bits_len = ASN1_object_size(0, (int)sig_len + 1, V_ASN1_BIT_STRING);
		int content = (int)tbs_len + alg_len + bits_len;
		int total = ASN1_object_size(1, content, V_ASN1_SEQUENCE);
		unsigned char *out = OPENSSL_malloc((size_t)total), *p = out;

		if (out != NULL) {
			ASN1_put_object(&p, 1, content, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
			memcpy(p, tbs, tbs_len);
			p += tbs_len;
			memcpy(p, alg_der, (size_t)alg_len);
			p += alg_len;
			ASN1_put_object(&p, 0, (int)sig_len + 1, V_ASN1_BIT_STRING,
					V_ASN1_UNIVERSAL);
			*p++ = 0;
			memcpy(p, sig, sig_len);
			*der = out;
			*len = (size_t)total;
			rc = 0;
		}
	}
	if (rc != 0)
		fprintf(stderr, "t_assemble: cannot assemble (%s)\n", em.text);
	OPENSSL_free(alg_der);
	X509_ALGOR_free(algor);
	return rc;
}

int t_write_pem(const char *path, const char *type, const uint8_t *der, size_t len)
{
	FILE *f = fopen(path, "w");
	int ok = f != NULL && PEM_write(f, type, "", der, (long)len) > 0;

	if (f != NULL && fclose(f) != 0)
		ok = 0;
	if (!ok)
		fprintf(stderr, "t_write_pem: cannot write %s\n", path);
	return ok ? 0 : -1;
}
