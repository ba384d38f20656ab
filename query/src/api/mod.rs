//! HTTP routes: the Prometheus query API, the Loki-shaped log query API, and SQL
//! ([`sql_router`], over a [`pharos_model::SqlReader`]).

mod federate;
mod loki;
mod loki_detected;
mod params;
mod prometheus;
mod remote_read;
mod series_meta;
mod sql;
mod status;
mod tail;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use pharos_model::{LogsReader, MetricsReader};

pub use sql::{SqlSettings, sql_router};

/// What every handler reads from.
#[derive(Clone)]
pub struct AppState {
    metrics: Arc<dyn MetricsReader>,
    logs: Arc<dyn LogsReader>,
}

/// The query routes (see the crate docs for the list).
pub fn router(metrics: Arc<dyn MetricsReader>, logs: Arc<dyn LogsReader>) -> Router {
    Router::new()
        .route(
            "/api/v1/query",
            get(prometheus::query_get).post(prometheus::query_post),
        )
        .route(
            "/api/v1/query_range",
            get(prometheus::query_range_get).post(prometheus::query_range_post),
        )
        .route("/api/v1/read", axum::routing::post(remote_read::read))
        .route("/federate", get(federate::federate))
        .route("/api/v1/status/buildinfo", get(prometheus::buildinfo))
        .route("/api/v1/status/tsdb", get(status::tsdb))
        .route(
            "/api/v1/format_query",
            get(status::format_query_get).post(status::format_query_post),
        )
        .route(
            "/api/v1/query_exemplars",
            get(status::query_exemplars_get).post(status::query_exemplars_post),
        )
        .route(
            "/api/v1/series",
            get(series_meta::series).post(series_meta::series),
        )
        .route(
            "/api/v1/labels",
            get(series_meta::labels).post(series_meta::labels),
        )
        .route(
            "/api/v1/label/{name}/values",
            get(series_meta::label_values),
        )
        .route(
            "/api/v1/targets/metadata",
            get(series_meta::targets_metadata).post(series_meta::targets_metadata),
        )
        .route(
            "/api/v1/metadata",
            get(series_meta::metadata).post(series_meta::metadata),
        )
        .route("/loki/api/v1/status/buildinfo", get(prometheus::loki_buildinfo))
        .route("/loki/api/v1/query_range", get(loki::query_range))
        .route("/loki/api/v1/query", get(loki::query))
        .route("/loki/api/v1/labels", get(loki::labels))
        .route("/loki/api/v1/label/{name}/values", get(loki::label_values))
        .route("/loki/api/v1/series", get(loki::series).post(loki::series))
        .route("/loki/api/v1/index/stats", get(loki::index_stats))
        .route("/loki/api/v1/index/volume", get(loki::volume))
        .route("/loki/api/v1/index/volume_range", get(loki::volume_range))
        .route("/loki/api/v1/detected_fields", get(loki_detected::detected_fields))
        .route("/loki/api/v1/detected_field/{name}/values", get(loki_detected::detected_field_values))
        .route("/loki/api/v1/detected_labels", get(loki_detected::detected_labels))
        .route("/loki/api/v1/patterns", get(loki_detected::patterns))
        .route("/loki/api/v1/tail", get(tail::tail))
        .with_state(AppState { metrics, logs })
}
