//! Tailing Kubernetes container logs: [`files`] discovers and reads files, [`cri`] decodes lines
//! and merges partial ones, [`checkpoint`] holds offsets, [`rotated`] finds files the kubelet
//! rotated (or gzipped) while the agent was down, [`pipeline`] adds pod metadata and `team` and
//! runs the transforms. [`run_tailer`] ties them to the disk
//! buffer: offsets advance once a batch and its checkpoint are durably in the buffer.

pub mod checkpoint;
pub mod cri;
pub mod files;
pub mod multiline;
pub mod pipeline;
pub mod rotated;

use std::time::Duration;

use pharos_model::otlp::encode_logs;

pub use files::{Batch, FileKey, FilePosition, TailOptions, Tailer};
pub use pipeline::LogPipeline;

use crate::buffer::Buffer;

/// Polls `tailer` every `poll_interval` (immediately again while batches come out full) and
/// appends each batch to the disk `buffer` together with the checkpoint it reaches, in one
/// durable write; offsets move in memory once the append returned. While the buffer is full
/// the append waits, so no file is read further. `pipeline` adds pod metadata and `team` and
/// runs the transforms; records it drops still move the checkpoint. Runs until an I/O task
/// fails.
pub async fn run_tailer(
    mut tailer: Tailer,
    poll_interval: Duration,
    buffer: Buffer,
    mut pipeline: LogPipeline,
) -> anyhow::Result<()> {
    loop {
        let (t, batch) = tokio::task::spawn_blocking(move || {
            tailer.discover();
            let batch = tailer.read_batch();
            (tailer, batch)
        })
        .await?;
        tailer = t;
        let mut batch = batch;
        if !batch.records.is_empty() {
            pipeline.await_metadata(&batch.records).await;
            let (p, records) = tokio::task::spawn_blocking(move || {
                let records = pipeline.process(batch.records);
                (pipeline, records)
            })
            .await?;
            pipeline = p;
            batch.records = records;
        }
        if !batch.records.is_empty() || !batch.advances.is_empty() {
            let count = batch.records.len() as u64;
            let checkpoint = tailer.checkpoint_after(&batch.advances);
            let payload = (!batch.records.is_empty()).then(|| encode_logs(&batch.records));
            let seq = buffer.append_logs(payload, count, &checkpoint).await;
            tailer.advance(&batch.advances);
            tracing::debug!(records = count, seq, "log batch buffered");
        }
        if !batch.full {
            tokio::time::sleep(poll_interval).await;
        }
    }
}
