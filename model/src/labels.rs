use std::fmt;
use std::sync::Arc;

/// The label that carries the metric name, as in Prometheus.
pub const METRIC_NAME: &str = "__name__";

/// One label: name and value, each shared, so deriving label sets (dropping the name, grouping)
/// copies pointers rather than strings.
type Pair = (Arc<str>, Arc<str>);

/// A label set: pairs sorted by name, names unique, no empty values.
///
/// Cheap to clone (shared), and so are the names and values inside it: sets derived with
/// [`Labels::filter`] or [`Labels::without_name`] share their strings with the original.
/// Equality and hashing are by content, so it serves as a series key.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<[Pair]>);

impl Labels {
    /// Builds a label set from pairs; later duplicates win, empty values are dropped
    /// (Prometheus treats an empty value as an absent label).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self::from_shared(
            pairs.into_iter().map(|(k, v)| (Arc::from(k.into()), Arc::from(v.into()))).collect(),
        )
    }

    /// [`Labels::from_pairs`] from strings already shared (e.g. interned), which it keeps
    /// rather than copies.
    pub fn from_shared_pairs(pairs: Vec<(Arc<str>, Arc<str>)>) -> Self {
        Self::from_shared(pairs)
    }

    /// Sorts, deduplicates (the later pair wins) and drops empty values; pairs already in
    /// canonical form (the common case) are taken as they are.
    fn from_shared(mut v: Vec<Pair>) -> Self {
        if v.windows(2).all(|w| w[0].0 < w[1].0) && v.iter().all(|(_, val)| !val.is_empty()) {
            return Labels(v.into());
        }
        v.reverse();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        v.retain(|(_, val)| !val.is_empty());
        Labels(v.into())
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Iterates over `(name, value)` pairs in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone {
        self.0.iter().map(|(k, v)| (&**k, &**v))
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
        let mut pairs: Vec<Pair> = self.0.iter().filter(|(k, _)| &**k != name).cloned().collect();
        pairs.push((Arc::from(name), Arc::from(value)));
        Labels::from_shared(pairs)
    }

    /// A copy keeping only the labels for which `keep` returns true.
    pub fn filter(&self, mut keep: impl FnMut(&str) -> bool) -> Labels {
        if self.0.iter().all(|(k, _)| keep(k)) {
            return self.clone();
        }
        let v: Vec<Pair> = self.0.iter().filter(|(k, _)| keep(k)).cloned().collect();
        Labels(v.into())
    }

    /// A copy with every label of `extra` added where this set does not have it already.
    pub fn merged_under(&self, extra: &Labels) -> Labels {
        let mut pairs: Vec<Pair> = extra.0.to_vec();
        pairs.extend(self.0.iter().cloned());
        Labels::from_shared(pairs)
    }

    /// True when another holder shares this exact set (not a copy of it): caches use it to
    /// drop entries only they still hold.
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }

    /// The address of the shared pairs: equal for clones of one set, different for separately
    /// built sets (even with equal content). Only meaningful while a clone is held.
    pub fn ptr_id(&self) -> usize {
        Arc::as_ptr(&self.0) as *const () as usize
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
        // Canonical input is kept as it is; repeated or empty ones are still normalized.
        assert_eq!(Labels::from_pairs([("a", "1"), ("b", "2")]).iter().collect::<Vec<_>>(), vec![("a", "1"), ("b", "2")]);
        assert_eq!(Labels::from_pairs([("a", "1"), ("a", "2")]).iter().collect::<Vec<_>>(), vec![("a", "2")]);
        assert_eq!(Labels::from_pairs([("a", ""), ("b", "2")]).iter().collect::<Vec<_>>(), vec![("b", "2")]);
        let shared: Arc<str> = Arc::from("v");
        let l = Labels::from_shared_pairs(vec![(Arc::from("k"), shared.clone())]);
        assert!(Arc::ptr_eq(&l.0[0].1, &shared), "the string is shared, not copied");
    }

    #[test]
    fn merged_under_keeps_own_values() {
        let own = Labels::from_pairs([("job", "x")]);
        let extra = Labels::from_pairs([("job", "y"), ("cluster", "c1")]);
        let m = own.merged_under(&extra);
        assert_eq!(m.get("job"), Some("x"));
        assert_eq!(m.get("cluster"), Some("c1"));
    }

    #[test]
    fn derived_sets_compare_by_content() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        let no_name = l.without_name();
        assert_eq!(no_name, Labels::from_pairs([("job", "x")]));
        assert_eq!(no_name.without_name(), no_name);
        assert_eq!(l.filter(|_| true), l);
        assert_eq!(l.with("job", ""), Labels::from_pairs([("__name__", "up")]));
        assert_eq!(l.with("a", "1").iter().collect::<Vec<_>>(), vec![("__name__", "up"), ("a", "1"), ("job", "x")]);
        assert!(Labels::from_pairs([("a", "1")]) < Labels::from_pairs([("a", "2")]));
    }
}
