//! Trino query-completed events received over HTTP: `POST /v1/trino/events` on the agent's
//! listen address, where Trino's `http-event-listener` posts `QueryCompletedEvent` JSON (one
//! object or an array). Each query becomes the samples of
//! [`pharos_model::trino::TrinoQuery::to_samples`].
//!
//! `team`: the client tag `team=<name>` (`--client-tags team=data-eng`) when present; otherwise
//! no team (Trino events carry no namespace).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use pharos_model::Labels;
use pharos_model::otlp::encode_metrics;
use pharos_model::trino::parse_query_completed_batch;

use crate::sink::Signal;

#[derive(Clone)]
struct TrinoState {
    buffer: crate::buffer::Buffer,
    resource: Labels,
}

/// The route, to merge into the agent's HTTP server.
pub fn router(buffer: crate::buffer::Buffer, resource: Labels) -> Router {
    Router::new().route("/v1/trino/events", post(receive)).with_state(TrinoState { buffer, resource })
}

async fn receive(State(state): State<TrinoState>, body: Bytes) -> (StatusCode, String) {
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid Trino event: body is not UTF-8: {e}\n")),
    };
    let queries = match parse_query_completed_batch(text) {
        Ok(q) => q,
        Err(e) => {
            tracing::debug!(error = %e, "rejected Trino event");
            return (StatusCode::BAD_REQUEST, format!("invalid Trino event: {e}\n"));
        }
    };
    let mut samples = Vec::new();
    for q in &queries {
        samples.extend(q.to_samples(&q.owner_labels()));
    }
    if !samples.is_empty() {
        // Answer only once the samples are durably buffered: Trino's listener retries on failure.
        state.buffer.append(Signal::Metrics, encode_metrics(&state.resource, &samples), samples.len() as u64).await;
    }
    (StatusCode::OK, format!("accepted {} queries\n", queries.len()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::telemetry::AgentMetrics;
    use crate::test_support::collector;

    #[tokio::test]
    async fn events_become_samples_and_bad_json_is_a_400() {
        let (url, mut received) = collector(vec![]).await;
        let dir = tempfile::tempdir().unwrap();
        let (buffer, _forwarder) = crate::test_support::buffer_to_http(dir.path(), &url, AgentMetrics::new());
        let (addr, server) = crate::telemetry::bind(
            "127.0.0.1:0".parse().unwrap(),
            AgentMetrics::new(),
            router(buffer, Labels::from_pairs([("cluster", "c1")])),
        )
        .await
        .unwrap();
        tokio::spawn(server);
        let client = reqwest::Client::new();
        let endpoint = format!("http://{addr}/v1/trino/events");
        let event = r#"[{"metadata":{"queryId":"20260526_1","queryState":"FINISHED"},
            "context":{"user":"alice","source":"superset","clientTags":["team=analytics"],"resourceGroupId":["global","bi"]},
            "statistics":{"cpuTime":"PT12.5S","wallTime":"PT3S","peakUserMemoryBytes":1000,"cumulativeMemory":5000.0,
                          "totalBytes":10,"outputBytes":20},
            "createTime":"2026-05-26T14:30:12Z","endTime":"2026-05-26T14:30:15Z"}]"#;
        let r = client.post(&endpoint).body(event).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let samples = tokio::time::timeout(Duration::from_secs(10), received.metrics.recv()).await.unwrap().unwrap();
        assert_eq!(samples.len(), 7);
        let cpu = samples.iter().find(|s| s.labels.metric_name() == Some("trino_query_cpu_seconds")).unwrap();
        assert_eq!(cpu.value, 12.5);
        assert_eq!(cpu.labels.get("team"), Some("analytics"));
        assert_eq!(cpu.labels.get("cluster"), Some("c1"));
        assert_eq!(cpu.labels.get("trino_resource_group"), Some("global.bi"));
        let mem = samples.iter().find(|s| s.labels.metric_name() == Some("trino_query_cumulative_memory_byte_seconds")).unwrap();
        assert_eq!(mem.value, 5.0);

        let r = client.post(&endpoint).body("{\"metadata\": ").send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().starts_with("invalid Trino event: invalid JSON:"));
        let r = client.post(&endpoint).body("{}").send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.text().await.unwrap(), "invalid Trino event: not a Trino QueryCompletedEvent: metadata.queryId is missing\n");
    }
}
