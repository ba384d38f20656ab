//! The Prometheus HTTP API: `/api/v1/query`, `/api/v1/query_range`, `/api/v1/status/buildinfo`
//! (and Loki's form of the latter).

use axum::Json;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::params::{Params, now_ms, parse_duration_ms, required, time_param_ms};
use crate::error::{Error, Result};
use crate::promql;

/// `GET /api/v1/query`.
pub async fn query_get(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    let stats = wants_stats(&params);
    respond(instant(state, params, stats).await)
}

/// `POST /api/v1/query` (form body; query-string parameters also read).
pub async fn query_post(
    State(state): State<AppState>,
    Query(mut params): Query<Params>,
    Form(form): Form<Params>,
) -> Response {
    params.extend(form);
    let stats = wants_stats(&params);
    respond(instant(state, params, stats).await)
}

/// `GET /api/v1/query_range`.
pub async fn query_range_get(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Response {
    let stats = wants_stats(&params);
    respond(range(state, params, stats).await)
}

/// `POST /api/v1/query_range` (form body; query-string parameters also read).
pub async fn query_range_post(
    State(state): State<AppState>,
    Query(mut params): Query<Params>,
    Form(form): Form<Params>,
) -> Response {
    params.extend(form);
    let stats = wants_stats(&params);
    respond(range(state, params, stats).await)
}

/// The build information fields Prometheus and Loki both answer.
fn build_info() -> serde_json::Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "", "branch": "", "buildUser": "", "buildDate": "", "goVersion": "",
    })
}

/// `GET /api/v1/status/buildinfo`.
pub async fn buildinfo() -> Response {
    Json(json!({"status": "success", "data": build_info()})).into_response()
}

/// `GET /loki/api/v1/status/buildinfo`: the same fields without the `status`/`data` envelope,
/// as Loki answers it (and tools that talk to Loki read it so).
pub async fn loki_buildinfo() -> Response {
    Json(build_info()).into_response()
}

/// Prometheus' `stats` parameter: any non-empty value asks for the query's timings and sample
/// count in `data.stats`.
fn wants_stats(params: &Params) -> bool {
    params.get("stats").is_some_and(|s| !s.is_empty())
}

/// The answer's body (see [`answer`]) with its content type, or the error (logged when
/// internal). Loki's log queries answer through it too.
pub(super) fn respond(result: Result<Vec<u8>>) -> Response {
    match result {
        Ok(body) => ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            if matches!(e, Error::Internal(_)) {
                tracing::warn!(error = %e, "query failed");
            }
            e.into_response()
        }
    }
}

/// `{"status":"success","data":…}` of a query's result, written where the query ran (off the
/// async workers: a large range answer takes a while to write).
fn answer(r: &promql::QueryResult, with_stats: bool) -> Result<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Success<'a> {
        status: &'static str,
        data: promql::DataJson<'a>,
        // As Prometheus: present only when there are any.
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        warnings: &'a [String],
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        infos: &'a [String],
    }
    serde_json::to_vec(&Success {
        status: "success",
        data: r.data(with_stats),
        warnings: &r.annotations.warnings,
        infos: &r.annotations.infos,
    })
        .map_err(|e| Error::Internal(format!("writing the answer: {e}")))
}

/// The query's options: `lookback_delta` (a duration; zero or negative: the default 5m, as in
/// Prometheus) and `timeout` (a duration, capped by the default 2m, as Prometheus caps it by
/// `--query.timeout`).
fn query_options(params: &Params) -> Result<promql::QueryOptions> {
    let mut options = promql::QueryOptions::default();
    if let Some(s) = params.get("lookback_delta").filter(|s| !s.is_empty()) {
        let ms = parse_duration_ms("lookback_delta", s)?;
        if ms > 0 {
            options.lookback_ms = ms;
        }
    }
    if let Some(s) = params.get("timeout").filter(|s| !s.is_empty()) {
        let ms = parse_duration_ms("timeout", s)?;
        if ms > 0 {
            options.timeout = options.timeout.min(std::time::Duration::from_millis(ms as u64));
        }
    }
    Ok(options)
}

/// The `limit` parameter: most series in the answer (0 or absent: no limit).
fn limit_param(params: &Params) -> Result<usize> {
    parse_limit(params.get("limit").map(String::as_str))
}

/// A `limit` parameter's value as Prometheus reads it: a non-negative integer, 0 if absent.
pub(super) fn parse_limit(value: Option<&str>) -> Result<usize> {
    match value {
        None | Some("") => Ok(0),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(n as usize),
            Ok(_) => Err(Error::BadData("invalid parameter \"limit\": limit must be non-negative".into())),
            Err(_) => Err(Error::BadData(format!("invalid parameter \"limit\": cannot parse {v:?} as an integer"))),
        },
    }
}

/// Cuts a vector or matrix answer to `limit` series (in the answer's order), with Prometheus'
/// warning when that left some out.
fn truncated(mut r: promql::QueryResult, limit: usize) -> promql::QueryResult {
    let cut = match &mut r.value {
        promql::Value::Vector(v) if limit > 0 && v.len() > limit => {
            v.truncate(limit);
            true
        }
        promql::Value::Matrix(m) if limit > 0 && m.len() > limit => {
            m.truncate(limit);
            true
        }
        promql::Value::Native { series, .. } if limit > 0 && series.len() > limit => {
            series.truncate(limit);
            true
        }
        _ => false,
    };
    if cut {
        r.annotations.warnings.push(super::series_meta::TRUNCATED.to_string());
    }
    r
}

async fn instant(state: AppState, params: Params, with_stats: bool) -> Result<Vec<u8>> {
    let query = required(&params, "query")?.to_string();
    let time_ms = time_param_ms(&params, "time", now_ms())?;
    let options = query_options(&params)?;
    let limit = limit_param(&params)?;
    run_blocking(move || {
        let result = promql::instant_query_with_options(state.metrics.as_ref(), &query, time_ms, options)?;
        answer(&truncated(result, limit), with_stats)
    })
    .await
}

async fn range(state: AppState, params: Params, with_stats: bool) -> Result<Vec<u8>> {
    let query = required(&params, "query")?.to_string();
    let start_ms = super::params::parse_time_ms("start", required(&params, "start")?)?;
    let end_ms = super::params::parse_time_ms("end", required(&params, "end")?)?;
    let step_ms = parse_duration_ms("step", required(&params, "step")?)?;
    let options = query_options(&params)?;
    let limit = limit_param(&params)?;
    run_blocking(move || {
        let result = promql::range_query_with_options(state.metrics.as_ref(), &query, start_ms, end_ms, step_ms, options)?;
        answer(&truncated(result, limit), with_stats)
    })
    .await
}

/// Runs query evaluation off the async workers.
pub async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("query evaluation task failed: {e}")))?
}
