//! Container logs the way the kubelet and containerd leave them on a node:
//! `<out>/pods/<namespace>_<pod>_<uid>/<container>/0.log`, CRI lines
//! `<RFC3339Nano> <stdout|stderr> <P|F> <msg>`, lines over 16 KiB split into `P` partials, and
//! size-based rotation (`0.log` → `0.log.<YYYYMMDD-HHMMSS>`, older rotated files gzipped, at most
//! `log_max_files` files per container). Also the background chatter of each kind of pod.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::world::{Container, PendingLine, Pod, PodRole, Rng};

/// containerd splits log lines longer than this into partial (`P`) entries.
pub const CRI_MAX_LINE: usize = 16 * 1024;

/// RFC3339Nano as Go prints it (trailing zeros of the fraction trimmed), UTC.
pub fn rfc3339_nano(ts_ns: i64) -> String {
    let secs = ts_ns.div_euclid(1_000_000_000);
    let nanos = ts_ns.rem_euclid(1_000_000_000) as u32;
    let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Formats one log line as CRI entries (one `F`, or `P`… `F` for long lines), each ending in `\n`.
pub fn cri_entries(line: &PendingLine) -> String {
    let ts = rfc3339_nano(line.ts_ns);
    let stream = if line.stderr { "stderr" } else { "stdout" };
    let mut out = String::with_capacity(line.text.len() + 48);
    let mut rest = line.text.as_str();
    while rest.len() > CRI_MAX_LINE {
        let mut cut = CRI_MAX_LINE;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&format!("{ts} {stream} P {}\n", &rest[..cut]));
        rest = &rest[cut..];
    }
    out.push_str(&format!("{ts} {stream} F {rest}\n"));
    out
}

/// Writes CRI log files under `<root>` and rotates them like the kubelet.
pub struct LogWriter {
    root: PathBuf,
    max_bytes: u64,
    max_files: usize,
    sizes: BTreeMap<PathBuf, u64>,
}

impl LogWriter {
    /// A writer for `<root>` (the `pods` directory).
    pub fn new(root: PathBuf, max_bytes: u64, max_files: usize) -> io::Result<LogWriter> {
        fs::create_dir_all(&root)?;
        Ok(LogWriter { root, max_bytes, max_files: max_files.max(2), sizes: BTreeMap::new() })
    }

    /// The directory of a container's logs.
    pub fn container_dir(&self, pod: &Pod, container: &Container) -> PathBuf {
        self.root.join(format!("{}_{}_{}", pod.namespace, pod.name, pod.uid)).join(&container.name)
    }

    /// Deletes the log directory of a pod that no longer exists.
    pub fn remove_pod(&mut self, namespace: &str, pod: &str, uid: &str) -> io::Result<()> {
        let dir = self.root.join(format!("{namespace}_{pod}_{uid}"));
        self.sizes.retain(|p, _| !p.starts_with(&dir));
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Appends `lines` to the container's `0.log`, rotating when it grew past the limit.
    pub fn write(&mut self, pod: &Pod, container: &Container, lines: &[PendingLine], now_ms: i64) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let dir = self.container_dir(pod, container);
        let path = dir.join("0.log");
        let size = match self.sizes.get(&path) {
            Some(s) => *s,
            None => {
                fs::create_dir_all(&dir)?;
                fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
            }
        };
        let mut buf = String::new();
        for l in lines {
            buf.push_str(&cri_entries(l));
        }
        let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
        f.write_all(buf.as_bytes())?;
        let size = size + buf.len() as u64;
        self.sizes.insert(path.clone(), size);
        if size > self.max_bytes && self.rotate(&dir, now_ms)? {
            self.sizes.insert(path, 0);
        }
        Ok(())
    }

    /// kubelet's rotation: gzip rotated files, rename `0.log` to `0.log.<timestamp>`, prune.
    /// Returns false when a file with this second's timestamp already exists (rotated next time).
    fn rotate(&self, dir: &Path, now_ms: i64) -> io::Result<bool> {
        let stamp = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default().format("%Y%m%d-%H%M%S").to_string();
        let target = dir.join(format!("0.log.{stamp}"));
        if target.exists() || dir.join(format!("0.log.{stamp}.gz")).exists() {
            return Ok(false);
        }
        for old in rotated_files(dir)? {
            if old.extension().is_some_and(|e| e == "gz") {
                continue;
            }
            let data = fs::read(&old)?;
            let gz_path = PathBuf::from(format!("{}.gz", old.display()));
            let mut enc = flate2::write::GzEncoder::new(File::create(&gz_path)?, flate2::Compression::default());
            enc.write_all(&data)?;
            enc.finish()?.sync_all()?;
            fs::remove_file(&old)?;
        }
        fs::rename(dir.join("0.log"), &target)?;
        let mut rotated = rotated_files(dir)?;
        while rotated.len() > self.max_files - 1 {
            fs::remove_file(rotated.remove(0))?;
        }
        Ok(true)
    }
}

/// Rotated files of a container directory, oldest first (timestamps sort lexically).
pub fn rotated_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("0.log.")))
        .collect();
    v.sort();
    Ok(v)
}

const PATHS: &[&str] = &["/api/v1/orders", "/api/v1/customers", "/api/v1/search", "/healthz", "/api/v1/invoices"];
const KLOG_MSGS: &[&str] = &[
    "\"SyncProxyRules complete\" elapsed=\"12.3ms\"",
    "\"Reloading service iptables data\" numServices=42 numEndpoints=97",
];
const SPARK_INFO: &[(&str, &str)] = &[
    ("BlockManagerInfo", "Added broadcast_4_piece0 in memory (size: 7.1 KiB, free: 1048.7 MiB)"),
    ("MemoryStore", "Block broadcast_4 stored as values in memory (estimated size 14.2 KiB, free 1048.6 MiB)"),
    ("CodeGenerator", "Code generated in 14.822561 ms"),
    ("ShuffleBlockFetcherIterator", "Getting 8 (2.9 MiB) non-empty blocks including 8 (2.9 MiB) local and 0 (0.0 B) host-local and 0 (0.0 B) push-merged-local and 0 (0.0 B) remote blocks"),
    ("FileSourceStrategy", "Pushed Filters: IsNotNull(ds)"),
];
const TRINO_INFO: &[(&str, &str, &str)] = &[
    ("http-worker-112", "io.trino.memory.RemoteNodeMemory", "Memory info refreshed"),
    ("Query-20-3", "io.trino.execution.scheduler.SqlQueryScheduler", "Scheduling stage 1 on 3 nodes"),
    ("node-state-poller-0", "io.trino.metadata.DiscoveryNodeManager", "Previously active node is still active"),
];

/// Adds background chatter to every running container of `pod` for the tick (t0, t1].
pub fn chatter(pod: &mut Pod, rng: &mut Rng, mean_lines: f64, t0_ms: i64, t1_ms: i64) {
    if !pod.is_running() {
        return;
    }
    let role = pod.role;
    for c in &mut pod.containers {
        let n = rng.poisson(mean_lines);
        for k in 0..n {
            let ms = t0_ms + ((t1_ms - t0_ms) * (k as i64 + 1)) / (n as i64 + 1);
            let ts_ns = ms * 1_000_000 + rng.int(0, 999_999) as i64;
            let iso = rfc3339_nano(ts_ns);
            let (stderr, text) = match (role, c.name.as_str()) {
                (PodRole::Service, "envoy") => (false, format!(
                    "[{}] \"GET {} HTTP/1.1\" 200 - 0 {} {} {} \"-\" \"Go-http-client/1.1\" \"{}\" \"{}:8080\"",
                    &iso[..iso.len().min(23)], rng.pick(PATHS), rng.int(20, 9000), rng.int(1, 80), rng.int(1, 80), rng.uuid(), pod.ip)),
                (PodRole::Service, _) => {
                    if rng.chance(0.01) {
                        // An occasional huge line (a dumped payload), split into CRI partials.
                        let blob = rng.hex(16).repeat(rng.int(1200, 3000) as usize);
                        (false, format!("{{\"time\":\"{iso}\",\"level\":\"DEBUG\",\"msg\":\"payload dump\",\"payload\":\"{blob}\"}}"))
                    } else if rng.chance(0.05) {
                        (true, format!("{{\"time\":\"{iso}\",\"level\":\"ERROR\",\"msg\":\"upstream request failed\",\"error\":\"context deadline exceeded\",\"path\":\"{}\"}}", rng.pick(PATHS)))
                    } else {
                        (false, format!("{{\"time\":\"{iso}\",\"level\":\"INFO\",\"msg\":\"request completed\",\"method\":\"GET\",\"path\":\"{}\",\"status\":200,\"duration_ms\":{}}}", rng.pick(PATHS), rng.int(1, 400)))
                    }
                }
                (PodRole::Daemon, _) => {
                    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
                    (true, format!("I{} {:>7} proxier.go:{}] {}", t.format("%m%d %H:%M:%S%.6f"), 1, rng.int(700, 900), rng.pick(KLOG_MSGS)))
                }
                (PodRole::SparkDriver | PodRole::SparkExecutor, _) => {
                    let (class, msg) = *rng.pick(SPARK_INFO);
                    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
                    (true, format!("{} INFO {class}: {msg}", t.format("%y/%m/%d %H:%M:%S")))
                }
                (PodRole::TrinoCoordinator | PodRole::TrinoWorker, _) => {
                    let (thread, class, msg) = *rng.pick(TRINO_INFO);
                    (false, format!("{}\tINFO\t{thread}\t{class}\t{msg}", chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3fZ")))
                }
            };
            c.pending.push(PendingLine { ts_ns, stderr, text });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_nano_trims_like_go() {
        assert_eq!(rfc3339_nano(1_795_352_400_000_000_000), "2026-11-22T13:00:00Z");
        assert_eq!(rfc3339_nano(1_795_352_400_120_000_000), "2026-11-22T13:00:00.12Z");
        assert_eq!(rfc3339_nano(1_795_352_400_000_000_007), "2026-11-22T13:00:00.000000007Z");
    }

    #[test]
    fn long_lines_become_partials() {
        let text = "x".repeat(CRI_MAX_LINE * 2 + 5);
        let out = cri_entries(&PendingLine { ts_ns: 0, stderr: false, text: text.clone() });
        let tags: Vec<&str> = out.lines().map(|l| l.split(' ').nth(2).unwrap_or("")).collect();
        assert_eq!(tags, ["P", "P", "F"]);
        let joined: String = out.lines().map(|l| l.splitn(4, ' ').nth(3).unwrap_or("")).collect();
        assert_eq!(joined, text);
    }
}
