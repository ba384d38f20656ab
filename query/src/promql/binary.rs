//! Binary operators: arithmetic, comparisons (filtering or `bool`), set operators, and vector
//! matching (`on`/`ignoring`, `group_left`/`group_right`), following Prometheus' `VectorBinop`.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use pharos_model::{Labels, METRIC_NAME};
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::{Evaluator, LabelMemo, check_unique, check_unique_canonical};
use super::value::{Sample, Value};
use crate::error::{Error, Result};

/// Evaluates a binary expression at `t`.
pub fn eval(ev: &Evaluator, b: &BinaryExpr, t: i64) -> Result<Value> {
    if let Some(m) = &b.modifier
        && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
    {
        return Err(Error::unsupported("the fill modifier of binary operators"));
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
            let derived = Derived { memo: &ev.memo, expr: b as *const BinaryExpr as usize, matching: &matching };
            match op {
                T_LAND | T_LOR | T_LUNLESS => Ok(Value::Vector(set_op(op, l, r, &derived))),
                _ => {
                    let card = b
                        .modifier
                        .as_ref()
                        .map(|m| m.card.clone())
                        .unwrap_or(VectorMatchCardinality::OneToOne);
                    vector_vector(op, l, r, &derived, &card, return_bool)
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

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Arithmetic operators drop the metric name of their result.
fn drops_name(op: u16) -> bool {
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
struct Derived<'a> {
    memo: &'a LabelMemo,
    /// The operation's address: its memo tags are `expr + 1` (signature) and `expr + 2` (result
    /// labels), inside the expression's own allocation, so distinct from every other tag.
    expr: usize,
    matching: &'a Option<LabelModifier>,
}

impl Derived<'_> {
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
        let (l, r) = if scalar_on_left {
            (scalar, s.value)
        } else {
            (s.value, scalar)
        };
        let (mut value, mut keep) = apply(op, l, r)?;
        if is_comparison(op) {
            value = s.value; // a comparison keeps the vector's value on either side
        }
        if return_bool {
            value = bool_value(keep);
            keep = true;
        }
        if keep {
            let labels = if drop_name { memo.without_name(&s.labels) } else { s.labels };
            out.push(Sample { labels, value });
        }
    }
    // Every set came from the memo when names were dropped; otherwise they are the operand's.
    if drop_name { check_unique_canonical(memo, out) } else { check_unique(out) }
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

fn set_op(op: u16, lhs: Vec<Sample>, rhs: Vec<Sample>, derived: &Derived<'_>) -> Vec<Sample> {
    let signatures = |side: &[Sample]| -> HashSet<Labels> { side.iter().map(|s| derived.signature(&s.labels)).collect() };
    match op {
        T_LAND => {
            let right = signatures(&rhs);
            lhs.into_iter().filter(|s| right.contains(&derived.signature(&s.labels))).collect()
        }
        T_LUNLESS => {
            let right = signatures(&rhs);
            lhs.into_iter().filter(|s| !right.contains(&derived.signature(&s.labels))).collect()
        }
        _ => {
            let left = signatures(&lhs);
            let mut out = lhs;
            out.extend(rhs.into_iter().filter(|s| !left.contains(&derived.signature(&s.labels))));
            out
        }
    }
}

fn vector_vector(
    op: u16,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    derived: &Derived<'_>,
    card: &VectorMatchCardinality,
    return_bool: bool,
) -> Result<Vec<Sample>> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let include: Vec<String> = match card {
        VectorMatchCardinality::OneToMany(l) | VectorMatchCardinality::ManyToOne(l) => {
            l.labels.clone()
        }
        _ => Vec::new(),
    };
    // The "many" side is iterated, the "one" side indexed by signature.
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let one_sigs: Vec<Labels> = one.iter().map(|s| derived.signature(&s.labels)).collect();
    let many_sigs: Vec<Labels> = many.iter().map(|s| derived.signature(&s.labels)).collect();
    // While the memo is canonical, equal signatures are one shared set: keyed by address, the
    // maps below hash no label strings (at every step of a range query).
    let by_address = derived.memo.is_canonical();
    let key = |sig: &Labels| if by_address { SigKey::Address(sig.ptr_id()) } else { SigKey::Content(sig.clone()) };
    let mut one_by_sig: HashMap<SigKey, (Labels, Sample)> = HashMap::with_capacity_and_hasher(one.len(), Default::default());
    for (s, sig) in one.into_iter().zip(one_sigs) {
        if let Some((_, dup)) = one_by_sig.get(&key(&sig)) {
            let side = if one_to_many { "left" } else { "right" };
            let (mut a, mut b) = (go_labels(&s.labels), go_labels(&dup.labels));
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
        one_by_sig.insert(key(&sig), (sig, s));
    }
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut matched: HashMap<SigKey, HashSet<Labels>> = HashMap::default();
    let mut matched_sigs: HashSet<SigKey> = HashSet::default();
    let mut out = Vec::new();
    for (m, sig) in many.into_iter().zip(many_sigs) {
        let sig = key(&sig);
        let Some((_, o)) = one_by_sig.get(&sig) else {
            continue;
        };
        let (l, r) = if one_to_many {
            (o.value, m.value)
        } else {
            (m.value, o.value)
        };
        let (mut value, keep) = apply(op, l, r)?;
        // Prometheus detects many-to-one without group_* even when a comparison drops the
        // colliding samples.
        if one_to_one && !matched_sigs.insert(sig.clone()) {
            return Err(Error::Execution(
                "multiple matches for labels: many-to-one matching must be explicit \
                 (group_left/group_right)"
                    .into(),
            ));
        }
        if return_bool {
            value = bool_value(keep);
        } else if !keep {
            continue;
        }
        let labels = derived.result_labels(&m.labels, &o.labels, op, one_to_one, &include, return_bool);
        // One-to-one: `matched_sigs` above already let each signature through once.
        if !one_to_one && !matched.entry(sig).or_default().insert(labels.clone()) {
            return Err(Error::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push(Sample { labels, value });
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
fn go_labels(labels: &Labels) -> String {
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
