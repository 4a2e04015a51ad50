#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with the Rust toolchain.
# Installs what the build and the tests need when it is missing:
#   - etcd (Debian etcd-server), the ring store the ring tests run against (NORN_ETCD).
#   - memcached (Debian memcached), the query frontend's results cache in a cluster (NORN_MEMCACHED).
#   - prometheus (Debian prometheus), the remote-write receiver of the ruler tests (NORN_PROMETHEUS).
#   - alertmanager (Debian prometheus-alertmanager), where the ruler tests' alerts go (NORN_ALERTMANAGER).
#   - moto_server (PyPI moto[server]) in ./.venv, the S3 server the storage tests run against.
#   - helm-python-sdk (PyPI: Helm's Go SDK inside the wheel, no helm binary) in the same .venv,
#     with which the operator's chart test lints and renders charts/norn.
#   - the OpenTelemetry Python SDK and its OTLP/HTTP exporter in the same .venv, the real client
#     of the OTLP ingestion test (NORN_OTEL_PYTHON).
#   - kube-apiserver, kube-controller-manager and their etcd, built from Kubernetes' Go modules by
#     e2e/control-plane/build.sh (needs go; cached in ~/.cache/norn/control-plane, keyed by
#     version, so only the first run builds: 8 to 13 minutes on two cores), for the operator's
#     end-to-end tests on a real control plane (NORN_KUBE_APISERVER, NORN_KUBE_CONTROLLER_MANAGER,
#     NORN_KUBE_ETCD). openssl (Debian openssl) makes their service-account keys.
# Then checks formatting and lints, and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_moto() {
    if [ -x .venv/bin/moto_server ]; then return; fi
    log "installing moto[server] into .venv"
    if ! python3 -m venv .venv 2>/dev/null; then
        rm -rf .venv
        log "python3-venv is missing; installing it"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        python3 -m venv .venv
    fi
    .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
}

# After ensure_moto, which creates .venv.
ensure_helm_sdk() {
    if .venv/bin/python -c 'import helm_python' 2>/dev/null; then return; fi
    log "installing helm-python-sdk into .venv"
    .venv/bin/pip install --quiet --disable-pip-version-check 'helm-python-sdk>=0.2.2,<0.3'
}

# Installs Debian package $2 unless command $1 is on PATH.
ensure_apt() {
    if command -v "$1" >/dev/null 2>&1; then return; fi
    log "$1 is missing; installing Debian package $2"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"
}

# After ensure_moto, which creates .venv.
ensure_otel_sdk() {
    if .venv/bin/python -c 'import opentelemetry.sdk._logs, opentelemetry.exporter.otlp.proto.http' 2>/dev/null; then
        return
    fi
    log "installing the OpenTelemetry SDK and OTLP/HTTP exporter into .venv"
    .venv/bin/pip install --quiet --disable-pip-version-check \
        'opentelemetry-sdk>=1.25,<2' 'opentelemetry-exporter-otlp-proto-http>=1.25,<2'
}

ensure_apt etcd etcd-server
export NORN_ETCD="$(command -v etcd)"
# memcached, the results cache of the query frontend in a cluster (its tests run a real one).
ensure_apt memcached memcached
export NORN_MEMCACHED="$(command -v memcached)"
# Prometheus and Alertmanager, the real receivers of the ruler's recorded series and alerts.
ensure_apt prometheus prometheus
export NORN_PROMETHEUS="$(command -v prometheus)"
ensure_apt prometheus-alertmanager prometheus-alertmanager
export NORN_ALERTMANAGER="$(command -v prometheus-alertmanager)"
ensure_moto
ensure_helm_sdk
export NORN_HELM_PYTHON="$PWD/.venv/bin/python"
ensure_otel_sdk
export NORN_OTEL_PYTHON="$PWD/.venv/bin/python"
export NORN_MOTO_SERVER="$PWD/.venv/bin/moto_server"
ensure_apt openssl openssl
control_plane="$(e2e/control-plane/build.sh)"
export NORN_KUBE_APISERVER="$control_plane/kube-apiserver"
export NORN_KUBE_CONTROLLER_MANAGER="$control_plane/kube-controller-manager"
export NORN_KUBE_ETCD="$control_plane/etcd"
export PATH="$PWD/.venv/bin:$PATH"
# Keep builds inside the machine: two cores, one shared target directory.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

# cargo-nextest runs each test in its own process (a hung or crashing test names itself);
# installed from crates.io when missing.
if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest from crates.io"
    cargo install --locked --quiet cargo-nextest
fi
for tool in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$tool"; then
        log "$tool is not installed for the pinned toolchain; adding it"
        rustup component add "$tool"
    fi
done

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi
# Every cargo-fuzz target for a short budget, so that a decoder regression is caught
# (scripts/fuzz.sh, docs/reliability.md); NORN_FUZZ_SECONDS=0 skips it, longer runs take the
# script's argument.
fuzz_seconds="${NORN_FUZZ_SECONDS:-20}"
if [ "$fuzz_seconds" -gt 0 ]; then
    log "fuzzing every target for ${fuzz_seconds}s"
    scripts/fuzz.sh "$fuzz_seconds"
fi
