/*
 * A certificate decided before its serial is drawn (plan.h): profile, CA settings and
 * request layered; subject and SANs completed and checked; the CSR held to the configured
 * policy; validity and algorithm chosen; the issuers' nameConstraints honoured. Nothing
 * comes from a CSR but its public key (and, as the last resort, its subject).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/x509v3.h>

#include "appliance/engine/plan.h"

#define PLAN_DAYS_MAX (100 * 366) /* past it, years stop meaning anything */

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

/* ---- algorithm, validity, key ------------------------------------------------------------- */

/* The request's algorithm, else the CA's own (engine_ca_sig_alg). */
static enum p11ca_err alg_decide(const struct engine_ca *ca, const p11ca_v1_CaSettings *settings,
				 enum hsm_sig_alg want, enum hsm_sig_alg *out,
				 struct p11ca_errmsg *em)
{
	char whose[STORE_CA_NAME_MAX + 8];
	snprintf(whose, sizeof(whose), "CA %s's", ca->rec.name);
	P11CA_GUARD(engine_alg_for_key(want, ca->key_type, whose, em));
	*out = want != HSM_SIG_UNSPECIFIED ? want : engine_ca_sig_alg(ca, settings);
	return P11CA_OK;
}

int64_t engine_chain_end(X509 *const *chain, size_t n, int64_t bound)
{
	for (size_t i = 0; i < n; i++) {
		int64_t t = engine_asn1_time(X509_get0_notAfter(chain[i]));
		if (t < bound)
			bound = t;
	}
	return bound;
}

/* A certificate ends no later than the first certificate of its chain to end: past it, no
 * relying party can build a path to it. */
static enum p11ca_err validity_decide(const struct p11cad_config *cfg, const struct engine_ca *ca,
				      X509 *const *chain, size_t n_chain, unsigned want,
				      int64_t now, struct engine_plan *p, struct p11ca_errmsg *em)
{
	int64_t ca_end = engine_chain_end(chain, n_chain, ca->not_after);
	const char *whose = ca_end < ca->not_after ? "the chain above " : "";
	unsigned days = want != 0			? want
			: p->profile->expires_days != 0 ? p->profile->expires_days
							: cfg->cert_expires_days;
	if (days == 0 || days > PLAN_DAYS_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%u days is not a validity: give 1 to %d days", days,
				  PLAN_DAYS_MAX);
	p->spec.not_before = now - ENGINE_CLOCK_SKEW;
	p->spec.not_after = now + (int64_t)days * ENGINE_DAY;
	if (p->spec.not_after > ca_end) {
		char end[32], wanted[32];
		engine_time_text(ca_end, end);
		engine_time_text(p->spec.not_after, wanted);
		if (ca_end - now < ENGINE_DAY)
			return p11ca_fail(
				em, P11CA_E_INVALID_ARG,
				"%sCA %s expires %s, in less than a day: issue from another "
				"CA, or make a new one",
				whose, ca->rec.name, end);
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the certificate would expire %s, after %sCA %s (%s): the "
				  "latest possible date is %s; ask for at most %lld days",
				  wanted, whose, ca->rec.name, end, end,
				  (long long)((ca_end - now) / ENGINE_DAY));
	}
	return P11CA_OK;
}

static enum p11ca_err key_decide(const struct p11cad_config *cfg,
				 const struct engine_plan_request *r, struct engine_plan *p,
				 struct p11ca_errmsg *em)
{
	struct x509_csr_policy pol = {
		.max_bytes = cfg->csr_max_bytes,
		.min_rsa_bits = cfg->rsa_min_bits,
		.min_rsa_exponent = cfg->rsa_min_exponent,
	};
	if (r->csr != NULL) {
		P11CA_GUARD(x509_csr_load(r->csr, r->csr_len, &pol, &p->csr, &p->pub, em));
		p->spec.spki = X509_REQ_get_X509_PUBKEY(p->csr);
	} else if (r->public_key != NULL) {
		/* A key from a stored certificate (resign) meets today's policy too: it may
		 * have been imported, or issued before the limits were raised. */
		P11CA_GUARD(x509_spki_check(r->spki, &pol, "the certificate's", em));
		if (EVP_PKEY_up_ref(r->public_key) != 1)
			return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
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

enum p11ca_err engine_constraints_check(const struct x509_cert_spec *spec, X509 *const *chain,
					size_t n, struct p11ca_errmsg *em)
{
	static const uint8_t probe_serial[1] = {1};
	struct x509_cert_spec probe = *spec;
	EVP_PKEY *key = NULL;
	X509 *tbs = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	bool constrained = false;
	for (size_t i = 0; i < n && !constrained; i++)
		constrained = X509_get_ext_by_NID(chain[i], NID_name_constraints, -1) >= 0;
	if (!constrained)
		return P11CA_OK;
	if (probe.public_key == NULL && probe.spki == NULL) {
		/* A new CA's key does not exist yet: its names do not depend on it. */
		if ((key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL)
			return p11ca_fail(em, P11CA_E_NOMEM,
					  "out of memory making a key to check names with");
		probe.public_key = key;
	}
	probe.serial = probe_serial;
	probe.serial_len = sizeof(probe_serial);
	enum p11ca_err err = x509_cert_tbs(&probe, &tbs, &der, &len, em);
	if (err == P11CA_OK)
		err = x509_check_name_constraints(tbs, chain, n, em);
	X509_free(tbs);
	OPENSSL_free(der);
	EVP_PKEY_free(key);
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
		err = validity_decide(cfg, ca, chain, n_chain, r->expires_days, now, p, em);
	if (err == P11CA_OK)
		err = key_decide(cfg, r, p, em);
	if (err == P11CA_OK)
		err = engine_plan_names(cfg, r, p, em);
	char serial[ENGINE_CA_SERIAL_HEX];
	engine_ca_serial_hex(ca->cert, serial);
	struct engine_ext_issuer issuer = {.name = ca->rec.name, .serial = serial};
	if (err == P11CA_OK)
		err = engine_ext_resolve(p->profile,
					 settings->has_issued ? &settings->issued : NULL, r->ext,
					 r->admin, &issuer, &p->ext, em);
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
	err = engine_constraints_check(&p->spec, chain, n_chain, em);
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

enum p11ca_err engine_ca_revoked(struct store_txn *txn, const struct store_ca *rec,
				 const X509 *cert, bool *revoked, struct p11ca_errmsg *em)
{
	const ASN1_INTEGER *sn = X509_get0_serialNumber(cert);
	uint8_t serial[STORE_SERIAL_LEN] = {0};
	struct p11ca_errmsg get_em;
	*revoked = false;
	if (sn == NULL || sn->length <= 0 || sn->length > STORE_SERIAL_LEN)
		return P11CA_OK; /* not recorded (an imported CA's odd serial): not revocable here
				  */
	memcpy(serial + STORE_SERIAL_LEN - sn->length, sn->data, (size_t)sn->length);
	struct store_cert *c = OPENSSL_malloc(sizeof(*c));
	if (c == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	/* A CA's certificate is recorded under its issuer (a root: itself). */
	enum p11ca_err err = store_cert_get(txn, rec->parent_id != 0 ? rec->parent_id : rec->id,
					    serial, c, &get_em);
	if (err == P11CA_OK)
		*revoked = c->revoked;
	else if (err == P11CA_E_STORAGE_NOT_FOUND)
		err = P11CA_OK; /* an imported CA whose issuer lives elsewhere */
	else
		err = p11ca_fail(em, err, "%s", p11ca_errmsg_text(&get_em));
	OPENSSL_free(c);
	return err;
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
		X509 *x = engine_ca_rec_x509(rec);
		if (x == NULL) {
			err = p11ca_fail(em, P11CA_E_STORAGE_CORRUPT,
					 "the certificate of CA %s does not parse: run the audit "
					 "verification",
					 rec->name);
			break;
		}
		chain[(*n)++] = x;
		bool revoked = false;
		err = engine_ca_revoked(txn, rec, x, &revoked, em);
		if (err == P11CA_OK && revoked)
			err = p11ca_fail(em, P11CA_E_POLICY,
					 "CA %s's certificate is revoked: nothing under it may be "
					 "issued any more; make a new CA",
					 rec->name);
		/* A root's parent_id is 0; a self-reference would be a loop caught above. */
		id = rec->parent_id;
	}
	OPENSSL_free(rec);
	if (err != P11CA_OK)
		engine_plan_chain_free(chain, n);
	return err;
}
