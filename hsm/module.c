/*
 * PKCS#11 modules: loaded once per path per context through p11-kit's loader, initialised
 * with CKF_OS_LOCKING_OK (our callers are threads), re-initialised on demand when a token
 * cannot be recovered otherwise.
 */
#include "hsm/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/p11-kit.h>

enum p11ca_err hsm_ctx_new(const struct p11ca_logger *log, struct hsm_ctx **out,
			   struct p11ca_errmsg *em)
{
	*out = NULL;
	struct hsm_ctx *ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return p11ca_fail(em, P11CA_E_NOMEM, "out of memory creating the HSM context");
	ctx->log = log;
	pthread_mutex_init(&ctx->lock, NULL);
	*out = ctx;
	return P11CA_OK;
}

static CK_RV module_initialize(struct hsm_module *mod)
{
	CK_C_INITIALIZE_ARGS args = {0};
	args.flags = CKF_OS_LOCKING_OK;
	CK_RV rv = mod->fn->C_Initialize(&args);
	/* Someone else in this process (an outside library) initialised it: usable. */
	if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
		rv = CKR_OK;
	mod->initialized = rv == CKR_OK;
	return rv;
}

enum p11ca_err hsm_module_get(struct hsm_ctx *ctx, const char *path, struct hsm_module **out,
			      struct p11ca_errmsg *em)
{
	*out = NULL;
	if (path == NULL || path[0] != '/')
		return p11ca_fail(em, P11CA_E_CONFIG,
				  "PKCS#11 module path '%s' is not absolute; give the full path "
				  "(e.g. /usr/lib/softhsm/libsofthsm2.so)",
				  path ? path : "(none)");

	enum p11ca_err err = P11CA_OK;
	pthread_mutex_lock(&ctx->lock);
	for (struct hsm_module *m = ctx->modules; m != NULL; m = m->next) {
		if (strcmp(m->path, path) == 0) {
			m->refs++;
			*out = m;
			goto out;
		}
	}

	struct hsm_module *mod = calloc(1, sizeof(*mod));
	if (mod == NULL || (mod->path = strdup(path)) == NULL) {
		free(mod);
		err = p11ca_fail(em, P11CA_E_NOMEM, "out of memory loading %s", path);
		goto out;
	}
	/* Unmanaged: the raw module, so we own C_Initialize/C_Finalize (recovery needs it). */
	mod->fn = p11_kit_module_load(path, P11_KIT_MODULE_UNMANAGED);
	if (mod->fn == NULL) {
		const char *why = p11_kit_message();
		err = p11ca_fail(em, P11CA_E_HSM_MODULE,
				 "cannot load PKCS#11 module %s: %s; check the path and that the "
				 "vendor library's dependencies are installed",
				 path, why ? why : "unknown reason");
		free(mod->path);
		free(mod);
		goto out;
	}
	CK_RV rv = module_initialize(mod);
	if (rv != CKR_OK) {
		err = p11ca_fail(
			em, P11CA_E_HSM_MODULE,
			"PKCS#11 module %s failed to initialise (%s); check its own "
			"configuration (for SoftHSM2: SOFTHSM2_CONF and the token directory)",
			path, hsm_ckr_name(rv));
		p11_kit_module_release(mod->fn);
		free(mod->path);
		free(mod);
		goto out;
	}
	/* Writer preference: under steady load a re-initialisation must not starve. */
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&mod->lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	mod->refs = 1;
	mod->log = ctx->log;
	mod->next = ctx->modules;
	ctx->modules = mod;
	*out = mod;
out:
	pthread_mutex_unlock(&ctx->lock);
	return err;
}

static void module_destroy(struct hsm_module *mod)
{
	if (mod->initialized)
		mod->fn->C_Finalize(NULL);
	p11_kit_module_release(mod->fn);
	pthread_rwlock_destroy(&mod->lock);
	free(mod->path);
	free(mod);
}

void hsm_module_put(struct hsm_ctx *ctx, struct hsm_module *mod)
{
	if (mod == NULL)
		return;
	pthread_mutex_lock(&ctx->lock);
	if (--mod->refs == 0) {
		for (struct hsm_module **pp = &ctx->modules; *pp != NULL; pp = &(*pp)->next) {
			if (*pp == mod) {
				*pp = mod->next;
				break;
			}
		}
		module_destroy(mod);
	}
	pthread_mutex_unlock(&ctx->lock);
}

enum p11ca_err hsm_module_reinit(struct hsm_module *mod, unsigned seen_generation,
				 unsigned timeout_ms, struct p11ca_errmsg *em)
{
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	int rc = pthread_rwlock_timedwrlock(&mod->lock, &deadline);
	if (rc != 0)
		return p11ca_fail(em, P11CA_E_HSM_UNAVAILABLE,
				  "cannot re-initialise PKCS#11 module %s: calls into it did not "
				  "return within %u ms",
				  mod->path, timeout_ms);

	enum p11ca_err err = P11CA_OK;
	/* Another thread re-initialised while we waited: its work is ours. */
	if (atomic_load(&mod->generation) != seen_generation)
		goto out;

	p11ca_logf(mod->log, LOG_WARNING, "hsm: re-initialising PKCS#11 module %s", mod->path);
	if (mod->initialized)
		(void)mod->fn->C_Finalize(NULL);
	mod->initialized = false;
	atomic_fetch_add(&mod->generation, 1);
	CK_RV rv = module_initialize(mod);
	if (rv != CKR_OK)
		err = p11ca_fail(em, P11CA_E_HSM_UNAVAILABLE,
				 "PKCS#11 module %s failed to re-initialise (%s)", mod->path,
				 hsm_ckr_name(rv));
out:
	pthread_rwlock_unlock(&mod->lock);
	return err;
}

void hsm_ctx_free(struct hsm_ctx **pctx)
{
	if (pctx == NULL || *pctx == NULL)
		return;
	struct hsm_ctx *ctx = *pctx;
	/* Tokens hold references; a module still listed here means a token was leaked.
	 * Finalise anyway so the process exits with the module closed. */
	while (ctx->modules != NULL) {
		struct hsm_module *m = ctx->modules;
		ctx->modules = m->next;
		module_destroy(m);
	}
	pthread_mutex_destroy(&ctx->lock);
	free(ctx);
	*pctx = NULL;
}
