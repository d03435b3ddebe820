# tests/softhsm/signer/: the signer process's service (hsm/signer*.c) end to end over its
# channel, against a real SoftHSM2 token.
UNIT_TESTS += tests/softhsm/signer/test_signer
tests/softhsm/signer/test_signer_SRCS := tests/softhsm/fixture.c tests/softhsm/hsm/helpers.c \
                                         tests/softhsm/signer/tbs.c
