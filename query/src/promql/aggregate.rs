//! Aggregation operators (`sum`, `avg`, `topk`, …) with `by`/`without` grouping, following
//! Prometheus' `aggregation` in promql/engine.go (Kahan summation included).

use std::cmp::Ordering;
use std::collections::HashMap;

use pharos_model::{Labels, METRIC_NAME};
use promql_parser::parser::token::{
    TokenId,
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_LIMIT_RATIO, T_LIMITK, T_MAX, T_MIN,
    T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::annotations::Anchor;
use super::eval::{Evaluator, LabelMemo};
use super::selector::Frame;
use super::step_table::{StepTable, distinct_within};
use super::value::{Sample, Value, format_float};
use crate::error::{Error, Result};

/// Neumaier-compensated addition, Prometheus' `kahanSumInc` (shared with the histogram math).
pub use pharos_model::float::kahan_sum_inc;

/// Compensated sum of `values`.
pub fn kahan_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let (s, c) = values
        .into_iter()
        .fold((0.0, 0.0), |(s, c), v| kahan_sum_inc(v, s, c));
    s + c
}

/// Mean as Prometheus computes it: compensated sum, switching to an incremental mean when the
/// sum would overflow.
pub fn kahan_mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut mean = Mean::default();
    values.into_iter().for_each(|v| mean.push(v));
    mean.value()
}

/// [`kahan_mean`]'s running state.
#[derive(Clone, Copy, Default)]
pub struct Mean {
    sum: f64,
    c: f64,
    mean: f64,
    count: f64,
    incremental: bool,
}

impl Mean {
    fn push(&mut self, f: f64) {
        self.count += 1.0;
        if !self.incremental {
            let (ns, nc) = kahan_sum_inc(f, self.sum, self.c);
            if self.count == 1.0 || !ns.is_infinite() {
                (self.sum, self.c) = (ns, nc);
                return;
            }
            self.incremental = true;
            self.mean = self.sum / (self.count - 1.0);
            self.c /= self.count - 1.0;
        }
        if self.mean.is_infinite() {
            if f.is_infinite() && (self.mean > 0.0) == (f > 0.0) {
                return;
            }
            if !f.is_infinite() && !f.is_nan() {
                return;
            }
        }
        let corrected = self.mean + self.c;
        (self.mean, self.c) = kahan_sum_inc(f / self.count - corrected / self.count, self.mean, self.c);
    }

    fn value(&self) -> f64 {
        if self.incremental { self.mean + self.c } else { (self.sum + self.c) / self.count }
    }
}

/// The running value of one group of the aggregations that fold their members' values one at
/// a time, in input order: the step-by-step evaluation and tables (see [`tabulate`]) share it,
/// so both add up in the same order and agree bit for bit.
#[derive(Clone, Copy)]
enum Fold {
    Sum(f64, f64),
    Avg(Mean),
    Count(f64),
    Group,
    Max(f64),
    Min(f64),
}

impl Fold {
    /// The fold of `op` after its first value; `None` for operators that are not folds.
    fn start(op: TokenId, first: f64) -> Option<Fold> {
        Some(match op {
            T_SUM => {
                let (s, c) = kahan_sum_inc(first, 0.0, 0.0);
                Fold::Sum(s, c)
            }
            T_AVG => {
                let mut m = Mean::default();
                m.push(first);
                Fold::Avg(m)
            }
            T_COUNT => Fold::Count(1.0),
            T_GROUP => Fold::Group,
            T_MAX => Fold::Max(first),
            T_MIN => Fold::Min(first),
            _ => return None,
        })
    }

    fn push(&mut self, v: f64) {
        match self {
            Fold::Sum(s, c) => (*s, *c) = kahan_sum_inc(v, *s, *c),
            Fold::Avg(m) => m.push(v),
            Fold::Count(n) => *n += 1.0,
            Fold::Group => {}
            Fold::Max(acc) => {
                if *acc < v || acc.is_nan() {
                    *acc = v
                }
            }
            Fold::Min(acc) => {
                if *acc > v || acc.is_nan() {
                    *acc = v
                }
            }
        }
    }

    fn value(&self) -> f64 {
        match self {
            Fold::Sum(s, c) => s + c,
            Fold::Avg(m) => m.value(),
            Fold::Count(n) => *n,
            Fold::Group => 1.0,
            Fold::Max(v) | Fold::Min(v) => *v,
        }
    }
}

/// Population variance (Welford), NaN when any value is NaN or infinite.
pub fn variance(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
    for f in values {
        if f.is_nan() || f.is_infinite() {
            return f64::NAN;
        }
        count += 1.0;
        let delta = f - mean;
        mean += delta / count;
        m2 += delta * (f - mean);
    }
    m2 / count
}

/// Prometheus' `quantile`: linear interpolation between the closest ranks.
pub fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(nan_first);
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn nan_first(a: &f64, b: &f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// An aggregation's group labels: `by` keeps the listed labels, `without` drops them and the
/// metric name, neither gives one group.
pub(crate) fn grouping_labels(labels: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        Some(LabelModifier::Include(by)) => labels.filter(|k| by.labels.iter().any(|l| l == k)),
        Some(LabelModifier::Exclude(without)) => {
            labels.filter(|k| k != METRIC_NAME && !without.labels.iter().any(|l| l == k))
        }
        None => Labels::default(),
    }
}

/// Evaluates an aggregation at `t`.
pub fn eval(ev: &Evaluator, a: &AggregateExpr, t: i64) -> Result<Value> {
    let op = a.op.id();
    // `quantile`'s φ, evaluated once per step (and checked, as Prometheus does, at every
    // step, with or without input); NaN for the other operators.
    let q = match (op, &a.param) {
        (T_QUANTILE, Some(p)) => {
            let q = ev.eval_scalar(p, t)?;
            ev.annotations.check_quantile(q, Anchor::aggregate_param(a));
            q
        }
        (T_QUANTILE, None) => return Err(Error::BadData(format!("{} requires a parameter", a.op))),
        _ => f64::NAN,
    };
    if let Some(table) = ev.tables.aggregate(a)
        && let Some(i) = table.step_index(t)
    {
        return Ok(Value::Vector(table.vector(i)));
    }
    if let Some(out) = tabulated(ev, a, t, q)? {
        return Ok(Value::Vector(out));
    }
    let input = ev.eval_vector(&a.expr, t)?;
    let param_scalar = |p: &Option<Box<Expr>>| -> Result<f64> {
        match p {
            Some(p) => ev.eval_scalar(p, t),
            None => Err(Error::BadData(format!("{} requires a parameter", a.op))),
        }
    };

    if op == T_COUNT_VALUES {
        let label = match a.param.as_deref().map(|p| ev.eval(p, t)).transpose()? {
            Some(Value::String(s)) => s,
            _ => {
                return Err(Error::BadData(
                    "count_values requires a string parameter".into(),
                ));
            }
        };
        if !is_valid_label_name(&label) {
            return Err(Error::BadData(format!("invalid label name {label:?}")));
        }
        let mut counts: Vec<(Labels, f64)> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        for s in &input {
            let key = grouping_labels(&s.labels, &a.modifier).with(&label, &format_float(s.value));
            let i = *index.entry(key.clone()).or_insert_with(|| {
                counts.push((key, 0.0));
                counts.len() - 1
            });
            counts[i].1 += 1.0;
        }
        return Ok(Value::Vector(
            counts
                .into_iter()
                .map(|(labels, value)| Sample { labels, value })
                .collect(),
        ));
    }

    // Group the input in first-seen order, as Prometheus does. Group label sets come from the
    // memo, so one group's sets usually share an address: groups are found by address first and
    // by content only for an address not seen yet. `held` keeps every address valid meanwhile.
    let tag = a as *const AggregateExpr as usize;
    let mut groups: Vec<(Labels, Vec<Sample>)> = Vec::new();
    // Keys are addresses: a multiplicative hash suffices.
    let mut by_address: rustc_hash::FxHashMap<usize, usize> = Default::default();
    let mut by_content: HashMap<Labels, usize> = HashMap::new();
    let mut held: Vec<Labels> = Vec::new();
    for s in input {
        let key = ev.memo.derive(&s.labels, tag, |l| grouping_labels(l, &a.modifier));
        let i = match by_address.get(&key.ptr_id()) {
            Some(i) => *i,
            None => {
                let i = *by_content.entry(key.clone()).or_insert_with(|| {
                    groups.push((key.clone(), Vec::new()));
                    groups.len() - 1
                });
                by_address.insert(key.ptr_id(), i);
                held.push(key);
                i
            }
        };
        groups[i].1.push(s);
    }

    if op == T_LIMIT_RATIO || op == T_LIMITK {
        let param = param_scalar(&a.param)?;
        return limit(a, param, groups.into_iter().map(|(_, members)| members), &ev.annotations).map(Value::Vector);
    }

    if op == T_TOPK || op == T_BOTTOMK {
        let k = count_param(param_scalar(&a.param)?, a)?;
        let mut out = Vec::new();
        for (_, mut members) in groups {
            // NaN sorts last for both: it is neither the largest nor the smallest.
            members.sort_by(|x, y| {
                let ord = if op == T_TOPK {
                    nan_first(&y.value, &x.value)
                } else {
                    nan_first(&x.value, &y.value)
                };
                match (x.value.is_nan(), y.value.is_nan()) {
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ => ord,
                }
            });
            out.extend(members.into_iter().take(k));
        }
        return Ok(Value::Vector(out));
    }

    let mut out = Vec::with_capacity(groups.len());
    for (labels, members) in groups {
        let value = reduce(op, members.iter().map(|s| s.value), q)
            .ok_or_else(|| Error::unsupported(format!("aggregation {}", a.op)))?;
        out.push(Sample { labels, value });
    }
    Ok(Value::Vector(out))
}

/// Operators [`reduce`] computes.
const REDUCING: &[TokenId] = &[
    T_SUM, T_AVG, T_COUNT, T_GROUP, T_MAX, T_MIN, T_STDVAR, T_STDDEV, T_QUANTILE,
];

/// One group's value for the operators that reduce its members' values (in input order) to a
/// number; `q` is `quantile`'s parameter. `None` for any other operator or no values.
fn reduce(op: TokenId, values: impl Iterator<Item = f64> + Clone, q: f64) -> Option<f64> {
    let first = values.clone().next()?;
    if let Some(mut fold) = Fold::start(op, first) {
        values.skip(1).for_each(|v| fold.push(v));
        return Some(fold.value());
    }
    Some(match op {
        T_STDVAR => variance(values),
        T_STDDEV => variance(values).sqrt(),
        T_QUANTILE => quantile(q, values.collect()),
        _ => return None,
    })
}

/// A reducing aggregation of a tabulated expression at `t` (see
/// [`super::step_table`]): the table maps each series to its group once per query, so a step
/// only buckets the present values (`q`: `quantile`'s φ). `None` when the aggregation or its input is not of that
/// kind.
fn tabulated(ev: &Evaluator, a: &AggregateExpr, t: i64, q: f64) -> Result<Option<Vec<Sample>>> {
    let op = a.op.id();
    if !REDUCING.contains(&op) {
        return Ok(None);
    }
    let Some((table, i)) = ev.tables.of_expr(&a.expr).and_then(|table| Some((table, table.step_index(t)?))) else {
        return Ok(None);
    };
    let tag = a as *const AggregateExpr as usize;
    let grouping = table.grouping(tag, |l| ev.memo.derive(l, tag, |l| grouping_labels(l, &a.modifier)));
    // Groups in first-seen order, as Prometheus emits them.
    let mut slot = vec![usize::MAX; grouping.labels.len()];
    let mut order: Vec<usize> = Vec::new();
    let mut members: Vec<Vec<f64>> = Vec::new();
    for (series, value) in table.row(i) {
        let g = grouping.of_series[series];
        if slot[g] == usize::MAX {
            slot[g] = order.len();
            order.push(g);
            members.push(Vec::new());
        }
        members[slot[g]].push(value);
    }
    let mut out = Vec::with_capacity(order.len());
    for (g, values) in order.into_iter().zip(members) {
        let value = reduce(op, values.iter().copied(), q)
            .ok_or_else(|| Error::Internal(format!("aggregation {} of an empty group", a.op)))?;
        out.push(Sample { labels: grouping.labels[g].clone(), value });
    }
    Ok(Some(out))
}

/// The aggregation `a` at every step of a range query from its input's table, into a table
/// of its groups: the members of each group and step are folded in the table's series order,
/// which is the order the step-by-step path reads them in. `None` for operators other than
/// `sum`, `avg`, `count`, `group`, `max` and `min`, or a table over `max_cells`.
///
/// The table's groups are in the order of their first series, not Prometheus' first-seen order
/// at each step: only a consumer indifferent to order may read it (the query's answer, which
/// is sorted, or an elementwise binary operation).
pub fn tabulate(a: &AggregateExpr, input: &StepTable, memo: &LabelMemo, frame: Frame, max_cells: usize) -> Option<StepTable> {
    let op = a.op.id();
    if a.param.is_some() {
        return None;
    }
    // Only folds (the value is not used).
    Fold::start(op, 0.0)?;
    let tag = a as *const AggregateExpr as usize;
    let grouping = input.grouping(tag, |l| memo.derive(l, tag, |l| grouping_labels(l, &a.modifier)));
    let steps = input.steps();
    let labels = distinct_within(grouping.labels.clone(), steps, max_cells)?;
    let mut folds: Vec<Option<Fold>> = vec![None; labels.len() * steps];
    for (s, &g) in grouping.of_series.iter().enumerate() {
        let row = &mut folds[g * steps..(g + 1) * steps];
        for (i, slot) in row.iter_mut().enumerate() {
            if let Some(v) = input.get(s, i) {
                match slot {
                    Some(fold) => fold.push(v),
                    None => *slot = Fold::start(op, v),
                }
            }
        }
    }
    let table = StepTable::empty(labels, frame);
    for (at, fold) in folds.iter().enumerate() {
        if let Some(fold) = fold {
            table.set(at / steps, at % steps, fold.value());
        }
    }
    Some(table)
}

/// `limitk(param, …)` or `limit_ratio(param, …)` over the members of each group (in the groups'
/// order), of either sample kind: the first `k` series of each group in Prometheus' series order
/// (sorted by labels), or the series whose label hash falls in the ratio's part of [0, 1] (the
/// grouping does not change the choice), as Prometheus samples them.
pub(crate) fn limit<T: super::binary::Element>(
    a: &AggregateExpr,
    param: f64,
    groups: impl Iterator<Item = Vec<T>>,
    annotations: &super::annotations::Annotations,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    if a.op.id() == T_LIMIT_RATIO {
        if param.is_nan() {
            return Err(Error::Execution(format!("Ratio value is NaN for {}", a.op)));
        }
        let ratio = param.clamp(-1.0, 1.0);
        if ratio != param {
            annotations.invalid_ratio(param, ratio, Anchor::aggregate_param(a));
        }
        if ratio != 0.0 {
            for members in groups {
                out.extend(members.into_iter().filter(|s| keeps_in_ratio(ratio, s.labels())));
            }
        }
        return Ok(out);
    }
    let k = count_param(param, a)?;
    for mut members in groups {
        members.sort_by(|x, y| x.labels().cmp(y.labels()));
        out.extend(members.into_iter().take(k));
    }
    Ok(out)
}

/// True when `name` is a valid Prometheus label name.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `limit_ratio(ratio, …)` keeps the series `labels`: its offset, Prometheus' label
/// hash (xxHash64 of each `name 0xff value 0xff` in name order) over the largest `u64`, is below
/// `ratio` for a positive ratio, and at least `1 + ratio` for a negative one (the complement).
pub fn keeps_in_ratio(ratio: f64, labels: &Labels) -> bool {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash64::with_seed(0);
    for (name, value) in labels.iter() {
        h.write(name.as_bytes());
        h.write(&[0xff]);
        h.write(value.as_bytes());
        h.write(&[0xff]);
    }
    let offset = h.finish() as f64 / u64::MAX as f64;
    if ratio >= 0.0 { offset < ratio } else { offset >= 1.0 + ratio }
}

/// The `k` of `topk`/`bottomk`/`limitk`: the parameter truncated to a count (below 1 → 0); NaN
/// is an execution error, as in Prometheus.
fn count_param(k: f64, a: &AggregateExpr) -> Result<usize> {
    if k.is_nan() {
        return Err(Error::Execution(format!("Parameter value is NaN for {}", a.op)));
    }
    Ok(if k >= 1.0 { k.min(usize::MAX as f64) as usize } else { 0 })
}
