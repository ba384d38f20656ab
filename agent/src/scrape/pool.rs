//! Targets that come and go (kubelet pods, file_sd lists): a [`ScrapePool`] runs one scrape task
//! per [`DiscoveredTarget`], starts tasks for new targets, and stops tasks of removed targets,
//! which send staleness markers for their series on the way out (as Prometheus does).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use pharos_model::Labels;
use pharos_model::FamilyIndex;
use pharos_model::otlp::encode_metrics_with_metadata;
use reqwest::Url;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::target::{MAX_SAMPLES_PER_PAYLOAD, SampleRewrite, TargetScraper, now_ms};
use crate::buffer::Buffer;
use crate::sink::Signal;
use crate::teams::TeamLabeler;
use crate::telemetry::AgentMetrics;

/// Everything a scrape task needs besides its target (cheap to clone).
#[derive(Clone)]
pub struct ScrapeContext {
    /// Where samples go.
    pub buffer: Buffer,
    /// OTLP resource labels (cluster, node).
    pub resource: Labels,
    /// The agent's counters.
    pub metrics: AgentMetrics,
    /// Time between scrapes.
    pub interval: Duration,
    /// Per-scrape timeout.
    pub timeout: Duration,
    /// Adds `team` to series with a `namespace`.
    pub labeler: TeamLabeler,
}

/// How a discovered target's samples are post-processed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// Plain Prometheus/OpenMetrics.
    Plain,
    /// Spark driver `/metrics/prometheus/` (app id moved from metric names to a label).
    SparkDriver {
        /// The application id (from the pod's `spark-app-selector` label).
        app_id: String,
    },
    /// Spark `/metrics/executors/prometheus` (`application_id` → `spark_app_id`).
    SparkExecutors,
}

/// One target found by discovery. Equal targets are the same scrape task; any change (URL,
/// labels) restarts it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DiscoveredTarget {
    /// Full URL scraped.
    pub url: Url,
    /// `job` label.
    pub job: String,
    /// Extra target labels (sorted by name).
    pub labels: Vec<(String, String)>,
    /// Post-processing.
    pub kind: TargetKind,
    /// Send the kubelet's bearer token and use its TLS settings.
    pub kubelet_auth: bool,
}

impl fmt::Debug for DiscoveredTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} job={} {:?}", self.url, self.job, self.labels)
    }
}

/// The HTTP clients and credentials discovered targets are scraped with.
#[derive(Clone)]
pub struct ClientSet {
    /// For ordinary targets.
    pub plain: reqwest::Client,
    /// For kubelet endpoints (CA / insecure settings) and its token file.
    pub kubelet: Option<(reqwest::Client, Option<PathBuf>)>,
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// The running scrape tasks of one discovery source.
pub struct ScrapePool {
    name: &'static str,
    context: ScrapeContext,
    clients: ClientSet,
    running: HashMap<DiscoveredTarget, Running>,
}

impl ScrapePool {
    /// An empty pool named `name` (for logs).
    pub fn new(name: &'static str, context: ScrapeContext, clients: ClientSet) -> Self {
        ScrapePool { name, context, clients, running: HashMap::new() }
    }

    /// Number of running targets.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// True when no target runs.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// The running targets.
    pub fn targets(&self) -> impl Iterator<Item = &DiscoveredTarget> {
        self.running.keys()
    }

    /// Makes the running set equal `desired`: starts new targets, stops removed ones (they send
    /// staleness markers for their series). Returns `(started, stopped)`.
    pub fn sync(&mut self, desired: Vec<DiscoveredTarget>) -> (usize, usize) {
        let wanted: std::collections::HashSet<DiscoveredTarget> = desired.into_iter().collect();
        let gone: Vec<DiscoveredTarget> = self.running.keys().filter(|t| !wanted.contains(*t)).cloned().collect();
        for t in &gone {
            if let Some(r) = self.running.remove(t) {
                // The task sends its staleness markers and ends by itself; if it already ended,
                // there is nothing to stop.
                let _ = r.stop.send(());
                drop(r.task);
            }
        }
        let mut started = 0;
        for t in wanted {
            if self.running.contains_key(&t) {
                continue;
            }
            let scraper = self.scraper_for(&t);
            let (stop, stopped) = oneshot::channel();
            let task = tokio::spawn(run_managed_target(scraper, self.context.clone(), stopped));
            self.running.insert(t, Running { stop, task });
            started += 1;
        }
        if started > 0 || !gone.is_empty() {
            tracing::info!(pool = self.name, started, stopped = gone.len(), running = self.running.len(), "scrape targets changed");
        }
        (started, gone.len())
    }

    fn scraper_for(&self, t: &DiscoveredTarget) -> TargetScraper {
        let (client, token) = match (&self.clients.kubelet, t.kubelet_auth) {
            (Some((client, token)), true) => (client.clone(), token.clone()),
            _ => (self.clients.plain.clone(), None),
        };
        let rewrite: Option<SampleRewrite> = match &t.kind {
            TargetKind::Plain => None,
            TargetKind::SparkDriver { app_id } => Some(crate::spark::metrics::driver_rewrite(app_id.clone())),
            TargetKind::SparkExecutors => Some(crate::spark::metrics::executors_rewrite()),
        };
        TargetScraper::for_url(t.url.clone(), &t.job, t.labels.clone(), client, self.context.timeout)
            .with_bearer_token_file(token)
            .with_rewrite(rewrite)
            .with_team_labeler(self.context.labeler.clone())
    }

    /// Stops every task without staleness (agent shutdown).
    pub fn abort_all(&mut self) {
        for (_, r) in self.running.drain() {
            r.task.abort();
        }
    }
}

impl Drop for ScrapePool {
    fn drop(&mut self) {
        self.abort_all();
    }
}

async fn send(context: &ScrapeContext, samples: &[pharos_model::Sample], families: &FamilyIndex) {
    for chunk in samples.chunks(MAX_SAMPLES_PER_PAYLOAD) {
        let payload = encode_metrics_with_metadata(&context.resource, chunk, families);
        context.buffer.append(Signal::Metrics, payload, chunk.len() as u64).await;
    }
}

/// Scrapes like [`super::run_target`] until `stop` fires (or its sender is dropped), then sends
/// staleness markers for the target's series.
pub async fn run_managed_target(mut scraper: TargetScraper, context: ScrapeContext, mut stop: oneshot::Receiver<()>) {
    let mut ticker = tokio::time::interval(context.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let outcome = scraper.scrape_once(now_ms()).await;
        context.metrics.count_scrape(outcome.success);
        match &outcome.error {
            None => tracing::debug!(url = %scraper.url(), samples = outcome.samples.len(), "scraped"),
            Some(error) if outcome.not_ready => tracing::debug!(url = %scraper.url(), %error, "target not ready"),
            Some(error) => tracing::warn!(url = %scraper.url(), %error, "scrape failed"),
        }
        send(&context, &outcome.samples, &outcome.families).await;
    }
    let markers = scraper.stale_markers(now_ms());
    tracing::debug!(url = %scraper.url(), series = markers.len(), "target removed; marking its series stale");
    send(&context, &markers, &scraper.families()).await;
}
