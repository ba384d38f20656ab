//! Discovery against a fake kubelet (plain HTTP) and fake pods on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use pharos_model::Sample;
use pharos_model::team::{TeamMapping, TeamRule};

use super::*;
use crate::scrape::ScrapeContext;
use crate::teams::TeamLabeler;
use crate::telemetry::AgentMetrics;
use crate::test_support::collector;

/// (status of /pods, PodList JSON).
type Kubelet = Arc<Mutex<(u16, String)>>;

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn authorized(h: &HeaderMap) -> bool {
    h.get(header::AUTHORIZATION).is_some_and(|v| v == "Bearer s3cret")
}

async fn fake_kubelet(state: Kubelet) -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/pods",
            get(|State(s): State<Kubelet>, h: HeaderMap| async move {
                if !authorized(&h) {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                let (status, body) = s.lock().unwrap().clone();
                (StatusCode::from_u16(status).unwrap(), body)
            }),
        )
        .route(
            "/metrics/cadvisor",
            get(|h: HeaderMap| async move {
                if !authorized(&h) {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                (StatusCode::OK, "container_cpu_usage_seconds_total{namespace=\"spark-jobs\",pod=\"p\"} 12.5\n".into())
            }),
        )
        .with_state(state);
    serve(app).await
}

/// A Spark driver UI: the HTML placeholder first, then the captured metrics (the 301 included).
async fn fake_spark_driver(ready: Arc<Mutex<bool>>) -> std::net::SocketAddr {
    const PLACEHOLDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spark/http/placeholder_prometheus.body");
    const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spark/http/prometheus_t2.body");
    const EXECUTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spark/http/executors_prometheus_t2.body");
    let page = |ready: bool, path: &'static str| {
        if ready {
            ([(header::CONTENT_TYPE, "text/plain;charset=utf-8")], std::fs::read_to_string(path).unwrap())
        } else {
            ([(header::CONTENT_TYPE, "text/html;charset=utf-8")], std::fs::read_to_string(PLACEHOLDER).unwrap())
        }
    };
    let app = Router::new()
        .route(
            "/metrics/prometheus",
            get(|| async { (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "/metrics/prometheus/")]) }),
        )
        .route("/metrics/prometheus/", get(move |State(r): State<Arc<Mutex<bool>>>| async move { page(*r.lock().unwrap(), DRIVER) }))
        .route(
            "/metrics/executors/prometheus",
            get(move |State(r): State<Arc<Mutex<bool>>>| async move { page(*r.lock().unwrap(), EXECUTORS) }),
        )
        .with_state(ready);
    serve(app).await
}

fn pod_list(spark_port: u16, with_driver: bool) -> String {
    let driver = format!(
        r#",{{"metadata":{{"name":"etl-driver","namespace":"spark-jobs","uid":"u2",
              "labels":{{"spark-role":"driver","spark-app-selector":"local-1795353726210","spark-app-name":"etl","team":"ml","other":"x"}}}},
            "spec":{{"containers":[{{"name":"spark-kubernetes-driver","ports":[{{"containerPort":{spark_port},"name":"spark-ui"}}]}}]}},
            "status":{{"phase":"Running","podIP":"127.0.0.1"}}}}"#
    );
    format!(
        r#"{{"kind":"PodList","apiVersion":"v1","metadata":{{}},"items":[
            {{"metadata":{{"name":"pending","namespace":"spark-jobs","annotations":{{"prometheus.io/scrape":"true","prometheus.io/port":"1"}}}},
              "status":{{"phase":"Pending"}}}}{}]}}"#,
        if with_driver { driver } else { String::new() }
    )
}

async fn next_batch_with(received: &mut crate::test_support::Received, name: &str, pred: impl Fn(&Sample) -> bool) -> Vec<Sample> {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let batch = received.metrics.recv().await.unwrap();
            if batch.iter().any(|s| s.labels.metric_name() == Some(name) && pred(s)) {
                return batch;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} arrived"))
}

#[tokio::test]
async fn kubelet_pods_become_targets_that_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let ready = Arc::new(Mutex::new(false));
    let spark = fake_spark_driver(ready.clone()).await;
    let kubelet_state: Kubelet = Arc::new(Mutex::new((200, pod_list(spark.port(), true))));
    let kubelet = fake_kubelet(kubelet_state.clone()).await;
    let (url, mut received) = collector(vec![]).await;
    let metrics = AgentMetrics::new();
    let labeler = TeamLabeler::new(TeamMapping {
        rules: vec![TeamRule { namespace: "spark-*".into(), team: "data-eng".into() }],
        ..TeamMapping::default()
    });
    let buffer_dir = tempfile::tempdir().unwrap();
    let (buffer, _forwarder) = crate::test_support::buffer_to_http(buffer_dir.path(), &url, metrics.clone());
    let context = ScrapeContext {
        buffer,
        resource: pharos_model::Labels::from_pairs([("cluster", "c1")]),
        metrics,
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
        labeler: labeler.clone(),
    };
    let config = KubernetesConfig {
        kubelet_url: format!("http://{kubelet}"),
        token_file: Some(token),
        ca_file: None,
        scrape_resource: false,
        spark_ui_port: spark.port(),
        ..KubernetesConfig::default()
    };
    let mut discovery = KubernetesDiscovery::build(&config, context).unwrap();
    discovery.refresh_once().await;
    let mut jobs: Vec<String> = discovery.pool().targets().map(|t| t.job.clone()).collect();
    jobs.sort();
    // The pending pod is ignored; cadvisor, and the driver's two endpoints.
    assert_eq!(jobs, ["kubelet", "spark-driver", "spark-executors"]);
    // The pod label team=ml overrides the namespace rule, for logs of that pod too.
    assert_eq!(labeler.team_for("spark-jobs", "etl-driver").as_deref(), Some("ml"));
    assert_eq!(labeler.team_for("spark-jobs", "other-pod").as_deref(), Some("data-eng"));

    // cAdvisor is scraped with the bearer token, names untouched, team from the series' namespace.
    let batch = next_batch_with(&mut received, "container_cpu_usage_seconds_total", |_| true).await;
    let cpu = batch.iter().find(|s| s.labels.metric_name() == Some("container_cpu_usage_seconds_total")).unwrap();
    assert_eq!(cpu.value, 12.5);
    assert_eq!(cpu.labels.get("job"), Some("kubelet"));
    assert_eq!(cpu.labels.get("team"), Some("data-eng"));

    // While Spark starts, the HTML placeholder is `up` 0, not an error.
    let batch = next_batch_with(&mut received, "up", |s| s.labels.get("job") == Some("spark-driver")).await;
    let up = batch.iter().find(|s| s.labels.metric_name() == Some("up")).unwrap();
    assert_eq!(up.value, 0.0);
    let redirected = reqwest::Url::parse(&format!("http://{spark}/metrics/prometheus")).unwrap();
    let mut direct = crate::scrape::TargetScraper::for_url(redirected, "x", vec![], reqwest::Client::new(), Duration::from_secs(5));
    let out = direct.scrape_once(1).await;
    assert!(out.not_ready && !out.success, "{:?}", out.error);
    *ready.lock().unwrap() = true;
    // The 301 from /metrics/prometheus to /metrics/prometheus/ is followed.
    let out = direct.scrape_once(2).await;
    assert!(out.success, "{:?}", out.error);
    assert_eq!(out.samples.iter().filter(|s| s.labels.get("type") == Some("gauges")).count(), 116);
    let batch = next_batch_with(&mut received, "spark_driver_BlockManager_memory_maxMem_MB_Value", |_| true).await;
    let mem = batch.iter().find(|s| s.labels.metric_name() == Some("spark_driver_BlockManager_memory_maxMem_MB_Value")).unwrap();
    assert_eq!(mem.value, 1048.0);
    assert_eq!(mem.labels.get("spark_app_id"), Some("local-1795353726210"));
    assert_eq!(mem.labels.get("spark_role"), Some("driver"));
    assert_eq!(mem.labels.get("namespace"), Some("spark-jobs"));
    assert_eq!(mem.labels.get("pod"), Some("etl-driver"));
    assert_eq!(mem.labels.get("container"), Some("spark-kubernetes-driver"));
    assert_eq!(mem.labels.get("team"), Some("ml"));
    assert_eq!(mem.labels.get("other"), None, "only team/app pod labels are copied");

    // The kubelet goes away: the cached list keeps the targets.
    kubelet_state.lock().unwrap().0 = 503;
    discovery.refresh_once().await;
    assert_eq!(discovery.pool().len(), 3);

    // The driver pod is deleted: its targets stop and mark their series stale.
    *kubelet_state.lock().unwrap() = (200, pod_list(spark.port(), false));
    discovery.refresh_once().await;
    assert_eq!(discovery.pool().len(), 1);
    let batch = next_batch_with(&mut received, "spark_driver_BlockManager_memory_maxMem_MB_Value", |s| {
        pharos_model::otlp::is_stale_nan(s.value)
    })
    .await;
    assert!(batch.iter().all(|s| pharos_model::otlp::is_stale_nan(s.value)));
}

#[test]
fn annotated_pod_targets() {
    let pods: pods::PodList = serde_json::from_str(
        r#"{"items":[{"metadata":{"name":"trino-coordinator-0","namespace":"trino",
              "labels":{"app.kubernetes.io/name":"trino","pod-template-hash":"abc"},
              "annotations":{"prometheus.io/scrape":"true","prometheus.io/port":"8080","prometheus.io/path":"metrics"}},
            "spec":{"containers":[{"name":"sidecar"},{"name":"trino","ports":[{"containerPort":8080}]}]},
            "status":{"phase":"Running","podIP":"10.0.0.7"}},
           {"metadata":{"name":"no-port","namespace":"x","annotations":{"prometheus.io/scrape":"true"}},
            "spec":{"containers":[{"name":"c"}]},"status":{"phase":"Running","podIP":"10.0.0.8"}},
           {"metadata":{"name":"not-annotated","namespace":"x"},"status":{"phase":"Running","podIP":"10.0.0.9"}}]}"#,
    )
    .unwrap();
    let options = pods::PodTargetOptions { annotated: true, spark_drivers: true, spark_ui_port: 4040 };
    let labeler = TeamLabeler::new(TeamMapping { default: Some("platform".into()), ..TeamMapping::default() });
    let targets = pods::pod_targets(&pods, &options, &labeler);
    assert_eq!(targets.len(), 1, "{targets:?}");
    let t = &targets[0];
    assert_eq!(t.url.as_str(), "http://10.0.0.7:8080/metrics");
    assert_eq!(t.job, "kubernetes-pods");
    let labels: Vec<(&str, &str)> = t.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        labels,
        [("app", "trino"), ("container", "trino"), ("namespace", "trino"), ("pod", "trino-coordinator-0"), ("team", "platform")]
    );
}
