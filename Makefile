# p11ca — one non-recursive Makefile. Each folder declares what it builds in its module.mk
# (variables only); the rules are generated here, after every module.mk has been read, so
# the order in which folders are included never matters.
#
#   make                 build everything into build/ (build/san/ with SANITIZE=1)
#   make check           unit tests (cmocka) and SoftHSM2 integration tests
#   make check SANITIZE=1  the same under ASan + UBSan
#   make bench           benchmarks; results land in docs/BENCHMARKS.md
#   make defconfig | menuconfig | savedefconfig   build-time options (Kconfig)
#   make install DESTDIR=... PREFIX=/usr/local
#   V=1                  show the commands

V        ?= 0
SANITIZE ?= 0
PREFIX   ?= /usr/local
PYTHON   ?= /usr/bin/python3
CC       ?= cc

# OUT may be overridden (make OUT=build/mine) so parallel work never shares objects.
ifeq ($(SANITIZE),1)
OUT ?= build/san
CFLAGS ?= -O1 -g
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else
OUT ?= build
CFLAGS ?= -O2 -g
SAN_FLAGS :=
endif

ifeq ($(V),1)
Q :=
quiet = @:
else
Q := @
quiet = @printf '  %-6s %s\n' $(1) $(2)
endif

# Hardening is not a build option: these flags are always on.
HARDEN_CFLAGS  := -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIC -fstack-clash-protection
HARDEN_LDFLAGS := -Wl,-z,relro,-z,now -Wl,-z,noexecstack
WARN_CFLAGS    := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wvla -Wstrict-prototypes \
                  -Wmissing-prototypes -Wno-missing-field-initializers

KCONFIG_CONFIG ?= .config
export KCONFIG_CONFIG

ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN_CFLAGS) $(HARDEN_CFLAGS) $(SAN_FLAGS) \
             -I. -Ibuild -I$(OUT)/gen $(EXT_CFLAGS) -MMD -MP $(CFLAGS)
ALL_LDFLAGS = $(HARDEN_LDFLAGS) $(SAN_FLAGS) $(LDFLAGS)

EXT_CFLAGS := $(shell pkg-config --cflags p11-kit-1 libcrypto)
EXT_LIBS   := $(shell pkg-config --libs p11-kit-1 libcrypto) -lpthread
TEST_LIBS  := -lcmocka

# Filled in by the module.mk files.
LIBS       :=
PROGRAMS   :=
SHLIBS     :=
UNIT_TESTS :=
TEST_SCRIPTS :=
BENCHES    :=
GENERATED  :=
PROTOS     :=

all:

-include build/auto.conf
include $(sort $(wildcard */module.mk */*/module.mk))

objs = $(patsubst %.c,$(OUT)/obj/%.o,$(1))
PROJECT_LIBS := $(foreach l,$(LIBS),$(OUT)/lib/libp11ca-$(l).a)
LINK_LIBS = -Wl,--start-group $(PROJECT_LIBS) -Wl,--end-group $(EXT_LIBS)

define lib_rule
$(OUT)/lib/libp11ca-$(1).a: $(call objs,$($(1)_SRCS))
	$$(call quiet,AR,$$@)
	@mkdir -p $$(@D)
	$(Q)rm -f $$@ && $(AR) rcs $$@ $$^
endef

define program_rule
$(OUT)/bin/$(1): $(call objs,$($(1)_SRCS)) $(PROJECT_LIBS)
	$$(call quiet,LD,$$@)
	@mkdir -p $$(@D)
	$(Q)$(CC) $$(ALL_LDFLAGS) -pie -o $$@ $(call objs,$($(1)_SRCS)) $$(LINK_LIBS)
endef

define shlib_rule
$(OUT)/lib/$(1).so: $(call objs,$($(1)_SRCS))
	$$(call quiet,LD,$$@)
	@mkdir -p $$(@D)
	$(Q)$(CC) $$(ALL_LDFLAGS) -shared -Wl,-soname,$(1).so -o $$@ $$^ $($(1)_LIBS)
endef

# A unit test is one .c file plus optional $(name)_SRCS, linked with every project library.
define test_rule
$(OUT)/tests/$(1): $(call objs,$(1).c $($(1)_SRCS)) $(PROJECT_LIBS)
	$$(call quiet,LD,$$@)
	@mkdir -p $$(@D)
	$(Q)$(CC) $$(ALL_LDFLAGS) -pie -o $$@ $(call objs,$(1).c $($(1)_SRCS)) $$(LINK_LIBS) $$(TEST_LIBS)
endef

# A .proto (its .options file beside it) becomes nanopb C in $(OUT)/gen/<dir>/<name>.pb.{c,h};
# include it as "<dir>/<name>.pb.h" and list $(OUT)/gen/<dir>/<name>.pb.c among a library's
# sources. Static allocation only: every field must be bounded in the .options file, where
# names are fully qualified with the package (`p11ca.v1.Foo.bar max_size:64`) — nanopb 0.4.7
# silently ignores unqualified ones, so unmatched patterns and callback fields fail the build.
define proto_rule
$(OUT)/gen/$(basename $(1)).pb.c $(OUT)/gen/$(basename $(1)).pb.h &: $(1) $(wildcard $(basename $(1)).options)
	$$(call quiet,NANOPB,$(1))
	@mkdir -p $(OUT)/gen/$(dir $(1))
	$(Q)nanopb_generator.py -q --error-on-unmatched -I $(dir $(1)) -D $(OUT)/gen/$(dir $(1)) $(1)
	$(Q)if grep -n pb_callback_t $(OUT)/gen/$(basename $(1)).pb.h; then \
		echo "$(1): unbounded field (no max_size/max_count in the .options file); nanopb must stay static" >&2; \
		rm -f $(OUT)/gen/$(basename $(1)).pb.[ch]; exit 1; fi
endef
$(foreach p,$(PROTOS),$(eval $(call proto_rule,$(p))))
GENERATED += $(foreach p,$(PROTOS),$(OUT)/gen/$(basename $(p)).pb.h)
ifneq ($(PROTOS),)
EXT_LIBS += -lprotobuf-nanopb
endif

$(foreach l,$(LIBS),$(eval $(call lib_rule,$(l))))
$(foreach p,$(PROGRAMS) $(BENCHES),$(eval $(call program_rule,$(p))))
$(foreach s,$(SHLIBS),$(eval $(call shlib_rule,$(s))))
$(foreach t,$(UNIT_TESTS),$(eval $(call test_rule,$(t))))

ALL_TARGETS := $(PROJECT_LIBS) $(foreach p,$(PROGRAMS) $(BENCHES),$(OUT)/bin/$(p)) \
               $(foreach s,$(SHLIBS),$(OUT)/lib/$(s).so) $(foreach t,$(UNIT_TESTS),$(OUT)/tests/$(t))

all: $(ALL_TARGETS)

# Every object waits for the generated configuration and generated sources (protobuf).
$(OUT)/obj/%.o: %.c build/config.h | $(GENERATED)
	$(call quiet,CC,$<)
	@mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

# --- Kconfig (kconfiglib) -------------------------------------------------------------
$(KCONFIG_CONFIG):
	$(call quiet,CONF,$@)
	$(Q)$(PYTHON) -m defconfig --kconfig Kconfig configs/defconfig >/dev/null

build/config.h build/auto.conf: $(KCONFIG_CONFIG) Kconfig $(wildcard */Kconfig)
	$(call quiet,GEN,build/config.h)
	@mkdir -p build
	$(Q)$(PYTHON) -m olddefconfig Kconfig >/dev/null
	$(Q)$(PYTHON) -m genconfig --header-path build/config.h --config-out build/auto.conf Kconfig

defconfig:
	$(Q)$(PYTHON) -m defconfig --kconfig Kconfig configs/defconfig
menuconfig:
	$(Q)$(PYTHON) -m menuconfig Kconfig
# configs/defconfig keeps every symbol (not kconfiglib's minimal form) so it reads as a list
# of the shipped limits.
savedefconfig: $(KCONFIG_CONFIG)
	$(Q)$(PYTHON) -m olddefconfig Kconfig >/dev/null && cp $(KCONFIG_CONFIG) configs/defconfig

# --- tests and benchmarks ---------------------------------------------------------------
check: all
	$(Q)OUT=$(OUT) scripts/run-tests.sh $(foreach t,$(UNIT_TESTS),$(OUT)/tests/$(t)) $(TEST_SCRIPTS)

bench: all
	$(Q)OUT=$(OUT) scripts/bench.sh $(foreach b,$(BENCHES),$(OUT)/bin/$(b))

format:
	$(Q)clang-format -i $(shell git ls-files '*.c' '*.h')

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/p11ca
	$(if $(PROGRAMS),install -m 0755 $(foreach p,$(PROGRAMS),$(OUT)/bin/$(p)) $(DESTDIR)$(PREFIX)/bin/)
	$(if $(SHLIBS),install -m 0644 $(foreach s,$(SHLIBS),$(OUT)/lib/$(s).so) $(DESTDIR)$(PREFIX)/lib/p11ca/)
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0644 $(wildcard docs/*.1) $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 0644 $(wildcard docs/*.8) $(DESTDIR)$(PREFIX)/share/man/man8/

clean:
	rm -rf build

.PHONY: all check bench format install clean defconfig menuconfig savedefconfig
.DELETE_ON_ERROR:

-include $(shell find $(OUT)/obj -name '*.d' 2>/dev/null)
