//! A LogQL v1 subset: log queries (a stream selector and a pipeline) and metric queries.
//!
//! `{app="api"} |= "error" | json | status >= 500 | line_format "{{.msg}}"` parses into label
//! matchers (handed to the [`pharos_model::LogsReader`]) and [`pipeline::Stage`]s run on every
//! entry. `sum by (app) (rate({app="api"} |= "error" [5m]))` parses into a [`metric::MetricExpr`].
//! Binary operators between queries, `offset`, `label_replace` and the rarer stages are rejected
//! as not supported.

pub mod metric;
pub mod pipeline;

use pharos_model::{LabelMatcher, Labels, LogRecord};
use regex::Regex;

use crate::error::{Error, Result};
use metric::{AggOp, MetricExpr, RangeFn};
use pipeline::{
    CmpOp, LabelExpr, LabelFormatValue, LabelMap, NumberUnit, Pattern, Stage, Template,
};
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
}

impl LineFilter {
    /// True when `line` passes this filter.
    pub fn accepts(&self, line: &str) -> bool {
        match self {
            LineFilter::Contains(s) => line.contains(s.as_str()),
            LineFilter::NotContains(s) => !line.contains(s.as_str()),
            LineFilter::Matches(re) => re.is_match(line),
            LineFilter::NotMatches(re) => !re.is_match(line),
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
            .take_while(|s| !matches!(s, Stage::LineFormat(_)))
            .filter_map(|s| match s {
                Stage::Line(LineFilter::Contains(s)) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// Runs the pipeline on one line with its stream labels; None when a stage drops it.
    pub fn process_line(&self, stream: &Labels, line: &str) -> Option<(LabelMap, String)> {
        let mut labels: LabelMap = stream
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut line = line.to_string();
        for stage in &self.stages {
            if !stage.apply(&mut labels, stream, &mut line) {
                return None;
            }
        }
        Some((labels, line))
    }

    /// Runs the pipeline on a record: its labels become the stream labels plus extracted ones.
    pub fn process(&self, record: &LogRecord) -> Option<(Labels, String)> {
        let (labels, line) = self.process_line(&record.labels, &record.body)?;
        Some((Labels::from_pairs(labels), line))
    }

    /// True when `line` (with no stream labels) survives the pipeline.
    pub fn accepts(&self, line: &str) -> bool {
        self.process_line(&Labels::default(), line).is_some()
    }
}

impl<'a> Cursor<'a> {
    fn at_end_of_pipeline(&self) -> bool {
        let r = self.rest();
        r.is_empty() || r.starts_with('[') || r.starts_with(')')
    }

    /// A word (letters, digits, `_`) without consuming it.
    fn peek_word(&self) -> &'a str {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        &rest[..len]
    }

    fn expect(&mut self, token: &str) -> Result<()> {
        self.skip_ws();
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(&format!("expected {token:?}")))
        }
    }

    /// A number, duration or byte size literal, as written.
    fn literal(&mut self) -> Result<&'a str> {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '+'))
            .unwrap_or(rest.len());
        if len == 0 {
            return Err(self.error("expected a number, duration, byte size or string"));
        }
        self.pos += len;
        Ok(&rest[..len])
    }

    fn label_list(&mut self) -> Result<Vec<String>> {
        self.expect("(")?;
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(")") {
                return Ok(out);
            }
            if !out.is_empty() {
                if !self.eat(",") {
                    return Err(self.error("expected \",\" or \")\" in label list"));
                }
                self.skip_ws();
                if self.eat(")") {
                    return Ok(out);
                }
            }
            out.push(self.identifier()?.to_string());
        }
    }

    fn selector(&mut self) -> Result<Vec<LabelMatcher>> {
        self.expect("{")?;
        let mut matchers = Vec::new();
        loop {
            self.skip_ws();
            if self.eat("}") {
                break;
            }
            if !matchers.is_empty() && !self.eat(",") {
                return Err(self.error("expected \",\" or \"}\" in stream selector"));
            }
            self.skip_ws();
            if self.eat("}") {
                break; // trailing comma
            }
            let name = self.identifier()?;
            self.skip_ws();
            let op = ["=~", "!~", "!=", "="]
                .into_iter()
                .find(|op| self.eat(op))
                .ok_or_else(|| self.error("expected one of =, !=, =~, !~"))?;
            self.skip_ws();
            let value = self.string()?;
            matchers.push(LabelMatcher::new(name, op, &value).map_err(Error::BadData)?);
        }
        if !matchers.iter().any(|m| !m.matches_value("")) {
            return Err(Error::BadData(
                "queries require at least one regexp or equality matcher that does not have an \
                 empty-compatible value. For instance, app=~\".*\" does not meet this \
                 requirement, but app=~\".+\" will"
                    .into(),
            ));
        }
        Ok(matchers)
    }

    /// Stages until the end of the query, a `[range]` or a closing parenthesis.
    fn pipeline(&mut self, q: &mut LogQuery) -> Result<()> {
        loop {
            self.skip_ws();
            if self.at_end_of_pipeline() {
                return Ok(());
            }
            if let Some(op) = ["|=", "!=", "|~", "!~"].into_iter().find(|op| self.eat(op)) {
                self.skip_ws();
                let value = self.string()?;
                self.skip_ws();
                if self.rest().starts_with("or ") {
                    return Err(Error::unsupported("`or` in line filters"));
                }
                q.stages.push(Stage::Line(line_filter(op, value)?));
                continue;
            }
            if !self.eat("|") {
                return Err(self.error("expected a line filter (|=, !=, |~, !~) or a \"|\" stage"));
            }
            self.skip_ws();
            let word = self.peek_word();
            let stage = match word {
                "json" | "logfmt" => {
                    self.pos += word.len();
                    self.skip_ws();
                    if !self.at_end_of_pipeline() && !self.rest().starts_with('|') && !self.rest().starts_with('!') {
                        return Err(Error::unsupported(format!(
                            "parameters of `| {word}` (only the plain parser is)"
                        )));
                    }
                    if word == "json" { Stage::Json } else { Stage::Logfmt }
                }
                "regexp" => {
                    self.pos += word.len();
                    self.skip_ws();
                    let re = self.string()?;
                    let re = Regex::new(&re).map_err(|e| {
                        Error::BadData(format!("invalid regular expression {re:?}: {e}"))
                    })?;
                    if re.capture_names().flatten().next().is_none() {
                        return Err(Error::BadData(
                            "regexp stage needs at least one named capture (?P<name>...)".into(),
                        ));
                    }
                    Stage::Regexp(re)
                }
                "pattern" => {
                    self.pos += word.len();
                    self.skip_ws();
                    let p = self.string()?;
                    Stage::Pattern(Pattern::parse(&p).map_err(Error::BadData)?)
                }
                "line_format" => {
                    self.pos += word.len();
                    self.skip_ws();
                    let t = self.string()?;
                    Stage::LineFormat(Template::parse(&t).map_err(Error::unsupported)?)
                }
                "label_format" => {
                    self.pos += word.len();
                    let mut assignments = Vec::new();
                    loop {
                        self.skip_ws();
                        let name = self.identifier()?.to_string();
                        self.expect("=")?;
                        self.skip_ws();
                        let value = if self.rest().starts_with('"') || self.rest().starts_with('`') {
                            let t = self.string()?;
                            LabelFormatValue::Template(Template::parse(&t).map_err(Error::unsupported)?)
                        } else {
                            LabelFormatValue::Rename(self.identifier()?.to_string())
                        };
                        assignments.push((name, value));
                        self.skip_ws();
                        if !self.eat(",") {
                            break;
                        }
                    }
                    Stage::LabelFormat(assignments)
                }
                "drop" | "keep" => {
                    self.pos += word.len();
                    let mut names = Vec::new();
                    loop {
                        self.skip_ws();
                        names.push(self.identifier()?.to_string());
                        self.skip_ws();
                        if self.rest().starts_with('=') || self.rest().starts_with("!=") || self.rest().starts_with("!~") {
                            return Err(Error::unsupported(format!("matchers in `| {word}` (only label names are)")));
                        }
                        if !self.eat(",") {
                            break;
                        }
                    }
                    if word == "drop" { Stage::Drop(names) } else { Stage::Keep(names) }
                }
                "unwrap" => {
                    self.pos += word.len();
                    self.skip_ws();
                    let w = self.peek_word();
                    let unit = match w {
                        "duration" | "duration_seconds" if self.rest()[w.len()..].trim_start().starts_with('(') => Some(NumberUnit::Duration),
                        "bytes" if self.rest()[w.len()..].trim_start().starts_with('(') => Some(NumberUnit::Bytes),
                        _ => None,
                    };
                    let (name, unit) = match unit {
                        Some(unit) => {
                            self.pos += w.len();
                            self.expect("(")?;
                            self.skip_ws();
                            let name = self.identifier()?.to_string();
                            self.expect(")")?;
                            (name, unit)
                        }
                        None => (self.identifier()?.to_string(), NumberUnit::Plain),
                    };
                    q.unwrap = Some((name, unit));
                    continue;
                }
                "unpack" | "decolorize" | "line_format_json" | "distinct" => {
                    return Err(Error::unsupported(format!("LogQL pipeline stage `| {word}`")));
                }
                _ => Stage::LabelFilter(self.label_or()?),
            };
            if q.unwrap.is_some() && !matches!(stage, Stage::LabelFilter(_)) {
                return Err(Error::unsupported("stages other than label filters after `unwrap`"));
            }
            q.stages.push(stage);
        }
    }

    fn label_or(&mut self) -> Result<LabelExpr> {
        let mut left = self.label_and()?;
        loop {
            self.skip_ws();
            if self.peek_word() == "or" {
                self.pos += 2;
                let right = self.label_and()?;
                left = LabelExpr::Or(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn label_and(&mut self) -> Result<LabelExpr> {
        let mut left = self.label_primary()?;
        loop {
            self.skip_ws();
            if self.peek_word() == "and" {
                self.pos += 3;
            } else if self.rest().starts_with(',') {
                self.pos += 1;
            } else {
                return Ok(left);
            }
            let right = self.label_primary()?;
            left = LabelExpr::And(Box::new(left), Box::new(right));
        }
    }

    fn label_primary(&mut self) -> Result<LabelExpr> {
        self.skip_ws();
        if self.eat("(") {
            let e = self.label_or()?;
            self.expect(")")?;
            return Ok(e);
        }
        let name = self.identifier().map_err(|_| {
            self.error("expected a pipeline stage or a label filter like `status >= 500`")
        })?;
        self.skip_ws();
        let op = ["==", "=~", "!~", "!=", ">=", "<=", "=", ">", "<"]
            .into_iter()
            .find(|op| self.eat(op))
            .ok_or_else(|| self.error("expected a comparison (=, !=, =~, !~, >, >=, <, <=)"))?;
        self.skip_ws();
        if self.rest().starts_with('"') || self.rest().starts_with('`') {
            let value = self.string()?;
            let op = if op == "==" { "=" } else { op };
            if matches!(op, ">" | ">=" | "<" | "<=") {
                return Err(self.error("string label filters take =, !=, =~ or !~"));
            }
            return Ok(LabelExpr::String(
                LabelMatcher::new(name, op, &value).map_err(Error::BadData)?,
            ));
        }
        let lit = self.literal()?;
        let cmp = match op {
            "=" | "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            _ => return Err(self.error("regex label filters need a quoted string")),
        };
        let (value, unit) = if let Ok(n) = lit.parse::<f64>() {
            (n, NumberUnit::Plain)
        } else if let Some(d) = pipeline::parse_duration_secs(lit) {
            (d, NumberUnit::Duration)
        } else if let Some(b) = pipeline::parse_bytes(lit) {
            (b, NumberUnit::Bytes)
        } else {
            return Err(Error::BadData(format!(
                "invalid label filter value {lit:?}: expected a number, duration, byte size or \
                 quoted string"
            )));
        };
        Ok(LabelExpr::Number { name: name.to_string(), op: cmp, value, unit })
    }

    fn log_query(&mut self) -> Result<LogQuery> {
        let matchers = self.selector()?;
        let mut q = LogQuery { matchers, stages: Vec::new(), unwrap: None };
        self.pipeline(&mut q)?;
        Ok(q)
    }

    /// `[5m]` as nanoseconds.
    fn range(&mut self) -> Result<i64> {
        self.expect("[")?;
        let end = self
            .rest()
            .find(']')
            .ok_or_else(|| self.error("unterminated range"))?;
        let text = self.rest()[..end].trim();
        let secs = pipeline::parse_duration_secs(text)
            .filter(|s| *s > 0.0)
            .ok_or_else(|| self.error(&format!("invalid range {text:?}")))?;
        self.pos += end + 1;
        Ok((secs * 1e9) as i64)
    }

    fn grouping(&mut self) -> Result<Option<(bool, Vec<String>)>> {
        self.skip_ws();
        let word = self.peek_word();
        match word {
            "by" | "without" => {
                self.pos += word.len();
                Ok(Some((word == "without", self.label_list()?)))
            }
            _ => Ok(None),
        }
    }

    fn metric(&mut self) -> Result<MetricExpr> {
        self.skip_ws();
        let word = self.peek_word();
        if let Some(func) = RangeFn::from_name(word) {
            self.pos += word.len();
            self.expect("(")?;
            self.skip_ws();
            let matchers = self.selector()?;
            let mut query = LogQuery { matchers, stages: Vec::new(), unwrap: None };
            self.skip_ws();
            let mut range = None;
            if self.rest().starts_with('[') {
                range = Some(self.range()?);
            }
            self.pipeline(&mut query)?;
            self.skip_ws();
            let range = match range {
                Some(r) => r,
                None => self.range()?,
            };
            self.skip_ws();
            if self.peek_word() == "offset" {
                return Err(Error::unsupported("`offset` in LogQL"));
            }
            self.expect(")")?;
            match (func.needs_unwrap(), &query.unwrap) {
                (true, None) => {
                    return Err(Error::BadData(format!(
                        "{} needs `| unwrap <label>`",
                        func.name()
                    )));
                }
                (false, Some(_)) if !matches!(func, RangeFn::Rate) => {
                    return Err(Error::BadData(format!(
                        "{} does not take `| unwrap`",
                        func.name()
                    )));
                }
                _ => {}
            }
            let grouping = self.grouping()?;
            if grouping.is_some() {
                return Err(Error::unsupported("grouping on range aggregations"));
            }
            return Ok(MetricExpr::Range { func, query, range_ns: range });
        }
        if let Some(op) = AggOp::from_name(word) {
            self.pos += word.len();
            let mut grouping = self.grouping()?;
            self.expect("(")?;
            self.skip_ws();
            let param = if matches!(op, AggOp::Topk | AggOp::Bottomk) {
                let lit = self.literal()?;
                let k = lit
                    .parse::<usize>()
                    .map_err(|_| self.error(&format!("invalid k {lit:?} for {}", op.name())))?;
                self.expect(",")?;
                Some(k)
            } else {
                None
            };
            let inner = self.metric()?;
            self.expect(")")?;
            if grouping.is_none() {
                grouping = self.grouping()?;
            }
            return Ok(MetricExpr::Aggregate { op, grouping, param, inner: Box::new(inner) });
        }
        if self.rest().starts_with('(') {
            self.pos += 1;
            let e = self.metric()?;
            self.expect(")")?;
            return Ok(e);
        }
        Err(Error::unsupported(format!(
            "LogQL expression {:?} (supported: log queries, range functions such as rate and \
             count_over_time, and the aggregations sum, avg, min, max, count, topk, bottomk)",
            self.rest().chars().take(30).collect::<String>()
        )))
    }
}

fn line_filter(op: &str, value: String) -> Result<LineFilter> {
    let regex = || {
        Regex::new(&value)
            .map_err(|e| Error::BadData(format!("invalid regular expression {value:?}: {e}")))
    };
    Ok(match op {
        "|=" => LineFilter::Contains(value),
        "!=" => LineFilter::NotContains(value),
        "|~" => LineFilter::Matches(regex()?),
        _ => LineFilter::NotMatches(regex()?),
    })
}

/// Parses a log or metric query.
pub fn parse_query(query: &str) -> Result<Query> {
    let mut c = Cursor { src: query, pos: 0 };
    c.skip_ws();
    let q = if c.rest().starts_with('{') {
        let q = c.log_query()?;
        if q.unwrap.is_some() {
            return Err(Error::BadData("`unwrap` is only valid inside a range function".into()));
        }
        Query::Log(q)
    } else {
        Query::Metric(c.metric()?)
    };
    c.skip_ws();
    if !c.rest().is_empty() {
        let r = c.rest();
        if ["+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", "and", "or", "unless"]
            .iter()
            .any(|op| r.starts_with(op))
        {
            return Err(Error::unsupported("binary operators in LogQL"));
        }
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
    let mut c = Cursor { src: selector, pos: 0 };
    c.skip_ws();
    let m = c.selector()?;
    c.skip_ws();
    if !c.rest().is_empty() {
        return Err(c.error("unexpected input after the stream selector"));
    }
    Ok(m)
}

struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.src.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn error(&self, what: &str) -> Error {
        Error::BadData(format!("parse error at char {}: {what}", self.pos + 1))
    }

    fn identifier(&mut self) -> Result<&'a str> {
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|(i, c)| {
                !(c.is_ascii_alphabetic() || *c == '_' || (*i > 0 && c.is_ascii_digit()))
            })
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            return Err(self.error("expected a label name"));
        }
        self.pos += len;
        Ok(&rest[..len])
    }

    /// A double-quoted string with Go escapes, or a backtick raw string.
    fn string(&mut self) -> Result<String> {
        let rest = self.rest();
        let end = match rest.chars().next() {
            Some('`') => rest[1..].find('`').map(|i| i + 2),
            Some('"') => {
                let mut escaped = false;
                rest.char_indices().skip(1).find_map(|(i, c)| match c {
                    _ if escaped => {
                        escaped = false;
                        None
                    }
                    '\\' => {
                        escaped = true;
                        None
                    }
                    '"' => Some(i + 1),
                    _ => None,
                })
            }
            _ => return Err(self.error("expected a quoted string")),
        };
        let end = end.ok_or_else(|| self.error("unterminated string"))?;
        let quoted = &rest[..end];
        let value = promql_parser::util::unquote_string(quoted)
            .map_err(|e| self.error(&format!("invalid string {quoted}: {e}")))?;
        self.pos += end;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pharos_model::Labels;

    #[test]
    fn selector_with_all_filter_kinds() {
        let q = parse(
            r#"{app="api", pod=~"api-.*"} |= "error" != `timeout` |~ "code=5\\d\\d" !~ "health""#,
        )
        .unwrap();
        assert_eq!(q.matchers.len(), 2);
        let l = Labels::from_pairs([("app", "api"), ("pod", "api-1")]);
        assert!(q.matchers.iter().all(|m| m.matches(&l)));
        assert_eq!(q.required_substrings(), vec!["error".to_string()]);
        assert!(q.accepts("error: code=503"));
        assert!(!q.accepts("error: timeout code=503"));
        assert!(!q.accepts("error: code=404"));
        assert!(!q.accepts("error: code=500 health"));
        assert!(!q.accepts("code=500"));
    }

    #[test]
    fn braces_and_escapes_inside_strings() {
        let q = parse(r#"{msg="a}b\"c"} |= "x}\ty""#).unwrap();
        assert_eq!(q.matchers[0].value, "a}b\"c");
        assert_eq!(q.required_substrings(), vec!["x}\ty".to_string()]);
    }

    #[test]
    fn rejects_unsupported_and_malformed() {
        let err = |q: &str| parse_query(q).unwrap_err().to_string();
        assert!(err(r#"{app="a"} | unpack"#).contains("not supported yet"));
        assert!(err(r#"{app="a"} | json a="b""#).contains("not supported yet"));
        assert!(err(r#"{app="a"} | line_format "{{ToUpper .x}}""#).contains("not supported yet"));
        assert!(err(r#"rate({app="a"}[5m]) / 2"#).contains("not supported yet"));
        assert!(err(r#"label_replace(rate({app="a"}[5m]), "a", "b", "c", "d")"#).contains("not supported yet"));
        assert!(err(r#"{}"#).contains("at least one"));
        assert!(err(r#"{app=~".*"}"#).contains("empty-compatible"));
        assert!(err(r#"{app="a""#).contains("expected"));
        assert!(err(r#"{app="a} |= "x""#).contains("expected"));
        assert!(err(r#"{app="a"} |= "unterminated"#).contains("unterminated"));
        assert!(err(r#"{app="a"} |~ "(""#).contains("invalid regular expression"));
        assert!(err(r#"{app="a"} | regexp "(x)""#).contains("named capture"));
        assert!(err(r#"{app="a"} | status > "x""#).contains("string label filters"));
        assert!(err(r#"sum_over_time({app="a"}[5m])"#).contains("unwrap"));
        assert!(err(r#"count_over_time({app="a"} | unwrap x [5m])"#).contains("does not take"));
        assert!(err(r#"{app="a"} | unwrap x"#).contains("only valid"));
        assert!(err(r#"rate({app="a"})"#).contains("expected \"[\""));
        assert!(parse(r#"rate({app="a"}[1m])"#).is_err());
    }

    fn stream(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn json_label_filters_and_line_format_end_to_end() {
        let q = parse(
            r#"{app="api"} |= "req" | json | status >= 500 and level = "error" or status == 404 | line_format "{{.status}} {{.req_path}}""#,
        )
        .unwrap();
        assert_eq!(q.required_substrings(), vec!["req".to_string()]);
        let s = stream(&[("app", "api")]);
        let run = |line: &str| q.process_line(&s, line).map(|(l, line)| (l.into_iter().collect::<Vec<_>>(), line));
        let (labels, line) =
            run(r#"{"level":"error","status":503,"req":{"path":"/a"}}"#).unwrap();
        assert_eq!(line, "503 /a");
        assert_eq!(
            labels,
            vec![
                ("app".into(), "api".into()),
                ("level".into(), "error".into()),
                ("req_path".into(), "/a".into()),
                ("status".into(), "503".into()),
            ]
        );
        // and binds tighter than or: 404 passes whatever the level.
        assert_eq!(run(r#"{"level":"info","status":404,"req":{"path":"/b"}}"#).unwrap().1, "404 /b");
        assert!(run(r#"{"level":"info","status":503,"req":{}}"#).is_none());
        assert!(run(r#"{"level":"error","status":200,"req":{}}"#).is_none());
        // Not JSON: __error__ set; `level = "error"` fails, but `status == 404` passes it, as
        // numeric filters do not filter entries with an error (Loki's rule).
        let (labels, _) = run("req not json").unwrap();
        assert!(labels.contains(&("__error__".into(), "JSONParserErr".into())));
    }

    #[test]
    fn logfmt_regexp_pattern_and_formats_parse() {
        let q = parse(
            r#"{app="api"} | logfmt | duration > 1s, size <= 1KB | label_format lvl=level, x="{{.app}}!" | drop size | keep app, lvl, x, duration"#,
        )
        .unwrap();
        let (l, _) = q
            .process_line(&stream(&[("app", "api")]), "level=warn duration=1.5s size=1000")
            .unwrap();
        assert_eq!(
            l.into_iter().collect::<Vec<_>>(),
            vec![
                ("app".into(), "api".into()),
                ("duration".into(), "1.5s".into()),
                ("lvl".into(), "warn".into()),
                ("x".into(), "api!".into()),
            ]
        );
        assert!(q.process_line(&stream(&[("app", "api")]), "duration=1s size=10").is_none());
        let q = parse(r#"{app="api"} | regexp `(?P<code>\d{3})$` | code =~ "5.." "#).unwrap();
        assert!(q.accepts("GET / 503"));
        assert!(!q.accepts("GET / 200"));
        let q = parse(r#"{app="api"} | pattern "<_> <code>" | code != "200" |~ "GET""#).unwrap();
        assert!(q.accepts("GET 503"));
        assert!(!q.accepts("GET 200"));
        assert!(!q.accepts("PUT 503"));
    }

    struct Mem(Vec<LogRecord>);

    impl pharos_model::LogsReader for Mem {
        fn select_logs(
            &self,
            m: &[LabelMatcher],
            _: &[String],
            start: i64,
            end: i64,
        ) -> std::result::Result<Vec<LogRecord>, String> {
            Ok(self
                .0
                .iter()
                .filter(|r| pharos_model::select::matches_all(m, &r.labels))
                .filter(|r| r.timestamp_ns >= start && r.timestamp_ns <= end)
                .cloned()
                .collect())
        }
    }

    const S: i64 = 1_000_000_000;

    fn mem() -> Mem {
        let rec = |app: &str, ts: i64, body: &str| LogRecord {
            labels: stream(&[("app", app)]),
            timestamp_ns: ts,
            body: body.into(),
            severity: String::new(),
        };
        Mem(vec![
            rec("api", S, "error a status=500"),
            rec("api", 2 * S, "ok b status=200"),
            rec("api", 3 * S, "error c status=503"),
            rec("web", 2 * S + S / 2, "error dd status=404"),
        ])
    }

    fn eval(q: &str, steps: &[i64]) -> Vec<(Vec<(String, String)>, Vec<(i64, f64)>)> {
        let Query::Metric(m) = parse_query(q).unwrap() else { panic!("not a metric query") };
        m.evaluate(&mem(), steps)
            .unwrap()
            .into_iter()
            .map(|(l, p)| (l.iter().map(|(k, v)| (k.into(), v.into())).collect(), p))
            .collect()
    }

    fn app(a: &str) -> Vec<(String, String)> {
        vec![("app".into(), a.into())]
    }

    #[test]
    fn range_functions_by_hand() {
        // Windows (t-2s, t]: at 2s api has 1s, 2s (2 lines), web none; at 4s api has 3s, web 2.5s.
        assert_eq!(
            eval(r#"count_over_time({app=~".+"}[2s])"#, &[2 * S, 4 * S]),
            vec![(app("api"), vec![(2 * S, 2.0), (4 * S, 1.0)]), (app("web"), vec![(4 * S, 1.0)])]
        );
        assert_eq!(
            eval(r#"rate({app=~".+"} |= "error" [2s])"#, &[2 * S, 4 * S]),
            vec![(app("api"), vec![(2 * S, 0.5), (4 * S, 0.5)]), (app("web"), vec![(4 * S, 0.5)])]
        );
        // "error a status=500" is 18 bytes, "ok b status=200" 15: 33 at 2s; rate over 2s 16.5.
        assert_eq!(
            eval(r#"bytes_over_time({app="api"}[2s])"#, &[2 * S]),
            vec![(app("api"), vec![(2 * S, 33.0)])]
        );
        assert_eq!(
            eval(r#"bytes_rate({app="api"}[2s])"#, &[2 * S]),
            vec![(app("api"), vec![(2 * S, 16.5)])]
        );
        // unwrap status over all of api's lines (window (−7s, 3s]): 500+200+503.
        assert_eq!(
            eval(r#"sum_over_time({app="api"} | logfmt | unwrap status [10s])"#, &[3 * S]),
            vec![(app("api"), vec![(3 * S, 1203.0)])]
        );
        assert_eq!(
            eval(r#"max_over_time({app="api"} | logfmt | unwrap status [10s])"#, &[3 * S]),
            vec![(app("api"), vec![(3 * S, 503.0)])]
        );
        // Extracted labels split series: status=500 and status=503 at 3s.
        let by_status = eval(r#"count_over_time({app="api"} |= "error" | logfmt [10s])"#, &[3 * S]);
        assert_eq!(by_status.len(), 2);
        assert_eq!(by_status[0].0[1], ("status".into(), "500".into()));
    }

    #[test]
    fn aggregations_by_hand() {
        // At 4s over [4s]: api has 3 lines (1s, 2s, 3s), web 1.
        let t = 4 * S;
        assert_eq!(
            eval(r#"sum(count_over_time({app=~".+"}[4s]))"#, &[t]),
            vec![(vec![], vec![(t, 4.0)])]
        );
        assert_eq!(
            eval(r#"sum by (app) (count_over_time({app=~".+"} |= "error" [4s]))"#, &[t]),
            vec![(app("api"), vec![(t, 2.0)]), (app("web"), vec![(t, 1.0)])]
        );
        assert_eq!(
            eval(r#"sum(count_over_time({app=~".+"}[4s])) by (app)"#, &[t])[0],
            (app("api"), vec![(t, 3.0)])
        );
        assert_eq!(
            eval(r#"avg without (app) (count_over_time({app=~".+"}[4s]))"#, &[t]),
            vec![(vec![], vec![(t, 2.0)])]
        );
        assert_eq!(eval(r#"max(count_over_time({app=~".+"}[4s]))"#, &[t])[0].1, vec![(t, 3.0)]);
        assert_eq!(eval(r#"min(count_over_time({app=~".+"}[4s]))"#, &[t])[0].1, vec![(t, 1.0)]);
        assert_eq!(eval(r#"count(count_over_time({app=~".+"}[4s]))"#, &[t])[0].1, vec![(t, 2.0)]);
        assert_eq!(
            eval(r#"topk(1, count_over_time({app=~".+"}[4s]))"#, &[t]),
            vec![(app("api"), vec![(t, 3.0)])]
        );
        assert_eq!(
            eval(r#"bottomk(1, count_over_time({app=~".+"}[4s]))"#, &[t]),
            vec![(app("web"), vec![(t, 1.0)])]
        );
        // Range written after the pipeline or right after the selector.
        assert_eq!(
            eval(r#"count_over_time({app="web"}[4s] |= "dd")"#, &[t]),
            vec![(app("web"), vec![(t, 1.0)])]
        );
    }
}
