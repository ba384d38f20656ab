//! The samples a metrics query selected, per series, merged across the head and the files.

use std::collections::HashMap;

use pharos_model::Labels;

/// Samples per series, found by the address of the series' label set before its content.
///
/// Files share label sets through the store's `LabelCache`, so the same series in every file of
/// a query arrives with one address. Hashing (SipHash) and comparing its labels' content once
/// per file instead (84,000 times for a query over 5,600 series in 15 files) showed as 15–20 %
/// of the query phase's CPU in a profile of the tsdb benchmark.
/// Content is looked at only the first time an address is seen, which also merges sets of equal
/// content built separately (the head's).
#[derive(Default)]
pub struct Found {
    by_address: HashMap<usize, usize, ahash::RandomState>,
    /// Keyed by content with `ahash` (randomized, much cheaper than SipHash on label strings).
    by_content: HashMap<Labels, usize, ahash::RandomState>,
    series: Vec<(Labels, Vec<(i64, f64)>)>,
    /// Per series (by index): some sample came after a later one.
    unordered: Vec<bool>,
    /// Sets looked up by an address whose content an earlier set already had: kept alive so
    /// that their addresses are not reused by other sets while this map keys on them.
    aliases: Vec<Labels>,
    /// Rows [`Found::plan`] announced per series (by index), not yet reserved.
    planned: Vec<usize>,
}

impl Found {
    /// Appends `samples` to those of `labels`, noting whether they stay in time order (then
    /// [`Found::into_time_ordered_series`] has nothing to do for the series).
    pub fn extend(&mut self, labels: &Labels, samples: impl IntoIterator<Item = (i64, f64)>) {
        let at = self.index_of(labels);
        extend_noting_order(&mut self.series[at].1, &mut self.unordered[at], samples);
    }

    /// The series (by index, see [`Found::plan`]) cut into at most `parts` contiguous ranges of
    /// about equal reserved room, each writable on its own (by one thread each).
    pub fn split(&mut self, parts: usize) -> Vec<FoundPart<'_>> {
        let weights: Vec<usize> = self.series.iter().map(|(_, v)| v.capacity().max(1)).collect();
        let per_part = weights.iter().sum::<usize>().div_ceil(parts.max(1));
        self.split_by(&weights, per_part)
    }

    /// The series cut into contiguous ranges of about `rows` planned rows each (see
    /// [`Found::plan`]; a series planned for more is a range of its own), nothing reserved
    /// yet: each part reserves its series' room when it is read
    /// ([`FoundPart::reserve_planned`]) and frees it when it is drained.
    pub fn split_planned(&mut self, rows: usize) -> Vec<FoundPart<'_>> {
        self.planned.resize(self.series.len(), 0);
        let weights: Vec<usize> = self.planned.iter().map(|r| (*r).max(1)).collect();
        self.split_by(&weights, rows.max(1))
    }

    fn split_by(&mut self, weights: &[usize], per_part: usize) -> Vec<FoundPart<'_>> {
        let mut out = Vec::new();
        let (mut series, mut unordered) = (&mut self.series[..], &mut self.unordered[..]);
        let mut planned = &self.planned[..];
        let mut first = 0;
        while !series.is_empty() {
            let mut room = 0;
            let mut n = 0;
            while n < series.len() && (room < per_part || n == 0) {
                room += weights[first + n];
                n += 1;
            }
            let (s, s_rest) = std::mem::take(&mut series).split_at_mut(n);
            let (u, u_rest) = std::mem::take(&mut unordered).split_at_mut(n);
            let (p, p_rest) = planned.split_at(n.min(planned.len()));
            out.push(FoundPart { first, series: s, unordered: u, planned: p, arena: None });
            (series, unordered, planned) = (s_rest, u_rest, p_rest);
            first += n;
        }
        out
    }

    /// Every series' label set, by index.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = &Labels> {
        self.series.iter().map(|(l, _)| l)
    }

    fn index_of(&mut self, labels: &Labels) -> usize {
        match self.by_address.get(&labels.ptr_id()) {
            Some(&i) => i,
            None => {
                let i = match self.by_content.get(labels) {
                    Some(&i) => {
                        self.aliases.push(labels.clone());
                        i
                    }
                    None => {
                        self.series.push((labels.clone(), Vec::new()));
                        self.unordered.push(false);
                        self.by_content.insert(labels.clone(), self.series.len() - 1);
                        self.series.len() - 1
                    }
                };
                self.by_address.insert(labels.ptr_id(), i);
                i
            }
        }
    }

    /// Makes room for `rows` more samples of `labels`, on top of what earlier calls asked
    /// for, once [`Found::reserve_planned`] is called: reading then grows no series' vector
    /// step by step (copying it each time, and leaving up to half of it unused).
    /// Returns the series' index, for [`Found::split`].
    pub fn plan(&mut self, labels: &Labels, rows: usize) -> usize {
        let at = self.index_of(labels);
        self.add_planned(at, rows);
        at
    }

    /// [`Found::plan`] for a series already found or planned; nothing for another.
    pub fn plan_if_found(&mut self, labels: &Labels, rows: usize) {
        if let Some(at) = self.by_address.get(&labels.ptr_id()).or_else(|| self.by_content.get(labels)).copied() {
            self.add_planned(at, rows);
        }
    }

    fn add_planned(&mut self, at: usize, rows: usize) {
        if self.planned.len() <= at {
            self.planned.resize(at + 1, 0);
        }
        self.planned[at] += rows;
    }

    /// Appends `samples` to those of `labels`; when it has none yet, `samples` becomes its
    /// vector without a copy.
    pub fn append(&mut self, labels: &Labels, samples: Vec<(i64, f64)>) {
        let at = self.index_of(labels);
        let v = &mut self.series[at].1;
        if v.is_empty() && v.capacity() < samples.len() {
            self.unordered[at] |= !samples.is_sorted_by_key(|(t, _)| *t);
            *v = samples;
        } else {
            self.extend(labels, samples);
        }
    }

    /// Reserves what [`Found::plan`] asked for.
    pub fn reserve_planned(&mut self) {
        for (at, rows) in std::mem::take(&mut self.planned).into_iter().enumerate() {
            self.series[at].1.reserve_exact(rows);
        }
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when no series was found.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The series with samples, in the order they were first found. A series only planned for
    /// (see [`Found::plan`]) or whose rows all fell outside the time range is left out.
    pub fn into_series(self) -> Vec<(Labels, Vec<(i64, f64)>)> {
        self.series.into_iter().filter(|(_, samples)| !samples.is_empty()).collect()
    }

    /// [`Found::into_series`] with each series' samples ordered by time, stably (samples of
    /// equal time keep the order they were found in).
    pub fn into_time_ordered_series(self) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let mut scratch = Vec::new();
        self.series
            .into_iter()
            .zip(self.unordered)
            .filter(|((_, samples), _)| !samples.is_empty())
            .map(|((labels, mut samples), unordered)| {
                if unordered {
                    order_by_time(&mut samples, &mut scratch);
                }
                (labels, samples)
            })
            .collect()
    }

    /// [`Found::into_series`] as a map.
    pub fn into_map(self) -> HashMap<Labels, Vec<(i64, f64)>> {
        self.into_series().into_iter().collect()
    }
}

/// Series `first..first + len` of a [`Found`] (see [`Found::split`]).
pub struct FoundPart<'a> {
    /// Index of the part's first series in the whole.
    first: usize,
    series: &'a mut [(Labels, Vec<(i64, f64)>)],
    unordered: &'a mut [bool],
    /// Rows planned per series (empty unless split by them).
    planned: &'a [usize],
    /// Where the part's series keep their samples once [`FoundPart::reserve_planned`] made
    /// room for the planned rows; a series' own vector holds them otherwise.
    arena: Option<Arena>,
}

/// The samples of a part's series side by side in one buffer, series `i` in
/// `buf[start[i]..start[i + 1]]` (the rows planned for it), its first `held[i]` filled. A series
/// that receives more than planned moves its samples to its own vector (`spilled`).
///
/// A streamed query used to give every series a vector of its own and free it after handing
/// the samples over. mimalloc returns freed pages to the OS after 10 ms (see `pharos/src/main.rs`),
/// so each query, and each part, faulted fresh pages in: a profile of the tsdb benchmark's disk
/// query over 2 h put 18 % of its CPU in page faults on these vectors. Buffers are kept in
/// [`ARENAS`] for the next part instead.
struct Arena {
    buf: Vec<(i64, f64)>,
    start: Vec<usize>,
    held: Vec<usize>,
    spilled: Vec<bool>,
}

/// Part buffers kept between parts and queries: at most [`ARENAS_KEPT`], each of at most
/// [`ARENA_MAX_ROWS`] samples (a streamed part plans about 256k rows, 4 MB).
static ARENAS: std::sync::Mutex<Vec<Vec<(i64, f64)>>> = std::sync::Mutex::new(Vec::new());
const ARENAS_KEPT: usize = 3;
const ARENA_MAX_ROWS: usize = 512 * 1024;

impl Arena {
    fn new(planned: &[usize]) -> Self {
        let mut start = Vec::with_capacity(planned.len() + 1);
        let mut total = 0;
        for rows in planned {
            start.push(total);
            total += rows;
        }
        start.push(total);
        let mut buf = ARENAS.lock().map(|mut kept| kept.pop()).ok().flatten().unwrap_or_default();
        // A kept buffer was written once already: only a larger one writes its new tail.
        if buf.len() < total {
            buf.resize(total, (0, 0.0));
        }
        Arena { buf, start, held: vec![0; planned.len()], spilled: vec![false; planned.len()] }
    }

    /// Series `at`'s samples, wherever they are.
    fn samples<'s>(&'s mut self, at: usize, own: &'s mut Vec<(i64, f64)>) -> &'s mut [(i64, f64)] {
        if self.spilled[at] { own.as_mut_slice() } else { &mut self.buf[self.start[at]..self.start[at] + self.held[at]] }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() <= ARENA_MAX_ROWS
            && let Ok(mut kept) = ARENAS.lock()
            && kept.len() < ARENAS_KEPT
        {
            kept.push(buf);
        }
    }
}

impl FoundPart<'_> {
    /// True when series `index` (of the whole) is in this part.
    pub fn holds(&self, index: usize) -> bool {
        self.indices().contains(&index)
    }

    /// The indices (of the whole) of the part's series.
    pub fn indices(&self) -> std::ops::Range<usize> {
        self.first..self.first + self.series.len()
    }

    /// [`Found::extend`] for series `index` (of the whole, in this part) from two columns.
    pub fn extend(&mut self, index: usize, ts: &[i64], values: &[f64]) {
        let at = index - self.first;
        let n = ts.len().min(values.len());
        if let Some(a) = self.arena.as_mut().filter(|a| !a.spilled[at])
            && a.start[at] + a.held[at] + n <= a.start[at + 1]
        {
            // Room for all of them: copied as slices, the order checked over the slice.
            let from = a.start[at] + a.held[at];
            let last = if a.held[at] > 0 { a.buf[from - 1].0 } else { i64::MIN };
            for (slot, (t, v)) in a.buf[from..from + n].iter_mut().zip(ts.iter().zip(values)) {
                *slot = (*t, *v);
            }
            let ordered = ts.first().is_none_or(|t| *t >= last) && ts[..n].windows(2).all(|w| w[1] >= w[0]);
            a.held[at] += n;
            self.unordered[at] |= !ordered;
            return;
        }
        self.extend_samples(index, ts.iter().copied().zip(values.iter().copied()));
    }

    /// [`Found::extend`] for series `index` (of the whole, in this part).
    pub fn extend_samples(&mut self, index: usize, samples: impl IntoIterator<Item = (i64, f64)>) {
        let at = index - self.first;
        let mut samples = samples.into_iter();
        if let Some(a) = self.arena.as_mut().filter(|a| !a.spilled[at]) {
            let (from, end) = (a.start[at] + a.held[at], a.start[at + 1]);
            let mut last = if a.held[at] > 0 { a.buf[from - 1].0 } else { i64::MIN };
            let mut ordered = true;
            let mut written = 0;
            for slot in &mut a.buf[from..end] {
                let Some((t, v)) = samples.next() else { break };
                ordered &= t >= last;
                last = t;
                *slot = (t, v);
                written += 1;
            }
            a.held[at] += written;
            self.unordered[at] |= !ordered;
            if from + written < end {
                return;
            }
            // The planned room is full: anything more goes, with what is there, to the
            // series' own vector.
            let Some(next) = samples.next() else { return };
            let own = &mut self.series[at].1;
            own.extend_from_slice(&a.buf[a.start[at]..end]);
            a.spilled[at] = true;
            extend_noting_order(own, &mut self.unordered[at], std::iter::once(next).chain(samples));
            return;
        }
        extend_noting_order(&mut self.series[at].1, &mut self.unordered[at], samples);
    }

    /// Makes room for the rows planned for the part's series (nothing when the part was not
    /// split by them), in a buffer kept across parts and queries (see `Arena`).
    pub fn reserve_planned(&mut self) {
        if !self.planned.is_empty() && self.arena.is_none() {
            self.arena = Some(Arena::new(self.planned));
        }
    }

    /// Hands each series with samples to `f` as `(index in the whole, samples ordered by
    /// time)`, as [`Found::into_time_ordered_series`] gives them, and frees its samples.
    pub fn drain(&mut self, mut f: impl FnMut(usize, &[(i64, f64)])) {
        let mut scratch = Vec::new();
        for (i, ((_, own), unordered)) in self.series.iter_mut().zip(self.unordered.iter_mut()).enumerate() {
            let samples = match self.arena.as_mut() {
                Some(a) => a.samples(i, own),
                None => own.as_mut_slice(),
            };
            if samples.is_empty() {
                continue;
            }
            if std::mem::take(unordered) {
                order_by_time(samples, &mut scratch);
            }
            f(self.first + i, samples);
            if let Some(a) = self.arena.as_mut() {
                a.held[i] = 0;
            }
            *own = Vec::new();
        }
    }
}

/// Appends `samples` to `v`, setting `unordered` when one comes before the sample ahead of it.
fn extend_noting_order(v: &mut Vec<(i64, f64)>, unordered: &mut bool, samples: impl IntoIterator<Item = (i64, f64)>) {
    let mut last = v.last().map_or(i64::MIN, |(t, _)| *t);
    let mut ordered = true;
    v.extend(samples.into_iter().inspect(|(t, _)| {
        ordered &= *t >= last;
        last = *t;
    }));
    *unordered |= !ordered;
}

/// Most sorted runs [`order_by_time`] puts in order by moving them; more are sorted.
const MAX_RUNS: usize = 16;

/// Orders `samples` by time, stably. Samples arrive source by source (each file, the frozen
/// head, the head), each source's already ordered, and sources of one series rarely overlap in
/// time: then the sources' runs are moved into place through `scratch`, reused across
/// series. A stable sort did this before, allocating its own buffer for every series, which
/// showed as 4 % of a range query's CPU. Runs that overlap or share a timestamp, or too many
/// runs, are left to the stable sort.
pub fn order_by_time(samples: &mut [(i64, f64)], scratch: &mut Vec<(i64, f64)>) {
    let mut runs: [(usize, usize); MAX_RUNS] = [(0, 0); MAX_RUNS];
    let mut n = 0;
    let mut start = 0;
    for i in 1..=samples.len() {
        if i == samples.len() || samples[i].0 < samples[i - 1].0 {
            if n == MAX_RUNS {
                samples.sort_by_key(|(t, _)| *t);
                return;
            }
            runs[n] = (start, i);
            n += 1;
            start = i;
        }
    }
    if n <= 1 {
        return;
    }
    let runs = &mut runs[..n];
    runs.sort_unstable_by_key(|&(a, _)| samples[a].0);
    // Disjoint in time, strictly: no timestamp is in two runs, so order among equal times is
    // the order within one run, which moving runs keeps.
    if !runs.windows(2).all(|w| samples[w[0].1 - 1].0 < samples[w[1].0].0) {
        samples.sort_by_key(|(t, _)| *t);
        return;
    }
    scratch.clear();
    for &(a, b) in runs.iter() {
        scratch.extend_from_slice(&samples[a..b]);
    }
    samples.copy_from_slice(scratch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_of_equal_content_share_one_entry_whatever_their_address() {
        let a = Labels::from_pairs([("__name__", "m"), ("k", "a")]);
        let a_again = Labels::from_pairs([("__name__", "m"), ("k", "a")]);
        assert_ne!(a.ptr_id(), a_again.ptr_id());
        let b = Labels::from_pairs([("__name__", "m"), ("k", "b")]);
        let mut found = Found::default();
        found.extend(&a, [(1, 1.0)]);
        found.extend(&b, [(1, 2.0)]);
        found.extend(&a_again, [(2, 3.0)]);
        found.extend(&a.clone(), [(3, 4.0)]);
        assert_eq!(found.len(), 2);
        found.plan(&b, 10);
        found.plan(&b.clone(), 5);
        found.reserve_planned();
        let at = found.index_of(&b);
        assert!(found.series[at].1.capacity() >= 16, "one sample and the 15 planned");
        let c = Labels::from_pairs([("__name__", "m"), ("k", "c")]);
        found.plan(&c, 3);
        found.reserve_planned();
        assert_eq!(found.len(), 3);
        let map = found.into_map();
        assert_eq!(map[&a], vec![(1, 1.0), (2, 3.0), (3, 4.0)]);
        assert_eq!(map[&b], vec![(1, 2.0)]);
        assert!(!map.contains_key(&c), "a series without samples is left out");
    }

    /// Series whose samples came in time order are left as they are, others are ordered:
    /// appends in order, out of order, equal times across appends, an unsorted vector moved in.
    #[test]
    fn time_ordered_series_order_what_came_out_of_order() {
        let l = |v: &str| Labels::from_pairs([("k", v)]);
        let mut found = Found::default();
        found.extend(&l("in order"), [(1, 1.0), (2, 2.0)]);
        found.extend(&l("in order"), [(2, 3.0), (5, 4.0)]);
        found.extend(&l("late run"), [(10, 1.0), (11, 2.0)]);
        found.extend(&l("late run"), [(1, 3.0), (10, 4.0)]);
        found.extend(&l("unsorted run"), [(3, 1.0), (1, 2.0), (2, 3.0)]);
        found.append(&l("moved, unsorted"), vec![(9, 1.0), (8, 2.0)]);
        found.append(&l("moved, sorted"), vec![(8, 1.0), (9, 2.0)]);
        found.extend(&l("moved, sorted"), [(9, 3.0)]);
        found.append(&l("in order"), vec![(7, 5.0), (6, 6.0)]);
        let got: HashMap<Labels, Vec<(i64, f64)>> = found.into_time_ordered_series().into_iter().collect();
        let want = |v: &[(i64, f64)]| {
            let mut v = v.to_vec();
            v.sort_by_key(|(t, _)| *t);
            v
        };
        assert_eq!(got[&l("in order")], want(&[(1, 1.0), (2, 2.0), (2, 3.0), (5, 4.0), (7, 5.0), (6, 6.0)]));
        assert_eq!(got[&l("late run")], [(1, 3.0), (10, 1.0), (10, 4.0), (11, 2.0)]);
        assert_eq!(got[&l("unsorted run")], [(1, 2.0), (2, 3.0), (3, 1.0)]);
        assert_eq!(got[&l("moved, unsorted")], [(8, 2.0), (9, 1.0)]);
        assert_eq!(got[&l("moved, sorted")], [(8, 1.0), (9, 2.0), (9, 3.0)]);
    }

    /// Parts that keep their series in a kept buffer (`Arena`) hand over what vectors of their
    /// own would: samples within the planned rows, more than planned (moved to the series'
    /// vector mid-call and across calls), fewer, none, out of order; twice, so the second
    /// round reuses the first round's buffers (whose stale contents must not show).
    #[test]
    fn parts_in_kept_buffers_hand_over_what_vectors_would() {
        let l = |i: usize| Labels::from_pairs([("k", i.to_string())]);
        // (planned rows, calls of samples) per series.
        let cases: Vec<(usize, Vec<Vec<(i64, f64)>>)> = vec![
            (4, vec![vec![(1, 1.0), (2, 2.0)], vec![(3, 3.0), (4, 4.0)]]),              // exactly the plan
            (4, vec![vec![(1, 1.0)], vec![(5, 5.0), (2, 2.0)]]),                          // fewer, out of order
            (3, vec![vec![(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (0, 9.0)]]),            // more, within one call
            (2, vec![vec![(1, 1.0), (2, 2.0)], vec![(3, 3.0)], vec![(2, 7.0)]]),          // more, in a later call
            (5, vec![]),                                                                  // planned, nothing came
            (0, vec![vec![(8, 8.0), (7, 7.0)]]),                                          // nothing planned
            (6, vec![vec![(10, 1.0), (11, 2.0)], vec![(1, 3.0), (10, 4.0)]]),             // a late run, equal times
            (3, vec![vec![(1, 1.0)], vec![(2, 2.0)]]),                                    // fewer, in order
            (4, vec![vec![(1, 1.0)], vec![(5, 5.0), (2, 2.0)]]),                          // as 1, through `extend`
        ];
        for round in 0..2 {
            let mut found = Found::default();
            let mut want = Found::default();
            for (i, (rows, _)) in cases.iter().enumerate() {
                found.plan(&l(i), *rows);
                want.plan(&l(i), 0);
            }
            let mut got: Vec<(usize, Vec<(i64, f64)>)> = Vec::new();
            for mut part in found.split_planned(5) {
                part.reserve_planned();
                assert!(part.arena.is_some());
                for index in part.indices() {
                    for call in &cases[index].1 {
                        if index % 2 == 0 {
                            part.extend(index, &call.iter().map(|s| s.0).collect::<Vec<_>>(), &call.iter().map(|s| s.1).collect::<Vec<_>>());
                        } else {
                            part.extend_samples(index, call.iter().copied());
                        }
                    }
                }
                part.drain(|index, samples| got.push((index, samples.to_vec())));
            }
            for (i, (_, calls)) in cases.iter().enumerate() {
                for call in calls {
                    want.extend(&l(i), call.iter().copied());
                }
            }
            let want: Vec<(usize, Vec<(i64, f64)>)> = want
                .into_time_ordered_series()
                .into_iter()
                .map(|(labels, samples)| ((0..cases.len()).find(|i| l(*i) == labels).unwrap(), samples))
                .collect();
            assert_eq!(got, want, "round {round}");
        }
    }

    /// Against the stable sort, on inputs made of runs like a query's sources: in time order,
    /// reversed, overlapping, sharing a timestamp, one sample each, and more runs than are moved.
    /// Values number the samples in input order, so a difference in order among equal
    /// timestamps shows.
    #[test]
    fn ordering_by_time_equals_the_stable_sort() {
        let run = |from: i64, n: i64, step: i64| -> Vec<i64> { (0..n).map(|i| from + i * step).collect() };
        let cases: Vec<Vec<Vec<i64>>> = vec![
            vec![],
            vec![run(0, 5, 10)],
            vec![run(100, 3, 10), run(0, 5, 10)],
            vec![run(200, 2, 1), run(100, 2, 1), run(0, 2, 1), run(300, 4, 1)],
            vec![run(40, 3, 10), run(0, 5, 10)],                // 40 is in both runs
            vec![run(50, 3, 10), run(0, 10, 10)],               // overlapping
            vec![vec![5, 5, 5], vec![1, 1], vec![3]],           // equal times within runs
            vec![vec![3], vec![2], vec![1]],
            (0..40).rev().map(|k| vec![k * 2, k * 2 + 1]).collect(), // 40 runs
            (0..40).rev().map(|k| vec![k]).chain([vec![7]]).collect(), // many runs, a repeat
        ];
        let mut scratch = Vec::new();
        for runs in cases {
            let input: Vec<(i64, f64)> = runs.iter().flatten().enumerate().map(|(i, t)| (*t, i as f64)).collect();
            let mut want = input.clone();
            want.sort_by_key(|(t, _)| *t);
            let mut got = input.clone();
            order_by_time(&mut got, &mut scratch);
            assert_eq!(got, want, "runs {runs:?}");
        }
    }
}
