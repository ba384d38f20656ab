//! Segment files: `<buffer dir>/<first seq, 20 digits>.seg`, a 12-byte header (magic + format
//! version) followed by records. Only the newest segment is written to; older ones are deleted
//! once every record in them is acknowledged.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::record::{Decoded, decode};

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"PHRSBUF\0";
/// The segment format version this build reads and writes.
pub const SEGMENT_VERSION: u32 = 1;
/// Bytes before the first record.
pub const SEGMENT_HEADER: u64 = 12;

/// Path of the segment whose first record has sequence number `first_seq`.
pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

/// Creates a segment (header written and fsynced, directory fsynced), ready for appends.
pub fn create_segment(dir: &Path, first_seq: u64) -> std::io::Result<File> {
    let path = segment_path(dir, first_seq);
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    f.write_all(SEGMENT_MAGIC)?;
    f.write_all(&SEGMENT_VERSION.to_le_bytes())?;
    f.sync_all()?;
    File::open(dir)?.sync_all()?;
    Ok(f)
}

/// The segments in `dir`, oldest first, as (first seq, path).
pub fn list_segments(dir: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(seq) = name.strip_suffix(".seg").and_then(|s| s.parse::<u64>().ok()) else { continue };
        out.push((seq, path));
    }
    out.sort();
    Ok(out)
}

/// A stored record as seen when scanning: where it is, not its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedRecord {
    /// Sequence number.
    pub seq: u64,
    /// Size on disk.
    pub size: u64,
    /// The tail checkpoint it carries (JSON), if any.
    pub tail: Option<Vec<u8>>,
}

/// One segment after recovery.
#[derive(Debug)]
pub struct ScannedSegment {
    /// Sequence number in the file name.
    pub first_seq: u64,
    /// The file.
    pub path: PathBuf,
    /// Length of the valid part (the file is cut to it).
    pub len: u64,
    /// Its valid records, in order.
    pub records: Vec<ScannedRecord>,
}

/// Reads a segment, keeps its valid prefix and cuts anything after it: a torn record at the
/// end of the newest segment (a crash mid-append) or damage anywhere.
pub fn scan_segment(first_seq: u64, path: &Path) -> anyhow::Result<ScannedSegment> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read buffer segment {}", path.display()))?;
    let mut scanned = ScannedSegment { first_seq, path: path.to_path_buf(), len: 0, records: Vec::new() };
    let header = SEGMENT_HEADER as usize;
    if bytes.len() < header {
        // Crashed while creating it: nothing was ever appended.
        cut(path, 0, bytes.len() as u64, "incomplete segment header")?;
        return Ok(scanned);
    }
    if &bytes[..8] != SEGMENT_MAGIC {
        anyhow::bail!("{} is not a Pharos buffer segment", path.display());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != SEGMENT_VERSION {
        anyhow::bail!(
            "buffer segment {} has version {version}; this agent reads version {SEGMENT_VERSION}",
            path.display()
        );
    }
    let mut pos = header;
    let mut expected = first_seq;
    while pos < bytes.len() {
        match decode(&bytes[pos..]) {
            Decoded::Record(r, size) if r.seq >= expected => {
                expected = r.seq + 1;
                let tail = (!r.tail.is_empty()).then_some(r.tail);
                scanned.records.push(ScannedRecord { seq: r.seq, size: size as u64, tail });
                pos += size;
            }
            Decoded::Record(r, _) => {
                cut(path, pos as u64, bytes.len() as u64, &format!("sequence {} goes backwards", r.seq))?;
                break;
            }
            Decoded::Incomplete => {
                cut(path, pos as u64, bytes.len() as u64, "torn record at the end")?;
                break;
            }
            Decoded::Corrupt(reason) => {
                cut(path, pos as u64, bytes.len() as u64, &reason)?;
                break;
            }
        }
    }
    scanned.len = pos as u64;
    Ok(scanned)
}

fn cut(path: &Path, at: u64, len: u64, reason: &str) -> anyhow::Result<()> {
    tracing::warn!(path = %path.display(), at, dropped_bytes = len - at, reason, "cutting buffer segment");
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.set_len(at)?;
    f.sync_all().with_context(|| format!("cannot cut buffer segment {}", path.display()))
}
