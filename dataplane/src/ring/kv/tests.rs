use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::*;
use crate::ring::testing::{EtcdServer, kv_conformance_suite};

async fn etcd() -> EtcdServer {
    EtcdServer::start().await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn memory_kv_passes_the_conformance_suite() {
    kv_conformance_suite(Arc::new(MemoryKv::new()), "conformance/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_kv_passes_the_conformance_suite() {
    let etcd = etcd().await;
    let kv = etcd.kv().await.unwrap();
    kv_conformance_suite(Arc::new(kv), "conformance/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_kv_needs_no_etcd_to_be_built_fails_fast_without_it_and_recovers() {
    let mut etcd = etcd().await;
    etcd.kill();
    let kv = EtcdKv::connect(&etcd.config()).await.expect("connecting does not need etcd up");
    let started = Instant::now();
    let err = kv.get("norn/ring").await.expect_err("etcd is down");
    assert!(err.is_retryable(), "an unreachable etcd is retryable: {err}");
    assert!(started.elapsed() < Duration::from_secs(10), "requests fail within the request timeout");
    assert!(matches!(kv.watch(WatchTarget::Key("norn/ring".into())).await, Err(KvError::Unavailable(_))));
    etcd.restart().await.unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match kv.put("norn/ring", Bytes::from_static(b"back")).await {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => panic!("the same client never worked again: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(kv.get("norn/ring").await.unwrap().unwrap().value.as_ref(), b"back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_watch_reports_the_loss_of_etcd_and_ends() {
    let mut etcd = etcd().await;
    let kv = etcd.kv().await.unwrap();
    kv.put("k", Bytes::from_static(b"v")).await.unwrap();
    let mut w = kv.watch(WatchTarget::Key("k".into())).await.unwrap();
    assert!(matches!(w.next().await, Some(Ok(WatchEvent::Put { .. }))));
    etcd.kill();
    match tokio::time::timeout(Duration::from_secs(30), w.next()).await {
        Ok(Some(Err(e))) => assert!(e.is_retryable(), "{e}"),
        other => panic!("expected an error item once etcd is gone, got {other:?}"),
    }
    assert!(matches!(tokio::time::timeout(Duration::from_secs(5), w.next()).await, Ok(None)), "then the stream ends");
}

#[tokio::test]
async fn memory_watchers_go_away_with_their_streams() {
    let kv = MemoryKv::new();
    let w1 = kv.watch(WatchTarget::Key("a".into())).await.unwrap();
    let _w2 = kv.watch(WatchTarget::Prefix("".into())).await.unwrap();
    assert_eq!(kv.watcher_count(), 2);
    drop(w1);
    assert_eq!(kv.watcher_count(), 1);
    kv.put("a", Bytes::new()).await.unwrap();
    assert_eq!(kv.watcher_count(), 1, "the open watcher stays");
}

/// A store that loses every CAS race.
#[derive(Debug, Default)]
struct AlwaysContended {
    /// CAS attempts seen.
    attempts: parking_lot::Mutex<usize>,
}

#[async_trait]
impl KvStore for AlwaysContended {
    async fn get(&self, _: &str) -> Result<Option<Versioned>, KvError> {
        Ok(None)
    }
    async fn list(&self, _: &str) -> Result<Vec<(String, Versioned)>, KvError> {
        Ok(Vec::new())
    }
    async fn put(&self, _: &str, _: Bytes) -> Result<u64, KvError> {
        Ok(1)
    }
    async fn put_if_version(&self, _: &str, _: Option<u64>, _: Bytes) -> Result<CasOutcome, KvError> {
        *self.attempts.lock() += 1;
        Ok(CasOutcome::Conflict { current: Some(Versioned { value: Bytes::from_static(b"x"), version: 9 }) })
    }
    async fn delete(&self, _: &str) -> Result<bool, KvError> {
        Ok(false)
    }
    async fn watch(&self, _: WatchTarget) -> Result<WatchStream, KvError> {
        Err(KvError::Unavailable("no watches here".into()))
    }
}

/// Values are UTF-8 strings.
#[derive(Debug)]
struct Text;

impl Codec<String> for Text {
    fn encode(&self, v: &String) -> Bytes {
        Bytes::from(v.clone())
    }
    fn decode(&self, b: &[u8]) -> Result<String, String> {
        String::from_utf8(b.to_vec()).map_err(|e| e.to_string())
    }
}

#[tokio::test]
async fn cas_gives_up_after_the_configured_retries() {
    let store = Arc::new(AlwaysContended::default());
    let typed = TypedKv::new(store.clone(), Arc::new(Text)).with_cas_retries(3);
    let mut calls = 0;
    let err = typed
        .cas("k", |_| {
            calls += 1;
            Ok::<_, KvError>(Some("mine".to_string()))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, KvError::Conflict { attempts: 4, .. }), "{err}");
    assert_eq!((*store.attempts.lock(), calls), (4, 4), "one attempt and three retries, each on a fresh value");
}

#[tokio::test]
async fn cas_hands_an_undecodable_value_over_as_absent_and_errors_pass_through() {
    let kv = Arc::new(MemoryKv::new());
    kv.put("k", Bytes::from_static(&[0xff, 0xfe])).await.unwrap();
    let typed = TypedKv::new(kv.clone(), Arc::new(Text));
    assert!(matches!(typed.get("k").await, Err(KvError::Corrupt { .. })), "get reports corruption");
    let fixed = typed
        .cas("k", |cur| {
            assert_eq!(cur, None, "a corrupt value reaches the update as None");
            Ok::<_, KvError>(Some("fixed".to_string()))
        })
        .await
        .unwrap();
    assert_eq!(fixed.as_deref(), Some("fixed"));
    let err = typed.cas("k", |_| Err::<Option<String>, _>(KvError::Invalid("refused".into()))).await.unwrap_err();
    assert!(matches!(err, KvError::Invalid(m) if m == "refused"), "the update's error is returned as is");
    assert_eq!(typed.get("k").await.unwrap().map(|(v, _)| v).as_deref(), Some("fixed"), "and nothing was written");
}

#[tokio::test]
async fn typed_watches_decode_values_and_report_deletes() {
    let kv = Arc::new(MemoryKv::new());
    let typed = TypedKv::new(kv.clone(), Arc::new(Text));
    typed.put("k", &"one".to_string()).await.unwrap();
    let mut w = typed.watch_key("k").await.unwrap();
    assert_eq!(w.next().await.unwrap().unwrap().map(|(v, _)| v).as_deref(), Some("one"));
    kv.put("k", Bytes::from_static(&[0xff])).await.unwrap();
    assert!(matches!(w.next().await, Some(Err(KvError::Corrupt { .. }))), "corrupt values are reported");
    typed.delete("k").await.unwrap();
    assert_eq!(w.next().await.unwrap().unwrap(), None, "a delete reads as None");
}
