//! PromQL: parsing with `promql-parser`, evaluation over a [`MetricsReader`].
//!
//! Each selector's data is fetched from the reader once for the whole query, then every
//! evaluation step slices it in memory. Anything not implemented is rejected with a
//! [`Error::BadData`] saying "… is not supported yet", never answered approximately.

pub(crate) mod aggregate;
pub mod annotations;
mod binary;
mod eval;
pub(crate) mod functions;
mod histogram;
mod info;
pub(crate) mod native;
pub(crate) mod range_functions;
mod selector;
mod step_table;
mod subquery;
mod time_functions;
mod value;

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_annotations;
#[cfg(test)]
mod tests_info_fill;
#[cfg(test)]
mod tests_native;
#[cfg(test)]
mod tests_step_table;
#[cfg(test)]
mod tests_subquery_time;

use std::collections::HashMap;

use pharos_model::{Labels, MetricsReader};
use promql_parser::parser::Expr;
use promql_parser::parser::token::{T_BOTTOMK, T_TOPK};
use promql_parser::parser::value::ValueType;

pub use selector::{LOOKBACK_MS, MAX_SAMPLES, matcher_groups};
pub use value::{
    DataJson, LabelsJson, NativeSeries, QueryResult, QueryStats, RangeSeries, Sample, Value, format_float, labels_json, timestamp_json,
};

use crate::error::{Error, Result};
use annotations::Annotations;
use eval::{Evaluator, LabelMemo};
use selector::{Fetched, Frame};
use step_table::StepTables;

/// Most points a range query may return per series (as Prometheus).
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Parses a PromQL expression; a parse error is [`Error::BadData`] carrying the parser's message.
pub fn parse(query: &str) -> Result<Expr> {
    // The parser is third-party code fed untrusted input: never let it take the process down.
    let parsed = std::panic::catch_unwind(|| promql_parser::parser::parse(query))
        .map_err(|_| Error::BadData(format!("failed to parse PromQL query {query:?}")))?;
    parsed.map_err(|e| Error::BadData(format!("invalid parameter \"query\": {e}")))
}

/// Settings of one query beyond its expression and times.
#[derive(Clone, Copy, Debug)]
pub struct QueryOptions {
    /// How far back an instant vector selector looks for a sample (ms).
    pub lookback_ms: i64,
    /// How long the evaluation may take ([`DEFAULT_TIMEOUT`] unless the query sets `timeout`).
    pub timeout: std::time::Duration,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions { lookback_ms: LOOKBACK_MS, timeout: DEFAULT_TIMEOUT }
    }
}

/// The longest a query may be evaluated: Prometheus' default `--query.timeout`.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

thread_local! {
    /// When the query evaluated on this thread must stop (queries run one per blocking thread).
    static DEADLINE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// Restores the thread's previous deadline when a query ends.
struct DeadlineGuard(Option<std::time::Instant>);

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(self.0));
    }
}

fn set_deadline(timeout: std::time::Duration) -> DeadlineGuard {
    let deadline = std::time::Instant::now().checked_add(timeout);
    DeadlineGuard(DEADLINE.with(|d| d.replace(deadline)))
}

/// Prometheus' timeout error once the query's deadline has passed: checked at every step of a
/// range query and of a subquery, so a query that evaluates step by step stops within a step.
pub(crate) fn check_deadline() -> Result<()> {
    match DEADLINE.with(|d| d.get()) {
        Some(deadline) if std::time::Instant::now() > deadline => Err(Error::Timeout("query timed out in expression evaluation".into())),
        _ => Ok(()),
    }
}

/// Evaluates `query` at `time_ms` (an instant query).
pub fn instant_query(reader: &dyn MetricsReader, query: &str, time_ms: i64) -> Result<QueryResult> {
    instant_query_with_options(reader, query, time_ms, QueryOptions::default())
}

/// [`instant_query`] with `options`.
pub fn instant_query_with_options(
    reader: &dyn MetricsReader,
    query: &str,
    time_ms: i64,
    options: QueryOptions,
) -> Result<QueryResult> {
    let _deadline = set_deadline(options.timeout);
    let expr = parse(query)?;
    let frame = Frame {
        start_ms: time_ms,
        end_ms: time_ms,
        step_ms: 0,
        lookback_ms: options.lookback_ms,
    };
    let started = std::time::Instant::now();
    let (expr, with_virtual, native_notes) = match native::prepare(reader, query, &expr, frame, false)? {
        None => (expr, None, None),
        Some(native::Prepared::Answer(value, annotations)) => {
            let stats = QueryStats { preparation: started.elapsed(), ..Default::default() };
            return Ok(QueryResult { value, time_ms, stats, annotations });
        }
        Some(native::Prepared::Rewritten { expr, series, notes }) => (expr, Some(native::WithVirtual { inner: reader, series }), Some(notes)),
    };
    let reader: &dyn MetricsReader = match &with_virtual {
        Some(w) => w,
        None => reader,
    };
    let ev = Evaluator {
        frame,
        fetched: Fetched::load(reader, &expr, frame)?,
        memo: Default::default(),
        tables: Default::default(),
        annotations: Default::default(),
    };
    let mut stats = QueryStats { preparation: started.elapsed(), samples_read: ev.fetched.samples(), ..Default::default() };
    let started = std::time::Instant::now();
    let value = ev.eval(&expr, time_ms)?;
    stats.inner_eval = started.elapsed();
    let started = std::time::Instant::now();
    let value = match value {
        Value::Vector(mut v) => {
            if !keeps_order(&expr) {
                v.sort_by(|a, b| a.labels.cmp(&b.labels));
            }
            Value::Vector(v)
        }
        Value::Matrix(mut m) => {
            m.sort_by(|a, b| a.labels.cmp(&b.labels));
            Value::Matrix(m)
        }
        other => other,
    };
    stats.result_sort = started.elapsed();
    let mut annotations = ev.annotations.render(query, &expr);
    if let Some(notes) = native_notes {
        annotations.merge(notes);
    }
    Ok(QueryResult { value, time_ms, stats, annotations })
}

/// True when the expression's own order is its meaning (`sort`, `topk`, …).
fn keeps_order(expr: &Expr) -> bool {
    match eval::unwrap_parens(expr) {
        Expr::Call(c) => matches!(
            c.func.name,
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
        ),
        Expr::Aggregate(a) => matches!(a.op.id(), T_TOPK | T_BOTTOMK),
        _ => false,
    }
}

/// Evaluates `query` at `start_ms, start_ms + step_ms, … ≤ end_ms` (a range query); the result
/// is a matrix sorted by labels.
pub fn range_query(
    reader: &dyn MetricsReader,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
) -> Result<QueryResult> {
    range_query_with(reader, query, start_ms, end_ms, step_ms, step_table::MAX_CELLS, QueryOptions::default())
}

/// [`range_query`] with `options`.
pub fn range_query_with_options(
    reader: &dyn MetricsReader,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    options: QueryOptions,
) -> Result<QueryResult> {
    range_query_with(reader, query, start_ms, end_ms, step_ms, step_table::MAX_CELLS, options)
}

/// [`range_query`], evaluating range function calls, instant selectors and binary operations
/// for all steps up front into tables of at most `max_cells` cells (see [`step_table`]); tests
/// compare with 0, step by step only.
fn range_query_with(
    reader: &dyn MetricsReader,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    max_cells: usize,
    options: QueryOptions,
) -> Result<QueryResult> {
    let _deadline = set_deadline(options.timeout);
    if step_ms <= 0 {
        return Err(Error::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
                .into(),
        ));
    }
    if end_ms < start_ms {
        return Err(Error::BadData(
            "end timestamp must not be before start time".into(),
        ));
    }
    if (end_ms as i128 - start_ms as i128) / step_ms as i128 > MAX_POINTS_PER_SERIES as i128 {
        return Err(Error::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the \
             query resolution (?step=XX)"
                .into(),
        ));
    }
    let expr = parse(query)?;
    match expr.value_type() {
        ValueType::Scalar | ValueType::Vector => {}
        other => {
            let name = if other == ValueType::Matrix {
                "range vector"
            } else {
                "string"
            };
            return Err(Error::BadData(format!(
                "invalid expression type \"{name}\" for range query, must be Scalar or instant \
                 Vector"
            )));
        }
    }
    let frame = Frame {
        start_ms,
        end_ms,
        step_ms,
        lookback_ms: options.lookback_ms,
    };
    let started = std::time::Instant::now();
    let (expr, with_virtual, native_notes) = match native::prepare(reader, query, &expr, frame, true)? {
        None => (expr, None, None),
        Some(native::Prepared::Answer(value, annotations)) => {
            let stats = QueryStats { preparation: started.elapsed(), ..Default::default() };
            return Ok(QueryResult { value, time_ms: end_ms, stats, annotations });
        }
        Some(native::Prepared::Rewritten { expr, series, notes }) => (expr, Some(native::WithVirtual { inner: reader, series }), Some(notes)),
    };
    let reader: &dyn MetricsReader = match &with_virtual {
        Some(w) => w,
        None => reader,
    };
    // Calls the store can stream into their tables first: their selectors are not fetched.
    let memo = LabelMemo::default();
    let annotations = Annotations::default();
    let mut tables = StepTables::new(max_cells);
    let streamed = tables.stream(reader, &expr, frame, &memo, &annotations)?;
    let fetched = Fetched::load_except(reader, &expr, frame, streamed.selectors, streamed.samples)?;
    tables.build_rest(&expr, &fetched, frame, &memo, &annotations);
    let ev = Evaluator {
        frame,
        fetched,
        memo,
        tables,
        annotations,
    };
    let mut stats = QueryStats { preparation: started.elapsed(), samples_read: ev.fetched.samples(), ..Default::default() };
    if let Some(table) = ev.tables.of_expr(&expr) {
        // The whole expression was evaluated for every step: no step loop.
        let started = std::time::Instant::now();
        let mut series = table.matrix();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        stats.result_sort = started.elapsed();
        let mut annotations = ev.annotations.render(query, &expr);
        if let Some(notes) = native_notes {
            annotations.merge(notes);
        }
        return Ok(QueryResult { value: Value::Matrix(series), time_ms: end_ms, stats, annotations });
    }
    let started = std::time::Instant::now();
    // `ahash`: SipHash over every output label set at every step showed in profiles.
    let mut by_labels: HashMap<Labels, Vec<(i64, f64)>, ahash::RandomState> = HashMap::default();
    let mut t = start_ms;
    while t <= end_ms {
        check_deadline()?;
        ev.memo.new_step();
        match ev.eval(&expr, t)? {
            Value::Scalar(v) => by_labels.entry(Labels::default()).or_default().push((t, v)),
            Value::Vector(samples) => {
                for s in samples {
                    by_labels.entry(s.labels).or_default().push((t, s.value));
                }
            }
            other => {
                return Err(Error::BadData(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant \
                     Vector",
                    match other {
                        Value::Matrix(_) => "range vector",
                        _ => other.type_name(),
                    }
                )));
            }
        }
        match t.checked_add(step_ms) {
            Some(next) => t = next,
            None => break,
        }
    }
    stats.inner_eval = started.elapsed();
    let started = std::time::Instant::now();
    let mut series: Vec<RangeSeries> = by_labels
        .into_iter()
        .map(|(labels, points)| RangeSeries { labels, points })
        .collect();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let value = Value::Matrix(series);
    stats.result_sort = started.elapsed();
    let mut annotations = ev.annotations.render(query, &expr);
    if let Some(notes) = native_notes {
        annotations.merge(notes);
    }
    Ok(QueryResult { value, time_ms: end_ms, stats, annotations })
}
