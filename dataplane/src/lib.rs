//! Norn's data plane: a Loki-compatible log aggregation system.
//!
//! Every role (distributor, ingester, querier, query frontend) lives in this crate and is started
//! by [`server::serve`]; the `norn` binary only parses flags and configuration and calls it.

pub mod entry;
pub mod labels;
