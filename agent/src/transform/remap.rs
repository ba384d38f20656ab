//! `type: remap`: a VRL program compiled once at config load and run on every log record.
//!
//! The event a program sees (and what is read back after it ran):
//!
//! | path | value | read back |
//! |---|---|---|
//! | `.message` | the record body (string) | the body; a non-string is JSON-encoded; absent or `null` is an empty body |
//! | `.timestamp` | the record time (timestamp) | a timestamp, or an RFC 3339 string; anything else keeps the original time |
//! | `.severity` | `TRACE`…`FATAL`, absent when unknown | a string (known level names are normalized, `warning` → `WARN`); absent or `null` clears it |
//! | `.labels` | every stream label (`cluster`, `node`, `namespace`, `pod`, `container`, `stream`, `team`, …) as strings | the label set: names are sanitized (`.`/`-` → `_`), scalars become strings, `null`/`""`/objects/arrays drop the label |
//! | `.attributes` | the record's attributes (OTLP log-record attributes, shipped as such; Loki's structured metadata) as an object of strings, empty when there are none | the attributes: scalars become strings, objects and arrays their JSON text, `null` drops one; absent or not an object: none |
//! | `.kubernetes` | read-only view in Vector's names: `pod_namespace`, `pod_name`, `pod_uid`, `container_name`, `pod_node_name`, `pod_owner` (`Kind/name`), `pod_labels` (all the pod's labels, when the kubelet knows the pod) | ignored |
//!
//! Any other field a program creates (e.g. the keys of `merge(., parse_json!(.message))`) is
//! scratch space: it is not shipped unless the program moves it into `.message`, `.severity`,
//! `.timestamp`, `.labels` or `.attributes` (e.g. `.attributes = parse_json!(.message)`).

use std::collections::BTreeMap;

use pharos_model::{Labels, LogRecord};
use prometheus_client::metrics::counter::Counter;
use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::state::ExternalEnv;
use vrl::compiler::{CompileConfig, Program, TargetValue, TimeZone};
use vrl::value::kind::Collection;
use vrl::value::{Kind, KeyString, ObjectMap, Secrets, Value};

use super::config::RemapConfig;
use crate::config::ConfigError;

/// The type of the event at the start of a program (lets VRL check e.g. that `.message` is a
/// string, so `replace(.message, …)` needs no `!`).
fn event_kind() -> Kind {
    let strings = || Kind::object(Collection::from_unknown(Kind::bytes()));
    let kubernetes = Collection::from_unknown(Kind::bytes()).with_known("pod_labels", strings().or_undefined());
    Kind::object(
        Collection::empty()
            .with_known("message", Kind::bytes())
            .with_known("timestamp", Kind::timestamp())
            .with_known("severity", Kind::bytes().or_undefined())
            .with_known("labels", strings())
            .with_known("attributes", strings())
            .with_known("kubernetes", Kind::object(kubernetes).or_undefined()),
    )
}

/// Compiles a VRL program with the standard library; the error is VRL's own diagnostic (it
/// points at line and column, e.g. `┌─ :2:7`).
pub fn compile(source: &str) -> Result<Program, String> {
    let external = ExternalEnv::new_with_kind(event_kind(), Kind::any_object());
    match vrl::compiler::compile_with_external(source, &vrl::stdlib::all(), &external, CompileConfig::default()) {
        Ok(result) => Ok(result.program),
        Err(diagnostics) => Err(vrl::diagnostic::Formatter::new(source, diagnostics).to_string()),
    }
}

/// What a remap transform did with one record.
#[derive(Debug, PartialEq)]
pub enum RemapOutcome {
    /// The record goes on (changed by the program, or the original after a failure that does
    /// not drop).
    Keep(LogRecord),
    /// The record is dropped (`abort`, or a failure with `drop_on_error`).
    Drop,
}

/// One compiled remap transform with its counters.
pub struct RemapTransform {
    name: String,
    program: Program,
    runtime: Runtime,
    timezone: TimeZone,
    drop_on_error: bool,
    drop_on_abort: bool,
    errors: Counter,
    dropped: Counter,
}

impl std::fmt::Debug for RemapTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemapTransform").field("name", &self.name).finish_non_exhaustive()
    }
}

impl RemapTransform {
    /// Compiles the transform configured at `at` (e.g. `logs.transforms[0]`); the error names
    /// that field (and the file, for `file:`) and carries VRL's diagnostic.
    pub fn build(config: &RemapConfig, name: String, at: &str) -> Result<RemapTransform, ConfigError> {
        let (source, field) = config.program_text(at)?;
        let program = compile(&source)
            .map_err(|diagnostic| ConfigError { field, message: format!("VRL program does not compile:{diagnostic}") })?;
        Ok(RemapTransform {
            name,
            program,
            runtime: Runtime::default(),
            timezone: TimeZone::parse("UTC").unwrap_or_default(),
            drop_on_error: config.drop_on_error,
            drop_on_abort: config.drop_on_abort,
            errors: Counter::default(),
            dropped: Counter::default(),
        })
    }

    /// Counts into these counters (the agent's `/metrics` families) instead of private ones.
    pub fn with_counters(mut self, errors: Counter, dropped: Counter) -> RemapTransform {
        self.errors = errors;
        self.dropped = dropped;
        self
    }

    /// The transform's name in metrics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the program on `record`; `pod_labels` are the pod's labels when the kubelet knows
    /// the pod (shown as `.kubernetes.pod_labels`).
    pub fn apply(&mut self, record: LogRecord, pod_labels: Option<&BTreeMap<String, String>>) -> RemapOutcome {
        let mut target = TargetValue { value: event(&record, pod_labels), metadata: Value::Object(ObjectMap::new()), secrets: Secrets::default() };
        let result = self.runtime.resolve(&mut target, &self.program, &self.timezone);
        self.runtime.clear();
        match result {
            Ok(_) => RemapOutcome::Keep(read_back(target.value, record)),
            Err(Terminate::Abort(_)) if self.drop_on_abort => {
                self.dropped.inc();
                RemapOutcome::Drop
            }
            Err(Terminate::Abort(_)) => RemapOutcome::Keep(record),
            Err(error) => {
                self.errors.inc();
                tracing::debug!(transform = %self.name, error = %error, "VRL program failed on a log record");
                if self.drop_on_error {
                    self.dropped.inc();
                    RemapOutcome::Drop
                } else {
                    RemapOutcome::Keep(record)
                }
            }
        }
    }
}

fn string_map<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    Value::Object(pairs.map(|(k, v)| (KeyString::from(k), Value::from(v))).collect())
}

/// The event a program sees for `record` (layout in the module docs).
pub fn event(record: &LogRecord, pod_labels: Option<&BTreeMap<String, String>>) -> Value {
    let mut e = ObjectMap::new();
    e.insert("message".into(), Value::from(record.body.as_str()));
    e.insert("timestamp".into(), Value::Timestamp(chrono::DateTime::from_timestamp_nanos(record.timestamp_ns)));
    if !record.severity.is_empty() {
        e.insert("severity".into(), Value::from(record.severity.as_str()));
    }
    e.insert("labels".into(), string_map(record.labels.iter()));
    e.insert("attributes".into(), string_map(record.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
    let l = &record.labels;
    let mut k = ObjectMap::new();
    for (name, label) in [
        ("pod_namespace", "namespace"),
        ("pod_name", "pod"),
        ("pod_uid", "pod_uid"),
        ("container_name", "container"),
        ("pod_node_name", "node"),
    ] {
        if let Some(v) = l.get(label) {
            k.insert(name.into(), Value::from(v));
        }
    }
    if let (Some(kind), Some(name)) = (l.get("owner_kind"), l.get("owner_name")) {
        k.insert("pod_owner".into(), Value::from(format!("{kind}/{name}")));
    }
    if let Some(labels) = pod_labels {
        k.insert("pod_labels".into(), string_map(labels.iter().map(|(a, b)| (a.as_str(), b.as_str()))));
    }
    if !k.is_empty() {
        e.insert("kubernetes".into(), Value::Object(k));
    }
    Value::Object(e)
}

/// A label name from any string: characters other than ASCII letters, digits and `_` become
/// `_`, and a leading digit gets a `_` in front (`app.kubernetes.io/name` →
/// `app_kubernetes_io_name`).
pub fn sanitize_label_name(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A scalar as label/body text; `None` for null, objects and arrays.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null | Value::Object(_) | Value::Array(_) => None,
        Value::Timestamp(t) => Some(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        other => other.to_str_lossy().map(|s| s.into_owned()),
    }
}

/// The record after the program: the original with message, timestamp, severity, labels and
/// attributes taken from the event (rules in the module docs).
fn read_back(event: Value, original: LogRecord) -> LogRecord {
    let Value::Object(mut e) = event else {
        // `. = "text"` and the like: the event is no longer an object; keep the record but use
        // the value as the body.
        let body = scalar_text(&event).unwrap_or_else(|| serde_json::to_string(&event).unwrap_or_default());
        return LogRecord { body, ..original };
    };
    let body = match e.remove("message") {
        None | Some(Value::Null) => String::new(),
        Some(v) => scalar_text(&v).unwrap_or_else(|| serde_json::to_string(&v).unwrap_or_default()),
    };
    let timestamp_ns = match e.get("timestamp") {
        Some(Value::Timestamp(t)) => t.timestamp_nanos_opt().unwrap_or(original.timestamp_ns),
        Some(v) => v
            .to_str_lossy()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
            .and_then(|t| t.timestamp_nanos_opt())
            .unwrap_or(original.timestamp_ns),
        None => original.timestamp_ns,
    };
    let severity = match e.get("severity").and_then(scalar_text) {
        Some(s) => {
            let s = s.trim();
            crate::tail::multiline::level(s).map_or_else(|| s.to_string(), str::to_string)
        }
        None => String::new(),
    };
    let labels = match e.get("labels") {
        Some(Value::Object(map)) => Labels::from_pairs(
            map.iter().filter_map(|(k, v)| scalar_text(v).map(|text| (sanitize_label_name(k.as_str()), text))),
        ),
        // `.labels` removed or replaced by a non-object: the record keeps no labels it could
        // not be routed without — keep the originals.
        _ => original.labels,
    };
    let attributes = match e.get("attributes") {
        Some(Value::Object(map)) => pharos_model::normalize_attributes(
            map.iter()
                .filter_map(|(k, v)| {
                    let text = match v {
                        Value::Null => return None,
                        Value::Object(_) | Value::Array(_) => serde_json::to_string(v).unwrap_or_default(),
                        other => scalar_text(other)?,
                    };
                    Some((k.to_string(), text))
                })
                .collect(),
        ),
        _ => Vec::new(),
    };
    LogRecord { labels, timestamp_ns, body, severity, attributes }
}

#[cfg(test)]
#[path = "remap_tests.rs"]
mod tests;
