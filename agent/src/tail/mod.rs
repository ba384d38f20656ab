//! Tailing Kubernetes container logs: [`files`] discovers and reads files, [`cri`] decodes lines
//! and merges partial ones, [`checkpoint`] holds offsets. [`run_tailer`] ties them to the disk
//! buffer: offsets advance once a batch and its checkpoint are durably in the buffer.

pub mod checkpoint;
pub mod cri;
pub mod files;
pub mod multiline;

use std::time::Duration;

use pharos_model::otlp::encode_logs;

pub use files::{Batch, FileKey, FilePosition, TailOptions, Tailer};

use crate::buffer::Buffer;

/// Polls `tailer` every `poll_interval` (immediately again while batches come out full) and
/// appends each batch to the disk `buffer` together with the checkpoint it reaches, in one
/// durable write; offsets move in memory once the append returned. While the buffer is full
/// the append waits, so no file is read further. `labeler` adds `team` to records with a
/// `namespace`. Runs until an I/O task fails.
pub async fn run_tailer(
    mut tailer: Tailer,
    poll_interval: Duration,
    buffer: Buffer,
    labeler: crate::teams::TeamLabeler,
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
        labeler.label_records(&mut batch.records);
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
