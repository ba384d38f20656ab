use crate::{Labels, MetricMetadata};

/// One metric sample: a float value of a series at a millisecond timestamp.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Series labels, including `__name__`.
    pub labels: Labels,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value; Prometheus staleness markers are a specific NaN.
    pub value: f64,
}

impl Sample {
    /// Creates a sample.
    pub fn new(labels: Labels, timestamp_ms: i64, value: f64) -> Self {
        Sample { labels, timestamp_ms, value }
    }
}

/// One log record (a line, or a merged multi-line entry) with its stream labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Stream labels: identity (`cluster`, `namespace`, `pod`, `container`, …) and source labels.
    pub labels: Labels,
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The log line.
    pub body: String,
    /// Severity text where the format has one (empty when unknown).
    pub severity: String,
}

/// Decoded metric ingest: samples and the metadata of their families that came with them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsBatch {
    /// The samples.
    pub samples: Vec<Sample>,
    /// HELP/TYPE/UNIT of families (possibly repeated, possibly for families without samples).
    pub metadata: Vec<MetricMetadata>,
}
