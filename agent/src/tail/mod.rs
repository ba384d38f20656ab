//! Tailing Kubernetes container logs: [`files`] discovers and reads files, [`cri`] decodes lines
//! and merges partial ones, [`checkpoint`] persists offsets. [`run_tailer`] ties them to a sink
//! with end-to-end acknowledgement: offsets advance only after the sink has the batch.

pub mod checkpoint;
pub mod cri;
pub mod files;

use std::time::Duration;

use pharos_model::otlp::encode_logs;

pub use files::{Batch, FileKey, Tailer};

use crate::sink::{Signal, Sink};

/// Polls `tailer` every `poll_interval` (immediately again while batches come out full), ships
/// each batch through `sink`, and commits offsets after the sink acknowledged it. Runs until an
/// I/O task fails.
/// `labeler` adds `team` to records with a `namespace`.
pub async fn run_tailer(
    mut tailer: Tailer,
    poll_interval: Duration,
    sink: Sink,
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
        if !batch.records.is_empty() {
            let count = batch.records.len() as u64;
            let payload = encode_logs(&batch.records);
            // Acknowledged or rejected for good: either way these lines are done with.
            let delivery = sink.send(Signal::Logs, payload, count).await;
            tracing::debug!(records = count, ?delivery, "log batch delivered");
        }
        if !batch.advances.is_empty() {
            let advances = batch.advances;
            let (t, saved) = tokio::task::spawn_blocking(move || {
                let saved = tailer.commit(&advances);
                (tailer, saved)
            })
            .await?;
            tailer = t;
            if let Err(e) = saved {
                tracing::error!(error = %format!("{e:#}"), "cannot persist tail checkpoint");
            }
        }
        if !batch.full {
            tokio::time::sleep(poll_interval).await;
        }
    }
}
