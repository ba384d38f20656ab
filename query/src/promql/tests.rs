//! Evaluator tests against an in-memory store; expected values are worked out by hand.

use pharos_model::otlp::STALE_NAN_BITS;
use pharos_model::select::matches_all;
use pharos_model::{LabelMatcher, Labels, MetricsReader, Series};

use super::*;

/// In-memory store; records every `select_series` call.
#[derive(Default)]
pub struct MemStore {
    pub series: Vec<Series>,
    pub histograms: Vec<pharos_model::HistogramSeries>,
    pub calls: std::sync::Mutex<usize>,
}

impl MemStore {
    pub fn add(&mut self, labels: &[(&str, &str)], samples: &[(i64, f64)]) {
        self.series.push(Series {
            labels: Labels::from_pairs(labels.iter().copied()),
            samples: samples.to_vec(),
        });
    }

    pub fn add_histograms(&mut self, labels: &[(&str, &str)], samples: Vec<(i64, std::sync::Arc<pharos_model::FloatHistogram>)>) {
        self.histograms.push(pharos_model::HistogramSeries { labels: Labels::from_pairs(labels.iter().copied()), samples });
    }
}

impl MetricsReader for MemStore {
    fn select_series(
        &self,
        m: &[LabelMatcher],
        start: i64,
        end: i64,
    ) -> std::result::Result<Vec<Series>, String> {
        *self.calls.lock().map_err(|e| e.to_string())? += 1;
        Ok(self
            .series
            .iter()
            .filter(|s| matches_all(m, &s.labels))
            .map(|s| Series {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t >= start && *t <= end)
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect())
    }

    fn select_histograms(&self, m: &[LabelMatcher], start: i64, end: i64) -> std::result::Result<Vec<pharos_model::HistogramSeries>, String> {
        Ok(self
            .histograms
            .iter()
            .filter(|s| matches_all(m, &s.labels))
            .map(|s| pharos_model::HistogramSeries {
                labels: s.labels.clone(),
                samples: s.samples.iter().filter(|(t, _)| *t >= start && *t <= end).cloned().collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect())
    }

    /// Plans every matching series, with or without samples in the range (as the store may),
    /// and hands them over last first from two threads, as no caller may rely on an order.
    fn stream_series(
        &self,
        m: &[LabelMatcher],
        start: i64,
        end: i64,
        plan: &mut dyn FnMut(&[Labels]) -> bool,
        sink: &pharos_model::SeriesSink<'_>,
    ) -> std::result::Result<bool, String> {
        *self.calls.lock().map_err(|e| e.to_string())? += 1;
        let mut matching: Vec<&Series> = self.series.iter().filter(|s| matches_all(m, &s.labels)).collect();
        matching.sort_by(|a, b| a.labels.cmp(&b.labels));
        let labels: Vec<Labels> = matching.iter().map(|s| s.labels.clone()).collect();
        if !plan(&labels) {
            return Ok(false);
        }
        let hand_over = |i: usize| {
            let samples: Vec<(i64, f64)> =
                matching[i].samples.iter().copied().filter(|(t, _)| *t >= start && *t <= end).collect();
            if !samples.is_empty() {
                sink(i, &samples);
            }
        };
        std::thread::scope(|scope| {
            scope.spawn(|| (0..matching.len()).rev().filter(|i| i % 2 == 0).for_each(hand_over));
            (0..matching.len()).rev().filter(|i| i % 2 == 1).for_each(hand_over);
        });
        Ok(true)
    }
}

pub(crate) fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub(crate) const S: i64 = 1000;

pub(crate) fn vector(store: &MemStore, q: &str, t: i64) -> Vec<(String, f64)> {
    match instant_query(store, q, t).unwrap().value {
        Value::Vector(v) => v
            .into_iter()
            .map(|s| (s.labels.to_string(), s.value))
            .collect(),
        other => panic!("{q}: expected vector, got {other:?}"),
    }
}

pub(crate) fn scalar(store: &MemStore, q: &str, t: i64) -> f64 {
    match instant_query(store, q, t).unwrap().value {
        Value::Scalar(v) => v,
        other => panic!("{q}: expected scalar, got {other:?}"),
    }
}

pub(crate) fn err(store: &MemStore, q: &str) -> Error {
    instant_query(store, q, 150 * S).unwrap_err()
}

pub(crate) fn pair(l: &str, v: f64) -> (String, f64) {
    (l.to_string(), v)
}

/// Two counters of job "api" on instances a/b, one gauge, sampled every 15s from 0 to 600s.
pub(crate) fn store() -> MemStore {
    let mut s = MemStore::default();
    let every15 = |f: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> {
        (0..=40).map(|i| (i * 15 * S, f(i))).collect()
    };
    // a grows 1 per 15s; b grows 2 per 15s.
    s.add(
        &[("__name__", "reqs"), ("job", "api"), ("instance", "a")],
        &every15(&|i| i as f64),
    );
    s.add(
        &[("__name__", "reqs"), ("job", "api"), ("instance", "b")],
        &every15(&|i| 2.0 * i as f64),
    );
    s.add(
        &[("__name__", "temp"), ("job", "api"), ("instance", "a")],
        &every15(&|_| 20.0),
    );
    s.add(&[("__name__", "limit"), ("instance", "a")], &[(0, 10.0)]);
    s.add(&[("__name__", "limit"), ("instance", "b")], &[(0, 100.0)]);
    s
}

#[test]
fn literals_and_scalar_arithmetic() {
    let s = store();
    assert_eq!(scalar(&s, "1 + 2 * 3", 0), 7.0);
    assert_eq!(scalar(&s, "-(2 ^ 3) % 5", 0), -3.0);
    assert_eq!(scalar(&s, "2 > bool 1", 0), 1.0);
    assert_eq!(scalar(&s, "time()", 90 * S), 90.0);
    assert_eq!(
        instant_query(&s, "\"hi\"", 0).unwrap().value,
        Value::String("hi".into())
    );
}

#[test]
fn lookback_window_is_five_minutes_left_open() {
    let mut s = MemStore::default();
    s.add(&[("__name__", "g")], &[(0, 5.0)]);
    assert_eq!(vector(&s, "g", 299_999), vec![pair("g{}", 5.0)]);
    assert!(
        vector(&s, "g", 300_000).is_empty(),
        "sample exactly 5m old is out of the window"
    );
}

#[test]
fn staleness_marker_ends_the_series() {
    let mut s = MemStore::default();
    s.add(
        &[("__name__", "g")],
        &[(0, 1.0), (60 * S, 2.0), (120 * S, stale())],
    );
    assert_eq!(vector(&s, "g", 90 * S), vec![pair("g{}", 2.0)]);
    assert!(vector(&s, "g", 120 * S).is_empty());
    assert!(
        vector(&s, "g", 200 * S).is_empty(),
        "stale marker is the latest sample in the lookback"
    );
    // In a range vector the marker is dropped: count_over_time(g[2m]) at 120s sees 60s only
    // (0s is excluded by the left-open bound).
    assert_eq!(
        vector(&s, "count_over_time(g[2m])", 120 * S),
        vec![pair("{}", 1.0)]
    );
}

#[test]
fn matchers_offset_and_at() {
    let s = store();
    assert_eq!(
        vector(&s, "reqs{instance=~\"a|c\"}", 150 * S),
        vec![pair("reqs{instance=\"a\", job=\"api\"}", 10.0)]
    );
    assert_eq!(
        vector(&s, "reqs{instance!=\"a\"}", 150 * S),
        vec![pair("reqs{instance=\"b\", job=\"api\"}", 20.0)]
    );
    assert_eq!(
        vector(&s, "reqs{instance!~\"b\"} offset 1m", 150 * S),
        vec![pair("reqs{instance=\"a\", job=\"api\"}", 6.0)]
    );
    assert_eq!(
        vector(&s, "reqs{instance=\"a\"} @ 30", 600 * S),
        vec![pair("reqs{instance=\"a\", job=\"api\"}", 2.0)]
    );
    assert_eq!(
        vector(&s, "reqs{instance=\"a\"} @ 60 offset 30s", 600 * S),
        vec![pair("reqs{instance=\"a\", job=\"api\"}", 2.0)]
    );
    assert_eq!(
        vector(&s, "{__name__=\"temp\"}", 600 * S),
        vec![pair("temp{instance=\"a\", job=\"api\"}", 20.0)]
    );
}

#[test]
fn bare_matrix_selector_is_left_open_and_keeps_duplicates() {
    let mut s = MemStore::default();
    s.add(
        &[("__name__", "m")],
        &[(0, 1.0), (30 * S, 2.0), (30 * S, 2.0), (60 * S, 3.0)],
    );
    let r = instant_query(&s, "m[1m]", 60 * S).unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("expected matrix")
    };
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0].points,
        vec![(30 * S, 2.0), (30 * S, 2.0), (60 * S, 3.0)]
    );
    assert_eq!(m[0].labels.metric_name(), Some("m"));
}

#[test]
fn rate_and_increase_through_the_engine() {
    let s = store();
    // reqs{a} at t=600s over [1m]: window (540, 600], samples at 555,570,585,600 = 37..40.
    // increase in samples 3 over 45s; to_start = 15s (< 16.5 threshold) -> extrapolate 15s;
    // zero point 45 * 37/3 far away; to_end = 0. increase = 3 * 60/45 = 4; rate = 4/60.
    let inc = vector(&s, "increase(reqs{instance=\"a\"}[1m])", 600 * S);
    assert_eq!(inc.len(), 1);
    assert_eq!(
        inc[0].0, "{instance=\"a\", job=\"api\"}",
        "rate drops the metric name"
    );
    assert!((inc[0].1 - 4.0).abs() < 1e-12);
    let rate = vector(&s, "rate(reqs[1m])", 600 * S);
    assert!((rate[0].1 - 4.0 / 60.0).abs() < 1e-12);
    assert!((rate[1].1 - 8.0 / 60.0).abs() < 1e-12);
    // irate: last two samples of b: (78 - 76)/15s.
    let irate = vector(&s, "irate(reqs{instance=\"b\"}[1m])", 600 * S);
    assert!((irate[0].1 - 2.0 / 15.0).abs() < 1e-12);
}

#[test]
fn over_time_functions() {
    let s = store();
    // reqs{a} in (540, 600]: 37, 38, 39, 40.
    let q = |f: &str| vector(&s, &format!("{f}(reqs{{instance=\"a\"}}[1m])"), 600 * S)[0].1;
    assert_eq!(q("sum_over_time"), 154.0);
    assert_eq!(q("avg_over_time"), 38.5);
    assert_eq!(q("min_over_time"), 37.0);
    assert_eq!(q("max_over_time"), 40.0);
    assert_eq!(q("count_over_time"), 4.0);
    assert_eq!(q("last_over_time"), 40.0);
    assert_eq!(q("changes"), 3.0);
    // population variance of 37..40: mean 38.5, squares 2.25+0.25+0.25+2.25 = 5 / 4.
    assert_eq!(q("stdvar_over_time"), 1.25);
    assert_eq!(
        vector(&s, "last_over_time(temp[1m])", 600 * S)[0].0,
        "temp{instance=\"a\", job=\"api\"}"
    );
}

#[test]
fn aggregations() {
    let s = store();
    // At 150s: reqs a = 10, b = 20.
    assert_eq!(vector(&s, "sum(reqs)", 150 * S), vec![pair("{}", 30.0)]);
    assert_eq!(
        vector(&s, "sum by (job) (reqs)", 150 * S),
        vec![pair("{job=\"api\"}", 30.0)]
    );
    assert_eq!(
        vector(&s, "sum without (instance) (reqs)", 150 * S),
        vec![pair("{job=\"api\"}", 30.0)],
        "without drops the metric name too"
    );
    assert_eq!(vector(&s, "avg(reqs)", 150 * S), vec![pair("{}", 15.0)]);
    assert_eq!(vector(&s, "count(reqs)", 150 * S), vec![pair("{}", 2.0)]);
    assert_eq!(vector(&s, "max(reqs)", 150 * S), vec![pair("{}", 20.0)]);
    assert_eq!(vector(&s, "min(reqs)", 150 * S), vec![pair("{}", 10.0)]);
    assert_eq!(vector(&s, "group(reqs)", 150 * S), vec![pair("{}", 1.0)]);
    assert_eq!(vector(&s, "stddev(reqs)", 150 * S), vec![pair("{}", 5.0)]);
    assert_eq!(
        vector(&s, "quantile(0.5, reqs)", 150 * S),
        vec![pair("{}", 15.0)]
    );
    assert_eq!(
        vector(&s, "topk(1, reqs)", 150 * S),
        vec![pair("reqs{instance=\"b\", job=\"api\"}", 20.0)],
        "topk keeps the metric name"
    );
    assert_eq!(
        vector(&s, "bottomk(1, reqs)", 150 * S),
        vec![pair("reqs{instance=\"a\", job=\"api\"}", 10.0)]
    );
    assert_eq!(
        vector(&s, "count_values(\"v\", reqs)", 150 * S),
        vec![pair("{v=\"10\"}", 1.0), pair("{v=\"20\"}", 1.0)]
    );
}

#[test]
fn vector_scalar_operators_and_name_dropping() {
    let s = store();
    assert_eq!(
        vector(&s, "reqs * 2", 150 * S),
        vec![
            pair("{instance=\"a\", job=\"api\"}", 20.0),
            pair("{instance=\"b\", job=\"api\"}", 40.0)
        ]
    );
    assert_eq!(
        vector(&s, "reqs > 15", 150 * S),
        vec![pair("reqs{instance=\"b\", job=\"api\"}", 20.0)]
    );
    assert_eq!(
        vector(&s, "15 < reqs", 150 * S),
        vec![pair("reqs{instance=\"b\", job=\"api\"}", 20.0)]
    );
    assert_eq!(
        vector(&s, "reqs > bool 15", 150 * S),
        vec![
            pair("{instance=\"a\", job=\"api\"}", 0.0),
            pair("{instance=\"b\", job=\"api\"}", 1.0)
        ]
    );
    assert_eq!(
        vector(&s, "-temp", 150 * S),
        vec![pair("{instance=\"a\", job=\"api\"}", -20.0)]
    );
}

#[test]
fn vector_matching() {
    let s = store();
    // One-to-one on all labels but the name: temp{a} / reqs{a} at 150s = 20/10.
    assert_eq!(
        vector(&s, "temp / reqs", 150 * S),
        vec![pair("{instance=\"a\", job=\"api\"}", 2.0)]
    );
    // on(instance) keeps only the instance label.
    assert_eq!(
        vector(&s, "reqs / on(instance) limit", 150 * S),
        vec![pair("{instance=\"a\"}", 1.0), pair("{instance=\"b\"}", 0.2)]
    );
    assert_eq!(
        vector(&s, "reqs / ignoring(job) limit", 150 * S),
        vec![pair("{instance=\"a\"}", 1.0), pair("{instance=\"b\"}", 0.2)]
    );
    // Filtering comparison keeps the left value; one-to-one on() keeps only the on labels
    // (Prometheus' resultMetric `Keep`, which drops the name too). a: 10 < 10 no; b: 20 < 100.
    assert!(vector(&s, "reqs > on(instance) limit", 150 * S).is_empty());
    assert_eq!(
        vector(&s, "reqs < on(instance) limit", 150 * S),
        vec![pair("{instance=\"b\"}", 20.0)]
    );
    // Without on(), the filtering comparison keeps the name: temp{a} (20) >= reqs{a} (10).
    assert_eq!(
        vector(&s, "temp >= reqs", 150 * S),
        vec![pair("temp{instance=\"a\", job=\"api\"}", 20.0)]
    );
    // group_left keeps all labels of the many side plus included labels from the one side.
    let mut s2 = store();
    s2.add(
        &[("__name__", "info"), ("job", "api"), ("team", "core")],
        &[(0, 1.0)],
    );
    assert_eq!(
        vector(&s2, "reqs * on(job) group_left(team) info", 150 * S),
        vec![
            pair("{instance=\"a\", job=\"api\", team=\"core\"}", 10.0),
            pair("{instance=\"b\", job=\"api\", team=\"core\"}", 20.0),
        ]
    );
    let e = err(&s2, "reqs * on(job) info");
    assert!(matches!(e, Error::Execution(_)), "{e}");
    let e = err(&s2, "info * on(job) reqs");
    assert!(
        e.to_string().contains("many-to-many matching not allowed"),
        "{e}"
    );
}

#[test]
fn set_operators() {
    let s = store();
    assert_eq!(
        vector(&s, "reqs and on(instance) temp", 150 * S),
        vec![pair("reqs{instance=\"a\", job=\"api\"}", 10.0)]
    );
    assert_eq!(
        vector(&s, "reqs unless on(instance) temp", 150 * S),
        vec![pair("reqs{instance=\"b\", job=\"api\"}", 20.0)]
    );
    assert_eq!(
        vector(&s, "temp or reqs", 150 * S),
        vec![
            pair("reqs{instance=\"b\", job=\"api\"}", 20.0),
            pair("temp{instance=\"a\", job=\"api\"}", 20.0)
        ]
    );
}

#[test]
fn simple_functions() {
    let mut s = MemStore::default();
    s.add(&[("__name__", "v"), ("k", "1")], &[(0, -2.5)]);
    s.add(&[("__name__", "v"), ("k", "2")], &[(0, 1.25)]);
    let q = |e: &str| {
        vector(&s, e, 0)
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>()
    };
    assert_eq!(q("abs(v)"), vec![2.5, 1.25]);
    assert_eq!(q("ceil(v)"), vec![-2.0, 2.0]);
    assert_eq!(q("floor(v)"), vec![-3.0, 1.0]);
    assert_eq!(q("round(v)"), vec![-2.0, 1.0], "Prometheus rounds half up");
    assert_eq!(q("round(v, 0.5)"), vec![-2.5, 1.5]);
    assert_eq!(q("clamp(v, -1, 1)"), vec![-1.0, 1.0]);
    assert_eq!(q("sort_desc(v)"), vec![1.25, -2.5]);
    assert_eq!(scalar(&s, "scalar(v{k=\"1\"})", 0), -2.5);
    assert!(scalar(&s, "scalar(v)", 0).is_nan());
    assert_eq!(vector(&s, "vector(3)", 0), vec![pair("{}", 3.0)]);
    assert_eq!(
        vector(&s, "absent(nope{a=\"x\"})", 0),
        vec![pair("{a=\"x\"}", 1.0)]
    );
    assert_eq!(
        vector(
            &s,
            "label_replace(v{k=\"1\"}, \"dst\", \"x-$1\", \"k\", \"(.*)\")",
            0
        ),
        vec![pair("v{dst=\"x-1\", k=\"1\"}", -2.5)]
    );
}

#[test]
fn range_query_assembles_sorted_matrix() {
    let s = store();
    let r = range_query(&s, "reqs", 0, 60 * S, 30 * S).unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("expected matrix")
    };
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].labels.get("instance"), Some("a"));
    assert_eq!(m[0].points, vec![(0, 0.0), (30 * S, 2.0), (60 * S, 4.0)]);
    assert_eq!(m[1].points, vec![(0, 0.0), (30 * S, 4.0), (60 * S, 8.0)]);
    // A scalar becomes one series with no labels.
    let r = range_query(&s, "time()", 0, 20 * S, 10 * S).unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("expected matrix")
    };
    assert_eq!(m[0].labels, Labels::default());
    assert_eq!(m[0].points, vec![(0, 0.0), (10 * S, 10.0), (20 * S, 20.0)]);
}

#[test]
fn at_start_and_end_pin_the_evaluation_time_in_range_queries() {
    let s = store();
    // reqs{a} at 60s is 4 and at 0s is 0, at every step.
    let points = |q: &str| {
        let Value::Matrix(m) = range_query(&s, q, 0, 60 * S, 30 * S).unwrap().value else {
            panic!()
        };
        m[0].points.clone()
    };
    assert_eq!(
        points("reqs{instance=\"a\"} @ end()"),
        vec![(0, 4.0), (30 * S, 4.0), (60 * S, 4.0)]
    );
    assert_eq!(
        points("reqs{instance=\"a\"} @ start()"),
        vec![(0, 0.0), (30 * S, 0.0), (60 * S, 0.0)]
    );
}

#[test]
fn range_query_reads_the_store_once_per_selector() {
    let s = store();
    range_query(
        &s,
        "rate(reqs[1m]) / on(instance) group_left limit",
        0,
        600 * S,
        15 * S,
    )
    .unwrap();
    assert_eq!(*s.calls.lock().unwrap(), 2);
}

#[test]
fn range_query_limits() {
    let s = store();
    let e = range_query(&s, "reqs", 0, 11_001 * S, S).unwrap_err();
    assert!(e.to_string().contains("11,000 points"), "{e}");
    assert!(range_query(&s, "reqs", 0, 11_000 * S, S).is_ok());
    assert!(matches!(
        range_query(&s, "reqs[1m]", 0, 10, 1).unwrap_err(),
        Error::BadData(_)
    ));
    assert!(matches!(
        range_query(&s, "reqs", 10, 0, 1).unwrap_err(),
        Error::BadData(_)
    ));
}

#[test]
fn unsupported_and_invalid_queries_are_bad_data() {
    let s = store();
    for q in ["histogram_fraction(0, 1, reqs)", "histogram_count(reqs)"] {
        let e = err(&s, q);
        assert!(
            matches!(e, Error::BadData(_)) && e.to_string().contains("not supported yet"),
            "{q}: {e}"
        );
    }
    let e = err(&s, "sum(reqs");
    assert!(matches!(e, Error::BadData(_)), "{e}");
}

#[test]
fn same_labelset_after_name_drop_is_an_execution_error() {
    let mut s = MemStore::default();
    s.add(&[("__name__", "x"), ("a", "1")], &[(0, 1.0)]);
    s.add(&[("__name__", "y"), ("a", "1")], &[(0, 2.0)]);
    let e = instant_query(&s, "{a=\"1\"} * 2", 0).unwrap_err();
    assert!(matches!(e, Error::Execution(_)), "{e}");
    // Filtering comparisons keep the names, so no conflict.
    assert_eq!(vector(&s, "{a=\"1\"} > 0", 0).len(), 2);
}

#[test]
fn trigonometric_functions_and_pi() {
    let s = MemStore::default();
    let one = |q: &str| {
        let v = vector(&s, q, 0);
        assert_eq!(v.len(), 1, "{q}");
        v[0].1
    };
    assert!((one("deg(vector(pi()))") - 180.0).abs() < 1e-12);
    assert!((one("rad(vector(180))") - std::f64::consts::PI).abs() < 1e-12);
    assert!((one("sin(vector(pi() / 2))") - 1.0).abs() < 1e-12);
    assert!((one("cos(vector(0))") - 1.0).abs() < 1e-12);
    assert!((one("atan(vector(1)) * 4") - std::f64::consts::PI).abs() < 1e-12);
    assert!(one("acos(vector(2))").is_nan());
    assert!((one("tanh(vector(0))")).abs() < 1e-12);
}

#[test]
fn histogram_quantile_over_rated_classic_buckets() {
    let mut s = MemStore::default();
    // Two jobs' request-duration buckets, counting up by these per-second increments:
    // job a: 1/s ≤ 0.1, 3/s ≤ 0.5 (2/s in (0.1, 0.5]), 4/s total.
    // job b: 4/s ≤ 0.1 (everything).
    for (job, incs) in [("a", [1.0, 3.0, 4.0, 4.0]), ("b", [4.0, 4.0, 4.0, 4.0])] {
        for (le, inc) in ["0.1", "0.5", "1", "+Inf"].iter().zip(incs) {
            let samples: Vec<(i64, f64)> = (0..=60).map(|i| (i * 10 * S, inc * 10.0 * i as f64)).collect();
            s.add(&[("__name__", "req_bucket"), ("job", job), ("le", le)], &samples);
        }
    }
    let v = vector(&s, "histogram_quantile(0.5, rate(req_bucket[1m]))", 600 * S);
    // a: rank 2 of 4 → 1 of the 2 in (0.1, 0.5] → 0.1 + 0.4 / 2 = 0.3. b: rank 2 of 4 in the
    // first bucket, which starts at 0 → 0.1 * 2 / 4 = 0.05.
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0].0, "{job=\"a\"}");
    assert!((v[0].1 - 0.3).abs() < 1e-9, "{v:?}");
    assert_eq!(v[1].0, "{job=\"b\"}");
    assert!((v[1].1 - 0.05).abs() < 1e-9, "{v:?}");
    // Summed across jobs by `le`: 5/s ≤ 0.1, 7/s ≤ 0.5, 8/s total; rank 4 → 0.1 * 4 / 5.
    let v = vector(&s, "histogram_quantile(0.5, sum by (le) (rate(req_bucket[1m])))", 600 * S);
    assert_eq!(v.len(), 1);
    assert!((v[0].1 - 0.08).abs() < 1e-9, "{v:?}");
}

#[test]
fn label_memo_derives_once_and_canonically() {
    let memo = super::eval::LabelMemo::default();
    let a = Labels::from_pairs([("__name__", "x"), ("job", "j")]);
    let b = Labels::from_pairs([("__name__", "y"), ("job", "j")]);
    let (da, db) = (memo.without_name(&a), memo.without_name(&b));
    assert_eq!(da, Labels::from_pairs([("job", "j")]));
    // Equal content from two inputs: one shared set.
    assert_eq!(da.ptr_id(), db.ptr_id());
    // The same input again: the cached set, not a new one.
    assert_eq!(memo.without_name(&a.clone()).ptr_id(), da.ptr_id());
    assert!(memo.is_canonical());
}

#[test]
fn name_drop_collisions_are_errors_at_every_step_of_a_range_query() {
    let mut s = MemStore::default();
    let pts: Vec<(i64, f64)> = (0..20).map(|i| (i * 15 * S, i as f64)).collect();
    s.add(&[("__name__", "x"), ("a", "1")], &pts);
    s.add(&[("__name__", "y"), ("a", "1")], &pts);
    let e = range_query(&s, "rate({a=\"1\"}[1m])", 60 * S, 240 * S, 15 * S).unwrap_err();
    assert!(matches!(e, Error::Execution(_)), "{e}");
    // Distinct after the drop: fine, and the aggregation over the memo's sets is right.
    let mut s = MemStore::default();
    s.add(&[("__name__", "x"), ("a", "1")], &pts);
    s.add(&[("__name__", "x"), ("a", "2")], &pts);
    let r = range_query(&s, "sum(rate(x[1m]))", 60 * S, 240 * S, 15 * S).unwrap();
    let Value::Matrix(m) = r.value else { panic!("matrix") };
    assert_eq!(m.len(), 1);
    // Each series grows by 1 every 15 s: rate 1/15 each, 2/15 summed, at every step.
    assert_eq!(m[0].points.len(), 13);
    assert!(m[0].points.iter().all(|(_, v)| (v - 2.0 / 15.0).abs() < 1e-9), "{m:?}");
}

/// A query's lookback bounds instant selectors on the step path, in tables and in subqueries.
#[test]
fn lookback_can_be_set_per_query() {
    let s = store();
    let one_minute = QueryOptions { lookback_ms: 60 * S, ..QueryOptions::default() };
    let instant = |q: &str, t: i64, o: QueryOptions| match instant_query_with_options(&s, q, t, o).unwrap().value {
        Value::Vector(v) => v.len(),
        other => panic!("{other:?}"),
    };
    // `limit` has one sample per series, at 0.
    assert_eq!(instant("limit", 59 * S, one_minute), 2);
    assert_eq!(instant("limit", 60 * S, one_minute), 0);
    assert_eq!(instant("limit", 299 * S, QueryOptions::default()), 2);
    // A subquery's steps look back as far.
    let counts = |o| match instant_query_with_options(&s, "count_over_time(limit[5m:30s])", 300 * S, o).unwrap().value {
        Value::Vector(v) => v.iter().map(|s| s.value).collect::<Vec<f64>>(),
        other => panic!("{other:?}"),
    };
    // Inner steps 30 s … 300 s: (0, 30] within 1 m: 30 s only; within 5 m: 30 … 270 s.
    assert_eq!(counts(one_minute), vec![1.0, 1.0]);
    assert_eq!(counts(QueryOptions::default()), vec![9.0, 9.0]);
    for max_cells in [0, step_table::MAX_CELLS] {
        let r = range_query_with(&s, "limit * 2", 0, 120 * S, 30 * S, max_cells, one_minute).unwrap();
        let Value::Matrix(m) = r.value else { panic!("expected a matrix") };
        let points: Vec<_> = m.iter().map(|s| s.points.clone()).collect();
        assert_eq!(points, vec![vec![(0, 20.0), (30 * S, 20.0)], vec![(0, 200.0), (30 * S, 200.0)]], "max cells {max_cells}");
    }
}
