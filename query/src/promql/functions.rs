//! Function calls: dispatch, instant-vector functions and label manipulation.

use std::cmp::Ordering;

use pharos_model::{Labels, METRIC_NAME};
use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr, VectorSelector};
use regex::Regex;

use super::aggregate::is_valid_label_name;
use super::annotations::Anchor;
use super::eval::{Evaluator, check_unique, unwrap_parens};
use super::range_functions::{Window, over_series};
use super::selector::{Frame, reference_time};
use super::value::{Sample, Value};
use crate::error::{Error, Result};

const RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "sum_over_time",
    "avg_over_time",
    "count_over_time",
    "present_over_time",
    "last_over_time",
    "min_over_time",
    "max_over_time",
    "stdvar_over_time",
    "stddev_over_time",
    "quantile_over_time",
    "changes",
    "resets",
    "deriv",
    "predict_linear",
    "mad_over_time",
    "first_over_time",
    "ts_of_min_over_time",
    "ts_of_max_over_time",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "absent_over_time",
    "double_exponential_smoothing",
];

/// Evaluates a function call at `t`.
pub fn call(ev: &Evaluator, c: &Call, t: i64) -> Result<Value> {
    let name = c.func.name;
    let args = &c.args.args;
    let arg = |i: usize| -> Result<&Expr> {
        args.get(i)
            .map(|a| a.as_ref())
            .ok_or_else(|| Error::BadData(format!("missing argument {} of {name}()", i + 1)))
    };
    if let Some(table) = ev.tables.get(c)
        && let Some(i) = table.step_index(t)
    {
        return Ok(Value::Vector(table.vector(i)));
    }
    if RANGE_FUNCTIONS.contains(&name) {
        return range_call(ev, c, args.iter().map(|a| a.as_ref()).collect(), t);
    }
    if let Some(v) = super::time_functions::frame_function(ev, name) {
        return Ok(Value::Scalar(v));
    }
    if super::time_functions::DATE_FUNCTIONS.contains(&name) {
        return super::time_functions::date_function(ev, name, args, t);
    }
    match name {
        "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
        "info" => super::info::eval(ev, c, t).map(Value::Vector),
        "timestamp" => super::time_functions::timestamp(ev, arg(0)?, t),
        "min_of" | "max_of" => {
            let (a, b) = (ev.eval_scalar(arg(0)?, t)?, ev.eval_scalar(arg(1)?, t)?);
            Ok(Value::Scalar(if name == "min_of" {
                go_min(a, b)
            } else {
                go_max(a, b)
            }))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let labels: Vec<String> = (1..args.len())
                .map(|i| string_arg(ev, args, i, t, name))
                .collect::<Result<_>>()?;
            let mut v = ev.eval_vector(arg(0)?, t)?;
            sort_by_label(&mut v, &labels, name == "sort_by_label_desc");
            Ok(Value::Vector(v))
        }
        "vector" => {
            let v = ev.eval_scalar(arg(0)?, t)?;
            Ok(Value::Vector(vec![Sample {
                labels: Labels::default(),
                value: v,
            }]))
        }
        "scalar" => {
            let v = ev.eval_vector(arg(0)?, t)?;
            Ok(Value::Scalar(if v.len() == 1 {
                v[0].value
            } else {
                f64::NAN
            }))
        }
        "pi" => Ok(Value::Scalar(std::f64::consts::PI)),
        "abs" | "ceil" | "floor" | "sqrt" | "exp" | "ln" | "log2" | "log10" | "sgn" | "sin"
        | "cos" | "tan" | "asin" | "acos" | "atan" | "sinh" | "cosh" | "tanh" | "asinh"
        | "acosh" | "atanh" | "deg" | "rad" => {
            let f: fn(f64) -> f64 = match name {
                "sin" => f64::sin,
                "cos" => f64::cos,
                "tan" => f64::tan,
                "asin" => f64::asin,
                "acos" => f64::acos,
                "atan" => f64::atan,
                "sinh" => f64::sinh,
                "cosh" => f64::cosh,
                "tanh" => f64::tanh,
                "asinh" => f64::asinh,
                "acosh" => f64::acosh,
                "atanh" => f64::atanh,
                "deg" => f64::to_degrees,
                "rad" => f64::to_radians,
                "abs" => f64::abs,
                "ceil" => f64::ceil,
                "floor" => f64::floor,
                "sqrt" => f64::sqrt,
                "exp" => f64::exp,
                "ln" => f64::ln,
                "log2" => f64::log2,
                "log10" => f64::log10,
                _ => |v: f64| {
                    if v > 0.0 {
                        1.0
                    } else if v < 0.0 {
                        -1.0
                    } else {
                        v
                    }
                },
            };
            map_values(ev.eval_vector(arg(0)?, t)?, f)
        }
        "round" => {
            let to_nearest = match args.get(1) {
                Some(a) => ev.eval_scalar(a, t)?,
                None => 1.0,
            };
            let inv = 1.0 / to_nearest;
            // Prometheus rounds half up: floor(v * inv + 0.5) / inv.
            map_values(ev.eval_vector(arg(0)?, t)?, |v| {
                (v * inv + 0.5).floor() / inv
            })
        }
        "clamp" => {
            let (min, max) = (ev.eval_scalar(arg(1)?, t)?, ev.eval_scalar(arg(2)?, t)?);
            if max < min {
                return Ok(Value::Vector(Vec::new()));
            }
            map_values(ev.eval_vector(arg(0)?, t)?, |v| go_max(min, go_min(max, v)))
        }
        "clamp_min" => {
            let min = ev.eval_scalar(arg(1)?, t)?;
            map_values(ev.eval_vector(arg(0)?, t)?, |v| go_max(min, v))
        }
        "clamp_max" => {
            let max = ev.eval_scalar(arg(1)?, t)?;
            map_values(ev.eval_vector(arg(0)?, t)?, |v| go_min(max, v))
        }
        "sort" | "sort_desc" => {
            let mut v = ev.eval_vector(arg(0)?, t)?;
            let desc = name == "sort_desc";
            v.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ if desc => b.value.partial_cmp(&a.value).unwrap_or(Ordering::Equal),
                _ => a.value.partial_cmp(&b.value).unwrap_or(Ordering::Equal),
            });
            Ok(Value::Vector(v))
        }
        "histogram_quantile" => {
            let q = ev.eval_scalar(arg(0)?, t)?;
            ev.annotations.check_quantile(q, Anchor::call_arg(c, 0));
            let notes = (&ev.annotations, Anchor::call_arg(c, 1));
            super::histogram::histogram_quantile(q, ev.eval_vector(arg(1)?, t)?, Some(notes)).map(Value::Vector)
        }
        "label_replace" => label_replace(ev, args, t),
        "label_join" => label_join(ev, args, t),
        "absent" => {
            let v = ev.eval_vector(arg(0)?, t)?;
            let vs = match unwrap_parens(arg(0)?) {
                Expr::VectorSelector(vs) => Some(vs),
                _ => None,
            };
            absent(v.is_empty(), vs)
        }
        other => Err(Error::unsupported(format!("function {other}()"))),
    }
}

/// `sort_by_label`: by the named labels' values in natural order (digit runs compared as
/// numbers), then by the whole label set; `desc` reverses both.
pub(crate) fn sort_by_label<T: super::binary::Element>(v: &mut [T], labels: &[String], desc: bool) {
    v.sort_by(|a, b| {
        let (a, b) = (a.labels(), b.labels());
        for l in labels {
            let (x, y) = (a.get(l).unwrap_or(""), b.get(l).unwrap_or(""));
            if x == y {
                continue;
            }
            let less = natural_less(x, y);
            return if less != desc {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        if desc { b.cmp(a) } else { a.cmp(b) }
    });
}

fn chunks(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = s.as_bytes();
    for i in 1..=bytes.len() {
        if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
            out.push(&s[start..i]);
            start = i;
        }
    }
    out
}

/// `a < b` in the natural order of `github.com/facette/natsort`, which Prometheus uses.
pub fn natural_less(a: &str, b: &str) -> bool {
    let (ca, cb) = (chunks(a), chunks(b));
    for (i, x) in ca.iter().enumerate() {
        let Some(y) = cb.get(i) else { return false };
        let equal = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(p), Ok(q)) if p != q => return p < q,
            (Ok(_), Ok(_)) => true,
            _ => x == y,
        };
        if equal {
            if i == ca.len() - 1 {
                return true;
            } else if i == cb.len() - 1 {
                return false;
            }
            continue;
        }
        return x < y;
    }
    false
}

fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Applies `f` to every value, dropping metric names (as Prometheus' simple functions do).
fn map_values(samples: Vec<Sample>, f: impl Fn(f64) -> f64) -> Result<Value> {
    let out = samples
        .into_iter()
        .map(|s| Sample {
            labels: s.labels.without_name(),
            value: f(s.value),
        })
        .collect();
    check_unique(out).map(Value::Vector)
}

fn range_call(ev: &Evaluator, c: &Call, args: Vec<&Expr>, t: i64) -> Result<Value> {
    let name = c.func.name;
    // quantile_over_time(φ, m) has the matrix second; predict_linear(m, s) and
    // double_exponential_smoothing(m, sf, tf) first.
    let (matrix_arg, scalar_arg) = match name {
        "quantile_over_time" => (args.get(1), args.first()),
        "predict_linear" | "double_exponential_smoothing" => (args.first(), args.get(1)),
        _ => (args.first(), None),
    };
    let param = match scalar_arg {
        Some(a) => ev.eval_scalar(a, t)?,
        None => f64::NAN,
    };
    let param2 = match (name, args.get(2)) {
        ("double_exponential_smoothing", Some(a)) => ev.eval_scalar(a, t)?,
        _ => f64::NAN,
    };
    let matrix_arg = matrix_arg.map(|a| unwrap_parens(a));
    let (series, window, intercept_ms) = match matrix_arg {
        Some(Expr::MatrixSelector(ms)) => {
            let at = reference_time(&ms.vs, ev.frame, t);
            let window = Window {
                start_ms: at.saturating_sub(ms.range.as_millis() as i64),
                end_ms: at,
            };
            (
                ev.fetched.range_slices(&ms.vs, ms.range.as_millis() as i64, at)?,
                window,
                intercept_time(ev.frame, ms.vs.at.is_some(), t),
            )
        }
        Some(Expr::Subquery(sq)) => {
            let at = super::subquery::reference_time(sq, ev.frame, t);
            let window = Window {
                start_ms: at.saturating_sub(sq.range.as_millis() as i64),
                end_ms: at,
            };
            let series = super::subquery::eval(ev, sq, t)?
                .into_iter()
                .map(|s| (s.labels, std::borrow::Cow::Owned(s.points)))
                .collect();
            (series, window, intercept_time(ev.frame, sq.at.is_some(), t))
        }
        _ => {
            return Err(Error::BadData(format!(
                "{name}() expects a range vector argument"
            )));
        }
    };
    if name == "absent_over_time" {
        return match matrix_arg {
            Some(Expr::MatrixSelector(ms)) => absent(series.is_empty(), Some(&ms.vs)),
            _ => absent(series.is_empty(), None),
        };
    }
    if name == "double_exponential_smoothing" {
        if !(param > 0.0 && param < 1.0) {
            return Err(Error::Execution(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {param}"
            )));
        }
        if !(param2 > 0.0 && param2 < 1.0) {
            return Err(Error::Execution(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {param2}"
            )));
        }
    }
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    let mut out = Vec::with_capacity(series.len());
    for (series_labels, points) in series {
        let value = if name == "double_exponential_smoothing" {
            super::range_functions::double_exponential_smoothing(&points, param, param2)
        } else {
            over_series(name, &points, window, param, intercept_ms)
                .map_err(|()| Error::unsupported(format!("function {name}()")))?
        };
        if let Some(value) = value {
            match name {
                "rate" | "increase" => {
                    ev.annotations.possible_non_counter(series_labels.get(METRIC_NAME).unwrap_or(""), Anchor::call_arg(c, 0))
                }
                "quantile_over_time" => ev.annotations.check_quantile(param, Anchor::call_arg(c, 0)),
                _ => {}
            }
            let labels = if keep_name {
                series_labels
            } else {
                ev.memo.without_name(&series_labels)
            };
            out.push(Sample { labels, value });
        }
    }
    if keep_name {
        check_unique(out).map(Value::Vector)
    } else {
        super::eval::check_unique_canonical(&ev.memo, out).map(Value::Vector)
    }
}

/// `predict_linear` predicts relative to the evaluation time; Prometheus evaluates
/// expressions pinned with `@` once, at the query start.
pub(super) fn intercept_time(frame: Frame, pinned: bool, t: i64) -> i64 {
    if pinned { frame.start_ms } else { t }
}

fn string_arg(ev: &Evaluator, args: &[Box<Expr>], i: usize, t: i64, func: &str) -> Result<String> {
    match args.get(i).map(|a| ev.eval(a, t)).transpose()? {
        Some(Value::String(s)) => Ok(s),
        _ => Err(Error::BadData(format!(
            "argument {} of {func}() must be a string",
            i + 1
        ))),
    }
}

fn label_replace(ev: &Evaluator, args: &[Box<Expr>], t: i64) -> Result<Value> {
    let [dst, repl, src, re] = [1, 2, 3, 4].map(|i| string_arg(ev, args, i, t, "label_replace"));
    let replace = LabelReplace::new(dst?, repl?, src?, &re?)?;
    let input = ev.eval_vector(&args[0], t)?;
    let out = input
        .into_iter()
        .map(|s| Sample {
            labels: replace.apply(s.labels),
            value: s.value,
        })
        .collect();
    check_unique(out).map(Value::Vector)
}

/// The arguments of `label_replace(v, dst, replacement, src, regex)`, checked (PromQL's and
/// LogQL's function).
#[derive(Clone, Debug)]
pub struct LabelReplace {
    dst: String,
    replacement: String,
    src: String,
    /// `regex` anchored at both ends.
    regex: Regex,
}

impl LabelReplace {
    /// Checks the regular expression and the destination name (a 400 when invalid).
    pub fn new(dst: String, replacement: String, src: String, re: &str) -> Result<LabelReplace> {
        let regex = Regex::new(&format!("^(?s:{re})$")).map_err(|e| {
            Error::BadData(format!(
                "invalid regular expression in label_replace(): {re}: {e}"
            ))
        })?;
        if !is_valid_label_name(&dst) {
            return Err(Error::BadData(format!(
                "invalid destination label name in label_replace(): {dst}"
            )));
        }
        Ok(LabelReplace { dst, replacement, src, regex })
    }

    /// `labels` with `dst` set to the expanded replacement when the regex matches the value
    /// of `src` (absent: empty), unchanged otherwise; an empty result removes `dst`.
    pub fn apply(&self, labels: Labels) -> Labels {
        let value = labels.get(&self.src).unwrap_or("");
        match self.regex.captures(value) {
            Some(caps) => {
                let mut res = String::new();
                caps.expand(&self.replacement, &mut res);
                labels.with(&self.dst, &res)
            }
            None => labels,
        }
    }
}

fn label_join(ev: &Evaluator, args: &[Box<Expr>], t: i64) -> Result<Value> {
    let dst = string_arg(ev, args, 1, t, "label_join")?;
    let sep = string_arg(ev, args, 2, t, "label_join")?;
    let srcs: Vec<String> = (3..args.len())
        .map(|i| string_arg(ev, args, i, t, "label_join"))
        .collect::<Result<_>>()?;
    if !is_valid_label_name(&dst) {
        return Err(Error::BadData(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let input = ev.eval_vector(&args[0], t)?;
    let out = input
        .into_iter()
        .map(|s| {
            let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
            Sample {
                labels: s.labels.with(&dst, &joined.join(&sep)),
                value: s.value,
            }
        })
        .collect();
    check_unique(out).map(Value::Vector)
}

/// `absent(v)`: one sample of value 1 when `v` is empty, labelled from the selector's equality
/// matchers (Prometheus' `createLabelsForAbsentFunction`).
fn absent(is_empty: bool, selector: Option<&VectorSelector>) -> Result<Value> {
    if !is_empty {
        return Ok(Value::Vector(Vec::new()));
    }
    let mut labels = Labels::default();
    if let Some(vs) = selector {
        if !vs.matchers.or_matchers.is_empty() {
            return Err(Error::unsupported(
                "absent() of a selector with `or` matchers",
            ));
        }
        let mut dropped: Vec<&str> = Vec::new();
        for m in &vs.matchers.matchers {
            if m.name == METRIC_NAME {
                continue;
            }
            if m.op == MatchOp::Equal && labels.get(&m.name).is_none() {
                labels = labels.with(&m.name, &m.value);
            } else if labels.get(&m.name).is_some() {
                dropped.push(&m.name);
            }
        }
        for name in dropped {
            labels = labels.with(name, "");
        }
    }
    Ok(Value::Vector(vec![Sample { labels, value: 1.0 }]))
}
