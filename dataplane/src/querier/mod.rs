//! The querier: LogQL queries, label and series lookups and index statistics over ingester
//! memory and the object store, with the per-tenant query limits.

pub mod chunks;
pub mod ingesters;
pub mod source;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::compactor::{ReadFilter, TenantFilter};
use crate::config::units::ByteSize;
use crate::entry::Direction;
use crate::labels::{Labels, SharedLabels};
use crate::limits::TenantLimits;
use crate::logql::{self, Expr, Matcher};
use crate::query::metric::{LeafRows, MetricPlan};
use crate::query::source::matches_all;
use crate::query::{Engine, EvalError, EvalLimits, MemoryBudget, QueryParams, Value};
use crate::storage::{Index, ObjectStore};
pub use chunks::{ChunkCache, ChunkStoreConfig, NeedleCache};
pub use ingesters::{IngesterData, RingIngesters};
use source::{QuerierSource, SourceStats, TENANT_LABEL};
pub use source::{ReadStats, Shard};

/// `querier:` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerierConfig {
    /// Queries evaluated at once; more wait their turn.
    pub max_concurrent: usize,
    /// Most compressed chunk bytes one query may fetch from the object store (0 = no limit):
    /// fetched chunks are held in memory while the query runs, so this bounds its memory.
    pub max_fetched_chunk_bytes: ByteSize,
    /// Most memory one query (one sub-query of a frontend) may hold: blocks from ingesters
    /// and the store, the series x steps of range aggregations, the entries of its result
    /// (0 = no limit). A query that would pass it fails with a 400 naming this key; the
    /// queries beside it are not affected.
    pub max_query_memory: ByteSize,
    /// Whether a read may name several tenants, `X-Scope-OrgID: a|b` (Loki's key; off by
    /// default as in Loki: `a|b` is then refused with 400).
    pub multi_tenant_queries_enabled: bool,
    /// Most tenants one multi-tenant read may name.
    pub max_query_tenants: usize,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 4,
            max_fetched_chunk_bytes: ByteSize(4 << 30),
            max_query_memory: ByteSize(1 << 30),
            multi_tenant_queries_enabled: false,
            max_query_tenants: 100,
        }
    }
}

/// Why a querier request failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query does not parse.
    #[error("{0}")]
    Parse(#[from] logql::ParseError),
    /// Bad parameters or a query limit (400).
    #[error("{0}")]
    Invalid(String),
    /// Too many requests of the tenant are waiting (429).
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    Eval(#[from] EvalError),
}

impl crate::error::HasKind for QueryError {
    fn kind(&self) -> crate::error::ErrorKind {
        match self {
            QueryError::Parse(_) | QueryError::Invalid(_) => crate::error::ErrorKind::Invalid,
            QueryError::RateLimited(_) => crate::error::ErrorKind::RateLimited,
            QueryError::Eval(e) => e.kind(),
        }
    }
}

/// A query's result and what it took.
#[derive(Debug)]
pub struct QueryOutput {
    pub value: Value,
    pub stats: Arc<SourceStats>,
    pub exec_time: Duration,
    pub queue_time: Duration,
}

/// Index statistics of `index/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IndexStats {
    pub streams: u64,
    pub chunks: u64,
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Clone)]
pub struct Querier {
    pub(crate) cfg: QuerierConfig,
    /// Recent data: the ingester of this process, or the ingesters of the ring.
    pub(crate) ingesters: Option<Arc<dyn IngesterData>>,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) index: Arc<Index>,
    limits: Arc<TenantLimits>,
    slots: Arc<Semaphore>,
    /// Hides entries past retention and entries of delete requests (the compactor's hook).
    pub(crate) read_filter: Option<Arc<ReadFilter>>,
    /// Chunks already fetched (`chunk_store_config.chunk_cache_config`).
    pub(crate) chunk_cache: Option<Arc<ChunkCache>>,
    /// Needle indexes of chunks already fetched (`chunk_store_config.needle_cache_config`).
    pub(crate) needle_cache: Option<Arc<NeedleCache>>,
}

impl Querier {
    pub fn new(
        cfg: QuerierConfig,
        ingesters: Option<Arc<dyn IngesterData>>,
        store: Arc<dyn ObjectStore>,
        index: Arc<Index>,
        limits: Arc<TenantLimits>,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(cfg.max_concurrent.max(1)));
        Self { cfg, ingesters, store, index, limits, slots, read_filter: None, chunk_cache: None, needle_cache: None }
    }

    /// Keeps fetched chunks in `cache` for the queries that follow.
    pub fn with_chunk_cache(mut self, cache: Option<Arc<ChunkCache>>) -> Self {
        self.chunk_cache = cache;
        self
    }

    /// Keeps the needle indexes of fetched chunks in `cache`, so searches that follow fetch
    /// only the chunks that may hold what they look for.
    pub fn with_needle_cache(mut self, cache: Option<Arc<NeedleCache>>) -> Self {
        self.needle_cache = cache;
        self
    }

    /// Filters every query by retention and delete requests.
    pub fn with_read_filter(mut self, filter: Arc<ReadFilter>) -> Self {
        self.read_filter = Some(filter);
        self
    }

    /// What queries of `tenant` must not return, when a read filter is set.
    pub(crate) async fn tenant_filter(&self, tenant: &str) -> Result<Option<TenantFilter>, EvalError> {
        match &self.read_filter {
            None => Ok(None),
            Some(f) => Ok(Some(
                f.for_tenant(tenant).await.map_err(|e| EvalError::Storage(format!("reading delete requests: {e}")))?,
            )
            .filter(|f| !f.is_noop())),
        }
    }

    fn source(
        &self,
        tenants: &[String],
        shard: Option<Shard>,
        budget: Arc<MemoryBudget>,
    ) -> (Arc<QuerierSource>, Arc<SourceStats>) {
        let stats = Arc::new(SourceStats::default());
        let src =
            QuerierSource { querier: self.clone(), tenants: tenants.to_vec(), stats: stats.clone(), shard, budget };
        (Arc::new(src), stats)
    }

    /// The strictest of the tenants' values of a limit (multi-tenant queries).
    fn strictest<T: Ord + Copy>(&self, tenants: &[String], f: impl Fn(&crate::limits::Limits) -> T) -> T {
        self.limits.strictest(tenants, f)
    }

    /// The most entries one log query of `tenants` may ask for (`max_entries_limit_per_query`).
    pub fn max_entries(&self, tenants: &[String]) -> usize {
        max_entries(&self.limits, tenants)
    }

    /// Checks the limits that apply before evaluation: entries per query and query length.
    pub fn check_limits(&self, tenants: &[String], expr: &Expr, params: &QueryParams) -> Result<(), QueryError> {
        check_limits(&self.limits, tenants, expr, params)
    }

    /// The tenants' `max_query_series` (no limit as `usize::MAX`).
    pub fn max_series(&self, tenants: &[String]) -> usize {
        max_series(&self.limits, tenants)
    }

    /// The tenants' `query_timeout`.
    pub fn timeout(&self, tenants: &[String]) -> Duration {
        self.strictest(tenants, |l| l.query_timeout.get())
    }

    /// Parses and evaluates a query for `tenants`, within the tenants' limits and timeout.
    pub async fn query(
        &self,
        tenants: &[String],
        query: &str,
        params: &QueryParams,
    ) -> Result<QueryOutput, QueryError> {
        let expr = logql::parse_expr(query)?;
        self.check_limits(tenants, &expr, params)?;
        let engine = Engine::new(EvalLimits { max_series: self.max_series(tenants) });
        let (out, stats, exec_time, queue_time) = self
            .evaluate(tenants, None, crate::frontend::job::value_bytes, |source| async move {
                engine.query(source, &expr, params).await
            })
            .await?;
        Ok(QueryOutput { value: out, stats, exec_time, queue_time })
    }

    /// Evaluates one range aggregation of a metric query (`leaf`, in evaluation order) over the
    /// streams of `shard`, as [`MetricPlan::eval_shard`] does: the query frontend's part of a
    /// sharded query. Limits are the
    /// frontend's to check; the timeout applies here too.
    pub async fn query_leaf(
        &self,
        tenants: &[String],
        query: &str,
        params: &QueryParams,
        leaf: usize,
        shard: Option<Shard>,
    ) -> Result<(LeafRows, Arc<SourceStats>), QueryError> {
        if let Some(s) = shard {
            s.validate().map_err(QueryError::Invalid)?;
        }
        let Expr::Sample(expr) = logql::parse_expr(query)? else {
            return Err(QueryError::Invalid("a log query has no range aggregations to evaluate".into()));
        };
        let plan = MetricPlan::new(&expr, params)?;
        let plan = &plan;
        let weigh = |rows: &LeafRows| rows.cells() * 16;
        let (rows, stats, ..) =
            self.evaluate(tenants, shard, weigh, |source| async move { plan.eval_shard(source, leaf).await }).await?;
        Ok((rows, stats))
    }

    /// Runs an evaluation over a source of `tenants` once a query slot is free, within the
    /// tenants' timeout and `max_query_memory` (the result, weighed by `weigh`, counts too);
    /// returns its result, what it read, and the time it ran and waited.
    async fn evaluate<T, F, Fut>(
        &self,
        tenants: &[String],
        shard: Option<Shard>,
        weigh: impl FnOnce(&T) -> usize,
        run: F,
    ) -> Result<(T, Arc<SourceStats>, Duration, Duration), QueryError>
    where
        F: FnOnce(Arc<dyn crate::query::LogSource>) -> Fut,
        Fut: std::future::Future<Output = Result<T, EvalError>>,
    {
        let queued = Instant::now();
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| QueryError::Eval(EvalError::Internal("querier is shutting down".into())))?;
        let queue_time = queued.elapsed();
        let timeout = self.timeout(tenants);
        let budget = MemoryBudget::new(self.cfg.max_query_memory.bytes());
        let (source, stats) = self.source(tenants, shard, budget.clone());
        let started = Instant::now();
        match tokio::time::timeout(timeout, run(source)).await {
            Ok(r) => {
                let out = r?;
                budget.charge(weigh(&out) as u64, "the query's result")?;
                Ok((out, stats, started.elapsed(), queue_time))
            }
            Err(_) => {
                Err(EvalError::Timeout(format!("query timed out after {}", crate::config::units::Dur(timeout))).into())
            }
        }
    }

    /// Series (label sets) matching any of `selectors` (all series when empty) with data in
    /// `[from, through)`, at most `max_query_series` of them.
    pub async fn series(
        &self,
        tenants: &[String],
        selectors: &[Vec<Matcher>],
        from: i64,
        through: i64,
    ) -> Result<Vec<SharedLabels>, QueryError> {
        let max_series = self.max_series(tenants);
        let found = self.find_series(tenants, selectors, from, through, Some(max_series)).await?;
        Ok(found.into_iter().collect())
    }

    /// The series lookup behind `/series` (capped) and the label endpoints (uncapped).
    async fn find_series(
        &self,
        tenants: &[String],
        selectors: &[Vec<Matcher>],
        from: i64,
        through: i64,
        cap: Option<usize>,
    ) -> Result<BTreeSet<SharedLabels>, QueryError> {
        let all = [Vec::new()];
        let selectors = if selectors.is_empty() { &all[..] } else { selectors };
        let mut out: BTreeSet<SharedLabels> = BTreeSet::new();
        for tenant in tenants {
            let wanted: Vec<&Vec<Matcher>> = selectors
                .iter()
                .filter(|m| m.iter().filter(|m| m.name == TENANT_LABEL).all(|m| m.matches(tenant)))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let stripped: Vec<Vec<Matcher>> = wanted.iter().map(|m| strip_tenant(m)).collect();
            let mut found: Vec<SharedLabels> = Vec::new();
            if let Some(ing) = &self.ingesters {
                for m in &stripped {
                    found.extend(ing.series(tenant, m, from, through).await?);
                }
            }
            let indexed = self
                .index
                .series(tenant, from, through.saturating_sub(1))
                .await
                .map_err(|e| EvalError::Storage(format!("reading the index: {e}")))?;
            found.extend(indexed.into_iter().map(|(_, l)| l).filter(|l| stripped.iter().any(|m| matches_all(l, m))));
            for labels in found {
                out.insert(if tenants.len() > 1 { with_tenant_label(&labels, tenant) } else { labels });
            }
            if let Some(max) = cap
                && out.len() > max
            {
                return Err(crate::query::metric::series_limit_error(max).into());
            }
        }
        Ok(out)
    }

    /// Label names (with `name: None`) or the values of label `name`, of series matching
    /// `selector` (all when empty) in `[from, through)`, sorted.
    pub async fn labels(
        &self,
        tenants: &[String],
        name: Option<&str>,
        selector: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<String>, QueryError> {
        let selectors = if selector.is_empty() { Vec::new() } else { vec![selector.to_vec()] };
        let series = self.find_series(tenants, &selectors, from, through, None).await?;
        let mut out = BTreeSet::new();
        for labels in series {
            match name {
                None => out.extend(labels.iter().map(|l| l.name.clone())),
                Some(n) => {
                    if let Some(v) = labels.get(n) {
                        out.insert(v.to_string());
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Streams, chunks, entries and uncompressed bytes of series matching `selector`.
    pub async fn index_stats(
        &self,
        tenants: &[String],
        selector: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<IndexStats, QueryError> {
        let mut stats = IndexStats::default();
        for (_, vol) in self.volumes(tenants, selector, from, through).await? {
            stats.streams += 1;
            stats.chunks += vol.chunks;
            stats.entries += vol.entries;
            stats.bytes += vol.bytes;
        }
        Ok(stats)
    }

    /// Per-series volume (chunks, entries, uncompressed bytes) with the time of each chunk, for
    /// `index/stats` and `index/volume`.
    pub async fn volumes(
        &self,
        tenants: &[String],
        selector: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<(SharedLabels, SeriesVolume)>, QueryError> {
        let selector = strip_tenant(selector);
        let mut out: BTreeMap<SharedLabels, SeriesVolume> = BTreeMap::new();
        for tenant in tenants {
            let relabel = |l: &SharedLabels| if tenants.len() > 1 { with_tenant_label(l, tenant) } else { l.clone() };
            if let Some(ing) = &self.ingesters {
                for (labels, _, metas) in ing.metas(tenant, &selector, from, through).await? {
                    let v = out.entry(relabel(&labels)).or_default();
                    v.chunks += 1;
                    for m in &metas {
                        v.entries += u64::from(m.count);
                        v.bytes += u64::from(m.uncompressed_len);
                        v.points.push((m.min_ts, u64::from(m.uncompressed_len)));
                    }
                }
            }
            let refs = self
                .index
                .chunks(tenant, from, through.saturating_sub(1))
                .await
                .map_err(|e| EvalError::Storage(format!("reading the index: {e}")))?;
            let hidden = self.tenant_filter(tenant).await?;
            let expired =
                |r: &crate::storage::ChunkRef| hidden.as_ref().is_some_and(|f| f.expired(&r.labels, r.through));
            for r in refs.into_iter().filter(|r| matches_all(&r.labels, &selector) && !expired(r)) {
                let v = out.entry(relabel(&r.labels)).or_default();
                v.chunks += 1;
                v.entries += u64::from(r.entries);
                v.bytes += r.uncompressed;
                v.points.push((r.from, r.uncompressed));
            }
        }
        Ok(out.into_iter().collect())
    }
}

/// The most entries one log query of `tenants` may ask for (`max_entries_limit_per_query`).
pub fn max_entries(limits: &TenantLimits, tenants: &[String]) -> usize {
    limits.strictest(tenants, |l| {
        if l.max_entries_limit_per_query == 0 { usize::MAX } else { l.max_entries_limit_per_query }
    })
}

/// The most series one query of `tenants` may return (`max_query_series`; 0 is no limit).
pub fn max_series(limits: &TenantLimits, tenants: &[String]) -> usize {
    limits.strictest(tenants, |l| if l.max_query_series == 0 { usize::MAX } else { l.max_query_series })
}

/// Checks the limits that apply to a query before it runs, with Loki's texts: entries per log
/// query and query length. The querier and the query frontend both check them.
pub fn check_limits(
    limits: &TenantLimits,
    tenants: &[String],
    expr: &Expr,
    params: &QueryParams,
) -> Result<(), QueryError> {
    let max_entries = max_entries(limits, tenants);
    if matches!(expr, Expr::Log(_)) && params.limit > max_entries {
        return Err(QueryError::Invalid(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({} > {max_entries})",
            params.limit
        )));
    }
    let max_len = limits.strictest(tenants, |l| {
        if l.max_query_length.get().is_zero() { Duration::MAX } else { l.max_query_length.get() }
    });
    let len = Duration::from_nanos(params.end.saturating_sub(params.start).max(0) as u64);
    if len > max_len {
        return Err(QueryError::Invalid(format!(
            "the query time range exceeds the limit (query length: {}, limit: {})",
            crate::config::units::Dur(len),
            crate::config::units::Dur(max_len)
        )));
    }
    Ok(())
}

/// Volume of one series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesVolume {
    pub chunks: u64,
    pub entries: u64,
    pub bytes: u64,
    /// (first timestamp, uncompressed bytes) of each chunk or block counted.
    pub points: Vec<(i64, u64)>,
}

fn strip_tenant(m: &[Matcher]) -> Vec<Matcher> {
    m.iter().filter(|m| m.name != TENANT_LABEL).cloned().collect()
}

fn with_tenant_label(labels: &SharedLabels, tenant: &str) -> SharedLabels {
    if labels.get(TENANT_LABEL).is_some() {
        return labels.clone();
    }
    let mut v: Vec<_> = labels.iter().cloned().collect();
    v.push(crate::labels::Label::new(TENANT_LABEL, tenant));
    Arc::new(Labels::from_vec(v).sorted())
}

/// Aggregates volumes by `target` labels (or keeps whole series), for `index/volume`.
pub fn aggregate_volumes(vols: &[(SharedLabels, SeriesVolume)], target: &[String]) -> HashMap<SharedLabels, u64> {
    let mut out: HashMap<SharedLabels, u64> = HashMap::new();
    for (labels, v) in vols {
        let key = if target.is_empty() {
            labels.clone()
        } else {
            Arc::new(Labels::from_vec(labels.iter().filter(|l| target.contains(&l.name)).cloned().collect()))
        };
        *out.entry(key).or_default() += v.bytes;
    }
    out
}

/// Default direction of Loki's query API.
pub const DEFAULT_DIRECTION: Direction = Direction::Backward;

#[cfg(test)]
mod tests_needles;
