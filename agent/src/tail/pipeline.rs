//! What happens to tailed records before they enter the disk buffer: pod metadata from the
//! kubelet ([`crate::kubernetes::metadata`]), the `team` label ([`crate::teams`]), then the
//! `logs.transforms` in order ([`crate::transform`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use pharos_model::{Labels, LogRecord};

use crate::kubernetes::LogMetadata;
use crate::teams::TeamLabeler;
use crate::transform::LogTransforms;

/// A pod's labels as the kubelet listed them.
type PodLabels = Arc<BTreeMap<String, String>>;

/// Most time the tailer waits for the kubelet to answer about a pod it has not seen yet.
const NEW_POD_WAIT: Duration = Duration::from_secs(2);
/// Most time the first batch waits for the kubelet's first pod list.
const FIRST_LIST_WAIT: Duration = Duration::from_secs(5);

/// Enrichment and transforms for log records.
#[derive(Default)]
pub struct LogPipeline {
    metadata: Option<LogMetadata>,
    labeler: TeamLabeler,
    transforms: LogTransforms,
    /// Pod UIDs a pod list was already asked for (asked once each).
    asked: HashSet<String>,
    first_list_waited: bool,
}

impl LogPipeline {
    /// A pipeline: `metadata` when the kubelet is polled, the team labeler, the transforms.
    pub fn new(metadata: Option<LogMetadata>, labeler: TeamLabeler, transforms: LogTransforms) -> LogPipeline {
        LogPipeline { metadata, labeler, transforms, asked: HashSet::new(), first_list_waited: false }
    }

    /// Before processing `records`: waits (briefly) for the kubelet's first pod list, and
    /// asks for a fresh list once for every pod UID the directory does not know, so a new
    /// pod's first lines get its metadata too.
    pub async fn await_metadata(&mut self, records: &[LogRecord]) {
        let Some(m) = &self.metadata else { return };
        if !self.first_list_waited {
            self.first_list_waited = true;
            m.directory().wait_for_first_attempt(FIRST_LIST_WAIT).await;
        }
        let mut unknown = false;
        let mut seen: HashSet<&Labels> = HashSet::new();
        for r in records {
            if !seen.insert(&r.labels) {
                continue;
            }
            let Some(uid) = r.labels.get("pod_uid") else { continue };
            if m.pod_of(&r.labels).is_none() && self.asked.insert(uid.to_string()) {
                unknown = true;
            }
        }
        if unknown {
            m.directory().refresh_and_wait(NEW_POD_WAIT).await;
        }
    }

    /// Adds metadata and `team`, then runs the transforms; dropped records are removed (their
    /// lines still count as read: the checkpoint moves past them). CPU work: call from
    /// `spawn_blocking`.
    pub fn process(&mut self, records: Vec<LogRecord>) -> Vec<LogRecord> {
        // Records of one file share their labels: work once per distinct label set.
        let mut by_labels: HashMap<Labels, (Labels, Option<PodLabels>)> = HashMap::new();
        let mut enriched = Vec::with_capacity(records.len());
        for mut r in records {
            let (labels, pod_labels) = by_labels
                .entry(r.labels.clone())
                .or_insert_with(|| {
                    let (labels, pod) = match &self.metadata {
                        Some(m) => m.labels_for(&r.labels),
                        None => (r.labels.clone(), None),
                    };
                    (self.labeler.label(&labels), pod.map(|p| p.labels.clone()))
                })
                .clone();
            r.labels = labels;
            enriched.push((r, pod_labels));
        }
        if self.transforms.is_empty() {
            return enriched.into_iter().map(|(r, _)| r).collect();
        }
        let pods: HashMap<Labels, PodLabels> =
            enriched.iter().filter_map(|(r, p)| p.clone().map(|p| (r.labels.clone(), p))).collect();
        let records = enriched.into_iter().map(|(r, _)| r).collect();
        self.transforms.apply(records, |r| pods.get(&r.labels).cloned())
    }
}
