//! Prometheus remote_write 1.0: `WriteRequest` protobuf, snappy block-compressed.
//!
//! Only the fields Pharos stores are declared (labels and float samples); unknown fields such as
//! exemplars, native histograms and metadata are skipped by the protobuf decoder.

use prost::Message;

use crate::{Error, Labels, Result, Sample};

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
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
    let raw = snap::raw::Decoder::new()
        .decompress_vec(snappy_body)
        .map_err(|e| Error::Content(format!("remote_write body is not snappy-compressed: {e}")))?;
    decode_uncompressed(&raw)
}

/// Decodes an uncompressed `WriteRequest`.
pub fn decode_uncompressed(raw: &[u8]) -> Result<Vec<Sample>> {
    let req = WriteRequest::decode(raw)?;
    let mut out = Vec::new();
    for ts in req.timeseries {
        let labels = Labels::from_pairs(ts.labels.into_iter().map(|l| (l.name, l.value)));
        if labels.metric_name().is_none() {
            return Err(Error::Content(format!("remote_write series {labels} has no __name__")));
        }
        out.extend(ts.samples.into_iter().map(|s| Sample::new(labels.clone(), s.timestamp, s.value)));
    }
    Ok(out)
}

/// Encodes samples as a snappy-compressed `WriteRequest` (for tests and benchmarks).
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: samples
            .iter()
            .map(|s| TimeSeries {
                labels: s.labels.iter().map(|(k, v)| Label { name: k.into(), value: v.into() }).collect(),
                samples: vec![RemoteSample { value: s.value, timestamp: s.timestamp_ms }],
            })
            .collect(),
    };
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap_or_default()
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
}
