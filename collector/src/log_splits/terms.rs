//! The body terms of a split held in memory as one byte string per segment, so "terms that
//! contain `x`" is a SIMD substring scan (`memchr::memmem`) instead of a regex automaton walked
//! over the whole term dictionary. Loaded at the first query that needs it and kept with the
//! split's reader: it costs about the size of the split's term dictionary, uncompressed.
//!
//! The terms are cut into blocks of about [`BLOCK_BYTES`]; each block has a small bit set of the
//! trigrams (three consecutive bytes) of its terms. A needle of three bytes or more can only be
//! inside a block whose set holds every trigram of the needle, so only those blocks are scanned:
//! a rare word touches a handful of blocks instead of the whole list. The sets cost a quarter of
//! the term bytes.

use memchr::memmem;
use tantivy::schema::Field;
use tantivy::{Searcher, SegmentReader, Term};

use crate::Result;

/// Term bytes per block of the trigram filter (blocks end at a term's end).
const BLOCK_BYTES: usize = 1024;
/// Bits of a block's trigram set: with ~1,000 trigrams per block about 40 % of the bits are set,
/// so a needle of n bytes passes a block without it with probability ~0.4^(n-2).
const FILTER_WORDS: usize = 2048 / 64;

/// All terms of `body` in one segment, sorted, each followed by `\n` (never inside a term:
/// terms are alphanumeric runs).
pub struct SegmentTerms {
    blob: Vec<u8>,
    starts: Vec<usize>,
    /// Byte offset in `blob` where each block starts (a term start); a block runs to the next.
    block_starts: Vec<usize>,
    /// Trigram set of each block.
    filters: Vec<[u64; FILTER_WORDS]>,
}

/// The filter bit of a trigram.
fn trigram_bit(t: &[u8]) -> usize {
    let x = (u32::from(t[0]) << 16) | (u32::from(t[1]) << 8) | u32::from(t[2]);
    (x.wrapping_mul(0x9E37_79B1) >> 16) as usize % (FILTER_WORDS * 64)
}

impl SegmentTerms {
    /// Terms already laid out as `blob`/`starts`; builds the block filters.
    fn new(blob: Vec<u8>, starts: Vec<usize>) -> Self {
        let mut block_starts = Vec::new();
        let mut filters = Vec::new();
        for (i, &start) in starts.iter().enumerate() {
            if block_starts.last().is_none_or(|&b| start - b >= BLOCK_BYTES) {
                block_starts.push(start);
                filters.push([0u64; FILTER_WORDS]);
            }
            let end = starts.get(i + 1).map_or(blob.len(), |&n| n) - 1;
            let filter = filters.last_mut().expect("a block was pushed");
            for t in blob[start..end].windows(3) {
                let b = trigram_bit(t);
                filter[b / 64] |= 1 << (b % 64);
            }
        }
        SegmentTerms { blob, starts, block_starts, filters }
    }

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
        Ok(SegmentTerms::new(blob, starts))
    }

    /// Terms containing `needle` (ending with it when `suffix_only`), each once, in term order.
    fn containing<'a>(&'a self, needle: &[u8], suffix_only: bool, out: &mut Vec<&'a [u8]>) {
        if needle.len() < 3 {
            self.scan(0, self.blob.len(), needle, suffix_only, out);
            return;
        }
        let mut want = [0u64; FILTER_WORDS];
        for t in needle.windows(3) {
            let b = trigram_bit(t);
            want[b / 64] |= 1 << (b % 64);
        }
        let finder = memmem::Finder::new(needle);
        for (i, filter) in self.filters.iter().enumerate() {
            if filter.iter().zip(&want).all(|(f, w)| f & w == *w) {
                let end = self.block_starts.get(i + 1).map_or(self.blob.len(), |&n| n);
                self.scan_with(&finder, self.block_starts[i], end, suffix_only, out);
            }
        }
    }

    /// [`SegmentTerms::containing`] over the bytes `from..to` (whole terms) of the blob.
    fn scan<'a>(&'a self, from: usize, to: usize, needle: &[u8], suffix_only: bool, out: &mut Vec<&'a [u8]>) {
        self.scan_with(&memmem::Finder::new(needle), from, to, suffix_only, out);
    }

    fn scan_with<'a>(&'a self, finder: &memmem::Finder<'_>, from: usize, to: usize, suffix_only: bool, out: &mut Vec<&'a [u8]>) {
        let needle = finder.needle();
        let mut last: Option<usize> = None;
        for pos in finder.find_iter(&self.blob[from..to]).map(|p| p + from) {
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

    /// Heap bytes held (the term bytes, their offsets and the block filters).
    pub fn heap_bytes(&self) -> usize {
        self.0
            .iter()
            .map(|s| {
                s.blob.capacity()
                    + (s.starts.capacity() + s.block_starts.capacity()) * std::mem::size_of::<usize>()
                    + s.filters.capacity() * std::mem::size_of::<[u64; FILTER_WORDS]>()
            })
            .sum()
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
        let seg = SegmentTerms::new(blob, starts);
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

    /// Over many blocks, the filtered scan finds exactly the terms a plain check of every term
    /// finds: present and absent needles, short ones (no filter), suffixes, needles at a block's
    /// first and last term.
    #[test]
    fn block_filters_never_hide_a_term() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEF";
        let mut terms: Vec<String> = (0..20_000)
            .map(|_| {
                let len = 1 + (next() % 24) as usize;
                (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char).collect()
            })
            .collect();
        terms.extend(["outofmemoryerror".to_string(), "javaoutofmemoryerrorx".to_string(), "zqxv9rare".to_string()]);
        terms.sort();
        terms.dedup();
        let mut blob = Vec::new();
        let mut starts = Vec::new();
        for t in &terms {
            starts.push(blob.len());
            blob.extend_from_slice(t.as_bytes());
            blob.push(b'\n');
        }
        let seg = SegmentTerms::new(blob, starts);
        assert!(seg.block_starts.len() > 100, "{} blocks", seg.block_starts.len());
        let mut needles: Vec<String> = vec!["outofmemoryerror".into(), "ofmemory".into(), "zqxv9rare".into(), "nothere42x".into(), "ab".into(), "a".into()];
        // Pieces of random terms, including the first and last term of blocks.
        for i in (0..terms.len()).step_by(97) {
            let t = &terms[i];
            if t.len() >= 4 {
                needles.push(t[1..t.len() - 1].to_string());
                needles.push(t[t.len() - 3..].to_string());
            }
        }
        for b in seg.block_starts.iter().take(50) {
            let i = seg.starts.partition_point(|&s| s < *b);
            needles.push(terms[i].clone());
            if i > 0 {
                needles.push(terms[i - 1].clone());
            }
        }
        for needle in &needles {
            for suffix in [false, true] {
                let mut got = Vec::new();
                seg.containing(needle.as_bytes(), suffix, &mut got);
                let got: Vec<&str> = got.iter().map(|t| std::str::from_utf8(t).unwrap()).collect();
                let want: Vec<&str> = terms
                    .iter()
                    .map(String::as_str)
                    .filter(|t| if suffix { t.ends_with(needle.as_str()) } else { t.contains(needle.as_str()) })
                    .collect();
                assert_eq!(got, want, "needle {needle:?} suffix {suffix}");
            }
        }
        // The filter does its job: a rare long word touches few blocks.
        let mut want = [0u64; FILTER_WORDS];
        for t in b"outofmemoryerror".windows(3) {
            let b = trigram_bit(t);
            want[b / 64] |= 1 << (b % 64);
        }
        let passing = seg.filters.iter().filter(|f| f.iter().zip(&want).all(|(f, w)| f & w == *w)).count();
        assert!(passing <= 3, "{passing} of {} blocks pass", seg.filters.len());
    }
}
