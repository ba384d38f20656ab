//! Float comparison as Prometheus does it (`util/almost.Equal`), shared by the PromQL evaluator
//! (tolerating float noise between histogram buckets) and the conformance runner.

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
