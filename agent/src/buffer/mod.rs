//! The agent's bounded on-disk buffer between the sources and the sink (Vector's disk buffer is
//! the model).
//!
//! - [`Buffer`]: sources append (metrics payloads, log payloads with the tail checkpoint they
//!   reach); an append returns once the record is fsynced, and waits while the buffer holds
//!   [`BufferConfig::max_bytes`] of unacknowledged records — backpressure, never a drop.
//! - [`BufferReader`] and [`run_forwarder`]: read records in sequence order, send them through
//!   the [`crate::sink::Sink`], and persist the read position after the sink acknowledged.
//! - On disk under `<data_dir>/buffer/`: segment files of length + crc32 + sequence-numbered
//!   records ([`record`], [`segment`]) and `position.json` ([`position`]). Torn records at the
//!   end are cut on open, and reading resumes after the persisted position.
//!
//! Crash consistency with the tailer: a log record carries the tail checkpoint that holds once
//! its lines are read, so "the lines are buffered" and "the checkpoint moved" are one fsynced
//! write. On open, the newest checkpoint by sequence number — from a stored record, or from the
//! position (which keeps the checkpoint of the last acknowledged record) — is where tailing
//! resumes. A crash at any point neither repeats nor loses lines between files and buffer.
//!
//! ```no_run
//! # async fn demo(sink: pharos_agent::sink::Sink) -> anyhow::Result<()> {
//! use pharos_agent::buffer::{Buffer, BufferConfig, run_forwarder};
//! use pharos_agent::sink::Signal;
//! let metrics = pharos_agent::telemetry::AgentMetrics::new();
//! let opened = Buffer::open("agent-data/buffer".as_ref(), &BufferConfig::default(), metrics)?;
//! let (_stop, stop_rx) = tokio::sync::watch::channel(false);
//! tokio::spawn(run_forwarder(opened.reader, sink, stop_rx));
//! opened.buffer.append(Signal::Metrics, vec![/* OTLP protobuf */], 1).await;
//! # Ok(()) }
//! ```

mod config;
mod disk;
mod forward;
pub mod position;
pub mod record;
pub mod segment;

pub use config::BufferConfig;
pub use disk::{Buffer, BufferReader, OpenedBuffer};
pub use forward::run_forwarder;

/// Subdirectory of `data_dir` holding the buffer.
pub const BUFFER_DIR: &str = "buffer";

#[cfg(test)]
mod tests;
