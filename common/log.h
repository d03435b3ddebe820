/*
 * Logging through an explicit sink owned by each process's context (no global logger).
 *
 * Log lines carry labels, ids, serials, hashes and error codes — never PINs, keys,
 * passwords or whole requests. A NULL logger (or one with fn == NULL) writes to stderr,
 * which journald captures when p11cad runs under systemd.
 */
#ifndef P11CA_COMMON_LOG_H
#define P11CA_COMMON_LOG_H

#include <syslog.h> /* LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG */

struct p11ca_logger {
	/* Called with a complete line (no trailing newline); must be thread-safe. */
	void (*fn)(void *arg, int priority, const char *line);
	void *arg;
	int max_priority; /* lines with a larger (less urgent) priority are dropped; 0 = LOG_INFO */
};

void p11ca_logf(const struct p11ca_logger *lg, int priority, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
