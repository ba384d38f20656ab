//! Native histogram samples in queries.
//!
//! The store keeps native histograms ([`pharos_model::FloatHistogram`]) next to float samples,
//! but the evaluator computes on floats only. Before a query is evaluated, every selector it
//! reads asks the store for histogram samples over the times it reads. When none has any (every
//! query over float series), the query is evaluated as before. When some has:
//!
//! - a bare vector selector (`http_request_duration_seconds{job="api"}`, an instant or a range
//!   query) or a bare range selector (`…[5m]`, an instant query) answers with the histograms, as
//!   Prometheus does: per series the latest sample (float or histogram) within the lookback of
//!   each step, or every sample of the range;
//! - any other expression is refused with `400 bad_data` "… is not supported yet", naming the
//!   selector, instead of evaluating the histogram series as if they had no samples.

use std::collections::BTreeMap;
use std::sync::Arc;

use pharos_model::otlp::is_stale_nan;
use pharos_model::{FloatHistogram, HistogramSeries, Labels, MetricsReader};
use promql_parser::parser::{Expr, VectorSelector};

use super::eval::unwrap_parens;
use super::selector::{Frame, MAX_SAMPLES, fetch_bounds, matcher_groups, reference_time, too_many_samples};
use super::value::{NativeSeries, Value};
use crate::error::{Error, Result};

/// Whether a histogram sample is a staleness marker (Prometheus marks one by its sum).
fn is_stale(h: &FloatHistogram) -> bool {
    is_stale_nan(h.sum)
}

/// Every selector `expr` reads, with the first and last timestamp it reads when the query
/// evaluates at times in `span` (as [`super::selector::Fetched`] walks it).
fn selectors<'a>(expr: &'a Expr, frame: Frame, span: (i64, i64), out: &mut Vec<(&'a VectorSelector, (i64, i64))>) {
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        Expr::Paren(p) => selectors(&p.expr, frame, span, out),
        Expr::Unary(u) => selectors(&u.expr, frame, span, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, frame, span, out);
            selectors(&b.rhs, frame, span, out);
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                selectors(p, frame, span, out);
            }
            selectors(&a.expr, frame, span, out);
        }
        Expr::Call(c) => {
            for arg in &c.args.args {
                selectors(arg, frame, span, out);
            }
        }
        Expr::VectorSelector(vs) => out.push((vs, fetch_bounds(vs, frame.lookback_ms, frame, span))),
        Expr::MatrixSelector(ms) => out.push((&ms.vs, fetch_bounds(&ms.vs, ms.range.as_millis() as i64, frame, span))),
        Expr::Subquery(sq) => {
            let (range_ms, _) = super::subquery::range_and_step(sq);
            let first = super::subquery::reference_time(sq, frame, span.0);
            let last = super::subquery::reference_time(sq, frame, span.1);
            selectors(&sq.expr, frame, (first.saturating_sub(range_ms), last), out);
        }
    }
}

/// The histogram series matching any matcher group of `vs` in `[from, last]`.
fn histograms_of(reader: &dyn MetricsReader, vs: &VectorSelector, (from, last): (i64, i64)) -> Result<Vec<HistogramSeries>> {
    let mut by_labels: BTreeMap<Labels, HistogramSeries> = BTreeMap::new();
    for group in matcher_groups(vs) {
        let found = reader.select_histograms(&group, from, last).map_err(|e| Error::Internal(format!("reading histograms for {vs}: {e}")))?;
        for s in found {
            by_labels.entry(s.labels.clone()).or_insert(s);
        }
    }
    Ok(by_labels.into_values().collect())
}

/// `None` when no selector of `expr` reads a histogram sample (evaluate it as usual); else the
/// answer of a bare selector, or the error saying what is not supported. `range_query` tells a
/// range query (its steps are the frame's) from an instant one.
pub(crate) fn answer(reader: &dyn MetricsReader, expr: &Expr, frame: Frame, range_query: bool) -> Result<Option<Value>> {
    let mut found = Vec::new();
    selectors(expr, frame, (frame.start_ms, frame.end_ms), &mut found);
    let mut with_histograms = None;
    for (vs, bounds) in &found {
        let h = histograms_of(reader, vs, *bounds)?;
        if !h.is_empty() {
            with_histograms = Some((*vs, *bounds, h));
            break;
        }
    }
    let Some((vs, bounds, histograms)) = with_histograms else { return Ok(None) };
    let floats = floats_of(reader, vs, bounds)?;
    let samples: usize = histograms.iter().map(|s| s.samples.len()).sum::<usize>() + floats.values().map(Vec::len).sum::<usize>();
    if samples > MAX_SAMPLES {
        return Err(too_many_samples());
    }
    let mut series: BTreeMap<Labels, (Vec<(i64, f64)>, Vec<(i64, Arc<FloatHistogram>)>)> = BTreeMap::new();
    for (labels, f) in floats {
        series.entry(labels).or_default().0 = f;
    }
    for h in histograms {
        series.entry(h.labels).or_default().1 = h.samples;
    }
    match unwrap_parens(expr) {
        Expr::VectorSelector(v) if std::ptr::eq(v, vs) => {
            let steps: Vec<i64> = if range_query {
                let mut t = frame.start_ms;
                let mut steps = Vec::new();
                while t <= frame.end_ms {
                    steps.push(t);
                    match t.checked_add(frame.step_ms) {
                        Some(next) => t = next,
                        None => break,
                    }
                }
                steps
            } else {
                vec![frame.start_ms]
            };
            let out = series
                .into_iter()
                .filter_map(|(labels, (floats, histograms))| {
                    let mut s = NativeSeries { labels, floats: Vec::new(), histograms: Vec::new() };
                    for &t in &steps {
                        let at = reference_time(vs, frame, t);
                        let after = at.saturating_sub(frame.lookback_ms);
                        let f = floats[..floats.partition_point(|(ts, _)| *ts <= at)].last().filter(|(ts, _)| *ts > after);
                        let h = histograms[..histograms.partition_point(|(ts, _)| *ts <= at)].last().filter(|(ts, _)| *ts > after);
                        // The later sample of the two kinds is the series' latest.
                        match (f, h) {
                            (Some(&(ft, v)), h) if h.is_none_or(|(ht, _)| ft > *ht) => {
                                if !is_stale_nan(v) {
                                    s.floats.push((t, v));
                                }
                            }
                            (_, Some((_, h))) if !is_stale(h) => s.histograms.push((t, h.clone())),
                            _ => {}
                        }
                    }
                    (!s.floats.is_empty() || !s.histograms.is_empty()).then_some(s)
                })
                .collect();
            Ok(Some(Value::Native { range: range_query, series: out }))
        }
        Expr::MatrixSelector(m) if std::ptr::eq(&m.vs, vs) && !range_query => {
            let at = reference_time(vs, frame, frame.start_ms);
            let after = at.saturating_sub(m.range.as_millis() as i64);
            let out = series
                .into_iter()
                .filter_map(|(labels, (floats, histograms))| {
                    let s = NativeSeries {
                        labels,
                        floats: floats.into_iter().filter(|(t, v)| *t > after && *t <= at && !is_stale_nan(*v)).collect(),
                        histograms: histograms.into_iter().filter(|(t, h)| *t > after && *t <= at && !is_stale(h)).collect(),
                    };
                    (!s.floats.is_empty() || !s.histograms.is_empty()).then_some(s)
                })
                .collect();
            Ok(Some(Value::Native { range: true, series: out }))
        }
        _ => Err(Error::unsupported(format!(
            "evaluating native histogram samples (of series selected by `{vs}`) in an expression other than a bare selector"
        ))),
    }
}

/// The float samples of the series matching any matcher group of `vs` in `[from, last]`, by
/// series.
fn floats_of(reader: &dyn MetricsReader, vs: &VectorSelector, (from, last): (i64, i64)) -> Result<BTreeMap<Labels, Vec<(i64, f64)>>> {
    let mut out = BTreeMap::new();
    for group in matcher_groups(vs) {
        let found = reader.select_series(&group, from, last).map_err(|e| Error::Internal(format!("reading series for {vs}: {e}")))?;
        for s in found {
            out.entry(s.labels).or_insert(s.samples);
        }
    }
    Ok(out)
}
