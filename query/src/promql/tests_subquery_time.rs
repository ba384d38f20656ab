//! Tests of subqueries, time and date functions, sorting, `absent_over_time`, `limitk` and
//! the other functions added for Prometheus' promqltest files (issue 3); values by hand over
//! [`store`]: `reqs{instance="a"}` is i at i·15s, `reqs{instance="b"}` 2i, `temp` 20.

use super::tests::{MemStore, S, err, pair, scalar, store, vector};
use super::*;

fn matrix(store: &MemStore, q: &str, t: i64) -> Vec<(String, Vec<(i64, f64)>)> {
    match instant_query(store, q, t).unwrap().value {
        Value::Matrix(m) => m
            .into_iter()
            .map(|s| (s.labels.to_string(), s.points))
            .collect(),
        other => panic!("{q}: expected matrix, got {other:?}"),
    }
}

/// A subquery's points count towards the query's sample limit, as in Prometheus: `x[30d:1ms]`
/// is refused instead of filling memory. `vector(1)` over (0, 200s] at 1 s steps is 200 points.
#[test]
fn subquery_points_count_towards_the_sample_limit() {
    let s = store();
    let q = "count_over_time(vector(1)[200s:1s])";
    let e = super::subquery::with_point_limit(199, || instant_query(&s, q, 200 * S)).unwrap_err().to_string();
    assert!(e.contains("too many samples"), "{e}");
    let ok = super::subquery::with_point_limit(200, || vector(&s, q, 200 * S));
    assert_eq!(ok, vec![pair("{}", 200.0)]);
    // Two series of 200 points: within a limit of 300 steps, past it in points.
    let two = r#"count_over_time((vector(1) or label_replace(vector(1), "a", "b", "", ""))[200s:1s])"#;
    let e = super::subquery::with_point_limit(300, || instant_query(&s, two, 200 * S)).unwrap_err().to_string();
    assert!(e.contains("too many samples"), "{e}");
    assert_eq!(super::subquery::with_point_limit(400, || vector(&s, two, 200 * S)).len(), 2);
}

/// A query past its timeout stops at the next step with a timeout error, in a range query's
/// steps and in a subquery's; within it, it answers.
#[test]
fn a_query_past_its_deadline_stops_at_the_next_step() {
    let s = store();
    let none = QueryOptions { timeout: std::time::Duration::ZERO, ..QueryOptions::default() };
    let q = r#"max_over_time(reqs{instance="a"}[2m:1m])"#;
    let e = range_query_with_options(&s, q, 0, 600 * S, 15 * S, none).unwrap_err();
    assert_eq!(e, Error::Timeout("query timed out in expression evaluation".into()));
    let e = instant_query_with_options(&s, q, 150 * S, none).unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e}");
    assert!(range_query_with_options(&s, q, 0, 600 * S, 15 * S, QueryOptions::default()).is_ok());
    // The deadline ends with its query: the next query on this thread has its own.
    assert_eq!(vector(&s, q, 150 * S), vec![pair(r#"{instance="a", job="api"}"#, 8.0)]);
}

#[test]
fn subqueries_evaluate_at_aligned_steps_in_a_left_open_window() {
    let s = store();
    // At 150s, [2m:1m] covers (30s, 150s]: steps 60s and 120s, where a is 4 and 8.
    assert_eq!(
        matrix(&s, r#"reqs{instance="a"}[2m:1m]"#, 150 * S),
        vec![(
            r#"reqs{instance="a", job="api"}"#.to_string(),
            vec![(60 * S, 4.0), (120 * S, 8.0)]
        )]
    );
    assert_eq!(
        vector(&s, r#"max_over_time(reqs{instance="a"}[2m:1m])"#, 150 * S),
        vec![pair(r#"{instance="a", job="api"}"#, 8.0)]
    );
    assert_eq!(
        vector(&s, r#"sum_over_time(reqs{instance="a"}[2m:1m])"#, 150 * S),
        vec![pair(r#"{instance="a", job="api"}"#, 12.0)]
    );
    // offset 1m moves the window to (-30s, 90s]: steps 0 and 60s, values 0 and 4.
    assert_eq!(
        vector(
            &s,
            r#"max_over_time(reqs{instance="a"}[2m:1m] offset 1m)"#,
            150 * S
        ),
        vec![pair(r#"{instance="a", job="api"}"#, 4.0)]
    );
    // Without a step, the default is 1m: (0, 180s] gives 60s, 120s, 180s.
    assert_eq!(
        vector(&s, r#"count_over_time(reqs{instance="a"}[3m:])"#, 180 * S),
        vec![pair(r#"{instance="a", job="api"}"#, 3.0)]
    );
}

#[test]
fn subquery_of_a_rate_and_in_a_range_query() {
    let s = store();
    // rate(a[1m]) at 60s: samples 1,2,3,4 at 15..60s, increase 3 over 45s, extrapolated 15s
    // to the window start (zero point 15s away, not closer): 4 over 60s = 1/15. The same at
    // 120s and 180s, so the sum over (0, 180s] is 3/15.
    let v = vector(
        &s,
        r#"sum_over_time(rate(reqs{instance="a"}[1m])[3m:1m])"#,
        180 * S,
    );
    assert_eq!(v.len(), 1);
    assert!((v[0].1 - 0.2).abs() < 1e-12, "{v:?}");
    // Range query 60s..120s step 60s of max over [1m:30s]: (0,60] → 2,4; (60,120] → 6,8.
    let r = range_query(
        &s,
        r#"max_over_time(reqs{instance="a"}[1m:30s])"#,
        60 * S,
        120 * S,
        60 * S,
    )
    .unwrap();
    let Value::Matrix(m) = r.value else { panic!() };
    assert_eq!(m[0].points, vec![(60 * S, 4.0), (120 * S, 8.0)]);
}

#[test]
fn date_functions_timestamp_and_frame_functions() {
    let s = store();
    assert_eq!(
        vector(&s, "hour(vector(1136239445))", 0),
        vec![pair("{}", 22.0)]
    );
    // Time 0 is Thursday 1970-01-01.
    assert_eq!(vector(&s, "day_of_week()", 0), vec![pair("{}", 4.0)]);
    assert_eq!(vector(&s, "days_in_month()", 0), vec![pair("{}", 31.0)]);
    // The last sample of a at 100s was written at 90s; a non-selector gets the eval time.
    assert_eq!(
        vector(&s, r#"timestamp(reqs{instance="a"})"#, 100 * S),
        vec![pair(r#"{instance="a", job="api"}"#, 90.0)]
    );
    assert_eq!(
        vector(&s, "timestamp(vector(1))", 100 * S),
        vec![pair("{}", 100.0)]
    );
    assert_eq!(scalar(&s, "step()", 5 * S), 0.0);
    assert_eq!(scalar(&s, "start()", 5 * S), 5.0);
    let r = range_query(
        &s,
        "step() + range() + start() + end()",
        10 * S,
        30 * S,
        10 * S,
    )
    .unwrap();
    let Value::Matrix(m) = r.value else { panic!() };
    // 10 + 20 + 10 + 30 = 70 at each step.
    assert_eq!(
        m[0].points,
        vec![(10 * S, 70.0), (20 * S, 70.0), (30 * S, 70.0)]
    );
    assert_eq!(scalar(&s, "max_of(2, 5)", 0), 5.0);
    assert!(scalar(&s, "min_of(3, NaN)", 0).is_nan());
}

#[test]
fn sort_by_label_uses_natural_order() {
    let mut s = MemStore::default();
    for i in ["a10", "a9", "a1"] {
        s.add(&[("__name__", "m"), ("i", i)], &[(0, 1.0)]);
    }
    let order = |q: &str| -> Vec<String> { vector(&s, q, 0).into_iter().map(|(l, _)| l).collect() };
    assert_eq!(
        order(r#"sort_by_label(m, "i")"#),
        [r#"m{i="a1"}"#, r#"m{i="a9"}"#, r#"m{i="a10"}"#]
    );
    assert_eq!(
        order(r#"sort_by_label_desc(m, "i")"#),
        [r#"m{i="a10"}"#, r#"m{i="a9"}"#, r#"m{i="a1"}"#]
    );
}

#[test]
fn absent_over_time_limitk_and_new_range_functions() {
    let s = store();
    assert_eq!(
        vector(&s, r#"absent_over_time(nope{job="x"}[1m])"#, 60 * S),
        vec![pair(r#"{job="x"}"#, 1.0)]
    );
    assert!(vector(&s, "absent_over_time(reqs[1m])", 60 * S).is_empty());
    assert_eq!(
        vector(&s, "absent_over_time(nope[1m:])", 60 * S),
        vec![pair("{}", 1.0)]
    );
    // limitk keeps the first k series of each group in label order.
    assert_eq!(
        vector(&s, "limitk(1, reqs)", 150 * S),
        vec![pair(r#"reqs{instance="a", job="api"}"#, 10.0)]
    );
    assert_eq!(
        vector(&s, "limitk by (instance) (1, reqs)", 150 * S).len(),
        2
    );
    let e = err(&s, "limitk(NaN, reqs)");
    assert!(matches!(e, Error::Execution(_)) && e.to_string().contains("Parameter value is NaN"));
    let e = err(&s, "limit_ratio(NaN, reqs)");
    assert!(matches!(e, Error::Execution(_)) && e.to_string().contains("Ratio value is NaN"));
    // b at 15..60s is 2,4,6,8: median 5, deviations 3,1,1,3, their median 2.
    assert_eq!(
        vector(&s, r#"mad_over_time(reqs{instance="b"}[1m])"#, 60 * S),
        vec![pair(r#"{instance="b", job="api"}"#, 2.0)]
    );
    // temp is constant: the first maximum in (0, 60s] is the sample at 15s.
    assert_eq!(
        vector(&s, "ts_of_max_over_time(temp[1m])", 60 * S),
        vec![pair(r#"{instance="a", job="api"}"#, 15.0)]
    );
}

#[test]
fn many_to_one_comparison_errors_even_when_filtered_out() {
    // Regression: `reqs > on(job) temp` answered an empty vector instead of the error.
    let s = store();
    let e = err(&s, "reqs > on(job) temp");
    assert!(
        matches!(e, Error::Execution(_)) && e.to_string().contains("multiple matches"),
        "{e}"
    );
}
