#!/usr/bin/env bash
# Starts (or reuses) the local control plane: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and a KWOK controller, as local processes through `kwokctl --runtime binary`.
# Idempotent: a healthy cluster is reused, a stopped one restarted, a broken one recreated.
# Prints the kubeconfig path on stdout. Env: ARRAKIS_CLUSTER_NAME (arrakis), ARRAKIS_NODES (2).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

nodes="${ARRAKIS_NODES:-2}"
"$ARRAKIS_ROOT/e2e/scripts/build-tools.sh" kwok
"$ARRAKIS_ROOT/e2e/scripts/build-tools.sh" k8s

k8s="$(k8s_bin_dir)"
kwok="$(kwok_bin_dir)"
kubeconfig="$(kubeconfig_path)"
mkdir -p "$ARRAKIS_STATE"
export KWOK_WORKDIR="$ARRAKIS_STATE/kwok"
# Tells kwokctl which flags the binaries understand; it must match what was built.
export KWOK_KUBE_VERSION="$KUBE_VERSION"
# kwokctl runs `kubectl` from PATH, else downloads one: make it ours, of the same version.
export KWOK_KUBECTL_BINARY="$k8s/kubectl"
export PATH="$k8s:$PATH"
# WARN keeps kwokctl quiet on success; our own log lines say what is happening.
kwokctl() { "$kwok/kwokctl" --name "$ARRAKIS_CLUSTER_NAME" -v WARN "$@"; }
kubectl() { "$k8s/kubectl" --kubeconfig "$kubeconfig" "$@"; }

healthy() { kubectl get --raw /readyz >/dev/null 2>&1; }

wait_healthy() {
  local deadline=$((SECONDS + 120))
  until healthy; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

create() {
  log "creating cluster '$ARRAKIS_CLUSTER_NAME' (Kubernetes $KUBE_VERSION, KWOK $KWOK_VERSION)"
  # Every binary is given as a local path: kwokctl downloads anything it is not given.
  kwokctl create cluster \
    --runtime binary \
    --kubeconfig "$kubeconfig" \
    --kube-apiserver-binary "$k8s/kube-apiserver" \
    --kube-controller-manager-binary "$k8s/kube-controller-manager" \
    --kube-scheduler-binary "$k8s/kube-scheduler" \
    --etcd-binary "$k8s/etcd" \
    --kwok-controller-binary "$kwok/kwok" \
    --disable-qps-limits \
    --wait 2m >&2
}

start=$SECONDS
if healthy; then
  log "cluster '$ARRAKIS_CLUSTER_NAME' is already running"
elif [[ -d "$KWOK_WORKDIR/clusters/$ARRAKIS_CLUSTER_NAME" ]]; then
  log "restarting stopped cluster '$ARRAKIS_CLUSTER_NAME'"
  # Stop first: after a partial crash, survivors (say etcd) keep the restart from converging.
  kwokctl stop cluster >&2 || true
  if ! { kwokctl start cluster --timeout 60s >&2 && wait_healthy; }; then
    log "restart failed; recreating the cluster"
    kwokctl delete cluster >&2 || true
    create
  fi
else
  create
fi
wait_healthy || die "the API server did not become ready within 120 s; logs: $KWOK_WORKDIR/clusters/$ARRAKIS_CLUSTER_NAME/logs"

current=$(kubectl get nodes -l type=kwok -o name 2>/dev/null | wc -l)
if ((current != nodes)); then
  log "scaling fake nodes from $current to $nodes"
  kwokctl scale node --replicas "$nodes" >&2
fi
log "cluster ready in $((SECONDS - start)) s; KUBECONFIG=$kubeconfig"
echo "$kubeconfig"
