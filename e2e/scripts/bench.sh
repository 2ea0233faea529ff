#!/usr/bin/env bash
# `make bench`: release builds against real servers. Extra arguments go to bench-gateway
# (e.g. --runs 3 --events 20000). Each figure is a ratio to a baseline measured in the same run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$ARRAKIS_ROOT/e2e/scripts/build-tools.sh" nats
cd "$ARRAKIS_ROOT"
cargo build --locked --release -p arrakis-gateway -p arrakis-bench
target="${CARGO_TARGET_DIR:-$ARRAKIS_ROOT/target}/release"
export ARRAKIS_NATS_SERVER="$(nats_bin_dir)/nats-server"
export ARRAKIS_GATEWAY_BIN="$target/arrakis-gateway"
"$target/bench-gateway" "$@"
