//! The in-memory head: samples and log records received since the last flush, queryable at once.
//!
//! Metrics are kept compactly: each series gets a [`SeriesId`], its label set is stored once as
//! interned symbol ids, and its samples as a compressed [`Chunk`] in append order. An inverted
//! index (label name → value → sorted series ids) resolves matchers without visiting every series.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use pharos_model::select::{MatchOp, matches_all};
use pharos_model::write_view::WriteView;
use pharos_model::select::HistogramSeries;
use pharos_model::{FloatHistogram, HistogramSample, LabelMatcher, Labels, LogRecord, Sample};

use crate::chunk::Chunk;

/// Index of a series in the head.
pub type SeriesId = u32;

/// Interned strings of label names and values.
#[derive(Default, Clone)]
struct Symbols {
    ids: HashMap<Arc<str>, u32>,
    strings: Vec<Arc<str>>,
}

impl Symbols {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.strings.len() as u32;
        let s: Arc<str> = Arc::from(s);
        self.strings.push(s.clone());
        self.ids.insert(s, id);
        id
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn str(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }
}

#[derive(Clone)]
struct HeadSeries {
    /// (name, value) symbol pairs in the order of the series' `Labels`.
    labels: Box<[(u32, u32)]>,
    samples: Chunk,
}

/// Data not yet in published files, and the source offsets it covers.
#[derive(Default, Clone)]
pub struct Head {
    symbols: Symbols,
    series: Vec<HeadSeries>,
    /// Hash of a label set → its series; collisions in `by_hash_more`.
    by_hash: HashMap<u64, SeriesId, ahash::RandomState>,
    by_hash_more: HashMap<u64, Vec<SeriesId>, ahash::RandomState>,
    /// Label name → value → series ids in ascending order.
    postings: HashMap<u32, HashMap<u32, Vec<SeriesId>>>,
    /// Seeded per process: label values come from clients.
    hasher: ahash::RandomState,
    pub(crate) logs: Vec<LogRecord>,
    /// Native histogram samples per series, in append order.
    pub(crate) histograms: HashMap<Labels, Vec<(i64, Arc<FloatHistogram>)>, ahash::RandomState>,
    /// The histogram series by metric name: a selection that names its metric (nearly every
    /// one) checks those series only.
    histogram_names: HashMap<String, Vec<Labels>, ahash::RandomState>,
    /// Native histogram samples held.
    pub(crate) histogram_samples: usize,
    /// Per source, the highest offset whose data is in this head.
    pub(crate) offsets: BTreeMap<String, i64>,
    pub(crate) samples: usize,
    /// Heap bytes of every series' compressed chunk.
    chunk_bytes: usize,
    /// Bytes a new series' chunk starts with: what the previous head held per series, so a
    /// chunk rarely reallocates while it grows.
    chunk_reserve: usize,
}

impl Head {
    /// Samples, native histogram samples and log records held.
    pub fn rows(&self) -> usize {
        self.samples + self.histogram_samples + self.logs.len()
    }

    /// Heap bytes held by the compressed samples of every series (not labels or index).
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_bytes
    }

    /// An empty head whose new chunks start with the bytes the series of `previous` used on
    /// average, plus an eighth (capped at 16 KiB). Used bytes, not reserved ones: a head flushed
    /// early does not keep the next one's reservations as large as the largest before it.
    pub fn after(previous: &Head) -> Head {
        let used: usize = previous.series.iter().map(|s| s.samples.byte_len()).sum();
        let average = used.checked_div(previous.series.len()).unwrap_or(0);
        // Series mostly stay from one head to the next: room for as many as before, so the
        // list is not copied while it doubles, nor left up to half unused.
        Head { series: Vec::with_capacity(previous.series.len()), chunk_reserve: (average + average / 8).min(16 << 10), ..Head::default() }
    }

    /// Number of series held.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    fn hash_labels<'a>(&self, labels: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> u64 {
        let mut h = self.hasher.build_hasher();
        for (k, v) in labels {
            h.write(k);
            h.write_u8(0xff);
            h.write(v);
            h.write_u8(0xff);
        }
        h.finish()
    }

    fn same_labels<'a>(&self, id: SeriesId, labels: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>) -> bool {
        let stored = &self.series[id as usize].labels;
        stored.len() == labels.len()
            && stored.iter().zip(labels).all(|((k, v), (lk, lv))| self.symbols.str(*k).as_bytes() == lk && self.symbols.str(*v).as_bytes() == lv)
    }

    /// The id of the series with these labels (name order, as [`Labels`] keeps them; UTF-8,
    /// passed as bytes), added when new. Only a new series copies the strings.
    fn series_id<'a, I>(&mut self, labels: I) -> SeriesId
    where
        I: ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + Clone,
    {
        let hash = self.hash_labels(labels.clone());
        if let Some(&id) = self.by_hash.get(&hash) {
            if self.same_labels(id, labels.clone()) {
                return id;
            }
            let more = self.by_hash_more.get(&hash).into_iter().flatten();
            if let Some(&id) = more.into_iter().find(|&&id| self.same_labels(id, labels.clone())) {
                return id;
            }
        }
        let id = self.series.len() as SeriesId;
        let pairs: Box<[(u32, u32)]> =
            labels.map(|(k, v)| (self.symbols.intern(&String::from_utf8_lossy(k)), self.symbols.intern(&String::from_utf8_lossy(v)))).collect();
        for &(k, v) in pairs.iter() {
            // Ids grow, so pushing keeps each posting list sorted.
            self.postings.entry(k).or_default().entry(v).or_default().push(id);
        }
        let samples = Chunk::with_capacity(self.chunk_reserve);
        self.chunk_bytes += samples.heap_bytes();
        self.series.push(HeadSeries { labels: pairs, samples });
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.by_hash_more.entry(hash).or_default().push(id),
        }
        id
    }

    pub(crate) fn append_samples(&mut self, samples: Vec<Sample>) {
        self.samples += samples.len();
        for s in samples {
            let id = self.series_id(s.labels.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
            let chunk = &mut self.series[id as usize].samples;
            let before = chunk.heap_bytes();
            chunk.push(s.timestamp_ms, s.value);
            self.chunk_bytes += chunk.heap_bytes() - before;
        }
    }

    /// Appends a parsed remote_write request without building owned label sets.
    pub(crate) fn append_write(&mut self, w: &WriteView) {
        self.samples += w.sample_count();
        for s in w.series() {
            if s.samples.is_empty() {
                continue;
            }
            let id = self.series_id(s.label_bytes());
            let chunk = &mut self.series[id as usize].samples;
            let before = chunk.heap_bytes();
            for &(t, v) in s.samples {
                chunk.push(t, v);
            }
            self.chunk_bytes += chunk.heap_bytes() - before;
        }
    }

    pub(crate) fn append_histograms(&mut self, samples: Vec<HistogramSample>) {
        self.histogram_samples += samples.len();
        for s in samples {
            match self.histograms.entry(s.labels) {
                std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().push((s.timestamp_ms, s.histogram)),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let name = e.key().metric_name().unwrap_or("").to_string();
                    self.histogram_names.entry(name).or_default().push(e.key().clone());
                    e.insert(vec![(s.timestamp_ms, s.histogram)]);
                }
            }
        }
    }

    /// The native histogram samples of the series matching `matchers` in `[start_ms, end_ms]`,
    /// appended to `out` (one entry per series and call, samples in append order).
    pub(crate) fn select_histograms(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64, out: &mut Vec<HistogramSeries>) {
        // The series of the names a name matcher (one not matching the empty name) allows, else
        // every series.
        let candidates: Vec<&Labels> = match matchers.iter().find(|m| m.name == pharos_model::METRIC_NAME && !m.matches_value("")) {
            Some(m) if matches!(m.op, MatchOp::Equal) => self.histogram_names.get(&m.value).into_iter().flatten().collect(),
            Some(m) => self.histogram_names.iter().filter(|(name, _)| m.matches_value(name)).flat_map(|(_, series)| series).collect(),
            None => self.histograms.keys().collect(),
        };
        for labels in candidates {
            let Some(samples) = self.histograms.get(labels) else { continue };
            if !matches_all(matchers, labels) {
                continue;
            }
            let in_range: Vec<(i64, Arc<FloatHistogram>)> =
                samples.iter().filter(|(t, _)| *t >= start_ms && *t <= end_ms).cloned().collect();
            if !in_range.is_empty() {
                out.push(HistogramSeries { labels: labels.clone(), samples: in_range });
            }
        }
    }

    pub(crate) fn append_logs(&mut self, records: Vec<LogRecord>) {
        self.logs.extend(records);
    }

    /// The series' label set, sharing the head's interned strings.
    fn labels_of(&self, id: SeriesId) -> Labels {
        let shared = |s: u32| self.symbols.strings[s as usize].clone();
        Labels::from_shared_pairs(self.series[id as usize].labels.iter().map(|&(k, v)| (shared(k), shared(v))).collect())
    }

    /// Every series with its compressed samples.
    pub(crate) fn series_chunks(&self) -> impl Iterator<Item = (Labels, &Chunk)> + '_ {
        (0..self.series.len() as SeriesId).map(|id| (self.labels_of(id), &self.series[id as usize].samples))
    }

    /// Every series with its samples in append order.
    pub(crate) fn all_series(&self) -> impl Iterator<Item = (Labels, impl Iterator<Item = (i64, f64)> + '_)> + '_ {
        (0..self.series.len() as SeriesId).map(|id| (self.labels_of(id), self.series[id as usize].samples.iter()))
    }

    /// Series ids that may match: the intersection of the posting lists of matchers that cannot
    /// match an empty value; `None` when no matcher narrows the set (every series is a candidate).
    /// Matchers are checked again on the full label set, so this only has to be a superset.
    fn candidates(&self, matchers: &[LabelMatcher]) -> Option<Vec<SeriesId>> {
        let mut result: Option<Vec<SeriesId>> = None;
        for m in matchers {
            if m.matches_value("") {
                continue; // also matches series without the label: no posting list covers it
            }
            let Some(values) = self.symbols.get(&m.name).and_then(|n| self.postings.get(&n)) else {
                return Some(Vec::new());
            };
            let mut ids: Vec<SeriesId> = match &m.op {
                MatchOp::Equal => {
                    self.symbols.get(&m.value).and_then(|v| values.get(&v)).cloned().unwrap_or_default()
                }
                _ => {
                    let mut ids: Vec<SeriesId> = values
                        .iter()
                        .filter(|(v, _)| m.matches_value(self.symbols.str(**v)))
                        .flat_map(|(_, ids)| ids.iter().copied())
                        .collect();
                    ids.sort_unstable();
                    ids
                }
            };
            if let Some(prev) = result {
                ids = intersect(&prev, &ids);
            }
            if ids.is_empty() {
                return Some(ids);
            }
            result = Some(ids);
        }
        result
    }

    pub(crate) fn select_series(
        &self,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
        out: &mut crate::found::Found,
    ) {
        for id in self.candidate_ids(matchers) {
            let labels = self.labels_of(id);
            if !matches_all(matchers, &labels) {
                continue;
            }
            let in_range = self.series[id as usize].samples.iter().filter(|(t, _)| *t >= start_ms && *t <= end_ms);
            let mut in_range = in_range.peekable();
            if in_range.peek().is_some() {
                out.extend(&labels, in_range);
            }
        }
    }
}

impl Head {
    /// The label set and compressed samples of every series matching `matchers` whose time
    /// range overlaps `[start_ms, end_ms]`, appended to `out`: copies of a few bytes per sample,
    /// taken under the store's lock and decoded after it is released.
    pub(crate) fn select_chunks(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64, out: &mut Vec<(Labels, Chunk)>) {
        for id in self.candidate_ids(matchers) {
            let chunk = &self.series[id as usize].samples;
            if !chunk.time_range().is_some_and(|(min, max)| min <= end_ms && max >= start_ms) {
                continue;
            }
            let labels = self.labels_of(id);
            if matches_all(matchers, &labels) {
                out.push((labels, chunk.clone()));
            }
        }
    }

    /// [`Head::candidates`], or every series when no matcher narrows them.
    fn candidate_ids(&self, matchers: &[LabelMatcher]) -> Box<dyn Iterator<Item = SeriesId>> {
        match self.candidates(matchers) {
            Some(ids) => Box::new(ids.into_iter()),
            None => Box::new(0..self.series.len() as SeriesId),
        }
    }
}

fn intersect(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_head_starts_chunks_with_the_room_series_took_before() {
        let mut head = Head::default();
        let samples = |name: &str, n: i64| -> Vec<Sample> {
            (0..n).map(|i| Sample::new(Labels::from_pairs([("__name__", name)]), i * 15_000, (i * i) as f64 * 0.37)).collect()
        };
        head.append_samples(samples("a", 300));
        head.append_samples(samples("b", 100));
        let total: usize = head.series.iter().map(|s| s.samples.heap_bytes()).sum();
        assert_eq!(head.chunk_bytes(), total);
        let used: usize = head.series.iter().map(|s| s.samples.byte_len()).sum();
        assert!(used > 0 && used <= total);
        let mut next = Head::after(&head);
        assert_eq!(next.chunk_reserve, used / 2 + used / 2 / 8);
        next.append_samples(samples("c", 1));
        assert!(next.series[0].samples.heap_bytes() >= next.chunk_reserve);
        assert_eq!(next.chunk_bytes(), next.series[0].samples.heap_bytes(), "the reserved room is counted");
        assert_eq!(Head::after(&Head::default()).chunk_reserve, 0);
        assert_eq!(Head::after(&head).series.capacity(), 2, "room for the series before");
    }

    /// Histogram selections through the name index give what checking every series gives.
    #[test]
    fn histogram_selections_by_name_equal_a_check_of_every_series() {
        let mut head = Head::default();
        let series: Vec<Labels> = ["a", "b", "ab", ""]
            .iter()
            .flat_map(|name| ["x", "y"].map(|job| if name.is_empty() { Labels::from_pairs([("job", job)]) } else { Labels::from_pairs([("__name__", *name), ("job", job)]) }))
            .collect();
        for t in [1000, 2000] {
            let samples = series
                .iter()
                .map(|l| HistogramSample { labels: l.clone(), timestamp_ms: t, histogram: Arc::new(FloatHistogram { count: t as f64, ..Default::default() }) })
                .collect();
            head.append_histograms(samples);
        }
        let m = |name: &str, op: &str, value: &str| LabelMatcher::new(name, op, value).unwrap();
        for matchers in [
            vec![m("__name__", "=", "a")],
            vec![m("__name__", "=", "a"), m("job", "=", "y")],
            vec![m("__name__", "=~", "a.*")],
            vec![m("__name__", "!=", "")],
            vec![m("__name__", "!=", "a"), m("job", "=", "x")],
            vec![m("__name__", "=", "")],
            vec![m("job", "=~", "x|y")],
            vec![m("__name__", "=", "none")],
        ] {
            let mut got = Vec::new();
            head.select_histograms(&matchers, 0, 1500, &mut got);
            let mut got: Vec<(Labels, usize)> = got.into_iter().map(|s| (s.labels, s.samples.len())).collect();
            got.sort();
            let mut want: Vec<(Labels, usize)> = series.iter().filter(|l| matches_all(&matchers, l)).map(|l| (l.clone(), 1)).collect();
            want.sort();
            assert_eq!(got, want, "{matchers:?}");
        }
    }

    fn naive(all: &[(Labels, Vec<(i64, f64)>)], m: &[LabelMatcher], start: i64, end: i64) -> HashMap<Labels, Vec<(i64, f64)>> {
        let mut out: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
        for (l, s) in all {
            if matches_all(m, l) {
                let s: Vec<_> = s.iter().copied().filter(|(t, _)| *t >= start && *t <= end).collect();
                if !s.is_empty() {
                    out.entry(l.clone()).or_default().extend(s);
                }
            }
        }
        out
    }

    #[test]
    fn index_answers_as_a_full_scan_does() {
        let mut head = Head::default();
        let mut expected: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
        for i in 0..60i64 {
            let name = ["cpu", "mem", "disk"][(i % 3) as usize];
            let mut pairs = vec![("__name__", name.to_string()), ("instance", format!("h{}", i % 7)), ("n", i.to_string())];
            if i % 4 == 0 {
                pairs.push(("mode", if i % 8 == 0 { "idle".into() } else { "user".into() }));
            }
            let labels = Labels::from_pairs(pairs);
            // Out of order and a duplicate: both kept as appended.
            let samples = vec![(2000 + i, i as f64), (1000, f64::NAN), (2000 + i, i as f64)];
            head.append_samples(samples.iter().map(|&(t, v)| Sample::new(labels.clone(), t, v)).collect());
            expected.push((labels, samples));
        }
        let cases: Vec<Vec<LabelMatcher>> = vec![
            vec![],
            vec![LabelMatcher::new("__name__", "=", "cpu").unwrap()],
            vec![LabelMatcher::new("__name__", "=~", "cpu|disk").unwrap(), LabelMatcher::new("instance", "!=", "h1").unwrap()],
            vec![LabelMatcher::new("mode", "=", "").unwrap()],
            vec![LabelMatcher::new("mode", "!~", "idle").unwrap(), LabelMatcher::new("__name__", "=", "mem").unwrap()],
            vec![LabelMatcher::new("mode", "=~", "id.*").unwrap(), LabelMatcher::new("instance", "=~", "h[0-3]").unwrap()],
            vec![LabelMatcher::new("nope", "=", "x").unwrap()],
            vec![LabelMatcher::new("__name__", "=", "absent").unwrap()],
        ];
        for m in &cases {
            for (start, end) in [(0, i64::MAX), (1500, 2030)] {
                let mut got = crate::found::Found::default();
                head.select_series(m, start, end, &mut got);
                let got = got.into_map();
                let want = naive(&expected, m, start, end);
                assert_eq!(got.len(), want.len(), "{m:?}");
                for (l, s) in &want {
                    let g = &got[l];
                    assert_eq!(g.len(), s.len());
                    assert!(g.iter().zip(s).all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits()), "{m:?} {l}");
                }
            }
        }
        assert_eq!(head.series_count(), 60);
        assert_eq!(head.rows(), 180);
    }
}
