//! Range queries: range functions over plain matrix selectors evaluated for every step at once.
//!
//! Evaluating `rate(x[5m])` step by step finds each series' window with two binary searches,
//! collects it and matches the function by name, per series and step; that dominated range
//! queries. Here each such call is evaluated once per series over all steps, with window bounds
//! that only move forward, into a table the step-by-step evaluation then reads from. Calls whose
//! result cannot be tabulated exactly (inside subqueries, non-literal parameters, colliding
//! output label sets, tables too large) are left to the step-by-step path.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use rustc_hash::FxHashMap;

use pharos_model::Labels;
use pharos_model::otlp::is_stale_nan;
use promql_parser::parser::{Call, Expr};

use super::eval::{LabelMemo, unwrap_parens};
use super::range_functions::{self, Window};
use super::selector::{Fetched, Frame, reference_time};
use super::value::Sample;

/// Most cells (series × steps) one table of a range query may hold (about 9 bytes each):
/// beyond this the step-by-step path is used, which keeps no per-step state.
pub const MAX_CELLS: usize = 1 << 22;

/// One range function call's results at every step of the frame.
pub struct StepTable {
    /// Output label set per series (name dropped unless the function keeps it), all distinct.
    pub labels: Vec<Labels>,
    /// `values[step * labels.len() + series]`, meaningful where `present` is set.
    values: Vec<f64>,
    present: Vec<bool>,
    frame: Frame,
    /// Groupings of the series by the aggregations over this call, keyed by the aggregation's
    /// address: derived once per query instead of at every step.
    groupings: RefCell<FxHashMap<usize, Rc<Grouping>>>,
}

/// The groups of an aggregation over a table's series.
pub struct Grouping {
    /// The group index of each series.
    pub of_series: Vec<usize>,
    /// Each group's label set.
    pub labels: Vec<Labels>,
}

impl StepTable {
    /// The index of evaluation time `t` among the frame's steps, if it is one.
    pub fn step_index(&self, t: i64) -> Option<usize> {
        let Frame {
            start_ms,
            end_ms,
            step_ms,
        } = self.frame;
        if t < start_ms || t > end_ms || step_ms <= 0 || (t - start_ms) % step_ms != 0 {
            return None;
        }
        Some(((t - start_ms) / step_ms) as usize)
    }

    /// Present values at step `i` as `(series, value)`, in series order.
    pub fn row(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let n = self.labels.len();
        let (values, present) = (
            &self.values[i * n..(i + 1) * n],
            &self.present[i * n..(i + 1) * n],
        );
        values
            .iter()
            .zip(present)
            .enumerate()
            .filter(|(_, (_, p))| **p)
            .map(|(s, (v, _))| (s, *v))
    }

    /// The grouping of the series by the aggregation `key`, each series' group label set being
    /// `derive(series labels)`; derived on first use.
    pub fn grouping(&self, key: usize, derive: impl Fn(&Labels) -> Labels) -> Rc<Grouping> {
        if let Some(g) = self.groupings.borrow().get(&key) {
            return g.clone();
        }
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut labels = Vec::new();
        let of_series = self
            .labels
            .iter()
            .map(|l| {
                let group = derive(l);
                *index.entry(group.clone()).or_insert_with(|| {
                    labels.push(group);
                    labels.len() - 1
                })
            })
            .collect();
        let g = Rc::new(Grouping { of_series, labels });
        self.groupings.borrow_mut().insert(key, g.clone());
        g
    }

    /// The instant vector at step `i`, as the step-by-step path would return it.
    pub fn vector(&self, i: usize) -> Vec<Sample> {
        self.row(i)
            .map(|(s, value)| Sample {
                labels: self.labels[s].clone(),
                value,
            })
            .collect()
    }
}

/// The tables of one range query, keyed by the address of their call in the AST.
#[derive(Default)]
pub struct StepTables {
    by_call: FxHashMap<usize, StepTable>,
    max_cells: usize,
}

impl StepTables {
    /// Tabulates every eligible range function call in `expr` (outside subqueries).
    /// Tables larger than `max_cells` are not built.
    pub fn build(
        expr: &Expr,
        fetched: &Fetched,
        frame: Frame,
        memo: &LabelMemo,
        max_cells: usize,
    ) -> StepTables {
        let mut tables = StepTables {
            by_call: Default::default(),
            max_cells,
        };
        if frame.step_ms > 0 {
            tables.walk(expr, fetched, frame, memo);
        }
        tables
    }

    /// How many calls were tabulated.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_call.len()
    }

    /// The table of call `c`, if it was tabulated.
    pub fn get(&self, c: &Call) -> Option<&StepTable> {
        self.by_call.get(&(c as *const Call as usize))
    }

    fn walk(&mut self, expr: &Expr, fetched: &Fetched, frame: Frame, memo: &LabelMemo) {
        match expr {
            Expr::Paren(p) => self.walk(&p.expr, fetched, frame, memo),
            Expr::Unary(u) => self.walk(&u.expr, fetched, frame, memo),
            Expr::Binary(b) => {
                self.walk(&b.lhs, fetched, frame, memo);
                self.walk(&b.rhs, fetched, frame, memo);
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(p, fetched, frame, memo);
                }
                self.walk(&a.expr, fetched, frame, memo);
            }
            Expr::Call(c) => {
                if let Some(table) = tabulate(c, fetched, frame, memo, self.max_cells) {
                    self.by_call.insert(c as *const Call as usize, table);
                } else {
                    for arg in &c.args.args {
                        self.walk(arg, fetched, frame, memo);
                    }
                }
            }
            // A subquery evaluates its inner expression at its own steps, not the frame's.
            Expr::Subquery(_)
            | Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_)
            | Expr::Extension(_) => {}
        }
    }
}

/// The table of `c` when it is a range function over a matrix selector whose scalar parameter,
/// if any, is a literal; `None` when it is not or the table would be too large or hold one
/// label set twice (an error the step-by-step path reports at the steps where it happens).
fn tabulate(
    c: &Call,
    fetched: &Fetched,
    frame: Frame,
    memo: &LabelMemo,
    max_cells: usize,
) -> Option<StepTable> {
    let name = c.func.name;
    let args = &c.args.args;
    let (matrix_arg, scalar_arg) = match name {
        // Validates its parameters at every step; rare enough to leave to the general path.
        "double_exponential_smoothing" | "absent_over_time" => return None,
        "quantile_over_time" => (args.get(1)?, args.first()),
        "predict_linear" => (args.first()?, args.get(1)),
        _ if args.len() == 1 => (args.first()?, None),
        _ => return None,
    };
    let f = range_functions::resolve(name)?;
    let Expr::MatrixSelector(ms) = unwrap_parens(matrix_arg) else {
        return None;
    };
    let param = match scalar_arg.map(|a| unwrap_parens(a)) {
        None => f64::NAN,
        Some(Expr::NumberLiteral(n)) => n.val,
        Some(_) => return None,
    };
    let input = fetched.series(&ms.vs).ok()?;
    let steps = usize::try_from((frame.end_ms - frame.start_ms) / frame.step_ms).ok()? + 1;
    let cells = steps.checked_mul(input.len())?;
    if cells > max_cells {
        return None;
    }
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    let labels: Vec<Labels> = input
        .iter()
        .map(|s| {
            if keep_name {
                s.labels.clone()
            } else {
                memo.without_name(&s.labels)
            }
        })
        .collect();
    let mut distinct: HashSet<&Labels> = HashSet::with_capacity(labels.len());
    if !labels.iter().all(|l| distinct.insert(l)) {
        return None;
    }
    let range_ms = ms.range.as_millis() as i64;
    let pinned = ms.vs.at.is_some();
    let n = input.len();
    let mut values = vec![0.0; cells];
    let mut present = vec![false; cells];
    // `rate` and `increase` walk every window for counter resets; a count of resets up to each
    // sample tells which windows have none, where the change is the last value minus the first
    // (exactly what the walk adds up then).
    let counter = match name {
        "rate" => Some(true),
        "increase" => Some(false),
        _ => None,
    };
    let mut resets_upto: Vec<u32> = Vec::new();
    for (si, series) in input.iter().enumerate() {
        let samples: Cow<'_, [(i64, f64)]> = if series.samples.iter().any(|(_, v)| is_stale_nan(*v))
        {
            Cow::Owned(
                series
                    .samples
                    .iter()
                    .copied()
                    .filter(|(_, v)| !is_stale_nan(*v))
                    .collect(),
            )
        } else {
            Cow::Borrowed(&series.samples)
        };
        // Windows are (at - range, at]: `lo` is the first sample after the left bound, `hi` the
        // first after the right one. Reference times never decrease from step to step (`@`
        // pins them, `offset` shifts them all), so both only move forward.
        if counter.is_some() {
            resets_upto.clear();
            let mut count = 0u32;
            resets_upto.extend(samples.iter().enumerate().map(|(i, (_, v))| {
                // The same comparison as the walk's: a NaN is never a reset.
                count += u32::from(i > 0 && *v < samples[i - 1].1);
                count
            }));
        }
        let (mut lo, mut hi) = (0, 0);
        for step in 0..steps {
            let t = frame.start_ms + step as i64 * frame.step_ms;
            let at = reference_time(&ms.vs, frame, t);
            let start = at.saturating_sub(range_ms);
            while lo < samples.len() && samples[lo].0 <= start {
                lo += 1;
            }
            hi = hi.max(lo);
            while hi < samples.len() && samples[hi].0 <= at {
                hi += 1;
            }
            if lo >= hi {
                continue;
            }
            let window = Window {
                start_ms: start,
                end_ms: at,
            };
            let window_samples = &samples[lo..hi];
            let result = match counter {
                Some(is_rate) if window_samples.len() >= 2 && resets_upto[hi - 1] == resets_upto[lo] => {
                    let change = window_samples[window_samples.len() - 1].1 - window_samples[0].1;
                    Some(range_functions::extrapolate(window_samples, window, change, true, is_rate))
                }
                _ => {
                    let intercept_ms = super::functions::intercept_time(frame, pinned, t);
                    f(window_samples, window, param, intercept_ms)
                }
            };
            if let Some(v) = result {
                values[step * n + si] = v;
                present[step * n + si] = true;
            }
        }
    }
    Some(StepTable {
        labels,
        values,
        present,
        frame,
        groupings: Default::default(),
    })
}
