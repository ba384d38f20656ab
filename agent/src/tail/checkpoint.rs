//! The tailing checkpoint: for each file (device + inode, and its last path) the byte offset of
//! the next unread line. Written atomically (temp file, fsync, rename, fsync directory) and only
//! for data the sink acknowledged.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The checkpoint format version this build reads and writes.
pub const CHECKPOINT_VERSION: u32 = 1;
/// File name of the checkpoint inside `data_dir`.
pub const CHECKPOINT_FILE: &str = "tail-checkpoint.json";

/// The on-disk checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Format version ([`CHECKPOINT_VERSION`]).
    pub version: u32,
    /// One entry per tailed file.
    pub files: Vec<FileCheckpoint>,
}

/// Where reading of one file resumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCheckpoint {
    /// Device id of the file.
    pub dev: u64,
    /// Inode number of the file.
    pub ino: u64,
    /// The path the file was last seen at.
    pub path: PathBuf,
    /// Byte offset of the first line not fully emitted (a pending multiline record starts here).
    pub offset: u64,
    /// Per stream (stdout, stderr, unknown format): lines starting before this offset were
    /// already emitted, though past `offset` (another stream's pending record held `offset`
    /// back); 0 when not needed. Omitted when all are 0.
    #[serde(default, skip_serializing_if = "no_skips")]
    pub emitted_through: [u64; 3],
}

fn no_skips(e: &[u64; 3]) -> bool {
    e.iter().all(|&o| o == 0)
}

impl Checkpoint {
    /// Loads the checkpoint from `path`; a missing file is an empty checkpoint.
    pub fn load(path: &Path) -> anyhow::Result<Checkpoint> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Checkpoint { version: CHECKPOINT_VERSION, files: Vec::new() });
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read checkpoint {}", path.display())),
        };
        let version: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("corrupt checkpoint {}", path.display()))?;
        let found = version.get("version").and_then(|v| v.as_u64());
        if found != Some(u64::from(CHECKPOINT_VERSION)) {
            anyhow::bail!(
                "checkpoint {} has version {found:?}; this agent reads version {CHECKPOINT_VERSION}",
                path.display()
            );
        }
        serde_json::from_value(version).with_context(|| format!("corrupt checkpoint {}", path.display()))
    }

    /// Writes the checkpoint to `path` atomically and durably.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(self)?;
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            File::open(dir)?.sync_all()
        };
        write().with_context(|| format!("cannot write checkpoint {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(CHECKPOINT_FILE);
        assert_eq!(Checkpoint::load(&path).unwrap().files, vec![]);
        let cp = Checkpoint {
            version: CHECKPOINT_VERSION,
            files: vec![FileCheckpoint { dev: 1, ino: 42, path: "/var/log/a.log".into(), offset: 1234, emitted_through: [0, 1300, 0] }],
        };
        cp.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), cp);
        assert!(!path.with_extension("json.tmp").exists());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"version\": 1"), "{text}");
    }

    #[test]
    fn other_version_and_garbage_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE);
        std::fs::write(&path, r#"{"version":2,"files":[]}"#).unwrap();
        assert!(Checkpoint::load(&path).unwrap_err().to_string().contains("version Some(2)"));
        std::fs::write(&path, "{garbage").unwrap();
        assert!(Checkpoint::load(&path).unwrap_err().to_string().contains("corrupt checkpoint"));
    }
}
