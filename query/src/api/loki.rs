//! The Loki HTTP API for reading: `/loki/api/v1/query_range`, `/loki/api/v1/query` (log and
//! metric queries), `/loki/api/v1/labels`, `/loki/api/v1/label/{name}/values` and
//! `/loki/api/v1/series`. Pushing (`/loki/api/v1/push`) is the collector's.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use pharos_model::{Direction, LogSearch, Labels, LogRecord};
use serde_json::{Value as Json_, json};

use super::AppState;
use super::params::{Params, parse_duration_ms};
use super::prometheus::run_blocking;
use crate::error::{Error, Result};
use crate::logql::{self, LogQuery};
use crate::promql::{format_float, labels_json, timestamp_json};

const HOUR_NS: i64 = 3_600_000_000_000;
const DEFAULT_LIMIT: usize = 100;

/// `GET /loki/api/v1/query_range`: entries in `[start, end)` (default the last hour), or a
/// metric query evaluated every `step` from `start` to `end` (a matrix).
pub async fn query_range(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    let window = || -> Result<(i64, i64)> {
        let end = time_param_ns(&params, "end", now_ns())?;
        let start = match (params.get("start"), params.get("since")) {
            (Some(s), _) if !s.is_empty() => parse_time_ns("start", s)?,
            (_, Some(since)) if !since.is_empty() => {
                end.saturating_sub(parse_duration_ms("since", since)?.saturating_mul(1_000_000))
            }
            _ => end.saturating_sub(HOUR_NS),
        };
        if end < start {
            return Err(Error::BadData(
                "invalid parameters: end timestamp must not be before start time".into(),
            ));
        }
        Ok((start, end))
    };
    let (start, end) = match window() {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    match parse_query_param(&params) {
        Ok(logql::Query::Log(q)) => {
            respond(run(state, q, &params, start, end.saturating_sub(1)).await)
        }
        Ok(logql::Query::Metric(m)) => {
            let steps = match step_ns(&params, start, end) {
                Ok(step) => {
                    let n = ((end - start) / step) as usize + 1;
                    if n > 11_000 {
                        return Error::BadData(
                            "exceeded maximum resolution of 11,000 points per timeseries. Try                              decreasing the query resolution (?step=XX)"
                                .into(),
                        )
                        .into_response();
                    }
                    (0..n as i64).map(|i| start + i * step).collect()
                }
                Err(e) => return e.into_response(),
            };
            respond(run_metric(state, m, steps, false).await)
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /loki/api/v1/query`: entries in the hour ending at `time` (default now), inclusive; or a
/// metric query evaluated at `time` (a vector).
pub async fn query(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    let time = match time_param_ns(&params, "time", now_ns()) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    match parse_query_param(&params) {
        Ok(logql::Query::Log(q)) => {
            respond(run(state, q, &params, time.saturating_sub(HOUR_NS), time).await)
        }
        Ok(logql::Query::Metric(m)) => respond(run_metric(state, m, vec![time], true).await),
        Err(e) => e.into_response(),
    }
}

fn parse_query_param(params: &Params) -> Result<logql::Query> {
    let text = params
        .get("query")
        .filter(|q| !q.is_empty())
        .ok_or_else(|| Error::BadData("invalid parameter \"query\": missing".into()))?;
    logql::parse_query(text)
}

/// `step` in nanoseconds: float seconds or a duration; by default Loki's
/// `max(1s, (end - start) / 250)` rounded down to whole seconds.
fn step_ns(params: &Params, start: i64, end: i64) -> Result<i64> {
    let step = match params.get("step").filter(|s| !s.is_empty()) {
        Some(s) => parse_duration_ms("step", s)?.saturating_mul(1_000_000),
        None => ((end - start) / 250 / 1_000_000_000).max(1) * 1_000_000_000,
    };
    if step <= 0 {
        return Err(Error::BadData(
            "invalid parameter \"step\": zero or negative query resolution step widths are not \
             accepted. Try a positive integer"
                .into(),
        ));
    }
    Ok(step)
}

async fn run_metric(
    state: AppState,
    expr: logql::metric::MetricExpr,
    steps: Vec<i64>,
    instant: bool,
) -> Result<Json_> {
    let started = Instant::now();
    run_blocking(move || {
        let series = expr.evaluate(state.logs.as_ref(), &steps)?;
        let ts = |ns: i64| timestamp_json(ns.div_euclid(1_000_000));
        let result: Vec<Json_> = series
            .into_iter()
            .map(|(labels, points)| {
                if instant {
                    let (t, v) = points[0];
                    json!({"metric": labels_json(&labels), "value": [ts(t), format_float(v)]})
                } else {
                    let values: Vec<Json_> = points
                        .into_iter()
                        .map(|(t, v)| json!([ts(t), format_float(v)]))
                        .collect();
                    json!({"metric": labels_json(&labels), "values": values})
                }
            })
            .collect();
        Ok(json!({
            "resultType": if instant { "vector" } else { "matrix" },
            "result": result,
            "stats": {"summary": {"execTime": started.elapsed().as_secs_f64(), "queueTime": 0}},
        }))
    })
    .await
}

/// The `start`/`end` of the metadata endpoints: default the last 6 hours, as in Loki.
fn meta_window(params: &Params) -> Result<(i64, i64)> {
    let end = time_param_ns(params, "end", now_ns())?;
    let start = match (params.get("start"), params.get("since")) {
        (Some(s), _) if !s.is_empty() => parse_time_ns("start", s)?,
        (_, Some(since)) if !since.is_empty() => {
            end.saturating_sub(parse_duration_ms("since", since)?.saturating_mul(1_000_000))
        }
        _ => end.saturating_sub(6 * HOUR_NS),
    };
    Ok((start, end))
}

/// The optional `query` selector of the labels endpoints.
fn meta_matchers(params: &Params) -> Result<Vec<pharos_model::LabelMatcher>> {
    match params.get("query").filter(|q| !q.trim().is_empty()) {
        Some(q) => logql::parse_selector(q),
        None => Ok(Vec::new()),
    }
}

/// `GET /loki/api/v1/labels`: label names of the streams in `[start, end]`.
pub async fn labels(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    let go = || -> Result<_> { Ok((meta_window(&params)?, meta_matchers(&params)?)) };
    let ((start, end), matchers) = match go() {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    respond(
        run_blocking(move || {
            let names = state
                .logs
                .log_label_names(&matchers, start, end)
                .map_err(|e| Error::Internal(format!("reading logs: {e}")))?;
            Ok(json!(names))
        })
        .await,
    )
}

/// `GET /loki/api/v1/label/{name}/values`: values of one label in `[start, end]`.
pub async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    let go = || -> Result<_> { Ok((meta_window(&params)?, meta_matchers(&params)?)) };
    let ((start, end), matchers) = match go() {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    respond(
        run_blocking(move || {
            let values = state
                .logs
                .log_label_values(&name, &matchers, start, end)
                .map_err(|e| Error::Internal(format!("reading logs: {e}")))?;
            Ok(json!(values))
        })
        .await,
    )
}

/// `GET /loki/api/v1/index/stats?query={…}`: streams, entries and bytes the selector covers in
/// `[start, end]` (Grafana shows them as the query's size). `chunks` counts streams: Pharos
/// has no chunks.
pub async fn index_stats(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    let go = || -> Result<_> {
        let text = params
            .get("query")
            .filter(|q| !q.is_empty())
            .ok_or_else(|| Error::BadData("invalid parameter \"query\": missing".into()))?;
        let matchers = match logql::parse_query(text)? {
            logql::Query::Log(q) => q.matchers,
            logql::Query::Metric(_) => {
                return Err(Error::BadData("index/stats takes a stream selector".into()));
            }
        };
        Ok((meta_window(&params)?, matchers))
    };
    let ((start, end), matchers) = match go() {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let result = run_blocking(move || {
        let records = state
            .logs
            .select_logs(&matchers, &[], start, end)
            .map_err(|e| Error::Internal(format!("reading logs: {e}")))?;
        let mut streams: Vec<&Labels> = records.iter().map(|r| &r.labels).collect();
        streams.sort();
        streams.dedup();
        let bytes: usize = records.iter().map(|r| r.body.len()).sum();
        Ok(json!({"streams": streams.len(), "chunks": streams.len(), "entries": records.len(), "bytes": bytes}))
    })
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET`/`POST /loki/api/v1/series?match[]=…`: the stream label sets matching any selector.
pub async fn series(
    State(state): State<AppState>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    body: axum::body::Bytes,
) -> Response {
    let mut pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    if let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
        pairs.extend(form);
    }
    let params: Params = pairs.iter().cloned().collect();
    let go = || -> Result<_> {
        let selectors = pairs
            .iter()
            .filter(|(k, _)| k == "match[]" || k == "match")
            .map(|(_, v)| logql::parse_selector(v))
            .collect::<Result<Vec<_>>>()?;
        Ok((meta_window(&params)?, selectors))
    };
    let ((start, end), selectors) = match go() {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    respond(
        run_blocking(move || {
            let mut all = Vec::new();
            let selectors = if selectors.is_empty() {
                vec![Vec::new()]
            } else {
                selectors
            };
            for m in selectors {
                all.extend(
                    state
                        .logs
                        .log_streams(&m, start, end)
                        .map_err(|e| Error::Internal(format!("reading logs: {e}")))?,
                );
            }
            all.sort();
            all.dedup();
            Ok(Json_::Array(all.iter().map(labels_json).collect()))
        })
        .await,
    )
}

fn respond(result: Result<Json_>) -> Response {
    match result {
        Ok(data) => Json(json!({"status": "success", "data": data})).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Loki's timestamp forms: float seconds (with a dot), integer seconds (≤ 10 digits) or
/// nanoseconds, or RFC3339.
pub fn parse_time_ns(name: &str, s: &str) -> Result<i64> {
    let err = || {
        Error::BadData(format!(
            "invalid parameter {name:?}: cannot parse {s:?} to a valid timestamp"
        ))
    };
    if s.contains('.')
        && let Ok(secs) = s.parse::<f64>()
    {
        if !secs.is_finite() || secs.abs() > 9.2e9 {
            return Err(err());
        }
        let whole = secs.trunc();
        let ms = ((secs - whole) * 1000.0).round() as i64;
        return Ok(whole as i64 * 1_000_000_000 + ms * 1_000_000);
    }
    if let Ok(n) = s.parse::<i64>() {
        let digits = s.trim_start_matches('-').len();
        return if digits <= 10 {
            n.checked_mul(1_000_000_000).ok_or_else(err)
        } else {
            Ok(n)
        };
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(err)
}

fn time_param_ns(params: &Params, name: &str, default: i64) -> Result<i64> {
    match params.get(name) {
        Some(s) if !s.is_empty() => parse_time_ns(name, s),
        _ => Ok(default),
    }
}

async fn run(
    state: AppState,
    query: LogQuery,
    params: &Params,
    start_ns: i64,
    end_ns: i64,
) -> Result<Json_> {
    let limit = match params.get("limit") {
        Some(l) => l.parse::<usize>().ok().filter(|l| *l > 0).ok_or_else(|| {
            Error::BadData(format!(
                "invalid parameter \"limit\": {l:?} must be a positive integer"
            ))
        })?,
        None => DEFAULT_LIMIT,
    };
    let backward = match params.get("direction").map(|d| d.to_ascii_lowercase()) {
        None => true,
        Some(d) if d == "backward" => true,
        Some(d) if d == "forward" => false,
        Some(d) => {
            return Err(Error::BadData(format!(
                "invalid parameter \"direction\": {d:?} (expected forward or backward)"
            )));
        }
    };
    let started = Instant::now();
    run_blocking(move || {
        // The store applies the whole pipeline as `keep`, so the limit counts lines that survive
        // it and only about `limit` records are read; the answer is then sorted and cut below.
        let keep = |r: &LogRecord| query.process_line(&r.labels, &r.body).is_some();
        let search = LogSearch {
            matchers: &query.matchers,
            contains_any: query.index_filters(),
            start_ns,
            end_ns,
            limit: Some((limit, if backward { Direction::Backward } else { Direction::Forward })),
            keep: Some(&keep),
        };
        let records = state
            .logs
            .search_logs(&search)
            .map_err(|e| Error::Internal(format!("reading logs: {e}")))?;
        let scanned = records.len();
        let scanned_bytes: usize = records.iter().map(|r| r.body.len()).sum();
        let mut kept: Vec<LogRecord> = records
            .into_iter()
            .filter(|r| r.timestamp_ns >= start_ns && r.timestamp_ns <= end_ns)
            .filter_map(|r| {
                let (labels, body) = query.process(&r)?;
                Some(LogRecord { labels, body, ..r })
            })
            .collect();
        kept.sort_by(|a, b| {
            (a.timestamp_ns, &a.labels, &a.body).cmp(&(b.timestamp_ns, &b.labels, &b.body))
        });
        if backward {
            kept.reverse();
        }
        kept.truncate(limit);
        let returned = kept.len();
        let mut streams: BTreeMap<Labels, Vec<Json_>> = BTreeMap::new();
        for r in kept {
            streams
                .entry(r.labels)
                .or_default()
                .push(json!([r.timestamp_ns.to_string(), r.body]));
        }
        let result: Vec<Json_> = streams
            .into_iter()
            .map(|(labels, values)| json!({"stream": labels_json(&labels), "values": values}))
            .collect();
        let secs = started.elapsed().as_secs_f64();
        let per_sec = |n: usize| {
            if secs > 0.0 {
                (n as f64 / secs) as u64
            } else {
                0
            }
        };
        Ok(json!({
            "resultType": "streams",
            "result": result,
            "stats": {"summary": {
                "bytesProcessedPerSecond": per_sec(scanned_bytes),
                "linesProcessedPerSecond": per_sec(scanned),
                "totalBytesProcessed": scanned_bytes,
                "totalLinesProcessed": scanned,
                "totalEntriesReturned": returned,
                "execTime": secs,
                "queueTime": 0,
                "subqueries": 0,
            }},
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loki_timestamps() {
        assert_eq!(
            parse_time_ns("start", "1700000000").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_time_ns("start", "1700000000123456789").unwrap(),
            1_700_000_000_123_456_789
        );
        assert_eq!(
            parse_time_ns("start", "1700000000.5").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            parse_time_ns("start", "1970-01-01T00:00:01.000000002Z").unwrap(),
            1_000_000_002
        );
        assert!(parse_time_ns("start", "soon").is_err());
    }
}
