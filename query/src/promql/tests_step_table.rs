//! Range queries with range function calls tabulated for all steps (see `step_table`) against
//! the step-by-step evaluation of the same queries, on inputs that exercise window edges.

use super::tests::{MemStore, S, stale};
use super::*;

/// Counters and gauges with staleness markers, resets, gaps, duplicate timestamps at window
/// edges, and series that start late or end early.
fn tricky_store() -> MemStore {
    let mut s = MemStore::default();
    // A counter every 15 s with a reset at 300 s and a staleness marker at 450 s, resuming at
    // 510 s.
    let mut c: Vec<(i64, f64)> = Vec::new();
    for i in 0..=60 {
        let t = i * 15 * S;
        if t == 450 * S {
            c.push((t, stale()));
        } else if !(465 * S..510 * S).contains(&t) {
            c.push((
                t,
                if t < 300 * S {
                    i as f64 * 3.0
                } else {
                    (i - 20) as f64
                },
            ));
        }
    }
    s.add(&[("__name__", "ctr"), ("job", "a"), ("instance", "1")], &c);
    // A counter appearing at 200 s and disappearing (stale) at 700 s, samples every 10 s on
    // multiples of the step so windows start and end exactly on samples.
    let late: Vec<(i64, f64)> = (20..=70)
        .map(|i| (i * 10 * S, if i == 70 { stale() } else { (i * i) as f64 }))
        .collect();
    s.add(
        &[("__name__", "ctr"), ("job", "a"), ("instance", "2")],
        &late,
    );
    // One sample only, and a series whose only sample is stale.
    s.add(
        &[("__name__", "ctr"), ("job", "b"), ("instance", "3")],
        &[(330 * S, 5.0)],
    );
    s.add(
        &[("__name__", "ctr"), ("job", "b"), ("instance", "4")],
        &[(330 * S, stale())],
    );
    // A gauge with NaN and irregular spacing.
    let g: Vec<(i64, f64)> = [0, 7, 31, 60, 61, 200, 260, 300, 420, 421, 600, 899]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                t * S,
                if i == 4 {
                    f64::NAN
                } else {
                    (i as f64 * 1.7).sin() * 10.0
                },
            )
        })
        .collect();
    s.add(
        &[("__name__", "gauge"), ("job", "b"), ("instance", "1")],
        &g,
    );
    // Same labels as ctr{instance="3"} once names are dropped, from 300 s on.
    let other: Vec<(i64, f64)> = (20..=40).map(|i| (i * 15 * S, i as f64)).collect();
    s.add(
        &[("__name__", "other"), ("job", "b"), ("instance", "3")],
        &other,
    );
    s
}

/// The result as comparable values (NaN compared by bits).
fn matrix(
    store: &MemStore,
    q: &str,
    start: i64,
    end: i64,
    step: i64,
    max_cells: usize,
) -> Vec<(String, Vec<(i64, u64)>)> {
    match range_query_with(store, q, start, end, step, max_cells, QueryOptions::default()) {
        Ok(r) => match r.value {
            Value::Matrix(m) => m
                .into_iter()
                .map(|s| {
                    (
                        s.labels.to_string(),
                        s.points.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
                    )
                })
                .collect(),
            other => panic!("{q}: expected a matrix, got {other:?}"),
        },
        Err(e) => vec![(format!("error: {e}"), Vec::new())],
    }
}

#[test]
fn tabulated_range_functions_equal_step_by_step_evaluation() {
    let s = tricky_store();
    let functions = [
        "rate",
        "increase",
        "delta",
        "irate",
        "idelta",
        "sum_over_time",
        "avg_over_time",
        "count_over_time",
        "present_over_time",
        "last_over_time",
        "first_over_time",
        "min_over_time",
        "max_over_time",
        "stdvar_over_time",
        "stddev_over_time",
        "changes",
        "resets",
        "deriv",
        "mad_over_time",
        "ts_of_min_over_time",
        "ts_of_max_over_time",
        "ts_of_first_over_time",
        "ts_of_last_over_time",
    ];
    let mut queries: Vec<String> = Vec::new();
    for f in functions {
        for sel in [
            "ctr[1m]",
            "ctr[45s]",
            "gauge[2m]",
            "{__name__=~\"ctr|gauge\"}[90s]",
            "ctr[1m] offset 2m",
            "ctr[5m] @ 400",
            "ctr[1m] offset -1m",
            "ctr[1m] @ end() offset 30s",
        ] {
            queries.push(format!("{f}({sel})"));
        }
    }
    queries.extend(
        [
            "quantile_over_time(0.3, ctr[2m])",
            "quantile_over_time((0.9), ctr[2m])",
            "predict_linear(ctr[2m], 60)",
            "predict_linear(ctr[2m] @ 300, 60)",
            "sum by (job) (rate(ctr[1m]))",
            "sum without (instance) (rate(ctr[1m]))",
            "avg(rate(ctr[1m]))",
            "count by (instance) (increase(ctr[2m]))",
            "max by (job) (delta(gauge[2m]) or delta(ctr[2m]))",
            "min(irate({__name__=~\"ctr|gauge\"}[1m]))",
            "group by (job) (changes(ctr[2m]))",
            "stddev(rate(ctr[1m]))",
            "stdvar by (job) (rate(ctr[1m]))",
            "quantile(0.5, rate(ctr[2m]))",
            "quantile by (job) (scalar(count(ctr)) / 4, rate(ctr[2m]))",
            "topk(1, rate(ctr[1m]))",
            "count_values(\"v\", count_over_time(ctr[1m]))",
            "sum(rate(ctr[1m])) / sum(rate(ctr[2m] offset 1m))",
            "-rate(ctr[1m]) * 2",
            "sum(sum_over_time(rate(ctr[1m])[2m:30s]))",
            "rate(ctr[1m]) > bool 0.1",
            // Collides after the name is dropped: an error at the steps where both are present.
            "rate({job=\"b\"}[10m])",
            "last_over_time({job=\"b\"}[10m])",
            "sum(rate({job=\"b\"}[10m]))",
            // Instant selectors and binary operations (see `binary::tabulate`).
            "ctr",
            "{__name__=~\"ctr|gauge\"}",
            "ctr offset 2m",
            "ctr @ 400",
            "gauge @ end() offset 30s",
            "1 - ctr / 100",
            "ctr * 2 > 10",
            "ctr > bool 10",
            "10 < ctr",
            "10 >= bool ctr",
            "2 ^ gauge",
            "atan2(ctr, 3) % 1",
            "ctr + other",
            "ctr != other",
            "ctr == bool ctr",
            "(ctr + 1) + ctr",
            "ctr / ctr{job=\"a\"} > 0.5",
            "ctr - on(job, instance) gauge",
            "ctr - ignoring(job) gauge",
            "rate(ctr[1m]) * 60 + ctr",
            "1 - rate(ctr[1m]) / ignoring(job) (gauge > 0)",
            "{__name__=\"ctr\" or __name__=\"gauge\"} * 2",
            "sum(ctr)",
            "sum by (job) (ctr * 2)",
            "avg without (instance) (ctr)",
            "max(ctr / other)",
            "topk(1, ctr)",
            "count_values(\"v\", ctr > bool 5)",
            "-ctr + 1",
            "sum(rate(ctr[1m])) / sum(gauge)",
            "sum by (job) (rate(ctr[1m])) * 2",
            "count(gauge) + sum(ctr)",
            "sum(sum by (job, instance) (ctr * 1.1))",
            "topk(1, sum by (instance) (ctr))",
            // Ties everywhere: `topk` keeps the group seen first at each step, which changes
            // while ctr{instance="1"} is stale.
            "topk(1, group by (instance) ({__name__=~\"ctr|gauge\"}))",
            "min by (instance) (ctr) - max by (instance) (ctr)",
            "group by (job) (ctr)",
            "avg(ctr * 1e308) * 0 + 1",
            "max(gauge)",
            "min by (job) ({__name__=~\"ctr|gauge\"})",
            "stddev(ctr) + count_values(\"x\", gauge > bool 0)",
            "scalar(gauge) * ctr",
            "ctr and gauge",
            // A many-to-one match at the steps where both sides are present.
            "ctr / on(job) gauge",
            "ctr / on(job) ctr{instance=\"1\"}",
            "ctr{instance=\"1\"} / on(job) ctr",
            // The same where result label sets differ (comparisons keep names).
            "{__name__=~\"ctr|other\", instance=\"3\"} > ignoring(job) ctr{job=\"b\"}",
            "ctr / on(job) group_left gauge",
            // Two series of one side with one signature, never present together.
            "{__name__=~\"ctr|other\", instance=\"3\"} + on(instance) ctr{job=\"b\"}",
            // Colliding once names are dropped, at the steps where both are present.
            "{__name__=~\"ctr|other\"} + 1",
            "{__name__=~\"ctr|other\"} > bool 1",
        ]
        .map(String::from),
    );
    for q in &queries {
        for (start, end, step) in [
            (0, 900 * S, 15 * S),
            (7 * S, 901 * S, 60 * S),
            (300 * S, 300 * S, 1),
            (-100 * S, 1000 * S, 11 * S),
        ] {
            assert_eq!(
                matrix(&s, q, start, end, step, step_table::MAX_CELLS),
                matrix(&s, q, start, end, step, 0),
                "{q} from {start} to {end} by {step}"
            );
        }
    }
}

/// How many calls of `q` are tabulated for the frame with tables of at most `max_cells`.
fn tabulated(store: &MemStore, q: &str, frame: Frame, max_cells: usize) -> usize {
    let expr = parse(q).unwrap();
    let fetched = Fetched::load(store, &expr, frame).unwrap();
    let mut tables = StepTables::new(max_cells);
    tables.build_rest(&expr, &fetched, frame, &Default::default(), &Default::default());
    tables.len()
}

#[test]
fn only_plain_range_function_calls_within_the_size_limit_are_tabulated() {
    let s = tricky_store();
    // 61 steps; 4 `ctr` series, 1 `gauge`.
    let frame = Frame {
        start_ms: 0,
        end_ms: 900 * S,
        step_ms: 15 * S,
        lookback_ms: LOOKBACK_MS,
    };
    let max = step_table::MAX_CELLS;
    assert_eq!(
        tabulated(
            &s,
            "sum(rate(ctr[1m])) / sum(rate((ctr[2m] offset 1m)))",
            frame,
            max
        ),
        2
    );
    assert_eq!(
        tabulated(&s, "quantile_over_time(0.5, ctr[1m])", frame, max),
        1
    );
    assert_eq!(
        tabulated(&s, "quantile_over_time(scalar(gauge), ctr[1m])", frame, max),
        0
    );
    assert_eq!(tabulated(&s, "rate(ctr[1m])[5m:1m]", frame, max), 0);
    assert_eq!(
        tabulated(&s, "max_over_time(rate(ctr[1m])[5m:1m])", frame, max),
        0
    );
    assert_eq!(tabulated(&s, "absent_over_time(ctr[1m])", frame, max), 0);
    assert_eq!(
        tabulated(&s, "rate({job=\"b\"}[10m])", frame, max),
        0,
        "colliding label sets"
    );
    // The limit is per table: ctr's is 4 × 61 cells, gauge's 61.
    let q = "rate(ctr[1m]) or rate(gauge[1m])";
    assert_eq!(tabulated(&s, q, frame, 4 * 61), 2);
    assert_eq!(tabulated(&s, q, frame, 4 * 61 - 1), 1);
    // Both ways agree when only one of them is tabulated.
    assert_eq!(
        matrix(&s, q, 0, 900 * S, 15 * S, 4 * 61 - 1),
        matrix(&s, q, 0, 900 * S, 15 * S, 0)
    );
}

/// How many selectors of `q` are streamed into tables from the store, and how many calls are
/// tabulated in all (the others from fetched data).
fn streamed(store: &MemStore, q: &str, frame: Frame, max_cells: usize) -> (usize, usize) {
    let expr = parse(q).unwrap();
    let memo = eval::LabelMemo::default();
    let mut tables = StepTables::new(max_cells);
    let streamed = tables.stream(store, &expr, frame, &memo, &Default::default()).unwrap();
    let n = streamed.selectors.len();
    let fetched = Fetched::load_except(store, &expr, frame, streamed.selectors, streamed.samples).unwrap();
    tables.build_rest(&expr, &fetched, frame, &memo, &Default::default());
    (n, tables.len())
}

#[test]
fn tables_stream_their_series_unless_the_table_cannot_be_built() {
    let s = tricky_store();
    let frame = Frame { start_ms: 0, end_ms: 900 * S, step_ms: 15 * S, lookback_ms: LOOKBACK_MS };
    let max = step_table::MAX_CELLS;
    assert_eq!(streamed(&s, "sum(rate(ctr[1m])) / sum(rate((ctr[2m] offset 1m)))", frame, max), (2, 2));
    assert_eq!(streamed(&s, "quantile_over_time(scalar(gauge), ctr[1m])", frame, max), (0, 0));
    assert_eq!(streamed(&s, "rate({job=\"b\"}[10m])", frame, max), (0, 0), "colliding label sets");
    assert_eq!(streamed(&s, "rate(ctr[1m]) or rate(gauge[1m])", frame, 4 * 61 - 1), (1, 1), "too large");
    // Alternatives of matchers are fetched, and tabulated from there.
    assert_eq!(streamed(&s, "rate({__name__=\"ctr\" or __name__=\"gauge\"}[1m])", frame, max), (0, 1));
    // Instant selectors that are operands of arithmetic, comparisons or aggregations, or the
    // whole query, stream as well; not set operators' or functions' arguments.
    assert_eq!(streamed(&s, "1 - ctr / gauge", frame, max), (2, 0));
    assert_eq!(streamed(&s, "sum(rate(ctr[1m])) / sum(gauge)", frame, max), (2, 1));
    assert_eq!(streamed(&s, "gauge offset 1m", frame, max), (1, 0));
    assert_eq!(streamed(&s, "ctr and gauge", frame, max), (0, 0));
    assert_eq!(streamed(&s, "timestamp(gauge) - abs(ctr)", frame, max), (0, 0));
    assert_eq!(streamed(&s, "ctr / on(job) group_left gauge", frame, max), (0, 0));
    // The samples streamed count as read, and towards the query's limit, like fetched ones.
    for q in ["sum(rate(ctr[1m])) / sum(rate((ctr[2m] offset 1m)))", "rate(ctr[1m]) + gauge"] {
        let read = |max_cells| range_query_with(&s, q, 0, 900 * S, 15 * S, max_cells, QueryOptions::default()).unwrap().stats.samples_read;
        assert_eq!(read(max), read(0), "{q}");
        assert!(read(max) > 0);
    }
}

/// The tables of instant selectors and binary operations `q` gets over `frame` from fetched
/// data (max cells as given).
fn derived(store: &MemStore, q: &str, frame: Frame, max_cells: usize) -> (usize, usize, usize) {
    let expr = parse(q).unwrap();
    let fetched = Fetched::load(store, &expr, frame).unwrap();
    let mut tables = StepTables::new(max_cells);
    tables.build_rest(&expr, &fetched, frame, &Default::default(), &Default::default());
    tables.derived()
}

#[test]
fn binary_operations_are_tabulated_only_where_no_step_can_fail() {
    let s = tricky_store();
    let frame = Frame { start_ms: 0, end_ms: 900 * S, step_ms: 15 * S, lookback_ms: LOOKBACK_MS };
    let max = step_table::MAX_CELLS;
    assert_eq!(derived(&s, "1 - ctr / gauge", frame, max), (2, 2, 0));
    assert_eq!(derived(&s, "(ctr > bool 1) * on(job, instance) (rate(ctr[1m]) + 0)", frame, max), (1, 3, 0));
    // An aggregation is a table where the order of its groups cannot matter: the whole query,
    // or an operand of an elementwise operation that is.
    assert_eq!(derived(&s, "sum(ctr * 2)", frame, max), (1, 1, 1));
    assert_eq!(derived(&s, "sum by (job) (ctr) / sum(ctr)", frame, max), (2, 1, 2));
    assert_eq!(derived(&s, "sum(sum by (job) (ctr))", frame, max), (1, 0, 0), "the inner sum is read in order");
    assert_eq!(derived(&s, "topk(1, sum by (job) (ctr))", frame, max), (1, 0, 0));
    assert_eq!(derived(&s, "quantile(0.5, ctr) + stddev(ctr)", frame, max), (2, 0, 0));
    // Two `ctr{job="b"}` series share the signature {job="b"}: a step where both are present
    // with `gauge` would fail, so the operation stays step by step.
    assert_eq!(derived(&s, "ctr / on(job) gauge", frame, max), (2, 0, 0));
    // The same on the right-hand side, even though `other` never meets a match.
    assert_eq!(derived(&s, "gauge / on(job) ctr", frame, max), (2, 0, 0));
    // Result label sets that could collide.
    assert_eq!(derived(&s, "{__name__=~\"ctr|other\"} + 1", frame, max), (1, 0, 0));
    assert_eq!(derived(&s, "{__name__=~\"ctr|other\"} > 1", frame, max), (1, 1, 0), "comparisons keep names");
    // Not elementwise: set operators, group modifiers; unary minus and function results are
    // not operands it takes.
    assert_eq!(derived(&s, "ctr or gauge", frame, max), (0, 0, 0));
    assert_eq!(derived(&s, "ctr * on(job) group_left gauge", frame, max), (0, 0, 0));
    assert_eq!(derived(&s, "-ctr * 2", frame, max), (0, 0, 0));
    assert_eq!(derived(&s, "abs(ctr) * 2", frame, max), (0, 0, 0));
    // The size limit: ctr's table is 4 × 61 cells.
    assert_eq!(derived(&s, "ctr * 2", frame, 4 * 61), (1, 1, 0));
    assert_eq!(derived(&s, "ctr * 2", frame, 4 * 61 - 1), (0, 0, 0));
    // The budget of a query: four times that in all (2 selector tables and 2 products fill it).
    assert_eq!(derived(&s, "ctr * 2 + ctr * 3", frame, max), (2, 3, 0));
    assert_eq!(derived(&s, "ctr * 2 + ctr * 3", frame, 4 * 61), (2, 2, 0));
    assert_eq!(
        matrix(&s, "ctr * 2 + ctr * 3", 0, 900 * S, 15 * S, 4 * 61),
        matrix(&s, "ctr * 2 + ctr * 3", 0, 900 * S, 15 * S, 0)
    );
}
