/*
 * Where the CLI finds its server and credentials: command-line flags, then P11CA_*
 * environment variables, then ~/.config/p11ca/client.ini ($XDG_CONFIG_HOME/p11ca/ when
 * set). Each source overrides the next, one setting at a time.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "rpc/cli/cli.h"

static const struct {
	const char *name, *env, *flag;
} keys[CLI_CONF_N] = {
	[CLI_CONF_SERVER] = {"server", "P11CA_SERVER", "--server"},
	[CLI_CONF_CERT] = {"cert", "P11CA_CERT", "--cert"},
	[CLI_CONF_KEY] = {"key", "P11CA_KEY", "--key"},
	[CLI_CONF_CACERT] = {"cacert", "P11CA_CACERT", "--cacert"},
};

const char *cli_conf_name(enum cli_conf_key k)
{
	return (unsigned)k < CLI_CONF_N ? keys[k].name : "?";
}

struct ini_state {
	struct cli_conf *conf;
	char dir[PATH_MAX]; /* the file's directory, for relative paths */
	char problem[256];
};

static int set_value(struct cli_conf *conf, enum cli_conf_key k, const char *v, const char *origin)
{
	char *copy = strdup(v);
	if (copy == NULL)
		return -1;
	free(conf->value[k]);
	conf->value[k] = copy;
	conf->origin[k] = origin;
	return 0;
}

static int on_setting(void *user, const char *section, const char *name, const char *value)
{
	struct ini_state *st = user;
	char path[PATH_MAX];

	if (section[0] != '\0') {
		snprintf(st->problem, sizeof(st->problem),
			 "section [%.64s] is not used: put the settings at the top", section);
		return 0;
	}
	for (int k = 0; k < CLI_CONF_N; k++) {
		if (strcmp(name, keys[k].name) != 0)
			continue;
		const char *v = value;
		/* Credentials beside the file can be named relative to it. */
		if (k != CLI_CONF_SERVER && value[0] != '/' && value[0] != '\0') {
			if (snprintf(path, sizeof(path), "%s/%s", st->dir, value) >=
			    (int)sizeof(path)) {
				snprintf(st->problem, sizeof(st->problem), "path too long");
				return 0;
			}
			v = path;
		}
		if (set_value(st->conf, (enum cli_conf_key)k, v, "client.ini") != 0) {
			snprintf(st->problem, sizeof(st->problem), "out of memory");
			return 0;
		}
		return 1;
	}
	snprintf(st->problem, sizeof(st->problem),
		 "unknown setting '%.64s'; use server, cert, key or cacert", name);
	return 0;
}

P11CA_MUST_CHECK static enum p11ca_err load_file(struct cli_conf *conf, struct p11ca_errmsg *em)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	struct ini_state st = {.conf = conf};

	if (xdg != NULL && xdg[0] == '/')
		snprintf(conf->file, sizeof(conf->file), "%s/p11ca/client.ini", xdg);
	else if (home != NULL && home[0] != '\0')
		snprintf(conf->file, sizeof(conf->file), "%s/.config/p11ca/client.ini", home);
	else
		return P11CA_OK; /* nowhere to look: flags and environment only */

	FILE *f = fopen(conf->file, "r");
	if (f == NULL) {
		if (errno == ENOENT)
			return P11CA_OK;
		return p11ca_fail(em, P11CA_E_CONFIG, "cannot read %s: %s", conf->file,
				  strerror(errno));
	}
	snprintf(st.dir, sizeof(st.dir), "%s", conf->file);
	char *slash = strrchr(st.dir, '/');
	if (slash != NULL)
		*slash = '\0';
	int rc = ini_parse_file(f, on_setting, &st);
	fclose(f);
	if (rc < 0)
		return p11ca_fail(em, P11CA_E_CONFIG, "cannot read %s", conf->file);
	if (rc > 0)
		return p11ca_fail(em, P11CA_E_CONFIG, "%s:%d: %s", conf->file, rc,
				  st.problem[0] != '\0' ? st.problem : "not a 'name = value' line");
	return P11CA_OK;
}

enum p11ca_err cli_conf_load(struct cli_conf *conf, const char *const flags[CLI_CONF_N],
			     struct p11ca_errmsg *em)
{
	P11CA_GUARD(load_file(conf, em));
	for (int k = 0; k < CLI_CONF_N; k++) {
		const char *env = getenv(keys[k].env);
		const char *v = flags != NULL && flags[k] != NULL ? flags[k]
				: env != NULL && env[0] != '\0'	  ? env
								  : NULL;
		const char *origin = flags != NULL && flags[k] != NULL ? keys[k].flag : keys[k].env;
		if (v != NULL && set_value(conf, (enum cli_conf_key)k, v, origin) != 0)
			return p11ca_fail(em, P11CA_E_NOMEM, "out of memory");
	}
	return P11CA_OK;
}

void cli_conf_free(struct cli_conf *conf)
{
	for (int k = 0; k < CLI_CONF_N; k++) {
		free(conf->value[k]);
		conf->value[k] = NULL;
		conf->origin[k] = NULL;
	}
}
