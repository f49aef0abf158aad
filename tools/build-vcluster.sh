#!/usr/bin/env bash
# Builds the real vCluster control plane from the Go module proxy into a cache directory keyed
# by the pinned versions, outside the repository:
#   vcluster            `cmd/vcluster` of github.com/loft-sh/vcluster (the image's `/vcluster start`)
#   kine                github.com/k3s-io/kine, pure-Go SQLite (the chart runs it as /binaries/kine)
#   vcluster-<v>.tgz    the module's `chart/`, packaged at the module's version (the module holds
#                       it as version 0.0.1; upstream's release pipeline sets the real one)
# With an argument, builds instead, into a directory of its own:
#   coredns             github.com/coredns/coredns at the version vCluster deploys inside each
#                       virtual cluster; the local cluster's own DNS runs it too
#   cli                 `cmd/vclusterctl` of the same module: the `vcluster` command line an
#                       operator runs (tests check the spawner's sleep and wake against its
#                       pause and resume)
# A second run with the same pins does nothing. Prints the directory on the last line of stdout;
# progress goes to stderr. Needs helm (vcluster only): pass its path as $HELM or have it on PATH.
set -euo pipefail

VCLUSTER_VERSION=v0.36.1
# the module does not pin the kine its control-plane image ships; this one serves v0.36.1
# (docs/real-vcluster.md)
KINE_VERSION=v0.17.5
# the image v0.36.1 deploys for Kubernetes 1.36 (upstream pkg/constants/coredns.go CoreDNSVersionMap)
COREDNS_VERSION=v1.14.2

target=${1:-vcluster}
cache_root=${VCS_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vcluster-spawner/bin}
chart="vcluster-${VCLUSTER_VERSION#v}.tgz"
case $target in
  vcluster)
    out="$cache_root/vcluster-$VCLUSTER_VERSION-kine-$KINE_VERSION"
    complete() { [ -x "$out/vcluster" ] && [ -x "$out/kine" ] && [ -f "$out/$chart" ]; } ;;
  coredns)
    out="$cache_root/coredns-$COREDNS_VERSION"
    complete() { [ -x "$out/coredns" ]; } ;;
  cli)
    out="$cache_root/vcluster-cli-$VCLUSTER_VERSION"
    complete() { [ -x "$out/vcluster" ]; } ;;
  *) echo "build-vcluster: unknown target '$target' (vcluster, coredns or cli)" >&2; exit 2 ;;
esac
if complete; then echo "$out"; exit 0; fi
# one build at a time: a second caller (another test worker, a second make) waits, then finds it done
mkdir -p "$cache_root"
exec 9>"$out.lock"
flock 9
if complete; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "build-vcluster: Go is required (go 1.26+) and was not found on PATH" >&2; exit 1; }

mkdir -p "$out.partial"
log="$out.partial/build.log"
work=$(mktemp -d); trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
step() { echo "[build-vcluster $(date +%H:%M:%S)] $*" >&2; }
fail() { echo "build-vcluster: $1 failed; last lines of $log:" >&2; tail -n 30 "$log" >&2; exit 1; }
source_of() { # <module> <version>: a writable copy of the module's source (the module cache is read-only)
  local dir
  dir=$(go mod download -json "$1@$2" 2>>"$log" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || fail "downloading $1@$2 from the Go module proxy"
  cp -r "$dir" "$work/${1##*/}"; chmod -R u+w "$work/${1##*/}"
  echo "$work/${1##*/}"
}
start=$(date +%s)

finish() { rm -rf "$out"; mv "$out.partial" "$out"; step "done in $(( $(date +%s) - start )) s -> $out"; echo "$out"; }
case $target in
  coredns)
    step "coredns $COREDNS_VERSION (cold: ~7 min on 2 cores; log: $log)"
    src=$(source_of github.com/coredns/coredns "$COREDNS_VERSION")
    (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
       -ldflags "-s -w" -o "$out.partial/coredns" .) \
      >>"$log" 2>&1 || fail "building coredns"
    finish; exit 0 ;;
  cli)
    step "vcluster CLI $VCLUSTER_VERSION (log: $log)"
    src=$(source_of github.com/loft-sh/vcluster "$VCLUSTER_VERSION")
    # the release's flags (upstream .goreleaser.yaml, vcluster-cli)
    (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
       -ldflags "-s -w -X main.version=${VCLUSTER_VERSION#v} -X github.com/loft-sh/vcluster/pkg/telemetry.SyncerVersion=${VCLUSTER_VERSION#v}" \
       -o "$out.partial/vcluster" ./cmd/vclusterctl) >>"$log" 2>&1 || fail "building the vcluster CLI"
    finish; exit 0 ;;
esac

helm=${HELM:-$(command -v helm || true)}
[ -x "$helm" ] || { echo "build-vcluster: helm is required to package the chart (set HELM=/path/to/helm)" >&2; exit 1; }
step "vcluster $VCLUSTER_VERSION (cold: ~15 min on 2 cores; log: $log)"
src=$(source_of github.com/loft-sh/vcluster "$VCLUSTER_VERSION")
(cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
   -ldflags "-s -w -X github.com/loft-sh/vcluster/pkg/telemetry.SyncerVersion=$VCLUSTER_VERSION" \
   -o "$out.partial/vcluster" ./cmd/vcluster) >>"$log" 2>&1 || fail "building vcluster"
"$helm" package --version "${VCLUSTER_VERSION#v}" --app-version "${VCLUSTER_VERSION#v}" \
  --destination "$out.partial" "$src/chart" >>"$log" 2>&1 || fail "packaging the vcluster chart"

step "kine $KINE_VERSION (cold: ~6 min)"
src=$(source_of github.com/k3s-io/kine "$KINE_VERSION")
(cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$out.partial/kine" .) \
  >>"$log" 2>&1 || fail "building kine"

finish
