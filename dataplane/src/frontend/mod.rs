//! The query frontend: every read goes through it, is cut into sub-queries (splits by time,
//! shards by stream), queued per tenant, run by whichever querier pulls it, and merged back —
//! with results cached per split.
//!
//! ```text
//!  HTTP ─► Frontend ─► split / shard ─► cache? ─► RequestQueue ◄── querier workers (gRPC streams,
//!             ▲                                  (per tenant,       or in-process in `all`)
//!             └──────── merge ◄──────────────────  round-robin)
//! ```
//!
//! - [`queue`]: per-tenant FIFOs served round-robin, `max_outstanding_per_tenant`, shuffle
//!   sharding, cancellation.
//! - [`split`]: time splits of range queries and how their answers join.
//! - [`cache`], [`memcached`]: the results cache and its two backends.
//! - [`rpc`]: the gRPC service queriers connect to; [`worker`]: the querier's side of it, and
//!   the in-process workers of a single binary.
//! - [`job`], [`proto`]: sub-queries, answers and their wire form.
//!
//! A metric query is sharded only when every one of its range aggregations can be: each shard
//! evaluates the range aggregations over its part of the streams, and the frontend combines
//! their rows and evaluates the rest of the expression itself with the engine's own code
//! ([`MetricPlan`]). So `avg`, `topk`, binary operations and `label_replace` over shardable
//! aggregations come out exactly as unsharded, and no rewriting of the query is needed.

pub mod cache;
pub mod config;
pub mod job;
pub mod memcached;
pub mod proto;
pub mod queue;
pub mod rpc;
pub mod split;
pub mod testing;
pub mod worker;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::ErrorKind;
use crate::labels::SharedLabels;
use crate::limits::TenantLimits;
use crate::logql::{self, Expr, Matcher, SampleExpr};
use crate::metrics::{Metrics, SampleKind};
use crate::querier::source::SourceStats;
use crate::querier::{IndexStats, QueryError, QueryOutput, SeriesVolume, Shard};
use crate::query::metric::{LeafRows, MetricPlan, series_limit_error};
use crate::query::value::Series;
use crate::query::{EvalError, EvalLimits, MemoryBudget, QueryParams, Value};
use crate::timeutil::now_nanos;
pub use cache::ResultsCache;
pub use config::{FrontendConfig, FrontendWorkerConfig, QueryRangeConfig};
use job::{Job, SubError, SubRequest, SubResponse};
pub use queue::RequestQueue;
use queue::{Pending, QueueError};
use split::{LogMerge, join_matrices, log_splits, metric_splits, time_splits};

/// The frontend. Cheap to clone.
#[derive(Clone)]
pub struct Frontend {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: FrontendConfig,
    range: QueryRangeConfig,
    /// `querier.max_query_memory`: what one request may hold here while its answers merge.
    max_query_memory: u64,
    limits: Arc<TenantLimits>,
    queue: Arc<RequestQueue>,
    cache: Option<ResultsCache>,
    /// The tenants' cache generations: answers cached under another generation are not used.
    generation: Option<Arc<dyn CacheGeneration>>,
    subqueries: Family<KindLabel, Counter>,
    /// Time splits of range queries (each one sub-query, or one per shard).
    splits: Counter,
    retries: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

impl std::fmt::Debug for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontend").field("queued", &self.inner.queue.len()).finish()
    }
}

/// What changes a tenant's answers of the past besides new data: its delete requests (an accepted
/// request hides lines, a cancelled one brings them back). Cached answers are keyed by the
/// tenant's generation, so such a change makes every older entry unused at once.
#[async_trait::async_trait]
pub trait CacheGeneration: Send + Sync {
    /// A short text that changes whenever the tenant's answers of the past may have.
    async fn generation(&self, tenant: &str) -> Result<String, String>;
}

/// What one request's sub-queries share: tenants, deadline, parallelism, cancellation.
struct Ctx {
    tenants: Vec<String>,
    /// The tenants joined with `|`: the queue the request's sub-queries wait in.
    queue_key: String,
    deadline: tokio::time::Instant,
    timeout: Duration,
    /// `max_query_parallelism` permits.
    parallelism: Arc<Semaphore>,
    /// Cancelled when the request ends (its future is dropped: the client went away, or it
    /// completed): sub-queries still queued or running are dropped.
    cancel: CancellationToken,
    max_outstanding: usize,
    max_queriers: usize,
    stats: Arc<SourceStats>,
    /// The answers held while they merge.
    budget: Arc<MemoryBudget>,
    /// Tenants and their cache generations: the part of every cache key that is the
    /// request's; `None` when a generation could not be read (nothing is cached then).
    cache_scope: Option<String>,
}

impl Ctx {
    /// Whether every answer so far read all it should: a sub-query answered from ingester
    /// memory alone while the object store was away is not cached, nor is anything after it.
    fn complete(&self) -> bool {
        self.stats.store_failures.load(Ordering::Relaxed) == 0
    }
}

impl Frontend {
    /// A frontend; `max_query_memory` bounds what one request holds while its sub-queries'
    /// answers merge (0 = no limit).
    pub fn new(
        cfg: FrontendConfig,
        range: QueryRangeConfig,
        max_query_memory: u64,
        limits: Arc<TenantLimits>,
        cache: Option<ResultsCache>,
        metrics: &Metrics,
    ) -> Self {
        let queue = RequestQueue::new();
        let subqueries = Family::<KindLabel, Counter>::default();
        let retries = Counter::default();
        let splits = Counter::default();
        metrics.register("query_frontend_subqueries", "Sub-queries sent to queriers, by kind", subqueries.clone());
        metrics.register("query_frontend_splits", "Time splits range queries were cut into", splits.clone());
        metrics.register(
            "query_frontend_retries",
            "Sub-queries queued again after their querier failed",
            retries.clone(),
        );
        {
            let q = queue.clone();
            metrics.register_sampled(
                "query_frontend_queue_length",
                "Sub-queries waiting for a querier",
                SampleKind::Gauge,
                move || q.len() as f64,
            );
            let q = queue.clone();
            metrics.register_sampled(
                "query_frontend_connected_queriers",
                "Queriers pulling from this frontend",
                SampleKind::Gauge,
                move || q.queriers() as f64,
            );
        }
        Self {
            inner: Arc::new(Inner {
                cfg,
                range,
                max_query_memory,
                limits,
                queue,
                cache,
                generation: None,
                subqueries,
                splits,
                retries,
            }),
        }
    }

    /// The queue queriers pull from.
    pub fn queue(&self) -> &Arc<RequestQueue> {
        &self.inner.queue
    }

    /// Times a sub-query may be handed to a querier again after its querier failed.
    pub fn max_retries(&self) -> u32 {
        self.inner.range.max_retries
    }

    /// Sub-queries of `kind` (see [`SubRequest::kind`]) this frontend sent.
    pub fn subquery_count(&self, kind: &str) -> u64 {
        self.inner.subqueries.get_or_create(&KindLabel { kind: kind.to_string() }).get()
    }

    /// Time splits of range queries so far.
    pub fn split_count(&self) -> u64 {
        self.inner.splits.get()
    }

    /// Counts a sub-query queued again.
    pub(crate) fn retried(&self) {
        self.inner.retries.inc();
    }

    /// Keys results of this frontend by the tenants' cache generations (the compactor's delete
    /// requests).
    pub fn with_cache_generation(mut self, generation: Arc<dyn CacheGeneration>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.generation = Some(generation);
        }
        self
    }

    async fn ctx(&self, tenants: &[String]) -> Ctx {
        let mut ctx = self.plain_ctx(tenants);
        if self.inner.cache.is_some()
            && let Some(g) = &self.inner.generation
        {
            let mut scope = ctx.queue_key.clone();
            for t in tenants {
                match g.generation(t).await {
                    Ok(gen_) => {
                        scope.push('@');
                        scope.push_str(&gen_);
                    }
                    Err(err) => {
                        tracing::warn!(tenant = t, %err, "cannot read the cache generation; not caching");
                        ctx.cache_scope = None;
                        return ctx;
                    }
                }
            }
            ctx.cache_scope = Some(scope);
        }
        ctx
    }

    fn plain_ctx(&self, tenants: &[String]) -> Ctx {
        let l = &self.inner.limits;
        let timeout = l.strictest(tenants, |l| l.query_timeout.get());
        Ctx {
            tenants: tenants.to_vec(),
            queue_key: tenants.join("|"),
            deadline: tokio::time::Instant::now() + timeout,
            timeout,
            parallelism: Arc::new(Semaphore::new(l.strictest(tenants, |l| l.max_query_parallelism).max(1))),
            cancel: CancellationToken::new(),
            max_outstanding: self.inner.cfg.max_outstanding_per_tenant,
            max_queriers: l.strictest(tenants, |l| {
                if l.max_queriers_per_tenant == 0 { usize::MAX } else { l.max_queriers_per_tenant }
            }),
            stats: Arc::new(SourceStats::default()),
            budget: MemoryBudget::new(self.inner.max_query_memory),
            cache_scope: Some(tenants.join("|")),
        }
    }

    fn interval(&self, tenants: &[String], f: impl Fn(&crate::limits::Limits) -> Duration) -> i64 {
        // The shortest non-zero interval of the tenants; 0 when every tenant has splitting off.
        tenants
            .iter()
            .map(|t| f(self.inner.limits.get(t)))
            .filter(|d| !d.is_zero())
            .min()
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    /// The newest time whose results may be cached.
    fn cacheable_until(&self, tenants: &[String]) -> i64 {
        let fresh =
            self.inner.limits.strictest(tenants, |l| std::cmp::Reverse(l.max_cache_freshness_per_query.get())).0;
        now_nanos().saturating_sub(i64::try_from(fresh.as_nanos()).unwrap_or(i64::MAX))
    }

    /// Queues one sub-query and waits for its answer, retrying answers that say a querier or
    /// its dependencies were unavailable. Dropping the future drops the sub-query.
    async fn run(&self, ctx: &Ctx, request: SubRequest) -> Result<SubResponse, SubError> {
        let _permit = ctx
            .parallelism
            .acquire()
            .await
            .map_err(|_| SubError::new(ErrorKind::Internal, "query parallelism closed"))?;
        self.inner.subqueries.get_or_create(&KindLabel { kind: request.kind().into() }).inc();
        ctx.stats.subqueries.fetch_add(1, Ordering::Relaxed);
        let mut attempt = 0;
        loop {
            match self.run_once(ctx, request.clone()).await {
                Ok(answer) => {
                    ctx.budget
                        .charge(answer.approx_bytes() as u64, "the answers of its sub-queries")
                        .map_err(eval_error)?;
                    return Ok(answer);
                }
                Err(e) if e.kind == ErrorKind::Unavailable && attempt < self.inner.range.max_retries => {
                    attempt += 1;
                    self.inner.retries.inc();
                    tracing::debug!(err = %e, attempt, "sub-query failed; retrying");
                }
                other => return other,
            }
        }
    }

    async fn run_once(&self, ctx: &Ctx, request: SubRequest) -> Result<SubResponse, SubError> {
        let (tx, rx) = oneshot::channel();
        let cancel = ctx.cancel.child_token();
        // Whatever ends this future — an answer, the deadline, the request going away — the
        // sub-query is not wanted any more.
        let _drop = cancel.clone().drop_guard();
        let pending = Pending {
            job: Job { tenants: ctx.tenants.clone(), request },
            reply: tx,
            cancel,
            attempts: 0,
            max_queriers: ctx.max_queriers,
            enqueued: Instant::now(),
        };
        self.inner.queue.enqueue(&ctx.queue_key, pending, ctx.max_outstanding, ctx.max_queriers).map_err(
            |e| match e {
                QueueError::TooManyOutstanding => SubError::new(ErrorKind::RateLimited, e.to_string()),
                QueueError::Stopped => SubError::new(ErrorKind::Unavailable, e.to_string()),
            },
        )?;
        match tokio::time::timeout_at(ctx.deadline, rx).await {
            Ok(Ok(outcome)) => outcome.map(|a| {
                ctx.stats.add(&a.stats);
                a.response
            }),
            Ok(Err(_)) => Err(SubError::new(ErrorKind::Unavailable, "the sub-query was dropped by the query frontend")),
            Err(_) => {
                let queriers = self.inner.queue.queriers();
                Err(SubError::new(
                    ErrorKind::Timeout,
                    format!(
                        "query timed out after {} ({queriers} queriers connected to the query frontend)",
                        crate::config::units::Dur(ctx.timeout)
                    ),
                ))
            }
        }
    }

    /// A `query` or `query_range` request.
    pub async fn query(
        &self,
        tenants: &[String],
        query: &str,
        params: &QueryParams,
    ) -> Result<QueryOutput, QueryError> {
        let started = Instant::now();
        let expr = logql::parse_expr(query)?;
        crate::querier::check_limits(&self.inner.limits, tenants, &expr, params)?;
        let ctx = self.ctx(tenants).await;
        let mut params = *params;
        if self.inner.range.align_queries_with_step && !params.instant && params.step > 0 {
            params.start -= params.start.rem_euclid(params.step);
            params.end -= params.end.rem_euclid(params.step);
        }
        let value = match &expr {
            Expr::Log(_) => self.logs(&ctx, query, &params).await,
            Expr::Sample(sample) => self.metric(&ctx, sample, &params).await,
        }
        .map_err(query_error)?;
        let elapsed = started.elapsed();
        let slow = self.inner.cfg.log_queries_longer_than.get();
        if !slow.is_zero() && elapsed > slow {
            tracing::info!(tenants = %ctx.queue_key, query, ?elapsed, "slow query");
        }
        Ok(QueryOutput { value, stats: ctx.stats.clone(), exec_time: elapsed, queue_time: Duration::ZERO })
    }

    async fn logs(&self, ctx: &Ctx, query: &str, params: &QueryParams) -> Result<Value, SubError> {
        let splits = log_splits(params, self.interval(&ctx.tenants, |l| l.split_queries_by_interval.get()));
        self.count_splits(ctx, splits.len());
        let width = ctx.parallelism.available_permits().max(1);
        let mut answers = futures::stream::iter(splits).map(|p| self.log_split(ctx, query, p)).buffered(width);
        let mut merge = LogMerge::new(params.direction, params.limit);
        while let Some(answer) = answers.next().await {
            merge.add(answer?);
            if merge.done() {
                // Dropping the stream drops the splits not answered yet, queued or running.
                break;
            }
        }
        Ok(Value::Streams(merge.finish()))
    }

    async fn log_split(
        &self,
        ctx: &Ctx,
        query: &str,
        params: QueryParams,
    ) -> Result<Vec<crate::query::value::StreamResult>, SubError> {
        // Loki's negative cache: a split that held nothing stays empty once it is old enough.
        let cache = self.cache_for(ctx, self.inner.range.cache_results);
        let key = format!("logs|{}|{}|{}|{query}", ctx.cache_scope.as_deref().unwrap_or(""), params.start, params.end);
        if let Some(c) = cache
            && let Some((_, SubResponse::Value(Value::Streams(s)))) = c.get(&key).await
            && s.is_empty()
        {
            return Ok(Vec::new());
        }
        let answer = self.run(ctx, SubRequest::Query { query: query.to_string(), params }).await?;
        let SubResponse::Value(Value::Streams(streams)) = answer else {
            return Err(unexpected("streams"));
        };
        if let Some(c) = cache
            && streams.is_empty()
            && params.end <= self.cacheable_until(&ctx.tenants)
            && ctx.complete()
        {
            c.put(&key, (params.start, params.end), &SubResponse::Value(Value::Streams(Vec::new()))).await;
        }
        Ok(streams)
    }

    fn count_splits(&self, ctx: &Ctx, n: usize) {
        ctx.stats.splits.fetch_add(n as u64, Ordering::Relaxed);
        self.inner.splits.inc_by(n as u64);
    }

    /// The cache, when `enabled` and the request's cache generations are known.
    fn cache_for(&self, ctx: &Ctx, enabled: bool) -> Option<&ResultsCache> {
        self.inner.cache.as_ref().filter(|_| enabled && ctx.cache_scope.is_some())
    }

    fn max_series(&self, tenants: &[String]) -> usize {
        crate::querier::max_series(&self.inner.limits, tenants)
    }

    async fn metric(&self, ctx: &Ctx, expr: &SampleExpr, params: &QueryParams) -> Result<Value, SubError> {
        let plan = MetricPlan::new(expr, params).map_err(eval_error)?;
        // Sub-queries and cache keys carry the query as the parser understood it, so spacing
        // and quoting do not make two cache entries of one query.
        let normalized = expr.to_string();
        let query = normalized.as_str();
        if params.instant {
            let shards = self.shards(ctx, &plan, 1).await?;
            return self.metric_split(ctx, expr, query, params, shards).await;
        }
        let interval = self.interval(&ctx.tenants, |l| l.split_queries_by_interval.get());
        let splits = metric_splits(params, interval);
        self.count_splits(ctx, splits.len());
        let shards = self.shards(ctx, &plan, splits.len()).await?;
        let parts = all_of(splits, |p| self.cached_metric_split(ctx, expr, query, p, interval, shards)).await?;
        let joined = join_matrices(parts);
        let max = self.max_series(&ctx.tenants);
        if joined.len() > max {
            return Err(eval_error(series_limit_error(max)));
        }
        Ok(Value::Matrix(joined))
    }

    /// How many shards each of the `splits` splits of a shardable query is cut into:
    /// `query_range.shards`, or enough that each shard reads about `tsdb_max_bytes_per_shard`
    /// by the index statistics of the query's range. 1 when the query cannot be sharded.
    async fn shards(&self, ctx: &Ctx, plan: &MetricPlan, splits: usize) -> Result<u32, SubError> {
        if !self.inner.range.parallelise_shardable_queries || !plan.shardable() {
            return Ok(1);
        }
        let max = self.inner.limits.strictest(&ctx.tenants, |l| l.tsdb_max_query_parallelism).max(1) as u32;
        if self.inner.range.shards > 0 {
            return Ok(self.inner.range.shards.min(max));
        }
        let per_shard = self.inner.limits.strictest(&ctx.tenants, |l| l.tsdb_max_bytes_per_shard).bytes().max(1);
        let mut bytes = 0u64;
        for (matchers, from, through) in plan.leaf_reads() {
            let selector = selector_text(matchers);
            let stats = self.stats_job(ctx, SubRequest::IndexStats { selector, from, through: through.max(from + 1) });
            match stats.await {
                Ok(SubResponse::Stats(s)) => bytes = bytes.saturating_add(s.bytes),
                // Without statistics (the object store is away) the query runs unsharded: its
                // queriers may still answer from ingester memory.
                Err(e) if e.kind == ErrorKind::Unavailable => {
                    tracing::warn!(err = %e, "no index statistics to shard by; running unsharded");
                    return Ok(1);
                }
                Ok(_) => return Err(unexpected("index stats")),
                Err(e) => return Err(e),
            }
        }
        let n = (bytes / splits.max(1) as u64).div_ceil(per_shard).max(1);
        Ok((n.next_power_of_two().min(u64::from(max))) as u32)
    }

    /// One split of a range metric query (or a whole instant query), from the results cache
    /// where it holds the split's steps, computing only the steps it does not hold.
    async fn cached_metric_split(
        &self,
        ctx: &Ctx,
        expr: &SampleExpr,
        query: &str,
        params: QueryParams,
        interval: i64,
        shards: u32,
    ) -> Result<Vec<Series>, SubError> {
        let Some(cache) = self.cache_for(ctx, self.inner.range.cache_results) else {
            return self.metric_split(ctx, expr, query, &params, shards).await.and_then(matrix);
        };
        let split = if interval > 0 { params.start.div_euclid(interval) } else { 0 };
        let phase = params.start.rem_euclid(params.step.max(1));
        let scope = ctx.cache_scope.as_deref().unwrap_or("");
        let key = format!("metric|{scope}|{}|{phase}|{split}|{query}", params.step);
        let cutoff = self.cacheable_until(&ctx.tenants);
        let step = params.step.max(1);
        let mut have: Vec<Series> = Vec::new();
        let mut from = params.start;
        // A cached extent of this split's steps starting at or before ours: its points are
        // ours as far as it reaches; only the steps after it are computed.
        if let Some(((start, end), SubResponse::Value(Value::Matrix(m)))) = cache.get(&key).await
            && start <= params.start
            && end >= params.start
        {
            have = slice(m, params.start, params.end.min(end));
            if end >= params.end {
                return Ok(have);
            }
            from = params.start + ((end - params.start) / step + 1) * step;
        }
        let rest = QueryParams { start: from, ..params };
        let computed = matrix(self.metric_split(ctx, expr, query, &rest, shards).await?)?;
        let all = join_matrices(vec![have, computed]);
        // Keep the steps that are old enough: up to the last one before the freshness cutoff.
        if cutoff >= from && ctx.complete() {
            let last = params.end.min(params.start + (cutoff - params.start) / step * step);
            let keep = slice(all.clone(), params.start, last);
            cache.put(&key, (params.start, last), &SubResponse::Value(Value::Matrix(keep))).await;
        }
        Ok(all)
    }

    /// One split of a metric query (`expr`, whose normalized text is `query`), sharded when
    /// `shards > 1`: each shard's leaves on a querier, their rows joined and the expression
    /// finished here.
    async fn metric_split(
        &self,
        ctx: &Ctx,
        expr: &SampleExpr,
        query: &str,
        params: &QueryParams,
        shards: u32,
    ) -> Result<Value, SubError> {
        if shards <= 1 {
            let answer = self.run(ctx, SubRequest::Query { query: query.to_string(), params: *params }).await?;
            return match answer {
                SubResponse::Value(v) => Ok(v),
                _ => Err(unexpected("a query value")),
            };
        }
        let plan = MetricPlan::new(expr, params).map_err(eval_error)?;
        ctx.stats.shards.fetch_add(u64::from(shards), Ordering::Relaxed);
        let mut jobs = Vec::new();
        for leaf in plan.distinct_leaves() {
            for index in 0..shards {
                let request = SubRequest::Leaf {
                    query: query.to_string(),
                    params: *params,
                    leaf: leaf as u32,
                    shard: Shard { index, of: shards },
                };
                jobs.push((leaf, request));
            }
        }
        let answers: Vec<(usize, LeafRows)> = all_of(jobs, |(leaf, request)| async move {
            match self.run(ctx, request).await? {
                SubResponse::Rows(rows) => Ok((leaf, rows)),
                _ => Err(unexpected("rows")),
            }
        })
        .await?;
        let mut results = Vec::new();
        let mut answers = answers;
        for leaf in plan.distinct_leaves() {
            let (mine, rest): (Vec<_>, Vec<_>) = answers.into_iter().partition(|(l, _)| *l == leaf);
            answers = rest;
            let parts = mine.into_iter().map(|(_, rows)| rows).collect();
            results.push((leaf, plan.join_shards(leaf, parts).map_err(eval_error)?));
        }
        plan.finish(results, &EvalLimits { max_series: self.max_series(&ctx.tenants) }).await.map_err(eval_error)
    }

    /// A metadata sub-query, from the cache when it is old enough to have been cached.
    async fn stats_job(&self, ctx: &Ctx, request: SubRequest) -> Result<SubResponse, SubError> {
        let (through, enabled) = match &request {
            SubRequest::IndexStats { through, .. } => (*through, self.inner.range.cache_index_stats_results),
            SubRequest::Volumes { through, .. } => (*through, self.inner.range.cache_volume_results),
            SubRequest::Series { through, .. } => (*through, self.inner.range.cache_series_results),
            SubRequest::Labels { through, .. } => (*through, self.inner.range.cache_label_results),
            SubRequest::Query { .. } | SubRequest::Leaf { .. } => (i64::MAX, false),
        };
        let cache = self.cache_for(ctx, enabled);
        let key = format!("{}|{}|{:?}", request.kind(), ctx.cache_scope.as_deref().unwrap_or(""), request);
        if let Some(c) = cache
            && let Some((_, answer)) = c.get(&key).await
        {
            return Ok(answer);
        }
        let answer = self.run(ctx, request).await?;
        if let Some(c) = cache
            && through <= self.cacheable_until(&ctx.tenants)
            && ctx.complete()
        {
            c.put(&key, (0, through), &answer).await;
        }
        Ok(answer)
    }

    /// Splits of a metadata lookup over `[from, through)`.
    fn metadata_splits(&self, tenants: &[String], from: i64, through: i64) -> Vec<(i64, i64)> {
        time_splits(from, through, self.interval(tenants, |l| l.split_metadata_queries_by_interval.get()))
    }

    /// Label names or values (see [`crate::querier::Querier::labels`]).
    pub async fn labels(
        &self,
        tenants: &[String],
        name: Option<&str>,
        selector: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<String>, QueryError> {
        let ctx = self.ctx(tenants).await;
        let selector = selector_text(selector);
        let splits = self.metadata_splits(tenants, from, through);
        let answers = all_of(splits, |(from, through)| {
            let request =
                SubRequest::Labels { name: name.map(str::to_string), selector: selector.clone(), from, through };
            self.stats_job(&ctx, request)
        })
        .await
        .map_err(query_error)?;
        let mut out = BTreeSet::new();
        for a in answers {
            let SubResponse::Strings(s) = a else { return Err(query_error(unexpected("strings"))) };
            out.extend(s);
        }
        Ok(out.into_iter().collect())
    }

    /// Series matching any of `selectors` (see [`crate::querier::Querier::series`]).
    pub async fn series(
        &self,
        tenants: &[String],
        selectors: &[Vec<Matcher>],
        from: i64,
        through: i64,
    ) -> Result<Vec<SharedLabels>, QueryError> {
        let ctx = self.ctx(tenants).await;
        let selectors: Vec<String> = selectors.iter().map(|m| selector_text(m)).collect();
        let splits = self.metadata_splits(tenants, from, through);
        let answers = all_of(splits, |(from, through)| {
            self.stats_job(&ctx, SubRequest::Series { selectors: selectors.clone(), from, through })
        })
        .await
        .map_err(query_error)?;
        let mut out = BTreeSet::new();
        for a in answers {
            let SubResponse::Series(s) = a else { return Err(query_error(unexpected("series"))) };
            out.extend(s);
        }
        let max = self.max_series(tenants);
        if out.len() > max {
            return Err(series_limit_error(max).into());
        }
        Ok(out.into_iter().collect())
    }

    /// `index/stats` (see [`crate::querier::Querier::index_stats`]).
    pub async fn index_stats(
        &self,
        tenants: &[String],
        selector: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<IndexStats, QueryError> {
        let ctx = self.ctx(tenants).await;
        let request = SubRequest::IndexStats { selector: selector_text(selector), from, through };
        match self.stats_job(&ctx, request).await.map_err(query_error)? {
            SubResponse::Stats(s) => Ok(s),
            _ => Err(query_error(unexpected("index stats"))),
        }
    }

    /// Per-series volumes (see [`crate::querier::Querier::volumes`]).
    pub async fn volumes(
        &self,
        tenants: &[String],
        selector: &[Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<(SharedLabels, SeriesVolume)>, QueryError> {
        let ctx = self.ctx(tenants).await;
        let request = SubRequest::Volumes { selector: selector_text(selector), from, through };
        match self.stats_job(&ctx, request).await.map_err(query_error)? {
            SubResponse::Volumes(v) => Ok(v),
            _ => Err(query_error(unexpected("volumes"))),
        }
    }

    /// Stops the queue: queued sub-queries fail, workers get no more work.
    pub fn stop(&self) {
        self.inner.queue.stop();
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Runs `f` over every item at once (the query's parallelism permits bound what runs) and
/// returns the results in the items' order, or the first error as soon as it happens: the
/// other sub-queries are then dropped.
async fn all_of<I, T, F, Fut>(items: Vec<I>, f: F) -> Result<Vec<T>, SubError>
where
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = Result<T, SubError>>,
{
    let n = items.len();
    let mut done: Vec<(usize, T)> = futures::stream::iter(items.into_iter().enumerate())
        .map(|(i, item)| {
            let fut = f(item);
            async move { fut.await.map(|t| (i, t)) }
        })
        .buffer_unordered(n.max(1))
        .try_collect()
        .await?;
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, t)| t).collect())
}

/// A selector as LogQL text (`{a="b", c=~"d"}`); empty for no matchers.
fn selector_text(matchers: &[Matcher]) -> String {
    if matchers.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = matchers.iter().map(ToString::to_string).collect();
    format!("{{{}}}", parts.join(", "))
}

/// The points of `m` with `from <= ts <= to`, series left without points dropped.
fn slice(m: Vec<Series>, from: i64, to: i64) -> Vec<Series> {
    m.into_iter()
        .filter_map(|mut s| {
            s.points.retain(|p| p.ts >= from && p.ts <= to);
            (!s.points.is_empty()).then_some(s)
        })
        .collect()
}

fn matrix(v: Value) -> Result<Vec<Series>, SubError> {
    match v {
        Value::Matrix(m) => Ok(m),
        _ => Err(unexpected("a matrix")),
    }
}

fn unexpected(what: &str) -> SubError {
    SubError::new(ErrorKind::Internal, format!("a querier answered a sub-query with something other than {what}"))
}

fn eval_error(e: EvalError) -> SubError {
    use crate::error::HasKind;
    SubError::new(e.kind(), e.to_string())
}

/// A sub-query's error as the error of the whole request; the kind (and so the status code)
/// is kept.
fn query_error(e: SubError) -> QueryError {
    match e.kind {
        ErrorKind::Invalid => QueryError::Invalid(e.message),
        ErrorKind::Timeout => QueryError::Eval(EvalError::Timeout(e.message)),
        ErrorKind::Unavailable => QueryError::Eval(EvalError::Storage(e.message)),
        ErrorKind::RateLimited => QueryError::RateLimited(e.message),
        _ => QueryError::Eval(EvalError::Internal(e.message)),
    }
}
