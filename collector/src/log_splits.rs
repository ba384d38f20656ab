//! Log records as tantivy splits: one index directory per flush under `logs/<uuid-v7>/`.
//!
//! Fields: `timestamp` (i64 ns; indexed, fast, stored), `body` (tokenized, with positions,
//! stored), `severity` (raw string, stored), `labels` (the stream labels as a JSON object,
//! stored), `stream` (one raw `name=value` term per label, indexed for stream selectors).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use pharos_model::select::{MatchOp, matches_all};
use pharos_model::{LabelMatcher, Labels, LogRecord};
use tantivy::collector::DocSetCollector;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, TantivyDocument, Value,
};
use tantivy::{Index, IndexReader, Term, doc};

use crate::metastore::{LogSplit, sync_dir};
use crate::{Error, Result};

const WRITER_MEMORY_BYTES: usize = 50 << 20;

/// The split schema and its fields.
#[derive(Clone)]
pub struct LogFields {
    schema: Schema,
    timestamp: Field,
    body: Field,
    severity: Field,
    labels: Field,
    stream: Field,
}

impl LogFields {
    /// The schema every split uses.
    pub fn new() -> Self {
        let mut b = Schema::builder();
        let timestamp = b.add_i64_field("timestamp", INDEXED | FAST | STORED);
        let body = b.add_text_field("body", TEXT | STORED);
        let severity = b.add_text_field("severity", STRING | STORED);
        let labels = b.add_text_field("labels", STORED);
        let stream = b.add_text_field("stream", STRING);
        LogFields { schema: b.build(), timestamp, body, severity, labels, stream }
    }
}

impl Default for LogFields {
    fn default() -> Self {
        Self::new()
    }
}

/// Indexes `records` into a new split directory (committed and fsynced) and describes it.
/// Returns `None` when there is nothing to write. Nothing is published here.
pub fn write_split(data_dir: &Path, fields: &LogFields, records: &[LogRecord]) -> Result<Option<LogSplit>> {
    if records.is_empty() {
        return Ok(None);
    }
    let rel = format!("logs/{}", uuid::Uuid::now_v7());
    let dir = data_dir.join(&rel);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let index = Index::create_in_dir(&dir, fields.schema.clone())?;
    let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, WRITER_MEMORY_BYTES)?;
    let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
    for r in records {
        let labels: BTreeMap<&str, &str> = r.labels.iter().collect();
        let mut d = doc!(
            fields.timestamp => r.timestamp_ns,
            fields.body => r.body.as_str(),
            fields.severity => r.severity.as_str(),
            fields.labels => serde_json::to_string(&labels).unwrap_or_default(),
        );
        for (k, v) in r.labels.iter() {
            d.add_text(fields.stream, format!("{k}={v}"));
        }
        writer.add_document(d)?;
        min_ts = min_ts.min(r.timestamp_ns);
        max_ts = max_ts.max(r.timestamp_ns);
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    sync_dir(&dir)?;
    sync_dir(dir.parent().unwrap_or(data_dir))?;
    Ok(Some(LogSplit { path: rel, min_ts_ns: min_ts, max_ts_ns: max_ts, records: records.len() as u64 }))
}

/// Opens a split for searching.
pub fn open_split(dir: &Path) -> Result<IndexReader> {
    let index = Index::open_in_dir(dir)?;
    Ok(index.reader()?)
}

/// Adds to `out` the records of the split whose labels match `matchers`, whose body contains
/// every string of `contains`, and whose timestamp is in `[start_ns, end_ns]`.
pub fn search_split(
    reader: &IndexReader,
    fields: &LogFields,
    matchers: &[LabelMatcher],
    contains: &[String],
    start_ns: i64,
    end_ns: i64,
    out: &mut Vec<LogRecord>,
) -> Result<()> {
    // Equality matchers on non-empty values and the time range narrow the search in the index;
    // every matcher and substring is then verified on the stored record.
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(
        Occur::Must,
        Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_i64(fields.timestamp, start_ns)),
            Bound::Included(Term::from_field_i64(fields.timestamp, end_ns)),
        )),
    )];
    for m in matchers {
        if matches!(m.op, MatchOp::Equal) && !m.value.is_empty() {
            let term = Term::from_field_text(fields.stream, &format!("{}={}", m.name, m.value));
            clauses.push((Occur::Must, Box::new(TermQuery::new(term, IndexRecordOption::Basic))));
        }
    }
    let query: Box<dyn Query> =
        if clauses.is_empty() { Box::new(AllQuery) } else { Box::new(BooleanQuery::new(clauses)) };
    let searcher = reader.searcher();
    let hits = searcher.search(query.as_ref(), &DocSetCollector)?;
    for addr in hits {
        let d: TantivyDocument = searcher.doc(addr)?;
        let body = d.get_first(fields.body).and_then(|v| v.as_str()).unwrap_or_default();
        if !contains.iter().all(|c| body.contains(c.as_str())) {
            continue;
        }
        let labels_json = d.get_first(fields.labels).and_then(|v| v.as_str()).unwrap_or("{}");
        let labels: BTreeMap<String, String> = serde_json::from_str(labels_json)
            .map_err(|e| Error::Corrupt(format!("log split labels {labels_json:?}: {e}")))?;
        let labels = Labels::from_pairs(labels);
        if !matches_all(matchers, &labels) {
            continue;
        }
        out.push(LogRecord {
            labels,
            timestamp_ns: d.get_first(fields.timestamp).and_then(|v| v.as_i64()).unwrap_or_default(),
            body: body.to_string(),
            severity: d.get_first(fields.severity).and_then(|v| v.as_str()).unwrap_or_default().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pod: &str, ts: i64, body: &str) -> LogRecord {
        LogRecord {
            labels: Labels::from_pairs([("namespace", "spark"), ("pod", pod)]),
            timestamp_ns: ts,
            body: body.into(),
            severity: String::new(),
        }
    }

    #[test]
    fn split_round_trip_with_selectors_ranges_and_substrings() {
        let dir = tempfile::tempdir().unwrap();
        let fields = LogFields::new();
        let records = vec![
            rec("driver", 10, "INFO starting job 1"),
            rec("driver", 20, "ERROR job 1 failed: OutOfMemoryError"),
            rec("exec-1", 30, "ERROR lost executor"),
        ];
        let split = write_split(dir.path(), &fields, &records).unwrap().unwrap();
        assert_eq!((split.min_ts_ns, split.max_ts_ns, split.records), (10, 30, 3));
        let reader = open_split(&dir.path().join(&split.path)).unwrap();
        let search = |m: &[LabelMatcher], c: &[&str], s: i64, e: i64| {
            let mut out = Vec::new();
            let c: Vec<String> = c.iter().map(|s| s.to_string()).collect();
            search_split(&reader, &fields, m, &c, s, e, &mut out).unwrap();
            out.sort_by_key(|r| r.timestamp_ns);
            out
        };
        let driver = [LabelMatcher::new("pod", "=", "driver").unwrap()];
        assert_eq!(search(&driver, &[], 0, 100), records[..2].to_vec());
        assert_eq!(search(&driver, &["ERROR"], 0, 100), records[1..2].to_vec());
        assert_eq!(search(&[], &["ERROR"], 25, 100), records[2..].to_vec());
        let re = [LabelMatcher::new("pod", "=~", "exec-.*").unwrap()];
        assert_eq!(search(&re, &[], 0, 100), records[2..].to_vec());
    }
}
