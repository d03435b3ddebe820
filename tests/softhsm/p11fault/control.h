/*
 * p11fault's control language: parsing a control file into rules, and the name tables
 * (PKCS#11 functions, CKR_ codes, commands) that the parser and the log share.
 *
 * The file is trusted test input, but a typo must never inject half a fault set: a file
 * with any error is refused whole, and the error names FILE:LINE. The grammar is in
 * docs/p11fault.md. Nothing here calls PKCS#11 or keeps state; p11fault.c owns the rules
 * once parsed (and counts down their `remaining` fields).
 *
 * Plain C types only (CK_RV is an unsigned long): this header must not pull in pkcs11.h.
 */
#ifndef P11FAULT_CONTROL_H
#define P11FAULT_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

#include "tests/softhsm/p11fault/functions.h"

/* Everything declared here is internal to libp11fault.so: the module exports only
 * C_GetFunctionList. */
#pragma GCC visibility push(hidden)

#define P11FAULT_MAX_RULES     64	   /* fail/delay/hang lines in one file */
#define P11FAULT_PATH_MAX      4096	   /* `log PATH` */
#define P11FAULT_LINE_MAX      1024	   /* longer lines are an error */
#define P11FAULT_CONTROL_MAX   (64 * 1024) /* larger control files are refused */
#define P11FAULT_MS_MAX	       86400000L   /* ms= and delay: at most a day */
#define P11FAULT_CALLS_MAX     1000000000L /* count= */
#define P11FAULT_PIN_TRIES_MAX 255
#define P11FAULT_SESSIONS_MAX  1000000

/* `*` as a function: every function except C_GetFunctionList. */
#define P11FAULT_FN_ANY (-1)
/* A count or a window that never runs out. */
#define P11FAULT_UNLIMITED (-1L)

/* The commands, which are also the fault kinds the log reports (`fault=remove`). */
enum p11fault_cmd {
	P11FAULT_CMD_FAIL,
	P11FAULT_CMD_DELAY,
	P11FAULT_CMD_HANG,
	P11FAULT_CMD_REBOOT,
	P11FAULT_CMD_REMOVE,
	P11FAULT_CMD_PIN_TRIES,
	P11FAULT_CMD_PIN_FLAGS,
	P11FAULT_CMD_MAX_SESSIONS,
	P11FAULT_CMD_FLIP_SIGN,
	P11FAULT_CMD_LOG,
	P11FAULT_CMD_COUNT
};

/* A per-function rule: fail, delay or hang. */
struct p11fault_rule {
	enum p11fault_cmd cmd; /* FAIL, DELAY or HANG */
	int fn;		       /* enum p11fault_fn, or P11FAULT_FN_ANY */
	unsigned long rv;      /* FAIL: the CK_RV to return */
	long remaining;	       /* FAIL: calls still to fail (count=N), or P11FAULT_UNLIMITED */
	long ms;	       /* FAIL, HANG: active this long after the load (ms=M), or
				* P11FAULT_UNLIMITED; DELAY: the delay */
};

/* One parsed control file. An all-zero struct (after p11fault_control_clear) has no rules. */
struct p11fault_control {
	struct p11fault_rule rules[P11FAULT_MAX_RULES]; /* in file order: first match wins */
	size_t n_rules;
	bool reboot;
	bool remove;
	long remove_ms;		    /* P11FAULT_UNLIMITED: until the file changes */
	unsigned long pin_tries;    /* 0: no PIN retry counter */
	unsigned long pin_flags;    /* CKF_USER_PIN_* bits forced into C_GetTokenInfo */
	unsigned long max_sessions; /* 0: no limit */
	bool flip_sign;
	long flip_remaining;		  /* P11FAULT_UNLIMITED: every signature */
	char log_path[P11FAULT_PATH_MAX]; /* "" when the file has no `log` line */
};

/* Empty *ctl: no rules. */
void p11fault_control_clear(struct p11fault_control *ctl);

/*
 * Parse `len` bytes of control-file text (NUL bytes are an error). `file` names the file in
 * messages. On success fills *ctl and returns 0. On the first error returns -1, leaves *ctl
 * empty (p11fault_control_clear), and writes "FILE:LINE: what is wrong" to err (always
 * NUL-terminated when err_size > 0).
 */
int p11fault_control_parse(const char *text, size_t len, const char *file,
			   struct p11fault_control *ctl, char *err, size_t err_size);

/* "C_Sign" for P11FAULT_FN_C_Sign; NULL for an index out of range. */
const char *p11fault_fn_name(int fn);

/* The index of a PKCS#11 2.40 function name ("C_Sign"), or -1 when it is not one. */
int p11fault_fn_lookup(const char *name);

/* "CKR_DEVICE_REMOVED" for 0x32; NULL for a code without a name in PKCS#11 2.40. */
const char *p11fault_rv_name(unsigned long rv);

/* A CKR_ name, a decimal number or a 0x-prefixed hex number. 0 on success, -1 otherwise. */
int p11fault_rv_parse(const char *text, unsigned long *rv);

/* "fail", "pin-tries", ...: the command's word in the language and in the log. */
const char *p11fault_cmd_name(enum p11fault_cmd cmd);

#pragma GCC visibility pop

#endif
