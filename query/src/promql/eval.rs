//! The evaluator: one expression at one instant, over data fetched up front.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;

use rustc_hash::{FxHashMap, FxHashSet};

use pharos_model::Labels;
use promql_parser::parser::{Expr, MatrixSelector};

use super::annotations::Annotations;
use super::selector::{Fetched, Frame, reference_time};
use super::step_table::StepTables;
use super::value::{RangeSeries, Sample, Value};
use super::{aggregate, binary, functions};
use crate::error::{Error, Result};

/// Evaluates expressions of one query at any instant of its frame.
pub struct Evaluator {
    /// The query's time frame (for `@ start()`/`@ end()`).
    pub frame: Frame,
    /// Every selector's samples.
    pub fetched: Fetched,
    /// Label sets derived once per query rather than once per step.
    pub memo: LabelMemo,
    /// Range function calls, instant selectors and binary operations evaluated for all steps
    /// of a range query up front.
    pub tables: StepTables,
    /// Warnings and infos for the answer.
    pub annotations: Annotations,
}

/// Derived label sets (a series without its name, its aggregation group), computed once per
/// input set and kept canonical (equal content → one shared set), so a range query derives them
/// once instead of at every step and can compare them by address. Keys are addresses of input
/// sets the memo keeps alive, so an address cannot be reused while its entry exists.
#[derive(Default)]
pub struct LabelMemo {
    derived: RefCell<FxHashMap<(usize, usize), (Labels, Labels)>>,
    canonical: RefCell<HashSet<Labels, ahash::RandomState>>,
    /// Set when a derivation was returned uncached (the memo was full): from then until the
    /// memo starts over, equal content no longer implies equal address.
    degraded: Cell<bool>,
}

/// Entries after which the memo stops caching (inputs that are new at every step, e.g. results
/// of binary operators, would otherwise grow it with the number of steps); it starts over at
/// the next step of a range query.
const MEMO_CAPACITY: usize = 1 << 18;

impl LabelMemo {
    /// `derive(input)` for the operation `tag` (distinct per kind of derivation), canonical.
    pub fn derive(&self, input: &Labels, tag: usize, derive: impl FnOnce(&Labels) -> Labels) -> Labels {
        let key = (input.ptr_id(), tag);
        if let Some((_, out)) = self.derived.borrow().get(&key) {
            return out.clone();
        }
        if self.derived.borrow().len() >= MEMO_CAPACITY {
            self.degraded.set(true);
            return derive(input);
        }
        let out = derive(input);
        let out = {
            let mut canonical = self.canonical.borrow_mut();
            match canonical.get(&out) {
                Some(c) => c.clone(),
                None => {
                    canonical.insert(out.clone());
                    out
                }
            }
        };
        self.derived.borrow_mut().insert(key, (input.clone(), out.clone()));
        out
    }

    /// Called before each step of a range query: starts over when the memo got large.
    pub fn new_step(&self) {
        if self.derived.borrow().len() >= MEMO_CAPACITY {
            self.derived.borrow_mut().clear();
            self.canonical.borrow_mut().clear();
            self.degraded.set(false);
        }
    }

    /// True while equal content implies equal address for every set derived since the memo
    /// (re)started.
    pub fn is_canonical(&self) -> bool {
        !self.degraded.get()
    }

    /// The set without `__name__`.
    pub fn without_name(&self, input: &Labels) -> Labels {
        self.derive(input, 0, Labels::without_name)
    }
}

/// Like [`check_unique`] for sets that all came from `memo`: while it is canonical, distinct
/// addresses mean distinct content, which spares hashing every set.
pub fn check_unique_canonical(memo: &LabelMemo, samples: Vec<Sample>) -> Result<Vec<Sample>> {
    if memo.is_canonical() {
        let mut seen: FxHashSet<usize> = FxHashSet::with_capacity_and_hasher(samples.len(), Default::default());
        if samples.iter().all(|s| seen.insert(s.labels.ptr_id())) {
            return Ok(samples);
        }
    }
    check_unique(samples)
}

impl Evaluator {
    /// Evaluates `expr` at time `t` (ms).
    pub fn eval(&self, expr: &Expr, t: i64) -> Result<Value> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(samples) => {
                    let out = samples
                        .into_iter()
                        .map(|s| Sample {
                            labels: self.memo.without_name(&s.labels),
                            value: -s.value,
                        })
                        .collect();
                    check_unique_canonical(&self.memo, out).map(Value::Vector)
                }
                other => Err(Error::BadData(format!(
                    "unary minus is not defined on a {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => {
                if let Some(table) = self.tables.selector(vs)
                    && let Some(i) = table.step_index(t)
                {
                    return Ok(Value::Vector(table.vector(i)));
                }
                let at = reference_time(vs, self.frame, t);
                Ok(Value::Vector(self.fetched.instant(vs, at)?))
            }
            Expr::MatrixSelector(ms) => Ok(Value::Matrix(self.range(ms, t)?)),
            Expr::Binary(b) => binary::eval(self, b, t),
            Expr::Aggregate(a) => aggregate::eval(self, a, t),
            Expr::Call(c) => functions::call(self, c, t),
            Expr::Subquery(sq) => Ok(Value::Matrix(super::subquery::eval(self, sq, t)?)),
            Expr::Extension(_) => Err(Error::unsupported("extension expression")),
        }
    }

    /// The range vector of a matrix selector at evaluation time `t`.
    pub fn range(&self, ms: &MatrixSelector, t: i64) -> Result<Vec<RangeSeries>> {
        let at = reference_time(&ms.vs, self.frame, t);
        self.fetched.range(&ms.vs, ms.range.as_millis() as i64, at)
    }

    /// Evaluates an expression the parser typed as instant vector.
    pub fn eval_vector(&self, expr: &Expr, t: i64) -> Result<Vec<Sample>> {
        match self.eval(expr, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(Error::Internal(format!(
                "expected a vector, got a {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates an expression the parser typed as scalar.
    pub fn eval_scalar(&self, expr: &Expr, t: i64) -> Result<f64> {
        match self.eval(expr, t)? {
            Value::Scalar(v) => Ok(v),
            other => Err(Error::Internal(format!(
                "expected a scalar, got a {}",
                other.type_name()
            ))),
        }
    }
}

/// Prometheus rejects a vector holding one label set twice (e.g. after dropping names).
pub fn check_unique<T: super::binary::Element>(samples: Vec<T>) -> Result<Vec<T>> {
    let mut seen: HashSet<&Labels, ahash::RandomState> = HashSet::with_capacity_and_hasher(samples.len(), Default::default());
    for s in &samples {
        if !seen.insert(s.labels()) {
            return Err(Error::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(samples)
}

/// Unwraps parentheses (`rate((x[5m]))` is `rate(x[5m])`).
pub fn unwrap_parens(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(p) = expr {
        expr = &p.expr;
    }
    expr
}
