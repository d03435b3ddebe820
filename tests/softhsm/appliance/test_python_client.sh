#!/usr/bin/env bash
# The .proto works from another language against a live daemon: Python (stock
# `protoc --python_out`, the standard `ssl` module) lists the CAs and has a CSR signed; the
# result verifies with openssl against the CA the C CLI exported.
set -euo pipefail
cd "$(dirname "$0")/../../.."
. tests/softhsm/appliance/lib.sh
trap '[ -n "${APP_PID:-}" ] && kill -KILL -- "-$APP_PID" 2>/dev/null || true' EXIT

appliance_setup
appliance_start
p11ca ca init py-root "CN=Python Test Root" --key-type p256 >/dev/null
p11ca ca export py-root --out "$APP/py-root.pem"

gen=$APP/pygen
mkdir -p "$gen"
protoc --python_out="$gen" -I rpc rpc/p11ca.proto
export PYTHONPATH=$gen:rpc/clients/python
client() { "$PY" rpc/clients/python/p11ca_client.py "$@"; }

step "python lists the CAs"
client ca-list | tee "$APP/py-list.txt"
grep -q "^py-root	" "$APP/py-list.txt" || fail "py-root missing from the Python listing"
grep -q "CN=Python Test Root" "$APP/py-list.txt" || fail "subject missing"

step "python has a CSR signed"
make_csr pyleaf py.example.org
client sign --ca py-root --csr "$APP/pyleaf.csr" --out "$APP/pyleaf.pem"
openssl verify -CAfile "$APP/py-root.pem" "$APP/pyleaf.pem"
openssl x509 -in "$APP/pyleaf.pem" -noout -ext subjectAltName | grep -q 'DNS:py.example.org' ||
	fail "the CN did not become a SAN"

step "python gets a clean error status, not a crash, for an unknown CA"
if client sign --ca no-such-ca --csr "$APP/pyleaf.csr" 2>"$APP/py-err.txt"; then
	fail "signing with an unknown CA succeeded"
fi
grep -q 'STATUS_CODE_NOT_FOUND' "$APP/py-err.txt" || { cat "$APP/py-err.txt"; fail "wrong status"; }

appliance_stop
APP_PID=
