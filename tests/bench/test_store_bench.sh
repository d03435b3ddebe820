#!/usr/bin/env bash
# Smoke test of p11ca-bench-store (not a benchmark, and no timing assertions): --quick fills
# 10,000 certificates, prints every row of the table with a positive p50 and what each
# operation found, and --markdown rewrites only the store section of a file.
set -euo pipefail
OUT=${OUT:-build}
bin=$OUT/bin/p11ca-bench-store
tmp=$(mktemp -d "${TMPDIR:-/tmp}/store-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

doc=$tmp/BENCHMARKS.md
cat >"$doc" <<'MD'
# Intro written by hand
<!-- bench:store:begin -->
stale results
<!-- bench:store:end -->
trailing notes
MD

TMPDIR=$tmp "$bin" --quick --markdown "$doc" >"$tmp/out" || fail "--quick exited with $?"
cat "$tmp/out"

# "| operation | timed | p50 | p99 | max | per op |" splits into 8 fields on '|'.
awk -F'|' '
	NF == 8 && $3 ~ /^ [0-9]+ $/ {
		rows++
		if ($4 + 0 <= 0) { print "no positive p50: " $0; bad = 1 }
		if ($2 ~ /existing|prefix/ && $7 + 0 != 1) { print "lookups must all hit: " $0; bad = 1 }
		if ($2 ~ /unknown/ && $7 + 0 != 0) { print "a random serial was found: " $0; bad = 1 }
		if ($2 ~ /page/ && $2 !~ /--ca/ && $7 + 0 != 32) { print "short page: " $0; bad = 1 }
	}
	END { if (rows != 9) { print rows + 0 " rows, expected 9"; bad = 1 }; exit bad }
' "$tmp/out" || fail "the table is incomplete"
grep -q '^## Storage at 10,000 certificates$' "$tmp/out" || fail "no title with the count"
grep -q '^Target (the issue.s): serial lookup p99 ≤ 50 µs: \(met\|\*\*missed\*\*\)' "$tmp/out" ||
	fail "no verdict on the lookup target"
for kept in '# Intro written by hand' 'trailing notes' '| serial lookup, existing |'; do
	grep -qF -- "$kept" "$doc" || fail "'$kept' missing from the updated file"
done
grep -q 'stale results' "$doc" && fail "the stale store section was not replaced"
# The database directory under TMPDIR was removed.
[ -z "$(find "$tmp" -maxdepth 1 -name 'p11ca-bench-store.*')" ] || fail "database left behind"

# Bad options are refused before anything is filled.
if "$bin" --count 5 >/dev/null 2>"$tmp/err"; then
	fail "--count 5 was accepted"
fi
grep -q -- '--count' "$tmp/err" || fail "unclear error for --count: $(cat "$tmp/err")"
echo "ok"
