/*
 * Subject names: parse RFC 4514 ("CN=x,O=Org,C=AT") or OpenSSL ("/C=AT/O=Org/CN=x") text
 * into an X509_NAME in canonical order, and format one back as RFC 4514.
 *
 * Parsing is strict on purpose: a subject ends up signed in certificates, so an attribute
 * we do not know, a value over RFC 5280's upper bound, a control character or a NUL that
 * a relying party may cut at are refused with the attribute named, never passed through.
 * Only single-valued RDNs are accepted (no '+'), and no "#hex" BER values.
 */
#include "appliance/x509/x509_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum value_kind { KIND_UTF8, KIND_PRINTABLE, KIND_IA5, KIND_COUNTRY };

struct name_attr {
	int nid;
	const char *alias; /* a third accepted spelling besides OpenSSL's short and long name */
	enum value_kind kind;
	unsigned max; /* characters (RFC 5280 appendix A upper bounds; 128 where it has none) */
	int rank;     /* canonical position; 6 = "the rest, as given" */
};

static const struct name_attr name_attrs[] = {
	{NID_countryName, NULL, KIND_COUNTRY, 2, 0},
	{NID_stateOrProvinceName, "S", KIND_UTF8, 128, 1},
	{NID_localityName, NULL, KIND_UTF8, 128, 2},
	{NID_organizationName, NULL, KIND_UTF8, 64, 3},
	{NID_organizationalUnitName, NULL, KIND_UTF8, 64, 4},
	{NID_commonName, NULL, KIND_UTF8, 64, 5},
	{NID_pkcs9_emailAddress, "E", KIND_IA5, 255, 6},
	{NID_serialNumber, NULL, KIND_PRINTABLE, 64, 6},
	{NID_domainComponent, NULL, KIND_IA5, 63, 6},
	{NID_streetAddress, NULL, KIND_UTF8, 128, 6},
	{NID_postalCode, NULL, KIND_UTF8, 40, 6},
	{NID_title, NULL, KIND_UTF8, 64, 6},
	{NID_givenName, NULL, KIND_UTF8, 64, 6},
	{NID_surname, NULL, KIND_UTF8, 64, 6},
	{NID_initials, NULL, KIND_UTF8, 64, 6},
	{NID_generationQualifier, NULL, KIND_UTF8, 64, 6},
	{NID_pseudonym, NULL, KIND_UTF8, 128, 6},
	{NID_userId, NULL, KIND_UTF8, 64, 6},
	{NID_businessCategory, NULL, KIND_UTF8, 128, 6},
	{NID_organizationIdentifier, NULL, KIND_UTF8, 64, 6},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct rdn {
	const struct name_attr *attr;
	const char *type; /* as the user wrote it, for messages */
	char *value;	  /* decoded bytes, not NUL-terminated (may contain NUL) */
	size_t len;
};

static const struct name_attr *attr_find(const char *type)
{
	for (size_t i = 0; i < COUNT(name_attrs); i++) {
		const struct name_attr *a = &name_attrs[i];
		if (strcasecmp(type, OBJ_nid2sn(a->nid)) == 0 ||
		    strcasecmp(type, OBJ_nid2ln(a->nid)) == 0 ||
		    (a->alias != NULL && strcasecmp(type, a->alias) == 0))
			return a;
	}
	return NULL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Split "type=value" at *pos (in place) up to an unescaped `sep` or the end. RFC 4514 mode
 * (sep ',') knows hex pairs and refuses unescaped specials; OpenSSL mode (sep '/') takes the
 * character after '\' literally. Spaces around the type and unescaped spaces around the
 * value are dropped. Values are decoded into the same buffer (never longer than the text).
 * *more: an unescaped `sep` ended it, so another component must follow.
 */
static enum p11ca_err rdn_split(char *s, size_t *pos, char sep, struct rdn *out, bool *more,
				struct p11ca_errmsg *em)
{
	size_t i = *pos;
	while (s[i] == ' ')
		i++;
	if (s[i] == '\0' || s[i] == sep)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the subject has an empty component (a '%c' too many)", sep);
	char *type = &s[i];
	while (s[i] != '\0' && s[i] != '=' && s[i] != sep)
		i++;
	if (s[i] != '=')
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "subject component '%.40s' has no '='; write it as TYPE=value",
				  type);
	size_t type_end = (size_t)(&s[i] - type);
	while (type_end > 0 && type[type_end - 1] == ' ')
		type_end--;
	type[type_end] = '\0';
	i++;
	while (s[i] == ' ')
		i++;
	out->type = type;
	out->attr = attr_find(type);
	if (out->attr == NULL)
		return p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"subject attribute '%.40s' is unknown; use C, ST, L, O, OU, CN, "
			"emailAddress, serialNumber, DC, street, postalCode, title, GN, SN, "
			"initials, pseudonym, UID or businessCategory",
			type);
	if (sep == ',' && s[i] == '#')
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "subject attribute %s: hex-encoded (#...) values are not "
				  "supported; write the text",
				  type);

	char *value = &s[i];
	size_t w = 0, keep = 0; /* keep: length up to the last byte not an unescaped space */
	for (; s[i] != '\0' && s[i] != sep; i++) {
		char c = s[i];
		if (c == '\\') {
			int hi = sep == ',' ? hexval(s[i + 1]) : -1;
			int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
			if (hi >= 0 && lo >= 0) {
				c = (char)(hi << 4 | lo);
				i += 2;
			} else if (s[i + 1] != '\0' &&
				   (sep == '/' || strchr(",+\"\\<>;= #", s[i + 1]) != NULL)) {
				c = s[++i];
			} else {
				return p11ca_fail(
					em, P11CA_E_INVALID_ARG,
					"subject attribute %s: bad escape '\\%.1s'; escape "
					"only , + \" \\ < > ; = # space, or write \\XX",
					type, &s[i + 1]);
			}
			value[w++] = c;
			keep = w;
			continue;
		}
		if (c == '+')
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "subject attribute %s: multi-valued RDNs ('+') are not "
					  "supported; escape it as \\+ if it is part of the value",
					  type);
		if (sep == ',' && strchr("\"<>;", c) != NULL)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "subject attribute %s: '%c' must be escaped as \\%c",
					  type, c, c);
		value[w++] = c;
		if (c != ' ')
			keep = w;
	}
	out->value = value;
	out->len = keep;
	*more = s[i] == sep;
	*pos = *more ? i + 1 : i;
	return P11CA_OK;
}

long x509_utf8_chars(const unsigned char *s, size_t len)
{
	long n = 0;
	for (size_t i = 0; i < len; n++) {
		unsigned c = s[i], cp, need;
		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return -1;
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			cp = c & 0x1f, need = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			cp = c & 0x0f, need = 2;
		} else if (c >= 0xf0 && c <= 0xf4) {
			cp = c & 0x07, need = 3;
		} else {
			return -1;
		}
		if (need > len - i - 1)
			return -1;
		for (unsigned k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return -1;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		/* Overlong forms, beyond Unicode, surrogates, and the C1 controls (NEL, CSI, …
		 * which terminals and log viewers act on like the C0 ones). */
		if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
			return -1;
		i += need + 1;
	}
	return n;
}

static bool printable_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr(" '()+,-./:=?", c) != NULL);
}

static enum p11ca_err rdn_check(struct rdn *r, int *asn1_type, struct p11ca_errmsg *em)
{
	const unsigned char *v = (const unsigned char *)r->value;
	if (r->len == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "subject attribute %s has an empty value", r->type);
	if (memchr(v, '\0', r->len) != NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "subject attribute %s contains a NUL byte; remove it", r->type);
	long chars = x509_utf8_chars(v, r->len);
	if (chars < 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "subject attribute %s is not valid UTF-8 or holds a control "
				  "character",
				  r->type);
	if (r->attr->kind != KIND_COUNTRY && (unsigned long)chars > r->attr->max)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "subject attribute %s is %ld characters long; RFC 5280 allows at "
				  "most %u",
				  r->type, chars, r->attr->max);
	switch (r->attr->kind) {
	case KIND_COUNTRY:
		for (size_t i = 0; i < r->len; i++)
			r->value[i] = (char)(v[i] >= 'a' && v[i] <= 'z' ? v[i] - 32 : v[i]);
		if (r->len != 2 || v[0] < 'A' || v[0] > 'Z' || v[1] < 'A' || v[1] > 'Z')
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "subject attribute %s must be a two-letter ISO 3166 "
					  "country code such as AT",
					  r->type);
		*asn1_type = V_ASN1_PRINTABLESTRING;
		return P11CA_OK;
	case KIND_PRINTABLE:
		for (size_t i = 0; i < r->len; i++)
			if (!printable_char(v[i]))
				return p11ca_fail(em, P11CA_E_INVALID_ARG,
						  "subject attribute %s may only hold letters, "
						  "digits and ' ()+,-./:=?",
						  r->type);
		*asn1_type = V_ASN1_PRINTABLESTRING;
		return P11CA_OK;
	case KIND_IA5:
		if ((size_t)chars != r->len)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "subject attribute %s must be ASCII", r->type);
		*asn1_type = V_ASN1_IA5STRING;
		return P11CA_OK;
	default:
		*asn1_type = V_ASN1_UTF8STRING;
		return P11CA_OK;
	}
}

/* Split the whole text into rdns[] in X.509 order (most significant first). */
static enum p11ca_err name_split(char *buf, struct rdn *rdns, size_t *n, struct p11ca_errmsg *em)
{
	bool openssl = buf[0] == '/';
	char sep = openssl ? '/' : ',';
	size_t pos = openssl ? 1 : 0, count = 0;
	/* Not buf[pos - 1] == sep: that may be the end of an escaped "\\," value. */
	bool more = false;
	while (buf[pos] != '\0' || more) {
		if (count == X509_NAME_RDN_MAX)
			return p11ca_fail(em, P11CA_E_INVALID_ARG,
					  "subject has more than %d attributes", X509_NAME_RDN_MAX);
		P11CA_GUARD(rdn_split(buf, &pos, sep, &rdns[count], &more, em));
		count++;
	}
	if (count == 0)
		return p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"the subject is empty; give at least one attribute such as CN=name");
	/* RFC 4514 writes the most significant RDN last. */
	for (size_t i = 0; !openssl && i < count / 2; i++) {
		struct rdn t = rdns[i];
		rdns[i] = rdns[count - 1 - i];
		rdns[count - 1 - i] = t;
	}
	*n = count;
	return P11CA_OK;
}

enum p11ca_err x509_name_parse(const char *text, X509_NAME **out, struct p11ca_errmsg *em)
{
	*out = NULL;
	if (text == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "no subject given");
	size_t text_len = strnlen(text, X509_NAME_TEXT_MAX + 1);
	if (text_len > X509_NAME_TEXT_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "subject text longer than %d bytes",
				  X509_NAME_TEXT_MAX);

	enum p11ca_err err;
	struct rdn rdns[X509_NAME_RDN_MAX];
	size_t n = 0;
	X509_NAME *name = NULL;
	char *buf = strdup(text);
	if (buf == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory parsing a subject");
		goto out;
	}
	err = name_split(buf, rdns, &n, em);
	if (err != P11CA_OK)
		goto out;

	/* Stable insertion sort by rank: C, ST, L, O, OU, CN, then the rest as given. */
	for (size_t i = 1; i < n; i++) {
		struct rdn t = rdns[i];
		size_t j = i;
		for (; j > 0 && rdns[j - 1].attr->rank > t.attr->rank; j--)
			rdns[j] = rdns[j - 1];
		rdns[j] = t;
	}

	name = X509_NAME_new();
	if (name == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a subject");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		int type = 0;
		err = rdn_check(&rdns[i], &type, em);
		if (err != P11CA_OK)
			goto out;
		if (X509_NAME_add_entry_by_NID(name, rdns[i].attr->nid, type,
					       (const unsigned char *)rdns[i].value,
					       (int)rdns[i].len, -1, 0) != 1) {
			err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory building a subject");
			goto out;
		}
	}
	*out = name;
	name = NULL;
out:
	X509_NAME_free(name);
	free(buf);
	return err;
}

enum p11ca_err x509_name_format(const X509_NAME *name, char *out, size_t cap,
				struct p11ca_errmsg *em)
{
	if (out == NULL || cap == 0 || name == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "x509_name_format: no name or buffer");
	out[0] = '\0';
	/* RFC 2253 escaping, but UTF-8 passed through rather than as \XX (RFC 4514 2.4). */
	unsigned long flags = XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB;
	BIO *bio = BIO_new(BIO_s_mem());
	if (bio == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory formatting a name");
	enum p11ca_err err = P11CA_OK;
	char *data = NULL;
	long len = 0;
	if (X509_NAME_print_ex(bio, name, 0, flags) < 0) {
		err = p11ca_fail(em, P11CA_E_INTERNAL, "cannot format a distinguished name");
		goto out;
	}
	len = BIO_get_mem_data(bio, &data);
	if (len < 0 || (size_t)len >= cap) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "distinguished name of %ld characters does not fit %zu bytes", len,
				 cap);
		goto out;
	}
	if (len > 0) /* an empty name leaves the BIO without storage */
		memcpy(out, data, (size_t)len);
	out[len] = '\0';
out:
	BIO_free(bio);
	return err;
}

/* What a value of one string type must hold beyond valid characters, by ASN.1 type. */
static bool string_type_ok(int type)
{
	return type == V_ASN1_UTF8STRING || type == V_ASN1_PRINTABLESTRING ||
	       type == V_ASN1_IA5STRING || type == V_ASN1_BMPSTRING ||
	       type == V_ASN1_UNIVERSALSTRING || type == V_ASN1_T61STRING;
}

/* One entry of a name from outside, against the rules x509_name_parse applies. */
static enum p11ca_err entry_check(const X509_NAME_ENTRY *e, struct p11ca_errmsg *em)
{
	const ASN1_OBJECT *obj = X509_NAME_ENTRY_get_object(e);
	const ASN1_STRING *v = X509_NAME_ENTRY_get_data(e);
	int nid = OBJ_obj2nid(obj);
	char type[80] = "?";
	OBJ_obj2txt(type, sizeof(type), obj, 0);
	const struct name_attr *attr = NULL;
	for (size_t i = 0; i < COUNT(name_attrs) && attr == NULL; i++)
		if (name_attrs[i].nid == nid)
			attr = &name_attrs[i];
	int st = ASN1_STRING_type(v);
	if (!string_type_ok(st))
		return p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"subject attribute %s has an unsupported string type (ASN.1 tag %d); "
			"use UTF8String or PrintableString",
			type, st);
	const unsigned char *raw = ASN1_STRING_get0_data(v);
	size_t raw_len = (size_t)ASN1_STRING_length(v);
	for (size_t i = 0; st == V_ASN1_PRINTABLESTRING && i < raw_len; i++)
		if (!printable_char(raw[i]))
			return p11ca_fail(
				em, P11CA_E_INVALID_ARG,
				"subject attribute %s is a PrintableString with a character "
				"outside its set",
				type);
	for (size_t i = 0; st == V_ASN1_IA5STRING && i < raw_len; i++)
		if (raw[i] >= 0x80)
			return p11ca_fail(
				em, P11CA_E_INVALID_ARG,
				"subject attribute %s is an IA5String with non-ASCII bytes", type);
	/* Every type through UTF-8, so one check sees NUL, control characters and length
	 * in characters alike; a UTF8String that is not UTF-8 fails the conversion. */
	unsigned char *utf8 = NULL;
	int len = ASN1_STRING_to_UTF8(&utf8, v);
	long chars = len > 0 ? x509_utf8_chars(utf8, (size_t)len) : len;
	bool country_ok =
		len == 2 && utf8[0] >= 'A' && utf8[0] <= 'Z' && utf8[1] >= 'A' && utf8[1] <= 'Z';
	OPENSSL_free(utf8);
	unsigned max = attr != NULL ? attr->max : 256;
	if (len == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "subject attribute %s has an empty value", type);
	if (chars < 0)
		return p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"subject attribute %s is not valid in its string type, or holds a "
			"NUL or control character",
			type);
	if (nid == NID_countryName && !country_ok)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "subject attribute %s must be a two-letter ISO 3166 country code "
				  "in capitals, such as AT",
				  type);
	if ((unsigned long)chars > max)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "subject attribute %s is %ld characters long; at most %u are "
				  "allowed",
				  type, chars, max);
	return P11CA_OK;
}

enum p11ca_err x509_name_check(const X509_NAME *name, struct p11ca_errmsg *em)
{
	if (name == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "no subject name to check");
	int n = X509_NAME_entry_count(name);
	if (n > X509_NAME_RDN_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the subject has %d attributes; at most %d", n,
				  X509_NAME_RDN_MAX);
	for (int i = 0; i < n; i++) {
		const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
		/* Multi-valued RDNs ('+') are refused by x509_name_parse too. */
		if (i > 0 &&
		    X509_NAME_ENTRY_set(e) == X509_NAME_ENTRY_set(X509_NAME_get_entry(name, i - 1)))
			return p11ca_fail(
				em, P11CA_E_INVALID_ARG,
				"the subject has a multi-valued RDN ('+'); use one attribute "
				"per RDN");
		P11CA_GUARD(entry_check(e, em));
	}
	return P11CA_OK;
}
