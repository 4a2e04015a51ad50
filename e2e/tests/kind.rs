//! The kind suite (feature `kind`, run by `e2e/kind.sh`): a LogCluster installed by the chart's
//! operator takes pushes and answers queries, and a rollout of its ingesters under continuous
//! pushes loses no acknowledged entry and fails no push.
#![cfg(feature = "kind")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use norn_operator::crd::{LogCluster, RolloutPhase};
use serde_json::{Value, json};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; run the suite through e2e/kind.sh"))
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos()
}

struct Norn {
    http: reqwest::Client,
    push: String,
    query: String,
}

impl Norn {
    fn from_env() -> Self {
        Self {
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
            push: env("NORN_E2E_PUSH_URL"),
            query: env("NORN_E2E_QUERY_URL"),
        }
    }

    /// Pushes `lines` into stream `{job="e2e", run=run}`; true when acknowledged (204).
    async fn push(&self, run: &str, lines: &[String]) -> Result<(), String> {
        let values: Vec<Value> = lines.iter().map(|l| json!([now_ns().to_string(), l])).collect();
        let body = json!({"streams": [{"stream": {"job": "e2e", "run": run}, "values": values}]});
        let resp = self
            .http
            .post(format!("{}/loki/api/v1/push", self.push))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status().as_u16() == 204 {
            Ok(())
        } else {
            Err(format!("{}: {}", resp.status(), resp.text().await.unwrap_or_default()))
        }
    }

    /// Every line of run `run` pushed since `start_ns`.
    async fn lines(&self, run: &str, start_ns: u128) -> Vec<String> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/loki/api/v1/query_range", self.query),
            &[
                ("query", format!("{{job=\"e2e\", run=\"{run}\"}}")),
                ("start", start_ns.to_string()),
                ("end", (now_ns() + 60_000_000_000).to_string()),
                ("limit", "1000000".to_string()),
                ("direction", "forward".to_string()),
            ],
        )
        .expect("query URL");
        let resp: Value = self.http.get(url).send().await.expect("query").json().await.expect("query JSON");
        let mut out = Vec::new();
        for stream in resp["data"]["result"].as_array().cloned().unwrap_or_default() {
            for v in stream["values"].as_array().cloned().unwrap_or_default() {
                out.push(v[1].as_str().unwrap_or_default().to_string());
            }
        }
        out.sort();
        out
    }
}

async fn clusters() -> (Api<LogCluster>, String) {
    let client = Client::try_default().await.expect("kubeconfig");
    (Api::namespaced(client, &env("NORN_E2E_NAMESPACE")), env("NORN_E2E_CLUSTER"))
}

/// Waits until the LogCluster reports Ready for its current generation with no rollout running.
async fn wait_settled(api: &Api<LogCluster>, name: &str, timeout: Duration) -> LogCluster {
    let deadline = Instant::now() + timeout;
    loop {
        let lc = api.get(name).await.expect("get LogCluster");
        let status = lc.status.clone().unwrap_or_default();
        let ready = status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        let current = status.observed_generation == lc.metadata.generation;
        let rolled = status.rollout.as_ref().is_none_or(|r| r.phase == RolloutPhase::Done);
        if ready && current && rolled {
            return lc;
        }
        assert!(Instant::now() < deadline, "LogCluster {name} did not settle: {status:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn push_and_query_through_the_cluster() {
    let (api, name) = clusters().await;
    wait_settled(&api, &name, Duration::from_secs(600)).await;
    let norn = Norn::from_env();
    let start = now_ns();
    let lines: Vec<String> = (0..1000).map(|i| format!("basic line {i:05}")).collect();
    norn.push("basic", &lines).await.expect("push acknowledged");
    let mut want = lines.clone();
    want.sort();
    assert_eq!(norn.lines("basic", start).await, want);
}

#[tokio::test]
async fn an_ingester_rollout_under_pushes_loses_nothing() {
    let (api, name) = clusters().await;
    let before = wait_settled(&api, &name, Duration::from_secs(600)).await;
    let norn = Arc::new(Norn::from_env());
    let start = now_ns();
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let pusher = {
        let (norn, stop, failed) = (norn.clone(), stop.clone(), failed.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut batch = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let lines: Vec<String> = (0..50).map(|i| format!("rollout {batch:06} {i:02}")).collect();
                match norn.push("rollout", &lines).await {
                    Ok(()) => acked.extend(lines),
                    Err(e) => {
                        eprintln!("push {batch} failed: {e}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                batch += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            acked
        })
    };
    // A new ingester pod template: every ingester must be replaced by the operator.
    let memory = format!("{}Mi", 256 + before.metadata.generation.unwrap_or(1));
    let patch = json!({"spec": {"ingester": {"resources": {"requests": {"memory": memory}}}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch LogCluster");
    // Wait until the operator saw it and rolled every ingester.
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let lc = api.get(&name).await.expect("get");
        let s = lc.status.clone().unwrap_or_default();
        let started = s.observed_generation == lc.metadata.generation && s.rollout.is_some();
        if started && s.rollout.as_ref().is_some_and(|r| r.phase == RolloutPhase::Done) {
            break;
        }
        assert!(Instant::now() < deadline, "rollout did not finish: {s:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    wait_settled(&api, &name, Duration::from_secs(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = pusher.await.expect("pusher");
    assert_eq!(failed.load(Ordering::SeqCst), 0, "pushes failed during the rollout");
    assert!(!acked.is_empty());
    acked.sort();
    assert_eq!(norn.lines("rollout", start).await, acked, "every acknowledged entry is queryable");
}
