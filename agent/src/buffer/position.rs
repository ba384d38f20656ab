//! The persisted read position: every record below `next_seq` was acknowledged by the sink.
//! It also keeps the tail checkpoint of the last acknowledged record that carried one, so the
//! checkpoint survives the deletion of that record's segment. Versioned JSON, written
//! atomically (temp file, fsync, rename, fsync directory) after each acknowledgement.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::tail::checkpoint::Checkpoint;

/// The position format version this build reads and writes.
pub const POSITION_VERSION: u32 = 1;
/// File name of the position inside the buffer directory.
pub const POSITION_FILE: &str = "position.json";

/// The on-disk read position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// Format version ([`POSITION_VERSION`]).
    pub version: u32,
    /// Sequence number of the first record not yet acknowledged.
    pub next_seq: u64,
    /// Sequence number of the record `tail` came from.
    pub tail_seq: Option<u64>,
    /// The tail checkpoint carried by the last acknowledged record that had one.
    pub tail: Option<Checkpoint>,
}

impl Default for Position {
    fn default() -> Self {
        Position { version: POSITION_VERSION, next_seq: 0, tail_seq: None, tail: None }
    }
}

impl Position {
    /// Loads the position from `path`; a missing file is the start of an empty buffer.
    pub fn load(path: &Path) -> anyhow::Result<Position> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Position::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read buffer position {}", path.display())),
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("corrupt buffer position {}", path.display()))?;
        let found = value.get("version").and_then(|v| v.as_u64());
        if found != Some(u64::from(POSITION_VERSION)) {
            anyhow::bail!(
                "buffer position {} has version {found:?}; this agent reads version {POSITION_VERSION}",
                path.display()
            );
        }
        serde_json::from_value(value).with_context(|| format!("corrupt buffer position {}", path.display()))
    }

    /// Writes the position to `path` atomically and durably.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let body = serde_json::to_vec(self)?;
        write_atomically(path, &body).with_context(|| format!("cannot write buffer position {}", path.display()))
    }
}

/// Writes `body` to a temp file, fsyncs it, renames it over `path` and fsyncs the directory.
pub fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tail::checkpoint::{CHECKPOINT_VERSION, FileCheckpoint};

    #[test]
    fn round_trip_missing_and_other_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(POSITION_FILE);
        assert_eq!(Position::load(&path).unwrap(), Position::default());
        let tail = Checkpoint {
            version: CHECKPOINT_VERSION,
            files: vec![FileCheckpoint { dev: 1, ino: 2, path: "/a.log".into(), offset: 99, emitted_through: [0; 3], fingerprint: None }],
        };
        let p = Position { version: POSITION_VERSION, next_seq: 12, tail_seq: Some(10), tail: Some(tail) };
        p.save(&path).unwrap();
        assert_eq!(Position::load(&path).unwrap(), p);
        std::fs::write(&path, r#"{"version":9,"next_seq":1}"#).unwrap();
        assert!(Position::load(&path).unwrap_err().to_string().contains("version Some(9)"));
    }
}
