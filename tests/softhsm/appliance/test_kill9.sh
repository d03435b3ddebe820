#!/usr/bin/env bash
# Kill -9 of the whole appliance during an issuance loop, three times, then restart: every
# certificate a client received is in the database, every stored certificate verifies
# against its CA, and no serial was used twice. Intents the kill interrupted become orphans.
set -euo pipefail
cd "$(dirname "$0")/../../.."
. tests/softhsm/appliance/lib.sh
trap '[ -n "${APP_PID:-}" ] && kill -KILL -- "-$APP_PID" 2>/dev/null || true; [ -n "${LOOP:-}" ] && kill "$LOOP" 2>/dev/null || true' EXIT

appliance_setup
appliance_start
p11ca ca init crash-ca "CN=Crash Test CA" --key-type p256 >/dev/null
p11ca ca export crash-ca --out "$APP/crash-ca.pem"
make_csr leaf crash.example
mkdir -p "$APP/received"

# The loop writes a certificate file only once the CLI received the whole answer (--out is
# written atomically), so the files are exactly "what a client received".
issue_loop() {
	local i=0
	while :; do
		i=$((i + 1))
		"$OUT/bin/p11ca" cert sign --ca crash-ca --csr "$APP/leaf.csr" \
			--out "$APP/received/$1-$i.pem" >/dev/null 2>&1 || true
	done
}

for round in 1 2 3; do
	step "round $round: issuance loop, then kill -9 of every p11cad process"
	before=$(ls "$APP/received" | wc -l)
	issue_loop "r$round" &
	LOOP=$!
	# Let some certificates through, then kill in the middle of the stream.
	timeout 120 sh -c "while [ \$(ls '$APP/received' | wc -l) -lt $((before + 15)) ]; do sleep 0.05; done" ||
		fail "issuance did not progress"
	appliance_kill9
	kill "$LOOP" 2>/dev/null || true
	wait "$LOOP" 2>/dev/null || true
	LOOP=
	appliance_start
done

step "every received certificate is in the database"
n=0
for f in "$APP"/received/*.pem; do
	serial=$(openssl x509 -in "$f" -noout -serial | sed 's/serial=//')
	p11ca --json cert view "$serial" >"$APP/view.json" || fail "received certificate $serial is not in the database"
	n=$((n + 1))
done
echo "$n received certificates all found"

step "every stored certificate verifies, and no serial repeats"
: >"$APP/serials.txt"
# The CLI follows the server's pages to the end.
p11ca --json cert list --ca crash-ca >"$APP/list.json"
"$PY" -c 'import json,sys
for c in json.load(open(sys.argv[1]))["certs"]:
    print(c["serial"], c["status"])' "$APP/list.json" >"$APP/serials.txt"
total=$(wc -l <"$APP/serials.txt")
dups=$(cut -d' ' -f1 "$APP/serials.txt" | sort | uniq -d | wc -l)
echo "$total stored, $dups duplicated serials"
[ "$dups" = 0 ] || fail "serials reused"
[ "$total" -ge "$n" ] || fail "fewer stored ($total) than received ($n)"
while read -r serial status; do
	case $status in *ORPHAN*|*orphan*) continue ;; esac
	p11ca cert export "$serial" --out "$APP/stored.pem"
	openssl verify -CAfile "$APP/crash-ca.pem" "$APP/stored.pem" >/dev/null ||
		fail "stored certificate $serial does not verify"
done <"$APP/serials.txt"
grep -i 'orphan' "$APP_LOG" | tail -n 3 || true
appliance_stop
APP_PID=
