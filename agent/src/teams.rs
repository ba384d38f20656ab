//! Stamps the `team` label (see [`pharos_model::team`]) on series and log records that carry a
//! `namespace`. Pod labels learned from the kubelet let a pod's own `team` label override the
//! namespace rules for its logs and series too.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use pharos_model::team::{TEAM_LABEL, TeamMapping};
use pharos_model::{Labels, LogRecord, Sample};

/// Pod labels by `(namespace, pod)`.
pub type PodLabels = HashMap<(String, String), BTreeMap<String, String>>;

/// The team mapping plus the latest pod labels (cheap to clone; clones share the pod cache).
#[derive(Clone, Default)]
pub struct TeamLabeler {
    mapping: Arc<TeamMapping>,
    pods: Arc<RwLock<PodLabels>>,
}

impl TeamLabeler {
    /// A labeler for `mapping` with no pods known yet.
    pub fn new(mapping: TeamMapping) -> Self {
        TeamLabeler { mapping: Arc::new(mapping), pods: Arc::default() }
    }

    /// The mapping in use.
    pub fn mapping(&self) -> &TeamMapping {
        &self.mapping
    }

    /// Replaces the known pods (called after every kubelet pod list).
    pub fn set_pods(&self, pods: PodLabels) {
        // A poisoned lock only means a writer panicked mid-replace; the map is still usable.
        *self.pods.write().unwrap_or_else(|e| e.into_inner()) = pods;
    }

    /// The team of `pod` (may be empty) in `namespace`.
    pub fn team_for(&self, namespace: &str, pod: &str) -> Option<String> {
        let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
        match pods.get(&(namespace.to_string(), pod.to_string())) {
            Some(labels) => self.mapping.team_for(namespace, labels),
            None => self.mapping.team_for(namespace, &BTreeMap::new()),
        }
    }

    /// `labels` with `team` added when it has a `namespace` and no `team` yet.
    pub fn label(&self, labels: &Labels) -> Labels {
        if labels.get(TEAM_LABEL).is_some() {
            return labels.clone();
        }
        let Some(namespace) = labels.get("namespace") else { return labels.clone() };
        match self.team_for(namespace, labels.get("pod").unwrap_or_default()) {
            Some(team) => labels.with(TEAM_LABEL, &team),
            None => labels.clone(),
        }
    }

    /// Labels every sample in place.
    pub fn label_samples(&self, samples: &mut [Sample]) {
        for s in samples {
            s.labels = self.label(&s.labels);
        }
    }

    /// Labels every log record in place.
    pub fn label_records(&self, records: &mut [LogRecord]) {
        for r in records {
            r.labels = self.label(&r.labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pharos_model::team::TeamRule;

    #[test]
    fn namespace_rule_then_pod_label_override() {
        let labeler = TeamLabeler::new(TeamMapping {
            rules: vec![TeamRule { namespace: "spark-*".into(), team: "data-eng".into() }],
            ..TeamMapping::default()
        });
        let log = Labels::from_pairs([("namespace", "spark-jobs"), ("pod", "p1")]);
        assert_eq!(labeler.label(&log).get("team"), Some("data-eng"));
        labeler.set_pods(HashMap::from([(
            ("spark-jobs".to_string(), "p1".to_string()),
            BTreeMap::from([("team".to_string(), "ml".to_string())]),
        )]));
        assert_eq!(labeler.label(&log).get("team"), Some("ml"));
        // No namespace: nothing to map. An existing team label is kept.
        assert_eq!(labeler.label(&Labels::from_pairs([("pod", "p1")])).get("team"), None);
        let own = Labels::from_pairs([("namespace", "spark-jobs"), ("team", "x")]);
        assert_eq!(labeler.label(&own).get("team"), Some("x"));
        assert_eq!(labeler.label(&Labels::from_pairs([("namespace", "default")])).get("team"), None);
    }
}
