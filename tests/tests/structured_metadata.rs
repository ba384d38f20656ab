//! Loki structured metadata end to end over HTTP: a Loki push (JSON) whose entries carry
//! metadata, then `query_range` with `| trace_id="…"` answers exactly the matching lines from
//! the head, after a SIGKILL (WAL replay), after the head is flushed to a split, and after a
//! restart that reads the split.

use std::time::Duration;

use pharos_e2e::*;
use serde_json::{Value, json};

/// Records per push; the head flushes once it holds `FLUSH_ROWS`.
const FIRST: usize = 30;
const SECOND: usize = 20;
const FLUSH_ROWS: usize = 40;

/// One pushed entry: (timestamp ns, stream app, line, metadata).
type Entry = (i64, &'static str, String, Vec<(String, String)>);

fn entries(start_ns: i64, from: usize, n: usize) -> Vec<Entry> {
    (from..from + n)
        .map(|i| {
            let mut meta = Vec::new();
            if i % 3 != 0 {
                meta.push(("trace_id".to_string(), format!("trace-{}", i % 5)));
            }
            if i % 4 == 0 {
                meta.push(("user".to_string(), if i % 8 == 0 { "ada" } else { "bob" }.to_string()));
            }
            let app = if i % 2 == 0 { "shop" } else { "cart" };
            (start_ns + i as i64 * 1_000_000, app, format!("request {i} done"), meta)
        })
        .collect()
}

fn push_body(entries: &[Entry]) -> String {
    let streams: Vec<Value> = ["shop", "cart"]
        .iter()
        .map(|app| {
            let values: Vec<Value> = entries
                .iter()
                .filter(|e| e.1 == *app)
                .map(|(ts, _, line, meta)| {
                    let meta: serde_json::Map<String, Value> =
                        meta.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
                    if meta.is_empty() { json!([ts.to_string(), line]) } else { json!([ts.to_string(), line, meta]) }
                })
                .collect();
            json!({"stream": {"app": app, "env": "prod"}, "values": values})
        })
        .collect();
    json!({ "streams": streams }).to_string()
}

async fn push(pharos: &Pharos, entries: &[Entry]) {
    let r = reqwest::Client::new()
        .post(format!("http://{}/loki/api/v1/push", pharos.addr))
        .header("content-type", "application/json")
        .body(push_body(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

/// The lines of entries whose metadata has `key=value`, oldest first.
fn expected(all: &[Entry], key: &str, value: &str) -> Vec<String> {
    all.iter().filter(|e| e.3.iter().any(|(k, v)| k == key && v == value)).map(|e| e.2.clone()).collect()
}

async fn lines(pharos: &Pharos, query: &str, start_ns: i64) -> Vec<String> {
    let (status, b) = pharos
        .get_json(&format!("/loki/api/v1/query_range?query={}&start={start_ns}&direction=forward&limit=1000", enc(query)))
        .await;
    assert_eq!(status, 200, "{b}");
    // Merged into the stream labels by default: every stream of the answer has the value.
    let key_value = query.split_once(" | ").map(|(_, f)| f);
    if let Some((k, v)) = key_value.and_then(|f| f.split_once('=')) {
        for s in b["data"]["result"].as_array().unwrap() {
            assert_eq!(s["stream"][k].as_str(), Some(v.trim_matches('"')), "{s}");
        }
    }
    let mut with_ts: Vec<(i64, String)> = b["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter())
        .map(|v| (v[0].as_str().unwrap().parse().unwrap(), v[1].as_str().unwrap().to_string()))
        .collect();
    with_ts.sort();
    with_ts.into_iter().map(|(_, l)| l).collect()
}

async fn check(pharos: &Pharos, all: &[Entry], start_ns: i64, when: &str) {
    for (k, v) in [("trace_id", "trace-2"), ("trace_id", "trace-0"), ("user", "ada"), ("trace_id", "nope")] {
        for selector in [r#"{env="prod"}"#, r#"{app="shop"}"#] {
            let want: Vec<String> = expected(all, k, v)
                .into_iter()
                .filter(|l| selector.contains("prod") || all.iter().any(|e| &e.2 == l && e.1 == "shop"))
                .collect();
            let got = lines(pharos, &format!(r#"{selector} | {k}="{v}""#), start_ns).await;
            assert_eq!(got, want, "{when}: {selector} | {k}={v:?}");
        }
    }
    let every: Vec<String> = all.iter().map(|e| e.2.clone()).collect();
    assert_eq!(lines(pharos, r#"{env="prod"}"#, start_ns).await, every, "{when}: nothing lost or doubled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_metadata_filters_in_head_after_replay_flush_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut pharos = Pharos::serve_flushing_at_rows(dir.path(), FLUSH_ROWS).await;
    let start_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap() - 60_000_000_000;
    let mut all = entries(start_ns, 0, FIRST);
    push(&pharos, &all).await;
    assert!(!expected(&all, "trace_id", "trace-2").is_empty());
    check(&pharos, &all, start_ns, "head").await;
    assert_eq!(pharos.own_metric("pharos_collector_log_splits_published_total").await, 0.0);

    // Categorized: the stream keeps its labels, the metadata goes beside the entry.
    let q = enc(r#"{app="shop"} | user="ada""#);
    let r = reqwest::Client::new()
        .get(format!("http://{}/loki/api/v1/query_range?query={q}&start={start_ns}&direction=forward", pharos.addr))
        .header("X-Loki-Response-Encoding-Flags", "categorize-labels")
        .send()
        .await
        .unwrap();
    let b: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(b["data"]["encodingFlags"], json!(["categorize-labels"]));
    let first_ada = all.iter().find(|e| e.1 == "shop" && e.3.iter().any(|(k, v)| k == "user" && v == "ada")).unwrap();
    let entry = &b["data"]["result"][0]["values"][0];
    // `service_name` is added at ingest, from `app`.
    assert_eq!(b["data"]["result"][0]["stream"], json!({"app": "shop", "env": "prod", "service_name": "shop"}), "{b}");
    assert_eq!(entry[1].as_str(), Some(first_ada.2.as_str()));
    let meta: serde_json::Map<String, Value> =
        first_ada.3.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    assert_eq!(entry[2]["structuredMetadata"], Value::Object(meta), "{b}");

    pharos.kill9_and_restart().await;
    check(&pharos, &all, start_ns, "replayed from the WAL").await;

    let second = entries(start_ns, FIRST, SECOND);
    push(&pharos, &second).await;
    all.extend(second);
    let p = &pharos;
    wait_for_async("the head flushed to a log split", Duration::from_secs(30), || async move {
        (p.own_metric("pharos_collector_log_splits_published_total").await >= 1.0).then_some(())
    })
    .await;
    check(&pharos, &all, start_ns, "flushed").await;

    pharos.kill9_and_restart().await;
    check(&pharos, &all, start_ns, "after a restart").await;
}

/// A record's severity (OTLP `severityText`) is its `detected_level`, in the head and, read
/// from the split's severity column, after a flush: filters and `sum by (detected_level)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn severity_is_detected_level_in_head_and_split() {
    let dir = tempfile::tempdir().unwrap();
    let pharos = Pharos::serve_flushing_at_rows(dir.path(), 5).await;
    let start_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap() - 60_000_000_000;
    let push = |from: usize, severities: &[&str]| {
        let records: Vec<Value> = severities
            .iter()
            .enumerate()
            .map(|(i, s)| json!({"timeUnixNano": (start_ns + (from + i) as i64 * 1_000_000).to_string(), "severityText": s, "body": {"stringValue": format!("line {}", from + i)}}))
            .collect();
        let body = json!({"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]}, "scopeLogs": [{"logRecords": records}]}]});
        let request = reqwest::Client::new().post(format!("http://{}/v1/logs", pharos.addr)).header("content-type", "application/json").body(body.to_string());
        async move { assert!(request.send().await.unwrap().status().is_success()) }
    };
    let errors = async |pharos: &Pharos| lines(pharos, r#"{service_name="svc"} | detected_level="error""#, start_ns).await;
    push(0, &["ERROR", "INFO"]).await;
    assert_eq!(errors(&pharos).await, vec!["line 0"], "head");
    push(2, &["err", "Warning", ""]).await;
    let p = &pharos;
    wait_for_async("the head flushed to a log split", Duration::from_secs(30), || async move {
        (p.own_metric("pharos_collector_log_splits_published_total").await >= 1.0).then_some(())
    })
    .await;
    assert_eq!(errors(&pharos).await, vec!["line 0", "line 2"], "split");
    let q = enc(r#"sum by (detected_level) (count_over_time({service_name="svc"}[5m]))"#);
    let (status, b) = pharos.get_json(&format!("/loki/api/v1/query?query={q}")).await;
    assert_eq!(status, 200, "{b}");
    // Series (its labels as JSON) → count.
    let got: std::collections::BTreeMap<String, &str> =
        b["data"]["result"].as_array().unwrap().iter().map(|s| (s["metric"].to_string(), s["value"][1].as_str().unwrap())).collect();
    let want = [("{}", "1"), (r#"{"detected_level":"error"}"#, "2"), (r#"{"detected_level":"info"}"#, "1"), (r#"{"detected_level":"warn"}"#, "1")];
    assert_eq!(got, want.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), "{b}");
}
