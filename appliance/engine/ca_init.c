/*
 * ca_init: a CA made here — key in the HSM, certificate through the issuance sequence,
 * first CRL, then ACTIVE — and what ca import shares with it (names, records, activation).
 *
 * A CA is recorded PENDING as soon as its key exists and becomes ACTIVE only in the job
 * that stores its certificate record's final state, after its first CRL is published. If
 * anything fails between, the record stays PENDING (visible in ca list as
 * KEY_UNAVAILABLE, never used to issue): never a half-made ACTIVE CA.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/x509v3.h>

#include "appliance/engine/plan.h"
#include "hsm/signer.h"

#define CA_LABEL_MAX 64
#define CA_DAYS_MAX  (100 * 366) /* as for leaves: past it, years stop meaning anything */

/* ---- shared with ca import ------------------------------------------------------------ */

enum p11ca_err engine_ca_name_check(const char *name, struct p11ca_errmsg *em)
{
	size_t n = strlen(name);
	bool ok = n > 0 && n <= STORE_CA_NAME_MAX;
	for (size_t i = 0; i < n && ok; i++) {
		char ch = name[i];
		ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		     (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
	}
	if (!ok)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "CA name '%.64s' is not allowed: use 1-64 of A-Z a-z 0-9 . _ -",
				  name);
	return P11CA_OK;
}

enum p11ca_err engine_ca_name_unused(struct store_txn *txn, const char *name,
				     struct p11ca_errmsg *em)
{
	struct store_ca *rec = OPENSSL_zalloc(sizeof(*rec));
	struct p11ca_errmsg get_em;
	if (rec == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	enum p11ca_err err = store_ca_get_by_name(txn, name, rec, &get_em);
	OPENSSL_free(rec);
	if (err == P11CA_OK)
		return p11ca_fail(em, P11CA_E_STORAGE_EXISTS,
				  "a CA named %s exists already: pick another name", name);
	if (err != P11CA_E_STORAGE_NOT_FOUND)
		return p11ca_fail(em, err, "%s", p11ca_errmsg_text(&get_em));
	return P11CA_OK;
}

enum p11ca_err engine_ca_rec_fill(struct store_ca *rec, const char *name, const X509_NAME *subject,
				  const char *key_uri, struct p11ca_errmsg *em)
{
	unsigned char *p = rec->subject_der;
	int len = i2d_X509_NAME(subject, NULL);
	if (len <= 0 || (size_t)len > sizeof(rec->subject_der))
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the subject is over %zu bytes as DER: give a shorter one",
				  sizeof(rec->subject_der));
	rec->subject_der_len = (size_t)i2d_X509_NAME(subject, &p);
	snprintf(rec->name, sizeof(rec->name), "%s", name);
	snprintf(rec->key_backend, sizeof(rec->key_backend), "pkcs11");
	snprintf(rec->key_uri, sizeof(rec->key_uri), "%s", key_uri);
	rec->state = STORE_CA_PENDING;
	return P11CA_OK;
}

struct activate_job {
	uint32_t id;
	const uint8_t *der;
	size_t der_len;
	const char *event, *actor, *details;
	struct store_ca scratch;
};

static enum p11ca_err activate_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct activate_job *j = arg;
	/* Re-read: the CRL number moved since the record was first written. */
	P11CA_GUARD(store_ca_get(txn, j->id, &j->scratch, em));
	memcpy(j->scratch.cert_der, j->der, j->der_len);
	j->scratch.cert_der_len = j->der_len;
	j->scratch.state = STORE_CA_ACTIVE;
	P11CA_GUARD(store_ca_put(txn, &j->scratch, em));
	return store_audit_append(txn, j->event, j->actor, j->scratch.name, j->details, NULL, em);
}

enum p11ca_err engine_ca_activate(struct engine *eng, struct engine_ca *ca, const char *event,
				  const char *actor, const char *details, struct p11ca_errmsg *em)
{
	struct activate_job *j = OPENSSL_zalloc(sizeof(*j));
	if (j == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	*j = (struct activate_job){
		.id = ca->rec.id,
		.der = ca->rec.cert_der,
		.der_len = ca->rec.cert_der_len,
		.event = event,
		.actor = actor,
		.details = details,
	};
	enum p11ca_err err = engine_crl_generate(eng, ca, actor, em);
	if (err == P11CA_OK)
		err = commit_run(eng->commit, activate_job_fn, j, em);
	if (err == P11CA_OK)
		ca->rec.state = STORE_CA_ACTIVE;
	OPENSSL_free(j);
	return err;
}

/* ---- ca init ---------------------------------------------------------------------------- */

struct pending_job {
	struct store_ca *rec; /* id written back */
	const char *actor;
};

static enum p11ca_err pending_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct pending_job *j = arg;
	j->rec->id = 0; /* a re-run inserts again */
	P11CA_GUARD(store_ca_put(txn, j->rec, em));
	return store_audit_append(txn, "ca.pending", j->actor, j->rec->name, j->rec->key_uri, NULL,
				  em);
}

/* The parent's checks and the child's path length. */
static enum p11ca_err parent_check(const struct engine_ca *parent,
				   const p11ca_v1_CaSettings *settings,
				   const struct engine_ca_init *in, int *path_length,
				   struct p11ca_errmsg *em)
{
	const char *name = parent->rec.name;
	if ((parent->rec.state != STORE_CA_ACTIVE && parent->rec.state != STORE_CA_DISABLED) ||
	    parent->cert == NULL)
		return p11ca_fail(em, P11CA_E_POLICY,
				  "parent CA %s has no certificate (its creation did not finish): "
				  "choose another parent",
				  name);
	if (parent->rec.state == STORE_CA_DISABLED || !settings->enabled)
		return p11ca_fail(
			em, P11CA_E_POLICY,
			"parent CA %s is disabled: enable it with p11ca ca edit %s --enable", name,
			name);
	if (parent->not_after <= engine_now())
		return p11ca_fail(em, P11CA_E_POLICY, "parent CA %s has expired: choose another",
				  name);
	long plen = X509_get_pathlen(parent->cert);
	if (plen == 0)
		return p11ca_fail(
			em, P11CA_E_POLICY,
			"parent CA %s has path length 0: it may not issue CA certificates", name);
	if (in->has_path_length && plen > 0 && (long)in->path_length > plen - 1)
		return p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"path length %u is over what parent CA %s allows: give at most %ld",
			in->path_length, name, plen - 1);
	if (in->has_path_length)
		*path_length = (int)in->path_length;
	else
		*path_length = plen > 0 ? (int)(plen - 1) : -1;
	return P11CA_OK;
}

/* What ca_create reads from storage before anything is generated. */
struct ca_inputs {
	struct engine_ca parent; /* rec.id 0: a root */
	p11ca_v1_CaSettings parent_settings;
	X509 *chain[ENGINE_CHAIN_MAX];
	size_t n_chain;
	struct engine_ca_options opts;
	X509_NAME *subject;
};

static void ca_inputs_free(struct ca_inputs **pci)
{
	if (*pci == NULL)
		return;
	engine_ca_clear(&(*pci)->parent);
	engine_plan_chain_free((*pci)->chain, &(*pci)->n_chain);
	engine_ca_options_clear(&(*pci)->opts);
	X509_NAME_free((*pci)->subject);
	OPENSSL_free(*pci);
	*pci = NULL;
}

static enum p11ca_err ca_inputs_load(struct engine *eng, const struct engine_ca_init *in,
				     struct ca_inputs *ci, int *path_length,
				     struct p11ca_errmsg *em)
{
	struct store_txn *txn = NULL;
	P11CA_GUARD(store_txn_begin(eng->st, STORE_TXN_READ, &txn, em));
	enum p11ca_err err = engine_ca_name_unused(txn, in->name, em);
	if (err == P11CA_OK && in->parent != NULL && in->parent[0] != '\0') {
		err = engine_ca_select(&eng->ca_cache, txn, in->parent, &ci->parent, em);
		if (err == P11CA_OK)
			err = engine_ca_settings_get(&ci->parent.rec, &ci->parent_settings, em);
		if (err == P11CA_OK)
			err = parent_check(&ci->parent, &ci->parent_settings, in, path_length, em);
		if (err == P11CA_OK)
			err = engine_plan_chain_load(txn, ci->parent.rec.id, ci->chain,
						     &ci->n_chain, em);
	}
	store_txn_abort(&txn);
	return err;
}

/* The new CA's label, subject, algorithm, options and certificate spec (all but its public
 * key): everything decided and checked before a key is generated, since a refusal after
 * generation would leave a PENDING CA and an unused key on the token. */
static enum p11ca_err ca_decide(struct engine *eng, const struct engine_ca_init *in,
				struct ca_inputs *ci, char label[CA_LABEL_MAX + 1],
				struct x509_cert_spec *spec, struct p11ca_errmsg *em)
{
	int path_length = in->has_path_length ? (int)in->path_length : -1;
	P11CA_GUARD(engine_ca_name_check(in->name, em));
	if (hsm_key_type_name(in->key_type) == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "a CA needs a key type: rsa2048 … rsa4096, p256 … p521, ed25519");
	if (in->key_label != NULL && in->key_label[0] != '\0')
		snprintf(label, CA_LABEL_MAX + 1, "%s", in->key_label);
	else if (snprintf(label, CA_LABEL_MAX + 1, "p11ca-ca-%s", in->name) > CA_LABEL_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the key label derived from CA name %s is over 64 characters: "
				  "give a key label",
				  in->name);
	unsigned days = in->expires_days != 0 ? in->expires_days : eng->cfg->ca_expires_days;
	if (days == 0 || days > CA_DAYS_MAX)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%u days is not a CA validity: give 1 to %u days", days,
				  CA_DAYS_MAX);
	P11CA_GUARD(x509_name_parse(in->subject, &ci->subject, em));
	P11CA_GUARD(ca_inputs_load(eng, in, ci, &path_length, em));

	const struct engine_ca *parent = ci->parent.rec.id != 0 ? &ci->parent : NULL;
	char whose[STORE_CA_NAME_MAX + 16], pserial[ENGINE_CA_SERIAL_HEX];
	enum hsm_sig_alg alg = in->alg;
	if (parent == NULL) {
		snprintf(whose, sizeof(whose), "the new CA's");
		P11CA_GUARD(engine_alg_for_key(alg, in->key_type, whose, em));
		if (alg == HSM_SIG_UNSPECIFIED)
			alg = hsm_sig_alg_default(in->key_type);
	} else {
		snprintf(whose, sizeof(whose), "parent CA %s's", parent->rec.name);
		P11CA_GUARD(engine_alg_for_key(alg, parent->key_type, whose, em));
		if (alg == HSM_SIG_UNSPECIFIED)
			alg = engine_ca_sig_alg(parent, &ci->parent_settings);
		engine_ca_serial_hex(parent->cert, pserial);
	}
	struct engine_ext_issuer issuer = {
		.name = parent != NULL ? parent->rec.name : in->name,
		.serial = parent != NULL ? pserial : NULL,
	};
	P11CA_GUARD(engine_ca_options_build(eng->cfg, in->options,
					    parent != NULL ? &ci->parent_settings : NULL, &issuer,
					    in->key_type, alg, &ci->opts, em));
	int64_t now = engine_now();
	int64_t not_after = now + (int64_t)days * ENGINE_DAY;
	/* Intermediates end with the first certificate of their chain to end (the parent's
	 * own issuers included: past that, no path reaches the new CA). */
	if (parent != NULL)
		not_after = engine_chain_end(ci->chain, ci->n_chain,
					     not_after < parent->not_after ? not_after
									   : parent->not_after);
	*spec = (struct x509_cert_spec){
		.subject = ci->subject,
		.not_before = now - ENGINE_CLOCK_SKEW,
		.not_after = not_after,
		.alg = alg,
		.issuer = parent != NULL ? parent->cert : NULL,
		.is_ca = true,
		.path_length = path_length,
		.key_usage =
			X509v3_KU_KEY_CERT_SIGN | X509v3_KU_CRL_SIGN | X509v3_KU_DIGITAL_SIGNATURE,
		.key_usage_critical = true,
		.ext = &ci->opts.ext.spec,
	};
	return engine_constraints_check(spec, ci->chain, ci->n_chain, em);
}

enum p11ca_err engine_ca_create(struct engine *eng, const struct engine_ca_init *in,
				struct engine_ca *out, struct p11ca_errmsg *em)
{
	struct ca_inputs *ci = OPENSSL_zalloc(sizeof(*ci));
	EVP_PKEY *pub = NULL;
	struct engine_issue is = {0};
	struct x509_cert_spec spec = {0};
	char label[CA_LABEL_MAX + 1], uri[SIGNER_URI_MAX], details[256];
	enum p11ca_err err;

	memset(out, 0, sizeof(*out));
	if (ci == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	err = ca_decide(eng, in, ci, label, &spec, em);
	if (err == P11CA_OK)
		err = engine_signing_ready(eng, em);
	if (err == P11CA_OK)
		err = signer_key_generate(eng->signer, in->key_type, label, uri, &pub, em);
	if (err != P11CA_OK)
		goto out;
	spec.public_key = pub;

	/* From here on the key exists: record it before anything else can fail. */
	const struct engine_ca *parent = &ci->parent;
	bool root = parent->rec.id == 0;
	struct store_ca *rec = &out->rec;
	err = engine_ca_rec_fill(rec, in->name, ci->subject, uri, em);
	rec->parent_id = parent->rec.id;
	snprintf(ci->opts.settings->key_uri, sizeof(ci->opts.settings->key_uri), "%.511s", uri);
	if (err == P11CA_OK)
		err = engine_ca_settings_set(rec, ci->opts.settings, em);
	struct pending_job pj = {rec, in->actor};
	if (err == P11CA_OK)
		err = commit_run(eng->commit, pending_job_fn, &pj, em);
	if (err != P11CA_OK)
		goto out;

	is = (struct engine_issue){
		.ca_id = root ? rec->id : parent->rec.id,
		.key_uri = root ? rec->key_uri : parent->rec.key_uri,
		.issuer_der = root ? NULL : parent->rec.cert_der,
		.issuer_der_len = root ? 0 : parent->rec.cert_der_len,
		.spec = &spec,
		.profile = "ca",
		.actor = in->actor,
	};
	err = engine_issue_run(eng, &is, em);
	if (err != P11CA_OK)
		goto out;
	memcpy(rec->cert_der, is.der, is.der_len);
	rec->cert_der_len = is.der_len;
	err = engine_ca_parse(out, em);
	snprintf(details, sizeof(details), "%s %s, parent %s", hsm_key_type_name(in->key_type),
		 label, root ? "(root)" : parent->rec.name);
	if (err == P11CA_OK)
		err = engine_ca_activate(eng, out, "ca.init", in->actor, details, em);
out:
	if (err != P11CA_OK && out->rec.id != 0)
		p11ca_logf(eng->log, LOG_ERR, "engine: CA %s stays PENDING: %s", in->name,
			   p11ca_errmsg_text(em));
	if (err != P11CA_OK)
		engine_ca_clear(out);
	engine_issue_clear(&is);
	EVP_PKEY_free(pub);
	ca_inputs_free(&ci);
	return err;
}

enum p11ca_err engine_op_ca_init(struct engine_call *c, p11ca_v1_Request *req,
				 p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CaInitRequest *r = &req->op.ca_init;
	p11ca_v1_CaInitResponse *out = &resp->result.ca_init;
	struct engine_ca *ca = NULL;
	enum p11ca_err err;
	if (r->key_type < p11ca_v1_KeyType_KEY_TYPE_RSA2048 ||
	    r->key_type > p11ca_v1_KeyType_KEY_TYPE_ED25519)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "key type %d is unknown: give rsa2048 … rsa4096, p256 … p521 or "
				  "ed25519",
				  (int)r->key_type);
	if ((ca = OPENSSL_zalloc(sizeof(*ca))) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	struct engine_ca_init in = {
		.name = r->name,
		.subject = r->subject,
		.parent = r->parent,
		.key_label = r->key_label,
		.actor = c->actor,
		.key_type = (enum hsm_key_type)r->key_type, /* same numbering */
		.has_path_length = r->has_path_length,
		.path_length = r->path_length,
		.expires_days = r->expires_days,
		.alg = (enum hsm_sig_alg)r->signature_algorithm,
		.options = r,
	};
	err = engine_ca_create(c->eng, &in, ca, em);
	if (err == P11CA_OK)
		err = engine_ca_summary_read(c->eng, ca, &out->ca, em);
	if (err == P11CA_OK) {
		out->has_ca = true;
		memcpy(out->certificate_der.bytes, ca->rec.cert_der, ca->rec.cert_der_len);
		out->certificate_der.size = (pb_size_t)ca->rec.cert_der_len;
	}
	engine_ca_clear(ca);
	OPENSSL_free(ca);
	return err;
}
