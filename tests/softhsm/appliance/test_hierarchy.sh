#!/usr/bin/env bash
# A three-level hierarchy (root with path length 1 -> intermediate -> leaf) verifies with
# `openssl verify` and GnuTLS `certtool --verify-chain`; a fourth level is refused; an
# intermediate is clamped to its parent's notAfter and a leaf that would outlive its CA is
# refused naming the latest date. Name constraints: p11ca refuses a name outside them, and
# the same certificate mis-issued with the CA's own HSM key (through libp11's pkcs11
# engine, outside p11ca) is rejected by `openssl verify`.
set -euo pipefail
cd "$(dirname "$0")/../../.."
. tests/softhsm/appliance/lib.sh
trap '[ -n "${APP_PID:-}" ] && kill -KILL -- "-$APP_PID" 2>/dev/null || true' EXIT

appliance_setup
appliance_start

# not_after CERT: notAfter in seconds since the epoch.
not_after() { date -d "$(openssl x509 -in "$1" -noout -enddate | sed 's/notAfter=//')" +%s; }

step "root (path length 1) -> intermediate -> leaf"
p11ca ca init h-root "CN=Hierarchy Root,O=p11ca tests" --key-type p256 --path-length 1 \
	--expires 3650 >/dev/null
p11ca ca init h-inter "CN=Hierarchy Intermediate,O=p11ca tests" --parent h-root \
	--key-type p256 --expires 1000 >/dev/null
p11ca ca export h-root --out "$APP/root.pem"
p11ca ca export h-inter --out "$APP/inter.pem"
make_csr leaf leaf.example.test
p11ca cert sign --ca h-inter --csr "$APP/leaf.csr" --san leaf.example.test \
	--out "$APP/leaf.pem" >/dev/null
expect_ext "$APP/root.pem" basicConstraints critical "CA:TRUE, pathlen:1"
expect_ext "$APP/inter.pem" basicConstraints critical "CA:TRUE, pathlen:0"
case $(ext "$APP/inter.pem" keyUsage) in
"critical: "*"Certificate Sign, CRL Sign"*) ;;
*) fail "the intermediate's keyUsage is not critical keyCertSign, cRLSign: $(ext "$APP/inter.pem" keyUsage)" ;;
esac
openssl verify -CAfile "$APP/root.pem" -untrusted "$APP/inter.pem" "$APP/leaf.pem" ||
	fail "openssl verify rejects the three-level chain"
cat "$APP/leaf.pem" "$APP/inter.pem" "$APP/root.pem" >"$APP/chain.pem"
certtool --verify-chain --infile "$APP/chain.pem" >"$APP/certtool.out" 2>&1 ||
	{ cat "$APP/certtool.out"; fail "certtool --verify-chain rejects the chain"; }
grep -i 'Chain verification output' "$APP/certtool.out"
grep -q 'Chain verification output: Verified' "$APP/certtool.out" ||
	fail "certtool did not say the chain verified"
certtool --verify --load-ca-certificate "$APP/root.pem" \
	--infile <(cat "$APP/leaf.pem" "$APP/inter.pem") >"$APP/certtool2.out" 2>&1 ||
	{ cat "$APP/certtool2.out"; fail "certtool --verify with the root as trust anchor fails"; }

step "a fourth level is refused: the intermediate's path length is exhausted"
expect_fail "path length" p11ca ca init h-fourth "CN=Fourth Level" --parent h-inter --key-type p256
expect_fail "path length" p11ca ca init h-inter-deep "CN=Too Deep" --parent h-root \
	--path-length 1 --key-type p256
if p11ca ca view h-fourth >/dev/null 2>&1; then fail "the refused CA was recorded"; fi

step "an intermediate asked to outlive its root is clamped to the root's notAfter"
p11ca ca init h-long "CN=Long Intermediate" --parent h-root --key-type p256 \
	--expires 36500 >/dev/null
p11ca ca export h-long --out "$APP/long.pem"
[ "$(not_after "$APP/long.pem")" = "$(not_after "$APP/root.pem")" ] ||
	fail "h-long ends $(openssl x509 -in "$APP/long.pem" -noout -enddate), the root \
$(openssl x509 -in "$APP/root.pem" -noout -enddate)"
openssl verify -CAfile "$APP/root.pem" "$APP/long.pem" >/dev/null || fail "h-long does not verify"

step "a leaf asked to outlive its CA is refused, naming the latest possible date"
latest=$(date -u -d "@$(not_after "$APP/inter.pem")" +%Y-%m-%d)
expect_fail "latest possible date.*$latest" p11ca cert sign --ca h-inter --csr "$APP/leaf.csr" \
	--san leaf.example.test --expires 2000

step "name constraints: permitted DNS:example.com"
p11ca ca init nc-ca "CN=Constrained CA,O=p11ca tests" --key-type p256 --key-label nc-ca-key \
	--permit-name DNS:example.com >/dev/null
p11ca ca export nc-ca --out "$APP/nc.pem"
expect_ext "$APP/nc.pem" nameConstraints critical "Permitted:, DNS:example.com"
make_csr good www.example.com
p11ca cert sign --ca nc-ca --csr "$APP/good.csr" --san www.example.com --out "$APP/good.pem" >/dev/null
openssl verify -CAfile "$APP/nc.pem" "$APP/good.pem" || fail "the in-constraint leaf does not verify"
make_csr evil evil.com
expect_fail "outside the name constraints" \
	p11ca cert sign --ca nc-ca --csr "$APP/evil.csr" --san evil.com
expect_fail "outside the name constraints" \
	p11ca cert sign --ca nc-ca --csr "$APP/evil.csr" --subject CN=www.example.com --san evil.com

step "the same leaf mis-issued with the CA's HSM key outside p11ca: openssl verify rejects it"
export OPENSSL_CONF
OPENSSL_CONF=$(engine_conf)
uri="pkcs11:token=p11ca-test;object=nc-ca-key;type=private"
printf 'subjectAltName=DNS:evil.com\nbasicConstraints=critical,CA:FALSE\n' >"$APP/evil.ext"
openssl x509 -req -in "$APP/evil.csr" -CA "$APP/nc.pem" -engine pkcs11 -CAkeyform engine \
	-CAkey "$uri;pin-value=$(cat "$APP/hsm/user.pin")" -set_serial 0x7e57 -days 1 \
	-extfile "$APP/evil.ext" -out "$APP/evil.pem" >"$APP/engine.out" 2>&1 ||
	{ cat "$APP/engine.out"; fail "could not sign with the CA's key through the pkcs11 engine"; }
unset OPENSSL_CONF
# The signature is the CA's: only the name constraint makes the chain fail.
openssl x509 -in "$APP/evil.pem" -noout -subject -ext subjectAltName
if openssl verify -CAfile "$APP/nc.pem" "$APP/evil.pem" >"$APP/verify-evil.out" 2>&1; then
	cat "$APP/verify-evil.out"
	fail "openssl verify accepted a certificate outside the CA's name constraints"
fi
cat "$APP/verify-evil.out"
grep -q 'permitted subtree violation' "$APP/verify-evil.out" ||
	fail "openssl verify failed, but not for the name constraint"
openssl verify -CAfile "$APP/nc.pem" "$APP/good.pem" >/dev/null ||
	fail "the in-constraint leaf stopped verifying"

appliance_stop
APP_PID=
echo "PASS"
