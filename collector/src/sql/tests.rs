//! SQL over real Parquet files written by the store's own flush, plus samples left in the head.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pharos_model::sql::{SqlAnswer, SqlError, SqlLimits, SqlReader};
use pharos_model::{Labels, Sample};
use serde_json::{Value, json};

use super::SqlEngine;
use super::table::TimeRange;
use crate::Store;
use crate::store::Batch;
use crate::telemetry::CollectorMetrics;

/// 2026-01-01T10:00:00Z.
const T0: i64 = 1_767_261_600_000;
const HOUR: i64 = 3_600_000;

/// Samples every minute over two hours (partitions hour=10 and hour=11) for five series.
fn input() -> Vec<Sample> {
    let series: Vec<Labels> = vec![
        Labels::from_pairs([("__name__", "cpu_seconds"), ("team", "a"), ("pod", "p0")]),
        Labels::from_pairs([("__name__", "cpu_seconds"), ("team", "a"), ("pod", "p1")]),
        Labels::from_pairs([("__name__", "cpu_seconds"), ("team", "b"), ("pod", "p2")]),
        Labels::from_pairs([("__name__", "mem_bytes"), ("team", "b"), ("pod", "p2")]),
        Labels::from_pairs([("__name__", "up"), ("job", "node")]),
    ];
    let mut out = Vec::new();
    for minute in 0..120i64 {
        for (i, l) in series.iter().enumerate() {
            let v = (minute * 7 + i as i64 * 13) as f64 / 4.0;
            out.push(Sample::new(l.clone(), T0 + minute * 60_000, v));
        }
    }
    out
}

/// A store whose first 90 minutes are flushed (two files) and the rest is in the head.
fn store_with_files_and_head() -> (tempfile::TempDir, Arc<Store>, Vec<Sample>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap());
    let samples = input();
    let (flushed, head): (Vec<Sample>, Vec<Sample>) = samples.iter().cloned().partition(|s| s.timestamp_ms < T0 + 90 * 60_000);
    assert!(store.ingest("k", 0, Batch::Metrics(flushed)));
    let report = store.flush().unwrap();
    assert_eq!(report.metric_files, 2, "one file per hour partition");
    assert!(store.ingest("k", 1, Batch::Metrics(head)));
    (dir, store, samples)
}

async fn sql(engine: &SqlEngine, q: &str) -> Result<SqlAnswer, SqlError> {
    engine.sql(q.to_string(), SqlLimits { max_rows: 10_000, timeout: Duration::from_secs(30), max_memory_bytes: 64 << 20 }).await
}

async fn ok(engine: &SqlEngine, q: &str) -> SqlAnswer {
    match sql(engine, q).await {
        Ok(a) => a,
        Err(e) => panic!("{q}: {e}"),
    }
}

fn float_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test]
async fn aggregates_over_files_and_head_match_the_input() {
    let (_dir, store, samples) = store_with_files_and_head();
    let engine = SqlEngine::new(store.clone()).unwrap();
    let a = ok(&engine, "SELECT metric_name, count(*) AS n, sum(value) AS total FROM metrics GROUP BY metric_name ORDER BY metric_name").await;
    let mut want: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for s in &samples {
        let e = want.entry(s.labels.metric_name().unwrap().to_string()).or_default();
        e.0 += 1;
        e.1 += s.value;
    }
    assert_eq!(a.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["metric_name", "n", "total"]);
    assert_eq!(a.rows.len(), want.len(), "{:?}", a.rows);
    for (row, (name, (n, total))) in a.rows.iter().zip(&want) {
        assert_eq!(row[0], json!(name));
        assert_eq!(row[1].as_u64(), Some(*n), "{name}");
        assert!((float_of(&row[2]) - total).abs() < 1e-6, "{name}: {} vs {total}", row[2]);
    }
    assert_eq!(a.stats.files_scanned, 2);
    assert_eq!(a.stats.head_rows, 30 * 5, "the last 30 minutes of 5 series are in the head");
    assert!(!a.truncated);
}

#[tokio::test]
async fn head_and_files_together_hold_each_sample_once_across_a_flush() {
    let (_dir, store, samples) = store_with_files_and_head();
    let engine = SqlEngine::new(store.clone()).unwrap();
    let q = "SELECT count(*) AS n, count(DISTINCT (metric_name, labels, timestamp)) AS d FROM metrics";
    let before = ok(&engine, q).await;
    assert_eq!(before.rows, vec![vec![json!(samples.len()), json!(samples.len())]]);
    assert_eq!(before.stats.head_rows, 150);
    store.flush().unwrap();
    let after = ok(&engine, q).await;
    assert_eq!(after.rows, before.rows, "the flush moved rows from head to files, nothing more");
    assert_eq!((after.stats.head_rows, after.stats.files_scanned), (0, 3));
}

#[tokio::test]
async fn label_function_reads_one_label() {
    let (_dir, store, samples) = store_with_files_and_head();
    let engine = SqlEngine::new(store).unwrap();
    let a = ok(
        &engine,
        "SELECT label(labels, 'team') AS team, count(*) AS n, max(value) AS top FROM metrics \
         WHERE metric_name = 'cpu_seconds' GROUP BY 1 ORDER BY 1",
    )
    .await;
    let mut want: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.labels.metric_name() == Some("cpu_seconds")) {
        let e = want.entry(s.labels.get("team").unwrap().to_string()).or_insert((0, f64::MIN));
        e.0 += 1;
        e.1 = e.1.max(s.value);
    }
    let got: Vec<(String, u64, f64)> =
        a.rows.iter().map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_u64().unwrap(), float_of(&r[2]))).collect();
    let want: Vec<(String, u64, f64)> = want.into_iter().map(|(t, (n, m))| (t, n, m)).collect();
    assert_eq!(got, want);
    assert_eq!(a.columns[0].data_type, "Utf8");

    // `up` has no team label: NULL, so it is grouped apart and `IS NULL` finds it.
    let a = ok(&engine, "SELECT metric_name, count(*) FROM metrics WHERE label(labels, 'team') IS NULL GROUP BY 1").await;
    assert_eq!(a.rows, vec![vec![json!("up"), json!(120)]]);
    let a = ok(&engine, "SELECT count(*) FROM metrics WHERE label(labels, 'pod') = 'p2' AND metric_name = 'mem_bytes'").await;
    assert_eq!(a.rows, vec![vec![json!(120)]]);
}

#[tokio::test]
async fn a_query_on_one_hour_opens_only_that_hours_file() {
    let (_dir, store, samples) = store_with_files_and_head();
    let store_metrics = store.metrics.clone();
    let engine = SqlEngine::new(store).unwrap();
    let in_hour = |h: i64| samples.iter().filter(|s| s.timestamp_ms >= T0 + h * HOUR && s.timestamp_ms < T0 + (h + 1) * HOUR).count();

    let a = ok(
        &engine,
        "SELECT count(*) FROM metrics WHERE timestamp >= '2026-01-01T10:00:00Z' AND timestamp < '2026-01-01T11:00:00Z'",
    )
    .await;
    assert_eq!(a.rows, vec![vec![json!(in_hour(0))]]);
    assert_eq!((a.stats.files_scanned, a.stats.files_pruned), (1, 1), "{:?}", a.stats);
    assert_eq!(a.stats.head_rows, 0, "the head holds only hour 11");

    // The same through functions returning nanosecond timestamps, and BETWEEN.
    let a = ok(&engine, "SELECT count(*) FROM metrics WHERE timestamp >= to_timestamp('2026-01-01T11:00:00Z')").await;
    assert_eq!(a.rows, vec![vec![json!(in_hour(1))]]);
    assert_eq!((a.stats.files_scanned, a.stats.files_pruned), (1, 1), "{:?}", a.stats);
    let a = ok(
        &engine,
        "SELECT count(*) FROM metrics WHERE timestamp BETWEEN to_timestamp_millis(1767261600000) AND to_timestamp_millis(1767261659999)",
    )
    .await;
    assert_eq!(a.rows, vec![vec![json!(5)]]);
    assert_eq!(a.stats.files_scanned, 1);

    // `now() - interval` is folded to a constant before the scan: the data is older, nothing is read.
    let a = ok(&engine, "SELECT count(*) FROM metrics WHERE timestamp > now() - interval '1 hour'").await;
    assert_eq!((a.rows[0][0].clone(), a.stats.files_scanned, a.stats.files_pruned), (json!(0), 0, 2));

    // Without a time filter both files are read; a range outside all data reads none.
    assert_eq!(ok(&engine, "SELECT count(*) FROM metrics").await.stats.files_scanned, 2);
    let a = ok(&engine, "SELECT count(*) FROM metrics WHERE timestamp > '2030-01-01T00:00:00Z'").await;
    assert_eq!((a.rows[0][0].clone(), a.stats.files_scanned, a.stats.files_pruned), (json!(0), 0, 2));

    // The same numbers, summed, on the collector's own metrics.
    let m = &store_metrics;
    assert_eq!(m.sql_queries.get(), 6);
    assert_eq!(m.sql_files_scanned.get(), 1 + 1 + 1 + 0 + 2 + 0);
    assert_eq!(m.sql_files_pruned.get(), 1 + 1 + 1 + 2 + 0 + 2);
    assert_eq!(m.sql_query_errors.get(), 0);

    // EXPLAIN shows the one file.
    let a = ok(&engine, "EXPLAIN SELECT count(*) FROM metrics WHERE timestamp < '2026-01-01T11:00:00Z'").await;
    let plan = a.rows.iter().map(|r| r[1].as_str().unwrap_or("")).collect::<Vec<_>>().join("\n");
    assert_eq!(plan.matches(".parquet").count(), 1, "{plan}");
    assert!(plan.contains("hour=10"), "{plan}");
}

#[test]
fn time_range_of_filters_is_conservative() {
    use arrow::datatypes::{DataType, TimeUnit};
    use datafusion::logical_expr::{cast, col, lit};
    use datafusion::scalar::ScalarValue;
    let ms = |v: i64| lit(ScalarValue::TimestampMillisecond(Some(v), Some("UTC".into())));
    let ns = |v: i64| lit(ScalarValue::TimestampNanosecond(Some(v), None));
    let r = TimeRange::of(&[col("timestamp").gt_eq(ms(1000)), col("timestamp").lt(ms(2000))]);
    assert_eq!((r.start_ms, r.end_ms), (1000, 1999), "stored timestamps are whole milliseconds");
    let r = TimeRange::of(&[col("timestamp").gt(ms(1000)), col("timestamp").lt_eq(ms(2000))]);
    assert_eq!((r.start_ms, r.end_ms), (1001, 2000));
    // Sub-millisecond nanosecond bounds: ts > 1.5 ms means ts >= 2 ms; ts < 2.5 ms means ts <= 2 ms.
    let r = TimeRange::of(&[col("timestamp").gt(ns(1_500_000)).and(ns(2_500_000).gt(col("timestamp")))]);
    assert_eq!((r.start_ms, r.end_ms), (2, 2));
    let r = TimeRange::of(&[col("timestamp").gt_eq(ns(1_000_000)), col("timestamp").eq(ns(1_000_000))]);
    assert_eq!((r.start_ms, r.end_ms), (1, 1));
    // A cast to seconds rounds: CAST(ts AS seconds) <= 5 s holds up to 5.999 s, so it must not narrow.
    let secs = DataType::Timestamp(TimeUnit::Second, None);
    let r = TimeRange::of(&[cast(col("timestamp"), secs).lt_eq(lit(ScalarValue::TimestampSecond(Some(5), None)))]);
    assert_eq!((r.start_ms, r.end_ms), (i64::MIN, i64::MAX));
    let nanos = DataType::Timestamp(TimeUnit::Nanosecond, None);
    let r = TimeRange::of(&[cast(col("timestamp"), nanos).lt_eq(ns(5_000_000))]);
    assert_eq!((r.start_ms, r.end_ms), (i64::MIN, 5));
    // OR and other columns do not narrow.
    let r = TimeRange::of(&[col("timestamp").lt(ms(5)).or(col("timestamp").gt(ms(9))), col("value").gt(lit(1.0))]);
    assert_eq!((r.start_ms, r.end_ms), (i64::MIN, i64::MAX));
}

#[tokio::test]
async fn only_read_queries_run() {
    let (dir, store, _) = store_with_files_and_head();
    let engine = SqlEngine::new(store).unwrap();
    let out = dir.path().join("copied.parquet");
    let refused = [
        format!("COPY (SELECT * FROM metrics) TO '{}'", out.display()),
        format!("CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{}'", dir.path().display()),
        "CREATE TABLE t AS SELECT 1".to_string(),
        "CREATE VIEW v AS SELECT * FROM metrics".to_string(),
        "DROP TABLE metrics".to_string(),
        "INSERT INTO metrics VALUES ('m', '{}', now(), 1.0)".to_string(),
        "SET datafusion.execution.batch_size = 1".to_string(),
    ];
    for q in &refused {
        match sql(&engine, q).await {
            Err(SqlError::BadQuery(m)) => assert!(m.contains("not supported") || m.contains("not allowed"), "{q}: {m}"),
            other => panic!("{q}: {other:?}"),
        }
    }
    assert!(!out.exists(), "COPY wrote nothing");
    // The table is still there and whole.
    assert_eq!(ok(&engine, "SELECT count(*) FROM metrics").await.rows, vec![vec![json!(600)]]);
}

#[tokio::test]
async fn bad_sql_is_the_callers_fault_with_datafusions_message() {
    let (_dir, store, _) = store_with_files_and_head();
    let engine = SqlEngine::new(store.clone()).unwrap();
    for (q, needle) in [
        ("SELEC 1", "SELEC"),
        ("SELECT * FROM nope", "nope"),
        ("SELECT no_such_column FROM metrics", "no_such_column"),
        ("SELECT label(labels) FROM metrics", "label"),
        ("SELECT 1; SELECT 2", "single"),
    ] {
        match sql(&engine, q).await {
            Err(SqlError::BadQuery(m)) => assert!(m.contains(needle), "{q}: {m}"),
            other => panic!("{q}: {other:?}"),
        }
    }
    assert_eq!((store.metrics.sql_query_errors.get(), store.metrics.sql_queries.get()), (5, 0));
}

#[tokio::test]
async fn rows_are_capped_and_values_encoded_as_documented() {
    let (_dir, store, _) = store_with_files_and_head();
    store.ingest("k", 2, Batch::Metrics(vec![Sample::new(Labels::from_pairs([("__name__", "stale")]), T0 + 5, f64::NAN)]));
    let engine = SqlEngine::new(store).unwrap();
    let limits = |max_rows| SqlLimits { max_rows, timeout: Duration::from_secs(30), max_memory_bytes: 64 << 20 };
    let a = engine.sql("SELECT * FROM metrics".into(), limits(7)).await.unwrap();
    assert_eq!((a.rows.len(), a.truncated), (7, true));
    let a = engine.sql("SELECT * FROM metrics WHERE metric_name = 'up' LIMIT 120".into(), limits(120)).await.unwrap();
    assert_eq!((a.rows.len(), a.truncated), (120, false));

    let a = ok(&engine, "SELECT metric_name, labels, timestamp, value FROM metrics WHERE metric_name = 'stale'").await;
    assert_eq!(a.rows, vec![vec![json!("stale"), json!("{}"), json!("2026-01-01T10:00:00.005Z"), json!("NaN")]]);
    let types: Vec<&str> = a.columns.iter().map(|c| c.data_type.as_str()).collect();
    assert_eq!(types[0], "Utf8");
    assert_eq!(types[3], "Float64");
    assert!(types[2].starts_with("Timestamp(") && types[2].contains("UTC"), "{types:?}");
}

#[tokio::test]
async fn a_query_past_its_timeout_is_cancelled() {
    let (_dir, store, _) = store_with_files_and_head();
    let engine = SqlEngine::new(store).unwrap();
    // 600³ = 216 million joined rows: far more than 50 ms of work.
    let slow = "SELECT count(*) FROM metrics a, metrics b, metrics c WHERE a.value + b.value + c.value > -1";
    let started = std::time::Instant::now();
    let r = engine.sql(slow.into(), SqlLimits { max_rows: 10, timeout: Duration::from_millis(50), max_memory_bytes: 64 << 20 }).await;
    assert!(matches!(&r, Err(SqlError::Exhausted(m)) if m.contains("timed out")), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The engine still answers.
    assert_eq!(ok(&engine, "SELECT count(*) FROM metrics").await.rows, vec![vec![json!(600)]]);
}


#[tokio::test]
async fn a_query_over_its_memory_limit_fails_and_the_engine_goes_on() {
    let (_dir, store, _) = store_with_files_and_head();
    let engine = SqlEngine::new(store).unwrap();
    // A sort of 600² = 360,000 joined rows carrying two label strings each: several MB.
    let big_sort = "SELECT a.labels, b.labels FROM metrics a, metrics b ORDER BY a.value + b.value, a.labels, b.labels";
    let limits = |max_memory_bytes| SqlLimits { max_rows: 10, timeout: Duration::from_secs(60), max_memory_bytes };
    let r = engine.sql(big_sort.into(), limits(1 << 20)).await;
    assert!(matches!(&r, Err(SqlError::Exhausted(m)) if m.contains("Resources exhausted")), "{r:?}");
    let a = engine.sql(big_sort.into(), limits(256 << 20)).await.unwrap();
    assert_eq!((a.rows.len(), a.truncated), (10, true));
}

#[tokio::test]
async fn the_usual_function_sets_and_show_statements_work() {
    let (_dir, store, samples) = store_with_files_and_head();
    let engine = SqlEngine::new(store).unwrap();
    let cpu = samples.iter().filter(|s| s.labels.metric_name().unwrap().starts_with("cpu")).count();
    let a = ok(&engine, "SELECT count(*) FROM metrics WHERE regexp_like(metric_name, '^cpu')").await;
    assert_eq!(a.rows, vec![vec![json!(cpu)]]);
    // 120 minutes of samples in 5-minute buckets.
    let a = ok(&engine, "SELECT count(DISTINCT date_bin(interval '5 minutes', timestamp)) FROM metrics").await;
    assert_eq!(a.rows, vec![vec![json!(24)]]);
    let a = ok(&engine, "SELECT upper(metric_name), round(max(value)) FROM metrics WHERE metric_name = 'up' GROUP BY 1").await;
    let max_up = samples.iter().filter(|s| s.labels.metric_name() == Some("up")).map(|s| s.value).fold(f64::MIN, f64::max);
    assert_eq!(a.rows, vec![vec![json!("UP"), json!(max_up.round())]]);
    let a = ok(&engine, "SELECT date_trunc('hour', min(timestamp)) FROM metrics").await;
    assert_eq!(a.rows, vec![vec![json!("2026-01-01T10:00:00.000Z")]]);

    let tables = ok(&engine, "SHOW TABLES").await;
    assert!(tables.rows.iter().any(|r| r.contains(&json!("metrics"))), "{:?}", tables.rows);
    let columns = ok(&engine, "SHOW COLUMNS FROM metrics").await;
    let names: Vec<&Value> = columns.rows.iter().map(|r| &r[3]).collect();
    assert_eq!(names, [&json!("metric_name"), &json!("labels"), &json!("timestamp"), &json!("value")], "{:?}", columns.rows);
}

/// The sample values, stored as decimal mantissas in files, are what filters on `value` see:
/// such a filter is not used to prune the stored `value` column (null in those rows).
#[tokio::test]
async fn filters_on_value_see_values_stored_as_decimals() {
    let (_dir, store, samples) = store_with_files_and_head();
    let engine = SqlEngine::new(store).unwrap();
    for (q, keep) in [
        ("SELECT count(*) FROM metrics WHERE value > 100", (|v: f64| v > 100.0) as fn(f64) -> bool),
        ("SELECT count(*) FROM metrics WHERE value = 25.75", |v| v == 25.75),
        ("SELECT count(*) FROM metrics WHERE value BETWEEN 1 AND 2 AND timestamp < '2026-01-01T11:00:00Z'", |v| (1.0..=2.0).contains(&v)),
    ] {
        let late = q.contains("timestamp");
        let want = samples.iter().filter(|s| keep(s.value) && !(late && s.timestamp_ms >= T0 + HOUR)).count();
        assert!(want > 0, "{q}");
        assert_eq!(ok(&engine, q).await.rows, vec![vec![json!(want)]], "{q}");
    }
    // No column at all read from the files (an empty projection of the scan).
    assert_eq!(ok(&engine, "SELECT count(*) FROM metrics").await.rows, vec![vec![json!(samples.len())]]);
}

/// Files written before the decimal columns (`value` only) are read next to new ones; and the
/// expression the README gives readers of the raw files (here DataFusion's own Parquet
/// listing) yields every value exactly.
#[tokio::test]
async fn old_layout_files_and_raw_readers_see_the_same_values() {
    use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    let (dir, store, samples) = store_with_files_and_head();
    store.flush().unwrap();
    let manifest = store.manifest();
    assert_eq!(manifest.metric_files.len(), 3);
    drop(store);

    // Values with more than 15 decimals and beyond 2^53 stay doubles; the rest are mantissas.
    let mut extra = samples.clone();
    let odd = Labels::from_pairs([("__name__", "odd")]);
    for (i, v) in [0.1 + 0.2, 9_007_199_254_740_994.0, 1e-7, -0.0].into_iter().enumerate() {
        extra.push(Sample::new(odd.clone(), T0 + 150 * 60_000 + i as i64 * 15_000, v));
    }
    let store = Arc::new(Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap());
    assert!(store.ingest("k", 2, Batch::Metrics(extra[samples.len()..].to_vec())));
    store.flush().unwrap();
    drop(store);

    // Rewrite the first file in the layout before the decimal columns, in place.
    let first = &manifest.metric_files[0];
    let path = dir.path().join(&first.path);
    let rows: Vec<&Sample> = samples.iter().filter(|s| s.timestamp_ms >= first.min_ts_ms && s.timestamp_ms <= first.max_ts_ms).collect();
    let mut rows_sorted: Vec<(String, String, i64, f64)> = rows
        .iter()
        .map(|s| (s.labels.metric_name().unwrap().to_string(), crate::parquet_files::labels_json(&s.labels), s.timestamp_ms, s.value))
        .collect();
    rows_sorted.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    assert_eq!(rows_sorted.len() as u64, first.samples);
    let schema = crate::parquet_files::schema();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(rows_sorted.iter().map(|r| r.0.as_str()))),
            Arc::new(StringArray::from_iter_values(rows_sorted.iter().map(|r| r.1.as_str()))),
            Arc::new(TimestampMillisecondArray::from_iter_values(rows_sorted.iter().map(|r| r.2)).with_timezone("UTC")),
            Arc::new(Float64Array::from_iter_values(rows_sorted.iter().map(|r| r.3))),
        ],
    )
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len();
    let manifest_path = dir.path().join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    for f in m["metric_files"].as_array_mut().unwrap() {
        if f["path"] == json!(first.path) {
            f["bytes"] = json!(bytes);
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();

    // Every value, as bits, per series and time: from the `metrics` table, and from the raw files.
    let want: BTreeMap<(String, i64), u64> =
        extra.iter().map(|s| ((crate::parquet_files::labels_json(&s.labels) + s.labels.metric_name().unwrap(), s.timestamp_ms), s.value.to_bits())).collect();
    let collect = |a: SqlAnswer| -> BTreeMap<(String, i64), u64> {
        a.rows
            .iter()
            .map(|r| {
                let v = match &r[2] {
                    Value::String(s) => s.parse::<f64>().unwrap(),
                    other => float_of(other),
                };
                ((r[0].as_str().unwrap().to_string(), r[1].as_i64().unwrap()), v.to_bits())
            })
            .collect()
    };
    let store = Arc::new(Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap());
    let engine = SqlEngine::new(store).unwrap();
    let q = "SELECT labels || metric_name, CAST(to_unixtime(timestamp) * 1000 AS BIGINT), value FROM metrics";
    let got = collect(ok(&engine, q).await);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the metrics table differs from the input");

    let ctx = SessionContext::new();
    let root = dir.path().join("metrics");
    ctx.register_parquet("raw", root.to_str().unwrap(), ParquetReadOptions::default()).await.unwrap();
    let batches = ctx
        .sql(
            "SELECT labels || metric_name AS k, CAST(to_unixtime(timestamp) * 1000 AS BIGINT) AS t, \
             coalesce(value, CAST(value_int AS DOUBLE) / power(10, value_scale)) AS v FROM raw",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut raw: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for b in &batches {
        let k = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let k = k.as_any().downcast_ref::<StringArray>().unwrap();
        let t = b.column(1).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
        let v = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            raw.insert((k.value(i).to_string(), t.value(i)), v.value(i).to_bits());
        }
    }
    assert_eq!(raw.len(), want.len());
    assert!(raw == want, "the raw files with the README's expression differ from the input");
}

#[tokio::test]
async fn a_sort_over_its_memory_limit_spills_under_the_data_directory() {
    let (dir, store, _) = store_with_files_and_head();
    let spill_dir = dir.path().join(super::engine::SPILL_DIR);
    // A file left by a process that did not end cleanly is removed when the engine starts.
    std::fs::create_dir_all(spill_dir.join("old")).unwrap();
    std::fs::write(spill_dir.join("old/spill.arrow"), b"x").unwrap();
    let engine = SqlEngine::new(store).unwrap();
    assert_eq!(std::fs::read_dir(&spill_dir).unwrap().count(), 0);
    // The sort of the test above. Around 48 MB hold its merge buffers but not its rows; how
    // much the merges reserve depends on how the join was partitioned (which varies from run
    // to run: a limit spills in one run and fails with "Resources exhausted" in the next), so
    // limits from 40 to 96 MB are tried until two spilled: one at least must spill, and every
    // answer that spilled must equal the in-memory one.
    let big_sort = "SELECT a.labels, b.labels FROM metrics a, metrics b ORDER BY a.value + b.value, a.labels, b.labels";
    let limits = |max_memory_bytes| SqlLimits { max_rows: 10, timeout: Duration::from_secs(60), max_memory_bytes };
    let in_memory = engine.sql(big_sort.into(), limits(256 << 20)).await.unwrap();
    assert_eq!(in_memory.stats.spilled_bytes, 0);
    let mut spills = 0;
    for mb in (40..=96).step_by(4) {
        if let Ok(spilled) = engine.sql(big_sort.into(), limits(mb << 20)).await
            && spilled.stats.spilled_bytes > 1 << 20
        {
            assert_eq!(spilled.rows, in_memory.rows, "{mb} MB");
            spills += 1;
            if spills == 2 {
                break;
            }
        }
    }
    assert!(spills > 0, "no limit made the sort spill");
    // Each query's spill directory goes with it, once the tasks the query's plan spawned (still
    // ending when its answer is back) have dropped it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&spill_dir).unwrap().count() > 0 {
        assert!(std::time::Instant::now() < deadline, "spill directories left: {:?}", std::fs::read_dir(&spill_dir).unwrap().collect::<Vec<_>>());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `histograms` table: samples in a published file and in the head, with their buckets as
/// JSON arrays; filters on the metric and the time.
#[tokio::test]
async fn histograms_table_reads_files_and_head() {
    use pharos_model::histogram::Span;
    use pharos_model::remote_write::{Histogram, Label, TimeSeries, WriteRequest};
    use pharos_model::FloatHistogram;
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap());
    // n observations in bucket 1 ((1, 2] at schema 0) and 2n in bucket 3 ((4, 8]).
    let hist = |n: f64| FloatHistogram {
        count: 3.0 * n,
        sum: 10.0 * n,
        positive_spans: vec![Span { offset: 1, length: 1 }, Span { offset: 1, length: 1 }],
        positive_buckets: vec![n, 2.0 * n],
        ..Default::default()
    };
    let body = |name: &str, t: i64, n: f64| {
        let series = TimeSeries {
            labels: vec![Label { name: "__name__".into(), value: name.into() }, Label { name: "pod".into(), value: "p0".into() }],
            samples: vec![],
            histograms: vec![Histogram::float(t, &hist(n))],
        };
        snap::raw::Encoder::new().compress_vec(&WriteRequest { timeseries: vec![series], ..Default::default() }.encode_to_vec()).unwrap()
    };
    store.ingest_durable(crate::wal::WalKind::RemoteWriteSnappy, &body("lat", T0, 1.0)).unwrap();
    store.flush().unwrap();
    store.ingest_durable(crate::wal::WalKind::RemoteWriteSnappy, &body("lat", T0 + 60_000, 2.0)).unwrap();
    store.ingest_durable(crate::wal::WalKind::RemoteWriteSnappy, &body("other", T0, 5.0)).unwrap();
    let engine = SqlEngine::new(store).unwrap();
    let a = ok(
        &engine,
        "SELECT label(labels, 'pod'), timestamp, count, sum, schema, positive_span_offsets, positive_counts FROM histograms \
         WHERE metric_name = 'lat' ORDER BY timestamp",
    )
    .await;
    assert_eq!(
        a.rows,
        vec![
            vec![json!("p0"), json!("2026-01-01T10:00:00.000Z"), json!(3.0), json!(10.0), json!(0), json!([1, 1]), json!([1.0, 2.0])],
            vec![json!("p0"), json!("2026-01-01T10:01:00.000Z"), json!(6.0), json!(20.0), json!(0), json!([1, 1]), json!([2.0, 4.0])],
        ]
    );
    let a = ok(&engine, &format!("SELECT metric_name, sum(count) FROM histograms WHERE timestamp < to_timestamp_millis({}) GROUP BY metric_name ORDER BY 1", T0 + 1)).await;
    assert_eq!(a.rows, vec![vec![json!("lat"), json!(3.0)], vec![json!("other"), json!(15.0)]]);
}
