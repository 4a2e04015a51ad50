//! Norn's configuration: one YAML file, and a command-line flag for every key in it.
//!
//! Loading goes file → flags → typed struct: the YAML is read into a JSON tree, every flag given
//! on the command line overwrites the key it mirrors (`--ingester.chunk-target-size` is
//! `ingester.chunk_target_size`), and the tree is deserialized with unknown keys rejected, naming
//! the full key. [`Config::validate`] then checks cross-field rules with messages naming keys.

pub mod flags;
pub mod units;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::chunk::Codec;
use crate::limits::Limits;
use crate::ring::config::{InstanceConfig, ReplicationFactor, RingConfig};
use crate::storage::StorageConfig;
use units::{ByteSize, Dur};

/// The whole configuration. Every field has a default, so an empty file (or none) is valid and
/// runs every role in one process with data under `./data`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Which roles this process runs.
    pub target: Targets,
    pub http: HttpConfig,
    pub grpc: GrpcConfig,
    pub data: DataConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub distributor: DistributorConfig,
    pub ingester: IngesterConfig,
    /// How distributors and queriers call ingesters.
    pub ingester_client: crate::rpc::ClientConfig,
    pub querier: crate::querier::QuerierConfig,
    /// How queriers read chunks: the chunk cache.
    pub chunk_store_config: crate::querier::ChunkStoreConfig,
    /// The query frontend's queue.
    pub frontend: crate::frontend::FrontendConfig,
    /// How a querier pulls work from query frontends.
    pub frontend_worker: crate::frontend::FrontendWorkerConfig,
    /// Splitting, sharding, retries and the results cache of the query frontend.
    pub query_range: crate::frontend::QueryRangeConfig,
    /// Retention, delete requests and index compaction.
    pub compactor: crate::compactor::CompactorConfig,
    pub storage: StorageConfig,
    /// Limits for every tenant without an override.
    pub limits: Limits,
    /// Per-tenant partial `limits` blocks, merged over `limits`.
    pub overrides: HashMap<String, serde_json::Value>,
    /// This process's identity in the hash ring.
    pub instance: InstanceConfig,
    /// The hash ring: its store, heartbeats, tokens.
    pub ring: RingConfig,
    /// Replicas of every stream; clipped to the number of ingesters in the ring.
    pub replication_factor: ReplicationFactor,
    /// The pattern detector beside the ingester (`/loki/api/v1/patterns`).
    pub pattern_ingester: crate::pattern::PatternConfig,
    /// Rule groups of LogQL expressions: alerts to Alertmanager, recorded series by remote write.
    pub ruler: crate::ruler::RulerConfig,
}

/// The HTTP server (Loki's API, ops endpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address of the HTTP API.
    pub addr: SocketAddr,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout: Dur,
    /// A request's head, once begun, and its body must arrive within this (Loki's
    /// `http_server_read_timeout`; 0 = no limit).
    pub read_timeout: Dur,
    /// A connection with nothing in flight and no bytes moving for this long is closed
    /// (`http_server_idle_timeout`; 0 = never).
    pub idle_timeout: Dur,
    /// Largest request head (request line and headers); larger ones get 431.
    pub max_header_bytes: ByteSize,
    /// Most open connections (`http_listen_conn_limit`; 0 = no limit); one past it gets a 503.
    pub conn_limit: usize,
    /// Most requests in flight at once (0 = no limit); more get 503 at once (`/ready` and
    /// `/metrics` excepted).
    pub max_concurrent_requests: usize,
    /// HTTPS (Loki's `http_tls_config`): off without `cert_file`.
    pub tls_config: crate::tls::ServerTlsConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 3100)),
            shutdown_timeout: Dur::secs(30),
            read_timeout: Dur::secs(30),
            idle_timeout: Dur::secs(120),
            max_header_bytes: ByteSize::mib(1),
            conn_limit: 0,
            max_concurrent_requests: 0,
            tls_config: Default::default(),
        }
    }
}

/// The gRPC server of an ingester (distributor → ingester, querier → ingester).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Listen address of the gRPC server. Bound by processes that run an ingester with a shared
    /// ring (`ring.store: etcd`); in one process with the in-memory ring nobody could call it.
    pub addr: SocketAddr,
    /// Largest message the server receives or sends (a replica's share of a push).
    pub max_recv_msg_size: ByteSize,
    /// TLS of the gRPC server (Loki's `grpc_tls_config`): off without `cert_file`.
    pub tls_config: crate::tls::ServerTlsConfig,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 9095)),
            max_recv_msg_size: ByteSize::mib(128),
            tls_config: Default::default(),
        }
    }
}

/// Where local state lives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Root of local state: the WAL and, with the filesystem backend, chunks and index.
    pub dir: PathBuf,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("./data") }
    }
}

/// Multi-tenancy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Require `X-Scope-OrgID` on every request; when false every request is tenant `fake`.
    pub enabled: bool,
}

/// Logging of the process itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `norn=debug,info`, ...
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The push endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributorConfig {
    /// Largest request body accepted, before and after decompression.
    pub max_recv_msg_size: ByteSize,
}

impl Default for DistributorConfig {
    fn default() -> Self {
        Self { max_recv_msg_size: ByteSize::mib(100) }
    }
}

/// Streams in memory, chunk cutting and flushing, the WAL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngesterConfig {
    /// Compression of chunk blocks.
    pub chunk_encoding: Codec,
    /// Uncompressed size at which the head block is cut and compressed.
    pub chunk_block_size: ByteSize,
    /// Compressed size at which a chunk is closed and flushed.
    pub chunk_target_size: ByteSize,
    /// A chunk that received nothing for this long is closed and flushed.
    pub chunk_idle_period: Dur,
    /// A chunk older than this (first to last entry, or since creation) is closed and flushed;
    /// half of it is the out-of-order window.
    pub max_chunk_age: Dur,
    /// How long flushed chunks stay in memory for queries.
    pub chunk_retain_period: Dur,
    /// How often streams are checked for chunks to close and flush.
    pub flush_check_period: Dur,
    /// Deadline of one flush attempt (object + index write).
    pub flush_op_timeout: Dur,
    /// Flushes in flight at once.
    pub concurrent_flushes: usize,
    /// Flush every chunk on graceful shutdown; when false the WAL keeps the data for the next
    /// start instead.
    pub flush_on_shutdown: bool,
    pub wal: WalSection,
}

impl Default for IngesterConfig {
    fn default() -> Self {
        Self {
            chunk_encoding: Codec::default(),
            chunk_block_size: ByteSize(262_144),
            chunk_target_size: ByteSize(1_572_864),
            chunk_idle_period: Dur::mins(30),
            max_chunk_age: Dur::hours(2),
            chunk_retain_period: Dur::secs(0),
            flush_check_period: Dur::secs(30),
            flush_op_timeout: Dur::mins(10),
            concurrent_flushes: 16,
            flush_on_shutdown: false,
            wal: WalSection::default(),
        }
    }
}

/// When the WAL fsyncs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Group commit: a push is acknowledged after the fsync that covers it.
    #[default]
    Batch,
    /// A push is acknowledged once written (survives a killed process); fsync every
    /// `sync_interval` (a machine crash can lose that much).
    Interval,
    /// Never fsync (tests and benchmarks).
    Never,
}

/// The ingester's write-ahead log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalSection {
    /// Write every push to the WAL before acknowledging it.
    pub enabled: bool,
    /// WAL directory; default `<data.dir>/wal`.
    pub dir: Option<PathBuf>,
    pub sync: SyncMode,
    /// fsync period with `sync: interval`.
    pub sync_interval: Dur,
    /// How often in-memory state is checkpointed so old segments can be deleted.
    pub checkpoint_interval: Dur,
    /// Size at which a segment file is closed and a new one started.
    pub segment_size: ByteSize,
}

impl Default for WalSection {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            sync: SyncMode::Batch,
            sync_interval: Dur::secs(1),
            checkpoint_interval: Dur::mins(5),
            segment_size: ByteSize::mib(128),
        }
    }
}

/// A role a process can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Distributor,
    Ingester,
    Querier,
    QueryFrontend,
    Compactor,
    Ruler,
}

impl Role {
    pub const ALL: [Role; 6] =
        [Role::Distributor, Role::Ingester, Role::Querier, Role::QueryFrontend, Role::Compactor, Role::Ruler];

    pub fn name(self) -> &'static str {
        match self {
            Role::Distributor => "distributor",
            Role::Ingester => "ingester",
            Role::Querier => "querier",
            Role::QueryFrontend => "query-frontend",
            Role::Compactor => "compactor",
            Role::Ruler => "ruler",
        }
    }
}

/// The set of roles given by `target`: `all` or a comma list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets(BTreeSet<Role>);

impl Default for Targets {
    fn default() -> Self {
        Self(Role::ALL.into_iter().collect())
    }
}

impl Targets {
    pub fn has(&self, r: Role) -> bool {
        self.0.contains(&r)
    }

    /// Whether the process answers queries: a querier, or a query frontend (which also reads
    /// ingesters and the store itself for `tail`).
    pub fn serves_queries(&self) -> bool {
        self.has(Role::Querier) || self.has(Role::QueryFrontend)
    }

    pub fn is_all(&self) -> bool {
        self.0.len() == Role::ALL.len()
    }
}

impl FromStr for Targets {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = BTreeSet::new();
        for part in s.split(',').map(str::trim) {
            match part {
                "all" => out.extend(Role::ALL),
                "distributor" => drop(out.insert(Role::Distributor)),
                "ingester" => drop(out.insert(Role::Ingester)),
                "querier" => drop(out.insert(Role::Querier)),
                "query-frontend" => drop(out.insert(Role::QueryFrontend)),
                "compactor" => drop(out.insert(Role::Compactor)),
                "ruler" => drop(out.insert(Role::Ruler)),
                other => {
                    return Err(format!(
                        "unknown target {other:?}: expected all, distributor, ingester, querier, query-frontend, compactor or ruler"
                    ));
                }
            }
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("all");
        }
        let names: Vec<_> = self.0.iter().map(|r| r.name()).collect();
        f.write_str(&names.join(","))
    }
}

impl Serialize for Targets {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Targets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing config file {path}: {msg}")]
    Syntax { path: PathBuf, msg: String },
    #[error("config key {key}: {msg}")]
    Key { key: String, msg: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads the file (if any), applies flag overrides (`(yaml key path, value tree)` pairs) and
    /// validates the result.
    pub fn load(
        file: Option<&Path>,
        expand_env: bool,
        overrides: &[(Vec<String>, serde_json::Value)],
    ) -> Result<Config, ConfigError> {
        let mut tree = match file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
                let text = if expand_env { expand_env_vars(&text) } else { text };
                let value: serde_json::Value = serde_norway::from_str(&text)
                    .map_err(|e| ConfigError::Syntax { path: path.into(), msg: e.to_string() })?;
                if value.is_null() { serde_json::Value::Object(Default::default()) } else { value }
            }
            None => serde_json::Value::Object(Default::default()),
        };
        for (path, value) in overrides {
            set_path(&mut tree, path, value.clone());
        }
        let cfg = Self::from_tree(tree)?;
        cfg.validate().map_err(ConfigError::Invalid)?;
        Ok(cfg)
    }

    /// Deserializes a configuration tree, naming the full key of any error.
    pub fn from_tree(tree: serde_json::Value) -> Result<Config, ConfigError> {
        serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Key { key: if key == "." { "(root)".into() } else { key }, msg: e.into_inner().to_string() }
        })
    }

    /// Cross-field checks; messages name the YAML key.
    pub fn validate(&self) -> Result<(), String> {
        self.limits.validate("limits")?;
        self.http.tls_config.validate("http.tls_config")?;
        self.grpc.tls_config.validate("grpc.tls_config")?;
        self.frontend_worker.grpc_client_config.validate("frontend_worker.grpc_client_config")?;
        self.pattern_ingester.validate("pattern_ingester")?;
        crate::limits::TenantLimits::new(self.limits.clone(), &self.overrides)?;
        let ing = &self.ingester;
        if ing.chunk_block_size.bytes() < 1024 {
            return Err("ingester.chunk_block_size must be at least 1KiB".into());
        }
        if ing.chunk_target_size < ing.chunk_block_size {
            return Err("ingester.chunk_target_size must be at least ingester.chunk_block_size".into());
        }
        if ing.max_chunk_age.get().is_zero() {
            return Err("ingester.max_chunk_age must be greater than 0".into());
        }
        if ing.chunk_idle_period.get().is_zero() {
            return Err("ingester.chunk_idle_period must be greater than 0".into());
        }
        if ing.flush_check_period.get().is_zero() {
            return Err("ingester.flush_check_period must be greater than 0".into());
        }
        if ing.concurrent_flushes == 0 {
            return Err("ingester.concurrent_flushes must be at least 1".into());
        }
        if ing.wal.sync == SyncMode::Interval && ing.wal.sync_interval.get().is_zero() {
            return Err("ingester.wal.sync_interval must be greater than 0 with ingester.wal.sync: interval".into());
        }
        if ing.wal.checkpoint_interval.get().is_zero() {
            return Err("ingester.wal.checkpoint_interval must be greater than 0".into());
        }
        if ing.wal.segment_size.bytes() < 64 * 1024 {
            return Err("ingester.wal.segment_size must be at least 64KiB".into());
        }
        if self.querier.max_concurrent == 0 {
            return Err("querier.max_concurrent must be at least 1".into());
        }
        if self.distributor.max_recv_msg_size.bytes() == 0 {
            return Err("distributor.max_recv_msg_size must be greater than 0".into());
        }
        let needs_ingesters =
            self.target.has(Role::Distributor) || self.target.serves_queries() || self.target.has(Role::Ruler);
        if needs_ingesters && !self.target.has(Role::Ingester) && !self.distributed() {
            return Err(format!(
                "target {} reaches ingesters in other processes, which needs a shared ring: set ring.store: etcd (the in-memory ring only holds an ingester of this process)",
                self.target
            ));
        }
        if self.grpc.max_recv_msg_size.bytes() < 1 << 20 {
            return Err("grpc.max_recv_msg_size must be at least 1MiB".into());
        }
        self.ingester_client.validate()?;
        self.frontend_worker.validate()?;
        self.query_range.validate()?;
        self.compactor.validate()?;
        self.ruler.validate()?;
        self.storage.validate()?;
        self.instance.validate()?;
        self.ring.validate()?;
        self.replication_factor.validate()?;
        Ok(())
    }

    /// Whether the roles run apart and meet through a shared ring (`ring.store: etcd`): the
    /// distributor and querier then reach ingesters over gRPC, even one in the same process.
    pub fn distributed(&self) -> bool {
        self.ring.store == crate::ring::StoreKind::Etcd
    }

    /// The WAL directory: `ingester.wal.dir`, or `<data.dir>/wal`.
    pub fn wal_dir(&self) -> PathBuf {
        self.ingester.wal.dir.clone().unwrap_or_else(|| self.data.dir.join("wal"))
    }

    /// The effective configuration as YAML, as served on `/config`.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Overwrites the value at `path` in `tree`, creating intermediate objects.
fn set_path(tree: &mut serde_json::Value, path: &[String], value: serde_json::Value) {
    let mut cur = tree;
    for key in path {
        if !cur.is_object() {
            *cur = serde_json::Value::Object(Default::default());
        }
        cur = cur.as_object_mut().expect("just made an object").entry(key.clone()).or_insert(serde_json::Value::Null);
    }
    *cur = value;
}

/// Deep-merges `over` into `base`: objects merge key by key, anything else replaces.
pub fn merge_json(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                merge_json(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` with environment values (empty when unset).
fn expand_env_vars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let spec = &after[..end];
                let (name, default) = match spec.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (spec, None),
                };
                match std::env::var(name) {
                    Ok(v) if !v.is_empty() || default.is_none() => out.push_str(&v),
                    _ => out.push_str(default.unwrap_or("")),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
