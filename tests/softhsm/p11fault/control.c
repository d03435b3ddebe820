/*
 * The control-language parser and the name tables it shares with the log.
 *
 * One line is one command: words separated by blanks, `#` starts a comment. Each command
 * has a parser in the table `cmds`; a parser either fills its part of the control struct
 * or reports the error, and the first error refuses the whole file.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/softhsm/p11fault/control.h"
#include <p11-kit/pkcs11.h> /* last: it #defines short words such as `value` and `count` */

#define MAX_WORDS 8 /* the longest command, `fail FUNC RV count=N ms=M`, has 5 */

static const char *const fn_names[P11FAULT_FN_COUNT] = {
#define FN_NAME(name, ...) #name,
	P11FAULT_FUNCTIONS(FN_NAME)
#undef FN_NAME
};

/* Every CKR_ code of PKCS#11 2.40: the language accepts these names and the log prints them. */
#define RV(name)                                                                                   \
	{                                                                                          \
		name, #name                                                                        \
	}
static const struct rv_name {
	unsigned long rv;
	const char *name;
} rv_names[] = {
	RV(CKR_OK),
	RV(CKR_CANCEL),
	RV(CKR_HOST_MEMORY),
	RV(CKR_SLOT_ID_INVALID),
	RV(CKR_GENERAL_ERROR),
	RV(CKR_FUNCTION_FAILED),
	RV(CKR_ARGUMENTS_BAD),
	RV(CKR_NO_EVENT),
	RV(CKR_NEED_TO_CREATE_THREADS),
	RV(CKR_CANT_LOCK),
	RV(CKR_ATTRIBUTE_READ_ONLY),
	RV(CKR_ATTRIBUTE_SENSITIVE),
	RV(CKR_ATTRIBUTE_TYPE_INVALID),
	RV(CKR_ATTRIBUTE_VALUE_INVALID),
	RV(CKR_ACTION_PROHIBITED),
	RV(CKR_DATA_INVALID),
	RV(CKR_DATA_LEN_RANGE),
	RV(CKR_DEVICE_ERROR),
	RV(CKR_DEVICE_MEMORY),
	RV(CKR_DEVICE_REMOVED),
	RV(CKR_ENCRYPTED_DATA_INVALID),
	RV(CKR_ENCRYPTED_DATA_LEN_RANGE),
	RV(CKR_FUNCTION_CANCELED),
	RV(CKR_FUNCTION_NOT_PARALLEL),
	RV(CKR_FUNCTION_NOT_SUPPORTED),
	RV(CKR_KEY_HANDLE_INVALID),
	RV(CKR_KEY_SIZE_RANGE),
	RV(CKR_KEY_TYPE_INCONSISTENT),
	RV(CKR_KEY_NOT_NEEDED),
	RV(CKR_KEY_CHANGED),
	RV(CKR_KEY_NEEDED),
	RV(CKR_KEY_INDIGESTIBLE),
	RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
	RV(CKR_KEY_NOT_WRAPPABLE),
	RV(CKR_KEY_UNEXTRACTABLE),
	RV(CKR_MECHANISM_INVALID),
	RV(CKR_MECHANISM_PARAM_INVALID),
	RV(CKR_OBJECT_HANDLE_INVALID),
	RV(CKR_OPERATION_ACTIVE),
	RV(CKR_OPERATION_NOT_INITIALIZED),
	RV(CKR_PIN_INCORRECT),
	RV(CKR_PIN_INVALID),
	RV(CKR_PIN_LEN_RANGE),
	RV(CKR_PIN_EXPIRED),
	RV(CKR_PIN_LOCKED),
	RV(CKR_SESSION_CLOSED),
	RV(CKR_SESSION_COUNT),
	RV(CKR_SESSION_HANDLE_INVALID),
	RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
	RV(CKR_SESSION_READ_ONLY),
	RV(CKR_SESSION_EXISTS),
	RV(CKR_SESSION_READ_ONLY_EXISTS),
	RV(CKR_SESSION_READ_WRITE_SO_EXISTS),
	RV(CKR_SIGNATURE_INVALID),
	RV(CKR_SIGNATURE_LEN_RANGE),
	RV(CKR_TEMPLATE_INCOMPLETE),
	RV(CKR_TEMPLATE_INCONSISTENT),
	RV(CKR_TOKEN_NOT_PRESENT),
	RV(CKR_TOKEN_NOT_RECOGNIZED),
	RV(CKR_TOKEN_WRITE_PROTECTED),
	RV(CKR_UNWRAPPING_KEY_SIZE_RANGE),
	RV(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
	RV(CKR_USER_ALREADY_LOGGED_IN),
	RV(CKR_USER_NOT_LOGGED_IN),
	RV(CKR_USER_PIN_NOT_INITIALIZED),
	RV(CKR_USER_TYPE_INVALID),
	RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
	RV(CKR_USER_TOO_MANY_TYPES),
	RV(CKR_WRAPPED_KEY_INVALID),
	RV(CKR_WRAPPED_KEY_LEN_RANGE),
	RV(CKR_WRAPPING_KEY_HANDLE_INVALID),
	RV(CKR_WRAPPING_KEY_SIZE_RANGE),
	RV(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
	RV(CKR_RANDOM_SEED_NOT_SUPPORTED),
	RV(CKR_RANDOM_NO_RNG),
	RV(CKR_DOMAIN_PARAMS_INVALID),
	RV(CKR_CURVE_NOT_SUPPORTED),
	RV(CKR_BUFFER_TOO_SMALL),
	RV(CKR_SAVED_STATE_INVALID),
	RV(CKR_INFORMATION_SENSITIVE),
	RV(CKR_STATE_UNSAVEABLE),
	RV(CKR_CRYPTOKI_NOT_INITIALIZED),
	RV(CKR_CRYPTOKI_ALREADY_INITIALIZED),
	RV(CKR_MUTEX_BAD),
	RV(CKR_MUTEX_NOT_LOCKED),
	RV(CKR_NEW_PIN_MODE),
	RV(CKR_NEXT_OTP),
	RV(CKR_EXCEEDED_MAX_ITERATIONS),
	RV(CKR_FIPS_SELF_TEST_FAILED),
	RV(CKR_LIBRARY_LOAD_FAILED),
	RV(CKR_PIN_TOO_WEAK),
	RV(CKR_PUBLIC_KEY_INVALID),
	RV(CKR_FUNCTION_REJECTED),
	RV(CKR_VENDOR_DEFINED),
};
#undef RV

/* `pin-flags` words and the token flags they force. */
static const struct pin_flag_name {
	const char *name;
	unsigned long flag;
} pin_flag_names[] = {
	{"count_low", CKF_USER_PIN_COUNT_LOW},
	{"final_try", CKF_USER_PIN_FINAL_TRY},
	{"locked", CKF_USER_PIN_LOCKED},
};

struct parse_ctx {
	const char *file;
	unsigned long line;
	char *err;
	size_t err_size;
	struct p11fault_control *ctl;
};

typedef int (*cmd_parser)(struct parse_ctx *px, int argc, char **argv);

static int parse_fail(struct parse_ctx *px, int argc, char **argv);
static int parse_delay(struct parse_ctx *px, int argc, char **argv);
static int parse_hang(struct parse_ctx *px, int argc, char **argv);
static int parse_reboot(struct parse_ctx *px, int argc, char **argv);
static int parse_remove(struct parse_ctx *px, int argc, char **argv);
static int parse_pin_tries(struct parse_ctx *px, int argc, char **argv);
static int parse_pin_flags(struct parse_ctx *px, int argc, char **argv);
static int parse_max_sessions(struct parse_ctx *px, int argc, char **argv);
static int parse_flip_sign(struct parse_ctx *px, int argc, char **argv);
static int parse_log(struct parse_ctx *px, int argc, char **argv);

/* The language: one entry per command. `once`: a second line of it is an error, since which
 * of two `pin-tries` lines would win is a question nobody should have to answer. */
static const struct cmd_def {
	const char *name;
	bool once;
	cmd_parser parse;
} cmds[P11FAULT_CMD_COUNT] = {
	[P11FAULT_CMD_FAIL] = {"fail", false, parse_fail},
	[P11FAULT_CMD_DELAY] = {"delay", false, parse_delay},
	[P11FAULT_CMD_HANG] = {"hang", false, parse_hang},
	[P11FAULT_CMD_REBOOT] = {"reboot", true, parse_reboot},
	[P11FAULT_CMD_REMOVE] = {"remove", true, parse_remove},
	[P11FAULT_CMD_PIN_TRIES] = {"pin-tries", true, parse_pin_tries},
	[P11FAULT_CMD_PIN_FLAGS] = {"pin-flags", true, parse_pin_flags},
	[P11FAULT_CMD_MAX_SESSIONS] = {"max-sessions", true, parse_max_sessions},
	[P11FAULT_CMD_FLIP_SIGN] = {"flip-sign", true, parse_flip_sign},
	[P11FAULT_CMD_LOG] = {"log", true, parse_log},
};

const char *p11fault_fn_name(int fn)
{
	if (fn < 0 || fn >= P11FAULT_FN_COUNT)
		return NULL;
	return fn_names[fn];
}

int p11fault_fn_lookup(const char *name)
{
	for (int i = 0; i < P11FAULT_FN_COUNT; i++)
		if (strcmp(fn_names[i], name) == 0)
			return i;
	return -1;
}

const char *p11fault_rv_name(unsigned long rv)
{
	for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
		if (rv_names[i].rv == rv)
			return rv_names[i].name;
	return NULL;
}

const char *p11fault_cmd_name(enum p11fault_cmd cmd)
{
	if ((unsigned)cmd >= P11FAULT_CMD_COUNT)
		return "?";
	return cmds[cmd].name;
}

/* Digits only (no sign, no blanks: strtoul alone would accept " -1"). */
static int parse_digits(const char *text, int base, unsigned long *out)
{
	const char *digits = base == 16 ? "0123456789abcdefABCDEF" : "0123456789";
	char *end;

	if (text[0] == '\0' || strspn(text, digits) != strlen(text))
		return -1;
	errno = 0;
	*out = strtoul(text, &end, base);
	return errno == 0 && *end == '\0' ? 0 : -1;
}

int p11fault_rv_parse(const char *text, unsigned long *rv)
{
	if (strncmp(text, "CKR_", 4) == 0) {
		for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++) {
			if (strcmp(rv_names[i].name, text) == 0) {
				*rv = rv_names[i].rv;
				return 0;
			}
		}
		return -1;
	}
	if (text[0] == '0' && (text[1] == 'x' || text[1] == 'X'))
		return parse_digits(text + 2, 16, rv);
	return parse_digits(text, 10, rv);
}

void p11fault_control_clear(struct p11fault_control *ctl)
{
	memset(ctl, 0, sizeof(*ctl));
	ctl->remove_ms = P11FAULT_UNLIMITED;
	ctl->flip_remaining = P11FAULT_UNLIMITED;
}

__attribute__((format(printf, 2, 3))) static int perr(struct parse_ctx *px, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (px->err_size == 0)
		return -1;
	n = snprintf(px->err, px->err_size, "%s:%lu: ", px->file, px->line);
	if (n >= 0 && (size_t)n < px->err_size) {
		va_start(ap, fmt);
		vsnprintf(px->err + n, px->err_size - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int parse_number(struct parse_ctx *px, const char *what, const char *text, long min,
			long max, long *out)
{
	unsigned long v;

	if (parse_digits(text, 10, &v) != 0 || v < (unsigned long)min || v > (unsigned long)max)
		return perr(px, "%s must be a decimal number from %ld to %ld, not '%s'", what, min,
			    max, text);
	*out = (long)v;
	return 0;
}

static int parse_function(struct parse_ctx *px, const char *text, int *fn)
{
	if (strcmp(text, "*") == 0) {
		*fn = P11FAULT_FN_ANY;
		return 0;
	}
	*fn = p11fault_fn_lookup(text);
	if (*fn < 0)
		return perr(px, "'%s' is not a PKCS#11 2.40 function name (or '*')", text);
	return 0;
}

/* The optional `count=N` and `ms=M` words from argv[first] on; `want_*` NULL: not allowed. */
static int parse_options(struct parse_ctx *px, int argc, char **argv, int first, long *want_calls,
			 long *want_ms)
{
	for (int i = first; i < argc; i++) {
		const char *word = argv[i];
		long *slot = NULL;
		const char *what = NULL;

		if (want_calls && strncmp(word, "count=", 6) == 0) {
			slot = want_calls;
			what = "count=";
		} else if (want_ms && strncmp(word, "ms=", 3) == 0) {
			slot = want_ms;
			what = "ms=";
		} else {
			return perr(px, "unexpected '%s' after %s", word, argv[0]);
		}
		if (*slot != P11FAULT_UNLIMITED)
			return perr(px, "%s given twice", what);
		if (parse_number(px, what, word + strlen(what), 1,
				 slot == want_ms ? P11FAULT_MS_MAX : P11FAULT_CALLS_MAX, slot) != 0)
			return -1;
	}
	return 0;
}

/* The command takes from `min` to `max` words after its name. */
static int need_args(struct parse_ctx *px, int argc, int min, int max, const char *usage)
{
	if (argc - 1 < min || argc - 1 > max)
		return perr(px, "usage: %s", usage);
	return 0;
}

static struct p11fault_rule *new_rule(struct parse_ctx *px, enum p11fault_cmd cmd)
{
	struct p11fault_rule *r;

	if (px->ctl->n_rules == P11FAULT_MAX_RULES) {
		perr(px, "more than %d fail/delay/hang rules", P11FAULT_MAX_RULES);
		return NULL;
	}
	r = &px->ctl->rules[px->ctl->n_rules++];
	r->cmd = cmd;
	r->remaining = P11FAULT_UNLIMITED;
	r->ms = P11FAULT_UNLIMITED;
	return r;
}

static int parse_fail(struct parse_ctx *px, int argc, char **argv)
{
	struct p11fault_rule *r;

	if (need_args(px, argc, 2, 4, "fail FUNC RV [count=N] [ms=M]") != 0)
		return -1;
	if (!(r = new_rule(px, P11FAULT_CMD_FAIL)) || parse_function(px, argv[1], &r->fn) != 0)
		return -1;
	if (p11fault_rv_parse(argv[2], &r->rv) != 0)
		return perr(px, "'%s' is not a CKR_ name or a number", argv[2]);
	return parse_options(px, argc, argv, 3, &r->remaining, &r->ms);
}

static int parse_delay(struct parse_ctx *px, int argc, char **argv)
{
	struct p11fault_rule *r;

	if (need_args(px, argc, 2, 2, "delay FUNC MS") != 0)
		return -1;
	if (!(r = new_rule(px, P11FAULT_CMD_DELAY)) || parse_function(px, argv[1], &r->fn) != 0)
		return -1;
	return parse_number(px, "the delay", argv[2], 0, P11FAULT_MS_MAX, &r->ms);
}

static int parse_hang(struct parse_ctx *px, int argc, char **argv)
{
	struct p11fault_rule *r;

	if (need_args(px, argc, 1, 2, "hang FUNC [ms=M]") != 0)
		return -1;
	if (!(r = new_rule(px, P11FAULT_CMD_HANG)) || parse_function(px, argv[1], &r->fn) != 0)
		return -1;
	return parse_options(px, argc, argv, 2, NULL, &r->ms);
}

static int parse_reboot(struct parse_ctx *px, int argc, char **argv)
{
	(void)argv;
	if (need_args(px, argc, 0, 0, "reboot") != 0)
		return -1;
	px->ctl->reboot = true;
	return 0;
}

static int parse_remove(struct parse_ctx *px, int argc, char **argv)
{
	if (need_args(px, argc, 0, 1, "remove [ms=M]") != 0)
		return -1;
	px->ctl->remove = true;
	return parse_options(px, argc, argv, 1, NULL, &px->ctl->remove_ms);
}

static int parse_pin_tries(struct parse_ctx *px, int argc, char **argv)
{
	long n = 0;

	if (need_args(px, argc, 1, 1, "pin-tries N") != 0 ||
	    parse_number(px, "pin-tries", argv[1], 1, P11FAULT_PIN_TRIES_MAX, &n) != 0)
		return -1;
	px->ctl->pin_tries = (unsigned long)n;
	return 0;
}

static int parse_pin_flags(struct parse_ctx *px, int argc, char **argv)
{
	char *save = NULL;

	if (need_args(px, argc, 1, 1, "pin-flags FLAG[,FLAG...]") != 0)
		return -1;
	/* strtok_r would skip empty items; ",final_try" is a typo worth reporting. */
	if (argv[1][0] == ',' || strstr(argv[1], ",,") || argv[1][strlen(argv[1]) - 1] == ',')
		return perr(px, "empty flag in '%s'", argv[1]);
	for (char *word = strtok_r(argv[1], ",", &save); word; word = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; i < sizeof(pin_flag_names) / sizeof(pin_flag_names[0]); i++)
			if (strcmp(word, pin_flag_names[i].name) == 0)
				break;
		if (i == sizeof(pin_flag_names) / sizeof(pin_flag_names[0]))
			return perr(px, "unknown PIN flag '%s' (count_low, final_try, locked)",
				    word);
		px->ctl->pin_flags |= pin_flag_names[i].flag;
	}
	return 0;
}

static int parse_max_sessions(struct parse_ctx *px, int argc, char **argv)
{
	long n = 0;

	if (need_args(px, argc, 1, 1, "max-sessions N") != 0 ||
	    parse_number(px, "max-sessions", argv[1], 1, P11FAULT_SESSIONS_MAX, &n) != 0)
		return -1;
	px->ctl->max_sessions = (unsigned long)n;
	return 0;
}

static int parse_flip_sign(struct parse_ctx *px, int argc, char **argv)
{
	if (need_args(px, argc, 0, 1, "flip-sign [count=N]") != 0)
		return -1;
	px->ctl->flip_sign = true;
	return parse_options(px, argc, argv, 1, &px->ctl->flip_remaining, NULL);
}

static int parse_log(struct parse_ctx *px, int argc, char **argv)
{
	if (need_args(px, argc, 1, 1, "log PATH (no blanks in PATH)") != 0)
		return -1;
	if (strlen(argv[1]) >= sizeof(px->ctl->log_path))
		return perr(px, "log path longer than %zu bytes", sizeof(px->ctl->log_path) - 1);
	strcpy(px->ctl->log_path, argv[1]);
	return 0;
}

/* Split `line` in place into words; a word starting with '#' ends the line. */
static int split_words(struct parse_ctx *px, char *line, char **argv, int *argc)
{
	static const char blanks[] = " \t\r\v\f";
	char *save = NULL;

	*argc = 0;
	for (char *w = strtok_r(line, blanks, &save); w; w = strtok_r(NULL, blanks, &save)) {
		if (w[0] == '#')
			break;
		if (*argc == MAX_WORDS)
			return perr(px, "too many words");
		argv[(*argc)++] = w;
	}
	return 0;
}

static int parse_line(struct parse_ctx *px, char *line, bool seen[P11FAULT_CMD_COUNT])
{
	char *argv[MAX_WORDS];
	int argc;

	if (split_words(px, line, argv, &argc) != 0)
		return -1;
	if (argc == 0)
		return 0;
	for (int c = 0; c < P11FAULT_CMD_COUNT; c++) {
		if (strcmp(argv[0], cmds[c].name) != 0)
			continue;
		if (cmds[c].once && seen[c])
			return perr(px, "'%s' given twice", cmds[c].name);
		seen[c] = true;
		return cmds[c].parse(px, argc, argv);
	}
	return perr(px, "unknown command '%s'", argv[0]);
}

int p11fault_control_parse(const char *text, size_t len, const char *file,
			   struct p11fault_control *ctl, char *err, size_t err_size)
{
	struct parse_ctx px = {.file = file, .err = err, .err_size = err_size, .ctl = ctl};
	bool seen[P11FAULT_CMD_COUNT] = {false};
	char line[P11FAULT_LINE_MAX + 1];
	size_t pos = 0;

	p11fault_control_clear(ctl);
	if (err_size > 0)
		err[0] = '\0';
	if (len > 0 && memchr(text, '\0', len))
		return perr(&px, "NUL byte in the file");
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;

		px.line++;
		if (n > P11FAULT_LINE_MAX) {
			perr(&px, "line longer than %d bytes", P11FAULT_LINE_MAX);
			goto fail;
		}
		memcpy(line, text + pos, n);
		line[n] = '\0';
		if (parse_line(&px, line, seen) != 0)
			goto fail;
		pos += n + 1;
	}
	return 0;
fail:
	p11fault_control_clear(ctl);
	return -1;
}
