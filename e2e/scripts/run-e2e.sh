#!/usr/bin/env bash
# Runs every integration suite (each crate's tests/) against real servers: the API server,
# nats-server, fake-discord and the project's own binaries.
# By default it starts (or reuses) the local control plane; set E2E_KUBECONFIG to use any other
# cluster instead, for example a kind cluster: E2E_KUBECONFIG=$HOME/.kube/config make e2e
# Extra arguments go to `cargo test`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -n "${E2E_KUBECONFIG:-}" ]]; then
  export KUBECONFIG="$E2E_KUBECONFIG"
  log "using the cluster in $KUBECONFIG"
else
  KUBECONFIG="$("$ARRAKIS_ROOT/e2e/cluster/up.sh")"
  export KUBECONFIG
fi
"$ARRAKIS_ROOT/e2e/scripts/build-tools.sh" nats
export ARRAKIS_NATS_SERVER="$(nats_bin_dir)/nats-server"
cd "$ARRAKIS_ROOT"
cargo test --locked --workspace --test '*' "$@"
