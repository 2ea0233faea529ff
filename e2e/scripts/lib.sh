# Shared settings for the e2e scripts. Source it; do not run it.
# Build outputs live outside the checkout, keyed by version, so a warm machine starts in seconds.

set -euo pipefail

ARRAKIS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ARRAKIS_CACHE="${ARRAKIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/arrakis}"
# Runtime state (cluster, kubeconfig, NATS store) is per machine, not per checkout.
ARRAKIS_STATE="${ARRAKIS_STATE:-$ARRAKIS_CACHE/state}"

KUBE_VERSION="v1.35.4"
ETCD_VERSION="v3.6.5"
KWOK_VERSION="v0.8.0"
NATS_SERVER_VERSION="v2.12.15"
NATSCLI_VERSION="v0.5.1"

ARRAKIS_CLUSTER_NAME="${ARRAKIS_CLUSTER_NAME:-arrakis}"

log() { printf '[arrakis %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A short digest of the files that define a build, so editing go.mod rebuilds.
files_digest() { cat "$@" | sha256sum | cut -c1-12; }

k8s_bin_dir() {
  echo "$ARRAKIS_CACHE/bin/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION-$(files_digest "$ARRAKIS_ROOT/e2e/cluster/k8s/go.mod" "$ARRAKIS_ROOT/e2e/cluster/k8s/go.sum")"
}
kwok_bin_dir() { echo "$ARRAKIS_CACHE/bin/kwok-$KWOK_VERSION"; }
nats_bin_dir() { echo "$ARRAKIS_CACHE/bin/nats-server-$NATS_SERVER_VERSION-natscli-$NATSCLI_VERSION"; }

kubeconfig_path() { echo "$ARRAKIS_STATE/kubeconfig-$ARRAKIS_CLUSTER_NAME.yaml"; }

require_go() {
  command -v go >/dev/null || die "Go is required to build the control plane and NATS (install Go >= 1.25)."
}

# Runs "$@" with a lock on $1-named file so concurrent builds of the same thing wait instead of racing.
with_lock() {
  local name="$1"; shift
  mkdir -p "$ARRAKIS_CACHE/locks"
  exec {lockfd}>"$ARRAKIS_CACHE/locks/$name.lock"
  flock "$lockfd"
  "$@"
  flock -u "$lockfd"
}
