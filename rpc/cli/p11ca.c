/*
 * p11ca — the admin CLI's process entry. Everything else is in p11ca_main (main.c), so
 * tests run the whole CLI in-process.
 */
#include <signal.h>
#include <stdio.h>

#include "rpc/cli/cli.h"

int main(int argc, char **argv)
{
	/* A server that vanishes mid-write is an error reported by the call, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	return p11ca_main(argc, argv, stdout, stderr);
}
