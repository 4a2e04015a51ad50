use std::io::Write;

use super::flags;
use super::*;

fn args(list: &[&str]) -> Vec<String> {
    std::iter::once("norn").chain(list.iter().copied()).map(String::from).collect()
}

fn load(list: &[&str]) -> Result<Config, String> {
    let cli = flags::parse(args(list)).map_err(|e| e.to_string())?;
    Config::load(cli.config_file.as_deref(), cli.expand_env, &cli.overrides).map_err(|e| e.to_string())
}

fn yaml_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn no_arguments_give_the_embedded_defaults() {
    let cfg = load(&[]).unwrap();
    assert!(cfg.target.is_all());
    assert_eq!(cfg.http.addr.to_string(), "0.0.0.0:3100");
    assert_eq!(cfg.grpc.addr.to_string(), "0.0.0.0:9095");
    assert_eq!(cfg.data.dir, PathBuf::from("./data"));
    assert!(!cfg.auth.enabled);
    assert_eq!(cfg.limits.max_line_size, ByteSize(256_000));
    assert_eq!(cfg.wal_dir(), PathBuf::from("./data/wal"));
}

#[test]
fn the_issue_flags_mirror_their_keys() {
    let cfg = load(&[
        "--target",
        "distributor,ingester",
        "--http.addr=127.0.0.1:1",
        "--grpc.addr",
        "127.0.0.1:2",
        "--data.dir",
        "/tmp/x",
        "--auth.enabled",
    ])
    .unwrap();
    assert!(cfg.target.has(Role::Distributor) && cfg.target.has(Role::Ingester));
    assert!(!cfg.target.has(Role::Querier));
    assert!(!cfg.target.serves_queries());
    assert_eq!(cfg.target.to_string(), "distributor,ingester");
    assert_eq!(cfg.http.addr.port(), 1);
    assert_eq!(cfg.grpc.addr.port(), 2);
    assert_eq!(cfg.data.dir, PathBuf::from("/tmp/x"));
    assert!(cfg.auth.enabled);
}

#[test]
fn every_leaf_key_has_a_flag_and_help_shows_it() {
    let help = flags::command().render_long_help().to_string();
    for flag in [
        "--config.file",
        "--target",
        "--http.addr",
        "--grpc.addr",
        "--data.dir",
        "--auth.enabled",
        "--limits.max-line-size",
        "--limits.ingestion-rate-mb",
        "--ingester.chunk-encoding",
        "--ingester.wal.sync",
        "--storage.backend",
    ] {
        assert!(help.contains(flag), "missing {flag}");
    }
}

#[test]
fn flags_override_the_file() {
    let f = yaml_file("http:\n  addr: 127.0.0.1:5000\nlimits:\n  ingestion_rate_mb: 8\n  max_line_size: 1MB\n");
    let path = f.path().to_str().unwrap();
    let cfg = load(&["--config.file", path, "--limits.ingestion-rate-mb", "9"]).unwrap();
    assert_eq!(cfg.http.addr.port(), 5000);
    assert_eq!(cfg.limits.ingestion_rate_mb, 9.0);
    assert_eq!(cfg.limits.max_line_size, ByteSize(1_000_000));
}

#[test]
fn go_style_single_dash_flags_are_accepted() {
    let f = yaml_file("target: ingester\n");
    let path = f.path().to_str().unwrap();
    let cfg = load(&[&format!("-config.file={path}"), "-auth.enabled=true"]).unwrap();
    assert!(cfg.target.has(Role::Ingester) && !cfg.target.has(Role::Distributor));
    assert!(cfg.auth.enabled);
}

#[test]
fn unknown_keys_are_rejected_naming_them() {
    let f = yaml_file("limits:\n  ingestion_rate_mbs: 8\n");
    let e = load(&["--config.file", f.path().to_str().unwrap()]).unwrap_err();
    assert!(e.contains("limits"), "{e}");
    assert!(e.contains("ingestion_rate_mbs"), "{e}");
    let f = yaml_file("nonsense: 1\n");
    let e = load(&["--config.file", f.path().to_str().unwrap()]).unwrap_err();
    assert!(e.contains("nonsense"), "{e}");
}

#[test]
fn unknown_flags_are_rejected() {
    let e = load(&["--limits.no-such-thing", "1"]).unwrap_err();
    assert!(e.contains("no-such-thing"), "{e}");
}

#[test]
fn bad_values_name_the_key() {
    let e = load(&["--limits.max-line-size", "lots"]).unwrap_err();
    assert!(e.contains("limits.max_line_size"), "{e}");
    let e = load(&["--target", "everything"]).unwrap_err();
    assert!(e.contains("unknown target"), "{e}");
    let e = load(&["--ingester.chunk-target-size", "1KB"]).unwrap_err();
    assert!(e.contains("ingester.chunk_target_size"), "{e}");
}

#[test]
fn env_expansion_is_opt_in() {
    // SAFETY-free: a variable name no other test uses.
    let f = yaml_file("data:\n  dir: ${NORN_TEST_UNSET_DIR:-/tmp/fallback}\n");
    let path = f.path().to_str().unwrap();
    let cfg = load(&["--config.file", path, "--config.expand-env"]).unwrap();
    assert_eq!(cfg.data.dir, PathBuf::from("/tmp/fallback"));
    let cfg = load(&["--config.file", path]).unwrap();
    assert_eq!(cfg.data.dir, PathBuf::from("${NORN_TEST_UNSET_DIR:-/tmp/fallback}"));
}

#[test]
fn effective_config_round_trips_through_yaml() {
    let cfg = load(&["--limits.max-line-size", "1KiB", "--ingester.max-chunk-age", "1h30m"]).unwrap();
    let f = yaml_file(&cfg.to_yaml());
    let again = load(&["--config.file", f.path().to_str().unwrap()]).unwrap();
    assert_eq!(cfg, again);
}

#[test]
fn per_tenant_overrides_are_validated_at_load() {
    let f = yaml_file("overrides:\n  team-a:\n    ingestion_rate_mb: 50\n  team-b:\n    max_line_size: huge\n");
    let e = load(&["--config.file", f.path().to_str().unwrap()]).unwrap_err();
    assert!(e.contains("overrides.team-b"), "{e}");
}

#[test]
fn roles_apart_need_a_shared_ring() {
    let tree = |target: &str, store: &str| serde_json::json!({"target": target, "ring": {"store": store, "etcd": {"endpoints": ["127.0.0.1:2379"]}}});
    for target in ["distributor", "querier", "query-frontend", "distributor,querier"] {
        let cfg = Config::from_tree(tree(target, "inmemory")).unwrap();
        let err = cfg.validate().unwrap_err();
        assert!(err.contains("ring.store: etcd"), "{err}");
        Config::from_tree(tree(target, "etcd")).unwrap().validate().unwrap();
    }
    for target in ["all", "ingester", "distributor,ingester"] {
        Config::from_tree(tree(target, "inmemory")).unwrap().validate().unwrap();
    }
    // A query frontend answers queries as a querier does (no splitting or caching yet).
    let frontend = Config::from_tree(tree("query-frontend", "etcd")).unwrap();
    assert!(frontend.target.serves_queries() && !frontend.target.has(Role::Querier));
}
