//! `crds/` and the chart's `crds/` hold exactly what `crdgen` prints from the Rust types.
//!
//! Regenerate after changing the types: `cargo run -p norn-operator --bin crdgen > crds/logcluster.yaml`
//! and copy it to `charts/norn/crds/logcluster.yaml`.

use std::path::Path;

fn check(relative: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join(relative);
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let generated = norn_operator::crd::crd_yaml().expect("the CRD serializes");
    assert!(
        committed == generated,
        "{relative} is not what crdgen prints; regenerate it with \
         `cargo run -p norn-operator --bin crdgen > {relative}`"
    );
}

#[test]
fn crds_dir_matches_crdgen() {
    check("crds/logcluster.yaml");
}

#[test]
fn chart_crds_match_crdgen() {
    check("charts/norn/crds/logcluster.yaml");
}

#[test]
fn crdgen_prints_the_committed_file() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crdgen")).output().expect("crdgen runs");
    assert!(out.status.success(), "crdgen failed: {}", String::from_utf8_lossy(&out.stderr));
    let generated = norn_operator::crd::crd_yaml().expect("the CRD serializes");
    assert_eq!(String::from_utf8_lossy(&out.stdout), generated);
}
