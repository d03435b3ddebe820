#!/usr/bin/env bash
# Install every Debian package p11ca needs to build, test, benchmark and run the demo.
# Idempotent: only missing packages are installed, so a second run costs a few dpkg look-ups.
# Both README commands and .ci/run start here, so a fresh Debian 12 machine needs nothing else.
set -euo pipefail

PACKAGES=(
	# toolchain
	build-essential pkg-config clang clang-format libclang-rt-14-dev
	# libraries (FEATURES.md, "Libraries to lean on")
	libssl-dev libp11-kit-dev liblmdb-dev libnanopb-dev libinih-dev libidn2-dev
	libmicrohttpd-dev libsystemd-dev libseccomp-dev libcmocka-dev
	# code generators and build configuration
	nanopb protobuf-compiler python3-protobuf python3-kconfiglib
	# HSM and outside tools used as independent checks
	softhsm2 opensc gnutls-bin libp11-dev libengine-pkcs11-openssl openssl
	lmdb-utils faketime valgrind
)

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
fi
echo "bootstrap: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
