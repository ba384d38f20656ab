//! node-exporter's `/metrics` for one emulated node: CPU seconds per cpu and mode, memory,
//! filesystems, network and disk counters, load, boot time, uname.

use super::exposition::Exposition;
use super::world::{CPU_MODES, Node};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The exposition body of node-exporter on `node` at `now_ms`.
pub fn render(node: &Node, now_ms: i64) -> String {
    let mut e = Exposition::new();
    e.family("node_boot_time_seconds", "gauge", "Node boot time, in unixtime.");
    e.sample("node_boot_time_seconds", &[], node.boot_time_s as f64);
    e.family("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.");
    for (i, cpu) in node.cpu_seconds.iter().enumerate() {
        let id = i.to_string();
        for (m, mode) in CPU_MODES.iter().enumerate() {
            e.sample("node_cpu_seconds_total", &[("cpu", &id), ("mode", mode)], round2(cpu[m]));
        }
    }
    let fs: [(&str, &str, &str, f64, f64); 2] = [
        ("/dev/nvme0n1p1", "xfs", "/", 100.0 * GIB, node.fs_used),
        ("/dev/nvme0n1p128", "vfat", "/boot/efi", 0.01 * GIB, 0.0013 * GIB),
    ];
    for (name, help, pick) in [
        ("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.", 0),
        ("node_filesystem_free_bytes", "Filesystem free space in bytes.", 1),
        ("node_filesystem_size_bytes", "Filesystem size in bytes.", 2),
    ] {
        e.family(name, "gauge", help);
        for (dev, fstype, mp, size, used) in fs {
            let v = match pick {
                0 => size - used - 0.02 * size,
                1 => size - used,
                _ => size,
            };
            e.sample(name, &[("device", dev), ("fstype", fstype), ("mountpoint", mp)], v.floor());
        }
    }
    let load = node.cpu_busy;
    for (name, v) in [("node_load1", load), ("node_load15", load * 0.9), ("node_load5", load * 0.95)] {
        e.family(name, "gauge", &format!("{}m load average.", &name[9..]));
        e.sample(name, &[], round2(v));
    }
    let total = node.mem_bytes as f64;
    let avail = (total - node.mem_used).max(total * 0.03);
    for (name, v) in [
        ("node_memory_Buffers_bytes", 0.01 * total),
        ("node_memory_Cached_bytes", avail * 0.4),
        ("node_memory_MemAvailable_bytes", avail),
        ("node_memory_MemFree_bytes", avail * 0.55),
        ("node_memory_MemTotal_bytes", total),
    ] {
        e.family(name, "gauge", &format!("Memory information field {}.", &name[12..]));
        e.sample(name, &[], v.floor());
    }
    for (name, help, rx) in [
        ("node_network_receive_bytes_total", "Network device statistic receive_bytes.", true),
        ("node_network_transmit_bytes_total", "Network device statistic transmit_bytes.", false),
    ] {
        e.family(name, "counter", help);
        e.sample(name, &[("device", "eth0")], (if rx { node.net_rx } else { node.net_tx }).floor());
        e.sample(name, &[("device", "lo")], (if rx { node.net_rx } else { node.net_tx } * 0.05).floor());
    }
    e.family("node_disk_read_bytes_total", "counter", "The total number of bytes read successfully.");
    e.sample("node_disk_read_bytes_total", &[("device", "nvme0n1")], node.disk_read.floor());
    e.family("node_disk_written_bytes_total", "counter", "The total number of bytes written successfully.");
    e.sample("node_disk_written_bytes_total", &[("device", "nvme0n1")], node.disk_written.floor());
    e.family("node_time_seconds", "gauge", "System time in seconds since epoch (1970).");
    e.sample("node_time_seconds", &[], now_ms as f64 / 1000.0);
    e.family("node_uname_info", "gauge", "Labeled system information as provided by the uname system call.");
    e.sample("node_uname_info", &[("domainname", "(none)"), ("machine", "x86_64"), ("nodename", &node.name),
        ("release", "6.1.119-129.201.amzn2023.x86_64"), ("sysname", "Linux"), ("version", "#1 SMP PREEMPT_DYNAMIC")], 1.0);
    e.finish()
}

/// Rounds to hundredths, as node-exporter's USER_HZ clock ticks do.
fn round2(v: f64) -> f64 {
    (v * 100.0).floor() / 100.0
}
