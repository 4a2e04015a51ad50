//! Token buckets for ingestion rate limits: per tenant in the distributor, per stream in the
//! ingester.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use crate::limits::{RateStrategy, TenantLimits};

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self { rate, burst, tokens: burst, last: now }
    }

    /// Changes rate and burst (limits reloaded, distributors joined), keeping the tokens.
    pub fn set_limits(&mut self, rate: f64, burst: f64) {
        self.rate = rate;
        self.burst = burst;
        self.tokens = self.tokens.min(burst);
    }

    /// Takes `n` tokens if there are enough; takes nothing otherwise. More than `burst` is never
    /// allowed.
    pub fn allow(&mut self, n: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if n <= self.tokens {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }
}

/// The per-tenant ingestion limiter of a distributor.
///
/// With the global strategy a tenant's rate is divided by the number of healthy distributors
/// (kept current by whoever watches the distributor ring); the burst stays per distributor.
#[derive(Debug)]
pub struct IngestionLimiter {
    limits: Arc<TenantLimits>,
    distributors: Arc<AtomicUsize>,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl IngestionLimiter {
    pub fn new(limits: Arc<TenantLimits>, distributors: Arc<AtomicUsize>) -> Self {
        Self { limits, distributors, buckets: Mutex::new(HashMap::new()) }
    }

    /// This distributor's share of the tenant's rate, in bytes per second.
    pub fn local_rate(&self, tenant: &str) -> f64 {
        let l = self.limits.get(tenant);
        match l.ingestion_rate_strategy {
            RateStrategy::Local => l.ingestion_rate_bytes(),
            RateStrategy::Global => l.ingestion_rate_bytes() / self.distributors.load(Ordering::Relaxed).max(1) as f64,
        }
    }

    /// Takes `bytes` from the tenant's bucket; false means the push must be refused.
    pub fn allow(&self, tenant: &str, bytes: u64, now: Instant) -> bool {
        let rate = self.local_rate(tenant);
        let burst = self.limits.get(tenant).ingestion_burst_bytes();
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(tenant.to_string()).or_insert_with(|| TokenBucket::new(rate, burst, now));
        if bucket.rate != rate || bucket.burst != burst {
            bucket.set_limits(rate, burst);
        }
        bucket.allow(bytes as f64, now)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::limits::Limits;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 300.0, t0);
        assert!(b.allow(300.0, t0));
        assert!(!b.allow(1.0, t0));
        assert!(b.allow(100.0, t0 + Duration::from_secs(1)));
        assert!(!b.allow(50.0, t0 + Duration::from_secs(1)));
        assert!(!b.allow(301.0, t0 + Duration::from_secs(100)), "more than burst never fits");
    }

    #[test]
    fn global_strategy_divides_by_distributors() {
        let limits = Arc::new(TenantLimits::new(Limits::default(), &HashMap::new()).unwrap());
        let n = Arc::new(AtomicUsize::new(1));
        let l = IngestionLimiter::new(limits, n.clone());
        assert_eq!(l.local_rate("t"), 4e6);
        n.store(4, Ordering::Relaxed);
        assert_eq!(l.local_rate("t"), 1e6);
        let t0 = Instant::now();
        assert!(l.allow("t", 6_000_000, t0));
        assert!(!l.allow("t", 1_000_000, t0));
        assert!(l.allow("u", 1_000_000, t0), "tenants have separate buckets");
    }
}
