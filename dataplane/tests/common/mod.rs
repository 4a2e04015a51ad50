//! Helpers shared by the integration tests: starting real `norn` processes and in-process
//! servers on `127.0.0.1:0`, and building push bodies in every wire format.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use norn::config::{Config, flags};
use norn::logproto;
use norn::server::{self, Listeners};
use prost::Message;
use tokio_util::sync::CancellationToken;

#[allow(unused_imports)] // each test binary uses its own part of the helpers
pub use norn::testing::{NornProcess, urlencode, wait_until};

/// Starts this crate's `norn` binary with `args` on `127.0.0.1:0`, logging into `dir`, and waits
/// until it is ready.
pub fn start_norn(dir: &Path, args: &[&str]) -> NornProcess {
    start_norn_with_env(dir, args, &[])
}

/// [`start_norn`] with extra environment variables (S3 credentials).
pub fn start_norn_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> NornProcess {
    start_norn_in(&[], dir, args, env)
}

/// [`start_norn_with_env`] under a `wrapper` command that execs the binary (`ip netns exec NS`).
#[allow(dead_code)] // Not every test crate starts processes in a network namespace.
pub fn start_norn_in(wrapper: &[String], dir: &Path, args: &[&str], env: &[(&str, &str)]) -> NornProcess {
    let log = dir.join(format!(
        "norn-{}.log",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    let args = without_discovery(args);
    NornProcess::start_in(wrapper, Path::new(env!("CARGO_BIN_EXE_norn")), &log, &args, env, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `args`, with `service_name` and `detected_level` discovery turned off unless they set it:
/// most tests check exact label sets of what they pushed. Tests of discovery pass
/// `--limits.discover-*` flags (or [`DISCOVERY`]).
pub fn without_discovery(args: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if !args.iter().any(|a| a.trim_start_matches('-').starts_with("limits.discover-")) {
        out.extend(["--limits.discover-service-name=".to_string(), "--limits.discover-log-levels=false".to_string()]);
    }
    out
}

/// Flags that keep Loki's default discovery (`service_name`, `detected_level`) in a test server.
pub const DISCOVERY: &[&str] = &["--limits.discover-log-levels=true"];

/// An in-process server on `127.0.0.1:0`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), server::ServeError>>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts every role with the given extra flags, data in a fresh temp dir.
    pub async fn start(extra: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let data = format!("--data.dir={}", dir.path().display());
        let mut args =
            vec!["norn".to_string(), data, "--http.addr=127.0.0.1:0".into(), "--ingester.wal.sync=never".into()];
        args.extend(without_discovery(extra));
        let cli = flags::parse(args).unwrap();
        let cfg = Config::load(None, false, &cli.overrides).unwrap();
        let listeners = Listeners::bind(&cfg).await.unwrap();
        let addr = listeners.http.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server::serve(cfg, listeners, shutdown.clone()));
        let s = TestServer { addr, shutdown, task, dir };
        let client = ::reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(r) = client.get(s.url("/ready")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "server not ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// `GET path` as `tenant` (no `X-Scope-OrgID` when `None`): status and body.
    pub async fn get(&self, path: &str, tenant: Option<&str>) -> (reqwest::StatusCode, String) {
        let mut req = reqwest::Client::new().get(self.url(path));
        if let Some(t) = tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        let r = req.send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// `GET path` as `tenant`: status code and body.
    pub async fn get_tenant(&self, path: &str, tenant: &str) -> (u16, String) {
        let (status, body) = self.get(path, Some(tenant)).await;
        (status.as_u16(), body)
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn get_json(&self, path: &str, tenant: Option<&str>) -> serde_json::Value {
        let (st, body) = self.get(path, tenant).await;
        assert_eq!(st, reqwest::StatusCode::OK, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Pushes `streams` as snappy protobuf; the push must be acknowledged (204).
    pub async fn push(&self, tenant: Option<&str>, streams: &[(&str, Vec<(i64, String)>)]) {
        let mut req = reqwest::Client::new().post(self.url("/loki/api/v1/push")).body(proto_body(streams));
        if let Some(t) = tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT, "{}", r.text().await.unwrap());
    }

    /// Flushes every chunk to the object store and waits for it.
    pub async fn flush(&self) {
        let r = reqwest::Client::new().post(self.url("/flush?wait=true")).send().await.unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    }
}

/// Nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    norn::timeutil::now_nanos()
}

/// A snappy-compressed protobuf push body.
pub fn proto_body(streams: &[(&str, Vec<(i64, String)>)]) -> Bytes {
    let req = logproto::PushRequest {
        streams: streams
            .iter()
            .map(|(labels, entries)| logproto::StreamAdapter {
                labels: Bytes::from(labels.to_string()),
                entries: entries
                    .iter()
                    .map(|(ts, line)| logproto::EntryAdapter {
                        timestamp: Some(logproto::Timestamp::from_nanos(*ts)),
                        line: Bytes::from(line.clone()),
                        structured_metadata: vec![],
                        parsed: vec![],
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    Bytes::from(snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap())
}

/// A JSON push body (v1 shape).
pub fn json_body(streams: &[(serde_json::Value, Vec<(i64, String)>)]) -> Vec<u8> {
    let streams: Vec<_> = streams
        .iter()
        .map(|(labels, entries)| {
            serde_json::json!({
                "stream": labels,
                "values": entries.iter().map(|(ts, l)| serde_json::json!([ts.to_string(), l])).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "streams": streams })).unwrap()
}

/// Every entry stored in the filesystem object store under `chunks_dir`, for `tenant`, as
/// (labels, ts, line), read through the index and the chunk decoder.
pub async fn stored_entries(chunks_dir: &Path, tenant: &str) -> Vec<(String, i64, String)> {
    use std::sync::Arc;
    let store: Arc<dyn norn::storage::ObjectStore> = Arc::new(norn::storage::FilesystemStore::new(chunks_dir).unwrap());
    let index = norn::storage::Index::new(store.clone(), Duration::from_secs(24 * 3600));
    let refs = index.chunks(tenant, i64::MIN / 2, i64::MAX / 2).await.unwrap();
    let mut out = Vec::new();
    for r in refs {
        let bytes = store.get(&r.key).await.unwrap();
        let chunk = norn::chunk::Chunk::decode(bytes).unwrap();
        for e in chunk.iter(i64::MIN, i64::MAX, norn::entry::Direction::Forward) {
            out.push((r.labels.to_string(), e.ts, String::from_utf8_lossy(&e.line).into_owned()));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Polls `f` every 50ms until it returns `Some`, failing after `deadline`.
pub async fn eventually<T, Fut>(what: &str, deadline: Duration, mut f: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
