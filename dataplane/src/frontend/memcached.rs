//! A memcached client for the results cache: the text protocol's `get` and `set` over pooled
//! TCP connections, keys spread over the servers by hash.
//!
//! Every failure — a refused connection, a timeout, a garbled answer — is a miss or a dropped
//! write: a memcached that is down makes queries slower, never failed. A server that failed is
//! left alone for a second before it is tried again, so a dead one costs one timeout per second
//! rather than one per lookup.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::cache::CacheBackend;

/// How long a server that failed is skipped.
const BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Memcached {
    servers: Vec<String>,
    /// Deadline of connecting and of one command.
    timeout: Duration,
    /// Idle connections kept per server.
    max_idle: usize,
    /// Values larger than this are not stored (memcached's item size limit).
    max_item_size: usize,
    /// Expiry given to stored values, in seconds (0: none).
    expiration_secs: u64,
    idle: Mutex<HashMap<String, Vec<BufReader<TcpStream>>>>,
    down_until: Mutex<HashMap<String, Instant>>,
}

/// A failed command; only logged.
#[derive(Debug, thiserror::Error)]
enum McError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("unexpected answer {0:?}")]
    Protocol(String),
}

impl Memcached {
    pub fn new(
        servers: Vec<String>,
        timeout: Duration,
        max_idle: usize,
        max_item_size: usize,
        expiration: Duration,
    ) -> Self {
        Self {
            servers,
            timeout,
            max_idle,
            max_item_size,
            expiration_secs: expiration.as_secs(),
            idle: Mutex::new(HashMap::new()),
            down_until: Mutex::new(HashMap::new()),
        }
    }

    /// The server responsible for `key`.
    fn server(&self, key: &str) -> Option<&str> {
        if self.servers.is_empty() {
            return None;
        }
        let h = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
        Some(&self.servers[(h % self.servers.len() as u64) as usize])
    }

    async fn conn(&self, server: &str) -> Result<BufReader<TcpStream>, McError> {
        if let Some(c) = self.idle.lock().get_mut(server).and_then(Vec::pop) {
            return Ok(c);
        }
        let stream =
            tokio::time::timeout(self.timeout, TcpStream::connect(server)).await.map_err(|_| McError::Timeout)??;
        stream.set_nodelay(true)?;
        Ok(BufReader::new(stream))
    }

    fn release(&self, server: &str, conn: BufReader<TcpStream>) {
        let mut idle = self.idle.lock();
        let pool = idle.entry(server.to_string()).or_default();
        if pool.len() < self.max_idle {
            pool.push(conn);
        }
    }

    fn available(&self, server: &str) -> bool {
        self.down_until.lock().get(server).is_none_or(|until| Instant::now() >= *until)
    }

    fn failed(&self, server: &str, err: &McError) {
        tracing::warn!(server, %err, "memcached failed; answering without the results cache");
        self.down_until.lock().insert(server.to_string(), Instant::now() + BACKOFF);
    }

    /// Runs one command on a connection to `server`, within the timeout; the connection goes
    /// back to the pool only when the command completed.
    async fn run<T>(
        &self,
        server: &str,
        command: impl AsyncFnOnce(&mut BufReader<TcpStream>) -> Result<T, McError>,
    ) -> Option<T> {
        if !self.available(server) {
            return None;
        }
        let attempt = async {
            let mut conn = self.conn(server).await?;
            let out = command(&mut conn).await?;
            Ok::<_, McError>((conn, out))
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok((conn, out))) => {
                self.release(server, conn);
                Some(out)
            }
            Ok(Err(e)) => {
                self.failed(server, &e);
                None
            }
            Err(_) => {
                self.failed(server, &McError::Timeout);
                None
            }
        }
    }
}

async fn read_line(conn: &mut BufReader<TcpStream>) -> Result<String, McError> {
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Err(McError::Protocol("connection closed".into()));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[async_trait]
impl CacheBackend for Memcached {
    async fn get(&self, key: &str) -> Option<Bytes> {
        let server = self.server(key)?;
        let request = format!("get {key}\r\n");
        self.run(server, async move |conn: &mut BufReader<TcpStream>| {
            conn.get_mut().write_all(request.as_bytes()).await?;
            let header = read_line(conn).await?;
            if header == "END" {
                return Ok(None);
            }
            // VALUE <key> <flags> <bytes>
            let len: usize = header
                .strip_prefix("VALUE ")
                .and_then(|rest| rest.split_whitespace().nth(2))
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| McError::Protocol(header.clone()))?;
            let mut data = vec![0u8; len + 2];
            conn.read_exact(&mut data).await?;
            data.truncate(len);
            let end = read_line(conn).await?;
            if end != "END" {
                return Err(McError::Protocol(end));
            }
            Ok(Some(Bytes::from(data)))
        })
        .await
        .flatten()
    }

    async fn set(&self, key: &str, value: Bytes) {
        if value.len() > self.max_item_size {
            return;
        }
        let Some(server) = self.server(key) else { return };
        let header = format!("set {key} 0 {} {}\r\n", self.expiration_secs, value.len());
        self.run(server, async move |conn: &mut BufReader<TcpStream>| {
            let w = conn.get_mut();
            w.write_all(header.as_bytes()).await?;
            w.write_all(&value).await?;
            w.write_all(b"\r\n").await?;
            let answer = read_line(conn).await?;
            if answer != "STORED" {
                return Err(McError::Protocol(answer));
            }
            Ok(())
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_that_is_down_is_a_miss_not_an_error() {
        // A port nothing listens on: bind, note the port, close.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mc = Memcached::new(vec![addr.to_string()], Duration::from_millis(200), 4, 1 << 20, Duration::ZERO);
        mc.set("k", Bytes::from_static(b"v")).await;
        assert_eq!(mc.get("k").await, None);
        assert!(!mc.available(&addr.to_string()), "a failed server is backed off");
    }
}
