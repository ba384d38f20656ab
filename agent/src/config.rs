//! The agent's configuration: one YAML file, command-line overrides on top, and one
//! [`AgentConfig::validate`] step that rejects a bad config before anything starts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use reqwest::Url;
use serde::{Deserialize, Serialize};

/// The whole agent configuration (`agent.yaml`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Cluster identity label put on every series and log record. Default: `local`.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// Node identity label put on every series and log record. Default: `$HOSTNAME`, else
    /// `localhost`.
    #[serde(default = "default_node")]
    pub node: String,
    /// Address of the agent's own HTTP server (`/metrics`, `/-/ready`). Default: `127.0.0.1:9495`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory for the agent's state (the disk buffer, which also keeps the log tailing
    /// checkpoint). Default: `./agent-data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Prometheus/OpenMetrics scraping. Default: no targets.
    #[serde(default)]
    pub scrape: ScrapeConfig,
    /// Container log tailing. Default: no files.
    #[serde(default)]
    pub logs: LogsConfig,
    /// Where the agent ships its data. Default: OTLP/HTTP to `http://127.0.0.1:9494`.
    #[serde(default)]
    pub sink: SinkConfig,
    /// Team mapping: adds `team` to every series and log record with a `namespace`.
    /// Default: no rules, pod label `team`, no default team.
    #[serde(default)]
    pub teams: pharos_model::team::TeamMapping,
    /// Discovery from the node's kubelet. Default: absent (off).
    #[serde(default)]
    pub kubernetes: Option<crate::kubernetes::KubernetesConfig>,
    /// Spark event logs read into per-application usage. Default: absent (off).
    #[serde(default)]
    pub spark_event_logs: Option<crate::spark::eventlog::SparkEventLogsConfig>,
    /// The on-disk buffer in front of the sink (`<data_dir>/buffer/`). Default: 256 MiB.
    #[serde(default)]
    pub buffer: crate::buffer::BufferConfig,
}

/// Scraping of Prometheus text / OpenMetrics endpoints.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// Time between two scrapes of one target, in milliseconds. Default: `15000`.
    #[serde(default = "default_scrape_interval_ms")]
    pub interval_ms: u64,
    /// Time a scrape may take before it fails, in milliseconds; at most `interval_ms`.
    /// Default: the smaller of `10000` and `interval_ms` (as Prometheus does).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// The endpoints to scrape. Default: none.
    #[serde(default)]
    pub targets: Vec<ScrapeTarget>,
    /// Files listing more targets in Prometheus `file_sd` format (JSON or YAML
    /// `[{targets: ["host:port"], labels: {…}}]`), re-read when they change. Default: none.
    #[serde(default)]
    pub file_targets: Vec<PathBuf>,
    /// How often `file_targets` are checked for changes, in milliseconds. Default: `5000`.
    #[serde(default = "default_file_targets_refresh_ms")]
    pub file_targets_refresh_ms: u64,
}

/// One endpoint to scrape.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScrapeTarget {
    /// Full URL of the metrics endpoint, e.g. `http://127.0.0.1:9100/metrics` (plain HTTP).
    /// Required.
    pub url: String,
    /// Value of the `job` label. Default: `agent`.
    #[serde(default = "default_job")]
    pub job: String,
    /// Extra labels added to every series of this target. Default: none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Tailing of Kubernetes container log files (CRI or docker json-file format).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// Glob patterns of files to tail, re-evaluated on every poll, e.g.
    /// `/var/log/pods/*/*/*.log`. Default: none (no tailing).
    #[serde(default)]
    pub include: Vec<String>,
    /// Time between two looks for new lines, in milliseconds. Default: `250`.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Most log records shipped in one batch. Default: `1000`.
    #[serde(default = "default_batch_max_records")]
    pub batch_max_records: usize,
    /// Merging of multi-line records (stack traces). Default: preset `none` (every line is a
    /// record), `flush_timeout_ms: 1000`, `max_lines: 500`.
    #[serde(default)]
    pub multiline: crate::tail::multiline::MultilineConfig,
    /// Longest record body in bytes; longer records are cut and end with `…[truncated]`
    /// (counted in `pharos_agent_log_lines_truncated_total`). Default: `262144`.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Most records read per second from one container's log file; above it the file is not
    /// read until the next second (delayed, never dropped; counted in
    /// `pharos_agent_log_throttled_seconds_total`). Default: `0` (unlimited).
    #[serde(default)]
    pub rate_limit_lines_per_s: u64,
    /// Transforms run on every record, in order, before it enters the disk buffer; today the
    /// one type is `remap` (a VRL program, see [`crate::transform::remap`]). Every program is
    /// compiled at config load. Default: none.
    #[serde(default)]
    pub transforms: Vec<crate::transform::TransformConfig>,
    /// Pod labels copied onto the pod's log records when the kubelet knows the pod (needs the
    /// `kubernetes` section), under a sanitized name (`spark-app-selector` →
    /// `spark_app_selector`); a label the record already has is not replaced. Default: none.
    #[serde(default)]
    pub pod_labels: Vec<String>,
}

fn default_max_line_bytes() -> usize {
    262_144
}

/// Where data goes: Kafka when `kafka` is set, otherwise OTLP/HTTP to `collector_url`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Ship through Kafka (the production path). Default: absent.
    #[serde(default)]
    pub kafka: Option<KafkaSinkConfig>,
    /// Base URL of a Pharos collector, receiving OTLP/HTTP on `/v1/metrics` and `/v1/logs`;
    /// used when `kafka` is absent. Default: `http://127.0.0.1:9494`.
    #[serde(default = "default_collector_url")]
    pub collector_url: Option<String>,
}

/// The Kafka sink: an idempotent producer (acks=all) writing OTLP protobuf.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`. Required.
    pub brokers: String,
    /// Topic receiving `ExportMetricsServiceRequest` messages. Default: `pharos.metrics`.
    #[serde(default = "default_metrics_topic")]
    pub metrics_topic: String,
    /// Topic receiving `ExportLogsServiceRequest` messages. Default: `pharos.logs`.
    #[serde(default = "default_logs_topic")]
    pub logs_topic: String,
    /// Compression codec: `lz4`, `zstd`, `gzip`, `snappy` or `none`. Default: `lz4`.
    #[serde(default)]
    pub compression: Compression,
    /// How long the producer keeps retrying one message (e.g. across a broker restart) before
    /// reporting it failed, in milliseconds; the agent then retries it again. Default: `300000`.
    #[serde(default = "default_message_timeout_ms")]
    pub message_timeout_ms: u64,
    /// How long the producer waits to fill a batch, in milliseconds. Default: `5`.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Extra librdkafka producer properties (e.g. `security.protocol`), applied last.
    /// Default: none.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Kafka compression codec.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// LZ4 (the default).
    #[default]
    Lz4,
    /// Zstandard.
    Zstd,
    /// Gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// No compression.
    None,
}

impl Compression {
    /// The librdkafka `compression.type` value.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::None => "none",
        }
    }
}

/// Command-line overrides applied on top of the file (`--listen`, `--data-dir`, …).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Replaces `listen`.
    pub listen: Option<SocketAddr>,
    /// Replaces `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// Sets `sink.kafka.brokers`, creating the Kafka section with default topics if absent.
    pub kafka_brokers: Option<String>,
    /// Sets `sink.collector_url`.
    pub collector_url: Option<String>,
}

/// A config that does not make sense: which field, and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Path of the field, e.g. `scrape.targets[0].url`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), message: message.into() }
}

fn default_cluster() -> String {
    "local".into()
}
fn default_node() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into())
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9495))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./agent-data")
}
fn default_scrape_interval_ms() -> u64 {
    15_000
}
fn default_scrape_timeout_ms() -> u64 {
    10_000
}

impl ScrapeConfig {
    /// The scrape timeout in effect: `timeout_ms`, or the default derived from the interval.
    pub fn effective_timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or_else(|| default_scrape_timeout_ms().min(self.interval_ms))
    }
}
fn default_file_targets_refresh_ms() -> u64 {
    5_000
}
fn default_job() -> String {
    "agent".into()
}
fn default_poll_interval_ms() -> u64 {
    250
}
fn default_batch_max_records() -> usize {
    1000
}
fn default_collector_url() -> Option<String> {
    Some("http://127.0.0.1:9494".into())
}
fn default_metrics_topic() -> String {
    "pharos.metrics".into()
}
fn default_logs_topic() -> String {
    "pharos.logs".into()
}
fn default_message_timeout_ms() -> u64 {
    300_000
}
fn default_linger_ms() -> u64 {
    5
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            cluster: default_cluster(),
            node: default_node(),
            listen: default_listen(),
            data_dir: default_data_dir(),
            scrape: ScrapeConfig::default(),
            logs: LogsConfig::default(),
            sink: SinkConfig::default(),
            teams: Default::default(),
            kubernetes: None,
            spark_event_logs: None,
            buffer: crate::buffer::BufferConfig::default(),
        }
    }
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        ScrapeConfig {
            interval_ms: default_scrape_interval_ms(),
            timeout_ms: None,
            targets: Vec::new(),
            file_targets: Vec::new(),
            file_targets_refresh_ms: default_file_targets_refresh_ms(),
        }
    }
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            include: Vec::new(),
            poll_interval_ms: default_poll_interval_ms(),
            batch_max_records: default_batch_max_records(),
            multiline: Default::default(),
            max_line_bytes: default_max_line_bytes(),
            rate_limit_lines_per_s: 0,
            transforms: Vec::new(),
            pod_labels: Vec::new(),
        }
    }
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig { kafka: None, collector_url: default_collector_url() }
    }
}

impl KafkaSinkConfig {
    /// A Kafka section with the given brokers and every other field at its default.
    pub fn with_brokers(brokers: impl Into<String>) -> Self {
        KafkaSinkConfig {
            brokers: brokers.into(),
            metrics_topic: default_metrics_topic(),
            logs_topic: default_logs_topic(),
            compression: Compression::default(),
            message_timeout_ms: default_message_timeout_ms(),
            linger_ms: default_linger_ms(),
            options: BTreeMap::new(),
        }
    }
}

impl AgentConfig {
    /// Reads and parses a YAML config file (not yet validated: apply overrides, then call
    /// [`AgentConfig::validate`]).
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        // `${NODE_NAME}` and friends: one ConfigMap serves every node.
        let text = pharos_model::env::expand(&text).map_err(anyhow::Error::msg)?;
        Self::from_yaml(&text)
    }

    /// Parses a YAML config (an empty document gives the defaults).
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        if text.trim().is_empty() {
            return Ok(AgentConfig::default());
        }
        Ok(serde_yaml::from_str(text)?)
    }

    /// Applies command-line overrides.
    pub fn apply(&mut self, o: Overrides) {
        if let Some(listen) = o.listen {
            self.listen = listen;
        }
        if let Some(dir) = o.data_dir {
            self.data_dir = dir;
        }
        if let Some(brokers) = o.kafka_brokers {
            match &mut self.sink.kafka {
                Some(k) => k.brokers = brokers,
                None => self.sink.kafka = Some(KafkaSinkConfig::with_brokers(brokers)),
            }
        }
        if let Some(url) = o.collector_url {
            self.sink.collector_url = Some(url);
        }
    }

    /// Checks everything that can be checked before starting; the first problem found is
    /// returned, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster.is_empty() {
            return Err(invalid("cluster", "must not be empty"));
        }
        if self.node.is_empty() {
            return Err(invalid("node", "must not be empty"));
        }
        self.scrape.validate()?;
        self.logs.validate()?;
        self.teams.validate().map_err(|e| match e.split_once(": ") {
            Some((field, message)) => invalid(format!("teams.{field}"), message),
            None => invalid("teams", e),
        })?;
        if let Some(k) = &self.kubernetes {
            k.validate()?;
        }
        if let Some(e) = &self.spark_event_logs {
            e.validate()?;
        }
        self.buffer.validate()?;
        self.sink.validate()
    }
}

/// Parses a plain-HTTP URL (this build has no TLS).
pub(crate) fn parse_http_url(field: &str, url: &str) -> Result<Url, ConfigError> {
    let parsed = Url::parse(url).map_err(|e| invalid(field, e.to_string()))?;
    if parsed.scheme() != "http" {
        return Err(invalid(
            field,
            format!("unsupported scheme {:?} in {url:?} (only http is supported)", parsed.scheme()),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(field, format!("no host in {url:?}")));
    }
    Ok(parsed)
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl ScrapeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.interval_ms == 0 {
            return Err(invalid("scrape.interval_ms", "must be greater than 0"));
        }
        let timeout_ms = self.effective_timeout_ms();
        if timeout_ms == 0 {
            return Err(invalid("scrape.timeout_ms", "must be greater than 0"));
        }
        if timeout_ms > self.interval_ms {
            return Err(invalid(
                "scrape.timeout_ms",
                format!("{timeout_ms} is greater than scrape.interval_ms {}", self.interval_ms),
            ));
        }
        if !self.file_targets.is_empty() && self.file_targets_refresh_ms == 0 {
            return Err(invalid("scrape.file_targets_refresh_ms", "must be greater than 0"));
        }
        let mut seen = BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let at = |f: &str| format!("scrape.targets[{i}].{f}");
            parse_http_url(&at("url"), &t.url)?;
            if t.job.is_empty() {
                return Err(invalid(at("job"), "must not be empty"));
            }
            for name in t.labels.keys() {
                if !is_label_name(name) {
                    return Err(invalid(at("labels"), format!("{name:?} is not a valid label name")));
                }
                if name.starts_with("__") {
                    return Err(invalid(at("labels"), format!("{name:?}: names starting with __ are reserved")));
                }
                if name == "job" || name == "instance" {
                    return Err(invalid(at("labels"), format!("{name:?} is set by the agent")));
                }
            }
            if !seen.insert((t.url.as_str(), t.job.as_str())) {
                return Err(invalid(at("url"), format!("duplicate target {:?} in job {:?}", t.url, t.job)));
            }
        }
        Ok(())
    }
}

impl LogsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (i, pattern) in self.include.iter().enumerate() {
            glob::Pattern::new(pattern)
                .map_err(|e| invalid(format!("logs.include[{i}]"), format!("bad glob {pattern:?}: {e}")))?;
        }
        if self.poll_interval_ms == 0 {
            return Err(invalid("logs.poll_interval_ms", "must be greater than 0"));
        }
        if self.batch_max_records == 0 {
            return Err(invalid("logs.batch_max_records", "must be greater than 0"));
        }
        if self.max_line_bytes == 0 {
            return Err(invalid("logs.max_line_bytes", "must be greater than 0"));
        }
        self.multiline.build().map_err(|(field, message)| invalid(field, message))?;
        for (i, name) in self.pod_labels.iter().enumerate() {
            let label = crate::transform::remap::sanitize_label_name(name);
            if name.is_empty() {
                return Err(invalid(format!("logs.pod_labels[{i}]"), "must not be empty"));
            }
            if crate::kubernetes::metadata::RESERVED_LABELS.contains(&label.as_str()) {
                return Err(invalid(
                    format!("logs.pod_labels[{i}]"),
                    format!("{name:?} would become label {label:?}, which the agent sets itself"),
                ));
            }
        }
        crate::transform::LogTransforms::build(&self.transforms, None)?;
        Ok(())
    }
}

impl SinkConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        match (&self.kafka, &self.collector_url) {
            (Some(k), _) => k.validate(),
            (None, Some(url)) => parse_http_url("sink.collector_url", url).map(|_| ()),
            (None, None) => Err(invalid("sink", "no sink: set sink.kafka or sink.collector_url")),
        }
    }
}

impl KafkaSinkConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.split(',').all(|b| b.trim().is_empty()) {
            return Err(invalid("sink.kafka.brokers", "must not be empty"));
        }
        for (field, topic) in [("metrics_topic", &self.metrics_topic), ("logs_topic", &self.logs_topic)] {
            let valid = !topic.is_empty()
                && topic.len() <= 249
                && topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !valid {
                return Err(invalid(format!("sink.kafka.{field}"), format!("{topic:?} is not a valid Kafka topic name")));
            }
        }
        if self.message_timeout_ms == 0 {
            return Err(invalid("sink.kafka.message_timeout_ms", "must be greater than 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> String {
        match AgentConfig::from_yaml(yaml) {
            Ok(c) => c.validate().expect_err("config should be invalid").to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn full_example_parses() {
        let c = AgentConfig::from_yaml(
            r#"
cluster: prod-1
node: n7
listen: 0.0.0.0:9000
data_dir: /var/lib/pharos
scrape:
  interval_ms: 5000
  timeout_ms: 2000
  targets:
    - url: http://127.0.0.1:9100/metrics
      job: node
      labels: {env: dev}
logs:
  include: ["/var/log/pods/*/*/*.log"]
  poll_interval_ms: 100
  batch_max_records: 10
sink:
  kafka:
    brokers: 127.0.0.1:9092
    compression: zstd
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.cluster, "prod-1");
        assert_eq!(c.scrape.targets[0].labels["env"], "dev");
        let k = c.sink.kafka.unwrap();
        assert_eq!(k.compression, Compression::Zstd);
        assert_eq!(k.metrics_topic, "pharos.metrics");
        assert_eq!(k.message_timeout_ms, 300_000);
    }

    #[test]
    fn empty_document_is_the_valid_default() {
        let c = AgentConfig::from_yaml("").unwrap();
        c.validate().unwrap();
        assert_eq!(c.cluster, "local");
        assert_eq!(c.listen.to_string(), "127.0.0.1:9495");
        assert_eq!(c.sink.collector_url.as_deref(), Some("http://127.0.0.1:9494"));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err("scrape:\n  targets:\n    - url: /metrics\n"),
            "scrape.targets[0].url: relative URL without a base"
        );
        assert!(err("scrape:\n  targets:\n    - url: https://x:1/m\n").contains("only http"));
        assert!(err("scrape:\n  targets:\n    - urll: http://x/\n").contains("unknown field `urll`"));
        assert!(err("scrape:\n  interval_ms: 1000\n  timeout_ms: 2000\n").starts_with("scrape.timeout_ms:"));
        assert!(err("logs:\n  include: ['/var/log/[']\n").starts_with("logs.include[0]: bad glob"));
        assert_eq!(err("sink:\n  collector_url: null\n"), "sink: no sink: set sink.kafka or sink.collector_url");
        assert!(err("sink:\n  kafka:\n    brokers: b:9092\n    logs_topic: ''\n").starts_with("sink.kafka.logs_topic:"));
        assert!(err("sink:\n  kafka:\n    brokers: b:9092\n    compression: brotli\n").contains("unknown variant `brotli`"));
        assert!(err("scrape:\n  targets:\n    - url: http://x/\n      labels: {instance: y}\n").contains("set by the agent"));
        assert!(err("buffer:\n  max_bytes: 10\n").starts_with("buffer.max_bytes:"));
        assert!(err("buffer:\n  max_byte: 10\n").contains("unknown field `max_byte`"));
    }

    #[test]
    fn overrides_apply_on_top() {
        let mut c = AgentConfig::default();
        c.apply(Overrides {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            data_dir: Some("/tmp/x".into()),
            kafka_brokers: Some("k:9092".into()),
            collector_url: None,
        });
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        let k = c.sink.kafka.as_ref().unwrap();
        assert_eq!((k.brokers.as_str(), k.logs_topic.as_str()), ("k:9092", "pharos.logs"));
        c.validate().unwrap();
    }

    #[test]
    fn source_sections_parse_and_validate() {
        let c = AgentConfig::from_yaml(
            "scrape:\n  file_targets: [/etc/t.json]\nteams:\n  rules: [{namespace: 'spark-*', team: de}]\n  default: other\nkubernetes:\n  kubelet_url: http://127.0.0.1:10255\n  token_file: null\nspark_event_logs:\n  dirs: [/tmp/ev]\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.scrape.file_targets_refresh_ms, 5000);
        assert_eq!(c.teams.label, "team");
        let k = c.kubernetes.as_ref().unwrap();
        assert_eq!((k.token_file.as_ref(), k.refresh_interval_ms), (None, 30_000));
        assert_eq!(c.spark_event_logs.as_ref().unwrap().poll_interval_ms, 10_000);
        assert_eq!(err("teams:\n  rules: [{namespace: a, team: ''}]\n"), "teams.rules[0].team: must not be empty");
        assert_eq!(err("spark_event_logs:\n  dirs: []\n"), "spark_event_logs.dirs: must name at least one directory");
        assert!(err("kubernetes:\n  kubelet_url: 'x:/'\n").starts_with("kubernetes.kubelet_url:"));
        assert!(err("teams:\n  rule: []\n").contains("unknown field `rule`"));
    }

    #[test]
    fn scrape_timeout_defaults_to_the_interval_when_shorter_than_10s() {
        let c = AgentConfig::from_yaml("scrape:\n  interval_ms: 200\n").unwrap();
        assert_eq!(c.scrape.effective_timeout_ms(), 200);
        c.validate().unwrap();
        let c = AgentConfig::from_yaml("scrape:\n  interval_ms: 60000\n").unwrap();
        assert_eq!(c.scrape.effective_timeout_ms(), 10_000);
    }

    #[test]
    fn log_transforms_and_pod_labels_parse_and_validate() {
        let c = AgentConfig::from_yaml(
            "logs:\n  pod_labels: [app, spark-app-selector]\n  transforms:\n    - type: remap\n      name: redact\n      source: |\n        .message = replace(.message, r'token=\\S+', \"token=***\")\n      drop_on_error: true\n",
        )
        .unwrap();
        c.validate().unwrap();
        let crate::transform::TransformConfig::Remap(r) = &c.logs.transforms[0];
        assert_eq!((r.name.as_deref(), r.drop_on_error, r.drop_on_abort), (Some("redact"), true, true));
        assert!(r.source.as_deref().unwrap().contains("token=***"));
        // A program that does not compile: the field, then VRL's diagnostic with line:column.
        let e = err("logs:\n  transforms:\n    - type: remap\n      source: |\n        .a = 1\n        .b = parse_json(.message)\n");
        assert!(e.starts_with("logs.transforms[0].source: VRL program does not compile"), "{e}");
        assert!(e.contains("error[E103]") && e.contains(":2:6"), "{e}");
        assert!(err("logs:\n  transforms:\n    - type: remap\n      source: .\n      drop_on_eror: true\n").contains("unknown field `drop_on_eror`"));
        assert!(err("logs:\n  transforms:\n    - type: lua\n      source: x\n").contains("unknown variant `lua`"));
        assert_eq!(err("logs:\n  transforms:\n    - type: remap\n"), "logs.transforms[0].source: a remap transform needs source or file");
        assert_eq!(
            err("logs:\n  transforms:\n    - {type: remap, name: a, source: .}\n    - {type: remap, name: a, source: .}\n"),
            "logs.transforms[1].name: duplicate transform name \"a\""
        );
        assert!(err("logs:\n  pod_labels: [pod-uid]\n").starts_with("logs.pod_labels[0]: \"pod-uid\" would become label \"pod_uid\""));
    }
}
