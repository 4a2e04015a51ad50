//! The finalizer's ring cleanup against a real etcd: it deletes the cluster's prefix and nothing
//! else.
//!
//! etcd is `NORN_ETCD`, or `etcd` on `PATH` (Debian's `etcd-server`, which `scripts/test.sh`
//! installs).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use norn_operator::ring::{EtcdRingCleanup, RingCleanup, RingError, RingLocation};

/// An etcd child process on 127.0.0.1, killed when dropped.
struct Etcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn etcd_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NORN_ETCD") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("etcd not found: install Debian's etcd-server (scripts/test.sh does) or set NORN_ETCD")
    })
}

/// A port that was free a moment ago (etcd takes URLs, not listeners).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

async fn start_etcd() -> Etcd {
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new(etcd_binary())
        .arg("--name=test")
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--listen-client-urls={endpoint}"))
        .arg(format!("--advertise-client-urls={endpoint}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=test={peer_url}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting etcd");
    let etcd = Etcd { child, endpoint, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = etcd_client::Client::connect([&etcd.endpoint], None).await
            && c.status().await.is_ok()
        {
            return etcd;
        }
        assert!(Instant::now() < deadline, "etcd did not start within 30s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let ring = RingLocation {
        endpoints: vec![format!("http://127.0.0.1:{}", free_port())],
        prefix: "norn/a/".into(),
        managed: false,
    };
    let cleanup =
        EtcdRingCleanup { connect_timeout: Duration::from_millis(500), request_timeout: Duration::from_secs(1) };
    let err = cleanup.forget_cluster(&ring).await.expect_err("nothing listens there");
    assert!(matches!(err, RingError::Unavailable { .. }), "{err}");
}
