//! Loki's read API over real HTTP: labels, series, index statistics and volume, format_query,
//! parameters and tenants — over data in ingester memory and, after a flush, in the store.

mod common;

use common::{TestServer, now_ns, urlencode};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn fixture(t: i64) -> Vec<(&'static str, Vec<(i64, String)>)> {
    vec![
        (r#"{app="api", env="prod"}"#, vec![(t, "a1".into()), (t + 1, "a2".into())]),
        (r#"{app="web", env="prod"}"#, vec![(t, "w1".into())]),
        (r#"{app="db", env="dev", tier="data"}"#, vec![(t, "d1".into()), (t + 1, "d2".into()), (t + 2, "d3".into())]),
    ]
}

/// The same answers from memory and, after a flush, from the object store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_series_and_stats_from_memory_and_from_the_store() {
    let s = TestServer::start(&[]).await;
    let t = now_ns() - 60_000_000_000;
    s.push(None, &fixture(t)).await;
    let mut bytes_seen = Vec::new();
    for phase in ["memory", "store"] {
        if phase == "store" {
            s.flush().await;
        }
        let names = s.get_json("/loki/api/v1/labels", None).await;
        assert_eq!(names["data"], json!(["app", "env", "tier"]), "{phase}");
        let values = s.get_json("/loki/api/v1/label/app/values", None).await;
        assert_eq!(values["data"], json!(["api", "db", "web"]), "{phase}");
        let q = urlencode(r#"{env="prod"}"#);
        let values = s.get_json(&format!("/loki/api/v1/label/app/values?query={q}"), None).await;
        assert_eq!(values["data"], json!(["api", "web"]), "{phase}");
        let series =
            s.get_json(&format!("/loki/api/v1/series?match[]={}", urlencode(r#"{app=~"a.*|d.*"}"#)), None).await;
        assert_eq!(
            series["data"],
            json!([{"app": "api", "env": "prod"}, {"app": "db", "env": "dev", "tier": "data"}]),
            "{phase}"
        );
        let stats = s.get_json(&format!("/loki/api/v1/index/stats?query={q}"), None).await;
        assert_eq!(stats["streams"], json!(2), "{phase}");
        assert_eq!(stats["entries"], json!(3), "{phase}");
        // Uncompressed block payload: the 6 line bytes plus their timestamp and length columns.
        let bytes = stats["bytes"].as_u64().unwrap();
        assert!((6..64).contains(&bytes), "{phase}: {stats}");
        bytes_seen.push(bytes);
        assert!(stats["chunks"].as_u64().unwrap() >= 2, "{phase}: {stats}");
        let vol = s.get_json(&format!("/loki/api/v1/index/volume?query={}", urlencode(r#"{env=~".+"}"#)), None).await;
        assert_eq!(vol["data"]["resultType"], json!("vector"));
        let result = vol["data"]["result"].as_array().unwrap();
        assert_eq!(result[0]["metric"], json!({"env": "prod"}), "largest first: {vol}");
        assert_eq!(result[0]["value"][1], json!(bytes.to_string()));
        assert_eq!(result[1]["metric"], json!({"env": "dev"}));
    }
    assert_eq!(bytes_seen[0], bytes_seen[1], "memory and store count the same bytes");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_separate_and_can_be_read_together() {
    let s = TestServer::start(&["--auth.enabled", "--querier.multi-tenant-queries-enabled"]).await;
    let t = now_ns() - 60_000_000_000;
    s.push(Some("team-a"), &[(r#"{app="a"}"#, vec![(t, "x".into())])]).await;
    s.push(Some("team-b"), &[(r#"{app="b"}"#, vec![(t, "y".into())])]).await;
    let (st, body) = s.get("/loki/api/v1/labels", None).await;
    assert_eq!((st, body.trim()), (StatusCode::UNAUTHORIZED, "no org id"));
    let a = s.get_json("/loki/api/v1/label/app/values", Some("team-a")).await;
    assert_eq!(a["data"], json!(["a"]));
    let both = s.get_json("/loki/api/v1/series", Some("team-a|team-b")).await;
    assert_eq!(both["data"], json!([{"__tenant_id__": "team-a", "app": "a"}, {"__tenant_id__": "team-b", "app": "b"}]));
    let only_b = s
        .get_json(
            &format!("/loki/api/v1/series?match[]={}", urlencode(r#"{__tenant_id__="team-b"}"#)),
            Some("team-a|team-b"),
        )
        .await;
    assert_eq!(only_b["data"], json!([{"__tenant_id__": "team-b", "app": "b"}]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_query_and_parameter_errors() {
    let s = TestServer::start(&[]).await;
    let pretty = s
        .get_json(
            &format!("/loki/api/v1/format_query?query={}", urlencode(r#"sum by(app)(rate({app="x"}|="err"[5m]))"#)),
            None,
        )
        .await;
    assert_eq!(pretty["status"], json!("success"));
    assert!(pretty["data"].as_str().unwrap().contains("sum by (app)"), "{pretty}");

    let cases = [
        (format!("/loki/api/v1/query_range?query={}", urlencode("{app=\"x\"")), "parse error"),
        (
            format!("/loki/api/v1/query_range?query={}&start=10&end=5", urlencode(r#"{app="x"}"#)),
            "end timestamp must not be before or equal to start time",
        ),
        (
            format!("/loki/api/v1/query_range?query={}&step=0", urlencode(r#"rate({app="x"}[1m])"#)),
            "zero or negative query resolution step",
        ),
        (
            format!("/loki/api/v1/query_range?query={}&limit=10000", urlencode(r#"{app="x"}"#)),
            "max entries limit per query exceeded, limit > max_entries_limit_per_query (10000 > 5000)",
        ),
        (
            format!("/loki/api/v1/query_range?query={}&start=0&end=3000000", urlencode(r#"{app="x"}"#)),
            "the query time range exceeds the limit",
        ),
        (
            format!("/loki/api/v1/query?query={}", urlencode(r#"{app="x"}"#)),
            "log queries are not supported as an instant query type",
        ),
        ("/loki/api/v1/query_range".to_string(), "query parameter is required"),
        (
            format!("/loki/api/v1/query_range?query={}&direction=sideways", urlencode(r#"{app="x"}"#)),
            "invalid direction",
        ),
        (
            format!("/loki/api/v1/series?match[]={}", urlencode("{}")),
            "queries require at least one regexp or equality matcher",
        ),
    ];
    for (path, want) in cases {
        let (st, body) = s.get(&path, None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body.contains(want), "{path}: {body}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_form_bodies_work_like_query_strings() {
    let s = TestServer::start(&[]).await;
    let t = now_ns() - 60_000_000_000;
    s.push(None, &fixture(t)).await;
    let r = reqwest::Client::new()
        .post(s.url("/loki/api/v1/label/app/values"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("query={}", urlencode(r#"{env="dev"}"#)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"], json!(["db"]));
    s.stop().await;
}
