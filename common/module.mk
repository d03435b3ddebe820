# common/: code every process links — the error space, logging, locked secrets, and the
# bounded buffer that all bytes from outside go through.
LIBS += common
common_SRCS := common/err.c common/log.c common/secret.c common/buf.c
UNIT_TESTS += common/test_common common/test_buf
