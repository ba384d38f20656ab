use pharos_model::select::{Direction, LogSearch, cut_to_limit, matches_all};
use pharos_model::{LabelMatcher, Labels, LogRecord};
use tantivy::schema::{FAST, INDEXED, STORED, STRING, Schema, TEXT, TantivyDocument};
use tantivy::{Index, doc};

use super::search::{SearchStats, search_split};
use super::*;

fn rec(pod: &str, ts: i64, body: &str) -> LogRecord {
    LogRecord {
        labels: Labels::from_pairs([("namespace", "spark"), ("pod", pod)]),
        timestamp_ns: ts,
        body: body.into(),
        severity: String::new(),
        attributes: Vec::new(),
    }
}

fn write(dir: &Path, records: &[LogRecord]) -> (SplitHandle, (i64, i64)) {
    let split = write_split(dir, &LogFields::new(), records).unwrap().unwrap();
    (open_split(&dir.join(&split.path)).unwrap(), (split.min_ts_ns, split.max_ts_ns))
}

fn run(split: &(SplitHandle, (i64, i64)), q: &LogSearch<'_>) -> (Vec<LogRecord>, SearchStats) {
    let mut out = Vec::new();
    let mut stats = SearchStats::default();
    search_split(&split.0, split.1, q, None, &mut out, &mut stats).unwrap();
    out.sort_by(|a, b| (a.timestamp_ns, &a.body).cmp(&(b.timestamp_ns, &b.body)));
    (out, stats)
}

fn contains<'a>(m: &'a [LabelMatcher], s: &str) -> LogSearch<'a> {
    let mut q = LogSearch::new(m, i64::MIN, i64::MAX);
    q.contains_any = vec![vec![s.to_string()]];
    q
}

/// What an exhaustive scan answers, sorted like [`run`].
fn brute(records: &[LogRecord], q: &LogSearch<'_>) -> Vec<LogRecord> {
    let mut v: Vec<LogRecord> = records.iter().filter(|r| q.accepts(r)).cloned().collect();
    v.sort_by(|a, b| (a.timestamp_ns, &a.body).cmp(&(b.timestamp_ns, &b.body)));
    v
}

#[test]
fn split_round_trip_with_selectors_ranges_and_substrings() {
    let dir = tempfile::tempdir().unwrap();
    let records = vec![
        rec("driver", 10, "INFO starting job 1"),
        rec("driver", 20, "ERROR job 1 failed: OutOfMemoryError"),
        rec("exec-1", 30, "ERROR lost executor"),
    ];
    let split = write(dir.path(), &records);
    assert_eq!(split.1, (10, 30));
    let search = |m: &[LabelMatcher], c: &[&str], s: i64, e: i64| {
        let mut q = LogSearch::new(m, s, e);
        q.contains_any = c.iter().map(|s| vec![s.to_string()]).collect();
        run(&split, &q).0
    };
    let driver = [LabelMatcher::new("pod", "=", "driver").unwrap()];
    assert_eq!(search(&driver, &[], 0, 100), records[..2].to_vec());
    assert_eq!(search(&driver, &["ERROR"], 0, 100), records[1..2].to_vec());
    assert_eq!(search(&[], &["ERROR"], 25, 100), records[2..].to_vec());
    let re = [LabelMatcher::new("pod", "=~", "exec-.*").unwrap()];
    assert_eq!(search(&re, &[], 0, 100), records[2..].to_vec());
    assert_eq!(search(&[LabelMatcher::new("pod", "=", "nope").unwrap()], &[], 0, 100), vec![]);
}

/// Lines where a token query would miss substring matches: case, prefixes, suffixes, words
/// glued to others, punctuation between words, long tokens, non-ASCII.
fn tricky_lines() -> Vec<LogRecord> {
    let long = format!("x{}errorz", "a".repeat(60));
    [
        "errors happened",
        "MyError: boom",
        "an error occurred",
        "ERROR upper case",
        "disk quota-exceeded, for tenant acme.",
        "disk quota exceeded for tenant acme-corp",
        "quota exceeded",
        "tenant acme disk quota",
        "id=20261122_101010_00042_abcde done",
        "Straße gesperrt",
        "ΣΑΣ ok",
        "::",
        long.as_str(),
        "prefix_error_suffix",
        "terror",
        "key=qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq beta gamma end",
    ]
    .iter()
    .enumerate()
    .map(|(i, b)| rec(if i % 2 == 0 { "a" } else { "b" }, i as i64 * 10, b))
    .collect()
}

#[test]
fn substring_filters_match_exactly_what_contains_matches() {
    let dir = tempfile::tempdir().unwrap();
    let records = tricky_lines();
    let split = write(dir.path(), &records);
    let needles = [
        "error", "Error", "rror", "errors", "MyErr", "yError:", "ERROR", "rror occ", "or occurred",
        "quota-exceeded, for", "uota-exceeded, for ten", "quota exceeded", "disk quota exceeded for tenant acme",
        "tenant acme", "acme", "a", "::", ":", " ", "errorz", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaerr",
        "20261122_101010_00042", "00042_abc", "=qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq beta gam", "Straße", "traß", "ΣΑΣ", "ΑΣ o", "_error_", "err", "",
        "nothing like this",
    ];
    for n in needles {
        let q = contains(&[], n);
        let expected = brute(&records, &q);
        let (got, _) = run(&split, &q);
        assert_eq!(got, expected, "|= {n:?}");
    }
    // Independently of `brute`: the cases the issue names.
    let bodies = |n: &str| run(&split, &contains(&[], n)).0.into_iter().map(|r| r.body).collect::<Vec<_>>();
    assert_eq!(bodies("error").len(), 5, "errors, error, a long token ending in errorz, _error_, terror");
    assert!(!bodies("error").iter().any(|b| b.contains("ERROR") || b.contains("MyError")), "case-sensitive");
    assert!(bodies("Error") == ["MyError: boom"]);
    assert_eq!(bodies("uota-exceeded, for ten"), ["disk quota-exceeded, for tenant acme."]);
    assert_eq!(bodies("errorz").len(), 1, "a token longer than 40 bytes is still found");
}

#[test]
fn the_index_narrows_what_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = Vec::new();
    for i in 0..3000i64 {
        let body = match i {
            _ if i % 1000 == 7 => format!("line {i} RareNeedle42 here"),
            _ if i % 500 == 3 => format!("line {i}: disk quota exceeded for tenant acme"),
            _ => format!("line {i}: disk usage ok, quota fine, exceeded nothing, tenant other"),
        };
        records.push(rec(if i % 3 == 0 { "driver" } else { "exec" }, i, &body));
    }
    let split = write(dir.path(), &records);
    let check = |q: &LogSearch<'_>, max_loaded: usize| {
        let (got, stats) = run(&split, q);
        assert_eq!(got, brute(&records, q));
        assert!(stats.docs_loaded <= max_loaded, "loaded {} > {max_loaded}", stats.docs_loaded);
        got.len()
    };
    assert_eq!(check(&contains(&[], "RareNeedle42"), 3), 3, "whole token");
    assert_eq!(check(&contains(&[], "areNeedle4"), 3), 3, "inside a token");
    assert_eq!(check(&contains(&[], "42 here"), 3), 3, "suffix + inner");
    assert_eq!(check(&contains(&[], "quota exceeded for tenant acme"), 6), 6, "phrase");
    assert_eq!(check(&contains(&[], "quota exceeded for"), 6), 6, "phrase ending in a word prefix");
    let exec = [LabelMatcher::new("pod", "=", "exec").unwrap()];
    assert_eq!(check(&contains(&exec, "RareNeedle42"), 3), 2, "stream id narrows too");
    // Without a filter the index cannot narrow: every record is loaded.
    let all = LogSearch::new(&[], i64::MIN, i64::MAX);
    assert_eq!(check(&all, 3000), 3000);
    // Alternatives (a regex's literals): either needle.
    let mut q = LogSearch::new(&[], i64::MIN, i64::MAX);
    q.contains_any = vec![vec!["RareNeedle42".into(), "tenant acme".into()]];
    assert_eq!(check(&q, 9), 9);
}

#[test]
fn limit_loads_only_the_newest_or_oldest_candidates() {
    let dir = tempfile::tempdir().unwrap();
    // 2000 records; timestamps repeat in pairs, so ties cross the limit boundary.
    let records: Vec<LogRecord> =
        (0..2000i64).map(|i| rec(if i % 2 == 0 { "a" } else { "b" }, i / 2, &format!("req {i} status=200"))).collect();
    let split = write(dir.path(), &records);
    let keep_even = |r: &LogRecord| r.body.split(' ').nth(1).and_then(|n| n.parse::<i64>().ok()).is_some_and(|n| n % 4 == 0);
    for dir_ in [Direction::Backward, Direction::Forward] {
        for (n, keep) in [(7usize, false), (10, true), (1, false), (5000, false)] {
            let mut q = contains(&[], "status=200");
            q.limit = Some((n, dir_));
            if keep {
                q.keep = Some(&keep_even);
            }
            let (got, stats) = run(&split, &q);
            let mut unlimited = contains(&[], "status=200");
            if keep {
                unlimited.keep = Some(&keep_even);
            }
            let mut expected = brute(&records, &unlimited);
            cut_to_limit(&mut expected, n, dir_);
            expected.sort_by(|a, b| (a.timestamp_ns, &a.body).cmp(&(b.timestamp_ns, &b.body)));
            assert_eq!(got, expected, "{dir_:?} limit {n} keep {keep}");
            let bound = if keep { 4 * n + 4 } else { n + 1 };
            assert!(stats.docs_loaded <= bound.min(2000), "{dir_:?} {n}: loaded {}", stats.docs_loaded);
        }
    }
}

/// Writes `records` as a layout-1 split (labels JSON per record, `stream` terms, tantivy's
/// `default` tokenizer with positions) into `dir`.
fn write_layout_1(dir: &Path, records: &[LogRecord]) -> (SplitHandle, (i64, i64)) {
    let mut b = Schema::builder();
    let timestamp = b.add_i64_field("timestamp", INDEXED | FAST | STORED);
    let body = b.add_text_field("body", TEXT | STORED);
    let severity = b.add_text_field("severity", STRING | STORED);
    let labels = b.add_text_field("labels", STORED);
    let stream = b.add_text_field("stream", STRING);
    let index = Index::create_in_dir(dir, b.build()).unwrap();
    let mut w = index.writer_with_num_threads::<TantivyDocument>(1, 20 << 20).unwrap();
    for r in records {
        let map: BTreeMap<&str, &str> = r.labels.iter().collect();
        let mut d = doc!(timestamp => r.timestamp_ns, body => r.body.as_str(), severity => "",
            labels => serde_json::to_string(&map).unwrap());
        for (k, v) in r.labels.iter() {
            d.add_text(stream, format!("{k}={v}"));
        }
        w.add_document(d).unwrap();
    }
    w.commit().unwrap();
    (open_split(dir).unwrap(), time_range(records))
}

fn time_range(records: &[LogRecord]) -> (i64, i64) {
    let ts = records.iter().map(|r| r.timestamp_ns);
    (ts.clone().min().unwrap_or(0), ts.max().unwrap_or(0))
}

/// Splits written before layout 2 (labels JSON per record, `stream` terms) are still read.
#[test]
fn layout_1_splits_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let records = tricky_lines();
    let split = write_layout_1(dir.path(), &records);
    assert!(matches!(split.0.layout, SplitLayout::V1 { .. }));
    let pod_a = [LabelMatcher::new("pod", "=", "a").unwrap()];
    // Regression: a 45-byte inner token is not in a layout-1 index and must not be required.
    let long_phrase = "=qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq beta gam";
    assert_eq!(run(&split, &contains(&[], long_phrase)).0.len(), 1);
    for n in ["error", "rror", "errorz", "quota exceeded", "uota-exceeded, for ten", "Straße", "", long_phrase] {
        for m in [&pod_a[..], &[]] {
            let q = contains(m, n);
            assert_eq!(run(&split, &q).0, brute(&records, &q), "|= {n:?} {m:?}");
        }
    }
    assert!(run(&split, &contains(&pod_a, "")).0.iter().all(|r| matches_all(&pod_a, &r.labels)));
}

fn with_attrs(mut r: LogRecord, attrs: &[(&str, &str)]) -> LogRecord {
    r.attributes = pharos_model::normalize_attributes(attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    r
}

/// Records with and without attributes: a rare trace id, a key with dots, an attribute named
/// like a stream label (`pod`, which the stream label wins), values with spaces and case.
fn attribute_records() -> Vec<LogRecord> {
    (0..2000i64)
        .map(|i| {
            let r = rec(if i % 2 == 0 { "a" } else { "b" }, i, &format!("line {i}"));
            match i % 10 {
                0 | 5 => r,
                1 => with_attrs(r, &[("trace_id", &format!("t{}", i % 7)), ("user", "ada")]),
                2 => with_attrs(r, &[("http.method", "GET"), ("user", "Ada Lovelace")]),
                3 => with_attrs(r, &[("pod", "a"), ("user", "bob")]),
                4 => with_attrs(r, &[("trace_id", if i == 1234 { "rare-trace" } else { "t0" })]),
                _ => with_attrs(r, &[("user", "ada"), ("kind", "")]),
            }
        })
        .collect()
}

#[test]
fn attributes_are_stored_and_label_equalities_match_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let records = attribute_records();
    let split = write(dir.path(), &records);
    assert!(split.0.attributes.is_some());
    // Stored and read back as written.
    let (all, _) = run(&split, &LogSearch::new(&[], i64::MIN, i64::MAX));
    assert_eq!(all, records);
    let pod_b = [LabelMatcher::new("pod", "=", "b").unwrap()];
    let pairs = [
        ("trace_id", "t0"),
        ("trace_id", "t3"),
        ("trace_id", "rare-trace"),
        ("trace_id", "nope"),
        ("user", "ada"),
        ("user", "Ada Lovelace"),
        ("user", "Ada"),
        ("http.method", "GET"),
        ("http_method", "GET"),
        ("pod", "a"),
        ("pod", "b"),
        ("namespace", "spark"),
        ("namespace", "other"),
        ("kind", "x"),
    ];
    for m in [&[][..], &pod_b[..]] {
        for (k, v) in pairs {
            for extra in [None, Some(("user", "ada"))] {
                let mut q = LogSearch::new(m, i64::MIN, i64::MAX);
                q.label_equals = vec![(k.to_string(), v.to_string())];
                q.label_equals.extend(extra.map(|(k, v)| (k.to_string(), v.to_string())));
                let (got, _) = run(&split, &q);
                assert_eq!(got, brute(&records, &q), "{m:?} {:?}", q.label_equals);
            }
        }
    }
    // Independently of `brute`: counts from how the records were made.
    let count = |k: &str, v: &str| {
        let mut q = LogSearch::new(&[], i64::MIN, i64::MAX);
        q.label_equals = vec![(k.to_string(), v.to_string())];
        run(&split, &q)
    };
    let (rare, stats) = count("trace_id", "rare-trace");
    assert_eq!(rare.iter().map(|r| r.timestamp_ns).collect::<Vec<_>>(), vec![1234]);
    assert_eq!(stats.docs_loaded, 1, "the attribute term narrows what is loaded");
    assert_eq!(count("http.method", "GET").0.len(), 200);
    assert_eq!(count("user", "Ada Lovelace").0.len(), 200, "the value is one raw term");
    assert_eq!(count("pod", "a").0.len(), 1000, "the stream label wins over the attribute");
    assert_eq!(count("user", "ada").0.len(), 200 + 4 * 200, "i % 10 == 1 and 6..=9");
}

#[test]
fn severity_is_a_fast_column_in_new_splits() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<LogRecord> = ["ERROR", "", "INFO", "ERROR"]
        .iter()
        .enumerate()
        .map(|(i, s)| LogRecord { severity: s.to_string(), ..rec("a", i as i64, "x") })
        .collect();
    let split = write(dir.path(), &records);
    let searcher = split.0.reader.searcher();
    let mut seen = Vec::new();
    for seg in searcher.segment_readers() {
        let col = seg.fast_fields().str("severity").unwrap().expect("a severity column");
        let ts = seg.fast_fields().i64("timestamp").unwrap();
        for doc in 0..seg.max_doc() {
            let mut s = String::new();
            if let Some(ord) = col.term_ords(doc).next() {
                col.ord_to_str(ord, &mut s).unwrap();
            }
            seen.push((ts.first(doc).unwrap(), s));
        }
    }
    seen.sort();
    let expected: Vec<(i64, String)> = records.iter().map(|r| (r.timestamp_ns, r.severity.clone())).collect();
    assert_eq!(seen, expected);
    let (got, _) = run(&split, &LogSearch::new(&[], i64::MIN, i64::MAX));
    assert_eq!(got, records, "severity still read back");
    let mut q = LogSearch::new(&[], i64::MIN, i64::MAX);
    q.severity_unused = true;
    let (got, _) = run(&split, &q);
    let without: Vec<LogRecord> = records.iter().map(|r| LogRecord { severity: String::new(), ..r.clone() }).collect();
    assert_eq!(got, without, "severity left empty when unused, the rest as before");
}

/// Writes `records` as a layout-2 split (no `attributes`, `severity` stored as "WARN").
fn write_layout_2(dir: &Path, records: &[LogRecord]) -> (SplitHandle, (i64, i64)) {
    let mut b = Schema::builder();
    let timestamp = b.add_i64_field("timestamp", FAST);
    let stream_id = b.add_u64_field("stream_id", tantivy::schema::NumericOptions::default().set_indexed().set_fast());
    let indexing = tantivy::schema::TextFieldIndexing::default().set_tokenizer(BODY_TOKENIZER).set_index_option(BODY_INDEX_OPTION);
    let body = b.add_text_field("body", tantivy::schema::TextOptions::default().set_indexing_options(indexing).set_stored());
    let severity = b.add_text_field("severity", STORED);
    let index = Index::create_in_dir(dir, b.build()).unwrap();
    index.tokenizers().register(BODY_TOKENIZER, body_analyzer());
    let mut w = index.writer_with_num_threads::<TantivyDocument>(1, 20 << 20).unwrap();
    let streams: Vec<Labels> = {
        let mut s: Vec<Labels> = records.iter().map(|r| r.labels.clone()).collect();
        s.dedup();
        s.sort();
        s.dedup();
        s
    };
    for r in records {
        let id = streams.iter().position(|l| *l == r.labels).unwrap() as u64;
        w.add_document(doc!(timestamp => r.timestamp_ns, stream_id => id, body => r.body.as_str(), severity => "WARN"))
            .unwrap();
    }
    w.commit().unwrap();
    let table = StreamTable {
        format_version: 1,
        streams: streams.iter().map(|l| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).collect(),
        all_body_tokens_indexed: false,
        stream_totals: Vec::new(),
    };
    std::fs::write(dir.join(STREAMS_FILE), serde_json::to_vec(&table).unwrap()).unwrap();
    (open_split(dir).unwrap(), time_range(records))
}

/// Splits of layout 2 (no `attributes`, `severity` stored only) are still read: as records
/// without attributes, and a label equality only matches stream labels there.
#[test]
fn layout_2_splits_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let records = tricky_lines();
    let split = write_layout_2(dir.path(), &records);
    assert!(split.0.attributes.is_none());
    let expected: Vec<LogRecord> =
        records.iter().map(|r| LogRecord { severity: "WARN".into(), ..r.clone() }).collect();
    assert_eq!(run(&split, &LogSearch::new(&[], i64::MIN, i64::MAX)).0, expected);
    for (k, v) in [("pod", "a"), ("pod", "zzz"), ("trace_id", "t0")] {
        let mut q = contains(&[], "e");
        q.label_equals = vec![(k.to_string(), v.to_string())];
        assert_eq!(run(&split, &q).0, brute(&expected, &q), "{k}={v}");
    }
}

/// Pieces the generated lines are made of: words that contain the needles of
/// [`exact_word_needles`] at the start, in the middle, at the end, in another case only, next
/// to digits and in other scripts.
const PIECES: &[&str] = &[
    "OutOfMemoryError", "java.lang.OutOfMemoryError:", "outofmemoryerror", "MyErrorHandler", "ERROR", "error42",
    "Error", "errors", "42", "x9", "disk", "Quota", "quota-exceeded", "Straße", "STRASSE", "ΣΑΣ", "σας",
    "日本語テキスト", "Ünïcode", "a1b2c3", "tenant=acme", "id_0042", "rror", "Memory", "memoryless", "µs",
];

/// Characters between pieces; the empty one glues two pieces into one token.
const SEPARATORS: &[&str] = &[" ", " ", ", ", "-", "_", ".", ":", "=", "", "\t", "/", "…"];

/// 1500 lines of 1 to 8 pieces (a fixed xorshift sequence) over 3 streams, distinct timestamps.
fn generated_lines() -> Vec<LogRecord> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    (0..1500i64)
        .map(|i| {
            let mut body = String::new();
            for k in 0..1 + next(8) {
                if k > 0 {
                    body.push_str(SEPARATORS[next(SEPARATORS.len())]);
                }
                body.push_str(PIECES[next(PIECES.len())]);
            }
            rec(["a", "b", "c"][next(3)], i * 3, &body)
        })
        .collect()
}

/// One-word needles (every character alphanumeric) and the case-only variants that must not
/// match what the other case matches.
fn exact_word_needles() -> Vec<&'static str> {
    vec![
        "OutOfMemoryError", "OUTOFMEMORYERROR", "outOfMemoryError", "Error", "error", "ERROR", "rror", "Memory",
        "memory", "42", "0042", "x9", "Handler", "Straße", "straße", "traß", "ΣΑΣ", "σας", "ΑΣ", "日本語", "テキスト",
        "Ünïcode", "ünïcode", "a1b2c3", "b2c", "acme", "ERRORerror42", "s", "µs", "Q", "nowhere",
    ]
}

/// Substrings that are not one word: verified candidates in every layout.
const OTHER_NEEDLES: &[&str] = &[
    "lang.OutOfMemory", "Error:", "OutOfMemoryError:", "rror, ", "disk quota", "tenant=acme", "id_0042", "Quota-",
    "x9 ", " 42", "ΣΑΣ σας", "-", "", "Straße STRASSE",
];

/// Every layout answers every needle like `line.contains(needle)` on the generated lines.
#[test]
fn every_layout_answers_substrings_like_a_scan_of_generated_lines() {
    let records = generated_lines();
    // The lines contain what the needles test.
    let count = |n: &str| records.iter().filter(|r| r.body.contains(n)).count();
    assert!(count("OutOfMemoryError") > 50 && count("outofmemoryerror") > 50 && count("OUTOFMEMORYERROR") == 0);
    assert!(records.iter().any(|r| r.body.starts_with("Error")) && records.iter().any(|r| r.body.ends_with("Error")));
    assert!(count("ERRORerror42") > 0, "glued pieces: a needle across two pieces of one token");
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let split_of = |d: &Path, fields: &LogFields| {
        let s = write_split(d, fields, &records).unwrap().unwrap();
        (open_split(&d.join(&s.path)).unwrap(), (s.min_ts_ns, s.max_ts_ns))
    };
    let layouts = [
        ("layout 1", write_layout_1(dirs[0].path(), &records)),
        ("layout 2", write_layout_2(dirs[1].path(), &records)),
        ("layout 3", split_of(dirs[2].path(), &LogFields::layout_3())),
        ("layout 4", split_of(dirs[3].path(), &LogFields::new())),
    ];
    assert!(layouts[3].1.0.exact_words() && !layouts[2].1.0.exact_words() && !layouts[1].1.0.exact_words());
    let pod_b = [LabelMatcher::new("pod", "=", "b").unwrap()];
    for (name, split) in &layouts {
        // Layout 2 reads back severity "WARN" for every record.
        let expected_records: Vec<LogRecord> = if *name == "layout 2" {
            records.iter().map(|r| LogRecord { severity: "WARN".into(), ..r.clone() }).collect()
        } else {
            records.clone()
        };
        for n in exact_word_needles().into_iter().chain(OTHER_NEEDLES.iter().copied()) {
            for m in [&[][..], &pod_b[..]] {
                let q = contains(m, n);
                let (got, _) = run(split, &q);
                assert_eq!(got, brute(&expected_records, &q), "{name}: |= {n:?} {m:?}");
            }
        }
        // Alternatives as a case-insensitive regex gives them (its case variants), and chains.
        let groups: [&[&[&str]]; 4] = [
            &[&["memory", "Memory", "MEMORY"]],
            &[&["rror", "RROR"], &["42"]],
            &[&["Error:", "ERROR"], &["Quota"]],
            &[&["σας", "ΣΑΣ"], &["Straße"], &["日本語"]],
        ];
        for g in groups {
            let mut q = LogSearch::new(&[], i64::MIN, i64::MAX);
            q.contains_any = g.iter().map(|a| a.iter().map(|s| s.to_string()).collect()).collect();
            let expected = brute(&expected_records, &q);
            assert!(!expected.is_empty(), "{g:?} matches some lines");
            assert_eq!(run(split, &q).0, expected, "{name}: {g:?}");
        }
    }
    // Layout 4 answers one word from the index alone: exactly the matching documents are
    // candidates, and each is loaded once (and not at all when bodies are unused).
    let split = &layouts[3].1;
    for n in exact_word_needles() {
        let q = contains(&[], n);
        let expected = brute(&records, &q);
        let (got, stats) = run(split, &q);
        assert_eq!(got, expected, "|= {n:?}");
        if n.len() >= 3 {
            assert_eq!((stats.candidates, stats.docs_loaded), (expected.len(), expected.len()), "|= {n:?}");
            let mut q = contains(&[], n);
            q.body_unused = true;
            let (got, stats) = run(split, &q);
            let bodyless: Vec<LogRecord> = expected.iter().map(|r| LogRecord { body: String::new(), ..r.clone() }).collect();
            assert_eq!(got, bodyless, "|= {n:?} without bodies");
            assert_eq!((stats.docs_loaded, stats.bodies_skipped), (0, expected.len()), "|= {n:?} without bodies");
        }
    }
    // The other substrings still read what they verify, with or without `body_unused`.
    for n in ["lang.OutOfMemory", "disk quota"] {
        let mut q = contains(&[], n);
        q.body_unused = true;
        let (got, stats) = run(split, &q);
        assert_eq!(got, brute(&records, &q), "|= {n:?}");
        assert!(stats.docs_loaded >= got.len() && stats.bodies_skipped == 0 && !got.is_empty(), "|= {n:?}");
    }
}

/// Chained filters: the doc store is skipped only when every group is exact.
#[test]
fn chained_filters_skip_bodies_only_when_all_are_exact() {
    let records = generated_lines();
    let dir = tempfile::tempdir().unwrap();
    let split = write(dir.path(), &records);
    let search = |groups: &[&[&str]], m: &'static [LabelMatcher]| {
        let mut q = LogSearch::new(m, 300, 3000);
        q.contains_any = groups.iter().map(|g| g.iter().map(|s| s.to_string()).collect()).collect();
        q.body_unused = true;
        let (got, stats) = run(&split, &q);
        let expected: Vec<LogRecord> = brute(&records, &q);
        assert_eq!(got.len(), expected.len(), "{groups:?}");
        (got, expected, stats)
    };
    static POD_C: std::sync::LazyLock<[LabelMatcher; 1]> = std::sync::LazyLock::new(|| [LabelMatcher::new("pod", "=", "c").unwrap()]);
    // Two words and a regex's alternatives (all one word): exact, nothing read.
    let (got, expected, stats) = search(&[&["Error"], &["Memory"], &["Handler", "Straße"]], &POD_C[..]);
    assert!(!expected.is_empty());
    assert_eq!(got, expected.iter().map(|r| LogRecord { body: String::new(), ..r.clone() }).collect::<Vec<_>>());
    assert_eq!(stats.docs_loaded, 0);
    // An empty alternative holds for every line: still exact.
    let (_, _, stats) = search(&[&["Error"], &["", "zzz"]], &[]);
    assert_eq!(stats.docs_loaded, 0);
    // One group that is not one word: every candidate is read and verified.
    let (got, expected, stats) = search(&[&["Error"], &["Error:"]], &[]);
    assert_eq!(got, expected);
    assert!(stats.docs_loaded >= expected.len() && stats.bodies_skipped == 0);
    let (got, expected, stats) = search(&[&["Error"], &["ab"]], &[]);
    assert_eq!(got, expected, "a short word is verified");
    assert!(stats.bodies_skipped == 0);
}

/// Without bodies, records with attributes are still read (for their attributes), the others
/// are not.
#[test]
fn bodyless_search_reads_only_records_with_attributes() {
    let records: Vec<LogRecord> = attribute_records()
        .into_iter()
        .map(|r| {
            let body = if r.timestamp_ns % 3 == 0 { format!("{} OutOfMemoryError", r.body) } else { r.body.clone() };
            LogRecord { body, ..r }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let split = write(dir.path(), &records);
    for label_equals in [vec![], vec![("user".to_string(), "ada".to_string())]] {
        let mut q = contains(&[], "OutOfMemoryError");
        q.label_equals = label_equals.clone();
        q.body_unused = true;
        let (got, stats) = run(&split, &q);
        // Records read for their attributes may come with their body.
        let got: Vec<LogRecord> = got.into_iter().map(|r| LogRecord { body: String::new(), ..r }).collect();
        let expected: Vec<LogRecord> = records
            .iter()
            .filter(|r| r.timestamp_ns % 3 == 0)
            .filter(|r| label_equals.is_empty() || r.attribute("user") == Some("ada"))
            .map(|r| LogRecord { body: String::new(), ..r.clone() })
            .collect();
        assert_eq!(got, expected, "{label_equals:?}");
        let with_attributes = records
            .iter()
            .filter(|r| r.timestamp_ns % 3 == 0 && !r.attributes.is_empty())
            .filter(|r| label_equals.is_empty() || r.attribute("user") == Some("ada"))
            .count();
        assert_eq!(stats.docs_loaded, with_attributes, "{label_equals:?}");
    }
}

/// A token longer than tantivy indexes is dropped from the index: such a split is not exact,
/// and its substrings are still found.
#[test]
fn a_split_with_an_oversized_token_still_finds_it() {
    let huge = format!("k{}OutOfMemoryErrorz", "Q".repeat(tantivy::tokenizer::MAX_TOKEN_LEN));
    let records = vec![rec("a", 1, &huge), rec("a", 2, "java.lang.OutOfMemoryError: x"), rec("b", 3, "fine")];
    let dir = tempfile::tempdir().unwrap();
    let split = write(dir.path(), &records);
    assert!(!split.0.exact_words() && !split.0.all_body_tokens());
    for n in ["OutOfMemoryError", "Errorz", "QQQQk", "fine", "ine"] {
        let mut q = contains(&[], n);
        q.body_unused = true;
        let (got, stats) = run(&split, &q);
        assert_eq!(got, brute(&records, &q), "|= {n:?}");
        assert_eq!(stats.bodies_skipped, 0);
    }
    let (got, _) = run(&split, &contains(&[], "OutOfMemoryError"));
    assert_eq!(got.iter().map(|r| r.timestamp_ns).collect::<Vec<_>>(), vec![1, 2]);
}

/// A limited one-word search in layout 4 loads only the records it returns.
#[test]
fn a_limited_one_word_search_loads_only_what_it_returns() {
    let records = generated_lines();
    let dir = tempfile::tempdir().unwrap();
    let split = write(dir.path(), &records);
    for dir_ in [Direction::Backward, Direction::Forward] {
        for n in [1usize, 7, 100] {
            let mut q = contains(&[], "rror");
            q.limit = Some((n, dir_));
            let (got, stats) = run(&split, &q);
            let mut expected = brute(&records, &contains(&[], "rror"));
            cut_to_limit(&mut expected, n, dir_);
            expected.sort_by(|a, b| (a.timestamp_ns, &a.body).cmp(&(b.timestamp_ns, &b.body)));
            assert_eq!(got, expected, "{dir_:?} {n}");
            assert_eq!(stats.docs_loaded, n, "{dir_:?} {n}: distinct timestamps, so exactly n");
        }
    }
}

#[test]
fn records_are_indexed_by_stream_then_time_with_arrival_order_among_ties() {
    let records = vec![
        rec("b", 30, "b1"),
        rec("a", 20, "a1"),
        rec("b", 10, "b2"),
        rec("a", 20, "a2"),
        rec("a", 5, "a3"),
    ];
    let (streams, order) = stream_order(&records);
    let pods: Vec<&str> = streams.iter().map(|l| l.get("pod").unwrap()).collect();
    assert_eq!(pods, ["a", "b"]);
    let bodies: Vec<(u64, &str)> = order.iter().map(|&(id, i)| (id, records[i].body.as_str())).collect();
    assert_eq!(bodies, [(0, "a3"), (0, "a1"), (0, "a2"), (1, "b2"), (1, "b1")]);
    // Written in that order, every record still comes back with its own stream.
    let dir = tempfile::tempdir().unwrap();
    let split = write(dir.path(), &records);
    let (all, _) = run(&split, &LogSearch::new(&[], i64::MIN, i64::MAX));
    assert_eq!(all, brute(&records, &LogSearch::new(&[], i64::MIN, i64::MAX)));
}

/// A substring inside many terms (more than are looked up one by one), inside a few, at the
/// start of a word (a term range) and at the end of one: each search answers what a scan does.
#[test]
fn substrings_of_many_terms_and_prefixes_match_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<LogRecord> =
        (0..400i64).map(|i| rec(["a", "b"][i as usize % 2], i, &format!("tok{} mid{}x end{}", i % 200, i % 7, i % 13))).collect();
    let split = write(dir.path(), &records);
    let pod_b = [LabelMatcher::new("pod", "=", "b").unwrap()];
    // "ok1": tok1, tok10..tok19, tok100..tok199 (111 terms); "ok19": 11 terms; "ok1 mid": a
    // suffix, then a prefix; "tok12 mi": a suffix (the prefix is too short to use); "x end1": a
    // prefix (end1, end10, end11, end12); then a suffix, a whole word and a prefix.
    for needle in ["ok1", "ok19", "ok1 mid", "tok12 mi", "x end1", "tok199 mid3x end", "nothere"] {
        for m in [&[][..], &pod_b[..]] {
            let q = contains(m, needle);
            let want = brute(&records, &q);
            assert_eq!(run(&split, &q).0, want, "{needle:?} {m:?}");
            assert!(needle == "nothere" || !m.is_empty() || !want.is_empty(), "{needle:?} matches something");
        }
    }
}

/// A split's segments searched in consecutive ranges give, concatenated, what one search of
/// all of them gives, in the same order (how a large split is searched on several threads).
#[test]
fn segment_ranges_of_a_split_concatenate_to_the_whole_search() {
    use super::search::SplitSearch;
    let dir = tempfile::tempdir().unwrap();
    // Over 50,000 records per writer thread: one segment per thread, several with several cores.
    let records: Vec<LogRecord> = (0..100_001)
        .map(|i| rec(if i % 3 == 0 { "a" } else { "b" }, i, if i % 7 == 0 { "job hit" } else { "job miss" }))
        .collect();
    let split = write(dir.path(), &records);
    let segments = split.0.opened().unwrap().searcher.segment_readers().len();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        assert!(segments >= 2, "{segments} segments");
    }
    let pod_a = [LabelMatcher::new("pod", "=", "a").unwrap()];
    let mut bodyless = contains(&pod_a, "hit");
    bodyless.body_unused = true;
    for q in [contains(&[], "hit"), contains(&pod_a, "job"), bodyless, LogSearch::new(&pod_a, 10, 90_000)] {
        let search = |range: std::ops::Range<usize>| {
            let (mut out, mut stats) = (Vec::new(), SearchStats::default());
            let search = SplitSearch::new(&split.0, split.1, &q, None).unwrap().expect("the split may hold answers");
            assert_eq!(search.segments(), segments);
            search.run(range, &mut out, &mut stats).unwrap();
            out
        };
        let whole = search(0..segments);
        let mut sorted = whole.clone();
        sorted.sort_by(|a, b| (a.timestamp_ns, &a.body).cmp(&(b.timestamp_ns, &b.body)));
        let mut want = brute(&records, &q);
        if q.body_unused {
            want.iter_mut().for_each(|r| r.body.clear());
        }
        assert_eq!(sorted, want);
        for cut in 0..=segments {
            let mut parts = search(0..cut);
            parts.extend(search(cut..segments));
            assert_eq!(parts, whole, "cut at segment {cut}");
        }
    }
    // Limited: 14,286 hits, loaded in parallel chunks when the limit cannot cut them.
    for (n, dir) in [(20_000, Direction::Backward), (14_286, Direction::Forward), (100, Direction::Backward), (300, Direction::Forward)] {
        let mut q = contains(&[], "hit");
        q.limit = Some((n, dir));
        let (got, stats) = run(&split, &q);
        let mut want = brute(&records, &contains(&[], "hit"));
        assert_eq!(stats.candidates, want.len());
        cut_to_limit(&mut want, n, dir);
        want.sort_by(|a, b| (a.timestamp_ns, &a.body).cmp(&(b.timestamp_ns, &b.body)));
        assert_eq!(got, want, "limit {n} {dir:?}");
    }
}

/// Stream stats (`index/stats`): exact from the stream table's totals for a split inside the
/// range, entries exact and bytes at the stream's mean line length for a split cut by it, and
/// exact from the records for a split without totals (layout 2).
#[test]
fn stream_stats_come_from_totals_and_estimate_cut_streams() {
    use pharos_model::StreamStats;
    let dir = tempfile::tempdir().unwrap();
    // Stream a: 4 lines of 10 bytes and 1 of 30 (mean 14); stream b: 3 lines of 5 bytes.
    let line = |app: &str, ts: i64, len: usize| LogRecord::new(Labels::from_pairs([("app", app)]), ts, &"x".repeat(len), "");
    let records: Vec<LogRecord> = (1..=4)
        .map(|t| line("a", t, 10))
        .chain([line("a", 5, 30)])
        .chain((1..=3).map(|t| line("b", t * 2, 5)))
        .collect();
    let split = write(dir.path(), &records);
    let stats = |split: &(SplitHandle, (i64, i64)), m: &[pharos_model::LabelMatcher], start: i64, end: i64| {
        let mut out = HashMap::new();
        search::split_stream_stats(&split.0, split.1, m, &[(start, end)], &mut out).unwrap();
        let mut v: Vec<(String, StreamStats)> = out.into_iter().map(|(l, mut s)| (l.get("app").unwrap_or("").to_string(), s.swap_remove(0))).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let s = |entries, bytes| StreamStats { entries, bytes };
    // The whole split: totals (a: 4 × 10 + 30 = 70, b: 15).
    assert_eq!(stats(&split, &[], 0, 100), vec![("a".into(), s(5, 70)), ("b".into(), s(3, 15))]);
    let only_b = [pharos_model::LabelMatcher::new("app", "=", "b").unwrap()];
    assert_eq!(stats(&split, &only_b, 0, 100), vec![("b".into(), s(3, 15))]);
    // Cut at [2, 4]: a has 3 entries (t 2, 3, 4), estimated 3 × 70 / 5 = 42 bytes (really 30);
    // b has 2 (t 2, 4) of its 3, 2 × 15 / 3 = 10 bytes (exact here).
    assert_eq!(stats(&split, &[], 2, 4), vec![("a".into(), s(3, 42)), ("b".into(), s(2, 10))]);
    // A cut that keeps every record of a stream gives its exact bytes.
    assert_eq!(stats(&split, &[], 1, 5), vec![("a".into(), s(5, 70)), ("b".into(), s(2, 10))]);
    assert_eq!(stats(&split, &[], 50, 60), vec![]);
    // Several buckets in one pass, each as its own range would give: [0, 2] a t 1, 2 (2 × 14)
    // and b t 2 (5); [3, 4] a t 3, 4 and b t 4; [5, 100] a t 5 (1 × 14) and b t 6.
    let mut out = HashMap::new();
    search::split_stream_stats(&split.0, split.1, &[], &[(0, 2), (3, 4), (5, 100)], &mut out).unwrap();
    let app = |l: &str| Labels::from_pairs([("app", l)]);
    assert_eq!(out.get(&app("a")), Some(&vec![s(2, 28), s(2, 28), s(1, 14)]));
    assert_eq!(out.get(&app("b")), Some(&vec![s(1, 5), s(1, 5), s(1, 5)]));
    for (lo, hi) in [(0, 2), (3, 4), (5, 100)] {
        let one: Vec<StreamStats> = stats(&split, &[], lo, hi).into_iter().map(|(_, st)| st).collect();
        let b = [(0, 2), (3, 4), (5, 100)].iter().position(|r| *r == (lo, hi)).unwrap();
        assert_eq!(one, vec![out[&app("a")][b], out[&app("b")][b]], "[{lo}, {hi}]");
    }
    // Without totals (layout 2): read from the records, exact.
    let old = tempfile::tempdir().unwrap();
    let split = write_layout_2(old.path(), &records);
    assert_eq!(stats(&split, &[], 2, 4), vec![("a".into(), s(3, 30)), ("b".into(), s(2, 10))]);
}
