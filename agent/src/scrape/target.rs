//! One scrape target: fetch, parse, label and hand samples to the sink, the way a Prometheus
//! scrape loop does (`honor_labels: false`, report series, staleness markers).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pharos_model::otlp::{STALE_NAN_BITS, encode_metrics_with_metadata};
use pharos_model::{FamilyIndex, Labels, METRIC_NAME, Sample};
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::exposition::{self, Format};
use crate::config::ScrapeTarget;
use crate::buffer::Buffer;
use crate::sink::Signal;
use crate::teams::TeamLabeler;
use crate::telemetry::AgentMetrics;

/// A transformation of a target's parsed samples (e.g. Spark's app id moved from metric names
/// into a label), applied before target labels.
pub type SampleRewrite = Arc<dyn Fn(Vec<exposition::ScrapedSample>) -> Vec<exposition::ScrapedSample> + Send + Sync>;

/// Names of the report series a scrape adds.
const REPORT_SERIES: [&str; 5] =
    ["up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling", "scrape_series_added"];

/// The `Accept` header Prometheus sends: OpenMetrics preferred, text format 0.0.4 accepted.
pub const ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0;q=0.5,\
application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// Most samples put in one OTLP payload (keeps Kafka messages well under 1 MB).
pub const MAX_SAMPLES_PER_PAYLOAD: usize = 2000;

/// What one scrape produced.
#[derive(Debug)]
pub struct ScrapeOutcome {
    /// Labelled samples, report series (`up`, …) and staleness markers, ready to send.
    pub samples: Vec<Sample>,
    /// HELP/TYPE/UNIT of the scraped families (of the last successful scrape when this one
    /// failed), sent along with the samples.
    pub families: Arc<FamilyIndex>,
    /// Whether the target answered with a parseable exposition.
    pub success: bool,
    /// Why the scrape failed, when it did.
    pub error: Option<String>,
    /// The target answered an HTML page (a UI still starting, e.g. Spark's placeholder): a
    /// failed scrape that is expected and not worth a warning.
    pub not_ready: bool,
}

/// Scrapes one target and remembers its previous series for staleness.
pub struct TargetScraper {
    url: Url,
    client: reqwest::Client,
    timeout: Duration,
    /// `job`, `instance` and the configured labels, attached to every series.
    target_labels: Vec<(String, String)>,
    /// Series (without explicit timestamps) of the last scrape.
    previous: HashSet<Labels>,
    /// Families of the last successful scrape.
    families: Arc<FamilyIndex>,
    /// File holding a bearer token sent as `Authorization` (re-read on every scrape, as
    /// projected service account tokens rotate).
    bearer_token_file: Option<PathBuf>,
    /// Applied to parsed samples before target labels.
    rewrite: Option<SampleRewrite>,
    /// Adds `team` to series with a `namespace`.
    labeler: Option<TeamLabeler>,
}

impl TargetScraper {
    /// A scraper for `target` with the per-scrape `timeout`.
    pub fn new(target: &ScrapeTarget, timeout: Duration) -> anyhow::Result<TargetScraper> {
        let url = crate::config::parse_http_url("url", &target.url)?;
        let labels = target.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(Self::for_url(url, &target.job, labels, reqwest::Client::builder().build()?, timeout))
    }

    /// A scraper for any http(s) `url` with `job` and extra `labels`, using `client`.
    pub fn for_url(
        url: Url,
        job: &str,
        labels: Vec<(String, String)>,
        client: reqwest::Client,
        timeout: Duration,
    ) -> TargetScraper {
        let host = url.host_str().unwrap_or_default();
        let instance = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let mut target_labels = vec![("job".to_string(), job.to_string()), ("instance".to_string(), instance)];
        target_labels.extend(labels);
        TargetScraper {
            url,
            client,
            timeout,
            target_labels,
            previous: HashSet::new(),
            families: Arc::default(),
            bearer_token_file: None,
            rewrite: None,
            labeler: None,
        }
    }

    /// Sends the token in `path` as a bearer token with every scrape.
    pub fn with_bearer_token_file(mut self, path: Option<PathBuf>) -> Self {
        self.bearer_token_file = path;
        self
    }

    /// Rewrites parsed samples before target labels are applied.
    pub fn with_rewrite(mut self, rewrite: Option<SampleRewrite>) -> Self {
        self.rewrite = rewrite;
        self
    }

    /// Adds `team` to every series that has a `namespace`.
    pub fn with_team_labeler(mut self, labeler: TeamLabeler) -> Self {
        self.labeler = Some(labeler);
        self
    }

    /// The scraped URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Staleness markers at `now_ms` for every series of the last scrape and the report series:
    /// what a target that went away (a deleted pod) sends last.
    pub fn stale_markers(&mut self, now_ms: i64) -> Vec<Sample> {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let mut out: Vec<Sample> = self.previous.drain().map(|l| Sample::new(l, now_ms, stale)).collect();
        for name in REPORT_SERIES {
            let mut pairs = self.target_labels.clone();
            pairs.push((METRIC_NAME.to_string(), name.to_string()));
            out.push(Sample::new(Labels::from_pairs(pairs), now_ms, stale));
        }
        out
    }

    /// HELP/TYPE/UNIT of the families of the last successful scrape.
    pub fn families(&self) -> Arc<FamilyIndex> {
        self.families.clone()
    }

    /// The value of the `instance` label.
    pub fn instance(&self) -> &str {
        self.target_labels.iter().find(|(k, _)| k == "instance").map_or("", |(_, v)| v.as_str())
    }

    /// Scrapes once at `now_ms` (the timestamp of samples without one).
    pub async fn scrape_once(&mut self, now_ms: i64) -> ScrapeOutcome {
        let started = Instant::now();
        let result = self.fetch_and_parse().await;
        let duration = started.elapsed().as_secs_f64();
        let (mut samples, error, not_ready) = match result {
            Ok(parsed) => {
                self.families = Arc::new(parsed.families);
                (parsed.samples, None, false)
            }
            Err(FetchError::NotReady(e)) => (Vec::new(), Some(e), true),
            Err(FetchError::Failed(e)) => (Vec::new(), Some(e), false),
        };
        if let Some(rewrite) = &self.rewrite {
            samples = rewrite(samples);
        }
        let scraped = samples.len();
        let target_labels = self.target_labels.clone();
        let mut current = HashSet::with_capacity(samples.len());
        let mut out: Vec<Sample> = Vec::with_capacity(samples.len() + 8);
        let mut series_added = 0usize;
        for s in samples.drain(..) {
            let mut labels = apply_target_labels(&s.labels, &target_labels);
            if let Some(labeler) = &self.labeler {
                labels = labeler.label(&labels);
            }
            match s.timestamp_ms {
                Some(ts) => out.push(Sample::new(labels, ts, s.value)),
                None => {
                    // A duplicate series in one scrape keeps its first sample, like Prometheus.
                    if !current.insert(labels.clone()) {
                        continue;
                    }
                    if !self.previous.contains(&labels) {
                        series_added += 1;
                    }
                    out.push(Sample::new(labels, now_ms, s.value));
                }
            }
        }
        let stale = f64::from_bits(STALE_NAN_BITS);
        for gone in self.previous.difference(&current) {
            out.push(Sample::new(gone.clone(), now_ms, stale));
        }
        self.previous = current;
        let report = |name: &str, value: f64| {
            let mut pairs = target_labels.clone();
            pairs.push((METRIC_NAME.to_string(), name.to_string()));
            Sample::new(Labels::from_pairs(pairs), now_ms, value)
        };
        let success = error.is_none();
        out.push(report("up", if success { 1.0 } else { 0.0 }));
        out.push(report("scrape_duration_seconds", duration));
        out.push(report("scrape_samples_scraped", scraped as f64));
        out.push(report("scrape_samples_post_metric_relabeling", scraped as f64));
        out.push(report("scrape_series_added", series_added as f64));
        ScrapeOutcome { samples: out, families: self.families.clone(), success, error, not_ready }
    }

    async fn fetch_and_parse(&self) -> Result<exposition::Exposition, FetchError> {
        let mut request = self
            .client
            .get(self.url.clone())
            .header(ACCEPT, ACCEPT_HEADER)
            .header("X-Prometheus-Scrape-Timeout-Seconds", format!("{}", self.timeout.as_secs_f64()))
            .timeout(self.timeout);
        if let Some(path) = &self.bearer_token_file {
            let token = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| FetchError::Failed(format!("cannot read bearer token {}: {e}", path.display())))?;
            request = request.bearer_auth(token.trim());
        }
        let response = request
            .send()
            .await
            .map_err(|e| FetchError::Failed(format!("GET {}: {}", self.url, crate::sink::error_chain(&e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Failed(format!("GET {}: server returned HTTP status {status}", self.url)));
        }
        let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if content_type.trim_start().to_ascii_lowercase().starts_with("text/html") {
            return Err(FetchError::NotReady(format!("GET {}: answered an HTML page (not ready)", self.url)));
        }
        let format = Format::from_content_type(Some(content_type));
        let body = response
            .bytes()
            .await
            .map_err(|e| FetchError::Failed(format!("GET {}: reading body: {e}", self.url)))?;
        // Parsing a large exposition is CPU work: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            let text = std::str::from_utf8(&body).map_err(|e| format!("body is not UTF-8: {e}"))?;
            exposition::parse_exposition(text, format).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| FetchError::Failed(format!("parser task failed: {e}")))?
        .map_err(FetchError::Failed)
    }
}

/// Why a fetch produced no samples.
enum FetchError {
    /// An HTML page where an exposition was expected.
    NotReady(String),
    /// Anything else.
    Failed(String),
}

/// Adds target labels to scraped labels; a scraped label that clashes with a target label is
/// kept as `exported_<name>` (Prometheus `honor_labels: false`).
pub fn apply_target_labels(scraped: &Labels, target: &[(String, String)]) -> Labels {
    let mut pairs: Vec<(String, String)> = scraped.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (name, value) in target {
        if let Some(pos) = pairs.iter().position(|(k, _)| k == name) {
            let mut renamed = format!("exported_{name}");
            while pairs.iter().any(|(k, _)| *k == renamed) {
                renamed = format!("exported_{renamed}");
            }
            pairs[pos].0 = renamed;
        }
        pairs.push((name.clone(), value.clone()));
    }
    Labels::from_pairs(pairs)
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Scrapes `scraper` every `interval` (first scrape immediately) and sends every scrape's
/// samples into the disk `buffer`, with `resource` (cluster, node) as OTLP resource labels.
/// While the buffer is full the append waits and the next scrape is delayed. Runs forever.
pub async fn run_target(
    mut scraper: TargetScraper,
    interval: Duration,
    buffer: Buffer,
    resource: Labels,
    metrics: AgentMetrics,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let outcome = scraper.scrape_once(now_ms()).await;
        metrics.count_scrape(outcome.success);
        match &outcome.error {
            None => tracing::debug!(url = %scraper.url, samples = outcome.samples.len(), "scraped"),
            Some(error) if outcome.not_ready => tracing::debug!(url = %scraper.url, %error, "target not ready"),
            Some(error) => tracing::warn!(url = %scraper.url, %error, "scrape failed"),
        }
        for chunk in outcome.samples.chunks(MAX_SAMPLES_PER_PAYLOAD) {
            let payload = encode_metrics_with_metadata(&resource, chunk, &outcome.families);
            buffer.append(Signal::Metrics, payload, chunk.len() as u64).await;
        }
    }
}

#[cfg(test)]
#[path = "target_tests.rs"]
mod tests;
