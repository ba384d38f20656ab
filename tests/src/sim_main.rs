//! `pharos-sim`: emulates clusters × nodes × teams running pods, Spark applications and Trino
//! queries, in the real formats (see `pharos_e2e::sim`). Prints the endpoints it serves.
//!
//! `pharos-sim --seed 42 --clusters 1 --nodes 3 --teams 3 --listen 127.0.0.1:9700 --out-dir ./sim`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use pharos_e2e::sim::{RunOptions, SimConfig, SimServer};

#[derive(Parser)]
#[command(name = "pharos-sim", about = "Telemetry simulator: Kubernetes, Spark and Trino in their real formats")]
struct Cli {
    /// Seed of the deterministic world.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Clusters.
    #[arg(long, default_value_t = 1)]
    clusters: usize,
    /// Nodes per cluster.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Teams (the first is `platform`).
    #[arg(long, default_value_t = 3)]
    teams: usize,
    /// HTTP listener for every emulated endpoint.
    #[arg(long, default_value = "127.0.0.1:9700")]
    listen: SocketAddr,
    /// Directory for CRI logs (`pods/`), Spark event logs (`spark-events/`) and `trino-events.jsonl`.
    #[arg(long, default_value = "./sim")]
    out_dir: PathBuf,
    /// Wall-clock milliseconds between ticks (each tick advances the simulation by this much).
    #[arg(long, default_value_t = 1000)]
    tick_ms: u64,
    /// POST each Trino QueryCompletedEvent here (retried until accepted).
    #[arg(long)]
    trino_events_url: Option<String>,
    /// Also write an agent config wired to this simulator to this path (with
    /// `--collector-url`, `--agent-listen`, `--agent-data-dir`).
    #[arg(long)]
    write_agent_config: Option<PathBuf>,
    /// Collector base URL for the written agent config.
    #[arg(long, default_value = "http://127.0.0.1:9494")]
    collector_url: String,
    /// Listen address for the written agent config.
    #[arg(long, default_value = "127.0.0.1:9495")]
    agent_listen: std::net::SocketAddr,
    /// Data directory for the written agent config.
    #[arg(long, default_value = "./agent-data")]
    agent_data_dir: PathBuf,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration_s: Option<u64>,
    /// Simulation start, unix ms (default: now, rounded down to the second).
    #[arg(long)]
    start_ms: Option<i64>,
    /// Rotate a container log when it exceeds this many bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    log_max_bytes: u64,
    /// Background log lines per container per tick, on average.
    #[arg(long, default_value_t = 1.0)]
    log_lines_per_tick: f64,
    /// Spark applications running at once per cluster, at most (default: the number of teams).
    #[arg(long)]
    spark_apps: Option<usize>,
    /// Trino queries completed per cluster per tick, on average.
    #[arg(long, default_value_t = 1.0)]
    trino_queries_per_tick: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.clusters > 0 && cli.nodes > 0, "--clusters and --nodes must be at least 1");
    let start_ms = cli.start_ms.unwrap_or_else(|| chrono::Utc::now().timestamp() * 1000);
    let cfg = SimConfig {
        seed: cli.seed,
        clusters: cli.clusters,
        nodes_per_cluster: cli.nodes,
        teams: cli.teams,
        start_ms,
        tick_ms: cli.tick_ms,
        out_dir: Some(cli.out_dir.clone()),
        log_max_bytes: cli.log_max_bytes,
        log_lines_per_tick: cli.log_lines_per_tick,
        spark_apps_per_cluster: cli.spark_apps.unwrap_or(cli.teams),
        trino_queries_per_tick: cli.trino_queries_per_tick,
        ..SimConfig::default()
    };
    let server = SimServer::start(cfg, cli.listen, RunOptions { auto_tick: true, trino_events_url: cli.trino_events_url.clone() })
        .await
        .context("failed to start pharos-sim")?;
    let base = server.base_url();
    if let Some(path) = &cli.write_agent_config {
        let (cluster, node) = server
            .sim
            .lock()
            .ok()
            .and_then(|s| s.clusters().first().and_then(|c| c.nodes.first().map(|n| (c.name.clone(), n.name.clone()))))
            .context("the simulation has no node")?;
        let out_dir = std::path::absolute(&cli.out_dir)?;
        let agent_data_dir = std::path::absolute(&cli.agent_data_dir)?;
        let yaml = pharos_e2e::sim::demo::DemoAgent {
            sim_addr: server.addr,
            sim_out_dir: &out_dir,
            cluster: &cluster,
            node: &node,
            collector_url: &cli.collector_url,
            agent_listen: cli.agent_listen,
            agent_data_dir: &agent_data_dir,
        }
        .config_yaml();
        std::fs::write(path, yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("agent config written to {}", path.display());
    }
    println!("pharos-sim listening on {base} (seed {}, tick {} ms)", cli.seed, cli.tick_ms);
    let paths = server.sim.lock().map(|s| s.endpoint_paths()).unwrap_or_default();
    for p in paths {
        println!("  {base}{p}");
    }
    println!("  {base}/targets   (JSON list of the endpoints up now; Spark drivers come and go)");
    println!("files under {}: pods/<ns>_<pod>_<uid>/<container>/0.log, spark-events/, trino-events.jsonl", cli.out_dir.display());
    if let Some(url) = &cli.trino_events_url {
        println!("posting Trino query-completed events to {url}");
    }
    match cli.duration_s {
        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
        None => {
            tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        }
    }
    Ok(())
}
