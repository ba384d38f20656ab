//! Warnings and infos: Prometheus' messages, positions, and the same notes from range queries
//! evaluated step by step and through tables.

use super::annotations::go_g;
use crate::logql::template::go_quote;
use super::tests::{MemStore, S};
use super::*;

/// Counters with and without a counter's name, a gauge, classic histogram buckets (one group
/// with a decreasing bucket, one series without `le`), every 15 s from 0 to 600 s.
fn store() -> MemStore {
    let mut s = MemStore::default();
    let every15 = |f: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> { (0..=40).map(|i| (i * 15 * S, f(i))).collect() };
    s.add(&[("__name__", "http_requests_total"), ("job", "api"), ("instance", "a")], &every15(&|i| i as f64));
    s.add(&[("__name__", "reqs"), ("job", "api"), ("instance", "b")], &every15(&|i| 2.0 * i as f64));
    s.add(&[("__name__", "temp"), ("job", "api"), ("instance", "c")], &every15(&|i| 20.0 + (i % 3) as f64));
    for (le, n) in [("0.1", 5.0), ("1", 3.0), ("+Inf", 9.0)] {
        s.add(&[("__name__", "lat_bucket"), ("job", "api"), ("le", le)], &every15(&|i| n * i as f64));
    }
    for (le, n) in [("0.1", 1.0), ("1", 2.0), ("+Inf", 3.0)] {
        s.add(&[("__name__", "ok_bucket"), ("job", "api"), ("le", le)], &every15(&|i| n * i as f64));
    }
    s.add(&[("__name__", "odd_bucket"), ("job", "api")], &every15(&|i| i as f64));
    s
}

fn notes(store: &MemStore, q: &str) -> (Vec<String>, Vec<String>) {
    let r = instant_query(store, q, 300 * S).unwrap_or_else(|e| panic!("{q}: {e}"));
    (r.annotations.warnings, r.annotations.infos)
}

/// `(line:col)` of the first occurrence of `needle` in `q`, computed independently of the
/// scanner: lines from 1, byte columns from 1.
fn pos_of(q: &str, needle: &str) -> String {
    let at = q.find(needle).unwrap_or_else(|| panic!("{needle} not in {q}"));
    let line = q[..at].matches('\n').count() + 1;
    let col = at - q[..at].rfind('\n').map_or(0, |nl| nl + 1) + 1;
    format!("({line}:{col})")
}

const NOT_COUNTER: &str = "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket:";
const BAD_QUANTILE: &str = "PromQL warning: quantile value should be between 0 and 1, got";

#[test]
fn go_formatting_of_floats_and_strings() {
    // Go's fmt.Sprintf("%g", v) for these values.
    for (v, want) in [
        (2.0, "2"),
        (-1.0, "-1"),
        (1.5, "1.5"),
        (0.25, "0.25"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (1e21, "1e+21"),
        (1e100, "1e+100"),
        (-2.5e-300, "-2.5e-300"),
        (0.0, "0"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
    ] {
        assert_eq!(go_g(v), want, "{v:?}");
    }
    assert_eq!(go_quote("temp"), "\"temp\"");
    assert_eq!(go_quote("a\"b\\c\nd\te\u{1}"), "\"a\\\"b\\\\c\\nd\\te\\x01\"");
    assert_eq!(go_quote("héllo"), "\"héllo\"");
}

#[test]
fn rate_of_a_metric_not_named_as_a_counter_is_noted_at_its_argument() {
    let s = store();
    let q = "rate(temp[5m])";
    assert_eq!(notes(&s, q), (vec![], vec![format!("{NOT_COUNTER} \"temp\" {}", pos_of(q, "temp"))]));
    // Counter names, other functions and no result give no note.
    for q in ["rate(http_requests_total[5m])", "increase(lat_bucket[5m])", "delta(temp[5m])", "rate(temp[1s])", "rate(nothing[5m])"] {
        assert_eq!(notes(&s, q), (vec![], vec![]), "{q}");
    }
    // The second call of the same name, on another line. Prometheus unwraps parentheses
    // around a function's arguments before evaluating it: the position is the selector's.
    let q = "sum(rate(http_requests_total[5m]))\n  + on() sum(increase(((reqs[5m]))))";
    assert_eq!(notes(&s, q).1, vec![format!("{NOT_COUNTER} \"reqs\" {}", pos_of(q, "reqs"))]);
    assert!(pos_of(q, "reqs").starts_with("(2:"), "{q}");
    // Not those of a subquery's expression, nor an aggregation's parameter.
    let q = "rate((temp)[5m:1m])";
    assert_eq!(notes(&s, q).1, vec![format!("{NOT_COUNTER} \"temp\" (1:6)")]);
    // One note per metric; the same metric twice points at the later expression.
    let q = "rate(temp[5m]) + rate(temp[5m] offset 1m)";
    let later = q.rfind("temp").map(|i| format!("(1:{})", i + 1)).unwrap();
    assert_eq!(notes(&s, q).1, vec![format!("{NOT_COUNTER} \"temp\" {later}")]);
    let q = "rate({job=\"api\", __name__=~\"temp|reqs|http_requests_total\"}[5m])";
    let p = pos_of(q, "{job");
    assert_eq!(notes(&s, q).1, vec![format!("{NOT_COUNTER} \"reqs\" {p}"), format!("{NOT_COUNTER} \"temp\" {p}")]);
    // Subqueries keep the name of a selector.
    let q = "max_over_time(rate(temp[1m:15s])[5m:1m])";
    assert_eq!(notes(&s, q).1, vec![format!("{NOT_COUNTER} \"temp\" {}", pos_of(q, "temp"))]);
}

#[test]
fn quantile_parameters_outside_zero_to_one_are_warned_about() {
    let s = store();
    for (q, got, at) in [
        ("quantile(2, temp)", "2", "2"),
        ("quantile by (job) (NaN, temp)", "NaN", "NaN"),
        ("QUANTILE without (x) (-0.5, temp)", "-0.5", "-0.5"),
        ("sum(temp) + quantile(1e6, temp)", "1e+06", "1e6"),
        ("quantile_over_time(-1, temp[5m])", "-1", "-1"),
        ("quantile_over_time(2, (temp[5m]))", "2", "2"),
        ("quantile_over_time((2), (temp[5m]))", "2", "2)"),
        ("quantile((2), temp)", "2", "(2)"),
        ("histogram_quantile(1.5, rate(ok_bucket[5m]))", "1.5", "1.5"),
    ] {
        assert_eq!(notes(&s, q), (vec![format!("{BAD_QUANTILE} {got} {}", pos_of(q, at))], vec![]), "{q}");
    }
    for q in ["quantile(0.5, temp)", "quantile_over_time(1, temp[5m])", "histogram_quantile(0, rate(ok_bucket[5m]))"] {
        assert_eq!(notes(&s, q), (vec![], vec![]), "{q}");
    }
    // quantile_over_time warns only when a series has samples in its window (Prometheus does
    // not call the function otherwise); quantile warns even over nothing.
    assert_eq!(notes(&s, "quantile_over_time(2, nothing[5m])"), (vec![], vec![]));
    assert_eq!(notes(&s, "quantile(2, nothing)").0.len(), 1);
}

#[test]
fn classic_histogram_quantile_notes_bad_buckets_and_forced_monotonicity() {
    let s = store();
    let q = "histogram_quantile(0.5, rate(lat_bucket[5m]))";
    let info = format!(
        "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see \
         https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) {}",
        pos_of(q, "rate")
    );
    assert_eq!(notes(&s, q), (vec![], vec![info]));
    let q = "histogram_quantile(0.9, {__name__=~\"ok_bucket|odd_bucket\"})";
    let warning = format!(
        "PromQL warning: bucket label \"le\" is missing or has a malformed value of \"\" for metric name \"odd_bucket\" {}",
        pos_of(q, "{")
    );
    assert_eq!(notes(&s, q), (vec![warning], vec![]));
    assert_eq!(notes(&s, "histogram_quantile(0.9, rate(ok_bucket[5m]))"), (vec![], vec![]));
}

#[test]
fn range_queries_note_the_same_step_by_step_and_through_tables() {
    let s = store();
    for q in [
        "rate(temp[5m])",
        "sum(rate(temp[5m])) + sum(increase(reqs[5m]))",
        "rate(http_requests_total[5m]) * 2",
        "quantile_over_time(2, temp[5m])",
        "quantile_over_time(0.5, temp[5m])",
        "rate(temp[1s])",
        "histogram_quantile(0.5, rate(lat_bucket[5m]))",
        "quantile(-1, rate(temp[5m]))",
    ] {
        // max_cells 0: every step evaluated on its own; the default: tables where possible.
        let step_path = range_query_with(&s, q, 0, 600 * S, 60 * S, 0, QueryOptions::default()).unwrap().annotations;
        let tables = range_query_with(&s, q, 0, 600 * S, 60 * S, step_table::MAX_CELLS, QueryOptions::default()).unwrap().annotations;
        assert_eq!(step_path, tables, "{q}");
        let instant = instant_query(&s, q, 300 * S).unwrap().annotations;
        assert_eq!(tables, instant, "{q}: every step of this range has the instant's notes");
    }
    // A range where only some steps have a point still notes the metric.
    let q = "rate(temp[5m])";
    let late = range_query_with(&s, q, 540 * S, 1200 * S, 60 * S, step_table::MAX_CELLS, QueryOptions::default()).unwrap().annotations;
    assert_eq!(late.infos.len(), 1);
    let none = range_query_with(&s, q, 1000 * S, 1200 * S, 60 * S, step_table::MAX_CELLS, QueryOptions::default()).unwrap().annotations;
    assert!(none.infos.is_empty(), "no point, no note: {none:?}");
}

/// `limit_ratio` keeps the series Prometheus keeps. The expected sets come from xxHash64 as the
/// Python `xxhash` package computes it over Prometheus' label encoding (`name 0xff value 0xff`
/// in name order), offsets over 2^64: instance 0 → 0.3986, 1 → 0.2391, 2 → 0.9637,
/// 3 → 0.3974, 4 → 0.5711, 5 → 0.3057.
#[test]
fn limit_ratio_keeps_the_series_prometheus_keeps() {
    let mut s = MemStore::default();
    for i in 0..6 {
        s.add(&[("__name__", "http_requests"), ("instance", &i.to_string()), ("job", "api")], &[(0, i as f64)]);
    }
    let kept = |q: &str| -> Vec<f64> {
        let mut v: Vec<f64> = super::tests::vector(&s, q, 10 * S).into_iter().map(|(_, v)| v).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    assert_eq!(kept("limit_ratio(0.35, http_requests)"), vec![1.0, 5.0]);
    assert_eq!(kept("limit_ratio(0.4, http_requests)"), vec![0.0, 1.0, 3.0, 5.0]);
    assert_eq!(kept("limit_ratio(-0.5, http_requests)"), vec![2.0, 4.0]);
    assert_eq!(kept("limit_ratio by (instance) (0.4, http_requests)"), vec![0.0, 1.0, 3.0, 5.0], "groups choose alike");
    assert_eq!(kept("limit_ratio(0, http_requests)"), Vec::<f64>::new());
    // A ratio and its complement split the series.
    assert_eq!(kept("limit_ratio(0.4, http_requests) or limit_ratio(-0.6, http_requests)"), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(kept("limit_ratio(0.4, http_requests) and limit_ratio(-0.6, http_requests)"), Vec::<f64>::new());
    // Series keep their labels, name included.
    let v = super::tests::vector(&s, "limit_ratio(0.25, http_requests)", 10 * S);
    assert_eq!(v.len(), 1);
    assert!(v[0].0.contains("http_requests") && v[0].0.contains("instance=\"1\""), "{v:?}");
    // Out of range: capped, with Prometheus' warning; NaN fails.
    let q = "limit_ratio(1.5, http_requests)";
    assert_eq!(kept(q).len(), 6);
    let w = format!("PromQL warning: ratio value should be between -1 and 1, got 1.5, capping to 1 {}", pos_of(q, "1.5"));
    assert_eq!(notes(&s, q), (vec![w], vec![]));
    assert!(instant_query(&s, "limit_ratio(NaN, http_requests)", 10 * S).unwrap_err().to_string().contains("Ratio value is NaN"));
}
