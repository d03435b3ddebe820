# tests/softhsm/hsm/: hsm/ against a real SoftHSM2 token (test_hsm_softhsm) and through the
# fault-injecting module libp11fault.so (test_hsm_faults). Both link every project library.
HSMTEST_SRCS := tests/softhsm/fixture.c tests/softhsm/hsm/helpers.c

UNIT_TESTS += tests/softhsm/hsm/test_hsm_softhsm
tests/softhsm/hsm/test_hsm_softhsm_SRCS := $(HSMTEST_SRCS)

ifeq ($(CONFIG_P11FAULT),y)
UNIT_TESTS += tests/softhsm/hsm/test_hsm_faults
tests/softhsm/hsm/test_hsm_faults_SRCS := $(HSMTEST_SRCS)
endif
