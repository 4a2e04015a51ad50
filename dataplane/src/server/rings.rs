//! The rings a process takes part in: the ingester ring (every role watches it) and the
//! distributor ring (distributors register in it to share the global rate limits).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;

use super::ServeError;
use crate::config::Config;
use crate::ring::config::{DISTRIBUTOR_RING_KEY, INGESTER_RING_KEY, distributor_lifecycler_config, replication_config};
use crate::ring::http::{RingPage, routes};
use crate::ring::kv::TypedKv;
use crate::ring::model::SystemClock;
use crate::ring::{InstanceState, Lifecycler, RingClient, RingDesc};

/// The ring store and the watched rings of this process.
pub(crate) struct Rings {
    /// The store, typed for ring values.
    pub(crate) kv: TypedKv<RingDesc>,
    /// The ingester ring: where pushes go, what queries ask, the `/ring` page.
    pub(crate) ingesters: Arc<RingClient>,
    /// The distributor ring, once this process joined it.
    pub(crate) distributors: Option<Arc<RingClient>>,
    /// Stops the watches.
    background: CancellationToken,
}

impl Rings {
    /// Connects to the store (`ring.store`) and starts watching the ingester ring. A first read
    /// is attempted so that routing starts with the ring as it is; while the store is
    /// unreachable the watch keeps retrying.
    pub(crate) async fn start(cfg: &Config, background: CancellationToken) -> Result<Rings, ServeError> {
        let store = crate::ring::config::kv_from_config(&cfg.ring).await?;
        let kv = crate::ring::ring_kv(store, cfg.ring.cas_retries());
        let repl = replication_config(cfg);
        let ingesters = RingClient::new(kv.clone(), cfg.ring.key(INGESTER_RING_KEY), repl, Arc::new(SystemClock));
        if let Err(err) = ingesters.refresh().await {
            tracing::warn!(%err, "cannot read the ingester ring yet; watching it until the store answers");
        }
        ingesters.start(background.clone());
        Ok(Rings { kv, ingesters, distributors: None, background })
    }

    /// Registers this distributor (ACTIVE at once, no tokens) and keeps the number of healthy
    /// distributors, which divides the tenants' rates under the global strategy, current.
    pub(crate) async fn join_distributors(
        &mut self,
        cfg: &Config,
        grpc_addr: std::net::SocketAddr,
        shutdown: &CancellationToken,
    ) -> Result<(Arc<Lifecycler>, Arc<AtomicUsize>), ServeError> {
        let mut lc_cfg = distributor_lifecycler_config(cfg);
        lc_cfg.addr = cfg.instance.advertised_addr(grpc_addr);
        let lifecycler = Lifecycler::new(lc_cfg, self.kv.clone(), Arc::new(SystemClock));
        let stop_registering = {
            let (l, s) = (lifecycler.clone(), shutdown.clone());
            tokio::spawn(async move {
                s.cancelled().await;
                l.stop();
            })
        };
        let joined = async {
            lifecycler.register().await?;
            lifecycler.set_state(InstanceState::Active).await
        }
        .await;
        stop_registering.abort();
        joined?;
        tokio::spawn(lifecycler.clone().run_heartbeat(self.background.clone()));
        let repl = replication_config(cfg);
        let client = RingClient::new(self.kv.clone(), cfg.ring.key(DISTRIBUTOR_RING_KEY), repl, Arc::new(SystemClock));
        if let Err(err) = client.refresh().await {
            tracing::warn!(%err, "cannot read the distributor ring yet");
        }
        client.start(self.background.clone());
        let count = Arc::new(AtomicUsize::new(client.healthy_active().max(1)));
        tokio::spawn(count_distributors(
            client.clone(),
            count.clone(),
            cfg.ring.heartbeat_period.get(),
            self.background.clone(),
        ));
        self.distributors = Some(client);
        Ok((lifecycler, count))
    }

    /// `/ring` (ingesters) and, in a distributor, `/distributor/ring`.
    pub(crate) fn pages(&self) -> Router {
        let mut r =
            routes(RingPage { client: self.ingesters.clone(), title: "Ingester ring".into(), path: "/ring".into() });
        if let Some(d) = &self.distributors {
            r = r.merge(routes(RingPage {
                client: d.clone(),
                title: "Distributor ring".into(),
                path: "/distributor/ring".into(),
            }));
        }
        r
    }
}

/// Keeps `count` at the number of healthy ACTIVE distributors (at least 1: this one): on every
/// ring change, and every heartbeat period since health changes with time alone.
async fn count_distributors(
    client: Arc<RingClient>,
    count: Arc<AtomicUsize>,
    period: Duration,
    stop: CancellationToken,
) {
    let mut changes = client.subscribe();
    let mut tick = tokio::time::interval(period);
    loop {
        let n = client.healthy_active().max(1);
        if count.swap(n, Ordering::Relaxed) != n {
            tracing::info!(distributors = n, "healthy distributors changed; global rate limits follow");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
    }
}
