//! A LogQL v1 subset: a stream selector followed by line filters.
//!
//! `{app="api", pod=~"api-.*"} |= "error" != "timeout" |~ "code=5\\d\\d"` parses into label
//! matchers (handed to the [`pharos_model::LogsReader`]) and line filters checked on every line.
//! Parser stages (`| json`, `| logfmt`, …) and metric queries are rejected as not supported.

use pharos_model::LabelMatcher;
use regex::Regex;

use crate::error::{Error, Result};

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

/// A parsed log query.
#[derive(Clone, Debug)]
pub struct LogQuery {
    /// The stream selector's matchers (at least one).
    pub matchers: Vec<LabelMatcher>,
    /// Line filters, all of which a line must pass.
    pub filters: Vec<LineFilter>,
}

impl LogQuery {
    /// The `|=` substrings, which the store may use to narrow its search.
    pub fn required_substrings(&self) -> Vec<String> {
        self.filters
            .iter()
            .filter_map(|f| match f {
                LineFilter::Contains(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// True when `line` passes every filter.
    pub fn accepts(&self, line: &str) -> bool {
        self.filters.iter().all(|f| f.accepts(line))
    }
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

/// Parses a log query.
pub fn parse(query: &str) -> Result<LogQuery> {
    let mut c = Cursor { src: query, pos: 0 };
    c.skip_ws();
    if !c.eat("{") {
        return Err(Error::unsupported(
            "LogQL metric queries (anything but a stream selector with line filters)",
        ));
    }
    let mut matchers = Vec::new();
    loop {
        c.skip_ws();
        if c.eat("}") {
            break;
        }
        if !matchers.is_empty() && !c.eat(",") {
            return Err(c.error("expected \",\" or \"}\" in stream selector"));
        }
        c.skip_ws();
        if c.eat("}") {
            break; // trailing comma
        }
        let name = c.identifier()?;
        c.skip_ws();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| c.eat(op))
            .ok_or_else(|| c.error("expected one of =, !=, =~, !~"))?;
        c.skip_ws();
        let value = c.string()?;
        matchers.push(LabelMatcher::new(name, op, &value).map_err(Error::BadData)?);
    }
    if !matchers.iter().any(|m| !m.matches_value("")) {
        return Err(Error::BadData(
            "queries require at least one regexp or equality matcher that does not have an \
             empty-compatible value. For instance, app=~\".*\" does not meet this requirement, \
             but app=~\".+\" will"
                .into(),
        ));
    }
    let mut filters = Vec::new();
    loop {
        c.skip_ws();
        if c.rest().is_empty() {
            break;
        }
        let op = ["|=", "!=", "|~", "!~"].into_iter().find(|op| c.eat(op));
        let Some(op) = op else {
            if c.rest().starts_with('|') {
                return Err(Error::unsupported(format!(
                    "LogQL pipeline stage {:?}",
                    c.rest()
                        .split_whitespace()
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" ")
                )));
            }
            return Err(c.error("expected a line filter (|=, !=, |~, !~)"));
        };
        c.skip_ws();
        let value = c.string()?;
        c.skip_ws();
        if c.rest().starts_with("or ") {
            return Err(Error::unsupported("`or` in line filters"));
        }
        let regex = || {
            Regex::new(&value)
                .map_err(|e| Error::BadData(format!("invalid regular expression {value:?}: {e}")))
        };
        filters.push(match op {
            "|=" => LineFilter::Contains(value),
            "!=" => LineFilter::NotContains(value),
            "|~" => LineFilter::Matches(regex()?),
            _ => LineFilter::NotMatches(regex()?),
        });
    }
    Ok(LogQuery { matchers, filters })
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
        let err = |q: &str| parse(q).unwrap_err().to_string();
        assert!(err(r#"{app="a"} | json"#).contains("not supported yet"));
        assert!(err(r#"rate({app="a"}[5m])"#).contains("not supported yet"));
        assert!(err(r#"{}"#).contains("at least one"));
        assert!(err(r#"{app=~".*"}"#).contains("empty-compatible"));
        assert!(err(r#"{app="a""#).contains("expected"));
        assert!(err(r#"{app="a} |= "x""#).contains("expected"));
        assert!(err(r#"{app="a"} |= "unterminated"#).contains("unterminated"));
        assert!(err(r#"{app="a"} |~ "(""#).contains("invalid regular expression"));
    }
}
