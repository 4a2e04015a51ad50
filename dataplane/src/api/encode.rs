//! Loki's JSON response shapes for query results.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::labels::{Label, Labels};
use crate::querier::QueryOutput;
use crate::query::Value;
use crate::query::value::StreamResult;

/// How log query results carry labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelEncoding {
    /// Every label (stream, structured metadata, parsed) in the stream's key.
    Flat,
    /// `X-Loki-Response-Encoding-Flags: categorize-labels`: stream labels in the key, structured
    /// metadata and parsed labels in a third element of each value.
    Categorized,
}

/// Appends `s` as a JSON string.
pub fn json_str(out: &mut String, s: &str) {
    // Writing to a String cannot fail, and serde_json escapes exactly what JSON needs.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

fn label_object<'a>(out: &mut String, labels: impl IntoIterator<Item = &'a Label>) {
    out.push('{');
    for (i, l) in labels.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, &l.name);
        out.push(':');
        json_str(out, &l.value);
    }
    out.push('}');
}

/// A sample value as Prometheus and Loki print it (`strconv.FormatFloat(v, 'f', -1, 64)`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// A metric timestamp (ns) as float seconds with millisecond precision.
pub fn format_seconds(ts: i64) -> String {
    let ms = ts.div_euclid(1_000_000);
    let (secs, frac) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    if frac == 0 {
        return secs.to_string();
    }
    let f = format!("{frac:03}");
    format!("{secs}.{}", f.trim_end_matches('0'))
}

fn write_result(out: &mut String, value: &Value, enc: LabelEncoding) {
    match value {
        Value::Scalar { ts, value } => {
            let _ = write!(out, "[{},\"{}\"]", format_seconds(*ts), format_value(*value));
        }
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                label_object(out, s.labels.iter());
                let _ = write!(out, ",\"value\":[{},\"{}\"]}}", format_seconds(s.ts), format_value(s.value));
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                label_object(out, s.labels.iter());
                out.push_str(",\"values\":[");
                for (j, p) in s.points.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "[{},\"{}\"]", format_seconds(p.ts), format_value(p.value));
                }
                out.push_str("]}");
            }
            out.push(']');
        }
        Value::Streams(streams) => write_streams(out, streams, enc),
    }
}

/// The `result` array of a log query.
pub fn write_streams(out: &mut String, streams: &[StreamResult], enc: LabelEncoding) {
    out.push('[');
    for (i, s) in streams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"stream\":");
        match enc {
            LabelEncoding::Flat => label_object(out, s.labels.iter()),
            LabelEncoding::Categorized => label_object(out, s.stream_labels.iter()),
        }
        out.push_str(",\"values\":[");
        for (j, e) in s.entries.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(out, "[\"{}\",", e.ts);
            json_str(out, &String::from_utf8_lossy(&e.line));
            if enc == LabelEncoding::Categorized && (!e.structured_metadata.is_empty() || !e.parsed.is_empty()) {
                out.push_str(",{");
                let mut first = true;
                for (key, labels) in [("structuredMetadata", &e.structured_metadata), ("parsed", &e.parsed)] {
                    if labels.is_empty() {
                        continue;
                    }
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    let _ = write!(out, "\"{key}\":");
                    label_object(out, labels.iter());
                }
                out.push('}');
            }
            out.push(']');
        }
        out.push_str("]}");
    }
    out.push(']');
}

/// The whole body of a successful `query` / `query_range` answer, with the `stats` block.
pub fn query_response(q: &QueryOutput, enc: LabelEncoding) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str("{\"status\":\"success\",\"data\":{\"resultType\":\"");
    out.push_str(q.value.result_type());
    out.push_str("\",\"result\":");
    write_result(&mut out, &q.value, enc);
    if enc == LabelEncoding::Categorized && matches!(q.value, Value::Streams(_)) {
        out.push_str(",\"encodingFlags\":[\"categorize-labels\"]");
    }
    out.push_str(",\"stats\":");
    out.push_str(&stats_json(q).to_string());
    out.push('}');
    let warnings = q.stats.warnings();
    if !warnings.is_empty() {
        out.push_str(",\"warnings\":");
        out.push_str(&serde_json::to_string(&warnings).unwrap_or_default());
    }
    out.push('}');
    out
}

fn stats_json(q: &QueryOutput) -> serde_json::Value {
    let s = &q.stats;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let exec = q.exec_time.as_secs_f64();
    let (lines, bytes) = (get(&s.lines), get(&s.bytes));
    let per_sec = |n: u64| if exec > 0.0 { (n as f64 / exec) as u64 } else { 0 };
    let returned: usize = match &q.value {
        Value::Streams(st) => st.iter().map(|s| s.entries.len()).sum(),
        Value::Vector(v) => v.len(),
        Value::Matrix(m) => m.iter().map(|s| s.points.len()).sum(),
        Value::Scalar { .. } => 1,
    };
    serde_json::json!({
        "summary": {
            "bytesProcessedPerSecond": per_sec(bytes),
            "linesProcessedPerSecond": per_sec(lines),
            "totalBytesProcessed": bytes,
            "totalLinesProcessed": lines,
            "execTime": exec,
            "queueTime": q.queue_time.as_secs_f64(),
            "subqueries": get(&s.subqueries),
            "totalEntriesReturned": returned,
            "splits": get(&s.splits),
            "shards": get(&s.shards),
            "totalPostFilterLines": 0,
            "totalStructuredMetadataBytesProcessed": 0,
        },
        "querier": {
            "store": {
                "totalChunksRef": get(&s.chunks_ref),
                "totalChunksDownloaded": get(&s.chunks_downloaded),
                "chunksDownloadTime": get(&s.download_nanos),
                "chunk": { "compressedBytes": get(&s.bytes_downloaded) },
            },
        },
        "ingester": {
            "totalReached": u64::from(get(&s.ingester_streams) > 0),
            "totalChunksMatched": get(&s.ingester_blocks),
        },
    })
}

/// `{"status":"success","data":<data>}`.
pub fn success(data: serde_json::Value) -> String {
    serde_json::json!({ "status": "success", "data": data }).to_string()
}

/// A label set as a JSON object.
pub fn labels_json(labels: &Labels) -> serde_json::Value {
    serde_json::Value::Object(
        labels.iter().map(|l| (l.name.clone(), serde_json::Value::String(l.value.clone()))).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_like_go() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(-3.5), "-3.5");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(1e21), "1000000000000000000000");
    }

    #[test]
    fn seconds_keep_milliseconds() {
        assert_eq!(format_seconds(1_700_000_000_000_000_000), "1700000000");
        assert_eq!(format_seconds(1_700_000_000_123_456_789), "1700000000.123");
        assert_eq!(format_seconds(1_700_000_000_100_000_000), "1700000000.1");
    }
}
