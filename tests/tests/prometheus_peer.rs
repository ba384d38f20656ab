//! A real Prometheus 2.42 (Debian package `prometheus`) scrapes a real `prometheus-node-exporter`
//! every second and remote-writes to Pharos; then Pharos and that Prometheus must answer the same
//! range queries with the same series, timestamps and values, the same `/api/v1/metadata`
//! for node-exporter's metric families, and the same `/api/v1/query_exemplars` for an OpenMetrics
//! target whose counter carries a new exemplar at every scrape. Last, a second Prometheus reads
//! Pharos through `remote_read` and must answer the range queries as the first one does, and
//! Pharos' `/federate` must agree with Prometheus' and be scraped by a third one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use pharos_e2e::*;
use serde_json::Value;

/// The range queries compared (raw counters and gauges, rate, aggregations, synthetic `up`).
const QUERIES: &[&str] = &[
    "node_cpu_seconds_total",
    "rate(node_cpu_seconds_total[5s])",
    "irate(node_cpu_seconds_total[5s])",
    "increase(node_cpu_seconds_total[5s])",
    "sum by (mode) (rate(node_cpu_seconds_total[5s]))",
    "avg without (cpu) (rate(node_cpu_seconds_total{mode!=\"idle\"}[3s]))",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
    "deriv(node_memory_MemAvailable_bytes[5s])",
    "max_over_time(node_load1[4s])",
    "up",
    "count by (job) (up)",
    "node_network_receive_bytes_total",
    "rate(node_network_receive_bytes_total[5s])",
    "topk(3, node_cpu_seconds_total)",
    "scrape_samples_scraped",
    "delta(node_load1[5s])",
    "changes(node_memory_MemFree_bytes[5s])",
    "resets(node_cpu_seconds_total[5s])",
    "quantile_over_time(0.5, node_memory_Active_bytes[5s])",
    "predict_linear(node_memory_MemAvailable_bytes[5s], 60)",
    "node_cpu_seconds_total offset 2s",
    // 4500ms, not 5s: see VERSION_DIFFERENCES.
    "max_over_time(rate(node_cpu_seconds_total{mode=\"user\"}[3s])[4500ms:1s])",
    "label_replace(up, \"port\", \"$1\", \"instance\", \".*:(.*)\")",
    "prometheus_http_requests_total",
    "stddev by (mode) (rate(node_cpu_seconds_total[5s]))",
    "count_values(\"v\", up)",
    "node_procs_running > 0",
    "scrape_duration_seconds > bool 0.5",
    "histogram_quantile(0.9, prometheus_http_request_duration_seconds_bucket)",
    "histogram_quantile(0.5, sum by (le) (prometheus_http_response_size_bytes_bucket))",
    "deg(atan(node_load1))",
];

/// Queries where Pharos follows current Prometheus and so may differ from this Prometheus 2.42
/// (checked by hand: both are the newer semantics, not Pharos bugs); the differences are printed,
/// not failed on:
/// - `rate` of a counter whose series starts inside the window (here the `/metrics` handler of
///   Prometheus' own `prometheus_http_requests_total`, born with Prometheus): 2.42 limits the
///   extrapolation towards the window start to where the counter would reach zero *before*
///   capping it at half a sample interval, so it extrapolates further; since
///   prometheus/prometheus#13725 (March 2024) the cap comes first (e.g. 0.3124 vs 0.4124 for
///   samples 1, 2 at t-1.062 s, t-0.062 s in a 5 s window).
/// - range windows: 2.42's is closed `[t-r, t]`, Prometheus 3's (and Pharos') left-open
///   `(t-r, t]`. A subquery `[5s:1s]` evaluated at a whole second has a step-aligned point exactly
///   on `t - 5s`, which only 2.42 counts. The compared range is evaluated off the scrape phases
///   (see below), so plain range selectors and `[4500ms:1s]` never hit this.
const VERSION_DIFFERENCES: &[&str] = &[
    "sum(rate(prometheus_http_requests_total[5s])) by (code)",
    "max_over_time(rate(node_cpu_seconds_total{mode=\"user\"}[3s])[5s:1s])",
    "histogram_quantile(0.9, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[5s])))",
];

type Key = BTreeMap<String, String>;
type Matrix = BTreeMap<Key, Vec<(i64, String)>>;

async fn get_json(base: &str, path: &str) -> Value {
    let r = reqwest::Client::new().get(format!("{base}{path}")).send().await.expect("GET");
    let text = r.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// `/api/v1/query_range` answer as series → [(ms, value)]; panics on an error answer.
async fn range(base: &str, q: &str, start: f64, end: f64, step: i64) -> Matrix {
    let a = get_json(base, &format!("/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}", enc(q))).await;
    assert_eq!(a["status"], "success", "{base} query_range {q}: {a}");
    let mut out = Matrix::new();
    for s in a["data"]["result"].as_array().expect("matrix") {
        let key: Key = s["metric"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
        let vals = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| ((p[0].as_f64().unwrap() * 1000.0).round() as i64, p[1].as_str().unwrap().to_string()))
            .collect();
        out.insert(key, vals);
    }
    out
}

/// Series with a raw sample later than `end` (s), from a range-vector instant query, which
/// returns raw samples with their timestamps and names.
async fn fresh_series(base: &str, end: f64) -> BTreeSet<Key> {
    let a = get_json(base, &format!("/api/v1/query?query={}", enc("{__name__=~\".+\"}[30s]"))).await;
    let mut have = BTreeSet::new();
    for s in a["data"]["result"].as_array().into_iter().flatten() {
        let last = s["values"].as_array().and_then(|v| v.last()).and_then(|p| p[0].as_f64()).unwrap_or(0.0);
        if last > end {
            have.insert(s["metric"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect());
        }
    }
    have
}

fn same_value(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) else { return false };
    if x.is_nan() && y.is_nan() {
        return true;
    }
    if x == y {
        return true;
    }
    (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
}

/// Differences between two matrices, as human-readable lines (empty when they agree).
fn diff(prom: &Matrix, pharos: &Matrix) -> Vec<String> {
    let mut out = Vec::new();
    for k in prom.keys().filter(|k| !pharos.contains_key(*k)) {
        out.push(format!("only in Prometheus: {k:?}"));
    }
    for k in pharos.keys().filter(|k| !prom.contains_key(*k)) {
        out.push(format!("only in Pharos: {k:?}"));
    }
    for (k, pv) in prom {
        let Some(xv) = pharos.get(k) else { continue };
        let pts: BTreeSet<i64> = pv.iter().map(|p| p.0).collect();
        let xts: BTreeSet<i64> = xv.iter().map(|p| p.0).collect();
        if pts != xts {
            out.push(format!("{k:?}: timestamps differ: Prometheus {pts:?}, Pharos {xts:?}"));
            continue;
        }
        for ((t, a), (_, b)) in pv.iter().zip(xv) {
            if !same_value(a, b) {
                out.push(format!("{k:?} @{t}: Prometheus {a}, Pharos {b}"));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_and_pharos_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let pharos = Pharos::serve(logs, &["--data-dir", dir.path().join("pharos-data").to_str().unwrap()]).await;
    let pharos_base = format!("http://{}", pharos.addr);

    // node-exporter with a few cheap, unprivileged collectors.
    let ne_port = free_port();
    let mut cmd = Command::new("prometheus-node-exporter");
    cmd.arg(format!("--web.listen-address=127.0.0.1:{ne_port}")).arg("--collector.disable-defaults");
    for c in ["cpu", "meminfo", "netdev", "loadavg", "stat"] {
        cmd.arg(format!("--collector.{c}"));
    }
    let mut node_exporter = Proc::spawn("node-exporter", cmd, logs);
    let ne_addr: SocketAddr = format!("127.0.0.1:{ne_port}").parse().unwrap();
    wait_for("node-exporter to listen", Duration::from_secs(30), || {
        node_exporter.assert_running();
        port_open(ne_addr).then_some(())
    });

    // An OpenMetrics target (exemplars are only parsed from OpenMetrics): a counter with a new
    // exemplar, without a timestamp (Prometheus gives it the scrape's), at every scrape.
    let scrapes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let exemplar_app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let n = scrapes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            async move {
                let body = format!(
                    "# TYPE peer_requests counter\n# HELP peer_requests Requests, each scrape with an exemplar.\n\
                     peer_requests_total{{path=\"/a\"}} {n} # {{trace_id=\"trace-{n}\"}} {}\n# EOF\n",
                    n as f64 / 4.0
                );
                ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
            }
        }),
    );
    let exemplar_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let exemplar_port = exemplar_listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(exemplar_listener, exemplar_app).await });

    // Prometheus scraping node-exporter, the exemplar target and itself every second,
    // remote-writing samples and exemplars to Pharos.
    let prom_port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{ne_port}']\n\
         \x20 - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{prom_port}']\n\
         \x20 - job_name: exemplars\n    static_configs:\n      - targets: ['127.0.0.1:{exemplar_port}']\n\
         remote_write:\n  - url: {pharos_base}/api/v1/write\n    send_exemplars: true\n    queue_config:\n      batch_send_deadline: 1s\n      \
         max_samples_per_send: 2000\n      min_backoff: 50ms\n      max_backoff: 1s\n    \
         metadata_config:\n      send_interval: 1s\n"
    );
    let mut prometheus = spawn_prometheus("prometheus", dir.path(), &config, prom_port, &["--enable-feature=exemplar-storage"]);
    let prom_base = format!("http://127.0.0.1:{prom_port}");

    // Wait until Prometheus holds ≥ 18 scrapes of node-exporter (≈ 18 s of data).
    let mut n_scrapes = 0.0;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while n_scrapes < 18.0 {
        prometheus.assert_running();
        node_exporter.assert_running();
        assert!(std::time::Instant::now() < deadline, "Prometheus did not get 18 scrapes; log:\n{}", prometheus.log_tail());
        if port_open(format!("127.0.0.1:{prom_port}").parse().unwrap()) {
            let v = get_json(&prom_base, &format!("/api/v1/query?query={}", enc("count_over_time(up{job=\"node\"}[1m])"))).await;
            n_scrapes = v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse().ok()).unwrap_or(0.0);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every sample of a target carries that target's scrape timestamp, whose millisecond phase is
    // fixed. Evaluate at a phase at least 100 ms away from every target's, so that no sample sits
    // exactly on a window boundary `t - range`, where Prometheus 2.42 (closed `[t-r, t]`) and
    // Prometheus 3/Pharos (left-open `(t-r, t]`) legitimately differ.
    let ups = get_json(&prom_base, &format!("/api/v1/query?query={}", enc("up[5s]"))).await;
    let phases: Vec<i64> = ups["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["values"][0][0].as_f64().unwrap() * 1000.0).round() as i64 % 1000)
        .collect();
    // Phase 500 is excluded too: the subquery `[4500ms:1s]` would then start exactly on one of
    // its whole-second inner steps, the same boundary difference.
    let circ = |a: i64, b: i64| ((a - b).rem_euclid(1000)).min((b - a).rem_euclid(1000));
    let phase = (0..20)
        .map(|i| i * 50)
        .filter(|c| *c != 500)
        .max_by_key(|c| phases.iter().map(|p| circ(*c, *p)).min().unwrap_or(1000))
        .unwrap();
    assert!(phases.iter().all(|p| circ(phase, *p) >= 100), "scrape phases {phases:?}");
    let end = (chrono::Utc::now().timestamp() - 5) as f64 + phase as f64 / 1000.0;
    let start = end - 10.0;
    let step = 1;

    // Remote-write lag: wait until Pharos has, for every series Prometheus has a sample of after
    // `end`, a sample after `end` too (remote write sends each series in order).
    let want = fresh_series(&prom_base, end).await;
    assert!(want.len() > 50, "Prometheus has only {} series", want.len());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let have = fresh_series(&pharos_base, end).await;
        let missing: Vec<&Key> = want.iter().filter(|w| !have.contains(*w)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Pharos still lacks samples after {end:.3} for {} of {} series, e.g. {:?}; pharos log:\n{}",
            missing.len(),
            want.len(),
            missing[0],
            pharos.proc.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut failures = Vec::new();
    println!("range [{start:.3}, {end:.3}] step {step}s (scrape phases {phases:?} ms), {} series written by Prometheus:", want.len());
    for q in QUERIES {
        let p = range(&prom_base, q, start, end, step).await;
        let x = range(&pharos_base, q, start, end, step).await;
        let points: usize = p.values().map(Vec::len).sum();
        let d = diff(&p, &x);
        if d.is_empty() {
            println!("  same  {q}: {} series, {points} points", p.len());
        } else {
            println!("  DIFF  {q}: {} differences, e.g. {}", d.len(), d[..d.len().min(3)].join("; "));
            failures.push(format!("{q}: {}", d[..d.len().min(5)].join("; ")));
        }
        assert!(points > 0, "{q}: Prometheus returned no points");
    }
    for q in VERSION_DIFFERENCES {
        let d = diff(&range(&prom_base, q, start, end, step).await, &range(&pharos_base, q, start, end, step).await);
        let e = if d.is_empty() { String::new() } else { format!(", e.g. {}", d[0]) };
        println!("  2.42≠now  {q}: {} differences (expected: 2.42 vs current Prometheus semantics){e}", d.len());
    }
    assert!(failures.is_empty(), "Pharos and Prometheus differ:\n{}", failures.join("\n"));

    // Metadata: Prometheus remote-writes its targets' HELP/TYPE/UNIT every second
    // (`metadata_config.send_interval`). node-exporter's families are what its target exposes.
    let targets = get_json(&prom_base, &format!("/api/v1/targets/metadata?match_target={}", enc("{job=\"node\"}"))).await;
    let families: BTreeSet<String> = targets["data"]
        .as_array()
        .unwrap_or_else(|| panic!("targets/metadata: {targets}"))
        .iter()
        .map(|m| m["metric"].as_str().unwrap().to_string())
        .collect();
    assert!(families.contains("node_cpu_seconds_total") && families.len() > 10, "{families:?}");
    let prom_md = metadata_of(&get_json(&prom_base, "/api/v1/metadata").await, &families);
    let cpu = &prom_md["node_cpu_seconds_total"];
    assert!(cpu.len() == 1 && cpu.iter().all(|(t, help, _)| t == "counter" && !help.is_empty()), "{cpu:?}");
    let pharos_md = wait_for_async("Pharos to hold metadata of every node-exporter family", Duration::from_secs(60), || {
        let (base, families) = (&pharos_base, &families);
        async move {
            let md = metadata_of(&get_json(base, "/api/v1/metadata").await, families);
            md.values().all(|entries| !entries.is_empty()).then_some(md)
        }
    })
    .await;
    assert_eq!(pharos_md, prom_md, "Pharos' /api/v1/metadata differs from Prometheus'");
    let one = get_json(&pharos_base, "/api/v1/metadata?metric=node_cpu_seconds_total").await;
    assert_eq!(metadata_of(&one, &BTreeSet::from(["node_cpu_seconds_total".to_string()]))["node_cpu_seconds_total"], *cpu);
    assert_eq!(one["data"].as_object().map(|o| o.len()), Some(1), "{one}");
    println!("metadata: {} node-exporter families alike, e.g. node_cpu_seconds_total {cpu:?}", families.len());

    // Per target: Pharos lists a family for a target that has series of it. Every entry it
    // gives is Prometheus', and every family Prometheus lists that Pharos does not has no
    // series of the target in Pharos (a family exposed without samples).
    let entries = |answer: &Value| -> BTreeSet<(String, String, String, String, String)> {
        let field = |e: &Value, k: &str| e[k].as_str().unwrap_or_else(|| panic!("{k} in {e}")).to_string();
        answer["data"]
            .as_array()
            .unwrap_or_else(|| panic!("targets/metadata: {answer}"))
            .iter()
            .map(|e| (e["target"].to_string(), field(e, "metric"), field(e, "type"), field(e, "help"), field(e, "unit")))
            .collect()
    };
    let prom_entries = entries(&targets);
    let pharos_targets = get_json(&pharos_base, &format!("/api/v1/targets/metadata?match_target={}", enc("{job=\"node\"}"))).await;
    let pharos_entries = entries(&pharos_targets);
    let extra: Vec<_> = pharos_entries.difference(&prom_entries).collect();
    assert!(extra.is_empty(), "Pharos' targets/metadata has entries Prometheus' has not: {extra:?}");
    let listed: BTreeSet<&String> = pharos_entries.iter().map(|e| &e.1).collect();
    let missing: Vec<&String> = families.iter().filter(|f| !listed.contains(f)).collect();
    for f in &missing {
        let names = format!("{{__name__=~\"{f}(_total|_bucket|_sum|_count|_created|_info)?\",job=\"node\"}}");
        let series = get_json(&pharos_base, &format!("/api/v1/series?match[]={}", enc(&names))).await;
        assert_eq!(series["data"], serde_json::json!([]), "Prometheus lists {f} for the node target, Pharos has its series but does not: {series}");
    }
    assert!(listed.contains(&"node_cpu_seconds_total".to_string()), "{pharos_targets}");
    println!("targets/metadata: {} entries alike, {} families Prometheus lists without series", pharos_entries.len(), missing.len());

    // Exemplars: Prometheus stored one per scrape of the OpenMetrics target and remote-wrote
    // them; Pharos must answer `/api/v1/query_exemplars` over the compared range as Prometheus
    // does (series labels, exemplar labels, values and timestamps).
    let path = format!("/api/v1/query_exemplars?query={}&start={start}&end={end}", enc("rate(peer_requests_total[1m])"));
    let prom_ex = get_json(&prom_base, &path).await;
    let n = prom_ex["data"][0]["exemplars"].as_array().map_or(0, Vec::len);
    assert!(n >= 5, "Prometheus holds {n} exemplars in the 10 s range: {prom_ex}");
    assert_eq!(prom_ex["data"][0]["seriesLabels"]["job"], "exemplars", "{prom_ex}");
    let pharos_ex = wait_for_async("Pharos to hold Prometheus' exemplars", Duration::from_secs(30), || {
        let (base, path, want) = (&pharos_base, &path, &prom_ex["data"]);
        async move {
            let got = get_json(base, path).await;
            (got["data"] == *want).then_some(got)
        }
    })
    .await;
    println!("exemplars: {n} alike, e.g. {}", pharos_ex["data"][0]["exemplars"][0]);

    // `/api/v1/format_query`: the same text as Prometheus' formatter, short and long queries.
    for q in [
        r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle",job="node"}[5m])) / on (instance) group_left count by (instance) (node_cpu_seconds_total{mode="idle"})"#,
        "sum(rate(x[5m]))by(job)",
        r#"topk(5, rate(http_requests_total{job=~"api|web", code!~"2.."}[5m] offset 1h)) > bool 3"#,
        r#"histogram_quantile(0.99, sum by (le, job) (rate(prometheus_http_request_duration_seconds_bucket{handler="/api/v1/query_range", job="prometheus"}[5m])))"#,
        r#"label_replace(up{job="node"}, "host", "$1", "instance", "(.*):.*") or vector(1)"#,
        "max_over_time(deriv(node_memory_MemAvailable_bytes[10m])[1h:1m] @ 1700000000)",
    ] {
        let path = format!("/api/v1/format_query?query={}", enc(q));
        let (prom, ours) = (get_json(&prom_base, &path).await, get_json(&pharos_base, &path).await);
        assert_eq!(prom["status"], "success", "{q}: {prom}");
        assert_eq!(ours["data"], prom["data"], "format_query of {q}");
    }

    // Remote read: a second Prometheus 2.42, with no data of its own, reads Pharos through
    // `remote_read`. Its engine is the first one's, so over the samples Pharos hands back it
    // must answer every compared query exactly as the first one does, the queries whose 2.42
    // semantics Pharos does not share included.
    let reader_port = free_port();
    let reader_cfg = format!("global:\n  scrape_interval: 1s\nremote_read:\n  - url: {pharos_base}/api/v1/read\n    read_recent: true\n");
    let mut reader = spawn_prometheus("prometheus-reader", dir.path(), &reader_cfg, reader_port, &[]);
    let reader_base = format!("http://127.0.0.1:{reader_port}");
    wait_for_async("the reading Prometheus to be ready", Duration::from_secs(60), || {
        reader.assert_running();
        let url = format!("{reader_base}/-/ready");
        async move { reqwest::get(&url).await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
    })
    .await;
    let mut read_failures = Vec::new();
    for q in QUERIES.iter().chain(VERSION_DIFFERENCES) {
        let (p, r) = (range(&prom_base, q, start, end, step).await, range(&reader_base, q, start, end, step).await);
        let d = diff(&p, &r);
        println!("  remote read {}  {q}: {} series", if d.is_empty() { "same" } else { "DIFF" }, r.len());
        if !d.is_empty() {
            read_failures.push(format!("{q}: {} (\"Pharos\" = the reader)", d[..d.len().min(5)].join("; ")));
        }
    }
    reader.assert_running();
    assert!(read_failures.is_empty(), "a Prometheus reading Pharos answers differently:\n{}", read_failures.join("\n"));

    // Streamed remote read (`STREAMED_XOR_CHUNKS`, what Thanos' sidecar asks for): Prometheus'
    // answer from its own TSDB and Pharos' decode to the same samples of node-exporter's series
    // in [start, end], and each chunk Prometheus sends, decoded and encoded again by Pharos'
    // encoder, gives Prometheus' bytes.
    let (start_ms, end_ms) = ((start * 1000.0).round() as i64, (end * 1000.0).round() as i64);
    let prom_stream = streamed_read(&prom_base, start_ms, end_ms).await;
    let pharos_stream = streamed_read(&pharos_base, start_ms, end_ms).await;
    let in_range = |frames: &[pharos_model::remote_read::ChunkedReadResponse]| {
        let mut out: BTreeMap<Key, Vec<(i64, u64)>> = BTreeMap::new();
        for s in frames.iter().flat_map(|f| &f.chunked_series) {
            let key: Key = s.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
            for c in &s.chunks {
                let samples = pharos_model::xor_chunk::decode(&c.data).unwrap_or_else(|e| panic!("{key:?}: {e}"));
                let kept = samples.iter().filter(|(t, _)| (start_ms..=end_ms).contains(t));
                out.entry(key.clone()).or_default().extend(kept.map(|(t, v)| (*t, v.to_bits())));
            }
        }
        out.retain(|_, samples| !samples.is_empty());
        out
    };
    let (prom_samples, pharos_samples) = (in_range(&prom_stream), in_range(&pharos_stream));
    assert!(prom_samples.len() > 50, "Prometheus streamed {} series", prom_samples.len());
    assert_eq!(pharos_samples.keys().collect::<Vec<_>>(), prom_samples.keys().collect::<Vec<_>>(), "series streamed");
    for (key, samples) in &prom_samples {
        assert_eq!(&pharos_samples[key], samples, "streamed samples of {key:?} (timestamp, value bits)");
    }
    let mut chunks = 0;
    for c in prom_stream.iter().flat_map(|f| &f.chunked_series).flat_map(|s| &s.chunks) {
        assert_eq!(c.r#type, pharos_model::remote_read::ChunkEncoding::Xor as i32);
        let mut ours = pharos_model::xor_chunk::XorChunk::new();
        for (t, v) in pharos_model::xor_chunk::decode(&c.data).unwrap() {
            ours.append(t, v);
        }
        assert!(same_chunk_bits(&ours, &c.data), "Prometheus' chunk {:02x?}, Pharos' encoding {:02x?}", c.data, ours.bytes());
        chunks += 1;
    }
    println!("streamed remote read: {} series alike, {chunks} of Prometheus' chunks re-encoded to its bytes", prom_samples.len());

    // Federation: Pharos' `/federate` has the families and series Prometheus' own has, and each
    // of its samples is one of the raw samples Prometheus holds (Pharos may be a scrape or two
    // behind).
    let federate = |base: String| async move {
        let path = format!("{base}/federate?match[]={}", enc("{job=\"node\"}"));
        let r = reqwest::get(&path).await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
        parse_exposition(&r.text().await.unwrap())
    };
    let (prom_types, prom_fed) = federate(prom_base.clone()).await;
    let (pharos_types, pharos_fed) = federate(pharos_base.clone()).await;
    assert!(prom_fed.len() > 50, "Prometheus federates {} series", prom_fed.len());
    assert_eq!(pharos_types, prom_types, "# TYPE lines of /federate");
    assert_eq!(pharos_fed.keys().collect::<Vec<_>>(), prom_fed.keys().collect::<Vec<_>>(), "series of /federate");
    let raw = get_json(&prom_base, &format!("/api/v1/query?query={}", enc("{job=\"node\"}[2m]"))).await;
    let mut held: BTreeMap<Key, BTreeMap<i64, String>> = BTreeMap::new();
    for s in raw["data"]["result"].as_array().expect("matrix") {
        let key: Key = s["metric"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
        let points = s["values"].as_array().unwrap().iter();
        held.insert(key, points.map(|p| ((p[0].as_f64().unwrap() * 1000.0).round() as i64, p[1].as_str().unwrap().to_string())).collect());
    }
    for (series, (value, t)) in &pharos_fed {
        let prom_value = held.get(series).and_then(|points| points.get(t));
        assert!(
            prom_value.is_some_and(|p| same_value(p, value)),
            "Pharos federates {series:?} {value} @{t}; Prometheus holds {prom_value:?} then"
        );
    }
    // Where both answer the same sample, the text is the same (Go's float formatting). Pharos
    // lags a scrape or two behind: take Prometheus' answer, then ask Pharos until it has caught
    // up with those samples (or passed them; then start over).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let same_text = 'outer: loop {
        assert!(std::time::Instant::now() < deadline, "Pharos' /federate never answered a sample Prometheus' did");
        let (_, prom_now) = federate(prom_base.clone()).await;
        loop {
            let (_, pharos_now) = federate(pharos_base.clone()).await;
            let same: Vec<_> = pharos_now.iter().filter(|(k, (_, t))| prom_now.get(*k).is_some_and(|p| p.1 == *t)).collect();
            if !same.is_empty() {
                for (k, (value, _)) in &same {
                    assert_eq!(value, &prom_now[*k].0, "{k:?}");
                }
                break 'outer same.len();
            }
            if pharos_now.iter().all(|(k, (_, t))| prom_now.get(k).is_none_or(|p| *t > p.1)) {
                continue 'outer;
            }
            assert!(std::time::Instant::now() < deadline, "Pharos' /federate did not catch up with Prometheus'");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    println!("federate: {} series in {} families alike ({same_text} with the same sample, as the same text)", pharos_fed.len(), pharos_types.len());

    // And a Prometheus federating from Pharos reads those series (`honor_labels`, as
    // federation is set up).
    let fed_port = free_port();
    let fed_cfg = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: federate\n    honor_labels: true\n    metrics_path: /federate\n    \
         params:\n      'match[]': ['{{job=\"node\"}}']\n    static_configs:\n      - targets: ['{}']\n",
        pharos.addr
    );
    let mut federator = spawn_prometheus("prometheus-federator", dir.path(), &fed_cfg, fed_port, &[]);
    let fed_base = format!("http://127.0.0.1:{fed_port}");
    let scraped = wait_for_async("the federating Prometheus to scrape Pharos", Duration::from_secs(60), || {
        federator.assert_running();
        let (base, listening) = (fed_base.clone(), port_open(format!("127.0.0.1:{fed_port}").parse().unwrap()));
        async move {
            if !listening {
                return None;
            }
            let v = get_json(&base, &format!("/api/v1/query?query={}", enc("scrape_samples_scraped{job=\"federate\"} and up == 1"))).await;
            v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse::<f64>().ok())
        }
    })
    .await;
    assert_eq!(scraped as usize, pharos_fed.len(), "samples the federating Prometheus scraped from Pharos");
    let series = get_json(&fed_base, &format!("/api/v1/series?match[]={}", enc("{job=\"node\"}"))).await;
    let got: BTreeSet<Key> = series["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect())
        .collect();
    assert_eq!(got, pharos_fed.keys().cloned().collect::<BTreeSet<_>>(), "series the federating Prometheus holds");
}

/// The frames of a `STREAMED_XOR_CHUNKS` remote read of `{job="node"}` over `[start_ms, end_ms]`
/// from the server at `base`. Prometheus sends its open head chunks as they are while it appends
/// to them, so a chunk may announce a sample its bytes do not hold yet: such an answer is asked
/// for again.
async fn streamed_read(base: &str, start_ms: i64, end_ms: i64) -> Vec<pharos_model::remote_read::ChunkedReadResponse> {
    use pharos_model::remote_read::{self as rr, Matcher, MatcherType, Query, ReadRequest, ResponseType};
    let body = rr::encode_request(&ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: start_ms,
            end_timestamp_ms: end_ms,
            matchers: vec![Matcher { r#type: MatcherType::Eq as i32, name: "job".into(), value: "node".into() }],
            hints: None,
        }],
        accepted_response_types: vec![ResponseType::StreamedXorChunks as i32],
    });
    let client = reqwest::Client::new();
    let mut last_error = String::new();
    for _ in 0..5 {
        let r = client
            .post(format!("{base}/api/v1/read"))
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .header("x-prometheus-remote-read-version", "0.1.0")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{base}: streamed remote read: {}", r.status());
        assert_eq!(r.headers()["content-type"], rr::STREAMED_CONTENT_TYPE, "{base}");
        let frames = rr::read_frames(&r.bytes().await.unwrap()).unwrap_or_else(|e| panic!("{base}: {e}"));
        let undecodable = frames
            .iter()
            .flat_map(|f| &f.chunked_series)
            .flat_map(|s| &s.chunks)
            .find_map(|c| pharos_model::xor_chunk::decode(&c.data).err());
        match undecodable {
            None => return frames,
            Some(e) => last_error = e.to_string(),
        }
    }
    panic!("{base}: every streamed answer held a chunk that does not decode: {last_error}");
}

/// Whether Pharos' encoding `ours` of the samples of Prometheus' chunk `theirs` is the same
/// bits. Prometheus sends its open head chunk as it is while it appends to it, and counts a
/// sample only once the sample is written, so `theirs` may go on after the bits of the samples
/// it counts: in the unused low bits of Pharos' last byte and in further bytes. Every bit Pharos
/// wrote must be there.
fn same_chunk_bits(ours: &pharos_model::xor_chunk::XorChunk, theirs: &[u8]) -> bool {
    let ours_bytes = ours.bytes();
    let n = ours_bytes.len();
    let mask = 0xffu8 << (8 - ours.bits_used_in_last_byte());
    theirs.len() >= n && theirs[..n - 1] == ours_bytes[..n - 1] && theirs[n - 1] & mask == ours_bytes[n - 1]
}

/// Starts a Prometheus named `name` (its log, config and data under `dir`) with `config`,
/// listening on `port`.
fn spawn_prometheus(name: &str, dir: &std::path::Path, config: &str, port: u16, extra_args: &[&str]) -> Proc {
    let cfg_path = dir.join(format!("{name}.yml"));
    std::fs::write(&cfg_path, config).unwrap();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join(format!("{name}-data")).display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra_args);
    Proc::spawn(name, cmd, dir)
}

/// A text exposition as federation writes it: the `# TYPE` lines, and per series (labels with
/// `__name__`) its value and timestamp.
fn parse_exposition(text: &str) -> (BTreeSet<String>, BTreeMap<Key, (String, i64)>) {
    let (mut types, mut series) = (BTreeSet::new(), BTreeMap::new());
    for line in text.lines() {
        if line.starts_with('#') {
            types.insert(line.to_string());
            continue;
        }
        let mut parts = line.rsplitn(3, ' ');
        let (t, value, head) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap_or_else(|| panic!("{line}")));
        let (name, labels) = head.split_once('{').map_or((head, ""), |(n, l)| (n, l.strip_suffix('}').unwrap_or_else(|| panic!("{line}"))));
        let mut key = Key::new();
        key.insert("__name__".into(), name.into());
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
            let (mut v, mut chars) = (String::new(), after.char_indices());
            let end = loop {
                match chars.next().unwrap_or_else(|| panic!("{line}")) {
                    (_, '\\') => v.push(match chars.next().unwrap().1 { 'n' => '\n', c => c }),
                    (i, '"') => break i,
                    (_, c) => v.push(c),
                }
            };
            key.insert(k.to_string(), v);
            rest = after[end + 1..].trim_start_matches(',');
        }
        series.insert(key, (value.to_string(), t.parse().unwrap_or_else(|e| panic!("{line}: {e}"))));
    }
    (types, series)
}

/// The `/api/v1/metadata` answer for `families`: per family the set of (type, help, unit)
/// (Prometheus lists a family's entries in no particular order); a missing family is empty.
fn metadata_of(answer: &Value, families: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<(String, String, String)>> {
    assert_eq!(answer["status"], "success", "{answer}");
    let field = |e: &Value, k: &str| e[k].as_str().unwrap_or_else(|| panic!("{k} in {e}")).to_string();
    families
        .iter()
        .map(|f| {
            let entries = answer["data"][f].as_array().into_iter().flatten();
            (f.clone(), entries.map(|e| (field(e, "type"), field(e, "help"), field(e, "unit"))).collect())
        })
        .collect()
}

/// The same remote_write request of native histograms, posted to a real Prometheus 2.42 (with
/// `--enable-feature=native-histograms` and its remote-write receiver) and to Pharos, must come
/// back the same from both: bare selectors (instant and range queries, and a range selector),
/// compared as JSON, histograms with their buckets' bounds and boundary rules. The series cover
/// schemas −2, 0 and 3, negative, zero and positive buckets with gaps between spans, integer
/// and float counts, and a series whose samples turn from floats to histograms; and functions
/// and aggregations over them (`histogram_count`, `histogram_sum`, `sum by`, a sum of two
/// schemas with different zero buckets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_histograms_come_back_as_prometheus_answers_them() {
    use pharos_model::histogram::{FloatHistogram, Span};
    use pharos_model::remote_write::{BucketSpan, Histogram, Label, RemoteSample, TimeSeries, WriteRequest};
    use prost::Message;

    let dir = tempfile::tempdir().unwrap();
    let pharos = Pharos::serve(dir.path(), &["--data-dir", dir.path().join("pharos-data").to_str().unwrap()]).await;
    let pharos_base = format!("http://{}", pharos.addr);
    let prom_port = free_port();
    let mut prometheus = spawn_prometheus(
        "prometheus",
        dir.path(),
        "global:\n  scrape_interval: 1h\n",
        prom_port,
        &["--web.enable-remote-write-receiver", "--enable-feature=native-histograms"],
    );
    let prom_base = format!("http://127.0.0.1:{prom_port}");
    // Ready, not only listening: a Prometheus still opening its TSDB answers 503.
    let ready = format!("{prom_base}/-/ready");
    wait_for_async("Prometheus to be ready", Duration::from_secs(60), || {
        prometheus.assert_running();
        let ready = ready.clone();
        async move { reqwest::get(&ready).await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
    })
    .await;

    // Whole seconds a minute ago, so both heads take them.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let t0 = (now - 60_000) / 1000 * 1000;
    let labels = |name: &str, k: &str| vec![Label { name: "__name__".into(), value: name.into() }, Label { name: "kind".into(), value: k.into() }];
    let float = |schema: i32, n: f64| FloatHistogram {
        schema,
        zero_threshold: 0.001,
        zero_count: 2.0 * n,
        count: 12.0 * n,
        sum: 42.25 * n,
        negative_spans: vec![Span { offset: 1, length: 2 }],
        negative_buckets: vec![1.0 * n, 3.0 * n],
        positive_spans: vec![Span { offset: -2, length: 2 }, Span { offset: 3, length: 1 }],
        positive_buckets: vec![0.5 * n, 1.5 * n, 4.0 * n],
        ..Default::default()
    };
    let int = |t: i64, n: i64| Histogram {
        count_int: Some(6 * n as u64),
        zero_count_int: Some(n as u64),
        sum: 17.5 * n as f64,
        schema: 0,
        positive_spans: vec![BucketSpan { offset: 0, length: 3 }, BucketSpan { offset: 2, length: 1 }],
        // Deltas: counts n, 2n, 0, 2n.
        positive_deltas: vec![n, n, -2 * n, 2 * n],
        timestamp: t,
        ..Default::default()
    };
    let series = vec![
        TimeSeries { labels: labels("peer_latency_seconds", "float"), histograms: (0..6).map(|i| Histogram::float(t0 + i * 10_000, &float(3, (i + 1) as f64))).collect(), ..Default::default() },
        TimeSeries { labels: labels("peer_latency_seconds", "coarse"), histograms: (0..6).map(|i| Histogram::float(t0 + i * 10_000, &float(-2, 1.0))).collect(), ..Default::default() },
        TimeSeries { labels: labels("peer_latency_seconds", "int"), histograms: (0..6).map(|i| int(t0 + i * 10_000, i + 1)).collect(), ..Default::default() },
        TimeSeries {
            labels: labels("peer_latency_seconds", "mixed"),
            samples: (0..3).map(|i| RemoteSample { value: i as f64 * 1.5, timestamp: t0 + i * 10_000 }).collect(),
            histograms: (3..6).map(|i| int(t0 + i * 10_000, 1)).collect(),
        },
    ];
    let body = snap::raw::Encoder::new().compress_vec(&WriteRequest { timeseries: series, ..Default::default() }.encode_to_vec()).unwrap();
    let client = reqwest::Client::new();
    for base in [&prom_base, &pharos_base] {
        let r = client
            .post(format!("{base}/api/v1/write"))
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .header("x-prometheus-remote-write-version", "0.1.0")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(status, 204, "{base}: {}", r.text().await.unwrap_or_default());
    }

    let sorted = |mut a: Value| {
        assert_eq!(a["status"], "success", "{a}");
        if let Some(r) = a["data"]["result"].as_array_mut() {
            r.sort_by_key(|s| s["metric"].to_string());
        }
        a["data"].take()
    };
    let s = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    let mut paths = Vec::new();
    for at in [t0 + 25_000, t0 + 50_000, t0 + 340_000] {
        paths.push(format!("/api/v1/query?query={}&time={}", enc("peer_latency_seconds"), s(at)));
    }
    paths.push(format!("/api/v1/query_range?query={}&start={}&end={}&step=7", enc("peer_latency_seconds"), s(t0), s(t0 + 70_000)));
    // Functions over them whose semantics did not change since 2.42 (2.42 cannot multiply a
    // histogram by a number yet: it answers the histogram unscaled).
    for q in ["histogram_count(peer_latency_seconds)", "histogram_sum(peer_latency_seconds) / histogram_count(peer_latency_seconds)", "sum by (kind) (peer_latency_seconds)", "sum(peer_latency_seconds{kind=~\"int|coarse\"})"] {
        paths.push(format!("/api/v1/query_range?query={}&start={}&end={}&step=10", enc(q), s(t0), s(t0 + 60_000)));
    }
    for path in &paths {
        let (want, got) = (sorted(get_json(&prom_base, path).await), sorted(get_json(&pharos_base, path).await));
        assert!(want["result"].as_array().is_some_and(|r| !r.is_empty()), "{path}: Prometheus found nothing: {want}");
        assert!(same_json(&got, &want), "{path}\n pharos: {got}\n prometheus: {want}");
    }
    prometheus.assert_running();

    // A range selector: Prometheus 2.42 answers one with the histogram objects of one series
    // repeated into others (its matrix iterator reuses them; later versions fixed it), so the
    // counts are checked against what was sent instead: in (t0+15 s, t0+50 s] the samples at
    // t0+20…50 s, `int` with counts 6n for n = 3…6, `mixed` a float then three histograms.
    let path = format!("/api/v1/query?query={}&time={}", enc("peer_latency_seconds{kind=~\"int|mixed\"}[35s]"), s(t0 + 50_000));
    let got = sorted(get_json(&pharos_base, &path).await);
    let counts = |series: &Value| -> Vec<(f64, String)> {
        series["histograms"].as_array().unwrap().iter().map(|p| (p[0].as_f64().unwrap(), p[1]["count"].as_str().unwrap().to_string())).collect()
    };
    let secs = |ms: i64| ms as f64 / 1000.0;
    let at = |i: i64| secs(t0 + i * 10_000);
    assert_eq!(got["result"][0]["metric"]["kind"], "int", "{got}");
    assert_eq!(counts(&got["result"][0]), vec![(at(2), "18".into()), (at(3), "24".into()), (at(4), "30".into()), (at(5), "36".into())], "{got}");
    let floats: Vec<(f64, &str)> = got["result"][1]["values"].as_array().unwrap().iter().map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap())).collect();
    assert_eq!(floats, vec![(at(2), "3")], "{got}");
    assert_eq!(counts(&got["result"][1]), vec![(at(3), "6".into()), (at(4), "6".into()), (at(5), "6".into())], "{got}");

    // Federation in the protobuf format a Prometheus scraping native histograms asks for: the
    // same families, series, timestamps and histograms from both (a histogram compared by its
    // counts, since one may write whole counts as integer deltas and the other as floats).
    let accept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3";
    let federated = |base: String| {
        let client = client.clone();
        async move {
            let r = client.get(format!("{base}/federate?match[]=peer_latency_seconds")).header("accept", accept).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{base}");
            let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
            assert!(content_type.starts_with("application/vnd.google.protobuf"), "{base}: {content_type}");
            let families = pharos_model::client_model::decode_delimited(&r.bytes().await.unwrap()).unwrap();
            families
                .into_iter()
                .map(|f| {
                    let metrics: Vec<(Vec<(String, String)>, Option<i64>, Option<FloatHistogram>)> = f
                        .metric
                        .iter()
                        .map(|m| (m.label.iter().map(|l| (l.name.clone(), l.value.clone())).collect(), m.timestamp_ms, m.histogram.as_ref().map(counts_of)))
                        .collect();
                    (f.name.unwrap_or_default(), f.r#type, metrics)
                })
                .collect::<Vec<_>>()
        }
    };
    let (want, got) = (federated(prom_base.clone()).await, federated(pharos_base.clone()).await);
    assert!(want.iter().map(|f| f.2.len()).sum::<usize>() == 4, "Prometheus federated {want:?}");
    assert_eq!(got, want);
}

/// A protobuf exposition histogram as absolute counts (integer deltas summed, float counts as
/// they are), spans merged as Prometheus compacts them.
fn counts_of(h: &pharos_model::client_model::Histogram) -> pharos_model::histogram::FloatHistogram {
    use pharos_model::histogram::{FloatHistogram, Span};
    let absolute = |deltas: &[i64], floats: &[f64]| -> Vec<f64> {
        if !floats.is_empty() {
            return floats.to_vec();
        }
        let mut c = 0i64;
        deltas.iter().map(|d| {
            c += d;
            c as f64
        }).collect()
    };
    let spans = |s: &[pharos_model::client_model::BucketSpan]| s.iter().map(|s| Span { offset: s.offset, length: s.length }).collect();
    FloatHistogram {
        schema: h.schema.unwrap_or(0),
        zero_threshold: h.zero_threshold.unwrap_or(0.0),
        zero_count: h.zero_count_float.unwrap_or(h.zero_count.unwrap_or(0) as f64),
        count: h.sample_count_float.unwrap_or(h.sample_count.unwrap_or(0) as f64),
        sum: h.sample_sum.unwrap_or(0.0),
        positive_spans: spans(&h.positive_span),
        positive_buckets: absolute(&h.positive_delta, &h.positive_count),
        negative_spans: spans(&h.negative_span),
        negative_buckets: absolute(&h.negative_delta, &h.negative_count),
        ..Default::default()
    }
    .compact()
}

/// JSON equality where numbers in strings may differ by a relative 2e-16: Prometheus' table of
/// bucket bounds for schemas 1–8 is one unit in the last place off the nearest double for some
/// entries, which Pharos uses (e.g. 0.8408964152537144 against 0.8408964152537145 for 2^(−1/4)).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            x == y || matches!((x.parse::<f64>(), y.parse::<f64>()), (Ok(p), Ok(q)) if (p - q).abs() <= 2e-16 * p.abs().max(q.abs()))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w))),
        _ => a == b,
    }
}
