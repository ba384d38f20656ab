//! The telemetry simulator: N clusters × nodes × teams running service pods, Spark applications
//! and Trino queries, emitted in the real formats (node-exporter, kubelet `/pods` and cAdvisor,
//! kube-state-metrics, Spark PrometheusServlet and event logs, Trino `/metrics` and
//! QueryCompletedEvent, CRI log files with rotation).
//!
//! Deterministic: the same [`SimConfig`] (seed, start time) advanced by the same number of
//! [`Simulation::tick`]s produces byte-identical bodies and files.
//!
//! ```no_run
//! use pharos_e2e::sim::{SimConfig, Simulation};
//! let mut sim = Simulation::new(SimConfig { seed: 7, ..SimConfig::default() }).unwrap();
//! sim.tick().unwrap();
//! let body = sim.node_exporter("cluster-1", &sim.node_names("cluster-1")[0]).unwrap();
//! assert!(body.contains("node_cpu_seconds_total"));
//! ```

pub mod cadvisor;
pub mod demo;
pub mod exposition;
pub mod kube_state;
pub mod kubelet_pods;
pub mod logs;
pub mod node_exporter;
pub mod server;
pub mod spark;
pub mod topology;
pub mod trino;
pub mod world;

#[cfg(test)]
mod tests;

mod simulation;

pub use server::{RunOptions, SimServer};
pub use simulation::{SparkAnswer, Simulation};
pub use world::SimConfig;
