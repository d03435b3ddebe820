# tests/bench/: benchmarks. Not part of `make check` — `make bench` runs them (scripts/bench.sh)
# and writes docs/BENCHMARKS.md. Each p11ca-bench-* links every project library.
BENCHES += p11ca-bench-hsm
p11ca-bench-hsm_SRCS := tests/bench/hsm_bench.c tests/bench/hsm_report.c tests/bench/bench.c

# Smoke test only: the benchmark runs and prints positive rates (no timing assertions).
TEST_SCRIPTS += tests/bench/test_bench_quick.sh

# Durable certificates/s through p11cad over RPC next to the bare C_Sign rate of the same
# CA key; starts the p11cad built beside it.
BENCHES += p11ca-bench-rpc
p11ca-bench-rpc_SRCS := tests/bench/rpc_bench.c tests/bench/rpc_daemon.c tests/bench/rpc_load.c \
                        tests/bench/rpc_bare.c tests/bench/rpc_report.c tests/bench/bench.c

# storage/ at a million certificates: serial lookups and `cert list` pages (p50/p99).
BENCHES += p11ca-bench-store
p11ca-bench-store_SRCS := tests/bench/store_bench.c tests/bench/store_fill.c \
                          tests/bench/store_report.c tests/bench/bench.c
# Smoke run at 10,000 certificates (under a second): the table is complete and correct.
TEST_SCRIPTS += tests/bench/test_store_bench.sh
