//! LogQL metric queries: range functions over log queries (`count_over_time`, `rate`,
//! `bytes_over_time`, `bytes_rate`, and with `| unwrap` `sum/avg/min/max_over_time`) and vector
//! aggregations over them (`sum`, `avg`, `min`, `max`, `count`, `topk`, `bottomk`, `by`/`without`).
//!
//! A window at evaluation time `t` holds the entries with `t - range < ts <= t`, as in Loki; a
//! series with no entry in a window has no sample at `t`.

use std::collections::BTreeMap;

use pharos_model::{Labels, LogsReader};

use super::LogQuery;
use super::pipeline::{self, NumberUnit};
use crate::error::{Error, Result};

/// A range function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeFn {
    /// Entries in the window.
    CountOverTime,
    /// Entries per second (with `unwrap`: the sum of values per second).
    Rate,
    /// Bytes of the lines in the window.
    BytesOverTime,
    /// Bytes per second.
    BytesRate,
    /// Sum of unwrapped values.
    SumOverTime,
    /// Average of unwrapped values.
    AvgOverTime,
    /// Minimum of unwrapped values.
    MinOverTime,
    /// Maximum of unwrapped values.
    MaxOverTime,
}

const RANGE_FNS: [(&str, RangeFn); 8] = [
    ("count_over_time", RangeFn::CountOverTime),
    ("rate", RangeFn::Rate),
    ("bytes_over_time", RangeFn::BytesOverTime),
    ("bytes_rate", RangeFn::BytesRate),
    ("sum_over_time", RangeFn::SumOverTime),
    ("avg_over_time", RangeFn::AvgOverTime),
    ("min_over_time", RangeFn::MinOverTime),
    ("max_over_time", RangeFn::MaxOverTime),
];

impl RangeFn {
    /// The function named `name`.
    pub fn from_name(name: &str) -> Option<RangeFn> {
        RANGE_FNS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        RANGE_FNS.iter().find(|(_, f)| *f == self).map_or("", |(n, _)| n)
    }

    /// True for the functions over unwrapped values.
    pub fn needs_unwrap(self) -> bool {
        matches!(
            self,
            RangeFn::SumOverTime | RangeFn::AvgOverTime | RangeFn::MinOverTime | RangeFn::MaxOverTime
        )
    }
}

/// A vector aggregation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    /// `sum`
    Sum,
    /// `avg`
    Avg,
    /// `min`
    Min,
    /// `max`
    Max,
    /// `count`
    Count,
    /// `topk(k, …)`
    Topk,
    /// `bottomk(k, …)`
    Bottomk,
}

const AGG_OPS: [(&str, AggOp); 7] = [
    ("sum", AggOp::Sum),
    ("avg", AggOp::Avg),
    ("min", AggOp::Min),
    ("max", AggOp::Max),
    ("count", AggOp::Count),
    ("topk", AggOp::Topk),
    ("bottomk", AggOp::Bottomk),
];

impl AggOp {
    /// The aggregation named `name`.
    pub fn from_name(name: &str) -> Option<AggOp> {
        AGG_OPS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        AGG_OPS.iter().find(|(_, f)| *f == self).map_or("", |(n, _)| n)
    }
}

/// A metric query.
#[derive(Clone, Debug)]
pub enum MetricExpr {
    /// `func(log_query [range])`
    Range {
        /// The function.
        func: RangeFn,
        /// The log query (with `unwrap` for the unwrap functions).
        query: LogQuery,
        /// Window length in nanoseconds.
        range_ns: i64,
    },
    /// `op [by|without (labels)] ([k,] inner)`
    Aggregate {
        /// The aggregation.
        op: AggOp,
        /// `Some((without, labels))`.
        grouping: Option<(bool, Vec<String>)>,
        /// `k` of topk/bottomk.
        param: Option<usize>,
        /// The aggregated expression.
        inner: Box<MetricExpr>,
    },
}

/// One output series: labels and `(timestamp_ns, value)` points in time order.
pub type SeriesOut = (Labels, Vec<(i64, f64)>);

/// Per-stream entries of the range leaf: `(timestamp_ns, value)` in time order.
type Leaf = BTreeMap<Labels, Vec<(i64, f64)>>;

impl MetricExpr {
    fn leaf(&self) -> (&LogQuery, RangeFn, i64) {
        match self {
            MetricExpr::Range { func, query, range_ns } => (query, *func, *range_ns),
            MetricExpr::Aggregate { inner, .. } => inner.leaf(),
        }
    }

    /// Evaluates at every time of `steps_ns` (ascending); series in label order.
    pub fn evaluate(&self, reader: &dyn LogsReader, steps_ns: &[i64]) -> Result<Vec<SeriesOut>> {
        let (Some(&first), Some(&last)) = (steps_ns.first(), steps_ns.last()) else {
            return Ok(Vec::new());
        };
        let (query, func, range_ns) = self.leaf();
        let from = first.saturating_sub(range_ns).saturating_add(1);
        let records = reader
            .select_logs(&query.matchers, &query.required_substrings(), from, last)
            .map_err(|e| Error::Internal(format!("reading logs: {e}")))?;
        let mut leaf: Leaf = BTreeMap::new();
        for r in records {
            if r.timestamp_ns < from || r.timestamp_ns > last {
                continue;
            }
            let Some((mut labels, line)) = query.process_line(&r.labels, &r.body) else {
                continue;
            };
            let value = match (&query.unwrap, func) {
                (Some((name, unit)), _) => {
                    let Some(v) = labels.remove(name) else { continue };
                    let parsed = match unit {
                        NumberUnit::Plain => v.trim().parse::<f64>().ok(),
                        NumberUnit::Duration => pipeline::parse_duration_secs(&v),
                        NumberUnit::Bytes => pipeline::parse_bytes(&v),
                    };
                    let Some(x) = parsed else { continue };
                    x
                }
                (None, RangeFn::BytesOverTime | RangeFn::BytesRate) => line.len() as f64,
                (None, _) => 1.0,
            };
            leaf.entry(Labels::from_pairs(labels))
                .or_default()
                .push((r.timestamp_ns, value));
        }
        for points in leaf.values_mut() {
            points.sort_by_key(|p| p.0);
        }
        let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for &t in steps_ns {
            for (labels, v) in self.eval_at(&leaf, t) {
                out.entry(labels).or_default().push((t, v));
            }
        }
        Ok(out.into_iter().collect())
    }

    fn eval_at(&self, leaf: &Leaf, t: i64) -> Vec<(Labels, f64)> {
        match self {
            MetricExpr::Range { func, query, range_ns } => {
                let secs = *range_ns as f64 / 1e9;
                let mut out = Vec::new();
                for (labels, points) in leaf {
                    let lo = points.partition_point(|p| p.0 <= t.saturating_sub(*range_ns));
                    let hi = points.partition_point(|p| p.0 <= t);
                    let window = &points[lo..hi];
                    if window.is_empty() {
                        continue;
                    }
                    let sum: f64 = window.iter().map(|p| p.1).sum();
                    let v = match func {
                        RangeFn::CountOverTime => window.len() as f64,
                        RangeFn::Rate if query.unwrap.is_none() => window.len() as f64 / secs,
                        RangeFn::Rate | RangeFn::BytesRate => sum / secs,
                        RangeFn::BytesOverTime | RangeFn::SumOverTime => sum,
                        RangeFn::AvgOverTime => sum / window.len() as f64,
                        RangeFn::MinOverTime => window.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
                        RangeFn::MaxOverTime => {
                            window.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max)
                        }
                    };
                    out.push((labels.clone(), v));
                }
                out
            }
            MetricExpr::Aggregate { op, grouping, param, inner } => {
                let input = inner.eval_at(leaf, t);
                let key = |l: &Labels| match grouping {
                    None => Labels::default(),
                    Some((false, names)) => l.filter(|n| names.iter().any(|x| x == n)),
                    Some((true, names)) => l.filter(|n| !names.iter().any(|x| x == n)),
                };
                let mut groups: BTreeMap<Labels, Vec<(Labels, f64)>> = BTreeMap::new();
                for (l, v) in input {
                    groups.entry(key(&l)).or_default().push((l, v));
                }
                let mut out = Vec::new();
                for (k, mut members) in groups {
                    let values = members.iter().map(|m| m.1);
                    let n = members.len() as f64;
                    let v = match op {
                        AggOp::Sum => values.sum(),
                        AggOp::Avg => values.sum::<f64>() / n,
                        AggOp::Min => values.fold(f64::INFINITY, f64::min),
                        AggOp::Max => values.fold(f64::NEG_INFINITY, f64::max),
                        AggOp::Count => n,
                        AggOp::Topk | AggOp::Bottomk => {
                            members.sort_by(|a, b| {
                                let o = a.1.total_cmp(&b.1);
                                if *op == AggOp::Topk { o.reverse() } else { o }
                            });
                            members.truncate(param.unwrap_or(1));
                            out.extend(members);
                            continue;
                        }
                    };
                    out.push((k, v));
                }
                out
            }
        }
    }
}
