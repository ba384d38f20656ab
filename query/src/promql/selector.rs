//! Vector and matrix selectors: fetching each selector's data once for the whole query, then
//! slicing it in memory per evaluation step (lookback, ranges, staleness, `offset` and `@`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use pharos_model::otlp::is_stale_nan;
use pharos_model::select::MatchOp as ModelMatchOp;
use pharos_model::{LabelMatcher, Labels, METRIC_NAME, MetricsReader, Series};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{AtModifier, Call, Expr, Offset, VectorSelector};

use super::value::{RangeSeries, Sample};
use crate::error::{Error, Result};

/// How far back an instant vector selector looks for a sample (Prometheus' default 5m).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Most samples one query may load from the store (Prometheus' default `query.max-samples`).
pub const MAX_SAMPLES: usize = 50_000_000;

/// The query's time frame, which `@ start()` / `@ end()` refer to.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    /// First evaluation time (ms).
    pub start_ms: i64,
    /// Last evaluation time (ms).
    pub end_ms: i64,
    /// Step between evaluations (ms); 0 for instant queries.
    pub step_ms: i64,
    /// How far back an instant vector selector looks for a sample (ms; [`LOOKBACK_MS`] unless
    /// the query sets `lookback_delta`).
    pub lookback_ms: i64,
}

/// Data of every selector of one query, keyed by the selector's address in the AST.
#[derive(Default)]
pub struct Fetched {
    by_selector: HashMap<usize, Loaded>,
    /// The info series of each `info()` call, keyed by the call's address.
    by_info_call: HashMap<usize, Loaded>,
    /// Selectors not loaded: their samples were read into step tables as they streamed by.
    skip: HashSet<usize>,
    /// Samples read so.
    streamed: usize,
    /// Subqueries around the expression [`Fetched::walk`] is at.
    subquery_depth: usize,
    /// The query's lookback (ms).
    lookback_ms: i64,
}

impl Fetched {
    /// Samples read for all selectors.
    pub fn samples(&self) -> u64 {
        let loaded = self.by_selector.values().chain(self.by_info_call.values());
        self.streamed as u64 + loaded.flat_map(|l| &l.series).map(|s| s.samples.len() as u64).sum::<u64>()
    }
}

/// The series of one selector and, per series, how many samples the last instant lookup found
/// at or before its time: where the next lookup starts (see [`samples_upto`]).
struct Loaded {
    series: Vec<Series>,
    upto_hints: Vec<AtomicUsize>,
    /// For an `info()` call evaluated once for all steps: that step's time.
    pinned_at: Option<i64>,
}

/// How many of `samples` (time ordered) are at or before `at`, searched from where `hint` says
/// the last lookup ended, which it then records. A range query looks its instant selectors up
/// at steps that move forward by a few samples: a binary search of each series at every step
/// was 7 % of the CPU of the bench's memory-ratio query over 2 h.
fn samples_upto(samples: &[(i64, f64)], at: i64, hint: &AtomicUsize) -> usize {
    /// Samples stepped over one by one before a binary search of the rest.
    const WALK: usize = 8;
    let h = hint.load(Relaxed).min(samples.len());
    let n = if h > 0 && samples[h - 1].0 > at {
        // Earlier than the last lookup.
        samples[..h].partition_point(|(ts, _)| *ts <= at)
    } else {
        let mut n = h;
        while n < samples.len() && n < h + WALK && samples[n].0 <= at {
            n += 1;
        }
        if n == h + WALK { n + samples[n..].partition_point(|(ts, _)| *ts <= at) } else { n }
    };
    hint.store(n, Relaxed);
    n
}

/// The error of a query that reads more than [`MAX_SAMPLES`].
pub fn too_many_samples() -> Error {
    Error::Execution("query processing would load too many samples into memory in query execution".into())
}

/// The first and last timestamp selector `vs` reads for windows of `range_ms` (the lookback
/// for an instant selector) when evaluated at times in `span`.
pub fn fetch_bounds(vs: &VectorSelector, range_ms: i64, frame: Frame, span: (i64, i64)) -> (i64, i64) {
    let first = reference_time(vs, frame, span.0);
    let last = reference_time(vs, frame, span.1);
    // Windows are left-open: (ref - range, ref].
    (first.saturating_sub(range_ms).saturating_add(1), last)
}

fn key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

pub fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// The time a selector reads at when the query evaluates at `t`: `@` then `offset` applied.
pub fn reference_time(vs: &VectorSelector, frame: Frame, t: i64) -> i64 {
    let base = match &vs.at {
        None => t,
        Some(AtModifier::Start) => frame.start_ms,
        Some(AtModifier::End) => frame.end_ms,
        Some(AtModifier::At(st)) => system_time_ms(st),
    };
    let offset = match &vs.offset {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    };
    base.saturating_sub(offset)
}

fn model_matcher(m: &Matcher) -> LabelMatcher {
    let op = match &m.op {
        MatchOp::Equal => ModelMatchOp::Equal,
        MatchOp::NotEqual => ModelMatchOp::NotEqual,
        // The parser's regexes are already anchored and Go-compatible.
        MatchOp::Re(re) => ModelMatchOp::Regex(re.clone()),
        MatchOp::NotRe(re) => ModelMatchOp::NotRegex(re.clone()),
    };
    LabelMatcher {
        name: m.name.clone(),
        op,
        value: m.value.clone(),
    }
}

/// The selector's matchers as alternatives (`{a="1" or b="2"}` gives two groups).
pub fn matcher_groups(vs: &VectorSelector) -> Vec<Vec<LabelMatcher>> {
    let mut common: Vec<LabelMatcher> = vs.matchers.matchers.iter().map(model_matcher).collect();
    if let Some(name) = &vs.name {
        common.push(LabelMatcher::equal(METRIC_NAME, name));
    }
    if vs.matchers.or_matchers.is_empty() {
        return vec![common];
    }
    vs.matchers
        .or_matchers
        .iter()
        .map(|group| {
            let mut g: Vec<LabelMatcher> = group.iter().map(model_matcher).collect();
            g.extend(common.iter().cloned());
            g
        })
        .collect()
}

impl Fetched {
    /// Walks `expr` and loads every selector's samples for the whole frame.
    pub fn load(reader: &dyn MetricsReader, expr: &Expr, frame: Frame) -> Result<Fetched> {
        Fetched::load_except(reader, expr, frame, HashSet::new(), 0)
    }

    /// [`Fetched::load`] for an `expr` evaluated at times in `span` (a part of a query inside
    /// subqueries, whose times reach before the frame).
    pub fn load_spanned(reader: &dyn MetricsReader, expr: &Expr, frame: Frame, span: (i64, i64)) -> Result<Fetched> {
        let mut fetched = Fetched { lookback_ms: frame.lookback_ms, ..Default::default() };
        let mut total = 0;
        fetched.walk(reader, expr, frame, span, &mut total)?;
        Ok(fetched)
    }

    /// [`Fetched::load`] except the selectors at the addresses in `skip`, which `streamed`
    /// samples were read for already (they count towards the query's limit and its stats).
    pub fn load_except(
        reader: &dyn MetricsReader,
        expr: &Expr,
        frame: Frame,
        skip: HashSet<usize>,
        streamed: usize,
    ) -> Result<Fetched> {
        let mut fetched = Fetched {
            skip,
            streamed,
            lookback_ms: frame.lookback_ms,
            ..Default::default()
        };
        let mut total = streamed;
        let span = (frame.start_ms, frame.end_ms);
        fetched.walk(reader, expr, frame, span, &mut total)?;
        Ok(fetched)
    }

    /// `span` is the first and last time `expr` can be evaluated at (wider than the frame
    /// inside subqueries).
    fn walk(
        &mut self,
        reader: &dyn MetricsReader,
        expr: &Expr,
        frame: Frame,
        span: (i64, i64),
        total: &mut usize,
    ) -> Result<()> {
        match expr {
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
            Expr::Paren(p) => self.walk(reader, &p.expr, frame, span, total),
            Expr::Unary(u) => self.walk(reader, &u.expr, frame, span, total),
            Expr::Binary(b) => {
                self.walk(reader, &b.lhs, frame, span, total)?;
                self.walk(reader, &b.rhs, frame, span, total)
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(reader, p, frame, span, total)?;
                }
                self.walk(reader, &a.expr, frame, span, total)
            }
            Expr::Call(c) if c.func.name == "info" => {
                let base = c.args.args.first().ok_or_else(|| Error::BadData("info() needs an argument".into()))?;
                self.walk(reader, base, frame, span, total)?;
                self.fetch_info(reader, c, base, frame, span, total)
            }
            Expr::Call(c) => {
                for arg in &c.args.args {
                    self.walk(reader, arg, frame, span, total)?;
                }
                Ok(())
            }
            Expr::VectorSelector(vs) => self.fetch(reader, vs, frame.lookback_ms, frame, span, total),
            Expr::MatrixSelector(ms) => self.fetch(
                reader,
                &ms.vs,
                ms.range.as_millis() as i64,
                frame,
                span,
                total,
            ),
            Expr::Subquery(sq) => {
                let (range_ms, _) = super::subquery::range_and_step(sq);
                let first = super::subquery::reference_time(sq, frame, span.0);
                let last = super::subquery::reference_time(sq, frame, span.1);
                let inner = (first.saturating_sub(range_ms), last);
                self.subquery_depth += 1;
                let walked = self.walk(reader, &sq.expr, frame, inner, total);
                self.subquery_depth -= 1;
                walked
            }
            Expr::Extension(_) => Err(Error::unsupported("extension expression")),
        }
    }

    fn fetch(
        &mut self,
        reader: &dyn MetricsReader,
        vs: &VectorSelector,
        range_ms: i64,
        frame: Frame,
        span: (i64, i64),
        total: &mut usize,
    ) -> Result<()> {
        if self.skip.contains(&key(vs)) {
            return Ok(());
        }
        let (from, last) = fetch_bounds(vs, range_ms, frame, span);
        let loaded = Self::select(reader, matcher_groups(vs), from, last, total, &|| vs.to_string())?;
        self.by_selector.insert(key(vs), loaded);
        Ok(())
    }

    /// Loads the info series `info()` call `c` may join, over the times its base expression
    /// `base` reads: those of its first selector, as Prometheus' select hints for info series
    /// (the query's span with that selector's `@` and `offset`, back by the lookback delta).
    fn fetch_info(
        &mut self,
        reader: &dyn MetricsReader,
        c: &Call,
        base: &Expr,
        frame: Frame,
        span: (i64, i64),
        total: &mut usize,
    ) -> Result<()> {
        let (from, last) = match first_selector(base) {
            Some(vs) => fetch_bounds(vs, frame.lookback_ms, frame, span),
            None => (span.0.saturating_sub(frame.lookback_ms).saturating_add(1), span.1),
        };
        let matchers = super::info::info_matchers(c)?.iter().map(model_matcher).collect();
        let mut loaded = Self::select(reader, vec![matchers], from, last, total, &|| format!("info series of {c}"))?;
        // Prometheus evaluates a step-invariant call once, at the first step, for all steps:
        // `info(v)` is one when `v` is (e.g. pinned by `@`), and then its info series are the
        // ones at that step. Inside subqueries (other first steps) each step is evaluated.
        if self.subquery_depth == 0 && c.args.args.len() == 1 && step_invariant(base) {
            loaded.pinned_at = Some(frame.start_ms);
        }
        self.by_info_call.insert(c as *const Call as usize, loaded);
        Ok(())
    }

    /// The series matching any of `groups` in `[from, last]`.
    fn select(
        reader: &dyn MetricsReader,
        groups: Vec<Vec<LabelMatcher>>,
        from: i64,
        last: i64,
        total: &mut usize,
        what: &dyn Fn() -> String,
    ) -> Result<Loaded> {
        let mut seen: HashMap<Labels, usize, ahash::RandomState> = HashMap::default();
        let mut series: Vec<Series> = Vec::new();
        for group in groups {
            let found = reader
                .select_series(&group, from, last)
                .map_err(|e| Error::Internal(format!("reading series for {}: {e}", what())))?;
            for s in found {
                if seen.contains_key(&s.labels) {
                    continue; // matched by two `or` alternatives
                }
                *total += s.samples.len();
                if *total > MAX_SAMPLES {
                    return Err(too_many_samples());
                }
                seen.insert(s.labels.clone(), series.len());
                series.push(s);
            }
        }
        let upto_hints = series.iter().map(|_| AtomicUsize::new(0)).collect();
        Ok(Loaded { series, upto_hints, pinned_at: None })
    }

    /// Every series fetched for `vs`.
    pub fn series(&self, vs: &VectorSelector) -> Result<&[Series]> {
        Ok(&self.loaded(vs)?.series)
    }

    fn loaded(&self, vs: &VectorSelector) -> Result<&Loaded> {
        self.by_selector.get(&key(vs)).ok_or_else(|| Error::Internal(format!("selector {vs} was not loaded")))
    }

    /// The instant vector of `vs` at reference time `at`: per series the latest sample in
    /// `(at - 5m, at]`, absent when that sample is a staleness marker.
    pub fn instant(&self, vs: &VectorSelector, at: i64) -> Result<Vec<Sample>> {
        self.latest(vs, at, |_, v| v)
    }

    /// Per series the latest sample in `(at - 5m, at]` unless it is a staleness marker, mapped
    /// by `value(timestamp_ms, value)`.
    fn latest(&self, vs: &VectorSelector, at: i64, value: impl Fn(i64, f64) -> f64) -> Result<Vec<Sample>> {
        Ok(latest_in(self.loaded(vs)?, at, self.lookback_ms, value))
    }

    /// The info series of `info()` call `c` at `at`, each sample's value its timestamp (ms).
    pub fn info_series(&self, c: &Call, at: i64) -> Result<Vec<Sample>> {
        Ok(latest_in(self.info_loaded(c)?, at, self.lookback_ms, |ts, _| ts as f64))
    }

    /// The time `info()` call `c` is evaluated at when the query is at `t`.
    pub fn info_time(&self, c: &Call, t: i64) -> Result<i64> {
        Ok(self.info_loaded(c)?.pinned_at.unwrap_or(t))
    }

    fn info_loaded(&self, c: &Call) -> Result<&Loaded> {
        self.by_info_call
            .get(&(c as *const Call as usize))
            .ok_or_else(|| Error::Internal(format!("info series of {c} were not loaded")))
    }

    /// Like [`Fetched::instant`], with each sample's timestamp (seconds) as its value.
    pub fn instant_timestamps(&self, vs: &VectorSelector, at: i64) -> Result<Vec<Sample>> {
        self.latest(vs, at, |ts, _| ts as f64 / 1000.0)
    }

    /// The range vector of `vs` with `range_ms` ending at reference time `at`: samples in
    /// `(at - range, at]`, staleness markers removed, series without samples omitted.
    pub fn range(&self, vs: &VectorSelector, range_ms: i64, at: i64) -> Result<Vec<RangeSeries>> {
        Ok(self
            .range_slices(vs, range_ms, at)?
            .into_iter()
            .map(|(labels, points)| RangeSeries { labels, points: points.into_owned() })
            .collect())
    }

    /// Like [`Fetched::range`], borrowing each series' window from the fetched samples (copied
    /// only when it holds staleness markers to remove): range functions read windows at every
    /// step of a range query, and copying them dominated.
    pub fn range_slices(
        &self,
        vs: &VectorSelector,
        range_ms: i64,
        at: i64,
    ) -> Result<Vec<(Labels, Cow<'_, [(i64, f64)]>)>> {
        let mut out = Vec::new();
        for s in self.series(vs)? {
            let lo = s
                .samples
                .partition_point(|(ts, _)| *ts <= at.saturating_sub(range_ms));
            let hi = s.samples.partition_point(|(ts, _)| *ts <= at);
            if lo >= hi {
                continue;
            }
            let window = &s.samples[lo..hi];
            let points = if window.iter().any(|(_, v)| is_stale_nan(*v)) {
                let kept: Vec<(i64, f64)> =
                    window.iter().copied().filter(|(_, v)| !is_stale_nan(*v)).collect();
                if kept.is_empty() {
                    continue;
                }
                Cow::Owned(kept)
            } else {
                Cow::Borrowed(window)
            };
            out.push((s.labels.clone(), points));
        }
        Ok(out)
    }
}

/// Per series of `loaded` the latest sample in `(at - lookback, at]` unless it is a staleness
/// marker, mapped by `value(timestamp_ms, value)`.
fn latest_in(loaded: &Loaded, at: i64, lookback_ms: i64, value: impl Fn(i64, f64) -> f64) -> Vec<Sample> {
    let mut out = Vec::new();
    for (s, hint) in loaded.series.iter().zip(&loaded.upto_hints) {
        let idx = samples_upto(&s.samples, at, hint);
        if idx == 0 {
            continue;
        }
        let (ts, v) = s.samples[idx - 1];
        if ts > at.saturating_sub(lookback_ms) && !is_stale_nan(v) {
            out.push(Sample { labels: s.labels.clone(), value: value(ts, v) });
        }
    }
    out
}

/// Whether Prometheus evaluates `expr` once for all steps (its `preprocessExpr`): selectors
/// and subqueries pinned by `@`, literals, and what is built of them only (not `time()` and
/// the other functions of the evaluation time).
fn step_invariant(expr: &Expr) -> bool {
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => true,
        Expr::VectorSelector(vs) => vs.at.is_some(),
        Expr::MatrixSelector(ms) => ms.vs.at.is_some(),
        Expr::Subquery(sq) => sq.at.is_some(),
        Expr::Paren(p) => step_invariant(&p.expr),
        Expr::Unary(u) => step_invariant(&u.expr),
        Expr::Binary(b) => step_invariant(&b.lhs) && step_invariant(&b.rhs),
        Expr::Aggregate(a) => step_invariant(&a.expr),
        Expr::Call(c) => {
            !AT_MODIFIER_UNSAFE.contains(&c.func.name) && c.args.args.iter().all(|a| step_invariant(a))
        }
        Expr::Extension(_) => false,
    }
}

/// Functions whose result depends on the evaluation time even over pinned arguments
/// (Prometheus' `AtModifierUnsafeFunctions`).
const AT_MODIFIER_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

/// The first vector selector of `expr` in Prometheus' walk order (a node before its children,
/// children left to right).
fn first_selector(expr: &Expr) -> Option<&VectorSelector> {
    match expr {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        Expr::Paren(p) => first_selector(&p.expr),
        Expr::Unary(u) => first_selector(&u.expr),
        Expr::Subquery(sq) => first_selector(&sq.expr),
        Expr::Binary(b) => first_selector(&b.lhs).or_else(|| first_selector(&b.rhs)),
        Expr::Aggregate(a) => first_selector(&a.expr).or_else(|| a.param.as_deref().and_then(first_selector)),
        Expr::Call(c) => c.args.args.iter().find_map(|a| first_selector(a)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hinted search equals a binary search for lookups moving forward by less and more
    /// than the walk, back, past both ends, onto equal timestamps, and on an empty series.
    #[test]
    fn hinted_lookups_equal_a_binary_search() {
        let series: Vec<Vec<(i64, f64)>> = vec![
            vec![],
            (0..100).map(|i| (i * 15, 0.0)).collect(),
            vec![(5, 0.0), (5, 1.0), (5, 2.0), (9, 0.0), (20, 0.0)],
        ];
        let mut times: Vec<i64> = (-20..1600).step_by(7).collect();
        times.extend([1500, 3, 700, 701, 5, 4, 5, 9, 8, 2000, 0, 1485, 1485, 1484]);
        times.extend((0..1600).step_by(200));
        for samples in &series {
            let hint = AtomicUsize::new(0);
            for &at in &times {
                let want = samples.partition_point(|(ts, _)| *ts <= at);
                assert_eq!(samples_upto(samples, at, &hint), want, "at {at} in {samples:?}");
            }
        }
    }
}
