use std::path::Path;
use std::time::Duration;

use super::segment::list_segments;
use super::*;
use crate::sink::Signal;
use crate::tail::checkpoint::{CHECKPOINT_VERSION, Checkpoint, FileCheckpoint};
use crate::telemetry::AgentMetrics;

fn open(dir: &Path, max_bytes: u64) -> (OpenedBuffer, AgentMetrics) {
    let metrics = AgentMetrics::new();
    (Buffer::open(dir, &BufferConfig { max_bytes }, metrics.clone()).unwrap(), metrics)
}

fn checkpoint(offset: u64) -> Checkpoint {
    Checkpoint {
        version: CHECKPOINT_VERSION,
        files: vec![FileCheckpoint { dev: 1, ino: 7, path: "/pods/a/0.log".into(), offset, emitted_through: [0; 3], fingerprint: None }],
    }
}

/// Reads `n` records (waiting for them) and returns their payloads, acknowledging them.
async fn read_and_ack(reader: &mut BufferReader, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(5), reader.next(n - out.len(), true)).await.unwrap().unwrap();
        for (r, size) in batch {
            let tail = (!r.tail.is_empty()).then(|| (r.seq, r.tail.clone()));
            reader.ack(r.seq, 1, size, tail).await;
            out.push(r.payload);
        }
    }
    out
}

fn payload(i: u32) -> Vec<u8> {
    format!("payload-{i}").into_bytes()
}

#[tokio::test]
async fn replays_unacknowledged_records_in_order_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut opened, metrics) = open(dir.path(), 1 << 20);
    for i in 0..5 {
        assert_eq!(opened.buffer.append(Signal::Metrics, payload(i), 1).await, u64::from(i));
    }
    assert_eq!(metrics.buffer_records.get(), 5);
    assert_eq!(read_and_ack(&mut opened.reader, 2).await, [payload(0), payload(1)]);
    assert_eq!(metrics.buffer_records.get(), 3);
    drop(opened);

    let (mut opened, metrics) = open(dir.path(), 1 << 20);
    assert_eq!(metrics.buffer_records.get(), 3);
    assert_eq!(opened.reader.acknowledged_before(), 2);
    assert_eq!(opened.buffer.append(Signal::Logs, payload(5), 1).await, 5, "sequence numbers continue");
    let got = read_and_ack(&mut opened.reader, 4).await;
    assert_eq!(got, [payload(2), payload(3), payload(4), payload(5)]);
    assert_eq!((metrics.buffer_records.get(), metrics.buffer_bytes.get()), (0, 0));
    assert!(opened.reader.next(10, false).await.unwrap().is_empty());
}

#[tokio::test]
async fn torn_record_at_the_end_is_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (opened, _) = open(dir.path(), 1 << 20);
    for i in 0..3 {
        opened.buffer.append(Signal::Metrics, payload(i), 1).await;
    }
    drop(opened);
    // A crash in the middle of the third append: only part of it reached the disk.
    let (_, path) = list_segments(dir.path()).unwrap().pop().unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 5).unwrap();

    let (mut opened, metrics) = open(dir.path(), 1 << 20);
    assert_eq!(metrics.buffer_records.get(), 2);
    assert_eq!(opened.buffer.append(Signal::Metrics, payload(9), 1).await, 2, "the torn record's number is reused");
    assert_eq!(read_and_ack(&mut opened.reader, 3).await, [payload(0), payload(1), payload(9)]);
}

#[tokio::test]
async fn a_full_buffer_makes_appends_wait_until_the_sink_acknowledges() {
    let dir = tempfile::tempdir().unwrap();
    let (mut opened, metrics) = open(dir.path(), 4096);
    let big = vec![7u8; 1500];
    opened.buffer.append(Signal::Logs, big.clone(), 1).await;
    opened.buffer.append(Signal::Logs, big.clone(), 1).await;
    let buffer = opened.buffer.clone();
    let third = tokio::spawn(async move { buffer.append(Signal::Logs, vec![8u8; 1500], 1).await });
    tokio::time::timeout(Duration::from_secs(5), async {
        while metrics.buffer_full.get() != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("backpressure shows in pharos_agent_buffer_full");
    assert!(!third.is_finished());
    assert_eq!(metrics.buffer_records.get(), 2);

    assert_eq!(read_and_ack(&mut opened.reader, 1).await, std::slice::from_ref(&big));
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), third).await.unwrap().unwrap(), 2);
    assert_eq!(metrics.buffer_full.get(), 0);
    assert!(metrics.buffer_blocked_seconds.get() > 0.0);
    assert_eq!(read_and_ack(&mut opened.reader, 2).await, [big, vec![8u8; 1500]]);
}

#[tokio::test]
async fn acknowledged_segments_are_deleted_and_the_position_persists() {
    let dir = tempfile::tempdir().unwrap();
    // 512 KiB → 64 KiB segments.
    let (mut opened, _) = open(dir.path(), 512 << 10);
    for i in 0..40u8 {
        opened.buffer.append(Signal::Metrics, vec![i; 10_000], 1).await;
    }
    assert!(list_segments(dir.path()).unwrap().len() >= 5);
    let got = read_and_ack(&mut opened.reader, 40).await;
    assert_eq!(got.iter().map(|p| p[0]).collect::<Vec<_>>(), (0..40u8).collect::<Vec<_>>());
    assert_eq!(list_segments(dir.path()).unwrap().len(), 1, "only the segment being written stays");
    drop(opened);
    let (mut opened, metrics) = open(dir.path(), 512 << 10);
    assert_eq!((metrics.buffer_records.get(), opened.reader.acknowledged_before()), (0, 40));
    assert!(opened.reader.next(10, false).await.unwrap().is_empty(), "nothing is replayed twice");
    assert!(list_segments(dir.path()).unwrap().is_empty(), "a fully acknowledged segment is deleted on open");
    assert_eq!(opened.buffer.append(Signal::Metrics, payload(1), 1).await, 40);
}

#[tokio::test]
async fn the_newest_tail_checkpoint_comes_back_from_records_or_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let (mut opened, _) = open(dir.path(), 1 << 20);
    assert_eq!(opened.tail_checkpoint, None);
    opened.buffer.append_logs(Some(payload(0)), 1, &checkpoint(100)).await;
    opened.buffer.append(Signal::Metrics, payload(1), 1).await;
    read_and_ack(&mut opened.reader, 2).await;
    // Crash right after the append returned, before the tailer moved on: the checkpoint is
    // already stored with the lines, so they are not read again.
    opened.buffer.append_logs(Some(payload(2)), 1, &checkpoint(200)).await;
    opened.buffer.append_logs(None, 0, &checkpoint(250)).await;
    drop(opened);
    let (mut opened, _) = open(dir.path(), 1 << 20);
    assert_eq!(opened.tail_checkpoint, Some(checkpoint(250)));
    // Checkpoint-only records are handed out (and acknowledged) like any other.
    assert_eq!(read_and_ack(&mut opened.reader, 2).await, [payload(2), vec![]]);
    opened.buffer.append(Signal::Metrics, payload(3), 1).await;
    drop(opened);
    // Once the records are acknowledged (and their segment may be gone), the position keeps it.
    for (_, path) in list_segments(dir.path()).unwrap() {
        std::fs::remove_file(path).unwrap();
    }
    let (opened, _) = open(dir.path(), 1 << 20);
    assert_eq!(opened.tail_checkpoint, Some(checkpoint(250)));
}

#[tokio::test]
async fn forwarder_sends_in_order_and_acknowledges_after_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut received) = crate::test_support::collector(vec![503, 503]).await;
    let metrics = AgentMetrics::new();
    let (buffer, forwarder) = crate::test_support::buffer_to_http(dir.path(), &url, metrics.clone());
    let resource = pharos_model::Labels::from_pairs([("cluster", "c")]);
    for i in 0..5 {
        let sample = pharos_model::Sample::new(pharos_model::Labels::from_pairs([("__name__", "m")]), 1000 + i, i as f64);
        buffer.append(Signal::Metrics, pharos_model::otlp::encode_metrics(&resource, &[sample]), 1).await;
    }
    let mut values = Vec::new();
    while values.len() < 5 {
        let samples = tokio::time::timeout(Duration::from_secs(10), received.metrics.recv()).await.unwrap().unwrap();
        values.extend(samples.iter().map(|s| s.value));
    }
    assert_eq!(values, [0.0, 1.0, 2.0, 3.0, 4.0]);
    tokio::time::timeout(Duration::from_secs(10), async {
        while metrics.buffer_records.get() != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    forwarder.abort();
    assert_eq!(metrics.sink_retries.get(), 2);
}
