//! The store: head, frozen head being flushed, published files, and the WAL, behind one API.
//!
//! Ingest appends to the head under the offset of the source it came from. A flush freezes the
//! head, writes its samples to Parquet and its log records to a tantivy split, then publishes
//! the files together with the offsets the frozen head covers ([`crate::metastore`]). Queries
//! see the head, the frozen head and the published files from one consistent snapshot.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use pharos_model::select::{Direction, LogSearch, cut_to_limit};
use pharos_model::{
    LabelMatcher, Labels, LogRecord, LogsReader, MetricMetadata, MetricsBatch, MetricsReader, Sample, Series, SeriesSink, otlp,
};

use crate::head::Head;
use crate::log_splits::search::{SearchStats, SplitSearch};
use crate::log_splits::term_budget::TermBudget;
use crate::log_splits::{self, LogFields, SplitHandle};
use crate::metastore::Manifest;
use crate::metric_metadata::MetadataStore;
use crate::parquet_files;
use crate::telemetry::CollectorMetrics;
use crate::wal::{Wal, WalKind};
use pharos_model::write_view::WriteView;
use crate::{Error, Result};

/// Source name of the HTTP ingest WAL in the metastore's offsets.
pub const WAL_SOURCE: &str = "wal";

/// A decoded batch from one source offset.
pub enum Batch {
    /// Metric samples.
    Metrics(Vec<Sample>),
    /// Metric samples and the metadata of their families (remote_write, OTLP).
    MetricsWithMetadata(MetricsBatch),
    /// Log records.
    Logs(Vec<LogRecord>),
    /// A remote_write request parsed in place (label strings are copied only for new series).
    RemoteWrite(WriteView),
}

impl Batch {
    /// Decodes an OTLP payload of the given kind.
    pub fn decode(kind: WalKind, body: &[u8]) -> Result<Batch> {
        Ok(match kind {
            WalKind::MetricsProtobuf => Batch::MetricsWithMetadata(otlp::decode_metrics_batch_protobuf(body)?),
            WalKind::MetricsJson => Batch::MetricsWithMetadata(otlp::decode_metrics_batch_json(body)?),
            WalKind::LogsProtobuf => Batch::Logs(otlp::decode_logs_protobuf(body)?),
            WalKind::LogsJson => Batch::Logs(otlp::decode_logs_json(body)?),
            WalKind::RemoteWrite => Batch::RemoteWrite(WriteView::parse(body.to_vec())?),
            WalKind::LokiPushJson => Batch::Logs(crate::loki_push::decode_json(body)?),
            WalKind::LokiPushProtobuf => Batch::Logs(crate::loki_push::decode_protobuf(body)?),
            WalKind::RemoteWriteSnappy => Batch::RemoteWrite(WriteView::decode_snappy(body)?),
            WalKind::RemoteWrite2Snappy => Batch::RemoteWrite(WriteView::decode_snappy_v2(body)?),
            WalKind::LokiPushSnappy => {
                let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| {
                    Error::BadInput(format!("Loki protobuf push body is not snappy-compressed: {e}"))
                })?;
                Batch::Logs(crate::loki_push::decode_protobuf(&raw)?)
            }
        })
    }

    fn len(&self) -> usize {
        match self {
            Batch::Metrics(s) => s.len(),
            Batch::MetricsWithMetadata(b) => b.samples.len(),
            Batch::Logs(l) => l.len(),
            Batch::RemoteWrite(w) => w.sample_count(),
        }
    }

    /// Native histogram samples in the batch, which are stored.
    fn histogram_count(&self) -> usize {
        match self {
            Batch::MetricsWithMetadata(b) => b.histograms.len(),
            Batch::RemoteWrite(w) => w.histogram_count(),
            Batch::Metrics(_) | Batch::Logs(_) => 0,
        }
    }

    /// OTLP exponential histogram data points in the batch, which are not stored.
    fn histograms_dropped(&self) -> u64 {
        match self {
            Batch::MetricsWithMetadata(b) => b.dropped_histograms,
            Batch::RemoteWrite(w) => w.dropped().histograms,
            Batch::Metrics(_) | Batch::Logs(_) => 0,
        }
    }

    /// The metric metadata the batch carries.
    pub fn metadata(&self) -> &[MetricMetadata] {
        match self {
            Batch::MetricsWithMetadata(b) => &b.metadata,
            Batch::RemoteWrite(w) => w.metadata(),
            Batch::Metrics(_) | Batch::Logs(_) => &[],
        }
    }
}

pub(crate) struct State {
    pub(crate) head: Head,
    pub(crate) frozen: Option<Arc<Head>>,
    pub(crate) manifest: Arc<Manifest>,
}

impl State {
    /// Highest offset of `source` already held (head, frozen head or published).
    fn seen_offset(&self, source: &str) -> Option<i64> {
        [
            self.head.offsets.get(source).copied(),
            self.frozen.as_ref().and_then(|f| f.offsets.get(source).copied()),
            self.manifest.offset(source),
        ]
        .into_iter()
        .flatten()
        .max()
    }
}

/// What one flush did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Parquet files published.
    pub metric_files: usize,
    /// Log splits published.
    pub log_splits: usize,
    /// Rows (samples + log records) moved from the head into files.
    pub rows: usize,
}

/// What [`Store::open_with`] applies to everything ingested.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Team mapping (`CollectorConfig::teams`).
    pub teams: pharos_model::team::TeamMapping,
    /// Give log records that arrive without a severity the level their labels, attributes or
    /// line state (`CollectorConfig::discover_log_levels`, see [`pharos_model::level`]).
    pub discover_log_levels: bool,
    /// Give log streams without a `service_name` label one (`CollectorConfig::discover_service_name`).
    pub discover_service_name: bool,
    /// Exemplars kept in memory (`CollectorConfig::max_exemplars`).
    pub max_exemplars: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            teams: Default::default(),
            discover_log_levels: true,
            discover_service_name: true,
            max_exemplars: crate::config::DEFAULT_MAX_EXEMPLARS,
        }
    }
}

/// What [`Store::ingest_durable`] stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Samples or log records.
    pub items: usize,
    /// Exemplars stored (or already held).
    pub exemplars: usize,
    /// Native histogram samples stored (remote_write).
    pub histograms: usize,
    /// OTLP exponential histogram data points received and not stored.
    pub histograms_dropped: u64,
}

/// Storage of the collector: see the module docs.
pub struct Store {
    pub(crate) data_dir: PathBuf,
    pub(crate) state: RwLock<State>,
    wal: Mutex<Wal>,
    /// Serializes every change of the manifest (flush, compaction, retention).
    pub(crate) flush_lock: Mutex<()>,
    pub(crate) log_fields: LogFields,
    pub(crate) split_readers: Mutex<HashMap<String, Arc<SplitHandle>>>,
    /// Memory for the body terms the split readers hold.
    pub(crate) term_budget: Arc<TermBudget>,
    /// Series list per published Parquet file (path relative to `data_dir`), loaded at first use.
    pub(crate) file_series: Mutex<HashMap<String, Arc<parquet_files::FileSeries>>>,
    /// Per native histogram file, its series (read once), to skip files a query selects none of.
    pub(crate) histogram_file_series: Mutex<HashMap<String, Arc<Vec<Labels>>>>,
    /// Label sets shared by the series lists of all files.
    pub(crate) label_cache: parquet_files::LabelCache,
    pub(crate) metrics: Arc<CollectorMetrics>,
    /// Files no longer published, deleted once queries that may still read them are done.
    pub(crate) pending_deletes: Mutex<Vec<(std::time::Instant, PathBuf)>>,
    /// HELP/TYPE/UNIT per metric family (`metadata.json`).
    metadata: MetadataStore,
    teams: pharos_model::team::TeamMapping,
    /// Records ingested without a severity get the level their labels, attributes or line
    /// state ([`StoreOptions::discover_log_levels`]).
    discover_log_levels: bool,
    /// Log streams without `service_name` get one ([`StoreOptions::discover_service_name`]).
    discover_service_name: bool,
    /// Live tails' callbacks, called with each batch of log records ingested.
    log_sinks: Mutex<Vec<pharos_model::LogSink>>,
    /// `log_sinks.len()`, read without the lock on every batch.
    log_sink_count: std::sync::atomic::AtomicUsize,
    /// The newest exemplars, in memory.
    exemplars: crate::exemplars::ExemplarStore,
}

impl Store {
    /// Opens (or creates) the store in `data_dir`: loads the manifest, removes files a crashed
    /// flush left unpublished, and replays the WAL records after the published WAL offset.
    pub fn open(data_dir: &Path, metrics: Arc<CollectorMetrics>) -> Result<Store> {
        Self::open_with(data_dir, metrics, StoreOptions::default())
    }

    /// [`Store::open`] with `options` applied to everything ingested, the WAL replay included.
    pub fn open_with(data_dir: &Path, metrics: Arc<CollectorMetrics>, options: StoreOptions) -> Result<Store> {
        let StoreOptions { teams, discover_log_levels, discover_service_name, max_exemplars } = options;
        std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
        let manifest = Manifest::load(data_dir)?;
        let removed = manifest.remove_unpublished(data_dir)?;
        if removed > 0 {
            tracing::info!(removed, "removed files of a flush that was not published");
        }
        let after = manifest.offset(WAL_SOURCE).unwrap_or(0);
        let (wal, replay) = Wal::open(&data_dir.join("wal"), after)?;
        let store = Store {
            data_dir: data_dir.to_path_buf(),
            state: RwLock::new(State { head: Head::default(), frozen: None, manifest: Arc::new(manifest) }),
            wal: Mutex::new(wal),
            flush_lock: Mutex::new(()),
            log_fields: LogFields::new(),
            split_readers: Mutex::new(HashMap::new()),
            term_budget: Arc::new(TermBudget::new(crate::config::DEFAULT_LOG_TERM_CACHE_MB << 20)),
            file_series: Mutex::new(HashMap::new()),
            histogram_file_series: Mutex::new(HashMap::new()),
            label_cache: parquet_files::LabelCache::default(),
            metrics,
            pending_deletes: Mutex::new(Vec::new()),
            metadata: MetadataStore::open(data_dir)?,
            teams,
            discover_log_levels,
            discover_service_name,
            log_sinks: Mutex::new(Vec::new()),
            log_sink_count: std::sync::atomic::AtomicUsize::new(0),
            exemplars: crate::exemplars::ExemplarStore::new(max_exemplars),
        };
        let replayed = replay.len();
        for rec in replay {
            match Batch::decode(rec.kind, &rec.payload) {
                Ok(batch) => {
                    store.ingest(WAL_SOURCE, rec.seq, batch);
                }
                Err(e) => tracing::error!(seq = rec.seq, error = %e, "undecodable WAL record skipped"),
            }
        }
        if replayed > 0 {
            tracing::info!(records = replayed, "replayed WAL into the head");
        }
        Ok(store)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The currently published manifest.
    pub fn manifest(&self) -> Arc<Manifest> {
        self.state.read().manifest.clone()
    }

    /// The offset published for `source` (what a restarted consumer resumes after).
    pub fn published_offset(&self, source: &str) -> Option<i64> {
        self.state.read().manifest.offset(source)
    }

    /// Samples plus log records in the head (not counting a head being flushed).
    pub fn head_rows(&self) -> usize {
        self.state.read().head.rows()
    }

    /// Adds a batch read at `offset` of `source` to the head. Returns false (and drops the batch)
    /// when that offset was already ingested or published: replays never duplicate data.
    ///
    /// Metric metadata is kept even from a duplicate batch (it is idempotent). Should writing
    /// `metadata.json` fail here, it is retried before the next flush publishes offsets.
    pub fn ingest(&self, source: &str, offset: i64, batch: Batch) -> bool {
        self.ingest_counted(source, offset, batch).is_some()
    }

    /// [`Store::ingest`], returning the number of exemplars stored (or already held), or
    /// `None` when the batch was a duplicate.
    fn ingest_counted(&self, source: &str, offset: i64, mut batch: Batch) -> Option<usize> {
        if let Err(e) = self.metadata.observe(batch.metadata()) {
            tracing::error!(error = %e, "could not write metric metadata; retried before the next flush");
        }
        if let Batch::Logs(records) = &mut batch {
            // Before the state lock: it reads every line without a severity.
            if self.discover_log_levels {
                discover_levels(records);
            }
            if self.discover_service_name {
                discover_service_name(records);
            }
        }
        // Exemplars with their series' labels, before `with_teams` may turn a remote_write
        // view into owned samples; given `team` as the samples are.
        let exemplars: Vec<(Labels, pharos_model::Exemplar)> = match &mut batch {
            Batch::RemoteWrite(w) if w.exemplar_count() > 0 => {
                w.exemplars().map(|(s, e)| (s.to_labels(), e)).map(|(l, e)| (self.team_of(&l).unwrap_or(l), e)).collect()
            }
            Batch::MetricsWithMetadata(m) => std::mem::take(&mut m.exemplars)
                .into_iter()
                .map(|(l, e)| (self.team_of(&l).unwrap_or(l), e))
                .collect(),
            _ => Vec::new(),
        };
        let mut st = self.state.write();
        if st.seen_offset(source).is_some_and(|seen| offset <= seen) {
            self.metrics.batches_duplicate.inc();
            return None;
        }
        let mut exemplars_written = 0;
        for (series, e) in exemplars {
            match self.exemplars.append(&series, e) {
                crate::exemplars::Appended::Stored => {
                    self.metrics.exemplars_appended.inc();
                    exemplars_written += 1;
                }
                crate::exemplars::Appended::Duplicate => exemplars_written += 1,
                _ => {
                    self.metrics.exemplars_dropped.inc();
                }
            }
        }
        let n = batch.len() as u64;
        let histograms_dropped = batch.histograms_dropped();
        if histograms_dropped > 0 {
            self.metrics.native_histograms_dropped.inc_by(histograms_dropped);
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    histograms = histograms_dropped,
                    "exponential histograms (OTLP) with delta temporality, a scale below -4 or counts their buckets miss were not stored \
                     (counted in pharos_collector_native_histograms_dropped_total; this is logged once)"
                );
            });
        }
        let batch = self.with_teams(batch);
        match batch {
            Batch::Metrics(samples) => {
                st.head.append_samples(samples);
                self.metrics.samples_ingested.inc_by(n);
            }
            Batch::MetricsWithMetadata(MetricsBatch { samples, histograms, .. }) => {
                st.head.append_samples(samples);
                self.metrics.samples_ingested.inc_by(n);
                self.metrics.native_histograms_ingested.inc_by(histograms.len() as u64);
                st.head.append_histograms(histograms);
            }
            Batch::RemoteWrite(w) => {
                st.head.append_write(&w);
                self.metrics.samples_ingested.inc_by(n);
                if w.histogram_count() > 0 {
                    self.metrics.native_histograms_ingested.inc_by(w.histogram_count() as u64);
                    st.head.append_histograms(w.histogram_samples());
                }
            }
            Batch::Logs(records) => {
                // Under the state lock: tails see batches in the order the head gets them.
                if self.log_sink_count.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                    let mut sinks = self.log_sinks.lock();
                    sinks.retain_mut(|sink| sink(&records));
                    self.log_sink_count.store(sinks.len(), std::sync::atomic::Ordering::Relaxed);
                }
                st.head.append_logs(records);
                self.metrics.log_records_ingested.inc_by(n);
            }
        }
        st.head.offsets.insert(source.to_string(), offset);
        self.metrics.head_series.set(st.head.series_count() as i64);
        self.metrics.head_rows.set(st.head.rows() as i64);
        self.metrics.head_chunk_bytes.set(st.head.chunk_bytes() as i64);
        Some(exemplars_written)
    }

    /// The HTTP ingest path: decodes `body` (a 4xx-worthy [`Error::BadInput`] when invalid),
    /// appends it to the WAL with fsync, then adds it to the head. When this returns `Ok`, the
    /// data survives a crash. Returns the number of samples or records.
    pub fn ingest_durable(&self, kind: WalKind, body: &[u8]) -> Result<Ingested> {
        let batch = match Batch::decode(kind, body) {
            Ok(b) => b,
            Err(e) => {
                self.metrics.batches_rejected.inc();
                return Err(e);
            }
        };
        let (n, histograms, histograms_dropped) = (batch.len(), batch.histogram_count(), batch.histograms_dropped());
        // New metadata is on disk before the request is acknowledged.
        self.metadata.observe(batch.metadata())?;
        // The WAL lock is held while the head is updated so WAL sequence numbers enter the head
        // in order and a flush's WAL rotation separates them exactly.
        let mut wal = self.wal.lock();
        let seq = wal.append(kind, body)?;
        let exemplars = self.ingest_counted(WAL_SOURCE, seq, batch).unwrap_or(0);
        Ok(Ingested { items: n, exemplars, histograms, histograms_dropped })
    }

    /// Writes everything in the head to files and publishes them with the offsets they cover.
    /// On error the frozen data is put back into the head and nothing is published.
    pub fn flush(&self) -> Result<FlushReport> {
        let _flushing = self.flush_lock.lock();
        let frozen = {
            let mut wal = self.wal.lock();
            let mut st = self.state.write();
            if st.head.rows() == 0 && st.head.offsets.is_empty() {
                return Ok(FlushReport::default());
            }
            wal.rotate()?;
            let next = Head::after(&st.head);
            let frozen = Arc::new(std::mem::replace(&mut st.head, next));
            st.frozen = Some(frozen.clone());
            frozen
        };
        match self.write_and_publish(&frozen) {
            Ok(report) => {
                let published_wal = self.published_offset(WAL_SOURCE);
                if let Some(seq) = published_wal
                    && let Err(e) = self.wal.lock().remove_published(seq)
                {
                    tracing::warn!(error = %e, "could not remove published WAL segments");
                }
                self.metrics.flushes.inc();
                self.metrics.metric_files_published.inc_by(report.metric_files as u64);
                self.metrics.log_splits_published.inc_by(report.log_splits as u64);
                Ok(report)
            }
            Err(e) => {
                self.metrics.flush_errors.inc();
                // Put the frozen data back in front of what arrived meanwhile.
                let mut st = self.state.write();
                st.frozen = None;
                let newer = std::mem::take(&mut st.head);
                let mut restored = Arc::try_unwrap(frozen).unwrap_or_else(|a| (*a).clone());
                restored.append_samples(
                    newer.all_series().flat_map(|(l, s)| s.map(move |(t, v)| Sample::new(l.clone(), t, v))).collect(),
                );
                restored.append_logs(newer.logs);
                restored.append_histograms(
                    newer
                        .histograms
                        .into_iter()
                        .flat_map(|(labels, samples)| {
                            samples.into_iter().map(move |(timestamp_ms, histogram)| pharos_model::HistogramSample { labels: labels.clone(), timestamp_ms, histogram })
                        })
                        .collect(),
                );
                restored.offsets.extend(newer.offsets);
                st.head = restored;
                Err(e)
            }
        }
    }

    fn write_and_publish(&self, frozen: &Head) -> Result<FlushReport> {
        // Offsets are published only when the metadata they brought is on disk.
        self.metadata.persist_if_dirty()?;
        let files = parquet_files::write_sources(&self.data_dir, parquet_files::FLUSH_ZSTD_LEVEL, frozen.series_chunks())?;
        let histogram_files = crate::histogram_files::write(
            &self.data_dir,
            parquet_files::FLUSH_ZSTD_LEVEL,
            frozen.histograms.iter().map(|(l, s)| (l, s.as_slice())),
        )?;
        let split = log_splits::write_split(&self.data_dir, &self.log_fields, &frozen.logs)?;
        let report = FlushReport { metric_files: files.len() + histogram_files.len(), log_splits: usize::from(split.is_some()), rows: frozen.rows() };
        let mut next = self.manifest().with_published(files, split.into_iter().collect(), &frozen.offsets);
        next.histogram_files.extend(histogram_files);
        next.publish(&self.data_dir)?;
        let mut st = self.state.write();
        st.manifest = Arc::new(next);
        st.frozen = None;
        self.metrics.head_series.set(st.head.series_count() as i64);
        self.metrics.head_rows.set(st.head.rows() as i64);
        self.metrics.head_chunk_bytes.set(st.head.chunk_bytes() as i64);
        Ok(report)
    }

    /// `l` with `team` added, when it has a `namespace` and no `team` and the mapping knows one.
    fn team_of(&self, l: &Labels) -> Option<Labels> {
        if l.get("team").is_some() {
            return None;
        }
        let ns = l.get("namespace")?;
        self.teams.team_for(ns, &std::collections::BTreeMap::new()).map(|t| l.with("team", &t))
    }

    /// Adds `team` where the data has a `namespace` and no `team` and the mapping knows one.
    fn with_teams(&self, batch: Batch) -> Batch {
        if self.teams.rules.is_empty() && self.teams.default.is_none() {
            return batch;
        }
        let team_of = |l: &Labels| self.team_of(l);
        match batch {
            // Labels are rewritten: the owned (slower) path.
            Batch::RemoteWrite(w) => self.with_teams(Batch::MetricsWithMetadata(MetricsBatch {
                samples: w.to_samples(),
                metadata: w.metadata().to_vec(),
                exemplars: Vec::new(),
                histograms: w.histogram_samples(),
                dropped_histograms: w.dropped().histograms,
            })),
            Batch::Metrics(mut samples) => {
                for s in &mut samples {
                    if let Some(l) = team_of(&s.labels) {
                        s.labels = l;
                    }
                }
                Batch::Metrics(samples)
            }
            Batch::MetricsWithMetadata(mut batch) => {
                for s in &mut batch.samples {
                    if let Some(l) = team_of(&s.labels) {
                        s.labels = l;
                    }
                }
                for h in &mut batch.histograms {
                    if let Some(l) = team_of(&h.labels) {
                        h.labels = l;
                    }
                }
                Batch::MetricsWithMetadata(batch)
            }
            Batch::Logs(mut records) => {
                for r in &mut records {
                    if let Some(l) = team_of(&r.labels) {
                        r.labels = l;
                    }
                }
                Batch::Logs(records)
            }
        }
    }

    /// Adds the head's (and a head being flushed) samples matching `matchers` in
    /// `[start_ms, end_ms]` to `out`, and returns the manifest of the same instant: together they
    /// hold every sample once, whatever a concurrent flush does.
    pub(crate) fn head_snapshot(
        &self,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
        out: &mut crate::found::Found,
    ) -> Arc<Manifest> {
        let st = self.state.read();
        // In the order of ingestion: the frozen head, then the head.
        if let Some(f) = &st.frozen {
            f.select_series(matchers, start_ms, end_ms, out);
        }
        st.head.select_series(matchers, start_ms, end_ms, out);
        st.manifest.clone()
    }

    /// [`Store::head_snapshot`] with the head's series as compressed chunks (see
    /// [`crate::head::Head::select_chunks`]), the frozen head's first.
    fn head_chunks(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> (Vec<(Labels, crate::chunk::Chunk)>, Arc<Manifest>) {
        let mut out = Vec::new();
        let st = self.state.read();
        if let Some(f) = &st.frozen {
            f.select_chunks(matchers, start_ms, end_ms, &mut out);
        }
        st.head.select_chunks(matchers, start_ms, end_ms, &mut out);
        (out, st.manifest.clone())
    }

    pub(crate) fn file_series(&self, rel: &str) -> Result<Arc<parquet_files::FileSeries>> {
        if let Some(c) = self.file_series.lock().get(rel) {
            return Ok(c.clone());
        }
        // Loaded outside the lock; two queries racing load it twice, harmlessly.
        let c = Arc::new(parquet_files::FileSeries::load(&self.data_dir.join(rel), &self.label_cache)?);
        self.file_series.lock().insert(rel.to_string(), c.clone());
        Ok(c)
    }

    fn split_reader(&self, rel: &str) -> Result<Arc<SplitHandle>> {
        let mut readers = self.split_readers.lock();
        if let Some(r) = readers.get(rel) {
            return Ok(r.clone());
        }
        let r = Arc::new(log_splits::open_split_with(&self.data_dir.join(rel), self.term_budget.clone())?);
        readers.insert(rel.to_string(), r.clone());
        Ok(r)
    }

    /// The memory budget of the log splits' body terms.
    pub fn term_budget(&self) -> &TermBudget {
        &self.term_budget
    }

    /// Loads the body terms of published splits, newest first, until one does not fit the
    /// budget without dropping others, so the first substring query after a restart or a flush does
    /// not pay for reading a term dictionary. Stops early when `stop()` says so. Returns the
    /// number of splits whose terms were loaded.
    pub fn warm_log_terms(&self, stop: impl Fn() -> bool) -> Result<usize> {
        let manifest = self.manifest();
        let mut splits: Vec<&crate::metastore::LogSplit> = manifest.log_splits.iter().collect();
        splits.sort_by_key(|s| std::cmp::Reverse(s.max_ts_ns));
        let mut warmed = Vec::new();
        for s in splits {
            if stop() {
                break;
            }
            let handle = self.split_reader(&s.path)?;
            if !handle.uses_terms() || handle.terms_loaded() {
                continue;
            }
            if !handle.warm_terms()? {
                break;
            }
            warmed.push(handle);
        }
        // Newest data counts as most recently used: dropped last when room is needed.
        for h in warmed.iter().rev() {
            h.touch_terms();
        }
        let loaded = warmed.len();
        self.metrics.log_term_cache_bytes.set(self.term_budget.held_bytes() as i64);
        Ok(loaded)
    }

    /// Runs a log search over head, frozen head and published splits; see [`LogSearch`].
    /// Splits are visited newest first (backward) or oldest first (forward) by their manifest
    /// time range, and a split that cannot hold anything within the limit is not opened.
    pub fn search_logs_with_stats(&self, q: &LogSearch<'_>) -> Result<(Vec<LogRecord>, SearchStats)> {
        crate::threads::within_pool(|| self.search_logs_on(q, read_threads()))
    }

    /// [`Store::search_logs_with_stats`] searching up to `threads` splits at once (a limited
    /// search); with `threads` > 1 an unlimited search runs one job per segment on the pool.
    pub(crate) fn search_logs_on(&self, q: &LogSearch<'_>, threads: usize) -> Result<(Vec<LogRecord>, SearchStats)> {
        let (mut out, manifest) = self.head_logs_and_manifest(q);
        if let Some((n, dir)) = q.limit {
            cut_to_limit(&mut out, n, dir);
        }
        let mut splits = log_splits_in_range(&manifest, q);
        match q.limit {
            Some((_, Direction::Backward)) => splits.sort_by_key(|s| std::cmp::Reverse(s.max_ts_ns)),
            Some((_, Direction::Forward)) => splits.sort_by_key(|s| s.min_ts_ns),
            None => {}
        }
        let mut stats = SearchStats::default();
        if q.limit.is_none() && threads > 1 {
            self.search_segments_in_parallel(q, &splits, &mut out, &mut stats)?;
            self.metrics.log_docs_loaded.inc_by(stats.docs_loaded as u64);
            return Ok((out, stats));
        }
        // Splits are searched in waves of up to one per core; with a limit the first split is
        // searched alone (it often fills the answer, and later splits are then skipped or
        // narrowed by its boundary). A wave's splits share the boundary held before it, so a
        // split may return records its predecessor's boundary would have pruned; the cut below
        // drops them (it keeps ties at the boundary, as the narrowed search does), and results
        // are appended in split order: the answer is the one-at-a-time answer.
        let mut next = 0;
        while next < splits.len() {
            // Once `n` records are held, the boundary is the timestamp of the last of them.
            let boundary = q.limit.filter(|(n, _)| out.len() >= *n).and_then(|_| out.last().map(|r| r.timestamp_ns));
            let beyond = |s: &crate::metastore::LogSplit| match (boundary, q.limit) {
                (Some(b), Some((_, Direction::Backward))) => s.max_ts_ns < b,
                (Some(b), Some((_, Direction::Forward))) => s.min_ts_ns > b,
                _ => false,
            };
            // After the first split of a limited search, the rest at once (two rounds on the
            // pool for all of them: see `search_splits_together`).
            let together = next > 0 && q.limit.is_some() && threads > 1;
            let width = if next == 0 && q.limit.is_some() { 1 } else if together { splits.len() } else { threads.max(1) };
            // Every later split in this order is beyond the boundary too.
            let wave: Vec<&crate::metastore::LogSplit> =
                splits[next..].iter().take(width).take_while(|s| !beyond(s)).copied().collect();
            if wave.is_empty() {
                break;
            }
            next += wave.len();
            let handles = wave.iter().map(|s| self.split_reader(&s.path)).collect::<Result<Vec<_>>>()?;
            if together && wave.len() > 1 {
                let mut searches = Vec::with_capacity(wave.len());
                for (h, s) in handles.iter().zip(&wave) {
                    searches.extend(log_splits::search::SplitSearch::new(h, (s.min_ts_ns, s.max_ts_ns), q, boundary)?);
                }
                log_splits::search::search_splits_together(&searches, &mut out, &mut stats)?;
                if let Some((n, dir)) = q.limit {
                    cut_to_limit(&mut out, n, dir);
                }
                continue;
            }
            let search = |i: usize, out: &mut Vec<LogRecord>, stats: &mut SearchStats| {
                let s = wave[i];
                log_splits::search::search_split(&handles[i], (s.min_ts_ns, s.max_ts_ns), q, boundary, out, stats)
            };
            if wave.len() == 1 {
                search(0, &mut out, &mut stats)?;
            } else {
                let jobs = (0..wave.len()).map(|i| {
                    let search = &search;
                    move |out: &mut Vec<LogRecord>, stats: &mut SearchStats| search(i, out, stats)
                });
                log_splits::search::search_on_pool(jobs, &mut out, &mut stats)?;
            }
            if let Some((n, dir)) = q.limit {
                cut_to_limit(&mut out, n, dir);
            }
        }
        self.metrics.log_docs_loaded.inc_by(stats.docs_loaded as u64);
        Ok((out, stats))
    }

    /// The head's and frozen head's records `q` accepts, and the manifest of the same moment
    /// (a flush moves records from the frozen head into a split of the next manifest).
    fn head_logs_and_manifest(&self, q: &LogSearch<'_>) -> (Vec<LogRecord>, Arc<Manifest>) {
        let st = self.state.read();
        let heads = std::iter::once(&st.head).chain(st.frozen.as_deref());
        (heads.flat_map(|h| h.logs.iter()).filter(|r| q.accepts(r)).cloned().collect(), st.manifest.clone())
    }

    /// [`LogsReader::count_logs`]: the head's records grouped, and each split segment counted
    /// by [`SplitSearch::count`] (from the columns when the index decided every filter), one
    /// job per segment on the shared thread pool.
    pub(crate) fn count_logs_with_stats(&self, q: &LogSearch<'_>) -> Result<(Vec<pharos_model::LogGroup>, SearchStats)> {
        if q.limit.is_some() || q.keep.is_some() || !q.label_equals.is_empty() {
            let (records, stats) = self.search_logs_with_stats(q)?;
            return Ok((pharos_model::select::group_records(records), stats));
        }
        let (head, manifest) = self.head_logs_and_manifest(q);
        let mut out = pharos_model::select::group_records(head);
        let mut stats = SearchStats::default();
        self.with_split_searches(q, &log_splits_in_range(&manifest, q), |searches| {
            let jobs = searches.iter().flat_map(|search| {
                (0..search.segments()).map(move |ord| {
                    move || {
                        let mut stats = SearchStats::default();
                        search.count(ord, &mut stats).map(|groups| (groups, stats))
                    }
                })
            });
            for (groups, part) in crate::threads::on_pool(jobs, "log count")? {
                out.extend(groups);
                stats += part;
            }
            Ok(())
        })?;
        self.metrics.log_docs_loaded.inc_by(stats.docs_loaded as u64);
        Ok((out, stats))
    }

    /// Calls `then` with the searches of those of `splits` (without a limit's boundary) that
    /// may hold an answer to `q`.
    fn with_split_searches<R>(
        &self,
        q: &LogSearch<'_>,
        splits: &[&crate::metastore::LogSplit],
        then: impl FnOnce(&[SplitSearch<'_>]) -> Result<R>,
    ) -> Result<R> {
        let handles = splits.iter().map(|s| self.split_reader(&s.path)).collect::<Result<Vec<_>>>()?;
        let mut searches = Vec::with_capacity(handles.len());
        for (h, s) in handles.iter().zip(splits) {
            searches.extend(SplitSearch::new(h, (s.min_ts_ns, s.max_ts_ns), q, None)?);
        }
        then(&searches)
    }

    /// An unlimited search of `splits`, one segment per job on the shared thread pool (the
    /// bench's splits differ in size 10×, and its terms' hits in density: a split per thread
    /// left a core idle most of the time). Records are appended in split and segment order, as
    /// a one-thread search appends them.
    fn search_segments_in_parallel(
        &self,
        q: &LogSearch<'_>,
        splits: &[&crate::metastore::LogSplit],
        out: &mut Vec<LogRecord>,
        stats: &mut SearchStats,
    ) -> Result<()> {
        self.with_split_searches(q, splits, |searches| {
            let jobs = searches.iter().flat_map(|search| {
                (0..search.segments())
                    .map(move |ord| move |out: &mut Vec<LogRecord>, stats: &mut SearchStats| search.run(ord..ord + 1, out, stats))
            });
            log_splits::search::search_on_pool(jobs, out, stats)
        })
    }
}

/// The log splits of `manifest` whose time range meets `q`'s.
fn log_splits_in_range<'m>(manifest: &'m Manifest, q: &LogSearch<'_>) -> Vec<&'m crate::metastore::LogSplit> {
    manifest.log_splits.iter().filter(|s| s.max_ts_ns >= q.start_ns && s.min_ts_ns <= q.end_ns).collect()
}

impl Store {
    /// [`MetricsReader::select_series`], reading files on `threads` threads (`None`: one per
    /// core when the query reads at least [`PARALLEL_READ_MIN_ROWS`] rows, else one).
    pub(crate) fn select_series_on(
        &self,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
        threads: Option<usize>,
    ) -> std::result::Result<Vec<Series>, String> {
        self.with_selection(matchers, start_ms, end_ms, |mut sel| {
            let head: Vec<(Labels, Vec<(i64, f64)>)> = std::mem::take(&mut sel.head)
                .into_iter()
                .map(|(labels, chunk)| (labels, chunk.iter().filter(|(t, _)| (start_ms..=end_ms).contains(t)).collect::<Vec<_>>()))
                .filter(|(_, samples)| !samples.is_empty())
                .collect();
            for (labels, samples) in &head {
                sel.found.plan_if_found(labels, samples.len());
            }
            sel.found.reserve_planned();
            let threads = threads.unwrap_or(if sel.rows >= PARALLEL_READ_MIN_ROWS { read_threads() } else { 1 });
            let mut found = std::mem::take(&mut sel.found);
            let parts = found.split(threads);
            self.read_parts(&sel, parts, threads > 1, |_| Ok(()))?;
            for (labels, samples) in head {
                found.append(&labels, samples);
            }
            let mut out: Vec<Series> =
                found.into_time_ordered_series().into_iter().map(|(labels, samples)| Series { labels, samples }).collect();
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            Ok(out)
        })
    }

    /// [`MetricsReader::stream_series`], reading parts as `how` says.
    pub(crate) fn stream_series_on(
        &self,
        matchers: &[LabelMatcher],
        (start_ms, end_ms): (i64, i64),
        plan: &mut dyn FnMut(&[Labels]) -> bool,
        sink: &SeriesSink<'_>,
        how: StreamReads,
    ) -> std::result::Result<bool, String> {
        let StreamReads { threads, batch_rows } = how;
        self.with_selection(matchers, start_ms, end_ms, |mut sel| {
            // The head's chunks of each series (by index; the frozen head's, then the head's),
            // decoded by the part that reads the series, after its files' samples, as
            // `select_series_on` appends them.
            let head = std::mem::take(&mut sel.head);
            let mut head_of: Vec<Vec<crate::chunk::Chunk>> = Vec::new();
            for (labels, chunk) in head {
                let index = sel.found.plan(&labels, chunk.len());
                if head_of.len() <= index {
                    head_of.resize_with(index + 1, Vec::new);
                }
                head_of[index].push(chunk);
            }
            let labels: Vec<&Labels> = sel.found.labels().collect();
            let mut order: Vec<usize> = (0..labels.len()).collect();
            order.sort_by(|a, b| labels[*a].cmp(labels[*b]));
            let sorted: Vec<Labels> = order.iter().map(|i| labels[*i].clone()).collect();
            drop(labels);
            if !plan(&sorted) {
                return Ok(false);
            }
            let mut rank = vec![0; order.len()];
            for (r, i) in order.into_iter().enumerate() {
                rank[i] = r;
            }
            let threads = threads.unwrap_or(if sel.rows >= PARALLEL_READ_MIN_ROWS { read_threads() } else { 1 });
            // At least one part per thread: a query of fewer rows than a part holds is read
            // on every thread too.
            let batch_rows = if threads > 1 { batch_rows.min(sel.rows.div_ceil(threads)).max(1) } else { batch_rows };
            let mut found = std::mem::take(&mut sel.found);
            let parts = found.split_planned(batch_rows);
            self.read_parts(&sel, parts, threads > 1, |part| {
                for index in part.indices() {
                    for chunk in head_of.get(index).into_iter().flatten() {
                        part.extend_samples(index, chunk.iter().filter(|(t, _)| (start_ms..=end_ms).contains(t)));
                    }
                }
                part.drain(|index, samples| sink(rank[index], samples));
                Ok(())
            })?;
            Ok(true)
        })
    }

    /// The files and head series a metrics query reads, planned in a [`Found`], for `then`.
    fn with_selection<R>(
        &self,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
        then: impl FnOnce(Selection<'_>) -> std::result::Result<R, String>,
    ) -> std::result::Result<R, String> {
        let (head, manifest) = self.head_chunks(matchers, start_ms, end_ms);
        // Samples go into each series' vector in the order of ingestion: the files, then the
        // head (so an answer does not change when the head is flushed into a file). Files are
        // read in manifest order, which is how compaction orders equal timestamps too, or
        // oldest first when no two overlap in time: the same answer, and then each series'
        // samples usually arrive in time order and need no sorting.
        let mut files: Vec<&crate::metastore::MetricFile> =
            manifest.metric_files.iter().filter(|f| f.max_ts_ms >= start_ms && f.min_ts_ms <= end_ms).collect();
        let mut by_time = files.clone();
        by_time.sort_by_key(|f| (f.min_ts_ms, f.max_ts_ms));
        if by_time.windows(2).all(|w| w[0].max_ts_ms < w[1].min_ts_ms) {
            files = by_time;
        }
        let catalogs: Vec<(&str, Arc<parquet_files::FileSeries>)> = files
            .iter()
            .map(|f| Ok((f.path.as_str(), self.file_series(&f.path)?)))
            .collect::<Result<_>>()
            .map_err(|e| e.to_string())?;
        // Each file's matching series first: every series' vector is then allocated once, at
        // its size, before the samples are read.
        let mut verdicts = HashMap::default();
        let matching: Vec<Vec<&(Labels, usize, usize)>> =
            catalogs.iter().map(|(_, c)| c.matching_with(matchers, &mut verdicts)).collect();
        drop(verdicts);
        let mut found = crate::found::Found::default();
        // Per file, the index in `found` of each matching series.
        let slots: Vec<Vec<usize>> =
            matching.iter().map(|m| m.iter().map(|(labels, start, end)| found.plan(labels, end - start)).collect()).collect();
        let rows: usize = matching.iter().flatten().map(|(_, start, end)| end - start).sum();
        then(Selection { catalogs: &catalogs, matching: &matching, slots, found, head, rows, start_ms, end_ms })
    }

    /// Reads `parts` of a selection's series from every file, in file order, straight into
    /// their vectors (by index, no lookup per run): no copy, and each series' samples in the
    /// order a single reader would give. Each part is then handed to `done`. The parts are
    /// read here one after the other, or as jobs on the thread pool when `parallel`.
    fn read_parts(
        &self,
        sel: &Selection<'_>,
        parts: Vec<crate::found::FoundPart<'_>>,
        parallel: bool,
        done: impl Fn(&mut crate::found::FoundPart<'_>) -> Result<()> + Sync,
    ) -> std::result::Result<(), String> {
        let read_part = |mut part: crate::found::FoundPart<'_>| -> Result<()> {
            part.reserve_planned();
            for ((path, catalog), (entries, slots)) in sel.catalogs.iter().zip(sel.matching.iter().zip(&sel.slots)) {
                let (mine, mine_slots): (Vec<&(Labels, usize, usize)>, Vec<usize>) =
                    entries.iter().zip(slots).filter(|(_, slot)| part.holds(**slot)).map(|(e, slot)| (*e, *slot)).unzip();
                parquet_files::read_runs(&self.data_dir.join(path), catalog, &mine, sel.start_ms, sel.end_ms, |i, ts, values| {
                    part.extend(mine_slots[i], ts, values)
                })?;
            }
            done(&mut part)
        };
        if !parallel || parts.len() <= 1 {
            parts.into_iter().try_for_each(read_part).map_err(|e| e.to_string())
        } else {
            let read_part = &read_part;
            crate::threads::on_pool(parts.into_iter().map(|part| move || read_part(part)), "file reading")
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }
}

/// What a metrics query reads (see [`Store::with_selection`]).
struct Selection<'a> {
    catalogs: &'a [(&'a str, Arc<parquet_files::FileSeries>)],
    /// Per file, its series matching the query.
    matching: &'a [Vec<&'a (Labels, usize, usize)>],
    /// Per file, the index in `found` of each matching series.
    slots: Vec<Vec<usize>>,
    /// The files' series, with the rows each has in them planned.
    found: crate::found::Found,
    /// The head's matching series with samples that may be in the range, the frozen head's
    /// first (a series in both is listed twice).
    head: Vec<(Labels, crate::chunk::Chunk)>,
    /// Rows the files hold for the matching series.
    rows: usize,
    start_ms: i64,
    end_ms: i64,
}

/// How [`Store::stream_series_on`] reads: parts of about `batch_rows` rows, on the thread pool
/// when `threads` (as for [`Store::select_series_on`]) is above one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamReads {
    pub threads: Option<usize>,
    pub batch_rows: usize,
}

/// Rows of one part when a query streams series (see [`MetricsReader::stream_series`]): about
/// 4 MB of samples, read, handed over and freed before the next part on the same thread.
const STREAM_BATCH_ROWS: usize = 256 * 1024;

/// Rows a metrics query reads from files, at least, before it reads them on several threads.
/// Two threads cost 5–30 % more CPU than one (each opens the files and decompresses the pages
/// where their series meet) but, on this machine's 2 cores, cut the tsdb bench's disk sum
/// (104k rows over 1 h, 192k over 2 h) by 27–33 % of its p50. An earlier measurement that
/// found no gain at 100k rows timed each request with a `curl` process of its own, which
/// competed with the server for the two cores (see the README).
const PARALLEL_READ_MIN_ROWS: usize = 100_000;

/// Threads a metrics query reads files on: one per core, at most 8.
fn read_threads() -> usize {
    crate::threads::pool_size().min(8)
}

impl MetricsReader for Store {
    fn exemplars(
        &self,
        selectors: &[Vec<LabelMatcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> std::result::Result<Vec<pharos_model::SeriesExemplars>, String> {
        Ok(self.exemplars.select(selectors, start_ms, end_ms))
    }

    fn select_series(
        &self,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
    ) -> std::result::Result<Vec<Series>, String> {
        self.select_series_on(matchers, start_ms, end_ms, None)
    }

    fn stream_series(
        &self,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
        plan: &mut dyn FnMut(&[Labels]) -> bool,
        sink: &SeriesSink<'_>,
    ) -> std::result::Result<bool, String> {
        self.stream_series_on(matchers, (start_ms, end_ms), plan, sink, StreamReads { threads: None, batch_rows: STREAM_BATCH_ROWS })
    }

    fn metric_metadata(
        &self,
        metric: Option<&str>,
    ) -> std::result::Result<BTreeMap<String, Vec<MetricMetadata>>, String> {
        Ok(self.metadata.get(metric))
    }

    fn select_histograms(
        &self,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
    ) -> std::result::Result<Vec<pharos_model::HistogramSeries>, String> {
        self.select_histograms_in(matchers, start_ms, end_ms).map_err(|e| e.to_string())
    }
}

impl Store {
    /// Native histogram samples of the matching series: the published files (oldest first),
    /// then the head being flushed and the head, all from one snapshot; of two samples of a
    /// series at one timestamp the later one wins.
    pub(crate) fn select_histograms_in(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> Result<Vec<pharos_model::HistogramSeries>> {
        let mut heads = Vec::new();
        let manifest = {
            let st = self.state.read();
            if let Some(f) = &st.frozen {
                f.select_histograms(matchers, start_ms, end_ms, &mut heads);
            }
            st.head.select_histograms(matchers, start_ms, end_ms, &mut heads);
            st.manifest.clone()
        };
        let mut by_series: BTreeMap<Labels, Vec<(i64, Arc<pharos_model::FloatHistogram>)>> = BTreeMap::new();
        let mut files: Vec<&crate::metastore::MetricFile> =
            manifest.histogram_files.iter().filter(|f| f.min_ts_ms <= end_ms && f.max_ts_ms >= start_ms).collect();
        files.sort_by_key(|f| f.created_ms);
        for f in files {
            let path = self.data_dir.join(&f.path);
            let cached = self.histogram_file_series.lock().get(&f.path).cloned();
            let series = match cached {
                Some(s) => s,
                None => {
                    let s = Arc::new(crate::histogram_files::series_of(&path)?);
                    self.histogram_file_series.lock().insert(f.path.clone(), s.clone());
                    s
                }
            };
            if series.iter().any(|l| pharos_model::select::matches_all(matchers, l)) {
                crate::histogram_files::read(&path, matchers, start_ms, end_ms, &mut by_series)?;
            }
        }
        for s in heads {
            by_series.entry(s.labels).or_default().extend(s.samples);
        }
        Ok(crate::histogram_files::into_series(by_series))
    }
}

impl LogsReader for Store {
    fn subscribe_logs(&self, sink: pharos_model::LogSink) -> bool {
        let mut sinks = self.log_sinks.lock();
        sinks.push(sink);
        self.log_sink_count.store(sinks.len(), std::sync::atomic::Ordering::Relaxed);
        true
    }

    fn select_logs(
        &self,
        matchers: &[LabelMatcher],
        contains: &[String],
        start_ns: i64,
        end_ns: i64,
    ) -> std::result::Result<Vec<LogRecord>, String> {
        let mut q = LogSearch::new(matchers, start_ns, end_ns);
        q.contains_any = contains.iter().map(|c| vec![c.clone()]).collect();
        self.search_logs(&q)
    }

    fn search_logs(&self, q: &LogSearch<'_>) -> std::result::Result<Vec<LogRecord>, String> {
        self.search_logs_with_stats(q).map(|(records, _)| records).map_err(|e| e.to_string())
    }

    fn count_logs(&self, q: &LogSearch<'_>) -> std::result::Result<Vec<pharos_model::LogGroup>, String> {
        self.count_logs_with_stats(q).map(|(groups, _)| groups).map_err(|e| e.to_string())
    }

    fn log_stream_stats(
        &self,
        matchers: &[LabelMatcher],
        start_ns: i64,
        end_ns: i64,
    ) -> std::result::Result<Vec<(Labels, pharos_model::StreamStats)>, String> {
        let stats = self.stream_stats(matchers, &[(start_ns, end_ns)]).map_err(|e| e.to_string())?;
        Ok(stats.into_iter().map(|(l, mut s)| (l, s.swap_remove(0))).collect())
    }

    fn log_stream_stats_per_bucket(
        &self,
        matchers: &[LabelMatcher],
        buckets: &[(i64, i64)],
    ) -> std::result::Result<Vec<(Labels, Vec<pharos_model::StreamStats>)>, String> {
        self.stream_stats(matchers, buckets).map_err(|e| e.to_string())
    }

    /// From the head and each split's stream table and columns: no doc store reads for splits
    /// written by this version.
    fn log_streams(
        &self,
        matchers: &[LabelMatcher],
        start_ns: i64,
        end_ns: i64,
    ) -> std::result::Result<Vec<Labels>, String> {
        let mut out = Vec::new();
        let manifest = {
            let st = self.state.read();
            let heads = std::iter::once(&st.head).chain(st.frozen.as_deref());
            out.extend(
                heads
                    .flat_map(|h| h.logs.iter())
                    .filter(|r| r.timestamp_ns >= start_ns && r.timestamp_ns <= end_ns)
                    .filter(|r| pharos_model::select::matches_all(matchers, &r.labels))
                    .map(|r| r.labels.clone()),
            );
            st.manifest.clone()
        };
        for s in &manifest.log_splits {
            let split = self.split_reader(&s.path).map_err(|e| e.to_string())?;
            log_splits::search::split_streams(&split, (s.min_ts_ns, s.max_ts_ns), matchers, start_ns, end_ns, &mut out)
                .map_err(|e| e.to_string())?;
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl Store {
    /// [`LogsReader::log_stream_stats_per_bucket`]: the head's records exactly, each split from
    /// its stream table's totals (see [`log_splits::search::split_stream_stats`]), in one pass
    /// over both whatever the number of buckets.
    fn stream_stats(
        &self,
        matchers: &[LabelMatcher],
        buckets: &[(i64, i64)],
    ) -> Result<Vec<(Labels, Vec<pharos_model::StreamStats>)>> {
        let mut out: HashMap<Labels, Vec<pharos_model::StreamStats>> = HashMap::default();
        let manifest = {
            let st = self.state.read();
            for r in std::iter::once(&st.head).chain(st.frozen.as_deref()).flat_map(|h| h.logs.iter()) {
                if let Some(b) = pharos_model::select::bucket_of(buckets, r.timestamp_ns)
                    && pharos_model::select::matches_all(matchers, &r.labels)
                {
                    out.entry(r.labels.clone()).or_insert_with(|| vec![Default::default(); buckets.len()])[b].add(1, r.body.len() as u64);
                }
            }
            st.manifest.clone()
        };
        for s in &manifest.log_splits {
            let split = self.split_reader(&s.path)?;
            log_splits::search::split_stream_stats(&split, (s.min_ts_ns, s.max_ts_ns), matchers, buckets, &mut out)?;
        }
        let mut out: Vec<(Labels, Vec<pharos_model::StreamStats>)> = out.into_iter().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Offsets per source as published, for tests and diagnostics.
pub fn published_offsets(store: &Store) -> BTreeMap<String, i64> {
    store.manifest().offsets.clone()
}

/// Labels a log stream's service is taken from, first found first (Loki 3's defaults for
/// `discover_service_name`).
pub const SERVICE_NAME_SOURCES: &[&str] =
    &["service", "app", "application", "name", "app_kubernetes_io_name", "container", "container_name", "component", "workload", "job"];

/// Adds `service_name` to the labels of records that have none: the value of the first label of
/// [`SERVICE_NAME_SOURCES`] they have, else `unknown_service` (as Loki 3 does at ingest, so that
/// Grafana's Logs Drilldown lists the services). Records of one stream share the new label set.
fn discover_service_name(records: &mut [pharos_model::LogRecord]) {
    let mut done: std::collections::HashMap<usize, Labels, ahash::RandomState> = Default::default();
    for r in records.iter_mut().filter(|r| r.labels.get("service_name").is_none()) {
        let labels = done.entry(r.labels.ptr_id()).or_insert_with(|| {
            let service = SERVICE_NAME_SOURCES.iter().find_map(|k| r.labels.get(k)).unwrap_or("unknown_service");
            r.labels.with("service_name", service)
        });
        r.labels = labels.clone();
    }
}

/// Sets the severity of records that have none to the level their stream labels or
/// attributes name (a field like `level`, or `detected_level`), else the level their line
/// states ([`pharos_model::level::detect`]); records where none is found keep no severity.
fn discover_levels(records: &mut [pharos_model::LogRecord]) {
    use pharos_model::level;
    for r in records.iter_mut().filter(|r| r.severity.is_empty()) {
        let named = r
            .labels
            .iter()
            .chain(r.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .find(|(k, _)| *k == "detected_level" || level::is_level_key(k))
            .map(|(_, v)| v);
        let found = match named {
            Some(v) => level::normalize(v).or_else(|| level::detect(&r.body)),
            None => level::detect(&r.body),
        };
        if let Some(l) = found {
            r.severity = l.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, t: i64, v: f64) -> Sample {
        Sample::new(Labels::from_pairs([("__name__", name), ("job", "j")]), t, v)
    }

    fn all(store: &Store, name: &str) -> Vec<(i64, f64)> {
        let m = [LabelMatcher::new("__name__", "=", name).unwrap()];
        let s = store.select_series(&m, 0, i64::MAX).unwrap();
        s.into_iter().flat_map(|s| s.samples).collect()
    }

    /// Samples of many files and the head: every one, in time order, equal timestamps in the
    /// order of ingestion (file order, then the head), so flushing the head changes no answer.
    #[test]
    fn samples_from_many_files_and_the_head_come_out_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        let mut expected: Vec<(i64, f64)> = Vec::new();
        for flush in 0..7i64 {
            // Flushes 0, 2, 4, 6 hold even seconds, 1, 3, 5 odd ones; each also repeats t = 500.
            let batch: Vec<Sample> = (0..20).map(|i| sample("a", (i * 2 + flush % 2) * 1000, (flush * 100 + i) as f64)).chain([sample("a", 500, flush as f64)]).collect();
            expected.extend(batch.iter().map(|s| (s.timestamp_ms, s.value)));
            store.ingest("k", flush, Batch::Metrics(batch));
            store.flush().unwrap();
        }
        store.ingest("k", 7, Batch::Metrics(vec![sample("a", 500, -1.0), sample("a", 39_000, -2.0), sample("b", 1, 1.0)]));
        expected.extend([(500, -1.0), (39_000, -2.0)]);
        assert_eq!(store.manifest().metric_files.len(), 7);
        expected.sort_by_key(|(t, _)| *t); // stable: file order, then the head
        assert_eq!(format!("{:?}", all(&store, "a")), format!("{expected:?}"));
        assert_eq!(all(&store, "b"), vec![(1, 1.0)]);
        store.flush().unwrap();
        assert_eq!(format!("{:?}", all(&store, "a")), format!("{expected:?}"), "the same once the head is a file");
    }

    /// Reading files on several threads gives what one thread gives, for every split of the
    /// series: files overlapping in time, out-of-order and duplicate samples, the head, and time
    /// ranges cutting series; and that is every sample ingested in the range, in time order.
    #[test]
    fn files_read_on_several_threads_give_what_one_thread_gives() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        let labels = |i: usize| Labels::from_pairs([("__name__", if i.is_multiple_of(3) { "x" } else { "y" }), ("i", &i.to_string())]);
        let mut ingested: Vec<Sample> = Vec::new();
        for flush in 0..4i64 {
            // Flush 3 goes back in time over flush 1's samples, with some duplicates.
            let t0 = if flush == 3 { 50_000 } else { flush * 100_000 };
            let batch: Vec<Sample> = (0..40usize)
                .flat_map(|i| (0..100i64).map(move |k| (i, k)))
                .filter(|(i, k)| !(i + *k as usize).is_multiple_of(7))
                .map(|(i, k)| Sample::new(labels(i), t0 + k * 1000 + (flush % 2) * 500 * (k % 2), (flush * 1000 + k) as f64 + i as f64 / 100.0))
                .collect();
            ingested.extend(batch.iter().cloned());
            store.ingest("k", flush, Batch::Metrics(batch));
            if flush < 3 {
                store.flush().unwrap();
            }
        }
        assert_eq!(store.manifest().metric_files.len(), 3);
        let key = |v: &[(i64, f64)]| {
            let mut v: Vec<(i64, u64)> = v.iter().map(|(t, x)| (*t, x.to_bits())).collect();
            v.sort();
            v
        };
        for matchers in [vec![], vec![LabelMatcher::new("__name__", "=", "x").unwrap()]] {
            for (start, end) in [(0, i64::MAX), (20_500, 260_000), (99_999, 100_000), (400_000, 500_000)] {
                let one = store.select_series_on(&matchers, start, end, Some(1)).unwrap();
                for threads in [2, 3, 7, 100] {
                    let many = store.select_series_on(&matchers, start, end, Some(threads)).unwrap();
                    assert_eq!(format!("{many:?}"), format!("{one:?}"), "{threads} threads, [{start}, {end}]");
                }
                assert!(one.iter().all(|s| s.samples.is_sorted_by_key(|(t, _)| *t)));
                let mut want: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
                for s in ingested.iter().filter(|s| (start..=end).contains(&s.timestamp_ms) && pharos_model::select::matches_all(&matchers, &s.labels)) {
                    want.entry(s.labels.clone()).or_default().push((s.timestamp_ms, s.value));
                }
                assert_eq!(one.len(), want.len(), "[{start}, {end}]");
                for s in &one {
                    assert_eq!(key(&s.samples), key(&want[&s.labels]), "{} in [{start}, {end}]", s.labels);
                }
                for (threads, batch_rows) in [(1, 1), (1, 150), (2, 1), (2, 150), (7, 400), (2, 1 << 20)] {
                    let how = StreamReads { threads: Some(threads), batch_rows };
                    let streamed = streamed(&store, &matchers, (start, end), how);
                    assert_eq!(format!("{streamed:?}"), format!("{one:?}"), "streamed, {how:?}, [{start}, {end}]");
                }
            }
        }
        // A declined plan reads nothing.
        let mut planned = 0;
        let read = store.stream_series_on(&[], (0, i64::MAX), &mut |l| { planned = l.len(); false }, &|_, _| panic!("read"), StreamReads { threads: Some(2), batch_rows: 1 });
        assert_eq!((read, planned), (Ok(false), 40));
    }

    /// What [`Store::stream_series_on`] hands over, checked and collected as `select_series`
    /// gives it: the planned label sets sorted and distinct, each series at most once.
    fn streamed(store: &Store, matchers: &[LabelMatcher], range: (i64, i64), how: StreamReads) -> Vec<Series> {
        let mut planned: Vec<Labels> = Vec::new();
        let got = std::sync::Mutex::new(Vec::<Option<Vec<(i64, f64)>>>::new());
        let read = store
            .stream_series_on(
                matchers,
                range,
                &mut |labels| {
                    planned = labels.to_vec();
                    *got.lock().unwrap() = vec![None; labels.len()];
                    true
                },
                &|i, samples| {
                    let old = got.lock().unwrap()[i].replace(samples.to_vec());
                    assert!(old.is_none(), "series {i} handed over twice");
                },
                how,
            )
            .unwrap();
        assert!(read);
        assert!(planned.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        planned
            .into_iter()
            .zip(got.into_inner().unwrap())
            .filter_map(|(labels, samples)| Some(Series { labels, samples: samples? }))
            .collect()
    }

    /// Files that do not overlap in time are read oldest first whatever their manifest order,
    /// which gives the answer the manifest order would, already in time order.
    #[test]
    fn files_disjoint_in_time_are_read_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        let hour = 3_600_000;
        // Ingested newest hour first: the manifest lists the files newest first.
        let mut expected = Vec::new();
        for (offset, h) in [3i64, 1, 2, 0].into_iter().enumerate() {
            let batch: Vec<Sample> = (0..5).map(|i| sample("a", h * hour + i * 15_000, (h * 10 + i) as f64)).collect();
            expected.extend(batch.iter().map(|s| (s.timestamp_ms, s.value)));
            store.ingest("k", offset as i64, Batch::Metrics(batch));
            store.flush().unwrap();
        }
        // The head holds the newest samples, and one between the files' times.
        store.ingest("k", 9, Batch::Metrics(vec![sample("a", 4 * hour, 40.0), sample("a", hour + 1, 11.5)]));
        expected.extend([(4 * hour, 40.0), (hour + 1, 11.5)]);
        expected.sort_by_key(|(t, _)| *t);
        let files = store.manifest().metric_files.clone();
        assert_eq!(files.len(), 4);
        assert!(files[0].min_ts_ms > files[1].max_ts_ms, "newest first in the manifest");
        assert_eq!(all(&store, "a"), expected);
        let m = [LabelMatcher::new("__name__", "=", "a").unwrap()];
        let part = store.select_series(&m, hour + 1, 2 * hour + 15_000).unwrap();
        let want: Vec<(i64, f64)> = expected.iter().copied().filter(|(t, _)| (hour + 1..=2 * hour + 15_000).contains(t)).collect();
        assert_eq!(part[0].samples, want);
    }

    /// Metadata acknowledged over HTTP (remote_write and OTLP) survives a restart, whether the
    /// WAL records that brought it were published (WAL deleted) or not (WAL replayed).
    #[test]
    fn metric_metadata_survives_restart() {
        use pharos_model::{FamilyIndex, MetricType, remote_write};
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(CollectorMetrics::default());
        let cpu = MetricMetadata::new("node_cpu_seconds_total", MetricType::Counter, "Seconds the CPUs spent.", "");
        let lat = MetricMetadata::new("lat", MetricType::Histogram, "Latency.", "seconds");
        let store = Store::open(dir.path(), metrics.clone()).unwrap();
        // A metadata-only remote_write request, as Prometheus sends them.
        store.ingest_durable(WalKind::RemoteWriteSnappy, &remote_write::encode_with_metadata(&[], std::slice::from_ref(&cpu))).unwrap();
        assert_eq!(store.metadata.writes(), 1);
        store.flush().unwrap();
        // The agent's OTLP: a histogram's flattened series naming their family.
        let otlp_body = otlp::encode_metrics_with_metadata(
            &Labels::default(),
            &[sample("lat_count", 1000, 1.0), sample("lat_sum", 1000, 0.5)],
            &FamilyIndex::new([lat.clone()]),
        );
        store.ingest_durable(WalKind::MetricsProtobuf, &otlp_body).unwrap();
        store.ingest_durable(WalKind::MetricsProtobuf, &otlp_body).unwrap();
        assert_eq!(store.metadata.writes(), 2, "the repeated request changes nothing and writes nothing");
        let want = BTreeMap::from([
            ("lat".to_string(), vec![lat.clone()]),
            ("node_cpu_seconds_total".to_string(), vec![cpu.clone()]),
        ]);
        assert_eq!(store.metric_metadata(None).unwrap(), want);
        drop(store); // a crash: the OTLP records are only in the WAL

        let store = Store::open(dir.path(), metrics.clone()).unwrap();
        assert_eq!(store.metric_metadata(None).unwrap(), want);
        assert_eq!(store.metadata.writes(), 0, "replaying known metadata writes nothing");
        store.flush().unwrap();
        drop(store);
        let store = Store::open(dir.path(), metrics).unwrap();
        assert_eq!(store.metric_metadata(Some("lat")).unwrap(), BTreeMap::from([("lat".to_string(), vec![lat])]));
        assert!(all(&store, "lat_count").contains(&(1000, 1.0)), "the samples came along");
    }

    #[test]
    fn replayed_offsets_are_ignored_across_flush_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(CollectorMetrics::default());
        let store = Store::open(dir.path(), metrics.clone()).unwrap();
        assert!(store.ingest("kafka:m:0", 0, Batch::Metrics(vec![sample("a", 1000, 1.0)])));
        assert!(store.ingest("kafka:m:0", 1, Batch::Metrics(vec![sample("a", 2000, 2.0)])));
        assert!(!store.ingest("kafka:m:0", 1, Batch::Metrics(vec![sample("a", 2000, 2.0)])), "same offset twice");
        let report = store.flush().unwrap();
        assert_eq!((report.metric_files, report.rows), (1, 2));
        assert!(!store.ingest("kafka:m:0", 0, Batch::Metrics(vec![sample("a", 1000, 1.0)])), "published offset");
        assert!(store.ingest("kafka:m:0", 2, Batch::Metrics(vec![sample("a", 3000, 3.0)])));
        // Head and files merge in one answer.
        assert_eq!(all(&store, "a"), vec![(1000, 1.0), (2000, 2.0), (3000, 3.0)]);
        drop(store); // a crash: offset 2 was never published

        let store = Store::open(dir.path(), metrics).unwrap();
        assert_eq!(store.published_offset("kafka:m:0"), Some(1));
        assert_eq!(all(&store, "a"), vec![(1000, 1.0), (2000, 2.0)]);
        assert!(store.ingest("kafka:m:0", 2, Batch::Metrics(vec![sample("a", 3000, 3.0)])), "re-read after restart");
        assert_eq!(all(&store, "a").len(), 3);
    }

    #[test]
    fn acknowledged_http_data_survives_a_crash_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(CollectorMetrics::default());
        let store = Store::open(dir.path(), metrics.clone()).unwrap();
        let body = |t: i64| otlp::encode_metrics(&Labels::default(), &[sample("h", t, t as f64)]);
        store.ingest_durable(WalKind::MetricsProtobuf, &body(1000)).unwrap();
        store.flush().unwrap();
        store.ingest_durable(WalKind::MetricsProtobuf, &body(2000)).unwrap();
        assert!(matches!(store.ingest_durable(WalKind::MetricsProtobuf, b"\xff garbage"), Err(Error::BadInput(_))));
        drop(store); // crash before the second flush

        let store = Store::open(dir.path(), metrics.clone()).unwrap();
        assert_eq!(all(&store, "h"), vec![(1000, 1000.0), (2000, 2000.0)], "WAL replayed, published not repeated");
        store.flush().unwrap();
        drop(store);
        let store = Store::open(dir.path(), metrics).unwrap();
        assert_eq!(all(&store, "h"), vec![(1000, 1000.0), (2000, 2000.0)]);
        store.ingest_durable(WalKind::MetricsProtobuf, &body(3000)).unwrap();
        assert_eq!(all(&store, "h").len(), 3, "sequence numbers continue after a restart");
    }

    #[test]
    fn snappy_remote_write_is_kept_compressed_and_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(CollectorMetrics::default());
        let store = Store::open(dir.path(), metrics.clone()).unwrap();
        let samples: Vec<Sample> = (0..1000).map(|i| sample("rw", i * 1000, 0.5)).collect();
        let body = pharos_model::remote_write::encode(&samples);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert!(body.len() * 4 < raw.len(), "the test body compresses");
        store.ingest_durable(WalKind::RemoteWriteSnappy, &body).unwrap();
        let e = store.ingest_durable(WalKind::RemoteWriteSnappy, &raw).unwrap_err();
        assert!(matches!(&e, Error::BadInput(m) if m.contains("snappy")), "{e}");
        let wal_bytes: u64 = std::fs::read_dir(dir.path().join("wal"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(wal_bytes < raw.len() as u64, "the WAL holds the compressed body ({wal_bytes} bytes)");
        drop(store);
        let store = Store::open(dir.path(), metrics).unwrap();
        assert_eq!(all(&store, "rw").len(), 1000, "replayed from the compressed record");
    }

    /// Native histograms of remote_write are stored with their series (`team` added like on
    /// floats) and read back the same: from the head, from the WAL after a restart, from their
    /// Parquet file after a flush, and from the merged file after compaction; a sample sent again
    /// at the same timestamp replaces the earlier one; an invalid histogram refuses its request
    /// with the reason, storing nothing of it. Exemplars of the same request are kept.
    #[test]
    fn remote_write_native_histograms_are_stored_flushed_compacted_and_read_back() {
        use pharos_model::histogram::Span;
        use pharos_model::remote_write::{Histogram, Label, RemoteSample, TimeSeries, WriteRequest};
        use pharos_model::{FloatHistogram, HistogramSeries};
        use prost::Message;
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(CollectorMetrics::default());
        let teams: pharos_model::team::TeamMapping = serde_json::from_str(r#"{"default": "platform"}"#).unwrap();
        let options = || StoreOptions { teams: teams.clone(), ..StoreOptions::default() };
        let store = Store::open_with(dir.path(), metrics.clone(), options()).unwrap();
        let hist = |n: f64| FloatHistogram {
            schema: 1,
            count: 3.0 * n,
            sum: 2.5 * n,
            zero_threshold: 0.001,
            zero_count: n,
            positive_spans: vec![Span { offset: -1, length: 1 }, Span { offset: 2, length: 1 }],
            positive_buckets: vec![n, n],
            custom_values: vec![],
            ..Default::default()
        };
        let labels = vec![Label { name: "__name__".into(), value: "rpc_seconds".into() }, Label { name: "namespace".into(), value: "api".into() }];
        let body = |samples: &[(i64, f64)]| {
            let series = TimeSeries {
                labels: labels.clone(),
                samples: vec![RemoteSample { value: 1.0, timestamp: 500 }],
                histograms: samples.iter().map(|&(t, n)| Histogram::float(t, &hist(n))).collect(),
            };
            snap::raw::Encoder::new().compress_vec(&WriteRequest { timeseries: vec![series], ..Default::default() }.encode_to_vec()).unwrap()
        };
        let done = store.ingest_durable(WalKind::RemoteWriteSnappy, &body(&[(1000, 1.0), (2000, 2.0)])).unwrap();
        assert_eq!(done, Ingested { items: 1, exemplars: 0, histograms: 2, histograms_dropped: 0 });
        assert_eq!(metrics.native_histograms_ingested.get(), 2);
        let series = Labels::from_pairs([("__name__", "rpc_seconds"), ("namespace", "api"), ("team", "platform")]);
        let want = |samples: &[(i64, f64)]| {
            vec![HistogramSeries { labels: series.clone(), samples: samples.iter().map(|&(t, n)| (t, Arc::new(hist(n)))).collect() }]
        };
        let m = [LabelMatcher::equal("__name__", "rpc_seconds")];
        assert_eq!(store.select_histograms(&m, 0, 10_000).unwrap(), want(&[(1000, 1.0), (2000, 2.0)]), "from the head");
        assert_eq!(store.select_histograms(&m, 1500, 10_000).unwrap(), want(&[(2000, 2.0)]), "a time range");
        assert_eq!(store.select_histograms(&[LabelMatcher::equal("__name__", "other")], 0, 10_000).unwrap(), vec![]);
        // The float sample of the same series is a float series as before.
        assert_eq!(store.select_series(&m, 0, 10_000).unwrap().len(), 1);

        // An invalid histogram (two buckets in its spans, one count) refuses the request.
        let mut bad = hist(1.0);
        bad.positive_buckets.pop();
        let bad_body = {
            let series = TimeSeries { labels: labels.clone(), samples: vec![], histograms: vec![Histogram::float(3000, &bad)] };
            snap::raw::Encoder::new().compress_vec(&WriteRequest { timeseries: vec![series], ..Default::default() }.encode_to_vec()).unwrap()
        };
        let e = store.ingest_durable(WalKind::RemoteWriteSnappy, &bad_body).unwrap_err();
        assert!(e.to_string().contains("positive side: spans need 2 buckets, have 1"), "{e}");

        drop(store);
        let store = Store::open_with(dir.path(), metrics.clone(), options()).unwrap();
        assert_eq!(store.select_histograms(&m, 0, 10_000).unwrap(), want(&[(1000, 1.0), (2000, 2.0)]), "replayed from the WAL");
        store.flush().unwrap();
        assert_eq!(store.manifest().histogram_files.len(), 1);
        assert!(store.manifest().histogram_files[0].path.starts_with("histograms/date=1970-01-01/hour=00/"));
        assert_eq!(store.select_histograms(&m, 0, 10_000).unwrap(), want(&[(1000, 1.0), (2000, 2.0)]), "from the file");
        // The file's series are known after the first read: a selector of other series skips it.
        assert_eq!(store.select_histograms(&[LabelMatcher::equal("__name__", "other")], 0, 10_000).unwrap(), vec![]);
        assert_eq!(store.histogram_file_series.lock().values().map(|s| (**s).clone()).collect::<Vec<_>>(), vec![vec![series.clone()]]);
        assert_eq!(store.select_histograms(&[LabelMatcher::equal("team", "platform")], 0, 10_000).unwrap(), want(&[(1000, 1.0), (2000, 2.0)]));
        // The same timestamp again (a newer value) and a new one: a second file.
        store.ingest_durable(WalKind::RemoteWriteSnappy, &body(&[(2000, 5.0), (3000, 3.0)])).unwrap();
        store.flush().unwrap();
        let both = want(&[(1000, 1.0), (2000, 5.0), (3000, 3.0)]);
        assert_eq!(store.select_histograms(&m, 0, 10_000).unwrap(), both, "two files, the later sample of 2000 kept");
        let far_future = chrono::Utc::now().timestamp_millis() + 3_600_000;
        let r = store.compact_at(4, std::time::Duration::from_secs(600), far_future).unwrap();
        assert!(r.files_compacted >= 2, "{r:?}");
        let files = store.manifest().histogram_files.clone();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!((files[0].samples, files[0].series, files[0].zstd_level), (3, 1, parquet_files::COMPACT_ZSTD_LEVEL));
        assert_eq!(store.select_histograms(&m, 0, 10_000).unwrap(), both, "from the compacted file");
        drop(store);
        let store = Store::open_with(dir.path(), metrics, options()).unwrap();
        assert_eq!(store.select_histograms(&m, 0, 10_000).unwrap(), both, "after a restart");
        // Retention drops them with the float files.
        store.apply_retention(std::time::Duration::from_secs(1), far_future).unwrap();
        assert!(store.manifest().histogram_files.is_empty());
        assert_eq!(store.select_histograms(&m, 0, 10_000).unwrap(), vec![]);
    }

    /// Exemplars of remote_write 2.0 requests and OTLP are kept under their series' labels (with the
    /// `team` the mapping adds), an out-of-order one is refused, a resent one is a duplicate,
    /// and after a restart they come back from the WAL.
    #[test]
    fn exemplars_are_kept_with_their_series_and_replayed_from_the_wal() {
        use pharos_model::remote_write_v2::{self as v2, RequestBuilder};
        use pharos_model::{Exemplar, SeriesExemplars};
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(CollectorMetrics::default());
        let teams: pharos_model::team::TeamMapping = serde_json::from_str(r#"{"default": "platform"}"#).unwrap();
        let options = || StoreOptions { teams: teams.clone(), ..StoreOptions::default() };
        let store = Store::open_with(dir.path(), metrics.clone(), options()).unwrap();
        let series = Labels::from_pairs([("__name__", "rpc_seconds_bucket"), ("le", "0.5"), ("namespace", "api")]);
        let request = |exemplars: &[(&str, f64, i64)]| {
            let mut b = RequestBuilder::default();
            let labels_refs = b.label_refs(&series);
            let exemplars = exemplars
                .iter()
                .map(|&(trace, value, timestamp)| {
                    let labels_refs = vec![b.symbol("trace_id"), b.symbol(trace)];
                    v2::Exemplar { labels_refs, value, timestamp }
                })
                .collect();
            b.push(v2::TimeSeries { labels_refs, samples: vec![pharos_model::remote_write::RemoteSample { value: 4.0, timestamp: 2000 }], exemplars, ..Default::default() });
            b.encode_snappy()
        };
        let done = store.ingest_durable(WalKind::RemoteWrite2Snappy, &request(&[("aa", 0.3, 1500), ("bb", 0.4, 1900)])).unwrap();
        assert_eq!(done, Ingested { items: 1, exemplars: 2, histograms: 0, histograms_dropped: 0 });
        // bb again (a duplicate, counted as written) and one older than bb (refused).
        let done = store.ingest_durable(WalKind::RemoteWrite2Snappy, &request(&[("bb", 0.4, 1900), ("cc", 0.1, 1000)])).unwrap();
        assert_eq!(done, Ingested { items: 1, exemplars: 1, histograms: 0, histograms_dropped: 0 });
        assert_eq!((metrics.exemplars_appended.get(), metrics.exemplars_dropped.get()), (2, 1));
        let with_team = series.with("team", "platform");
        let ex = |trace: &str, value: f64, timestamp_ms: i64| Exemplar { labels: Labels::from_pairs([("trace_id", trace)]), value, timestamp_ms };
        let expected = vec![SeriesExemplars { series: with_team.clone(), exemplars: vec![ex("aa", 0.3, 1500), ex("bb", 0.4, 1900)] }];
        let selectors = vec![vec![LabelMatcher::equal("__name__", "rpc_seconds_bucket"), LabelMatcher::equal("team", "platform")]];
        assert_eq!(store.exemplars(&selectors, 0, 10_000).unwrap(), expected);
        assert_eq!(store.exemplars(&selectors, 1600, 10_000).unwrap()[0].exemplars, vec![ex("bb", 0.4, 1900)]);
        drop(store);
        let store = Store::open_with(dir.path(), metrics, options()).unwrap();
        assert_eq!(store.exemplars(&selectors, 0, 10_000).unwrap(), expected, "replayed from the WAL");

        // An OTLP data point's exemplars take the same way, `team` included.
        let otlp = br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"k8s.namespace.name","value":{"stringValue":"api"}}]},
            "scopeMetrics":[{"metrics":[{"name":"jobs","gauge":{"dataPoints":[{"timeUnixNano":"3000000000","asDouble":1,
              "exemplars":[{"timeUnixNano":"2900000000","asDouble":1,"traceId":"000000000000000000000000000000dd"}]}]}}]}]}]}"#;
        assert_eq!(store.ingest_durable(WalKind::MetricsJson, otlp).unwrap(), Ingested { items: 1, exemplars: 1, histograms: 0, histograms_dropped: 0 });
        let jobs = vec![vec![LabelMatcher::equal("__name__", "jobs")]];
        let series = Labels::from_pairs([("__name__", "jobs"), ("namespace", "api"), ("team", "platform")]);
        let exemplar = Exemplar { labels: Labels::from_pairs([("trace_id", "000000000000000000000000000000dd")]), value: 1.0, timestamp_ms: 2900 };
        assert_eq!(store.exemplars(&jobs, 0, 10_000).unwrap(), vec![SeriesExemplars { series, exemplars: vec![exemplar] }]);
    }

    #[test]
    fn team_mapping_fills_team_only_where_missing() {
        let dir = tempfile::tempdir().unwrap();
        let teams: pharos_model::team::TeamMapping =
            serde_json::from_str(r#"{"rules": [{"namespace": "spark-*", "team": "data-eng"}]}"#).unwrap();
        let store =
            Store::open_with(dir.path(), Arc::new(CollectorMetrics::default()), StoreOptions { teams, ..Default::default() }).unwrap();
        let s = |pairs: &[(&str, &str)]| {
            let mut p = vec![("__name__", "m")];
            p.extend_from_slice(pairs);
            Sample::new(Labels::from_pairs(p.iter().copied()), 1000, 1.0)
        };
        store.ingest(
            "wal",
            1,
            Batch::Metrics(vec![
                s(&[("namespace", "spark-etl")]),
                s(&[("namespace", "spark-etl2"), ("team", "finance")]),
                s(&[("namespace", "web")]),
                s(&[("pod", "x")]),
            ]),
        );
        let got: Vec<(Option<String>, Option<String>)> = store
            .select_series(&[LabelMatcher::new("__name__", "=", "m").unwrap()], 0, 2000)
            .unwrap()
            .into_iter()
            .map(|s| (s.labels.get("namespace").map(str::to_string), s.labels.get("team").map(str::to_string)))
            .collect();
        let expect = |ns: Option<&str>, team: Option<&str>| (ns.map(str::to_string), team.map(str::to_string));
        assert_eq!(got.len(), 4);
        assert!(got.contains(&expect(Some("spark-etl"), Some("data-eng"))), "{got:?}");
        assert!(got.contains(&expect(Some("spark-etl2"), Some("finance"))), "an existing team wins: {got:?}");
        assert!(got.contains(&expect(Some("web"), None)), "no rule, no default: {got:?}");
        assert!(got.contains(&expect(None, None)), "no namespace: {got:?}");
    }

    /// A file that overlaps a query's range lists every series it holds; only those with
    /// samples in the range are selected (`/api/v1/series` lists what this returns).
    #[test]
    fn series_without_samples_in_the_range_are_not_selected() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        store.ingest("k", 0, Batch::Metrics(vec![sample("early", 1000, 1.0), sample("late", 5000, 2.0), sample("late", 1000, 3.0)]));
        store.flush().unwrap();
        store.ingest("k", 1, Batch::Metrics(vec![sample("early", 900, 4.0)]));
        for (start, end, want) in [(4000, 6000, vec!["late"]), (0, 2000, vec!["early", "late"]), (2000, 4000, vec![])] {
            let got = store.select_series(&[LabelMatcher::new("job", "=", "j").unwrap()], start, end).unwrap();
            let names: Vec<&str> = got.iter().map(|s| s.labels.metric_name().unwrap()).collect();
            assert_eq!(names, want, "[{start}, {end}]");
            assert!(got.iter().all(|s| s.samples.iter().all(|(t, _)| (start..=end).contains(t))));
        }
    }

    #[test]
    fn file_series_cache_follows_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        store.ingest("k", 0, Batch::Metrics(vec![sample("a", 1000, 1.0), sample("b", 1000, 9.0)]));
        store.flush().unwrap();
        store.ingest("k", 1, Batch::Metrics(vec![sample("a", 2000, f64::NAN), sample("a", 2000, 2.0)]));
        store.flush().unwrap();
        let before = all(&store, "a");
        assert_eq!(before.len(), 3, "a duplicate timestamp stays visible: {before:?}");
        assert_eq!(store.file_series.lock().len(), 2);
        assert_eq!(store.compact(2).unwrap().files_written, 1);
        // The compacted-away files' lists are dropped; the new file's list is there from the
        // start, so no query reads it back.
        let cached: Vec<String> = store.file_series.lock().keys().cloned().collect();
        let published: Vec<String> = store.manifest().metric_files.iter().map(|f| f.path.clone()).collect();
        assert_eq!(cached, published);
        let after = all(&store, "a");
        assert_eq!(format!("{before:?}"), format!("{after:?}"));
        assert_eq!(all(&store, "b"), vec![(1000, 9.0)]);
        assert_eq!(store.file_series.lock().len(), 1);
        // Both files' lists shared the two label sets; the compacted file's list still uses them.
        assert_eq!(store.label_cache.prune(), 2);
        store.file_series.lock().clear();
        assert_eq!(store.label_cache.prune(), 0, "label sets no list uses are dropped");
    }

    #[test]
    fn log_attributes_survive_wal_replay_flush_and_restart_for_every_log_kind() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(CollectorMetrics::default());
        let store = Store::open(dir.path(), metrics.clone()).unwrap();
        let rec = |app: &str, t: i64, attrs: &[(&str, &str)]| LogRecord {
            attributes: pharos_model::normalize_attributes(
                attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ),
            ..LogRecord::new(Labels::from_pairs([("app", app), ("service_name", app)]), t, format!("{app} line {t}"), "")
        };
        let otlp_pb = vec![rec("otlp-pb", 1, &[("trace_id", "aa"), ("user", "ada")]), rec("otlp-pb", 2, &[])];
        let otlp_json = vec![rec("otlp-json", 3, &[("trace_id", "aa")])];
        let loki_json = vec![rec("loki-json", 4, &[("trace_id", "aa"), ("user", "bob")]), rec("loki-json", 5, &[("trace_id", "bb")])];
        let loki_pb = vec![rec("loki-pb", 6, &[("trace_id", "aa")])];
        store.ingest_durable(WalKind::LogsProtobuf, &otlp::encode_logs(&otlp_pb)).unwrap();
        let json_body = format!(
            r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"app","value":{{"stringValue":"otlp-json"}}}}]}},
              "scopeLogs":[{{"logRecords":[{{"timeUnixNano":"3","body":{{"stringValue":"{}"}},
              "attributes":[{{"key":"trace_id","value":{{"stringValue":"aa"}}}}]}}]}}]}}]}}"#,
            otlp_json[0].body
        );
        store.ingest_durable(WalKind::LogsJson, json_body.as_bytes()).unwrap();
        let loki_body = serde_json::json!({"streams": [{"stream": {"app": "loki-json"}, "values": loki_json
            .iter()
            .map(|r| serde_json::json!([r.timestamp_ns.to_string(), r.body, r.attributes.iter().cloned().collect::<BTreeMap<_, _>>()]))
            .collect::<Vec<_>>()}]});
        store.ingest_durable(WalKind::LokiPushJson, loki_body.to_string().as_bytes()).unwrap();
        let raw = crate::loki_push::encode_protobuf(&loki_pb);
        let snappy = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        store.ingest_durable(WalKind::LokiPushSnappy, &snappy).unwrap();
        let all: Vec<LogRecord> = [otlp_pb, otlp_json, loki_json, loki_pb].concat();
        let expect = |k: &str, v: &str| -> Vec<LogRecord> {
            all.iter().filter(|r| r.attribute(k) == Some(v)).cloned().collect()
        };
        let check = |store: &Store, when: &str| {
            let mut everything = store.search_logs(&LogSearch::new(&[], 0, 100)).unwrap();
            everything.sort_by_key(|r| r.timestamp_ns);
            assert_eq!(everything, all, "{when}: every record with its attributes");
            for (k, v) in [("trace_id", "aa"), ("trace_id", "bb"), ("user", "ada"), ("user", "nobody")] {
                let mut q = LogSearch::new(&[], 0, 100);
                q.label_equals = vec![(k.to_string(), v.to_string())];
                let mut got = store.search_logs(&q).unwrap();
                got.sort_by_key(|r| r.timestamp_ns);
                assert_eq!(got, expect(k, v), "{when}: {k}={v}");
            }
        };
        check(&store, "head");
        drop(store); // crash: only the WAL has them
        let store = Store::open(dir.path(), metrics.clone()).unwrap();
        check(&store, "replayed head");
        store.flush().unwrap();
        check(&store, "split");
        drop(store);
        let store = Store::open(dir.path(), metrics).unwrap();
        check(&store, "split after restart");
    }

    #[test]
    fn levels_are_discovered_at_ingest_and_after_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let rec = |t: i64, labels: &[(&str, &str)], attrs: &[(&str, &str)], severity: &str, body: &str| LogRecord {
            labels: Labels::from_pairs(labels.iter().copied()),
            timestamp_ns: t,
            body: body.into(),
            severity: severity.into(),
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        let batch = || {
            Batch::Logs(vec![
                rec(1, &[("pod", "p")], &[], "", "24/11/22 17:25:34 ERROR Executor: task failed"),
                rec(2, &[("pod", "p")], &[], "WARNING", "the source's severity is kept: ERROR"),
                rec(3, &[("pod", "p"), ("Level", "Debug")], &[], "", "a stream label names it"),
                rec(4, &[("pod", "p")], &[("severity", "crit")], "", "an attribute names it"),
                rec(5, &[("pod", "p")], &[("lvl", "chatty")], "", "level=info msg=\"not a level above\""),
                rec(6, &[("pod", "p")], &[], "", "nothing to see here"),
            ])
        };
        let severities = |store: &Store| {
            let m = [LabelMatcher::new("pod", "=", "p").unwrap()];
            let mut got = store.select_logs(&m, &[], 0, 10).unwrap();
            got.sort_by_key(|r| r.timestamp_ns);
            got.into_iter().map(|r| r.severity).collect::<Vec<_>>()
        };
        let want = ["error", "WARNING", "debug", "critical", "info", ""];
        {
            let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
            let Batch::Logs(records) = batch() else { unreachable!() };
            store.ingest_durable(WalKind::LogsProtobuf, &pharos_model::otlp::encode_logs(&records)).unwrap();
            assert_eq!(severities(&store), want, "head");
        }
        // The WAL keeps the body as received: the replay discovers the same levels.
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        assert_eq!(severities(&store), want, "after the WAL replay");
        store.flush().unwrap();
        assert_eq!(severities(&store), want, "split");

        let off = tempfile::tempdir().unwrap();
        let options = StoreOptions { discover_log_levels: false, ..Default::default() };
        let store = Store::open_with(off.path(), Arc::new(CollectorMetrics::default()), options).unwrap();
        store.ingest("wal", 1, batch());
        assert_eq!(severities(&store), ["", "WARNING", "", "", "", ""], "discovery off");
    }

    /// Loki 3's service name: the first of its source labels a stream has, else
    /// `unknown_service`; a stream that has one keeps it; off, nothing is added.
    #[test]
    fn log_streams_get_a_service_name() {
        let rec = |labels: &[(&str, &str)]| LogRecord::new(Labels::from_pairs(labels.iter().copied()), 1, "x", "");
        let batch = || {
            Batch::Logs(vec![
                rec(&[("app", "api"), ("container", "c")]),
                rec(&[("container", "c"), ("job", "j")]),
                rec(&[("pod", "p")]),
                rec(&[("app", "api"), ("service_name", "given")]),
            ])
        };
        let services = |options: StoreOptions| {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_with(dir.path(), Arc::new(CollectorMetrics::default()), options).unwrap();
            store.ingest("wal", 1, batch());
            let mut got: Vec<Option<String>> =
                store.select_logs(&[], &[], 0, 10).unwrap().iter().map(|r| r.labels.get("service_name").map(str::to_string)).collect();
            got.sort();
            got
        };
        let some = |s: &str| Some(s.to_string());
        assert_eq!(services(StoreOptions::default()), vec![some("api"), some("c"), some("given"), some("unknown_service")]);
        let off = StoreOptions { discover_service_name: false, ..Default::default() };
        assert_eq!(services(off), vec![None, None, None, some("given")]);
    }

    #[test]
    fn logs_are_searchable_in_head_and_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        let rec = |t: i64, body: &str| LogRecord {
            labels: Labels::from_pairs([("pod", "p")]),
            timestamp_ns: t,
            body: body.into(),
            severity: String::new(),
            attributes: Vec::new(),
        };
        store.ingest("kafka:l:0", 0, Batch::Logs(vec![rec(1, "alpha"), rec(2, "beta")]));
        store.flush().unwrap();
        store.ingest("kafka:l:0", 1, Batch::Logs(vec![rec(3, "alpha again")]));
        let m = [LabelMatcher::new("pod", "=", "p").unwrap()];
        let mut got = store.select_logs(&m, &["alpha".to_string()], 0, 10).unwrap();
        got.sort_by_key(|r| r.timestamp_ns);
        assert_eq!(got.iter().map(|r| r.body.as_str()).collect::<Vec<_>>(), vec!["alpha", "alpha again"]);
    }

    #[test]
    fn a_one_word_count_reads_no_line_from_the_splits() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(CollectorMetrics::default());
        let store = Store::open(dir.path(), metrics.clone()).unwrap();
        let rec = |t: i64| LogRecord {
            labels: Labels::from_pairs([("pod", if t % 2 == 0 { "a" } else { "b" })]),
            timestamp_ns: t,
            body: match t % 5 {
                0 => format!("{t} java.lang.OutOfMemoryError: heap"),
                1 => format!("{t} outofmemoryerror in lower case"),
                2 => format!("{t} MyOutOfMemoryErrorHandler"),
                _ => format!("{t} fine"),
            },
            severity: String::new(),
            attributes: Vec::new(),
        };
        for s in 0..3i64 {
            store.ingest("k", s, Batch::Logs((s * 100..s * 100 + 100).map(rec).collect()));
            store.flush().unwrap();
        }
        store.ingest("k", 3, Batch::Logs((300..310).map(rec).collect()));
        let pod_a = [LabelMatcher::new("pod", "=", "a").unwrap()];
        for matchers in [&[][..], &pod_a[..]] {
            let mut q = LogSearch::new(matchers, 50, 305);
            q.contains_any = vec![vec!["OutOfMemoryError".into()]];
            q.body_unused = true;
            let before = metrics.log_docs_loaded.get();
            let (got, stats) = store.search_logs_with_stats(&q).unwrap();
            let mut ts: Vec<i64> = got.iter().map(|r| r.timestamp_ns).collect();
            ts.sort();
            let expected: Vec<i64> =
                (50..=305).filter(|t| t % 5 == 0 || t % 5 == 2).filter(|t| matchers.is_empty() || t % 2 == 0).collect();
            assert_eq!(ts, expected, "{matchers:?}");
            assert_eq!(stats.docs_loaded, 0);
            assert_eq!(metrics.log_docs_loaded.get(), before);
            assert_eq!(stats.bodies_skipped, expected.iter().filter(|t| **t < 300).count());
        }
    }

    /// Counting (`count_logs`) gives the timestamps the search gives, grouped by stream,
    /// severity and attributes; with every filter decided by the index the splits are counted
    /// from their columns, reading only the records with attributes.
    #[test]
    fn counts_are_the_search_grouped_and_read_only_records_with_attributes() {
        use std::collections::BTreeMap;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        let rec = |t: i64| LogRecord {
            labels: Labels::from_pairs([("pod", ["a", "b", "c"][(t % 3) as usize])]),
            timestamp_ns: t,
            body: format!("{t} {}", if t % 4 == 0 { "hit OutOfMemoryError" } else { "miss" }),
            severity: ["", "ERROR", "info", "WARN", "error"][(t % 5) as usize].to_string(),
            attributes: if t % 7 == 0 { vec![("trace_id".to_string(), format!("t{}", t % 2))] } else { Vec::new() },
        };
        for s in 0..3i64 {
            store.ingest("k", s, Batch::Logs((s * 200..s * 200 + 200).map(rec).collect()));
            store.flush().unwrap();
        }
        store.ingest("k", 3, Batch::Logs((600..640).map(rec).collect()));
        type Canonical = BTreeMap<(Labels, String, Vec<(String, String)>), Vec<i64>>;
        let canonical = |groups: Vec<pharos_model::LogGroup>| -> Canonical {
            let mut out = Canonical::new();
            for g in groups {
                out.entry((g.labels, g.severity, g.attributes)).or_default().extend(g.timestamps_ns);
            }
            out.values_mut().for_each(|ts| ts.sort_unstable());
            out
        };
        let pod_a = [LabelMatcher::new("pod", "=", "a").unwrap()];
        for matchers in [&[][..], &pod_a[..]] {
            for (needle, exact) in [(None, true), (Some("OutOfMemoryError"), true), (Some("hit OutOf"), false)] {
                for severity_unused in [false, true] {
                    let mut q = LogSearch::new(matchers, 50, 620);
                    q.contains_any = needle.map(|n| vec![vec![n.to_string()]]).unwrap_or_default();
                    q.body_unused = true;
                    q.severity_unused = severity_unused;
                    let (records, _) = store.search_logs_with_stats(&q).unwrap();
                    let with_attributes_in_splits = records.iter().filter(|r| !r.attributes.is_empty() && r.timestamp_ns < 600).count();
                    let expected = canonical(pharos_model::select::group_records(records));
                    let (groups, stats) = store.count_logs_with_stats(&q).unwrap();
                    let got = canonical(groups);
                    let what = format!("{matchers:?} {needle:?} severity unused {severity_unused}");
                    assert_eq!(got, expected, "{what}");
                    assert!(got.len() >= 3, "{what}: {} groups", got.len());
                    // Severities are in the answer from the splits unless unused (the head's
                    // records, from 600 on, have theirs at hand anyway).
                    let split_severities = got.iter().any(|(k, ts)| !k.1.is_empty() && ts.iter().any(|t| *t < 600));
                    assert_eq!(split_severities, !severity_unused, "{what}");
                    if exact {
                        assert_eq!(stats.docs_loaded, with_attributes_in_splits, "{what}");
                        assert!(stats.bodies_skipped > 0, "{what}");
                    } else {
                        assert!(stats.docs_loaded > with_attributes_in_splits && stats.bodies_skipped == 0, "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn limited_search_over_splits_and_head_equals_the_full_answer_cut() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        let rec = |t: i64, body: String| LogRecord {
            labels: Labels::from_pairs([("pod", if t % 2 == 0 { "a" } else { "b" })]),
            timestamp_ns: t,
            body,
            severity: String::new(),
            attributes: Vec::new(),
        };
        // Five splits with overlapping time ranges (and equal timestamps across them), then the head.
        for s in 0..5i64 {
            let batch = (0..200).map(|i| rec((i * 7 + s * 13) % 500, format!("s{s} i{i} {}", if i % 9 == 0 { "hit" } else { "miss" })));
            store.ingest("k", s, Batch::Logs(batch.collect()));
            store.flush().unwrap();
        }
        store.ingest("k", 5, Batch::Logs((0..50).map(|i| rec(i * 11, format!("head {i} hit"))).collect()));
        let key = |r: &LogRecord| (r.timestamp_ns, r.labels.clone(), r.body.clone());
        let pod_a = [LabelMatcher::new("pod", "=", "a").unwrap()];
        // `hit` is in 1 line in 9; ` i` in every line (over 256 candidates: loaded in chunks).
        for (matchers, word) in [(&pod_a[..], "hit"), (&[], "hit"), (&[], " i"), (&pod_a[..], " i")] {
            // Limits past the first split's hits, where some give ties at the last timestamp
            // across splits.
            let past_first = (290..300).flat_map(|n| [(n, Direction::Backward), (n, Direction::Forward)]);
            let limits = [(1, Direction::Backward), (10, Direction::Backward), (25, Direction::Forward), (5000, Direction::Forward), (5000, Direction::Backward)];
            for (n, dir_) in limits.into_iter().chain(past_first) {
                let mut all = LogSearch::new(matchers, 100, 450);
                all.contains_any = vec![vec![word.into()]];
                let (mut full, _) = store.search_logs_with_stats(&all).unwrap();
                cut_to_limit(&mut full, n, dir_);
                full.sort_by_key(key);
                let mut limited = LogSearch::new(matchers, 100, 450);
                limited.contains_any = vec![vec![word.into()]];
                limited.limit = Some((n, dir_));
                let (mut got, stats) = store.search_logs_with_stats(&limited).unwrap();
                // Several splits at once give the one-at-a-time answer, in the same order.
                let (one, _) = store.search_logs_on(&limited, 1).unwrap();
                for threads in [2, 3, 8] {
                    assert_eq!(store.search_logs_on(&limited, threads).unwrap().0, one, "{threads} threads, limit {n} {dir_:?}");
                    assert_eq!(store.search_logs_on(&all, threads).unwrap().0, store.search_logs_on(&all, 1).unwrap().0);
                }
                got.sort_by_key(key);
                assert_eq!(got, full, "limit {n} {dir_:?} {matchers:?}");
                if n <= 10 {
                    assert!(stats.docs_loaded <= 5 * (n + 2), "limit {n}: loaded {}", stats.docs_loaded);
                }
            }
        }
    }

    /// A log record of stream `{pod="a"}`.
    fn pod_a_record(t: i64, body: String) -> LogRecord {
        LogRecord { labels: Labels::from_pairs([("pod", "a")]), timestamp_ns: t, body, severity: String::new(), attributes: Vec::new() }
    }

    /// A filter whose words the term dictionary answers (an inner word, a prefix) does not load
    /// the split's term list; a word open on both sides does.
    #[test]
    fn split_terms_are_loaded_only_for_substrings_of_terms() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        let rec = pod_a_record;
        store.ingest("k", 0, Batch::Logs((0..100).map(|i| rec(i, format!("alpha word{i} beta gamma"))).collect()));
        store.flush().unwrap();
        let split = store.manifest().log_splits[0].path.clone();
        let loaded = || store.split_reader(&split).unwrap().terms_loaded();
        let count = |needle: &str| {
            let mut q = LogSearch::new(&[], 0, 1000);
            q.contains_any = vec![vec![needle.to_string()]];
            store.search_logs_with_stats(&q).unwrap().0.len()
        };
        assert_eq!(count("d7 beta gam"), 1, "only word7 ends in d7 before \" beta\"");
        assert!(!loaded(), "inner word + prefix: no term list");
        assert_eq!(count("ord4"), 11);
        assert!(loaded(), "a word open on both sides scans the term list");
        // With the list in memory a prefix is looked up as the terms that start with it.
        assert_eq!(count("d7 beta gam"), 1);
        assert_eq!(count("beta gamm"), 100);
        assert_eq!(count("beta gammx"), 0);
    }

    /// Warming loads the newest splits' terms while they fit the budget; a query on an older
    /// split loads its terms and drops the least recently used ones; answers never change.
    #[test]
    fn split_terms_are_warmed_newest_first_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        let rec = pod_a_record;
        // Three splits, oldest first, each with its own words.
        for s in 0..3i64 {
            let batch = (0..300).map(|i| rec(s * 1000 + i, format!("split{s} word{i}x{s} common")));
            store.ingest("k", s, Batch::Logs(batch.collect()));
            store.flush().unwrap();
        }
        let mut splits = store.manifest().log_splits.clone();
        splits.sort_by_key(|s| s.max_ts_ns);
        // The exact in-memory size of each split's terms, read without a budget.
        let size = |rel: &str| log_splits::open_split(&dir.path().join(rel)).unwrap().terms().unwrap().heap_bytes();
        let sizes: Vec<usize> = splits.iter().map(|s| size(&s.path)).collect();
        // Room for the two newest, not for all three.
        store.term_budget().set_limit_bytes(sizes[1] + sizes[2] + sizes[0] / 2);
        assert_eq!(store.warm_log_terms(|| false).unwrap(), 2);
        let loaded = |i: usize| store.split_reader(&splits[i].path).unwrap().terms_loaded();
        assert_eq!((loaded(0), loaded(1), loaded(2)), (false, true, true));
        assert_eq!(store.term_budget().held_bytes(), sizes[1] + sizes[2]);
        assert_eq!(store.warm_log_terms(|| false).unwrap(), 0, "nothing more fits");

        // A substring query over the oldest split only: it loads that split's terms, and the least
        // recently used list goes: split 1 (warmed lists count as used newest data last).
        let mut q = LogSearch::new(&[], 0, 999);
        q.contains_any = vec![vec!["rd7x".into()]];
        let (got, _) = store.search_logs_with_stats(&q).unwrap();
        let want: Vec<String> = (0..300).map(|i| format!("split0 word{i}x0 common")).filter(|b| b.contains("rd7x")).collect();
        let mut bodies: Vec<String> = got.into_iter().map(|r| r.body).collect();
        bodies.sort();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert_eq!(bodies, want_sorted);
        assert!(!want.is_empty());
        assert_eq!((loaded(0), loaded(1), loaded(2)), (true, false, true));
        assert_eq!(store.term_budget().evictions(), 1);
        // Split 1 answers the same after its terms were dropped (they are loaded again).
        let mut q1 = LogSearch::new(&[], 1000, 1999);
        q1.contains_any = vec![vec!["rd5x1".into()]];
        let (got, _) = store.search_logs_with_stats(&q1).unwrap();
        assert_eq!(got.into_iter().map(|r| r.body).collect::<Vec<_>>(), vec!["split1 word5x1 common".to_string()]);
    }

    #[test]
    fn log_streams_from_stream_tables_equal_a_scan_of_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        let rec = |app: &str, pod: &str, t: i64| LogRecord {
            labels: Labels::from_pairs([("app", app), ("pod", pod), ("service_name", app)]),
            timestamp_ns: t,
            body: format!("{app} {pod} {t}"),
            severity: String::new(),
            attributes: Vec::new(),
        };
        store.ingest("k", 0, Batch::Logs(vec![rec("api", "a1", 10), rec("api", "a2", 20), rec("db", "d1", 30)]));
        store.flush().unwrap();
        store.ingest("k", 1, Batch::Logs(vec![rec("api", "a3", 40), rec("db", "d2", 50), rec("api", "a1", 60)]));
        store.flush().unwrap();
        store.ingest("k", 2, Batch::Logs(vec![rec("web", "w1", 45)]));
        let all_records = [
            rec("api", "a1", 10), rec("api", "a2", 20), rec("db", "d1", 30),
            rec("api", "a3", 40), rec("db", "d2", 50), rec("api", "a1", 60), rec("web", "w1", 45),
        ];
        let api = [LabelMatcher::new("app", "=", "api").unwrap()];
        let not_db = [LabelMatcher::new("app", "!=", "db").unwrap()];
        for m in [&api[..], &not_db[..], &[]] {
            for (s, e) in [(0, 100), (15, 45), (21, 39), (41, 44), (60, 60), (61, 100)] {
                let mut expected: Vec<Labels> = all_records
                    .iter()
                    .filter(|r| r.timestamp_ns >= s && r.timestamp_ns <= e && pharos_model::select::matches_all(m, &r.labels))
                    .map(|r| r.labels.clone())
                    .collect();
                expected.sort();
                expected.dedup();
                assert_eq!(store.log_streams(m, s, e).unwrap(), expected, "{m:?} {s}..{e}");
            }
        }
        assert_eq!(store.log_streams(&api, 15, 45).unwrap().len(), 2, "a2 at 20 and a3 at 40");
    }
}
