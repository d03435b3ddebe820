#!/usr/bin/env bash
# The README's main command: from a fresh Debian 12 machine, install what is missing, build,
# create a SoftHSM2 token, bootstrap and start p11cad, create a root and an intermediate CA
# with their keys in the HSM, issue a server certificate from an OpenSSL-made CSR, verify it
# with `openssl verify`, revoke it, fetch the CRL and watch `openssl verify -crl_check`
# reject the certificate, then stop the daemon cleanly.
#
# Everything it creates lives under build/demo (override with P11CA_DEMO_DIR). The test
# suite runs this very script (tests/softhsm/appliance/test_demo.sh) with
# P11CA_DEMO_PREBUILT=1 and OUT pointing at the build under test.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${P11CA_DEMO_PREBUILT:-0}" != 1 ]; then
	scripts/bootstrap.sh
	make -j"$(nproc 2>/dev/null || echo 2)" all >/dev/null
fi
# shellcheck source=../tests/softhsm/appliance/lib.sh
. tests/softhsm/appliance/lib.sh

demo=${P11CA_DEMO_DIR:-build/demo}
rm -rf "$demo"
trap '[ -n "${APP_PID:-}" ] && kill -TERM "$APP_PID" 2>/dev/null || true' EXIT

step "bootstrap: SoftHSM2 token, p11cad init (management CA in the HSM, TLS and admin credentials)"
appliance_setup "$demo"
cat "$APP/init.out"
"$OUT/bin/p11cad" --check-config --config "$APP_CONF"

step "start p11cad (ready once the signer is logged in and the database is open)"
appliance_start
p11ca status
p11ca hsm status

step "a root CA (P-384) and an intermediate CA (RSA-2048), keys generated in the HSM"
p11ca ca init demo-root "CN=p11ca Demo Root,O=p11ca demo" --key-type p384 --path-length 1
p11ca ca init demo-issuing "CN=p11ca Demo Issuing CA,O=p11ca demo" --parent demo-root \
	--key-type rsa2048
p11ca ca list --tree
p11ca ca export demo-root --out "$APP/root.pem"
p11ca ca export demo-issuing --out "$APP/issuing.pem"

step "issue a server certificate from an OpenSSL-made CSR"
make_csr server www.demo.example
p11ca --json cert sign --ca demo-issuing --csr "$APP/server.csr" --profile webserver \
	--san www.demo.example --san IP:192.0.2.10 --out "$APP/server.pem" >"$APP/sign.json"
serial=$(json cert.serial <"$APP/sign.json")
echo "issued serial $serial"
openssl x509 -in "$APP/server.pem" -noout -subject -issuer -serial -ext subjectAltName
[ "$(openssl x509 -in "$APP/server.pem" -noout -serial)" = "serial=$serial" ] ||
	fail "the CLI's serial and the certificate's differ"

step "openssl verify: server certificate -> intermediate -> root"
openssl verify -CAfile "$APP/root.pem" -untrusted "$APP/issuing.pem" "$APP/server.pem"

step "revoke it (keyCompromise) and fetch the intermediate's CRL"
p11ca cert revoke "$serial" --reason keyCompromise
p11ca crl get --ca demo-issuing --format pem --out "$APP/issuing.crl.pem"
p11ca crl get --ca demo-root --format pem --out "$APP/root.crl.pem"
openssl crl -in "$APP/issuing.crl.pem" -CAfile "$APP/issuing.pem" -noout -text |
	grep -E 'verify OK|Serial Number|CRL Reason|Key Compromise|CRL Number' || true
openssl crl -in "$APP/issuing.crl.pem" -CAfile "$APP/issuing.pem" -noout 2>&1 |
	grep -q 'verify OK' || fail "the CRL's signature does not verify"

step "openssl verify -crl_check now rejects the certificate"
if openssl verify -crl_check -CAfile "$APP/root.pem" -untrusted "$APP/issuing.pem" \
	-CRLfile "$APP/issuing.crl.pem" "$APP/server.pem" >"$APP/verify.out" 2>&1; then
	cat "$APP/verify.out"
	fail "a revoked certificate verified"
fi
cat "$APP/verify.out"
grep -q 'certificate revoked' "$APP/verify.out" || fail "rejected, but not as revoked"

step "the whole chain against both CRLs (-crl_check_all): the intermediate itself is fine"
cat "$APP/issuing.crl.pem" "$APP/root.crl.pem" >"$APP/crls.pem"
openssl verify -crl_check_all -CAfile "$APP/root.pem" -CRLfile "$APP/crls.pem" "$APP/issuing.pem"

step "stop p11cad (SIGTERM: in-flight requests finish, exit status 0)"
appliance_stop
APP_PID=
printf '\ndemo: root and intermediate CA in SoftHSM2, certificate issued, verified, revoked, and rejected by openssl verify -crl_check\n'
