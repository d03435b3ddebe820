# common/: code every process links — the error space, logging, locked secrets.
LIBS += common
common_SRCS := common/err.c common/log.c common/secret.c
UNIT_TESTS += common/test_common
