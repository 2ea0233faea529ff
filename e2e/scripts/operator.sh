#!/usr/bin/env bash
# arrakis-operator as a local process against the local cluster, for `make demo` (tests run the
# controllers in-process). Usage: operator.sh start|stop|status. Env: ARRAKIS_NATS_PORT (4222).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dir="$ARRAKIS_STATE/operator"
pidfile="$dir/arrakis-operator.pid"
running() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
  start)
    if running; then log "arrakis-operator already running (pid $(cat "$pidfile"))"; exit 0; fi
    cd "$ARRAKIS_ROOT"
    cargo build --locked -p arrakis-operator >&2
    mkdir -p "$dir"
    bin="${CARGO_TARGET_DIR:-$ARRAKIS_ROOT/target}/debug/arrakis-operator"
    # Detached like nats-server, so `make demo` returns while it keeps reconciling.
    KUBECONFIG="$(kubeconfig_path)" NATS_URL="nats://127.0.0.1:${ARRAKIS_NATS_PORT:-4222}" \
      setsid "$bin" run </dev/null >"$dir/arrakis-operator.log" 2>&1 &
    echo $! >"$pidfile"
    log "arrakis-operator running (log: $dir/arrakis-operator.log)"
    ;;
  stop)
    if running; then kill "$(cat "$pidfile")"; log "arrakis-operator stopped"; fi
    rm -f "$pidfile"
    ;;
  status)
    running && echo "running (pid $(cat "$pidfile"))" || echo "stopped"
    ;;
  *) die "usage: operator.sh start|stop|status" ;;
esac
