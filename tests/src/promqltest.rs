//! A runner for Prometheus' `promqltest` scripts (the `.test` files of
//! `prometheus/promql/promqltest/testdata`, format in `shared/conformance/promql/FORMAT.md`),
//! driving a real `pharos serve` over HTTP the way a user would.
//!
//! Per file: every `load` block becomes one remote_write request to a fresh Pharos, every `clear`
//! starts another fresh Pharos, and every `eval` runs through `/api/v1/query` (instant) or
//! `/api/v1/query_range` (range) and is compared like promqltest compares: floats with a relative
//! tolerance of 1e-6 (NaN equals NaN), label sets exactly, order only for `expect ordered`.
//!
//! Annotations are checked as promqltest checks them: `expect no_warn`/`no_info` allow none,
//! each `expect warn`/`info` line (any, `msg:` exact, `regex:`) must match one of the answer's
//! `warnings`/`infos`, and once a kind has such a line every annotation of it must match one.
//! What is not run: the extra runs promqltest adds (each instant query again with `@` and as a
//! one-step range query).
//! Cases touching native histograms (`{{…}}` in loaded or expected points, a loaded histogram
//! series selected, or `load_with_nhcb`) are run too, and counted apart from the float cases
//! (histograms are loaded through remote_write like floats). A failure the server reports as
//! "not supported yet" never counts as an expected failure: it is a gap, not a correct answer.

use std::collections::HashSet;
use std::path::Path;

use pharos_model::histogram::Span;
use pharos_model::{FloatHistogram, Labels, Sample};

use crate::{Pharos, enc};

/// Relative tolerance of float comparison (promqltest's `defaultEpsilon`).
pub const EPSILON: f64 = 1e-6;

/// One point of a series description: a value, a staleness marker, or nothing (`_`).
#[derive(Clone, Debug, PartialEq)]
pub enum Point {
    /// A float value.
    Value(f64),
    /// A staleness marker.
    Stale,
    /// No point at this step.
    Omitted,
    /// A native histogram (`{{…}}`).
    Histogram(Box<FloatHistogram>),
}

/// A series and its points, as written after `load` or under an `eval`.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesDesc {
    /// Labels including `__name__` when written.
    pub labels: Labels,
    /// Points at 0, interval, 2·interval, …
    pub points: Vec<Point>,
}

/// What an `eval` expects.
#[derive(Clone, Debug, PartialEq)]
pub enum Expected {
    /// Series (instant vector: one point each; range: one point per step).
    Series(Vec<SeriesDesc>),
    /// A scalar.
    Scalar(f64),
    /// A string literal.
    String(String),
    /// An error, optionally with a message (`msg`: substring) or a regex.
    Fail {
        msg: Option<String>,
        regex: Option<String>,
    },
}

/// One `eval` command.
#[derive(Clone, Debug, PartialEq)]
pub struct Eval {
    /// Line number in the file (1-based).
    pub line: usize,
    /// The PromQL expression.
    pub query: String,
    /// Instant time, or range start (ms).
    pub start_ms: i64,
    /// Range end (ms); `None` for instant queries.
    pub end_ms: Option<i64>,
    /// Range step (ms).
    pub step_ms: i64,
    /// `expect ordered` / `eval_ordered`.
    pub ordered: bool,
    /// The expected outcome.
    pub expected: Expected,
    /// `expect warn …` / `expect no_warn`.
    pub warnings: AnnotationsExpected,
    /// `expect info …` / `expect no_info`.
    pub infos: AnnotationsExpected,
}

/// What an `eval` expects of one kind of annotation (warnings or infos).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnnotationsExpected {
    /// `expect no_warn` / `expect no_info`: none at all.
    pub none: bool,
    /// One entry per `expect warn`/`expect info` line: any annotation, or one matching the
    /// message exactly (`msg:`) or the regex (`regex:`).
    pub lines: Vec<AnnotationMatch>,
}

/// One `expect warn`/`expect info` line.
#[derive(Clone, Debug, PartialEq)]
pub enum AnnotationMatch {
    /// `expect warn` / `expect info`.
    Any,
    /// `… msg: <message>`: exactly this message (with its position).
    Msg(String),
    /// `… regex: <regex>`: a message the regex matches.
    Regex(String),
}

impl AnnotationMatch {
    fn matches(&self, got: &str) -> bool {
        match self {
            AnnotationMatch::Any => true,
            AnnotationMatch::Msg(m) => got == m,
            AnnotationMatch::Regex(r) => regex::Regex::new(r).is_ok_and(|re| re.is_match(got)),
        }
    }
}

impl AnnotationsExpected {
    fn parse_line(&mut self, arg: &str) {
        let arg = arg.trim();
        self.lines.push(if let Some(m) = arg.strip_prefix("msg:") {
            AnnotationMatch::Msg(m.trim().to_string())
        } else if let Some(r) = arg.strip_prefix("regex:") {
            AnnotationMatch::Regex(r.trim().to_string())
        } else {
            AnnotationMatch::Any
        });
    }

    /// Checks the answer's annotations of this kind (`what`: "warning" or "info") as promqltest
    /// does: with `no_*`, none; every `expect` line matches one of them; and once there is an
    /// `expect` line, each of them matches a line.
    fn check(&self, what: &str, got: &[String]) -> Result<(), String> {
        if self.none && !got.is_empty() {
            return Err(format!("expected no {what}, got {got:?}"));
        }
        for line in &self.lines {
            if !got.iter().any(|g| line.matches(g)) {
                return Err(format!("expected a {what} matching {line:?}, got {got:?}"));
            }
        }
        if !self.lines.is_empty()
            && let Some(extra) = got.iter().find(|g| !self.lines.iter().any(|l| l.matches(g)))
        {
            return Err(format!("unexpected {what} {extra:?}"));
        }
        Ok(())
    }
}

/// A command of a test script.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `load <interval>` (or `load_with_nhcb`): series to add.
    Load {
        interval_ms: i64,
        series: Vec<SeriesDesc>,
        nhcb: bool,
    },
    /// `clear`.
    Clear,
    /// `eval …`.
    Eval(Eval),
}

/// Parses a duration like `5m`, `1h30m`, `10s53ms`, `-1m` or plain seconds `10`, in ms.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if let Ok(secs) = body.parse::<f64>() {
        let ms = (secs * 1000.0).round() as i64;
        return Ok(if neg { -ms } else { ms });
    }
    let mut total: i64 = 0;
    let mut rest = body;
    if rest.is_empty() {
        return Err(format!("empty duration {s:?}"));
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("bad duration {s:?}"));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            other => return Err(format!("bad duration unit {other:?} in {s:?}")),
        };
        total += n * unit;
        rest = &rest[unit_len..];
    }
    Ok(if neg { -total } else { total })
}

/// Parses a float as Go's `strconv.ParseFloat` does for the values in test files.
pub fn parse_float(s: &str) -> Option<f64> {
    let (sign, body) = match s.as_bytes().first() {
        Some(b'-') => (-1.0, &s[1..]),
        Some(b'+') => (1.0, &s[1..]),
        _ => (1.0, s),
    };
    let v = match body.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => f64::INFINITY,
        "nan" => f64::NAN,
        b if b.starts_with("0x") => i64::from_str_radix(&b[2..], 16).ok()? as f64,
        _ => body.parse::<f64>().ok()?,
    };
    Some(sign * v)
}

/// Expands one item of the series notation: `1`, `1+2x3`, `5-1x2`, `1x3`, `_`, `_x3`, `stale`.
fn expand_item(item: &str, out: &mut Vec<Point>) -> Result<(), String> {
    if item == "stale" {
        out.push(Point::Stale);
        return Ok(());
    }
    let (head, times) = match item.rfind('x') {
        Some(i)
            if i > 0 && i + 1 < item.len() && item[i + 1..].chars().all(|c| c.is_ascii_digit()) =>
        {
            (
                &item[..i],
                Some(
                    item[i + 1..]
                        .parse::<u64>()
                        .map_err(|e| format!("{item}: {e}"))?,
                ),
            )
        }
        _ => (item, None),
    };
    if head == "_" {
        out.extend(std::iter::repeat_n(
            Point::Omitted,
            times.unwrap_or(1) as usize,
        ));
        return Ok(());
    }
    // Split `a+b` / `a-b` at the last sign that is not at the start or after an exponent `e`.
    let bytes = head.as_bytes();
    let split = (1..bytes.len())
        .rev()
        .find(|&i| (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
    let (a, b) = match split {
        Some(i) if times.is_some() => (&head[..i], Some(&head[i..])),
        _ => (head, None),
    };
    let mut a = parse_float(a).ok_or_else(|| format!("bad value {item:?}"))?;
    match (b, times) {
        (None, None) => out.push(Point::Value(a)),
        (None, Some(n)) => out.extend(std::iter::repeat_n(Point::Value(a), n as usize + 1)),
        (Some(b), Some(n)) => {
            let b = parse_float(b).ok_or_else(|| format!("bad increment {item:?}"))?;
            for _ in 0..=n {
                out.push(Point::Value(a));
                a += b; // accumulated, as promqltest does
            }
        }
        (Some(_), None) => return Err(format!("bad value {item:?}")),
    }
    Ok(())
}

/// Expands the points notation of a whole line (after the series).
pub fn parse_points(s: &str) -> Result<Vec<Point>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            let end = rest
                .find("}}")
                .ok_or_else(|| format!("unterminated histogram in {s:?}"))?;
            let first = parse_histogram(&rest[2..end])?;
            rest = &rest[end + 2..];
            // `{{…}}+{{…}}x3`: a histogram series growing (or shrinking) by the second.
            let mut step: Option<(bool, FloatHistogram)> = None;
            if let Some((add, r)) = rest.strip_prefix('+').map(|r| (true, r)).or_else(|| rest.strip_prefix('-').map(|r| (false, r)))
                && r.starts_with("{{")
            {
                let end = r
                    .find("}}")
                    .ok_or_else(|| format!("unterminated histogram in {s:?}"))?;
                step = Some((add, parse_histogram(&r[2..end])?));
                rest = &r[end + 2..];
            }
            // `{{…}}x3` repeats the histogram.
            let n = if let Some(r) = rest.strip_prefix('x') {
                let d = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                rest = r[d..].trim_start();
                r[..d].parse::<usize>().unwrap_or(0) + 1
            } else {
                1
            };
            rest = rest.trim_start();
            let mut h = first;
            for i in 0..n {
                if i > 0
                    && let Some((add, d)) = &step
                {
                    let mut next = if *add { h.add(d)? } else { h.sub(d)? };
                    // promqltest keeps the first histogram's hint on the ones it derives.
                    next.counter_reset_hint = h.counter_reset_hint;
                    h = next;
                }
                out.push(Point::Histogram(Box::new(h.clone())));
            }
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        expand_item(&rest[..end], &mut out)?;
        rest = rest[end..].trim_start();
    }
    Ok(out)
}

/// The inside of `{{…}}`: `key:value` pairs, lists in brackets (`buckets:[1 2 1]`): `schema`,
/// `sum`, `count`, `z_bucket` and `z_bucket_w` (zero count and threshold), `buckets` and
/// `offset` (positive buckets, one span), `n_buckets` and `n_offset` (negative),
/// `custom_values`, `counter_reset_hint` (`unknown`, `reset`, `not_reset`, `gauge`).
pub fn parse_histogram(s: &str) -> Result<FloatHistogram, String> {
    use pharos_model::histogram::CounterResetHint;
    let mut h = FloatHistogram::default();
    let (mut offset, mut n_offset) = (0i32, 0i32);
    let mut rest = s.trim();
    let bad = |what: &str| format!("bad histogram {s:?}: {what}");
    while !rest.is_empty() {
        let (key, after) = rest.split_once(':').ok_or_else(|| bad("expected key:value"))?;
        let after = after.trim_start();
        let (value, next) = if let Some(list) = after.strip_prefix('[') {
            let end = list.find(']').ok_or_else(|| bad("unterminated list"))?;
            (&list[..end], &list[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        rest = next.trim_start();
        let num = |v: &str| parse_float(v).ok_or_else(|| bad(&format!("{key}: {v:?} is not a number")));
        let list = |v: &str| v.split_whitespace().map(num).collect::<Result<Vec<f64>, String>>();
        match key.trim() {
            "schema" => h.schema = value.parse().map_err(|_| bad("schema"))?,
            "sum" => h.sum = num(value)?,
            "count" => h.count = num(value)?,
            "z_bucket" => h.zero_count = num(value)?,
            "z_bucket_w" => h.zero_threshold = num(value)?,
            "offset" => offset = value.parse().map_err(|_| bad("offset"))?,
            "n_offset" => n_offset = value.parse().map_err(|_| bad("n_offset"))?,
            "buckets" => h.positive_buckets = list(value)?,
            "n_buckets" => h.negative_buckets = list(value)?,
            "custom_values" => h.custom_values = list(value)?,
            "counter_reset_hint" => {
                h.counter_reset_hint = match value {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::CounterReset,
                    "not_reset" => CounterResetHint::NotCounterReset,
                    "gauge" => CounterResetHint::Gauge,
                    other => return Err(bad(&format!("counter_reset_hint {other:?}"))),
                }
            }
            other => return Err(bad(&format!("unknown key {other:?}"))),
        }
    }
    if !h.positive_buckets.is_empty() {
        h.positive_spans = vec![Span { offset, length: h.positive_buckets.len() as u32 }];
    }
    if !h.negative_buckets.is_empty() {
        h.negative_spans = vec![Span { offset: n_offset, length: h.negative_buckets.len() as u32 }];
    }
    Ok(h)
}

fn parse_quoted(s: &str) -> Result<(String, &str), String> {
    let quote = s.chars().next().ok_or("expected a quoted string")?;
    let mut out = String::new();
    let mut chars = s[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if quote != '`' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, c)) => out.push(c),
                None => break,
            },
            c if c == quote => return Ok((out, &s[1 + i + 1..])),
            c => out.push(c),
        }
    }
    Err(format!("unterminated string in {s:?}"))
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Parses `name{a="b",…} <points>` into labels and the rest of the line.
pub fn parse_series(line: &str) -> Result<(Labels, &str), String> {
    let line = line.trim();
    let name_end = line.find(|c: char| !is_ident(c)).unwrap_or(line.len());
    let mut pairs: Vec<(String, String)> = Vec::new();
    if name_end > 0 {
        pairs.push(("__name__".into(), line[..name_end].into()));
    }
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        rest = r.trim_start();
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let (name, r) = if rest.starts_with('"') {
                parse_quoted(rest)?
            } else {
                let e = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
                (rest[..e].to_string(), &rest[e..])
            };
            let r = r.trim_start();
            if let Some(r2) = r.strip_prefix('=') {
                let (value, r3) = parse_quoted(r2.trim_start())?;
                pairs.push((name, value));
                rest = r3.trim_start();
            } else {
                // A quoted metric name alone: `{"metric.name", a="b"}`.
                pairs.push(("__name__".into(), name));
                rest = r;
            }
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
    }
    if name_end == 0 && !line.starts_with('{') {
        return Err(format!("no series in {line:?}"));
    }
    Ok((Labels::from_pairs(pairs), rest))
}

fn parse_time(s: &str) -> Result<i64, String> {
    parse_duration_ms(s)
}

fn strip_kv<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    s.strip_prefix(key).map(str::trim_start)
}

/// Parses the `eval` header (everything after `eval`/`eval_fail`/…).
fn parse_eval_header(line_no: usize, rest: &str) -> Result<Eval, String> {
    let bad = || format!("line {line_no}: cannot parse eval {rest:?}");
    let mut words = rest.splitn(2, char::is_whitespace);
    let kind = words.next().ok_or_else(bad)?;
    let rest = words.next().ok_or_else(bad)?.trim_start();
    let take = |s: &str| -> (String, String) {
        let mut it = s.trim_start().splitn(2, char::is_whitespace);
        (
            it.next().unwrap_or("").to_string(),
            it.next().unwrap_or("").trim_start().to_string(),
        )
    };
    let blank = |query: String, start_ms, end_ms, step_ms| Eval {
        line: line_no,
        query,
        start_ms,
        end_ms,
        step_ms,
        ordered: false,
        warnings: Default::default(),
        infos: Default::default(),
        expected: Expected::Series(Vec::new()),
    };
    match kind {
        "instant" => {
            let r = strip_kv(rest, "at").ok_or_else(bad)?;
            let (t, query) = take(r);
            Ok(blank(query, parse_time(&t)?, None, 0))
        }
        "range" => {
            let r = strip_kv(rest, "from").ok_or_else(bad)?;
            let (from, r) = take(r);
            let r = strip_kv(&r, "to").ok_or_else(bad)?.to_string();
            let (to, r) = take(&r);
            let r = strip_kv(&r, "step").ok_or_else(bad)?.to_string();
            let (step, query) = take(&r);
            Ok(blank(
                query,
                parse_time(&from)?,
                Some(parse_time(&to)?),
                parse_duration_ms(&step)?,
            ))
        }
        _ => Err(bad()),
    }
}

/// Parses a whole test script.
pub fn parse(text: &str) -> Result<Vec<Command>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    let is_body = |l: &str| !l.trim().is_empty() && l.starts_with(char::is_whitespace);
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim();
        i += 1;
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (word, rest) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        // Body lines: indented, until a blank line or the next command.
        let mut body: Vec<(usize, &str)> = Vec::new();
        while i < lines.len()
            && (is_body(lines[i])
                || lines[i].trim_start().starts_with('#') && !lines[i].trim().is_empty())
        {
            if !lines[i].trim_start().starts_with('#') {
                body.push((i + 1, lines[i].trim()));
            }
            i += 1;
        }
        match word {
            "clear" => cmds.push(Command::Clear),
            "load" | "load_with_nhcb" => {
                let interval_ms = parse_duration_ms(rest.trim())?;
                let mut series = Vec::new();
                for (n, l) in body {
                    let (labels, pts) = parse_series(l).map_err(|e| format!("line {n}: {e}"))?;
                    let points = parse_points(pts).map_err(|e| format!("line {n}: {e}"))?;
                    series.push(SeriesDesc { labels, points });
                }
                cmds.push(Command::Load {
                    interval_ms,
                    series,
                    nhcb: word == "load_with_nhcb",
                });
            }
            "eval" | "eval_fail" | "eval_ordered" | "eval_warn" | "eval_info" => {
                let mut ev = parse_eval_header(i, rest)?;
                ev.line = i - body.len();
                let mut fail = word == "eval_fail";
                ev.ordered = word == "eval_ordered";
                if word == "eval_warn" {
                    ev.warnings.lines.push(AnnotationMatch::Any);
                }
                if word == "eval_info" {
                    ev.infos.lines.push(AnnotationMatch::Any);
                }
                let (mut msg, mut regex) = (None, None);
                let mut series = Vec::new();
                let mut scalar = None;
                let mut string = None;
                for (n, l) in body {
                    if let Some(e) = l
                        .strip_prefix("expect ")
                        .or_else(|| (l == "expect").then_some(""))
                    {
                        let e = e.trim();
                        let (kind, arg) = e.split_once(char::is_whitespace).unwrap_or((e, ""));
                        let kind = kind.trim_end_matches(':');
                        match kind {
                            "fail" => {
                                fail = true;
                                let arg = arg.trim();
                                if let Some(m) = arg.strip_prefix("msg:") {
                                    msg = Some(unquote(m.trim()));
                                } else if let Some(r) = arg.strip_prefix("regex:") {
                                    regex = Some(unquote(r.trim()));
                                }
                            }
                            "ordered" => ev.ordered = true,
                            "string" => {
                                string = Some(
                                    parse_quoted(arg.trim())
                                        .map(|(s, _)| s)
                                        .map_err(|e| format!("line {n}: {e}"))?,
                                )
                            }
                            "range" => {
                                return Err(format!(
                                    "line {n}: `expect range vector` is not supported by this runner"
                                ));
                            }
                            "warn" => ev.warnings.parse_line(arg),
                            "info" => ev.infos.parse_line(arg),
                            "no_warn" => ev.warnings.none = true,
                            "no_info" => ev.infos.none = true,
                            _ => return Err(format!("line {n}: unknown expectation {kind:?}")),
                        }
                    } else if let Some(m) = l.strip_prefix("expected_fail_message") {
                        msg = Some(m.trim().to_string());
                    } else if let Some(r) = l.strip_prefix("expected_fail_regexp") {
                        regex = Some(r.trim().to_string());
                    } else if let Some(v) = parse_float(l) {
                        scalar = Some(v);
                    } else {
                        let (labels, pts) =
                            parse_series(l).map_err(|e| format!("line {n}: {e}"))?;
                        let points = parse_points(pts).map_err(|e| format!("line {n}: {e}"))?;
                        series.push(SeriesDesc { labels, points });
                    }
                }
                ev.expected = if fail {
                    Expected::Fail { msg, regex }
                } else if let Some(s) = string {
                    Expected::String(s)
                } else if let Some(v) = scalar {
                    Expected::Scalar(v)
                } else {
                    Expected::Series(series)
                };
                cmds.push(Command::Eval(ev));
            }
            other => return Err(format!("line {}: unknown command {other:?}", i)),
        }
    }
    Ok(cmds)
}

fn unquote(s: &str) -> String {
    if (s.starts_with('"') || s.starts_with('`')) && s.len() >= 2
        && let Ok((v, _)) = parse_quoted(s) {
            return v;
        }
    s.to_string()
}

pub use pharos_model::float::almost_equal;

/// The outcome of one case.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Line of the `eval`.
    pub line: usize,
    /// The query.
    pub query: String,
    /// What differed.
    pub diff: String,
}

/// Results of one file.
#[derive(Clone, Debug, Default)]
pub struct FileReport {
    /// File name.
    pub name: String,
    /// Cases that matched.
    pub passed: usize,
    /// Float cases that did not match.
    pub failures: Vec<Failure>,
    /// Cases involving native histograms (run, not counted in `passed`/`failures`).
    pub histogram_cases: usize,
    /// Of those, the cases that matched.
    pub histograms_passed: usize,
    /// Of those, the cases that did not match.
    pub histogram_failures: Vec<Failure>,
    /// Cases run with annotation expectations (`expect warn`/`info`/`no_warn`/`no_info`).
    pub annotated: usize,
}

impl FileReport {
    /// Float cases run (passed + failed).
    pub fn total(&self) -> usize {
        self.passed + self.failures.len()
    }

    /// Passed / total float cases (1.0 when none ran).
    pub fn pass_rate(&self) -> f64 {
        if self.total() == 0 {
            1.0
        } else {
            self.passed as f64 / self.total() as f64
        }
    }

    /// `name: passed/total (pct%), native histograms: P/N passed, M with annotations checked`.
    pub fn summary_line(&self) -> String {
        format!(
            "{}: {}/{} passed ({:.1}%), native histogram cases: {}/{} passed, {} with annotations checked",
            self.name,
            self.passed,
            self.total(),
            100.0 * self.pass_rate(),
            self.histograms_passed,
            self.histogram_cases,
            self.annotated
        )
    }
}

/// A Pharos for one `clear`-section of a file.
struct Instance {
    pharos: Pharos,
    _data: tempfile::TempDir,
}

async fn fresh(log_dir: &Path) -> Instance {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().to_string_lossy().to_string();
    let pharos = Pharos::serve(log_dir, &["--data-dir", &dir]).await;
    Instance {
        pharos,
        _data: data,
    }
}

async fn load(
    p: &Pharos,
    client: &reqwest::Client,
    interval_ms: i64,
    series: &[SeriesDesc],
) -> Result<(), String> {
    use pharos_model::remote_write::{Histogram, TimeSeries, WriteRequest, proto_labels};
    use prost::Message;
    let stale = f64::from_bits(pharos_model::otlp::STALE_NAN_BITS);
    let mut samples = Vec::new();
    let mut histograms = Vec::new();
    for s in series {
        let mut hs = Vec::new();
        for (i, pt) in s.points.iter().enumerate() {
            let t = i as i64 * interval_ms;
            match pt {
                Point::Value(v) => samples.push(Sample::new(s.labels.clone(), t, *v)),
                Point::Stale => samples.push(Sample::new(s.labels.clone(), t, stale)),
                Point::Histogram(h) => hs.push(Histogram::float(t, h)),
                Point::Omitted => {}
            }
        }
        if !hs.is_empty() {
            histograms.push(TimeSeries { labels: proto_labels(&s.labels), samples: Vec::new(), histograms: hs });
        }
    }
    let histogram_body = (!histograms.is_empty())
        .then(|| snap::raw::Encoder::new().compress_vec(&WriteRequest { timeseries: histograms, ..Default::default() }.encode_to_vec()).unwrap_or_default());
    let bodies = samples.chunks(200_000).map(pharos_model::remote_write::encode).chain(histogram_body);
    for body in bodies {
        let r = client
            .post(format!("http://{}/api/v1/write", p.addr))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("remote_write: {e}"))?;
        if !r.status().is_success() {
            let status = r.status();
            return Err(format!(
                "remote_write answered {status}: {}",
                r.text().await.unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// `load_with_nhcb`: besides the classic histograms' `_bucket`, `_count` and `_sum` series,
/// the native histograms with custom buckets they convert to, as promqltest converts them:
/// per base name and labels (without `le`) and per point, the cumulative bucket counts in
/// order of `le` (a repeated bound ignored), the count from `_count` or else the highest
/// bucket, a `+Inf` bucket added when missing, the sum from `_sum` (0 without one). A point
/// whose counts do not convert (not cumulative, negative, the count not the `+Inf` bucket's) is
/// left out.
pub fn custom_bucket_histograms(series: &[SeriesDesc]) -> Vec<SeriesDesc> {
    #[derive(Default)]
    struct Parts {
        buckets: Vec<(f64, f64)>,
        count: Option<f64>,
        sum: f64,
    }
    let mut by_base: std::collections::BTreeMap<Labels, std::collections::BTreeMap<usize, Parts>> = Default::default();
    for s in series {
        let name = s.labels.metric_name().unwrap_or("");
        let (base, le) = if let Some(b) = name.strip_suffix("_bucket") {
            match s.labels.get("le").and_then(|v| v.parse::<f64>().ok()).filter(|le| !le.is_nan()) {
                Some(le) => (b, Some(le)),
                None => continue,
            }
        } else if let Some(b) = name.strip_suffix("_sum").or(name.strip_suffix("_count")) {
            (b, None)
        } else {
            continue;
        };
        let labels = s.labels.with("__name__", base).filter(|k| k != "le");
        let per_point = by_base.entry(labels).or_default();
        for (i, p) in s.points.iter().enumerate() {
            let Point::Value(v) = p else { continue };
            let parts = per_point.entry(i).or_default();
            match le {
                Some(le) => parts.buckets.push((le, *v)),
                None if name.ends_with("_sum") => parts.sum = *v,
                None => parts.count = Some(*v),
            }
        }
    }
    let mut out = Vec::new();
    for (labels, per_point) in by_base {
        let len = per_point.keys().max().map_or(0, |i| i + 1);
        let mut points = vec![Point::Omitted; len];
        for (i, mut parts) in per_point {
            // Sorted by bound, the first of a repeated bound kept.
            parts.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            parts.buckets.dedup_by(|b, a| a.0 == b.0);
            if parts.buckets.windows(2).any(|w| w[1].1 < w[0].1) || parts.buckets.iter().any(|b| b.1 < 0.0) {
                continue;
            }
            let Some(count) = parts.count.or(parts.buckets.last().map(|b| b.1)) else { continue };
            if parts.buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
                parts.buckets.push((f64::INFINITY, count));
            }
            if parts.buckets.last().map(|b| b.1) != Some(count) {
                continue;
            }
            let mut previous = 0.0;
            let h = FloatHistogram {
                schema: pharos_model::histogram::CUSTOM_BUCKETS_SCHEMA,
                count,
                sum: parts.sum,
                positive_spans: vec![pharos_model::histogram::Span { offset: 0, length: parts.buckets.len() as u32 }],
                positive_buckets: parts
                    .buckets
                    .iter()
                    .map(|b| {
                        let delta = b.1 - previous;
                        previous = b.1;
                        delta
                    })
                    .collect(),
                custom_values: parts.buckets.iter().map(|b| b.0).filter(|le| le.is_finite()).collect(),
                ..Default::default()
            };
            points[i] = Point::Histogram(Box::new(h.compact()));
        }
        out.push(SeriesDesc { labels, points });
    }
    out
}

fn fmt_ms(ms: i64) -> String {
    let secs = ms as f64 / 1000.0;
    format!("{secs}")
}

/// True when `query` mentions one of `names` as a whole word.
fn mentions(query: &str, names: &HashSet<String>) -> bool {
    names.iter().any(|n| {
        query.match_indices(n.as_str()).any(|(i, _)| {
            let before = query[..i].chars().next_back();
            let after = query[i + n.len()..].chars().next();
            !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
        })
    })
}

/// Runs one eval against `p`; `Ok(())` when it matches.
async fn run_eval(p: &Pharos, client: &reqwest::Client, ev: &Eval) -> Result<(), String> {
    let url = match ev.end_ms {
        None => format!(
            "http://{}/api/v1/query?query={}&time={}",
            p.addr,
            enc(&ev.query),
            fmt_ms(ev.start_ms)
        ),
        Some(end) => format!(
            "http://{}/api/v1/query_range?query={}&start={}&end={}&step={}",
            p.addr,
            enc(&ev.query),
            fmt_ms(ev.start_ms),
            fmt_ms(end),
            fmt_ms(ev.step_ms)
        ),
    };
    let r = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| format!("HTTP body: {e}"))?;
    let body: serde_json::Value =
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.clone()));
    let error = body["error"].as_str().unwrap_or(&text).to_string();
    if let Expected::Fail { msg, regex } = &ev.expected {
        if status == 200 {
            return Err("expected an error, got a result".into());
        }
        if error.contains("not supported yet") {
            return Err(format!("expected an error, got {status} {error}"));
        }
        if !(400..500).contains(&status) {
            return Err(format!("expected a 4xx error, got {status} {error}"));
        }
        if let Some(m) = msg
            && !error.contains(m.as_str())
        {
            return Err(format!("error {error:?} lacks {m:?}"));
        }
        if let Some(re) = regex
            && !regex::Regex::new(re)
                .map(|re| re.is_match(&error))
                .unwrap_or(false)
        {
            return Err(format!("error {error:?} does not match /{re}/"));
        }
        return Ok(());
    }
    if status != 200 {
        return Err(format!("{status} {error}"));
    }
    let data = &body["data"];
    let result = &data["result"];
    let strings = |key: &str| -> Vec<String> {
        body[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
    };
    ev.warnings.check("warning", &strings("warnings"))?;
    ev.infos.check("info", &strings("infos"))?;
    match &ev.expected {
        Expected::String(s) => match result[1].as_str() {
            Some(got) if data["resultType"] == "string" && got == s => Ok(()),
            _ => Err(format!("expected string {s:?}, got {result}")),
        },
        Expected::Scalar(v) => {
            if data["resultType"] != "scalar" {
                return Err(format!(
                    "expected scalar {v}, got {} {}",
                    data["resultType"],
                    short(result)
                ));
            }
            let got = result[1].as_str().and_then(parse_float).unwrap_or(f64::NAN);
            if almost_equal(*v, got, EPSILON) {
                Ok(())
            } else {
                Err(format!("expected scalar {v}, got {got}"))
            }
        }
        Expected::Series(exp) => compare_series(ev, exp, data),
        Expected::Fail { .. } => Ok(()),
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        format!("{}…", &s[..300])
    } else {
        s
    }
}

fn labels_of(metric: &serde_json::Value) -> Labels {
    Labels::from_pairs(
        metric
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())),
    )
}

/// A point of an answer or of an expectation: a float or a native histogram.
#[derive(Clone, Debug)]
enum Pt {
    F(f64),
    /// As the API writes it: `{"count", "sum", "buckets": [[rule, lower, upper, count]…]}`.
    H(serde_json::Value),
    /// An expected histogram.
    Want(Box<FloatHistogram>),
}

fn json_points(pairs: &serde_json::Value, histogram: bool) -> Vec<(i64, Pt)> {
    pairs
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let t = (p[0].as_f64().unwrap_or(f64::NAN) * 1000.0).round() as i64;
            let v = if histogram { Pt::H(p[1].clone()) } else { Pt::F(p[1].as_str().and_then(parse_float).unwrap_or(f64::NAN)) };
            (t, v)
        })
        .collect()
}

/// Whether an answered point is the expected one: floats within [`EPSILON`], histograms by
/// count, sum and every non-empty bucket (boundary rule, bounds and count). The counter reset
/// hint promqltest may check is not in the API's answer.
fn same_point(got: &Pt, want: &Pt) -> bool {
    match (got, want) {
        (Pt::F(g), Pt::F(w)) => almost_equal(*g, *w, EPSILON),
        (Pt::H(g), Pt::Want(w)) => {
            let num = |v: &serde_json::Value| v.as_str().and_then(parse_float).unwrap_or(f64::NAN);
            let buckets: Vec<&serde_json::Value> = g["buckets"].as_array().map(|b| b.iter().collect()).unwrap_or_default();
            let wb = w.buckets();
            almost_equal(num(&g["count"]), w.count, EPSILON)
                && almost_equal(num(&g["sum"]), w.sum, EPSILON)
                && buckets.len() == wb.len()
                && buckets.iter().zip(&wb).all(|(g, w)| {
                    g[0].as_u64() == Some(w.boundary_rule() as u64)
                        && almost_equal(num(&g[1]), w.lower, EPSILON)
                        && almost_equal(num(&g[2]), w.upper, EPSILON)
                        && almost_equal(num(&g[3]), w.count, EPSILON)
                })
        }
        _ => false,
    }
}

fn fmt_point(p: &Pt) -> String {
    match p {
        Pt::F(v) => v.to_string(),
        Pt::H(h) => h.to_string(),
        Pt::Want(h) => {
            let b: Vec<String> = h.buckets().iter().map(|b| format!("[{},{},{},{}]", b.boundary_rule(), b.lower, b.upper, b.count)).collect();
            format!("{{count:{} sum:{} buckets:{}}}", h.count, h.sum, b.join(""))
        }
    }
}

fn compare_series(ev: &Eval, exp: &[SeriesDesc], data: &serde_json::Value) -> Result<(), String> {
    let result = data["result"].as_array().cloned().unwrap_or_default();
    let kind = data["resultType"].as_str().unwrap_or("");
    let want_kind = if ev.end_ms.is_some() {
        "matrix"
    } else {
        "vector"
    };
    if kind != want_kind {
        return Err(format!(
            "expected a {want_kind}, got {kind} {}",
            short(&data["result"])
        ));
    }
    let got: Vec<(Labels, Vec<(i64, Pt)>)> = result
        .iter()
        .map(|s| {
            let pts = if ev.end_ms.is_some() {
                let mut pts = json_points(&s["values"], false);
                pts.extend(json_points(&s["histograms"], true));
                pts.sort_by_key(|(t, _)| *t);
                pts
            } else if s.get("histogram").is_some() {
                json_points(&serde_json::json!([s["histogram"]]), true)
            } else {
                json_points(&serde_json::json!([s["value"]]), false)
            };
            (labels_of(&s["metric"]), pts)
        })
        .collect();
    // Expected points: instant = the one value; range = one per step, `_` = none.
    let want: Vec<(Labels, Vec<(i64, Pt)>)> = exp
        .iter()
        .map(|s| {
            let pts = s
                .points
                .iter()
                .enumerate()
                .filter_map(|(i, p)| match p {
                    Point::Value(v) => Some((ev.start_ms + i as i64 * ev.step_ms, Pt::F(*v))),
                    Point::Histogram(h) => Some((ev.start_ms + i as i64 * ev.step_ms, Pt::Want(h.clone()))),
                    _ => None,
                })
                .collect();
            (s.labels.clone(), pts)
        })
        .collect();
    if got.len() != want.len() {
        let g: Vec<String> = got.iter().map(|(l, _)| l.to_string()).collect();
        let w: Vec<String> = want.iter().map(|(l, _)| l.to_string()).collect();
        return Err(format!(
            "expected {} series {w:?}, got {} {g:?}",
            want.len(),
            got.len()
        ));
    }
    for (pos, (labels, points)) in want.iter().enumerate() {
        let Some(gi) = got.iter().position(|(l, _)| l == labels) else {
            let g: Vec<String> = got.iter().map(|(l, _)| l.to_string()).collect();
            return Err(format!("missing series {labels}; got {g:?}"));
        };
        if ev.ordered && gi != pos {
            return Err(format!("series {labels} at position {gi}, expected {pos}"));
        }
        let gp = &got[gi].1;
        let same = gp.len() == points.len()
            && gp.iter().zip(points).all(|(g, w)| (ev.end_ms.is_none() || g.0 == w.0) && same_point(&g.1, &w.1));
        if !same {
            return Err(format!(
                "{labels}: expected {}, got {}",
                fmt_points(points, ev),
                fmt_points(gp, ev)
            ));
        }
    }
    Ok(())
}

fn fmt_points(p: &[(i64, Pt)], ev: &Eval) -> String {
    if ev.end_ms.is_none() {
        return p
            .iter()
            .map(|(_, v)| fmt_point(v))
            .collect::<Vec<_>>()
            .join(" ");
    }
    p.iter()
        .map(|(t, v)| format!("{}@{}", fmt_point(v), fmt_ms(*t)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when a case involves native histograms and is skipped: histograms expected, a metric
/// name of a loaded histogram in the query, or a selector of the query matching a loaded
/// histogram series by any of its labels (`{job="api"}` selects histograms too).
fn is_histogram_case(ev: &Eval, histogram_names: &HashSet<String>, histogram_series: &[Labels]) -> bool {
    let in_expected = matches!(&ev.expected, Expected::Series(s) if s.iter().any(|d| d.points.iter().any(|p| matches!(p, Point::Histogram(_)))));
    in_expected
        || mentions(&ev.query, histogram_names)
        || name_regex_matches(&ev.query, histogram_names)
        || selects_any(&ev.query, histogram_series)
}

/// True when a vector selector of `query` matches one of `series` (false when the query does
/// not parse: such a case runs and is expected to fail).
fn selects_any(query: &str, series: &[Labels]) -> bool {
    use promql_parser::parser::{Expr, VectorSelector};
    fn selectors<'e>(e: &'e Expr, out: &mut Vec<&'e VectorSelector>) {
        match e {
            Expr::VectorSelector(vs) => out.push(vs),
            Expr::MatrixSelector(ms) => out.push(&ms.vs),
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    selectors(p, out);
                }
                selectors(&a.expr, out);
            }
            Expr::Unary(u) => selectors(&u.expr, out),
            Expr::Binary(b) => {
                selectors(&b.lhs, out);
                selectors(&b.rhs, out);
            }
            Expr::Paren(p) => selectors(&p.expr, out),
            Expr::Subquery(s) => selectors(&s.expr, out),
            Expr::Call(c) => c.args.args.iter().for_each(|a| selectors(a, out)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
    if series.is_empty() {
        return false;
    }
    let Ok(expr) = promql_parser::parser::parse(query) else {
        return false;
    };
    let mut found = Vec::new();
    selectors(&expr, &mut found);
    let all_match = |ms: &[promql_parser::label::Matcher], l: &Labels| ms.iter().all(|m| m.is_match(l.get(&m.name).unwrap_or("")));
    found.iter().any(|vs| {
        series.iter().any(|l| {
            vs.name.as_deref().is_none_or(|n| l.metric_name() == Some(n))
                && all_match(&vs.matchers.matchers, l)
                && (vs.matchers.or_matchers.is_empty() || vs.matchers.or_matchers.iter().any(|g| all_match(g, l)))
        })
    })
}

/// True when a `__name__=~"re"` matcher of `query` matches one of `names`.
fn name_regex_matches(query: &str, names: &HashSet<String>) -> bool {
    let compact: String = query.chars().filter(|c| !c.is_whitespace()).collect();
    compact.match_indices("__name__=~").any(|(i, m)| {
        let rest = &compact[i + m.len()..];
        let Ok((re, _)) = parse_quoted(rest) else {
            return false;
        };
        let Ok(re) = regex::Regex::new(&format!("^(?:{re})$")) else {
            return false;
        };
        names.iter().any(|n| re.is_match(n))
    })
}

/// Runs a test script's text against fresh Pharos instances; Pharos logs go to `log_dir`.
pub async fn run_script(name: &str, text: &str, log_dir: &Path) -> Result<FileReport, String> {
    let cmds = parse(text).map_err(|e| format!("{name}: {e}"))?;
    let client = reqwest::Client::new();
    let mut report = FileReport {
        name: name.to_string(),
        ..Default::default()
    };
    let mut inst: Option<Instance> = None;
    let mut histogram_names: HashSet<String> = HashSet::new();
    let mut histogram_series: Vec<Labels> = Vec::new();
    for cmd in &cmds {
        match cmd {
            Command::Clear => {
                inst = None;
                histogram_names.clear();
                histogram_series.clear();
            }
            Command::Load {
                interval_ms,
                series,
                nhcb,
            } => {
                for s in series {
                    let name = s.labels.metric_name().unwrap_or("").to_string();
                    if s.points.iter().any(|p| matches!(p, Point::Histogram(_))) {
                        histogram_names.insert(name.clone());
                        histogram_series.push(s.labels.clone());
                    }
                    if *nhcb && let Some(base) = name.strip_suffix("_bucket") {
                        histogram_names.insert(base.to_string());
                    }
                }
                if inst.is_none() {
                    inst = Some(fresh(log_dir).await);
                }
                let p = &inst.as_ref().map(|i| &i.pharos).ok_or("no instance")?;
                let mut series = series.clone();
                if *nhcb {
                    series.extend(custom_bucket_histograms(&series));
                }
                load(p, &client, *interval_ms, &series)
                    .await
                    .map_err(|e| format!("{name}: {e}"))?;
            }
            Command::Eval(ev) => {
                if inst.is_none() {
                    inst = Some(fresh(log_dir).await);
                }
                let p = &inst.as_ref().map(|i| &i.pharos).ok_or("no instance")?;
                let result = run_eval(p, &client, ev).await;
                let failure = |diff| Failure { line: ev.line, query: ev.query.clone(), diff };
                // Native-histogram cases are counted apart from the float cases.
                if is_histogram_case(ev, &histogram_names, &histogram_series) {
                    report.histogram_cases += 1;
                    match result {
                        Ok(()) => report.histograms_passed += 1,
                        Err(diff) => report.histogram_failures.push(failure(diff)),
                    }
                    continue;
                }
                if ev.warnings != AnnotationsExpected::default() || ev.infos != AnnotationsExpected::default() {
                    report.annotated += 1;
                }
                match result {
                    Ok(()) => report.passed += 1,
                    Err(diff) => report.failures.push(failure(diff)),
                }
            }
        }
    }
    Ok(report)
}

/// Runs every `*.test` file of `dir` (sorted by name).
pub async fn run_dir(dir: &Path, log_dir: &Path) -> Result<Vec<FileReport>, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).map_err(|e| format!("reading {}: {e}", f.display()))?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        out.push(run_script(&name, &text, log_dir).await?);
    }
    Ok(out)
}

/// The summary printed by the test and the binary: per-file lines, then every failure.
pub fn render(reports: &[FileReport]) -> String {
    let mut s = String::from("PromQL conformance (Prometheus promqltest files)\n");
    for r in reports {
        s.push_str(&format!("  {}\n", r.summary_line()));
    }
    let (p, t, k, hp, a) = reports.iter().fold((0, 0, 0, 0, 0), |(p, t, k, hp, a), r| {
        (p + r.passed, t + r.total(), k + r.histogram_cases, hp + r.histograms_passed, a + r.annotated)
    });
    s.push_str(&format!(
        "  total: {p}/{t} passed ({:.1}%), native histogram cases: {hp}/{k} passed, {a} with annotations checked\n",
        100.0 * p as f64 / t.max(1) as f64
    ));
    for r in reports {
        for f in &r.failures {
            s.push_str(&format!(
                "FAIL {}:{} {}\n     {}\n",
                r.name, f.line, f.query, f.diff
            ));
        }
    }
    for r in reports {
        for f in &r.histogram_failures {
            s.push_str(&format!("FAIL (native histograms) {}:{} {}\n     {}\n", r.name, f.line, f.query, f.diff));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_notation_expands_like_promqltest() {
        let v = |x: f64| Point::Value(x);
        assert_eq!(
            parse_points("1+2x3").unwrap(),
            vec![v(1.0), v(3.0), v(5.0), v(7.0)]
        );
        assert_eq!(
            parse_points("5-1x2 _ stale").unwrap(),
            vec![v(5.0), v(4.0), v(3.0), Point::Omitted, Point::Stale]
        );
        assert_eq!(
            parse_points("_x2 1x1").unwrap(),
            vec![Point::Omitted, Point::Omitted, v(1.0), v(1.0)]
        );
        assert_eq!(
            parse_points("-2+1x1 1e3 Inf").unwrap(),
            vec![v(-2.0), v(-1.0), v(1000.0), v(f64::INFINITY)]
        );
        let h = |schema: i32, sum: f64| Point::Histogram(Box::new(FloatHistogram { schema, sum, ..Default::default() }));
        assert_eq!(parse_points("{{schema:1 sum:3}} 2").unwrap(), vec![h(1, 3.0), v(2.0)]);
        // A growing histogram series: each point the one before plus the increment.
        let grown = parse_points("{{sum:1 count:2 buckets:[1 1]}}+{{sum:2 count:1 offset:1 buckets:[1]}}x2").unwrap();
        let want = |sum: f64, count: f64, b: [f64; 2]| {
            Point::Histogram(Box::new(FloatHistogram {
                sum,
                count,
                positive_spans: vec![Span { offset: 0, length: 2 }],
                positive_buckets: b.to_vec(),
                ..Default::default()
            }))
        };
        assert_eq!(grown, vec![want(1.0, 2.0, [1.0, 1.0]), want(3.0, 3.0, [1.0, 2.0]), want(5.0, 4.0, [1.0, 3.0])]);
        let full = parse_histogram("schema:-53 sum:3 count:3 z_bucket:1 z_bucket_w:0.5 custom_values:[5 10] buckets:[3] n_offset:2 n_buckets:[1 2] counter_reset_hint:gauge").unwrap();
        assert_eq!(
            full,
            FloatHistogram {
                schema: -53,
                sum: 3.0,
                count: 3.0,
                zero_count: 1.0,
                zero_threshold: 0.5,
                custom_values: vec![5.0, 10.0],
                positive_spans: vec![Span { offset: 0, length: 1 }],
                positive_buckets: vec![3.0],
                negative_spans: vec![Span { offset: 2, length: 2 }],
                negative_buckets: vec![1.0, 2.0],
                counter_reset_hint: pharos_model::histogram::CounterResetHint::Gauge,
            }
        );
        assert!(parse_histogram("sum:x").is_err() && parse_histogram("bogus:1").is_err() && parse_histogram("buckets:[1").is_err());
    }

    #[test]
    fn series_descriptions_and_durations_parse() {
        let (l, rest) = parse_series(r#"m{a="x y", b="q\"z"} 1 2"#).unwrap();
        assert_eq!(l.get("a"), Some("x y"));
        assert_eq!(l.get("b"), Some("q\"z"));
        assert_eq!(l.metric_name(), Some("m"));
        assert_eq!(rest.trim(), "1 2");
        assert_eq!(parse_duration_ms("10s53ms").unwrap(), 10_053);
        assert_eq!(parse_duration_ms("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("-1m").unwrap(), -60_000);
    }

    #[test]
    fn evals_parse_with_expectations() {
        let cmds = parse("load 5m\n  m 1 2\n\neval instant at 5m m\n  expect ordered\n  m 2\n\neval range from 0 to 10m step 5m m\n  m 1 2 _\n\neval_fail instant at 0 x\n\neval instant at 0 1\n  1\n").unwrap();
        assert_eq!(cmds.len(), 5);
        let Command::Eval(e) = &cmds[1] else { panic!() };
        assert!(e.ordered);
        assert_eq!(e.start_ms, 300_000);
        let Command::Eval(e) = &cmds[2] else { panic!() };
        assert_eq!((e.end_ms, e.step_ms), (Some(600_000), 300_000));
        assert!(
            matches!(&cmds[3], Command::Eval(e) if matches!(e.expected, Expected::Fail { .. }))
        );
        assert!(matches!(&cmds[4], Command::Eval(e) if e.expected == Expected::Scalar(1.0)));
    }

    #[test]
    fn annotation_expectations_parse_and_check_like_promqltest() {
        let cmds = parse(
            "load 5m\n  m 1\n\neval instant at 0 m\n  expect no_info\n  expect warn\n  expect warn msg: PromQL warning: x (1:1)\n  expect warn regex: got \\d+ \\(\n  m 1\n\neval_info instant at 0 m\n  m 1\n",
        )
        .unwrap();
        let Command::Eval(e) = &cmds[1] else { panic!() };
        assert!(e.infos.none && e.infos.lines.is_empty());
        assert!(!e.warnings.none);
        assert_eq!(
            e.warnings.lines,
            vec![
                AnnotationMatch::Any,
                AnnotationMatch::Msg("PromQL warning: x (1:1)".into()),
                AnnotationMatch::Regex("got \\d+ \\(".into())
            ]
        );
        let Command::Eval(e) = &cmds[2] else { panic!() };
        assert_eq!(e.infos.lines, vec![AnnotationMatch::Any]);
        assert!(parse("eval instant at 0 m\n  expect warning\n").is_err(), "an unknown expectation is an error");

        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let none = AnnotationsExpected { none: true, lines: vec![] };
        assert!(none.check("info", &[]).is_ok());
        assert!(none.check("info", &s(&["PromQL info: a (1:1)"])).is_err());
        let unchecked = AnnotationsExpected::default();
        assert!(unchecked.check("info", &s(&["anything"])).is_ok());
        let any = AnnotationsExpected { none: false, lines: vec![AnnotationMatch::Any] };
        assert!(any.check("warning", &[]).is_err(), "expect warn needs one");
        assert!(any.check("warning", &s(&["a", "b"])).is_ok());
        let msg = AnnotationsExpected { none: false, lines: vec![AnnotationMatch::Msg("a (1:2)".into())] };
        assert!(msg.check("warning", &s(&["a (1:2)"])).is_ok());
        assert!(msg.check("warning", &s(&["a (1:3)"])).is_err(), "a message matches exactly");
        assert!(msg.check("warning", &s(&["a (1:2)", "b (1:1)"])).is_err(), "every warning needs a line");
        let re = AnnotationsExpected { none: false, lines: vec![AnnotationMatch::Regex(r"got NaN \([0-9]+:[0-9]+\)".into())] };
        assert!(re.check("warning", &s(&["PromQL warning: q, got NaN (1:20)"])).is_ok());
        assert!(re.check("warning", &s(&["PromQL warning: q, got 2 (1:20)"])).is_err());
    }

    #[test]
    fn floats_compare_relatively_and_nan_equals_nan() {
        assert!(almost_equal(f64::NAN, f64::NAN, EPSILON));
        assert!(almost_equal(1.0, 1.0 + 1e-9, EPSILON));
        assert!(!almost_equal(1.0, 1.001, EPSILON));
        assert!(!almost_equal(0.0, 1e-300, EPSILON));
    }
}
