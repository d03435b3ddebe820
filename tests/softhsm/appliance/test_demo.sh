#!/usr/bin/env bash
# The README's main command is a test: scripts/demo.sh against the build under test
# (P11CA_DEMO_PREBUILT=1 skips bootstrap and make; OUT selects build or build/san).
set -euo pipefail
cd "$(dirname "$0")/../../.."
P11CA_DEMO_PREBUILT=1 P11CA_DEMO_DIR="${TMPDIR:-/tmp}/demo" exec scripts/demo.sh
