# tests/softhsm/p11fault/: libp11fault.so, a PKCS#11 module that wraps a real one
# (P11FAULT_MODULE) and injects faults on command (P11FAULT_CONTROL). docs/p11fault.md.
ifeq ($(CONFIG_P11FAULT),y)
SHLIBS += libp11fault
libp11fault_SRCS := tests/softhsm/p11fault/p11fault.c tests/softhsm/p11fault/state.c \
	tests/softhsm/p11fault/control.c
libp11fault_LIBS := -ldl -lpthread

UNIT_TESTS += tests/softhsm/p11fault/test_p11fault
tests/softhsm/p11fault/test_p11fault_SRCS := tests/softhsm/fixture.c \
	tests/softhsm/p11fault/control.c
TEST_SCRIPTS += tests/softhsm/p11fault/test_pkcs11_tool.sh
endif
