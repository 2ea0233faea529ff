#!/usr/bin/env bash
# `make demo`: the local stack with the seed topology applied.
# Today that is the control plane, NATS, the CRDs and the samples; the operator, gateway and
# worker join it as their issues land.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kubeconfig="$("$ARRAKIS_ROOT/e2e/cluster/up.sh")"
"$ARRAKIS_ROOT/e2e/scripts/nats.sh" start
kubectl() { "$(k8s_bin_dir)/kubectl" --kubeconfig "$kubeconfig" "$@"; }

kubectl apply --server-side --force-conflicts -f "$ARRAKIS_ROOT/crds/" >&2
crds=(); for file in "$ARRAKIS_ROOT"/crds/*.yaml; do crds+=("crd/$(basename "$file" .yaml)"); done
kubectl wait --for condition=Established --timeout=60s "${crds[@]}" >&2
kubectl create namespace arrakis-demo --dry-run=client -o yaml | kubectl apply -f - >&2
kubectl -n arrakis-demo create secret generic discord-bot-token --from-literal=token=demo-token \
  --dry-run=client -o yaml | kubectl apply -f - >&2
kubectl -n arrakis-demo apply -f "$ARRAKIS_ROOT/crds/samples/" >&2

echo
kubectl get nodes
echo
kubectl -n arrakis-demo get arrakis
cat <<MSG

The local stack is up:
  Kubernetes $KUBE_VERSION (etcd, apiserver, controller-manager, scheduler; KWOK nodes)
    export KUBECONFIG=$kubeconfig
    alias kubectl="$(k8s_bin_dir)/kubectl"
  nats-server $NATS_SERVER_VERSION with JetStream on nats://127.0.0.1:${ARRAKIS_NATS_PORT:-4222}
    $(nats_bin_dir)/nats --server nats://127.0.0.1:${ARRAKIS_NATS_PORT:-4222} stream ls
The seed topology is applied in namespace arrakis-demo. Try: kubectl -n arrakis-demo scale sp/bot --replicas=3
Stop everything with: make demo-down
MSG
