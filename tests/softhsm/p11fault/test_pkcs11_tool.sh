#!/usr/bin/env bash
# libp11fault.so under an outside PKCS#11 consumer, OpenSC's pkcs11-tool: pass-through
# (list, login, key generation, signing checked by OpenSSL), injected faults visible as tool
# failures, the log, and the module's own errors (bad environment, bad control file).
#
# Run from the repository root with OUT set (scripts/run-tests.sh does both); uses its own
# SoftHSM2 configuration and token directory under $TMPDIR.
set -euo pipefail

OUT=${OUT:-build}
shim="$PWD/$OUT/lib/libp11fault.so"
case $OUT in /*) shim="$OUT/lib/libp11fault.so" ;; esac
softhsm=${P11CA_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
label=p11fault-tool
so_pin=so-pin-1234
pin=user-pin-5678

fail() {
	echo "FAIL: $*" >&2
	exit 1
}
step() {
	echo "--- $*"
}

[ -f "$shim" ] || fail "$shim not found: build it first (make OUT=$OUT all)"
command -v pkcs11-tool >/dev/null || fail "pkcs11-tool not found (Debian package opensc)"

work=$(mktemp -d "${TMPDIR:-/tmp}/p11fault-tool.XXXXXX")
trap 'rm -rf "$work"' EXIT

# With SANITIZE=1 the shim is built with ASan, and pkcs11-tool is not: the ASan runtime must
# then be loaded first. Leaks in pkcs11-tool itself are not this test's business.
san_env=()
if readelf -d "$shim" | grep -q 'NEEDED.*libasan'; then
	san_env=(LD_PRELOAD="$(${CC:-cc} -print-file-name=libasan.so)"
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
fi

# pkcs11-tool through the shim; output (stdout and stderr) in $work/out.
tool() {
	env "${san_env[@]}" pkcs11-tool --module "$shim" "$@" >"$work/out" 2>&1
}
show() {
	sed 's/^/    | /' "$work/out" >&2
}
control() {
	# Atomic replace, as docs/p11fault.md asks (a new inode: the shim sees the change).
	printf '%s\n' "$1" >"$work/control.tmp"
	mv -f "$work/control.tmp" "$work/control"
}
log_count() { # log_count SUBSTRING...: the number of log lines containing every substring
	local lines
	lines=$(cat "$work/p11fault.log")
	for s in "$@"; do
		lines=$(grep -F -- "$s" <<<"$lines" || true)
	done
	if [ -z "$lines" ]; then echo 0; else wc -l <<<"$lines"; fi
}

export SOFTHSM2_CONF="$work/softhsm2.conf"
mkdir "$work/tokens"
cat >"$SOFTHSM2_CONF" <<EOF
directories.tokendir = $work/tokens
objectstore.backend = file
log.level = ERROR
EOF
softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$pin" >/dev/null ||
	fail "softhsm2-util could not create the test token"
export P11FAULT_MODULE="$softhsm"
export P11FAULT_CONTROL="$work/control"
export P11FAULT_LOG="$work/p11fault.log"

step "the module exports exactly C_GetFunctionList"
exports=$(nm -D --defined-only "$shim" | awk '{print $3}')
[ "$exports" = C_GetFunctionList ] || fail "exported symbols: ${exports//$'\n'/ }"

step "pass-through: list slots"
tool --list-slots || { show; fail "pkcs11-tool --list-slots failed through the shim"; }
grep -q "token label *: $label" "$work/out" || { show; fail "token $label not listed"; }

step "pass-through: login and EC P-256 key generation"
tool --token-label "$label" --login --pin "$pin" --keypairgen --key-type EC:prime256v1 \
	--id 01 --label tool-key || { show; fail "key generation failed"; }

step "pass-through: sign with --id, verified by OpenSSL"
printf 'hello' | openssl dgst -sha256 -binary >"$work/digest"
# The public key comes straight from SoftHSM, so the check does not trust the shim. (Also,
# pkcs11-tool 0.23 reads EC public keys with a use-after-free that ASan would report.)
pkcs11-tool --module "$softhsm" --token-label "$label" --read-object --type pubkey --id 01 \
	--output-file "$work/pub.der" >"$work/out" 2>&1 ||
	{ show; fail "reading the public key failed"; }
tool --token-label "$label" --login --pin "$pin" --sign --id 01 -m ECDSA \
	--signature-format openssl --input-file "$work/digest" --output-file "$work/sig" ||
	{ show; fail "signing failed"; }
openssl pkeyutl -verify -pubin -keyform DER -inkey "$work/pub.der" -in "$work/digest" \
	-sigfile "$work/sig" >/dev/null ||
	fail "the signature made through the shim does not verify"

step "fail rule: C_Sign fails, pkcs11-tool exits non-zero"
control "fail C_Sign CKR_DEVICE_ERROR"
if tool --token-label "$label" --login --pin "$pin" --sign --id 01 -m ECDSA \
	--input-file "$work/digest" --output-file "$work/sig2"; then
	show
	fail "pkcs11-tool succeeded although C_Sign was failing"
fi
[ "$(log_count 'fn=C_Sign ' 'rv=CKR_DEVICE_ERROR' 'fault=fail')" -eq 1 ] ||
	fail "the log does not show exactly one injected C_Sign failure"

step "fail rule on C_Login: the tool reports the injected code"
control "fail C_Login CKR_PIN_LOCKED"
if tool --token-label "$label" --login --pin "$pin" --list-objects; then
	show
	fail "login succeeded although C_Login was failing"
fi
grep -q CKR_PIN_LOCKED "$work/out" || { show; fail "pkcs11-tool did not report CKR_PIN_LOCKED"; }

step "flip-sign: the signature no longer verifies"
control "flip-sign"
tool --token-label "$label" --login --pin "$pin" --sign --id 01 -m ECDSA \
	--signature-format openssl --input-file "$work/digest" --output-file "$work/sig3" ||
	{ show; fail "signing with flip-sign failed"; }
if openssl pkeyutl -verify -pubin -keyform DER -inkey "$work/pub.der" -in "$work/digest" \
	-sigfile "$work/sig3" >/dev/null 2>&1; then
	fail "a flipped signature verified"
fi

step "bad control file: refused whole, with FILE:LINE on stderr"
control "fail C_GetSlotList CKR_DEVICE_ERROR
fial C_Sign CKR_DEVICE_ERROR"
tool --list-slots || { show; fail "a bad control file injected a fault"; }
grep -q "$work/control:2: unknown command 'fial'" "$work/out" ||
	{ show; fail "no FILE:LINE message for the bad control file"; }

step "the log: one line per call, documented fields, no PIN"
control ""
[ "$(log_count 'fn=C_GetFunctionList ')" -ge 5 ] || fail "C_GetFunctionList calls not logged"
[ "$(log_count 'fn=C_Login ' 'rv=CKR_OK')" -ge 3 ] || fail "logins not logged"
line_re='^pid=[0-9]+ tid=[0-9]+ fn=C_[A-Za-z]+ session=(-|0x[0-9a-f]+) '
line_re+='rv=(CKR_[A-Z_]+|0x[0-9a-f]+) us=[0-9]+( fault=[a-z,-]+)?$'
bad=$(grep -Ecv "$line_re" "$work/p11fault.log" || true)
[ "$bad" -eq 0 ] || fail "$bad log lines do not match the documented format"
if grep -qF -- "$pin" "$work/p11fault.log"; then
	fail "the user PIN appears in the log"
fi

step "bad environment: clear errors, CKR_GENERAL_ERROR"
if P11FAULT_MODULE='' tool --list-slots; then fail "loaded without P11FAULT_MODULE"; fi
grep -q 'P11FAULT_MODULE is not set' "$work/out" ||
	{ show; fail "no message for unset P11FAULT_MODULE"; }
if P11FAULT_MODULE="$work/nonexistent.so" tool --list-slots; then fail "loaded a missing module"; fi
grep -q 'cannot load P11FAULT_MODULE' "$work/out" ||
	{ show; fail "no message for a missing module"; }

echo "PASS: libp11fault.so under pkcs11-tool"
