use std::io::Write;
use std::time::Duration;

use super::*;
use crate::config::{Config, flags};

fn load(list: &[&str]) -> Result<Config, String> {
    let args = std::iter::once("norn").chain(list.iter().copied()).map(String::from);
    let cli = flags::parse(args).map_err(|e| e.to_string())?;
    Config::load(cli.config_file.as_deref(), cli.expand_env, &cli.overrides).map_err(|e| e.to_string())
}

#[test]
fn defaults_match_the_issue() {
    let cfg = load(&[]).unwrap();
    assert_eq!(cfg.replication_factor.get(), 3);
    assert_eq!(cfg.ring.store, StoreKind::InMemory);
    assert_eq!(cfg.ring.heartbeat_period.get(), Duration::from_secs(5));
    assert_eq!(cfg.ring.heartbeat_timeout.get(), Duration::from_secs(60));
    assert_eq!(cfg.ring.num_tokens, 128);
    assert_eq!(cfg.instance.id, hostname(), "instance.id defaults to the host name");
    assert!(!cfg.instance.id.is_empty());
    assert_eq!(
        cfg.instance.advertised_addr(cfg.grpc.addr),
        format!("{}:9095", hostname()),
        "addr defaults to grpc.addr"
    );
    assert_eq!(cfg.ring.key(INGESTER_RING_KEY), "norn/ring");
    assert_eq!(cfg.ring.tokens_file(std::path::Path::new("/data")), std::path::PathBuf::from("/data/ring/tokens.json"));
}

#[test]
fn the_issue_flags_set_their_keys() {
    let cfg = load(&[
        "--instance.id=ingester-7",
        "--instance.addr=10.0.0.7:9095",
        "--instance.zone",
        "zone-a",
        "--ring.store=etcd",
        "--ring.etcd.endpoints",
        "etcd-0:2379, etcd-1:2379",
        "--ring.prefix=prod/",
        "--ring.heartbeat-period=10s",
        "--ring.heartbeat-timeout=2m",
        "--replication-factor=2",
        "--ring.zone-awareness-enabled",
    ])
    .unwrap();
    assert_eq!(
        (cfg.instance.id.as_str(), cfg.instance.addr.as_str(), cfg.instance.zone.as_str()),
        ("ingester-7", "10.0.0.7:9095", "zone-a")
    );
    assert_eq!(cfg.instance.advertised_addr(cfg.grpc.addr), "10.0.0.7:9095");
    assert_eq!(cfg.ring.store, StoreKind::Etcd);
    assert_eq!(cfg.ring.etcd.endpoints, ["etcd-0:2379", "etcd-1:2379"]);
    assert_eq!(cfg.ring.key(DISTRIBUTOR_RING_KEY), "prod/distributor");
    assert_eq!(cfg.ring.heartbeat_period.get(), Duration::from_secs(10));
    assert_eq!(cfg.ring.heartbeat_timeout.get(), Duration::from_secs(120));
    assert_eq!(cfg.replication_factor.get(), 2);
    assert!(cfg.ring.zone_awareness_enabled);
    let help = flags::command().render_long_help().to_string();
    for flag in
        ["--instance.id", "--ring.store", "--ring.etcd.endpoints", "--ring.heartbeat-timeout", "--replication-factor"]
    {
        assert!(help.contains(flag), "missing {flag}");
    }
    let ing = ingester_lifecycler_config(&cfg);
    assert_eq!(
        (ing.ring_key.as_str(), ing.id.as_str(), ing.addr.as_str(), ing.zone.as_str()),
        ("prod/ring", "ingester-7", "10.0.0.7:9095", "zone-a")
    );
    assert_eq!((ing.num_tokens, ing.heartbeat_period), (128, Duration::from_secs(10)));
    assert_eq!(ing.tokens_file, Some(std::path::PathBuf::from("./data/ring/tokens.json")));
    let dist = distributor_lifecycler_config(&cfg);
    assert_eq!((dist.ring_key.as_str(), dist.num_tokens, dist.tokens_file.clone()), ("prod/distributor", 0, None));
    let repl = replication_config(&cfg);
    assert_eq!(
        (repl.replication_factor, repl.zone_awareness, repl.heartbeat_timeout),
        (2, true, Duration::from_secs(120))
    );
}

#[test]
fn the_sections_load_from_yaml() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(
        b"instance:\n  id: ingester-1\nring:\n  store: etcd\n  etcd:\n    endpoints: [127.0.0.1:2379]\n    request_timeout: 2s\nreplication_factor: 1\n",
    )
    .unwrap();
    let cfg = load(&["--config.file", f.path().to_str().unwrap()]).unwrap();
    assert_eq!(cfg.instance.id, "ingester-1");
    assert_eq!(cfg.ring.etcd.endpoints, ["127.0.0.1:2379"]);
    assert_eq!(cfg.ring.etcd.request_timeout.get(), Duration::from_secs(2));
    assert_eq!(cfg.replication_factor.get(), 1);
    let round = Config::from_tree(serde_json::to_value(&cfg).unwrap()).unwrap();
    assert_eq!(round, cfg, "the sections survive /config output");
}

#[test]
fn mistakes_are_reported_naming_the_key() {
    let cases: &[(&[&str], &str)] = &[
        (&["--ring.store=etcd"], "ring.etcd.endpoints"),
        (&["--ring.store=consul"], "ring.store"),
        (&["--replication-factor=0"], "replication_factor"),
        (&["--ring.heartbeat-period=1m", "--ring.heartbeat-timeout=30s"], "ring.heartbeat_timeout"),
        (&["--ring.heartbeat-period=0s"], "ring.heartbeat_period"),
        (&["--ring.num-tokens=0"], "ring.num_tokens"),
        (&["--instance.id="], "instance.id"),
        (&["--ring.etcd.bogus=1"], "--ring.etcd.bogus"),
        (&["--ring.store=etcd", "--ring.etcd.endpoints=https://e:2379"], "ring.etcd.tls_enabled is false"),
        (
            &["--ring.store=etcd", "--ring.etcd.endpoints=http://e:2379", "--ring.etcd.tls-enabled=true"],
            "ring.etcd.tls_enabled is true",
        ),
        (
            &["--ring.store=etcd", "--ring.etcd.endpoints=e:2379", "--ring.etcd.tls-cert-path=c.pem"],
            "ring.etcd.tls_cert_path and ring.etcd.tls_key_path are set together",
        ),
    ];
    for (args, key) in cases {
        let err = load(args).expect_err(&format!("{args:?} must be refused"));
        assert!(err.contains(key), "{args:?}: {err} does not name {key}");
    }
    assert!(load(&["--ring.heartbeat-timeout=0s"]).is_ok(), "a zero timeout disables health checks");
}

#[tokio::test]
async fn the_store_is_built_from_the_config() {
    let kv = kv_from_config(&RingConfig::default()).await.unwrap();
    assert!(format!("{kv:?}").starts_with("MemoryKv"));
    let cfg = RingConfig {
        store: StoreKind::Etcd,
        etcd: EtcdConfig { endpoints: vec!["127.0.0.1:1".into()], ..EtcdConfig::default() },
        ..RingConfig::default()
    };
    let kv = kv_from_config(&cfg).await.expect("an etcd store is built without reaching etcd");
    assert!(format!("{kv:?}").starts_with("EtcdKv"));
    let empty = RingConfig { store: StoreKind::Etcd, ..RingConfig::default() };
    assert!(matches!(kv_from_config(&empty).await, Err(KvError::Invalid(_))));
}
