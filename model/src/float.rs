//! Float arithmetic as Prometheus does it: comparison (`util/almost.Equal`), shared by the PromQL evaluator
//! (tolerating float noise between histogram buckets) and the conformance runner, and
//! compensated summation (`kahanSumInc`).

/// True when `a` and `b` are both NaN, equal, or within `epsilon` of each other relative to
/// their magnitude; near zero the floor is the smallest normal f64.
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < epsilon * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Neumaier-compensated addition, Prometheus' `kahanSumInc`: the new sum and compensation of
/// adding `inc` to `sum` with compensation `c` (the result is `sum + c`).
pub fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

#[cfg(test)]
mod tests {
    use super::almost_equal;

    #[test]
    fn relative_tolerance_nan_and_zero() {
        assert!(almost_equal(f64::NAN, f64::NAN, 1e-6));
        assert!(almost_equal(1.0, 1.0 + 1e-9, 1e-6));
        assert!(!almost_equal(1.0, 1.001, 1e-6));
        assert!(!almost_equal(0.0, 1e-300, 1e-6));
        assert!(!almost_equal(f64::NAN, 1.0, 1e-6));
    }
}

