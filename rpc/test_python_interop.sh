#!/usr/bin/env bash
# The contract works from another language: C (nanopb) encodes Requests, Python (stock
# `protoc --python_out`, Debian's python3-protobuf) decodes them and answers with Responses,
# C decodes those. Then the limits hold across the boundary: a Python-built field one byte
# over its nanopb bound is refused by C, and Python's reader refuses what C's refuses.
#
# Run by `make check` (TEST_SCRIPTS) from the repository root with OUT and TMPDIR set.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build}
tool=$OUT/tests/rpc/tools/frame_dump
py=/usr/bin/python3 # PITFALLS.md: the python3 on PATH may lack Debian's protobuf
roundtrip=rpc/clients/python/roundtrip.py
work=$(mktemp -d "${TMPDIR:-/tmp}/p11ca-interop.XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

command -v protoc >/dev/null || fail "protoc not found (apt-get install protobuf-compiler)"
[ -x "$tool" ] || fail "$tool not built (make OUT=$OUT all)"

# 1. Stock protoc output, generated fresh from the unmodified .proto.
protoc --python_out="$work" -I rpc rpc/p11ca.proto
export PYTHONPATH=$work

# 2. C -> Python -> C.
"$tool" request >"$work/requests.bin"
"$py" $roundtrip <"$work/requests.bin" >"$work/responses.bin" 2>"$work/python.log" ||
	fail "roundtrip.py: $(cat "$work/python.log")"
"$tool" response <"$work/responses.bin" >"$work/c.txt"

# What Python saw: every field frame_dump.c set, UTF-8 and presence included. The CSR is
# bytes (i*31+7) mod 256 for i < 300.
csr_sha=$("$py" -c 'import hashlib; print(hashlib.sha256(bytes((i*31+7)&255 for i in range(300))).hexdigest()[:16])')
cat >"$work/python.expected" <<EOF
python: request id=9833440827789222417 api_version=1 op=cert_sign ca=issuing-1 profile=tls-server subject="CN=Zoë's server,O=Ünicode Ltd" sans=['DNS:www.example.net', 'IP:192.0.2.7', 'example.org'] expires_days=397 csr=300 bytes sha256=$csr_sha
python: request id=2 api_version=1 op=ca_init name=issuing-1 parent=root subject='CN=Example Issuing CA 1,O=Example' key_type=KEY_TYPE_P384 signature_algorithm=SIGNATURE_ALGORITHM_ECDSA_SHA384 path_length=0 (present) expires_days=3650
EOF
diff -u "$work/python.expected" "$work/python.log" || fail "Python decoded something else"

# What C saw in Python's answers: the last CSR bytes reversed are 3C 1D FE DF; enums by
# number (CERT_STATUS_VALID 1, KEY_TYPE_P256 4, KEY_TYPE_P384 5, ECDSA_SHA384 8,
# CA_STATUS_REVOKED 3, CA_COMPROMISE 2); a negative int64; path_length present and 0.
cat >"$work/c.expected" <<'EOF'
response id=9833440827789222417 status=1 message="answered by python" result=cert_sign
  serial=7F00AB12 ca=issuing-1 profile=tls-server
  subject=CN=Zoë's server,O=Ünicode Ltd
  not_before=1700000000 not_after=1734300800 status=1 key_type=4 revoked=0
  certificate_der=300 bytes head=3C1DFEDF
response id=2 status=1 message="answered by python" result=ca_init
  name=issuing-1 parent=root key_type=5 signature_algorithm=8
  path_length=0 status=3 revoked_at=-1 reason=2
EOF
diff -u "$work/c.expected" "$work/c.txt" || fail "C decoded something else"

# 3. A Python-built status message one byte over max_size: C refuses it, whole.
"$py" $roundtrip --oversize <"$work/requests.bin" >"$work/over.bin" 2>/dev/null
if "$tool" response <"$work/over.bin" >/dev/null 2>"$work/over.log"; then
	fail "C accepted an over-limit string from Python"
fi
grep -q "string overflow" "$work/over.log" || fail "unexpected refusal: $(cat "$work/over.log")"

# 4. Python's reader keeps C's framing rules: truncated stream, over-limit length.
head -c 10 "$work/requests.bin" >"$work/truncated.bin"
if "$py" $roundtrip <"$work/truncated.bin" >/dev/null 2>"$work/trunc.log"; then
	fail "Python accepted a truncated frame"
fi
grep -q "truncated frame" "$work/trunc.log" || fail "unexpected: $(cat "$work/trunc.log")"
printf '\x00\x01\x00\x01' >"$work/big.bin"
if "$py" $roundtrip <"$work/big.bin" >/dev/null 2>"$work/big.log"; then
	fail "Python accepted an over-limit frame length"
fi
grep -q "exceeds the 65536-byte limit" "$work/big.log" || fail "unexpected: $(cat "$work/big.log")"

echo "python interop: C -> Python -> C round trip and limits OK"
