//! `info()` and the `fill` modifiers of binary operators. Expected answers are worked out by
//! hand from Prometheus' rules (its `VectorBinop` and `info` evaluation), not taken from
//! Pharos' output.

use super::tests::{MemStore, S, pair, stale, vector};
use super::*;

fn sorted(mut v: Vec<(String, f64)>) -> Vec<(String, f64)> {
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn expect(store: &MemStore, q: &str, t: i64, want: &[(&str, f64)]) {
    let want: Vec<(String, f64)> = sorted(want.iter().map(|(l, v)| pair(l, *v)).collect());
    assert_eq!(sorted(vector(store, q, t)), want, "{q} at {t}");
}

/// A range query's series as (labels, points), in label order.
fn matrix(store: &MemStore, q: &str, start: i64, end: i64, step: i64) -> Vec<(String, Vec<(i64, f64)>)> {
    match range_query(store, q, start, end, step).unwrap().value {
        Value::Matrix(m) => m.into_iter().map(|s| (s.labels.to_string(), s.points)).collect(),
        other => panic!("{q}: expected a matrix, got {other:?}"),
    }
}

fn error(store: &MemStore, q: &str, t: i64) -> Error {
    match instant_query(store, q, t) {
        Err(e) => e,
        Ok(r) => panic!("{q}: expected an error, got {:?}", r.value),
    }
}

/// Every series holds one sample at 0.
fn fill_store() -> MemStore {
    let mut s = MemStore::default();
    for (labels, v) in [
        (&[("__name__", "l"), ("k", "a")][..], 1.0),
        (&[("__name__", "l"), ("k", "b")], 2.0),
        (&[("__name__", "l"), ("k", "c")], 3.0),
        (&[("__name__", "r"), ("k", "a")], 10.0),
        (&[("__name__", "r"), ("k", "b")], 20.0),
        (&[("__name__", "r"), ("k", "x")], 40.0),
        (&[("__name__", "req"), ("m", "get"), ("code", "200")], 5.0),
        (&[("__name__", "req"), ("m", "put"), ("code", "200")], 7.0),
        (&[("__name__", "req"), ("m", "get"), ("code", "500")], 1.0),
        (&[("__name__", "lim"), ("code", "200"), ("team", "t1")], 100.0),
        (&[("__name__", "lim"), ("code", "404"), ("team", "t2")], 50.0),
        (&[("__name__", "dup"), ("code", "200"), ("team", "a")], 1.0),
        (&[("__name__", "dup"), ("code", "200"), ("team", "b")], 2.0),
    ] {
        s.add(labels, &[(0, v)]);
    }
    s
}

#[test]
fn fill_gives_the_missing_side_of_one_to_one_matches_a_value() {
    let s = fill_store();
    // l: a=1 b=2 c=3; r: a=10 b=20 x=40.
    expect(&s, "l - fill(0) r", 0, &[("{k=\"a\"}", -9.0), ("{k=\"b\"}", -18.0), ("{k=\"c\"}", 3.0), ("{k=\"x\"}", -40.0)]);
    expect(&s, "l - fill_left(5) r", 0, &[("{k=\"a\"}", -9.0), ("{k=\"b\"}", -18.0), ("{k=\"x\"}", -35.0)]);
    expect(&s, "l - fill_right(5) r", 0, &[("{k=\"a\"}", -9.0), ("{k=\"b\"}", -18.0), ("{k=\"c\"}", -2.0)]);
    let both = [("{k=\"a\"}", -9.0), ("{k=\"b\"}", -18.0), ("{k=\"c\"}", 1.0), ("{k=\"x\"}", -39.0)];
    expect(&s, "l - fill_left(1) fill_right(2) r", 0, &both);
    expect(&s, "l - fill_right(2) fill_left(1) r", 0, &both);
    // A comparison keeps the left value, filled or not, and the name of a real left series;
    // a filled left element carries the match signature only.
    expect(&s, "l < fill(15) r", 0, &[("l{k=\"a\"}", 1.0), ("l{k=\"b\"}", 2.0), ("l{k=\"c\"}", 3.0), ("{k=\"x\"}", 15.0)]);
    expect(&s, "l > bool fill(2) r", 0, &[("{k=\"a\"}", 0.0), ("{k=\"b\"}", 0.0), ("{k=\"c\"}", 1.0), ("{k=\"x\"}", 0.0)]);
    // Without a match on either side nothing changes.
    expect(&s, "l{k=\"a\"} + fill(99) r{k=\"a\"}", 0, &[("{k=\"a\"}", 11.0)]);
    // `on`: the filled element carries only the `on` labels.
    expect(&s, "req + on(code) fill_left(0) lim{code=\"404\"}", 0, &[("{code=\"404\"}", 50.0)]);
}

#[test]
fn fill_with_an_empty_side() {
    let s = fill_store();
    expect(&s, "l + fill_right(0) nothing", 0, &[("{k=\"a\"}", 1.0), ("{k=\"b\"}", 2.0), ("{k=\"c\"}", 3.0)]);
    expect(&s, "l + fill_left(0) nothing", 0, &[]);
    expect(&s, "nothing + fill(7) r", 0, &[("{k=\"a\"}", 17.0), ("{k=\"b\"}", 27.0), ("{k=\"x\"}", 47.0)]);
    expect(&s, "nothing + fill(7) nothing", 0, &[]);
}

#[test]
fn fill_with_group_left_and_group_right() {
    let s = fill_store();
    // req: get/200=5 put/200=7 get/500=1; lim: 200=100 (t1), 404=50 (t2).
    expect(
        &s,
        "req / on(code) group_left fill_right(1) lim",
        0,
        &[("{code=\"200\", m=\"get\"}", 0.05), ("{code=\"200\", m=\"put\"}", 0.07), ("{code=\"500\", m=\"get\"}", 1.0)],
    );
    // `group_left(team)` copies `team` from the "one" side: a filled "one" side has none, a
    // filled "many" side takes the real one's.
    expect(
        &s,
        "req + on(code) group_left(team) fill(0) lim",
        0,
        &[
            ("{code=\"200\", m=\"get\", team=\"t1\"}", 105.0),
            ("{code=\"200\", m=\"put\", team=\"t1\"}", 107.0),
            ("{code=\"500\", m=\"get\"}", 1.0),
            ("{code=\"404\", team=\"t2\"}", 50.0),
        ],
    );
    // As in Prometheus, the fill values apply after `group_right` swapped the sides:
    // `fill_left` gives the "many" side (req, on the right) to an unmatched lim ...
    expect(
        &s,
        "lim * on(code) group_right fill_left(3) req",
        0,
        &[("{code=\"200\", m=\"get\"}", 500.0), ("{code=\"200\", m=\"put\"}", 700.0), ("{code=\"404\"}", 150.0)],
    );
    // ... and `fill_right` gives the "one" side (lim) to an unmatched req.
    expect(
        &s,
        "lim * on(code) group_right fill_right(3) req",
        0,
        &[("{code=\"200\", m=\"get\"}", 500.0), ("{code=\"200\", m=\"put\"}", 700.0), ("{code=\"500\", m=\"get\"}", 3.0)],
    );
}

#[test]
fn fill_errors() {
    let s = fill_store();
    let e = error(&s, "l and fill(0) r", 0);
    assert!(matches!(e, Error::BadData(_)) && e.to_string().contains("not allowed for set operators"), "{e}");
    // Two left series filled for one signature are a many-to-one match.
    let e = error(&s, "l + on(z) fill_right(0) nothing", 0);
    assert!(matches!(e, Error::Execution(_)) && e.to_string().contains("many-to-one matching must be explicit"), "{e}");
    // Two "many" series giving one result label set fail even when the comparison drops both
    // (`team` is overwritten by the "one" side's), as in Prometheus.
    let e = error(&s, "dup > on(code) group_left(team) lim", 0);
    assert!(e.to_string().contains("grouping labels must ensure unique matches"), "{e}");
}

#[test]
fn fill_in_range_queries_follows_each_step() {
    let mut s = MemStore::default();
    // il is present at 0 only (stale at 60); ir from 60 on.
    s.add(&[("__name__", "il"), ("k", "a")], &[(0, 1.0), (60 * S, stale())]);
    s.add(&[("__name__", "ir"), ("k", "a")], &[(60 * S, 10.0), (120 * S, 20.0)]);
    assert_eq!(
        matrix(&s, "il + fill(0) ir", 0, 120 * S, 60 * S),
        vec![("{k=\"a\"}".to_string(), vec![(0, 1.0), (60 * S, 10.0), (120 * S, 20.0)])]
    );
    assert_eq!(matrix(&s, "il + fill_right(0) ir", 0, 120 * S, 60 * S), vec![("{k=\"a\"}".to_string(), vec![(0, 1.0)])]);
}

/// Samples every minute from 0 to 10 minutes.
fn minutes(v: f64) -> Vec<(i64, f64)> {
    (0..=10).map(|i| (i * 60 * S, v)).collect()
}

fn info_store() -> MemStore {
    let mut s = MemStore::default();
    s.add(&[("__name__", "m"), ("instance", "a"), ("job", "j"), ("k", "v")], &minutes(2.0));
    s.add(&[("__name__", "m2"), ("instance", "a"), ("job", "other")], &minutes(5.0));
    s.add(&[("__name__", "m3"), ("instance", "a"), ("job", "j"), ("env", "base")], &minutes(7.0));
    s.add(&[("__name__", "m4"), ("instance", "a")], &minutes(9.0));
    s.add(&[("__name__", "target_info"), ("instance", "a"), ("job", "j"), ("env", "prod"), ("region", "eu")], &minutes(1.0));
    s.add(&[("__name__", "build_info"), ("instance", "a"), ("job", "j"), ("version", "1.2")], &minutes(1.0));
    s.add(&[("__name__", "host_info"), ("instance", "a"), ("os", "linux")], &minutes(1.0));
    s
}

#[test]
fn info_adds_the_data_labels_of_matching_info_series() {
    let s = info_store();
    let t = 60 * S;
    expect(&s, "info(m)", t, &[("m{env=\"prod\", instance=\"a\", job=\"j\", k=\"v\", region=\"eu\"}", 2.0)]);
    // Only the labels the selector names.
    expect(&s, "info(m, {env=~\".+\"})", t, &[("m{env=\"prod\", instance=\"a\", job=\"j\", k=\"v\"}", 2.0)]);
    // Another job: no info series, the series as it is.
    expect(&s, "info(m2)", t, &[("m2{instance=\"a\", job=\"other\"}", 5.0)]);
    // No info series, and a data matcher that needs a value: dropped.
    expect(&s, "info(m, {nope=~\".+\"})", t, &[]);
    expect(&s, "info(m2, {env=~\".+\"})", t, &[]);
    // A matcher that accepts the empty value is no reason to drop (nor to add).
    expect(&s, "info(m, {env=~\".+\", nope=~\".*\"})", t, &[("m{env=\"prod\", instance=\"a\", job=\"j\", k=\"v\"}", 2.0)]);
    // A label the series has already keeps its value.
    expect(&s, "info(m3)", t, &[("m3{env=\"base\", instance=\"a\", job=\"j\", region=\"eu\"}", 7.0)]);
    // A series lacking `job` joins an info series lacking it too (and not target_info).
    expect(&s, "info(m4, {__name__=~\".+_info\"})", t, &[("m4{instance=\"a\", os=\"linux\"}", 9.0)]);
    // ... unless another series being enriched has a `job`: as in Prometheus, an info series
    // must then have one of the jobs wanted.
    expect(
        &s,
        "info({__name__=~\"m|m4\"}, {__name__=~\".+_info\"})",
        t,
        &[
            ("m{env=\"prod\", instance=\"a\", job=\"j\", k=\"v\", region=\"eu\", version=\"1.2\"}", 2.0),
            ("m4{instance=\"a\"}", 9.0),
        ],
    );
}

#[test]
fn info_chooses_info_metrics_by_name() {
    let s = info_store();
    let t = 60 * S;
    expect(&s, "info(m, {__name__=\"build_info\"})", t, &[("m{instance=\"a\", job=\"j\", k=\"v\", version=\"1.2\"}", 2.0)]);
    expect(
        &s,
        "info(m, {__name__=~\".+_info\"})",
        t,
        &[("m{env=\"prod\", instance=\"a\", job=\"j\", k=\"v\", region=\"eu\", version=\"1.2\"}", 2.0)],
    );
    expect(&s, "info(m, {__name__=\"absent_info\"})", t, &[("m{instance=\"a\", job=\"j\", k=\"v\"}", 2.0)]);
    expect(&s, "info(m, {__name__=\"absent_info\", env=~\".+\"})", t, &[]);
    // Info series themselves are left as they are ...
    expect(&s, "info(build_info, {__name__=~\".+_info\"})", t, &[("build_info{instance=\"a\", job=\"j\", version=\"1.2\"}", 1.0)]);
    // ... unless some name matcher rejects them (every one must accept). host_info has no
    // `job`, which the series has: not joined.
    expect(
        &s,
        "info(build_info, {__name__=~\".+_info\", __name__!=\"build_info\"})",
        t,
        &[("build_info{env=\"prod\", instance=\"a\", job=\"j\", region=\"eu\", version=\"1.2\"}", 1.0)],
    );
    // Without a selector, target_info is the info metric and is left as it is.
    expect(
        &s,
        "info({job=\"j\"})",
        t,
        &[
            ("m{env=\"prod\", instance=\"a\", job=\"j\", k=\"v\", region=\"eu\"}", 2.0),
            ("m3{env=\"base\", instance=\"a\", job=\"j\", region=\"eu\"}", 7.0),
            ("target_info{env=\"prod\", instance=\"a\", job=\"j\", region=\"eu\"}", 1.0),
            ("build_info{env=\"prod\", instance=\"a\", job=\"j\", region=\"eu\", version=\"1.2\"}", 1.0),
        ],
    );
    // The second argument must be a label selector.
    let e = error(&s, "info(m, rate(m[5m]))", t);
    assert!(matches!(e, Error::BadData(_)), "{e}");
}

#[test]
fn info_conflicts_and_newest_info_series() {
    let mut s = MemStore::default();
    s.add(&[("__name__", "d"), ("instance", "a"), ("job", "j")], &minutes(10.0));
    s.add(&[("__name__", "target_info"), ("instance", "a"), ("job", "j"), ("state", "old")], &[(0, 1.0), (60 * S, 1.0)]);
    s.add(&[("__name__", "target_info"), ("instance", "a"), ("job", "j"), ("state", "new")], &[(90 * S, 1.0)]);
    s.add(&[("__name__", "other_info"), ("instance", "a"), ("job", "j"), ("state", "other")], &minutes(1.0));
    // At 120 s both target_info series are within the lookback: the newer sample wins.
    expect(&s, "info(d)", 60 * S, &[("d{instance=\"a\", job=\"j\", state=\"old\"}", 10.0)]);
    expect(&s, "info(d)", 120 * S, &[("d{instance=\"a\", job=\"j\", state=\"new\"}", 10.0)]);
    assert_eq!(
        matrix(&s, "info(d)", 0, 120 * S, 60 * S),
        vec![
            ("d{instance=\"a\", job=\"j\", state=\"new\"}".to_string(), vec![(120 * S, 10.0)]),
            ("d{instance=\"a\", job=\"j\", state=\"old\"}".to_string(), vec![(0, 10.0), (60 * S, 10.0)]),
        ]
    );
    // Two info metrics giving one label different values.
    let e = error(&s, "info(d, {__name__=~\"target_info|other_info\"})", 120 * S);
    assert!(matches!(e, Error::Execution(_)) && e.to_string().contains("conflicting label: state"), "{e}");
    // Two series of one info metric and identity with samples at the same time.
    s.add(&[("__name__", "target_info"), ("instance", "a"), ("job", "j"), ("state", "twin")], &[(90 * S, 1.0)]);
    let e = error(&s, "info(d)", 120 * S);
    assert!(e.to_string().contains("found duplicate series for info metric") && e.to_string().contains("@ 90000"), "{e}");
}

#[test]
fn info_reads_info_series_where_its_argument_reads() {
    let mut s = MemStore::default();
    s.add(&[("__name__", "d"), ("instance", "a"), ("job", "j")], &(0..=10).map(|i| (i * 60 * S, i as f64)).collect::<Vec<_>>());
    // The info series changes at 5 min.
    s.add(&[("__name__", "target_info"), ("instance", "a"), ("job", "j"), ("v", "1")], &(0..5).map(|i| (i * 60 * S, 1.0)).collect::<Vec<_>>());
    s.add(&[("__name__", "target_info"), ("instance", "a"), ("job", "j"), ("v", "2")], &(5..=10).map(|i| (i * 60 * S, 1.0)).collect::<Vec<_>>());
    // Pinned by `@`, `info(d @ 60)` is evaluated once, at the first step, for every step.
    assert_eq!(
        matrix(&s, "info(d @ 60)", 0, 600 * S, 300 * S),
        vec![("d{instance=\"a\", job=\"j\", v=\"1\"}".to_string(), vec![(0, 1.0), (300 * S, 1.0), (600 * S, 1.0)])]
    );
    // With a selector the call is evaluated at each step, but the info series are read only
    // over the times `d @ 60` reads (up to 60 s): at 600 s none is within the lookback.
    assert_eq!(
        matrix(&s, "info(d @ 60, {__name__=\"target_info\"})", 0, 600 * S, 300 * S),
        vec![
            ("d{instance=\"a\", job=\"j\"}".to_string(), vec![(600 * S, 1.0)]),
            ("d{instance=\"a\", job=\"j\", v=\"1\"}".to_string(), vec![(0, 1.0), (300 * S, 1.0)]),
        ]
    );
    // `offset` shifts where the info series are read, not when they are evaluated: at 600 s
    // (reading up to 540 s) the newest info series is v=2.
    expect(&s, "info(d offset 1m)", 600 * S, &[("d{instance=\"a\", job=\"j\", v=\"2\"}", 9.0)]);
}
