#!/usr/bin/env bash
# The kind-based end-to-end suite: a kind cluster, the two images built from this checkout, the
# chart, an S3 server (moto) and a LogCluster with a managed etcd; then the Rust tests of
# e2e/tests/kind.rs (feature `kind`): push and query, and an ingester rollout under pushes.
#
# Needs docker, kind, kubectl and helm. Not part of ./scripts/test.sh (no Docker there); CI runs
# it from .github/workflows/e2e.yml. KEEP_CLUSTER=1 leaves the kind cluster for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${KIND_CLUSTER:-norn-e2e}"
NS=norn-e2e
log() { printf '==> %s\n' "$*" >&2; }
for tool in docker kind kubectl helm cargo; do
    command -v "$tool" >/dev/null || { echo "kind.sh needs $tool on PATH" >&2; exit 1; }
done

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ "${KEEP_CLUSTER:-0}" != 1 ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

dump() {
    log "state of the cluster"
    kubectl -n "$NS" get logclusters,statefulsets,pods,events -o wide || true
    kubectl -n "$NS" get logcluster logs -o yaml || true
    kubectl -n norn-system logs deploy/norn-operator --tail=200 || true
}

if ! kind get clusters | grep -qx "$CLUSTER"; then
    log "creating kind cluster $CLUSTER"
    kind create cluster --name "$CLUSTER" --wait 180s
fi

log "building images"
docker build --target norn -t norn:e2e .
docker build --target norn-operator -t norn-operator:e2e .
kind load docker-image --name "$CLUSTER" norn:e2e norn-operator:e2e

log "installing the chart"
helm upgrade --install norn charts/norn --namespace norn-system --create-namespace \
    --set operator.image.repository=norn-operator --set operator.image.tag=e2e \
    --set operator.image.pullPolicy=Never --wait --timeout 5m

log "S3 (moto) and the LogCluster"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" apply -f e2e/manifests/moto.yaml
kubectl -n "$NS" wait --for=condition=complete job/create-bucket --timeout=5m
kubectl -n "$NS" apply -f e2e/manifests/logcluster.yaml
if ! kubectl -n "$NS" wait --for=condition=Ready logcluster/logs --timeout=15m; then
    dump
    exit 1
fi

# Port-forwards on ports the OS picks; the URLs go to the tests.
forward() {
    local svc=$1 out
    out=$(mktemp)
    kubectl -n "$NS" port-forward "svc/$svc" :3100 >"$out" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        if grep -q 'Forwarding from 127.0.0.1:' "$out"; then
            sed -n 's/.*Forwarding from 127.0.0.1:\([0-9]*\).*/http:\/\/127.0.0.1:\1/p' "$out" | head -1
            return
        fi
        sleep 0.2
    done
    echo "port-forward to $svc did not start: $(cat "$out")" >&2
    exit 1
}
export NORN_E2E_NAMESPACE="$NS" NORN_E2E_CLUSTER=logs
NORN_E2E_PUSH_URL=$(forward logs-distributor)
NORN_E2E_QUERY_URL=$(forward logs-querier)
export NORN_E2E_PUSH_URL NORN_E2E_QUERY_URL

log "tests"
if ! cargo test -p norn-e2e --features kind --locked -- --test-threads=1; then
    dump
    exit 1
fi
