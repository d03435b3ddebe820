/*
 * status, hsm status, hsm activate. The PIN for `hsm activate` goes from the terminal
 * (no echo), a file or a pipe straight into locked memory (common/secret.h), from there
 * into the request, and both are wiped after the call. It is never printed.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <termios.h>
#include <unistd.h>

#include "common/secret.h"
#include "rpc/cli/cli.h"

static int run_status(struct cli *cli, const struct cli_args *a)
{
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_health_tag);
	char t[32];
	(void)a;
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	int rc = cli_call(cli, "cannot get the server's status", &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_HealthResponse *h = &rr->resp.result.health;
	if (cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_uint(&j, "api_version", h->api_version);
		cli_json_str(&j, "server_version", h->server_version);
		cli_json_time(&j, "server_time", h->server_time);
		cli_json_int(&j, "uptime_seconds", h->uptime_seconds);
		cli_json_bool(&j, "ready", h->ready);
		cli_json_uint(&j, "ca_count", h->ca_count);
		cli_json_end(&j);
		goto out;
	}
	cli_time_format(h->server_time, t, sizeof(t));
	fprintf(cli->out, "%-20s %s\n", "server version:", h->server_version);
	fprintf(cli->out, "%-20s %u\n", "api version:", (unsigned)h->api_version);
	fprintf(cli->out, "%-20s %s\n", "server time:", t);
	fprintf(cli->out, "%-20s %lld s\n", "uptime:", (long long)h->uptime_seconds);
	fprintf(cli->out, "%-20s %s\n",
		"ready:", h->ready ? "yes" : "no (see p11ca hsm status; p11ca hsm activate)");
	fprintf(cli->out, "%-20s %u\n", "CAs:", (unsigned)h->ca_count);
out:
	cli_rr_free(&rr);
	return rc;
}

static int run_hsm_status(struct cli *cli, const struct cli_args *a)
{
	struct cli_rr *rr = cli_rr_new(cli, p11ca_v1_Request_hsm_status_tag);
	(void)a;
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	int rc = cli_call(cli, "cannot get the HSM status", &rr->req, &rr->resp);
	if (rc != 0)
		goto out;
	const p11ca_v1_HsmStatusResponse *s = &rr->resp.result.hsm_status;
	if (cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		cli_json_arr(&j, "tokens");
		for (pb_size_t i = 0; i < s->tokens_count; i++)
			cli_json_token(&j, NULL, &s->tokens[i]);
		cli_json_arr_end(&j);
		cli_json_end(&j);
		goto out;
	}
	static const char *const head[] = {"NAME", "LABEL", "STATE", "SESSIONS", "MODEL", "SERIAL"};
	const char *cells[8 * 6];
	char sess[8][24];
	for (pb_size_t i = 0; i < s->tokens_count && i < 8; i++) {
		const p11ca_v1_TokenStatus *t = &s->tokens[i];
		snprintf(sess[i], sizeof(sess[i]), "%u/%u busy", (unsigned)t->sessions_busy,
			 (unsigned)t->sessions_open);
		const char *row[] = {t->name, t->label, cli_token_state_name(t->state),
				     sess[i], t->model, t->serial_number};
		memcpy(&cells[i * 6], row, sizeof(row));
	}
	cli_table(cli->out, head, 6, cells, s->tokens_count);
out:
	cli_rr_free(&rr);
	return rc;
}

/* Read one line (or, for a file, the whole file) into the secret; a final "\n" or
 * "\r\n" is dropped. Refuses an empty PIN, one over the contract's 256 bytes, and a file
 * with more than one line (which is more likely the wrong file than a PIN). */
static int read_pin_fd(struct cli *cli, int fd, bool whole, struct p11ca_secret *s, size_t max)
{
	uint8_t *buf = p11ca_secret_buffer(s);
	size_t cap = p11ca_secret_capacity(s), n = 0;
	bool eol = false;

	while (n < cap) {
		ssize_t r = read(fd, buf + n, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return cli_error(cli, CLI_EX_NOINPUT, "cannot read the PIN",
					 strerror(errno), NULL);
		if (r == 0)
			break;
		if (buf[n] == '\n') {
			eol = true;
			if (!whole)
				break;
			/* Anything but the end of the file after the newline? */
			uint8_t extra;
			ssize_t more = read(fd, &extra, 1);
			explicit_bzero(&extra, sizeof(extra));
			if (more != 0)
				return cli_error(cli, CLI_EX_DATAERR, "cannot use the PIN file",
						 "it has more than one line",
						 "put only the PIN in it");
			break;
		}
		n++;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	p11ca_secret_set_len(s, n);
	if ((n == cap && !eol) || n > max)
		return cli_error(cli, CLI_EX_DATAERR, "cannot use the PIN",
				 "longer than the 256 bytes the server accepts", NULL);
	if (n == 0)
		return cli_error(cli, CLI_EX_DATAERR, "cannot use the PIN", "it is empty", NULL);
	return 0;
}

static int read_pin(struct cli *cli, const char *token, const char *pin_file,
		    struct p11ca_secret *s, size_t max)
{
	if (pin_file != NULL) {
		int fd = open(pin_file, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			char what[300];
			snprintf(what, sizeof(what), "cannot open the PIN file %s", pin_file);
			return cli_error(cli, CLI_EX_NOINPUT, what, strerror(errno),
					 "check --pin-file");
		}
		int rc = read_pin_fd(cli, fd, true, s, max);
		close(fd);
		return rc;
	}
	if (!isatty(STDIN_FILENO))
		return read_pin_fd(cli, STDIN_FILENO, false, s, max);

	struct termios old, quiet;
	if (tcgetattr(STDIN_FILENO, &old) != 0)
		return cli_error(cli, CLI_EX_IOERR, "cannot read the terminal's settings",
				 strerror(errno), "use --pin-file");
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	quiet.c_lflag |= ICANON;
	fprintf(cli->err, "User PIN for token %s: ", token[0] ? token : "(the only one)");
	fflush(cli->err);
	/* No Ctrl-C, Ctrl-Z or SIGTERM while echo is off: the terminal must get it back. */
	sigset_t block, saved;
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGTSTP);
	sigaddset(&block, SIGQUIT);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &saved);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0) {
		sigprocmask(SIG_SETMASK, &saved, NULL);
		return cli_error(cli, CLI_EX_IOERR, "cannot turn off the terminal's echo",
				 strerror(errno), "use --pin-file");
	}
	int rc = read_pin_fd(cli, STDIN_FILENO, false, s, max);
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	sigprocmask(SIG_SETMASK, &saved, NULL);
	fputc('\n', cli->err);
	return rc;
}

static const struct cli_opt activate_opts[] = {
	{"token", "NAME", false,
	 "the token's name in p11cad's configuration (needed when it has several)"},
	{"pin-file", "FILE", false,
	 "read the PIN from FILE (one line) instead of the terminal or standard input"},
	{NULL, NULL, false, NULL},
};

static int run_hsm_activate(struct cli *cli, const struct cli_args *a)
{
	struct p11ca_secret *pin = NULL;
	struct p11ca_errmsg em = {0};
	struct cli_rr *rr = NULL;
	const char *token = cli_arg(cli->cmd, a, "token");
	int rc;

	/* The PIN passes through this process's heap and TLS buffers: no core file, no
	 * ptrace by other users' tools, whatever happens next. */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	(void)setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0});
	rr = cli_rr_new(cli, p11ca_v1_Request_hsm_activate_tag);
	if (rr == NULL)
		return CLI_EX_SOFTWARE;
	p11ca_v1_HsmActivateRequest *r = &rr->req.op.hsm_activate;
	rc = cli_copy(cli, r->token, sizeof(r->token), token ? token : "", "--token");
	if (rc != 0)
		goto out;
	if (p11ca_secret_new(sizeof(r->pin.bytes) + 2, &pin, &em) != P11CA_OK) {
		rc = cli_error(cli, CLI_EX_SOFTWARE, "cannot hold the PIN in locked memory",
			       p11ca_errmsg_text(&em), NULL);
		goto out;
	}
	rc = read_pin(cli, r->token, cli_arg(cli->cmd, a, "pin-file"), pin, sizeof(r->pin.bytes));
	if (rc != 0)
		goto out;
	memcpy(r->pin.bytes, p11ca_secret_data(pin), p11ca_secret_len(pin));
	r->pin.size = (pb_size_t)p11ca_secret_len(pin);
	p11ca_secret_free(&pin);
	rc = cli_call(cli, "cannot activate the token", &rr->req, &rr->resp);
	explicit_bzero(&rr->req, sizeof(rr->req));
	if (rc != 0)
		goto out;
	const p11ca_v1_HsmActivateResponse *res = &rr->resp.result.hsm_activate;
	if (cli->json) {
		struct cli_json j;
		cli_json_begin(&j, cli->out);
		if (res->has_token)
			cli_json_token(&j, "token", &res->token);
		else
			cli_json_str(&j, "token", NULL);
		cli_json_end(&j);
	} else {
		fprintf(cli->out, "token %s: %s\n", res->has_token ? res->token.name : "?",
			res->has_token ? cli_token_state_name(res->token.state) : "activated");
	}
out:
	p11ca_secret_free(&pin);
	cli_rr_free(&rr);
	return rc;
}

static const struct cli_opt no_opts[] = {{NULL, NULL, false, NULL}};

const struct cli_cmd cli_cmds_hsm[] = {
	{"status", NULL, run_status, "", 0, 0, "show whether p11cad is up and ready",
	 "Asks p11cad for its version, clock, uptime, number of CAs and whether it is ready\n"
	 "(every token logged in, the database open). Exits 0 whenever the server answered;\n"
	 "read 'ready' to tell whether it can sign.",
	 "p11ca status --json", no_opts},
	{"hsm", "status", run_hsm_status, "", 0, 0, "list the HSM tokens and their state",
	 "One line per token p11cad is configured with: its name, PKCS#11 label, state\n"
	 "(ready, needs-pin, pin-final-try, pin-locked, unavailable), busy/open sessions,\n"
	 "model and serial number.",
	 "p11ca hsm status", no_opts},
	{"hsm", "activate", run_hsm_activate, "", 0, 0, "log a token in with its user PIN",
	 "Sends the user PIN to p11cad, which logs the token in and keeps the PIN in its\n"
	 "signer process only. The PIN is read from the terminal without echo; when standard\n"
	 "input is not a terminal, its first line is the PIN; --pin-file reads it from a\n"
	 "file instead. A wrong PIN is not retried by the server; when the token reports its\n"
	 "final try, the server refuses to attempt a login at all. Needs the admin role.",
	 "p11ca hsm activate --token ca1 --pin-file /run/secrets/ca1.pin", activate_opts},
	{NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};
