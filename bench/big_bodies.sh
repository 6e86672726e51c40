#!/usr/bin/env bash
# Big bodies against every surface: builds the release binary and prints, per request,
# the status and the wall time until it is answered (see bench/big_bodies.py for what is
# sent). SQLite by default; `--pg postgres://…/postgres` runs it on PostgreSQL, each
# server on a database of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin fleetledger
python3 bench/big_bodies.py --bin target/release/fleetledger "$@"
