use super::*;

fn record(body: &str) -> LogRecord {
    LogRecord {
        labels: Labels::from_pairs([
            ("cluster", "c1"),
            ("namespace", "shop"),
            ("pod", "web-0"),
            ("pod_uid", "u-1"),
            ("container", "app"),
            ("stream", "stdout"),
        ]),
        timestamp_ns: 1_714_564_800_000_000_000,
        body: body.into(),
        severity: String::new(),
        attributes: Vec::new(),
    }
}

fn transform(source: &str) -> RemapTransform {
    RemapTransform::build(&RemapConfig::inline(source), "t".into(), "logs.transforms[0]")
        .unwrap_or_else(|e| panic!("{e}"))
}

fn kept(outcome: RemapOutcome) -> LogRecord {
    match outcome {
        RemapOutcome::Keep(r) => r,
        RemapOutcome::Drop => panic!("record dropped"),
    }
}

#[test]
fn compile_errors_name_the_field_and_point_at_line_and_column() {
    // Line 2: the fallible `parse_json` call is not handled; VRL points at the assigned
    // expression, which starts at column 6 (after the five characters `.b = `).
    let source = ".a = 1\n.b = 2 + parse_json(.message)\n";
    let e = RemapTransform::build(&RemapConfig::inline(source), "t".into(), "logs.transforms[3]").unwrap_err();
    assert_eq!(e.field, "logs.transforms[3].source");
    assert!(e.message.contains("error[E103]"), "{}", e.message);
    assert!(e.message.contains(":2:6"), "{}", e.message);
    // A syntax error on line 1.
    let e = RemapTransform::build(&RemapConfig::inline(".message = = 1"), "t".into(), "logs.transforms[0]").unwrap_err();
    assert!(e.message.contains("syntax error") && e.message.contains(":1:"), "{}", e.message);
    // An unknown function.
    let e = compile(".x = no_such_function(.message)").unwrap_err();
    assert!(e.contains("undefined function"), "{e}");
}

#[test]
fn a_program_read_from_a_file_names_the_file_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.vrl");
    std::fs::write(&path, "# comment\n.x = parse_json(.message)\n").unwrap();
    let config = RemapConfig { source: None, file: Some(path.clone()), ..RemapConfig::inline("") };
    let e = RemapTransform::build(&config, "t".into(), "logs.transforms[0]").unwrap_err();
    assert_eq!(e.field, format!("logs.transforms[0].file ({})", path.display()));
    assert!(e.message.contains(":2:"), "{}", e.message);
    let missing = RemapConfig { source: None, file: Some(dir.path().join("nope.vrl")), ..RemapConfig::inline("") };
    let e = RemapTransform::build(&missing, "t".into(), "logs.transforms[0]").unwrap_err();
    assert_eq!(e.field, "logs.transforms[0].file");
    let both = RemapConfig { file: Some(path), ..RemapConfig::inline(".") };
    assert!(RemapTransform::build(&both, "t".into(), "x").unwrap_err().message.contains("not both"));
}

#[test]
fn json_is_parsed_and_fields_are_promoted() {
    let mut t = transform(
        r#"
        . = merge(., object!(parse_json!(.message)))
        .message = del(.msg)
        .severity = del(.level)
        .timestamp = parse_timestamp!(del(.ts), "%+")
        .labels.user_tier = del(.tier)
        .labels.attempt = del(.attempt)
        "#,
    );
    let line = r#"{"msg":"payment accepted","level":"warning","ts":"2024-05-01T12:00:05.5Z","tier":"gold","attempt":3,"order":17}"#;
    let r = kept(t.apply(record(line), None));
    assert_eq!(r.body, "payment accepted");
    assert_eq!(r.severity, "WARN", "known level names are normalized");
    // 2024-05-01T12:00:05.5Z, computed independently of the program: the record's 12:00:00
    // plus 5.5 s.
    assert_eq!(r.timestamp_ns, 1_714_564_800_000_000_000 + 5_500_000_000);
    assert_eq!(r.labels.get("user_tier"), Some("gold"));
    assert_eq!(r.labels.get("attempt"), Some("3"));
    assert_eq!(r.labels.get("order"), None, "fields left at the top level are not shipped");
    assert_eq!(r.labels.get("pod"), Some("web-0"), "identity labels stay");
}

#[test]
fn logfmt_and_label_names_are_sanitized() {
    let mut t = transform(
        r#"
        kv = parse_logfmt!(.message)
        .labels."http.method" = kv.method
        .labels.status = to_int!(kv.status)
        .message = kv.msg
        .labels.stream = null
        "#,
    );
    let r = kept(t.apply(record(r#"method=GET status=503 msg="upstream down""#), None));
    assert_eq!(r.body, "upstream down");
    assert_eq!(r.labels.get("http_method"), Some("GET"));
    assert_eq!(r.labels.get("status"), Some("503"));
    assert_eq!(r.labels.get("stream"), None, "null removes a label");
}

#[test]
fn secrets_are_redacted() {
    let mut t = transform(
        r#"
        .message = replace(.message, r'password=\S+', "password=***")
        .message = redact(.message, filters: [r'\b\d{4}-\d{4}-\d{4}-\d{4}\b'])
        "#,
    );
    let r = kept(t.apply(record("login user=bob password=hunter2 card=1234-5678-9012-3456 ok"), None));
    assert_eq!(r.body, "login user=bob password=*** card=[REDACTED] ok");
}

#[test]
fn abort_drops_and_counts_and_errors_follow_drop_on_error() {
    let source = r#"
        if contains(.message, "healthz") { abort }
        .message = upcase(string!(parse_json!(.message).msg))
    "#;
    let mut t = transform(source);
    assert_eq!(t.apply(record("GET /healthz 200"), None), RemapOutcome::Drop);
    assert_eq!(t.dropped.get(), 1);
    // Not JSON: a runtime error; by default the original record goes on, counted.
    let original = record("plain text");
    assert_eq!(t.apply(original.clone(), None), RemapOutcome::Keep(original));
    assert_eq!((t.errors.get(), t.dropped.get()), (1, 1));
    assert_eq!(kept(t.apply(record(r#"{"msg":"hi"}"#), None)).body, "HI");

    let config = RemapConfig { drop_on_error: true, drop_on_abort: false, ..RemapConfig::inline(source) };
    let mut strict = RemapTransform::build(&config, "t".into(), "x").unwrap();
    assert_eq!(strict.apply(record("plain text"), None), RemapOutcome::Drop);
    assert_eq!((strict.errors.get(), strict.dropped.get()), (1, 1));
    let health = record("GET /healthz 200");
    assert_eq!(strict.apply(health.clone(), None), RemapOutcome::Keep(health), "drop_on_abort: false keeps it");
}

#[test]
fn the_event_shows_kubernetes_metadata_read_only() {
    let mut t = transform(
        r#"
        app = .kubernetes.pod_labels.app
        if app == null { app = "none" }
        .labels.seen = join!([.kubernetes.pod_namespace, .kubernetes.pod_name, .kubernetes.container_name, app], "/")
        .kubernetes.pod_name = "changed"
        "#,
    );
    let pod = BTreeMap::from([("app".to_string(), "shop-web".to_string())]);
    let r = kept(t.apply(record("x"), Some(&pod)));
    assert_eq!(r.labels.get("seen"), Some("shop/web-0/app/shop-web"));
    assert_eq!(r.labels.get("pod"), Some("web-0"), ".kubernetes is not read back");
    let r = kept(t.apply(record("x"), None));
    assert_eq!(r.labels.get("seen"), Some("shop/web-0/app/none"));
}

#[test]
fn sanitize_label_names() {
    assert_eq!(sanitize_label_name("app.kubernetes.io/name"), "app_kubernetes_io_name");
    assert_eq!(sanitize_label_name("spark-app-selector"), "spark_app_selector");
    assert_eq!(sanitize_label_name("9lives"), "_9lives");
    assert_eq!(sanitize_label_name("ok_1"), "ok_1");
}

#[test]
fn typical_programs_compile() {
    for source in [
        ". = merge!(., parse_json!(.message))",
        ". |= object!(parse_json!(.message))",
        ". = merge(., parse_logfmt!(.message))",
        "if match(.message, r'^GET /health') { abort }",
        ".labels.env = \"prod\"",
        ".message = redact(.message, filters: [\"us_social_security_number\"])",
    ] {
        if let Err(e) = compile(source) {
            panic!("{source}: {e}");
        }
    }
}

#[test]
fn merge_with_untyped_json_must_handle_the_error_as_in_vector() {
    // `parse_json!` may return a non-object, so `merge` can fail: VRL (and so Vector) refuse
    // the unhandled form at compile time; `merge!` or `object!(…)` are the accepted spellings.
    let e = compile(". = merge(., parse_json!(.message))").unwrap_err();
    assert!(e.contains("error[E103]") && e.contains(":1:5"), "{e}");
}

#[test]
fn the_deploy_example_transforms_do_what_their_comments_say() {
    let yaml = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/agent-kafka.yaml"));
    let config = crate::AgentConfig::from_yaml(yaml).unwrap();
    let mut transforms = super::super::LogTransforms::build(&config.logs.transforms, None).unwrap();
    let input = vec![
        record("GET /healthz HTTP/1.1 200"),
        record(r#"{"msg":"login token=abc123 ok","level":"error"}"#),
        record("user=a password=hunter2 done"),
        record(r#"[1,2]"#),
    ];
    let out = transforms.apply(input, |_| None);
    let got: Vec<(&str, &str)> = out.iter().map(|r| (r.body.as_str(), r.severity.as_str())).collect();
    assert_eq!(
        got,
        [("login token=*** ok", "ERROR"), ("user=a password=*** done", ""), ("[1,2]", "")]
    );
}

#[test]
fn the_readme_transform_examples_compile_and_run() {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.contains("type: remap"))
        .collect();
    assert_eq!(blocks.len(), 2, "the agent.yaml reference and the transforms example");
    let full = crate::AgentConfig::from_yaml(blocks[0]).unwrap();
    assert_eq!(full.logs.transforms.len(), 1);
    let example: crate::config::LogsConfig = serde_yaml::from_str(blocks[1]).unwrap();
    let mut transforms = super::super::LogTransforms::build(&example.transforms, None).unwrap();
    let out = transforms.apply(
        vec![
            record("GET /healthz 200"),
            record(r#"{"msg":"saved password=x1 for","level":"info","tenant":"acme"}"#),
            record("not json"),
        ],
        |_| None,
    );
    let got: Vec<(&str, &str, Option<&str>)> =
        out.iter().map(|r| (r.body.as_str(), r.severity.as_str(), r.labels.get("tenant"))).collect();
    assert_eq!(got, [("saved [REDACTED] for", "INFO", Some("acme")), ("not json", "", None)]);
}

#[test]
fn attributes_are_read_and_written_as_strings() {
    let mut t = transform(
        r#"
        .attributes = object!(parse_json!(.message))
        .attributes.trace_id = upcase(string!(.attributes.trace_id))
        .attributes.seen_before = .attributes.previous
        del(.attributes.drop_me)
        "#,
    );
    let mut input = record(r#"{"trace_id":"abc","n":3,"ok":true,"f":1.5,"nested":{"a":[1,"x"]},"drop_me":"x","gone":null}"#);
    input.attributes = vec![("previous".into(), "kept?".into())];
    let r = kept(t.apply(input, None));
    let want: Vec<(String, String)> = [
        ("f", "1.5"),
        ("n", "3"),
        ("nested", r#"{"a":[1,"x"]}"#),
        ("ok", "true"),
        ("trace_id", "ABC"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // `previous` went with the old object, so `seen_before` is null and dropped, like `gone`.
    assert_eq!(r.attributes, want);

    // The program sees the incoming attributes and a change is kept; other records untouched.
    let mut t = transform(r#".attributes.copy = .attributes.user; .attributes.user = null"#);
    let mut input = record("x");
    input.attributes = vec![("user".into(), "ada".into())];
    let r = kept(t.apply(input, None));
    assert_eq!(r.attributes, vec![("copy".to_string(), "ada".to_string())]);
    let r = kept(transform(".message = \"y\"").apply(record("x"), None));
    assert!(r.attributes.is_empty());
    let r = kept(transform("del(.attributes)").apply(
        LogRecord { attributes: vec![("a".into(), "1".into())], ..record("x") },
        None,
    ));
    assert!(r.attributes.is_empty(), "a removed .attributes is no attributes");
}
