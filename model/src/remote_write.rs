//! Prometheus remote_write 1.0: `WriteRequest` protobuf, snappy block-compressed.
//!
//! Only the fields Pharos stores are declared (labels, float samples, native histograms and
//! metric metadata); exemplars are skipped by this protobuf decoder (the in-place parser reads
//! them), and so are native histograms by [`decode`].
//! Prometheus sends metadata in requests of their own (`metadata_config.send_interval`, 1m by
//! default).
//!
//! The collector's ingest path parses requests with [`crate::write_view::WriteView`] (in place,
//! no owned label sets); the owned decoders here are the reference its tests compare against,
//! and what tools such as the benchmark use. The encoders serve tests and benchmarks.

use prost::Message;

use crate::{Error, Labels, MetricMetadata, MetricType, MetricsBatch, Result, Sample};

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// HELP/TYPE/UNIT of metric families.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<RemoteMetadata>,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, Message)]
pub struct RemoteMetadata {
    /// `prometheus.MetricMetadata.MetricType`: 0 unknown, 1 counter, 2 gauge, 3 histogram,
    /// 4 gaugehistogram, 5 summary, 6 info, 7 stateset.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The family name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// The HELP text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// The UNIT.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// The wire number of a metric type in `prometheus.MetricMetadata.MetricType`.
pub(crate) fn type_number(t: MetricType) -> i32 {
    match t {
        MetricType::Unknown => 0,
        MetricType::Counter => 1,
        MetricType::Gauge => 2,
        MetricType::Histogram => 3,
        MetricType::GaugeHistogram => 4,
        MetricType::Summary => 5,
        MetricType::Info => 6,
        MetricType::StateSet => 7,
    }
}

/// The metric type of a wire number; numbers this version does not know are `unknown`.
pub(crate) fn type_of_number(n: i32) -> MetricType {
    match n {
        1 => MetricType::Counter,
        2 => MetricType::Gauge,
        3 => MetricType::Histogram,
        4 => MetricType::GaugeHistogram,
        5 => MetricType::Summary,
        6 => MetricType::Info,
        7 => MetricType::StateSet,
        _ => MetricType::Unknown,
    }
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Labels, including `__name__`.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Float samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<RemoteSample>,
    /// Native histogram samples.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// `prometheus.Histogram` (1.0) and `io.prometheus.write.v2.Histogram` (2.0), the same
/// message: a native histogram sample, with integer bucket deltas or float counts (the members
/// of each `oneof` are optional fields here; set one of a pair). Read by
/// [`crate::histogram::parse_histogram`]; built for tests and tools by [`Histogram::float`].
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    /// Observations, integer histogram.
    #[prost(uint64, optional, tag = "1")]
    pub count_int: Option<u64>,
    /// Observations, float histogram.
    #[prost(double, optional, tag = "2")]
    pub count_float: Option<f64>,
    /// Sum of the observations.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// Bucket schema.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// Width of the zero bucket.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// Zero bucket count, integer histogram.
    #[prost(uint64, optional, tag = "6")]
    pub zero_count_int: Option<u64>,
    /// Zero bucket count, float histogram.
    #[prost(double, optional, tag = "7")]
    pub zero_count_float: Option<f64>,
    /// Negative bucket spans.
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// Negative bucket counts as deltas, integer histogram.
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// Negative bucket counts, float histogram.
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    /// Positive bucket spans.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// Positive bucket counts as deltas, integer histogram.
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// Positive bucket counts, float histogram.
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// 0 unknown, 1 reset, 2 no reset, 3 gauge.
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    /// Time, ms.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// Custom bucket bounds (schema -53).
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
}

/// `BucketSpan`.
#[derive(Clone, PartialEq, Message)]
pub struct BucketSpan {
    /// Gap to the previous span, or the first bucket's index.
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Buckets in the span.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

impl Histogram {
    /// The wire form of `h` at `timestamp` (ms), with float counts.
    pub fn float(timestamp: i64, h: &crate::FloatHistogram) -> Histogram {
        let spans = |s: &[crate::histogram::Span]| s.iter().map(|s| BucketSpan { offset: s.offset, length: s.length }).collect();
        Histogram {
            count_float: Some(h.count),
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count_float: Some(h.zero_count),
            negative_spans: spans(&h.negative_spans),
            negative_counts: h.negative_buckets.clone(),
            positive_spans: spans(&h.positive_spans),
            positive_counts: h.positive_buckets.clone(),
            reset_hint: h.counter_reset_hint as i32,
            timestamp,
            custom_values: h.custom_values.clone(),
            ..Default::default()
        }
    }
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct RemoteSample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Decompresses (snappy block format) and decodes a remote_write body into samples.
pub fn decode(snappy_body: &[u8]) -> Result<Vec<Sample>> {
    Ok(decode_batch(snappy_body)?.samples)
}

/// Decodes an uncompressed `WriteRequest` into samples.
pub fn decode_uncompressed(raw: &[u8]) -> Result<Vec<Sample>> {
    Ok(decode_batch_uncompressed(raw)?.samples)
}

/// Decompresses (snappy block format) and decodes a remote_write body into samples and metadata.
pub fn decode_batch(snappy_body: &[u8]) -> Result<MetricsBatch> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(snappy_body)
        .map_err(|e| Error::Content(format!("remote_write body is not snappy-compressed: {e}")))?;
    decode_batch_uncompressed(&raw)
}

/// Decodes an uncompressed `WriteRequest` into samples and metadata. Metadata without a family
/// name is an error, like a series without `__name__`.
pub fn decode_batch_uncompressed(raw: &[u8]) -> Result<MetricsBatch> {
    let req = WriteRequest::decode(raw)?;
    let mut out = Vec::new();
    for ts in req.timeseries {
        let labels = Labels::from_pairs(ts.labels.into_iter().map(|l| (l.name, l.value)));
        if labels.metric_name().is_none() {
            return Err(Error::Content(format!("remote_write series {labels} has no __name__")));
        }
        out.extend(ts.samples.into_iter().map(|s| Sample::new(labels.clone(), s.timestamp, s.value)));
    }
    let metadata = req
        .metadata
        .into_iter()
        .map(|m| {
            if m.metric_family_name.is_empty() {
                return Err(Error::Content("remote_write metadata without a metric_family_name".into()));
            }
            Ok(MetricMetadata {
                metric_family_name: m.metric_family_name,
                r#type: type_of_number(m.r#type),
                help: m.help,
                unit: m.unit,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(MetricsBatch { samples: out, metadata, exemplars: Vec::new(), histograms: Vec::new(), dropped_histograms: 0 })
}

/// Encodes samples as a snappy-compressed `WriteRequest` (for tests and benchmarks).
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    encode_with_metadata(samples, &[])
}

/// Encodes samples and metadata as a snappy-compressed `WriteRequest` (for tests).
pub fn encode_with_metadata(samples: &[Sample], metadata: &[MetricMetadata]) -> Vec<u8> {
    let req = WriteRequest {
        metadata: metadata
            .iter()
            .map(|m| RemoteMetadata {
                r#type: type_number(m.r#type),
                metric_family_name: m.metric_family_name.clone(),
                help: m.help.clone(),
                unit: m.unit.clone(),
            })
            .collect(),
        timeseries: samples
            .iter()
            .map(|s| TimeSeries {
                labels: proto_labels(&s.labels),
                samples: vec![RemoteSample { value: s.value, timestamp: s.timestamp_ms }],
                histograms: Vec::new(),
            })
            .collect(),
    };
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap_or_default()
}

/// A label set as `prometheus.Label` messages.
pub fn proto_labels(labels: &Labels) -> Vec<Label> {
    labels.iter().map(|(name, value)| Label { name: name.into(), value: value.into() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let s = Sample::new(Labels::from_pairs([("__name__", "up"), ("job", "node")]), 1234, 1.0);
        assert_eq!(decode(&encode(std::slice::from_ref(&s))).unwrap(), vec![s]);
        assert!(decode(b"not snappy at all").is_err());
        let nameless = Sample::new(Labels::from_pairs([("job", "x")]), 1, 1.0);
        let e = decode(&encode(&[nameless])).unwrap_err().to_string();
        assert!(e.contains("no __name__"), "{e}");
    }

    /// Bytes as Prometheus 2.42 writes a metadata-only request, built field by field from
    /// prompb/types.proto (not with this module's encoder): `WriteRequest.metadata` (3) holding
    /// `MetricMetadata{type=1 (COUNTER), metric_family_name=2, help=4, unit=5}`.
    #[test]
    fn decodes_prometheus_metadata_wire_bytes() {
        fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
            let mut v = vec![(tag << 3) | 2, bytes.len() as u8];
            v.extend_from_slice(bytes);
            v
        }
        let mut md = vec![1 << 3, 1]; // type = COUNTER
        md.extend(field(2, b"node_cpu_seconds_total"));
        md.extend(field(4, b"Seconds the CPUs spent in each mode."));
        let mut summary = vec![1 << 3, 5]; // type = SUMMARY, no help, with unit
        summary.extend(field(2, b"go_gc_duration_seconds"));
        summary.extend(field(5, b"seconds"));
        let mut req = field(3, &md);
        req.extend(field(3, &summary));
        let batch = decode_batch(&snap::raw::Encoder::new().compress_vec(&req).unwrap()).unwrap();
        assert!(batch.samples.is_empty());
        assert_eq!(
            batch.metadata,
            vec![
                MetricMetadata::new(
                    "node_cpu_seconds_total",
                    MetricType::Counter,
                    "Seconds the CPUs spent in each mode.",
                    ""
                ),
                MetricMetadata::new("go_gc_duration_seconds", MetricType::Summary, "", "seconds"),
            ]
        );
        // Every type number of the proto enum, through the encoder and back.
        let all: Vec<MetricMetadata> = (0..8)
            .map(|n| MetricMetadata::new(format!("m{n}"), type_of_number(n), "h", "u"))
            .collect();
        let names: Vec<&str> = all.iter().map(|m| m.r#type.as_str()).collect();
        assert_eq!(
            names,
            ["unknown", "counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset"]
        );
        assert_eq!(decode_batch(&encode_with_metadata(&[], &all)).unwrap().metadata, all);
        let nameless = encode_with_metadata(&[], &[MetricMetadata::default()]);
        assert!(decode_batch(&nameless).unwrap_err().to_string().contains("metric_family_name"));
    }
}
