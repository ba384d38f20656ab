//! Log records as tantivy splits: one index directory per flush under `logs/<uuid-v7>/`.
//!
//! A split written by this version (layout 4) holds:
//!
//! - `timestamp`: i64 ns, a fast field only (time ranges and top-N by time read the column);
//! - `stream_id`: u64, indexed and fast: the record's stream, an index into `streams.json`;
//! - `body`: tokenized by [`BODY_TOKENIZER_CASED`] (alphanumeric runs as they are written: no
//!   lowercasing, no length cut), indexed with [`BODY_INDEX_OPTION`] (documents only), stored;
//! - `severity`: a fast field (a dictionary-encoded column, read back from there) and indexed as
//!   one `raw` term; not in the doc store;
//! - `attributes`: a JSON object of the record's attributes (strings), stored, each value
//!   indexed as one `raw` term under its key; absent from records without attributes;
//! - `has_attributes`: a bool fast field, true for the records with attributes (a constant
//!   column, so free, when no record has any): a search that needs no line bodies reads the doc
//!   store only for those;
//! - `streams.json` next to the index files: `{"format_version":1,"streams":[{label: value}],
//!   "all_body_tokens_indexed":true}`, the label set of every stream once per split instead of
//!   once per record, and whether every token of every body is in the index (tantivy drops
//!   tokens longer than [`tantivy::tokenizer::MAX_TOKEN_LEN`] bytes; a split with one is
//!   written without the flag and searched like an older layout).
//!
//! Layout 3 is layout 4 with `body` under [`BODY_TOKENIZER`] (lowercased) and without
//! `has_attributes`. Layout 2 is layout 3 without `attributes` and with `severity` stored only;
//! it is read as records without attributes.
//!
//! The doc store is zstd-compressed in large blocks ([`index_settings`]). Records are added
//! ordered by stream, then time (`stream_order`): on the logs benchmark (2 GB) that made the
//! postings 16 % and the fast fields half smaller than in arrival order.
//!
//! Splits of layout 1 (no `streams.json`: `labels` stored as JSON per record, a `stream` field
//! with `name=value` terms, `body` under tantivy's `default` tokenizer) are still read.
//!
//! # Substring filters
//!
//! A search ([`search::search_split`]) turns `|=` substrings into index queries that are a
//! superset of the true matches ([`candidates`]), verifies candidates exactly, and with a limit
//! loads only the candidates it needs, newest (or oldest) first by the `timestamp` column.
//!
//! In layout 4 a substring `W` that is one whole alphanumeric run (every character
//! `char::is_alphanumeric`, as [`SimpleTokenizer`] splits) is answered *exactly* by the index,
//! without verification:
//!
//! - the tokens of a line are its maximal runs of alphanumeric characters, as written;
//! - if the line contains `W` at bytes `i..i + |W|`, every character there is alphanumeric, so
//!   all of them lie in one maximal run, i.e. inside one token `T`, and `W` is a substring of
//!   `T` (a match cannot cross a token boundary, since the characters between tokens are not
//!   alphanumeric and `W` has none);
//! - conversely a token is a substring of its line, so a line with a token containing `W`
//!   contains `W`;
//! - every token is a term of the split's dictionary (no lowercasing, no length cut, and the
//!   split records that tantivy dropped none), so the lines containing `W` are exactly the
//!   documents of the terms that contain `W`: the case-sensitive substring scan of
//!   [`terms::SplitTerms`] finds those terms, and their postings are the answer.
//!
//! Lowercased terms (layouts 2 and 3) lose the case `|=` must respect, so there every candidate
//! is verified against the stored line. So are multi-word substrings (`|= "disk quota"`: the
//! index does not know which characters lie between two tokens) and anything else the
//! [`candidates`] module only narrows. When every substring filter of a search is exact and the
//! caller reads no line bodies ([`pharos_model::LogSearch::body_unused`]: a LogQL range
//! function other than `bytes_*` over `|=` filters and label stages), the search answers from the index and the `timestamp`,
//! `stream_id`, `severity` and `has_attributes` columns and reads the doc store only for
//! records with attributes.

pub mod candidates;
pub mod search;
pub mod term_budget;
pub mod terms;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, OnceLock};


use pharos_model::{Labels, LogRecord};
use tantivy::index::IndexSettings;
use tantivy::schema::{
    FAST, Field, IndexRecordOption, JsonObjectOptions, NumericOptions, OwnedValue, Schema, TantivyDocument,
    TextFieldIndexing, TextOptions,
};
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::tokenizer::{LowerCaser, SimpleTokenizer, TextAnalyzer};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{Index, IndexReader, Searcher};

use crate::metastore::{LogSplit, sync_dir};
use term_budget::TermBudget;
use crate::{Error, Result};

/// Tokenizer of `body` in layout-2 and layout-3 splits: [`SimpleTokenizer`] and [`LowerCaser`].
/// Unlike tantivy's `default` it does not drop tokens longer than 40 bytes: a substring query
/// relies on every token of the line being in the index.
pub const BODY_TOKENIZER: &str = "pharos_body";

/// Tokenizer of `body` in layout-4 splits: [`SimpleTokenizer`] alone, so terms keep their case
/// and a one-word `|=` is answered exactly by the index (see the module docs).
pub const BODY_TOKENIZER_CASED: &str = "pharos_body_cased";

/// What the body index records: documents only. Positions would let a multi-word `|=` become a
/// phrase query, but cost 12 % of the raw size on the logs benchmark (and term frequencies a few
/// more) for a narrowing the exact check after the index gives anyway; the words of a phrase are
/// required as separate terms instead. Layout-1 splits, which have positions, still use them.
pub const BODY_INDEX_OPTION: IndexRecordOption = IndexRecordOption::Basic;

/// The stream table file of a layout-2 split.
pub const STREAMS_FILE: &str = "streams.json";

/// Indexing memory per writer thread.
const WRITER_MEMORY_PER_THREAD: usize = 96 << 20;
/// Upper bound on writer threads (tantivy makes one segment per thread).
const MAX_WRITER_THREADS: usize = 4;
/// zstd level of the doc store. A profile of the logs benchmark showed level 6's match finder
/// taking ~15 % of the indexing CPU; level 3 indexed 3–15 % more MB per CPU-second in
/// alternating runs, for a doc store of 24.9 % of raw instead of 23.0 % (300 MB).
const DOCSTORE_ZSTD_LEVEL: i32 = 3;
/// Uncompressed bytes per doc store block: larger compresses better, smaller loads faster. On
/// the logs benchmark (300 MB) 16 KiB instead of 64 KiB cost 0.9 % of raw on disk and halved the
/// phrase query, which reads one block per candidate line; 256 KiB saved 0.9 %.
const DOCSTORE_BLOCK_BYTES: usize = 16 << 10;

/// Tokenizer of `severity` and of the `attributes` values: the whole value is one term.
pub const RAW_TOKENIZER: &str = "raw";

/// The layout-4 schema and its fields, for writing.
#[derive(Clone)]
pub struct LogFields {
    schema: Schema,
    timestamp: Field,
    stream_id: Field,
    body: Field,
    severity: Field,
    attributes: Field,
    /// `None` in layout 3 (written by tests only).
    has_attributes: Option<Field>,
}

impl LogFields {
    /// The schema every new split uses (layout 4).
    pub fn new() -> Self {
        Self::build(BODY_TOKENIZER_CASED, true)
    }

    /// The layout-3 schema (lowercased body terms, no `has_attributes`), to test reading it.
    #[cfg(test)]
    pub(crate) fn layout_3() -> Self {
        Self::build(BODY_TOKENIZER, false)
    }

    fn build(body_tokenizer: &str, has_attributes: bool) -> Self {
        let mut b = Schema::builder();
        let timestamp = b.add_i64_field("timestamp", FAST);
        // No field norms: nothing scores, and they cost a byte per record.
        let stream_id = b.add_u64_field("stream_id", NumericOptions::default().set_indexed().set_fast());
        let body_indexing = TextFieldIndexing::default()
            .set_tokenizer(body_tokenizer)
            .set_index_option(BODY_INDEX_OPTION)
            .set_fieldnorms(false);
        let body = b.add_text_field("body", TextOptions::default().set_indexing_options(body_indexing).set_stored());
        let raw_indexing = || {
            TextFieldIndexing::default()
                .set_tokenizer(RAW_TOKENIZER)
                .set_index_option(IndexRecordOption::Basic)
                .set_fieldnorms(false)
        };
        let severity = b.add_text_field(
            "severity",
            TextOptions::default().set_indexing_options(raw_indexing()).set_fast(RAW_TOKENIZER),
        );
        let attributes = b.add_json_field(
            "attributes",
            JsonObjectOptions::default().set_stored().set_indexing_options(raw_indexing()),
        );
        let has_attributes = has_attributes.then(|| b.add_bool_field("has_attributes", FAST));
        LogFields { schema: b.build(), timestamp, stream_id, body, severity, attributes, has_attributes }
    }
}

impl Default for LogFields {
    fn default() -> Self {
        Self::new()
    }
}

/// Doc store settings of new splits.
pub fn index_settings() -> IndexSettings {
    IndexSettings {
        docstore_compression: Compressor::Zstd(ZstdCompressor { compression_level: Some(DOCSTORE_ZSTD_LEVEL) }),
        docstore_blocksize: DOCSTORE_BLOCK_BYTES,
        ..IndexSettings::default()
    }
}

fn body_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default()).filter(LowerCaser).build()
}

fn body_analyzer_cased() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default()).build()
}

fn register_tokenizers(index: &Index) {
    index.tokenizers().register(BODY_TOKENIZER, body_analyzer());
    index.tokenizers().register(BODY_TOKENIZER_CASED, body_analyzer_cased());
}

/// True when `body` has a run of alphanumeric characters (a token) longer than tantivy indexes.
fn has_oversized_token(body: &str) -> bool {
    let max = tantivy::tokenizer::MAX_TOKEN_LEN;
    if body.len() <= max {
        return false;
    }
    body.split(|c: char| !c.is_alphanumeric()).any(|run| run.len() > max)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StreamTable {
    format_version: u32,
    streams: Vec<BTreeMap<String, String>>,
    /// Every token of every body is a term of the index (written from layout 4 on; absent, so
    /// false, in older splits).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    all_body_tokens_indexed: bool,
    /// Per stream id, its records and the bytes of their lines (written since this field
    /// exists; `index/stats` answers from it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    stream_totals: Vec<(u64, u64)>,
}

/// Documents handed to tantivy's indexing threads at once: one channel operation per batch
/// instead of per document (sending them one by one took about 2 % of the indexing CPU). The
/// channel holds up to 10,000 batches, so this also bounds the documents queued at once.
const ADD_BATCH: usize = 8;

/// Indexes `records` into a new split directory (committed and fsynced) and describes it.
/// Returns `None` when there is nothing to write. Nothing is published here.
pub fn write_split(data_dir: &Path, fields: &LogFields, records: &[LogRecord]) -> Result<Option<LogSplit>> {
    if records.is_empty() {
        return Ok(None);
    }
    let rel = format!("logs/{}", uuid::Uuid::now_v7());
    let dir = data_dir.join(&rel);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let index = Index::builder().schema(fields.schema.clone()).settings(index_settings()).create_in_dir(&dir)?;
    register_tokenizers(&index);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WRITER_THREADS)
        // A small flush gains nothing from more segments.
        .min(records.len().div_ceil(50_000).max(1));
    let mut writer = index.writer_with_num_threads::<TantivyDocument>(threads, threads * WRITER_MEMORY_PER_THREAD)?;
    // A large flush fills each thread's memory several times, one segment each. Merging them
    // took over a quarter of the indexing CPU at 2 GB (tantivy's log merge policy rewrites
    // segments level by level); searches visit every segment of a split anyway.
    writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
    let (streams, order) = stream_order(records);
    let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
    let mut all_body_tokens_indexed = true;
    let mut batch = Vec::with_capacity(ADD_BATCH);
    let mut stream_totals = vec![(0u64, 0u64); streams.len()];
    for (id, i) in order {
        let r = &records[i];
        let total = &mut stream_totals[id as usize];
        total.0 += 1;
        total.1 += r.body.len() as u64;
        let mut d = TantivyDocument::default();
        d.add_i64(fields.timestamp, r.timestamp_ns);
        d.add_u64(fields.stream_id, id);
        d.add_text(fields.body, &r.body);
        if all_body_tokens_indexed && has_oversized_token(&r.body) {
            all_body_tokens_indexed = false;
        }
        if !r.severity.is_empty() {
            d.add_text(fields.severity, &r.severity);
        }
        if !r.attributes.is_empty() {
            let object: BTreeMap<String, OwnedValue> =
                r.attributes.iter().map(|(k, v)| (k.clone(), OwnedValue::Str(v.clone()))).collect();
            d.add_object(fields.attributes, object);
        }
        if let Some(f) = fields.has_attributes {
            d.add_bool(f, !r.attributes.is_empty());
        }
        batch.push(tantivy::indexer::UserOperation::Add(d));
        if batch.len() == ADD_BATCH {
            writer.run(batch.drain(..))?;
        }
        min_ts = min_ts.min(r.timestamp_ns);
        max_ts = max_ts.max(r.timestamp_ns);
    }
    writer.run(batch.drain(..))?;
    // The stream table is durable before the commit makes the split complete.
    let table = StreamTable {
        format_version: 1,
        streams: streams.iter().map(|l| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).collect(),
        all_body_tokens_indexed,
        stream_totals,
    };
    let table_path = dir.join(STREAMS_FILE);
    let json = serde_json::to_vec(&table).map_err(|e| Error::Internal(format!("encoding the stream table: {e}")))?;
    let mut f = std::fs::File::create(&table_path).map_err(|e| Error::io(&table_path, e))?;
    f.write_all(&json).and_then(|_| f.sync_all()).map_err(|e| Error::io(&table_path, e))?;
    writer.commit()?;
    writer.wait_merging_threads()?;
    sync_dir(&dir)?;
    sync_dir(dir.parent().unwrap_or(data_dir))?;
    Ok(Some(LogSplit { path: rel, min_ts_ns: min_ts, max_ts_ns: max_ts, records: records.len() as u64 }))
}

/// The distinct label sets of `records`, sorted (a stream's id is its index), and the order to
/// index the records in: by stream, then by time, arrival order among equal timestamps.
///
/// Records of one stream side by side compress better than in arrival order, where the streams
/// of a flush interleave: the doc store's blocks hold similar lines, and postings of a stream's
/// words are dense runs of doc ids. Sorted streams put related ones (one namespace, one app)
/// next to each other too. Searches order results by the `timestamp` column, not by doc id.
fn stream_order(records: &[LogRecord]) -> (Vec<&Labels>, Vec<(u64, usize)>) {
    // Records of one stream usually share their label set (one per stream per push): it is
    // found by address, and its content is hashed once per address, not once per record.
    let mut by_address: HashMap<usize, usize, ahash::RandomState> = HashMap::default();
    let mut by_content: HashMap<&Labels, usize, ahash::RandomState> = HashMap::default();
    let mut distinct: Vec<&Labels> = Vec::new();
    let slots: Vec<usize> = records
        .iter()
        .map(|r| {
            *by_address.entry(r.labels.ptr_id()).or_insert_with(|| {
                *by_content.entry(&r.labels).or_insert_with(|| {
                    distinct.push(&r.labels);
                    distinct.len() - 1
                })
            })
        })
        .collect();
    let mut sorted: Vec<usize> = (0..distinct.len()).collect();
    sorted.sort_unstable_by(|a, b| distinct[*a].cmp(distinct[*b]));
    let mut id_of = vec![0u64; distinct.len()];
    for (id, &slot) in sorted.iter().enumerate() {
        id_of[slot] = id as u64;
    }
    let mut keyed: Vec<(u64, i64, usize)> =
        slots.iter().enumerate().map(|(i, &slot)| (id_of[slot], records[i].timestamp_ns, i)).collect();
    keyed.sort_unstable();
    let streams = sorted.iter().map(|&slot| distinct[slot]).collect();
    (streams, keyed.into_iter().map(|(id, _, i)| (id, i)).collect())
}

/// How the fields of one opened split are laid out.
#[derive(Clone)]
pub enum SplitLayout {
    /// Layout 1: per-record `labels` JSON, `stream` terms, `default` tokenizer.
    V1 {
        /// Stored labels JSON.
        labels: Field,
        /// `name=value` terms.
        stream: Field,
    },
    /// Layouts 2 to 4: `stream_id` and the stream table of `streams.json`.
    V2 {
        /// Stream id field.
        stream_id: Field,
        /// Label sets by stream id.
        streams: Vec<Labels>,
        /// The stream table says every body token is in the index (layout 4).
        all_body_tokens_indexed: bool,
        /// Per stream id, its records and their line bytes (splits written since the stream
        /// table has them).
        stream_totals: Option<Vec<(u64, u64)>>,
    },
}

/// The columns of one segment a search reads.
pub struct SegmentColumns {
    /// `timestamp`.
    pub timestamp: Column<i64>,
    /// `stream_id` (layouts 2 to 4).
    pub stream_id: Option<Column<u64>>,
    /// `severity` when it is a fast field (`None` also when no record of the segment has one).
    pub severity: Option<StrColumn>,
    /// `has_attributes` (layout 4).
    pub has_attributes: Option<Column<bool>>,
}

/// A split's searcher with its segments' columns, opened once: a split never changes after it
/// is written, and opening the columns (reading their headers and block metadata) cost about
/// a tenth of a query on the logs benchmark when done per query.
pub struct OpenedSplit {
    /// The searcher every search of the split uses.
    pub searcher: Searcher,
    /// Columns by segment ordinal in `searcher`.
    pub segments: Vec<SegmentColumns>,
}

/// An opened split: its reader and field layout.
#[derive(Clone)]
pub struct SplitHandle {
    /// The tantivy reader.
    pub reader: IndexReader,
    /// `body` field.
    pub body: Field,
    /// `severity` field.
    pub severity: Field,
    /// True when `severity` is a fast field (layout 3), read from its column; else stored.
    pub severity_fast: bool,
    /// `attributes` JSON field (layout 3; older splits have no attributes).
    pub attributes: Option<Field>,
    /// True when `body` has positions (phrase queries possible).
    pub body_positions: bool,
    /// True when `body` terms keep their case ([`BODY_TOKENIZER_CASED`], layout 4).
    pub body_cased: bool,
    /// True when the `has_attributes` column exists (layout 4).
    pub has_attributes_column: bool,
    /// Layout-specific fields.
    pub layout: SplitLayout,
    /// The body terms in memory, loaded by the first substring query that needs them and
    /// dropped again when `term_budget` needs the room.
    terms: Arc<term_budget::TermSlot>,
    term_budget: Arc<TermBudget>,
    opened: Arc<OnceLock<Arc<OpenedSplit>>>,
}

impl SplitHandle {
    /// The searcher and columns of the split, opened on first use.
    pub fn opened(&self) -> Result<Arc<OpenedSplit>> {
        if let Some(o) = self.opened.get() {
            return Ok(o.clone());
        }
        let searcher = self.reader.searcher();
        let v2 = matches!(self.layout, SplitLayout::V2 { .. });
        let segments = searcher
            .segment_readers()
            .iter()
            .map(|seg| {
                let ff = seg.fast_fields();
                Ok(SegmentColumns {
                    timestamp: ff.i64("timestamp")?,
                    stream_id: if v2 { Some(ff.u64("stream_id")?) } else { None },
                    severity: if self.severity_fast { ff.str("severity")? } else { None },
                    has_attributes: if self.has_attributes_column { Some(ff.bool("has_attributes")?) } else { None },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Two first searches may both open it; either result is the same.
        let _ = self.opened.set(Arc::new(OpenedSplit { searcher, segments }));
        Ok(self.opened.get().cloned().expect("set above"))
    }

    /// True when the index holds every token of every line, whatever its length, so partial
    /// tokens of a substring may narrow. Layouts 2 and 3 assume it (their writer did not check
    /// for tokens over tantivy's limit); layout 4 records it.
    pub fn all_body_tokens(&self) -> bool {
        match &self.layout {
            SplitLayout::V2 { all_body_tokens_indexed, .. } => !self.body_cased || *all_body_tokens_indexed,
            SplitLayout::V1 { .. } => false,
        }
    }

    /// True when a one-word `|=` is answered exactly by the index (layout 4, see the module docs).
    pub fn exact_words(&self) -> bool {
        self.body_cased && matches!(self.layout, SplitLayout::V2 { all_body_tokens_indexed: true, .. })
    }

    /// The split's body terms ([`terms::SplitTerms`]), loaded on first use (or again after the
    /// budget dropped them).
    pub fn terms(&self) -> Result<Arc<terms::SplitTerms>> {
        if let Some(t) = self.terms_if_loaded() {
            return Ok(t);
        }
        let t = {
            let mut slot = self.terms.lock();
            if let Some(t) = slot.as_ref() {
                return Ok(t.clone());
            }
            let t = Arc::new(terms::SplitTerms::load(&self.opened()?.searcher, self.body)?);
            *slot = Some(t.clone());
            t
        };
        if !self.term_budget.admit(&self.terms, t.heap_bytes(), true) {
            // No room beside the lists queries are using: serve this query, keep nothing.
            let mut slot = self.terms.lock();
            if slot.as_ref().is_some_and(|held| Arc::ptr_eq(held, &t)) {
                *slot = None;
            }
        }
        Ok(t)
    }

    /// Loads the body terms ahead of a query if they fit the budget without dropping anything
    /// else; returns false (keeping nothing) when they do not fit.
    pub fn warm_terms(&self) -> Result<bool> {
        if self.terms_loaded() {
            return Ok(true);
        }
        let t = Arc::new(terms::SplitTerms::load(&self.opened()?.searcher, self.body)?);
        let bytes = t.heap_bytes();
        if !self.term_budget.has_room_for(bytes) {
            return Ok(false);
        }
        {
            let mut slot = self.terms.lock();
            if slot.is_some() {
                return Ok(true);
            }
            *slot = Some(t.clone());
        }
        if !self.term_budget.admit(&self.terms, bytes, false) {
            let mut slot = self.terms.lock();
            if slot.as_ref().is_some_and(|held| Arc::ptr_eq(held, &t)) {
                *slot = None;
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// Marks the body terms as just used (for the budget's least-recently-used order).
    pub fn touch_terms(&self) {
        self.term_budget.touch(&self.terms, false);
    }

    /// Whether the body terms are in memory now.
    pub fn terms_loaded(&self) -> bool {
        self.terms.lock().is_some()
    }

    /// The terms in memory when they are loaded already (nothing is read otherwise).
    pub fn terms_if_loaded(&self) -> Option<Arc<terms::SplitTerms>> {
        let cached = self.terms.lock().clone();
        if cached.is_some() {
            self.term_budget.touch(&self.terms, true);
        }
        cached
    }

    /// Whether substring queries use the terms in memory (when every token is indexed).
    pub fn uses_terms(&self) -> bool {
        self.all_body_tokens()
    }
}

/// Opens a split for searching (any layout), its terms under no memory budget.
pub fn open_split(dir: &Path) -> Result<SplitHandle> {
    open_split_with(dir, TermBudget::unlimited())
}

/// Opens a split for searching (any layout); its terms in memory count against `term_budget`.
pub fn open_split_with(dir: &Path, term_budget: Arc<TermBudget>) -> Result<SplitHandle> {
    let index = Index::open_in_dir(dir)?;
    register_tokenizers(&index);
    let schema = index.schema();
    let field = |name: &str| {
        schema.get_field(name).map_err(|_| Error::Corrupt(format!("log split {} has no field {name:?}", dir.display())))
    };
    let body = field("body")?;
    let body_indexing = match schema.get_field_entry(body).field_type() {
        tantivy::schema::FieldType::Str(o) => o.get_indexing_options().cloned(),
        _ => None,
    };
    let body_positions = body_indexing.as_ref().is_some_and(|i| i.index_option().has_positions());
    let body_cased = body_indexing.as_ref().is_some_and(|i| i.tokenizer() == BODY_TOKENIZER_CASED);
    let layout = if let Ok(stream_id) = schema.get_field("stream_id") {
        let path = dir.join(STREAMS_FILE);
        let raw = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let table: StreamTable = serde_json::from_slice(&raw)
            .map_err(|e| Error::Corrupt(format!("stream table {}: {e}", path.display())))?;
        if table.format_version != 1 {
            return Err(Error::Corrupt(format!(
                "stream table {} has format_version {}, this version reads 1",
                path.display(),
                table.format_version
            )));
        }
        let stream_totals = (!table.stream_totals.is_empty() && table.stream_totals.len() == table.streams.len())
            .then_some(table.stream_totals);
        SplitLayout::V2 {
            stream_id,
            streams: table.streams.into_iter().map(Labels::from_pairs).collect(),
            all_body_tokens_indexed: table.all_body_tokens_indexed,
            stream_totals,
        }
    } else {
        SplitLayout::V1 { labels: field("labels")?, stream: field("stream")? }
    };
    Ok(SplitHandle {
        reader: index.reader()?,
        body,
        severity: field("severity")?,
        severity_fast: schema.get_field_entry(field("severity")?).is_fast(),
        attributes: schema.get_field("attributes").ok(),
        body_positions,
        body_cased,
        has_attributes_column: schema.get_field("has_attributes").is_ok_and(|f| schema.get_field_entry(f).is_fast()),
        layout,
        terms: Default::default(),
        term_budget,
        opened: Default::default(),
    })
}

#[cfg(test)]
mod tests;
