/*
 * p11fault's fault state: the loaded control file and what it decides for each call, the
 * counters it runs down, the sessions it tracks, and the log. p11fault.c (the PKCS#11 side)
 * asks; this module never calls the real PKCS#11 module itself.
 *
 * Every function is thread-safe: the state is under one mutex, which is never held while
 * sleeping or while calling back into p11fault.c.
 *
 * Plain C types only (handles, slot ids and CK_RVs are unsigned longs): this header must not
 * pull in pkcs11.h.
 */
#ifndef P11FAULT_STATE_H
#define P11FAULT_STATE_H

#include <stdbool.h>
#include <time.h>

#pragma GCC visibility push(hidden)

/* One PKCS#11 call in flight: what its log line will say. */
struct p11fault_call {
	int fn;		       /* enum p11fault_fn */
	bool has_session;      /* log the session handle */
	unsigned long session; /* CK_SESSION_HANDLE */
	struct timespec start;
	unsigned faults; /* P11FAULT_FAULT(cmd) for each rule that acted on this call */
};

#define P11FAULT_FAULT(cmd) (1u << (cmd))

/*
 * Called without any lock held when a newly loaded control file asks for a `reboot` or a
 * `remove`: it must close every session of the real module. Set once, before the first call
 * that can load a control file (p11fault.c does it in C_GetFunctionList).
 */
void p11fault_state_set_closer(void (*close_all_real_sessions)(void));

/* The steps of every call: begin; inject (true: fail with *rv, do not forward); end (log). */
void p11fault_call_begin(struct p11fault_call *c, int fn, bool has_session, unsigned long session);
bool p11fault_call_inject(struct p11fault_call *c, unsigned long *rv);
void p11fault_call_end(const struct p11fault_call *c, unsigned long rv);

/* The real C_Initialize succeeded (true) or C_Finalize did (false: all sessions forgotten).
 * Before initialisation a loaded reboot/remove has no sessions to close. */
void p11fault_state_initialized(bool initialized);

/* `remove` is active: C_GetSlotList(CK_TRUE) must list no token. */
bool p11fault_token_hidden(struct p11fault_call *c);

/* CKF_USER_PIN_* flags to OR into C_GetTokenInfo (pin-flags, pin-tries). */
unsigned long p11fault_token_flags(struct p11fault_call *c);

/* A user login must fail with CKR_PIN_LOCKED without reaching the token. */
bool p11fault_pin_refused(struct p11fault_call *c);

/* The token answered a user login with rv: run the pin-tries counter. */
void p11fault_pin_result(struct p11fault_call *c, unsigned long rv);

/*
 * Session tracking, always on, so a max-sessions rule counts sessions opened before it.
 * reserve: false when `slot` already has max-sessions sessions (the open must fail with
 * CKR_SESSION_COUNT); else a place is held under *ticket until commit says whether the open
 * worked. Concurrent opens therefore cannot overshoot the limit.
 */
bool p11fault_session_reserve(struct p11fault_call *c, unsigned long slot, unsigned long *ticket);
void p11fault_session_commit(unsigned long ticket, bool opened, unsigned long handle);
void p11fault_session_closed(unsigned long handle);
void p11fault_slot_closed(unsigned long slot);
void p11fault_all_sessions_closed(void);

/* flip-sign: true when this signature must be corrupted (uses up one count). */
bool p11fault_flip_take(struct p11fault_call *c);

#pragma GCC visibility pop

#endif
