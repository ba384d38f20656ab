//! `histogram_quantile` over classic histograms: series of cumulative `_bucket` counters, one
//! per upper bound in the `le` label, evaluated as Prometheus does (sorting, merging equal
//! bounds, forcing monotonicity, linear interpolation inside the bucket).

use std::collections::HashMap;

use pharos_model::float::almost_equal;
use pharos_model::{Labels, METRIC_NAME};

use super::annotations::{Anchor, Annotations};
use super::eval::check_unique;
use super::value::Sample;
use crate::error::Result;

/// The bucket label.
const LE: &str = "le";

/// Relative difference below which neighbouring cumulative counts count as equal: float noise
/// from `rate()` or `sum()` must not look like a decrease.
const SMALL_DELTA: f64 = 1e-12;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Bucket {
    upper: f64,
    count: f64,
}

/// `histogram_quantile(q, v)`: groups `v` by its labels without `le` (samples whose `le` does not
/// parse as a float are ignored, with a warning), and answers one sample per group, without the
/// metric name. `notes` get the warnings and infos, pointing at the vector argument.
pub fn histogram_quantile(q: f64, samples: Vec<Sample>, notes: Option<(&Annotations, Anchor)>) -> Result<Vec<Sample>> {
    // The group key keeps the metric name (as Prometheus' signature does); the output drops it.
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Vec<Bucket>> = HashMap::new();
    for s in samples {
        let Some(upper) = s.labels.get(LE).and_then(parse_le) else {
            if let Some((notes, at)) = notes {
                notes.bad_bucket_label(s.labels.get(METRIC_NAME).unwrap_or(""), s.labels.get(LE).unwrap_or(""), at);
            }
            continue;
        };
        let key = s.labels.filter(|n| n != LE);
        let entry = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            Vec::new()
        });
        entry.push(Bucket { upper, count: s.value });
    }
    let out = order
        .into_iter()
        .map(|key| {
            let mut buckets = groups.remove(&key).unwrap_or_default();
            let (value, forced) = bucket_quantile(q, &mut buckets);
            if let (true, Some((notes, at))) = (forced, notes) {
                notes.forced_monotonicity(at);
            }
            Sample { value, labels: key.filter(|n| n != METRIC_NAME) }
        })
        .collect();
    check_unique(out)
}

/// Parses an `le` value as Go's `strconv.ParseFloat` would for the forms exporters write
/// (`0.5`, `1e+06`, `+Inf`).
fn parse_le(s: &str) -> Option<f64> {
    match s.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        t => t.parse().ok(),
    }
}

/// The `q` quantile of one classic histogram, and whether a bucket's count had to be raised to
/// its predecessor's.
fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.upper.total_cmp(&b.upper));
    match buckets.last() {
        Some(b) if b.upper == f64::INFINITY => {}
        _ => return (f64::NAN, false),
    }
    coalesce(buckets);
    let forced = ensure_monotonic(buckets);
    (interpolate(q, buckets), forced)
}

/// The `q` quantile (in [0, 1]) of sorted, coalesced, monotonic buckets ending in `+Inf`.
fn interpolate(q: f64, buckets: &[Bucket]) -> f64 {
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // The first bucket (excluding +Inf) whose cumulative count reaches the rank.
    let b = buckets[..buckets.len() - 1].partition_point(|x| x.count < rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].upper;
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return buckets[0].upper;
    }
    let end = buckets[b].upper;
    let mut count = buckets[b].count;
    let mut start = 0.0;
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    start + (end - start) * (rank / count)
}

/// Merges buckets with the same upper bound (`le="1"` and `le="1.0"`) by adding their counts.
fn coalesce(buckets: &mut Vec<Bucket>) {
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.drain(..) {
        match out.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => out.push(b),
        }
    }
    *buckets = out;
}

/// Cumulative counts can only grow with the bound; a smaller count (scrape skew between bucket
/// series) is raised to the previous one (true when that happened), and numerically
/// insignificant differences are ignored.
fn ensure_monotonic(buckets: &mut [Bucket]) -> bool {
    let Some(first) = buckets.first() else {
        return false;
    };
    let mut prev = first.count;
    let mut forced = false;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA) {
            b.count = prev;
            continue;
        }
        if curr < prev {
            b.count = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    forced
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket_samples(extra: &[(&str, &str)], bounds: &[(&str, f64)]) -> Vec<Sample> {
        bounds
            .iter()
            .map(|(le, count)| {
                let mut pairs: Vec<(&str, &str)> = vec![("__name__", "req_bucket"), ("le", le)];
                pairs.extend_from_slice(extra);
                Sample { labels: Labels::from_pairs(pairs), value: *count }
            })
            .collect()
    }

    fn q(q: f64, bounds: &[(&str, f64)]) -> f64 {
        let out = histogram_quantile(q, bucket_samples(&[], bounds), None).unwrap();
        assert_eq!(out.len(), 1);
        out[0].value
    }

    #[test]
    fn interpolates_linearly_inside_the_bucket() {
        // 100 observations: 10 ≤ 0.1, 50 ≤ 0.5 (40 in (0.1, 0.5]), 90 ≤ 1, 100 total.
        let b = [("0.1", 10.0), ("0.5", 50.0), ("1", 90.0), ("+Inf", 100.0)];
        // rank 50 reaches the 0.5 bucket exactly: its upper bound.
        assert!((q(0.5, &b) - 0.5).abs() < 1e-12);
        // rank 30: 20 of the 40 in (0.1, 0.5] → 0.1 + 0.4 * 0.5.
        assert!((q(0.3, &b) - 0.3).abs() < 1e-12);
        // rank 5 in the first bucket, which starts at 0: 0.1 * 5/10.
        assert!((q(0.05, &b) - 0.05).abs() < 1e-12);
        // rank 95 falls into +Inf: the highest finite bound.
        assert_eq!(q(0.95, &b), 1.0);
        // Unsorted input gives the same answer.
        let shuffled = [("1", 90.0), ("+Inf", 100.0), ("0.1", 10.0), ("0.5", 50.0)];
        assert!((q(0.3, &shuffled) - 0.3).abs() < 1e-12);
    }

    #[test]
    fn edge_cases_follow_prometheus() {
        let b = [("0.1", 10.0), ("+Inf", 20.0)];
        assert_eq!(q(-0.5, &b), f64::NEG_INFINITY);
        assert_eq!(q(1.5, &b), f64::INFINITY);
        assert!(q(f64::NAN, &b).is_nan());
        // No +Inf bucket, or only one bucket, or no observations: NaN.
        assert!(q(0.5, &[("0.1", 10.0), ("1", 20.0)]).is_nan());
        assert!(q(0.5, &[("+Inf", 20.0)]).is_nan());
        assert!(q(0.5, &[("0.1", 0.0), ("+Inf", 0.0)]).is_nan());
        // A first bucket with a bound ≤ 0 answers that bound.
        assert_eq!(q(0.1, &[("-1", 5.0), ("1", 10.0), ("+Inf", 10.0)]), -1.0);
    }

    #[test]
    fn equal_bounds_are_merged_and_decreases_are_flattened() {
        // "1" and "1.0" are one bucket: 4 + 6 = 10 observations ≤ 1 out of 20.
        let merged = [("1", 4.0), ("1.0", 6.0), ("2", 20.0), ("+Inf", 20.0)];
        assert_eq!(q(0.5, &merged), 1.0);
        // The 2-bucket dips below the 1-bucket (skewed scrape): it is raised to 10, so the
        // whole (1, 2] bucket is empty and rank 10 is answered by the 1-bucket's bound.
        let dip = [("1", 10.0), ("2", 8.0), ("4", 20.0), ("+Inf", 20.0)];
        assert_eq!(q(0.5, &dip), 1.0);
        // rank 15: 5 of the 10 in (2, 4] → 3.
        assert!((q(0.75, &dip) - 3.0).abs() < 1e-12);
    }

    #[test]
    fn groups_by_labels_without_le_and_drops_the_name() {
        let mut v = bucket_samples(&[("job", "a")], &[("1", 1.0), ("+Inf", 2.0)]);
        v.extend(bucket_samples(&[("job", "b")], &[("1", 2.0), ("+Inf", 2.0)]));
        // A sample without a parsable `le` is ignored.
        v.push(Sample { labels: Labels::from_pairs([("__name__", "req_bucket"), ("le", "x")]), value: 1.0 });
        let mut out = histogram_quantile(0.5, v, None).unwrap();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].labels, Labels::from_pairs([("job", "a")]));
        assert_eq!(out[0].value, 1.0);
        assert_eq!(out[1].labels, Labels::from_pairs([("job", "b")]));
        assert_eq!(out[1].value, 0.5);
    }
}
