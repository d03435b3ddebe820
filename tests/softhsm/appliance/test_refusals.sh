#!/usr/bin/env bash
# Refusals at the network edge, each against a live daemon that keeps serving others: no
# client certificate, a certificate from another CA, an auditor trying to sign, a frame over
# the limit, a truncated frame, garbage. Each is logged, and those that reach the rpc
# process's frame layer are in the audit chain.
set -euo pipefail
cd "$(dirname "$0")/../../.."
. tests/softhsm/appliance/lib.sh
trap '[ -n "${APP_PID:-}" ] && kill -KILL -- "-$APP_PID" 2>/dev/null || true; [ -n "${LORIS:-}" ] && { pkill -P "$LORIS"; kill "$LORIS"; } 2>/dev/null || true' EXIT

appliance_setup
appliance_start

# raw MODE [CERT KEY]: talk to the daemon below the CLI. Prints what happened.
raw() {
	"$PY" - "$@" <<'PY'
import socket, ssl, struct, sys, os, time
mode = sys.argv[1]
cert = sys.argv[2] if len(sys.argv) > 2 else None
key = sys.argv[3] if len(sys.argv) > 3 else None
host, port = os.environ["P11CA_SERVER"].rsplit(":", 1)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_verify_locations(os.environ["P11CA_CACERT"])
ctx.set_alpn_protocols(["p11ca/1"])
if cert:
    ctx.load_cert_chain(cert, key)
s = socket.create_connection((host, int(port)), timeout=20)
try:
    t = ctx.wrap_socket(s, server_hostname=host)
    if mode == "loris":
        t.sendall(b"\x00\x00")  # half a header, then silence
        print("loris-open", flush=True)
        time.sleep(3600)
    if mode == "big":
        t.sendall(struct.pack(">I", 16 * 1024 * 1024))
    elif mode == "truncated":
        t.sendall(struct.pack(">I", 100) + b"x" * 10)
        # TCP end of stream in the middle of the frame. SSLSocket.shutdown would drop the
        # TLS layer too, so shut the socket down through a duplicate descriptor.
        socket.socket(fileno=os.dup(t.fileno())).shutdown(socket.SHUT_WR)
    elif mode == "garbage":
        t.sendall(struct.pack(">I", 8) + b"\xff" * 8)
    elif mode == "hello":
        pass
    data = b""
    try:
        while True:
            chunk = t.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ssl.SSLError, ConnectionError) as e:
        pass  # a reset after the server gave up on us is a close too
    print(f"answered {data[:16]!r}" if data else "closed")
except (ssl.SSLError, ConnectionError, OSError) as e:
    print("refused:", type(e).__name__, e)
PY
}

step "a slow client holds a connection open with half a frame header the whole time"
raw loris "$P11CA_CERT" "$P11CA_KEY" >"$APP/loris.out" &
LORIS=$!
# The line appears once the TLS handshake is done and the two bytes are sent.
timeout 30 sh -c "until grep -q loris-open '$APP/loris.out'; do sleep 0.05; done" ||
	fail "the slow client never connected"

step "no client certificate"
out=$(raw hello)
echo "$out"
case $out in refused*|closed) ;; *) fail "served a client without a certificate: $out" ;; esac
p11ca status >/dev/null || fail "daemon stopped serving after a certificate-less client"

step "a client certificate from another CA"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$APP/evil-ca.key" \
	-out "$APP/evil-ca.crt" -subj "/CN=Evil CA" -days 2 \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$APP/evil.key" \
	-out "$APP/evil.csr" -subj "/CN=admin" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' >"$APP/evil.ext"
openssl x509 -req -in "$APP/evil.csr" -CA "$APP/evil-ca.crt" -CAkey "$APP/evil-ca.key" \
	-CAcreateserial -days 1 -extfile "$APP/evil.ext" -out "$APP/evil.crt" 2>/dev/null
out=$(raw hello "$APP/evil.crt" "$APP/evil.key")
echo "$out"
case $out in refused*|closed) ;; *) fail "served a foreign-CA client: $out" ;; esac
if "$OUT/bin/p11ca" --cert "$APP/evil.crt" --key "$APP/evil.key" status 2>"$APP/evil.err"; then
	fail "the CLI got through with a foreign certificate"
fi
cat "$APP/evil.err"

step "an auditor may read but not sign"
make_csr auditor auditor.test
p11ca --json cert sign --ca p11ca-management --csr "$APP/auditor.csr" --profile client \
	--out "$APP/auditor.crt" >/dev/null
fp=$(openssl x509 -in "$APP/auditor.crt" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g')
roles=$(sed -n 's/^roles_file *= *//p' "$APP_CONF")
case ${roles:-roles} in /*) ;; *) roles=$APP_STATE/${roles:-roles} ;; esac
echo "$fp auditor" >>"$roles"
appliance_stop
appliance_start
auditor() { "$OUT/bin/p11ca" --cert "$APP/auditor.crt" --key "$APP/auditor.key" "$@"; }
auditor ca list >/dev/null || fail "an auditor could not list CAs"
make_csr victim victim.test
set +e
auditor cert sign --ca p11ca-management --csr "$APP/victim.csr" 2>"$APP/auditor.err"
rc=$?
set -e
cat "$APP/auditor.err"
[ $rc = 77 ] || fail "auditor cert sign: exit $rc, expected 77 (permission denied)"
grep -q 'auditor may not call cert_sign' "$APP/auditor.err" || fail "the refusal does not say why"

step "revoking a client certificate locks its holder out at once (no restart)"
aserial=$(openssl x509 -in "$APP/auditor.crt" -noout -serial | sed 's/serial=//')
p11ca cert revoke "$aserial" --reason keyCompromise >/dev/null
set +e
auditor ca list >/dev/null 2>"$APP/revoked.err"
rc=$?
set -e
cat "$APP/revoked.err"
[ $rc = 77 ] || fail "a revoked client certificate still works (exit $rc)"
grep -q 'revoked' "$APP/revoked.err" || fail "the refusal does not say the certificate was revoked"
p11ca status >/dev/null || fail "the admin was locked out too"

step "the slow client is still parked or timed out; frame attacks on fresh connections"
# Over-long and truncated frames get no answer (there is no frame to answer); a garbage
# body inside a well-formed frame gets INVALID_ARGUMENT. Either way the server then closes
# (raw reads until end of stream).
for mode in big truncated garbage; do
	out=$(raw "$mode" "$P11CA_CERT" "$P11CA_KEY")
	echo "$mode: $out"
	case $mode:$out in
	big:closed | truncated:closed) ;;
	garbage:answered*) ;;
	*) fail "$mode frame: unexpected outcome: $out" ;;
	esac
	p11ca status >/dev/null || fail "daemon stopped serving after a $mode frame"
done

step "every refusal left a trace: log lines, and audit records for the frame-level ones"
grep -ci 'refus\|denied\|handshake' "$APP_LOG" | sed 's/^/log lines: /'
grep -qi 'permission\|denied' "$APP_LOG" || fail "the auditor's refusal is not logged"
appliance_stop
APP_PID=
mdb_dump -p -s audit "$APP_STATE/db" >"$APP/audit.txt" 2>/dev/null ||
	mdb_dump -p -n -s audit "$APP_STATE/db" >"$APP/audit.txt" || fail "cannot read the audit db"
n=$(grep -c 'rpc.refused' "$APP/audit.txt" || true)
echo "audit records of refusals: $n"
[ "$n" -ge 4 ] || fail "expected >= 4 rpc.refused audit records (auditor, big, truncated, garbage), got $n"
grep -q 'was revoked' "$APP/audit.txt" || fail "the revoked client's attempt is not in the audit chain"
