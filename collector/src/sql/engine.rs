//! [`SqlEngine`]: plans and runs one read-only query on its own thread pool, with a row cap and
//! a timeout, and converts the result to JSON rows.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMillisecondType, UInt64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;
use pharos_model::sql::{SqlAnswer, SqlColumn, SqlError, SqlFuture, SqlLimits, SqlReader};
use serde_json::Value;

use super::table::{MetricsTable, ScanCounters};
use super::udf::LabelFunction;
use crate::{Error, Result, Store};

/// Threads of the pool queries run on, apart from the HTTP workers.
const QUERY_THREADS: usize = 2;

/// Most bytes the sorts and aggregations of one query may spill to disk.
const MAX_SPILL_BYTES: u64 = 16 << 30;

/// The directory under the data directory queries spill into (each query in a directory of
/// its own, removed when it ends).
pub const SPILL_DIR: &str = "sql-spill";

/// Runs SQL over the `metrics` table of a [`Store`]; implements [`SqlReader`] for the query
/// layer. Queries run on a small dedicated tokio runtime, so a heavy scan never stalls ingest
/// or the HTTP workers; a query is cancelled when it times out or its caller goes away.
pub struct SqlEngine {
    store: Arc<Store>,
    data_dir: PathBuf,
    spill_dir: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
}

impl SqlEngine {
    /// An engine over `store`.
    pub fn new(store: Arc<Store>) -> Result<SqlEngine> {
        let data_dir = std::fs::canonicalize(store.data_dir()).map_err(|e| Error::io(store.data_dir(), e))?;
        // Spill files left by a process that did not end cleanly.
        let spill_dir = data_dir.join(SPILL_DIR);
        if spill_dir.exists() {
            std::fs::remove_dir_all(&spill_dir).map_err(|e| Error::io(&spill_dir, e))?;
        }
        std::fs::create_dir_all(&spill_dir).map_err(|e| Error::io(&spill_dir, e))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(QUERY_THREADS)
            .thread_name("pharos-sql")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("starting the SQL thread pool: {e}")))?;
        Ok(SqlEngine { store, data_dir, spill_dir, runtime: Some(runtime) })
    }
}

impl Drop for SqlEngine {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Aborts the query task when the caller stops waiting (timeout or a closed connection).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SqlReader for SqlEngine {
    fn sql(&self, query: String, limits: SqlLimits) -> SqlFuture {
        let Some(runtime) = &self.runtime else {
            return Box::pin(async { Err(SqlError::Internal("the SQL engine is shut down".into())) });
        };
        let metrics = self.store.metrics.clone();
        let task = runtime.spawn(run(self.store.clone(), self.data_dir.clone(), self.spill_dir.clone(), query, limits));
        let _abort = AbortOnDrop(task.abort_handle());
        Box::pin(async move {
            let _abort = _abort;
            let answer = match tokio::time::timeout(limits.timeout, task).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => Err(SqlError::Internal(format!("SQL query task failed: {e}"))),
                Err(_) => Err(SqlError::Exhausted(format!(
                    "query timed out after {} ms (see the timeout parameter)",
                    limits.timeout.as_millis()
                ))),
            };
            match &answer {
                Ok(a) => {
                    metrics.sql_queries.inc();
                    metrics.sql_files_scanned.inc_by(a.stats.files_scanned);
                    metrics.sql_files_pruned.inc_by(a.stats.files_pruned);
                }
                Err(_) => {
                    metrics.sql_query_errors.inc();
                }
            }
            answer
        })
    }
}

/// Plans and runs `query`, keeping at most `limits.max_rows` rows, its operators' memory
/// bounded by `limits.max_memory_bytes`: sorts, aggregations and joins that can spill do so
/// into `spill_dir` (at most [`MAX_SPILL_BYTES`]); a query that still needs more fails.
async fn run(
    store: Arc<Store>,
    data_dir: PathBuf,
    spill_dir: PathBuf,
    query: String,
    limits: SqlLimits,
) -> std::result::Result<SqlAnswer, SqlError> {
    let max_rows = limits.max_rows;
    let counters = Arc::new(ScanCounters::default());
    let config = SessionConfig::new().with_target_partitions(QUERY_THREADS).with_information_schema(true);
    let disk = DiskManagerBuilder::default()
        .with_mode(DiskManagerMode::Directories(vec![spill_dir]))
        .with_max_temp_directory_size(MAX_SPILL_BYTES);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.max_memory_bytes, 1.0)
        .with_disk_manager_builder(disk)
        .build_arc()
        .map_err(classify)?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    ctx.register_udf(LabelFunction::udf());
    ctx.register_table("metrics", Arc::new(MetricsTable::new(store.clone(), data_dir, counters.clone())))
        .map_err(classify)?;
    ctx.register_table("histograms", Arc::new(super::histograms_table::HistogramsTable::new(store))).map_err(classify)?;
    let read_only = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let frame = ctx.sql_with_options(&query, read_only).await.map_err(classify)?;
    let columns: Vec<SqlColumn> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| SqlColumn { name: f.name().clone(), data_type: f.data_type().to_string() })
        .collect();
    let plan = frame.create_physical_plan().await.map_err(classify)?;
    let mut stream = datafusion::physical_plan::execute_stream(plan.clone(), ctx.task_ctx()).map_err(classify)?;
    let (mut rows, mut truncated) = (Vec::new(), false);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(classify)?;
        let room = max_rows - rows.len();
        if batch.num_rows() > room {
            truncated = true;
        }
        rows.extend(json_rows(&batch, batch.num_rows().min(room))?);
        if truncated {
            break;
        }
    }
    drop(stream);
    let mut stats = counters.snapshot();
    stats.spilled_bytes = spilled_bytes(plan.as_ref());
    Ok(SqlAnswer { columns, rows, truncated, stats })
}

/// Bytes the operators of `plan` wrote to spill files.
fn spilled_bytes(plan: &dyn ExecutionPlan) -> u64 {
    let own = plan.metrics().and_then(|m| m.spilled_bytes()).unwrap_or(0) as u64;
    own + plan.children().into_iter().map(|c| spilled_bytes(c.as_ref())).sum::<u64>()
}

/// Sorts a DataFusion error by whose fault it is; the message is DataFusion's.
fn classify(e: DataFusionError) -> SqlError {
    let message = e.to_string();
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => SqlError::Exhausted(message),
        DataFusionError::Internal(_)
        | DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::ParquetError(_)
        | DataFusionError::ExecutionJoin(_) => SqlError::Internal(message),
        _ => SqlError::BadQuery(message),
    }
}

/// The first `n` rows of `batch` as JSON values (see [`SqlAnswer::rows`] for the encoding).
fn json_rows(batch: &RecordBatch, n: usize) -> std::result::Result<Vec<Vec<Value>>, SqlError> {
    let mut rows: Vec<Vec<Value>> = (0..n).map(|_| Vec::with_capacity(batch.num_columns())).collect();
    for column in batch.columns() {
        let values = json_column(column, n).map_err(|e| SqlError::Internal(format!("converting the result: {e}")))?;
        for (row, v) in rows.iter_mut().zip(values) {
            row.push(v);
        }
    }
    Ok(rows)
}

fn json_column(a: &ArrayRef, n: usize) -> std::result::Result<Vec<Value>, arrow::error::ArrowError> {
    let nulls = |a: &dyn Array| (0..n).map(|i| a.is_null(i)).collect::<Vec<_>>();
    let null = nulls(a.as_ref());
    let value_at = |i: usize, f: &dyn Fn(usize) -> Value| if null[i] { Value::Null } else { f(i) };
    Ok(match a.data_type() {
        DataType::Null => vec![Value::Null; n],
        DataType::Boolean => {
            let b: &BooleanArray = a.as_boolean();
            (0..n).map(|i| value_at(i, &|i| Value::Bool(b.value(i)))).collect()
        }
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let c = cast(a, &DataType::Int64)?;
            let c = c.as_primitive::<Int64Type>();
            (0..n).map(|i| value_at(i, &|i| Value::from(c.value(i)))).collect()
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let c = cast(a, &DataType::UInt64)?;
            let c = c.as_primitive::<UInt64Type>();
            (0..n).map(|i| value_at(i, &|i| Value::from(c.value(i)))).collect()
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let c = cast(a, &DataType::Float64)?;
            let c = c.as_primitive::<Float64Type>();
            (0..n).map(|i| value_at(i, &|i| float(c.value(i)))).collect()
        }
        DataType::Timestamp(_, _) => {
            let c = cast(a, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
            let c = c.as_primitive::<TimestampMillisecondType>();
            (0..n).map(|i| value_at(i, &|i| rfc3339(c.value(i)))).collect()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(_, _)
            if cast(&a.slice(0, 0), &DataType::Utf8).is_ok() =>
        {
            let c = cast(a, &DataType::Utf8)?;
            let c = c.as_string::<i32>();
            (0..n).map(|i| value_at(i, &|i| Value::String(c.value(i).to_string()))).collect()
        }
        // A list as a JSON array of its items, each encoded as a column's values are.
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let mut out = Vec::with_capacity(n);
            for (i, &is_null) in null.iter().enumerate() {
                out.push(if is_null {
                    Value::Null
                } else {
                    let items = l.value(i);
                    Value::Array(json_column(&items, items.len())?)
                });
            }
            out
        }
        _ => {
            let options = FormatOptions::default();
            let f = ArrayFormatter::try_new(a.as_ref(), &options)?;
            (0..n).map(|i| value_at(i, &|i| Value::String(f.value(i).to_string()))).collect()
        }
    })
}

/// A float as JSON: a number, or `"NaN"`, `"+Inf"`, `"-Inf"` (JSON has no such numbers).
fn float(v: f64) -> Value {
    if v.is_nan() {
        Value::String("NaN".into())
    } else if v.is_infinite() {
        Value::String(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null)
    }
}

/// Milliseconds since the epoch as RFC 3339 in UTC, e.g. `2026-11-22T18:00:00.000Z`.
fn rfc3339(ms: i64) -> Value {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        None => Value::from(ms),
    }
}
