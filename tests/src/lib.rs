//! End-to-end test harness: starts the real Kafka-protocol broker (tansu) and the real Pharos
//! binaries as processes, waits on conditions (never fixed sleeps), and cleans up on drop.
//!
//! The binaries must be built first (`cargo build --bins`; `scripts/test.sh` does it). The broker
//! binary comes from `scripts/install-tansu.sh` (or `$PHAROS_TANSU`).
//!
//! [`sim`] is the telemetry simulator (`pharos-sim`): emulated clusters, Spark and Trino in their
//! real formats, usable in-process by end-to-end tests and `pharos-bench`.

pub mod sim;

pub mod promqltest;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Path of a workspace binary next to the running test executable (target/<profile>/<name>).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(p.exists(), "{} not built: run `cargo build --bins` first (scripts/test.sh does)", p.display());
    p
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Polls `cond` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Async variant of [`wait_for`].
pub async fn wait_for_async<T, F, Fut>(what: &str, timeout: Duration, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True once something accepts TCP connections on `addr`.
pub fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A child process killed (SIGKILL) when dropped; its output goes to a log file.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// Where stdout and stderr go.
    pub log: PathBuf,
    name: String,
}

impl Proc {
    /// Spawns `cmd` with output to `log_dir/<name>.log` (appending, so restarts keep history).
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let f = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let f2 = f.try_clone().expect("log file clone");
        let child = cmd
            .stdout(Stdio::from(f))
            .stderr(Stdio::from(f2))
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Proc { child, log, name: name.to_string() }
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().expect("wait")
    }

    /// Panics (showing the log tail) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited with {status}; log tail:\n{}", self.name, self.log_tail());
        }
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Path of the tansu broker binary.
pub fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PHAROS_TANSU") {
        return PathBuf::from(p);
    }
    let out = Command::new(repo_root().join("scripts/install-tansu.sh"))
        .output()
        .expect("running scripts/install-tansu.sh");
    assert!(out.status.success(), "install-tansu.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A running tansu broker (in-memory storage) on a free port.
pub struct Broker {
    /// The broker process.
    pub proc: Proc,
    /// `127.0.0.1:<port>`.
    pub addr: String,
}

impl Broker {
    /// Starts the broker and waits until it accepts connections.
    pub fn start(log_dir: &Path) -> Broker {
        Self::start_on(log_dir, free_port())
    }

    /// Starts the broker on `port` (e.g. one an agent was pointed at before the broker existed).
    pub fn start_on(log_dir: &Path, port: u16) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(tansu_bin());
        cmd.args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/"]);
        let mut proc = Proc::spawn("tansu", cmd, log_dir);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        wait_for("the broker to listen", Duration::from_secs(30), || {
            proc.assert_running();
            port_open(addr).then_some(())
        });
        Broker { proc, addr: addr.to_string() }
    }
}

/// Appends lines to a file (creating it), flushing at once: what a container runtime does.
pub fn append_lines(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open log file");
    for l in lines {
        f.write_all(l.as_bytes()).expect("append");
        f.write_all(b"\n").expect("append");
    }
    f.flush().expect("flush");
}

/// A control-plane process and the address it serves on.
pub struct Pharos {
    /// The process.
    pub proc: Proc,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    args: Vec<String>,
    log_dir: PathBuf,
}

impl Pharos {
    /// Starts `pharos serve --listen <free port> <extra args>` and waits for `/-/ready`.
    pub async fn serve(log_dir: &Path, extra: &[&str]) -> Pharos {
        Self::serve_on(log_dir, &format!("127.0.0.1:{}", free_port()), extra).await
    }

    /// Starts `pharos serve` with `data_dir` `<dir>/data` and a config that flushes only when the
    /// head holds `flush_max_rows` rows (the interval is an hour), so a test decides what is in
    /// files and what is in the head.
    pub async fn serve_flushing_at_rows(dir: &Path, flush_max_rows: usize) -> Pharos {
        let data = dir.join("data");
        let config = dir.join("pharos.yaml");
        std::fs::write(
            &config,
            format!("data_dir: {data:?}\ncollector:\n  flush_interval_ms: 3600000\n  flush_max_rows: {flush_max_rows}\n"),
        )
        .expect("writing pharos.yaml");
        Self::serve(dir, &["--config", config.to_str().expect("utf-8 path")]).await
    }

    /// Starts `pharos serve --listen <addr> <extra args>` and waits for `/-/ready`.
    pub async fn serve_on(log_dir: &Path, addr: &str, extra: &[&str]) -> Pharos {
        let addr = addr.to_string();
        let mut args: Vec<String> = vec!["serve".into(), "--listen".into(), addr.clone()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut p = Pharos { proc: Self::spawn(&args, log_dir), addr, args, log_dir: log_dir.to_path_buf() };
        p.wait_ready().await;
        p
    }

    fn spawn(args: &[String], log_dir: &Path) -> Proc {
        let mut cmd = Command::new(bin("pharos"));
        cmd.args(args).env("PHAROS_LOG", "info,pharos_collector=debug");
        Proc::spawn("pharos", cmd, log_dir)
    }

    /// Waits until `/-/ready` answers 200.
    pub async fn wait_ready(&mut self) {
        let url = format!("http://{}/-/ready", self.addr);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.proc.assert_running();
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success() {
                    return;
                }
            assert!(Instant::now() < deadline, "pharos not ready; log:\n{}", self.proc.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs the process and starts it again with the same arguments.
    pub async fn kill9_and_restart(&mut self) {
        self.proc.kill9();
        self.proc = Self::spawn(&self.args, &self.log_dir);
        self.wait_ready().await;
    }

    /// Stops the process gracefully (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.proc.terminate()
    }

    /// Starts the process again with the same arguments (same port, same data) after [`Pharos::stop`].
    pub async fn start_again(&mut self) {
        self.proc = Self::spawn(&self.args, &self.log_dir);
        self.wait_ready().await;
    }

    /// GET `path` (with query string) and parse the JSON answer; returns (status, body).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new().get(format!("http://{}{path}", self.addr)).send().await.expect("GET");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }
}

/// Percent-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `[ts, "value"]` pairs of the single series of a Prometheus matrix or vector answer.
pub fn prom_values(answer: &serde_json::Value) -> Vec<(f64, String)> {
    let result = &answer["data"]["result"];
    let mut out = Vec::new();
    for series in result.as_array().into_iter().flatten() {
        let pairs = series["values"].as_array().cloned().unwrap_or_else(|| vec![series["value"].clone()]);
        for p in pairs {
            if let (Some(t), Some(v)) = (p[0].as_f64(), p[1].as_str()) {
                out.push((t, v.to_string()));
            }
        }
    }
    out
}

/// Every log line of a Loki `streams` answer.
pub fn loki_lines(answer: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for stream in answer["data"]["result"].as_array().into_iter().flatten() {
        for v in stream["values"].as_array().into_iter().flatten() {
            if let Some(l) = v[1].as_str() {
                out.push(l.to_string());
            }
        }
    }
    out
}

/// A Prometheus exposition endpoint whose values the test controls.
///
/// `pharos_test_scrapes_total` is the number of successful scrapes served so far, counting this
/// one: scrape k returns k, so a store holding every scrape exactly once holds exactly 1..=n.
/// `pharos_test_gauge` is whatever the test last set. Label values carry escapes, commas and
/// braces to exercise the exposition parser.
pub struct ExpositionServer {
    /// `http://127.0.0.1:<port>/metrics`.
    pub url: String,
    state: std::sync::Arc<ExpositionState>,
}

/// Guarded by one lock so `go_down` returns an exact count (no scrape in flight).
#[derive(Default)]
struct ExpositionInner {
    served: u64,
    down: bool,
    gauge: f64,
}

type ExpositionState = std::sync::Mutex<ExpositionInner>;

/// The label set every test series carries, as written in the exposition.
pub const EXPOSITION_LABELS: &str = r#"case="e2e",tricky="a\"b,c}d\\e""#;
/// The same `tricky` label value, unescaped.
pub const TRICKY_VALUE: &str = "a\"b,c}d\\e";

impl ExpositionServer {
    /// Starts serving on a free port.
    pub async fn start() -> ExpositionServer {
        let state = std::sync::Arc::new(ExpositionState::default());
        let st = state.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let st = st.clone();
                async move {
                    let (n, g) = {
                        let mut s = st.lock().expect("exposition state");
                        if s.down {
                            return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::from("down")).into_response_parts();
                        }
                        s.served += 1;
                        (s.served, s.gauge)
                    };
                    let body = format!(
                        "# HELP pharos_test_scrapes_total Scrapes served.\n# TYPE pharos_test_scrapes_total counter\n\
                         pharos_test_scrapes_total{{{EXPOSITION_LABELS}}} {n}\n\
                         # TYPE pharos_test_gauge gauge\npharos_test_gauge{{{EXPOSITION_LABELS}}} {g}\n\
                         # HELP pharos_test_latency_seconds Request latency \\\\ in seconds.\n\
                         # TYPE pharos_test_latency_seconds histogram\n\
                         pharos_test_latency_seconds_bucket{{case=\"e2e\",le=\"0.5\"}} 3\n\
                         pharos_test_latency_seconds_bucket{{case=\"e2e\",le=\"+Inf\"}} 5\n\
                         pharos_test_latency_seconds_sum{{case=\"e2e\"}} 2.25\n\
                         pharos_test_latency_seconds_count{{case=\"e2e\"}} 5\n"
                    );
                    (axum::http::StatusCode::OK, body).into_response_parts()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/metrics", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        ExpositionServer { url, state }
    }

    /// Sets the gauge value served from now on.
    pub fn set_gauge(&self, v: f64) {
        self.state.lock().expect("exposition state").gauge = v;
    }

    /// From now on every scrape fails with 503; returns how many scrapes succeeded.
    pub fn go_down(&self) -> u64 {
        let mut s = self.state.lock().expect("exposition state");
        s.down = true;
        s.served
    }

    /// Successful scrapes so far.
    pub fn served(&self) -> u64 {
        self.state.lock().expect("exposition state").served
    }
}

trait IntoParts {
    fn into_response_parts(self) -> axum::response::Response;
}

impl IntoParts for (axum::http::StatusCode, String) {
    fn into_response_parts(self) -> axum::response::Response {
        use axum::response::IntoResponse;
        self.into_response()
    }
}

/// A CRI log line with the current time.
pub fn cri_line(msg: &str) -> String {
    format!("{} stdout F {msg}", chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
}

impl Pharos {
    /// The value of a sample of Pharos' own `/metrics` whose line starts with `name` (0 if absent).
    pub async fn own_metric(&self, name: &str) -> f64 {
        let Ok(r) = reqwest::get(format!("http://{}/metrics", self.addr)).await else { return 0.0 };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .find(|l| !l.starts_with('#') && l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

/// The value of the first sample named `name` on `http://<addr>/metrics` (an agent's or the
/// control plane's own metrics); `None` when unreachable or absent.
pub async fn metric_value(addr: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics")).await.ok()?.text().await.ok()?;
    text.lines()
        .find(|l| !l.starts_with('#') && l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}
