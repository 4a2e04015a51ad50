//! Loki's LogQL conformance scripts through the real engine: data pushed as snappy protobuf
//! through the distributor into the ingester, queries through the querier — once with the data
//! in ingester memory, once with everything flushed to the object store first.

use std::path::PathBuf;
use std::process::Command;

use norn::conformance::{DataLocation, RealHarness};
use norn::query::logqltest::run;

const EVALS: usize = 841;

/// `shared/conformance/logqltest` next to the repository (found walking up from the crate).
fn scripts() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/conformance/logqltest"))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| manifest.join("../../shared/conformance/logqltest"))
}

async fn run_all(location: DataLocation) {
    run_with(&mut RealHarness::new(location), location).await;
}

async fn run_with(harness: &mut RealHarness, location: DataLocation) {
    let mut out = Vec::new();
    let summary = run(&[scripts()], harness, &mut out).await.expect("reading the scripts");
    let out = String::from_utf8_lossy(&out);
    assert!(summary.ok(), "{}:\n{out}", location.name());
    assert_eq!(summary.passed, EVALS, "{}:\n{out}", location.name());
    assert!(out.trim_end().ends_with(&format!("{EVALS} passed, 0 failed")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_eval_passes_over_ingester_memory() {
    run_all(DataLocation::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_eval_passes_over_the_object_store() {
    run_all(DataLocation::Store).await;
}

/// Every eval through a query frontend that splits at one minute and cuts every shardable
/// query into three shards, with the results cache on: the answers do not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_eval_passes_through_a_splitting_and_sharding_frontend() {
    through_frontend(DataLocation::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_eval_passes_through_the_frontend_over_the_object_store() {
    through_frontend(DataLocation::Store).await;
}

async fn through_frontend(location: DataLocation) {
    let mut harness = RealHarness::through_frontend(location);
    run_with(&mut harness, location).await;
    // The answers were really assembled from splits and shards.
    let (splits, shards) = (harness.frontend_subqueries("split"), harness.frontend_subqueries("shard"));
    println!("{}: {splits} time splits, {shards} shard sub-queries", location.name());
    // 298 range evals, most over several minutes: well over one split each.
    assert!(splits > 2 * 298, "range queries were cut into only {splits} splits");
    assert!(shards > 3 * 543, "only {shards} shard sub-queries");
}

/// The CLI prints a line per file and the totals, and fails when an eval fails.
#[test]
fn the_cli_reports_and_fails_on_a_wrong_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("wrong.logqltest");
    std::fs::write(
        &script,
        "load\n  {app=\"a\"} \"x\" @ 0s [repeat every 10s for 6]\n\neval instant at 60s count_over_time({app=\"a\"}[1m])\n  {app=\"a\"} 99\n",
    )
    .unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_norn")).args(["logqltest", "--from", "store"]).arg(&script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("wrong.logqltest"), "{stdout}");
    assert!(stdout.trim_end().ends_with("0 passed, 1 failed"), "{stdout}");

    // Entries at 0s, 10s, ..., 50s; the window (0s, 60s] leaves out the one at 0s.
    std::fs::write(
        &script,
        "load\n  {app=\"a\"} \"x\" @ 0s [repeat every 10s for 6]\n\neval instant at 60s count_over_time({app=\"a\"}[1m])\n  {app=\"a\"} 5\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_norn")).args(["logqltest"]).arg(&script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.trim_end().ends_with("1 passed, 0 failed"), "{stdout}");
}
