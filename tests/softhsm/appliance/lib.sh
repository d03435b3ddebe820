# Shared set-up for the live-daemon tests: a SoftHSM2 token, `p11cad init`, start/stop with
# readiness through sd_notify, and the CLI pointed at the appliance. Sourced by the
# test_*.sh scripts here, which run from the repository root with OUT and TMPDIR set
# (scripts/run-tests.sh).
set -euo pipefail
OUT=${OUT:-build}
PY=/usr/bin/python3 # PITFALLS.md: the python3 on PATH may lack Debian's protobuf

fail() {
	echo "FAIL: $*" >&2
	[ -n "${APP_LOG:-}" ] && [ -f "$APP_LOG" ] && sed 's/^/  p11cad| /' "$APP_LOG" | tail -n 40 >&2
	exit 1
}
step() { printf '\n== %s\n' "$*"; }

free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# appliance_setup [DIR]: token, config and bootstrap under DIR (default: a fresh folder in
# TMPDIR), which becomes $APP.
appliance_setup() {
	if [ $# -gt 0 ]; then
		APP=$1
		mkdir -p "$APP"
		APP=$(cd "$APP" && pwd)
	else
		APP=$(mktemp -d "${TMPDIR:-/tmp}/p11ca-appliance.XXXXXX")
	fi
	eval "$(scripts/softhsm-token.sh "$APP/hsm" p11ca-test 2>/dev/null)"
	APP_PORT=$(free_port)
	APP_CONF=$APP/p11cad.conf
	APP_STATE=$APP/state
	APP_ADMIN=$APP/admin
	APP_LOG=$APP/p11cad.log
	"$OUT/bin/p11cad" init --config "$APP_CONF" --module /usr/lib/softhsm/libsofthsm2.so \
		--token p11ca-test --pin-source "$APP/hsm/user.pin" --state-dir "$APP_STATE" \
		--listen "127.0.0.1:$APP_PORT" --admin-out "$APP_ADMIN" >"$APP/init.out" 2>&1 ||
		{ cat "$APP/init.out" >&2; fail "p11cad init"; }
	export P11CA_SERVER=127.0.0.1:$APP_PORT P11CA_CERT=$APP_ADMIN/admin.crt \
		P11CA_KEY=$APP_ADMIN/admin.key P11CA_CACERT=$APP_ADMIN/ca.crt
	# Never read the developer's own client.ini.
	export HOME=$APP
}

# appliance_start: run p11cad in its own session; return once it reported READY=1.
appliance_start() {
	rm -f "$APP/p11cad.status"
	tests/softhsm/appliance/notify_start.py --timeout 120 --pidfile "$APP/p11cad.pid" \
		--statusfile "$APP/p11cad.status" --log "$APP_LOG" \
		-- "$OUT/bin/p11cad" --config "$APP_CONF" || fail "p11cad did not become ready"
	APP_PID=$(sed -n 1p "$APP/p11cad.pid")
	APP_REAPER=$(sed -n 2p "$APP/p11cad.pid")
}

# appliance_wait_exit: wait until p11cad exited; print its status (-N: killed by signal N).
appliance_wait_exit() {
	timeout 60 tail --pid="$APP_REAPER" -f /dev/null || fail "p11cad did not exit within 60s"
	cat "$APP/p11cad.status"
}

# appliance_stop: SIGTERM; p11cad must exit 0 and leave no child behind.
appliance_stop() {
	local status
	kill -TERM "$APP_PID"
	status=$(appliance_wait_exit)
	[ "$status" = 0 ] || fail "p11cad exited with status $status after SIGTERM"
	if pgrep -s "$APP_PID" >/dev/null; then
		pgrep -a -s "$APP_PID" >&2
		fail "children of p11cad survived it"
	fi
}

# appliance_kill9: kill -9 every process of the appliance at once (its session).
appliance_kill9() {
	kill -KILL -- "-$APP_PID" 2>/dev/null || true
	[ "$(appliance_wait_exit)" = -9 ] || fail "p11cad did not die of SIGKILL"
	timeout 30 sh -c "while pgrep -s $APP_PID >/dev/null; do sleep 0.05; done" ||
		fail "children of p11cad survived SIGKILL"
}

p11ca() { "$OUT/bin/p11ca" "$@"; }

# json FIELD.PATH < JSON: one value from the CLI's --json output.
json() {
	"$PY" -c 'import json,sys
v=json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v=v[int(k)] if isinstance(v,list) else v[k]
print(v)' "$1"
}

# make_csr NAME DNSNAME: an OpenSSL-made key and CSR in $APP/NAME.{key,csr}.
make_csr() {
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$APP/$1.key" -out "$APP/$1.csr" -subj "/CN=$2" 2>/dev/null
}
