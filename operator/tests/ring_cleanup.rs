//! The finalizer's ring cleanup against a real etcd: it deletes the cluster's prefix and nothing
//! else.
//!
//! etcd is `NORN_ETCD`, or `etcd` on `PATH` (Debian's `etcd-server`, which `scripts/test.sh`
//! installs).

use std::time::Duration;

use norn::etcd::proto::{PutRequest, RangeRequest};
use norn::etcd::{Client, ClientOptions, prefix_range};
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

async fn client(endpoint: &str) -> Client {
    let options = ClientOptions {
        endpoints: vec![endpoint.to_string()],
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        credentials: None,
        tls: Default::default(),
    };
    Client::connect(&options).await.expect("connect")
}

async fn put(c: &Client, key: &str) {
    c.put(PutRequest { key: key.as_bytes().to_vec(), value: "v".into() }).await.expect("put");
}

async fn keys(endpoint: &str) -> Vec<String> {
    let (key, range_end) = prefix_range(b"");
    let resp = client(endpoint).await.range(RangeRequest { key, range_end, keys_only: true }).await.expect("get");
    // etcd answers in key order.
    resp.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
}

#[tokio::test]
async fn forgets_exactly_the_clusters_prefix() {
    let etcd = start_etcd().await;
    let c = client(&etcd.endpoint).await;
    for key in ["norn/obs/logs/ring", "norn/obs/logs/tokens/ingester-0", "norn/obs/logs2/ring", "norn/obs/log", "other"]
    {
        put(&c, key).await;
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
    let c = client(&etcd.endpoint).await;
    put(&c, "norn/a/ring").await;
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
    let cleanup = EtcdRingCleanup {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let err = cleanup.forget_cluster(&ring).await.expect_err("nothing listens there");
    assert!(matches!(err, RingError::Unavailable { .. }), "{err}");
}
