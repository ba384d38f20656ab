//! `GET /federate`: Prometheus federation. Another Prometheus scrapes Pharos' latest sample of
//! every series some `match[]` selector selects, in the text exposition format, as it scrapes a
//! Prometheus' `/federate`.
//!
//! As Prometheus answers it: for each series its newest sample no older than the lookback
//! delta (5 minutes), with its timestamp; staleness markers are left out (the format cannot
//! carry them); series are grouped by metric name, each name under `# TYPE <name> untyped`;
//! no `match[]` gives an empty answer; a `match[]` that is not a series selector is a 400.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use pharos_model::{LabelMatcher, Labels, METRIC_NAME, MetricsReader};

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
pub async fn federate(State(state): State<AppState>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let answered = async {
        let groups = MultiParams::parse(q, &body)?.selectors()?.unwrap_or_default();
        let reader = state.metrics.clone();
        run_blocking(move || exposition(reader.as_ref(), &groups, now_ms())).await
    };
    match answered.await {
        Ok(text) => ([(header::CONTENT_TYPE, TEXT_FORMAT)], text).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The text exposition of the newest sample in `[now - LOOKBACK_MS, now]` of every series
/// matching any of `groups`; see the module docs.
pub fn exposition(reader: &dyn MetricsReader, groups: &[Vec<LabelMatcher>], now: i64) -> Result<String> {
    // Keyed by metric name, then label set: the families come out sorted, each one whole.
    let mut latest: BTreeMap<(String, Labels), (i64, f64)> = BTreeMap::new();
    for g in groups {
        for s in reader.select_series(g, now - LOOKBACK_MS, now).map_err(Error::Internal)? {
            if let Some(&(t, v)) = s.samples.last()
                && !pharos_model::otlp::is_stale_nan(v)
            {
                latest.insert((s.labels.metric_name().unwrap_or_default().to_string(), s.labels), (t, v));
            }
        }
    }
    let mut out = String::new();
    let mut family: Option<&str> = None;
    for ((name, labels), (t, v)) in &latest {
        if family != Some(name.as_str()) {
            family = Some(name);
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push_str(" untyped\n");
        }
        out.push_str(name);
        let mut first = true;
        for (k, val) in labels.iter().filter(|(k, _)| *k != METRIC_NAME) {
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
    Ok(out)
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
