//! Values PromQL expressions evaluate to, and their Prometheus JSON form.

use pharos_model::Labels;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Value as Json, json};

/// One element of an instant vector: a series' labels and its value at the evaluation time.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Series labels (the metric name may have been dropped by an operation).
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

/// One series of a range vector or of a range query's result.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    /// Series labels.
    pub labels: Labels,
    /// `(timestamp_ms, value)` in time order.
    pub points: Vec<(i64, f64)>,
}

/// The result of evaluating an expression at one instant.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A bare number.
    Scalar(f64),
    /// A string literal.
    String(String),
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector (bare matrix selector).
    Matrix(Vec<RangeSeries>),
    /// The answer of a query over native histogram samples: an instant vector (`range:
    /// false`) or a matrix (a range vector, or a range query's result), each series with float
    /// and histogram points. Never an operand: such queries are evaluated by the `native`
    /// module, which produces this.
    Native {
        /// A matrix, not an instant vector.
        range: bool,
        /// The series, sorted by labels.
        series: Vec<NativeSeries>,
    },
}

/// One series of a [`Value::Native`] answer.
#[derive(Clone, Debug, PartialEq)]
pub struct NativeSeries {
    /// Series labels.
    pub labels: Labels,
    /// `(timestamp_ms, value)` float points in time order.
    pub floats: Vec<(i64, f64)>,
    /// `(timestamp_ms, histogram)` points in time order.
    pub histograms: Vec<(i64, std::sync::Arc<pharos_model::FloatHistogram>)>,
}

impl Value {
    /// The Prometheus name of this value's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
            Value::Native { range: false, .. } => "vector",
            Value::Native { range: true, .. } => "matrix",
        }
    }
}

/// A query result ready to be rendered: the value plus the evaluation time of instant queries.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    /// The result value; range queries always produce [`Value::Matrix`].
    pub value: Value,
    /// Evaluation time in milliseconds (used for scalar, string and vector results).
    pub time_ms: i64,
    /// Where the time went, for the API's `stats` parameter.
    pub stats: QueryStats,
    /// Warnings and infos, rendered with their positions in the query.
    pub annotations: super::annotations::Rendered,
}

/// What a query cost, in the shape of Prometheus' `stats` answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryStats {
    /// Reading the selected series from the head and files.
    pub preparation: std::time::Duration,
    /// Evaluating the expression over the read samples (every step of a range query).
    pub inner_eval: std::time::Duration,
    /// Sorting the result.
    pub result_sort: std::time::Duration,
    /// Samples read for the query's selectors.
    pub samples_read: u64,
}

impl QueryStats {
    /// The `stats` object of a Prometheus API answer: `timings` in seconds and `samples`.
    pub fn to_json(&self) -> Json {
        let total = self.preparation + self.inner_eval + self.result_sort;
        json!({
            "timings": {
                "evalTotalTime": total.as_secs_f64(),
                "resultSortTime": self.result_sort.as_secs_f64(),
                "queryPreparationTime": self.preparation.as_secs_f64(),
                "innerEvalTime": self.inner_eval.as_secs_f64(),
                "execQueueTime": 0.0,
                "execTotalTime": total.as_secs_f64(),
            },
            "samples": {"totalQueryableSamples": self.samples_read, "peakSamples": self.samples_read},
        })
    }
}

impl QueryResult {
    /// The `data` object of a Prometheus API response for serde, written straight to the
    /// output (a JSON tree of a range query's points, built and then written, was a quarter of a
    /// small range query's CPU); `stats` holds [`QueryStats::to_json`] when `with_stats`.
    pub fn data(&self, with_stats: bool) -> DataJson<'_> {
        DataJson { result: self, with_stats }
    }
}

/// See [`QueryResult::data`].
pub struct DataJson<'a> {
    result: &'a QueryResult,
    with_stats: bool,
}

impl Serialize for DataJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let r = self.result;
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("resultType", r.value.type_name())?;
        m.serialize_entry("result", &ResultJson(r))?;
        if self.with_stats {
            m.serialize_entry("stats", &r.stats.to_json())?;
        }
        m.end()
    }
}

struct ResultJson<'a>(&'a QueryResult);

impl Serialize for ResultJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let t = self.0.time_ms;
        match &self.0.value {
            Value::Scalar(v) => (TimeJson(t), FloatJson(*v)).serialize(ser),
            Value::String(s) => (TimeJson(t), s.as_str()).serialize(ser),
            Value::Vector(samples) => ser.collect_seq(samples.iter().map(|s| PointJson {
                labels: &s.labels,
                key: "value",
                points: Points::One(t, s.value),
            })),
            Value::Matrix(series) => ser.collect_seq(series.iter().map(|s| PointJson {
                labels: &s.labels,
                key: "values",
                points: Points::Many(&s.points),
            })),
            Value::Native { range, series } => ser.collect_seq(series.iter().map(|s| NativeJson { series: s, range: *range })),
        }
    }
}

/// One element of a vector (`metric`, `value`) or of a matrix (`metric`, `values`).
struct PointJson<'a> {
    labels: &'a Labels,
    key: &'static str,
    points: Points<'a>,
}

enum Points<'a> {
    One(i64, f64),
    Many(&'a [(i64, f64)]),
}

impl Serialize for PointJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut m = ser.serialize_map(Some(2))?;
        m.serialize_entry("metric", &LabelsJson(self.labels))?;
        match self.points {
            Points::One(t, v) => m.serialize_entry(self.key, &(TimeJson(t), FloatJson(v)))?,
            Points::Many(points) => {
                m.serialize_entry(self.key, &ManyJson(points))?;
            }
        }
        m.end()
    }
}

/// A series of a [`Value::Native`] answer as Prometheus writes it: in a vector `value` or
/// `histogram` (its one point), in a matrix `values` and/or `histograms`. A histogram is
/// `{"count": "…", "sum": "…", "buckets": [[boundary rule, "lower", "upper", "count"], …]}`
/// with the buckets whose count is not 0.
struct NativeJson<'a> {
    series: &'a NativeSeries,
    range: bool,
}

impl Serialize for NativeJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let s = self.series;
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("metric", &LabelsJson(&s.labels))?;
        if self.range {
            if !s.floats.is_empty() {
                m.serialize_entry("values", &ManyJson(&s.floats))?;
            }
            if !s.histograms.is_empty() {
                let points: Vec<(TimeJson, HistogramJson)> = s.histograms.iter().map(|(t, h)| (TimeJson(*t), HistogramJson(h))).collect();
                m.serialize_entry("histograms", &points)?;
            }
        } else if let Some((t, h)) = s.histograms.first() {
            m.serialize_entry("histogram", &(TimeJson(*t), HistogramJson(h)))?;
        } else if let Some((t, v)) = s.floats.first() {
            m.serialize_entry("value", &(TimeJson(*t), FloatJson(*v)))?;
        }
        m.end()
    }
}

/// A native histogram in Prometheus' JSON.
struct HistogramJson<'a>(&'a pharos_model::FloatHistogram);

impl Serialize for HistogramJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let h = self.0;
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("count", &FloatJson(h.count))?;
        m.serialize_entry("sum", &FloatJson(h.sum))?;
        let buckets = h.buckets();
        if !buckets.is_empty() {
            let rows: Vec<(u8, FloatJson, FloatJson, FloatJson)> =
                buckets.iter().map(|b| (b.boundary_rule(), FloatJson(b.lower), FloatJson(b.upper), FloatJson(b.count))).collect();
            m.serialize_entry("buckets", &rows)?;
        }
        m.end()
    }
}

struct ManyJson<'a>(&'a [(i64, f64)]);

impl Serialize for ManyJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_seq(self.0.iter().map(|(t, v)| (TimeJson(*t), FloatJson(*v))))
    }
}

/// A label set as a JSON object, for serde.
pub struct LabelsJson<'a>(pub &'a Labels);

impl Serialize for LabelsJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_map(self.0.iter())
    }
}

/// [`timestamp_json`] for serde.
struct TimeJson(i64);

impl Serialize for TimeJson {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        if self.0 % 1000 == 0 { ser.serialize_i64(self.0 / 1000) } else { ser.serialize_f64(self.0 as f64 / 1000.0) }
    }
}

/// [`format_float`] for serde, without allocating the string.
struct FloatJson(f64);

impl Serialize for FloatJson {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            ser.serialize_str("NaN")
        } else if v == f64::INFINITY {
            ser.serialize_str("+Inf")
        } else if v == f64::NEG_INFINITY {
            ser.serialize_str("-Inf")
        } else {
            with_go_float(v, |s| ser.serialize_str(s))
        }
    }
}

/// Calls `f` with a finite float as Go's `strconv.FormatFloat(v, 'f', -1, 64)` prints it
/// (shortest round-trip digits, never an exponent), allocating only where zmij writes an
/// exponent. Rust's `Display` took an eighth of the CPU of a range query answering 100 series
/// × 121 steps, and rounds an exact half up where Go rounds it to the even digit.
pub fn with_go_float<R>(v: f64, f: impl FnOnce(&str) -> R) -> R {
    // Integers below 2^53 are exact as i64, and the common case (counters, bytes).
    if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        if v == 0.0 && v.is_sign_negative() {
            return f("-0");
        }
        return f(itoa::Buffer::new().format(v as i64));
    }
    let mut shortest = zmij::Buffer::new();
    let s = shortest.format_finite(v);
    match (s.contains('e'), s.strip_suffix(".0")) {
        (false, Some(integer)) => f(integer),
        (false, None) => f(s),
        (true, _) => f(&fixed_notation(s)),
    }
}

/// `1.25e-7` → `0.000000125`, `1.5e20` → `150000000000000000000`.
fn fixed_notation(s: &str) -> String {
    let (sign, s) = match s.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", s),
    };
    let (mantissa, exponent) = s.split_once('e').unwrap_or((s, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    let digits = digits.trim_end_matches('0');
    let leading = digits.len() - digits.trim_start_matches('0').len();
    let digits = &digits[leading..];
    // Digits before the decimal point.
    let point = int.len() as i32 + exponent - leading as i32;
    if digits.is_empty() {
        format!("{sign}0")
    } else if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else if point as usize >= digits.len() {
        format!("{sign}{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (a, b) = digits.split_at(point as usize);
        format!("{sign}{a}.{b}")
    }
}

/// Labels as a JSON object.
pub fn labels_json(labels: &Labels) -> Json {
    Json::Object(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), Json::String(v.into())))
            .collect(),
    )
}

/// Milliseconds as Prometheus writes them: unix seconds, integral when whole (`1`, `1.5`).
pub fn timestamp_json(ms: i64) -> Json {
    if ms % 1000 == 0 {
        Json::from(ms / 1000)
    } else {
        Json::from(ms as f64 / 1000.0)
    }
}

/// A float as Go's `strconv.FormatFloat(v, 'f', -1, 64)`, which Prometheus uses for values:
/// shortest round-trip digits, never an exponent, `NaN`, `+Inf`, `-Inf`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        with_go_float(v, str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_like_go_strconv_f_minus_one() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.5), "0.5");
        assert_eq!(format_float(-0.0), "-0");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(1e-7), "0.0000001");
        assert_eq!(format_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
    }

    /// Against `Display` (shortest round-trip digits without exponent, what Go's 'f' with -1
    /// prints): integers, decimals of every magnitude, and random bit patterns.
    #[test]
    fn go_floats_equal_display_for_any_finite_value() {
        let mut values = vec![
            0.0, -0.0, 1.0, -1.0, 0.1, 12.0, 12.5, 100.0, 1e15, 1e16, 1e17, 9_007_199_254_740_992.0,
            9_007_199_254_740_993.0, 123_456_789_012_345_680_000.0, 1e-5, 1e-4, 0.001_234, 5e-324, f64::MIN_POSITIVE,
            f64::MAX, f64::MIN, 0.30000000000000004, 1.0 / 3.0, 2.0f64.sqrt() * 1e10, f64::from_bits(0x42d3_31c6_e056_6cc8), // 84418043664819.125
            -0.125e-10,
        ];
        // A deterministic xorshift: random bit patterns cover every exponent.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match i % 4 {
                0 => f64::from_bits(x),
                1 => (x % 1_000_000_000) as f64 / 10f64.powi((x % 12) as i32),
                2 => (x >> 11) as f64 * 10f64.powi((x % 40) as i32 - 20),
                _ => -((x % 100_000) as f64) / 100.0,
            };
            if v.is_finite() {
                values.push(v);
            }
        }
        let mut ties = 0;
        for v in values {
            let (ours, display) = (with_go_float(v, str::to_string), format!("{v}"));
            if ours == display {
                continue;
            }
            // Only an exact half between two shortest candidates may differ: Go rounds it to
            // the even digit (`ryuDigits` in strconv/ftoaryu.go), Rust's `Display` up. The
            // exact expansion (`{:.1100}` is exact) says whether `v` is such a half.
            let exact = normalized(&format!("{:.1100}", v.abs()));
            let k = exact.0.len() - 1;
            assert_eq!(exact.0.as_bytes()[k], b'5', "{v:e}: {ours} against {display}, not a tie");
            let down = (exact.0[..k].to_string(), exact.1);
            let up = increment(&down);
            let (even, odd) = if (exact.0.as_bytes()[k - 1] - b'0').is_multiple_of(2) { (down, up) } else { (up, down) };
            assert_eq!((normalized(&ours), normalized(&display)), (even, odd), "{v:e}");
            assert_eq!(ours.starts_with('-'), v.is_sign_negative());
            ties += 1;
        }
        assert!(ties > 0, "the values include exact ties (84418043664819.125)");
    }

    /// A decimal as its significant digits and the position of the point before them
    /// (`12.5` → ("125", 2), `0.0012` → ("12", -2)).
    fn normalized(s: &str) -> (String, i32) {
        let s = s.trim_start_matches('-');
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let mut digits = format!("{int}{frac}");
        let mut point = int.len() as i32;
        while digits.starts_with('0') {
            digits.remove(0);
            point -= 1;
        }
        while digits.ends_with('0') {
            digits.pop();
        }
        (digits, point)
    }

    /// The next decimal at the last digit of `d` (`("129", 2)` → `("13", 2)`).
    fn increment(d: &(String, i32)) -> (String, i32) {
        let mut digits: Vec<u8> = d.0.bytes().collect();
        let mut point = d.1;
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                point += 1;
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
        let s = String::from_utf8(digits).unwrap();
        (s.trim_end_matches('0').to_string(), point)
    }

    /// The JSON tree the serializer replaced, built value by value.
    fn tree(r: &QueryResult) -> Json {
        let t = r.time_ms;
        let result = match &r.value {
            Value::Scalar(v) => json!([timestamp_json(t), format_float(*v)]),
            Value::String(s) => json!([timestamp_json(t), s]),
            Value::Vector(samples) => Json::Array(
                samples
                    .iter()
                    .map(|s| json!({"metric": labels_json(&s.labels), "value": [timestamp_json(t), format_float(s.value)]}))
                    .collect(),
            ),
            Value::Matrix(series) => Json::Array(
                series
                    .iter()
                    .map(|s| {
                        let values: Vec<Json> =
                            s.points.iter().map(|(ts, v)| json!([timestamp_json(*ts), format_float(*v)])).collect();
                        json!({"metric": labels_json(&s.labels), "values": values})
                    })
                    .collect(),
            ),
            Value::Native { .. } => unreachable!("compared on float answers only"),
        };
        json!({"resultType": r.value.type_name(), "result": result})
    }

    #[test]
    fn streamed_answers_parse_to_the_json_tree() {
        let a = Labels::from_pairs([("__name__", "m"), ("q", "a\"b\\c\u{e9}\n")]);
        let b = Labels::from_pairs([("job", "j")]);
        let points = vec![
            (1000, 1.0),
            (1500, -0.0),
            (2001, f64::NAN),
            (3000, f64::INFINITY),
            (4000, f64::NEG_INFINITY),
            (5000, 0.1 + 0.2),
            (-1500, 1e21),
            (6000, 1e-7),
        ];
        let at = |value, time_ms| QueryResult { value, time_ms, stats: QueryStats::default(), annotations: Default::default() };
        let results = [
            at(Value::Scalar(0.5), 1500),
            at(Value::Scalar(f64::NAN), 2000),
            at(Value::String("x\"y".into()), 7),
            at(Value::Vector(vec![]), 0),
            at(Value::Matrix(vec![]), 0),
            at(
                Value::Vector(points.iter().map(|(_, v)| Sample { labels: a.clone(), value: *v }).chain([Sample { labels: b.clone(), value: 2.5 }]).collect()),
                1_435_781_451_781,
            ),
            at(
                Value::Matrix(vec![
                    RangeSeries { labels: a.clone(), points: points.clone() },
                    RangeSeries { labels: b.clone(), points: vec![] },
                    RangeSeries { labels: Labels::default(), points: points[..2].to_vec() },
                ]),
                0,
            ),
        ];
        for r in &results {
            let streamed: Json = serde_json::from_slice(&serde_json::to_vec(&r.data(false)).unwrap()).unwrap();
            assert_eq!(streamed, tree(r), "{:?}", r.value);
            let mut with_stats = tree(r);
            with_stats["stats"] = r.stats.to_json();
            assert_eq!(serde_json::to_value(r.data(true)).unwrap(), with_stats);
        }
        let one = at(Value::Matrix(vec![RangeSeries { labels: b, points: vec![(1500, -0.0), (2000, 1e-7)] }]), 0);
        assert_eq!(
            serde_json::to_string(&one.data(false)).unwrap(),
            r#"{"resultType":"matrix","result":[{"metric":{"job":"j"},"values":[[1.5,"-0"],[2,"0.0000001"]]}]}"#
        );
    }

    #[test]
    fn timestamps_are_integral_seconds_when_whole() {
        assert_eq!(timestamp_json(1_000).to_string(), "1");
        assert_eq!(timestamp_json(1_500).to_string(), "1.5");
        assert_eq!(
            timestamp_json(1_435_781_451_781).to_string(),
            "1435781451.781"
        );
    }
}
