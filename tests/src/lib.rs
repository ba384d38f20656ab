//! End-to-end test harness: starts the real Kafka-protocol broker (tansu) and the real Pharos
//! binaries as processes, waits on conditions (never fixed sleeps), and cleans up on drop.
//!
//! The binaries must be built first (`cargo build --bins`; `scripts/test.sh` does it). The broker
//! binary comes from `scripts/install-tansu.sh` (or `$PHAROS_TANSU`).

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
        let port = free_port();
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
