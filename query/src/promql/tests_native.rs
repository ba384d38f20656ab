//! Native histograms through the evaluator: a store of floats and histograms, expected values
//! worked out by hand from the histograms' counts and buckets.

use std::sync::Arc;

use pharos_model::histogram::Span;
use pharos_model::{FloatHistogram, HistogramSeries, Labels};

use super::tests::MemStore;
use super::*;

/// Schema 0, `n` observations in bucket 0 ((0.5, 1]) and `2n` in bucket 1 ((1, 2]), sum `4n`.
fn hist(n: f64) -> Arc<FloatHistogram> {
    Arc::new(FloatHistogram {
        count: 3.0 * n,
        sum: 4.0 * n,
        positive_spans: vec![Span { offset: 0, length: 2 }],
        positive_buckets: vec![n, 2.0 * n],
        ..Default::default()
    })
}

/// `rpc_seconds{job="a"}` grows by one hist(1) a minute from hist(1) at 0 to hist(11) at 10m;
/// `rpc_seconds{job="b"}` is hist(2) every minute; `up{job="a"}` is a float 1.
fn store() -> MemStore {
    let mut s = MemStore::default();
    let series = |job: &str, f: &dyn Fn(i64) -> f64| HistogramSeries {
        labels: Labels::from_pairs([("__name__", "rpc_seconds"), ("job", job)]),
        samples: (0..=10).map(|i| (i * 60_000, hist(f(i)))).collect(),
    };
    s.histograms.push(series("a", &|i| (i + 1) as f64));
    s.histograms.push(series("b", &|_| 2.0));
    s.add(&[("__name__", "up"), ("job", "a")], &(0..=10).map(|i| (i * 60_000, 1.0)).collect::<Vec<_>>());
    s
}

fn floats(r: &QueryResult) -> Vec<(String, f64)> {
    match &r.value {
        Value::Vector(v) => v.iter().map(|s| (s.labels.to_string(), s.value)).collect(),
        other => panic!("not a vector: {other:?}"),
    }
}

#[test]
fn histogram_functions_over_rates_sums_and_floats_around_them() {
    let s = store();
    // Over [8m, 10m] job a gains hist(1) a minute: increase over the 2 m window (samples at 9m
    // and 10m, extrapolated to the window's 2 minutes: ×2) is hist(2): count 6, sum 8.
    let r = instant_query(&s, "histogram_count(increase(rpc_seconds{job=\"a\"}[2m]))", 600_000).unwrap();
    assert_eq!(floats(&r), vec![("{job=\"a\"}".to_string(), 6.0)]);
    let r = instant_query(&s, "histogram_sum(rate(rpc_seconds[2m]))", 600_000).unwrap();
    // Per second: 8 / 120 for a; b does not grow.
    assert_eq!(floats(&r), vec![("{job=\"a\"}".to_string(), 8.0 / 120.0), ("{job=\"b\"}".to_string(), 0.0)]);
    // sum of both at 10m: hist(11) + hist(2) = hist(13): count 39; avg 19.5.
    let r = instant_query(&s, "histogram_count(sum(rpc_seconds))", 600_000).unwrap();
    assert_eq!(floats(&r), vec![("{}".to_string(), 39.0)]);
    let r = instant_query(&s, "histogram_count(avg(rpc_seconds))", 600_000).unwrap();
    assert_eq!(floats(&r), vec![("{}".to_string(), 19.5)]);
    // The median of hist(n): rank 1.5 of 3 observations falls in bucket (1, 2] (the second
    // to third observation), half a bucket in: exponential interpolation gives 2^0.25.
    let r = instant_query(&s, "histogram_quantile(0.5, rpc_seconds{job=\"b\"})", 600_000).unwrap();
    let q = floats(&r)[0].1;
    assert!((q - 2f64.powf(0.25)).abs() < 1e-12, "{q}");
    // A histogram function inside float arithmetic: the float evaluator does the rest.
    let r = instant_query(&s, "histogram_count(rpc_seconds) / on(job) group_left up", 600_000).unwrap();
    assert_eq!(floats(&r), vec![("{job=\"a\"}".to_string(), 33.0)]);
    let r = instant_query(&s, "sum(histogram_count(rpc_seconds)) > 40", 600_000).unwrap();
    assert!(floats(&r).is_empty(), "39 is not above 40");
    // count_values names a histogram by Prometheus' text of it: hist(2) has 2 observations in
    // (0.5, 1] and 4 in (1, 2].
    let r = instant_query(&s, "count_values(\"h\", rpc_seconds{job=\"b\"})", 600_000).unwrap();
    assert_eq!(floats(&r), vec![("{h=\"{count:6, sum:8, (0.5,1]:2, (1,2]:4}\"}".to_string(), 1.0)]);
    let r = instant_query(&s, "histogram_count(label_replace(rpc_seconds{job=\"b\"}, \"x\", \"$1-c\", \"job\", \"(.*)\"))", 600_000).unwrap();
    assert_eq!(floats(&r), vec![("{job=\"b\", x=\"b-c\"}".to_string(), 6.0)]);
    let e = instant_query(&s, "label_join(rpc_seconds, \"job\", \"\")", 600_000).unwrap_err().to_string();
    assert!(e.contains("same labelset"), "{e}");
    let r = instant_query(&s, "histogram_count(rpc_seconds) > 10", 600_000).unwrap();
    assert_eq!(floats(&r), vec![("{job=\"a\"}".to_string(), 33.0)], "no made-up name left on the labels");
}

#[test]
fn absent_sees_histogram_samples() {
    let s = store();
    for q in ["absent(rpc_seconds)", "absent(sum(rpc_seconds))", "absent_over_time(rpc_seconds{job=\"a\"}[1m])"] {
        assert!(floats(&instant_query(&s, q, 600_000).unwrap()).is_empty(), "{q}");
    }
    // 20 minutes after the last sample (past the 5 minute lookback and the 1 minute range).
    let r = instant_query(&s, "absent(rpc_seconds{job=\"a\"})", 1_800_000).unwrap();
    assert_eq!(floats(&r), vec![("{job=\"a\"}".to_string(), 1.0)]);
    let r = instant_query(&s, "absent_over_time(rpc_seconds{job=\"b\"}[1m])", 1_800_000).unwrap();
    assert_eq!(floats(&r), vec![("{job=\"b\"}".to_string(), 1.0)]);
}

#[test]
fn vector_matching_and_set_operators_carry_histograms() {
    let s = store();
    // At 10m: rpc_seconds{job="a"} is hist(11) (count 33), {job="b"} hist(2) (count 6), and
    // up{job="a"} is 1.
    let q = |q: &str| floats(&instant_query(&s, q, 600_000).unwrap_or_else(|e| panic!("{q}: {e}")));
    let one = |labels: &str, v: f64| vec![(labels.to_string(), v)];
    // `group_left` matches each histogram with up of its job: b has none.
    assert_eq!(q("histogram_count(rpc_seconds * on(job) group_left up)"), one("{job=\"a\"}", 33.0));
    assert_eq!(q("histogram_count(2 * rpc_seconds{job=\"b\"})"), one("{job=\"b\"}", 12.0));
    // Set operators match on all labels but the name, or the `on` labels.
    assert_eq!(q("histogram_count(rpc_seconds and on(job) up)"), one("{job=\"a\"}", 33.0));
    assert_eq!(q("histogram_count(rpc_seconds unless up)"), one("{job=\"b\"}", 6.0));
    // `or` keeps the left side's series and the right side's of other signatures: up{job="a"}
    // (a float, which histogram_count leaves out) and rpc_seconds{job="b"}.
    assert_eq!(q("count(up or rpc_seconds)"), one("{}", 2.0));
    assert_eq!(q("histogram_count(up or rpc_seconds)"), one("{job=\"b\"}", 6.0));
    // Histograms compare for equality, matched across jobs by `ignoring`: 11 ≠ 2.
    assert_eq!(q("rpc_seconds{job=\"a\"} == bool ignoring(job) rpc_seconds{job=\"b\"}"), one("{}", 0.0));
    assert_eq!(q("count(rpc_seconds == rpc_seconds)"), one("{}", 2.0));
    // A histogram is not compared with a number (an info, no result); a float is.
    assert!(q("count(rpc_seconds > 0)").is_empty());
    assert_eq!(q("count(up > 0)"), one("{}", 1.0));
    // Operands that read no histograms come from the float evaluator: `vector(1) == 1` keeps
    // both histograms, `scalar(up)` (1) asks for the highest bucket's upper bound, 2.
    assert_eq!(q("count((rpc_seconds) and on() (vector(1) == 1))"), one("{}", 2.0));
    assert!(q("count((rpc_seconds) and on() (vector(-1) == 1))").is_empty());
    assert_eq!(q("histogram_quantile(scalar(up), rpc_seconds{job=\"b\"})"), one("{job=\"b\"}", 2.0));
    assert_eq!(q("histogram_count(rpc_seconds{job=\"b\"} / on() group_left vector(2))"), one("{job=\"b\"}", 3.0));
    // Both jobs share the signature {} once `job` is ignored: many-to-many.
    let e = instant_query(&s, "rpc_seconds + ignoring(job) rpc_seconds", 600_000).unwrap_err().to_string();
    assert!(e.contains("many-to-many matching not allowed"), "{e}");
}

#[test]
fn subqueries_over_histograms() {
    let s = store();
    let q = |q: &str, t: i64| floats(&instant_query(&s, q, t).unwrap_or_else(|e| panic!("{q}: {e}")));
    // Steps 8m, 9m and 10m of job b: three times hist(2), count 6 each.
    assert_eq!(q("histogram_count(sum_over_time(rpc_seconds{job=\"b\"}[3m:1m]))", 600_000), vec![("{job=\"b\"}".to_string(), 18.0)]);
    // A float function over a subquery of a histogram function: counts 21..33 at 6m..10m.
    assert_eq!(q("max_over_time(histogram_count(rpc_seconds{job=\"a\"})[5m:1m])", 600_000), vec![("{job=\"a\"}".to_string(), 33.0)]);
    assert_eq!(q("min_over_time(histogram_count(rpc_seconds{job=\"a\"})[5m:1m] offset 2m)", 600_000), vec![("{job=\"a\"}".to_string(), 15.0)]);
    // The rate of job a over 2m is hist(1) per minute: count 3 / 60 per second at every step.
    let r = q("histogram_count(last_over_time(rate(rpc_seconds{job=\"a\"}[2m])[5m:1m]))", 600_000);
    assert_eq!(r.len(), 1);
    assert!((r[0].1 - 0.05).abs() < 1e-12, "{r:?}");
    // A part that reads no histograms (`sum by (job) (up)`, the float evaluator's) inside a
    // subquery is read over the subquery's times, back to 1m: the least count is hist(2)'s 6.
    let q2 = "min_over_time((histogram_count(rpc_seconds{job=\"a\"}) * on(job) group_left sum by (job) (up))[10m:1m])";
    assert_eq!(q(q2, 600_000), vec![("{job=\"a\"}".to_string(), 6.0)]);
    // The points of a subquery over histograms count towards the sample limit too: ten steps.
    for (limit, fails) in [(9, true), (10, false)] {
        for q in ["histogram_count(sum_over_time(rpc_seconds{job=\"b\"}[10m:1m]))", "max_over_time(histogram_count(rpc_seconds{job=\"b\"})[10m:1m])"] {
            let r = super::subquery::with_point_limit(limit, || instant_query(&s, q, 600_000));
            assert_eq!(r.as_ref().is_err_and(|e| e.to_string().contains("too many samples")), fails, "{q} with {limit}: {:?}", r.map(|r| r.value));
        }
    }
    // absent_over_time of a subquery: present at 10m; at 30m the rates' windows hold nothing.
    assert!(q("absent_over_time(rate(rpc_seconds[5m])[5m:1m])", 600_000).is_empty());
    assert_eq!(q("absent_over_time(rate(rpc_seconds[5m])[5m:1m])", 1_800_000), vec![("{}".to_string(), 1.0)]);
    // `timestamp` of a computed histogram is the evaluation time, of a sample its own time.
    assert_eq!(q("timestamp(rate(rpc_seconds{job=\"a\"}[2m]))", 630_000), vec![("{job=\"a\"}".to_string(), 630.0)]);
    assert_eq!(q("timestamp(rpc_seconds{job=\"a\"})", 630_000), vec![("{job=\"a\"}".to_string(), 600.0)]);
    // A float aggregation over a histogram expression ignores the histograms, with an info.
    let r = instant_query(&s, "topk(1, rate(rpc_seconds[2m]))", 600_000).unwrap();
    assert!(floats(&r).is_empty());
    assert!(r.annotations.infos.iter().any(|i| i.contains("ignored histogram in topk aggregation")), "{:?}", r.annotations.infos);
}

#[test]
fn limitk_and_limit_ratio_choose_histogram_series_as_float_ones() {
    let s = store();
    let jobs = |q: &str| -> Vec<String> {
        let r = instant_query(&s, q, 600_000).unwrap_or_else(|e| panic!("{q}: {e}"));
        let Value::Native { series, .. } = &r.value else { panic!("{:?}", r.value) };
        series.iter().map(|s| s.labels.get("job").unwrap().to_string()).collect()
    };
    // The first series by labels: job a; with `by (job)` each job is a group of one.
    assert_eq!(jobs("limitk(1, rpc_seconds)"), ["a"]);
    assert_eq!(jobs("limitk(scalar(up), rpc_seconds)"), ["a"]);
    assert_eq!(jobs("limitk(1, rpc_seconds) by (job)"), ["a", "b"]);
    // A ratio keeps a series by its label hash: 1 keeps all, and a ratio and its complement
    // split the series between them.
    assert_eq!(jobs("limit_ratio(1, rpc_seconds)"), ["a", "b"]);
    let mut split = jobs("limit_ratio(0.5, rpc_seconds)");
    split.extend(jobs("limit_ratio(-0.5, rpc_seconds)"));
    split.sort();
    assert_eq!(split, ["a", "b"]);
}

#[test]
fn sort_by_label_orders_histograms() {
    let s = store();
    let r = instant_query(&s, "sort_by_label_desc(rpc_seconds, \"job\")", 600_000).unwrap();
    let Value::Native { series, .. } = &r.value else { panic!("{:?}", r.value) };
    let jobs: Vec<&str> = series.iter().map(|s| s.labels.get("job").unwrap()).collect();
    assert_eq!(jobs, ["b", "a"]);
    assert_eq!(series[0].histograms[0].1.count, 6.0);
}

#[test]
fn what_is_not_evaluated_yet_says_so() {
    let s = store();
    for q in ["info(rpc_seconds)", "histogram_fraction(0, scalar(rpc_seconds), rpc_seconds)"] {
        let e = instant_query(&s, q, 600_000).unwrap_err().to_string();
        assert!(e.contains("native histogram") && e.contains("not supported yet"), "{q}: {e}");
    }
}

#[test]
fn custom_buckets_of_other_bounds_are_summed_on_the_shared_bounds() {
    let mut s = MemStore::default();
    let custom = |bounds: &[f64], buckets: &[f64]| {
        Arc::new(FloatHistogram {
            schema: pharos_model::histogram::CUSTOM_BUCKETS_SCHEMA,
            count: buckets.iter().sum(),
            positive_spans: vec![Span { offset: 0, length: buckets.len() as u32 }],
            positive_buckets: buckets.to_vec(),
            custom_values: bounds.to_vec(),
            ..Default::default()
        })
    };
    for (v, h) in [("1", custom(&[1.0, 5.0, 10.0], &[1.0, 2.0, 3.0, 4.0])), ("2", custom(&[5.0, 20.0], &[10.0, 20.0, 30.0]))] {
        s.histograms.push(HistogramSeries { labels: Labels::from_pairs([("__name__", "cb"), ("v", v)]), samples: vec![(0, h)] });
    }
    // On the shared bound 5: (≤5: 1+2, +Inf: 3+4) plus (10, 20+30) is (13, 57), so 13 of the
    // 70 observations are at most 5.
    let r = instant_query(&s, "histogram_fraction(0, 5, sum(cb))", 60_000).unwrap();
    let f = floats(&r);
    assert_eq!(f.len(), 1);
    assert!((f[0].1 - 13.0 / 70.0).abs() < 1e-12, "{f:?}");
    assert!(r.annotations.infos.iter().any(|i| i.starts_with("PromQL info: mismatched custom buckets were reconciled during aggregation")), "{:?}", r.annotations.infos);
}
