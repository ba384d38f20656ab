//! Trino query-completed events: the JSON that Trino's `http-event-listener` POSTs (and its Kafka
//! event listener publishes) for every finished query, turned into per-query samples.
//!
//! Trino serializes `QueryCompletedEvent` with Jackson: `java.time.Duration` fields are ISO-8601
//! strings (`"PT1.8S"`), instants are ISO-8601 timestamps (`"2026-06-30T12:00:01.200Z"`), the
//! resource group id is a list of path segments (`["global","adhoc"]`), and
//! `statistics.cumulativeMemory` is in byte-milliseconds (Trino's UI divides it by 1000 to show
//! byte-seconds). Numbers are also accepted where a duration is expected (seconds).
//!
//! ```
//! let q = pharos_model::trino::parse_query_completed(r#"{
//!   "metadata": {"queryId": "q1", "queryState": "FINISHED"},
//!   "context": {"user": "alice"},
//!   "statistics": {"cpuTime": "PT1.5S", "wallTime": "PT2S"},
//!   "endTime": "2026-06-30T12:00:01.200Z"
//! }"#).unwrap();
//! assert_eq!(q.cpu_seconds, 1.5);
//! ```

use serde_json::Value;

use crate::{Labels, METRIC_NAME, Sample};

/// A query-completed event that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrinoEventError {
    /// The body is not JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The JSON is not a query-completed event.
    #[error("not a Trino QueryCompletedEvent: {0}")]
    Content(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, TrinoEventError>;

/// What Pharos keeps of one completed Trino query.
#[derive(Clone, Debug, PartialEq)]
pub struct TrinoQuery {
    /// `metadata.queryId`.
    pub query_id: String,
    /// `context.user`.
    pub user: String,
    /// `context.source` (client application), empty when absent.
    pub source: String,
    /// `context.clientTags`.
    pub client_tags: Vec<String>,
    /// `context.resourceGroupId`, segments joined with `.`; empty when absent.
    pub resource_group: String,
    /// `metadata.queryState` (`FINISHED` or `FAILED`).
    pub state: String,
    /// `failureInfo.errorCode.name`, empty when the query succeeded.
    pub error_code: String,
    /// `statistics.cpuTime` in seconds.
    pub cpu_seconds: f64,
    /// `statistics.wallTime` in seconds.
    pub wall_seconds: f64,
    /// `statistics.peakUserMemoryBytes`.
    pub peak_memory_bytes: f64,
    /// `statistics.cumulativeMemory` converted from byte-milliseconds to byte-seconds.
    pub cumulative_memory_byte_seconds: f64,
    /// `statistics.totalBytes`: bytes read from sources.
    pub input_bytes: f64,
    /// `statistics.outputBytes`.
    pub output_bytes: f64,
    /// `createTime`, milliseconds since the epoch (0 when absent).
    pub create_time_ms: i64,
    /// `endTime`, milliseconds since the epoch (0 when absent).
    pub end_time_ms: i64,
}

/// Parses one query-completed event (a JSON object).
pub fn parse_query_completed(json: &str) -> Result<TrinoQuery> {
    let v: Value = serde_json::from_str(json).map_err(|e| TrinoEventError::Json(e.to_string()))?;
    from_value(&v)
}

/// Parses a body holding one event object or an array of them.
pub fn parse_query_completed_batch(json: &str) -> Result<Vec<TrinoQuery>> {
    let v: Value = serde_json::from_str(json).map_err(|e| TrinoEventError::Json(e.to_string()))?;
    match &v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| from_value(item).map_err(|e| at_index(i, e)))
            .collect(),
        _ => Ok(vec![from_value(&v)?]),
    }
}

fn at_index(i: usize, e: TrinoEventError) -> TrinoEventError {
    match e {
        TrinoEventError::Content(m) => TrinoEventError::Content(format!("[{i}]: {m}")),
        other => other,
    }
}

fn content(message: impl Into<String>) -> TrinoEventError {
    TrinoEventError::Content(message.into())
}

fn path<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(v, |v, k| v.get(*k)).filter(|v| !v.is_null())
}

fn string_at(v: &Value, keys: &[&str]) -> String {
    path(v, keys).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn number_at(v: &Value, keys: &[&str]) -> Result<f64> {
    match path(v, keys) {
        None => Ok(0.0),
        Some(Value::Number(n)) => Ok(n.as_f64().unwrap_or(0.0)),
        Some(other) => Err(content(format!("{} is not a number: {other}", keys.join(".")))),
    }
}

fn duration_at(v: &Value, keys: &[&str]) -> Result<f64> {
    match path(v, keys) {
        None => Ok(0.0),
        Some(Value::Number(n)) => Ok(n.as_f64().unwrap_or(0.0)),
        Some(Value::String(s)) => parse_iso_duration(s)
            .ok_or_else(|| content(format!("{} is not an ISO-8601 duration: {s:?}", keys.join(".")))),
        Some(other) => Err(content(format!("{} is not a duration: {other}", keys.join(".")))),
    }
}

fn time_at(v: &Value, key: &str) -> Result<i64> {
    match v.get(key).filter(|v| !v.is_null()) {
        None => Ok(0),
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|e| content(format!("{key} is not an RFC 3339 time ({s:?}): {e}"))),
        // Jackson with timestamps enabled writes epoch seconds with a fraction.
        Some(Value::Number(n)) => Ok((n.as_f64().unwrap_or(0.0) * 1000.0).round() as i64),
        Some(other) => Err(content(format!("{key} is not a time: {other}"))),
    }
}

/// Parses an ISO-8601 duration (`PT1.5S`, `PT2M3S`, `P1DT1H`, `-PT0.1S`) into seconds.
pub fn parse_iso_duration(s: &str) -> Option<f64> {
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s),
    };
    let rest = rest.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = 0.0;
    let mut any = false;
    let mut read = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' || c == '-' || c == '+' {
                number.push(c);
            } else {
                let factor = units.iter().find(|(u, _)| *u == c)?.1;
                total += number.parse::<f64>().ok()? * factor;
                number.clear();
                any = true;
            }
        }
        number.is_empty().then_some(())
    };
    read(date, &[('D', 86_400.0)])?;
    if let Some(t) = time {
        read(t, &[('H', 3_600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    any.then_some(sign * total)
}

fn from_value(v: &Value) -> Result<TrinoQuery> {
    if !v.is_object() {
        return Err(content("expected a JSON object"));
    }
    let query_id = string_at(v, &["metadata", "queryId"]);
    if query_id.is_empty() {
        return Err(content("metadata.queryId is missing"));
    }
    let client_tags = path(v, &["context", "clientTags"])
        .and_then(Value::as_array)
        .map(|tags| tags.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let resource_group = match path(v, &["context", "resourceGroupId"]) {
        Some(Value::Array(parts)) => parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("."),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    Ok(TrinoQuery {
        user: string_at(v, &["context", "user"]),
        source: string_at(v, &["context", "source"]),
        client_tags,
        resource_group,
        state: string_at(v, &["metadata", "queryState"]),
        error_code: string_at(v, &["failureInfo", "errorCode", "name"]),
        cpu_seconds: duration_at(v, &["statistics", "cpuTime"])?,
        wall_seconds: duration_at(v, &["statistics", "wallTime"])?,
        peak_memory_bytes: number_at(v, &["statistics", "peakUserMemoryBytes"])?,
        cumulative_memory_byte_seconds: number_at(v, &["statistics", "cumulativeMemory"])? / 1000.0,
        input_bytes: number_at(v, &["statistics", "totalBytes"])?,
        output_bytes: number_at(v, &["statistics", "outputBytes"])?,
        create_time_ms: time_at(v, "createTime")?,
        end_time_ms: time_at(v, "endTime")?,
        query_id,
    })
}

impl TrinoQuery {
    /// The value of a `key=value` client tag (e.g. `team=data-eng` → `team_tag("team")`).
    pub fn client_tag(&self, key: &str) -> Option<&str> {
        self.client_tags.iter().find_map(|t| t.split_once('=').filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim()))
    }

    /// Labels every source adds to the query's samples: `team` from a `team=<x>` client tag.
    pub fn owner_labels(&self) -> Labels {
        match self.client_tag("team") {
            Some(team) if !team.is_empty() => Labels::from_pairs([("team", team)]),
            _ => Labels::default(),
        }
    }

    /// The query's samples at its end time (create time, else 0 when neither is known), each
    /// with `extra` labels (cluster, team, …) under the query's own labels.
    pub fn to_samples(&self, extra: &Labels) -> Vec<Sample> {
        let ts = if self.end_time_ms != 0 { self.end_time_ms } else { self.create_time_ms };
        let base = Labels::from_pairs([
            ("trino_query_id", self.query_id.as_str()),
            ("trino_user", self.user.as_str()),
            ("trino_source", self.source.as_str()),
            ("trino_resource_group", self.resource_group.as_str()),
            ("trino_state", self.state.as_str()),
            ("trino_error_code", self.error_code.as_str()),
        ])
        .merged_under(extra);
        [
            ("trino_query_cpu_seconds", self.cpu_seconds),
            ("trino_query_wall_seconds", self.wall_seconds),
            ("trino_query_peak_memory_bytes", self.peak_memory_bytes),
            ("trino_query_cumulative_memory_byte_seconds", self.cumulative_memory_byte_seconds),
            ("trino_query_input_bytes", self.input_bytes),
            ("trino_query_output_bytes", self.output_bytes),
            ("trino_query_info", 1.0),
        ]
        .into_iter()
        .map(|(name, value)| Sample::new(base.with(METRIC_NAME, name), ts, value))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like the http-event-listener's body for a failed query (fields trimmed).
    const FAILED: &str = r#"{
      "metadata": {"queryId": "20260526_143012_00042_abcde", "transactionId": "t", "query": "SELECT x FROM t",
                   "queryState": "FAILED", "uri": "http://coordinator:8080/v1/query/20260526_143012_00042_abcde"},
      "statistics": {"cpuTime": "PT1M2.5S", "wallTime": "PT1H0.25S", "queuedTime": "PT0.001S",
                     "peakUserMemoryBytes": 1048576, "peakTaskUserMemory": 1, "totalBytes": 5242880,
                     "totalRows": 10, "outputBytes": 2048, "outputRows": 3, "cumulativeMemory": 2.5E9},
      "context": {"user": "alice", "source": "trino-cli", "clientTags": ["team=data-eng", "adhoc"],
                  "resourceGroupId": ["global", "adhoc"], "catalog": "hive"},
      "failureInfo": {"errorCode": {"code": 1, "name": "GENERIC_USER_ERROR", "type": "USER_ERROR"},
                      "failureType": "io.trino.spi.TrinoException", "failureMessage": "boom"},
      "createTime": "2026-05-26T14:30:12.000Z",
      "executionStartTime": "2026-05-26T14:30:12.100Z",
      "endTime": "2026-05-26T14:30:14.500Z"
    }"#;

    #[test]
    fn failed_query_fields() {
        let q = parse_query_completed(FAILED).unwrap();
        assert_eq!(q.query_id, "20260526_143012_00042_abcde");
        assert_eq!((q.user.as_str(), q.source.as_str()), ("alice", "trino-cli"));
        assert_eq!(q.resource_group, "global.adhoc");
        assert_eq!(q.state, "FAILED");
        assert_eq!(q.error_code, "GENERIC_USER_ERROR");
        assert_eq!(q.cpu_seconds, 62.5);
        assert_eq!(q.wall_seconds, 3600.25);
        assert_eq!(q.peak_memory_bytes, 1_048_576.0);
        // 2.5e9 byte-milliseconds = 2.5e6 byte-seconds.
        assert_eq!(q.cumulative_memory_byte_seconds, 2_500_000.0);
        assert_eq!((q.input_bytes, q.output_bytes), (5_242_880.0, 2048.0));
        // 2026-05-26T14:30:14.500Z = 1779805814.5 s since the epoch.
        assert_eq!(q.end_time_ms, 1_779_805_814_500);
        assert_eq!(q.end_time_ms - q.create_time_ms, 2_500);
        assert_eq!(q.client_tag("team"), Some("data-eng"));
        assert_eq!(q.client_tag("adhoc"), None);
    }

    #[test]
    fn samples_carry_query_labels_and_extra_labels() {
        let q = parse_query_completed(FAILED).unwrap();
        let samples = q.to_samples(&Labels::from_pairs([("cluster", "c1"), ("trino_user", "not-this")]));
        assert_eq!(samples.len(), 7);
        let cpu = samples.iter().find(|s| s.labels.metric_name() == Some("trino_query_cpu_seconds")).unwrap();
        assert_eq!(cpu.value, 62.5);
        assert_eq!(cpu.timestamp_ms, q.end_time_ms);
        assert_eq!(cpu.labels.get("cluster"), Some("c1"));
        assert_eq!(cpu.labels.get("trino_user"), Some("alice"));
        assert_eq!(cpu.labels.get("trino_error_code"), Some("GENERIC_USER_ERROR"));
        let info = samples.iter().find(|s| s.labels.metric_name() == Some("trino_query_info")).unwrap();
        assert_eq!(info.value, 1.0);
        assert_eq!(info.labels.get("trino_resource_group"), Some("global.adhoc"));
    }

    #[test]
    fn successful_query_has_no_error_code_and_batches_parse() {
        let ok = r#"{"metadata":{"queryId":"q2","queryState":"FINISHED"},"context":{"user":"bob","clientTags":[]},
                     "statistics":{"cpuTime":"PT0S","wallTime":0.75},"createTime":"2026-01-01T00:00:00Z"}"#;
        let batch = parse_query_completed_batch(&format!("[{ok},{FAILED}]")).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].error_code, "");
        assert_eq!(batch[0].wall_seconds, 0.75);
        let info = batch[0].to_samples(&Labels::default());
        // Without endTime the samples sit at createTime (2026-01-01T00:00:00Z).
        assert_eq!(info[0].timestamp_ms, 1_767_225_600_000);
        assert_eq!(info[0].labels.get("trino_error_code"), None);
    }

    #[test]
    fn bad_input_is_rejected_with_a_reason() {
        assert!(matches!(parse_query_completed("{not json"), Err(TrinoEventError::Json(_))));
        assert_eq!(
            parse_query_completed(r#"{"metadata":{}}"#).unwrap_err().to_string(),
            "not a Trino QueryCompletedEvent: metadata.queryId is missing"
        );
        let bad_duration = r#"{"metadata":{"queryId":"q"},"statistics":{"cpuTime":"1.5s"}}"#;
        assert!(parse_query_completed(bad_duration).unwrap_err().to_string().contains("statistics.cpuTime"));
        let batch = parse_query_completed_batch(r#"[{"metadata":{"queryId":"q"}}, 3]"#).unwrap_err();
        assert_eq!(batch.to_string(), "not a Trino QueryCompletedEvent: [1]: expected a JSON object");
    }

    #[test]
    fn iso_durations() {
        assert_eq!(parse_iso_duration("PT0.001S"), Some(0.001));
        assert_eq!(parse_iso_duration("P1DT2H3M4S"), Some(86_400.0 + 7_200.0 + 180.0 + 4.0));
        assert_eq!(parse_iso_duration("-PT1S"), Some(-1.0));
        assert_eq!(parse_iso_duration("PT"), None);
        assert_eq!(parse_iso_duration("PT5X"), None);
        assert_eq!(parse_iso_duration("5S"), None);
    }
}
