//! The endpoints Grafana's Logs Drilldown app calls besides the query API: `detected_labels`,
//! `detected_fields`, `detected_field/<name>/values`, `patterns` and `drilldown-limits`, with
//! Loki's parameters and JSON shapes.

pub mod fields;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use crate::api::params::{self, Params};
use crate::api::{bad, json as json_response, querier, query_error, read_tenants, request_params, respond};
use crate::distributor::discover::LEVEL_FIELDS;
use crate::entry::Direction;
use crate::logql::{self, Expr, Matcher};
use crate::query::{QueryParams, Value as QueryValue};
use crate::server::{ApiError, App};

/// Lines `detected_fields` looks at unless `line_limit` says otherwise (Loki's default).
const DEFAULT_LINE_LIMIT: usize = 1000;
/// Fields (or values) returned unless `limit` says otherwise (Loki's default).
const DEFAULT_LIMIT: usize = 1000;
/// Labels `detected_labels` always reports; others only with 2 to 50 values.
const STATIC_LABELS: &[&str] = &["cluster", "namespace", "instance", "pod"];
const MAX_DETECTED_CARDINALITY: usize = 50;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/loki/api/v1/detected_labels", get(detected_labels).post(detected_labels))
        .route("/loki/api/v1/detected_fields", get(detected_fields).post(detected_fields))
        .route("/loki/api/v1/detected_field/{name}/values", get(detected_field_values).post(detected_field_values))
        .route("/loki/api/v1/patterns", get(patterns).post(patterns))
        .route("/loki/api/v1/drilldown-limits", get(drilldown_limits))
}

fn usize_param(p: &Params, name: &str, default: usize) -> Result<usize, ApiError> {
    match p.get(name) {
        None | Some("") => Ok(default),
        Some(v) => v.parse().map_err(|_| bad(format!("invalid {name} {v:?}: expected a non-negative integer"))),
    }
}

/// The stream selector of a `query` parameter that may carry a pipeline (`{a="b"} |= "x"`).
fn selector(q: &str) -> Result<Vec<Matcher>, ApiError> {
    match logql::parse_expr(q).map_err(|e| bad(e.to_string()))? {
        Expr::Log(l) => Ok(l.matchers),
        Expr::Sample(_) => Err(bad("only log queries are supported here, not metric queries")),
    }
}

async fn detected_labels(State(app): State<App>, headers: HeaderMap, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let run = async {
        let p = request_params(raw, &body);
        let q = querier(&app)?;
        let tenants = read_tenants(&app, &headers)?;
        let (start, end) = params::time_range(&p).map_err(bad)?;
        let matchers = match p.get("query") {
            Some(s) if !s.trim().is_empty() => selector(s)?,
            _ => Vec::new(),
        };
        let through = end.saturating_add(1);
        let names = q.labels(&tenants, None, &matchers, start, through).await.map_err(query_error)?;
        let mut out = Vec::new();
        for name in names {
            let values = q.labels(&tenants, Some(&name), &matchers, start, through).await.map_err(query_error)?;
            let n = values.len();
            if STATIC_LABELS.contains(&name.as_str()) || (2..=MAX_DETECTED_CARDINALITY).contains(&n) {
                out.push(json!({"label": name, "cardinality": n}));
            }
        }
        Ok::<_, ApiError>(json_response(json!({"detectedLabels": out}).to_string()))
    };
    respond(run.await)
}

/// Runs the log query of `p` for the newest `line_limit` lines.
async fn sample_lines(
    app: &App,
    headers: &HeaderMap,
    p: &Params,
) -> Result<Vec<crate::query::value::StreamResult>, ApiError> {
    let q = querier(app)?;
    let tenants = read_tenants(app, headers)?;
    let text = params::query(p).map_err(bad)?;
    selector(text)?;
    let (start, end) = params::time_range(p).map_err(bad)?;
    let line_limit = usize_param(p, "line_limit", DEFAULT_LINE_LIMIT)?;
    let qp = QueryParams {
        start,
        end,
        step: params::default_step(start, end),
        interval: 0,
        direction: Direction::Backward,
        limit: line_limit,
        instant: false,
    };
    match q.query(&tenants, text, &qp).await.map_err(query_error)?.value {
        QueryValue::Streams(s) => Ok(s),
        _ => Err(bad("only log queries are supported here, not metric queries")),
    }
}

async fn detected_fields(State(app): State<App>, headers: HeaderMap, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let run = async {
        let p = request_params(raw, &body);
        let limit = usize_param(&p, "limit", DEFAULT_LIMIT)?;
        let streams = sample_lines(&app, &headers, &p).await?;
        let found = fields::detect(&streams);
        let out: Vec<Value> = found
            .iter()
            .take(limit)
            .map(|(name, f)| {
                let mut v = json!({
                    "label": name,
                    "type": f.kind(),
                    "cardinality": f.values.len(),
                    "parsers": if f.parsers.is_empty() { Value::Null } else { json!(f.parsers) },
                });
                if let Some(path) = &f.json_path {
                    v["jsonPath"] = json!(path);
                }
                v
            })
            .collect();
        Ok::<_, ApiError>(json_response(json!({"fields": out, "limit": limit}).to_string()))
    };
    respond(run.await)
}

async fn detected_field_values(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let run = async {
        let p = request_params(raw, &body);
        let limit = usize_param(&p, "limit", DEFAULT_LIMIT)?;
        let streams = sample_lines(&app, &headers, &p).await?;
        let mut values: Vec<String> =
            fields::detect(&streams).remove(&name).map(|f| f.values.into_iter().collect()).unwrap_or_default();
        values.sort();
        values.truncate(limit);
        Ok::<_, ApiError>(json_response(json!({"values": values, "limit": limit}).to_string()))
    };
    respond(run.await)
}

async fn patterns(State(app): State<App>, headers: HeaderMap, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let run = async {
        let p = request_params(raw, &body);
        let tenants = read_tenants(&app, &headers)?;
        let matchers = selector(params::query(&p).map_err(bad)?)?;
        let (start, end) = params::time_range(&p).map_err(bad)?;
        let step = match p.get("step") {
            Some(s) => params::parse_seconds_or_duration(s).map_err(bad)?,
            None => params::default_step(start, end),
        };
        if step <= 0 {
            return Err(bad("zero or negative query resolution step widths are not accepted. Try a positive integer"));
        }
        // Every ingester's detector (this process's, or the ring's over gRPC), merged per stream
        // so replicas count once.
        let recent = querier(&app)?.ingesters.clone();
        let mut data = Vec::new();
        for tenant in &tenants {
            let Some(recent) = &recent else { break };
            let through = end.saturating_add(1);
            let parts = recent.patterns(tenant, &matchers, start, through).await.map_err(|e| query_error(e.into()))?;
            for s in crate::pattern::merge(parts, start, through, step) {
                let samples: Vec<Value> =
                    s.samples.iter().map(|(ts, n)| json!([ts.div_euclid(1_000_000_000), n])).collect();
                let mut v = json!({"pattern": s.pattern, "samples": samples});
                if let Some(level) = s.level {
                    v["level"] = json!(level);
                }
                data.push(v);
            }
        }
        Ok(json_response(json!({"status": "success", "data": data}).to_string()))
    };
    respond(run.await)
}

async fn drilldown_limits(State(app): State<App>, headers: HeaderMap) -> Response {
    let run = async {
        let tenants = read_tenants(&app, &headers)?;
        let limits = crate::limits::TenantLimits::new(app.cfg.limits.clone(), &app.cfg.overrides).map_err(bad)?;
        let l = limits.get(&tenants[0]);
        let enabled = app.cfg.pattern_ingester.enabled && app.ingester.is_some() && !app.cfg.distributed();
        let body = json!({
            "limits": {
                "discover_log_levels": l.discover_log_levels,
                "discover_service_name": l.discover_service_name,
                "log_level_fields": LEVEL_FIELDS,
                "max_entries_limit_per_query": l.max_entries_limit_per_query,
                "max_query_series": l.max_query_series,
                "max_query_length": l.max_query_length.to_string(),
                "query_timeout": l.query_timeout.to_string(),
                "otlp_config": l.otlp_config,
                "allow_structured_metadata": l.allow_structured_metadata,
                "volume_enabled": true,
                "pattern_persistence_enabled": false,
                "metric_aggregation_enabled": false,
            },
            "pattern_ingester_enabled": enabled,
            "version": env!("CARGO_PKG_VERSION"),
        });
        Ok::<_, ApiError>(json_response(body.to_string()))
    };
    respond(run.await)
}
