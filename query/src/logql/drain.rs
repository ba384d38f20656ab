//! Log patterns (Loki's `/loki/api/v1/patterns`): lines grouped into templates by the Drain
//! algorithm (P. He et al., "Drain: An Online Log Parsing Approach with Fixed Depth Tree",
//! ICWS 2017), written here from the paper.
//!
//! A line is split at runs of spaces into words, each keeping the spaces after it. Lines are
//! grouped by their number of words and their first [`PREFIX_WORDS`] words (a word with a digit
//! counts as a variable there, as does a new word after a prefix that already had
//! [`MAX_CHILDREN`] different words after it). In its group a line joins the template it shares the most
//! words with, if that is at least [`SIMILARITY`] of its words; the template's words that
//! differ from the line's become `<_>`. Otherwise the line starts a template of its own.
//!
//! A template renders as a pattern that `|>` accepts: `<_>` for each variable word (adjacent
//! variables, and the spaces between them when those vary too, become one `<_>`), literal
//! text elsewhere, so each line of the template matches its pattern.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Words of a line that choose its group, after its word count.
pub const PREFIX_WORDS: usize = 4;
/// Distinct words a level of the tree keeps apart under one parent: once a group's prefix
/// `w1 … wk` has had this many different next words, any other next word counts as a variable
/// (Drain's cap on a node's children; Loki uses 100 too), so `user <name> logged in` with many
/// names ends up in one template.
pub const MAX_CHILDREN: usize = 100;
/// The share of a template's words a line must have, in place, to join it.
pub const SIMILARITY: f64 = 0.5;

/// A variable in a pattern.
pub const VARIABLE: &str = "<_>";

/// One word of a template: `None` where lines differ.
#[derive(Clone, Debug, PartialEq)]
struct Word {
    text: Option<String>,
    spaces: Option<String>,
}

/// One template and what it has seen.
#[derive(Clone, Debug)]
pub struct Template {
    words: Vec<Word>,
    /// Lines that joined it.
    pub count: u64,
    /// Lines per time bucket (the caller's bucket keys).
    pub buckets: BTreeMap<i64, u64>,
}

impl Template {
    /// The pattern text (see the module docs).
    pub fn pattern(&self) -> String {
        let mut out = String::new();
        let mut open_variable = false;
        for w in &self.words {
            match &w.text {
                Some(t) => {
                    out.push_str(t);
                    open_variable = false;
                }
                None if !open_variable => {
                    out.push_str(VARIABLE);
                    open_variable = true;
                }
                None => {}
            }
            match &w.spaces {
                Some(s) if !s.is_empty() => {
                    out.push_str(s);
                    open_variable = false;
                }
                Some(_) => {}
                // Spaces that vary belong to the variable around them.
                None if !open_variable => {
                    out.push_str(VARIABLE);
                    open_variable = true;
                }
                None => {}
            }
        }
        out
    }
}

/// Splits `line` into words, each with the spaces after it.
fn words(line: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let w = rest.find(' ').unwrap_or(rest.len());
        let s = rest[w..].find(|c| c != ' ').map_or(rest.len(), |i| w + i);
        out.push((&rest[..w], &rest[w..s]));
        rest = &rest[s..];
    }
    out
}

/// The Drain tree, flattened: templates by group key.
#[derive(Default)]
pub struct Drain {
    groups: HashMap<(usize, Vec<String>), Vec<usize>>,
    /// Per word count and prefix, the words seen after it (at most [`MAX_CHILDREN`]).
    children: HashMap<(usize, Vec<String>), HashSet<String>>,
    templates: Vec<Template>,
}

impl Drain {
    /// Adds one line, counted in `bucket`; returns the index of the template it joined (see
    /// [`Drain::pattern_of`]).
    pub fn add(&mut self, line: &str, bucket: i64) -> usize {
        let ws = words(line);
        let mut key: Vec<String> = Vec::with_capacity(PREFIX_WORDS);
        for (w, _) in ws.iter().take(PREFIX_WORDS) {
            let mut word = if w.bytes().any(|c| c.is_ascii_digit()) { VARIABLE } else { w };
            let seen = self.children.entry((ws.len(), key.clone())).or_default();
            if !seen.contains(word) {
                if seen.len() < MAX_CHILDREN {
                    seen.insert(word.to_string());
                } else {
                    word = VARIABLE;
                }
            }
            key.push(word.to_string());
        }
        let group = self.groups.entry((ws.len(), key)).or_default();
        // The most similar template; ties go to the one with more variables (Drain's rule).
        let mut best: Option<(usize, f64, usize)> = None;
        for &id in group.iter() {
            let t = &self.templates[id].words;
            let same = t.iter().zip(&ws).filter(|(tw, (w, _))| tw.text.as_deref() == Some(*w)).count();
            let variables = t.iter().filter(|w| w.text.is_none()).count();
            let sim = if ws.is_empty() { 1.0 } else { same as f64 / ws.len() as f64 };
            if best.is_none_or(|(_, s, v)| sim > s || (sim == s && variables > v)) {
                best = Some((id, sim, variables));
            }
        }
        let id = match best {
            Some((id, sim, _)) if sim >= SIMILARITY => {
                for (tw, (w, s)) in self.templates[id].words.iter_mut().zip(&ws) {
                    if tw.text.as_deref() != Some(*w) {
                        tw.text = None;
                    }
                    if tw.spaces.as_deref() != Some(*s) {
                        tw.spaces = None;
                    }
                }
                id
            }
            _ => {
                let words = ws.iter().map(|(w, s)| Word { text: Some(w.to_string()), spaces: Some(s.to_string()) }).collect();
                self.templates.push(Template { words, count: 0, buckets: BTreeMap::new() });
                group.push(self.templates.len() - 1);
                self.templates.len() - 1
            }
        };
        let t = &mut self.templates[id];
        t.count += 1;
        *t.buckets.entry(bucket).or_default() += 1;
        id
    }

    /// The pattern of the template [`Drain::add`] returned `id` for, as it is now.
    pub fn pattern_of(&self, id: usize) -> String {
        self.templates[id].pattern()
    }

    /// The templates, most lines first (then by pattern).
    pub fn templates(self) -> Vec<Template> {
        let mut t = self.templates;
        t.sort_by_cached_key(|t| (std::cmp::Reverse(t.count), t.pattern()));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::pipeline::Pattern;

    #[test]
    fn lines_group_into_templates() {
        let mut d = Drain::default();
        for (i, l) in [
            "ts=1 level=info msg=started  took=12ms",
            "ts=2 level=info msg=started  took=9ms",
            "ts=3 level=error msg=failed  took=1s",
            "connection from 10.0.0.1 closed",
            "connection from 10.0.0.2 closed",
            "",
        ]
        .iter()
        .enumerate()
        {
            d.add(l, i as i64 / 2);
        }
        let got: Vec<(String, u64, Vec<(i64, u64)>)> =
            d.templates().into_iter().map(|t| (t.pattern(), t.count, t.buckets.into_iter().collect())).collect();
        // The error line's first words differ (`level=error msg=failed`): another group.
        assert_eq!(
            got,
            vec![
                ("<_> level=info msg=started  <_>".to_string(), 2, vec![(0, 2)]),
                ("connection from <_> closed".to_string(), 2, vec![(1, 1), (2, 1)]),
                ("".to_string(), 1, vec![(2, 1)]),
                ("ts=3 level=error msg=failed  took=1s".to_string(), 1, vec![(1, 1)]),
            ]
        );
    }

    #[test]
    fn varying_spaces_join_the_variable() {
        let mut d = Drain::default();
        let lines = ["k1 k2 k3 k4 b  c d", "k1 k2 k3 k4 x c d", "k1 k2 k3 k4 y   c d"];
        for l in lines {
            d.add(l, 0);
        }
        let t = d.templates();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].pattern(), "k1 k2 k3 k4 <_>c d");
        let p = Pattern::parse_filter(&t[0].pattern()).unwrap();
        assert!(lines.iter().all(|l| p.test(l)));
        // A word among the first four that differs makes another group (as in Drain's tree).
        let mut d = Drain::default();
        d.add("user alice logged in", 0);
        d.add("user bob logged in", 0);
        assert_eq!(d.templates().len(), 2);
    }

    /// After [`MAX_CHILDREN`] distinct names under `user`, further names share the variable
    /// child: 100 templates of one line each, then one `user <_> logged in` of the other 50.
    #[test]
    fn a_crowded_level_routes_new_words_to_the_variable() {
        let name = |i: usize| format!("n{}{}", (b'a' + (i / 26) as u8) as char, (b'a' + (i % 26) as u8) as char);
        let mut d = Drain::default();
        for i in 0..150 {
            d.add(&format!("user {} logged in", name(i)), 0);
        }
        let t = d.templates();
        assert_eq!(t.len(), 101);
        assert_eq!((t[0].pattern().as_str(), t[0].count), ("user <_> logged in", 50));
        assert!(t[1..].iter().all(|t| t.count == 1 && !t.pattern().contains(VARIABLE)));
        // A name seen before the level filled keeps its own template.
        d = Drain::default();
        for i in 0..150 {
            d.add(&format!("user {} logged in", name(i)), 0);
        }
        d.add(&format!("user {} logged in", name(3)), 0);
        assert!(d.templates().iter().any(|t| t.pattern() == format!("user {} logged in", name(3)) && t.count == 2));
    }

    /// A real Spark driver log (1,287 lines): the 89 "Finished task" lines, all of 20 words
    /// that differ in the time, the task, stage and TID numbers, the duration and the
    /// `(k/n)` counter (checked with awk), form one template, whose pattern as a `|>` filter
    /// accepts exactly them; every line matches its own template's pattern.
    #[test]
    fn spark_driver_log() {
        let log = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/tests/fixtures/spark/driver.stderr.log")).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        let mut d = Drain::default();
        let ids: Vec<usize> = lines.iter().map(|l| d.add(l, 0)).collect();
        // Each line matches the pattern of the template it joined, as that ended up.
        for (l, id) in lines.iter().zip(&ids) {
            let p = d.pattern_of(*id);
            assert!(Pattern::parse_filter(&p).unwrap().test(l), "{l:?} does not match {p:?}");
        }
        let templates = d.templates();
        let finished = "26/11/22 <_> INFO TaskSetManager: Finished task <_> in stage <_> (TID <_> in <_> ms on 192.0.2.2 (executor driver) <_>";
        let t = templates.iter().find(|t| t.pattern() == finished).unwrap_or_else(|| panic!("{:?}", templates.iter().map(|t| t.pattern()).take(20).collect::<Vec<_>>()));
        assert_eq!(t.count, 89);
        let p = Pattern::parse_filter(finished).unwrap();
        assert_eq!(lines.iter().filter(|l| p.test(l)).count(), 89);
        assert!(templates.len() < lines.len() / 3, "{} templates for {} lines", templates.len(), lines.len());
    }
}
