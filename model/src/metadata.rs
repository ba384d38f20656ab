//! Metric metadata: the HELP, TYPE and UNIT of a metric family, as Prometheus keeps it and
//! answers it on `/api/v1/metadata`.
//!
//! A family is named as its TYPE line names it: `node_cpu_seconds_total` in the Prometheus text
//! format, `foo` for the OpenMetrics counter whose samples are `foo_total`; histogram and summary
//! families own their `_bucket`/`_sum`/`_count` series. [`FamilyIndex::family_of`] finds the
//! family of a series name.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The type of a metric family (Prometheus' `model.MetricType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    /// A monotonic counter.
    Counter,
    /// A gauge.
    Gauge,
    /// A classic histogram (`_bucket`/`_sum`/`_count`).
    Histogram,
    /// An OpenMetrics gauge histogram (`_bucket`/`_gsum`/`_gcount`).
    #[serde(rename = "gaugehistogram")]
    GaugeHistogram,
    /// A summary (`{quantile}`/`_sum`/`_count`).
    Summary,
    /// An OpenMetrics info family (`_info`).
    Info,
    /// An OpenMetrics state set.
    #[serde(rename = "stateset")]
    StateSet,
    /// No type given (`untyped` in the Prometheus text format).
    #[default]
    Unknown,
}

impl MetricType {
    /// The name Prometheus uses (`counter`, `gaugehistogram`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    /// Parses a TYPE word; `untyped` (Prometheus text format) is [`MetricType::Unknown`].
    pub fn parse(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "unknown" | "untyped" => MetricType::Unknown,
            _ => return None,
        })
    }

    /// The suffixes a series of this family may add to the family name.
    pub fn series_suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["_total", "_created"],
            MetricType::Histogram => &["_bucket", "_sum", "_count", "_created"],
            MetricType::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            MetricType::Summary => &["_sum", "_count", "_created"],
            MetricType::Info => &["_info"],
            MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[],
        }
    }
}

impl std::fmt::Display for MetricType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// HELP, TYPE and UNIT of one metric family.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MetricMetadata {
    /// The family name (the name of the TYPE/HELP lines).
    pub metric_family_name: String,
    /// The family type.
    #[serde(rename = "type")]
    pub r#type: MetricType,
    /// The HELP text (empty when none was given).
    pub help: String,
    /// The UNIT (empty when none was given).
    pub unit: String,
}

impl MetricMetadata {
    /// Metadata of `family` with the given type, help and unit.
    pub fn new(family: impl Into<String>, r#type: MetricType, help: impl Into<String>, unit: impl Into<String>) -> Self {
        MetricMetadata { metric_family_name: family.into(), r#type, help: help.into(), unit: unit.into() }
    }

    /// True when `self` says the same (type, help, unit) as `other`, whatever the family name.
    pub fn same_content(&self, other: &MetricMetadata) -> bool {
        self.r#type == other.r#type && self.help == other.help && self.unit == other.unit
    }
}

/// The families of one exposition (or payload), looked up by the name of one of their series.
#[derive(Clone, Debug, Default)]
pub struct FamilyIndex {
    by_name: HashMap<String, MetricMetadata>,
}

impl FamilyIndex {
    /// An index of `families` (a later entry for the same name wins).
    pub fn new(families: impl IntoIterator<Item = MetricMetadata>) -> Self {
        FamilyIndex { by_name: families.into_iter().map(|m| (m.metric_family_name.clone(), m)).collect() }
    }

    /// Number of families.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no family is known.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The families, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &MetricMetadata> {
        self.by_name.values()
    }

    /// The family of the series `name`: the family of that exact name, else the family whose
    /// name is `name` without a suffix its type allows (`h_bucket` → histogram `h`,
    /// `foo_total` → OpenMetrics counter `foo`).
    pub fn family_of(&self, name: &str) -> Option<&MetricMetadata> {
        if let Some(m) = self.by_name.get(name) {
            return Some(m);
        }
        let (base, suffix) = name.rsplit_once('_')?;
        let m = self.by_name.get(base)?;
        m.r#type.series_suffixes().iter().any(|s| s[1..] == *suffix).then_some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip_through_parse_and_serde() {
        for t in [
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Histogram,
            MetricType::GaugeHistogram,
            MetricType::Summary,
            MetricType::Info,
            MetricType::StateSet,
            MetricType::Unknown,
        ] {
            assert_eq!(MetricType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", t.as_str()));
        }
        assert_eq!(MetricType::parse("untyped"), Some(MetricType::Unknown));
        assert_eq!(MetricType::parse("bogus"), None);
    }

    #[test]
    fn family_of_strips_only_suffixes_of_the_type() {
        let idx = FamilyIndex::new([
            MetricMetadata::new("h", MetricType::Histogram, "Latency.", "seconds"),
            MetricMetadata::new("foo", MetricType::Counter, "", ""),
            MetricMetadata::new("g", MetricType::Gauge, "", ""),
            MetricMetadata::new("x_total", MetricType::Counter, "", ""),
        ]);
        assert_eq!(idx.family_of("h_bucket").unwrap().metric_family_name, "h");
        assert_eq!(idx.family_of("h_count").unwrap().metric_family_name, "h");
        assert_eq!(idx.family_of("foo_total").unwrap().metric_family_name, "foo");
        assert_eq!(idx.family_of("x_total").unwrap().metric_family_name, "x_total");
        assert!(idx.family_of("g_count").is_none(), "a gauge has no _count series");
        assert!(idx.family_of("h_total").is_none());
        assert!(idx.family_of("other").is_none());
    }
}
