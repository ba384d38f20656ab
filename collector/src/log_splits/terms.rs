//! The body terms of a split held in memory as one byte string per segment, so "terms that
//! contain `x`" is a SIMD substring scan (`memchr::memmem`) instead of a regex automaton walked
//! over the whole term dictionary. Loaded at the first query that needs it and kept with the
//! split's reader: it costs about the size of the split's term dictionary, uncompressed.

use memchr::memmem;
use tantivy::schema::Field;
use tantivy::{Searcher, SegmentReader, Term};

use crate::Result;

/// All terms of `body` in one segment, sorted, each followed by `\n` (never inside a term:
/// terms are alphanumeric runs).
pub struct SegmentTerms {
    blob: Vec<u8>,
    starts: Vec<usize>,
}

impl SegmentTerms {
    fn load(seg: &SegmentReader, field: Field) -> Result<Self> {
        let inverted = seg.inverted_index(field)?;
        let dict = inverted.terms();
        let mut stream = dict.stream().map_err(|e| crate::Error::Internal(format!("reading a split term dictionary: {e}")))?;
        let mut blob = Vec::new();
        let mut starts = Vec::with_capacity(dict.num_terms());
        while stream.advance() {
            starts.push(blob.len());
            blob.extend_from_slice(stream.key());
            blob.push(b'\n');
        }
        Ok(SegmentTerms { blob, starts })
    }

    /// Terms containing `needle` (ending with it when `suffix_only`), each once.
    fn containing<'a>(&'a self, needle: &[u8], suffix_only: bool, out: &mut Vec<&'a [u8]>) {
        let mut last: Option<usize> = None;
        for pos in memmem::find_iter(&self.blob, needle) {
            let i = self.starts.partition_point(|&s| s <= pos) - 1;
            if last == Some(i) {
                continue;
            }
            let end = self.starts.get(i + 1).map_or(self.blob.len(), |&s| s) - 1;
            if suffix_only && pos + needle.len() != end {
                continue;
            }
            last = Some(i);
            out.push(&self.blob[self.starts[i]..end]);
        }
    }
}

/// The terms of every segment of a split.
pub struct SplitTerms(Vec<SegmentTerms>);

impl SplitTerms {
    /// No terms (for tests).
    pub fn empty() -> Self {
        SplitTerms(Vec::new())
    }

    /// Heap bytes held (the term bytes and their offsets).
    pub fn heap_bytes(&self) -> usize {
        self.0.iter().map(|s| s.blob.capacity() + s.starts.capacity() * std::mem::size_of::<usize>()).sum()
    }

    /// Reads the term dictionaries of `field`.
    pub fn load(searcher: &Searcher, field: Field) -> Result<Self> {
        searcher.segment_readers().iter().map(|s| SegmentTerms::load(s, field)).collect::<Result<_>>().map(SplitTerms)
    }

    /// Distinct terms of any segment containing `needle` (ending with it when `suffix_only`).
    pub fn containing(&self, field: Field, needle: &str, suffix_only: bool) -> Vec<Term> {
        let mut found: Vec<&[u8]> = Vec::new();
        for seg in &self.0 {
            seg.containing(needle.as_bytes(), suffix_only, &mut found);
        }
        found.sort_unstable();
        found.dedup();
        found.into_iter().filter_map(|t| std::str::from_utf8(t).ok()).map(|t| Term::from_field_text(field, t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_and_suffix_scans_find_each_term_once() {
        let mut blob = Vec::new();
        let mut starts = Vec::new();
        for t in ["errno", "error", "errorerror", "myerror", "terrors", "x"] {
            starts.push(blob.len());
            blob.extend_from_slice(t.as_bytes());
            blob.push(b'\n');
        }
        let seg = SegmentTerms { blob, starts };
        let find = |n: &str, suffix: bool| {
            let mut out = Vec::new();
            seg.containing(n.as_bytes(), suffix, &mut out);
            out.into_iter().map(|t| String::from_utf8(t.to_vec()).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(find("error", false), ["error", "errorerror", "myerror", "terrors"]);
        assert_eq!(find("error", true), ["error", "errorerror", "myerror"]);
        assert_eq!(find("x", false), ["x"]);
        assert_eq!(find("rn", false), ["errno"]);
        assert!(find("zz", false).is_empty());
    }
}
