//! The deterministic model behind every emulated endpoint: clusters, nodes, teams, pods and their
//! containers, with usage counters that advance with the simulation clock.
//!
//! Everything here is derived from [`SimConfig::seed`] through one [`Rng`], consumed in a fixed
//! order, and from the simulation clock; no wall clock, no hash-map iteration order.

use std::path::PathBuf;

/// Milliseconds in a second, as `f64`, for rate × elapsed arithmetic.
const MS: f64 = 1000.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// What to simulate and how fast; every field has a default (see [`SimConfig::default`]).
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of the deterministic world (default 42).
    pub seed: u64,
    /// Emulated Kubernetes clusters (default 1).
    pub clusters: usize,
    /// Nodes per cluster (default 3).
    pub nodes_per_cluster: usize,
    /// Teams; the first is always `platform`, which owns `kube-system` and `trino` (default 3).
    pub teams: usize,
    /// Simulation clock at creation, unix milliseconds (default: 2026-11-22T13:00:00Z).
    pub start_ms: i64,
    /// Simulated time one [`super::Simulation::tick`] advances (default 1000 ms).
    pub tick_ms: u64,
    /// Where CRI logs (`pods/`), Spark event logs (`spark-events/`) and `trino-events.jsonl`
    /// are written; `None` keeps the simulation in memory (default `None`).
    pub out_dir: Option<PathBuf>,
    /// A container log file is rotated when it exceeds this size (default 1 MiB).
    pub log_max_bytes: u64,
    /// Rotated files kept per container, like the kubelet's `containerLogMaxFiles` (default 5).
    pub log_max_files: usize,
    /// Background log lines per container per tick, on average (default 1.0).
    pub log_lines_per_tick: f64,
    /// Spark applications running at once per cluster, at most (default: number of teams).
    pub spark_apps_per_cluster: usize,
    /// Trino queries completed per cluster per tick, on average (default 1.0).
    pub trino_queries_per_tick: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            clusters: 1,
            nodes_per_cluster: 3,
            teams: 3,
            start_ms: 1_795_352_400_000,
            tick_ms: 1000,
            out_dir: None,
            log_max_bytes: 1024 * 1024,
            log_max_files: 5,
            log_lines_per_tick: 1.0,
            spark_apps_per_cluster: 3,
            trino_queries_per_tick: 1.0,
        }
    }
}

/// splitmix64: small, fast, and the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    /// Uniform integer in [lo, hi] (inclusive).
    pub fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
    /// Poisson-distributed count with mean `mean` (Knuth; fine for small means).
    pub fn poisson(&mut self, mean: f64) -> u64 {
        let l = (-mean).exp();
        let (mut k, mut p) = (0u64, 1.0);
        loop {
            p *= self.f64();
            if p <= l || k > 1000 {
                return k;
            }
            k += 1;
        }
    }
    /// Lowercase hex of `n` random nibbles.
    pub fn hex(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from_digit((self.next_u64() % 16) as u32, 16).unwrap_or('0')).collect()
    }
    /// Kubernetes-style random suffix (`[bcdfghjklmnpqrstvwxz2456789]`).
    pub fn k8s_suffix(&mut self, n: usize) -> String {
        const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..n).map(|_| ALPHA[(self.next_u64() % ALPHA.len() as u64) as usize] as char).collect()
    }
    /// A version-4 UUID string.
    pub fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
    }
}

/// EC2 instance types the nodes are drawn from: (name, vCPUs, memory GiB).
pub const INSTANCE_TYPES: &[(&str, u32, u32)] =
    &[("m5.2xlarge", 8, 32), ("m5.4xlarge", 16, 64), ("r5.2xlarge", 8, 64), ("c5.4xlarge", 16, 32)];
/// Availability zones.
pub const ZONES: &[&str] = &["us-east-1a", "us-east-1b", "us-east-1c"];
/// Team names; index 0 is the platform team.
pub const TEAM_NAMES: &[&str] =
    &["platform", "data-eng", "analytics", "ml-platform", "payments", "search", "growth", "risk"];
/// Modes of `node_cpu_seconds_total`, in node-exporter's order.
pub const CPU_MODES: [&str; 8] = ["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"];

/// A Kubernetes node (EC2 instance).
#[derive(Debug, Clone)]
pub struct Node {
    /// `ip-10-…ec2.internal`.
    pub name: String,
    /// Node InternalIP.
    pub ip: String,
    /// `node.kubernetes.io/instance-type`.
    pub instance_type: &'static str,
    /// `karpenter.sh/capacity-type`: `spot` or `on-demand`.
    pub capacity_type: &'static str,
    /// `topology.kubernetes.io/zone`.
    pub zone: &'static str,
    /// vCPUs.
    pub cpus: u32,
    /// Physical memory.
    pub mem_bytes: u64,
    /// Unix seconds of boot.
    pub boot_time_s: i64,
    /// Per CPU, seconds per mode (order of [`CPU_MODES`]).
    pub cpu_seconds: Vec<[f64; 8]>,
    /// CPU cores in use during the last tick (pods + system daemons).
    pub cpu_busy: f64,
    /// Bytes in use (containers' working sets + system).
    pub mem_used: f64,
    /// eth0 received / transmitted bytes.
    pub net_rx: f64,
    /// eth0 transmitted bytes.
    pub net_tx: f64,
    /// Disk read / written bytes.
    pub disk_read: f64,
    /// Disk written bytes.
    pub disk_written: f64,
    /// Root filesystem bytes in use.
    pub fs_used: f64,
}

/// What a pod runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodRole {
    /// A Deployment replica of a team service.
    Service,
    /// Per-node DaemonSet pod (kube-proxy).
    Daemon,
    /// A Spark driver.
    SparkDriver,
    /// A Spark executor.
    SparkExecutor,
    /// The Trino coordinator.
    TrinoCoordinator,
    /// A Trino worker.
    TrinoWorker,
}

/// Kubernetes pod phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    /// Created, containers not yet running.
    Pending,
    /// Running.
    Running,
    /// All containers exited 0.
    Succeeded,
    /// A container failed.
    Failed,
}

impl PodPhase {
    /// As Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PodPhase::Pending => "Pending",
            PodPhase::Running => "Running",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
        }
    }
}

/// A log line a container will write during the current tick.
#[derive(Debug, Clone)]
pub struct PendingLine {
    /// Write time, unix nanoseconds.
    pub ts_ns: i64,
    /// `stdout` or `stderr`.
    pub stderr: bool,
    /// The line without newline (may be long; the writer splits it into partials).
    pub text: String,
}

/// One container of a pod.
#[derive(Debug, Clone)]
pub struct Container {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// CPU request, millicores.
    pub cpu_request_m: u64,
    /// CPU limit, millicores.
    pub cpu_limit_m: Option<u64>,
    /// Memory request, bytes.
    pub mem_request: u64,
    /// Memory limit, bytes.
    pub mem_limit: Option<u64>,
    /// Container ports: (name, port).
    pub ports: Vec<(String, u16)>,
    /// Typical CPU use, cores.
    pub cpu_base: f64,
    /// CPU use during the last tick, cores.
    pub cpu_rate: f64,
    /// Cumulative CPU seconds (counter).
    pub cpu_seconds: f64,
    /// Working-set bytes (gauge).
    pub mem_ws: f64,
    /// containerd container id (64 hex).
    pub container_id: String,
    /// Lines to write this tick.
    pub pending: Vec<PendingLine>,
}

/// A pod and what the kubelet, cAdvisor and kube-state-metrics know about it.
#[derive(Debug, Clone)]
pub struct Pod {
    /// metadata.uid.
    pub uid: String,
    /// metadata.name.
    pub name: String,
    /// metadata.namespace.
    pub namespace: String,
    /// Owning team (label `team`).
    pub team: String,
    /// Label `app`.
    pub app: String,
    /// Index of the node in its cluster.
    pub node: usize,
    /// status.podIP.
    pub ip: String,
    /// creationTimestamp, unix ms.
    pub created_ms: i64,
    /// When the containers started (Pending before), unix ms.
    pub started_ms: i64,
    /// status.phase.
    pub phase: PodPhase,
    /// When the pod reached Succeeded/Failed, unix ms.
    pub finished_ms: Option<i64>,
    /// ownerReferences[0]: (kind, name).
    pub owner: (String, String),
    /// All labels (incl. `team` and `app`), sorted by key.
    pub labels: Vec<(String, String)>,
    /// Annotations, sorted by key.
    pub annotations: Vec<(String, String)>,
    /// Containers.
    pub containers: Vec<Container>,
    /// What it runs.
    pub role: PodRole,
    /// Spark application id, for Spark pods.
    pub spark_app: Option<String>,
    /// Pod network received / transmitted bytes.
    pub net_rx: f64,
    /// Pod network transmitted bytes.
    pub net_tx: f64,
}

impl Pod {
    /// True while the kubelet would run its containers.
    pub fn is_running(&self) -> bool {
        self.phase == PodPhase::Running
    }
}

/// Ingredients for a new pod; see [`Cluster::add_pod`].
pub struct PodSpec {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Team label.
    pub team: String,
    /// App label.
    pub app: String,
    /// Role.
    pub role: PodRole,
    /// Extra labels.
    pub labels: Vec<(String, String)>,
    /// Annotations.
    pub annotations: Vec<(String, String)>,
    /// (kind, name) of the owner.
    pub owner: (String, String),
    /// Containers: (name, image, cpu request m, cpu limit m, mem request bytes, mem limit, ports, cpu base).
    pub containers: Vec<ContainerSpec>,
    /// Pinned node, else least requested CPU.
    pub node: Option<usize>,
    /// Spark app id.
    pub spark_app: Option<String>,
}

/// Ingredients for a container.
pub struct ContainerSpec {
    /// Name.
    pub name: String,
    /// Image.
    pub image: String,
    /// CPU request, millicores.
    pub cpu_request_m: u64,
    /// CPU limit, millicores.
    pub cpu_limit_m: Option<u64>,
    /// Memory request, bytes.
    pub mem_request: u64,
    /// Memory limit, bytes.
    pub mem_limit: Option<u64>,
    /// Ports.
    pub ports: Vec<(String, u16)>,
    /// Typical CPU use, cores.
    pub cpu_base: f64,
}

/// One emulated Kubernetes cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Cluster name (`k8s.cluster.name`).
    pub name: String,
    /// Index of the cluster (used in IP ranges).
    pub index: usize,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Pods, in creation order; finished pods are removed a few ticks after they end.
    pub pods: Vec<Pod>,
    /// Spark applications (running, and finished ones until their pods are gone).
    pub spark_apps: Vec<super::spark::SparkApp>,
    /// The Trino cluster.
    pub trino: super::trino::TrinoCluster,
    pub(super) next_ip: u32,
}

impl Cluster {
    /// Adds a pod (Pending until the next tick starts it) and returns its index.
    pub fn add_pod(&mut self, rng: &mut Rng, now_ms: i64, spec: PodSpec) -> usize {
        let node = spec.node.unwrap_or_else(|| self.least_requested_node());
        self.next_ip += 1;
        let ip = format!("10.{}.{}.{}", 100 + self.index, 64 + (self.next_ip / 250) % 128, 2 + self.next_ip % 250);
        let mut labels = spec.labels;
        labels.push(("app".into(), spec.app.clone()));
        labels.push(("team".into(), spec.team.clone()));
        labels.sort();
        labels.dedup_by(|a, b| a.0 == b.0);
        let containers = spec
            .containers
            .into_iter()
            .map(|c| Container {
                mem_ws: c.mem_request as f64 * rng.range(0.3, 0.6),
                cpu_rate: 0.0,
                cpu_seconds: 0.0,
                container_id: rng.hex(64),
                pending: Vec::new(),
                name: c.name,
                image: c.image,
                cpu_request_m: c.cpu_request_m,
                cpu_limit_m: c.cpu_limit_m,
                mem_request: c.mem_request,
                mem_limit: c.mem_limit,
                ports: c.ports,
                cpu_base: c.cpu_base,
            })
            .collect();
        let mut annotations = spec.annotations;
        annotations.sort();
        self.pods.push(Pod {
            uid: rng.uuid(),
            name: spec.name,
            namespace: spec.namespace,
            team: spec.team,
            app: spec.app,
            node,
            ip,
            created_ms: now_ms,
            started_ms: now_ms,
            phase: PodPhase::Pending,
            finished_ms: None,
            owner: spec.owner,
            labels,
            annotations,
            containers,
            role: spec.role,
            spark_app: spec.spark_app,
            net_rx: 0.0,
            net_tx: 0.0,
        });
        self.pods.len() - 1
    }

    fn least_requested_node(&self) -> usize {
        let mut best = (0usize, f64::MAX);
        for (i, n) in self.nodes.iter().enumerate() {
            let req: u64 = self
                .pods
                .iter()
                .filter(|p| p.node == i && p.finished_ms.is_none())
                .flat_map(|p| p.containers.iter().map(|c| c.cpu_request_m))
                .sum();
            let share = req as f64 / (n.cpus as f64 * 1000.0);
            if share < best.1 {
                best = (i, share);
            }
        }
        best.0
    }

    /// Index of the pod with this uid.
    pub fn pod_index(&self, uid: &str) -> Option<usize> {
        self.pods.iter().position(|p| p.uid == uid)
    }

    /// Allocatable CPU millicores of a node (capacity minus kube/system reserved, EKS-style).
    pub fn allocatable_cpu_m(node: &Node) -> u64 {
        node.cpus as u64 * 1000 - 70 - 10 * node.cpus as u64
    }

    /// Allocatable memory bytes of a node.
    pub fn allocatable_mem(node: &Node) -> u64 {
        node.mem_bytes - (node.mem_bytes / 20) - 100 * 1024 * 1024
    }
}

/// Advances usage counters of every running container and every node by `dt_ms`.
pub fn advance_usage(cluster: &mut Cluster, rng: &mut Rng, now_ms: i64, dt_ms: u64) {
    let dt = dt_ms as f64 / MS;
    let mut node_busy = vec![0.15f64; cluster.nodes.len()];
    let mut node_mem = vec![1.5 * GIB; cluster.nodes.len()];
    let trino_load = cluster.trino.load;
    for pod in &mut cluster.pods {
        if pod.phase == PodPhase::Pending && now_ms >= pod.created_ms + 2000 {
            pod.phase = PodPhase::Running;
            pod.started_ms = now_ms;
        }
        if !pod.is_running() {
            continue;
        }
        let load = match pod.role {
            PodRole::TrinoWorker => 0.3 + trino_load,
            _ => 1.0,
        };
        let mut pod_cpu = 0.0;
        for c in &mut pod.containers {
            let mut rate = c.cpu_base * load * rng.range(0.7, 1.3);
            if let Some(limit) = c.cpu_limit_m {
                rate = rate.min(limit as f64 / 1000.0);
            }
            c.cpu_rate = rate;
            c.cpu_seconds += rate * dt;
            pod_cpu += rate;
            let ceiling = c.mem_limit.map(|l| l as f64 * 0.95).unwrap_or(c.mem_request as f64 * 1.5);
            c.mem_ws = (c.mem_ws * rng.range(0.97, 1.035)).clamp(c.mem_request as f64 * 0.2, ceiling);
            node_mem[pod.node] += c.mem_ws;
        }
        pod.net_rx += dt * (2e4 + pod_cpu * 4e6) * rng.range(0.5, 1.5);
        pod.net_tx += dt * (1e4 + pod_cpu * 2e6) * rng.range(0.5, 1.5);
        node_busy[pod.node] += pod_cpu;
    }
    for (ni, node) in cluster.nodes.iter_mut().enumerate() {
        let busy = node_busy[ni].min(node.cpus as f64 * 0.97);
        node.cpu_busy = busy;
        node.mem_used = node_mem[ni].min(node.mem_bytes as f64 * 0.97);
        let f = busy / node.cpus as f64;
        for cpu in &mut node.cpu_seconds {
            let fi = (f * rng.range(0.85, 1.15)).clamp(0.0, 0.98);
            let modes = [0.0, 0.03, 0.005, 0.0, 0.02, 0.0, 0.18, 0.765];
            let mut used = 0.0;
            for (m, share) in modes.iter().enumerate().skip(1) {
                cpu[m] += dt * fi * share;
                used += dt * fi * share;
            }
            cpu[5] += dt * 0.001; // steal
            cpu[0] += dt - used - dt * 0.001;
        }
        node.net_rx += dt * (5e4 + busy * 3e6) * rng.range(0.6, 1.4);
        node.net_tx += dt * (5e4 + busy * 2e6) * rng.range(0.6, 1.4);
        node.disk_read += dt * (1e4 + busy * 5e5) * rng.range(0.5, 1.5);
        let written = dt * (2e4 + busy * 8e5) * rng.range(0.5, 1.5);
        node.disk_written += written;
        node.fs_used = (node.fs_used + written * 0.01).min(90.0 * GIB);
    }
}

/// `team` of a namespace: `kube-system` and `trino` belong to the platform team, `spark-<team>`
/// and `<team>` to that team.
pub fn team_of_namespace(namespace: &str, teams: &[String]) -> String {
    let t = namespace.strip_prefix("spark-").unwrap_or(namespace);
    teams.iter().find(|x| x.as_str() == t).cloned().unwrap_or_else(|| teams[0].clone())
}

/// Team names for a config: `platform` first, then the others (suffixed when more than 8).
pub fn team_names(n: usize) -> Vec<String> {
    (0..n.max(1))
        .map(|i| {
            let base = TEAM_NAMES[i % TEAM_NAMES.len()];
            if i < TEAM_NAMES.len() { base.to_string() } else { format!("{base}-{}", i / TEAM_NAMES.len()) }
        })
        .collect()
}
