/*
 * A token: slot lookup by URI, the session pool, login policy and fault recovery.
 *
 * Locks, always taken in this order and never held across a wait for a lower one:
 *   mod->lock (shared while calling into the module; exclusive to re-initialise it)
 *   tok->login_lock (slot lookup, C_Login, C_OpenSession and closing a dropped session)
 *   tok->lock (pool bookkeeping and counters only; never held during a PKCS#11 call)
 */
#include "hsm/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static unsigned module_gen(const struct hsm_token *tok)
{
	return atomic_load(&tok->mod->generation);
}

/* ---- slot lookup ----------------------------------------------------------------- */

/* Find the one slot whose token matches the URI. Called with login_lock held (or before
 * the token is shared). */
static enum p11ca_err token_resolve_slot(struct hsm_token *tok, CK_RV *rv_out,
					 struct p11ca_errmsg *em)
{
	CK_FUNCTION_LIST *fn = tok->mod->fn;
	CK_SLOT_ID slots[64];
	CK_ULONG n = sizeof(slots) / sizeof(slots[0]);
	*rv_out = fn->C_GetSlotList(CK_TRUE, slots, &n);
	if (*rv_out != CKR_OK)
		return p11ca_fail(em, hsm_ckr_err(*rv_out), "cannot list slots of %s: %s",
				  tok->mod->path, hsm_ckr_name(*rv_out));

	CK_SLOT_ID want_slot = p11_kit_uri_get_slot_id(tok->uri);
	char present[256] = "";
	char matched[128] = "";
	unsigned matches = 0;
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		CK_SLOT_INFO si;
		if (fn->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
		    fn->C_GetSlotInfo(slots[i], &si) != CKR_OK)
			continue;
		if (!(ti.flags & CKF_TOKEN_INITIALIZED))
			continue; /* a blank slot (SoftHSM always offers one) is no candidate */
		char label[33], serial[17];
		hsm_padded_to_cstr(ti.label, sizeof(ti.label), label, sizeof(label));
		hsm_padded_to_cstr(ti.serialNumber, sizeof(ti.serialNumber), serial,
				   sizeof(serial));
		size_t used = strlen(present);
		snprintf(present + used, sizeof(present) - used, "%s'%s' (serial %s)",
			 used ? ", " : "", label, serial);
		if (!p11_kit_uri_match_token_info(tok->uri, &ti) ||
		    !p11_kit_uri_match_slot_info(tok->uri, &si) ||
		    (want_slot != (CK_SLOT_ID)-1 && want_slot != slots[i]))
			continue;
		used = strlen(matched);
		snprintf(matched + used, sizeof(matched) - used, "%s'%s' (serial %s)",
			 used ? ", " : "", label, serial);
		if (matches++ == 0) {
			atomic_store(&tok->slot, slots[i]);
			snprintf(tok->name, sizeof(tok->name), "%s", label);
		}
	}
	*rv_out = CKR_TOKEN_NOT_PRESENT;
	if (matches == 0)
		return p11ca_fail(em, P11CA_E_HSM_TOKEN_NOT_FOUND,
				  "no token matches %s in %s; tokens present: %s", tok->uri_text,
				  tok->mod->path, present[0] ? present : "none");
	if (matches > 1)
		return p11ca_fail(em, P11CA_E_HSM_TOKEN_AMBIGUOUS,
				  "%u tokens match %s: %s; add serial= to the URI to pick one",
				  matches, tok->uri_text, matched);
	*rv_out = CKR_OK;
	atomic_store(&tok->slot_generation, module_gen(tok));
	return P11CA_OK;
}

/* The URI as it may appear in messages: token attributes only, no PIN, no pin-source. */
static char *token_uri_for_messages(const char *text)
{
	P11KitUri *copy = NULL;
	char *out = NULL;
	if (hsm_uri_parse(text, HSM_URI_TOKEN, &copy, NULL) != P11CA_OK)
		return strdup("(invalid URI)");
	p11_kit_uri_set_pin_value(copy, NULL);
	p11_kit_uri_set_pin_source(copy, NULL);
	p11_kit_uri_set_module_path(copy, NULL);
	if (p11_kit_uri_format(copy, P11_KIT_URI_FOR_TOKEN | P11_KIT_URI_FOR_SLOT, &out) !=
	    P11_KIT_URI_OK)
		out = strdup("pkcs11:");
	p11_kit_uri_free(copy);
	return out;
}

enum p11ca_err hsm_token_open(struct hsm_ctx *ctx, const struct hsm_token_config *cfg,
			      struct hsm_token **out, struct p11ca_errmsg *em)
{
	*out = NULL;
	unsigned pool = cfg->pool_size ? cfg->pool_size : CONFIG_HSM_POOL_DEFAULT_SESSIONS;
	if (pool > CONFIG_HSM_POOL_MAX_SESSIONS)
		return p11ca_fail(em, P11CA_E_CONFIG,
				  "pool size %u exceeds this build's limit of %d sessions "
				  "(CONFIG_HSM_POOL_MAX_SESSIONS)",
				  pool, CONFIG_HSM_POOL_MAX_SESSIONS);

	enum p11ca_err err;
	struct hsm_token *tok = calloc(1, sizeof(*tok));
	if (tok == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory opening a token");
	pthread_mutex_init(&tok->lock, NULL);
	pthread_mutex_init(&tok->login_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&tok->freed, &ca);
	pthread_condattr_destroy(&ca);
	tok->ctx = ctx;
	tok->pool_size = pool;
	if (RAND_bytes(tok->refused_salt, sizeof(tok->refused_salt)) != 1) {
		err = p11ca_fail(em, P11CA_E_INTERNAL, "no randomness for the PIN refusal salt");
		goto fail;
	}
	tok->busy_timeout_ms =
		cfg->busy_timeout_ms ? cfg->busy_timeout_ms : CONFIG_HSM_BUSY_TIMEOUT_MS;

	err = hsm_uri_parse(cfg->uri, HSM_URI_TOKEN, &tok->uri, em);
	if (err != P11CA_OK)
		goto fail;
	tok->uri_text = token_uri_for_messages(cfg->uri);
	tok->sessions = calloc(pool, sizeof(*tok->sessions));
	if (tok->uri_text == NULL || tok->sessions == NULL) {
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory opening a token");
		goto fail;
	}

	const char *path =
		cfg->module_path ? cfg->module_path : p11_kit_uri_get_module_path(tok->uri);
	if (path == NULL) {
		err = p11ca_fail(em, P11CA_E_CONFIG,
				 "no PKCS#11 module for %s: set the module path (or "
				 "module-path= in the URI)",
				 tok->uri_text);
		goto fail;
	}
	err = hsm_module_get(ctx, path, &tok->mod, em);
	if (err != P11CA_OK)
		goto fail;

	CK_RV rv;
	pthread_rwlock_rdlock(&tok->mod->lock);
	err = token_resolve_slot(tok, &rv, em);
	pthread_rwlock_unlock(&tok->mod->lock);
	if (err != P11CA_OK)
		goto fail;
	*out = tok;
	return P11CA_OK;
fail:
	hsm_token_close(&tok);
	return err;
}

void hsm_token_close(struct hsm_token **ptok)
{
	if (ptok == NULL || *ptok == NULL)
		return;
	struct hsm_token *tok = *ptok;
	if (tok->mod != NULL) {
		pthread_rwlock_rdlock(&tok->mod->lock);
		for (unsigned i = 0; tok->sessions != NULL && i < tok->pool_size; i++)
			if (tok->sessions[i].open && tok->sessions[i].generation == module_gen(tok))
				(void)tok->mod->fn->C_CloseSession(tok->sessions[i].handle);
		pthread_rwlock_unlock(&tok->mod->lock);
		hsm_module_put(tok->ctx, tok->mod);
	}
	p11ca_secret_free(&tok->pin);
	if (tok->uri != NULL)
		p11_kit_uri_free(tok->uri);
	free(tok->uri_text);
	free(tok->sessions);
	pthread_cond_destroy(&tok->freed);
	pthread_mutex_destroy(&tok->lock);
	pthread_mutex_destroy(&tok->login_lock);
	free(tok);
	*ptok = NULL;
}

/* ---- the pool ---------------------------------------------------------------------- */

static void deadline_after_ms(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Take a free session slot, preferring one that is already open. */
static enum p11ca_err pool_acquire(struct hsm_token *tok, struct hsm_session **out,
				   struct p11ca_errmsg *em)
{
	struct timespec deadline;
	deadline_after_ms(&deadline, tok->busy_timeout_ms);
	enum p11ca_err err = P11CA_OK;

	pthread_mutex_lock(&tok->lock);
	/* A re-initialised module (a rebooted or replaced token) may allow more sessions. */
	unsigned gen = module_gen(tok);
	if (tok->cap_generation != gen) {
		for (unsigned i = 0; i < tok->pool_size; i++)
			tok->sessions[i].capped = false;
		tok->cap_generation = gen;
	}
	for (;;) {
		struct hsm_session *closed = NULL, *ready = NULL;
		unsigned usable = 0;
		for (unsigned i = 0; i < tok->pool_size; i++) {
			struct hsm_session *s = &tok->sessions[i];
			if (s->capped)
				continue;
			usable++;
			if (s->busy)
				continue;
			if (s->open && ready == NULL)
				ready = s;
			else if (!s->open && closed == NULL)
				closed = s;
		}
		struct hsm_session *pick = ready ? ready : closed;
		if (pick != NULL) {
			pick->busy = true;
			*out = pick;
			break;
		}
		if (usable == 0) {
			err = p11ca_fail(em, P11CA_E_HSM_BUSY,
					 "token '%s' refuses to open any session "
					 "(CKR_SESSION_COUNT); close other applications' sessions",
					 tok->name);
			break;
		}
		if (pthread_cond_timedwait(&tok->freed, &tok->lock, &deadline) == ETIMEDOUT) {
			err = p11ca_fail(em, P11CA_E_HSM_BUSY,
					 "all %u sessions of token '%s' stayed busy for %u ms; "
					 "raise the pool size or the wait, or reduce the load",
					 usable, tok->name, tok->busy_timeout_ms);
			break;
		}
	}
	pthread_mutex_unlock(&tok->lock);
	return err;
}

static void pool_release(struct hsm_token *tok, struct hsm_session *s)
{
	pthread_mutex_lock(&tok->lock);
	s->busy = false;
	pthread_cond_signal(&tok->freed);
	pthread_mutex_unlock(&tok->lock);
}

/* Forget every session: each is closed and reopened by the next thread that takes it,
 * including those in use right now. A session that died usually died with all the
 * others (a token reboot); finding that out one session per recovery step would spend
 * every step on a full pool. */
static void pool_drop_sessions(struct hsm_token *tok)
{
	atomic_fetch_add(&tok->drop_epoch, 1);
}

/* A session of `epoch` died: drop its generation, unless another thread already did.
 * Several sessions of one generation fail together after a token reboot; only the first
 * report may drop, or the later ones would also kill the sessions opened since (and,
 * closing the last of them, the token's login: a second C_Login that was not needed). */
static void pool_drop_sessions_of(struct hsm_token *tok, unsigned epoch)
{
	atomic_compare_exchange_strong(&tok->drop_epoch, &epoch, epoch + 1);
}

/* The same after a device fault or re-initialisation, where the login is gone too. */
static void pool_drop_all(struct hsm_token *tok)
{
	pool_drop_sessions(tok);
	atomic_store(&tok->logged_in, false);
}

/* ---- login ------------------------------------------------------------------------- */

/* SHA-256(salt ‖ PIN), to recognise a PIN the token already refused without keeping it. */
static void pin_digest(const struct hsm_token *tok, const struct p11ca_secret *pin, uint8_t out[32])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, tok->refused_salt, sizeof(tok->refused_salt)) != 1 ||
	    EVP_DigestUpdate(ctx, p11ca_secret_data(pin), p11ca_secret_len(pin)) != 1 ||
	    EVP_DigestFinal_ex(ctx, out, &n) != 1)
		memset(out, 0xff, 32); /* fails closed: matches nothing a real digest gives */
	EVP_MD_CTX_free(ctx);
}

/* Log in through session s unless already logged in. Called with mod->lock shared and
 * login_lock held. Refusals are policy (rv stays CKR_OK); module faults set *rv. */
static enum p11ca_err token_login_locked(struct hsm_token *tok, struct hsm_session *s, CK_RV *rv,
					 struct p11ca_errmsg *em)
{
	CK_FUNCTION_LIST *fn = tok->mod->fn;
	*rv = CKR_OK;
	if (atomic_load(&tok->logged_in))
		return P11CA_OK;
	enum p11ca_err refusal = atomic_load(&tok->pin_refusal);
	if (refusal == P11CA_E_HSM_PIN_LOCKED)
		return p11ca_fail(em, refusal,
				  "the user PIN of token '%s' is locked; unlock it with the "
				  "token's security-officer tools, then activate again",
				  tok->name);
	if (refusal != P11CA_OK)
		return p11ca_fail(em, refusal,
				  "token '%s' refused the PIN it was given; p11ca will not try it "
				  "again (that could lock the token). Supply the correct PIN "
				  "(hsm activate or the pin-source file)",
				  tok->name);
	if (tok->pin == NULL)
		return p11ca_fail(em, P11CA_E_HSM_NO_PIN,
				  "token '%s' is not activated: supply its PIN (hsm activate) or "
				  "configure a pin-source",
				  tok->name);

	CK_TOKEN_INFO ti;
	*rv = fn->C_GetTokenInfo(atomic_load(&tok->slot), &ti);
	if (*rv != CKR_OK)
		return p11ca_fail(em, hsm_ckr_err(*rv), "cannot read the state of token '%s': %s",
				  tok->name, hsm_ckr_name(*rv));
	if (ti.flags & CKF_USER_PIN_LOCKED)
		return p11ca_fail(em, P11CA_E_HSM_PIN_LOCKED,
				  "the user PIN of token '%s' is locked; unlock it with the "
				  "token's security-officer tools, then activate again",
				  tok->name);
	if (ti.flags & CKF_USER_PIN_FINAL_TRY)
		return p11ca_fail(em, P11CA_E_HSM_PIN_FINAL_TRY,
				  "token '%s' has one PIN try left; p11ca will not risk locking "
				  "it. Check the PIN out of band, reset the counter with the "
				  "vendor's tool, then activate again",
				  tok->name);

	*rv = fn->C_Login(s->handle, CKU_USER, (CK_UTF8CHAR_PTR)p11ca_secret_data(tok->pin),
			  p11ca_secret_len(tok->pin));
	if (*rv == CKR_OK || *rv == CKR_USER_ALREADY_LOGGED_IN) {
		*rv = CKR_OK;
		tok->has_refused_digest = false;
		atomic_store(&tok->logged_in, true);
		p11ca_logf(tok->ctx->log, LOG_INFO, "hsm: logged in to token '%s'", tok->name);
		return P11CA_OK;
	}
	if (*rv == CKR_PIN_INCORRECT || *rv == CKR_PIN_LEN_RANGE || *rv == CKR_PIN_LOCKED ||
	    *rv == CKR_PIN_EXPIRED) {
		/* Never again with this PIN: a retry storm would lock a real token. */
		enum p11ca_err e = hsm_ckr_err(*rv);
		atomic_store(&tok->pin_refusal, e);
		pin_digest(tok, tok->pin, tok->refused_digest);
		tok->has_refused_digest = true;
		p11ca_secret_free(&tok->pin);
		atomic_store(&tok->pin_set, false);
		p11ca_logf(tok->ctx->log, LOG_ERR,
			   "hsm: token '%s' refused the PIN (%s); it will not be retried",
			   tok->name, hsm_ckr_name(*rv));
		*rv = CKR_OK;
		if (e == P11CA_E_HSM_PIN_LOCKED)
			return p11ca_fail(em, e,
					  "token '%s' reports its user PIN locked; unlock it with "
					  "the token's security-officer tools, then activate again",
					  tok->name);
		return p11ca_fail(em, e,
				  "token '%s' refused the PIN; supply the correct one (hsm "
				  "activate) — it will not be retried automatically",
				  tok->name);
	}
	return p11ca_fail(em, hsm_ckr_err(*rv), "login to token '%s' failed: %s", tok->name,
			  hsm_ckr_name(*rv));
}

/* The login lock, waited for no longer than a session would be: a token that hangs in
 * C_Login must not hang every caller with it. */
static enum p11ca_err login_lock_timed(struct hsm_token *tok, struct p11ca_errmsg *em)
{
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += tok->busy_timeout_ms / 1000;
	deadline.tv_nsec += (long)(tok->busy_timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	if (pthread_mutex_timedlock(&tok->login_lock, &deadline) == 0)
		return P11CA_OK;
	return p11ca_fail(em, P11CA_E_HSM_BUSY,
			  "token '%s' is busy: a login or slot lookup has not returned within "
			  "%u ms; check the HSM",
			  tok->name, tok->busy_timeout_ms);
}

/* Whether closing s's handle can only close s's own session. Tokens reuse handle numbers
 * after a reboot: a dead handle's number may by now be another slot's fresh session. Called
 * with login_lock held, under which every C_OpenSession runs and publishes its handle, so
 * no open is in flight and every handle this pool holds is visible here. */
static bool handle_is_ours_alone(struct hsm_token *tok, const struct hsm_session *s)
{
	bool alone = true;
	pthread_mutex_lock(&tok->lock);
	for (unsigned i = 0; i < tok->pool_size; i++) {
		const struct hsm_session *o = &tok->sessions[i];
		if (o != s && o->open && o->handle == s->handle)
			alone = false;
	}
	pthread_mutex_unlock(&tok->lock);
	return alone;
}

/* Open a session into s (closed) on the token's slot in module generation gen. Called with
 * mod->lock shared and login_lock held. */
static enum p11ca_err session_open_locked(struct hsm_token *tok, struct hsm_session *s,
					  unsigned gen, CK_RV *rv, struct p11ca_errmsg *em)
{
	if (atomic_load(&tok->slot_generation) != gen) {
		atomic_store(&tok->logged_in, false);
		enum p11ca_err err = token_resolve_slot(tok, rv, em);
		if (err != P11CA_OK)
			return err;
	}
	unsigned epoch = atomic_load(&tok->drop_epoch);
	CK_SESSION_HANDLE handle = CK_INVALID_HANDLE;
	*rv = tok->mod->fn->C_OpenSession(atomic_load(&tok->slot),
					  CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &handle);
	if (*rv == CKR_SESSION_COUNT)
		return p11ca_fail(em, P11CA_E_HSM_BUSY,
				  "token '%s' refuses to open another session "
				  "(CKR_SESSION_COUNT); close other applications' sessions on it, "
				  "or lower the pool size",
				  tok->name);
	if (*rv != CKR_OK)
		return p11ca_fail(em, hsm_ckr_err(*rv), "cannot open a session on token '%s': %s",
				  tok->name, hsm_ckr_name(*rv));
	/* Published under the pool lock too: status and pool_cap read it. */
	pthread_mutex_lock(&tok->lock);
	s->handle = handle;
	s->open = true;
	pthread_mutex_unlock(&tok->lock);
	s->generation = gen;
	s->epoch = epoch;
	memset(s->cache, 0, sizeof(s->cache));
	/* A new session tells us whether the token still has our login. */
	CK_SESSION_INFO si;
	if (tok->mod->fn->C_GetSessionInfo(s->handle, &si) == CKR_OK &&
	    si.state != CKS_RW_USER_FUNCTIONS && si.state != CKS_RO_USER_FUNCTIONS)
		atomic_store(&tok->logged_in, false);
	return P11CA_OK;
}

/* Make s usable: slot known in this module generation, session open, token logged in.
 * Called with mod->lock shared. */
static enum p11ca_err session_prepare(struct hsm_token *tok, struct hsm_session *s, CK_RV *rv,
				      struct p11ca_errmsg *em)
{
	unsigned gen = module_gen(tok);
	enum p11ca_err err = P11CA_OK;
	*rv = CKR_OK;

	bool dropped =
		s->open && (s->generation != gen || s->epoch != atomic_load(&tok->drop_epoch));
	if (dropped || !s->open) {
		/* Opens and the close of a dropped handle are serialised by login_lock: an open
		 * in flight would hand out a number handle_is_ours_alone cannot see yet. Leaving
		 * a live handle open instead is no option: under a session cap it holds the
		 * very place the reopen needs, and every thread then fails with
		 * CKR_SESSION_COUNT. Opens are rare (pool warm-up, recovery). */
		if ((err = login_lock_timed(tok, em)) != P11CA_OK)
			return err; /* s stays as it was: the next taker tries again */
		if (dropped) {
			/* Dropped after a fault. In the same module generation the handle may
			 * still be alive on the token: close it, unless the number is
			 * another slot's by now. */
			if (s->generation == gen && handle_is_ours_alone(tok, s))
				(void)tok->mod->fn->C_CloseSession(s->handle);
			s->open = false;
		}
		err = session_open_locked(tok, s, gen, rv, em);
		pthread_mutex_unlock(&tok->login_lock);
		if (err != P11CA_OK)
			return err;
	}
	if (!atomic_load(&tok->logged_in)) {
		if ((err = login_lock_timed(tok, em)) != P11CA_OK)
			return err;
		err = token_login_locked(tok, s, rv, em);
		pthread_mutex_unlock(&tok->login_lock);
	}
	return err;
}

/* ---- the recovery runner -------------------------------------------------------- */

enum p11ca_err hsm_token_note_failure(struct hsm_token *tok, enum p11ca_err err,
				      const struct p11ca_errmsg *em)
{
	pthread_mutex_lock(&tok->lock);
	tok->failures++;
	tok->last_error = err;
	snprintf(tok->last_error_text, sizeof(tok->last_error_text), "%s",
		 em && em->text[0] ? em->text : p11ca_strerror(err));
	pthread_mutex_unlock(&tok->lock);
	return err;
}

static const char *fault_action(enum hsm_fault f, bool reinit)
{
	if (reinit)
		return "re-initialising the module";
	switch (f) {
	case HSM_FAULT_SESSION:
		return "reopening the session";
	case HSM_FAULT_LOGIN:
		return "logging in again";
	case HSM_FAULT_OBJECT:
		return "finding the key again";
	default:
		return "reopening all sessions";
	}
}

/* The token caps sessions below our pool size: shrink the pool instead of failing, as
 * long as at least one session is open. Returns true when the slot was capped. */
static bool pool_cap(struct hsm_token *tok, struct hsm_session *s)
{
	pthread_mutex_lock(&tok->lock);
	/* A session another thread is opening right now counts: it is what took the last
	 * place the token had. */
	unsigned open = 0;
	for (unsigned i = 0; i < tok->pool_size; i++) {
		const struct hsm_session *o = &tok->sessions[i];
		open += o != s && (o->open || o->busy);
	}
	if (open > 0)
		s->capped = true;
	pthread_mutex_unlock(&tok->lock);
	if (open > 0)
		p11ca_logf(tok->ctx->log, LOG_WARNING,
			   "hsm: token '%s' allows no more sessions; using %u of %u", tok->name,
			   open, tok->pool_size);
	return open > 0;
}

enum p11ca_err hsm_token_run(struct hsm_token *tok, const char *what, hsm_session_op op, void *arg,
			     struct p11ca_errmsg *em)
{
	struct p11ca_errmsg step = {0};
	enum p11ca_err err = P11CA_E_HSM_UNAVAILABLE;
	CK_RV rv = CKR_OK;
	unsigned steps = 0, object_faults = 0, device_faults = 0;

	while (steps < CONFIG_HSM_RECOVERY_ATTEMPTS) {
		p11ca_errmsg_clear(&step);
		struct hsm_session *s = NULL;
		err = pool_acquire(tok, &s, &step);
		if (err != P11CA_OK)
			break;

		pthread_rwlock_rdlock(&tok->mod->lock);
		unsigned gen = module_gen(tok);
		err = session_prepare(tok, s, &rv, &step);
		if (err == P11CA_OK) {
			rv = op(tok, s, arg, &step);
			/* An op that recorded a precise code (key exists, ambiguous) knows best. */
			err = rv == CKR_OK	      ? P11CA_OK
			      : step.code != P11CA_OK ? step.code
						      : hsm_ckr_err(rv);
		}
		enum hsm_fault fault = err == P11CA_OK ? HSM_FAULT_NONE : hsm_ckr_fault(rv);
		if (fault == HSM_FAULT_SESSION && s->open) {
			/* Only CKR_OPERATION_ACTIVE leaves the handle alive (forgetting it would
			 * leak a session); a dead handle's number may already be reused. */
			if (rv == CKR_OPERATION_ACTIVE)
				(void)tok->mod->fn->C_CloseSession(s->handle);
			s->open = false;
		}
		pthread_rwlock_unlock(&tok->mod->lock);

		if (fault == HSM_FAULT_OBJECT)
			memset(s->cache, 0, sizeof(s->cache));
		bool capped = rv == CKR_SESSION_COUNT && !s->open && pool_cap(tok, s);
		unsigned s_epoch = s->epoch;
		pool_release(tok, s);

		if (capped)
			continue; /* not a fault: a smaller pool; capping ends, so this ends */
		if (err == P11CA_OK)
			return P11CA_OK;
		if (fault == HSM_FAULT_FATAL || fault == HSM_FAULT_NONE)
			break; /* the request or the PIN is the problem: recovery cannot help */

		/* Escalate: device faults and handles that stay invalid after a fresh find
		 * are only cured by C_Finalize + C_Initialize (PITFALLS.md, token dir moved). */
		steps++;
		if (fault == HSM_FAULT_LOGIN)
			atomic_store(&tok->logged_in, false);
		if (fault == HSM_FAULT_SESSION)
			pool_drop_sessions_of(
				tok, s_epoch); /* a new session tells whether the login survived */
		if (fault == HSM_FAULT_DEVICE)
			pool_drop_all(tok);
		bool reinit = (fault == HSM_FAULT_DEVICE && device_faults++ > 0) ||
			      (fault == HSM_FAULT_OBJECT && object_faults++ > 0);
		p11ca_logf(tok->ctx->log, LOG_WARNING, "hsm: token '%s': %s failed with %s; %s",
			   tok->name, what, hsm_ckr_name(rv), fault_action(fault, reinit));
		pthread_mutex_lock(&tok->lock);
		tok->recoveries++;
		pthread_mutex_unlock(&tok->lock);
		if (reinit) {
			pool_drop_all(tok);
			struct p11ca_errmsg re = {0};
			if (hsm_module_reinit(tok->mod, gen, tok->busy_timeout_ms, &re) != P11CA_OK)
				p11ca_logf(tok->ctx->log, LOG_ERR, "hsm: %s", re.text);
		}
		err = P11CA_E_HSM_UNAVAILABLE;
	}

	if (step.text[0] == '\0') /* the failing call recorded no sentence of its own */
		(void)p11ca_fail(&step, err, "token '%s': %s failed with %s", tok->name, what,
				 hsm_ckr_name(rv));
	if (steps == CONFIG_HSM_RECOVERY_ATTEMPTS) {
		/* A key that is simply not there is not an outage. */
		if (step.code == P11CA_E_HSM_KEY_NOT_FOUND) {
			err = step.code;
		} else {
			struct p11ca_errmsg final = {0};
			(void)p11ca_fail(&final, err,
					 "token '%s' is unavailable after %u recovery steps (last: "
					 "%s); check the HSM and its connection (hsm status) — the "
					 "next request tries again",
					 tok->name, steps, step.text);
			step = final;
		}
	}
	hsm_token_note_failure(tok, err, &step);
	return p11ca_fail(em, err, "%s", p11ca_errmsg_text(&step));
}

/* ---- activation and status ------------------------------------------------------- */

static CK_RV op_nothing(struct hsm_token *tok, struct hsm_session *s, void *arg,
			struct p11ca_errmsg *em)
{
	(void)tok, (void)s, (void)arg, (void)em;
	return CKR_OK; /* session_prepare already logged in */
}

enum p11ca_err hsm_token_login(struct hsm_token *tok, const struct p11ca_secret *pin,
			       struct p11ca_errmsg *em)
{
	struct p11ca_secret *copy = NULL;
	enum p11ca_err err;
	if (pin != NULL) {
		err = p11ca_secret_new(p11ca_secret_capacity(pin), &copy, em);
		if (err == P11CA_OK)
			err = p11ca_secret_set(copy, p11ca_secret_data(pin), p11ca_secret_len(pin),
					       em);
	} else if (p11_kit_uri_get_pin_source(tok->uri) != NULL) {
		err = hsm_pin_from_source(p11_kit_uri_get_pin_source(tok->uri), &copy, em);
	} else if (p11_kit_uri_get_pin_value(tok->uri) != NULL) {
		const char *v = p11_kit_uri_get_pin_value(tok->uri);
		err = p11ca_secret_new(CONFIG_HSM_PIN_MAX_LEN, &copy, em);
		if (err == P11CA_OK)
			err = p11ca_secret_set(copy, v, strlen(v), em);
	} else {
		err = p11ca_fail(em, P11CA_E_HSM_NO_PIN,
				 "no PIN for token '%s': pass one or add pin-source= to its URI",
				 tok->name);
	}
	if (err != P11CA_OK) {
		p11ca_secret_free(&copy);
		return hsm_token_note_failure(tok, err, em);
	}

	pthread_mutex_lock(&tok->login_lock);
	uint8_t digest[32];
	pin_digest(tok, copy, digest);
	if (tok->has_refused_digest && CRYPTO_memcmp(digest, tok->refused_digest, 32) == 0) {
		err = p11ca_fail(em, P11CA_E_HSM_PIN_INCORRECT,
				 "token '%s' already refused this PIN; it is not tried again "
				 "(repeated wrong PINs lock tokens)",
				 tok->name);
	} else if (atomic_load(&tok->logged_in) && tok->pin != NULL) {
		/* C_Login cannot check a second PIN without logging out, which would stop
		 * signing; an identical PIN is a harmless no-op, a different one is refused. */
		bool same = p11ca_secret_len(tok->pin) == p11ca_secret_len(copy) &&
			    CRYPTO_memcmp(p11ca_secret_data(tok->pin), p11ca_secret_data(copy),
					  p11ca_secret_len(copy)) == 0;
		if (!same)
			err = p11ca_fail(em, P11CA_E_USAGE,
					 "token '%s' is already activated with another PIN; the "
					 "new one was not used (checking it would log the token "
					 "out and interrupt signing)",
					 tok->name);
		p11ca_secret_free(&copy);
	} else {
		p11ca_secret_free(&tok->pin);
		tok->pin = copy;
		copy = NULL;
		atomic_store(&tok->pin_set, true);
		atomic_store(&tok->pin_refusal, P11CA_OK);
	}
	pthread_mutex_unlock(&tok->login_lock);
	p11ca_secret_free(&copy);
	if (err != P11CA_OK)
		return hsm_token_note_failure(tok, err, em);
	return hsm_token_run(tok, "login", op_nothing, NULL, em);
}

static CK_RV op_count_keys(struct hsm_token *tok, struct hsm_session *s, void *arg,
			   struct p11ca_errmsg *em)
{
	(void)em;
	CK_OBJECT_HANDLE h[256];
	CK_ULONG n = 0;
	CK_RV rv = hsm_find_objects(tok, s, CKO_PRIVATE_KEY, NULL, NULL, 0, h,
				    sizeof(h) / sizeof(h[0]), &n);
	*(long *)arg = rv == CKR_OK ? (long)n : -1;
	return rv;
}

enum p11ca_err hsm_token_status(struct hsm_token *tok, struct hsm_status *st,
				struct p11ca_errmsg *em)
{
	if (tok == NULL || st == NULL)
		return p11ca_fail(em, P11CA_E_INVALID_ARG, "hsm_token_status: NULL argument");
	memset(st, 0, sizeof(*st));
	st->key_count = -1;

	pthread_rwlock_rdlock(&tok->mod->lock);
	CK_TOKEN_INFO ti;
	CK_SLOT_ID slot = atomic_load(&tok->slot);
	if (atomic_load(&tok->slot_generation) == module_gen(tok) &&
	    tok->mod->fn->C_GetTokenInfo(slot, &ti) == CKR_OK) {
		st->token_present = true;
		hsm_padded_to_cstr(ti.label, sizeof(ti.label), st->label, sizeof(st->label));
		hsm_padded_to_cstr(ti.serialNumber, sizeof(ti.serialNumber), st->serial,
				   sizeof(st->serial));
		hsm_padded_to_cstr(ti.manufacturerID, sizeof(ti.manufacturerID), st->manufacturer,
				   sizeof(st->manufacturer));
		hsm_padded_to_cstr(ti.model, sizeof(ti.model), st->model, sizeof(st->model));
		st->pin_count_low = (ti.flags & CKF_USER_PIN_COUNT_LOW) != 0;
		st->pin_final_try = (ti.flags & CKF_USER_PIN_FINAL_TRY) != 0;
		st->pin_locked = (ti.flags & CKF_USER_PIN_LOCKED) != 0;
	}
	pthread_rwlock_unlock(&tok->mod->lock);

	/* Counting keys needs a login; only try when we believe we have one, so a status
	 * call never spends a PIN try. */
	if (st->token_present && atomic_load(&tok->logged_in)) {
		long n = -1;
		if (hsm_token_run(tok, "count keys", op_count_keys, &n, NULL) == P11CA_OK)
			st->key_count = n;
	}

	/* Atomics only: status must answer while a login hangs in the token. */
	st->pin_set = atomic_load(&tok->pin_set);
	st->pin_refused = atomic_load(&tok->pin_refusal) != P11CA_OK;
	st->logged_in = atomic_load(&tok->logged_in);
	pthread_mutex_lock(&tok->lock);
	st->pool_size = tok->pool_size;
	for (unsigned i = 0; i < tok->pool_size; i++) {
		st->sessions_open += tok->sessions[i].open;
		st->sessions_busy += tok->sessions[i].busy;
	}
	st->signatures = tok->signatures;
	st->failures = tok->failures;
	st->recoveries = tok->recoveries;
	st->bad_signatures = tok->bad_signatures;
	st->last_error = tok->last_error;
	snprintf(st->last_error_text, sizeof(st->last_error_text), "%s", tok->last_error_text);
	pthread_mutex_unlock(&tok->lock);
	return P11CA_OK;
}
