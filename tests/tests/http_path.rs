//! The embedded default (no Kafka): agent → OTLP/HTTP → collector → query; malformed input;
//! bad configs; and acknowledged HTTP data surviving SIGKILL.

use std::process::Command;
use std::time::Duration;

use pharos_e2e::*;
use pharos_model::{Labels, Sample, otlp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_ships_over_http_with_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join("data");
    let pharos = Pharos::serve(root, &["--data-dir", data.to_str().unwrap()]).await;
    let expo = ExpositionServer::start().await;
    expo.set_gauge(3.0);
    let pods = root.join("pods/default_web-0_uid-1/nginx");
    std::fs::create_dir_all(&pods).unwrap();
    append_lines(&pods.join("0.log"), &[cri_line("GET / 200"), cri_line("GET /missing 404")]);
    let yaml = format!(
        "scrape:\n  interval_ms: 200\n  targets:\n    - url: {}\n      job: web\nlogs:\n  include: [{:?}]\n  poll_interval_ms: 50\n",
        expo.url,
        format!("{}/pods/*/*/*.log", root.display())
    );
    std::fs::write(root.join("agent.yaml"), yaml).unwrap();
    let mut cmd = Command::new(bin("pharos-agent"));
    cmd.args([
        "--config", root.join("agent.yaml").to_str().unwrap(),
        "--collector-url", &format!("http://{}", pharos.addr),
        "--data-dir", root.join("agent").to_str().unwrap(),
        "--listen", &format!("127.0.0.1:{}", free_port()),
    ]);
    let mut agent = Proc::spawn("agent", cmd, root);

    let up = wait_for_async("up{job=\"web\"} == 1", Duration::from_secs(60), || {
        let p = &pharos;
        async move {
            let (_, b) = p.get_json(&format!("/api/v1/query?query={}", enc("up{job=\"web\"}"))).await;
            prom_values(&b).first().map(|v| v.1.clone())
        }
    })
    .await;
    agent.assert_running();
    assert_eq!(up, "1");
    let (_, b) = pharos.get_json(&format!("/api/v1/query?query={}", enc("sum by (job) (pharos_test_gauge)"))).await;
    assert_eq!(prom_values(&b).first().map(|v| v.1.as_str()), Some("3"), "{b}");

    // HELP/TYPE of the exposition (see `ExpositionServer`), shipped by the agent with the samples;
    // series without metadata in the exposition (`up`) have none.
    let md = wait_for_async("/api/v1/metadata from the agent", Duration::from_secs(30), || {
        let p = &pharos;
        async move {
            let (_, b) = p.get_json("/api/v1/metadata").await;
            b["data"].get("pharos_test_latency_seconds").is_some().then_some(b)
        }
    })
    .await;
    assert_eq!(
        md["data"],
        serde_json::json!({
            "pharos_test_scrapes_total": [{"type": "counter", "help": "Scrapes served.", "unit": ""}],
            "pharos_test_gauge": [{"type": "gauge", "help": "", "unit": ""}],
            "pharos_test_latency_seconds": [{"type": "histogram", "help": "Request latency \\ in seconds.", "unit": ""}],
        }),
        "{md}"
    );
    // The counter, now a monotonic Sum on the wire, is queried as before.
    let (_, b) = pharos.get_json(&format!("/api/v1/query?query={}", enc("pharos_test_scrapes_total > 0"))).await;
    assert_eq!(prom_values(&b).len(), 1, "{b}");

    let got = wait_for_async("both lines", Duration::from_secs(30), || {
        let p = &pharos;
        async move {
            let (_, b) = p.get_json(&format!("/loki/api/v1/query_range?query={}&direction=forward", enc("{pod=\"web-0\"}"))).await;
            let l = loki_lines(&b);
            (l.len() >= 2).then_some(l)
        }
    })
    .await;
    assert_eq!(got, vec!["GET / 200".to_string(), "GET /missing 404".to_string()]);
    let (_, b) = pharos.get_json(&format!("/loki/api/v1/query_range?query={}", enc("{pod=\"web-0\"} != \"404\""))).await;
    assert_eq!(loki_lines(&b), vec!["GET / 200".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_4xx_and_the_process_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut pharos = Pharos::serve(dir.path(), &["--data-dir", dir.path().join("data").to_str().unwrap()]).await;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", pharos.addr);

    let r = client.post(url("/v1/metrics")).header("content-type", "application/x-protobuf").body(vec![0xff, 0xff, 0x01, 0x02]).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("invalid OTLP protobuf"));
    let r = client.post(url("/v1/logs")).header("content-type", "application/json").body("{\"resourceLogs\": 7}").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("invalid OTLP/JSON"));
    let r = client.post(url("/v1/metrics")).header("content-type", "text/csv").body("a,b").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 415);

    let (status, b) = pharos.get_json(&format!("/api/v1/query?query={}", enc("sum(rate(x[5m])"))).await;
    assert_eq!((status, b["status"].as_str(), b["errorType"].as_str()), (400, Some("error"), Some("bad_data")), "{b}");
    let (status, b) = pharos.get_json("/api/v1/query_range?query=up&start=10&end=5&step=1").await;
    assert_eq!((status, b["errorType"].as_str()), (400, Some("bad_data")), "{b}");
    let (status, b) = pharos.get_json(&format!("/loki/api/v1/query_range?query={}", enc("{pod=\"x\""))).await;
    assert_eq!(status, 400, "{b}");

    // Still serving: a valid write and a query work.
    let s = Sample::new(Labels::from_pairs([("__name__", "still_alive"), ("job", "t")]), chrono::Utc::now().timestamp_millis(), 1.0);
    let r = client.post(url("/v1/metrics")).header("content-type", "application/x-protobuf").body(otlp::encode_metrics(&Labels::default(), &[s])).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (status, b) = pharos.get_json("/api/v1/query?query=still_alive").await;
    assert_eq!((status, prom_values(&b).len()), (200, 1), "{b}");
    pharos.proc.assert_running();
}

#[test]
fn bad_configs_exit_non_zero_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "listen: not-an-address\n").unwrap();
    let out = Command::new(bin("pharos")).args(["serve", "--config", bad.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("bad.yaml") && err.contains("listen"), "{err}");

    std::fs::write(&bad, "scrape:\n  targets:\n    - url: \"::not a url\"\n").unwrap();
    let out = Command::new(bin("pharos-agent")).args(["--config", bad.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("url"), "{err}");

    let out = Command::new(bin("pharos")).arg("--help").output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("serve"));
    let out = Command::new(bin("pharos-agent")).arg("--help").output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--collector-url"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_http_writes_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut pharos = Pharos::serve(dir.path(), &["--data-dir", data.to_str().unwrap()]).await;
    let client = reqwest::Client::new();
    let base = chrono::Utc::now().timestamp_millis() - 60_000;
    let mut acked = 0;
    for round in 0..4 {
        for _ in 0..25 {
            let s = Sample::new(Labels::from_pairs([("__name__", "acked_total")]), base + acked * 100, acked as f64);
            let r = client
                .post(format!("http://{}/v1/metrics", pharos.addr))
                .body(otlp::encode_metrics(&Labels::default(), &[s]))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            acked += 1;
        }
        eprintln!("round {round}: {acked} acknowledged; SIGKILL");
        pharos.kill9_and_restart().await;
    }
    let (_, b) = pharos.get_json("/api/v1/query?query=acked_total[1h]").await;
    let got: Vec<i64> = prom_values(&b).iter().map(|(_, v)| v.parse::<f64>().unwrap() as i64).collect();
    assert_eq!(got, (0..acked).collect::<Vec<_>>(), "every acknowledged sample exactly once");
}

/// The README's run command: `pharos up` alone shows live metrics and logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pharos_up_shows_its_own_metrics_and_demo_logs() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(bin("pharos"));
    cmd.args(["up", "--listen", &addr, "--data-dir", dir.path().join("data").to_str().unwrap()]);
    let mut proc = Proc::spawn("pharos-up", cmd, dir.path());
    let get = |path: String| {
        let url = format!("http://{addr}{path}");
        async move {
            let r = reqwest::get(url).await.ok()?;
            serde_json::from_str::<serde_json::Value>(&r.text().await.ok()?).ok()
        }
    };
    let up = wait_for_async("up{job=\"pharos\"}", Duration::from_secs(60), || {
        let q = get(format!("/api/v1/query?query={}", enc("up{job=\"pharos\"}")));
        async move { prom_values(&q.await?).first().map(|v| v.1.clone()) }
    })
    .await;
    assert_eq!(up, "1");
    proc.assert_running();
    let lines = wait_for_async("demo log lines", Duration::from_secs(30), || {
        let q = get(format!("/loki/api/v1/query_range?query={}", enc("{namespace=\"demo\"}")));
        async move {
            let l = loki_lines(&q.await?);
            (!l.is_empty()).then_some(l)
        }
    })
    .await;
    assert!(lines.iter().all(|l| l.contains("(line ")), "{lines:?}");
    let status = proc.terminate();
    assert!(status.success(), "pharos up exits cleanly on SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_samples_are_queryable_and_bad_bodies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pharos = Pharos::serve(dir.path(), &["--data-dir", dir.path().join("data").to_str().unwrap()]).await;
    let client = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp_millis();
    let labels = Labels::from_pairs([("__name__", "rw_temperature_celsius"), ("room", "a")]);
    let samples = vec![Sample::new(labels.clone(), now - 2000, 20.5), Sample::new(labels, now - 1000, 21.25)];
    let r = client
        .post(format!("http://{}/api/v1/write", pharos.addr))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(pharos_model::remote_write::encode(&samples))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (_, b) = pharos.get_json(&format!("/api/v1/query?query={}", enc("rw_temperature_celsius{room=\"a\"}[1m]"))).await;
    let got: Vec<String> = prom_values(&b).into_iter().map(|(_, v)| v).collect();
    assert_eq!(got, vec!["20.5".to_string(), "21.25".to_string()], "{b}");

    let r = client.post(format!("http://{}/api/v1/write", pharos.addr)).body("plain text").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("snappy"));
}

/// Remote_write 2.0 (`io.prometheus.write.v2.Request`, as Prometheus 3 sends it with
/// `protobuf_message: io.prometheus.write.v2.Request`): the samples are queryable, the metadata
/// and the exemplar are served, the written-counts headers say what was stored, bad requests get
/// 4xx, and an acknowledged request survives SIGKILL (replayed from the WAL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_2_0_and_exemplars_are_stored_and_reported() {
    use pharos_model::MetricType;
    use pharos_model::remote_write_v2::{self as v2, RequestBuilder};
    let dir = tempfile::tempdir().unwrap();
    let mut pharos = Pharos::serve(dir.path(), &["--data-dir", dir.path().join("data").to_str().unwrap()]).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/write", pharos.addr);
    let post = |content_type: &'static str, body: Vec<u8>| {
        client
            .post(&url)
            .header("content-type", content_type)
            .header("content-encoding", "snappy")
            .header("x-prometheus-remote-write-version", "2.0.0")
            .body(body)
            .send()
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut b = RequestBuilder::default();
    let a = Labels::from_pairs([("__name__", "rw2_requests_total"), ("code", "200"), ("job", "api")]);
    let e = Labels::from_pairs([("__name__", "rw2_requests_total"), ("code", "500"), ("job", "api")]);
    b.series(&a, &[(now - 2000, 10.0), (now - 1000, 12.5)], Some((MetricType::Counter, "Requests served.", "")));
    // At .250 s: answered as a fraction of seconds, as Prometheus does.
    let ex_t = now - 1500 - (now - 1500).rem_euclid(1000) + 250;
    b.exemplar(&Labels::from_pairs([("trace_id", "4bf92f3577b34da6")]), 1.0, ex_t);
    b.series(&e, &[(now - 1000, 1.0)], Some((MetricType::Counter, "Requests served.", "")));
    // A native histogram series (integer counts: buckets 0 and 1 of schema 0, 1 and 2
    // observations), stored and reported as written.
    let refs = b.label_refs(&Labels::from_pairs([("__name__", "rw2_latency_seconds")]));
    b.push(v2::TimeSeries {
        labels_refs: refs,
        histograms: vec![v2::Histogram {
            count_int: Some(3),
            sum: 0.5,
            positive_spans: vec![pharos_model::remote_write::BucketSpan { offset: 0, length: 2 }],
            positive_deltas: vec![1, 1],
            timestamp: now - 1000,
            ..Default::default()
        }],
        ..Default::default()
    });
    let r = post(v2::CONTENT_TYPE, b.encode_snappy()).await.unwrap();
    assert_eq!(r.status().as_u16(), 204, "{:?}", r.text().await);
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(header(v2::SAMPLES_WRITTEN).as_deref(), Some("3"));
    assert_eq!(header(v2::HISTOGRAMS_WRITTEN).as_deref(), Some("1"));
    assert_eq!(header(v2::EXEMPLARS_WRITTEN).as_deref(), Some("1"));

    let query = format!("/api/v1/query?query={}", enc("rw2_requests_total[1m]"));
    let (_, got) = pharos.get_json(&query).await;
    let series: Vec<(String, Vec<String>)> = got["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["metric"]["code"].as_str().unwrap().to_string(), s["values"].as_array().unwrap().iter().map(|p| p[1].as_str().unwrap().to_string()).collect()))
        .collect();
    assert_eq!(series, vec![("200".to_string(), vec!["10".to_string(), "12.5".to_string()]), ("500".to_string(), vec!["1".to_string()])], "{got}");
    let (_, md) = pharos.get_json("/api/v1/metadata?metric=rw2_requests_total").await;
    assert_eq!(md["data"]["rw2_requests_total"], serde_json::json!([{"type": "counter", "help": "Requests served.", "unit": ""}]), "{md}");
    let exemplars = format!("/api/v1/query_exemplars?query={}", enc("sum(rate(rw2_requests_total[5m]))"));
    let (_, ex) = pharos.get_json(&exemplars).await;
    let t = ex_t as f64 / 1000.0;
    assert_eq!(
        ex["data"],
        serde_json::json!([{
            "seriesLabels": {"__name__": "rw2_requests_total", "code": "200", "job": "api"},
            "exemplars": [{"labels": {"trace_id": "4bf92f3577b34da6"}, "value": "1", "timestamp": t}],
        }]),
        "{ex}"
    );
    let (_, listed) = pharos.get_json(&format!("/api/v1/series?match[]={}", enc("rw2_latency_seconds"))).await;
    assert_eq!(listed["data"], serde_json::json!([{"__name__": "rw2_latency_seconds"}]), "{listed}");
    // The histogram as Prometheus' API writes one: bucket 0 of schema 0 is (0.5, 1], bucket 1
    // (1, 2], both open on the left (boundary rule 0).
    let t = (now - 1000) as f64 / 1000.0;
    let (_, h) = pharos.get_json(&format!("/api/v1/query?query=rw2_latency_seconds&time={t}")).await;
    assert_eq!(
        h["data"],
        serde_json::json!({"resultType": "vector", "result": [{
            "metric": {"__name__": "rw2_latency_seconds"},
            "histogram": [t, {"count": "3", "sum": "0.5", "buckets": [[0, "0.5", "1", "1"], [0, "1", "2", "2"]]}],
        }]}),
        "{h}"
    );
    let (_, count) = pharos.get_json(&format!("/api/v1/query?query={}&time={t}", enc("histogram_count(rw2_latency_seconds) * 2"))).await;
    assert_eq!(count["data"]["result"], serde_json::json!([{"metric": {}, "value": [t, "6"]}]), "{count}");
    // `or` matches on the labels without the name: `vector(1)` ({}) is the histogram's
    // signature, so only the histogram is left.
    let (_, or) = pharos.get_json(&format!("/api/v1/query?query={}&time={t}", enc("rw2_latency_seconds or vector(1)"))).await;
    assert_eq!(or["data"]["result"], h["data"]["result"], "{or}");
    let (_, limited) = pharos.get_json(&format!("/api/v1/query?query={}&time={t}", enc("limitk(1, rw2_latency_seconds)"))).await;
    assert_eq!(limited["data"]["result"], h["data"]["result"], "{limited}");
    // An expression over it that is not evaluated yet says so.
    let (status, e) = pharos.get_json(&format!("/api/v1/query?query={}&time={t}", enc("info(rw2_latency_seconds)"))).await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("native histogram samples") && e["error"].as_str().unwrap().contains("not supported yet"), "{e}");

    // OTLP exemplars: on the data point's series, with the trace id in hex. The exponential
    // histogram beside it is not stored, and the answer says so (OTLP's partial success).
    let otlp_t_ns = (ex_t as u64 + 100) * 1_000_000;
    let otlp = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"otlp_jobs_total","sum":{{"aggregationTemporality":2,"isMonotonic":true,
          "dataPoints":[{{"timeUnixNano":"{otlp_t_ns}","asInt":"4","attributes":[{{"key":"queue","value":{{"stringValue":"q1"}}}}],
            "exemplars":[{{"timeUnixNano":"{otlp_t_ns}","asDouble":2.5,"traceId":"5b8efff798038103d269b633813fc60c"}}]}}]}}}},
          {{"name":"otlp_latency","exponentialHistogram":{{"aggregationTemporality":2,"dataPoints":[{{"timeUnixNano":"{otlp_t_ns}","count":"1","scale":0}}]}}}}]}}]}}]}}"#
    );
    let r = client.post(format!("http://{}/v1/metrics", pharos.addr)).header("content-type", "application/json").body(otlp).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answer: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedDataPoints"], "1", "{answer}");
    let (_, m) = pharos.get_json("/metrics").await;
    let m = m.as_str().unwrap_or_default();
    assert!(m.contains("pharos_collector_native_histograms_dropped_total 1"), "OTLP's exponential histogram: {m}");
    assert!(m.contains("pharos_collector_native_histograms_ingested_total 1"), "remote_write's native histogram: {m}");
    let otlp_exemplars = format!("/api/v1/query_exemplars?query={}", enc("otlp_jobs_total"));
    let (_, otlp_ex) = pharos.get_json(&otlp_exemplars).await;
    assert_eq!(
        otlp_ex["data"],
        serde_json::json!([{
            "seriesLabels": {"__name__": "otlp_jobs_total", "queue": "q1"},
            "exemplars": [{"labels": {"trace_id": "5b8efff798038103d269b633813fc60c"}, "value": "2.5", "timestamp": (ex_t + 100) as f64 / 1000.0}],
        }]),
        "{otlp_ex}"
    );

    // Bad requests: an unknown message, a label ref past the symbols, not snappy.
    let r = post("application/x-protobuf;proto=io.prometheus.write.v3.Request", b.encode_snappy()).await.unwrap();
    assert_eq!(r.status().as_u16(), 415);
    assert!(r.text().await.unwrap().contains("io.prometheus.write.v2.Request"));
    let mut bad = RequestBuilder::default();
    bad.push(v2::TimeSeries { labels_refs: vec![1, 7], ..Default::default() });
    let r = post(v2::CONTENT_TYPE, bad.encode_snappy()).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("symbol"));
    let r = post(v2::CONTENT_TYPE, b"plain text".to_vec()).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("snappy"));

    // Acknowledged, so it survives a crash: replayed from the WAL's 2.0 record.
    pharos.kill9_and_restart().await;
    let (_, after) = pharos.get_json(&query).await;
    assert_eq!(after["data"], got["data"], "the same answer after SIGKILL and WAL replay");
    let (_, ex_after) = pharos.get_json(&exemplars).await;
    assert_eq!(ex_after["data"], ex["data"], "the exemplar too");
    let (_, otlp_after) = pharos.get_json(&otlp_exemplars).await;
    assert_eq!(otlp_after["data"], otlp_ex["data"], "and the OTLP one");
}
