//! Parser and evaluation tests with expected values worked out by hand.

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
fn index_filters_take_substrings_and_regex_prefix_literals() {
    let groups = |q: &str| parse(q).unwrap().index_filters();
    let q = r#"{app="api"} |= "error" != `timeout` |~ "code=5\\d\\d" !~ "health""#;
    assert_eq!(groups(q), vec![vec!["error".to_string()], vec!["code=5".to_string()]]);
    let mut alt = groups(r#"{app="api"} |~ "(ERROR|FATAL) \\w+""#);
    alt[0].sort();
    assert_eq!(alt, vec![vec!["ERROR ".to_string(), "FATAL ".to_string()]]);
    // Nothing every match starts with: no narrowing.
    assert!(groups(r#"{app="api"} |~ ".*x" |~ "\\d+""#).is_empty());
    let mut opt = groups(r#"{app="api"} |~ "a?bc""#);
    opt[0].sort();
    assert_eq!(opt, vec![vec!["abc".to_string(), "bc".to_string()]]);
    // After line_format the filter sees another line.
    assert_eq!(groups(r#"{app="api"} |= "a" | line_format "{{.x}}" |= "b""#), vec![vec!["a".to_string()]]);
    // Each group holds at least one string of every line the query keeps.
    let q = parse(r#"{app="api"} |~ "(ERROR|FATAL) \\w+" |= "disk""#).unwrap();
    for line in ["x FATAL disk y", "ERROR abc disk", "disk ERROR z"] {
        assert!(q.accepts(line));
        assert!(q.index_filters().iter().all(|g| g.iter().any(|s| line.contains(s.as_str()))), "{line}");
    }
}

/// `|>` / `!>` (Loki 3's pattern filters): the whole line must match; captures need no name
/// and must not be empty; the literals of `|>` narrow the index search.
#[test]
fn pattern_line_filters() {
    let q = parse(r#"{app="api"} |> "<_> level=error msg=<_>""#).unwrap();
    assert!(q.accepts("ts=1 level=error msg=boom"));
    assert!(!q.accepts("level=error msg=boom"), "the first capture is empty");
    assert!(!q.accepts("ts=1 level=error msg="), "the last capture is empty");
    assert!(!q.accepts("ts=1 level=info msg=boom"));
    assert_eq!(q.index_filters(), vec![vec![" level=error msg=".to_string()]]);
    // A final literal: nothing may follow it; a first literal: the line starts with it.
    let q = parse(r#"{app="api"} |> "GET <_> 200""#).unwrap();
    assert!(q.accepts("GET /a 200"));
    assert!(!q.accepts("GET /a 200 12ms"));
    assert!(!q.accepts("x GET /a 200"));
    assert_eq!(q.index_filters(), vec![vec!["GET ".to_string()], vec![" 200".to_string()]]);
    // Literals match at their first occurrence after the previous one (no backtracking).
    let q = parse(r#"{app="api"} |> "<_>a<_>""#).unwrap();
    assert!(q.accepts("xay") && !q.accepts("xa") && !q.accepts("ay"));
    let q = parse(r#"{app="api"} !> "<_> level=debug <_>" |= "x""#).unwrap();
    assert!(q.accepts("x level=info y") && !q.accepts("x level=debug y"));
    assert!(parse(r#"{app="api"} |> "<_><_>""#).is_err(), "consecutive captures");
    let q = parse(r#"{app="api"} |> "<_>""#).unwrap();
    assert!(q.accepts("anything") && !q.accepts(""));
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
    assert!(err(r#"{app="a"} | logfmt --strict --nope"#).contains("unknown flag \"--nope\" of `| logfmt`"));
    assert!(err(r#"{app="a"} | json --strict"#).contains("unknown flag"));
    assert!(err(r#"{app="a"} | label_format __error__="x""#).contains("__error__ cannot be formatted"));
    assert!(err(r#"{app="a"} | label_format a=b, a="{{.c}}""#).contains("multiple label name 'a' not allowed"));
    assert!(err(r#"{app="a"} | drop level=~"(""#).contains("invalid regular expression"));
    assert!(err(r#"{app="a"} | line_format_json"#).contains("not supported yet"));
    assert!(err(r#"{app="a"} | json a="b..c""#).contains("invalid json expression"));
    assert!(err(r#"{app="a"} | json a="#).contains("expected"));
    assert!(err(r#"{app="a"} | line_format "{{ .x | sha256 }}""#).contains("invalid line_format template: function \"sha256\" not defined"));
    assert!(err(r#"{app="a"} | label_format y="{{ html .x }}""#).contains("invalid template for label \"y\": template function \"html\" is not supported yet"));
    assert!(err(r#"rate({app="a"}[5m]) and 1"#).contains("needs a vector on both sides"));
    assert!(err(r#"rate({app="a"}[5m]) > on (app) 2"#).contains("vector on both sides"));
    assert!(err(r#"rate({app="a"}[5m]) and on (app) group_left rate({app="b"}[5m])"#).contains("no grouping"));
    assert!(err(r#"1 > 2"#).contains("need the bool modifier"));
    assert!(err(r#"rate({app="a"}[5m]) + bool 2"#).contains("only comparison operators"));
    assert!(err(r#"label_replace(rate({app="a"}[5m]), "a-b", "x", "app", "(.*)")"#).contains("invalid destination"));
    assert!(err(r#"label_replace(rate({app="a"}[5m]), "a", "x", "app", "(")"#).contains("invalid regular expression"));
    assert!(err(r#"label_replace(rate({app="a"}[5m]), "a", "x", "app")"#).contains("expected"));
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
    // Untrusted input: deep nesting is refused, not a stack overflow.
    let deep = format!(
        "{}count_over_time({{a=\"b\"}}[1m]){}",
        "sum(".repeat(200),
        ")".repeat(200)
    );
    assert!(err(&deep).contains("nested too deeply"));
    let deep = format!(
        "{{a=\"b\"}} | {}x=\"1\"{}",
        "(".repeat(200),
        ")".repeat(200)
    );
    assert!(err(&deep).contains("nested too deeply"));
    assert!(parse(r#"{a="b"} | pattern "é<x> ü<y>""#).is_ok());
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
    let run = |line: &str| {
        q.process_line(&s, line)
            .map(|(l, line)| (l.into_iter().collect::<Vec<_>>(), line))
    };
    let (labels, line) = run(r#"{"level":"error","status":503,"req":{"path":"/a"}}"#).unwrap();
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
    assert_eq!(
        run(r#"{"level":"info","status":404,"req":{"path":"/b"}}"#)
            .unwrap()
            .1,
        "404 /b"
    );
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
        .process_line(
            &stream(&[("app", "api")]),
            "level=warn duration=1.5s size=1000",
        )
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
    assert!(
        q.process_line(&stream(&[("app", "api")]), "duration=1s size=10")
            .is_none()
    );
    // drop/keep with matchers, parsed: a label goes (or stays) only when its value matches.
    let q = parse(r#"{app="api"} | logfmt | drop level="debug", path | keep app, level, method=~"G.*""#).unwrap();
    let kept = |line: &str| q.process_line(&stream(&[("app", "api")]), line).unwrap().0.into_iter().collect::<Vec<_>>();
    assert_eq!(kept("level=debug method=GET path=/a"), vec![("app".into(), "api".into()), ("method".into(), "GET".into())]);
    assert_eq!(kept("level=info method=POST path=/a"), vec![("app".into(), "api".into()), ("level".into(), "info".into())]);
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

/// A record of stream `{app="…"}` without severity or attributes.
fn rec(app: &str, ts: i64, body: &str) -> LogRecord {
    LogRecord {
        labels: stream(&[("app", app)]),
        timestamp_ns: ts,
        body: body.into(),
        severity: String::new(),
        attributes: Vec::new(),
    }
}

fn mem() -> Mem {
    Mem(vec![
        rec("api", S, "error a status=500"),
        rec("api", 2 * S, "ok b status=200"),
        rec("api", 3 * S, "error c status=503"),
        rec("web", 2 * S + S / 2, "error dd status=404"),
    ])
}

/// Series as (label pairs, points).
type Evaluated = Vec<(Vec<(String, String)>, Vec<(i64, f64)>)>;

fn eval(q: &str, steps: &[i64]) -> Evaluated {
    eval_on(&mem(), q, steps)
}

/// The metric query `q` at `steps` over `store`.
fn eval_on(store: &dyn pharos_model::LogsReader, q: &str, steps: &[i64]) -> Evaluated {
    let Query::Metric(m) = parse_query(q).unwrap() else {
        panic!("not a metric query")
    };
    m.evaluate(store, steps)
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
        vec![
            (app("api"), vec![(2 * S, 2.0), (4 * S, 1.0)]),
            (app("web"), vec![(4 * S, 1.0)])
        ]
    );
    assert_eq!(
        eval(r#"rate({app=~".+"} |= "error" [2s])"#, &[2 * S, 4 * S]),
        vec![
            (app("api"), vec![(2 * S, 0.5), (4 * S, 0.5)]),
            (app("web"), vec![(4 * S, 0.5)])
        ]
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
        eval(
            r#"sum_over_time({app="api"} | logfmt | unwrap status [10s])"#,
            &[3 * S]
        ),
        vec![(app("api"), vec![(3 * S, 1203.0)])]
    );
    assert_eq!(
        eval(
            r#"max_over_time({app="api"} | logfmt | unwrap status [10s])"#,
            &[3 * S]
        ),
        vec![(app("api"), vec![(3 * S, 503.0)])]
    );
    // Extracted labels split series: status=500 and status=503 at 3s.
    let by_status = eval(
        r#"count_over_time({app="api"} |= "error" | logfmt [10s])"#,
        &[3 * S],
    );
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
        eval(
            r#"sum by (app) (count_over_time({app=~".+"} |= "error" [4s]))"#,
            &[t]
        ),
        vec![(app("api"), vec![(t, 2.0)]), (app("web"), vec![(t, 1.0)])]
    );
    assert_eq!(
        eval(r#"sum(count_over_time({app=~".+"}[4s])) by (app)"#, &[t])[0],
        (app("api"), vec![(t, 3.0)])
    );
    assert_eq!(
        eval(
            r#"avg without (app) (count_over_time({app=~".+"}[4s]))"#,
            &[t]
        ),
        vec![(vec![], vec![(t, 2.0)])]
    );
    assert_eq!(
        eval(r#"max(count_over_time({app=~".+"}[4s]))"#, &[t])[0].1,
        vec![(t, 3.0)]
    );
    assert_eq!(
        eval(r#"min(count_over_time({app=~".+"}[4s]))"#, &[t])[0].1,
        vec![(t, 1.0)]
    );
    assert_eq!(
        eval(r#"count(count_over_time({app=~".+"}[4s]))"#, &[t])[0].1,
        vec![(t, 2.0)]
    );
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

#[test]
fn stddev_and_stdvar_aggregations_by_hand() {
    // api 3, web 1: mean 2, variance ((3 - 2)² + (1 - 2)²) / 2 = 1.
    let t = 4 * S;
    let q = |op: &str| format!(r#"{op}(count_over_time({{app=~".+"}}[4s]))"#);
    assert_eq!(eval(&q("stdvar"), &[t]), vec![(vec![], vec![(t, 1.0)])]);
    assert_eq!(eval(&q("stddev"), &[t]), vec![(vec![], vec![(t, 1.0)])]);
    assert_eq!(eval(r#"stddev by (app) (count_over_time({app=~".+"}[4s]))"#, &[t]), vec![(app("api"), vec![(t, 0.0)]), (app("web"), vec![(t, 0.0)])]);
}

#[test]
fn arithmetic_vector_and_scalars_by_hand() {
    let t = 4 * S;
    // Grafana's Loki health check.
    assert_eq!(eval("vector(1)+vector(1)", &[t]), vec![(vec![], vec![(t, 2.0)])]);
    assert_eq!(eval("1 + 2 * 3 - 4 / 2", &[t]), vec![(vec![], vec![(t, 5.0)])]);
    // api: 3 lines in (0s, 4s], web: 1; times 2, divided by the 4s range: (3*2)/4 = 1.5.
    assert_eq!(
        eval(r#"count_over_time({app=~".+"}[4s]) * 2 / 4"#, &[t]),
        vec![(app("api"), vec![(t, 1.5)]), (app("web"), vec![(t, 0.5)])]
    );
    // Vector-vector matches identical label sets: errors (api 2) over all (api 3); web 1/1.
    assert_eq!(
        eval(
            r#"count_over_time({app=~".+"} |= "error" [4s]) / count_over_time({app=~".+"}[4s])"#,
            &[t]
        ),
        vec![(app("api"), vec![(t, 2.0 / 3.0)]), (app("web"), vec![(t, 1.0)])]
    );
    // Unmatched elements drop out: only api has "ok" lines.
    assert_eq!(
        eval(r#"sum by (app) (count_over_time({app=~".+"} |= "ok" [4s])) + 10"#, &[t]),
        vec![(app("api"), vec![(t, 11.0)])]
    );
}

#[test]
fn comparisons_modulo_and_power_by_hand() {
    let t = 4 * S;
    let counts = r#"count_over_time({app=~".+"}[4s])"#; // api 3, web 1 at 4s
    // A comparison with a number keeps the elements for which it holds, with their values.
    assert_eq!(eval(&format!("{counts} > 2"), &[t]), vec![(app("api"), vec![(t, 3.0)])]);
    assert_eq!(eval(&format!("{counts} <= 1"), &[t]), vec![(app("web"), vec![(t, 1.0)])]);
    assert_eq!(eval(&format!("{counts} != 3"), &[t]), vec![(app("web"), vec![(t, 1.0)])]);
    assert_eq!(eval(&format!("{counts} == 4"), &[t]), vec![]);
    // Number on the left: still the vector's values (Prometheus' rule).
    assert_eq!(eval(&format!("2 < {counts}"), &[t]), vec![(app("api"), vec![(t, 3.0)])]);
    // With bool every element stays, valued 1 or 0.
    assert_eq!(
        eval(&format!("{counts} >= bool 3"), &[t]),
        vec![(app("api"), vec![(t, 1.0)]), (app("web"), vec![(t, 0.0)])]
    );
    // Between two numbers bool is required, and the answer is a number.
    assert_eq!(eval("2 > bool 1", &[t]), vec![(vec![], vec![(t, 1.0)])]);
    // Comparisons bind looser than arithmetic: (3 * 2) > 5 holds for api only, whose element
    // keeps the left side's value, 6.
    assert_eq!(eval(&format!("{counts} * 2 > 5"), &[t]), vec![(app("api"), vec![(t, 6.0)])]);
    // Vector against vector on identical label sets, keeping the left value where it holds:
    // errors (api 2, web 1) against all lines (api 3, web 1).
    let errors = r#"count_over_time({app=~".+"} |= "error" [4s])"#;
    assert_eq!(eval(&format!("{errors} == {counts}"), &[t]), vec![(app("web"), vec![(t, 1.0)])]);
    assert_eq!(
        eval(&format!("{errors} < bool {counts}"), &[t]),
        vec![(app("api"), vec![(t, 1.0)]), (app("web"), vec![(t, 0.0)])]
    );
    // `%` takes the dividend's sign (Go's math.Mod); `^` groups from the right: 2^(3^2).
    assert_eq!(eval("7 % 3 * 10", &[t]), vec![(vec![], vec![(t, 10.0)])]);
    assert_eq!(eval("2 ^ 3 ^ 2", &[t]), vec![(vec![], vec![(t, 512.0)])]);
    assert_eq!(eval("2 * 3 ^ 2", &[t]), vec![(vec![], vec![(t, 18.0)])]);
    assert_eq!(eval(&format!("{counts} % 2"), &[t]), vec![(app("api"), vec![(t, 1.0)]), (app("web"), vec![(t, 1.0)])]);
    // A step where the filter drops every element has no point, others keep theirs.
    assert_eq!(eval(&format!("{counts} > 1"), &[2 * S, t]), vec![(app("api"), vec![(2 * S, 2.0), (t, 3.0)])]);
}

#[test]
fn offset_shifts_the_windows_not_the_steps() {
    // Lines: api 1s, 2s, 3s; web 2.5s. Windows (t - 1s - 2s, t - 1s] at t = 4s: (1s, 3s].
    let t = 4 * S;
    assert_eq!(
        eval(r#"count_over_time({app=~".+"}[2s] offset 1s)"#, &[t]),
        vec![(app("api"), vec![(t, 2.0)]), (app("web"), vec![(t, 1.0)])]
    );
    // The same windows as without offset one second earlier, reported at the later steps.
    assert_eq!(
        eval(r#"count_over_time({app="api"}[2s] offset 1s)"#, &[3 * S, t]),
        eval(r#"count_over_time({app="api"}[2s])"#, &[2 * S, 3 * S])
            .into_iter()
            .map(|(l, p)| (l, p.into_iter().map(|(ts, v)| (ts + S, v)).collect()))
            .collect::<Evaluated>()
    );
    // A negative offset looks ahead: (1s, 3s] again, from t = 2s.
    assert_eq!(
        eval(r#"count_over_time({app="api"}[2s] offset -1s)"#, &[2 * S]),
        vec![(app("api"), vec![(2 * S, 2.0)])]
    );
    // Week-over-week style: the current count over the count an offset earlier (3 / 2).
    assert_eq!(
        eval(r#"count_over_time({app="api"}[2s]) / count_over_time({app="api"}[2s] offset 1s)"#, &[t]),
        vec![(app("api"), vec![(t, 1.0 / 2.0)])]
    );
    let err = |q: &str| parse_query(q).unwrap_err().to_string();
    assert!(err(r#"count_over_time({app="a"}[5m] offset x)"#).contains("invalid offset"));
}

#[test]
fn json_with_expressions_feeds_label_filters() {
    let q = parse(r#"{app="api"} | json code="resp.code", first=`hosts[0]`, level | code >= 500 | level="error""#).unwrap();
    let stream = stream(&[("app", "api")]);
    let r = |body: &str| LogRecord::new(stream.clone(), 1, body, "");
    let (labels, _) = q.process(&r(r#"{"level":"error","resp":{"code":503},"hosts":["h1"]}"#)).unwrap();
    assert_eq!(labels.get("code"), Some("503"));
    assert_eq!(labels.get("first"), Some("h1"));
    assert!(q.process(&r(r#"{"level":"error","resp":{"code":404}}"#)).is_none());
    assert!(q.process(&r(r#"{"level":"info","resp":{"code":500}}"#)).is_none());
}

#[test]
fn unwrap_statistics_and_quantiles_by_hand() {
    let rec = |ts: i64, ms: u32| LogRecord::new(stream(&[("app", "api")]), ts, format!(r#"{{"ms":{ms}}}"#), "");
    // Time order 10, 20, 40, 30: mean 25, squared deviations 225 + 25 + 225 + 25 = 500.
    let store = Mem(vec![rec(S, 10), rec(2 * S, 20), rec(3 * S, 40), rec(4 * S, 30)]);
    let t = 4 * S;
    let run = |f: &str| -> f64 {
        let q = format!(r#"{f}{{app="api"}} | json | unwrap ms [4s])"#);
        let Query::Metric(m) = parse_query(&q).unwrap() else { panic!("not a metric query") };
        let out = m.evaluate(&store, &[t]).unwrap();
        assert_eq!(out.len(), 1, "{q}");
        out[0].1[0].1
    };
    // (Prometheus' compensated running mean gives 125 within one ulp.)
    assert!((run("stdvar_over_time(") - 125.0).abs() < 1e-12);
    assert!((run("stddev_over_time(") - 125f64.sqrt()).abs() < 1e-12);
    assert_eq!(run("first_over_time("), 10.0);
    assert_eq!(run("last_over_time("), 30.0);
    // Sorted 10, 20, 30, 40: φ = 0.5 sits halfway between ranks 1 and 2, φ = 0.9 at rank 2.7.
    assert_eq!(run("quantile_over_time(0.5, "), 25.0);
    assert!((run("quantile_over_time(0.9, ") - 37.0).abs() < 1e-12);
    assert_eq!(run("quantile_over_time(0, "), 10.0);
    assert_eq!(run("quantile_over_time(1, "), 40.0);
    assert_eq!(run("quantile_over_time(1.5, "), f64::INFINITY);
    assert_eq!(run("quantile_over_time(-1, "), f64::NEG_INFINITY);
    // As a counter: 10, 20, 40, then 30 is a reset, so the 40 before it is added back:
    // increase 30 - 10 + 40 = 60 over samples 1s..4s (3 s sampled) in the window (0s, 4s].
    // Prometheus extrapolates towards the start by the 1 s gap (under 1.1 × the 1 s average
    // interval), but not past the counter's zero point, 3 s × 10/60 = 0.5 s before the first
    // sample; the last sample is at the window's end. 60 × (3 + 0.5) / 3 = 70 over 4 s.
    let expected = 70.0 / 4.0;
    assert!((run("rate_counter(") - expected).abs() < 1e-9, "{} vs {expected}", run("rate_counter("));
    let err = |q: &str| parse_query(q).unwrap_err().to_string();
    assert!(err(r#"quantile_over_time(x, {app="a"} | unwrap ms [1m])"#).contains("invalid quantile"));
    assert!(err(r#"stddev_over_time({app="a"}[1m])"#).contains("unwrap"));
    assert!(err(r#"count_over_time({app="a"}[1m]) by (app)"#).contains("only allowed"));
}

#[test]
fn grouping_on_an_unwrapped_range_function_shares_the_window() {
    let rec = |app: &str, pod: &str, ts: i64, ms: u32| {
        LogRecord::new(stream(&[("app", app), ("pod", pod)]), ts, format!(r#"{{"ms":{ms}}}"#), "")
    };
    // api has two pods: 10 and 30 on p1, 20 on p2; web 5 on w1.
    let store = Mem(vec![rec("api", "p1", S, 10), rec("api", "p2", 2 * S, 20), rec("api", "p1", 3 * S, 30), rec("web", "w1", 3 * S, 5)]);
    let t = 4 * S;
    let run = |q: &str| -> Evaluated {
        let Query::Metric(m) = parse_query(q).unwrap() else { panic!("not a metric query") };
        m.evaluate(&store, &[t])
            .unwrap()
            .into_iter()
            .map(|(l, p)| (l.iter().map(|(k, v)| (k.into(), v.into())).collect(), p))
            .collect()
    };
    // by (app): api's window holds 10, 20, 30 from both pods: the median is 20, not a mean of
    // per-pod medians.
    assert_eq!(
        run(r#"quantile_over_time(0.5, {app=~".+"} | json | unwrap ms [4s]) by (app)"#),
        vec![(app("api"), vec![(t, 20.0)]), (app("web"), vec![(t, 5.0)])]
    );
    // without (pod) keeps app (the parser's labels are unwrapped away).
    assert_eq!(
        run(r#"max_over_time({app=~".+"} | json | unwrap ms [4s]) without (pod)"#),
        vec![(app("api"), vec![(t, 30.0)]), (app("web"), vec![(t, 5.0)])]
    );
    // Ungrouped: one series per stream.
    assert_eq!(run(r#"last_over_time({app="api"} | json | unwrap ms [4s])"#).len(), 2);
}

#[test]
fn filters_after_unpack_or_decolorize_see_the_new_line_and_skip_the_index() {
    let q = parse(r#"{app="api"} |= "a" | unpack |= "GET" | decolorize |= "red ok""#).unwrap();
    assert_eq!(q.index_filters(), vec![vec!["a".to_string()]], "only the filter before unpack");
    let stream = stream(&[("app", "api")]);
    let line = "{\"_entry\":\"GET \\u001b[31mred\\u001b[0m ok\",\"a\":\"1\"}";
    let (labels, out) = q.process(&LogRecord::new(stream.clone(), 1, line, "")).unwrap();
    assert_eq!(out, "GET red ok");
    assert_eq!(labels.get("a"), Some("1"));
    let q = parse(r#"{app="api"} | logfmt host, port="p" | port = 80"#).unwrap();
    assert!(q.process(&LogRecord::new(stream.clone(), 1, "host=h p=80", "")).is_some());
    assert!(q.process(&LogRecord::new(stream, 1, "host=h p=81", "")).is_none());
}

#[test]
fn absent_over_time_answers_where_a_window_is_empty() {
    // Lines: api 1s, 2s, 3s; web 2.5s. Windows of 1s at 2s, 3s, 5s: (1s, 2s], (2s, 3s], (4s, 5s].
    let steps = [2 * S, 3 * S, 5 * S];
    assert_eq!(
        eval(r#"absent_over_time({app="web"}[1s])"#, &steps),
        vec![(app("web"), vec![(2 * S, 1.0), (5 * S, 1.0)])],
        "web has a line in (2s, 3s] only"
    );
    assert_eq!(eval(r#"absent_over_time({app="api"}[1s])"#, &steps), vec![(app("api"), vec![(5 * S, 1.0)])]);
    // Only `=` matchers label the answer; any entry of any matched stream makes it empty.
    assert_eq!(eval(r#"absent_over_time({app=~"a.*", team="x"}[1s])"#, &[5 * S]), vec![(vec![("team".to_string(), "x".to_string())], vec![(5 * S, 1.0)])]);
    assert_eq!(eval(r#"absent_over_time({app=~".+"} |= "error" [1s])"#, &steps), vec![(vec![], vec![(2 * S, 1.0), (5 * S, 1.0)])]);
}

#[test]
fn set_operators_by_hand() {
    let t = 4 * S;
    let counts = r#"count_over_time({app=~".+"}[4s])"#; // api 3, web 1
    let ok = r#"count_over_time({app=~".+"} |= "ok" [4s])"#; // api 1
    assert_eq!(eval(&format!("{counts} and {ok}"), &[t]), vec![(app("api"), vec![(t, 3.0)])]);
    assert_eq!(eval(&format!("{counts} unless {ok}"), &[t]), vec![(app("web"), vec![(t, 1.0)])]);
    // `or`: all of the left side, and the right side's label sets the left lacks.
    assert_eq!(
        eval(&format!("{ok} or {counts}"), &[t]),
        vec![(app("api"), vec![(t, 1.0)]), (app("web"), vec![(t, 1.0)])]
    );
    // `and` binds tighter than `or`, comparisons tighter than both: (counts > 2) or (ok and counts).
    assert_eq!(eval(&format!("{counts} > 2 or {ok} and {counts}"), &[t]), vec![(app("api"), vec![(t, 3.0)])]);
    assert_eq!(eval(&format!("{counts} < 2 or {ok}"), &[t]), vec![(app("api"), vec![(t, 1.0)]), (app("web"), vec![(t, 1.0)])]);
}

#[test]
fn label_replace_by_hand() {
    let t = 4 * S;
    let counts = r#"count_over_time({app=~".+"}[4s])"#; // api 3, web 1
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    // The regex is anchored: "a(.*)" matches "api" (group "pi"), not "web".
    assert_eq!(
        eval(&format!(r#"label_replace({counts}, "short", "x-$1", "app", "a(.*)")"#), &[t]),
        vec![(vec![pair("app", "api"), pair("short", "x-pi")], vec![(t, 3.0)]), (app("web"), vec![(t, 1.0)])]
    );
    // An empty replacement removes the label; a missing source label reads as empty.
    assert_eq!(eval(&format!(r#"label_replace({counts}, "app", "", "app", "web")"#), &[t]), vec![(vec![], vec![(t, 1.0)]), (app("api"), vec![(t, 3.0)])]);
    assert_eq!(
        eval(&format!(r#"sum(label_replace({counts}, "z", "none", "nope", ""))"#), &[t]),
        vec![(vec![], vec![(t, 4.0)])]
    );
    // Two series ending with one label set is an execution error, as in PromQL.
    let Query::Metric(m) = parse_query(&format!(r#"label_replace({counts}, "app", "same", "app", ".*")"#)).unwrap() else { panic!() };
    let e = m.evaluate(&mem(), &[t]).unwrap_err();
    assert!(e.to_string().contains("same labelset"), "{e}");
}

#[test]
fn vector_matching_by_hand() {
    let t = 4 * S;
    let counts = r#"count_over_time({app=~".+"}[4s])"#; // api 3, web 1
    let total = format!("sum({counts})"); // 4, no labels
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    let fails = |q: &str| -> String {
        let Query::Metric(m) = parse_query(q).unwrap() else { panic!("not a metric query") };
        m.evaluate(&mem(), &[t]).unwrap_err().to_string()
    };
    // Each app's share of all lines: many (apps) to one (the total).
    let shares = vec![(app("api"), vec![(t, 0.75)]), (app("web"), vec![(t, 0.25)])];
    assert_eq!(eval(&format!("{counts} / on() group_left {total}"), &[t]), shares);
    assert_eq!(eval(&format!("{counts} / ignoring(app) group_left {total}"), &[t]), shares);
    // group_right: the left side is the "one"; the value is still left op right.
    assert_eq!(
        eval(&format!("{total} / on() group_right {counts}"), &[t]),
        vec![(app("api"), vec![(t, 4.0 / 3.0)]), (app("web"), vec![(t, 4.0)])]
    );
    // Extra labels copied from the "one" side.
    let team_total = format!(r#"label_replace({total}, "team", "core", "", "")"#);
    assert_eq!(
        eval(&format!("{counts} / on() group_left(team) {team_total}"), &[t]),
        vec![
            (vec![pair("app", "api"), pair("team", "core")], vec![(t, 0.75)]),
            (vec![pair("app", "web"), pair("team", "core")], vec![(t, 0.25)]),
        ]
    );
    // One-to-one with on(): the result keeps only the `on` labels.
    assert_eq!(
        eval(&format!(r#"{counts} - on(app) count_over_time({{app=~".+"}} |= "error" [4s])"#), &[t]),
        vec![(app("api"), vec![(t, 1.0)]), (app("web"), vec![(t, 0.0)])]
    );
    // Without group_left two left elements for one key is an error, as is a non-unique "one" side.
    assert!(fails(&format!("{counts} / on() {total}")).contains("many-to-one matching must be explicit"));
    assert!(fails(&format!("{counts} / on() group_left {counts}")).contains("many-to-many"));
    // Set operators match on the key too.
    assert_eq!(eval(&format!("{counts} and on() vector(1)"), &[t]), vec![(app("api"), vec![(t, 3.0)]), (app("web"), vec![(t, 1.0)])]);
    assert_eq!(eval(&format!("{counts} unless ignoring(app) vector(1)"), &[t]), vec![]);
}

fn with_attrs(app: &str, ts: i64, body: &str, attrs: &[(&str, &str)]) -> LogRecord {
    LogRecord {
        attributes: pharos_model::normalize_attributes(
            attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ),
        ..LogRecord::new(stream(&[("app", app)]), ts, body, "")
    }
}

#[test]
fn label_equalities_are_the_equality_filters_right_after_the_selector() {
    let eq = |q: &str| parse(q).unwrap().label_equalities();
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(eq(r#"{app="x"} | trace_id="abc""#), vec![pair("trace_id", "abc")]);
    assert_eq!(
        eq(r#"{app="x"} |= "err" | trace_id="abc" and user="ada" | status > 5 | pod="p""#),
        vec![pair("trace_id", "abc"), pair("user", "ada"), pair("pod", "p")]
    );
    assert_eq!(eq(r#"{app="x"} | trace_id="abc" or user="ada""#), vec![]);
    assert_eq!(eq(r#"{app="x"} | trace_id!="abc" | user=~"a.*" | k="""#), vec![]);
    assert_eq!(eq(r#"{app="x"} | json | trace_id="abc""#), vec![], "a parser may set it");
    assert_eq!(eq(r#"{app="x"} | label_format trace_id=x | trace_id="abc""#), vec![]);
    assert_eq!(eq(r#"{app="x"} | __error__="x""#), vec![]);
}

#[test]
fn attributes_are_labels_in_the_pipeline() {
    let r = with_attrs("api", 1, r#"{"user":"from-line"}"#, &[("trace_id", "t1"), ("app", "meta-app")]);
    let q = parse(r#"{app="api"} | trace_id="t1""#).unwrap();
    let (labels, _) = q.process(&r).unwrap();
    assert_eq!(
        labels,
        stream(&[("app", "api"), ("app_extracted", "meta-app"), ("trace_id", "t1")]),
        "an attribute named like a stream label is app_extracted"
    );
    assert!(parse(r#"{app="api"} | trace_id="t2""#).unwrap().process(&r).is_none());
    assert!(parse(r#"{app="api"} | app="meta-app""#).unwrap().process(&r).is_none(), "the stream label wins");
    let (labels, line) = parse(r#"{app="api"} | json | line_format "{{.trace_id}}/{{.user}}""#).unwrap().process(&r).unwrap();
    assert_eq!(line, "t1/from-line");
    assert_eq!(labels.get("user"), Some("from-line"));
    assert!(parse(r#"{app="api"} | drop trace_id"#).unwrap().process(&r).unwrap().0.get("trace_id").is_none());
}

#[test]
fn metric_queries_group_by_attributes() {
    let store = Mem(vec![
        with_attrs("api", S, "a", &[("trace_id", "t1")]),
        with_attrs("api", 2 * S, "b", &[("trace_id", "t2")]),
        with_attrs("api", 3 * S, "c", &[("trace_id", "t1"), ("user", "ada")]),
        with_attrs("web", 3 * S, "d", &[("trace_id", "t1")]),
        with_attrs("web", 3 * S, "e", &[]),
    ]);
    let run = |q: &str| -> Evaluated {
        let Query::Metric(m) = parse_query(q).unwrap() else { panic!("not a metric query") };
        m.evaluate(&store, &[4 * S])
            .unwrap()
            .into_iter()
            .map(|(l, p)| (l.iter().map(|(k, v)| (k.into(), v.into())).collect(), p))
            .collect()
    };
    let trace = |t: &str| vec![("trace_id".to_string(), t.to_string())];
    assert_eq!(
        run(r#"sum by (trace_id) (count_over_time({app=~".+"}[10s]))"#),
        vec![(vec![], vec![(4 * S, 1.0)]), (trace("t1"), vec![(4 * S, 3.0)]), (trace("t2"), vec![(4 * S, 1.0)])]
    );
    assert_eq!(
        run(r#"sum by (app) (count_over_time({app=~".+"} | trace_id="t1" [10s]))"#),
        vec![(app("api"), vec![(4 * S, 2.0)]), (app("web"), vec![(4 * S, 1.0)])]
    );
}

/// A store that checks `contains_any` exactly and, when allowed, returns records without their
/// body (as a split answering `|=` from its index does) or severity; it remembers what it was
/// allowed: `(body_unused, severity_unused)` per search.
struct Leaving(Vec<LogRecord>, std::sync::Mutex<Vec<(bool, bool)>>);

impl pharos_model::LogsReader for Leaving {
    fn search_logs(&self, q: &pharos_model::LogSearch<'_>) -> std::result::Result<Vec<LogRecord>, String> {
        self.1.lock().unwrap().push((q.body_unused, q.severity_unused));
        let emptied = |keep: bool, s: &String| if keep { s.clone() } else { String::new() };
        Ok(self
            .0
            .iter()
            .filter(|r| q.accepts(r))
            .map(|r| LogRecord { body: emptied(!q.body_unused, &r.body), severity: emptied(!q.severity_unused, &r.severity), ..r.clone() })
            .collect())
    }

    fn select_logs(&self, _: &[LabelMatcher], _: &[String], _: i64, _: i64) -> std::result::Result<Vec<LogRecord>, String> {
        unreachable!("search_logs is overridden")
    }
}

impl Leaving {
    fn new(records: Vec<LogRecord>) -> Self {
        Leaving(records, Default::default())
    }

    /// The answer of the metric query `q` at 4 s, and what its one search was allowed to leave out.
    fn run(&self, q: &str) -> (Evaluated, (bool, bool)) {
        self.1.lock().unwrap().clear();
        let out = eval_on(self, q, &[4 * S]);
        let seen = self.1.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{q}");
        (out, seen[0])
    }
}

#[test]
fn line_counts_through_substring_filters_do_not_need_bodies() {
    let store = Leaving::new(mem().0);
    let run = |q: &str| -> (Evaluated, bool) {
        let (out, (body_unused, _)) = store.run(q);
        (out, body_unused)
    };
    // mem(): api "error a status=500" (1s), "ok b status=200" (2s), "error c status=503" (3s);
    // web "error dd status=404" (2.5s).
    let at4 = |v: f64| vec![(4 * S, v)];
    assert_eq!(
        run(r#"count_over_time({app=~".+"} |= "error" [10s])"#),
        (vec![(app("api"), at4(2.0)), (app("web"), at4(1.0))], true)
    );
    assert_eq!(run(r#"sum(rate({app=~".+"} |= "error" |= "status" | app="api" [10s]))"#), (vec![(vec![], at4(0.2))], true));
    assert_eq!(run(r#"count_over_time({app="api"} |= "error" |= "nowhere" [10s])"#), (vec![], true));
    // The line itself is needed: its length, a regex, a parser, a rewritten line.
    assert_eq!(run(r#"bytes_over_time({app="api"} |= "error" [10s])"#), (vec![(app("api"), at4(36.0))], false));
    assert_eq!(run(r#"count_over_time({app=~".+"} |= "error" |~ "50." [10s])"#), (vec![(app("api"), at4(2.0))], false));
    assert!(!run(r#"count_over_time({app=~".+"} != "ok" [10s])"#).1);
    // A `|=` after `distinct` is checked after it, on the line: the store cannot answer it.
    // The first line of each app is api's "error a" (1s) and web's "error dd" (2.5s).
    assert_eq!(
        run(r#"count_over_time({app=~".+"} | distinct app |= "error" [10s])"#),
        (vec![(app("api"), at4(1.0)), (app("web"), at4(1.0))], false)
    );
    assert_eq!(run(r#"count_over_time({app=~".+"} |= "ok" | distinct app [10s])"#), (vec![(app("api"), at4(1.0))], true));
    assert_eq!(
        run(r#"sum(count_over_time({app=~".+"} |= "error" | logfmt | status >= 500 [10s]))"#),
        (vec![(vec![], at4(2.0))], false)
    );
    assert_eq!(
        run(r#"sum(count_over_time({app=~".+"} | line_format "{{.app}}" |= "api" [10s]))"#),
        (vec![(vec![], at4(3.0))], false)
    );
}

/// `detected_level` comes from a record's severity; a query whose answer cannot depend on it
/// (a `sum` not grouped by it, over a function that adds up per record) reads no severity, and
/// gets the answer it gets with them.
#[test]
fn sums_that_drop_the_level_read_no_severity() {
    let rec = |app: &str, ts: i64, body: &str, sev: &str| LogRecord::new(stream(&[("app", app)]), ts, body, sev);
    let store = Leaving::new(vec![
        rec("api", S, "error a", "ERROR"),
        rec("api", 2 * S, "ok b", "INFO"),
        rec("api", 3 * S, "error c", "error"),
        rec("web", 2 * S, "error dd", "WARN"),
        rec("web", 3 * S, "error e", ""),
    ]);
    let run = |q: &str| -> (Evaluated, bool) {
        let (out, (_, severity_unused)) = store.run(q);
        (out, severity_unused)
    };
    let at4 = |v: f64| vec![(4 * S, v)];
    let level = |l: &str| vec![("detected_level".to_string(), l.to_string())];
    assert_eq!(run(r#"sum(count_over_time({app=~".+"} |= "error" [10s]))"#), (vec![(vec![], at4(4.0))], true));
    assert_eq!(
        run(r#"sum by (app) (count_over_time({app=~".+"} [10s]))"#),
        (vec![(app("api"), at4(3.0)), (app("web"), at4(2.0))], true)
    );
    assert_eq!(run(r#"sum without (detected_level, app) (bytes_over_time({app=~".+"} [10s]))"#), (vec![(vec![], at4(33.0))], true));
    // The level is in the answer, or splitting a stream by level changes it.
    assert_eq!(
        run(r#"sum by (detected_level) (count_over_time({app=~".+"} |= "error" [10s]))"#),
        (vec![(vec![], at4(1.0)), (level("error"), at4(2.0)), (level("warn"), at4(1.0))], false)
    );
    assert_eq!(run(r#"count(count_over_time({app="api"} [10s]))"#), (vec![(vec![], at4(2.0))], false));
    assert!(!run(r#"sum without (app) (count_over_time({app="api"} [10s]))"#).1);
    assert_eq!(
        run(r#"count_over_time({app="web"} [10s])"#),
        (vec![(app("web"), at4(1.0)), ([app("web"), level("warn")].concat(), at4(1.0))], false)
    );
    // A stage may read the level; a function over unwrapped values is not a sum per record.
    assert_eq!(run(r#"sum(count_over_time({app=~".+"} | detected_level="error" [10s]))"#), (vec![(vec![], at4(2.0))], false));
    assert!(!run(r#"sum(max_over_time({app=~".+"} | regexp "(?P<n>[a-z]+)$" | unwrap n | __error__="" [10s]))"#).1);
}

#[test]
fn distinct_drops_an_entry_when_any_named_label_repeats() {
    let q = parse(r#"{app="api"} | logfmt | distinct user, region |= "ok""#).unwrap();
    assert!(q.has_distinct());
    // The `|=` after `distinct` is not checked ahead of it, by the index or the store.
    assert!(q.index_filters().is_empty() && q.required_substrings().is_empty());
    assert_eq!(q.without_body_filters().map(|p| p.stages.len()), None, "logfmt reads the line");
    let q2 = parse(r#"{app="api"} |= "a" | distinct user |= "b""#).unwrap();
    assert_eq!(q2.index_filters(), vec![vec!["a".to_string()]]);
    let rest = q2.without_body_filters().unwrap();
    assert!(matches!(rest.stages.as_slice(), [Stage::Distinct(_), Stage::Line(LineFilter::Contains(b))] if b == "b"));

    let record = |body: &str| LogRecord {
        labels: stream(&[("app", "api")]),
        timestamp_ns: 0,
        body: body.to_string(),
        severity: String::new(),
        attributes: Vec::new(),
    };
    let mut seen = pipeline::DistinctSeen::default();
    let mut kept = |body: &str| q.process_record_distinct(&record(body), &mut seen).is_some();
    assert!(kept("user=ann region=eu ok"));
    // A user seen before drops the entry, before its region is looked at (us is not
    // remembered).
    assert!(!kept("user=ann region=us ok"));
    // A new user is remembered even when the region then drops the entry.
    assert!(!kept("user=bob region=eu ok"));
    assert!(!kept("user=bob region=us ok"));
    assert!(kept("user=cid region=us ok"));
    // A missing label keeps the entry, with what was remembered before it.
    assert!(kept("region=ap ok"));
    assert!(kept("user=dan ok"));
    assert!(!kept("user=dan region=af ok"));
    assert!(kept("user=eve region=ap ok"), "ap was not remembered above");
    // Let through by `distinct`, then dropped by the line filter: remembered all the same.
    assert!(!kept("user=fay region=sa"));
    assert!(!kept("user=fay region=sb ok"));
    // Without state, the stage passes everything (the store's pre-filter).
    assert!(q.process_record(&record("user=ann region=eu ok")).is_some());
    assert!(parse(r#"{app="api"} | distinct"#).is_err());
}

/// In a metric query, `distinct` lets through the first entry with each value in time order,
/// over all streams, from the start of the range read: a value counts once, at its first line.
#[test]
fn distinct_in_metric_queries_counts_first_occurrences_in_time_order() {
    // Handed over newest first and stream by stream: the evaluation orders them itself.
    let store = Mem(vec![
        rec("web", 4 * S, "user=ann"),
        rec("api", 5 * S, "user=bob"),
        rec("api", 3 * S, "user=bob"),
        rec("api", S, "user=ann"),
        rec("web", 2 * S, "user=cid"),
        rec("api", 2 * S, "user=cid"),
        rec("web", 6 * S, "other"),
    ]);
    let run = |q: &str, steps: &[i64]| eval_on(&store, q, steps);
    // ann at 1s (api), cid at 2s (api before web: same time, labels in order), bob at 3s, and
    // the line without a user (a missing label keeps the entry).
    assert_eq!(
        run(r#"sum by (app) (count_over_time({app=~".+"} | logfmt | distinct user [10s]))"#, &[6 * S]),
        vec![(app("api"), vec![(6 * S, 3.0)]), (app("web"), vec![(6 * S, 1.0)])]
    );
    assert_eq!(
        run(r#"sum(count_over_time({app=~".+"} | logfmt | distinct user [2s]))"#, &[2 * S, 4 * S, 6 * S]),
        vec![(vec![], vec![(2 * S, 2.0), (4 * S, 1.0), (6 * S, 1.0)])]
    );
    // Without `distinct`, every line counts.
    assert_eq!(
        run(r#"sum(count_over_time({app=~".+"} | logfmt [10s]))"#, &[6 * S]),
        vec![(vec![], vec![(6 * S, 7.0)])]
    );
}

/// As Loki, a metric query fails (400) when a series of its range function carries a pipeline
/// error, naming the series and how to skip it; filtering the errors out, or grouping them
/// away, lets it run.
#[test]
fn pipeline_errors_fail_metric_queries_unless_filtered() {
    let store = Mem(vec![rec("api", S, r#"{"level":"error"}"#), rec("api", 2 * S, "not json"), rec("web", S, r#"{"level":"info"}"#)]);
    let fails = |q: &str| {
        let Query::Metric(m) = parse_query(q).unwrap() else { panic!("not a metric query") };
        match m.evaluate(&store, &[3 * S]) {
            Err(Error::BadData(msg)) => msg,
            other => panic!("{q}: expected a pipeline error, got {other:?}"),
        }
    };
    for q in [r#"count_over_time({app=~".+"} | json [5s])"#, r#"sum(rate({app=~".+"} | json [5s]))"#] {
        let msg = fails(q);
        assert!(msg.starts_with(r#"pipeline error: 'JSONParserErr' for series: '{__error__="JSONParserErr", "#), "{msg}");
        assert!(msg.contains(r#"app="api"}'."#) && !msg.contains("web"), "{msg}");
        assert!(msg.ends_with(
            "Use a label filter to intentionally skip this error. (e.g | __error__!=\"JSONParserErr\").\n\
             To skip all potential errors you can match empty errors.(e.g __error__=\"\")\n\
             The label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )\n"
        ));
    }
    let counts = |q: &str| -> Vec<(Vec<(String, String)>, f64)> {
        eval_on(&store, q, &[3 * S]).into_iter().map(|(l, p)| (l, p[0].1)).collect()
    };
    let level = |a: &str, l: &str| vec![("app".to_string(), a.to_string()), ("level".to_string(), l.to_string())];
    assert_eq!(counts(r#"count_over_time({app=~".+"} | json | __error__="" [5s])"#), vec![(level("api", "error"), 1.0), (level("web", "info"), 1.0)]);
    assert_eq!(counts(r#"sum(count_over_time({app=~".+"} | json | __error__!="JSONParserErr" [5s]))"#), vec![(vec![], 2.0)]);
    assert_eq!(counts(r#"count_over_time({app=~".+"} [5s])"#).len(), 2, "no parser, no error");
}

/// An unwrapped value that does not convert marks its entry `SampleExtractionErr` (with Go's
/// error text as details), which fails the query as Loki does, unless a label filter after
/// `unwrap` drops it; an entry without the label has no value and no error.
#[test]
fn unwrap_conversion_errors_fail_unless_filtered_after_unwrap() {
    let store = Mem(vec![
        rec("api", S, "latency=1.5 took=2s"),
        rec("api", 2 * S, "latency=abc took=soon"),
        rec("api", 3 * S / 2, "no value here"),
        rec("api", 5 * S / 2, "latency=2.5 took=1m"),
    ]);
    let run = |q: &str| {
        let Query::Metric(m) = parse_query(q).unwrap() else { panic!("not a metric query") };
        m.evaluate(&store, &[3 * S]).map(|v| v.into_iter().map(|(_, p)| p[0].1).collect::<Vec<f64>>())
    };
    let msg = match run(r#"sum_over_time({app="api"} | logfmt | unwrap latency [5s])"#) {
        Err(Error::BadData(m)) => m,
        other => panic!("expected a pipeline error, got {other:?}"),
    };
    assert!(
        msg.starts_with(
            r#"pipeline error: 'SampleExtractionErr' for series: '{__error__="SampleExtractionErr", __error_details__="strconv.ParseFloat: parsing \"abc\": invalid syntax", app="api", took="soon"}'."#
        ),
        "{msg}"
    );
    // Each value's series keeps the other extracted label (`took`): one series per entry.
    assert_eq!(run(r#"sum(sum_over_time({app="api"} | logfmt | unwrap latency | __error__="" [5s]))"#).unwrap(), vec![4.0]);
    assert!(
        matches!(run(r#"sum_over_time({app="api"} | logfmt | unwrap latency | __error__!="" [5s])"#), Err(Error::BadData(_))),
        "kept errors fail"
    );
    // A filter before `unwrap` cannot see the conversion's error: the query still fails.
    assert!(run(r#"sum_over_time({app="api"} | logfmt | __error__="" | unwrap latency [5s])"#).is_err());
    let msg = format!("{:?}", run(r#"sum_over_time({app="api"} | logfmt | unwrap duration(took) [5s])"#).unwrap_err());
    assert!(msg.contains(r#"time: invalid duration \\\"soon\\\""#), "{msg}");
    assert_eq!(run(r#"sum(sum_over_time({app="api"} | logfmt | unwrap duration(took) | __error__="" [5s]))"#).unwrap(), vec![62.0]);
}
