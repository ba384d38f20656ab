//! `/api/v1/query_exemplars`, `/api/v1/format_query` and `/api/v1/status/tsdb` of the
//! Prometheus HTTP API.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use pharos_model::{LabelMatcher, Labels};
use serde_json::json;

use super::AppState;
use super::params::{Params, now_ms, time_param_ms};
use super::prometheus::run_blocking;
use crate::error::{Error, Result};
use crate::promql;

fn success(data: serde_json::Value) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

/// `GET /api/v1/query_exemplars`: the exemplars of the series every selector of `query` matches,
/// with timestamps in `start`..`end` (default: all), in Prometheus' shape
/// `[{"seriesLabels":{…},"exemplars":[{"labels":{…},"value":"…","timestamp":…}]}]` (Grafana asks
/// beside its queries and draws them on the graph). The query and the times are checked as
/// Prometheus checks them.
pub async fn query_exemplars_get(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    query_exemplars(&state, params)
}

/// `POST /api/v1/query_exemplars` (form body; query-string parameters also read).
pub async fn query_exemplars_post(
    State(state): State<AppState>,
    Query(mut params): Query<Params>,
    Form(form): Form<Params>,
) -> Response {
    params.extend(form);
    query_exemplars(&state, params)
}

fn query_exemplars(state: &AppState, params: Params) -> Response {
    let go = || -> Result<serde_json::Value> {
        let q = params.get("query").filter(|q| !q.is_empty()).ok_or_else(|| Error::BadData("invalid parameter \"query\": missing".into()))?;
        let expr = promql::parse(q)?;
        let start = time_param_ms(&params, "start", i64::MIN / 2)?;
        let end = time_param_ms(&params, "end", i64::MAX / 2)?;
        if end < start {
            return Err(Error::BadData("end timestamp must not be before start time".into()));
        }
        // As Prometheus' `ExtractSelectors`: every vector selector, also inside range
        // selectors, subqueries and function arguments; a series matching any of them counts.
        let mut selectors = Vec::new();
        vector_selectors(&expr, &mut selectors);
        let groups: Vec<Vec<LabelMatcher>> = selectors.into_iter().flat_map(promql::matcher_groups).collect();
        let found = state.metrics.exemplars(&groups, start, end).map_err(Error::Internal)?;
        Ok(found
            .into_iter()
            .map(|s| {
                let exemplars: Vec<serde_json::Value> = s
                    .exemplars
                    .iter()
                    .map(|e| {
                        json!({
                            "labels": promql::labels_json(&e.labels),
                            "value": promql::format_float(e.value),
                            "timestamp": promql::timestamp_json(e.timestamp_ms),
                        })
                    })
                    .collect();
                json!({"seriesLabels": promql::labels_json(&s.series), "exemplars": exemplars})
            })
            .collect())
    };
    match go() {
        Ok(data) => success(data),
        Err(e) => e.into_response(),
    }
}

/// Every vector selector of `expr`. Not promql-parser's `walk_expr`: it skips an aggregation's
/// parameter (`topk(scalar(x), y)`), whose selectors Prometheus' `ExtractSelectors` includes.
fn vector_selectors<'e>(expr: &'e promql_parser::parser::Expr, out: &mut Vec<&'e promql_parser::parser::VectorSelector>) {
    use promql_parser::parser::Expr;
    match expr {
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Paren(p) => vector_selectors(&p.expr, out),
        Expr::Unary(u) => vector_selectors(&u.expr, out),
        Expr::Subquery(sq) => vector_selectors(&sq.expr, out),
        Expr::Binary(b) => {
            vector_selectors(&b.lhs, out);
            vector_selectors(&b.rhs, out);
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                vector_selectors(p, out);
            }
            vector_selectors(&a.expr, out);
        }
        Expr::Call(c) => c.args.args.iter().for_each(|a| vector_selectors(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// `GET/POST /api/v1/format_query`: the query as Prometheus' formatter prints it (the
/// `promql-parser` port of it): `sum(rate(x[5m])) by (job)` → `sum by (job) (rate(x[5m]))`,
/// long expressions over several indented lines.
pub async fn format_query_get(Query(params): Query<Params>) -> Response {
    format_query(params)
}

/// `POST /api/v1/format_query` (form body; query-string parameters also read).
pub async fn format_query_post(Query(mut params): Query<Params>, Form(form): Form<Params>) -> Response {
    params.extend(form);
    format_query(params)
}

fn format_query(params: Params) -> Response {
    let go = || -> Result<String> {
        let q = params.get("query").filter(|q| !q.is_empty()).ok_or_else(|| Error::BadData("invalid parameter \"query\": missing".into()))?;
        Ok(promql::parse(q)?.prettify())
    };
    match go() {
        Ok(text) => success(json!(text)),
        Err(e) => e.into_response(),
    }
}

/// Default window of `/api/v1/status/tsdb`: Prometheus reports its head, about the last 2 h.
const TSDB_STATUS_WINDOW_MS: i64 = 2 * 3_600_000;

/// `GET /api/v1/status/tsdb`: cardinality statistics in Prometheus' shape over the series
/// indexed in `start`..`end` (default the last 2 hours): `headStats` (`numSeries`,
/// `numLabelPairs`, and the window as `minTime`/`maxTime`), and the `limit` (default 10)
/// largest of series per metric name, values per label name, bytes of values per label name
/// and series per label pair.
pub async fn tsdb(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    let go = || -> Result<(usize, i64, i64)> {
        let limit = match params.get("limit").filter(|v| !v.is_empty()) {
            None => 10,
            Some(v) => v.parse::<usize>().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| {
                Error::BadData(format!("invalid parameter \"limit\": {v:?}: limit must be a number between 1 and 10000"))
            })?,
        };
        let end = time_param_ms(&params, "end", now_ms())?;
        let start = time_param_ms(&params, "start", end - TSDB_STATUS_WINDOW_MS)?;
        if end < start {
            return Err(Error::BadData("end timestamp must not be before start time".into()));
        }
        Ok((limit, start, end))
    };
    let (limit, start, end) = match go() {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let answer = run_blocking(move || {
        let all = [LabelMatcher::new("__name__", "=~", ".+").map_err(Error::Internal)?];
        let series = super::series_meta::series_label_sets(state.metrics.as_ref(), &all, start, end)?;
        Ok(tsdb_status(&series, limit, start, end))
    })
    .await;
    match answer {
        Ok(data) => success(data),
        Err(e) => e.into_response(),
    }
}

fn tsdb_status(series: &[Labels], limit: usize, start: i64, end: i64) -> serde_json::Value {
    let mut by_name: HashMap<&str, u64> = HashMap::new();
    let mut by_pair: HashMap<(&str, &str), u64> = HashMap::new();
    let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for l in series {
        if let Some(n) = l.metric_name() {
            *by_name.entry(n).or_default() += 1;
        }
        for (k, v) in l.iter() {
            *by_pair.entry((k, v)).or_default() += 1;
            values.entry(k).or_default().insert(v);
        }
    }
    // The `limit` largest, ties by name.
    fn top(mut items: Vec<(String, u64)>, limit: usize) -> serde_json::Value {
        items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        items.truncate(limit);
        json!(items.into_iter().map(|(name, value)| json!({"name": name, "value": value})).collect::<Vec<_>>())
    }
    json!({
        "headStats": {
            "numSeries": series.len(),
            "numLabelPairs": by_pair.len(),
            "minTime": start,
            "maxTime": end,
        },
        "seriesCountByMetricName": top(by_name.iter().map(|(k, v)| (k.to_string(), *v)).collect(), limit),
        "labelValueCountByLabelName": top(values.iter().map(|(k, v)| (k.to_string(), v.len() as u64)).collect(), limit),
        "memoryInBytesByLabelName": top(
            values.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.len() as u64).sum())).collect(),
            limit
        ),
        "seriesCountByLabelValuePair": top(by_pair.iter().map(|((k, v), n)| (format!("{k}={v}"), *n)).collect(), limit),
    })
}
