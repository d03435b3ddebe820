# tests/softhsm/: SoftHSM2 integration tests and the tools they need. The top Makefile only
# reads */module.mk and */*/module.mk, so each subfolder's module.mk is pulled in from here.
include $(sort $(wildcard tests/softhsm/*/module.mk))
