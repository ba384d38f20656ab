//! `|= "s"` as a tantivy query on `body` whose matches are a superset of the lines that
//! contain `s` (case-sensitive substring); the search then checks `contains(s)` on each, unless
//! the query is exact ([`Narrowing::exact`]).
//!
//! `s` is tokenized like the body (alphanumeric runs; lowercased in layouts 2 and 3, as written
//! in layout 4, where matching terms case-sensitively is right because `|=` is case-sensitive:
//! a line containing `s` has, at that place, tokens that contain the tokens of `s` with the
//! same characters). A token of `s` with a
//! non-token character (or nothing) on both sides inside `s` is *inner*: any line containing
//! `s` has exactly that token at that place. The first token may continue to the left in the
//! line (`|= "rror: x"` matches `error: x`) and the last to the right (`|= "x err"` matches
//! `x errors`): they are *partial* and only constrain a term's suffix or prefix.
//!
//! - inner tokens: terms that must all be present; with positions, one phrase query;
//! - a last token that is partial only on the right: a prefix (`tok.*`) over the term dictionary,
//!   with positions the last term of a phrase-prefix query after the inner tokens;
//! - a first token partial only on the left: dropped when something else constrains the line,
//!   else the terms ending with it;
//! - one token partial on both sides (`|= "rror"`): the terms containing it.
//!
//! Terms containing or ending with a token are found by a substring scan of the split's terms
//! held in memory ([`super::terms`]), then looked up as a term set.
//!
//! A partial token is only used when it is at least 3 bytes long and only in splits whose
//! tokenizer keeps long tokens (layouts 2 to 4); with lowercased terms (layouts 2 and 3) only
//! when it is ASCII (lowercasing other scripts can change lengths), and as a prefix only when it
//! is ASCII (the prefix's term range and regex assume it). No token at all (`|= "::"`) means no
//! narrowing.
//!
//! Exact: in layout 4 (case-preserving terms, every token indexed) a substring that is one whole
//! token, partial on both sides (`|= "OutOfMemory"`), becomes the set of terms containing it,
//! and that query matches exactly the lines containing it (the argument is in the
//! [module docs](super)). Everything else stays a superset to verify.

use std::ops::Bound;

use tantivy::{Searcher, Term};
use tantivy::query::{BooleanQuery, EmptyQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query, RangeQuery, TermQuery, TermSetQuery};

use std::sync::Arc;

use super::terms::SplitTerms;
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::{LowerCaser, SimpleTokenizer, TextAnalyzer, TokenStream};

/// Longest token tantivy indexes (longer ones are skipped by its indexer).
const MAX_TOKEN_BYTES: usize = u16::MAX as usize - 5;
/// Longest token in a layout-1 split (tantivy's `default` tokenizer removes tokens of 40 bytes
/// and more).
const LAYOUT_1_MAX_TOKEN_BYTES: usize = 39;

/// Shorter partial tokens are not used to narrow (they match most of the dictionary).
const MIN_PARTIAL_TOKEN_BYTES: usize = 3;

/// A phrase-prefix query expands its last term to at most this many terms per segment (tantivy
/// preallocates that many postings); a prefix with more terms becomes a separate prefix clause.
const MAX_PHRASE_PREFIX_EXPANSIONS: usize = 4096;

/// What the index of one split can answer.
#[derive(Clone, Copy)]
pub struct BodyIndex<'a> {
    /// The split's searcher (to count a prefix's terms).
    pub searcher: &'a Searcher,
    /// The split's terms in memory, for substrings of terms, loaded only when a token needs
    /// them (a load reads the whole term dictionary); `None` when unavailable.
    pub terms: &'a dyn Fn() -> Option<Arc<SplitTerms>>,
    /// The split's terms in memory if they are loaded already (a prefix uses them then, and
    /// does not load them).
    pub terms_if_loaded: &'a dyn Fn() -> Option<Arc<SplitTerms>>,
    /// The `body` field.
    pub field: Field,
    /// Positions are recorded (phrase queries).
    pub positions: bool,
    /// Every token of every line is in the index, whatever its length (layouts 2 to 4).
    pub all_tokens: bool,
    /// Terms keep their case (layout 4); else they are lowercased.
    pub cased: bool,
}

/// An index query for a substring filter.
pub struct Narrowing {
    /// Matches at least every line that passes the filter.
    pub query: Box<dyn Query>,
    /// Matches exactly the lines that pass the filter: no verification needed.
    pub exact: bool,
}

#[derive(Debug, PartialEq)]
struct QueryToken {
    text: String,
    open_left: bool,
    open_right: bool,
}

fn tokens(s: &str, cased: bool) -> Vec<QueryToken> {
    let mut analyzer = if cased {
        TextAnalyzer::builder(SimpleTokenizer::default()).build()
    } else {
        TextAnalyzer::builder(SimpleTokenizer::default()).filter(LowerCaser).build()
    };
    let mut stream = analyzer.token_stream(s);
    let mut out = Vec::new();
    while let Some(t) = stream.next() {
        out.push(QueryToken { text: t.text.clone(), open_left: t.offset_from == 0, open_right: t.offset_to == s.len() });
    }
    out
}

/// A query matching at least every line that contains `s`; `None` when the index cannot narrow.
pub fn substring_query(index: BodyIndex<'_>, s: &str) -> Option<Narrowing> {
    let toks = tokens(s, index.cased);
    let term = |t: &str| Term::from_field_text(index.field, t);
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    // Inner tokens the index holds, with their position relative to the first token of `s`.
    // Layout 1 dropped tokens of 40 bytes and more; tantivy skips those over MAX_TOKEN_BYTES.
    let max_len = if index.all_tokens { MAX_TOKEN_BYTES } else { LAYOUT_1_MAX_TOKEN_BYTES };
    let all_inner = toks.iter().filter(|t| !t.open_left && !t.open_right).count();
    let inner: Vec<(usize, &QueryToken)> = toks
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.open_left && !t.open_right && t.text.len() <= max_len)
        .collect();
    // A phrase needs the positions of every inner token (a skipped one may leave no gap).
    let phrase_ok = index.positions && inner.len() == all_inner;
    // A partial token of one or two characters would expand to a large part of the dictionary.
    let partial_ok = |t: &QueryToken| {
        index.all_tokens && (index.cased || t.text.is_ascii()) && t.text.len() >= MIN_PARTIAL_TOKEN_BYTES
    };
    // A prefix's term range and regex assume ASCII.
    let prefix_ok = |t: &QueryToken| partial_ok(t) && t.text.is_ascii();
    // The last token when it only continues to the right: a prefix.
    let prefix_last = toks.last().filter(|t| !t.open_left && t.open_right && prefix_ok(t));
    let expansions = prefix_last.filter(|_| phrase_ok && !inner.is_empty()).and_then(|t| prefix_terms(index, &t.text));
    let mut prefix_done = false;
    if let Some(expansions) = expansions.filter(|n| *n <= MAX_PHRASE_PREFIX_EXPANSIONS) {
        // Inner tokens and the prefix are consecutive tokens of the line: one phrase whose last
        // term is any term with that prefix (every expansion kept, so still a superset).
        let mut terms: Vec<(usize, Term)> = inner.iter().map(|(i, t)| (*i, term(&t.text))).collect();
        terms.extend(prefix_last.map(|t| (toks.len() - 1, term(&t.text))));
        let mut q = PhrasePrefixQuery::new_with_offset(terms);
        q.set_max_expansions(expansions.max(1) as u32);
        clauses.push((Occur::Must, Box::new(q)));
        prefix_done = true;
    } else if phrase_ok && inner.len() >= 2 {
        // Inner tokens are consecutive in `s`, so they are consecutive tokens of the line too.
        let terms = inner.iter().map(|(i, t)| (*i, term(&t.text))).collect();
        clauses.push((Occur::Must, Box::new(PhraseQuery::new_with_offset(terms))));
    } else {
        for (_, t) in &inner {
            clauses.push((Occur::Must, Box::new(TermQuery::new(term(&t.text), IndexRecordOption::Basic))));
        }
    }
    // Terms that start with an ASCII token: a few found in the split's terms, when they are in
    // memory, are looked up one by one; else the term range [token, token with its last byte
    // plus one), read from the term dictionary (no automaton to build, but a bitset of the
    // documents of every term in it, per segment).
    let prefix = |t: &QueryToken| -> Option<Box<dyn Query>> {
        if index.cased
            && let Some(terms) = (index.terms_if_loaded)()
            && let Some(found) = terms.starting_with(index.field, &t.text, MAX_TERMS_LOOKED_UP)
        {
            return Some(any_term_query(found));
        }
        let mut end = t.text.clone().into_bytes();
        *end.last_mut()? += 1; // ASCII alphanumerics: no overflow, still UTF-8
        let end = String::from_utf8(end).ok()?;
        Some(Box::new(RangeQuery::new(Bound::Included(term(&t.text)), Bound::Excluded(term(&end)))))
    };
    // Terms that contain (or end with) a token: a scan of the split's terms in memory.
    let inside = |t: &QueryToken, suffix_only: bool| -> Option<Box<dyn Query>> {
        Some(any_term_query((index.terms)()?.containing(index.field, &t.text, suffix_only)))
    };
    // One token open on both sides is all of `s`: `s` is one alphanumeric run.
    if index.cased
        && let [t] = &toks[..]
        && t.open_left
        && t.open_right
        && partial_ok(t)
        && let Some(query) = inside(t, false)
    {
        return Some(Narrowing { query, exact: true });
    }
    let mut left_only: Option<&QueryToken> = None;
    for t in toks.iter().filter(|t| t.open_left || t.open_right) {
        if !partial_ok(t) {
            continue;
        }
        match (t.open_left, t.open_right) {
            (false, true) if prefix_done => {}
            (false, true) if !prefix_ok(t) => {}
            (false, true) => clauses.extend(prefix(t).map(|q| (Occur::Must, q))),
            (true, true) => clauses.extend(inside(t, false).map(|q| (Occur::Must, q))),
            (true, false) => left_only = Some(t),
            (false, false) => {}
        }
    }
    if clauses.is_empty()
        && let Some(t) = left_only
    {
        clauses.extend(inside(t, true).map(|q| (Occur::Must, q)));
    }
    let query: Box<dyn Query> = match clauses.len() {
        0 => return None,
        1 => clauses.pop().map(|(_, q)| q)?,
        _ => Box::new(BooleanQuery::new(clauses)),
    };
    Some(Narrowing { query, exact: false })
}

/// Most terms [`any_term_query`] looks up one by one; a larger set becomes a [`TermSetQuery`].
const MAX_TERMS_LOOKED_UP: usize = 64;

/// The documents holding any of `terms`. A few terms are looked up one by one: a
/// [`TermSetQuery`] builds an FST of its terms and walks it against each segment's term
/// dictionary, which cost more than the rest of a one-word count query on the logs benchmark.
pub fn any_term_query(terms: Vec<Term>) -> Box<dyn Query> {
    let one = |t: Term| Box::new(TermQuery::new(t, IndexRecordOption::Basic)) as Box<dyn Query>;
    match terms.len() {
        0 => Box::new(EmptyQuery),
        1 => terms.into_iter().next().map(one).unwrap_or_else(|| Box::new(EmptyQuery)),
        n if n <= MAX_TERMS_LOOKED_UP => Box::new(BooleanQuery::new(terms.into_iter().map(|t| (Occur::Should, one(t))).collect())),
        _ => Box::new(TermSetQuery::new(terms)),
    }
}

/// The most terms starting with `prefix` (ASCII) in one segment; `None` on a read error.
fn prefix_terms(index: BodyIndex<'_>, prefix: &str) -> Option<usize> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut()? += 1; // ASCII alphanumerics: no overflow
    let mut most = 0;
    for seg in index.searcher.segment_readers() {
        let inverted = seg.inverted_index(index.field).ok()?;
        let mut stream = inverted.terms().range().ge(prefix.as_bytes()).lt(&end).into_stream().ok()?;
        let mut n = 0;
        while stream.advance() {
            n += 1;
        }
        most = most.max(n);
    }
    Some(most)
}

/// A query for a group of alternatives (a line contains at least one); `None` when some
/// alternative cannot be narrowed. Exact when every alternative is (a union of exact answers).
pub fn any_substring_query(index: BodyIndex<'_>, group: &[String]) -> Option<Narrowing> {
    let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    let mut exact = true;
    for s in group {
        let n = substring_query(index, s)?;
        exact &= n.exact;
        alternatives.push((Occur::Should, n.query));
    }
    let query: Box<dyn Query> = match alternatives.len() {
        0 => return None,
        1 => alternatives.pop().map(|(_, q)| q)?,
        _ => Box::new(BooleanQuery::new(alternatives)),
    };
    Some(Narrowing { query, exact })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_know_which_side_is_open() {
        let t = tokens("rror: disk quota-exceeded for acm", false);
        let open: Vec<(&str, bool, bool)> = t.iter().map(|t| (t.text.as_str(), t.open_left, t.open_right)).collect();
        assert_eq!(
            open,
            [
                ("rror", true, false),
                ("disk", false, false),
                ("quota", false, false),
                ("exceeded", false, false),
                ("for", false, false),
                ("acm", false, true)
            ]
        );
        assert_eq!(tokens(" MyError ", false)[0], QueryToken { text: "myerror".into(), open_left: false, open_right: false });
        assert_eq!(tokens(" MyError ", true)[0], QueryToken { text: "MyError".into(), open_left: false, open_right: false });
        assert_eq!(tokens("Straße", true), [QueryToken { text: "Straße".into(), open_left: true, open_right: true }]);
        assert!(tokens(":: -", true).is_empty());
    }
}
