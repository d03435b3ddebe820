/*
 * cert resign: a new certificate for the public key, subject, SANs and watchers of an
 * existing one, through the same plan and issuance as cert sign. The original stays valid
 * (revoking it is a separate, deliberate step).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "appliance/engine/plan.h"

/* What the original gives: its record and its parsed certificate. */
struct resign_source {
	struct store_cert cert;
	X509 *x;
	GENERAL_NAMES *sans;
	struct engine_ca ca;
	char serial_hex[2 * STORE_SERIAL_LEN + 1];
};

static void resign_source_free(struct resign_source **ps)
{
	if (*ps == NULL)
		return;
	X509_free((*ps)->x);
	GENERAL_NAMES_free((*ps)->sans);
	engine_ca_clear(&(*ps)->ca);
	OPENSSL_free(*ps);
	*ps = NULL;
}

static enum p11ca_err resign_source_load(struct engine *eng, const p11ca_v1_CertResignRequest *r,
					 struct resign_source *s, struct p11ca_errmsg *em)
{
	struct store_txn *txn = NULL;
	uint8_t serial[STORE_SERIAL_LEN];
	P11CA_GUARD(store_txn_begin(eng->st, STORE_TXN_READ, &txn, em));
	enum p11ca_err err = engine_serial_select(txn, r->serial, serial, em);
	if (err == P11CA_OK) {
		err = store_cert_get_by_serial(txn, serial, &s->cert, em);
		if (err == P11CA_E_STORAGE_NOT_FOUND)
			err = p11ca_fail(em, P11CA_E_STORAGE_NOT_FOUND,
					 "serial %.64s has no certificate (orphaned or in "
					 "progress): nothing to resign",
					 r->serial);
	}
	if (err == P11CA_OK)
		err = r->ca[0] != '\0'
			      ? engine_ca_select(&eng->ca_cache, txn, r->ca, &s->ca, em)
			      : engine_ca_load(&eng->ca_cache, txn, s->cert.ca_id, &s->ca, em);
	store_txn_abort(&txn);
	if (err != P11CA_OK)
		return err;
	engine_hex_format(s->cert.serial, STORE_SERIAL_LEN, s->serial_hex);
	/* A new certificate for a key reported compromised would hand the attacker a fresh one. */
	if (s->cert.revoked && (s->cert.revocation.reason == 1 /* keyCompromise */ ||
				s->cert.revocation.reason == 2 /* cACompromise */))
		return p11ca_fail(em, P11CA_E_POLICY,
				  "%s was revoked because its key was compromised: a new certificate "
				  "needs a new key; sign a fresh CSR instead",
				  s->serial_hex);
	const unsigned char *p = s->cert.der;
	s->x = d2i_X509(NULL, &p, (long)s->cert.der_len);
	if (s->x == NULL)
		return p11ca_fail(em, P11CA_E_STORAGE_CORRUPT,
				  "the stored certificate %s does not parse: run the audit "
				  "verification",
				  s->serial_hex);
	if ((X509_get_extension_flags(s->x) & EXFLAG_CA) != 0)
		return p11ca_fail(em, P11CA_E_INVALID_ARG,
				  "%s is a CA certificate: create a new CA instead of resigning it",
				  s->serial_hex);
	int crit = 0;
	s->sans = X509_get_ext_d2i(s->x, NID_subject_alt_name, &crit, NULL);
	if (s->sans == NULL && crit != -1)
		return p11ca_fail(em, P11CA_E_STORAGE_CORRUPT,
				  "the subjectAltName of %s does not decode", s->serial_hex);
	return P11CA_OK;
}

enum p11ca_err engine_op_cert_resign(struct engine_call *c, p11ca_v1_Request *req,
				     p11ca_v1_Response *resp, struct p11ca_errmsg *em)
{
	const p11ca_v1_CertResignRequest *r = &req->op.cert_resign;
	p11ca_v1_CertResignResponse *out = &resp->result.cert_resign;
	struct resign_source *s = OPENSSL_zalloc(sizeof(*s));
	struct store_watcher watchers[STORE_WATCHERS_MAX];
	char details[128];
	size_t der_len = 0;
	enum p11ca_err err;

	if (s == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	err = resign_source_load(c->eng, r, s, em);
	if (err != P11CA_OK)
		goto out;
	const char *profile = r->profile[0] != '\0' ? r->profile : s->cert.profile;
	if (strcmp(profile, "imported") == 0) {
		err = p11ca_fail(em, P11CA_E_INVALID_ARG,
				 "%s was imported, so it has no profile here: give one with "
				 "--profile",
				 s->serial_hex);
		goto out;
	}
	/* The names exactly as they were: no CN added to the SANs, no SAN made the CN. */
	struct engine_plan_request pr = {
		.profile = profile,
		.subject_name = X509_get_subject_name(s->x),
		.san_names = s->sans,
		.public_key = X509_get0_pubkey(s->x),
		.spki = X509_get_X509_PUBKEY(s->x),
		.expires_days = r->expires_days,
		.alg = (enum hsm_sig_alg)r->signature_algorithm,
		.no_cn_in_san = true,
		.no_san_to_cn = true,
	};
	size_t n =
		s->cert.n_watchers < STORE_WATCHERS_MAX ? s->cert.n_watchers : STORE_WATCHERS_MAX;
	for (size_t i = 0; i < n; i++) {
		watchers[i] = s->cert.watchers[i];
		watchers[i].notified_days = 0; /* a new certificate: every threshold again */
	}
	snprintf(details, sizeof(details), "%s from %s", profile, s->serial_hex);
	struct engine_issue is = {
		.watchers = watchers,
		.n_watchers = n,
		.audit_event = "cert.resign",
		.audit_details = details,
	};
	err = engine_cert_issue(c, &s->ca, &pr, &is, &out->cert, out->certificate_der.bytes,
				sizeof(out->certificate_der.bytes), &der_len, em);
	if (err != P11CA_OK)
		goto out;
	out->has_cert = true;
	out->certificate_der.size = (pb_size_t)der_len;
out:
	resign_source_free(&s);
	return err;
}
