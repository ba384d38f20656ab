//! `GET /federate`: Prometheus federation. Another Prometheus scrapes Pharos' latest sample of
//! every series some `match[]` selector selects, as it scrapes a Prometheus' `/federate`.
//!
//! As Prometheus answers it: for each series its newest sample no older than the lookback
//! delta (5 minutes), with its timestamp; a series whose newest sample is a staleness marker is
//! left out; a series without `instance` gets `instance=""` as its last label, as Prometheus
//! adds it; no `match[]` gives an empty answer; a `match[]` that is not a series selector is a
//! 400. The format is negotiated from `Accept` as Prometheus' `expfmt` does:
//! - the text exposition format (the default): series grouped by metric name, each name under
//!   `# TYPE <name> untyped`; native histograms are left out (the format cannot carry them);
//! - the length-delimited protobuf format (`application/vnd.google.protobuf;
//!   proto=io.prometheus.client.MetricFamily; encoding=delimited`, what a Prometheus scraping
//!   with native histograms enabled asks for first): float samples in `UNTYPED` families,
//!   native histograms in `HISTOGRAM` (or `GAUGE_HISTOGRAM`) families; a new family starts
//!   wherever the name or the type changes, as in Prometheus' federation.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use pharos_model::client_model::{self, Metric, MetricFamily, MetricType, Untyped};
use pharos_model::{FloatHistogram, LabelMatcher, Labels, METRIC_NAME, MetricsReader};

use super::AppState;
use super::params::now_ms;
use super::prometheus::run_blocking;
use super::series_meta::MultiParams;
use crate::error::{Error, Result};

/// How far back a series' newest sample may lie (Prometheus' default lookback delta).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// The exposition format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /federate` (a form body is read too).
pub async fn federate(State(state): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let protobuf = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(wants_protobuf);
    let answered = async {
        let groups = MultiParams::parse(q, &body)?.selectors()?.unwrap_or_default();
        let reader = state.metrics.clone();
        run_blocking(move || {
            let latest = latest_samples(reader.as_ref(), &groups, now_ms())?;
            Ok(if protobuf { client_model::encode_delimited(&families(&latest)) } else { text(&latest).into_bytes() })
        })
        .await
    };
    match answered.await {
        Ok(body) => ([(header::CONTENT_TYPE, if protobuf { client_model::CONTENT_TYPE } else { TEXT_FORMAT })], body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Whether `Accept` prefers the length-delimited protobuf format to the text format: the media
/// range of the highest quality Pharos can answer (the first of equal ones), as Prometheus'
/// `expfmt.Negotiate` picks; OpenMetrics and other ranges are passed over.
pub fn wants_protobuf(accept: &str) -> bool {
    let mut best: Option<(f64, bool)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let (mut q, mut proto, mut encoding) = (1.0, "", "");
        for p in parts {
            match p.split_once('=').map(|(k, v)| (k.trim(), v.trim().trim_matches('"'))) {
                Some(("q", v)) => q = v.parse().unwrap_or(0.0),
                Some(("proto", v)) => proto = v,
                Some(("encoding", v)) => encoding = v,
                _ => {}
            }
        }
        let kind = match media.as_str() {
            "application/vnd.google.protobuf" if proto == "io.prometheus.client.MetricFamily" && encoding == "delimited" => true,
            "text/plain" | "text/*" | "*/*" => false,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, kind));
        }
    }
    best.is_some_and(|(_, protobuf)| protobuf)
}

/// A series' newest sample: a float or a native histogram.
#[derive(Clone, Debug, PartialEq)]
pub enum Newest {
    Float(f64),
    Histogram(Arc<FloatHistogram>),
}

/// The newest sample in `[now - LOOKBACK_MS, now]` of every series matching any of `groups`,
/// with its time, keyed by metric name and label set (so families come out sorted and whole);
/// series whose newest sample is a staleness marker left out.
pub fn latest_samples(reader: &dyn MetricsReader, groups: &[Vec<LabelMatcher>], now: i64) -> Result<BTreeMap<(String, Labels), (i64, Newest)>> {
    let mut newest: BTreeMap<(String, Labels), (i64, Newest, bool)> = BTreeMap::new();
    let mut offer = |labels: Labels, t: i64, sample: Newest, stale: bool| {
        let key = (labels.metric_name().unwrap_or_default().to_string(), labels);
        if newest.get(&key).is_none_or(|(held, _, _)| t > *held) {
            newest.insert(key, (t, sample, stale));
        }
    };
    for g in groups {
        for s in reader.select_series(g, now - LOOKBACK_MS, now).map_err(Error::Internal)? {
            if let Some(&(t, v)) = s.samples.last() {
                offer(s.labels, t, Newest::Float(v), pharos_model::otlp::is_stale_nan(v));
            }
        }
        for s in reader.select_histograms(g, now - LOOKBACK_MS, now).map_err(Error::Internal)? {
            if let Some((t, h)) = s.samples.last() {
                offer(s.labels, *t, Newest::Histogram(h.clone()), pharos_model::otlp::is_stale_nan(h.sum));
            }
        }
    }
    Ok(newest.into_iter().filter(|(_, (_, _, stale))| !stale).map(|(k, (t, s, _))| (k, (t, s))).collect())
}

/// The text exposition of `latest` (float samples only); see the module docs.
pub fn text(latest: &BTreeMap<(String, Labels), (i64, Newest)>) -> String {
    let mut out = String::new();
    let mut family: Option<&str> = None;
    for ((name, labels), (t, sample)) in latest {
        let Newest::Float(v) = sample else { continue };
        if family != Some(name.as_str()) {
            family = Some(name);
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push_str(" untyped\n");
        }
        out.push_str(name);
        let mut first = true;
        for (k, val) in exposed_labels(labels) {
            out.push(if first { '{' } else { ',' });
            first = false;
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(val, &mut out);
            out.push('"');
        }
        if !first {
            out.push('}');
        }
        out.push(' ');
        out.push_str(&crate::logql::template::go_float(*v, 'g', None));
        out.push(' ');
        out.push_str(&t.to_string());
        out.push('\n');
    }
    out
}

/// The protobuf families of `latest`; see the module docs.
pub fn families(latest: &BTreeMap<(String, Labels), (i64, Newest)>) -> Vec<MetricFamily> {
    let mut out: Vec<MetricFamily> = Vec::new();
    for ((name, labels), (t, sample)) in latest {
        let (kind, metric) = match sample {
            Newest::Float(v) => (MetricType::Untyped, Metric { untyped: Some(Untyped { value: *v }), ..Default::default() }),
            Newest::Histogram(h) => (client_model::histogram_type(h), Metric { histogram: Some(client_model::histogram(h)), ..Default::default() }),
        };
        let label = exposed_labels(labels).map(|(k, v)| client_model::LabelPair { name: k.to_string(), value: v.to_string() }).collect();
        let metric = Metric { label, timestamp_ms: Some(*t), ..metric };
        match out.last_mut() {
            Some(f) if f.name.as_deref() == Some(name.as_str()) && f.r#type == Some(kind as i32) => f.metric.push(metric),
            _ => out.push(MetricFamily { name: Some(name.clone()), help: None, r#type: Some(kind as i32), metric: vec![metric] }),
        }
    }
    out
}

/// A series' labels as federation writes them: without the name, and with `instance=""` last
/// when it has no `instance`, as Prometheus adds it, so that a Prometheus federating with
/// `honor_labels` does not give the series its own `instance` (Pharos has no other external
/// labels).
fn exposed_labels(labels: &Labels) -> impl Iterator<Item = (&str, &str)> {
    let missing = labels.get("instance").is_none().then_some(("instance", ""));
    labels.iter().filter(|(k, _)| *k != METRIC_NAME).chain(missing)
}

/// A label value as the text format writes it: `\`, `"` and newlines escaped.
fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}
