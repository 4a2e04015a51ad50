//! The behaviour every [`ObjectStore`] must have, as one suite run against each implementation.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use crate::storage::{ObjectMeta, ObjectStore, StorageError};

/// Everything the suite writes is under this prefix.
const ROOT: &str = "conformance/";
/// Objects created to check that listings return everything (stores that page should be set to
/// a page size below this, see `S3Store::with_list_page_size`).
const PAGINATION_KEYS: usize = 250;

/// Runs every check against `store`, which should hold nothing under `conformance/`. Panics with
/// a message naming the failed expectation.
pub async fn conformance_suite(store: Arc<dyn ObjectStore>) {
    let s = &*store;
    put_get_overwrite(s).await;
    missing_objects(s).await;
    delete(s).await;
    ranges(s).await;
    empty_object(s).await;
    listing(s).await;
    pagination(s).await;
    concurrent_puts(Arc::clone(&store)).await;
    large_object(s).await;
    unusual_characters(s).await;
    invalid_keys(s).await;
}

fn key(rest: &str) -> String {
    format!("{ROOT}{rest}")
}

async fn put(s: &dyn ObjectStore, key: &str, data: impl Into<Bytes>) {
    s.put(key, data.into()).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
}

async fn get(s: &dyn ObjectStore, key: &str) -> Bytes {
    s.get(key).await.unwrap_or_else(|e| panic!("get {key}: {e}"))
}

async fn range(s: &dyn ObjectStore, key: &str, r: Range<u64>) -> Bytes {
    s.get_range(key, r.clone()).await.unwrap_or_else(|e| panic!("get_range {key} {r:?}: {e}"))
}

async fn list(s: &dyn ObjectStore, prefix: &str) -> Vec<ObjectMeta> {
    s.list(prefix).await.unwrap_or_else(|e| panic!("list {prefix:?}: {e}"))
}

async fn list_keys(s: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    list(s, prefix).await.into_iter().map(|m| m.key).collect()
}

async fn prefixes(s: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    s.list_prefixes(prefix).await.unwrap_or_else(|e| panic!("list_prefixes {prefix:?}: {e}"))
}

fn keys(rest: &[&str]) -> Vec<String> {
    rest.iter().map(|r| key(r)).collect()
}

async fn put_get_overwrite(s: &dyn ObjectStore) {
    let k = key("basic/object");
    let before = SystemTime::now();
    put(s, &k, "hello").await;
    assert_eq!(get(s, &k).await, "hello");
    let meta = s.head(&k).await.expect("head").expect("head of a put object");
    assert_eq!((meta.key.as_str(), meta.size), (k.as_str(), 5));
    // S3 reports whole seconds; allow for that and a little clock skew.
    let slack = Duration::from_secs(60);
    assert!(
        meta.last_modified >= before - slack && meta.last_modified <= SystemTime::now() + slack,
        "last_modified {:?} is not around now",
        meta.last_modified
    );

    put(s, &k, "a longer second value").await;
    assert_eq!(get(s, &k).await, "a longer second value");
    assert_eq!(s.head(&k).await.expect("head").map(|m| m.size), Some(21));
    put(s, &k, "x").await;
    assert_eq!(get(s, &k).await, "x", "overwrite with a shorter value");
    assert_eq!(list_keys(s, &key("basic/")).await, vec![k]);
}

async fn missing_objects(s: &dyn ObjectStore) {
    let k = key("missing/object");
    match s.get(&k).await {
        Err(StorageError::NotFound { key }) => assert_eq!(key, k),
        other => panic!("get of a missing key: {other:?}"),
    }
    for r in [0..10, 0..0] {
        let got = s.get_range(&k, r.clone()).await;
        assert!(matches!(got, Err(StorageError::NotFound { .. })), "get_range {r:?} of a missing key: {got:?}");
    }
    assert_eq!(s.head(&k).await.expect("head"), None);
    s.delete(&k).await.expect("delete of a missing key");
    assert!(list(s, &key("missing/")).await.is_empty());
    assert!(prefixes(s, &key("missing/")).await.is_empty());
    // A prefix of existing keys is not an object.
    put(s, &key("missing/dir/object"), "x").await;
    assert!(s.get(&key("missing/dir")).await.is_err_and(|e| e.is_not_found()));
    assert_eq!(s.head(&key("missing/dir")).await.expect("head"), None);
}

async fn delete(s: &dyn ObjectStore) {
    let (a, b) = (key("delete/a"), key("delete/b"));
    put(s, &a, "a").await;
    put(s, &b, "b").await;
    s.delete(&a).await.expect("delete");
    assert!(s.get(&a).await.is_err_and(|e| e.is_not_found()));
    assert_eq!(s.head(&a).await.expect("head"), None);
    assert_eq!(list_keys(s, &key("delete/")).await, vec![b.clone()]);
    s.delete(&a).await.expect("second delete");
    assert_eq!(get(s, &b).await, "b", "deleting a did not touch b");
    // Deleting the last object under a prefix makes the prefix disappear.
    let nested = key("delete/nested/deeper/object");
    put(s, &nested, "n").await;
    assert_eq!(prefixes(s, &key("delete/")).await, keys(&["delete/nested/"]));
    s.delete(&nested).await.expect("delete nested");
    assert!(prefixes(s, &key("delete/")).await.is_empty());
    assert_eq!(list_keys(s, &key("delete/")).await, vec![b]);
    // And writing under it again works.
    put(s, &nested, "again").await;
    assert_eq!(get(s, &nested).await, "again");
}

async fn ranges(s: &dyn ObjectStore) {
    let k = key("range/object");
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    put(s, &k, data.clone()).await;
    let cases: [(Range<u64>, Range<usize>); 7] = [
        (0..10, 0..10),
        (10..20, 10..20),
        (990..1000, 990..1000),
        (0..1000, 0..1000),
        (999..1000, 999..1000),
        (995..2000, 995..1000),
        (0..u64::MAX, 0..1000),
    ];
    for (r, want) in cases {
        assert_eq!(range(s, &k, r.clone()).await, &data[want], "get_range {r:?}");
    }
    for r in [5..5, 1000..1000] {
        assert!(range(s, &k, r.clone()).await.is_empty(), "empty range {r:?}");
    }
    #[allow(clippy::reversed_empty_ranges)]
    let invalid: [Range<u64>; 4] = [1000..1001, 2000..3000, 5..3, u64::MAX - 1..u64::MAX];
    for r in invalid {
        let got = s.get_range(&k, r.clone()).await;
        assert!(matches!(got, Err(StorageError::Invalid(_))), "get_range {r:?} of a 1000-byte object: {got:?}");
    }
}

async fn empty_object(s: &dyn ObjectStore) {
    let k = key("empty/object");
    put(s, &k, Bytes::new()).await;
    assert!(get(s, &k).await.is_empty());
    assert_eq!(s.head(&k).await.expect("head").map(|m| m.size), Some(0));
    assert_eq!(list(s, &k).await.first().map(|m| m.size), Some(0));
    assert!(range(s, &k, 0..0).await.is_empty());
    let got = s.get_range(&k, 0..1).await;
    assert!(matches!(got, Err(StorageError::Invalid(_))), "get_range 0..1 of an empty object: {got:?}");
}

async fn listing(s: &dyn ObjectStore) {
    let objects = [
        ("list/a", "1"),
        ("list/b/c", "22"),
        ("list/b/d/e", "333"),
        ("list/ba", "4444"),
        ("list/b.txt", "55555"),
        ("list2/x", "666666"),
    ];
    for (k, v) in objects {
        put(s, &key(k), v).await;
    }
    let all = list(s, &key("list/")).await;
    assert_eq!(
        all.iter().map(|m| m.key.clone()).collect::<Vec<_>>(),
        keys(&["list/a", "list/b.txt", "list/b/c", "list/b/d/e", "list/ba"]),
        "listing is recursive and sorted by key"
    );
    for m in &all {
        let (_, v) = objects.iter().find(|(k, _)| key(k) == m.key).expect("listed key was put");
        assert_eq!(m.size, v.len() as u64, "size of {}", m.key);
    }
    let cases: [(&str, &[&str]); 6] = [
        ("list/b", &["list/b.txt", "list/b/c", "list/b/d/e", "list/ba"]),
        ("list/b/", &["list/b/c", "list/b/d/e"]),
        ("list/b/d/e", &["list/b/d/e"]),
        ("list/zzz", &[]),
        ("list/b/d/", &["list/b/d/e"]),
        ("list", &["list/a", "list/b.txt", "list/b/c", "list/b/d/e", "list/ba", "list2/x"]),
    ];
    for (prefix, want) in cases {
        assert_eq!(list_keys(s, &key(prefix)).await, keys(want), "list {prefix:?} matches by string prefix");
    }

    assert_eq!(prefixes(s, &key("list/")).await, keys(&["list/b/"]));
    assert_eq!(prefixes(s, &key("list/b")).await, keys(&["list/b/"]));
    assert_eq!(prefixes(s, &key("list/b/")).await, keys(&["list/b/d/"]));
    assert!(prefixes(s, &key("list/a")).await.is_empty());
    let top = prefixes(s, ROOT).await;
    for p in ["list/", "list2/", "basic/"] {
        assert!(top.contains(&key(p)), "{p} in {top:?}");
    }
    assert!(prefixes(s, "").await.contains(&ROOT.to_string()));
    assert!(list_keys(s, "").await.contains(&key("list2/x")), "an empty prefix lists everything");
}

async fn pagination(s: &dyn ObjectStore) {
    let names: Vec<(String, usize)> =
        (0..PAGINATION_KEYS).map(|i| (key(&format!("page/{i:04}/object")), i % 7)).collect();
    stream::iter(names.clone())
        .map(|(k, len)| async move { s.put(&k, Bytes::from(vec![b'p'; len])).await })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .expect("put pagination objects");
    let listed = list(s, &key("page/")).await;
    assert_eq!(listed.len(), PAGINATION_KEYS, "every object is listed");
    for (m, (k, len)) in listed.iter().zip(&names) {
        assert_eq!((&m.key, m.size), (k, *len as u64));
    }
    let dirs = prefixes(s, &key("page/")).await;
    assert_eq!(dirs.len(), PAGINATION_KEYS, "every prefix is listed");
    assert_eq!(dirs.first(), Some(&key("page/0000/")));
}

async fn concurrent_puts(store: Arc<dyn ObjectStore>) {
    const WRITERS: u8 = 16;
    const LEN: usize = 64 << 10;
    let k = key("race/object");
    let done = Arc::new(AtomicBool::new(false));
    // Readers check that nobody ever sees a torn write: an object is one writer's payload.
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, k, done) = (Arc::clone(&store), k.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                let mut reads = 0u32;
                while !done.load(Ordering::Acquire) || reads == 0 {
                    reads += 1;
                    match store.get(&k).await {
                        Ok(data) => assert!(
                            data.len() == LEN && data.iter().all(|b| *b == data[0]),
                            "torn read of a concurrently written object"
                        ),
                        Err(StorageError::NotFound { .. }) => {}
                        Err(e) => panic!("get during concurrent puts: {e}"),
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, k) = (Arc::clone(&store), k.clone());
            tokio::spawn(async move { store.put(&k, Bytes::from(vec![w; LEN])).await })
        })
        .collect();
    for w in writers {
        w.await.expect("writer task").expect("concurrent put");
    }
    done.store(true, Ordering::Release);
    for r in readers {
        r.await.expect("reader task");
    }
    let last = store.get(&k).await.expect("get after concurrent puts");
    assert_eq!(last.len(), LEN);
    assert!(last[0] < WRITERS && last.iter().all(|b| *b == last[0]));
    assert_eq!(list_keys(&*store, &key("race/")).await, vec![k]);
}

async fn large_object(s: &dyn ObjectStore) {
    const LEN: usize = 8 << 20;
    let k = key("large/object");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    put(s, &k, data.clone()).await;
    let back = get(s, &k).await;
    assert!(back.len() == LEN && back == data, "8 MiB object round trip");
    assert_eq!(s.head(&k).await.expect("head").map(|m| m.size), Some(LEN as u64));
    let mid = (LEN / 2) as u64;
    assert_eq!(range(s, &k, mid - 10..mid + 100_000).await, &data[LEN / 2 - 10..LEN / 2 + 100_000]);
    assert_eq!(range(s, &k, LEN as u64 - 3..LEN as u64 + 10).await, &data[LEN - 3..]);
}

async fn unusual_characters(s: &dyn ObjectStore) {
    let names = [
        "chars/tenant with spaces/x",
        "chars/ünïcødé/日本",
        "chars/sym!$&'()*,;=@~-_/x",
        "chars/a+b/c%20d",
        "chars/q?u#e[r]y",
        "chars/.hidden/x",
    ];
    for (i, n) in names.iter().enumerate() {
        put(s, &key(n), format!("{i}")).await;
    }
    for (i, n) in names.iter().enumerate() {
        assert_eq!(get(s, &key(n)).await, format!("{i}"), "get {n:?}");
    }
    let mut want = keys(&names);
    want.sort();
    assert_eq!(list_keys(s, &key("chars/")).await, want);
}

async fn invalid_keys(s: &dyn ObjectStore) {
    let long = "k".repeat(crate::storage::MAX_KEY_LEN + 1);
    let bad = [
        "",
        "/leading",
        "a//b",
        "trailing/",
        "a/../b",
        "..",
        ".",
        "a/./b",
        "nul\0byte",
        "new\nline",
        ".norn-tmp.1.2",
        "a/.norn-tmp",
        long.as_str(),
    ];
    let invalid = |what: &str, k: &str, r: Result<(), StorageError>| {
        assert!(matches!(r, Err(StorageError::Invalid(_))), "{what} {k:?} must be rejected as invalid: {r:?}");
    };
    for k in bad {
        invalid("put", k, s.put(k, Bytes::from_static(b"x")).await);
        invalid("get", k, s.get(k).await.map(drop));
        invalid("get_range", k, s.get_range(k, 0..1).await.map(drop));
        invalid("head", k, s.head(k).await.map(drop));
        invalid("delete", k, s.delete(k).await);
    }
    for p in ["/x", "a//", "../", "a/../b/", "./x", "//"] {
        invalid("list", p, s.list(p).await.map(drop));
        invalid("list_prefixes", p, s.list_prefixes(p).await.map(drop));
    }
}
