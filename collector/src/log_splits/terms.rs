//! The body terms of a split held in memory as one byte string per segment, so "terms that
//! contain `x`" is a SIMD substring scan (`memchr::memmem`) instead of a regex automaton walked
//! over the whole term dictionary. Loaded at the first query that needs it and kept with the
//! split's reader: it costs about the size of the split's term dictionary, uncompressed.
//!
//! The terms are cut into blocks of about [`BLOCK_BYTES`]; each block has a small set of the
//! trigrams (three consecutive bytes) of its terms, as bits of a hash. A needle of three bytes
//! or more can only be inside a block whose set holds every trigram of the needle, so only those
//! blocks are scanned: a rare word touches a handful of blocks instead of the whole list.
//!
//! The sets are stored bit-sliced: one row per bit, holding that bit of every block's set. A
//! needle reads only the rows of its own trigrams (a few rows of one bit per block) to find the
//! blocks to scan, instead of every block's whole set: a 2,048th of the sets per trigram (on the
//! logs benchmark at 2 GB the sets are over 100 MB). The sets cost a quarter of the term bytes
//! either way.

use memchr::memmem;
use tantivy::schema::Field;
use tantivy::{Searcher, SegmentReader, Term};

use crate::Result;

/// Term bytes per block of the trigram filter (blocks end at a term's end).
const BLOCK_BYTES: usize = 1024;
/// Bits of a block's trigram set: with ~1,000 trigrams per block about 40 % of the bits are set,
/// so a needle of n bytes passes a block without it with probability ~0.4^(n-2).
const FILTER_BITS: usize = 2048;

/// All terms of `body` in one segment, sorted, each followed by `\n` (never inside a term:
/// terms are alphanumeric runs).
pub struct SegmentTerms {
    blob: Vec<u8>,
    starts: Vec<usize>,
    /// Byte offset in `blob` where each block starts (a term start); a block runs to the next.
    block_starts: Vec<usize>,
    /// The blocks' trigram sets, bit-sliced: bit `j % 64` of word `row_words * b + j / 64` is
    /// set when block `j`'s terms have a trigram whose [`trigram_bit`] is `b`.
    rows: Vec<u64>,
    /// Words per row: one bit per block, rounded up to whole words.
    row_words: usize,
}

/// The filter bit of a trigram.
fn trigram_bit(t: &[u8]) -> usize {
    let x = (u32::from(t[0]) << 16) | (u32::from(t[1]) << 8) | u32::from(t[2]);
    (x.wrapping_mul(0x9E37_79B1) >> 16) as usize % FILTER_BITS
}

impl SegmentTerms {
    /// Terms already laid out as `blob`/`starts`; builds the block filters.
    fn new(blob: Vec<u8>, starts: Vec<usize>) -> Self {
        let mut block_starts: Vec<usize> = Vec::new();
        for &start in &starts {
            if block_starts.last().is_none_or(|&b| start - b >= BLOCK_BYTES) {
                block_starts.push(start);
            }
        }
        let blocks = block_starts.len();
        let row_words = blocks.div_ceil(64);
        let mut rows = vec![0u64; FILTER_BITS * row_words];
        // 64 blocks at a time: their sets as one word per bit, then one store per row (the rows'
        // current cache lines stay in cache from one group to the next).
        let mut group = vec![0u64; FILTER_BITS];
        for w in 0..row_words {
            group.fill(0);
            for j in 0..64.min(blocks - w * 64) {
                let block = w * 64 + j;
                let end = block_starts.get(block + 1).map_or(blob.len(), |&n| n);
                for term in blob[block_starts[block]..end].split(|&b| b == b'\n') {
                    for t in term.windows(3) {
                        group[trigram_bit(t)] |= 1 << j;
                    }
                }
            }
            for (b, word) in group.iter().enumerate() {
                rows[b * row_words + w] = *word;
            }
        }
        SegmentTerms { blob, starts, block_starts, rows, row_words }
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

    /// The blocks whose trigram set holds every trigram of `needle` (at least 3 bytes), in order.
    fn candidate_blocks(&self, needle: &[u8], mut each: impl FnMut(usize)) {
        let mut bits: Vec<usize> = needle.windows(3).map(trigram_bit).collect();
        bits.sort_unstable();
        bits.dedup();
        let rows: Vec<&[u64]> = bits.iter().map(|&b| &self.rows[b * self.row_words..(b + 1) * self.row_words]).collect();
        for w in 0..self.row_words {
            let mut x = rows.iter().fold(!0u64, |acc, row| acc & row[w]);
            while x != 0 {
                each(w * 64 + x.trailing_zeros() as usize);
                x &= x - 1;
            }
        }
    }

    /// Terms containing `needle` (ending with it when `suffix_only`), each once, in term order.
    fn containing<'a>(&'a self, needle: &[u8], suffix_only: bool, out: &mut Vec<&'a [u8]>) {
        if needle.len() < 3 {
            self.scan(0, self.blob.len(), needle, suffix_only, out);
            return;
        }
        let finder = memmem::Finder::new(needle);
        self.candidate_blocks(needle, |i| {
            let end = self.block_starts.get(i + 1).map_or(self.blob.len(), |&n| n);
            self.scan_with(&finder, self.block_starts[i], end, suffix_only, out);
        });
    }

    /// Terms starting with `prefix`, in term order, until `out` holds more than `max` terms.
    fn starting_with<'a>(&'a self, prefix: &[u8], max: usize, out: &mut Vec<&'a [u8]>) {
        let term = |i: usize| &self.blob[self.starts[i]..self.starts.get(i + 1).map_or(self.blob.len(), |&s| s) - 1];
        let first = self.starts.partition_point(|&s| {
            let end = memchr::memchr(b'\n', &self.blob[s..]).map_or(self.blob.len(), |e| s + e);
            &self.blob[s..end] < prefix
        });
        for i in first..self.starts.len() {
            let t = term(i);
            if !t.starts_with(prefix) || out.len() > max {
                break;
            }
            out.push(t);
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
                    + s.rows.capacity() * std::mem::size_of::<u64>()
            })
            .sum()
    }

    /// Reads the term dictionaries of `field`.
    pub fn load(searcher: &Searcher, field: Field) -> Result<Self> {
        searcher.segment_readers().iter().map(|s| SegmentTerms::load(s, field)).collect::<Result<_>>().map(SplitTerms)
    }

    /// Distinct terms of any segment starting with `prefix`; `None` when there are more than
    /// `max`.
    pub fn starting_with(&self, field: Field, prefix: &str, max: usize) -> Option<Vec<Term>> {
        let mut found: Vec<&[u8]> = Vec::new();
        for seg in &self.0 {
            seg.starting_with(prefix.as_bytes(), max, &mut found);
            found.sort_unstable();
            found.dedup();
            if found.len() > max {
                return None;
            }
        }
        Some(found.into_iter().filter_map(|t| std::str::from_utf8(t).ok()).map(|t| Term::from_field_text(field, t)).collect())
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
        let prefixed = |p: &str, max: usize| {
            let mut out = Vec::new();
            seg.starting_with(p.as_bytes(), max, &mut out);
            out.into_iter().map(|t| String::from_utf8(t.to_vec()).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(prefixed("err", 10), ["errno", "error", "errorerror"]);
        assert_eq!(prefixed("error", 10), ["error", "errorerror"]);
        assert_eq!(prefixed("x", 10), ["x"]);
        assert!(prefixed("a", 10).is_empty() && prefixed("y", 10).is_empty() && prefixed("errz", 10).is_empty());
        // Past `max` the caller learns there are more (it holds `max + 1`).
        assert_eq!(prefixed("err", 1), ["errno", "error"]);
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
        // The bit-sliced rows give exactly the blocks whose own trigram set holds the needle's.
        let block_set = |i: usize| {
            let end = seg.block_starts.get(i + 1).map_or(seg.blob.len(), |&n| n);
            let mut set = std::collections::HashSet::new();
            for term in seg.blob[seg.block_starts[i]..end].split(|&b| b == b'\n') {
                set.extend(term.windows(3).map(trigram_bit));
            }
            set
        };
        let sets: Vec<_> = (0..seg.block_starts.len()).map(block_set).collect();
        for needle in needles.iter().filter(|n| n.len() >= 3) {
            let bits: Vec<usize> = needle.as_bytes().windows(3).map(trigram_bit).collect();
            let want: Vec<usize> = (0..sets.len()).filter(|&i| bits.iter().all(|b| sets[i].contains(b))).collect();
            let mut got = Vec::new();
            seg.candidate_blocks(needle.as_bytes(), |i| got.push(i));
            assert_eq!(got, want, "needle {needle:?}");
        }
        // The filter does its job: a rare long word touches few blocks.
        let mut passing = 0;
        seg.candidate_blocks(b"outofmemoryerror", |_| passing += 1);
        assert!(passing <= 3, "{passing} of {} blocks pass", seg.block_starts.len());
    }
}
