//! The kubelet client and the discovery loop: list pods every `refresh_interval_ms`, keep the
//! last good list when the kubelet does not answer, and keep the scrape pool in line with it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use reqwest::Url;

use super::config::KubernetesConfig;
use super::metadata::PodDirectory;
use super::pods::{PodList, PodTargetOptions, kubelet_targets, pod_labels, pod_targets};
use crate::scrape::pool::ClientSet;
use crate::scrape::{ScrapeContext, ScrapePool};

/// Talks to the node's kubelet.
#[derive(Clone)]
pub struct KubeletClient {
    base: Url,
    client: reqwest::Client,
    token_file: Option<PathBuf>,
}

impl KubeletClient {
    /// Builds the client: the CA bundle is loaded now (a missing file fails here, naming it).
    pub fn build(config: &KubernetesConfig) -> anyhow::Result<KubeletClient> {
        let base = config.resolved_kubelet_url()?;
        let mut builder = reqwest::Client::builder().use_rustls_tls();
        if base.scheme() == "https" {
            if config.insecure_skip_verify {
                builder = builder.danger_accept_invalid_certs(true);
            } else if let Some(ca) = &config.ca_file {
                let pem = std::fs::read(ca).with_context(|| format!("kubernetes.ca_file: cannot read {}", ca.display()))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .with_context(|| format!("kubernetes.ca_file: {} is not a PEM bundle", ca.display()))?;
                for cert in certs {
                    builder = builder.add_root_certificate(cert);
                }
            }
        }
        Ok(KubeletClient { base, client: builder.build()?, token_file: config.token_file.clone() })
    }

    /// The kubelet's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The HTTP client and token file, for scraping the kubelet's metrics endpoints.
    pub fn scrape_credentials(&self) -> (reqwest::Client, Option<PathBuf>) {
        (self.client.clone(), self.token_file.clone())
    }

    /// `GET /pods`.
    pub async fn pods(&self, timeout: Duration) -> anyhow::Result<PodList> {
        let url = super::pods::kubelet_path(&self.base, "/pods");
        let mut request = self.client.get(url.clone()).timeout(timeout);
        if let Some(path) = &self.token_file {
            let token = tokio::fs::read_to_string(path)
                .await
                .with_context(|| format!("cannot read the kubelet token {}", path.display()))?;
            request = request.bearer_auth(token.trim());
        }
        let response = request.send().await.map_err(|e| anyhow::anyhow!("GET {url}: {}", crate::sink::error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            anyhow::bail!("GET {url}: kubelet answered HTTP status {status}");
        }
        let body = response.bytes().await.with_context(|| format!("GET {url}: reading body"))?;
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: not a PodList"))
    }
}

/// Discovery state: the last good pod list and the scrape pool it drives.
pub struct KubernetesDiscovery {
    kubelet: KubeletClient,
    options: PodTargetOptions,
    cadvisor: bool,
    resource: bool,
    refresh: Duration,
    pool: ScrapePool,
    labeler: crate::teams::TeamLabeler,
    /// The last pod list the kubelet gave (kept while it is unreachable).
    cached: Option<PodList>,
    /// Pod metadata for log records, kept in line with `cached`.
    directory: PodDirectory,
}

/// Least time between two pod lists asked for by the log tailer (a new pod's first lines).
const MIN_REQUESTED_REFRESH: Duration = Duration::from_secs(1);

impl KubernetesDiscovery {
    /// Builds discovery for `config`, scraping with `context`.
    pub fn build(config: &KubernetesConfig, context: ScrapeContext) -> anyhow::Result<KubernetesDiscovery> {
        let kubelet = KubeletClient::build(config)?;
        let clients = ClientSet { plain: reqwest::Client::builder().build()?, kubelet: Some(kubelet.scrape_credentials()) };
        let labeler = context.labeler.clone();
        Ok(KubernetesDiscovery {
            options: PodTargetOptions {
                annotated: config.scrape_annotated_pods,
                spark_drivers: config.scrape_spark_drivers,
                spark_ui_port: config.spark_ui_port,
            },
            cadvisor: config.scrape_cadvisor,
            resource: config.scrape_resource,
            refresh: Duration::from_millis(config.refresh_interval_ms),
            pool: ScrapePool::new("kubernetes", context, clients),
            labeler,
            kubelet,
            cached: None,
            directory: PodDirectory::default(),
        })
    }

    /// Keeps `directory` (shared with the log tailer) in line with the pod lists.
    pub fn with_pod_directory(mut self, directory: PodDirectory) -> KubernetesDiscovery {
        self.directory = directory;
        self
    }

    /// The running scrape targets.
    pub fn pool(&self) -> &ScrapePool {
        &self.pool
    }

    /// One refresh: list pods (keeping the cached list on failure) and sync the pool.
    pub async fn refresh_once(&mut self) {
        match self.kubelet.pods(self.refresh.min(Duration::from_secs(10))).await {
            Ok(pods) => {
                self.labeler.set_pods(pod_labels(&pods));
                self.directory.replace(&pods);
                self.cached = Some(pods);
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), cached = self.cached.is_some(), "cannot list pods from the kubelet; keeping the last list");
            }
        }
        self.directory.attempted();
        let mut targets = kubelet_targets(self.kubelet.base(), self.cadvisor, self.resource);
        if let Some(pods) = &self.cached {
            targets.extend(pod_targets(pods, &self.options, &self.labeler));
        }
        self.pool.sync(targets);
    }

    /// Refreshes every `refresh_interval_ms`, and sooner when the log tailer meets a pod it
    /// does not know (at most once per [`MIN_REQUESTED_REFRESH`]), forever.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut ticker = tokio::time::interval(self.refresh);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let directory = self.directory.clone();
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = directory.wanted() => {
                    tokio::time::sleep_until(last + MIN_REQUESTED_REFRESH).await;
                }
            }
            last = tokio::time::Instant::now();
            self.refresh_once().await;
        }
    }
}
