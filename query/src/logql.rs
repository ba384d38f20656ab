//! A LogQL v1 subset: log queries (a stream selector and a pipeline) and metric queries.
//!
//! `{app="api"} |= "error" | json | status >= 500 | line_format "{{.msg}}"` parses into label
//! matchers (handed to the [`pharos_model::LogsReader`]) and [`pipeline::Stage`]s run on every
//! entry. `sum by (app) (rate({app="api"} |= "error" [5m]))` parses into a [`metric::MetricExpr`].
//! Arithmetic, comparison and set operators between metric expressions work as in PromQL;
//! `on`/`ignoring`, `label_replace` and the rarer stages are rejected as not supported.

pub mod drain;
pub mod metric;
mod parser;
pub(crate) mod template;
pub mod pipeline;
#[cfg(test)]
mod tests;

use pharos_model::{LabelMatcher, Labels, LogRecord};
use regex::Regex;

use crate::error::{Error, Result};
use metric::MetricExpr;
use parser::Cursor;
use pipeline::{LabelExpr, LabelMap, NumberUnit, Stage};
/// One line filter.
#[derive(Clone, Debug)]
pub enum LineFilter {
    /// `|= "s"`: the line contains `s`.
    Contains(String),
    /// `!= "s"`: the line does not contain `s`.
    NotContains(String),
    /// `|~ "re"`: the regex matches somewhere in the line.
    Matches(Regex),
    /// `!~ "re"`: the regex matches nowhere in the line.
    NotMatches(Regex),
    /// `|> "<_> level=error <_>"`: the whole line matches the pattern.
    MatchesPattern(pipeline::Pattern),
    /// `!> "…"`: the line does not match the pattern.
    NotMatchesPattern(pipeline::Pattern),
}

impl LineFilter {
    /// True when `line` passes this filter.
    pub fn accepts(&self, line: &str) -> bool {
        match self {
            LineFilter::Contains(s) => line.contains(s.as_str()),
            LineFilter::NotContains(s) => !line.contains(s.as_str()),
            LineFilter::Matches(re) => re.is_match(line),
            LineFilter::NotMatches(re) => !re.is_match(line),
            LineFilter::MatchesPattern(p) => p.test(line),
            LineFilter::NotMatchesPattern(p) => !p.test(line),
        }
    }
}

/// A parsed log query: a stream selector and its pipeline.
#[derive(Clone, Debug)]
pub struct LogQuery {
    /// The stream selector's matchers (at least one).
    pub matchers: Vec<LabelMatcher>,
    /// Pipeline stages, in order.
    pub stages: Vec<Stage>,
    /// `| unwrap name` (metric queries only): the label whose value becomes the sample.
    pub unwrap: Option<(String, NumberUnit)>,
    /// Label filters after `unwrap`: they run after the value's conversion, so they see the
    /// `__error__` of a value that did not convert.
    pub after_unwrap: Vec<Stage>,
}

/// A parsed query of either kind.
#[derive(Clone, Debug)]
pub enum Query {
    /// Returns log lines (`resultType` `streams`).
    Log(LogQuery),
    /// Returns samples (`vector` or `matrix`).
    Metric(MetricExpr),
}

impl LogQuery {
    /// The `|=` substrings before any stage that rewrites the line, which the store may use to
    /// narrow its search.
    pub fn required_substrings(&self) -> Vec<String> {
        self.stages
            .iter()
            .take_while(|s| !s.ends_prefiltering())
            .filter_map(|s| match s {
                Stage::Line(LineFilter::Contains(s)) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// The substring groups a store may answer from its index (see
    /// [`pharos_model::LogSearch::contains_any`]): each `|= "s"` and, for each `|~ "re"`, the
    /// literals one of which starts every match of `re` when they can be extracted. Only filters
    /// before a stage that rewrites the line count. Every line the pipeline keeps satisfies them.
    pub fn index_filters(&self) -> Vec<Vec<String>> {
        self.stages
            .iter()
            .take_while(|s| !s.ends_prefiltering())
            .flat_map(|s| match s {
                Stage::Line(LineFilter::Contains(s)) => vec![vec![s.clone()]],
                Stage::Line(LineFilter::Matches(re)) => regex_prefix_literals(re.as_str()).into_iter().collect(),
                // Every literal of a pattern is in a line that matches it.
                Stage::Line(LineFilter::MatchesPattern(p)) => p.literals().map(|l| vec![l.to_string()]).collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// The `| name="value"` label filters (non-empty value, also inside `and`) that directly
    /// follow the selector and line filters, before any stage that changes labels; a store may
    /// answer them from its index (see [`pharos_model::LogSearch::label_equals`]). Every entry
    /// the pipeline keeps satisfies them.
    pub fn label_equalities(&self) -> Vec<(String, String)> {
        fn collect(e: &LabelExpr, out: &mut Vec<(String, String)>) {
            match e {
                LabelExpr::And(a, b) => {
                    collect(a, out);
                    collect(b, out);
                }
                // `detected_level` may come from a record's severity, which no index of
                // labels or attributes holds.
                LabelExpr::String(m)
                    if matches!(m.op, pharos_model::select::MatchOp::Equal)
                        && !m.value.is_empty()
                        && !m.name.starts_with("__")
                        && m.name != pipeline::DETECTED_LEVEL_LABEL =>
                {
                    out.push((m.name.clone(), m.value.clone()));
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        for stage in &self.stages {
            match stage {
                Stage::Line(_) => {}
                Stage::LabelFilter(e) => collect(e, &mut out),
                _ => break,
            }
        }
        out
    }

    /// The pipeline without its `|=` filters, when no other stage reads the line: `None` when
    /// a stage does (another line filter, a parser, `line_format`). A store returns only
    /// records whose line contains every `|=` substring of [`Self::index_filters`] (checked
    /// exactly), which are all `|=` filters when there is no `line_format`; what remains needs
    /// the stream labels and attributes only, so the search may skip reading line bodies
    /// ([`pharos_model::LogSearch::body_unused`]).
    pub fn without_body_filters(&self) -> Option<LogQuery> {
        let mut stages = Vec::new();
        let mut prefiltered = true;
        for stage in &self.stages {
            prefiltered &= !stage.ends_prefiltering();
            match stage {
                Stage::Line(LineFilter::Contains(_)) if prefiltered => {}
                Stage::Line(LineFilter::Contains(_)) => stages.push(stage.clone()),
                Stage::LabelFilter(_) | Stage::LabelFormat(_) | Stage::Drop(_) | Stage::Keep(_) | Stage::Distinct(_) => {
                    stages.push(stage.clone())
                }
                Stage::Line(_)
                | Stage::Json
                | Stage::JsonFields(_)
                | Stage::Logfmt(_)
                | Stage::LogfmtFields(..)
                | Stage::Unpack
                | Stage::Decolorize
                | Stage::Regexp(_)
                | Stage::Pattern(_)
                | Stage::LineFormat(_) => return None,
            }
        }
        Some(LogQuery { matchers: self.matchers.clone(), stages, unwrap: self.unwrap.clone(), after_unwrap: self.after_unwrap.clone() })
    }

    /// Runs the pipeline on one line with its stream labels; None when a stage drops it.
    pub fn process_line(&self, stream: &Labels, line: &str) -> Option<(LabelMap, String)> {
        self.process_line_with(stream, &[], "", line, 0, None)
    }

    /// True when a `| distinct` stage makes the result depend on the order entries are
    /// processed in: they must go through [`Self::process_record_distinct`] one by one, in
    /// the query's direction.
    pub fn has_distinct(&self) -> bool {
        self.stages.iter().any(|s| matches!(s, Stage::Distinct(_)))
    }

    /// The pipeline up to its first `distinct` stage: what a store may check ahead of the
    /// query's own ordered pass (the stages after it must see only what `distinct` let through).
    pub fn before_distinct(&self) -> LogQuery {
        let stages = self.stages.iter().take_while(|s| !matches!(s, Stage::Distinct(_))).cloned().collect();
        LogQuery { matchers: self.matchers.clone(), stages, unwrap: self.unwrap.clone(), after_unwrap: self.after_unwrap.clone() }
    }

    /// [`Self::process_record`] with the `distinct` stages filtering by what `seen` has let
    /// through so far.
    pub fn process_record_distinct(&self, record: &LogRecord, seen: &mut pipeline::DistinctSeen) -> Option<(LabelMap, String)> {
        self.process_line_with(&record.labels, &record.attributes, &record.severity, &record.body, record.timestamp_ns, Some(seen))
    }

    /// Runs the pipeline on a record: its stream labels and attributes (structured metadata,
    /// as labels; one named like a stream label becomes `name_extracted`, as in Loki).
    pub fn process_record(&self, record: &LogRecord) -> Option<(LabelMap, String)> {
        self.process_line_with(&record.labels, &record.attributes, &record.severity, &record.body, record.timestamp_ns, None)
    }

    fn process_line_with(
        &self,
        stream: &Labels,
        attributes: &[(String, String)],
        severity: &str,
        line: &str,
        ts_nanos: i64,
        mut seen: Option<&mut pipeline::DistinctSeen>,
    ) -> Option<(LabelMap, String)> {
        let mut labels: LabelMap = stream
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in attributes {
            pipeline::insert_extracted(&mut labels, stream, k, v.clone());
        }
        // A known severity is the entry's `detected_level`, unless the stream or the
        // attributes name one already.
        if !severity.is_empty() && !labels.contains_key(pipeline::DETECTED_LEVEL_LABEL) {
            labels.insert(pipeline::DETECTED_LEVEL_LABEL.to_string(), pipeline::detected_level(severity).to_string());
        }
        let mut line = line.to_string();
        for (i, stage) in self.stages.iter().enumerate() {
            if !stage.apply(&mut labels, stream, &mut line, ts_nanos) {
                return None;
            }
            if let (Stage::Distinct(names), Some(seen)) = (stage, seen.as_deref_mut())
                && !seen.admit(i, names, &labels)
            {
                return None;
            }
        }
        Some((labels, line))
    }

    /// Runs the pipeline on a record: its labels become the stream labels plus its attributes
    /// and extracted labels.
    pub fn process(&self, record: &LogRecord) -> Option<(Labels, String)> {
        let (labels, line) = self.process_record(record)?;
        Some((Labels::from_pairs(labels), line))
    }

    /// True when `line` (with no stream labels) survives the pipeline.
    pub fn accepts(&self, line: &str) -> bool {
        self.process_line(&Labels::default(), line).is_some()
    }
}

/// Literals one of which every match of `pattern` starts with, when there are few, non-empty,
/// valid UTF-8 ones; `None` when nothing useful can be extracted.
fn regex_prefix_literals(pattern: &str) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    const MAX_ALTERNATIVES: usize = 16;
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let literals = seq.literals()?;
    if literals.is_empty() || literals.len() > MAX_ALTERNATIVES {
        return None;
    }
    literals
        .iter()
        .map(|l| std::str::from_utf8(l.as_bytes()).ok().filter(|s| !s.is_empty()).map(str::to_string))
        .collect()
}

/// Parses a log or metric query.
pub fn parse_query(query: &str) -> Result<Query> {
    let mut c = Cursor::new(query);
    c.skip_ws();
    let q = if c.rest().starts_with('{') {
        let q = c.log_query()?;
        if q.unwrap.is_some() {
            return Err(Error::BadData(
                "`unwrap` is only valid inside a range function".into(),
            ));
        }
        Query::Log(q)
    } else {
        Query::Metric(c.metric()?)
    };
    c.skip_ws();
    if !c.rest().is_empty() {
        return Err(c.error("unexpected trailing input"));
    }
    Ok(q)
}

/// Parses a log query (a stream selector and its pipeline); metric queries are an error.
pub fn parse(query: &str) -> Result<LogQuery> {
    match parse_query(query)? {
        Query::Log(q) => Ok(q),
        Query::Metric(_) => Err(Error::BadData(
            "expected a log query (a stream selector), got a metric query".into(),
        )),
    }
}

/// Parses a bare stream selector (`match[]` of the series endpoint, `query` of labels).
pub fn parse_selector(selector: &str) -> Result<Vec<LabelMatcher>> {
    let mut c = Cursor::new(selector);
    c.skip_ws();
    let m = c.selector()?;
    c.skip_ws();
    if !c.rest().is_empty() {
        return Err(c.error("unexpected input after the stream selector"));
    }
    Ok(m)
}
