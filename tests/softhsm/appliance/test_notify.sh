#!/usr/bin/env bash
# Expiry notifications through a configured sendmail-compatible command: a fake sendmail
# records each message (argv and stdin) as one file. Certificates expiring in 2, 5 and 10
# days, two watchers each, thresholds 14, 7, 3: `notify expiring` sends exactly one message
# per watcher per certificate (for the smallest threshold reached), and nothing on a second
# run; a watcher added later is told once. Stepping the clock through every threshold is
# appliance/engine/test_notify.c's job (an injected clock, day by day): libfaketime under a
# whole daemon made this script slow (tens of seconds per start) and cannot run under ASan.
set -euo pipefail
cd "$(dirname "$0")/../../.."
. tests/softhsm/appliance/lib.sh
trap '[ -n "${APP_PID:-}" ] && kill -KILL -- "-$APP_PID" 2>/dev/null || true' EXIT

appliance_setup
mail=$APP/mail
mkdir -p "$mail"
cat >"$APP/fake-sendmail" <<EOF
#!/bin/sh
# One file per message: the arguments, a blank line, then the message.
f=\$(mktemp "$mail/msg.XXXXXX")
{ printf 'argv:'; printf ' %s' "\$@"; printf '\n\n'; cat; } >"\$f"
EOF
chmod 755 "$APP/fake-sendmail"
conf_set notify command "$APP/fake-sendmail -i"
conf_set notify days "14, 7, 3"
conf_set notify from "p11ca@example.test"
conf_set notify interval_minutes 0 # only on demand: no schedule racing the test
appliance_start
p11ca ca init notify-ca "CN=Notify CA" --key-type p256 >/dev/null

# sign NAME DAYS [OPTIONS]: a leaf for NAME.example.test valid for DAYS days.
sign() {
	local n=$1 d=$2
	shift 2
	make_csr "$n" "$n.example.test"
	p11ca cert sign --ca notify-ca --csr "$APP/$n.csr" --expires "$d" --out "$APP/$n.pem" "$@" \
		>/dev/null || fail "cert sign $n"
}
sign in2 2 --watch alice@example.test --watch bob@example.test
sign in5 5 --watch alice@example.test --watch carol@example.test
sign in10 10 --watch dave@example.test --watch erin@example.test
sign in30 30 --watch alice@example.test            # no threshold reached
sign revoked2 2 --watch mallory@example.test       # revoked: never told
p11ca cert revoke "$(cert_serial "$APP/revoked2.pem")" --reason superseded >/dev/null
sign quiet2 2                                      # nobody to tell

# messages: "RECIPIENT CN" per recorded message, sorted (RECIPIENT from the To: header,
# which must also be the command's last argument; CN from the message body or subject).
messages() {
	"$PY" - "$mail" <<'PY'
import os, re, sys
d = sys.argv[1]
for f in sorted(os.listdir(d)):
    text = open(os.path.join(d, f), errors="replace").read()
    argv, _, msg = text.partition("\n\n")
    to = re.search(r"^To:\s*<?([^>\s]+)>?", msg, re.M | re.I)
    cn = re.search(r"\b(in\d+|revoked2|quiet2)\.example\.test\b", msg)
    rcpt = to.group(1) if to else "?"
    if not argv.rstrip().endswith(rcpt):
        rcpt += "(argv:" + argv.strip() + ")"
    print(rcpt, cn.group(1) if cn else "?")
PY
}

step "first run: one message per watcher per certificate that reached a threshold"
p11ca --json notify expiring | tee "$APP/run1.json"
got=$(messages | sort)
want=$(printf '%s\n' "alice@example.test in2" "bob@example.test in2" "alice@example.test in5" \
	"carol@example.test in5" "dave@example.test in10" "erin@example.test in10" | sort)
echo "$got" | sed 's/^/  /'
[ "$got" = "$want" ] || fail "messages sent: expected
$want"
[ "$(json messages_sent <"$APP/run1.json")" = 6 ] || fail "messages_sent is not 6"
[ "$(json certificates <"$APP/run1.json")" = 3 ] || fail "certificates is not 3"
f=$(grep -l 'alice@example.test' "$mail"/msg.* | xargs grep -l 'in2.example.test' | head -1)
sed 's/^/  | /' "$f" | head -20
grep -qi '^From: .*p11ca@example.test' "$f" || fail "no From: p11ca@example.test header"
grep -qi '^Subject: .*in2.example.test' "$f" || fail "the subject does not name the certificate"
grep -q "$(cert_serial "$APP/in2.pem" | sed 's/^0*//')" "$f" ||
	grep -qi "$(cert_serial "$APP/in2.pem" | sed 's/^0*//; s/../&:/g; s/:$//')" "$f" ||
	fail "the message does not give the serial"

step "second run: nothing new"
p11ca --json notify expiring | tee "$APP/run2.json"
[ "$(messages | wc -l)" = 6 ] || fail "a second run sent again: $(messages | wc -l) messages"
[ "$(json messages_sent <"$APP/run2.json")" = 0 ] || fail "messages_sent is not 0 on the second run"

step "a watcher added later is told too, once"
p11ca cert watchers "$(cert_serial "$APP/in5.pem")" --add frank@example.test >/dev/null
p11ca notify expiring >/dev/null
[ "$(messages | grep -c 'frank@example.test in5')" = 1 ] || fail "frank was not told exactly once"
p11ca notify expiring >/dev/null
[ "$(messages | wc -l)" = 7 ] || fail "$(messages | wc -l) messages after the late watcher, expected 7"

appliance_stop
APP_PID=
echo "PASS"
