/*
 * A CA's settings (p11ca.v1.CaSettings, nanopb-encoded in its record): reading and writing
 * them, the rules ca init, ca import and ca edit share (algorithm, default profile), and the
 * options a new CA is made with.
 */
#include <stdio.h>
#include <string.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "appliance/engine/plan.h"

enum p11ca_err engine_ca_settings_get(const struct store_ca *rec, p11ca_v1_CaSettings *out,
				      struct p11ca_errmsg *em)
{
	memset(out, 0, sizeof(*out));
	if (rec->settings_len == 0) {
		/* A CA made before release 0.4: enabled as its state says, nothing else set. */
		out->enabled = rec->state == STORE_CA_ACTIVE;
		snprintf(out->key_uri, sizeof(out->key_uri), "%.511s", rec->key_uri);
		return P11CA_OK;
	}
	pb_istream_t s = pb_istream_from_buffer(rec->settings, rec->settings_len);
	if (!pb_decode(&s, p11ca_v1_CaSettings_fields, out)) {
		memset(out, 0, sizeof(*out));
		return p11ca_fail(em, P11CA_E_STORAGE_CORRUPT,
				  "the settings of CA %s do not decode (%s): restore a backup",
				  rec->name, PB_GET_ERROR(&s));
	}
	return P11CA_OK;
}

enum p11ca_err engine_ca_settings_set(struct store_ca *rec, const p11ca_v1_CaSettings *in,
				      struct p11ca_errmsg *em)
{
	pb_ostream_t s = pb_ostream_from_buffer(rec->settings, sizeof(rec->settings));
	if (!pb_encode(&s, p11ca_v1_CaSettings_fields, in))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the settings of CA %s do not fit its record (%s): give fewer "
				  "URLs or policies",
				  rec->name, PB_GET_ERROR(&s));
	rec->settings_len = s.bytes_written;
	return P11CA_OK;
}

/* ---- what ca init, ca import and ca edit share -------------------------------------------- */

enum hsm_sig_alg engine_ca_sig_alg(const struct engine_ca *ca, const p11ca_v1_CaSettings *settings)
{
	enum hsm_sig_alg alg = (enum hsm_sig_alg)settings->signature_algorithm;
	/* Stored settings were checked against the key; anything else is a CA made before
	 * release 0.4 (UNSPECIFIED), which signs as it always did. */
	if (alg != HSM_SIG_UNSPECIFIED && (unsigned)alg <= HSM_SIG_ED25519 &&
	    hsm_sig_alg_fits(alg, ca->key_type))
		return alg;
	return hsm_sig_alg_default(ca->key_type);
}

enum p11ca_err engine_alg_for_key(enum hsm_sig_alg alg, enum hsm_key_type type, const char *whose,
				  struct p11ca_errmsg *em)
{
	if ((unsigned)alg > HSM_SIG_ED25519)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "signature algorithm %d is unknown: give rsa-sha256 … "
				  "rsa-pss-sha512, ecdsa-sha256 … ecdsa-sha512 or ed25519",
				  (int)alg);
	if (alg == HSM_SIG_UNSPECIFIED || hsm_sig_alg_fits(alg, type))
		return P11CA_OK;
	if (type == HSM_KEY_ED25519)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s Ed25519 key signs without a separate hash: leave the "
				  "signature algorithm out (or give ed25519), not %s",
				  whose, hsm_sig_alg_name(alg));
	return p11ca_fail(em, P11CA_E_INVALID_ARG,
			  "signature algorithm %s does not fit %s %s key: give one for that key "
			  "type or leave it out",
			  hsm_sig_alg_name(alg), whose, hsm_key_type_name(type));
}

enum p11ca_err engine_ca_profile_set(const struct p11cad_config *cfg, const char *name,
				     p11ca_v1_CaSettings *st, struct p11ca_errmsg *em)
{
	if (name[0] != '\0' && p11cad_config_profile(cfg, name) == NULL)
		return p11ca_fail(em, P11CA_E_STORAGE_NOT_FOUND,
				  "no enabled profile '%.64s' for the CA's default: see p11ca "
				  "profile list",
				  name);
	snprintf(st->default_profile, sizeof(st->default_profile), "%s", name);
	return P11CA_OK;
}

enum p11ca_err engine_ca_issued_set(const p11ca_v1_ExtensionSettings *issued,
				    p11ca_v1_CaSettings *st, struct p11ca_errmsg *em)
{
	P11CA_GUARD(engine_ext_check(issued, em));
	st->has_issued = true;
	st->issued = *issued;
	return P11CA_OK;
}

/* ---- a new CA's options ------------------------------------------------------------------- */

void engine_ca_options_clear(struct engine_ca_options *o)
{
	if (o == NULL)
		return;
	engine_ext_clear(&o->ext);
	sk_GENERAL_SUBTREE_pop_free(o->permitted, GENERAL_SUBTREE_free);
	sk_GENERAL_SUBTREE_pop_free(o->excluded, GENERAL_SUBTREE_free);
	OPENSSL_free(o->settings);
	memset(o, 0, sizeof(*o));
}

/* The names as nameConstraints subtrees (*out stays NULL for none), and as text in the
 * settings. */
static enum p11ca_err subtrees_take(const char (*names)[256], pb_size_t n,
				    STACK_OF(GENERAL_SUBTREE) * *out, char (*text)[256],
				    pb_size_t *n_text, struct p11ca_errmsg *em)
{
	if (n == 0)
		return P11CA_OK;
	if ((*out = sk_GENERAL_SUBTREE_new_null()) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	for (pb_size_t i = 0; i < n; i++) {
		GENERAL_SUBTREE *st = NULL;
		P11CA_GUARD(x509_subtree_parse(names[i], &st, em));
		if (sk_GENERAL_SUBTREE_push(*out, st) <= 0) {
			GENERAL_SUBTREE_free(st);
			return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		}
		memcpy(text[i], names[i], sizeof(text[i]));
	}
	*n_text = n;
	return P11CA_OK;
}

/* The new CA certificate's own extensions: the request's over the parent's layer for what
 * it issues (a root has none below it). */
static enum p11ca_err own_ext_build(const p11ca_v1_CaInitRequest *r,
				    const p11ca_v1_CaSettings *parent,
				    const struct engine_ext_issuer *issuer,
				    struct engine_ca_options *o, struct p11ca_errmsg *em)
{
	const p11ca_v1_ExtensionSettings *own =
		r != NULL && r->has_extensions ? &r->extensions : NULL;
	if (own != NULL && (own->has_key_usage || own->has_extended_key_usage))
		return p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"a CA certificate always has keyUsage keyCertSign, cRLSign and no "
			"extendedKeyUsage: leave them out of its extensions");
	const p11ca_v1_ExtensionSettings *below =
		parent != NULL && parent->has_issued ? &parent->issued : NULL;
	/* ca init is for admins only: its request may set what it likes. */
	P11CA_GUARD(engine_ext_resolve(NULL, below, own, true, issuer, &o->ext, em));
	/* OCSPNoCheck and the TLS feature are for end entities: a parent's setting for what it
	 * issues does not reach a CA certificate unless asked for here. */
	o->ext.spec.ocsp_no_check = own != NULL && own->has_ocsp_no_check && own->ocsp_no_check;
	o->ext.spec.tls_feature_status_request = own != NULL &&
						 own->has_tls_feature_status_request &&
						 own->tls_feature_status_request;
	if (r == NULL)
		return P11CA_OK;
	if (r->require_explicit_policy > 0xffff || r->inhibit_policy_mapping > 0xffff ||
	    r->inhibit_any_policy > 0xffff)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "policy constraints and inhibitAnyPolicy take 0 to 65535 "
				  "certificates");
	if (r->has_require_explicit_policy)
		o->ext.spec.require_explicit_policy = (int)r->require_explicit_policy;
	if (r->has_inhibit_policy_mapping)
		o->ext.spec.inhibit_policy_mapping = (int)r->inhibit_policy_mapping;
	if (r->has_inhibit_any_policy)
		o->ext.spec.inhibit_any_policy = (int)r->inhibit_any_policy;
	p11ca_v1_CaSettings *st = o->settings;
	P11CA_GUARD(subtrees_take(r->permitted_names, r->permitted_names_count, &o->permitted,
				  st->permitted_names, &st->permitted_names_count, em));
	P11CA_GUARD(subtrees_take(r->excluded_names, r->excluded_names_count, &o->excluded,
				  st->excluded_names, &st->excluded_names_count, em));
	o->ext.spec.permitted = o->permitted;
	o->ext.spec.excluded = o->excluded;
	return P11CA_OK;
}

enum p11ca_err engine_ca_options_build(const struct p11cad_config *cfg,
				       const p11ca_v1_CaInitRequest *r,
				       const p11ca_v1_CaSettings *parent,
				       const struct engine_ext_issuer *issuer,
				       enum hsm_key_type key_type, enum hsm_sig_alg sign_alg,
				       struct engine_ca_options *o, struct p11ca_errmsg *em)
{
	memset(o, 0, sizeof(*o));
	if ((o->settings = OPENSSL_zalloc(sizeof(*o->settings))) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	p11ca_v1_CaSettings *st = o->settings;
	st->enabled = true;
	/* What the new CA signs with: as asked, else what signs a root's own certificate,
	 * else the key type's default. Always recorded: UNSPECIFIED means "made before 0.4". */
	enum hsm_sig_alg issue =
		r != NULL ? (enum hsm_sig_alg)r->issue_signature_algorithm : HSM_SIG_UNSPECIFIED;
	if (issue == HSM_SIG_UNSPECIFIED)
		issue = parent == NULL && sign_alg != HSM_SIG_UNSPECIFIED
				? sign_alg
				: hsm_sig_alg_default(key_type);
	P11CA_GUARD(engine_alg_for_key(issue, key_type, "the new CA's", em));
	st->signature_algorithm = (p11ca_v1_SignatureAlgorithm)issue;
	P11CA_GUARD(own_ext_build(r, parent, issuer, o, em));
	if (r == NULL)
		return P11CA_OK;
	if (r->has_issued)
		P11CA_GUARD(engine_ca_issued_set(&r->issued, st, em));
	return engine_ca_profile_set(cfg, r->default_profile, st, em);
}
