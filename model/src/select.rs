//! Reading stored data back: label matchers and the reader traits the query layer uses.
//!
//! The collector implements [`MetricsReader`] and [`LogsReader`] over its head and published
//! files; the query layer evaluates PromQL/LogQL on top of them without knowing about storage.

use regex::Regex;

use crate::{Labels, LogRecord};

/// How a matcher compares a label value.
#[derive(Clone, Debug)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored, as in Prometheus)
    Regex(Regex),
    /// `!~` (fully anchored)
    NotRegex(Regex),
}

/// One label matcher: `name op "value"`. A missing label matches as the empty string.
#[derive(Clone, Debug)]
pub struct LabelMatcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: MatchOp,
    /// The right-hand side as written.
    pub value: String,
}

impl LabelMatcher {
    /// Builds a matcher from its operator text (`=`, `!=`, `=~`, `!~`).
    pub fn new(name: &str, op: &str, value: &str) -> Result<Self, String> {
        let anchored = || {
            Regex::new(&format!("^(?:{value})$"))
                .map_err(|e| format!("invalid regular expression {value:?} for label {name:?}: {e}"))
        };
        let op = match op {
            "=" => MatchOp::Equal,
            "!=" => MatchOp::NotEqual,
            "=~" => MatchOp::Regex(anchored()?),
            "!~" => MatchOp::NotRegex(anchored()?),
            other => return Err(format!("unknown match operator {other:?}")),
        };
        Ok(LabelMatcher { name: name.to_string(), op, value: value.to_string() })
    }

    /// Shorthand for an equality matcher.
    pub fn equal(name: &str, value: &str) -> Self {
        LabelMatcher { name: name.into(), op: MatchOp::Equal, value: value.into() }
    }

    /// True when `value` (empty when the label is absent) satisfies this matcher.
    pub fn matches_value(&self, value: &str) -> bool {
        match &self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex(re) => re.is_match(value),
            MatchOp::NotRegex(re) => !re.is_match(value),
        }
    }

    /// True when the label set satisfies this matcher.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).unwrap_or(""))
    }
}

/// True when every matcher matches.
pub fn matches_all(matchers: &[LabelMatcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// A series and its samples `(timestamp_ms, value)` in time order, without duplicates removed:
/// a timestamp seen twice means the data was stored twice.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Labels including `__name__`.
    pub labels: Labels,
    /// Samples sorted by timestamp.
    pub samples: Vec<(i64, f64)>,
}

/// Read access to stored metrics (head and published files merged).
pub trait MetricsReader: Send + Sync {
    /// Every series matching all `matchers`, with its samples in `[start_ms, end_ms]`; series
    /// without samples in the range are omitted.
    fn select_series(
        &self,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, String>;
}

/// Read access to stored log records (head and published splits merged).
pub trait LogsReader: Send + Sync {
    /// Log records whose stream labels match all `matchers`, with timestamps in
    /// `[start_ns, end_ns]`, in no particular order. `contains` are substrings every returned
    /// line must contain (the store may use them to narrow its search).
    fn select_logs(
        &self,
        matchers: &[LabelMatcher],
        contains: &[String],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<LogRecord>, String>;

    /// The distinct stream label sets matching all `matchers` with entries in
    /// `[start_ns, end_ns]`, sorted. The default reads every record via [`Self::select_logs`];
    /// a store can answer from its stream index instead.
    fn log_streams(
        &self,
        matchers: &[LabelMatcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<Labels>, String> {
        let mut streams: Vec<Labels> = self
            .select_logs(matchers, &[], start_ns, end_ns)?
            .into_iter()
            .filter(|r| r.timestamp_ns >= start_ns && r.timestamp_ns <= end_ns)
            .map(|r| r.labels)
            .collect();
        streams.sort();
        streams.dedup();
        Ok(streams)
    }

    /// The sorted label names of the streams matching `matchers` in `[start_ns, end_ns]`
    /// (all streams when `matchers` is empty).
    fn log_label_names(
        &self,
        matchers: &[LabelMatcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<String>, String> {
        let mut names: Vec<String> = self
            .log_streams(matchers, start_ns, end_ns)?
            .iter()
            .flat_map(|l| l.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The sorted values of label `name` over the streams matching `matchers` in
    /// `[start_ns, end_ns]`.
    fn log_label_values(
        &self,
        name: &str,
        matchers: &[LabelMatcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<String>, String> {
        let mut values: Vec<String> = self
            .log_streams(matchers, start_ns, end_ns)?
            .iter()
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_matcher_kinds_and_anchoring() {
        let l = Labels::from_pairs([("job", "node"), ("mode", "idle")]);
        assert!(LabelMatcher::new("job", "=", "node").unwrap().matches(&l));
        assert!(LabelMatcher::new("job", "!=", "x").unwrap().matches(&l));
        assert!(LabelMatcher::new("mode", "=~", "id.*").unwrap().matches(&l));
        assert!(!LabelMatcher::new("mode", "=~", "id").unwrap().matches(&l), "regex is anchored");
        assert!(LabelMatcher::new("mode", "!~", "user|system").unwrap().matches(&l));
        assert!(LabelMatcher::new("absent", "=", "").unwrap().matches(&l));
        assert!(LabelMatcher::new("x", "=~", "(").is_err());
    }
}
