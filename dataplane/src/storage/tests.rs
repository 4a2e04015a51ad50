//! Tests of the object stores and their configuration. The shared behaviour is the conformance
//! suite in `testing`; what is here is specific to one store or to configuration.

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::testing::{MotoServer, conformance_suite};
use super::*;

fn moto_error(e: String) -> ! {
    panic!("{e}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    conformance_suite(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    conformance_suite(Arc::new(FilesystemStore::new(dir.path()).expect("store"))).await;
    assert_eq!(temp_files(dir.path()), 0, "temporary files left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_conforms() {
    let moto = MotoServer::start().await.unwrap_or_else(|e| moto_error(e));
    moto.create_bucket("norn-conformance").await.unwrap_or_else(|e| moto_error(e));
    let cfg = S3Config { prefix: Some("cluster-a/".into()), ..moto.s3_config("norn-conformance") };
    let store = S3Store::with_credentials(&cfg, MotoServer::credentials())
        .await
        .expect("s3 store")
        // The suite lists 250 keys: page through them.
        .with_list_page_size(100);
    conformance_suite(Arc::new(store)).await;

    // Everything went under the configured prefix.
    let raw = moto.store("norn-conformance").await.expect("raw store");
    let all = raw.list("").await.expect("list bucket");
    assert!(all.len() > 250);
    assert!(all.iter().all(|m| m.key.starts_with("cluster-a/conformance/")));
}

/// Counts `.norn-tmp*` files under `dir`.
fn temp_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            if e.file_name().to_string_lossy().starts_with(TEMP_MARKER) {
                n += 1;
            } else if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    n
}

#[tokio::test]
async fn filesystem_hides_temporary_files_and_sweeps_stale_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FilesystemStore::new(dir.path()).expect("store");
    store.put("t/a", Bytes::from_static(b"a")).await.expect("put");
    let fresh = dir.path().join("t/.norn-tmp.1.1");
    let stale = dir.path().join("t/.norn-tmp.1.2");
    std::fs::write(&fresh, b"in flight").expect("write");
    std::fs::write(&stale, b"crashed").expect("write");
    let old = SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options().write(true).open(&stale).and_then(|f| f.set_modified(old)).expect("set mtime");

    let listed: Vec<String> = store.list("t/").await.expect("list").into_iter().map(|m| m.key).collect();
    assert_eq!(listed, vec!["t/a".to_string()]);
    assert!(fresh.exists(), "a write in flight is left alone");
    assert!(!stale.exists(), "a crashed write's file is removed");
}

#[tokio::test]
async fn filesystem_rejects_file_directory_conflicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FilesystemStore::new(dir.path()).expect("store");
    store.put("a/b", Bytes::from_static(b"x")).await.expect("put");
    let e = store.put("a", Bytes::from_static(b"y")).await;
    assert!(matches!(e, Err(StorageError::Invalid(_))), "{e:?}");
    let e = store.put("a/b/c", Bytes::from_static(b"y")).await;
    assert!(matches!(e, Err(StorageError::Invalid(_))), "{e:?}");
    let e = store.put("a/b/c/d", Bytes::from_static(b"y")).await;
    assert!(matches!(e, Err(StorageError::Invalid(_))), "{e:?}");
    assert!(store.get("a/b/c").await.is_err_and(|e| e.is_not_found()));
    assert_eq!(store.head("a/b/c").await.expect("head"), None);
    store.delete("a/b/c").await.expect("delete under a file");
    assert_eq!(store.get("a/b").await.expect("get"), "x", "nothing was overwritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_put_survives_concurrent_removal_of_its_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FilesystemStore::new(dir.path()).expect("store"));
    for i in 0..100 {
        // Deleting `b` empties the directory `a` is being written into, which removes it.
        let (s1, s2) = (Arc::clone(&store), Arc::clone(&store));
        let a = tokio::spawn(async move { s1.put(&format!("r/{i}/a"), Bytes::from("a")).await });
        let b = tokio::spawn(async move {
            let k = format!("r/{i}/b");
            s2.put(&k, Bytes::from("b")).await?;
            s2.delete(&k).await
        });
        a.await.expect("task").expect("put a");
        b.await.expect("task").expect("put and delete b");
    }
    let listed = store.list("r/").await.expect("list");
    assert_eq!(listed.len(), 100);
    assert!(listed.iter().all(|m| m.key.ends_with("/a")));
}

#[tokio::test]
async fn s3_missing_bucket_is_a_config_error() {
    let moto = MotoServer::start().await.unwrap_or_else(|e| moto_error(e));
    let store =
        S3Store::with_credentials(&moto.s3_config("no-such-bucket"), MotoServer::credentials()).await.expect("store");
    let e = store.get("a").await;
    assert!(matches!(e, Err(StorageError::Config(_))), "get: {e:?}");
    let e = store.put("a", Bytes::from_static(b"x")).await;
    assert!(matches!(e, Err(StorageError::Config(_))), "put: {e:?}");
    let e = store.list("").await;
    assert!(matches!(e, Err(StorageError::Config(_))), "list: {e:?}");
}

/// A store pointing at `port` with short timeouts and one retry.
async fn unreachable_store(port: u16) -> S3Store {
    let cfg = S3Config {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        bucket: "b".into(),
        connect_timeout: crate::config::units::Dur(Duration::from_millis(300)),
        operation_timeout: crate::config::units::Dur(Duration::from_millis(1000)),
        max_attempts: 2,
        ..S3Config::default()
    };
    S3Store::with_credentials(&cfg, MotoServer::credentials()).await.expect("store")
}

async fn assert_all_unavailable(store: &S3Store) {
    let started = Instant::now();
    // Concurrently, so the test takes one timeout rather than six.
    let (put, get, get_range, head, list, delete) = tokio::join!(
        store.put("k", Bytes::from_static(b"x")),
        store.get("k"),
        store.get_range("k", 0..1),
        store.head("k"),
        store.list(""),
        store.delete("k"),
    );
    let results = [
        ("put", put.err()),
        ("get", get.err()),
        ("get_range", get_range.err()),
        ("head", head.err()),
        ("list", list.err()),
        ("delete", delete.err()),
    ];
    for (op, e) in results {
        assert!(matches!(e, Some(StorageError::Unavailable(_))), "{op}: expected Unavailable, got {e:?}");
        assert!(e.is_some_and(|e| e.is_retryable()));
    }
    assert!(started.elapsed() < Duration::from_secs(8), "failing calls took {:?}", started.elapsed());
}

#[tokio::test]
async fn s3_server_down_is_unavailable() {
    let port = {
        let l = StdListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    assert_all_unavailable(&unreachable_store(port).await).await;
}

#[tokio::test]
async fn s3_server_not_answering_is_unavailable() {
    // Connections complete in the backlog, but nothing ever reads or answers.
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    assert_all_unavailable(&unreachable_store(port).await).await;
    drop(listener);
}

#[test]
fn config_defaults_and_yaml() {
    let cfg: StorageConfig = serde_norway::from_str("{}").expect("empty config");
    assert_eq!(cfg, StorageConfig::default());
    assert_eq!(cfg.backend, Backend::Filesystem);
    assert_eq!(cfg.s3.region, "us-east-1");
    assert_eq!(cfg.index.period.get(), Duration::from_secs(86400));
    assert!(cfg.validate().is_ok());

    let cfg: StorageConfig = serde_norway::from_str(
        "backend: s3\ns3:\n  endpoint: http://minio:9000\n  bucket: logs\n  operation_timeout: 2m\nindex:\n  period: 12h\n",
    )
    .expect("s3 config");
    assert_eq!(cfg.backend, Backend::S3);
    assert!(cfg.s3.path_style(), "path style by default with an endpoint");
    assert_eq!(cfg.s3.operation_timeout.get(), Duration::from_secs(120));
    assert_eq!(cfg.s3.connect_timeout.get(), Duration::from_secs(5));
    assert_eq!(cfg.index_period(), Duration::from_secs(12 * 3600));
    assert!(cfg.validate().is_ok());
    let aws = S3Config { bucket: "logs".into(), ..S3Config::default() };
    assert!(!aws.path_style(), "virtual-hosted style on AWS");

    for bad in ["backend: S4", "unknown: 1", "s3:\n  bucket: x\n  secret: y", "filesystem:\n  path: /x"] {
        assert!(serde_norway::from_str::<StorageConfig>(bad).is_err(), "{bad:?} must not parse");
    }
    let memory: StorageConfig = serde_norway::from_str("backend: memory").expect("memory");
    assert_eq!(memory.backend, Backend::Memory);
}

#[test]
fn config_validation_names_the_key() {
    let cfg = StorageConfig { backend: Backend::S3, ..StorageConfig::default() };
    assert_eq!(
        String::from(cfg.validate().expect_err("no bucket")),
        "storage.s3.bucket must be set when storage.backend is s3"
    );
    let with = |f: fn(&mut StorageConfig)| {
        let mut c = StorageConfig {
            backend: Backend::S3,
            s3: S3Config { bucket: "logs".into(), ..S3Config::default() },
            ..StorageConfig::default()
        };
        f(&mut c);
        c.validate().expect_err("invalid").to_string()
    };
    assert!(with(|c| c.s3.endpoint = Some("minio:9000".into())).starts_with("storage.s3.endpoint"));
    assert!(with(|c| c.s3.max_attempts = 0).starts_with("storage.s3.max_attempts"));
    assert!(with(|c| c.s3.prefix = Some("a/../b".into())).starts_with("storage.s3.prefix"));
    assert!(with(|c| c.s3.bucket = "a/b".into()).starts_with("storage.s3.bucket"));
    assert!(with(|c| c.index.period = crate::config::units::Dur::secs(1)).starts_with("storage.index.period"));
    // The s3 section is not checked when another backend is selected.
    let fs = StorageConfig::default();
    assert!(fs.validate().is_ok());
}

#[tokio::test]
async fn from_config_builds_each_backend() {
    let data = tempfile::tempdir().expect("tempdir");
    let fs = from_config(&StorageConfig::default(), data.path()).await.expect("filesystem");
    fs.put("t/x", Bytes::from_static(b"1")).await.expect("put");
    assert!(data.path().join("chunks/t/x").is_file(), "default dir is <data_dir>/chunks");

    let elsewhere = data.path().join("custom");
    let cfg =
        StorageConfig { filesystem: FilesystemConfig { dir: Some(elsewhere.clone()) }, ..StorageConfig::default() };
    let fs = from_config(&cfg, data.path()).await.expect("filesystem");
    fs.put("t/y", Bytes::from_static(b"1")).await.expect("put");
    assert!(elsewhere.join("t/y").is_file());

    let cfg = StorageConfig { backend: Backend::Memory, ..StorageConfig::default() };
    let mem = from_config(&cfg, data.path()).await.expect("memory");
    mem.put("t/z", Bytes::from_static(b"1")).await.expect("put");
    assert_eq!(mem.get("t/z").await.expect("get"), "1");

    let cfg = StorageConfig { backend: Backend::S3, ..StorageConfig::default() };
    let e = from_config(&cfg, data.path()).await.expect_err("no bucket");
    assert!(matches!(e, StorageError::Config(_)), "{e:?}");
}

#[test]
fn keys_and_prefixes_are_validated() {
    for ok in ["a", "a/b", "t/chunks/00ff/1-2-3", ".hidden/x", "a/..b", "a/b.."] {
        assert!(validate_key(ok).is_ok(), "{ok:?}");
    }
    for ok in ["", "a", "a/", "a/b", "a/b/"] {
        assert!(validate_prefix(ok).is_ok(), "{ok:?}");
    }
    for bad in ["/", "//", "a//", "/a", "../", "a/./"] {
        assert!(validate_prefix(bad).is_err(), "{bad:?}");
    }
    assert_eq!(common_prefix("a/b/c", "a/"), Some("a/b/"));
    assert_eq!(common_prefix("a/bc", "a/b"), None);
    assert_eq!(common_prefix("a/b/c", "a/b"), Some("a/b/"));
    assert_eq!(common_prefix("x/b/c", "a/"), None);
}

#[test]
fn retryable_errors() {
    assert!(StorageError::Unavailable("down".into()).is_retryable());
    assert!(StorageError::Io { path: "/x".into(), source: std::io::Error::other("disk full") }.is_retryable());
    assert!(!StorageError::NotFound { key: "k".into() }.is_retryable());
    assert!(!StorageError::Invalid("k".into()).is_retryable());
    assert!(!StorageError::Config("k".into()).is_retryable());
}
