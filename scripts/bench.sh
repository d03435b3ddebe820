#!/usr/bin/env bash
# Run benchmarks and collect their results in docs/BENCHMARKS.md.
#
#   scripts/bench.sh BENCH...    (make bench passes every $(OUT)/bin/p11ca-bench-*)
#
# Each benchmark is run as `BENCH --markdown docs/BENCHMARKS.md [$P11CA_BENCH_ARGS]` and
# rewrites only its own marked section of that file. Benchmarks are not tests: nothing here
# judges a result; a benchmark fails only when it cannot run.
#
# Environment:
#   P11CA_BENCH_DOC    the Markdown file (default docs/BENCHMARKS.md)
#   P11CA_BENCH_ARGS   extra options for every benchmark, e.g. "--seconds 6" or "--slow"
#                      (word-split; see each benchmark's --help)
# The benchmarks use SoftHSM2 tokens of their own, so it must be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

doc=${P11CA_BENCH_DOC:-docs/BENCHMARKS.md}
module=/usr/lib/softhsm/libsofthsm2.so

if [ $# -eq 0 ]; then
	echo "bench.sh: no benchmarks given; run it through 'make bench'" >&2
	exit 2
fi
if ! command -v softhsm2-util >/dev/null || [ ! -r "$module" ]; then
	echo "bench.sh: SoftHSM2 is missing (softhsm2-util, $module): the benchmarks sign" \
		"on SoftHSM2 tokens. Install it with scripts/bootstrap.sh (or apt-get install" \
		"softhsm2) and run 'make bench' again." >&2
	exit 1
fi

# The revision measured, printed with the results. rev-parse only reads the repository.
P11CA_BENCH_REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
export P11CA_BENCH_REVISION
mkdir -p "$(dirname "$doc")"

start=$(date +%s)
for bench in "$@"; do
	if [ ! -x "$bench" ]; then
		echo "bench.sh: $bench is not an executable benchmark; build it with 'make'" >&2
		exit 1
	fi
	echo "bench: $bench" >&2
	# shellcheck disable=SC2086 # P11CA_BENCH_ARGS is a list of options on purpose
	if ! "$bench" --markdown "$doc" ${P11CA_BENCH_ARGS:-}; then
		echo "bench.sh: $bench failed; $doc keeps that benchmark's previous results" >&2
		exit 1
	fi
done
echo "bench: results in $doc ($(($(date +%s) - start)) s)" >&2
