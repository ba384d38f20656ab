//! The agent's own telemetry: every counter it exposes on `/metrics`, defined in one place, and
//! the small HTTP server serving `/metrics` and `/-/ready`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::AtomicU64;
use prometheus_client::registry::Registry;

/// Counters of the agent (cheap to clone; clones share the values).
#[derive(Clone)]
pub struct AgentMetrics {
    registry: Arc<Registry>,
    /// `pharos_agent_scrapes_total{result="success"|"failure"}`.
    pub scrapes: Family<Vec<(String, String)>, Counter>,
    /// `pharos_agent_samples_sent_total`: samples acknowledged by the sink.
    pub samples_sent: Counter,
    /// `pharos_agent_log_records_sent_total`: log records acknowledged by the sink.
    pub log_records_sent: Counter,
    /// `pharos_agent_sink_errors_total`: failed send attempts (each is retried).
    pub sink_errors: Counter,
    /// `pharos_agent_sink_retries_total`: send attempts after a failure.
    pub sink_retries: Counter,
    /// `pharos_agent_sink_rejected_total`: payloads the collector refused with a 4xx (dropped).
    pub sink_rejected: Counter,
    /// `pharos_agent_buffer_bytes`: bytes of unacknowledged records in the disk buffer.
    pub buffer_bytes: Gauge,
    /// `pharos_agent_buffer_records`: unacknowledged records in the disk buffer.
    pub buffer_records: Gauge,
    /// `pharos_agent_buffer_full`: 1 while an append waits for space (backpressure active).
    pub buffer_full: Gauge,
    /// `pharos_agent_buffer_blocked_seconds_total`: time appends spent waiting for space.
    pub buffer_blocked_seconds: Counter<f64, AtomicU64>,
    /// `pharos_agent_log_lines_truncated_total`: log records cut at `logs.max_line_bytes`.
    pub log_lines_truncated: Counter,
    /// `pharos_agent_log_throttled_seconds_total`: time log files waited for the rate limit.
    pub log_throttled_seconds: Counter<f64, AtomicU64>,
    /// `pharos_agent_remap_errors_total{transform}`: log records a VRL program failed on.
    pub remap_errors: Family<Vec<(String, String)>, Counter>,
    /// `pharos_agent_remap_dropped_total{transform}`: log records a VRL transform dropped
    /// (`abort`, or a failure with `drop_on_error`).
    pub remap_dropped: Family<Vec<(String, String)>, Counter>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    /// Creates and registers every counter.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let scrapes = Family::<Vec<(String, String)>, Counter>::default();
        let samples_sent = Counter::default();
        let log_records_sent = Counter::default();
        let sink_errors = Counter::default();
        let sink_retries = Counter::default();
        let sink_rejected = Counter::default();
        let buffer_bytes = Gauge::default();
        let buffer_records = Gauge::default();
        let buffer_full = Gauge::default();
        let buffer_blocked_seconds = Counter::<f64, AtomicU64>::default();
        let log_lines_truncated = Counter::default();
        let log_throttled_seconds = Counter::<f64, AtomicU64>::default();
        let remap_errors = Family::<Vec<(String, String)>, Counter>::default();
        let remap_dropped = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "pharos_agent_remap_errors",
            "Log records a remap transform's VRL program failed on, by transform",
            remap_errors.clone(),
        );
        registry.register(
            "pharos_agent_remap_dropped",
            "Log records dropped by a remap transform (abort, or an error with drop_on_error), by transform",
            remap_dropped.clone(),
        );
        registry.register(
            "pharos_agent_log_lines_truncated",
            "Log records cut at logs.max_line_bytes",
            log_lines_truncated.clone(),
        );
        registry.register(
            "pharos_agent_log_throttled_seconds",
            "Time log files waited for logs.rate_limit_lines_per_s",
            log_throttled_seconds.clone(),
        );
        // prometheus-client appends `_total` to counter names.
        registry.register("pharos_agent_scrapes", "Scrapes by result (success or failure)", scrapes.clone());
        registry.register("pharos_agent_samples_sent", "Samples acknowledged by the sink", samples_sent.clone());
        registry.register(
            "pharos_agent_log_records_sent",
            "Log records acknowledged by the sink",
            log_records_sent.clone(),
        );
        registry.register("pharos_agent_sink_errors", "Failed sink send attempts", sink_errors.clone());
        registry.register("pharos_agent_sink_retries", "Sink send attempts after a failure", sink_retries.clone());
        registry.register(
            "pharos_agent_sink_rejected",
            "Payloads rejected by the collector with a 4xx status and dropped",
            sink_rejected.clone(),
        );
        registry.register("pharos_agent_buffer_bytes", "Bytes of unacknowledged records in the disk buffer", buffer_bytes.clone());
        registry.register("pharos_agent_buffer_records", "Unacknowledged records in the disk buffer", buffer_records.clone());
        registry.register(
            "pharos_agent_buffer_full",
            "1 while the disk buffer is full and sources wait (backpressure active)",
            buffer_full.clone(),
        );
        registry.register(
            "pharos_agent_buffer_blocked_seconds",
            "Time sources spent waiting for space in the disk buffer",
            buffer_blocked_seconds.clone(),
        );
        AgentMetrics {
            registry: Arc::new(registry),
            scrapes,
            samples_sent,
            log_records_sent,
            sink_errors,
            sink_retries,
            sink_rejected,
            buffer_bytes,
            buffer_records,
            buffer_full,
            buffer_blocked_seconds,
            log_lines_truncated,
            log_throttled_seconds,
            remap_errors,
            remap_dropped,
        }
    }

    /// The `pharos_agent_remap_errors_total` counter of transform `name`.
    pub fn remap_errors(&self, name: &str) -> Counter {
        self.remap_errors.get_or_create(&vec![("transform".to_string(), name.to_string())]).clone()
    }

    /// The `pharos_agent_remap_dropped_total` counter of transform `name`.
    pub fn remap_dropped(&self, name: &str) -> Counter {
        self.remap_dropped.get_or_create(&vec![("transform".to_string(), name.to_string())]).clone()
    }

    /// Counts one scrape of a target.
    pub fn count_scrape(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.scrapes.get_or_create(&vec![("result".to_string(), result.to_string())]).inc();
    }

    /// The Prometheus text exposition of all counters.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

async fn metrics_handler(State(metrics): State<AgentMetrics>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        metrics.render(),
    )
}

async fn ready_handler() -> impl IntoResponse {
    (StatusCode::OK, "ready\n")
}

/// Binds the agent's HTTP server, with `extra` routes (event receivers) next to `/metrics`;
/// the returned future serves until dropped.
pub async fn bind(
    listen: SocketAddr,
    metrics: AgentMetrics,
    extra: Router,
) -> anyhow::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/-/ready", get(ready_handler))
        .with_state(metrics)
        .merge(extra);
    Ok((local, async move { axum::serve(listener, app).await }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_total_suffix() {
        let m = AgentMetrics::new();
        m.count_scrape(true);
        m.count_scrape(false);
        m.count_scrape(false);
        m.samples_sent.inc_by(5);
        let text = m.render();
        assert!(text.contains("pharos_agent_scrapes_total{result=\"failure\"} 2"), "{text}");
        assert!(text.contains("pharos_agent_samples_sent_total 5"), "{text}");
        assert!(text.contains("pharos_agent_sink_retries_total 0"), "{text}");
        m.buffer_full.set(1);
        m.buffer_blocked_seconds.inc_by(1.5);
        let text = m.render();
        assert!(text.contains("pharos_agent_buffer_full 1"), "{text}");
        assert!(text.contains("pharos_agent_buffer_blocked_seconds_total 1.5"), "{text}");
        assert!(text.contains("pharos_agent_buffer_bytes 0"), "{text}");
    }
}
