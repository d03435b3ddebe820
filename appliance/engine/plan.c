/*
 * A certificate decided before its serial is drawn (plan.h): profile, CA settings and
 * request layered; subject and SANs completed and checked; the CSR held to the configured
 * policy; validity and algorithm chosen; the issuers' nameConstraints honoured. Nothing
 * comes from a CSR but its public key (and, as the last resort, its subject).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/x509v3.h>

#include "appliance/engine/plan.h"

#define PLAN_DAYS_MAX (100 * 366) /* past it, years stop meaning anything */
#define PLAN_CN_MAX   64	  /* RFC 5280 ub-common-name */

void engine_time_text(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(out, 32, "%lld", (long long)t);
}

void engine_plan_free(struct engine_plan **pp)
{
	if (pp == NULL || *pp == NULL)
		return;
	struct engine_plan *p = *pp;
	engine_ext_clear(&p->ext);
	X509_REQ_free(p->csr);
	EVP_PKEY_free(p->pub);
	X509_NAME_free(p->subject);
	GENERAL_NAMES_free(p->sans);
	OPENSSL_clear_free(p, sizeof(*p));
	*pp = NULL;
}

/* ---- names ------------------------------------------------------------------------------ */

static const int canonical_nids[] = {
	NID_countryName,      NID_stateOrProvinceName,	  NID_localityName,
	NID_organizationName, NID_organizationalUnitName, NID_commonName};
#define N_CANONICAL (sizeof(canonical_nids) / sizeof(canonical_nids[0]))

static bool nid_canonical(int nid)
{
	for (size_t i = 0; i < N_CANONICAL; i++)
		if (canonical_nids[i] == nid)
			return true;
	return false;
}

static enum p11ca_err name_copy_nid(X509_NAME *to, const X509_NAME *from, int nid, bool *any,
				    struct p11ca_errmsg *em)
{
	*any = false;
	for (int i = -1; from != NULL && (i = X509_NAME_get_index_by_NID(from, nid, i)) >= 0;) {
		if (X509_NAME_add_entry(to, X509_NAME_get_entry(from, i), -1, 0) != 1)
			return p11ca_fail(em, P11CA_E_NOMEM, "out of memory building the subject");
		*any = true;
	}
	return P11CA_OK;
}

/* `top` with the attributes of `low` it lacks, in x509_name_parse's canonical order (C, ST,
 * L, O, OU, CN, then the rest as given, top's first). Either may be NULL. */
static enum p11ca_err name_merge(const X509_NAME *top, const X509_NAME *low, X509_NAME **out,
				 struct p11ca_errmsg *em)
{
	X509_NAME *n = X509_NAME_new();
	bool any;
	enum p11ca_err err = P11CA_OK;
	if (n == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	for (size_t i = 0; err == P11CA_OK && i < N_CANONICAL; i++) {
		err = name_copy_nid(n, top, canonical_nids[i], &any, em);
		if (err == P11CA_OK && !any)
			err = name_copy_nid(n, low, canonical_nids[i], &any, em);
	}
	const X509_NAME *layers[2] = {top, low};
	for (int l = 0; l < 2; l++) {
		for (int i = 0;
		     err == P11CA_OK && layers[l] != NULL && i < X509_NAME_entry_count(layers[l]);
		     i++) {
			X509_NAME_ENTRY *e = X509_NAME_get_entry(layers[l], i);
			int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
			if (nid_canonical(nid) || (l == 1 && top != NULL &&
						   X509_NAME_get_index_by_NID(top, nid, -1) >= 0))
				continue;
			if (X509_NAME_add_entry(n, e, -1, 0) != 1)
				err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		}
	}
	if (err != P11CA_OK) {
		X509_NAME_free(n);
		return err;
	}
	*out = n;
	return P11CA_OK;
}

/* The text a SAN offers as a CN (DNS, email and URI values, IP addresses), or "". */
static void san_as_cn(const GENERAL_NAME *gn, char out[PLAN_CN_MAX + 1])
{
	out[0] = '\0';
	if (gn->type == GEN_DNS || gn->type == GEN_EMAIL || gn->type == GEN_URI) {
		const ASN1_IA5STRING *s = gn->d.ia5;
		if (s->length > 0 && s->length <= PLAN_CN_MAX &&
		    memchr(s->data, '\0', (size_t)s->length) == NULL)
			snprintf(out, PLAN_CN_MAX + 1, "%.*s", s->length, (const char *)s->data);
	} else if (gn->type == GEN_IPADD) {
		const ASN1_OCTET_STRING *ip = gn->d.iPAddress;
		char buf[INET6_ADDRSTRLEN];
		if ((ip->length == 4 || ip->length == 16) &&
		    inet_ntop(ip->length == 4 ? AF_INET : AF_INET6, ip->data, buf, sizeof(buf)))
			snprintf(out, PLAN_CN_MAX + 1, "%s", buf);
	}
}

static bool gn_present(const GENERAL_NAMES *sans, const GENERAL_NAME *gn)
{
	for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++)
		if (GENERAL_NAME_cmp(sk_GENERAL_NAME_value(sans, i), (GENERAL_NAME *)gn) == 0)
			return true;
	return false;
}

/* A CN that is an IP address or a DNS name also goes first into the SANs: clients match
 * names only there (RFC 6125). Any other CN stays in the subject only. */
static enum p11ca_err cn_into_sans(const X509_NAME *subject, GENERAL_NAMES *sans,
				   struct p11ca_errmsg *em)
{
	int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	if (i < 0)
		return P11CA_OK;
	unsigned char *utf8 = NULL;
	int n = ASN1_STRING_to_UTF8(&utf8,
				    X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
	if (n <= 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the subject's CN is not valid text: give another subject");
	GENERAL_NAME *gn = NULL;
	enum p11ca_err err = P11CA_OK;
	if (n < 250 && memchr(utf8, '\0', (size_t)n) == NULL) {
		static const char *const kinds[] = {"IP", "DNS"};
		char text[260];
		struct p11ca_errmsg ignored;
		for (size_t k = 0; k < 2 && gn == NULL; k++) {
			snprintf(text, sizeof(text), "%s:%.*s", kinds[k], n, (const char *)utf8);
			if (x509_san_parse(text, &gn, &ignored) != P11CA_OK)
				gn = NULL;
		}
	}
	if (gn != NULL && !gn_present(sans, gn)) {
		if (sk_GENERAL_NAME_insert(sans, gn, 0) <= 0)
			err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory adding the CN");
		else
			gn = NULL;
	}
	GENERAL_NAME_free(gn);
	OPENSSL_free(utf8);
	return err;
}

static enum p11ca_err sans_build(const struct engine_plan_request *r, GENERAL_NAMES **out,
				 struct p11ca_errmsg *em)
{
	if (r->san_names != NULL) {
		*out = sk_GENERAL_NAME_deep_copy(r->san_names, GENERAL_NAME_dup, GENERAL_NAME_free);
		return *out != NULL ? P11CA_OK
				    : p11ca_fail(em, P11CA_E_NOMEM, "out of memory copying names");
	}
	if ((*out = sk_GENERAL_NAME_new_null()) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	for (size_t i = 0; i < r->n_sans; i++) {
		GENERAL_NAME *gn = NULL;
		P11CA_GUARD(x509_san_parse(r->sans[i], &gn, em));
		if (gn_present(*out, gn)) {
			GENERAL_NAME_free(gn); /* a name twice is the same name */
			continue;
		}
		if (sk_GENERAL_NAME_push(*out, gn) <= 0) {
			GENERAL_NAME_free(gn);
			return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		}
	}
	return P11CA_OK;
}

/* Subject: the given one (text or name) with the profile's attributes it lacks; without a
 * CN, the first SAN as CN; empty after all that, the CSR's. */
static enum p11ca_err subject_build(const struct engine_plan_request *r,
				    const struct p11cad_profile *pr, struct engine_plan *p,
				    struct p11ca_errmsg *em)
{
	X509_NAME *given = NULL, *dflt = NULL, *cn = NULL, *merged = NULL;
	enum p11ca_err err = P11CA_OK;
	if (r->subject_name != NULL) {
		if ((given = X509_NAME_dup(r->subject_name)) == NULL)
			err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		else
			err = x509_name_check(given, em);
	} else if (r->subject != NULL && r->subject[0] != '\0') {
		err = x509_name_parse(r->subject, &given, em);
	}
	if (err == P11CA_OK && pr->subject[0] != '\0')
		err = x509_name_parse(pr->subject, &dflt, em);
	if (err == P11CA_OK)
		err = name_merge(given, dflt, &p->subject, em);
	if (err != P11CA_OK)
		goto out;
	char text[PLAN_CN_MAX + 1] = "";
	if (!r->no_san_to_cn && X509_NAME_get_index_by_NID(p->subject, NID_commonName, -1) < 0 &&
	    sk_GENERAL_NAME_num(p->sans) > 0)
		san_as_cn(sk_GENERAL_NAME_value(p->sans, 0), text);
	if (text[0] != '\0') {
		if ((cn = X509_NAME_new()) == NULL ||
		    X509_NAME_add_entry_by_NID(cn, NID_commonName, MBSTRING_UTF8,
					       (const unsigned char *)text, -1, -1, 0) != 1) {
			err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
			goto out;
		}
		err = name_merge(p->subject, cn, &merged, em);
		if (err != P11CA_OK)
			goto out;
		X509_NAME_free(p->subject);
		p->subject = merged;
	}
	if (X509_NAME_entry_count(p->subject) == 0 && given == NULL && p->csr != NULL) {
		const X509_NAME *csr_subject = X509_REQ_get_subject_name(p->csr);
		err = x509_name_check(csr_subject, em);
		if (err != P11CA_OK)
			goto out;
		X509_NAME_free(p->subject);
		if ((p->subject = X509_NAME_dup(csr_subject)) == NULL)
			err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	}
out:
	X509_NAME_free(given);
	X509_NAME_free(dflt);
	X509_NAME_free(cn);
	return err;
}

static enum p11ca_err names_decide(const struct p11cad_config *cfg,
				   const struct engine_plan_request *r, struct engine_plan *p,
				   struct p11ca_errmsg *em)
{
	size_t max = cfg->max_sans != 0 ? cfg->max_sans : 64;
	if (r->n_sans > max)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%zu SANs requested; this server allows at most %zu ([engine] "
				  "max_sans)",
				  r->n_sans, max);
	P11CA_GUARD(sans_build(r, &p->sans, em));
	P11CA_GUARD(subject_build(r, p->profile, p, em));
	if (p->profile->cn_in_san && !r->no_cn_in_san)
		P11CA_GUARD(cn_into_sans(p->subject, p->sans, em));
	if ((size_t)sk_GENERAL_NAME_num(p->sans) > max)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "with the CN added the certificate would have %d SANs, over this "
				  "server's %zu: give fewer names",
				  sk_GENERAL_NAME_num(p->sans), max);
	if (X509_NAME_get_index_by_NID(p->subject, NID_commonName, -1) < 0 &&
	    sk_GENERAL_NAME_num(p->sans) == 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate would name nobody: give a subject with a CN or "
				  "at least one SAN");
	return P11CA_OK;
}

/* ---- algorithm, validity, key ------------------------------------------------------------- */

static enum p11ca_err alg_decide(const struct engine_ca *ca, const p11ca_v1_CaSettings *settings,
				 enum hsm_sig_alg want, enum hsm_sig_alg *out,
				 struct p11ca_errmsg *em)
{
	if ((unsigned)want > HSM_SIG_ED25519)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "signature algorithm %d is unknown",
				  (int)want);
	enum hsm_sig_alg alg = want;
	if (alg == HSM_SIG_UNSPECIFIED)
		alg = (enum hsm_sig_alg)settings->signature_algorithm;
	if (alg == HSM_SIG_UNSPECIFIED || (unsigned)alg > HSM_SIG_ED25519)
		alg = hsm_sig_alg_default(ca->key_type);
	if (hsm_sig_alg_fits(alg, ca->key_type)) {
		*out = alg;
		return P11CA_OK;
	}
	if (ca->key_type == HSM_KEY_ED25519)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "CA %s has an Ed25519 key, which signs without a separate hash: "
				  "leave the signature algorithm out (or give ed25519), not %s",
				  ca->rec.name, hsm_sig_alg_name(alg));
	return p11ca_fail(em, P11CA_E_INVALID_ARG,
			  "signature algorithm %s does not fit CA %s's %s key: give one for that "
			  "key type or leave it out",
			  hsm_sig_alg_name(alg), ca->rec.name, hsm_key_type_name(ca->key_type));
}

static enum p11ca_err validity_decide(const struct p11cad_config *cfg, const struct engine_ca *ca,
				      unsigned want, int64_t now, struct engine_plan *p,
				      struct p11ca_errmsg *em)
{
	unsigned days = want != 0			? want
			: p->profile->expires_days != 0 ? p->profile->expires_days
							: cfg->cert_expires_days;
	if (days == 0 || days > PLAN_DAYS_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%u days is not a validity: give 1 to %d days", days,
				  PLAN_DAYS_MAX);
	p->spec.not_before = now - ENGINE_CLOCK_SKEW;
	p->spec.not_after = now + (int64_t)days * ENGINE_DAY;
	if (p->spec.not_after > ca->not_after) {
		char end[32], wanted[32];
		engine_time_text(ca->not_after, end);
		engine_time_text(p->spec.not_after, wanted);
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate would expire %s, after CA %s (%s): the latest "
				  "possible date is %s; ask for at most %lld days",
				  wanted, ca->rec.name, end, end,
				  (long long)((ca->not_after - now) / ENGINE_DAY));
	}
	return P11CA_OK;
}

static enum p11ca_err key_decide(const struct p11cad_config *cfg,
				 const struct engine_plan_request *r, struct engine_plan *p,
				 struct p11ca_errmsg *em)
{
	if (r->csr != NULL) {
		struct x509_csr_policy pol = {
			.max_bytes = cfg->csr_max_bytes,
			.min_rsa_bits = cfg->rsa_min_bits,
			.min_rsa_exponent = cfg->rsa_min_exponent,
		};
		P11CA_GUARD(x509_csr_load(r->csr, r->csr_len, &pol, &p->csr, &p->pub, em));
		p->spec.spki = X509_REQ_get_X509_PUBKEY(p->csr);
	} else if (r->public_key != NULL && EVP_PKEY_up_ref(r->public_key) == 1) {
		p->pub = r->public_key;
		p->spec.spki = r->spki;
	} else {
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "no certificate signing request given: send one (PEM or DER)");
	}
	p->spec.public_key = p->pub;
	return P11CA_OK;
}

/* ---- the issuers' nameConstraints --------------------------------------------------------- */

static bool chain_constrained(X509 *const *chain, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (X509_get_ext_by_NID(chain[i], NID_name_constraints, -1) >= 0)
			return true;
	return false;
}

/* Checked on a TBS built with a stand-in serial: the real one is drawn only once the
 * certificate is known to be acceptable. */
static enum p11ca_err constraints_check(struct engine_plan *p, X509 *const *chain, size_t n,
					struct p11ca_errmsg *em)
{
	static const uint8_t probe_serial[1] = {1};
	X509 *tbs = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	if (!chain_constrained(chain, n))
		return P11CA_OK;
	p->spec.serial = probe_serial;
	p->spec.serial_len = sizeof(probe_serial);
	enum p11ca_err err = x509_cert_tbs(&p->spec, &tbs, &der, &len, em);
	if (err == P11CA_OK)
		err = x509_check_name_constraints(tbs, chain, n, em);
	p->spec.serial = NULL;
	p->spec.serial_len = 0;
	X509_free(tbs);
	OPENSSL_free(der);
	return err;
}

/* ---- the plan ----------------------------------------------------------------------------- */

static enum p11ca_err ca_usable(const struct engine_ca *ca, const p11ca_v1_CaSettings *settings,
				int64_t now, struct p11ca_errmsg *em)
{
	if (ca->cert == NULL || ca->rec.state == STORE_CA_PENDING)
		return p11ca_fail(em, P11CA_E_POLICY,
				  "CA %s has no certificate (its creation did not finish): it "
				  "cannot issue",
				  ca->rec.name);
	if (ca->rec.state == STORE_CA_DISABLED || !settings->enabled)
		return p11ca_fail(em, P11CA_E_POLICY,
				  "CA %s is disabled: enable it with p11ca ca edit %s --enable",
				  ca->rec.name, ca->rec.name);
	if (ca->rec.state != STORE_CA_ACTIVE)
		return p11ca_fail(em, P11CA_E_POLICY, "CA %s is not active: it cannot issue",
				  ca->rec.name);
	if (ca->not_after <= now)
		return p11ca_fail(em, P11CA_E_POLICY, "CA %s has expired: it cannot issue",
				  ca->rec.name);
	return P11CA_OK;
}

static void ca_serial_hex(const X509 *cert, char out[2 * 32 + 1])
{
	const ASN1_INTEGER *sn = X509_get0_serialNumber(cert);
	size_t len = sn != NULL && sn->length > 0 ? (size_t)sn->length : 0;
	engine_hex_format(sn != NULL ? sn->data : (const uint8_t *)"", len > 32 ? 32 : len, out);
}

enum p11ca_err engine_plan_build(const struct p11cad_config *cfg, const struct engine_ca *ca,
				 const p11ca_v1_CaSettings *settings, X509 *const *chain,
				 size_t n_chain, const struct engine_plan_request *r, int64_t now,
				 struct engine_plan **out, struct p11ca_errmsg *em)
{
	struct engine_plan *p = NULL;
	enum p11ca_err err;

	*out = NULL;
	P11CA_GUARD(ca_usable(ca, settings, now, em));
	if ((p = OPENSSL_zalloc(sizeof(*p))) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	const char *pname = r->profile != NULL && r->profile[0] != '\0' ? r->profile
			    : settings->default_profile[0] != '\0'	? settings->default_profile
									: cfg->default_profile;
	p->profile = p11cad_config_profile(cfg, pname);
	if (p->profile == NULL) {
		err = p11ca_fail(em, P11CA_E_STORAGE_NOT_FOUND,
				 "no enabled profile '%.64s': see p11ca profile list", pname);
		goto out;
	}
	err = alg_decide(ca, settings, r->alg, &p->spec.alg, em);
	if (err == P11CA_OK)
		err = validity_decide(cfg, ca, r->expires_days, now, p, em);
	if (err == P11CA_OK)
		err = key_decide(cfg, r, p, em);
	if (err == P11CA_OK)
		err = names_decide(cfg, r, p, em);
	char serial[2 * 32 + 1];
	ca_serial_hex(ca->cert, serial);
	struct engine_ext_issuer issuer = {.name = ca->rec.name, .serial = serial};
	if (err == P11CA_OK)
		err = engine_ext_resolve(p->profile,
					 settings->has_issued ? &settings->issued : NULL, r->ext,
					 &issuer, &p->ext, em);
	if (err != P11CA_OK)
		goto out;
	p->spec.subject = p->subject;
	p->spec.issuer = ca->cert;
	p->spec.is_ca = false;
	p->spec.path_length = -1;
	p->spec.key_usage = p->ext.key_usage;
	p->spec.key_usage_critical = p->ext.key_usage_critical;
	p->spec.eku = p->ext.eku_ptr;
	p->spec.n_eku = p->ext.n_eku;
	p->spec.eku_critical = p->ext.eku_critical;
	p->spec.sans = p->sans;
	p->spec.ext = &p->ext.spec;
	err = constraints_check(p, chain, n_chain, em);
out:
	if (err != P11CA_OK)
		engine_plan_free(&p);
	*out = p;
	return err;
}

/* ---- the issuer chain from storage -------------------------------------------------------- */

void engine_plan_chain_free(X509 *chain[ENGINE_CHAIN_MAX], size_t *n)
{
	for (size_t i = 0; i < *n; i++) {
		X509_free(chain[i]);
		chain[i] = NULL;
	}
	*n = 0;
}

enum p11ca_err engine_plan_chain_load(struct store_txn *txn, uint32_t id,
				      X509 *chain[ENGINE_CHAIN_MAX], size_t *n,
				      struct p11ca_errmsg *em)
{
	struct store_ca *rec = OPENSSL_zalloc(sizeof(*rec));
	enum p11ca_err err = P11CA_OK;
	*n = 0;
	if (rec == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	while (id != 0 && err == P11CA_OK) {
		if (*n == ENGINE_CHAIN_MAX) {
			err = p11ca_fail(em, P11CA_E_STORAGE_CORRUPT,
					 "the CA records form a loop: run the audit verification");
			break;
		}
		err = store_ca_get(txn, id, rec, em);
		if (err != P11CA_OK)
			break;
		const unsigned char *d = rec->cert_der;
		X509 *x =
			rec->cert_der_len != 0 ? d2i_X509(NULL, &d, (long)rec->cert_der_len) : NULL;
		if (x == NULL) {
			err = p11ca_fail(em, P11CA_E_STORAGE_CORRUPT,
					 "the certificate of CA %s does not parse", rec->name);
			break;
		}
		chain[(*n)++] = x;
		/* A root's parent_id is 0; a self-reference would be a loop caught above. */
		id = rec->parent_id;
	}
	OPENSSL_free(rec);
	if (err != P11CA_OK)
		engine_plan_chain_free(chain, n);
	return err;
}
