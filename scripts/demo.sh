#!/usr/bin/env bash
# The README's main command: from a fresh Debian 12 machine, install what is missing,
# build, create a SoftHSM2 token, generate a CA key of every supported type on it, sign
# with each through p11ca's PKCS#11 core, and have OpenSSL verify every signature.
#
# Later issues grow this into the full appliance demo (p11cad, CA, issue, revoke, CRL,
# OCSP). Everything it creates lives under build/demo (override with P11CA_DEMO_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
make -j"$(nproc 2>/dev/null || echo 2)" all >/dev/null

state=${P11CA_DEMO_DIR:-build/demo}
rm -rf "$state"
mkdir -p "$state"
state=$(cd "$state" && pwd)
eval "$(scripts/softhsm-token.sh "$state/hsm" p11ca-demo)"

hsm() {
	build/bin/p11ca-hsm --token "pkcs11:token=p11ca-demo" \
		--pin-source "file:$state/hsm/user.pin" "$@"
}
step() { printf '\n== %s\n' "$*"; }

step "token status before any key"
hsm status

# What a CA signs is a TBSCertificate of a few hundred bytes; any bytes do for the demo.
head -c 700 /dev/urandom >"$state/tbs.bin"

verify() { # TYPE ALG PUB SIG
	local md
	case $2 in
	*sha384) md=-sha384 ;;
	*sha512) md=-sha512 ;;
	*) md=-sha256 ;;
	esac
	case $2 in
	ed25519)
		openssl pkeyutl -verify -pubin -inkey "$3" -rawin -in "$state/tbs.bin" -sigfile "$4" ;;
	rsa-pss-*)
		openssl dgst "$md" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1 \
			-verify "$3" -signature "$4" "$state/tbs.bin" ;;
	*)
		openssl dgst "$md" -verify "$3" -signature "$4" "$state/tbs.bin" ;;
	esac
}

for spec in rsa2048:rsa-pkcs1-sha256 rsa3072:rsa-pss-sha256 rsa4096:rsa-pkcs1-sha512 \
	p256:ecdsa-sha256 p384:ecdsa-sha384 p521:ecdsa-sha512 ed25519:ed25519; do
	type=${spec%%:*} alg=${spec#*:}
	step "$type: generate 'ca-$type' in the HSM, sign with $alg, verify with openssl"
	hsm keygen "$type" "ca-$type" >"$state/ca-$type.pub.pem"
	hsm sign "ca-$type" "$alg" "$state/tbs.bin" "$state/ca-$type.sig"
	verify "$type" "$alg" "$state/ca-$type.pub.pem" "$state/ca-$type.sig"
done

step "a second key with an existing label is refused (keys are never replaced)"
if hsm keygen p256 ca-p256 >/dev/null; then
	echo "demo: ERROR: duplicate label was accepted" >&2
	exit 1
fi

step "token status after the demo"
hsm status
printf '\ndemo: all %d key types generated in SoftHSM2, signed, and verified by OpenSSL\n' 7
