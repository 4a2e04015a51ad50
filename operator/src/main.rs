//! The `norn-operator` binary: parses flags, sets up logging, the Kubernetes client, `/metrics`
//! and leader election, and runs the LogCluster controller while it leads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::events::Reporter;
use norn::tls::ClientTlsConfig;
use norn_operator::controller::{self, Context};
use norn_operator::leader::{self, LeaderConfig, LeaseLock};
use norn_operator::metrics::Metrics;
use norn_operator::ring::{EtcdRingCleanup, EtcdRings, NoRingCleanup};
use norn_operator::rollout::http::HttpIngesters;
use tokio_util::sync::CancellationToken;

/// How long a call to an ingester's HTTP API may take.
const INGESTER_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Kubernetes operator for Norn: reconciles LogCluster resources.
#[derive(Debug, Parser)]
#[command(name = "norn-operator", version)]
struct Args {
    /// Watch LogClusters in this namespace only; all namespaces when unset.
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Listen address of /metrics and /healthz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "norn-operator")]
    lease_name: String,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease and in Events (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Reconcile without a Lease (a single replica, or local development).
    #[arg(long)]
    no_leader_election: bool,
    /// Leave the ring keys of deleted clusters in their external etcd (for an operator that
    /// cannot reach it).
    #[arg(long)]
    no_ring_cleanup: bool,
    /// PEM authorities of the Norn pods' HTTPS certificates (clusters with `spec.tls`), for the
    /// operator's calls to ingesters during rollouts; the system's roots are trusted besides.
    #[arg(long)]
    tls_ca_file: Option<PathBuf>,
    /// PEM authorities of the certificates of etcd members at `https://` endpoints
    /// (`spec.ring.etcd.tls`); the system's roots when unset.
    #[arg(long)]
    etcd_tls_ca_file: Option<PathBuf>,
    /// PEM client certificate for etcd members at `https://` endpoints that require one.
    #[arg(long, requires = "etcd_tls_key_file")]
    etcd_tls_cert_file: Option<PathBuf>,
    /// PEM private key of `--etcd-tls-cert-file`.
    #[arg(long, requires = "etcd_tls_cert_file")]
    etcd_tls_key_file: Option<PathBuf>,
    /// Log filter, e.g. `info` or `norn_operator=debug,info`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(&args);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("norn-operator: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // The operator links two rustls providers (kube's ring, and aws-lc-rs through the data
    // plane's AWS SDK, which config validation pulls in); without a choice rustls panics at the
    // first HTTPS connection to the API server.
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        tracing::debug!("a rustls crypto provider was already installed");
    }
    let client = Client::try_default().await.context("connecting to Kubernetes")?;
    let identity = match args.identity.clone() {
        Some(id) => id,
        None => format!("norn-operator-{}", std::process::id()),
    };
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    let http = tokio::spawn(norn_operator::http::serve(listener, metrics.clone(), shutdown.clone()));

    // Enabled per ring, for rings at https:// endpoints.
    let etcd_tls = ClientTlsConfig {
        tls_enabled: false,
        tls_cert_path: args.etcd_tls_cert_file.clone(),
        tls_key_path: args.etcd_tls_key_file.clone(),
        tls_ca_path: args.etcd_tls_ca_file.clone(),
        tls_server_name: String::new(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        reporter: Reporter { controller: "norn-operator".into(), instance: Some(identity.clone()) },
        metrics: metrics.clone(),
        ring: if args.no_ring_cleanup {
            Arc::new(NoRingCleanup)
        } else {
            Arc::new(EtcdRingCleanup { tls: etcd_tls.clone(), ..EtcdRingCleanup::default() })
        },
        rings: Arc::new(EtcdRings::with_tls(etcd_tls)),
        ingesters: Arc::new(
            HttpIngesters::new(INGESTER_REQUEST_TIMEOUT, args.tls_ca_file.as_deref())
                .context("building the HTTP client")?,
        ),
    });
    let namespace = args.namespace.clone();
    let result = if args.no_leader_election {
        controller::run(ctx, namespace, shutdown.clone()).await;
        Ok(())
    } else {
        let lock = LeaseLock::new(
            Api::<Lease>::namespaced(client, &args.lease_namespace),
            LeaderConfig::new(args.lease_name.clone(), identity),
        );
        leader::run_as_leader(lock, &metrics, shutdown.clone(), |leading| controller::run(ctx, namespace, leading))
            .await
            .context("leader election")
    };
    shutdown.cancel();
    http.await.context("joining the HTTP server")?.context("serving /metrics")?;
    result
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
        _ = int.recv() => tracing::info!("received SIGINT, shutting down"),
    }
    shutdown.cancel();
}
