//! What `scripts/up.sh` runs, end to end: the simulator (in process), `pharos serve` and a
//! `pharos-agent` wired to it by `sim::demo::DemoAgent`. Every source of issue 5 shows up in
//! queries, with workload identity and `team`.

use std::process::Command;
use std::time::Duration;

use pharos_e2e::sim::demo::DemoAgent;
use pharos_e2e::sim::{RunOptions, SimConfig, SimServer};
use pharos_e2e::*;

async fn vector(p: &Pharos, q: &str) -> Vec<serde_json::Value> {
    let (_, b) = p.get_json(&format!("/api/v1/query?query={}", enc(q))).await;
    b["data"]["result"].as_array().cloned().unwrap_or_default()
}

async fn label_values_of(p: &Pharos, q: &str, label: &str) -> Vec<String> {
    let mut v: Vec<String> =
        vector(p, q).await.iter().filter_map(|s| s["metric"][label].as_str().map(str::to_string)).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_platform_flows_through_agent_and_collector() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pharos = Pharos::serve(root, &["--data-dir", root.join("data").to_str().unwrap()]).await;
    let agent_listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = SimConfig {
        seed: 7,
        nodes_per_cluster: 2,
        tick_ms: 500,
        start_ms: chrono::Utc::now().timestamp_millis(),
        out_dir: Some(root.join("sim")),
        trino_queries_per_tick: 1.0,
        ..SimConfig::default()
    };
    let opts = RunOptions { auto_tick: true, trino_events_url: Some(format!("http://{agent_listen}/v1/trino/events")) };
    let sim = SimServer::start(cfg, "127.0.0.1:0".parse().unwrap(), opts).await.unwrap();
    let (cluster, node) = {
        let s = sim.sim.lock().unwrap();
        let c = &s.clusters()[0];
        (c.name.clone(), c.nodes[0].name.clone())
    };
    let collector_url = format!("http://{}", pharos.addr);
    let yaml = DemoAgent {
        sim_addr: sim.addr,
        sim_out_dir: &root.join("sim"),
        cluster: &cluster,
        node: &node,
        collector_url: &collector_url,
        agent_listen,
        agent_data_dir: &root.join("agent"),
    }
    .config_yaml();
    std::fs::write(root.join("agent.yaml"), yaml).unwrap();
    let mut cmd = Command::new(bin("pharos-agent"));
    cmd.args(["--config", root.join("agent.yaml").to_str().unwrap()]);
    let mut agent = Proc::spawn("agent", cmd, root);

    // Every scraped job is up: node-exporter, kubelet cAdvisor/resource, kube-state-metrics,
    // Trino, and the Spark drivers/executors the file targets follow.
    let want = ["kube-state-metrics", "kubelet", "node-exporter", "spark-driver", "spark-executors", "trino"];
    let jobs = wait_for_async("every job up", Duration::from_secs(90), || {
        let p = &pharos;
        async move {
            let jobs = label_values_of(p, "count by (job) (up == 1)", "job").await;
            want.iter().all(|w| jobs.iter().any(|j| j == w)).then_some(jobs)
        }
    })
    .await;
    agent.assert_running();
    assert_eq!(jobs, want);
    // Spark drivers answer an HTML placeholder while starting (up 0 by design); nothing else is down.
    let down = vector(&pharos, "up{job!~\"spark-.*\"} == 0").await;
    assert!(down.is_empty(), "targets down: {down:?}");

    // Standard names untouched; kube-state-metrics requests and node labels present.
    for q in [
        "container_cpu_usage_seconds_total",
        "node_cpu_seconds_total",
        "kube_pod_container_resource_requests{resource=\"cpu\"}",
        "kube_node_labels",
    ] {
        assert!(!vector(&pharos, q).await.is_empty(), "{q} is stored");
    }
    // Spark driver metrics have a stable name and the app id as a label.
    let apps = label_values_of(&pharos, "count by (spark_app_id) ({__name__=~\"spark_driver_.*\"})", "spark_app_id").await;
    assert!(!apps.is_empty() && apps.iter().all(|a| a.starts_with("spark-")), "{apps:?}");

    // Spark usage from event logs and Trino query events, each with a team.
    let teams = wait_for_async("Spark usage with teams", Duration::from_secs(60), || {
        let p = &pharos;
        async move {
            let t = label_values_of(p, "sum by (team) (spark_app_task_cpu_time_seconds_total)", "team").await;
            (!t.is_empty()).then_some(t)
        }
    })
    .await;
    assert!(teams.iter().all(|t| t != "unassigned"), "{teams:?}");
    let users = wait_for_async("Trino query events", Duration::from_secs(60), || {
        let p = &pharos;
        async move {
            let u = label_values_of(p, "count by (trino_user) (trino_query_cpu_seconds)", "trino_user").await;
            (!u.is_empty()).then_some(u)
        }
    })
    .await;
    assert!(users.iter().all(|u| !u.is_empty()));

    // Pod logs with identity from the kubelet path and team from the mapping.
    let (_, b) = pharos.get_json(&format!("/loki/api/v1/query_range?query={}&limit=50", enc("{namespace=~\"spark-.*\"}"))).await;
    let streams = b["data"]["result"].as_array().cloned().unwrap_or_default();
    assert!(!streams.is_empty(), "{b}");
    for s in &streams {
        let l = &s["stream"];
        assert!(l["pod"].is_string() && l["container"].is_string() && l["team"] == "data-eng", "{l}");
    }
    agent.assert_running();
}
