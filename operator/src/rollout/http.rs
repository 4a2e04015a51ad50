//! [`IngesterApi`] over the ingesters' HTTP API.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use super::{IngesterApi, IngesterPod, RolloutError};

/// Calls `POST /ingester/prepare_shutdown` on the pod's HTTP port, over HTTPS for pods that
/// serve it (`spec.tls`).
#[derive(Clone, Debug)]
pub struct HttpIngesters {
    timeout: Duration,
    client: reqwest::Client,
    /// Authorities of the pods' HTTPS certificates (the operator's `--tls-ca-file`).
    roots: Vec<reqwest::Certificate>,
}

impl HttpIngesters {
    /// A client whose requests give up after `timeout`. `ca` (PEM) holds the authorities of
    /// the pods' HTTPS certificates, trusted besides the system's roots.
    pub fn new(timeout: Duration, ca: Option<&Path>) -> Result<Self, RolloutError> {
        let mut roots = Vec::new();
        if let Some(path) = ca {
            let pem = std::fs::read(path).map_err(|e| setup(format!("reading {}: {e}", path.display())))?;
            roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| setup(format!("{}: not PEM certificates: {e}", path.display())))?;
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| setup(format!("building the client: {e}")))?;
        Ok(Self { timeout, client, roots })
    }

    /// The client and URL for `path` on `pod`. Over HTTPS the pod is called by its certificate's
    /// name (`tls_server_name`), resolved to its address, so that the name is verified.
    fn request(&self, pod: &IngesterPod, addr: &str, path: &str) -> Result<(reqwest::Client, String), String> {
        let Some(name) = &pod.tls_server_name else {
            return Ok((self.client.clone(), format!("http://{addr}{path}")));
        };
        let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("pod address {addr}: {e}"))?;
        let mut builder = reqwest::Client::builder().timeout(self.timeout).resolve(name, sock);
        for cert in &self.roots {
            builder = builder.add_root_certificate(cert.clone());
        }
        let client = builder.build().map_err(|e| format!("building the HTTPS client: {e}"))?;
        Ok((client, format!("https://{name}:{}{path}", sock.port())))
    }
}

/// `e` and its sources: reqwest's own message does not say why a connection failed (a refused
/// certificate, say).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn setup(message: String) -> RolloutError {
    RolloutError::Ingester { pod: String::new(), message }
}

#[async_trait]
impl IngesterApi for HttpIngesters {
    async fn prepare_shutdown(&self, pod: &IngesterPod) -> Result<(), RolloutError> {
        let fail = |message: String| RolloutError::Ingester { pod: pod.name.clone(), message };
        let Some(addr) = &pod.http_addr else {
            // No IP: the pod is not running, so it holds nothing to flush; deleting it is safe.
            tracing::info!(pod = %pod.name, "ingester has no address; nothing to prepare");
            return Ok(());
        };
        let (client, url) = self.request(pod, addr, "/ingester/prepare_shutdown").map_err(fail)?;
        let resp = client.post(&url).send().await.map_err(|e| fail(format!("POST {url}: {}", with_sources(&e))))?;
        let status = resp.status();
        if status.is_success() {
            tracing::info!(pod = %pod.name, "ingester will flush and leave the ring on SIGTERM");
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(fail(format!("POST {url}: {status}: {}", body.trim())))
    }
}
