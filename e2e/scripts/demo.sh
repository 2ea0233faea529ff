#!/usr/bin/env bash
# `make demo`: the local stack with the seed topology applied and reconciled.
# Today that is the control plane, NATS, the CRDs, the samples and arrakis-operator reconciling the
# seed's streams and consumers into JetStream; gateway and worker pods join it with the ShardPool
# reconciler and the images (issues #5 and #6).
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
"$ARRAKIS_ROOT/e2e/scripts/operator.sh" start
kubectl -n arrakis-demo wait --for=jsonpath='{.status.conditions[?(@.type=="Ready")].status}'=True \
  --timeout=180s natsstream --all >&2 || die "the seed's NatsStreams did not become Ready; see $ARRAKIS_STATE/operator/arrakis-operator.log"
kubectl -n arrakis-demo wait --for=jsonpath='{.status.conditions[?(@.type=="Ready")].status}'=True \
  --timeout=120s natsconsumer --all >&2 || die "the seed's NatsConsumers did not become Ready; see $ARRAKIS_STATE/operator/arrakis-operator.log"

echo
kubectl get nodes
echo
kubectl -n arrakis-demo get arrakis
echo
"$(nats_bin_dir)/nats" --server "nats://127.0.0.1:${ARRAKIS_NATS_PORT:-4222}" stream ls
cat <<MSG

The local stack is up:
  Kubernetes $KUBE_VERSION (etcd, apiserver, controller-manager, scheduler; KWOK nodes)
    export KUBECONFIG=$kubeconfig
    alias kubectl="$(k8s_bin_dir)/kubectl"
  nats-server $NATS_SERVER_VERSION with JetStream on nats://127.0.0.1:${ARRAKIS_NATS_PORT:-4222}
    $(nats_bin_dir)/nats --server nats://127.0.0.1:${ARRAKIS_NATS_PORT:-4222} stream ls
  arrakis-operator (log: $ARRAKIS_STATE/operator/arrakis-operator.log)
The seed topology is applied in namespace arrakis-demo; its streams and consumers are live in JetStream.
Try: delete a stream with nats and watch the operator bring it back.
Stop everything with: make demo-down
MSG
