#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>

static const char *priority_name(int priority)
{
	switch (priority) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT:
	case LOG_ERR:
		return "error";
	case LOG_WARNING:
		return "warning";
	case LOG_NOTICE:
		return "notice";
	case LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

void p11ca_logf(const struct p11ca_logger *lg, int priority, const char *fmt, ...)
{
	int max = (lg != NULL && lg->max_priority != 0) ? lg->max_priority : LOG_INFO;
	if (priority > max)
		return;

	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);

	if (lg != NULL && lg->fn != NULL) {
		lg->fn(lg->arg, priority, line);
		return;
	}
	/* "<N>" is the sd-daemon priority prefix journald understands on stderr. One
	 * fprintf per line keeps concurrent lines from interleaving. */
	fprintf(stderr, "<%d>p11ca %s: %s\n", priority, priority_name(priority), line);
}
