#!/usr/bin/env bash
# Deletes the local control plane and its state. Idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

export KWOK_WORKDIR="$ARRAKIS_STATE/kwok"
kwokctl="$(kwok_bin_dir)/kwokctl"
if [[ -x "$kwokctl" && -d "$KWOK_WORKDIR/clusters/$ARRAKIS_CLUSTER_NAME" ]]; then
  "$kwokctl" --name "$ARRAKIS_CLUSTER_NAME" delete cluster --kubeconfig "$(kubeconfig_path)" >&2
fi
rm -f "$(kubeconfig_path)"
log "cluster '$ARRAKIS_CLUSTER_NAME' is down"
