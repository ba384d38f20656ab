//! The collector's own metrics (one place defines them all).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Counters and gauges of the collector, exposed on the control plane's `/metrics`.
#[derive(Default)]
pub struct CollectorMetrics {
    /// Samples accepted into the head.
    pub samples_ingested: Counter,
    /// Log records accepted into the head.
    pub log_records_ingested: Counter,
    /// Batches skipped because their offset was already ingested or published.
    pub batches_duplicate: Counter,
    /// Batches that could not be decoded (bad OTLP), from HTTP or Kafka.
    pub batches_rejected: Counter,
    /// Kafka messages consumed.
    pub kafka_messages: Counter,
    /// OTLP exponential histogram data points received and not stored (delta temporality, a
    /// scale below −4, or bucket counts that do not add up to the count).
    pub native_histograms_dropped: Counter,
    /// Native histogram samples (remote_write) stored in the head.
    pub native_histograms_ingested: Counter,
    /// Exemplars received (remote_write, OTLP) and refused: older than their series' newest,
    /// labels too long, or exemplar storage disabled.
    pub exemplars_dropped: Counter,
    /// Exemplars stored.
    pub exemplars_appended: Counter,
    /// Successful flushes (files written and published).
    pub flushes: Counter,
    /// Failed flushes (retried at the next interval; the data stays in the head).
    pub flush_errors: Counter,
    /// Parquet files published.
    pub metric_files_published: Counter,
    /// Log splits published.
    pub log_splits_published: Counter,
    /// Log records read from split doc stores by searches (candidates the index could not rule out).
    pub log_docs_loaded: Counter,
    /// Series in the head.
    pub head_series: Gauge,
    /// Samples plus log records in the head.
    pub head_rows: Gauge,
    /// Heap bytes of the head's compressed sample chunks.
    pub head_chunk_bytes: Gauge,
    /// Bytes of log split body terms held in memory.
    pub log_term_cache_bytes: Gauge,
    /// SQL queries answered (`/api/v1/sql`).
    pub sql_queries: Counter,
    /// SQL queries that failed (bad SQL, timeout, internal error).
    pub sql_query_errors: Counter,
    /// Published Parquet files SQL scans read.
    pub sql_files_scanned: Counter,
    /// Published Parquet files SQL scans skipped by time-partition pruning.
    pub sql_files_pruned: Counter,
}

impl CollectorMetrics {
    /// Registers every metric under the `pharos_collector_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("pharos_collector");
        r.register("samples_ingested", "Samples accepted into the head", self.samples_ingested.clone());
        r.register("log_records_ingested", "Log records accepted into the head", self.log_records_ingested.clone());
        r.register("batches_duplicate", "Batches skipped as already ingested", self.batches_duplicate.clone());
        r.register("batches_rejected", "Batches that were not valid OTLP", self.batches_rejected.clone());
        r.register("kafka_messages", "Kafka messages consumed", self.kafka_messages.clone());
        r.register(
            "native_histograms_dropped",
            "Exponential histogram data points (OTLP) received and not stored (delta temporality, scale below -4, or counts their buckets miss)",
            self.native_histograms_dropped.clone(),
        );
        r.register(
            "native_histograms_ingested",
            "Native histogram samples (remote_write) stored",
            self.native_histograms_ingested.clone(),
        );
        r.register(
            "exemplars_dropped",
            "Exemplars received (remote_write, OTLP) and refused: older than their series' newest, labels over 128 characters, or max_exemplars 0",
            self.exemplars_dropped.clone(),
        );
        r.register("exemplars_appended", "Exemplars stored in the in-memory exemplar ring", self.exemplars_appended.clone());
        r.register("flushes", "Flushes published", self.flushes.clone());
        r.register("flush_errors", "Flushes that failed", self.flush_errors.clone());
        r.register("metric_files_published", "Parquet files published", self.metric_files_published.clone());
        r.register("log_splits_published", "Log splits published", self.log_splits_published.clone());
        r.register("log_docs_loaded", "Log records read from split doc stores by searches", self.log_docs_loaded.clone());
        r.register("head_series", "Series in the in-memory head", self.head_series.clone());
        r.register("head_rows", "Samples and log records in the in-memory head", self.head_rows.clone());
        r.register("log_term_cache_bytes", "Bytes of log split body terms held in memory for substring queries", self.log_term_cache_bytes.clone());
        r.register("head_chunk_bytes", "Heap bytes of the compressed samples in the in-memory head", self.head_chunk_bytes.clone());
        r.register("sql_queries", "SQL queries answered", self.sql_queries.clone());
        r.register("sql_query_errors", "SQL queries that failed", self.sql_query_errors.clone());
        r.register("sql_files_scanned", "Parquet files read by SQL scans", self.sql_files_scanned.clone());
        r.register("sql_files_pruned", "Parquet files skipped by SQL time pruning", self.sql_files_pruned.clone());
    }
}
