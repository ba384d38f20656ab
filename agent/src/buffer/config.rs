//! The `buffer:` section of the agent config.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// The on-disk buffer between the sources (scrapes, tailed logs) and the sink, under
/// `<data_dir>/buffer/`. It holds what the sink has not acknowledged yet; when it is full the
/// sources wait (the tailer stops reading, scrapes are delayed) — nothing is dropped.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Most bytes of unacknowledged records held on disk; appends wait while it is reached.
    /// On disk, up to one more segment of acknowledged records may linger until it is deleted.
    /// A single record larger than this is accepted only into an empty buffer.
    /// Default: `268435456` (256 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
}

fn default_max_bytes() -> u64 {
    256 << 20
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig { max_bytes: default_max_bytes() }
    }
}

impl BufferConfig {
    /// Size at which the writer starts a new segment file: an eighth of `max_bytes`, between
    /// 64 KiB and 16 MiB, so acknowledged data is deleted in steps small relative to the bound.
    pub fn segment_max_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(64 << 10, 16 << 20)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_bytes < 4096 {
            return Err(ConfigError {
                field: "buffer.max_bytes".into(),
                message: format!("{} is too small (at least 4096)", self.max_bytes),
            });
        }
        Ok(())
    }
}
