//! The set of tailed files: discovery by glob, reading complete lines from the committed
//! offset, and committing offsets once the sink acknowledged a batch.
//!
//! All methods do blocking file I/O; call them from `spawn_blocking`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use pharos_model::{Labels, LogRecord};

use super::checkpoint::{CHECKPOINT_FILE, CHECKPOINT_VERSION, Checkpoint, FileCheckpoint};
use super::cri::{Entry, PartialMerger, Stream, parse_line};

/// Identity of a file that survives renames: device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    /// Device id.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

/// Most bytes read from one file per batch.
const MAX_READ_BYTES: u64 = 1 << 20;
/// Most message bytes in one batch (keeps a Kafka message well under 1 MB).
const MAX_BATCH_BYTES: usize = 512 << 10;

struct TailedFile {
    path: PathBuf,
    file: File,
    /// Offset of the next line not yet acknowledged by the sink.
    offset: u64,
    /// Labels by stream (stdout, stderr, unknown format).
    labels: [Labels; 3],
    /// Whether the last discovery matched this file (false: rotated away or deleted).
    seen: bool,
    /// Whether the last read found nothing new.
    exhausted: bool,
}

/// Log records read from files, and how far each file's offset moves once they are delivered.
#[derive(Debug, Default)]
pub struct Batch {
    /// The records, in file order.
    pub records: Vec<LogRecord>,
    /// New offsets to commit after delivery.
    pub advances: Vec<(FileKey, u64)>,
    /// True when the batch stopped at a size limit (more data is waiting).
    pub full: bool,
}

/// Tails the files matching a set of globs.
pub struct Tailer {
    include: Vec<String>,
    base_labels: Vec<(String, String)>,
    max_records: usize,
    checkpoint_path: PathBuf,
    files: HashMap<FileKey, TailedFile>,
    /// Checkpoint entries not yet matched to a discovered file (only until the first discovery).
    restored: HashMap<FileKey, u64>,
}

/// Labels from the kubelet's path layout `…/pods/<namespace>_<pod>_<uid>/<container>/<n>.log`,
/// or `filename` for any other path.
pub fn path_labels(path: &Path) -> Vec<(String, String)> {
    let parts: Vec<&str> = path.iter().rev().take(4).filter_map(|p| p.to_str()).collect();
    if let [file, container, pod_dir, "pods"] = parts.as_slice() {
        let ids: Vec<&str> = pod_dir.split('_').collect();
        let numbered = file.split('.').next().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if ids.len() == 3 && ids.iter().all(|s| !s.is_empty()) && numbered && file.contains(".log") {
            return vec![
                ("namespace".into(), ids[0].into()),
                ("pod".into(), ids[1].into()),
                ("pod_uid".into(), ids[2].into()),
                ("container".into(), (*container).into()),
            ];
        }
    }
    vec![("filename".into(), path.to_string_lossy().into_owned())]
}

impl Tailer {
    /// A tailer for `include` globs resuming from the checkpoint in `data_dir`; `base_labels`
    /// (cluster, node) go on every record.
    pub fn open(
        include: Vec<String>,
        base_labels: Vec<(String, String)>,
        max_records: usize,
        data_dir: &Path,
    ) -> anyhow::Result<Tailer> {
        let checkpoint_path = data_dir.join(CHECKPOINT_FILE);
        let checkpoint = Checkpoint::load(&checkpoint_path)?;
        let restored = checkpoint.files.iter().map(|f| (FileKey { dev: f.dev, ino: f.ino }, f.offset)).collect();
        Ok(Tailer { include, base_labels, max_records, checkpoint_path, files: HashMap::new(), restored })
    }

    /// Number of files currently tailed.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Re-evaluates the globs: picks up new files (from the checkpointed offset, or from the
    /// start), follows renames by inode, and forgets files that vanished and were read to the end.
    pub fn discover(&mut self) {
        for f in self.files.values_mut() {
            f.seen = false;
        }
        let mut paths: Vec<PathBuf> = Vec::new();
        for pattern in &self.include {
            match glob::glob(pattern) {
                Ok(matches) => paths.extend(matches.filter_map(Result::ok)),
                Err(e) => tracing::warn!(pattern = %pattern, error = %e, "bad glob"),
            }
        }
        paths.sort();
        paths.dedup();
        for path in paths {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if !meta.is_file() {
                continue;
            }
            let key = FileKey { dev: meta.dev(), ino: meta.ino() };
            if let Some(f) = self.files.get_mut(&key) {
                if f.path != path && !f.seen {
                    tracing::info!(from = %f.path.display(), to = %path.display(), "log file renamed; following it");
                    f.path = path;
                }
                f.seen = true;
                continue;
            }
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot open log file");
                    continue;
                }
            };
            let offset = self.restored.remove(&key).unwrap_or(0);
            let mut pairs = self.base_labels.clone();
            pairs.extend(path_labels(&path));
            let with_stream = |s: &str| {
                let mut p = pairs.clone();
                p.push(("stream".into(), s.into()));
                Labels::from_pairs(p)
            };
            let labels = [with_stream("stdout"), with_stream("stderr"), Labels::from_pairs(pairs.clone())];
            tracing::info!(path = %path.display(), offset, "tailing log file");
            self.files.insert(key, TailedFile { path, file, offset, labels, seen: true, exhausted: false });
        }
        // Checkpoint entries of files that no longer exist are dropped.
        self.restored.clear();
    }

    /// Reads complete entries from every file, starting at each file's committed offset, up to
    /// the batch limits. Nothing moves until [`Tailer::commit`].
    pub fn read_batch(&mut self) -> Batch {
        let mut batch = Batch::default();
        let mut bytes = 0usize;
        let mut keys: Vec<FileKey> = self.files.keys().copied().collect();
        keys.sort_by(|a, b| self.files[a].path.cmp(&self.files[b].path));
        for key in keys {
            if batch.records.len() >= self.max_records || bytes >= MAX_BATCH_BYTES {
                batch.full = true;
                break;
            }
            let Some(f) = self.files.get_mut(&key) else { continue };
            let budget = self.max_records - batch.records.len();
            match read_file(f, budget, MAX_BATCH_BYTES - bytes) {
                Ok((records, new_offset, limited)) => {
                    f.exhausted = records.is_empty() && new_offset == f.offset;
                    batch.full |= limited;
                    bytes += records.iter().map(|r| r.body.len()).sum::<usize>();
                    if new_offset != f.offset {
                        batch.advances.push((key, new_offset));
                    }
                    batch.records.extend(records);
                }
                Err(e) => {
                    f.exhausted = true;
                    tracing::warn!(path = %f.path.display(), error = %e, "cannot read log file");
                }
            }
        }
        self.files.retain(|_, f| {
            let keep = f.seen || !f.exhausted;
            if !keep {
                tracing::info!(path = %f.path.display(), "log file gone and read to the end; forgetting it");
            }
            keep
        });
        batch
    }

    /// Records that the batch's records were delivered and persists the new offsets.
    pub fn commit(&mut self, advances: &[(FileKey, u64)]) -> anyhow::Result<()> {
        self.advance(advances);
        self.save()
    }

    /// Resumes from `checkpoint` instead of the file in `data_dir` (the disk buffer keeps the
    /// checkpoint with the data it covers). Call before the first [`Tailer::discover`].
    pub fn resume_from(&mut self, checkpoint: &Checkpoint) {
        self.restored = checkpoint.files.iter().map(|f| (FileKey { dev: f.dev, ino: f.ino }, f.offset)).collect();
    }

    /// Moves the offsets in memory only (the caller made them durable elsewhere).
    pub fn advance(&mut self, advances: &[(FileKey, u64)]) {
        for (key, offset) in advances {
            if let Some(f) = self.files.get_mut(key) {
                f.offset = *offset;
            }
        }
    }

    /// The checkpoint of every tailed file as it will be once `advances` are applied.
    pub fn checkpoint_after(&self, advances: &[(FileKey, u64)]) -> Checkpoint {
        let mut files: Vec<FileCheckpoint> = self
            .files
            .iter()
            .map(|(k, f)| {
                let offset = advances.iter().rev().find(|(a, _)| a == k).map_or(f.offset, |(_, o)| *o);
                FileCheckpoint { dev: k.dev, ino: k.ino, path: f.path.clone(), offset }
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Checkpoint { version: CHECKPOINT_VERSION, files }
    }

    /// Writes the checkpoint of every tailed file.
    pub fn save(&self) -> anyhow::Result<()> {
        self.checkpoint_after(&[]).save(&self.checkpoint_path)
    }
}

/// Reads entries from `f` at its offset: returns them, the offset just after the last complete
/// entry, and whether a limit stopped the read early.
fn read_file(f: &mut TailedFile, max_records: usize, max_bytes: usize) -> std::io::Result<(Vec<LogRecord>, u64, bool)> {
    let size = f.file.metadata()?.len();
    if size < f.offset {
        tracing::warn!(path = %f.path.display(), offset = f.offset, size, "log file truncated; reading from the start");
        f.offset = 0;
    }
    if size == f.offset {
        return Ok((Vec::new(), f.offset, false));
    }
    f.file.seek(SeekFrom::Start(f.offset))?;
    let mut buf = Vec::new();
    (&mut f.file).take(MAX_READ_BYTES).read_to_end(&mut buf)?;
    let read_limited = buf.len() as u64 == MAX_READ_BYTES;

    let mut records = Vec::new();
    let mut merger = PartialMerger::default();
    let mut consumed = 0usize; // end of the last complete entry within buf
    let mut pos = 0usize;
    let mut bytes = 0usize;
    let mut limited = false;
    while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
        if records.len() >= max_records || bytes >= max_bytes {
            limited = true;
            break;
        }
        let line_end = pos + nl + 1;
        let raw = String::from_utf8_lossy(&buf[pos..pos + nl]);
        let line = raw.strip_suffix('\r').unwrap_or(&raw);
        let entry = match parse_line(line) {
            Some(l) => merger.push(l),
            None => {
                // Not a known format: keep the line verbatim, stamped with the read time.
                let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
                if let Some(e) = merger.take_pending() {
                    records.push(record(f, e));
                }
                Some(Entry { timestamp_ns: now, stream: None, message: line.to_string() })
            }
        };
        pos = line_end;
        if let Some(e) = entry {
            bytes += e.message.len();
            records.push(record(f, e));
            consumed = line_end;
        }
    }
    if merger.has_pending() && consumed == 0 && read_limited {
        // One entry larger than a whole read: ship what we have rather than stall.
        if let Some(e) = merger.take_pending() {
            records.push(record(f, e));
            consumed = pos;
        }
    }
    Ok((records, f.offset + consumed as u64, limited || (read_limited && consumed > 0)))
}

fn record(f: &TailedFile, e: Entry) -> LogRecord {
    let labels = match e.stream {
        Some(Stream::Stdout) => &f.labels[0],
        Some(Stream::Stderr) => &f.labels[1],
        None => &f.labels[2],
    };
    LogRecord { labels: labels.clone(), timestamp_ns: e.timestamp_ns, body: e.message, severity: String::new() }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
