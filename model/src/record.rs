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

/// One log record (a line, or a merged multi-line entry) with its stream labels and its
/// per-record attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRecord {
    /// Stream labels: identity (`cluster`, `namespace`, `pod`, `container`, …) and source labels.
    pub labels: Labels,
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The log line.
    pub body: String,
    /// Severity text where the format has one (empty when unknown).
    pub severity: String,
    /// Per-record attributes (OTLP log-record attributes, Loki structured metadata): string
    /// pairs sorted by key, each key once (see [`normalize_attributes`]). Unlike labels they do
    /// not make a stream. Empty (no allocation) for most records.
    pub attributes: Vec<(String, String)>,
}

impl LogRecord {
    /// A record without attributes.
    pub fn new(labels: Labels, timestamp_ns: i64, body: impl Into<String>, severity: impl Into<String>) -> Self {
        LogRecord { labels, timestamp_ns, body: body.into(), severity: severity.into(), attributes: Vec::new() }
    }

    /// The value of attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.attributes[i].1.as_str())
    }
}

/// Sorts attribute pairs by key and keeps one pair per key (the last one given), the form
/// [`LogRecord::attributes`] holds.
pub fn normalize_attributes(mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    if pairs.len() < 2 {
        return pairs;
    }
    // Stable: for equal keys the later pair stays later, and is the one kept below.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
    for p in pairs {
        match out.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => out.push(p),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_sorted_last_key_wins_and_looked_up() {
        let pairs = vec![("b".to_string(), "1".to_string()), ("a".into(), "2".into()), ("b".into(), "3".into())];
        let r = LogRecord { attributes: normalize_attributes(pairs), ..LogRecord::default() };
        assert_eq!(r.attributes, vec![("a".to_string(), "2".to_string()), ("b".into(), "3".into())]);
        assert_eq!((r.attribute("a"), r.attribute("b"), r.attribute("c")), (Some("2"), Some("3"), None));
        assert_eq!(LogRecord::default().attributes.capacity(), 0, "no allocation without attributes");
    }
}

/// Decoded metric ingest: samples and the metadata of their families that came with them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsBatch {
    /// The samples.
    pub samples: Vec<Sample>,
    /// HELP/TYPE/UNIT of families (possibly repeated, possibly for families without samples).
    pub metadata: Vec<MetricMetadata>,
    /// Exemplars, each with the labels of the series it belongs to (OTLP data points carry them).
    pub exemplars: Vec<(Labels, crate::Exemplar)>,
    /// Native histogram samples (remote_write).
    pub histograms: Vec<HistogramSample>,
    /// OTLP exponential histogram data points received and not stored.
    pub dropped_histograms: u64,
}

/// One native histogram sample of a series.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSample {
    /// The series' labels, `__name__` included.
    pub labels: Labels,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The histogram (float counts).
    pub histogram: std::sync::Arc<crate::FloatHistogram>,
}
