//! `POST /api/v1/read`: Prometheus remote read, so that a Prometheus (`remote_read:`) or another
//! remote read client evaluates its own queries over the samples Pharos stores.
//!
//! Each query of the request selects the series its matchers match and answers their raw
//! samples in `[start, end]` (staleness markers included, as Prometheus' TSDB returns them), in
//! the response type the client prefers (see [`pharos_model::remote_read`]):
//!
//! - `SAMPLES`: float samples and native histograms (as float histograms);
//! - `STREAMED_XOR_CHUNKS`: float samples in XOR chunks, series by series in label order. Pharos
//!   writes no histogram chunks: when a query selects native histograms the answer is `SAMPLES`
//!   if the client accepts it, else a 400 naming the series.
//!
//! The answer is built in memory before it is sent, so a query may return at most
//! [`SAMPLE_LIMIT`] samples (Prometheus' limit of `SAMPLES` answers) in either type; errors are
//! plain text.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pharos_model::remote_read::{self, MatcherType, QueryResult, ReadResponse, ResponseType};
use std::collections::BTreeMap;

use pharos_model::remote_write::{Histogram, RemoteSample, TimeSeries, proto_labels};
use pharos_model::{LabelMatcher, Labels, MetricsReader};

use super::AppState;

/// Most samples one query of a request may return (Prometheus' default
/// `--storage.remote.read-sample-limit`).
pub const SAMPLE_LIMIT: usize = 50_000_000;

/// Why a request was not answered.
#[derive(Debug, PartialEq)]
pub enum ReadError {
    /// The client's fault (400).
    BadRequest(String),
    /// The store failed (500).
    Internal(String),
}

/// `POST /api/v1/read`.
pub async fn read(State(state): State<AppState>, body: Bytes) -> Response {
    let answered = tokio::task::spawn_blocking(move || answer(state.metrics.as_ref(), &body, SAMPLE_LIMIT))
        .await
        .unwrap_or_else(|e| Err(ReadError::Internal(format!("remote read task failed: {e}"))));
    match answered {
        Ok((ResponseType::Samples, body)) => {
            ([(header::CONTENT_TYPE, remote_read::CONTENT_TYPE), (header::CONTENT_ENCODING, "snappy")], body).into_response()
        }
        Ok((ResponseType::StreamedXorChunks, body)) => {
            ([(header::CONTENT_TYPE, remote_read::STREAMED_CONTENT_TYPE)], body).into_response()
        }
        Err(ReadError::BadRequest(msg)) => (StatusCode::BAD_REQUEST, msg).into_response(),
        Err(ReadError::Internal(msg)) => (StatusCode::INTERNAL_SERVER_ERROR, msg).into_response(),
    }
}

/// The answer to the snappy-compressed `ReadRequest` `body`, and its type: a snappy-compressed
/// `ReadResponse`, or the frames of a streamed one.
pub fn answer(reader: &dyn MetricsReader, body: &[u8], sample_limit: usize) -> Result<(ResponseType, Vec<u8>), ReadError> {
    let bad = |e: pharos_model::Error| ReadError::BadRequest(e.to_string());
    let request = remote_read::decode_request(body).map_err(bad)?;
    let mut kind = remote_read::negotiate(&request).map_err(bad)?;
    let mut results = Vec::with_capacity(request.queries.len());
    for (i, q) in request.queries.iter().enumerate() {
        let matchers = q
            .matchers
            .iter()
            .map(|m| {
                let op = MatcherType::try_from(m.r#type)
                    .map_err(|_| format!("remote read: query {i}: unknown matcher type {}", m.r#type))?;
                LabelMatcher::new(&m.name, op.operator(), &m.value)
                    .map_err(|e| format!("remote read: query {i}: matcher {}{}{:?}: {e}", m.name, op.operator(), m.value))
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(ReadError::BadRequest)?;
        if matchers.iter().all(|m| m.matches_value("")) {
            return Err(ReadError::BadRequest(format!(
                "remote read: query {i}: needs at least one matcher that does not match the empty string"
            )));
        }
        let internal = |e: String| ReadError::Internal(format!("remote read: query {i}: {e}"));
        let series = reader.select_series(&matchers, q.start_timestamp_ms, q.end_timestamp_ms).map_err(internal)?;
        let histograms = reader.select_histograms(&matchers, q.start_timestamp_ms, q.end_timestamp_ms).map_err(internal)?;
        // A series holding both kinds answers both in one `TimeSeries`, as Prometheus does.
        let mut by_labels: BTreeMap<Labels, TimeSeries> = BTreeMap::new();
        let mut samples = 0usize;
        for s in series {
            samples += s.samples.len();
            let ts = by_labels.entry(s.labels.clone()).or_insert_with(|| TimeSeries { labels: proto_labels(&s.labels), ..Default::default() });
            ts.samples = s.samples.into_iter().map(|(timestamp, value)| RemoteSample { value, timestamp }).collect();
        }
        for s in histograms {
            samples += s.samples.len();
            let ts = by_labels.entry(s.labels.clone()).or_insert_with(|| TimeSeries { labels: proto_labels(&s.labels), ..Default::default() });
            ts.histograms = s.samples.iter().map(|(t, h)| Histogram::float(*t, h)).collect();
        }
        if samples > sample_limit {
            return Err(ReadError::BadRequest(format!(
                "remote read: query {i}: exceeded sample limit ({sample_limit}): {samples} samples in {} series",
                by_labels.len()
            )));
        }
        results.push(QueryResult { timeseries: by_labels.into_values().collect() });
    }
    if kind == ResponseType::StreamedXorChunks {
        let with_histograms = results.iter().enumerate().find_map(|(i, r)| {
            r.timeseries.iter().find(|ts| !ts.histograms.is_empty()).map(|ts| (i, ts))
        });
        if let Some((i, ts)) = with_histograms {
            if !request.accepted_response_types.contains(&(ResponseType::Samples as i32)) {
                let labels: Vec<String> = ts.labels.iter().map(|l| format!("{}={:?}", l.name, l.value)).collect();
                return Err(ReadError::BadRequest(format!(
                    "remote read: query {i}: series {{{}}} holds native histograms, which Pharos does not write as STREAMED_XOR_CHUNKS \
                     (histogram chunks are not supported); accept SAMPLES to read them",
                    labels.join(", ")
                )));
            }
            kind = ResponseType::Samples;
        }
    }
    match kind {
        ResponseType::Samples => Ok((kind, remote_read::encode_response(&ReadResponse { results }))),
        ResponseType::StreamedXorChunks => {
            let mut out = Vec::new();
            for (i, result) in results.into_iter().enumerate() {
                for ts in result.timeseries {
                    let samples: Vec<(i64, f64)> = ts.samples.iter().map(|s| (s.timestamp, s.value)).collect();
                    remote_read::write_series_frames(&mut out, i as i64, ts.labels, &samples, remote_read::MAX_BYTES_IN_FRAME);
                }
            }
            Ok((kind, out))
        }
    }
}
