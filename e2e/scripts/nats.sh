#!/usr/bin/env bash
# A long-running nats-server with JetStream for `make demo` (tests start their own, per test).
# Usage: nats.sh start|stop|status. Env: ARRAKIS_NATS_PORT (4222).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

port="${ARRAKIS_NATS_PORT:-4222}"
dir="$ARRAKIS_STATE/nats"
pidfile="$dir/nats-server.pid"

running() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
  start)
    "$ARRAKIS_ROOT/e2e/scripts/build-tools.sh" nats
    if running; then log "nats-server already running (pid $(cat "$pidfile"))"; exit 0; fi
    mkdir -p "$dir"
    # Detached from this shell and its pipes, so `make demo | …` returns; the server writes its own pid file.
    setsid "$(nats_bin_dir)/nats-server" --addr 127.0.0.1 --port "$port" --jetstream --store_dir "$dir/jetstream" \
      --pid "$pidfile" --log "$dir/nats-server.log" </dev/null >/dev/null 2>&1 &
    deadline=$((SECONDS + 20))
    until "$(nats_bin_dir)/nats" --server "nats://127.0.0.1:$port" account info >/dev/null 2>&1; do
      ((SECONDS < deadline)) || die "nats-server did not answer on port $port within 20 s; see $dir/nats-server.log"
      sleep 0.2
    done
    log "nats-server with JetStream on nats://127.0.0.1:$port (log: $dir/nats-server.log)"
    ;;
  stop)
    if running; then kill "$(cat "$pidfile")"; log "nats-server stopped"; fi
    rm -f "$pidfile"
    ;;
  status)
    running && echo "running (pid $(cat "$pidfile"), nats://127.0.0.1:$port)" || echo "stopped"
    ;;
  *) die "usage: nats.sh start|stop|status" ;;
esac
