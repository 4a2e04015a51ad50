//! The finalizer's ring cleanup against a real etcd: it deletes the cluster's prefix and nothing
//! else.
//!
//! etcd is `NORN_ETCD`, or `etcd` on `PATH` (Debian's `etcd-server`, which `scripts/test.sh`
//! installs).

use std::time::Duration;

use norn::ring::testing::EtcdServer;
use norn_operator::ring::{EtcdRingCleanup, RingCleanup, RingError, RingLocation};

/// A real etcd on ports it picked itself (see `norn::ring::testing`), killed when dropped.
struct Etcd {
    endpoint: String,
    server: EtcdServer,
}

async fn start_etcd() -> Etcd {
    let server = EtcdServer::start().await.expect("etcd starts");
    Etcd { endpoint: format!("http://{}", server.endpoint()), server }
}

async fn keys(endpoint: &str) -> Vec<String> {
    let mut c = etcd_client::Client::connect([endpoint], None).await.expect("connect");
    let resp = c.get("", Some(etcd_client::GetOptions::new().with_all_keys().with_keys_only())).await.expect("get");
    let mut keys: Vec<String> = resp.kvs().iter().map(|kv| String::from_utf8_lossy(kv.key()).into_owned()).collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn forgets_exactly_the_clusters_prefix() {
    let etcd = start_etcd().await;
    let mut c = etcd_client::Client::connect([&etcd.endpoint], None).await.expect("connect");
    for key in ["norn/obs/logs/ring", "norn/obs/logs/tokens/ingester-0", "norn/obs/logs2/ring", "norn/obs/log", "other"]
    {
        c.put(key, "v", None).await.expect("put");
    }
    let ring = RingLocation { endpoints: vec![etcd.endpoint.clone()], prefix: "norn/obs/logs/".into(), managed: false };
    EtcdRingCleanup::default().forget_cluster(&ring).await.expect("cleanup");
    assert_eq!(keys(&etcd.endpoint).await, ["norn/obs/log", "norn/obs/logs2/ring", "other"]);
    // Idempotent: the finalizer may run it again.
    EtcdRingCleanup::default().forget_cluster(&ring).await.expect("second cleanup");
}

#[tokio::test]
async fn a_managed_etcd_or_an_unsafe_prefix_is_left_alone() {
    let etcd = start_etcd().await;
    let mut c = etcd_client::Client::connect([&etcd.endpoint], None).await.expect("connect");
    c.put("norn/a/ring", "v", None).await.expect("put");
    let managed = RingLocation { endpoints: vec![etcd.endpoint.clone()], prefix: "norn/a/".into(), managed: true };
    EtcdRingCleanup::default().forget_cluster(&managed).await.expect("no-op");
    let unsafe_prefix = RingLocation { endpoints: vec![etcd.endpoint.clone()], prefix: "norn".into(), managed: false };
    EtcdRingCleanup::default().forget_cluster(&unsafe_prefix).await.expect("no-op");
    assert_eq!(keys(&etcd.endpoint).await, ["norn/a/ring"]);
}

#[tokio::test]
async fn an_unreachable_etcd_keeps_the_finalizer() {
    // An etcd that was there and is gone: nothing listens on its port any more.
    let mut etcd = start_etcd().await;
    etcd.server.kill();
    let ring = RingLocation { endpoints: vec![etcd.endpoint.clone()], prefix: "norn/a/".into(), managed: false };
    let cleanup =
        EtcdRingCleanup { connect_timeout: Duration::from_millis(500), request_timeout: Duration::from_secs(1) };
    let err = cleanup.forget_cluster(&ring).await.expect_err("nothing listens there");
    assert!(matches!(err, RingError::Unavailable { .. }), "{err}");
}
