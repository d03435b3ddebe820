#!/usr/bin/env bash
# p11cad's command line against a SoftHSM2 token: configuration errors (exit 78 with
# FILE:LINE), --check-config before init, init without a pin source (77), init twice
# (the second run keeps everything), the rpc process's sandbox (chroot into state_dir/empty
# as [rpc] user with no-new-privileges; refusals when that is unsafe or impossible), and the
# daemon's ordered stop on SIGTERM.
set -euo pipefail
OUT=${OUT:-build}
B=$PWD/$OUT/bin/p11cad
T=$(mktemp -d "${TMPDIR:-/tmp}/test_p11cad.XXXXXX")
daemon=
# A failed check must not leave a daemon behind (it holds the test's output open).
trap '[ -z "$daemon" ] || kill -TERM "$daemon" 2>/dev/null; rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
wait_log() { # wait_log PATTERN FILE: poll (10 s at most) until FILE has a line matching PATTERN
	for _ in $(seq 1 100); do grep -q -- "$1" "$2" && return 0; read -rt 0.1 <> <(:) || true; done
	cat "$2"; fail "the log never said '$1'"
}
status_field() { # status_field PID FIELD: the values of FIELD in /proc/PID/status
	awk -v f="$2:" '$1 == f { $1 = ""; sub(/^ /, ""); print }' "/proc/$1/status"
}
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
daemon=$pid
for _ in $(seq 1 100); do grep -q "parent\]: notice: engine: ready" "$T/run.log" && break; read -rt 0.1 <> <(:) || true; done
grep -q "engine: ready" "$T/run.log" || { cat "$T/run.log"; fail "daemon never got ready"; }

# The rpc process is chrooted into the empty directory as nobody and cannot gain privileges;
# the engine and the signer still run as the daemon's user (root here): not dropped yet.
wait_log "rpc\]: info: rpc: serving" "$T/run.log"
child() { pgrep -P "$pid" -f -- "--child $1 " || fail "no $1 child under $pid"; }
rpc=$(child rpc)
nobody=$(id -u nobody)
nogroup=$(id -g nobody)
[ "$(status_field "$rpc" Uid)" = "$nobody $nobody $nobody $nobody" ] ||
	fail "rpc uids: $(status_field "$rpc" Uid), not $nobody (nobody) four times"
[ "$(status_field "$rpc" Gid)" = "$nogroup $nogroup $nogroup $nogroup" ] ||
	fail "rpc gids: $(status_field "$rpc" Gid)"
[ -z "$(status_field "$rpc" Groups)" ] || fail "rpc keeps groups: $(status_field "$rpc" Groups)"
[ "$(status_field "$rpc" NoNewPrivs)" = 1 ] || fail "rpc lacks no-new-privileges"
[ "$(status_field "$rpc" CapEff)" = 0000000000000000 ] || fail "rpc keeps capabilities"
[ "$(status_field "$rpc" CapPrm)" = 0000000000000000 ] || fail "rpc keeps permitted capabilities"
empty=$(realpath "$T/s/empty")
[ "$(readlink "/proc/$rpc/root")" = "$empty" ] ||
	fail "rpc root is $(readlink "/proc/$rpc/root"), not $empty"
[ "$(stat -c '%u %a' "$empty")" = "0 555" ] || fail "$empty is $(stat -c '%u %a' "$empty")"
[ -z "$(ls -A "$empty")" ] || fail "$empty is not empty"
grep -q "rpc: sandboxed: chroot $T/s/empty, uid $nobody (nobody)" "$T/run.log" ||
	fail "no sandbox line in the log"
for c in engine signer; do
	cpid=$(child $c)
	[ "$(status_field "$cpid" Uid | cut -d' ' -f1)" = 0 ] || fail "$c no longer runs as root: update this test"
	[ "$(readlink "/proc/$cpid/root")" = / ] || fail "$c is chrooted: update this test"
	[ "$(status_field "$cpid" NoNewPrivs)" = 0 ] || fail "$c has no-new-privileges: update this test"
done
for c in rpc engine signer; do # core files off and not dumpable in every child
	cpid=$(child $c)
	awk '/^Max core file size/ { exit !($5 == 0 && $6 == 0) }' "/proc/$cpid/limits" ||
		fail "$c may write core files"
done
# The CLI still works through the sandboxed rpc process (TLS handshake, roles, engine).
P11CA_SERVER=127.0.0.1:$port P11CA_CERT=$T/s/admin/admin.crt P11CA_KEY=$T/s/admin/admin.key \
	P11CA_CACERT=$T/s/tls/ca.crt HOME=$T expect 0 "ready: *yes" -- "$PWD/$OUT/bin/p11ca" status

kill -TERM "$pid"
wait "$pid" || fail "daemon exited $? after SIGTERM"
daemon=
grep -E "parent\]: info: (rpc|engine|signer) stopped" "$T/run.log" | sed 's/.*info: \([a-z]*\) .*/\1/' | tr '\n' ' ' >"$T/order"
[ "$(cat "$T/order")" = "rpc engine signer " ] || { cat "$T/run.log"; fail "stop order: $(cat "$T/order")"; }

# run_refused WHAT PATTERN -- command...: the daemon starts, the rpc process refuses to serve
# with PATTERN in the log, and SIGTERM still stops everything.
run_refused() {
	local what=$1 pat=$2; shift 3
	"$@" 2>"$T/refused.log" &
	local rpid=$!
	daemon=$rpid
	wait_log "$pat" "$T/refused.log"
	kill -TERM "$rpid"
	wait "$rpid" || true # the parent may report the failed child in its status
	daemon=
	! grep -q "rpc: serving" "$T/refused.log" || fail "$what: rpc served anyway"
}
# A chroot the rpc user could write to, or one that holds something, gives back what the
# chroot takes away.
chmod 0777 "$T/s/empty"
run_refused "writable chroot" "must be owned by root and writable by nobody" -- \
	"$B" --config "$T/c.conf"
chmod 0555 "$T/s/empty"
chmod 0755 "$T/s/empty" && touch "$T/s/empty/x" && chmod 0555 "$T/s/empty"
run_refused "non-empty chroot" "must be empty but holds 'x'" -- "$B" --config "$T/c.conf"
chmod 0755 "$T/s/empty" && rm "$T/s/empty/x" && chmod 0555 "$T/s/empty"
# Root without CAP_SYS_CHROOT cannot drop: the rpc process must not serve as root.
if command -v setpriv >/dev/null; then
	run_refused "root without CAP_SYS_CHROOT" "cannot drop root" -- \
		setpriv --bounding-set=-sys_chroot "$B" --config "$T/c.conf"
fi
# An [rpc] user that does not exist is a configuration error before anything starts.
sed 's/^user = nobody$/user = p11ca-no-such-user/' "$T/c.conf" >"$T/nouser.conf"
expect 78 "nouser.conf:[0-9]*: user 'p11ca-no-such-user' cannot run the rpc process" -- \
	"$B" --check-config --config "$T/nouser.conf"
echo "test_p11cad: all passed"
