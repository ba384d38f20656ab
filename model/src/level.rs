//! Log levels: Loki's level names for a severity text (the `detected_level` label), and the
//! level a record states when its source sent none (what Loki 3 calls discovering log levels,
//! done by the collector at ingest).
//!
//! Where a record's level comes from, first match wins:
//! 1. the severity its source sent (the agent's parse, OTLP `severity_text`, a Loki `level`
//!    stream label);
//! 2. OTLP `severity_number` ([`from_otlp_severity_number`]);
//! 3. a stream label or attribute named like a level field ([`LEVEL_KEYS`], any case);
//! 4. the line ([`detect`]): a JSON object's level field (nested objects too), a logfmt
//!    `level=…` pair, else a level word among the line's first words.

/// Field names that hold a level, compared ignoring ASCII case (Loki's defaults, which list
/// `level`, `LEVEL`, `Level`, … as separate names).
pub const LEVEL_KEYS: &[&str] = &["level", "lvl", "severity", "severity_text", "severitytext", "log.level"];

/// Loki's level names and the texts each stands for (compared ignoring ASCII case).
const NAMES: &[(&str, &[&str])] = &[
    ("trace", &["trace", "trc"]),
    ("debug", &["debug", "dbg"]),
    ("info", &["info", "inf", "information", "informational", "notice"]),
    ("warn", &["warn", "warning", "wrn"]),
    ("error", &["error", "err", "eror", "severe"]),
    ("critical", &["critical", "crit", "alert", "emerg", "emergency"]),
    ("fatal", &["fatal", "ftl", "panic"]),
];

/// Loki's name (`trace`, `debug`, `info`, `warn`, `error`, `critical`, `fatal`) for a level
/// text, ignoring ASCII case and surrounding spaces; `None` when it names no level.
pub fn normalize(text: &str) -> Option<&'static str> {
    let s = text.trim();
    if s.len() > 13 {
        return None;
    }
    NAMES.iter().find(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(s))).map(|(level, _)| *level)
}

/// The `detected_level` of a record with severity text `severity`: its Loki name, else
/// `unknown`.
pub fn detected_level(severity: &str) -> &'static str {
    normalize(severity).unwrap_or("unknown")
}

/// The level of an OTLP `severity_number` (1–4 trace, 5–8 debug, 9–12 info, 13–16 warn,
/// 17–20 error, 21–24 fatal); `None` for 0 (unspecified) or out of range.
pub fn from_otlp_severity_number(n: i32) -> Option<&'static str> {
    match n {
        1..=4 => Some("trace"),
        5..=8 => Some("debug"),
        9..=12 => Some("info"),
        13..=16 => Some("warn"),
        17..=20 => Some("error"),
        21..=24 => Some("fatal"),
        _ => None,
    }
}

/// True when `key` names a level field ([`LEVEL_KEYS`], ignoring ASCII case).
pub fn is_level_key(key: &str) -> bool {
    LEVEL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// The level `line` states, if any:
/// - a JSON object (`{…}`): the first string field named like a level ([`LEVEL_KEYS`]), the
///   object's own fields before those of nested objects;
/// - a line with `=` (logfmt): the first `key=value` pair whose key names a level;
/// - otherwise, or when that value names no level: a level word among the first 12
///   whitespace-separated words. An upper-case word counts as it is (`ERROR`, `WARN`, `INF`,
///   including `ERROR:root:…`, `[ERROR]`); a lower- or mixed-case one only in brackets or
///   before a colon (`[error]`, `<warn>`, `Error:`), so that `no error found` is not an error.
///   A klog header (`E1122 …`: `I`, `W`, `E` or `F` and the month and day) counts too.
pub fn detect(line: &str) -> Option<&'static str> {
    let t = line.trim();
    if t.len() >= 2 && t.starts_with('{') && t.ends_with('}') {
        if let Some(l) = json_level(t).and_then(|v| normalize(&v)) {
            return Some(l);
        }
    } else if t.contains('=')
        && let Some(l) = logfmt_level(t).and_then(normalize)
    {
        return Some(l);
    }
    text_level(t)
}

/// Deepest object nesting searched for a level field.
const JSON_MAX_DEPTH: usize = 4;

fn json_level(line: &str) -> Option<String> {
    // Most JSON lines have no level field: skip parsing them.
    let lower_has = |needle: &str| line.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()));
    if !(lower_has("level\"") || lower_has("lvl\"") || lower_has("severity")) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    fn find(v: &serde_json::Value, depth: usize) -> Option<String> {
        let o = v.as_object()?;
        for (k, v) in o {
            if let Some(s) = v.as_str()
                && is_level_key(k)
            {
                return Some(s.to_string());
            }
        }
        if depth + 1 >= JSON_MAX_DEPTH {
            return None;
        }
        o.values().filter(|v| v.is_object()).find_map(|v| find(v, depth + 1))
    }
    find(&v, 0)
}

/// The value of the first logfmt pair whose key names a level (quotes removed; escapes are
/// left as they are, which no level name has).
fn logfmt_level(line: &str) -> Option<&str> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' {
            i += 1;
        }
        let key = &line[key_start..i];
        if i >= b.len() || b[i] == b' ' {
            continue;
        }
        i += 1; // '='
        let value = if i < b.len() && b[i] == b'"' {
            let start = i + 1;
            i = start;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            let v = &line[start..i.min(b.len())];
            i += 1;
            v
        } else {
            let start = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            &line[start..i]
        };
        if is_level_key(key) {
            return Some(value);
        }
    }
    None
}

/// Words of a line searched for a level word.
const TEXT_WORDS: usize = 12;

fn text_level(line: &str) -> Option<&'static str> {
    for (n, word) in line.split_ascii_whitespace().take(TEXT_WORDS).enumerate() {
        if n == 0
            && let Some(l) = klog_level(word)
        {
            return Some(l);
        }
        let wb = word.as_bytes();
        let mut start = 0;
        for piece in word.split(['[', ']', '(', ')', '<', '>', ':', ',', '|', ';']) {
            let end = start + piece.len();
            if !piece.is_empty()
                && let Some(level) = normalize(piece)
            {
                let upper = piece.bytes().all(|c| c.is_ascii_uppercase());
                let bracketed = start > 0 && matches!(wb[start - 1], b'[' | b'<' | b'(');
                let colon = wb.get(end) == Some(&b':');
                if upper || bracketed || colon {
                    return Some(level);
                }
            }
            start = end + 1;
        }
    }
    None
}

/// klog's header letter: `I1122`, `W1122`, `E1122`, `F1122` (month and day).
fn klog_level(word: &str) -> Option<&'static str> {
    let b = word.as_bytes();
    if b.len() != 5 || !b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    match b[0] {
        b'I' => Some("info"),
        b'W' => Some("warn"),
        b'E' => Some("error"),
        b'F' => Some("fatal"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalize(" WARNING "), Some("warn"));
        assert_eq!(normalize("Err"), Some("error"));
        assert_eq!(normalize("SEVERE"), Some("error"));
        assert_eq!(normalize("panic"), Some("fatal"));
        assert_eq!(normalize("notice"), Some("info"));
        assert_eq!(normalize("verbose"), None);
        assert_eq!(detected_level("verbose"), "unknown");
        assert_eq!(detected_level("CRIT"), "critical");
    }

    #[test]
    fn otlp_numbers() {
        let got: Vec<_> = [0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, -1].map(from_otlp_severity_number).to_vec();
        assert_eq!(
            got,
            [
                None,
                Some("trace"),
                Some("trace"),
                Some("debug"),
                Some("debug"),
                Some("info"),
                Some("info"),
                Some("warn"),
                Some("warn"),
                Some("error"),
                Some("error"),
                Some("fatal"),
                Some("fatal"),
                None,
                None
            ]
        );
    }

    #[test]
    fn formats() {
        let cases: &[(&str, Option<&str>)] = &[
            // Spark / log4j 1
            ("24/11/22 17:25:34 ERROR Executor: Exception in task 0.0", Some("error")),
            ("24/11/22 17:25:34 WARN TaskSetManager: Lost task", Some("warn")),
            // log4j 2 / Spring Boot
            ("2024-11-22 17:25:34.123  INFO 1 --- [main] o.s.b.StartupInfoLogger : Started", Some("info")),
            // Trino: tab-separated
            ("2024-11-22T17:25:34.123Z\tDEBUG\tdispatcher-query-5\tio.trino.Foo\tdone", Some("debug")),
            // Python logging's default format
            ("CRITICAL:root:disk gone", Some("critical")),
            // nginx error log
            ("2024/11/22 17:25:34 [error] 31#31: *1 open() failed", Some("error")),
            // klog (Kubernetes components)
            ("E1122 17:25:34.123456       1 reflector.go:138] failed to list", Some("error")),
            ("I1122 17:25:34.123456       1 server.go:42] serving", Some("info")),
            // zerolog console, env_logger
            ("5:25PM WRN slow request path=/x", Some("warn")),
            ("[2024-11-22T17:25:34Z ERROR my_app] boom", Some("error")),
            // lower case only when marked as a level
            ("<warn> something odd", Some("warn")),
            ("Error: connection refused", Some("error")),
            ("no error found in 3 files", None),
            ("GET /info 200 12ms", None),
            ("INFORMATION_SCHEMA scanned", None),
            // logfmt, JSON
            ("ts=2024-11-22T17:25:34Z level=warn msg=\"disk almost full\"", Some("warn")),
            ("ts=1 LVL=\"Error\" msg=x", Some("error")),
            ("a=1 msg=\"level=debug inside a value\"", None),
            (r#"{"ts":1,"level":"INFO","msg":"ok"}"#, Some("info")),
            (r#"{"log":{"Severity":"error"},"msg":"nested"}"#, Some("error")),
            (r#"{"msg":"ERROR in the message only"}"#, None),
            // a JSON or logfmt level that names no level: the words decide
            (r#"{"level":"verbose","msg":"x"}"#, None),
            ("level=30 msg=x ERROR", Some("error")),
            // beyond the first 12 words
            ("a b c d e f g h i j k l ERROR", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(detect(line), *want, "{line:?}");
        }
    }
}
