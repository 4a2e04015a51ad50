//! Delete requests: what Loki's `/loki/api/v1/delete` accepted, kept in the object store so they
//! survive restarts and every querier sees them.
//!
//! ```text
//! {tenant}/compactor/deletes/{request_id}.json        the request, written once
//! {tenant}/compactor/deletes/{request_id}.processed   present once the compactor rewrote the chunks
//! ```
//!
//! A request object never changes, so readers cache it by key; one listing of the tenant's
//! prefix tells which requests exist and which are processed. Cancelling deletes both objects.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::labels::SharedLabels;
use crate::logql::{Matcher, Stage};
use crate::query::pipeline::{Pipeline, StreamPipeline};
use crate::query::source::matches_all;
use crate::storage::{ObjectStore, StorageError};

const REQUEST_SUFFIX: &str = ".json";
const PROCESSED_SUFFIX: &str = ".processed";

/// Why a delete request could not be added, listed or cancelled.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// A bad query or time range, or a cancellation that is no longer allowed.
    #[error("{0}")]
    Invalid(String),
    /// No such request.
    #[error("could not find delete request with given id")]
    NotFound,
    /// The tenant's `deletion_mode` is `disabled`.
    #[error("deletion is not available for this tenant")]
    Disabled,
    #[error("delete requests store: {0}")]
    Storage(#[from] StorageError),
}

impl crate::error::HasKind for DeleteError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            DeleteError::Invalid(_) => ErrorKind::Invalid,
            DeleteError::NotFound => ErrorKind::NotFound,
            DeleteError::Disabled => ErrorKind::Unauthorized,
            DeleteError::Storage(e) if e.is_retryable() => ErrorKind::Unavailable,
            DeleteError::Storage(_) => ErrorKind::Internal,
        }
    }
}

/// One accepted delete request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    /// The id clients cancel it by.
    pub request_id: String,
    /// A stream selector with optional line filters.
    pub query: String,
    /// First timestamp deleted (ns, inclusive).
    pub start: i64,
    /// Last timestamp deleted (ns, inclusive).
    pub end: i64,
    /// When it was accepted (ns since the epoch).
    pub created_at: i64,
}

/// Whether the compactor has rewritten the chunks a request covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteStatus {
    /// Accepted; hidden from queries, not yet removed from the chunks.
    Received,
    /// The chunks were rewritten without the deleted lines.
    Processed,
}

/// Checks a delete query: a selector followed by line filters only.
pub fn parse_query(query: &str) -> Result<(Vec<Matcher>, Vec<Stage>), DeleteError> {
    let expr = crate::logql::parse_log_selector(query).map_err(|e| DeleteError::Invalid(e.to_string()))?;
    if let Some(s) = expr.stages.iter().find(|s| !matches!(s, Stage::LineFilter(_))) {
        return Err(DeleteError::Invalid(format!(
            "delete queries accept a stream selector and line filters only, not '{s}'"
        )));
    }
    Ok((expr.matchers, expr.stages))
}

/// The delete requests of every tenant, in the object store.
#[derive(Debug)]
pub struct DeleteRequests {
    store: Arc<dyn ObjectStore>,
    /// Request objects by key: they never change once written.
    cache: Mutex<HashMap<String, Arc<DeleteRequest>>>,
}

impl DeleteRequests {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, cache: Mutex::new(HashMap::new()) }
    }

    fn prefix(tenant: &str) -> String {
        format!("{tenant}/compactor/deletes/")
    }

    /// Records a request for `tenant`, accepted at `now` (ns).
    pub async fn add(
        &self,
        tenant: &str,
        query: &str,
        start: i64,
        end: i64,
        now: i64,
    ) -> Result<DeleteRequest, DeleteError> {
        parse_query(query)?;
        if start > end {
            return Err(DeleteError::Invalid("start time must be before the end time".into()));
        }
        let seed = format!("{tenant}\0{query}\0{start}\0{end}\0{now}");
        let request_id = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()));
        let req = DeleteRequest { request_id, query: query.to_string(), start, end, created_at: now };
        let key = format!("{}{}{REQUEST_SUFFIX}", Self::prefix(tenant), req.request_id);
        let data = serde_json::to_vec(&req).map_err(|e| DeleteError::Invalid(e.to_string()))?;
        self.store.put(&key, Bytes::from(data)).await?;
        self.cache.lock().insert(key, Arc::new(req.clone()));
        Ok(req)
    }

    /// Every request of `tenant` with its status, oldest first.
    pub async fn list(&self, tenant: &str) -> Result<Vec<(Arc<DeleteRequest>, DeleteStatus)>, StorageError> {
        let objects = self.store.list(&Self::prefix(tenant)).await?;
        let processed: Vec<&str> = objects.iter().filter_map(|m| m.key.strip_suffix(PROCESSED_SUFFIX)).collect();
        let mut out = Vec::new();
        for meta in objects.iter().filter(|m| m.key.ends_with(REQUEST_SUFFIX)) {
            let req = match self.load(&meta.key).await {
                Ok(r) => r,
                // Cancelled between the listing and the read.
                Err(StorageError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let stem = meta.key.strip_suffix(REQUEST_SUFFIX).unwrap_or(&meta.key);
            let status = if processed.contains(&stem) { DeleteStatus::Processed } else { DeleteStatus::Received };
            out.push((req, status));
        }
        out.sort_by(|a, b| (a.0.created_at, &a.0.request_id).cmp(&(b.0.created_at, &b.0.request_id)));
        Ok(out)
    }

    async fn load(&self, key: &str) -> Result<Arc<DeleteRequest>, StorageError> {
        if let Some(r) = self.cache.lock().get(key) {
            return Ok(r.clone());
        }
        let data = self.store.get(key).await?;
        let req: DeleteRequest = serde_json::from_slice(&data)
            .map_err(|e| StorageError::Corrupt { key: key.to_string(), reason: e.to_string() })?;
        let req = Arc::new(req);
        self.cache.lock().insert(key.to_string(), req.clone());
        Ok(req)
    }

    /// Cancels a request that is not processed and younger than `cancel_period` (ns) at `now`.
    pub async fn cancel(
        &self,
        tenant: &str,
        request_id: &str,
        now: i64,
        cancel_period: i64,
    ) -> Result<(), DeleteError> {
        let list = self.list(tenant).await?;
        let (req, status) = list.iter().find(|(r, _)| r.request_id == request_id).ok_or(DeleteError::NotFound)?;
        if *status == DeleteStatus::Processed || now.saturating_sub(req.created_at) >= cancel_period {
            return Err(DeleteError::Invalid(
                "deletion of request which is in process or already processed is not allowed".into(),
            ));
        }
        let stem = format!("{}{request_id}", Self::prefix(tenant));
        self.store.delete(&format!("{stem}{REQUEST_SUFFIX}")).await?;
        self.cache.lock().remove(&format!("{stem}{REQUEST_SUFFIX}"));
        Ok(())
    }

    /// Records that the compactor removed the request's lines from the chunks.
    pub async fn mark_processed(&self, tenant: &str, request_id: &str) -> Result<(), StorageError> {
        let key = format!("{}{request_id}{PROCESSED_SUFFIX}", Self::prefix(tenant));
        self.store.put(&key, Bytes::new()).await
    }
}

/// A delete request compiled for matching entries.
#[derive(Debug, Clone)]
pub struct DeleteFilter {
    pub request_id: String,
    matchers: Vec<Matcher>,
    /// The line filters; `None` deletes every line of the matching streams in the range.
    pipeline: Option<Pipeline>,
    start: i64,
    end: i64,
}

impl DeleteFilter {
    /// Compiles a stored request; its query was checked when it was accepted.
    pub fn compile(req: &DeleteRequest) -> Result<Self, DeleteError> {
        let (matchers, stages) = parse_query(&req.query)?;
        let pipeline = if stages.is_empty() {
            None
        } else {
            Some(Pipeline::new(&stages).map_err(|e| DeleteError::Invalid(e.to_string()))?)
        };
        Ok(Self { request_id: req.request_id.clone(), matchers, pipeline, start: req.start, end: req.end })
    }

    /// Whether the request may delete entries of a stream with `labels` in `[from, through]`.
    pub fn applies(&self, labels: &crate::labels::Labels, from: i64, through: i64) -> bool {
        from <= self.end && through >= self.start && matches_all(labels, &self.matchers)
    }
}

/// The delete requests that apply to one stream, ready to test its entries.
pub struct StreamDeletes {
    filters: Vec<(i64, i64, Option<StreamPipeline>)>,
}

impl StreamDeletes {
    /// The filters of `all` that apply to the stream `labels` somewhere in `[from, through]`.
    pub fn new<'a>(
        all: impl IntoIterator<Item = &'a DeleteFilter>,
        labels: &SharedLabels,
        from: i64,
        through: i64,
    ) -> Self {
        let filters = all
            .into_iter()
            .filter(|f| f.applies(labels, from, through))
            .map(|f| (f.start, f.end, f.pipeline.as_ref().map(|p| p.for_stream(labels))))
            .collect();
        Self { filters }
    }

    /// Whether no request applies.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Whether some request applies to entries in `[from, through]`.
    pub fn overlaps(&self, from: i64, through: i64) -> bool {
        self.filters.iter().any(|(s, e, _)| from <= *e && through >= *s)
    }

    /// Whether a request deletes this entry.
    pub fn deletes(&mut self, ts: i64, line: &[u8], metadata: &[(&str, &str)]) -> bool {
        self.filters.iter_mut().any(|(start, end, pipeline)| {
            ts >= *start
                && ts <= *end
                && match pipeline {
                    None => true,
                    Some(p) => p.process(ts, line, metadata).is_some(),
                }
        })
    }
}

#[async_trait::async_trait]
impl crate::frontend::CacheGeneration for DeleteRequests {
    /// A hash of the tenant's delete requests and their states: accepting, cancelling or
    /// processing one changes it.
    async fn generation(&self, tenant: &str) -> Result<String, String> {
        let list = self.list(tenant).await.map_err(|e| e.to_string())?;
        let text = format!("{list:?}");
        Ok(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes())))
    }
}
