//! Prometheus' protobuf exposition format (`io.prometheus.client.MetricFamily`, the messages of
//! `client_model`'s `metrics.proto` that federation writes), and its length-delimited stream:
//! each message preceded by its length as a varint. A Prometheus that scrapes with native
//! histograms enabled asks for this format, the only one that carries native histograms.
//!
//! The messages' fields are those of `metrics.proto`, by the same names and tags.
#![allow(missing_docs)]

use prost::Message;

use crate::histogram::{CounterResetHint, FloatHistogram, Span};
use crate::{Error, Result};

/// The content type of the length-delimited stream.
pub const CONTENT_TYPE: &str = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// `MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
    Summary = 2,
    Untyped = 3,
    Histogram = 4,
    GaugeHistogram = 5,
}

/// `LabelPair`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `Untyped`.
#[derive(Clone, PartialEq, Message)]
pub struct Untyped {
    #[prost(double, tag = "1")]
    pub value: f64,
}

/// `BucketSpan`: the same message as remote_write's.
pub use crate::remote_write::BucketSpan;

/// `Histogram`, its native fields (federation writes no classic buckets).
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    #[prost(double, optional, tag = "4")]
    pub sample_count_float: Option<f64>,
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    #[prost(sint32, optional, tag = "5")]
    pub schema: Option<i32>,
    #[prost(double, optional, tag = "6")]
    pub zero_threshold: Option<f64>,
    #[prost(uint64, optional, tag = "7")]
    pub zero_count: Option<u64>,
    #[prost(double, optional, tag = "8")]
    pub zero_count_float: Option<f64>,
    #[prost(message, repeated, tag = "9")]
    pub negative_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "10")]
    pub negative_delta: Vec<i64>,
    #[prost(double, repeated, tag = "11")]
    pub negative_count: Vec<f64>,
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "13")]
    pub positive_delta: Vec<i64>,
    #[prost(double, repeated, tag = "14")]
    pub positive_count: Vec<f64>,
}

/// `Metric`: one series' sample.
#[derive(Clone, PartialEq, Message)]
pub struct Metric {
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    #[prost(message, optional, tag = "5")]
    pub untyped: Option<Untyped>,
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<Histogram>,
    #[prost(int64, optional, tag = "6")]
    pub timestamp_ms: Option<i64>,
}

/// `MetricFamily`.
#[derive(Clone, PartialEq, Message)]
pub struct MetricFamily {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub help: Option<String>,
    #[prost(enumeration = "MetricType", optional, tag = "3")]
    pub r#type: Option<i32>,
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
}

/// A native histogram as the exposition writes it: with integer counts (bucket deltas) when
/// every count is a whole number, as an integer histogram is stored, else with float counts.
pub fn histogram(h: &FloatHistogram) -> Histogram {
    let spans = |s: &[Span]| s.iter().map(|s| BucketSpan { offset: s.offset, length: s.length }).collect::<Vec<_>>();
    let whole = |v: f64| v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(53);
    let integer = whole(h.count) && whole(h.zero_count) && h.positive_buckets.iter().chain(&h.negative_buckets).all(|c| whole(*c));
    let deltas = |counts: &[f64]| {
        let mut previous = 0i64;
        counts
            .iter()
            .map(|c| {
                let c = *c as i64;
                let d = c - previous;
                previous = c;
                d
            })
            .collect::<Vec<_>>()
    };
    let mut out = Histogram {
        sample_sum: Some(h.sum),
        schema: Some(h.schema),
        zero_threshold: Some(h.zero_threshold),
        negative_span: spans(&h.negative_spans),
        positive_span: spans(&h.positive_spans),
        ..Default::default()
    };
    if integer {
        out.sample_count = Some(h.count as u64);
        out.zero_count = Some(h.zero_count as u64);
        out.negative_delta = deltas(&h.negative_buckets);
        out.positive_delta = deltas(&h.positive_buckets);
    } else {
        out.sample_count_float = Some(h.count);
        out.zero_count_float = Some(h.zero_count);
        out.negative_count = h.negative_buckets.clone();
        out.positive_count = h.positive_buckets.clone();
    }
    out
}

/// The family type a histogram sample belongs to.
pub fn histogram_type(h: &FloatHistogram) -> MetricType {
    if h.counter_reset_hint == CounterResetHint::Gauge { MetricType::GaugeHistogram } else { MetricType::Histogram }
}

/// `families` as a length-delimited stream.
pub fn encode_delimited(families: &[MetricFamily]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in families {
        f.encode_length_delimited(&mut out).expect("encoding into a Vec cannot fail");
    }
    out
}

/// The families of a length-delimited stream (for clients and tests).
pub fn decode_delimited(mut bytes: &[u8]) -> Result<Vec<MetricFamily>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let f = MetricFamily::decode_length_delimited(&mut bytes).map_err(|e| Error::Content(format!("not a delimited MetricFamily stream: {e}")))?;
        out.push(f);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_counts_are_written_as_deltas_others_as_floats() {
        let h = FloatHistogram {
            count: 7.0,
            sum: 3.5,
            zero_count: 1.0,
            zero_threshold: 0.001,
            positive_spans: vec![Span { offset: -1, length: 2 }, Span { offset: 1, length: 1 }],
            positive_buckets: vec![2.0, 1.0, 3.0],
            ..Default::default()
        };
        let p = histogram(&h);
        assert_eq!((p.sample_count, p.zero_count, p.sample_count_float), (Some(7), Some(1), None));
        assert_eq!(p.positive_delta, vec![2, -1, 2]);
        assert_eq!(p.positive_span, vec![BucketSpan { offset: -1, length: 2 }, BucketSpan { offset: 1, length: 1 }]);
        let half = FloatHistogram { positive_buckets: vec![2.5, 1.0, 3.0], count: 7.5, ..h.clone() };
        let p = histogram(&half);
        assert_eq!((p.sample_count, p.sample_count_float, p.zero_count_float), (None, Some(7.5), Some(1.0)));
        assert_eq!(p.positive_count, vec![2.5, 1.0, 3.0]);
        assert!(p.positive_delta.is_empty());
        // A stream of two families decodes back.
        let families = vec![
            MetricFamily { name: Some("a".into()), r#type: Some(MetricType::Untyped as i32), metric: vec![], help: None },
            MetricFamily { name: Some("b".into()), r#type: Some(MetricType::Histogram as i32), metric: vec![Metric { histogram: Some(p), ..Default::default() }], help: None },
        ];
        assert_eq!(decode_delimited(&encode_delimited(&families)).unwrap(), families);
        assert!(decode_delimited(&[5, 1]).is_err());
    }
}
