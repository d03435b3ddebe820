/*
 * RFC 7512 URIs, parsed by p11-kit; this file only decides which URIs are acceptable for
 * which purpose, so a typo is an error rather than a URI that silently matches more.
 */
#include "hsm/internal.h"

#include <stdio.h>
#include <string.h>

static const CK_ATTRIBUTE_TYPE object_attrs[] = {CKA_LABEL, CKA_ID, CKA_CLASS};

enum p11ca_err hsm_uri_parse(const char *text, enum hsm_uri_kind kind, P11KitUri **out,
			     struct p11ca_errmsg *em)
{
	*out = NULL;
	if (text == NULL || text[0] == '\0')
		return p11ca_fail(em, P11CA_E_URI, "empty PKCS#11 URI");

	P11KitUri *uri = p11_kit_uri_new();
	if (uri == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory parsing a PKCS#11 URI");

	enum p11ca_err err = P11CA_OK;
	int rc = p11_kit_uri_parse(text, P11_KIT_URI_FOR_ANY, uri);
	if (rc != P11_KIT_URI_OK) {
		/* Never echo the URI itself: it may carry a pin-value. */
		err = p11ca_fail(em, P11CA_E_URI,
				 "invalid PKCS#11 URI: %s; expected e.g. "
				 "pkcs11:token=MyToken;object=ca-key",
				 p11_kit_uri_message(rc));
		goto out;
	}
	if (p11_kit_uri_any_unrecognized(uri)) {
		err = p11ca_fail(em, P11CA_E_URI,
				 "PKCS#11 URI has an attribute p11ca does not know; allowed: "
				 "token, serial, manufacturer, model, slot-id, object, id, type, "
				 "pin-source, pin-value, module-path");
		goto out;
	}
	if (p11_kit_uri_get_pin_value(uri) != NULL && p11_kit_uri_get_pin_source(uri) != NULL) {
		err = p11ca_fail(em, P11CA_E_URI,
				 "PKCS#11 URI has both pin-value and pin-source; keep only "
				 "pin-source (a PIN in a URI ends up in configs and logs)");
		goto out;
	}

	bool has_object_attr = false;
	for (size_t i = 0; i < sizeof(object_attrs) / sizeof(object_attrs[0]); i++)
		if (p11_kit_uri_get_attribute(uri, object_attrs[i]) != NULL)
			has_object_attr = true;

	if (kind == HSM_URI_TOKEN && has_object_attr) {
		err = p11ca_fail(em, P11CA_E_URI,
				 "a token URI must not name an object (object=, id=, type=); "
				 "key names go in the key settings");
		goto out;
	}
	if (kind == HSM_URI_OBJECT) {
		CK_ATTRIBUTE *cls = p11_kit_uri_get_attribute(uri, CKA_CLASS);
		if (cls != NULL && !(cls->ulValueLen == sizeof(CK_OBJECT_CLASS) &&
				     *(CK_OBJECT_CLASS *)cls->pValue == CKO_PRIVATE_KEY)) {
			err = p11ca_fail(em, P11CA_E_URI,
					 "a key URI must have type=private (or no type)");
			goto out;
		}
		if (p11_kit_uri_get_attribute(uri, CKA_LABEL) == NULL &&
		    p11_kit_uri_get_attribute(uri, CKA_ID) == NULL) {
			err = p11ca_fail(em, P11CA_E_URI,
					 "a key URI must name the key with object= or id=");
			goto out;
		}
	}
	*out = uri;
	uri = NULL;
out:
	if (uri != NULL)
		p11_kit_uri_free(uri);
	return err;
}

void hsm_padded_to_cstr(const CK_UTF8CHAR *src, size_t n, char *dst, size_t dst_size)
{
	size_t len = n < dst_size - 1 ? n : dst_size - 1;
	memcpy(dst, src, len);
	while (len > 0 && (dst[len - 1] == ' ' || dst[len - 1] == '\0'))
		len--;
	dst[len] = '\0';
}

void hsm_hex(const uint8_t *b, size_t n, char *dst, size_t dst_size)
{
	static const char digits[] = "0123456789abcdef";
	size_t j = 0;
	for (size_t i = 0; i < n && j + 2 < dst_size; i++) {
		dst[j++] = digits[b[i] >> 4];
		dst[j++] = digits[b[i] & 15];
	}
	if (dst_size > 0)
		dst[j] = '\0';
}
