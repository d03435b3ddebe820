/*
 * libp11fault.so: a PKCS#11 2.40 module that wraps a real one (env P11FAULT_MODULE) and
 * injects the faults its control file (env P11FAULT_CONTROL) asks for. docs/p11fault.md.
 *
 * This file is the PKCS#11 side: loading the real module, one wrapper per function
 * (generated from functions.h), the hooks that add the shim's behaviour to a few functions,
 * and the "endops" that end a real operation after an injected failure. What to inject is
 * decided in state.c. Every wrapper runs
 *     p11fault_call_begin -> p11fault_call_inject -> forward (or not) -> p11fault_call_end
 * and nothing here holds a lock while calling the real module.
 */
#include <assert.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/softhsm/p11fault/functions.h"
#include "tests/softhsm/p11fault/state.h"
#include <p11-kit/pkcs11.h> /* last: it #defines short words such as `value` and `count` */

#define SLOT_LIST_TRIES 4 /* C_GetSlotList may grow between the size query and the fetch */

static_assert(P11FAULT_FN_COUNT == 68, "PKCS#11 2.40 has 68 functions");

/* The real module's function list: written once, under load_mu, before any wrapper can run
 * (the wrappers are reachable only through C_GetFunctionList, which loads it first), then
 * only read. */
static CK_FUNCTION_LIST *real;
static pthread_mutex_t load_mu = PTHREAD_MUTEX_INITIALIZER;

/* Opens share this lock; whatever closes many sessions at once (C_CloseAllSessions,
 * C_Finalize, a reboot or removal) takes it exclusively. A session opened concurrently is
 * then either closed and forgotten, or neither, so max-sessions counts exactly. It is held
 * only around those real calls, never across a hang or a delay. */
static pthread_rwlock_t sessions_rw = PTHREAD_RWLOCK_INITIALIZER;

/* ---- loading the real module ---------------------------------------------------------- */

static CK_RV module_load_locked(void)
{
	const char *path = getenv("P11FAULT_MODULE");
	CK_FUNCTION_LIST_PTR list = NULL;
	CK_C_GetFunctionList get_list;
	void *dl;

	if (!path || !path[0]) {
		fprintf(stderr, "p11fault: P11FAULT_MODULE is not set: it must name the PKCS#11 "
				"module to wrap\n");
		return CKR_GENERAL_ERROR;
	}
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		fprintf(stderr, "p11fault: cannot load P11FAULT_MODULE: %s\n", dlerror());
		return CKR_GENERAL_ERROR;
	}
	get_list = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
	if (!get_list || get_list == C_GetFunctionList) {
		fprintf(stderr, "p11fault: P11FAULT_MODULE %s %s\n", path,
			get_list ? "is p11fault itself" : "has no C_GetFunctionList");
		dlclose(dl);
		return CKR_GENERAL_ERROR;
	}
	if (get_list(&list) != CKR_OK || !list) {
		fprintf(stderr, "p11fault: P11FAULT_MODULE %s: C_GetFunctionList failed\n", path);
		dlclose(dl);
		return CKR_GENERAL_ERROR;
	}
	/* Never dlclosed: another thread may still be inside the module at exit. */
	real = list;
	return CKR_OK;
}

static CK_RV module_load(void)
{
	CK_RV rv = CKR_OK;

	pthread_mutex_lock(&load_mu);
	if (!real)
		rv = module_load_locked();
	pthread_mutex_unlock(&load_mu);
	return rv;
}

/* What a token reboot does (asked for by state.c on `reboot` and `remove`): every session on
 * every token is closed, and with the last session of a token its login state goes. */
static void close_all_real_sessions(void)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0;
	CK_RV rv = CKR_BUFFER_TOO_SMALL;

	pthread_rwlock_wrlock(&sessions_rw);
	for (int i = 0; i < SLOT_LIST_TRIES && rv == CKR_BUFFER_TOO_SMALL; i++) {
		free(slots);
		slots = NULL;
		if (real->C_GetSlotList(CK_TRUE, NULL, &n) != CKR_OK || n == 0)
			break;
		slots = calloc(n, sizeof(*slots));
		if (!slots)
			break;
		rv = real->C_GetSlotList(CK_TRUE, slots, &n);
	}
	for (CK_ULONG i = 0; rv == CKR_OK && slots && i < n; i++)
		real->C_CloseAllSessions(slots[i]);
	p11fault_all_sessions_closed();
	pthread_rwlock_unlock(&sessions_rw);
	free(slots);
}

/* ---- hooks: functions where the shim adds behaviour to the real call ---------------------- */

static CK_RV hook_C_Initialize(struct p11fault_call *c, CK_VOID_PTR pInitArgs)
{
	CK_RV rv = module_load();

	(void)c;
	if (rv != CKR_OK)
		return rv;
	rv = real->C_Initialize(pInitArgs);
	if (rv == CKR_OK)
		p11fault_state_initialized(true);
	return rv;
}

static CK_RV hook_C_Finalize(struct p11fault_call *c, CK_VOID_PTR pReserved)
{
	CK_RV rv;

	(void)c;
	pthread_rwlock_wrlock(&sessions_rw);
	rv = real->C_Finalize(pReserved);
	if (rv == CKR_OK)
		p11fault_state_initialized(false);
	pthread_rwlock_unlock(&sessions_rw);
	return rv;
}

/* A removed token is not present: C_GetSlotList(CK_TRUE) lists no slot. */
static CK_RV hook_C_GetSlotList(struct p11fault_call *c, CK_BBOOL tokenPresent,
				CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)
{
	if (!tokenPresent || !p11fault_token_hidden(c))
		return real->C_GetSlotList(tokenPresent, pSlotList, pulCount);
	if (!pulCount)
		return CKR_ARGUMENTS_BAD;
	*pulCount = 0;
	return CKR_OK;
}

static CK_RV hook_C_GetTokenInfo(struct p11fault_call *c, CK_SLOT_ID slotID,
				 CK_TOKEN_INFO_PTR pInfo)
{
	CK_RV rv = real->C_GetTokenInfo(slotID, pInfo);

	if (rv == CKR_OK && pInfo)
		pInfo->flags |= p11fault_token_flags(c);
	return rv;
}

static CK_RV hook_C_Login(struct p11fault_call *c, CK_SESSION_HANDLE hSession,
			  CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
	CK_RV rv;

	if (userType == CKU_USER && p11fault_pin_refused(c))
		return CKR_PIN_LOCKED;
	rv = real->C_Login(hSession, userType, pPin, ulPinLen);
	if (userType == CKU_USER)
		p11fault_pin_result(c, rv);
	return rv;
}

static CK_RV hook_C_OpenSession(struct p11fault_call *c, CK_SLOT_ID slotID, CK_FLAGS flags,
				CK_VOID_PTR pApplication, CK_NOTIFY Notify,
				CK_SESSION_HANDLE_PTR phSession)
{
	unsigned long ticket;
	bool opened;
	CK_RV rv;

	pthread_rwlock_rdlock(&sessions_rw);
	if (!p11fault_session_reserve(c, slotID, &ticket)) {
		pthread_rwlock_unlock(&sessions_rw);
		return CKR_SESSION_COUNT;
	}
	rv = real->C_OpenSession(slotID, flags, pApplication, Notify, phSession);
	opened = rv == CKR_OK && phSession;
	p11fault_session_commit(ticket, opened, opened ? *phSession : CK_INVALID_HANDLE);
	pthread_rwlock_unlock(&sessions_rw);
	if (opened) {
		c->has_session = true;
		c->session = *phSession;
	}
	return rv;
}

static CK_RV hook_C_CloseSession(struct p11fault_call *c, CK_SESSION_HANDLE hSession)
{
	CK_RV rv = real->C_CloseSession(hSession);

	(void)c;
	/* Whatever the reason, a session the module no longer knows is not open. */
	if (rv == CKR_OK || rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED)
		p11fault_session_closed(hSession);
	return rv;
}

static CK_RV hook_C_CloseAllSessions(struct p11fault_call *c, CK_SLOT_ID slotID)
{
	CK_RV rv;

	(void)c;
	pthread_rwlock_wrlock(&sessions_rw);
	rv = real->C_CloseAllSessions(slotID);
	if (rv == CKR_OK)
		p11fault_slot_closed(slotID);
	pthread_rwlock_unlock(&sessions_rw);
	return rv;
}

/* flip-sign: corrupt one bit of a signature the token produced (what a faulty RSA-CRT or a
 * bad bus would do), so callers can prove they verify before they release. Length queries
 * (no output buffer) are not signatures and use up nothing. */
static void maybe_flip(struct p11fault_call *c, CK_RV rv, CK_BYTE_PTR sig, CK_ULONG_PTR len)
{
	if (rv == CKR_OK && sig && len && *len > 0 && p11fault_flip_take(c))
		sig[*len / 2] ^= 0x01;
}

static CK_RV hook_C_Sign(struct p11fault_call *c, CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData,
			 CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	CK_RV rv = real->C_Sign(hSession, pData, ulDataLen, pSignature, pulSignatureLen);

	maybe_flip(c, rv, pSignature, pulSignatureLen);
	return rv;
}

static CK_RV hook_C_SignFinal(struct p11fault_call *c, CK_SESSION_HANDLE hSession,
			      CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	CK_RV rv = real->C_SignFinal(hSession, pSignature, pulSignatureLen);

	maybe_flip(c, rv, pSignature, pulSignatureLen);
	return rv;
}

/* ---- endops: ending the real operation after an injected failure ------------------------ */

/*
 * On a real token, a failed C_Sign (any error but CKR_BUFFER_TOO_SMALL) ends the operation;
 * the caller's next C_SignInit starts afresh. An injected failure never reached the real
 * module, whose operation is still active: without these, SoftHSM would answer the retry
 * with CKR_OPERATION_ACTIVE, which no real token does. Each endop completes the operation
 * into scratch memory (wiped: it may be plaintext) and drops the result.
 */
typedef CK_RV (*io_fn)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
typedef CK_RV (*final_fn)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR);

static void end_io(io_fn fn, CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len)
{
	CK_ULONG n = 0, size;
	CK_BYTE_PTR out;

	if (fn(h, in, in_len, NULL, &n) != CKR_OK)
		return; /* an error ends the operation by itself */
	size = n ? n : 1;
	out = malloc(size);
	if (!out)
		return;
	n = size;
	(void)fn(h, in, in_len, out, &n);
	explicit_bzero(out, size);
	free(out);
}

static void end_final(final_fn fn, CK_SESSION_HANDLE h)
{
	CK_ULONG n = 0, size;
	CK_BYTE_PTR out;

	if (fn(h, NULL, &n) != CKR_OK)
		return;
	size = n ? n : 1;
	out = malloc(size);
	if (!out)
		return;
	n = size;
	(void)fn(h, out, &n);
	explicit_bzero(out, size);
	free(out);
}

/* Single-part calls replay the caller's input; the output goes to scratch memory. */
#define ENDOP_IO(name)                                                                             \
	static void endop_##name(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len,             \
				 CK_BYTE_PTR out, CK_ULONG_PTR out_len)                            \
	{                                                                                          \
		(void)out;                                                                         \
		(void)out_len;                                                                     \
		end_io(real->name, h, in, in_len);                                                 \
	}
/* Multi-part calls (and finals) are ended by their final. */
#define ENDOP_FINAL(name, final)                                                                   \
	static void endop_##name(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)       \
	{                                                                                          \
		(void)out;                                                                         \
		(void)out_len;                                                                     \
		end_final(real->final, h);                                                         \
	}
#define ENDOP_UPDATE(name, final)                                                                  \
	static void endop_##name(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len)             \
	{                                                                                          \
		(void)in;                                                                          \
		(void)in_len;                                                                      \
		end_final(real->final, h);                                                         \
	}
#define ENDOP_UPDATE_IO(name, final)                                                               \
	static void endop_##name(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len,             \
				 CK_BYTE_PTR out, CK_ULONG_PTR out_len)                            \
	{                                                                                          \
		(void)in;                                                                          \
		(void)in_len;                                                                      \
		(void)out;                                                                         \
		(void)out_len;                                                                     \
		end_final(real->final, h);                                                         \
	}

ENDOP_IO(C_Encrypt)
ENDOP_UPDATE_IO(C_EncryptUpdate, C_EncryptFinal)
ENDOP_FINAL(C_EncryptFinal, C_EncryptFinal)
ENDOP_IO(C_Decrypt)
ENDOP_UPDATE_IO(C_DecryptUpdate, C_DecryptFinal)
ENDOP_FINAL(C_DecryptFinal, C_DecryptFinal)
ENDOP_IO(C_Digest)
ENDOP_UPDATE(C_DigestUpdate, C_DigestFinal)
ENDOP_FINAL(C_DigestFinal, C_DigestFinal)
ENDOP_IO(C_Sign)
ENDOP_UPDATE(C_SignUpdate, C_SignFinal)
ENDOP_FINAL(C_SignFinal, C_SignFinal)
ENDOP_IO(C_SignRecover)
ENDOP_IO(C_VerifyRecover)

static void endop_C_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE hKey)
{
	(void)hKey;
	end_final(real->C_DigestFinal, h);
}

/* A verification ends with its verdict, whatever it is. */
static void endop_C_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG data_len,
			   CK_BYTE_PTR sig, CK_ULONG sig_len)
{
	(void)real->C_Verify(h, data, data_len, sig, sig_len);
}

static void endop_C_VerifyFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len)
{
	(void)real->C_VerifyFinal(h, sig, sig_len);
}

static void endop_C_VerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len)
{
	CK_BYTE not_a_signature = 0;

	(void)in;
	(void)in_len;
	(void)real->C_VerifyFinal(h, &not_a_signature, sizeof(not_a_signature));
}

/* ---- the generated wrappers and the function list ---------------------------------------- */

#define UNPAREN(...)	    __VA_ARGS__
#define SESSION_ARG_SESSION true, hSession
#define SESSION_ARG_NONE    false, CK_INVALID_HANDLE

#define FORWARD_FWD(name, args)	       real->name args
#define FORWARD_ENDOP(name, args)      real->name args
#define FORWARD_HOOK(name, args)       hook_##name(&c, UNPAREN args)
#define FORWARD_HOOK_ENDOP(name, args) hook_##name(&c, UNPAREN args)

#define ON_FAULT_FWD(name, args)
#define ON_FAULT_HOOK(name, args)
#define ON_FAULT_ENDOP(name, args)	endop_##name args
#define ON_FAULT_HOOK_ENDOP(name, args) endop_##name args

#define WRAPPER(name, session, handler, params, args)                                              \
	WRAPPER_##handler(name, session, handler, params, args)
#define WRAPPER_FWD(...)	WRAPPER_DEFINE(__VA_ARGS__)
#define WRAPPER_HOOK(...)	WRAPPER_DEFINE(__VA_ARGS__)
#define WRAPPER_ENDOP(...)	WRAPPER_DEFINE(__VA_ARGS__)
#define WRAPPER_HOOK_ENDOP(...) WRAPPER_DEFINE(__VA_ARGS__)
#define WRAPPER_SELF(...)

#define WRAPPER_DEFINE(name, session, handler, params, args)                                       \
	static CK_RV fault_##name params                                                           \
	{                                                                                          \
		struct p11fault_call c;                                                            \
		CK_RV rv;                                                                          \
                                                                                                   \
		p11fault_call_begin(&c, P11FAULT_FN_##name, SESSION_ARG_##session);                \
		if (p11fault_call_inject(&c, &rv)) {                                               \
			ON_FAULT_##handler(name, args);                                            \
		} else {                                                                           \
			rv = FORWARD_##handler(name, args);                                        \
		}                                                                                  \
		p11fault_call_end(&c, rv);                                                         \
		return rv;                                                                         \
	}

P11FAULT_FUNCTIONS(WRAPPER)

#define LIST_ENTRY(name, session, handler, params, args) LIST_ENTRY_##handler(name)
#define LIST_ENTRY_FWD(name)				 .name = fault_##name,
#define LIST_ENTRY_HOOK(name)				 .name = fault_##name,
#define LIST_ENTRY_ENDOP(name)				 .name = fault_##name,
#define LIST_ENTRY_HOOK_ENDOP(name)			 .name = fault_##name,
#define LIST_ENTRY_SELF(name)				 .name = name,

static CK_FUNCTION_LIST shim_list = {.version = {2, 40}, P11FAULT_FUNCTIONS(LIST_ENTRY)};

/* The module's only exported symbol. It loads the real module before handing out the list,
 * so every wrapper can rely on `real`. */
__attribute__((visibility("default"))) CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
	struct p11fault_call c;
	CK_RV rv;

	p11fault_state_set_closer(close_all_real_sessions);
	p11fault_call_begin(&c, P11FAULT_FN_C_GetFunctionList, false, CK_INVALID_HANDLE);
	if (!p11fault_call_inject(&c, &rv)) {
		rv = module_load();
		if (rv == CKR_OK && !ppFunctionList)
			rv = CKR_ARGUMENTS_BAD;
		if (rv == CKR_OK)
			*ppFunctionList = &shim_list;
	}
	p11fault_call_end(&c, rv);
	return rv;
}
