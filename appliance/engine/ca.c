/*
 * CA handlers: ca_init (key in the HSM, certificate through the issuance sequence, first
 * CRL, then ACTIVE), ca_list, ca_view, ca_export.
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

bool engine_ca_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > STORE_CA_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

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

struct activate_job {
	uint32_t id;
	const uint8_t *der;
	size_t der_len;
	const char *actor, *details;
	struct store_ca *scratch;
};

static enum p11ca_err activate_job_fn(struct store_txn *txn, void *arg, struct p11ca_errmsg *em)
{
	struct activate_job *j = arg;
	/* Re-read: the CRL number moved since the record was first written. */
	P11CA_GUARD(store_ca_get(txn, j->id, j->scratch, em));
	memcpy(j->scratch->cert_der, j->der, j->der_len);
	j->scratch->cert_der_len = j->der_len;
	j->scratch->state = STORE_CA_ACTIVE;
	P11CA_GUARD(store_ca_put(txn, j->scratch, em));
	return store_audit_append(txn, "ca.init", j->actor, j->scratch->name, j->details, NULL, em);
}

/* The parent's checks and the child's path length. */
static enum p11ca_err parent_check(const struct engine_ca *parent, const struct engine_ca_init *in,
				   int *path_length, struct p11ca_errmsg *em)
{
	if ((parent->rec.state != STORE_CA_ACTIVE && parent->rec.state != STORE_CA_DISABLED) ||
	    parent->cert == NULL)
		return p11ca_fail(em, P11CA_E_POLICY, "parent CA %s is not active",
				  parent->rec.name);
	if (engine_asn1_time(X509_get0_notAfter(parent->cert)) <= engine_now())
		return p11ca_fail(em, P11CA_E_POLICY, "parent CA %s has expired", parent->rec.name);
	long plen = X509_get_pathlen(parent->cert);
	if (plen == 0)
		return p11ca_fail(
			em, P11CA_E_POLICY,
			"parent CA %s has path length 0: it may not issue CA certificates",
			parent->rec.name);
	if (in->has_path_length && plen > 0 && (long)in->path_length > plen - 1)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "path length %u is over what parent CA %s allows (%ld)",
				  in->path_length, parent->rec.name, plen - 1);
	if (in->has_path_length)
		*path_length = (int)in->path_length;
	else
		*path_length = plen > 0 ? (int)(plen - 1) : -1;
	return P11CA_OK;
}

/* Refuse before the key exists what the issuer chain's nameConstraints forbid (the new
 * CA's subject DN): checked on a TBS over a throwaway software key, since a refusal after
 * generation would leave an unused key on the token. */
static enum p11ca_err ca_constraints_probe(struct x509_cert_spec *spec, X509 *const *chain,
					   size_t n, struct p11ca_errmsg *em)
{
	static const uint8_t probe_serial[1] = {1};
	bool constrained = false;
	for (size_t i = 0; i < n; i++)
		constrained |= X509_get_ext_by_NID(chain[i], NID_name_constraints, -1) >= 0;
	if (!constrained)
		return P11CA_OK;
	EVP_PKEY *probe = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *tbs = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	if (probe == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	spec->public_key = probe;
	spec->serial = probe_serial;
	spec->serial_len = sizeof(probe_serial);
	enum p11ca_err err = x509_cert_tbs(spec, &tbs, &der, &len, em);
	if (err == P11CA_OK)
		err = x509_check_name_constraints(tbs, chain, n, em);
	spec->public_key = NULL;
	spec->serial = NULL;
	spec->serial_len = 0;
	X509_free(tbs);
	OPENSSL_free(der);
	EVP_PKEY_free(probe);
	return err;
}

/* What ca_create reads from storage before anything is generated. */
struct ca_inputs {
	struct engine_ca parent;
	p11ca_v1_CaSettings parent_settings;
	struct store_ca scratch;
	X509 *chain[ENGINE_CHAIN_MAX];
	size_t n_chain;
};

static enum p11ca_err ca_inputs_load(struct engine *eng, const struct engine_ca_init *in,
				     struct ca_inputs *ci, int *path_length,
				     struct p11ca_errmsg *em)
{
	struct store_txn *txn = NULL;
	struct p11ca_errmsg ignored;
	P11CA_GUARD(store_txn_begin(eng->st, STORE_TXN_READ, &txn, em));
	enum p11ca_err err = P11CA_OK,
		       exists = store_ca_get_by_name(txn, in->name, &ci->scratch, &ignored);
	if (exists == P11CA_OK)
		err = p11ca_fail(em, P11CA_E_STORAGE_EXISTS,
				 "a CA named %s exists already: pick another name", in->name);
	else if (exists != P11CA_E_STORAGE_NOT_FOUND)
		err = p11ca_fail(em, exists, "%s", p11ca_errmsg_text(&ignored));
	if (err == P11CA_OK && in->parent != NULL && in->parent[0] != '\0') {
		err = engine_ca_select(&eng->ca_cache, txn, in->parent, &ci->parent, em);
		if (err == P11CA_OK)
			err = parent_check(&ci->parent, in, path_length, em);
		if (err == P11CA_OK)
			err = engine_ca_settings_get(&ci->parent.rec, &ci->parent_settings, em);
		if (err == P11CA_OK &&
		    (!ci->parent_settings.enabled || ci->parent.rec.state == STORE_CA_DISABLED))
			err = p11ca_fail(em, P11CA_E_POLICY,
					 "parent CA %s is disabled: enable it with p11ca ca edit "
					 "%s --enable",
					 ci->parent.rec.name, ci->parent.rec.name);
		if (err == P11CA_OK)
			err = engine_plan_chain_load(txn, ci->parent.rec.id, ci->chain,
						     &ci->n_chain, em);
	}
	store_txn_abort(&txn);
	return err;
}

static void ca_inputs_free(struct ca_inputs **pci)
{
	if (*pci == NULL)
		return;
	engine_ca_clear(&(*pci)->parent);
	engine_plan_chain_free((*pci)->chain, &(*pci)->n_chain);
	OPENSSL_free(*pci);
	*pci = NULL;
}

static enum p11ca_err ca_create(struct engine *eng, const struct engine_ca_init *in,
				const p11ca_v1_CaInitRequest *opt, struct engine_ca *out,
				struct p11ca_errmsg *em)
{
	struct engine *e = eng;
	struct ca_inputs *ci = OPENSSL_zalloc(sizeof(*ci));
	struct engine_ca_options opts = {0};
	X509_NAME *subject = NULL;
	EVP_PKEY *pub = NULL;
	struct engine_issue is = {0};
	char label[CA_LABEL_MAX + 1], uri[SIGNER_URI_MAX], pserial[2 * 32 + 1] = "";
	int path_length = in->has_path_length ? (int)in->path_length : -1;
	enum p11ca_err err;

	memset(out, 0, sizeof(*out));
	if (ci == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
		goto out;
	}
	if (!engine_ca_name_valid(in->name)) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "CA name '%.64s' is not allowed: 1-64 of A-Z a-z 0-9 . _ -",
				 in->name);
		goto out;
	}
	if (hsm_key_type_name(in->key_type) == NULL) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "a CA needs a key type: rsa2048 … rsa4096, p256 … p521, ed25519");
		goto out;
	}
	if (in->key_label != NULL && in->key_label[0] != '\0')
		snprintf(label, sizeof(label), "%s", in->key_label);
	else if (snprintf(label, sizeof(label), "p11ca-ca-%s", in->name) >= (int)sizeof(label)) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "the key label derived from CA name %s is over 64 characters: "
				 "give a key label",
				 in->name);
		goto out;
	}
	err = x509_name_parse(in->subject, &subject, em);
	if (err == P11CA_OK)
		err = ca_inputs_load(e, in, ci, &path_length, em);
	if (err != P11CA_OK)
		goto out;
	struct engine_ca *parent = &ci->parent;
	bool root = parent->rec.id == 0;
	enum hsm_key_type issuer_type = root ? in->key_type : parent->key_type;
	enum hsm_sig_alg alg = in->alg;
	if (alg == HSM_SIG_UNSPECIFIED && !root)
		alg = (enum hsm_sig_alg)ci->parent_settings.signature_algorithm;
	if (alg == HSM_SIG_UNSPECIFIED || (unsigned)alg > HSM_SIG_ED25519)
		alg = in->alg != HSM_SIG_UNSPECIFIED ? in->alg : hsm_sig_alg_default(issuer_type);
	char whose[STORE_CA_NAME_MAX + 16];
	snprintf(whose, sizeof(whose), root ? "the new CA's" : "parent CA %s's", parent->rec.name);
	err = engine_alg_for_key(alg, issuer_type, whose, em);
	if (err != P11CA_OK)
		goto out;
	if (!root) {
		const ASN1_INTEGER *sn = X509_get0_serialNumber(parent->cert);
		engine_hex_format(sn->data, sn->length > 32 ? 32 : (size_t)sn->length, pserial);
	}
	struct engine_ext_issuer issuer = {
		.name = root ? in->name : parent->rec.name,
		.serial = root ? NULL : pserial,
	};
	err = engine_ca_options_build(e->cfg, opt, root ? NULL : &ci->parent_settings, &issuer,
				      in->key_type, alg, &opts, em);
	if (err != P11CA_OK)
		goto out;
	int64_t now = engine_now();
	unsigned days = in->expires_days != 0 ? in->expires_days : e->cfg->ca_expires_days;
	/* Checked before the key exists: a refusal after generation leaves a PENDING CA and
	 * an orphan key on the token. The bound is the leaves' (plan.c). */
	if (days == 0 || days > CA_DAYS_MAX) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "%u days is not a CA validity: give 1 to %u days", days,
				 CA_DAYS_MAX);
		goto out;
	}
	int64_t not_after = now + (int64_t)days * ENGINE_DAY;
	if (!root && not_after > parent->not_after)
		not_after = parent->not_after; /* intermediates end with their parent */
	ASN1_TIME *probe = ASN1_TIME_set(NULL, (time_t)not_after);
	bool encodes = probe != NULL;
	ASN1_TIME_free(probe);
	if (!encodes) {
		err = p11ca_fail(
			em, P11CA_E_INVALID_ARG,
			"notAfter %lld cannot be encoded as an X.509 time: give fewer days",
			(long long)not_after);
		goto out;
	}
	struct x509_cert_spec spec = {
		.subject = subject,
		.not_before = now - ENGINE_CLOCK_SKEW,
		.not_after = not_after,
		.alg = alg,
		.issuer = root ? NULL : parent->cert,
		.is_ca = true,
		.path_length = path_length,
		.key_usage =
			X509v3_KU_KEY_CERT_SIGN | X509v3_KU_CRL_SIGN | X509v3_KU_DIGITAL_SIGNATURE,
		.key_usage_critical = true,
		.ext = &opts.ext.spec,
	};
	err = ca_constraints_probe(&spec, ci->chain, ci->n_chain, em);
	if (err == P11CA_OK)
		err = engine_signing_ready(e, em);
	if (err == P11CA_OK)
		err = signer_key_generate(e->signer, in->key_type, label, uri, &pub, em);
	if (err != P11CA_OK)
		goto out;
	spec.public_key = pub;

	/* From here on the key exists: record it before anything else can fail. */
	struct store_ca *rec = &out->rec;
	snprintf(rec->name, sizeof(rec->name), "%s", in->name);
	unsigned char *sp = rec->subject_der;
	int slen = i2d_X509_NAME(subject, NULL);
	if (slen <= 0 || (size_t)slen > sizeof(rec->subject_der)) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG, "the subject is too long to store");
		goto out;
	}
	rec->subject_der_len = (size_t)i2d_X509_NAME(subject, &sp);
	snprintf(rec->key_backend, sizeof(rec->key_backend), "pkcs11");
	snprintf(rec->key_uri, sizeof(rec->key_uri), "%s", uri);
	rec->parent_id = parent->rec.id;
	rec->state = STORE_CA_PENDING;
	snprintf(opts.settings->key_uri, sizeof(opts.settings->key_uri), "%.511s", uri);
	err = engine_ca_settings_set(rec, opts.settings, em);
	struct pending_job pj = {rec, in->actor};
	if (err == P11CA_OK)
		err = commit_run(e->commit, pending_job_fn, &pj, em);
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
	err = engine_issue_run(e, &is, em);
	if (err != P11CA_OK)
		goto out;
	memcpy(rec->cert_der, is.der, is.der_len);
	rec->cert_der_len = is.der_len;
	err = engine_ca_parse(out, em);
	if (err == P11CA_OK)
		err = engine_crl_generate(e, out, in->actor, em);
	if (err != P11CA_OK)
		goto out;
	char details[256];
	snprintf(details, sizeof(details), "%s %s, parent %s", hsm_key_type_name(in->key_type),
		 label, root ? "(root)" : parent->rec.name);
	struct activate_job aj = {rec->id, is.der, is.der_len, in->actor, details, &ci->scratch};
	err = commit_run(e->commit, activate_job_fn, &aj, em);
	if (err == P11CA_OK)
		rec->state = STORE_CA_ACTIVE;
out:
	if (err != P11CA_OK && out->rec.id != 0)
		p11ca_logf(e->log, LOG_ERR, "engine: CA %s stays PENDING: %s", in->name,
			   p11ca_errmsg_text(em));
	if (err != P11CA_OK)
		engine_ca_clear(out);
	engine_issue_clear(&is);
	EVP_PKEY_free(pub);
	X509_NAME_free(subject);
	engine_ca_options_clear(&opts);
	ca_inputs_free(&ci);
	return err;
}

enum p11ca_err engine_ca_create(struct engine *eng, const struct engine_ca_init *in,
				struct engine_ca *out, struct p11ca_errmsg *em)
{
	return ca_create(eng, in, NULL, out, em);
}

enum p11ca_err engine_op_ca_init(struct engine_call *c, p11ca_v1_Request *req,
				 p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CaInitRequest *r = &req->op.ca_init;
	p11ca_v1_CaInitResponse *out = &resp->result.ca_init;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	struct store_txn *txn = NULL;
	enum p11ca_err err;
	if (ca == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	if (r->key_type < p11ca_v1_KeyType_KEY_TYPE_RSA2048 ||
	    r->key_type > p11ca_v1_KeyType_KEY_TYPE_ED25519 ||
	    r->signature_algorithm > p11ca_v1_SignatureAlgorithm_SIGNATURE_ALGORITHM_ED25519) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "give a known key type (and signature algorithm, if any)");
		goto out;
	}
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
	};
	err = ca_create(c->eng, &in, r, ca, em);
	if (err == P11CA_OK)
		err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_summary(c->eng, txn, ca, &out->ca, em);
	store_txn_abort(&txn);
	if (err != P11CA_OK)
		goto out;
	out->has_ca = true;
	memcpy(out->certificate_der.bytes, ca->rec.cert_der, ca->rec.cert_der_len);
	out->certificate_der.size = (pb_size_t)ca->rec.cert_der_len;
out:
	engine_ca_clear(ca);
	OPENSSL_free(ca);
	return err;
}

struct ca_page {
	struct engine *eng;
	struct store_txn *txn;
	p11ca_v1_CaListResponse *out;
	uint32_t after;
	size_t limit;
	bool more;
	enum p11ca_err err;
	struct p11ca_errmsg *em;
	struct engine_ca *scratch;
};

static int ca_page_visit(void *arg, const struct store_ca *rec)
{
	struct ca_page *p = arg;
	if (rec->id <= p->after)
		return 0;
	if (p->out->cas_count == p->limit) {
		p->more = true;
		return 1;
	}
	memcpy(&p->scratch->rec, rec, sizeof(*rec));
	p->err = engine_ca_parse(p->scratch, p->em);
	if (p->err == P11CA_OK)
		p->err = engine_ca_summary(p->eng, p->txn, p->scratch,
					   &p->out->cas[p->out->cas_count], p->em);
	engine_ca_clear(p->scratch);
	if (p->err != P11CA_OK)
		return 1;
	p->out->cas_count++;
	return 0;
}

enum p11ca_err engine_op_ca_list(struct engine_call *c, p11ca_v1_Request *req,
				 p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CaListRequest *r = &req->op.ca_list;
	p11ca_v1_CaListResponse *out = &resp->result.ca_list;
	struct ca_page p = {
		.eng = c->eng,
		.out = out,
		.limit = r->limit == 0 || r->limit > ENGINE_PAGE_MAX ? ENGINE_PAGE_MAX : r->limit,
		.em = em,
	};
	if (r->page_token.size != 0 && r->page_token.size != 4)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "the page token is not one this server made: start over");
	if (r->page_token.size == 4) {
		const uint8_t *t = r->page_token.bytes;
		p.after = (uint32_t)t[0] << 24 | (uint32_t)t[1] << 16 | (uint32_t)t[2] << 8 | t[3];
	}
	if ((p.scratch = OPENSSL_zalloc(sizeof(*p.scratch))) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	enum p11ca_err err = store_txn_begin(c->eng->st, STORE_TXN_READ, &p.txn, em);
	if (err == P11CA_OK)
		err = store_ca_list(p.txn, ca_page_visit, &p, em);
	if (err == P11CA_OK)
		err = p.err;
	if (err == P11CA_OK && p.more && out->cas_count > 0) {
		struct p11ca_errmsg ignored;
		if (store_ca_get_by_name(p.txn, out->cas[out->cas_count - 1].name, &p.scratch->rec,
					 &ignored) == P11CA_OK) {
			uint32_t id = p.scratch->rec.id;
			uint8_t *t = out->next_page_token.bytes;
			t[0] = (uint8_t)(id >> 24);
			t[1] = (uint8_t)(id >> 16);
			t[2] = (uint8_t)(id >> 8);
			t[3] = (uint8_t)id;
			out->next_page_token.size = 4;
		}
	}
	store_txn_abort(&p.txn);
	OPENSSL_free(p.scratch);
	return err;
}

struct ca_counts {
	uint64_t issued, revoked;
};

static int count_cert(void *arg, const struct store_cert *cert)
{
	struct ca_counts *n = arg;
	n->issued++;
	n->revoked += cert->revoked ? 1 : 0;
	return 0;
}

enum p11ca_err engine_op_ca_view(struct engine_call *c, p11ca_v1_Request *req,
				 p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	p11ca_v1_CaViewResponse *out = &resp->result.ca_view;
	struct engine_ca *ca = OPENSSL_zalloc(sizeof(*ca));
	struct store_txn *txn = NULL;
	struct ca_counts n = {0};
	struct store_crl crl;
	if (ca == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	enum p11ca_err err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_select(&c->eng->ca_cache, txn, req->op.ca_view.ca, ca, em);
	if (err == P11CA_OK)
		err = engine_ca_summary(c->eng, txn, ca, &out->ca, em);
	/* A walk over the CA's certificates: fine for the thousands a view is for. */
	if (err == P11CA_OK)
		err = store_cert_list(txn, ca->rec.id, NULL, 0, count_cert, &n, NULL, em);
	if (err == P11CA_OK) {
		struct p11ca_errmsg ignored;
		if (store_crl_get(txn, ca->rec.id, STORE_CRL_SCOPE_FULL, &crl, &ignored) ==
		    P11CA_OK)
			out->crl_next_update = crl.next_update;
		out->has_ca = true;
		err = engine_ca_settings_get(&ca->rec, &out->settings, em);
		out->has_settings = err == P11CA_OK;
		out->certificates_issued = n.issued;
		out->certificates_revoked = n.revoked;
		memcpy(out->certificate_der.bytes, ca->rec.cert_der, ca->rec.cert_der_len);
		out->certificate_der.size = (pb_size_t)ca->rec.cert_der_len;
	}
	store_txn_abort(&txn);
	engine_ca_clear(ca);
	OPENSSL_free(ca);
	return err;
}

enum p11ca_err engine_op_ca_export(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CaExportRequest *r = &req->op.ca_export;
	p11ca_v1_CaExportResponse *out = &resp->result.ca_export;
	struct engine_ca *ca = NULL;
	struct store_txn *txn = NULL;
	size_t len = 0;
	enum p11ca_err err;
	if (r->format > p11ca_v1_Format_FORMAT_DER)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "unknown format %d", (int)r->format);
	if (r->bundle && r->format == p11ca_v1_Format_FORMAT_DER)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "a bundle is PEM only: concatenated DER is not a file format");
	if ((ca = OPENSSL_zalloc(sizeof(*ca))) == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	err = store_txn_begin(c->eng->st, STORE_TXN_READ, &txn, em);
	if (err == P11CA_OK)
		err = engine_ca_select(&c->eng->ca_cache, txn, r->ca, ca, em);
	if (err == P11CA_OK && ca->rec.cert_der_len == 0)
		err = p11ca_fail(em, P11CA_E_POLICY, "CA %s has no certificate yet", ca->rec.name);
	if (err != P11CA_OK)
		goto out;
	if (r->format == p11ca_v1_Format_FORMAT_DER) {
		memcpy(out->data.bytes, ca->rec.cert_der, ca->rec.cert_der_len);
		len = ca->rec.cert_der_len;
		out->certificate_count = 1;
	} else if (r->bundle) {
		err = engine_chain_pem(txn, ca->rec.id, out->data.bytes, sizeof(out->data.bytes),
				       &len, &out->certificate_count, em);
	} else {
		err = x509_pem_append("CERTIFICATE", ca->rec.cert_der, ca->rec.cert_der_len,
				      out->data.bytes, sizeof(out->data.bytes), &len, em);
		out->certificate_count = 1;
	}
	out->data.size = (pb_size_t)len;
out:
	store_txn_abort(&txn);
	engine_ca_clear(ca);
	OPENSSL_free(ca);
	return err;
}
