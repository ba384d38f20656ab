//! Pod metadata on log records: owner rules, and the whole agent against a fake kubelet.

use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use pharos_model::LogRecord;

use super::*;
use crate::AgentConfig;
use crate::test_support::collector;

fn pod(json: &str) -> Pod {
    serde_json::from_str(json).unwrap()
}

#[test]
fn owners_follow_the_documented_rules() {
    let rs = pod(r#"{"metadata":{"labels":{"pod-template-hash":"7f9c"},
        "ownerReferences":[{"kind":"ReplicaSet","name":"web-7f9c","controller":true}]}}"#);
    assert_eq!(owner_of(&rs), Some(("Deployment".into(), "web".into())));
    // A ReplicaSet whose name does not end in the pod's template hash stays a ReplicaSet.
    let bare = pod(r#"{"metadata":{"labels":{"pod-template-hash":"zz"},
        "ownerReferences":[{"kind":"ReplicaSet","name":"web-7f9c","controller":true}]}}"#);
    assert_eq!(owner_of(&bare), Some(("ReplicaSet".into(), "web-7f9c".into())));
    let sts = pod(r#"{"metadata":{"ownerReferences":[{"kind":"Node","name":"n"},{"kind":"StatefulSet","name":"db","controller":true}]}}"#);
    assert_eq!(owner_of(&sts), Some(("StatefulSet".into(), "db".into())));
    // A Spark executor is owned by its driver pod; it is reported under its application.
    let executor = pod(r#"{"metadata":{"labels":{"spark-app-selector":"spark-0a1b","spark-app-name":"etl","spark-role":"executor"},
        "ownerReferences":[{"kind":"Pod","name":"etl-driver","controller":true}]}}"#);
    assert_eq!(owner_of(&executor), Some(("SparkApplication".into(), "etl".into())));
    let operated = pod(r#"{"metadata":{"labels":{"spark-app-selector":"spark-0a1b"},
        "ownerReferences":[{"kind":"SparkApplication","name":"nightly-etl","controller":true}]}}"#);
    assert_eq!(owner_of(&operated), Some(("SparkApplication".into(), "nightly-etl".into())));
    let submitted = pod(r#"{"metadata":{"labels":{"spark-app-selector":"spark-0a1b"}}}"#);
    assert_eq!(owner_of(&submitted), Some(("SparkApplication".into(), "spark-0a1b".into())));
    assert_eq!(owner_of(&pod(r#"{"metadata":{}}"#)), None);
}

#[test]
fn directory_keeps_pods_that_left_the_list_for_a_while_and_looks_up_by_uid() {
    let list = |json: &str| -> PodList { serde_json::from_str(json).unwrap() };
    let d = PodDirectory::default();
    d.replace(&list(r#"{"items":[{"metadata":{"name":"a","namespace":"ns","uid":"u1"}}]}"#));
    assert_eq!(d.lookup(Some("u1"), "ns", "a").unwrap().name, "a");
    assert!(d.lookup(Some("u2"), "ns", "a").is_none(), "another instance of the same name is not this pod");
    assert_eq!(d.lookup(None, "ns", "a").unwrap().uid, "u1");
    d.replace(&list(r#"{"items":[]}"#));
    assert_eq!(d.lookup(Some("u1"), "ns", "a").unwrap().name, "a", "kept after it left the list");
    assert!(d.lookup(None, "ns", "a").is_none());
}

/// (status, PodList JSON) served on `/pods`.
type Kubelet = Arc<Mutex<(u16, String)>>;

async fn fake_kubelet(state: Kubelet) -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/pods",
            get(|State(s): State<Kubelet>| async move {
                let (status, body) = s.lock().unwrap().clone();
                (StatusCode::from_u16(status).unwrap(), body)
            }),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

const WEB: &str = r#"{"metadata":{"name":"web-7f9c-x2v","namespace":"shop","uid":"u1",
    "labels":{"app":"web","team":"payments","pod-template-hash":"7f9c","secret-ish":"no"},
    "ownerReferences":[{"kind":"ReplicaSet","name":"web-7f9c","controller":true}]},
  "spec":{"nodeName":"node-7","containers":[{"name":"app"}]},"status":{"phase":"Running"}}"#;
const EXECUTOR: &str = r#"{"metadata":{"name":"etl-exec-1","namespace":"spark-jobs","uid":"u3",
    "labels":{"spark-app-selector":"spark-0a1b","spark-app-name":"etl","spark-role":"executor"},
    "ownerReferences":[{"kind":"Pod","name":"etl-driver","controller":true}]},
  "spec":{"nodeName":"node-7"},"status":{"phase":"Running"}}"#;

fn pod_list(items: &[&str]) -> String {
    format!(r#"{{"kind":"PodList","items":[{}]}}"#, items.join(","))
}

fn append(path: &std::path::Path, line: &str) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    writeln!(f, "2024-05-01T12:00:00Z stdout F {line}").unwrap();
}

/// Waits until a record with `body` arrived (other records are collected on the way).
async fn record_with(received: &mut crate::test_support::Received, seen: &mut Vec<LogRecord>, body: &str) -> LogRecord {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(r) = seen.iter().find(|r| r.body == body) {
                return r.clone();
            }
            seen.extend(received.logs.recv().await.unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no record {body:?} arrived"))
}

#[tokio::test]
async fn log_records_get_owner_node_pod_labels_and_team_from_the_kubelet() {
    let kubelet_state: Kubelet = Arc::new(Mutex::new((200, pod_list(&[WEB]))));
    let kubelet = fake_kubelet(kubelet_state.clone()).await;
    let (url, mut received) = collector(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let web_log = pods.join("shop_web-7f9c-x2v_u1/app/0.log");
    let ghost_log = pods.join("shop_ghost-0_u9/app/0.log");
    let executor_log = pods.join("spark-jobs_etl-exec-1_u3/executor/0.log");
    append(&web_log, "a1");
    append(&ghost_log, "g1");
    let yaml = format!(
        r#"
cluster: c1
node: n1
listen: 127.0.0.1:0
data_dir: {data}
sink: {{collector_url: "{url}"}}
teams:
  rules: [{{namespace: shop, team: retail}}]
kubernetes:
  kubelet_url: http://{kubelet}
  token_file: null
  ca_file: null
  refresh_interval_ms: 600000
  scrape_cadvisor: false
  scrape_resource: false
logs:
  include: ["{pods}/*/*/*.log"]
  poll_interval_ms: 20
  pod_labels: [app, spark-app-name]
  transforms:
    - type: remap
      source: .labels.owner_seen = .kubernetes.pod_owner
"#,
        data = dir.path().join("data").display(),
        pods = pods.display(),
    );
    let config = AgentConfig::from_yaml(&yaml).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(crate::run(config, async move {
        let _ = stopped.await;
    }));
    let mut seen = Vec::new();

    let a1 = record_with(&mut received, &mut seen, "a1").await;
    let expect = |r: &LogRecord, pairs: &[(&str, Option<&str>)]| {
        for (k, v) in pairs {
            assert_eq!(r.labels.get(k), *v, "{k} of {:?}: {}", r.body, r.labels);
        }
    };
    expect(
        &a1,
        &[
            ("owner_kind", Some("Deployment")),
            ("owner_name", Some("web")),
            ("node", Some("node-7")),
            ("app", Some("web")),
            ("team", Some("payments")), // the pod label overrides the namespace rule
            ("secret_ish", None),        // not in the allow-list
            ("pod_uid", Some("u1")),
            ("owner_seen", Some("Deployment/web")), // the remap program saw it
        ],
    );
    // A pod the kubelet does not know keeps its path identity and the namespace's team.
    let g1 = record_with(&mut received, &mut seen, "g1").await;
    expect(&g1, &[("pod", Some("ghost-0")), ("owner_kind", None), ("node", Some("n1")), ("team", Some("retail"))]);

    // A pod started after the last list: its first line makes the agent ask the kubelet again
    // (the periodic list is 10 minutes away).
    kubelet_state.lock().unwrap().1 = pod_list(&[WEB, EXECUTOR]);
    append(&executor_log, "e1");
    let e1 = record_with(&mut received, &mut seen, "e1").await;
    expect(
        &e1,
        &[
            ("owner_kind", Some("SparkApplication")),
            ("owner_name", Some("etl")),
            ("spark_app_id", Some("spark-0a1b")),
            ("spark_role", Some("executor")),
            ("spark_app_name", Some("etl")),
            ("container", Some("executor")),
        ],
    );

    // The kubelet goes away: the cached list still labels new lines.
    kubelet_state.lock().unwrap().0 = 503;
    append(&web_log, "a2");
    let a2 = record_with(&mut received, &mut seen, "a2").await;
    expect(&a2, &[("owner_name", Some("web")), ("node", Some("node-7")), ("team", Some("payments"))]);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), agent).await.unwrap().unwrap().unwrap();
}

#[test]
fn copied_pod_labels_are_sanitized_never_replace_record_labels_and_never_set_team() {
    let d = PodDirectory::default();
    d.replace(&serde_json::from_str(&pod_list(&[WEB])).unwrap());
    let m = LogMetadata::new(d, &["app".into(), "team".into(), "pod-template-hash".into()]);
    let record = Labels::from_pairs([("namespace", "shop"), ("pod", "web-7f9c-x2v"), ("pod_uid", "u1"), ("app", "mine")]);
    let (labels, pod) = m.labels_for(&record);
    assert_eq!(pod.unwrap().name, "web-7f9c-x2v");
    assert_eq!(labels.get("app"), Some("mine"), "the record's own label wins");
    assert_eq!(labels.get("pod_template_hash"), Some("7f9c"));
    assert_eq!(labels.get("team"), None, "team comes from the team mapping only");
    assert_eq!(labels.get("node"), Some("node-7"));
    // Unknown UID: unchanged.
    let other = record.with("pod_uid", "u-unknown");
    assert_eq!(m.labels_for(&other).0, other);
}
