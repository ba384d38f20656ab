//! The `metrics` table: published Parquet files (as the manifest lists them) plus the head.
//!
//! A scan takes one snapshot of the store — the manifest and the head (and a head being
//! flushed) under one lock, so a flush in between can neither hide nor duplicate rows — then:
//! - reads the time range the pushed-down filters on `timestamp` allow ([`TimeRange::of`]) and
//!   keeps only the files whose manifest `min_ts_ms..=max_ts_ms` overlaps it (files of one
//!   `date=…/hour=…` partition never span more than that hour, so this is partition pruning);
//! - hands every pushed-down filter to the Parquet scan as a predicate for row-group and page
//!   pruning; filters stay `Inexact`, so DataFusion applies them again above the scan;
//! - turns the head's samples in the range (and of the metric, when the query names one with
//!   `metric_name = '…'`) into one in-memory batch.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Float64Array, RecordBatch, StringBuilder, TimestampMillisecondArray};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::logical_expr::col;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use pharos_model::{LabelMatcher, Labels};

use crate::Store;
use crate::metastore::MetricFile;
use crate::parquet_files;
use crate::sql::udf::StoredValueFunction;

/// Counters of what the scans of one query read (see [`pharos_model::sql::SqlScanStats`]).
#[derive(Debug, Default)]
pub struct ScanCounters {
    pub(crate) files_scanned: AtomicU64,
    pub(crate) files_pruned: AtomicU64,
    pub(crate) head_rows: AtomicU64,
}

impl ScanCounters {
    pub(crate) fn snapshot(&self) -> pharos_model::sql::SqlScanStats {
        pharos_model::sql::SqlScanStats {
            files_scanned: self.files_scanned.load(Ordering::Relaxed),
            files_pruned: self.files_pruned.load(Ordering::Relaxed),
            head_rows: self.head_rows.load(Ordering::Relaxed),
            spilled_bytes: 0,
        }
    }
}

/// The `metrics` table of one query.
pub struct MetricsTable {
    store: Arc<Store>,
    /// Absolute data directory (the Parquet scan needs absolute paths).
    data_dir: PathBuf,
    counters: Arc<ScanCounters>,
}

impl std::fmt::Debug for MetricsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsTable").field("data_dir", &self.data_dir).finish()
    }
}

impl MetricsTable {
    pub(crate) fn new(store: Arc<Store>, data_dir: PathBuf, counters: Arc<ScanCounters>) -> Self {
        MetricsTable { store, data_dir, counters }
    }

    /// Published files and head samples in `range` (of `metric`, if given), from one snapshot.
    fn snapshot(&self, range: TimeRange, metric: Option<&str>) -> (Vec<MetricFile>, HashMap<Labels, Vec<(i64, f64)>>) {
        let matchers: Vec<LabelMatcher> = metric
            .and_then(|m| LabelMatcher::new(pharos_model::METRIC_NAME, "=", m).ok())
            .into_iter()
            .collect();
        let mut head = crate::found::Found::default();
        let manifest = self.store.head_snapshot(&matchers, range.start_ms, range.end_ms, &mut head);
        (manifest.metric_files.clone(), head.into_map())
    }
}

/// Builds the head's rows as one batch of the table schema.
fn head_batch(schema: SchemaRef, head: HashMap<Labels, Vec<(i64, f64)>>) -> DfResult<RecordBatch> {
    let rows: usize = head.values().map(Vec::len).sum();
    let (mut names, mut labels) = (StringBuilder::new(), StringBuilder::new());
    let mut ts = Vec::with_capacity(rows);
    let mut values = Vec::with_capacity(rows);
    for (series, samples) in head {
        let name = series.metric_name().unwrap_or("").to_string();
        let json = parquet_files::labels_json(&series);
        for (t, v) in samples {
            names.append_value(&name);
            labels.append_value(&json);
            ts.push(t);
            values.push(v);
        }
    }
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(names.finish()),
            Arc::new(labels.finish()),
            Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
            Arc::new(Float64Array::from(values)),
        ],
    )?)
}

#[async_trait]
impl TableProvider for MetricsTable {
    fn schema(&self) -> SchemaRef {
        parquet_files::schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if f.is_volatile() {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let range = TimeRange::of(filters);
        let metric = filters.iter().find_map(metric_name_equals);
        let (files, head) = self.snapshot(range, metric.as_deref());

        let (kept, pruned): (Vec<MetricFile>, Vec<MetricFile>) =
            files.into_iter().partition(|f| f.max_ts_ms >= range.start_ms && f.min_ts_ms <= range.end_ms);
        self.counters.files_scanned.fetch_add(kept.len() as u64, Ordering::Relaxed);
        self.counters.files_pruned.fetch_add(pruned.len() as u64, Ordering::Relaxed);

        let batch = head_batch(schema.clone(), head)?;
        self.counters.head_rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> =
            vec![MemorySourceConfig::try_new_exec(&[vec![batch]], schema.clone(), projection.cloned())?];

        if !kept.is_empty() {
            inputs.push(self.file_scan(state, &kept, projection, filters, limit)?);
        }
        UnionExec::try_new(inputs)
    }
}

impl MetricsTable {
    /// A scan of `files` that gives the table's (projected) columns: the stored columns are
    /// read, and the sample value is decoded from `value`, `value_int` and `value_scale` (files
    /// written before the decimal columns read those as null, and their `value` as is).
    fn file_scan(
        &self,
        state: &dyn Session,
        files: &[MetricFile],
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let table = self.schema();
        let stored = parquet_files::file_schema();
        let value = table.index_of("value")?;
        let mut source = ParquetSource::new(stored.clone());
        // Filters on `value` stay out of the scan: the stored `value` column is null where a
        // row holds a mantissa, so row-group and page pruning on it would drop rows.
        let pushable = filters.iter().filter(|f| !f.column_refs().iter().any(|c| c.name == "value")).cloned();
        if let Some(filter) = conjunction(pushable) {
            let df_schema = DFSchema::try_from(stored.as_ref().clone())?;
            // A filter the physical planner cannot take is simply not pushed into the scan.
            if let Ok(predicate) = state.create_physical_expr(filter, &df_schema) {
                source = source.with_predicate(predicate);
            }
        }
        let wanted: Vec<usize> = projection.cloned().unwrap_or_else(|| (0..table.fields().len()).collect());
        let mut read: Vec<usize> = Vec::new();
        for &i in &wanted {
            let name = table.field(i).name();
            if i == value {
                read.extend(["value", "value_int", "value_scale"].iter().map(|c| stored.index_of(c)).collect::<Result<Vec<_>, _>>()?);
            } else {
                read.push(stored.index_of(name)?);
            }
        }
        read.sort_unstable();
        read.dedup();
        let partitions = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); partitions.min(files.len())];
        for (i, f) in files.iter().enumerate() {
            let path = self.data_dir.join(&f.path);
            let n = groups.len();
            groups[i % n].push(PartitionedFile::new(path.to_string_lossy().into_owned(), f.bytes));
        }
        let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
            .with_projection_indices(Some(read))?
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_limit(limit)
            .build();
        let scan = DataSourceExec::from_data_source(config);
        let scanned = scan.schema();
        let scanned_df = DFSchema::try_from(scanned.as_ref().clone())?;
        let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::with_capacity(wanted.len());
        for &i in &wanted {
            let name = table.field(i).name().clone();
            let expr: Arc<dyn PhysicalExpr> = if i == value {
                let args = vec![col("value"), col("value_int"), col("value_scale")];
                let call = Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(StoredValueFunction::udf()), args));
                state.create_physical_expr(call, &scanned_df)?
            } else {
                Arc::new(Column::new_with_schema(&name, &scanned)?)
            };
            exprs.push((expr, name));
        }
        Ok(Arc::new(ProjectionExec::try_new(exprs, scan)?))
    }
}

/// The inclusive millisecond range a query's filters allow; unbounded sides are `i64::MIN/MAX`.
/// A range that is too wide only costs reading more files; one too narrow would lose rows, so
/// only comparisons whose meaning on stored milliseconds is exact narrow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeRange {
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
}

impl TimeRange {
    const ALL: TimeRange = TimeRange { start_ms: i64::MIN, end_ms: i64::MAX };

    /// Intersection of the ranges each conjunct of `filters` implies on `timestamp`.
    pub(crate) fn of(filters: &[Expr]) -> TimeRange {
        let mut r = TimeRange::ALL;
        for f in filters {
            r.narrow(f);
        }
        r
    }

    fn narrow(&mut self, e: &Expr) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
                self.narrow(left);
                self.narrow(right);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if let (true, Some(ms)) = (is_timestamp_column(left), timestamp_literal_ms(right)) {
                    self.apply(*op, ms);
                } else if let (Some(ms), true) = (timestamp_literal_ms(left), is_timestamp_column(right)) {
                    if let Some(op) = op.swap() {
                        self.apply(op, ms);
                    }
                }
            }
            Expr::Between(Between { expr, negated: false, low, high }) if is_timestamp_column(expr) => {
                if let (Some(lo), Some(hi)) = (timestamp_literal_ms(low), timestamp_literal_ms(high)) {
                    self.apply(Operator::GtEq, lo);
                    self.apply(Operator::LtEq, hi);
                }
            }
            _ => {}
        }
    }

    /// Narrows by `timestamp <op> literal`, the literal given as (floor, ceil) milliseconds.
    /// Stored timestamps are whole milliseconds, so the bounds are exact.
    fn apply(&mut self, op: Operator, (floor, ceil): (i64, i64)) {
        match op {
            Operator::GtEq => self.start_ms = self.start_ms.max(ceil),
            Operator::Gt => self.start_ms = self.start_ms.max(floor.saturating_add(1)),
            Operator::LtEq => self.end_ms = self.end_ms.min(floor),
            Operator::Lt => self.end_ms = self.end_ms.min(ceil.saturating_sub(1)),
            Operator::Eq => {
                self.start_ms = self.start_ms.max(ceil);
                self.end_ms = self.end_ms.min(floor);
            }
            _ => {}
        }
    }
}

/// `timestamp`, possibly cast to a timestamp of the same or a finer unit (such casts keep every
/// value exactly; a cast to seconds or to a date would round, and is not used for pruning).
fn is_timestamp_column(e: &Expr) -> bool {
    use arrow::datatypes::{DataType, TimeUnit};
    let lossless = |t: &DataType| {
        matches!(t, DataType::Timestamp(TimeUnit::Millisecond | TimeUnit::Microsecond | TimeUnit::Nanosecond, _))
    };
    match e {
        Expr::Column(c) => c.name == "timestamp",
        Expr::Cast(c) => lossless(c.field.data_type()) && is_timestamp_column(&c.expr),
        Expr::TryCast(c) => lossless(c.field.data_type()) && is_timestamp_column(&c.expr),
        _ => false,
    }
}

/// A timestamp literal as (floor, ceil) milliseconds since the epoch.
fn timestamp_literal_ms(e: &Expr) -> Option<(i64, i64)> {
    let Expr::Literal(v, _) = e else { return None };
    let (n, per_ms): (i64, i64) = match v {
        ScalarValue::TimestampSecond(Some(s), _) => return Some((s.saturating_mul(1000), s.saturating_mul(1000))),
        ScalarValue::TimestampMillisecond(Some(ms), _) => return Some((*ms, *ms)),
        ScalarValue::TimestampMicrosecond(Some(us), _) => (*us, 1_000),
        ScalarValue::TimestampNanosecond(Some(ns), _) => (*ns, 1_000_000),
        _ => return None,
    };
    Some((n.div_euclid(per_ms), n.div_euclid(per_ms) + i64::from(n.rem_euclid(per_ms) != 0)))
}

/// The metric name of a `metric_name = '…'` filter.
pub(crate) fn metric_name_equals(e: &Expr) -> Option<String> {
    let Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) = e else { return None };
    let (col, lit) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => (c, v),
        _ => return None,
    };
    if col.name != "metric_name" {
        return None;
    }
    lit.try_as_str().flatten().map(str::to_string)
}
