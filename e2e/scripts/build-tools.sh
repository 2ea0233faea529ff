#!/usr/bin/env bash
# Builds every external binary the tests and the demo need, from Go modules, into the version-keyed cache:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd  (e2e/cluster/k8s)
#   kwok, kwokctl                                                          (their own module graph)
#   nats-server, nats                                                      (their own module graphs)
# Idempotent: a finished build leaves a stamp and is skipped next time.
# Usage: build-tools.sh [k8s|kwok|nats|all]   (default all). Prints nothing on stdout.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build_k8s() {
  local dir; dir="$(k8s_bin_dir)"
  [[ -f "$dir/.done" ]] && return 0
  require_go
  log "building Kubernetes $KUBE_VERSION and etcd $ETCD_VERSION into $dir (cold: ~15-25 min on 2 cores)"
  local start=$SECONDS minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local pkg="k8s.io/component-base/version"
  local ldflags="-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  mkdir -p "$dir.tmp"
  (
    cd "$ARRAKIS_ROOT/e2e/cluster/k8s"
    # Static, with upstream's build tags, so the binaries behave like the released ones.
    CGO_ENABLED=0 go build -mod=mod -trimpath -tags selinux,notest -ldflags "$ldflags" -o "$dir.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kubectl
    CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w" -o "$dir.tmp/etcd" ./etcd
  )
  rm -rf "$dir" && mv "$dir.tmp" "$dir" && touch "$dir/.done"
  log "built Kubernetes binaries in $((SECONDS - start)) s"
}

# Installs Go commands at given versions into $1, each with its own module graph (go install @version).
go_install_into() {
  local dir="$1" label="$2"; shift 2
  [[ -f "$dir/.done" ]] && return 0
  require_go
  log "building $label into $dir"
  local start=$SECONDS
  mkdir -p "$dir.tmp"
  local module
  for module in "$@"; do
    CGO_ENABLED=0 GOBIN="$dir.tmp" go install -trimpath -ldflags "-s -w" "$module"
  done
  rm -rf "$dir" && mv "$dir.tmp" "$dir" && touch "$dir/.done"
  log "built $label in $((SECONDS - start)) s"
}

build_kwok() {
  go_install_into "$(kwok_bin_dir)" "kwok and kwokctl $KWOK_VERSION" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
}

build_nats() {
  go_install_into "$(nats_bin_dir)" "nats-server $NATS_SERVER_VERSION and natscli $NATSCLI_VERSION" \
    "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION" "github.com/nats-io/natscli/nats@$NATSCLI_VERSION"
}

what="${1:-all}"
case "$what" in
  k8s) with_lock k8s build_k8s ;;
  kwok) with_lock kwok build_kwok ;;
  nats) with_lock nats build_nats ;;
  all) with_lock nats build_nats; with_lock kwok build_kwok; with_lock k8s build_k8s ;;
  *) die "unknown target '$what': use k8s, kwok, nats or all" ;;
esac
