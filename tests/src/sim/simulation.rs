//! [`Simulation`]: the world, its clock, and the files it writes on every tick.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use super::logs::LogWriter;
use super::spark::EventLogWrite;
use super::world::{self, Cluster, Rng, SimConfig};
use super::{cadvisor, kube_state, kubelet_pods, logs, node_exporter, spark, trino};

/// Trino events kept for [`Simulation::take_trino_events`] when nobody drains them.
const OUTBOX_MAX: usize = 10_000;

/// What a Spark driver's UI answers.
#[derive(Debug, Clone, PartialEq)]
pub enum SparkAnswer {
    /// The SparkContext is starting: every path answers this HTML placeholder with 200.
    Starting(&'static str),
    /// The body of the requested endpoint.
    Ready(String),
}

/// The simulated world plus its outputs.
pub struct Simulation {
    cfg: SimConfig,
    rng: Rng,
    now_ms: i64,
    ticks: u64,
    teams: Vec<String>,
    clusters: Vec<Cluster>,
    logs: Option<LogWriter>,
    trino_outbox: Vec<String>,
}

impl Simulation {
    /// Builds the world from `cfg` and creates the output directories.
    pub fn new(cfg: SimConfig) -> io::Result<Simulation> {
        let mut rng = Rng::new(cfg.seed);
        let teams = world::team_names(cfg.teams);
        let clusters = super::topology::build_clusters(&cfg, &mut rng, &teams);
        let logs = match &cfg.out_dir {
            Some(dir) => {
                fs::create_dir_all(dir.join("spark-events"))?;
                Some(LogWriter::new(dir.join("pods"), cfg.log_max_bytes, cfg.log_max_files)?)
            }
            None => None,
        };
        Ok(Simulation { now_ms: cfg.start_ms, cfg, rng, ticks: 0, teams, clusters, logs, trino_outbox: Vec::new() })
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Simulation clock, unix ms.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Ticks so far.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Team names (`platform` first).
    pub fn teams(&self) -> &[String] {
        &self.teams
    }

    /// The clusters.
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// Names of the nodes of `cluster` (empty when unknown).
    pub fn node_names(&self, cluster: &str) -> Vec<String> {
        self.cluster(cluster).map(|c| c.nodes.iter().map(|n| n.name.clone()).collect()).unwrap_or_default()
    }

    /// Ids of the Spark applications whose driver UI is up in `cluster`.
    pub fn spark_apps(&self, cluster: &str) -> Vec<String> {
        self.cluster(cluster)
            .map(|c| c.spark_apps.iter().filter(|a| a.finished_ms.is_none()).map(|a| a.id.clone()).collect())
            .unwrap_or_default()
    }

    fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    fn node(&self, cluster: &str, node: &str) -> Option<(&Cluster, usize)> {
        let c = self.cluster(cluster)?;
        Some((c, c.nodes.iter().position(|n| n.name == node)?))
    }

    /// Advances the clock by `tick_ms`: usage counters, Spark lifecycles, Trino queries, logs.
    pub fn tick(&mut self) -> io::Result<()> {
        let t0 = self.now_ms;
        let t1 = t0 + self.cfg.tick_ms as i64;
        self.now_ms = t1;
        self.ticks += 1;
        let mut event_writes = Vec::new();
        let mut trino_events = Vec::new();
        for cluster in &mut self.clusters {
            world::advance_usage(cluster, &mut self.rng, t1, self.cfg.tick_ms);
            spark::maybe_start(cluster, &mut self.rng, &self.cfg, &self.teams, t1, &mut event_writes);
            let before: Vec<(String, String, String)> = cluster.pods.iter().map(|p| (p.namespace.clone(), p.name.clone(), p.uid.clone())).collect();
            spark::advance(cluster, &mut self.rng, t0, t1, &mut event_writes);
            if let Some(writer) = &mut self.logs {
                // Like the kubelet, delete the log directory of a pod once the pod is gone.
                for (ns, name, uid) in before.iter().filter(|(_, _, uid)| cluster.pod_index(uid).is_none()) {
                    writer.remove_pod(ns, name, uid)?;
                }
            }
            trino_events.extend(trino::advance(cluster, &mut self.rng, &self.teams, self.cfg.trino_queries_per_tick, t0, t1));
            for pod in &mut cluster.pods {
                logs::chatter(pod, &mut self.rng, self.cfg.log_lines_per_tick, t0, t1);
            }
        }
        self.write_outputs(t1, event_writes, &trino_events)?;
        self.trino_outbox.extend(trino_events);
        if self.trino_outbox.len() > OUTBOX_MAX {
            let excess = self.trino_outbox.len() - OUTBOX_MAX;
            self.trino_outbox.drain(..excess);
        }
        Ok(())
    }

    fn write_outputs(&mut self, now_ms: i64, event_writes: Vec<EventLogWrite>, trino_events: &[String]) -> io::Result<()> {
        let Some(out) = self.cfg.out_dir.clone() else {
            for c in &mut self.clusters {
                c.pods.iter_mut().flat_map(|p| p.containers.iter_mut()).for_each(|c| c.pending.clear());
            }
            return Ok(());
        };
        if let Some(writer) = &mut self.logs {
            for cluster in &mut self.clusters {
                for pi in 0..cluster.pods.len() {
                    for ci in 0..cluster.pods[pi].containers.len() {
                        let mut lines = std::mem::take(&mut cluster.pods[pi].containers[ci].pending);
                        lines.sort_by_key(|l| l.ts_ns);
                        writer.write(&cluster.pods[pi], &cluster.pods[pi].containers[ci], &lines, now_ms)?;
                    }
                }
            }
        }
        let events_dir = out.join("spark-events");
        for w in event_writes {
            match w {
                EventLogWrite::Append { app, line } => {
                    let mut f = OpenOptions::new().create(true).append(true).open(events_dir.join(format!("{app}.inprogress")))?;
                    f.write_all(line.as_bytes())?;
                    f.write_all(b"\n")?;
                }
                EventLogWrite::Complete { app } => {
                    fs::rename(events_dir.join(format!("{app}.inprogress")), events_dir.join(&app))?;
                }
            }
        }
        if !trino_events.is_empty() {
            let mut f = OpenOptions::new().create(true).append(true).open(out.join("trino-events.jsonl"))?;
            for e in trino_events {
                f.write_all(e.as_bytes())?;
                f.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    /// Takes the QueryCompletedEvent JSON documents produced since the last call.
    pub fn take_trino_events(&mut self) -> Vec<String> {
        std::mem::take(&mut self.trino_outbox)
    }

    /// node-exporter `/metrics` of a node.
    pub fn node_exporter(&self, cluster: &str, node: &str) -> Option<String> {
        let (c, n) = self.node(cluster, node)?;
        Some(node_exporter::render(&c.nodes[n], self.now_ms))
    }

    /// kubelet `/metrics/cadvisor` of a node.
    pub fn cadvisor(&self, cluster: &str, node: &str) -> Option<String> {
        let (c, n) = self.node(cluster, node)?;
        Some(cadvisor::render_cadvisor(c, n, self.now_ms))
    }

    /// kubelet `/metrics/resource` of a node.
    pub fn resource_metrics(&self, cluster: &str, node: &str) -> Option<String> {
        let (c, n) = self.node(cluster, node)?;
        Some(cadvisor::render_resource(c, n, self.now_ms))
    }

    /// kubelet `/pods` of a node.
    pub fn kubelet_pods(&self, cluster: &str, node: &str) -> Option<String> {
        let (c, n) = self.node(cluster, node)?;
        Some(kubelet_pods::render(c, n))
    }

    /// kube-state-metrics `/metrics` of a cluster.
    pub fn kube_state(&self, cluster: &str) -> Option<String> {
        self.cluster(cluster).map(kube_state::render)
    }

    /// Trino coordinator `/metrics` of a cluster.
    pub fn trino_metrics(&self, cluster: &str) -> Option<String> {
        self.cluster(cluster).map(trino::metrics)
    }

    /// A Spark driver endpoint: `executors` selects `/metrics/executors/prometheus`, else
    /// `/metrics/prometheus/`. `None` when the application is unknown or finished.
    pub fn spark_driver(&self, cluster: &str, app: &str, executors: bool) -> Option<SparkAnswer> {
        let a = self.cluster(cluster)?.spark_apps.iter().find(|a| a.id == app && a.finished_ms.is_none())?;
        if self.now_ms < a.ready_ms {
            return Some(SparkAnswer::Starting(spark::PLACEHOLDER_BODY));
        }
        Some(SparkAnswer::Ready(if executors { spark::executors_metrics(a) } else { spark::driver_metrics(a, self.now_ms) }))
    }

    /// Every endpoint path served now (relative to the server's base URL).
    pub fn endpoint_paths(&self) -> Vec<String> {
        let mut v = Vec::new();
        for c in &self.clusters {
            for n in &c.nodes {
                let p = format!("/c/{}/n/{}", c.name, n.name);
                v.push(format!("{p}/node-exporter/metrics"));
                v.push(format!("{p}/kubelet/pods"));
                v.push(format!("{p}/kubelet/metrics/cadvisor"));
                v.push(format!("{p}/kubelet/metrics/resource"));
            }
            v.push(format!("/c/{}/kube-state-metrics/metrics", c.name));
            v.push(format!("/c/{}/trino/metrics", c.name));
            for a in c.spark_apps.iter().filter(|a| a.finished_ms.is_none()) {
                v.push(format!("/c/{}/spark/{}/metrics/prometheus/", c.name, a.id));
                v.push(format!("/c/{}/spark/{}/metrics/executors/prometheus", c.name, a.id));
            }
        }
        v
    }

    /// Every scrape endpoint that exists now as Prometheus file_sd target groups, for an agent's
    /// `scrape.file_targets` (`__metrics_path__` carries the path under `address`; Spark servlet
    /// endpoints are marked with `__spark_endpoint__`).
    pub fn file_sd_groups(&self, address: &str) -> serde_json::Value {
        let group = |path: String, labels: serde_json::Value| {
            let mut l = labels;
            l["__metrics_path__"] = serde_json::Value::String(path);
            serde_json::json!({"targets": [address], "labels": l})
        };
        let mut groups = Vec::new();
        for c in &self.clusters {
            for n in &c.nodes {
                groups.push(group(
                    format!("/c/{}/n/{}/node-exporter/metrics", c.name, n.name),
                    serde_json::json!({"job": "node-exporter", "cluster": c.name, "node": n.name}),
                ));
                for endpoint in ["cadvisor", "resource"] {
                    groups.push(group(
                        format!("/c/{}/n/{}/kubelet/metrics/{endpoint}", c.name, n.name),
                        serde_json::json!({"job": "kubelet", "cluster": c.name, "node": n.name, "metrics_path": format!("/metrics/{endpoint}")}),
                    ));
                }
            }
            groups.push(group(
                format!("/c/{}/kube-state-metrics/metrics", c.name),
                serde_json::json!({"job": "kube-state-metrics", "cluster": c.name}),
            ));
            groups.push(group(format!("/c/{}/trino/metrics", c.name), serde_json::json!({"job": "trino", "cluster": c.name})));
            for a in c.spark_apps.iter().filter(|a| a.finished_ms.is_none()) {
                groups.push(group(
                    format!("/c/{}/spark/{}/metrics/prometheus/", c.name, a.id),
                    serde_json::json!({"job": "spark-driver", "cluster": c.name, "spark_app_id": a.id, "__spark_endpoint__": "driver"}),
                ));
                groups.push(group(
                    format!("/c/{}/spark/{}/metrics/executors/prometheus", c.name, a.id),
                    serde_json::json!({"job": "spark-executors", "cluster": c.name, "__spark_endpoint__": "executors"}),
                ));
            }
        }
        serde_json::Value::Array(groups)
    }

    /// The output directory, when files are written.
    pub fn out_dir(&self) -> Option<PathBuf> {
        self.cfg.out_dir.clone()
    }
}
