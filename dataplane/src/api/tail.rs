//! `GET /loki/api/v1/tail`: live log lines over a WebSocket.
//!
//! The connection first receives the entries since `start` (up to `limit`), then, every
//! [`POLL`], the entries that arrived since the last one sent, `delay_for` seconds behind now so
//! late pushes within the delay are not skipped. Each message is Loki's tail frame:
//! `{"streams":[{"stream":{...},"values":[["<ns>","<line>"]]}],"dropped_entries":null}`.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::encode::{self, LabelEncoding};
use super::params::{self, Params};
use super::{bad, querier, read_tenants};
use crate::entry::Direction;
use crate::logql::{self, Expr};
use crate::query::{QueryParams, Value};
use crate::server::app::{ApiError, App};
use crate::timeutil::now_nanos;

/// How often a tail looks for new entries.
const POLL: Duration = Duration::from_millis(500);
/// Loki's ceiling on `delay_for`, in seconds.
const MAX_DELAY_FOR: i64 = 5;

pub(super) async fn tail(
    ws: WebSocketUpgrade,
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    match prepare(&app, &headers, raw) {
        Ok(t) => ws.on_upgrade(move |socket| run(socket, app, t)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A validated tail request.
struct Tail {
    tenants: Vec<String>,
    query: String,
    start: i64,
    delay: i64,
    limit: usize,
}

fn prepare(app: &App, headers: &HeaderMap, raw: Option<String>) -> Result<Tail, ApiError> {
    querier(app)?;
    let tenants = read_tenants(app, headers)?;
    let mut p = Params::default();
    if let Some(q) = raw {
        p.extend_urlencoded(q.as_bytes());
    }
    let query = params::query(&p).map_err(bad)?.to_string();
    match logql::parse_expr(&query) {
        Ok(Expr::Log(_)) => {}
        Ok(Expr::Sample(_)) => return Err(bad("tailing is only supported for log queries")),
        Err(e) => return Err(bad(e.to_string())),
    }
    let delay: i64 = p
        .get("delay_for")
        .map(|d| d.parse().map_err(|_| bad(format!("cannot parse \"{d}\" to a valid delay_for"))))
        .transpose()?
        .unwrap_or(0);
    if !(0..=MAX_DELAY_FOR).contains(&delay) {
        return Err(bad(format!("delay_for can't be greater than {MAX_DELAY_FOR}")));
    }
    let start = p
        .get("start")
        .map(params::parse_time)
        .transpose()
        .map_err(bad)?
        .unwrap_or_else(|| now_nanos() - params::DEFAULT_SINCE_NS);
    let limit = match p.get("limit") {
        Some(l) => l.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| bad("limit must be a positive value"))?,
        None => params::DEFAULT_LIMIT,
    };
    Ok(Tail { tenants, query, start, delay: delay * 1_000_000_000, limit })
}

async fn run(mut socket: WebSocket, app: App, t: Tail) {
    let Some(q) = app.querier.clone() else { return };
    let mut from = t.start;
    // Lines already sent at `from`, so an entry at the boundary is sent once.
    let mut sent_at_from: HashSet<(String, Vec<u8>)> = HashSet::new();
    let mut first = true;
    // Later polls take everything new, as much as one query may return; a poll cut short by
    // that continues from its newest entry on the next one.
    let batch = q.max_entries(&t.tenants);
    loop {
        let end = now_nanos() - t.delay;
        if end > from {
            let qp = QueryParams {
                start: from,
                end,
                step: 1,
                interval: 0,
                direction: Direction::Forward,
                limit: if first { t.limit } else { batch },
                instant: false,
            };
            first = false;
            let out = match q.query(&t.tenants, &t.query, &qp).await {
                Ok(o) => o,
                Err(e) => {
                    let _ = socket
                        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                            code: 1011,
                            reason: e.to_string().into(),
                        })))
                        .await;
                    return;
                }
            };
            if let Value::Streams(mut streams) = out.value {
                let mut newest = from;
                for s in &mut streams {
                    let key = s.labels.to_string();
                    s.entries.retain(|e| !(e.ts == from && sent_at_from.contains(&(key.clone(), e.line.to_vec()))));
                    newest = newest.max(s.entries.iter().map(|e| e.ts).max().unwrap_or(from));
                }
                streams.retain(|s| !s.entries.is_empty());
                if !streams.is_empty() {
                    if newest > from {
                        sent_at_from.clear();
                    }
                    for s in &streams {
                        for e in s.entries.iter().filter(|e| e.ts == newest) {
                            sent_at_from.insert((s.labels.to_string(), e.line.to_vec()));
                        }
                    }
                    from = newest;
                    let mut body = String::from("{\"streams\":");
                    encode::write_streams(&mut body, &streams, LabelEncoding::Flat);
                    body.push_str(",\"dropped_entries\":null}");
                    if socket.send(Message::Text(body.into())).await.is_err() {
                        return;
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
