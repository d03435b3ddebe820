/*
 * PEM text of DER objects (RFC 7468 strict form: 64-character base64 lines), appended to a
 * caller's fixed buffer, as the engine's replies and the CLI's output need it.
 */
#include "appliance/x509/x509_internal.h"

#include <string.h>

#include <openssl/pem.h>

#define PEM_LABEL_MAX 40

static bool label_ok(const char *label)
{
	size_t n = strnlen(label, PEM_LABEL_MAX + 1);
	if (n == 0 || n > PEM_LABEL_MAX || label[0] == ' ' || label[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((label[i] >= 'A' && label[i] <= 'Z') ||
		      (label[i] >= '0' && label[i] <= '9') || label[i] == ' ' || label[i] == '-'))
			return false;
	return true;
}

/* One DER TLV, a constructed SEQUENCE, spanning exactly `len` bytes. */
static bool der_ok(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	long body = 0;
	int tag = 0, cls = 0;
	if (len == 0 || len > INT32_MAX)
		return false;
	int r = ASN1_get_object(&p, &body, &tag, &cls, (long)len);
	return (r & 0x80) == 0 && r == V_ASN1_CONSTRUCTED && tag == V_ASN1_SEQUENCE &&
	       cls == V_ASN1_UNIVERSAL && (size_t)(p - der) + (size_t)body == len;
}

enum p11ca_err x509_pem_append(const char *label, const uint8_t *der, size_t der_len, uint8_t *out,
			       size_t cap, size_t *len, struct p11ca_errmsg *em)
{
	if (label == NULL || !label_ok(label))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "PEM label must be 1 to %d capital letters, digits or spaces, "
				  "such as CERTIFICATE or X509 CRL",
				  PEM_LABEL_MAX);
	if (der == NULL || !der_ok(der, der_len))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the %s to write as PEM is not one DER SEQUENCE", label);
	if (out == NULL || len == NULL || *len > cap)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "x509_pem_append: bad output buffer");

	BIO *bio = BIO_new(BIO_s_mem());
	if (bio == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory writing PEM");
	enum p11ca_err err = P11CA_OK;
	char *text = NULL;
	long text_len = 0;
	if (PEM_write_bio(bio, label, "", der, (long)der_len) <= 0 ||
	    (text_len = BIO_get_mem_data(bio, &text)) <= 0) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "cannot write %s as PEM", label);
		goto out;
	}
	if ((size_t)text_len > cap - *len) {
		err = p11ca_fail(em, P11CA_E_PROTO_TOO_LARGE,
				 "PEM %s of %ld bytes does not fit the %zu bytes left", label,
				 text_len, cap - *len);
		goto out;
	}
	memcpy(out + *len, text, (size_t)text_len);
	*len += (size_t)text_len;
out:
	BIO_free(bio);
	return err;
}
