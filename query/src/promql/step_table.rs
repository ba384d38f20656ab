//! Range queries: range functions over plain matrix selectors evaluated for every step at once.
//!
//! Evaluating `rate(x[5m])` step by step finds each series' window with two binary searches,
//! collects it and matches the function by name, per series and step; that dominated range
//! queries. Here each such call is evaluated once per series over all steps, with window bounds
//! that only move forward, into a table the step-by-step evaluation then reads from. Calls whose
//! result cannot be tabulated exactly (inside subqueries, non-literal parameters, colliding
//! output label sets, tables too large) are left to the step-by-step path.
//!
//! Where the store can hand over one series at a time ([`MetricsReader::stream_series`]), a
//! call's selector is not fetched at all: each series goes into the table as it is read, on
//! the store's threads, and its samples are dropped right after. A range query over 2 h of
//! 5,600 series then never holds their 2.7 M samples at once (about 43 MB that each query
//! faulted in afresh and then freed).
//!
//! Instant vector selectors that are operands of arithmetic or comparisons (or of
//! aggregations, or the whole query) are tabulated the same way: per series and step, the
//! latest sample within the lookback. A binary operation whose operands are tables or number
//! literals, and whose series match one to one without any possible collision, is then
//! evaluated once per matched pair of series over all steps into a table of its own (the
//! matching is done once per query instead of at every step), and a range query whose whole
//! expression is a table is answered from it without a step loop.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use rustc_hash::FxHashMap;

use pharos_model::otlp::is_stale_nan;
use pharos_model::{Labels, METRIC_NAME, MetricsReader};
use promql_parser::parser::{AggregateExpr, BinaryExpr, Call, Expr, MatrixSelector, VectorSelector};

use super::annotations::{Anchor, Annotations};
use super::eval::{LabelMemo, unwrap_parens};
use super::range_functions::{self, RangeFn, Window};
use super::selector::{Fetched, Frame, fetch_bounds, matcher_groups, reference_time, too_many_samples};
use super::{aggregate, binary};
use super::value::{RangeSeries, Sample};
use crate::error::{Error, Result};

/// Most cells (series × steps) one table of a range query may hold (about 9 bytes each):
/// beyond this the step-by-step path is used, which keeps no per-step state.
pub const MAX_CELLS: usize = 1 << 22;

/// One range function call's results at every step of the frame.
pub struct StepTable {
    /// Output label set per series (name dropped unless the function keeps it), all distinct.
    pub labels: Vec<Labels>,
    cells: Cells,
    frame: Frame,
    /// Groupings of the series by the aggregations over this call, keyed by the aggregation's
    /// address: derived once per query instead of at every step.
    groupings: RefCell<FxHashMap<usize, Rc<Grouping>>>,
}

/// The values of a table, series by series (`[series * steps + step]`): a series is written
/// in one place, by whichever thread read it, and threads filling different series do not
/// share cache lines except at the ends of their rows. A value is meaningful where `present`
/// is set. Relaxed atomics cost what plain loads and stores do; the store's threads are
/// joined before the table is read.
struct Cells {
    steps: usize,
    values: Vec<AtomicU64>,
    present: Vec<AtomicBool>,
}

impl Cells {
    fn new(series: usize, steps: usize) -> Cells {
        let n = series * steps;
        Cells {
            steps,
            values: (0..n).map(|_| AtomicU64::new(0)).collect(),
            present: (0..n).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    fn set(&self, series: usize, step: usize, v: f64) {
        let at = series * self.steps + step;
        self.values[at].store(v.to_bits(), Relaxed);
        self.present[at].store(true, Relaxed);
    }

    fn get(&self, series: usize, step: usize) -> Option<f64> {
        let at = series * self.steps + step;
        self.present[at].load(Relaxed).then(|| f64::from_bits(self.values[at].load(Relaxed)))
    }

    /// True when `series` has a value at some step.
    fn row_has_value(&self, series: usize) -> bool {
        self.present[series * self.steps..(series + 1) * self.steps].iter().any(|p| p.load(Relaxed))
    }
}

/// The groups of an aggregation over a table's series.
pub struct Grouping {
    /// The group index of each series.
    pub of_series: Vec<usize>,
    /// Each group's label set.
    pub labels: Vec<Labels>,
}

impl StepTable {
    /// A table of `labels` (distinct) over the frame's steps, with no value present yet.
    pub fn empty(labels: Vec<Labels>, frame: Frame) -> StepTable {
        let steps = frame_steps(frame).unwrap_or(0);
        StepTable { cells: Cells::new(labels.len(), steps), labels, frame, groupings: Default::default() }
    }

    /// How many steps the frame has.
    pub fn steps(&self) -> usize {
        self.cells.steps
    }

    /// The value of `series` at step `step`, if present.
    pub fn get(&self, series: usize, step: usize) -> Option<f64> {
        self.cells.get(series, step)
    }

    /// Sets the value of `series` at step `step`.
    pub fn set(&self, series: usize, step: usize, v: f64) {
        self.cells.set(series, step, v)
    }

    /// The range query's answer when the table is its whole expression: each series with a
    /// value at some step, with its points in time order (unsorted).
    pub fn matrix(&self) -> Vec<RangeSeries> {
        let steps = self.steps();
        self.labels
            .iter()
            .enumerate()
            .filter_map(|(s, labels)| {
                let points: Vec<(i64, f64)> = (0..steps)
                    .filter_map(|i| Some((self.frame.start_ms + i as i64 * self.frame.step_ms, self.cells.get(s, i)?)))
                    .collect();
                (!points.is_empty()).then(|| RangeSeries { labels: labels.clone(), points })
            })
            .collect()
    }

    /// The index of evaluation time `t` among the frame's steps, if it is one.
    pub fn step_index(&self, t: i64) -> Option<usize> {
        let Frame {
            start_ms,
            end_ms,
            step_ms,
            ..
        } = self.frame;
        if t < start_ms || t > end_ms || step_ms <= 0 || (t - start_ms) % step_ms != 0 {
            return None;
        }
        Some(((t - start_ms) / step_ms) as usize)
    }

    /// Present values at step `i` as `(series, value)`, in series order.
    pub fn row(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        (0..self.labels.len()).filter_map(move |s| Some((s, self.cells.get(s, i)?)))
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

/// The tables of one range query, keyed by the address of their node in the AST: range
/// function calls, instant vector selectors and binary operations.
#[derive(Default)]
pub struct StepTables {
    by_call: FxHashMap<usize, StepTable>,
    by_selector: FxHashMap<usize, StepTable>,
    by_binary: FxHashMap<usize, StepTable>,
    by_aggregate: FxHashMap<usize, StepTable>,
    max_cells: usize,
    /// Cells of the tables built so far.
    used: usize,
}

/// A query's tables together hold at most this many times `max_cells` cells: a chain of
/// operations over fine steps would otherwise keep a table per operation where the step path
/// keeps the samples once.
const TABLES_PER_QUERY: usize = 4;

/// What [`StepTables::stream`] read.
#[derive(Default)]
pub struct Streamed {
    /// Addresses of the vector selectors read into tables (those of matrix selectors and
    /// instant ones): the query need not fetch them.
    pub selectors: HashSet<usize>,
    /// Samples read.
    pub samples: usize,
}

/// An operand of a binary operation, as [`binary::tabulate`] sees it.
pub enum Operand<'t> {
    Table(&'t StepTable),
    Scalar(f64),
    Other,
}

impl StepTables {
    /// Tables of at most `max_cells` cells each and [`TABLES_PER_QUERY`] times that in all
    /// (larger ones are not built), none built yet.
    pub fn new(max_cells: usize) -> StepTables {
        StepTables {
            max_cells,
            ..Default::default()
        }
    }

    /// The most cells the next table may have.
    fn room(&self) -> usize {
        self.max_cells.min((self.max_cells.saturating_mul(TABLES_PER_QUERY)).saturating_sub(self.used))
    }

    /// Counts a table built against the query's budget.
    fn count(&mut self, table: &StepTable) {
        self.used += table.labels.len() * table.steps();
    }

    /// Tabulates every eligible range function call and instant selector in `expr` (outside
    /// subqueries) not tabulated yet, from the fetched data; then every binary operation
    /// whose operands allow it.
    pub fn build_rest(&mut self, expr: &Expr, fetched: &Fetched, frame: Frame, memo: &LabelMemo, notes: &Annotations) {
        if frame.step_ms <= 0 {
            return;
        }
        self.walk(expr, &mut |c, tables| {
            let table = Tabulation::of(c, frame)
                .and_then(|tab| from_fetched(&Source::Call(tab), fetched, frame, memo, tables.room(), notes));
            let done = table.is_some();
            if let Some(table) = table {
                tables.count(&table);
                tables.by_call.insert(key(c), table);
            }
            Ok(done)
        })
        .expect("tabulating from fetched data cannot fail");
        for vs in table_operands(expr) {
            if self.by_selector.contains_key(&selector_key(vs)) {
                continue;
            }
            let table = Lookup::of(vs, frame)
                .and_then(|l| from_fetched(&Source::Selector(l), fetched, frame, memo, self.room(), notes));
            if let Some(table) = table {
                self.count(&table);
                self.by_selector.insert(selector_key(vs), table);
            }
        }
        self.build_derived(expr, true, frame, memo);
    }

    /// Tabulates the eligible calls and instant selectors whose selector `reader` can stream
    /// (one matcher group), each series going into the table as it is read; returns the
    /// selectors read so. One whose table would be too large or collide is left to
    /// [`StepTables::build_rest`] and the fetched data.
    pub fn stream(
        &mut self,
        reader: &dyn MetricsReader,
        expr: &Expr,
        frame: Frame,
        memo: &LabelMemo,
        notes: &Annotations,
    ) -> Result<Streamed> {
        let mut streamed = Streamed::default();
        if frame.step_ms <= 0 {
            return Ok(streamed);
        }
        self.walk(expr, &mut |c, tables| {
            let Some(tab) = Tabulation::of(c, frame) else {
                return Ok(false);
            };
            let Some(table) = stream_table(reader, &Source::Call(tab), frame, memo, tables.room(), &mut streamed, notes)? else {
                return Ok(false);
            };
            tables.count(&table);
            tables.by_call.insert(key(c), table);
            Ok(true)
        })?;
        for vs in table_operands(expr) {
            let Some(lookup) = Lookup::of(vs, frame) else {
                continue;
            };
            if let Some(table) = stream_table(reader, &Source::Selector(lookup), frame, memo, self.room(), &mut streamed, notes)? {
                self.count(&table);
                self.by_selector.insert(selector_key(vs), table);
            }
        }
        Ok(streamed)
    }

    /// How many calls were tabulated.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_call.len()
    }

    /// How many instant selectors, binary operations and aggregations were tabulated.
    #[cfg(test)]
    pub fn derived(&self) -> (usize, usize, usize) {
        (self.by_selector.len(), self.by_binary.len(), self.by_aggregate.len())
    }

    /// The table of call `c`, if it was tabulated.
    pub fn get(&self, c: &Call) -> Option<&StepTable> {
        self.by_call.get(&key(c))
    }

    /// The table of instant selector `vs`, if it was tabulated.
    pub fn selector(&self, vs: &VectorSelector) -> Option<&StepTable> {
        self.by_selector.get(&selector_key(vs))
    }

    /// The table of binary operation `b`, if it was tabulated.
    pub fn binary(&self, b: &BinaryExpr) -> Option<&StepTable> {
        self.by_binary.get(&binary_key(b))
    }

    /// The table of aggregation `a`, if it was tabulated.
    pub fn aggregate(&self, a: &AggregateExpr) -> Option<&StepTable> {
        self.by_aggregate.get(&(a as *const AggregateExpr as usize))
    }

    /// The table of `expr` (parentheses aside), if it has one.
    pub fn of_expr(&self, expr: &Expr) -> Option<&StepTable> {
        match unwrap_parens(expr) {
            Expr::Call(c) => self.get(c),
            Expr::VectorSelector(vs) => self.selector(vs),
            Expr::Binary(b) => self.binary(b),
            Expr::Aggregate(a) => self.aggregate(a),
            _ => None,
        }
    }

    fn operand(&self, expr: &Expr) -> Operand<'_> {
        match unwrap_parens(expr) {
            Expr::NumberLiteral(n) => Operand::Scalar(n.val),
            e => self.of_expr(e).map_or(Operand::Other, Operand::Table),
        }
    }

    /// Tabulates the binary operations and aggregations of `expr` (outside subqueries),
    /// innermost first, whose operands or input are tables (see [`binary::tabulate`] and
    /// [`aggregate::tabulate`]). `order_free` is true when whatever reads `expr`'s result does
    /// not depend on the order of its series: the query's answer (sorted) and, if their own
    /// result is order free, the operands of elementwise binary operations. Only there may an
    /// aggregation be a table, whose groups are not in Prometheus' order at every step.
    fn build_derived(&mut self, expr: &Expr, order_free: bool, frame: Frame, memo: &LabelMemo) {
        match expr {
            Expr::Paren(p) => self.build_derived(&p.expr, order_free, frame, memo),
            Expr::Unary(u) => self.build_derived(&u.expr, false, frame, memo),
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.build_derived(p, false, frame, memo);
                }
                self.build_derived(&a.expr, false, frame, memo);
                let table = match self.of_expr(&a.expr) {
                    Some(input) if order_free => aggregate::tabulate(a, input, memo, frame, self.room()),
                    _ => None,
                };
                if let Some(table) = table {
                    self.count(&table);
                    self.by_aggregate.insert(a as *const AggregateExpr as usize, table);
                }
            }
            Expr::Call(c) => {
                for arg in &c.args.args {
                    self.build_derived(arg, false, frame, memo);
                }
            }
            Expr::Binary(b) => {
                let operands_order_free = order_free && binary::is_elementwise(b);
                self.build_derived(&b.lhs, operands_order_free, frame, memo);
                self.build_derived(&b.rhs, operands_order_free, frame, memo);
                let table = binary::tabulate(b, self.operand(&b.lhs), self.operand(&b.rhs), frame, memo, self.room());
                if let Some(table) = table {
                    self.count(&table);
                    self.by_binary.insert(binary_key(b), table);
                }
            }
            Expr::Subquery(_)
            | Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_)
            | Expr::Extension(_) => {}
        }
    }

    /// Offers every call outside subqueries that is not tabulated yet to `tabulate`, which
    /// returns whether it tabulated it; the arguments of a call it did not are walked.
    fn walk(
        &mut self,
        expr: &Expr,
        tabulate: &mut dyn FnMut(&Call, &mut StepTables) -> Result<bool>,
    ) -> Result<()> {
        match expr {
            Expr::Paren(p) => self.walk(&p.expr, tabulate),
            Expr::Unary(u) => self.walk(&u.expr, tabulate),
            Expr::Binary(b) => {
                self.walk(&b.lhs, tabulate)?;
                self.walk(&b.rhs, tabulate)
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(p, tabulate)?;
                }
                self.walk(&a.expr, tabulate)
            }
            Expr::Call(c) => {
                if self.by_call.contains_key(&key(c)) || tabulate(c, self)? {
                    return Ok(());
                }
                for arg in &c.args.args {
                    self.walk(arg, tabulate)?;
                }
                Ok(())
            }
            // A subquery evaluates its inner expression at its own steps, not the frame's.
            Expr::Subquery(_)
            | Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_)
            | Expr::Extension(_) => Ok(()),
        }
    }
}

/// The instant vector selectors of `expr` worth tabulating: the whole expression, operands of
/// arithmetic and comparisons, and inputs of aggregations. Not those inside subqueries (other
/// steps) or function arguments (functions such as `timestamp` read the fetched samples).
fn table_operands(expr: &Expr) -> Vec<&VectorSelector> {
    fn visit<'e>(expr: &'e Expr, wanted: bool, out: &mut Vec<&'e VectorSelector>) {
        match expr {
            Expr::Paren(p) => visit(&p.expr, wanted, out),
            Expr::VectorSelector(vs) if wanted => out.push(vs),
            Expr::Binary(b) => {
                let tabulable = binary::is_elementwise(b);
                visit(&b.lhs, tabulable, out);
                visit(&b.rhs, tabulable, out);
            }
            Expr::Unary(u) => visit(&u.expr, false, out),
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    visit(p, false, out);
                }
                visit(&a.expr, true, out);
            }
            Expr::Call(c) => {
                for arg in &c.args.args {
                    visit(arg, false, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    visit(expr, true, &mut out);
    out
}

/// Reads `source`'s selector through [`MetricsReader::stream_series`] into a table; `None`
/// when the selector has alternatives of matchers, or the table would be too large or
/// collide (the store then reads nothing).
fn stream_table(
    reader: &dyn MetricsReader,
    source: &Source<'_>,
    frame: Frame,
    memo: &LabelMemo,
    max_cells: usize,
    streamed: &mut Streamed,
    notes: &Annotations,
) -> Result<Option<StepTable>> {
    let vs = source.selector();
    let mut groups = matcher_groups(vs);
    if groups.len() != 1 {
        return Ok(None);
    }
    let (from, last) = fetch_bounds(vs, source.range_ms(), frame, (frame.start_ms, frame.end_ms));
    let mut labels = None;
    // The input label sets, kept when the call's notes name its input metrics.
    let mut input_labels = Vec::new();
    let cells: OnceLock<Cells> = OnceLock::new();
    let samples = AtomicUsize::new(0);
    let mut plan = |input: &[Labels]| {
        let Some(out) = source.output_labels(input.iter(), memo, max_cells) else {
            return false;
        };
        // Set once: `plan` is called once.
        let _ = cells.set(Cells::new(out.len(), source.steps()));
        labels = Some(out);
        if source.notes_name_inputs() {
            input_labels = input.to_vec();
        }
        true
    };
    let sink = |i: usize, series: &[(i64, f64)]| {
        samples.fetch_add(series.len(), Relaxed);
        if let Some(cells) = cells.get() {
            source.fill(i, series, cells);
        }
    };
    let read = reader
        .stream_series(&groups.pop().unwrap_or_default(), from, last, &mut plan, &sink)
        .map_err(|e| Error::Internal(format!("reading series for {vs}: {e}")))?;
    let (Some(labels), Some(cells), true) = (labels, cells.into_inner(), read) else {
        return Ok(None);
    };
    source.annotate(&input_labels, labels.len(), &cells, notes);
    streamed.samples += samples.into_inner();
    if streamed.samples > super::selector::MAX_SAMPLES {
        return Err(too_many_samples());
    }
    streamed.selectors.insert(selector_key(vs));
    Ok(Some(StepTable { labels, cells, frame, groupings: Default::default() }))
}

fn key(c: &Call) -> usize {
    c as *const Call as usize
}

fn selector_key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

fn binary_key(b: &BinaryExpr) -> usize {
    b as *const BinaryExpr as usize
}

/// How many evaluation steps a range query's frame has (at most 11,000: range queries check
/// that first); `None` for an instant query.
fn frame_steps(frame: Frame) -> Option<usize> {
    if frame.step_ms <= 0 {
        return None;
    }
    usize::try_from((frame.end_ms - frame.start_ms) / frame.step_ms).ok().map(|n| n + 1)
}

/// Output label sets unless the table of `labels.len()` series would exceed `max_cells` or
/// hold one label set twice (an error the step-by-step path reports at the steps where it
/// happens).
pub fn distinct_within(labels: Vec<Labels>, steps: usize, max_cells: usize) -> Option<Vec<Labels>> {
    if steps.checked_mul(labels.len())? > max_cells {
        return None;
    }
    let distinct = {
        let mut seen: HashSet<&Labels> = HashSet::with_capacity(labels.len());
        labels.iter().all(|l| seen.insert(l))
    };
    distinct.then_some(labels)
}

/// What a table is filled from, series by series.
enum Source<'e> {
    Call(Tabulation<'e>),
    Selector(Lookup<'e>),
}

impl Source<'_> {
    fn selector(&self) -> &VectorSelector {
        match self {
            Source::Call(t) => &t.ms.vs,
            Source::Selector(l) => l.vs,
        }
    }

    /// How far before each step's reference time samples are read.
    fn range_ms(&self) -> i64 {
        match self {
            Source::Call(t) => t.range_ms,
            Source::Selector(l) => l.lookback_ms,
        }
    }

    fn steps(&self) -> usize {
        match self {
            Source::Call(t) => t.steps(),
            Source::Selector(l) => l.at.len(),
        }
    }

    fn output_labels<'l>(
        &self,
        input: impl ExactSizeIterator<Item = &'l Labels>,
        memo: &LabelMemo,
        max_cells: usize,
    ) -> Option<Vec<Labels>> {
        if self.steps().checked_mul(input.len())? > max_cells {
            return None;
        }
        let labels = match self {
            Source::Call(t) => input.map(|l| if t.keep_name { l.clone() } else { memo.without_name(l) }).collect(),
            Source::Selector(_) => input.cloned().collect(),
        };
        distinct_within(labels, self.steps(), max_cells)
    }

    fn fill(&self, series: usize, samples: &[(i64, f64)], cells: &Cells) {
        match self {
            Source::Call(t) => t.fill(series, samples, cells),
            Source::Selector(l) => l.fill(series, samples, cells),
        }
    }

    /// True when [`Source::annotate`] needs the input label sets (`rate`, `increase`).
    fn notes_name_inputs(&self) -> bool {
        matches!(self, Source::Call(t) if t.counter.is_some())
    }

    /// The notes the step path gives for the same call, once its table of `series` input
    /// series is filled: `rate`/`increase` of a metric not named as a counter, for each input
    /// series with a point (`input` its label sets); `quantile_over_time` with a parameter
    /// outside [0, 1], when any series has a point.
    fn annotate(&self, input: &[Labels], series: usize, cells: &Cells, notes: &Annotations) {
        let Source::Call(t) = self else {
            return;
        };
        let at = Anchor::call_arg(t.call, 0);
        if t.counter.is_some() {
            for (i, l) in input.iter().enumerate() {
                let name = l.get(METRIC_NAME).unwrap_or("");
                if super::annotations::not_named_as_counter(name) && cells.row_has_value(i) {
                    notes.possible_non_counter(name, at);
                }
            }
        } else if t.call.func.name == "quantile_over_time" && (0..series).any(|i| cells.row_has_value(i)) {
            notes.check_quantile(t.param, at);
        }
    }
}

/// An instant vector selector ready to be evaluated at every step of the frame.
struct Lookup<'e> {
    vs: &'e VectorSelector,
    /// Per step, the selector's reference time.
    at: Vec<i64>,
    lookback_ms: i64,
}

impl<'e> Lookup<'e> {
    fn of(vs: &'e VectorSelector, frame: Frame) -> Option<Lookup<'e>> {
        let steps = frame_steps(frame)?;
        let at = (0..steps).map(|i| reference_time(vs, frame, frame.start_ms + i as i64 * frame.step_ms)).collect();
        Some(Lookup { vs, at, lookback_ms: frame.lookback_ms })
    }

    /// Per step, the latest of `series`' samples (time ordered) at or before the reference
    /// time, unless it is older than the lookback or a staleness marker (as
    /// [`Fetched::instant`]). Reference times never decrease, so the scan only moves forward.
    fn fill(&self, series: usize, samples: &[(i64, f64)], cells: &Cells) {
        let mut upto = 0;
        for (step, &at) in self.at.iter().enumerate() {
            while upto < samples.len() && samples[upto].0 <= at {
                upto += 1;
            }
            let Some(&(ts, v)) = upto.checked_sub(1).map(|i| &samples[i]) else {
                continue;
            };
            if ts > at.saturating_sub(self.lookback_ms) && !is_stale_nan(v) {
                cells.set(series, step, v);
            }
        }
    }
}

/// A range function call over a matrix selector whose scalar parameter, if any, is a literal,
/// ready to be evaluated at every step of the frame, one series at a time.
struct Tabulation<'e> {
    call: &'e Call,
    ms: &'e MatrixSelector,
    f: RangeFn,
    param: f64,
    keep_name: bool,
    /// `Some(is_rate)` for `rate` and `increase`.
    counter: Option<bool>,
    range_ms: i64,
    /// Per step: the selector's reference time, and the time `predict_linear` extrapolates to.
    at: Vec<i64>,
    intercept: Vec<i64>,
}

impl<'e> Tabulation<'e> {
    /// `None` when `c` is not such a call (or a rare one left to the general path).
    fn of(c: &'e Call, frame: Frame) -> Option<Tabulation<'e>> {
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
        let steps = frame_steps(frame)?;
        let pinned = ms.vs.at.is_some();
        let times = (0..steps).map(|step| frame.start_ms + step as i64 * frame.step_ms);
        Some(Tabulation {
            call: c,
            ms,
            f,
            param,
            keep_name: matches!(name, "last_over_time" | "first_over_time"),
            counter: match name {
                "rate" => Some(true),
                "increase" => Some(false),
                _ => None,
            },
            range_ms: ms.range.as_millis() as i64,
            at: times.clone().map(|t| reference_time(&ms.vs, frame, t)).collect(),
            intercept: times.map(|t| super::functions::intercept_time(frame, pinned, t)).collect(),
        })
    }

    fn steps(&self) -> usize {
        self.at.len()
    }

    /// Evaluates the call on `series`' samples (time ordered) at every step, into its row.
    fn fill(&self, series: usize, samples: &[(i64, f64)], cells: &Cells) {
        let samples: Cow<'_, [(i64, f64)]> = if samples.iter().any(|(_, v)| is_stale_nan(*v)) {
            Cow::Owned(samples.iter().copied().filter(|(_, v)| !is_stale_nan(*v)).collect())
        } else {
            Cow::Borrowed(samples)
        };
        // `rate` and `increase` walk every window for counter resets; a count of resets up to
        // each sample tells which windows have none, where the change is the last value minus
        // the first (exactly what the walk adds up then). The counts go into a buffer kept per
        // thread: a vector per series was 5 % of a streamed range query's CPU.
        RESETS_UPTO.with_borrow_mut(|resets_upto| {
            resets_upto.clear();
            if self.counter.is_some() {
                let mut count = 0u32;
                resets_upto.extend(samples.iter().enumerate().map(|(i, (_, v))| {
                    // The same comparison as the walk's: a NaN is never a reset.
                    count += u32::from(i > 0 && *v < samples[i - 1].1);
                    count
                }));
            }
            self.fill_windows(series, &samples, resets_upto, cells);
        });
    }

    /// [`Tabulation::fill`] once `samples` hold no staleness markers and `resets_upto` the
    /// counter resets up to each sample (when the call is `rate` or `increase`).
    fn fill_windows(&self, series: usize, samples: &[(i64, f64)], resets_upto: &[u32], cells: &Cells) {
        // Windows are (at - range, at]: `lo` is the first sample after the left bound, `hi` the
        // first after the right one. Reference times never decrease from step to step (`@`
        // pins them, `offset` shifts them all), so both only move forward.
        let (mut lo, mut hi) = (0, 0);
        for (step, (&at, &intercept_ms)) in self.at.iter().zip(&self.intercept).enumerate() {
            let start = at.saturating_sub(self.range_ms);
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
            let result = match self.counter {
                Some(is_rate) if window_samples.len() >= 2 && resets_upto[hi - 1] == resets_upto[lo] => {
                    let change = window_samples[window_samples.len() - 1].1 - window_samples[0].1;
                    Some(range_functions::extrapolate(window_samples, window, change, true, is_rate))
                }
                _ => (self.f)(window_samples, window, self.param, intercept_ms),
            };
            if let Some(v) = result {
                cells.set(series, step, v);
            }
        }
    }
}

thread_local! {
    /// [`Tabulation::fill`]'s counts of counter resets, reused from series to series.
    static RESETS_UPTO: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// The table of `source` from the fetched data, unless it would be too large or collide.
fn from_fetched(
    source: &Source<'_>,
    fetched: &Fetched,
    frame: Frame,
    memo: &LabelMemo,
    max_cells: usize,
    notes: &Annotations,
) -> Option<StepTable> {
    let input = fetched.series(source.selector()).ok()?;
    let labels = source.output_labels(input.iter().map(|s| &s.labels), memo, max_cells)?;
    let cells = Cells::new(input.len(), source.steps());
    for (si, series) in input.iter().enumerate() {
        source.fill(si, &series.samples, &cells);
    }
    let input_labels: Vec<Labels> =
        if source.notes_name_inputs() { input.iter().map(|s| s.labels.clone()).collect() } else { Vec::new() };
    source.annotate(&input_labels, input.len(), &cells, notes);
    Some(StepTable {
        labels,
        cells,
        frame,
        groupings: Default::default(),
    })
}
