//! Sample values as decimal mantissas: `value = mantissa / 10^scale`, exactly.
//!
//! Most samples are integers (bytes, packets, counts) or short decimals (CPU seconds with two
//! digits). As a DOUBLE their low mantissa bits look random to zstd; as an INT64 mantissa split
//! into byte streams (Parquet's BYTE_STREAM_SPLIT), the high bytes of a series are nearly
//! constant and compress away (`pharos-bench tsdb`: 2.08 B/sample with PLAIN doubles, 1.60 with
//! mantissas at the same zstd level 9).
//!
//! A sample is stored as a mantissa only when decoding gives back its exact bits: NaN (the
//! staleness marker among them), ±Inf, -0.0, values beyond 2^53 and values with more than
//! [`MAX_SCALE`] decimals stay doubles.

/// The largest scale tried; 10^15 and every smaller power of ten is an exact double.
pub const MAX_SCALE: u8 = 15;

/// Mantissas up to this magnitude convert to f64 exactly.
const MAX_MANTISSA: i64 = 1 << 53;

const POW10: [f64; MAX_SCALE as usize + 1] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];

/// The value of `mantissa` at `scale` (at most [`MAX_SCALE`]; larger scales count as
/// [`MAX_SCALE`], which [`encode`] never writes). Correctly rounded: one exact conversion and
/// one IEEE division by an exact power of ten.
#[inline]
pub fn decode(mantissa: i64, scale: u8) -> f64 {
    mantissa as f64 / POW10[usize::from(scale.min(MAX_SCALE))]
}

/// The mantissa of `v` at `scale`, if decoding it gives back `v` bit for bit.
#[inline]
pub fn encode(v: f64, scale: u8) -> Option<i64> {
    let scaled = (v * POW10[usize::from(scale.min(MAX_SCALE))]).round();
    if scaled.is_nan() || scaled.abs() > MAX_MANTISSA as f64 {
        return None;
    }
    let m = scaled as i64;
    (decode(m, scale).to_bits() == v.to_bits()).then_some(m)
}

/// The smallest scale at which `v` is stored as a mantissa, if any.
pub fn scale_of(v: f64) -> Option<u8> {
    if !v.is_finite() {
        return None;
    }
    (0..=MAX_SCALE).find(|&k| encode(v, k).is_some())
}

/// Searches through every scale that a series may make for samples that are not encodable at
/// its scale so far: a series of full-precision doubles (ratios, computed rates) would
/// otherwise cost [`MAX_SCALE`] + 1 attempts per sample on the ingest path. After that many
/// failed searches, later samples are tried at the series' scale only.
const MAX_FAILED_SEARCHES: usize = 4;

/// The scale for a series' samples: the largest scale any of them needs (so that one series
/// keeps one scale and its mantissas change smoothly), `None` when no sample is encodable.
/// Samples that are not encodable at the returned scale stay doubles.
pub fn series_scale(values: impl IntoIterator<Item = f64>) -> Option<u8> {
    let mut scale: Option<u8> = None;
    let mut failed = 0;
    for v in values {
        // The common case first: already encodable at the scale found so far.
        if let Some(k) = scale
            && encode(v, k).is_some()
        {
            continue;
        }
        if failed >= MAX_FAILED_SEARCHES || !v.is_finite() {
            continue;
        }
        match scale_of(v) {
            Some(k) => scale = Some(scale.map_or(k, |s| s.max(k))),
            None => failed += 1,
        }
    }
    scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_bit_for_bit_or_stay_doubles() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let cases: &[(f64, Option<(i64, u8)>)] = &[
            (0.0, Some((0, 0))),
            (-0.0, None),
            (42.0, Some((42, 0))),
            (-7.0, Some((-7, 0))),
            (12345.67, Some((1_234_567, 2))),
            (0.1, Some((1, 1))),
            (-0.0523, Some((-523, 4))),
            (0.1 + 0.2, None), // 0.30000000000000004: 17 significant digits
            (9_007_199_254_740_992.0, Some((1 << 53, 0))),
            (9_007_199_254_740_994.0, None), // beyond 2^53
            (1e300, None),
            (5e-324, None),
            (f64::INFINITY, None),
            (f64::NEG_INFINITY, None),
            (f64::NAN, None),
            (stale, None),
        ];
        for &(v, expected) in cases {
            let got = scale_of(v).map(|k| (encode(v, k).unwrap(), k));
            assert_eq!(got, expected, "{v:e}");
            if let Some((m, k)) = got {
                assert_eq!(decode(m, k).to_bits(), v.to_bits(), "{v:e}");
            }
        }
    }

    #[test]
    fn a_series_takes_the_largest_scale_its_samples_need() {
        assert_eq!(series_scale([1.0, 2.5, 3.25, 4.0]), Some(2));
        assert_eq!(series_scale([f64::NAN, 3.0]), Some(0));
        assert_eq!(series_scale([f64::NAN, f64::INFINITY]), None);
        assert_eq!(series_scale(std::iter::empty()), None);
        // Every sample of a series is encodable at its scale unless it is not encodable at all.
        let samples = [1.0, 2.5, 3.25, 0.1 + 0.2, 1e300, 12345.678];
        let k = series_scale(samples).unwrap();
        assert_eq!(k, 3);
        let encodable: Vec<bool> = samples.iter().map(|v| encode(*v, k).is_some()).collect();
        assert_eq!(encodable, [true, true, true, false, false, true]);
        // NaN and ±Inf are not searched (and do not count as failed searches).
        assert_eq!(series_scale([f64::NAN, f64::INFINITY, f64::NAN, f64::NAN, f64::NAN, 0.25]), Some(2));
    }

    /// A series of full-precision doubles stops searching after a few of them: a later sample
    /// that would need a larger scale stays a double (still exact), and the scale found
    /// before is kept.
    #[test]
    fn a_series_of_full_precision_doubles_stops_searching() {
        // 17 significant digits each: no scale up to 15 holds them.
        let noise = [0.1 + 0.2, 1.0 / 3.0, 2.0f64.sqrt(), 1.0 / 7.0];
        assert!(noise.iter().all(|v| scale_of(*v).is_none()));
        assert_eq!(series_scale(noise.iter().copied().chain([7.0])), None, "7 came after four failed searches");
        assert_eq!(series_scale([5.0].into_iter().chain(noise).chain([0.5, 6.0])), Some(0), "0.5 came too late");
        assert_eq!(series_scale([5.0].into_iter().chain(noise[..3].iter().copied()).chain([0.5])), Some(1));
    }

    /// Random decimals with up to 6 digits after the point, of every magnitude that fits: each
    /// is found at its own scale (or a smaller one) and comes back exactly.
    #[test]
    fn random_decimals_are_encoded_at_their_scale() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 7) as u8;
            let mantissa = ((x >> 8) % (1 << 40)) as i64 * if x & 1 == 0 { 1 } else { -1 };
            let v: f64 = format!("{mantissa}e-{digits}").parse().unwrap();
            let k = scale_of(v).unwrap_or_else(|| panic!("{v} not encodable"));
            assert!(k <= digits, "{v}: scale {k} > {digits}");
            assert_eq!(decode(encode(v, k).unwrap(), k).to_bits(), v.to_bits());
        }
    }
}
