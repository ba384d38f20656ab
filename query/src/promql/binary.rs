//! Binary operators: arithmetic, comparisons (filtering or `bool`), set operators, and vector
//! matching (`on`/`ignoring`, `group_left`/`group_right`), following Prometheus' `VectorBinop`.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use pharos_model::{Labels, METRIC_NAME};
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality, VectorMatchFillValues};

use super::eval::{Evaluator, LabelMemo, check_unique, check_unique_canonical};
use super::selector::Frame;
use super::step_table::{Operand, StepTable, distinct_within};
use super::value::{Sample, Value};
use crate::error::{Error, Result};

/// Evaluates a binary expression at `t`.
pub fn eval(ev: &Evaluator, b: &BinaryExpr, t: i64) -> Result<Value> {
    let fill = b.modifier.as_ref().map(|m| m.fill_values.clone()).unwrap_or_default();
    if (fill.lhs.is_some() || fill.rhs.is_some()) && matches!(b.op.id(), T_LAND | T_LOR | T_LUNLESS) {
        return Err(Error::BadData("filling in missing series not allowed for set operators".into()));
    }
    if let Some(table) = ev.tables.binary(b)
        && let Some(i) = table.step_index(t)
    {
        return Ok(Value::Vector(table.vector(i)));
    }
    let op = b.op.id();
    let return_bool = b.return_bool();
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = apply(op, l, r)?;
            Ok(Value::Scalar(if is_comparison(op) {
                bool_value(keep)
            } else {
                v
            }))
        }
        (Value::Vector(l), Value::Scalar(r)) => vector_scalar(&ev.memo, op, l, r, false, return_bool).map(Value::Vector),
        (Value::Scalar(l), Value::Vector(r)) => vector_scalar(&ev.memo, op, r, l, true, return_bool).map(Value::Vector),
        (Value::Vector(l), Value::Vector(r)) => {
            let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
            let derived = Derived::new(&ev.memo, b, &matching);
            match op {
                T_LAND | T_LOR | T_LUNLESS => Ok(Value::Vector(set_op(op, l, r, &derived))),
                _ => {
                    let card = b
                        .modifier
                        .as_ref()
                        .map(|m| m.card.clone())
                        .unwrap_or(VectorMatchCardinality::OneToOne);
                    vector_vector(l, r, &derived, &card, &fill, Results::of(op, return_bool), |l, r| pair_element(op, *l, *r, return_bool))
                        .and_then(check_unique)
                        .map(Value::Vector)
                }
            }
        }
        (l, r) => Err(Error::BadData(format!(
            "binary operator {} is not defined between a {} and a {}",
            b.op,
            l.type_name(),
            r.type_name()
        ))),
    }
}

pub(crate) fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Arithmetic operators drop the metric name of their result.
pub(crate) fn drops_name(op: u16) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD | T_ATAN2)
}

fn bool_value(keep: bool) -> f64 {
    if keep { 1.0 } else { 0.0 }
}

/// Prometheus' `vectorElemBinop`: the value and whether a comparison keeps the element.
fn apply(op: u16, l: f64, r: f64) -> Result<(f64, bool)> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        other => {
            return Err(Error::unsupported(format!(
                "binary operator {}",
                promql_parser::parser::token::TokenType::new(other)
            )));
        }
    })
}

/// Label sets a vector-vector operation derives from its operands' sets, once per query (the
/// same series meet at every step of a range query) through the evaluator's [`LabelMemo`].
pub(crate) struct Derived<'a> {
    memo: &'a LabelMemo,
    /// The operation's address: its memo tags are `expr + 1` (signature) and `expr + 2` (result
    /// labels), inside the expression's own allocation, so distinct from every other tag.
    expr: usize,
    matching: &'a Option<LabelModifier>,
}

impl<'a> Derived<'a> {
    pub(crate) fn new(memo: &'a LabelMemo, b: &BinaryExpr, matching: &'a Option<LabelModifier>) -> Self {
        Derived { memo, expr: b as *const BinaryExpr as usize, matching }
    }

    fn signature(&self, labels: &Labels) -> Labels {
        self.memo.derive(labels, self.expr + 1, |l| signature(l, self.matching))
    }

    /// [`result_labels`], memoized when the result depends on the "many" side alone (no
    /// `group_left`/`group_right` labels copied from the "one" side).
    fn result_labels(&self, many: &Labels, one: &Labels, op: u16, one_to_one: bool, include: &[String], return_bool: bool) -> Labels {
        let derive = |m: &Labels| result_labels(m, one, op, self.matching, one_to_one, include, return_bool);
        if include.is_empty() { self.memo.derive(many, self.expr + 2, derive) } else { derive(many) }
    }
}

fn vector_scalar(
    memo: &LabelMemo,
    op: u16,
    vector: Vec<Sample>,
    scalar: f64,
    scalar_on_left: bool,
    return_bool: bool,
) -> Result<Vec<Sample>> {
    let drop_name = drops_name(op) || return_bool;
    let mut out = Vec::with_capacity(vector.len());
    for s in vector {
        if let Some(value) = scalar_element(op, s.value, scalar, scalar_on_left, return_bool)? {
            let labels = if drop_name { memo.without_name(&s.labels) } else { s.labels };
            out.push(Sample { labels, value });
        }
    }
    // Every set came from the memo when names were dropped; otherwise they are the operand's.
    if drop_name { check_unique_canonical(memo, out) } else { check_unique(out) }
}

/// The result of a vector element `v` with `scalar` (on the left when `scalar_on_left`), if
/// kept.
pub(crate) fn scalar_element(op: u16, v: f64, scalar: f64, scalar_on_left: bool, return_bool: bool) -> Result<Option<f64>> {
    let (l, r) = if scalar_on_left { (scalar, v) } else { (v, scalar) };
    let (mut value, keep) = apply(op, l, r)?;
    if is_comparison(op) {
        value = v; // a comparison keeps the vector's value on either side
    }
    Ok(if return_bool {
        Some(bool_value(keep))
    } else {
        keep.then_some(value)
    })
}

/// The result of two matched vector elements, if kept.
pub(crate) fn pair_element(op: u16, l: f64, r: f64, return_bool: bool) -> Result<Option<f64>> {
    let (value, keep) = apply(op, l, r)?;
    Ok(if return_bool {
        Some(bool_value(keep))
    } else {
        keep.then_some(value)
    })
}

/// True for an arithmetic or comparison operation matching one to one (set operators,
/// `group_left`/`group_right` and the fill modifier aside): what [`tabulate`] may evaluate.
pub fn is_elementwise(b: &BinaryExpr) -> bool {
    let op = b.op.id();
    let plain = match &b.modifier {
        None => true,
        Some(m) => {
            m.fill_values.lhs.is_none() && m.fill_values.rhs.is_none() && matches!(m.card, VectorMatchCardinality::OneToOne)
        }
    };
    plain && (drops_name(op) || is_comparison(op))
}

/// The binary operation `b` at every step of a range query, from its operands' tables (or a
/// table and a literal), into a table: the series are matched once for all steps. `None` when
/// the operation is not [`is_elementwise`], or when at some step it could fail (two series
/// of one side with one signature, colliding result label sets) or the table would exceed
/// `max_cells`: the step-by-step path then evaluates it, and reports the error at the
/// steps where it happens.
pub fn tabulate(
    b: &BinaryExpr,
    lhs: Operand<'_>,
    rhs: Operand<'_>,
    frame: Frame,
    memo: &LabelMemo,
    max_cells: usize,
) -> Option<StepTable> {
    if !is_elementwise(b) {
        return None;
    }
    let op = b.op.id();
    let return_bool = b.return_bool();
    match (lhs, rhs) {
        (Operand::Table(v), Operand::Scalar(s)) => scalar_table(op, v, s, false, return_bool, frame, memo, max_cells),
        (Operand::Scalar(s), Operand::Table(v)) => scalar_table(op, v, s, true, return_bool, frame, memo, max_cells),
        (Operand::Table(l), Operand::Table(r)) => {
            let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
            let derived = Derived::new(memo, b, &matching);
            pair_table(op, l, r, &derived, return_bool, frame, max_cells)
        }
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn scalar_table(
    op: u16,
    vector: &StepTable,
    scalar: f64,
    scalar_on_left: bool,
    return_bool: bool,
    frame: Frame,
    memo: &LabelMemo,
    max_cells: usize,
) -> Option<StepTable> {
    let drop_name = drops_name(op) || return_bool;
    let labels =
        vector.labels.iter().map(|l| if drop_name { memo.without_name(l) } else { l.clone() }).collect();
    let table = StepTable::empty(distinct_within(labels, vector.steps(), max_cells)?, frame);
    for s in 0..vector.labels.len() {
        for i in 0..vector.steps() {
            if let Some(v) = vector.get(s, i)
                && let Some(value) = scalar_element(op, v, scalar, scalar_on_left, return_bool).ok()?
            {
                table.set(s, i, value);
            }
        }
    }
    Some(table)
}

/// One-to-one matching of two tables: each signature at most once per side, so no step can
/// meet a duplicate or a many-to-one match.
fn pair_table(
    op: u16,
    lhs: &StepTable,
    rhs: &StepTable,
    derived: &Derived<'_>,
    return_bool: bool,
    frame: Frame,
    max_cells: usize,
) -> Option<StepTable> {
    let mut right: HashMap<Labels, usize> = HashMap::with_capacity_and_hasher(rhs.labels.len(), Default::default());
    for (j, l) in rhs.labels.iter().enumerate() {
        if right.insert(derived.signature(l), j).is_some() {
            return None;
        }
    }
    let mut matched = vec![false; rhs.labels.len()];
    let mut pairs = Vec::new();
    let mut labels = Vec::new();
    for (i, l) in lhs.labels.iter().enumerate() {
        let Some(&j) = right.get(&derived.signature(l)) else {
            continue;
        };
        if std::mem::replace(&mut matched[j], true) {
            return None;
        }
        pairs.push((i, j));
        labels.push(derived.result_labels(l, &rhs.labels[j], op, true, &[], return_bool));
    }
    let table = StepTable::empty(distinct_within(labels, lhs.steps(), max_cells)?, frame);
    for (out, (i, j)) in pairs.into_iter().enumerate() {
        for step in 0..lhs.steps() {
            if let (Some(l), Some(r)) = (lhs.get(i, step), rhs.get(j, step))
                && let Some(value) = pair_element(op, l, r, return_bool).ok()?
            {
                table.set(out, step, value);
            }
        }
    }
    Some(table)
}

/// The matching signature of a series: the `on` labels, or all but the `ignoring` labels and
/// the metric name.
fn signature(labels: &Labels, matching: &Option<LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => labels.filter(|k| on.labels.iter().any(|l| l == k)),
        Some(LabelModifier::Exclude(ign)) => {
            labels.filter(|k| k != METRIC_NAME && !ign.labels.iter().any(|l| l == k))
        }
        None => labels.without_name(),
    }
}

/// An element of an instant vector for the matching code: a float [`Sample`], or a float or
/// native histogram sample of the native evaluator.
pub(crate) trait Element: Sized {
    type Value;
    fn labels(&self) -> &Labels;
    fn value(&self) -> &Self::Value;
    fn new(labels: Labels, value: Self::Value) -> Self;
    /// A missing operand filled in with the float `value` (`fill`, `fill_left`, `fill_right`).
    fn filled(labels: Labels, value: f64) -> Self;
}

impl Element for Sample {
    type Value = f64;
    fn labels(&self) -> &Labels {
        &self.labels
    }
    fn value(&self) -> &f64 {
        &self.value
    }
    fn new(labels: Labels, value: f64) -> Self {
        Sample { labels, value }
    }
    fn filled(labels: Labels, value: f64) -> Self {
        Sample { labels, value }
    }
}

/// `and`, `or` or `unless` of two vectors, matched on their signatures.
pub(crate) fn set_op<T: Element>(op: u16, lhs: Vec<T>, rhs: Vec<T>, derived: &Derived<'_>) -> Vec<T> {
    let signatures = |side: &[T]| -> HashSet<Labels> { side.iter().map(|s| derived.signature(s.labels())).collect() };
    match op {
        T_LAND => {
            let right = signatures(&rhs);
            lhs.into_iter().filter(|s| right.contains(&derived.signature(s.labels()))).collect()
        }
        T_LUNLESS => {
            let right = signatures(&rhs);
            lhs.into_iter().filter(|s| !right.contains(&derived.signature(s.labels()))).collect()
        }
        _ => {
            let left = signatures(&lhs);
            let mut out = lhs;
            out.extend(rhs.into_iter().filter(|s| !left.contains(&derived.signature(s.labels()))));
            out
        }
    }
}

/// How a vector-vector operation labels its results: its operator and `bool` modifier.
#[derive(Clone, Copy)]
pub(crate) struct Results {
    op: u16,
    return_bool: bool,
}

impl Results {
    pub(crate) fn of(op: u16, return_bool: bool) -> Self {
        Results { op, return_bool }
    }
}

/// Prometheus' `VectorBinop`: the "many" side (the left one, the right one for `group_right`)
/// is iterated and the "one" side indexed by signature. A "many" element without a match is
/// paired with `fill.rhs`, then each "one" element no "many" element matched with `fill.lhs`,
/// a filled element carrying the signature's labels. The fill values are taken as written:
/// Prometheus applies them after swapping the sides of `group_right`, and so does Pharos.
/// `element(left, right)` is the value of a matched pair, `None` when a comparison drops it.
pub(crate) fn vector_vector<T: Element>(
    lhs: Vec<T>,
    rhs: Vec<T>,
    derived: &Derived<'_>,
    card: &VectorMatchCardinality,
    fill: &VectorMatchFillValues,
    results: Results,
    element: impl Fn(&T::Value, &T::Value) -> Result<Option<T::Value>>,
) -> Result<Vec<T>> {
    let Results { op, return_bool } = results;
    let fills = fill.lhs.is_some() || fill.rhs.is_some();
    if (lhs.is_empty() && rhs.is_empty()) || ((lhs.is_empty() || rhs.is_empty()) && !fills) {
        return Ok(Vec::new());
    }
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let include: Vec<String> = match card {
        VectorMatchCardinality::OneToMany(l) | VectorMatchCardinality::ManyToOne(l) => {
            l.labels.clone()
        }
        _ => Vec::new(),
    };
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let one_sigs: Vec<Labels> = one.iter().map(|s| derived.signature(s.labels())).collect();
    let many_sigs: Vec<Labels> = many.iter().map(|s| derived.signature(s.labels())).collect();
    // While the memo is canonical, equal signatures are one shared set: keyed by address, the
    // maps below hash no label strings (at every step of a range query).
    let by_address = derived.memo.is_canonical();
    let key = |sig: &Labels| if by_address { SigKey::Address(sig.ptr_id()) } else { SigKey::Content(sig.clone()) };
    let mut one_by_sig: HashMap<SigKey, (Labels, T)> = HashMap::with_capacity_and_hasher(one.len(), Default::default());
    // The "one" side's signatures in input order, for the filled results' order.
    let mut one_order: Vec<SigKey> = Vec::new();
    for (s, sig) in one.into_iter().zip(one_sigs) {
        if let Some((_, dup)) = one_by_sig.get(&key(&sig)) {
            let side = if one_to_many { "left" } else { "right" };
            let (mut a, mut b) = (go_labels(s.labels()), go_labels(dup.labels()));
            if b < a {
                std::mem::swap(&mut a, &mut b);
            }
            return Err(Error::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the \
                 operation: [{a}, {b}];many-to-many matching not allowed: matching labels must be \
                 unique on one side",
                go_labels(&sig)
            )));
        }
        if fill.lhs.is_some() {
            one_order.push(key(&sig));
        }
        one_by_sig.insert(key(&sig), (sig, s));
    }
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    // The signatures matched (or filled) so far and, unless one-to-one, the result label sets
    // each produced.
    let mut matched: HashMap<SigKey, Option<HashSet<Labels>>> = HashMap::default();
    let mut out = Vec::new();
    // Prometheus' `doBinOp`: the duplicate checks come before a comparison drops the element.
    let pair = |m: &T, o: &T, sig: SigKey, matched: &mut HashMap<SigKey, Option<HashSet<Labels>>>, out: &mut Vec<T>| -> Result<()> {
        let (l, r) = if one_to_many { (o.value(), m.value()) } else { (m.value(), o.value()) };
        let value = element(l, r)?;
        let result_labels = || derived.result_labels(m.labels(), o.labels(), op, one_to_one, &include, return_bool);
        if one_to_one {
            if matched.insert(sig, None).is_some() {
                return Err(Error::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit \
                     (group_left/group_right)"
                        .into(),
                ));
            }
            if let Some(value) = value {
                out.push(T::new(result_labels(), value));
            }
            return Ok(());
        }
        let labels = result_labels();
        if !matched.entry(sig).or_insert_with(|| Some(HashSet::default())).get_or_insert_default().insert(labels.clone()) {
            return Err(Error::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        if let Some(value) = value {
            out.push(T::new(labels, value));
        }
        Ok(())
    };
    for (m, sig) in many.into_iter().zip(many_sigs) {
        match one_by_sig.get(&key(&sig)) {
            Some((_, o)) => pair(&m, o, key(&sig), &mut matched, &mut out)?,
            None => {
                if let Some(value) = fill.rhs {
                    let k = key(&sig);
                    pair(&m, &T::filled(sig, value), k, &mut matched, &mut out)?;
                }
            }
        }
    }
    if let Some(value) = fill.lhs {
        for k in one_order {
            if matched.contains_key(&k) {
                continue;
            }
            let (sig, o) = &one_by_sig[&k];
            pair(&T::filled(sig.clone(), value), o, k, &mut matched, &mut out)?;
        }
    }
    Ok(out)
}

/// A matching signature as a map key: its address while the memo is canonical, else its content.
#[derive(Clone, PartialEq, Eq, Hash)]
enum SigKey {
    Address(usize),
    Content(Labels),
}

/// Labels as Go's `labels.Labels.String()` prints them: `{__name__="m", a="b"}`.
pub(crate) fn go_labels(labels: &Labels) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.to_string())))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Prometheus' `resultMetric`.
fn result_labels(
    many: &Labels,
    one: &Labels,
    op: u16,
    matching: &Option<LabelModifier>,
    one_to_one: bool,
    include: &[String],
    return_bool: bool,
) -> Labels {
    let mut labels = many.clone();
    if drops_name(op) || return_bool {
        labels = labels.without_name();
    }
    if one_to_one {
        labels = match matching {
            Some(LabelModifier::Include(on)) => labels.filter(|k| on.labels.iter().any(|l| l == k)),
            Some(LabelModifier::Exclude(ign)) => {
                labels.filter(|k| !ign.labels.iter().any(|l| l == k))
            }
            None => labels,
        };
    }
    for name in include {
        // `with` removes the label when the "one" side lacks it.
        labels = labels.with(name, one.get(name).unwrap_or(""));
    }
    labels
}
