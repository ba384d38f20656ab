//! Native histogram samples as Parquet files, next to the float samples' files but in a tree of
//! their own: `histograms/date=YYYY-MM-DD/hour=HH/<uuid-v7>.parquet`, one file per hour
//! partition per flush, merged into one per partition by compaction. Listed in the manifest's
//! `histogram_files`. Schema (documented in the README):
//!
//! | column | type | |
//! |---|---|---|
//! | `metric_name` | UTF8 | the `__name__` label |
//! | `labels` | UTF8 | all other labels as a JSON object, keys sorted (as in the float files) |
//! | `timestamp` | TIMESTAMP(MILLIS, UTC) | sample time |
//! | `counter_reset_hint` | INT8 | 0 unknown, 1 counter reset, 2 not a counter reset, 3 gauge |
//! | `schema` | INT32 | −4…8 (exponential), −53 (custom buckets) |
//! | `zero_threshold`, `zero_count`, `count`, `sum` | DOUBLE | |
//! | `positive_span_offsets`, `positive_span_lengths` | LIST<INT32> | the spans of positive buckets |
//! | `positive_counts` | LIST<DOUBLE> | absolute count of each positive bucket the spans cover |
//! | `negative_span_offsets`, `negative_span_lengths`, `negative_counts` | | the same for negative buckets |
//! | `custom_values` | LIST<DOUBLE> | the upper bounds of custom buckets (schema −53) |
//!
//! Rows are sorted by `metric_name`, `labels`, `timestamp`, one row per series and timestamp.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Float64Array, Float64Builder, Int8Array, Int32Array, Int32Builder, ListBuilder, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use pharos_model::histogram::{CounterResetHint, Span};
use pharos_model::select::matches_all;
use pharos_model::{FloatHistogram, HistogramSeries, LabelMatcher, Labels, METRIC_NAME};

use crate::metastore::{MetricFile, sync_dir};
use crate::parquet_files::{labels_json, partition_of};
use crate::{Error, Result};

/// Directory of the histogram files under the data directory.
pub const DIR: &str = "histograms";

fn list(name: &str, item: DataType) -> Field {
    Field::new(name, DataType::List(Arc::new(Field::new("item", item, false))), false)
}

/// The files' columns (see the module docs).
pub(crate) fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("metric_name", DataType::Utf8, false),
        Field::new("labels", DataType::Utf8, false),
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new("counter_reset_hint", DataType::Int8, false),
        Field::new("schema", DataType::Int32, false),
        Field::new("zero_threshold", DataType::Float64, false),
        Field::new("zero_count", DataType::Float64, false),
        Field::new("count", DataType::Float64, false),
        Field::new("sum", DataType::Float64, false),
        list("positive_span_offsets", DataType::Int32),
        list("positive_span_lengths", DataType::Int32),
        list("positive_counts", DataType::Float64),
        list("negative_span_offsets", DataType::Int32),
        list("negative_span_lengths", DataType::Int32),
        list("negative_counts", DataType::Float64),
        list("custom_values", DataType::Float64),
    ]))
}

/// One row: (metric name, labels JSON, timestamp, histogram).
type Row = (String, String, i64, Arc<FloatHistogram>);

/// Writes the samples of `series` (each in append order) as one file per hour partition at zstd
/// `level`, fsynced, not published. A series' samples are put in time order; of two samples at
/// one timestamp the later appended is kept.
pub(crate) fn write<'a>(
    data_dir: &Path,
    level: i32,
    series: impl Iterator<Item = (&'a Labels, &'a [(i64, Arc<FloatHistogram>)])>,
) -> Result<Vec<MetricFile>> {
    let mut by_partition: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for (labels, samples) in series {
        let name = labels.metric_name().unwrap_or("").to_string();
        let json = labels_json(labels);
        for (t, h) in samples {
            by_partition.entry(partition_of(*t)).or_default().push((name.clone(), json.clone(), *t, h.clone()));
        }
    }
    by_partition.into_iter().map(|(partition, rows)| write_rows(data_dir, &partition, level, rows)).collect()
}

/// Sorts `rows` (stably, so the later of equal keys stays later), keeps the last of each
/// (series, timestamp), and writes them to a new file of `partition`.
fn write_rows(data_dir: &Path, partition: &str, level: i32, mut rows: Vec<Row>) -> Result<MetricFile> {
    rows.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    let mut kept: Vec<Row> = Vec::with_capacity(rows.len());
    for r in rows {
        match kept.last_mut() {
            Some(last) if (&last.0, &last.1, last.2) == (&r.0, &r.1, r.2) => *last = r,
            _ => kept.push(r),
        }
    }
    let rel = format!("{DIR}/{partition}/{}.parquet", uuid::Uuid::now_v7());
    let path = data_dir.join(&rel);
    let dir = path.parent().unwrap_or(data_dir);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(level).unwrap_or_default())).build();
    let mut writer = ArrowWriter::try_new(f, schema(), Some(props))?;
    for chunk in kept.chunks(8 * 1024) {
        writer.write(&batch(chunk)?)?;
    }
    let file = writer.into_inner()?;
    file.sync_all().map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)?;
    let bytes = file.metadata().map_err(|e| Error::io(&path, e))?.len();
    let mut series = 0u64;
    for (i, r) in kept.iter().enumerate() {
        if i == 0 || (&kept[i - 1].0, &kept[i - 1].1) != (&r.0, &r.1) {
            series += 1;
        }
    }
    Ok(MetricFile {
        path: rel,
        min_ts_ms: kept.iter().map(|r| r.2).min().unwrap_or(0),
        max_ts_ms: kept.iter().map(|r| r.2).max().unwrap_or(0),
        series,
        samples: kept.len() as u64,
        bytes,
        zstd_level: level,
        created_ms: chrono::Utc::now().timestamp_millis(),
    })
}

/// The samples of `series` as one batch of the files' columns, sorted as the files are.
pub(crate) fn series_batch(series: &[HistogramSeries]) -> Result<RecordBatch> {
    let mut rows: Vec<Row> = Vec::with_capacity(series.iter().map(|s| s.samples.len()).sum());
    for s in series {
        let (name, json) = (s.labels.get(METRIC_NAME).unwrap_or("").to_string(), labels_json(&s.labels));
        rows.extend(s.samples.iter().map(|(t, h)| (name.clone(), json.clone(), *t, h.clone())));
    }
    rows.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    batch(&rows)
}

fn batch(rows: &[Row]) -> Result<RecordBatch> {
    let floats = |f: fn(&FloatHistogram) -> f64| Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| f(&r.3)))) as Arc<dyn Array>;
    let int_lists = |f: &dyn Fn(&FloatHistogram) -> Vec<i32>| {
        let mut b = ListBuilder::new(Int32Builder::new()).with_field(Arc::new(Field::new("item", DataType::Int32, false)));
        for r in rows {
            b.append_value(f(&r.3).into_iter().map(Some));
        }
        Arc::new(b.finish()) as Arc<dyn Array>
    };
    let float_lists = |f: &dyn Fn(&FloatHistogram) -> &[f64]| {
        let mut b = ListBuilder::new(Float64Builder::new()).with_field(Arc::new(Field::new("item", DataType::Float64, false)));
        for r in rows {
            b.append_value(f(&r.3).iter().copied().map(Some));
        }
        Arc::new(b.finish()) as Arc<dyn Array>
    };
    let columns: Vec<Arc<dyn Array>> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.as_str()))),
        Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.2)).with_timezone("UTC")),
        Arc::new(Int8Array::from_iter_values(rows.iter().map(|r| r.3.counter_reset_hint as i8))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.3.schema))),
        floats(|h| h.zero_threshold),
        floats(|h| h.zero_count),
        floats(|h| h.count),
        floats(|h| h.sum),
        int_lists(&|h| h.positive_spans.iter().map(|s| s.offset).collect()),
        int_lists(&|h| h.positive_spans.iter().map(|s| s.length as i32).collect()),
        float_lists(&|h| &h.positive_buckets),
        int_lists(&|h| h.negative_spans.iter().map(|s| s.offset).collect()),
        int_lists(&|h| h.negative_spans.iter().map(|s| s.length as i32).collect()),
        float_lists(&|h| &h.negative_buckets),
        float_lists(&|h| &h.custom_values),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// Reads the samples of one file in `[start_ms, end_ms]` of the series matching `matchers` into
/// `out`, by series, in the file's (time) order.
pub(crate) fn read(
    path: &Path,
    matchers: &[LabelMatcher],
    start_ms: i64,
    end_ms: i64,
    out: &mut BTreeMap<Labels, Vec<(i64, Arc<FloatHistogram>)>>,
) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)?.with_batch_size(8 * 1024).build()?;
    // The series of the row before: its name, labels JSON and label set (None when it does not
    // match). Rows are sorted by series, so each series' labels are parsed once.
    let mut last: Option<(String, String, Option<Labels>)> = None;
    let corrupt = |what: &str| Error::Corrupt(format!("{}: {what}", path.display()));
    for batch in reader {
        let batch = batch?;
        let col = |name: &str| batch.column_by_name(name).ok_or_else(|| corrupt(&format!("no column {name}")));
        let names = col("metric_name")?.as_string_opt::<i32>().ok_or_else(|| corrupt("metric_name is not UTF8"))?;
        let labels = col("labels")?.as_string_opt::<i32>().ok_or_else(|| corrupt("labels is not UTF8"))?;
        let ts = col("timestamp")?
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or_else(|| corrupt("timestamp is not TIMESTAMP(MILLIS)"))?;
        let hint = col("counter_reset_hint")?.as_primitive_opt::<arrow::datatypes::Int8Type>().ok_or_else(|| corrupt("counter_reset_hint"))?;
        let schema = col("schema")?.as_primitive_opt::<Int32Type>().ok_or_else(|| corrupt("schema"))?;
        let f64s = |name: &str| -> Result<&Float64Array> { col(name)?.as_primitive_opt::<Float64Type>().ok_or_else(|| corrupt(name)) };
        let (zt, zc, count, sum) = (f64s("zero_threshold")?, f64s("zero_count")?, f64s("count")?, f64s("sum")?);
        let lists = |name: &str| -> Result<&arrow::array::ListArray> { col(name)?.as_list_opt::<i32>().ok_or_else(|| corrupt(name)) };
        let int_list = |l: &arrow::array::ListArray, i: usize| -> Result<Vec<i32>> {
            Ok(l.value(i).as_primitive_opt::<Int32Type>().ok_or_else(|| corrupt("a span list is not INT32"))?.values().to_vec())
        };
        let float_list = |l: &arrow::array::ListArray, i: usize| -> Result<Vec<f64>> {
            Ok(l.value(i).as_primitive_opt::<Float64Type>().ok_or_else(|| corrupt("a count list is not DOUBLE"))?.values().to_vec())
        };
        let spans = |offsets: &arrow::array::ListArray, lengths: &arrow::array::ListArray, i: usize| -> Result<Vec<Span>> {
            let (o, l) = (int_list(offsets, i)?, int_list(lengths, i)?);
            if o.len() != l.len() {
                return Err(corrupt("span offsets and lengths differ in number"));
            }
            Ok(o.into_iter().zip(l).map(|(offset, length)| Span { offset, length: length as u32 }).collect())
        };
        let (po, pl, pc) = (lists("positive_span_offsets")?, lists("positive_span_lengths")?, lists("positive_counts")?);
        let (no, nl, nc) = (lists("negative_span_offsets")?, lists("negative_span_lengths")?, lists("negative_counts")?);
        let cv = lists("custom_values")?;
        for i in 0..batch.num_rows() {
            let t = ts.value(i);
            if t < start_ms || t > end_ms {
                continue;
            }
            let (name, json) = (names.value(i), labels.value(i));
            if !last.as_ref().is_some_and(|(n, l, _)| n == name && l == json) {
                let map: BTreeMap<String, String> =
                    serde_json::from_str(json).map_err(|e| corrupt(&format!("labels {json:?} are not a JSON object: {e}")))?;
                let set = Labels::from_pairs(std::iter::once((METRIC_NAME.to_string(), name.to_string())).chain(map));
                last = Some((name.to_string(), json.to_string(), matches_all(matchers, &set).then_some(set)));
            }
            let Some(set) = last.as_ref().and_then(|(_, _, set)| set.clone()) else { continue };
            let h = FloatHistogram {
                counter_reset_hint: CounterResetHint::from_number(hint.value(i) as u64),
                schema: schema.value(i),
                zero_threshold: zt.value(i),
                zero_count: zc.value(i),
                count: count.value(i),
                sum: sum.value(i),
                positive_spans: spans(po, pl, i)?,
                positive_buckets: float_list(pc, i)?,
                negative_spans: spans(no, nl, i)?,
                negative_buckets: float_list(nc, i)?,
                custom_values: float_list(cv, i)?,
            };
            out.entry(set).or_default().push((t, Arc::new(h)));
        }
    }
    Ok(())
}

/// The distinct label sets of a file's series (its `metric_name` and `labels` columns only), so
/// that a query can skip the files holding none of the series it selects.
pub(crate) fn series_of(path: &Path) -> Result<Vec<Labels>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f)?;
    let mask = parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), ["metric_name", "labels"]);
    let reader = builder.with_projection(mask).build()?;
    let corrupt = |what: &str| Error::Corrupt(format!("{}: {what}", path.display()));
    let mut seen: std::collections::BTreeSet<(String, String)> = std::collections::BTreeSet::new();
    for batch in reader {
        let batch = batch?;
        let col = |name: &str| batch.column_by_name(name).and_then(|c| c.as_string_opt::<i32>()).ok_or_else(|| corrupt(&format!("{name} is not UTF8")));
        let (names, labels) = (col("metric_name")?, col("labels")?);
        for i in 0..batch.num_rows() {
            // Rows are sorted by series: compare with the last one seen before allocating.
            if seen.last().is_some_and(|(n, l)| n == names.value(i) && l == labels.value(i)) {
                continue;
            }
            seen.insert((names.value(i).to_string(), labels.value(i).to_string()));
        }
    }
    seen.into_iter()
        .map(|(name, json)| {
            let map: BTreeMap<String, String> = serde_json::from_str(&json).map_err(|e| corrupt(&format!("labels {json:?} are not a JSON object: {e}")))?;
            Ok(Labels::from_pairs(std::iter::once((METRIC_NAME.to_string(), name)).chain(map)))
        })
        .collect()
}

/// Merges `inputs` (paths relative to `data_dir`, oldest first) into one file of their
/// partition at zstd `level`; of two samples of a series at one timestamp the one of the later
/// input is kept. `None` when they hold no rows.
pub(crate) fn merge(data_dir: &Path, partition: &str, inputs: &[&MetricFile], level: i32) -> Result<Option<MetricFile>> {
    let mut rows: Vec<Row> = Vec::new();
    for f in inputs {
        let mut one = BTreeMap::new();
        read(&data_dir.join(&f.path), &[], i64::MIN, i64::MAX, &mut one)?;
        for (labels, samples) in one {
            let (name, json) = (labels.metric_name().unwrap_or("").to_string(), labels_json(&labels));
            rows.extend(samples.into_iter().map(|(t, h)| (name.clone(), json.clone(), t, h)));
        }
    }
    if rows.is_empty() {
        return Ok(None);
    }
    write_rows(data_dir, partition, level, rows).map(Some)
}

/// Series in label order, each sample list in time order with one sample per timestamp (the
/// last one of equal timestamps, in the order they were added, wins).
pub(crate) fn into_series(by_series: BTreeMap<Labels, Vec<(i64, Arc<FloatHistogram>)>>) -> Vec<HistogramSeries> {
    by_series
        .into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|(t, _)| *t);
            let mut kept: Vec<(i64, Arc<FloatHistogram>)> = Vec::with_capacity(samples.len());
            for s in samples {
                match kept.last_mut() {
                    Some(last) if last.0 == s.0 => *last = s,
                    _ => kept.push(s),
                }
            }
            HistogramSeries { labels, samples: kept }
        })
        .collect()
}
