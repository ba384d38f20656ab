//! `pharos`: the Pharos control plane.
//!
//! `pharos serve` runs every control-plane role (collector, query) in one process;
//! `pharos up` does the same and adds an embedded agent and sample logs for a first look.

mod config;
mod demo;
mod serve;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use config::{Overrides, PharosConfig};

#[derive(Parser)]
#[command(name = "pharos", version, about = "Pharos observability control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (collector + query API) until SIGINT/SIGTERM.
    Serve(Overrides),
    /// Run the control plane with an embedded agent scraping Pharos itself and tailing sample
    /// logs: visible data with no other service.
    Up(Overrides),
    /// Check a configuration file and exit (0 when valid).
    CheckConfig {
        /// The file to check.
        config: std::path::PathBuf,
    },
}

/// mimalloc rather than glibc malloc: less fragmentation with many threads (peak RSS) and faster
/// small allocations (measured with `pharos-bench tsdb --pharos-only`, see the README).
/// Feature `system-alloc` keeps glibc malloc, for heap profilers such as heaptrack.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PHAROS_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { config } => PharosConfig::load(&config).map(|_| println!("{}: ok", config.display())),
        Command::Serve(o) => run(o, false),
        Command::Up(o) => run(o, true),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(overrides: Overrides, demo: bool) -> anyhow::Result<()> {
    let cfg = PharosConfig::resolve(&overrides)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(async move {
        let server = serve::Server::start(&cfg).await?;
        let mut background = Vec::new();
        if demo {
            let agent_listen = std::net::SocketAddr::new(server.addr.ip(), 0);
            let yaml = demo::agent_config_yaml(server.addr, agent_listen, &cfg.data_dir);
            let agent_cfg = pharos_agent::AgentConfig::from_yaml(&yaml).context("embedded agent config")?;
            background.push(tokio::spawn(async move {
                if let Err(e) = pharos_agent::run(agent_cfg, std::future::pending::<()>()).await {
                    tracing::error!(error = %format!("{e:#}"), "embedded agent stopped");
                }
            }));
            let dir = cfg.data_dir.clone();
            background.push(tokio::spawn(async move {
                if let Err(e) = demo::generate_logs(dir).await {
                    tracing::error!(error = %format!("{e:#}"), "demo log generator stopped");
                }
            }));
            println!("Pharos is up: open http://{}/ (metrics: /api/v1/query?query=up, logs: /loki/api/v1/query_range?query={{namespace=\"demo\"}})", server.addr);
        } else {
            println!("Pharos is serving on http://{}/", server.addr);
        }
        shutdown_signal().await;
        tracing::info!("shutting down");
        for t in background {
            t.abort();
        }
        server.shutdown().await
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
