//! The distributor: decodes pushes, validates them, enforces the tenant's ingestion rate, and
//! hands valid streams to the ingesters.

pub mod decode;
pub mod discover;
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
use decode::{DecodeError, Format, RawPush};

/// Bodies larger than this are decompressed and decoded on the blocking pool.
const BLOCKING_DECODE_SIZE: usize = 64 * 1024;

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

/// What became of a push that was (at least partly) processed.
#[derive(Debug)]
pub struct Ingested {
    /// Entries stored.
    pub stored_lines: u64,
    /// What was dropped, with the messages to report.
    pub discards: Discards,
}

impl Ingested {
    /// Whether something was dropped by a limit (rate, streams) rather than for being invalid:
    /// the client should retry later.
    pub fn limited(&self) -> bool {
        self.discards
            .by_reason
            .iter()
            .any(|(r, _)| matches!(r, Reason::RateLimited | Reason::StreamLimit | Reason::PerStreamRateLimit))
    }

    /// Lines dropped, for any reason.
    pub fn dropped_lines(&self) -> u64 {
        self.discards.by_reason.iter().map(|(_, d)| d.lines).sum()
    }

    /// A push's answer: `Ok` when nothing was dropped, otherwise the error listing the drops
    /// (429 when a limit dropped something, 400 otherwise).
    pub fn into_result(self) -> Result<(), PushError> {
        if self.discards.is_empty() {
            return Ok(());
        }
        let body = self.discards.render(MAX_REPORTED_ERRORS);
        Err(if self.limited() { PushError::RateLimited(body) } else { PushError::Invalid(body) })
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

    /// The limits that apply to `tenant`.
    pub fn tenant_limits(&self, tenant: &str) -> Arc<crate::limits::Limits> {
        self.limits.get(tenant).clone()
    }

    /// Handles one push: 204 when everything was stored, otherwise the error to report.
    pub async fn push(&self, tenant: &str, req: PushBody) -> Result<(), PushError> {
        let format = Format::from_content_type(req.content_type.as_deref());
        let max = self.max_recv_size;
        let decoded = self.decode_body(tenant, req, move |body| decode::decode(body, format, max)).await?;
        let outcome = self.ingest(tenant, decoded).await?;
        outcome.into_result()
    }

    /// Undoes the body's `Content-Encoding` and decodes it with `decode`; both off the async
    /// workers when the body is big (decompressing and decoding take milliseconds then).
    pub(crate) async fn decode_body<T: Send + 'static>(
        &self,
        tenant: &str,
        req: PushBody,
        decode: impl FnOnce(Bytes) -> Result<T, DecodeError> + Send + 'static,
    ) -> Result<T, PushError> {
        let body = req.body;
        let max = self.max_recv_size;
        let enc = req.content_encoding;
        let large = body.len() > BLOCKING_DECODE_SIZE;
        let run = move || decode::decode_content_encoding(body, enc.as_deref(), max).and_then(decode);
        let decoded = if large {
            tokio::task::spawn_blocking(run)
                .await
                .map_err(|e| PushError::Internal(format!("decoding task failed: {e}")))?
        } else {
            run()
        };
        decoded.map_err(|e| {
            if matches!(e, DecodeError::TooLarge { .. }) {
                self.metrics.discard(tenant, Reason::RequestBodyTooLarge, 0, 0);
            }
            e.into()
        })
    }

    /// Validates a decoded push, applies the tenant's rate limit and stores what is valid.
    /// `Err` when nothing was stored for a reason that concerns the whole push (rate limit, no
    /// ingester); otherwise what was dropped.
    pub async fn ingest(&self, tenant: &str, raw: RawPush) -> Result<Ingested, PushError> {
        let limits = self.limits.get(tenant).clone();
        let (valid, mut discards) = validation::validate(tenant, raw, &limits, now_nanos());
        let mut received = valid.lines;
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
            received = valid.lines.saturating_sub(lost_lines);
            self.metrics.lines_received.get_or_create(&t).inc_by(received);
            self.metrics.bytes_received.get_or_create(&t).inc_by(valid.bytes.saturating_sub(lost_bytes));
            discards.merge(stored);
        }
        self.count_discards(tenant, &discards);
        Ok(Ingested { stored_lines: received, discards })
    }

    fn count_discards(&self, tenant: &str, d: &Discards) {
        for (reason, dropped) in &d.by_reason {
            self.metrics.discard(tenant, *reason, dropped.lines, dropped.bytes);
        }
    }
}
