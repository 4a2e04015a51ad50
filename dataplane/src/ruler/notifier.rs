//! Sending alerts to Alertmanager's v2 API (`POST <url>/api/v2/alerts`, a JSON array).
//!
//! Evaluations hand their due alerts to a bounded queue and go on; one task posts them to
//! every configured Alertmanager. A failed post is logged and counted, not retried: the rule
//! sends firing alerts again every `ruler.resend_delay`, as Prometheus does.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::alerting::Notification;

/// Most alerts waiting to be sent; past it the oldest are dropped.
const QUEUE_CAPACITY: usize = 10_000;
/// Most alerts in one request.
const MAX_BATCH: usize = 64;

/// Counters of the notifier, for `/metrics`.
#[derive(Debug, Default)]
pub struct NotifierStats {
    pub sent: AtomicU64,
    pub errors: AtomicU64,
    pub dropped: AtomicU64,
}

#[derive(Debug)]
pub struct Notifier {
    urls: Vec<String>,
    client: reqwest::Client,
    queue: Mutex<VecDeque<Notification>>,
    wake: Notify,
    pub stats: NotifierStats,
}

impl Notifier {
    pub fn new(urls: Vec<String>, timeout: Duration) -> Arc<Self> {
        let client = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
        Arc::new(Self {
            urls,
            client,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            stats: Default::default(),
        })
    }

    /// Queues alerts to send.
    pub fn send(&self, alerts: Vec<Notification>) {
        if alerts.is_empty() || self.urls.is_empty() {
            return;
        }
        let mut q = self.queue.lock();
        q.extend(alerts);
        while q.len() > QUEUE_CAPACITY {
            q.pop_front();
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        drop(q);
        self.wake.notify_one();
    }

    /// Posts queued alerts until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let batch: Vec<Notification> = {
                let mut q = self.queue.lock();
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => continue,
                }
            }
            for url in &self.urls {
                let endpoint = format!("{url}/api/v2/alerts");
                match self.client.post(&endpoint).json(&batch).send().await {
                    Ok(r) if r.status().is_success() => {
                        self.stats.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        tracing::warn!(url = %endpoint, %status, body = %body.trim(), "alertmanager refused alerts");
                    }
                    Err(err) => {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(url = %endpoint, %err, "cannot send alerts to alertmanager");
                    }
                }
            }
        }
    }
}
