#!/usr/bin/env bash
# Builds the real Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler), etcd and helm from the Go module proxy into a cache directory keyed by the
# pinned versions, outside the repository. A second run with the same pins does nothing.
#
# Prints the binary directory on its last line of stdout; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
pin() { # <module> <dir>: the version the wrapper module resolves (go.mod after tidy is the pin)
  awk -v m="$1" '($1 == m || ($1 == "require" && $2 == m)) { v = ($1 == m) ? $2 : $3; print v; exit }' "$here/$2/go.mod"; }
K8S_VERSION=$(pin k8s.io/kubernetes k8sbin)
ETCD_VERSION=$(pin go.etcd.io/etcd/server/v3 etcdbin)
HELM_VERSION=$(pin helm.sh/helm/v3 helmbin)
[ -n "$K8S_VERSION" ] && [ -n "$ETCD_VERSION" ] && [ -n "$HELM_VERSION" ] || {
  echo "build-binaries: could not read the pinned versions from tools/*/go.mod" >&2; exit 1; }

cache_root=${VCS_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vcluster-spawner/bin}
out="$cache_root/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
need=(kube-apiserver kube-controller-manager kube-scheduler etcd helm)

complete() { for b in "${need[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if complete; then echo "$out"; exit 0; fi
# one build at a time: a second caller (another test worker, a second make) waits, then finds it done
mkdir -p "$cache_root"
exec 9>"$out.lock"
flock 9
if complete; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "build-binaries: Go is required (go 1.26+) and was not found on PATH" >&2; exit 1; }
mkdir -p "$out.partial"
log="$out.partial/build.log"
step() { echo "[build-binaries $(date +%H:%M:%S)] $*" >&2; }
build() { # <module dir> <output> <ldflags> <packages...>; <output> ends in / for several binaries
  local dir=$1 output=$2 ldflags=$3; shift 3
  if ! (cd "$here/$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$output" "$@") >>"$log" 2>&1; then
    echo "build-binaries: building $* failed; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
}
start=$(date +%s)
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
step "kube-apiserver, kube-controller-manager, kube-scheduler $K8S_VERSION (cold: ~15-25 min on 2 cores; log: $log)"
build k8sbin "$out.partial/" "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
step "etcd $ETCD_VERSION"
build etcdbin "$out.partial/etcd" "-s -w" go.etcd.io/etcd/server/v3
step "helm $HELM_VERSION"
build helmbin "$out.partial/helm" "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm.sh/helm/v3/cmd/helm
rm -rf "$out"; mv "$out.partial" "$out"
step "done in $(( $(date +%s) - start )) s -> $out"
echo "$out"
