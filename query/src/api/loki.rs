//! The Loki-shaped log query API: `/loki/api/v1/query_range` and `/loki/api/v1/query`.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use pharos_model::{Labels, LogRecord};
use serde_json::{Value as Json_, json};

use super::AppState;
use super::params::{Params, parse_duration_ms};
use super::prometheus::run_blocking;
use crate::error::{Error, Result};
use crate::logql;
use crate::promql::labels_json;

const HOUR_NS: i64 = 3_600_000_000_000;
const DEFAULT_LIMIT: usize = 100;

/// `GET /loki/api/v1/query_range`: entries in `[start, end)`, default the last hour.
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
        Ok((start, end.saturating_sub(1)))
    };
    match window() {
        Ok((start, end)) => respond(run(state, &params, start, end).await),
        Err(e) => e.into_response(),
    }
}

/// `GET /loki/api/v1/query`: entries in the hour ending at `time` (default now), inclusive.
pub async fn query(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    match time_param_ns(&params, "time", now_ns()) {
        Ok(time) => respond(run(state, &params, time.saturating_sub(HOUR_NS), time).await),
        Err(e) => e.into_response(),
    }
}

fn respond(result: Result<Json_>) -> Response {
    match result {
        Ok(data) => Json(json!({"status": "success", "data": data})).into_response(),
        Err(e) => e.into_response(),
    }
}

fn now_ns() -> i64 {
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

async fn run(state: AppState, params: &Params, start_ns: i64, end_ns: i64) -> Result<Json_> {
    let query_text = params
        .get("query")
        .filter(|q| !q.is_empty())
        .ok_or_else(|| Error::BadData("invalid parameter \"query\": missing".into()))?;
    let query = logql::parse(query_text)?;
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
        let records = state
            .logs
            .select_logs(
                &query.matchers,
                &query.required_substrings(),
                start_ns,
                end_ns,
            )
            .map_err(|e| Error::Internal(format!("reading logs: {e}")))?;
        let scanned = records.len();
        let scanned_bytes: usize = records.iter().map(|r| r.body.len()).sum();
        let mut kept: Vec<LogRecord> = records
            .into_iter()
            .filter(|r| r.timestamp_ns >= start_ns && r.timestamp_ns <= end_ns)
            .filter(|r| query.accepts(&r.body))
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
