# appliance/x509/: X.509 assembly in the engine — names, SANs, CSR intake, TBS building for
# certificates and CRLs, and joining a TBS with the signer's signature.
LIBS += x509
x509_SRCS := appliance/x509/name.c appliance/x509/san.c appliance/x509/csr.c \
             appliance/x509/cert.c appliance/x509/crl.c appliance/x509/assemble.c \
             appliance/x509/pem.c appliance/x509/ext.c appliance/x509/policy.c \
             appliance/x509/subtree.c appliance/x509/constraints.c

UNIT_TESTS += appliance/x509/test_name
appliance/x509/test_name_SRCS := appliance/x509/test_util.c
UNIT_TESTS += appliance/x509/test_cert
appliance/x509/test_cert_SRCS := appliance/x509/test_util.c
UNIT_TESTS += appliance/x509/test_crl
appliance/x509/test_crl_SRCS := appliance/x509/test_util.c
UNIT_TESTS += appliance/x509/test_csr
appliance/x509/test_csr_SRCS := appliance/x509/test_util.c
UNIT_TESTS += appliance/x509/test_ext
appliance/x509/test_ext_SRCS := appliance/x509/test_util.c
UNIT_TESTS += appliance/x509/test_csr_rules
appliance/x509/test_csr_rules_SRCS := appliance/x509/test_util.c
UNIT_TESTS += appliance/x509/test_san
appliance/x509/test_san_SRCS := appliance/x509/test_util.c
UNIT_TESTS += appliance/x509/test_constraints
appliance/x509/test_constraints_SRCS := appliance/x509/test_util.c
# IDN → A-labels (IDNA2008 + UTS #46) in san.c.
EXT_LIBS += -lidn2
