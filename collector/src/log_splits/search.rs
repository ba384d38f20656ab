//! Searching one split: index candidates, exact verification, top-N by time.
//!
//! Candidates are verified against the stored line unless every substring group was answered
//! exactly by the index ([`super::candidates::Narrowing::exact`]). Then, when the caller also
//! reads no bodies ([`LogSearch::body_unused`]), records are built from the columns alone
//! (`timestamp`, `stream_id`, `severity`) with an empty body, and the doc store is read only for
//! records whose `has_attributes` is true (their attributes are labels to the caller and may be
//! needed by [`LogSearch::label_equals`]).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use pharos_model::select::{Direction, LogGroup, LogSearch, MatchOp, group_records, matches_all};
use pharos_model::{Labels, LogRecord};
use tantivy::query::{AllQuery, BooleanQuery, EnableScoring, Occur, Query, RangeQuery, TermQuery, Weight};
use tantivy::schema::document::{DeserializeError, DocumentDeserialize, DocumentDeserializer};
use tantivy::schema::{Field, IndexRecordOption, OwnedValue};
use tantivy::{DocAddress, DocId, DocSet, TERMINATED, Term};

use super::candidates::{BodyIndex, any_substring_query, any_term_query};
use super::{OpenedSplit, SplitHandle, SplitLayout};
use crate::{Error, Result};

/// What a search did, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Documents the index query matched.
    pub candidates: usize,
    /// Documents read from the doc store.
    pub docs_loaded: usize,
    /// Records returned without their body ([`LogSearch::body_unused`]).
    pub bodies_skipped: usize,
}

impl std::ops::AddAssign for SearchStats {
    fn add_assign(&mut self, other: SearchStats) {
        self.candidates += other.candidates;
        self.docs_loaded += other.docs_loaded;
        self.bodies_skipped += other.bodies_skipped;
    }
}

/// Runs search jobs on the thread pool, each into records and stats of its own, then appends
/// their records to `out` in job order and adds up their stats: the answer of running the jobs
/// one after another into `out`.
pub fn search_on_pool<J>(jobs: impl IntoIterator<Item = J>, out: &mut Vec<LogRecord>, stats: &mut SearchStats) -> Result<()>
where
    J: FnOnce(&mut Vec<LogRecord>, &mut SearchStats) -> Result<()> + Send,
{
    let jobs = jobs.into_iter().map(|job| {
        move || {
            let (mut part, mut part_stats) = (Vec::new(), SearchStats::default());
            job(&mut part, &mut part_stats).map(|()| (part, part_stats))
        }
    });
    let parts = crate::threads::on_pool(jobs, "log search")?;
    out.reserve(parts.iter().map(|(records, _)| records.len()).sum());
    for (records, part_stats) in parts {
        out.extend(records);
        *stats += part_stats;
    }
    Ok(())
}

/// A limited search of several splits in two rounds on the thread pool, instead of one
/// search per split with rounds of its own: first the candidates of every segment of every
/// split at once, then, in the order one split's search after another would meet them
/// (direction order, then split order, then each split's own), their records: all of them in
/// parallel chunks when the limit cannot cut them, else in that order until `n` are held
/// (counting the records `out` holds) and the next candidate is past the `n`-th's timestamp.
/// Records are appended in that order, as [`search_split`] over each split in turn appends
/// them; the caller cuts the answer to the limit. Every search must be limited, and `out` in
/// direction order (as cut to the limit).
pub fn search_splits_together(searches: &[SplitSearch<'_>], out: &mut Vec<LogRecord>, stats: &mut SearchStats) -> Result<()> {
    let Some((n, dir)) = searches.first().and_then(|s| s.q.limit) else { return Ok(()) };
    if n == 0 {
        return Ok(());
    }
    let jobs = searches.iter().enumerate().flat_map(|(si, s)| {
        (0..s.segments()).map(move |ord| move || s.candidates(ord..ord + 1).map(|c| (si, c)))
    });
    let mut all: Vec<(i64, usize, u32, DocId)> = Vec::new();
    for (si, candidates) in crate::threads::on_pool(jobs, "log search")? {
        all.extend(candidates.into_iter().map(|(ts, ord, doc)| (ts, si, ord, doc)));
    }
    stats.candidates += all.len();
    match dir {
        Direction::Backward => all.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then((b.2, b.3).cmp(&(a.2, a.3)))),
        Direction::Forward => all.sort_unstable(),
    }
    if all.len() <= n {
        // The limit cannot cut them: each split's candidates (in its own order), in chunks.
        let mut per_split: Vec<Vec<(i64, u32, DocId)>> = vec![Vec::new(); searches.len()];
        for &(ts, si, ord, doc) in &all {
            per_split[si].push((ts, ord, doc));
        }
        if all.len() < PARALLEL_LOAD_MIN {
            return searches.iter().zip(&per_split).try_for_each(|(s, c)| s.load(c, out, stats));
        }
        let chunk = all.len().div_ceil(4 * crate::threads::pool_size());
        let jobs = searches.iter().zip(&per_split).flat_map(|(s, c)| {
            c.chunks(chunk).map(move |c| move |out: &mut Vec<LogRecord>, stats: &mut SearchStats| s.load(c, out, stats))
        });
        return search_on_pool(jobs, out, stats);
    }
    // In order, one run of consecutive candidates of one split at a time, until the records
    // held before this call (`out`, cut to the limit, hence in direction order) and those loaded
    // here hold `n` strictly before the next candidate's timestamp: the `n`-th of the answer
    // is then earlier, and so is every tie of it. Within a run, `load` stops by itself after
    // `n` records (and their ties): what it skips is past the `n`-th too.
    let before = |a: i64, b: i64| if dir == Direction::Backward { a > b } else { a < b };
    let first = out.len();
    let mut run = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let next = all[i].0;
        let held_before = out[..first].partition_point(|r| before(r.timestamp_ns, next));
        let loaded_at_next = out[first..].iter().rev().take_while(|r| r.timestamp_ns == next).count();
        if held_before + (out.len() - first - loaded_at_next) >= n {
            break;
        }
        let si = all[i].1;
        run.clear();
        while i < all.len() && all[i].1 == si {
            let (ts, _, ord, doc) = all[i];
            run.push((ts, ord, doc));
            i += 1;
        }
        searches[si].load(&run, out, stats)?;
    }
    Ok(())
}

/// Adds to `out` the records of the split that `q` accepts. `split_range` is the split's
/// `[min_ts_ns, max_ts_ns]` from the manifest. With `q.limit = Some((n, dir))` only the first
/// `n` accepted records in `dir` order (ties at the `n`-th timestamp included) are loaded, and
/// none beyond `boundary_ns` (a timestamp the caller already holds `n` records up to).
pub fn search_split(
    split: &SplitHandle,
    split_range: (i64, i64),
    q: &LogSearch<'_>,
    boundary_ns: Option<i64>,
    out: &mut Vec<LogRecord>,
    stats: &mut SearchStats,
) -> Result<()> {
    match SplitSearch::new(split, split_range, q, boundary_ns)? {
        Some(search) => search.run(0..search.segments(), out, stats),
        None => Ok(()),
    }
}

/// A search of one split, prepared once (streams, index query, what can be skipped) and run
/// over ranges of its segments, so that the segments of a large split can be searched on
/// several threads.
pub struct SplitSearch<'a> {
    split: &'a SplitHandle,
    q: &'a LogSearch<'a>,
    opened: Arc<OpenedSplit>,
    weight: Box<dyn Weight>,
    /// Layout 2: the labels of each stream in the stream table, `None` where the matchers
    /// reject it.
    stream_labels: Option<Vec<Option<Labels>>>,
    /// Every substring group is answered exactly by the index: no line needs verifying.
    exact: bool,
    /// Records whose `has_attributes` is false are built without reading the doc store.
    skip_bodies: bool,
    /// `q.contains_any` as substring finders, built once for the lines to verify.
    finders: Vec<Vec<memchr::memmem::Finder<'static>>>,
}

impl<'a> SplitSearch<'a> {
    /// The search of `split` for `q` (see [`search_split`]); `None` when the split cannot hold
    /// an answer (no stream matches, out of the time range or beyond `boundary_ns`).
    pub fn new(
        split: &'a SplitHandle,
        split_range: (i64, i64),
        q: &'a LogSearch<'a>,
        boundary_ns: Option<i64>,
    ) -> Result<Option<SplitSearch<'a>>> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        // Streams.
        let mut stream_labels: Option<Vec<Option<Labels>>> = None;
        match &split.layout {
            SplitLayout::V2 { stream_id, streams, .. } => {
                let matching: Vec<u64> =
                    (0..streams.len()).filter(|&i| matches_all(q.matchers, &streams[i])).map(|i| i as u64).collect();
                if matching.is_empty() {
                    return Ok(None);
                }
                if matching.len() < streams.len() {
                    let terms = matching.iter().map(|&i| Term::from_field_u64(*stream_id, i));
                    clauses.push((Occur::Must, any_term_query(terms.collect())));
                }
                stream_labels = Some(
                    streams.iter().map(|l| matches_all(q.matchers, l).then(|| l.clone())).collect(),
                );
            }
            SplitLayout::V1 { stream, .. } => {
                for m in q.matchers {
                    if matches!(m.op, MatchOp::Equal) && !m.value.is_empty() {
                        let term = Term::from_field_text(*stream, &format!("{}={}", m.name, m.value));
                        clauses.push((Occur::Must, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
                    }
                }
            }
        }
        // Label equalities: a stream label when the stream has the name, else an attribute term.
        for (name, value) in &q.label_equals {
            match &split.layout {
                SplitLayout::V2 { stream_id, streams, .. } => {
                    let ok: Vec<Term> = (0..streams.len())
                        .filter(|&i| streams[i].get(name) == Some(value.as_str()))
                        .map(|i| Term::from_field_u64(*stream_id, i as u64))
                        .collect();
                    let by_stream = (!ok.is_empty()).then(|| any_term_query(ok));
                    let any_without_name = streams.iter().any(|l| l.get(name).is_none());
                    let by_attribute = match split.attributes {
                        Some(field) if any_without_name => {
                            if !attribute_term_ok(name, value) {
                                continue; // cannot narrow; checked exactly below
                            }
                            let term = attribute_term(field, name, value);
                            Some(Box::new(TermQuery::new(term, IndexRecordOption::Basic)) as Box<dyn Query>)
                        }
                        // No attributes in this split, or every stream has the label.
                        _ => None,
                    };
                    match (by_stream, by_attribute) {
                        (None, None) => return Ok(None),
                        (Some(q), None) | (None, Some(q)) => clauses.push((Occur::Must, q)),
                        (Some(a), Some(b)) => clauses.push((
                            Occur::Must,
                            Box::new(BooleanQuery::new(vec![(Occur::Should, a), (Occur::Should, b)])),
                        )),
                    }
                }
                SplitLayout::V1 { stream, .. } => {
                    // Layout 1 has no attributes: the stream must have the label.
                    let term = Term::from_field_text(*stream, &format!("{name}={value}"));
                    clauses.push((Occur::Must, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
                }
            }
        }
        // Time: the query range, narrowed to what can still enter a limited answer.
        let (mut lo, mut hi) = (q.start_ns, q.end_ns);
        if let (Some(b), Some((_, dir))) = (boundary_ns, q.limit) {
            match dir {
                Direction::Backward => lo = lo.max(b),
                Direction::Forward => hi = hi.min(b),
            }
        }
        if lo > hi || split_range.1 < lo || split_range.0 > hi {
            return Ok(None);
        }
        if split_range.0 < lo || split_range.1 > hi {
            let ts = split.reader.searcher().schema().get_field("timestamp")?;
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Included(Term::from_field_i64(ts, lo)),
                    Bound::Included(Term::from_field_i64(ts, hi)),
                )),
            ));
        }
        // Line filters. A group with an empty alternative holds for every line.
        let opened = split.opened()?;
        let searcher = &opened.searcher;
        let all_tokens = split.all_body_tokens();
        let groups: Vec<&Vec<String>> = q.contains_any.iter().filter(|g| !g.iter().any(|s| s.is_empty())).collect();
        let load_terms = || if all_tokens { split.terms().ok() } else { None };
        let loaded_terms = || if all_tokens { split.terms_if_loaded() } else { None };
        let body_index = BodyIndex {
            searcher,
            terms: &load_terms,
            terms_if_loaded: &loaded_terms,
            field: split.body,
            positions: split.body_positions,
            all_tokens,
            cased: split.body_cased,
        };
        // True while every group is answered exactly by the index (trivially when there is none).
        let mut exact = groups.is_empty() || split.exact_words();
        for group in groups {
            match any_substring_query(body_index, group) {
                Some(n) => {
                    exact &= n.exact;
                    clauses.push((Occur::Must, n.query));
                }
                None => exact = false,
            }
        }
        // Records without bodies: every filter decided without them, and a column to tell which
        // records have attributes (read from the doc store).
        let skip_bodies = exact && q.body_unused && split.has_attributes_column;
        let query: Box<dyn Query> = match clauses.len() {
            0 => Box::new(AllQuery),
            1 => clauses.pop().map(|(_, q)| q).unwrap_or_else(|| Box::new(AllQuery)),
            _ => Box::new(BooleanQuery::new(clauses)),
        };

        let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
        let finders = q.contains_any.iter().map(|g| g.iter().map(|s| memchr::memmem::Finder::new(s).into_owned()).collect()).collect();
        Ok(Some(SplitSearch { split, q, opened: opened.clone(), weight, stream_labels, exact, skip_bodies, finders }))
    }

    /// How many segments the split has.
    pub fn segments(&self) -> usize {
        self.opened.segments.len()
    }

    /// Adds to `out` the records of the segments with ordinals in `segments` that `q` accepts
    /// (with a limit, as [`search_split`] does over these segments). Without a limit records
    /// are added in segment and document order, so runs over consecutive ranges concatenate to
    /// one run over their union.
    pub fn run(&self, segments: std::ops::Range<usize>, out: &mut Vec<LogRecord>, stats: &mut SearchStats) -> Result<()> {
        let readers = self.opened.searcher.segment_readers();
        let segments = segments.start.min(readers.len())..segments.end.min(readers.len());
        // A limited search runs over all segments at once: their candidates on the thread pool.
        let mut candidates = if self.q.limit.is_some() && segments.len() > 1 {
            let jobs = segments.map(|ord| move || self.candidates(ord..ord + 1));
            crate::threads::on_pool(jobs, "log search")?.concat()
        } else {
            self.candidates(segments)?
        };
        stats.candidates += candidates.len();
        match self.q.limit {
            Some((_, Direction::Backward)) => candidates.sort_unstable_by(|a, b| b.cmp(a)),
            Some((_, Direction::Forward)) => candidates.sort_unstable(),
            None => candidates.sort_unstable_by_key(|c| (c.1, c.2)), // doc store order
        }
        // When the limit cannot cut the candidates, every one is loaded: chunks of them on the
        // thread pool (an unlimited search is already spread over the pool by segment).
        let binding = self.q.limit.is_some_and(|(n, _)| candidates.len() > n);
        if self.q.limit.is_some() && !binding && candidates.len() >= PARALLEL_LOAD_MIN {
            let chunk = candidates.len().div_ceil(4 * crate::threads::pool_size());
            let jobs = candidates.chunks(chunk).map(|c| move |out: &mut Vec<LogRecord>, stats: &mut SearchStats| self.load(c, out, stats));
            return search_on_pool(jobs, out, stats);
        }
        self.load(&candidates, out, stats)
    }

    /// The records of segment `ord` that `q` accepts, as [`LogGroup`]s, for a search without
    /// limit, `keep` or label equalities ([`pharos_model::LogsReader::count_logs`]). When no
    /// record needs its body ([`SplitSearch::new`]'s `skip_bodies`) they are counted from the
    /// `timestamp`, `stream_id` and `severity` columns, one severity string per group, and only
    /// records with attributes are read from the doc store; otherwise the records are loaded
    /// and grouped.
    pub fn count(&self, ord: usize, stats: &mut SearchStats) -> Result<Vec<LogGroup>> {
        let q = self.q;
        debug_assert!(q.limit.is_none() && q.keep.is_none() && q.label_equals.is_empty());
        let cols = self.opened.segments.get(ord);
        let columns = cols.and_then(|c| Some((c.stream_id.as_ref()?, c.has_attributes.as_ref()?)));
        let severity_ok = q.severity_unused || self.split.severity_fast;
        let (Some(table), Some((ids, has_attributes)), Some(cols), true, true) =
            (&self.stream_labels, columns, cols, self.skip_bodies, severity_ok)
        else {
            let mut records = Vec::new();
            self.run(ord..ord + 1, &mut records, stats)?;
            return Ok(group_records(records));
        };
        let candidates = self.candidates(ord..ord + 1)?;
        stats.candidates += candidates.len();
        // Per stream id, per severity ordinal: the timestamps (a stream has a few severities).
        let mut keyed: Vec<Vec<(Option<u64>, Vec<i64>)>> = vec![Vec::new(); table.len()];
        let mut with_attributes = Vec::new();
        for &(ts, seg, doc) in &candidates {
            if ts < q.start_ns || ts > q.end_ns {
                continue;
            }
            if has_attributes.first(doc).unwrap_or(true) {
                with_attributes.push((ts, seg, doc));
                continue;
            }
            let id = ids.first(doc).unwrap_or(u64::MAX);
            let Some(by_severity) = keyed.get_mut(id as usize) else {
                return Err(Error::Corrupt(format!("log split: stream id {id} not in the stream table")));
            };
            let severity = match (&cols.severity, q.severity_unused) {
                (Some(col), false) => col.term_ords(doc).next(),
                _ => None,
            };
            match by_severity.iter_mut().find(|(s, _)| *s == severity) {
                Some((_, timestamps)) => timestamps.push(ts),
                None => by_severity.push((severity, vec![ts])),
            }
            stats.bodies_skipped += 1;
        }
        let mut out = Vec::new();
        let mut text = String::new();
        for (labels, by_severity) in table.iter().zip(keyed) {
            for (severity, timestamps_ns) in by_severity {
                // A stream the matchers reject (the index query leaves them out already when
                // some stream is rejected, so this is a safeguard).
                let Some(labels) = labels else { continue };
                text.clear();
                if let (Some(o), Some(col)) = (severity, &cols.severity) {
                    col.ord_to_str(o, &mut text).map_err(|e| Error::Corrupt(format!("log split severity column: {e}")))?;
                }
                out.push(LogGroup { labels: labels.clone(), severity: text.clone(), attributes: Vec::new(), timestamps_ns });
            }
        }
        let mut records = Vec::new();
        self.load(&with_attributes, &mut records, stats)?;
        out.extend(group_records(records));
        Ok(out)
    }

    /// Candidates of the segments with ordinals in `segments`, with their timestamps, from the
    /// index and the `timestamp` column.
    fn candidates(&self, segments: std::ops::Range<usize>) -> Result<Vec<(i64, u32, DocId)>> {
        let readers = self.opened.searcher.segment_readers();
        let mut candidates: Vec<(i64, u32, DocId)> = Vec::new();
        let (mut docs, mut times) = (Vec::new(), Vec::new());
        for (ord, seg) in readers.iter().enumerate().take(segments.end).skip(segments.start) {
            let alive = seg.alive_bitset();
            let mut scorer = self.weight.scorer(seg, 1.0)?;
            let mut doc = scorer.doc();
            docs.clear();
            while doc != TERMINATED {
                if alive.is_none_or(|a| a.is_alive(doc)) {
                    docs.push(doc);
                }
                doc = scorer.advance();
            }
            // All timestamps at once: the column reads them four at a time, so that their
            // cache misses (the documents are far apart) overlap, and with one dynamic call.
            times.clear();
            times.resize(docs.len(), None);
            self.opened.segments[ord].timestamp.first_vals(&docs, &mut times);
            candidates.extend(docs.iter().zip(&times).map(|(&doc, ts)| (ts.unwrap_or_default(), ord as u32, doc)));
        }
        Ok(candidates)
    }

    /// Adds to `out` the records of `candidates` (in the order to load them) that `q` accepts,
    /// up to the limit.
    fn load(&self, candidates: &[(i64, u32, DocId)], out: &mut Vec<LogRecord>, stats: &mut SearchStats) -> Result<()> {
        let SplitSearch { split, q, ref opened, weight: _, ref stream_labels, exact, skip_bodies, ref finders } = *self;
        // What `q.accepts_body` answers, with the finders built once.
        let accepts_body = |body: &str| finders.iter().all(|g| g.iter().any(|f| f.find(body.as_bytes()).is_some()));
        let searcher = &opened.searcher;
        // Room for every record that may be accepted (16,601 on the logs benchmark's count query,
        // where growing the vector step by step was a third of the query's CPU).
        out.reserve(q.limit.map_or(candidates.len(), |(n, _)| n.min(candidates.len())));
        let cols = &opened.segments;
        let mut severity_buf = String::new();
        let mut accepted = 0usize;
        let mut last_accepted_ts: Option<i64> = None;
        for &(ts, ord, doc) in candidates {
            if let Some((n, _)) = q.limit
                && accepted >= n
                && last_accepted_ts != Some(ts)
            {
                break;
            }
            // The stream is known from the column before the document is read.
            let seg_cols = &cols[ord as usize];
            let labels = match (stream_labels, &seg_cols.stream_id) {
                (Some(table), Some(col)) => {
                    let id = col.first(doc).unwrap_or(u64::MAX) as usize;
                    match table.get(id) {
                        Some(Some(l)) => Some(l.clone()),
                        Some(None) => continue,
                        None => return Err(Error::Corrupt(format!("log split: stream id {id} not in the stream table"))),
                    }
                }
                _ => None,
            };
            let skip_doc = skip_bodies && seg_cols.has_attributes.as_ref().is_some_and(|col| !col.first(doc).unwrap_or(true));
            // No document for a skipped body (an empty one allocates too).
            let mut d: Option<StoredFields> = if skip_doc {
                stats.bodies_skipped += 1;
                None
            } else {
                stats.docs_loaded += 1;
                Some(searcher.doc(DocAddress::new(ord, doc))?)
            };
            let body = d.as_mut().and_then(|d| d.take_str(split.body)).unwrap_or_default();
            if !exact && !accepts_body(&body) {
                continue;
            }
            let field = |f: Field| d.as_ref().and_then(|d| d.str(f));
            let labels = match (&split.layout, labels) {
                (_, Some(l)) => l,
                (SplitLayout::V1 { labels, .. }, None) => {
                    let json = field(*labels).unwrap_or("{}");
                    let map: BTreeMap<String, String> = serde_json::from_str(json)
                        .map_err(|e| Error::Corrupt(format!("log split labels {json:?}: {e}")))?;
                    let l = Labels::from_pairs(map);
                    if !matches_all(q.matchers, &l) {
                        continue;
                    }
                    l
                }
                (SplitLayout::V2 { .. }, None) => continue,
            };
            let record = LogRecord {
                labels,
                timestamp_ns: ts,
                body,
                severity: if q.severity_unused {
                    String::new()
                } else if split.severity_fast {
                    severity_buf.clear();
                    if let Some(col) = &seg_cols.severity
                        && let Some(o) = col.term_ords(doc).next()
                    {
                        col.ord_to_str(o, &mut severity_buf)
                            .map_err(|e| Error::Corrupt(format!("log split severity column: {e}")))?;
                    }
                    severity_buf.clone()
                } else {
                    field(split.severity).unwrap_or_default().to_string()
                },
                attributes: match (split.attributes, &mut d) {
                    (Some(f), Some(d)) => read_attributes(d, f),
                    _ => Vec::new(),
                },
            };
            if ts < q.start_ns
                || ts > q.end_ns
                || !q.accepts_label_equals(&record)
                || q.keep.is_some_and(|k| !k(&record))
            {
                continue;
            }
            accepted += 1;
            last_accepted_ts = Some(ts);
            out.push(record);
        }
        Ok(())
    }
}

/// Candidates a limited search loads, at least, before it loads them on several threads.
const PARALLEL_LOAD_MIN: usize = 256;

/// The longest value tantivy indexes as one term (longer tokens are skipped at indexing).
const MAX_TERM_BYTES: usize = 65_530;

/// True when `name="value"` can be looked up as an attribute term: the value fits in a term,
/// and the key has no byte tantivy reserves in JSON paths.
fn attribute_term_ok(name: &str, value: &str) -> bool {
    value.len() <= MAX_TERM_BYTES && !name.is_empty() && !name.bytes().any(|b| b < 2)
}

/// The `attributes` term of `name="value"`: `name` is one JSON path segment (its dots are not
/// path separators), `value` one `raw` string term.
pub fn attribute_term(field: tantivy::schema::Field, name: &str, value: &str) -> Term {
    let escaped = name.replace('\\', "\\\\").replace('.', "\\.");
    let mut term = Term::from_field_json_path(field, &escaped, false);
    term.append_type_and_str(value);
    term
}

/// The stored attributes of a document, sorted by key (tantivy stores a JSON object sorted).
fn read_attributes(d: &mut StoredFields, field: Field) -> Vec<(String, String)> {
    let Some(OwnedValue::Object(object)) = d.take(field) else { return Vec::new() };
    let pairs: Vec<(String, String)> = object
        .into_iter()
        .map(|(k, v)| (k, if let OwnedValue::Str(s) = v { s } else { String::new() }))
        .collect();
    pharos_model::normalize_attributes(pairs)
}

/// A stored document as the list of its fields' values.
///
/// tantivy's own document type copies every value it reads into a compact buffer of its own,
/// from which the body was copied once more into the record; here each string is allocated
/// once, as it is read, and moved into the record.
struct StoredFields(Vec<(Field, OwnedValue)>);

impl DocumentDeserialize for StoredFields {
    fn deserialize<'de, D: DocumentDeserializer<'de>>(mut deserializer: D) -> std::result::Result<Self, DeserializeError> {
        let mut fields = Vec::with_capacity(deserializer.size_hint());
        while let Some(field) = deserializer.next_field::<OwnedValue>()? {
            fields.push(field);
        }
        Ok(StoredFields(fields))
    }
}

impl StoredFields {
    /// The first value of `field`, taken out (a later call sees the next one).
    fn take(&mut self, field: Field) -> Option<OwnedValue> {
        let at = self.0.iter().position(|(f, _)| *f == field)?;
        Some(self.0.remove(at).1)
    }

    /// The first value of `field` when it is a string, taken out.
    fn take_str(&mut self, field: Field) -> Option<String> {
        match self.take(field)? {
            OwnedValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The first value of `field` when it is a string.
    fn str(&self, field: Field) -> Option<&str> {
        match self.0.iter().find(|(f, _)| *f == field) {
            Some((_, OwnedValue::Str(s))) => Some(s),
            _ => None,
        }
    }
}

/// Adds to `out`, per stream of the split matching `matchers`, its entries in each of the
/// `buckets` (inclusive, ascending, not overlapping) and their line bytes. A split inside one
/// bucket answers from its stream table's totals; one that several buckets (or a bucket's
/// edge) cut counts entries from the `timestamp` and `stream_id` columns, in one pass, and
/// estimates their bytes at the stream's mean line length in the split. Splits without totals
/// (written before them) read their records.
pub fn split_stream_stats(
    split: &SplitHandle,
    split_range: (i64, i64),
    matchers: &[pharos_model::LabelMatcher],
    buckets: &[(i64, i64)],
    out: &mut HashMap<Labels, Vec<pharos_model::StreamStats>>,
) -> Result<()> {
    let (Some(&(start_ns, _)), Some(&(_, end_ns))) = (buckets.first(), buckets.last()) else { return Ok(()) };
    if split_range.1 < start_ns || split_range.0 > end_ns {
        return Ok(());
    }
    let mut add = |labels: &Labels, b: usize, entries: u64, bytes: u64| {
        out.entry(labels.clone()).or_insert_with(|| vec![Default::default(); buckets.len()])[b].add(entries, bytes);
    };
    let SplitLayout::V2 { streams, stream_totals: Some(totals), .. } = &split.layout else {
        let mut records = Vec::new();
        search_split(split, split_range, &LogSearch::new(matchers, start_ns, end_ns), None, &mut records, &mut SearchStats::default())?;
        for r in records {
            if let Some(b) = pharos_model::select::bucket_of(buckets, r.timestamp_ns) {
                add(&r.labels, b, 1, r.body.len() as u64);
            }
        }
        return Ok(());
    };
    let wanted: Vec<bool> = streams.iter().map(|l| matches_all(matchers, l)).collect();
    // Entries per stream id, per bucket.
    let mut entries: Vec<Vec<u64>> = vec![vec![0; buckets.len()]; streams.len()];
    match pharos_model::select::bucket_of(buckets, split_range.0) {
        Some(b) if split_range.1 <= buckets[b].1 => {
            entries.iter_mut().zip(totals).for_each(|(e, t)| e[b] = t.0);
        }
        _ => for_each_record_in_range(split, start_ns, end_ns, |id, t| {
            if wanted.get(id).copied().unwrap_or(false)
                && let Some(b) = pharos_model::select::bucket_of(buckets, t)
            {
                entries[id][b] += 1;
            }
        })?,
    }
    for (id, ((labels, &(records, bytes)), per_bucket)) in streams.iter().zip(totals).zip(entries).enumerate() {
        if !wanted[id] {
            continue;
        }
        for (b, n) in per_bucket.into_iter().enumerate().filter(|(_, n)| *n > 0) {
            // All of the stream's records: its exact bytes; some: their share of them.
            let estimated = if n == records { bytes } else { (bytes as u128 * n as u128 / records.max(1) as u128) as u64 };
            add(labels, b, n, estimated);
        }
    }
    Ok(())
}

/// Adds the label sets of the split's streams that match `matchers` and have a record in
/// `[start_ns, end_ns]`. Layout 2 answers from the stream table and the `timestamp` and
/// `stream_id` columns, without reading the doc store; layout 1 reads the records.
pub fn split_streams(
    split: &SplitHandle,
    split_range: (i64, i64),
    matchers: &[pharos_model::LabelMatcher],
    start_ns: i64,
    end_ns: i64,
    out: &mut Vec<Labels>,
) -> Result<()> {
    if split_range.1 < start_ns || split_range.0 > end_ns {
        return Ok(());
    }
    let SplitLayout::V2 { streams, .. } = &split.layout else {
        let mut records = Vec::new();
        search_split(split, split_range, &LogSearch::new(matchers, start_ns, end_ns), None, &mut records, &mut SearchStats::default())?;
        out.extend(records.into_iter().map(|r| r.labels));
        return Ok(());
    };
    let wanted: Vec<bool> = streams.iter().map(|l| matches_all(matchers, l)).collect();
    if split_range.0 >= start_ns && split_range.1 <= end_ns {
        // Every stream in the table has a record in the split, so in the range.
        out.extend(streams.iter().zip(&wanted).filter(|(_, w)| **w).map(|(l, _)| l.clone()));
        return Ok(());
    }
    let mut seen = vec![false; streams.len()];
    for_each_record_in_range(split, start_ns, end_ns, |id, _| {
        if wanted.get(id).copied().unwrap_or(false) {
            seen[id] = true;
        }
    })?;
    out.extend(streams.iter().zip(&seen).filter(|(_, s)| **s).map(|(l, _)| l.clone()));
    Ok(())
}

/// Calls `f` with the stream id and timestamp of every live record of the split with a
/// timestamp in `[start_ns, end_ns]`, from the `timestamp` and `stream_id` columns (layouts 2 to 4).
fn for_each_record_in_range(split: &SplitHandle, start_ns: i64, end_ns: i64, mut f: impl FnMut(usize, i64)) -> Result<()> {
    let opened = split.opened()?;
    for (seg, cols) in opened.searcher.segment_readers().iter().zip(&opened.segments) {
        let Some(ids) = &cols.stream_id else { continue };
        let alive = seg.alive_bitset();
        for doc in 0..seg.max_doc() {
            if alive.is_some_and(|a| !a.is_alive(doc)) {
                continue;
            }
            let Some(t) = cols.timestamp.first(doc) else { continue };
            if t >= start_ns && t <= end_ns {
                f(ids.first(doc).unwrap_or(u64::MAX) as usize, t);
            }
        }
    }
    Ok(())
}
