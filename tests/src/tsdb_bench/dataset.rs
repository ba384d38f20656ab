//! A deterministic node-exporter-like dataset, pre-encoded as remote_write 1.0 requests.
//!
//! Each target exposes ~800 series (CPU modes per core, memory, filesystems, network and disk
//! counters, interrupts, vmstat/netstat). Requests are built the way Prometheus' shards send them:
//! one request holds a group of targets' series for a short time slice, and requests go out in
//! timestamp order, so every series' samples arrive in order.

/// How a series' value evolves from one scrape to the next.
#[derive(Clone, Copy)]
enum Kind {
    /// Monotonic: each step adds `rate * (0.5 + noise)`, rounded to `decimals`.
    Counter { rate: f64, decimals: i32 },
    /// `base + amp * sin(step / period + phase)` plus noise, rounded to `decimals`.
    Gauge { base: f64, amp: f64, period: f64, decimals: i32 },
    /// Never changes (sizes, boot time, info-like gauges).
    Const(f64),
}

/// One series: its labels already encoded as protobuf `Label` fields, and its value model.
struct SeriesDef {
    labels_pb: Vec<u8>,
    kind: Kind,
    seed: u64,
}

/// The generated dataset: encoded requests plus the facts the report needs.
pub struct Dataset {
    /// Snappy-compressed `WriteRequest` bodies; `slices[k]` holds the requests of time slice `k`.
    pub slices: Vec<Vec<Vec<u8>>>,
    /// Number of series (all active for the whole range: no churn).
    pub series: usize,
    /// Total samples in all requests.
    pub samples: u64,
    /// First and last sample timestamp (ms).
    pub start_ms: i64,
    pub end_ms: i64,
    /// Compressed bytes of all requests.
    pub wire_bytes: u64,
}

/// SplitMix64: cheap, deterministic noise.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

fn round(v: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (v * p).round() / p
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn encode_labels(mut labels: Vec<(String, String)>) -> Vec<u8> {
    labels.sort();
    let mut out = Vec::new();
    for (k, v) in labels {
        let mut l = Vec::new();
        field_bytes(&mut l, 0x0A, k.as_bytes());
        field_bytes(&mut l, 0x12, v.as_bytes());
        field_bytes(&mut out, 0x0A, &l);
    }
    out
}

/// The series of one target (`instance` = `10.0.<t/250>.<t%250>:9100`, `job` = `node`).
fn target_series(t: usize) -> Vec<SeriesDef> {
    let instance = format!("10.0.{}.{}:9100", t / 250, t % 250 + 1);
    let mut out = Vec::new();
    let mut add = |name: &str, extra: &[(&str, String)], kind: Kind| {
        let mut labels = vec![("__name__".to_string(), name.to_string()), ("instance".into(), instance.clone()), ("job".into(), "node".into())];
        labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let seed = mix(t as u64 * 1_000_003 + out_len_hash(name, extra));
        out.push(SeriesDef { labels_pb: encode_labels(labels), kind, seed });
    };
    let s = |v: &str| v.to_string();
    let cpus = 8;
    let modes = [("idle", 10.0), ("user", 3.0), ("system", 1.0), ("iowait", 0.2), ("irq", 0.01), ("softirq", 0.05), ("steal", 0.02), ("nice", 0.01)];
    for c in 0..cpus {
        for (m, r) in modes {
            add("node_cpu_seconds_total", &[("cpu", c.to_string()), ("mode", s(m))], Kind::Counter { rate: r, decimals: 2 });
        }
        for (m, r) in [("user", 0.1), ("nice", 0.0)] {
            add("node_cpu_guest_seconds_total", &[("cpu", c.to_string()), ("mode", s(m))], Kind::Counter { rate: r, decimals: 2 });
        }
        for n in ["node_schedstat_running_seconds_total", "node_schedstat_waiting_seconds_total", "node_schedstat_timeslices_total"] {
            add(n, &[("cpu", c.to_string())], Kind::Counter { rate: 5.0, decimals: 3 });
        }
        for n in ["node_softnet_processed_total", "node_softnet_dropped_total", "node_softnet_times_squeezed_total"] {
            add(n, &[("cpu", c.to_string())], Kind::Counter { rate: 40.0, decimals: 0 });
        }
        for irq in 0..36 {
            add("node_interrupts_total", &[("cpu", c.to_string()), ("devices", format!("dev{irq}")), ("info", s("IR-PCI-MSI")), ("type", irq.to_string())], Kind::Counter { rate: (irq % 7) as f64 * 20.0, decimals: 0 });
        }
    }
    let mem = ["MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "Active", "Inactive", "Active_anon", "Inactive_anon", "Active_file", "Inactive_file", "Unevictable", "Mlocked", "SwapTotal", "SwapFree", "Dirty", "Writeback", "AnonPages", "Mapped", "Shmem", "KReclaimable", "Slab", "SReclaimable", "SUnreclaim", "KernelStack", "PageTables", "NFS_Unstable", "Bounce", "WritebackTmp", "CommitLimit", "Committed_AS", "VmallocTotal", "VmallocUsed", "VmallocChunk", "Percpu", "HardwareCorrupted", "AnonHugePages", "ShmemHugePages", "HugePages_Total", "Hugepagesize", "DirectMap4k", "DirectMap2M"];
    for (i, m) in mem.iter().enumerate() {
        let kind = match *m {
            "MemTotal" | "SwapTotal" | "VmallocTotal" | "Hugepagesize" | "HugePages_Total" | "CommitLimit" => Kind::Const(32.0 * 1024.0 * 1024.0 * 1024.0 / (1 + i % 3) as f64),
            "MemAvailable" => Kind::Gauge { base: 20e9, amp: 4e9, period: 60.0, decimals: 0 },
            _ => Kind::Gauge { base: 1e8 * (1 + i) as f64, amp: 2e7, period: 40.0 + i as f64, decimals: 0 },
        };
        add(&format!("node_memory_{m}_bytes"), &[], kind);
    }
    let fss = [("/dev/sda1", "ext4", "/"), ("/dev/sda2", "ext4", "/var"), ("/dev/sdb1", "xfs", "/data"), ("tmpfs", "tmpfs", "/run"), ("tmpfs", "tmpfs", "/dev/shm"), ("/dev/sdc1", "xfs", "/var/lib/kubelet")];
    for (d, f, mnt) in fss {
        let l = [("device", s(d)), ("fstype", s(f)), ("mountpoint", s(mnt))];
        add("node_filesystem_size_bytes", &l, Kind::Const(5e11));
        add("node_filesystem_avail_bytes", &l, Kind::Gauge { base: 2e11, amp: 1e9, period: 200.0, decimals: 0 });
        add("node_filesystem_free_bytes", &l, Kind::Gauge { base: 2.2e11, amp: 1e9, period: 200.0, decimals: 0 });
        add("node_filesystem_files", &l, Kind::Const(3.2e7));
        add("node_filesystem_files_free", &l, Kind::Gauge { base: 3e7, amp: 1e4, period: 100.0, decimals: 0 });
        add("node_filesystem_readonly", &l, Kind::Const(0.0));
        add("node_filesystem_device_error", &l, Kind::Const(0.0));
    }
    for dev in ["eth0", "eth1", "lo", "cni0", "flannel.1", "docker0"] {
        for dir in ["receive", "transmit"] {
            for (m, r) in [("bytes", 2e5), ("packets", 300.0), ("errs", 0.01), ("drop", 0.1), ("fifo", 0.0), ("compressed", 0.0), ("multicast", 1.0), ("frame", 0.0)] {
                add(&format!("node_network_{dir}_{m}_total"), &[("device", s(dev))], Kind::Counter { rate: r, decimals: 0 });
            }
        }
        add("node_network_up", &[("device", s(dev))], Kind::Const(1.0));
        add("node_network_mtu_bytes", &[("device", s(dev))], Kind::Const(1500.0));
    }
    for dev in ["sda", "sdb", "sdc", "nvme0n1"] {
        for (m, r, d) in [("reads_completed_total", 50.0, 0), ("writes_completed_total", 120.0, 0), ("read_bytes_total", 4e5, 0), ("written_bytes_total", 1e6, 0), ("io_time_seconds_total", 0.1, 3), ("read_time_seconds_total", 0.05, 3), ("write_time_seconds_total", 0.2, 3), ("io_time_weighted_seconds_total", 0.3, 3), ("reads_merged_total", 5.0, 0), ("writes_merged_total", 30.0, 0), ("discards_completed_total", 0.5, 0)] {
            add(&format!("node_disk_{m}"), &[("device", s(dev))], Kind::Counter { rate: r, decimals: d });
        }
        add("node_disk_io_now", &[("device", s(dev))], Kind::Gauge { base: 2.0, amp: 2.0, period: 7.0, decimals: 0 });
    }
    for i in 0..60 {
        add(&format!("node_vmstat_stat{i}"), &[], Kind::Counter { rate: (i % 9) as f64 * 100.0, decimals: 0 });
    }
    for i in 0..70 {
        add(&format!("node_netstat_Stat{i}"), &[], Kind::Counter { rate: (i % 5) as f64 * 10.0, decimals: 0 });
    }
    for (n, k) in [
        ("node_load1", Kind::Gauge { base: 2.0, amp: 1.5, period: 20.0, decimals: 2 }),
        ("node_load5", Kind::Gauge { base: 2.0, amp: 1.0, period: 30.0, decimals: 2 }),
        ("node_load15", Kind::Gauge { base: 2.0, amp: 0.5, period: 50.0, decimals: 2 }),
        ("node_context_switches_total", Kind::Counter { rate: 1e5, decimals: 0 }),
        ("node_intr_total", Kind::Counter { rate: 5e4, decimals: 0 }),
        ("node_forks_total", Kind::Counter { rate: 30.0, decimals: 0 }),
        ("node_boot_time_seconds", Kind::Const(1.7e9)),
        ("node_procs_running", Kind::Gauge { base: 4.0, amp: 3.0, period: 5.0, decimals: 0 }),
        ("node_procs_blocked", Kind::Gauge { base: 1.0, amp: 1.0, period: 9.0, decimals: 0 }),
        ("node_entropy_available_bits", Kind::Gauge { base: 3500.0, amp: 200.0, period: 30.0, decimals: 0 }),
        ("node_filefd_allocated", Kind::Gauge { base: 9000.0, amp: 500.0, period: 80.0, decimals: 0 }),
        ("node_filefd_maximum", Kind::Const(9.2e18)),
        ("node_time_seconds", Kind::Counter { rate: 15.0, decimals: 3 }),
        ("node_sockstat_TCP_inuse", Kind::Gauge { base: 300.0, amp: 50.0, period: 25.0, decimals: 0 }),
        ("node_sockstat_sockets_used", Kind::Gauge { base: 900.0, amp: 80.0, period: 25.0, decimals: 0 }),
        ("up", Kind::Const(1.0)),
        ("scrape_duration_seconds", Kind::Gauge { base: 0.05, amp: 0.02, period: 3.0, decimals: 4 }),
        ("scrape_samples_scraped", Kind::Const(790.0)),
    ] {
        add(n, &[], k);
    }
    for chip in 0..2 {
        for sensor in 0..9 {
            add("node_hwmon_temp_celsius", &[("chip", format!("platform_coretemp_{chip}")), ("sensor", format!("temp{}", sensor + 1))], Kind::Gauge { base: 45.0, amp: 10.0, period: 30.0 + sensor as f64, decimals: 1 });
        }
    }
    out
}

fn out_len_hash(name: &str, extra: &[(&str, String)]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in name.bytes().chain(extra.iter().flat_map(|(k, v)| k.bytes().chain(v.bytes()))) {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Series per target (for the command's help and the report).
pub fn series_per_target() -> usize {
    target_series(0).len()
}

/// Value of series `s` at step `k`, given its value at step `k - 1`.
fn next_value(s: &SeriesDef, k: u64, prev: f64) -> f64 {
    let noise = unit(s.seed ^ k.wrapping_mul(0x2545_F491_4F6C_DD1D));
    match s.kind {
        Kind::Counter { rate, decimals } => round(prev + rate * 15.0 * (0.5 + noise), decimals),
        Kind::Gauge { base, amp, period, decimals } => {
            let phase = unit(s.seed) * std::f64::consts::TAU;
            round(base + amp * ((k as f64 / period) + phase).sin() + amp * 0.1 * noise, decimals)
        }
        Kind::Const(v) => v,
    }
}

/// Generates and encodes the dataset. `end_ms` is the last timestamp; samples go back `hours`.
pub fn generate(targets: usize, hours: f64, interval_s: u64, end_ms: i64, targets_per_request: usize, steps_per_request: usize) -> Dataset {
    let per_target: Vec<Vec<SeriesDef>> = (0..targets).map(target_series).collect();
    let series: usize = per_target.iter().map(Vec::len).sum();
    let steps = ((hours * 3600.0) as u64 / interval_s).max(1) as usize;
    let interval_ms = interval_s as i64 * 1000;
    let start_ms = end_ms - (steps as i64 - 1) * interval_ms;
    let groups: Vec<&[Vec<SeriesDef>]> = per_target.chunks(targets_per_request.max(1)).collect();
    let nslices = steps.div_ceil(steps_per_request.max(1));
    // Each group is encoded by one thread, carrying its counters' values from slice to slice.
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let per_group: Vec<Vec<Vec<u8>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|th| {
                let groups = &groups;
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for (g, group) in groups.iter().enumerate().filter(|(g, _)| g % threads == th) {
                        let flat: Vec<&SeriesDef> = group.iter().flatten().collect();
                        let mut values: Vec<f64> = flat.iter().map(|s| if let Kind::Counter { .. } = s.kind { unit(s.seed) * 1e6 } else { 0.0 }).collect();
                        let mut reqs = Vec::with_capacity(nslices);
                        let mut raw = Vec::new();
                        let mut ts_buf = Vec::new();
                        let mut smp = Vec::new();
                        for slice in 0..nslices {
                            raw.clear();
                            let (k0, k1) = (slice * steps_per_request, ((slice + 1) * steps_per_request).min(steps));
                            for (s, v) in flat.iter().zip(values.iter_mut()) {
                                ts_buf.clear();
                                ts_buf.extend_from_slice(&s.labels_pb);
                                for k in k0..k1 {
                                    *v = next_value(s, k as u64, *v);
                                    smp.clear();
                                    smp.push(0x09);
                                    smp.extend_from_slice(&v.to_le_bytes());
                                    smp.push(0x10);
                                    varint(&mut smp, (start_ms + k as i64 * interval_ms) as u64);
                                    field_bytes(&mut ts_buf, 0x12, &smp);
                                }
                                field_bytes(&mut raw, 0x0A, &ts_buf);
                            }
                            reqs.push(snap::raw::Encoder::new().compress_vec(&raw).expect("snappy"));
                        }
                        out.push((g, reqs));
                    }
                    out
                })
            })
            .collect();
        let mut all: Vec<(usize, Vec<Vec<u8>>)> = handles.into_iter().flat_map(|h| h.join().expect("encoder thread")).collect();
        all.sort_by_key(|(g, _)| *g);
        all.into_iter().map(|(_, r)| r).collect()
    });
    let mut slices: Vec<Vec<Vec<u8>>> = (0..nslices).map(|_| Vec::new()).collect();
    for reqs in per_group {
        for (k, r) in reqs.into_iter().enumerate() {
            slices[k].push(r);
        }
    }
    let wire_bytes = slices.iter().flatten().map(|r| r.len() as u64).sum();
    Dataset { slices, series, samples: series as u64 * steps as u64, start_ms, end_ms: start_ms + (steps as i64 - 1) * interval_ms, wire_bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_decode_to_every_sample_in_order() {
        let d = generate(3, 0.1, 15, 1_700_000_000_000, 2, 4);
        let mut n = 0;
        let mut last: std::collections::HashMap<String, i64> = Default::default();
        for req in d.slices.iter().flatten() {
            for s in pharos_model::remote_write::decode(req).expect("decodes") {
                let key = s.labels.to_string();
                assert!(last.get(&key).is_none_or(|t| *t < s.timestamp_ms), "out of order: {key}");
                last.insert(key, s.timestamp_ms);
                n += 1;
            }
        }
        assert_eq!(n as u64, d.samples);
        assert_eq!(last.len(), d.series);
    }
}
