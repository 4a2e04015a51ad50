#!/usr/bin/env bash
# Builds the control plane the end-to-end tests run against: kube-apiserver and
# kube-controller-manager from the k8s.io/kubernetes Go module, and etcd from the etcd server module
# of the same module graph (go.mod and go.sum here pin every version).
#
# The binaries land in a cache outside the clone, keyed by version:
#   ${NORN_CONTROL_PLANE_CACHE:-$HOME/.cache/norn/control-plane}/<kubernetes>-etcd<etcd>/
# and a second run finds them there and builds nothing. Prints the directory on stdout (the last
# line), everything else on stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

log() { printf '==> %s\n' "$*" >&2; }

version_of() { awk -v m="$1" '$1 == m { print $2; exit }' "$here/go.mod"; }
kubernetes="$(version_of k8s.io/kubernetes)"
etcd="$(version_of go.etcd.io/etcd/server/v3)"
if [ -z "$kubernetes" ] || [ -z "$etcd" ]; then
    echo "build.sh: cannot read the k8s.io/kubernetes and etcd server versions from $here/go.mod" >&2
    exit 1
fi
cache="${NORN_CONTROL_PLANE_CACHE:-$HOME/.cache/norn/control-plane}/$kubernetes-etcd$etcd"
binaries=(kube-apiserver kube-controller-manager etcd)

cached=1
for b in "${binaries[@]}"; do [ -x "$cache/$b" ] || cached=0; done
if [ "$cached" = 1 ]; then
    log "control plane $kubernetes (etcd $etcd) cached in $cache"
    echo "$cache"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "build.sh: go is not on PATH; the control plane is built from Go modules" >&2
    exit 1
fi
log "building the control plane $kubernetes (etcd $etcd) into $cache; the first build takes a while"
start=$(date +%s)
# Built into a scratch directory beside the cache and moved in at the end, so an interrupted build
# never leaves a half-filled cache entry that the next run would take as complete.
mkdir -p "$(dirname "$cache")"
scratch="$(mktemp -d "$cache.partial.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
cd "$here"
# -mod=readonly: go.sum is committed, a build never rewrites it. -trimpath and no VCS stamping
# keep the result independent of where the clone is. Two packages at a time: the machine has two
# cores and other builds share them.
export GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
jobs="${NORN_GO_BUILD_JOBS:-2}"
# The version the components report (/version, their logs), as Kubernetes' own build stamps it.
minor="${kubernetes#v*.}"
minor="${minor%%.*}"
pkg=k8s.io/component-base/version
ldflags="-s -X $pkg.gitVersion=$kubernetes -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
go build -p "$jobs" -ldflags="$ldflags" -o "$scratch/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -p "$jobs" -ldflags="$ldflags" -o "$scratch/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager
go build -p "$jobs" -ldflags=-s -o "$scratch/etcd" ./cmd/etcd
rm -rf "$cache"
mv "$scratch" "$cache"
trap - EXIT
log "built the control plane in $(($(date +%s) - start)) s"
echo "$cache"
