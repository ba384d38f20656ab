//! The Pharos collector: everything between the transport and the files queries read.
//!
//! - Ingest from Kafka ([`kafka`]: a consumer group without auto-commit, resuming after the
//!   offsets the metastore published) and over OTLP/HTTP ([`http`]: `POST /v1/metrics`,
//!   `/v1/logs`, protected by a local [`wal`] because no broker stands behind it).
//! - The in-memory [`head`], queryable at once.
//! - Flushes: samples to Parquet under `metrics/date=…/hour=…/` ([`parquet_files`]), log records
//!   to tantivy splits under `logs/` ([`log_splits`]), published with the offsets they cover in one
//!   atomic [`metastore`] step.
//! - [`metric_metadata`]: HELP/TYPE/UNIT per metric family from remote_write and OTLP, kept in
//!   `metadata.json`.
//! - [`sql`]: read-only SQL (DataFusion) over a `metrics` table of published files plus head.
//! - [`Store`] ties them together and implements `pharos_model`'s `MetricsReader`/`LogsReader`
//!   for the query layer.
//!
//! ```no_run
//! use std::sync::Arc;
//! use pharos_collector::{Collector, CollectorConfig, telemetry::CollectorMetrics};
//! let collector = Collector::start(std::path::Path::new("./data"), CollectorConfig::default(),
//!     Arc::new(CollectorMetrics::default())).unwrap();
//! let app = pharos_collector::http::router(collector.store());
//! # let _ = app;
//! ```
#![warn(missing_docs)]

pub mod chunk;
pub mod config;
pub mod decimal;
pub mod exemplars;
pub mod found;
mod error;
pub mod head;
pub mod histogram_files;
pub mod http;
pub mod kafka;
pub mod log_splits;
pub mod loki_push;
pub mod maintenance;
pub mod metastore;
pub mod metric_metadata;
pub mod parquet_files;
pub mod sql;
pub mod store;
pub mod telemetry;
pub mod threads;
pub mod wal;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use config::{CollectorConfig, KafkaConsumerConfig};
pub use error::{Error, Result};
pub use store::{Store, StoreOptions};

use telemetry::CollectorMetrics;

/// A running collector: the store, its flusher thread and, when configured, the Kafka consumer.
pub struct Collector {
    store: Arc<Store>,
    stop: Arc<AtomicBool>,
    flusher: Option<JoinHandle<()>>,
    warmer: Option<JoinHandle<()>>,
    kafka: Option<kafka::KafkaIngest>,
}

impl Collector {
    /// Opens the store in `data_dir` (replaying what was not published) and starts flushing and,
    /// if configured, consuming Kafka.
    pub fn start(data_dir: &Path, config: CollectorConfig, metrics: Arc<CollectorMetrics>) -> Result<Collector> {
        config.teams.validate().map_err(|e| Error::BadInput(format!("collector.teams: {e}")))?;
        let store = Arc::new(Store::open_with(
            data_dir,
            metrics.clone(),
            StoreOptions {
                teams: config.teams.clone(),
                discover_log_levels: config.discover_log_levels,
                discover_service_name: config.discover_service_name,
                max_exemplars: config.max_exemplars,
            },
        )?);
        store.term_budget().set_limit_bytes(config.log_term_cache_mb.saturating_mul(1 << 20));
        let stop = Arc::new(AtomicBool::new(false));
        let warmer = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::Builder::new()
                .name("log-term-warmer".into())
                .spawn(move || warm_loop(&store, &stop))
                .map_err(|e| Error::Internal(format!("spawning the log term warmer: {e}")))?
        };
        let flusher = {
            let (store, stop) = (store.clone(), stop.clone());
            let cfg = config.clone();
            std::thread::Builder::new()
                .name("flusher".into())
                .spawn(move || flush_loop(&store, &stop, &cfg))
                .map_err(|e| Error::Internal(format!("spawning flusher: {e}")))?
        };
        let kafka = match &config.kafka {
            Some(k) => Some(kafka::start(store.clone(), k.clone(), metrics)?),
            None => None,
        };
        Ok(Collector { store, stop, flusher: Some(flusher), warmer: Some(warmer), kafka })
    }

    /// The store, for HTTP ingest routes and the query layer.
    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// Stops consuming, flushes what the head holds, and stops the flusher.
    pub fn shutdown(mut self) {
        if let Some(k) = self.kafka.take() {
            k.stop();
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(f) = self.flusher.take() {
            let _ = f.join();
        }
        if let Some(w) = self.warmer.take() {
            let _ = w.join();
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "final flush failed; the data will be replayed at the next start");
        }
    }
}

fn flush_loop(store: &Store, stop: &AtomicBool, cfg: &CollectorConfig) {
    let interval = Duration::from_millis(cfg.flush_interval_ms.max(1));
    let maintenance_interval = Duration::from_millis(cfg.maintenance_interval_ms.max(1));
    let mut last = Instant::now();
    let mut last_maintenance = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50).min(interval));
        if last_maintenance.elapsed() >= maintenance_interval {
            last_maintenance = Instant::now();
            maintain(store, cfg);
        }
        if last.elapsed() < interval && store.head_rows() < cfg.flush_max_rows {
            continue;
        }
        last = Instant::now();
        match store.flush() {
            Ok(r) if r.rows > 0 => tracing::debug!(rows = r.rows, files = r.metric_files, splits = r.log_splits, "flushed"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "flush failed; will retry"),
        }
    }
}

/// Keeps the newest log splits' body terms in memory: at start, and whenever the published
/// splits change (a flush, a merge, retention).
fn warm_loop(store: &Store, stop: &AtomicBool) {
    // Every publish makes a new manifest: a pointer comparison says whether anything changed.
    let mut seen: Option<Arc<metastore::Manifest>> = None;
    while !stop.load(Ordering::SeqCst) {
        let manifest = store.manifest();
        if !seen.as_ref().is_some_and(|m| Arc::ptr_eq(m, &manifest)) {
            match store.warm_log_terms(|| stop.load(Ordering::SeqCst)) {
                Ok(n) if n > 0 => tracing::debug!(splits = n, "loaded log split terms"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "loading log split terms failed; queries load them"),
            }
            seen = Some(manifest);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn maintain(store: &Store, cfg: &CollectorConfig) {
    let settle = Duration::from_millis(cfg.compaction_settle_ms);
    match store.compact_at(cfg.compaction_min_files, settle, chrono::Utc::now().timestamp_millis()) {
        Ok(r) if r.files_compacted > 0 => tracing::info!(merged = r.files_compacted, written = r.files_written, "compacted"),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "compaction failed; will retry"),
    }
    match store.compact_log_splits(cfg.compaction_min_files, cfg.log_merge_max_records, settle, chrono::Utc::now().timestamp_millis()) {
        Ok(r) if r.log_splits_compacted > 0 => {
            tracing::info!(merged = r.log_splits_compacted, written = r.log_splits_written, "merged log splits")
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "log split merge failed; will retry"),
    }
    if cfg.retention_days > 0 {
        let retention = Duration::from_secs(cfg.retention_days * 86_400);
        match store.apply_retention(retention, chrono::Utc::now().timestamp_millis()) {
            Ok(r) if r.metric_files_expired + r.log_splits_expired > 0 => {
                tracing::info!(metric_files = r.metric_files_expired, log_splits = r.log_splits_expired, "retention deleted old data")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention failed; will retry"),
        }
    }
    store.delete_unpublished(maintenance::DELETE_GRACE);
}
