//! LogQL metric queries: range functions over log queries (`count_over_time`, `rate`,
//! `bytes_over_time`, `bytes_rate`, and with `| unwrap` `sum/avg/min/max/stddev/stdvar/first/
//! last_over_time` and `quantile_over_time`) and vector
//! aggregations over them (`sum`, `avg`, `min`, `max`, `count`, `stddev`, `stdvar`, `topk`,
//! `bottomk`, `by`/`without`).
//!
//! A window at evaluation time `t` holds the entries with `t - range < ts <= t`, as in Loki; a
//! series with no entry in a window has no sample at `t`.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use pharos_model::{Labels, LogRecord, LogSearch, LogsReader};

use super::LogQuery;
use super::pipeline::{self, NumberUnit, Stage};
use crate::error::{Error, Result};
use crate::promql::aggregate::{quantile, variance};
use crate::promql::functions::LabelReplace;
use crate::promql::range_functions::{Window, extrapolated_rate, variance_over_time};

/// A range function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeFn {
    /// Entries in the window.
    CountOverTime,
    /// Entries per second (with `unwrap`: the sum of values per second).
    Rate,
    /// Bytes of the lines in the window.
    BytesOverTime,
    /// Bytes per second.
    BytesRate,
    /// Sum of unwrapped values.
    SumOverTime,
    /// Average of unwrapped values.
    AvgOverTime,
    /// Minimum of unwrapped values.
    MinOverTime,
    /// Maximum of unwrapped values.
    MaxOverTime,
    /// Population standard deviation of unwrapped values.
    StddevOverTime,
    /// Population variance of unwrapped values.
    StdvarOverTime,
    /// The φ-quantile of unwrapped values (`quantile_over_time(φ, …)`), as Prometheus computes it.
    QuantileOverTime,
    /// The oldest unwrapped value in the window.
    FirstOverTime,
    /// The newest unwrapped value in the window.
    LastOverTime,
    /// 1 when no entry is in the window (labelled by the selector's `=` matchers), else nothing.
    AbsentOverTime,
    /// Per-second rate of unwrapped values taken as a counter (resets added back, extrapolated
    /// to the window's edges as Prometheus' `rate`).
    RateCounter,
}

const RANGE_FNS: [(&str, RangeFn); 15] = [
    ("count_over_time", RangeFn::CountOverTime),
    ("rate", RangeFn::Rate),
    ("bytes_over_time", RangeFn::BytesOverTime),
    ("bytes_rate", RangeFn::BytesRate),
    ("sum_over_time", RangeFn::SumOverTime),
    ("avg_over_time", RangeFn::AvgOverTime),
    ("min_over_time", RangeFn::MinOverTime),
    ("max_over_time", RangeFn::MaxOverTime),
    ("stddev_over_time", RangeFn::StddevOverTime),
    ("stdvar_over_time", RangeFn::StdvarOverTime),
    ("quantile_over_time", RangeFn::QuantileOverTime),
    ("first_over_time", RangeFn::FirstOverTime),
    ("last_over_time", RangeFn::LastOverTime),
    ("absent_over_time", RangeFn::AbsentOverTime),
    ("rate_counter", RangeFn::RateCounter),
];

impl RangeFn {
    /// The function named `name`.
    pub fn from_name(name: &str) -> Option<RangeFn> {
        RANGE_FNS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        RANGE_FNS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("", |(n, _)| n)
    }

    /// True when the value over a window of records is the sum of a value per record (so a
    /// series split in two gives two values that add up to it): counts, bytes and their rates.
    /// Not with `unwrap`, which this does not look at.
    pub fn is_additive(self) -> bool {
        matches!(self, RangeFn::CountOverTime | RangeFn::Rate | RangeFn::BytesOverTime | RangeFn::BytesRate)
    }

    /// True for the functions over unwrapped values.
    pub fn needs_unwrap(self) -> bool {
        matches!(
            self,
            RangeFn::SumOverTime
                | RangeFn::AvgOverTime
                | RangeFn::MinOverTime
                | RangeFn::MaxOverTime
                | RangeFn::StddevOverTime
                | RangeFn::StdvarOverTime
                | RangeFn::QuantileOverTime
                | RangeFn::FirstOverTime
                | RangeFn::LastOverTime
                | RangeFn::RateCounter
        )
    }
}

/// A vector aggregation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    /// `sum`
    Sum,
    /// `avg`
    Avg,
    /// `min`
    Min,
    /// `max`
    Max,
    /// `count`
    Count,
    /// `topk(k, …)`
    Topk,
    /// `bottomk(k, …)`
    Bottomk,
    /// `stddev`: population standard deviation.
    Stddev,
    /// `stdvar`: population variance.
    Stdvar,
}

const AGG_OPS: [(&str, AggOp); 9] = [
    ("sum", AggOp::Sum),
    ("avg", AggOp::Avg),
    ("min", AggOp::Min),
    ("max", AggOp::Max),
    ("count", AggOp::Count),
    ("topk", AggOp::Topk),
    ("bottomk", AggOp::Bottomk),
    ("stddev", AggOp::Stddev),
    ("stdvar", AggOp::Stdvar),
];

impl AggOp {
    /// The aggregation named `name`.
    pub fn from_name(name: &str) -> Option<AggOp> {
        AGG_OPS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        AGG_OPS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("", |(n, _)| n)
    }
}

/// A binary operator between metric expressions: arithmetic, or a comparison that filters
/// (or, with `bool`, answers 0 or 1), as in PromQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `^` (right-associative)
    Pow,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `and`: left elements with a right element of the same label set.
    And,
    /// `or`: left elements, then right elements of label sets the left side lacks.
    Or,
    /// `unless`: left elements without a right element of the same label set.
    Unless,
}

impl ArithOp {
    /// Every operator, two-character symbols before their one-character prefixes.
    pub const ALL: [ArithOp; 15] = [
        ArithOp::And,
        ArithOp::Or,
        ArithOp::Unless,
        ArithOp::Eq,
        ArithOp::Ne,
        ArithOp::Ge,
        ArithOp::Le,
        ArithOp::Gt,
        ArithOp::Lt,
        ArithOp::Add,
        ArithOp::Sub,
        ArithOp::Mul,
        ArithOp::Div,
        ArithOp::Mod,
        ArithOp::Pow,
    ];

    /// How it is written.
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Mod => "%",
            ArithOp::Pow => "^",
            ArithOp::Eq => "==",
            ArithOp::Ne => "!=",
            ArithOp::Ge => ">=",
            ArithOp::Le => "<=",
            ArithOp::Gt => ">",
            ArithOp::Lt => "<",
            ArithOp::And => "and",
            ArithOp::Or => "or",
            ArithOp::Unless => "unless",
        }
    }

    /// True for the set operators, written as words.
    pub fn is_set(self) -> bool {
        matches!(self, ArithOp::And | ArithOp::Or | ArithOp::Unless)
    }

    /// Binding strength, as in PromQL: `or` binds loosest, then `and` and `unless`, then the
    /// comparisons, then `+ -`, then `* / %`, then `^`.
    pub fn precedence(self) -> u8 {
        match self {
            ArithOp::Or => 1,
            ArithOp::And | ArithOp::Unless => 2,
            ArithOp::Eq | ArithOp::Ne | ArithOp::Ge | ArithOp::Le | ArithOp::Gt | ArithOp::Lt => 3,
            ArithOp::Add | ArithOp::Sub => 4,
            ArithOp::Mul | ArithOp::Div | ArithOp::Mod => 5,
            ArithOp::Pow => 6,
        }
    }

    /// True for `^`, which groups from the right (`2 ^ 3 ^ 2` is `2 ^ 9`).
    pub fn right_associative(self) -> bool {
        self == ArithOp::Pow
    }

    /// True for the comparison operators.
    pub fn is_comparison(self) -> bool {
        self.precedence() == 3
    }

    /// The result of an arithmetic operator, or for a comparison 1 when it holds, else 0.
    fn apply(self, a: f64, b: f64) -> f64 {
        let holds = |c: bool| if c { 1.0 } else { 0.0 };
        match self {
            ArithOp::Add => a + b,
            ArithOp::Sub => a - b,
            ArithOp::Mul => a * b,
            ArithOp::Div => a / b,
            // Go's math.Mod, which Prometheus and Loki use: the sign of the dividend.
            ArithOp::Mod => a % b,
            ArithOp::Pow => a.powf(b),
            ArithOp::Eq => holds(a == b),
            ArithOp::Ne => holds(a != b),
            ArithOp::Ge => holds(a >= b),
            ArithOp::Le => holds(a <= b),
            ArithOp::Gt => holds(a > b),
            ArithOp::Lt => holds(a < b),
            // Set operators pick elements; they compute no value.
            ArithOp::And | ArithOp::Or | ArithOp::Unless => a,
        }
    }
}

/// A metric query.
#[derive(Clone, Debug)]
pub enum MetricExpr {
    /// `func(log_query [range])`
    Range {
        /// The function.
        func: RangeFn,
        /// The log query (with `unwrap` for the unwrap functions).
        query: LogQuery,
        /// Window length in nanoseconds.
        range_ns: i64,
        /// `offset`: each window ends this long before the evaluation time (negative: after).
        offset_ns: i64,
        /// φ of `quantile_over_time` (NaN for the other functions).
        param: f64,
        /// `by (…)` / `without (…)` after an unwrapped range function: the values of all series
        /// with the same kept labels share one window. `Some((without, labels))`.
        grouping: Option<(bool, Vec<String>)>,
    },
    /// A number literal.
    Scalar(f64),
    /// `vector(n)`: one series without labels.
    Vector(f64),
    /// `lhs op rhs`
    Binary {
        /// The operator.
        op: ArithOp,
        /// `bool` after a comparison: every matched element is kept, valued 1 or 0.
        bool_modifier: bool,
        /// How the elements of two vectors pair up.
        matching: VectorMatching,
        /// Left operand.
        lhs: Box<MetricExpr>,
        /// Right operand.
        rhs: Box<MetricExpr>,
    },
    /// `label_replace(inner, dst, replacement, src, regex)`, as in PromQL.
    LabelReplace {
        /// The expression whose labels change.
        inner: Box<MetricExpr>,
        /// The checked arguments.
        replace: LabelReplace,
    },
    /// `op [by|without (labels)] ([k,] inner)`
    Aggregate {
        /// The aggregation.
        op: AggOp,
        /// `Some((without, labels))`.
        grouping: Option<(bool, Vec<String>)>,
        /// `k` of topk/bottomk.
        param: Option<usize>,
        /// The aggregated expression.
        inner: Box<MetricExpr>,
    },
}

/// One output series: labels and `(timestamp_ns, value)` points in time order.
pub type SeriesOut = (Labels, Vec<(i64, f64)>);

/// Per-stream entries of the range leaf: `(timestamp_ns, value)` in time order.
type Leaf = BTreeMap<Labels, Vec<(i64, f64)>>;

impl MetricExpr {
    /// True when the expression is a number (no series).
    pub(super) fn is_scalar(&self) -> bool {
        match self {
            MetricExpr::Scalar(_) => true,
            MetricExpr::Binary { lhs, rhs, .. } => lhs.is_scalar() && rhs.is_scalar(),
            _ => false,
        }
    }

    /// Evaluates at every time of `steps_ns` (ascending); series in label order.
    pub fn evaluate(&self, reader: &dyn LogsReader, steps_ns: &[i64]) -> Result<Vec<SeriesOut>> {
        let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for (&t, vector) in steps_ns.iter().zip(self.eval_steps(reader, steps_ns, false)?) {
            for (labels, v) in vector {
                out.entry(labels).or_default().push((t, v));
            }
        }
        Ok(out.into_iter().collect())
    }

    /// One vector per step. `level_unused`: the caller's answer is the same whatever this
    /// expression's series carry in `detected_level` and however it splits them by that label
    /// (a `sum` that does not group by it), so records may be read without their severity.
    fn eval_steps(
        &self,
        reader: &dyn LogsReader,
        steps_ns: &[i64],
        level_unused: bool,
    ) -> Result<Vec<Vec<(Labels, f64)>>> {
        match self {
            MetricExpr::Range {
                func,
                query,
                range_ns,
                offset_ns,
                param,
                grouping,
            } => {
                // The windows of the shifted times; the results belong to the given steps.
                let shifted: Vec<i64> = steps_ns.iter().map(|t| t.saturating_sub(*offset_ns)).collect();
                // `absent_over_time` counts the entries and answers where there are none.
                let absent = *func == RangeFn::AbsentOverTime;
                let func = if absent { &RangeFn::CountOverTime } else { func };
                // Without the level a stream's records form one series instead of one per
                // level: the same sum for a function that adds up per record.
                let level_unused = level_unused
                    && func.is_additive()
                    && query.unwrap.is_none()
                    && query.stages.iter().all(|s| matches!(s, pipeline::Stage::Line(_)));
                let mut leaf = load(reader, query, *func, *range_ns, &shifted, level_unused)?;
                if grouping.is_some() {
                    let mut grouped: Leaf = BTreeMap::new();
                    for (labels, points) in leaf {
                        grouped.entry(group_key(grouping, &labels)).or_default().extend(points);
                    }
                    for points in grouped.values_mut() {
                        points.sort_by_key(|p| p.0);
                    }
                    leaf = grouped;
                }
                let steps: Vec<Vec<(Labels, f64)>> =
                    shifted.iter().map(|&t| range_at(&leaf, *func, *param, query, *range_ns, t)).collect();
                if !absent {
                    // As Loki: a metric query fails when a series the range function gives
                    // carries a pipeline error, unless the query filters such entries out.
                    if let Some(labels) = steps.iter().flatten().map(|(l, _)| l).find(|l| l.get(ERROR_LABEL).is_some()) {
                        return Err(Error::BadData(pipeline_error(labels)));
                    }
                }
                Ok(steps
                    .into_iter()
                    .map(|present| match (absent, present.is_empty()) {
                        (false, _) => present,
                        (true, true) => vec![(absent_labels(query), 1.0)],
                        (true, false) => Vec::new(),
                    })
                    .collect())
            }
            MetricExpr::Aggregate {
                op,
                grouping,
                param,
                inner,
            } => Ok(inner
                .eval_steps(reader, steps_ns, *op == AggOp::Sum && !group_key_has_level(grouping))?
                .into_iter()
                .map(|input| aggregate(*op, grouping, *param, input))
                .collect()),
            MetricExpr::LabelReplace { inner, replace } => inner
                .eval_steps(reader, steps_ns, false)?
                .into_iter()
                .map(|vector| {
                    let out: Vec<(Labels, f64)> = vector.into_iter().map(|(l, v)| (replace.apply(l), v)).collect();
                    let mut seen = std::collections::HashSet::with_capacity(out.len());
                    if out.iter().all(|(l, _)| seen.insert(l)) {
                        Ok(out)
                    } else {
                        Err(Error::Execution("vector cannot contain metrics with the same labelset (after label_replace)".into()))
                    }
                })
                .collect(),
            MetricExpr::Scalar(n) | MetricExpr::Vector(n) => Ok(steps_ns
                .iter()
                .map(|_| vec![(Labels::default(), *n)])
                .collect()),
            MetricExpr::Binary { op, bool_modifier, matching, lhs, rhs } => {
                let (ls, rs) = (lhs.is_scalar(), rhs.is_scalar());
                let l = lhs.eval_steps(reader, steps_ns, false)?;
                let r = rhs.eval_steps(reader, steps_ns, false)?;
                l.into_iter()
                    .zip(r)
                    .map(|(l, r)| binary(*op, *bool_modifier, matching, ls, rs, l, r))
                    .collect()
            }
        }
    }
}

/// How two vectors' elements pair up: `on (…)` / `ignoring (…)` and `group_left (…)` /
/// `group_right (…)`, as in PromQL. The default (`ignoring ()`) pairs identical label sets.
#[derive(Clone, Debug, Default)]
pub struct VectorMatching {
    /// `on` (true) or `ignoring` (false).
    pub on: bool,
    /// The labels `on` keeps or `ignoring` drops from the matching key.
    pub labels: Vec<String>,
    /// `Some((right, extra))`: `group_left` (false) or `group_right` (true), with the labels
    /// copied from the "one" side.
    pub group: Option<(bool, Vec<String>)>,
}

impl VectorMatching {
    fn key(&self, l: &Labels) -> Labels {
        if self.on {
            l.filter(|n| self.labels.iter().any(|x| x == n))
        } else {
            l.filter(|n| !self.labels.iter().any(|x| x == n))
        }
    }
}

/// Applies `op`: a scalar side applies to every element of the other; two vectors pair up by
/// `matching` (elements without a partner are dropped), as in Prometheus. A comparison keeps
/// the elements for which it holds, with the vector's value (the left side's between two
/// vectors), or with `bool` keeps every element valued 1 or 0.
fn binary(
    op: ArithOp,
    bool_modifier: bool,
    matching: &VectorMatching,
    lhs_scalar: bool,
    rhs_scalar: bool,
    l: Vec<(Labels, f64)>,
    r: Vec<(Labels, f64)>,
) -> Result<Vec<(Labels, f64)>> {
    if op.is_set() {
        // Both sides are vectors (the parser refuses numbers here).
        let right: std::collections::HashSet<Labels> = r.iter().map(|(k, _)| matching.key(k)).collect();
        return Ok(match op {
            ArithOp::And => l.into_iter().filter(|(k, _)| right.contains(&matching.key(k))).collect(),
            ArithOp::Unless => l.into_iter().filter(|(k, _)| !right.contains(&matching.key(k))).collect(),
            _ => {
                let left: std::collections::HashSet<Labels> = l.iter().map(|(k, _)| matching.key(k)).collect();
                let extra: Vec<(Labels, f64)> = r.into_iter().filter(|(k, _)| !left.contains(&matching.key(k))).collect();
                l.into_iter().chain(extra).collect()
            }
        });
    }
    let first = |v: &[(Labels, f64)]| v.first().map_or(f64::NAN, |x| x.1);
    // The element's value for a comparison without `bool`: `None` drops the element.
    let result = |a: f64, b: f64, kept: f64| -> Option<f64> {
        let v = op.apply(a, b);
        match (op.is_comparison(), bool_modifier) {
            (false, _) | (true, true) => Some(v),
            (true, false) => (v == 1.0).then_some(kept),
        }
    };
    if lhs_scalar && rhs_scalar {
        // Only `bool` comparisons reach here (the parser requires it between numbers).
        return Ok(vec![(Labels::default(), op.apply(first(&l), first(&r)))]);
    }
    if lhs_scalar {
        let a = first(&l);
        return Ok(r.into_iter().filter_map(|(k, b)| result(a, b, b).map(|v| (k, v))).collect());
    }
    if rhs_scalar {
        let b = first(&r);
        return Ok(l.into_iter().filter_map(|(k, a)| result(a, b, a).map(|v| (k, v))).collect());
    }
    // The "one" side must be unique per key; with group_right it is the left side.
    let group_right = matches!(matching.group, Some((true, _)));
    let (many, one) = if group_right { (r, l) } else { (l, r) };
    let mut by_key: FxHashMap<Labels, (Labels, f64)> = FxHashMap::default();
    for (labels, v) in one {
        if by_key.insert(matching.key(&labels), (labels, v)).is_some() {
            return Err(Error::Execution(format!(
                "many-to-many matching not allowed: matching labels must be unique on one side ({} side)",
                if group_right { "left" } else { "right" }
            )));
        }
    }
    let mut out = Vec::new();
    let mut seen: std::collections::HashSet<Labels> = std::collections::HashSet::new();
    for (labels, v) in many {
        let Some((one_labels, w)) = by_key.get(&matching.key(&labels)) else { continue };
        let (a, b) = if group_right { (*w, v) } else { (v, *w) };
        let Some(value) = result(a, b, a) else { continue };
        let out_labels = match &matching.group {
            // One-to-one: the left side's labels, reduced as the matching says.
            None if matching.on => matching.key(&labels),
            None => labels.filter(|n| !matching.labels.iter().any(|x| x == n)),
            // Many-to-one: the "many" side's labels, plus the listed ones from the "one" side.
            Some((_, extra)) => extra.iter().fold(labels, |acc, name| acc.with(name, one_labels.get(name).unwrap_or(""))),
        };
        if !seen.insert(out_labels.clone()) {
            return Err(Error::Execution(if matching.group.is_some() {
                "multiple matches for labels: grouping labels must ensure unique matches".into()
            } else {
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into()
            }));
        }
        out.push((out_labels, value));
    }
    Ok(out)
}

/// Reads and runs the pipeline over the entries the windows of `steps_ns` need.
fn load(
    reader: &dyn LogsReader,
    query: &LogQuery,
    func: RangeFn,
    range_ns: i64,
    steps_ns: &[i64],
    level_unused: bool,
) -> Result<Leaf> {
    let (Some(&first), Some(&last)) = (steps_ns.first(), steps_ns.last()) else {
        return Ok(Leaf::new());
    };
    let from = first.saturating_sub(range_ns).saturating_add(1);
    let mut search = LogSearch::new(&query.matchers, from, last);
    search.contains_any = query.index_filters();
    search.label_equals = query.label_equalities();
    // Counting lines (not their bytes) through `|=` filters reads no line: the store checks
    // those filters and may leave the bodies unread.
    let bodyless = match func {
        RangeFn::BytesOverTime | RangeFn::BytesRate => None,
        // A `|=` left in the pipeline (one after `distinct`) reads the line.
        _ => query.without_body_filters().filter(|q| !q.stages.iter().any(|s| matches!(s, Stage::Line(_)))),
    };
    search.body_unused = bodyless.is_some();
    // A record's severity is its `detected_level` label, unless the caller drops that.
    search.severity_unused = level_unused;
    let query = bodyless.as_ref().unwrap_or(query);
    // Without stages or unwrap a record's series is its stream's label set (plus attributes
    // and `detected_level`, if any) and its value 1 or its length.
    let plain = query.stages.is_empty() && query.unwrap.is_none();
    if plain && search.body_unused && matches!(func, RangeFn::CountOverTime | RangeFn::Rate) {
        // Every record counts 1: only timestamps are needed, grouped by what makes a series.
        let groups = reader.count_logs(&search).map_err(|e| Error::Internal(format!("reading logs: {e}")))?;
        let mut leaf: Leaf = BTreeMap::new();
        for g in groups {
            let representative = LogRecord {
                labels: g.labels,
                timestamp_ns: 0,
                body: String::new(),
                severity: g.severity,
                attributes: g.attributes,
            };
            let Some((labels, _)) = query.process_record(&representative) else { continue };
            let points = g.timestamps_ns.into_iter().filter(|t| (from..=last).contains(t)).map(|t| (t, 1.0));
            leaf.entry(Labels::from_pairs(labels)).or_default().extend(points);
        }
        // Groups come as runs in time order (a split segment's records are in stream, then
        // time order): a stable sort merges runs.
        for points in leaf.values_mut() {
            points.sort_by_key(|p| p.0);
        }
        return Ok(leaf);
    }
    let mut records = reader
        .search_logs(&search)
        .map_err(|e| Error::Internal(format!("reading logs: {e}")))?;
    // `distinct` lets through the first entry with each value: entries of every stream go
    // through it in time order, from the start of the range read (the store checked only the
    // filters before it).
    let mut seen = query.has_distinct().then(pipeline::DistinctSeen::default);
    if seen.is_some() {
        records.sort_by(|a, b| (a.timestamp_ns, &a.labels, &a.body).cmp(&(b.timestamp_ns, &b.labels, &b.body)));
    }
    let mut leaf: Leaf = BTreeMap::new();
    // Without stages or unwrap, records of one stream (one shared label set) go to one series
    // found by address, with no label map built per record.
    // Per stream (by address), per severity: the series' labels and points.
    type BySeverity = Vec<(String, Labels, Vec<(i64, f64)>)>;
    let mut by_stream: FxHashMap<usize, BySeverity> = FxHashMap::default();
    for r in records {
        if r.timestamp_ns < from || r.timestamp_ns > last {
            continue;
        }
        if plain && r.attributes.is_empty() {
            let value = match func {
                RangeFn::BytesOverTime | RangeFn::BytesRate => r.body.len() as f64,
                _ => 1.0,
            };
            let series = by_stream.entry(r.labels.ptr_id()).or_default();
            let slot = match series.iter().position(|s| s.0 == r.severity) {
                Some(i) => i,
                None => {
                    // The labels `process_record` gives: the stream's, and `detected_level`.
                    let labels = match pipeline::added_level(&r.labels, &r.severity) {
                        None => r.labels.clone(),
                        Some(level) => r.labels.with(pipeline::DETECTED_LEVEL_LABEL, level),
                    };
                    series.push((r.severity.clone(), labels, Vec::new()));
                    series.len() - 1
                }
            };
            series[slot].2.push((r.timestamp_ns, value));
            continue;
        }
        let processed = match seen.as_mut() {
            Some(seen) => query.process_record_distinct(&r, seen),
            None => query.process_record(&r),
        };
        let Some((mut labels, line)) = processed else {
            continue;
        };
        let value = match (&query.unwrap, func) {
            (Some((name, unit)), _) => {
                // An entry without the label (or with it empty) has no value, as in Loki.
                let Some(v) = labels.remove(name).filter(|v| !v.is_empty()) else {
                    continue;
                };
                let parsed = match unit {
                    NumberUnit::Plain => v.trim().parse::<f64>().ok(),
                    NumberUnit::Duration => pipeline::parse_duration_secs(&v),
                    NumberUnit::Bytes => pipeline::parse_bytes(&v),
                };
                let x = match parsed {
                    Some(x) => x,
                    None => {
                        // As Loki: the entry is marked, and fails the query unless a filter
                        // after `unwrap` (`| __error__=""`) drops it.
                        labels.insert(ERROR_LABEL.to_string(), "SampleExtractionErr".to_string());
                        labels.insert("__error_details__".to_string(), conversion_error(*unit, &v));
                        0.0
                    }
                };
                let mut line = line;
                if !query.after_unwrap.iter().all(|s| s.apply(&mut labels, &r.labels, &mut line, r.timestamp_ns)) {
                    continue;
                }
                x
            }
            (None, RangeFn::BytesOverTime | RangeFn::BytesRate) => line.len() as f64,
            (None, _) => 1.0,
        };
        leaf.entry(Labels::from_pairs(labels))
            .or_default()
            .push((r.timestamp_ns, value));
    }
    for (_, labels, points) in by_stream.into_values().flatten() {
        leaf.entry(labels).or_default().extend(points);
    }
    for points in leaf.values_mut() {
        points.sort_by_key(|p| p.0);
    }
    Ok(leaf)
}

/// The range function's value per stream at `t`.
fn range_at(
    leaf: &Leaf,
    func: RangeFn,
    param: f64,
    query: &LogQuery,
    range_ns: i64,
    t: i64,
) -> Vec<(Labels, f64)> {
    let secs = range_ns as f64 / 1e9;
    let mut out = Vec::new();
    for (labels, points) in leaf {
        let lo = points.partition_point(|p| p.0 <= t.saturating_sub(range_ns));
        let hi = points.partition_point(|p| p.0 <= t);
        let window = &points[lo..hi];
        if window.is_empty() {
            continue;
        }
        let sum: f64 = window.iter().map(|p| p.1).sum();
        let v = match func {
            // (`absent_over_time` is evaluated as a count, then inverted.)
            RangeFn::CountOverTime | RangeFn::AbsentOverTime => window.len() as f64,
            RangeFn::Rate if query.unwrap.is_none() => window.len() as f64 / secs,
            RangeFn::Rate | RangeFn::BytesRate => sum / secs,
            RangeFn::BytesOverTime | RangeFn::SumOverTime => sum,
            RangeFn::AvgOverTime => sum / window.len() as f64,
            RangeFn::MinOverTime => window.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
            RangeFn::MaxOverTime => window.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
            // Prometheus' own functions: compensated sums, interpolated ranks.
            RangeFn::StdvarOverTime => variance_over_time(window),
            RangeFn::StddevOverTime => variance_over_time(window).sqrt(),
            RangeFn::QuantileOverTime => quantile(param, window.iter().map(|p| p.1).collect()),
            RangeFn::FirstOverTime => window[0].1,
            RangeFn::LastOverTime => window[window.len() - 1].1,
            RangeFn::RateCounter => {
                // Prometheus' `increase` over (t - range, t], then per second. Its
                // extrapolation depends on ratios of durations only, so the nanosecond
                // timestamps go in as they are (the window's "ms" fields hold nanoseconds).
                let w = Window { start_ms: t.saturating_sub(range_ns), end_ms: t };
                match extrapolated_rate(window, w, true, false) {
                    Some(increase) => increase / secs,
                    None => continue,
                }
            }
        };
        out.push((labels.clone(), v));
    }
    out
}

/// The label a pipeline stage sets when it fails on an entry.
const ERROR_LABEL: &str = "__error__";

/// Go's error text for an unwrapped value that does not convert (what Loki puts in
/// `__error_details__`).
fn conversion_error(unit: NumberUnit, value: &str) -> String {
    let quoted = crate::logql::template::go_quote(value);
    match unit {
        NumberUnit::Plain | NumberUnit::Bytes => format!("strconv.ParseFloat: parsing {quoted}: invalid syntax"),
        NumberUnit::Duration => format!("time: invalid duration {quoted}"),
    }
}

/// Loki's error for a metric query whose series carries `__error__` (its text, word for word:
/// clients and users know it), naming the series as Prometheus prints label sets.
fn pipeline_error(labels: &Labels) -> String {
    let kind = labels.get(ERROR_LABEL).unwrap_or_default();
    let series: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={}", crate::logql::template::go_quote(v))).collect();
    format!(
        "pipeline error: '{kind}' for series: '{{{}}}'.\n\
         Use a label filter to intentionally skip this error. (e.g | __error__!=\"{kind}\").\n\
         To skip all potential errors you can match empty errors.(e.g __error__=\"\")\n\
         The label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )\n",
        series.join(", ")
    )
}

/// The labels of `absent_over_time`'s answer: those of the selector's `=` matchers whose name
/// no other matcher uses, as Prometheus' `absent` derives them.
fn absent_labels(query: &LogQuery) -> Labels {
    let once = |name: &str| query.matchers.iter().filter(|m| m.name == name).count() == 1;
    Labels::from_pairs(
        query
            .matchers
            .iter()
            .filter(|m| matches!(m.op, pharos_model::select::MatchOp::Equal) && once(&m.name))
            .map(|m| (m.name.clone(), m.value.clone())),
    )
}

/// True when the labels `grouping` keeps can include `detected_level`.
fn group_key_has_level(grouping: &Option<(bool, Vec<String>)>) -> bool {
    let listed = |names: &Vec<String>| names.iter().any(|n| n == pipeline::DETECTED_LEVEL_LABEL);
    match grouping {
        None => false,
        Some((false, names)) => listed(names),
        Some((true, names)) => !listed(names),
    }
}

/// The labels of `l` a grouping keeps: none without one, the listed ones with `by`, the others
/// with `without`.
fn group_key(grouping: &Option<(bool, Vec<String>)>, l: &Labels) -> Labels {
    match grouping {
        None => Labels::default(),
        Some((false, names)) => l.filter(|n| names.iter().any(|x| x == n)),
        Some((true, names)) => l.filter(|n| !names.iter().any(|x| x == n)),
    }
}

/// One aggregation step.
fn aggregate(
    op: AggOp,
    grouping: &Option<(bool, Vec<String>)>,
    param: Option<usize>,
    input: Vec<(Labels, f64)>,
) -> Vec<(Labels, f64)> {
    let key = |l: &Labels| group_key(grouping, l);
    let mut groups: BTreeMap<Labels, Vec<(Labels, f64)>> = BTreeMap::new();
    for (l, v) in input {
        groups.entry(key(&l)).or_default().push((l, v));
    }
    let mut out = Vec::new();
    for (k, mut members) in groups {
        let values = members.iter().map(|m| m.1);
        let n = members.len() as f64;
        let v = match op {
            AggOp::Sum => values.sum(),
            AggOp::Avg => values.sum::<f64>() / n,
            AggOp::Min => values.fold(f64::INFINITY, f64::min),
            AggOp::Max => values.fold(f64::NEG_INFINITY, f64::max),
            AggOp::Count => n,
            // Prometheus' compensated running variance.
            AggOp::Stdvar => variance(values),
            AggOp::Stddev => variance(values).sqrt(),
            AggOp::Topk | AggOp::Bottomk => {
                members.sort_by(|a, b| {
                    let o = a.1.total_cmp(&b.1);
                    if op == AggOp::Topk { o.reverse() } else { o }
                });
                members.truncate(param.unwrap_or(1));
                out.extend(members);
                continue;
            }
        };
        out.push((k, v));
    }
    out
}
