# hsm/: the PKCS#11 core (runs only in the signer process).
LIBS += hsm
hsm_SRCS := hsm/alg.c hsm/ckr.c hsm/key.c hsm/module.c hsm/pin.c hsm/pubkey.c \
            hsm/sign.c hsm/token.c hsm/uri.c \
            hsm/algor.c hsm/signer.c hsm/signer_check.c hsm/signer_issuer.c \
            hsm/signer_client.c \
            $(OUT)/gen/hsm/signer.pb.c
PROTOS += hsm/signer.proto
UNIT_TESTS += hsm/test_pin hsm/test_alg hsm/test_algor

# The operator's tool for this layer (key ceremony, checks, test signatures).
PROGRAMS += p11ca-hsm
p11ca-hsm_SRCS := hsm/p11ca-hsm.c
