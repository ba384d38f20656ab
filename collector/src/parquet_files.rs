//! Metrics as Parquet files under time partitions.
//!
//! Layout: `metrics/date=YYYY-MM-DD/hour=HH/<uuid-v7>.parquet`, one file per hour partition per
//! flush. Schema (documented in the README, readable by DataFusion, DuckDB, Spark, Trino):
//!
//! | column | type | |
//! |---|---|---|
//! | `metric_name` | UTF8 (dictionary-encoded) | the `__name__` label |
//! | `labels` | UTF8 (dictionary-encoded) | all other labels as a JSON object, keys sorted |
//! | `timestamp` | TIMESTAMP(MILLIS, UTC) | sample time |
//! | `value` | DOUBLE, nullable | the sample value when it is not stored as a decimal (NaN, ±Inf, -0.0, beyond 2^53, more than 15 decimals); Prometheus staleness markers kept as their NaN |
//! | `value_int` | INT64, nullable, BYTE_STREAM_SPLIT | otherwise the decimal mantissa: the value is `value_int / 10^value_scale`, exactly |
//! | `value_scale` | INT8, nullable | the decimal scale, one per series in a file |
//!
//! Exactly one of `value` and `value_int` is set in a row (see [`crate::decimal`]). Files
//! written before the decimal columns have `value` only, non-null; readers accept both.
//!
//! Rows are sorted by `metric_name`, `labels`, `timestamp`, and compressed with zstd: level 1 when
//! a flush writes them, level 12 once compaction has rewritten a settled partition.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, DictionaryArray, Float64Array, Float64Builder, Int8Array, Int8Builder, Int32Array, Int64Array, Int64Builder,
    StringArray, StringBuilder, TimestampMillisecondArray,
};
use arrow::datatypes::Int32Type;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Datelike, Timelike};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use pharos_model::select::matches_all;
use pharos_model::{LabelMatcher, Labels, METRIC_NAME};

use crate::found::Found;
use crate::metastore::{MetricFile, sync_dir};
use crate::{Error, Result};

const ROWS_PER_BATCH: usize = 64 * 1024;

/// Rows per batch when a query reads samples ([`read_runs`]). A batch's column buffers are
/// allocated afresh; at 64k rows they were 512 KB each, which the allocator takes from and
/// returns to the OS (after its 10 ms purge delay), so every batch of a query faulted them in
/// again: a profile of the tsdb bench's CPU range query put a third of its page faults in the
/// Parquet reader's buffers. At 8k rows (64 KB) they come from pages the allocator keeps reusing.
const QUERY_ROWS_PER_BATCH: usize = 8 * 1024;

/// zstd level of files written by a flush: fast, since compaction rewrites them (on the tsdb
/// benchmark level 9 cost about 0.9 of 3.1 ingest CPU-seconds; level 1 files are ~15 % larger).
pub const FLUSH_ZSTD_LEVEL: i32 = 1;
/// zstd level of files written by compaction: what stays on disk. On the tsdb benchmark (39.5 M
/// samples) levels 9, 12 and 15 gave 1.60, 1.52 and 1.46 B/sample for 5.8, 7.5 and 13.4 CPU-s
/// of compaction.
pub const COMPACT_ZSTD_LEVEL: i32 = 12;

/// The series and time columns, first in both schemas.
fn key_fields() -> [Field; 3] {
    [
        Field::new("metric_name", DataType::Utf8, false),
        Field::new("labels", DataType::Utf8, false),
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
    ]
}

/// The columns the SQL `metrics` table shows (and files written before the decimal columns
/// have): a sample's value in one column.
pub(crate) fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(key_fields().into_iter().chain([Field::new("value", DataType::Float64, false)]).collect::<Vec<_>>()))
}

/// The columns of the files written now (see the module docs).
pub(crate) fn file_schema() -> Arc<Schema> {
    let values = [
        Field::new("value", DataType::Float64, true),
        Field::new("value_int", DataType::Int64, true),
        Field::new("value_scale", DataType::Int8, true),
    ];
    Arc::new(Schema::new(key_fields().into_iter().chain(values).collect::<Vec<_>>()))
}

/// `date=…/hour=…` of a millisecond timestamp.
pub(crate) fn partition_of(ts_ms: i64) -> String {
    let t = DateTime::from_timestamp_millis(ts_ms).unwrap_or_default();
    format!("date={:04}-{:02}-{:02}/hour={:02}", t.year(), t.month(), t.day(), t.hour())
}

pub(crate) fn labels_json(labels: &Labels) -> String {
    let map: BTreeMap<&str, &str> = labels.iter().filter(|(k, _)| *k != METRIC_NAME).collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
}

/// The bytes of [`labels_json`] one at a time, for comparing label sets in the files' order
/// without building their JSON (serde_json's escapes: `\"`, `\\`, `\b \f \n \r \t`, other
/// control bytes as `\u00xx`; everything else as it is).
fn labels_json_bytes(labels: &Labels) -> impl Iterator<Item = u8> + '_ {
    fn quoted(s: &str) -> impl Iterator<Item = u8> + '_ {
        std::iter::once(b'"').chain(s.bytes().flat_map(JsonEscaped::new)).chain(std::iter::once(b'"'))
    }
    let pairs = labels.iter().filter(|(k, _)| *k != METRIC_NAME).enumerate().flat_map(move |(i, (k, v))| {
        (i > 0).then_some(b',').into_iter().chain(quoted(k)).chain(std::iter::once(b':')).chain(quoted(v))
    });
    std::iter::once(b'{').chain(pairs).chain(std::iter::once(b'}'))
}

/// One byte of a JSON string as serde_json writes it.
struct JsonEscaped {
    bytes: [u8; 6],
    len: u8,
    next: u8,
}

impl JsonEscaped {
    fn new(b: u8) -> JsonEscaped {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let (bytes, len) = match b {
            b'"' | b'\\' => ([b'\\', b, 0, 0, 0, 0], 2),
            0x08 => (*b"\\b\0\0\0\0", 2),
            0x0c => (*b"\\f\0\0\0\0", 2),
            b'\n' => (*b"\\n\0\0\0\0", 2),
            b'\r' => (*b"\\r\0\0\0\0", 2),
            b'\t' => (*b"\\t\0\0\0\0", 2),
            0..0x20 => ([b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]], 6),
            _ => ([b, 0, 0, 0, 0, 0], 1),
        };
        JsonEscaped { bytes, len, next: 0 }
    }
}

impl Iterator for JsonEscaped {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        (self.next < self.len).then(|| {
            self.next += 1;
            self.bytes[usize::from(self.next - 1)]
        })
    }
}

/// The order of series in a file: by metric name, then by [`labels_json`] (compared without
/// building it).
fn series_order(a: &Labels, b: &Labels) -> std::cmp::Ordering {
    a.metric_name().unwrap_or("").cmp(b.metric_name().unwrap_or("")).then_with(|| labels_json_bytes(a).cmp(labels_json_bytes(b)))
}

/// Samples of one series to write: a sorted vector, or a head chunk decoded on demand.
pub(crate) trait SampleSource {
    /// The smallest and largest timestamp, `None` without samples.
    fn time_range(&self) -> Option<(i64, i64)>;
    /// Appends the samples with `lo <= t < hi` to `out`, sorted by time (stable: samples with
    /// equal timestamps keep their order).
    fn samples_in(&self, lo: i64, hi: i64, out: &mut Vec<(i64, f64)>);
}

/// A vector already sorted by time.
struct Sorted(Vec<(i64, f64)>);

impl SampleSource for Sorted {
    fn time_range(&self) -> Option<(i64, i64)> {
        Some((self.0.first()?.0, self.0.last()?.0))
    }

    fn samples_in(&self, lo: i64, hi: i64, out: &mut Vec<(i64, f64)>) {
        let from = self.0.partition_point(|(t, _)| *t < lo);
        let to = self.0.partition_point(|(t, _)| *t < hi);
        out.extend_from_slice(&self.0[from..to]);
    }
}

impl SampleSource for &crate::chunk::Chunk {
    fn time_range(&self) -> Option<(i64, i64)> {
        crate::chunk::Chunk::time_range(self)
    }

    fn samples_in(&self, lo: i64, hi: i64, out: &mut Vec<(i64, f64)>) {
        let start = out.len();
        out.extend(self.iter().filter(|(t, _)| *t >= lo && *t < hi));
        out[start..].sort_by_key(|(t, _)| *t);
    }
}

/// Writes `series` as Parquet files, one per hour partition, fsynced, zstd at `level`; returns
/// their descriptions (paths relative to `data_dir`). Nothing is published here.
pub fn write_files(
    data_dir: &Path,
    series: impl IntoIterator<Item = (Labels, Vec<(i64, f64)>)>,
    level: i32,
) -> Result<Vec<MetricFile>> {
    write_sources(
        data_dir,
        level,
        series.into_iter().map(|(l, mut s)| {
            s.sort_by_key(|(t, _)| *t);
            (l, Sorted(s))
        }),
    )
}

/// [`write_files`] from any [`SampleSource`]: samples are read one series and one hour at a
/// time, so writing a head holds no copy of all its samples.
pub(crate) fn write_sources<S: SampleSource>(
    data_dir: &Path,
    level: i32,
    series: impl IntoIterator<Item = (Labels, S)>,
) -> Result<Vec<MetricFile>> {
    // (labels, time range, samples), sorted by series. A flush sorts every series of the head:
    // comparing label sets in place, rather than by their JSON, keeps two strings per series
    // (20 MB for 79k series) out of the flush's peak.
    let mut sorted: Vec<(Labels, (i64, i64), S)> = series.into_iter().filter_map(|(l, s)| Some((l, s.time_range()?, s))).collect();
    sorted.sort_by(|a, b| series_order(&a.0, &b.0));
    // Hours any series' time range touches; an hour left with no sample writes no file.
    let mut hours: std::collections::BTreeSet<i64> = std::collections::BTreeSet::new();
    for (_, (lo, hi), _) in &sorted {
        hours.extend(lo.div_euclid(HOUR_MS)..=hi.div_euclid(HOUR_MS));
    }
    let mut out = Vec::new();
    let mut samples = Vec::new();
    for hour in hours {
        let (lo_ms, hi_ms) = (hour * HOUR_MS, (hour + 1) * HOUR_MS);
        let mut file: Option<FileWriter> = None;
        for (labels, (lo, hi), source) in &sorted {
            if *hi < lo_ms || *lo >= hi_ms {
                continue;
            }
            samples.clear();
            source.samples_in(lo_ms, hi_ms, &mut samples);
            if samples.is_empty() {
                continue;
            }
            let writer = match &mut file {
                Some(w) => w,
                None => file.insert(FileWriter::create(data_dir, &partition_of(lo_ms), level)?),
            };
            writer.push_series(labels.metric_name().unwrap_or(""), &labels_json(labels), None, &samples)?;
        }
        if let Some(writer) = file {
            out.push(writer.finish(data_dir)?.0);
        }
    }
    Ok(out)
}

/// One Parquet file being written, series by series in sorted order.
struct FileWriter {
    rel: String,
    path: std::path::PathBuf,
    writer: ArrowWriter<File>,
    batch: BatchBuilder,
    level: i32,
    min_ts: i64,
    max_ts: i64,
    rows: u64,
    series: u64,
    /// The series list of the file, as [`FileSeries::load`] would read it back, when the
    /// writer is given the series' label sets.
    catalog: Vec<(Labels, usize, usize)>,
}

impl FileWriter {
    /// A new file in the partition directory `partition` (`date=…/hour=…`).
    fn create(data_dir: &Path, partition: &str, level: i32) -> Result<FileWriter> {
        let rel = format!("metrics/{partition}/{}.parquet", uuid::Uuid::now_v7());
        let path = data_dir.join(&rel);
        let dir = path.parent().unwrap_or(data_dir);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let writer = ArrowWriter::try_new(f, file_schema(), Some(writer_properties(level)))?;
        Ok(FileWriter { rel, path, writer, batch: BatchBuilder::default(), level, min_ts: i64::MAX, max_ts: i64::MIN, rows: 0, series: 0, catalog: Vec::new() })
    }

    /// Appends one series' samples (sorted by time, not empty); series come in
    /// (`metric_name`, `labels`) order. `set`, the series' label set from the [`LabelCache`],
    /// is given for every series or for none: with it, [`FileWriter::finish`] returns the file's
    /// series list.
    fn push_series(&mut self, name: &str, labels: &str, set: Option<&Labels>, samples: &[(i64, f64)]) -> Result<()> {
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else { return Ok(()) };
        self.series += 1;
        if let Some(set) = set {
            let start = self.rows as usize;
            self.catalog.push((set.clone(), start, start + samples.len()));
        }
        self.min_ts = self.min_ts.min(first.0);
        self.max_ts = self.max_ts.max(last.0);
        let scale = crate::decimal::series_scale(samples.iter().map(|s| s.1));
        for chunk in samples.chunks(WRITE_ROWS_PER_BATCH) {
            self.batch.push(name, labels, scale, chunk);
            self.rows += chunk.len() as u64;
            if self.batch.len >= WRITE_ROWS_PER_BATCH {
                self.writer.write(&self.batch.finish()?)?;
            }
        }
        Ok(())
    }

    /// Closes and fsyncs the file (and its directory); not published here. Returns it with its
    /// series list when every series came with its label set, so that neither queries nor
    /// compaction read that back from the file.
    fn finish(mut self, data_dir: &Path) -> Result<(MetricFile, Option<FileSeries>)> {
        if self.batch.len > 0 {
            self.writer.write(&self.batch.finish()?)?;
        }
        let file = self.writer.into_inner()?;
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        sync_dir(self.path.parent().unwrap_or(data_dir))?;
        let bytes = file.metadata().map_err(|e| Error::io(&self.path, e))?.len();
        drop(file);
        let catalog = if self.catalog.len() as u64 == self.series {
            let by_name = self.catalog.is_sorted_by(|a, b| a.0.metric_name().unwrap_or("") <= b.0.metric_name().unwrap_or(""));
            let written = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
            Some(FileSeries { series: std::mem::take(&mut self.catalog), by_name, metadata: reader_metadata(&written)? })
        } else {
            None
        };
        let file = MetricFile {
            path: self.rel,
            min_ts_ms: self.min_ts,
            max_ts_ms: self.max_ts,
            series: self.series,
            samples: self.rows,
            bytes,
            zstd_level: self.level,
            created_ms: chrono::Utc::now().timestamp_millis(),
        };
        Ok((file, catalog))
    }
}

/// Merges the files of one partition into one file at zstd `level`, streaming: the inputs are
/// read in row order, series by series (each is sorted by series), so memory holds one series
/// and one record batch per input rather than the whole partition. A series' samples from
/// several inputs are put in time order (stably: inputs earlier in `inputs` first on equal
/// timestamps). `None` when the inputs hold no rows.
pub(crate) fn merge_files(
    data_dir: &Path,
    partition: &str,
    inputs: &[(&Path, &FileSeries)],
    level: i32,
) -> Result<Option<(MetricFile, FileSeries)>> {
    let mut rows: Vec<RowStream> = inputs.iter().map(|(path, fs)| RowStream::open(path, &fs.metadata)).collect::<Result<_>>()?;
    let mut next = vec![0usize; inputs.len()];
    let mut out: Option<FileWriter> = None;
    let mut samples = Vec::new();
    // A k-way merge of the inputs' series lists, which are in `series_order`. Inputs share
    // label sets through one `LabelCache`, so the same series is mostly the same pointer.
    let same = |a: &Labels, b: &Labels| a.ptr_id() == b.ptr_id() || series_order(a, b).is_eq();
    loop {
        let smallest = (0..inputs.len()).filter_map(|i| inputs[i].1.series.get(next[i]).map(|(set, _, _)| set)).min_by(|a, b| series_order(a, b));
        let Some(set) = smallest else { break };
        samples.clear();
        for i in 0..inputs.len() {
            if let Some((l, start, end)) = inputs[i].1.series.get(next[i])
                && same(l, set)
            {
                rows[i].take(end - start, &mut samples)?;
                next[i] += 1;
            }
        }
        samples.sort_by_key(|(t, _)| *t);
        let writer = match &mut out {
            Some(w) => w,
            None => out.insert(FileWriter::create(data_dir, partition, level)?),
        };
        writer.push_series(set.metric_name().unwrap_or(""), &labels_json(set), Some(set), &samples)?;
    }
    let Some(writer) = out else { return Ok(None) };
    let (file, catalog) = writer.finish(data_dir)?;
    let catalog = catalog.ok_or_else(|| Error::Internal("a merge wrote a series without its label set".into()))?;
    Ok(Some((file, catalog)))
}

/// The timestamps and values of one file, read in row order.
struct RowStream {
    path: std::path::PathBuf,
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    batch: Option<(TimestampMillisecondArray, Vec<f64>)>,
    at: usize,
}

impl RowStream {
    fn open(path: &Path, metadata: &ArrowReaderMetadata) -> Result<RowStream> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata.clone()).with_batch_size(ROWS_PER_BATCH);
        let mask = ProjectionMask::columns(builder.parquet_schema(), SAMPLE_COLUMNS);
        Ok(RowStream { path: path.to_path_buf(), reader: builder.with_projection(mask).build()?, batch: None, at: 0 })
    }

    /// Appends the next `n` rows to `out`.
    fn take(&mut self, mut n: usize, out: &mut Vec<(i64, f64)>) -> Result<()> {
        while n > 0 {
            let left = self.batch.as_ref().map_or(0, |(ts, _)| ts.len() - self.at);
            if left == 0 {
                let batch = self
                    .reader
                    .next()
                    .ok_or_else(|| Error::Corrupt(format!("{}: fewer rows than its series list", self.path.display())))??;
                let ts: &TimestampMillisecondArray = column(&batch, "timestamp")?;
                let mut decoded = Vec::new();
                let values = batch_values(&batch, &mut decoded)?.to_vec();
                self.batch = Some((ts.clone(), values));
                self.at = 0;
                continue;
            }
            let Some((ts, values)) = &self.batch else { continue };
            let k = left.min(n);
            out.extend((self.at..self.at + k).map(|r| (ts.value(r), values[r])));
            self.at += k;
            n -= k;
        }
        Ok(())
    }
}

/// Rows per record batch handed to the Parquet writer: small, since each row carries its label
/// set's JSON until the writer dictionary-encodes it.
const WRITE_ROWS_PER_BATCH: usize = 8 * 1024;

const HOUR_MS: i64 = 3_600_000;

/// Rows of one record batch under construction.
#[derive(Default)]
struct BatchBuilder {
    names: StringBuilder,
    labels: StringBuilder,
    ts: Vec<i64>,
    values: Float64Builder,
    ints: Int64Builder,
    scales: Int8Builder,
    len: usize,
}

impl BatchBuilder {
    /// Appends one series' samples; `scale` is the series' decimal scale
    /// ([`crate::decimal::series_scale`]).
    fn push(&mut self, name: &str, labels: &str, scale: Option<u8>, samples: &[(i64, f64)]) {
        for (t, v) in samples {
            self.names.append_value(name);
            self.labels.append_value(labels);
            self.ts.push(*t);
            match scale.and_then(|k| Some((k, crate::decimal::encode(*v, k)?))) {
                Some((k, m)) => {
                    self.values.append_null();
                    self.ints.append_value(m);
                    self.scales.append_value(k as i8);
                }
                None => {
                    self.values.append_value(*v);
                    self.ints.append_null();
                    self.scales.append_null();
                }
            }
        }
        self.len += samples.len();
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        self.len = 0;
        Ok(RecordBatch::try_new(
            file_schema(),
            vec![
                Arc::new(self.names.finish()),
                Arc::new(self.labels.finish()),
                Arc::new(TimestampMillisecondArray::from(std::mem::take(&mut self.ts)).with_timezone("UTC")),
                Arc::new(self.values.finish()),
                Arc::new(self.ints.finish()),
                Arc::new(self.scales.finish()),
            ],
        )?)
    }
}

/// Encodings chosen for size: series columns are dictionary-encoded (one entry per series, runs
/// RLE-encoded), timestamps (regular scrape intervals) delta-encoded, decimal mantissas
/// (`value_int`) BYTE_STREAM_SPLIT, the remaining doubles PLAIN. Values are nearly all of the
/// bytes. On the tsdb benchmark (100 targets × 2 h, compacted at zstd 9) they took the file from
/// 2.08 B/sample (PLAIN doubles) to 1.60. In a one-off comparison on one of its hour files,
/// BYTE_STREAM_SPLIT was the smallest integer encoding for the mantissas; DELTA_BINARY_PACKED
/// lost because a block of 128 values takes the bit width of a jump between two series. Pages keep the
/// default 20k-row limit: 4096-row pages made small range queries ~10 % faster (fewer rows
/// decompressed outside the selection) but cost 5 % more bytes per sample (2.22 vs 2.11 in
/// `pharos-bench tsdb --pharos-only --targets 20`, with doubles).
fn writer_properties(level: i32) -> WriterProperties {
    use parquet::basic::Encoding;
    use parquet::schema::types::ColumnPath;
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(level).unwrap_or_default()))
        .set_max_row_group_row_count(Some(1 << 20))
        // Room for every label set of a file in the dictionary, so `labels` never falls back to PLAIN.
        .set_dictionary_page_size_limit(64 << 20)
        // Min/max of label JSON prune nothing (a file holds every label set of its hour), and
        // computing them compares each row's string twice.
        .set_column_statistics_enabled(ColumnPath::from("labels"), parquet::file::properties::EnabledStatistics::None)
        .set_column_dictionary_enabled(ColumnPath::from("timestamp"), false)
        .set_column_encoding(ColumnPath::from("timestamp"), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from("value"), false)
        .set_column_encoding(ColumnPath::from("value"), Encoding::PLAIN)
        .set_column_dictionary_enabled(ColumnPath::from("value_int"), false)
        .set_column_encoding(ColumnPath::from("value_int"), Encoding::BYTE_STREAM_SPLIT)
        // Their dictionary-encoded runs are a few bytes per page, which zstd makes larger, and
        // reading a compressed column chunk costs parquet-rs a zstd compression and
        // decompression context (CPU-ms a query over a few files).
        .set_column_compression(ColumnPath::from("metric_name"), Compression::UNCOMPRESSED)
        .set_column_compression(ColumnPath::from("value_scale"), Compression::UNCOMPRESSED)
        .build()
}

/// The columns a sample is read from: `value_int` and `value_scale` are missing from files
/// written before them (a mask skips names a file does not have).
const SAMPLE_COLUMNS: [&str; 4] = ["timestamp", "value", "value_int", "value_scale"];

/// The sample values of a batch read with [`SAMPLE_COLUMNS`], in row order (see
/// [`decode_values`]). `buf` holds decoded values.
fn batch_values<'a>(batch: &'a RecordBatch, buf: &'a mut Vec<f64>) -> Result<&'a [f64]> {
    // Left out of the projection where the row groups read have no value in it.
    let values: Option<&Float64Array> = match batch.column_by_name("value") {
        Some(_) => Some(column(batch, "value")?),
        None => None,
    };
    let decimals = match batch.column_by_name("value_int") {
        Some(_) => Some((column::<Int64Array>(batch, "value_int")?, column::<Int8Array>(batch, "value_scale")?)),
        None => None,
    };
    decode_values(values, decimals, buf)
}

/// Sample values from the stored columns: `value` as is when a file has no decimal columns,
/// else each row's mantissa (`value_int`) decoded at its `value_scale`, or its `value` where it
/// has no mantissa. A row with neither is corrupt. `buf` holds decoded values.
pub(crate) fn decode_values<'a>(
    values: Option<&'a Float64Array>,
    decimals: Option<(&Int64Array, &Int8Array)>,
    buf: &'a mut Vec<f64>,
) -> Result<&'a [f64]> {
    let missing = || Error::Corrupt("a sample row with neither `value` nor `value_int`".into());
    let Some((ints, scales)) = decimals else {
        return match values {
            Some(values) if values.null_count() == 0 => Ok(values.values()),
            _ => Err(missing()),
        };
    };
    buf.clear();
    let (ints_raw, scales_raw) = (ints.values(), scales.values());
    let bad_scale = |k: i8| !(0..=crate::decimal::MAX_SCALE as i8).contains(&k);
    let corrupt_scale = |k: i8| Error::Corrupt(format!("`value_scale` {k} outside 0..={}", crate::decimal::MAX_SCALE));
    match ints.nulls() {
        None => {
            if let Some(k) = scales_raw.iter().copied().find(|k| bad_scale(*k)) {
                return Err(corrupt_scale(k));
            }
            // One scale for the whole batch (one metric's series usually share it): a loop
            // the compiler vectorizes, without a division at scale 0 (dividing by 1 is exact).
            match scales_raw.first().copied().filter(|k0| scales_raw.iter().all(|k| k == k0)) {
                Some(0) => buf.extend(ints_raw.iter().map(|m| *m as f64)),
                Some(k0) => buf.extend(ints_raw.iter().map(|m| crate::decimal::decode(*m, k0 as u8))),
                None => buf.extend(ints_raw.iter().zip(scales_raw.iter()).map(|(m, k)| crate::decimal::decode(*m, *k as u8))),
            }
        }
        Some(nulls) => {
            buf.reserve(ints_raw.len());
            for (i, (m, k)) in ints_raw.iter().zip(scales_raw.iter()).enumerate() {
                if nulls.is_valid(i) {
                    if bad_scale(*k) {
                        return Err(corrupt_scale(*k));
                    }
                    buf.push(crate::decimal::decode(*m, *k as u8));
                } else if let Some(values) = values.filter(|v| v.is_valid(i)) {
                    buf.push(values.value(i));
                } else {
                    return Err(missing());
                }
            }
        }
    }
    Ok(buf)
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| Error::Corrupt(format!("parquet column {name:?} missing or of the wrong type")))
}

/// The keys and string values of the dictionary column `name`.
fn dictionary_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<(&'a Int32Array, &'a StringArray)> {
    let dict: &DictionaryArray<Int32Type> = column(batch, name)?;
    let values = dict
        .values()
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::Corrupt(format!("parquet column {name:?} is not a string dictionary")))?;
    Ok((dict.keys(), values))
}

/// The value of dictionary key `key`.
fn dictionary_value(values: &StringArray, key: i32) -> Result<&str> {
    usize::try_from(key)
        .ok()
        .filter(|k| *k < values.len())
        .map(|k| values.value(k))
        .ok_or_else(|| Error::Corrupt(format!("dictionary key {key} out of range")))
}

/// Label sets by their stored form (metric name + labels JSON), shared by the series lists of
/// every file: the same series in many files (one per flush) is parsed once and held once.
/// Their names and values are interned: the label sets of one target repeat the same few
/// strings (`instance`, `job`, `mode`, `idle`…), which held one allocation per label per series
/// before (about 17 MB of the 100-target tsdb benchmark's live heap at its peak).
#[derive(Default)]
pub struct LabelCache {
    inner: parking_lot::Mutex<LabelCacheInner>,
}

#[derive(Default)]
struct LabelCacheInner {
    /// Metric name → labels JSON → label set: nested so that a lookup borrows both strings
    /// instead of allocating a key per series of every file loaded.
    map: HashMap<String, HashMap<String, Labels>>,
    /// Every label name and value the sets in `map` use, once.
    strings: std::collections::HashSet<Arc<str>>,
}

impl LabelCacheInner {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(s) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(s);
        self.strings.insert(shared.clone());
        shared
    }
}

impl LabelCache {
    fn get(&self, name: &str, json: &str, path: &Path) -> Result<Labels> {
        if let Some(l) = self.inner.lock().map.get(name).and_then(|m| m.get(json)) {
            return Ok(l.clone());
        }
        let parsed: BTreeMap<String, String> = serde_json::from_str(json)
            .map_err(|e| Error::Corrupt(format!("{}: labels {json:?}: {e}", path.display())))?;
        let mut inner = self.inner.lock();
        let mut pairs: Vec<(Arc<str>, Arc<str>)> = parsed.iter().map(|(k, v)| (inner.intern(k), inner.intern(v))).collect();
        pairs.push((inner.intern(METRIC_NAME), inner.intern(name)));
        let full = Labels::from_shared_pairs(pairs);
        Ok(inner.map.entry(name.to_string()).or_default().entry(json.to_string()).or_insert(full).clone())
    }

    /// Drops the label sets no series list uses any more, and the strings only they used;
    /// returns how many sets remain.
    pub fn prune(&self) -> usize {
        let mut inner = self.inner.lock();
        inner.map.retain(|_, by_json| {
            by_json.retain(|_, l| l.is_shared());
            !by_json.is_empty()
        });
        inner.strings.retain(|s| Arc::strong_count(s) > 1);
        inner.map.values().map(HashMap::len).sum()
    }

    /// Distinct label names and values held.
    #[cfg(test)]
    fn strings(&self) -> usize {
        self.inner.lock().strings.len()
    }
}

/// The footer and page index of `file`.
fn reader_metadata(file: &File) -> Result<ArrowReaderMetadata> {
    let options = ArrowReaderOptions::new().with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional);
    Ok(ArrowReaderMetadata::load(file, options)?)
}

/// The series of one Parquet file and the row range each occupies (rows are sorted by series),
/// read once per file from the `metric_name` and `labels` columns only. With it, a query matches
/// label sets without parsing JSON per row and reads only the matching rows' samples.
pub struct FileSeries {
    series: Vec<(Labels, usize, usize)>,
    /// True when `series` is in metric-name order (files are written so): a `__name__="x"`
    /// matcher then finds its series by binary search instead of testing every series.
    by_name: bool,
    /// The footer and page index, parsed once: a query then opens the file without re-reading
    /// them, and skips every page outside the selected rows.
    metadata: ArrowReaderMetadata,
}

impl FileSeries {
    /// The series matching `matchers`, with their row ranges, in file order.
    pub fn matching(&self, matchers: &[LabelMatcher]) -> Vec<&(Labels, usize, usize)> {
        self.candidates(matchers).iter().filter(|(l, _, _)| matches_all(matchers, l)).collect()
    }

    /// [`FileSeries::matching`] with the verdicts of earlier files: files share label sets
    /// through the [`LabelCache`], so a query over many files tests each series once, not once
    /// per file. `verdicts` is keyed by the address of label sets the files keep alive, and must
    /// not outlive them nor be used with other matchers.
    pub fn matching_with<'a>(
        &'a self,
        matchers: &[LabelMatcher],
        verdicts: &mut HashMap<usize, bool, ahash::RandomState>,
    ) -> Vec<&'a (Labels, usize, usize)> {
        self.candidates(matchers)
            .iter()
            .filter(|(l, _, _)| *verdicts.entry(l.ptr_id()).or_insert_with(|| matches_all(matchers, l)))
            .collect()
    }

    /// The series that may match: those of the metric a `__name__="x"` matcher names, else all.
    fn candidates(&self, matchers: &[LabelMatcher]) -> &[(Labels, usize, usize)] {
        let name = matchers.iter().find(|m| m.name == METRIC_NAME && matches!(m.op, pharos_model::select::MatchOp::Equal));
        match name {
            Some(m) if self.by_name => {
                let lo = self.series.partition_point(|s| s.0.metric_name().unwrap_or("") < m.value.as_str());
                let hi = lo + self.series[lo..].partition_point(|s| s.0.metric_name().unwrap_or("") <= m.value.as_str());
                &self.series[lo..hi]
            }
            _ => &self.series,
        }
    }

    /// Reads the series list of `path`. The label columns are read as dictionary arrays (their
    /// pages are dictionary-encoded): a row then costs two key comparisons instead of
    /// materializing and comparing two strings, which dominated loading a new file's list.
    pub fn load(path: &Path, cache: &LabelCache) -> Result<FileSeries> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let metadata = reader_metadata(&file)?;
        let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let hint: Vec<Field> = metadata
            .schema()
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "metric_name" | "labels" => f.as_ref().clone().with_data_type(dictionary.clone()),
                _ => f.as_ref().clone(),
            })
            .collect();
        let options = ArrowReaderOptions::new().with_schema(Arc::new(Schema::new(hint)));
        let dict_metadata = ArrowReaderMetadata::try_new(metadata.metadata().clone(), options)?;
        let builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, dict_metadata).with_batch_size(ROWS_PER_BATCH);
        let mask = ProjectionMask::columns(builder.parquet_schema(), ["metric_name", "labels"]);
        let reader = builder.with_projection(mask).build()?;
        let mut series: Vec<(Labels, usize, usize)> = Vec::new();
        let mut current: Option<(String, String)> = None;
        let mut by_name = true;
        let mut row = 0usize;
        for batch in reader {
            let batch = batch?;
            let (name_keys, names) = dictionary_column(&batch, "metric_name")?;
            let (label_keys, labels) = dictionary_column(&batch, "labels")?;
            // Equal keys mean equal strings within a batch (one dictionary); differing keys are
            // compared as strings, as a dictionary may hold one value twice.
            let mut keys: Option<(i32, i32)> = None;
            for (&n, &l) in name_keys.values().iter().zip(label_keys.values().iter()) {
                if keys != Some((n, l)) {
                    keys = Some((n, l));
                    let (name, lbls) = (dictionary_value(names, n)?, dictionary_value(labels, l)?);
                    let same = matches!(&current, Some((cn, cl)) if cn == name && cl == lbls);
                    if !same {
                        if let Some(last) = series.last_mut() {
                            last.2 = row;
                        }
                        series.push((cache.get(name, lbls, path)?, row, row));
                        if matches!(&current, Some((cn, _)) if cn.as_str() > name) {
                            by_name = false;
                        }
                        current = Some((name.to_string(), lbls.to_string()));
                    }
                }
                row += 1;
            }
        }
        if let Some(last) = series.last_mut() {
            last.2 = row;
        }
        // The list stays cached while the file is published; growth by doubling left up to
        // half of it unused.
        series.shrink_to_fit();
        Ok(FileSeries { series, by_name, metadata })
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True for a file without rows.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// Adds the samples of `path` that match `matchers` and fall in `[start_ms, end_ms]` to `out`,
/// reading only the rows of matching series (see [`FileSeries`]).
pub fn read_file(
    path: &Path,
    catalog: &FileSeries,
    matchers: &[LabelMatcher],
    start_ms: i64,
    end_ms: i64,
    out: &mut Found,
) -> Result<()> {
    read_matching(path, catalog, &catalog.matching(matchers), start_ms, end_ms, out)
}

/// [`read_file`] of the series `matching` (from [`FileSeries::matching`]) chose.
pub fn read_matching(
    path: &Path,
    catalog: &FileSeries,
    matching: &[&(Labels, usize, usize)],
    start_ms: i64,
    end_ms: i64,
    out: &mut Found,
) -> Result<()> {
    read_runs(path, catalog, matching, start_ms, end_ms, |i, ts, values| {
        out.extend(&matching[i].0, ts.iter().copied().zip(values.iter().copied()))
    })
}

/// Reads the rows of the series `matching` lists (in file order) and hands each series' samples
/// in `[start_ms, end_ms]` to `sink(index in matching, timestamps, values)`, in file order, a
/// series possibly in several calls. Only the row groups holding those rows are read.
pub fn read_runs(
    path: &Path,
    catalog: &FileSeries,
    matching: &[&(Labels, usize, usize)],
    start_ms: i64,
    end_ms: i64,
    mut sink: impl FnMut(usize, &[i64], &[f64]),
) -> Result<()> {
    let (Some(first), Some(last)) = (matching.first(), matching.last()) else {
        return Ok(());
    };
    // The row groups that hold rows first.1..last.2; row numbers below are relative to the
    // first of them.
    let mut groups = Vec::new();
    let mut base = None;
    let mut group_start = 0usize;
    for (i, rg) in catalog.metadata.metadata().row_groups().iter().enumerate() {
        let group_end = group_start + rg.num_rows().max(0) as usize;
        if group_end > first.1 && group_start < last.2 {
            groups.push(i);
            base.get_or_insert(group_start);
        }
        group_start = group_end;
    }
    let Some(base) = base else {
        return Err(Error::Corrupt(format!("{}: rows {}..{} beyond its row groups", path.display(), first.1, last.2)));
    };
    let mut selectors = Vec::with_capacity(matching.len() * 2);
    let mut at = base;
    for (_, start, end) in matching {
        if *start > at {
            selectors.push(RowSelector::skip(start - at));
        }
        selectors.push(RowSelector::select(end - start));
        at = *end;
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::new_with_metadata(file, catalog.metadata.clone()).with_batch_size(QUERY_ROWS_PER_BATCH);
    // A `value` column without values in the row groups read (all samples decimal) is not
    // read: one column chunk less to decompress per row group.
    let skip_value = value_column_empty(catalog.metadata.metadata(), &groups);
    let mask = ProjectionMask::columns(builder.parquet_schema(), SAMPLE_COLUMNS.into_iter().filter(|c| *c != "value" || !skip_value));
    let reader =
        builder.with_projection(mask).with_row_groups(groups).with_row_selection(RowSelection::from(selectors)).build()?;
    let mut decoded = Vec::new();
    // Rows arrive series by series: each series' run of rows within a batch goes to the sink
    // at once (a loop over two slices, no per-row bookkeeping).
    let mut series = matching.iter().enumerate();
    let mut current: Option<(usize, usize)> = None; // index in matching, rows left
    for batch in reader {
        let batch = batch?;
        let ts = column::<TimestampMillisecondArray>(&batch, "timestamp")?.values();
        let values = batch_values(&batch, &mut decoded)?;
        let mut row = 0;
        while row < ts.len() {
            let (i, left) = match current {
                Some((i, left)) if left > 0 => (i, left),
                _ => {
                    let (i, (_, start, end)) = series
                        .next()
                        .ok_or_else(|| Error::Corrupt(format!("{}: more rows than its series list", path.display())))?;
                    current = Some((i, end - start));
                    continue;
                }
            };
            let k = left.min(ts.len() - row);
            // A series' rows are sorted by time (the file's sort order): its samples in
            // `[start_ms, end_ms]` are one slice of the run, copied without a per-row test.
            let run = &ts[row..row + k];
            let lo = run.partition_point(|t| *t < start_ms);
            let hi = lo + run[lo..].partition_point(|t| *t <= end_ms);
            if hi > lo {
                sink(i, &run[lo..hi], &values[row + lo..row + hi]);
            }
            current = Some((i, left - k));
            row += k;
        }
    }
    Ok(())
}

/// True when the file has decimal columns and its `value` column holds only nulls in every
/// row group of `groups`, by the column chunks' statistics (false without them).
fn value_column_empty(metadata: &parquet::file::metadata::ParquetMetaData, groups: &[usize]) -> bool {
    let schema = metadata.file_metadata().schema_descr();
    let index = |name: &str| (0..schema.num_columns()).find(|i| schema.column(*i).path().string() == name);
    let (Some(value), Some(_)) = (index("value"), index("value_int")) else {
        return false;
    };
    groups.iter().all(|g| {
        let rg = metadata.row_group(*g);
        rg.column(value).statistics().and_then(|st| st.null_count_opt()) == Some(rg.num_rows().max(0) as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order files keep series in, compared in place, is the order of (name, labels JSON):
    /// label sets that are prefixes of others, values that need escapes (quotes, backslashes,
    /// control bytes, which sort differently once escaped), non-ASCII, and `__name__` left out.
    #[test]
    fn series_order_is_the_order_of_their_json() {
        let parts = ["", "a", "ab", "a\"", "a\\", "a\n", "a\u{1}", "a\u{1f}", "a\u{7f}", "a/", "é", "a b", "{", "z"];
        let mut sets = Vec::new();
        let mut seed = 7u64;
        let mut pick = |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for _ in 0..3000 {
            let mut pairs = vec![("__name__".to_string(), ["m", "m2", "", "m_total"][pick(4)].to_string())];
            for _ in 0..pick(4) {
                pairs.push((["a", "b", "job", "a_b", "a\"", "A"][pick(6)].to_string(), parts[pick(parts.len())].to_string()));
            }
            sets.push(Labels::from_pairs(pairs));
        }
        for set in &sets {
            assert_eq!(labels_json_bytes(set).collect::<Vec<u8>>(), labels_json(set).into_bytes(), "{set:?}");
        }
        let mut by_json = sets.clone();
        by_json.sort_by_key(|l| (l.metric_name().unwrap_or("").to_string(), labels_json(l)));
        let mut in_place = sets;
        in_place.sort_by(series_order);
        assert_eq!(in_place, by_json);
    }

    /// Streaming merge vs the plain union: same samples per series, time-ordered, inputs' order
    /// kept on equal timestamps, batches crossed (a series of 70k rows), one file out.
    #[test]
    fn merged_files_hold_the_union_of_their_series() {
        let dir = tempfile::tempdir().unwrap();
        let l = |name: &str, v: &str| Labels::from_pairs([("__name__", name), ("k", v)]);
        let (a, b, c, d) = (l("m", "a"), l("m", "b\"q\u{e9}"), l("n", "a"), l("a", "z"));
        let big: Vec<(i64, f64)> = (0..70_000).map(|i| (i * 10, i as f64)).collect();
        let inputs: Vec<HashMap<Labels, Vec<(i64, f64)>>> = vec![
            HashMap::from([(a.clone(), vec![(5, 1.0), (7, 2.0)]), (b.clone(), big.clone())]),
            HashMap::from([(a.clone(), vec![(5, 3.0), (1, 4.0)]), (c.clone(), vec![(9, 9.0)])]),
            HashMap::from([(d.clone(), vec![(2, 2.0)]), (b.clone(), vec![(15, -1.0)])]),
        ];
        let mut files = Vec::new();
        for series in &inputs {
            files.extend(write_files(dir.path(), series.clone(), FLUSH_ZSTD_LEVEL).unwrap());
        }
        let cache = LabelCache::default();
        let catalogs: Vec<(std::path::PathBuf, FileSeries)> = files
            .iter()
            .map(|f| {
                let p = dir.path().join(&f.path);
                let c = FileSeries::load(&p, &cache).unwrap();
                (p, c)
            })
            .collect();
        let refs: Vec<(&Path, &FileSeries)> = catalogs.iter().map(|(p, c)| (p.as_path(), c)).collect();
        let (merged, written) = merge_files(dir.path(), "date=1970-01-01/hour=00", &refs, COMPACT_ZSTD_LEVEL).unwrap().unwrap();
        assert_eq!((merged.series, merged.samples, merged.zstd_level), (4, 70_007, COMPACT_ZSTD_LEVEL));
        assert_eq!((merged.min_ts_ms, merged.max_ts_ms), (0, 699_990));
        assert!(merged.path.starts_with("metrics/date=1970-01-01/hour=00/"));
        let path = dir.path().join(&merged.path);
        // The series list the merge returns is the one the file reads back as, sharing the
        // cache's label sets.
        let loaded = FileSeries::load(&path, &cache).unwrap();
        assert_eq!(written.series, loaded.series);
        assert!(written.series.iter().zip(&loaded.series).all(|(w, l)| w.0.ptr_id() == l.0.ptr_id()));
        assert!(written.by_name && loaded.by_name);
        let mut back = Found::default();
        read_file(&path, &written, &[], i64::MIN, i64::MAX, &mut back).unwrap();
        let back = back.into_map();
        let mut b_all = big.clone();
        b_all.insert(2, (15, -1.0)); // after (10, 1.0), before (20, 2.0)
        let expected = HashMap::from([
            (a.clone(), vec![(1, 4.0), (5, 1.0), (5, 3.0), (7, 2.0)]),
            (b.clone(), b_all),
            (c.clone(), vec![(9, 9.0)]),
            (d.clone(), vec![(2, 2.0)]),
        ]);
        assert_eq!(back.len(), expected.len());
        for (labels, samples) in &expected {
            let got = &back[labels];
            assert_eq!(got.len(), samples.len(), "{labels}");
            assert!(got.iter().zip(samples).all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits()), "{labels}: {:?}", &got[..got.len().min(5)]);
        }
        // A time range cutting series, both ends inclusive, across the batch boundary inside
        // `b` (row 65,536): each series' samples in the range, no other.
        for (start, end) in [(640_000, 660_000), (5, 5), (6, 9), (699_990, i64::MAX), (-5, 1)] {
            let mut part = Found::default();
            read_file(&path, &written, &[], start, end, &mut part).unwrap();
            let part = part.into_map();
            for (labels, samples) in &expected {
                let want: Vec<(i64, f64)> = samples.iter().copied().filter(|(t, _)| (start..=end).contains(t)).collect();
                let got = part.get(labels).cloned().unwrap_or_default();
                assert_eq!(got, want, "{labels} in [{start}, {end}]");
            }
        }
        assert_eq!(
            {
                let mut f = Found::default();
                read_file(&path, &written, &[], 640_000, 660_000, &mut f).unwrap();
                f.into_map()[&b].len()
            },
            2001
        );
        assert!(merge_files(dir.path(), "date=1970-01-01/hour=00", &[], COMPACT_ZSTD_LEVEL).unwrap().is_none());

        // The cache holds each label name and value once ("a" is a value and a metric name):
        // `__name__`, `k`, `m`, `a`, `b"qé`, `n`, `z`; series share them.
        assert_eq!(cache.strings(), 7);
        let k_name = |l: &Labels| l.iter().find(|(n, _)| *n == "k").unwrap().0.as_ptr();
        assert!(loaded.series.windows(2).all(|w| k_name(&w[0].0) == k_name(&w[1].0)));
        drop(refs);
        drop((catalogs, written, loaded, back));
        assert_eq!(cache.prune(), 0);
        assert_eq!(cache.strings(), 0, "strings no set uses are dropped with the sets");
    }

    #[test]
    fn written_files_read_back_with_matchers_and_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let a = Labels::from_pairs([("__name__", "cpu"), ("mode", "idle"), ("q", "a\"b")]);
        let b = Labels::from_pairs([("__name__", "cpu"), ("mode", "user")]);
        let hour = 3_600_000;
        let mut series = HashMap::new();
        series.insert(a.clone(), vec![(hour + 2, 2.0), (hour - 1, 1.0)]);
        series.insert(b.clone(), vec![(hour + 5, 5.0)]);
        let files = write_files(dir.path(), series.clone(), COMPACT_ZSTD_LEVEL).unwrap();
        assert_eq!(files.len(), 2, "samples span two hour partitions");
        assert!(files[0].path.starts_with("metrics/date=1970-01-01/hour=00/"));
        assert!(files[1].path.starts_with("metrics/date=1970-01-01/hour=01/"));
        assert_eq!(files.iter().map(|f| f.samples).sum::<u64>(), 3);

        let mut out = Found::default();
        let idle = [LabelMatcher::new("mode", "=", "idle").unwrap()];
        for f in &files {
            let p = dir.path().join(&f.path);
            read_file(&p, &FileSeries::load(&p, &LabelCache::default()).unwrap(), &idle, 0, i64::MAX, &mut out).unwrap();
        }
        let out = out.into_map();
        assert_eq!(out.len(), 1);
        assert_eq!(out[&a], vec![(hour - 1, 1.0), (hour + 2, 2.0)]);

        let mut out = Found::default();
        let p = dir.path().join(&files[1].path);
        read_file(&p, &FileSeries::load(&p, &LabelCache::default()).unwrap(), &[], hour + 3, hour + 10, &mut out).unwrap();
        let out = out.into_map();
        assert_eq!(out.get(&b), Some(&vec![(hour + 5, 5.0)]));
        assert_eq!(out.len(), 1, "time range filters samples");
    }

    /// Values of every kind come back bit for bit through a flush-level file, a merge with a
    /// file of the layout before the decimal columns (`value` only), and the merged file; the
    /// decimal columns hold what they should.
    #[test]
    fn values_of_every_kind_survive_writes_merges_and_the_old_layout() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mixed: Vec<(i64, f64)> = [12345.67, 0.1 + 0.2, stale, -0.0, f64::INFINITY, 1e300, 7.0, -3.25, 9_007_199_254_740_994.0]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 15_000, *v))
            .collect();
        let ints: Vec<(i64, f64)> = (0..50_000).map(|i| (i * 10, (i * i) as f64)).collect();
        let a = Labels::from_pairs([("__name__", "m"), ("s", "mixed")]);
        let b = Labels::from_pairs([("__name__", "m"), ("s", "ints")]);
        let c = Labels::from_pairs([("__name__", "old"), ("s", "c")]);
        let dir = tempfile::tempdir().unwrap();
        let new = write_files(dir.path(), [(a.clone(), mixed.clone()), (b.clone(), ints.clone())], FLUSH_ZSTD_LEVEL).unwrap();
        assert_eq!(new.len(), 1);
        let new_path = dir.path().join(&new[0].path);

        // The stored columns: 12345.67 as 1234567 at scale 2 (the series' scale), 7 as 700.
        let file = File::open(&new_path).unwrap();
        let batch = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().with_batch_size(1 << 20).build().unwrap().next().unwrap().unwrap();
        assert_eq!(batch.schema(), file_schema());
        let (values, ints_col, scales): (&Float64Array, &Int64Array, &Int8Array) =
            (column(&batch, "value").unwrap(), column(&batch, "value_int").unwrap(), column(&batch, "value_scale").unwrap());
        // Rows: series "ints" first (sorted by labels JSON), then "mixed".
        let m0 = 50_000;
        assert_eq!((ints_col.value(1), scales.value(1), values.is_null(1)), (1, 0, true));
        assert_eq!((ints_col.value(m0), scales.value(m0), values.is_null(m0)), (1_234_567, 2, true));
        assert_eq!((ints_col.value(m0 + 6), scales.value(m0 + 6)), (700, 2));
        for r in [m0 + 1, m0 + 2, m0 + 3, m0 + 4, m0 + 5, m0 + 8] {
            assert!(ints_col.is_null(r) && scales.is_null(r) && values.is_valid(r), "row {r}");
        }

        // A file as written before the decimal columns.
        let old_rel = "metrics/date=1970-01-01/hour=00/old.parquet";
        let old_path = dir.path().join(old_rel);
        let old_rows: Vec<(i64, f64)> = vec![(1, 0.5), (2, stale), (3, 12.0)];
        let mut w = ArrowWriter::try_new(File::create(&old_path).unwrap(), schema(), None).unwrap();
        let n = old_rows.len();
        w.write(
            &RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(StringArray::from(vec!["old"; n])),
                    Arc::new(StringArray::from(vec![r#"{"s":"c"}"#; n])),
                    Arc::new(TimestampMillisecondArray::from(old_rows.iter().map(|r| r.0).collect::<Vec<_>>()).with_timezone("UTC")),
                    Arc::new(Float64Array::from(old_rows.iter().map(|r| r.1).collect::<Vec<_>>())),
                ],
            )
            .unwrap(),
        )
        .unwrap();
        w.close().unwrap();

        let bits = |s: &[(i64, f64)]| s.iter().map(|&(t, v)| (t, v.to_bits())).collect::<Vec<_>>();
        let expected = [(a.clone(), bits(&mixed)), (b.clone(), bits(&ints)), (c.clone(), bits(&old_rows))];
        let check = |paths: &[&Path], what: &str| {
            let cache = LabelCache::default();
            let mut out = Found::default();
            for p in paths {
                read_file(p, &FileSeries::load(p, &cache).unwrap(), &[], i64::MIN, i64::MAX, &mut out).unwrap();
            }
            let out = out.into_map();
            assert_eq!(out.len(), 3, "{what}");
            for (labels, want) in &expected {
                assert_eq!(&bits(&out[labels]), want, "{what}: {labels}");
            }
        };
        check(&[&new_path, &old_path], "before the merge");
        let cache = LabelCache::default();
        let lists = [FileSeries::load(&new_path, &cache).unwrap(), FileSeries::load(&old_path, &cache).unwrap()];
        let inputs = [(new_path.as_path(), &lists[0]), (old_path.as_path(), &lists[1])];
        let (merged, _) = merge_files(dir.path(), "date=1970-01-01/hour=00", &inputs, COMPACT_ZSTD_LEVEL).unwrap().unwrap();
        check(&[&dir.path().join(&merged.path)], "after the merge");
    }

    /// Where every sample of the row groups read is a decimal, the `value` column is left out
    /// of the read (its statistics say it holds only nulls); the values read are the same.
    /// The small dictionary columns are stored uncompressed.
    #[test]
    fn all_decimal_row_groups_are_read_without_the_value_column() {
        let dir = tempfile::tempdir().unwrap();
        // One hour partition: one file.
        let decimals: Vec<(i64, f64)> = (0..240).map(|i| (i * 15_000, i as f64 * 0.25)).collect();
        let mut with_nan = decimals.clone();
        with_nan[77].1 = f64::NAN;
        let a = Labels::from_pairs([("__name__", "m"), ("s", "a")]);
        for (series, empty) in [(&decimals, true), (&with_nan, false)] {
            let files = write_files(dir.path(), [(a.clone(), series.clone())], FLUSH_ZSTD_LEVEL).unwrap();
            assert_eq!(files.len(), 1);
            let path = dir.path().join(&files[0].path);
            let list = FileSeries::load(&path, &LabelCache::default()).unwrap();
            let metadata = list.metadata.metadata();
            assert_eq!(value_column_empty(metadata, &[0]), empty);
            let mut out = Found::default();
            read_file(&path, &list, &[], 0, i64::MAX, &mut out).unwrap();
            let bits = |s: &[(i64, f64)]| s.iter().map(|&(t, v)| (t, v.to_bits())).collect::<Vec<_>>();
            assert_eq!(bits(&out.into_map()[&a]), bits(series));
            let rg = metadata.row_group(0);
            for c in rg.columns() {
                let plain = matches!(c.column_path().string().as_str(), "metric_name" | "value_scale");
                assert_eq!(c.compression() == parquet::basic::Compression::UNCOMPRESSED, plain, "{}", c.column_path());
            }
        }
    }

    /// Stored value columns that no writer of ours produces are errors, not made-up values.
    #[test]
    fn corrupt_value_columns_are_errors() {
        let mut buf = Vec::new();
        let values = Float64Array::from(vec![None, None]);
        let ints = Int64Array::from(vec![Some(5), Some(7)]);
        let ok = Int8Array::from(vec![Some(1), Some(0)]);
        assert_eq!(decode_values(Some(&values), Some((&ints, &ok)), &mut buf).unwrap(), &[0.5, 7.0]);
        for scale in [16, -1] {
            let bad = Int8Array::from(vec![Some(1), Some(scale)]);
            let e = decode_values(Some(&values), Some((&ints, &bad)), &mut buf).unwrap_err().to_string();
            assert!(e.contains(&format!("`value_scale` {scale} outside 0..=15")), "{e}");
        }
        let partly = Int64Array::from(vec![Some(5), None]);
        let e = decode_values(Some(&values), Some((&partly, &ok)), &mut buf).unwrap_err().to_string();
        assert!(e.contains("neither `value` nor `value_int`"), "{e}");
        let e = decode_values(Some(&values), None, &mut buf).unwrap_err().to_string();
        assert!(e.contains("neither `value` nor `value_int`"), "{e}");
    }

    /// A head chunk is written straight from its compressed samples: out of order across hours,
    /// equal timestamps, an hour with no sample between two with samples (no file for it).
    #[test]
    fn chunks_are_written_like_sorted_vectors() {
        let hour = 3_600_000;
        let a = Labels::from_pairs([("__name__", "m"), ("s", "a")]);
        let b = Labels::from_pairs([("__name__", "m"), ("s", "b")]);
        let sa = [(3 * hour + 1, 4.0), (hour - 1, 1.0), (5, 0.5), (3 * hour + 1, 4.5), (hour - 1, f64::NAN)];
        let sb = vec![(hour - 2, 9.0)];
        let (mut ca, mut cb) = (crate::chunk::Chunk::default(), crate::chunk::Chunk::default());
        sa.iter().for_each(|&(t, v)| ca.push(t, v));
        sb.iter().for_each(|&(t, v)| cb.push(t, v));
        let dir = tempfile::tempdir().unwrap();
        let files = write_sources(dir.path(), FLUSH_ZSTD_LEVEL, [(a.clone(), &ca), (b.clone(), &cb)]).unwrap();
        let hours: Vec<&str> = files.iter().map(|f| &f.path[..f.path.rfind('/').unwrap()]).collect();
        assert_eq!(hours, ["metrics/date=1970-01-01/hour=00", "metrics/date=1970-01-01/hour=03"]);
        assert_eq!((files[0].series, files[0].samples, files[1].series, files[1].samples), (2, 4, 1, 2));
        assert_eq!((files[0].min_ts_ms, files[0].max_ts_ms), (5, hour - 1));
        let mut out = Found::default();
        for f in &files {
            let p = dir.path().join(&f.path);
            read_file(&p, &FileSeries::load(&p, &LabelCache::default()).unwrap(), &[], i64::MIN, i64::MAX, &mut out).unwrap();
        }
        let out = out.into_map();
        // Sorted by time, equal timestamps in append order; bits kept (NaN).
        let got: Vec<(i64, u64)> = out[&a].iter().map(|&(t, v)| (t, v.to_bits())).collect();
        let want: Vec<(i64, u64)> = [(5, 0.5), (hour - 1, 1.0), (hour - 1, f64::NAN), (3 * hour + 1, 4.0), (3 * hour + 1, 4.5)]
            .iter()
            .map(|&(t, v): &(i64, f64)| (t, v.to_bits()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(out[&b], sb);
    }

    /// The series list of a file larger than one read batch: series spanning batch boundaries
    /// are listed once, with their full row range.
    #[test]
    fn series_list_spans_read_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut series = HashMap::new();
        let mut rows = 0;
        for i in 0..400 {
            let n = 1 + (i * 7919) % 700;
            rows += n;
            let name = if i % 3 == 0 { "a" } else { "b" };
            let labels = Labels::from_pairs([("__name__", name), ("i", &i.to_string())]);
            series.insert(labels, (0..n as i64).map(|t| (t * 10, t as f64)).collect::<Vec<_>>());
        }
        assert!(rows > 2 * ROWS_PER_BATCH, "{rows} rows");
        let files = write_files(dir.path(), series.clone(), FLUSH_ZSTD_LEVEL).unwrap();
        assert_eq!(files.len(), 1);
        let list = FileSeries::load(&dir.path().join(&files[0].path), &LabelCache::default()).unwrap();
        assert_eq!(list.len(), series.len());
        assert!(list.by_name);
        let mut at = 0;
        for (labels, start, end) in &list.series {
            assert_eq!(*start, at, "{labels}");
            assert_eq!(end - start, series[labels].len(), "{labels}");
            at = *end;
        }
        assert_eq!(at, rows);
    }

    /// A `__name__="x"` matcher narrows the series list by binary search; the answer equals
    /// testing every series, for names present, absent, first and last, and with other matchers.
    #[test]
    fn metric_name_matchers_narrow_by_binary_search() {
        let dir = tempfile::tempdir().unwrap();
        let mut series = HashMap::new();
        for name in ["a", "b", "b_total", "c", "zz"] {
            for i in 0..3 {
                series.insert(Labels::from_pairs([("__name__", name), ("i", &i.to_string())]), vec![(1000 * i, i as f64)]);
            }
        }
        let files = write_files(dir.path(), series.clone(), COMPACT_ZSTD_LEVEL).unwrap();
        let p = dir.path().join(&files[0].path);
        let catalog = FileSeries::load(&p, &LabelCache::default()).unwrap();
        assert!(catalog.by_name);
        let m = |n: &str, op: &str, v: &str| LabelMatcher::new(n, op, v).unwrap();
        let cases: Vec<Vec<LabelMatcher>> = vec![
            vec![m("__name__", "=", "a")],
            vec![m("__name__", "=", "b")],
            vec![m("__name__", "=", "zz"), m("i", "!=", "1")],
            vec![m("__name__", "=", "missing")],
            vec![m("__name__", "=", "")],
            vec![m("__name__", "=~", "b.*")],
            vec![m("i", "=", "2")],
        ];
        for ms in &cases {
            let mut got = Found::default();
            read_file(&p, &catalog, ms, i64::MIN, i64::MAX, &mut got).unwrap();
            let got = got.into_map();
            let want: HashMap<Labels, Vec<(i64, f64)>> =
                series.iter().filter(|(l, _)| matches_all(ms, l)).map(|(l, s)| (l.clone(), s.clone())).collect();
            assert_eq!(got, want, "{ms:?}");
            // With verdicts shared by files (here: the same file twice), the same series.
            let mut verdicts = HashMap::default();
            let first = catalog.matching_with(ms, &mut verdicts);
            assert_eq!(first, catalog.matching(ms), "{ms:?}");
            assert_eq!(catalog.matching_with(ms, &mut verdicts), first, "{ms:?}");
        }
        // Not in name order (as a file from another writer could be): every series is tested.
        let mut unsorted = FileSeries::load(&p, &LabelCache::default()).unwrap();
        unsorted.series.reverse();
        unsorted.by_name = false;
        assert_eq!(unsorted.candidates(&cases[1]).len(), unsorted.series.len());
        assert_eq!(catalog.candidates(&cases[1]).len(), 3);
    }
}
