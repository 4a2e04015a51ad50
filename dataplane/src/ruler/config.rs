//! `ruler:` settings, with Loki's names and defaults.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::units::{ByteSize, Dur};

/// The ruler: where rule groups live, how often they run, where alerts and recorded samples go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulerConfig {
    /// Alertmanager base URLs, comma-separated (`http://alertmanager:9093`); alerts are posted
    /// to `<url>/api/v2/alerts` of each. Empty: alerting rules are evaluated and listed but no
    /// notification is sent.
    pub alertmanager_url: String,
    /// Interval of a group that does not set its own `interval`.
    pub evaluation_interval: Dur,
    /// How often rule groups are re-read from the rules store and their owners recomputed from
    /// the ruler ring; a group posted through the API starts at most this late.
    pub poll_interval: Dur,
    /// Base of the `generatorURL` of alerts (Grafana's Explore link is built from it).
    pub external_url: String,
    /// A firing alert is sent again after this long, even when unchanged (Prometheus'
    /// `rules.alert.resend-delay`).
    pub resend_delay: Dur,
    /// Deadline of one request to an Alertmanager.
    pub notification_timeout: Dur,
    /// Pending alerts restored after a restart keep their `for` progress only if the ruler was
    /// down for less than this; after a longer outage they start over.
    pub for_outage_tolerance: Dur,
    /// Serve the rules API (`/loki/api/v1/rules`, `/prometheus/api/v1/rules|alerts`).
    pub enable_api: bool,
    /// Where rule groups are kept.
    pub storage: RuleStorageConfig,
    /// Where recording rules' samples are sent.
    pub remote_write: RemoteWriteConfig,
    /// The queue of recorded samples on local disk.
    pub wal: RulerWalConfig,
    /// The ruler ring, which shares the groups among rulers.
    pub ring: RulerRingConfig,
}

impl Default for RulerConfig {
    fn default() -> Self {
        Self {
            alertmanager_url: String::new(),
            evaluation_interval: Dur::mins(1),
            poll_interval: Dur::mins(1),
            external_url: String::new(),
            resend_delay: Dur::mins(1),
            notification_timeout: Dur::secs(10),
            for_outage_tolerance: Dur::hours(1),
            enable_api: true,
            storage: RuleStorageConfig::default(),
            remote_write: RemoteWriteConfig::default(),
            wal: RulerWalConfig::default(),
            ring: RulerRingConfig::default(),
        }
    }
}

/// Which store holds the rule files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleStorageType {
    /// A local directory, `<dir>/<tenant>/<namespace>.yaml`: one process, or files mounted
    /// from ConfigMaps.
    #[default]
    Local,
    /// The object store of `storage:` (`<tenant>/ruler/rules/<namespace>.yaml`): what several
    /// rulers share.
    Object,
}

/// `ruler.storage`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleStorageConfig {
    /// `local` or `object`.
    #[serde(rename = "type")]
    pub kind: RuleStorageType,
    pub local: LocalRuleStorage,
}

/// `ruler.storage.local`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalRuleStorage {
    /// The directory of rule files; default `<data.dir>/rules`.
    pub directory: Option<PathBuf>,
}

/// `ruler.remote_write`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The remote-write endpoint (`http://prometheus:9090/api/v1/write`). Empty: recording
    /// rules are evaluated but their samples are not sent anywhere.
    pub url: String,
    /// Deadline of one remote-write request.
    pub timeout: Dur,
    /// First pause after a failed send; doubles up to `max_backoff`.
    pub min_backoff: Dur,
    /// Longest pause between two attempts.
    pub max_backoff: Dur,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        Self { url: String::new(), timeout: Dur::secs(30), min_backoff: Dur::millis(30), max_backoff: Dur::secs(5) }
    }
}

/// `ruler.wal`: recorded samples wait here until the remote-write endpoint took them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulerWalConfig {
    /// Directory of the queue; default `<data.dir>/ruler-wal`.
    pub dir: Option<PathBuf>,
    /// Most bytes the queue holds on disk; past it the oldest batches are dropped (counted in
    /// `norn_ruler_remote_write_dropped_samples_total`).
    pub max_size: ByteSize,
}

impl Default for RulerWalConfig {
    fn default() -> Self {
        Self { dir: None, max_size: ByteSize::mib(512) }
    }
}

/// `ruler.ring`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulerRingConfig {
    /// Tokens each ruler takes in the ruler ring; more spread the groups more evenly.
    pub num_tokens: usize,
}

impl Default for RulerRingConfig {
    fn default() -> Self {
        Self { num_tokens: 128 }
    }
}

impl RulerConfig {
    /// Checks the section; messages name the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.evaluation_interval.get().is_zero() {
            return Err("ruler.evaluation_interval must be greater than 0".into());
        }
        if self.poll_interval.get().is_zero() {
            return Err("ruler.poll_interval must be greater than 0".into());
        }
        if self.notification_timeout.get().is_zero() {
            return Err("ruler.notification_timeout must be greater than 0".into());
        }
        for url in self.alertmanager_urls() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("ruler.alertmanager_url: {url:?} is not an http(s) URL"));
            }
        }
        let rw = &self.remote_write.url;
        if !(rw.is_empty() || rw.starts_with("http://") || rw.starts_with("https://")) {
            return Err(format!("ruler.remote_write.url: {rw:?} is not an http(s) URL"));
        }
        if self.remote_write.timeout.get().is_zero() {
            return Err("ruler.remote_write.timeout must be greater than 0".into());
        }
        if self.remote_write.min_backoff.get().is_zero()
            || self.remote_write.max_backoff < self.remote_write.min_backoff
        {
            return Err("ruler.remote_write.min_backoff must be greater than 0 and at most max_backoff".into());
        }
        if self.wal.max_size.bytes() < 64 * 1024 {
            return Err("ruler.wal.max_size must be at least 64KiB".into());
        }
        if self.ring.num_tokens == 0 || self.ring.num_tokens > 1 << 12 {
            return Err("ruler.ring.num_tokens must be between 1 and 4096".into());
        }
        Ok(())
    }

    /// The Alertmanager base URLs, without trailing `/`.
    pub fn alertmanager_urls(&self) -> Vec<String> {
        self.alertmanager_url
            .split(',')
            .map(|u| u.trim().trim_end_matches('/'))
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect()
    }
}
