# rpc/: the public contract (p11ca.proto + .options), framing, TLS contexts, roles and the
# operation table. Runs in the network-facing rpc process and in clients.
LIBS += rpc
rpc_SRCS := rpc/frame.c rpc/tls.c rpc/role.c rpc/op.c rpc/channel.c rpc/server.c \
            rpc/server_conn.c rpc/server_inflight.c rpc/client.c \
            $(OUT)/gen/rpc/p11ca.pb.c $(OUT)/gen/rpc/forward.pb.c
PROTOS += rpc/p11ca.proto rpc/forward.proto
EXT_LIBS += $(shell pkg-config --libs libssl)
UNIT_TESTS += rpc/test_frame rpc/test_tls rpc/test_role
UNIT_TESTS += rpc/test_server rpc/test_channel
# The throwaway PKI of the TLS tests (here and in rpc/cli/): test-only, never in the library.
rpc/test_tls_SRCS := rpc/test_pki.c
rpc/test_server_SRCS := rpc/test_pki.c
# Not a test of its own: the C half of rpc/test_python_interop.sh. Run bare (as `make check`
# does) it checks that its sample requests survive an encode/decode round trip.
UNIT_TESTS += rpc/tools/frame_dump
TEST_SCRIPTS += rpc/test_python_interop.sh
