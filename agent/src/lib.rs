//! The Pharos agent: the per-node process that collects metrics and logs and ships them, as OTLP
//! protobuf, to Kafka or straight to a collector over HTTP.
//!
//! What this crate owns:
//! - [`config`]: [`AgentConfig`], the YAML config with command-line [`config::Overrides`] and one
//!   [`AgentConfig::validate`] step.
//! - [`scrape`]: Prometheus text / OpenMetrics parsing ([`scrape::exposition`]) and one scrape
//!   loop per target ([`scrape::TargetScraper`]): target labels, `up` and friends, staleness
//!   markers.
//! - [`tail`]: container log tailing ([`tail::Tailer`]): CRI and docker json-file lines, partial
//!   line merging, a versioned checkpoint advanced once the lines are in the disk buffer.
//! - [`buffer`]: the bounded on-disk buffer between the sources and the sink: durable
//!   appends with backpressure when full, in-order replay after the sink acknowledged, and the
//!   tail checkpoint stored in the same records as the lines it covers.
//! - [`sink`]: [`sink::Sink`], an idempotent Kafka producer or an OTLP/HTTP client, retrying
//!   transient failures forever.
//! - [`telemetry`]: the agent's own `/metrics` and `/-/ready`.
//! - [`transform`]: `logs.transforms`, VRL `remap` programs compiled at config load and run on
//!   every log record.
//! - [`teams`]: the `team` label from the team mapping (namespace rules, pod label override).
//! - [`kubernetes`]: discovery from the node's kubelet (annotated pods, Spark drivers,
//!   cAdvisor/resource metrics); [`scrape::file_sd`] reads file-based target lists.
//! - [`spark`]: Spark driver metrics made queryable, event logs → per-application usage.
//! - [`trino`]: `POST /v1/trino/events`, Trino query-completed events → per-query samples.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let mut config = pharos_agent::AgentConfig::from_yaml("cluster: dev\n")?;
//! config.apply(pharos_agent::config::Overrides {
//!     collector_url: Some("http://127.0.0.1:9494".into()),
//!     ..Default::default()
//! });
//! pharos_agent::run(config, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
#![warn(missing_docs)]

pub mod buffer;
pub mod config;
pub mod kubernetes;
pub mod scrape;
pub mod sink;
pub mod spark;
pub mod tail;
pub mod teams;
pub mod telemetry;
pub mod transform;
pub mod trino;
#[cfg(test)]
mod test_support;

use std::time::Duration;

use anyhow::Context;
use pharos_model::Labels;
use tokio::task::JoinSet;

pub use config::AgentConfig;

use buffer::{BUFFER_DIR, Buffer, run_forwarder};
use scrape::{TargetScraper, run_target};
use sink::Sink;
use tail::{Tailer, run_tailer};
use telemetry::AgentMetrics;

/// How long shutdown waits for sends in flight (and the Kafka producer) to be acknowledged.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// Runs an agent until `shutdown` completes (or a component fails): validates the config,
/// serves `/metrics` and `/-/ready` on `config.listen`, scrapes every target, tails the
/// configured logs into the disk buffer, and forwards the buffer through the configured sink.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    config.validate().context("invalid config")?;
    let metrics = AgentMetrics::new();
    let sink = Sink::build(&config, metrics.clone())?;
    let (buffer_dir, buffer_config, m) = (config.data_dir.join(BUFFER_DIR), config.buffer.clone(), metrics.clone());
    let opened = tokio::task::spawn_blocking(move || Buffer::open(&buffer_dir, &buffer_config, m)).await??;
    let buffer = opened.buffer;
    let (stop_forwarder, stop_rx) = tokio::sync::watch::channel(false);
    let mut forwarder = tokio::spawn(run_forwarder(opened.reader, sink.clone(), stop_rx));
    let resource = Labels::from_pairs([("cluster", config.cluster.as_str()), ("node", config.node.as_str())]);
    let labeler = teams::TeamLabeler::new(config.teams.clone());
    let trino_routes = trino::router(buffer.clone(), resource.clone());
    let (addr, server) = telemetry::bind(config.listen, metrics.clone(), trino_routes).await?;

    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    tasks.spawn(async move { server.await.context("agent HTTP server failed") });

    let interval = Duration::from_millis(config.scrape.interval_ms);
    let timeout = Duration::from_millis(config.scrape.effective_timeout_ms());
    for target in &config.scrape.targets {
        let scraper = TargetScraper::new(target, timeout)
            .with_context(|| format!("scrape target {}", target.url))?
            .with_team_labeler(labeler.clone());
        let (buffer, resource, metrics) = (buffer.clone(), resource.clone(), metrics.clone());
        tasks.spawn(async move {
            run_target(scraper, interval, buffer, resource, metrics).await;
            Ok(())
        });
    }

    let context = scrape::ScrapeContext {
        buffer: buffer.clone(),
        resource: resource.clone(),
        metrics: metrics.clone(),
        interval,
        timeout,
        labeler: labeler.clone(),
    };
    if !config.scrape.file_targets.is_empty() {
        let refresh = Duration::from_millis(config.scrape.file_targets_refresh_ms);
        tasks.spawn(scrape::file_sd::run_file_targets(config.scrape.file_targets.clone(), refresh, context.clone()));
    }
    let pod_directory = config.kubernetes.as_ref().map(|_| kubernetes::PodDirectory::default());
    if let (Some(k), Some(directory)) = (&config.kubernetes, &pod_directory) {
        let discovery = kubernetes::KubernetesDiscovery::build(k, context.clone())
            .context("kubernetes discovery")?
            .with_pod_directory(directory.clone());
        tasks.spawn(discovery.run());
    }
    if let Some(e) = &config.spark_event_logs {
        tasks.spawn(spark::eventlog::run_event_logs(e.clone(), buffer.clone(), resource.clone(), labeler.clone()));
    }

    if !config.logs.include.is_empty() {
        let (include, max, dir) =
            (config.logs.include.clone(), config.logs.batch_max_records, config.data_dir.clone());
        let base = vec![("cluster".to_string(), config.cluster.clone()), ("node".to_string(), config.node.clone())];
        let logs = &config.logs;
        let multiline = logs.multiline.build().map_err(|(field, message)| anyhow::anyhow!("{field}: {message}"))?;
        let options = tail::TailOptions {
            multiline,
            max_line_bytes: logs.max_line_bytes,
            rate_limit_lines_per_s: logs.rate_limit_lines_per_s,
            truncated: metrics.log_lines_truncated.clone(),
            throttled_seconds: metrics.log_throttled_seconds.clone(),
        };
        let mut tailer =
            tokio::task::spawn_blocking(move || Tailer::open(include, base, max, &dir).map(|t| t.with_options(options)))
                .await??;
        // The buffer's checkpoint is the current one; `tail-checkpoint.json` is read only when
        // the buffer has none yet (an agent upgraded from before the buffer).
        if let Some(checkpoint) = &opened.tail_checkpoint {
            tailer.resume_from(checkpoint);
        }
        let poll = Duration::from_millis(config.logs.poll_interval_ms);
        let transforms = transform::LogTransforms::build(&logs.transforms, Some(&metrics))?;
        let metadata = pod_directory.map(|d| kubernetes::LogMetadata::new(d, &logs.pod_labels));
        let pipeline = tail::LogPipeline::new(metadata, labeler.clone(), transforms);
        tasks.spawn(run_tailer(tailer, poll, buffer.clone(), pipeline));
    }

    tracing::info!(
        listen = %addr,
        cluster = %config.cluster,
        node = %config.node,
        sink = %sink.describe(),
        targets = config.scrape.targets.len(),
        log_globs = config.logs.include.len(),
        file_targets = config.scrape.file_targets.len(),
        kubernetes = config.kubernetes.is_some(),
        spark_event_logs = config.spark_event_logs.is_some(),
        "pharos agent started"
    );

    let result = tokio::select! {
        _ = shutdown => Ok(()),
        Some(ended) = tasks.join_next() => match ended {
            Ok(Ok(())) => Err(anyhow::anyhow!("an agent task stopped unexpectedly")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("an agent task panicked: {e}")),
        },
        ended = &mut forwarder => match ended {
            Ok(Ok(())) => Err(anyhow::anyhow!("the buffer forwarder stopped unexpectedly")),
            Ok(Err(e)) => Err(e.context("buffer forwarder failed")),
            Err(e) => Err(anyhow::anyhow!("the buffer forwarder panicked: {e}")),
        },
    };
    // Sources stop; what they appended stays in the buffer for the next start. The forwarder
    // finishes the sends in flight and records them, so a restart repeats nothing.
    tasks.abort_all();
    let _ = stop_forwarder.send(true);
    if !forwarder.is_finished() && tokio::time::timeout(SHUTDOWN_FLUSH, &mut forwarder).await.is_err() {
        tracing::warn!("sends in flight not acknowledged at shutdown; they are sent again on the next start");
        forwarder.abort();
    }
    sink.flush(SHUTDOWN_FLUSH).await;
    tracing::info!("pharos agent stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScrapeTarget;
    use crate::test_support::{collector, exposition_server};

    #[tokio::test]
    async fn run_ships_scrapes_and_stops_on_shutdown() {
        let (target, _state) = exposition_server("demo_metric 42\n").await;
        let (url, mut received) = collector(vec![]).await;
        let data = tempfile::tempdir().unwrap();
        let mut config = AgentConfig { cluster: "c1".into(), node: "n1".into(), ..AgentConfig::default() };
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.data_dir = data.path().to_path_buf();
        config.sink.collector_url = Some(url);
        config.scrape.targets.push(ScrapeTarget {
            url: format!("http://{target}/metrics"),
            job: "demo".into(),
            labels: Default::default(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let agent = tokio::spawn(run(config, async move {
            let _ = stopped.await;
        }));
        let samples = tokio::time::timeout(Duration::from_secs(10), received.metrics.recv()).await.unwrap().unwrap();
        let demo = samples.iter().find(|s| s.labels.metric_name() == Some("demo_metric")).unwrap();
        assert_eq!(demo.value, 42.0);
        assert_eq!(demo.labels.get("cluster"), Some("c1"));
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), agent).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn run_rejects_an_invalid_config() {
        let mut config = AgentConfig::default();
        config.sink.collector_url = Some("not a url".into());
        let e = run(config, std::future::pending()).await.unwrap_err();
        assert_eq!(format!("{e:#}"), "invalid config: sink.collector_url: relative URL without a base");
    }
}
