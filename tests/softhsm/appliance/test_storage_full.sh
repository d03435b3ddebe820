#!/usr/bin/env bash
# A full database refuses new issuance with a clear storage error and nothing half-written,
# while the daemon keeps serving reads and revocations (the soft quota keeps room for them).
# The map is 1 MiB, so the quota is reached after a few hundred certificates.
set -euo pipefail
cd "$(dirname "$0")/../../.."
. tests/softhsm/appliance/lib.sh
trap '[ -n "${APP_PID:-}" ] && kill -KILL -- "-$APP_PID" 2>/dev/null || true' EXIT

appliance_setup
sed -i 's/^map_size_mb *=.*/map_size_mb = 1/' "$APP_CONF"
grep -q '^map_size_mb = 1$' "$APP_CONF" || fail "could not set map_size_mb in $APP_CONF"
appliance_start
p11ca ca init full-ca "CN=Full CA" --key-type p256 >/dev/null
p11ca ca export full-ca --out "$APP/full-ca.pem"
make_csr leaf full.example

step "issue until the database refuses"
n=0 last=
while :; do
	set +e
	p11ca --json cert sign --ca full-ca --csr "$APP/leaf.csr" >"$APP/sign.json" 2>"$APP/sign.err"
	rc=$?
	set -e
	[ $rc = 0 ] || break
	last=$(json cert.serial <"$APP/sign.json")
	n=$((n + 1))
	[ $n -lt 5000 ] || fail "the 1 MiB database never filled up"
done
echo "$n certificates issued, then exit $rc:"
cat "$APP/sign.err"
[ $rc = 75 ] || fail "a full database should be a temporary failure (75), got $rc"
grep -qi 'storage\|full\|quota' "$APP/sign.err" || fail "the error does not say the storage is full"
[ -n "$last" ] || fail "nothing was issued before the database filled"

step "reads and revocations still work"
p11ca status >/dev/null || fail "status failed on a full database"
p11ca ca list >/dev/null || fail "ca list failed on a full database"
p11ca cert export "$last" --out "$APP/last.pem"
openssl verify -CAfile "$APP/full-ca.pem" "$APP/last.pem" >/dev/null ||
	fail "the last certificate issued does not verify"
p11ca cert revoke "$last" --reason superseded >/dev/null || fail "revocation refused on a full database"
p11ca crl get --ca full-ca --out "$APP/full.crl.pem" >/dev/null
openssl crl -in "$APP/full.crl.pem" -noout -text | grep -q "${last}" ||
	fail "the revoked serial is not on the CRL"

step "the refused requests left nothing behind: the store is consistent after a restart"
appliance_stop
appliance_start
# (The CA's own certificate is listed too, with profile "ca".)
stored=$(p11ca --json cert list --ca full-ca | "$PY" -c 'import json,sys
print(sum(1 for c in json.load(sys.stdin)["certs"] if c["profile"] != "ca"))')
echo "$stored certificates stored"
[ "$stored" = "$n" ] || fail "$n issued but $stored stored"
appliance_stop
APP_PID=
