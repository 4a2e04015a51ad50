//! Command-line flags generated from the configuration's key tree.
//!
//! Every leaf key of [`Config`] gets a flag named after its path, with `_` spelled `-`
//! (`ingester.chunk_target_size` → `--ingester.chunk-target-size`), so flags and YAML keys can
//! never drift apart. Go-style single-dash flags (`-config.file=x`, as Loki's users write them)
//! are accepted too.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};
use serde_json::Value;

use super::Config;

/// Keys without a flag: maps whose entries are user-chosen names.
const NO_FLAG: &[&str] = &["overrides"];

/// Hand-written help for the flags people reach for first; the rest say which key they set.
const HELP: &[(&str, &str)] = &[
    (
        "target",
        "roles to run: all, or a comma list of distributor, ingester, querier, query-frontend, compactor, ruler",
    ),
    ("http.addr", "listen address of the HTTP API"),
    ("grpc.addr", "listen address of the gRPC server"),
    ("data.dir", "directory of local state (WAL, and chunks with the filesystem store)"),
    ("auth.enabled", "require X-Scope-OrgID; when false every request is tenant 'fake'"),
    ("log.level", "log filter, e.g. info or norn=debug,info"),
    ("ingester.wal.sync", "when the WAL fsyncs: batch (before every acknowledgement), interval, never"),
    ("storage.backend", "object store: filesystem, s3 or memory"),
];

/// What the command line asked for.
#[derive(Debug, Default)]
pub struct CliArgs {
    /// `--config.file`.
    pub config_file: Option<PathBuf>,
    /// `--config.expand-env`: replace `${VAR}` in the file.
    pub expand_env: bool,
    /// `--print-config`: print the effective configuration and exit.
    pub print_config: bool,
    /// Flag overrides as (key path, value) in command-line order.
    pub overrides: Vec<(Vec<String>, Value)>,
    /// A subcommand instead of running the server.
    pub subcommand: Option<Subcommand>,
}

/// What to run instead of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subcommand {
    /// `norn logqltest [--from memory|store] DIR|FILE...`.
    Logqltest {
        paths: Vec<String>,
        /// Query the data from the object store (after a flush) instead of ingester memory.
        from_store: bool,
        /// Send every query through a query frontend with splitting and sharding forced on.
        frontend: bool,
    },
}

/// A leaf key of the configuration and the kind of value it holds.
struct Leaf {
    path: Vec<String>,
    flag: String,
    kind: Kind,
    default: String,
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Num,
    List,
    Any,
}

fn leaves() -> Vec<Leaf> {
    let tree = serde_json::to_value(Config::default()).expect("default config serializes");
    let mut out = Vec::new();
    walk(&tree, &mut Vec::new(), &mut out);
    out
}

fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<Leaf>) {
    if let Value::Object(map) = v {
        for (k, child) in map {
            path.push(k.clone());
            if !NO_FLAG.contains(&path.join(".").as_str()) {
                walk(child, path, out);
            }
            path.pop();
        }
        return;
    }
    let (kind, default) = match v {
        Value::String(s) => (Kind::Str, s.clone()),
        Value::Bool(b) => (Kind::Bool, b.to_string()),
        Value::Number(n) => (Kind::Num, n.to_string()),
        Value::Array(a) => (
            Kind::List,
            a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).collect::<Vec<_>>().join(","),
        ),
        _ => (Kind::Any, String::new()),
    };
    let flag = path.iter().map(|p| p.replace('_', "-")).collect::<Vec<_>>().join(".");
    out.push(Leaf { path: path.clone(), flag, kind, default });
}

/// The clap command with every flag; used for parsing and `--help`.
pub fn command() -> Command {
    let mut cmd = Command::new("norn")
        .about("Norn: a Loki-compatible log aggregation system")
        .version(env!("CARGO_PKG_VERSION"))
        .arg(Arg::new("config.file").long("config.file").value_name("PATH").help("YAML configuration file"))
        .arg(
            Arg::new("config.expand-env")
                .long("config.expand-env")
                .num_args(0..=1)
                .default_missing_value("true")
                .value_parser(clap::value_parser!(bool))
                .help("expand ${VAR} and ${VAR:-default} in the configuration file"),
        )
        .arg(
            Arg::new("print-config")
                .long("print-config")
                .action(ArgAction::SetTrue)
                .help("print the effective configuration as YAML and exit"),
        )
        .subcommand(
            Command::new("logqltest")
                .about("run LogQL conformance scripts (.logqltest files) through the real engine")
                .arg(
                    Arg::new("from")
                        .long("from")
                        .value_parser(["memory", "store"])
                        .default_value("memory")
                        .help("query the loaded data in ingester memory, or flush it to the object store first"),
                )
                .arg(
                    Arg::new("frontend")
                        .long("frontend")
                        .action(ArgAction::SetTrue)
                        .help("send every query through a query frontend that splits at 1m and cuts shardable queries into 3 shards"),
                )
                .arg(Arg::new("paths").num_args(1..).required(true).value_name("DIR|FILE")),
        );
    for leaf in leaves() {
        let help = HELP
            .iter()
            .find(|(k, _)| *k == leaf.path.join("."))
            .map(|(_, h)| h.to_string())
            .unwrap_or_else(|| format!("sets {}", leaf.path.join(".")));
        let help = if leaf.default.is_empty() { help } else { format!("{help} [default: {}]", leaf.default) };
        let mut arg = Arg::new(leaf.flag.clone()).long(leaf.flag.clone()).help(help).action(ArgAction::Set);
        if matches!(leaf.kind, Kind::Bool) {
            arg = arg.num_args(0..=1).default_missing_value("true").value_name("BOOL");
        } else {
            arg = arg.value_name("VALUE");
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// Rewrites Go-style `-flag.name=value` into `--flag.name=value`.
fn normalize(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let single_long = i > 0
                && a.starts_with('-')
                && !a.starts_with("--")
                && a.len() > 2
                && !a[1..].starts_with(|c: char| c.is_ascii_digit());
            if single_long { format!("-{a}") } else { a }
        })
        .collect()
}

/// Parses a command line (including the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<CliArgs, clap::Error> {
    let matches = command().try_get_matches_from(normalize(args))?;
    let mut out = CliArgs {
        config_file: matches.get_one::<String>("config.file").map(PathBuf::from),
        expand_env: matches.get_one::<bool>("config.expand-env").copied().unwrap_or(false),
        print_config: matches.get_flag("print-config"),
        ..Default::default()
    };
    let mut given: Vec<(usize, Vec<String>, Value)> = Vec::new();
    for leaf in leaves() {
        if let Some(raw) = flag_value(&matches, &leaf.flag) {
            let value = convert(&leaf, &raw.1).map_err(|msg| {
                command().error(clap::error::ErrorKind::InvalidValue, format!("--{}: {msg}", leaf.flag))
            })?;
            given.push((raw.0, leaf.path.clone(), value));
        }
    }
    given.sort_by_key(|g| g.0);
    out.overrides = given.into_iter().map(|(_, p, v)| (p, v)).collect();
    if let Some(("logqltest", sub)) = matches.subcommand() {
        let paths = sub.get_many::<String>("paths").map(|v| v.cloned().collect()).unwrap_or_default();
        let from_store = sub.get_one::<String>("from").is_some_and(|f| f == "store");
        let frontend = sub.get_flag("frontend");
        out.subcommand = Some(Subcommand::Logqltest { paths, from_store, frontend });
    }
    Ok(out)
}

fn flag_value(m: &ArgMatches, id: &str) -> Option<(usize, String)> {
    if m.value_source(id) != Some(clap::parser::ValueSource::CommandLine) {
        return None;
    }
    let idx = m.index_of(id).unwrap_or(0);
    m.get_one::<String>(id).map(|v| (idx, v.clone()))
}

fn convert(leaf: &Leaf, raw: &str) -> Result<Value, String> {
    match leaf.kind {
        Kind::Str => Ok(Value::String(raw.to_string())),
        Kind::Bool => raw.parse::<bool>().map(Value::Bool).map_err(|_| format!("expected true or false, got {raw:?}")),
        Kind::Num => serde_json::from_str::<serde_json::Number>(raw)
            .map(Value::Number)
            .map_err(|_| format!("expected a number, got {raw:?}")),
        // A list of objects (`limits.retention_stream`) is given as YAML: `[{selector: ..., period: 24h}]`.
        Kind::List if raw.trim_start().starts_with('[') => {
            serde_norway::from_str::<Value>(raw).map_err(|e| format!("expected a YAML list: {e}"))
        }
        Kind::List => Ok(Value::Array(
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())).collect(),
        )),
        Kind::Any => serde_norway::from_str::<Value>(raw).or_else(|_| Ok(Value::String(raw.to_string()))),
    }
}
