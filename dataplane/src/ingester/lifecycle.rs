//! An ingester's membership of the ring and its ways out of it.
//!
//! ```text
//!  start:  register (PENDING → JOINING, tokens) → replay the WAL → ACTIVE (ready)
//!  POST /ingester/shutdown?flush=true:
//!          LEAVING → stop taking writes → flush every chunk → leave the ring → (exit)
//!  SIGTERM after POST /ingester/prepare_shutdown: the same
//!  SIGTERM otherwise:
//!          LEAVING → stop taking writes → checkpoint (or flush, with flush_on_shutdown)
//!          → stop heartbeating; the entry stays, and a restart on the same data
//!            directory takes its tokens back and replays its WAL
//! ```
//!
//! LEAVING first, so distributors stop sending writes before this ingester refuses them; it
//! still serves reads until it is gone. A flush that fails leaves the ingester in the ring (and
//! its data in memory and in the WAL): leaving with unflushed data would lose it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Ingester, IngesterError};
use crate::error::{ErrorKind, HasKind};
use crate::ring::{InstanceState, Lifecycler, RingError};

/// Why leaving failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaveError {
    #[error(transparent)]
    Ingester(#[from] IngesterError),
    #[error("leaving the ring: {0}")]
    Ring(#[from] RingError),
    #[error("{0}")]
    Io(String),
}

impl HasKind for LeaveError {
    fn kind(&self) -> ErrorKind {
        match self {
            LeaveError::Ingester(e) => e.kind(),
            LeaveError::Ring(e) => e.kind(),
            LeaveError::Io(_) => ErrorKind::Internal,
        }
    }
}

/// How to leave (the parameters of `/ingester/shutdown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaveOptions {
    /// Flush every chunk to the object store before leaving; otherwise only checkpoint, and the
    /// WAL keeps the data (for this directory's next start).
    pub flush: bool,
    /// Remove the tokens file, so a later start on this directory takes new tokens.
    pub delete_ring_tokens: bool,
}

/// An ingester in the ring.
#[derive(Debug)]
pub struct Member {
    ingester: Arc<Ingester>,
    lifecycler: Arc<Lifecycler>,
    /// How long leaving waits for the ring store.
    leave_timeout: Duration,
    /// The tokens file (removed on `delete_ring_tokens`).
    tokens_file: Option<PathBuf>,
    /// Marks that the next SIGTERM flushes and leaves; a file so that it survives a restart.
    marker: PathBuf,
    /// Whether the marker is set.
    prepared: AtomicBool,
    /// Serializes leaving; true once this ingester left the ring.
    left: tokio::sync::Mutex<bool>,
}

impl Member {
    /// `marker` is the prepare-shutdown marker file; an existing one is honoured.
    pub fn new(
        ingester: Arc<Ingester>,
        lifecycler: Arc<Lifecycler>,
        leave_timeout: Duration,
        marker: PathBuf,
    ) -> Arc<Self> {
        let prepared = marker.exists();
        if prepared {
            tracing::info!(marker = %marker.display(), "shutdown was prepared before this start: the next SIGTERM flushes and leaves the ring");
        }
        let tokens_file = lifecycler.config().tokens_file.clone();
        Arc::new(Self {
            ingester,
            lifecycler,
            leave_timeout,
            tokens_file,
            marker,
            prepared: AtomicBool::new(prepared),
            left: tokio::sync::Mutex::new(false),
        })
    }

    pub fn ingester(&self) -> &Arc<Ingester> {
        &self.ingester
    }

    pub fn lifecycler(&self) -> &Arc<Lifecycler> {
        &self.lifecycler
    }

    /// Ready: ACTIVE in the ring and taking writes.
    pub fn is_ready(&self) -> bool {
        self.lifecycler.is_ready() && self.ingester.is_ready()
    }

    /// Whether the next SIGTERM flushes and leaves.
    pub fn is_prepared(&self) -> bool {
        self.prepared.load(Ordering::SeqCst)
    }

    /// Makes the next SIGTERM flush and leave (`POST /ingester/prepare_shutdown`).
    pub fn prepare_shutdown(&self) -> Result<(), LeaveError> {
        if let Some(dir) = self.marker.parent() {
            std::fs::create_dir_all(dir).map_err(|e| LeaveError::Io(format!("creating {}: {e}", dir.display())))?;
        }
        std::fs::write(&self.marker, b"shutdown requested\n")
            .map_err(|e| LeaveError::Io(format!("writing {}: {e}", self.marker.display())))?;
        self.prepared.store(true, Ordering::SeqCst);
        tracing::info!("shutdown prepared: the next SIGTERM flushes and leaves the ring");
        Ok(())
    }

    /// Undoes [`Member::prepare_shutdown`] (`DELETE /ingester/prepare_shutdown`).
    pub fn unprepare_shutdown(&self) -> Result<(), LeaveError> {
        match std::fs::remove_file(&self.marker) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LeaveError::Io(format!("removing {}: {e}", self.marker.display()))),
        }
        self.prepared.store(false, Ordering::SeqCst);
        tracing::info!("shutdown preparation cleared");
        Ok(())
    }

    /// Stops taking writes, flushes (or checkpoints) and leaves the ring. Idempotent: a second
    /// call after the ingester left does nothing.
    pub async fn leave(&self, opts: LeaveOptions) -> Result<(), LeaveError> {
        let mut left = self.left.lock().await;
        if *left {
            return Ok(());
        }
        self.quiesce().await?;
        if opts.flush {
            tracing::info!("flushing every chunk before leaving the ring");
            let stats = self.ingester.flush(true).await?;
            tracing::info!(chunks = stats.flushed, "flushed before leaving the ring");
        } else {
            let ing = self.ingester.clone();
            tokio::task::spawn_blocking(move || ing.checkpoint())
                .await
                .map_err(|e| LeaveError::Io(format!("checkpoint task failed: {e}")))??;
        }
        self.lifecycler.leave(self.leave_timeout).await?;
        *left = true;
        if opts.delete_ring_tokens
            && let Some(path) = &self.tokens_file
        {
            match std::fs::remove_file(path) {
                Ok(()) => tracing::info!(path = %path.display(), "ring tokens file deleted"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LeaveError::Io(format!("removing {}: {e}", path.display()))),
            }
        }
        if let Err(e) = self.unprepare_shutdown() {
            tracing::warn!(err = %e, "clearing the prepare-shutdown marker failed");
        }
        Ok(())
    }

    /// The SIGTERM path: flush and leave when prepared; otherwise LEAVING, stop taking writes and
    /// stop heartbeating, keeping the ring entry for the next start. The caller then shuts the
    /// ingester down (checkpoint, close the WAL).
    pub async fn stop(&self) -> Result<(), LeaveError> {
        if self.is_prepared() {
            return self.leave(LeaveOptions { flush: true, delete_ring_tokens: false }).await;
        }
        let left = self.left.lock().await;
        if !*left {
            self.quiesce().await?;
            self.lifecycler.stop();
        }
        Ok(())
    }

    /// LEAVING in the ring (distributors stop sending writes), then refuse writes and wait for
    /// the ones in flight.
    async fn quiesce(&self) -> Result<(), LeaveError> {
        if matches!(self.lifecycler.state(), InstanceState::Active | InstanceState::Joining) {
            let set = tokio::time::timeout(self.leave_timeout, self.lifecycler.set_state(InstanceState::Leaving)).await;
            match set {
                Ok(r) => r?,
                Err(_) => tracing::warn!("the ring store did not take the LEAVING state in time; going on"),
            }
        }
        self.ingester.stop_accepting();
        let ing = self.ingester.clone();
        tokio::task::spawn_blocking(move || ing.drain_writes())
            .await
            .map_err(|e| LeaveError::Io(format!("drain task failed: {e}")))?;
        Ok(())
    }
}
