//! One instance's life in a ring: register, join, heartbeat, leave.
//!
//! ```text
//!   register()          set_state(Active)          set_state(Leaving)     leave()
//! ──────────▶ PENDING ─▶ JOINING ──────────────────▶ ACTIVE ─────────────▶ LEAVING ─────▶ (removed)
//!            (tokens chosen in the same step)   ready from here on      flush meanwhile
//! ```
//!
//! The lifecycler owns its instance's entry: every write is a compare-and-swap of the ring that
//! changes only that entry and writes the lifecycler's own idea of it (state, tokens, address,
//! zone, heartbeat). So a heartbeat also repairs the entry — re-adding it if it was forgotten
//! while this instance was cut off, restoring a state change whose write failed.
//!
//! While the store is unreachable the instance keeps serving with the state it has: heartbeats
//! fail, are logged and retried every period; `register` retries until it succeeds or the
//! lifecycler is stopped.
//!
//! Tokens come from, in order: the tokens file (a restart keeps its ranges); the ring's existing
//! entry for this ID (tokens the operator reserved, or a previous run's when the file was lost);
//! the spread-minimizing tokens of the StatefulSet ordinal in the ID (`ingester-7`); random tokens
//! avoiding every token already in the ring. Whatever was chosen is written to the tokens file.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::kv::TypedKv;
use super::model::{Clock, InstanceDesc, InstanceState, RingDesc};
use super::tokens::{load_tokens_file, parse_ordinal, random_tokens, save_tokens_file, spread_minimizing_tokens};
use super::{RingError, model};

/// Longest pause between attempts of a write that keeps failing (registering, state changes).
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(5);

/// What a lifecycler registers and how often it heartbeats.
#[derive(Clone, Debug, PartialEq)]
pub struct LifecyclerConfig {
    /// The full KV key of the ring (`ring.prefix` + ring name).
    pub ring_key: String,
    /// Instance ID.
    pub id: String,
    /// Address to register.
    pub addr: String,
    /// Zone; empty for none.
    pub zone: String,
    /// Tokens to hold; 0 for rings used only to count members (distributors).
    pub num_tokens: usize,
    /// Where the tokens are kept across restarts; `None`: nowhere.
    pub tokens_file: Option<PathBuf>,
    /// Heartbeat period.
    pub heartbeat_period: Duration,
}

/// How the tokens of a registration were chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// Read from the tokens file.
    File,
    /// Already in the ring under this ID.
    Ring,
    /// Spread-minimizing tokens of the ordinal in the instance ID.
    Ordinal(u32),
    /// Random.
    Random,
    /// No tokens wanted.
    None,
}

/// One instance's membership of a ring. Single use: once it left or was stopped, make a new one
/// to join again.
#[derive(Debug)]
pub struct Lifecycler {
    /// What to register.
    cfg: LifecyclerConfig,
    /// The ring store.
    kv: TypedKv<RingDesc>,
    /// Time of heartbeats.
    clock: Arc<dyn Clock>,
    /// The entry as this instance wants it; written on every heartbeat.
    me: Mutex<Local>,
    /// The state, for readiness and waiting.
    state_tx: watch::Sender<InstanceState>,
    /// Serializes this lifecycler's writes so a heartbeat never races a state change.
    write_lock: tokio::sync::Mutex<()>,
    /// Stops the heartbeat loop and any retrying write.
    stop: CancellationToken,
    /// Heartbeats that failed since the last one that succeeded.
    failures: AtomicU64,
}

#[derive(Debug, Clone)]
struct Local {
    /// The state to write.
    state: InstanceState,
    /// The tokens; empty until registered.
    tokens: Vec<u32>,
    /// Registration time (ms); 0 until registered.
    registered_ms: i64,
    /// Whether register() has completed.
    registered: bool,
}

impl Lifecycler {
    /// A lifecycler for `cfg.id`; nothing is written until [`Lifecycler::register`].
    pub fn new(cfg: LifecyclerConfig, kv: TypedKv<RingDesc>, clock: Arc<dyn Clock>) -> Arc<Self> {
        let (state_tx, _) = watch::channel(InstanceState::Pending);
        Arc::new(Self {
            cfg,
            kv,
            clock,
            me: Mutex::new(Local {
                state: InstanceState::Pending,
                tokens: Vec::new(),
                registered_ms: 0,
                registered: false,
            }),
            state_tx,
            write_lock: tokio::sync::Mutex::new(()),
            stop: CancellationToken::new(),
            failures: AtomicU64::new(0),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LifecyclerConfig {
        &self.cfg
    }

    /// The state this instance is in (as it last wrote it successfully).
    pub fn state(&self) -> InstanceState {
        *self.state_tx.borrow()
    }

    /// A receiver that sees every state change.
    pub fn subscribe(&self) -> watch::Receiver<InstanceState> {
        self.state_tx.subscribe()
    }

    /// Ready means ACTIVE in the ring.
    pub fn is_ready(&self) -> bool {
        self.state() == InstanceState::Active
    }

    /// The tokens (empty before registering).
    pub fn tokens(&self) -> Vec<u32> {
        self.me.lock().tokens.clone()
    }

    /// Heartbeats that failed in a row (0 when the last one succeeded).
    pub fn consecutive_heartbeat_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Joins the ring: writes the entry as PENDING, then chooses tokens against the ring as it
    /// is and moves to JOINING with them in one compare-and-swap, and stores the tokens in the
    /// tokens file. Retries while the store is unreachable, until [`Lifecycler::stop`].
    pub async fn register(&self) -> Result<TokenSource, RingError> {
        let _w = self.write_lock.lock().await;
        let from_file = match &self.cfg.tokens_file {
            Some(p) if self.cfg.num_tokens > 0 => load_tokens_file(p)?,
            _ => None,
        };
        // Step 1: visible as PENDING (keeping tokens a previous run or the operator left).
        self.retrying("register", || async {
            let now = self.clock.now_ms();
            self.kv
                .cas(&self.cfg.ring_key, |ring: Option<RingDesc>| {
                    let mut ring = ring.unwrap_or_default();
                    let entry = ring.instances.entry(self.cfg.id.clone()).or_default();
                    entry.addr = self.cfg.addr.clone();
                    entry.zone = self.cfg.zone.clone();
                    entry.set_state(InstanceState::Pending);
                    entry.heartbeat_ms = now;
                    entry.registered_ms = now;
                    Ok::<_, RingError>(Some(ring))
                })
                .await
                .map(|_| ())
        })
        .await?;
        // Step 2: tokens and JOINING.
        let source = Arc::new(Mutex::new(TokenSource::None));
        let chosen = self
            .retrying("join", || {
                let from_file = from_file.clone();
                let source = Arc::clone(&source);
                async move {
                    let now = self.clock.now_ms();
                    let ring = self
                        .kv
                        .cas(&self.cfg.ring_key, |ring: Option<RingDesc>| {
                            let mut ring = ring.unwrap_or_default();
                            let (tokens, src) = self.choose_tokens(&ring, from_file.clone());
                            *source.lock() = src;
                            let entry = ring.instances.entry(self.cfg.id.clone()).or_default();
                            entry.addr = self.cfg.addr.clone();
                            entry.zone = self.cfg.zone.clone();
                            entry.tokens = tokens;
                            entry.set_state(InstanceState::Joining);
                            entry.heartbeat_ms = now;
                            if entry.registered_ms == 0 {
                                entry.registered_ms = now;
                            }
                            Ok::<_, RingError>(Some(ring))
                        })
                        .await?;
                    let entry = ring.and_then(|r| r.instances.get(&self.cfg.id).cloned());
                    entry.ok_or_else(|| RingError::NotFound(self.cfg.id.clone()))
                }
            })
            .await?;
        let source = *source.lock();
        if let (Some(path), false) = (&self.cfg.tokens_file, chosen.tokens.is_empty()) {
            save_tokens_file(path, &chosen.tokens)?;
        }
        {
            let mut me = self.me.lock();
            me.tokens = chosen.tokens.clone();
            me.registered_ms = chosen.registered_ms;
            me.state = InstanceState::Joining;
            me.registered = true;
        }
        self.state_tx.send_replace(InstanceState::Joining);
        tracing::info!(
            ring = %self.cfg.ring_key,
            id = %self.cfg.id,
            tokens = chosen.tokens.len(),
            source = ?source,
            "joined the ring"
        );
        Ok(source)
    }

    /// Where this instance's tokens come from, given the ring as it is now.
    fn choose_tokens(&self, ring: &RingDesc, from_file: Option<Vec<u32>>) -> (Vec<u32>, TokenSource) {
        let n = self.cfg.num_tokens;
        if n == 0 {
            return (Vec::new(), TokenSource::None);
        }
        if let Some(tokens) = from_file {
            if tokens.len() != n {
                tracing::warn!(
                    file = tokens.len(),
                    configured = n,
                    "tokens file holds a different number of tokens than ring.num_tokens; keeping the file's"
                );
            }
            return (tokens, TokenSource::File);
        }
        if let Some(existing) = ring.instances.get(&self.cfg.id).filter(|i| !i.tokens.is_empty()) {
            let mut tokens = existing.tokens.clone();
            tokens.sort_unstable();
            tokens.dedup();
            return (tokens, TokenSource::Ring);
        }
        if let Some(ordinal) = parse_ordinal(&self.cfg.id) {
            return (spread_minimizing_tokens(ordinal, &self.cfg.zone, n), TokenSource::Ordinal(ordinal));
        }
        let taken = ring.taken_tokens(&self.cfg.id);
        (random_tokens(n, &taken, &mut rand::rng()), TokenSource::Random)
    }

    /// Moves to `state` (retrying while the store is unreachable, until stopped). The new state
    /// counts only once written: a caller waiting for ACTIVE to become ready is ready when the
    /// ring says so.
    pub async fn set_state(&self, state: InstanceState) -> Result<(), RingError> {
        let _w = self.write_lock.lock().await;
        if !self.me.lock().registered {
            return Err(RingError::Invalid(format!(
                "{} is not registered; cannot move to {}",
                self.cfg.id,
                state.name()
            )));
        }
        let mut desired = self.me.lock().clone();
        desired.state = state;
        self.retrying("state change", || self.write_entry(&desired)).await?;
        self.me.lock().state = state;
        self.state_tx.send_replace(state);
        tracing::info!(ring = %self.cfg.ring_key, id = %self.cfg.id, state = state.name(), "ring state changed");
        Ok(())
    }

    /// Writes one heartbeat now (the loop of [`Lifecycler::run_heartbeat`] calls this).
    pub async fn heartbeat(&self) -> Result<(), RingError> {
        let _w = self.write_lock.lock().await;
        let me = self.me.lock().clone();
        if !me.registered {
            return Ok(());
        }
        self.write_entry(&me).await
    }

    /// Writes the entry as `me` says, with a fresh heartbeat.
    async fn write_entry(&self, me: &Local) -> Result<(), RingError> {
        let now = self.clock.now_ms();
        self.kv
            .cas(&self.cfg.ring_key, |ring: Option<RingDesc>| {
                let mut ring = ring.unwrap_or_default();
                let entry = ring.instances.entry(self.cfg.id.clone()).or_insert_with(|| {
                    tracing::warn!(id = %self.cfg.id, "own entry missing from the ring (forgotten?); adding it back");
                    InstanceDesc::default()
                });
                entry.addr = self.cfg.addr.clone();
                entry.zone = self.cfg.zone.clone();
                entry.tokens = me.tokens.clone();
                entry.set_state(me.state);
                entry.heartbeat_ms = now;
                entry.registered_ms = me.registered_ms;
                Ok::<_, RingError>(Some(ring))
            })
            .await
            .map(|_| ())
    }

    /// Heartbeats every `heartbeat_period` until `shutdown` fires or [`Lifecycler::stop`] is
    /// called. Failures are logged and counted; the next period tries again.
    pub async fn run_heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.heartbeat_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.heartbeat().await {
                Ok(()) => {
                    let failed = self.failures.swap(0, Ordering::Relaxed);
                    if failed > 0 {
                        tracing::info!(id = %self.cfg.id, failed, "ring heartbeat succeeded again");
                    }
                }
                Err(err) => {
                    let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(id = %self.cfg.id, %err, consecutive = n, "ring heartbeat failed");
                }
            }
        }
    }

    /// Leaves the ring: LEAVING (if not already), then removes the entry and stops heartbeats.
    /// Gives up after `timeout` (the entry then goes stale and can be forgotten).
    pub async fn leave(&self, timeout: Duration) -> Result<(), RingError> {
        let result = tokio::time::timeout(timeout, async {
            if self.state() != InstanceState::Leaving {
                self.set_state(InstanceState::Leaving).await?;
            }
            let _w = self.write_lock.lock().await;
            self.retrying("leave", || async {
                self.kv
                    .cas(&self.cfg.ring_key, |ring: Option<RingDesc>| {
                        let Some(mut ring) = ring else { return Ok::<_, RingError>(None) };
                        if ring.instances.remove(&self.cfg.id).is_none() {
                            return Ok(None);
                        }
                        Ok(Some(ring))
                    })
                    .await
                    .map(|_| ())
            })
            .await?;
            // Still under the write lock: a heartbeat queued behind the removal must not write
            // the entry back.
            self.me.lock().registered = false;
            Ok::<_, RingError>(())
        })
        .await;
        self.stop.cancel();
        match result {
            Ok(r) => {
                r?;
                tracing::info!(ring = %self.cfg.ring_key, id = %self.cfg.id, "left the ring");
                Ok(())
            }
            Err(_) => Err(RingError::Kv(super::KvError::Unavailable(format!(
                "leaving the ring did not finish within {timeout:?}"
            )))),
        }
    }

    /// Stops heartbeats and any write that is retrying, without touching the ring (a crash, as
    /// far as the ring can tell).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Runs `op` until it succeeds, fails with an error retrying cannot fix, or the lifecycler is
    /// stopped; pauses grow from 100ms to [`MAX_RETRY_BACKOFF`].
    async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, RingError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RingError>>,
    {
        let mut pause = Duration::from_millis(100);
        loop {
            if self.stop.is_cancelled() {
                return Err(RingError::Stopped);
            }
            match op().await {
                Ok(v) => return Ok(v),
                Err(RingError::Kv(e)) if e.is_retryable() => {
                    tracing::warn!(id = %self.cfg.id, err = %e, what, retry_in = ?pause, "ring write failed; retrying");
                }
                Err(e) => return Err(e),
            }
            tokio::select! {
                _ = self.stop.cancelled() => return Err(RingError::Stopped),
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(MAX_RETRY_BACKOFF);
        }
    }
}

/// The entry of `id` as a lifecycler would write it: used by tests and by the operator to
/// reserve tokens for a pod before it starts (state PENDING, heartbeat 0 so it shows as
/// UNHEALTHY until the pod registers).
pub fn reserved_entry(addr: &str, zone: &str, tokens: Vec<u32>) -> InstanceDesc {
    let mut e = InstanceDesc {
        addr: addr.to_string(),
        zone: zone.to_string(),
        tokens,
        heartbeat_ms: 0,
        registered_ms: 0,
        state: 0,
    };
    e.set_state(InstanceState::Pending);
    e
}

/// Milliseconds since the epoch now, by the system clock (for callers without a [`Clock`]).
pub fn now_ms() -> i64 {
    model::unix_ms(std::time::SystemTime::now())
}

#[cfg(test)]
#[path = "lifecycler_tests.rs"]
mod tests;
