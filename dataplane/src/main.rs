//! The `norn` binary: parses flags and configuration, sets up logging and the runtime, and hands
//! over to the library.

use std::process::ExitCode;

use anyhow::Context;
use norn::config::flags::{self, Subcommand};
use norn::config::{Config, LogFormat};
use norn::conformance::{DataLocation, RealHarness};
use norn::query::logqltest::run as run_scripts;
use norn::server::{self, Listeners};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // Two rustls providers are linked (ring, and aws-lc-rs through the AWS SDK): name the
    // process's default so no TLS client has to guess.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match flags::parse(std::env::args()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let cfg = match Config::load(cli.config_file.as_deref(), cli.expand_env, &cli.overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("norn: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.print_config {
        print!("{}", cfg.to_yaml());
        return ExitCode::SUCCESS;
    }
    if cli.subcommand.is_some() && cli.overrides.iter().all(|(k, _)| k.join(".") != "log.level") {
        // A subcommand reports on stdout; only problems belong on stderr.
        let mut quiet = cfg.clone();
        quiet.log.level = "warn".into();
        init_tracing(&quiet);
    } else {
        init_tracing(&cfg);
    }
    let result = match cli.subcommand {
        Some(Subcommand::Logqltest { paths, from_store, frontend }) => return logqltest(paths, from_store, frontend),
        None => run(cfg),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("norn: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn run(cfg: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("norn")
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let listeners = Listeners::bind(&cfg).await.with_context(|| format!("binding {}", cfg.http.addr))?;
        let shutdown = CancellationToken::new();
        tokio::spawn(on_signal(shutdown.clone()));
        server::serve(cfg, listeners, shutdown).await.context("serving")
    })
}

/// Runs `.logqltest` scripts through the real push, storage and query paths (and, with
/// `frontend`, a query frontend with forced splitting and sharding); exit status 1 when any eval
/// fails.
fn logqltest(paths: Vec<String>, from_store: bool, frontend: bool) -> ExitCode {
    let location = if from_store { DataLocation::Store } else { DataLocation::Memory };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("norn: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let paths: Vec<std::path::PathBuf> = paths.into_iter().map(Into::into).collect();
    let result = runtime.block_on(async move {
        let mut harness = if frontend { RealHarness::through_frontend(location) } else { RealHarness::new(location) };
        run_scripts(&paths, &mut harness, &mut std::io::stdout()).await
    });
    match result {
        Ok(summary) if summary.ok() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("norn: {e}");
            ExitCode::FAILURE
        }
    }
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
