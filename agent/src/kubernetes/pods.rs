//! The kubelet's `GET /pods` answer (a `v1.PodList`, only the fields Pharos reads) and the scrape
//! targets it implies.
//!
//! Target labels of a pod: `namespace`, `pod`, `container` (when the scraped port is declared by
//! one container), `team` (from [`crate::teams`]), and of the pod's own labels only `app` (pod
//! label `app`, else `app.kubernetes.io/name`): other pod labels are not copied, which keeps
//! series cardinality independent of how richly pods are labelled.

use std::collections::BTreeMap;

use reqwest::Url;
use serde::Deserialize;

use crate::scrape::{DiscoveredTarget, TargetKind};
use crate::teams::{PodLabels, TeamLabeler};

/// `v1.PodList`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodList {
    /// The pods.
    #[serde(default)]
    pub items: Vec<Pod>,
}

/// `v1.Pod`, trimmed.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Pod {
    /// Name, namespace, labels, annotations.
    #[serde(default)]
    pub metadata: PodMetadata,
    /// Containers and their ports.
    #[serde(default)]
    pub spec: PodSpec,
    /// Phase and IP.
    #[serde(default)]
    pub status: PodStatus,
}

/// `v1.ObjectMeta`, trimmed.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodMetadata {
    /// Pod name.
    #[serde(default)]
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The pod's UID (the `<uid>` of its log directory `<namespace>_<pod>_<uid>`).
    #[serde(default)]
    pub uid: String,
    /// Owners (ReplicaSet, StatefulSet, DaemonSet, Job, a Spark driver pod, …).
    #[serde(default, rename = "ownerReferences")]
    pub owner_references: Vec<OwnerReference>,
}

/// `v1.OwnerReference`, trimmed.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct OwnerReference {
    /// Kind of the owner, e.g. `ReplicaSet`.
    #[serde(default)]
    pub kind: String,
    /// Name of the owner.
    #[serde(default)]
    pub name: String,
    /// True for the managing controller (at most one owner).
    #[serde(default)]
    pub controller: Option<bool>,
}

/// `v1.PodSpec`, trimmed.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodSpec {
    /// Containers.
    #[serde(default)]
    pub containers: Vec<Container>,
    /// The node the pod is scheduled on.
    #[serde(default, rename = "nodeName")]
    pub node_name: String,
}

/// `v1.Container`, trimmed.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Container {
    /// Container name.
    #[serde(default)]
    pub name: String,
    /// Declared ports.
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
}

/// `v1.ContainerPort`, trimmed.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ContainerPort {
    /// Port number.
    #[serde(default, rename = "containerPort")]
    pub container_port: u16,
}

/// `v1.PodStatus`, trimmed.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed`.
    #[serde(default)]
    pub phase: String,
    /// Pod IP (empty until assigned).
    #[serde(default, rename = "podIP")]
    pub pod_ip: String,
}

/// What to derive from the pods.
#[derive(Clone, Debug)]
pub struct PodTargetOptions {
    /// Targets from `prometheus.io/*` annotations.
    pub annotated: bool,
    /// Spark driver targets.
    pub spark_drivers: bool,
    /// Spark UI port.
    pub spark_ui_port: u16,
}

impl Pod {
    fn base_labels(&self, labeler: &TeamLabeler) -> Vec<(String, String)> {
        let m = &self.metadata;
        let mut labels = vec![("namespace".to_string(), m.namespace.clone()), ("pod".to_string(), m.name.clone())];
        if let Some(team) = labeler.mapping().team_for(&m.namespace, &m.labels) {
            labels.push(("team".into(), team));
        }
        if let Some(app) = m.labels.get("app").or_else(|| m.labels.get("app.kubernetes.io/name")) {
            labels.push(("app".into(), app.clone()));
        }
        labels
    }

    fn container_of_port(&self, port: u16) -> Option<&str> {
        self.spec
            .containers
            .iter()
            .find(|c| c.ports.iter().any(|p| p.container_port == port))
            .map(|c| c.name.as_str())
    }

    fn url(&self, scheme: &str, port: u16, path: &str) -> Option<Url> {
        let ip = &self.status.pod_ip;
        let host = if ip.contains(':') { format!("[{ip}]") } else { ip.clone() };
        let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
        Url::parse(&format!("{scheme}://{host}:{port}{path}")).ok()
    }
}

/// Scrape targets of running pods with an IP.
pub fn pod_targets(pods: &PodList, options: &PodTargetOptions, labeler: &TeamLabeler) -> Vec<DiscoveredTarget> {
    let mut out = Vec::new();
    for pod in pods.items.iter().filter(|p| p.status.phase == "Running" && !p.status.pod_ip.is_empty()) {
        let a = &pod.metadata.annotations;
        let base = pod.base_labels(labeler);
        if options.annotated && a.get("prometheus.io/scrape").is_some_and(|v| v == "true") {
            let port = match a.get("prometheus.io/port") {
                Some(p) => p.trim().parse::<u16>().ok(),
                None => pod.spec.containers.iter().flat_map(|c| &c.ports).map(|p| p.container_port).next(),
            };
            let scheme = a.get("prometheus.io/scheme").map_or("http", String::as_str);
            let path = a.get("prometheus.io/path").map_or("/metrics", String::as_str);
            match port.filter(|p| *p != 0).and_then(|port| pod.url(scheme, port, path).map(|u| (port, u))) {
                Some((port, url)) => {
                    let mut labels = base.clone();
                    if let Some(c) = pod.container_of_port(port) {
                        labels.push(("container".into(), c.to_string()));
                    }
                    labels.sort();
                    out.push(DiscoveredTarget {
                        url,
                        job: "kubernetes-pods".into(),
                        labels,
                        kind: TargetKind::Plain,
                        kubelet_auth: false,
                    });
                }
                None => tracing::debug!(
                    pod = %pod.metadata.name, namespace = %pod.metadata.namespace,
                    "prometheus.io/scrape pod without a usable port or path; skipped"
                ),
            }
        }
        let l = &pod.metadata.labels;
        if options.spark_drivers && l.get("spark-role").is_some_and(|r| r == "driver") {
            // spark_app_id / spark_role / spark_app_name are set per sample by the rewrites
            // (a target label of the same name would turn them into exported_*).
            let app_id = l.get("spark-app-selector").cloned().unwrap_or_default();
            let mut labels = base.clone();
            if let Some(c) = pod.container_of_port(options.spark_ui_port) {
                labels.push(("container".into(), c.to_string()));
            }
            labels.sort();
            let port = options.spark_ui_port;
            let targets = [
                ("/metrics/prometheus/", "spark-driver", TargetKind::SparkDriver { app_id }),
                ("/metrics/executors/prometheus", "spark-executors", TargetKind::SparkExecutors),
            ];
            for (path, job, kind) in targets {
                if let Some(url) = pod.url("http", port, path) {
                    out.push(DiscoveredTarget { url, job: job.into(), labels: labels.clone(), kind, kubelet_auth: false });
                }
            }
        }
    }
    out
}

/// The kubelet's own endpoints (job `kubelet`, label `metrics_path`).
pub fn kubelet_targets(kubelet: &Url, cadvisor: bool, resource: bool) -> Vec<DiscoveredTarget> {
    let mut out = Vec::new();
    for (enabled, path) in [(cadvisor, "/metrics/cadvisor"), (resource, "/metrics/resource")] {
        if !enabled {
            continue;
        }
        let url = kubelet_path(kubelet, path);
        out.push(DiscoveredTarget {
            url,
            job: "kubelet".into(),
            labels: vec![("metrics_path".into(), path.into())],
            kind: TargetKind::Plain,
            kubelet_auth: true,
        });
    }
    out
}

/// `path` under the kubelet URL, keeping a path prefix the URL may have (a kubelet reached
/// through the API server proxy, or an emulated one).
pub fn kubelet_path(kubelet: &Url, path: &str) -> Url {
    let mut url = kubelet.clone();
    let prefix = kubelet.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{prefix}{path}"));
    url
}

/// Pod labels by (namespace, pod), for the team labeler.
pub fn pod_labels(pods: &PodList) -> PodLabels {
    pods.items
        .iter()
        .map(|p| ((p.metadata.namespace.clone(), p.metadata.name.clone()), p.metadata.labels.clone()))
        .collect()
}
