# tests/bench/: benchmarks. Not part of `make check` — `make bench` runs them (scripts/bench.sh)
# and writes docs/BENCHMARKS.md. Each p11ca-bench-* links every project library.
BENCHES += p11ca-bench-hsm
p11ca-bench-hsm_SRCS := tests/bench/hsm_bench.c tests/bench/hsm_report.c tests/bench/bench.c

# Smoke test only: the benchmark runs and prints positive rates (no timing assertions).
TEST_SCRIPTS += tests/bench/test_bench_quick.sh
