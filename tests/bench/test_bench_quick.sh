#!/usr/bin/env bash
# Smoke test of p11ca-bench-hsm (not a benchmark, and no timing assertions): --quick runs on
# a fresh SoftHSM2 token, prints the rates table with a positive rate in every cell, and
# --markdown rewrites only the hsm section of a file, or creates the file with its intro.
# Then the same for p11ca-bench-rpc, which starts the p11cad of the build under test.
set -euo pipefail
OUT=${OUT:-build}
bin=$OUT/bin/p11ca-bench-hsm
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-quick.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# A file with someone else's section, hand-written text and a stale hsm section.
doc=$tmp/BENCHMARKS.md
cat >"$doc" <<'MD'
# Intro written by hand
<!-- bench:other:begin -->
another benchmark's section
<!-- bench:other:end -->
<!-- bench:hsm:begin -->
stale results
<!-- bench:hsm:end -->
trailing notes
MD

"$bin" --quick --markdown "$doc" >"$tmp/out" || fail "p11ca-bench-hsm --quick exited with $?"
cat "$tmp/out"

# Rates table rows: "| key | algorithm | six rates |" split on '|' gives 10 fields.
awk -F'|' '
	/^\| (rsa2048|p256) \| / && NF == 10 {
		rows++
		for (i = 4; i <= 9; i++)
			if ($i + 0 <= 0) { print "not a positive rate: " $0; bad = 1 }
	}
	END { if (rows != 2) { print rows + 0 " rate rows, expected 2"; bad = 1 }; exit bad }
' "$tmp/out" || fail "the rates table is incomplete"
grep -q '^| p256 | ecdsa-sha256 | [0-9.]* | [0-9.]* | .* µs' "$tmp/out" || fail "no ratio row for p256"

for kept in '# Intro written by hand' "another benchmark's section" 'trailing notes' \
	'| p256 | ecdsa-sha256 |'; do
	grep -qF -- "$kept" "$doc" || fail "'$kept' missing from the updated file"
done
grep -q 'stale results' "$doc" && fail "the stale hsm section was not replaced"
[ "$(grep -c 'bench:hsm:begin' "$doc")" -eq 1 ] || fail "hsm begin marker not exactly once"
[ "$(grep -c 'bench:other:end' "$doc")" -eq 1 ] || fail "other section's markers changed"

# A missing file is created with the intro and the markers.
new=$tmp/new/BENCHMARKS.md
mkdir -p "$(dirname "$new")"
"$bin" --keys p256 --seconds 0.05 --rounds 1 --markdown "$new" >/dev/null ||
	fail "second run exited with $?"
head -n 1 "$new" | grep -q '^# Benchmarks$' || fail "new file lacks the intro"
grep -q '^<!-- bench:hsm:end -->$' "$new" || fail "new file lacks the end marker"

# A section with a marker missing is refused before anything runs, and left alone.
printf '<!-- bench:hsm:begin -->\nhand-edited\n' >"$tmp/broken.md"
cp "$tmp/broken.md" "$tmp/broken.orig"
if "$bin" --quick --markdown "$tmp/broken.md" >/dev/null 2>"$tmp/err"; then
	fail "a broken hsm section was accepted"
fi
grep -q 'broken' "$tmp/err" || fail "unclear error for broken markers: $(cat "$tmp/err")"
cmp -s "$tmp/broken.md" "$tmp/broken.orig" || fail "a broken file was modified"

# A module that does not exist is a clear failure, not a crash.
if "$bin" --quick --module /nonexistent/libpkcs11.so >/dev/null 2>"$tmp/err"; then
	fail "a missing module was accepted"
fi
grep -q 'not found' "$tmp/err" || fail "unclear error for a missing module: $(cat "$tmp/err")"

# p11ca-bench-rpc, briefly, against the p11cad of this build: both tables complete with
# positive numbers, and only the rpc section of the file rewritten.
rpc=$OUT/bin/p11ca-bench-rpc
"$rpc" --seconds 0.5 --markdown "$doc" >"$tmp/rpc.out" || fail "p11ca-bench-rpc exited with $?"
cat "$tmp/rpc.out"
# "| key | RPC certs/s | bare | hsm_sign | RPC/bare | target |" and "| key | p11cad CPU/cert |
# client CPU/cert | CPUs busy | bare CPU/sig | hsm_sign CPU/sig |" both split into 8 fields.
awk -F'|' '
	/^\| (rsa2048|p256) \| / && NF == 8 {
		rows++
		for (i = 3; i <= 7; i++)
			if (i < 7 || $7 !~ /—|≥/)
				if ($i + 0 <= 0) { print "not a positive number: " $0; bad = 1 }
	}
	END { if (rows != 4) { print rows + 0 " rows, expected 4"; bad = 1 }; exit bad }
' "$tmp/rpc.out" || fail "the rpc tables are incomplete"
grep -q '^| rsa2048 | .* | ≥ 0.80: \(met\|\*\*missed\*\*\) |$' "$tmp/rpc.out" ||
	fail "no verdict on the RSA-2048 target"
for kept in '# Intro written by hand' "another benchmark's section" 'trailing notes' \
	'| p256 | ecdsa-sha256 |' '## Issuance over RPC (p11cad)'; do
	grep -qF -- "$kept" "$doc" || fail "'$kept' missing after the rpc run"
done
[ "$(grep -c 'bench:rpc:begin' "$doc")" -eq 1 ] || fail "rpc begin marker not exactly once"
if "$rpc" --seconds 0.5 --p11cad /nonexistent/p11cad >/dev/null 2>"$tmp/err"; then
	fail "a missing p11cad was accepted"
fi
grep -q 'build p11cad' "$tmp/err" || fail "unclear error for a missing p11cad: $(cat "$tmp/err")"
echo "ok"
