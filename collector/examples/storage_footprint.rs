//! Storage footprint of node-exporter-like metrics (issue 3): head heap bytes per active series and
//! Parquet bytes per sample after compaction.
//!
//! ```sh
//! cargo run --release -p pharos-collector --example storage_footprint -- --series 80000 --hours 2
//! ```
//!
//! Heap is measured with a counting global allocator (live bytes requested), so it includes every
//! allocation the head makes: label strings, the series index, sample chunks, growth slack.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use pharos_collector::Store;
use pharos_collector::store::Batch;
use pharos_collector::telemetry::CollectorMetrics;
use pharos_model::{Labels, Sample};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Small deterministic PRNG (xorshift64*), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How a series' value evolves each scrape.
enum Kind {
    /// Counter: grows by `rate * interval` with noise, as CPU seconds or bytes do.
    Counter { rate: f64, integer: bool },
    /// Gauge: random walk around a level.
    Gauge { level: f64, step: f64 },
    /// Constant (node_uname_info, *_info, filesystem size, ...).
    Constant,
}

struct SeriesGen {
    labels: Labels,
    kind: Kind,
    value: f64,
}

/// Node-exporter-like series for `hosts` hosts: ~400 series per host.
fn generate(target: usize, rng: &mut Rng) -> Vec<SeriesGen> {
    let mut out = Vec::with_capacity(target);
    let mut host = 0;
    while out.len() < target {
        let instance = format!("10.{}.{}.{}:9100", host / 65536 % 256, host / 256 % 256, host % 256);
        let base = |name: &str, extra: &[(&str, String)]| {
            let mut p: Vec<(String, String)> = vec![
                ("__name__".into(), name.into()),
                ("job".into(), "node-exporter".into()),
                ("instance".into(), instance.clone()),
                ("cluster".into(), format!("prod-{}", host % 4)),
                ("namespace".into(), "monitoring".into()),
                ("pod".into(), format!("node-exporter-{:05x}", host * 7919 % 1_048_576)),
            ];
            p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
            Labels::from_pairs(p)
        };
        let mut push = |labels: Labels, kind: Kind, value: f64| out.push(SeriesGen { labels, kind, value });
        for cpu in 0..16 {
            for mode in ["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"] {
                let rate = if mode == "idle" { 0.7 } else { 0.05 };
                push(base("node_cpu_seconds_total", &[("cpu", cpu.to_string()), ("mode", mode.into())]), Kind::Counter { rate, integer: false }, 1e5);
            }
        }
        for dev in ["sda", "sdb", "nvme0n1", "nvme1n1"] {
            for m in ["node_disk_read_bytes_total", "node_disk_written_bytes_total", "node_disk_reads_completed_total", "node_disk_writes_completed_total", "node_disk_io_time_seconds_total", "node_disk_read_time_seconds_total", "node_disk_write_time_seconds_total", "node_disk_io_now"] {
                let kind = if m.ends_with("_now") { Kind::Gauge { level: 2.0, step: 1.0 } } else { Kind::Counter { rate: 1e4 * rng.unit(), integer: m.contains("bytes") || m.contains("completed") } };
                push(base(m, &[("device", dev.into())]), kind, 1e9 * rng.unit());
            }
        }
        for dev in ["eth0", "eth1", "lo", "docker0", "cni0", "flannel.1"] {
            for m in ["node_network_receive_bytes_total", "node_network_transmit_bytes_total", "node_network_receive_packets_total", "node_network_transmit_packets_total", "node_network_receive_errs_total", "node_network_transmit_errs_total", "node_network_receive_drop_total", "node_network_transmit_drop_total", "node_network_up", "node_network_mtu_bytes"] {
                let kind = if m.ends_with("_total") { Kind::Counter { rate: if m.contains("errs") || m.contains("drop") { 0.001 } else { 1e5 * rng.unit() }, integer: true } } else { Kind::Constant };
                push(base(m, &[("device", dev.into())]), kind, if m.ends_with("mtu_bytes") { 1500.0 } else { 1.0 });
            }
        }
        for (mp, fs) in [("/", "ext4"), ("/boot", "ext4"), ("/var/lib/kubelet", "xfs"), ("/run", "tmpfs")] {
            for m in ["node_filesystem_avail_bytes", "node_filesystem_free_bytes", "node_filesystem_size_bytes", "node_filesystem_files", "node_filesystem_files_free", "node_filesystem_readonly"] {
                let kind = if m.ends_with("size_bytes") || m.ends_with("readonly") || m.ends_with("_files") { Kind::Constant } else { Kind::Gauge { level: 5e10, step: 4096.0 } };
                push(base(m, &[("mountpoint", mp.into()), ("fstype", fs.into()), ("device", format!("/dev/{}", &mp.replace('/', "_")))]), kind, 1e11);
            }
        }
        for m in ["MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "Active", "Inactive", "Dirty", "Writeback", "Slab", "SReclaimable", "SUnreclaim", "PageTables", "Committed_AS", "SwapTotal", "SwapFree"] {
            let kind = if m.ends_with("Total") { Kind::Constant } else { Kind::Gauge { level: 1e10, step: 4096.0 * 64.0 } };
            push(base(&format!("node_memory_{m}_bytes"), &[]), kind, 1e10);
        }
        for m in ["node_load1", "node_load5", "node_load15"] {
            push(base(m, &[]), Kind::Gauge { level: 2.0, step: 0.05 }, 2.0);
        }
        for m in ["node_context_switches_total", "node_intr_total", "node_forks_total"] {
            push(base(m, &[]), Kind::Counter { rate: 1e4, integer: true }, 1e9);
        }
        for sc in 0..40 {
            push(base("node_scrape_collector_duration_seconds", &[("collector", format!("collector_{sc}"))]), Kind::Gauge { level: 0.001, step: 0.0001 }, 0.001);
            push(base("node_scrape_collector_success", &[("collector", format!("collector_{sc}"))]), Kind::Constant, 1.0);
        }
        push(base("node_uname_info", &[("release", "6.1.0-18-amd64".into()), ("nodename", format!("node-{host}"))]), Kind::Constant, 1.0);
        push(base("node_boot_time_seconds", &[]), Kind::Constant, 1.7e9);
        host += 1;
    }
    out.truncate(target);
    out
}

fn step(s: &mut SeriesGen, interval_s: f64, rng: &mut Rng) -> f64 {
    match s.kind {
        Kind::Counter { rate, integer } => {
            let inc = rate * interval_s * (0.5 + rng.unit());
            s.value += if integer { inc.round() } else { (inc * 100.0).round() / 100.0 };
        }
        Kind::Gauge { level, step } => {
            s.value += step * (rng.unit() - 0.5) * 2.0 + (level - s.value) * 0.01;
            if step >= 1.0 {
                s.value = s.value.round();
            }
        }
        Kind::Constant => {}
    }
    s.value
}

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let series_n = arg("--series", 80_000.0) as usize;
    let hours = arg("--hours", 2.0);
    let interval_ms = arg("--interval-s", 15.0) as i64 * 1000;
    let flush_minutes = arg("--flush-minutes", 30.0) as i64;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut gens = generate(series_n, &mut rng);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).expect("open store");
    let start_ms: i64 = 1_767_225_600_000; // 2026-01-01T00:00Z, hour-aligned
    let end_ms = start_ms + (hours * 3_600_000.0) as i64;
    let flush_every_ms = flush_minutes * 60_000;
    let mut next_flush = start_ms + flush_every_ms;
    let mut offset = 0i64;
    let mut samples_total = 0u64;
    let mut peak_per_series = 0f64;
    let mut first_scrape_per_series = None;
    let base = live();
    let started = std::time::Instant::now();
    let mut t = start_ms;
    while t < end_ms {
        if t >= next_flush {
            let per_series = (live() - base) as f64 / series_n as f64;
            peak_per_series = f64::max(peak_per_series, per_series);
            store.flush().expect("flush");
            next_flush += flush_every_ms;
        }
        // One scrape round in batches of 2000 samples, as a Kafka consumer would see them. The
        // first round after a flush carries freshly allocated labels, as decoded batches do, so
        // whatever label memory the head keeps is counted (later rounds share the generator's).
        let fresh = t == start_ms || t + flush_every_ms == next_flush;
        let labels_of = |g: &SeriesGen| {
            if fresh { Labels::from_pairs(g.labels.iter().map(|(k, v)| (k.to_string(), v.to_string()))) } else { g.labels.clone() }
        };
        let scrape: Vec<Sample> = gens
            .iter_mut()
            .map(|g| {
                let l = labels_of(g);
                Sample::new(l, t, step(g, interval_ms as f64 / 1000.0, &mut rng))
            })
            .collect();
        samples_total += scrape.len() as u64;
        let mut scrape = scrape.into_iter().peekable();
        while scrape.peek().is_some() {
            let batch: Vec<Sample> = scrape.by_ref().take(2000).collect();
            store.ingest("kafka:metrics:0", offset, Batch::Metrics(batch));
            offset += 1;
        }
        if first_scrape_per_series.is_none() {
            first_scrape_per_series = Some((live() - base) as f64 / series_n as f64);
        }
        t += interval_ms;
    }
    let per_series_end = (live() - base) as f64 / series_n as f64;
    peak_per_series = f64::max(peak_per_series, per_series_end);
    let head_samples = store.head_rows();
    store.flush().expect("flush");
    let ingest_s = started.elapsed().as_secs_f64();
    // Every partition taken as settled: one file each, compressed small.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let compaction_started = std::time::Instant::now();
    let report = store.compact_at(2, std::time::Duration::ZERO, now_ms).expect("compact");
    let compaction_s = compaction_started.elapsed().as_secs_f64();
    let manifest = store.manifest();
    let bytes: u64 = manifest.metric_files.iter().map(|f| f.bytes).sum();
    let stored: u64 = manifest.metric_files.iter().map(|f| f.samples).sum();
    assert_eq!(stored, samples_total, "every sample is in a file");
    let samples_per_series = flush_minutes * 60_000 / interval_ms;
    println!("series: {series_n}, hours: {hours}, interval: {} s, samples: {samples_total}", interval_ms / 1000);
    println!("head heap after the first scrape: {:.0} B per active series", first_scrape_per_series.unwrap_or(0.0));
    println!(
        "head heap before a flush ({flush_minutes} min, {samples_per_series} samples per series): {:.0} B per active series ({:.2} B per sample held)",
        peak_per_series,
        peak_per_series / samples_per_series as f64
    );
    println!("head samples at the end: {head_samples}");
    println!(
        "parquet after compaction ({} files merged into {}): {} files, {} bytes, {:.3} B per sample",
        report.files_compacted,
        report.files_written,
        manifest.metric_files.len(),
        bytes,
        bytes as f64 / stored as f64
    );
    println!("ingest + flushes: {ingest_s:.1} s; compaction: {compaction_s:.1} s");
    let mut per_column: std::collections::BTreeMap<String, i64> = Default::default();
    for f in &manifest.metric_files {
        let file = std::fs::File::open(dir.path().join(&f.path)).expect("open parquet");
        let reader = parquet::file::reader::SerializedFileReader::new(file).expect("parquet metadata");
        use parquet::file::reader::FileReader;
        for rg in reader.metadata().row_groups() {
            for c in rg.columns() {
                *per_column.entry(c.column_path().string()).or_default() += c.compressed_size();
            }
        }
    }
    for (c, b) in per_column {
        println!("  column {c}: {:.3} B per sample", b as f64 / stored as f64);
    }
}
