//! Router tests: requests through the real axum router, responses checked as JSON.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pharos_model::select::matches_all;
use pharos_model::{LabelMatcher, Labels, LogRecord, LogsReader, MetricsReader, Series};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::promql::tests::MemStore;

#[derive(Default)]
struct MemLogs(Vec<LogRecord>);

impl LogsReader for MemLogs {
    fn select_logs(
        &self,
        m: &[LabelMatcher],
        contains: &[String],
        start: i64,
        end: i64,
    ) -> Result<Vec<LogRecord>, String> {
        Ok(self
            .0
            .iter()
            .filter(|r| {
                matches_all(m, &r.labels) && r.timestamp_ns >= start && r.timestamp_ns <= end
            })
            .filter(|r| contains.iter().all(|c| r.body.contains(c.as_str())))
            .cloned()
            .collect())
    }
}

struct Broken;

impl MetricsReader for Broken {
    fn select_series(&self, _: &[LabelMatcher], _: i64, _: i64) -> Result<Vec<Series>, String> {
        Err("disk on fire".into())
    }
}

fn metrics() -> MemStore {
    let mut s = MemStore::default();
    s.add(
        &[("__name__", "up"), ("job", "node")],
        &[(10_000, 1.0), (20_000, 0.5)],
    );
    s
}

fn logs() -> MemLogs {
    let rec = |app: &str, ts: i64, body: &str| LogRecord {
        labels: Labels::from_pairs([("app", app)]),
        timestamp_ns: ts,
        body: body.into(),
        severity: String::new(),
        attributes: Vec::new(),
    };
    MemLogs(vec![
        rec("api", 1_000_000_000, "error one"),
        rec("api", 2_000_000_000, "ok two"),
        rec("web", 3_000_000_000, "error three"),
        rec("api", 4_000_000_000, "error four timeout"),
        rec("web", 5_000_000_000, "error five"),
    ])
}

async fn send_with(metrics: Arc<dyn MetricsReader>, req: Request<Body>) -> (StatusCode, Value) {
    let app = super::router(metrics, Arc::new(logs()));
    let resp = app.oneshot(req).await.expect("router never fails");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}"));
    (status, body)
}

async fn get(uri: &str) -> (StatusCode, Value) {
    send_with(
        Arc::new(metrics()),
        Request::get(uri).body(Body::empty()).expect("request"),
    )
    .await
}

#[tokio::test]
async fn instant_query_in_prometheus_shape() {
    let (status, body) = get("/api/v1/query?query=up&time=25").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "job": "node"}, "value": [25, "0.5"]}
        ]}})
    );
    let (_, body) = get("/api/v1/query?query=1%2F0&time=1.5").await;
    assert_eq!(
        body["data"],
        json!({"resultType": "scalar", "result": [1.5, "+Inf"]})
    );
}

/// Warnings and infos sit next to `data`, as Prometheus answers them (absent when none, see
/// above), for instant and range queries.
#[tokio::test]
async fn annotations_are_answered_as_warnings_and_infos() {
    let (status, body) = get("/api/v1/query?query=quantile(2%2C%20rate(up%5B30s%5D))&time=25").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["warnings"], json!(["PromQL warning: quantile value should be between 0 and 1, got 2 (1:10)"]), "{body}");
    let info = "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"up\" (1:18)";
    assert_eq!(body["infos"], json!([info]), "{body}");
    let (status, body) = get("/api/v1/query_range?query=rate(up%5B30s%5D)&start=0&end=30&step=10").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["infos"], json!([info.replace("(1:18)", "(1:6)")]), "{body}");
    assert!(body.get("warnings").is_none(), "{body}");
}

#[tokio::test]
async fn post_form_and_range_query() {
    let req = Request::post("/api/v1/query_range?step=10s")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("query=up&start=1970-01-01T00:00:10Z&end=30"))
        .expect("request");
    let (status, body) = send_with(Arc::new(metrics()), req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!({"resultType": "matrix", "result": [
            {"metric": {"__name__": "up", "job": "node"}, "values": [[10, "1"], [20, "0.5"], [30, "0.5"]]}
        ]})
    );
}

/// `stats=all` adds Prometheus' `stats` object: timings in seconds and the samples read (the
/// store holds 2 samples of `up`; the range 0–30 s reads both). Without it there is no `stats`.
#[tokio::test]
async fn stats_parameter_reports_timings_and_samples_read() {
    let (status, body) = get("/api/v1/query_range?query=up&start=0&end=30&step=10&stats=all").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stats = &body["data"]["stats"];
    assert_eq!(stats["samples"]["totalQueryableSamples"], json!(2), "{body}");
    let timings = &stats["timings"];
    for k in ["evalTotalTime", "queryPreparationTime", "innerEvalTime", "resultSortTime", "execTotalTime"] {
        assert!(timings[k].as_f64().is_some_and(|v| v >= 0.0), "{k}: {body}");
    }
    let parts = ["queryPreparationTime", "innerEvalTime", "resultSortTime"].iter().map(|k| timings[k].as_f64().unwrap()).sum::<f64>();
    assert!((timings["evalTotalTime"].as_f64().unwrap() - parts).abs() < 1e-9, "{body}");
    let (_, body) = get("/api/v1/query?query=up&time=25&stats=1").await;
    assert_eq!(body["data"]["stats"]["samples"]["totalQueryableSamples"], json!(2), "{body}");
    let (_, body) = get("/api/v1/query?query=up&time=25").await;
    assert!(body["data"].get("stats").is_none(), "{body}");
}

#[tokio::test]
async fn malformed_promql_is_400_bad_data() {
    let (status, body) = get("/api/v1/query?query=sum(up").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "bad_data");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("invalid parameter \"query\""),
        "{body}"
    );
}

#[tokio::test]
async fn bad_parameters_and_unsupported_features_are_400() {
    for uri in [
        "/api/v1/query?query=up&time=tomorrow",
        "/api/v1/query",
        "/api/v1/query_range?query=up&start=0&end=10",
        "/api/v1/query_range?query=up&start=0&end=10&step=0",
        "/api/v1/query_range?query=up&start=0&end=100000&step=1",
        "/api/v1/query?query=histogram_fraction(0,1,up)",
    ] {
        let (status, body) = get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["errorType"], "bad_data", "{uri}");
    }
}

#[tokio::test]
async fn store_failure_is_500_internal() {
    let req = Request::get("/api/v1/query?query=up")
        .body(Body::empty())
        .expect("request");
    let (status, body) = send_with(Arc::new(Broken), req).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["errorType"], "internal");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("disk on fire")
    );
}

#[tokio::test]
async fn evaluation_conflict_is_422_execution() {
    let mut s = MemStore::default();
    s.add(&[("__name__", "a"), ("x", "1")], &[(0, 1.0)]);
    s.add(&[("__name__", "b"), ("x", "1")], &[(0, 1.0)]);
    let req = Request::get("/api/v1/query?query=%7Bx%3D%221%22%7D%2B1&time=1")
        .body(Body::empty())
        .expect("request");
    let (status, body) = send_with(Arc::new(s), req).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errorType"], "execution");
}

#[tokio::test]
async fn buildinfo() {
    let (status, body) = get("/api/v1/status/buildinfo").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["version"], env!("CARGO_PKG_VERSION"));
    // Loki's shape: the fields at the top, no envelope.
    let (status, body) = get("/loki/api/v1/status/buildinfo").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body.get("status").is_none() && body.get("data").is_none(), "{body}");
    assert_eq!(body["goVersion"], "");
}

fn lines(body: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for stream in body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        for v in stream["values"].as_array().cloned().unwrap_or_default() {
            out.push((
                stream["stream"]["app"].as_str().unwrap_or("").to_string(),
                v[0].as_str().unwrap_or("").to_string(),
                v[1].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

#[tokio::test]
async fn loki_query_range_filters_orders_and_limits() {
    // Filters: contains "error", not "timeout" -> one(api,1s), three(web,3s), five(web,5s).
    let q = "/loki/api/v1/query_range?query=%7Bapp%3D~%22.%2B%22%7D%20%7C%3D%20%22error%22%20!%3D%20%22timeout%22&start=0&end=10";
    let (status, body) = get(&format!("{q}&limit=2")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["resultType"], "streams");
    // backward: the two newest (5s, 3s), both web.
    assert_eq!(
        lines(&body),
        vec![
            ("web".into(), "5000000000".into(), "error five".into()),
            ("web".into(), "3000000000".into(), "error three".into()),
        ]
    );
    let (_, body) = get(&format!("{q}&limit=2&direction=forward")).await;
    assert_eq!(
        lines(&body),
        vec![
            ("api".into(), "1000000000".into(), "error one".into()),
            ("web".into(), "3000000000".into(), "error three".into()),
        ]
    );
}

#[tokio::test]
async fn loki_rejects_unsupported_queries() {
    let (status, body) =
        get("/loki/api/v1/query_range?query=%7Bapp%3D%22api%22%7D%20%7C%20line_format_json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("not supported yet"),
        "{body}"
    );
}

fn enc(q: &str) -> String {
    serde_urlencoded::to_string([("query", q)]).unwrap()
}

#[tokio::test]
async fn loki_pipeline_labels_join_the_stream() {
    // Lines: "error one", "ok two", … ; regexp takes the first word as `word`.
    let q = enc(r#"{app="api"} | regexp `(?P<word>\w+) (?P<n>\w+)` | word = "error" | line_format "{{.n}}""#);
    let (status, body) = get(&format!("/loki/api/v1/query_range?{q}&start=0&end=10&direction=forward")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["result"],
        json!([
            {"stream": {"app": "api", "n": "four", "word": "error"}, "values": [["4000000000", "four"]]},
            {"stream": {"app": "api", "n": "one", "word": "error"}, "values": [["1000000000", "one"]]},
        ])
    );
}

#[tokio::test]
async fn loki_metric_queries_instant_and_range() {
    // Errors: api 1s, 4s; web 3s, 5s. count over (t-2s, t].
    let q = enc(r#"sum by (app) (count_over_time({app=~".+"} |= "error" [2s]))"#);
    let (status, body) = get(&format!("/loki/api/v1/query?{q}&time=5")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["resultType"], "vector");
    // (3s, 5s]: api 4s, web 5s.
    assert_eq!(
        body["data"]["result"],
        json!([
            {"metric": {"app": "api"}, "value": [5, "1"]},
            {"metric": {"app": "web"}, "value": [5, "1"]},
        ])
    );
    let (status, body) = get(&format!("/loki/api/v1/query_range?{q}&start=1&end=5&step=2")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["resultType"], "matrix");
    // Steps 1s, 3s, 5s: api (−1,1]=1, (1,3]=0, (3,5]=1; web 0, 1 (3s), 1 (5s).
    assert_eq!(
        body["data"]["result"],
        json!([
            {"metric": {"app": "api"}, "values": [[1, "1"], [5, "1"]]},
            {"metric": {"app": "web"}, "values": [[3, "1"], [5, "1"]]},
        ])
    );
    let q = enc(r#"rate({app="web"}[4s])"#);
    let (_, body) = get(&format!("/loki/api/v1/query?{q}&time=5")).await;
    assert_eq!(body["data"]["result"], json!([{"metric": {"app": "web"}, "value": [5, "0.5"]}]));
    // An alert-style threshold: errors over (1s, 5s] are api 1 (4s), web 2 (3s, 5s).
    let q = enc(r#"sum by (app) (count_over_time({app=~".+"} |= "error" [4s])) > 1"#);
    let (status, body) = get(&format!("/loki/api/v1/query?{q}&time=5")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["result"], json!([{"metric": {"app": "web"}, "value": [5, "2"]}]));
    let q = enc(r#"sum by (app) (count_over_time({app=~".+"} |= "error" [4s])) > bool 1"#);
    let (_, body) = get(&format!("/loki/api/v1/query?{q}&time=5")).await;
    assert_eq!(
        body["data"]["result"],
        json!([
            {"metric": {"app": "api"}, "value": [5, "0"]},
            {"metric": {"app": "web"}, "value": [5, "1"]},
        ])
    );
    let (status, body) = get(&format!("/loki/api/v1/query?{}&time=5", enc("1 > 2"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("bool modifier"), "{body}");
}

#[tokio::test]
async fn loki_labels_values_and_series() {
    let (status, body) = get("/loki/api/v1/labels?start=0&end=10").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], json!(["app"]));
    let (_, body) = get("/loki/api/v1/label/app/values?start=0&end=10").await;
    assert_eq!(body["data"], json!(["api", "web"]));
    // Only web has entries in [3s, 10s]... and api at 4s.
    let (_, body) = get("/loki/api/v1/label/app/values?start=4.5&end=10").await;
    assert_eq!(body["data"], json!(["web"]));
    let sel = serde_urlencoded::to_string([("match[]", r#"{app="web"}"#)]).unwrap();
    let (status, body) = get(&format!("/loki/api/v1/series?{sel}&start=0&end=10")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], json!([{"app": "web"}]));
    // Stats: web has "error three" (11 bytes) and "error five" (10).
    let sel = serde_urlencoded::to_string([("query", r#"{app="web"}"#)]).unwrap();
    let (status, body) = get(&format!("/loki/api/v1/index/stats?{sel}&start=0&end=10")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"streams": 1, "chunks": 1, "entries": 2, "bytes": 21}));
    let (status, _) = get("/loki/api/v1/series?match[]=%7B&start=0&end=10").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn loki_volume_groups_bytes_by_target_labels() {
    let enc = |q: &str| serde_urlencoded::to_string([("query", q)]).unwrap();
    let all = enc(r#"{app=~".+"}"#);
    // api: "error one" 9 bytes at 1s, "ok two" 6 at 2s, "error four timeout" 18 at 4s; web:
    // "error three" 11 at 3s, "error five" 10 at 5s.
    let (status, body) = get(&format!("/loki/api/v1/index/volume?{all}&start=0&end=10")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!({"resultType": "vector", "result": [
            {"metric": {"app": "api"}, "value": [10, "33"]},
            {"metric": {"app": "web"}, "value": [10, "21"]},
        ]})
    );
    let (_, body) = get(&format!("/loki/api/v1/index/volume?{all}&start=0&end=10&limit=1")).await;
    assert_eq!(body["data"]["result"], json!([{"metric": {"app": "api"}, "value": [10, "33"]}]));
    let (_, body) = get(&format!("/loki/api/v1/index/volume?{all}&start=0&end=10&aggregateBy=labels")).await;
    assert_eq!(body["data"]["result"], json!([{"metric": {"app": ""}, "value": [10, "54"]}]));
    // Streams without a target label are not counted.
    let (_, body) = get(&format!("/loki/api/v1/index/volume?{all}&start=0&end=10&targetLabels=pod")).await;
    assert_eq!(body["data"]["result"], json!([]));
    // Buckets (t - 2s, t] at 1s, 3s, 5s; sorted by the first point, largest first.
    let (status, body) = get(&format!("/loki/api/v1/index/volume_range?{all}&start=1&end=5&step=2")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!({"resultType": "matrix", "result": [
            {"metric": {"app": "web"}, "values": [[3, "11"], [5, "10"]]},
            {"metric": {"app": "api"}, "values": [[1, "9"], [3, "6"], [5, "18"]]},
        ]})
    );
    for (params, want) in [
        (format!("{}&start=0&end=10", enc(r#"{app="api"} |= "x""#)), "stream selector only"),
        (format!("{all}&start=0&end=10&aggregateBy=streams"), "invalid aggregation option"),
        (format!("{all}&start=0&end=10&limit=0"), "limit must be a positive value"),
        ("start=0&end=10".to_string(), "\"query\": missing"),
    ] {
        let (status, body) = get(&format!("/loki/api/v1/index/volume?{params}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{params}: {body}");
        assert!(body["error"].as_str().unwrap_or("").contains(want), "{params}: {body}");
    }
}

async fn get_logs(logs: MemLogs, uri: &str) -> (StatusCode, Value) {
    let app = super::router(Arc::new(metrics()), Arc::new(logs));
    let resp = app.oneshot(Request::get(uri).body(Body::empty()).expect("request")).await.expect("router never fails");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}")))
}

fn drilldown_logs() -> MemLogs {
    let rec = |labels: &[(&str, &str)], ts: i64, body: &str, severity: &str, attrs: &[(&str, &str)]| LogRecord {
        labels: Labels::from_pairs(labels.iter().copied()),
        timestamp_ns: ts * 1_000_000_000,
        body: body.into(),
        severity: severity.into(),
        attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    let api = [("app", "api"), ("pod", "api-7f9c"), ("request_id", "12"), ("method", "GET")];
    MemLogs(vec![
        rec(&api, 1, r#"{"status":200,"took":"12ms","req":{"path":"/a","ok":true},"tags":["x"]}"#, "info", &[("trace_id", "t1")]),
        rec(&api, 2, r#"{"status":503,"took":"1.5s","req":{"path":"/b","ok":false}}"#, "error", &[("trace_id", "t2")]),
        rec(&[("app", "api"), ("pod", "api-8d2e"), ("request_id", "13"), ("method", "GET")], 3, r#"{"status":200,"took":"3ms","req":{"path":"/a","ok":true}}"#, "", &[]),
        rec(&[("app", "web"), ("pod", "web-1"), ("request_id", "14"), ("method", "POST")], 4, "level=warn size=10KB dur=2.5 method=PUT", "warn", &[]),
        rec(&[("app", "web"), ("pod", "web-1"), ("request_id", "15"), ("method", "POST")], 5, "plain text without pairs", "", &[]),
    ])
}

/// Grafana Logs Drilldown's discovery endpoints, in Loki's shapes (not wrapped in `data`).
#[tokio::test]
async fn loki_detected_fields_values_and_labels() {
    let enc = |q: &str| serde_urlencoded::to_string([("query", q)]).unwrap();
    let (status, body) = get_logs(drilldown_logs(), &format!("/loki/api/v1/detected_fields?{}&start=0&end=10", enc(r#"{app="api"}"#))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Three JSON lines: status 200/503/200, took 12ms/1.5s/3ms, req.path /a,/b,/a, req.ok
    // true/false/true (the array is skipped, as `| json` skips it); metadata trace_id t1/t2 and
    // detected_level info/error (no parser).
    assert_eq!(
        body,
        json!({"fields": [
            {"label": "detected_level", "type": "string", "cardinality": 2, "parsers": null, "jsonPath": []},
            {"label": "req_ok", "type": "boolean", "cardinality": 2, "parsers": ["json"], "jsonPath": ["req", "ok"]},
            {"label": "req_path", "type": "string", "cardinality": 2, "parsers": ["json"], "jsonPath": ["req", "path"]},
            {"label": "status", "type": "int", "cardinality": 2, "parsers": ["json"], "jsonPath": ["status"]},
            {"label": "took", "type": "duration", "cardinality": 3, "parsers": ["json"], "jsonPath": ["took"]},
            {"label": "trace_id", "type": "string", "cardinality": 2, "parsers": null, "jsonPath": []},
        ], "limit": 1000}),
    );
    // logfmt; a key named like a stream label is `_extracted`; the newest line only
    // (line_limit=1) has no field; limit=2 keeps two fields.
    let (_, body) = get_logs(drilldown_logs(), &format!("/loki/api/v1/detected_fields?{}&start=0&end=10", enc(r#"{app="web"}"#))).await;
    let got: Vec<(String, String)> = body["fields"].as_array().unwrap().iter().map(|f| (f["label"].as_str().unwrap().to_string(), f["type"].as_str().unwrap().to_string())).collect();
    let want = [("detected_level", "string"), ("dur", "float"), ("level", "string"), ("method_extracted", "string"), ("size", "bytes")];
    assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())), "{body}");
    assert_eq!(body["fields"][1]["parsers"], json!(["logfmt"]), "{body}");
    let (_, body) = get_logs(drilldown_logs(), &format!("/loki/api/v1/detected_fields?{}&start=0&end=10&line_limit=1", enc(r#"{app="web"}"#))).await;
    assert_eq!(body["fields"], json!([]), "{body}");
    let (_, body) = get_logs(drilldown_logs(), &format!("/loki/api/v1/detected_fields?{}&start=0&end=10&limit=2", enc(r#"{app="web"}"#))).await;
    assert_eq!(body["fields"].as_array().unwrap().len(), 2, "{body}");
    // A query's own parser and filters: only lines with status 200, its labels found by `json`.
    let (_, body) = get_logs(drilldown_logs(), &format!("/loki/api/v1/detected_field/req_path/values?{}&start=0&end=10", enc(r#"{app="api"} | json | status=200"#))).await;
    assert_eq!(body, json!({"values": ["/a"], "limit": 1000}));
    let (_, body) = get_logs(drilldown_logs(), &format!("/loki/api/v1/detected_field/took/values?{}&start=0&end=10&limit=2", enc(r#"{app="api"}"#))).await;
    assert_eq!(body, json!({"values": ["1.5s", "12ms"], "limit": 2}));
    for (uri, want) in [
        (format!("/loki/api/v1/detected_fields?{}", enc(r#"count_over_time({app="api"}[1m])"#)), "log query"),
        (format!("/loki/api/v1/detected_fields?{}&line_limit=0", enc(r#"{app="api"}"#)), "line_limit"),
        ("/loki/api/v1/detected_fields".to_string(), "\"query\": missing"),
        (format!("/loki/api/v1/detected_fields?{}", enc(r#"{app="api""#)), "parse error"),
    ] {
        let (status, body) = get_logs(drilldown_logs(), &uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(body["error"].as_str().unwrap_or("").contains(want), "{uri}: {body}");
    }
    // Labels: request_id (numbers only) is left out, pod stays although its values look like
    // nothing in particular, method has 2 values.
    let (status, body) = get_logs(drilldown_logs(), &format!("/loki/api/v1/detected_labels?{}&start=0&end=10", enc(r#"{app=~".+"}"#))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"detectedLabels": [
            {"label": "app", "cardinality": 2},
            {"label": "method", "cardinality": 2},
            {"label": "pod", "cardinality": 3},
        ]})
    );
}

/// `/loki/api/v1/patterns`: lines grouped by Drain, counted per step; a pattern used as a
/// `|>` filter selects its lines.
#[tokio::test]
async fn loki_patterns_group_lines_and_filter_with_them() {
    let enc = |q: &str| serde_urlencoded::to_string([("query", q)]).unwrap();
    let rec = |ts: i64, body: &str| LogRecord {
        labels: Labels::from_pairs([("app", "svc")]),
        timestamp_ns: ts * 1_000_000_000,
        body: body.into(),
        severity: String::new(),
        attributes: Vec::new(),
    };
    let logs = || {
        MemLogs(vec![
            rec(1, "request done for user 12 took 30ms"),
            rec(2, "request done for user 7 took 5ms"),
            rec(11, "request done for user 7 took 8ms"),
            rec(12, "cache miss key=abc"),
        ])
    };
    let (status, body) = get_logs(logs(), &format!("/loki/api/v1/patterns?{}&start=0&end=20&step=10s", enc(r#"{app="svc"}"#))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"status": "success", "data": [
            {"pattern": "request done for user <_> took <_>", "level": "unknown", "samples": [[0, 2], [10, 1]]},
            {"pattern": "cache miss key=abc", "level": "unknown", "samples": [[10, 1]]},
        ]})
    );
    let (_, body) = get_logs(logs(), &format!("/loki/api/v1/patterns?{}&start=0&end=20&step=10", enc(r#"{app="svc"} |= "user 7""#))).await;
    assert_eq!(body["data"], json!([{"pattern": "request done for user 7 took <_>", "level": "unknown", "samples": [[0, 1], [10, 1]]}]));
    // Each level has its own patterns (as Loki's pattern ingester keeps a Drain per level):
    // the level of a record's severity, or its stream's `detected_level`.
    let leveled = || {
        let mut r = logs().0;
        for (ts, severity, user) in [(3, "ERROR", 12), (4, "error", 13), (13, "WARN", 7)] {
            let mut e = rec(ts, &format!("request done for user {user} took 1s"));
            e.severity = severity.into();
            r.push(e);
        }
        let mut w = rec(14, "cache miss key=abc");
        w.labels = Labels::from_pairs([("app", "svc"), ("detected_level", "warn")]);
        r.push(w);
        MemLogs(r)
    };
    let (status, body) = get_logs(leveled(), &format!("/loki/api/v1/patterns?{}&start=0&end=20&step=10s", enc(r#"{app="svc"}"#))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!([
            {"pattern": "request done for user <_> took <_>", "level": "unknown", "samples": [[0, 2], [10, 1]]},
            {"pattern": "request done for user <_> took 1s", "level": "error", "samples": [[0, 2]]},
            {"pattern": "cache miss key=abc", "level": "unknown", "samples": [[10, 1]]},
            {"pattern": "cache miss key=abc", "level": "warn", "samples": [[10, 1]]},
            {"pattern": "request done for user 7 took 1s", "level": "warn", "samples": [[10, 1]]},
        ])
    );
    let (_, body) = get_logs(logs(), &format!("/loki/api/v1/query_range?{}&start=0&end=20", enc(r#"{app="svc"} |> "request done for user <_> took <_>""#))).await;
    assert_eq!(body["data"]["result"][0]["values"].as_array().map(Vec::len), Some(3), "{body}");
    for (q, want) in [(r#"rate({app="svc"}[1m])"#, "log query"), (r#"{app="svc"} |> "<_><_>""#, "consecutive captures")] {
        let (status, body) = get_logs(logs(), &format!("/loki/api/v1/patterns?{}&start=0&end=20", enc(q))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert!(body["error"].as_str().unwrap_or("").contains(want), "{q}: {body}");
    }
}

fn two_jobs() -> MemStore {
    let mut s = MemStore::default();
    s.add(
        &[("__name__", "up"), ("job", "node"), ("instance", "a")],
        &[(10_000, 1.0)],
    );
    s.add(
        &[("__name__", "up"), ("job", "api"), ("instance", "b")],
        &[(10_000, 1.0)],
    );
    s.add(
        &[
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("code", "200"),
        ],
        &[(90_000, 5.0)],
    );
    s
}

/// Cardinality in Prometheus' shape over `two_jobs`: 3 series (up ×2, http_requests_total),
/// label pairs __name__=up, __name__=http_requests_total, job=node, job=api (×2), instance=a,
/// instance=b, code=200: 7 distinct.
#[tokio::test]
async fn tsdb_status_counts_series_and_labels() {
    let send = |uri: String| send_with(Arc::new(two_jobs()), Request::get(uri).body(Body::empty()).expect("request"));
    let (status, body) = send("/api/v1/status/tsdb?start=0&end=100".into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let nv = |pairs: &[(&str, u64)]| json!(pairs.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>());
    assert_eq!(body["data"]["headStats"], json!({"numSeries": 3, "numLabelPairs": 7, "minTime": 0, "maxTime": 100_000}));
    assert_eq!(body["data"]["seriesCountByMetricName"], nv(&[("up", 2), ("http_requests_total", 1)]));
    assert_eq!(body["data"]["labelValueCountByLabelName"], nv(&[("__name__", 2), ("instance", 2), ("job", 2), ("code", 1)]));
    // Bytes of distinct values: __name__ "up" + "http_requests_total" = 21, job "node" + "api"
    // = 7, instance 2, code 3.
    assert_eq!(body["data"]["memoryInBytesByLabelName"], nv(&[("__name__", 21), ("job", 7), ("code", 3), ("instance", 2)]));
    let (_, body) = send("/api/v1/status/tsdb?start=0&end=100&limit=2".into()).await;
    assert_eq!(body["data"]["seriesCountByLabelValuePair"], nv(&[("__name__=up", 2), ("job=api", 2)]));
    for bad in ["limit=0", "limit=x", "start=10&end=5"] {
        let (status, body) = send(format!("/api/v1/status/tsdb?{bad}")).await;
        assert_eq!((status, body["errorType"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_data")), "{bad}: {body}");
    }
}

/// Prometheus' formatter: the grouping moves before the aggregation's argument, spacing is
/// normalized; a long expression is split over indented lines.
#[tokio::test]
async fn format_query_prints_like_prometheus() {
    let enc = |q: &str| serde_urlencoded::to_string([("query", q)]).unwrap();
    let (status, body) = get(&format!("/api/v1/format_query?{}", enc("sum(rate(x[5m]))by(job)"))).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"status": "success", "data": "sum by (job) (rate(x[5m]))"})));
    // Prometheus 2.42's answer for this query (its formatter, run against a real Prometheus;
    // the peer test compares more).
    let long = r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle",job="node"}[5m])) / on (instance) group_left count by (instance) (node_cpu_seconds_total{mode="idle"})"#;
    let (_, body) = get(&format!("/api/v1/format_query?{}", enc(long))).await;
    assert_eq!(
        body["data"],
        "  sum by (instance) (rate(node_cpu_seconds_total{job=\"node\",mode!=\"idle\"}[5m]))\n/ on (instance) group_left ()\n  count by (instance) (node_cpu_seconds_total{mode=\"idle\"})"
    );
    let (status, body) = get(&format!("/api/v1/format_query?{}", enc("sum(x"))).await;
    assert_eq!((status, body["errorType"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_data")), "{body}");
}

/// A reader holding one series' exemplars that records which selectors it was asked for.
struct WithExemplars(std::sync::Mutex<Vec<Vec<LabelMatcher>>>);

impl MetricsReader for WithExemplars {
    fn select_series(&self, _: &[LabelMatcher], _: i64, _: i64) -> Result<Vec<Series>, String> {
        Ok(Vec::new())
    }

    fn exemplars(&self, selectors: &[Vec<LabelMatcher>], start_ms: i64, end_ms: i64) -> Result<Vec<pharos_model::SeriesExemplars>, String> {
        self.0.lock().unwrap().extend(selectors.iter().cloned());
        let e = |trace: &str, value: f64, timestamp_ms: i64| pharos_model::Exemplar { labels: Labels::from_pairs([("trace_id", trace)]), value, timestamp_ms };
        let all = vec![e("a1", 0.25, 1_000), e("b2", 1.0, 2_500)];
        Ok(vec![pharos_model::SeriesExemplars {
            series: Labels::from_pairs([("__name__", "rpc_seconds_bucket"), ("le", "0.5")]),
            exemplars: all.into_iter().filter(|e| (start_ms..=end_ms).contains(&e.timestamp_ms)).collect(),
        }])
    }
}

/// Exemplars in Prometheus' shape, for every selector of the query (inside range selectors,
/// subqueries and function arguments too), within `start`..`end`.
#[tokio::test]
async fn query_exemplars_come_in_prometheus_shape_for_every_selector() {
    let reader = Arc::new(WithExemplars(Default::default()));
    let q = r#"histogram_quantile(0.9, sum by (le) (rate(rpc_seconds_bucket{job="api"}[5m]))) / scalar(max_over_time(up[10m:1m]))"#;
    let uri = format!("/api/v1/query_exemplars?{}&start=2&end=3", enc(q));
    let (status, body) = send_with(reader.clone(), Request::get(uri).body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"status": "success", "data": [{
            "seriesLabels": {"__name__": "rpc_seconds_bucket", "le": "0.5"},
            "exemplars": [{"labels": {"trace_id": "b2"}, "value": "1", "timestamp": 2.5}],
        }]})
    );
    let asked: Vec<String> = reader.0.lock().unwrap().iter().map(|g| {
        let mut m: Vec<String> = g.iter().map(|m| format!("{m:?}")).collect();
        m.sort();
        m.join(",")
    }).collect();
    assert_eq!(asked.len(), 2, "two selectors: {asked:?}");
    assert!(asked[0].contains("rpc_seconds_bucket") && asked[0].contains("api"), "{asked:?}");
    assert!(asked[1].contains("\"up\""), "{asked:?}");
    // An aggregation's parameter is searched too, as Prometheus' `ExtractSelectors` does.
    reader.0.lock().unwrap().clear();
    let uri = format!("/api/v1/query_exemplars?{}", enc("topk(scalar(k_param), v_series)"));
    let (status, _) = send_with(reader.clone(), Request::get(uri).body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK);
    let asked = format!("{:?}", reader.0.lock().unwrap());
    assert!(asked.contains("k_param") && asked.contains("v_series"), "{asked}");
}

/// A store without exemplars gives an empty list; a bad request Prometheus' 400.
#[tokio::test]
async fn query_exemplars_are_an_empty_list() {
    let (status, body) = get("/api/v1/query_exemplars?query=up&start=0&end=100").await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"status": "success", "data": []})));
    let req = Request::post("/api/v1/query_exemplars")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("query=rate(up%5B1m%5D)"))
        .expect("request");
    let (status, _) = send_with(Arc::new(metrics()), req).await;
    assert_eq!(status, StatusCode::OK);
    for bad in ["query=up%7B", "start=0", "query=up&start=10&end=5"] {
        let (status, body) = get(&format!("/api/v1/query_exemplars?{bad}")).await;
        assert_eq!((status, body["errorType"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_data")), "{bad}: {body}");
    }
}

#[tokio::test]
async fn series_labels_and_label_values() {
    let send = |uri: &str| {
        send_with(
            Arc::new(two_jobs()),
            Request::get(uri).body(Body::empty()).expect("request"),
        )
    };
    // Two match[] selectors are a union; the time range filters series without samples in it.
    let (status, body) =
        send("/api/v1/series?match[]=up%7Bjob%3D%22node%22%7D&match[]=http_requests_total").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!([
            {"__name__": "http_requests_total", "code": "200", "job": "api"},
            {"__name__": "up", "instance": "a", "job": "node"},
        ])
    );
    let (_, body) = send("/api/v1/series?match[]=%7Bjob%3D%22api%22%7D&start=0&end=50").await;
    assert_eq!(
        body["data"],
        json!([{"__name__": "up", "instance": "b", "job": "api"}])
    );
    let (status, body) = send("/api/v1/series").await;
    assert_eq!(
        (status, body["errorType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_data"))
    );
    let (status, _) = send("/api/v1/series?match[]=sum(up)").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, body) = send("/api/v1/labels").await;
    assert_eq!(body["data"], json!(["__name__", "code", "instance", "job"]));
    let (_, body) = send("/api/v1/labels?match[]=up").await;
    assert_eq!(body["data"], json!(["__name__", "instance", "job"]));
    let (_, body) = send("/api/v1/label/__name__/values").await;
    assert_eq!(body["data"], json!(["http_requests_total", "up"]));
    let (_, body) = send("/api/v1/label/job/values?match[]=up").await;
    assert_eq!(body["data"], json!(["api", "node"]));

    let req = Request::post("/api/v1/labels")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("match[]=http_requests_total"))
        .expect("request");
    let (_, body) = send_with(Arc::new(two_jobs()), req).await;
    assert_eq!(body["data"], json!(["__name__", "code", "job"]));

    // `limit` keeps the first entries in order and warns when it left some out (Grafana's
    // metrics browser reads the warning); 0 means no limit.
    let (_, body) = send("/api/v1/label/__name__/values?limit=1").await;
    assert_eq!(body, json!({"status": "success", "data": ["http_requests_total"], "warnings": ["results truncated due to limit"]}));
    let (_, body) = send("/api/v1/label/__name__/values?limit=2").await;
    assert_eq!(body, json!({"status": "success", "data": ["http_requests_total", "up"]}));
    let (_, body) = send("/api/v1/labels?limit=3").await;
    assert_eq!(body["data"], json!(["__name__", "code", "instance"]));
    assert_eq!(body["warnings"], json!(["results truncated due to limit"]));
    let (_, body) = send("/api/v1/series?match[]=up&limit=1").await;
    assert_eq!(body["data"], json!([{"__name__": "up", "instance": "a", "job": "node"}]), "{body}");
    assert_eq!(body["warnings"], json!(["results truncated due to limit"]));
    let (_, body) = send("/api/v1/series?match[]=up&limit=0").await;
    assert_eq!(body["data"].as_array().map(Vec::len), Some(2), "{body}");
    for bad in ["-1", "x"] {
        let (status, body) = send(&format!("/api/v1/labels?limit={bad}")).await;
        assert_eq!((status, body["errorType"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_data")), "{bad}: {body}");
        assert!(body["error"].as_str().unwrap_or("").contains("limit"), "{body}");
    }
}

/// A log reader the test appends to while a tail is open.
#[derive(Default, Clone)]
struct SharedLogs(Arc<std::sync::Mutex<Vec<LogRecord>>>);

impl LogsReader for SharedLogs {
    fn select_logs(
        &self,
        m: &[LabelMatcher],
        contains: &[String],
        start: i64,
        end: i64,
    ) -> Result<Vec<LogRecord>, String> {
        MemLogs(self.0.lock().unwrap().clone()).select_logs(m, contains, start, end)
    }
}

/// The next frame of a tail, as JSON (within 5 s).
async fn next_frame(ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>) -> Value {
    use futures::StreamExt;
    let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .expect("a frame within 5 s")
        .unwrap()
        .unwrap();
    let tokio_tungstenite::tungstenite::Message::Text(t) = msg else { panic!("expected text, got {msg:?}") };
    serde_json::from_str(&t).unwrap()
}

#[tokio::test]
async fn loki_tail_streams_recent_then_new_entries() {
    use futures::StreamExt;

    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let rec = |app: &str, ts: i64, body: &str| LogRecord {
        labels: Labels::from_pairs([("app", app)]),
        timestamp_ns: ts,
        body: body.into(),
        severity: String::new(),
        attributes: Vec::new(),
    };
    let logs = SharedLogs::default();
    logs.0.lock().unwrap().extend([
        rec("api", now - 3_000_000_000, "ERROR old one"),
        rec("api", now - 2_000_000_000, "INFO fine"),
        rec("web", now - 1_000_000_000, "ERROR other app"),
    ]);
    let app = crate::router(Arc::new(metrics()), Arc::new(logs.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // A bad query is refused before the upgrade.
    let bad = format!("ws://{addr}/loki/api/v1/tail?query=%7Bapp%3D");
    match tokio_tungstenite::connect_async(bad).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("expected HTTP 400, got {other:?}"),
    }

    let query = "%7Bapp%3D%22api%22%7D%20%7C%3D%20%22ERROR%22"; // {app="api"} |= "ERROR"
    let url = format!("ws://{addr}/loki/api/v1/tail?query={query}&start={}", now - 10_000_000_000);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let first = next_frame(&mut ws).await;
    assert_eq!(
        first,
        json!({"streams": [{"stream": {"app": "api"}, "values": [[(now - 3_000_000_000).to_string(), "ERROR old one"]]}],
               "dropped_entries": []})
    );
    let ts = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    logs.0.lock().unwrap().extend([rec("api", ts, "INFO skip"), rec("api", ts, "ERROR new one")]);
    let second = next_frame(&mut ws).await;
    assert_eq!(
        second["streams"],
        json!([{"stream": {"app": "api"}, "values": [[ts.to_string(), "ERROR new one"]]}]),
        "only the new matching entry, sent once"
    );
    // Nothing new: no further frame (the entry at `ts` is not sent again).
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(1200), ws.next()).await.is_err(),
        "no duplicate frame"
    );
    ws.close(None).await.unwrap();

    // `distinct` over the session: oldest first, then what arrives with a level not seen.
    // {app="api"} | regexp "^(?P<level>[A-Z]+)" | distinct level
    let query = "%7Bapp%3D%22api%22%7D%20%7C%20regexp%20%22%5E%28%3FP%3Clevel%3E%5BA-Z%5D%2B%29%22%20%7C%20distinct%20level";
    let url = format!("ws://{addr}/loki/api/v1/tail?query={query}&start={}", now - 10_000_000_000);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // Of "ERROR old one", "INFO fine", and at `ts` "ERROR new one" and "INFO skip", the first
    // of each level.
    assert_eq!(
        next_frame(&mut ws).await["streams"],
        json!([
            {"stream": {"app": "api", "level": "ERROR"}, "values": [[(now - 3_000_000_000).to_string(), "ERROR old one"]]},
            {"stream": {"app": "api", "level": "INFO"}, "values": [[(now - 2_000_000_000).to_string(), "INFO fine"]]},
        ])
    );
    let ts2 = chrono::Utc::now().timestamp_nanos_opt().unwrap().max(ts + 1);
    logs.0.lock().unwrap().extend([rec("api", ts2, "ERROR again"), rec("api", ts2, "WARN first warning")]);
    assert_eq!(
        next_frame(&mut ws).await["streams"],
        json!([{"stream": {"app": "api", "level": "WARN"}, "values": [[ts2.to_string(), "WARN first warning"]]}])
    );
    ws.close(None).await.unwrap();
    server.abort();
}

/// A reader with a live feed whose ingest races the tail's first read: the first time it is
/// read, records are ingested while the read runs, one of them also in what the read returns.
#[derive(Default)]
struct RacingLogs {
    stored: std::sync::Mutex<Vec<LogRecord>>,
    sink: std::sync::Mutex<Option<pharos_model::LogSink>>,
    during_first_read: std::sync::Mutex<Option<Vec<LogRecord>>>,
}

impl LogsReader for RacingLogs {
    fn select_logs(&self, m: &[LabelMatcher], contains: &[String], start: i64, end: i64) -> Result<Vec<LogRecord>, String> {
        if let Some(batch) = self.during_first_read.lock().unwrap().take() {
            // Ingested now: stored (the read sees it) and fed to the subscriber.
            self.stored.lock().unwrap().extend(batch.iter().cloned());
            if let Some(sink) = self.sink.lock().unwrap().as_mut() {
                sink(&batch);
            }
        }
        MemLogs(self.stored.lock().unwrap().clone()).select_logs(m, contains, start, end)
    }

    fn subscribe_logs(&self, sink: pharos_model::LogSink) -> bool {
        *self.sink.lock().unwrap() = Some(sink);
        true
    }
}

/// An entry ingested while the first frame is read reaches the tail both through that read and
/// through the feed: it is sent once, in the first frame; one that arrives later through the
/// feed only comes in a frame of its own.
#[tokio::test]
async fn loki_tail_sends_an_entry_read_and_fed_at_once_only_once() {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let rec = |ts: i64, body: &str| LogRecord::new(Labels::from_pairs([("app", "api")]), ts, body, "");
    let logs = Arc::new(RacingLogs::default());
    logs.stored.lock().unwrap().push(rec(now - 3_000_000_000, "before"));
    *logs.during_first_read.lock().unwrap() = Some(vec![rec(now - 2_000_000_000, "during the read")]);
    let app = crate::router(Arc::new(metrics()), logs.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = format!("ws://{addr}/loki/api/v1/tail?query=%7Bapp%3D%22api%22%7D&start={}", now - 10_000_000_000);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let values = |frame: &Value| -> Vec<String> {
        frame["streams"].as_array().unwrap().iter().flat_map(|s| s["values"].as_array().unwrap().iter().map(|v| v[1].as_str().unwrap().to_string())).collect()
    };
    assert_eq!(values(&next_frame(&mut ws).await), ["before", "during the read"]);
    // A later ingest through the feed: the next frame holds it alone (the raced entry, already
    // queued from the feed, is not sent again).
    let later = rec(now - 1_000_000_000, "later");
    logs.stored.lock().unwrap().push(later.clone());
    let mut sink = logs.sink.lock().unwrap().take().expect("the tail subscribed");
    assert!(sink(&[later]));
    assert_eq!(values(&next_frame(&mut ws).await), ["later"]);
    server.abort();
}

fn metadata_logs() -> MemLogs {
    let rec = |ts: i64, body: &str, attrs: &[(&str, &str)]| LogRecord {
        attributes: pharos_model::normalize_attributes(
            attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ),
        ..LogRecord::new(Labels::from_pairs([("app", "api")]), ts, body, "")
    };
    MemLogs(vec![
        rec(1_000_000_000, "plain", &[]),
        rec(2_000_000_000, "first t1", &[("trace_id", "t1")]),
        rec(3_000_000_000, "t2", &[("trace_id", "t2"), ("user", "ada")]),
        rec(4_000_000_000, r#"{"status":"500"}"#, &[("trace_id", "t1")]),
    ])
}

async fn metadata_query(query: &str, categorize: bool) -> Value {
    logs_query(metadata_logs(), "query_range?start=0&end=10&direction=forward", query, categorize).await
}

/// `/loki/api/v1/<endpoint>&query=<query>` over `logs`, with or without categorized labels.
async fn logs_query(logs: MemLogs, endpoint: &str, query: &str, categorize: bool) -> Value {
    let app = super::router(Arc::new(metrics()), Arc::new(logs));
    let uri = format!("/loki/api/v1/{endpoint}&query={}", urlencoding(query));
    let mut req = Request::get(uri);
    if categorize {
        req = req.header("X-Loki-Response-Encoding-Flags", "categorize-labels");
    }
    let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test]
async fn severity_is_the_detected_level_label() {
    let rec = |ts: i64, body: &str, severity: &str| LogRecord::new(Labels::from_pairs([("app", "api")]), ts, body, severity);
    let logs = || {
        let mut with_attr = rec(4_000_000_000, "four", "ERROR");
        with_attr.attributes = vec![("detected_level".into(), "critical".into())];
        MemLogs(vec![rec(1_000_000_000, "one", "WARNING"), rec(2_000_000_000, "two", ""), rec(3_000_000_000, "three", "Err"), with_attr])
    };
    let body = logs_query(logs(), "query_range?start=0&end=10&direction=forward", r#"{app="api"}"#, false).await;
    assert_eq!(
        body["data"]["result"],
        json!([
            {"stream": {"app": "api"}, "values": [["2000000000", "two"]]},
            {"stream": {"app": "api", "detected_level": "critical"}, "values": [["4000000000", "four"]]},
            {"stream": {"app": "api", "detected_level": "error"}, "values": [["3000000000", "three"]]},
            {"stream": {"app": "api", "detected_level": "warn"}, "values": [["1000000000", "one"]]},
        ]),
        "an attribute named detected_level wins over the severity"
    );
    // Filtering on it: not by the attribute index (the level comes from the severity).
    let body = logs_query(logs(), "query_range?start=0&end=10&direction=forward", r#"{app="api"} | detected_level="error""#, false).await;
    assert_eq!(body["data"]["result"], json!([{"stream": {"app": "api", "detected_level": "error"}, "values": [["3000000000", "three"]]}]));
    // What Grafana's logs volume asks for.
    let q = r#"sum by (level, detected_level) (count_over_time({app="api"}[10s]))"#;
    let body = logs_query(logs(), "query?time=10", q, false).await;
    let mut got: Vec<(String, String)> = body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["metric"]["detected_level"].as_str().unwrap_or("-").to_string(), s["value"][1].as_str().unwrap().to_string()))
        .collect();
    got.sort();
    assert_eq!(got, [("-", "1"), ("critical", "1"), ("error", "1"), ("warn", "1")].map(|(a, b)| (a.to_string(), b.to_string())));
    // Categorized, it is structured metadata.
    let body = logs_query(logs(), "query_range?start=0&end=3&direction=forward", r#"{app="api"}"#, true).await;
    assert_eq!(
        body["data"]["result"],
        json!([{"stream": {"app": "api"}, "values": [["1000000000", "one", {"structuredMetadata": {"detected_level": "warn"}}], ["2000000000", "two"]]}])
    );
    assert_eq!(
        ["trace", "DBG", " Info ", "notice", "W", "warning", "ERR", "crit", "FATAL", "panic", ""].map(crate::logql::pipeline::detected_level),
        ["trace", "debug", "info", "info", "unknown", "warn", "error", "critical", "fatal", "fatal", "unknown"]
    );
}

#[tokio::test]
async fn structured_metadata_joins_the_stream_labels_by_default() {
    let body = metadata_query(r#"{app="api"}"#, false).await;
    assert_eq!(
        body["data"]["result"],
        json!([
            {"stream": {"app": "api"}, "values": [["1000000000", "plain"]]},
            {"stream": {"app": "api", "trace_id": "t1"}, "values": [["2000000000", "first t1"], ["4000000000", r#"{"status":"500"}"#]]},
            {"stream": {"app": "api", "trace_id": "t2", "user": "ada"}, "values": [["3000000000", "t2"]]},
        ])
    );
    assert!(body["data"].get("encodingFlags").is_none());
    let body = metadata_query(r#"{app="api"} | trace_id="t1""#, false).await;
    let lines: Vec<&str> = body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter().map(|v| v[1].as_str().unwrap()))
        .collect();
    assert_eq!(lines, ["first t1", r#"{"status":"500"}"#]);
}

#[tokio::test]
async fn categorize_labels_puts_metadata_and_parsed_labels_beside_each_entry() {
    let body = metadata_query(r#"{app="api"} | json"#, true).await;
    assert_eq!(body["data"]["encodingFlags"], json!(["categorize-labels"]));
    assert_eq!(
        body["data"]["result"],
        json!([{"stream": {"app": "api"}, "values": [
            ["1000000000", "plain", {"parsed": {"__error__": "JSONParserErr"}}],
            ["2000000000", "first t1", {"structuredMetadata": {"trace_id": "t1"}, "parsed": {"__error__": "JSONParserErr"}}],
            ["3000000000", "t2", {"structuredMetadata": {"trace_id": "t2", "user": "ada"}, "parsed": {"__error__": "JSONParserErr"}}],
            ["4000000000", r#"{"status":"500"}"#, {"structuredMetadata": {"trace_id": "t1"}, "parsed": {"status": "500"}}],
        ]}])
    );
    let body = metadata_query(r#"{app="api"} | user="ada""#, true).await;
    assert_eq!(
        body["data"]["result"],
        json!([{"stream": {"app": "api"}, "values": [
            ["3000000000", "t2", {"structuredMetadata": {"trace_id": "t2", "user": "ada"}}],
        ]}])
    );
}

/// A reader that knows metric metadata (and no series).
struct WithMetadata(std::collections::BTreeMap<String, Vec<pharos_model::MetricMetadata>>);

impl MetricsReader for WithMetadata {
    fn select_series(&self, _: &[LabelMatcher], _: i64, _: i64) -> Result<Vec<Series>, String> {
        Ok(Vec::new())
    }

    fn metric_metadata(
        &self,
        metric: Option<&str>,
    ) -> Result<std::collections::BTreeMap<String, Vec<pharos_model::MetricMetadata>>, String> {
        Ok(self
            .0
            .iter()
            .filter(|(k, _)| metric.is_none_or(|m| m == k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[tokio::test]
async fn metadata_in_prometheus_shape_with_its_parameters() {
    use pharos_model::{MetricMetadata, MetricType};
    let families = [
        MetricMetadata::new("go_gc_duration_seconds", MetricType::Summary, "GC pauses.", ""),
        MetricMetadata::new("http_requests_total", MetricType::Counter, "Requests.", ""),
        MetricMetadata::new("http_requests_total", MetricType::Counter, "Requests served.", ""),
        MetricMetadata::new("node_memory_bytes", MetricType::Gauge, "Memory.", "bytes"),
    ];
    let mut map = std::collections::BTreeMap::<String, Vec<MetricMetadata>>::new();
    for m in &families {
        map.entry(m.metric_family_name.clone()).or_default().push(m.clone());
    }
    let reader = Arc::new(WithMetadata(map));
    let send = |req: Request<Body>| send_with(reader.clone(), req);
    let get = |uri: &str| Request::get(uri).body(Body::empty()).expect("request");

    let (status, body) = send(get("/api/v1/metadata")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success");
    let entry = |m: &MetricMetadata| json!({"type": m.r#type.as_str(), "help": m.help, "unit": m.unit});
    assert_eq!(
        body["data"],
        json!({
            "go_gc_duration_seconds": [entry(&families[0])],
            "http_requests_total": [entry(&families[1]), entry(&families[2])],
            "node_memory_bytes": [entry(&families[3])],
        })
    );
    assert_eq!(body["data"]["node_memory_bytes"][0], json!({"type": "gauge", "help": "Memory.", "unit": "bytes"}));

    let (_, body) = send(get("/api/v1/metadata?metric=http_requests_total&limit_per_metric=1")).await;
    assert_eq!(body["data"], json!({"http_requests_total": [entry(&families[1])]}));
    let (_, body) = send(get("/api/v1/metadata?limit=2")).await;
    assert_eq!(body["data"].as_object().unwrap().len(), 2);
    let (_, body) = send(get("/api/v1/metadata?limit=0")).await;
    assert_eq!(body["data"], json!({}));
    let (_, body) = send(get("/api/v1/metadata?limit=-1&limit_per_metric=0")).await;
    assert_eq!(body["data"]["http_requests_total"].as_array().unwrap().len(), 2);
    let (_, body) = send(get("/api/v1/metadata?metric=nope")).await;
    assert_eq!(body["data"], json!({}));

    let req = Request::post("/api/v1/metadata")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("metric=node_memory_bytes"))
        .expect("request");
    let (status, body) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"], json!({"node_memory_bytes": [entry(&families[3])]}));

    for (uri, message) in [
        ("/api/v1/metadata?limit=abc", "limit must be a number"),
        ("/api/v1/metadata?limit_per_metric=1.5", "limit_per_metric must be a number"),
    ] {
        let (status, body) = send(get(uri)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(body["errorType"], "bad_data");
        assert_eq!(body["error"], message);
    }
    // A reader without metadata answers the valid empty result.
    let (status, body) = send_with(Arc::new(metrics()), get("/api/v1/metadata")).await;
    assert_eq!((status, body["data"].clone()), (StatusCode::OK, json!({})));
}

/// Series and metric metadata together.
struct SeriesWithMetadata(MemStore, std::collections::BTreeMap<String, Vec<pharos_model::MetricMetadata>>);

impl MetricsReader for SeriesWithMetadata {
    fn select_series(&self, m: &[LabelMatcher], start: i64, end: i64) -> Result<Vec<Series>, String> {
        self.0.select_series(m, start, end)
    }

    fn metric_metadata(
        &self,
        _: Option<&str>,
    ) -> Result<std::collections::BTreeMap<String, Vec<pharos_model::MetricMetadata>>, String> {
        Ok(self.1.clone())
    }
}

/// Metadata per target: a target is the `job` and `instance` of recent series, listed with the
/// families it has series of (`http_requests_total` is OpenMetrics counter `http_requests`,
/// `rpc_duration_seconds_bucket` histogram `rpc_duration_seconds`); series without metadata
/// or without a target are left out.
#[tokio::test]
async fn targets_metadata_joins_families_to_the_targets_with_their_series() {
    use pharos_model::{MetricMetadata, MetricType};
    let now = super::params::now_ms() - 60_000;
    let mut store = MemStore::default();
    let node = [("job", "node"), ("instance", "a")];
    let api = [("job", "api"), ("instance", "b")];
    let with = |name: &'static str, target: &[(&'static str, &'static str)], extra: &[(&'static str, &'static str)]| {
        let mut l = vec![("__name__", name)];
        l.extend_from_slice(target);
        l.extend_from_slice(extra);
        l
    };
    store.add(&with("up", &node, &[]), &[(now, 1.0)]);
    store.add(&with("node_cpu_seconds_total", &node, &[("cpu", "0")]), &[(now, 5.0)]);
    store.add(&with("http_requests_total", &api, &[]), &[(now, 7.0)]);
    store.add(&with("rpc_duration_seconds_bucket", &api, &[("le", "1")]), &[(now, 2.0)]);
    store.add(&with("no_metadata", &api, &[]), &[(now, 1.0)]);
    store.add(&[("__name__", "up")], &[(now, 1.0)]);
    let mut meta = std::collections::BTreeMap::<String, Vec<MetricMetadata>>::new();
    for m in [
        MetricMetadata::new("up", MetricType::Gauge, "Target up.", ""),
        MetricMetadata::new("node_cpu_seconds_total", MetricType::Counter, "CPU time.", "seconds"),
        MetricMetadata::new("http_requests", MetricType::Counter, "Requests.", ""),
        MetricMetadata::new("rpc_duration_seconds", MetricType::Histogram, "RPC latency.", ""),
    ] {
        meta.entry(m.metric_family_name.clone()).or_default().push(m);
    }
    let reader = Arc::new(SeriesWithMetadata(store, meta));
    let send = |req: Request<Body>| send_with(reader.clone(), req);
    let get = |uri: &str| Request::get(uri).body(Body::empty()).expect("request");
    let a = json!({"instance": "a", "job": "node"});
    let b = json!({"instance": "b", "job": "api"});
    let (status, body) = send(get("/api/v1/targets/metadata")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!([
            {"target": a, "metric": "node_cpu_seconds_total", "type": "counter", "help": "CPU time.", "unit": "seconds"},
            {"target": a, "metric": "up", "type": "gauge", "help": "Target up.", "unit": ""},
            {"target": b, "metric": "http_requests", "type": "counter", "help": "Requests.", "unit": ""},
            {"target": b, "metric": "rpc_duration_seconds", "type": "histogram", "help": "RPC latency.", "unit": ""},
        ])
    );
    let (_, body) = send(get("/api/v1/targets/metadata?match_target=%7Bjob%3D%22api%22%7D&metric=http_requests")).await;
    assert_eq!(body["data"], json!([{"target": b, "type": "counter", "help": "Requests.", "unit": ""}]));
    let (_, body) = send(get("/api/v1/targets/metadata?limit=1")).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 2, "target a only: {body}");
    let req = Request::post("/api/v1/targets/metadata")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("metric=up"))
        .expect("request");
    let (_, body) = send(req).await;
    assert_eq!(body["data"], json!([{"target": a, "type": "gauge", "help": "Target up.", "unit": ""}]));
    for bad in ["match_target=up", "match_target=%7B", "limit=x"] {
        let (status, body) = send(get(&format!("/api/v1/targets/metadata?{bad}"))).await;
        assert_eq!((status, body["errorType"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_data")), "{bad}: {body}");
    }
}

/// `lookback_delta` overrides the 5-minute lookback for one query; zero or less keeps it.
#[tokio::test]
async fn lookback_delta_is_a_per_query_parameter() {
    // up's last sample is at 20 s: 100 s later it is within 5 m, not within 1 m.
    let result_len = |body: &Value| body["data"]["result"].as_array().map(Vec::len);
    let (_, body) = get("/api/v1/query?query=up&time=120").await;
    assert_eq!(result_len(&body), Some(1), "{body}");
    let (_, body) = get("/api/v1/query?query=up&time=120&lookback_delta=1m").await;
    assert_eq!(result_len(&body), Some(0), "{body}");
    let (_, body) = get("/api/v1/query?query=up&time=120&lookback_delta=0").await;
    assert_eq!(result_len(&body), Some(1), "{body}");
    // Range queries: at 30 s and 60 s the 20 s sample is within 45 s, at 90 s not.
    let (_, body) = get("/api/v1/query_range?query=up&start=30&end=90&step=30&lookback_delta=45").await;
    assert_eq!(body["data"]["result"][0]["values"], json!([[30, "0.5"], [60, "0.5"]]), "{body}");
    let (status, body) = get("/api/v1/query?query=up&lookback_delta=soon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap_or("").contains("lookback_delta"), "{body}");
}

/// `timeout` stops a query that evaluates past it with Prometheus' `503 timeout`; a bad one is
/// a `400`.
#[tokio::test]
async fn a_query_past_its_timeout_answers_503() {
    // 11,000 steps, each evaluating a subquery of 3,600 steps: far more than a millisecond.
    let heavy = "/api/v1/query_range?query=count_over_time(vector(1)%5B1h%3A1s%5D)&start=0&end=11000&step=1";
    let (status, body) = get(&format!("{heavy}&timeout=1ms")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["errorType"], "timeout", "{body}");
    assert_eq!(body["error"], "query timed out in expression evaluation", "{body}");
    let (status, body) = get("/api/v1/query?query=up&time=25&timeout=30s").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get("/api/v1/query?query=up&timeout=later").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap_or("").contains("timeout"), "{body}");
}

/// `limit` on query answers keeps the first series of a vector or matrix (in the answer's
/// order) and warns when it left some out; scalars are not affected.
#[tokio::test]
async fn query_limit_truncates_series_with_a_warning() {
    let send = |uri: String| send_with(Arc::new(two_jobs()), Request::get(uri).body(Body::empty()).expect("request"));
    let (_, body) = send("/api/v1/query?query=up&time=20&limit=1".into()).await;
    assert_eq!(body["data"]["result"], json!([{"metric": {"__name__": "up", "instance": "a", "job": "node"}, "value": [20, "1"]}]));
    assert_eq!(body["warnings"], json!(["results truncated due to limit"]));
    let (_, body) = send("/api/v1/query?query=up&time=20&limit=2".into()).await;
    assert_eq!(body["data"]["result"].as_array().map(Vec::len), Some(2));
    assert!(body.get("warnings").is_none(), "{body}");
    let (_, body) = send("/api/v1/query_range?query=up&start=10&end=20&step=10&limit=1".into()).await;
    assert_eq!(body["data"]["result"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["data"]["result"][0]["metric"]["instance"], json!("a"));
    assert_eq!(body["warnings"], json!(["results truncated due to limit"]));
    let (_, body) = send("/api/v1/query?query=1&time=20&limit=1".into()).await;
    assert_eq!(body["data"]["result"], json!([20, "1"]));
    let (status, _) = send("/api/v1/query?query=up&limit=-2".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Remote read: per query the matching series with their raw samples in the range (a staleness
/// marker bit for bit), in a snappy `ReadResponse`; every kind of bad request is a 400 naming
/// the problem, a failing store a 500.
#[tokio::test]
async fn remote_read_answers_raw_samples_per_query() {
    use pharos_model::otlp::STALE_NAN_BITS;
    use pharos_model::remote_read::{self as rr, Matcher, MatcherType, Query, ReadRequest};
    let mut store = metrics();
    store.add(&[("__name__", "up"), ("job", "api")], &[(10_000, 1.0), (15_000, f64::from_bits(STALE_NAN_BITS))]);
    store.add(&[("__name__", "temp"), ("job", "api")], &[(12_000, 21.5)]);
    let store: Arc<dyn MetricsReader> = Arc::new(store);
    let m = |t: MatcherType, name: &str, value: &str| Matcher { r#type: t as i32, name: name.into(), value: value.into() };
    let q = |start: i64, end: i64, matchers: Vec<Matcher>| Query { start_timestamp_ms: start, end_timestamp_ms: end, matchers, hints: None };
    let request = |queries: Vec<Query>, types: Vec<i32>| rr::encode_request(&ReadRequest { queries, accepted_response_types: types });
    let post = |body: Vec<u8>| Request::post("/api/v1/read").header("content-encoding", "snappy").body(Body::from(body)).unwrap();

    let body = request(
        vec![
            q(10_000, 15_000, vec![m(MatcherType::Eq, "__name__", "up")]),
            q(0, 99_000, vec![m(MatcherType::Re, "job", "a.*"), m(MatcherType::Neq, "__name__", "up")]),
            q(0, 99_000, vec![m(MatcherType::Nre, "__name__", "up|temp"), m(MatcherType::Re, "job", ".+")]),
        ],
        vec![0, 1],
    );
    let resp = super::router(store.clone(), Arc::new(logs())).oneshot(post(body)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    assert_eq!(resp.headers()["content-encoding"], "snappy");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let answer = rr::decode_response(&bytes).unwrap();
    type Answered = Vec<(Vec<(String, String)>, Vec<(i64, u64)>)>;
    let results: Vec<Answered> = answer
        .results
        .iter()
        .map(|r| {
            let mut series: Vec<_> = r
                .timeseries
                .iter()
                .map(|ts| {
                    let labels = ts.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
                    (labels, ts.samples.iter().map(|s| (s.timestamp, s.value.to_bits())).collect())
                })
                .collect();
            series.sort();
            series
        })
        .collect();
    let labels = |name: &str, job: &str| vec![("__name__".to_string(), name.to_string()), ("job".to_string(), job.to_string())];
    assert_eq!(
        results,
        vec![
            vec![
                (labels("up", "api"), vec![(10_000, 1f64.to_bits()), (15_000, STALE_NAN_BITS)]),
                (labels("up", "node"), vec![(10_000, 1f64.to_bits())]),
            ],
            vec![(labels("temp", "api"), vec![(12_000, 21.5f64.to_bits())])],
            vec![],
        ]
    );

    // Native histograms come as float histograms, in the series' one `TimeSeries` with its
    // floats (a float at 10 s, then a histogram at 11 s).
    let mut with_histograms = metrics();
    let h = pharos_model::FloatHistogram {
        count: 3.0,
        sum: 4.5,
        positive_spans: vec![pharos_model::histogram::Span { offset: 1, length: 2 }],
        positive_buckets: vec![1.0, 2.0],
        ..Default::default()
    };
    with_histograms.add(&[("__name__", "lat"), ("job", "api")], &[(10_000, 7.0)]);
    with_histograms.add_histograms(&[("__name__", "lat"), ("job", "api")], vec![(11_000, Arc::new(h))]);
    let body = request(vec![q(0, 99_000, vec![m(MatcherType::Eq, "__name__", "lat")])], vec![]);
    let (kind, bytes) = super::remote_read::answer(&with_histograms, &body, 10).unwrap();
    assert_eq!(kind, rr::ResponseType::Samples);
    let answer = rr::decode_response(&bytes).unwrap();
    let [ts] = answer.results[0].timeseries.as_slice() else { panic!("{answer:?}") };
    assert_eq!(ts.samples.iter().map(|s| (s.timestamp, s.value)).collect::<Vec<_>>(), vec![(10_000, 7.0)]);
    let [hist] = ts.histograms.as_slice() else { panic!("{ts:?}") };
    assert_eq!((hist.timestamp, hist.count_float, hist.sum, hist.schema), (11_000, Some(3.0), 4.5, 0));
    assert_eq!(hist.positive_counts, vec![1.0, 2.0]);
    assert_eq!(hist.positive_spans.iter().map(|s| (s.offset, s.length)).collect::<Vec<_>>(), vec![(1, 2)]);
    assert!(hist.negative_counts.is_empty() && hist.positive_deltas.is_empty());
    // The sample limit counts histograms too.
    assert!(super::remote_read::answer(&with_histograms, &body, 1).is_err());

    let problem = |store: Arc<dyn MetricsReader>, body: Vec<u8>| async move {
        let resp = super::router(store, Arc::new(logs())).oneshot(post(body)).await.unwrap();
        let status = resp.status();
        (status, String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
    };
    let up = || vec![m(MatcherType::Eq, "__name__", "up")];
    for (body, wanted) in [
        (b"not snappy".to_vec(), "not snappy-compressed"),
        (request(vec![q(0, 1, up())], vec![7]), "supported: [SAMPLES, STREAMED_XOR_CHUNKS]"),
        (request(vec![q(0, 1, vec![m(MatcherType::Re, "job", "(")])], vec![]), "query 0: matcher job=~\"(\""),
        (request(vec![q(0, 1, up()), q(0, 1, vec![Matcher { r#type: 9, name: "a".into(), value: "b".into() }])], vec![]), "query 1: unknown matcher type 9"),
        (request(vec![q(0, 1, vec![m(MatcherType::Re, "job", ".*")])], vec![]), "does not match the empty string"),
        (request(vec![q(0, 1, vec![])], vec![]), "does not match the empty string"),
    ] {
        let (status, msg) = problem(store.clone(), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{msg}");
        assert!(msg.contains(wanted), "{msg:?} should name {wanted:?}");
    }
    let (status, msg) = problem(Arc::new(Broken), request(vec![q(0, 1, up())], vec![])).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(msg.contains("disk on fire"), "{msg}");
    // The sample limit counts the samples of one query.
    let two = request(vec![q(0, 99_000, vec![m(MatcherType::Eq, "job", "node")])], vec![]);
    assert!(super::remote_read::answer(store.as_ref(), &two, 2).is_ok());
    let err = super::remote_read::answer(store.as_ref(), &two, 1).unwrap_err();
    assert_eq!(err, super::remote_read::ReadError::BadRequest("remote read: query 0: exceeded sample limit (1): 2 samples in 1 series".into()));
}

/// Remote read in `STREAMED_XOR_CHUNKS` (what Thanos' sidecar asks for): checksummed frames, one
/// series each in label order, with the query's index; the samples (a staleness marker bit for
/// bit) in XOR chunks. Native histograms fall back to `SAMPLES` when the client accepts it,
/// else the request is refused naming the series.
#[tokio::test]
async fn remote_read_streams_xor_chunks() {
    use pharos_model::otlp::STALE_NAN_BITS;
    use pharos_model::remote_read::{self as rr, Matcher, MatcherType, Query, ReadRequest, ResponseType};
    let mut store = metrics();
    let long: Vec<(i64, f64)> = (0..130).map(|i| (1_000 * i, i as f64 * 0.5)).collect();
    store.add(&[("__name__", "up"), ("job", "api")], &[(10_000, 1.0), (15_000, f64::from_bits(STALE_NAN_BITS))]);
    store.add(&[("__name__", "reqs"), ("job", "api")], &long);
    let m = |name: &str, value: &str| Matcher { r#type: MatcherType::Eq as i32, name: name.into(), value: value.into() };
    let q = |start: i64, end: i64, matchers: Vec<Matcher>| Query { start_timestamp_ms: start, end_timestamp_ms: end, matchers, hints: None };
    let body = rr::encode_request(&ReadRequest {
        queries: vec![q(0, 200_000, vec![m("job", "api")]), q(5_000, 9_000, vec![m("__name__", "reqs")])],
        accepted_response_types: vec![ResponseType::StreamedXorChunks as i32],
    });
    let post = |body: Vec<u8>| Request::post("/api/v1/read").header("content-encoding", "snappy").body(Body::from(body)).unwrap();
    let store: Arc<dyn MetricsReader> = Arc::new(store);
    let resp = super::router(store.clone(), Arc::new(logs())).oneshot(post(body)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse");
    assert!(resp.headers().get("content-encoding").is_none());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let frames = rr::read_frames(&bytes).unwrap();
    // Per frame: query index, series, samples per chunk, samples (timestamp, value bits).
    type Frame = (i64, String, Vec<usize>, Vec<(i64, u64)>);
    let got: Vec<Frame> = frames
        .iter()
        .map(|f| {
            let [s] = f.chunked_series.as_slice() else { panic!("{f:?}") };
            let name = s.labels.iter().map(|l| format!("{}={}", l.name, l.value)).collect::<Vec<_>>().join(",");
            let decoded: Vec<(i64, f64)> = s.chunks.iter().flat_map(|c| pharos_model::xor_chunk::decode(&c.data).unwrap()).collect();
            for c in &s.chunks {
                assert_eq!(c.r#type, rr::ChunkEncoding::Xor as i32);
            }
            let sizes = s.chunks.iter().map(|c| pharos_model::xor_chunk::decode(&c.data).unwrap().len()).collect();
            (f.query_index, name, sizes, decoded.iter().map(|(t, v)| (*t, v.to_bits())).collect())
        })
        .collect();
    let bits = |s: &[(i64, f64)]| s.iter().map(|(t, v)| (*t, v.to_bits())).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            (0, "__name__=reqs,job=api".to_string(), vec![120, 10], bits(&long)),
            (0, "__name__=up,job=api".to_string(), vec![2], vec![(10_000, 1f64.to_bits()), (15_000, STALE_NAN_BITS)]),
            (1, "__name__=reqs,job=api".to_string(), vec![5], bits(&long[5..10])),
        ]
    );
    // Chunk time ranges are those of their samples.
    let first = &frames[0].chunked_series[0].chunks;
    assert_eq!((first[0].min_time_ms, first[0].max_time_ms, first[1].min_time_ms, first[1].max_time_ms), (0, 119_000, 120_000, 129_000));

    // Native histograms: SAMPLES when accepted too, else a 400 naming the series.
    let mut with_histograms = metrics();
    let h = pharos_model::FloatHistogram { count: 1.0, sum: 1.0, ..Default::default() };
    with_histograms.add_histograms(&[("__name__", "lat"), ("job", "api")], vec![(11_000, Arc::new(h))]);
    let ask = |types: Vec<i32>| rr::encode_request(&ReadRequest { queries: vec![q(0, 99_000, vec![m("__name__", "lat")])], accepted_response_types: types });
    let (kind, bytes) = super::remote_read::answer(&with_histograms, &ask(vec![1, 0]), 10).unwrap();
    assert_eq!(kind, ResponseType::Samples);
    assert_eq!(rr::decode_response(&bytes).unwrap().results[0].timeseries[0].histograms.len(), 1);
    let err = super::remote_read::answer(&with_histograms, &ask(vec![1]), 10).unwrap_err();
    let super::remote_read::ReadError::BadRequest(msg) = err else { panic!("{err:?}") };
    assert!(msg.contains("query 0: series {__name__=\"lat\", job=\"api\"} holds native histograms") && msg.contains("accept SAMPLES"), "{msg}");
}

/// `/federate`: the newest sample of each selected series within the 5-minute lookback, in
/// the text format Prometheus' federation writes (families sorted, `untyped`, Go's float
/// text, escaped label values, `instance=""` added last where missing, timestamps); stale, too
/// old and unmatched series left out.
#[tokio::test]
async fn federate_answers_the_newest_samples_in_the_text_format() {
    use pharos_model::otlp::STALE_NAN_BITS;
    let now = 1_000_000_000;
    let mut store = MemStore::default();
    store.add(&[("__name__", "up"), ("job", "node"), ("instance", "a:9100")], &[(now - 20_000, 0.0), (now - 5_000, 1.0)]);
    store.add(&[("__name__", "up"), ("job", "api")], &[(now - 301_000, 1.0)]);
    store.add(&[("__name__", "up"), ("job", "gone")], &[(now - 9_000, 1.0), (now - 2_000, f64::from_bits(STALE_NAN_BITS))]);
    store.add(&[("__name__", "node_memory_MemTotal_bytes"), ("job", "node"), ("path", "C:\\x \"y\"\nz")], &[(now - 300_000, 16624267264.0)]);
    store.add(&[("__name__", "node_load1"), ("job", "node")], &[(now - 1_000, 0.000012), (now + 1_000, 9.0)]);
    store.add(&[("__name__", "other"), ("job", "web")], &[(now, -1.5)]);
    let groups = |sels: &[&str]| -> Vec<Vec<LabelMatcher>> {
        sels.iter()
            .flat_map(|s| match crate::promql::parse(s).unwrap() {
                promql_parser::parser::Expr::VectorSelector(vs) => crate::promql::matcher_groups(&vs),
                e => panic!("{e:?}"),
            })
            .collect()
    };
    let exposition = |store: &MemStore, g: &[Vec<LabelMatcher>]| super::federate::text(&super::federate::latest_samples(store, g, now).unwrap());
    let text = exposition(&store, &groups(&[r#"{job=~"node|api|gone"}"#, "up"]));
    assert_eq!(
        text,
        "# TYPE node_load1 untyped\n\
         node_load1{job=\"node\",instance=\"\"} 1.2e-05 999999000\n\
         # TYPE node_memory_MemTotal_bytes untyped\n\
         node_memory_MemTotal_bytes{job=\"node\",path=\"C:\\\\x \\\"y\\\"\\nz\",instance=\"\"} 1.6624267264e+10 999700000\n\
         # TYPE up untyped\n\
         up{instance=\"a:9100\",job=\"node\"} 1 999995000\n"
    );
    assert_eq!(exposition(&store, &[]), "", "no match[], no series");

    // Through the router: the content type, and a bad selector.
    let app = super::router(Arc::new(store), Arc::new(logs()));
    let resp = app.clone().oneshot(Request::get("/federate?match[]=up").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let resp = app.oneshot(Request::get("/federate?match[]=rate(up%5B5m%5D)").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("not a series selector"), "{body:?}");
}

/// `/federate` in the protobuf format: floats in `UNTYPED` families, native histograms in
/// `HISTOGRAM`/`GAUGE_HISTOGRAM` ones, a new family where the name or the type changes; the
/// text format leaves histograms out; `Accept` picks the format.
#[tokio::test]
async fn federate_writes_native_histograms_in_the_protobuf_format() {
    use pharos_model::client_model::{self, MetricType};
    use pharos_model::histogram::{CounterResetHint, Span};
    use pharos_model::otlp::STALE_NAN_BITS;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let h = |count: f64| pharos_model::FloatHistogram {
        count,
        sum: 10.0,
        zero_threshold: 0.001,
        zero_count: 1.0,
        positive_spans: vec![Span { offset: 1, length: 2 }],
        positive_buckets: vec![count - 3.0, 2.0],
        ..Default::default()
    };
    let mut store = MemStore::default();
    // job a: a float, then a newer histogram; job b: floats only; job c: a stale histogram.
    store.add(&[("__name__", "lat"), ("job", "a")], &[(now - 10_000, 1.0)]);
    store.add_histograms(&[("__name__", "lat"), ("job", "a")], vec![(now - 5_000, Arc::new(h(6.0)))]);
    store.add(&[("__name__", "lat"), ("job", "b")], &[(now - 4_000, 2.5)]);
    let stale = pharos_model::FloatHistogram { sum: f64::from_bits(STALE_NAN_BITS), ..h(6.0) };
    store.add_histograms(&[("__name__", "lat"), ("job", "c")], vec![(now - 9_000, Arc::new(h(4.0))), (now - 3_000, Arc::new(stale))]);
    let gauge = pharos_model::FloatHistogram { counter_reset_hint: CounterResetHint::Gauge, ..h(4.5) };
    store.add_histograms(&[("__name__", "queue")], vec![(now - 1_000, Arc::new(gauge))]);
    let app = super::router(Arc::new(store), Arc::new(logs()));
    let get = |accept: &'static str| {
        let app = app.clone();
        async move {
            let resp = app.oneshot(Request::get("/federate?match[]=%7B__name__%3D~%22lat%7Cqueue%22%7D").header("accept", accept).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
            (content_type, resp.into_body().collect().await.unwrap().to_bytes())
        }
    };
    // The Accept header a Prometheus scraping with native histograms sends.
    let (content_type, body) =
        get("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2").await;
    assert_eq!(content_type, client_model::CONTENT_TYPE);
    let families = client_model::decode_delimited(&body).unwrap();
    let summary: Vec<(String, i32, Vec<String>)> = families
        .iter()
        .map(|f| (f.name.clone().unwrap(), f.r#type.unwrap(), f.metric.iter().map(|m| m.label.iter().map(|l| format!("{}={}", l.name, l.value)).collect::<Vec<_>>().join(" ")).collect()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("lat".to_string(), MetricType::Histogram as i32, vec!["job=a instance=".to_string()]),
            ("lat".to_string(), MetricType::Untyped as i32, vec!["job=b instance=".to_string()]),
            ("queue".to_string(), MetricType::GaugeHistogram as i32, vec!["instance=".to_string()]),
        ]
    );
    let a = &families[0].metric[0];
    assert_eq!(a.timestamp_ms, Some(now - 5_000));
    let ha = a.histogram.as_ref().unwrap();
    // Counts 3 and 2 in buckets 1 and 2: deltas 3, -1; 6 observations, 1 in the zero bucket.
    assert_eq!((ha.sample_count, ha.zero_count, ha.sample_sum, ha.schema), (Some(6), Some(1), Some(10.0), Some(0)));
    assert_eq!(ha.positive_delta, vec![3, -1]);
    assert_eq!((families[1].metric[0].untyped.as_ref().unwrap().value, families[1].metric[0].timestamp_ms), (2.5, Some(now - 4_000)));
    // 4.5 observations: float counts.
    let hq = families[2].metric[0].histogram.as_ref().unwrap();
    assert_eq!((hq.sample_count_float, hq.positive_count.clone()), (Some(4.5), vec![1.5, 2.0]));

    // The text format: only the float series.
    let (content_type, body) = get("text/plain;version=0.0.4;q=0.5,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.4").await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(String::from_utf8(body.to_vec()).unwrap(), format!("# TYPE lat untyped\nlat{{job=\"b\",instance=\"\"}} 2.5 {}\n", now - 4_000));
    for (accept, protobuf) in [
        ("", false),
        ("*/*", false),
        ("application/openmetrics-text;version=1.0.0", false),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", true),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text", false),
        ("application/openmetrics-text;q=0.9,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.8,*/*;q=0.1", true),
    ] {
        assert_eq!(super::federate::wants_protobuf(accept), protobuf, "{accept:?}");
    }
}
