//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator replicas
//! exactly one reconciles.
//!
//! The protocol is the one Kubernetes' own controllers follow: the holder writes its identity
//! and renews `renewTime` every [`LeaderConfig::retry_period`]; another replica takes the Lease
//! over only when `renewTime + leaseDurationSeconds` has passed. Every write is a `replace` with
//! the `resourceVersion` that was read, so two candidates racing for the same Lease cannot both
//! win: the loser gets a 409 Conflict. A leader that cannot renew within
//! [`LeaderConfig::renew_deadline`] stops leading before its Lease can expire, so two leaders
//! never overlap.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Timing of leader election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Name of the Lease.
    pub lease_name: String,
    /// Identity written into the Lease (the pod name).
    pub identity: String,
    /// How long a Lease stays valid after its last renewal.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long stops leading; less than `lease_duration`.
    pub renew_deadline: Duration,
    /// How often the Lease is renewed, and how often a follower tries to acquire it.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Kubernetes' usual timing (15s lease, 10s deadline, 2s retry) for `identity`.
    pub fn new(lease_name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Why leader election stopped.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be read or written.
    #[error("lease {name}: {source}")]
    Api {
        /// The Lease.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Leadership was lost (not renewed in time, or taken over); the process should exit so
    /// that it restarts as a follower with a clean state.
    #[error("lost the leader lease {0}")]
    Lost(String),
}

/// What a candidate should do with a Lease it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It holds the Lease: renew it.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it over.
    Acquire,
    /// Someone else holds a valid Lease.
    Wait {
        /// The current holder.
        holder: String,
    },
}

/// Decides from a Lease's spec (pure: the time is a parameter).
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let Some(last) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return Decision::Acquire;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    if last.0 + duration < now { Decision::Acquire } else { Decision::Wait { holder } }
}

/// One candidate's handle on the Lease.
#[derive(Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    config: LeaderConfig,
}

impl std::fmt::Debug for LeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseLock").field("config", &self.config).finish_non_exhaustive()
    }
}

impl LeaseLock {
    /// A lock on the Lease `config.lease_name` served by `api` (namespaced).
    pub fn new(api: Api<Lease>, config: LeaderConfig) -> Self {
        Self { api, config }
    }

    fn err(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api { name: self.config.lease_name.clone(), source }
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// Acquires or renews the Lease once; true when this candidate holds it afterwards.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<bool, LeaderError> {
        let name = &self.config.lease_name;
        let Some(mut lease) = self.api.get_opt(name).await.map_err(|e| self.err(e))? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(self.duration_secs()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.err(e)),
            };
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        match decide(Some(&spec), &self.config.identity, now) {
            Decision::Wait { .. } => return Ok(false),
            Decision::Renew => {
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(self.duration_secs());
            }
            Decision::Acquire => {
                spec.holder_identity = Some(self.config.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(self.duration_secs());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        lease.spec = Some(spec);
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            // Someone wrote the Lease since we read it: they win this round.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Gives the Lease up if this candidate holds it, so a successor does not wait for expiry.
    pub async fn release(&self, now: Timestamp) -> Result<(), LeaderError> {
        let name = &self.config.lease_name;
        let Some(mut lease) = self.api.get_opt(name).await.map_err(|e| self.err(e))? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(now));
        lease.spec = Some(spec);
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }
}

/// Waits until this candidate holds the Lease, then runs `lead` with a token that is cancelled
/// when leadership is lost or `shutdown` is cancelled, renewing the Lease meanwhile.
///
/// Returns `Ok` after a shutdown (the Lease is released), [`LeaderError::Lost`] when the Lease
/// could not be renewed in time.
pub async fn run_as_leader<F, Fut>(
    lock: LeaseLock,
    metrics: &Metrics,
    shutdown: CancellationToken,
    lead: F,
) -> Result<(), LeaderError>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let retry = lock.config.retry_period;
    loop {
        match lock.try_acquire_or_renew(Timestamp::now()).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot acquire the leader lease"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(retry) => {}
        }
    }
    tracing::info!(lease = %lock.config.lease_name, identity = %lock.config.identity, "became the leader");
    metrics.leader.set(1);
    let leading = shutdown.child_token();
    let renewer = tokio::spawn(renew_until_lost(lock.clone(), leading.clone()));
    lead(leading.clone()).await;
    leading.cancel();
    metrics.leader.set(0);
    let lost = matches!(renewer.await, Ok(true));
    if lost {
        return Err(LeaderError::Lost(lock.config.lease_name.clone()));
    }
    lock.release(Timestamp::now()).await
}

/// Renews the Lease every retry period until `leading` is cancelled; cancels it and returns true
/// when a renewal did not succeed within the renew deadline.
async fn renew_until_lost(lock: LeaseLock, leading: CancellationToken) -> bool {
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = leading.cancelled() => return false,
            _ = tokio::time::sleep(lock.config.retry_period) => {}
        }
        match lock.try_acquire_or_renew(Timestamp::now()).await {
            Ok(true) => last_renewal = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(lease = %lock.config.lease_name, "the leader lease was taken over");
                leading.cancel();
                return true;
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the leader lease"),
        }
        if last_renewal.elapsed() > lock.config.renew_deadline {
            tracing::error!(lease = %lock.config.lease_name, "the leader lease was not renewed in time");
            leading.cancel();
            return true;
        }
    }
}

#[cfg(test)]
mod tests;
