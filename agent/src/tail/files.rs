//! The set of tailed files: discovery by glob, reading complete lines from the committed
//! offset, and committing offsets once the sink acknowledged a batch.
//!
//! All methods do blocking file I/O; call them from `spawn_blocking`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use pharos_model::{Labels, LogRecord};
use prometheus_client::metrics::counter::Counter;

use super::checkpoint::{CHECKPOINT_FILE, CHECKPOINT_VERSION, Checkpoint, FileCheckpoint, Fingerprint};
use super::cri::{Entry, PartialMerger, Stream, parse_line};
use super::multiline::{Multiline, OpenState, severity, truncate};

/// How lines become records, and the per-file limits (built from `logs` in the config).
#[derive(Clone, Debug)]
pub struct TailOptions {
    /// Multiline merging (default: none).
    pub multiline: Multiline,
    /// Longest record body in bytes; longer ones are cut with a marker.
    pub max_line_bytes: usize,
    /// Most records read per second from one file (0: unlimited).
    pub rate_limit_lines_per_s: u64,
    /// `pharos_agent_log_lines_truncated_total`.
    pub truncated: Counter,
    /// `pharos_agent_log_throttled_seconds_total`.
    pub throttled_seconds: Counter<f64, AtomicU64>,
}

impl Default for TailOptions {
    fn default() -> Self {
        TailOptions {
            multiline: Multiline::default(),
            max_line_bytes: 262_144,
            rate_limit_lines_per_s: 0,
            truncated: Counter::default(),
            throttled_seconds: Counter::default(),
        }
    }
}

/// Where reading of one file resumes: the offset of the first line not fully emitted, and per
/// stream (stdout, stderr, unknown format) the end of the last emitted record when that lies
/// beyond `offset` (a pending multiline record of another stream holds `offset` back; lines of
/// this stream before `emitted_through` are skipped when re-read). 0 when not needed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilePosition {
    /// Byte offset of the first line not fully emitted.
    pub offset: u64,
    /// Per stream: lines starting before this offset were already emitted.
    pub emitted_through: [u64; 3],
}

impl FilePosition {
    /// A position with no per-stream skips.
    pub fn at(offset: u64) -> FilePosition {
        FilePosition { offset, emitted_through: [0; 3] }
    }
}

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
    /// Where the next read starts (acknowledged by the sink).
    pos: FilePosition,
    /// Per stream: end offset of the pending record's last line, and when it was first seen
    /// (drives the multiline flush timeout).
    pending_seen: [Option<(u64, Instant)>; 3],
    /// Start of the current rate-limit second and records read in it.
    window: (Instant, u64),
    /// Labels by stream (stdout, stderr, unknown format).
    labels: [Labels; 3],
    /// Whether the last discovery matched this file (false: rotated away or deleted).
    seen: bool,
    /// Whether the last read found nothing new.
    exhausted: bool,
    /// The file's first bytes (recomputed while the file is shorter than
    /// [`Fingerprint::MAX_BYTES`]).
    fingerprint: Option<Fingerprint>,
}

/// Log records read from files, and how far each file's offset moves once they are delivered.
#[derive(Debug, Default)]
pub struct Batch {
    /// The records, in file order.
    pub records: Vec<LogRecord>,
    /// New positions to commit after delivery.
    pub advances: Vec<(FileKey, FilePosition)>,
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
    restored: HashMap<FileKey, Restored>,
    /// Where compressed rotated files are decompressed to be read on (`<data_dir>/gz-resume`).
    scratch_dir: PathBuf,
    options: TailOptions,
}

/// A checkpoint entry waiting for its file.
struct Restored {
    pos: FilePosition,
    path: PathBuf,
    fingerprint: Option<Fingerprint>,
}

fn restore(checkpoint: &Checkpoint) -> HashMap<FileKey, Restored> {
    checkpoint
        .files
        .iter()
        .map(|f| {
            let pos = FilePosition { offset: f.offset, emitted_through: f.emitted_through };
            (FileKey { dev: f.dev, ino: f.ino }, Restored { pos, path: f.path.clone(), fingerprint: f.fingerprint })
        })
        .collect()
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
        let restored = restore(&checkpoint);
        let options = TailOptions::default();
        let scratch_dir = data_dir.join("gz-resume");
        Ok(Tailer { include, base_labels, max_records, checkpoint_path, files: HashMap::new(), restored, scratch_dir, options })
    }

    /// Sets multiline merging and the limits.
    pub fn with_options(mut self, options: TailOptions) -> Tailer {
        self.options = options;
        self
    }

    /// Number of files currently tailed.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Re-evaluates the globs: picks up new files (from the checkpointed offset, or from the
    /// start), follows renames by inode, and forgets files that vanished and were read to the end.
    /// On the first call, checkpointed files the globs no longer match are looked for where the
    /// kubelet rotates them ([`super::rotated`]), so their last lines are read too.
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
            let head = super::rotated::head(&file).unwrap_or_default();
            let pos = match self.restored.remove(&key) {
                Some(r) if r.fingerprint.is_none_or(|fp| fp.matches(&head)) => r.pos,
                Some(_) => {
                    tracing::warn!(path = %path.display(), "inode reused by other content; reading from the start");
                    FilePosition::default()
                }
                None => FilePosition::default(),
            };
            self.insert_file(key, path, file, pos, Fingerprint::of(&head), true);
        }
        // Checkpointed files the globs no longer match: rotated away while the agent was down.
        for (key, r) in std::mem::take(&mut self.restored) {
            if self.files.contains_key(&key) {
                continue;
            }
            match super::rotated::find(key, &r.path, r.fingerprint, r.pos.offset, &self.scratch_dir) {
                Some((path, file)) => {
                    tracing::info!(from = %r.path.display(), to = %path.display(), offset = r.pos.offset, "log file rotated while not read; reading it on");
                    let fingerprint = r.fingerprint.or_else(|| Fingerprint::of(&super::rotated::head(&file).unwrap_or_default()));
                    self.insert_file(key, path, file, r.pos, fingerprint, false);
                }
                None => tracing::info!(path = %r.path.display(), "checkpointed log file is gone"),
            }
        }
    }

    fn insert_file(&mut self, key: FileKey, path: PathBuf, file: File, pos: FilePosition, fingerprint: Option<Fingerprint>, seen: bool) {
        let mut pairs = self.base_labels.clone();
        pairs.extend(path_labels(&path));
        let with_stream = |s: &str| {
            let mut p = pairs.clone();
            p.push(("stream".into(), s.into()));
            Labels::from_pairs(p)
        };
        let labels = [with_stream("stdout"), with_stream("stderr"), Labels::from_pairs(pairs.clone())];
        tracing::info!(path = %path.display(), offset = pos.offset, "tailing log file");
        let (pending_seen, window) = ([None; 3], (Instant::now(), 0));
        let exhausted = false;
        self.files.insert(key, TailedFile { path, file, pos, pending_seen, window, labels, seen, exhausted, fingerprint });
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
            match read_file(f, &self.options, budget, MAX_BATCH_BYTES - bytes) {
                Ok(read) => {
                    let (records, new_pos) = (read.records, read.pos);
                    f.exhausted = records.is_empty() && new_pos == f.pos && !read.waiting;
                    batch.full |= read.limited;
                    bytes += records.iter().map(|r| r.body.len()).sum::<usize>();
                    if new_pos != f.pos {
                        batch.advances.push((key, new_pos));
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
    pub fn commit(&mut self, advances: &[(FileKey, FilePosition)]) -> anyhow::Result<()> {
        self.advance(advances);
        self.save()
    }

    /// Resumes from `checkpoint` instead of the file in `data_dir` (the disk buffer keeps the
    /// checkpoint with the data it covers). Call before the first [`Tailer::discover`].
    pub fn resume_from(&mut self, checkpoint: &Checkpoint) {
        self.restored = restore(checkpoint);
    }

    /// Moves the offsets in memory only (the caller made them durable elsewhere).
    pub fn advance(&mut self, advances: &[(FileKey, FilePosition)]) {
        for (key, pos) in advances {
            if let Some(f) = self.files.get_mut(key) {
                f.pos = *pos;
            }
        }
    }

    /// The checkpoint of every tailed file as it will be once `advances` are applied.
    pub fn checkpoint_after(&self, advances: &[(FileKey, FilePosition)]) -> Checkpoint {
        let mut files: Vec<FileCheckpoint> = self
            .files
            .iter()
            .map(|(k, f)| {
                let p = advances.iter().rev().find(|(a, _)| a == k).map_or(f.pos, |(_, p)| *p);
                let (offset, emitted_through, fingerprint) = (p.offset, p.emitted_through, f.fingerprint);
                FileCheckpoint { dev: k.dev, ino: k.ino, path: f.path.clone(), offset, emitted_through, fingerprint }
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

/// What one read of a file produced.
struct FileRead {
    /// Complete records, in the order they completed.
    records: Vec<LogRecord>,
    /// Where the next read starts once the records are delivered.
    pos: FilePosition,
    /// A limit stopped the read early (more data is waiting).
    limited: bool,
    /// Lines wait in a pending record, or the file is throttled: not read to the end yet.
    waiting: bool,
}

/// A record being built from one stream's lines.
struct OpenRecord {
    /// Absolute offset of its first line.
    start: u64,
    /// Absolute offset just after its last line.
    end: u64,
    lines: usize,
    entry: Entry,
    state: OpenState,
    truncated: bool,
}

fn stream_index(stream: Option<Stream>) -> usize {
    match stream {
        Some(Stream::Stdout) => 0,
        Some(Stream::Stderr) => 1,
        None => 2,
    }
}

/// Reads entries from `f` at its position, merges multiline records, and returns the complete
/// ones. The new position never passes the first line of a record still pending (waiting for
/// more lines or its flush timeout), so re-reading from it (next poll, or after a restart)
/// rebuilds that record; lines of other streams already emitted past it are skipped by
/// `emitted_through`.
fn read_file(f: &mut TailedFile, opts: &TailOptions, max_records: usize, max_bytes: usize) -> std::io::Result<FileRead> {
    let size = f.file.metadata()?.len();
    if f.fingerprint.is_none_or(|fp| fp.bytes < Fingerprint::MAX_BYTES && fp.bytes < size) {
        f.fingerprint = Fingerprint::of(&super::rotated::head(&f.file)?);
    }
    if size < f.pos.offset {
        tracing::warn!(path = %f.path.display(), offset = f.pos.offset, size, "log file truncated; reading from the start");
        f.pos = FilePosition::default();
        f.pending_seen = [None; 3];
    }
    let idle = |f: &TailedFile, waiting| FileRead { records: Vec::new(), pos: f.pos, limited: false, waiting };
    if size == f.pos.offset {
        return Ok(idle(f, false));
    }
    // The rate limit: a file that used its records for this second waits for the next one.
    let mut max_records = max_records;
    if opts.rate_limit_lines_per_s > 0 {
        let now = Instant::now();
        if now < f.window.0 {
            return Ok(idle(f, true)); // throttled until the next second starts
        }
        if now.duration_since(f.window.0) >= Duration::from_secs(1) {
            f.window = (now, 0);
        }
        let left = opts.rate_limit_lines_per_s.saturating_sub(f.window.1);
        if left == 0 {
            let next = f.window.0 + Duration::from_secs(1);
            opts.throttled_seconds.inc_by(next.duration_since(now).as_secs_f64());
            // Counted once per second: reads wait until the next window starts.
            f.window = (next, 0);
            return Ok(idle(f, true));
        }
        max_records = max_records.min(usize::try_from(left).unwrap_or(usize::MAX));
    }

    let base = f.pos.offset;
    f.file.seek(SeekFrom::Start(base))?;
    let mut buf = Vec::new();
    (&mut f.file).take(MAX_READ_BYTES).read_to_end(&mut buf)?;
    let read_limited = buf.len() as u64 == MAX_READ_BYTES;

    let ml = &opts.multiline;
    let mut records = Vec::new();
    let mut merger = PartialMerger::default();
    let mut fragment_start: Option<u64> = None;
    let mut opens: [Option<OpenRecord>; 3] = [None, None, None];
    let mut emitted_end = f.pos.emitted_through;
    let mut pos = 0usize;
    let mut bytes = 0usize;
    let mut limited = false;
    let finish = |open: OpenRecord, done: &mut Vec<OpenRecord>, bytes: &mut usize, emitted_end: &mut [u64; 3]| {
        let idx = stream_index(open.entry.stream);
        *bytes += open.entry.message.len().min(opts.max_line_bytes);
        emitted_end[idx] = emitted_end[idx].max(open.end);
        done.push(open);
    };
    while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
        if records.len() >= max_records || bytes >= max_bytes {
            limited = true;
            break;
        }
        let line_start = base + pos as u64;
        let line_end = pos + nl + 1;
        let raw = String::from_utf8_lossy(&buf[pos..pos + nl]);
        let line = raw.strip_suffix('\r').unwrap_or(&raw);
        let mut entries: Vec<(u64, Entry)> = Vec::new();
        match parse_line(line) {
            Some(l) => {
                let start = *fragment_start.get_or_insert(line_start);
                if let Some(e) = merger.push(l) {
                    fragment_start = None;
                    entries.push((start, e));
                }
            }
            None => {
                // Not a known format: keep the line verbatim, stamped with the read time.
                let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
                if let (Some(e), Some(start)) = (merger.take_pending(), fragment_start.take()) {
                    entries.push((start, e));
                }
                entries.push((line_start, Entry { timestamp_ns: now, stream: None, message: line.to_string() }));
            }
        }
        pos = line_end;
        let end = base + line_end as u64;
        for (start, e) in entries {
            let idx = stream_index(e.stream);
            if start < f.pos.emitted_through[idx] {
                continue; // emitted before, while another stream's record held the offset back
            }
            if let Some(open) = opens[idx].as_mut() {
                if open.lines < ml.max_lines && !ml.is_start(&e.message, open.state) {
                    if open.entry.message.len() <= opts.max_line_bytes {
                        open.entry.message.push('\n');
                        open.entry.message.push_str(&e.message);
                    } else {
                        open.truncated = true;
                    }
                    open.state = open.state.after(&e.message);
                    open.lines += 1;
                    open.end = end;
                    continue;
                }
                if let Some(done) = opens[idx].take() {
                    finish(done, &mut records, &mut bytes, &mut emitted_end);
                }
            }
            let state = OpenState::default().after(&e.message);
            opens[idx] = Some(OpenRecord { start, end, lines: 1, entry: e, state, truncated: false });
        }
        // Records that cannot grow any more go out at once.
        for slot in &mut opens {
            if slot.as_ref().is_some_and(|o| !ml.merges() || o.lines >= ml.max_lines) {
                if let Some(done) = slot.take() {
                    finish(done, &mut records, &mut bytes, &mut emitted_end);
                }
            }
        }
    }
    let at_end = !limited && !read_limited;
    let now = Instant::now();
    for (idx, slot) in opens.iter_mut().enumerate() {
        let Some(open) = slot else {
            f.pending_seen[idx] = None;
            continue;
        };
        if !at_end {
            continue;
        }
        // Flush after `flush_timeout` without a new line in this stream.
        match f.pending_seen[idx] {
            Some((end, since)) if end == open.end => {
                if now.duration_since(since) >= ml.flush_timeout {
                    if let Some(done) = slot.take() {
                        finish(done, &mut records, &mut bytes, &mut emitted_end);
                    }
                    f.pending_seen[idx] = None;
                }
            }
            _ => f.pending_seen[idx] = Some((open.end, now)),
        }
    }
    if records.is_empty() && read_limited {
        // Pending data larger than a whole read: ship what we have rather than stall.
        for slot in &mut opens {
            if let Some(done) = slot.take() {
                finish(done, &mut records, &mut bytes, &mut emitted_end);
            }
        }
        if let (Some(e), Some(start)) = (merger.take_pending(), fragment_start.take()) {
            let open = OpenRecord { start, end: base + pos as u64, lines: 1, entry: e, state: OpenState::default(), truncated: false };
            finish(open, &mut records, &mut bytes, &mut emitted_end);
        }
    }
    let pending_starts = opens.iter().flatten().map(|o| o.start).chain(fragment_start);
    let offset = pending_starts.min().unwrap_or(base + pos as u64);
    let waiting = offset < size;
    let emitted_through = emitted_end.map(|e| if e > offset { e } else { 0 });
    let new_pos = FilePosition { offset, emitted_through };
    if opts.rate_limit_lines_per_s > 0 {
        f.window.1 += records.len() as u64;
    }
    let limited = limited || (read_limited && new_pos.offset > base);
    let records = records
        .into_iter()
        .map(|o| {
            let mut entry = o.entry;
            if truncate(&mut entry.message, opts.max_line_bytes) || o.truncated {
                opts.truncated.inc();
            }
            record(f, entry)
        })
        .collect();
    Ok(FileRead { records, pos: new_pos, limited, waiting })
}

fn record(f: &TailedFile, e: Entry) -> LogRecord {
    let labels = match e.stream {
        Some(Stream::Stdout) => &f.labels[0],
        Some(Stream::Stderr) => &f.labels[1],
        None => &f.labels[2],
    };
    let severity = severity(e.message.lines().next().unwrap_or("")).to_string();
    LogRecord::new(labels.clone(), e.timestamp_ns, e.message, severity)
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
