//! The ruler's HTTP API.
//!
//! Loki's rules API (YAML bodies):
//! - `GET /loki/api/v1/rules`: every namespace of the tenant, `{namespace: [group, ...]}`.
//! - `GET /loki/api/v1/rules/{namespace}`: one namespace, same shape.
//! - `GET /loki/api/v1/rules/{namespace}/{group}`: one group.
//! - `POST /loki/api/v1/rules/{namespace}`: adds or replaces one group (the body); 202.
//! - `DELETE /loki/api/v1/rules/{namespace}[/{group}]`: removes a namespace or a group; 202.
//!
//! The same under `/api/prom/rules`. Invalid input is a 400 with Prometheus' error body
//! (`{"status":"error","errorType":"bad_data","error":"..."}`).
//!
//! Prometheus' read API, as Grafana's alerting UI lists Loki rules:
//! - `GET /prometheus/api/v1/rules[?type=alert|record]`: groups with rule health and alerts.
//! - `GET /prometheus/api/v1/alerts`: pending and firing alerts.
//!
//! Each ruler knows the live state of the groups it evaluates; these two ask the other rulers
//! of the ring (`?local=true`) and merge their answers.
//!
//! - `GET /ruler/ring`: the ruler ring.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value as Json, json};

use super::Ruler;
use super::RulerError;
use super::alerting::{AlertState, rfc3339_ms};
use super::group::{Group, Health, RuleKind};
use super::rules::{RuleGroup, parse_group};
use crate::error::HasKind;
use crate::server::{ApiError, App};

/// The ruler's routes; answered 404 by processes that run no ruler.
pub(crate) fn routes() -> Router<App> {
    let mut r = Router::new();
    for base in ["/loki/api/v1/rules", "/api/prom/rules"] {
        r = r
            .route(base, get(list_all))
            .route(&format!("{base}/{{namespace}}"), get(list_namespace).post(post_group).delete(delete_namespace))
            .route(&format!("{base}/{{namespace}}/{{group}}"), get(get_group).delete(delete_group));
    }
    r.route("/prometheus/api/v1/rules", get(prometheus_rules))
        .route("/prometheus/api/v1/alerts", get(prometheus_alerts))
}

/// An error answer of the ruler API: Prometheus' JSON body for bad input, Loki's plain text
/// otherwise.
enum RulesError {
    /// 400 `{"status":"error","errorType":"bad_data","error":...}`.
    BadData(String),
    Text(ApiError),
}

impl IntoResponse for RulesError {
    fn into_response(self) -> Response {
        match self {
            RulesError::BadData(msg) => {
                let body = json!({"status": "error", "errorType": "bad_data", "error": msg});
                (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
            }
            RulesError::Text(e) => e.into_response(),
        }
    }
}

impl From<ApiError> for RulesError {
    fn from(e: ApiError) -> Self {
        RulesError::Text(e)
    }
}

impl From<RulerError> for RulesError {
    fn from(e: RulerError) -> Self {
        match e.kind().http_status() {
            StatusCode::BAD_REQUEST => RulesError::BadData(e.to_string()),
            status => RulesError::Text(ApiError(status, e.to_string())),
        }
    }
}

type Answer = Result<Response, RulesError>;

fn bad_data(msg: impl Into<String>) -> RulesError {
    RulesError::BadData(msg.into())
}

fn not_found(msg: &str) -> RulesError {
    RulesError::Text(ApiError(StatusCode::NOT_FOUND, msg.into()))
}

/// The ruler and tenant of a request.
fn context<'a>(app: &'a App, headers: &HeaderMap) -> Result<(&'a Arc<Ruler>, String), RulesError> {
    let r = match &app.ruler {
        Some(r) if r.config().enable_api => r,
        Some(_) => return Err(not_found("the ruler API is disabled (ruler.enable_api)")),
        None => return Err(not_found("this process does not run a ruler")),
    };
    Ok((r, crate::server::tenant(app, headers)?))
}

/// 202 after a write, with a sync of the ruler asked for.
fn accepted(r: &Ruler) -> Response {
    r.poke();
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "success", "data": null, "errorType": "", "error": ""})))
        .into_response()
}

fn yaml(value: &impl serde::Serialize) -> Response {
    match serde_norway::to_string(value) {
        Ok(text) => ([(header::CONTENT_TYPE, "application/yaml")], text).into_response(),
        Err(e) => crate::server::text(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding rules: {e}")),
    }
}

fn check_name(what: &str, name: &str) -> Result<(), RulesError> {
    if name.trim().is_empty() {
        return Err(bad_data(format!("invalid {what} name: must not be empty")));
    }
    if name.chars().any(char::is_control) || name.len() > 512 {
        return Err(bad_data(format!("invalid {what} name {name:?}")));
    }
    Ok(())
}

async fn namespaces(r: &Ruler, tenant: &str) -> Result<BTreeMap<String, Vec<RuleGroup>>, RulesError> {
    let (files, _) = r.store().namespaces(tenant).await.map_err(RulerError::from)?;
    Ok(files.into_iter().map(|(ns, f)| (ns, f.groups)).collect())
}

async fn list_all(State(app): State<App>, headers: HeaderMap) -> Answer {
    let (r, tenant) = context(&app, &headers)?;
    let all = namespaces(r, &tenant).await?;
    if all.is_empty() { Err(not_found("no rule groups found")) } else { Ok(yaml(&all)) }
}

async fn list_namespace(State(app): State<App>, headers: HeaderMap, Path(namespace): Path<String>) -> Answer {
    let (r, tenant) = context(&app, &headers)?;
    let groups = namespaces(r, &tenant).await?.remove(&namespace).ok_or_else(|| not_found("no rule groups found"))?;
    Ok(yaml(&BTreeMap::from([(namespace, groups)])))
}

async fn get_group(
    State(app): State<App>,
    headers: HeaderMap,
    Path((namespace, group)): Path<(String, String)>,
) -> Answer {
    let (r, tenant) = context(&app, &headers)?;
    let mut all = namespaces(r, &tenant).await?;
    let g = all.remove(&namespace).and_then(|gs| gs.into_iter().find(|g| g.name == group));
    Ok(yaml(&g.ok_or_else(|| not_found("group does not exist"))?))
}

async fn post_group(State(app): State<App>, headers: HeaderMap, Path(namespace): Path<String>, body: Bytes) -> Answer {
    let (r, tenant) = context(&app, &headers)?;
    check_name("namespace", &namespace)?;
    let text = std::str::from_utf8(&body).map_err(|_| bad_data("rule group is not valid UTF-8"))?;
    let group = parse_group(text).map_err(|e| bad_data(e.0))?;
    check_name("group", &group.name)?;
    r.store().put_group(&tenant, &namespace, group).await?;
    Ok(accepted(r))
}

async fn delete_namespace(State(app): State<App>, headers: HeaderMap, Path(namespace): Path<String>) -> Answer {
    let (r, tenant) = context(&app, &headers)?;
    r.store().delete_namespace(&tenant, &namespace).await?;
    Ok(accepted(r))
}

async fn delete_group(
    State(app): State<App>,
    headers: HeaderMap,
    Path((namespace, group)): Path<(String, String)>,
) -> Answer {
    let (r, tenant) = context(&app, &headers)?;
    r.store().delete_group(&tenant, &namespace, &group).await?;
    Ok(accepted(r))
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, as Prometheus prints an alert's value.
pub fn go_float_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

fn secs(d: std::time::Duration) -> Json {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 { json!(s as u64) } else { json!(s) }
}

fn last_eval_time(ms: i64) -> String {
    if ms == 0 { "0001-01-01T00:00:00Z".into() } else { rfc3339_ms(ms) }
}

fn alert_json(a: &super::alerting::Alert) -> Json {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.name(),
        "activeAt": rfc3339_ms(a.active_at_ms),
        "value": go_float_e(a.value),
    })
}

/// Which rules `?type=` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TypeFilter {
    All,
    Alert,
    Record,
}

/// A group in Prometheus' JSON shape: live when running here, else as defined (never evaluated).
fn group_json(
    namespace: &str,
    def: &RuleGroup,
    live: Option<&Group>,
    default_interval: std::time::Duration,
    filter: TypeFilter,
) -> Json {
    let interval = def.interval.map_or(default_interval, |d| d.get());
    let mut rules_out = Vec::new();
    let (last_ms, eval_secs) = live.and_then(|g| *g.last_eval.lock()).unwrap_or((0, 0.0));
    let runtimes = live.map(|g| g.rules.lock().clone());
    for (i, rule) in def.rules.iter().enumerate() {
        let rt = runtimes.as_ref().and_then(|r| r.get(i));
        let (health, last_error, rule_last, rule_secs) = match rt {
            Some(rt) => (rt.health, rt.last_error.clone(), rt.last_eval_ms, rt.eval_seconds),
            None => (Health::Unknown, String::new(), 0, 0.0),
        };
        let mut j = if rule.is_alert() {
            if filter == TypeFilter::Record {
                continue;
            }
            let (state, alerts): (AlertState, Vec<Json>) = match rt.map(|r| &r.kind) {
                Some(RuleKind::Alerting(a)) => (
                    a.state(),
                    a.active.values().filter(|al| al.state != AlertState::Inactive).map(alert_json).collect(),
                ),
                _ => (AlertState::Inactive, Vec::new()),
            };
            json!({
                "state": state.name(),
                "name": rule.name(),
                "query": rule.expr,
                "duration": secs(rule.hold()),
                "keepFiringFor": secs(rule.keep_firing()),
                "labels": rule.labels,
                "annotations": rule.annotations,
                "alerts": alerts,
                "type": "alerting",
            })
        } else {
            if filter == TypeFilter::Alert {
                continue;
            }
            json!({"name": rule.name(), "query": rule.expr, "labels": rule.labels, "type": "recording"})
        };
        j["health"] = json!(health.name());
        j["lastError"] = json!(last_error);
        j["evaluationTime"] = json!(rule_secs);
        j["lastEvaluation"] = json!(last_eval_time(rule_last));
        rules_out.push(j);
    }
    json!({
        "name": def.name,
        "file": namespace,
        "rules": rules_out,
        "interval": secs(interval),
        "limit": def.limit,
        "evaluationTime": eval_secs,
        "lastEvaluation": last_eval_time(last_ms),
    })
}

/// The groups of the other rulers, as they evaluate them: `(file, name)` → group JSON.
async fn peer_groups(r: &Ruler, headers: &HeaderMap, path: &str) -> Vec<Json> {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().unwrap_or_default();
    let calls = r.peers().into_iter().map(|addr| {
        let mut req = client.get(format!("http://{addr}{path}"));
        if let Some(t) = headers.get("x-scope-orgid").and_then(|v| v.to_str().ok()) {
            req = req.header("X-Scope-OrgID", t);
        }
        async move {
            match req.send().await {
                Ok(resp) if resp.status().is_success() => resp.json::<Json>().await.ok(),
                Ok(resp) => {
                    tracing::warn!(peer = %addr, status = %resp.status(), "ruler peer did not answer its rules");
                    None
                }
                Err(err) => {
                    tracing::warn!(peer = %addr, %err, "cannot reach ruler peer");
                    None
                }
            }
        }
    });
    futures::future::join_all(calls).await.into_iter().flatten().collect()
}

fn is_local(raw: &Option<String>) -> bool {
    raw.as_deref().is_some_and(|q| q.split('&').any(|p| p == "local=true"))
}

async fn prometheus_rules(State(app): State<App>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Answer {
    let (r, tenant) = context(&app, &headers)?;
    let mut p = crate::api::params::Params::default();
    if let Some(q) = &raw {
        p.extend_urlencoded(q.as_bytes());
    }
    let filter = match p.get("type") {
        None | Some("") => TypeFilter::All,
        Some("alert") => TypeFilter::Alert,
        Some("record") => TypeFilter::Record,
        Some(other) => return Err(bad_data(format!("unsupported rule type {other:?}: expected alert or record"))),
    };
    let default_interval = r.config().evaluation_interval.get();
    let live: Vec<Arc<Group>> = r.running_groups().into_iter().filter(|g| g.key.tenant == tenant).collect();
    if is_local(&raw) {
        let groups: Vec<Json> =
            live.iter().map(|g| group_json(&g.key.namespace, &g.def, Some(g), default_interval, filter)).collect();
        return Ok(success(json!({"groups": groups})));
    }
    let defined = namespaces(r, &tenant).await?;
    let type_q = p.get("type").map(|t| format!("&type={t}")).unwrap_or_default();
    let remote = peer_groups(r, &headers, &format!("/prometheus/api/v1/rules?local=true{type_q}")).await;
    let mut from_peers: BTreeMap<(String, String), Json> = BTreeMap::new();
    for answer in remote {
        for g in answer["data"]["groups"].as_array().cloned().unwrap_or_default() {
            let key = (g["file"].as_str().unwrap_or("").to_string(), g["name"].as_str().unwrap_or("").to_string());
            from_peers.insert(key, g);
        }
    }
    let mut groups = Vec::new();
    for (namespace, defs) in &defined {
        for def in defs {
            let here = live.iter().find(|g| g.key.namespace == *namespace && g.key.name == def.name && g.def == *def);
            let j = match (here, from_peers.remove(&(namespace.clone(), def.name.clone()))) {
                (Some(g), _) => group_json(namespace, def, Some(g), default_interval, filter),
                (None, Some(peer)) => peer,
                (None, None) => group_json(namespace, def, None, default_interval, filter),
            };
            groups.push(j);
        }
    }
    Ok(success(json!({"groups": groups})))
}

async fn prometheus_alerts(State(app): State<App>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Answer {
    let (r, tenant) = context(&app, &headers)?;
    let mut alerts: Vec<Json> = Vec::new();
    for g in r.running_groups().into_iter().filter(|g| g.key.tenant == tenant) {
        for rt in g.rules.lock().iter() {
            if let RuleKind::Alerting(a) = &rt.kind {
                alerts.extend(a.active.values().filter(|al| al.state != AlertState::Inactive).map(alert_json));
            }
        }
    }
    if !is_local(&raw) {
        for answer in peer_groups(r, &headers, "/prometheus/api/v1/alerts?local=true").await {
            alerts.extend(answer["data"]["alerts"].as_array().cloned().unwrap_or_default());
        }
    }
    Ok(success(json!({"alerts": alerts})))
}

/// Prometheus' success envelope.
fn success(data: Json) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}
