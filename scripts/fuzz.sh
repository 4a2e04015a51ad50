#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (libFuzzer -max_total_time) and exits
# nonzero if any of them finds a crash, naming the target and its artifact.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   default 30 s, every target
#   scripts/fuzz.sh seeds                   rewrite fuzz/corpus/*/seed-* from Norn's encoders
#
# Installs cargo-fuzz from crates.io when missing. There is no nightly toolchain: the pinned
# stable one runs with RUSTC_BOOTSTRAP=1, which is what `-Zsanitizer=address` (cargo fuzz's
# default) and libFuzzer's instrumentation flags need. Each target starts from the committed
# seeds (fuzz/corpus/<target>) and writes what it discovers to fuzz/target/corpus/<target>, so
# the committed corpora only change on purpose. Environment:
#   NORN_FUZZ_RSS_MB    libFuzzer -rss_limit_mb (default 2048)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

if [ "${1:-}" = seeds ]; then
    cargo test -p norn --lib --locked fuzzing::seeds::write_seed_corpora -- --ignored
    exit
fi

seconds="${1:-30}"
shift || true
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz from crates.io"
    cargo install --locked --quiet cargo-fuzz
fi

cd fuzz
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi

log "building the fuzz targets"
cargo fuzz build

failed=()
for t in "${targets[@]}"; do
    work="target/corpus/$t"
    mkdir -p "$work" "corpus/$t" "artifacts/$t"
    log "fuzzing $t for ${seconds}s"
    out="target/fuzz-$t.log"
    if cargo fuzz run "$t" "$work" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb="${NORN_FUZZ_RSS_MB:-2048}" -timeout=10 \
        -print_final_stats=1 >"$out" 2>&1; then
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out" | tail -1 | grep -o '[0-9]*$' || echo '?')
        cov=$(grep -o 'cov: [0-9]*' "$out" | tail -1 || true)
        rate=$([ "$execs" != '?' ] && echo $((execs / seconds)) || echo '?')
        log "$t: ok, $execs runs in ${seconds}s ($rate/s, $cov, corpus $(find "$work" -type f | wc -l) inputs)"
    else
        artifact=$(grep -o 'Test unit written to [^ ]*' "$out" | tail -1 | sed 's/Test unit written to //' || true)
        tail -40 "$out" >&2
        log "$t: FAILED; artifact: ${artifact:-none (see fuzz/$out)}"
        case "$artifact" in /*) ;; '') artifact="fuzz/<artifact>" ;; *) artifact="fuzz/$artifact" ;; esac
        log "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --manifest-path fuzz/Cargo.toml $t $artifact"
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    log "fuzz targets that crashed: ${failed[*]}"
    exit 1
fi
log "all ${#targets[@]} fuzz targets ran ${seconds}s each without a crash"
