//! Collector configuration (the `collector:` section of `pharos.yaml`).

use serde::Deserialize;

/// How the collector ingests and when it publishes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// How often the head is flushed to Parquet files and log splits and published in the
    /// metastore. Default: 10000 (10 s).
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Flush early once the head holds this many samples plus log records. Default: 2000000.
    #[serde(default = "default_flush_max_rows")]
    pub flush_max_rows: usize,
    /// While an hour partition still receives files, this many files (log splits of an hour)
    /// of one size tier (within this factor of each other) are merged into one. Default: 8.
    #[serde(default = "default_compaction_min_files")]
    pub compaction_min_files: usize,
    /// An hour partition that got no new Parquet file for this long is rewritten into one
    /// file, compressed small; an hour that got no new log split, into one split (as far as
    /// `log_merge_max_records` allows). Default: 600000 (10 min).
    #[serde(default = "default_compaction_settle_ms")]
    pub compaction_settle_ms: u64,
    /// Most records one log split merge writes: a merge holds its records in memory (about
    /// 100 bytes each plus its line), so an hour with more is merged into several splits.
    /// Default: 1000000.
    #[serde(default = "default_log_merge_max_records")]
    pub log_merge_max_records: u64,
    /// Metric files and log splits whose newest data is older than this many days are deleted;
    /// 0 keeps everything. Default: 15 (as Prometheus).
    #[serde(default = "default_retention_days")]
    pub retention_days: u64,
    /// How often compaction and retention run. Default: 60000 (1 min).
    #[serde(default = "default_maintenance_interval_ms")]
    pub maintenance_interval_ms: u64,
    /// Memory for the body terms of log splits held for substring queries (`|= "rror"`), most
    /// recently used first; newest splits are loaded ahead of queries while it has room. About
    /// a quarter of the raw size of the logs a query covers (terms and their trigram filters);
    /// below that, the lists that do not fit are reloaded by each query. Default: 1024.
    #[serde(default = "default_log_term_cache_mb")]
    pub log_term_cache_mb: usize,
    /// Team mapping, the same section as the agent's `teams:`: data that arrives with a
    /// `namespace` but no `team` (an OpenTelemetry Collector, remote_write, Trino's Kafka event
    /// listener) gets `team` here. Default: no rules.
    #[serde(default)]
    pub teams: pharos_model::team::TeamMapping,
    /// Log records that arrive without a severity get the level their stream labels,
    /// attributes or line state (`level=warn`, `{"level":"error"}`, `ERROR`, `[warn]`, a klog
    /// `E1122` header…), as Loki 3's `discover_log_levels` does; it becomes `detected_level`.
    /// Default: true.
    #[serde(default = "default_true")]
    pub discover_log_levels: bool,
    /// Log streams without a `service_name` label get one, from the first of `service`, `app`,
    /// `application`, `name`, `app_kubernetes_io_name`, `container`, `container_name`,
    /// `component`, `workload`, `job` they have, else `unknown_service` (Loki 3's
    /// `discover_service_name`, which Grafana's Logs Drilldown lists services by). Default: true.
    #[serde(default = "default_true")]
    pub discover_service_name: bool,
    /// Most exemplars kept in memory, of all series together, the oldest overwritten first
    /// (Prometheus' `storage.exemplars.max_exemplars`); 0 keeps none. Default: 100000.
    #[serde(default = "default_max_exemplars")]
    pub max_exemplars: usize,
    /// Kafka consumption; absent means HTTP ingest only (the embedded default).
    #[serde(default)]
    pub kafka: Option<KafkaConsumerConfig>,
}

/// Default of [`CollectorConfig::max_exemplars`].
pub const DEFAULT_MAX_EXEMPLARS: usize = 100_000;

fn default_max_exemplars() -> usize {
    DEFAULT_MAX_EXEMPLARS
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            flush_interval_ms: default_flush_interval_ms(),
            flush_max_rows: default_flush_max_rows(),
            compaction_min_files: default_compaction_min_files(),
            compaction_settle_ms: default_compaction_settle_ms(),
            log_merge_max_records: default_log_merge_max_records(),
            retention_days: default_retention_days(),
            maintenance_interval_ms: default_maintenance_interval_ms(),
            log_term_cache_mb: default_log_term_cache_mb(),
            teams: Default::default(),
            discover_log_levels: true,
            discover_service_name: true,
            max_exemplars: DEFAULT_MAX_EXEMPLARS,
            kafka: None,
        }
    }
}

/// Kafka consumption settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConsumerConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Consumer group shared by all collectors. Default: `pharos-collector`.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Topic carrying OTLP `ExportMetricsServiceRequest`. Default: `pharos.metrics`.
    #[serde(default = "default_metrics_topic")]
    pub metrics_topic: String,
    /// Topic carrying OTLP `ExportLogsServiceRequest`. Default: `pharos.logs`.
    #[serde(default = "default_logs_topic")]
    pub logs_topic: String,
    /// Static group membership id (`group.instance.id`), stable across restarts — e.g. the
    /// StatefulSet pod name. A restarted collector with the same id gets its partitions back at
    /// once instead of after the session timeout. Default: none (dynamic membership).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Consumer session timeout in milliseconds: how long a collector that died without leaving
    /// keeps its partitions. Default: 10000.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// Topic of Trino's Kafka event listener (QueryCompletedEvent JSON), turned into the same
    /// `trino_query_*` samples the agent's HTTP event listener produces. Default: none.
    #[serde(default)]
    pub trino_events_topic: Option<String>,
    /// Partitions to create for each topic when it does not exist yet. Default: 3.
    #[serde(default = "default_partitions")]
    pub create_topics_partitions: i32,
}

impl KafkaConsumerConfig {
    /// Settings for `brokers` with every other field at its default.
    pub fn with_brokers(brokers: &str) -> Self {
        KafkaConsumerConfig {
            brokers: brokers.to_string(),
            group_id: default_group_id(),
            metrics_topic: default_metrics_topic(),
            logs_topic: default_logs_topic(),
            instance_id: None,
            trino_events_topic: None,
            session_timeout_ms: default_session_timeout_ms(),
            create_topics_partitions: default_partitions(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_flush_interval_ms() -> u64 {
    10_000
}
/// Default of [`CollectorConfig::log_term_cache_mb`].
pub const DEFAULT_LOG_TERM_CACHE_MB: usize = 1024;

fn default_log_term_cache_mb() -> usize {
    DEFAULT_LOG_TERM_CACHE_MB
}
fn default_flush_max_rows() -> usize {
    2_000_000
}
fn default_compaction_min_files() -> usize {
    8
}
fn default_compaction_settle_ms() -> u64 {
    crate::maintenance::SETTLE.as_millis() as u64
}
fn default_log_merge_max_records() -> u64 {
    1_000_000
}
fn default_retention_days() -> u64 {
    15
}
fn default_maintenance_interval_ms() -> u64 {
    60_000
}
fn default_group_id() -> String {
    "pharos-collector".into()
}
fn default_metrics_topic() -> String {
    "pharos.metrics".into()
}
fn default_logs_topic() -> String {
    "pharos.logs".into()
}
fn default_session_timeout_ms() -> u64 {
    10_000
}
fn default_partitions() -> i32 {
    3
}
