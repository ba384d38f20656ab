//! `pharos-bench`: baselines of the foundation path, measured with the real binaries.
//!
//! `pharos-bench freshness` — a line appended to a CRI log file → returned by
//! `/loki/api/v1/query_range`: p50/p99 over many lines appended at a steady rate.
//! `pharos-bench throughput` — lines per second and samples per second through
//! agent → (Kafka | HTTP) → collector → head.
//!
//! `pharos-bench tsdb` — issue 3: Pharos vs VictoriaMetrics vs Prometheus (see `tsdb_bench`).
//! `pharos-bench logs` — issue 4: log indexing and search vs ripgrep (see `logs_bench`).
//!
//! Build in release and run: `cargo build --release --bins && target/release/pharos-bench freshness`.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use pharos_e2e::*;

mod logs_bench;
mod tsdb_bench;

#[derive(Parser)]
#[command(about = "Pharos foundation benchmarks (real broker, real binaries)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Transport between agent and collector.
    #[arg(long, value_enum, default_value_t = Transport::Kafka, global = true)]
    transport: Transport,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Transport {
    Kafka,
    Http,
}

#[derive(Subcommand)]
enum Cmd {
    /// Append → queryable latency of log lines.
    Freshness {
        /// Lines to measure.
        #[arg(long, default_value_t = 500)]
        lines: usize,
        /// Lines appended per second.
        #[arg(long, default_value_t = 50)]
        rate: u64,
    },
    /// Lines/s and samples/s through the whole path.
    Throughput {
        /// Lines to append (as fast as possible).
        #[arg(long, default_value_t = 200_000)]
        lines: usize,
        /// Series in the scraped exposition (scraped every 1 s).
        #[arg(long, default_value_t = 20_000)]
        series: usize,
        /// Seconds to scrape for.
        #[arg(long, default_value_t = 20)]
        scrape_seconds: u64,
    },
    /// Issue 3: Pharos vs VictoriaMetrics vs Prometheus on one remote_write dataset.
    Tsdb(tsdb_bench::TsdbArgs),
    /// Issue 4: log indexing, on-disk size and query latency vs ripgrep.
    Logs(logs_bench::LogsArgs),
}

struct Env {
    _dir: tempfile::TempDir,
    _broker: Option<Broker>,
    pharos: Pharos,
    _agent: Proc,
    log_file: std::path::PathBuf,
}

async fn start_env(transport: Transport, target: Option<&str>, scrape_interval_ms: u64) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let broker = (transport == Transport::Kafka).then(|| Broker::start(&root));
    let data = root.join("data");
    let mut pharos_cfg = format!("data_dir: {:?}\ncollector:\n  flush_interval_ms: 2000\n", data.display().to_string());
    if let Some(b) = &broker {
        pharos_cfg.push_str(&format!("  kafka:\n    brokers: {}\n", b.addr));
    }
    std::fs::write(root.join("pharos.yaml"), pharos_cfg).expect("write config");
    let pharos = Pharos::serve(&root, &["--config", root.join("pharos.yaml").to_str().expect("utf8")]).await;
    let pods = root.join("pods/bench_writer-0_uid/app");
    std::fs::create_dir_all(&pods).expect("pods dir");
    let log_file = pods.join("0.log");
    std::fs::write(&log_file, b"").expect("log file");
    let sink = match &broker {
        Some(b) => format!("sink:\n  kafka:\n    brokers: {}\n    compression: lz4\n", b.addr),
        None => format!("sink:\n  collector_url: http://{}\n", pharos.addr),
    };
    let scrape = match target {
        Some(url) => format!("scrape:\n  interval_ms: {scrape_interval_ms}\n  targets:\n    - url: {url}\n      job: bench\n"),
        None => String::new(),
    };
    let agent_cfg = format!(
        "listen: 127.0.0.1:{}\ndata_dir: {:?}\n{scrape}logs:\n  include: [{:?}]\n  poll_interval_ms: 20\n{sink}",
        free_port(),
        root.join("agent").display().to_string(),
        format!("{}/pods/*/*/*.log", root.display()),
    );
    std::fs::write(root.join("agent.yaml"), agent_cfg).expect("agent config");
    let mut cmd = Command::new(bin("pharos-agent"));
    cmd.args(["--config", root.join("agent.yaml").to_str().expect("utf8")]);
    let agent = Proc::spawn("agent", cmd, &root);
    Env { _dir: dir, _broker: broker, pharos, _agent: agent, log_file }
}

async fn counter(p: &Pharos, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", p.addr)).await.expect("metrics").text().await.expect("text");
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn freshness(transport: Transport, lines: usize, rate: u64) {
    let env = start_env(transport, None, 1000).await;
    // Warm-up line: the path (consumer group join, first flush) is up before measuring.
    append_lines(&env.log_file, &[cri_line("warmup")]);
    let q = |extra: &str| format!("/loki/api/v1/query_range?query={}&limit=5000&start={}", enc(&format!("{{namespace=\"bench\"}}{extra}")), chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) - 3_600_000_000_000);
    wait_for_async("the warm-up line", Duration::from_secs(120), || {
        let (p, q) = (&env.pharos, q(""));
        async move { (!loki_lines(&p.get_json(&q).await.1).is_empty()).then_some(()) }
    })
    .await;
    let mut appended: HashMap<String, Instant> = HashMap::new();
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut next = 0usize;
    let started = Instant::now();
    let period = Duration::from_micros(1_000_000 / rate.max(1));
    while hist.len() < lines as u64 {
        // Append on schedule, then poll once; the poll interval bounds the resolution (~ms).
        while next < lines && started.elapsed() >= period * next as u32 {
            let id = format!("fresh-{next:06}");
            append_lines(&env.log_file, &[cri_line(&format!("{id} payload"))]);
            appended.insert(id, Instant::now());
            next += 1;
        }
        let (_, b) = env.pharos.get_json(&q(" |= \"fresh-\"")).await;
        let now = Instant::now();
        for l in loki_lines(&b) {
            if let Some(t) = l.split_whitespace().next().and_then(|id| appended.remove(id)) {
                hist.record((now - t).as_micros() as u64).expect("record");
            }
        }
        assert!(started.elapsed() < Duration::from_secs(600), "lines never became visible");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "freshness ({}): {} lines at {rate}/s: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        if transport == Transport::Kafka { "kafka" } else { "http" },
        hist.len(),
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.9) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0
    );
}

async fn throughput(transport: Transport, lines: usize, series: usize, scrape_seconds: u64) {
    // An exposition with `series` counters, served by this process.
    let body: String = (0..series).map(|i| format!("bench_series_total{{shard=\"{}\",id=\"{i}\"}} {i}\n", i % 64)).collect();
    let app = axum::Router::new().route("/metrics", axum::routing::get(move || { let b = body.clone(); async move { b } }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/metrics", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let env = start_env(transport, None, 1000).await;
    let batch: Vec<String> = (0..lines)
        .map(|i| cri_line(&format!("{i:08} INFO o.a.spark.scheduler.TaskSetManager: Finished task {i}.0 in stage 7.0 (TID {i}) in 1843 ms on 10.0.3.17 (executor 4) ({i}/{lines}) {}", "x".repeat(40))))
        .collect();
    let raw_bytes: usize = batch.iter().map(|l| l.len() + 1).sum();
    let base = counter(&env.pharos, "pharos_collector_log_records_ingested_total").await;
    let t0 = Instant::now();
    append_lines(&env.log_file, &batch);
    wait_for_async("all lines ingested", Duration::from_secs(900), || {
        let p = &env.pharos;
        async move { (counter(p, "pharos_collector_log_records_ingested_total").await - base >= lines as f64).then_some(()) }
    })
    .await;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "logs ({}): {lines} lines ({:.1} MB raw, {} B/line) queryable in {secs:.2} s: {:.0} lines/s, {:.2} MB/s",
        if transport == Transport::Kafka { "kafka" } else { "http" },
        raw_bytes as f64 / 1e6,
        raw_bytes / lines.max(1),
        lines as f64 / secs,
        raw_bytes as f64 / 1e6 / secs
    );
    drop(env);

    let env = start_env(transport, Some(&url), 1000).await;
    wait_for_async("first scrape ingested", Duration::from_secs(120), || {
        let p = &env.pharos;
        async move { (counter(p, "pharos_collector_samples_ingested_total").await > 0.0).then_some(()) }
    })
    .await;
    let c0 = counter(&env.pharos, "pharos_collector_samples_ingested_total").await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(scrape_seconds)).await; // the measurement window
    let c1 = counter(&env.pharos, "pharos_collector_samples_ingested_total").await;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "metrics ({}): {series} series scraped every 1 s: {:.0} samples/s ingested over {secs:.0} s (offered {series}/s)",
        if transport == Transport::Kafka { "kafka" } else { "http" },
        (c1 - c0) / secs
    );
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Freshness { lines, rate } => freshness(cli.transport, lines, rate).await,
        Cmd::Throughput { lines, series, scrape_seconds } => throughput(cli.transport, lines, series, scrape_seconds).await,
        Cmd::Logs(args) => {
            if let Err(e) = logs_bench::run(args).await {
                eprintln!("pharos-bench logs: {e:#}");
                std::process::exit(1);
            }
        }
        Cmd::Tsdb(args) => {
            if let Err(e) = tsdb_bench::run(args).await {
                eprintln!("pharos-bench tsdb: {e:#}");
                std::process::exit(1);
            }
        }
    }
}
