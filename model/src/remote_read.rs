//! Prometheus remote read: `prometheus.ReadRequest` and its two answers (Prometheus'
//! `prompb/remote.proto`).
//!
//! A request holds queries (a time range and label matchers each) and the response types the
//! client reads, preferred first ([`negotiate`]):
//!
//! - `SAMPLES`: one snappy-compressed `ReadResponse` holding, per query, every matching series
//!   with its raw samples in the range, in the `TimeSeries` message of remote_write;
//! - `STREAMED_XOR_CHUNKS`: a stream of frames ([`write_frame`]), each a `ChunkedReadResponse`
//!   with one series (or part of one) of one query, its samples in XOR chunks
//!   ([`crate::xor_chunk`]) of at most 120 samples, not snappy-compressed. Thanos' sidecar reads
//!   only this type.

use prost::Message;

use crate::remote_write::TimeSeries;
use crate::{Error, Result};

/// `Content-Type` of a `SAMPLES` answer (its body is snappy-compressed, `Content-Encoding: snappy`).
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// `Content-Type` of a `STREAMED_XOR_CHUNKS` answer.
pub const STREAMED_CONTENT_TYPE: &str = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// Most bytes of labels and chunks in one frame before a series goes on in the next (Prometheus'
/// `--storage.remote.read-max-bytes-in-frame` default); a frame exceeds it by at most one chunk.
pub const MAX_BYTES_IN_FRAME: usize = 1 << 20;

/// `prometheus.ReadRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct ReadRequest {
    /// The queries, answered in order.
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// The response types the client reads, preferred first; empty means `SAMPLES`.
    #[prost(enumeration = "ResponseType", repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// `prometheus.ReadRequest.ResponseType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ResponseType {
    /// One `ReadResponse` of raw samples.
    Samples = 0,
    /// A stream of `ChunkedReadResponse` frames of XOR chunks.
    StreamedXorChunks = 1,
}

/// `prometheus.Query`.
#[derive(Clone, PartialEq, Message)]
pub struct Query {
    /// First timestamp, inclusive (ms).
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    /// Last timestamp, inclusive (ms).
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    /// Every matcher must match.
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<Matcher>,
    /// What the client will compute (informative; Pharos answers raw samples regardless).
    #[prost(message, optional, tag = "4")]
    pub hints: Option<ReadHints>,
}

/// `prometheus.LabelMatcher`.
#[derive(Clone, PartialEq, Message)]
pub struct Matcher {
    /// `EQ` 0, `NEQ` 1, `RE` 2, `NRE` 3.
    #[prost(enumeration = "MatcherType", tag = "1")]
    pub r#type: i32,
    /// Label name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Value or regular expression.
    #[prost(string, tag = "3")]
    pub value: String,
}

/// `prometheus.LabelMatcher.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MatcherType {
    /// `=`
    Eq = 0,
    /// `!=`
    Neq = 1,
    /// `=~`
    Re = 2,
    /// `!~`
    Nre = 3,
}

impl MatcherType {
    /// The PromQL operator.
    pub fn operator(self) -> &'static str {
        match self {
            MatcherType::Eq => "=",
            MatcherType::Neq => "!=",
            MatcherType::Re => "=~",
            MatcherType::Nre => "!~",
        }
    }
}

/// `prometheus.ReadHints`.
#[derive(Clone, PartialEq, Message)]
pub struct ReadHints {
    /// Query step (ms).
    #[prost(int64, tag = "1")]
    pub step_ms: i64,
    /// The function applied to the selected series.
    #[prost(string, tag = "2")]
    pub func: String,
    /// Start of the selection (ms).
    #[prost(int64, tag = "3")]
    pub start_ms: i64,
    /// End of the selection (ms).
    #[prost(int64, tag = "4")]
    pub end_ms: i64,
    /// Labels of an aggregation over the result.
    #[prost(string, repeated, tag = "5")]
    pub grouping: Vec<String>,
    /// Whether `grouping` is `by` (else `without`).
    #[prost(bool, tag = "6")]
    pub by: bool,
    /// Range of a range selector (ms).
    #[prost(int64, tag = "7")]
    pub range_ms: i64,
}

/// `prometheus.ReadResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct ReadResponse {
    /// One result per query, in the request's order.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// `prometheus.QueryResult`.
#[derive(Clone, PartialEq, Message)]
pub struct QueryResult {
    /// The matching series with their samples in the query's range.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// Decompresses (snappy block format) and decodes a remote read request.
pub fn decode_request(snappy_body: &[u8]) -> Result<ReadRequest> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(snappy_body)
        .map_err(|e| Error::Content(format!("remote read: body is not snappy-compressed: {e}")))?;
    ReadRequest::decode(raw.as_slice()).map_err(|e| Error::Content(format!("remote read: not a ReadRequest: {e}")))
}

/// The response type to answer `request` with, as Prometheus negotiates it: the first accepted
/// one the server supports, `SAMPLES` when the client names none.
pub fn negotiate(request: &ReadRequest) -> Result<ResponseType> {
    if request.accepted_response_types.is_empty() {
        return Ok(ResponseType::Samples);
    }
    if let Some(t) = request.accepted_response_types.iter().find_map(|t| ResponseType::try_from(*t).ok()) {
        return Ok(t);
    }
    let named: Vec<String> = request.accepted_response_types.iter().map(i32::to_string).collect();
    Err(Error::Content(format!(
        "remote read: none of the accepted response types [{}] is supported; supported: [SAMPLES, STREAMED_XOR_CHUNKS]",
        named.join(", ")
    )))
}

/// `prometheus.ChunkedReadResponse`: one frame of a `STREAMED_XOR_CHUNKS` answer.
#[derive(Clone, PartialEq, Message)]
pub struct ChunkedReadResponse {
    /// The series of this frame (Prometheus and Pharos send one).
    #[prost(message, repeated, tag = "1")]
    pub chunked_series: Vec<ChunkedSeries>,
    /// The query of the request these series answer.
    #[prost(int64, tag = "2")]
    pub query_index: i64,
}

/// `prometheus.ChunkedSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct ChunkedSeries {
    /// The series' labels, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<crate::remote_write::Label>,
    /// Chunks in time order.
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<Chunk>,
}

/// `prometheus.Chunk`.
#[derive(Clone, PartialEq, Message)]
pub struct Chunk {
    /// First sample's timestamp (ms).
    #[prost(int64, tag = "1")]
    pub min_time_ms: i64,
    /// Last sample's timestamp (ms).
    #[prost(int64, tag = "2")]
    pub max_time_ms: i64,
    /// The encoding of `data`.
    #[prost(enumeration = "ChunkEncoding", tag = "3")]
    pub r#type: i32,
    /// The encoded samples.
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}

/// `prometheus.Chunk.Encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ChunkEncoding {
    /// Not set.
    Unknown = 0,
    /// Float samples ([`crate::xor_chunk`]).
    Xor = 1,
    /// Native histograms with integer counts (not written by Pharos).
    Histogram = 2,
    /// Native histograms with float counts (not written by Pharos).
    FloatHistogram = 3,
}

/// Appends the frames of one series' float samples (sorted by time) to `out`: XOR chunks of at
/// most [`crate::xor_chunk::SAMPLES_PER_CHUNK`] samples, a new frame when the labels and chunks
/// of the current one reach `max_frame_bytes`. A series without samples gets no frame.
pub fn write_series_frames(
    out: &mut Vec<u8>,
    query_index: i64,
    labels: Vec<crate::remote_write::Label>,
    samples: &[(i64, f64)],
    max_frame_bytes: usize,
) {
    let label_bytes: usize = labels.iter().map(|l| l.encoded_len()).sum();
    let mut series = ChunkedSeries { labels, chunks: Vec::new() };
    let mut left = max_frame_bytes.saturating_sub(label_bytes) as isize;
    for (i, part) in samples.chunks(crate::xor_chunk::SAMPLES_PER_CHUNK).enumerate() {
        let mut chunk = crate::xor_chunk::XorChunk::new();
        for &(t, v) in part {
            chunk.append(t, v);
        }
        let chunk = Chunk {
            min_time_ms: part[0].0,
            max_time_ms: part[part.len() - 1].0,
            r#type: ChunkEncoding::Xor as i32,
            data: chunk.bytes().to_vec(),
        };
        left -= chunk.encoded_len() as isize;
        series.chunks.push(chunk);
        let more = (i + 1) * crate::xor_chunk::SAMPLES_PER_CHUNK < samples.len();
        if left <= 0 || !more {
            let chunks = std::mem::take(&mut series.chunks);
            let frame = ChunkedReadResponse { chunked_series: vec![ChunkedSeries { labels: series.labels.clone(), chunks }], query_index };
            write_frame(out, &frame.encode_to_vec());
            left = max_frame_bytes.saturating_sub(label_bytes) as isize;
        }
    }
}

/// Appends one frame as Prometheus' `ChunkedWriter` writes it: the message's length as an
/// unsigned varint, its CRC-32 (Castagnoli) big-endian, the message.
pub fn write_frame(out: &mut Vec<u8>, message: &[u8]) {
    let mut n = message.len() as u64;
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(&crc32c::crc32c(message).to_be_bytes());
    out.extend_from_slice(message);
}

/// Reads a `STREAMED_XOR_CHUNKS` answer back into its frames, checking each one's checksum (for
/// clients and tests).
pub fn read_frames(mut body: &[u8]) -> Result<Vec<ChunkedReadResponse>> {
    let mut frames = Vec::new();
    while !body.is_empty() {
        let bad = |what: &str| Error::Content(format!("remote read: frame {}: {what}", frames.len()));
        let mut len = 0u64;
        let mut used = 0;
        loop {
            let b = *body.get(used).ok_or_else(|| bad("the length varint is cut off"))?;
            len |= ((b & 0x7f) as u64) << (7 * used);
            used += 1;
            if b < 0x80 {
                break;
            }
            if used == 10 {
                return Err(bad("the length varint is longer than 10 bytes"));
            }
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(used + 4))
            .filter(|end| *end <= body.len())
            .ok_or_else(|| bad(&format!("{len} bytes announced, {} left", body.len().saturating_sub(used + 4))))?;
        let crc = u32::from_be_bytes(body[used..used + 4].try_into().expect("4 bytes"));
        let message = &body[used + 4..end];
        if crc32c::crc32c(message) != crc {
            return Err(bad("checksum mismatch"));
        }
        frames.push(ChunkedReadResponse::decode(message).map_err(|e| bad(&format!("not a ChunkedReadResponse: {e}")))?);
        body = &body[end..];
    }
    Ok(frames)
}

/// Encodes and snappy-compresses a request (for clients and tests).
pub fn encode_request(request: &ReadRequest) -> Vec<u8> {
    snappy(&request.encode_to_vec())
}

/// Encodes and snappy-compresses a `SAMPLES` answer.
pub fn encode_response(response: &ReadResponse) -> Vec<u8> {
    snappy(&response.encode_to_vec())
}

/// Decompresses and decodes a `SAMPLES` answer (for clients and tests).
pub fn decode_response(snappy_body: &[u8]) -> Result<ReadResponse> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(snappy_body)
        .map_err(|e| Error::Content(format!("remote read: answer is not snappy-compressed: {e}")))?;
    ReadResponse::decode(raw.as_slice()).map_err(|e| Error::Content(format!("remote read: not a ReadResponse: {e}")))
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).expect("snappy compression of a buffer in memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_as_prometheus_does() {
        let req = |types: &[i32]| ReadRequest { queries: vec![], accepted_response_types: types.to_vec() };
        assert_eq!(negotiate(&req(&[])).unwrap(), ResponseType::Samples);
        assert_eq!(negotiate(&req(&[1, 0])).unwrap(), ResponseType::StreamedXorChunks);
        assert_eq!(negotiate(&req(&[0, 1])).unwrap(), ResponseType::Samples);
        assert_eq!(negotiate(&req(&[7, 1])).unwrap(), ResponseType::StreamedXorChunks);
        let e = negotiate(&req(&[7, 9])).unwrap_err().to_string();
        assert!(e.contains("[7, 9]") && e.contains("supported: [SAMPLES, STREAMED_XOR_CHUNKS]"), "{e}");
    }

    #[test]
    fn frames_carry_length_and_castagnoli_checksum() {
        // CRC-32C's check value: "123456789" → E3069283.
        let mut out = Vec::new();
        write_frame(&mut out, b"123456789");
        assert_eq!(out, [&[9u8, 0xE3, 0x06, 0x92, 0x83][..], b"123456789"].concat());
        // A message of 200 bytes takes a 2-byte length.
        let frame = ChunkedReadResponse { chunked_series: vec![], query_index: 3 };
        let mut big = ChunkedSeries { labels: vec![], chunks: vec![] };
        big.chunks.push(Chunk { min_time_ms: 1, max_time_ms: 2, r#type: 1, data: vec![7; 200] });
        let framed = ChunkedReadResponse { chunked_series: vec![big], query_index: 1 };
        let mut out = Vec::new();
        write_frame(&mut out, &frame.encode_to_vec());
        write_frame(&mut out, &framed.encode_to_vec());
        assert_eq!(read_frames(&out).unwrap(), vec![frame, framed]);
        let mut corrupt = out.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert!(read_frames(&corrupt).unwrap_err().to_string().contains("frame 1: checksum mismatch"));
        assert!(read_frames(&out[..out.len() - 1]).unwrap_err().to_string().contains("frame 1: "));
        // A length no body can hold is an error, not an overflow.
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0];
        assert!(read_frames(&huge).unwrap_err().to_string().contains("bytes announced"));
    }

    #[test]
    fn a_series_is_cut_into_chunks_of_120_and_frames_of_the_size_limit() {
        let labels = vec![crate::remote_write::Label { name: "__name__".into(), value: "up".into() }];
        let samples: Vec<(i64, f64)> = (0..250).map(|i| (i * 1000, i as f64)).collect();
        let mut out = Vec::new();
        write_series_frames(&mut out, 2, labels.clone(), &samples, MAX_BYTES_IN_FRAME);
        let frames = read_frames(&out).unwrap();
        assert_eq!(frames.len(), 1);
        let chunks = &frames[0].chunked_series[0].chunks;
        assert_eq!(chunks.iter().map(|c| (c.min_time_ms, c.max_time_ms)).collect::<Vec<_>>(), [(0, 119_000), (120_000, 239_000), (240_000, 249_000)]);
        let decoded: Vec<(i64, f64)> = chunks.iter().flat_map(|c| crate::xor_chunk::decode(&c.data).unwrap()).collect();
        assert_eq!(decoded, samples);
        assert_eq!((frames[0].query_index, &frames[0].chunked_series[0].labels), (2, &labels));
        // With room for about one chunk per frame, each chunk goes in a frame of its own.
        let mut out = Vec::new();
        write_series_frames(&mut out, 0, labels.clone(), &samples, 20);
        let frames = read_frames(&out).unwrap();
        assert_eq!(frames.iter().map(|f| f.chunked_series[0].chunks.len()).collect::<Vec<_>>(), [1, 1, 1]);
        assert!(frames.iter().all(|f| f.chunked_series[0].labels == labels));
        let mut out = Vec::new();
        write_series_frames(&mut out, 0, labels, &[], MAX_BYTES_IN_FRAME);
        assert!(out.is_empty());
    }

    #[test]
    fn requests_round_trip_and_garbage_is_an_error() {
        let request = ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: 1,
                end_timestamp_ms: 2,
                matchers: vec![Matcher { r#type: MatcherType::Re as i32, name: "job".into(), value: "a|b".into() }],
                hints: Some(ReadHints { step_ms: 15_000, func: "rate".into(), ..Default::default() }),
            }],
            accepted_response_types: vec![0],
        };
        assert_eq!(decode_request(&encode_request(&request)).unwrap(), request);
        assert!(decode_request(b"not snappy").unwrap_err().to_string().contains("snappy"));
        // Valid snappy around bytes that are no protobuf message (a field of wire type 7).
        assert!(decode_request(&snappy(&[0x0f, 1, 2])).unwrap_err().to_string().contains("ReadRequest"));
    }
}
