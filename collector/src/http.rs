//! HTTP ingest: OTLP/HTTP (`POST /v1/metrics`, `POST /v1/logs`; protobuf or JSON, optionally
//! gzip), the Prometheus remote_write 1.0 receiver (`POST /api/v1/write`, snappy protobuf) and
//! Loki push (`POST /loki/api/v1/push`, JSON or snappy protobuf).

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
    let ok = if is_json {
        ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/x-protobuf")], Vec::<u8>::new()).into_response()
    };
    ingest(store, kind, body, ok).await
}

async fn remote_write(State(store): State<Arc<Store>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.contains("io.prometheus.write.v2") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "remote_write 2.0 is not supported yet; send 1.0 (prometheus.WriteRequest)",
        )
            .into_response();
    }
    match headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()) {
        None | Some("snappy") => {}
        Some(other) => return bad_request(format!("unsupported content encoding {other:?}: remote_write bodies are snappy")),
    }
    // Kept compressed in the WAL; decoding (and its errors) happen in `ingest_durable`.
    ingest(store, WalKind::RemoteWriteSnappy, body.to_vec(), StatusCode::NO_CONTENT.into_response()).await
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
        return ingest(store, WalKind::LokiPushJson, body, StatusCode::NO_CONTENT.into_response()).await;
    }
    if !(content_type.is_empty() || content_type.starts_with("application/x-protobuf")) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content type {content_type:?}: use application/x-protobuf (snappy) or application/json"),
        )
            .into_response();
    }
    ingest(store, WalKind::LokiPushSnappy, body.to_vec(), StatusCode::NO_CONTENT.into_response()).await
}

/// Stores `body` durably (WAL fsync) and answers `ok`, or the error sorted by whose fault it is.
async fn ingest(store: Arc<Store>, kind: WalKind, body: Vec<u8>, ok: Response) -> Response {
    match tokio::task::spawn_blocking(move || store.ingest_durable(kind, &body)).await {
        Ok(Ok(_)) => ok,
        Ok(Err(Error::BadInput(msg))) => bad_request(msg),
        Ok(Err(e)) => {
            tracing::error!(error = %e, ?kind, "ingest failed");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("ingest task failed: {e}")).into_response(),
    }
}
