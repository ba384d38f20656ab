//! Arithmetic on native histograms ([`FloatHistogram`]) with Prometheus' semantics, as PromQL
//! needs it: resolution reduction, compaction, addition and subtraction, scaling, counter reset
//! detection, quantiles, fractions and the standard deviation/variance of the observations.
//!
//! The reference is Prometheus' `model/histogram/float_histogram.go` (`CopyToSchema`, `Compact`,
//! `Add`, `Sub`, `Mul`, `Div`, `DetectReset` and their helpers), `promql/quantile.go`
//! (`HistogramQuantile`, `HistogramFraction`) and `promql/functions.go` (`histogram_stddev`,
//! `histogram_stdvar`). Where a method deliberately differs from Prometheus, its documentation
//! says so.
//!
//! Internally each side (positive, negative) is handled as a sorted map from bucket index to
//! count and turned back into spans at the end, instead of Prometheus' in-place span merging.
//! Results that Prometheus would leave with empty buckets or adjacent spans are compacted where
//! the method says so ([`FloatHistogram::compact`]).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use crate::histogram::{Bucket, CounterResetHint, EXPONENTIAL_SCHEMAS, FloatHistogram, Span, exponential_bound};

/// The error of [`FloatHistogram::add`]/[`FloatHistogram::sub`] for an exponential histogram
/// combined with a custom-bucket one (Prometheus' `ErrHistogramsIncompatibleSchema`).
pub const INCOMPATIBLE_SCHEMAS: &str = "cannot apply this operation on histograms with a mix of exponential and custom bucket schemas";

/// Bucket index → count of one side of a histogram, in index order.
type Side = BTreeMap<i64, f64>;

/// The buckets of one side as a map. Bucket indexes repeated by malformed spans add up; counts
/// beyond what the spans cover are ignored (as Prometheus' iterators do).
fn side_map(spans: &[Span], counts: &[f64]) -> Side {
    let mut map = Side::new();
    let mut counts = counts.iter().copied();
    let mut index: i64 = 0;
    for (n, span) in spans.iter().enumerate() {
        index = if n == 0 { span.offset as i64 } else { index + span.offset as i64 };
        for _ in 0..span.length {
            let Some(count) = counts.next() else { return map };
            match map.entry(index) {
                Entry::Vacant(e) => {
                    e.insert(count);
                }
                Entry::Occupied(mut e) => *e.get_mut() += count,
            }
            index += 1;
        }
    }
    map
}

/// Spans and counts of a side, one span per run of consecutive indexes. With `keep_empty`
/// false, buckets with a count of 0 are left out (NaN counts are kept).
fn side_spans(side: &Side, keep_empty: bool) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut counts = Vec::new();
    let mut last: Option<i64> = None;
    for (&index, &count) in side {
        if !keep_empty && count == 0.0 {
            continue;
        }
        match last {
            Some(l) if index == l + 1 => spans.last_mut().expect("a span was started").length += 1,
            Some(l) => spans.push(Span { offset: (index - l - 1) as i32, length: 1 }),
            None => spans.push(Span { offset: index as i32, length: 1 }),
        }
        counts.push(count);
        last = Some(index);
    }
    (spans, counts)
}

/// Adds `count` to bucket `index` (creating it).
fn add_to(side: &mut Side, index: i64, count: f64) {
    match side.entry(index) {
        Entry::Vacant(e) => {
            e.insert(count);
        }
        Entry::Occupied(mut e) => *e.get_mut() += count,
    }
}

/// The bounds both sorted lists hold, in order.
fn shared_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    if a == b {
        return a.to_vec();
    }
    a.iter().copied().filter(|x| b.binary_search_by(|y| y.total_cmp(x)).is_ok()).collect()
}

/// The absolute upper bound of exponential bucket `index` (see [`exponential_bound`]).
fn bound(index: i64, schema: i32) -> f64 {
    exponential_bound(index.clamp(i32::MIN as i64, i32::MAX as i64) as i32, schema)
}

/// The index at `target` of bucket `index` at `schema` (Prometheus' `targetIdx`).
fn target_index(index: i64, schema: i32, target: i32) -> i64 {
    ((index - 1) >> (schema - target)) + 1
}

/// Merges the buckets of a side into the buckets of a lower exponential schema.
fn reduce_side(side: &Side, schema: i32, target: i32) -> Side {
    let mut out = Side::new();
    for (&index, &count) in side {
        add_to(&mut out, target_index(index, schema, target), count);
    }
    out
}


/// The counter reset hint of a sum or difference of two histograms (Prometheus'
/// `adjustCounterReset`), and whether the hints collided (one `CounterReset`, the other
/// `NotCounterReset`).
fn combined_hint(a: CounterResetHint, b: CounterResetHint) -> (CounterResetHint, bool) {
    use CounterResetHint::*;
    match (a, b) {
        _ if a == b => (a, false),
        (Gauge, _) | (_, Gauge) => (Gauge, false),
        (Unknown, _) | (_, Unknown) => (Unknown, false),
        _ => (Unknown, true),
    }
}

/// An exponential histogram's zero bucket and buckets as maps, for reconciling zero buckets,
/// reducing resolution and comparing or adding buckets.
#[derive(Clone)]
struct Sides {
    schema: i32,
    threshold: f64,
    zero_count: f64,
    positive: Side,
    negative: Side,
}

impl Sides {
    fn of(h: &FloatHistogram) -> Sides {
        Sides {
            schema: h.schema,
            threshold: h.zero_threshold,
            zero_count: h.zero_count,
            positive: side_map(&h.positive_spans, &h.positive_buckets),
            negative: side_map(&h.negative_spans, &h.negative_buckets),
        }
    }

    fn reduce(&mut self, target: i32) {
        if target < self.schema {
            self.positive = reduce_side(&self.positive, self.schema, target);
            self.negative = reduce_side(&self.negative, self.schema, target);
            self.schema = target;
        }
    }

    /// What the zero count would be with the zero bucket widened to `larger` (Prometheus'
    /// `zeroCountForLargerThreshold`): every bucket whose lower bound (in absolute value) is
    /// below the new threshold joins the zero bucket. If the threshold falls inside a populated
    /// bucket, it moves up to that bucket's upper bound (and the positive side is scanned again
    /// when that happens on the negative side). Returns the count and the threshold used.
    fn zero_count_for_larger_threshold(&self, larger: f64) -> (f64, f64) {
        if larger == self.threshold {
            return (self.zero_count, larger);
        }
        let mut threshold = larger;
        'outer: loop {
            let mut count = self.zero_count;
            for (&index, &c) in &self.positive {
                if bound(index - 1, self.schema) >= threshold {
                    break;
                }
                count += c;
                let upper = bound(index, self.schema);
                if upper > threshold {
                    if c != 0.0 {
                        threshold = upper;
                    }
                    break;
                }
            }
            for (&index, &c) in &self.negative {
                if bound(index - 1, self.schema) >= threshold {
                    break;
                }
                count += c;
                let upper = bound(index, self.schema);
                if upper > threshold {
                    if c != 0.0 {
                        threshold = upper;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (count, threshold);
        }
    }

    /// Drops the buckets whose lower bound (in absolute value) is below the zero threshold,
    /// whose counts are already in the zero count (Prometheus' `trimBucketsInZeroBucket`).
    fn trim_zero_bucket(&mut self) {
        let (schema, threshold) = (self.schema, self.threshold);
        for side in [&mut self.positive, &mut self.negative] {
            side.retain(|&index, _| bound(index - 1, schema).partial_cmp(&threshold) != Some(std::cmp::Ordering::Less));
        }
    }

    /// Widens the zero buckets of `self` and of `other` to a common threshold that lies in no
    /// populated bucket of either (Prometheus' `reconcileZeroBuckets`). `self` is changed (its
    /// buckets inside the new zero bucket move into its zero count); the zero count `other`
    /// would have is returned.
    fn reconcile_zero_buckets(&mut self, other: &Sides) -> f64 {
        let (mut other_count, mut other_threshold) = (other.zero_count, other.threshold);
        // A NaN threshold never compares equal; Prometheus would loop forever there.
        while other_threshold != self.threshold && !other_threshold.is_nan() && !self.threshold.is_nan() {
            if self.threshold > other_threshold {
                (other_count, other_threshold) = other.zero_count_for_larger_threshold(self.threshold);
            }
            if other_threshold > self.threshold {
                (self.zero_count, self.threshold) = self.zero_count_for_larger_threshold(other_threshold);
                self.trim_zero_bucket();
            }
        }
        other_count
    }
}

impl FloatHistogram {
    /// The histogram at the lower resolution `target` (Prometheus' `CopyToSchema`): bucket `i`
    /// becomes bucket `((i - 1) >> (schema - target)) + 1`, the counts of buckets merged into one
    /// add up. Buckets with a count of 0 are kept (merged like the others), as Prometheus does;
    /// call [`FloatHistogram::compact`] to drop them.
    ///
    /// Returned unchanged (a plain copy, spans as they are): a custom-bucket histogram, a
    /// `target` equal to the schema, and a `target` Prometheus refuses (it panics): above the
    /// current schema or not an exponential schema. As Prometheus' `CopyToSchema`, a histogram
    /// whose schema does change gets the counter reset hint `Unknown`.
    pub fn copy_to_schema(&self, target: i32) -> FloatHistogram {
        if self.uses_custom_buckets() || target >= self.schema || !EXPONENTIAL_SCHEMAS.contains(&target) {
            return self.clone();
        }
        let mut sides = Sides::of(self);
        sides.reduce(target);
        let (positive_spans, positive_buckets) = side_spans(&sides.positive, true);
        let (negative_spans, negative_buckets) = side_spans(&sides.negative, true);
        FloatHistogram {
            counter_reset_hint: CounterResetHint::Unknown,
            schema: target,
            positive_spans,
            positive_buckets,
            negative_spans,
            negative_buckets,
            ..self.clone()
        }
    }

    /// The histogram with its buckets in canonical form (Prometheus' `Compact(0)`): buckets with
    /// a count of 0 are dropped (NaN counts are kept), no span is empty, and every span after
    /// the first has an offset of at least 1. Two histograms describing the same buckets (and
    /// the same other fields) are then equal with `==`. Zero bucket, count and sum are
    /// unchanged.
    pub fn compact(&self) -> FloatHistogram {
        let (positive_spans, positive_buckets) = side_spans(&side_map(&self.positive_spans, &self.positive_buckets), false);
        let (negative_spans, negative_buckets) = side_spans(&side_map(&self.negative_spans, &self.negative_buckets), false);
        FloatHistogram { positive_spans, positive_buckets, negative_spans, negative_buckets, ..self.clone() }
    }

    /// `self + other` (Prometheus' `FloatHistogram.Add`), compacted.
    ///
    /// Exponential histograms: the result has the lower of the two schemas (the other one's
    /// buckets merged to it). The zero buckets are first widened to a common threshold, the
    /// larger of the two, moved further up to the upper bound of a populated bucket it would
    /// fall into: buckets whose lower bound (absolute) is below it join the zero count (Prometheus'
    /// `zeroCountForLargerThreshold`); buckets of `other` whose upper bound is at most the final
    /// threshold are then left out of the bucket sum, as in Prometheus' `addBuckets`. Counts,
    /// sums, zero counts and buckets add.
    ///
    /// Custom-bucket histograms add bucket by bucket. When their `custom_values` differ, both
    /// are first reconciled to the bounds they share, as current Prometheus does (each bucket
    /// counted in the first shared bound at or above its upper bound, else in `+Inf`; see
    /// [`FloatHistogram::reconciles_custom_buckets`] for the info PromQL then gives).
    /// Exponential with custom is the error [`INCOMPATIBLE_SCHEMAS`].
    ///
    /// The counter reset hint is Prometheus' (`adjustCounterReset`): equal hints stay; else
    /// `Gauge` if either is `Gauge`; else `Unknown` if either is `Unknown`; else (one
    /// `CounterReset`, one `NotCounterReset`, a collision Prometheus warns about, see
    /// [`FloatHistogram::counter_reset_collision`]) `Unknown`.
    pub fn add(&self, other: &FloatHistogram) -> Result<FloatHistogram, String> {
        self.combine(other, false)
    }

    /// `self - other` (Prometheus' `FloatHistogram.Sub`), compacted: as
    /// [`FloatHistogram::add`] with the counts, sum, zero count and buckets of `other`
    /// subtracted; counts may become negative. The counter reset hint is chosen as for `add`
    /// (Prometheus does the same in `Sub`); PromQL's `-` operator then marks its result as a
    /// gauge (`CounterResetHint::Gauge`), which is the caller's job, as in Prometheus.
    pub fn sub(&self, other: &FloatHistogram) -> Result<FloatHistogram, String> {
        self.combine(other, true)
    }

    /// Whether `add`/`sub` of these two histograms reconciles custom buckets of different bounds
    /// (Prometheus' info "mismatched custom buckets were reconciled during …").
    pub fn reconciles_custom_buckets(&self, other: &FloatHistogram) -> bool {
        self.uses_custom_buckets() && other.uses_custom_buckets() && self.custom_values != other.custom_values
    }

    /// The buckets of a custom-bucket histogram on `bounds`, a subset of its own bounds: each
    /// bucket counted in the first of `bounds` at or above its upper bound, or in the `+Inf`
    /// bucket (index `bounds.len()`).
    fn custom_buckets_within(&self, bounds: &[f64]) -> Side {
        let own = side_map(&self.positive_spans, &self.positive_buckets);
        if bounds == self.custom_values.as_slice() {
            return own;
        }
        let mut out = Side::new();
        for (index, count) in own {
            let upper = usize::try_from(index).ok().and_then(|i| self.custom_values.get(i)).copied().unwrap_or(f64::INFINITY);
            add_to(&mut out, bounds.partition_point(|b| *b < upper) as i64, count);
        }
        out
    }

    /// Whether `add`/`sub` of these two histograms is a counter reset hint collision: one says
    /// `CounterReset`, the other `NotCounterReset` (Prometheus then warns "conflicting counter
    /// resets", and the result's hint is `Unknown`).
    pub fn counter_reset_collision(&self, other: &FloatHistogram) -> bool {
        combined_hint(self.counter_reset_hint, other.counter_reset_hint).1
    }

    fn combine(&self, other: &FloatHistogram, subtract: bool) -> Result<FloatHistogram, String> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(INCOMPATIBLE_SCHEMAS.to_string());
        }
        let sign = if subtract { -1.0 } else { 1.0 };
        let (hint, _) = combined_hint(self.counter_reset_hint, other.counter_reset_hint);
        let count = self.count + sign * other.count;
        let sum = self.sum + sign * other.sum;
        if self.uses_custom_buckets() {
            // Bounds that differ are reconciled to those both have.
            let bounds = shared_bounds(&self.custom_values, &other.custom_values);
            let mut positive = self.custom_buckets_within(&bounds);
            for (index, c) in other.custom_buckets_within(&bounds) {
                add_to(&mut positive, index, sign * c);
            }
            let (positive_spans, positive_buckets) = side_spans(&positive, false);
            return Ok(FloatHistogram {
                counter_reset_hint: hint,
                count,
                sum,
                positive_spans,
                positive_buckets,
                custom_values: bounds,
                ..self.clone()
            }
            .compact());
        }
        let mut mine = Sides::of(self);
        let mut theirs = Sides::of(other);
        // As Prometheus: zero buckets first (each at its own schema), then the schemas.
        let other_zero_count = mine.reconcile_zero_buckets(&theirs);
        let schema = mine.schema.min(theirs.schema);
        mine.reduce(schema);
        theirs.reduce(schema);
        for (side, their_side) in [(&mut mine.positive, &theirs.positive), (&mut mine.negative, &theirs.negative)] {
            for (&index, &c) in their_side {
                if bound(index, schema) <= mine.threshold {
                    continue;
                }
                add_to(side, index, sign * c);
            }
        }
        let (positive_spans, positive_buckets) = side_spans(&mine.positive, false);
        let (negative_spans, negative_buckets) = side_spans(&mine.negative, false);
        Ok(FloatHistogram {
            counter_reset_hint: hint,
            schema,
            zero_threshold: mine.threshold,
            zero_count: mine.zero_count + sign * other_zero_count,
            count,
            sum,
            positive_spans,
            positive_buckets,
            negative_spans,
            negative_buckets,
            custom_values: self.custom_values.clone(),
        })
    }

    /// The histogram scaled by `factor` (Prometheus' `Mul`): count, sum, zero count and every
    /// bucket are multiplied (IEEE arithmetic: `0 · ∞` is NaN). A negative factor makes the
    /// result a gauge (`CounterResetHint::Gauge`). Compacted, so buckets that became 0 (a factor
    /// of 0) are dropped.
    pub fn mul(&self, factor: f64) -> FloatHistogram {
        let mut h = self.clone();
        h.zero_count *= factor;
        h.count *= factor;
        h.sum *= factor;
        h.positive_buckets.iter_mut().chain(h.negative_buckets.iter_mut()).for_each(|c| *c *= factor);
        if factor < 0.0 {
            h.counter_reset_hint = CounterResetHint::Gauge;
        }
        h.compact()
    }

    /// The histogram divided by `divisor` (Prometheus' `Div`): count, sum and zero count are
    /// divided (IEEE: `x/0` is ±∞, `0/0` NaN). Dividing by 0 removes all buckets, as Prometheus
    /// does, and keeps the hint; otherwise every bucket is divided, a negative divisor makes the
    /// result a gauge, and the result is compacted.
    pub fn div(&self, divisor: f64) -> FloatHistogram {
        let mut h = self.clone();
        h.zero_count /= divisor;
        h.count /= divisor;
        h.sum /= divisor;
        if divisor == 0.0 {
            h.positive_spans.clear();
            h.positive_buckets.clear();
            h.negative_spans.clear();
            h.negative_buckets.clear();
            return h;
        }
        h.positive_buckets.iter_mut().chain(h.negative_buckets.iter_mut()).for_each(|c| *c /= divisor);
        if divisor < 0.0 {
            h.counter_reset_hint = CounterResetHint::Gauge;
        }
        h.compact()
    }

    /// Whether a counter reset happened between `previous` and `self` (Prometheus'
    /// `DetectReset`). The hint decides first: `CounterReset` is a reset, `NotCounterReset` is
    /// not. Otherwise (`Unknown`, and `Gauge` treated as a counter) it is a reset when: the
    /// count decreased; one histogram has custom buckets and the other not; for custom buckets
    /// of different bounds, a count on the bounds both share decreased or went missing; the
    /// schema increased; the zero threshold decreased; the widened zero
    /// bucket would cut a populated bucket of `previous` in two; the zero count decreased
    /// (against `previous`' zero count for `self`'s threshold); or a bucket of `previous`
    /// (merged to `self`'s schema, outside `self`'s zero bucket) has a higher count than the
    /// same bucket in `self`, or is populated and missing in `self`. The sum is never
    /// compared.
    pub fn detect_reset(&self, previous: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::CounterReset => return true,
            CounterResetHint::NotCounterReset => return false,
            CounterResetHint::Unknown | CounterResetHint::Gauge => {}
        }
        if self.count < previous.count {
            return true;
        }
        if self.uses_custom_buckets() != previous.uses_custom_buckets() {
            return true;
        }
        if self.reconciles_custom_buckets(previous) {
            // Custom buckets of other bounds compare on the bounds both have.
            let bounds = shared_bounds(&self.custom_values, &previous.custom_values);
            let now = self.custom_buckets_within(&bounds);
            return previous.custom_buckets_within(&bounds).into_iter().any(|(index, count)| now.get(&index).map_or(count != 0.0, |c| *c < count));
        }
        if self.schema > previous.schema || self.zero_threshold < previous.zero_threshold {
            return true;
        }
        let mut before = Sides::of(previous);
        let (previous_zero_count, threshold) = before.zero_count_for_larger_threshold(self.zero_threshold);
        if threshold != self.zero_threshold || self.zero_count < previous_zero_count {
            return true;
        }
        before.reduce(self.schema);
        let now = Sides::of(self);
        let exponential = !self.uses_custom_buckets();
        let outside = |index: i64| !exponential || bound(index, self.schema) > self.zero_threshold;
        for (then, current) in [(&before.positive, &now.positive), (&before.negative, &now.negative)] {
            for (&index, &count) in then.iter().filter(|(i, _)| outside(**i)) {
                match current.get(&index) {
                    Some(&c) if c < count => return true,
                    Some(_) => {}
                    None if count != 0.0 => return true,
                    None => {}
                }
            }
        }
        false
    }

    /// Every bucket as Prometheus' `AllBucketIterator` yields it: negative buckets from the
    /// lowest up, the zero bucket (only if its count is above 0), then the positive buckets (for
    /// custom buckets, the buckets in bound order); buckets with a count of 0 included; a
    /// bucket reaching into the zero bucket ends at the zero threshold.
    fn all_buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::new();
        if self.uses_custom_buckets() {
            let bound = |i: i64| match i {
                i if i < 0 => f64::NEG_INFINITY,
                i => self.custom_values.get(i as usize).copied().unwrap_or(f64::INFINITY),
            };
            for (index, count) in side_map(&self.positive_spans, &self.positive_buckets) {
                let (lower, upper) = (bound(index - 1), bound(index));
                out.push(Bucket { lower, upper, lower_inclusive: lower < 0.0, upper_inclusive: upper > 0.0, count });
            }
            return out;
        }
        let threshold = self.zero_threshold;
        for (index, count) in side_map(&self.negative_spans, &self.negative_buckets).into_iter().rev() {
            let lower = -bound(index, self.schema);
            let mut upper = -bound(index - 1, self.schema);
            if upper < 0.0 && upper > -threshold {
                upper = -threshold;
            }
            out.push(Bucket { lower, upper, lower_inclusive: true, upper_inclusive: upper > 0.0, count });
        }
        if self.zero_count > 0.0 {
            out.push(Bucket {
                lower: -threshold,
                upper: threshold,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
            });
        }
        for (index, count) in side_map(&self.positive_spans, &self.positive_buckets) {
            let mut lower = bound(index - 1, self.schema);
            if lower > 0.0 && lower < threshold {
                lower = threshold;
            }
            let upper = bound(index, self.schema);
            out.push(Bucket { lower, upper, lower_inclusive: lower < 0.0, upper_inclusive: true, count });
        }
        out
    }

    /// The `q`-quantile of the observations (Prometheus' `HistogramQuantile`, i.e.
    /// `histogram_quantile` of a native histogram).
    ///
    /// `q < 0` gives −∞, `q > 1` +∞; a count of 0 or a NaN `q` gives NaN. The rank `q · count`
    /// is looked up from the lowest bucket up when `q < 0.5` or the sum is NaN (NaN
    /// observations are in the count but in no bucket), else from the highest bucket down with
    /// rank `(1 − q) · count`. Within the bucket found: exponential buckets interpolate
    /// exponentially (linearly in log2 of the bounds); the zero bucket and custom buckets
    /// linearly. The zero bucket starts at 0 if there are only positive buckets, and ends at 0
    /// if there are only negative ones. Custom buckets: a quantile in the first bucket (from
    /// −∞) is its upper bound if that is ≤ 0, else interpolated from 0; in the last bucket (to
    /// +∞) it is the bucket's lower bound. When the buckets do not reach the rank (NaN
    /// observations), the result is NaN if the sum is NaN, else the last bucket's upper bound.
    pub fn quantile(&self, q: f64) -> f64 {
        if q < 0.0 {
            return f64::NEG_INFINITY;
        }
        if q > 1.0 {
            return f64::INFINITY;
        }
        if self.count == 0.0 || q.is_nan() {
            return f64::NAN;
        }
        let buckets = self.all_buckets();
        let forward = self.sum.is_nan() || q < 0.5;
        let mut rank = if forward { q * self.count } else { (1.0 - q) * self.count };
        let ordered: Box<dyn Iterator<Item = &Bucket>> = if forward { Box::new(buckets.iter()) } else { Box::new(buckets.iter().rev()) };
        let mut bucket = Bucket { lower: 0.0, upper: 0.0, lower_inclusive: false, upper_inclusive: false, count: 0.0 };
        let mut count = 0.0;
        for b in ordered {
            bucket = *b;
            if bucket.count == 0.0 {
                continue;
            }
            count += bucket.count;
            if count >= rank {
                break;
            }
        }
        let custom = self.uses_custom_buckets();
        if !custom && bucket.lower < 0.0 && bucket.upper > 0.0 {
            if self.negative_buckets.is_empty() && !self.positive_buckets.is_empty() {
                bucket.lower = 0.0;
            } else if self.positive_buckets.is_empty() && !self.negative_buckets.is_empty() {
                bucket.upper = 0.0;
            }
        } else if custom {
            if bucket.lower == f64::NEG_INFINITY {
                if bucket.upper <= 0.0 {
                    return bucket.upper;
                }
                bucket.lower = 0.0;
            } else if bucket.upper == f64::INFINITY {
                return bucket.lower;
            }
        }
        if count > self.count {
            count = self.count;
        }
        if count < rank {
            return if self.sum.is_nan() { f64::NAN } else { bucket.upper };
        }
        if forward {
            rank -= count - bucket.count;
        } else {
            rank = count - rank;
        }
        let fraction = rank / bucket.count;
        if custom || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
            return bucket.lower + (bucket.upper - bucket.lower) * fraction;
        }
        let log_lower = bucket.lower.abs().log2();
        let log_upper = bucket.upper.abs().log2();
        if bucket.lower > 0.0 {
            (log_lower + (log_upper - log_lower) * fraction).exp2()
        } else {
            -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
        }
    }

    /// The fraction of the observations between `lower` and `upper` (Prometheus'
    /// `HistogramFraction`, i.e. `histogram_fraction` of a native histogram), the inverse of
    /// [`FloatHistogram::quantile`].
    ///
    /// NaN for a count of 0 or a NaN bound; 0 when `lower >= upper`. A bound inside a bucket is
    /// interpolated as the quantile does: exponentially in exponential buckets, linearly in
    /// the zero bucket and in custom buckets. A bucket containing 0 is treated as the zero
    /// bucket (starting at 0 if there are only positive buckets, ending at 0 if only negative
    /// ones), custom buckets included. In a custom bucket from −∞ a bound counts the whole
    /// bucket as below it; in a bucket to +∞ none of it. With a NaN sum the observations
    /// outside all buckets (NaN observations) are in no fraction, so `(-∞, +∞)` can be below 1.
    pub fn fraction(&self, lower: f64, upper: f64) -> f64 {
        if self.count == 0.0 || lower.is_nan() || upper.is_nan() {
            return f64::NAN;
        }
        if lower >= upper {
            return 0.0;
        }
        let custom = self.uses_custom_buckets();
        let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
        let (mut lower_set, mut upper_set) = (false, false);
        let mut in_buckets = 0.0;
        let buckets = self.all_buckets();
        let mut it = buckets.iter();
        let linear = |b: &Bucket, rank: f64, v: f64| {
            if b.lower == f64::NEG_INFINITY {
                return b.count;
            }
            rank + b.count * (v - b.lower) / (b.upper - b.lower)
        };
        let exponential = |b: &Bucket, rank: f64, v: f64| {
            let (log_lower, log_upper, log_v) = (b.lower.abs().log2(), b.upper.abs().log2(), v.abs().log2());
            let fraction =
                if v > 0.0 { (log_v - log_lower) / (log_upper - log_lower) } else { 1.0 - ((log_v - log_upper) / (log_lower - log_upper)) };
            rank + b.count * fraction
        };
        for b in it.by_ref() {
            let mut b = *b;
            in_buckets += b.count;
            let mut zero_bucket = false;
            if b.lower <= 0.0 && b.upper >= 0.0 {
                zero_bucket = true;
                if self.negative_buckets.is_empty() && !self.positive_buckets.is_empty() {
                    b.lower = 0.0;
                } else if self.positive_buckets.is_empty() && !self.negative_buckets.is_empty() {
                    b.upper = 0.0;
                }
            }
            if !lower_set && b.lower >= lower {
                lower_rank = rank;
                lower_set = true;
            }
            if !upper_set && b.lower >= upper {
                upper_rank = rank;
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            let interpolate = |v: f64| if custom || zero_bucket { linear(&b, rank, v) } else { exponential(&b, rank, v) };
            if !lower_set && b.lower < lower && b.upper > lower {
                lower_rank = interpolate(lower);
                lower_set = true;
            }
            if !upper_set && b.lower < upper && b.upper > upper {
                upper_rank = interpolate(upper);
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            rank += b.count;
        }
        // Observations outside the buckets (NaN ones, the sum is then NaN) are in no fraction.
        let count = if self.sum.is_nan() {
            for b in it {
                in_buckets += b.count;
            }
            in_buckets
        } else {
            self.count
        };
        if !lower_set || lower_rank > count {
            lower_rank = count;
        }
        if !upper_set || upper_rank > count {
            upper_rank = count;
        }
        (upper_rank - lower_rank) / self.count
    }

    /// The variance of the observations as Prometheus estimates it (`histogram_stdvar`): the
    /// mean is `sum / count`, every populated bucket stands for its count of observations at
    /// one value: the geometric mean of its bounds for exponential buckets (negated for
    /// negative buckets; a bucket clamped at the zero threshold uses the threshold as bound),
    /// 0 for the zero bucket, the arithmetic mean of the bounds for custom buckets (infinite
    /// for the buckets from −∞ or to +∞). The squared deviations are summed with Kahan-Neumaier
    /// compensation and divided by the count. NaN for a count of 0.
    pub fn stdvar(&self) -> f64 {
        let mean = self.sum / self.count;
        let custom = self.uses_custom_buckets();
        let (mut variance, mut compensation) = (0.0, 0.0);
        for b in self.all_buckets() {
            if b.count == 0.0 {
                continue;
            }
            let value = if custom {
                (b.upper + b.lower) / 2.0
            } else if b.lower <= 0.0 && b.upper >= 0.0 {
                0.0
            } else {
                let v = (b.upper * b.lower).sqrt();
                if b.upper < 0.0 { -v } else { v }
            };
            let delta = value - mean;
            (variance, compensation) = crate::float::kahan_sum_inc(b.count * delta * delta, variance, compensation);
        }
        (variance + compensation) / self.count
    }

    /// The standard deviation of the observations as Prometheus estimates it
    /// (`histogram_stddev`): the square root of [`FloatHistogram::stdvar`].
    pub fn stddev(&self) -> f64 {
        self.stdvar().sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::float::almost_equal;
    use crate::histogram::CUSTOM_BUCKETS_SCHEMA;
    use CounterResetHint::*;

    fn num(s: &str) -> f64 {
        match s {
            "Inf" | "+Inf" | "inf" | "+inf" => f64::INFINITY,
            "-Inf" | "-inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => s.parse().unwrap_or_else(|_| panic!("not a number: {s}")),
        }
    }

    /// A histogram in the notation of Prometheus' PromQL test files
    /// (`{{schema:0 sum:5 count:4 z_bucket:1 z_bucket_w:0.001 buckets:[1 2 1] offset:1
    /// n_buckets:[…] n_offset:… custom_values:[…] counter_reset_hint:gauge}}`).
    fn nh(text: &str) -> FloatHistogram {
        let mut rest = text.trim().trim_start_matches("{{").trim_end_matches("}}").trim();
        let mut h = FloatHistogram::default();
        let (mut pos, mut neg, mut offset, mut n_offset) = (Vec::new(), Vec::new(), 0, 0);
        while !rest.is_empty() {
            let colon = rest.find(':').expect("key:value");
            let key = rest[..colon].trim();
            rest = rest[colon + 1..].trim_start();
            let value;
            if let Some(list) = rest.strip_prefix('[') {
                let end = list.find(']').expect("closing ]");
                value = &list[..end];
                rest = list[end + 1..].trim_start();
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                value = &rest[..end];
                rest = rest[end..].trim_start();
            }
            let list = || value.split_whitespace().map(num).collect::<Vec<f64>>();
            match key {
                "schema" => h.schema = value.parse().expect("schema"),
                "sum" => h.sum = num(value),
                "count" => h.count = num(value),
                "z_bucket" => h.zero_count = num(value),
                "z_bucket_w" => h.zero_threshold = num(value),
                "buckets" => pos = list(),
                "n_buckets" => neg = list(),
                "offset" => offset = value.parse().expect("offset"),
                "n_offset" => n_offset = value.parse().expect("n_offset"),
                "custom_values" => h.custom_values = list(),
                "counter_reset_hint" => {
                    h.counter_reset_hint = match value {
                        "gauge" => Gauge,
                        "reset" => CounterReset,
                        "not_reset" => NotCounterReset,
                        _ => Unknown,
                    }
                }
                _ => panic!("unknown key {key}"),
            }
        }
        if !pos.is_empty() {
            h.positive_spans = vec![Span { offset, length: pos.len() as u32 }];
            h.positive_buckets = pos;
        }
        if !neg.is_empty() {
            h.negative_spans = vec![Span { offset: n_offset, length: neg.len() as u32 }];
            h.negative_buckets = neg;
        }
        h
    }

    fn spans(s: &[(i32, u32)]) -> Vec<Span> {
        s.iter().map(|&(offset, length)| Span { offset, length }).collect()
    }

    /// A histogram as the Go struct literals of Prometheus' `float_histogram_test.go` write it.
    #[allow(clippy::too_many_arguments)]
    fn fh(
        schema: i32,
        zero_threshold: f64,
        zero_count: f64,
        count: f64,
        sum: f64,
        pos: (&[(i32, u32)], &[f64]),
        neg: (&[(i32, u32)], &[f64]),
    ) -> FloatHistogram {
        FloatHistogram {
            schema,
            zero_threshold,
            zero_count,
            count,
            sum,
            positive_spans: spans(pos.0),
            positive_buckets: pos.1.to_vec(),
            negative_spans: spans(neg.0),
            negative_buckets: neg.1.to_vec(),
            ..Default::default()
        }
    }

    #[track_caller]
    fn close(got: f64, want: f64, epsilon: f64) {
        assert!(almost_equal(got, want, epsilon), "got {got}, want {want}");
    }

    // ---- compact / copy_to_schema ----

    #[test]
    fn compact_drops_empty_buckets_and_merges_spans() {
        // Prometheus' TestFloatHistogramCompact "cut empty buckets from the middle of a span":
        // positive buckets -4..1 = [0 0 1 0 0 3.3], then 5..7 = [4.2 0.1 3.3].
        let h = fh(
            0,
            0.0,
            0.0,
            0.0,
            0.0,
            (&[(-4, 6), (3, 3)], &[0.0, 0.0, 1.0, 0.0, 0.0, 3.3, 4.2, 0.1, 3.3]),
            (&[(0, 2), (3, 5)], &[3.1, 3.0, 1.234e5, 1000.0, 0.0, 3.0, 4.0]),
        );
        let c = h.compact();
        assert_eq!(c.positive_spans, spans(&[(-2, 1), (2, 1), (3, 3)]));
        assert_eq!(c.positive_buckets, vec![1.0, 3.3, 4.2, 0.1, 3.3]);
        assert_eq!(c.negative_spans, spans(&[(0, 2), (3, 2), (1, 2)]));
        assert_eq!(c.negative_buckets, vec![3.1, 3.0, 1.234e5, 1000.0, 3.0, 4.0]);
        // "eliminate zero offsets" and "eliminate zero length": the same buckets described
        // differently become equal.
        let a = fh(0, 0.0, 0.0, 0.0, 0.0, (&[(-2, 1), (0, 3), (0, 1)], &[1.0, 3.3, 4.2, 0.1, 3.3]), (&[], &[]));
        let want = fh(0, 0.0, 0.0, 0.0, 0.0, (&[(-2, 5)], &[1.0, 3.3, 4.2, 0.1, 3.3]), (&[], &[]));
        assert_eq!(a.compact(), want);
        let b = fh(0, 0.0, 0.0, 0.0, 0.0, (&[(-2, 2), (2, 0), (3, 3)], &[1.0, 3.3, 4.2, 0.1, 3.3]), (&[], &[]));
        let want = fh(0, 0.0, 0.0, 0.0, 0.0, (&[(-2, 2), (5, 3)], &[1.0, 3.3, 4.2, 0.1, 3.3]), (&[], &[]));
        assert_eq!(b.compact(), want);
        let with_empty = fh(0, 0.0, 0.0, 0.0, 0.0, (&[(-3, 3), (0, 2), (2, 4)], &[0.0, 1.0, 3.3, 0.0, 0.0, 0.0, 4.2, 0.1, 3.3]), (&[], &[]));
        assert_eq!(with_empty.compact(), want, "same buckets, other spans, empty buckets");
        // "multiple spans of only empty buckets" on both sides.
        let h = fh(0, 0.0, 0.0, 0.0, 0.0, (&[(-10, 2), (2, 1), (3, 3)], &[0.0, 0.0, 0.0, 0.0, 2.0, 3.0]), (&[(-10, 2), (2, 1), (3, 3)], &[2.0, 3.0, 0.0, 0.0, 0.0, 0.0]));
        let c = h.compact();
        assert_eq!((c.positive_spans, c.positive_buckets), (spans(&[(-1, 2)]), vec![2.0, 3.0]));
        assert_eq!((c.negative_spans, c.negative_buckets), (spans(&[(-10, 2)]), vec![2.0, 3.0]));
        // NaN counts are not empty.
        let h = fh(0, 0.0, 0.0, 0.0, 0.0, (&[(0, 2)], &[f64::NAN, 0.0]), (&[], &[]));
        assert_eq!(h.compact().positive_spans, spans(&[(0, 1)]));
    }

    /// The schema-1 histogram of Prometheus' "schema change" test cases (copy to schema 0, add).
    fn schema_1_example() -> FloatHistogram {
        fh(
            1,
            0.01,
            11.0,
            30.0,
            2.345,
            (&[(-4, 3), (5, 5)], &[1.0, 0.0, 0.0, 3.0, 2.0, 2.0, 3.0, 4.0]),
            (&[(6, 3), (6, 4)], &[3.0, 0.5, 0.5, 2.0, 3.0, 2.0, 4.0]),
        )
    }

    #[test]
    fn copy_to_schema_merges_buckets_as_target_idx() {
        // Prometheus' TestFloatHistogramCopyToSchema "schema change" (1 → 0).
        let h = schema_1_example();
        let want = fh(
            0,
            0.01,
            11.0,
            30.0,
            2.345,
            (&[(-2, 2), (2, 3)], &[1.0, 0.0, 3.0, 4.0, 7.0]),
            (&[(3, 2), (3, 2)], &[3.0, 1.0, 5.0, 6.0]),
        );
        assert_eq!(h.copy_to_schema(0), want);
        // "no schema change": an unchanged copy, hint included.
        let mut gauge = h.clone();
        gauge.counter_reset_hint = Gauge;
        assert_eq!(gauge.copy_to_schema(1), gauge);
        // A schema change resets the hint to Unknown, as Prometheus' CopyToSchema.
        assert_eq!(gauge.copy_to_schema(0).counter_reset_hint, Unknown);
        // Two steps down at once: schema 1 → -1 merges 4 buckets into one; index i maps to
        // ((i-1) >> 2) + 1: -4 → -1, -3 and -2 → 0 (empty, kept), 4 → 1, 5..8 → 2. By the
        // bounds: (2^-2.5, 2^-2] ⊂ (1/16, 1/4], (2^1.5, 4] ⊂ (1, 4], (4, 16] ⊂ (4, 16].
        let r = h.copy_to_schema(-1);
        assert_eq!(r.positive_spans, spans(&[(-1, 4)]));
        assert_eq!(r.positive_buckets, vec![1.0, 0.0, 3.0, 11.0]);
        assert_eq!(r.schema, -1);
        // Custom buckets and a higher target are returned unchanged.
        let custom = nh("{{schema:-53 sum:5 count:4 custom_values:[5 10] buckets:[1 2 1]}}");
        assert_eq!(custom.copy_to_schema(0), custom);
        assert_eq!(h.copy_to_schema(3), h);
    }

    // ---- add / sub ----

    /// The first operands of Prometheus' TestFloatHistogramAdd cases.
    fn add_a() -> FloatHistogram {
        fh(0, 0.01, 11.0, 30.0, 2.345, (&[(-2, 2), (2, 3)], &[1.0, 0.0, 3.0, 4.0, 7.0]), (&[(3, 2), (3, 2)], &[3.0, 1.0, 5.0, 6.0]))
    }
    fn add_b() -> FloatHistogram {
        fh(0, 0.01, 8.0, 21.0, 1.234, (&[(-1, 4), (0, 3)], &[5.0, 4.0, 2.0, 3.0, 6.0, 2.0, 5.0]), (&[(4, 2), (1, 2)], &[1.0, 1.0, 4.0, 4.0]))
    }

    #[test]
    fn add_overlapping_spans_in_both_orders() {
        // TestFloatHistogramAdd "overlapping spans" and "... inverted order".
        let want = fh(
            0,
            0.01,
            19.0,
            51.0,
            3.579,
            (&[(-2, 4), (0, 4)], &[1.0, 5.0, 4.0, 2.0, 6.0, 10.0, 9.0, 5.0]),
            (&[(3, 3), (1, 3)], &[3.0, 2.0, 1.0, 4.0, 9.0, 6.0]),
        )
        .compact();
        assert_eq!(add_a().add(&add_b()).unwrap(), want);
        let got = add_b().add(&add_a()).unwrap();
        assert_eq!(got.positive_buckets, want.positive_buckets);
        assert_eq!(got.positive_spans, want.positive_spans);
        assert_eq!(got.negative_spans, want.negative_spans);
        assert_eq!((got.count, got.zero_count), (51.0, 19.0));
        // The result is compacted: spans canonical (Prometheus would leave {-2,4},{0,4}).
        assert_eq!(got.positive_spans, spans(&[(-2, 8)]));
    }

    #[test]
    fn add_reduces_to_the_lower_schema() {
        // TestFloatHistogramAdd "schema change": schema 0 + schema 1 → schema 0.
        let b1 = schema_1_example();
        let want = fh(
            0,
            0.01,
            19.0,
            51.0,
            3.579,
            (&[(-2, 5), (0, 3)], &[1.0, 5.0, 4.0, 2.0, 6.0, 10.0, 9.0, 5.0]),
            (&[(3, 3), (1, 3)], &[3.0, 2.0, 1.0, 4.0, 9.0, 6.0]),
        )
        .compact();
        assert_eq!(add_b().add(&b1).unwrap(), want);
        // Commutative up to float rounding of the sum: the receiver's higher schema is reduced.
        let other_way = b1.add(&add_b()).unwrap();
        assert_eq!(other_way.schema, 0);
        assert_eq!(other_way.positive_buckets, want.positive_buckets);
        assert_eq!(other_way.negative_buckets, want.negative_buckets);
    }

    #[test]
    fn add_widens_the_zero_bucket_to_a_bucket_boundary() {
        // TestFloatHistogramAdd "larger zero threshold in first histogram ends up inside a
        // populated bucket of second histogram": threshold 0.2 falls into the second's bucket
        // (0.125, 0.25] (count 1), so the common threshold becomes 0.25 and that bucket moves
        // into the zero count: 17 + 11 + 1 = 29.
        let first = fh(0, 0.2, 17.0, 21.0, 1.234, (&[(1, 2), (0, 3)], &[2.0, 3.0, 6.0, 2.0, 5.0]), (&[(4, 2), (1, 2)], &[1.0, 1.0, 4.0, 4.0]));
        let want = fh(
            0,
            0.25,
            29.0,
            51.0,
            3.579,
            (&[(-1, 1), (1, 5)], &[0.0, 2.0, 6.0, 10.0, 9.0, 5.0]),
            (&[(3, 7)], &[3.0, 2.0, 1.0, 0.0, 4.0, 9.0, 6.0]),
        )
        .compact();
        assert_eq!(first.add(&add_a()).unwrap(), want);
        // "... in second histogram ends up inside a populated bucket of first histogram".
        let got = add_a().add(&first).unwrap();
        assert_eq!((got.zero_threshold, got.zero_count), (0.25, 29.0));
        assert_eq!(got.positive_buckets, want.positive_buckets);
        assert_eq!(got.negative_buckets, want.negative_buckets);
        // "larger zero bucket in first histogram" (threshold 1): the second's buckets -2
        // (count 1) and -1 (0) join the zero count 17 + 11 + 1 = 29.
        let wide = fh(0, 1.0, 17.0, 21.0, 1.234, (&[(1, 2), (0, 3)], &[2.0, 3.0, 6.0, 2.0, 5.0]), (&[(4, 2), (1, 2)], &[1.0, 1.0, 4.0, 4.0]));
        let got = wide.add(&add_a()).unwrap();
        assert_eq!((got.zero_threshold, got.zero_count), (1.0, 29.0));
        assert_eq!(got.positive_spans, spans(&[(1, 5)]));
        assert_eq!(got.positive_buckets, vec![2.0, 6.0, 10.0, 9.0, 5.0]);
    }

    #[test]
    fn add_schema_change_with_larger_zero_bucket() {
        // TestFloatHistogramAdd "schema change combined with larger zero bucket in second
        // histogram": the first's bucket -2 (0.125, 0.25] (count 2) moves into its zero count,
        // 8 + 2 + 12 = 22; the second (schema 1) is merged to schema 0.
        let first = fh(0, 0.01, 8.0, 21.0, 1.234, (&[(-2, 5), (0, 3)], &[2.0, 5.0, 4.0, 2.0, 3.0, 6.0, 2.0, 5.0]), (&[(4, 2), (1, 2)], &[1.0, 1.0, 4.0, 4.0]));
        let second = fh(
            1,
            0.25,
            12.0,
            30.0,
            2.345,
            (&[(-3, 2), (5, 5)], &[1.0, 0.0, 3.0, 2.0, 2.0, 3.0, 4.0]),
            (&[(6, 3), (6, 4)], &[3.0, 0.5, 0.5, 2.0, 3.0, 2.0, 4.0]),
        );
        let want = fh(
            0,
            0.25,
            22.0,
            51.0,
            3.579,
            (&[(-1, 7)], &[6.0, 4.0, 2.0, 6.0, 10.0, 9.0, 5.0]),
            (&[(3, 7)], &[3.0, 2.0, 1.0, 0.0, 4.0, 9.0, 6.0]),
        )
        .compact();
        assert_eq!(first.add(&second).unwrap(), want);
    }

    #[test]
    fn sub_as_prometheus() {
        // TestFloatHistogramSub "same bucket layout".
        let a = fh(0, 0.01, 11.0, 30.0, 23.0, (&[(-2, 2), (1, 3)], &[1.0, 0.0, 3.0, 4.0, 7.0]), (&[(3, 2), (3, 2)], &[3.0, 1.0, 5.0, 6.0]));
        let b = fh(0, 0.01, 8.0, 21.0, 12.0, (&[(-2, 2), (1, 3)], &[0.0, 0.0, 2.0, 3.0, 6.0]), (&[(3, 2), (3, 2)], &[1.0, 1.0, 4.0, 4.0]));
        let want = fh(0, 0.01, 3.0, 9.0, 11.0, (&[(-2, 2), (1, 3)], &[1.0, 0.0, 1.0, 1.0, 1.0]), (&[(3, 2), (3, 2)], &[2.0, 0.0, 1.0, 2.0]));
        assert_eq!(a.sub(&b).unwrap(), want.compact());
        // "schema change": schema 0 minus schema 1.
        let a = fh(0, 0.01, 8.0, 59.0, 1.234, (&[(-2, 5), (0, 3)], &[2.0, 5.0, 4.0, 2.0, 3.0, 6.0, 7.0, 5.0]), (&[(3, 3), (1, 3)], &[4.0, 10.0, 1.0, 4.0, 14.0, 7.0]));
        let b = fh(1, 0.01, 2.0, 19.0, 0.345, (&[(-4, 3), (5, 5)], &[1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 3.0, 4.0]), (&[(6, 3), (6, 4)], &[3.0, 0.5, 0.5, 2.0, 3.0, 2.0, 4.0]));
        let got = a.sub(&b).unwrap();
        assert_eq!((got.schema, got.zero_count, got.count), (0, 6.0, 40.0));
        close(got.sum, 0.889, 1e-12);
        let want = fh(0, 0.01, 6.0, 40.0, got.sum, (&[(-2, 5), (0, 3)], &[1.0, 5.0, 4.0, 2.0, 2.0, 2.0, 0.0, 5.0]), (&[(3, 3), (1, 3)], &[1.0, 9.0, 1.0, 4.0, 9.0, 1.0]));
        assert_eq!(got, want.compact());
    }

    #[test]
    fn sub_with_negative_results_from_promql_tests() {
        // native_histograms.test "histogram_sub_2": schema 0 minus schema 1 (reduced to 0).
        let a = nh("{{schema:0 count:41 sum:2345.6 z_bucket:5 z_bucket_w:0.001 buckets:[1 3 1 2 1 1 1] n_buckets:[0 1 4 2 7 0 0 0 0 5 5 2]}}");
        let b = nh("{{schema:1 count:11 sum:1234.5 z_bucket:3 z_bucket_w:0.001 buckets:[0 2 1] n_buckets:[0 0 3 2]}}");
        let want = nh("{{schema:0 count:30 sum:1111.1 z_bucket:2 z_bucket_w:0.001 buckets:[1 0 1 2 1 1 1] n_buckets:[0 -2 2 2 7 0 0 0 0 5 5 2]}}");
        let got = a.sub(&b).unwrap();
        close(got.sum, 1111.1, 1e-12);
        assert_eq!(got, FloatHistogram { sum: got.sum, ..want.compact() });
        // "histogram_sub_3": the other way round, everything negative.
        let got = b.sub(&a).unwrap();
        let want = nh("{{schema:0 count:-30 sum:-1111.1 z_bucket:-2 z_bucket_w:0.001 buckets:[-1 0 -1 -2 -1 -1 -1] n_buckets:[0 2 -2 -2 -7 0 0 0 0 -5 -5 -2]}}");
        assert_eq!(got, FloatHistogram { sum: got.sum, ..want.compact() });
    }

    #[test]
    fn custom_buckets_of_other_bounds_are_reconciled_to_the_shared_ones() {
        // native_histograms.test: sum of {{custom_values:[2] buckets:[1]}} and [7].
        let a = nh("{{schema:-53 sum:1 count:1 custom_values:[2] buckets:[1]}}");
        let b = nh("{{schema:-53 sum:3 count:4 custom_values:[2] buckets:[7]}}");
        let sum = a.add(&b).unwrap();
        assert_eq!(sum.schema, CUSTOM_BUCKETS_SCHEMA);
        assert_eq!(sum, nh("{{schema:-53 sum:4 count:5 custom_values:[2] buckets:[8]}}"));
        let c = nh("{{schema:-53 sum:4 count:3 custom_values:[2] buckets:[1 2]}}");
        assert_eq!(c.sub(&a).unwrap(), nh("{{schema:-53 sum:3 count:2 custom_values:[2] buckets:[0 2]}}").compact());
        // No shared bound: everything lands in +Inf.
        let other_bounds = nh("{{schema:-53 sum:1 count:1 custom_values:[5 10] buckets:[1]}}");
        assert!(a.reconciles_custom_buckets(&other_bounds) && !a.reconciles_custom_buckets(&b));
        assert_eq!(a.add(&other_bounds).unwrap(), nh("{{schema:-53 sum:2 count:2 buckets:[2]}}"));
        assert_eq!(a.sub(&other_bounds).unwrap(), nh("{{schema:-53 sum:0 count:0}}"));
        // Shared bound 5: x is (≤1: 1, (1,5]: 2, (5,10]: 3, +Inf: 4) → (≤5: 3, +Inf: 7);
        // y is (≤5: 10, (5,20]: 20, +Inf: 30) → (≤5: 10, +Inf: 50).
        let x = nh("{{schema:-53 sum:20 count:10 custom_values:[1 5 10] buckets:[1 2 3 4]}}");
        let y = nh("{{schema:-53 sum:100 count:60 custom_values:[5 20] buckets:[10 20 30]}}");
        assert_eq!(x.add(&y).unwrap(), nh("{{schema:-53 sum:120 count:70 custom_values:[5] buckets:[13 57]}}"));
        assert_eq!(y.sub(&x).unwrap(), nh("{{schema:-53 sum:80 count:50 custom_values:[5] buckets:[7 43]}}"));
        // Resets compare on the shared bounds: y has more in both than x.
        assert!(!y.detect_reset(&x));
        // On the shared bounds 1 and 5, x is (1, 2, 7). z is the same: no reset. w moves the
        // two observations of (1,5] above 5: that bucket decreases, a reset.
        let z = nh("{{schema:-53 sum:20 count:10 custom_values:[1 5] buckets:[1 2 7]}}");
        assert!(!z.detect_reset(&x));
        let w = nh("{{schema:-53 sum:20 count:10 custom_values:[1 5] buckets:[1 0 9]}}");
        assert!(w.detect_reset(&x));
        let exponential = nh("{{sum:2 count:3 buckets:[1 1 1]}}");
        assert_eq!(exponential.add(&a).unwrap_err(), INCOMPATIBLE_SCHEMAS);
        assert_eq!(a.sub(&exponential).unwrap_err(), INCOMPATIBLE_SCHEMAS);
    }

    #[test]
    fn add_and_sub_counter_reset_hints() {
        // Prometheus' adjustCounterReset, receiver hint × other hint → result (collision).
        let cases = [
            (NotCounterReset, NotCounterReset, NotCounterReset, false),
            (Gauge, NotCounterReset, Gauge, false),
            (NotCounterReset, Gauge, Gauge, false),
            (Unknown, Gauge, Gauge, false),
            (Unknown, CounterReset, Unknown, false),
            (NotCounterReset, Unknown, Unknown, false),
            (CounterReset, NotCounterReset, Unknown, true),
            (NotCounterReset, CounterReset, Unknown, true),
            (CounterReset, CounterReset, CounterReset, false),
        ];
        for (a, b, want, collision) in cases {
            let x = FloatHistogram { counter_reset_hint: a, count: 1.0, ..Default::default() };
            let y = FloatHistogram { counter_reset_hint: b, count: 1.0, ..Default::default() };
            assert_eq!(x.add(&y).unwrap().counter_reset_hint, want, "{a:?} + {b:?}");
            assert_eq!(x.sub(&y).unwrap().counter_reset_hint, want, "{a:?} - {b:?}");
            assert_eq!(x.counter_reset_collision(&y), collision, "{a:?} vs {b:?}");
        }
    }

    // ---- mul / div ----

    #[test]
    fn mul_and_div_scale_everything() {
        // native_histograms.test "histogram_mul_div".
        let h = nh("{{schema:0 count:30 sum:33 z_bucket:3 z_bucket_w:0.001 buckets:[3 3 3] n_buckets:[6 6 6]}}");
        assert_eq!(h.mul(3.0), nh("{{schema:0 count:90 sum:99 z_bucket:9 z_bucket_w:0.001 buckets:[9 9 9] n_buckets:[18 18 18]}}"));
        assert_eq!(
            h.mul(-1.0),
            nh("{{schema:0 count:-30 sum:-33 z_bucket:-3 z_bucket_w:0.001 buckets:[-3 -3 -3] n_buckets:[-6 -6 -6] counter_reset_hint:gauge}}")
        );
        assert_eq!(h.div(3.0), nh("{{schema:0 count:10 sum:11 z_bucket:1 z_bucket_w:0.001 buckets:[1 1 1] n_buckets:[2 2 2]}}"));
        assert_eq!(
            h.div(-3.0),
            nh("{{schema:0 count:-10 sum:-11 z_bucket:-1 z_bucket_w:0.001 buckets:[-1 -1 -1] n_buckets:[-2 -2 -2] counter_reset_hint:gauge}}")
        );
        // Multiplying by 0 leaves only empty buckets, which compaction drops.
        assert_eq!(h.mul(0.0), nh("{{schema:0 count:0 sum:0 z_bucket:0 z_bucket_w:0.001}}"));
        // Division by zero: Inf counts, no buckets; 0/0 gives NaN.
        assert_eq!(h.div(0.0), nh("{{schema:0 count:Inf sum:Inf z_bucket_w:0.001 z_bucket:Inf}}"));
        let nan = h.mul(0.0).div(0.0);
        assert!(nan.count.is_nan() && nan.sum.is_nan() && nan.zero_count.is_nan());
        assert!(nan.positive_spans.is_empty() && nan.negative_buckets.is_empty());
    }

    // ---- detect_reset ----

    /// The histogram most of Prometheus' TestFloatHistogramDetectReset cases start from.
    fn reset_base() -> FloatHistogram {
        fh(
            0,
            0.01,
            5.5,
            3493.3,
            2349209.324,
            (&[(-2, 2), (1, 3)], &[1.0, 0.0, 3.3, 4.2, 0.1]),
            (&[(3, 2), (3, 2)], &[3.1, 3.0, 1.234e5, 1000.0]),
        )
    }

    #[test]
    fn detect_reset_by_counts_and_buckets() {
        let base = reset_base();
        assert!(!FloatHistogram::default().detect_reset(&FloatHistogram::default()));
        assert!(!base.detect_reset(&FloatHistogram::default()), "no buckets to some buckets");
        assert!(FloatHistogram::default().detect_reset(&base), "some buckets to no buckets");
        // "an unpopulated bucket disappears": bucket -1 (count 0) is gone.
        let mut now = base.clone();
        now.positive_spans = spans(&[(-2, 1), (2, 3)]);
        now.positive_buckets = vec![1.0, 3.3, 4.2, 0.1];
        assert!(!now.detect_reset(&base));
        // "one bucket disappears": previous had 1.23 in bucket -1.
        let mut before = base.clone();
        before.positive_buckets = vec![1.0, 1.23, 3.3, 4.2, 0.1];
        assert!(now.detect_reset(&before));
        // "one positive bucket goes down" (4.2 → 4.1), "... goes up" (→ 4.3).
        let mut down = base.clone();
        down.positive_buckets[3] = 4.1;
        assert!(down.detect_reset(&base));
        let mut up = base.clone();
        up.positive_buckets[3] = 4.3;
        assert!(!up.detect_reset(&base));
        // "one negative bucket goes down" (3 → 2.9).
        let mut down = base.clone();
        down.negative_buckets[1] = 2.9;
        assert!(down.detect_reset(&base));
        // "count goes down", "zero count goes down"; "sum goes down" is no reset.
        let mut c = base.clone();
        c.count = 3493.2;
        assert!(c.detect_reset(&base));
        let mut z = base.clone();
        z.zero_count = 5.4;
        assert!(z.detect_reset(&base));
        let mut s = base.clone();
        s.sum = 2349200.0;
        assert!(!s.detect_reset(&base));
    }

    #[test]
    fn detect_reset_hints_shortcut() {
        let base = reset_base();
        let now = FloatHistogram { counter_reset_hint: NotCounterReset, ..Default::default() };
        assert!(!now.detect_reset(&base), "NotCounterReset wins over a count decrease");
        let mut same = base.clone();
        same.counter_reset_hint = CounterReset;
        assert!(same.detect_reset(&base), "CounterReset wins over equal histograms");
        let gauge = FloatHistogram { counter_reset_hint: Gauge, ..Default::default() };
        assert!(gauge.detect_reset(&base), "a gauge is checked like a counter");
    }

    #[test]
    fn detect_reset_zero_threshold_and_schema_changes() {
        let mut before = reset_base();
        before.positive_buckets = vec![1.0, 1.23, 3.3, 4.2, 0.1];
        // "zero threshold decreases".
        let mut now = before.clone();
        now.zero_threshold = 0.009;
        assert!(now.detect_reset(&before));
        // "zero threshold increases without touching any existing buckets".
        now.zero_threshold = 0.011;
        assert!(!now.detect_reset(&before));
        // "zero threshold increases enough to cover existing buckets": threshold 1 covers
        // buckets -2 and -1 (1 + 1.23), zero count 5.5 + 2.23 = 7.73.
        let mut now = before.clone();
        now.zero_threshold = 1.0;
        now.zero_count = 7.73;
        now.positive_spans = spans(&[(1, 3)]);
        now.positive_buckets = vec![3.3, 4.2, 0.1];
        assert!(!now.detect_reset(&before));
        now.zero_count = 7.7;
        assert!(now.detect_reset(&before), "the zero count for the larger threshold decreased");
        // "zero threshold increases into the middle of an existing bucket" (0.3 is inside the
        // populated bucket (0.25, 0.5]).
        let mut now = before.clone();
        now.zero_threshold = 0.3;
        assert!(now.detect_reset(&before));
        // "schema increases without any other changes".
        let fine = fh(
            1,
            0.01,
            5.5,
            3493.3,
            2349209.324,
            (&[(-5, 4), (2, 6)], &[0.4, 0.6, 1.0, 0.23, 2.0, 1.3, 1.2, 3.0, 0.05, 0.05]),
            (&[(5, 4), (6, 4)], &[2.0, 1.1, 2.0, 1.0, 0.234e5, 1e5, 500.0, 500.0]),
        );
        assert!(fine.detect_reset(&before));
        // "schema decreases without any other changes": the previous schema-1 buckets merge to
        // exactly `before`'s (e.g. schema-1 buckets 1 and 2, 2 + 1.3, into bucket 1: 3.3).
        assert!(!before.detect_reset(&fine));
        // "schema decreases and a bucket goes down": merged bucket 1 has 3.3, now 2.3.
        let mut down = before.clone();
        down.positive_buckets = vec![1.0, 1.23, 2.3, 4.2, 0.1];
        assert!(down.detect_reset(&fine));
        let mut up = before.clone();
        up.positive_buckets = vec![1.0, 1.23, 4.3, 4.2, 0.1];
        assert!(!up.detect_reset(&fine));
    }

    #[test]
    fn detect_reset_custom_buckets() {
        let before = nh("{{schema:-53 sum:5 count:4 custom_values:[5 10] buckets:[1 2 1]}}");
        let same_bounds = nh("{{schema:-53 sum:6 count:5 custom_values:[5 10] buckets:[1 3 1]}}");
        assert!(!same_bounds.detect_reset(&before));
        // native_histograms.test "reset_in_bucket" shape: only one bucket decreases.
        let one_down = nh("{{schema:-53 sum:6 count:5 custom_values:[5 10] buckets:[1 1 3]}}");
        assert!(one_down.detect_reset(&before));
        // Other bounds compare on the shared bound 5: (1, 3) before, (1, 4) after.
        let other_bounds = nh("{{schema:-53 sum:6 count:5 custom_values:[5 20] buckets:[1 3 1]}}");
        assert!(!other_bounds.detect_reset(&before));
        let fewer_below_5 = nh("{{schema:-53 sum:6 count:5 custom_values:[5 20] buckets:[0 4 1]}}");
        assert!(fewer_below_5.detect_reset(&before));
        // Exponential and custom, same count: a reset either way (custom vs not, schema up).
        let exponential = nh("{{sum:5 count:4 buckets:[1 2 1]}}");
        assert!(exponential.detect_reset(&before));
        assert!(before.detect_reset(&exponential));
        // The promql test "reset_in_bucket" itself: {1 2 1} then {1 1 3} at schema 0.
        let a = nh("{{schema:0 count:4 sum:5 buckets:[1 2 1]}}");
        let b = nh("{{schema:0 count:5 sum:6 buckets:[1 1 3]}}");
        let c = nh("{{schema:0 count:6 sum:7 buckets:[1 2 3]}}");
        assert!(b.detect_reset(&a));
        assert!(!c.detect_reset(&b));
    }

    // ---- quantile ----

    #[test]
    fn quantile_positive_buckets_and_zero_bucket() {
        // native_histograms.test "histogram_quantile_1".
        let h = nh("{{schema:0 count:12 sum:100 z_bucket:2 z_bucket_w:0.001 buckets:[2 3 0 1 4]}}");
        assert_eq!(h.quantile(1.001), f64::INFINITY);
        assert_eq!(h.quantile(1.0), 16.0);
        close(h.quantile(0.99), 15.67072476139083, 1e-12);
        close(h.quantile(0.9), 12.99603834169977, 1e-12);
        close(h.quantile(0.6), 4.594793419988138, 1e-12);
        close(h.quantile(0.5), 1.5874010519681994, 1e-12);
        // In the zero bucket: linear, from 0 because there are only positive buckets.
        close(h.quantile(0.1), 0.0006, 1e-12);
        assert_eq!(h.quantile(0.0), 0.0);
        assert_eq!(h.quantile(-1.0), f64::NEG_INFINITY);
        assert!(h.quantile(f64::NAN).is_nan());
        assert!(FloatHistogram::default().quantile(0.5).is_nan(), "no observations");
        // The first sample of native_histograms.test: exponential interpolation gives √2.
        close(nh("{{schema:0 sum:5 count:4 buckets:[1 2 1]}}").quantile(0.5), std::f64::consts::SQRT_2, 1e-15);
    }

    #[test]
    fn quantile_negative_and_mixed_buckets() {
        // "histogram_quantile_2": only negative buckets; the zero bucket ends at 0.
        let h = nh("{{schema:0 count:12 sum:100 z_bucket:2 z_bucket_w:0.001 n_buckets:[2 3 0 1 4]}}");
        assert_eq!(h.quantile(1.0), 0.0);
        close(h.quantile(0.99), -0.00006, 1e-9);
        close(h.quantile(0.9), -0.0006, 1e-9);
        close(h.quantile(0.5), -1.5874010519681996, 1e-12);
        close(h.quantile(0.1), -12.996038341699768, 1e-12);
        assert_eq!(h.quantile(0.0), -16.0);
        // "histogram_quantile_3": both sides; the zero bucket is symmetric around 0.
        let h = nh("{{schema:0 count:24 sum:100 z_bucket:4 z_bucket_w:0.001 buckets:[2 3 0 1 4] n_buckets:[2 3 0 1 4]}}");
        assert_eq!(h.quantile(1.0), 16.0);
        close(h.quantile(0.99), 15.34822590920423, 1e-12);
        close(h.quantile(0.9), 10.556063286183155, 1e-12);
        close(h.quantile(0.7), 1.2030250360821164, 1e-12);
        close(h.quantile(0.55), 0.0006, 1e-9);
        assert_eq!(h.quantile(0.5), 0.0);
        close(h.quantile(0.45), -0.0006, 1e-9);
        close(h.quantile(0.3), -1.2030250360821169, 1e-12);
        close(h.quantile(0.1), -10.556063286183155, 1e-12);
        close(h.quantile(0.01), -15.34822590920423, 1e-12);
        assert_eq!(h.quantile(0.0), -16.0);
        // "balanced_histogram": 4 positive and 4 negative observations; the median is the lower
        // bound 0.5 of the lowest populated positive bucket (rank 0 within it).
        let a = nh("{{schema:0 sum:4 count:4 buckets:[1 2 1]}}");
        let b = nh("{{schema:0 sum:-4 count:4 n_buckets:[1 2 1]}}");
        assert_eq!(a.add(&b).unwrap().quantile(0.5), 0.5);
    }

    #[test]
    fn quantile_does_not_depend_on_the_schema() {
        // "var_res_histogram": 5 observations in bucket 1 at schemas -1, 0, 1.
        for (schema, want) in [(-1, 2.0), (0, std::f64::consts::SQRT_2), (1, 1.189207)] {
            let h = nh(&format!("{{{{schema:{schema} sum:4 count:5 buckets:[0 5]}}}}"));
            close(h.quantile(0.5), want, 1e-6);
            close(h.fraction(0.0, want), 0.5, 1e-6);
            let n = nh(&format!("{{{{schema:{schema} sum:4 count:5 n_buckets:[0 5]}}}}"));
            close(n.quantile(0.5), -want, 1e-6);
            close(n.fraction(-want, 0.0), 0.5, 1e-6);
        }
        for (schema, want) in [(-1, 8.0), (0, 2.82842712474619), (1, 1.6817928305074292)] {
            let h = nh(&format!("{{{{schema:{schema} sum:4 count:5 buckets:[0 0 5]}}}}"));
            close(h.quantile(0.5), want, 1e-12);
            close(h.fraction(0.0, want), 0.5, 1e-12);
        }
    }

    #[test]
    fn quantile_of_custom_buckets() {
        // native_histograms.test: custom_values [5 10], buckets [1 2 1] → median 7.5.
        let h = nh("{{schema:-53 sum:5 count:4 custom_values:[5 10] buckets:[1 2 1]}}");
        assert_eq!(h.quantile(0.5), 7.5);
        // By reasoning: q=0.1 has rank 0.4 in the first bucket (-Inf, 5], interpolated from 0:
        // 5 · 0.4 = 2. q=0.95 lands in the last bucket (10, +Inf]: its lower bound 10.
        assert_eq!(h.quantile(0.1), 2.0);
        assert_eq!(h.quantile(0.95), 10.0);
        assert_eq!(h.quantile(1.0), 10.0);
        // A first bucket ending at or below 0 gives its upper bound.
        let neg = nh("{{schema:-53 sum:-10 count:4 custom_values:[-5 10] buckets:[2 2]}}");
        assert_eq!(neg.quantile(0.25), -5.0);
        // Linear in the second bucket (-5, 10]: rank 3 → (3 - 2)/2 of the way: 2.5.
        assert_eq!(neg.quantile(0.75), 2.5);
    }

    #[test]
    fn quantile_and_fraction_with_nan_observations() {
        // native_histograms.test "histogram_nan".
        let all_nan = nh("{{schema:0 count:3 sum:NaN}}");
        let some_nan = nh("{{schema:0 count:15 sum:NaN buckets:[12]}}");
        for q in [1.0, 0.81, 0.8, 0.4] {
            assert!(all_nan.quantile(q).is_nan(), "q={q}");
        }
        assert!(some_nan.quantile(1.0).is_nan());
        assert!(some_nan.quantile(0.81).is_nan());
        assert_eq!(some_nan.quantile(0.8), 1.0);
        close(some_nan.quantile(0.4), 0.7071067811865475, 1e-15);
        close(some_nan.fraction(f64::NEG_INFINITY, 0.7071067811865475), 0.4, 1e-12);
        assert_eq!(all_nan.fraction(f64::NEG_INFINITY, 0.7071067811865475), 0.0);
        assert_eq!(some_nan.fraction(f64::NEG_INFINITY, f64::INFINITY), 0.8);
        assert_eq!(all_nan.fraction(f64::NEG_INFINITY, f64::INFINITY), 0.0);
    }

    // ---- fraction ----

    #[test]
    fn fraction_positive_buckets() {
        // native_histograms.test "histogram_fraction_2".
        let h = nh("{{schema:0 count:12 sum:100 z_bucket:2 z_bucket_w:0.001 buckets:[2 3 0 1 4]}}");
        let inf = f64::INFINITY;
        for (lower, upper, want) in [
            (0.0, inf, 1.0),
            (-inf, 0.0, 0.0),
            (-0.001, 0.0, 0.0),
            (0.0, 0.001, 0.16666666666666666),
            (0.001, inf, 0.8333333333333334),
            (0.0, 0.0005, 0.08333333333333333),
            (-inf, -0.001, 0.0),
            (1.0, 2.0, 0.25),
            (0.0, 1.5, 0.4795739585136224),
            (1.5, 2.0, 0.10375937481971091),
            (1.0, 8.0, 0.3333333333333333),
            (0.0, 6.0, 0.6320802083934297),
            (1.0, 6.0, 0.29874687506009634),
            (1.5, 6.0, 0.15250624987980724),
            (-6.0, -1.0, 0.0),
            (42.0, 3.5, 0.0),
            (0.0, 0.0, 0.0),
            (-inf, inf, 1.0),
        ] {
            close(h.fraction(lower, upper), want, 1e-12);
        }
        assert!(h.fraction(3.5, f64::NAN).is_nan());
        assert!(h.fraction(f64::NAN, 42.0).is_nan());
        assert!(nh("{{}}").fraction(3.5, 42.0).is_nan());
        // The round trips of the test file.
        close(h.quantile(0.08333333333333333), 0.0005, 1e-12);
        close(h.quantile(0.6320802083934297), 6.0, 1e-12);
    }

    #[test]
    fn fraction_negative_and_mixed_buckets() {
        // "histogram_fraction_3": negative buckets only.
        let h = nh("{{schema:0 count:12 sum:100 z_bucket:2 z_bucket_w:0.001 n_buckets:[2 3 0 1 4]}}");
        let inf = f64::INFINITY;
        for (lower, upper, want) in [
            (0.0, inf, 0.0),
            (-inf, 0.0, 1.0),
            (-0.001, 0.0, 0.16666666666666666),
            (-0.0005, 0.0, 0.08333333333333333),
            (-inf, -0.0005, 0.9166666666666666),
            (-2.0, -1.0, 0.25),
            (-2.0, -1.5, 0.10375937481971091),
            (-inf, -6.0, 0.36791979160657035),
            (-6.0, -1.5, 0.15250624987980724),
        ] {
            close(h.fraction(lower, upper), want, 1e-12);
        }
        close(h.quantile(0.36791979160657035), -6.0, 1e-12);
        // "histogram_fraction_4": both sides.
        let h = nh("{{schema:0 count:24 sum:100 z_bucket:4 z_bucket_w:0.001 buckets:[2 3 0 1 4] n_buckets:[2 3 0 1 4]}}");
        for (lower, upper, want) in [
            (0.0, inf, 0.5),
            (-inf, 0.0, 0.5),
            (-0.0005, 0.0005, 0.08333333333333333),
            (-inf, 0.0005, 0.5416666666666666),
            (1.5, 2.0, 0.051879687409855414),
            (-6.0, -1.0, 0.14937343753004817),
            (-inf, inf, 1.0),
        ] {
            close(h.fraction(lower, upper), want, 1e-12);
        }
        close(h.quantile(0.4583333333333333), -0.0005, 1e-12);
    }

    #[test]
    fn fraction_of_custom_buckets() {
        // native_histograms.test: (5, 10] holds 2 of 4.
        let h = nh("{{schema:-53 sum:5 count:4 custom_values:[5 10] buckets:[1 2 1]}}");
        assert_eq!(h.fraction(5.0, 10.0), 0.5);
        // By reasoning, bounds [-5 10], buckets [2 2 1] (count 5):
        // (-Inf, -7): inside the first bucket (-Inf, -5], which counts whole: 2/5.
        // (0, +Inf): (-5, 10] contains 0 and is treated as the zero bucket starting at 0
        // (no negative buckets), so everything above it: 3/5.
        // (-Inf, 20): inside (10, +Inf], which counts nothing: 4/5.
        let h = nh("{{schema:-53 sum:5 count:5 custom_values:[-5 10] buckets:[2 2 1]}}");
        let inf = f64::INFINITY;
        assert_eq!(h.fraction(-inf, -7.0), 0.4);
        assert_eq!(h.fraction(0.0, inf), 0.6);
        assert_eq!(h.fraction(-inf, 20.0), 0.8);
        // Linear inside (0, 10]: half of its 2 observations are below 5.
        assert_eq!(h.fraction(-inf, 5.0), 0.6);
    }

    // ---- stddev / stdvar ----

    #[test]
    fn stddev_and_stdvar_from_promql_tests() {
        // native_histograms.test histogram_stddev_stdvar_1 … _7.
        let cases = [
            ("{{schema:2 count:4 sum:10 buckets:[1 0 0 0 1 0 0 1 1]}}", 1.0787993180043811, 1.163807968526718),
            ("{{schema:8 count:10 sum:10 buckets:[1 2 3 4]}}", 0.0048960313898237465, 2.3971123370139447e-05),
            (
                "{{schema:3 count:7 sum:62 z_bucket:1 buckets:[0 0 0 0 0 0 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0 1 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 ] n_buckets:[0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 ]}}",
                42.94723640026,
                1844.4651144196398,
            ),
            (
                "{{schema:0 count:10 sum:-112946 z_bucket:0 n_buckets:[0 0 1 1 1 0 1 1 0 0 3 0 0 0 1 0 0 1]}}",
                27556.344499842,
                759352122.1939945,
            ),
            ("{{schema:0 count:10 sum:-100 z_bucket:0 n_buckets:[0 0 0 0 10]}}", 1.3137084989848, 1.725830020304794),
        ];
        for (text, stddev, stdvar) in cases {
            let h = nh(text);
            close(h.stddev(), stddev, 1e-9);
            close(h.stdvar(), stdvar, 1e-9);
        }
        let nan_sum = "{{schema:3 count:7 sum:NaN z_bucket:1 buckets:[0 0 0 0 0 0 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0 1 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 ] n_buckets:[0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 ]}}";
        assert!(nh(nan_sum).stddev().is_nan() && nh(nan_sum).stdvar().is_nan());
        let inf_sum = nh(&nan_sum.replace("sum:NaN", "sum:Inf"));
        assert_eq!((inf_sum.stddev(), inf_sum.stdvar()), (f64::INFINITY, f64::INFINITY));
        // No observations: NaN.
        assert!(nh("{{schema:0 sum:0 count:0}}").stdvar().is_nan());
    }

    #[test]
    fn stdvar_bucket_values_by_kind() {
        // By reasoning: 2 observations in the positive bucket (1, 4] at schema -1 stand at the
        // geometric mean 2; with the mean sum/count = 2 the variance is 0. Moving the sum to
        // 3 per observation gives a variance of (2 - 3)² = 1.
        assert_eq!(nh("{{schema:-1 sum:4 count:2 buckets:[0 2]}}").stdvar(), 0.0);
        assert_eq!(nh("{{schema:-1 sum:6 count:2 buckets:[0 2]}}").stdvar(), 1.0);
        // Negative bucket [-4, -1): value -2; zero bucket: value 0. Mean 0 → (4 + 0 + 4)/4 = 2.
        assert_eq!(nh("{{schema:-1 sum:0 count:4 z_bucket:2 z_bucket_w:0.5 buckets:[0 1] n_buckets:[0 1]}}").stdvar(), 2.0);
        // Custom buckets use the arithmetic mean: (5, 10] → 7.5, (10, 20] → 15; mean
        // (7.5 + 15)/2 = 11.25 → variance 3.75² = 14.0625.
        assert_eq!(nh("{{schema:-53 sum:22.5 count:2 custom_values:[5 10 20] buckets:[0 1 1]}}").stdvar(), 14.0625);
        assert_eq!(nh("{{schema:-53 sum:22.5 count:2 custom_values:[5 10 20] buckets:[0 1 1]}}").stddev(), 3.75);
    }
}
