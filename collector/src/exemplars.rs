//! Exemplars in memory, kept as Prometheus keeps them: a ring of the newest `capacity`
//! exemplars of all series together (Prometheus' `storage.exemplars.max_exemplars`, 100,000 by
//! default), the oldest overwritten first.
//!
//! As in Prometheus' circular exemplar storage, per series:
//! - an exemplar equal to the series' newest (same time, value and labels) is a duplicate and
//!   is skipped, not counted as an error (senders resend them);
//! - an exemplar older than the series' newest is out of order and refused;
//! - an exemplar whose label names and values hold more than 128 characters together is
//!   refused (`ExemplarMaxLabelSetLength`).
//!
//! They are not written to Parquet: after a restart, the exemplars of requests still in the WAL
//! (not flushed yet) come back with the WAL replay, older ones are gone, as Prometheus loses
//! exemplars older than its WAL checkpoint.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;
use pharos_model::{Exemplar, LabelMatcher, Labels, SeriesExemplars};

/// Most characters of an exemplar's label names and values together (Prometheus'
/// `exemplar.ExemplarMaxLabelSetLength`).
pub const MAX_LABEL_SET_CHARS: usize = 128;

/// What became of an appended exemplar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Stored.
    Stored,
    /// Equal to the series' newest exemplar: skipped.
    Duplicate,
    /// Older than the series' newest exemplar: refused.
    OutOfOrder,
    /// Labels longer than [`MAX_LABEL_SET_CHARS`]: refused.
    TooLong,
    /// The store keeps no exemplars (capacity 0).
    Disabled,
}

/// The ring of exemplars.
pub struct ExemplarStore {
    ring: Mutex<Ring>,
}

struct Ring {
    capacity: usize,
    /// Up to `capacity` slots; `next` is the one written next (the oldest once full).
    slots: Vec<(Labels, Exemplar)>,
    next: usize,
    /// Per series: slots it holds, and its newest exemplar.
    series: HashMap<Labels, (usize, Exemplar)>,
}

impl ExemplarStore {
    /// A store of at most `capacity` exemplars (0: none are kept).
    pub fn new(capacity: usize) -> Self {
        ExemplarStore { ring: Mutex::new(Ring { capacity, slots: Vec::new(), next: 0, series: HashMap::new() }) }
    }

    /// Adds an exemplar of `series`.
    pub fn append(&self, series: &Labels, exemplar: Exemplar) -> Appended {
        let mut ring = self.ring.lock();
        if ring.capacity == 0 {
            return Appended::Disabled;
        }
        let chars: usize = exemplar.labels.iter().map(|(k, v)| k.chars().count() + v.chars().count()).sum();
        if chars > MAX_LABEL_SET_CHARS {
            return Appended::TooLong;
        }
        if let Some((_, newest)) = ring.series.get(series) {
            if newest.timestamp_ms == exemplar.timestamp_ms
                && newest.value.to_bits() == exemplar.value.to_bits()
                && newest.labels == exemplar.labels
            {
                return Appended::Duplicate;
            }
            if exemplar.timestamp_ms < newest.timestamp_ms {
                return Appended::OutOfOrder;
            }
        }
        let ring = &mut *ring;
        if ring.slots.len() < ring.capacity {
            ring.slots.push((series.clone(), exemplar.clone()));
        } else {
            let (old_series, _) = std::mem::replace(&mut ring.slots[ring.next], (series.clone(), exemplar.clone()));
            if let Some((count, _)) = ring.series.get_mut(&old_series) {
                *count -= 1;
                if *count == 0 {
                    ring.series.remove(&old_series);
                }
            }
        }
        ring.next = (ring.next + 1) % ring.capacity;
        let entry = ring.series.entry(series.clone()).or_insert_with(|| (0, exemplar.clone()));
        entry.0 += 1;
        entry.1 = exemplar;
        Appended::Stored
    }

    /// The exemplars in `[start_ms, end_ms]` of the series matching any of `selectors`, per
    /// series (sorted by labels), each series' oldest first.
    pub fn select(&self, selectors: &[Vec<LabelMatcher>], start_ms: i64, end_ms: i64) -> Vec<SeriesExemplars> {
        let ring = self.ring.lock();
        // Oldest first: from `next` (the oldest once the ring is full) round to just before it.
        let (newer, older) = ring.slots.split_at(ring.next.min(ring.slots.len()));
        let mut by_series: BTreeMap<&Labels, Vec<Exemplar>> = BTreeMap::new();
        let mut verdicts: HashMap<&Labels, bool> = HashMap::new();
        for (series, e) in older.iter().chain(newer) {
            if !(start_ms..=end_ms).contains(&e.timestamp_ms) {
                continue;
            }
            let matches = *verdicts
                .entry(series)
                .or_insert_with(|| selectors.iter().any(|m| pharos_model::select::matches_all(m, series)));
            if matches {
                by_series.entry(series).or_default().push(e.clone());
            }
        }
        by_series.into_iter().map(|(series, exemplars)| SeriesExemplars { series: series.clone(), exemplars }).collect()
    }

    /// Exemplars held.
    pub fn len(&self) -> usize {
        self.ring.lock().slots.len()
    }

    /// True when none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str) -> Labels {
        Labels::from_pairs([("__name__", name)])
    }

    fn ex(trace: &str, value: f64, t: i64) -> Exemplar {
        Exemplar { labels: Labels::from_pairs([("trace_id", trace)]), value, timestamp_ms: t }
    }

    fn eq(name: &str) -> Vec<LabelMatcher> {
        vec![LabelMatcher::equal("__name__", name)]
    }

    #[test]
    fn keeps_the_newest_per_ring_and_refuses_what_prometheus_refuses() {
        let store = ExemplarStore::new(3);
        let (a, b) = (series("a"), series("b"));
        assert_eq!(store.append(&a, ex("t1", 1.0, 10)), Appended::Stored);
        assert_eq!(store.append(&a, ex("t1", 1.0, 10)), Appended::Duplicate);
        assert_eq!(store.append(&a, ex("t0", 1.0, 9)), Appended::OutOfOrder);
        assert_eq!(store.append(&b, ex("t2", 2.0, 5)), Appended::Stored, "order is per series");
        assert_eq!(store.append(&a, ex("t3", 3.0, 20)), Appended::Stored);
        let long = Exemplar { labels: Labels::from_pairs([("trace_id", "x".repeat(121).as_str())]), value: 1.0, timestamp_ms: 30 };
        assert_eq!(store.append(&a, long), Appended::TooLong, "8 + 121 characters");
        let all = vec![eq("a"), eq("b")];
        assert_eq!(
            store.select(&all, 0, 100),
            vec![
                SeriesExemplars { series: a.clone(), exemplars: vec![ex("t1", 1.0, 10), ex("t3", 3.0, 20)] },
                SeriesExemplars { series: b.clone(), exemplars: vec![ex("t2", 2.0, 5)] },
            ]
        );
        // Full: the fourth overwrites the oldest (a's t1), then b's only one goes.
        assert_eq!(store.append(&a, ex("t4", 4.0, 30)), Appended::Stored);
        assert_eq!(store.len(), 3);
        assert_eq!(store.append(&a, ex("t5", 5.0, 40)), Appended::Stored);
        assert_eq!(
            store.select(&all, 0, 100),
            vec![SeriesExemplars { series: a.clone(), exemplars: vec![ex("t3", 3.0, 20), ex("t4", 4.0, 30), ex("t5", 5.0, 40)] }]
        );
        // b's entry went with its last exemplar: an older one is accepted again.
        assert_eq!(store.append(&b, ex("t6", 6.0, 1)), Appended::Stored);
        // Time range and selectors.
        assert_eq!(store.select(&[eq("a")], 25, 35), vec![SeriesExemplars { series: a.clone(), exemplars: vec![ex("t4", 4.0, 30)] }]);
        assert_eq!(store.select(&[eq("c")], 0, 100), vec![]);
        assert_eq!(ExemplarStore::new(0).append(&a, ex("t", 1.0, 1)), Appended::Disabled);
    }
}
