//! The initial topology of the world: clusters of EC2 nodes, with the long-running pods
//! (kube-proxy on every node, Trino, and each team's services) already running.

use super::world::{Cluster, ContainerSpec, INSTANCE_TYPES, Node, PodPhase, PodRole, PodSpec, Rng, SimConfig, ZONES};

const MS: f64 = 1000.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

/// Builds the initial clusters and their long-running pods.
pub fn build_clusters(cfg: &SimConfig, rng: &mut Rng, teams: &[String]) -> Vec<Cluster> {
    let mut clusters = Vec::new();
    for ci in 0..cfg.clusters {
        let mut nodes = Vec::new();
        for ni in 0..cfg.nodes_per_cluster {
            let (itype, cpus, mem_gib) = *rng.pick(INSTANCE_TYPES);
            let capacity_type = if rng.chance(0.4) { "spot" } else { "on-demand" };
            let zone = ZONES[ni % ZONES.len()];
            let ip = format!("10.{}.{}.{}", ci, 16 + ni / 250, 4 + ni % 250);
            let uptime_s = rng.range(3600.0, 20.0 * 86400.0);
            let util = rng.range(0.1, 0.4);
            let cpu_seconds = (0..cpus)
                .map(|_| {
                    let busy = uptime_s * util * rng.range(0.8, 1.2);
                    [uptime_s - busy, busy * 0.03, busy * 0.005, 0.0, busy * 0.02, busy * 0.001, busy * 0.18, busy * 0.764]
                })
                .collect();
            nodes.push(Node {
                name: format!("ip-{}.ec2.internal", ip.replace('.', "-")),
                ip,
                instance_type: itype,
                capacity_type,
                zone,
                cpus,
                mem_bytes: mem_gib as u64 * 1024 * 1024 * 1024,
                boot_time_s: cfg.start_ms / 1000 - uptime_s as i64,
                cpu_seconds,
                cpu_busy: 0.0,
                mem_used: 0.0,
                net_rx: uptime_s * rng.range(1e5, 1e6),
                net_tx: uptime_s * rng.range(1e5, 1e6),
                disk_read: uptime_s * rng.range(1e4, 1e5),
                disk_written: uptime_s * rng.range(1e4, 2e5),
                fs_used: rng.range(12.0, 40.0) * GIB,
            });
        }
        let coordinator_suffix = rng.k8s_suffix(5);
        let mut cluster = Cluster {
            name: format!("cluster-{}", ci + 1),
            index: ci,
            nodes,
            pods: Vec::new(),
            spark_apps: Vec::new(),
            trino: super::trino::TrinoCluster::new(coordinator_suffix),
            next_ip: 0,
        };
        let t0 = cfg.start_ms;
        // kube-proxy on every node.
        for ni in 0..cluster.nodes.len() {
            let suffix = rng.k8s_suffix(5);
            cluster.add_pod(rng, t0 - 86_400_000, PodSpec {
                name: format!("kube-proxy-{suffix}"),
                namespace: "kube-system".into(),
                team: teams[0].clone(),
                app: "kube-proxy".into(),
                role: PodRole::Daemon,
                labels: vec![("k8s-app".into(), "kube-proxy".into())],
                annotations: vec![],
                owner: ("DaemonSet".into(), "kube-proxy".into()),
                containers: vec![ContainerSpec {
                    name: "kube-proxy".into(),
                    image: "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/kube-proxy:v1.31.3-eksbuild.2".into(),
                    cpu_request_m: 100,
                    cpu_limit_m: None,
                    mem_request: 64 * MIB as u64,
                    mem_limit: None,
                    ports: vec![],
                    cpu_base: 0.01,
                }],
                node: Some(ni),
                spark_app: None,
            });
        }
        // Trino: one coordinator and a worker per two nodes, namespace `trino` (platform team).
        super::trino::add_trino_pods(&mut cluster, rng, t0 - 3 * 3_600_000, &teams[0]);
        // Team services: `<team>-api` (2 replicas, with an envoy sidecar) and `<team>-worker`.
        for team in teams.iter().skip(if teams.len() > 1 { 1 } else { 0 }) {
            for (svc, replicas) in [("api", 2), ("worker", 1)] {
                let rs_hash = rng.k8s_suffix(10);
                for _ in 0..replicas {
                    let suffix = rng.k8s_suffix(5);
                    let mut containers = vec![ContainerSpec {
                        name: svc.into(),
                        image: format!("registry.example.com/{team}/{svc}:1.{}.{}", rng.int(0, 20), rng.int(0, 9)),
                        cpu_request_m: 250 * rng.int(1, 4),
                        cpu_limit_m: Some(2000),
                        mem_request: 512 * MIB as u64 * rng.int(1, 4),
                        mem_limit: Some(4 * GIB as u64),
                        ports: vec![("http".into(), 8080)],
                        cpu_base: rng.range(0.05, 0.6),
                    }];
                    if svc == "api" {
                        containers.push(ContainerSpec {
                            name: "envoy".into(),
                            image: "envoyproxy/envoy:v1.32.1".into(),
                            cpu_request_m: 100,
                            cpu_limit_m: Some(500),
                            mem_request: 128 * MIB as u64,
                            mem_limit: Some(256 * MIB as u64),
                            ports: vec![("admin".into(), 9901)],
                            cpu_base: 0.03,
                        });
                    }
                    let created = t0 - rng.int(600, 86_400) as i64 * 1000;
                    cluster.add_pod(rng, created, PodSpec {
                        name: format!("{team}-{svc}-{rs_hash}-{suffix}"),
                        namespace: team.clone(),
                        team: team.clone(),
                        app: format!("{team}-{svc}"),
                        role: PodRole::Service,
                        labels: vec![("pod-template-hash".into(), rs_hash.clone())],
                        annotations: vec![("prometheus.io/port".into(), "8080".into()), ("prometheus.io/scrape".into(), "true".into())],
                        owner: ("ReplicaSet".into(), format!("{team}-{svc}-{rs_hash}")),
                        containers,
                        node: None,
                        spark_app: None,
                    });
                }
            }
        }
        // Long-running pods start Running, with counters as old as the pod.
        for pod in &mut cluster.pods {
            pod.phase = PodPhase::Running;
            pod.started_ms = pod.created_ms + 2000;
            let age_s = (t0 - pod.started_ms) as f64 / MS;
            for c in &mut pod.containers {
                c.cpu_seconds = age_s * c.cpu_base * rng.range(0.8, 1.2);
            }
            pod.net_rx = age_s * rng.range(1e3, 1e5);
            pod.net_tx = age_s * rng.range(1e3, 1e5);
        }
        clusters.push(cluster);
    }
    clusters
}

