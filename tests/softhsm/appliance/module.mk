# tests/softhsm/appliance/: p11cad end to end on SoftHSM2 — the README demo, the Python
# client, refusals at the network edge, kill -9 during issuance, a full database; and CA
# and certificate management (issue 4): profiles and extensions, a three-level hierarchy
# and name constraints, CSR hygiene with the fault shim's call log, CA import, certificate
# operations, expiry notifications. Each script starts its own token and daemon under
# TMPDIR (lib.sh) and needs the programs of the build under test.
TEST_SCRIPTS += tests/softhsm/appliance/test_demo.sh \
                tests/softhsm/appliance/test_python_client.sh \
                tests/softhsm/appliance/test_refusals.sh \
                tests/softhsm/appliance/test_kill9.sh \
                tests/softhsm/appliance/test_storage_full.sh \
                tests/softhsm/appliance/test_profiles.sh \
                tests/softhsm/appliance/test_hierarchy.sh \
                tests/softhsm/appliance/test_csr_hygiene.sh \
                tests/softhsm/appliance/test_ca_import.sh \
                tests/softhsm/appliance/test_cert_ops.sh \
                tests/softhsm/appliance/test_notify.sh
