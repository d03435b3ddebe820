#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: install what is missing, build,
# run every unit and SoftHSM2 test, then all of them again under ASan + UBSan.
# This is the README's test command and exactly what .ci/run executes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
jobs=$(nproc 2>/dev/null || echo 2)
make -j"$jobs" all
make check
make -j"$jobs" SANITIZE=1 all
make check SANITIZE=1
