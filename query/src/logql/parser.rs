//! The hand-written LogQL parser: a cursor over the query text with one method per construct.

use pharos_model::LabelMatcher;
use regex::Regex;

use super::metric::{AggOp, ArithOp, MetricExpr, RangeFn, VectorMatching};
use super::pipeline::{
    self, CmpOp, LabelExpr, LabelFormatValue, LogfmtFlags, NumberUnit, Pattern, Stage, Template,
};
use super::{LineFilter, LogQuery};
use crate::error::{Error, Result};

/// How deep parentheses may nest (deeper input is refused rather than overflowing the stack).
const MAX_DEPTH: usize = 64;

pub(super) struct Cursor<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Cursor {
            src,
            pos: 0,
            depth: 0,
        }
    }

    /// Runs `f` one nesting level deeper.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error("expression nested too deeply"));
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }
}

impl<'a> Cursor<'a> {
    pub(super) fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    pub(super) fn skip_ws(&mut self) {
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

    pub(super) fn error(&self, what: &str) -> Error {
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

impl<'a> Cursor<'a> {
    fn at_end_of_pipeline(&self) -> bool {
        let r = self.rest();
        // `offset` ends the pipeline of a range function whose range came first.
        r.is_empty() || r.starts_with('[') || r.starts_with(')') || self.peek_word() == "offset"
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

    /// `name="path", name2, …` after `| json` (a bare name is its own path).
    fn json_fields(&mut self) -> Result<Vec<(String, Vec<pipeline::JsonStep>)>> {
        let start = self.pos;
        self.parser_fields()?
            .into_iter()
            .map(|(name, path)| match pipeline::parse_json_path(&path) {
                Some(steps) => Ok((name, steps)),
                None => {
                    self.pos = start;
                    Err(self.error(&format!("invalid json expression {path:?} for {name:?}")))
                }
            })
            .collect()
    }

    /// `name="expression", name2, …` after a parser (`json`, `logfmt`): each label name with
    /// what to extract into it (a bare name extracts itself).
    fn parser_fields(&mut self) -> Result<Vec<(String, String)>> {
        let mut fields = Vec::new();
        loop {
            self.skip_ws();
            let name = self.identifier()?.to_string();
            self.skip_ws();
            let expression = if self.eat("=") {
                self.skip_ws();
                self.string()?
            } else {
                name.clone()
            };
            fields.push((name, expression));
            self.skip_ws();
            if !self.eat(",") {
                return Ok(fields);
            }
        }
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

    pub(super) fn selector(&mut self) -> Result<Vec<LabelMatcher>> {
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
            if let Some(op) = ["|=", "!=", "|~", "!~", "|>", "!>"].into_iter().find(|op| self.eat(op)) {
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
                return Err(self.error("expected a line filter (|=, !=, |~, !~, |>, !>) or a \"|\" stage"));
            }
            self.skip_ws();
            let word = self.peek_word();
            let stage = match word {
                "json" | "logfmt" => {
                    self.pos += word.len();
                    self.skip_ws();
                    let mut flags = LogfmtFlags::default();
                    while self.rest().starts_with("--") {
                        let flag = self.rest().split(|c: char| c.is_whitespace() || c == '|').next().unwrap_or("");
                        match (word, flag) {
                            ("logfmt", "--strict") => flags.strict = true,
                            ("logfmt", "--keep-empty") => flags.keep_empty = true,
                            _ => return Err(self.error(&format!("unknown flag {flag:?} of `| {word}`"))),
                        }
                        self.pos += flag.len();
                        self.skip_ws();
                    }
                    let has_params = !self.at_end_of_pipeline()
                        && !self.rest().starts_with('|')
                        && !self.rest().starts_with('!');
                    if has_params && word == "json" {
                        Stage::JsonFields(self.json_fields()?)
                    } else if has_params {
                        Stage::LogfmtFields(self.parser_fields()?, flags)
                    } else if word == "json" {
                        Stage::Json
                    } else {
                        Stage::Logfmt(flags)
                    }
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
                    Stage::LineFormat(Template::parse(&t).map_err(|e| Error::BadData(format!("invalid line_format template: {e}")))?)
                }
                "label_format" => {
                    self.pos += word.len();
                    let mut assignments = Vec::new();
                    loop {
                        self.skip_ws();
                        let name = self.identifier()?.to_string();
                        // As in Loki: `__error__` is not formatted, and a label once per stage.
                        if name == pipeline::ERROR_LABEL {
                            return Err(Error::BadData(format!("{name} cannot be formatted")));
                        }
                        if assignments.iter().any(|(n, _)| n == &name) {
                            return Err(Error::BadData(format!(
                                "multiple label name '{name}' not allowed in a single format operation"
                            )));
                        }
                        self.expect("=")?;
                        self.skip_ws();
                        let value = if self.rest().starts_with('"') || self.rest().starts_with('`')
                        {
                            let t = self.string()?;
                            LabelFormatValue::Template(Template::parse(&t).map_err(|e| {
                                Error::BadData(format!("invalid template for label {name:?}: {e}"))
                            })?)
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
                        let name = self.identifier()?.to_string();
                        self.skip_ws();
                        match ["=~", "!~", "!=", "="].into_iter().find(|op| self.eat(op)) {
                            Some(op) => {
                                self.skip_ws();
                                let value = self.string()?;
                                let m = LabelMatcher::new(&name, op, &value).map_err(Error::BadData)?;
                                names.push(pipeline::LabelRef::Matcher(m));
                            }
                            None => names.push(pipeline::LabelRef::Name(name)),
                        }
                        self.skip_ws();
                        if !self.eat(",") {
                            break;
                        }
                    }
                    if word == "drop" {
                        Stage::Drop(names)
                    } else {
                        Stage::Keep(names)
                    }
                }
                "unwrap" => {
                    self.pos += word.len();
                    self.skip_ws();
                    let w = self.peek_word();
                    let unit = match w {
                        "duration" | "duration_seconds"
                            if self.rest()[w.len()..].trim_start().starts_with('(') =>
                        {
                            Some(NumberUnit::Duration)
                        }
                        "bytes" if self.rest()[w.len()..].trim_start().starts_with('(') => {
                            Some(NumberUnit::Bytes)
                        }
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
                "unpack" => {
                    self.pos += word.len();
                    Stage::Unpack
                }
                "decolorize" => {
                    self.pos += word.len();
                    Stage::Decolorize
                }
                "distinct" => {
                    self.pos += word.len();
                    let mut names = Vec::new();
                    loop {
                        self.skip_ws();
                        names.push(self.identifier()?.to_string());
                        self.skip_ws();
                        if !self.eat(",") {
                            break;
                        }
                    }
                    Stage::Distinct(names)
                }
                "line_format_json" => {
                    return Err(Error::unsupported(format!(
                        "LogQL pipeline stage `| {word}`"
                    )));
                }
                _ => Stage::LabelFilter(self.label_or()?),
            };
            if q.unwrap.is_some() {
                if !matches!(stage, Stage::LabelFilter(_)) {
                    return Err(Error::unsupported(
                        "stages other than label filters after `unwrap`",
                    ));
                }
                q.after_unwrap.push(stage);
                continue;
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
            let e = self.nested(|c| c.label_or())?;
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
        Ok(LabelExpr::Number {
            name: name.to_string(),
            op: cmp,
            value,
            unit,
        })
    }

    pub(super) fn log_query(&mut self) -> Result<LogQuery> {
        let matchers = self.selector()?;
        let mut q = LogQuery {
            matchers,
            stages: Vec::new(),
            unwrap: None,
            after_unwrap: Vec::new(),
        };
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

    /// A metric expression with binary operators between operands (PromQL's precedence, from
    /// loosest: `or`, `and`/`unless`, comparisons, `+ -`, `* / %`, and `^`, which groups from
    /// the right).
    pub(super) fn metric(&mut self) -> Result<MetricExpr> {
        self.nested(|c| c.arith(0))
    }

    fn arith(&mut self, min_prec: u8) -> Result<MetricExpr> {
        let mut left = self.operand()?;
        loop {
            self.skip_ws();
            let Some(op) = ArithOp::ALL.into_iter().find(|op| {
                if op.is_set() { self.peek_word() == op.symbol() } else { self.rest().starts_with(op.symbol()) }
            }) else {
                return Ok(left);
            };
            if op.precedence() < min_prec {
                return Ok(left);
            }
            let at = self.pos;
            self.pos += op.symbol().len();
            self.skip_ws();
            let bool_modifier = self.peek_word() == "bool";
            if bool_modifier {
                if !op.is_comparison() {
                    return Err(self.error(&format!("bool modifier after {:?}: only comparison operators take it", op.symbol())));
                }
                self.pos += "bool".len();
                self.skip_ws();
            }
            let mut matching = VectorMatching::default();
            let word = self.peek_word();
            if word == "on" || word == "ignoring" {
                self.pos += word.len();
                matching.on = word == "on";
                matching.labels = self.label_list()?;
                self.skip_ws();
                let group = self.peek_word();
                if group == "group_left" || group == "group_right" {
                    if op.is_set() {
                        return Err(self.error(&format!("no grouping allowed for {:?}", op.symbol())));
                    }
                    self.pos += group.len();
                    self.skip_ws();
                    let extra = if self.rest().starts_with('(') { self.label_list()? } else { Vec::new() };
                    if let Some(l) = extra.iter().find(|l| matching.on && matching.labels.contains(l)) {
                        return Err(self.error(&format!("label {l:?} must not occur in on and {group} at once")));
                    }
                    matching.group = Some((group == "group_right", extra));
                }
                self.skip_ws();
            }
            let next = if op.right_associative() { op.precedence() } else { op.precedence() + 1 };
            let right = self.nested(|c| c.arith(next))?;
            if op.is_comparison() && !bool_modifier && left.is_scalar() && right.is_scalar() {
                self.pos = at;
                return Err(self.error("comparisons between numbers need the bool modifier"));
            }
            if op.is_set() && (left.is_scalar() || right.is_scalar()) {
                self.pos = at;
                return Err(self.error(&format!("set operator {:?} needs a vector on both sides, not a number", op.symbol())));
            }
            if (!matching.labels.is_empty() || matching.on || matching.group.is_some()) && (left.is_scalar() || right.is_scalar()) {
                self.pos = at;
                return Err(self.error("vector matching needs a vector on both sides, not a number"));
            }
            left = MetricExpr::Binary {
                op,
                bool_modifier,
                matching,
                lhs: Box::new(left),
                rhs: Box::new(right),
            };
        }
    }

    fn operand(&mut self) -> Result<MetricExpr> {
        self.skip_ws();
        if self
            .rest()
            .starts_with(|c: char| c.is_ascii_digit() || c == '.')
        {
            let lit = self.literal()?;
            let n = lit
                .parse::<f64>()
                .map_err(|_| self.error(&format!("invalid number {lit:?}")))?;
            return Ok(MetricExpr::Scalar(n));
        }
        let word = self.peek_word();
        if word == "vector" && self.rest()[word.len()..].trim_start().starts_with('(') {
            self.pos += word.len();
            self.expect("(")?;
            self.skip_ws();
            let lit = self.literal()?;
            let n = lit
                .parse::<f64>()
                .map_err(|_| self.error(&format!("invalid number {lit:?} in vector()")))?;
            self.expect(")")?;
            return Ok(MetricExpr::Vector(n));
        }
        if let Some(func) = RangeFn::from_name(word) {
            self.pos += word.len();
            self.expect("(")?;
            self.skip_ws();
            let mut param = f64::NAN;
            if func == RangeFn::QuantileOverTime {
                let lit = self.literal()?;
                param = lit
                    .parse::<f64>()
                    .map_err(|_| self.error(&format!("invalid quantile {lit:?}: expected a number")))?;
                self.expect(",")?;
                self.skip_ws();
            }
            let matchers = self.selector()?;
            let mut query = LogQuery {
                matchers,
                stages: Vec::new(),
                unwrap: None,
                after_unwrap: Vec::new(),
            };
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
            let mut offset_ns = 0;
            if self.peek_word() == "offset" {
                self.pos += "offset".len();
                self.skip_ws();
                let text = self.rest().split(|c: char| c.is_whitespace() || c == ')').next().unwrap_or("");
                let secs = pipeline::parse_duration_secs(text)
                    .ok_or_else(|| self.error(&format!("invalid offset {text:?}")))?;
                offset_ns = (secs * 1e9) as i64;
                self.pos += text.len();
                self.skip_ws();
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
            if grouping.is_some() && !func.needs_unwrap() {
                return Err(Error::BadData(format!(
                    "grouping is only allowed on range functions over unwrapped values, not {}",
                    func.name()
                )));
            }
            return Ok(MetricExpr::Range {
                func,
                query,
                range_ns: range,
                offset_ns,
                param,
                grouping,
            });
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
            let inner = self.nested(|c| c.metric())?;
            self.expect(")")?;
            if grouping.is_none() {
                grouping = self.grouping()?;
            }
            return Ok(MetricExpr::Aggregate {
                op,
                grouping,
                param,
                inner: Box::new(inner),
            });
        }
        if word == "label_replace" && self.rest()[word.len()..].trim_start().starts_with('(') {
            self.pos += word.len();
            self.expect("(")?;
            let inner = self.nested(|c| c.metric())?;
            let mut strings = Vec::with_capacity(4);
            for _ in 0..4 {
                self.expect(",")?;
                self.skip_ws();
                strings.push(self.string()?);
            }
            self.expect(")")?;
            let [dst, replacement, src, regex]: [String; 4] =
                strings.try_into().map_err(|_| self.error("label_replace takes five arguments"))?;
            let replace = crate::promql::functions::LabelReplace::new(dst, replacement, src, &regex)?;
            return Ok(MetricExpr::LabelReplace { inner: Box::new(inner), replace });
        }
        if self.rest().starts_with('(') {
            self.pos += 1;
            let e = self.nested(|c| c.metric())?;
            self.expect(")")?;
            return Ok(e);
        }
        Err(Error::unsupported(format!(
            "LogQL expression {:?} (supported: log queries, range functions such as rate and \
             count_over_time, label_replace, vector(), and the aggregations sum, avg, min, max, \
             count, stddev, stdvar, topk, bottomk)",
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
        "|>" => LineFilter::MatchesPattern(Pattern::parse_filter(&value).map_err(Error::BadData)?),
        "!>" => LineFilter::NotMatchesPattern(Pattern::parse_filter(&value).map_err(Error::BadData)?),
        _ => LineFilter::NotMatches(regex()?),
    })
}
