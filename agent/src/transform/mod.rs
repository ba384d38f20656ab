//! Log transforms (`logs.transforms`): [`config`] is the config list, [`remap`] runs VRL
//! programs. [`LogTransforms`] applies the whole list to a batch of records.

pub mod config;
pub mod remap;

use std::collections::BTreeMap;

use pharos_model::LogRecord;

pub use config::{RemapConfig, TransformConfig};
pub use remap::{RemapOutcome, RemapTransform};

use crate::config::ConfigError;
use crate::telemetry::AgentMetrics;

/// The compiled `logs.transforms`, in order.
#[derive(Debug, Default)]
pub struct LogTransforms {
    remaps: Vec<RemapTransform>,
}

impl LogTransforms {
    /// Compiles every transform (the error names the field, e.g. `logs.transforms[1].source`).
    /// With `metrics`, failures and drops are counted per transform name on the agent's
    /// `/metrics`.
    pub fn build(configs: &[TransformConfig], metrics: Option<&AgentMetrics>) -> Result<LogTransforms, ConfigError> {
        let mut remaps = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, config) in configs.iter().enumerate() {
            let at = format!("logs.transforms[{i}]");
            let name = config.name(i);
            if name.is_empty() {
                return Err(ConfigError { field: format!("{at}.name"), message: "must not be empty".into() });
            }
            if !names.insert(name.clone()) {
                return Err(ConfigError { field: format!("{at}.name"), message: format!("duplicate transform name {name:?}") });
            }
            match config {
                TransformConfig::Remap(r) => {
                    let mut t = RemapTransform::build(r, name.clone(), &at)?;
                    if let Some(m) = metrics {
                        t = t.with_counters(m.remap_errors(&name), m.remap_dropped(&name));
                    }
                    remaps.push(t);
                }
            }
        }
        Ok(LogTransforms { remaps })
    }

    /// True when there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.remaps.is_empty()
    }

    /// Runs every transform on every record, in order; dropped records are removed.
    /// `pod_labels_of` gives the kubelet's labels of a record's pod, when known.
    pub fn apply(
        &mut self,
        records: Vec<LogRecord>,
        pod_labels_of: impl Fn(&LogRecord) -> Option<std::sync::Arc<BTreeMap<String, String>>>,
    ) -> Vec<LogRecord> {
        if self.remaps.is_empty() {
            return records;
        }
        let mut out = Vec::with_capacity(records.len());
        'records: for mut record in records {
            let pod_labels = pod_labels_of(&record);
            for t in &mut self.remaps {
                match t.apply(record, pod_labels.as_deref()) {
                    RemapOutcome::Keep(r) => record = r,
                    RemapOutcome::Drop => continue 'records,
                }
            }
            out.push(record);
        }
        out
    }
}
