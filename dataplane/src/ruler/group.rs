//! One rule group at work: its rules evaluated in order every `interval` through the querier,
//! alerts handed to the notifier, recorded samples to the remote-write queue, and the alert
//! state saved so that a restart or another ruler taking the group over carries on with it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::alerting::{Alert, AlertingRule};
use super::remote_write::{Label as WireLabel, Sample as WireSample, TimeSeries};
use super::rules::{Rule, RuleGroup};
use crate::entry::Direction;
use crate::labels::Labels;
use crate::query::{QueryParams, Value};

/// Which group: tenant, namespace (rule file) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub tenant: String,
    pub namespace: String,
    pub name: String,
}

impl GroupKey {
    /// Prometheus' `rule_group` label: `file;group`.
    pub fn rule_group(&self) -> String {
        format!("{};{}", self.namespace, self.name)
    }

    /// The ring key of the group.
    pub fn token(&self) -> u32 {
        let h = xxhash_rust::xxh3::xxh3_64(format!("{}\0{}\0{}", self.tenant, self.namespace, self.name).as_bytes());
        (h ^ (h >> 32)) as u32
    }
}

/// The outcome of a rule's last evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// A rule and what its evaluations left.
#[derive(Debug, Clone)]
pub struct RuleRuntime {
    pub kind: RuleKind,
    pub health: Health,
    pub last_error: String,
    /// ms since the epoch; 0 before the first evaluation.
    pub last_eval_ms: i64,
    pub eval_seconds: f64,
}

#[derive(Debug, Clone)]
pub enum RuleKind {
    Alerting(AlertingRule),
    Recording(Rule),
}

impl RuleRuntime {
    pub fn rule(&self) -> &Rule {
        match &self.kind {
            RuleKind::Alerting(a) => &a.rule,
            RuleKind::Recording(r) => r,
        }
    }
}

/// What is saved of a group between evaluations by different processes.
#[derive(Debug, Serialize, Deserialize)]
struct SavedState {
    saved_at_ms: i64,
    /// Alerts by rule position and name.
    rules: Vec<SavedRule>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedRule {
    index: usize,
    name: String,
    alerts: Vec<Alert>,
}

/// The state saved last, and when: saved again when it changes or once a minute.
#[derive(Debug, Default)]
struct LastSave {
    identity: String,
    at: Option<Instant>,
}

/// A running group.
#[derive(Debug)]
pub struct Group {
    pub key: GroupKey,
    pub def: RuleGroup,
    pub interval: Duration,
    pub rules: Mutex<Vec<RuleRuntime>>,
    /// Last evaluation: start (ms since the epoch) and duration.
    pub last_eval: Mutex<Option<(i64, f64)>>,
    last_save: Mutex<LastSave>,
}

impl Group {
    pub fn new(key: GroupKey, def: RuleGroup, default_interval: Duration) -> Self {
        let interval = def.interval.map_or(default_interval, |d| d.get());
        let rules = def
            .rules
            .iter()
            .map(|r| RuleRuntime {
                kind: if r.is_alert() {
                    RuleKind::Alerting(AlertingRule::new(r.clone()))
                } else {
                    RuleKind::Recording(r.clone())
                },
                health: Health::Unknown,
                last_error: String::new(),
                last_eval_ms: 0,
                eval_seconds: 0.0,
            })
            .collect();
        Self { key, def, interval, rules: Mutex::new(rules), last_eval: Mutex::new(None), last_save: Mutex::default() }
    }

    /// Restores saved alerts, evaluates every `interval` until `stop`, then saves the state.
    pub(crate) async fn run(self: Arc<Self>, shared: Arc<Shared>, stop: CancellationToken) {
        self.restore(&shared).await;
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            self.evaluate(&shared).await;
        }
        self.save(&shared, true).await;
    }

    async fn restore(&self, shared: &Shared) {
        let k = &self.key;
        let saved = match shared.store.load_state(&k.tenant, &k.namespace, &k.name).await {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(tenant = %k.tenant, group = %k.rule_group(), %err, "cannot read saved alert state");
                return;
            }
        };
        let Ok(state) = serde_json::from_slice::<SavedState>(&saved) else {
            tracing::warn!(tenant = %k.tenant, group = %k.rule_group(), "ignoring unreadable saved alert state");
            return;
        };
        let now = now_ms();
        let tolerance = shared.cfg.for_outage_tolerance.get();
        let mut rules = self.rules.lock();
        let mut restored = 0;
        for s in state.rules {
            if let Some(RuleKind::Alerting(a)) = rules.get_mut(s.index).map(|r| &mut r.kind)
                && a.rule.name() == s.name
            {
                restored += s.alerts.len();
                a.restore(s.alerts, state.saved_at_ms, now, tolerance);
            }
        }
        if restored > 0 {
            tracing::info!(tenant = %k.tenant, group = %k.rule_group(), alerts = restored, "restored alert state");
        }
    }

    /// Saves the alerts when they changed since the last save (or `force`, or a minute passed).
    async fn save(&self, shared: &Shared, force: bool) {
        let (identity, body) = {
            let rules = self.rules.lock();
            let mut saved = Vec::new();
            let mut identity = String::new();
            for (index, r) in rules.iter().enumerate() {
                if let RuleKind::Alerting(a) = &r.kind
                    && !a.active.is_empty()
                {
                    for al in a.active.values() {
                        identity.push_str(&format!(
                            "{index}{:?}{:?}{}{:?}{:?}{:?};",
                            al.labels,
                            al.state,
                            al.active_at_ms,
                            al.fired_at_ms.unwrap_or(0),
                            al.resolved_at_ms,
                            al.last_sent_ms
                        ));
                    }
                    saved.push(SavedRule {
                        index,
                        name: a.rule.name().to_string(),
                        alerts: a.active.values().cloned().collect(),
                    });
                }
            }
            let body = if saved.is_empty() {
                bytes::Bytes::new()
            } else {
                let state = SavedState { saved_at_ms: now_ms(), rules: saved };
                bytes::Bytes::from(serde_json::to_vec(&state).unwrap_or_default())
            };
            (identity, body)
        };
        {
            let last = self.last_save.lock();
            let fresh = last.at.is_some_and(|at| at.elapsed() < Duration::from_secs(60));
            if !force && last.identity == identity && fresh {
                return;
            }
        }
        let k = &self.key;
        match shared.store.save_state(&k.tenant, &k.namespace, &k.name, body).await {
            Ok(()) => *self.last_save.lock() = LastSave { identity, at: Some(Instant::now()) },
            Err(err) => tracing::warn!(tenant = %k.tenant, group = %k.rule_group(), %err, "cannot save alert state"),
        }
    }

    /// One evaluation of every rule, in order.
    pub(crate) async fn evaluate(&self, shared: &Shared) {
        let started = Instant::now();
        let ts_ms = now_ms();
        let ts_ns = ts_ms.saturating_mul(1_000_000);
        let params = QueryParams {
            start: ts_ns,
            end: ts_ns,
            step: 0,
            interval: 0,
            direction: Direction::Backward,
            limit: 100,
            instant: true,
        };
        let tenants = [self.key.tenant.clone()];
        let exprs: Vec<String> = self.rules.lock().iter().map(|r| r.rule().expr.clone()).collect();
        let mut series: Vec<TimeSeries> = Vec::new();
        let mut notifications = Vec::new();
        let mut failed = false;
        let resend = shared.cfg.resend_delay.get();
        for (i, expr) in exprs.iter().enumerate() {
            let rule_started = Instant::now();
            let result = match shared.querier.query(&tenants, expr, &params).await {
                Ok(out) => vector(out.value),
                Err(e) => Err(e.to_string()),
            };
            let mut rules = self.rules.lock();
            let Some(r) = rules.get_mut(i) else { break };
            let outcome = result.and_then(|samples| match &mut r.kind {
                RuleKind::Alerting(a) => {
                    a.apply(ts_ms, samples, self.def.limit)?;
                    let url = generator_url(&shared.cfg.external_url, expr);
                    notifications.extend(a.due(ts_ms, resend, self.interval, &url));
                    Ok(())
                }
                RuleKind::Recording(rule) => {
                    if self.def.limit > 0 && samples.len() > self.def.limit {
                        return Err(format!("exceeded limit of {} with {} series", self.def.limit, samples.len()));
                    }
                    series.extend(recorded(rule, samples, ts_ms));
                    Ok(())
                }
            });
            r.last_eval_ms = ts_ms;
            r.eval_seconds = rule_started.elapsed().as_secs_f64();
            match outcome {
                Ok(()) => {
                    r.health = super::group::Health::Ok;
                    r.last_error.clear();
                }
                Err(e) => {
                    failed = true;
                    tracing::warn!(tenant = %self.key.tenant, group = %self.key.rule_group(), rule = %r.rule().name(), err = %e, "rule evaluation failed");
                    r.health = Health::Err;
                    r.last_error = e;
                }
            }
        }
        if let Some(n) = &shared.notifier {
            n.send(notifications);
        }
        if let Some(q) = shared.queue.clone()
            && !series.is_empty()
        {
            let appended = tokio::task::spawn_blocking(move || q.append(series)).await;
            if let Ok(Err(err)) | Err(err) = appended.map_err(std::io::Error::other) {
                tracing::error!(%err, "cannot queue recorded samples");
                failed = true;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        *self.last_eval.lock() = Some((ts_ms, secs));
        shared.metrics.evaluated(&self.key, failed, secs);
        self.save(shared, false).await;
    }
}

/// The samples of an instant query's result: a vector, or a scalar as one unlabelled sample.
fn vector(v: Value) -> Result<Vec<(Labels, f64)>, String> {
    match v {
        Value::Vector(samples) => Ok(samples.into_iter().map(|s| ((*s.labels).clone(), s.value)).collect()),
        Value::Scalar { value, .. } => Ok(vec![(Labels::default(), value)]),
        other => Err(format!("rule result is not a vector but a {}", other.result_type())),
    }
}

/// The series a recording rule writes: each sample's labels with the rule's labels over them
/// and `__name__` set to the record name.
fn recorded(rule: &Rule, samples: Vec<(Labels, f64)>, ts_ms: i64) -> Vec<TimeSeries> {
    let name = rule.name();
    samples
        .into_iter()
        .map(|(labels, value)| {
            let mut m: BTreeMap<String, String> = labels.into_vec().into_iter().map(|l| (l.name, l.value)).collect();
            for (k, v) in &rule.labels {
                m.insert(k.clone(), v.clone());
            }
            m.insert("__name__".into(), name.to_string());
            TimeSeries {
                labels: m.into_iter().map(|(name, value)| WireLabel { name, value }).collect(),
                samples: vec![WireSample { value, timestamp: ts_ms }],
            }
        })
        .collect()
}

/// Where an alert says it came from: `<external_url>/graph?g0.expr=<expr>`, or empty.
fn generator_url(base: &str, expr: &str) -> String {
    if base.is_empty() {
        return String::new();
    }
    format!("{}/graph?g0.expr={}", base.trim_end_matches('/'), crate::testing::urlencode(expr))
}

pub(crate) fn now_ms() -> i64 {
    crate::timeutil::now_nanos() / 1_000_000
}
