//! LogQL pipeline stages after the stream selector: line filters, parsers (`json`, `logfmt`,
//! `regexp`, `pattern`), label filters, `line_format`, `label_format`, `drop` and `keep`.
//!
//! Each entry runs through the stages with its stream labels in a mutable map; labels a parser
//! extracts join the entry's labels (a name already in the stream gets the suffix `_extracted`,
//! as in Loki), and a parser that cannot read a line sets `__error__` (`JSONParserErr`,
//! `LogfmtParserErr`) instead of dropping it.

use std::collections::{BTreeMap, HashMap, HashSet};

use pharos_model::Labels;
use regex::Regex;

use super::LineFilter;
pub use super::template::Template;

/// The label Loki sets when a stage fails on an entry.
pub const ERROR_LABEL: &str = "__error__";
/// What went wrong, next to `__error__` (the position and cause of a logfmt syntax error).
pub const ERROR_DETAILS_LABEL: &str = "__error_details__";

/// The label a record's severity becomes, as Loki 3 names the level it detects at ingest
/// (structured metadata): `sum by (detected_level) (count_over_time(…))` is what Grafana's
/// logs volume groups by.
pub const DETECTED_LEVEL_LABEL: &str = "detected_level";

/// Loki's level names for a severity text (case-insensitive): `trace`, `debug`, `info`,
/// `warn`, `error`, `critical`, `fatal`, else `unknown`.
pub use pharos_model::level::detected_level;

/// The level a record's severity adds to its stream labels as `detected_level`: `None` when
/// it has no severity or the stream names a `detected_level` itself (which wins).
pub fn added_level(stream: &Labels, severity: &str) -> Option<&'static str> {
    (!severity.is_empty() && stream.get(DETECTED_LEVEL_LABEL).is_none()).then(|| detected_level(severity))
}

/// The flags of `| logfmt`, as Loki reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogfmtFlags {
    /// `--strict`: stop at the first malformed pair and mark the entry with `__error__`.
    /// Without it a malformed pair is skipped and the pairs after it are still read.
    pub strict: bool,
    /// `--keep-empty`: keep keys without a value (`flag`, `k=`, `k=""`) as empty labels.
    /// Without it they are left out. Named keys (`| logfmt a="k"`) are always kept.
    pub keep_empty: bool,
}

/// The labels of an entry while it runs through the pipeline.
pub type LabelMap = BTreeMap<String, String>;

/// One pipeline stage.
#[derive(Clone, Debug)]
pub enum Stage {
    /// `|= != |~ !~`
    Line(LineFilter),
    /// `| json`
    Json,
    /// `| json name="path", …`: only the named values (`a.b`, `a[0]`, `a["k"]`).
    JsonFields(Vec<(String, Vec<JsonStep>)>),
    /// `| logfmt [--strict] [--keep-empty]`
    Logfmt(LogfmtFlags),
    /// `| logfmt [--strict] name="key", …`: only the named keys.
    LogfmtFields(Vec<(String, String)>, LogfmtFlags),
    /// `| unpack`: the string members of a JSON object (Promtail's `pack` stage) become labels,
    /// and `_entry` becomes the line.
    Unpack,
    /// `| decolorize`: ANSI color and cursor escape sequences are removed from the line.
    Decolorize,
    /// `| regexp "(?P<name>re)"`
    Regexp(Regex),
    /// `| pattern "<name> - <_>"`
    Pattern(Pattern),
    /// `| name op value [and|or …]`
    LabelFilter(LabelExpr),
    /// `| line_format "{{.name}}"`
    LineFormat(Template),
    /// `| label_format new=old, new2="{{.x}}"`
    LabelFormat(Vec<(String, LabelFormatValue)>),
    /// `| drop a, b="v"`
    Drop(Vec<LabelRef>),
    /// `| keep a, b=~"v.*"`
    Keep(Vec<LabelRef>),
    /// `| distinct a, b`: an entry is dropped when one of the labels has a value an earlier
    /// entry (in the query's direction) had, label by label as Loki does it (see
    /// [`DistinctSeen::admit`]). Stateful: [`Stage::apply`] passes every entry,
    /// [`DistinctSeen`] does the filtering.
    Distinct(Vec<String>),
}

/// The label values `distinct` stages have let through so far: per stage (by its position in
/// the pipeline), per label.
#[derive(Default)]
pub struct DistinctSeen(HashMap<(usize, String), HashSet<String>>);

impl DistinctSeen {
    /// Loki's procedure for stage `stage` naming `names`, label by label in the order named:
    /// a missing label keeps the entry at once; a value seen before drops it at once; a new
    /// value is remembered and the next label checked. So the values remembered before the
    /// label that decides stay remembered, also when the entry is dropped.
    pub fn admit(&mut self, stage: usize, names: &[String], labels: &LabelMap) -> bool {
        for name in names {
            let Some(value) = labels.get(name) else { return true };
            let seen = self.0.entry((stage, name.clone())).or_default();
            if !seen.insert(value.clone()) {
                return false;
            }
        }
        true
    }
}

/// A label named by `drop` or `keep`: by name alone, or with a matcher that its value must
/// satisfy (`method="GET"`: dropped, or kept, only when it is GET).
#[derive(Clone, Debug)]
pub enum LabelRef {
    /// The label, whatever its value.
    Name(String),
    /// The label when its value matches.
    Matcher(pharos_model::LabelMatcher),
}

impl LabelRef {
    /// True when this names the label `name` with value `value`.
    fn selects(&self, name: &str, value: &str) -> bool {
        match self {
            LabelRef::Name(n) => n == name,
            LabelRef::Matcher(m) => m.name == name && m.matches_value(value),
        }
    }
}

/// ANSI escape sequences: CSI sequences (colors, cursor moves), character set designations
/// (`ESC ( B`) and two-character escapes.
fn ansi_escapes() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[@-Z\\-_])").expect("a valid regex"))
}

/// One step of a `json` expression's path.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonStep {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// Parses a `json` expression path: members joined by `.`, `[n]` for array elements and
/// `["key"]` for members with any characters (`request.headers["User-Agent"]`, `servers[0]`).
pub fn parse_json_path(path: &str) -> Option<Vec<JsonStep>> {
    let mut steps = Vec::new();
    let mut rest = path;
    let mut expect_key = true;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            if let Some(q) = inner.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
                steps.push(JsonStep::Key(q.replace("\\\"", "\"")));
            } else {
                steps.push(JsonStep::Index(inner.trim().parse().ok()?));
            }
            rest = &r[end + 1..];
            expect_key = false;
        } else if let Some(r) = rest.strip_prefix('.') {
            if expect_key {
                return None;
            }
            rest = r;
            expect_key = true;
        } else {
            if !expect_key {
                return None;
            }
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(JsonStep::Key(rest[..end].to_string()));
            rest = &rest[end..];
            expect_key = false;
        }
    }
    (!steps.is_empty() && !expect_key).then_some(steps)
}

/// The value at `path` as label text: strings as they are, numbers and booleans as written,
/// objects and arrays as JSON, null as empty; `None` when the path leads nowhere.
fn json_at(value: &serde_json::Value, path: &[JsonStep]) -> Option<String> {
    use serde_json::Value;
    let mut v = value;
    for step in path {
        v = match (step, v) {
            (JsonStep::Key(k), Value::Object(m)) => m.get(k)?,
            (JsonStep::Index(i), Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// The right-hand side of one `label_format` assignment.
#[derive(Clone, Debug)]
pub enum LabelFormatValue {
    /// `new=old`: rename (the old label goes away).
    Rename(String),
    /// `new="template"`.
    Template(Template),
}

impl Stage {
    /// True for the stages after which the line is no longer the stored one (`line_format`,
    /// `unpack`'s `_entry`, `decolorize`): line filters after them cannot use the index.
    pub fn rewrites_line(&self) -> bool {
        matches!(self, Stage::LineFormat(_) | Stage::Unpack | Stage::Decolorize)
    }

    /// True for the stages from which on line filters cannot be checked ahead of the pipeline:
    /// those that rewrite the line, and `distinct`, which must see every entry before them.
    pub fn ends_prefiltering(&self) -> bool {
        self.rewrites_line() || matches!(self, Stage::Distinct(_))
    }

    /// Runs the stage; false drops the entry.
    pub fn apply(&self, labels: &mut LabelMap, stream: &Labels, line: &mut String, ts_nanos: i64) -> bool {
        match self {
            Stage::Line(f) => f.accepts(line),
            Stage::Json => {
                match serde_json::from_str::<serde_json::Value>(line) {
                    Ok(serde_json::Value::Object(map)) => {
                        let mut out = Vec::new();
                        flatten_json("", &map, &mut out);
                        for (k, v) in out {
                            insert_extracted(labels, stream, &k, v);
                        }
                    }
                    _ => set_error(labels, "JSONParserErr"),
                }
                true
            }
            Stage::JsonFields(fields) => {
                match serde_json::from_str::<serde_json::Value>(line) {
                    Ok(v @ serde_json::Value::Object(_)) => {
                        for (name, path) in fields {
                            if let Some(value) = json_at(&v, path) {
                                insert_extracted(labels, stream, name, value);
                            }
                        }
                    }
                    _ => set_error(labels, "JSONParserErr"),
                }
                true
            }
            Stage::Logfmt(flags) => {
                let error = scan_logfmt(line, flags.strict, |k, v| {
                    if flags.keep_empty || !v.is_empty() {
                        insert_extracted(labels, stream, &sanitize_key(k), v);
                    }
                });
                if let Some(details) = error {
                    set_error_with_details(labels, "LogfmtParserErr", details);
                }
                true
            }
            Stage::LogfmtFields(fields, flags) => {
                let mut found: Vec<Option<String>> = vec![None; fields.len()];
                let error = scan_logfmt(line, flags.strict, |k, v| {
                    // The last occurrence of a key wins, as with the plain parser.
                    for (slot, (_, key)) in found.iter_mut().zip(fields) {
                        if key == k {
                            *slot = Some(v.clone());
                        }
                    }
                });
                for ((name, _), value) in fields.iter().zip(found) {
                    if let Some(v) = value {
                        insert_extracted(labels, stream, name, v);
                    }
                }
                if let Some(details) = error {
                    set_error_with_details(labels, "LogfmtParserErr", details);
                }
                true
            }
            Stage::Unpack => {
                match serde_json::from_str::<serde_json::Value>(line) {
                    Ok(serde_json::Value::Object(map)) => {
                        let mut entry = None;
                        for (k, v) in map {
                            let serde_json::Value::String(v) = v else { continue };
                            if k == "_entry" {
                                entry = Some(v);
                            } else {
                                insert_extracted(labels, stream, &sanitize_key(&k), v);
                            }
                        }
                        if let Some(e) = entry {
                            *line = e;
                        }
                    }
                    _ => set_error(labels, "JSONParserErr"),
                }
                true
            }
            Stage::Decolorize => {
                if line.contains('\x1b') {
                    *line = ansi_escapes().replace_all(line, "").into_owned();
                }
                true
            }
            Stage::Regexp(re) => {
                if let Some(caps) = re.captures(line) {
                    for name in re.capture_names().flatten() {
                        if let Some(m) = caps.name(name) {
                            insert_extracted(labels, stream, name, m.as_str().to_string());
                        }
                    }
                }
                true
            }
            Stage::Pattern(p) => {
                if let Some(pairs) = p.matches(line) {
                    for (k, v) in pairs {
                        insert_extracted(labels, stream, &k, v);
                    }
                }
                true
            }
            Stage::LabelFilter(expr) => expr.eval(labels),
            Stage::LineFormat(t) => {
                // As in Loki, a template that fails on this entry leaves the line as it was.
                match t.render(labels, line, ts_nanos) {
                    Ok(rendered) => *line = rendered,
                    Err(e) => set_error_with_details(labels, "TemplateFormatErr", e),
                }
                true
            }
            Stage::LabelFormat(assignments) => {
                let before = labels.clone();
                for (name, value) in assignments {
                    match value {
                        LabelFormatValue::Rename(old) => {
                            let v = before.get(old).cloned().unwrap_or_default();
                            labels.remove(old);
                            labels.insert(name.clone(), v);
                        }
                        LabelFormatValue::Template(t) => match t.render(&before, line, ts_nanos) {
                            Ok(v) => {
                                labels.insert(name.clone(), v);
                            }
                            Err(e) => set_error_with_details(labels, "TemplateFormatErr", e),
                        },
                    }
                }
                true
            }
            Stage::Drop(refs) => {
                labels.retain(|k, v| !refs.iter().any(|r| r.selects(k, v)));
                true
            }
            Stage::Keep(refs) => {
                labels.retain(|k, v| refs.iter().any(|r| r.selects(k, v)));
                true
            }
            Stage::Distinct(_) => true,
        }
    }
}

fn set_error(labels: &mut LabelMap, err: &str) {
    labels
        .entry(ERROR_LABEL.to_string())
        .or_insert_with(|| err.to_string());
}

/// Sets `__error__` and, for the first error only, `__error_details__`.
fn set_error_with_details(labels: &mut LabelMap, err: &str, details: String) {
    if !labels.contains_key(ERROR_LABEL) {
        labels.insert(ERROR_LABEL.to_string(), err.to_string());
        labels.insert(ERROR_DETAILS_LABEL.to_string(), details);
    }
}

/// Adds an extracted label; a name the stream already has becomes `name_extracted`.
pub(crate) fn insert_extracted(labels: &mut LabelMap, stream: &Labels, name: &str, value: String) {
    if name.is_empty() {
        return;
    }
    let name = if stream.get(name).is_some() {
        format!("{name}_extracted")
    } else {
        name.to_string()
    };
    labels.insert(name, value);
}

/// Replaces characters not allowed in a label name by `_`.
fn sanitize_key(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Nested objects flatten with `_` (`{"a":{"b":1}}` → `a_b="1"`); arrays are skipped, as in Loki.
fn flatten_json(
    prefix: &str,
    map: &serde_json::Map<String, serde_json::Value>,
    out: &mut Vec<(String, String)>,
) {
    use serde_json::Value;
    for (k, v) in map {
        let key = if prefix.is_empty() {
            sanitize_key(k)
        } else {
            format!("{prefix}_{}", sanitize_key(k))
        };
        match v {
            Value::Object(inner) => flatten_json(&key, inner, out),
            Value::Array(_) => {}
            Value::Null => out.push((key, String::new())),
            Value::String(s) => out.push((key, s.clone())),
            Value::Bool(b) => out.push((key, b.to_string())),
            Value::Number(n) => out.push((key, n.to_string())),
        }
    }
}

/// A field found in a line by [`line_fields`]: its label name (as `| json` or `| logfmt` would
/// name it), its JSON path (for `json`), and its value.
pub struct LineField {
    /// The label name.
    pub name: String,
    /// The keys leading to it in the JSON object (empty for logfmt).
    pub json_path: Vec<String>,
    /// The value as the parser gives it.
    pub value: String,
}

/// The fields of `line` as Loki's detected-fields finds them: a JSON object's members (nested
/// objects flattened, as `| json` names them) with the `json` parser, else the logfmt pairs
/// with a value (`| logfmt`, not strict). `None` when neither finds any.
pub fn line_fields(line: &str) -> Option<(&'static str, Vec<LineField>)> {
    fn walk(prefix: &str, path: &mut Vec<String>, map: &serde_json::Map<String, serde_json::Value>, out: &mut Vec<LineField>) {
        use serde_json::Value;
        for (k, v) in map {
            let name = if prefix.is_empty() { sanitize_key(k) } else { format!("{prefix}_{}", sanitize_key(k)) };
            path.push(k.clone());
            let value = match v {
                Value::Object(inner) => {
                    walk(&name, path, inner, out);
                    None
                }
                Value::Array(_) => None,
                Value::Null => Some(String::new()),
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Number(n) => Some(n.to_string()),
            };
            if let Some(value) = value {
                out.push(LineField { name, json_path: path.clone(), value });
            }
            path.pop();
        }
    }
    let t = line.trim_start();
    if t.starts_with('{')
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(line)
    {
        let mut out = Vec::new();
        walk("", &mut Vec::new(), &map, &mut out);
        return (!out.is_empty()).then_some(("json", out));
    }
    let mut out = Vec::new();
    scan_logfmt(line, false, |k, v| {
        if !v.is_empty() {
            out.push(LineField { name: sanitize_key(k), json_path: Vec::new(), value: v });
        }
    });
    (!out.is_empty()).then_some(("logfmt", out))
}

/// Reads the `key=value` pairs of a logfmt line, handing each to `pair` (a key without a value
/// comes with ""). A malformed pair (`=v`, `k=a=b`, `k"`, a bad escape, an unclosed quote) is an
/// error: with `strict` the scan stops there, else the rest of that token is skipped and the scan
/// goes on. Returns the first error, as "logfmt syntax error at pos N : cause" (1-based byte
/// position), when the scan was strict.
fn scan_logfmt(line: &str, strict: bool, mut pair: impl FnMut(&str, String)) -> Option<String> {
    let bytes = line.as_bytes();
    let mut pos = 0;
    let error = |pos: usize, cause: &str| format!("logfmt syntax error at pos {} : {cause}", pos + 1);
    // The end of the token that starts at `from`: the next byte that is space or control.
    let token_end = |from: usize| bytes[from..].iter().position(|&c| c <= b' ').map_or(bytes.len(), |p| from + p);
    loop {
        while pos < bytes.len() && bytes[pos] <= b' ' {
            pos += 1;
        }
        if pos == bytes.len() {
            return None;
        }
        let start = pos;
        let mut failure = None;
        while pos < bytes.len() && bytes[pos] > b' ' && bytes[pos] != b'=' && bytes[pos] != b'"' {
            pos += 1;
        }
        let key = &line[start..pos];
        match bytes.get(pos) {
            Some(b'"') => failure = Some((pos, "unexpected '\"'".to_string())),
            Some(b'=') if key.is_empty() => failure = Some((pos, "unexpected '='".to_string())),
            Some(b'=') => {
                pos += 1;
                match bytes.get(pos) {
                    Some(b'"') => match unquote_logfmt(&line[pos..]) {
                        Ok((value, used)) => {
                            pos += used;
                            pair(key, value);
                        }
                        Err((offset, cause)) => {
                            // The scan goes on after the closing quote (or at the end of the
                            // line when there is none).
                            pos = (pos + offset).min(bytes.len());
                            if strict {
                                return Some(error(pos, cause));
                            }
                        }
                    },
                    _ => {
                        let end = token_end(pos);
                        match bytes[pos..end].iter().position(|&c| c == b'=' || c == b'"') {
                            Some(p) => failure = Some((pos + p, format!("unexpected {:?}", bytes[pos + p] as char))),
                            None => {
                                pair(key, line[pos..end].to_string());
                                pos = end;
                            }
                        }
                    }
                }
            }
            // A key alone: the end of the line or a space.
            _ => pair(key, String::new()),
        }
        if let Some((at, cause)) = failure {
            if strict {
                return Some(error(at, &cause));
            }
            pos = token_end(pos.min(bytes.len()));
        }
    }
}

/// The value of `"…"` at the start of `quoted` and the bytes it takes, with the escapes of a
/// JSON string (`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\uXXXX`); else the byte
/// offset and cause of the error.
fn unquote_logfmt(quoted: &str) -> Result<(String, usize), (usize, &'static str)> {
    let mut out = String::new();
    let mut chars = quoted.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    '"' | '\\' | '/' => out.push(e),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).map(|(_, h)| h).collect();
                        match u32::from_str_radix(&hex, 16).ok().filter(|_| hex.len() == 4).and_then(char::from_u32) {
                            Some(ch) => out.push(ch),
                            None => return Err((closing_quote(quoted), "invalid quoted value")),
                        }
                    }
                    _ => return Err((closing_quote(quoted), "invalid quoted value")),
                }
            }
            _ => out.push(c),
        }
    }
    Err((quoted.len(), "unterminated quoted value"))
}

/// The offset just past the quote that closes the string at the start of `quoted` (or its end).
fn closing_quote(quoted: &str) -> usize {
    let mut escaped = false;
    for (i, c) in quoted.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return i + 1,
            _ => {}
        }
    }
    quoted.len()
}

/// A `pattern` expression: literals and `<name>` captures (`<_>` captures nothing).
#[derive(Clone, Debug)]
pub struct Pattern(Vec<PatternPart>);

#[derive(Clone, Debug)]
enum PatternPart {
    Literal(String),
    Capture(String),
}

impl Pattern {
    /// Parses `<ip> - <_> "<method> <path>"` (at least one named capture: `| pattern`).
    pub fn parse(src: &str) -> Result<Pattern, String> {
        let p = Self::parse_filter(src)?;
        if !p.0.iter().any(|p| matches!(p, PatternPart::Capture(n) if n != "_")) {
            return Err(format!("invalid pattern {src:?}: at least one named capture is required"));
        }
        Ok(p)
    }

    /// Parses the pattern of a `|>` / `!>` line filter, where captures need no names.
    pub fn parse_filter(src: &str) -> Result<Pattern, String> {
        let mut parts = Vec::new();
        let mut rest = src;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('<')
                && let Some(end) = after.find('>')
                && !after[..end].is_empty()
                && after[..end]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                let name = &after[..end];
                if matches!(parts.last(), Some(PatternPart::Capture(_))) {
                    return Err(format!(
                        "invalid pattern {src:?}: consecutive captures need a literal between them"
                    ));
                }
                parts.push(PatternPart::Capture(name.to_string()));
                rest = &after[end + 1..];
                continue;
            }
            let first = rest.chars().next().map_or(1, char::len_utf8);
            let next = rest[first..].find('<').map_or(rest.len(), |i| i + first);
            match parts.last_mut() {
                Some(PatternPart::Literal(l)) => l.push_str(&rest[..next]),
                _ => parts.push(PatternPart::Literal(rest[..next].to_string())),
            }
            rest = &rest[next..];
        }
        Ok(Pattern(parts))
    }

    /// The literal parts, in order.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            PatternPart::Literal(l) => Some(l.as_str()),
            PatternPart::Capture(_) => None,
        })
    }

    /// Whether the whole of `line` matches (`|>`), as Loki's pattern filter tests it: each
    /// literal at its first occurrence after the previous one, the first one at the start of
    /// the line, every capture non-empty, and nothing left after a final literal. An empty line
    /// matches only an empty pattern.
    pub fn test(&self, line: &str) -> bool {
        if line.is_empty() || self.0.is_empty() {
            return line.is_empty() && self.0.is_empty();
        }
        let mut off = 0;
        for (i, part) in self.0.iter().enumerate() {
            let PatternPart::Literal(lit) = part else { continue };
            let Some(j) = line[off..].find(lit.as_str()) else { return false };
            // At the start when the pattern starts with it; after a non-empty capture else.
            if (i == 0) != (j == 0) {
                return false;
            }
            off += j + lit.len();
        }
        let ends_on_capture = matches!(self.0.last(), Some(PatternPart::Capture(_)));
        ends_on_capture == (off < line.len())
    }

    /// The captures when the line matches (from its start; the last capture takes the rest).
    pub fn matches(&self, line: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut rest = line;
        let mut i = 0;
        while i < self.0.len() {
            match &self.0[i] {
                PatternPart::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                PatternPart::Capture(name) => {
                    let value = match self.0.get(i + 1) {
                        Some(PatternPart::Literal(l)) => {
                            let at = rest.find(l.as_str())?;
                            let v = &rest[..at];
                            rest = &rest[at + l.len()..];
                            i += 1;
                            v
                        }
                        _ => std::mem::take(&mut rest),
                    };
                    if name != "_" {
                        out.push((name.clone(), value.to_string()));
                    }
                }
            }
            i += 1;
        }
        Some(out)
    }
}

/// A comparison operator of a label filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=` or `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

impl CmpOp {
    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Eq => ord == Equal,
            CmpOp::Ne => ord != Equal,
            CmpOp::Gt => ord == Greater,
            CmpOp::Ge => ord != Less,
            CmpOp::Lt => ord == Less,
            CmpOp::Le => ord != Greater,
        }
    }
}

/// A label filter expression.
#[derive(Clone, Debug)]
pub enum LabelExpr {
    /// Both hold.
    And(Box<LabelExpr>, Box<LabelExpr>),
    /// Either holds.
    Or(Box<LabelExpr>, Box<LabelExpr>),
    /// `name = "s"`, `name != "s"`, `name =~ "re"`, `name !~ "re"`.
    String(pharos_model::LabelMatcher),
    /// `name > 5`, `name >= 10s`, `name < 20MB`: the label read as a number, duration (seconds)
    /// or byte size, compared with `value`.
    Number {
        /// Label name.
        name: String,
        /// Operator.
        op: CmpOp,
        /// Right-hand side (seconds for durations, bytes for sizes).
        value: f64,
        /// How to read the label value.
        unit: NumberUnit,
    },
}

/// How a numeric label filter reads the label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberUnit {
    /// A plain float.
    Plain,
    /// A duration like `1.5s`, `250ms`, `1h2m`.
    Duration,
    /// A size like `20MB`, `1KiB`, `512`.
    Bytes,
}

impl LabelExpr {
    /// True when the entry passes. A numeric filter on a value that does not parse passes the
    /// entry with `__error__="LabelFilterErr"`; after an error only string filters filter, as in
    /// Loki.
    pub fn eval(&self, labels: &mut LabelMap) -> bool {
        match self {
            LabelExpr::And(a, b) => a.eval(labels) && b.eval(labels),
            LabelExpr::Or(a, b) => a.eval(labels) || b.eval(labels),
            LabelExpr::String(m) => m.matches_value(labels.get(&m.name).map_or("", |s| s.as_str())),
            LabelExpr::Number {
                name,
                op,
                value,
                unit,
            } => {
                if labels.contains_key(ERROR_LABEL) {
                    return true;
                }
                let Some(v) = labels.get(name) else {
                    return false;
                };
                let parsed = match unit {
                    NumberUnit::Plain => v.trim().parse::<f64>().ok(),
                    NumberUnit::Duration => parse_duration_secs(v),
                    NumberUnit::Bytes => parse_bytes(v),
                };
                match parsed {
                    Some(x) => x.partial_cmp(value).is_some_and(|o| op.holds(o)),
                    None => {
                        set_error(labels, "LabelFilterErr");
                        true
                    }
                }
            }
        }
    }
}

/// A Go duration (`1h2m3.5s`, `250ms`, `10us`) in seconds.
pub fn parse_duration_secs(s: &str) -> Option<f64> {
    let s = s.trim();
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0.0);
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 604800.0,
            "y" => 31536000.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * mult;
    }
    Some(if neg { -total } else { total })
}

/// A byte size (`512`, `1.5KB`, `20MiB`; SI and IEC units, case-insensitive) in bytes.
pub fn parse_bytes(s: &str) -> Option<f64> {
    let s = s.trim();
    let num_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..num_len].parse().ok()?;
    let mult = match s[num_len..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" | "ki" => 1024.0,
        "mib" | "mi" => 1024.0 * 1024.0,
        "gib" | "gi" => 1024.0 * 1024.0 * 1024.0,
        "tib" | "ti" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stage: &Stage, stream: &[(&str, &str)], line: &str) -> Option<(LabelMap, String)> {
        let stream = Labels::from_pairs(stream.iter().copied());
        let mut labels: LabelMap = stream
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut line = line.to_string();
        stage
            .apply(&mut labels, &stream, &mut line, 0)
            .then_some((labels, line))
    }

    fn map(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn json_flattens_nested_keys_and_marks_errors() {
        let (l, _) = run(
            &Stage::Json,
            &[("app", "api")],
            r#"{"app":"x","level":"error","req":{"status":500,"path.x":"/a"},"ok":true,"tags":[1]}"#,
        )
        .unwrap();
        assert_eq!(
            l,
            map(&[
                ("app", "api"),
                ("app_extracted", "x"),
                ("level", "error"),
                ("ok", "true"),
                ("req_path_x", "/a"),
                ("req_status", "500"),
            ])
        );
        let (l, _) = run(&Stage::Json, &[("app", "api")], "not json").unwrap();
        assert_eq!(l, map(&[("app", "api"), ("__error__", "JSONParserErr")]));
    }

    #[test]
    fn logfmt_fields_unpack_and_decolorize() {
        let fields = Stage::LogfmtFields(
            vec![("host".into(), "host".into()), ("fwd".into(), "x-forwarded-for".into()), ("gone".into(), "nope".into()), ("e".into(), "e".into())],
            LogfmtFlags::default(),
        );
        let (l, _) = run(&fields, &[("app", "api")], r#"host=a x-forwarded-for="1.2.3.4" level=info host=b e="#).unwrap();
        assert_eq!(l, map(&[("app", "api"), ("e", ""), ("host", "b"), ("fwd", "1.2.3.4")]), "only the named keys, the last one wins, empty ones too");
        let (l, _) = run(&fields, &[("app", "api")], r#"host="unterminated"#).unwrap();
        assert_eq!(l, map(&[("app", "api")]), "not strict: no error");
        let strict = Stage::LogfmtFields(vec![("host".into(), "host".into())], LogfmtFlags { strict: true, keep_empty: false });
        let (l, _) = run(&strict, &[("app", "api")], r#"host=a b=="#).unwrap();
        assert_eq!(l["host"], "a");
        assert_eq!(l[ERROR_LABEL], "LogfmtParserErr");

        let (l, line) = run(&Stage::Unpack, &[("app", "api")], r#"{"_entry":"GET / 200","pod":"p1","n":3,"app":"x"}"#).unwrap();
        assert_eq!(line, "GET / 200", "_entry is the line");
        assert_eq!(l, map(&[("app", "api"), ("app_extracted", "x"), ("pod", "p1")]), "string members only");
        let (l, line) = run(&Stage::Unpack, &[("app", "api")], "plain text").unwrap();
        assert_eq!(line, "plain text");
        assert_eq!(l, map(&[("app", "api"), ("__error__", "JSONParserErr")]));

        let colored = "\x1b[31mERROR\x1b[0m disk \x1b[1;33mfull\x1b[m \x1b(B\x1b[2K!";
        let (_, line) = run(&Stage::Decolorize, &[], colored).unwrap();
        assert_eq!(line, "ERROR disk full !");
        let (_, line) = run(&Stage::Decolorize, &[], "no escapes [31m").unwrap();
        assert_eq!(line, "no escapes [31m");
    }

    #[test]
    fn json_paths_parse_and_pick_values() {
        use JsonStep::{Index, Key};
        let k = |s: &str| Key(s.to_string());
        assert_eq!(parse_json_path("a"), Some(vec![k("a")]));
        assert_eq!(parse_json_path("a.b[2]"), Some(vec![k("a"), k("b"), Index(2)]));
        assert_eq!(parse_json_path(r#"req.headers["User-Agent"].x"#), Some(vec![k("req"), k("headers"), k("User-Agent"), k("x")]));
        assert_eq!(parse_json_path(r#"["a.b"]"#), Some(vec![k("a.b")]));
        for bad in ["", ".a", "a.", "a..b", "a[x]", "a[0", "a[0]b"] {
            assert_eq!(parse_json_path(bad), None, "{bad:?}");
        }
        let line = r#"{"msg":"hi","req":{"status":503,"ok":false,"headers":{"User-Agent":"curl"}},"servers":["s1","s2"],"n":null}"#;
        let stage = Stage::JsonFields(vec![
            ("status".into(), parse_json_path("req.status").unwrap()),
            ("ua".into(), parse_json_path(r#"req.headers["User-Agent"]"#).unwrap()),
            ("second".into(), parse_json_path("servers[1]").unwrap()),
            ("all".into(), parse_json_path("servers").unwrap()),
            ("ok".into(), parse_json_path("req.ok").unwrap()),
            ("n".into(), parse_json_path("n").unwrap()),
            ("missing".into(), parse_json_path("req.nope[3]").unwrap()),
            ("app".into(), parse_json_path("msg").unwrap()),
        ]);
        let (l, line_out) = run(&stage, &[("app", "api")], line).unwrap();
        assert_eq!(line_out, line, "the line is unchanged");
        assert_eq!(
            l,
            map(&[
                ("app", "api"),
                ("app_extracted", "hi"),
                ("status", "503"),
                ("ua", "curl"),
                ("second", "s2"),
                ("all", r#"["s1","s2"]"#),
                ("ok", "false"),
                ("n", ""),
            ])
        );
        let (l, _) = run(&stage, &[("app", "api")], "[1,2]").unwrap();
        assert_eq!(l, map(&[("app", "api"), ("__error__", "JSONParserErr")]));
    }

    #[test]
    fn logfmt_pairs_quotes_and_errors() {
        let plain = Stage::Logfmt(LogfmtFlags::default());
        let keep = Stage::Logfmt(LogfmtFlags { strict: false, keep_empty: true });
        let strict = Stage::Logfmt(LogfmtFlags { strict: true, keep_empty: false });
        let line = r#"level=info msg="hello \"w\" \u00e9\t/" dur=1.5s flag e= q="" 9lives=y"#;
        let (l, _) = run(&plain, &[], line).unwrap();
        assert_eq!(
            l,
            map(&[("_9lives", "y"), ("dur", "1.5s"), ("level", "info"), ("msg", "hello \"w\" \u{e9}\t/")]),
            "keys without a value are left out"
        );
        let (l, _) = run(&keep, &[], line).unwrap();
        assert_eq!(l.len(), 7, "--keep-empty adds flag, e and q: {l:?}");
        assert_eq!((l["flag"].as_str(), l["e"].as_str(), l["q"].as_str()), ("", "", ""));

        // Each malformed token is skipped and the pairs around it are read; nothing marks the
        // entry. Under --strict the scan stops at the first one, with its position (1-based).
        let cases = [
            (r#"a=1 =x b=2"#, "logfmt syntax error at pos 5 : unexpected '='", vec![("a", "1"), ("b", "2")]),
            (r#"a=1 k=v=w b=2"#, "logfmt syntax error at pos 8 : unexpected '='", vec![("a", "1"), ("b", "2")]),
            (r#"a=1 k"x b=2"#, "logfmt syntax error at pos 6 : unexpected '\"'", vec![("a", "1"), ("b", "2")]),
            (r#"a=1 k=x"y b=2"#, "logfmt syntax error at pos 8 : unexpected '\"'", vec![("a", "1"), ("b", "2")]),
            (r#"a=1 k="\q"b=2"#, "logfmt syntax error at pos 11 : invalid quoted value", vec![("a", "1"), ("b", "2")]),
            (r#"a=1 msg="open b=2"#, "logfmt syntax error at pos 18 : unterminated quoted value", vec![("a", "1")]),
        ];
        for (line, details, pairs) in cases {
            let (l, _) = run(&plain, &[], line).unwrap();
            assert_eq!(l, map(&pairs), "{line}");
            let (l, _) = run(&strict, &[], line).unwrap();
            assert_eq!(
                l,
                map(&[("a", "1"), (ERROR_LABEL, "LogfmtParserErr"), (ERROR_DETAILS_LABEL, details)]),
                "{line}"
            );
        }
        let (l, _) = run(&strict, &[("level", "x")], "level=info é=ü").unwrap();
        assert_eq!(l, map(&[("level", "x"), ("level_extracted", "info"), ("_", "ü")]), "multi-byte keys sanitize to _");
    }

    #[test]
    fn regexp_and_pattern_extract_named_parts() {
        let re = Stage::Regexp(Regex::new(r"(?P<method>[A-Z]+) (?P<path>\S+)").unwrap());
        let (l, _) = run(&re, &[], "GET /index 200").unwrap();
        assert_eq!(l, map(&[("method", "GET"), ("path", "/index")]));
        let (l, _) = run(&re, &[], "nothing").unwrap();
        assert!(l.is_empty());

        let p = Stage::Pattern(Pattern::parse(r#"<ip> - <_> "<method> <path>" <status>"#).unwrap());
        let (l, _) = run(&p, &[], r#"10.0.0.1 - frank "GET /a b" 503"#).unwrap();
        assert_eq!(
            l,
            map(&[
                ("ip", "10.0.0.1"),
                ("method", "GET"),
                ("path", "/a b"),
                ("status", "503")
            ])
        );
        let (l, _) = run(&p, &[], "garbage").unwrap();
        assert!(l.is_empty());
        assert!(Pattern::parse("<a><b>").is_err());
        assert!(Pattern::parse("<_> x").is_err());
    }

    #[test]
    fn numeric_duration_and_bytes_filters() {
        let num = |name: &str, op, value, unit| LabelExpr::Number {
            name: name.into(),
            op,
            value,
            unit,
        };
        let mut l = map(&[("status", "503"), ("dur", "1m30s"), ("size", "2KiB")]);
        assert!(num("status", CmpOp::Ge, 500.0, NumberUnit::Plain).eval(&mut l));
        assert!(!num("status", CmpOp::Lt, 500.0, NumberUnit::Plain).eval(&mut l));
        assert!(num("dur", CmpOp::Gt, 89.0, NumberUnit::Duration).eval(&mut l));
        assert!(!num("dur", CmpOp::Gt, 90.0, NumberUnit::Duration).eval(&mut l));
        assert!(num("size", CmpOp::Eq, 2048.0, NumberUnit::Bytes).eval(&mut l));
        assert!(
            !num("missing", CmpOp::Ne, 1.0, NumberUnit::Plain).eval(&mut l),
            "a missing label fails"
        );
        assert!(!l.contains_key(ERROR_LABEL));
        let mut l = map(&[("status", "abc")]);
        assert!(num("status", CmpOp::Ge, 500.0, NumberUnit::Plain).eval(&mut l));
        assert_eq!(l[ERROR_LABEL], "LabelFilterErr");
        assert_eq!(parse_duration_secs("250ms"), Some(0.25));
        assert_eq!(parse_bytes("1.5KB"), Some(1500.0));
    }

    #[test]
    fn formats_drop_and_keep() {
        let t = Stage::LineFormat(Template::parse("{{.level}}: {{ .msg }}{{.none}}!").unwrap());
        let (_, line) = run(&t, &[("level", "warn"), ("msg", "disk")], "orig").unwrap();
        assert_eq!(line, "warn: disk!");
        assert!(Template::parse("{{printf \"%s\" .x").is_err());
        assert!(Template::parse("{{ .x | ToUpper 3 }}").is_err());
        assert!(Template::parse("{{ replace \"a\" .x }}").is_err());
        let t = Stage::LineFormat(
            Template::parse(r#"{{ .level | ToUpper }} {{ToLower .msg}} [{{ __line__ | trunc 4 }}] {{ .gone | default "-" }} {{ replace "a" "4" .msg | trimPrefix "Dis" }} {{ "x\ty" }} {{ .msg | trunc -2 }}"#).unwrap(),
        );
        let (_, line) = run(&t, &[("level", "warn"), ("msg", "Disk full, a")], "original line").unwrap();
        assert_eq!(line, "WARN disk full, a [orig] - k full, 4 x\ty  a");
        // A template that fails on an entry marks it and leaves the line (or label) as it was.
        let t = Stage::LineFormat(Template::parse(r#"{{ .msg }} {{ div 1 .n }}"#).unwrap());
        let (l, line) = run(&t, &[("msg", "m"), ("n", "0")], "orig").unwrap();
        assert_eq!(line, "orig");
        assert_eq!(l[ERROR_LABEL], "TemplateFormatErr");
        assert_eq!(l[ERROR_DETAILS_LABEL], "error calling div: runtime error: integer divide by zero");
        let (_, line) = run(&t, &[("msg", "m"), ("n", "1")], "orig").unwrap();
        assert_eq!(line, "m 1");
        let lf = Stage::LabelFormat(vec![
            ("lvl".into(), LabelFormatValue::Rename("level".into())),
            (
                "both".into(),
                LabelFormatValue::Template(Template::parse("{{.level}}-{{.app}}").unwrap()),
            ),
        ]);
        let (l, _) = run(&lf, &[("app", "a"), ("level", "info")], "").unwrap();
        assert_eq!(l, map(&[("app", "a"), ("both", "info-a"), ("lvl", "info")]));
        let (l, _) = run(
            &Stage::Drop(vec![LabelRef::Name("app".into())]),
            &[("app", "a"), ("x", "1")],
            "",
        )
        .unwrap();
        assert_eq!(l, map(&[("x", "1")]));
        let (l, _) = run(
            &Stage::Keep(vec![LabelRef::Name("app".into())]),
            &[("app", "a"), ("x", "1")],
            "",
        )
        .unwrap();
        assert_eq!(l, map(&[("app", "a")]));
        // With matchers: a label goes (or stays) only when its value matches.
        let m = |n: &str, op: &str, v: &str| LabelRef::Matcher(pharos_model::LabelMatcher::new(n, op, v).unwrap());
        let labels = [("app", "a"), ("level", "debug"), ("method", "GET"), ("path", "/x")];
        let (l, _) = run(&Stage::Drop(vec![m("level", "=", "debug"), m("method", "!=", "GET"), LabelRef::Name("path".into())]), &labels, "").unwrap();
        assert_eq!(l, map(&[("app", "a"), ("method", "GET")]));
        let (l, _) = run(&Stage::Keep(vec![m("level", "=~", "info|warn"), m("method", "=", "GET"), LabelRef::Name("app".into())]), &labels, "").unwrap();
        assert_eq!(l, map(&[("app", "a"), ("method", "GET")]));
    }
}
