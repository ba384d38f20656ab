use std::io::Write;
use std::time::Duration;

use super::*;
use crate::tail::run_tailer;
use crate::telemetry::AgentMetrics;
use crate::test_support::{buffer_to_http, collector};

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let container = root.join("pods/shop_web-0_1f2e-33/app");
    std::fs::create_dir_all(&container).unwrap();
    let data = root.join("data");
    Fixture { log: container.join("0.log"), root, data, _dir: dir }
}

fn tailer(fx: &Fixture) -> Tailer {
    let glob = format!("{}/pods/*/*/*.log", fx.root.display());
    let base = vec![("cluster".to_string(), "c1".to_string()), ("node".to_string(), "n1".to_string())];
    Tailer::open(vec![glob], base, 100, &fx.data).unwrap()
}

fn poll(t: &mut Tailer) -> Batch {
    t.discover();
    t.read_batch()
}

fn bodies(b: &Batch) -> Vec<&str> {
    b.records.iter().map(|r| r.body.as_str()).collect()
}

#[test]
fn kubelet_paths_give_identity_labels() {
    let l = path_labels(Path::new("/var/log/pods/kube-system_coredns-5d_0a1b-2c/coredns/3.log"));
    assert_eq!(
        l,
        vec![
            ("namespace".to_string(), "kube-system".to_string()),
            ("pod".to_string(), "coredns-5d".to_string()),
            ("pod_uid".to_string(), "0a1b-2c".to_string()),
            ("container".to_string(), "coredns".to_string()),
        ]
    );
    assert_eq!(path_labels(Path::new("/var/log/syslog")), vec![("filename".to_string(), "/var/log/syslog".to_string())]);
    assert_eq!(path_labels(Path::new("/x/pods/not-three-parts/c/0.log"))[0].0, "filename");
}

#[test]
fn reads_complete_lines_merges_partials_and_labels_records() {
    let fx = fixture();
    append(&fx.log, "2024-05-01T12:00:00Z stdout F first\n2024-05-01T12:00:01Z stderr P par");
    let mut t = tailer(&fx);
    let b = poll(&mut t);
    assert_eq!(bodies(&b), ["first"], "the unterminated line waits");
    let r = &b.records[0];
    assert_eq!(r.timestamp_ns, 1_714_564_800_000_000_000);
    for (k, v) in [("cluster", "c1"), ("node", "n1"), ("namespace", "shop"), ("pod", "web-0"), ("pod_uid", "1f2e-33"), ("container", "app"), ("stream", "stdout")] {
        assert_eq!(r.labels.get(k), Some(v), "{k}");
    }
    t.commit(&b.advances).unwrap();

    // The P line is complete now but its entry is not: still nothing to ship.
    append(&fx.log, "t1\n");
    assert!(poll(&mut t).records.is_empty());
    append(&fx.log, "2024-05-01T12:00:02Z stderr F -done\nnot cri at all\n");
    let b = poll(&mut t);
    assert_eq!(bodies(&b), ["part1-done", "not cri at all"]);
    assert_eq!(b.records[0].labels.get("stream"), Some("stderr"));
    assert_eq!(b.records[1].labels.get("stream"), None);
    assert_eq!(b.advances, vec![(b.advances[0].0, FilePosition::at(std::fs::metadata(&fx.log).unwrap().len()))]);
}

#[test]
fn restart_resumes_after_acknowledged_lines_only() {
    let fx = fixture();
    append(&fx.log, "2024-05-01T12:00:00Z stdout F a\n2024-05-01T12:00:00Z stdout F b\n");
    let mut t = tailer(&fx);
    let b = poll(&mut t);
    assert_eq!(bodies(&b), ["a", "b"]);
    t.commit(&b.advances).unwrap();
    append(&fx.log, "2024-05-01T12:00:00Z stdout F c\n");
    // Read but never acknowledged (the agent dies before the sink answers).
    assert_eq!(bodies(&poll(&mut t)), ["c"]);
    drop(t);

    let mut restarted = tailer(&fx);
    let b = poll(&mut restarted);
    assert_eq!(bodies(&b), ["c"], "no loss, no repeat");
    restarted.commit(&b.advances).unwrap();
    drop(restarted);
    assert!(poll(&mut tailer(&fx)).records.is_empty());
}

#[test]
fn batch_limit_leaves_the_rest_for_the_next_batch() {
    let fx = fixture();
    let lines: String = (0..250).map(|i| format!("2024-05-01T12:00:00Z stdout F line{i}\n")).collect();
    append(&fx.log, &lines);
    let mut t = tailer(&fx);
    let mut seen = Vec::new();
    loop {
        let b = poll(&mut t);
        if b.records.is_empty() {
            break;
        }
        assert!(b.records.len() <= 100);
        seen.extend(b.records.iter().map(|r| r.body.clone()));
        t.commit(&b.advances).unwrap();
    }
    assert_eq!(seen, (0..250).map(|i| format!("line{i}")).collect::<Vec<_>>());
}

#[test]
fn truncation_restarts_at_zero() {
    let fx = fixture();
    append(&fx.log, "2024-05-01T12:00:00Z stdout F long old line\n");
    let mut t = tailer(&fx);
    let b = poll(&mut t);
    t.commit(&b.advances).unwrap();
    std::fs::OpenOptions::new().write(true).truncate(true).open(&fx.log).unwrap();
    append(&fx.log, "2024-05-01T12:00:00Z stdout F new\n");
    assert_eq!(bodies(&poll(&mut t)), ["new"]);
}

#[test]
fn rotation_by_rename_finishes_the_old_file_and_starts_the_new_one_at_zero() {
    let fx = fixture();
    append(&fx.log, "2024-05-01T12:00:00Z stdout F one\n");
    let mut t = tailer(&fx);
    let b = poll(&mut t);
    t.commit(&b.advances).unwrap();
    // A line lands, then the kubelet rotates: 0.log → 0.log.20240501 (outside the glob) and a
    // fresh 0.log (new inode) appears.
    append(&fx.log, "2024-05-01T12:00:01Z stdout F two\n");
    std::fs::rename(&fx.log, fx.log.with_extension("log.20240501")).unwrap();
    append(&fx.log, "2024-05-01T12:00:02Z stdout F three\n");
    let b = poll(&mut t);
    let mut got = bodies(&b);
    got.sort();
    assert_eq!(got, ["three", "two"]);
    t.commit(&b.advances).unwrap();
    assert_eq!(t.file_count(), 2);
    assert!(poll(&mut t).records.is_empty());
    assert_eq!(t.file_count(), 1, "the rotated file, read to the end, is forgotten");

    // Restart: the checkpoint holds the new file only, at its end.
    drop(t);
    let mut restarted = tailer(&fx);
    assert!(poll(&mut restarted).records.is_empty());
}

#[test]
fn rename_within_the_glob_continues_at_the_same_offset() {
    let fx = fixture();
    append(&fx.log, "2024-05-01T12:00:00Z stdout F one\n");
    let mut t = tailer(&fx);
    let b = poll(&mut t);
    t.commit(&b.advances).unwrap();
    drop(t);
    let moved = fx.log.with_file_name("1.log");
    std::fs::rename(&fx.log, &moved).unwrap();
    append(&moved, "2024-05-01T12:00:01Z stdout F two\n");
    let mut restarted = tailer(&fx);
    assert_eq!(bodies(&poll(&mut restarted)), ["two"], "same inode at a new path continues");
}

#[tokio::test]
async fn run_tailer_ships_through_the_buffer_and_resumes_from_its_checkpoint() {
    let fx = fixture();
    append(&fx.log, "2024-05-01T12:00:00Z stdout F hello\n2024-05-01T12:00:01Z stdout F world\n");
    let (url, mut received) = collector(vec![500]).await;
    let metrics = AgentMetrics::new();
    let buffer_dir = fx.data.join("buffer");
    let (buffer, forwarder) = buffer_to_http(&buffer_dir, &url, metrics.clone());
    let task = tokio::spawn(run_tailer(tailer(&fx), Duration::from_millis(10), buffer, Default::default()));
    let records = tokio::time::timeout(Duration::from_secs(10), received.logs.recv()).await.unwrap().unwrap();
    assert_eq!(records.iter().map(|r| r.body.as_str()).collect::<Vec<_>>(), ["hello", "world"]);
    assert_eq!(records[0].labels.get("pod"), Some("web-0"));
    task.abort();
    forwarder.abort();
    let _ = forwarder.await;
    assert_eq!(metrics.sink_retries.get(), 1);
    // The checkpoint lives in the buffer: a restarted tailer resuming from it reads nothing again.
    let size = std::fs::metadata(&fx.log).unwrap().len();
    let opened = crate::buffer::Buffer::open(&buffer_dir, &Default::default(), AgentMetrics::new()).unwrap();
    let cp = opened.tail_checkpoint.expect("a tail checkpoint in the buffer");
    assert_eq!(cp.files.iter().map(|f| f.offset).collect::<Vec<_>>(), [size]);
    let mut restarted = tailer(&fx);
    restarted.resume_from(&cp);
    assert!(poll(&mut restarted).records.is_empty());
}

fn remap_pipeline(source: &str, metrics: &AgentMetrics) -> crate::tail::LogPipeline {
    use crate::transform::{LogTransforms, RemapConfig, TransformConfig};
    let configs = [TransformConfig::Remap(RemapConfig { name: Some("noise".into()), ..RemapConfig::inline(source) })];
    let transforms = LogTransforms::build(&configs, Some(metrics)).unwrap();
    crate::tail::LogPipeline::new(None, Default::default(), transforms)
}

#[tokio::test]
async fn remap_drops_still_advance_the_checkpoint_and_nothing_repeats_after_restart() {
    let fx = fixture();
    append(
        &fx.log,
        "2024-05-01T12:00:00Z stdout F GET /healthz 200\n2024-05-01T12:00:01Z stdout F order 1 password=s3cret\n2024-05-01T12:00:02Z stdout F GET /healthz 200\n",
    );
    // A second container whose lines are all dropped: its offset must move too.
    let quiet = fx.root.join("pods/shop_web-0_1f2e-33/sidecar/0.log");
    std::fs::create_dir_all(quiet.parent().unwrap()).unwrap();
    append(&quiet, "2024-05-01T12:00:00Z stdout F GET /healthz 200\n");
    let program = r#"
        if contains(.message, "/healthz") { abort }
        .message = replace(.message, r'password=\S+', "password=***")
        .labels.pipeline = "remap"
    "#;
    let (url, mut received) = collector(vec![]).await;
    let metrics = AgentMetrics::new();
    let buffer_dir = fx.data.join("buffer");
    let (buffer, forwarder) = buffer_to_http(&buffer_dir, &url, metrics.clone());
    let pipeline = remap_pipeline(program, &metrics);
    let task = tokio::spawn(run_tailer(tailer(&fx), Duration::from_millis(10), buffer.clone(), pipeline));
    let records = tokio::time::timeout(Duration::from_secs(10), received.logs.recv()).await.unwrap().unwrap();
    assert_eq!(records.iter().map(|r| r.body.as_str()).collect::<Vec<_>>(), ["order 1 password=***"]);
    assert_eq!(records[0].labels.get("pipeline"), Some("remap"));
    // Both files were there before the first poll, so that one batch held all four lines: the
    // record arriving means the batch (and its checkpoint) went through the buffer.
    let sizes = [std::fs::metadata(&fx.log).unwrap().len(), std::fs::metadata(&quiet).unwrap().len()];
    let text = metrics.render();
    assert!(text.contains("pharos_agent_remap_dropped_total{transform=\"noise\"} 3"), "{text}");
    assert!(text.contains("pharos_agent_remap_errors_total{transform=\"noise\"} 0"), "{text}");
    task.abort();
    let _ = task.await;
    forwarder.abort();
    let _ = forwarder.await;
    drop(buffer);
    let opened = crate::buffer::Buffer::open(&buffer_dir, &Default::default(), AgentMetrics::new()).unwrap();
    let cp = opened.tail_checkpoint.clone().expect("a tail checkpoint in the buffer");
    let mut offsets: Vec<(PathBuf, u64)> = cp.files.iter().map(|f| (f.path.clone(), f.offset)).collect();
    offsets.sort();
    let mut expected = vec![(fx.log.clone(), sizes[0]), (quiet.clone(), sizes[1])];
    expected.sort();
    assert_eq!(offsets, expected);
    drop(opened);

    // Restart from that checkpoint with one new line: exactly that line comes out.
    append(&fx.log, "2024-05-01T12:00:03Z stdout F order 2\n");
    let mut restarted = tailer(&fx);
    restarted.resume_from(&cp);
    let b = poll(&mut restarted);
    let mut pipeline = remap_pipeline(program, &metrics);
    let out = pipeline.process(b.records);
    assert_eq!(out.iter().map(|r| r.body.as_str()).collect::<Vec<_>>(), ["order 2"]);
}

fn cri(i: usize) -> String {
    format!("2024-05-01T12:00:{i:02}Z stdout F line{i}\n")
}

/// Polls and commits until nothing more comes; the bodies in read order.
fn drain(t: &mut Tailer) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let b = poll(t);
        if b.records.is_empty() && b.advances.is_empty() {
            return out;
        }
        out.extend(b.records.iter().map(|r| r.body.clone()));
        t.commit(&b.advances).unwrap();
    }
}

/// Rotates like the kubelet while the agent is down: `0.log` → `0.log.<time>`, a fresh
/// `0.log`, and (with `gzip`) the rotated file compressed and deleted. Returns the rotated path.
fn rotate_while_down(fx: &Fixture, gzip: bool) -> PathBuf {
    let rotated = fx.log.with_file_name("0.log.20240501-120010");
    std::fs::rename(&fx.log, &rotated).unwrap();
    append(&fx.log, "2024-05-01T12:00:30Z stdout F fresh\n");
    if !gzip {
        return rotated;
    }
    let gz = rotated.with_file_name("0.log.20240501-120010.gz");
    let mut encoder = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    encoder.write_all(&std::fs::read(&rotated).unwrap()).unwrap();
    encoder.finish().unwrap();
    std::fs::remove_file(&rotated).unwrap();
    gz
}

#[test]
fn a_file_rotated_and_gzipped_while_the_agent_was_down_is_read_on_exactly_once() {
    for gzip in [true, false] {
        let fx = fixture();
        append(&fx.log, &(0..4).map(cri).collect::<String>());
        let mut t = tailer(&fx);
        assert_eq!(drain(&mut t), ["line0", "line1", "line2", "line3"]);
        // Six more lines land; the agent stops before reading them.
        append(&fx.log, &(4..10).map(cri).collect::<String>());
        drop(t);
        let rotated = rotate_while_down(&fx, gzip);

        // Restart with a small batch limit, and stop again in the middle of the rotated file.
        let glob = format!("{}/pods/*/*/*.log", fx.root.display());
        let base = vec![("cluster".to_string(), "c1".to_string())];
        let mut t = Tailer::open(vec![glob.clone()], base.clone(), 3, &fx.data).unwrap();
        let b = poll(&mut t);
        // Files go in path order: the fresh 0.log first, then the rotated one.
        assert_eq!(bodies(&b), ["fresh", "line4", "line5"], "gzip: {gzip}");
        assert!(b.records.iter().all(|r| r.labels.get("pod") == Some("web-0") && r.labels.get("container") == Some("app")));
        t.commit(&b.advances).unwrap();
        drop(t);
        let mut t = Tailer::open(vec![glob], base, 3, &fx.data).unwrap();
        assert_eq!(drain(&mut t), ["line6", "line7", "line8", "line9"], "gzip: {gzip}");
        assert_eq!(t.file_count(), 1, "the rotated file, read to the end, is forgotten");
        drop(t);
        assert!(drain(&mut tailer(&fx)).is_empty(), "nothing twice (gzip: {gzip})");
        assert!(rotated.exists());
        // The scratch copy of the compressed file is unlinked.
        let scratch = fx.data.join("gz-resume");
        assert!(!scratch.exists() || std::fs::read_dir(&scratch).unwrap().next().is_none());
    }
}

#[test]
fn a_gz_with_other_content_is_not_taken_for_the_checkpointed_file() {
    let fx = fixture();
    append(&fx.log, &(0..2).map(cri).collect::<String>());
    let mut t = tailer(&fx);
    assert_eq!(drain(&mut t), ["line0", "line1"]);
    append(&fx.log, &cri(2));
    drop(t);
    rotate_while_down(&fx, true);
    // Another rotated generation whose content differs: never read as the lost file.
    let other = fx.log.with_file_name("0.log.20240430-000000.gz");
    let mut encoder = flate2::write::GzEncoder::new(std::fs::File::create(&other).unwrap(), flate2::Compression::default());
    encoder.write_all(cri(50).as_bytes()).unwrap();
    encoder.finish().unwrap();
    assert_eq!(drain(&mut tailer(&fx)), ["fresh", "line2"]);
}

#[test]
fn an_inode_reused_by_other_content_is_read_from_the_start() {
    let fx = fixture();
    append(&fx.log, &(0..3).map(cri).collect::<String>());
    let mut t = tailer(&fx);
    assert_eq!(drain(&mut t), ["line0", "line1", "line2"]);
    drop(t);
    // Same path and inode, different first bytes, already longer than the old offset.
    std::fs::OpenOptions::new().write(true).truncate(true).open(&fx.log).unwrap();
    append(&fx.log, &(20..25).map(cri).collect::<String>());
    assert_eq!(drain(&mut tailer(&fx)), ["line20", "line21", "line22", "line23", "line24"]);
}
