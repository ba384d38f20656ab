use std::collections::BTreeMap;
use std::time::Duration;

use pharos_model::otlp::is_stale_nan;

use super::*;
use crate::test_support::{buffer_to_http, collector, exposition_server};

fn target(url: String) -> ScrapeTarget {
    ScrapeTarget { url, job: "node".into(), labels: BTreeMap::from([("env".to_string(), "dev".to_string())]) }
}

fn find<'a>(samples: &'a [Sample], name: &str) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.labels.metric_name() == Some(name)).collect()
}

#[test]
fn clashing_scraped_labels_become_exported() {
    let scraped = Labels::from_pairs([("__name__", "m"), ("job", "app"), ("exported_job", "x"), ("a", "1")]);
    let l = apply_target_labels(&scraped, &[("job".into(), "node".into()), ("instance".into(), "h:1".into())]);
    assert_eq!(l.get("job"), Some("node"));
    assert_eq!(l.get("exported_exported_job"), Some("app"));
    assert_eq!(l.get("exported_job"), Some("x"));
    assert_eq!(l.get("instance"), Some("h:1"));
    assert_eq!(l.get("a"), Some("1"));
}

#[tokio::test]
async fn scrape_labels_reports_and_staleness() {
    let (addr, state) = exposition_server("a{job=\"app\"} 1\nb 2\nc 3 1000\n").await;
    let mut scraper = TargetScraper::new(&target(format!("http://{addr}/metrics")), Duration::from_secs(5)).unwrap();
    assert_eq!(scraper.instance(), addr.to_string());

    let first = scraper.scrape_once(10_000).await;
    assert!(first.success, "{:?}", first.error);
    let a = find(&first.samples, "a");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].labels.get("exported_job"), Some("app"));
    assert_eq!(a[0].labels.get("job"), Some("node"));
    assert_eq!(a[0].labels.get("env"), Some("dev"));
    assert_eq!(a[0].timestamp_ms, 10_000);
    assert_eq!(find(&first.samples, "c")[0].timestamp_ms, 1000, "explicit timestamp kept");
    assert_eq!(find(&first.samples, "up")[0].value, 1.0);
    assert_eq!(find(&first.samples, "scrape_samples_scraped")[0].value, 3.0);
    assert_eq!(find(&first.samples, "scrape_series_added")[0].value, 2.0);

    // `b` disappears: it gets a staleness marker at the scrape time; `a` goes on.
    state.lock().unwrap().2 = "a{job=\"app\"} 5\n".into();
    let second = scraper.scrape_once(25_000).await;
    let b = find(&second.samples, "b");
    assert_eq!(b.len(), 1);
    assert!(is_stale_nan(b[0].value));
    assert_eq!(b[0].timestamp_ms, 25_000);
    assert!(!is_stale_nan(find(&second.samples, "a")[0].value));
    assert!(find(&second.samples, "c").is_empty(), "series with explicit timestamps are never staled");

    // A failing scrape: up=0 and every remaining series goes stale.
    state.lock().unwrap().0 = 500;
    let third = scraper.scrape_once(40_000).await;
    assert!(!third.success);
    assert!(third.error.as_deref().unwrap().contains("500"), "{:?}", third.error);
    assert_eq!(find(&third.samples, "up")[0].value, 0.0);
    assert!(is_stale_nan(find(&third.samples, "a")[0].value));
}

#[tokio::test]
async fn unparseable_body_fails_the_scrape_naming_the_line() {
    let (addr, _state) = exposition_server("ok 1\nbroken{a=\"1\" 2\n").await;
    let mut scraper = TargetScraper::new(&target(format!("http://{addr}/metrics")), Duration::from_secs(5)).unwrap();
    let out = scraper.scrape_once(1).await;
    assert!(!out.success);
    assert!(out.error.as_deref().unwrap().starts_with("line 2:"), "{:?}", out.error);
    assert!(find(&out.samples, "ok").is_empty());
}

#[tokio::test]
async fn openmetrics_content_type_reads_second_timestamps() {
    let (addr, state) = exposition_server("").await;
    *state.lock().unwrap() = (
        200,
        "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
        "# TYPE x gauge\nx 1 12.5\n# EOF\n".into(),
    );
    let mut scraper = TargetScraper::new(&target(format!("http://{addr}/metrics")), Duration::from_secs(5)).unwrap();
    let out = scraper.scrape_once(1).await;
    assert_eq!(find(&out.samples, "x")[0].timestamp_ms, 12_500);
}

#[tokio::test]
async fn scrape_loop_ships_through_http_sink_with_resource_labels() {
    let (addr, _state) = exposition_server("# TYPE h histogram\nh_bucket{le=\"1.0\"} 3\nh_bucket{le=\"+Inf\"} 4\n").await;
    let (url, mut received) = collector(vec![503]).await;
    let metrics = AgentMetrics::new();
    let dir = tempfile::tempdir().unwrap();
    let (buffer, forwarder) = buffer_to_http(dir.path(), &url, metrics.clone());
    let scraper = TargetScraper::new(&target(format!("http://{addr}/metrics")), Duration::from_secs(5)).unwrap();
    let resource = Labels::from_pairs([("cluster", "c1"), ("node", "n1")]);
    let task = tokio::spawn(run_target(scraper, Duration::from_secs(3600), buffer, resource, metrics.clone()));

    // The first POST gets a 503 and is retried; the retry delivers the first scrape.
    let samples = tokio::time::timeout(Duration::from_secs(10), received.metrics.recv()).await.unwrap().unwrap();
    // The sink counts after it reads the 200, which may come after the collector handed us the batch.
    tokio::time::timeout(Duration::from_secs(10), async {
        while metrics.samples_sent.get() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    task.abort();
    forwarder.abort();
    let buckets = find(&samples, "h_bucket");
    assert_eq!(buckets.len(), 2);
    let one = buckets.iter().find(|s| s.labels.get("le") == Some("1")).expect("le=\"1.0\" normalised to 1");
    assert_eq!(one.value, 3.0);
    assert_eq!(one.labels.get("cluster"), Some("c1"));
    assert_eq!(one.labels.get("node"), Some("n1"));
    assert_eq!(one.labels.get("job"), Some("node"));
    assert_eq!(find(&samples, "up")[0].value, 1.0);
    assert_eq!(metrics.sink_retries.get(), 1);
    assert_eq!(metrics.samples_sent.get(), samples.len() as u64);
}
