//! OTLP wire format: `ExportMetricsServiceRequest` / `ExportLogsServiceRequest` protobuf (the
//! encoding of the OpenTelemetry Collector's Kafka exporter) and OTLP/JSON.
//!
//! Metrics map to Prometheus series the way Prometheus' own OTLP receiver does it: gauges and sums
//! become one series per data point, classic histograms become `_bucket{le}`/`_sum`/`_count`,
//! summaries become `{quantile}`/`_sum`/`_count`. Resource attributes become labels through
//! [`crate::identity`].
//!
//! Metric metadata ([`MetricMetadata`]): `Metric.description` is the HELP, `Metric.unit` the
//! UNIT, and the type follows the data: a monotonic cumulative Sum is a counter, other Sums and
//! Gauges are gauges, Histogram and Summary are themselves. `Metric.metadata` may override the
//! type with `prometheus.type` (the key the OpenTelemetry Collector's Prometheus receiver uses)
//! and name the family with `prometheus.family` when it differs from the metric name; the agent
//! sends the flattened series of a histogram (`h_bucket`, …) that way. A Gauge that says nothing
//! (no description, unit or `prometheus.type`) carries no metadata.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord as OtlpLogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, ExponentialHistogramDataPoint, Gauge, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, exemplar, exponential_histogram_data_point, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::identity::{attribute_to_label, label_to_attribute, sanitize_label_name};
use crate::{
    Error, Exemplar, FamilyIndex, Labels, LogRecord, METRIC_NAME, MetricMetadata, MetricType, MetricsBatch, Result,
    Sample,
};

/// The NaN bit pattern Prometheus uses as a staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// OTLP data point flag: no recorded value (the OTLP form of a staleness marker).
const FLAG_NO_RECORDED_VALUE: u32 = 1;
const SCOPE_NAME: &str = "pharos";
/// `Metric.metadata` key holding the Prometheus metric type.
pub const TYPE_KEY: &str = "prometheus.type";
/// `Metric.metadata` key holding the family name when it is not the metric name.
pub const FAMILY_KEY: &str = "prometheus.family";

/// True when `v` is the Prometheus staleness marker.
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
        ..Default::default()
    }
}

fn resource_of(labels: &Labels) -> Option<Resource> {
    Some(Resource {
        attributes: labels.iter().map(|(k, v)| string_kv(label_to_attribute(k), v)).collect(),
        ..Default::default()
    })
}

/// Encodes samples as one `ExportMetricsServiceRequest`: `resource` labels become resource
/// attributes (identity labels as `k8s.*`), samples are grouped into one gauge metric per name.
pub fn encode_metrics(resource: &Labels, samples: &[Sample]) -> Vec<u8> {
    encode_metrics_with_metadata(resource, samples, &FamilyIndex::default())
}

/// [`encode_metrics`] with the HELP/TYPE/UNIT of `families`: a series of a known family gets its
/// description and unit and its `prometheus.type` (and `prometheus.family` when the family name
/// differs); a counter's own series (`x_total`) becomes a monotonic cumulative Sum. Families are
/// looked up once per metric name, not per sample.
pub fn encode_metrics_with_metadata(resource: &Labels, samples: &[Sample], families: &FamilyIndex) -> Vec<u8> {
    let mut by_name: BTreeMap<&str, Vec<NumberDataPoint>> = BTreeMap::new();
    for s in samples {
        let name = s.labels.metric_name().unwrap_or_default();
        let stale = is_stale_nan(s.value);
        by_name.entry(name).or_default().push(NumberDataPoint {
            attributes: s
                .labels
                .iter()
                .filter(|(k, _)| *k != METRIC_NAME)
                .map(|(k, v)| string_kv(k, v))
                .collect(),
            time_unix_nano: (s.timestamp_ms.max(0) as u64) * 1_000_000,
            flags: if stale { FLAG_NO_RECORDED_VALUE } else { 0 },
            value: Some(number_data_point::Value::AsDouble(s.value)),
            ..Default::default()
        });
    }
    let metrics = by_name.into_iter().map(|(name, data_points)| metric_of(name, data_points, families)).collect();
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource_of(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                    name: SCOPE_NAME.into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    req.encode_to_vec()
}

/// The attribute names that carry the OTLP log record's `trace_id` / `span_id` (lowercase hex).
pub const TRACE_ID_ATTRIBUTE: &str = "trace_id";
/// See [`TRACE_ID_ATTRIBUTE`].
pub const SPAN_ID_ATTRIBUTE: &str = "span_id";

/// `s` as bytes when it is `2 * n` lowercase hex digits (the form decoding produces).
fn lower_hex_bytes(s: &str, n: usize) -> Option<Vec<u8>> {
    if s.len() != 2 * n || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    (0..n).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()).collect()
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn metric_of(name: &str, data_points: Vec<NumberDataPoint>, families: &FamilyIndex) -> Metric {
    let Some(family) = families.family_of(name) else {
        return Metric {
            name: name.to_string(),
            data: Some(metric::Data::Gauge(Gauge { data_points })),
            ..Default::default()
        };
    };
    let family_name = family.metric_family_name.as_str();
    let counter_series = family.r#type == MetricType::Counter
        && (name == family_name || name.strip_prefix(family_name) == Some("_total"));
    let data = if counter_series {
        metric::Data::Sum(Sum {
            data_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })
    } else {
        metric::Data::Gauge(Gauge { data_points })
    };
    let mut metadata = vec![string_kv(TYPE_KEY, family.r#type.as_str())];
    if family_name != name {
        metadata.push(string_kv(FAMILY_KEY, family_name));
    }
    Metric {
        name: name.to_string(),
        description: family.help.clone(),
        unit: family.unit.clone(),
        data: Some(data),
        metadata,
    }
}

/// Encodes log records as one `ExportLogsServiceRequest`, one `ResourceLogs` per label set.
/// Record attributes become log-record attributes, except `trace_id` (32 lowercase hex digits)
/// and `span_id` (16), which fill the record's `trace_id` / `span_id` fields.
pub fn encode_logs(records: &[LogRecord]) -> Vec<u8> {
    let mut by_stream: BTreeMap<&Labels, Vec<OtlpLogRecord>> = BTreeMap::new();
    for r in records {
        let mut rec = OtlpLogRecord {
            time_unix_nano: r.timestamp_ns.max(0) as u64,
            severity_text: r.severity.clone(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(r.body.clone())) }),
            ..Default::default()
        };
        for (k, v) in &r.attributes {
            if k == TRACE_ID_ATTRIBUTE
                && let Some(b) = lower_hex_bytes(v, 16)
            {
                rec.trace_id = b;
            } else if k == SPAN_ID_ATTRIBUTE
                && let Some(b) = lower_hex_bytes(v, 8)
            {
                rec.span_id = b;
            } else {
                rec.attributes.push(string_kv(k, v));
            }
        }
        by_stream.entry(&r.labels).or_default().push(rec);
    }
    let req = ExportLogsServiceRequest {
        resource_logs: by_stream
            .into_iter()
            .map(|(labels, log_records)| ResourceLogs {
                resource: resource_of(labels),
                scope_logs: vec![ScopeLogs { log_records, ..Default::default() }],
                ..Default::default()
            })
            .collect(),
    };
    req.encode_to_vec()
}

/// Decodes an `ExportMetricsServiceRequest` protobuf into samples.
pub fn decode_metrics_protobuf(body: &[u8]) -> Result<Vec<Sample>> {
    Ok(decode_metrics_batch_protobuf(body)?.samples)
}

/// Decodes an OTLP/JSON `ExportMetricsServiceRequest` into samples.
pub fn decode_metrics_json(body: &[u8]) -> Result<Vec<Sample>> {
    Ok(decode_metrics_batch_json(body)?.samples)
}

/// Decodes an `ExportMetricsServiceRequest` protobuf into samples and metric metadata.
pub fn decode_metrics_batch_protobuf(body: &[u8]) -> Result<MetricsBatch> {
    metrics_to_samples(ExportMetricsServiceRequest::decode(body)?)
}

/// Decodes an OTLP/JSON `ExportMetricsServiceRequest` into samples and metric metadata.
pub fn decode_metrics_batch_json(body: &[u8]) -> Result<MetricsBatch> {
    metrics_to_samples(serde_json::from_slice(body)?)
}

/// Decodes an `ExportLogsServiceRequest` protobuf into log records.
pub fn decode_logs_protobuf(body: &[u8]) -> Result<Vec<LogRecord>> {
    Ok(logs_to_records(ExportLogsServiceRequest::decode(body)?))
}

/// Decodes an OTLP/JSON `ExportLogsServiceRequest` into log records.
pub fn decode_logs_json(body: &[u8]) -> Result<Vec<LogRecord>> {
    Ok(logs_to_records(serde_json::from_slice(body)?))
}

fn any_value_string(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(any_value_string).collect();
            format!("[{}]", items.join(","))
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            let items: Vec<String> = kv
                .values
                .iter()
                .map(|kv| {
                    format!("{}={}", kv.key, kv.value.as_ref().map(any_value_string).unwrap_or_default())
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        _ => String::new(),
    }
}

/// An attribute value as text: strings as they are, other scalars in their text form, arrays
/// and key-value lists as JSON (bytes as lowercase hex).
fn attribute_value_text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_)) => any_value_json(v).to_string(),
        Some(any_value::Value::BytesValue(b)) => lower_hex(b),
        _ => any_value_string(v),
    }
}

fn any_value_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.value {
        Some(any_value::Value::StringValue(s)) => J::from(s.as_str()),
        Some(any_value::Value::BoolValue(b)) => J::from(*b),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        Some(any_value::Value::BytesValue(b)) => J::from(lower_hex(b)),
        Some(any_value::Value::ArrayValue(a)) => J::Array(a.values.iter().map(any_value_json).collect()),
        Some(any_value::Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(J::Null, any_value_json)))
                .collect(),
        ),
        _ => J::Null,
    }
}

/// A log record's attributes, its `trace_id` / `span_id` as hex attributes, normalized.
fn record_attributes(r: &OtlpLogRecord) -> Vec<(String, String)> {
    if r.attributes.is_empty() && r.trace_id.is_empty() && r.span_id.is_empty() {
        return Vec::new();
    }
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(r.attributes.len() + 2);
    pairs.extend(id_pairs(&r.trace_id, &r.span_id));
    // Attributes come after the ids: an explicit attribute of the same name wins.
    pairs.extend(r.attributes.iter().map(|kv| {
        (sanitize_label_name(&kv.key), kv.value.as_ref().map(attribute_value_text).unwrap_or_default())
    }));
    crate::normalize_attributes(pairs)
}

/// `trace_id` and `span_id` as lowercase hex pairs, each only when set (not all zero).
fn id_pairs<'a>(trace_id: &'a [u8], span_id: &'a [u8]) -> impl Iterator<Item = (String, String)> + 'a {
    [(TRACE_ID_ATTRIBUTE, trace_id), (SPAN_ID_ATTRIBUTE, span_id)]
        .into_iter()
        .filter(|(_, id)| id.iter().any(|b| *b != 0))
        .map(|(name, id)| (name.to_string(), lower_hex(id)))
}

fn attrs_to_pairs(attrs: &[KeyValue]) -> impl Iterator<Item = (String, String)> + '_ {
    attrs.iter().map(|kv| {
        (attribute_to_label(&kv.key), kv.value.as_ref().map(any_value_string).unwrap_or_default())
    })
}

fn series(resource: &[(String, String)], name: &str, attrs: &[KeyValue], extra: &[(&str, String)]) -> Labels {
    let mut pairs: Vec<(String, String)> = resource.to_vec();
    pairs.extend(attrs_to_pairs(attrs));
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    pairs.push((METRIC_NAME.to_string(), name.to_string()));
    Labels::from_pairs(pairs)
}

fn ms(time_unix_nano: u64) -> i64 {
    (time_unix_nano / 1_000_000) as i64
}

fn value_or_stale(flags: u32, v: f64) -> f64 {
    if flags & FLAG_NO_RECORDED_VALUE != 0 { f64::from_bits(STALE_NAN_BITS) } else { v }
}

/// Formats a float the way Prometheus formats `le`/`quantile` label values.
fn prom_float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}").trim_end_matches(".0").to_string()
    }
}

fn metrics_to_samples(req: ExportMetricsServiceRequest) -> Result<MetricsBatch> {
    let mut out = Vec::new();
    let mut exemplars = Vec::new();
    let mut dropped_histograms = 0;
    let mut histograms = Vec::new();
    let mut metadata: Vec<MetricMetadata> = Vec::new();
    for rm in req.resource_metrics {
        let resource: Vec<(String, String)> = rm
            .resource
            .as_ref()
            .map(|r| attrs_to_pairs(&r.attributes).collect())
            .unwrap_or_default();
        for sm in rm.scope_metrics {
            for mut m in sm.metrics {
                if m.name.is_empty() {
                    return Err(Error::Content("invalid OTLP content: metric without a name".into()));
                }
                if let Some(md) = metadata_of(&mut m)
                    && metadata.last() != Some(&md)
                {
                    metadata.push(md);
                }
                dropped_histograms += push_metric(&resource, &m, &mut out, &mut histograms, &mut exemplars);
            }
        }
    }
    Ok(MetricsBatch { samples: out, metadata, exemplars, histograms, dropped_histograms })
}

/// The metadata `m` carries (see the module docs); takes its description.
fn metadata_of(m: &mut Metric) -> Option<MetricMetadata> {
    let mut explicit_type = None;
    let mut family = None;
    for kv in &m.metadata {
        let Some(any_value::Value::StringValue(v)) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
            continue;
        };
        match kv.key.as_str() {
            TYPE_KEY => explicit_type = MetricType::parse(v),
            FAMILY_KEY if !v.is_empty() => family = Some(v.clone()),
            _ => {}
        }
    }
    let by_data = match &m.data {
        Some(metric::Data::Gauge(_)) | None => None,
        Some(metric::Data::Sum(s)) => Some(
            if s.is_monotonic && s.aggregation_temporality == AggregationTemporality::Cumulative as i32 {
                MetricType::Counter
            } else {
                MetricType::Gauge
            },
        ),
        Some(metric::Data::Histogram(_)) => Some(MetricType::Histogram),
        Some(metric::Data::Summary(_)) => Some(MetricType::Summary),
        Some(metric::Data::ExponentialHistogram(_)) => Some(MetricType::Histogram),
    };
    let r#type = explicit_type.or(by_data);
    if r#type.is_none() && m.description.is_empty() && m.unit.is_empty() {
        return None;
    }
    Some(MetricMetadata {
        metric_family_name: family.unwrap_or_else(|| m.name.clone()),
        r#type: r#type.unwrap_or(MetricType::Gauge),
        help: std::mem::take(&mut m.description),
        unit: m.unit.clone(),
    })
}

/// An OTLP exemplar as Prometheus' OTLP receiver stores it: `trace_id` and `span_id` as
/// lowercase hex labels (when set), then the filtered attributes; an integer value as a float.
fn exemplar_of(e: &OtlpExemplar) -> Exemplar {
    let pairs: Vec<(String, String)> = id_pairs(&e.trace_id, &e.span_id).chain(attrs_to_pairs(&e.filtered_attributes)).collect();
    let value = match e.value {
        Some(exemplar::Value::AsDouble(d)) => d,
        Some(exemplar::Value::AsInt(i)) => i as f64,
        None => 0.0,
    };
    Exemplar { labels: Labels::from_pairs(pairs), value, timestamp_ms: ms(e.time_unix_nano) }
}

/// Appends the samples, native histograms and exemplars of `m`; returns how many of its data
/// points were not stored (exponential histograms [`native_histogram`] does not convert).
fn push_metric(
    resource: &[(String, String)],
    m: &Metric,
    out: &mut Vec<Sample>,
    histograms: &mut Vec<crate::HistogramSample>,
    exemplars: &mut Vec<(Labels, Exemplar)>,
) -> u64 {
    match &m.data {
        Some(metric::Data::Gauge(g)) => {
            for dp in &g.data_points {
                number_point(resource, &m.name, dp, out, exemplars);
            }
        }
        Some(metric::Data::Sum(s)) => {
            for dp in &s.data_points {
                number_point(resource, &m.name, dp, out, exemplars);
            }
        }
        Some(metric::Data::Histogram(h)) => {
            for dp in &h.data_points {
                let t = ms(dp.time_unix_nano);
                let mut cumulative = 0u64;
                // Each exemplar goes to the first bucket whose bound holds its value, as
                // Prometheus' OTLP receiver puts it (the `+Inf` bucket takes the rest).
                let mut pending: Vec<Exemplar> = dp.exemplars.iter().map(exemplar_of).collect();
                for (i, count) in dp.bucket_counts.iter().enumerate() {
                    cumulative += count;
                    let le = dp.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY);
                    let l = series(resource, &format!("{}_bucket", m.name), &dp.attributes, &[("le", prom_float(le))]);
                    let last = i + 1 == dp.bucket_counts.len();
                    pending.retain(|e| {
                        let here = e.value <= le || last;
                        if here {
                            exemplars.push((l.clone(), e.clone()));
                        }
                        !here
                    });
                    out.push(Sample::new(l, t, value_or_stale(dp.flags, cumulative as f64)));
                }
                if let Some(sum) = dp.sum {
                    let l = series(resource, &format!("{}_sum", m.name), &dp.attributes, &[]);
                    out.push(Sample::new(l, t, value_or_stale(dp.flags, sum)));
                }
                let l = series(resource, &format!("{}_count", m.name), &dp.attributes, &[]);
                out.push(Sample::new(l, t, value_or_stale(dp.flags, dp.count as f64)));
            }
        }
        Some(metric::Data::Summary(s)) => {
            for dp in &s.data_points {
                let t = ms(dp.time_unix_nano);
                for q in &dp.quantile_values {
                    let l = series(resource, &m.name, &dp.attributes, &[("quantile", prom_float(q.quantile))]);
                    out.push(Sample::new(l, t, value_or_stale(dp.flags, q.value)));
                }
                let l = series(resource, &format!("{}_sum", m.name), &dp.attributes, &[]);
                out.push(Sample::new(l, t, value_or_stale(dp.flags, dp.sum)));
                let l = series(resource, &format!("{}_count", m.name), &dp.attributes, &[]);
                out.push(Sample::new(l, t, value_or_stale(dp.flags, dp.count as f64)));
            }
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            let mut dropped = 0;
            for dp in &h.data_points {
                match native_histogram(h.aggregation_temporality, dp) {
                    Some(histogram) => {
                        let l = series(resource, &m.name, &dp.attributes, &[]);
                        exemplars.extend(dp.exemplars.iter().map(|e| (l.clone(), exemplar_of(e))));
                        histograms.push(crate::HistogramSample { labels: l, timestamp_ms: ms(dp.time_unix_nano), histogram: std::sync::Arc::new(histogram) });
                    }
                    None => dropped += 1,
                }
            }
            return dropped;
        }
        None => {}
    }
    0
}

/// An OTLP exponential histogram data point as Prometheus' OTLP receiver turns it into a native
/// histogram: the scale is the schema (a scale above 8 merges buckets down to schema 8), OTLP
/// bucket `i` (`(base^i, base^(i+1)]`) is bucket `i + 1` (`(base^(i-1), base^i]` shifted), the
/// zero bucket keeps its count with the point's zero threshold (Prometheus' 1e-128 when the
/// point has none), the counter reset hint is unknown, and a point flagged "no recorded value"
/// is a staleness marker. `None` (not stored, as Prometheus refuses them) for delta or unknown
/// temporality, a scale below −4, or counts its buckets do not add up to.
fn native_histogram(temporality: i32, dp: &ExponentialHistogramDataPoint) -> Option<crate::FloatHistogram> {
    use crate::histogram::Span;
    const DEFAULT_ZERO_THRESHOLD: f64 = 1e-128;
    if temporality != AggregationTemporality::Cumulative as i32 || dp.scale < -4 {
        return None;
    }
    let scale_down = (dp.scale - 8).max(0) as u32;
    // (spans, counts) of one side at the schema, merging 2^scale_down buckets into one.
    // `None` for a bucket index no double reaches (offsets come from clients).
    let side = |b: &Option<exponential_histogram_data_point::Buckets>| -> Option<(Vec<Span>, Vec<f64>)> {
        let mut by_index: std::collections::BTreeMap<i32, f64> = std::collections::BTreeMap::new();
        if let Some(b) = b {
            for (i, c) in b.bucket_counts.iter().enumerate() {
                if *c > 0 {
                    let otlp = i32::try_from(b.offset as i64 + i as i64).ok().filter(|o| o.unsigned_abs() < 1 << 24)?;
                    *by_index.entry((otlp >> scale_down) + 1).or_default() += *c as f64;
                }
            }
        }
        let (mut spans, mut counts): (Vec<Span>, Vec<f64>) = (Vec::new(), Vec::new());
        let mut next: Option<i32> = None;
        for (index, count) in by_index {
            match next {
                Some(n) if n == index => spans.last_mut().expect("a span").length += 1,
                Some(n) => spans.push(Span { offset: index - n, length: 1 }),
                None => spans.push(Span { offset: index, length: 1 }),
            }
            counts.push(count);
            next = Some(index + 1);
        }
        Some((spans, counts))
    };
    let (positive_spans, positive_buckets) = side(&dp.positive)?;
    let (negative_spans, negative_buckets) = side(&dp.negative)?;
    let stale = dp.flags & FLAG_NO_RECORDED_VALUE != 0;
    let h = crate::FloatHistogram {
        counter_reset_hint: crate::histogram::CounterResetHint::Unknown,
        schema: dp.scale.min(8),
        zero_threshold: if dp.zero_threshold > 0.0 { dp.zero_threshold } else { DEFAULT_ZERO_THRESHOLD },
        zero_count: dp.zero_count as f64,
        count: dp.count as f64,
        sum: if stale { f64::from_bits(STALE_NAN_BITS) } else { dp.sum.unwrap_or(0.0) },
        positive_spans,
        positive_buckets,
        negative_spans,
        negative_buckets,
        custom_values: Vec::new(),
    };
    h.validate().ok()?;
    // A staleness marker has no observations to check.
    (stale || h.validate_integer_counts().is_ok()).then_some(h)
}

/// The body of an OTLP/HTTP metrics answer (`ExportMetricsServiceResponse`, protobuf or JSON):
/// empty when everything was stored, else a `partial_success` with the number of data points
/// not stored and why, as the OTLP spec asks of a server that accepted only part of a request.
pub fn metrics_response(rejected_data_points: u64, json: bool) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsPartialSuccess, ExportMetricsServiceResponse};
    const WHY: &str = "exponential histogram data points not stored: delta temporality, a scale below -4, or bucket counts that do not add up to the count";
    match (rejected_data_points, json) {
        (0, true) => b"{}".to_vec(),
        (0, false) => Vec::new(),
        (n, true) => {
            // proto3 JSON writes an int64 as a string.
            serde_json::json!({"partialSuccess": {"rejectedDataPoints": n.to_string(), "errorMessage": WHY}}).to_string().into_bytes()
        }
        (n, false) => ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess { rejected_data_points: n as i64, error_message: WHY.to_string() }),
        }
        .encode_to_vec(),
    }
}

/// A gauge's or sum's data point: one sample, and its exemplars on the same series.
fn number_point(
    resource: &[(String, String)],
    name: &str,
    dp: &NumberDataPoint,
    out: &mut Vec<Sample>,
    exemplars: &mut Vec<(Labels, Exemplar)>,
) {
    let value = match dp.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => f64::NAN,
    };
    let l = series(resource, name, &dp.attributes, &[]);
    exemplars.extend(dp.exemplars.iter().map(|e| (l.clone(), exemplar_of(e))));
    out.push(Sample::new(l, ms(dp.time_unix_nano), value_or_stale(dp.flags, value)));
}

fn logs_to_records(req: ExportLogsServiceRequest) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for rl in req.resource_logs {
        let labels = Labels::from_pairs(
            rl.resource.as_ref().map(|r| attrs_to_pairs(&r.attributes).collect::<Vec<_>>()).unwrap_or_default(),
        );
        for sl in rl.scope_logs {
            for r in sl.log_records {
                let ts = if r.time_unix_nano != 0 { r.time_unix_nano } else { r.observed_time_unix_nano };
                out.push(LogRecord {
                    labels: labels.clone(),
                    timestamp_ns: ts.min(i64::MAX as u64) as i64,
                    body: r.body.as_ref().map(any_value_string).unwrap_or_default(),
                    attributes: record_attributes(&r),
                    // OTLP's number where the text is missing (Loki does the same).
                    severity: if r.severity_text.is_empty() {
                        crate::level::from_otlp_severity_number(r.severity_number).unwrap_or_default().to_string()
                    } else {
                        r.severity_text
                    },
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_round_trip_with_identity() {
        let resource = Labels::from_pairs([("cluster", "c1"), ("node", "n1")]);
        let s = Sample::new(Labels::from_pairs([("__name__", "m"), ("a", "x\"y")]), 1_700_000_000_123, 2.5);
        let stale = Sample::new(s.labels.clone(), 1_700_000_000_124, f64::from_bits(STALE_NAN_BITS));
        let back = decode_metrics_protobuf(&encode_metrics(&resource, &[s, stale])).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].labels.get("cluster"), Some("c1"));
        assert_eq!(back[0].labels.get("a"), Some("x\"y"));
        assert_eq!(back[0].timestamp_ms, 1_700_000_000_123);
        assert_eq!(back[0].value, 2.5);
        assert!(is_stale_nan(back[1].value));
    }

    /// A record with only `severityNumber` gets its level; a text, when present, wins.
    #[test]
    fn otlp_log_severity_number_where_the_text_is_missing() {
        let body = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
            {"timeUnixNano":"1","severityNumber":17,"body":{"stringValue":"a"}},
            {"timeUnixNano":"2","severityNumber":13,"severityText":"Warning","body":{"stringValue":"b"}},
            {"timeUnixNano":"3","severityNumber":0,"body":{"stringValue":"c"}},
            {"timeUnixNano":"4","severityNumber":2,"body":{"stringValue":"d"}}]}]}]}"#;
        let got: Vec<String> = decode_logs_json(body).unwrap().into_iter().map(|r| r.severity).collect();
        assert_eq!(got, ["error", "Warning", "", "trace"]);
    }

    #[test]
    fn otlp_json_histogram_becomes_classic_series() {
        let body = br#"{"resourceMetrics":[{"resource":{"attributes":[
            {"key":"k8s.pod.name","value":{"stringValue":"p1"}}]},
          "scopeMetrics":[{"metrics":[{"name":"lat","histogram":{"aggregationTemporality":2,
            "dataPoints":[{"timeUnixNano":"2000000000","count":"3","sum":1.5,
              "bucketCounts":["1","2"],"explicitBounds":[0.5]}]}}]}]}]}"#;
        let s = decode_metrics_json(body).unwrap();
        let find = |name: &str, le: Option<&str>| {
            s.iter()
                .find(|s| s.labels.metric_name() == Some(name) && s.labels.get("le") == le)
                .map(|s| s.value)
        };
        assert_eq!(find("lat_bucket", Some("0.5")), Some(1.0));
        assert_eq!(find("lat_bucket", Some("+Inf")), Some(3.0));
        assert_eq!(find("lat_sum", None), Some(1.5));
        assert_eq!(find("lat_count", None), Some(3.0));
        assert!(s.iter().all(|s| s.labels.get("pod") == Some("p1") && s.timestamp_ms == 2000));
    }

    /// Exemplars as Prometheus' OTLP receiver keeps them: on a sum's or gauge's own series, on
    /// the first histogram bucket whose bound holds the value (`+Inf` for the rest), labelled
    /// with the trace and span ids in hex and the filtered attributes.
    #[test]
    fn otlp_exemplars_go_to_their_series_and_buckets() {
        let body = br#"{"resourceMetrics":[{"resource":{"attributes":[
            {"key":"k8s.pod.name","value":{"stringValue":"p1"}}]},
          "scopeMetrics":[{"metrics":[
          {"name":"reqs","sum":{"aggregationTemporality":2,"isMonotonic":true,
             "dataPoints":[{"timeUnixNano":"3000000000","asInt":"7","attributes":[{"key":"code","value":{"stringValue":"200"}}],
               "exemplars":[{"timeUnixNano":"2500000000","asInt":"1",
                 "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
                 "filteredAttributes":[{"key":"user.id","value":{"stringValue":"u7"}}]}]}]}},
          {"name":"lat","histogram":{"aggregationTemporality":2,
            "dataPoints":[{"timeUnixNano":"2000000000","count":"4","sum":9,
              "bucketCounts":["1","2","1"],"explicitBounds":[0.5,1],
              "exemplars":[
                {"timeUnixNano":"1100000000","asDouble":0.5,"traceId":"00000000000000000000000000000001"},
                {"timeUnixNano":"1200000000","asDouble":0.75},
                {"timeUnixNano":"1300000000","asDouble":6.5,"spanId":"0000000000000000"}]}]}}]}]}]}"#;
        let batch = decode_metrics_batch_json(body).unwrap();
        type Row<'a> = (String, Option<&'a str>, Vec<(String, String)>, f64, i64);
        let got: Vec<Row<'_>> = batch
            .exemplars
            .iter()
            .map(|(series, e)| {
                assert_eq!(series.get("pod"), Some("p1"));
                let labels = e.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                (series.metric_name().unwrap().to_string(), series.get("le"), labels, e.value, e.timestamp_ms)
            })
            .collect();
        let pairs = |p: &[(&str, &str)]| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (
                    "reqs".to_string(),
                    None,
                    pairs(&[("span_id", "eee19b7ec3c1b174"), ("trace_id", "5b8efff798038103d269b633813fc60c"), ("user_id", "u7")]),
                    1.0,
                    2500
                ),
                ("lat_bucket".to_string(), Some("0.5"), pairs(&[("trace_id", "00000000000000000000000000000001")]), 0.5, 1100),
                ("lat_bucket".to_string(), Some("1"), vec![], 0.75, 1200),
                ("lat_bucket".to_string(), Some("+Inf"), vec![], 6.5, 1300),
            ]
        );
        // The series of the first exemplar is the sample's, attributes included.
        assert_eq!(batch.exemplars[0].0, batch.samples[0].labels);
        assert_eq!(batch.exemplars[0].0.get("code"), Some("200"));
    }

    /// Exponential histograms become native histograms as Prometheus' OTLP receiver converts
    /// them; those it refuses are counted, not stored, and the rest of the request is kept; the
    /// answer then reports them as a partial success (protobuf and JSON).
    #[test]
    fn exponential_histograms_become_native_histograms_or_are_reported_as_a_partial_success() {
        use crate::histogram::Span;
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
        // Cumulative: OTLP bucket i is native bucket i + 1 (scale 1: OTLP bucket -1 is
        // (2^-0.5, 1], native bucket 0 the same); scale 10 merges 4 buckets into one of
        // schema 8. Not stored: delta temporality, scale -5, a count its buckets miss, a bucket
        // index past any double (and past i32).
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
          {"name":"lat","description":"Latency.","exponentialHistogram":{"aggregationTemporality":2,
             "dataPoints":[{"timeUnixNano":"1000000","count":"5","sum":2.5,"scale":1,"zeroCount":"1",
                            "positive":{"offset":-1,"bucketCounts":["1","0","2"]},"negative":{"offset":0,"bucketCounts":["1"]},
                            "attributes":[{"key":"route","value":{"stringValue":"/a"}}]},
                           {"timeUnixNano":"2000000","count":"3","scale":10,"positive":{"offset":4,"bucketCounts":["1","1","1","0","0"]}},
                           {"timeUnixNano":"3000000","count":"1","scale":-5,"zeroCount":"1"},
                           {"timeUnixNano":"4000000","count":"3"},
                           {"timeUnixNano":"5000000","count":"1","positive":{"offset":2147483647,"bucketCounts":["0","1"]}}]}},
          {"name":"lat_delta","exponentialHistogram":{"aggregationTemporality":1,
             "dataPoints":[{"timeUnixNano":"1000000","count":"1","zeroCount":"1"}]}},
          {"name":"temp","gauge":{"dataPoints":[{"timeUnixNano":"1000000","asDouble":21.5}]}}]}]}]}"#;
        let batch = decode_metrics_batch_json(body).unwrap();
        assert_eq!(batch.dropped_histograms, 4);
        assert_eq!(batch.samples.len(), 1);
        assert_eq!((batch.samples[0].labels.metric_name(), batch.samples[0].value), (Some("temp"), 21.5));
        assert_eq!(batch.metadata[0].r#type, MetricType::Histogram);
        let got: Vec<(String, i64, crate::FloatHistogram)> =
            batch.histograms.iter().map(|h| (h.labels.to_string(), h.timestamp_ms, (*h.histogram).clone())).collect();
        let first = crate::FloatHistogram {
            schema: 1,
            zero_threshold: 1e-128,
            zero_count: 1.0,
            count: 5.0,
            sum: 2.5,
            positive_spans: vec![Span { offset: 0, length: 1 }, Span { offset: 1, length: 1 }],
            positive_buckets: vec![1.0, 2.0],
            negative_spans: vec![Span { offset: 1, length: 1 }],
            negative_buckets: vec![1.0],
            ..Default::default()
        };
        // Scale 10 → 8: OTLP buckets 4, 5, 6 at scale 10 are 4>>2 = 1 → native bucket 2.
        let second = crate::FloatHistogram {
            schema: 8,
            zero_threshold: 1e-128,
            count: 3.0,
            positive_spans: vec![Span { offset: 2, length: 1 }],
            positive_buckets: vec![3.0],
            ..Default::default()
        };
        assert_eq!(got, vec![("lat{route=\"/a\"}".to_string(), 1, first), ("lat{}".to_string(), 2, second)]);

        assert_eq!(metrics_response(0, true), b"{}");
        assert!(metrics_response(0, false).is_empty());
        let json: serde_json::Value = serde_json::from_slice(&metrics_response(2, true)).unwrap();
        assert_eq!(json["partialSuccess"]["rejectedDataPoints"], "2");
        assert!(json["partialSuccess"]["errorMessage"].as_str().unwrap().contains("exponential histogram"));
        let pb = ExportMetricsServiceResponse::decode(metrics_response(2, false).as_slice()).unwrap();
        let partial = pb.partial_success.unwrap();
        assert_eq!(partial.rejected_data_points, 2);
        assert!(partial.error_message.contains("not stored"));
    }

    /// OTLP/JSON as an OpenTelemetry SDK sends it: the type comes from the data kind, HELP and
    /// UNIT from `description` and `unit`.
    #[test]
    fn otlp_metadata_from_description_unit_and_data_kind() {
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
          {"name":"http_requests","description":"Requests served.","unit":"1",
           "sum":{"aggregationTemporality":2,"isMonotonic":true,
             "dataPoints":[{"timeUnixNano":"1000000","asDouble":5}]}},
          {"name":"queue_depth","description":"Items waiting.",
           "sum":{"aggregationTemporality":2,"isMonotonic":false,
             "dataPoints":[{"timeUnixNano":"1000000","asInt":"3"}]}},
          {"name":"delta_count","sum":{"aggregationTemporality":1,"isMonotonic":true,
             "dataPoints":[{"timeUnixNano":"1000000","asInt":"3"}]}},
          {"name":"temperature","description":"Room temperature.","unit":"Cel",
           "gauge":{"dataPoints":[{"timeUnixNano":"1000000","asDouble":21.5}]}},
          {"name":"plain","gauge":{"dataPoints":[{"timeUnixNano":"1000000","asDouble":1}]}},
          {"name":"lat","unit":"s","histogram":{"aggregationTemporality":2,
             "dataPoints":[{"timeUnixNano":"1000000","count":"1","sum":1,"bucketCounts":["1"]}]}},
          {"name":"rpc","description":"RPC latency.",
           "summary":{"dataPoints":[{"timeUnixNano":"1000000","count":"1","sum":2}]}},
          {"name":"up_info","description":"Build.","gauge":{"dataPoints":[]},
           "metadata":[{"key":"prometheus.type","value":{"stringValue":"info"}},
                       {"key":"prometheus.family","value":{"stringValue":"up"}}]}
        ]}]}]}"#;
        let batch = decode_metrics_batch_json(body).unwrap();
        assert_eq!(
            batch.metadata,
            vec![
                MetricMetadata::new("http_requests", MetricType::Counter, "Requests served.", "1"),
                MetricMetadata::new("queue_depth", MetricType::Gauge, "Items waiting.", ""),
                MetricMetadata::new("delta_count", MetricType::Gauge, "", ""),
                MetricMetadata::new("temperature", MetricType::Gauge, "Room temperature.", "Cel"),
                MetricMetadata::new("lat", MetricType::Histogram, "", "s"),
                MetricMetadata::new("rpc", MetricType::Summary, "RPC latency.", ""),
                MetricMetadata::new("up", MetricType::Info, "Build.", ""),
            ]
        );
        assert_eq!(batch.samples.len(), 1 + 1 + 1 + 1 + 1 + 3 + 2);
    }

    /// What the agent sends: a counter's series is a monotonic cumulative Sum, a histogram's
    /// flattened series are Gauges naming their family, and decoding gives back the families.
    #[test]
    fn encode_with_families_is_symmetric() {
        let families = FamilyIndex::new([
            MetricMetadata::new("node_cpu_seconds_total", MetricType::Counter, "Seconds the CPUs spent.", ""),
            MetricMetadata::new("lat", MetricType::Histogram, "Latency.", "seconds"),
            MetricMetadata::new("om", MetricType::Counter, "OpenMetrics counter.", ""),
            MetricMetadata::new("temp", MetricType::Gauge, "", ""),
        ]);
        let l = |name: &str, extra: &[(&str, &str)]| {
            let mut pairs = vec![("__name__", name)];
            pairs.extend_from_slice(extra);
            Labels::from_pairs(pairs)
        };
        let samples = vec![
            Sample::new(l("node_cpu_seconds_total", &[("cpu", "0")]), 1000, 12.5),
            Sample::new(l("node_cpu_seconds_total", &[("cpu", "1")]), 1000, 13.5),
            Sample::new(l("lat_bucket", &[("le", "+Inf")]), 1000, 3.0),
            Sample::new(l("lat_sum", &[]), 1000, 1.5),
            Sample::new(l("lat_count", &[]), 1000, 3.0),
            Sample::new(l("om_total", &[]), 1000, 7.0),
            Sample::new(l("om_created", &[]), 1000, 1.0),
            Sample::new(l("temp", &[]), 1000, 20.0),
            Sample::new(l("up", &[]), 1000, 1.0),
        ];
        let wire = encode_metrics_with_metadata(&Labels::default(), &samples, &families);
        let req = ExportMetricsServiceRequest::decode(wire.as_slice()).unwrap();
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let kind = |name: &str| {
            let m = metrics.iter().find(|m| m.name == name).unwrap();
            match &m.data {
                Some(metric::Data::Sum(s)) => {
                    assert!(s.is_monotonic && s.aggregation_temporality == AggregationTemporality::Cumulative as i32);
                    "sum"
                }
                Some(metric::Data::Gauge(_)) => "gauge",
                _ => "other",
            }
        };
        assert_eq!(kind("node_cpu_seconds_total"), "sum");
        assert_eq!(kind("om_total"), "sum");
        assert_eq!(kind("om_created"), "gauge");
        assert_eq!(kind("lat_bucket"), "gauge");
        assert_eq!(kind("up"), "gauge");

        let back = decode_metrics_batch_protobuf(&wire).unwrap();
        let mut got = back.metadata.clone();
        got.sort_by(|a, b| a.metric_family_name.cmp(&b.metric_family_name));
        got.dedup();
        let mut want: Vec<MetricMetadata> = families.iter().cloned().collect();
        want.sort_by(|a, b| a.metric_family_name.cmp(&b.metric_family_name));
        assert_eq!(got, want, "every family once, `up` (no family) without metadata");
        // The samples are what the plain encoding gives.
        let plain = decode_metrics_protobuf(&encode_metrics(&Labels::default(), &samples)).unwrap();
        assert_eq!(back.samples, plain);
        assert!(decode_metrics_batch_protobuf(&encode_metrics(&Labels::default(), &samples)).unwrap().metadata.is_empty());
    }

    #[test]
    fn logs_round_trip_and_garbage_is_an_error() {
        let r = LogRecord {
            labels: Labels::from_pairs([("namespace", "ns"), ("pod", "p")]),
            timestamp_ns: 1_700_000_000_000_000_001,
            body: "hello".into(),
            severity: "INFO".into(),
            attributes: Vec::new(),
        };
        assert_eq!(decode_logs_protobuf(&encode_logs(std::slice::from_ref(&r))).unwrap(), vec![r]);
        assert!(decode_logs_protobuf(b"\xff\xff\xff garbage").is_err());
        assert!(decode_metrics_json(b"{not json").is_err());
    }

    #[test]
    fn log_attributes_round_trip_and_ids_travel_in_their_fields() {
        let attrs = vec![
            ("http_method".to_string(), "GET".to_string()),
            (SPAN_ID_ATTRIBUTE.to_string(), "00f067aa0ba902b7".to_string()),
            (TRACE_ID_ATTRIBUTE.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736".to_string()),
            ("user".to_string(), "ada".to_string()),
        ];
        let r = LogRecord { attributes: attrs.clone(), ..LogRecord::new(Labels::from_pairs([("pod", "p")]), 5, "x", "") };
        let wire = encode_logs(std::slice::from_ref(&r));
        let req = ExportLogsServiceRequest::decode(wire.as_slice()).unwrap();
        let otlp = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(lower_hex(&otlp.trace_id), attrs[2].1);
        assert_eq!(lower_hex(&otlp.span_id), attrs[1].1);
        assert_eq!(otlp.attributes.len(), 2, "ids are not repeated as attributes");
        assert_eq!(decode_logs_protobuf(&wire).unwrap(), vec![r]);
    }

    #[test]
    fn otlp_json_log_attributes_of_every_value_type() {
        let body = br#"{"resourceLogs":[{"resource":{"attributes":[
            {"key":"k8s.pod.name","value":{"stringValue":"p1"}}]},
          "scopeLogs":[{"logRecords":[{"timeUnixNano":"7","body":{"stringValue":"hi"},
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "attributes":[
              {"key":"http.status_code","value":{"intValue":"503"}},
              {"key":"ok","value":{"boolValue":false}},
              {"key":"ratio","value":{"doubleValue":0.5}},
              {"key":"tags","value":{"arrayValue":{"values":[{"stringValue":"a"},{"intValue":"1"}]}}},
              {"key":"req","value":{"kvlistValue":{"values":[{"key":"id","value":{"stringValue":"r1"}}]}}},
              {"key":"user","value":{"stringValue":"ada"}}]},
            {"timeUnixNano":"8","body":{"stringValue":"plain"}}]}]}]}"#;
        let recs = decode_logs_json(body).unwrap();
        let want: Vec<(String, String)> = [
            ("http_status_code", "503"),
            ("ok", "false"),
            ("ratio", "0.5"),
            ("req", r#"{"id":"r1"}"#),
            ("span_id", "eee19b7ec3c1b174"),
            ("tags", r#"["a",1]"#),
            ("trace_id", "5b8efff798038103d269b633813fc60c"),
            ("user", "ada"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(recs[0].attributes, want);
        assert_eq!(recs[0].labels.get("pod"), Some("p1"));
        assert!(recs[1].attributes.is_empty());
    }
}
