//! `pharos up`: the control plane plus an embedded agent with something to look at.
//!
//! The agent scrapes Pharos' own `/metrics` and tails a sample pods directory under the data
//! directory, to which a small generator appends CRI-format log lines, so a new user sees live
//! metrics and logs at once without Kafka or Kubernetes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// Where the demo writes its pod logs, in the kubelet's layout.
pub fn demo_log_file(data_dir: &Path) -> PathBuf {
    data_dir.join("demo/pods/demo_pharos-demo-0_7f3c9a52-demo/app/0.log")
}

/// The embedded agent's configuration: scrape `listen`'s `/metrics`, tail the demo pods
/// directory, ship over OTLP/HTTP to `listen`.
pub fn agent_config_yaml(listen: std::net::SocketAddr, agent_listen: std::net::SocketAddr, data_dir: &Path) -> String {
    let pods = data_dir.join("demo/pods");
    format!(
        "cluster: local\n\
         listen: {agent_listen}\n\
         data_dir: {agent_dir:?}\n\
         scrape:\n  interval_ms: 5000\n  targets:\n    - url: http://{listen}/metrics\n      job: pharos\n\
         logs:\n  include: [{glob:?}]\n\
         sink:\n  collector_url: http://{listen}\n",
        agent_dir = data_dir.join("agent").display().to_string(),
        glob = format!("{}/*/*/*.log", pods.display()),
    )
}

const MESSAGES: &[(&str, &str)] = &[
    ("INFO", "SparkContext: Running Spark version 3.5.1"),
    ("INFO", "DAGScheduler: Submitting 8 missing tasks from ResultStage 3"),
    ("WARN", "TaskSetManager: Lost task 2.0 in stage 3.0: ExecutorLostFailure"),
    ("INFO", "BlockManagerInfo: Added broadcast_4_piece0 in memory (size: 12.3 KiB)"),
    ("ERROR", "TaskSchedulerImpl: Lost executor 2: OutOfMemoryError: Java heap space"),
    ("INFO", "DAGScheduler: Job 3 finished: collect at job.py:42, took 3.81 s"),
];

/// Appends one CRI line per second to the demo log file until the task is dropped.
pub async fn generate_logs(data_dir: PathBuf) -> anyhow::Result<()> {
    let path = demo_log_file(&data_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0usize;
    loop {
        tick.tick().await;
        let (level, msg) = MESSAGES[n % MESSAGES.len()];
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let line = format!("{now} stdout F {} {level} {msg} (line {n})\n", chrono::Utc::now().format("%y/%m/%d %H:%M:%S"));
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.write_all(line.as_bytes())?;
        n += 1;
    }
}
