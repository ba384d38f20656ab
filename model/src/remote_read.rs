//! Prometheus remote read: `prometheus.ReadRequest` and `prometheus.ReadResponse` (Prometheus'
//! `prompb/remote.proto`), snappy block-compressed, with the `SAMPLES` response type.
//!
//! A request holds queries (a time range and label matchers each); the answer holds, per query,
//! every matching series with its raw samples in the range, in the `TimeSeries` message of
//! remote_write. The streamed `STREAMED_XOR_CHUNKS` response type is not supported: a request
//! that accepts only it is refused ([`negotiate`]).

use prost::Message;

use crate::remote_write::TimeSeries;
use crate::{Error, Result};

/// `Content-Type` of a `SAMPLES` answer (its body is snappy-compressed, `Content-Encoding: snappy`).
pub const CONTENT_TYPE: &str = "application/x-protobuf";

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
    /// A stream of `ChunkedReadResponse` frames of XOR chunks (not supported).
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
    if request.accepted_response_types.contains(&(ResponseType::Samples as i32)) {
        return Ok(ResponseType::Samples);
    }
    let named: Vec<String> = request
        .accepted_response_types
        .iter()
        .map(|t| match ResponseType::try_from(*t) {
            Ok(ResponseType::Samples) => "SAMPLES".to_string(),
            Ok(ResponseType::StreamedXorChunks) => "STREAMED_XOR_CHUNKS".to_string(),
            Err(_) => t.to_string(),
        })
        .collect();
    Err(Error::Content(format!(
        "remote read: none of the accepted response types [{}] is supported; supported: [SAMPLES]",
        named.join(", ")
    )))
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
        assert_eq!(negotiate(&req(&[1, 0])).unwrap(), ResponseType::Samples);
        let e = negotiate(&req(&[1, 7])).unwrap_err().to_string();
        assert!(e.contains("[STREAMED_XOR_CHUNKS, 7]") && e.contains("supported: [SAMPLES]"), "{e}");
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
