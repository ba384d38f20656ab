//! HTTP ingest: OTLP/HTTP (`POST /v1/metrics`, `POST /v1/logs`; protobuf or JSON, optionally
//! gzip), the Prometheus remote_write 1.0 and 2.0 receiver (`POST /api/v1/write`, snappy
//! protobuf) and Loki push (`POST /loki/api/v1/push`, JSON or snappy protobuf).

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::Error;
use crate::store::Store;
use crate::wal::WalKind;

const MAX_BODY_BYTES: usize = 64 << 20;

/// Routes of the OTLP/HTTP receiver.
pub fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .route("/api/v1/write", post(remote_write))
        .route("/loki/api/v1/push", post(loki_push))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(store)
}

async fn metrics(State(store): State<Arc<Store>>, headers: HeaderMap, body: Bytes) -> Response {
    receive(store, headers, body, WalKind::MetricsProtobuf, WalKind::MetricsJson).await
}

async fn logs(State(store): State<Arc<Store>>, headers: HeaderMap, body: Bytes) -> Response {
    receive(store, headers, body, WalKind::LogsProtobuf, WalKind::LogsJson).await
}

/// The body under its `Content-Encoding` (none or gzip, bounded), or the 400 to answer.
fn decode_body(encoding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, Response> {
    match encoding {
        None | Some("identity") => Ok(body.to_vec()),
        Some("gzip") => {
            let mut out = Vec::new();
            let mut d = flate2::read::GzDecoder::new(body).take(MAX_BODY_BYTES as u64 * 8);
            d.read_to_end(&mut out).map_err(|e| bad_request(format!("invalid gzip body: {e}")))?;
            Ok(out)
        }
        Some(other) => Err(bad_request(format!("unsupported content encoding {other:?} (gzip or none)"))),
    }
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, msg).into_response()
}

async fn receive(store: Arc<Store>, headers: HeaderMap, body: Bytes, pb: WalKind, json: WalKind) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let is_json = if content_type.starts_with("application/json") {
        true
    } else if content_type.is_empty() || content_type.starts_with("application/x-protobuf") || content_type.starts_with("application/protobuf") {
        false
    } else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content type {content_type:?}: use application/x-protobuf or application/json"),
        )
            .into_response();
    };
    let body = match decode_body(headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()), &body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let kind = if is_json { json } else { pb };
    let answer_type = if is_json { "application/json" } else { "application/x-protobuf" };
    // A metrics request with exponential histograms is stored but for them: 200 with a
    // `partial_success` saying how many data points were not (the OTLP spec's answer).
    ingest(store, kind, body, |done| {
        ([(header::CONTENT_TYPE, answer_type)], pharos_model::otlp::metrics_response(done.histograms_dropped, is_json)).into_response()
    })
    .await
}

async fn remote_write(State(store): State<Arc<Store>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let v2 = match remote_write_message(content_type) {
        Ok(v2) => v2,
        Err(message) => return (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response(),
    };
    match headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()) {
        None | Some("snappy") => {}
        Some(other) => {
            // 2.0 asks for 415 on an encoding the receiver does not support; 1.0 senders expect 400.
            let status = if v2 { StatusCode::UNSUPPORTED_MEDIA_TYPE } else { StatusCode::BAD_REQUEST };
            return (status, format!("unsupported content encoding {other:?}: remote_write bodies are snappy")).into_response();
        }
    }
    // Kept compressed in the WAL; decoding (and its errors) happen in `ingest_durable`.
    if !v2 {
        return ingest(store, WalKind::RemoteWriteSnappy, body.to_vec(), |_| StatusCode::NO_CONTENT.into_response()).await;
    }
    // 2.0 senders read how much was written from these headers.
    ingest(store, WalKind::RemoteWrite2Snappy, body.to_vec(), |done| {
        use pharos_model::remote_write_v2::{EXEMPLARS_WRITTEN, HISTOGRAMS_WRITTEN, SAMPLES_WRITTEN};
        let written =
            [(SAMPLES_WRITTEN, done.items.to_string()), (HISTOGRAMS_WRITTEN, done.histograms.to_string()), (EXEMPLARS_WRITTEN, done.exemplars.to_string())];
        (StatusCode::NO_CONTENT, written.map(|(k, v)| (header::HeaderName::from_static(k), v))).into_response()
    })
    .await
}

/// Whether a remote_write `Content-Type` names the 2.0 message (its `proto=` parameter), or
/// the message of a 415 when it names a message Pharos does not read. No parameter (and any
/// media type, as before 2.0 existed) means 1.0.
fn remote_write_message(content_type: &str) -> Result<bool, String> {
    let proto = content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("proto").then(|| v.trim().trim_matches('"'))
    });
    match proto {
        None | Some("prometheus.WriteRequest") => Ok(false),
        Some(pharos_model::remote_write_v2::PROTO_NAME) => Ok(true),
        Some(other) => Err(format!(
            "unsupported remote_write message {other:?}: send prometheus.WriteRequest (1.0) or {} (2.0)",
            pharos_model::remote_write_v2::PROTO_NAME
        )),
    }
}

/// `POST /loki/api/v1/push`: JSON (optionally gzip) or snappy protobuf `logproto.PushRequest`;
/// 204 once in the WAL.
async fn loki_push(State(store): State<Arc<Store>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    if content_type.starts_with("application/json") {
        let body = match decode_body(encoding, &body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        return ingest(store, WalKind::LokiPushJson, body, |_| StatusCode::NO_CONTENT.into_response()).await;
    }
    if !(content_type.is_empty() || content_type.starts_with("application/x-protobuf")) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content type {content_type:?}: use application/x-protobuf (snappy) or application/json"),
        )
            .into_response();
    }
    ingest(store, WalKind::LokiPushSnappy, body.to_vec(), |_| StatusCode::NO_CONTENT.into_response()).await
}

/// Stores `body` durably (WAL fsync) and answers `ok` of what was stored, or the error sorted
/// by whose fault it is.
async fn ingest(store: Arc<Store>, kind: WalKind, body: Vec<u8>, ok: impl FnOnce(crate::store::Ingested) -> Response + Send) -> Response {
    match tokio::task::spawn_blocking(move || store.ingest_durable(kind, &body)).await {
        Ok(Ok(n)) => ok(n),
        Ok(Err(Error::BadInput(msg))) => bad_request(msg),
        Ok(Err(e)) => {
            tracing::error!(error = %e, ?kind, "ingest failed");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("ingest task failed: {e}")).into_response(),
    }
}
