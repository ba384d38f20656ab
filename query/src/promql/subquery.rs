//! Subqueries (`expr[range:step]`): the inner expression evaluated at every multiple of the
//! step inside the left-open window, as Prometheus' `evalSubquery` does.

use std::collections::HashMap;

use pharos_model::Labels;
use promql_parser::parser::{AtModifier, Offset, SubqueryExpr};

use super::eval::Evaluator;
use super::selector::{Frame, MAX_SAMPLES, too_many_samples};
use super::value::{RangeSeries, Value};
use crate::error::{Error, Result};

/// Step of a subquery written without one (`x[5m:]`): Prometheus' default global evaluation
/// interval, which promqltest also uses.
pub const DEFAULT_STEP_MS: i64 = 60_000;

/// The time a subquery's window ends at when the query evaluates at `t`: `@`, then `offset`.
pub fn reference_time(sq: &SubqueryExpr, frame: Frame, t: i64) -> i64 {
    let base = match &sq.at {
        None => t,
        Some(AtModifier::Start) => frame.start_ms,
        Some(AtModifier::End) => frame.end_ms,
        Some(AtModifier::At(st)) => super::selector::system_time_ms(st),
    };
    let offset = match &sq.offset {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    };
    base.saturating_sub(offset)
}

/// The subquery's range and step in ms.
pub fn range_and_step(sq: &SubqueryExpr) -> (i64, i64) {
    let step = sq
        .step
        .map(|d| d.as_millis() as i64)
        .unwrap_or(DEFAULT_STEP_MS);
    (sq.range.as_millis() as i64, step.max(1))
}

/// The evaluation times of a subquery whose window ends at `at`: multiples of the step in
/// `(at - range, at]`.
pub fn steps(at: i64, range_ms: i64, step_ms: i64) -> impl Iterator<Item = i64> {
    let lo = at - range_ms;
    let mut first = lo.div_euclid(step_ms) * step_ms;
    if first <= lo {
        first += step_ms;
    }
    (0..)
        .map(move |i| first + i * step_ms)
        .take_while(move |ts| *ts <= at)
}

thread_local! {
    /// Most points one subquery evaluation may hold: [`MAX_SAMPLES`], as Prometheus counts a
    /// subquery's points towards `--query.max-samples`; lowered by tests only.
    static POINT_LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(MAX_SAMPLES) };
}

/// Counts the points a subquery evaluation holds, refusing the query (Prometheus' "too many
/// samples") past [`POINT_LIMIT`], so that `x[30d:1ms]` fails instead of exhausting memory.
pub(crate) struct PointBudget {
    held: usize,
    limit: usize,
}

impl PointBudget {
    pub(crate) fn new() -> Self {
        PointBudget { held: 0, limit: POINT_LIMIT.with(|l| l.get()) }
    }

    pub(crate) fn take(&mut self, points: usize) -> Result<()> {
        self.held += points;
        if self.held > self.limit { Err(too_many_samples()) } else { Ok(()) }
    }

    /// Whether `points` held at once are within the limit.
    pub(crate) fn check(points: usize) -> Result<()> {
        PointBudget::new().take(points)
    }
}

/// Refuses a subquery with more steps than points the limit allows before evaluating any
/// (Prometheus would grind through them until its query timeout).
pub(crate) fn check_step_count(sq: &SubqueryExpr) -> Result<()> {
    let (range_ms, step_ms) = range_and_step(sq);
    PointBudget::check((range_ms / step_ms) as usize)
}

/// Runs `f` with the subquery point limit set to `limit` on this thread.
#[cfg(test)]
pub(crate) fn with_point_limit<R>(limit: usize, f: impl FnOnce() -> R) -> R {
    let before = POINT_LIMIT.with(|l| l.replace(limit));
    let out = f();
    POINT_LIMIT.with(|l| l.set(before));
    out
}

/// Evaluates the subquery at `t`: one range series per label set the inner expression produced.
pub fn eval(ev: &Evaluator, sq: &SubqueryExpr, t: i64) -> Result<Vec<RangeSeries>> {
    let at = reference_time(sq, ev.frame, t);
    let (range_ms, step_ms) = range_and_step(sq);
    let mut order: Vec<Labels> = Vec::new();
    // `ahash`: SipHash over every output label set at every step showed in profiles.
    let mut by_labels: HashMap<Labels, Vec<(i64, f64)>, ahash::RandomState> = HashMap::default();
    let mut budget = PointBudget::new();
    check_step_count(sq)?;
    for ts in steps(at, range_ms, step_ms) {
        super::check_deadline()?;
        let samples = match ev.eval(&sq.expr, ts)? {
            Value::Vector(v) => v,
            Value::Scalar(v) => vec![super::value::Sample {
                labels: Labels::default(),
                value: v,
            }],
            other => {
                return Err(Error::BadData(format!(
                    "subquery is only allowed on an instant vector or a scalar, got a {}",
                    other.type_name()
                )));
            }
        };
        budget.take(samples.len())?;
        for s in samples {
            let points = by_labels.entry(s.labels.clone()).or_insert_with(|| {
                order.push(s.labels.clone());
                Vec::new()
            });
            points.push((ts, s.value));
        }
    }
    Ok(order
        .into_iter()
        .map(|labels| {
            let points = by_labels.remove(&labels).unwrap_or_default();
            RangeSeries { labels, points }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_aligned_multiples_inside_the_left_open_window() {
        // Window (10m - 5m, 10m] with 1m steps: 6m, 7m, 8m, 9m, 10m (5m itself is excluded).
        let got: Vec<i64> = steps(600_000, 300_000, 60_000).collect();
        assert_eq!(got, vec![360_000, 420_000, 480_000, 540_000, 600_000]);
        // Unaligned end 95s, range 30s, step 20s: window (65s, 95s] holds 80s only.
        let got: Vec<i64> = steps(95_000, 30_000, 20_000).collect();
        assert_eq!(got, vec![80_000]);
        // Negative times align the same way: (-50s, 0] step 20s: -40s, -20s, 0.
        let got: Vec<i64> = steps(0, 50_000, 20_000).collect();
        assert_eq!(got, vec![-40_000, -20_000, 0]);
    }
}
