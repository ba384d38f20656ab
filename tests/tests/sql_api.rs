//! `/api/v1/sql` over real HTTP: samples arrive through remote_write, part of them is flushed to
//! Parquet by the real flusher and part stays in the head; SQL must see all of them once.

use std::collections::BTreeMap;
use std::time::Duration;

use pharos_e2e::*;
use pharos_model::{Labels, Sample};
use serde_json::{Value, json};

/// Rows per flush: the first batch has exactly this many samples, so it triggers a flush; the
/// second is smaller and stays in the head (the timed flush is an hour away).
const FLUSH_ROWS: usize = 40;

fn series() -> Vec<Labels> {
    vec![
        Labels::from_pairs([("__name__", "sql_cpu_seconds"), ("team", "data"), ("pod", "spark-0")]),
        Labels::from_pairs([("__name__", "sql_cpu_seconds"), ("team", "data"), ("pod", "spark-1")]),
        Labels::from_pairs([("__name__", "sql_cpu_seconds"), ("team", "web"), ("pod", "nginx-0")]),
        Labels::from_pairs([("__name__", "sql_cpu_seconds"), ("pod", "orphan-0")]),
    ]
}

async fn remote_write(pharos: &Pharos, samples: &[Sample]) {
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/write", pharos.addr))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(pharos_model::remote_write::encode(samples))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

async fn post(pharos: &Pharos, path: &str, content_type: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{}{path}", pharos.addr))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_over_flushed_files_and_head_through_http() {
    let dir = tempfile::tempdir().unwrap();
    let mut pharos = Pharos::serve_flushing_at_rows(dir.path(), FLUSH_ROWS).await;

    // 15 s apart, starting 20 minutes ago on a whole second.
    let start = (chrono::Utc::now().timestamp_millis() - 20 * 60_000) / 1000 * 1000;
    let mut all = Vec::new();
    for step in 0..15i64 {
        for (i, l) in series().into_iter().enumerate() {
            all.push(Sample::new(l, start + step * 15_000, (step * 4 + i as i64) as f64 * 0.5));
        }
    }
    let (first, second) = all.split_at(FLUSH_ROWS);
    remote_write(&pharos, first).await;
    wait_for_async("the first batch to be flushed", Duration::from_secs(30), || {
        let p = &pharos;
        async move { (p.own_metric("pharos_collector_metric_files_published_total").await >= 1.0).then_some(()) }
    })
    .await;
    remote_write(&pharos, second).await;

    // CPU by team over the last hour, computed here from what was sent.
    let mut want: BTreeMap<Option<String>, (u64, f64)> = BTreeMap::new();
    for s in &all {
        let e = want.entry(s.labels.get("team").map(str::to_string)).or_default();
        e.0 += 1;
        e.1 += s.value;
    }
    let by_team = "SELECT label(labels, 'team') AS team, count(*) AS n, sum(value) AS cpu FROM metrics \
                   WHERE metric_name = 'sql_cpu_seconds' AND timestamp > now() - interval '1 hour' \
                   GROUP BY 1 ORDER BY 1 NULLS FIRST";
    let (status, b) = pharos.get_json(&format!("/api/v1/sql?query={}", enc(by_team))).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["status"], "success");
    let names: Vec<&str> = b["data"]["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["team", "n", "cpu"]);
    let rows = b["data"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), want.len(), "{b}");
    for (row, (team, (n, cpu))) in rows.iter().zip(&want) {
        assert_eq!(row[0], json!(team), "{b}");
        assert_eq!(row[1].as_u64(), Some(*n), "{b}");
        assert!((row[2].as_f64().unwrap() - cpu).abs() < 1e-9, "{b}");
    }
    let stats = &b["data"]["stats"];
    assert_eq!(stats["head_rows"], json!(all.len() - FLUSH_ROWS), "the second batch is in the head: {b}");
    assert!(stats["files_scanned"].as_u64().unwrap() >= 1, "the first batch is in files: {b}");

    // Only the head's time range: every published file is pruned.
    let second_start = chrono::DateTime::from_timestamp_millis(second[0].timestamp_ms).unwrap().to_rfc3339();
    let recent = format!("SELECT count(*) AS n FROM metrics WHERE metric_name = 'sql_cpu_seconds' AND timestamp >= '{second_start}'");
    let (status, b) = post(&pharos, "/api/v1/sql", "application/sql", &recent).await;
    assert_eq!(status, 200, "{b}");
    let expected = all.iter().filter(|s| s.timestamp_ms >= second[0].timestamp_ms).count();
    assert_eq!(b["data"]["rows"], json!([[expected]]), "{b}");
    assert_eq!(b["data"]["stats"]["files_scanned"], json!(0), "{b}");
    assert!(b["data"]["stats"]["files_pruned"].as_u64().unwrap() >= 1, "{b}");
    assert!(pharos.own_metric("pharos_collector_sql_files_pruned_total").await >= 1.0);
    assert_eq!(pharos.own_metric("pharos_collector_sql_queries_total").await, 2.0);

    // POST form with a row cap; timestamps come back as RFC 3339.
    let form = format!(
        "query={}&limit=2",
        enc("SELECT timestamp, value FROM metrics WHERE metric_name = 'sql_cpu_seconds' ORDER BY timestamp, value")
    );
    let (status, b) = post(&pharos, "/api/v1/sql", "application/x-www-form-urlencoded", &form).await;
    assert_eq!(status, 200, "{b}");
    let first_ts = chrono::DateTime::from_timestamp_millis(start).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(b["data"]["rows"], json!([[first_ts, 0.0], [first_ts, 0.5]]), "{b}");
    assert_eq!(b["data"]["truncated"], json!(true));

    // Bad SQL and anything but a read query: 400 with the reason; the process keeps serving.
    let (status, b) = pharos.get_json(&format!("/api/v1/sql?query={}", enc("SELECT * FROM no_such_table"))).await;
    assert_eq!((status, b["errorType"].as_str()), (400, Some("bad_data")), "{b}");
    assert!(b["error"].as_str().unwrap().contains("no_such_table"), "{b}");
    let copied = dir.path().join("copied.parquet");
    for ddl in [
        format!("COPY (SELECT * FROM metrics) TO '{}'", copied.display()),
        format!("CREATE EXTERNAL TABLE stolen STORED AS PARQUET LOCATION '{}'", dir.path().join("data").display()),
        "DROP TABLE metrics".to_string(),
    ] {
        let (status, b) = post(&pharos, "/api/v1/sql", "text/plain", &ddl).await;
        assert_eq!((status, b["errorType"].as_str()), (400, Some("bad_data")), "{ddl}: {b}");
        assert!(b["error"].as_str().unwrap().contains("not supported"), "{ddl}: {b}");
    }
    assert!(!copied.exists());
    let (status, b) = pharos.get_json("/api/v1/sql").await;
    assert_eq!(status, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("query"), "{b}");
    pharos.proc.assert_running();
    let (status, b) = pharos.get_json(&format!("/api/v1/sql?query={}", enc("SELECT count(*) FROM metrics WHERE metric_name = 'sql_cpu_seconds'"))).await;
    assert_eq!((status, &b["data"]["rows"]), (200, &json!([[all.len()]])), "{b}");
}
