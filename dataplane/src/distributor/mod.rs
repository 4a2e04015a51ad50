//! The distributor: decodes pushes, validates them, enforces the tenant's ingestion rate, and
//! hands valid streams to the ingesters.

pub mod decode;
pub mod replicate;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use crate::entry::PushStream;
use crate::error::{ErrorKind, HasKind};
use crate::limits::TenantLimits;
use crate::metrics::{Metrics, TenantLabel};
use crate::ratelimit::IngestionLimiter;
use crate::timeutil::now_nanos;
use crate::validation::{self, Discards, Reason};
use decode::{DecodeError, Format};

/// Most validation messages returned in one response body.
const MAX_REPORTED_ERRORS: usize = 100;

/// Where validated streams go: the local ingester, or the replicas the ring picks.
#[async_trait]
pub trait PushTarget: Send + Sync {
    /// Stores the streams; returns what was dropped (stream limits, per-stream rates, entries too
    /// far behind) with messages. An `Err` means nothing can be assumed stored.
    async fn push(&self, tenant: &str, streams: Vec<PushStream>) -> Result<Discards, PushError>;
}

/// Why a push failed, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// Some entries were invalid and dropped; the rest were stored.
    #[error("{0}")]
    Invalid(String),
    /// A tenant, stream or count limit refused (some of) the push.
    #[error("{0}")]
    RateLimited(String),
    /// No ingester could take the push now.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl HasKind for PushError {
    fn kind(&self) -> ErrorKind {
        match self {
            PushError::Decode(DecodeError::TooLarge { .. }) => ErrorKind::TooLarge,
            PushError::Decode(_) | PushError::Invalid(_) => ErrorKind::Invalid,
            PushError::RateLimited(_) => ErrorKind::RateLimited,
            PushError::Unavailable(_) => ErrorKind::Unavailable,
            PushError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// A push request as received over HTTP.
#[derive(Debug)]
pub struct PushBody {
    pub body: Bytes,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
}

pub struct Distributor {
    limits: Arc<TenantLimits>,
    limiter: IngestionLimiter,
    target: Arc<dyn PushTarget>,
    metrics: Arc<Metrics>,
    /// Largest body accepted, compressed and decompressed.
    max_recv_size: usize,
}

impl Distributor {
    /// `distributors` is the number of healthy distributors sharing a tenant's global rate.
    pub fn new(
        limits: Arc<TenantLimits>,
        distributors: Arc<AtomicUsize>,
        target: Arc<dyn PushTarget>,
        metrics: Arc<Metrics>,
        max_recv_size: usize,
    ) -> Self {
        let limiter = IngestionLimiter::new(limits.clone(), distributors);
        Self { limits, limiter, target, metrics, max_recv_size }
    }

    /// Handles one push: 204 when everything was stored, otherwise the error to report.
    pub async fn push(&self, tenant: &str, req: PushBody) -> Result<(), PushError> {
        let format = Format::from_content_type(req.content_type.as_deref());
        let body = req.body;
        let max = self.max_recv_size;
        // Decompression and protobuf decoding of a large body take milliseconds; keep them off
        // the async workers when the body is big.
        let decoded = if body.len() > 64 * 1024 {
            let enc = req.content_encoding.clone();
            tokio::task::spawn_blocking(move || {
                let body = decode::decode_content_encoding(body, enc.as_deref(), max)?;
                decode::decode(body, format, max)
            })
            .await
            .map_err(|e| PushError::Internal(format!("decoding task failed: {e}")))?
        } else {
            decode::decode_content_encoding(body, req.content_encoding.as_deref(), max)
                .and_then(|b| decode::decode(b, format, max))
        };
        let raw = match decoded {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, DecodeError::TooLarge { .. }) {
                    self.metrics.discard(tenant, Reason::RequestBodyTooLarge, 0, 0);
                }
                return Err(e.into());
            }
        };
        let limits = self.limits.get(tenant).clone();
        let (valid, mut discards) = validation::validate(tenant, raw, &limits, now_nanos());
        if !valid.streams.is_empty() {
            if !self.limiter.allow(tenant, valid.bytes, Instant::now()) {
                let limit = self.limiter.local_rate(tenant) as u64;
                self.metrics.discard(tenant, Reason::RateLimited, valid.lines, valid.bytes);
                self.count_discards(tenant, &discards);
                return Err(PushError::RateLimited(format!(
                    "Ingestion rate limit exceeded for user {tenant} (limit: {limit} bytes/sec) while attempting to ingest '{}' lines totaling '{}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased",
                    valid.lines, valid.bytes
                )));
            }
            let t = TenantLabel { tenant: tenant.to_string() };
            let stored = self.target.push(tenant, valid.streams).await?;
            let (lost_lines, lost_bytes) =
                stored.by_reason.iter().fold((0, 0), |(l, b), (_, d)| (l + d.lines, b + d.bytes));
            self.metrics.lines_received.get_or_create(&t).inc_by(valid.lines.saturating_sub(lost_lines));
            self.metrics.bytes_received.get_or_create(&t).inc_by(valid.bytes.saturating_sub(lost_bytes));
            discards.merge(stored);
        }
        self.count_discards(tenant, &discards);
        if discards.is_empty() {
            return Ok(());
        }
        let body = discards.render(MAX_REPORTED_ERRORS);
        let limited = discards
            .by_reason
            .iter()
            .any(|(r, _)| matches!(r, Reason::RateLimited | Reason::StreamLimit | Reason::PerStreamRateLimit));
        Err(if limited { PushError::RateLimited(body) } else { PushError::Invalid(body) })
    }

    fn count_discards(&self, tenant: &str, d: &Discards) {
        for (reason, dropped) in &d.by_reason {
            self.metrics.discard(tenant, *reason, dropped.lines, dropped.bytes);
        }
    }
}
