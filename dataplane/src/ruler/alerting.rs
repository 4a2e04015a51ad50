//! Alerting rules: the state of each alert (pending, firing, resolved) as Prometheus keeps
//! it, and which alerts go to Alertmanager at each evaluation.
//!
//! An evaluation gives a vector; each sample is an alert identified by its labels (the
//! sample's, overridden by the rule's templated `labels`, plus `alertname`):
//! - a new alert is *pending* since that evaluation; it *fires* once it was active for `for`
//!   (at once with `for: 0`);
//! - an alert missing from the vector is dropped if pending; a firing one keeps firing for
//!   `keep_firing_for`, then *resolves* and is kept for [`RESOLVED_RETENTION`] so its
//!   resolution is sent;
//! - firing and resolved alerts are sent when new, when resolved, and every `resend_delay`;
//!   each says it is valid for four times `max(resend_delay, interval)`, so Alertmanager
//!   resolves it by itself if the ruler goes away.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rules::{AlertTemplate, Rule};
use crate::labels::Labels;

/// How long a resolved alert is kept (and re-sent) after it resolved.
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);

/// The state of an alert, or of a rule (the most severe of its alerts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn name(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule. Times are ms since the epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub value: f64,
    /// Since when the condition holds.
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub last_sent_ms: Option<i64>,
    /// The `endsAt` of a firing alert when last sent.
    pub valid_until_ms: i64,
    /// Since when a firing alert's condition is gone (with `keep_firing_for`).
    pub keep_firing_since_ms: Option<i64>,
}

/// What Alertmanager's v2 API takes for one alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// An alerting rule and its alerts.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    pub rule: Rule,
    labels: Vec<(String, AlertTemplate)>,
    annotations: Vec<(String, AlertTemplate)>,
    /// The alerts by label set.
    pub active: BTreeMap<Labels, Alert>,
}

impl AlertingRule {
    /// Builds the rule; `rule` was validated, so its templates parse.
    pub fn new(rule: Rule) -> Self {
        let compile = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| (k.clone(), AlertTemplate::new(v).unwrap_or_else(|_| AlertTemplate::plain(v))))
                .collect()
        };
        Self { labels: compile(&rule.labels), annotations: compile(&rule.annotations), rule, active: BTreeMap::new() }
    }

    /// The rule's state: its most severe alert's.
    pub fn state(&self) -> AlertState {
        self.active
            .values()
            .map(|a| a.state)
            .filter(|s| *s != AlertState::Inactive)
            .max()
            .unwrap_or(AlertState::Inactive)
    }

    /// Applies one evaluation at `ts_ms`: `samples` are the (labels, value) pairs of the vector.
    /// `limit` (0 = none) bounds the alerts; past it the evaluation fails and every alert is
    /// dropped, as Prometheus does.
    pub fn apply(&mut self, ts_ms: i64, samples: Vec<(Labels, f64)>, limit: usize) -> Result<(), String> {
        let name = self.rule.name().to_string();
        let hold = duration_ms(self.rule.hold());
        let keep = duration_ms(self.rule.keep_firing());
        let mut seen: HashSet<Labels> = HashSet::new();
        for (sample, value) in samples {
            let sample = Labels::from_vec(sample.into_vec().into_iter().filter(|l| l.name != "__name__").collect());
            let mut labels: BTreeMap<String, String> =
                sample.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
            for (k, t) in &self.labels {
                let v = t.expand(&sample, value);
                if v.is_empty() {
                    labels.remove(k);
                } else {
                    labels.insert(k.clone(), v);
                }
            }
            labels.insert("alertname".into(), name.clone());
            let annotations = self.annotations.iter().map(|(k, t)| (k.clone(), t.expand(&sample, value))).collect();
            let key = Labels::from_pairs(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            if !seen.insert(key.clone()) {
                return Err("vector contains metrics with the same labelset after applying alert labels".into());
            }
            match self.active.get_mut(&key) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.value = value;
                    a.annotations = annotations;
                    a.keep_firing_since_ms = None;
                }
                _ => {
                    let a = Alert {
                        labels,
                        annotations,
                        state: AlertState::Pending,
                        value,
                        active_at_ms: ts_ms,
                        fired_at_ms: None,
                        resolved_at_ms: None,
                        last_sent_ms: None,
                        valid_until_ms: 0,
                        keep_firing_since_ms: None,
                    };
                    self.active.insert(key, a);
                }
            }
        }
        let retention = duration_ms(RESOLVED_RETENTION);
        self.active.retain(|key, a| {
            if seen.contains(key) {
                if a.state == AlertState::Pending && ts_ms - a.active_at_ms >= hold {
                    a.state = AlertState::Firing;
                    a.fired_at_ms = Some(ts_ms);
                }
                return true;
            }
            if a.state == AlertState::Firing && keep > 0 {
                let since = *a.keep_firing_since_ms.get_or_insert(ts_ms);
                if ts_ms - since < keep {
                    return true;
                }
            }
            match a.state {
                AlertState::Pending => false,
                AlertState::Inactive => a.resolved_at_ms.is_some_and(|r| ts_ms - r < retention),
                AlertState::Firing => {
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(ts_ms);
                    a.keep_firing_since_ms = None;
                    true
                }
            }
        });
        let alerts = self.active.values().filter(|a| a.state != AlertState::Inactive).count();
        if limit > 0 && alerts > limit {
            self.active.clear();
            return Err(format!("exceeded limit of {limit} with {alerts} alerts"));
        }
        Ok(())
    }

    /// The alerts to send at `ts_ms`, marking them sent.
    pub fn due(&mut self, ts_ms: i64, resend: Duration, interval: Duration, generator_url: &str) -> Vec<Notification> {
        let resend_ms = duration_ms(resend);
        let valid_for = duration_ms(resend.max(interval)) * 4;
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            if a.state == AlertState::Pending {
                continue;
            }
            let due = match (a.last_sent_ms, a.resolved_at_ms) {
                (None, _) => true,
                (Some(sent), Some(resolved)) if sent < resolved => true,
                (Some(sent), _) => sent + resend_ms <= ts_ms,
            };
            if !due {
                continue;
            }
            a.last_sent_ms = Some(ts_ms);
            if a.state == AlertState::Firing {
                a.valid_until_ms = ts_ms + valid_for;
            }
            let ends = a.resolved_at_ms.unwrap_or(a.valid_until_ms);
            out.push(Notification {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: rfc3339_ms(a.fired_at_ms.unwrap_or(a.active_at_ms)),
                ends_at: rfc3339_ms(ends),
                generator_url: generator_url.to_string(),
            });
        }
        out
    }

    /// Takes the alerts saved by a previous owner of the group. Pending alerts keep their `for`
    /// progress and firing ones stay firing, unless the state is older than `tolerance`.
    pub fn restore(&mut self, saved: Vec<Alert>, saved_at_ms: i64, now_ms: i64, tolerance: Duration) {
        if now_ms - saved_at_ms > duration_ms(tolerance) {
            return;
        }
        for a in saved {
            let key = Labels::from_pairs(a.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            self.active.insert(key, a);
        }
    }
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `2024-01-02T03:04:05.678Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    crate::timeutil::format_rfc3339_nano(ms.saturating_mul(1_000_000))
}
