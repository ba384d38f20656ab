//! The write-ahead log of the HTTP ingest path.
//!
//! Kafka is the write-ahead log of the Kafka path. Data pushed over HTTP has no broker behind it,
//! so before the collector acknowledges a request it appends the request body to a local WAL and
//! fsyncs it. Every record carries a sequence number; the metastore publishes the highest sequence
//! number covered by published files (source `wal`), exactly as it does for Kafka offsets, and on
//! start the records after it are replayed into the head.
//!
//! Layout: `wal/<first-seq>.wal` segments of records
//! `[len u32][crc32 u32][kind u8][seq u64][payload]` (little endian; crc over kind, seq and
//! payload). A torn record at the tail (crash mid-write, never acknowledged) is cut off on open.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// What a WAL record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum WalKind {
    /// OTLP metrics, protobuf.
    MetricsProtobuf = 1,
    /// OTLP metrics, JSON.
    MetricsJson = 2,
    /// OTLP logs, protobuf.
    LogsProtobuf = 3,
    /// OTLP logs, JSON.
    LogsJson = 4,
    /// Prometheus remote_write `WriteRequest`, uncompressed protobuf.
    RemoteWrite = 5,
    /// Loki push request, JSON.
    LokiPushJson = 6,
    /// Loki push request (`logproto.PushRequest`), uncompressed protobuf.
    LokiPushProtobuf = 7,
    /// Prometheus remote_write `WriteRequest` as received: snappy-compressed protobuf (a tenth
    /// of the bytes to write and fsync; decoded again on replay).
    RemoteWriteSnappy = 8,
    /// Loki push request as received: snappy-compressed protobuf.
    LokiPushSnappy = 9,
    /// Prometheus remote_write 2.0 `io.prometheus.write.v2.Request` as received: snappy-compressed
    /// protobuf.
    RemoteWrite2Snappy = 10,
}

impl WalKind {
    fn from_u8(b: u8) -> Option<WalKind> {
        Some(match b {
            1 => WalKind::MetricsProtobuf,
            2 => WalKind::MetricsJson,
            3 => WalKind::LogsProtobuf,
            4 => WalKind::LogsJson,
            5 => WalKind::RemoteWrite,
            6 => WalKind::LokiPushJson,
            7 => WalKind::LokiPushProtobuf,
            8 => WalKind::RemoteWriteSnappy,
            9 => WalKind::LokiPushSnappy,
            10 => WalKind::RemoteWrite2Snappy,
            _ => return None,
        })
    }
}

/// One replayed record.
#[derive(Debug)]
pub struct WalRecord {
    /// Sequence number (the "offset" of source `wal`).
    pub seq: i64,
    /// Payload kind.
    pub kind: WalKind,
    /// The request body as received.
    pub payload: Vec<u8>,
}

const HEADER: usize = 4 + 4 + 1 + 8;
const MAX_RECORD: usize = 256 << 20;

/// An open WAL: appends go to the newest segment.
pub struct Wal {
    dir: PathBuf,
    current: File,
    current_first_seq: i64,
    next_seq: i64,
}

fn segment_path(dir: &Path, first_seq: i64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

fn list_segments(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<i64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads a segment's valid records; returns them and the byte length of the valid prefix.
fn read_segment(path: &Path) -> Result<(Vec<WalRecord>, u64)> {
    let mut r = BufReader::new(File::open(path).map_err(|e| Error::io(path, e))?);
    let mut records = Vec::new();
    let mut valid = 0u64;
    loop {
        let mut header = [0u8; HEADER];
        if r.read_exact(&mut header).is_err() {
            break;
        }
        let len = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default());
        let Some(kind) = WalKind::from_u8(header[8]) else { break };
        let seq = i64::from_le_bytes(header[9..17].try_into().unwrap_or_default());
        if len > MAX_RECORD {
            break;
        }
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).is_err() {
            break;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&header[8..17]);
        h.update(&payload);
        if h.finalize() != crc {
            break;
        }
        valid += (HEADER + len) as u64;
        records.push(WalRecord { seq, kind, payload });
    }
    Ok((records, valid))
}

impl Wal {
    /// Opens the WAL in `dir`, cutting off a torn tail, and returns every record with a sequence
    /// number greater than `after_seq` for replay.
    pub fn open(dir: &Path, after_seq: i64) -> Result<(Wal, Vec<WalRecord>)> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut replay = Vec::new();
        let mut next_seq = after_seq + 1;
        for (_, path) in list_segments(dir)? {
            let (records, valid) = read_segment(&path)?;
            let f = OpenOptions::new().write(true).open(&path).map_err(|e| Error::io(&path, e))?;
            if f.metadata().map_err(|e| Error::io(&path, e))?.len() != valid {
                tracing::warn!(path = %path.display(), valid_bytes = valid, "cutting torn WAL tail");
                f.set_len(valid).map_err(|e| Error::io(&path, e))?;
                f.sync_all().map_err(|e| Error::io(&path, e))?;
            }
            for rec in records {
                next_seq = next_seq.max(rec.seq + 1);
                if rec.seq > after_seq {
                    replay.push(rec);
                }
            }
        }
        let current_first_seq = next_seq;
        let current = Self::create_segment(dir, current_first_seq)?;
        Ok((Wal { dir: dir.to_path_buf(), current, current_first_seq, next_seq }, replay))
    }

    fn create_segment(dir: &Path, first_seq: i64) -> Result<File> {
        let path = segment_path(dir, first_seq);
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))?;
        Ok(f)
    }

    /// Appends a record and fsyncs it; returns its sequence number. Only after this returns may
    /// the request be acknowledged.
    pub fn append(&mut self, kind: WalKind, payload: &[u8]) -> Result<i64> {
        let seq = self.next_seq;
        let mut buf = Vec::with_capacity(HEADER + payload.len());
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&[0u8; 4]);
        buf.push(kind as u8);
        buf.extend_from_slice(&seq.to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&buf[8..17]);
        h.update(payload);
        buf[4..8].copy_from_slice(&h.finalize().to_le_bytes());
        buf.extend_from_slice(payload);
        let path = segment_path(&self.dir, self.current_first_seq);
        self.current.write_all(&buf).map_err(|e| Error::io(&path, e))?;
        self.current.sync_data().map_err(|e| Error::io(&path, e))?;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Starts a new segment; records appended from now on are not in the older segments.
    pub fn rotate(&mut self) -> Result<()> {
        if self.next_seq == self.current_first_seq {
            return Ok(());
        }
        self.current = Self::create_segment(&self.dir, self.next_seq)?;
        self.current_first_seq = self.next_seq;
        Ok(())
    }

    /// Deletes every segment older than the current one whose records are all `<= published`.
    pub fn remove_published(&mut self, published: i64) -> Result<()> {
        let segments = list_segments(&self.dir)?;
        for (i, (first, path)) in segments.iter().enumerate() {
            if *first == self.current_first_seq {
                continue;
            }
            // A segment's records end just before the next segment's first sequence number.
            let last = segments.get(i + 1).map(|(next, _)| next - 1).unwrap_or(i64::MAX);
            if last <= published {
                fs::remove_file(path).map_err(|e| Error::io(path, e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_after_published_and_cuts_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, replay) = Wal::open(dir.path(), 0).unwrap();
        assert!(replay.is_empty());
        assert_eq!(wal.append(WalKind::MetricsProtobuf, b"one").unwrap(), 1);
        assert_eq!(wal.append(WalKind::LogsJson, b"two").unwrap(), 2);
        wal.rotate().unwrap();
        assert_eq!(wal.append(WalKind::LogsProtobuf, b"three").unwrap(), 3);
        drop(wal);
        // Simulate a crash in the middle of writing record 4.
        let seg = segment_path(dir.path(), 3);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);

        let (mut wal, replay) = Wal::open(dir.path(), 1).unwrap();
        let got: Vec<(i64, WalKind, &[u8])> =
            replay.iter().map(|r| (r.seq, r.kind, r.payload.as_slice())).collect();
        assert_eq!(got, vec![(2, WalKind::LogsJson, &b"two"[..]), (3, WalKind::LogsProtobuf, &b"three"[..])]);
        assert_eq!(wal.append(WalKind::MetricsJson, b"four").unwrap(), 4, "sequence continues");
        wal.remove_published(3).unwrap();
        let left: Vec<i64> = list_segments(dir.path()).unwrap().into_iter().map(|(f, _)| f).collect();
        assert_eq!(left, vec![4], "segments fully published are gone, the current one stays");
    }
}
