//! The frontend's gRPC service: queriers open a `Process` stream per worker, say who they are,
//! and from then on the frontend sends jobs down the stream and the querier sends answers up,
//! one job at a time per stream.
//!
//! | message | direction | what |
//! |---|---|---|
//! | `QuerierToFrontend { querier_id }` | ↑ first | registers the connection with the queue |
//! | `FrontendToQuerier { id, job }` | ↓ | a job to run |
//! | `FrontendToQuerier { id, cancel }` | ↓ | the request went away: stop job `id` |
//! | `QuerierToFrontend { id, result \| error }` | ↑ | the answer |
//!
//! A stream that breaks while a job runs (the querier was killed, the network failed) puts the
//! job back at the head of its tenant's queue, up to `query_range.max_retries` times.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};

use super::Frontend;
use super::job::SubError;
use super::proto::{FrontendToQuerier, JobMsg, QuerierToFrontend, outcome};
use super::queue::Pending;
use crate::error::ErrorKind;

/// The service name on the wire.
pub const SERVICE: &str = "norn.frontend.v1.Frontend";
/// Path of `Process`.
pub const PROCESS_PATH: &str = "/norn.frontend.v1.Frontend/Process";

/// The frontend service, mounted on the gRPC server of a process that runs a query frontend.
#[derive(Clone, Debug)]
pub struct FrontendService {
    frontend: Frontend,
    max_msg_size: usize,
}

impl FrontendService {
    pub fn new(frontend: Frontend, max_msg_size: usize) -> Self {
        Self { frontend, max_msg_size }
    }
}

impl NamedService for FrontendService {
    const NAME: &'static str = SERVICE;
}

impl tower::Service<http::Request<Body>> for FrontendService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let me = self.clone();
        match req.uri().path() {
            PROCESS_PATH => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<FrontendToQuerier, QuerierToFrontend>::default();
                let mut grpc = Grpc::new(codec)
                    .max_decoding_message_size(me.max_msg_size)
                    .max_encoding_message_size(me.max_msg_size);
                Ok(grpc.streaming(ProcessMethod(me.frontend.clone()), req).await)
            }),
            other => {
                let status = Status::unimplemented(format!("no method {other}"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

struct ProcessMethod(Frontend);

type JobStream = Pin<Box<dyn Stream<Item = Result<FrontendToQuerier, Status>> + Send + 'static>>;

impl StreamingService<QuerierToFrontend> for ProcessMethod {
    type Response = FrontendToQuerier;
    type ResponseStream = JobStream;
    type Future = BoxFuture<'static, Result<Response<JobStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<QuerierToFrontend>>) -> Self::Future {
        let frontend = self.0.clone();
        Box::pin(async move {
            let mut inbound = request.into_inner();
            let hello = inbound.message().await?.ok_or_else(|| Status::invalid_argument("no querier id"))?;
            if hello.querier_id.is_empty() {
                return Err(Status::invalid_argument("the first message must name the querier"));
            }
            let (tx, rx) = mpsc::channel(2);
            tokio::spawn(serve(frontend, hello.querier_id, inbound, tx));
            let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
            Ok(Response::new(Box::pin(stream) as JobStream))
        })
    }
}

/// Hands jobs to one querier connection until it goes away.
async fn serve(
    frontend: Frontend,
    querier: String,
    mut inbound: Streaming<QuerierToFrontend>,
    tx: mpsc::Sender<Result<FrontendToQuerier, Status>>,
) {
    let mut conn = frontend.queue().connect(&querier);
    tracing::debug!(querier, "querier connected to the query frontend");
    let mut next_id = 0u64;
    loop {
        // Wait for work, noticing meanwhile a querier that goes away.
        let pending = tokio::select! {
            p = conn.next() => match p {
                Some(p) => p,
                None => return,
            },
            msg = inbound.message() => match msg {
                Ok(Some(_)) => continue, // a late answer to a cancelled job
                Ok(None) | Err(_) => break,
            },
        };
        next_id += 1;
        let id = next_id;
        let msg = FrontendToQuerier { id, job: Some(JobMsg::from(&pending.job)), cancel: false };
        if tx.send(Ok(msg)).await.is_err() {
            retry(&frontend, pending, &querier);
            break;
        }
        let mut cancel_sent = false;
        let answer = loop {
            tokio::select! {
                msg = inbound.message() => match msg {
                    Ok(Some(m)) if m.id == id => break Some(outcome(m)),
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break None,
                },
                _ = pending.cancel.cancelled(), if !cancel_sent => {
                    cancel_sent = true;
                    let _ = tx.send(Ok(FrontendToQuerier { id, job: None, cancel: true })).await;
                }
            }
        };
        match answer {
            Some(result) => {
                let _ = pending.reply.send(result);
            }
            None => {
                retry(&frontend, pending, &querier);
                break;
            }
        }
    }
    tracing::debug!(querier, "querier disconnected from the query frontend");
}

/// A job whose querier went away: queued again, or failed after `max_retries` attempts.
fn retry(frontend: &Frontend, mut pending: Pending, querier: &str) {
    if !pending.wanted() {
        return;
    }
    pending.attempts += 1;
    if pending.attempts > frontend.max_retries() {
        let msg = format!(
            "the sub-query failed {} times: its querier went away each time (last: {querier})",
            pending.attempts
        );
        let _ = pending.reply.send(Err(SubError::new(ErrorKind::Unavailable, msg)));
        return;
    }
    tracing::warn!(querier, attempt = pending.attempts, "querier went away during a sub-query; queueing it again");
    frontend.retried();
    let key = pending.job.tenants.join("|");
    let max_queriers = pending.max_queriers;
    frontend.queue().requeue(&key, pending, max_queriers);
}
