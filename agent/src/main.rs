//! `pharos-agent`: the per-node collector of metrics and logs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pharos_agent::AgentConfig;
use pharos_agent::config::Overrides;

/// Scrapes Prometheus endpoints and tails container logs, shipping OTLP to Kafka or a collector.
#[derive(Parser, Debug)]
#[command(name = "pharos-agent", version, about)]
struct Cli {
    /// YAML config file; without it every setting has its default.
    #[arg(long, short, env = "PHAROS_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Address of the agent's own /metrics and /-/ready (overrides `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory for the disk buffer and tailing checkpoint (overrides `data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Ship through Kafka at HOST:PORT[,HOST:PORT] (creates `sink.kafka` with default topics).
    #[arg(long, value_name = "HOST:PORT")]
    kafka_brokers: Option<String>,
    /// Collector base URL for OTLP/HTTP, used when Kafka is not configured.
    #[arg(long, value_name = "URL")]
    collector_url: Option<String>,
    /// Only check the configuration (file plus overrides) and exit: 0 when valid.
    #[arg(long)]
    check_config: bool,
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown signal received");
}

fn load_config(cli: Cli) -> Result<AgentConfig, String> {
    let source = cli.config.as_ref().map_or("defaults".to_string(), |p| p.display().to_string());
    let mut config = match &cli.config {
        Some(path) => AgentConfig::load(path).map_err(|e| format!("invalid config {source}: {e:#}"))?,
        None => AgentConfig::default(),
    };
    config.apply(Overrides {
        listen: cli.listen,
        data_dir: cli.data_dir,
        kafka_brokers: cli.kafka_brokers,
        collector_url: cli.collector_url,
    });
    config.validate().map_err(|e| format!("invalid config {source}: {e}"))?;
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let check_only = cli.check_config;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match load_config(cli) {
        Ok(_) if check_only => {
            println!("config ok");
            return ExitCode::SUCCESS;
        }
        Ok(c) => c,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(pharos_agent::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
