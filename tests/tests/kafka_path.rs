//! The whole path through a real broker: agent (scrape + CRI tail) → Kafka → collector → query,
//! including SIGKILLs of the collector while the agent keeps sending.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pharos_e2e::*;

fn agent_yaml(broker: &str, target: &str, pods: &Path, data: &Path) -> String {
    format!(
        "cluster: e2e\nnode: node-1\nlisten: 127.0.0.1:{port}\ndata_dir: {data:?}\n\
         scrape:\n  interval_ms: 200\n  targets:\n    - url: {target}\n      job: exposition\n\
         logs:\n  include: [{glob:?}]\n  poll_interval_ms: 50\n\
         sink:\n  kafka:\n    brokers: {broker}\n    compression: lz4\n",
        port = free_port(),
        data = data.display().to_string(),
        glob = format!("{}/*/*/*.log", pods.display()),
    )
}

fn pharos_yaml(broker: &str, data: &Path) -> String {
    format!(
        "data_dir: {data:?}\ncollector:\n  flush_interval_ms: 400\n  kafka:\n    brokers: {broker}\n    create_topics_partitions: 2\n    trino_events_topic: trino.events\n    instance_id: collector-0\n    session_timeout_ms: 3000\n",
        data = data.display().to_string()
    )
}

struct Setup {
    _dir: Option<tempfile::TempDir>,
    _broker: Broker,
    broker_addr: String,
    pharos: Pharos,
    agent: Proc,
    expo: ExpositionServer,
    log_file: std::path::PathBuf,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    eprintln!("test directory: {} (set PHAROS_E2E_KEEP=1 to keep it)", root.display());
    let broker = Broker::start(root);
    let expo = ExpositionServer::start().await;
    expo.set_gauge(42.5);
    let pods = root.join("pods");
    let container_dir = pods.join("payments_api-7d9f_0c1e2d3f-uid/api");
    std::fs::create_dir_all(&container_dir).unwrap();
    let log_file = container_dir.join("0.log");
    append_lines(&log_file, &[cri_line("line-00000 service starting")]);

    std::fs::write(root.join("pharos.yaml"), pharos_yaml(&broker.addr, &root.join("data"))).unwrap();
    let pharos = Pharos::serve(root, &["--config", root.join("pharos.yaml").to_str().unwrap()]).await;

    std::fs::write(root.join("agent.yaml"), agent_yaml(&broker.addr, &expo.url, &pods, &root.join("agent"))).unwrap();
    let mut cmd = Command::new(bin("pharos-agent"));
    cmd.args(["--config", root.join("agent.yaml").to_str().unwrap()]).env("RUST_LOG", "info");
    let agent = Proc::spawn("agent", cmd, root);
    let dir = if std::env::var_os("PHAROS_E2E_KEEP").is_some() { let _ = dir.keep(); None } else { Some(dir) };
    Setup { _dir: dir, broker_addr: broker.addr.clone(), _broker: broker, pharos, agent, expo, log_file }
}

async fn query(p: &Pharos, q: &str) -> serde_json::Value {
    let (status, body) = p.get_json(&format!("/api/v1/query?query={}", enc(q))).await;
    assert_eq!(status, 200, "{q}: {body}");
    body
}

async fn lines(p: &Pharos, selector: &str) -> Vec<String> {
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let start = now_ns - 3_600_000_000_000;
    let (status, body) = p
        .get_json(&format!(
            "/loki/api/v1/query_range?query={}&start={start}&end={}&limit=5000&direction=forward",
            enc(selector),
            now_ns + 60_000_000_000
        ))
        .await;
    assert_eq!(status, 200, "{selector}: {body}");
    loki_lines(&body)
}

/// The body of a CRI line as the store returns it (the part after `<time> <stream> <tag> `).
fn msg(i: usize) -> String {
    format!("line-{i:05} GET /api/v1/payments/{i} 200 {}ms", i % 97)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_values_and_lines_come_back_through_kafka() {
    let mut s = setup().await;
    append_lines(&s.log_file, &(1..=20).map(|i| cri_line(&msg(i))).collect::<Vec<_>>());

    // The gauge's exact value, with identity labels from the agent and the tricky label intact.
    let sel = format!("pharos_test_gauge{{case=\"e2e\", tricky={:?}}}", TRICKY_VALUE);
    let v = wait_for_async("the gauge to be queryable", Duration::from_secs(90), || {
        let (p, sel) = (&s.pharos, &sel);
        async move {
            let r = query(p, sel).await;
            let r = r["data"]["result"].as_array().cloned().unwrap_or_default();
            (!r.is_empty()).then_some(r)
        }
    })
    .await;
    s.agent.assert_running();
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["value"][1], "42.5");
    let m = &v[0]["metric"];
    assert_eq!((m["cluster"].as_str(), m["node"].as_str()), (Some("e2e"), Some("node-1")), "{m}");
    assert_eq!((m["job"].as_str(), m["tricky"].as_str()), (Some("exposition"), Some(TRICKY_VALUE)), "{m}");

    // A new gauge value replaces the old one.
    s.expo.set_gauge(-7.25);
    wait_for_async("the new gauge value", Duration::from_secs(30), || {
        let (p, sel) = (&s.pharos, &sel);
        async move { (prom_values(&query(p, sel).await).first().map(|v| v.1.clone()) == Some("-7.25".into())).then_some(()) }
    })
    .await;

    // Histogram series arrive as Prometheus stores them.
    let r = query(&s.pharos, "pharos_test_latency_seconds_bucket{le=\"+Inf\"}").await;
    assert_eq!(prom_values(&r).first().map(|v| v.1.as_str()), Some("5"), "{r}");
    // HELP/TYPE of the exposition travel through Kafka too (already there with the first scrape).
    let (_, md) = s.pharos.get_json("/api/v1/metadata?metric=pharos_test_latency_seconds").await;
    assert_eq!(md["data"]["pharos_test_latency_seconds"][0]["type"], "histogram", "{md}");
    assert_eq!(md["data"]["pharos_test_latency_seconds"][0]["help"], "Request latency \\ in seconds.", "{md}");

    // Every line, exactly, with identity from the pod path.
    let expected: Vec<String> = std::iter::once("line-00000 service starting".to_string()).chain((1..=20).map(msg)).collect();
    let got = wait_for_async("all 21 lines", Duration::from_secs(30), || {
        let p = &s.pharos;
        async move {
            let l = lines(p, "{namespace=\"payments\", pod=\"api-7d9f\", container=\"api\"}").await;
            (l.len() >= 21).then_some(l)
        }
    })
    .await;
    assert_eq!(got, expected);
    let filtered = lines(&s.pharos, "{namespace=\"payments\"} |= \"/payments/1\" != \"line-00010\"").await;
    let want: Vec<String> = [1, 11, 12, 13, 14, 15, 16, 17, 18, 19].into_iter().map(msg).collect();
    assert_eq!(filtered, want, "line filters");

    // Trino's Kafka event listener topic: a QueryCompletedEvent becomes trino_query_* samples.
    let end = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let event = format!(
        r#"{{"metadata": {{"queryId": "20261122_1_00001_e2e", "queryState": "FINISHED"}},
            "context": {{"user": "bob", "source": "superset", "clientTags": ["team=finance"], "resourceGroupId": ["global", "bi"]}},
            "statistics": {{"cpuTime": "PT1M2.5S", "wallTime": "PT3S", "peakUserMemoryBytes": 1048576,
                           "cumulativeMemory": 2.5E9, "totalBytes": 5242880, "outputBytes": 2048}},
            "createTime": "{end}", "endTime": "{end}"}}"#
    );
    let producer: rdkafka::producer::FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &s.broker_addr).create().unwrap();
    producer
        .send(rdkafka::producer::FutureRecord::to("trino.events").key("coordinator").payload(&event), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let q = "trino_query_cpu_seconds{trino_query_id=\"20261122_1_00001_e2e\"}";
    let r = wait_for_async("the Trino query", Duration::from_secs(60), || {
        let p = &s.pharos;
        async move {
            let r = query(p, q).await["data"]["result"].as_array().cloned().unwrap_or_default();
            (!r.is_empty()).then_some(r)
        }
    })
    .await;
    assert_eq!(r[0]["value"][1], "62.5", "PT1M2.5S of CPU");
    let m = &r[0]["metric"];
    assert_eq!((m["trino_user"].as_str(), m["team"].as_str(), m["trino_resource_group"].as_str()), (Some("bob"), Some("finance"), Some("global.bi")), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_sigkilled_mid_stream_loses_and_duplicates_nothing() {
    let mut s = setup().await;
    // Start killing only once data flows end to end (consumer group joined, agent scraping).
    wait_for_async("the first scrape to be queryable", Duration::from_secs(90), || {
        let p = &s.pharos;
        async move { (!prom_values(&query(p, "pharos_test_scrapes_total").await).is_empty()).then_some(()) }
    })
    .await;
    let mut next = 1usize;
    // Kill at different moments relative to appends and flushes (flush interval 400 ms).
    for (round, delay_ms) in [0u64, 150, 450, 900, 1700].into_iter().enumerate() {
        // Each kill hits a collector that is consuming and has published at least once.
        let started = std::time::Instant::now();
        wait_for_async("the restarted collector to consume and publish", Duration::from_secs(90), || {
            let p = &s.pharos;
            async move {
                let consumed = p.own_metric("pharos_collector_kafka_messages_total").await;
                let flushed = p.own_metric("pharos_collector_flushes_total").await;
                (consumed > 0.0 && flushed > 0.0).then_some(())
            }
        })
        .await;
        let batch: Vec<String> = (next..next + 40).map(|i| cri_line(&msg(i))).collect();
        next += 40;
        append_lines(&s.log_file, &batch);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await; // choosing the kill moment, not waiting on a result
        s.pharos.kill9_and_restart().await;
        s.agent.assert_running();
        eprintln!(
            "round {round}: consuming after {:?}; killed {delay_ms} ms after appending; scrapes served so far: {}",
            started.elapsed(),
            s.expo.served()
        );
    }
    // Keep the agent sending for a while after the last restart, then stop the target.
    let after = s.expo.served() + 10;
    wait_for("10 more scrapes", Duration::from_secs(60), || (s.expo.served() >= after).then_some(()));
    let n = s.expo.go_down();
    let total_lines = next - 1;

    let sel = "pharos_test_scrapes_total{case=\"e2e\"}[1h]".to_string();
    let values = wait_for_async("every scrape to arrive", Duration::from_secs(120), || {
        let (p, sel) = (&s.pharos, &sel);
        async move {
            let v: Vec<(f64, String)> =
                prom_values(&query(p, sel).await).into_iter().filter(|(_, v)| v != "NaN").collect();
            (v.len() as u64 >= n).then_some(v)
        }
    })
    .await;
    let got: Vec<u64> = values.iter().map(|(_, v)| v.parse::<f64>().unwrap() as u64).collect();
    let expected: Vec<u64> = (1..=n).collect();
    assert_eq!(got, expected, "every scrape exactly once, in order");
    assert!(values.windows(2).all(|w| w[0].0 < w[1].0), "timestamps strictly increase");

    let got = wait_for_async("every line", Duration::from_secs(60), || {
        let p = &s.pharos;
        async move {
            let l = lines(p, "{namespace=\"payments\"}").await;
            (l.len() > total_lines).then_some(l)
        }
    })
    .await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for l in &got {
        *counts.entry(l.clone()).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dupes.is_empty(), "duplicated lines: {dupes:?}");
    let expected: Vec<String> = std::iter::once("line-00000 service starting".to_string()).chain((1..=total_lines).map(msg)).collect();
    assert_eq!(got, expected, "every line exactly once, in order");
    s.agent.assert_running();
}
