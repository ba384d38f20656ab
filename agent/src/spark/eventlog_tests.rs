use std::io::Write;

use serde_json::Value;

use super::*;

const PLAIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spark/eventlog/local-1795353726210");
const ROLLING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spark/defaults-jsonlog/events/eventlog_v2_local-1795353581205");

/// Independent totals over the raw events, like `jq -s '[.[] | select(.Event == "SparkListenerTaskEnd")] …'`.
struct Expected {
    run_ms: f64,
    cpu_ns: f64,
    failed_tasks: u64,
    failed_stages: u64,
    peak: f64,
}

fn expected(lines: &str) -> Expected {
    let events: Vec<Value> = lines.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
    let of = |name: &'static str| events.iter().filter(move |e| e["Event"] == name);
    let metric = |e: &Value, k: &str| e["Task Metrics"][k].as_f64().unwrap_or(0.0);
    // Every executor-metrics object anywhere in the log (`jq '.. | objects | select(has("JVMHeapMemory"))'`).
    fn jvm_peaks(v: &Value, out: &mut Vec<f64>) {
        match v {
            Value::Object(m) => {
                if let (Some(h), Some(o)) = (m.get("JVMHeapMemory"), m.get("JVMOffHeapMemory")) {
                    out.push(h.as_f64().unwrap() + o.as_f64().unwrap());
                }
                m.values().for_each(|v| jvm_peaks(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| jvm_peaks(v, out)),
            _ => {}
        }
    }
    let mut peaks: Vec<f64> = of("SparkListenerTaskEnd").map(|e| metric(e, "Peak Execution Memory")).collect();
    events.iter().for_each(|e| jvm_peaks(e, &mut peaks));
    Expected {
        run_ms: of("SparkListenerTaskEnd").map(|e| metric(e, "Executor Run Time")).sum(),
        cpu_ns: of("SparkListenerTaskEnd").map(|e| metric(e, "Executor CPU Time")).sum(),
        failed_tasks: of("SparkListenerTaskEnd").filter(|e| e["Task Info"]["Failed"] == true).count() as u64,
        failed_stages: of("SparkListenerStageCompleted").filter(|e| !e["Stage Info"]["Failure Reason"].is_null()).count()
            as u64,
        peak: peaks.into_iter().fold(0.0, f64::max),
    }
}

#[test]
fn plain_fixture_matches_an_independent_sum_and_hand_checked_values() {
    let raw = std::fs::read_to_string(PLAIN).unwrap();
    let want = expected(&raw);
    let u = usage_of(Path::new(PLAIN)).unwrap();
    assert_eq!(u.app_id, "local-1795353726210");
    assert_eq!((u.app_name.as_str(), u.user.as_str()), ("spark-telemetry-probe", "root"));
    assert_eq!(u.task_run_time_ms, want.run_ms);
    assert_eq!(u.task_cpu_time_ns, want.cpu_ns);
    assert_eq!(u.failed_tasks, want.failed_tasks);
    assert_eq!(u.failed_stages, want.failed_stages);
    assert_eq!(u.peak_memory_bytes, want.peak);
    // Hand-checked with jq over the fixture: 93 task ends, run time 78532 ms, CPU 12696338850 ns,
    // 2 failed tasks (ExceptionFailure; the 2 TaskKilled are not failures), 2 failed stages
    // (20 and 21), peak JVM heap+off-heap 1549676392 bytes (a SparkListenerStageExecutorMetrics).
    assert_eq!((want.run_ms, want.cpu_ns, want.failed_tasks, want.failed_stages), (78_532.0, 12_696_338_850.0, 2, 2));
    assert_eq!(want.peak, 1_549_676_392.0);
    // One executor ("driver", 2 cores) from 1795353726465 until the app end 1795353797443:
    // 2 × 70.978 s.
    assert_eq!(u.executors_total(), 1);
    assert!((u.executor_core_seconds(0) - 141.956).abs() < 1e-9, "{}", u.executor_core_seconds(0));
    assert_eq!((u.start_ms, u.end_ms), (Some(1_795_353_722_395), Some(1_795_353_797_443)));
}

#[test]
fn rolling_zstd_directory_matches_an_independent_sum() {
    let part = Path::new(ROLLING).join("events_1_local-1795353581205.zstd");
    let raw = String::from_utf8(zstd::decode_all(std::fs::File::open(&part).unwrap()).unwrap()).unwrap();
    let want = expected(&raw);
    let u = usage_of(Path::new(ROLLING)).unwrap();
    assert_eq!(u.app_id, "local-1795353581205");
    // The job sets its app name itself, over `--name`.
    assert_eq!(u.app_name, "spark-telemetry-probe");
    // jq: 41 task ends, 28040 ms run time, 2487969017 ns CPU, 1 failed task, 1 failed stage.
    assert_eq!((want.run_ms, want.cpu_ns, want.failed_tasks, want.failed_stages), (28_040.0, 2_487_969_017.0, 1, 1));
    assert_eq!(u.task_run_time_ms, want.run_ms);
    assert_eq!(u.task_cpu_time_ns, want.cpu_ns);
    assert_eq!((u.failed_tasks, u.failed_stages), (1, 1));
    assert_eq!(u.peak_memory_bytes, want.peak);
    // "driver", 2 cores, 1795353581434 → 1795353617912: 2 × 36.478 s.
    assert!((u.executor_core_seconds(0) - 72.956).abs() < 1e-9);
}

#[test]
fn inprogress_file_is_read_incrementally_and_shipped_while_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let raw = std::fs::read_to_string(PLAIN).unwrap();
    let lines: Vec<&str> = raw.lines().collect();
    let path = dir.path().join("local-1795353726210.inprogress");
    let mut f = std::fs::File::create(&path).unwrap();
    // The first half, ending in the middle of a line.
    let half = lines.len() / 2;
    let mut first = lines[..half].join("\n");
    first.push('\n');
    first.push_str(&lines[half][..10]);
    f.write_all(first.as_bytes()).unwrap();
    let mut reader = EventLogReader::new(vec![dir.path().to_path_buf()]);
    let shipped = reader.poll();
    assert_eq!(shipped.len(), 1);
    assert_eq!(shipped[0].end_ms, None);
    let want_half = expected(&lines[..half].join("\n"));
    assert_eq!(shipped[0].task_run_time_ms, want_half.run_ms);
    // Running apps are re-shipped on every poll.
    assert_eq!(reader.poll().len(), 1);
    // The rest arrives; the app ends.
    let mut rest = lines[half][10..].to_string();
    rest.push('\n');
    rest.push_str(&lines[half + 1..].join("\n"));
    rest.push('\n');
    f.write_all(rest.as_bytes()).unwrap();
    let shipped = reader.poll();
    assert_eq!(shipped.len(), 1);
    assert_eq!(shipped[0].task_run_time_ms, 78_532.0);
    assert_eq!(shipped[0].end_ms, Some(1_795_353_797_443));
    // Ended and unchanged: nothing more to ship.
    assert!(reader.poll().is_empty());
    let samples = shipped[0].to_samples(&Labels::from_pairs([("cluster", "c1")]), 0);
    let get = |n: &str| samples.iter().find(|s| s.labels.metric_name() == Some(n)).unwrap();
    assert_eq!(get("spark_app_task_cpu_time_seconds_total").value, 12.69633885);
    assert_eq!(get("spark_app_end_timestamp_seconds").value, 1_795_353_797.443);
    assert_eq!(get("spark_app_failed_tasks_total").timestamp_ms, 1_795_353_797_443);
    assert_eq!(get("spark_app_executors_total").labels.get("spark_user"), Some("root"));
}

#[test]
fn directory_scan_finds_plain_and_rolling_logs_and_skips_other_codecs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(PLAIN, dir.path().join("local-1795353726210")).unwrap();
    let rolling = dir.path().join("eventlog_v2_local-1795353581205");
    std::fs::create_dir(&rolling).unwrap();
    for entry in std::fs::read_dir(ROLLING).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), rolling.join(entry.file_name())).unwrap();
    }
    std::fs::write(dir.path().join("app-1.lz4"), b"\x04\x22\x4d\x18").unwrap();
    let mut reader = EventLogReader::new(vec![dir.path().to_path_buf()]);
    let mut ids: Vec<String> = reader.poll().into_iter().map(|u| u.app_id).collect();
    ids.sort();
    assert_eq!(ids, ["local-1795353581205", "local-1795353726210"]);
    assert_eq!(reader.usage().count(), 2);
}
