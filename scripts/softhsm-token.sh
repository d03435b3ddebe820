#!/usr/bin/env bash
# Create a SoftHSM2 token in its own folder, for development, demos and CI.
#
#   scripts/softhsm-token.sh DIR LABEL
#
# Writes DIR/softhsm2.conf and DIR/tokens/, initialises token LABEL with random SO and
# user PINs stored in DIR/so.pin and DIR/user.pin (mode 0600), and prints the line to
# eval:  export SOFTHSM2_CONF=DIR/softhsm2.conf
# A token that already exists under DIR is kept (nothing is destroyed); its PIN files
# are reused.
#
# softhsm2-util takes PINs on its command line, so they are briefly visible to other
# users of this machine in `ps`: fine for a development token, not for production
# (use the HSM vendor's initialisation procedure there).
set -euo pipefail
if [ $# -ne 2 ]; then
	echo "usage: $0 DIR LABEL" >&2
	exit 64
fi
dir=$(mkdir -p "$1" && cd "$1" && pwd)
label=$2
umask 077
mkdir -p "$dir/tokens"
cat >"$dir/softhsm2.conf" <<CONF
# SoftHSM2 configuration for p11ca (scripts/softhsm-token.sh)
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF=$dir/softhsm2.conf

if softhsm2-util --show-slots 2>/dev/null | grep -q "Label:[[:space:]]*$label\$"; then
	echo "softhsm-token: token '$label' already exists in $dir; kept" >&2
else
	random_pin() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
	random_pin >"$dir/so.pin"
	random_pin >"$dir/user.pin"
	chmod 600 "$dir/so.pin" "$dir/user.pin"
	softhsm2-util --init-token --free --label "$label" \
		--so-pin "$(cat "$dir/so.pin")" --pin "$(cat "$dir/user.pin")" >/dev/null
	echo "softhsm-token: created token '$label' in $dir (PIN in $dir/user.pin)" >&2
fi
echo "export SOFTHSM2_CONF=$dir/softhsm2.conf"
