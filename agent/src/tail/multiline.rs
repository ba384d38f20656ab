//! Multiline merging (a stack trace becomes one record with the log line it belongs to), the
//! per-record limits, and severity detection from the common line formats.
//!
//! A record starts at a line matching the start rule; every other line is appended to the
//! record before it (same file, same stream), joined with `\n`. The rules:
//!
//! - `spark`: log4j's default Spark layout `yy/MM/dd HH:mm:ss LEVEL …`, or one line of Spark 4's
//!   JSON layout (`{"ts":…`; its stack traces are inside the JSON, so every JSON line is a record).
//! - `trino`: an ISO timestamp with milliseconds followed by a tab (`2024-05-01T12:00:00.123Z\tINFO\t…`).
//! - `python`: Python's `logging` prints `logger.exception(...)` as the log line followed by
//!   `Traceback (most recent call last):`, indented frames, and the unindented `XError: msg`.
//!   A record starts at any line that is not indented, not empty, and not one of the traceback
//!   headers (`Traceback …`, `During handling of the above exception…`, `The above exception
//!   was the direct cause…`); inside a traceback (a record holding a `Traceback (most recent
//!   call last):` line), an unindented line right after an indented frame line is the exception
//!   line and is appended too. So the log line, its traceback and the exception line form one
//!   record; the next unindented line starts a new one.
//! - a custom `start_pattern` regex overrides the preset.

use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Multiline merging of container log lines (`logs.multiline`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// Built-in start rule: `spark`, `trino`, `python` or `none` (every line is a record).
    /// Default: `none`.
    #[serde(default)]
    pub preset: MultilinePreset,
    /// A regex matching the first line of a record; overrides `preset`. Default: absent.
    #[serde(default)]
    pub start_pattern: Option<String>,
    /// A pending record is emitted after this many milliseconds without a new line in its
    /// stream. Default: `1000`.
    #[serde(default = "default_flush_timeout_ms")]
    pub flush_timeout_ms: u64,
    /// Most lines merged into one record; the record is emitted when it reaches them.
    /// Default: `500`.
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
}

impl Default for MultilineConfig {
    fn default() -> Self {
        MultilineConfig {
            preset: MultilinePreset::None,
            start_pattern: None,
            flush_timeout_ms: default_flush_timeout_ms(),
            max_lines: default_max_lines(),
        }
    }
}

fn default_flush_timeout_ms() -> u64 {
    1000
}

fn default_max_lines() -> usize {
    500
}

/// The built-in start rules.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MultilinePreset {
    /// No merging: every line is a record.
    #[default]
    None,
    /// Spark log4j (`yy/MM/dd HH:mm:ss `) and Spark 4 JSON layout lines.
    Spark,
    /// Trino server log: ISO timestamp with milliseconds, then a tab.
    Trino,
    /// Python `logging` with tracebacks.
    Python,
}

/// Regex of the first line of a Spark log4j record or a Spark 4 JSON-layout line.
pub const SPARK_START: &str = r#"^(\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} |\{"ts":)"#;
/// Regex of the first line of a Trino server log record.
pub const TRINO_START: &str = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z?\t";

const TRACEBACK: &str = "Traceback (most recent call last):";
const PYTHON_CONTINUATIONS: [&str; 3] =
    [TRACEBACK, "During handling of the above exception", "The above exception was the direct cause"];

#[derive(Clone, Debug)]
enum StartRule {
    /// Every line starts a record.
    EveryLine,
    Regex(Regex),
    Python,
}

/// A built multiline rule (validated config).
#[derive(Clone, Debug)]
pub struct Multiline {
    rule: StartRule,
    /// See [`MultilineConfig::flush_timeout_ms`].
    pub flush_timeout: Duration,
    /// See [`MultilineConfig::max_lines`].
    pub max_lines: usize,
}

impl Default for Multiline {
    fn default() -> Self {
        Multiline { rule: StartRule::EveryLine, flush_timeout: Duration::from_millis(1000), max_lines: 1 }
    }
}

/// What the start rule needs to know about the record being built.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenState {
    /// The record holds a Python `Traceback (most recent call last):` line.
    pub in_traceback: bool,
    /// Its last line was indented.
    pub last_indented: bool,
}

fn indented(line: &str) -> bool {
    line.starts_with([' ', '\t'])
}

impl OpenState {
    /// The state after `line` was added.
    pub fn after(self, line: &str) -> OpenState {
        OpenState {
            in_traceback: self.in_traceback || line.trim_end().ends_with(TRACEBACK),
            last_indented: indented(line),
        }
    }
}

impl MultilineConfig {
    /// Checks the config and compiles the rule; the error names the bad field.
    pub fn build(&self) -> Result<Multiline, (String, String)> {
        let rule = match (&self.start_pattern, self.preset) {
            (Some(p), _) => StartRule::Regex(
                Regex::new(p).map_err(|e| ("logs.multiline.start_pattern".to_string(), format!("bad regex {p:?}: {e}")))?,
            ),
            (None, MultilinePreset::None) => StartRule::EveryLine,
            (None, MultilinePreset::Spark) => StartRule::Regex(Regex::new(SPARK_START).expect("constant regex")),
            (None, MultilinePreset::Trino) => StartRule::Regex(Regex::new(TRINO_START).expect("constant regex")),
            (None, MultilinePreset::Python) => StartRule::Python,
        };
        if self.max_lines == 0 {
            return Err(("logs.multiline.max_lines".into(), "must be greater than 0".into()));
        }
        let max_lines = if matches!(rule, StartRule::EveryLine) { 1 } else { self.max_lines };
        Ok(Multiline { rule, flush_timeout: Duration::from_millis(self.flush_timeout_ms), max_lines })
    }
}

impl Multiline {
    /// True when lines may be merged (records can stay pending).
    pub fn merges(&self) -> bool {
        !matches!(self.rule, StartRule::EveryLine) && self.max_lines > 1
    }

    /// Whether `line` starts a new record, given the record being built.
    pub fn is_start(&self, line: &str, open: OpenState) -> bool {
        match &self.rule {
            StartRule::EveryLine => true,
            StartRule::Regex(r) => r.is_match(line),
            StartRule::Python => {
                if line.trim().is_empty() || indented(line) || PYTHON_CONTINUATIONS.iter().any(|p| line.starts_with(p)) {
                    return false;
                }
                // The `XError: msg` line closing a traceback follows an indented frame line.
                !(open.in_traceback && open.last_indented)
            }
        }
    }
}

/// Appended to a record cut at `logs.max_line_bytes`.
pub const TRUNCATED_MARKER: &str = "…[truncated]";

/// Cuts `body` to at most `max_bytes` (on a char boundary) and appends [`TRUNCATED_MARKER`];
/// returns whether it cut.
pub fn truncate(body: &mut String, max_bytes: usize) -> bool {
    if body.len() <= max_bytes {
        return false;
    }
    let mut cut = max_bytes;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    body.truncate(cut);
    body.push_str(TRUNCATED_MARKER);
    true
}

const LEVELS: [(&str, &str); 9] = [
    ("TRACE", "TRACE"),
    ("DEBUG", "DEBUG"),
    ("INFO", "INFO"),
    ("WARN", "WARN"),
    ("WARNING", "WARN"),
    ("ERROR", "ERROR"),
    ("FATAL", "FATAL"),
    ("CRITICAL", "FATAL"),
    ("SEVERE", "ERROR"),
];

pub(crate) fn level(word: &str) -> Option<&'static str> {
    LEVELS.iter().find(|(w, _)| w.eq_ignore_ascii_case(word)).map(|(_, l)| *l)
}

/// The severity of a record from its first line, where the format has one: log4j's level after
/// `yy/MM/dd HH:mm:ss`, Trino's tab-separated level, Python `logging`'s `LEVEL:` prefix, or a
/// JSON `"level"` field. Normalized to `TRACE`…`FATAL` (`WARNING` → `WARN`, `CRITICAL` →
/// `FATAL`); empty when none is found.
pub fn severity(line: &str) -> &'static str {
    let b = line.as_bytes();
    if line.starts_with('{') {
        if let Some(i) = line.find("\"level\":") {
            let rest = line[i + 8..].trim_start().strip_prefix('"').unwrap_or("");
            return rest.split('"').next().and_then(level).unwrap_or("");
        }
        return "";
    }
    // log4j: `26/11/22 13:19:33 WARN Utils: …`
    if b.len() > 18 && b[2] == b'/' && b[5] == b'/' && b[8] == b' ' && b[11] == b':' && b[17] == b' ' {
        return line[18..].split(' ').next().and_then(level).unwrap_or("");
    }
    // Trino: `2024-05-01T12:00:00.123Z\tINFO\tmain\t…`
    if b.first().is_some_and(u8::is_ascii_digit) {
        let mut fields = line.split('\t');
        if let (Some(ts), Some(l)) = (fields.next(), fields.next()) {
            if ts.contains('T') {
                return level(l.trim()).unwrap_or("");
            }
        }
        return "";
    }
    // Python logging's default format: `ERROR:root:message`.
    line.split_once(':').and_then(|(l, _)| if l.bytes().all(|c| c.is_ascii_uppercase()) { level(l) } else { None }).unwrap_or("")
}

#[cfg(test)]
#[path = "multiline_tests.rs"]
mod tests;
