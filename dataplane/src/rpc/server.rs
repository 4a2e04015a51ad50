//! The ingester's side of the service: `Push`, `Select`, `Series` and `Patterns` over an
//! [`Ingester`].

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};

use super::proto::{
    BlockMsg, PatternsRequest, PatternsResponse, PushRequest, PushResponse, SelectRequest, SelectResponse,
    SeriesRequest, SeriesResponse, StreamBlocksMsg, StreamDiscardMsg,
};
use super::{PATTERNS_PATH, PUSH_PATH, SELECT_PATH, SERIES_PATH, matcher_from_msg};
use crate::entry::{Entry, PushStream};
use crate::error::to_status;
use crate::ingester::Ingester;
use crate::ingester::read::MemoryStream;
use crate::labels::{Label, Labels};
use crate::logql::Matcher;

/// Block bytes per `Select` response message: big enough to amortize framing, small enough to
/// stream (and to stay far below any message size limit).
const SELECT_BATCH_BYTES: usize = 2 << 20;
/// Response messages a `Select` keeps ready ahead of the network.
const SELECT_BUFFER: usize = 4;

/// The ingester service, mounted on the gRPC server of a process that runs an ingester.
#[derive(Clone, Debug)]
pub struct IngesterService {
    ingester: Arc<Ingester>,
    /// Largest message received or sent.
    max_msg_size: usize,
}

impl IngesterService {
    pub fn new(ingester: Arc<Ingester>, max_msg_size: usize) -> Self {
        Self { ingester, max_msg_size }
    }

    fn grpc<C: tonic::codec::Codec>(&self, codec: C) -> Grpc<C> {
        Grpc::new(codec).max_decoding_message_size(self.max_msg_size).max_encoding_message_size(self.max_msg_size)
    }
}

impl NamedService for IngesterService {
    const NAME: &'static str = super::SERVICE;
}

impl tower::Service<http::Request<Body>> for IngesterService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let me = self.clone();
        match req.uri().path() {
            PUSH_PATH => Box::pin(async move {
                let mut grpc = me.grpc(tonic_prost::ProstCodec::<PushResponse, PushRequest>::default());
                Ok(grpc.unary(PushMethod(me.ingester.clone()), req).await)
            }),
            SELECT_PATH => Box::pin(async move {
                let mut grpc = me.grpc(tonic_prost::ProstCodec::<SelectResponse, SelectRequest>::default());
                Ok(grpc.server_streaming(SelectMethod(me.ingester.clone()), req).await)
            }),
            SERIES_PATH => Box::pin(async move {
                let mut grpc = me.grpc(tonic_prost::ProstCodec::<SeriesResponse, SeriesRequest>::default());
                Ok(grpc.unary(SeriesMethod(me.ingester.clone()), req).await)
            }),
            PATTERNS_PATH => Box::pin(async move {
                let mut grpc = me.grpc(tonic_prost::ProstCodec::<PatternsResponse, PatternsRequest>::default());
                Ok(grpc.unary(PatternsMethod(me.ingester.clone()), req).await)
            }),
            other => {
                let status = Status::unimplemented(format!("no method {other}"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// The streams of a push request as the ingester takes them.
pub(crate) fn push_streams(tenant: &str, req: PushRequest) -> Result<Vec<PushStream>, Status> {
    let mut out = Vec::with_capacity(req.streams.len());
    for s in req.streams {
        let labels = Labels::parse(&s.labels)
            .map_err(|e| Status::invalid_argument(format!("stream labels {:?}: {e}", s.labels)))?
            .sorted();
        let fingerprint = labels.fingerprint(tenant);
        let entries = s
            .entries
            .into_iter()
            .map(|e| Entry {
                ts: e.ts,
                line: e.line,
                metadata: e.metadata.into_iter().map(|p| Label::new(p.name, p.value)).collect(),
            })
            .collect();
        out.push(PushStream { labels: Arc::new(labels), fingerprint, entries });
    }
    Ok(out)
}

fn matchers(msgs: &[super::proto::MatcherMsg]) -> Result<Vec<Matcher>, Status> {
    msgs.iter().map(|m| matcher_from_msg(m).map_err(Status::invalid_argument)).collect()
}

/// A tenant ID arriving from another process passes the same check as one from a client: it
/// names WAL records and object-store paths.
fn check_tenant(tenant: &str) -> Result<(), Status> {
    crate::validation::validate_tenant_id(tenant).map_err(Status::invalid_argument)
}

struct PushMethod(Arc<Ingester>);

impl UnaryService<PushRequest> for PushMethod {
    type Response = PushResponse;
    type Future = BoxFuture<'static, Result<Response<PushResponse>, Status>>;

    fn call(&mut self, request: Request<PushRequest>) -> Self::Future {
        let ingester = self.0.clone();
        Box::pin(async move {
            let mut req = request.into_inner();
            let tenant = std::mem::take(&mut req.tenant);
            check_tenant(&tenant)?;
            let streams = push_streams(&tenant, req)?;
            let discards = ingester.push(&tenant, streams).await.map_err(|e| to_status(&e))?;
            let discards = discards
                .by_stream
                .into_iter()
                .map(|d| StreamDiscardMsg {
                    stream: d.stream as u32,
                    reason: d.reason.as_str().to_string(),
                    lines: d.lines,
                    bytes: d.bytes,
                    message: d.message.unwrap_or_default(),
                })
                .collect();
            Ok(Response::new(PushResponse { discards }))
        })
    }
}

struct SeriesMethod(Arc<Ingester>);

impl UnaryService<SeriesRequest> for SeriesMethod {
    type Response = SeriesResponse;
    type Future = BoxFuture<'static, Result<Response<SeriesResponse>, Status>>;

    fn call(&mut self, request: Request<SeriesRequest>) -> Self::Future {
        let ingester = self.0.clone();
        Box::pin(async move {
            let req = request.into_inner();
            check_tenant(&req.tenant)?;
            let matchers = matchers(&req.matchers)?;
            let series =
                tokio::task::spawn_blocking(move || ingester.series(&req.tenant, &matchers, req.from, req.through))
                    .await
                    .map_err(|e| Status::internal(format!("series task failed: {e}")))?;
            Ok(Response::new(SeriesResponse { series: series.iter().map(|l| l.to_string()).collect() }))
        })
    }
}

struct PatternsMethod(Arc<Ingester>);

impl UnaryService<PatternsRequest> for PatternsMethod {
    type Response = PatternsResponse;
    type Future = BoxFuture<'static, Result<Response<PatternsResponse>, Status>>;

    fn call(&mut self, request: Request<PatternsRequest>) -> Self::Future {
        let ingester = self.0.clone();
        Box::pin(async move {
            let req = request.into_inner();
            check_tenant(&req.tenant)?;
            let matchers = matchers(&req.matchers)?;
            // An ingester without a detector (pattern_ingester.enabled off) has no patterns.
            let patterns = match ingester.patterns() {
                Some(d) => d.stream_patterns(&req.tenant, &matchers, req.from, req.through),
                None => Vec::new(),
            };
            Ok(Response::new(PatternsResponse { patterns: patterns.into_iter().map(Into::into).collect() }))
        })
    }
}

struct SelectMethod(Arc<Ingester>);

type SelectStream = Pin<Box<dyn Stream<Item = Result<SelectResponse, Status>> + Send + 'static>>;

impl ServerStreamingService<SelectRequest> for SelectMethod {
    type Response = SelectResponse;
    type ResponseStream = SelectStream;
    type Future = BoxFuture<'static, Result<Response<SelectStream>, Status>>;

    fn call(&mut self, request: Request<SelectRequest>) -> Self::Future {
        let ingester = self.0.clone();
        Box::pin(async move {
            let req = request.into_inner();
            check_tenant(&req.tenant)?;
            let matchers = matchers(&req.matchers)?;
            let (tx, rx) = tokio::sync::mpsc::channel(SELECT_BUFFER);
            // Taking the blocks locks streams and copies head blocks: off the async workers.
            tokio::task::spawn_blocking(move || {
                let streams = ingester.stream_blocks(&req.tenant, &matchers, req.from, req.through, req.with_flushed);
                for batch in batches(streams, req.with_data) {
                    if tx.blocking_send(Ok(batch)).is_err() {
                        return; // the querier went away
                    }
                }
            });
            let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
            Ok(Response::new(Box::pin(stream) as SelectStream))
        })
    }
}

/// Streams' blocks in response messages of about [`SELECT_BATCH_BYTES`] each.
fn batches(streams: Vec<MemoryStream>, with_data: bool) -> impl Iterator<Item = SelectResponse> {
    let mut out = Vec::new();
    let mut current = SelectResponse::default();
    let mut size = 0usize;
    for s in streams {
        let labels = s.labels.to_string();
        let mut msg = StreamBlocksMsg { labels: labels.clone(), fingerprint: s.fingerprint, blocks: Vec::new() };
        for b in &s.blocks {
            let (meta, codec, data) = b.wire();
            let data = if with_data { data } else { bytes::Bytes::new() };
            size += data.len() + 64;
            msg.blocks.push(BlockMsg::new(&meta, codec, data));
            if size >= SELECT_BATCH_BYTES {
                let full = std::mem::replace(
                    &mut msg,
                    StreamBlocksMsg { labels: labels.clone(), fingerprint: s.fingerprint, blocks: Vec::new() },
                );
                current.streams.push(full);
                out.push(std::mem::take(&mut current));
                size = 0;
            }
        }
        if !msg.blocks.is_empty() {
            current.streams.push(msg);
        }
    }
    if !current.streams.is_empty() {
        out.push(current);
    }
    out.into_iter()
}
