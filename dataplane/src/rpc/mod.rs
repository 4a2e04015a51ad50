//! gRPC between the roles: the ingester service that distributors push to and queriers read
//! from. Ingesters never call each other.
//!
//! | method | caller | what |
//! |---|---|---|
//! | `Push` (unary) | distributor | store validated streams; answers once they are in the WAL |
//! | `Select` (server streaming) | querier | blocks of the streams matching a selector in a time range |
//! | `Series` (unary) | querier | label sets of matching streams (labels, label values, series) |
//! | `Patterns` (unary) | querier | the pattern detector's templates of matching streams, counts per bucket |
//!
//! The service is written by hand over tonic's `Grpc` helpers rather than generated from a
//! `.proto` file: the messages are prost derives ([`proto`]) like the rest of Norn's wire types,
//! and the distributor sends each push as bytes it assembled itself — every stream encoded once
//! and the same bytes concatenated into each replica's request ([`codec::PreEncoded`]).
//!
//! Errors cross as gRPC statuses whose code comes from the component error's
//! [`ErrorKind`](crate::error::ErrorKind) ([`crate::error::to_status`]) and turn back into a kind
//! on the calling side ([`RpcError::kind`]), so a stopping ingester (`UNAVAILABLE`) stays
//! distinguishable from a bug (`INTERNAL`).

pub mod client;
pub mod codec;
pub mod proto;
pub mod server;

pub use client::{ClientConfig, IngesterClient, IngesterPool};
pub use server::IngesterService;

use crate::error::{ErrorKind, HasKind};

/// The service name on the wire.
pub const SERVICE: &str = "norn.ingester.v1.Ingester";
/// Path of `Push`.
pub const PUSH_PATH: &str = "/norn.ingester.v1.Ingester/Push";
/// Path of `Select`.
pub const SELECT_PATH: &str = "/norn.ingester.v1.Ingester/Select";
/// Path of `Series`.
pub const SERIES_PATH: &str = "/norn.ingester.v1.Ingester/Series";
/// Path of `Patterns`.
pub const PATTERNS_PATH: &str = "/norn.ingester.v1.Ingester/Patterns";

/// A call to an ingester failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("ingester {addr}: {message}")]
pub struct RpcError {
    /// The ingester's address.
    pub addr: String,
    /// What kind of failure the ingester (or the transport) reported.
    pub kind: ErrorKind,
    /// Its message.
    pub message: String,
}

impl RpcError {
    /// An error from a gRPC status of the call to `addr`.
    pub fn from_status(addr: &str, status: &tonic::Status) -> Self {
        let message =
            if status.message().is_empty() { format!("{:?}", status.code()) } else { status.message().into() };
        Self { addr: addr.to_string(), kind: ErrorKind::from_grpc_code(status.code()), message }
    }
}

impl HasKind for RpcError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// The wire form of a label matcher.
pub fn matcher_to_msg(m: &crate::logql::Matcher) -> proto::MatcherMsg {
    use crate::logql::MatchOp;
    let op = match m.op {
        MatchOp::Eq => 0,
        MatchOp::Neq => 1,
        MatchOp::Re => 2,
        MatchOp::Nre => 3,
    };
    proto::MatcherMsg { name: m.name.clone(), op, value: m.value.clone() }
}

/// A label matcher from its wire form; an unknown operator or a bad regex is an error.
pub fn matcher_from_msg(m: &proto::MatcherMsg) -> Result<crate::logql::Matcher, String> {
    use crate::logql::MatchOp;
    let op = match m.op {
        0 => MatchOp::Eq,
        1 => MatchOp::Neq,
        2 => MatchOp::Re,
        3 => MatchOp::Nre,
        other => return Err(format!("unknown matcher operator {other}")),
    };
    crate::logql::Matcher::new(m.name.clone(), op, m.value.clone()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
