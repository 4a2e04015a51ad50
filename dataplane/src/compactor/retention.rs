//! Which entries of a tenant are past retention: `limits.retention_period` and the
//! `limits.retention_stream` rules, with Loki's precedence.

use crate::labels::Labels;
use crate::limits::Limits;
use crate::logql::Matcher;
use crate::query::source::matches_all;

/// The retention of one tenant, compiled from its limits.
#[derive(Debug, Clone)]
pub struct TenantRetention {
    /// `retention_period` in ns; `None` keeps streams no rule matches forever.
    default: Option<i64>,
    /// The `retention_stream` rules.
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    matchers: Vec<Matcher>,
    priority: u32,
    period: i64,
}

impl TenantRetention {
    /// The retention of a tenant with `limits`. Selectors were checked when the configuration
    /// was loaded; one that does not parse here is ignored.
    pub fn new(limits: &Limits) -> Self {
        let default = Some(limits.retention_period.as_nanos_i64()).filter(|p| *p > 0);
        let rules = limits
            .retention_stream
            .iter()
            .filter_map(|r| {
                let matchers = crate::logql::parse_matchers(&r.selector).ok()?;
                Some(Rule { matchers, priority: r.priority, period: r.period.as_nanos_i64().max(1) })
            })
            .collect();
        Self { default, rules }
    }

    /// Whether nothing ever expires.
    pub fn is_unlimited(&self) -> bool {
        self.default.is_none() && self.rules.is_empty()
    }

    /// How long (ns) a stream with `labels` is kept, `None` for forever. Of the rules matching
    /// the stream, the highest priority wins and among equals the shortest period; with no
    /// matching rule the tenant's `retention_period` applies.
    pub fn period(&self, labels: &Labels) -> Option<i64> {
        let best = self
            .rules
            .iter()
            .filter(|r| matches_all(labels, &r.matchers))
            .max_by(|a, b| a.priority.cmp(&b.priority).then(b.period.cmp(&a.period)));
        match best {
            Some(r) => Some(r.period),
            None => self.default,
        }
    }

    /// The oldest timestamp (ns) of a stream still inside retention at `now`: entries before
    /// it are expired. `None` when the stream is kept forever.
    pub fn cutoff(&self, labels: &Labels, now: i64) -> Option<i64> {
        self.period(labels).map(|p| now.saturating_sub(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::Dur;
    use crate::labels::Label;
    use crate::limits::StreamRetention;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_vec(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect()).sorted()
    }

    fn rule(selector: &str, priority: u32, hours: u64) -> StreamRetention {
        StreamRetention { selector: selector.into(), priority, period: Dur::hours(hours) }
    }

    #[test]
    fn highest_priority_then_shortest_period_then_tenant_default() {
        let limits = Limits {
            retention_period: Dur::hours(744),
            retention_stream: vec![
                rule(r#"{namespace="dev"}"#, 1, 24),
                rule(r#"{namespace="dev", app="api"}"#, 2, 72),
                rule(r#"{namespace=~"dev|prod"}"#, 1, 12),
            ],
            ..Limits::default()
        };
        let r = TenantRetention::new(&limits);
        let h = |n: i64| n * 3_600_000_000_000;
        assert_eq!(r.period(&labels(&[("namespace", "dev"), ("app", "api")])), Some(h(72)));
        assert_eq!(r.period(&labels(&[("namespace", "dev"), ("app", "web")])), Some(h(12)));
        assert_eq!(r.period(&labels(&[("namespace", "prod")])), Some(h(12)));
        assert_eq!(r.period(&labels(&[("namespace", "qa")])), Some(h(744)));
        assert_eq!(r.cutoff(&labels(&[("namespace", "qa")]), h(1000)), Some(h(256)));
    }

    #[test]
    fn zero_retention_period_keeps_unmatched_streams_forever() {
        let limits = Limits { retention_stream: vec![rule(r#"{a="b"}"#, 0, 1)], ..Limits::default() };
        let r = TenantRetention::new(&limits);
        assert!(!r.is_unlimited());
        assert_eq!(r.period(&labels(&[("a", "c")])), None);
        assert_eq!(r.period(&labels(&[("a", "b")])), Some(3_600_000_000_000));
        assert!(TenantRetention::new(&Limits::default()).is_unlimited());
    }
}
