//! Real `promtool` (Debian package `prometheus`) queries Pharos through the Prometheus HTTP API.

use std::process::Command;

use pharos_e2e::*;
use pharos_model::{Labels, Sample};

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool").args(args).output().expect("promtool is installed by scripts/bootstrap.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_queries_pharos_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let pharos = Pharos::serve(dir.path(), &["--data-dir", dir.path().join("data").to_str().unwrap()]).await;
    // 10 minutes of a counter growing 1 per 15 s, on two instances.
    let now_s = chrono::Utc::now().timestamp();
    let base_ms = (now_s - 600) * 1000;
    let mut samples = Vec::new();
    for inst in ["a", "b"] {
        let labels = Labels::from_pairs([("__name__", "jobs_done_total"), ("instance", inst), ("job", "batch")]);
        for i in 0..=40 {
            samples.push(Sample::new(labels.clone(), base_ms + i * 15_000, i as f64));
        }
    }
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/write", pharos.addr))
        .header("content-encoding", "snappy")
        .body(pharos_model::remote_write::encode(&samples))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let url = format!("http://{}", pharos.addr);
    let at = (base_ms / 1000 + 600).to_string();

    let (ok, out) = promtool(&["query", "instant", "--time", &at, &url, "sum by (job) (jobs_done_total)"]);
    assert!(ok, "{out}");
    assert!(out.contains("{job=\"batch\"} => 80"), "{out}");
    // rate over 5m of a counter growing 1 per 15 s is 1/15 per second, per instance.
    let (ok, out) = promtool(&["query", "instant", "--time", &at, &url, "rate(jobs_done_total{instance=\"a\"}[5m])"]);
    assert!(ok, "{out}");
    assert!(out.contains("=> 0.06666666666666667"), "{out}");
    let start = (base_ms / 1000 + 300).to_string();
    let (ok, out) = promtool(&["query", "range", "--start", &start, "--end", &at, "--step", "150s", &url, "jobs_done_total{instance=\"b\"}"]);
    assert!(ok, "{out}");
    for v in ["20 @[", "30 @[", "40 @["] {
        assert!(out.contains(v), "range answer has {v}: {out}");
    }
    let (ok, out) = promtool(&["query", "series", "--match", "jobs_done_total", &url]);
    assert!(ok, "{out}");
    assert!(out.contains("instance=\"a\"") && out.contains("instance=\"b\""), "{out}");
    let (ok, out) = promtool(&["query", "labels", &url, "instance"]);
    assert!(ok && out.lines().map(str::trim).collect::<Vec<_>>().contains(&"a"), "{out}");
    let (ok, out) = promtool(&["query", "instant", &url, "sum(rate(jobs_done_total[5m]"]);
    assert!(!ok && out.contains("bad_data"), "a bad query is refused: {out}");
}
