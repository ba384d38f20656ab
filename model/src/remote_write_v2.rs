//! Prometheus remote_write 2.0: `io.prometheus.write.v2.Request` protobuf, snappy
//! block-compressed, sent with `Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request`.
//!
//! Strings are interned: the request carries one `symbols` table (the first entry is the empty
//! string) and series name their labels, and metadata its help and unit, by index into it. Each
//! series carries its own metadata (type, help, unit) instead of the per-family list of 1.0.
//!
//! The collector parses these requests in place ([`crate::write_view::WriteView::decode_snappy_v2`]).
//! The message types here are declared with prost from Prometheus'
//! `prompb/io/prometheus/write/v2/types.proto`; [`RequestBuilder`] encodes requests for tests and
//! tools, and is what the in-place parser's tests compare against. Native histograms are declared
//! with the fields a test needs to send one (Pharos does not store them).

use std::collections::HashMap;

use prost::Message;

use crate::{Labels, MetricType};

/// The `Content-Type` of a remote_write 2.0 request.
pub const CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
/// The fully qualified message name in the `proto=` parameter of the content type.
pub const PROTO_NAME: &str = "io.prometheus.write.v2.Request";
/// Response header: float samples written.
pub const SAMPLES_WRITTEN: &str = "x-prometheus-remote-write-samples-written";
/// Response header: native histogram samples written.
pub const HISTOGRAMS_WRITTEN: &str = "x-prometheus-remote-write-histograms-written";
/// Response header: exemplars written.
pub const EXEMPLARS_WRITTEN: &str = "x-prometheus-remote-write-exemplars-written";

/// `io.prometheus.write.v2.Request` (fields 1 to 3 are reserved).
#[derive(Clone, PartialEq, Message)]
pub struct Request {
    /// Interned strings; the first is `""`.
    #[prost(string, repeated, tag = "4")]
    pub symbols: Vec<String>,
    /// The series.
    #[prost(message, repeated, tag = "5")]
    pub timeseries: Vec<TimeSeries>,
}

/// `io.prometheus.write.v2.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Label name and value pairs as indices into `symbols`, names sorted.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// Float samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<crate::remote_write::RemoteSample>,
    /// Native histogram samples.
    #[prost(message, repeated, tag = "3")]
    pub histograms: Vec<Histogram>,
    /// Exemplars.
    #[prost(message, repeated, tag = "4")]
    pub exemplars: Vec<Exemplar>,
    /// Type, help and unit of the series.
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<Metadata>,
    /// When the counter started, ms (0: not set).
    #[prost(int64, tag = "6")]
    pub created_timestamp: i64,
}

/// `io.prometheus.write.v2.Metadata`.
#[derive(Clone, PartialEq, Message)]
pub struct Metadata {
    /// `MetricType`: 0 unspecified, 1 counter, 2 gauge, 3 histogram, 4 gaugehistogram,
    /// 5 summary, 6 info, 7 stateset (the numbers of 1.0's `MetricMetadata.MetricType`).
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The help text's index in `symbols`.
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    /// The unit's index in `symbols`.
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}

/// `io.prometheus.write.v2.Exemplar`.
#[derive(Clone, PartialEq, Message)]
pub struct Exemplar {
    /// Label pairs as indices into `symbols`.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// The exemplar's value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Its time, ms.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `io.prometheus.write.v2.Histogram`: the same message as 1.0's.
pub use crate::remote_write::Histogram;

/// Builds a request, interning its strings.
pub struct RequestBuilder {
    request: Request,
    index: HashMap<String, u32>,
}

impl Default for RequestBuilder {
    fn default() -> Self {
        RequestBuilder { request: Request { symbols: vec![String::new()], timeseries: Vec::new() }, index: HashMap::from([(String::new(), 0)]) }
    }
}

impl RequestBuilder {
    /// The index of `s` in the symbols table, adding it when new.
    pub fn symbol(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.request.symbols.len() as u32;
        self.request.symbols.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }

    /// The label refs of `labels` (in their sorted order).
    pub fn label_refs(&mut self, labels: &Labels) -> Vec<u32> {
        let mut refs = Vec::with_capacity(labels.len() * 2);
        for (k, v) in labels.iter() {
            refs.push(self.symbol(k));
            refs.push(self.symbol(v));
        }
        refs
    }

    /// Adds a series with float samples and, when given, its type, help and unit.
    pub fn series(&mut self, labels: &Labels, samples: &[(i64, f64)], metadata: Option<(MetricType, &str, &str)>) -> &mut Self {
        let labels_refs = self.label_refs(labels);
        let metadata = metadata.map(|(t, help, unit)| Metadata {
            r#type: crate::remote_write::type_number(t),
            help_ref: self.symbol(help),
            unit_ref: self.symbol(unit),
        });
        self.request.timeseries.push(TimeSeries {
            labels_refs,
            samples: samples.iter().map(|&(timestamp, value)| crate::remote_write::RemoteSample { value, timestamp }).collect(),
            metadata,
            ..Default::default()
        });
        self
    }

    /// Adds an exemplar to the series added last.
    pub fn exemplar(&mut self, labels: &Labels, value: f64, timestamp: i64) -> &mut Self {
        let labels_refs = self.label_refs(labels);
        let last = self.request.timeseries.last_mut().expect("a series to add the exemplar to");
        last.exemplars.push(Exemplar { labels_refs, value, timestamp });
        self
    }

    /// Adds a series as given (refs from [`RequestBuilder::symbol`]).
    pub fn push(&mut self, series: TimeSeries) -> &mut Self {
        self.request.timeseries.push(series);
        self
    }

    /// The request, protobuf-encoded and uncompressed.
    pub fn encode(&self) -> Vec<u8> {
        self.request.encode_to_vec()
    }

    /// The request as a sender posts it: protobuf, snappy block-compressed.
    pub fn encode_snappy(&self) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(&self.encode()).expect("snappy compression of an in-memory buffer")
    }
}
