//! The tailing checkpoint: for each file (device + inode, its last path, and a fingerprint of
//! its first bytes) the byte offset of the next unread line. Written atomically (temp file, fsync, rename, fsync directory) and only
//! for data the sink acknowledged.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The checkpoint format version this build writes. Version 1 (no fingerprints) is read too.
pub const CHECKPOINT_VERSION: u32 = 2;
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
    /// The file's first bytes, to recognize its content after the kubelet compressed it into
    /// a new file (`0.log.<time>.gz`). Absent in version 1 and for empty files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
}

/// CRC-32 of a file's first `bytes` bytes (at most [`Fingerprint::MAX_BYTES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    /// How many leading bytes the CRC covers.
    pub bytes: u64,
    /// CRC-32 (IEEE) of those bytes.
    pub crc32: u32,
}

impl Fingerprint {
    /// Most leading bytes a fingerprint covers.
    pub const MAX_BYTES: u64 = 1024;

    /// The fingerprint of `head` (the first bytes of a file, at most `MAX_BYTES` used); `None`
    /// for an empty head.
    pub fn of(head: &[u8]) -> Option<Fingerprint> {
        let head = &head[..head.len().min(Self::MAX_BYTES as usize)];
        (!head.is_empty()).then(|| Fingerprint { bytes: head.len() as u64, crc32: crc32fast::hash(head) })
    }

    /// Whether `head` (at least `self.bytes` long) starts with the fingerprinted bytes.
    pub fn matches(&self, head: &[u8]) -> bool {
        usize::try_from(self.bytes).ok().and_then(|n| head.get(..n)).is_some_and(|h| crc32fast::hash(h) == self.crc32)
    }
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
        if !matches!(found, Some(1) | Some(2)) {
            anyhow::bail!(
                "checkpoint {} has version {found:?}; this agent reads versions 1 and {CHECKPOINT_VERSION}",
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
            files: vec![FileCheckpoint { dev: 1, ino: 42, path: "/var/log/a.log".into(), offset: 1234, emitted_through: [0, 1300, 0], fingerprint: Fingerprint::of(b"2024-05-01T12:00:00Z stdout F a\n") }],
        };
        cp.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), cp);
        assert!(!path.with_extension("json.tmp").exists());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"version\": 2"), "{text}");
        // Version 1 (before fingerprints) still loads.
        std::fs::write(&path, r#"{"version":1,"files":[{"dev":1,"ino":2,"path":"/a.log","offset":5}]}"#).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap().files[0].fingerprint, None);
    }

    #[test]
    fn other_version_and_garbage_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE);
        std::fs::write(&path, r#"{"version":3,"files":[]}"#).unwrap();
        assert!(Checkpoint::load(&path).unwrap_err().to_string().contains("version Some(3)"));
        std::fs::write(&path, "{garbage").unwrap();
        assert!(Checkpoint::load(&path).unwrap_err().to_string().contains("corrupt checkpoint"));
    }
}
