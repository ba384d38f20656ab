//! Unit tests of the simulator: determinism, valid exposition, monotonic counters, kubelet
//! `/pods` shape, Spark event logs, Trino events, CRI lines and kubelet-style rotation.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;

fn cfg(out: &Path) -> SimConfig {
    SimConfig { seed: 7, out_dir: Some(out.to_path_buf()), ..SimConfig::default() }
}

/// Every exposition body of the simulation now: (endpoint path, body).
fn bodies(sim: &Simulation) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for c in sim.clusters() {
        for n in &c.nodes {
            v.push((format!("{}/{}/node-exporter", c.name, n.name), sim.node_exporter(&c.name, &n.name).unwrap()));
            v.push((format!("{}/{}/cadvisor", c.name, n.name), sim.cadvisor(&c.name, &n.name).unwrap()));
            v.push((format!("{}/{}/resource", c.name, n.name), sim.resource_metrics(&c.name, &n.name).unwrap()));
        }
        v.push((format!("{}/kube-state-metrics", c.name), sim.kube_state(&c.name).unwrap()));
        v.push((format!("{}/trino", c.name), sim.trino_metrics(&c.name).unwrap()));
        for app in sim.spark_apps(&c.name) {
            for executors in [false, true] {
                if let Some(SparkAnswer::Ready(b)) = sim.spark_driver(&c.name, &app, executors) {
                    v.push((format!("{}/spark/{app}/{executors}", c.name), b));
                }
            }
        }
    }
    v
}

/// A strict reader of the text format: returns (metric name, sorted labels, value) per sample,
/// failing on malformed lines, a TYPE after its samples, or a TYPE given twice.
/// (metric name, sorted labels, value).
type ParsedSample = (String, Vec<(String, String)>, f64);
/// (endpoint, metric name, sorted labels).
type SeriesKey = (String, String, Vec<(String, String)>);

fn strict_parse(body: &str) -> Result<Vec<ParsedSample>, String> {
    let mut out = Vec::new();
    let mut typed = BTreeSet::new();
    let mut seen_names = BTreeSet::new();
    for (i, line) in body.lines().enumerate() {
        let err = |m: &str| format!("line {}: {m}: {line}", i + 1);
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap_or("");
            let typ = it.next().ok_or_else(|| err("TYPE without type"))?;
            if !["counter", "gauge", "histogram", "summary", "untyped", "unknown"].contains(&typ) {
                return Err(err("unknown type"));
            }
            if !typed.insert(name.to_string()) || seen_names.contains(name) {
                return Err(err("TYPE repeated or after samples"));
            }
            continue;
        }
        if line == "# EOF" || line.starts_with("# HELP ") {
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(err("unexpected comment or blank line"));
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| err("no value"))?;
        let name = &line[..name_end];
        let valid_name = !name.is_empty()
            && name.chars().enumerate().all(|(k, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (k > 0 && c.is_ascii_digit()));
        if !valid_name {
            return Err(err("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut r = r;
            loop {
                r = r.trim_start_matches([',', ' ']);
                if let Some(after) = r.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = r.find("=\"").ok_or_else(|| err("label without =\""))?;
                let key = &r[..eq];
                if key.is_empty() || !key.chars().enumerate().all(|(k, c)| c.is_ascii_alphabetic() || c == '_' || (k > 0 && c.is_ascii_digit())) {
                    return Err(err("bad label name"));
                }
                let mut val = String::new();
                let mut chars = r[eq + 2..].char_indices();
                let end = loop {
                    match chars.next() {
                        Some((k, '"')) => break k,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => val.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => val.push(c),
                            _ => return Err(err("bad escape")),
                        },
                        Some((_, c)) => val.push(c),
                        None => return Err(err("unterminated label value")),
                    }
                };
                labels.push((key.to_string(), val));
                r = &r[eq + 2 + end + 1..];
            }
        }
        let mut parts = rest.trim_start().split(' ');
        let v = parts.next().ok_or_else(|| err("no value"))?;
        let value: f64 = match v {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| err("bad value"))?,
        };
        if let Some(ts) = parts.next() {
            ts.parse::<i64>().map_err(|_| err("bad timestamp"))?;
        }
        if parts.next().is_some() {
            return Err(err("trailing fields"));
        }
        labels.sort();
        seen_names.insert(name.to_string());
        out.push((name.to_string(), labels, value));
    }
    Ok(out)
}

fn is_counter(name: &str, labels: &[(String, String)]) -> bool {
    name.ends_with("_total")
        || name.ends_with("_TotalCount")
        || (name.ends_with("_Count") && labels.iter().any(|(k, v)| k == "type" && v == "counters"))
}

fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn same_seed_and_ticks_give_identical_bodies_and_files() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Simulation::new(SimConfig { log_max_bytes: 16 * 1024, ..cfg(d1.path()) }).unwrap();
    let mut b = Simulation::new(SimConfig { log_max_bytes: 16 * 1024, ..cfg(d2.path()) }).unwrap();
    for _ in 0..40 {
        a.tick().unwrap();
        b.tick().unwrap();
    }
    assert_eq!(bodies(&a), bodies(&b));
    for c in a.clusters() {
        for n in &c.nodes {
            assert_eq!(a.kubelet_pods(&c.name, &n.name), b.kubelet_pods(&c.name, &n.name));
        }
    }
    let (fa, fb) = (files(d1.path()), files(d2.path()));
    assert!(fa.len() > 10, "expected log and event files, got {}", fa.len());
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(fb[k] == *v, "{} differs", k.display());
    }
    // A different seed is a different world.
    let mut c = Simulation::new(SimConfig { seed: 8, ..SimConfig::default() }).unwrap();
    c.tick().unwrap();
    assert_ne!(bodies(&c)[0].1, bodies(&a)[0].1);
}

#[test]
fn every_body_is_valid_exposition_without_duplicate_series() {
    let mut sim = Simulation::new(SimConfig { clusters: 2, ..SimConfig::default() }).unwrap();
    let mut spark_seen = false;
    for t in 0..40 {
        sim.tick().unwrap();
        if t % 8 != 7 {
            continue;
        }
        for (what, body) in bodies(&sim) {
            spark_seen |= what.contains("/spark/");
            let samples = strict_parse(&body).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(!samples.is_empty(), "{what} is empty");
            let mut keys = BTreeSet::new();
            for (name, labels, _) in &samples {
                assert!(keys.insert((name.clone(), labels.clone())), "{what}: duplicate series {name}{labels:?}");
            }
            let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
            assert_eq!(scrape.samples.len(), samples.len(), "{what}: prometheus-parse read a different number of samples");
        }
    }
    assert!(spark_seen, "no Spark driver became ready in 40 ticks");
}

#[test]
fn counters_never_decrease() {
    let mut sim = Simulation::new(SimConfig::default()).unwrap();
    let mut last: BTreeMap<SeriesKey, f64> = BTreeMap::new();
    let mut compared = 0;
    for _ in 0..60 {
        sim.tick().unwrap();
        for (what, body) in bodies(&sim) {
            for (name, labels, v) in strict_parse(&body).unwrap() {
                if !is_counter(&name, &labels) {
                    continue;
                }
                let key = (what.clone(), name.clone(), labels.clone());
                if let Some(prev) = last.insert(key, v) {
                    assert!(v >= prev, "{what}: {name}{labels:?} went from {prev} to {v}");
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 1000, "only {compared} counter comparisons");
    // CPU seconds grow by about usage × elapsed: a node's cpu0 modes add up to the 60 s elapsed.
    let n = &sim.clusters()[0].nodes[0];
    let body = sim.node_exporter(&sim.clusters()[0].name, &n.name).unwrap();
    let cpu0: f64 = strict_parse(&body).unwrap().iter().filter(|(name, l, _)| name == "node_cpu_seconds_total" && l[0].1 == "0").map(|s| s.2).sum();
    let boot = (sim.now_ms() / 1000 - n.boot_time_s) as f64;
    assert!((cpu0 - boot).abs() < 2.0, "cpu0 modes sum {cpu0} vs uptime {boot}");
}

#[test]
fn kube_state_has_requests_allocatable_and_node_labels() {
    let mut sim = Simulation::new(SimConfig::default()).unwrap();
    sim.tick().unwrap();
    let body = sim.kube_state("cluster-1").unwrap();
    let samples = strict_parse(&body).unwrap();
    let has = |name: &str, want: &[(&str, &str)]| {
        samples.iter().any(|(n, l, _)| n == name && want.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && (v.is_empty() || lv == v))))
    };
    assert!(has("kube_pod_container_resource_requests", &[("resource", "cpu"), ("unit", "core"), ("node", ""), ("container", "")]));
    assert!(has("kube_pod_container_resource_requests", &[("resource", "memory"), ("unit", "byte")]));
    assert!(has("kube_pod_container_resource_limits", &[("resource", "cpu")]));
    assert!(has("kube_node_status_allocatable", &[("resource", "cpu"), ("unit", "core")]));
    assert!(has("kube_node_status_capacity", &[("resource", "memory"), ("unit", "byte")]));
    assert!(has("kube_node_labels", &[("label_node_kubernetes_io_instance_type", ""), ("label_karpenter_sh_capacity_type", ""), ("label_topology_kubernetes_io_zone", "")]));
    assert!(has("kube_pod_labels", &[("label_team", "platform"), ("label_app", "")]));
    assert!(has("kube_pod_info", &[("node", ""), ("uid", "")]));
    assert!(has("kube_pod_status_phase", &[("phase", "Running")]));
    for (_, l, _) in samples.iter().filter(|(n, _, _)| n == "kube_node_labels") {
        let ct = &l.iter().find(|(k, _)| k == "label_karpenter_sh_capacity_type").unwrap().1;
        assert!(ct == "spot" || ct == "on-demand");
    }
}

#[test]
fn kubelet_pods_is_a_pod_list_with_the_fields_agents_read() {
    let mut sim = Simulation::new(SimConfig::default()).unwrap();
    for _ in 0..5 {
        sim.tick().unwrap();
    }
    let mut teams = BTreeSet::new();
    for n in sim.node_names("cluster-1") {
        let v: Value = serde_json::from_str(&sim.kubelet_pods("cluster-1", &n).unwrap()).unwrap();
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "PodList");
        for item in v["items"].as_array().unwrap() {
            let md = &item["metadata"];
            for f in ["name", "namespace", "uid"] {
                assert!(md[f].is_string(), "metadata.{f} in {item}");
            }
            let team = md["labels"]["team"].as_str().expect("team label");
            teams.insert(team.to_string());
            assert!(md["annotations"].is_object());
            assert!(md["ownerReferences"][0]["kind"].is_string());
            assert_eq!(item["spec"]["nodeName"], n.as_str());
            for c in item["spec"]["containers"].as_array().unwrap() {
                assert!(c["name"].is_string());
                assert!(c["resources"]["requests"]["cpu"].is_string());
                assert!(c["resources"]["requests"]["memory"].is_string());
                assert!(c["resources"]["limits"].is_object());
                assert!(c["ports"].is_array());
            }
            assert!(item["status"]["phase"].is_string());
            assert!(item["status"]["podIP"].is_string());
            assert!(!item["status"]["containerStatuses"].as_array().unwrap().is_empty());
        }
    }
    assert_eq!(teams, sim.teams().iter().cloned().collect::<BTreeSet<_>>());
}

#[test]
fn spark_event_logs_are_listener_json_and_complete_when_the_app_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Simulation::new(SimConfig { spark_apps_per_cluster: 4, log_lines_per_tick: 0.2, ..cfg(dir.path()) }).unwrap();
    for _ in 0..200 {
        sim.tick().unwrap();
    }
    let events_dir = dir.path().join("spark-events");
    let mut completed = 0;
    let mut kinds = BTreeSet::new();
    let mut failed_stage = false;
    for e in std::fs::read_dir(&events_dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&p).unwrap();
        let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}"))).collect();
        assert_eq!(events[0]["Event"], "SparkListenerLogStart");
        for ev in &events {
            kinds.insert(ev["Event"].as_str().unwrap().to_string());
            if ev["Event"] == "SparkListenerTaskEnd" {
                let m = &ev["Task Metrics"];
                assert!(m["Executor Run Time"].is_u64() && m["Executor CPU Time"].is_u64(), "{ev}");
                assert!(m["Peak Execution Memory"].is_u64());
            }
            if ev["Event"] == "SparkListenerExecutorAdded" {
                assert!(ev["Executor Info"]["Total Cores"].is_u64());
            }
            failed_stage |= ev["Event"] == "SparkListenerStageCompleted" && ev["Stage Info"]["Failure Reason"].is_string();
        }
        let last = events.last().unwrap()["Event"].as_str().unwrap().to_string();
        if name.ends_with(".inprogress") {
            assert_ne!(last, "SparkListenerApplicationEnd", "{name} ended but was not renamed");
        } else {
            assert_eq!(last, "SparkListenerApplicationEnd", "{name}");
            completed += 1;
        }
    }
    assert!(completed >= 1, "no application completed in 200 ticks");
    for k in ["SparkListenerApplicationStart", "SparkListenerApplicationEnd", "SparkListenerExecutorAdded", "SparkListenerExecutorRemoved",
        "SparkListenerJobStart", "SparkListenerJobEnd", "SparkListenerStageSubmitted", "SparkListenerStageCompleted", "SparkListenerTaskEnd"]
    {
        assert!(kinds.contains(k), "no {k} in {kinds:?}");
    }
    assert!(failed_stage, "no failed stage in 200 ticks");
}

#[test]
fn trino_events_have_query_completed_shape() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Simulation::new(SimConfig { trino_queries_per_tick: 3.0, ..cfg(dir.path()) }).unwrap();
    let mut taken = Vec::new();
    for _ in 0..30 {
        sim.tick().unwrap();
        taken.extend(sim.take_trino_events());
    }
    let file = std::fs::read_to_string(dir.path().join("trino-events.jsonl")).unwrap();
    assert_eq!(file.lines().collect::<Vec<_>>(), taken.iter().map(String::as_str).collect::<Vec<_>>());
    let mut failed = 0;
    for line in file.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        let id = e["metadata"]["queryId"].as_str().unwrap();
        assert_eq!(id.split('_').count(), 4, "{id}");
        let state = e["metadata"]["queryState"].as_str().unwrap();
        assert!(e["statistics"]["cpuTime"].is_f64() && e["statistics"]["wallTime"].is_f64());
        for f in ["peakUserMemoryBytes", "totalBytes", "outputBytes"] {
            assert!(e["statistics"][f].is_u64(), "{f}");
        }
        assert!(e["statistics"]["cumulativeMemory"].is_number());
        assert!(e["context"]["user"].is_string() && e["context"]["resourceGroupId"].is_array() && e["context"]["clientTags"].is_array());
        let (c, end) = (e["createTime"].as_str().unwrap(), e["endTime"].as_str().unwrap());
        let (c, end) = (chrono::DateTime::parse_from_rfc3339(c).unwrap(), chrono::DateTime::parse_from_rfc3339(end).unwrap());
        assert!(c < end);
        if state == "FAILED" {
            failed += 1;
            assert!(e["failureInfo"]["errorCode"]["name"].is_string());
        } else {
            assert_eq!(state, "FINISHED");
            assert!(e["failureInfo"].is_null());
        }
    }
    assert!(file.lines().count() > 50 && failed > 0);
}

fn check_cri(text: &str, what: &str) -> usize {
    let mut n = 0;
    for line in text.lines() {
        let mut it = line.splitn(4, ' ');
        let (ts, stream, tag) = (it.next().unwrap(), it.next().unwrap_or(""), it.next().unwrap_or(""));
        assert!(it.next().is_some(), "{what}: no message: {line}");
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{what}: bad timestamp {ts}");
        assert!(stream == "stdout" || stream == "stderr", "{what}: {line}");
        assert!(tag == "F" || tag == "P", "{what}: {line}");
        n += 1;
    }
    n
}

#[test]
fn cri_logs_rotate_like_the_kubelet_and_hold_traces() {
    let dir = tempfile::tempdir().unwrap();
    let max = 8 * 1024;
    let mut sim = Simulation::new(SimConfig { log_max_bytes: max, log_lines_per_tick: 3.0, ..cfg(dir.path()) }).unwrap();
    for _ in 0..150 {
        sim.tick().unwrap();
    }
    let (mut gz, mut plain_rotated, mut lines, mut partial, mut trace, mut py) = (0, 0, 0, 0, 0, 0);
    for pod_dir in std::fs::read_dir(dir.path().join("pods")).unwrap() {
        let pod_dir = pod_dir.unwrap().path();
        let pname = pod_dir.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(pname.split('_').count(), 3, "{pname} is not <ns>_<pod>_<uid>");
        let mut texts = Vec::new();
        for c in std::fs::read_dir(&pod_dir).unwrap() {
            let cdir = c.unwrap().path();
            let rotated = logs::rotated_files(&cdir).unwrap();
            assert!(rotated.len() < sim.config().log_max_files, "{}: {} rotated files", cdir.display(), rotated.len());
            for (k, r) in rotated.iter().enumerate() {
                let name = r.file_name().unwrap().to_str().unwrap();
                let text = if name.ends_with(".gz") {
                    gz += 1;
                    let mut s = String::new();
                    flate2::read::GzDecoder::new(std::fs::File::open(r).unwrap()).read_to_string(&mut s).expect("rotated .gz is gzip");
                    s
                } else {
                    // Only the newest rotated file stays uncompressed.
                    assert_eq!(k, rotated.len() - 1, "{name} should have been gzipped");
                    plain_rotated += 1;
                    std::fs::read_to_string(r).unwrap()
                };
                texts.push((name.to_string(), text));
            }
            texts.push(("0.log".into(), std::fs::read_to_string(cdir.join("0.log")).unwrap_or_default()));
        }
        for (name, text) in &texts {
            lines += check_cri(text, name);
            partial += text.lines().filter(|l| l.split(' ').nth(2) == Some("P")).count();
            trace += text.lines().filter(|l| l.contains(" F \tat ")).count();
            py += text.lines().filter(|l| l.ends_with("Traceback (most recent call last):")).count();
        }
    }
    assert!(gz > 0 && plain_rotated > 0, "gz {gz}, plain rotated {plain_rotated}");
    assert!(lines > 1000);
    assert!(partial > 0, "no partial (P) lines");
    assert!(trace > 0, "no Java stack trace lines");
    assert!(py > 0, "no Python traceback");
}

#[tokio::test]
async fn server_answers_placeholder_redirect_and_bodies() {
    let server = SimServer::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap(), RunOptions::default()).await.unwrap();
    server.sim.lock().unwrap().tick().unwrap();
    let base = server.base_url();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get = |p: String| {
        let c = client.clone();
        async move { c.get(p).send().await.unwrap() }
    };
    let app = server.sim.lock().unwrap().spark_apps("cluster-1")[0].clone();
    let r = get(format!("{base}/c/cluster-1/spark/{app}/metrics/prometheus/")).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    for _ in 0..15 {
        server.sim.lock().unwrap().tick().unwrap();
    }
    let r = get(format!("{base}/c/cluster-1/spark/{app}/metrics/prometheus")).await;
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], format!("/c/cluster-1/spark/{app}/metrics/prometheus/").as_str());
    let r = get(format!("{base}/c/cluster-1/spark/{app}/metrics/prometheus/")).await;
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert!(r.text().await.unwrap().contains("_driver_appStatus_tasks_completedTasks_Count{type=\"counters\"}"));
    let targets: Vec<String> = serde_json::from_str(&get(format!("{base}/targets")).await.text().await.unwrap()).unwrap();
    assert!(targets.len() > 10);
    for t in targets {
        let r = get(format!("{base}{t}")).await;
        assert_eq!(r.status(), 200, "{t}");
    }
    assert_eq!(get(format!("{base}/c/nope/kube-state-metrics/metrics")).await.status(), 404);
}

#[tokio::test]
async fn trino_events_are_posted_and_retried() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (r2, c2) = (received.clone(), calls.clone());
    let app = axum::Router::new().route(
        "/v1/trino/events",
        axum::routing::post(move |body: String| {
            let (r, c) = (r2.clone(), c2.clone());
            async move {
                // The first two attempts fail: the simulator must retry, not drop.
                if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                r.lock().unwrap().push(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/trino/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let cfg = SimConfig { tick_ms: 50, trino_queries_per_tick: 2.0, ..SimConfig::default() };
    let _server = SimServer::start(cfg, "127.0.0.1:0".parse().unwrap(), RunOptions { auto_tick: true, trino_events_url: Some(url) }).await.unwrap();
    crate::wait_for_async("5 trino events delivered", std::time::Duration::from_secs(20), || {
        let r = received.clone();
        async move { (r.lock().unwrap().len() >= 5).then_some(()) }
    })
    .await;
    let first: Value = serde_json::from_str(&received.lock().unwrap()[0]).unwrap();
    assert!(first["metadata"]["queryId"].is_string());
}
