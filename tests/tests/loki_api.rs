//! The Loki API end to end: push (JSON) into the collector's WAL path, then read back with
//! log queries with a pipeline, a metric query, and the labels/series endpoints.

use pharos_e2e::*;

/// POSTs a Loki push request (JSON) and returns the status.
async fn push_json(pharos: &Pharos, body: &serde_json::Value) -> u16 {
    let url = format!("http://{}/loki/api/v1/push", pharos.addr);
    let request = reqwest::Client::new().post(url).header("content-type", "application/json").body(body.to_string());
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_push_then_query_labels_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let pharos = Pharos::serve(dir.path(), &["--data-dir", dir.path().join("data").to_str().unwrap()]).await;
    let client = reqwest::Client::new();
    let push = |body: &str| {
        let request = client
            .post(format!("http://{}/loki/api/v1/push", pharos.addr))
            .header("content-type", "application/json")
            .body(body.to_string());
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let body = serde_json::json!({"streams": [
        {"stream": {"app": "shop", "env": "prod"}, "values": [
            [(now - 3_000_000_000).to_string(), r#"{"level":"error","status":500}"#],
            [(now - 2_000_000_000).to_string(), r#"{"level":"info","status":200}"#],
            [(now - 1_000_000_000).to_string(), r#"{"level":"error","status":503}"#],
        ]},
    ]});
    assert_eq!(push(&body.to_string()).await, 204);
    assert_eq!(push("{\"streams\": 1}").await, 400);

    let q = enc("{app=\"shop\"} | json | status >= 500 | line_format \"{{.level}} {{.status}}\"");
    let (status, b) = pharos.get_json(&format!("/loki/api/v1/query_range?query={q}&direction=forward")).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(loki_lines(&b), vec!["error 500".to_string(), "error 503".to_string()], "{b}");

    // logfmt with Loki 3's flags, and a Go template with a condition, Sprig and Loki functions.
    let body = serde_json::json!({"streams": [
        {"stream": {"app": "billing"}, "values": [
            [(now - 2_000_000_000).to_string(), r#"level=warn msg="slow query" dur=1.5s"#],
            [(now - 1_000_000_000).to_string(), r#"level=error msg="bad =x"#],
        ]},
    ]});
    assert_eq!(push(&body.to_string()).await, 204);
    let template = r#"{{ if .__error__ }}{{ .__error__ }}@{{ .__error_details__ | trunc 24 }}{{ else }}{{ .level | upper | alignLeft 5 }}|{{ printf "%.1f" (duration .dur) }}|{{ __timestamp__ | date "15:04:05" }}{{ end }}"#;
    let q = enc(&format!("{{app=\"billing\"}} | logfmt --strict | line_format `{template}`"));
    let (status, b) = pharos.get_json(&format!("/loki/api/v1/query_range?query={q}&direction=forward")).await;
    assert_eq!(status, 200, "{b}");
    let at = chrono::DateTime::from_timestamp_nanos(now - 2_000_000_000).format("%H:%M:%S");
    // Two streams: the second line's carries __error__ and __error_details__.
    let mut lines = loki_lines(&b);
    lines.sort();
    assert_eq!(lines, vec!["LogfmtParserErr@logfmt syntax error at p".to_string(), format!("WARN |1.5|{at}")], "{b}");
    // Without --strict the unclosed quote is skipped: no error, and `level` is read.
    let q = enc(r#"{app="billing"} | logfmt | level="error" | line_format "{{ .level }} {{ .msg | default \"-\" }}""#);
    let (_, b) = pharos.get_json(&format!("/loki/api/v1/query_range?query={q}")).await;
    assert_eq!(loki_lines(&b), vec!["error -".to_string()], "{b}");
    let q = enc(r#"{app="billing"} | line_format "{{ .x | sha256 }}""#);
    let (status, b) = pharos.get_json(&format!("/loki/api/v1/query_range?query={q}")).await;
    assert_eq!((status, b["errorType"].as_str()), (400, Some("bad_data")), "{b}");
    assert!(b["error"].as_str().unwrap().contains(r#"function "sha256" not defined"#), "{b}");

    let q = enc("sum by (level) (count_over_time({app=\"shop\"} | json [1m]))");
    let (status, b) = pharos.get_json(&format!("/loki/api/v1/query?query={q}")).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["data"]["resultType"], "vector");
    let mut got: Vec<(String, String)> = b["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["metric"]["level"].as_str().unwrap().to_string(), s["value"][1].as_str().unwrap().to_string()))
        .collect();
    got.sort();
    assert_eq!(got, vec![("error".to_string(), "2".to_string()), ("info".to_string(), "1".to_string())]);

    let (_, b) = pharos.get_json("/loki/api/v1/labels").await;
    let labels: Vec<&str> = b["data"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert!(labels.contains(&"app") && labels.contains(&"env"), "{b}");
    let (_, b) = pharos.get_json("/loki/api/v1/label/app/values").await;
    assert!(b["data"].as_array().unwrap().iter().any(|v| v == "shop"), "{b}");
    let (_, b) = pharos.get_json(&format!("/loki/api/v1/series?match%5B%5D={}", enc("{app=\"shop\"}"))).await;
    // `service_name` is added at ingest, from `app`.
    assert_eq!(b["data"], serde_json::json!([{"app": "shop", "env": "prod", "service_name": "shop"}]), "{b}");
}

/// Lines pushed without a level get the one they state (Loki 3's `discover_log_levels`), which
/// `detected_level` groups and filters by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_levels_are_discovered_from_lines_labels_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let pharos = Pharos::serve(dir.path(), &["--data-dir", dir.path().join("data").to_str().unwrap()]).await;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let at = |s: i64| (now - s * 1_000_000_000).to_string();
    let body = serde_json::json!({"streams": [
        {"stream": {"app": "lvl"}, "values": [
            [at(9), "24/11/22 17:25:34 ERROR Executor: Exception in task 0.0 in stage 1.0"],
            [at(8), "E1122 17:25:34.123456       1 reflector.go:138] failed to list *v1.Pod"],
            [at(7), "ts=2024-11-22T17:25:34Z lvl=WARN msg=\"disk almost full\""],
            [at(6), r#"{"log":{"level":"info"},"msg":"started"}"#],
            [at(5), "no error found in 3 files", {"severity": "debug"}],
            [at(4), "all good"],
        ]},
        {"stream": {"app": "lvl", "level": "Warning"}, "values": [[at(3), "ERROR in the line, but the label says warning"]]},
    ]});
    assert_eq!(push_json(&pharos, &body).await, 204);
    let q = enc(r#"sum by (detected_level) (count_over_time({app="lvl"}[1m]))"#);
    let (status, b) = pharos.get_json(&format!("/loki/api/v1/query?query={q}")).await;
    assert_eq!(status, 200, "{b}");
    let mut got: Vec<(String, String)> = b["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["metric"]["detected_level"].as_str().unwrap_or("-").to_string(), s["value"][1].as_str().unwrap().to_string()))
        .collect();
    got.sort();
    let want = [("-", "1"), ("debug", "1"), ("error", "2"), ("info", "1"), ("warn", "2")];
    assert_eq!(got, want.map(|(l, n)| (l.to_string(), n.to_string())), "{b}");
    let q = enc(r#"{app="lvl"} | detected_level="error""#);
    let (_, b) = pharos.get_json(&format!("/loki/api/v1/query_range?query={q}&direction=forward")).await;
    let lines = loki_lines(&b);
    assert_eq!(lines.len(), 2, "{b}");
    assert!(lines[0].starts_with("24/11/22") && lines[1].starts_with("E1122"), "{b}");

    // Grafana Logs Drilldown's field list over the same entries: the level and the attribute
    // as structured metadata, the logfmt and JSON members with their parsers.
    let (start, end) = (now - 60_000_000_000, now + 1);
    let q = enc(r#"{app="lvl"}"#);
    let (status, b) = pharos.get_json(&format!("/loki/api/v1/detected_fields?query={q}&start={start}&end={end}")).await;
    assert_eq!(status, 200, "{b}");
    let got: Vec<(String, u64, serde_json::Value)> = b["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["label"].as_str().unwrap().to_string(), f["cardinality"].as_u64().unwrap(), f["parsers"].clone()))
        .collect();
    let want = [
        ("detected_level", 4, serde_json::Value::Null),
        ("log_level", 1, serde_json::json!(["json"])),
        ("lvl", 1, serde_json::json!(["logfmt"])),
        ("msg", 2, serde_json::json!(["json", "logfmt"])),
        ("severity", 1, serde_json::Value::Null),
        ("ts", 1, serde_json::json!(["logfmt"])),
    ];
    assert_eq!(got, want.map(|(l, n, p)| (l.to_string(), n, p)), "{b}");
    let (_, b) = pharos.get_json(&format!("/loki/api/v1/detected_labels?query={q}&start={start}&end={end}")).await;
    // `service_name` is added at ingest from `app` (Loki 3's discovery).
    assert_eq!(
        b,
        serde_json::json!({"detectedLabels": [{"label": "app", "cardinality": 1}, {"label": "level", "cardinality": 1}, {"label": "service_name", "cardinality": 1}]})
    );
}

/// `| distinct`: the first entry with each value in the query's direction, found by searching
/// again for more records when the first `limit` hold too few distinct values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_distinct_keeps_the_first_entry_per_value_in_the_direction() {
    let dir = tempfile::tempdir().unwrap();
    let pharos = Pharos::serve(dir.path(), &["--data-dir", dir.path().join("data").to_str().unwrap()]).await;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    // Oldest first: n=0..9 user a, n=10..19 user b, n=20..39 user c.
    let values: Vec<_> = (0..40)
        .map(|n| {
            let user = match n {
                0..=9 => "a",
                10..=19 => "b",
                _ => "c",
            };
            serde_json::json!([(now - (40 - n) * 1_000_000_000).to_string(), format!("user={user} n={n}")])
        })
        .collect();
    let body = serde_json::json!({"streams": [{"stream": {"app": "orders"}, "values": values}]});
    assert_eq!(push_json(&pharos, &body).await, 204);
    let lines = |query: &str, extra: &str| {
        let path = format!("/loki/api/v1/query_range?query={}&{extra}", enc(query));
        let (pharos, query) = (&pharos, query.to_string());
        async move {
            let (status, b) = pharos.get_json(&path).await;
            assert_eq!(status, 200, "{query}: {b}");
            // Each line is its own stream (logfmt's labels): compared as a set.
            let mut lines = loki_lines(&b);
            lines.sort();
            lines
        }
    };
    // Backward, limit 3: the 3 newest lines are all user c, so the search is repeated.
    assert_eq!(
        lines(r#"{app="orders"} | logfmt | distinct user"#, "limit=3").await,
        vec!["user=a n=9", "user=b n=19", "user=c n=39"]
    );
    assert_eq!(
        lines(r#"{app="orders"} | logfmt | distinct user"#, "limit=2&direction=forward").await,
        vec!["user=a n=0", "user=b n=10"]
    );
    // A line filter after `distinct` applies to what it let through (not before it).
    assert_eq!(lines(r#"{app="orders"} | logfmt | distinct user |= "n=1""#, "limit=10").await, vec!["user=b n=19"]);
    // A line filter before it narrows what it sees.
    assert_eq!(
        lines(r#"{app="orders"} |= "n=1" | logfmt | distinct user"#, "limit=10").await,
        vec!["user=a n=1", "user=b n=19"]
    );
    // In a metric query, each user counts once (its oldest line), over the whole range read.
    let q = enc(r#"sum(count_over_time({app="orders"} | logfmt | distinct user [1m]))"#);
    let (status, b) = pharos.get_json(&format!("/loki/api/v1/query?query={q}")).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["data"]["result"][0]["value"][1], "3", "{b}");
}

/// The live tail over the collector's feed: entries are sent as they are ingested, one with a
/// timestamp older than the last sent too (a tail that polled by time would skip it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_tail_sends_entries_as_ingested_late_ones_too() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let pharos = Pharos::serve(dir.path(), &["--data-dir", dir.path().join("data").to_str().unwrap()]).await;
    let client = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let push = |ts: i64, line: &str| {
        let body = serde_json::json!({"streams": [{"stream": {"app": "live"}, "values": [[ts.to_string(), line]]}]});
        let request = client.post(format!("http://{}/loki/api/v1/push", pharos.addr)).header("content-type", "application/json").body(body.to_string());
        async move { assert_eq!(request.send().await.unwrap().status().as_u16(), 204) }
    };
    push(now - 5_000_000_000, "first").await;
    let query = enc(r#"{app="live"} != "skip""#);
    let url = format!("ws://{}/loki/api/v1/tail?query={query}&start={}", pharos.addr, now - 60_000_000_000);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut next = async || -> Vec<(String, String)> {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await.expect("a frame within 10 s").unwrap().unwrap();
        let frame: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        assert_eq!(frame["dropped_entries"], serde_json::json!([]), "{frame}");
        let mut out = Vec::new();
        for stream in frame["streams"].as_array().unwrap() {
            for v in stream["values"].as_array().unwrap() {
                out.push((v[0].as_str().unwrap().to_string(), v[1].as_str().unwrap().to_string()));
            }
        }
        out
    };
    assert_eq!(next().await, vec![((now - 5_000_000_000).to_string(), "first".to_string())]);
    push(now, "second").await;
    assert_eq!(next().await, vec![(now.to_string(), "second".to_string())]);
    // Older than what was sent, and a line the pipeline drops, then one more.
    push(now - 30_000_000_000, "late").await;
    assert_eq!(next().await, vec![((now - 30_000_000_000).to_string(), "late".to_string())]);
    push(now + 1, "skip this").await;
    push(now + 2, "third").await;
    assert_eq!(next().await, vec![((now + 2).to_string(), "third".to_string())]);
}

/// A tail whose client stops reading falls behind: once the socket's buffers are full and
/// 1,024 batches wait, further entries are not queued but listed in `dropped_entries` when the
/// client reads again. Every small line pushed meanwhile is either sent or listed, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_tail_lists_what_a_stalled_client_missed() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let pharos = Pharos::serve(dir.path(), &["--data-dir", dir.path().join("data").to_str().unwrap()]).await;
    let client = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let push = |values: Vec<(i64, String)>| {
        let values: Vec<_> = values.into_iter().map(|(ts, l)| serde_json::json!([ts.to_string(), l])).collect();
        let body = serde_json::json!({"streams": [{"stream": {"app": "flood"}, "values": values}]});
        let request = client.post(format!("http://{}/loki/api/v1/push", pharos.addr)).header("content-type", "application/json").body(body.to_string());
        async move { assert_eq!(request.send().await.unwrap().status().as_u16(), 204) }
    };
    let url = format!("ws://{}/loki/api/v1/tail?query={}&start={}", pharos.addr, enc(r#"{app="flood"}"#), now - 1_000_000_000);
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false).await.unwrap();
    // 48 MiB of long lines, more than the kernel buffers both sockets (at most 6 + 4 MiB here):
    // the server's send blocks while the client reads nothing.
    let long = "x".repeat(64 << 10);
    for r in 0..96i64 {
        push((0..8).map(|i| (now + r * 8 + i, long.clone())).collect()).await;
    }
    // Then 1,500 batches of one short line each: more than the 1,024 the tail may hold queued.
    let small: Vec<i64> = (0..1500).map(|i| now + 1_000_000 + i).collect();
    for &ts in &small {
        push(vec![(ts, format!("small {ts}"))]).await;
    }
    // Reading again: each short line comes once, as an entry or as a dropped one.
    let (mut sent, mut dropped) = (Vec::new(), Vec::new());
    while sent.len() + dropped.len() < small.len() {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next()).await.expect("a frame within 30 s").unwrap().unwrap();
        let frame: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        for stream in frame["streams"].as_array().unwrap() {
            for v in stream["values"].as_array().unwrap() {
                let line = v[1].as_str().unwrap();
                if line.starts_with("small ") {
                    assert_eq!(line, format!("small {}", v[0].as_str().unwrap()));
                    sent.push(v[0].as_str().unwrap().parse::<i64>().unwrap());
                }
            }
        }
        for d in frame["dropped_entries"].as_array().unwrap() {
            assert_eq!(d["labels"], serde_json::json!({"app": "flood", "service_name": "flood"}), "{d}");
            let ts: i64 = d["timestamp"].as_str().unwrap().parse().unwrap();
            if ts > now + 1_000_000 - 1 {
                dropped.push(ts);
            }
        }
    }
    assert!(!dropped.is_empty(), "nothing was dropped: {} sent", sent.len());
    let mut all: Vec<i64> = sent.iter().chain(&dropped).copied().collect();
    all.sort();
    assert_eq!(all, small, "every short line sent or listed as dropped, once ({} sent, {} dropped)", sent.len(), dropped.len());
    println!("stalled tail: {} short lines sent, {} listed as dropped", sent.len(), dropped.len());
}
