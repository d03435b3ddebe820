#!/usr/bin/env bash
# Certificate operations against a live daemon, checked with OpenSSL: cert resign (new
# serial, same subject, SANs and public key), cert import of a certificate made with our
# CA's HSM key outside p11ca (then revoked and on the CRL), cert revoke --compromised
# (InvalidityDate), every RFC 5280 reason on the CRL, ca revoke of an intermediate (on its
# parent's CRL), cert list filters and paging, cert watchers.
set -euo pipefail
cd "$(dirname "$0")/../../.."
. tests/softhsm/appliance/lib.sh
trap '[ -n "${APP_PID:-}" ] && kill -KILL -- "-$APP_PID" 2>/dev/null || true' EXIT

appliance_setup
appliance_start
p11ca ca init ops-root "CN=Ops Root" --key-type p256 >/dev/null
p11ca ca init ops-inter "CN=Ops Intermediate" --parent ops-root --key-type p256 \
	--key-label ops-inter-key >/dev/null
p11ca ca export ops-root --out "$APP/root.pem"
p11ca ca export ops-inter --out "$APP/inter.pem"
cat "$APP/inter.pem" "$APP/root.pem" >"$APP/chain.pem"

# A miss that does not stop the later steps: recorded, and the test fails at the end.
missed=()
soft_fail() {
	echo "MISS: $*" >&2
	missed+=("$*")
}
# hexnorm: serials compared as numbers (no colons, no leading zeros, uppercase).
hexnorm() { tr -d ':\n' | tr a-f A-F | sed 's/^0*//'; }
# sign NAME [OPTIONS...]: a leaf for NAME.example.test from ops-inter into $APP/NAME.pem;
# prints its serial.
sign() {
	local n=$1
	shift
	make_csr "$n" "$n.example.test"
	p11ca cert sign --ca ops-inter --csr "$APP/$n.csr" --out "$APP/$n.pem" "$@" >/dev/null ||
		fail "cert sign $n"
	cert_serial "$APP/$n.pem"
}
# crl_text CA: the CA's current CRL as `openssl crl -text`, after checking its signature.
crl_text() {
	p11ca crl get --ca "$1" --out "$APP/$1.crl" >/dev/null
	openssl crl -in "$APP/$1.crl" -noout -CAfile "$2" 2>&1 | grep -q 'verify OK' ||
		fail "the CRL of $1 does not verify"
	openssl crl -in "$APP/$1.crl" -noout -text
}
# crl_entry CRLTEXT SERIAL: the lines of one revoked-certificate entry.
crl_entry() {
	printf '%s\n' "$1" >"$APP/crl.txt"
	"$PY" - "$2" "$APP/crl.txt" <<'PY'
import sys
want = sys.argv[1].upper().lstrip("0")
entry, out = None, []
for line in open(sys.argv[2]).read().split("\n"):
    s = line.strip()
    if s.startswith("Serial Number:"):
        entry = s.split(":", 1)[1].strip().upper().lstrip("0") == want
        continue
    if s.startswith("Signature Algorithm") or s.startswith("Signature Value"):
        entry = False
    if entry and s:
        out.append(s)
print("; ".join(out))
PY
}

step "cert resign: new serial, same subject, SANs and public key"
old=$(sign resign --san IP:192.0.2.9 --profile server --watch ops@example.test)
p11ca --json cert resign "$old" --out "$APP/resigned.pem" >"$APP/resign.json"
new=$(cert_serial "$APP/resigned.pem")
echo "  $old -> $new"
[ "$(echo "$new" | hexnorm)" != "$(echo "$old" | hexnorm)" ] || fail "resign kept the serial"
for what in "-subject -nameopt RFC2253" "-ext subjectAltName" "-ext keyUsage,extendedKeyUsage" \
	"-pubkey"; do
	# shellcheck disable=SC2086
	[ "$(openssl x509 -in "$APP/resign.pem" -noout $what)" = \
		"$(openssl x509 -in "$APP/resigned.pem" -noout $what)" ] ||
		fail "resign changed $what"
done
openssl verify -CAfile "$APP/root.pem" -untrusted "$APP/inter.pem" "$APP/resigned.pem" >/dev/null ||
	fail "the resigned certificate does not verify"
p11ca --json cert view "$new" >"$APP/resigned-view.json"
[ "$(json cert.profile <"$APP/resigned-view.json")" = server ] || fail "resign lost the profile"
grep -q 'ops@example.test' "$APP/resigned-view.json" || fail "resign lost the watcher"
p11ca cert view "$old" | grep -qi valid || fail "the original is no longer valid after resign"
expect_fail "not found|no certificate|unknown" p11ca cert resign 7E57DEADBEEF0001

step "cert import: a certificate made with ops-inter's HSM key outside p11ca"
export OPENSSL_CONF
OPENSSL_CONF=$(engine_conf)
make_csr outside outside.example.test
printf 'subjectAltName=DNS:outside.example.test\nbasicConstraints=critical,CA:FALSE\n' \
	>"$APP/outside.ext"
openssl x509 -req -in "$APP/outside.csr" -CA "$APP/inter.pem" -engine pkcs11 -CAkeyform engine \
	-CAkey "pkcs11:token=p11ca-test;object=ops-inter-key;type=private;pin-value=$(cat "$APP/hsm/user.pin")" \
	-set_serial 0x5EC0DE0F0A11 -days 30 -extfile "$APP/outside.ext" -out "$APP/outside.pem" \
	>"$APP/engine.out" 2>&1 || { cat "$APP/engine.out"; fail "pkcs11 engine signing"; }
unset OPENSSL_CONF
openssl verify -CAfile "$APP/root.pem" -untrusted "$APP/inter.pem" "$APP/outside.pem" >/dev/null
p11ca --json cert import "$APP/outside.pem" --watch import@example.test >"$APP/import.json"
[ "$(json cert.profile <"$APP/import.json")" = imported ] || fail "not recorded as imported"
[ "$(json cert.serial <"$APP/import.json" | hexnorm)" = 5EC0DE0F0A11 ] || fail "wrong serial recorded"
expect_fail "exists|already|known" p11ca cert import "$APP/outside.pem"
# The same issuer name, but another key: not ours.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$APP/fake.key" \
	-subj "/CN=Ops Intermediate" -days 30 -addext basicConstraints=critical,CA:TRUE \
	-out "$APP/fake-inter.pem" 2>/dev/null
openssl x509 -req -in "$APP/outside.csr" -CA "$APP/fake-inter.pem" -CAkey "$APP/fake.key" \
	-set_serial 0x5EC0DE0F0A12 -days 30 -out "$APP/forged.pem" 2>/dev/null
expect_fail "signature|not (signed|issued)|no CA" p11ca cert import "$APP/forged.pem"
expect_fail "signature|not (signed|issued)|does not verify" \
	p11ca cert import "$APP/forged.pem" --ca ops-inter
# The serial as `openssl x509 -serial` prints it must find the certificate.
imp=$(json cert.serial <"$APP/import.json")
if ! p11ca cert view 5EC0DE0F0A11 >"$APP/imp-view.out" 2>&1; then
	cat "$APP/imp-view.out"
	soft_fail "an imported certificate is not found by its serial as openssl prints it (5EC0DE0F0A11; recorded as $imp)"
fi
p11ca cert revoke "$imp" --reason superseded >/dev/null
crl=$(crl_text ops-inter "$APP/chain.pem")
entry=$(crl_entry "$crl" 5EC0DE0F0A11)
echo "  CRL entry: $entry"
case $entry in *Superseded*) ;; *) fail "the imported certificate is not on the CRL as superseded" ;; esac

step "cert revoke --compromised: InvalidityDate on the CRL"
s=$(sign compromised)
t=$(($(date +%s) - 60))
p11ca cert revoke "$s" --reason keyCompromise --compromised "@$t" >/dev/null
entry=$(crl_entry "$(crl_text ops-inter "$APP/chain.pem")" "$s")
echo "  CRL entry: $entry"
case $entry in *"Key Compromise"*) ;; *) fail "no keyCompromise reason: $entry" ;; esac
want=$(date -u -d "@$t" '+%b %e %H:%M:%S %Y GMT')
case $entry in *"Invalidity Date"*"$want"*) ;; *) fail "no InvalidityDate $want: $entry" ;; esac
p11ca --json cert view "$s" | grep -q compromised_at || fail "cert view does not show the compromise time"
s2=$(sign future)
expect_fail "future" p11ca cert revoke "$s2" --compromised "@$(($(date +%s) + 86400))"
expect_fail "before|notBefore|not valid yet|issued" p11ca cert revoke "$s2" --compromised 2001-01-01

step "every RFC 5280 reason, as OpenSSL reads it back from the CRL"
declare -A reason_text=(
	[unspecified]=Unspecified [keyCompromise]="Key Compromise" [cACompromise]="CA Compromise"
	[affiliationChanged]="Affiliation Changed" [superseded]=Superseded
	[cessationOfOperation]="Cessation Of Operation" [certificateHold]="Certificate Hold"
	[privilegeWithdrawn]="Privilege Withdrawn" [aACompromise]="AA Compromise"
)
declare -A reason_serial=()
i=0
for r in "${!reason_text[@]}"; do
	i=$((i + 1))
	reason_serial[$r]=$(sign "reason$i")
	p11ca cert revoke "${reason_serial[$r]}" --reason "$r" >/dev/null
done
crl=$(crl_text ops-inter "$APP/chain.pem")
for r in "${!reason_text[@]}"; do
	entry=$(crl_entry "$crl" "${reason_serial[$r]}")
	printf '  %-22s %s\n' "$r" "$entry"
	[ -n "$entry" ] || fail "$r: the serial is not on the CRL"
	if [ "$r" = unspecified ]; then
		# RFC 5280 5.3.1: the reason code unspecified SHOULD be left out.
		case $entry in *"Reason Code"*Unspecified* | *"Revocation Date"*) ;; *) fail "$r: $entry" ;; esac
	else
		case $entry in *"${reason_text[$r]}"*) ;; *) fail "$r: not '${reason_text[$r]}' on the CRL" ;; esac
	fi
done
s=$(sign snake)
p11ca cert revoke "$s" --reason privilege_withdrawn >/dev/null
expect_fail "removeFromCRL|remove_from_crl|reason" p11ca cert revoke "$(sign rfc)" --reason removeFromCRL
expect_fail "reason" p11ca cert revoke "$(sign bogus)" --reason notAReason

step "ca revoke: an intermediate shows on its parent's CRL and stops issuing"
p11ca ca init ops-inter2 "CN=Ops Intermediate 2" --parent ops-root --key-type p256 >/dev/null
p11ca ca export ops-inter2 --out "$APP/inter2.pem"
inter2=$(cert_serial "$APP/inter2.pem")
p11ca ca revoke ops-inter2 --reason cACompromise >/dev/null
entry=$(crl_entry "$(crl_text ops-root "$APP/root.pem")" "$inter2")
echo "  root CRL entry: $entry"
case $entry in *"CA Compromise"*) ;; *) fail "ops-inter2 is not on ops-root's CRL as cACompromise" ;; esac
p11ca --json ca view ops-inter2 | grep -qi '"revoked"' || fail "ca view does not say revoked"
make_csr after after.example.test
expect_fail "revoked|disabled" p11ca cert sign --ca ops-inter2 --csr "$APP/after.csr"
openssl verify -crl_check -CRLfile "$APP/ops-root.crl" -CAfile "$APP/root.pem" "$APP/inter2.pem" \
	>"$APP/verify-inter2.out" 2>&1 && fail "openssl still accepts the revoked intermediate"
grep -q 'certificate revoked' "$APP/verify-inter2.out" || fail "$(cat "$APP/verify-inter2.out")"
# A revoked CA must never issue again, whatever its settings say.
if p11ca ca edit ops-inter2 --enable >"$APP/reenable.out" 2>&1 &&
	p11ca cert sign --ca ops-inter2 --csr "$APP/after.csr" --out "$APP/after.pem" >/dev/null 2>&1; then
	soft_fail "a revoked intermediate issued again after ca edit --enable ($(cert_serial "$APP/after.pem"))"
fi
cat "$APP/reenable.out"
expect_fail "root" p11ca ca revoke ops-root

step "cert list filters"
# listed FILTER...: the serials `cert list --all --json FILTER...` gives, normalised, sorted.
listed() {
	p11ca --json cert list --all "$@" | "$PY" -c 'import json, sys
for c in json.load(sys.stdin)["certs"]:
    print(c["serial"].replace(":", "").upper().lstrip("0"))' | sort
}
revoked_want=$(for x in "${reason_serial[@]}" 5EC0DE0F0A11 "$(cert_serial "$APP/compromised.pem")" \
	"$(cert_serial "$APP/snake.pem")"; do echo "$x" | hexnorm; echo; done | grep -v '^$' | sort)
[ "$(listed --ca ops-inter --revoked)" = "$revoked_want" ] ||
	fail "cert list --revoked: $(listed --ca ops-inter --revoked | paste -sd' ') != $(echo "$revoked_want" | paste -sd' ')"
p11ca --json cert list --ca ops-inter --revoked | grep -q '"valid"' && fail "--revoked lists a valid one"
soon=$(sign soon --expires 5 --profile client | hexnorm)
[ "$(listed --expiring-within 10)" = "$soon" ] ||
	fail "cert list --expiring-within 10: '$(listed --expiring-within 10 | paste -sd' ')', expected $soon"
[ "$(listed --profile client)" = "$soon" ] || fail "cert list --profile client: $(listed --profile client)"
[ "$(listed --profile imported)" = 5EC0DE0F0A11 ] || fail "cert list --profile imported"
[ -z "$(listed --expired)" ] || fail "cert list --expired lists certificates that have not expired"

step "paging with --limit 1 walks every certificate once"
all=$(listed --ca ops-inter)
n_all=$(echo "$all" | wc -l)
after='' paged=''
for ((k = 0; k <= n_all + 1; k++)); do
	p11ca --json cert list --ca ops-inter --limit 1 ${after:+--after "$after"} >"$APP/page.json"
	page=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(c["serial"] for c in d["certs"])); print(d.get("next_after") or "")' "$APP/page.json")
	got=$(echo "$page" | sed -n 1p)
	after=$(echo "$page" | sed -n 2p)
	[ "$(echo "$got" | wc -w)" -le 1 ] || fail "--limit 1 gave a page of $(echo "$got" | wc -w)"
	[ -n "$got" ] && paged="$paged$(echo "$got" | hexnorm)"$'\n'
	[ -n "$after" ] || break
done
[ -z "$after" ] || fail "paging did not end after $n_all pages"
[ "$(echo -n "$paged" | sort)" = "$all" ] ||
	fail "paging gave $(echo -n "$paged" | wc -l) serials (or others) of $n_all"
[ "$(echo -n "$paged" | sort -u | wc -l)" = "$n_all" ] || fail "paging repeated a serial"
echo "  $n_all certificates, one page each"

step "cert watchers add and remove"
w=$(sign watched --watch first@example.test)
p11ca --json cert watchers "$w" --add second@example.test --add third@example.test \
	--remove first@example.test >"$APP/watchers.json"
got=$("$PY" -c 'import json,sys; print(" ".join(sorted(json.load(sys.stdin)["watchers"])))' \
	<"$APP/watchers.json")
[ "$got" = "second@example.test third@example.test" ] || fail "watchers now: $got"
p11ca cert watchers "$w" --remove third@example.test --remove absent@example.test >/dev/null
p11ca --json cert view "$w" >"$APP/watched.json"
got=$("$PY" -c 'import json,sys; print(" ".join(json.load(sys.stdin)["watchers"]))' <"$APP/watched.json")
[ "$got" = "second@example.test" ] || fail "cert view watchers: $got"
expect_fail "email|address" p11ca cert watchers "$w" --add 'not an address'
expect_fail "email|address" p11ca cert watchers "$w" --add 'x@y.test>, evil@z.test'

appliance_stop
APP_PID=
[ ${#missed[@]} = 0 ] || { printf 'MISS: %s\n' "${missed[@]}" >&2; fail "${#missed[@]} checks missed"; }
echo "PASS"
