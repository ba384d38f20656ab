//! Native histogram samples in queries.
//!
//! The store keeps native histograms ([`pharos_model::FloatHistogram`]) next to float samples,
//! and the main evaluator computes on floats only. Before a query is evaluated, every selector
//! it reads asks the store for histogram samples over the times it reads. When none has any
//! (every query over float series only), the query is evaluated as before. When some has, the
//! parts of the query that read them are evaluated here, step by step, on samples that are
//! either floats or histograms ([`NSample`]):
//!
//! - selectors (instant: per series the latest sample, float or histogram, within the
//!   lookback; a range selector at the top of an instant query: every sample of its range);
//! - range functions over a range selector or a subquery ([`RANGE_TO_HISTOGRAMS`], [`RANGE_TO_FLOATS`]):
//!   `rate`, `increase` and `delta` (Prometheus' `histogramRate` and its extrapolation),
//!   `irate`, `idelta`, `*_over_time` that read histograms, `changes`, `resets`; `timestamp`;
//! - `sum`, `avg`, `count`, `group`, `limitk`, `limit_ratio` and `count_values`, with
//!   `by`/`without`;
//! - binary operators with the float evaluator's vector matching ([`binary::vector_vector`] and
//!   [`binary::set_op`], generic over the sample kind): `on`/`ignoring`, `group_*`, `bool`, fill
//!   values, `and`/`or`/`unless`; a number or any scalar on one side;
//! - subqueries of any of these, `absent_over_time` of one, `sort_by_label`, `label_replace`,
//!   `label_join`;
//! - `histogram_count`, `histogram_sum`, `histogram_avg`, `histogram_stddev`,
//!   `histogram_stdvar`, `histogram_quantile(φ, …)` and `histogram_fraction(lower, upper, …)`
//!   (their numeric arguments any scalar), which turn histograms into floats.
//!
//! Once any selector of a query holds histograms, every selector of it is loaded here, so float
//! series are operands too; a part that reads no histograms at all (`vector(1)`, `scalar(x)`,
//! `sum(rate(y[5m]))`) is evaluated by a float [`Evaluator`] of its own ([`Native::delegate`]).
//! A query made only of these is answered here (histograms in Prometheus' JSON,
//! [`Value::Native`]). In a larger query, each float-valued part (a `histogram_*` call, `count`,
//! …) is evaluated here for every step and handed to the float evaluator as a series of its
//! own, behind a selector of a name only this module uses ([`WithVirtual`]), so everything
//! around it is the float evaluator's. An argument holding histograms of a function or
//! aggregation that ignores them (`abs`, `max_over_time`, `topk`, a comparison with a number,
//! …) becomes a selector of its floats, the histogram samples left out (a selector's turned into
//! staleness markers); under `absent`/`absent_over_time`, a selector of the presence of its
//! samples. Histogram samples anywhere else (`info()`, …) are refused with `400 bad_data` "… is
//! not supported yet", never evaluated as if the series had no samples.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pharos_model::otlp::is_stale_nan;
use pharos_model::{FloatHistogram, HistogramSeries, LabelMatcher, Labels, MetricsReader, Series};
use promql_parser::parser::token::{
    T_ADD, T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_DIV, T_EQLC, T_GROUP, T_LAND, T_LIMIT_RATIO, T_LIMITK, T_LOR, T_LUNLESS, T_MAX, T_MIN, T_MUL, T_NEQ, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUB, T_SUM, T_TOPK,
};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{BinaryExpr, Call, Expr, MatrixSelector, SubqueryExpr, VectorMatchCardinality, VectorSelector};

use super::annotations::{Anchor, Annotations, INFO, Level, Rendered, WARNING};
use crate::logql::template::go_quote;

use super::binary::{self, Derived, Element, Results};
use super::eval::{Evaluator, LabelMemo, check_unique, unwrap_parens};
use super::range_functions::{self, Window};
use super::selector::{Frame, MAX_SAMPLES, fetch_bounds, matcher_groups, reference_time, too_many_samples};
use super::value::{NativeSeries, RangeSeries, Sample, Value};
use crate::error::{Error, Result};

/// Prefix of the selector names under which results computed here reach the float evaluator
/// (only [`WithVirtual`] answers them; the series keep their own labels).
const VIRTUAL_PREFIX: &str = "__pharos_native_";

/// A sample of the native evaluator.
#[derive(Clone, Debug)]
enum NSample {
    F(f64),
    H(Arc<FloatHistogram>),
}

type NVector = Vec<(Labels, NSample)>;

/// One selected series with both kinds of samples, each in time order.
#[derive(Default)]
struct NSeries {
    labels: Labels,
    floats: Vec<(i64, f64)>,
    histograms: Vec<(i64, Arc<FloatHistogram>)>,
}

/// Whether a histogram sample is a staleness marker (Prometheus marks one by its sum).
fn is_stale(h: &FloatHistogram) -> bool {
    is_stale_nan(h.sum)
}

fn key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

/// What [`prepare`] decided.
pub(crate) enum Prepared {
    /// The whole query was evaluated here, with its annotations.
    Answer(Value, Rendered),
    /// The query with its `histogram_*` calls (and selectors whose histograms the function over
    /// them ignores) replaced by selectors of `series`, for the float evaluator to run over
    /// [`WithVirtual`]; `notes` are this module's annotations, rendered for the original query.
    Rewritten { expr: Expr, series: HashMap<String, Vec<Series>>, notes: Rendered },
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

/// The first and last time the node `target` of `expr` is evaluated at when `expr` is evaluated
/// at times in `span` (wider inside subqueries, as [`selectors`] walks them).
fn span_of(expr: &Expr, target: usize, frame: Frame, span: (i64, i64)) -> Option<(i64, i64)> {
    if expr as *const Expr as usize == target {
        return Some(span);
    }
    match expr {
        Expr::Paren(p) => span_of(&p.expr, target, frame, span),
        Expr::Unary(u) => span_of(&u.expr, target, frame, span),
        Expr::Binary(b) => span_of(&b.lhs, target, frame, span).or_else(|| span_of(&b.rhs, target, frame, span)),
        Expr::Aggregate(a) => a.param.as_deref().and_then(|p| span_of(p, target, frame, span)).or_else(|| span_of(&a.expr, target, frame, span)),
        Expr::Call(c) => c.args.args.iter().find_map(|a| span_of(a, target, frame, span)),
        Expr::Subquery(sq) => {
            let (range_ms, _) = super::subquery::range_and_step(sq);
            let first = super::subquery::reference_time(sq, frame, span.0);
            let last = super::subquery::reference_time(sq, frame, span.1);
            span_of(&sq.expr, target, frame, (first.saturating_sub(range_ms), last))
        }
        _ => None,
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

/// The float samples of the series matching any matcher group of `vs` in `[from, last]`.
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

/// `None` when no selector of `expr` reads a histogram sample (evaluate it as usual); else the
/// answer with its annotations, the rewritten query, or the error saying what is not supported.
/// `query` is the text of `expr`; `range_query` tells a range query (its steps are the frame's)
/// from an instant one.
pub(crate) fn prepare(reader: &dyn MetricsReader, query: &str, expr: &Expr, frame: Frame, range_query: bool) -> Result<Option<Prepared>> {
    let mut found = Vec::new();
    selectors(expr, frame, (frame.start_ms, frame.end_ms), &mut found);
    let mut histograms: HashMap<usize, Vec<HistogramSeries>> = HashMap::new();
    for (vs, bounds) in &found {
        let h = histograms_of(reader, vs, *bounds)?;
        if !h.is_empty() {
            histograms.insert(key(vs), h);
        }
    }
    if histograms.is_empty() {
        return Ok(None);
    }
    // Every selector is loaded (float-only ones too, as operands of what is evaluated here).
    let hist_keys: std::collections::HashSet<usize> = histograms.keys().copied().collect();
    let mut data: HashMap<usize, Vec<NSeries>> = HashMap::new();
    let mut samples = 0usize;
    for (vs, bounds) in &found {
        let histograms = histograms.remove(&key(vs)).unwrap_or_default();
        let mut series: BTreeMap<Labels, NSeries> = BTreeMap::new();
        for (labels, floats) in floats_of(reader, vs, *bounds)? {
            samples += floats.len();
            series.insert(labels.clone(), NSeries { labels, floats, histograms: Vec::new() });
        }
        for h in histograms {
            samples += h.samples.len();
            let s = series.entry(h.labels.clone()).or_insert_with(|| NSeries { labels: h.labels.clone(), ..Default::default() });
            s.histograms = h.samples;
        }
        if samples > MAX_SAMPLES {
            return Err(too_many_samples());
        }
        data.insert(key(vs), series.into_values().collect());
    }
    let ev = Native { reader, root: expr, frame, data, hist_keys, notes: Annotations::default(), memo: LabelMemo::default(), delegates: Default::default(), touched: Default::default() };
    let steps: Vec<i64> = if range_query {
        let mut steps = Vec::new();
        let mut t = frame.start_ms;
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
    let root = unwrap_parens(expr);
    // A range selector at the top of an instant query: its samples.
    if let Expr::MatrixSelector(m) = root
        && !range_query
    {
        let value = Value::Native { range: true, series: ev.range_samples(&m.vs, m.range.as_millis() as i64)? };
        return Ok(Some(Prepared::Answer(value, Rendered::default())));
    }
    // A subquery at the top of an instant query: the samples of its steps.
    if let Expr::Subquery(sq) = root
        && !range_query
        && ev.kind(&sq.expr).is_some()
    {
        let (_, found) = ev.subquery(sq, frame.start_ms)?;
        let series = found.into_iter().map(|s| NativeSeries { labels: s.labels, floats: s.floats, histograms: s.histograms }).collect();
        return Ok(Some(Prepared::Answer(Value::Native { range: true, series }, ev.render(query, expr))));
    }
    if let Some(kind) = ev.kind(root) {
        // Sorted by labels, as the float evaluator sorts, unless `sort_by_label` ordered them.
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut series: Vec<NativeSeries> = Vec::new();
        for &t in &steps {
            super::check_deadline()?;
            ev.memo.new_step();
            for (labels, s) in ev.eval(root, t)? {
                let i = *index.entry(labels.clone()).or_insert_with(|| {
                    series.push(NativeSeries { labels, floats: Vec::new(), histograms: Vec::new() });
                    series.len() - 1
                });
                match s {
                    NSample::F(v) => series[i].floats.push((t, v)),
                    NSample::H(h) => series[i].histograms.push((t, h)),
                }
            }
        }
        if range_query || !super::keeps_order(root) {
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        let value = match kind {
            Kind::Histograms => Value::Native { range: range_query, series },
            // Only floats: the float evaluator's own shape.
            Kind::Floats if range_query => Value::Matrix(series.into_iter().map(|s| RangeSeries { labels: s.labels, points: s.floats }).collect()),
            Kind::Floats => Value::Vector(
                series.into_iter().filter_map(|s| s.floats.first().map(|&(_, value)| Sample { labels: s.labels, value })).collect(),
            ),
        };
        return Ok(Some(Prepared::Answer(value, ev.render(query, expr))));
    }
    let mut virtual_series = HashMap::new();
    let rewritten = ev.rewrite(expr, &steps, &mut virtual_series)?;
    Ok(Some(Prepared::Rewritten { expr: rewritten, series: virtual_series, notes: ev.render(query, expr) }))
}

/// What an expression the native evaluator handles gives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Histograms (and floats of series that hold floats).
    Histograms,
    /// Floats only (a `histogram_*` call).
    Floats,
}

/// Functions that turn histograms into floats.
const TO_FLOAT: &[&str] = &[
    "histogram_count",
    "histogram_sum",
    "histogram_avg",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_quantile",
    "histogram_fraction",
];

struct Native<'r> {
    /// The store, for the parts of the query that read no histograms ([`Native::delegate`]).
    reader: &'r dyn MetricsReader,
    /// The whole query.
    root: &'r Expr,
    frame: Frame,
    /// The samples of every selector of the query, by the selector's address.
    data: HashMap<usize, Vec<NSeries>>,
    /// The selectors that read histogram samples.
    hist_keys: std::collections::HashSet<usize>,
    /// Warnings and infos.
    notes: Annotations,
    /// Label sets binary operators derive (matching signatures, result labels).
    memo: LabelMemo,
    /// Float evaluators of the parts that read no histograms, by the part's address.
    delegates: std::cell::RefCell<HashMap<usize, Evaluator>>,
    /// [`Native::touches`] by node address.
    touched: std::cell::RefCell<HashMap<usize, bool>>,
}

impl Element for (Labels, NSample) {
    type Value = NSample;
    fn labels(&self) -> &Labels {
        &self.0
    }
    fn value(&self) -> &NSample {
        &self.1
    }
    fn new(labels: Labels, value: NSample) -> Self {
        (labels, value)
    }
    fn filled(labels: Labels, value: f64) -> Self {
        (labels, NSample::F(value))
    }
}

/// Range functions over histograms (or floats) that give histograms.
const RANGE_TO_HISTOGRAMS: &[&str] = &["rate", "increase", "delta", "irate", "idelta", "sum_over_time", "avg_over_time", "last_over_time", "first_over_time"];
/// Range functions over histograms (or floats) that give floats.
const RANGE_TO_FLOATS: &[&str] = &["count_over_time", "present_over_time", "ts_of_last_over_time", "ts_of_first_over_time", "changes", "resets"];
/// Functions of floats that leave histogram samples out silently (Prometheus' `simpleFloatFunc`
/// and the other functions of instant vectors that read float values only).
const IGNORING_SILENTLY: &[&str] = &[
    "abs", "ceil", "floor", "exp", "sqrt", "ln", "log2", "log10", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh",
    "asinh", "acosh", "atanh", "rad", "deg", "sgn", "clamp", "clamp_min", "clamp_max", "round", "day_of_month", "day_of_week",
    "day_of_year", "days_in_month", "hour", "minute", "month", "year", "scalar", "sort", "sort_desc",
];
/// Range functions of floats that leave histogram samples out, with an info when a window held
/// both.
const IGNORING_IN_RANGES: &[&str] = &[
    "min_over_time", "max_over_time", "stddev_over_time", "stdvar_over_time", "quantile_over_time", "mad_over_time", "deriv",
    "predict_linear", "double_exponential_smoothing", "holt_winters",
];

fn number(e: &Expr) -> Option<f64> {
    match unwrap_parens(e) {
        Expr::NumberLiteral(n) => Some(n.val),
        Expr::Unary(u) => number(&u.expr).map(|v| -v),
        _ => None,
    }
}

impl Native<'_> {
    /// Whether `e` reads a selector holding histograms.
    /// Asked for every node at every step, so remembered by the node's address.
    fn touches(&self, e: &Expr) -> bool {
        let id = e as *const Expr as usize;
        if let Some(&t) = self.touched.borrow().get(&id) {
            return t;
        }
        let mut found = Vec::new();
        selectors(e, self.frame, (self.frame.start_ms, self.frame.end_ms), &mut found);
        let t = found.iter().any(|(vs, _)| self.hist_keys.contains(&key(vs)));
        self.touched.borrow_mut().insert(id, t);
        t
    }

    /// What a loaded selector gives: floats unless it selected histograms.
    fn kind_of_selector(&self, vs: &VectorSelector) -> Kind {
        if self.hist_keys.contains(&key(vs)) { Kind::Histograms } else { Kind::Floats }
    }

    /// What `e` gives when this evaluator handles all of it, else `None`.
    fn kind(&self, e: &Expr) -> Option<Kind> {
        // What reads no histograms is the float evaluator's ([`Native::delegate`]).
        if !matches!(e, Expr::VectorSelector(_)) && !self.touches(e) {
            return (e.value_type() == ValueType::Vector).then_some(Kind::Floats);
        }
        match e {
            Expr::Paren(p) => self.kind(&p.expr),
            Expr::VectorSelector(vs) => self.data.contains_key(&key(vs)).then(|| self.kind_of_selector(vs)),
            Expr::Call(c) if RANGE_TO_HISTOGRAMS.contains(&c.func.name) || RANGE_TO_FLOATS.contains(&c.func.name) => {
                let to_floats = RANGE_TO_FLOATS.contains(&c.func.name);
                match c.args.args.first().map(|a| unwrap_parens(a)) {
                    Some(Expr::MatrixSelector(m)) if self.data.contains_key(&key(&m.vs)) => Some(if to_floats { Kind::Floats } else { self.kind_of_selector(&m.vs) }),
                    Some(Expr::Subquery(sq)) => {
                        let inner = self.kind(&sq.expr)?;
                        Some(if to_floats || inner == Kind::Floats { Kind::Floats } else { Kind::Histograms })
                    }
                    _ => None,
                }
            }
            Expr::Call(c) if c.func.name == "absent_over_time" => match c.args.args.first().map(|a| unwrap_parens(a)) {
                Some(Expr::Subquery(sq)) => self.kind(&sq.expr).map(|_| Kind::Floats),
                _ => None,
            },
            Expr::Call(c) if matches!(c.func.name, "sort_by_label" | "sort_by_label_desc") => {
                let strings = c.args.args[1..].iter().all(|a| matches!(unwrap_parens(a), Expr::StringLiteral(_)));
                if strings { self.kind(c.args.args.first()?) } else { None }
            }
            Expr::Call(c) if matches!(c.func.name, "label_replace" | "label_join") => {
                let strings = c.args.args[1..].iter().all(|a| matches!(unwrap_parens(a), Expr::StringLiteral(_)));
                if strings { self.kind(c.args.args.first()?) } else { None }
            }
            Expr::Call(c) if c.func.name == "timestamp" => match c.args.args.first().map(|a| unwrap_parens(a)) {
                Some(Expr::VectorSelector(vs)) if self.data.contains_key(&key(vs)) => Some(Kind::Floats),
                Some(arg) => self.kind(arg).map(|_| Kind::Floats),
                None => None,
            },
            Expr::Call(c) if TO_FLOAT.contains(&c.func.name) => {
                let args = &c.args.args;
                let (numbers, vector) = args.split_at(args.len().checked_sub(1)?);
                (numbers.iter().all(|a| self.is_scalar(a)) && vector.first().and_then(|v| self.kind(v)) == Some(Kind::Histograms))
                    .then_some(Kind::Floats)
            }
            Expr::Aggregate(a) if a.op.id() == T_COUNT_VALUES => {
                let is_string = matches!(a.param.as_deref().map(unwrap_parens), Some(Expr::StringLiteral(_)));
                (is_string && self.kind(&a.expr).is_some()).then_some(Kind::Floats)
            }
            Expr::Aggregate(a) if [T_LIMITK, T_LIMIT_RATIO].contains(&a.op.id()) && a.param.as_deref().is_some_and(|p| self.is_scalar(p)) => {
                self.kind(&a.expr)
            }
            Expr::Aggregate(a) if a.param.is_none() && [T_SUM, T_AVG, T_COUNT, T_GROUP].contains(&a.op.id()) => {
                let inner = self.kind(&a.expr)?;
                Some(if [T_COUNT, T_GROUP].contains(&a.op.id()) { Kind::Floats } else { inner })
            }
            Expr::Binary(b) => {
                let floats_only = |k: Kind| if b.return_bool() { Kind::Floats } else { k };
                match (self.is_scalar(&b.lhs), self.is_scalar(&b.rhs)) {
                    (true, true) => None,
                    (true, false) => self.kind(&b.rhs).map(floats_only),
                    (false, true) => self.kind(&b.lhs).map(floats_only),
                    (false, false) => {
                        let (l, r) = (self.kind(&b.lhs)?, self.kind(&b.rhs)?);
                        let both_floats = if l == Kind::Floats && r == Kind::Floats { Kind::Floats } else { Kind::Histograms };
                        Some(match b.op.id() {
                            T_LAND | T_LUNLESS => l,
                            op if binary::is_comparison(op) => floats_only(l),
                            _ => both_floats,
                        })
                    }
                }
            }
            _ => None,
        }
    }

    /// `e` with every `histogram_*` call over histograms replaced by a selector of its results
    /// at `steps` (added to `out`); an error where histograms reach anything else.
    fn rewrite(&self, e: &Expr, steps: &[i64], out: &mut HashMap<String, Vec<Series>>) -> Result<Expr> {
        if !self.touches(e) {
            return Ok(e.clone());
        }
        Ok(match e {
            Expr::Call(_) | Expr::Aggregate(_) if self.kind(e) == Some(Kind::Floats) => {
                self.steps_to_virtual(e, steps, out, |s| if let NSample::F(v) = s { Some(v) } else { None })?
            }
            // `absent` and `absent_over_time` see whether there are samples, of either kind: a
            // selector becomes one of its presence (keeping its matchers, from which `absent`
            // takes its labels), an expression evaluated here the presence of its results.
            Expr::Call(c) if matches!(c.func.name, "absent" | "absent_over_time") && c.args.args.len() == 1 => {
                let arg = &c.args.args[0];
                let new_arg = if self.is_leaf(arg) {
                    self.presence_of_leaf(arg, out)?
                } else if self.kind(arg).is_some() && c.func.name == "absent" {
                    self.steps_to_virtual(arg, steps, out, |_| Some(1.0))?
                } else {
                    self.rewrite(arg, steps, out)?
                };
                let mut copy = c.clone();
                copy.args.args = vec![Box::new(new_arg)];
                Expr::Call(copy)
            }
            // Children are rewritten from the original tree (selectors are known by address),
            // then put into a copy of the node.
            Expr::Paren(p) => {
                let mut copy = p.clone();
                copy.expr = Box::new(self.rewrite(&p.expr, steps, out)?);
                Expr::Paren(copy)
            }
            Expr::Unary(u) => {
                let mut copy = u.clone();
                copy.expr = Box::new(self.rewrite(&u.expr, steps, out)?);
                Expr::Unary(copy)
            }
            Expr::Aggregate(a) if [T_MIN, T_MAX, T_TOPK, T_BOTTOMK, T_QUANTILE, T_STDDEV, T_STDVAR].contains(&a.op.id()) && self.ignorable(&a.expr) => {
                let (floats, ignored) = self.ignoring_histograms(&a.expr, steps, out)?;
                if ignored {
                    let at = Anchor::aggregate_param(a);
                    self.notes.add(Level::Info, format!("{INFO}: ignored histogram in {} aggregation", a.op.to_string().to_lowercase()), at);
                }
                let mut a2 = a.clone();
                a2.expr = Box::new(floats);
                if let Some(p) = &a.param {
                    a2.param = Some(Box::new(self.rewrite(p, steps, out)?));
                }
                Expr::Aggregate(a2)
            }
            Expr::Binary(b)
                if binary::is_comparison(b.op.id())
                    && ((number(&b.lhs).is_some() && self.ignorable(&b.rhs)) || (number(&b.rhs).is_some() && self.ignorable(&b.lhs))) =>
            {
                let vector = if number(&b.lhs).is_some() { &b.rhs } else { &b.lhs };
                let (floats, ignored) = self.ignoring_histograms(vector, steps, out)?;
                if ignored {
                    self.notes.add(Level::Info, format!("{INFO}: incompatible sample types encountered for binary operator"), self.leaf_anchor());
                }
                let mut b2 = b.clone();
                if number(&b.lhs).is_some() {
                    b2.rhs = Box::new(floats);
                } else {
                    b2.lhs = Box::new(floats);
                }
                Expr::Binary(b2)
            }
            Expr::Binary(b) => {
                let mut copy = b.clone();
                copy.lhs = Box::new(self.rewrite(&b.lhs, steps, out)?);
                copy.rhs = Box::new(self.rewrite(&b.rhs, steps, out)?);
                Expr::Binary(copy)
            }
            Expr::Call(c) if IGNORING_SILENTLY.contains(&c.func.name) || IGNORING_IN_RANGES.contains(&c.func.name) => {
                let mut c2 = c.clone();
                let mut args = Vec::new();
                for (i, a) in c.args.args.iter().enumerate() {
                    if self.ignorable(a) {
                        if IGNORING_IN_RANGES.contains(&c.func.name)
                            && let Some(metric) = self.mixed_metric(a)
                        {
                            let message = format!("{INFO}: ignored histograms in a range containing both floats and histograms for metric name {}", go_quote(&metric));
                            self.notes.add(Level::Info, message, Anchor::call_arg(c, i));
                        }
                        args.push(Box::new(self.ignoring_histograms(a, steps, out)?.0));
                    } else {
                        args.push(Box::new(self.rewrite(a, steps, out)?));
                    }
                }
                c2.args.args = args;
                Expr::Call(c2)
            }
            Expr::Aggregate(a) => {
                let mut copy = a.clone();
                copy.expr = Box::new(self.rewrite(&a.expr, steps, out)?);
                if let Some(p) = &a.param {
                    copy.param = Some(Box::new(self.rewrite(p, steps, out)?));
                }
                Expr::Aggregate(copy)
            }
            Expr::Call(c) => {
                let mut copy = c.clone();
                copy.args.args = c.args.args.iter().map(|a| self.rewrite(a, steps, out).map(Box::new)).collect::<Result<_>>()?;
                Expr::Call(copy)
            }
            // The inner expression of a subquery runs at the subquery's steps, not the query's.
            Expr::Subquery(sq) => {
                let mut copy = sq.clone();
                copy.expr = Box::new(self.rewrite(&sq.expr, &self.subquery_steps(sq, steps)?, out)?);
                Expr::Subquery(copy)
            }
            _ => {
                let mut found = Vec::new();
                selectors(e, self.frame, (self.frame.start_ms, self.frame.end_ms), &mut found);
                let vs = found.iter().find(|(vs, _)| self.hist_keys.contains(&key(vs))).map(|(vs, _)| vs.to_string()).unwrap_or_default();
                return Err(Error::unsupported(format!("evaluating native histogram samples (of series selected by `{vs}`) in `{e}`")));
            }
        })
    }

    /// The selector of a leaf (a vector or range selector, in parentheses or not) holding
    /// histograms.
    fn leaf_selector<'e>(&self, e: &'e Expr) -> Option<&'e VectorSelector> {
        match unwrap_parens(e) {
            Expr::VectorSelector(vs) if self.hist_keys.contains(&key(vs)) => Some(vs),
            Expr::MatrixSelector(m) if self.hist_keys.contains(&key(&m.vs)) => Some(&m.vs),
            _ => None,
        }
    }

    fn is_leaf(&self, e: &Expr) -> bool {
        self.leaf_selector(e).is_some()
    }

    fn leaf_has_histograms(&self, e: &Expr) -> bool {
        self.leaf_selector(e).and_then(|vs| self.data.get(&key(vs))).is_some_and(|s| s.iter().any(|s| !s.histograms.is_empty()))
    }

    /// The metric name of a series of the leaf `e` holding both floats and histograms.
    fn mixed_metric(&self, e: &Expr) -> Option<String> {
        let series = self.data.get(&key(self.leaf_selector(e)?))?;
        series.iter().find(|s| !s.floats.is_empty() && !s.histograms.is_empty()).map(|s| s.labels.metric_name().unwrap_or("").to_string())
    }

    /// No position: a note about a comparison is rendered without one.
    fn leaf_anchor(&self) -> Anchor {
        Anchor::none()
    }

    /// A selector of the values `value` gives to the results of `e` at every step (added to
    /// `out`): per series a point at each step it has one, and a staleness marker at each step it
    /// has none after one it had, so that a selector does not look back to an earlier step.
    fn steps_to_virtual(&self, e: &Expr, steps: &[i64], out: &mut HashMap<String, Vec<Series>>, value: impl Fn(NSample) -> Option<f64>) -> Result<Expr> {
        let stale = f64::from_bits(pharos_model::otlp::STALE_NAN_BITS);
        let mut by_labels: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
        // Each series holds a slot per step: the slots count as the points of a subquery.
        let mut budget = super::subquery::PointBudget::new();
        for (i, &t) in steps.iter().enumerate() {
            super::check_deadline()?;
            self.memo.new_step();
            for (labels, s) in self.eval(e, t)? {
                if let Some(v) = value(s) {
                    let slots = match by_labels.entry(labels) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            budget.take(steps.len())?;
                            e.insert(vec![None; steps.len()])
                        }
                    };
                    slots[i] = Some(v);
                }
            }
        }
        let series = by_labels
            .into_iter()
            .map(|(labels, values)| {
                let mut samples = Vec::new();
                for (i, v) in values.iter().enumerate() {
                    match v {
                        Some(v) => samples.push((steps[i], *v)),
                        None if i > 0 && values[i - 1].is_some() => samples.push((steps[i], stale)),
                        None => {}
                    }
                }
                Series { labels, samples }
            })
            .collect();
        let name = format!("{VIRTUAL_PREFIX}{}", out.len());
        out.insert(name.clone(), series);
        super::parse(&name)
    }

    /// Whether `e` is a scalar this module takes from the float evaluator (a number, `time()`,
    /// `scalar(…)` of floats, …).
    fn is_scalar(&self, e: &Expr) -> bool {
        e.value_type() == ValueType::Scalar && !self.touches(e)
    }

    /// `e`, which reads no histograms, evaluated at `t` by the float evaluator (one per
    /// expression, over the samples its selectors read in the query's frame).
    fn delegate(&self, e: &Expr, t: i64) -> Result<Value> {
        let id = e as *const Expr as usize;
        if !self.delegates.borrow().contains_key(&id) {
            let frame = self.frame;
            let span = span_of(self.root, id, frame, (frame.start_ms, frame.end_ms)).unwrap_or((frame.start_ms, frame.end_ms));
            let ev = Evaluator {
                frame,
                fetched: super::selector::Fetched::load_spanned(self.reader, e, frame, span)?,
                memo: Default::default(),
                tables: Default::default(),
                annotations: Default::default(),
            };
            self.delegates.borrow_mut().insert(id, ev);
        }
        let delegates = self.delegates.borrow();
        let ev = &delegates[&id];
        ev.memo.new_step();
        ev.eval(e, t)
    }

    /// This module's annotations and those of the float evaluators it delegated to.
    fn render(self, query: &str, expr: &Expr) -> Rendered {
        let mut out = self.notes.render(query, expr);
        for (_, ev) in self.delegates.into_inner() {
            out.merge(ev.annotations.render(query, expr));
        }
        out
    }

    /// The times the inner expression of `sq` is evaluated at when the query evaluates at
    /// `steps`, in order.
    /// More times than a subquery may hold points is refused as too many samples.
    fn subquery_steps(&self, sq: &SubqueryExpr, steps: &[i64]) -> Result<Vec<i64>> {
        super::subquery::check_step_count(sq)?;
        let (range_ms, step_ms) = super::subquery::range_and_step(sq);
        let mut inner = std::collections::BTreeSet::new();
        for &t in steps {
            inner.extend(super::subquery::steps(super::subquery::reference_time(sq, self.frame, t), range_ms, step_ms));
            super::subquery::PointBudget::check(inner.len())?;
        }
        Ok(inner.into_iter().collect())
    }

    /// Whether `e`, read by a function or aggregation of floats, is something
    /// [`Native::ignoring_histograms`] turns into floats: a leaf, an expression this module
    /// evaluates, or a subquery of one.
    fn ignorable(&self, e: &Expr) -> bool {
        if !self.touches(e) {
            return false;
        }
        match unwrap_parens(e) {
            Expr::Subquery(sq) => self.kind(&sq.expr).is_some(),
            inner => self.is_leaf(inner) || self.kind(inner).is_some(),
        }
    }

    /// `e` (one [`Native::ignorable`] accepts) as a selector of its float samples, histogram
    /// samples left out; and whether there were any.
    fn ignoring_histograms(&self, e: &Expr, steps: &[i64], out: &mut HashMap<String, Vec<Series>>) -> Result<(Expr, bool)> {
        if self.is_leaf(e) {
            return Ok((self.float_only(e, out)?, self.leaf_has_histograms(e)));
        }
        let ignored = std::cell::Cell::new(false);
        let floats_of = |s: NSample| match s {
            NSample::F(v) => Some(v),
            NSample::H(_) => {
                ignored.set(true);
                None
            }
        };
        let expr = match unwrap_parens(e) {
            Expr::Subquery(sq) => {
                let mut copy = sq.clone();
                copy.expr = Box::new(self.steps_to_virtual(&sq.expr, &self.subquery_steps(sq, steps)?, out, floats_of)?);
                Expr::Subquery(copy)
            }
            inner => self.steps_to_virtual(inner, steps, out, floats_of)?,
        };
        Ok((expr, ignored.get()))
    }

    /// The leaf `e` as a selector of its float samples only, each histogram sample of a series
    /// a staleness marker instead (so that an instant selector does not look back past it to an
    /// older float, and range windows leave it out): functions that ignore histograms.
    fn float_only(&self, e: &Expr, out: &mut HashMap<String, Vec<Series>>) -> Result<Expr> {
        self.leaf_as_virtual(e, out, false)
    }

    /// The leaf `e` as a selector of the presence of its samples: each float or histogram
    /// sample a 1 (staleness markers kept), with the leaf's own matchers besides the name (from
    /// which `absent` takes its labels).
    fn presence_of_leaf(&self, e: &Expr, out: &mut HashMap<String, Vec<Series>>) -> Result<Expr> {
        self.leaf_as_virtual(e, out, true)
    }

    /// [`Native::float_only`] (`presence` false) or [`Native::presence_of_leaf`].
    fn leaf_as_virtual(&self, e: &Expr, out: &mut HashMap<String, Vec<Series>>, presence: bool) -> Result<Expr> {
        let vs = self.leaf_selector(e).ok_or_else(|| Error::Internal("not a selector".into()))?;
        if presence && !vs.matchers.or_matchers.is_empty() {
            return Err(Error::unsupported(format!("`absent` over `{vs}` (native histograms and `or` matchers)")));
        }
        let stale = f64::from_bits(pharos_model::otlp::STALE_NAN_BITS);
        let float = |v: f64| if presence && !is_stale_nan(v) { 1.0 } else { v };
        let histogram = |h: &FloatHistogram| if presence && !is_stale(h) { 1.0 } else { stale };
        let series = self
            .series(vs)?
            .iter()
            .map(|s| {
                let mut samples: Vec<(i64, f64)> =
                    s.floats.iter().map(|(t, v)| (*t, float(*v))).chain(s.histograms.iter().map(|(t, h)| (*t, histogram(h)))).collect();
                samples.sort_by_key(|(t, _)| *t);
                Series { labels: s.labels.clone(), samples }
            })
            .collect();
        let name = format!("{VIRTUAL_PREFIX}{}", out.len());
        out.insert(name.clone(), series);
        let Expr::VectorSelector(mut virtual_vs) = super::parse(&name)? else {
            return Err(Error::Internal("a name did not parse as a selector".into()));
        };
        if presence {
            virtual_vs.matchers.matchers.extend(vs.matchers.matchers.iter().filter(|m| m.name != pharos_model::METRIC_NAME).cloned());
        }
        virtual_vs.offset = vs.offset.clone();
        virtual_vs.at = vs.at.clone();
        Ok(match unwrap_parens(e) {
            Expr::MatrixSelector(m) => Expr::MatrixSelector(MatrixSelector { vs: virtual_vs, range: m.range }),
            _ => Expr::VectorSelector(virtual_vs),
        })
    }

    /// Every sample of `vs` in the range `range_ms` ending at its reference time for the frame's
    /// start (a range selector in an instant query), staleness markers left out.
    fn range_samples(&self, vs: &VectorSelector, range_ms: i64) -> Result<Vec<NativeSeries>> {
        let at = reference_time(vs, self.frame, self.frame.start_ms);
        let after = at.saturating_sub(range_ms);
        Ok(self
            .series(vs)?
            .iter()
            .filter_map(|s| {
                let out = NativeSeries {
                    labels: s.labels.clone(),
                    floats: s.floats.iter().copied().filter(|(t, v)| *t > after && *t <= at && !is_stale_nan(*v)).collect(),
                    histograms: s.histograms.iter().filter(|(t, h)| *t > after && *t <= at && !is_stale(h)).cloned().collect(),
                };
                (!out.floats.is_empty() || !out.histograms.is_empty()).then_some(out)
            })
            .collect())
    }

    /// Per series of `vs` the latest sample (float or histogram) within the lookback of its
    /// reference time for `t`, with its timestamp; none where that is a staleness marker.
    fn latest(&self, vs: &VectorSelector, t: i64) -> Result<Vec<(Labels, i64, NSample)>> {
        let at = reference_time(vs, self.frame, t);
        let after = at.saturating_sub(self.frame.lookback_ms);
        let mut out = Vec::new();
        for s in self.series(vs)? {
            let f = s.floats[..s.floats.partition_point(|(ts, _)| *ts <= at)].last().filter(|(ts, _)| *ts > after);
            let h = s.histograms[..s.histograms.partition_point(|(ts, _)| *ts <= at)].last().filter(|(ts, _)| *ts > after);
            // The later sample of the two kinds is the series' latest; none when that one is a
            // staleness marker.
            let latest = match (f, h) {
                (Some(&(ft, v)), h) if h.is_none_or(|(ht, _)| ft > *ht) => (!is_stale_nan(v)).then_some((ft, NSample::F(v))),
                (_, Some((ht, h))) => (!is_stale(h)).then(|| (*ht, NSample::H(h.clone()))),
                _ => None,
            };
            if let Some((ts, sample)) = latest {
                out.push((s.labels.clone(), ts, sample));
            }
        }
        Ok(out)
    }

    /// Notes a warning about the metric `metric` for the first argument of `c`.
    fn warn(&self, c: &Call, what: &str, metric: &str) {
        self.notes.add(Level::Warning, format!("{WARNING}: {what} {}", go_quote(metric)), Anchor::call_arg(c, 0));
    }

    /// The range function `c` over one series' window: its floats and its histograms (not
    /// staleness markers, at least one sample), as Prometheus computes it on mixed windows.
    fn range_function(&self, c: &Call, s: &NSeries, floats: &[(i64, f64)], hists: &[&(i64, Arc<FloatHistogram>)], w: Window) -> Option<NSample> {
        use pharos_model::histogram::CounterResetHint;
        let metric = s.labels.metric_name().unwrap_or("");
        let mixed = || {
            self.warn(c, "encountered a mix of histograms and floats for metric name", metric);
            None
        };
        let gauge = |h: &FloatHistogram| h.counter_reset_hint == CounterResetHint::Gauge;
        // Every sample in time order, of either kind.
        let mut all: Vec<(i64, NSample)> =
            floats.iter().map(|(ts, v)| (*ts, NSample::F(*v))).chain(hists.iter().map(|(ts, h)| (*ts, NSample::H(h.clone())))).collect();
        all.sort_by_key(|(ts, _)| *ts);
        let name = c.func.name;
        match name {
            "rate" | "increase" | "delta" => {
                let (is_counter, is_rate) = match name {
                    "rate" => (true, true),
                    "increase" => (true, false),
                    _ => (false, false),
                };
                match (floats.is_empty(), hists.is_empty()) {
                    (false, true) => range_functions::extrapolated_rate(floats, w, is_counter, is_rate).map(NSample::F),
                    (true, false) if hists.len() >= 2 => {
                        if is_counter && hists.iter().any(|(_, h)| gauge(h)) {
                            self.warn(c, "this native histogram metric is not a counter:", metric);
                        }
                        let gauge_at_both_ends = gauge(&hists[0].1) && gauge(&hists[hists.len() - 1].1);
                        if !is_counter && !gauge_at_both_ends {
                            self.warn(c, "this native histogram metric is not a gauge:", metric);
                        }
                        if hists.iter().any(|(_, h)| h.uses_custom_buckets() != hists[0].1.uses_custom_buckets()) {
                            self.warn(c, "vector contains a mix of histograms with exponential and custom buckets schemas for metric name", metric);
                            return None;
                        }
                        let mut reconciled = Vec::new();
                        let rate = histogram_rate(hists, w, is_counter, is_rate, &mut reconciled);
                        for operation in reconciled {
                            self.reconciled(Anchor::call_arg(c, 0), operation);
                        }
                        rate.map(|h| NSample::H(Arc::new(h)))
                    }
                    (false, false) => mixed(),
                    _ => None,
                }
            }
            "irate" | "idelta" => {
                let [.., (t1, before), (t2, last)] = all.as_slice() else { return None };
                match (before, last) {
                    (NSample::F(b), NSample::F(l)) => range_functions::instant_value(&[(*t1, *b), (*t2, *l)], name == "irate").map(NSample::F),
                    (NSample::H(b), NSample::H(l)) => {
                        // `irate` over a reset takes the last histogram alone, whatever the
                        // buckets of the one before (a change between exponential and custom
                        // buckets is one).
                        let reset = name == "irate" && l.detect_reset(b);
                        if !reset && b.uses_custom_buckets() != l.uses_custom_buckets() {
                            self.warn(c, "vector contains a mix of histograms with exponential and custom buckets schemas for metric name", metric);
                            return None;
                        }
                        if name == "irate" && (gauge(b) || gauge(l)) {
                            self.warn(c, "this native histogram metric is not a counter:", metric);
                        }
                        if name == "idelta" && !(gauge(b) && gauge(l)) {
                            self.warn(c, "this native histogram metric is not a gauge:", metric);
                        }
                        if !reset && l.reconciles_custom_buckets(b) {
                            self.reconciled(Anchor::call_arg(c, 0), "subtraction");
                        }
                        let mut h = if reset { (**l).clone() } else { l.sub(b).ok()? };
                        if name == "irate" {
                            h = h.div((t2 - t1) as f64 / 1000.0);
                        }
                        h.counter_reset_hint = CounterResetHint::Gauge;
                        Some(NSample::H(Arc::new(h.compact())))
                    }
                    _ => mixed(),
                }
            }
            "sum_over_time" | "avg_over_time" => {
                if !floats.is_empty() && !hists.is_empty() {
                    return mixed();
                }
                let n = all.len() as f64;
                let summed = sum(all.iter().map(|(_, s)| s));
                if summed.reconciled {
                    self.reconciled(Anchor::call_arg(c, 0), "aggregation");
                }
                if summed.incompatible {
                    self.warn(c, "vector contains a mix of histograms with exponential and custom buckets schemas for metric name", metric);
                }
                match summed.value? {
                    NSample::F(v) if name == "avg_over_time" => Some(NSample::F(v / n)),
                    NSample::H(h) if name == "avg_over_time" => Some(NSample::H(Arc::new(h.div(n)))),
                    other => Some(other),
                }
            }
            "last_over_time" => all.last().map(|(_, s)| s.clone()),
            "first_over_time" => all.first().map(|(_, s)| s.clone()),
            "count_over_time" => Some(NSample::F(all.len() as f64)),
            "present_over_time" => Some(NSample::F(1.0)),
            "ts_of_last_over_time" => all.last().map(|(ts, _)| NSample::F(*ts as f64 / 1000.0)),
            "ts_of_first_over_time" => all.first().map(|(ts, _)| NSample::F(*ts as f64 / 1000.0)),
            "changes" | "resets" => {
                let mut n = 0;
                for pair in all.windows(2) {
                    let counted = match (&pair[0].1, &pair[1].1) {
                        (NSample::F(a), NSample::F(b)) if name == "changes" => a != b && !(a.is_nan() && b.is_nan()),
                        (NSample::F(a), NSample::F(b)) => b < a,
                        (NSample::H(a), NSample::H(b)) if name == "changes" => !same_histogram(a, b),
                        (NSample::H(a), NSample::H(b)) => b.detect_reset(a),
                        // A float followed by a histogram, or the other way: a change, and a reset.
                        _ => true,
                    };
                    n += usize::from(counted);
                }
                Some(NSample::F(n as f64))
            }
            _ => None,
        }
    }

    /// The series a subquery gives when the query evaluates at `t`: the inner expression at
    /// every multiple of the step in its window, and that window.
    fn subquery(&self, sq: &SubqueryExpr, t: i64) -> Result<(Window, Vec<NSeries>)> {
        let at = super::subquery::reference_time(sq, self.frame, t);
        let (range_ms, step_ms) = super::subquery::range_and_step(sq);
        let mut by_labels: BTreeMap<Labels, NSeries> = BTreeMap::new();
        let mut budget = super::subquery::PointBudget::new();
        super::subquery::check_step_count(sq)?;
        for ts in super::subquery::steps(at, range_ms, step_ms) {
            super::check_deadline()?;
            let samples = self.eval(&sq.expr, ts)?;
            budget.take(samples.len())?;
            for (labels, sample) in samples {
                let s = by_labels.entry(labels.clone()).or_insert_with(|| NSeries { labels, ..Default::default() });
                match sample {
                    NSample::F(v) => s.floats.push((ts, v)),
                    NSample::H(h) => s.histograms.push((ts, h)),
                }
            }
        }
        Ok((Window { start_ms: at.saturating_sub(range_ms), end_ms: at }, by_labels.into_values().collect()))
    }

    /// A binary operation, as Prometheus' `VectorscalarBinop` (one side a number) and
    /// `VectorBinop` (vector matching, `group_*`, set operators) evaluate it on both kinds of
    /// samples.
    fn binary(&self, b: &BinaryExpr, t: i64) -> Result<NVector> {
        let (op, return_bool) = (b.op.id(), b.return_bool());
        let modifier = b.modifier.as_ref();
        let fill = modifier.map(|m| m.fill_values.clone()).unwrap_or_default();
        if (fill.lhs.is_some() || fill.rhs.is_some()) && matches!(op, T_LAND | T_LOR | T_LUNLESS) {
            return Err(Error::BadData("filling in missing series not allowed for set operators".into()));
        }
        if self.is_scalar(&b.lhs) || self.is_scalar(&b.rhs) {
            let on_left = self.is_scalar(&b.lhs);
            let k = match self.delegate(if on_left { &b.lhs } else { &b.rhs }, t)? {
                Value::Scalar(k) => k,
                other => return Err(Error::Internal(format!("a scalar operand gave a {}", other.type_name()))),
            };
            let drop_name = binary::drops_name(op) || return_bool;
            let mut out = Vec::new();
            for (labels, s) in self.eval(if on_left { &b.rhs } else { &b.lhs }, t)? {
                let v = match s {
                    NSample::F(v) => binary::scalar_element(op, v, k, on_left, return_bool)?.map(NSample::F),
                    NSample::H(h) if op == T_MUL => Some(NSample::H(Arc::new(h.mul(k)))),
                    NSample::H(h) if op == T_DIV && !on_left => Some(NSample::H(Arc::new(h.div(k)))),
                    NSample::H(_) => self.incompatible(),
                };
                if let Some(v) = v {
                    out.push((if drop_name { labels.without_name() } else { labels }, v));
                }
            }
            return check_unique(out);
        }
        let (lhs, rhs) = (self.eval(&b.lhs, t)?, self.eval(&b.rhs, t)?);
        let matching = modifier.and_then(|m| m.matching.clone());
        let derived = Derived::new(&self.memo, b, &matching);
        if matches!(op, T_LAND | T_LOR | T_LUNLESS) {
            return Ok(binary::set_op(op, lhs, rhs, &derived));
        }
        let card = modifier.map(|m| m.card.clone()).unwrap_or(VectorMatchCardinality::OneToOne);
        let out = binary::vector_vector(lhs, rhs, &derived, &card, &fill, Results::of(op, return_bool), |l, r| self.element(op, return_bool, l, r))?;
        check_unique(out)
    }

    /// Prometheus' `vectorElemBinop` on two matched samples: the result, `None` where a
    /// comparison drops it or the kinds do not combine (an info then).
    fn element(&self, op: u16, return_bool: bool, l: &NSample, r: &NSample) -> Result<Option<NSample>> {
        Ok(match (l, r) {
            (NSample::F(x), NSample::F(y)) => binary::pair_element(op, *x, *y, return_bool)?.map(NSample::F),
            (NSample::H(x), NSample::H(y)) => match op {
                T_ADD | T_SUB if x.reconciles_custom_buckets(y) => {
                    self.reconciled(Anchor::none(), if op == T_ADD { "addition" } else { "subtraction" });
                    self.histograms_combined(op, x, y)
                }
                T_ADD | T_SUB => self.histograms_combined(op, x, y),
                // Histograms compare for (in)equality only; the left one is kept.
                T_EQLC | T_NEQ => {
                    let holds = same_histogram(x, y) == (op == T_EQLC);
                    if return_bool { Some(NSample::F(if holds { 1.0 } else { 0.0 })) } else { holds.then(|| l.clone()) }
                }
                _ => self.incompatible(),
            },
            (NSample::H(x), NSample::F(y)) if op == T_MUL => Some(NSample::H(Arc::new(x.mul(*y)))),
            (NSample::H(x), NSample::F(y)) if op == T_DIV => Some(NSample::H(Arc::new(x.div(*y)))),
            (NSample::F(x), NSample::H(y)) if op == T_MUL => Some(NSample::H(Arc::new(y.mul(*x)))),
            // What Prometheus cannot combine (a float and a histogram added, a histogram times
            // a histogram, …) gives nothing, with an info.
            _ => self.incompatible(),
        })
    }

    /// `x + y` or `x - y` (a gauge), `None` when exponential and custom buckets mix.
    fn histograms_combined(&self, op: u16, x: &FloatHistogram, y: &FloatHistogram) -> Option<NSample> {
        if op == T_ADD {
            return x.add(y).ok().map(|h| NSample::H(Arc::new(h)));
        }
        x.sub(y).ok().map(|mut h| {
            h.counter_reset_hint = pharos_model::histogram::CounterResetHint::Gauge;
            NSample::H(Arc::new(h))
        })
    }

    /// Prometheus' info for custom buckets of different bounds reconciled during `operation`.
    fn reconciled(&self, at: Anchor, operation: &str) {
        self.notes.add(Level::Info, format!("{INFO}: mismatched custom buckets were reconciled during {operation}"), at);
    }

    fn incompatible(&self) -> Option<NSample> {
        self.notes.add(Level::Info, format!("{INFO}: incompatible sample types encountered for binary operator"), Anchor::none());
        None
    }

    fn series(&self, vs: &VectorSelector) -> Result<&[NSeries]> {
        self.data.get(&key(vs)).map(Vec::as_slice).ok_or_else(|| Error::Internal(format!("selector {vs} was not loaded")))
    }

    /// Evaluates `e` (one [`Native::kind`] accepts) at `t`.
    fn eval(&self, e: &Expr, t: i64) -> Result<NVector> {
        if !matches!(e, Expr::VectorSelector(_)) && !self.touches(e) {
            return match self.delegate(e, t)? {
                Value::Vector(v) => Ok(v.into_iter().map(|s| (s.labels, NSample::F(s.value))).collect()),
                other => Err(Error::Internal(format!("expected a vector, got a {}", other.type_name()))),
            };
        }
        match e {
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::VectorSelector(vs) => Ok(self.latest(vs, t)?.into_iter().map(|(labels, _, s)| (labels, s)).collect()),
            Expr::Call(c) if RANGE_TO_HISTOGRAMS.contains(&c.func.name) || RANGE_TO_FLOATS.contains(&c.func.name) => {
                let (w, evaluated) = match c.args.args.first().map(|a| unwrap_parens(a)) {
                    Some(Expr::MatrixSelector(m)) => {
                        let at = reference_time(&m.vs, self.frame, t);
                        (Window { start_ms: at.saturating_sub(m.range.as_millis() as i64), end_ms: at }, None)
                    }
                    Some(Expr::Subquery(sq)) => {
                        let (w, series) = self.subquery(sq, t)?;
                        (w, Some(series))
                    }
                    _ => return Err(Error::Internal(format!("{} without a range selector or a subquery", c.func.name))),
                };
                let series = match (&evaluated, c.args.args.first().map(|a| unwrap_parens(a))) {
                    (Some(series), _) => series.as_slice(),
                    (None, Some(Expr::MatrixSelector(m))) => self.series(&m.vs)?,
                    _ => &[],
                };
                let mut out = Vec::new();
                for s in series {
                    let floats: Vec<(i64, f64)> = s.floats.iter().copied().filter(|(ts, v)| *ts > w.start_ms && *ts <= w.end_ms && !is_stale_nan(*v)).collect();
                    let hists: Vec<&(i64, Arc<FloatHistogram>)> = s.histograms.iter().filter(|(ts, h)| *ts > w.start_ms && *ts <= w.end_ms && !is_stale(h)).collect();
                    if floats.is_empty() && hists.is_empty() {
                        continue;
                    }
                    if let Some(v) = self.range_function(c, s, &floats, &hists, w) {
                        // Only `last_over_time` and `first_over_time` keep the metric name.
                        let labels = if matches!(c.func.name, "last_over_time" | "first_over_time") { s.labels.clone() } else { s.labels.without_name() };
                        out.push((labels, v));
                    }
                }
                Ok(out)
            }
            Expr::Call(c) if matches!(c.func.name, "label_replace" | "label_join") => {
                let strings: Vec<String> = c.args.args[1..]
                    .iter()
                    .map(|a| match unwrap_parens(a) {
                        Expr::StringLiteral(s) => s.val.clone(),
                        _ => String::new(),
                    })
                    .collect();
                let relabel: Box<dyn Fn(Labels) -> Labels> = if c.func.name == "label_replace" {
                    let [dst, repl, src, re] = <[String; 4]>::try_from(strings)
                        .map_err(|_| Error::BadData("label_replace() takes 5 arguments".into()))?;
                    let replace = super::functions::LabelReplace::new(dst, repl, src, &re)?;
                    Box::new(move |l| replace.apply(l))
                } else {
                    let (dst, sep, srcs) = match strings.as_slice() {
                        [dst, sep, srcs @ ..] => (dst.clone(), sep.clone(), srcs.to_vec()),
                        _ => return Err(Error::BadData("label_join() takes at least 3 arguments".into())),
                    };
                    if !super::aggregate::is_valid_label_name(&dst) {
                        return Err(Error::BadData(format!("invalid destination label name in label_join(): {dst}")));
                    }
                    Box::new(move |l: Labels| {
                        let joined: Vec<&str> = srcs.iter().map(|n| l.get(n).unwrap_or("")).collect();
                        let value = joined.join(&sep);
                        l.with(&dst, &value)
                    })
                };
                let out: NVector = self.eval(&c.args.args[0], t)?.into_iter().map(|(l, s)| (relabel(l), s)).collect();
                let mut seen = std::collections::HashSet::new();
                if !out.iter().all(|(l, _)| seen.insert(l)) {
                    return Err(Error::Execution("vector cannot contain metrics with the same labelset".into()));
                }
                Ok(out)
            }
            // A selector's samples keep their own times; what an expression computes is at `t`.
            Expr::Call(c) if c.func.name == "timestamp" => {
                let input = match c.args.args.first().map(|a| unwrap_parens(a)) {
                    Some(Expr::VectorSelector(vs)) => self.latest(vs, t)?,
                    Some(arg) => self.eval(arg, t)?.into_iter().map(|(labels, s)| (labels, t, s)).collect(),
                    None => return Err(Error::BadData("timestamp() takes one argument".into())),
                };
                Ok(input.into_iter().map(|(labels, ts, _)| (labels.without_name(), NSample::F(ts as f64 / 1000.0))).collect())
            }
            Expr::Call(c) if TO_FLOAT.contains(&c.func.name) => {
                let args = &c.args.args;
                let numbers: Vec<f64> = args[..args.len() - 1]
                    .iter()
                    .map(|a| match self.delegate(a, t)? {
                        Value::Scalar(v) => Ok(v),
                        other => Err(Error::Internal(format!("a scalar argument gave a {}", other.type_name()))),
                    })
                    .collect::<Result<_>>()?;
                let input = self.eval(&args[args.len() - 1], t)?;
                Ok(input
                    .into_iter()
                    .filter_map(|(labels, s)| {
                        let NSample::H(h) = s else { return None };
                        let v = match c.func.name {
                            "histogram_count" => h.count,
                            "histogram_sum" => h.sum,
                            "histogram_avg" => h.sum / h.count,
                            "histogram_stddev" => h.stddev(),
                            "histogram_stdvar" => h.stdvar(),
                            "histogram_quantile" => h.quantile(numbers[0]),
                            _ => h.fraction(numbers[0], numbers[1]),
                        };
                        Some((labels.without_name(), NSample::F(v)))
                    })
                    .collect())
            }
            Expr::Aggregate(a) if a.op.id() == T_COUNT_VALUES => {
                let Some(Expr::StringLiteral(label)) = a.param.as_deref().map(unwrap_parens) else {
                    return Err(Error::BadData("count_values requires a string parameter".into()));
                };
                let label = &label.val;
                if !super::aggregate::is_valid_label_name(label) {
                    return Err(Error::BadData(format!("invalid label name {label:?}")));
                }
                let mut counts: BTreeMap<Labels, f64> = BTreeMap::new();
                for (labels, s) in self.eval(&a.expr, t)? {
                    // A histogram counts under its text, as Prometheus writes it (`String()`).
                    let value = match &s {
                        NSample::F(v) => super::value::format_float(*v),
                        NSample::H(h) => histogram_text(h),
                    };
                    *counts.entry(super::aggregate::grouping_labels(&labels, &a.modifier).with(label, &value)).or_default() += 1.0;
                }
                Ok(counts.into_iter().map(|(labels, n)| (labels, NSample::F(n))).collect())
            }
            Expr::Aggregate(a) if [T_LIMITK, T_LIMIT_RATIO].contains(&a.op.id()) => {
                let param = match a.param.as_deref().map(|p| self.delegate(p, t)).transpose()? {
                    Some(Value::Scalar(v)) => v,
                    _ => return Err(Error::BadData(format!("{} requires a parameter", a.op))),
                };
                // Groups in first-seen order, as the float evaluator forms them.
                let mut index: HashMap<Labels, usize> = HashMap::new();
                let mut groups: Vec<NVector> = Vec::new();
                for (labels, s) in self.eval(&a.expr, t)? {
                    let i = *index.entry(super::aggregate::grouping_labels(&labels, &a.modifier)).or_insert_with(|| {
                        groups.push(Vec::new());
                        groups.len() - 1
                    });
                    groups[i].push((labels, s));
                }
                super::aggregate::limit(a, param, groups.into_iter(), &self.notes)
            }
            Expr::Aggregate(a) => {
                let input = self.eval(&a.expr, t)?;
                let mut groups: BTreeMap<Labels, Vec<(Labels, NSample)>> = BTreeMap::new();
                for (labels, s) in input {
                    groups.entry(super::aggregate::grouping_labels(&labels, &a.modifier)).or_default().push((labels, s));
                }
                let op = a.op.id();
                let at = Anchor::aggregate_param(a);
                Ok(groups
                    .into_iter()
                    .filter_map(|(labels, samples)| {
                        let n = samples.len() as f64;
                        if op == T_COUNT {
                            return Some((labels, NSample::F(n)));
                        }
                        if op == T_GROUP {
                            return Some((labels, NSample::F(1.0)));
                        }
                        let summed = sum(samples.iter().map(|(_, s)| s));
                        if summed.reconciled {
                            self.reconciled(at, "aggregation");
                        }
                        if summed.mixed {
                            self.notes.add(Level::Warning, format!("{WARNING}: encountered a mix of histograms and floats for aggregation"), at);
                        }
                        if summed.incompatible {
                            let metric = samples.iter().find_map(|(l, s)| matches!(s, NSample::H(_)).then(|| l.metric_name().unwrap_or("").to_string()));
                            let message = format!(
                                "{WARNING}: vector contains a mix of histograms with exponential and custom buckets schemas for metric name {}",
                                go_quote(&metric.unwrap_or_default())
                            );
                            self.notes.add(Level::Warning, message, at);
                        }
                        let sum = summed.value?;
                        Some((
                            labels,
                            match (sum, op == T_AVG) {
                                (NSample::F(v), true) => NSample::F(v / n),
                                (NSample::H(h), true) => NSample::H(Arc::new(h.div(n))),
                                (s, false) => s,
                            },
                        ))
                    })
                    .collect())
            }
            Expr::Binary(b) => self.binary(b, t),
            Expr::Call(c) if c.func.name == "absent_over_time" => {
                let Some(Expr::Subquery(sq)) = c.args.args.first().map(|a| unwrap_parens(a)) else {
                    return Err(Error::Internal("absent_over_time without a subquery".into()));
                };
                let (_, series) = self.subquery(sq, t)?;
                Ok(if series.is_empty() { vec![(Labels::default(), NSample::F(1.0))] } else { Vec::new() })
            }
            Expr::Call(c) if matches!(c.func.name, "sort_by_label" | "sort_by_label_desc") => {
                let names: Vec<String> = c.args.args[1..]
                    .iter()
                    .filter_map(|a| match unwrap_parens(a) {
                        Expr::StringLiteral(s) => Some(s.val.clone()),
                        _ => None,
                    })
                    .collect();
                let mut v = self.eval(&c.args.args[0], t)?;
                super::functions::sort_by_label(&mut v, &names, c.func.name == "sort_by_label_desc");
                Ok(v)
            }
            other => Err(Error::unsupported(format!("evaluating native histogram samples in `{other}`"))),
        }
    }
}

/// A histogram as Prometheus' `FloatHistogram.String()` writes it, the label value
/// `count_values` gives it: `{count:20, sum:10, [-2,-1):2, [-0.001,0.001]:2, (0.5,1]:1}`, the
/// non-empty buckets from the lowest bound up, numbers as Go's `%g`.
fn histogram_text(h: &FloatHistogram) -> String {
    use super::annotations::go_g;
    let mut out = format!("{{count:{}, sum:{}", go_g(h.count), go_g(h.sum));
    for b in h.buckets() {
        let (open, close) = (if b.lower_inclusive { '[' } else { '(' }, if b.upper_inclusive { ']' } else { ')' });
        out.push_str(&format!(", {open}{},{}{close}:{}", go_g(b.lower), go_g(b.upper), go_g(b.count)));
    }
    out.push('}');
    out
}

/// Whether two histograms describe the same observations (the counter reset hint aside), as
/// Prometheus' `Equals` compares them for `changes`.
fn same_histogram(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    let (mut a, mut b) = (a.compact(), b.compact());
    a.counter_reset_hint = Default::default();
    b.counter_reset_hint = Default::default();
    if a.sum.is_nan() && b.sum.is_nan() {
        a.sum = 0.0;
        b.sum = 0.0;
    }
    a == b
}

/// What adding up one group's samples gave.
#[derive(Default)]
struct Summed {
    /// The sum of the floats or of the histograms; `None` when they mix, or when exponential
    /// and custom buckets do.
    value: Option<NSample>,
    /// Floats and histograms mixed.
    mixed: bool,
    /// Exponential and custom buckets mixed.
    incompatible: bool,
    /// Custom buckets of different bounds were reconciled.
    reconciled: bool,
}

fn sum<'s>(mut samples: impl Iterator<Item = &'s NSample>) -> Summed {
    let mut out = Summed::default();
    match samples.next() {
        None => {}
        Some(NSample::F(first)) => {
            let mut total = *first;
            for s in samples {
                let NSample::F(v) = s else {
                    out.mixed = true;
                    return out;
                };
                total += v;
            }
            out.value = Some(NSample::F(total));
        }
        Some(NSample::H(first)) => {
            let mut total = (**first).clone();
            for s in samples {
                let NSample::H(h) = s else {
                    out.mixed = true;
                    return out;
                };
                out.reconciled |= total.reconciles_custom_buckets(h);
                match total.add(h) {
                    Ok(sum) => total = sum,
                    Err(_) => {
                        out.incompatible = true;
                        return out;
                    }
                }
            }
            out.value = Some(NSample::H(Arc::new(total)));
        }
    }
    out
}

/// Prometheus' `histogramRate` with `extrapolatedRate`'s extrapolation, over at least two
/// histogram samples of a window: the last minus the first (at the lowest schema of the window),
/// with counter resets added back for counters; scaled to the window's edges (the zero point
/// taken from the counts) and per second for `rate`. `None` when custom buckets mix with
/// exponential ones; where custom buckets of different bounds were reconciled, the operation
/// (`subtraction`, `addition`) is added to `reconciled`.
fn histogram_rate(points: &[&(i64, Arc<FloatHistogram>)], w: Window, is_counter: bool, is_rate: bool, reconciled: &mut Vec<&'static str>) -> Option<FloatHistogram> {
    let mut prev: FloatHistogram = (*points[0].1).clone();
    // A reset between the first two samples: the first counts as empty.
    if is_counter && points[1].1.detect_reset(&prev) {
        prev = FloatHistogram { schema: points[1].1.schema, custom_values: points[1].1.custom_values.clone(), ..Default::default() };
    }
    let last = &points[points.len() - 1].1;
    if last.uses_custom_buckets() != prev.uses_custom_buckets() {
        return None;
    }
    let mut min_schema = last.schema.min(prev.schema);
    for (_, h) in &points[1..points.len() - 1] {
        if h.uses_custom_buckets() != prev.uses_custom_buckets() {
            return None;
        }
        if is_counter {
            min_schema = min_schema.min(h.schema);
        }
    }
    let last = last.copy_to_schema(min_schema);
    if last.reconciles_custom_buckets(&prev) {
        reconciled.push("subtraction");
    }
    let mut result = last.sub(&prev).ok()?;
    if is_counter {
        for pair in points.windows(2) {
            let (before, after) = (&pair[0].1, &pair[1].1);
            if after.detect_reset(before) {
                if result.reconciles_custom_buckets(before) {
                    reconciled.push("addition");
                }
                result = result.add(before).ok()?;
            }
        }
    }
    let counts: Vec<(i64, f64)> = points.iter().map(|(t, h)| (*t, h.count)).collect();
    let factor = range_functions::extrapolation_factor(&counts, w, result.count, is_counter, is_rate);
    let mut result = result.mul(factor);
    result.counter_reset_hint = pharos_model::histogram::CounterResetHint::Gauge;
    Some(result.compact())
}

/// A reader that answers selectors of the names [`prepare`] made up with the series it
/// computed, and everything else from `inner`.
pub(crate) struct WithVirtual<'a> {
    pub(crate) inner: &'a dyn MetricsReader,
    pub(crate) series: HashMap<String, Vec<Series>>,
}

impl WithVirtual<'_> {
    fn virtual_of(&self, matchers: &[LabelMatcher]) -> Option<&Vec<Series>> {
        matchers.iter().find(|m| m.name == pharos_model::METRIC_NAME).and_then(|m| self.series.get(&m.value))
    }
}

impl MetricsReader for WithVirtual<'_> {
    fn select_series(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> std::result::Result<Vec<Series>, String> {
        match self.virtual_of(matchers) {
            Some(series) => Ok(series
                .iter()
                .map(|s| Series { labels: s.labels.clone(), samples: s.samples.iter().copied().filter(|(t, _)| *t >= start_ms && *t <= end_ms).collect() })
                .filter(|s| !s.samples.is_empty())
                .collect()),
            None => self.inner.select_series(matchers, start_ms, end_ms),
        }
    }

    fn stream_series(
        &self,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
        plan: &mut dyn FnMut(&[Labels]) -> bool,
        sink: &pharos_model::SeriesSink<'_>,
    ) -> std::result::Result<bool, String> {
        if self.virtual_of(matchers).is_none() {
            return self.inner.stream_series(matchers, start_ms, end_ms, plan, sink);
        }
        Ok(pharos_model::select::hand_over(&self.select_series(matchers, start_ms, end_ms)?, plan, sink))
    }

    fn select_histograms(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> std::result::Result<Vec<HistogramSeries>, String> {
        self.inner.select_histograms(matchers, start_ms, end_ms)
    }
}
