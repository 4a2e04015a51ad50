//! [`IngesterApi`] over the ingesters' HTTP API.

use std::time::Duration;

use async_trait::async_trait;

use super::{IngesterApi, IngesterPod, RolloutError};

/// Calls `POST /ingester/prepare_shutdown` on the pod's HTTP port.
#[derive(Clone, Debug)]
pub struct HttpIngesters {
    client: reqwest::Client,
}

impl HttpIngesters {
    /// A client whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, RolloutError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| RolloutError::Ingester { pod: String::new(), message: format!("building the client: {e}") })?;
        Ok(Self { client })
    }
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
        let url = format!("http://{addr}/ingester/prepare_shutdown");
        let resp = self.client.post(&url).send().await.map_err(|e| fail(format!("POST {url}: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            tracing::info!(pod = %pod.name, "ingester will flush and leave the ring on SIGTERM");
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(fail(format!("POST {url}: {status}: {}", body.trim())))
    }
}
