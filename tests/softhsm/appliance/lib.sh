# shellcheck shell=bash
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
step() { printf '\n== %s (at %ss)\n' "$*" "$SECONDS"; }

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

# ---- helpers of the issue-4 tests (profiles, hierarchy, CSR hygiene, import, notify) ----

# conf_set SECTION KEY VALUE: set KEY in [SECTION] of $APP_CONF (replaced when present,
# else added at the top of the section; the section is appended when missing).
conf_set() {
	"$PY" - "$APP_CONF" "$1" "$2" "$3" <<'PY' || fail "conf_set $2 in [$1]"
import re, sys
path, section, key, value = sys.argv[1:]
lines = open(path).read().split("\n")
head = f"[{section}]"
try:
    start = next(i for i, l in enumerate(lines) if l.strip() == head)
except StopIteration:
    lines += ["", head, f"{key} = {value}", ""]
else:
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    hit = [i for i in range(start + 1, end) if re.match(rf"{re.escape(key)}\s*=", lines[i])]
    if hit:
        lines[hit[0]] = f"{key} = {value}"
    else:
        lines.insert(start + 1, f"{key} = {value}")
open(path, "w").write("\n".join(lines))
PY
}

# expect_fail PATTERN CMD...: CMD must fail, and its output (stderr and stdout) must match
# the extended regular expression PATTERN (case-insensitive). The output is shown.
expect_fail() {
	local pattern=$1 rc out
	shift
	set +e
	out=$("$@" 2>&1)
	rc=$?
	set -e
	printf '  exit %s: %s\n' "$rc" "$(printf '%s' "$out" | tr '\n' ' ' | cut -c1-400)"
	[ $rc != 0 ] || fail "'$*' succeeded; it should have been refused ($pattern)"
	printf '%s' "$out" | grep -qiE -- "$pattern" || fail "'$*' failed without saying /$pattern/"
}

# ext CERT NAME: OpenSSL's own rendering of one extension (an `openssl x509 -ext` name:
# keyUsage, extendedKeyUsage, subjectAltName, authorityInfoAccess, crlDistributionPoints,
# certificatePolicies, noCheck, tlsfeature, ...) as "critical: V" or "noncritical: V", the
# value lines trimmed and joined with "; ". Nothing when the certificate lacks it.
ext() {
	openssl x509 -in "$1" -noout -ext "$2" 2>/dev/null | awk '
		NR == 1 { c = ($0 ~ /critical[ \t]*$/) ? "critical" : "noncritical"; next }
		{ gsub(/^[ \t]+|[ \t]+$/, ""); if ($0 != "") v = v (v == "" ? "" : "; ") $0 }
		END { if (NR) print c ": " v }'
}

# items "A, B; C": the comma/semicolon-separated items, sorted, one per line.
items() { printf '%s\n' "$1" | tr ',;' '\n\n' | sed 's/^ *//; s/ *$//' | grep -v '^$' | sort; }

# expect_ext CERT NAME critical|noncritical "ITEM, ITEM": the extension is present with
# that criticality and exactly those items (in any order).
expect_ext() {
	local got crit val
	got=$(ext "$1" "$2")
	[ -n "$got" ] || fail "$(basename "$1"): no $2 extension (openssl x509 -text shows none)"
	crit=${got%%: *}
	val=${got#*: }
	[ "$crit" = "$3" ] || fail "$(basename "$1"): $2 is $crit, expected $3 ($got)"
	[ "$(items "$val")" = "$(items "$4")" ] ||
		fail "$(basename "$1"): $2 is '$val', expected '$4'"
	echo "  $(basename "$1"): $2 $got"
}

# expect_no_ext CERT NAME
expect_no_ext() {
	local got
	got=$(ext "$1" "$2")
	[ -z "$got" ] || fail "$(basename "$1"): unexpected $2 extension: $got"
}

# cert_serial CERT: the serial as `openssl x509 -serial` prints it (uppercase hex).
cert_serial() { openssl x509 -in "$1" -noout -serial | sed 's/^serial=//'; }

# fault_shim_config: run the daemon's PKCS#11 module through the p11fault shim
# (docs/p11fault.md), logging every call to $APP/p11.log. Call before appliance_start.
fault_shim_config() {
	local shim
	shim=$(cd "$OUT/lib" && pwd)/libp11fault.so
	[ -f "$shim" ] || fail "$shim missing (CONFIG_P11FAULT)"
	conf_set hsm module "$shim"
	export P11FAULT_MODULE=/usr/lib/softhsm/libsofthsm2.so P11FAULT_CONTROL=$APP/p11fault.ctl
	printf 'log %s\n' "$APP/p11.log" >"$APP/p11fault.ctl.tmp"
	mv "$APP/p11fault.ctl.tmp" "$P11FAULT_CONTROL"
}

# sign_calls: how many C_SignInit/C_Sign/C_SignUpdate/C_SignFinal calls the shim logged.
sign_calls() {
	local n
	n=$(grep -cE 'fn=C_Sign(Init|Update|Final)? ' "$APP/p11.log" 2>/dev/null || true)
	echo "${n:-0}"
}

# engine_conf: an OpenSSL configuration that loads libp11's pkcs11 engine on SoftHSM2, for
# signing outside p11ca with a key on the appliance's token (PITFALLS.md: the engine is
# only ever an outside cross-check here). Prints its path.
engine_conf() {
	local f=$APP/openssl-pkcs11.cnf
	cat >"$f" <<CNF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
MODULE_PATH = /usr/lib/softhsm/libsofthsm2.so
init = 0
CNF
	echo "$f"
}
