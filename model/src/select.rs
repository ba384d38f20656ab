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

/// An exemplar: one observation of a series picked as an example, with labels of its own
/// (usually a `trace_id`).
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// The exemplar's labels (`trace_id`, `span_id`, …).
    pub labels: Labels,
    /// The observed value.
    pub value: f64,
    /// When it was observed, ms since the epoch.
    pub timestamp_ms: i64,
}

/// The exemplars of one series, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesExemplars {
    /// The series' labels.
    pub series: Labels,
    /// Its exemplars, oldest first.
    pub exemplars: Vec<Exemplar>,
}

/// One series' native histogram samples, in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSeries {
    /// The series' labels.
    pub labels: Labels,
    /// `(timestamp_ms, histogram)` in time order, one per timestamp.
    pub samples: Vec<(i64, std::sync::Arc<crate::FloatHistogram>)>,
}

/// Where [`MetricsReader::stream_series`] hands each series' samples: `(index, samples)`.
pub type SeriesSink<'a> = dyn Fn(usize, &[(i64, f64)]) + Sync + 'a;

/// [`MetricsReader::stream_series`] over series already selected: `plan` gets their label sets,
/// and if it accepts, `sink` every series' samples by index. Returns whether `plan` accepted.
pub fn hand_over(series: &[Series], plan: &mut dyn FnMut(&[Labels]) -> bool, sink: &SeriesSink<'_>) -> bool {
    let labels: Vec<Labels> = series.iter().map(|s| s.labels.clone()).collect();
    if !plan(&labels) {
        return false;
    }
    for (i, s) in series.iter().enumerate() {
        sink(i, &s.samples);
    }
    true
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

    /// [`MetricsReader::select_series`] for a caller that reduces each series on its own, so
    /// that the samples of all series need not be in memory at once. `plan` first gets the
    /// label sets of every series that may match, sorted (some may turn out to have no samples
    /// in the range). If it returns true, `sink(i, samples)` is called once for each of them
    /// that has samples in the range, `i` being its index in that list and `samples` what
    /// `select_series` would give it; in any order, possibly from several threads at once.
    /// Returns false when `plan` declined; then nothing is handed over.
    fn stream_series(
        &self,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
        plan: &mut dyn FnMut(&[Labels]) -> bool,
        sink: &SeriesSink<'_>,
    ) -> Result<bool, String> {
        Ok(hand_over(&self.select_series(matchers, start_ms, end_ms)?, plan, sink))
    }

    /// The native histogram samples in `[start_ms, end_ms]` of every series matching all
    /// `matchers`, one entry per series, sorted by labels. The default stores none.
    fn select_histograms(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> Result<Vec<HistogramSeries>, String> {
        let _ = (matchers, start_ms, end_ms);
        Ok(Vec::new())
    }

    /// HELP/TYPE/UNIT per metric family name (only `metric` when given): the distinct metadata
    /// seen for each family. The default knows none.
    fn metric_metadata(
        &self,
        metric: Option<&str>,
    ) -> Result<std::collections::BTreeMap<String, Vec<crate::MetricMetadata>>, String> {
        let _ = metric;
        Ok(Default::default())
    }

    /// The exemplars with timestamps in `[start_ms, end_ms]` of the series matching any of
    /// `selectors` (each a conjunction of matchers), one entry per series. The default stores
    /// none.
    fn exemplars(&self, selectors: &[Vec<LabelMatcher>], start_ms: i64, end_ms: i64) -> Result<Vec<SeriesExemplars>, String> {
        let _ = (selectors, start_ms, end_ms);
        Ok(Vec::new())
    }
}

/// Which end of the time range a limited log search keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The oldest entries first.
    Forward,
    /// The newest entries first (Loki's default).
    Backward,
}

/// A log search a [`LogsReader`] runs: the stream selector, substring filters the store may
/// answer from its index, the time range, and an optional limit.
pub struct LogSearch<'a> {
    /// Every matcher must match the stream labels.
    pub matchers: &'a [LabelMatcher],
    /// Each group is a disjunction: a returned line contains at least one string of every group
    /// (case-sensitive substrings, checked exactly). `|= "a"` is the group `["a"]`; a regex
    /// filter contributes the literals one of which starts every match.
    pub contains_any: Vec<Vec<String>>,
    /// Label equalities `(name, value)` (non-empty values) a returned record satisfies, where a
    /// record's `name` is its stream label when the stream has one, else its attribute (LogQL's
    /// `| name="value"` right after the selector, when `name` is structured metadata). The
    /// store may answer them from an attribute index; they are checked exactly.
    pub label_equals: Vec<(String, String)>,
    /// First timestamp (inclusive).
    pub start_ns: i64,
    /// Last timestamp (inclusive).
    pub end_ns: i64,
    /// `Some((n, direction))`: only the `n` newest (backward) or oldest (forward) records that
    /// pass every filter and `keep` are needed. The answer then holds every such record whose
    /// timestamp is among the `n` first in that direction, ties at the boundary included, so a
    /// caller that sorts and truncates gets exactly what an unlimited search would give.
    pub limit: Option<(usize, Direction)>,
    /// Further predicate a record must pass (the rest of a LogQL pipeline), applied after the
    /// filters above and before the limit counts the record.
    pub keep: Option<&'a (dyn Fn(&LogRecord) -> bool + Sync)>,
    /// True when neither the caller nor `keep` reads the `body` of the returned records (a
    /// metric query counting the lines that pass `|=` filters). The store may then return
    /// records with an empty body when it decided every `contains_any` group without reading
    /// the line (an index that answers them exactly); every other field is filled as usual.
    pub body_unused: bool,
    /// True when neither the caller nor `keep` reads the `severity` of the returned records
    /// (the Loki API, which has no such field). The store may then leave it empty: reading it
    /// is a dictionary lookup per record.
    pub severity_unused: bool,
}

impl<'a> LogSearch<'a> {
    /// A search without substring filters, limit or `keep`.
    pub fn new(matchers: &'a [LabelMatcher], start_ns: i64, end_ns: i64) -> Self {
        LogSearch {
            matchers,
            contains_any: Vec::new(),
            label_equals: Vec::new(),
            start_ns,
            end_ns,
            limit: None,
            keep: None,
            body_unused: false,
            severity_unused: false,
        }
    }

    /// True when the record passes the range, matchers, substring groups and `keep`.
    pub fn accepts(&self, r: &LogRecord) -> bool {
        r.timestamp_ns >= self.start_ns
            && r.timestamp_ns <= self.end_ns
            && self.accepts_body(&r.body)
            && matches_all(self.matchers, &r.labels)
            && self.accepts_label_equals(r)
            && self.keep.is_none_or(|k| k(r))
    }

    /// True when the record satisfies every [`Self::label_equals`] pair.
    pub fn accepts_label_equals(&self, r: &LogRecord) -> bool {
        self.label_equals.iter().all(|(name, value)| {
            r.labels.get(name).or_else(|| r.attribute(name)).is_some_and(|v| v == value)
        })
    }

    /// True when `body` contains a string of every `contains_any` group.
    pub fn accepts_body(&self, body: &str) -> bool {
        self.contains_any.iter().all(|g| g.iter().any(|s| body.contains(s.as_str())))
    }
}

/// Records of one stream with one severity and one set of attributes: their timestamps
/// ([`LogsReader::count_logs`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogGroup {
    /// The stream's labels.
    pub labels: Labels,
    /// The records' severity (empty when unknown or not asked for: [`LogSearch::severity_unused`]).
    pub severity: String,
    /// The records' attributes.
    pub attributes: Vec<(String, String)>,
    /// Their timestamps.
    pub timestamps_ns: Vec<i64>,
}

/// `records` grouped as [`LogsReader::count_logs`] answers: one group per run of records
/// with the same stream, severity and attributes (records of a stream usually come together).
pub fn group_records(records: Vec<LogRecord>) -> Vec<LogGroup> {
    let mut out: Vec<LogGroup> = Vec::new();
    for r in records {
        match out.last_mut() {
            Some(g) if g.labels == r.labels && g.severity == r.severity && g.attributes == r.attributes => {
                g.timestamps_ns.push(r.timestamp_ns)
            }
            _ => out.push(LogGroup {
                labels: r.labels,
                severity: r.severity,
                attributes: r.attributes,
                timestamps_ns: vec![r.timestamp_ns],
            }),
        }
    }
    out
}

/// Cuts `records` to what a search with `limit` must answer: the records whose timestamp is
/// among the first `n` in `direction`, ties with the `n`-th included. Sorts them in
/// `direction` order.
pub fn cut_to_limit(records: &mut Vec<LogRecord>, n: usize, direction: Direction) {
    match direction {
        Direction::Backward => records.sort_by_key(|r| std::cmp::Reverse(r.timestamp_ns)),
        Direction::Forward => records.sort_by_key(|r| r.timestamp_ns),
    }
    if n == 0 {
        records.clear();
        return;
    }
    if records.len() > n {
        let boundary = records[n - 1].timestamp_ns;
        let keep = n + records[n..].iter().take_while(|r| r.timestamp_ns == boundary).count();
        records.truncate(keep);
    }
}

/// Entries of one stream and the bytes of their lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Entries.
    pub entries: u64,
    /// Bytes of their lines.
    pub bytes: u64,
}

impl StreamStats {
    /// Adds `entries` entries of `bytes` line bytes.
    pub fn add(&mut self, entries: u64, bytes: u64) {
        self.entries += entries;
        self.bytes += bytes;
    }
}

/// The index of the bucket (inclusive, ascending, not overlapping ranges) holding `t`.
pub fn bucket_of(buckets: &[(i64, i64)], t: i64) -> Option<usize> {
    let i = buckets.partition_point(|b| b.1 < t);
    buckets.get(i).is_some_and(|b| b.0 <= t).then_some(i)
}

/// A callback [`LogsReader::subscribe_logs`] calls with each batch of log records as it is
/// ingested; returning false unsubscribes it. It runs on the ingest path: it should only filter
/// and hand the records on.
pub type LogSink = Box<dyn FnMut(&[LogRecord]) -> bool + Send>;

/// Read access to stored log records (head and published splits merged).
pub trait LogsReader: Send + Sync {
    /// Calls `sink` with every batch of log records ingested from now on, in ingest order
    /// whatever their timestamps (Loki's live tail), until it returns false. False when this
    /// reader has no live feed, and the caller polls [`Self::select_logs`] instead.
    fn subscribe_logs(&self, _sink: LogSink) -> bool {
        false
    }

    /// Runs a [`LogSearch`]. The default reads through [`Self::select_logs`] and filters in
    /// memory; a store overrides it to use its index and load only what the limit needs.
    fn search_logs(&self, q: &LogSearch<'_>) -> Result<Vec<LogRecord>, String> {
        let singles: Vec<String> =
            q.contains_any.iter().filter(|g| g.len() == 1).map(|g| g[0].clone()).collect();
        let mut out: Vec<LogRecord> = self
            .select_logs(q.matchers, &singles, q.start_ns, q.end_ns)?
            .into_iter()
            .filter(|r| q.accepts(r))
            .collect();
        if let Some((n, dir)) = q.limit {
            cut_to_limit(&mut out, n, dir);
        }
        Ok(out)
    }

    /// The timestamps of the records [`Self::search_logs`] would return for `q`, grouped by
    /// stream, severity and attributes, for callers that count records (`q.limit` must be
    /// `None`). Bodies are never part of the answer. A group's key may repeat (one group per
    /// index segment, say), and timestamps come in no particular order. The default groups the
    /// records of [`Self::search_logs`]; a store may count from its columns instead.
    fn count_logs(&self, q: &LogSearch<'_>) -> Result<Vec<LogGroup>, String> {
        Ok(group_records(self.search_logs(q)?))
    }

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

    /// Per stream matching all `matchers`, its entries in `[start_ns, end_ns]` and their line
    /// bytes (Loki's `index/stats`). The default reads every record via [`Self::select_logs`];
    /// a store may answer from per-stream totals, estimating the bytes of streams only partly
    /// in the range (as Loki counts whole chunks).
    fn log_stream_stats(
        &self,
        matchers: &[LabelMatcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<(Labels, StreamStats)>, String> {
        let mut by_stream: std::collections::BTreeMap<Labels, StreamStats> = std::collections::BTreeMap::new();
        for r in self.select_logs(matchers, &[], start_ns, end_ns)? {
            if r.timestamp_ns >= start_ns && r.timestamp_ns <= end_ns {
                by_stream.entry(r.labels).or_default().add(1, r.body.len() as u64);
            }
        }
        Ok(by_stream.into_iter().collect())
    }

    /// [`Self::log_stream_stats`] for several time ranges at once (`buckets`: inclusive,
    /// ascending, not overlapping), read in one pass: per stream, its stats in each bucket.
    fn log_stream_stats_per_bucket(
        &self,
        matchers: &[LabelMatcher],
        buckets: &[(i64, i64)],
    ) -> Result<Vec<(Labels, Vec<StreamStats>)>, String> {
        let (Some(first), Some(last)) = (buckets.first(), buckets.last()) else { return Ok(Vec::new()) };
        let mut by_stream: std::collections::BTreeMap<Labels, Vec<StreamStats>> = std::collections::BTreeMap::new();
        for r in self.select_logs(matchers, &[], first.0, last.1)? {
            if let Some(b) = bucket_of(buckets, r.timestamp_ns) {
                let len = r.body.len() as u64;
                by_stream.entry(r.labels).or_insert_with(|| vec![StreamStats::default(); buckets.len()])[b].add(1, len);
            }
        }
        Ok(by_stream.into_iter().collect())
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

    #[test]
    fn cut_to_limit_keeps_ties_at_the_boundary() {
        let rec = |t: i64, b: &str| LogRecord {
            labels: Labels::default(),
            timestamp_ns: t,
            body: b.into(),
            severity: String::new(),
            attributes: Vec::new(),
        };
        let all = vec![rec(1, "a"), rec(3, "b"), rec(2, "c"), rec(3, "d"), rec(2, "e"), rec(0, "f")];
        let bodies = |v: &[LogRecord]| {
            let mut b: Vec<String> = v.iter().map(|r| r.body.clone()).collect();
            b.sort();
            b
        };
        let mut v = all.clone();
        cut_to_limit(&mut v, 3, Direction::Backward);
        assert_eq!(bodies(&v), ["b", "c", "d", "e"], "3 newest: 3,3,2 and the tie at 2");
        let mut v = all.clone();
        cut_to_limit(&mut v, 2, Direction::Backward);
        assert_eq!(bodies(&v), ["b", "d"]);
        let mut v = all.clone();
        cut_to_limit(&mut v, 2, Direction::Forward);
        assert_eq!(bodies(&v), ["a", "f"]);
        let mut v = all.clone();
        cut_to_limit(&mut v, 10, Direction::Forward);
        assert_eq!(v.len(), 6);
        assert_eq!(v.first().map(|r| r.timestamp_ns), Some(0));
    }
}
