//! The buffer itself: [`Buffer`] appends (durably, waiting while full), [`BufferReader`] reads
//! in order and acknowledges, and [`Buffer::open`] recovers both after a restart.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Notify;

use super::config::BufferConfig;
use super::position::{POSITION_FILE, Position};
use super::record::{RECORD_HEADER, Record, RecordKind, body_len, decode_body, encode, encoded_len};
use super::segment::{SEGMENT_HEADER, create_segment, list_segments, scan_segment, segment_path};
use crate::sink::Signal;
use crate::tail::checkpoint::Checkpoint;
use crate::telemetry::AgentMetrics;

/// Most bytes one read of the reader returns (it returns at least one record).
const READ_MAX_BYTES: u64 = 4 << 20;
const RETRY_START: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

struct Segment {
    first_seq: u64,
    path: PathBuf,
    /// End of the last fsynced record: the reader never reads past it.
    durable_len: u64,
}

struct State {
    /// Oldest first; the last one is the one being written.
    segments: VecDeque<Segment>,
    /// Bytes of unacknowledged records plus reservations of appends in progress.
    bytes: u64,
    /// Unacknowledged records.
    records: u64,
    /// Appends waiting for space.
    waiters: usize,
}

struct Writer {
    file: Option<File>,
    len: u64,
    next_seq: u64,
    records_in_segment: u64,
}

struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    segment_max_bytes: u64,
    state: Mutex<State>,
    writer: Mutex<Writer>,
    /// Signalled when acknowledged records free space.
    space_freed: Notify,
    /// Signalled when a record became durable (one consumer: the reader).
    appended: Notify,
    metrics: AgentMetrics,
}

/// The append side of the disk buffer (cheap to clone; clones share the buffer).
#[derive(Clone)]
pub struct Buffer {
    shared: Arc<Shared>,
}

/// The single reading side: hands out records in sequence order and persists the position.
pub struct BufferReader {
    shared: Arc<Shared>,
    position: Position,
    cursor_seq: u64,
    cursor_offset: u64,
    cursor_file: Option<Arc<File>>,
}

/// What [`Buffer::open`] recovered.
pub struct OpenedBuffer {
    /// Appends.
    pub buffer: Buffer,
    /// Reads and acknowledges.
    pub reader: BufferReader,
    /// The newest tail checkpoint stored with the data (in a record or the position), if any.
    pub tail_checkpoint: Option<Checkpoint>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain counters behind; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn publish_gauges(&self, st: &State) {
        self.metrics.buffer_bytes.set(st.bytes as i64);
        self.metrics.buffer_records.set(st.records as i64);
        self.metrics.buffer_full.set(i64::from(st.waiters > 0));
    }

    fn release(&self, bytes: u64) {
        let mut st = lock(&self.state);
        st.bytes = st.bytes.saturating_sub(bytes);
        self.publish_gauges(&st);
        drop(st);
        self.space_freed.notify_waiters();
    }

    /// Writes one record and fsyncs it; returns its sequence number. Blocking.
    fn write(&self, kind: RecordKind, items: u32, tail: &[u8], payload: &[u8]) -> std::io::Result<u64> {
        let mut w = lock(&self.writer);
        let rotate = w.len >= self.segment_max_bytes && w.records_in_segment > 0;
        if w.file.is_none() || rotate {
            let first_seq = w.next_seq;
            let file = create_segment(&self.dir, first_seq)?;
            let mut st = lock(&self.state);
            // A segment that failed before its first record is recreated under the same name.
            if st.segments.back().is_some_and(|s| s.first_seq == first_seq) {
                st.segments.pop_back();
            }
            let path = segment_path(&self.dir, first_seq);
            st.segments.push_back(Segment { first_seq, path, durable_len: SEGMENT_HEADER });
            drop(st);
            *w = Writer { file: Some(file), len: SEGMENT_HEADER, next_seq: first_seq, records_in_segment: 0 };
        }
        let seq = w.next_seq;
        let mut buf = Vec::with_capacity(encoded_len(tail, payload));
        encode(&mut buf, seq, kind, items, tail, payload);
        let len = w.len;
        let Some(file) = w.file.as_mut() else { return Err(std::io::Error::other("no open segment")) };
        if let Err(e) = file.write_all(&buf).and_then(|()| file.sync_data()) {
            // Cut the partial record; the next append starts a fresh segment.
            let _ = file.set_len(len);
            w.file = None;
            return Err(e);
        }
        w.len += buf.len() as u64;
        w.next_seq += 1;
        w.records_in_segment += 1;
        let mut st = lock(&self.state);
        if let Some(last) = st.segments.back_mut() {
            last.durable_len = w.len;
        }
        st.records += 1;
        self.publish_gauges(&st);
        drop(st);
        drop(w);
        self.appended.notify_one();
        Ok(seq)
    }
}

/// Space held for an append in progress; given back when dropped before the record is written.
struct Reservation {
    shared: Arc<Shared>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.shared.release(self.bytes);
        }
    }
}

/// Counts an append as waiting while it lives (`pharos_agent_buffer_full`).
struct Waiting<'a> {
    shared: &'a Shared,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.state);
        st.waiters -= 1;
        self.shared.publish_gauges(&st);
    }
}

impl Buffer {
    /// Opens (or creates) the buffer in `dir`: loads the position, cuts torn or damaged
    /// records, deletes fully acknowledged segments and finds the newest tail checkpoint.
    /// Blocking.
    pub fn open(dir: &Path, config: &BufferConfig, metrics: AgentMetrics) -> anyhow::Result<OpenedBuffer> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create buffer directory {}", dir.display()))?;
        let position = Position::load(&dir.join(POSITION_FILE))?;
        let mut next_seq = position.next_seq;
        let mut newest_tail: Option<(u64, Option<Vec<u8>>)> = position.tail_seq.map(|s| (s, None));
        let (mut bytes, mut records) = (0u64, 0u64);
        let mut segments = VecDeque::new();
        for (first_seq, path) in list_segments(dir)? {
            let scanned = scan_segment(first_seq, &path)?;
            let mut unacked = false;
            for r in &scanned.records {
                next_seq = next_seq.max(r.seq + 1);
                if r.tail.is_some() && newest_tail.as_ref().is_none_or(|(s, _)| r.seq > *s) {
                    newest_tail = Some((r.seq, r.tail.clone()));
                }
                if r.seq >= position.next_seq {
                    unacked = true;
                    bytes += r.size;
                    records += 1;
                }
            }
            if unacked {
                segments.push_back(Segment { first_seq, path, durable_len: scanned.len });
            } else {
                std::fs::remove_file(&path).with_context(|| format!("cannot delete {}", path.display()))?;
            }
        }
        let tail_checkpoint = match newest_tail {
            Some((_, Some(json))) => Some(
                serde_json::from_slice::<Checkpoint>(&json).context("corrupt tail checkpoint in the buffer")?,
            ),
            Some((_, None)) => position.tail.clone(),
            None => None,
        };
        tracing::info!(dir = %dir.display(), records, bytes, next_seq, segments = segments.len(), "disk buffer opened");
        let cursor_seq = segments.front().map_or(next_seq, |s| s.first_seq);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            max_bytes: config.max_bytes,
            segment_max_bytes: config.segment_max_bytes(),
            state: Mutex::new(State { segments, bytes, records, waiters: 0 }),
            writer: Mutex::new(Writer { file: None, len: 0, next_seq, records_in_segment: 0 }),
            space_freed: Notify::new(),
            appended: Notify::new(),
            metrics,
        });
        shared.publish_gauges(&lock(&shared.state));
        let reader = BufferReader {
            shared: shared.clone(),
            position,
            cursor_seq,
            cursor_offset: SEGMENT_HEADER,
            cursor_file: None,
        };
        Ok(OpenedBuffer { buffer: Buffer { shared }, reader, tail_checkpoint })
    }

    /// Appends one payload of `items` samples or records; returns once it is on disk (fsynced).
    /// Waits while the buffer is full. I/O errors are logged and retried: nothing is dropped.
    pub async fn append(&self, signal: Signal, payload: Vec<u8>, items: u64) -> u64 {
        self.append_record(signal.into(), items, Vec::new(), payload).await
    }

    /// Appends a log payload (or, with `None`, only a checkpoint) together with the tail
    /// checkpoint that holds once these lines are read — one durable write for both.
    pub async fn append_logs(&self, payload: Option<Vec<u8>>, items: u64, tail: &Checkpoint) -> u64 {
        let tail = serde_json::to_vec(tail).unwrap_or_default();
        match payload {
            Some(p) => self.append_record(RecordKind::Logs, items, tail, p).await,
            None => self.append_record(RecordKind::TailCheckpoint, 0, tail, Vec::new()).await,
        }
    }

    async fn append_record(&self, kind: RecordKind, items: u64, tail: Vec<u8>, payload: Vec<u8>) -> u64 {
        let items = u32::try_from(items).unwrap_or(u32::MAX);
        let mut reservation = self.reserve(encoded_len(&tail, &payload) as u64).await;
        let mut parts = (tail, payload);
        let mut backoff = RETRY_START;
        loop {
            let shared = self.shared.clone();
            let written = tokio::task::spawn_blocking(move || {
                let r = shared.write(kind, items, &parts.0, &parts.1);
                (r, parts)
            })
            .await;
            match written {
                Ok((Ok(seq), _)) => {
                    reservation.bytes = 0; // now counted as a stored record
                    return seq;
                }
                Ok((Err(e), back)) => {
                    parts = back;
                    tracing::error!(dir = %self.shared.dir.display(), error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot append to the disk buffer; retrying");
                }
                Err(e) => {
                    // The blocking task panicked and took the record with it: nothing to retry.
                    tracing::error!(error = %e, "disk buffer append task failed");
                    return 0;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    /// Waits until `bytes` fit (an empty buffer takes any record) and reserves them.
    async fn reserve(&self, bytes: u64) -> Reservation {
        let shared = &self.shared;
        // Present while this append waits; `since` is the start of the time not yet counted.
        let mut waiting: Option<Waiting<'_>> = None;
        let mut since = Instant::now();
        loop {
            let freed = shared.space_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut st = lock(&shared.state);
                if st.bytes == 0 || st.bytes + bytes <= shared.max_bytes {
                    st.bytes += bytes;
                    shared.publish_gauges(&st);
                    drop(st);
                    if waiting.take().is_some() {
                        shared.metrics.buffer_blocked_seconds.inc_by(since.elapsed().as_secs_f64());
                    }
                    return Reservation { shared: shared.clone(), bytes };
                }
                if waiting.is_none() {
                    st.waiters += 1;
                    shared.publish_gauges(&st);
                    tracing::info!(bytes = st.bytes, max_bytes = shared.max_bytes, "disk buffer full; applying backpressure");
                }
            }
            if waiting.is_none() {
                waiting = Some(Waiting { shared });
                since = Instant::now();
            }
            // Wake at least once a second so blocked time shows while it is still blocked.
            let _ = tokio::time::timeout(Duration::from_secs(1), freed).await;
            shared.metrics.buffer_blocked_seconds.inc_by(since.elapsed().as_secs_f64());
            since = Instant::now();
        }
    }
}

impl BufferReader {
    /// Returns up to `max` records after the last one returned, in order, each with its size on
    /// disk. With `wait`, waits until there is at least one; without, may return none.
    pub async fn next(&mut self, max: usize, wait: bool) -> anyhow::Result<Vec<(Record, u64)>> {
        loop {
            let plan = {
                let st = lock(&self.shared.state);
                let idx = st.segments.iter().position(|s| s.first_seq >= self.cursor_seq);
                match idx.map(|i| (i, &st.segments[i])) {
                    None => None,
                    Some((_, s)) if s.first_seq != self.cursor_seq => Some(Err(s.first_seq)),
                    Some((i, s)) if self.cursor_offset >= s.durable_len => {
                        st.segments.get(i + 1).map(|next| Err(next.first_seq))
                    }
                    Some((_, s)) => Some(Ok((s.path.clone(), s.durable_len))),
                }
            };
            match plan {
                Some(Err(next_segment)) => {
                    self.cursor_seq = next_segment;
                    self.cursor_offset = SEGMENT_HEADER;
                    self.cursor_file = None;
                }
                Some(Ok((path, end))) => {
                    let file = match &self.cursor_file {
                        Some(f) => f.clone(),
                        None => {
                            let f = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
                            let f = Arc::new(f);
                            self.cursor_file = Some(f.clone());
                            f
                        }
                    };
                    let start = self.cursor_offset;
                    let read = tokio::task::spawn_blocking(move || read_records(&file, &path, start, end, max))
                        .await??;
                    let (records, offset) = read;
                    self.cursor_offset = offset;
                    let fresh: Vec<(Record, u64)> =
                        records.into_iter().filter(|(r, _)| r.seq >= self.position.next_seq).collect();
                    if !fresh.is_empty() {
                        return Ok(fresh);
                    }
                }
                None if wait => self.shared.appended.notified().await,
                None => return Ok(Vec::new()),
            }
        }
    }

    /// Acknowledges every record up to `last_seq`: persists the position (with the newest tail
    /// checkpoint among them, `tail`), frees `bytes` of `records`, and deletes segments that
    /// hold only acknowledged records.
    pub async fn ack(&mut self, last_seq: u64, records: u64, bytes: u64, tail: Option<(u64, Vec<u8>)>) {
        self.position.next_seq = last_seq + 1;
        if let Some((seq, json)) = tail {
            match serde_json::from_slice::<Checkpoint>(&json) {
                Ok(cp) => {
                    self.position.tail_seq = Some(seq);
                    self.position.tail = Some(cp);
                }
                Err(e) => tracing::error!(seq, error = %e, "undecodable tail checkpoint in the buffer"),
            }
        }
        let path = self.shared.dir.join(POSITION_FILE);
        let mut backoff = RETRY_START;
        loop {
            let (position, path) = (self.position.clone(), path.clone());
            match tokio::task::spawn_blocking(move || position.save(&path)).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "cannot persist the buffer position; retrying"),
                Err(e) => tracing::error!(error = %e, "buffer position task failed; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        }
        let doomed: Vec<PathBuf> = {
            let mut st = lock(&self.shared.state);
            st.bytes = st.bytes.saturating_sub(bytes);
            st.records = st.records.saturating_sub(records);
            let mut doomed = Vec::new();
            while st.segments.len() > 1 && st.segments[1].first_seq <= self.position.next_seq {
                if let Some(s) = st.segments.pop_front() {
                    doomed.push(s.path);
                }
            }
            self.shared.publish_gauges(&st);
            doomed
        };
        self.shared.space_freed.notify_waiters();
        if !doomed.is_empty() {
            let _ = tokio::task::spawn_blocking(move || {
                for p in doomed {
                    if let Err(e) = std::fs::remove_file(&p) {
                        tracing::warn!(path = %p.display(), error = %e, "cannot delete acknowledged buffer segment");
                    }
                }
            })
            .await;
        }
    }

    /// Sequence number of the first record not yet acknowledged.
    pub fn acknowledged_before(&self) -> u64 {
        self.position.next_seq
    }
}

/// Reads records from `start` up to `end` (durable end), at most `max` (at least one) and
/// about [`READ_MAX_BYTES`]; returns them with their sizes and the offset after them.
fn read_records(file: &File, path: &Path, start: u64, end: u64, max: usize) -> anyhow::Result<(Vec<(Record, u64)>, u64)> {
    let mut out = Vec::new();
    let mut offset = start;
    let mut read_bytes = 0u64;
    while offset < end && out.len() < max.max(1) && (out.is_empty() || read_bytes < READ_MAX_BYTES) {
        let damaged = |what: String| anyhow::anyhow!("buffer segment {} damaged at {offset}: {what}", path.display());
        let mut header = [0u8; RECORD_HEADER];
        file.read_exact_at(&mut header, offset).map_err(|e| damaged(e.to_string()))?;
        let len = body_len(&header).map_err(damaged)?;
        let mut body = vec![0u8; len];
        file.read_exact_at(&mut body, offset + RECORD_HEADER as u64).map_err(|e| damaged(e.to_string()))?;
        let record = decode_body(&header, &body).map_err(damaged)?;
        let size = (RECORD_HEADER + len) as u64;
        offset += size;
        read_bytes += size;
        out.push((record, size));
    }
    Ok((out, offset))
}
