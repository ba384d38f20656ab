//! The three servers under test: how to start them, where they accept remote_write and PromQL,
//! and how much CPU and memory their process used (from /proc).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pharos_e2e::{bin, free_port, Proc};

/// Which engine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Engine {
    Pharos,
    VictoriaMetrics,
    Prometheus,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Pharos => "Pharos",
            Engine::VictoriaMetrics => "VictoriaMetrics",
            Engine::Prometheus => "Prometheus",
        }
    }
}

/// A running server.
pub struct Server {
    pub engine: Engine,
    pub proc: Proc,
    pub addr: String,
    pub data: PathBuf,
    args: Vec<String>,
    pub root: PathBuf,
}

/// Checks that the Debian binaries are installed; the message says how to get them.
pub fn check_installed() -> anyhow::Result<()> {
    for b in ["victoria-metrics", "prometheus"] {
        let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(b).is_file()));
        anyhow::ensure!(found, "`{b}` is not on PATH: install the Debian package (`apt-get install -y {b}`, or run scripts/bootstrap.sh)");
    }
    Ok(())
}

/// Pharos' config for the bench: the defaults (flush every 10 s or 2 M rows, compaction by size
/// tiers while a partition receives files), with maintenance every second instead of every
/// minute. `compact_everything` (for measuring the footprint) takes every partition as settled
/// at once, so each becomes one file compressed small.
pub fn pharos_config(data: &Path, compact_everything: bool) -> String {
    let mut cfg = format!(
        "data_dir: {:?}\ncollector:\n  maintenance_interval_ms: 1000\n  retention_days: 0\n",
        data.display().to_string()
    );
    if compact_everything {
        cfg.push_str("  compaction_settle_ms: 0\n  compaction_min_files: 2\n");
    }
    cfg
}

impl Server {
    /// Starts `engine` with an empty data directory under `root` and waits until it is ready.
    pub async fn start(engine: Engine, root: &Path) -> anyhow::Result<Server> {
        let data = root.join(format!("{}-data", engine.name().to_lowercase()));
        std::fs::create_dir_all(&data)?;
        let addr = format!("127.0.0.1:{}", free_port());
        let args: Vec<String> = match engine {
            Engine::Pharos => {
                let cfg = root.join("pharos.yaml");
                std::fs::write(&cfg, pharos_config(&data, false))?;
                vec!["serve".into(), "--listen".into(), addr.clone(), "--config".into(), cfg.display().to_string()]
            }
            Engine::VictoriaMetrics => vec![
                format!("-storageDataPath={}", data.display()),
                format!("-httpListenAddr={addr}"),
                "-retentionPeriod=100y".into(),
                "-search.latencyOffset=0s".into(),
                "-loggerLevel=ERROR".into(),
            ],
            Engine::Prometheus => {
                let cfg = root.join("prometheus.yml");
                std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n")?;
                vec![
                    "--web.enable-remote-write-receiver".into(),
                    format!("--storage.tsdb.path={}", data.display()),
                    format!("--config.file={}", cfg.display()),
                    format!("--web.listen-address={addr}"),
                    "--storage.tsdb.retention.time=100y".into(),
                    "--log.level=warn".into(),
                ]
            }
        };
        let mut s = Server { engine, proc: Self::spawn(engine, &args, root), addr, data, args, root: root.to_path_buf() };
        s.wait_ready().await?;
        Ok(s)
    }

    fn spawn(engine: Engine, args: &[String], root: &Path) -> Proc {
        let mut cmd = match engine {
            Engine::Pharos => {
                let mut c = Command::new(bin("pharos"));
                c.env("PHAROS_LOG", "warn");
                c
            }
            Engine::VictoriaMetrics => Command::new("victoria-metrics"),
            Engine::Prometheus => Command::new("prometheus"),
        };
        cmd.args(args);
        Proc::spawn(&engine.name().to_lowercase(), cmd, root)
    }

    /// Stops gracefully (SIGTERM; Pharos flushes its head) and starts again on the same data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.proc.terminate();
        self.proc = Self::spawn(self.engine, &self.args, &self.root);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let path = match self.engine {
            Engine::VictoriaMetrics => "/health",
            _ => "/-/ready",
        };
        let url = format!("http://{}{path}", self.addr);
        let client = reqwest::Client::new();
        for _ in 0..1200 {
            if let Ok(Some(st)) = self.proc.child.try_wait() {
                anyhow::bail!("{} exited with {st}:\n{}", self.engine.name(), self.proc.log_tail());
            }
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("{} not ready after 60 s:\n{}", self.engine.name(), self.proc.log_tail())
    }

    /// The remote_write endpoint.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// User + system CPU seconds of the server process so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.proc.child.id())).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<f64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
        // Fields after the command: state(3) ... utime(14), stime(15); USER_HZ is 100 on Linux.
        (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
    }

    /// Peak resident set size (VmHWM) in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    }
}

/// Bytes of all regular files under `dir`.
pub fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    for e in rd.flatten() {
        match e.metadata() {
            Ok(m) if m.is_dir() => total += du(&e.path()),
            Ok(m) => total += m.len(),
            Err(_) => {}
        }
    }
    total
}
