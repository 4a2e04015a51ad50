use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::ring::kv::{KvStore, MemoryKv};
use crate::ring::model::{InstanceDesc, ManualClock, RingDesc};
use crate::ring::replication::ReplicationConfig;
use crate::ring::{InstanceState, ring_kv};

const KEY: &str = "norn/ring";
const NOW: i64 = 1_700_000_000_000;

/// Serves the page of a ring with a healthy `good-1` and an unhealthy `<b>bad</b>` on
/// 127.0.0.1:0; returns the base URL.
async fn serve(shutdown: CancellationToken) -> (String, Arc<RingClient>) {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
    let mut ring = RingDesc::default();
    let mut good = InstanceDesc {
        addr: "10.0.0.1:9095".into(),
        zone: "a".into(),
        tokens: vec![1, 1 << 31],
        heartbeat_ms: NOW - 1000,
        registered_ms: NOW - 9000,
        ..Default::default()
    };
    good.set_state(InstanceState::Active);
    let mut bad = InstanceDesc {
        addr: "10.0.0.2:9095".into(),
        tokens: vec![1 << 30],
        heartbeat_ms: NOW - 120_000,
        ..Default::default()
    };
    bad.set_state(InstanceState::Active);
    ring.instances.insert("good-1".into(), good);
    ring.instances.insert("<b>bad</b>".into(), bad);
    let typed = ring_kv(kv, 10);
    typed.put(KEY, &ring).await.unwrap();
    let cfg =
        ReplicationConfig { replication_factor: 3, zone_awareness: false, heartbeat_timeout: Duration::from_secs(60) };
    let client = RingClient::new(typed, KEY, cfg, Arc::new(ManualClock::new(NOW)));
    client.refresh().await.unwrap();
    let page = RingPage { client: Arc::clone(&client), title: "Ingester ring".into(), path: "/ring".into() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, routes(page)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
    });
    (format!("http://{addr}"), client)
}

/// A URL-encoded form body.
fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| {
                s.bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b == b'-' {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect::<String>()
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[tokio::test]
async fn the_page_lists_instances_as_escaped_html() {
    let stop = CancellationToken::new();
    let (base, _) = serve(stop.clone()).await;
    let resp = http().get(format!("{base}/ring")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let body = resp.text().await.unwrap();
    assert!(body.contains("<h1>Ingester ring</h1>"));
    assert!(body.contains("good-1") && body.contains("10.0.0.1:9095") && body.contains("ACTIVE"));
    assert!(body.contains("&lt;b&gt;bad&lt;/b&gt;") && !body.contains("<b>bad</b>"), "IDs are escaped");
    assert!(body.contains("UNHEALTHY"));
    assert_eq!(body.matches("name=\"forget\"").count(), 1, "only the unhealthy instance can be forgotten");
    stop.cancel();
}

#[tokio::test]
async fn the_page_is_json_when_asked() {
    let stop = CancellationToken::new();
    let (base, _) = serve(stop.clone()).await;
    for req in [
        http().get(format!("{base}/ring?format=json")),
        http().get(format!("{base}/ring")).header("accept", "application/json"),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let v: serde_json::Value = resp.json().await.unwrap();
        let shards = v["shards"].as_array().unwrap();
        assert_eq!(shards.len(), 2);
        let bad = shards.iter().find(|s| s["id"] == "<b>bad</b>").unwrap();
        assert_eq!((bad["state"].as_str(), bad["healthy"].as_bool()), (Some("UNHEALTHY"), Some(false)));
        assert_eq!(bad["registered_state"], "ACTIVE");
        let good = shards.iter().find(|s| s["id"] == "good-1").unwrap();
        assert_eq!(
            (good["state"].as_str(), good["zone"].as_str(), good["num_tokens"].as_u64()),
            (Some("ACTIVE"), Some("a"), Some(2))
        );
        assert!(good.get("tokens").is_none(), "tokens only on request");
        let total: f64 = shards.iter().map(|s| s["ownership_percent"].as_f64().unwrap()).sum();
        assert!((total - 100.0).abs() < 1e-6, "ownership adds up to 100%: {total}");
        assert_eq!(v["effective_replication_factor"], 2);
    }
    let v: serde_json::Value =
        http().get(format!("{base}/ring?format=json&tokens=true")).send().await.unwrap().json().await.unwrap();
    let good = v["shards"].as_array().unwrap().iter().find(|s| s["id"] == "good-1").unwrap().clone();
    assert_eq!(good["tokens"], serde_json::json!([1, 1u64 << 31]));
    stop.cancel();
}

#[tokio::test]
async fn forgetting_removes_only_unhealthy_instances() {
    let stop = CancellationToken::new();
    let (base, client) = serve(stop.clone()).await;
    let resp = http()
        .post(format!("{base}/ring"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("forget", "good-1")]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "a healthy instance stays");
    assert!(resp.text().await.unwrap().contains("healthy"));
    let resp = http()
        .post(format!("{base}/ring"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("forget", "ghost")]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = http()
        .post(format!("{base}/ring"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("forget", "<b>bad</b>")]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "a browser goes back to the page");
    assert_eq!(resp.headers()["location"], "/ring");
    assert!(!client.view().desc.instances.contains_key("<b>bad</b>"));
    assert!(client.view().desc.instances.contains_key("good-1"));
    let resp = http()
        .post(format!("{base}/ring"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("nothing", "x")]))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error(), "a form without forget is refused");
    stop.cancel();
}
