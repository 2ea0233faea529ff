#!/usr/bin/env bash
# `make bench`: release builds against real servers; every figure is a ratio to a baseline
# measured in the same run. Usage: bench.sh gateway|worker|all [arguments for the bench binary]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

what="${1:-all}"
shift || true
"$ARRAKIS_ROOT/e2e/scripts/build-tools.sh" nats
cd "$ARRAKIS_ROOT"
cargo build --locked --release -p arrakis-gateway -p arrakis-worker -p arrakis-bench
target="${CARGO_TARGET_DIR:-$ARRAKIS_ROOT/target}/release"
export ARRAKIS_NATS_SERVER="$(nats_bin_dir)/nats-server"
export ARRAKIS_NATS_CLI="$(nats_bin_dir)/nats"
export ARRAKIS_GATEWAY_BIN="$target/arrakis-gateway"
export ARRAKIS_WORKER_BIN="$target/arrakis-worker"
case "$what" in
  gateway) "$target/bench-gateway" "$@" ;;
  worker)
    while IFS='=' read -r key value; do export "$key=$value"; done < <("$ARRAKIS_ROOT/e2e/scripts/bench-deps.sh")
    "$target/bench-worker" "$@"
    ;;
  all)
    "$0" gateway "$@"
    "$0" worker
    ;;
  *) die "unknown benchmark '$what': use gateway, worker or all" ;;
esac
