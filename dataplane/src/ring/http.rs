//! The `/ring` page: every instance of a ring as an HTML table or JSON, and a forget action for
//! unhealthy instances.
//!
//! - `GET /ring`: HTML, or JSON with `Accept: application/json` or `?format=json`
//!   (`?tokens=true` adds each instance's tokens to the JSON).
//! - `POST /ring` with the form field `forget=<id>`: removes an UNHEALTHY instance. A browser
//!   form post is answered with a redirect back to the page (303); a client that accepts JSON
//!   gets `{"status":"forgotten","id":...}`. Forgetting a healthy instance is refused with 400,
//!   an unknown one with 404.
//!
//! The handlers take their [`RingPage`] as axum state; [`routes`] mounts both on a path (e.g.
//! `/ring` for the ingesters and `/distributor/ring` for the distributors).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::RingError;
use super::client::RingClient;
use super::model::{InstanceView, view};
use crate::error::HasKind;

/// What the page shows.
#[derive(Debug, Clone)]
pub struct RingPage {
    /// The ring.
    pub client: Arc<RingClient>,
    /// Heading of the HTML page ("Ingester ring").
    pub title: String,
    /// The path the page is mounted at, for the form action and redirects.
    pub path: String,
}

/// `GET` and `POST` of `page` on `page.path`.
pub fn routes(page: RingPage) -> Router {
    let path = page.path.clone();
    Router::new().route(&path, get(get_ring).post(post_ring)).with_state(Arc::new(page))
}

/// Query parameters of `GET /ring`.
#[derive(Debug, Default, Deserialize)]
pub struct RingQuery {
    /// `json` for JSON whatever the `Accept` header says.
    #[serde(default)]
    pub format: Option<String>,
    /// Include tokens in the JSON.
    #[serde(default)]
    pub tokens: bool,
}

/// The JSON body of `GET /ring?format=json`.
#[derive(Debug, Serialize)]
pub struct RingJson {
    /// Every instance, by zone then ID.
    pub shards: Vec<InstanceView>,
    /// The ring's key in the store.
    pub key: String,
    /// The store version of this view (0: nothing read yet).
    pub version: u64,
    /// Whether the client's watch is up; false means the view may be stale.
    pub connected: bool,
    /// Replicas per key after clipping to the ring's size.
    pub effective_replication_factor: usize,
    /// Server time of the view, ms since the epoch.
    pub now_ms: i64,
}

fn wants_json(q: &RingQuery, headers: &HeaderMap) -> bool {
    if let Some(f) = &q.format {
        return f.eq_ignore_ascii_case("json");
    }
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

/// `GET /ring`.
pub async fn get_ring(State(page): State<Arc<RingPage>>, Query(q): Query<RingQuery>, headers: HeaderMap) -> Response {
    let client = &page.client;
    let ring = client.view();
    let now = client.health_now_ms();
    let timeout = client.replication_config().heartbeat_timeout;
    let shards = view(&ring.desc, now, timeout, q.tokens);
    if wants_json(&q, &headers) {
        let body = RingJson {
            shards,
            key: client.key().to_string(),
            version: ring.version,
            connected: client.is_connected(),
            effective_replication_factor: ring.snapshot.effective_replication_factor(),
            now_ms: now,
        };
        return axum::Json(body).into_response();
    }
    let html = render_html(&page, &shards, ring.snapshot.effective_replication_factor(), client.is_connected(), now);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// The form of `POST /ring`.
#[derive(Debug, Deserialize)]
pub struct ForgetForm {
    /// The instance to forget.
    pub forget: String,
}

/// `POST /ring` with `forget=<id>`.
pub async fn post_ring(
    State(page): State<Arc<RingPage>>,
    headers: HeaderMap,
    Form(form): Form<ForgetForm>,
) -> Response {
    let json = wants_json(&RingQuery::default(), &headers);
    match page.client.forget(&form.forget).await {
        Ok(()) if json => axum::Json(serde_json::json!({"status": "forgotten", "id": form.forget})).into_response(),
        Ok(()) => Redirect::to(&page.path).into_response(),
        Err(e) => {
            let status = match &e {
                RingError::Invalid(_) => StatusCode::BAD_REQUEST,
                other => other.kind().http_status(),
            };
            if status.is_server_error() {
                tracing::warn!(id = %form.forget, err = %e, "forgetting a ring instance failed");
            }
            (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{e}\n")).into_response()
        }
    }
}

/// The HTML page.
fn render_html(page: &RingPage, shards: &[InstanceView], rf: usize, connected: bool, now: i64) -> String {
    let mut out = String::with_capacity(1024 + shards.len() * 512);
    let title = escape(&page.title);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}\
         tr.unhealthy{{background:#fdd}}</style></head><body>\n<h1>{title}</h1>\n"
    );
    let _ = writeln!(
        out,
        "<p>Now: {} &middot; instances: {} &middot; effective replication factor: {rf}{}</p>",
        escape(&model_time(now)),
        shards.len(),
        if connected { "" } else { " &middot; <b>ring store unreachable: showing the last view</b>" }
    );
    out.push_str(
        "<table>\n<thead><tr><th>Instance ID</th><th>Zone</th><th>State</th><th>Address</th>\
         <th>Registered</th><th>Last heartbeat</th><th>Tokens</th><th>Ownership</th><th>Actions</th></tr></thead>\n<tbody>\n",
    );
    let action = escape(&page.path);
    for s in shards {
        let class = if s.healthy { "" } else { " class=\"unhealthy\"" };
        let _ = write!(
            out,
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({}s ago)</td>\
             <td>{}</td><td>{:.2}%</td><td>",
            escape(&s.id),
            escape(&s.zone),
            escape(&s.state),
            escape(&s.address),
            escape(&s.registered),
            escape(&s.heartbeat),
            s.heartbeat_age_ms / 1000,
            s.num_tokens,
            s.ownership_percent,
        );
        if !s.healthy {
            let _ = write!(
                out,
                "<form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"forget\" value=\"{}\">\
                 <button type=\"submit\">Forget</button></form>",
                escape(&s.id)
            );
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody></table>\n</body></html>\n");
    out
}

fn model_time(ms: i64) -> String {
    crate::timeutil::format_rfc3339(ms.saturating_mul(1_000_000))
}

/// Escapes text for HTML content and attribute values: instance IDs, addresses and zones come
/// from the KV store, which any instance writes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
