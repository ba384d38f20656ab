//! Loki's field, label and pattern discovery, which Grafana's Logs Drilldown reads:
//! `/loki/api/v1/detected_fields`, `/loki/api/v1/detected_field/{name}/values` and
//! `/loki/api/v1/detected_labels` (answers not wrapped in `{"status":…,"data":…}`, as in Loki),
//! and `/loki/api/v1/patterns`.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use pharos_model::{Direction, LogRecord, LogSearch};
use serde_json::{Value as Json_, json};

use super::AppState;
use super::loki::{meta_matchers, meta_window, step_ns};
use super::params::Params;
use super::prometheus::run_blocking;
use crate::error::{Error, Result};
use crate::logql::{self, drain::Drain, pipeline};

/// Lines read by default (Loki's `line_limit`).
const DEFAULT_LINE_LIMIT: usize = 1000;
/// Fields (or values) answered by default (Loki's `limit`).
const DEFAULT_FIELD_LIMIT: usize = 1000;

/// Labels that are never hidden as identifiers (Loki's list).
const STATIC_LABELS: &[&str] = &["cluster", "namespace", "instance", "pod"];

fn positive(params: &Params, name: &str, default: usize) -> Result<usize> {
    match params.get(name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            Error::BadData(format!("invalid parameter \"{name}\": {v:?} must be a positive integer"))
        }),
    }
}

/// `GET /loki/api/v1/detected_fields?query=…`: the fields of the newest `line_limit` entries
/// of a log query: structured metadata (attributes, `detected_level`), the labels the query's
/// own parsers add, and the members of each line read as JSON or else as logfmt, with a type,
/// the number of distinct values and the parser that found them.
pub async fn detected_fields(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    match fields_of(state, &params).await {
        Ok((fields, limit)) => {
            let list: Vec<Json_> = fields
                .into_iter()
                .take(limit)
                .map(|(name, f)| {
                    json!({
                        "label": name,
                        "type": f.type_name(),
                        "cardinality": f.values.len(),
                        "parsers": if f.parsers.is_empty() { Json_::Null } else { json!(f.parsers) },
                        "jsonPath": f.json_path,
                    })
                })
                .collect();
            Json(json!({"fields": list, "limit": limit})).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /loki/api/v1/detected_field/{name}/values?query=…`: the distinct values of one
/// detected field over the same entries, sorted, at most `limit`.
pub async fn detected_field_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    match fields_of(state, &params).await {
        Ok((mut fields, limit)) => {
            let values: Vec<String> = fields.remove(&name).map(|f| f.values.into_iter().take(limit).collect()).unwrap_or_default();
            Json(json!({"values": values, "limit": limit})).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// What was seen of one field.
#[derive(Default)]
struct Field {
    parsers: BTreeSet<&'static str>,
    json_path: Vec<String>,
    values: BTreeSet<String>,
    /// Types every value so far parses as: bits in [`TYPES`] order.
    types: u8,
}

/// A field type's name and the test a value of it passes.
type FieldType = (&'static str, fn(&str) -> bool);

/// Loki's field types, most specific first.
const TYPES: [FieldType; 5] = [
    ("int", |v| v.parse::<i64>().is_ok()),
    ("float", |v| v.parse::<f64>().is_ok()),
    ("boolean", |v| matches!(v, "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False")),
    ("duration", |v| pipeline::parse_duration_secs(v).is_some()),
    ("bytes", |v| pipeline::parse_bytes(v).is_some()),
];

impl Field {
    fn add(&mut self, value: &str) {
        let mut bits = 0u8;
        for (i, (_, test)) in TYPES.iter().enumerate() {
            if test(value) {
                bits |= 1 << i;
            }
        }
        self.types = if self.values.is_empty() { bits } else { self.types & bits };
        self.values.insert(value.to_string());
    }

    /// The most specific type all values have, else `string`.
    fn type_name(&self) -> &'static str {
        TYPES.iter().enumerate().find(|(i, _)| self.types & (1 << i) != 0).map_or("string", |(_, (name, _))| name)
    }
}

/// The newest `limit` records in `[start, end]` that the query's pipeline keeps, newest first.
fn newest_records(state: &AppState, query: &logql::LogQuery, start: i64, end: i64, limit: usize) -> Result<Vec<LogRecord>> {
    let keep = |r: &LogRecord| query.process_record(r).is_some();
    let search = LogSearch {
        matchers: &query.matchers,
        contains_any: query.index_filters(),
        label_equals: query.label_equalities(),
        start_ns: start,
        end_ns: end,
        limit: Some((limit, Direction::Backward)),
        keep: (!query.stages.is_empty()).then_some(&keep),
        body_unused: false,
        severity_unused: false,
    };
    let mut records = state.logs.search_logs(&search).map_err(|e| Error::Internal(format!("reading logs: {e}")))?;
    records.retain(|r| r.timestamp_ns >= start && r.timestamp_ns <= end);
    records.sort_by_key(|r| std::cmp::Reverse(r.timestamp_ns));
    records.truncate(limit);
    Ok(records)
}

/// Reads the entries and gathers their fields (by name) and the answer's `limit`.
async fn fields_of(state: AppState, params: &Params) -> Result<(BTreeMap<String, Field>, usize)> {
    let text = params.get("query").filter(|q| !q.trim().is_empty()).ok_or_else(|| Error::BadData("invalid parameter \"query\": missing".into()))?;
    let query = match logql::parse_query(text)? {
        logql::Query::Log(q) => q,
        logql::Query::Metric(_) => return Err(Error::BadData("detected fields need a log query, not a metric query".into())),
    };
    let (start, end) = meta_window(params)?;
    let line_limit = positive(params, "line_limit", DEFAULT_LINE_LIMIT)?;
    let limit = match params.get("field_limit") {
        Some(_) => positive(params, "field_limit", DEFAULT_FIELD_LIMIT)?,
        None => positive(params, "limit", DEFAULT_FIELD_LIMIT)?,
    };
    run_blocking(move || {
        let records = newest_records(&state, &query, start, end, line_limit)?;
        let mut fields: BTreeMap<String, Field> = BTreeMap::new();
        for r in &records {
            let Some((labels, line)) = query.process_record(r) else { continue };
            // Structured metadata: the attributes (named as the pipeline names them) and the
            // level, found by no parser.
            let mut metadata: BTreeSet<String> = r
                .attributes
                .iter()
                .map(|(k, _)| if r.labels.get(k).is_some() { format!("{k}_extracted") } else { k.clone() })
                .collect();
            if r.labels.get(pipeline::DETECTED_LEVEL_LABEL).is_none() {
                metadata.insert(pipeline::DETECTED_LEVEL_LABEL.to_string());
            }
            let parsed_line = pipeline::line_fields(&line);
            let parser = parsed_line.as_ref().map(|(p, _)| *p);
            for (name, value) in &labels {
                let from_stream = r.labels.get(name).is_some_and(|v| v == value);
                if from_stream || name.starts_with("__") {
                    continue;
                }
                let f = fields.entry(name.clone()).or_default();
                if !metadata.contains(name) {
                    f.parsers.extend(parser);
                }
                f.add(value);
            }
            for field in parsed_line.map(|(_, f)| f).unwrap_or_default() {
                let name = if r.labels.get(&field.name).is_some() { format!("{}_extracted", field.name) } else { field.name };
                if labels.contains_key(&name) {
                    continue; // counted above, as the query's own parser gave it
                }
                let f = fields.entry(name).or_default();
                f.parsers.extend(parser);
                if f.json_path.is_empty() {
                    f.json_path = field.json_path;
                }
                f.add(&field.value);
            }
        }
        Ok((fields, limit))
    })
    .await
}

/// Most lines `patterns` reads: the newest in the range.
pub const PATTERN_MAX_LINES: usize = 100_000;

/// `GET /loki/api/v1/patterns?query=…&start&end&step`: the lines of a log query (its selector
/// and filters; the newest [`PATTERN_MAX_LINES`] in the range) grouped into patterns
/// ([`crate::logql::drain`], one per level), each with its level and its number of lines per
/// `step` (Loki's shape: `{"status":"success","data":[{"pattern":"<_> level=info <_>",
/// "level":"info","samples":[[unix_s, n],…]}]}`, most lines first). Each pattern works as a
/// `|>` filter that selects its lines.
pub async fn patterns(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    let go = || -> Result<_> {
        let text = params.get("query").filter(|q| !q.trim().is_empty()).ok_or_else(|| Error::BadData("invalid parameter \"query\": missing".into()))?;
        let query = match logql::parse_query(text)? {
            logql::Query::Log(q) => q,
            logql::Query::Metric(_) => return Err(Error::BadData("patterns need a log query, not a metric query".into())),
        };
        let (start, end) = meta_window(&params)?;
        if end < start {
            return Err(Error::BadData("invalid parameters: end timestamp must not be before start time".into()));
        }
        Ok((query, start, end, step_ns(&params, start, end)?))
    };
    let (query, start, end, step) = match go() {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let answer = run_blocking(move || {
        let mut records = newest_records(&state, &query, start, end, PATTERN_MAX_LINES)?;
        // Oldest first, so that the same lines always give the same patterns.
        records.sort_by(|a, b| (a.timestamp_ns, &a.labels, &a.body).cmp(&(b.timestamp_ns, &b.labels, &b.body)));
        // One Drain per level, as Loki's pattern ingester keeps them: lines of different
        // levels never share a pattern, and each pattern carries its level.
        let mut drains: BTreeMap<&str, Drain> = BTreeMap::new();
        for r in &records {
            drains.entry(pattern_level(r)).or_default().add(&r.body, r.timestamp_ns.div_euclid(step));
        }
        let mut templates: Vec<(&str, crate::logql::drain::Template)> =
            drains.into_iter().flat_map(|(level, d)| d.templates().into_iter().map(move |t| (level, t))).collect();
        // Most lines first, then by pattern and level.
        templates.sort_by_cached_key(|(level, t)| (std::cmp::Reverse(t.count), t.pattern(), *level));
        let whole_seconds = step % 1_000_000_000 == 0;
        let data: Vec<Json_> = templates
            .into_iter()
            .map(|(level, t)| {
                let samples: Vec<Json_> = t
                    .buckets
                    .iter()
                    .map(|(b, n)| {
                        let at = b * step;
                        let secs = if whole_seconds { json!(at / 1_000_000_000) } else { json!(at as f64 / 1e9) };
                        json!([secs, n])
                    })
                    .collect();
                json!({"pattern": t.pattern(), "level": level, "samples": samples})
            })
            .collect();
        Ok(json!({"status": "success", "data": data}))
    })
    .await;
    match answer {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A record's level for `patterns`: its stream's `detected_level`, else the level of its
/// severity, else `unknown` (Loki's word for a line without one).
fn pattern_level(r: &LogRecord) -> &str {
    match r.labels.get(logql::pipeline::DETECTED_LEVEL_LABEL) {
        Some(level) => level,
        None if !r.severity.is_empty() => logql::pipeline::detected_level(&r.severity),
        None => "unknown",
    }
}

/// True for a value Loki takes for an identifier: a number or a UUID.
fn is_id(v: &str) -> bool {
    if v.parse::<f64>().is_ok() {
        return true;
    }
    let hex = |s: &str| s.bytes().all(|c| c.is_ascii_hexdigit());
    let b = v.as_bytes();
    match b.len() {
        32 => hex(v),
        36 => [8, 13, 18, 23].iter().all(|&i| b[i] == b'-') && hex(&v.replace('-', "")),
        _ => false,
    }
}

/// Whether a label is left out of `detected_labels`: it has no values, or all of them are
/// identifiers (numbers or UUIDs), except a label with only the values `0` and `1` (a flag).
fn hidden_label(values: &[String]) -> bool {
    if values.is_empty() {
        return true;
    }
    if values.len() <= 2 && values.iter().all(|v| v == "0" || v == "1") {
        return false;
    }
    values.iter().all(|v| is_id(v))
}

/// `GET /loki/api/v1/detected_labels?query={…}`: the stream labels of the selector's streams in
/// `[start, end]` with their number of values, leaving out labels whose values are all
/// identifiers (except `cluster`, `namespace`, `instance` and `pod`), as Loki does.
pub async fn detected_labels(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    let go = || -> Result<_> { Ok((meta_window(&params)?, meta_matchers(&params)?)) };
    let ((start, end), matchers) = match go() {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let answer = run_blocking(move || {
        let read = |e: String| Error::Internal(format!("reading logs: {e}"));
        let mut out = Vec::new();
        for name in state.logs.log_label_names(&matchers, start, end).map_err(read)? {
            let values = state.logs.log_label_values(&name, &matchers, start, end).map_err(read)?;
            let keep = if STATIC_LABELS.contains(&name.as_str()) { !values.is_empty() } else { !hidden_label(&values) };
            if keep {
                out.push(json!({"label": name, "cardinality": values.len()}));
            }
        }
        Ok(json!({"detectedLabels": out}))
    })
    .await;
    match answer {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_fit_every_value() {
        let field = |values: &[&str]| {
            let mut f = Field::default();
            for v in values {
                f.add(v);
            }
            f.type_name()
        };
        assert_eq!(field(&["200", "404"]), "int");
        assert_eq!(field(&["200", "0.5"]), "float");
        assert_eq!(field(&["true", "False"]), "boolean");
        assert_eq!(field(&["1", "true"]), "boolean");
        assert_eq!(field(&["250ms", "1h2m"]), "duration");
        assert_eq!(field(&["10KB", "3MiB"]), "bytes");
        assert_eq!(field(&["10KB", "250ms"]), "string");
        assert_eq!(field(&["GET"]), "string");
    }

    #[test]
    fn identifier_labels_are_hidden() {
        let v = |vals: &[&str]| vals.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(hidden_label(&v(&[])));
        assert!(hidden_label(&v(&["12", "13", "14"])));
        assert!(hidden_label(&v(&["3f2504e0-4f89-11d3-9a0c-0305e82c3301", "3F2504E04F8911D39A0C0305E82C3302"])));
        assert!(!hidden_label(&v(&["0", "1"])), "a flag");
        assert!(!hidden_label(&v(&["12", "api"])), "one value that is not an id");
        assert!(!hidden_label(&v(&["3f2504e0-4f89-11d3-9a0c-0305e82c330z"])));
    }
}
