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

use crate::sink::{Signal, Sink};

#[derive(Clone)]
struct TrinoState {
    sink: Sink,
    resource: Labels,
}

/// The route, to merge into the agent's HTTP server.
pub fn router(sink: Sink, resource: Labels) -> Router {
    Router::new().route("/v1/trino/events", post(receive)).with_state(TrinoState { sink, resource })
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
        let extra = match q.client_tag("team") {
            Some(team) if !team.is_empty() => Labels::from_pairs([("team", team)]),
            _ => Labels::default(),
        };
        samples.extend(q.to_samples(&extra));
    }
    if !samples.is_empty() {
        // Answer only once the sink has the samples: Trino's listener retries on failure.
        state.sink.send(Signal::Metrics, encode_metrics(&state.resource, &samples), samples.len() as u64).await;
    }
    (StatusCode::OK, format!("accepted {} queries\n", queries.len()))
}
