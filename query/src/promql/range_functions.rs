//! Functions over range vectors (`rate`, `increase`, `*_over_time`, …), following
//! promql/functions.go in Prometheus.

use super::aggregate::{kahan_mean, kahan_sum, kahan_sum_inc, quantile};

/// The window a range function looked at: `(start_ms, end_ms]` and its length.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Left (open) bound: reference time minus range.
    pub start_ms: i64,
    /// Right (closed) bound: the reference time.
    pub end_ms: i64,
}

impl Window {
    fn range_seconds(&self) -> f64 {
        (self.end_ms - self.start_ms) as f64 / 1000.0
    }
}

/// Prometheus' `extrapolatedRate`: `rate` (`is_counter && is_rate`), `increase`
/// (`is_counter`), `delta` (neither). `None` with fewer than two samples.
pub fn extrapolated_rate(
    points: &[(i64, f64)],
    w: Window,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let first_v = points[0].1;
    let mut result = points[points.len() - 1].1 - first_v;
    if is_counter {
        let mut prev = first_v;
        for &(_, v) in &points[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    Some(extrapolate(points, w, result, is_counter, is_rate))
}

/// The second half of [`extrapolated_rate`]: `result`, the change over `points` (at least two;
/// for counters with resets added back), extrapolated to the window's edges. A caller that
/// knows a counter window holds no reset passes its last value minus its first.
pub fn extrapolate(points: &[(i64, f64)], w: Window, result: f64, is_counter: bool, is_rate: bool) -> f64 {
    result * extrapolation_factor(points, w, result, is_counter, is_rate)
}

/// What [`extrapolate`] multiplies `result` by: the window covered by extrapolating from the
/// first and last of `points` (at least two) towards the window's edges, over the sampled
/// interval (per second of the window for a rate). For a counter the extrapolation to the left
/// stops where it would reach zero, from the first value and `result`. Native histograms use
/// it with their counts as the values.
pub fn extrapolation_factor(points: &[(i64, f64)], w: Window, result: f64, is_counter: bool, is_rate: bool) -> f64 {
    let (first_t, first_v) = points[0];
    let last_t = points[points.len() - 1].0;
    let mut to_start = (first_t - w.start_ms) as f64 / 1000.0;
    let mut to_end = (w.end_ms - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_step = sampled / (points.len() - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if is_counter && result > 0.0 && first_v >= 0.0 {
        // A counter cannot go below zero: do not extrapolate past its zero point.
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= w.range_seconds();
    }
    factor
}

/// Prometheus' `instantValue`: `irate` (`is_rate`) and `idelta` from the last two samples.
pub fn instant_value(points: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (prev_t, prev_v) = points[points.len() - 2];
    let (last_t, last_v) = points[points.len() - 1];
    let mut result = if is_rate && last_v < prev_v {
        last_v
    } else {
        last_v - prev_v
    };
    let interval = last_t - prev_t;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Prometheus' `linearRegression` with x in seconds relative to `intercept_ms`.
pub fn linear_regression(points: &[(i64, f64)], intercept_ms: i64) -> (f64, f64) {
    let init_y = points[0].1;
    let const_y = points.iter().all(|(_, v)| *v == init_y);
    let (mut n, mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    for &(ts, v) in points {
        n += 1.0;
        let x = (ts - intercept_ms) as f64 / 1e3;
        (sx, cx) = kahan_sum_inc(x, sx, cx);
        (sy, cy) = kahan_sum_inc(v, sy, cy);
        (sxy, cxy) = kahan_sum_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_sum_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// Population variance over time with compensated sums (Prometheus' `varianceOverTime`);
/// LogQL's `stdvar_over_time` uses it too.
pub(crate) fn variance_over_time(points: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in points {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// The timestamp of the first sample `better` than all before it (NaN is beaten by anything),
/// Prometheus' `compareOverTime` with timestamps.
fn ts_of_extreme(points: &[(i64, f64)], better: impl Fn(f64, f64) -> bool) -> i64 {
    let (mut best_t, mut best) = points[0];
    for &(ts, v) in &points[1..] {
        if better(v, best) || best.is_nan() {
            (best_t, best) = (ts, v);
        }
    }
    best_t
}

/// Median of the absolute deviations from the median; NaN when any sample is NaN.
fn median_absolute_deviation(points: &[(i64, f64)]) -> f64 {
    if points.iter().any(|(_, v)| v.is_nan()) {
        return f64::NAN;
    }
    let median = quantile(0.5, points.iter().map(|(_, v)| *v).collect());
    quantile(
        0.5,
        points.iter().map(|(_, v)| (v - median).abs()).collect(),
    )
}

/// Prometheus' `funcDoubleExponentialSmoothing` (Holt's linear trend) with smoothing factor
/// `sf` and trend factor `tf`; `None` with fewer than two samples.
pub fn double_exponential_smoothing(points: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, points[0].1);
    let mut b = points[1].1 - points[0].1;
    for (i, &(_, v)) in points.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

/// A range function applied to one series' non-empty window: `(points, window, param,
/// intercept_ms) -> value`, `None` dropping the series.
pub type RangeFn = fn(&[(i64, f64)], Window, f64, i64) -> Option<f64>;

/// Evaluates the range function `name` on one series' non-empty `points`. `param` is the
/// scalar argument of `quantile_over_time`/`predict_linear`; `intercept_ms` the evaluation
/// time for `predict_linear`. `None` drops the series; `Err` names an unknown function.
pub fn over_series(
    name: &str,
    points: &[(i64, f64)],
    w: Window,
    param: f64,
    intercept_ms: i64,
) -> Result<Option<f64>, ()> {
    resolve(name).map(|f| f(points, w, param, intercept_ms)).ok_or(())
}

/// The implementation of the range function `name` (`None` when unknown), resolved once so that
/// evaluating a range query for all steps does not match the name per series and step.
pub fn resolve(name: &str) -> Option<RangeFn> {
    fn values(points: &[(i64, f64)]) -> impl Iterator<Item = f64> + '_ {
        points.iter().map(|(_, v)| *v)
    }
    Some(match name {
        "rate" => |p, w, _, _| extrapolated_rate(p, w, true, true),
        "increase" => |p, w, _, _| extrapolated_rate(p, w, true, false),
        "delta" => |p, w, _, _| extrapolated_rate(p, w, false, false),
        "irate" => |p, _, _, _| instant_value(p, true),
        "idelta" => |p, _, _, _| instant_value(p, false),
        "sum_over_time" => |p, _, _, _| Some(kahan_sum(values(p))),
        "avg_over_time" => |p, _, _, _| Some(kahan_mean(values(p))),
        "count_over_time" => |p, _, _, _| Some(p.len() as f64),
        "present_over_time" => |_, _, _, _| Some(1.0),
        "last_over_time" => |p, _, _, _| p.last().map(|(_, v)| *v),
        "min_over_time" => |p, _, _, _| {
            Some(values(p).fold(p[0].1, |acc, v| if v < acc || acc.is_nan() { v } else { acc }))
        },
        "max_over_time" => |p, _, _, _| {
            Some(values(p).fold(p[0].1, |acc, v| if v > acc || acc.is_nan() { v } else { acc }))
        },
        "stdvar_over_time" => |p, _, _, _| Some(variance_over_time(p)),
        "stddev_over_time" => |p, _, _, _| Some(variance_over_time(p).sqrt()),
        "quantile_over_time" => |p, _, q, _| Some(quantile(q, values(p).collect())),
        "changes" => |p, _, _, _| {
            Some(
                p.windows(2)
                    .filter(|p| !(p[0].1 == p[1].1 || (p[0].1.is_nan() && p[1].1.is_nan())))
                    .count() as f64,
            )
        },
        "resets" => |p, _, _, _| Some(p.windows(2).filter(|p| p[1].1 < p[0].1).count() as f64),
        "deriv" => |p, _, _, _| (p.len() >= 2).then(|| linear_regression(p, p[0].0).0),
        "predict_linear" => |p, _, by, intercept_ms| {
            (p.len() >= 2).then(|| {
                let (slope, intercept) = linear_regression(p, intercept_ms);
                slope * by + intercept
            })
        },
        "first_over_time" => |p, _, _, _| Some(p[0].1),
        "mad_over_time" => |p, _, _, _| Some(median_absolute_deviation(p)),
        "ts_of_first_over_time" => |p, _, _, _| Some(p[0].0 as f64 / 1000.0),
        "ts_of_last_over_time" => |p, _, _, _| Some(p[p.len() - 1].0 as f64 / 1000.0),
        "ts_of_min_over_time" => {
            |p, _, _, _| Some(ts_of_extreme(p, |cur, best| cur < best) as f64 / 1000.0)
        }
        "ts_of_max_over_time" => {
            |p, _, _, _| Some(ts_of_extreme(p, |cur, best| cur > best) as f64 / 1000.0)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start_ms: i64, end_ms: i64) -> Window {
        Window { start_ms, end_ms }
    }

    #[test]
    fn rate_extrapolates_to_window_edges_when_samples_are_close() {
        // Window (0s, 60s], samples every 10s at 5..55s: values 0,10,...,50 would hit zero-point
        // clamping, so start at 100: 100,110,120,130,140,150. Increase in samples = 50 over 50s.
        // to_start = 5s, to_end = 5s, avg step 10s, threshold 11s: both extrapolate fully.
        // Zero point: 50s * 100/50 = 100s > 5s, no clamp. Extrapolated: 50 * 60/50 = 60.
        // rate = 60 / 60s = 1.
        let pts: Vec<(i64, f64)> = (0..6)
            .map(|i| (5_000 + i * 10_000, 100.0 + 10.0 * i as f64))
            .collect();
        assert_eq!(
            extrapolated_rate(&pts, w(0, 60_000), true, false),
            Some(60.0)
        );
        assert_eq!(extrapolated_rate(&pts, w(0, 60_000), true, true), Some(1.0));
    }

    #[test]
    fn rate_extrapolates_half_a_step_when_series_starts_inside_window() {
        // Window (0, 60s]; samples at 30,40,50s: 10,20,30. avg step 10s, threshold 11s.
        // to_start = 30s >= 11 -> 5s; zero point = 20s * 10/20 = 10s > 5s, no clamp.
        // to_end = 10s < 11 -> kept. Interval = 20 + 5 + 10 = 35s; increase = 20 * 35/20 = 35.
        let pts = [(30_000, 10.0), (40_000, 20.0), (50_000, 30.0)];
        assert_eq!(
            extrapolated_rate(&pts, w(0, 60_000), true, false),
            Some(35.0)
        );
    }

    #[test]
    fn increase_clamps_extrapolation_at_counter_zero_point() {
        // Window (0, 60s]; samples at 10,20,...,50s: 1,11,21,31,41. result 40 over 40s.
        // to_start = 10s (< 11 threshold); zero point = 40 * 1/40 = 1s < 10 -> 1s.
        // to_end = 10s. Interval = 40 + 1 + 10 = 51s; increase = 40 * 51/40 = 51.
        let pts = [
            (10_000, 1.0),
            (20_000, 11.0),
            (30_000, 21.0),
            (40_000, 31.0),
            (50_000, 41.0),
        ];
        assert_eq!(
            extrapolated_rate(&pts, w(0, 60_000), true, false),
            Some(51.0)
        );
    }

    #[test]
    fn counter_reset_adds_the_value_before_the_reset() {
        // Samples at 10,20,30s: 10, 20, 5 (reset). result = 5 - 10 + 20 = 15 over 20s.
        // Window (10s-ish): use (5s, 35s]: to_start 5s, to_end 5s, avg 10s: full extrapolation.
        // Zero point: 20 * 10/15 = 13.3s > 5s. Interval = 30s; increase = 15 * 30/20 = 22.5.
        let pts = [(10_000, 10.0), (20_000, 20.0), (30_000, 5.0)];
        assert_eq!(
            extrapolated_rate(&pts, w(5_000, 35_000), true, false),
            Some(22.5)
        );
        // delta ignores resets: -5 * 30/20 = -7.5.
        assert_eq!(
            extrapolated_rate(&pts, w(5_000, 35_000), false, false),
            Some(-7.5)
        );
    }

    #[test]
    fn irate_uses_last_two_samples_and_handles_resets() {
        assert_eq!(
            instant_value(&[(0, 1.0), (10_000, 5.0), (20_000, 25.0)], true),
            Some(2.0)
        );
        assert_eq!(instant_value(&[(0, 50.0), (10_000, 20.0)], true), Some(2.0));
        assert_eq!(
            instant_value(&[(0, 50.0), (10_000, 20.0)], false),
            Some(-30.0)
        );
        assert_eq!(instant_value(&[(0, 1.0)], true), None);
    }

    #[test]
    fn mad_is_the_median_of_absolute_deviations() {
        // 1..=7: median 4, deviations 3 2 1 0 1 2 3, their median 2.
        let pts: Vec<(i64, f64)> = (1..=7).map(|i| (i * 1000, i as f64)).collect();
        assert_eq!(median_absolute_deviation(&pts), 2.0);
        // 1 2 3 4 5 6: median 3.5, deviations 2.5 1.5 0.5 0.5 1.5 2.5, their median 1.5.
        let pts: Vec<(i64, f64)> = (1..=6).map(|i| (i * 1000, i as f64)).collect();
        assert_eq!(median_absolute_deviation(&pts), 1.5);
        assert!(median_absolute_deviation(&[(0, 1.0), (1, f64::NAN)]).is_nan());
    }

    #[test]
    fn ts_of_min_and_max_take_the_first_extreme() {
        let pts = [(0, 2.0), (10, 0.0), (20, 5.0), (30, 0.0), (40, 5.0)];
        assert_eq!(
            over_series("ts_of_min_over_time", &pts, w(0, 50), 0.0, 0),
            Ok(Some(0.01))
        );
        assert_eq!(
            over_series("ts_of_max_over_time", &pts, w(0, 50), 0.0, 0),
            Ok(Some(0.02))
        );
        assert_eq!(
            over_series("ts_of_last_over_time", &pts, w(0, 50), 0.0, 0),
            Ok(Some(0.04))
        );
    }

    #[test]
    fn double_exponential_smoothing_by_hand() {
        // 0, 10, 20 with sf = tf = 0.5: s1 = 0, b = 10.
        // i=1: x = 5, y = 0.5 * (0 + 10) = 5 -> s0 = 0, s1 = 10.
        // i=2: b = 0.5 * (10 - 0) + 0.5 * 10 = 10; x = 10, y = 0.5 * (10 + 10) = 10 -> s1 = 20.
        let pts = [(0, 0.0), (1, 10.0), (2, 20.0)];
        assert_eq!(double_exponential_smoothing(&pts, 0.5, 0.5), Some(20.0));
        assert_eq!(double_exponential_smoothing(&pts[..1], 0.5, 0.5), None);
    }

    #[test]
    fn deriv_of_a_line_is_its_slope() {
        let pts: Vec<(i64, f64)> = (0..5).map(|i| (i * 1000, 3.0 + 2.0 * i as f64)).collect();
        assert_eq!(linear_regression(&pts, 0), (2.0, 3.0));
    }
}
