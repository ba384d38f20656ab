use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;
use pharos_model::LogRecord;
use crate::tail::{Batch, TailOptions, Tailer};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spark");

fn fixture_lines(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap();
    text.lines().map(str::to_string).collect()
}

/// `lines` as CRI lines of `stream`, timestamps one ms apart.
fn cri(lines: &[String], stream: &str) -> String {
    lines.iter().enumerate().map(|(i, l)| format!("2026-11-22T13:19:33.{i:09}Z {stream} F {l}\n")).collect()
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

struct Dir {
    _dir: tempfile::TempDir,
    glob: String,
    data: PathBuf,
    log: PathBuf,
}

fn dir() -> Dir {
    let dir = tempfile::tempdir().unwrap();
    let container = dir.path().join("pods/spark_driver-0_9a9a-1/spark");
    std::fs::create_dir_all(&container).unwrap();
    let glob = format!("{}/pods/*/*/*.log", dir.path().display());
    Dir { data: dir.path().join("data"), log: container.join("0.log"), glob, _dir: dir }
}

fn multiline(preset: MultilinePreset, start_pattern: Option<&str>) -> Multiline {
    let config = MultilineConfig {
        preset,
        start_pattern: start_pattern.map(str::to_string),
        flush_timeout_ms: 0,
        max_lines: 100_000,
    };
    config.build().unwrap()
}

fn tailer(d: &Dir, options: TailOptions, max_records: usize) -> Tailer {
    Tailer::open(vec![d.glob.clone()], Vec::new(), max_records, &d.data).unwrap().with_options(options)
}

fn poll(t: &mut Tailer) -> Batch {
    t.discover();
    t.read_batch()
}

/// Reads until two polls in a row bring nothing (a zero flush timeout flushes the last pending
/// record on the second look), committing each batch. With `restart`, every batch is read by a
/// fresh tailer resuming from the checkpoint the previous one saved.
fn drain(d: &Dir, options: &TailOptions, max_records: usize, restart: bool) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let mut t = tailer(d, options.clone(), max_records);
    let mut empty = 0;
    while empty < 2 {
        let b = poll(&mut t);
        if b.records.is_empty() && b.advances.is_empty() {
            empty += 1;
        } else {
            empty = 0;
        }
        t.commit(&b.advances).unwrap();
        out.extend(b.records);
        if restart && empty == 0 {
            t = tailer(d, options.clone(), max_records);
        }
    }
    out
}

fn expected_records(lines: &[String], start: &str) -> Vec<String> {
    // Independent of the tailer: split the fixture at every line matching `start`.
    let re = Regex::new(start).unwrap();
    let mut records: Vec<Vec<&str>> = Vec::new();
    for l in lines {
        match records.last_mut() {
            Some(r) if !re.is_match(l) => r.push(l),
            _ => records.push(vec![l]),
        }
    }
    records.into_iter().map(|r| r.join("\n")).collect()
}

#[test]
fn spark_log4j_driver_log_merges_java_and_python_stack_traces() {
    let lines = fixture_lines("driver.stderr.log");
    let d = dir();
    append(&d.log, &cri(&lines, "stderr"));
    let options = TailOptions { multiline: multiline(MultilinePreset::Spark, None), ..TailOptions::default() };
    let records = drain(&d, &options, 1000, false);

    let start = Regex::new(r"^\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} ").unwrap();
    let starts = lines.iter().filter(|l| start.is_match(l)).count();
    assert_eq!(starts, 1144, "fixture changed");
    // The two lines before the first log4j line form one record of their own.
    assert!(!start.is_match(&lines[0]));
    assert_eq!(records.len(), starts + 1);
    let bodies: Vec<&str> = records.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies, expected_records(&lines, r"^\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} "));
    assert_eq!(bodies.join("\n"), lines.join("\n"), "every line exactly once, in order");

    // The JVM failure: its log line, the exception and every `\tat` frame in one record.
    let jvm = bodies.iter().find(|b| b.contains("org.apache.spark.SparkRuntimeException: [USER_RAISED_EXCEPTION]")).unwrap();
    assert!(start.is_match(jvm), "the record starts at its log4j line");
    assert!(jvm.lines().skip(1).any(|l| l.starts_with("\tat ")));
    // The Python traceback inside the PythonException stays with its Java record.
    let py = bodies.iter().find(|b| b.contains("ValueError: probe: deliberate failure in python UDF")).unwrap();
    assert!(py.contains("Traceback (most recent call last):") && py.contains("\tat org.apache.spark.api.python"));
    assert!(py.starts_with("26/11/22 "));
    assert_eq!(records.iter().filter(|r| r.severity == "ERROR").count(), lines.iter().filter(|l| start.is_match(l) && l[18..].starts_with("ERROR ")).count());
    // The JVM's own `WARNING: …` line opening the file reads as a Python-style prefix: WARN too.
    let jvm_warning = usize::from(lines[0].starts_with("WARNING: "));
    let warns = lines.iter().filter(|l| start.is_match(l) && l[18..].starts_with("WARN ")).count();
    assert_eq!(records.iter().filter(|r| r.severity == "WARN").count(), warns + jvm_warning);
}

#[test]
fn spark_json_layout_driver_log_is_one_record_per_json_line() {
    let lines = fixture_lines("defaults-jsonlog/driver.stderr.log");
    let d = dir();
    append(&d.log, &cri(&lines, "stderr"));
    let options = TailOptions { multiline: multiline(MultilinePreset::Spark, None), ..TailOptions::default() };
    let records = drain(&d, &options, 1000, false);
    let json = lines.iter().filter(|l| l.starts_with("{\"ts\":")).count();
    let log4j = lines.iter().filter(|l| Regex::new(r"^\d{2}/\d{2}/\d{2} ").unwrap().is_match(l)).count();
    let bodies: Vec<&str> = records.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies, expected_records(&lines, SPARK_START));
    assert_eq!(records.len(), json + log4j + 1);
    let json_errors = lines.iter().filter(|l| l.contains("\"level\":\"ERROR\"")).count();
    assert!(json_errors > 0);
    assert_eq!(records.iter().filter(|r| r.body.starts_with('{') && r.severity == "ERROR").count(), json_errors);
}

#[test]
fn restarts_and_small_batches_with_interleaved_streams_lose_and_duplicate_nothing() {
    // stderr: the log4j driver log; stdout: the job's prints, interleaved line by line.
    let err = fixture_lines("driver.stderr.log");
    let out = fixture_lines("job.stdout.log");
    let d = dir();
    let mut text = String::new();
    for i in 0..err.len().max(out.len()) {
        if let Some(l) = err.get(i) {
            text.push_str(&cri(std::slice::from_ref(l), "stderr"));
        }
        if let Some(l) = out.get(i * 3) {
            text.push_str(&cri(std::slice::from_ref(l), "stdout"));
        }
    }
    append(&d.log, &text);
    let pattern = r"^(\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} |\[probe )";
    let options = TailOptions { multiline: multiline(MultilinePreset::None, Some(pattern)), ..TailOptions::default() };
    let stream = |records: &[LogRecord], s: &str| -> Vec<String> {
        records.iter().filter(|r| r.labels.get("stream") == Some(s)).map(|r| r.body.clone()).collect()
    };
    let out_sent: Vec<String> = out.iter().step_by(3).cloned().collect();
    let once = drain(&d, &options, 1000, false);
    assert_eq!(stream(&once, "stderr"), expected_records(&err, pattern));
    assert_eq!(stream(&once, "stdout"), expected_records(&out_sent, pattern));
    for max_records in [1, 7] {
        let d2 = dir();
        append(&d2.log, &text);
        let pieces = drain(&d2, &options, max_records, true);
        assert_eq!(stream(&pieces, "stderr"), stream(&once, "stderr"), "batch {max_records}");
        assert_eq!(stream(&pieces, "stdout"), stream(&once, "stdout"), "batch {max_records}");
    }
}

#[test]
fn pending_record_holds_the_checkpoint_until_it_completes() {
    let d = dir();
    let lines: Vec<String> = fixture_lines("driver.stderr.log");
    let jvm = lines.iter().position(|l| l.starts_with("org.apache.spark.SparkRuntimeException")).unwrap();
    let head = &lines[jvm - 1..jvm + 5]; // the log4j line and the first frames
    append(&d.log, &cri(head, "stderr"));
    let mut options = TailOptions { multiline: multiline(MultilinePreset::Spark, None), ..TailOptions::default() };
    options.multiline.flush_timeout = Duration::from_secs(3600);
    let mut t = tailer(&d, options.clone(), 100);
    let b = poll(&mut t);
    assert!(b.records.is_empty() && b.advances.is_empty(), "pending: nothing emitted, offset unmoved");
    // A restart re-reads the pending lines and continues the same record.
    drop(t);
    let rest = &lines[jvm + 5..jvm + 23];
    append(&d.log, &cri(rest, "stderr"));
    let size_before_next = std::fs::metadata(&d.log).unwrap().len();
    append(&d.log, &cri(&["26/11/22 13:20:00 INFO Next: record".to_string()], "stderr"));
    let mut t = tailer(&d, options, 100);
    let b = poll(&mut t);
    assert_eq!(b.records.len(), 1);
    assert_eq!(b.records[0].body, [head, rest].concat().join("\n"));
    assert_eq!(b.advances[0].1.offset, size_before_next, "the next record is still pending");
}

#[test]
fn python_preset_keeps_a_logged_traceback_with_its_log_line() {
    let d = dir();
    let text = "INFO:job:starting\nERROR:job:step failed\nTraceback (most recent call last):\n  File \"/opt/jobs/j.py\", line 3, in <module>\n    1 / 0\n    ~~^~~\nZeroDivisionError: division by zero\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"/opt/jobs/j.py\", line 5, in <module>\n    raise ValueError(\"bad\")\nValueError: bad\nWARNING:job:retrying\n";
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    append(&d.log, &cri(&lines, "stdout"));
    let options = TailOptions { multiline: multiline(MultilinePreset::Python, None), ..TailOptions::default() };
    let records = drain(&d, &options, 100, false);
    let bodies: Vec<&str> = records.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies, vec!["INFO:job:starting", &lines[1..14].join("\n"), "WARNING:job:retrying"]);
    let severities: Vec<&str> = records.iter().map(|r| r.severity.as_str()).collect();
    assert_eq!(severities, ["INFO", "ERROR", "WARN"]);

    // The job's stdout prints are not indented: one record per line.
    let out = fixture_lines("job.stdout.log");
    let d = dir();
    append(&d.log, &cri(&out, "stdout"));
    let records = drain(&d, &options, 100, false);
    assert_eq!(records.len(), out.iter().filter(|l| !l.starts_with([' ', '\t'])).count());
}

#[test]
fn long_records_are_truncated_and_counted() {
    let d = dir();
    append(&d.log, &cri(&["x".repeat(100), "short".to_string(), format!("é{}", "y".repeat(50))], "stdout"));
    let options = TailOptions { max_line_bytes: 20, ..TailOptions::default() };
    let records = drain(&d, &options, 100, false);
    let bodies: Vec<&str> = records.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies, [format!("{}{TRUNCATED_MARKER}", "x".repeat(20)), "short".into(), format!("é{}{TRUNCATED_MARKER}", "y".repeat(18))]);
    assert_eq!(options.truncated.get(), 2);
}

#[test]
fn rate_limit_delays_lines_and_never_drops_them() {
    let d = dir();
    let lines: Vec<String> = (0..12).map(|i| format!("line {i}")).collect();
    append(&d.log, &cri(&lines, "stdout"));
    let options = TailOptions { rate_limit_lines_per_s: 5, ..TailOptions::default() };
    let mut t = tailer(&d, options.clone(), 100);
    let started = Instant::now();
    let b = poll(&mut t);
    assert_eq!(b.records.len(), 5);
    t.commit(&b.advances).unwrap();
    let b = poll(&mut t);
    assert!(b.records.is_empty(), "throttled until the next second");
    assert!(options.throttled_seconds.get() > 0.0);
    let mut got = 5;
    while got < 12 {
        assert!(started.elapsed() < Duration::from_secs(10), "rate-limited lines never arrived");
        let b = poll(&mut t);
        t.commit(&b.advances).unwrap();
        got += b.records.len();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(got, 12);
    assert!(started.elapsed() >= Duration::from_secs(2), "12 lines at 5/s take more than 2 s");
}

#[test]
fn severity_from_each_format() {
    assert_eq!(severity("26/11/22 13:19:33 WARN Utils: Your hostname"), "WARN");
    assert_eq!(severity("26/11/22 13:19:33 ERROR Executor: Exception in task"), "ERROR");
    assert_eq!(severity("2024-05-01T12:00:00.123Z\tINFO\tmain\tio.trino.server.Server\t======== SERVER STARTED"), "INFO");
    assert_eq!(severity("ERROR:root:boom"), "ERROR");
    assert_eq!(severity("CRITICAL:app:down"), "FATAL");
    assert_eq!(severity(r#"{"ts":"2026-11-22T13:19:37.561Z","level":"WARN","msg":"x"}"#), "WARN");
    assert_eq!(severity("\tat org.apache.Foo"), "");
    assert_eq!(severity("Error: not a python level prefix"), "");
    assert_eq!(severity("[probe 15.44s] spark"), "");
}

#[test]
fn trino_preset_start_lines() {
    let m = multiline(MultilinePreset::Trino, None);
    assert!(m.is_start("2024-05-01T12:00:00.123Z\tINFO\tmain\tx", OpenState::default()));
    assert!(!m.is_start("\tat io.trino.Foo", OpenState::default()));
    assert!(!m.is_start("2024-05-01 12:00:00 no tab", OpenState::default()));
}

#[test]
fn bad_config_names_the_field() {
    let bad = MultilineConfig { start_pattern: Some("([".into()), ..MultilineConfig::default() };
    assert_eq!(bad.build().unwrap_err().0, "logs.multiline.start_pattern");
    let zero = MultilineConfig { preset: MultilinePreset::Spark, max_lines: 0, ..MultilineConfig::default() };
    assert_eq!(zero.build().unwrap_err().0, "logs.multiline.max_lines");
    let yaml = "preset: python\nflush_timeout_ms: 50\n";
    let c: MultilineConfig = serde_yaml::from_str(yaml).unwrap();
    assert_eq!((c.preset, c.flush_timeout_ms, c.max_lines), (MultilinePreset::Python, 50, 500));
    assert!(serde_yaml::from_str::<MultilineConfig>("presett: spark\n").is_err());
}
