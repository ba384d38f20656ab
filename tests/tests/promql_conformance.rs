//! PromQL conformance against Prometheus' own promqltest files
//! (`../shared/conformance/promql/*.test`, relative to the repository root): each file runs
//! against fresh `pharos serve` processes over HTTP (see `pharos_e2e::promqltest`).
//!
//! The floors below are the pass rates measured when they were last raised: a file whose rate
//! drops below its floor is a regression. Raise a floor whenever the evaluator gains cases.
//! Native-histogram cases are counted apart, each file with a floor of cases passed of its own;
//! a case's annotations (warnings, infos) are checked where it states them. Re-run and see every failure with
//! `cargo nextest run -p pharos-e2e promql_conformance --no-capture`.

use pharos_e2e::promqltest::{render, run_dir};

/// `(file, cases passed, float cases)` when the floor was set; the floor is their ratio.
const FLOORS: &[(&str, u32, u32)] = &[
    // file              passed  float cases   (skipped native-histogram cases)
    ("aggregators.test", 125, 125), //          (35)
    ("functions.test", 323, 323),   //          (108)
    ("literals.test", 25, 25),      //          (0)
    ("operators.test", 142, 142),   //          (72)
    ("selectors.test", 31, 31),     //          (0)
];

/// `(file, native-histogram cases passed, native-histogram cases)` when the floor was set.
const HISTOGRAM_FLOORS: &[(&str, usize, usize)] = &[
    ("aggregators.test", 34, 35),
    ("functions.test", 108, 108),
    ("literals.test", 0, 0),
    ("operators.test", 72, 72),
    ("selectors.test", 0, 0),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_conformance() {
    let dir = pharos_e2e::repo_root().join("../shared/conformance/promql");
    if !dir.is_dir() {
        eprintln!(
            "SKIPPED: {} is absent (Prometheus' promqltest files are not checked out)",
            dir.display()
        );
        return;
    }
    let logs = tempfile::tempdir().expect("log dir");
    let reports = run_dir(&dir, logs.path())
        .await
        .expect("running the promqltest files");
    println!("{}", render(&reports));
    let mut low = Vec::new();
    for r in &reports {
        let floor = FLOORS
            .iter()
            .find(|(f, _, _)| *f == r.name)
            .map(|(_, passed, total)| f64::from(*passed) / f64::from(*total));
        match floor {
            Some(floor) if r.pass_rate() + 1e-9 >= floor => {}
            Some(floor) => low.push(format!(
                "{} below its floor {:.1}%",
                r.summary_line(),
                100.0 * floor
            )),
            None => low.push(format!("{}: no floor in FLOORS; add one", r.name)),
        }
        match HISTOGRAM_FLOORS.iter().find(|(f, _, _)| *f == r.name) {
            Some((_, passed, _)) if r.histograms_passed >= *passed => {}
            Some((_, passed, total)) => low.push(format!("{}: native histogram cases below their floor {passed}/{total}", r.summary_line())),
            None => low.push(format!("{}: no floor in HISTOGRAM_FLOORS; add one", r.name)),
        }
    }
    assert!(
        low.is_empty(),
        "PromQL conformance regressed:\n{}",
        low.join("\n")
    );
}
