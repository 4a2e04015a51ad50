//! The behaviour every [`KvStore`] must have, as one suite run against each implementation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::ring::kv::{CasOutcome, Codec, KvError, KvStore, TypedKv, WatchEvent, WatchStream, WatchTarget};

/// How long a watch may take to report a change before the suite fails.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs every check against `kv`, using only keys under `prefix` (which should hold nothing).
/// Panics with a message naming the failed expectation.
pub async fn kv_conformance_suite(kv: Arc<dyn KvStore>, prefix: &str) {
    let k = |rest: &str| format!("{prefix}{rest}");
    get_put_versions(&*kv, &k("basic")).await;
    compare_and_swap(&*kv, &k("cas")).await;
    delete_and_recreate(&*kv, &k("recreate")).await;
    values_are_bytes(&*kv, &k("bytes")).await;
    listing(&*kv, &k("list/")).await;
    watch_key(&*kv, &k("watched"), &k("watched-not")).await;
    watch_missing_key(&*kv, &k("later")).await;
    watch_prefix(&*kv, &k("wp/"), &k("wq")).await;
    watch_sees_every_version_in_order(&*kv, &k("burst")).await;
    invalid_keys(&*kv).await;
    typed_cas_contention(Arc::clone(&kv), &k("counter")).await;
}

async fn get_put_versions(kv: &dyn KvStore, key: &str) {
    assert_eq!(kv.get(key).await.expect("get missing"), None, "a missing key reads as None");
    let v1 = kv.put(key, Bytes::from_static(b"one")).await.expect("put");
    assert!(v1 > 0, "versions are positive");
    let got = kv.get(key).await.expect("get").expect("present after put");
    assert_eq!((got.value.as_ref(), got.version), (&b"one"[..], v1), "get returns what put wrote, at its version");
    let v2 = kv.put(key, Bytes::from_static(b"two")).await.expect("overwrite");
    assert!(v2 > v1, "an overwrite gets a higher version ({v2} after {v1})");
    assert_eq!(kv.get(key).await.expect("get").expect("present").value.as_ref(), b"two");
}

async fn compare_and_swap(kv: &dyn KvStore, key: &str) {
    let created = kv.put_if_version(key, None, Bytes::from_static(b"a")).await.expect("create");
    let CasOutcome::Written { version: v1 } = created else {
        panic!("creating an absent key must succeed: {created:?}")
    };
    match kv.put_if_version(key, None, Bytes::from_static(b"x")).await.expect("create again") {
        CasOutcome::Conflict { current: Some(cur) } => {
            assert_eq!((cur.value.as_ref(), cur.version), (&b"a"[..], v1), "a conflict reports the current value")
        }
        other => panic!("creating an existing key must conflict with its value: {other:?}"),
    }
    let CasOutcome::Written { version: v2 } =
        kv.put_if_version(key, Some(v1), Bytes::from_static(b"b")).await.expect("cas")
    else {
        panic!("a CAS on the current version must succeed")
    };
    assert!(v2 > v1, "a CAS write gets a higher version");
    match kv.put_if_version(key, Some(v1), Bytes::from_static(b"stale")).await.expect("stale cas") {
        CasOutcome::Conflict { current: Some(cur) } => assert_eq!(cur.version, v2),
        other => panic!("a CAS on a stale version must conflict: {other:?}"),
    }
    assert_eq!(kv.get(key).await.expect("get").expect("present").value.as_ref(), b"b", "a lost CAS writes nothing");
    match kv.put_if_version(&format!("{key}-absent"), Some(v2), Bytes::from_static(b"x")).await.expect("cas absent") {
        CasOutcome::Conflict { current: None } => {}
        other => panic!("a CAS on a version of an absent key must conflict with None: {other:?}"),
    }
}

async fn delete_and_recreate(kv: &dyn KvStore, key: &str) {
    let v1 = kv.put(key, Bytes::from_static(b"first")).await.expect("put");
    assert!(kv.delete(key).await.expect("delete"), "deleting an existing key reports it existed");
    assert!(!kv.delete(key).await.expect("delete again"), "deleting a missing key reports it did not exist");
    assert_eq!(kv.get(key).await.expect("get"), None, "a deleted key reads as None");
    let CasOutcome::Written { version: v2 } =
        kv.put_if_version(key, None, Bytes::from_static(b"second")).await.expect("recreate")
    else {
        panic!("recreating a deleted key with expected=None must succeed")
    };
    assert!(v2 > v1, "a recreated key never reuses an old version (no ABA): {v2} after {v1}");
    match kv.put_if_version(key, Some(v1), Bytes::from_static(b"aba")).await.expect("aba") {
        CasOutcome::Conflict { .. } => {}
        other => panic!("a CAS with the version of the deleted incarnation must fail: {other:?}"),
    }
}

async fn values_are_bytes(kv: &dyn KvStore, key: &str) {
    let all: Vec<u8> = (0..=255u8).collect();
    kv.put(key, Bytes::from(all.clone())).await.expect("put binary");
    assert_eq!(kv.get(key).await.expect("get").expect("present").value.as_ref(), &all[..], "values are raw bytes");
    kv.put(key, Bytes::new()).await.expect("put empty");
    assert_eq!(kv.get(key).await.expect("get").map(|v| v.value.len()), Some(0), "an empty value is a present key");
    let big = Bytes::from(vec![0x5a; 512 * 1024]);
    kv.put(key, big.clone()).await.expect("put 512KiB");
    assert_eq!(kv.get(key).await.expect("get").expect("present").value, big, "a 512KiB value round-trips");
}

async fn listing(kv: &dyn KvStore, prefix: &str) {
    for name in ["b", "a", "c/d"] {
        kv.put(&format!("{prefix}{name}"), Bytes::from(name.to_string())).await.expect("put");
    }
    let outside = format!("{}x", &prefix[..prefix.len() - 1]);
    kv.put(&outside, Bytes::from_static(b"outside")).await.expect("put outside");
    let keys: Vec<String> = kv.list(prefix).await.expect("list").into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["a", "b", "c/d"].map(|n| format!("{prefix}{n}")), "list returns the prefix's keys in order");
    let listed = kv.list(prefix).await.expect("list");
    assert_eq!(listed[1].1.value.as_ref(), b"b", "list returns values");
    assert!(kv.list(&format!("{prefix}zzz")).await.expect("list empty").is_empty());
}

async fn next_event(w: &mut WatchStream, what: &str) -> WatchEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("{what}: watch failed: {e}"),
        Ok(None) => panic!("{what}: watch ended"),
        Err(_) => panic!("{what}: no watch event within {EVENT_TIMEOUT:?}"),
    }
}

fn put_of(ev: &WatchEvent) -> (&str, &[u8]) {
    match ev {
        WatchEvent::Put { key, value } => (key, value.value.as_ref()),
        WatchEvent::Delete { key, .. } => panic!("expected a put event, got a delete of {key}"),
    }
}

async fn watch_key(kv: &dyn KvStore, key: &str, other: &str) {
    let v0 = kv.put(key, Bytes::from_static(b"v0")).await.expect("put");
    let mut w = kv.watch(WatchTarget::Key(key.to_string())).await.expect("watch");
    let first = next_event(&mut w, "current value").await;
    assert_eq!(put_of(&first), (key, &b"v0"[..]), "a watch starts with the current value");
    assert_eq!(first.version(), v0);
    kv.put(other, Bytes::from_static(b"not watched")).await.expect("put other");
    let v1 = kv.put(key, Bytes::from_static(b"v1")).await.expect("put");
    let ev = next_event(&mut w, "after put").await;
    assert_eq!(put_of(&ev), (key, &b"v1"[..]), "a watch of one key reports only that key");
    assert_eq!(ev.version(), v1, "events carry the write's version");
    assert!(kv.delete(key).await.expect("delete"));
    match next_event(&mut w, "after delete").await {
        WatchEvent::Delete { key: k, version } => {
            assert_eq!(k, key);
            assert!(version > v1, "a delete has a later version");
        }
        other => panic!("expected a delete event, got {other:?}"),
    }
    let CasOutcome::Written { version: v2 } =
        kv.put_if_version(key, None, Bytes::from_static(b"v2")).await.expect("recreate")
    else {
        panic!("recreate")
    };
    let ev = next_event(&mut w, "after recreate").await;
    assert_eq!((put_of(&ev).1, ev.version()), (&b"v2"[..], v2), "CAS writes are reported too");
}

async fn watch_missing_key(kv: &dyn KvStore, key: &str) {
    let mut w = kv.watch(WatchTarget::Key(key.to_string())).await.expect("watch");
    // Nothing to report yet: the first event is the later put, not a placeholder.
    kv.put(key, Bytes::from_static(b"now")).await.expect("put");
    let ev = next_event(&mut w, "first put of a watched missing key").await;
    assert_eq!(put_of(&ev), (key, &b"now"[..]));
}

async fn watch_prefix(kv: &dyn KvStore, prefix: &str, sibling: &str) {
    kv.put(&format!("{prefix}1"), Bytes::from_static(b"one")).await.expect("put");
    kv.put(&format!("{prefix}2"), Bytes::from_static(b"two")).await.expect("put");
    let mut w = kv.watch(WatchTarget::Prefix(prefix.to_string())).await.expect("watch prefix");
    let mut initial = [next_event(&mut w, "initial 1").await, next_event(&mut w, "initial 2").await];
    initial.sort_by(|a, b| a.key().cmp(b.key()));
    assert_eq!(
        put_of(&initial[0]),
        (format!("{prefix}1").as_str(), &b"one"[..]),
        "a prefix watch starts with every key"
    );
    assert_eq!(put_of(&initial[1]), (format!("{prefix}2").as_str(), &b"two"[..]));
    kv.put(sibling, Bytes::from_static(b"outside")).await.expect("put sibling");
    kv.put(&format!("{prefix}3"), Bytes::from_static(b"three")).await.expect("put");
    let ev = next_event(&mut w, "new key under prefix").await;
    assert_eq!(put_of(&ev), (format!("{prefix}3").as_str(), &b"three"[..]), "keys outside the prefix are not reported");
    assert!(kv.delete(&format!("{prefix}1")).await.expect("delete"));
    let ev = next_event(&mut w, "delete under prefix").await;
    assert!(matches!(&ev, WatchEvent::Delete { key, .. } if *key == format!("{prefix}1")), "got {ev:?}");
}

async fn watch_sees_every_version_in_order(kv: &dyn KvStore, key: &str) {
    let mut w = kv.watch(WatchTarget::Key(key.to_string())).await.expect("watch");
    let mut written = Vec::new();
    for i in 0..50u32 {
        written.push(kv.put(key, Bytes::from(i.to_string())).await.expect("put"));
    }
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        seen.push(next_event(&mut w, "burst").await.version());
    }
    assert_eq!(seen, written, "a watch reports every write in order");
}

async fn invalid_keys(kv: &dyn KvStore) {
    assert!(matches!(kv.get("").await, Err(KvError::Invalid(_))), "an empty key is invalid");
    assert!(matches!(kv.put("", Bytes::new()).await, Err(KvError::Invalid(_))));
    assert!(matches!(kv.put_if_version("", None, Bytes::new()).await, Err(KvError::Invalid(_))));
    assert!(matches!(kv.delete("").await, Err(KvError::Invalid(_))));
    assert!(kv.watch(WatchTarget::Key(String::new())).await.is_err());
}

/// A counter as decimal text.
#[derive(Debug)]
struct CounterCodec;

impl Codec<u64> for CounterCodec {
    fn encode(&self, v: &u64) -> Bytes {
        Bytes::from(v.to_string())
    }
    fn decode(&self, b: &[u8]) -> Result<u64, String> {
        std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).ok_or_else(|| "not a counter".to_string())
    }
}

/// The error of the counter's update closure.
#[derive(Debug)]
struct CounterError(KvError);

impl From<KvError> for CounterError {
    fn from(e: KvError) -> Self {
        Self(e)
    }
}

impl fmt::Display for CounterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

async fn typed_cas_contention(kv: Arc<dyn KvStore>, key: &str) {
    const WRITERS: u64 = 6;
    const EACH: u64 = 15;
    let typed = TypedKv::new(kv, Arc::new(CounterCodec)).with_cas_retries(200);
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (typed, key) = (typed.clone(), key.to_string());
        tasks.push(tokio::spawn(async move {
            for _ in 0..EACH {
                typed
                    .cas(&key, |v: Option<u64>| Ok::<_, CounterError>(Some(v.unwrap_or(0) + 1)))
                    .await
                    .unwrap_or_else(|e| panic!("increment: {e}"));
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    let (n, _) = typed.get(key).await.expect("get counter").expect("counter exists");
    assert_eq!(n, WRITERS * EACH, "concurrent CAS increments are never lost");
    // An update that returns None writes nothing.
    let before = typed.store().get(key).await.expect("get").expect("present").version;
    let now = typed.cas(key, |_| Ok::<_, CounterError>(None)).await.unwrap_or_else(|e| panic!("no-op cas: {e}"));
    assert_eq!(now, Some(WRITERS * EACH), "a no-op CAS returns the current value");
    assert_eq!(typed.store().get(key).await.expect("get").expect("present").version, before, "and writes nothing");
}
