//! The frontend's request queue: one FIFO per tenant, served round-robin to the queriers that
//! pull work.
//!
//! - **Fairness.** Each querier connection walks the tenants in a circle from where it last
//!   took a job, so a tenant with thousands of queued sub-queries gets one job per turn like a
//!   tenant with one.
//! - **Back-pressure.** At most `max_outstanding_per_tenant` jobs of a tenant wait in the queue;
//!   the next one is refused ([`QueueError::TooManyOutstanding`], 429 with Loki's text).
//! - **Shuffle sharding.** With `max_queriers_per_tenant = n`, a tenant's jobs go only to `n` of
//!   the connected queriers, chosen by rendezvous hashing of tenant and querier ids: stable while
//!   queriers come and go, and different for each tenant.
//! - **Cancellation.** A job whose request went away is skipped (and dropped) when it comes up.
//! - **Retries.** A job whose querier died is put back at the head of its tenant's queue.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use super::job::{Job, Outcome, SubError};

/// Loki's answer when a tenant's queue is full.
pub const TOO_MANY_OUTSTANDING: &str = "too many outstanding requests";

/// A job waiting in the queue or running on a querier, with the way back to its request.
#[derive(Debug)]
pub struct Pending {
    pub job: Job,
    /// Where the answer goes; the request is gone when the receiver is dropped.
    pub reply: oneshot::Sender<Outcome>,
    /// Cancelled when the request no longer wants the answer.
    pub cancel: CancellationToken,
    /// Times the job was handed to a querier that then failed to answer.
    pub attempts: u32,
    /// The tenant's `max_queriers_per_tenant`, for queueing it again.
    pub max_queriers: usize,
    /// When it was first queued.
    pub enqueued: Instant,
}

impl Pending {
    /// Whether anybody still waits for the answer.
    pub fn wanted(&self) -> bool {
        !self.cancel.is_cancelled() && !self.reply.is_closed()
    }
}

/// Why a job was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("{TOO_MANY_OUTSTANDING}")]
    TooManyOutstanding,
    #[error("the query frontend is shutting down")]
    Stopped,
}

#[derive(Debug, Default)]
struct TenantQueue {
    jobs: VecDeque<Pending>,
    /// `max_queriers_per_tenant` of the tenant (0: every querier).
    max_queriers: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Tenants in the order they first queued; the circle queriers walk.
    order: Vec<String>,
    queues: HashMap<String, TenantQueue>,
    /// Connected queriers by id, with their number of connections.
    queriers: HashMap<String, usize>,
    stopped: bool,
}

impl State {
    /// Whether `querier` may run jobs of a tenant that may use `max` queriers.
    fn serves(&self, tenant: &str, querier: &str, max: usize) -> bool {
        if max == 0 || max >= self.queriers.len() {
            return true;
        }
        let mine = rendezvous(tenant, querier);
        // The querier is among the `max` with the highest score for this tenant.
        let higher = self.queriers.keys().filter(|q| rendezvous(tenant, q) > mine).count();
        higher < max
    }

    /// The next wanted job for `querier`, walking tenants from `cursor`; drops unwanted jobs on
    /// the way.
    fn take(&mut self, querier: &str, cursor: &mut usize) -> Option<Pending> {
        let n = self.order.len();
        for i in 0..n {
            let at = (*cursor + 1 + i) % n;
            let tenant = &self.order[at];
            let Some(q) = self.queues.get_mut(tenant) else { continue };
            while q.jobs.front().is_some_and(|p| !p.wanted()) {
                q.jobs.pop_front();
            }
            if q.jobs.is_empty() {
                continue;
            }
            let max = q.max_queriers;
            if !self.serves(tenant, querier, max) {
                continue;
            }
            let Some(q) = self.queues.get_mut(&self.order[at]) else { continue };
            let job = q.jobs.pop_front();
            *cursor = at;
            if q.jobs.is_empty() {
                let tenant = self.order.remove(at);
                self.queues.remove(&tenant);
                // The tenant after this one is now at `at`: start the next walk there.
                *cursor = if at == 0 { self.order.len().saturating_sub(1) } else { at - 1 };
            }
            return job;
        }
        None
    }

    fn queue_mut(&mut self, tenant: &str, max_queriers: usize) -> &mut TenantQueue {
        if !self.queues.contains_key(tenant) {
            self.order.push(tenant.to_string());
        }
        let q = self.queues.entry(tenant.to_string()).or_default();
        q.max_queriers = max_queriers;
        q
    }
}

/// Rendezvous score of a querier for a tenant.
fn rendezvous(tenant: &str, querier: &str) -> u64 {
    let mut buf = Vec::with_capacity(tenant.len() + querier.len() + 1);
    buf.extend_from_slice(tenant.as_bytes());
    buf.push(0);
    buf.extend_from_slice(querier.as_bytes());
    xxhash_rust::xxh3::xxh3_64(&buf)
}

/// The queue. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct RequestQueue {
    state: Mutex<State>,
    /// Woken when a job is queued or the queue stops.
    work: Notify,
}

impl RequestQueue {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Queues a job of `tenant` (the request's tenant ids joined with `|`), refusing it when the
    /// tenant already has `max_outstanding` jobs waiting.
    pub fn enqueue(
        &self,
        tenant: &str,
        pending: Pending,
        max_outstanding: usize,
        max_queriers: usize,
    ) -> Result<(), QueueError> {
        {
            let mut st = self.state.lock();
            if st.stopped {
                return Err(QueueError::Stopped);
            }
            let q = st.queue_mut(tenant, max_queriers);
            // Jobs whose requests went away (timed out, cancelled) do not count, and go now.
            q.jobs.retain(Pending::wanted);
            if max_outstanding > 0 && q.jobs.len() >= max_outstanding {
                return Err(QueueError::TooManyOutstanding);
            }
            q.jobs.push_back(pending);
        }
        self.work.notify_waiters();
        Ok(())
    }

    /// Puts back a job whose querier failed, at the head of its tenant's queue (it has waited
    /// already); it does not count against the outstanding limit.
    pub fn requeue(&self, tenant: &str, pending: Pending, max_queriers: usize) {
        {
            let mut st = self.state.lock();
            if st.stopped {
                let _ = pending
                    .reply
                    .send(Err(SubError::new(crate::error::ErrorKind::Unavailable, QueueError::Stopped.to_string())));
                return;
            }
            st.queue_mut(tenant, max_queriers).jobs.push_front(pending);
        }
        self.work.notify_waiters();
    }

    /// Registers a connection of querier `id`; jobs are taken through the returned handle, and
    /// dropping it unregisters the connection.
    pub fn connect(self: &Arc<Self>, id: &str) -> QuerierConn {
        *self.state.lock().queriers.entry(id.to_string()).or_default() += 1;
        // Shuffle-shard sets changed: waiting connections may now serve other tenants.
        self.work.notify_waiters();
        QuerierConn { queue: self.clone(), id: id.to_string(), cursor: usize::MAX / 2 }
    }

    /// Distinct queriers connected.
    pub fn queriers(&self) -> usize {
        self.state.lock().queriers.len()
    }

    /// Jobs waiting in all (not counting those whose requests went away).
    pub fn len(&self) -> usize {
        self.state.lock().queues.values().map(|q| q.jobs.iter().filter(|p| p.wanted()).count()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops the queue: waiting jobs fail as unavailable, connections get no more work.
    pub fn stop(&self) {
        let drained: Vec<Pending> = {
            let mut st = self.state.lock();
            st.stopped = true;
            st.order.clear();
            st.queues.drain().flat_map(|(_, q)| q.jobs).collect()
        };
        for p in drained {
            let _ =
                p.reply.send(Err(SubError::new(crate::error::ErrorKind::Unavailable, QueueError::Stopped.to_string())));
        }
        self.work.notify_waiters();
    }
}

/// One querier connection's end of the queue.
#[derive(Debug)]
pub struct QuerierConn {
    queue: Arc<RequestQueue>,
    id: String,
    /// Where in the circle of tenants this connection took its last job.
    cursor: usize,
}

impl QuerierConn {
    /// The querier's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits for the next job this querier may run; `None` once the queue stopped.
    pub async fn next(&mut self) -> Option<Pending> {
        loop {
            let notified = self.queue.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.queue.state.lock();
                if st.stopped {
                    return None;
                }
                if let Some(p) = st.take(&self.id, &mut self.cursor) {
                    return Some(p);
                }
            }
            notified.await;
        }
    }

    /// The queue this connection takes from.
    pub fn queue(&self) -> &Arc<RequestQueue> {
        &self.queue
    }
}

impl Drop for QuerierConn {
    fn drop(&mut self) {
        let mut st = self.queue.state.lock();
        if let Some(n) = st.queriers.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                st.queriers.remove(&self.id);
            }
        }
        drop(st);
        self.queue.work.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::job::SubRequest;

    fn job(tenant: &str, n: i64) -> (Pending, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            tenants: vec![tenant.to_string()],
            request: SubRequest::IndexStats { selector: String::new(), from: n, through: n + 1 },
        };
        (
            Pending {
                job,
                reply: tx,
                cancel: CancellationToken::new(),
                attempts: 0,
                max_queriers: 0,
                enqueued: Instant::now(),
            },
            rx,
        )
    }

    fn from_of(p: &Pending) -> (String, i64) {
        match p.job.request {
            SubRequest::IndexStats { from, .. } => (p.job.tenants[0].clone(), from),
            _ => unreachable!(),
        }
    }

    #[tokio::test]
    async fn tenants_take_turns_whatever_their_queue_length() {
        let q = RequestQueue::new();
        let mut keep = Vec::new();
        for i in 0..50 {
            let (p, rx) = job("noisy", i);
            keep.push(rx);
            q.enqueue("noisy", p, 0, 0).unwrap();
        }
        for i in 0..3 {
            let (p, rx) = job("quiet", i);
            keep.push(rx);
            q.enqueue("quiet", p, 0, 0).unwrap();
        }
        let mut conn = q.connect("q1");
        let mut order = Vec::new();
        for _ in 0..8 {
            order.push(from_of(&conn.next().await.unwrap()));
        }
        let quiet: Vec<usize> = order.iter().enumerate().filter(|(_, (t, _))| t == "quiet").map(|(i, _)| i).collect();
        assert_eq!(quiet.len(), 3, "{order:?}");
        assert!(quiet[2] <= 6, "the quiet tenant waited behind the noisy one: {order:?}");
        // Each tenant's jobs keep their own order.
        let noisy: Vec<i64> = order.iter().filter(|(t, _)| t == "noisy").map(|(_, n)| *n).collect();
        assert_eq!(noisy, (0..noisy.len() as i64).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_full_tenant_queue_refuses_with_lokis_text_and_others_still_queue() {
        let q = RequestQueue::new();
        let mut keep = Vec::new();
        for i in 0..3 {
            let (p, rx) = job("a", i);
            keep.push(rx);
            q.enqueue("a", p, 3, 0).unwrap();
        }
        let (p, _rx) = job("a", 9);
        let err = q.enqueue("a", p, 3, 0).unwrap_err();
        assert_eq!(err.to_string(), "too many outstanding requests");
        let (p, _rx2) = job("b", 0);
        q.enqueue("b", p, 3, 0).unwrap();
        assert_eq!(q.len(), 4);
    }

    #[tokio::test]
    async fn cancelled_jobs_are_skipped() {
        let q = RequestQueue::new();
        let (p1, rx1) = job("a", 1);
        p1.cancel.cancel();
        q.enqueue("a", p1, 0, 0).unwrap();
        let (p2, rx2) = job("a", 2);
        drop(rx2); // the request went away
        q.enqueue("a", p2, 0, 0).unwrap();
        let (p3, _rx3) = job("a", 3);
        q.enqueue("a", p3, 0, 0).unwrap();
        let mut conn = q.connect("q1");
        assert_eq!(from_of(&conn.next().await.unwrap()).1, 3);
        assert!(q.is_empty());
        drop(rx1);
    }

    #[tokio::test]
    async fn a_waiting_querier_is_woken_by_new_work_and_a_requeued_job_comes_first() {
        let q = RequestQueue::new();
        let mut conn = q.connect("q1");
        let waiter = tokio::spawn(async move {
            let p = conn.next().await.unwrap();
            (conn, p)
        });
        let (p, _rx) = job("a", 1);
        q.enqueue("a", p, 0, 0).unwrap();
        let (mut conn, p) = waiter.await.unwrap();
        assert_eq!(from_of(&p).1, 1);
        let (p2, _rx2) = job("a", 2);
        q.enqueue("a", p2, 0, 0).unwrap();
        let mut again = p;
        again.attempts += 1;
        q.requeue("a", again, 0);
        let first = conn.next().await.unwrap();
        assert_eq!((from_of(&first).1, first.attempts), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn shuffle_sharding_keeps_a_tenant_on_its_subset_of_queriers() {
        let q = RequestQueue::new();
        let ids: Vec<String> = (0..4).map(|i| format!("querier-{i}")).collect();
        let conns: Vec<QuerierConn> = ids.iter().map(|id| q.connect(id)).collect();
        let serving: Vec<&String> = {
            let st = q.state.lock();
            ids.iter().filter(|id| st.serves("tenant-x", id, 2)).collect()
        };
        assert_eq!(serving.len(), 2, "exactly max_queriers_per_tenant queriers serve the tenant");
        // A querier outside the subset never gets the tenant's job.
        let mut conns = conns;
        let outside = conns.iter().position(|c| !serving.contains(&&c.id)).unwrap();
        let inside = conns.iter().position(|c| serving.contains(&&c.id)).unwrap();
        let (p, _rx) = job("tenant-x", 1);
        q.enqueue("tenant-x", p, 0, 2).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_millis(50), conns[outside].next()).await;
        assert!(got.is_err(), "a querier outside the tenant's shard took its job");
        assert_eq!(q.len(), 1);
        assert!(conns[inside].next().await.is_some());
    }

    #[tokio::test]
    async fn stopping_fails_waiting_jobs_and_ends_connections() {
        let q = RequestQueue::new();
        let (p, rx) = job("a", 1);
        q.enqueue("a", p, 0, 0).unwrap();
        q.stop();
        let err = rx.await.unwrap().unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::Unavailable);
        let mut conn = q.connect("q");
        assert!(conn.next().await.is_none());
    }
}
