# appliance/: p11cad — the parent (supervisor), configuration, `p11cad init`, and the
# control link to the engine. The engine process lives in appliance/engine/, X.509 assembly
# in appliance/x509/.
LIBS += appliance
appliance_SRCS := $(wildcard appliance/config.c appliance/parent.c appliance/init.c \
                             appliance/child.c appliance/listen.c) \
                  $(OUT)/gen/appliance/control.pb.c
PROTOS += appliance/control.proto
ifneq ($(wildcard appliance/p11cad.c),)
PROGRAMS += p11cad
p11cad_SRCS := appliance/p11cad.c
endif
