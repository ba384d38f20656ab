//! Pod metadata for log records: the pods the kubelet last listed, by UID, and the labels they
//! put on their containers' log records.
//!
//! A record tailed from `/var/log/pods/<namespace>_<pod>_<uid>/…` already carries `namespace`,
//! `pod`, `pod_uid` and `container` from its path. When the kubelet knows the pod,
//! [`LogMetadata::labels_for`] adds:
//! - `node`: the pod's `spec.nodeName` (replacing the agent's configured node name);
//! - `owner_kind`, `owner_name`: the controlling owner; a ReplicaSet named
//!   `<deployment>-<pod-template-hash>` is reported as its `Deployment`; a Spark pod (label
//!   `spark-app-selector`) as `SparkApplication` named after its SparkApplication owner, else
//!   its `spark-app-name` label, else the application id;
//! - `spark_app_id`, `spark_role`: from the pod labels `spark-app-selector` and `spark-role`;
//! - the pod labels listed in `logs.pod_labels`, under sanitized names.
//!
//! The directory keeps the last good list while the kubelet does not answer, and keeps pods
//! that left the list for [`GONE_RETENTION`] (their last lines are often read after the pod
//! is deleted). A pod the kubelet never listed keeps its path identity only.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use pharos_model::Labels;
use tokio::sync::{Notify, watch};

use super::pods::{Pod, PodList};
use crate::transform::remap::sanitize_label_name;

/// Labels the agent sets itself on log records; `logs.pod_labels` may not map onto them.
pub const RESERVED_LABELS: &[&str] = &[
    "cluster",
    "node",
    "namespace",
    "pod",
    "pod_uid",
    "container",
    "stream",
    "filename",
    "owner_kind",
    "owner_name",
    "spark_app_id",
    "spark_role",
];

/// How long a pod that left the kubelet's list stays known.
pub const GONE_RETENTION: Duration = Duration::from_secs(300);

/// What the kubelet says about one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `spec.nodeName`.
    pub node: String,
    /// Owner kind and name (rules in the module docs).
    pub owner: Option<(String, String)>,
    /// All the pod's labels.
    pub labels: Arc<BTreeMap<String, String>>,
}

impl PodInfo {
    /// The metadata of `pod`.
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let m = &pod.metadata;
        PodInfo {
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            uid: m.uid.clone(),
            node: pod.spec.node_name.clone(),
            owner: owner_of(pod),
            labels: Arc::new(m.labels.clone()),
        }
    }
}

/// The owner of `pod` reported on its logs (rules in the module docs).
pub fn owner_of(pod: &Pod) -> Option<(String, String)> {
    let refs = &pod.metadata.owner_references;
    let labels = &pod.metadata.labels;
    let controller = refs.iter().find(|r| r.controller == Some(true)).or_else(|| refs.first());
    if let Some(app_id) = labels.get("spark-app-selector").filter(|v| !v.is_empty()) {
        let name = match controller {
            Some(r) if r.kind == "SparkApplication" => r.name.clone(),
            _ => labels.get("spark-app-name").filter(|v| !v.is_empty()).unwrap_or(app_id).clone(),
        };
        return Some(("SparkApplication".into(), name));
    }
    let r = controller.filter(|r| !r.kind.is_empty() && !r.name.is_empty())?;
    let deployment = labels
        .get("pod-template-hash")
        .filter(|hash| r.kind == "ReplicaSet" && !hash.is_empty())
        .and_then(|hash| r.name.strip_suffix(hash.as_str()))
        .and_then(|n| n.strip_suffix('-'))
        .filter(|d| !d.is_empty());
    match deployment {
        Some(d) => Some(("Deployment".into(), d.into())),
        None => Some((r.kind.clone(), r.name.clone())),
    }
}

#[derive(Default)]
struct Known {
    by_uid: HashMap<String, Arc<PodInfo>>,
    by_name: HashMap<(String, String), Arc<PodInfo>>,
    /// Pods no longer listed, and since when.
    gone: HashMap<String, (Arc<PodInfo>, Instant)>,
}

/// The pods of this node as last listed by the kubelet (cheap to clone; clones share it).
#[derive(Clone)]
pub struct PodDirectory {
    known: Arc<RwLock<Known>>,
    /// Asks the discovery loop for a list now.
    wanted: Arc<Notify>,
    /// Counts finished list attempts (successful or not).
    attempts: Arc<watch::Sender<u64>>,
}

impl Default for PodDirectory {
    fn default() -> Self {
        PodDirectory { known: Arc::default(), wanted: Arc::default(), attempts: Arc::new(watch::channel(0).0) }
    }
}

impl PodDirectory {
    /// Replaces the listed pods with `pods` (pods that left the list stay known for
    /// [`GONE_RETENTION`]).
    pub fn replace(&self, pods: &PodList) {
        let now = Instant::now();
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        let mut next = Known::default();
        for pod in &pods.items {
            let info = Arc::new(PodInfo::from_pod(pod));
            next.by_name.insert((info.namespace.clone(), info.name.clone()), info.clone());
            if !info.uid.is_empty() {
                next.by_uid.insert(info.uid.clone(), info);
            }
        }
        let old = std::mem::take(&mut *known);
        next.gone = old.gone;
        for (uid, info) in old.by_uid {
            if !next.by_uid.contains_key(&uid) {
                next.gone.insert(uid, (info, now));
            }
        }
        next.gone.retain(|uid, (_, since)| !next.by_uid.contains_key(uid) && now.duration_since(*since) < GONE_RETENTION);
        *known = next;
    }

    /// Marks one list attempt finished (call after every attempt, also failed ones).
    pub fn attempted(&self) {
        self.attempts.send_modify(|n| *n += 1);
    }

    /// The pod with `uid`, or without a UID the pod `namespace`/`name`.
    pub fn lookup(&self, uid: Option<&str>, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        match uid {
            Some(uid) => known.by_uid.get(uid).or_else(|| known.gone.get(uid).map(|(p, _)| p)).cloned(),
            None => known.by_name.get(&(namespace.to_string(), name.to_string())).cloned(),
        }
    }

    /// A future completing when the discovery loop is asked for a list now.
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    /// Asks for a list now and waits until an attempt finished after the request, at most
    /// `timeout`. Returns whether one did.
    pub async fn refresh_and_wait(&self, timeout: Duration) -> bool {
        let mut attempts = self.attempts.subscribe();
        let before = *attempts.borrow_and_update();
        self.wanted.notify_one();
        tokio::time::timeout(timeout, attempts.wait_for(|n| *n > before)).await.is_ok_and(|r| r.is_ok())
    }

    /// Waits until the first list attempt finished, at most `timeout`.
    pub async fn wait_for_first_attempt(&self, timeout: Duration) -> bool {
        let mut attempts = self.attempts.subscribe();
        tokio::time::timeout(timeout, attempts.wait_for(|n| *n > 0)).await.is_ok_and(|r| r.is_ok())
    }
}

/// Attaches pod metadata to log records (`logs.pod_labels` plus the directory).
#[derive(Clone, Default)]
pub struct LogMetadata {
    directory: PodDirectory,
    /// `(pod label, record label)`.
    copied: Vec<(String, String)>,
}

impl LogMetadata {
    /// Metadata from `directory`, copying the pod labels named in `pod_labels` (except one
    /// that would become `team`: that label always comes from the team mapping, which already
    /// lets the pod label `teams.label` win).
    pub fn new(directory: PodDirectory, pod_labels: &[String]) -> LogMetadata {
        let copied = pod_labels
            .iter()
            .map(|l| (l.clone(), sanitize_label_name(l)))
            .filter(|(_, name)| name != pharos_model::team::TEAM_LABEL)
            .collect();
        LogMetadata { directory, copied }
    }

    /// The directory.
    pub fn directory(&self) -> &PodDirectory {
        &self.directory
    }

    /// The pod of a record with `labels` (from its path identity), when the kubelet knows it.
    pub fn pod_of(&self, labels: &Labels) -> Option<Arc<PodInfo>> {
        let (namespace, name) = (labels.get("namespace")?, labels.get("pod")?);
        self.directory.lookup(labels.get("pod_uid"), namespace, name)
    }

    /// `labels` with the pod's metadata added (rules in the module docs), and the pod.
    pub fn labels_for(&self, labels: &Labels) -> (Labels, Option<Arc<PodInfo>>) {
        let Some(pod) = self.pod_of(labels) else { return (labels.clone(), None) };
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (pod_label, name) in &self.copied {
            if let Some(v) = pod.labels.get(pod_label) {
                pairs.push((name.clone(), v.clone()));
            }
        }
        // Later pairs win: what the record has beats copied pod labels; the agent's own
        // metadata beats both.
        pairs.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        if let Some((kind, name)) = &pod.owner {
            pairs.push(("owner_kind".into(), kind.clone()));
            pairs.push(("owner_name".into(), name.clone()));
        }
        if let Some(app_id) = pod.labels.get("spark-app-selector") {
            pairs.push(("spark_app_id".into(), app_id.clone()));
            if let Some(role) = pod.labels.get("spark-role") {
                pairs.push(("spark_role".into(), role.clone()));
            }
        }
        if !pod.node.is_empty() {
            pairs.push(("node".into(), pod.node.clone()));
        }
        (Labels::from_pairs(pairs), Some(pod))
    }
}

#[cfg(test)]
#[path = "metadata_tests.rs"]
mod tests;
