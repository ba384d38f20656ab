//! Annotations: the warnings and infos Prometheus returns next to a query's answer (Grafana
//! shows them on the panel), with the same messages and the same position suffix, `(line:col)`
//! of the expression the note is about.
//!
//! Produced for float samples as Prometheus produces them:
//! - info: `rate`/`increase` over a metric whose name does not end in `_total`, `_sum`,
//!   `_count` or `_bucket` (for each such metric with at least one result point);
//! - info: `histogram_quantile` had to force a classic histogram's buckets to be monotonic;
//! - warning: a quantile parameter outside [0, 1] or NaN (`quantile`, `quantile_over_time`,
//!   `histogram_quantile`);
//! - warning: a `histogram_quantile` input sample whose `le` label is missing or not a number;
//! - warning: a `limit_ratio` ratio outside [-1, 1] (capped to it).
//!
//! Notes are collected while evaluating (from any thread), deduplicated by message (as
//! Prometheus' map keyed by the message without position), and rendered once at the end, when
//! the query text is at hand to locate the expression.

use std::collections::{BTreeMap, HashMap, HashSet};

use std::sync::{Mutex, PoisonError};
use promql_parser::parser::{AggregateExpr, Call, Expr};

use crate::logql::template::go_quote;

/// Whether a note is a warning or an info.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `PromQL warning: …`: the answer may not be what was meant.
    Warning,
    /// `PromQL info: …`: a hint.
    Info,
}

/// The expression a note points at: argument `arg` of a function call or of an aggregation
/// (an aggregation's parameter is its argument 0), by the node's address in the parsed query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Anchor {
    node: usize,
    arg: usize,
}

impl Anchor {
    /// Argument `arg` of the call `c`.
    pub fn call_arg(c: &Call, arg: usize) -> Anchor {
        Anchor { node: c as *const Call as usize, arg }
    }

    /// The parameter of the aggregation `a`.
    pub fn aggregate_param(a: &AggregateExpr) -> Anchor {
        Anchor { node: a as *const AggregateExpr as usize, arg: 0 }
    }

    /// No expression: the note is rendered without a position.
    pub fn none() -> Anchor {
        Anchor { node: 0, arg: 0 }
    }
}

/// The notes of one query.
#[derive(Default)]
pub struct Annotations {
    /// Message (without position) → level and the expressions it was noted for.
    notes: Mutex<BTreeMap<String, (Level, Vec<Anchor>)>>,
    /// Metrics already noted as possible non-counters, per expression: the step-by-step path
    /// asks for every series at every step, and only the first time builds the message.
    non_counters: Mutex<HashMap<Anchor, HashSet<String>>>,
}

/// Rendered notes, as the API answers them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    /// The answer's `warnings`.
    pub warnings: Vec<String>,
    /// The answer's `infos`.
    pub infos: Vec<String>,
}

pub(crate) const WARNING: &str = "PromQL warning";
pub(crate) const INFO: &str = "PromQL info";

impl Rendered {
    /// Adds the notes of `other` this one does not have.
    pub fn merge(&mut self, other: Rendered) {
        for w in other.warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        for i in other.infos {
            if !self.infos.contains(&i) {
                self.infos.push(i);
            }
        }
    }
}

impl Annotations {
    /// Notes `message` (a full `PromQL warning: …`/`PromQL info: …` text without position) for
    /// the expression `at`.
    pub(crate) fn add(&self, level: Level, message: String, at: Anchor) {
        let mut notes = self.notes.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, anchors) = notes.entry(message).or_insert_with(|| (level, Vec::new()));
        if !anchors.contains(&at) {
            anchors.push(at);
        }
    }

    /// `rate`/`increase` produced a point from a series named `metric`: an info unless the
    /// name says it is a counter.
    pub fn possible_non_counter(&self, metric: &str, at: Anchor) {
        if !not_named_as_counter(metric) {
            return;
        }
        {
            let mut seen = self.non_counters.lock().unwrap_or_else(PoisonError::into_inner);
            let metrics = seen.entry(at).or_default();
            if metrics.contains(metric) {
                return;
            }
            metrics.insert(metric.to_string());
        }
        self.add(
            Level::Info,
            format!(
                "{INFO}: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {}",
                go_quote(metric)
            ),
            at,
        );
    }

    /// A warning when the quantile `q` is NaN or outside [0, 1].
    pub fn check_quantile(&self, q: f64, at: Anchor) {
        if q.is_nan() || !(0.0..=1.0).contains(&q) {
            self.add(Level::Warning, format!("{WARNING}: quantile value should be between 0 and 1, got {}", go_g(q)), at);
        }
    }

    /// `limit_ratio`'s ratio `got` was outside [-1, 1] and `capped` is used instead.
    pub fn invalid_ratio(&self, got: f64, capped: f64, at: Anchor) {
        self.add(
            Level::Warning,
            format!("{WARNING}: ratio value should be between -1 and 1, got {}, capping to {}", go_g(got), go_g(capped)),
            at,
        );
    }

    /// A `histogram_quantile` input sample of `metric` whose `le` is `le` (empty when missing)
    /// was left out.
    pub fn bad_bucket_label(&self, metric: &str, le: &str, at: Anchor) {
        let message = format!("{WARNING}: bucket label \"le\" is missing or has a malformed value of {}", go_quote(le));
        self.add(Level::Warning, with_metric_name(message, metric), at);
    }

    /// `histogram_quantile` raised a bucket count to its predecessor's. Prometheus names the
    /// metric only with delayed name removal (not its default), so this never names it.
    pub fn forced_monotonicity(&self, at: Anchor) {
        self.add(
            Level::Info,
            format!(
                "{INFO}: input to histogram_quantile needed to be fixed for monotonicity (see \
                 https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)"
            ),
            at,
        );
    }

    /// The notes with their positions in `query` (whose parse is `expr`), sorted by message. A
    /// message noted for several expressions points at the one that starts last, as Prometheus
    /// (which evaluates operands left to right and keeps the message added last) does.
    pub fn render(self, query: &str, expr: &Expr) -> Rendered {
        let notes = self.notes.into_inner().unwrap_or_else(PoisonError::into_inner);
        let mut out = Rendered::default();
        if notes.is_empty() {
            return out;
        }
        let tokens = scan(query);
        for (message, (level, anchors)) in notes {
            let start = anchors
                .iter()
                .filter_map(|at| locate(expr, *at).and_then(|node| arg_start(query, &tokens, &node, at.arg)))
                .max();
            let text = match start {
                Some(offset) => format!("{message} ({})", line_col(query, offset)),
                None => message,
            };
            match level {
                Level::Warning => out.warnings.push(text),
                Level::Info => out.infos.push(text),
            }
        }
        out
    }
}

/// True for a metric name `rate`/`increase` note: not empty, and none of the suffixes of
/// counters (`_total`, `_sum`, `_count`, `_bucket`).
pub fn not_named_as_counter(metric: &str) -> bool {
    !metric.is_empty() && !["_total", "_sum", "_count", "_bucket"].iter().any(|s| metric.ends_with(s))
}

fn with_metric_name(message: String, metric: &str) -> String {
    if metric.is_empty() { message } else { format!("{message} for metric name {}", go_quote(metric)) }
}

/// Go's `%g` of a float (`fmt.Sprintf("%g", v)`), as Prometheus prints numbers in messages.
pub fn go_g(v: f64) -> String {
    crate::logql::template::go_float(v, 'g', None)
}

/// A node the anchor names, found in the parsed query: a call or an aggregation, by its name
/// and how many nodes of that kind and name precede it in source order.
struct Located {
    aggregate: bool,
    name: String,
    occurrence: usize,
    /// Parentheses around the argument that do not count: Prometheus unwraps a function
    /// call's arguments in place before evaluating it (`rate((x[5m]))` points at `x`), not an
    /// aggregation's parameter.
    parens: usize,
}

/// Walks `expr` in source order (children in the order their text appears) to find the node of
/// `at` and count the same-named calls or aggregations before it.
fn locate(expr: &Expr, at: Anchor) -> Option<Located> {
    fn walk(e: &Expr, at: Anchor, seen: &mut BTreeMap<(bool, String), usize>) -> Option<Located> {
        match e {
            Expr::Aggregate(a) => {
                let name = a.op.to_string().to_lowercase();
                let n = seen.entry((true, name.clone())).or_default();
                let occurrence = *n;
                *n += 1;
                if a as *const AggregateExpr as usize == at.node {
                    return Some(Located { aggregate: true, name, occurrence, parens: 0 });
                }
                if let Some(p) = &a.param
                    && let Some(l) = walk(p, at, seen)
                {
                    return Some(l);
                }
                walk(&a.expr, at, seen)
            }
            Expr::Call(c) => {
                let name = c.func.name.to_string();
                let n = seen.entry((false, name.clone())).or_default();
                let occurrence = *n;
                *n += 1;
                if c as *const Call as usize == at.node {
                    let mut parens = 0;
                    let mut arg = c.args.args.get(at.arg).map(|a| a.as_ref());
                    while let Some(Expr::Paren(p)) = arg {
                        parens += 1;
                        arg = Some(&p.expr);
                    }
                    return Some(Located { aggregate: false, name, occurrence, parens });
                }
                c.args.args.iter().find_map(|a| walk(a, at, seen))
            }
            Expr::Unary(u) => walk(&u.expr, at, seen),
            Expr::Binary(b) => walk(&b.lhs, at, seen).or_else(|| walk(&b.rhs, at, seen)),
            Expr::Paren(p) => walk(&p.expr, at, seen),
            Expr::Subquery(s) => walk(&s.expr, at, seen),
            Expr::MatrixSelector(_)
            | Expr::VectorSelector(_)
            | Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::Extension(_) => None,
        }
    }
    walk(expr, at, &mut BTreeMap::new())
}

/// A token of the query text, enough to find where arguments start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    /// An identifier or keyword: byte range.
    Ident(usize, usize),
    Open(u8),
    Close(u8),
    Comma,
    /// Anything else (numbers, strings, operators): its first byte.
    Other,
}

/// Tokens with their starting byte offsets. Strings (all three quotes) and comments are
/// skipped as units, so their contents never look like calls or commas.
fn scan(q: &str) -> Vec<(usize, Tok)> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push((start, Tok::Other));
            }
            b'(' | b'{' | b'[' => {
                i += 1;
                out.push((start, Tok::Open(c)));
            }
            b')' | b'}' | b']' => {
                i += 1;
                out.push((start, Tok::Close(c)));
            }
            b',' => {
                i += 1;
                out.push((start, Tok::Comma));
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                out.push((start, Tok::Ident(start, i)));
            }
            c if c.is_ascii_digit() || c == b'.' => {
                // Numbers and durations (`1.5e3`, `0x1f`, `5m30s`): one token.
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                    i += 1;
                }
                out.push((start, Tok::Other));
            }
            _ => {
                // Operators and anything else, one UTF-8 character at a time.
                i += q[i..].chars().next().map_or(1, char::len_utf8);
                out.push((start, Tok::Other));
            }
        }
    }
    out
}

/// The byte offset where argument `arg` of the located node starts: after its name, and for an
/// aggregation its `by`/`without` list if that comes first, the argument list's `(`, then `arg`
/// commas at that depth.
fn arg_start(q: &str, tokens: &[(usize, Tok)], node: &Located, arg: usize) -> Option<usize> {
    let word = |t: &Tok| match *t {
        Tok::Ident(s, e) => Some(&q[s..e]),
        _ => None,
    };
    let is_name = |t: &Tok| {
        word(t).is_some_and(|w| if node.aggregate { w.eq_ignore_ascii_case(&node.name) } else { w == node.name })
    };
    let mut seen = 0;
    let mut i = 0;
    while i < tokens.len() {
        if !is_name(&tokens[i].1) {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        if node.aggregate && tokens.get(j).and_then(|t| word(&t.1)).is_some_and(|w| w.eq_ignore_ascii_case("by") || w.eq_ignore_ascii_case("without")) {
            j = after_group(tokens, j + 1)?;
        }
        if tokens.get(j).map(|t| t.1) != Some(Tok::Open(b'(')) {
            i += 1;
            continue;
        }
        if seen < node.occurrence {
            seen += 1;
            i += 1;
            continue;
        }
        // Inside the argument list: count commas at depth 0.
        let mut depth = 0usize;
        let mut commas = 0;
        let mut k = j + 1;
        // The argument's first token, past the parentheses that do not count.
        let first = |k: usize| {
            let at = k + node.parens;
            (tokens.get(k..at)?.iter().all(|t| t.1 == Tok::Open(b'(')))
                .then(|| tokens.get(at))
                .flatten()
                .filter(|t| !matches!(t.1, Tok::Close(_)))
                .map(|t| t.0)
        };
        if arg == 0 {
            return first(k);
        }
        while k < tokens.len() {
            match tokens[k].1 {
                Tok::Open(_) => depth += 1,
                Tok::Close(_) if depth == 0 => return None,
                Tok::Close(_) => depth -= 1,
                Tok::Comma if depth == 0 => {
                    commas += 1;
                    if commas == arg {
                        return first(k + 1);
                    }
                }
                _ => {}
            }
            k += 1;
        }
        return None;
    }
    None
}

/// The token after the `( … )` group that starts at `at`.
fn after_group(tokens: &[(usize, Tok)], at: usize) -> Option<usize> {
    if tokens.get(at)?.1 != Tok::Open(b'(') {
        return None;
    }
    let mut depth = 0usize;
    for (k, (_, t)) in tokens.iter().enumerate().skip(at) {
        match t {
            Tok::Open(_) => depth += 1,
            Tok::Close(_) => {
                depth -= 1;
                if depth == 0 {
                    return Some(k + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Prometheus' `line:col` of a byte offset: lines from 1, the column counted in bytes from 1.
fn line_col(q: &str, offset: usize) -> String {
    let before = &q[..offset.min(q.len())];
    let line = before.matches('\n').count() + 1;
    let col = match before.rfind('\n') {
        Some(nl) => offset - nl,
        None => offset + 1,
    };
    format!("{line}:{col}")
}
