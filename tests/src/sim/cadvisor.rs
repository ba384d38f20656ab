//! The kubelet's `/metrics/cadvisor` (cAdvisor container metrics, with timestamps) and
//! `/metrics/resource` (the resource-metrics API the metrics-server reads) for one node.

use super::exposition::Exposition;
use super::world::{Cluster, Pod};

fn pod_cgroup(pod: &Pod) -> String {
    let guaranteed = pod.containers.iter().all(|c| c.cpu_limit_m == Some(c.cpu_request_m) && c.mem_limit == Some(c.mem_request));
    let uid = pod.uid.replace('-', "_");
    if guaranteed {
        format!("/kubepods.slice/kubepods-pod{uid}.slice")
    } else {
        format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice")
    }
}

fn running_pods(cluster: &Cluster, node: usize) -> impl Iterator<Item = &Pod> {
    cluster.pods.iter().filter(move |p| p.node == node && p.is_running())
}

/// `/metrics/cadvisor` of node `node` of `cluster` at `now_ms`.
pub fn render_cadvisor(cluster: &Cluster, node: usize, now_ms: i64) -> String {
    let n = &cluster.nodes[node];
    let mut e = Exposition::new();
    let ts = Some(now_ms);
    e.family("container_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed in seconds.");
    let root_cpu: f64 = n.cpu_seconds.iter().map(|c| c[1..].iter().sum::<f64>()).sum();
    e.sample_at("container_cpu_usage_seconds_total", &[("container", ""), ("id", "/"), ("image", ""), ("name", ""), ("namespace", ""), ("pod", "")], root_cpu, ts);
    for pod in running_pods(cluster, node) {
        let cg = pod_cgroup(pod);
        let total: f64 = pod.containers.iter().map(|c| c.cpu_seconds).sum();
        e.sample_at("container_cpu_usage_seconds_total", &[("container", ""), ("id", &cg), ("image", ""), ("name", ""), ("namespace", &pod.namespace), ("pod", &pod.name)], total, ts);
        for c in &pod.containers {
            let id = format!("{cg}/cri-containerd-{}.scope", c.container_id);
            e.sample_at("container_cpu_usage_seconds_total", &[("container", &c.name), ("id", &id), ("image", &c.image), ("name", &c.container_id), ("namespace", &pod.namespace), ("pod", &pod.name)], c.cpu_seconds, ts);
        }
    }
    for (family, help, factor) in [
        ("container_memory_rss", "Size of RSS in bytes.", 0.85),
        ("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", 1.3),
        ("container_memory_working_set_bytes", "Current working set in bytes.", 1.0),
    ] {
        e.family(family, "gauge", help);
        e.sample_at(family, &[("container", ""), ("id", "/"), ("image", ""), ("name", ""), ("namespace", ""), ("pod", "")], (n.mem_used * factor).floor(), ts);
        for pod in running_pods(cluster, node) {
            let cg = pod_cgroup(pod);
            let total: f64 = pod.containers.iter().map(|c| c.mem_ws).sum();
            e.sample_at(family, &[("container", ""), ("id", &cg), ("image", ""), ("name", ""), ("namespace", &pod.namespace), ("pod", &pod.name)], (total * factor).floor(), ts);
            for c in &pod.containers {
                let id = format!("{cg}/cri-containerd-{}.scope", c.container_id);
                e.sample_at(family, &[("container", &c.name), ("id", &id), ("image", &c.image), ("name", &c.container_id), ("namespace", &pod.namespace), ("pod", &pod.name)], (c.mem_ws * factor).floor(), ts);
            }
        }
    }
    for (family, help, rx) in [
        ("container_network_receive_bytes_total", "Cumulative count of bytes received", true),
        ("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", false),
    ] {
        e.family(family, "counter", help);
        for pod in running_pods(cluster, node) {
            let cg = pod_cgroup(pod);
            let v = if rx { pod.net_rx } else { pod.net_tx };
            e.sample_at(family, &[("container", ""), ("id", &cg), ("image", "registry.k8s.io/pause:3.10"), ("interface", "eth0"), ("name", ""), ("namespace", &pod.namespace), ("pod", &pod.name)], v.floor(), ts);
        }
    }
    e.family("container_spec_cpu_quota", "gauge", "CPU quota of the container.");
    for pod in running_pods(cluster, node) {
        let cg = pod_cgroup(pod);
        for c in pod.containers.iter().filter(|c| c.cpu_limit_m.is_some()) {
            let id = format!("{cg}/cri-containerd-{}.scope", c.container_id);
            let quota = c.cpu_limit_m.unwrap_or(0) as f64 * 100.0;
            e.sample_at("container_spec_cpu_quota", &[("container", &c.name), ("id", &id), ("image", &c.image), ("name", &c.container_id), ("namespace", &pod.namespace), ("pod", &pod.name)], quota, ts);
        }
    }
    e.family("container_start_time_seconds", "gauge", "Start time of the container since unix epoch in seconds.");
    for pod in running_pods(cluster, node) {
        let cg = pod_cgroup(pod);
        for c in &pod.containers {
            let id = format!("{cg}/cri-containerd-{}.scope", c.container_id);
            e.sample_at("container_start_time_seconds", &[("container", &c.name), ("id", &id), ("image", &c.image), ("name", &c.container_id), ("namespace", &pod.namespace), ("pod", &pod.name)], (pod.started_ms / 1000) as f64, ts);
        }
    }
    e.finish()
}

/// `/metrics/resource` of node `node` of `cluster` at `now_ms`.
pub fn render_resource(cluster: &Cluster, node: usize, now_ms: i64) -> String {
    let n = &cluster.nodes[node];
    let ts = Some(now_ms);
    let mut e = Exposition::new();
    e.family("container_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the container in core-seconds");
    for pod in running_pods(cluster, node) {
        for c in &pod.containers {
            e.sample_at("container_cpu_usage_seconds_total", &[("container", &c.name), ("namespace", &pod.namespace), ("pod", &pod.name)], c.cpu_seconds, ts);
        }
    }
    e.family("container_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the container in bytes");
    for pod in running_pods(cluster, node) {
        for c in &pod.containers {
            e.sample_at("container_memory_working_set_bytes", &[("container", &c.name), ("namespace", &pod.namespace), ("pod", &pod.name)], c.mem_ws.floor(), ts);
        }
    }
    e.family("container_start_time_seconds", "gauge", "[STABLE] Start time of the container since unix epoch in seconds");
    for pod in running_pods(cluster, node) {
        for c in &pod.containers {
            e.sample_at("container_start_time_seconds", &[("container", &c.name), ("namespace", &pod.namespace), ("pod", &pod.name)], (pod.started_ms / 1000) as f64, ts);
        }
    }
    let node_cpu: f64 = n.cpu_seconds.iter().map(|c| c[1..].iter().sum::<f64>()).sum();
    e.family("node_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the node in core-seconds");
    e.sample_at("node_cpu_usage_seconds_total", &[], node_cpu, ts);
    e.family("node_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the node in bytes");
    e.sample_at("node_memory_working_set_bytes", &[], n.mem_used.floor(), ts);
    e.family("pod_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the pod in core-seconds");
    for pod in running_pods(cluster, node) {
        let total: f64 = pod.containers.iter().map(|c| c.cpu_seconds).sum();
        e.sample_at("pod_cpu_usage_seconds_total", &[("namespace", &pod.namespace), ("pod", &pod.name)], total, ts);
    }
    e.family("pod_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the pod in bytes");
    for pod in running_pods(cluster, node) {
        let total: f64 = pod.containers.iter().map(|c| c.mem_ws).sum();
        e.sample_at("pod_memory_working_set_bytes", &[("namespace", &pod.namespace), ("pod", &pod.name)], total.floor(), ts);
    }
    e.family("resource_scrape_error", "gauge", "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise");
    e.sample("resource_scrape_error", &[], 0.0);
    e.finish()
}
