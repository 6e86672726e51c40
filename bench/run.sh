#!/usr/bin/env bash
# Runs fleetledger's benchmarks against the local PostgreSQL and NATS and prints each
# figure beside this machine's ceiling for the same work. Results go in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PG="${FLEETLEDGER_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
NATS="${FLEETLEDGER_BENCH_NATS:-nats://127.0.0.1:4222}"
cargo build --release --example latency
echo "== commit -> JetStream subscriber latency =="
./target/release/examples/latency --pg "$PG" --nats "$NATS"
cargo build --release --example replay
echo "== rebuild throughput and time travel =="
./target/release/examples/replay --pg "$PG" --events "${FLEETLEDGER_BENCH_EVENTS:-1000000}"
cargo build --release --example http
echo "== write and read paths over HTTP (in-process load generator) =="
./target/release/examples/http --pg "$PG" --seconds "${FLEETLEDGER_BENCH_SECONDS:-10}"
# The external load generator, and pgbench beside it.
if ! command -v wrk >/dev/null 2>&1 || ! command -v pgbench >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq wrk postgresql-client >/dev/null
fi
cargo build --release --bin fleetledger --example bare --example scale
echo "== under wrk, beside pgbench and a bare axum handler (tables for BENCHMARKS.md) =="
FLEETLEDGER_BENCH_POSTGRES="$PG" FLEETLEDGER_BENCH_NATS="$NATS" python3 bench/external.py \
    --seconds "${FLEETLEDGER_BENCH_SECONDS:-10}" --scale-events "${FLEETLEDGER_BENCH_SCALE_EVENTS:-10000000}"
echo "== instructions per cached read, counted by callgrind =="
command -v valgrind >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
FLEETLEDGER_BENCH_POSTGRES="$PG" FLEETLEDGER_BENCH_NATS="$NATS" python3 bench/instructions.py \
    --bin target/release/fleetledger --bare target/release/examples/bare
echo "== 100k-element bodies on every surface =="
bench/big_bodies.sh
