//! Norn's data plane: a Loki-compatible log aggregation system.
//!
//! Every role (distributor, ingester, querier, query frontend) lives in this crate and is started
//! by [`server::serve`]; the `norn` binary only parses flags and configuration and calls it.

pub mod api;
pub mod chunk;
pub mod compactor;
pub mod config;
pub mod conformance;
pub mod distributor;
pub mod drilldown;
pub mod entry;
pub mod error;
pub mod etcd;
pub mod frontend;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingester;
pub mod labels;
pub mod limits;
pub mod logproto;
pub mod logql;
pub mod lru;
pub mod metrics;
pub mod otlp;
pub mod pattern;
pub mod querier;
pub mod query;
pub mod ratelimit;
pub mod ring;
pub mod rpc;
pub mod ruler;
pub mod server;
pub mod storage;
pub mod testing;
pub mod timeutil;
pub mod tls;
pub mod validation;
pub mod wal;
