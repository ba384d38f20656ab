//! The agent configuration that points a `pharos-agent` at a running simulator — what
//! `scripts/up.sh` and the end-to-end demo test use, so both run the same wiring.

use std::net::SocketAddr;
use std::path::Path;

/// Where the agent for the demo gets everything from, and where it ships to.
pub struct DemoAgent<'a> {
    /// The simulator's listen address.
    pub sim_addr: SocketAddr,
    /// The simulator's `--out-dir`.
    pub sim_out_dir: &'a Path,
    /// The first emulated cluster and node (the agent reads that node's kubelet `/pods` for pod
    /// labels; its own `cluster`/`node` identity).
    pub cluster: &'a str,
    /// See `cluster`.
    pub node: &'a str,
    /// OTLP/HTTP collector base URL (`http://127.0.0.1:9494`).
    pub collector_url: &'a str,
    /// The agent's own listener (also receives Trino events on `/v1/trino/events`).
    pub agent_listen: SocketAddr,
    /// The agent's data directory (buffer, checkpoints).
    pub agent_data_dir: &'a Path,
}

impl DemoAgent<'_> {
    /// The agent YAML: file_sd targets from `file_sd.json` (node-exporter, kubelet cAdvisor and
    /// resource, kube-state-metrics, Trino, Spark drivers as they come and go), the emulated
    /// kubelet for pod labels, every pod log, Spark event logs, and namespace → team rules.
    pub fn config_yaml(&self) -> String {
        let out = self.sim_out_dir.display();
        format!(
            r#"cluster: {cluster}
node: {node}
listen: {listen}
data_dir: {data:?}
scrape:
  interval_ms: 5000
  file_targets: [{file_sd:?}]
  file_targets_refresh_ms: 1000
logs:
  include: [{logs:?}]
  poll_interval_ms: 250
spark_event_logs:
  dirs: [{spark:?}]
  poll_interval_ms: 5000
kubernetes:
  kubelet_url: http://{sim}/c/{cluster}/n/{node}/kubelet
  token_file: null
  ca_file: null
  refresh_interval_ms: 5000
  scrape_cadvisor: false
  scrape_resource: false
  scrape_annotated_pods: false
  scrape_spark_drivers: false
teams:
  rules:
    - {{namespace: "spark-*", team: data-eng}}
    - {{namespace: trino, team: platform}}
    - {{namespace: kube-system, team: platform}}
  default: unassigned
sink:
  collector_url: {collector}
"#,
            cluster = self.cluster,
            node = self.node,
            listen = self.agent_listen,
            data = self.agent_data_dir.display().to_string(),
            file_sd = format!("{out}/file_sd.json"),
            logs = format!("{out}/pods/*/*/*.log"),
            spark = format!("{out}/spark-events"),
            sim = self.sim_addr,
            collector = self.collector_url,
        )
    }
}
