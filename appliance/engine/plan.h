/*
 * appliance/engine/plan.h — what a certificate will be, decided completely before a serial
 * is drawn: the profile, the issuing CA's settings and the request, layered (profile < CA <
 * request, per field; see ExtensionSettings in rpc/p11ca.proto), names completed and
 * checked, the CSR held to the configured policy, validity and algorithm chosen, and the
 * issuer chain's nameConstraints honoured. Every refusal happens here, so nothing refused
 * ever reaches storage or the signer.
 *
 * Pure: no storage, no signer (engine_plan_chain_load is the one helper that reads storage).
 * Unit-tested with software keys in test_plan.c. Modules: plan.c (the plan, algorithm,
 * validity, key, constraints, the issuer chain), plan_names.c (subject and SANs), plan_ext.c
 * (ExtensionSettings layers), ca_settings.c (CA settings and a new CA's options).
 */
#ifndef P11CA_APPLIANCE_ENGINE_PLAN_H
#define P11CA_APPLIANCE_ENGINE_PLAN_H

#include "appliance/engine/engine_internal.h"

#define ENGINE_EXT_URLS_MAX 8 /* p11ca.options: StringList.values max_count */
#define ENGINE_EXT_URL_MAX  256
#define ENGINE_EXT_POL_MAX  4
#define ENGINE_EXT_EKU_MAX  10
#define ENGINE_CHAIN_MAX    16 /* deeper than this is a loop in the records */

enum engine_url_kind { ENGINE_URL_CRL, ENGINE_URL_OCSP, ENGINE_URL_ISSUER, ENGINE_URL_KINDS };

/* ---- plan_ext.c: ExtensionSettings layers ---------------------------------------------- */

/* An x509_ext_spec and the memory it points into, built from ExtensionSettings layers. */
struct engine_ext {
	struct x509_ext_spec spec;
	char urls[ENGINE_URL_KINDS][ENGINE_EXT_URLS_MAX][ENGINE_EXT_URL_MAX];
	const char *url_ptr[ENGINE_URL_KINDS][ENGINE_EXT_URLS_MAX];
	struct x509_policy_spec pol[ENGINE_EXT_POL_MAX];
	struct x509_policy_text pol_text[ENGINE_EXT_POL_MAX];
	const char *pol_cps[ENGINE_EXT_POL_MAX][2];
	GENERAL_NAMES *issuer_alt_names;
	/* keyUsage and extendedKeyUsage as the layers decided (the caller puts them into its
	 * x509_cert_spec: they are not part of x509_ext_spec). */
	uint32_t key_usage;
	bool key_usage_critical;
	char eku[ENGINE_EXT_EKU_MAX][40];
	const char *eku_ptr[ENGINE_EXT_EKU_MAX];
	size_t n_eku;
	bool eku_critical;
};

/* The issuing CA as URL templates see it. */
struct engine_ext_issuer {
	const char *name;   /* {ca_name} */
	const char *serial; /* {ca_serial}: uppercase hex, no colons */
};

/*
 * Resolve ExtensionSettings layers over a profile into *out (zeroed first; release with
 * engine_ext_clear). `profile` (may be NULL: no profile layer, every CA URL used) gives
 * keyUsage/EKU, policies, OCSPNoCheck and TLS feature and gates the CA layer's URLs
 * (add_crl_url, …). ca_layer and req_layer (either may be NULL) override it in that order,
 * field by field; the request's URLs are always used. URL templates are filled in for
 * `issuer`. Unless req_may_widen (an admin's request, a CA's own certificate), the request
 * layer's keyUsage and extendedKeyUsage must be non-empty subsets of what the layers below
 * give, and it may not add OCSPNoCheck.
 * Errors: P11CA_E_INVALID_ARG naming the field (a bad URL, template, policy, usage name or
 * issuerAltName), P11CA_E_PERMISSION (a usage widened: an admin may, or a profile can give
 * it), P11CA_E_NOMEM.
 */
P11CA_MUST_CHECK enum p11ca_err engine_ext_resolve(const struct p11cad_profile *profile,
						   const p11ca_v1_ExtensionSettings *ca_layer,
						   const p11ca_v1_ExtensionSettings *req_layer,
						   bool req_may_widen,
						   const struct engine_ext_issuer *issuer,
						   struct engine_ext *out, struct p11ca_errmsg *em);
void engine_ext_clear(struct engine_ext *e);

/* What a layer sets, for an audit record: " crl_urls=[…] key_usage=[…] ocsp_no_check=true"
 * (each set field, lists in full; cut at cap, always terminated). */
void engine_ext_summary(const p11ca_v1_ExtensionSettings *e, char *out, size_t cap);

/* Check one ExtensionSettings as a layer before it is stored (ca init, ca import, ca edit):
 * the same rules engine_ext_resolve applies, with templates allowed. */
P11CA_MUST_CHECK enum p11ca_err engine_ext_check(const p11ca_v1_ExtensionSettings *layer,
						 struct p11ca_errmsg *em);

/* ---- ca_settings.c: what ca init, ca import and ca edit share ---------------------------- */

/* P11CA_OK when alg is HSM_SIG_UNSPECIFIED or fits `type`; else P11CA_E_INVALID_ARG with a
 * sentence naming `whose` key ("CA x's"), Ed25519's own, or an unknown algorithm. */
P11CA_MUST_CHECK enum p11ca_err engine_alg_for_key(enum hsm_sig_alg alg, enum hsm_key_type type,
						   const char *whose, struct p11ca_errmsg *em);
/* Set st->default_profile to `name` ("": the server's). Errors: P11CA_E_STORAGE_NOT_FOUND
 * (no such enabled profile). */
P11CA_MUST_CHECK enum p11ca_err engine_ca_profile_set(const struct p11cad_config *cfg,
						      const char *name, p11ca_v1_CaSettings *st,
						      struct p11ca_errmsg *em);
/* Set st->issued to `issued` once engine_ext_check accepts it. */
P11CA_MUST_CHECK enum p11ca_err engine_ca_issued_set(const p11ca_v1_ExtensionSettings *issued,
						     p11ca_v1_CaSettings *st,
						     struct p11ca_errmsg *em);

/* What a new CA's CaInitRequest decides beyond engine_ca_init: its own certificate's
 * extensions and the settings it keeps. */
struct engine_ca_options {
	struct engine_ext ext; /* ext.spec goes into the CA certificate's x509_cert_spec */
	STACK_OF(GENERAL_SUBTREE) * permitted, *excluded;
	p11ca_v1_CaSettings *settings; /* enabled; key_uri is the caller's to fill in */
};

/*
 * r (NULL: a CA with defaults, e.g. the bootstrap's) over `parent`'s settings (NULL: a
 * root). `issuer` fills URL templates of the CA's own certificate (the parent; a root: its
 * own name, serial NULL). key_type is the new CA's; sign_alg what signs its certificate.
 * Errors: P11CA_E_INVALID_ARG (each option's rule), P11CA_E_STORAGE_NOT_FOUND (default
 * profile), P11CA_E_NOMEM. Release with engine_ca_options_clear (also after a failure).
 */
P11CA_MUST_CHECK enum p11ca_err
engine_ca_options_build(const struct p11cad_config *cfg, const p11ca_v1_CaInitRequest *r,
			const p11ca_v1_CaSettings *parent, const struct engine_ext_issuer *issuer,
			enum hsm_key_type key_type, enum hsm_sig_alg sign_alg,
			struct engine_ca_options *out, struct p11ca_errmsg *em);
void engine_ca_options_clear(struct engine_ca_options *o);

/* ---- plan.c, plan_names.c: a certificate --------------------------------------------- */

/* One certificate request, from cert sign or cert resign. */
struct engine_plan_request {
	const char *profile; /* NULL/"": the CA's default profile, else [engine]'s */
	/* The subject as text (NULL/"": none given), or as a name (resign: taken as is). */
	const char *subject;
	const X509_NAME *subject_name;
	/* SANs as text, or as names (resign). */
	const char *const *sans;
	size_t n_sans;
	const GENERAL_NAMES *san_names;
	/* The key: a CSR (checked with x509_csr_load and the configured policy), or a public
	 * key and its SubjectPublicKeyInfo as stored (resign). */
	const uint8_t *csr;
	size_t csr_len;
	EVP_PKEY *public_key;
	const X509_PUBKEY *spki;
	unsigned expires_days; /* 0: the profile's, else [engine] cert_expires_days */
	enum hsm_sig_alg alg;  /* HSM_SIG_UNSPECIFIED: the CA's setting, else the key's */
	const p11ca_v1_ExtensionSettings *ext; /* the request layer; NULL: none */
	bool no_cn_in_san, no_san_to_cn;
	/* The caller is an admin: ext may widen the usages (engine_ext_resolve). */
	bool admin;
};

/* A complete end-entity certificate but for its serial; owns everything spec points to. */
struct engine_plan {
	struct x509_cert_spec spec;
	struct engine_ext ext;
	const struct p11cad_profile *profile; /* points into cfg */
	X509_REQ *csr;
	EVP_PKEY *pub;
	X509_NAME *subject;
	GENERAL_NAMES *sans;
};

/*
 * Decide a certificate `ca` issues at `now`. `settings` is the CA's (engine_ca_settings_get);
 * chain[0..n_chain) is the CA's certificate and its issuers (the CA first; see
 * engine_plan_chain_load): names outside their nameConstraints are refused here.
 * *out (engine_plan_free) is complete but for spec.serial.
 * Errors: P11CA_E_STORAGE_NOT_FOUND (no such enabled profile), P11CA_E_POLICY (CA disabled,
 * not active or expired; a name outside the constraints), P11CA_E_INVALID_ARG (every other
 * refusal, each with its sentence), P11CA_E_NOMEM.
 */
P11CA_MUST_CHECK enum p11ca_err
engine_plan_build(const struct p11cad_config *cfg, const struct engine_ca *ca,
		  const p11ca_v1_CaSettings *settings, X509 *const *chain, size_t n_chain,
		  const struct engine_plan_request *req, int64_t now, struct engine_plan **out,
		  struct p11ca_errmsg *em);
void engine_plan_free(struct engine_plan **p);

/* plan_names.c: p's subject and SANs from r, p->profile and p->csr (set before).
 * Errors: P11CA_E_INVALID_ARG (too many SANs, a bad name, nobody named), P11CA_E_NOMEM. */
P11CA_MUST_CHECK enum p11ca_err engine_plan_names(const struct p11cad_config *cfg,
						  const struct engine_plan_request *r,
						  struct engine_plan *p, struct p11ca_errmsg *em);

/* Refuse what the nameConstraints of chain[0..n) (the issuer first) forbid for the
 * certificate `spec` describes. Checked on a TBS with a stand-in serial (the real one is
 * drawn only for an acceptable certificate) and, when spec has no public key (a new CA's
 * does not exist yet), a throwaway one. Errors: x509_check_name_constraints's, x509_cert_tbs's. */
P11CA_MUST_CHECK enum p11ca_err engine_constraints_check(const struct x509_cert_spec *spec,
							 X509 *const *chain, size_t n,
							 struct p11ca_errmsg *em);

/* Whether CA rec's certificate `cert` is revoked (recorded under its issuer, a root under
 * itself; one not recorded here is not). Errors: storage. */
P11CA_MUST_CHECK enum p11ca_err engine_ca_revoked(struct store_txn *txn, const struct store_ca *rec,
						  const X509 *cert, bool *revoked,
						  struct p11ca_errmsg *em);

/* The parsed certificates of CA `id` and its ancestors, the CA first, into chain[] (up to
 * ENGINE_CHAIN_MAX; *n set). The caller X509_free's each. Errors: storage,
 * P11CA_E_STORAGE_CORRUPT (a record loop or a certificate that does not parse),
 * P11CA_E_POLICY (one of them is revoked: nothing may be issued under it). */
P11CA_MUST_CHECK enum p11ca_err engine_plan_chain_load(struct store_txn *txn, uint32_t id,
						       X509 *chain[ENGINE_CHAIN_MAX], size_t *n,
						       struct p11ca_errmsg *em);
void engine_plan_chain_free(X509 *chain[ENGINE_CHAIN_MAX], size_t *n);

/* The earliest of `bound` and the notAfter of chain[0..n): when a certificate issued under
 * that chain must end at the latest. */
int64_t engine_chain_end(X509 *const *chain, size_t n, int64_t bound);

/* The text "2031-05-01 12:00:00 UTC" of a time, for messages. */
void engine_time_text(int64_t t, char out[32]);

/* ---- ca_init.c, select.c: CAs ----------------------------------------------------------- */

/* A CA name: 1-64 of A-Z a-z 0-9 . _ -. Errors: P11CA_E_INVALID_ARG saying so. */
P11CA_MUST_CHECK enum p11ca_err engine_ca_name_check(const char *name, struct p11ca_errmsg *em);
/* P11CA_OK when no CA is named `name` in txn. Errors: P11CA_E_STORAGE_EXISTS (pick another
 * name), storage. */
P11CA_MUST_CHECK enum p11ca_err engine_ca_name_unused(struct store_txn *txn, const char *name,
						      struct p11ca_errmsg *em);
/* A new PENDING record: name, subject (DER), a PKCS#11 key. Errors: P11CA_E_INVALID_ARG (the
 * subject does not fit the record). */
P11CA_MUST_CHECK enum p11ca_err engine_ca_rec_fill(struct store_ca *rec, const char *name,
						   const X509_NAME *subject, const char *key_uri,
						   struct p11ca_errmsg *em);
/* A PENDING CA's first CRL, then ACTIVE, audited as `event`: the last steps of ca init and
 * ca import. ca->rec.state is set on success; on failure the record stays PENDING.
 * Errors: engine_crl_generate's, storage. */
P11CA_MUST_CHECK enum p11ca_err engine_ca_activate(struct engine *eng, struct engine_ca *ca,
						   const char *event, const char *actor,
						   const char *details, struct p11ca_errmsg *em);
/* The serial of a CA certificate as URL templates give it: uppercase hex, no colons. */
#define ENGINE_CA_SERIAL_HEX (2 * 32 + 1)
void engine_ca_serial_hex(const X509 *cert, char out[ENGINE_CA_SERIAL_HEX]);
/* A CA record's certificate, parsed (NULL: none yet, or it does not parse). X509_free it. */
X509 *engine_ca_rec_x509(const struct store_ca *rec);

/* ---- cert.c: watchers, and what sign and resign share ---------------------------------- */

/* Check and deduplicate (ignoring case) watcher addresses into out[STORE_WATCHERS_MAX].
 * Errors: P11CA_E_INVALID_ARG naming an address that is not an addr-spec, or too many. */
P11CA_MUST_CHECK enum p11ca_err engine_watchers_parse(const char (*addrs)[255], size_t n,
						      struct store_watcher *out, size_t *n_out,
						      struct p11ca_errmsg *em);

/*
 * Plan (with the CA's settings and issuer chain), check the signer is ready, issue, and
 * fill *sum and der_out[der_cap] (*der_len). `is` comes with what is stored beside the
 * certificate (watchers, audit event and details; the rest is zero) and is filled in and
 * cleared here. Admin only for the management CA.
 * Errors: engine_plan_build's, engine_issue_run's, P11CA_E_PERMISSION.
 */
P11CA_MUST_CHECK enum p11ca_err engine_cert_issue(struct engine_call *c, const struct engine_ca *ca,
						  const struct engine_plan_request *req,
						  struct engine_issue *is,
						  p11ca_v1_CertSummary *sum, uint8_t *der_out,
						  size_t der_cap, size_t *der_len,
						  struct p11ca_errmsg *em);

#endif
