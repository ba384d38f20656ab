//! One buffer record as stored in a segment file, little endian:
//!
//! ```text
//! len u32 | crc32 u32 | body (len bytes)
//! body = seq u64 | kind u8 | items u32 | tail_len u32 | tail (tail_len bytes) | payload
//! ```
//!
//! The crc32 covers the body. `tail` is the tail checkpoint (JSON) as it stands once this
//! record's log lines are read — stored in the same record, so appending the data and moving the
//! checkpoint is one durable write.

use crate::sink::Signal;

/// Bytes before the body: `len` and `crc32`.
pub const RECORD_HEADER: usize = 8;
/// Fixed part of the body: seq, kind, items, tail_len.
const BODY_FIXED: usize = 8 + 1 + 4 + 4;
/// Largest body a reader accepts; a larger `len` can only come from a torn or corrupt write.
pub const MAX_BODY: usize = 256 << 20;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// An OTLP `ExportMetricsServiceRequest`.
    Metrics,
    /// An OTLP `ExportLogsServiceRequest`.
    Logs,
    /// Only a tail checkpoint (offsets moved without producing records); never sent.
    TailCheckpoint,
}

impl RecordKind {
    fn code(self) -> u8 {
        match self {
            RecordKind::Metrics => 1,
            RecordKind::Logs => 2,
            RecordKind::TailCheckpoint => 3,
        }
    }

    fn from_code(code: u8) -> Option<RecordKind> {
        match code {
            1 => Some(RecordKind::Metrics),
            2 => Some(RecordKind::Logs),
            3 => Some(RecordKind::TailCheckpoint),
            _ => None,
        }
    }

    /// The sink signal of a record that is sent (`None` for [`RecordKind::TailCheckpoint`]).
    pub fn signal(self) -> Option<Signal> {
        match self {
            RecordKind::Metrics => Some(Signal::Metrics),
            RecordKind::Logs => Some(Signal::Logs),
            RecordKind::TailCheckpoint => None,
        }
    }
}

impl From<Signal> for RecordKind {
    fn from(s: Signal) -> Self {
        match s {
            Signal::Metrics => RecordKind::Metrics,
            Signal::Logs => RecordKind::Logs,
        }
    }
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Sequence number: strictly increasing across the buffer's life.
    pub seq: u64,
    /// What the payload is.
    pub kind: RecordKind,
    /// Samples or log records in the payload (for the agent's counters).
    pub items: u32,
    /// Tail checkpoint JSON, empty when the record carries none.
    pub tail: Vec<u8>,
    /// The OTLP protobuf payload.
    pub payload: Vec<u8>,
}

/// Size on disk of a record with these parts.
pub fn encoded_len(tail: &[u8], payload: &[u8]) -> usize {
    RECORD_HEADER + BODY_FIXED + tail.len() + payload.len()
}

/// Appends the encoding of a record to `out`.
pub fn encode(out: &mut Vec<u8>, seq: u64, kind: RecordKind, items: u32, tail: &[u8], payload: &[u8]) {
    let body_len = BODY_FIXED + tail.len() + payload.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // crc, filled below
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(kind.code());
    out.extend_from_slice(&items.to_le_bytes());
    out.extend_from_slice(&(tail.len() as u32).to_le_bytes());
    out.extend_from_slice(tail);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + RECORD_HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The result of decoding at some position.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A valid record and its size on disk.
    Record(Record, usize),
    /// The bytes end inside a record (a torn write, or data not written yet).
    Incomplete,
    /// The bytes are not a valid record.
    Corrupt(String),
}

/// Body length from a record header, or why the header is impossible.
pub fn body_len(header: &[u8; RECORD_HEADER]) -> Result<usize, String> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if !(BODY_FIXED..=MAX_BODY).contains(&len) {
        return Err(format!("impossible record length {len}"));
    }
    Ok(len)
}

/// Decodes the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded {
    let Some(header) = buf.get(..RECORD_HEADER) else { return Decoded::Incomplete };
    let header: &[u8; RECORD_HEADER] = header.try_into().unwrap_or(&[0; RECORD_HEADER]);
    let len = match body_len(header) {
        Ok(l) => l,
        Err(e) => return Decoded::Corrupt(e),
    };
    let Some(body) = buf.get(RECORD_HEADER..RECORD_HEADER + len) else { return Decoded::Incomplete };
    match decode_body(header, body) {
        Ok(record) => Decoded::Record(record, RECORD_HEADER + len),
        Err(e) => Decoded::Corrupt(e),
    }
}

/// Checks the crc and splits the body.
pub fn decode_body(header: &[u8; RECORD_HEADER], body: &[u8]) -> Result<Record, String> {
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let actual = crc32fast::hash(body);
    if crc != actual {
        return Err(format!("crc32 mismatch: stored {crc:08x}, computed {actual:08x}"));
    }
    if body.len() < BODY_FIXED {
        return Err(format!("body of {} bytes is shorter than {BODY_FIXED}", body.len()));
    }
    let u32_at = |at: usize| u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&body[..8]);
    let kind = RecordKind::from_code(body[8]).ok_or_else(|| format!("unknown record kind {}", body[8]))?;
    let items = u32_at(9);
    let tail_len = u32_at(13) as usize;
    let tail_end = BODY_FIXED.checked_add(tail_len).filter(|&e| e <= body.len());
    let tail_end = tail_end.ok_or_else(|| format!("tail length {tail_len} exceeds the body"))?;
    Ok(Record {
        seq: u64::from_le_bytes(seq),
        kind,
        items,
        tail: body[BODY_FIXED..tail_end].to_vec(),
        payload: body[tail_end..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut buf = Vec::new();
        encode(&mut buf, 7, RecordKind::Logs, 3, b"{\"t\":1}", b"payload");
        assert_eq!(buf.len(), encoded_len(b"{\"t\":1}", b"payload"));
        let Decoded::Record(r, used) = decode(&buf) else { panic!("not a record") };
        assert_eq!(used, buf.len());
        assert_eq!((r.seq, r.kind, r.items), (7, RecordKind::Logs, 3));
        assert_eq!((r.tail.as_slice(), r.payload.as_slice()), (&b"{\"t\":1}"[..], &b"payload"[..]));
        // Every strict prefix is incomplete (a torn write), never a record.
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut]), Decoded::Incomplete, "cut at {cut}");
        }
        let mut flipped = buf.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(decode(&flipped), Decoded::Corrupt(e) if e.contains("crc32")));
        assert!(matches!(decode(&[0xff; 16]), Decoded::Corrupt(e) if e.contains("impossible")));
    }
}
