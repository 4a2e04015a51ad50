//! The gRPC messages between roles (prost), decoded and turned into what the receiving side
//! works with: an ingester's `Push`, `Select`, `Series` and `Patterns` requests, a querier's
//! view of their answers (blocks decoded), the frontend ↔ querier job and result messages and
//! the results cache's entries, and the etcd client's responses.
//!
//! Input: byte 0 picks the message type; the rest is its encoding.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use norn::etcd::proto as etcd;
use norn::frontend::job::Job;
use norn::frontend::proto::{self as frontend, FrontendToQuerier, QuerierToFrontend};
use norn::labels::Labels;
use norn::rpc::matcher_from_msg;
use norn::rpc::proto::{PatternsResponse, PushRequest, SelectRequest, SelectResponse, SeriesRequest, SeriesResponse};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, msg)) = data.split_first() else { return };
    let msg = Bytes::copy_from_slice(msg);
    match kind % 10 {
        0 => {
            if let Ok(req) = PushRequest::decode(msg) {
                let tenant = if req.tenant.is_empty() { "fuzz".to_string() } else { req.tenant.clone() };
                let _ = norn::fuzzing::rpc_push_streams(&tenant, req);
            }
        }
        1 => {
            if let Ok(req) = SelectRequest::decode(msg) {
                req.matchers.iter().for_each(|m| drop(matcher_from_msg(m)));
            }
        }
        2 => {
            if let Ok(resp) = SelectResponse::decode(msg) {
                for s in resp.streams {
                    let _ = Labels::parse(&s.labels);
                    for b in s.blocks {
                        if let Ok(handle) = norn::fuzzing::rpc_block(b) {
                            let _ = handle.decode();
                        }
                    }
                }
            }
        }
        3 => {
            if let Ok(req) = SeriesRequest::decode(msg) {
                req.matchers.iter().for_each(|m| drop(matcher_from_msg(m)));
            }
        }
        4 => {
            if let Ok(resp) = SeriesResponse::decode(msg) {
                resp.series.iter().for_each(|s| drop(Labels::parse(s)));
            }
        }
        5 => {
            if let Ok(resp) = PatternsResponse::decode(msg) {
                resp.patterns.into_iter().for_each(|p| drop(norn::pattern::StreamPattern::from(p)));
            }
        }
        6 => {
            if let Ok(FrontendToQuerier { job: Some(job), .. }) = FrontendToQuerier::decode(msg) {
                let _ = Job::try_from(job);
            }
        }
        7 => {
            if let Ok(answer) = QuerierToFrontend::decode(msg) {
                let _ = frontend::outcome(answer);
            }
        }
        8 => {
            let _ = frontend::decode_response(&msg);
        }
        _ => {
            let _ = etcd::WatchResponse::decode(msg.clone());
            let _ = etcd::RangeResponse::decode(msg.clone());
            let _ = etcd::TxnResponse::decode(msg);
        }
    }
});
