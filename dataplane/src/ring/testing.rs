//! Test support shared by the crate's unit tests and the end-to-end tests: a real etcd to run
//! against ([`EtcdServer`]) and the conformance suite every [`KvStore`](super::kv::KvStore) must
//! pass ([`kv_conformance_suite`]).
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use norn::ring::testing::{EtcdServer, kv_conformance_suite};
//!
//! let mut etcd = EtcdServer::start().await.expect("etcd"); // killed and wiped when dropped
//! let kv = etcd.kv().await.expect("client");
//! kv_conformance_suite(Arc::new(kv), "conformance/").await;
//! etcd.kill(); // the ring store goes away ...
//! etcd.restart().await.expect("etcd again"); // ... and comes back on the same port and data
//! # }
//! ```
//!
//! The `etcd` binary (Debian: `apt-get install etcd-server`) is found through the `NORN_ETCD`
//! environment variable (a path) or else on `PATH`. Tests that need it fail, rather than skip,
//! when it is missing: a green run must mean the etcd code was exercised.

mod conformance;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;

pub use conformance::kv_conformance_suite;

use super::config::EtcdConfig;
use super::kv::{EtcdKv, KvStore};
use crate::config::units::Dur;

/// How long etcd may take to start and elect itself leader on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of etcd's output kept for error messages.
const LOG_LINES: usize = 60;

/// Ports etcd reported listening on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Ports {
    client: u16,
    peer: u16,
}

/// A single-member etcd child process on 127.0.0.1 with its own data directory; killed, and its
/// data directory removed, when dropped.
#[derive(Debug)]
pub struct EtcdServer {
    /// The running process, `None` after [`EtcdServer::kill`].
    child: Option<Child>,
    /// The binary.
    bin: PathBuf,
    /// The data directory (kept across [`EtcdServer::restart`]).
    data_dir: PathBuf,
    /// Where it listens.
    ports: Ports,
    /// The last lines it printed, to explain a failure.
    log: Arc<Mutex<VecDeque<String>>>,
    /// HTTPS for clients, when started with [`EtcdServer::start_tls`].
    tls: Option<EtcdTls>,
}

/// TLS of a test etcd's client port: its certificate, the authority whose client certificates it
/// requires (`--client-cert-auth`), and how [`EtcdServer::config`]'s clients connect.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: PathBuf,
    /// The `ring.etcd.tls_*` keys of a client that may connect.
    pub client: crate::tls::ClientTlsConfig,
}

impl EtcdServer {
    /// Starts etcd on ports the OS picks (read back from etcd's log, so there is no window in
    /// which another process could take them) and waits until it serves requests. The error says
    /// how to install etcd when the binary cannot be found.
    pub async fn start() -> Result<Self, String> {
        Self::start_binary(find_etcd()?).await
    }

    /// [`EtcdServer::start`] with the etcd binary `bin` (e.g. the etcd the Kubernetes control
    /// plane of the end-to-end tests runs on).
    pub async fn start_binary(bin: PathBuf) -> Result<Self, String> {
        Self::launch(bin, None).await
    }

    /// [`EtcdServer::start`] serving clients over HTTPS only, requiring client certificates.
    pub async fn start_tls(tls: EtcdTls) -> Result<Self, String> {
        Self::launch(find_etcd()?, Some(tls)).await
    }

    async fn launch(bin: PathBuf, tls: Option<EtcdTls>) -> Result<Self, String> {
        let data_dir = unique_dir()?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let mut server = Self { child: None, bin, data_dir, ports: Ports::default(), log, tls };
        server.spawn(None).await?;
        Ok(server)
    }

    /// Starts etcd again after [`EtcdServer::kill`], on the same ports with the same data: the
    /// same cluster coming back. Fails if another process took a port meanwhile.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let ports = self.ports;
        self.spawn(Some(ports)).await
    }

    /// Kills etcd (SIGKILL) and waits for it to exit. Clients see connection errors from now on.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `127.0.0.1:<port>` of the client API (HTTPS when started with [`EtcdServer::start_tls`]).
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.ports.client)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// A client configuration for this server with short timeouts, as tests want them.
    pub fn config(&self) -> EtcdConfig {
        EtcdConfig {
            endpoints: vec![self.endpoint()],
            dial_timeout: Dur(Duration::from_secs(2)),
            request_timeout: Dur(Duration::from_secs(2)),
            ..self.tls.as_ref().map_or_else(EtcdConfig::default, |t| EtcdConfig::default().with_tls(&t.client))
        }
    }

    /// A store on this server.
    pub async fn kv(&self) -> Result<EtcdKv, String> {
        EtcdKv::connect(&self.config()).await.map_err(|e| e.to_string())
    }

    async fn spawn(&mut self, ports: Option<Ports>) -> Result<(), String> {
        let scheme = self.scheme();
        let (client_url, peer_url) = match ports {
            Some(p) => (format!("{scheme}://127.0.0.1:{}", p.client), format!("http://127.0.0.1:{}", p.peer)),
            None => (format!("{scheme}://127.0.0.1:0"), "http://127.0.0.1:0".to_string()),
        };
        let mut cmd = Command::new(&self.bin);
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file").arg(&tls.cert_file).arg("--key-file").arg(&tls.key_file);
            cmd.arg("--client-cert-auth").arg("--trusted-ca-file").arg(&tls.client_ca_file);
        }
        let mut child = cmd
            .arg("--name")
            .arg("norn-test")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        self.log.lock().clear();
        let (tx, mut rx) = mpsc::unbounded_channel();
        if let Some(out) = child.stdout.take() {
            drain(out, tx.clone(), Arc::clone(&self.log));
        }
        if let Some(err) = child.stderr.take() {
            drain(err, tx, Arc::clone(&self.log));
        }
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let mut found = Ports::default();
        while found.client == 0 || found.peer == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(Listening::Client(p))) => found.client = p,
                Ok(Some(Listening::Peer(p))) => found.peer = p,
                Ok(None) => return Err(self.failure("etcd exited before listening")),
                Err(_) => return Err(self.failure("etcd did not report its ports in time")),
            }
        }
        self.ports = found;
        // Listening is not serving: wait until a request goes through (leader elected).
        let kv = EtcdKv::connect(&self.config()).await.map_err(|e| self.failure(&format!("connecting: {e}")))?;
        loop {
            match kv.get("norn-health-probe").await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(self.failure(&format!("etcd not ready: {e}"))),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn failure(&mut self, what: &str) -> String {
        if let Some(c) = self.child.as_mut() {
            let _ = c.try_wait();
        }
        let log: Vec<String> = self.log.lock().iter().cloned().collect();
        format!("{what}; etcd's output:\n{}", log.join("\n"))
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A fresh directory under the system temp dir, unique to this process and call.
fn unique_dir() -> Result<PathBuf, String> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "norn-etcd-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// `NORN_ETCD`, or `etcd` on `PATH`.
fn find_etcd() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("NORN_ETCD") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "NORN_ETCD={} does not exist; install etcd with `apt-get install etcd-server` (Debian)",
                path.display()
            ))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "etcd not found on PATH: install it with `apt-get install etcd-server` (Debian) or set NORN_ETCD \
             to the etcd binary; the ring tests need a real etcd"
                .to_string()
        })
}

/// A listener etcd reported.
enum Listening {
    Client(u16),
    Peer(u16),
}

/// Reads etcd's output on a thread: reports listening ports and keeps the last lines.
fn drain(stream: impl Read + Send + 'static, tx: mpsc::UnboundedSender<Listening>, log: Arc<Mutex<VecDeque<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(l) = parse_listening(&line) {
                let _ = tx.send(l);
            }
            let mut log = log.lock();
            if log.len() == LOG_LINES {
                log.pop_front();
            }
            log.push_back(line);
        }
    });
}

/// The port of etcd's (zap logger) "serving client traffic ..." / "serving peer traffic" lines.
fn parse_listening(line: &str) -> Option<Listening> {
    let port = || {
        let rest = &line[line.find("\"address\":\"")? + "\"address\":\"".len()..];
        let addr = &rest[..rest.find('"')?];
        addr.rsplit_once(':')?.1.parse::<u16>().ok().filter(|p| *p != 0)
    };
    if line.contains("serving client traffic") || line.contains("serving insecure client requests") {
        return port().map(Listening::Client);
    }
    if line.contains("serving peer traffic") {
        return port().map(Listening::Peer);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcd_listening_lines() {
        let client = r#"{"level":"info","msg":"serving client traffic insecurely; this is strongly discouraged!","address":"127.0.0.1:38421"}"#;
        let peer =
            r#"{"level":"info","caller":"embed/etcd.go:587","msg":"serving peer traffic","address":"127.0.0.1:36613"}"#;
        assert!(matches!(parse_listening(client), Some(Listening::Client(38421))));
        assert!(matches!(parse_listening(peer), Some(Listening::Peer(36613))));
        assert!(
            parse_listening(r#"{"msg":"configuring peer listeners","listen-peer-urls":["http://127.0.0.1:0"]}"#)
                .is_none()
        );
        assert!(parse_listening(r#"{"msg":"serving client traffic insecurely","address":"127.0.0.1:0"}"#).is_none());
    }
}
