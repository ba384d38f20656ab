//! Finding a checkpointed file again after the kubelet rotated it away while the agent was
//! not reading: renamed out of the glob (`0.log` → `0.log.<time>`, same inode), or already
//! compressed into a new file (`0.log.<time>.gz`, the original deleted). A compressed one is
//! recognized by the fingerprint of its decompressed first bytes, decompressed once into an
//! unlinked scratch file, and read on from the checkpointed offset like any other file.
//!
//! Blocking file I/O: call from `spawn_blocking`.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::checkpoint::Fingerprint;
use super::files::FileKey;

/// Up to [`Fingerprint::MAX_BYTES`] leading bytes of `file` (read without moving its cursor).
pub fn head(file: &File) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; Fingerprint::MAX_BYTES as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The file a checkpoint entry (`key`, last seen at `last_path`, `fingerprint`, resuming at
/// `offset`) lives on as, if the kubelet rotated it: a file in the same directory with the same
/// device and inode (and the same first bytes: inodes are reused), else a `.gz` there whose content starts with the fingerprinted bytes and
/// is at least `offset` long (decompressed into `scratch_dir`). Returns its path and a handle
/// reading the original bytes.
pub fn find(key: FileKey, last_path: &Path, fingerprint: Option<Fingerprint>, offset: u64, scratch_dir: &Path) -> Option<(PathBuf, File)> {
    let dir = last_path.parent()?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in &entries {
        let Ok(meta) = std::fs::metadata(path) else { continue };
        if meta.is_file() && meta.dev() == key.dev && meta.ino() == key.ino {
            let Ok(file) = File::open(path) else { continue };
            // The inode may have been freed and reused (e.g. by the `.gz` written next).
            if fingerprint.is_none_or(|fp| head(&file).is_ok_and(|h| fp.matches(&h))) {
                return Some((path.clone(), file));
            }
        }
    }
    let fingerprint = fingerprint?;
    for path in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "gz")) {
        match gz_content(path, fingerprint, offset, scratch_dir, key) {
            Ok(Some(file)) => return Some((path.clone(), file)),
            Ok(None) => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot read compressed log file"),
        }
    }
    None
}

/// The decompressed content of `gz` in an unlinked scratch file, when it starts with the
/// `fingerprint`ed bytes and holds at least `offset` bytes.
fn gz_content(gz: &Path, fingerprint: Fingerprint, offset: u64, scratch_dir: &Path, key: FileKey) -> std::io::Result<Option<File>> {
    let mut start = Vec::new();
    MultiGzDecoder::new(File::open(gz)?).take(fingerprint.bytes).read_to_end(&mut start)?;
    if !fingerprint.matches(&start) {
        return Ok(None);
    }
    std::fs::create_dir_all(scratch_dir)?;
    let scratch = scratch_dir.join(format!("{}-{}.log", key.dev, key.ino));
    let _ = std::fs::remove_file(&scratch);
    let mut out = OpenOptions::new().read(true).write(true).create_new(true).open(&scratch)?;
    // Unlinked at once: the handle keeps the data, nothing is left behind on any exit.
    std::fs::remove_file(&scratch)?;
    let size = std::io::copy(&mut MultiGzDecoder::new(File::open(gz)?), &mut out)?;
    if size < offset {
        tracing::warn!(path = %gz.display(), size, offset, "compressed log file shorter than the checkpoint; not resuming from it");
        return Ok(None);
    }
    Ok(Some(out))
}
