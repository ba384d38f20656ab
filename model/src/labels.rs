use std::fmt;
use std::sync::Arc;

/// The label that carries the metric name, as in Prometheus.
pub const METRIC_NAME: &str = "__name__";

/// A label set: pairs sorted by name, names unique, no empty values.
///
/// Cheap to clone (shared). Equality and hashing are by content, so it serves as a series key.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<[(String, String)]>);

impl Labels {
    /// Builds a label set from pairs; later duplicates win, empty values are dropped
    /// (Prometheus treats an empty value as an absent label).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut v: Vec<(String, String)> =
            pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        v.reverse();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        v.retain(|(_, val)| !val.is_empty());
        Labels(v.into())
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Iterates over `(name, value)` pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A copy with `name` set to `value` (removed when `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Labels {
        let mut pairs: Vec<(String, String)> =
            self.iter().filter(|(k, _)| *k != name).map(|(k, v)| (k.into(), v.into())).collect();
        pairs.push((name.into(), value.into()));
        Labels::from_pairs(pairs)
    }

    /// A copy keeping only the labels for which `keep` returns true.
    pub fn filter(&self, mut keep: impl FnMut(&str) -> bool) -> Labels {
        let v: Vec<(String, String)> =
            self.0.iter().filter(|(k, _)| keep(k)).cloned().collect();
        Labels(v.into())
    }

    /// A copy with every label of `extra` added where this set does not have it already.
    pub fn merged_under(&self, extra: &Labels) -> Labels {
        let mut pairs: Vec<(String, String)> =
            extra.iter().map(|(k, v)| (k.into(), v.into())).collect();
        pairs.extend(self.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Labels::from_pairs(pairs)
    }

    /// The labels without `__name__`.
    pub fn without_name(&self) -> Labels {
        self.filter(|k| k != METRIC_NAME)
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Prometheus text form: `name{a="b", c="d"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.metric_name() {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for (k, v) in self.iter().filter(|(k, _)| *k != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_deduplicated_and_empty_values_dropped() {
        let l = Labels::from_pairs([("b", "1"), ("a", "2"), ("b", "3"), ("c", "")]);
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![("a", "2"), ("b", "3")]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn merged_under_keeps_own_values() {
        let own = Labels::from_pairs([("job", "x")]);
        let extra = Labels::from_pairs([("job", "y"), ("cluster", "c1")]);
        let m = own.merged_under(&extra);
        assert_eq!(m.get("job"), Some("x"));
        assert_eq!(m.get("cluster"), Some("c1"));
    }
}
