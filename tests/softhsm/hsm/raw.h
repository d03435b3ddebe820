/*
 * Raw PKCS#11 access for the hsm/ SoftHSM2 suites: the tests look at the token the way
 * another application in the same process would, through the very module instance hsm/
 * loaded (dlopen with RTLD_NOLOAD, so a test can never talk to a second copy by mistake).
 *
 * Include this header last: p11-kit's pkcs11.h #defines short common words.
 */
#ifndef P11CA_TESTS_SOFTHSM_HSM_RAW_H
#define P11CA_TESTS_SOFTHSM_HSM_RAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

/* The function list of the already loaded module at `path`; NULL (with a message) when the
 * module is not loaded in this process. */
CK_FUNCTION_LIST *t_raw_module(const char *path);

/* The slot holding the initialised token labelled `label`. 0 or -1. */
int t_raw_slot(CK_FUNCTION_LIST *fn, const char *label, CK_SLOT_ID *slot);

/* A new R/W session on `label`'s token; 0 or -1. Close it with fn->C_CloseSession. */
int t_raw_session(CK_FUNCTION_LIST *fn, const char *label, CK_SESSION_HANDLE *out);

/* How many objects (of class `cls`, or all when cls is (CK_ULONG)-1) with label `label`
 * (NULL: any) are visible in session s; -1 on failure. */
long t_raw_count(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label);

/* The attributes the tests check on a generated private key. */
struct t_priv_attrs {
	bool sensitive, extractable, private_, always_sensitive, never_extractable, sign, decrypt,
		token;
	uint8_t id[64];
	size_t id_len;
	char label[65];
};

/* Read them for the private key with this id. 0, or -1 when not exactly one matches. */
int t_raw_priv_attrs(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s, const uint8_t *id, size_t id_len,
		     struct t_priv_attrs *out);

#endif
