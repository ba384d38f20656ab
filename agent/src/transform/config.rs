//! The `logs.transforms` config list: one entry per transform, tagged by `type`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// One log transform, applied in list order to every record after identity and pod metadata
/// are attached and before the record enters the disk buffer.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransformConfig {
    /// A VRL program (`type: remap`).
    Remap(RemapConfig),
}

/// `type: remap`: a VRL program run on every record (the event layout is in
/// [`super::remap`]).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RemapConfig {
    /// Name of the transform in the agent's metrics (`transform` label of
    /// `pharos_agent_remap_errors_total` and `pharos_agent_remap_dropped_total`); unique in
    /// the list. Default: `remap_<index>` (`remap_0` for the first entry).
    #[serde(default)]
    pub name: Option<String>,
    /// The VRL program inline. Exactly one of `source` and `file` is required.
    #[serde(default)]
    pub source: Option<String>,
    /// A file holding the VRL program, read once at config load (relative paths are relative
    /// to the agent's working directory). Exactly one of `source` and `file` is required.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Drop a record whose program fails at run time (a `!` function call that failed, a
    /// failed assertion). When `false` the original record goes on unchanged. Either way the
    /// failure is counted in `pharos_agent_remap_errors_total`. Default: `false`.
    #[serde(default)]
    pub drop_on_error: bool,
    /// Drop a record whose program runs `abort`. When `false` the original record goes on
    /// unchanged. Default: `true`.
    #[serde(default = "default_true")]
    pub drop_on_abort: bool,
}

fn default_true() -> bool {
    true
}

impl TransformConfig {
    /// The transform's name in metrics, given its index in the list.
    pub fn name(&self, index: usize) -> String {
        match self {
            TransformConfig::Remap(r) => r.name.clone().unwrap_or_else(|| format!("remap_{index}")),
        }
    }
}

impl RemapConfig {
    /// An inline program with the default options.
    pub fn inline(source: impl Into<String>) -> RemapConfig {
        RemapConfig { name: None, source: Some(source.into()), file: None, drop_on_error: false, drop_on_abort: true }
    }

    /// The program text and the config field it came from (`source`, or `file` with its path).
    pub fn program_text(&self, at: &str) -> Result<(String, String), ConfigError> {
        let bad = |field: &str, message: String| ConfigError { field: format!("{at}.{field}"), message };
        match (&self.source, &self.file) {
            (Some(source), None) => Ok((source.clone(), format!("{at}.source"))),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad("file", format!("cannot read VRL program {}: {e}", path.display())))?;
                Ok((text, format!("{at}.file ({})", path.display())))
            }
            (Some(_), Some(_)) => Err(bad("source", "set either source or file, not both".into())),
            (None, None) => Err(bad("source", "a remap transform needs source or file".into())),
        }
    }
}
