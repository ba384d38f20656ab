//! Parser for the Prometheus text exposition format 0.0.4 and OpenMetrics text 1.0.
//!
//! Sample lines are lexed by hand (label values may hold `,`, `}`, escapes; names may hold `:`;
//! names may be quoted UTF-8 as in `{"my.metric", a="b"}`). Histograms and summaries stay the
//! flattened series Prometheus stores (`x_bucket{le}`, `x_sum`, `x_count`, `x{quantile}`), with
//! `le`/`quantile` values normalised to one spelling (`1.0` → `1`, `+inf` → `+Inf`), the same
//! spelling `pharos_model::otlp` gives OTLP histograms. One bad line fails the whole scrape.
//!
//! HELP, TYPE and UNIT lines become one [`MetricMetadata`] per family ([`parse_exposition`]):
//! `untyped` is `unknown`, a family with HELP or UNIT but no TYPE is `unknown`, and HELP escapes
//! are undone (`\\`, `\n`, and in OpenMetrics `\"`), as Prometheus does.

use std::collections::HashMap;

use pharos_model::{FamilyIndex, Labels, METRIC_NAME, MetricMetadata, MetricType};

/// Which text format a body is in (decides how timestamps are read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4: timestamps are integer milliseconds.
    PrometheusText,
    /// OpenMetrics text: timestamps are seconds with a fraction; exemplars may follow a value.
    OpenMetrics,
}

impl Format {
    /// The format announced by a `Content-Type` header (Prometheus text when absent or unknown).
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        match content_type {
            Some(ct) if ct.trim_start().to_ascii_lowercase().starts_with("application/openmetrics-text") => {
                Format::OpenMetrics
            }
            _ => Format::PrometheusText,
        }
    }
}

/// One parsed sample: labels including `__name__`, the value, and the exposed timestamp if any.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapedSample {
    /// Series labels, including `__name__`.
    pub labels: Labels,
    /// The value (`NaN`, `±Inf` allowed).
    pub value: f64,
    /// Milliseconds since the epoch when the exposition gave a timestamp.
    pub timestamp_ms: Option<i64>,
}

/// A line of the exposition that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct ExpositionError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, quoting the offending input.
    pub message: String,
}

/// Metric family types, as far as they matter for normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FamilyType {
    Histogram,
    Summary,
    Other,
}

/// A parsed exposition: its samples and the HELP/TYPE/UNIT of its families.
#[derive(Debug, Default)]
pub struct Exposition {
    /// The samples, in exposition order.
    pub samples: Vec<ScrapedSample>,
    /// One entry per family with a HELP, TYPE or UNIT line.
    pub families: FamilyIndex,
}

/// Parses a whole exposition body into samples. Stops at `# EOF`.
pub fn parse(body: &str, format: Format) -> Result<Vec<ScrapedSample>, ExpositionError> {
    parse_exposition(body, format).map(|e| e.samples)
}

/// Parses a whole exposition body into samples and family metadata. Stops at `# EOF`.
pub fn parse_exposition(body: &str, format: Format) -> Result<Exposition, ExpositionError> {
    let mut types: HashMap<String, MetricMetadata> = HashMap::new();
    let mut out = Vec::new();
    for (i, raw) in body.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let fail = |message: String| ExpositionError { line: line_no, message };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let trimmed = comment.trim_start();
            let keyword = trimmed.split([' ', '\t']).next().unwrap_or_default();
            match keyword {
                "EOF" if comment.trim() == "EOF" => break,
                "TYPE" | "HELP" | "UNIT" => {
                    let Some((name, text)) = descriptor(&trimmed[keyword.len()..]) else {
                        if keyword == "TYPE" {
                            return Err(fail(format!("malformed TYPE line {line:?}")));
                        }
                        continue; // a HELP/UNIT line without a name says nothing
                    };
                    let entry = types
                        .entry(name)
                        .or_insert_with_key(|name| MetricMetadata { metric_family_name: name.clone(), ..Default::default() });
                    match keyword {
                        "TYPE" => {
                            let kind = text.split_whitespace().next().unwrap_or_default();
                            entry.r#type =
                                MetricType::parse(kind).ok_or_else(|| fail(format!("unknown metric type {kind:?}")))?;
                        }
                        "HELP" => entry.help = unescape_help(text, format),
                        _ => entry.unit = text.trim().to_string(),
                    }
                }
                // Free comments carry nothing we store.
                _ => {}
            }
            continue;
        }
        let parsed = parse_sample_line(line, format).map_err(|m| fail(format!("{m} in {line:?}")))?;
        out.push(finish(parsed, &types));
    }
    Ok(Exposition { samples: out, families: FamilyIndex::new(types.into_values()) })
}

/// The metric name and the rest of a `HELP`/`TYPE`/`UNIT` line (after the keyword). The name may
/// be quoted (UTF-8 names); the rest starts after the blanks that follow the name.
fn descriptor(after_keyword: &str) -> Option<(String, &str)> {
    let mut lx = Lexer { s: after_keyword, pos: 0 };
    if !lx.skip_blanks() {
        return None;
    }
    let name = if lx.peek() == Some('"') { lx.quoted().ok()? } else { lx.token().to_string() };
    if name.is_empty() {
        return None;
    }
    lx.skip_blanks();
    Some((name, &after_keyword[lx.pos..]))
}

/// Undoes HELP escapes: `\\` and `\n`, and in OpenMetrics also `\"`. Other backslashes stay.
fn unescape_help(text: &str, format: Format) -> String {
    if !text.contains('\\') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if format == Format::OpenMetrics => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

struct RawSample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
}

fn family_type(name: &str, types: &HashMap<String, MetricMetadata>) -> FamilyType {
    let of = |m: &MetricMetadata| match m.r#type {
        MetricType::Histogram | MetricType::GaugeHistogram => FamilyType::Histogram,
        MetricType::Summary => FamilyType::Summary,
        _ => FamilyType::Other,
    };
    if let Some(t) = types.get(name) {
        return of(t);
    }
    for suffix in ["_bucket", "_sum", "_count", "_created", "_total", "_gcount", "_gsum", "_info"] {
        if let Some(t) = name.strip_suffix(suffix).and_then(|base| types.get(base)) {
            return of(t);
        }
    }
    FamilyType::Other
}

fn finish(mut raw: RawSample, types: &HashMap<String, MetricMetadata>) -> ScrapedSample {
    let normalise = match family_type(&raw.name, types) {
        FamilyType::Histogram => Some("le"),
        FamilyType::Summary => Some("quantile"),
        FamilyType::Other => None,
    };
    if let Some(label) = normalise {
        for (k, v) in raw.labels.iter_mut() {
            if k == label {
                *v = normalise_float(v);
            }
        }
    }
    raw.labels.push((METRIC_NAME.to_string(), raw.name));
    ScrapedSample { labels: Labels::from_pairs(raw.labels), value: raw.value, timestamp_ms: raw.timestamp_ms }
}

/// One spelling per float: `+Inf`, `-Inf`, `NaN`, otherwise the shortest round-trip form without
/// a trailing `.0` (`1.0` → `1`, `0.50` → `0.5`). Unparseable values are kept as they are.
pub fn normalise_float(v: &str) -> String {
    match parse_float(v) {
        Some(f) if f == f64::INFINITY => "+Inf".into(),
        Some(f) if f == f64::NEG_INFINITY => "-Inf".into(),
        Some(f) if f.is_nan() => "NaN".into(),
        Some(f) => {
            let s = format!("{f:?}");
            s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
        }
        None => v.to_string(),
    }
}

/// Parses a float the way Go's `strconv.ParseFloat` accepts it in expositions.
fn parse_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let negative = s.starts_with('-');
    match unsigned.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => Some(if negative { f64::NEG_INFINITY } else { f64::INFINITY }),
        "nan" => Some(f64::NAN),
        // Rust would also take "infinity"-like words; everything else must look numeric.
        u if u.starts_with(|c: char| c.is_ascii_digit() || c == '.') => s.parse().ok(),
        _ => None,
    }
}

/// A cursor over one line.
struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }
    fn skip_blanks(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
        self.pos > start
    }
    fn expect(&mut self, want: char) -> Result<(), String> {
        match self.bump() {
            Some(c) if c == want => Ok(()),
            Some(c) => Err(format!("expected {want:?}, found {c:?} at column {}", self.pos)),
            None => Err(format!("expected {want:?}, found end of line")),
        }
    }
    /// Reads `[a-zA-Z_:][a-zA-Z0-9_:]*` (`allow_colon` for metric names).
    fn name(&mut self, allow_colon: bool) -> Result<&'a str, String> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let ok = c.is_ascii_alphabetic()
                || c == '_'
                || (allow_colon && c == ':')
                || (self.pos > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            let what = if allow_colon { "metric name" } else { "label name" };
            return Err(match self.peek() {
                Some(c) => format!("expected {what}, found {c:?} at column {}", self.pos + 1),
                None => format!("expected {what}, found end of line"),
            });
        }
        Ok(&self.s[start..self.pos])
    }
    /// Reads a `"…"` string with the escapes `\\`, `\"`, `\n` (other escapes stay verbatim).
    fn quoted(&mut self) -> Result<String, String> {
        self.expect('"')?;
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err("unterminated quoted string".into()),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('\\') => out.push('\\'),
                    Some('"') => out.push('"'),
                    Some('n') => out.push('\n'),
                    Some(c) => {
                        out.push('\\');
                        out.push(c);
                    }
                    None => return Err("unterminated quoted string".into()),
                },
                Some(c) => out.push(c),
            }
        }
    }
    /// Reads up to the next blank.
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while !matches!(self.peek(), None | Some(' ' | '\t')) {
            self.pos += self.peek().map_or(1, char::len_utf8);
        }
        &self.s[start..self.pos]
    }
}

fn parse_sample_line(line: &str, format: Format) -> Result<RawSample, String> {
    let mut lx = Lexer { s: line, pos: 0 };
    let mut name = match lx.peek() {
        Some('{') => None,
        _ => Some(lx.name(true)?.to_string()),
    };
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut blank_before_value = lx.skip_blanks();
    if lx.peek() == Some('{') {
        lx.bump();
        loop {
            lx.skip_blanks();
            if lx.peek() == Some('}') {
                lx.bump();
                break;
            }
            let label = if lx.peek() == Some('"') {
                let quoted = lx.quoted()?;
                lx.skip_blanks();
                if lx.peek() != Some('=') {
                    // A quoted name alone is the (UTF-8) metric name.
                    if name.is_some() {
                        return Err(format!("metric name given twice ({quoted:?})"));
                    }
                    name = Some(quoted);
                    lx.skip_blanks();
                    match lx.bump() {
                        Some(',') => continue,
                        Some('}') => break,
                        _ => return Err("expected ',' or '}' after the metric name".into()),
                    }
                }
                quoted
            } else {
                lx.name(false)?.to_string()
            };
            lx.skip_blanks();
            lx.expect('=')?;
            lx.skip_blanks();
            let value = lx.quoted()?;
            if label == METRIC_NAME || labels.iter().any(|(k, _)| *k == label) {
                return Err(format!("duplicate label {label:?}"));
            }
            labels.push((label, value));
            lx.skip_blanks();
            match lx.bump() {
                Some(',') => {}
                Some('}') => break,
                Some(c) => return Err(format!("expected ',' or '}}' after a label, found {c:?}")),
                None => return Err("unterminated label set".into()),
            }
        }
        blank_before_value = lx.skip_blanks();
    }
    let name = name.filter(|n| !n.is_empty()).ok_or("missing metric name")?;
    if !blank_before_value {
        return Err(match lx.peek() {
            Some(c) => format!("unexpected {c:?} after the series"),
            None => "missing value".into(),
        });
    }
    let value_token = lx.token();
    let value = parse_float(value_token).ok_or_else(|| format!("invalid value {value_token:?}"))?;
    lx.skip_blanks();
    // In OpenMetrics, anything from " # " on is an exemplar, which we do not keep.
    let is_end = |t: &str| t.is_empty() || (format == Format::OpenMetrics && t == "#");
    let mut timestamp_ms = None;
    let next = lx.token();
    if !is_end(next) {
        timestamp_ms = Some(parse_timestamp(next, format)?);
        lx.skip_blanks();
        let rest = lx.token();
        if !is_end(rest) {
            return Err(format!("unexpected {rest:?} after the timestamp"));
        }
    }
    Ok(RawSample { name, labels, value, timestamp_ms })
}

fn parse_timestamp(token: &str, format: Format) -> Result<i64, String> {
    let bad = || format!("invalid timestamp {token:?}");
    match format {
        Format::PrometheusText => token.parse::<i64>().map_err(|_| bad()),
        Format::OpenMetrics => {
            let seconds = parse_float(token).filter(|s| s.is_finite()).ok_or_else(bad)?;
            Ok((seconds * 1000.0).round() as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str, format: Format) -> ScrapedSample {
        let mut v = parse(body, format).unwrap();
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    #[test]
    fn tricky_label_values_and_colon_names() {
        let s = one(
            "job:http_requests:rate5m{path=\"/a,b}\",msg=\"say \\\"hi\\\"\\n\\\\ \\x\" , } 1.5e3 1700000000123\n",
            Format::PrometheusText,
        );
        assert_eq!(s.labels.metric_name(), Some("job:http_requests:rate5m"));
        assert_eq!(s.labels.get("path"), Some("/a,b}"));
        assert_eq!(s.labels.get("msg"), Some("say \"hi\"\n\\ \\x"));
        assert_eq!(s.value, 1500.0);
        assert_eq!(s.timestamp_ms, Some(1_700_000_000_123));
    }

    #[test]
    fn special_values() {
        let body = "a NaN\nb +Inf\nc -Inf\nd -0.5e-1\ne Inf\n";
        let v = parse(body, Format::PrometheusText).unwrap();
        assert!(v[0].value.is_nan());
        assert_eq!(v[1].value, f64::INFINITY);
        assert_eq!(v[2].value, f64::NEG_INFINITY);
        assert_eq!(v[3].value, -0.05);
        assert_eq!(v[4].value, f64::INFINITY);
        assert!(parse("x infinite\n", Format::PrometheusText).is_err());
    }

    #[test]
    fn openmetrics_timestamps_are_seconds_and_exemplars_ignored() {
        let body = "# TYPE foo counter\nfoo_total{a=\"1\"} 17 1520879607.789 # {trace_id=\"x\"} 1 1520879607.7\nbar 3 # {t=\"y\"} 2\n# EOF\n";
        let v = parse(body, Format::OpenMetrics).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].timestamp_ms, Some(1_520_879_607_789));
        assert_eq!(v[0].value, 17.0);
        assert_eq!(v[1].timestamp_ms, None);
        // The same exemplar is an error in the Prometheus text format.
        assert!(parse("bar 3 # {t=\"y\"} 2\n", Format::PrometheusText).is_err());
    }

    #[test]
    fn histogram_and_summary_labels_are_normalised() {
        let body = "# HELP h Latency.\n# TYPE h histogram\nh_bucket{le=\"1.0\"} 2\nh_bucket{le=\"0.50\"} 1\nh_bucket{le=\"+inf\"} 3\nh_sum 4.5\nh_count 3\n# TYPE s summary\ns{quantile=\"0.990\"} 7\ns_count 1\nother{le=\"1.0\"} 1\n";
        let v = parse(body, Format::PrometheusText).unwrap();
        let les: Vec<_> = v[..3].iter().map(|s| s.labels.get("le").unwrap().to_string()).collect();
        assert_eq!(les, ["1", "0.5", "+Inf"]);
        assert_eq!(v[3].labels.metric_name(), Some("h_sum"));
        assert_eq!(v[5].labels.get("quantile"), Some("0.99"));
        // Not a histogram: le is just a label and keeps its spelling.
        assert_eq!(v[7].labels.get("le"), Some("1.0"));
    }

    #[test]
    fn eof_stops_and_comments_are_skipped() {
        let body = "# some comment\n\na 1\n# EOF\nthis is not parsed\n";
        assert_eq!(parse(body, Format::OpenMetrics).unwrap().len(), 1);
    }

    #[test]
    fn quoted_utf8_names() {
        let s = one("{\"my.metric\", \"ü.label\"=\"v\"} 2\n", Format::PrometheusText);
        assert_eq!(s.labels.metric_name(), Some("my.metric"));
        assert_eq!(s.labels.get("ü.label"), Some("v"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("ok 1\nbad{a=\"x} 1\n", Format::PrometheusText).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unterminated"), "{e}");
        assert_eq!(parse("a\n", Format::PrometheusText).unwrap_err().to_string(), "line 1: missing value in \"a\"");
        assert!(parse("a 1 2 3\n", Format::PrometheusText).is_err());
        assert!(parse("a{b=\"1\",b=\"2\"} 1\n", Format::PrometheusText).is_err());
        assert!(parse("a 1 1.5\n", Format::PrometheusText).is_err(), "ms timestamps are integers");
        assert!(parse("a{1b=\"x\"} 1\n", Format::PrometheusText).is_err());
        assert!(parse("a abc\n", Format::PrometheusText).is_err());
        assert!(parse("# TYPE a bogus\n", Format::PrometheusText).is_err());
    }

    /// node-exporter's HELP-then-TYPE order, HELP escapes, UNIT, untyped and HELP-only families.
    #[test]
    fn help_type_and_unit_per_family() {
        let body = "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n\
# TYPE node_cpu_seconds_total counter\n\
node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1.5\n\
# HELP esc A \\\\ backslash,\\n a newline and a \\\"quote\\\".\n\
# TYPE esc gauge\n\
esc 1\n\
# HELP h Latency.\n# TYPE h histogram\n# UNIT h seconds\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n\
# TYPE u untyped\nu 1\n\
# HELP only_help Has no TYPE.\nonly_help 2\n\
# HELP empty_help\n\
no_meta 3\n";
        let e = parse_exposition(body, Format::PrometheusText).unwrap();
        assert_eq!(e.samples.len(), 8);
        let mut got: Vec<MetricMetadata> = e.families.iter().cloned().collect();
        got.sort_by(|a, b| a.metric_family_name.cmp(&b.metric_family_name));
        let md = MetricMetadata::new;
        assert_eq!(
            got,
            vec![
                md("empty_help", MetricType::Unknown, "", ""),
                md("esc", MetricType::Gauge, "A \\ backslash,\n a newline and a \\\"quote\\\".", ""),
                md("h", MetricType::Histogram, "Latency.", "seconds"),
                md("node_cpu_seconds_total", MetricType::Counter, "Seconds the CPUs spent in each mode.", ""),
                md("only_help", MetricType::Unknown, "Has no TYPE.", ""),
                md("u", MetricType::Unknown, "", ""),
            ]
        );
        // `\"` is an escape in OpenMetrics HELP only.
        let om = parse_exposition("# HELP q Say \\\"hi\\\".\nq 1\n# EOF\n", Format::OpenMetrics).unwrap();
        assert_eq!(om.families.family_of("q").unwrap().help, "Say \"hi\".");
        // The histogram's series find their family.
        assert_eq!(e.families.family_of("h_bucket").unwrap().unit, "seconds");
        assert!(e.families.family_of("no_meta").is_none());
    }

    #[test]
    fn content_type_selects_format() {
        assert_eq!(
            Format::from_content_type(Some("application/openmetrics-text; version=1.0.0; charset=utf-8")),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_content_type(Some("text/plain; version=0.0.4")), Format::PrometheusText);
        assert_eq!(Format::from_content_type(None), Format::PrometheusText);
    }

    /// Shaped like Trino's `/metrics` (OpenMetrics from JMX): HELP/TYPE/UNIT lines, `unknown`
    /// types, counters with `_total` and `_created`, and the final `# EOF`.
    #[test]
    fn trino_openmetrics_output() {
        let body = "# TYPE trino_execution_name_QueryManager_RunningQueries gauge\n\
# HELP trino_execution_name_QueryManager_RunningQueries RunningQueries\n\
trino_execution_name_QueryManager_RunningQueries 3.0\n\
# TYPE trino_execution_name_QueryManager_CompletedQueries_TotalCount counter\n\
# HELP trino_execution_name_QueryManager_CompletedQueries_TotalCount CompletedQueries.TotalCount\n\
trino_execution_name_QueryManager_CompletedQueries_TotalCount_total 42.0\n\
trino_execution_name_QueryManager_CompletedQueries_TotalCount_created 1.7179869184E9\n\
# TYPE jvm_memory_heap_used_bytes unknown\n\
# UNIT jvm_memory_heap_used_bytes bytes\n\
jvm_memory_heap_used_bytes{pool=\"G1 Eden Space\"} 1.23456789E8\n\
# EOF\n\
ignored_after_eof 1\n";
        let v = parse(body, Format::OpenMetrics).unwrap();
        let names: Vec<_> = v.iter().map(|s| s.labels.metric_name().unwrap()).collect();
        assert_eq!(
            names,
            [
                "trino_execution_name_QueryManager_RunningQueries",
                "trino_execution_name_QueryManager_CompletedQueries_TotalCount_total",
                // Kept as its own series, as Prometheus does without created-timestamp ingestion.
                "trino_execution_name_QueryManager_CompletedQueries_TotalCount_created",
                "jvm_memory_heap_used_bytes",
            ]
        );
        assert_eq!(v[1].value, 42.0);
        assert_eq!(v[2].value, 1_717_986_918.4);
        assert_eq!(v[3].labels.get("pool"), Some("G1 Eden Space"));
        assert_eq!(v[3].value, 123_456_789.0);
    }
}
