//! The in-memory head: samples and log records received since the last flush, queryable at once.

use std::collections::{BTreeMap, HashMap};

use pharos_model::select::matches_all;
use pharos_model::{LabelMatcher, Labels, LogRecord, Sample};

/// Data not yet in published files, and the source offsets it covers.
#[derive(Default)]
pub struct Head {
    pub(crate) series: HashMap<Labels, Vec<(i64, f64)>>,
    pub(crate) logs: Vec<LogRecord>,
    /// Per source, the highest offset whose data is in this head.
    pub(crate) offsets: BTreeMap<String, i64>,
    pub(crate) samples: usize,
}

impl Head {
    /// Samples plus log records held.
    pub fn rows(&self) -> usize {
        self.samples + self.logs.len()
    }

    /// Number of series held.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    pub(crate) fn append_samples(&mut self, samples: Vec<Sample>) {
        self.samples += samples.len();
        for s in samples {
            self.series.entry(s.labels).or_default().push((s.timestamp_ms, s.value));
        }
    }

    pub(crate) fn append_logs(&mut self, records: Vec<LogRecord>) {
        self.logs.extend(records);
    }

    pub(crate) fn select_series(
        &self,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
        out: &mut HashMap<Labels, Vec<(i64, f64)>>,
    ) {
        for (labels, samples) in &self.series {
            if !matches_all(matchers, labels) {
                continue;
            }
            let in_range = samples.iter().filter(|(t, _)| *t >= start_ms && *t <= end_ms);
            let mut in_range = in_range.peekable();
            if in_range.peek().is_some() {
                out.entry(labels.clone()).or_default().extend(in_range);
            }
        }
    }

    pub(crate) fn select_logs(
        &self,
        matchers: &[LabelMatcher],
        contains: &[String],
        start_ns: i64,
        end_ns: i64,
        out: &mut Vec<LogRecord>,
    ) {
        out.extend(
            self.logs
                .iter()
                .filter(|r| r.timestamp_ns >= start_ns && r.timestamp_ns <= end_ns)
                .filter(|r| contains.iter().all(|c| r.body.contains(c.as_str())))
                .filter(|r| matches_all(matchers, &r.labels))
                .cloned(),
        );
    }
}
