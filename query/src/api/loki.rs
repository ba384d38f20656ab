//! The Loki HTTP API for reading: `/loki/api/v1/query_range`, `/loki/api/v1/query` (log and
//! metric queries), `/loki/api/v1/labels`, `/loki/api/v1/label/{name}/values` and
//! `/loki/api/v1/series`. Pushing (`/loki/api/v1/push`) is the collector's.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use pharos_model::{Direction, LogSearch, Labels, LogRecord};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Value as Json_, json};

use super::AppState;
use super::params::{Params, parse_duration_ms};
use super::prometheus::{respond as respond_bytes, run_blocking};
use crate::error::{Error, Result};
use crate::logql::{self, LogQuery};
use crate::promql::{LabelsJson, format_float, labels_json, timestamp_json};

const HOUR_NS: i64 = 3_600_000_000_000;
const DEFAULT_LIMIT: usize = 100;

/// `GET /loki/api/v1/query_range`: entries in `[start, end)` (default the last hour), or a
/// metric query evaluated every `step` from `start` to `end` (a matrix).
pub async fn query_range(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
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
            let categorize = categorize_labels(&headers);
            respond_bytes(run(state, q, &params, start, end.saturating_sub(1), categorize).await)
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
pub async fn query(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let time = match time_param_ns(&params, "time", now_ns()) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    match parse_query_param(&params) {
        Ok(logql::Query::Log(q)) => {
            let categorize = categorize_labels(&headers);
            respond_bytes(run(state, q, &params, time.saturating_sub(HOUR_NS), time, categorize).await)
        }
        Ok(logql::Query::Metric(m)) => respond(run_metric(state, m, vec![time], true).await),
        Err(e) => e.into_response(),
    }
}

/// The request header through which Loki clients (Grafana) ask for categorized labels.
pub const ENCODING_FLAGS_HEADER: &str = "x-loki-response-encoding-flags";
/// The encoding flag that puts structured metadata and parsed labels beside each entry.
pub const CATEGORIZE_LABELS: &str = "categorize-labels";

/// True when the request sets the `categorize-labels` encoding flag.
fn categorize_labels(headers: &HeaderMap) -> bool {
    headers
        .get_all(ENCODING_FLAGS_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim().eq_ignore_ascii_case(CATEGORIZE_LABELS))
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
pub(super) fn step_ns(params: &Params, start: i64, end: i64) -> Result<i64> {
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
pub(super) fn meta_window(params: &Params) -> Result<(i64, i64)> {
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
pub(super) fn meta_matchers(params: &Params) -> Result<Vec<pharos_model::LabelMatcher>> {
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
        let stats = state
            .logs
            .log_stream_stats(&matchers, start, end)
            .map_err(|e| Error::Internal(format!("reading logs: {e}")))?;
        let entries: u64 = stats.iter().map(|(_, s)| s.entries).sum();
        let bytes: u64 = stats.iter().map(|(_, s)| s.bytes).sum();
        Ok(json!({"streams": stats.len(), "chunks": stats.len(), "entries": entries, "bytes": bytes}))
    })
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The labels of an `index/volume` series (`{name=""}` in `aggregateBy=labels`, which
/// [`Labels`] cannot hold).
type VolumeName = Vec<(String, String)>;

/// How `index/volume` names its series.
#[derive(Clone, Copy, PartialEq)]
enum VolumeBy {
    /// By the values of the target labels (the selector's label names by default).
    Series,
    /// One series per label name, `{name=""}`, with the volume of the streams that have it.
    Labels,
}

/// `GET /loki/api/v1/index/volume`: bytes of log lines per group of streams in
/// `[start, end]`, a vector stamped at `end`, largest first.
pub async fn volume(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    respond(volume_of(state, params, false).await)
}

/// `GET /loki/api/v1/index/volume_range`: the same per `step` (a matrix; the point at `t`
/// holds the bytes in `(t - step, t]`, as `bytes_over_time(…[step])`).
pub async fn volume_range(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    respond(volume_of(state, params, true).await)
}

/// Loki's volume endpoints, answered from the streams' totals like `index/stats`, all buckets
/// in one pass (a split that a bucket cuts counts its entries exactly and its bytes in
/// proportion).
async fn volume_of(state: AppState, params: Params, range: bool) -> Result<Json_> {
    let text = params
        .get("query")
        .filter(|q| !q.is_empty())
        .ok_or_else(|| Error::BadData("invalid parameter \"query\": missing".into()))?;
    let matchers = match logql::parse_query(text)? {
        logql::Query::Log(q) if q.stages.is_empty() => q.matchers,
        _ => return Err(Error::BadData("volume queries take a stream selector only (no pipeline, no metric query)".into())),
    };
    let (start, end) = meta_window(&params)?;
    if end < start {
        return Err(Error::BadData("invalid parameters: end timestamp must not be before start time".into()));
    }
    let limit = match params.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => l.parse::<usize>().ok().filter(|l| *l > 0).ok_or_else(|| {
            Error::BadData(format!("invalid parameter \"limit\": {l:?}: limit must be a positive value"))
        })?,
        None => DEFAULT_LIMIT,
    };
    let by = match params.get("aggregateBy").map(String::as_str) {
        None | Some("" | "series") => VolumeBy::Series,
        Some("labels") => VolumeBy::Labels,
        Some(other) => {
            return Err(Error::BadData(format!("invalid parameter \"aggregateBy\": {other:?}: invalid aggregation option (series or labels)")));
        }
    };
    let mut targets: Vec<String> = params
        .get("targetLabels")
        .map(|t| t.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    if targets.is_empty() && by == VolumeBy::Series {
        targets = matchers.iter().map(|m| m.name.clone()).collect();
    }
    targets.sort();
    targets.dedup();
    // Buckets (lo, hi], stamped at hi.
    let buckets: Vec<(i64, i64)> = if range {
        let step = step_ns(&params, start, end)?;
        let n = ((end - start) / step) as usize + 1;
        if n > 11_000 {
            return Err(Error::BadData("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into()));
        }
        (0..n as i64).map(|i| start + i * step).map(|t| (t - step, t)).collect()
    } else {
        vec![(start.saturating_sub(1), end)]
    };
    run_blocking(move || {
        // Series name (label pairs; `{name=""}` in `labels` mode) → volume per bucket.
        let mut volumes: BTreeMap<VolumeName, Vec<(i64, u64)>> = BTreeMap::new();
        let inclusive: Vec<(i64, i64)> = buckets.iter().map(|&(lo, hi)| (lo.saturating_add(1), hi)).collect();
        let stats = state
            .logs
            .log_stream_stats_per_bucket(&matchers, &inclusive)
            .map_err(|e| Error::Internal(format!("reading logs: {e}")))?;
        let mut add = |name: VolumeName, hi: i64, bytes: u64| {
            let points = volumes.entry(name).or_default();
            match points.last_mut() {
                Some((t, v)) if *t == hi => *v += bytes,
                _ => points.push((hi, bytes)),
            }
        };
        // Bucket by bucket, so each series' points stay in time order.
        for (b, &(_, hi)) in buckets.iter().enumerate() {
            for (labels, per_bucket) in &stats {
                let s = per_bucket[b];
                if s.bytes == 0 && s.entries == 0 {
                    continue;
                }
                match by {
                    VolumeBy::Series => {
                        let kept: Vec<(String, String)> =
                            targets.iter().filter_map(|t| labels.get(t).map(|v| (t.clone(), v.to_string()))).collect();
                        // A stream without one of the labels is not counted, as in Loki.
                        if kept.len() == targets.len() {
                            add(kept, hi, s.bytes);
                        }
                    }
                    VolumeBy::Labels => {
                        for (name, _) in labels.iter() {
                            if targets.is_empty() || targets.iter().any(|t| t == name) {
                                add(vec![(name.to_string(), String::new())], hi, s.bytes);
                            }
                        }
                    }
                }
            }
        }
        // The `limit` largest in all, then largest first value first (names break ties).
        let mut series: Vec<(VolumeName, Vec<(i64, u64)>)> = volumes.into_iter().collect();
        let total = |points: &[(i64, u64)]| points.iter().map(|p| p.1).sum::<u64>();
        series.sort_by(|a, b| total(&b.1).cmp(&total(&a.1)).then_with(|| a.0.cmp(&b.0)));
        series.truncate(limit);
        series.sort_by(|a, b| b.1[0].1.cmp(&a.1[0].1).then_with(|| a.0.cmp(&b.0)));
        let ts = |ns: i64| timestamp_json(ns.div_euclid(1_000_000));
        let result: Vec<Json_> = series
            .into_iter()
            .map(|(name, points)| {
                let metric: serde_json::Map<String, Json_> = name.into_iter().map(|(k, v)| (k, Json_::String(v))).collect();
                if range {
                    let values: Vec<Json_> = points.iter().map(|&(t, v)| json!([ts(t), v.to_string()])).collect();
                    json!({"metric": metric, "values": values})
                } else {
                    json!({"metric": metric, "value": [ts(points[0].0), points[0].1.to_string()]})
                }
            })
            .collect();
        Ok(json!({"resultType": if range { "matrix" } else { "vector" }, "result": result}))
    })
    .await
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

pub(super) fn respond(result: Result<Json_>) -> Response {
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
    categorize: bool,
) -> Result<Vec<u8>> {
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
        // The store checks the `|=` filters itself (exactly), so the pipeline runs without them
        // when nothing else reads the line; with no stage left there is nothing to keep out.
        let pipeline = query.without_body_filters().unwrap_or_else(|| query.clone());
        // With `distinct`, the store checks only the stages before it (see below).
        let before_distinct;
        let prefilter = if pipeline.has_distinct() {
            before_distinct = pipeline.before_distinct();
            &before_distinct
        } else {
            &pipeline
        };
        let keep = |r: &LogRecord| prefilter.process_record(r).is_some();
        let (contains_any, label_equals) = (query.index_filters(), query.label_equalities());
        let search = |fetch: usize| {
            let search = LogSearch {
                matchers: &query.matchers,
                contains_any: contains_any.clone(),
                label_equals: label_equals.clone(),
                start_ns,
                end_ns,
                limit: Some((fetch, if backward { Direction::Backward } else { Direction::Forward })),
                keep: (!prefilter.stages.is_empty()).then_some(&keep),
                body_unused: false,
                // A record's severity is its `detected_level` label.
                severity_unused: false,
            };
            state.logs.search_logs(&search).map_err(|e| Error::Internal(format!("reading logs: {e}")))
        };
        let mut scanned = 0;
        let mut scanned_bytes = 0;
        let mut fetch = limit;
        // (timestamp, the labels the entry is grouped by, line, categorized labels).
        let mut kept: Vec<(i64, Labels, String, Option<Json_>)> = loop {
            let mut records = search(fetch)?;
            scanned += records.len();
            scanned_bytes += records.iter().map(|r| r.body.len()).sum::<usize>();
            let exhausted = records.len() < fetch;
            records.retain(|r| r.timestamp_ns >= start_ns && r.timestamp_ns <= end_ns);
            let entry = |r: LogRecord, processed: Option<(logql::pipeline::LabelMap, String)>| {
                let (labels, body) = processed?;
                Some(if categorize {
                    let (stream, extra) = categorized(&r, labels);
                    (r.timestamp_ns, stream, body, extra)
                } else {
                    (r.timestamp_ns, Labels::from_pairs(labels), body, None)
                })
            };
            if !pipeline.has_distinct() {
                // Stream labels plus `detected_level`, built once per stream and level.
                let mut leveled: std::collections::HashMap<(usize, &'static str), Labels, ahash::RandomState> = Default::default();
                break records
                    .into_iter()
                    .filter_map(|r| {
                        if pipeline.stages.is_empty() && r.attributes.is_empty() && !categorize {
                            // The entry's labels are its stream's (and its level), its line the
                            // record's.
                            let Some(level) = logql::pipeline::added_level(&r.labels, &r.severity) else {
                                return Some((r.timestamp_ns, r.labels, r.body, None));
                            };
                            let labels = leveled
                                .entry((r.labels.ptr_id(), level))
                                .or_insert_with(|| r.labels.with(logql::pipeline::DETECTED_LEVEL_LABEL, level))
                                .clone();
                            return Some((r.timestamp_ns, labels, r.body, None));
                        }
                        let processed = pipeline.process_record(&r);
                        entry(r, processed)
                    })
                    .collect();
            }
            // `distinct` lets through the first entry with each value in the query's
            // direction, so the records go through it in that order; when fewer than `limit`
            // survive it and there are more records, the search is repeated for four times as
            // many (the work stays within a constant factor of the last search's).
            records.sort_by(|a, b| (a.timestamp_ns, &a.labels, &a.body).cmp(&(b.timestamp_ns, &b.labels, &b.body)));
            if backward {
                records.reverse();
            }
            let mut seen = logql::pipeline::DistinctSeen::default();
            let mut out = Vec::new();
            for r in records {
                let processed = pipeline.process_record_distinct(&r, &mut seen);
                out.extend(entry(r, processed));
                if out.len() == limit {
                    break;
                }
            }
            if out.len() >= limit || exhausted {
                break out;
            }
            fetch = fetch.saturating_mul(4);
        };
        kept.sort_by(|a, b| (a.0, &a.1, &a.2).cmp(&(b.0, &b.1, &b.2)));
        if backward {
            kept.reverse();
        }
        kept.truncate(limit);
        let returned = kept.len();
        let mut streams: BTreeMap<Labels, Vec<Entry>> = BTreeMap::new();
        for (ts, labels, body, extra) in kept {
            streams.entry(labels).or_default().push((ts, body, extra));
        }
        let secs = started.elapsed().as_secs_f64();
        let per_sec = |n: usize| {
            if secs > 0.0 {
                (n as f64 / secs) as u64
            } else {
                0
            }
        };
        let stats = json!({"summary": {
            "bytesProcessedPerSecond": per_sec(scanned_bytes),
            "linesProcessedPerSecond": per_sec(scanned),
            "totalBytesProcessed": scanned_bytes,
            "totalLinesProcessed": scanned,
            "totalEntriesReturned": returned,
            "execTime": secs,
            "queueTime": 0,
            "subqueries": 0,
        }});
        #[derive(serde::Serialize)]
        struct Success<'a> {
            status: &'static str,
            data: StreamsJson<'a>,
        }
        // Sized for the lines and ~48 bytes of timestamp and punctuation each, so that the
        // answer (366 KB for the logs benchmark's phrase) is not copied as it grows.
        let size = 4096 + streams.values().flatten().map(|(_, line, _)| line.len() + 48).sum::<usize>();
        let mut body = Vec::with_capacity(size);
        let data = StreamsJson { streams: &streams, stats, categorize };
        serde_json::to_writer(&mut body, &Success { status: "success", data })
            .map_err(|e| Error::Internal(format!("writing the answer: {e}")))?;
        Ok(body)
    })
    .await
}

/// One entry of a log query's answer: timestamp, line, categorized labels.
type Entry = (i64, String, Option<Json_>);

/// The `data` of a log query's answer for serde, written straight to the output (as a
/// `serde_json::Value` tree it was an eighth of a 1,329-line query's CPU).
struct StreamsJson<'a> {
    streams: &'a BTreeMap<Labels, Vec<Entry>>,
    stats: Json_,
    categorize: bool,
}

impl Serialize for StreamsJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("resultType", "streams")?;
        m.serialize_entry("result", &StreamsList(self.streams))?;
        m.serialize_entry("stats", &self.stats)?;
        if self.categorize {
            m.serialize_entry("encodingFlags", &[CATEGORIZE_LABELS])?;
        }
        m.end()
    }
}

struct StreamsList<'a>(&'a BTreeMap<Labels, Vec<Entry>>);

impl Serialize for StreamsList<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        ser.collect_seq(self.0.iter().map(|(labels, entries)| StreamJson { labels, entries }))
    }
}

/// `{"stream": {labels}, "values": [[ts, line(, extra)], …]}`.
struct StreamJson<'a> {
    labels: &'a Labels,
    entries: &'a [Entry],
}

impl Serialize for StreamJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = ser.serialize_map(Some(2))?;
        m.serialize_entry("stream", &LabelsJson(self.labels))?;
        m.serialize_entry("values", &EntriesJson(self.entries))?;
        m.end()
    }
}

struct EntriesJson<'a>(&'a [Entry]);

impl Serialize for EntriesJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        ser.collect_seq(self.0.iter().map(|(ts, line, extra)| EntryJson { ts: *ts, line, extra }))
    }
}

/// `[ts, line]`, or `[ts, line, extra]` with categorized labels; `ts` in nanoseconds as a
/// decimal string.
struct EntryJson<'a> {
    ts: i64,
    line: &'a str,
    extra: &'a Option<Json_>,
}

impl Serialize for EntryJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = ser.serialize_seq(Some(2 + usize::from(self.extra.is_some())))?;
        seq.serialize_element(&Decimal(self.ts))?;
        seq.serialize_element(self.line)?;
        if let Some(x) = self.extra {
            seq.serialize_element(x)?;
        }
        seq.end()
    }
}

/// An integer as a JSON string, without allocating it.
struct Decimal(i64);

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        ser.collect_str(&self.0)
    }
}

/// Splits an entry's labels after the pipeline the way Loki's `categorize-labels` answers
/// them: the stream labels it still has (what the entry is grouped by), and beside the entry
/// `{"structuredMetadata": {…}, "parsed": {…}}` (each only when not empty; `None` when both
/// are).
fn categorized(r: &LogRecord, mut labels: logql::pipeline::LabelMap) -> (Labels, Option<Json_>) {
    let mut stream = Vec::new();
    for (k, v) in r.labels.iter() {
        if labels.get(k).is_some_and(|now| now == v) {
            labels.remove(k);
            stream.push((k.to_string(), v.to_string()));
        }
    }
    let mut metadata = serde_json::Map::new();
    for (k, _) in &r.attributes {
        let name = if r.labels.get(k).is_some() { format!("{k}_extracted") } else { k.clone() };
        if let Some(v) = labels.remove(&name) {
            metadata.insert(name, Json_::String(v));
        }
    }
    // The level from the record's severity is structured metadata in Loki 3.
    if !r.severity.is_empty()
        && !metadata.contains_key(logql::pipeline::DETECTED_LEVEL_LABEL)
        && let Some(v) = labels.remove(logql::pipeline::DETECTED_LEVEL_LABEL)
    {
        metadata.insert(logql::pipeline::DETECTED_LEVEL_LABEL.to_string(), Json_::String(v));
    }
    let parsed: serde_json::Map<String, Json_> =
        labels.into_iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k, Json_::String(v))).collect();
    metadata.retain(|_, v| v.as_str().is_some_and(|s| !s.is_empty()));
    let mut extra = serde_json::Map::new();
    if !metadata.is_empty() {
        extra.insert("structuredMetadata".into(), Json_::Object(metadata));
    }
    if !parsed.is_empty() {
        extra.insert("parsed".into(), Json_::Object(parsed));
    }
    (Labels::from_pairs(stream), (!extra.is_empty()).then_some(Json_::Object(extra)))
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
