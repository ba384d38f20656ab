//! The agent's disk buffer end to end: the collector (HTTP) or the broker (Kafka) is away for a
//! while under load, and afterwards every scrape and every line is stored exactly once; with a
//! tiny buffer and no sink the agent applies backpressure and says so in its /metrics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pharos_e2e::*;

/// Load: a CRI file the test appends to, and an exposition endpoint scraped every 200 ms.
struct Load {
    expo: ExpositionServer,
    log_file: PathBuf,
    next_line: usize,
}

impl Load {
    async fn start(root: &Path) -> Load {
        let expo = ExpositionServer::start().await;
        let dir = root.join("pods/payments_api-7d9f_0c1e2d3f-uid/api");
        std::fs::create_dir_all(&dir).unwrap();
        Load { expo, log_file: dir.join("0.log"), next_line: 1 }
    }

    /// Appends `n` lines now.
    fn append(&mut self, n: usize) {
        let lines: Vec<String> = (self.next_line..self.next_line + n).map(|i| cri_line(&msg(i))).collect();
        self.next_line += n;
        append_lines(&self.log_file, &lines);
    }

    /// Appends `per_round` lines every 100 ms for `rounds` rounds (pacing the load, not waiting
    /// for a result).
    async fn run(&mut self, rounds: usize, per_round: usize) {
        for _ in 0..rounds {
            self.append(per_round);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn lines_written(&self) -> usize {
        self.next_line - 1
    }
}

fn msg(i: usize) -> String {
    format!("line-{i:05} GET /api/v1/payments/{i} 200 {}ms", i % 97)
}

fn agent_yaml(load: &Load, root: &Path, listen: &str, sink: &str, extra: &str) -> String {
    format!(
        "cluster: e2e\nnode: node-1\nlisten: {listen}\ndata_dir: {data:?}\n\
         scrape:\n  interval_ms: 200\n  targets:\n    - url: {target}\n      job: exposition\n\
         logs:\n  include: [{glob:?}]\n  poll_interval_ms: 50\n  batch_max_records: 50\n\
         sink:\n{sink}{extra}",
        data = root.join("agent").display().to_string(),
        target = load.expo.url,
        glob = format!("{}/pods/*/*/*.log", root.display()),
    )
}

fn start_agent(root: &Path, yaml: &str) -> Proc {
    std::fs::write(root.join("agent.yaml"), yaml).unwrap();
    let mut cmd = Command::new(bin("pharos-agent"));
    cmd.args(["--config", root.join("agent.yaml").to_str().unwrap()]).env("RUST_LOG", "info");
    Proc::spawn("agent", cmd, root)
}

async fn query(p: &Pharos, q: &str) -> serde_json::Value {
    let (status, body) = p.get_json(&format!("/api/v1/query?query={}", enc(q))).await;
    assert_eq!(status, 200, "{q}: {body}");
    body
}

async fn lines(p: &Pharos, selector: &str) -> Vec<String> {
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let (status, body) = p
        .get_json(&format!(
            "/loki/api/v1/query_range?query={}&start={}&end={}&limit=100000&direction=forward",
            enc(selector),
            now_ns - 3_600_000_000_000,
            now_ns + 60_000_000_000
        ))
        .await;
    assert_eq!(status, 200, "{selector}: {body}");
    loki_lines(&body)
}

async fn wait_first_scrape(p: &Pharos) {
    wait_for_async("the first scrape to be queryable", Duration::from_secs(120), || async move {
        (!prom_values(&query(p, "pharos_test_scrapes_total").await).is_empty()).then_some(())
    })
    .await;
}

/// Keeps the load going a little, stops the target, and checks that the store holds scrape
/// values exactly 1..=n and every line exactly once, in order.
async fn assert_everything_exactly_once(p: &Pharos, load: &mut Load, agent: &mut Proc) {
    assert_stored_once(p, load, agent, true).await;
}

/// As [`assert_everything_exactly_once`]; with `every_scrape` false, scrape values need only
/// be strictly increasing (a scrape answered while the agent stops is never buffered).
async fn assert_stored_once(p: &Pharos, load: &mut Load, agent: &mut Proc, every_scrape: bool) {
    load.append(25);
    let after = load.expo.served() + 10;
    wait_for("10 more scrapes", Duration::from_secs(60), || (load.expo.served() >= after).then_some(()));
    let n = load.expo.go_down();
    let total = load.lines_written();

    let values = wait_for_async("every scrape to arrive", Duration::from_secs(120), || async move {
        let v: Vec<(f64, String)> = prom_values(&query(p, "pharos_test_scrapes_total{case=\"e2e\"}[1h]").await)
            .into_iter()
            .filter(|(_, v)| v != "NaN")
            .collect();
        let last = v.last().and_then(|(_, x)| x.parse::<f64>().ok()).unwrap_or(0.0) as u64;
        let complete = if every_scrape { v.len() as u64 >= n } else { last == n };
        complete.then_some(v)
    })
    .await;
    let got: Vec<u64> = values.iter().map(|(_, v)| v.parse::<f64>().unwrap() as u64).collect();
    if every_scrape {
        assert_eq!(got, (1..=n).collect::<Vec<u64>>(), "every scrape exactly once, in order");
    } else {
        assert!(got.windows(2).all(|w| w[0] < w[1]), "no scrape stored twice: {got:?}");
    }

    let got = wait_for_async("every line", Duration::from_secs(120), || async move {
        let l = lines(p, "{namespace=\"payments\"}").await;
        (l.len() >= total).then_some(l)
    })
    .await;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &got {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dupes.is_empty(), "duplicated lines: {dupes:?}");
    assert_eq!(got, (1..=total).map(msg).collect::<Vec<_>>(), "every line exactly once, in order");
    agent.assert_running();
}

fn keep(dir: tempfile::TempDir) -> Option<tempfile::TempDir> {
    eprintln!("test directory: {} (set PHAROS_E2E_KEEP=1 to keep it)", dir.path().display());
    if std::env::var_os("PHAROS_E2E_KEEP").is_some() {
        let _ = dir.keep();
        None
    } else {
        Some(dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_stopped_under_load_then_everything_arrives_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let _dir = keep(dir);
    let mut pharos = Pharos::serve(&root, &["--data-dir", root.join("data").to_str().unwrap()]).await;
    let mut load = Load::start(&root).await;
    load.append(10);
    let agent_addr = format!("127.0.0.1:{}", free_port());
    let sink = format!("  collector_url: http://{}\n", pharos.addr);
    let mut agent = start_agent(&root, &agent_yaml(&load, &root, &agent_addr, &sink, ""));
    wait_first_scrape(&pharos).await;

    // The collector goes away for several seconds while lines and scrapes keep coming.
    assert!(pharos.stop().success());
    load.run(30, 10).await;
    let buffered = wait_for_async("the agent to buffer while the collector is down", Duration::from_secs(30), || {
        let a = &agent_addr;
        async move { metric_value(a, "pharos_agent_buffer_records").await.filter(|r| *r >= 10.0) }
    })
    .await;
    load.run(20, 10).await;
    agent.assert_running();
    eprintln!("collector down; agent buffered {buffered} records; scrapes served {}", load.expo.served());

    // Same port, same data directory: the agent replays the buffer in order.
    pharos.start_again().await;
    load.run(10, 10).await;
    assert_everything_exactly_once(&pharos, &mut load, &mut agent).await;
    wait_for_async("the buffer to drain", Duration::from_secs(30), || {
        let a = &agent_addr;
        async move { (metric_value(a, "pharos_agent_buffer_records").await == Some(0.0)).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_started_before_the_broker_delivers_everything_exactly_once_through_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let _dir = keep(dir);
    // The broker (tansu, memory storage) does not exist yet: the agent buffers on disk.
    let broker_port = free_port();
    let brokers = format!("127.0.0.1:{broker_port}");
    let mut load = Load::start(&root).await;
    load.append(10);
    let agent_addr = format!("127.0.0.1:{}", free_port());
    let sink = format!("  kafka:\n    brokers: {brokers}\n    options:\n      reconnect.backoff.max.ms: \"500\"\n");
    let mut agent = start_agent(&root, &agent_yaml(&load, &root, &agent_addr, &sink, ""));
    load.run(30, 10).await;
    let buffered = wait_for_async("the agent to buffer while the broker is unreachable", Duration::from_secs(30), || {
        let a = &agent_addr;
        async move { metric_value(a, "pharos_agent_buffer_records").await.filter(|r| *r >= 10.0) }
    })
    .await;
    agent.assert_running();
    eprintln!("broker absent; agent buffered {buffered} records; scrapes served {}", load.expo.served());

    let _broker = Broker::start_on(&root, broker_port);
    let yaml = format!(
        "data_dir: {data:?}\ncollector:\n  flush_interval_ms: 400\n  kafka:\n    brokers: {brokers}\n    create_topics_partitions: 2\n",
        data = root.join("data").display().to_string()
    );
    std::fs::write(root.join("pharos.yaml"), yaml).unwrap();
    let pharos = Pharos::serve(&root, &["--config", root.join("pharos.yaml").to_str().unwrap()]).await;
    load.run(10, 10).await;
    assert_everything_exactly_once(&pharos, &mut load, &mut agent).await;
}

/// The broker stops answering mid-stream (SIGSTOP: tansu keeps its in-memory data, a restart
/// would empty it) while the agent keeps scraping and tailing, then resumes (SIGCONT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_paused_under_load_then_everything_arrives_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let _dir = keep(dir);
    let broker = Broker::start(&root);
    let yaml = format!(
        "data_dir: {data:?}\ncollector:\n  flush_interval_ms: 400\n  kafka:\n    brokers: {brokers}\n    create_topics_partitions: 2\n",
        data = root.join("data").display().to_string(),
        brokers = broker.addr,
    );
    std::fs::write(root.join("pharos.yaml"), yaml).unwrap();
    let pharos = Pharos::serve(&root, &["--config", root.join("pharos.yaml").to_str().unwrap()]).await;
    let mut load = Load::start(&root).await;
    load.append(10);
    let agent_addr = format!("127.0.0.1:{}", free_port());
    let sink = format!("  kafka:\n    brokers: {}\n    options:\n      reconnect.backoff.max.ms: \"500\"\n", broker.addr);
    let mut agent = start_agent(&root, &agent_yaml(&load, &root, &agent_addr, &sink, ""));
    wait_first_scrape(&pharos).await;

    let pid = broker.proc.child.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let served_before = load.expo.served();
    load.run(40, 10).await; // 4 s of appends while the broker is frozen
    let buffered = wait_for_async("records to pile up in the agent's buffer", Duration::from_secs(30), || {
        let a = &agent_addr;
        async move { metric_value(a, "pharos_agent_buffer_records").await.filter(|r| *r >= 5.0) }
    })
    .await;
    assert!(load.expo.served() > served_before, "scraping went on while the broker was frozen");
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    eprintln!("broker frozen: {buffered} records buffered meanwhile");
    load.run(10, 10).await;
    assert_everything_exactly_once(&pharos, &mut load, &mut agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_applies_backpressure_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let _dir = keep(dir);
    let mut load = Load::start(&root).await;
    load.append(300);
    // No collector yet on this address, and a buffer of 16 KiB.
    let collector_addr = format!("127.0.0.1:{}", free_port());
    let agent_addr = format!("127.0.0.1:{}", free_port());
    let sink = format!("  collector_url: http://{collector_addr}\n");
    let mut agent = start_agent(&root, &agent_yaml(&load, &root, &agent_addr, &sink, "buffer:\n  max_bytes: 16384\n"));

    let metric = |name: &'static str| {
        let a = agent_addr.clone();
        async move { metric_value(&a, name).await }
    };
    wait_for_async("pharos_agent_buffer_full 1", Duration::from_secs(30), || async {
        (metric("pharos_agent_buffer_full").await == Some(1.0)).then_some(())
    })
    .await;
    // Let both sources (tailer and scraper) hit the limit: blocked time keeps growing.
    wait_for_async("blocked time to grow", Duration::from_secs(30), || async {
        metric("pharos_agent_buffer_blocked_seconds_total").await.filter(|s| *s >= 2.0)
    })
    .await;
    let records = metric("pharos_agent_buffer_records").await.unwrap();
    let bytes = metric("pharos_agent_buffer_bytes").await.unwrap();
    let served = load.expo.served();
    let blocked = metric("pharos_agent_buffer_blocked_seconds_total").await.unwrap();
    wait_for_async("another second of backpressure", Duration::from_secs(30), || async {
        metric("pharos_agent_buffer_blocked_seconds_total").await.filter(|s| *s >= blocked + 1.0)
    })
    .await;
    assert!(bytes <= 16384.0, "the bound holds: {bytes} bytes buffered");
    assert_eq!(metric("pharos_agent_buffer_records").await, Some(records), "the tailer stopped reading");
    assert_eq!(metric("pharos_agent_buffer_full").await, Some(1.0));
    assert_eq!(load.expo.served(), served, "scrapes are delayed while the buffer is full");
    agent.assert_running();

    // The collector appears: everything read before and after the backpressure arrives once.
    let pharos = Pharos::serve_on(&root, &collector_addr, &["--data-dir", root.join("data").to_str().unwrap()]).await;
    load.run(5, 10).await;
    assert_everything_exactly_once(&pharos, &mut load, &mut agent).await;
    wait_for_async("backpressure to end", Duration::from_secs(30), || async {
        (metric("pharos_agent_buffer_full").await == Some(0.0)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restarted_under_load_neither_loses_nor_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let _dir = keep(dir);
    let pharos = Pharos::serve(&root, &["--data-dir", root.join("data").to_str().unwrap()]).await;
    let mut load = Load::start(&root).await;
    load.append(10);
    let agent_addr = format!("127.0.0.1:{}", free_port());
    let yaml = agent_yaml(&load, &root, &agent_addr, &format!("  collector_url: http://{}\n", pharos.addr), "");
    let mut agent = start_agent(&root, &yaml);
    wait_first_scrape(&pharos).await;
    // The tail checkpoint lives in the buffer records: a stop between "lines buffered" and
    // "offsets moved" cannot re-read them, and a graceful stop finishes the send in flight.
    for round in 0..3 {
        load.run(5, 20).await;
        assert!(agent.terminate().success(), "agent exits cleanly on SIGTERM (round {round})");
        load.append(20);
        agent = start_agent(&root, &yaml);
    }
    load.run(5, 20).await;
    assert_stored_once(&pharos, &mut load, &mut agent, false).await;
}
