//! Series metadata routes of the Prometheus HTTP API: `/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/<name>/values`, `/api/v1/metadata` (what Grafana and `promtool` use for
//! autocompletion and series lookups).

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use pharos_model::{LabelMatcher, Labels};
use promql_parser::parser::Expr;
use serde_json::json;

use super::AppState;
use super::params::parse_time_ms;
use super::prometheus::run_blocking;
use crate::error::{Error, Result};
use crate::promql;

/// Query-string and form parameters, keeping repeated keys (`match[]`).
pub(super) struct MultiParams(Vec<(String, String)>);

impl MultiParams {
    pub(super) fn parse(query: Option<String>, body: &[u8]) -> Result<Self> {
        let mut pairs: Vec<(String, String)> = match query {
            Some(q) => serde_urlencoded::from_str(&q)
                .map_err(|e| Error::BadData(format!("invalid query string: {e}")))?,
            None => Vec::new(),
        };
        if !body.is_empty() {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| Error::BadData(format!("invalid form body: {e}")))?;
            pairs.extend(form);
        }
        Ok(MultiParams(pairs))
    }

    fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn time(&self, key: &str, default: i64) -> Result<i64> {
        match self.all(key).last() {
            Some(v) => parse_time_ms(key, v),
            None => Ok(default),
        }
    }

    /// `match[]` selectors, each as alternative matcher groups; `None` when none was given.
    pub(super) fn selectors(&self) -> Result<Option<Vec<Vec<LabelMatcher>>>> {
        let mut groups = Vec::new();
        for m in self.all("match[]") {
            match promql::parse(m)? {
                Expr::VectorSelector(vs) => groups.extend(promql::matcher_groups(&vs)),
                _ => {
                    return Err(Error::BadData(format!(
                        "invalid parameter \"match[]\": {m:?} is not a series selector"
                    )));
                }
            }
        }
        Ok((!groups.is_empty()).then_some(groups))
    }
}

/// The distinct label sets of series matching any group in `[start, end]`.
async fn matching_series(state: &AppState, p: &MultiParams, required: bool) -> Result<Vec<Labels>> {
    let groups = match p.selectors()? {
        Some(g) => g,
        None if required => return Err(Error::BadData("no match[] parameter provided".into())),
        None => vec![vec![
            LabelMatcher::new("__name__", "=~", ".+").map_err(Error::Internal)?,
        ]],
    };
    let (start, end) = (p.time("start", i64::MIN / 2)?, p.time("end", i64::MAX / 2)?);
    if end < start {
        return Err(Error::BadData(
            "end timestamp must not be before start time".into(),
        ));
    }
    let reader = state.metrics.clone();
    run_blocking(move || {
        let mut out = BTreeSet::new();
        for g in &groups {
            for s in reader
                .select_series(g, start, end)
                .map_err(Error::Internal)?
            {
                out.insert(s.labels);
            }
            // Series of native histograms.
            for s in reader.select_histograms(g, start, end).map_err(Error::Internal)? {
                out.insert(s.labels);
            }
        }
        Ok(out.into_iter().collect())
    })
    .await
}

fn success(data: serde_json::Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

/// The warning Prometheus adds when `limit` cut a list.
pub(super) const TRUNCATED: &str = "results truncated due to limit";

/// `list` (in Prometheus' order) cut to the `limit` parameter, with Prometheus' warning when
/// that left something out. `limit` is a non-negative integer; 0 or absent means no limit.
fn limited<T: serde::Serialize>(p: &MultiParams, list: Vec<T>) -> Result<Response> {
    let limit = super::prometheus::parse_limit(p.all("limit").last())?;
    if limit > 0 && list.len() > limit {
        let kept: Vec<T> = list.into_iter().take(limit).collect();
        return Ok(Json(json!({"status": "success", "data": kept, "warnings": [TRUNCATED]})).into_response());
    }
    Ok(success(json!(list)))
}

fn labels_object(l: &Labels) -> serde_json::Value {
    serde_json::Value::Object(l.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
}

/// `GET/POST /api/v1/series`.
pub async fn series(State(state): State<AppState>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let result = async {
        let p = MultiParams::parse(q, &body)?;
        let series = matching_series(&state, &p, true).await?;
        limited(&p, series.iter().map(labels_object).collect())
    }
    .await;
    result.unwrap_or_else(|e| e.into_response())
}

/// `GET/POST /api/v1/labels`.
pub async fn labels(State(state): State<AppState>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let result = async {
        let p = MultiParams::parse(q, &body)?;
        let series = matching_series(&state, &p, false).await?;
        let names: BTreeSet<&str> = series.iter().flat_map(|l| l.iter().map(|(k, _)| k)).collect();
        limited(&p, names.into_iter().collect())
    }
    .await;
    result.unwrap_or_else(|e| e.into_response())
}

/// `GET /api/v1/label/<name>/values`.
pub async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let result = async {
        let p = MultiParams::parse(q, &[])?;
        let series = matching_series(&state, &p, false).await?;
        let values: BTreeSet<&str> = series.iter().filter_map(|l| l.get(&name)).collect();
        limited(&p, values.into_iter().collect())
    }
    .await;
    result.unwrap_or_else(|e| e.into_response())
}

/// An integer parameter as Prometheus reads it (`strconv.Atoi`): absent or empty is `-1`.
fn int_param(p: &MultiParams, key: &str) -> Result<i64> {
    match p.all(key).last() {
        None | Some("") => Ok(-1),
        Some(v) => v.parse::<i64>().map_err(|_| Error::BadData(format!("{key} must be a number"))),
    }
}

/// `GET/POST /api/v1/metadata`: `{"<family>": [{"type", "help", "unit"}, …]}` with Prometheus'
/// parameters: `metric` (one family name), `limit` (most families; negative means all, `0`
/// none) and `limit_per_metric` (most entries per family; `0` or negative means all). Families
/// are taken in name order when `limit` cuts.
pub async fn metadata(State(state): State<AppState>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let result = async {
        let p = MultiParams::parse(q, &body)?;
        let limit = int_param(&p, "limit")?;
        let limit_per_metric = int_param(&p, "limit_per_metric")?;
        let metric = p.all("metric").last().filter(|m| !m.is_empty()).map(str::to_string);
        let reader = state.metrics.clone();
        let families = run_blocking(move || reader.metric_metadata(metric.as_deref()).map_err(Error::Internal)).await?;
        let mut out = serde_json::Map::new();
        for (name, entries) in families {
            if limit >= 0 && out.len() as i64 >= limit {
                break;
            }
            let take = if limit_per_metric > 0 { limit_per_metric as usize } else { usize::MAX };
            let list: Vec<serde_json::Value> = entries
                .iter()
                .take(take)
                .map(|m| json!({"type": m.r#type.as_str(), "help": m.help, "unit": m.unit}))
                .collect();
            out.insert(name, serde_json::Value::Array(list));
        }
        Ok::<_, Error>(serde_json::Value::Object(out))
    }
    .await;
    match result {
        Ok(data) => success(data),
        Err(e) => e.into_response(),
    }
}

/// The label sets of the series matching `matchers` in `[start, end]`, read without their
/// samples (the plan declines, so none is read). Some may have no sample in the range.
pub(super) fn series_label_sets(
    reader: &dyn pharos_model::MetricsReader,
    matchers: &[LabelMatcher],
    start: i64,
    end: i64,
) -> Result<Vec<Labels>> {
    let mut series = Vec::new();
    reader
        .stream_series(matchers, start, end, &mut |ls| {
            series = ls.to_vec();
            false
        }, &|_, _| {})
        .map_err(Error::Internal)?;
    Ok(series)
}

/// Window of `/api/v1/targets/metadata`: the targets with series in the last 2 hours stand for
/// Prometheus' active targets.
const TARGETS_WINDOW_MS: i64 = 2 * 3_600_000;

/// `GET /api/v1/targets/metadata`: metric metadata per target, in Prometheus' shape
/// `[{"target":{"instance","job"},"metric","type","help","unit"}]` (without `metric` when the
/// `metric` parameter names one). Pharos keeps metadata per family, not per target: a target
/// (the `job` and `instance` labels of a series with samples in the last 2 hours) is listed
/// with the metadata of each family it has series of (found by series name, `_total`,
/// `_bucket`… suffixes as the family's type allows). `match_target` selects targets by their
/// labels, `limit` caps the targets listed.
pub async fn targets_metadata(State(state): State<AppState>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let result = async {
        let p = MultiParams::parse(q, &body)?;
        let limit = int_param(&p, "limit")?;
        let metric = p.all("metric").last().filter(|m| !m.is_empty()).map(str::to_string);
        let mut groups = match p.all("match_target").last().filter(|m| !m.is_empty()) {
            None => vec![Vec::new()],
            Some(m) => match promql::parse(m)? {
                Expr::VectorSelector(vs) if vs.name.is_none() => promql::matcher_groups(&vs),
                _ => {
                    return Err(Error::BadData(format!("invalid parameter \"match_target\": {m:?} is not a label selector")));
                }
            },
        };
        for g in &mut groups {
            // Every series has a name: the matcher every group needs to select anything.
            g.push(LabelMatcher::new("__name__", "=~", ".+").map_err(Error::Internal)?);
        }
        let reader = state.metrics.clone();
        let end = super::params::now_ms();
        run_blocking(move || {
            let families = reader.metric_metadata(None).map_err(Error::Internal)?;
            let index = pharos_model::FamilyIndex::new(families.values().filter_map(|v| v.first().cloned()));
            // target → families it has series of.
            let mut targets: std::collections::BTreeMap<Labels, BTreeSet<String>> = Default::default();
            for g in &groups {
                for l in series_label_sets(reader.as_ref(), g, end - TARGETS_WINDOW_MS, end)? {
                    let target = Labels::from_pairs(l.iter().filter(|(k, _)| *k == "job" || *k == "instance"));
                    if target.is_empty() {
                        continue;
                    }
                    let Some(family) = l.metric_name().and_then(|n| index.family_of(n)) else { continue };
                    if metric.as_deref().is_none_or(|m| m == family.metric_family_name) {
                        targets.entry(target).or_default().insert(family.metric_family_name.clone());
                    }
                }
            }
            let mut out = Vec::new();
            for (target, names) in targets.into_iter().take(if limit >= 0 { limit as usize } else { usize::MAX }) {
                for name in names {
                    for m in families.get(&name).into_iter().flatten() {
                        let mut entry = json!({"target": labels_object(&target), "type": m.r#type.as_str(), "help": m.help, "unit": m.unit});
                        if metric.is_none() {
                            entry["metric"] = json!(name);
                        }
                        out.push(entry);
                    }
                }
            }
            Ok::<_, Error>(serde_json::Value::Array(out))
        })
        .await
    }
    .await;
    match result {
        Ok(data) => success(data),
        Err(e) => e.into_response(),
    }
}
