/*
 * appliance/engine/ internals shared by the engine's .c files (and its tests). Not a public
 * header: the rest of p11cad sees appliance/engine/engine.h only.
 *
 * Threads: chan workers run the handlers concurrently; every write goes through the
 * committer (commit.h); reads open their own read transactions. struct engine is shared:
 * its mutable fields are behind `lock`.
 */
#ifndef P11CA_APPLIANCE_ENGINE_INTERNAL_H
#define P11CA_APPLIANCE_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "common/version.h"
#include "appliance/config.h"
#include "appliance/control.pb.h"
#include "appliance/engine/commit.h"
#include "appliance/x509/x509.h"
#include "hsm/hsm.h"
#include "rpc/channel.h"
#include "rpc/forward.pb.h"
#include "rpc/op.h"
#include "rpc/p11ca.pb.h"
#include "storage/store.h"

#define ENGINE_SERVER_VERSION "p11ca " P11CA_VERSION
#define ENGINE_CLOCK_SKEW     (5 * 60)	  /* notBefore is backdated by this much */
#define ENGINE_CRL_VALIDITY   (7 * 86400) /* nextUpdate = thisUpdate + 7 days */
#define ENGINE_PAGE_MAX	      32
#define ENGINE_DAY	      86400
#define ENGINE_CRL_LOCKS      16

/* ---- ca_cache.c: parsed CA certificates, shared by the workers ---------------------- */

#define ENGINE_CA_CACHE_SLOTS 8

struct engine_ca_cache_slot {
	uint32_t id;  /* the CA record's id */
	uint8_t *der; /* the DER cert was parsed from: a hit needs the record to hold it */
	size_t der_len;
	X509 *cert; /* NULL: the slot is empty */
	enum hsm_key_type key_type;
	enum hsm_sig_alg alg;
	int64_t not_after;
	uint64_t used; /* cache->tick at the last use (least recently used goes first) */
};

struct engine_ca_cache {
	pthread_mutex_t lock; /* everything below */
	uint64_t tick;
	unsigned long hits, misses;
	struct engine_ca_cache_slot slot[ENGINE_CA_CACHE_SLOTS];
};

struct engine {
	const struct p11cad_config *cfg;
	const struct p11ca_logger *log;
	struct store *st;
	struct commit *commit;
	struct chan *signer;
	struct chan *control; /* NULL: no parent (tests, init) */
	int64_t started;
	pthread_mutex_t lock; /* state below */
	/* One CRL generation per CA at a time (numbers stay in order); striped by CA id so a
	 * slow signature for one CA does not hold up the others. */
	pthread_mutex_t crl_locks[ENGINE_CRL_LOCKS];
	p11ca_control_v1_EngineState state;
	char state_text[256];
	struct engine_ca_cache ca_cache; /* has its own lock */
};

/* One forwarded call, as the handlers see it. */
struct engine_call {
	struct engine *eng;
	const struct rpc_op *op;
	enum rpc_role role;
	char actor[2 * 32 + 1]; /* the caller's fingerprint, uppercase hex */
	char peer[64];
	/* Set by a handler that already audited its failure, so dispatch does not again. */
	bool failure_audited;
	/* Non-zero: the status code to answer instead of the mapping of the error. */
	p11ca_v1_StatusCode code_override;
};

/* ---- status.c: p11ca_err → public status --------------------------------------------- */

p11ca_v1_StatusCode engine_status_code(enum p11ca_err err);
/* Fill a Status: the code for err and em's sentence (or the code's description). */
void engine_status_fill(p11ca_v1_Status *st, enum p11ca_err err, const struct p11ca_errmsg *em);

/* ---- engine.c: state ---------------------------------------------------------------- */

/* Record the state and tell the parent (when there is one) if it changed. */
void engine_state_set(struct engine *eng, p11ca_control_v1_EngineState state, const char *text);
p11ca_control_v1_EngineState engine_state_get(struct engine *eng);
/* A signer call failed with `err`: when it says the token lost its login or went away,
 * leave READY (the main loop asks the signer again every few seconds). */
void engine_state_note_signer_error(struct engine *eng, enum p11ca_err err);
/* P11CA_OK when the signer can sign now; else P11CA_E_HSM_NO_PIN / P11CA_E_HSM_UNAVAILABLE
 * with what to do. Checked before burning a serial. */
P11CA_MUST_CHECK enum p11ca_err engine_signing_ready(struct engine *eng, struct p11ca_errmsg *em);

/* ---- dispatch.c ---------------------------------------------------------------------- */

/* Answer one forwarded message: a call fills `out`; a refusal (out NULL) is audited. */
void engine_dispatch(struct engine *eng, p11ca_forward_v1_ToEngine *in,
		     p11ca_forward_v1_FromEngine *out);

/* Append an audit record in its own group transaction. */
P11CA_MUST_CHECK enum p11ca_err engine_audit(struct engine *eng, const char *event,
					     const char *actor, const char *subject,
					     const char *details, struct p11ca_errmsg *em);

/* ---- select.c: CAs and serials by name or prefix --------------------------------------- */

/* A CA as the handlers use it: the record plus its parsed certificate. */
struct engine_ca {
	struct store_ca rec;
	X509 *cert; /* NULL while PENDING; may be shared with the CA cache: never modify */
	enum hsm_key_type key_type;
	enum hsm_sig_alg alg; /* the default of key_type */
	int64_t not_after;    /* of cert (0 while PENDING) */
};

/* Whether ca is the appliance's management CA ([engine] management_ca): what it issues is
 * trusted by p11cad's own TLS, so only admins may issue from it or revoke under it. */
bool engine_ca_is_management(const struct engine *eng, const struct engine_ca *ca);

void engine_ca_cache_init(struct engine_ca_cache *cache);
/* Free every entry (X509s still referenced by callers stay valid). NULL-safe. */
void engine_ca_cache_destroy(struct engine_ca_cache *cache);
/* When cache (may be NULL) holds a parse of exactly ca->rec's id and certificate DER, fill
 * ca->cert (a reference of its own), key_type, alg, not_after and return true. */
bool engine_ca_cache_get(struct engine_ca_cache *cache, struct engine_ca *ca);
/* Remember ca's parse (takes its own references; nothing on a failed allocation). */
void engine_ca_cache_put(struct engine_ca_cache *cache, const struct engine_ca *ca);
void engine_ca_cache_counters(struct engine_ca_cache *cache, unsigned long *hits,
			      unsigned long *misses);

/* Parse hex digits (colons allowed between bytes, any case) into bytes, high nibble first.
 * Errors: P11CA_E_INVALID_ARG (empty, not hex, more than cap * 2 digits). */
P11CA_MUST_CHECK enum p11ca_err engine_hex_parse(const char *text, uint8_t *out, size_t cap,
						 size_t *nibbles, struct p11ca_errmsg *em);
void engine_hex_format(const uint8_t *bytes, size_t len, char *out /* 2 * len + 1 */);

/* CA by exact name, else by a unique prefix of its certificate's serial. cache (may be
 * NULL) serves and keeps the parse of the certificate.
 * Errors: P11CA_E_STORAGE_NOT_FOUND, P11CA_E_INVALID_ARG (ambiguous: lists candidates). */
P11CA_MUST_CHECK enum p11ca_err engine_ca_select(struct engine_ca_cache *cache,
						 struct store_txn *txn, const char *sel,
						 struct engine_ca *out, struct p11ca_errmsg *em);
/* Load a CA by id (parses the certificate, or takes it from cache, which may be NULL;
 * computes key type and algorithm). */
P11CA_MUST_CHECK enum p11ca_err engine_ca_load(struct engine_ca_cache *cache, struct store_txn *txn,
					       uint32_t id, struct engine_ca *out,
					       struct p11ca_errmsg *em);
/* Fill key_type/alg/not_after/cert from rec (rec already set), through cache (may be NULL).
 * Errors: P11CA_E_STORAGE_CORRUPT (the DER does not parse, or an unsupported key). */
P11CA_MUST_CHECK enum p11ca_err engine_ca_parse_cached(struct engine_ca_cache *cache,
						       struct engine_ca *ca,
						       struct p11ca_errmsg *em);
/* As engine_ca_parse_cached without a cache. */
P11CA_MUST_CHECK enum p11ca_err engine_ca_parse(struct engine_ca *ca, struct p11ca_errmsg *em);
void engine_ca_clear(struct engine_ca *ca);

/* Serial by exact 40-digit hex or a unique prefix (any state).
 * Errors: P11CA_E_INVALID_ARG (bad hex, ambiguous), P11CA_E_STORAGE_NOT_FOUND. */
P11CA_MUST_CHECK enum p11ca_err engine_serial_select(struct store_txn *txn, const char *text,
						     uint8_t serial[STORE_SERIAL_LEN],
						     struct p11ca_errmsg *em);

/* ---- issue.c: the intent → signer → certificate sequence --------------------------------- */

struct engine_issue {
	/* inputs */
	uint32_t ca_id;		   /* the issuing CA's record (a root: its own) */
	const char *key_uri;	   /* the issuer's key */
	const uint8_t *issuer_der; /* NULL for a self-signed certificate */
	size_t issuer_der_len;
	struct x509_cert_spec *spec; /* serial is filled in here */
	const char *profile;
	const char *actor;
	/* Stored beside the certificate, in the commit that stores it: a reply that says
	 * "issued" never leaves a certificate without them. */
	const struct store_watcher *watchers;
	size_t n_watchers;
	const char *audit_event;   /* NULL: "cert.issue" */
	const char *audit_details; /* NULL: the profile */
	/* outputs */
	uint8_t serial[STORE_SERIAL_LEN];
	uint8_t *der; /* OPENSSL_malloc'd */
	size_t der_len;
	int64_t not_after;
};

/* Run the whole issuance; on success is->der holds the stored certificate.
 * Errors: storage (intent or certificate), the signer's, P11CA_E_PROTO_TOO_LARGE (over
 * 16 KiB: the serial stays burned as an orphan). */
P11CA_MUST_CHECK enum p11ca_err engine_issue_run(struct engine *eng, struct engine_issue *is,
						 struct p11ca_errmsg *em);
void engine_issue_clear(struct engine_issue *is);

/* ---- summary.c: records → public summaries ------------------------------------------------- */

P11CA_MUST_CHECK enum p11ca_err engine_ca_summary(struct engine *eng, struct store_txn *txn,
						  const struct engine_ca *ca,
						  p11ca_v1_CaSummary *out, struct p11ca_errmsg *em);
/* engine_ca_summary in a read transaction of its own (after a CA was written). */
P11CA_MUST_CHECK enum p11ca_err engine_ca_summary_read(struct engine *eng,
						       const struct engine_ca *ca,
						       p11ca_v1_CaSummary *out,
						       struct p11ca_errmsg *em);
P11CA_MUST_CHECK enum p11ca_err engine_cert_summary(const struct store_cert *cert,
						    const char *ca_name, p11ca_v1_CertSummary *out,
						    struct p11ca_errmsg *em);
/* The summary of a certificate engine_issue_run just stored, from the values that built its
 * TBS (as engine_cert_summary of the stored record would give, without parsing the DER). */
P11CA_MUST_CHECK enum p11ca_err engine_cert_summary_issued(const uint8_t serial[STORE_SERIAL_LEN],
							   const struct x509_cert_spec *spec,
							   const char *profile, const char *ca_name,
							   p11ca_v1_CertSummary *out,
							   struct p11ca_errmsg *em);
/* Status of a stored certificate at `now`. */
p11ca_v1_CertStatus engine_cert_status(const struct store_cert *cert, int64_t now);
/* Append the chain from CA id upwards (the CA first) as PEM; *count grows. */
P11CA_MUST_CHECK enum p11ca_err engine_chain_pem(struct store_txn *txn, uint32_t ca_id,
						 uint8_t *out, size_t cap, size_t *len,
						 uint32_t *count, struct p11ca_errmsg *em);
int64_t engine_asn1_time(const ASN1_TIME *t);
int64_t engine_now(void);

/* ---- crl.c ------------------------------------------------------------------------------ */

/* Generate, sign and store a full CRL for `ca` (its record and certificate as loaded), even
 * when the stored one is fresh (after a revocation, at creation). Serialised per CA. */
P11CA_MUST_CHECK enum p11ca_err engine_crl_generate(struct engine *eng, const struct engine_ca *ca,
						    const char *actor, struct p11ca_errmsg *em);

/* ---- handlers (ca_init.c, ca.c, cert.c, crl.c, dispatch.c) ------------------------------- */

typedef enum p11ca_err (*engine_op_fn)(struct engine_call *c, p11ca_v1_Request *req,
				       p11ca_v1_Response *resp, struct p11ca_errmsg *em);

enum p11ca_err engine_op_ca_init(struct engine_call *c, p11ca_v1_Request *req,
				 p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_ca_list(struct engine_call *c, p11ca_v1_Request *req,
				 p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_ca_view(struct engine_call *c, p11ca_v1_Request *req,
				 p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_ca_export(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_cert_sign(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_cert_view(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_cert_list(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_cert_export(struct engine_call *c, p11ca_v1_Request *req,
				     p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_cert_revoke(struct engine_call *c, p11ca_v1_Request *req,
				     p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_crl_get(struct engine_call *c, p11ca_v1_Request *req,
				 p11ca_v1_Response *resp, struct p11ca_errmsg *em);

/* Release 0.4: CA and certificate management. ca_import.c; ca_edit.c; ca_revoke.c;
 * resign.c: cert_resign; cert_import.c; watchers.c: cert_watchers; profiles.c:
 * profile_list; notify.c: notify_expiring. */
enum p11ca_err engine_op_ca_import(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_ca_edit(struct engine_call *c, p11ca_v1_Request *req,
				 p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_ca_revoke(struct engine_call *c, p11ca_v1_Request *req,
				   p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_cert_resign(struct engine_call *c, p11ca_v1_Request *req,
				     p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_cert_import(struct engine_call *c, p11ca_v1_Request *req,
				     p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_cert_watchers(struct engine_call *c, p11ca_v1_Request *req,
				       p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_profile_list(struct engine_call *c, p11ca_v1_Request *req,
				      p11ca_v1_Response *resp, struct p11ca_errmsg *em);
enum p11ca_err engine_op_notify_expiring(struct engine_call *c, p11ca_v1_Request *req,
					 p11ca_v1_Response *resp, struct p11ca_errmsg *em);

/* ---- ca_settings.c: the CaSettings kept (encoded) in a CA record's settings --------------- */

/* Decode rec->settings into *out (heap-allocate it: ~20 KiB). An empty blob (CAs made before
 * release 0.4) reads as enabled = (state ACTIVE), no other settings.
 * Errors: P11CA_E_STORAGE_CORRUPT. */
P11CA_MUST_CHECK enum p11ca_err engine_ca_settings_get(const struct store_ca *rec,
						       p11ca_v1_CaSettings *out,
						       struct p11ca_errmsg *em);
/* Encode *in into rec->settings (the caller stores rec). Errors: P11CA_E_INVALID_ARG (over
 * STORE_CA_SETTINGS_MAX). */
P11CA_MUST_CHECK enum p11ca_err engine_ca_settings_set(struct store_ca *rec,
						       const p11ca_v1_CaSettings *in,
						       struct p11ca_errmsg *em);
/* What `ca` signs certificates and CRLs with unless a request says otherwise: its
 * settings' algorithm when that fits its key, else (a CA made before release 0.4) the key
 * type's default. */
enum hsm_sig_alg engine_ca_sig_alg(const struct engine_ca *ca, const p11ca_v1_CaSettings *settings);

/* ---- notify.c: expiry notifications ---------------------------------------------------- */

/* The threshold to send now for a certificate expiring at not_after to a watcher whose
 * smallest sent threshold is `notified_days` (0: none): the smallest configured threshold
 * (days[], descending) that has been reached (not_after - now <= threshold days) and is
 * below notified_days (or any when 0); 0: nothing to send. Pure, for the tests. */
uint32_t engine_notify_due(const unsigned *days, size_t n_days, int64_t not_after, int64_t now,
			   uint32_t notified_days);
/* Run one notification pass at `now`: the schedule (actor NULL: records say "engine") and
 * notify_expiring (actor: the caller's fingerprint, also on an audit record "notify.run"
 * with the counts, even when nothing was due). Errors: P11CA_E_POLICY when another pass is
 * running (try again when it ends), storage. */
P11CA_MUST_CHECK enum p11ca_err engine_notify_run(struct engine *eng, int64_t now,
						  const char *actor,
						  p11ca_v1_NotifyExpiringResponse *out,
						  struct p11ca_errmsg *em);
/* A mail header value: ASCII as is, else RFC 2047 encoded words, each whole UTF-8
 * characters. For the tests. */
void engine_notify_header(const char *text, char *out, size_t cap);

/* ca_init.c: create a CA (the ca_init handler and the bootstrap share it). */
struct engine_ca_init {
	const char *name, *subject, *parent, *key_label, *actor;
	enum hsm_key_type key_type;
	bool has_path_length;
	uint32_t path_length;
	unsigned expires_days;
	enum hsm_sig_alg alg; /* HSM_SIG_UNSPECIFIED: the issuer's (a root: its key type's) */
	/* NULL: defaults (the bootstrap's). Else the request's options beyond the fields above
	 * (name constraints, policy constraints, extensions, issued, default profile, issue
	 * algorithm); its copies of the fields above are not read. */
	const p11ca_v1_CaInitRequest *options;
};
P11CA_MUST_CHECK enum p11ca_err engine_ca_create(struct engine *eng,
						 const struct engine_ca_init *in,
						 struct engine_ca *out, struct p11ca_errmsg *em);

/* bootstrap.c */
void engine_bootstrap(struct engine *eng, const p11ca_control_v1_BootstrapRequest *req,
		      p11ca_control_v1_BootstrapResponse *resp);

#endif
