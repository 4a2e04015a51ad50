//! LogQL parsing and printing throughput.
//!
//! Run: `cargo bench --bench logql_parse` (add `-- --quick` for a short run).
//! Each query is measured separately; throughput is query bytes per second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use norn::logql::{parse_expr, parse_matchers};

const QUERIES: &[(&str, &str)] = &[
    ("selector", r#"{cluster="prod", namespace="loki", app="ingester"}"#),
    (
        "log_query",
        r#"{app="api", env="prod"} |= "error" != "timeout" | json | status >= 500 and latency > 250ms | line_format "{{.method}} {{.path}}""#,
    ),
    (
        "metric_query",
        r#"sum by (app) (rate({app=~"foo|bar", env="prod"} |= "error" | logfmt | level="error" [5m])) / sum by (app) (rate({app=~"foo|bar"}[5m]))"#,
    ),
    (
        "unwrap_quantile",
        r#"quantile_over_time(0.99, {container="ingress-nginx"} | json | unwrap duration_seconds(latency) | __error__="" [1m]) by (cluster)"#,
    ),
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("logql_parse");
    for (name, q) in QUERIES {
        group.throughput(Throughput::Bytes(q.len() as u64));
        group.bench_function(*name, |b| b.iter(|| parse_expr(black_box(q))));
    }
    let series = r#"{cpu="10",endpoint="https",instance="10.253.57.87:9100",job="node-exporter",mode="idle",namespace="observability",pod="node-exporter-l454v",service="node-exporter"}"#;
    group.throughput(Throughput::Bytes(series.len() as u64));
    group.bench_function("series_matchers", |b| b.iter(|| parse_matchers(black_box(series))));
    group.finish();

    let mut group = c.benchmark_group("logql_print");
    for (name, q) in QUERIES {
        let Ok(e) = parse_expr(q) else { continue };
        group.throughput(Throughput::Bytes(q.len() as u64));
        group.bench_function(*name, |b| b.iter(|| black_box(&e).to_string()));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
