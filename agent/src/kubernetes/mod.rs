//! Kubernetes discovery from the node's own kubelet (no API-server watch: each agent sees the
//! pods of its node): [`config`] is the `kubernetes:` section, [`pods`] reads the kubelet's
//! `/pods` and derives scrape targets (annotated pods, Spark drivers), [`discovery`] polls the
//! kubelet and keeps a [`crate::scrape::ScrapePool`] in line, including the kubelet's
//! `/metrics/cadvisor` and `/metrics/resource`; [`metadata`] keeps the listed pods for log
//! records (owner, node, allow-listed pod labels).

pub mod config;
pub mod discovery;
pub mod metadata;
pub mod pods;

pub use config::KubernetesConfig;
pub use discovery::{KubeletClient, KubernetesDiscovery};
pub use metadata::{LogMetadata, PodDirectory};

#[cfg(test)]
mod tests;
