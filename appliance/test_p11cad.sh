#!/usr/bin/env bash
# p11cad's command line against a SoftHSM2 token: configuration errors (exit 78 with
# FILE:LINE), --check-config before init, init without a pin source (77), init twice
# (the second run keeps everything), and the daemon's ordered stop on SIGTERM.
set -euo pipefail
OUT=${OUT:-build}
B=$PWD/$OUT/bin/p11cad
T=$(mktemp -d "${TMPDIR:-/tmp}/test_p11cad.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
expect() { # expect STATUS PATTERN -- command...
	local want=$1 pat=$2; shift 3
	set +e; "$@" >"$T/out" 2>&1; local rc=$?; set -e
	[ "$rc" -eq "$want" ] || { cat "$T/out"; fail "$* exited $rc, not $want"; }
	grep -q -- "$pat" "$T/out" || { cat "$T/out"; fail "$* did not say '$pat'"; }
}
eval "$(scripts/softhsm-token.sh "$T/hsm" p11ca 2>/dev/null)"
port=$((20000 + RANDOM % 20000))

printf '[daemon]\nstate_dir = %s/s\n[rpc]\nlistn = 1\n' "$T" >"$T/bad.conf"
expect 78 "$T/bad.conf:4: unknown key 'listn' in \[rpc\]" -- "$B" --config "$T/bad.conf"
expect 78 "bad.conf:4:" -- "$B" --check-config --config "$T/bad.conf"
expect 64 "usage" -- "$B" --bogus
expect 64 "only with init" -- "$B" --token x

# init without a pin source writes the config, then stops: the token needs its PIN.
expect 77 "init needs a pin source" -- "$B" init --config "$T/nopin.conf" \
	--state-dir "$T/nopin" --listen "127.0.0.1:$port"
expect 78 "run p11cad init first" -- "$B" --check-config --config "$T/nopin.conf"

expect 0 "admin SHA-256" -- "$B" init --config "$T/c.conf" --state-dir "$T/s" \
	--pin-source "$T/hsm/user.pin" --listen "127.0.0.1:$port"
grep -q "management CA .*: created" "$T/out" || fail "first init created no CA"
fp=$(awk '/admin SHA-256/ {print $3}' "$T/out")
cp "$T/c.conf" "$T/c.conf.orig"
expect 0 "configuration .*: kept" -- "$B" init --config "$T/c.conf" --token other
grep -q "management CA .*: kept" "$T/out" || fail "second init did not keep the CA"
grep -q "admin SHA-256  $fp" "$T/out" || fail "second init changed the admin"
cmp -s "$T/c.conf" "$T/c.conf.orig" || fail "init changed an existing configuration"
[ "$(grep -c "$fp" "$T/s/roles")" -eq 1 ] || fail "the admin is in the roles file twice"
openssl verify -CAfile "$T/s/tls/ca.crt" "$T/s/tls/server.crt" "$T/s/admin/admin.crt" >/dev/null
expect 0 "configuration OK" -- "$B" --check-config --config "$T/c.conf"

# The daemon: ready, then SIGTERM stops rpc, engine, signer in that order and exits 0.
"$B" --config "$T/c.conf" 2>"$T/run.log" &
pid=$!
for _ in $(seq 1 100); do grep -q "parent\]: notice: engine: ready" "$T/run.log" && break; read -rt 0.1 <> <(:) || true; done
grep -q "engine: ready" "$T/run.log" || { cat "$T/run.log"; fail "daemon never got ready"; }
kill -TERM "$pid"
wait "$pid" || fail "daemon exited $? after SIGTERM"
grep -E "parent\]: info: (rpc|engine|signer) stopped" "$T/run.log" | sed 's/.*info: \([a-z]*\) .*/\1/' | tr '\n' ' ' >"$T/order"
[ "$(cat "$T/order")" = "rpc engine signer " ] || { cat "$T/run.log"; fail "stop order: $(cat "$T/order")"; }
echo "test_p11cad: all passed"
