# appliance/: p11cad — the parent (supervisor), configuration, `p11cad init`, and the
# control link to the engine. The engine process lives in appliance/engine/, X.509 assembly
# in appliance/x509/.
LIBS += appliance
appliance_SRCS := appliance/config.c appliance/config_write.c appliance/profile.c \
                  appliance/listen.c appliance/supervise.c appliance/child.c \
                  appliance/parent.c appliance/init.c \
                  $(OUT)/gen/appliance/control.pb.c
PROTOS += appliance/control.proto
EXT_LIBS += -linih -lsystemd
UNIT_TESTS += appliance/test_config appliance/test_listen appliance/test_supervise
# p11cad's command line on a SoftHSM2 token: config errors, init twice, ordered stop.
TEST_SCRIPTS += appliance/test_p11cad.sh

PROGRAMS += p11cad
p11cad_SRCS := appliance/p11cad.c
