//! Push validation with Loki's limits, reasons and error texts.
//!
//! Invalid streams and entries are dropped and reported; everything else goes on. The reason
//! names are the `reason` label of `norn_discarded_samples_total` / `_bytes_total`, the same
//! values Loki uses, so existing dashboards and alerts keep working.

use std::sync::Arc;

use crate::distributor::decode::{RawLabels, RawPush};
use crate::entry::{Entry, PushStream};
use crate::labels::{Labels, is_valid_label_name};
use crate::limits::Limits;
use crate::timeutil::format_rfc3339;

/// Why an entry was discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    InvalidLabels,
    MissingLabels,
    MaxLabelNamesPerSeries,
    LabelNameTooLong,
    LabelValueTooLong,
    DuplicateLabelNames,
    GreaterThanMaxSampleAge,
    TooFarInFuture,
    LineTooLong,
    DisallowedStructuredMetadata,
    StructuredMetadataTooLarge,
    StructuredMetadataTooMany,
    RateLimited,
    StreamLimit,
    PerStreamRateLimit,
    TooFarBehind,
    OutOfOrder,
    RequestBodyTooLarge,
}

impl Reason {
    /// Loki's name for the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidLabels => "invalid_labels",
            Reason::MissingLabels => "missing_labels",
            Reason::MaxLabelNamesPerSeries => "max_label_names_per_series",
            Reason::LabelNameTooLong => "label_name_too_long",
            Reason::LabelValueTooLong => "label_value_too_long",
            Reason::DuplicateLabelNames => "duplicate_label_names",
            Reason::GreaterThanMaxSampleAge => "greater_than_max_sample_age",
            Reason::TooFarInFuture => "too_far_in_future",
            Reason::LineTooLong => "line_too_long",
            Reason::DisallowedStructuredMetadata => "disallowed_structured_metadata",
            Reason::StructuredMetadataTooLarge => "structured_metadata_too_large",
            Reason::StructuredMetadataTooMany => "structured_metadata_too_many",
            Reason::RateLimited => "rate_limited",
            Reason::StreamLimit => "stream_limit",
            Reason::PerStreamRateLimit => "per_stream_rate_limit",
            Reason::TooFarBehind => "too_far_behind",
            Reason::OutOfOrder => "out_of_order",
            Reason::RequestBodyTooLarge => "request_body_too_large",
        }
    }

    /// Every reason.
    pub const ALL: [Reason; 18] = [
        Reason::InvalidLabels,
        Reason::MissingLabels,
        Reason::MaxLabelNamesPerSeries,
        Reason::LabelNameTooLong,
        Reason::LabelValueTooLong,
        Reason::DuplicateLabelNames,
        Reason::GreaterThanMaxSampleAge,
        Reason::TooFarInFuture,
        Reason::LineTooLong,
        Reason::DisallowedStructuredMetadata,
        Reason::StructuredMetadataTooLarge,
        Reason::StructuredMetadataTooMany,
        Reason::RateLimited,
        Reason::StreamLimit,
        Reason::PerStreamRateLimit,
        Reason::TooFarBehind,
        Reason::OutOfOrder,
        Reason::RequestBodyTooLarge,
    ];

    /// The reason Loki calls `name` ([`Reason::as_str`]).
    pub fn from_name(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// Lines and bytes dropped for one reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub lines: u64,
    pub bytes: u64,
}

/// Everything dropped from one push, and the messages to report.
#[derive(Debug, Default)]
pub struct Discards {
    pub by_reason: Vec<(Reason, Dropped)>,
    /// One message per problem, in request order.
    pub messages: Vec<String>,
    /// The same drops by the position of their stream in the push, when the ingester reports
    /// them: a distributor that sent a stream to several replicas reports each stream's drops
    /// once, from one replica.
    pub by_stream: Vec<StreamDiscard>,
}

/// What was dropped of one stream of a push, for one reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamDiscard {
    /// Position of the stream in the push.
    pub stream: usize,
    pub reason: Reason,
    pub lines: u64,
    pub bytes: u64,
    pub message: Option<String>,
}

impl Discards {
    pub fn add(&mut self, reason: Reason, lines: u64, bytes: u64, message: Option<String>) {
        match self.by_reason.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, d)) => {
                d.lines += lines;
                d.bytes += bytes;
            }
            None => self.by_reason.push((reason, Dropped { lines, bytes })),
        }
        if let Some(m) = message {
            self.messages.push(m);
        }
    }

    /// Records a drop of stream `stream` of the push (see [`Discards::by_stream`]).
    pub fn add_stream(&mut self, stream: usize, reason: Reason, lines: u64, bytes: u64, message: Option<String>) {
        self.by_stream.push(StreamDiscard { stream, reason, lines, bytes, message: message.clone() });
        self.add(reason, lines, bytes, message);
    }

    pub fn is_empty(&self) -> bool {
        self.by_reason.is_empty()
    }

    pub fn merge(&mut self, other: Discards) {
        for (r, d) in other.by_reason {
            self.add(r, d.lines, d.bytes, None);
        }
        self.messages.extend(other.messages);
    }

    /// The response body: each message on its own line, at most `max` of them.
    pub fn render(&self, max: usize) -> String {
        let mut out = self.messages.iter().take(max).cloned().collect::<Vec<_>>().join("\n");
        if self.messages.len() > max {
            out.push_str(&format!("\n(and {} more errors)", self.messages.len() - max));
        }
        out
    }
}

/// The valid part of a push.
#[derive(Debug, Default)]
pub struct Validated {
    pub streams: Vec<PushStream>,
    pub lines: u64,
    pub bytes: u64,
}

/// Validates a decoded push for `tenant` at time `now` (ns).
pub fn validate(tenant: &str, push: RawPush, limits: &Limits, now: i64) -> (Validated, Discards) {
    let mut out = Validated::default();
    let mut discards = Discards::default();
    let oldest = now.saturating_sub(limits.reject_old_samples_max_age.as_nanos_i64());
    let newest = now.saturating_add(limits.creation_grace_period.as_nanos_i64());
    let max_line = limits.max_line_size.as_usize();
    let max_meta = limits.max_structured_metadata_size.as_usize();
    for stream in push.streams {
        let lines = stream.entries.len() as u64;
        let bytes: u64 = stream.entries.iter().map(|e| e.size() as u64).sum();
        let labels = match stream_labels(stream.labels, limits) {
            Ok(l) => l,
            Err((reason, msg)) => {
                discards.add(reason, lines, bytes, Some(msg));
                continue;
            }
        };
        // Messages name the stream as the client sent it.
        let shown = labels.to_string();
        let labels = crate::distributor::discover::service_name(labels, &limits.discover_service_name);
        let mut entries = Vec::with_capacity(stream.entries.len());
        for mut e in stream.entries {
            let size = e.size() as u64;
            let problem = if limits.reject_old_samples && e.ts < oldest {
                Some((
                    Reason::GreaterThanMaxSampleAge,
                    format!(
                        "entry for stream '{shown}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                        format_rfc3339(e.ts),
                        format_rfc3339(oldest)
                    ),
                ))
            } else if e.ts > newest {
                Some((
                    Reason::TooFarInFuture,
                    format!("entry for stream '{shown}' has timestamp too new: {}", format_rfc3339(e.ts)),
                ))
            } else if e.line.len() > max_line && !limits.max_line_size_truncate {
                Some((
                    Reason::LineTooLong,
                    format!(
                        "Max entry size '{max_line}' bytes exceeded for stream '{shown}' while adding an entry with length '{}' bytes",
                        e.line.len()
                    ),
                ))
            } else {
                metadata_problem(&e, &shown, limits, max_meta)
            };
            if let Some((reason, msg)) = problem {
                discards.add(reason, 1, size, Some(msg));
                continue;
            }
            if e.line.len() > max_line {
                e.line.truncate(max_line);
            }
            if limits.discover_log_levels {
                crate::distributor::discover::detect_level(&labels, &mut e);
            }
            out.lines += 1;
            out.bytes += e.size() as u64;
            entries.push(e);
        }
        if entries.is_empty() {
            continue;
        }
        let fingerprint = labels.fingerprint(tenant);
        out.streams.push(PushStream { labels: Arc::new(labels), fingerprint, entries });
    }
    (out, discards)
}

fn metadata_problem(e: &Entry, shown: &str, limits: &Limits, max_meta: usize) -> Option<(Reason, String)> {
    if e.metadata.is_empty() {
        return None;
    }
    if !limits.allow_structured_metadata {
        return Some((
            Reason::DisallowedStructuredMetadata,
            format!(
                "stream '{shown}' includes structured metadata, but this feature is disallowed. Please see `limits_config.allow_structured_metadata` or contact your Loki administrator to enable it."
            ),
        ));
    }
    let size: usize = e.metadata.iter().map(|l| l.name.len() + l.value.len()).sum();
    if max_meta > 0 && size > max_meta {
        return Some((
            Reason::StructuredMetadataTooLarge,
            format!(
                "stream '{shown}' has structured metadata too large: '{size}' bytes, limit: '{max_meta}' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it."
            ),
        ));
    }
    let count = e.metadata.len();
    let max_count = limits.max_structured_metadata_entries_count;
    if max_count > 0 && count > max_count {
        return Some((
            Reason::StructuredMetadataTooMany,
            format!(
                "stream '{shown}' has too many structured metadata labels: '{count}', limit: '{max_count}'. Please see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it."
            ),
        ));
    }
    None
}

/// Parses and validates a stream's labels, returning them sorted.
fn stream_labels(raw: RawLabels, limits: &Limits) -> Result<Labels, (Reason, String)> {
    let labels = match raw {
        RawLabels::Text(bytes) => {
            let text = match std::str::from_utf8(&bytes) {
                Ok(t) => t,
                Err(_) => {
                    let shown = String::from_utf8_lossy(&bytes);
                    return Err((
                        Reason::InvalidLabels,
                        format!("Error parsing labels '{shown}' with error: invalid UTF-8 in label set"),
                    ));
                }
            };
            Labels::parse(text)
                .map_err(|e| (Reason::InvalidLabels, format!("Error parsing labels '{text}' with error: {e}")))?
        }
        RawLabels::Map(pairs) => {
            let labels = Labels::from_pairs(pairs);
            if let Some(bad) = labels.iter().find(|l| !is_valid_label_name(&l.name)) {
                return Err((
                    Reason::InvalidLabels,
                    format!("Error parsing labels '{labels}' with error: invalid label name {:?}", bad.name),
                ));
            }
            labels
        }
    };
    if labels.is_empty() {
        return Err((Reason::MissingLabels, "error at least one label pair is required per stream".into()));
    }
    let labels = labels.sorted();
    let shown = labels.to_string();
    if labels.len() > limits.max_label_names_per_series {
        return Err((
            Reason::MaxLabelNamesPerSeries,
            format!(
                "entry for stream '{shown}' has {} label names; limit {}",
                labels.len(),
                limits.max_label_names_per_series
            ),
        ));
    }
    let mut prev: Option<&str> = None;
    for l in labels.iter() {
        if l.name.len() > limits.max_label_name_length {
            return Err((Reason::LabelNameTooLong, format!("stream '{shown}' has label name too long: '{}'", l.name)));
        }
        if l.value.len() > limits.max_label_value_length {
            return Err((
                Reason::LabelValueTooLong,
                format!("stream '{shown}' has label value too long: '{}'", l.value),
            ));
        }
        if prev == Some(l.name.as_str()) {
            return Err((
                Reason::DuplicateLabelNames,
                format!("stream '{shown}' has duplicate label name: '{}'", l.name),
            ));
        }
        prev = Some(&l.name);
    }
    Ok(labels)
}

/// Tenant IDs Loki accepts: 1..=150 bytes of `[A-Za-z0-9!-_.*'()]`, not `.` or `..`.
pub fn validate_tenant_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("no org id".into());
    }
    if id.len() > 150 {
        return Err(format!("tenant ID is too long: max 150 characters, got {}", id.len()));
    }
    if id == "." || id == ".." {
        return Err(format!("tenant ID is '{id}'"));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c))) {
        return Err(format!("tenant ID '{id}' contains unsupported character '{c}'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
