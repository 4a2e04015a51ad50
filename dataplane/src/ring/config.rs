//! The `instance` and `ring` sections of the configuration, and building the KV store they name.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::kv::{EtcdKv, KvError, KvStore, MemoryKv};
use super::tokens::DEFAULT_NUM_TOKENS;
use crate::config::units::Dur;
use crate::tls::ClientTlsConfig;

/// Who this process is in the ring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstanceConfig {
    /// Unique ID in the ring (`--instance.id`). Default: the host name, which in a StatefulSet is
    /// the pod name (`ingester-7`) and carries the ordinal that picks deterministic tokens.
    pub id: String,
    /// Address other instances reach this one's gRPC server at (`--instance.addr`). Default:
    /// `grpc.addr`, with an unspecified IP replaced by the host name.
    pub addr: String,
    /// Availability zone (`--instance.zone`); empty: none.
    pub zone: String,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self { id: hostname(), addr: String::new(), zone: String::new() }
    }
}

impl InstanceConfig {
    /// The address to register: `instance.addr`, or the gRPC listen address (with `0.0.0.0` /
    /// `::` replaced by the host name, which is what other pods can resolve).
    pub fn advertised_addr(&self, grpc: SocketAddr) -> String {
        if !self.addr.is_empty() {
            return self.addr.clone();
        }
        if grpc.ip().is_unspecified() { format!("{}:{}", hostname(), grpc.port()) } else { grpc.to_string() }
    }
}

/// The host name, or `localhost` when the system has none to give.
pub fn hostname() -> String {
    let h = gethostname::gethostname().to_string_lossy().trim().to_string();
    if h.is_empty() { "localhost".into() } else { h }
}

/// Which KV store holds the ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreKind {
    /// In this process's memory: every role in one process.
    #[default]
    InMemory,
    /// An etcd v3 cluster shared by every process.
    Etcd,
}

impl StoreKind {
    /// The configuration spelling.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::InMemory => "inmemory",
            StoreKind::Etcd => "etcd",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "inmemory" | "memory" => Ok(StoreKind::InMemory),
            "etcd" => Ok(StoreKind::Etcd),
            other => Err(format!("unknown ring store {other:?}: expected inmemory or etcd")),
        }
    }
}

impl Serialize for StoreKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for StoreKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The hash ring: where it is stored, heartbeats, tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RingConfig {
    /// `inmemory` or `etcd` (`--ring.store`).
    pub store: StoreKind,
    /// Prefix of every key Norn writes to the store (`--ring.prefix`), so several clusters can
    /// share one etcd.
    pub prefix: String,
    /// How often an instance writes its heartbeat (`--ring.heartbeat-period`).
    pub heartbeat_period: Dur,
    /// A heartbeat older than this makes an instance UNHEALTHY (`--ring.heartbeat-timeout`);
    /// `0s` disables the check.
    pub heartbeat_timeout: Dur,
    /// Tokens per ingester.
    pub num_tokens: usize,
    /// Where an ingester keeps its tokens across restarts; default `<data.dir>/ring/tokens.json`.
    pub tokens_file_path: Option<PathBuf>,
    /// Put the replicas of a stream in distinct `instance.zone`s.
    pub zone_awareness_enabled: bool,
    /// How long a leaving ingester waits for the ring store before giving up on removing its
    /// entry (its heartbeat then goes stale and the entry can be forgotten).
    pub leave_timeout: Dur,
    /// The etcd cluster, with `store: etcd`.
    pub etcd: EtcdConfig,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            store: StoreKind::InMemory,
            prefix: "norn/".into(),
            heartbeat_period: Dur::secs(5),
            heartbeat_timeout: Dur::mins(1),
            num_tokens: DEFAULT_NUM_TOKENS,
            tokens_file_path: None,
            zone_awareness_enabled: false,
            leave_timeout: Dur::secs(30),
            etcd: EtcdConfig::default(),
        }
    }
}

/// Connecting to etcd.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// `host:port` of the members (`--ring.etcd.endpoints a:2379,b:2379`).
    pub endpoints: Vec<String>,
    /// Deadline of establishing a connection.
    pub dial_timeout: Dur,
    /// Deadline of each request.
    pub request_timeout: Dur,
    /// Attempts of a compare-and-swap after it lost a race.
    pub max_retries: usize,
    /// User name, when etcd has authentication on.
    pub username: String,
    /// Password of `username`.
    pub password: String,
    /// TLS to the members: endpoints are then `https://` (or bare `host:port`).
    pub tls_enabled: bool,
    /// PEM client certificate, for an etcd with `--client-cert-auth`.
    pub tls_cert_path: Option<PathBuf>,
    /// PEM private key of `tls_cert_path`.
    pub tls_key_path: Option<PathBuf>,
    /// PEM certificates of the authorities the members' certificates must be signed by.
    pub tls_ca_path: Option<PathBuf>,
    /// Name the members' certificates must carry; each endpoint's host when empty.
    pub tls_server_name: String,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            dial_timeout: Dur::secs(10),
            request_timeout: Dur::secs(5),
            max_retries: super::kv::DEFAULT_CAS_RETRIES,
            username: String::new(),
            password: String::new(),
            tls_enabled: false,
            tls_cert_path: None,
            tls_key_path: None,
            tls_ca_path: None,
            tls_server_name: String::new(),
        }
    }
}

impl EtcdConfig {
    /// These settings with the `tls_*` keys of `tls`.
    pub fn with_tls(self, tls: &ClientTlsConfig) -> Self {
        Self {
            tls_enabled: tls.tls_enabled,
            tls_cert_path: tls.tls_cert_path.clone(),
            tls_key_path: tls.tls_key_path.clone(),
            tls_ca_path: tls.tls_ca_path.clone(),
            tls_server_name: tls.tls_server_name.clone(),
            ..self
        }
    }

    /// The client TLS these keys describe.
    pub fn tls(&self) -> ClientTlsConfig {
        ClientTlsConfig {
            tls_enabled: self.tls_enabled,
            tls_cert_path: self.tls_cert_path.clone(),
            tls_key_path: self.tls_key_path.clone(),
            tls_ca_path: self.tls_ca_path.clone(),
            tls_server_name: self.tls_server_name.clone(),
        }
    }
}

/// The key of the ingesters' ring.
pub const INGESTER_RING_KEY: &str = "ring";
/// The key of the distributors' ring.
pub const DISTRIBUTOR_RING_KEY: &str = "distributor";

impl RingConfig {
    /// The full key of ring `name` ([`INGESTER_RING_KEY`], [`DISTRIBUTOR_RING_KEY`]).
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The tokens file: `tokens_file_path`, or `<data_dir>/ring/tokens.json`.
    pub fn tokens_file(&self, data_dir: &Path) -> PathBuf {
        self.tokens_file_path.clone().unwrap_or_else(|| data_dir.join("ring").join("tokens.json"))
    }

    /// CAS retries of the configured store.
    pub fn cas_retries(&self) -> usize {
        self.etcd.max_retries
    }

    /// Checks the section; messages name the key (`ring.` prefixed).
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_period.get().is_zero() {
            return Err("ring.heartbeat_period must be greater than 0".into());
        }
        let timeout = self.heartbeat_timeout.get();
        if !timeout.is_zero() && timeout <= self.heartbeat_period.get() {
            return Err("ring.heartbeat_timeout must be greater than ring.heartbeat_period (or 0s to disable)".into());
        }
        if self.num_tokens == 0 || self.num_tokens > 1 << 16 {
            return Err("ring.num_tokens must be between 1 and 65536".into());
        }
        if self.prefix.contains('\0') {
            return Err("ring.prefix must not contain NUL".into());
        }
        if self.leave_timeout.get().is_zero() {
            return Err("ring.leave_timeout must be greater than 0".into());
        }
        if self.store == StoreKind::Etcd {
            if self.etcd.endpoints.is_empty() {
                return Err("ring.etcd.endpoints must list at least one host:port with ring.store: etcd".into());
            }
            if let Some(e) = self.etcd.endpoints.iter().find(|e| e.trim().is_empty() || e.contains(char::is_whitespace))
            {
                return Err(format!("ring.etcd.endpoints: invalid endpoint {e:?}"));
            }
            if self.etcd.dial_timeout.get().is_zero() {
                return Err("ring.etcd.dial_timeout must be greater than 0".into());
            }
            if self.etcd.request_timeout.get().is_zero() {
                return Err("ring.etcd.request_timeout must be greater than 0".into());
            }
            let tls = self.etcd.tls();
            tls.validate("ring.etcd")?;
            let scheme = format!("{}://", tls.scheme());
            if let Some(e) = self.etcd.endpoints.iter().find(|e| e.contains("://") && !e.starts_with(&scheme)) {
                let why =
                    if tls.tls_enabled { "ring.etcd.tls_enabled is true" } else { "ring.etcd.tls_enabled is false" };
                return Err(format!("ring.etcd.endpoints: {e} does not match TLS: {why}"));
            }
        }
        Ok(())
    }
}

impl InstanceConfig {
    /// Checks the section; messages name the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("instance.id must not be empty".into());
        }
        if self.id.len() > 253 || self.id.chars().any(|c| c.is_control()) {
            return Err("instance.id must be at most 253 printable characters".into());
        }
        if self.addr.chars().any(char::is_whitespace) {
            return Err("instance.addr must be host:port".into());
        }
        Ok(())
    }
}

/// Replicas per stream (`replication_factor`, `--replication-factor`): 3 unless configured; the
/// ring clips it to the number of ingesters, so one ingester means one replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReplicationFactor(pub usize);

impl Default for ReplicationFactor {
    fn default() -> Self {
        Self(3)
    }
}

impl ReplicationFactor {
    /// The configured value.
    pub fn get(self) -> usize {
        self.0
    }

    /// Checks the value; the message names the key.
    pub fn validate(self) -> Result<(), String> {
        if self.0 == 0 {
            return Err("replication_factor must be at least 1".into());
        }
        Ok(())
    }
}

/// How the replicas of a stream are chosen, from the whole configuration.
pub fn replication_config(cfg: &crate::config::Config) -> super::replication::ReplicationConfig {
    super::replication::ReplicationConfig {
        replication_factor: cfg.replication_factor.get(),
        zone_awareness: cfg.ring.zone_awareness_enabled,
        heartbeat_timeout: cfg.ring.heartbeat_timeout.get(),
    }
}

/// The lifecycler of this process's ingester: `ring.num_tokens` tokens kept in the tokens file,
/// in the ingester ring.
pub fn ingester_lifecycler_config(cfg: &crate::config::Config) -> super::lifecycler::LifecyclerConfig {
    super::lifecycler::LifecyclerConfig {
        ring_key: cfg.ring.key(INGESTER_RING_KEY),
        id: cfg.instance.id.clone(),
        addr: cfg.instance.advertised_addr(cfg.grpc.addr),
        zone: cfg.instance.zone.clone(),
        num_tokens: cfg.ring.num_tokens,
        tokens_file: Some(cfg.ring.tokens_file(&cfg.data.dir)),
        heartbeat_period: cfg.ring.heartbeat_period.get(),
    }
}

/// The lifecycler of this process's distributor: no tokens, in the distributor ring (whose
/// healthy ACTIVE members divide the global rate limits).
pub fn distributor_lifecycler_config(cfg: &crate::config::Config) -> super::lifecycler::LifecyclerConfig {
    super::lifecycler::LifecyclerConfig {
        ring_key: cfg.ring.key(DISTRIBUTOR_RING_KEY),
        num_tokens: 0,
        tokens_file: None,
        ..ingester_lifecycler_config(cfg)
    }
}

/// The KV store `cfg.store` names: a fresh [`MemoryKv`] (pass the same one to every role of the
/// process), or an [`EtcdKv`] (connecting lazily; etcd may be down at start).
pub async fn kv_from_config(cfg: &RingConfig) -> Result<Arc<dyn KvStore>, KvError> {
    Ok(match cfg.store {
        StoreKind::InMemory => Arc::new(MemoryKv::new()),
        StoreKind::Etcd => Arc::new(EtcdKv::connect(&cfg.etcd).await?),
    })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
