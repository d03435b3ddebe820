#!/usr/bin/env bash
# CSR hygiene end to end: one real bad request per rule, each refused with its own
# sentence, and none of them reaches the HSM. The daemon's PKCS#11 module runs through the
# p11fault shim, whose call log counts every C_SignInit/C_Sign: the count must not move
# across all the bad requests, and must move for one good request at the end (so the
# assertion can fail).
set -euo pipefail
cd "$(dirname "$0")/../../.."
. tests/softhsm/appliance/lib.sh
trap '[ -n "${APP_PID:-}" ] && kill -KILL -- "-$APP_PID" 2>/dev/null || true' EXIT

appliance_setup
fault_shim_config
conf_set engine max_sans 3
conf_set engine csr_max_bytes 2048
appliance_start
p11ca ca init hyg-ca "CN=Hygiene CA" --key-type p256 >/dev/null
p11ca ca export hyg-ca --out "$APP/hyg-ca.pem"

gen=$APP/pygen
mkdir -p "$gen"
protoc --python_out="$gen" -I rpc rpc/p11ca.proto
export PYTHONPATH=$gen:rpc/clients/python
# pysign CSR SAN... (\xNN escapes allowed): cert_sign straight over the RPC (no CLI checks in between); prints the
# server's status and fails when it refused.
pysign() {
	"$PY" - "$@" <<'PY'
import os, sys
import p11ca_client as c
cl = c.Client(os.environ["P11CA_SERVER"], os.environ["P11CA_CERT"], os.environ["P11CA_KEY"],
              os.environ["P11CA_CACERT"])
try:
    # \xNN escapes in the arguments: argv cannot carry a NUL byte.
    sans = [s.encode().decode("unicode_escape") for s in sys.argv[2:]]
    r = cl.sign("hyg-ca", open(sys.argv[1], "rb").read(), sans=sans)
except c.ServerError as e:
    print(e)
    sys.exit(1)
import subprocess
san = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-ext", "subjectAltName"],
                     input=r.certificate_der, capture_output=True).stdout.decode()
print("issued", r.cert.serial, "with", " ".join(san.split()))
PY
}

# der_patch IN OUT OLD_HEX NEW_HEX: the CSR IN (PEM) with the first occurrence of bytes
# OLD replaced by NEW in its DER, as PEM in OUT.
der_patch() {
	openssl req -in "$1" -outform DER -out "$2.der"
	"$PY" - "$2.der" "$3" "$4" <<'PY' || fail "patching $1"
import sys
path, old, new = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
der = open(path, "rb").read()
i = der.find(old)
assert i >= 0, f"{old.hex()} not in {path}"
open(path, "wb").write(der[:i] + new + der[i + len(old):])
PY
	openssl req -inform DER -in "$2.der" -out "$2" 2>/dev/null ||
		{ echo "-----BEGIN CERTIFICATE REQUEST-----"; base64 -w64 "$2.der"
		  echo "-----END CERTIFICATE REQUEST-----"; } >"$2"
}

# rsa_csr NAME BITS [EXPONENT] [DIGEST]: an RSA key and CSR made by OpenSSL.
rsa_csr() {
	openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:$2" \
		-pkeyopt "rsa_keygen_pubexp:${3:-65537}" -out "$APP/$1.key" 2>/dev/null
	openssl req -new -key "$APP/$1.key" "-${4:-sha256}" -subj "/CN=$1.example.test" \
		-out "$APP/$1.csr" || fail "openssl could not make the $1 CSR"
}

step "the bad requests"
before=$(sign_calls)
[ "$before" -gt 0 ] || fail "the shim logged no signature for ca init: is the log working?"
echo "C_Sign* calls so far: $before"

# bad CSR PATTERN [OPTIONS]: cert sign of $APP/CSR.csr is refused saying PATTERN.
bad() {
	local csr=$1 pattern=$2
	shift 2
	echo "- $csr"
	expect_fail "$pattern" p11ca cert sign --ca hyg-ca --csr "$APP/$csr.csr" "$@"
}

rsa_csr rsa2048 2048
# The last byte of the DER is the last byte of the RSA signature: the request still
# parses, its proof of possession does not verify.
openssl req -in "$APP/rsa2048.csr" -outform DER -out "$APP/badpop.der"
"$PY" -c 'import sys; p=sys.argv[1]; d=bytearray(open(p,"rb").read()); d[-1]^=1; open(p,"wb").write(d)' \
	"$APP/badpop.der"
openssl req -inform DER -in "$APP/badpop.der" -out "$APP/badpop.csr"
# (openssl req -verify exits 0 either way; its message tells.)
openssl req -in "$APP/badpop.csr" -noout -verify 2>&1 | grep -q 'verify failure' ||
	fail "the flipped byte did not break the signature"
bad badpop "signature does not verify"

rsa_csr sha1 2048 65537 sha1
bad sha1 "sha1WithRSAEncryption.*weak"
rsa_csr md5 2048 65537 md5
bad md5 "md5WithRSAEncryption.*weak"
rsa_csr rsa1024 1024
bad rsa1024 "RSA key has 1024 bits"
rsa_csr rsa2052 2052
bad rsa2052 "2052 bits, not a multiple of 8"
rsa_csr e3 2048 3
bad e3 "exponent 3 is too small"
# e = 65537 (02 03 01 00 01) patched to 65538: even. The signature no longer matches, so
# the key must be judged before the proof of possession.
der_patch "$APP/rsa2048.csr" "$APP/even.csr" 0203010001 0203010002
bad even "exponent is even"

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:secp256k1 -nodes -keyout "$APP/k1.key" \
	-out "$APP/k1.csr" -subj /CN=k1.example.test 2>/dev/null
bad k1 "EC key is on secp256k1"
make_csr p256 point.example.test
# The last byte of the uncompressed point (its Y coordinate's last byte) changed: off the
# curve (a change of one bit in Y leaves a valid point with negligible probability).
"$PY" - "$APP/p256.csr" "$APP/badpoint.csr" <<'PY'
import base64, subprocess, sys
der = subprocess.run(["openssl", "req", "-in", sys.argv[1], "-outform", "DER"],
                     check=True, capture_output=True).stdout
i = der.find(bytes.fromhex("03420004"))
assert i > 0
end = i + 4 + 64 - 1
d = bytearray(der)
d[end] ^= 0x01
b64 = base64.encodebytes(bytes(d)).decode().replace("\n", "")
pem = "\n".join(b64[j:j + 64] for j in range(0, len(b64), 64))
open(sys.argv[2], "w").write(f"-----BEGIN CERTIFICATE REQUEST-----\n{pem}\n-----END CERTIFICATE REQUEST-----\n")
PY
bad badpoint "not a valid point"

# A request over csr_max_bytes (2048 here): a good key with many names in its (ignored)
# extension request.
names=$(seq 1 80 | sed 's/.*/DNS:name-&.example.test/' | paste -sd,)
openssl req -new -key "$APP/rsa2048.key" -subj /CN=big.example.test \
	-addext "subjectAltName=$names" -out "$APP/big.csr"
echo "big.csr: $(openssl req -in "$APP/big.csr" -outform DER | wc -c) bytes of DER"
bad big "at most 2048 \(csr_max_bytes\)"

openssl req -new -key "$APP/rsa2048.key" -subj "/O=No Name Org" -out "$APP/nocn.csr"
bad nocn "name nobody|a CN or at least one SAN"

step "DNS names that must be refused, sent over the RPC (the CLI checks them too)"
make_csr dns dns.example.test
# pybad PATTERN SAN: refused by the server, saying PATTERN.
# A miss is recorded and the test goes on, so one run shows every rule that does not hold;
# the test fails at the end.
missed=()
pybad() {
	local out
	if out=$(pysign "$APP/dns.csr" "$2" 2>&1); then
		echo "  ISSUED for '$2': $out"
		missed+=("the server issued for SAN '$2' ($out)")
		return 0
	fi
	echo "  $out"
	printf '%s' "$out" | grep -qiE -- "$1" || missed+=("the refusal of '$2' does not say /$1/")
}
long_label=$(printf 'a%.0s' $(seq 64))
label63=$(printf 'b%.0s' $(seq 63))
pybad "NUL" 'DNS:evil.test\x00.example.test'
pybad "character other than" 'DNS:ctl\x01.example.test'

pybad "character other than" "DNS:bad!name.example.test"
pybad "empty label" "DNS:empty..example.test"
pybad "label of 64 characters" "DNS:$long_label.example.test"
# 254 octets, every label within 63; bare (no "DNS:") so that it fits the RPC field
# (255 bytes) and reaches the server's own check.
pybad "at most 253" "$label63.$label63.$label63.$(printf 'c%.0s' $(seq 62))"
pybad "wildcard.*leftmost label" "DNS:www.*.example.test"
pybad "wildcard.*leftmost label" "DNS:*.*.example.test"
bad dns "allows at most 3 \(\[engine\] max_sans\)" --san a.example.test --san b.example.test \
	--san c.example.test --san d.example.test
# The CLI refuses a bad name before any request is made.
bad dns "empty label" --san "empty..example.test"

[ ${#missed[@]} = 0 ] || printf 'MISS: %s\n' "${missed[@]}" >&2
after=$(sign_calls)
echo "C_Sign* calls after the bad requests: $after"
[ "$after" = "$before" ] || {
	grep -E 'fn=C_Sign' "$APP/p11.log" | tail -n $((after - before)) >&2
	fail "bad requests reached the HSM: $((after - before)) C_Sign* calls"
}

step "one good request does sign (the counter works)"
p11ca cert sign --ca hyg-ca --csr "$APP/rsa2048.csr" --out "$APP/good.pem" >/dev/null
openssl verify -CAfile "$APP/hyg-ca.pem" "$APP/good.pem" >/dev/null || fail "good.pem"
good=$(sign_calls)
echo "C_Sign* calls after one good request: $good"
[ "$good" -gt "$after" ] || fail "the good request made no C_Sign call: the count proves nothing"

appliance_stop
APP_PID=
[ ${#missed[@]} = 0 ] || fail "${#missed[@]} DNS-name rules do not hold"
echo "PASS"
