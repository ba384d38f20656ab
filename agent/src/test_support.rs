//! Local HTTP peers for unit tests: an exposition endpoint and an OTLP/HTTP collector.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use pharos_model::{LogRecord, Sample, otlp};
use tokio::sync::mpsc;

/// What the exposition endpoint currently serves: status, content type, body.
pub type Exposition = Arc<Mutex<(u16, String, String)>>;

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Starts an endpoint serving `GET /metrics` from the returned shared state.
pub async fn exposition_server(body: &str) -> (SocketAddr, Exposition) {
    let state: Exposition = Arc::new(Mutex::new((200, "text/plain; version=0.0.4".into(), body.into())));
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Exposition>| async move {
                let (status, ct, body) = s.lock().unwrap().clone();
                (StatusCode::from_u16(status).unwrap(), [(header::CONTENT_TYPE, ct)], body)
            }),
        )
        .with_state(state.clone());
    (serve(app).await, state)
}

/// What the fake collector received.
pub struct Received {
    /// Decoded metric payloads, one message per request.
    pub metrics: mpsc::UnboundedReceiver<Vec<Sample>>,
    /// Decoded log payloads, one message per request.
    pub logs: mpsc::UnboundedReceiver<Vec<LogRecord>>,
}

#[derive(Clone)]
struct CollectorState {
    metrics: mpsc::UnboundedSender<Vec<Sample>>,
    logs: mpsc::UnboundedSender<Vec<LogRecord>>,
    /// Statuses to answer before accepting (popped front first).
    fail_first: Arc<Mutex<Vec<u16>>>,
}

fn next_failure(s: &CollectorState) -> Option<StatusCode> {
    let mut f = s.fail_first.lock().unwrap();
    if f.is_empty() { None } else { Some(StatusCode::from_u16(f.remove(0)).unwrap()) }
}

/// Starts an OTLP/HTTP collector decoding protobuf; it first answers the `fail_first` statuses.
pub async fn collector(fail_first: Vec<u16>) -> (String, Received) {
    let (mtx, mrx) = mpsc::unbounded_channel();
    let (ltx, lrx) = mpsc::unbounded_channel();
    let state = CollectorState { metrics: mtx, logs: ltx, fail_first: Arc::new(Mutex::new(fail_first)) };
    let app = Router::new()
        .route(
            "/v1/metrics",
            post(|State(s): State<CollectorState>, headers: axum::http::HeaderMap, body: Bytes| async move {
                assert_eq!(headers[header::CONTENT_TYPE], "application/x-protobuf");
                if let Some(status) = next_failure(&s) {
                    return status;
                }
                let _ = s.metrics.send(otlp::decode_metrics_protobuf(&body).unwrap());
                StatusCode::OK
            }),
        )
        .route(
            "/v1/logs",
            post(|State(s): State<CollectorState>, body: Bytes| async move {
                if let Some(status) = next_failure(&s) {
                    return status;
                }
                let _ = s.logs.send(otlp::decode_logs_protobuf(&body).unwrap());
                StatusCode::OK
            }),
        )
        .with_state(state);
    let addr = serve(app).await;
    (format!("http://{addr}"), Received { metrics: mrx, logs: lrx })
}

/// A disk buffer in `dir` forwarding to the OTLP/HTTP collector at `url` (the forwarder runs
/// until the returned handle is aborted).
pub fn buffer_to_http(
    dir: &std::path::Path,
    url: &str,
    metrics: crate::telemetry::AgentMetrics,
) -> (crate::buffer::Buffer, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let sink = crate::sink::Sink::http(url, metrics.clone()).unwrap();
    let opened = crate::buffer::Buffer::open(dir, &crate::buffer::BufferConfig::default(), metrics).unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let forwarder = tokio::spawn(async move {
        let _stop = stop;
        crate::buffer::run_forwarder(opened.reader, sink, stop_rx).await
    });
    (opened.buffer, forwarder)
}
