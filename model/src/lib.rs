//! The Pharos data model and wire format.
//!
//! This crate owns what every other Pharos crate agrees on:
//! - [`Labels`]: a sorted, de-duplicated label set; the metric name travels as `__name__`.
//! - [`Sample`] and [`LogRecord`]: one metric point and one log line, each with its labels.
//! - [`identity`]: how OpenTelemetry resource attributes (`k8s.pod.name`, …) become the short
//!   identity labels Pharos stores (`pod`, …), per ARCHITECTURE.md decision 6.
//! - [`otlp`]: encoding samples/log records as OTLP `Export*ServiceRequest` protobuf (what the
//!   agent ships through Kafka or HTTP) and decoding OTLP protobuf or OTLP/JSON back.
//! - [`metadata`]: HELP/TYPE/UNIT of metric families ([`MetricMetadata`]), carried by
//!   remote_write, OTLP and the agent's exposition parser, served on `/api/v1/metadata`.
//! - [`sql`]: the [`SqlReader`] trait through which the query layer runs read-only SQL.
//! - [`team`]: the team mapping (namespace globs, pod label override) behind the `team` label.
//! - [`trino`]: Trino query-completed events → per-query samples (agent HTTP and Kafka listener).
//!
//! ```
//! use pharos_model::{Labels, Sample, otlp};
//! let s = Sample::new(Labels::from_pairs([("__name__", "up"), ("job", "node")]), 1_000, 1.0);
//! let wire = otlp::encode_metrics(&Labels::default(), &[s.clone()]);
//! let back = otlp::decode_metrics_protobuf(&wire).unwrap();
//! assert_eq!(back, vec![s]);
//! ```
#![warn(missing_docs)]

pub mod client_model;
pub mod env;
pub mod float;
pub mod histogram;
pub mod histogram_ops;
pub mod identity;
pub mod level;
mod labels;
pub mod metadata;
pub mod otlp;
pub mod remote_read;
pub mod remote_write;
pub mod remote_write_v2;
mod record;
pub mod select;
pub mod sql;
pub mod team;
pub mod trino;
pub mod write_view;
pub mod xor_chunk;

pub use histogram::FloatHistogram;
pub use labels::{Labels, METRIC_NAME};
pub use metadata::{FamilyIndex, MetricMetadata, MetricType};
pub use record::{HistogramSample, LogRecord, MetricsBatch, Sample, normalize_attributes};
pub use select::{Direction, Exemplar, HistogramSeries, LabelMatcher, LogGroup, LogSearch, LogSink, LogsReader, MetricsReader, Series, SeriesExemplars, SeriesSink, StreamStats};
pub use sql::SqlReader;

/// Errors of this crate: input that is not valid OTLP or remote_write.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not a valid protobuf message of the expected type.
    #[error("invalid OTLP protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The body is not valid OTLP/JSON.
    #[error("invalid OTLP/JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The message decoded but holds something Pharos cannot represent, or a remote_write
    /// request is malformed; the message names the protocol.
    #[error("{0}")]
    Content(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
