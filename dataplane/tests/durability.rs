//! Acknowledged writes survive `kill -9`: real `norn` processes, real files, fsync'd WAL.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{now_ns, proto_body, start_norn, stored_entries, wait_until};

/// Pushes batches of unique lines until `stop`, recording every line whose push got a 204.
async fn pusher(
    url: String,
    worker: usize,
    acked: Arc<Mutex<BTreeSet<String>>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let client = reqwest::Client::new();
    let base = now_ns();
    for batch in 0.. {
        if stop.is_cancelled() {
            return;
        }
        let lines: Vec<(i64, String)> = (0..200)
            .map(|i| (base + batch * 1000 + i, format!("w{worker} b{batch} i{i} {}", "payload ".repeat(8))))
            .collect();
        let streams = [(format!(r#"{{job="durability", worker="{worker}", part="{}"}}"#, batch % 3), lines.clone())];
        let refs: Vec<(&str, Vec<(i64, String)>)> = streams.iter().map(|(l, e)| (l.as_str(), e.clone())).collect();
        match client.post(format!("{url}/loki/api/v1/push")).body(proto_body(&refs)).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => {
                acked.lock().unwrap().extend(lines.into_iter().map(|(_, l)| l));
            }
            // The process died under us: this push was never acknowledged.
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_pushes_survive_kill_9_at_any_moment() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data.dir={}", dir.path().display());
    let args = [
        data.as_str(),
        "--ingester.wal.sync=batch",
        "--ingester.chunk-target-size=64KB",
        "--ingester.chunk-block-size=16KB",
    ];
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    // Three crash cycles, each killing at a different amount of acknowledged data, so the kill
    // lands mid-push, mid-chunk-cut and after earlier replays.
    for (cycle, kill_after) in [300usize, 2_000, 5_000].into_iter().enumerate() {
        let p = start_norn(dir.path(), &args);
        let stop = tokio_util::sync::CancellationToken::new();
        let before = acked.lock().unwrap().len();
        let tasks: Vec<_> =
            (0..3).map(|w| tokio::spawn(pusher(p.url(""), cycle * 10 + w, acked.clone(), stop.clone()))).collect();
        let target = before + kill_after;
        let a = acked.clone();
        tokio::task::spawn_blocking(move || {
            wait_until("acknowledged lines", Duration::from_secs(120), || {
                (a.lock().unwrap().len() >= target).then_some(())
            })
        })
        .await
        .unwrap();
        p.kill9();
        stop.cancel();
        for t in tasks {
            t.await.unwrap();
        }
    }
    // Restart on the same data dir: replay, then flush everything to the object store.
    let p = start_norn(dir.path(), &args);
    let log = p.log_text();
    assert!(log.contains("wal replayed"), "{log}");
    let r = reqwest::Client::new().post(p.url("/flush?wait=true")).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    let stored: BTreeSet<String> =
        stored_entries(&dir.path().join("chunks"), "fake").await.into_iter().map(|(_, _, l)| l).collect();
    let acked = acked.lock().unwrap();
    let missing: Vec<_> = acked.difference(&stored).take(5).collect();
    assert!(missing.is_empty(), "{} acknowledged lines lost, e.g. {missing:?}", acked.difference(&stored).count());
    assert!(acked.len() >= 7_300);
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_and_keeps_data_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data.dir={}", dir.path().display());
    let p = start_norn(dir.path(), &[data.as_str()]);
    let t = now_ns();
    let r = reqwest::Client::new()
        .post(p.url("/loki/api/v1/push"))
        .body(proto_body(&[(r#"{job="term"}"#, vec![(t, "kept across restart".into())])]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    let status = p.terminate(Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit status {status}");
    let p = start_norn(dir.path(), &[data.as_str()]);
    let r = reqwest::Client::new().post(p.url("/flush?wait=true")).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    let stored = stored_entries(&dir.path().join("chunks"), "fake").await;
    assert_eq!(stored, vec![(r#"{job="term"}"#.to_string(), t, "kept across restart".to_string())]);
}
