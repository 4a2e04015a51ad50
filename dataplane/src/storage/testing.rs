//! Test support shared by the crate's unit tests and the integration tests in `tests/`: a real
//! S3 server to run against ([`MotoServer`]) and the conformance suite every [`ObjectStore`](super::ObjectStore)
//! implementation must pass ([`conformance_suite`]).
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use norn::storage::testing::{MotoServer, conformance_suite};
//!
//! let moto = MotoServer::start().await.expect("moto_server"); // killed when dropped
//! let store = moto.store("my-bucket").await.expect("bucket"); // creates the bucket
//! conformance_suite(Arc::new(store)).await;
//! # }
//! ```
//!
//! `moto_server` (`pip install 'moto[server]'`) is found through the `NORN_MOTO_SERVER`
//! environment variable (a path) or else on `PATH`. Tests that need it fail, rather than skip,
//! when it is missing: a green run must mean the S3 code was exercised.

mod conformance;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub use conformance::conformance_suite;

use super::{S3Config, S3Store, StaticCredentials};

/// How long `moto_server` may take to start (Python imports are slow on a busy machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the server's output kept for error messages.
const LOG_LINES: usize = 50;

/// A `moto_server` (a local S3 implementation) child process listening on 127.0.0.1, killed when
/// dropped.
#[derive(Debug)]
pub struct MotoServer {
    /// The running server.
    child: Child,
    /// `http://127.0.0.1:<port>`.
    endpoint: String,
    /// The server's address, for the raw HTTP requests of readiness checks and bucket creation.
    addr: String,
    /// The last lines the server printed, to explain a failure.
    log: Arc<Mutex<VecDeque<String>>>,
}

impl MotoServer {
    /// Starts `moto_server` on a port the OS picks (`-p 0`, the port is read from the server's
    /// startup line) and waits until it answers HTTP requests. The error says how to install
    /// moto when the binary cannot be found.
    pub async fn start() -> Result<Self, String> {
        let bin = find_moto_server()?;
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (port_tx, mut port_rx) = mpsc::unbounded_channel();
        // The server logs every request; keep reading so that it never blocks on a full pipe.
        if let Some(out) = child.stdout.take() {
            drain(out, port_tx.clone(), Arc::clone(&log));
        }
        if let Some(err) = child.stderr.take() {
            drain(err, port_tx, Arc::clone(&log));
        }
        let mut server = Self { child, endpoint: String::new(), addr: String::new(), log };
        let port = match tokio::time::timeout(START_TIMEOUT, port_rx.recv()).await {
            Ok(Some(port)) => port,
            Ok(None) => return Err(server.failure("moto_server exited before listening")),
            Err(_) => return Err(server.failure("moto_server did not report its port in time")),
        };
        server.addr = format!("127.0.0.1:{port}");
        server.endpoint = format!("http://{}", server.addr);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match http_request(&server.addr, "GET", "/").await {
                Ok(_) => return Ok(server),
                Err(e) if Instant::now() >= deadline => {
                    return Err(server.failure(&format!("moto_server not ready: {e}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The URL to use as `storage.s3.endpoint`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// An S3 configuration pointing at this server (path style, short timeouts).
    pub fn s3_config(&self, bucket: &str) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            bucket: bucket.to_string(),
            force_path_style: Some(true),
            connect_timeout: crate::config::units::Dur::secs(2),
            operation_timeout: crate::config::units::Dur::secs(30),
            ..S3Config::default()
        }
    }

    /// Credentials moto accepts (it accepts any), passed explicitly so tests never touch the
    /// process environment.
    pub fn credentials() -> StaticCredentials {
        StaticCredentials::new("norn-test-key", "norn-test-secret")
    }

    /// Creates a bucket (idempotent).
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), String> {
        match http_request(&self.addr, "PUT", &format!("/{bucket}")).await? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("creating bucket {bucket}: HTTP {status}: {body}")),
        }
    }

    /// Creates `bucket` and returns a store on it.
    pub async fn store(&self, bucket: &str) -> Result<S3Store, String> {
        self.create_bucket(bucket).await?;
        S3Store::with_credentials(&self.s3_config(bucket), Self::credentials()).await.map_err(|e| e.to_string())
    }

    fn failure(&mut self, what: &str) -> String {
        // Give the reader threads a chance to pick up the last output of a dead server.
        let _ = self.child.try_wait();
        let log: Vec<String> = self.log.lock().iter().cloned().collect();
        format!("{what}; its output:\n{}", log.join("\n"))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `NORN_MOTO_SERVER`, or `moto_server` on `PATH`.
fn find_moto_server() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("NORN_MOTO_SERVER") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "NORN_MOTO_SERVER={} does not exist; install moto with `pip install 'moto[server]'`",
                path.display()
            ))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("moto_server"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "moto_server not found on PATH: install it with `pip install 'moto[server]'` \
             (or set NORN_MOTO_SERVER to its path); the S3 tests need a real S3 server"
                .to_string()
        })
}

/// Reads the server's output on a thread: reports the port of the `Running on http://...` line
/// and keeps the last lines.
fn drain(stream: impl Read + Send + 'static, port_tx: mpsc::UnboundedSender<u16>, log: Arc<Mutex<VecDeque<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(port) = parse_port(&line) {
                let _ = port_tx.send(port);
            }
            let mut log = log.lock();
            if log.len() == LOG_LINES {
                log.pop_front();
            }
            log.push_back(line);
        }
    });
}

/// The port of werkzeug's ` * Running on http://127.0.0.1:PORT` line.
fn parse_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("Running on http://")? + "Running on http://".len()..];
    let after_colon = &rest[rest.find(':')? + 1..];
    let digits: String = after_colon.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|p| *p != 0)
}

/// One HTTP/1.1 request without a body; returns the status code and the start of the body.
async fn http_request(addr: &str, method: &str, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut conn = TcpStream::connect(addr).await?;
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        conn.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("{method} {path}: timed out"))?
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{method} {path}: not an HTTP response: {:.64}", text))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.chars().take(512).collect()))
}

#[cfg(test)]
mod tests {
    use super::parse_port;

    #[test]
    fn port_is_read_from_the_startup_line() {
        assert_eq!(parse_port(" * Running on http://127.0.0.1:35389"), Some(35389));
        assert_eq!(parse_port("Press CTRL+C to quit"), None);
        assert_eq!(parse_port(" * Running on http://127.0.0.1:0"), None);
    }
}
