//! The querier's side of the frontend: workers that pull jobs and run them on the querier.
//!
//! - [`run_remote`]: a querier with `frontend_worker.frontend_address` resolves the address
//!   every `dns_lookup_duration` and keeps `querier.max_concurrent` gRPC streams spread over the
//!   frontends it finds (at least one each), reconnecting with backoff. A frontend that
//!   disappears from DNS has its streams closed; a new one gets its share.
//! - [`spawn_local`]: in a process that runs both a frontend and a querier (`all`), workers take
//!   jobs from the frontend's queue directly, without gRPC.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Endpoint;

use super::Frontend;
use super::config::FrontendWorkerConfig;
use super::job::{Job, SubError, execute};
use super::proto::{FrontendToQuerier, QuerierToFrontend, answer};
use super::rpc::PROCESS_PATH;
use crate::error::ErrorKind;
use crate::querier::Querier;

/// First wait after a failed connection; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Jobs a querier's workers ran (`norn_querier_worker_jobs_total`).
pub fn jobs_counter(metrics: &crate::metrics::Metrics) -> Counter {
    let c = Counter::default();
    metrics.register("querier_worker_jobs", "Sub-queries of query frontends this querier ran", c.clone());
    c
}

/// Starts `n` in-process workers taking jobs from `frontend`'s queue as querier `id`.
pub fn spawn_local(frontend: &Frontend, querier: Querier, id: &str, n: usize, jobs: Counter, stop: CancellationToken) {
    for _ in 0..n.max(1) {
        let mut conn = frontend.queue().connect(id);
        let (querier, stop, jobs) = (querier.clone(), stop.clone(), jobs.clone());
        tokio::spawn(async move {
            loop {
                let pending = tokio::select! {
                    p = conn.next() => match p {
                        Some(p) => p,
                        None => return,
                    },
                    _ = stop.cancelled() => return,
                };
                jobs.inc();
                tokio::select! {
                    r = execute(&querier, &pending.job) => {
                        let _ = pending.reply.send(r);
                    }
                    _ = pending.cancel.cancelled() => {}
                }
            }
        });
    }
}

/// Keeps `concurrency` streams to the frontends at `cfg.frontend_address` until `stop`.
pub async fn run_remote(
    cfg: FrontendWorkerConfig,
    querier: Querier,
    id: String,
    concurrency: usize,
    max_msg_size: usize,
    jobs: Counter,
    stop: CancellationToken,
) {
    // Per frontend address: the token that stops its streams, and how many it runs.
    let mut running: BTreeMap<SocketAddr, (CancellationToken, usize)> = BTreeMap::new();
    loop {
        match tokio::net::lookup_host(cfg.frontend_address.as_str()).await {
            Ok(found) => {
                let found: BTreeSet<SocketAddr> = found.collect();
                let per = (concurrency / found.len().max(1)).max(1);
                running.retain(|addr, (token, n)| {
                    let keep = found.contains(addr) && *n == per;
                    if !keep {
                        token.cancel();
                    }
                    keep
                });
                for addr in found {
                    if running.contains_key(&addr) {
                        continue;
                    }
                    let token = stop.child_token();
                    for _ in 0..per {
                        let worker = Worker {
                            querier: querier.clone(),
                            id: id.clone(),
                            max_msg_size,
                            tls: cfg.grpc_client_config.clone(),
                            jobs: jobs.clone(),
                        };
                        tokio::spawn(connection(addr, worker, token.clone()));
                    }
                    tracing::info!(frontend = %addr, streams = per, "querier pulling from a query frontend");
                    running.insert(addr, (token, per));
                }
            }
            Err(err) => tracing::warn!(address = %cfg.frontend_address, %err, "cannot resolve the query frontend"),
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.dns_lookup_duration.get()) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// What a remote worker runs jobs with.
struct Worker {
    querier: Querier,
    id: String,
    max_msg_size: usize,
    tls: crate::tls::ClientTlsConfig,
    jobs: Counter,
}

/// One stream to a frontend, reconnected with backoff until `stop`.
async fn connection(addr: SocketAddr, worker: Worker, stop: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    while !stop.is_cancelled() {
        match session(addr, &worker, &stop).await {
            Ok(()) => backoff = MIN_BACKOFF,
            Err(err) => {
                tracing::debug!(frontend = %addr, %err, "query frontend stream ended");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Connects, registers and runs jobs until the stream ends.
async fn session(addr: SocketAddr, worker: &Worker, stop: &CancellationToken) -> Result<(), String> {
    let max_msg_size = worker.max_msg_size;
    let tls = &worker.tls;
    let endpoint = Endpoint::from_shared(format!("{}://{addr}", tls.scheme())).map_err(|e| e.to_string())?;
    let channel = tls
        .apply("frontend_worker.grpc_client_config", endpoint)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(max_msg_size)
        .max_encoding_message_size(max_msg_size);
    grpc.ready().await.map_err(|e| format!("connection not ready: {e}"))?;
    let (tx, rx) = mpsc::channel::<QuerierToFrontend>(4);
    tx.send(QuerierToFrontend { querier_id: worker.id.clone(), ..Default::default() })
        .await
        .map_err(|_| "stream closed".to_string())?;
    let outbound = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let codec = tonic_prost::ProstCodec::<QuerierToFrontend, FrontendToQuerier>::default();
    let mut inbound = grpc
        .streaming(tonic::Request::new(outbound), PathAndQuery::from_static(PROCESS_PATH), codec)
        .await
        .map_err(|s| format!("opening the stream: {s}"))?
        .into_inner();
    loop {
        let msg = tokio::select! {
            m = inbound.message() => m.map_err(|s| s.to_string())?,
            _ = stop.cancelled() => return Ok(()),
        };
        let Some(msg) = msg else { return Ok(()) };
        let Some(job) = msg.job else { continue }; // a cancel of a job already answered
        let id = msg.id;
        worker.jobs.inc();
        let run = async {
            match Job::try_from(job) {
                Ok(job) => execute(&worker.querier, &job).await,
                Err(e) => Err(SubError::new(ErrorKind::Invalid, e)),
            }
        };
        tokio::pin!(run);
        let outcome = loop {
            tokio::select! {
                r = &mut run => break r,
                m = inbound.message() => match m {
                    Ok(Some(m)) if m.cancel && m.id == id => {
                        break Err(SubError::new(ErrorKind::Unavailable, "cancelled by the query frontend"));
                    }
                    Ok(Some(_)) => continue,
                    // The frontend went away: nobody wants the answer.
                    Ok(None) => return Ok(()),
                    Err(s) => return Err(s.to_string()),
                },
                _ = stop.cancelled() => return Ok(()),
            }
        };
        tx.send(answer(id, &outcome)).await.map_err(|_| "stream closed".to_string())?;
    }
}
