//! Loki's read API: `query`, `query_range`, labels, series, index statistics and volume,
//! `format_query` and `tail`.

pub mod encode;
pub mod params;
mod tail;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::HasKind;
use crate::frontend::Frontend;
use crate::logql::{self, Expr};
use crate::querier::{Querier, QueryError, aggregate_volumes};
use crate::query::Value;
use crate::query::value::{Sample, Series};
use crate::server::app::{ApiError, App, text};
use encode::LabelEncoding;
use params::Params;

/// The read routes; answered 404 by processes that run no querier.
pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/loki/api/v1/query", get(query).post(query))
        .route("/loki/api/v1/query_range", get(query_range).post(query_range))
        .route("/loki/api/v1/labels", get(label_names).post(label_names))
        .route("/loki/api/v1/label", get(label_names).post(label_names))
        .route("/loki/api/v1/label/{name}/values", get(label_values).post(label_values))
        .route("/loki/api/v1/series", get(series).post(series))
        .route("/loki/api/v1/index/stats", get(index_stats).post(index_stats))
        .route("/loki/api/v1/index/volume", get(volume).post(volume))
        .route("/loki/api/v1/index/volume_range", get(volume_range).post(volume_range))
        .route("/loki/api/v1/format_query", get(format_query).post(format_query))
        .route("/loki/api/v1/tail", get(tail::tail))
        .route("/api/prom/label", get(label_names))
        .route("/api/prom/label/{name}/values", get(label_values))
}

/// The request's parameters: query string, then a form body.
pub(crate) fn request_params(raw: Option<String>, body: &Bytes) -> Params {
    let mut p = Params::default();
    if let Some(q) = raw {
        p.extend_urlencoded(q.as_bytes());
    }
    p.extend_urlencoded(body);
    p
}

/// The tenants a read is for: `X-Scope-OrgID` (`a|b` for several) with auth, `fake` without.
pub(crate) fn read_tenants(app: &App, headers: &HeaderMap) -> Result<Vec<String>, ApiError> {
    if !app.cfg.auth.enabled {
        return Ok(vec![crate::server::app::DEFAULT_TENANT.to_string()]);
    }
    let raw = headers.get("x-scope-orgid").and_then(|v| v.to_str().ok()).unwrap_or("").trim();
    if raw.is_empty() {
        return Err(ApiError(StatusCode::UNAUTHORIZED, "no org id".into()));
    }
    let q = &app.cfg.querier;
    if raw.contains('|') && !q.multi_tenant_queries_enabled {
        let msg = "multiple org IDs present (reads of several tenants need querier.multi_tenant_queries_enabled)";
        return Err(ApiError(StatusCode::BAD_REQUEST, msg.into()));
    }
    let mut out: Vec<String> = Vec::new();
    for t in raw.split('|').map(str::trim) {
        crate::validation::validate_tenant_id(t).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    if out.len() > q.max_query_tenants {
        let msg = format!(
            "too many tenants in one read: {} > querier.max_query_tenants ({})",
            out.len(),
            q.max_query_tenants
        );
        return Err(ApiError(StatusCode::BAD_REQUEST, msg));
    }
    Ok(out)
}

pub(crate) fn querier(app: &App) -> Result<&Querier, ApiError> {
    app.querier.as_ref().ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "this process does not run a querier".into()))
}

/// What answers a read: the query frontend when the process runs one, else the querier.
#[derive(Clone, Copy)]
enum Reader<'a> {
    Frontend(&'a Frontend),
    Querier(&'a Querier),
}

fn reader(app: &App) -> Result<Reader<'_>, ApiError> {
    match &app.frontend {
        Some(f) => Ok(Reader::Frontend(f)),
        None => querier(app).map(Reader::Querier),
    }
}

impl Reader<'_> {
    async fn query(
        self,
        tenants: &[String],
        query: &str,
        params: &crate::query::QueryParams,
    ) -> Result<crate::querier::QueryOutput, QueryError> {
        match self {
            Reader::Frontend(f) => f.query(tenants, query, params).await,
            Reader::Querier(q) => q.query(tenants, query, params).await,
        }
    }

    async fn labels(
        self,
        tenants: &[String],
        name: Option<&str>,
        selector: &[logql::Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<String>, QueryError> {
        match self {
            Reader::Frontend(f) => f.labels(tenants, name, selector, from, through).await,
            Reader::Querier(q) => q.labels(tenants, name, selector, from, through).await,
        }
    }

    async fn series(
        self,
        tenants: &[String],
        selectors: &[Vec<logql::Matcher>],
        from: i64,
        through: i64,
    ) -> Result<Vec<crate::labels::SharedLabels>, QueryError> {
        match self {
            Reader::Frontend(f) => f.series(tenants, selectors, from, through).await,
            Reader::Querier(q) => q.series(tenants, selectors, from, through).await,
        }
    }

    async fn index_stats(
        self,
        tenants: &[String],
        selector: &[logql::Matcher],
        from: i64,
        through: i64,
    ) -> Result<crate::querier::IndexStats, QueryError> {
        match self {
            Reader::Frontend(f) => f.index_stats(tenants, selector, from, through).await,
            Reader::Querier(q) => q.index_stats(tenants, selector, from, through).await,
        }
    }

    async fn volumes(
        self,
        tenants: &[String],
        selector: &[logql::Matcher],
        from: i64,
        through: i64,
    ) -> Result<Vec<(crate::labels::SharedLabels, crate::querier::SeriesVolume)>, QueryError> {
        match self {
            Reader::Frontend(f) => f.volumes(tenants, selector, from, through).await,
            Reader::Querier(q) => q.volumes(tenants, selector, from, through).await,
        }
    }
}

pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

pub(crate) fn query_error(e: QueryError) -> ApiError {
    let status = e.kind().http_status();
    if status.is_server_error() {
        tracing::warn!(err = %e, "query failed");
    }
    ApiError(status, e.to_string())
}

pub(crate) fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response()
}

fn label_encoding(headers: &HeaderMap) -> LabelEncoding {
    let categorize = headers
        .get_all("x-loki-response-encoding-flags")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim() == "categorize-labels");
    if categorize { LabelEncoding::Categorized } else { LabelEncoding::Flat }
}

async fn query(State(app): State<App>, headers: HeaderMap, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    respond(run_query(&app, &headers, request_params(raw, &body), true).await)
}

async fn query_range(State(app): State<App>, headers: HeaderMap, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    respond(run_query(&app, &headers, request_params(raw, &body), false).await)
}

pub(crate) fn respond(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn run_query(app: &App, headers: &HeaderMap, p: Params, instant: bool) -> Result<Response, ApiError> {
    let q = reader(app)?;
    let tenants = read_tenants(app, headers)?;
    let text_query = params::query(&p).map_err(bad)?;
    let qp = if instant { params::instant_params(&p) } else { params::range_params(&p) }.map_err(bad)?;
    if instant && matches!(logql::parse_expr(text_query), Ok(Expr::Log(_))) {
        return Err(bad(
            "log queries are not supported as an instant query type, please change your query to a range query type",
        ));
    }
    let mut out = q.query(&tenants, text_query, &qp).await.map_err(query_error)?;
    let enc = label_encoding(headers);
    if enc == LabelEncoding::Categorized
        && let Value::Streams(streams) = &mut out.value
    {
        // A label only a parser or the metadata adds no longer splits a stream.
        *streams = crate::query::logs::categorize(std::mem::take(streams), qp.direction);
    }
    Ok(json(encode::query_response(&out, enc)))
}

/// The selector of label/series/index endpoints (`query=`); empty means every stream.
fn optional_selector(p: &Params) -> Result<Vec<logql::Matcher>, ApiError> {
    match p.get("query") {
        None => Ok(Vec::new()),
        Some(q) => logql::parse_matchers(q).map_err(|e| bad(e.to_string())),
    }
}

async fn label_names(State(app): State<App>, headers: HeaderMap, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    respond(labels(&app, &headers, request_params(raw, &body), None).await)
}

async fn label_values(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    respond(labels(&app, &headers, request_params(raw, &body), Some(name)).await)
}

async fn labels(app: &App, headers: &HeaderMap, p: Params, name: Option<String>) -> Result<Response, ApiError> {
    let q = reader(app)?;
    let tenants = read_tenants(app, headers)?;
    let (start, end) = params::time_range(&p).map_err(bad)?;
    let selector = optional_selector(&p)?;
    let values =
        q.labels(&tenants, name.as_deref(), &selector, start, end.saturating_add(1)).await.map_err(query_error)?;
    Ok(json(encode::success(serde_json::json!(values))))
}

async fn series(State(app): State<App>, headers: HeaderMap, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    respond(run_series(&app, &headers, request_params(raw, &body)).await)
}

async fn run_series(app: &App, headers: &HeaderMap, p: Params) -> Result<Response, ApiError> {
    let q = reader(app)?;
    let tenants = read_tenants(app, headers)?;
    let (start, end) = params::time_range(&p).map_err(bad)?;
    let mut raw = p.all("match[]");
    raw.extend(p.all("match"));
    let selectors =
        raw.iter().map(|s| logql::parse_matchers(s).map_err(|e| bad(e.to_string()))).collect::<Result<Vec<_>, _>>()?;
    let found = q.series(&tenants, &selectors, start, end.saturating_add(1)).await.map_err(query_error)?;
    let data: Vec<serde_json::Value> = found.iter().map(|l| encode::labels_json(l)).collect();
    Ok(json(encode::success(serde_json::Value::Array(data))))
}

async fn index_stats(State(app): State<App>, headers: HeaderMap, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let run = async {
        let p = request_params(raw, &body);
        let q = reader(&app)?;
        let tenants = read_tenants(&app, &headers)?;
        let (start, end) = params::time_range(&p).map_err(bad)?;
        let selector = optional_selector(&p)?;
        let stats = q.index_stats(&tenants, &selector, start, end.saturating_add(1)).await.map_err(query_error)?;
        Ok::<_, ApiError>(json(serde_json::to_string(&stats).unwrap_or_default()))
    };
    respond(run.await)
}

/// `targetLabels` and `aggregateBy` of the volume endpoints: which labels to group by.
fn volume_grouping(p: &Params, selector: &[logql::Matcher]) -> Result<Vec<String>, ApiError> {
    let targets: Vec<String> = p
        .get("targetLabels")
        .map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    match p.get("aggregateBy").unwrap_or("series") {
        "series" if targets.is_empty() => Ok(selector.iter().map(|m| m.name.clone()).collect()),
        "series" => Ok(targets),
        "labels" if targets.is_empty() => Ok(Vec::new()),
        "labels" => Ok(targets),
        other => Err(bad(format!("invalid aggregateBy '{other}': expected series or labels"))),
    }
}

async fn volume(State(app): State<App>, headers: HeaderMap, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    respond(run_volume(&app, &headers, request_params(raw, &body), false).await)
}

async fn volume_range(State(app): State<App>, headers: HeaderMap, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    respond(run_volume(&app, &headers, request_params(raw, &body), true).await)
}

async fn run_volume(app: &App, headers: &HeaderMap, p: Params, range: bool) -> Result<Response, ApiError> {
    let q = reader(app)?;
    let tenants = read_tenants(app, headers)?;
    let (start, end) = params::time_range(&p).map_err(bad)?;
    let selector = logql::parse_matchers(params::query(&p).map_err(bad)?).map_err(|e| bad(e.to_string()))?;
    let limit: usize = p
        .get("limit")
        .map(|l| l.parse().map_err(|_| bad(format!("cannot parse \"{l}\" to a valid limit"))))
        .transpose()?
        .unwrap_or(100);
    let group = volume_grouping(&p, &selector)?;
    let vols = q.volumes(&tenants, &selector, start, end.saturating_add(1)).await.map_err(query_error)?;
    let out = if range {
        let step = match p.get("step") {
            Some(s) => params::parse_seconds_or_duration(s).map_err(bad)?,
            None => params::default_step(start, end),
        };
        if step <= 0 {
            return Err(bad("zero or negative query resolution step widths are not accepted. Try a positive integer"));
        }
        let mut series: std::collections::BTreeMap<Arc<crate::labels::Labels>, std::collections::BTreeMap<i64, f64>> =
            Default::default();
        for (labels, v) in &vols {
            let key = aggregate_volumes(&[(labels.clone(), Default::default())], &group)
                .into_keys()
                .next()
                .unwrap_or_else(|| labels.clone());
            let points = series.entry(key).or_default();
            for (ts, bytes) in &v.points {
                let bucket = start + ((ts - start).max(0) / step) * step;
                *points.entry(bucket.min(end)).or_default() += *bytes as f64;
            }
        }
        let mut m: Vec<Series> = series
            .into_iter()
            .map(|(labels, pts)| Series {
                labels,
                points: pts.into_iter().map(|(ts, value)| crate::query::value::Point { ts, value }).collect(),
            })
            .collect();
        m.sort_by(|a, b| total(b).total_cmp(&total(a)));
        m.truncate(limit);
        Value::Matrix(m)
    } else {
        let mut v: Vec<Sample> = aggregate_volumes(&vols, &group)
            .into_iter()
            .map(|(labels, bytes)| Sample { labels, ts: end, value: bytes as f64 })
            .collect();
        v.sort_by(|a, b| b.value.total_cmp(&a.value).then_with(|| a.labels.cmp(&b.labels)));
        v.truncate(limit);
        Value::Vector(v)
    };
    let output = crate::querier::QueryOutput {
        value: out,
        stats: Default::default(),
        exec_time: Default::default(),
        queue_time: Default::default(),
    };
    Ok(json(encode::query_response(&output, LabelEncoding::Flat)))
}

fn total(s: &Series) -> f64 {
    s.points.iter().map(|p| p.value).sum()
}

async fn format_query(RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let p = request_params(raw, &body);
    let Some(q) = p.get("query") else {
        return text(StatusCode::BAD_REQUEST, "query parameter is required");
    };
    match logql::parse_expr(q) {
        Ok(expr) => json(encode::success(serde_json::Value::String(logql::pretty(&expr)))),
        Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
    }
}
