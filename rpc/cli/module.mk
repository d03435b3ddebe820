# rpc/cli/: p11ca, the admin CLI (remote tool #1). It runs on an administrator's machine and
# talks to p11cad over the public RPC (rpc/client.c, which lives in the rpc library).
# Its own code stays out of the libraries: only the program and its tests link it.
CLI_SRCS := rpc/cli/main.c rpc/cli/args.c rpc/cli/config.c rpc/cli/values.c \
            rpc/cli/output.c rpc/cli/cmd_hsm.c rpc/cli/cmd_ca.c rpc/cli/cmd_cert.c \
            rpc/cli/cmd_crl.c rpc/cli/export.c rpc/cli/ext.c rpc/cli/cmd_ca_edit.c \
            rpc/cli/cmd_cert_records.c rpc/cli/cmd_profile.c
PROGRAMS += p11ca
p11ca_SRCS := rpc/cli/p11ca.c $(CLI_SRCS)
EXT_LIBS += -linih
UNIT_TESTS += rpc/cli/test_cli $(basename $(wildcard rpc/cli/test_cli_e2e.c))
rpc/cli/test_cli_SRCS := $(CLI_SRCS)
rpc/cli/test_cli_e2e_SRCS := $(CLI_SRCS) rpc/test_pki.c
