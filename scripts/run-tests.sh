#!/usr/bin/env bash
# Run test suites and print one summary line a CI can read.
#
#   scripts/run-tests.sh SUITE...
#
# A suite is a cmocka binary or an executable test script. Each runs in its own temporary
# directory (TMPDIR), with its output kept in $OUT/test-logs/<name>.log and shown when it
# fails. The last line is "N passed, N failed" (suites), and the exit status is non-zero
# when any suite failed.
set -u
OUT=${OUT:-build}
# Leaks inside third-party modules (SoftHSM2) are suppressed by name, never ours. The slow
# unwinder is needed for that: libcrypto has no frame pointers, so the fast one stops
# before reaching the module that called it.
export ASAN_OPTIONS="fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
logdir=$OUT/test-logs
rm -rf "$logdir"
mkdir -p "$logdir"

passed=0
failed=0
failed_names=()
for suite in "$@"; do
	name=$(echo "${suite#"$OUT"/tests/}" | tr '/' '_')
	log=$logdir/$name.log
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/p11ca-test.XXXXXX")
	start=$(date +%s)
	if TMPDIR=$tmp OUT=$OUT "$suite" >"$log" 2>&1; then
		passed=$((passed + 1))
		printf '  PASS  %-40s %3ss\n' "$name" $(($(date +%s) - start))
	else
		failed=$((failed + 1))
		failed_names+=("$name")
		printf '  FAIL  %-40s %3ss (log: %s)\n' "$name" $(($(date +%s) - start)) "$log"
		sed 's/^/        | /' "$log" | tail -n 60
	fi
	rm -rf "$tmp"
done

# The cmocka totals, summed over every suite, for readers who want test-case counts.
cat "$logdir"/*.log 2>/dev/null | awk '
	/^\[  PASSED  \] [0-9]+ test\(s\)\./ { p += $4 }
	/^\[  FAILED  \] [0-9]+ test\(s\), listed below:/ { f += $4 }
	END { printf "test cases: %d passed, %d failed (cmocka)\n", p, f }' 
[ "$failed" -gt 0 ] && echo "failed suites: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
